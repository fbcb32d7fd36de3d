/*
 * api.c - the daemon's HTTP API (see api.h): routing, authentication and the
 * JSON of each route.
 *
 * Routes (docs/openapi.json):
 *   GET /api/v1/devices                   every device with its status
 *   GET /api/v1/devices/{serial}          one device
 *   GET /api/v1/devices/{serial}/data     its records: `sealpipe query`'s parameters
 *   GET /api/v1/devices/{serial}/latest   the newest record of each variable
 * A request is answered in the order: the route (404), the method (405 with
 * Allow), the token (401 with WWW-Authenticate), then the route's work.
 * The token is checked before anything is read, and for each request (a
 * revoked token stops working at once).
 */
#include "api.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/clock.h"
#include "base/errors.h"
#include "base/json.h"
#include "base/log.h"
#include "base/record.h"
#include "storage/dataquery_args.h"
#include "sealpipe.h"
#include "storage/registry.h"

#define API_PREFIX "/api/v1/"
#define BODY_MAX   (64u * 1024 * 1024) /* a reply, at most */
#define ARENA_MAX  (256u * 1024 * 1024)
#define BEARER     "Bearer "

struct api {
    pthread_mutex_t mu; /* guards everything below */
    struct registry *reg;
    struct dataquery_db *data; /* sealpipe.db read-only, for the data routes */
    struct arena arena;
    struct dataquery_args dq; /* a request's data query (10 KiB: not on the stack) */
};

enum route { R_NONE, R_DEVICES, R_DEVICE, R_DATA, R_LATEST };

int api_open(const char *data_dir, struct api **out, char *err, size_t errlen)
{
    struct api *a = calloc(1, sizeof(*a));
    int rc;

    if (!a) {
        snprintf(err, errlen, "out of memory");
        return SP_ERR_NOMEM;
    }
    if ((rc = registry_open(data_dir, &a->reg, err, errlen)) ||
        (rc = dataquery_open(data_dir, &a->data, err, errlen))) {
        registry_close(a->reg);
        free(a);
        return rc;
    }
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

/* "key": then the string s (null when NULL); first: no comma before. */
static int put_str(struct buf *b, int first, const char *key, const char *s)
{
    int rc = buf_printf(b, "%s\"%s\":", first ? "" : ",", key);

    if (rc)
        return rc;
    return s ? json_write_string(b, s, strlen(s)) : buf_puts(b, "null");
}

static int put_int(struct buf *b, const char *key, long long v)
{
    return buf_printf(b, ",\"%s\":%lld", key, v);
}

/* A time in Unix ms, null for 0 (never). */
static int put_time(struct buf *b, const char *key, long long ms)
{
    return ms ? put_int(b, key, ms) : buf_printf(b, ",\"%s\":null", key);
}

/* "key": the JSON text json as it is (tags and params are stored as JSON). */
static int put_raw(struct buf *b, const char *key, const char *json)
{
    return buf_printf(b, ",\"%s\":%s", key, json && *json ? json : "{}");
}

static int put_status(struct buf *b, const struct device_status *st)
{
    int rc = buf_printf(b, ",\"status\":{\"connected\":%s", st->connections > 0 ? "true" : "false");

    if (!rc)
        rc = put_int(b, "connections", st->connections > 0 ? st->connections : 0);
    if (!rc)
        rc = put_time(b, "last_connect", st->last_connect);
    if (!rc)
        rc = put_time(b, "last_disconnect", st->last_disconnect);
    if (!rc)
        rc = put_time(b, "last_sent", st->last_sent);
    if (!rc)
        rc = put_time(b, "last_stored", st->last_stored);
    if (!rc)
        rc = put_int(b, "messages", st->messages);
    if (!rc)
        rc = put_int(b, "records", st->records);
    if (!rc)
        rc = put_int(b, "dead_letters", st->dead_letters);
    return rc ? rc : buf_putc(b, '}');
}

static int put_device(struct buf *b, const struct device_info *d, const struct device_status *st)
{
    int rc = buf_putc(b, '{');

    if (!rc)
        rc = put_str(b, 1, "serial", d->serial);
    if (!rc)
        rc = put_str(b, 0, "name", d->name);
    if (!rc)
        rc = put_str(b, 0, "profile", d->profile);
    if (!rc)
        rc = put_str(b, 0, "parser", d->parser);
    if (!rc)
        rc = put_raw(b, "tags", d->tags_json);
    if (!rc)
        rc = put_raw(b, "params", d->params_json);
    if (!rc)
        rc =
            buf_printf(b, ",\"encryption_required\":%s", d->encryption_required ? "true" : "false");
    if (!rc)
        rc = put_int(b, "created_at", d->created_ms);
    if (!rc)
        rc = st->has_retention ? put_int(b, "retention_ms", st->retention_ms)
                               : buf_puts(b, ",\"retention_ms\":null");
    if (!rc)
        rc = put_status(b, st);
    return rc ? rc : buf_putc(b, '}');
}

/* ---- replies ------------------------------------------------------------- */

static void reply_error(struct api_reply *r, unsigned status, const char *code, const char *message)
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

/* A failure of the route's work: its error as a reply. */
static void reply_failure(struct api_reply *r, int rc, const char *what)
{
    char msg[200];

    if (rc == SP_ERR_NODEVICE) {
        snprintf(msg, sizeof msg, "no device %.100s", what);
        reply_error(r, 404, "device_not_found", msg);
    } else {
        LOG_WARN("api request failed: %s: %s", what, errors_strerror(rc));
        reply_error(r, rc == SP_ERR_DB ? 503 : 500, "server_error", errors_strerror(rc));
    }
}

/* ---- routes -------------------------------------------------------------- */

static int devices_list(struct api *a, struct buf *b)
{
    struct device_info *ds = NULL;
    struct device_status *st;
    const char **serials;
    size_t n = 0;
    int rc;

    if ((rc = registry_device_list(a->reg, &a->arena, &ds, &n)))
        return rc;
    st = arena_calloc(&a->arena, n ? n : 1, sizeof(*st));
    serials = arena_calloc(&a->arena, n ? n : 1, sizeof(*serials));
    if (!st || !serials)
        return SP_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        serials[i] = ds[i].serial;
    if ((rc = registry_device_statuses(a->reg, serials, n, &a->arena, st)))
        return rc;
    rc = buf_printf(b, "{\"count\":%zu,\"devices\":[", n);
    for (size_t i = 0; i < n && !rc; i++) {
        if (i)
            rc = buf_putc(b, ',');
        if (!rc)
            rc = put_device(b, &ds[i], &st[i]);
    }
    if (!rc)
        rc = buf_puts(b, "]}");
    return rc ? SP_ERR_NOMEM : SP_OK;
}

static int device_one(struct api *a, const char *serial, struct buf *b)
{
    struct device_info d;
    struct device_status st;
    int rc;

    if ((rc = registry_device_get(a->reg, serial, &a->arena, &d)) ||
        (rc = registry_device_status(a->reg, serial, &a->arena, &st)))
        return rc;
    return put_device(b, &d, &st) ? SP_ERR_NOMEM : SP_OK;
}

/* dataquery_run's rows as the members of "data". */
struct rows {
    struct buf *b;
    size_t n;
};

static int on_row(void *ctx, const struct dataquery_row *row)
{
    struct rows *r = ctx;
    struct buf *b = r->b;
    char iso[ISO8601_LEN];
    int rc = r->n++ ? buf_putc(b, ',') : 0;

    if (!rc)
        rc = record_to_json(b, &row->rec);
    if (!rc && row->has_interval) {
        b->len--; /* the '}' */
        if (iso8601_format(row->interval_ms, iso) < 0)
            snprintf(iso, sizeof iso, "%lld", (long long)row->interval_ms);
        rc = buf_printf(b, ",\"interval\":\"%s\"}", iso);
    }
    return rc ? SP_ERR_NOMEM : 0;
}

/* The query parameters into a->dq; 0, or SP_ERR_CONFIG with err. */
static int data_params(struct api *a, const struct api_param *p, size_t n, char *err, size_t errlen)
{
    struct dataquery_args *dq = &a->dq;
    static const char *const names[] = {"qty",   "skip",  "start", "end",
                                        "group", "order", "agg",   "interval"};

    memset(dq, 0, sizeof(*dq));
    dq->dash = "";
    if (n > API_PARAMS_MAX) {
        snprintf(err, errlen, "more than %d query parameters", API_PARAMS_MAX);
        return SP_ERR_CONFIG;
    }
    const char **slot[] = {&dq->qty,   &dq->skip,  &dq->start, &dq->end,
                           &dq->group, &dq->order, &dq->agg,   &dq->interval};
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        if (strcmp(p[i].key, "variable") == 0) {
            if (dataquery_args_variable(dq, p[i].value, err, errlen))
                return SP_ERR_CONFIG;
            continue;
        }
        while (k < sizeof names / sizeof names[0] && strcmp(p[i].key, names[k]) != 0)
            k++;
        if (k == sizeof names / sizeof names[0] || *slot[k]) {
            snprintf(err, errlen,
                     "%s parameter %.64s (valid once each: variable (repeatable), "
                     "qty, skip, start, end, group, order, agg, interval)",
                     k < sizeof names / sizeof names[0] ? "a repeated" : "an unknown", p[i].key);
            return SP_ERR_CONFIG;
        }
        *slot[k] = p[i].value;
    }
    return SP_OK;
}

/* A data route: its query, run. A bad parameter is SP_ERR_CONFIG with err. */
static int device_data(struct api *a, const char *serial, int latest, const struct api_param *p,
                       size_t n, struct buf *b, char *err, size_t errlen)
{
    struct dataquery q;
    struct rows rows = {.b = b};
    int rc;

    if ((rc = data_params(a, latest ? NULL : p, latest ? 0 : n, err, errlen)))
        return rc;
    if (latest) {
        a->dq.agg = "last";
        a->dq.qty = "10000";
    }
    if (dataquery_args_apply(&a->dq, serial, clock_wall_ms(), &q, err, errlen))
        return SP_ERR_CONFIG;
    if ((rc = dataquery_device_exists(a->data, serial, err, errlen)) != 1)
        return rc == 0 ? SP_ERR_NODEVICE : SP_ERR_DB;
    if (buf_puts(b, "{\"data\":["))
        return SP_ERR_NOMEM;
    rc = dataquery_run(a->data, &q, &a->arena, on_row, &rows, err, errlen);
    if (!rc && buf_printf(b, "],\"count\":%zu}", rows.n))
        rc = SP_ERR_NOMEM;
    return rc;
}

/* The token of "Bearer <token>": 0 and its permission, else SP_ERR_TOKEN. */
static int authenticate(struct api *a, const char *authz, int *perm)
{
    if (!authz || strncmp(authz, BEARER, strlen(BEARER)) != 0)
        return SP_ERR_TOKEN;
    return registry_admin_token_check(a->reg, authz + strlen(BEARER), perm);
}

/* Which route path is, with the serial it names in *serial. */
static enum route route(const char *path, const char **serial)
{
    static const char *const tails[] = {"", "/data", "/latest"};
    static const enum route kinds[] = {R_DEVICE, R_DATA, R_LATEST};

    if (strncmp(path, API_PREFIX, strlen(API_PREFIX)) != 0)
        return R_NONE;
    path += strlen(API_PREFIX);
    if (strcmp(path, "devices") == 0)
        return R_DEVICES;
    if (strncmp(path, "devices/", 8) != 0 || !path[8] || path[8] == '/')
        return R_NONE;
    *serial = path + 8;
    const char *slash = strchr(*serial, '/');
    for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++)
        if (slash ? strcmp(slash, tails[i]) == 0 : !*tails[i])
            return kinds[i];
    return R_NONE;
}

/* The route's work, authenticated, under a->mu. */
static void serve(struct api *a, enum route which, const char *serial, const struct api_param *p,
                  size_t n, struct api_reply *out)
{
    char err[512] = "", name[SP_MAX_SERIAL + 1];
    int rc;

    /* The serial of a path ends at its next slash. */
    snprintf(name, sizeof name, "%.*s", (int)strcspn(serial ? serial : "", "/"),
             serial ? serial : "");
    out->status = 200;
    if (which == R_DEVICES)
        rc = devices_list(a, &out->body);
    else if (which == R_DEVICE)
        rc = device_one(a, name, &out->body);
    else
        rc = device_data(a, name, which == R_LATEST, p, n, &out->body, err, sizeof err);
    if (rc == SP_ERR_CONFIG)
        reply_error(out, 400, "bad_request", err);
    else if (rc)
        reply_failure(out, rc, which == R_DEVICES ? "the device list" : name);
}

void api_handle(struct api *a, const char *method, const char *path, const char *authz,
                const struct api_param *params, size_t nparams, struct api_reply *out)
{
    const char *serial = NULL;
    enum route which = route(path, &serial);
    int perm = 0, rc;

    memset(out, 0, sizeof(*out));
    buf_init(&out->body, BODY_MAX);
    if (which == R_NONE) {
        reply_error(out, 404, "not_found", "no such route (docs/openapi.json lists them)");
        return;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        out->allow = "GET, HEAD";
        reply_error(out, 405, "method_not_allowed", "this route takes GET");
        return;
    }
    pthread_mutex_lock(&a->mu);
    if ((rc = authenticate(a, authz, &perm)) == SP_OK) {
        serve(a, which, serial, params, nparams, out);
    } else {
        out->www_authenticate = "Bearer realm=\"sealpipe\"";
        if (rc == SP_ERR_TOKEN)
            reply_error(out, 401, "unauthorized",
                        "send Authorization: Bearer <token> (sealpipe admin token add)");
        else
            reply_failure(out, rc, "the token check");
    }
    arena_reset(&a->arena);
    pthread_mutex_unlock(&a->mu);
}
