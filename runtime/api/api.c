/*
 * api.c - the daemon's HTTP API (see api.h): the routes' table, the token,
 * replies and errors, and the JSON members the routes share.
 *
 * Routes (docs/openapi.json), each a method and a path pattern:
 *   GET  /api/v1/devices                      every device with its status
 *   GET  /api/v1/devices/{serial}             one device
 *   GET  /api/v1/devices/{serial}/data        its records: `sealpipe query`'s parameters
 *   GET  /api/v1/devices/{serial}/latest      the newest record of each variable
 *   GET  /api/v1/dead-letters                 `sealpipe dead-letter list`'s filters
 *   GET  /api/v1/dead-letters/{id}            one, with its payload
 *   POST /api/v1/dead-letters/{id}/retry      `sealpipe dead-letter retry` (full tokens)
 *   GET  /api/v1/metrics                      the daemon's counters and gauges, summed up
 *   GET  /api/v1/inspector                    the Live Inspector's events, as they come (SSE)
 *   GET  /api/v1/session                      what the token sent may do (the console asks)
 * A request is answered in the order: the route (404), the method (405 with
 * Allow), the token (401 with WWW-Authenticate; 403 for a read token on a
 * POST), then the route's work. The token is checked for each request (a
 * revoked token stops working at once).
 */
#include "api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api_internal.h"
#include "base/errors.h"
#include "base/json.h"
#include "base/log.h"
#include "storage/registry.h"

#define API_PREFIX "/api/v1/"
#define BODY_MAX   (64u * 1024 * 1024) /* a reply, at most */
#define ARENA_MAX  (256u * 1024 * 1024)
#define BEARER     "Bearer "
/* A data query stops after this long (503 too_slow): the API's worker
 * answers one request at a time (transport/httpd_api.c), and the others wait
 * meanwhile. */
#define API_QUERY_MS 5000

/* A route: the part of the path after API_PREFIX, "*" standing for one
 * {serial} or {id}; its method; its work. */
struct route {
    const char *pattern;
    const char *method;
    int (*run)(struct api_req *r);
};

static int api__session(struct api_req *r);

static const struct route routes[] = {
    {"devices", "GET", api__devices},
    {"devices/*", "GET", api__device},
    {"devices/*/data", "GET", api__data},
    {"devices/*/latest", "GET", api__latest},
    {"dead-letters", "GET", api__dead_letters},
    {"dead-letters/*", "GET", api__dead_letter},
    {"dead-letters/*/retry", "POST", api__dead_letter_retry},
    {"metrics", "GET", api__metrics},
    {"inspector", "GET", api__inspector},
    {"session", "GET", api__session},
};

#define NROUTES (sizeof routes / sizeof routes[0])

int api_open(const char *data_dir, struct api **out, char *err, size_t errlen)
{
    struct api *a = calloc(1, sizeof(*a));
    int rc = SP_ERR_NOMEM;

    snprintf(err, errlen, "out of memory");
    if (!a || !(a->data_dir = strdup(data_dir)) ||
        (rc = registry_open(data_dir, &a->reg, err, errlen)) ||
        (rc = dataquery_open(data_dir, &a->data, err, errlen))) {
        if (a) {
            registry_close(a->reg);
            free(a->data_dir);
        }
        free(a);
        return rc;
    }
    dataquery_time_limit(a->data, API_QUERY_MS);
    arena_init(&a->arena, ARENA_MAX);
    pthread_mutex_init(&a->mu, NULL);
    *out = a;
    return SP_OK;
}

void api_close(struct api *a)
{
    if (!a)
        return;
    registry_close(a->reg);
    dataquery_close(a->data);
    arena_cleanup(&a->arena);
    pthread_mutex_destroy(&a->mu);
    free(a->data_dir);
    free(a);
}

int api_owns(const char *path)
{
    return strncmp(path, "/api/", 5) == 0 || strcmp(path, "/api") == 0;
}

void api_reply_free(struct api_reply *r)
{
    buf_cleanup(&r->body);
}

/* ---- JSON ---------------------------------------------------------------- */

int api__put_str(struct buf *b, int first, const char *key, const char *s)
{
    int rc = buf_printf(b, "%s\"%s\":", first ? "" : ",", key);

    if (rc)
        return rc;
    return s ? json_write_string(b, s, strlen(s)) : buf_puts(b, "null");
}

int api__put_int(struct buf *b, const char *key, long long v)
{
    return buf_printf(b, ",\"%s\":%lld", key, v);
}

int api__put_time(struct buf *b, const char *key, long long ms)
{
    return ms ? api__put_int(b, key, ms) : buf_printf(b, ",\"%s\":null", key);
}

int api__put_raw(struct buf *b, const char *key, const char *json)
{
    return buf_printf(b, ",\"%s\":%s", key, json && *json ? json : "{}");
}

int api__params(struct api_req *r, const char *const *valid, const char *repeatable,
                const char **values)
{
    size_t k;

    for (k = 0; valid[k]; k++)
        values[k] = NULL;
    if (r->nparams > API_PARAMS_MAX) {
        snprintf(r->err, sizeof r->err, "more than %d query parameters", API_PARAMS_MAX);
        return SP_ERR_CONFIG;
    }
    for (size_t i = 0; i < r->nparams; i++) {
        if (repeatable && strcmp(r->params[i].key, repeatable) == 0)
            continue;
        for (k = 0; valid[k] && strcmp(r->params[i].key, valid[k]) != 0; k++)
            ;
        if (!valid[k] || values[k]) {
            snprintf(r->err, sizeof r->err, "%s parameter %.64s",
                     valid[k] ? "a repeated" : "an unknown", r->params[i].key);
            return SP_ERR_CONFIG;
        }
        values[k] = r->params[i].value;
    }
    return SP_OK;
}

int api__no_params(struct api_req *r)
{
    static const char *const none[] = {NULL};

    return api__params(r, none, NULL, NULL);
}

/* ---- replies ------------------------------------------------------------- */

void api_reply_error(struct api_reply *r, unsigned status, const char *code, const char *message)
{
    buf_reset(&r->body);
    r->status = status;
    if (buf_printf(&r->body, "{\"error\":{\"code\":\"%s\",\"message\":", code) ||
        json_write_string(&r->body, message, strlen(message)) || buf_puts(&r->body, "}}")) {
        buf_reset(&r->body);
        r->status = 500;
        if (buf_puts(&r->body, "{\"error\":{\"code\":\"server_error\",\"message\":\"out "
                               "of memory\"}}"))
            buf_reset(&r->body); /* the status says it */
    }
}

/* A route's failure as its reply. */
static void reply_failure(struct api_reply *out, int rc, const struct api_req *r)
{
    char msg[200];

    switch (rc) {
    case SP_ERR_CONFIG:
        api_reply_error(out, 400, "bad_request", r->err);
        return;
    case SP_ERR_NODEVICE:
        snprintf(msg, sizeof msg, "no device %.100s", r->id ? r->id : "");
        api_reply_error(out, 404, "device_not_found", msg);
        return;
    case SP_ERR_NOTFOUND:
        api_reply_error(out, 404, "not_found", r->err);
        return;
    case SP_ERR_INVAL:
        api_reply_error(out, 409, "conflict", r->err);
        return;
    case SP_ERR_TOOLARGE:
        api_reply_error(
            out, 400, "bad_request",
            "the reply would pass 64 MiB: ask for fewer rows (qty) or a narrower range");
        return;
    case SP_ERR_TIMEOUT:
        api_reply_error(out, 503, "too_slow", r->err);
        return;
    case API_ERR_FORBIDDEN:
        api_reply_error(out, 403, "forbidden", r->err);
        return;
    default:
        LOG_WARN("api request failed: %s", errors_strerror(rc));
        api_reply_error(out, rc == SP_ERR_DB ? 503 : 500, "server_error", errors_strerror(rc));
    }
}

/* ---- routing ------------------------------------------------------------- */

/* GET /api/v1/session: the token's permission, so that a console offers only
 * what it may do. */
static int api__session(struct api_req *r)
{
    if (api__no_params(r))
        return SP_ERR_CONFIG;
    return buf_printf(r->b, "{\"perm\":\"%s\"}", r->perm == TOKEN_FULL ? "full" : "read");
}

/* 1 when path (after API_PREFIX) matches pattern; the segment "*" matched,
 * up to its slash, is copied to id. */
static int matches(const char *pattern, const char *path, char *id, size_t idlen)
{
    while (*pattern) {
        if (*pattern == '*') {
            size_t n = strcspn(path, "/");
            if (n == 0 || n >= idlen)
                return 0;
            memcpy(id, path, n);
            id[n] = '\0';
            path += n;
            pattern++;
        } else if (*pattern++ != *path++) {
            return 0;
        }
    }
    return *path == '\0';
}

/* The token of "Bearer <token>" (the scheme in any case, spaces around the
 * token: RFC 9110 11.1): 0 and its permission, else SP_ERR_TOKEN. */
static int authenticate(struct api *a, const char *authz, int *perm)
{
    char token[64];
    size_t n;

    if (!authz || strncasecmp(authz, BEARER, strlen(BEARER)) != 0)
        return SP_ERR_TOKEN;
    authz += strlen(BEARER);
    authz += strspn(authz, " \t");
    n = strcspn(authz, " \t");
    if (n == 0 || n >= sizeof token || authz[n + strspn(authz + n, " \t")] != '\0')
        return SP_ERR_TOKEN;
    memcpy(token, authz, n);
    token[n] = '\0';
    return registry_admin_token_check(a->reg, token, perm);
}

/* The request's route, its token checked, under a->mu. */
static void serve(struct api *a, const struct route *rt, struct api_req *r, const char *authz,
                  struct api_reply *out)
{
    int perm = 0, rc = authenticate(a, authz, &perm);

    if (rc == SP_ERR_TOKEN) {
        out->www_authenticate = "Bearer realm=\"sealpipe\"";
        api_reply_error(out, 401, "unauthorized",
                        authz && strncasecmp(authz, BEARER, strlen(BEARER)) == 0
                            ? "the token is unknown, expired or revoked (sealpipe admin token list)"
                            : "send Authorization: Bearer <token> (sealpipe admin token add)");
    } else if (rc) {
        reply_failure(out, rc, r);
    } else if (strcmp(rt->method, "GET") != 0 && perm != TOKEN_FULL) {
        api_reply_error(out, 403, "forbidden", "this token may only read (admin token add --perm)");
    } else {
        r->perm = perm;
        out->status = rt->method[0] == 'P' ? 202 : 200;
        if ((rc = rt->run(r)))
            reply_failure(out, rc, r);
    }
}

int api_authorized(struct api *a, const char *authz)
{
    int perm, rc;

    pthread_mutex_lock(&a->mu);
    rc = authenticate(a, authz, &perm);
    pthread_mutex_unlock(&a->mu);
    return rc == 0 ? 1 : rc == SP_ERR_TOKEN ? 0 : -1;
}

void api_handle(struct api *a, const char *method, const char *path, const char *authz,
                const struct api_param *params, size_t nparams, struct api_reply *out)
{
    char id[128];
    struct api_req r = {
        .a = a, .id = id, .params = params, .nparams = nparams, .watch = &out->watch};
    const struct route *rt = NULL;

    memset(out, 0, sizeof(*out));
    buf_init(&out->body, BODY_MAX);
    r.b = &out->body;
    if (strncmp(path, API_PREFIX, strlen(API_PREFIX)) == 0)
        for (size_t i = 0; i < NROUTES && !rt; i++)
            if (matches(routes[i].pattern, path + strlen(API_PREFIX), id, sizeof id))
                rt = &routes[i];
    if (!rt) {
        api_reply_error(out, 404, "not_found", "no such route (docs/openapi.json lists them)");
        return;
    }
    int get = strcmp(rt->method, "GET") == 0;
    if (strcmp(method, rt->method) != 0 && !(get && strcmp(method, "HEAD") == 0)) {
        out->allow = get ? "GET, HEAD" : rt->method;
        api_reply_error(out, 405, "method_not_allowed",
                        get ? "this route takes GET" : "this route takes POST");
        return;
    }
    pthread_mutex_lock(&a->mu);
    serve(a, rt, &r, authz, out);
    arena_reset(&a->arena);
    pthread_mutex_unlock(&a->mu);
}
