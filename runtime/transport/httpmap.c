/*
 * httpmap.c - the HTTP binding's routes, credentials and status mapping
 * (see httpmap.h). Pure functions over strings and a struct net_req: the
 * answers themselves are read with the SDK's ACK parser, so the wire format
 * of an answer is written once, in sdk/.
 */
#include "httpmap.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define TIP_PREFIX  "/v1/tip/"
#define TIPS_PATH   "/v1/tips"
#define ALLOW_TIP   "POST, GET, HEAD"
#define ALLOW_TIPS  "POST"
#define AUTH_SCHEME "TagoTiP"
#define RETRY_AFTER 5 /* seconds a device waits after a 503 */

/* TagoTipServers.md §2.5, and the two size errors of TagoTiP.md §9.2 and TagoTiPs.md §9. */
static const struct {
    const char *code;
    unsigned status;
} error_status[] = {
    {"invalid_payload", 400},    {"invalid_token", 401},      {"device_not_found", 404},
    {"variable_not_found", 404}, {"rate_limited", 429},       {"server_error", 500},
    {"payload_too_large", 413},  {"envelope_too_large", 413},
};

/* enum httpmap_early: the status, the /v1/tip body, the /v1/tips body (§2.9's form). */
static const struct {
    unsigned status;
    const char *code;
    const char *frame;
} early_reply[] = {
    [HTTPMAP_E_TOKEN] = {401, "invalid_token", "ACK|ERR|auth_failed"},
    [HTTPMAP_E_FULL] = {429, "rate_limited", "ACK|ERR|rate_limited"},
    [HTTPMAP_E_TOOLARGE] = {413, "payload_too_large", "ACK|ERR|envelope_too_large"},
    [HTTPMAP_E_NOMEM] = {500, "server_error", "ACK|ERR|server_error"},
    [HTTPMAP_E_STOPPING] = {503, "server_error", "ACK|ERR|server_error"},
};

static void reply_text(struct httpmap_reply *reply, unsigned status, const char *text, size_t n)
{
    memset(reply, 0, sizeof *reply);
    reply->status = status;
    reply->type = "text/plain";
    reply->body = n ? text : NULL;
    reply->len = n;
}

static void reply_str(struct httpmap_reply *reply, unsigned status, const char *text)
{
    reply_text(reply, status, text, strlen(text));
}

unsigned httpmap_status(const char *code, size_t n)
{
    size_t i;

    for (i = 0; i < sizeof error_status / sizeof error_status[0]; i++)
        if (strlen(error_status[i].code) == n && memcmp(error_status[i].code, code, n) == 0)
            return error_status[i].status;
    return 400;
}

static int method_kind(const char *method)
{
    if (strcmp(method, "POST") == 0)
        return HTTPMAP_PUSH;
    if (strcmp(method, "GET") == 0)
        return HTTPMAP_PULL;
    if (strcmp(method, "HEAD") == 0)
        return HTTPMAP_PING;
    return -1;
}

static void reply_not_allowed(struct httpmap_reply *reply, const char *allow)
{
    reply_str(reply, 405, "method_not_allowed");
    reply->allow = allow;
}

int httpmap_route(const char *method, const char *path, struct httpmap_route *route,
                  struct httpmap_reply *reply)
{
    int kind = method_kind(method);
    const char *serial;
    size_t n;

    if (strcmp(path, TIPS_PATH) == 0) {
        if (kind != HTTPMAP_PUSH) {
            reply_not_allowed(reply, ALLOW_TIPS);
            return -1;
        }
        route->kind = HTTPMAP_ENVELOPE;
        route->serial[0] = '\0';
        return 0;
    }
    if (strncmp(path, TIP_PREFIX, strlen(TIP_PREFIX)) != 0) {
        reply_str(reply, 404, "not_found");
        return -1;
    }
    if (kind < 0) {
        reply_not_allowed(reply, ALLOW_TIP);
        return -1;
    }
    serial = path + strlen(TIP_PREFIX);
    n = strlen(serial);
    if (n > SP_MAX_SERIAL || !sp_serial_valid(serial, n)) {
        reply_str(reply, 404, "device_not_found");
        return -1;
    }
    route->kind = kind;
    memcpy(route->serial, serial, n + 1);
    return 0;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t';
}

int httpmap_auth(const char *header, char *out, size_t cap)
{
    size_t scheme = strlen(AUTH_SCHEME), n = 0;
    const char *p;

    if (!header || cap < 2 || strncasecmp(header, AUTH_SCHEME, scheme) != 0 ||
        !is_space(header[scheme]))
        return -1;
    for (p = header + scheme; is_space(*p); p++)
        ;
    while (p[n] > ' ' && p[n] < 0x7f)
        n++;
    if (n == 0 || n >= cap)
        return -1;
    for (const char *q = p + n; *q; q++)
        if (!is_space(*q))
            return -1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 0;
}

size_t httpmap_unescape(char *s)
{
    size_t r = 0, w = 0;

    while (s[r]) {
        int hi = s[r] == '%' ? sp_hex_digit(s[r + 1]) : -1;
        int lo = hi >= 0 ? sp_hex_digit(s[r + 2]) : -1;

        if (lo >= 0 && (hi | lo) != 0) {
            s[w++] = (char)(hi << 4 | lo);
            r += 3;
        } else {
            s[w++] = s[r++];
        }
    }
    s[w] = '\0';
    return w;
}

int httpmap_topic(const struct httpmap_route *route, char *out, size_t cap)
{
    static const char *const verb[] = {"push", "pull", "ping"};
    int n;

    if (route->kind == HTTPMAP_ENVELOPE)
        n = snprintf(out, cap, "$tips");
    else if (route->kind >= HTTPMAP_PUSH && route->kind <= HTTPMAP_PING)
        n = snprintf(out, cap, "$tip/%s/%s", route->serial, verb[route->kind]);
    else
        return -1;
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

void httpmap_early(int kind, int early, struct httpmap_reply *reply)
{
    if (early < HTTPMAP_E_TOKEN || early > HTTPMAP_E_STOPPING)
        early = HTTPMAP_E_NOMEM;
    reply_str(reply, early_reply[early].status,
              kind == HTTPMAP_ENVELOPE ? early_reply[early].frame : early_reply[early].code);
    if (early == HTTPMAP_E_STOPPING)
        reply->retry_after = RETRY_AFTER;
}

/* Collects the "CMD|<command>" answers that follow the first one. */
static void add_commands(const struct net_req *r, struct httpmap_reply *reply)
{
    struct sp_tip_ack a;
    size_t i;

    for (i = 1; i < r->nanswers && i < NET_MAX_ANSWERS; i++) {
        const struct net_blob *b = &r->answers[i];

        if (b->data && sp_tip_parse_ack((const char *)b->data, b->len, SP_ACK_MQTT, &a) == 0 &&
            a.status == SP_ACK_CMD && a.detail.n > 0)
            reply->cmds[reply->ncmds++] = a.detail;
    }
}

/* answers[0] of a /v1/tip request: "STATUS[|DETAIL]" (§2.5). */
static int answer_tip(const struct net_req *r, struct httpmap_reply *reply)
{
    const struct net_blob *b = &r->answers[0];
    struct sp_tip_ack a;

    if (!b->data || sp_tip_parse_ack((const char *)b->data, b->len, SP_ACK_MQTT, &a) != 0)
        return -1;
    switch (a.status) {
    case SP_ACK_OK:
        reply_text(reply, 200, a.detail.p, a.detail.n);
        break;
    case SP_ACK_PONG:
        memset(reply, 0, sizeof *reply);
        reply->status = 204;
        break;
    case SP_ACK_ERR:
        reply_text(reply, httpmap_status(a.detail.p, a.detail.n), a.detail.p, a.detail.n);
        break;
    default:
        return -1;
    }
    add_commands(r, reply);
    if (reply->status == 204 && reply->ncmds > 0)
        reply->status = 200; /* §2.6: a PING with a command pending */
    return 0;
}

/* answers[0] of /v1/tips: a sealed ACK, or a plaintext "ACK|ERR|code" (§2.9). */
static int answer_envelope(const struct net_req *r, struct httpmap_reply *reply)
{
    const struct net_blob *b = &r->answers[0];
    struct sp_tip_ack a;

    if (!b->data || b->len == 0)
        return -1;
    if (b->data[0] != 'A') { /* TagoTiPs.md §5.3: 0x41 is never a flags byte */
        memset(reply, 0, sizeof *reply);
        reply->status = 200;
        reply->type = "application/octet-stream";
        reply->body = (const char *)b->data;
        reply->len = b->len;
        return 0;
    }
    if (sp_tip_parse_ack((const char *)b->data, b->len, SP_ACK_FRAME, &a) != 0 ||
        a.status != SP_ACK_ERR)
        return -1;
    reply_text(reply, httpmap_status(a.detail.p, a.detail.n), (const char *)b->data, b->len);
    if (reply->status == 401 || reply->status == 404)
        reply->status = 400; /* §2.9: a fallback is 400 unless the envelope is too large */
    return 0;
}

int httpmap_answer(const struct net_req *r, int kind, struct httpmap_reply *reply)
{
    int rc;

    if (r->result == NET_ACCEPTED) {
        reply_str(reply, 202, "accepted");
        return 0;
    }
    if (r->result != NET_ANSWERED) {
        httpmap_early(kind, HTTPMAP_E_STOPPING, reply); /* 503, Retry-After */
        return 0;
    }
    rc = -1;
    if (r->nanswers > 0)
        rc = kind == HTTPMAP_ENVELOPE ? answer_envelope(r, reply) : answer_tip(r, reply);
    if (rc != 0)
        httpmap_early(kind, HTTPMAP_E_NOMEM, reply);
    return rc;
}
