/*
 * wire.c - encoding and decoding of worker frames (see wire.h).
 */
#include "wire.h"
#include "base/aname.h"
#include "base/errors.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/route.h"
#include "base/sp_limits.h"
#include "base/webhook_url.h"
#include "sealpipe.h"

#define NULL_LEN 0xffffffffu

/* A serial from the worker reaches lookups and log lines: only the serials
 * the host hands out (host.h) pass. */
static int serial_ok(const char *s)
{
    return s && sp_serial_valid(s, strlen(s));
}

int wire_begin(struct buf *b, int type)
{
    static const uint8_t zero[4];
    return buf_append(b, zero, 4) || wire_u8(b, (unsigned)type) ? -1 : 0;
}

int wire_end(struct buf *b, size_t start)
{
    size_t n = b->len - start - 4;
    if (n > WIRE_MAX_FRAME)
        return -1;
    for (int i = 0; i < 4; i++)
        b->p[start + (size_t)i] = (char)(n >> (8 * i));
    return 0;
}

int wire_u8(struct buf *b, unsigned v)
{
    uint8_t c = (uint8_t)v;
    return buf_append(b, &c, 1) ? -1 : 0;
}

static int put_le(struct buf *b, uint64_t v, int n)
{
    uint8_t x[8];
    for (int i = 0; i < n; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    return buf_append(b, x, (size_t)n) ? -1 : 0;
}

int wire_u32(struct buf *b, uint32_t v)
{
    return put_le(b, v, 4);
}

int wire_i64(struct buf *b, int64_t v)
{
    return put_le(b, (uint64_t)v, 8);
}

int wire_f64(struct buf *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return put_le(b, u, 8);
}

int wire_bytes(struct buf *b, const void *p, size_t n)
{
    if (n >= NULL_LEN)
        return -1;
    return wire_u32(b, (uint32_t)n) || (n && buf_append(b, p, n)) ? -1 : 0;
}

int wire_str(struct buf *b, const char *s)
{
    return s ? wire_bytes(b, s, strlen(s)) : wire_u32(b, NULL_LEN);
}

int wire_put_records(struct buf *b, const struct record *r, size_t n)
{
    if (wire_u32(b, (uint32_t)n))
        return -1;
    for (size_t i = 0; i < n; i++, r++) {
        if (wire_str(b, r->variable) || wire_u8(b, (unsigned)r->type) || wire_f64(b, r->number) ||
            (r->type == RECORD_STRING ? wire_bytes(b, r->string, r->string_len)
                                      : wire_str(b, NULL)) ||
            wire_u8(b, (unsigned)r->boolean) || wire_str(b, r->unit) ||
            wire_u8(b, (unsigned)r->has_time) || wire_i64(b, r->time_ms) || wire_str(b, r->group) ||
            wire_u8(b, (unsigned)r->has_location) || wire_f64(b, r->lat) || wire_f64(b, r->lng) ||
            wire_u8(b, (unsigned)r->has_alt) || wire_f64(b, r->alt) || wire_str(b, r->metadata))
            return -1;
    }
    return 0;
}

int wire_put_publishes(struct buf *b, const struct host_publish *p, size_t n)
{
    if (wire_u32(b, (uint32_t)n))
        return -1;
    for (size_t i = 0; i < n; i++, p++)
        if (wire_str(b, p->topic) || wire_bytes(b, p->payload, p->payload_len) ||
            wire_u8(b, (unsigned)p->qos) || wire_u8(b, (unsigned)(p->retain != 0)) ||
            wire_str(b, p->seal_for))
            return -1;
    return 0;
}

int wire_put_msg(struct buf *b, const char *analysis, const struct host_msg *m)
{
    return wire_str(b, analysis) || wire_u8(b, (unsigned)m->handler) || wire_str(b, m->topic) ||
                   wire_bytes(b, m->payload, m->payload_len) || wire_u8(b, (unsigned)m->qos) ||
                   wire_u8(b, (unsigned)(m->retain != 0)) || wire_i64(b, m->received_ms) ||
                   wire_str(b, m->serial) || wire_str(b, m->device_name) ||
                   wire_str(b, m->tags_json) || wire_str(b, m->params_json) ||
                   wire_put_records(b, m->records, m->nrecords)
               ? -1
               : 0;
}

/* ---- reading ------------------------------------------------------------ */

static const uint8_t *take(struct wire_in *in, size_t n)
{
    if (in->bad || in->len - in->pos < n) {
        in->bad = 1;
        return NULL;
    }
    const uint8_t *p = in->p + in->pos;
    in->pos += n;
    return p;
}

static uint64_t get_le(struct wire_in *in, int n)
{
    const uint8_t *p = take(in, (size_t)n);
    uint64_t v = 0;
    for (int i = 0; p && i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

unsigned wire_get_u8(struct wire_in *in)
{
    return (unsigned)get_le(in, 1);
}

uint32_t wire_get_u32(struct wire_in *in)
{
    return (uint32_t)get_le(in, 4);
}

int64_t wire_get_i64(struct wire_in *in)
{
    return (int64_t)get_le(in, 8);
}

double wire_get_f64(struct wire_in *in)
{
    uint64_t u = get_le(in, 8);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

const char *wire_get_str(struct wire_in *in, size_t *len)
{
    uint32_t n = wire_get_u32(in);
    if (len)
        *len = 0;
    if (in->bad || n == NULL_LEN)
        return NULL;
    const uint8_t *p = take(in, n);
    char *s = p ? arena_strndup(in->a, (const char *)p, n) : NULL;
    if (p && !s)
        in->bad = in->full = 1;
    if (s && len)
        *len = n;
    return s;
}

static int read_records(struct wire_in *in, struct record_vec *out, size_t max, int validate,
                        char *err, size_t errlen);

int wire_get_msg(struct wire_in *in, const char **analysis, struct host_msg *m)
{
    char err[64];
    struct record_vec rv = {0};

    memset(m, 0, sizeof(*m));
    *analysis = wire_get_str(in, NULL);
    m->handler = (int)wire_get_u8(in);
    m->topic = wire_get_str(in, NULL);
    m->payload = (const uint8_t *)wire_get_str(in, &m->payload_len);
    m->qos = (int)wire_get_u8(in);
    m->retain = (int)wire_get_u8(in);
    m->received_ms = wire_get_i64(in);
    m->serial = wire_get_str(in, NULL);
    m->device_name = wire_get_str(in, NULL);
    m->tags_json = wire_get_str(in, NULL);
    m->params_json = wire_get_str(in, NULL);
    /* msg.records is the daemon's own normalization, not a result: a
     * "payload" record holds the whole payload (or its hex), longer than a
     * stored string value may be. Only its shape is checked. */
    if (read_records(in, &rv, SP_LIMIT_RECORDS, 0, err, sizeof err))
        return -1;
    m->records = rv.v;
    m->nrecords = rv.n;
    if (!m->payload)
        m->payload = (const uint8_t *)"";
    return in->bad || !*analysis || !m->topic || m->handler >= HOST_HANDLERS ? -1 : 0;
}

int wire_get_records(struct wire_in *in, struct record_vec *out, size_t max, char *err,
                     size_t errlen)
{
    return read_records(in, out, max, 1, err, errlen);
}

int wire_get_daemon_records(struct wire_in *in, struct record_vec *out, size_t max, char *err,
                            size_t errlen)
{
    return read_records(in, out, max, 0, err, errlen);
}

/* The arena ran out while reading: the frame may be well formed. */
static int out_of_memory(struct wire_in *in, char *err, size_t errlen)
{
    in->bad = in->full = 1;
    snprintf(err, errlen, "out of memory");
    return -1;
}

/*
 * Reads a count of at most max items of `size` bytes and allocates them
 * zeroed in the arena: 0 with *k and *v (NULL when *k is 0), or -1 with err
 * ("truncated reply", "too many <what>", "out of memory").
 */
static int get_array(struct wire_in *in, size_t size, size_t max, const char *what, uint32_t *k,
                     void **v, char *err, size_t errlen)
{
    *k = wire_get_u32(in);
    *v = NULL;
    if (in->bad || *k > max) {
        if (in->bad)
            snprintf(err, errlen, "truncated reply");
        else
            snprintf(err, errlen, "too many %s", what);
        return -1;
    }
    if (*k && !(*v = arena_calloc(in->a, *k, size)))
        return out_of_memory(in, err, errlen);
    return 0;
}

/* Records; validate: each also passes record_validate(). */
static int read_records(struct wire_in *in, struct record_vec *out, size_t max, int validate,
                        char *err, size_t errlen)
{
    uint32_t n = wire_get_u32(in);

    if (in->bad || n > max) {
        snprintf(err, errlen, "%s", in->bad ? "truncated reply" : "too many records");
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct record *r = record_vec_push(in->a, out);
        if (!r)
            return out_of_memory(in, err, errlen);
        memset(r, 0, sizeof(*r));
        r->variable = wire_get_str(in, NULL);
        unsigned type = wire_get_u8(in);
        r->number = wire_get_f64(in);
        r->string = wire_get_str(in, &r->string_len);
        r->boolean = wire_get_u8(in) != 0;
        r->unit = wire_get_str(in, NULL);
        r->has_time = wire_get_u8(in) != 0;
        r->time_ms = wire_get_i64(in);
        r->group = wire_get_str(in, NULL);
        r->has_location = wire_get_u8(in) != 0;
        r->lat = wire_get_f64(in);
        r->lng = wire_get_f64(in);
        r->has_alt = wire_get_u8(in) != 0;
        r->alt = wire_get_f64(in);
        r->metadata = wire_get_str(in, NULL);
        if (in->full)
            return out_of_memory(in, err, errlen);
        if (in->bad || type > RECORD_BOOLEAN || !r->variable ||
            (type == RECORD_STRING && !r->string)) {
            snprintf(err, errlen, "record %u is malformed", i + 1);
            return -1;
        }
        r->type = (enum record_type)type;
        char why[256];
        int rc = validate ? record_validate(in->a, r, why, sizeof why) : 0;
        if (rc == SP_ERR_NOMEM)
            in->bad = in->full = 1;
        if (rc) {
            snprintf(err, errlen, "record %u: %s", i + 1, why);
            return -1;
        }
    }
    return 0;
}

/*
 * The one kind of '$' topic an analysis may publish to: a device's TagoTiP
 * ack topic, through tagotip.command: "$tip/S/ack" in the clear, or
 * "$tips/S/ack" sealed for S (never plaintext there).
 */
static int ack_topic_ok(const char *topic, const char *seal_for)
{
    int sealed = strncmp(topic, "$tips/", 6) == 0;
    const char *s = topic + (sealed ? 6 : 5), *e;

    if (!sealed && strncmp(topic, "$tip/", 5) != 0)
        return 0;
    e = strchr(s, '/');
    if (!e || e == s || strcmp(e, "/ack") != 0)
        return 0;
    if (!sealed)
        return seal_for == NULL;
    return seal_for && strlen(seal_for) == (size_t)(e - s) &&
           memcmp(seal_for, s, (size_t)(e - s)) == 0;
}

int wire_get_publishes(struct wire_in *in, struct host_publish **out, size_t *n, size_t max,
                       char *err, size_t errlen)
{
    struct host_publish *p;
    uint32_t k;

    *out = NULL;
    *n = 0;
    if (get_array(in, sizeof(*p), max, "publishes", &k, (void **)&p, err, errlen))
        return -1;
    for (uint32_t i = 0; i < k; i++) {
        size_t tl;
        p[i].topic = wire_get_str(in, &tl);
        p[i].payload = (const uint8_t *)wire_get_str(in, &p[i].payload_len);
        p[i].qos = (int)wire_get_u8(in);
        p[i].retain = wire_get_u8(in) != 0;
        p[i].seal_for = wire_get_str(in, NULL);
        if (in->full)
            return out_of_memory(in, err, errlen);
        if (p[i].seal_for && (!serial_ok(p[i].seal_for) || p[i].payload_len > SP_MAX_FRAME)) {
            snprintf(err, errlen, "publish %u cannot be sealed", i + 1);
            return -1;
        }
        /* The same rules publish() enforces, checked again on this side. */
        if (in->bad || !p[i].topic || !p[i].topic[0] || strlen(p[i].topic) != tl ||
            !sp__utf8_valid(p[i].topic, tl) ||
            (p[i].topic[0] == '$' && !ack_topic_ok(p[i].topic, p[i].seal_for)) ||
            strpbrk(p[i].topic, "+#") || tl > SP_LIMIT_TOPIC || p[i].qos > 2 ||
            p[i].payload_len > SP_LIMIT_PAYLOAD) {
            snprintf(err, errlen, "publish %u is malformed", i + 1);
            return -1;
        }
        if (!p[i].payload)
            p[i].payload = (const uint8_t *)"";
    }
    *out = p;
    *n = k;
    return 0;
}

int wire_put_logs(struct buf *b, const char *const *lines, size_t n, size_t dropped)
{
    if (wire_u32(b, (uint32_t)n))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (wire_str(b, lines[i]))
            return -1;
    return wire_u32(b, (uint32_t)dropped);
}

/* Replaces each control character, and each byte that is not part of a
 * valid UTF-8 sequence (a cut one included), with '?'. */
static void log_clean(char *s)
{
    size_t n = strlen(s);

    for (size_t i = 0, k; i < n; i += k) {
        unsigned char c = (unsigned char)s[i];
        k = 1;
        if (c < 0x20 || c == 0x7f) {
            s[i] = '?';
        } else if (c >= 0x80) {
            for (k = 2; k <= 4 && (i + k > n || !sp__utf8_valid(s + i, k)); k++)
                ;
            if (k > 4) {
                s[i] = '?';
                k = 1;
            }
        }
    }
}

int wire_get_logs(struct wire_in *in, const char ***out, size_t *n, size_t *dropped, size_t max)
{
    uint32_t k = wire_get_u32(in);

    *out = NULL;
    *n = 0;
    *dropped = 0;
    if (in->bad || k > max)
        return -1;
    const char **v = k ? arena_calloc(in->a, k, sizeof(*v)) : NULL;
    if (k && !v) {
        in->bad = in->full = 1;
        return -1;
    }
    for (uint32_t i = 0; i < k; i++) {
        size_t len;
        char *s = (char *)wire_get_str(in, &len);
        if (!s)
            return -1;
        if (len > HOST_LOG_LINE_MAX)
            s[HOST_LOG_LINE_MAX] = '\0';
        log_clean(s);
        v[i] = s;
    }
    *dropped = wire_get_u32(in);
    if (in->bad)
        return -1;
    *out = v;
    *n = k;
    return 0;
}

int wire_put_inserts(struct buf *b, const struct host_insert *v, size_t n)
{
    if (wire_u32(b, (uint32_t)n))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (wire_str(b, v[i].serial) || wire_put_records(b, v[i].records.v, v[i].records.n))
            return -1;
    return 0;
}

int wire_get_inserts(struct wire_in *in, struct host_insert **out, size_t *n, size_t max,
                     size_t max_records, char *err, size_t errlen)
{
    struct host_insert *v;
    size_t total = 0;
    uint32_t k;

    *out = NULL;
    *n = 0;
    if (get_array(in, sizeof(*v), max, "inserts", &k, (void **)&v, err, errlen))
        return -1;
    for (uint32_t i = 0; i < k; i++) {
        v[i].serial = wire_get_str(in, NULL);
        if (in->full)
            return out_of_memory(in, err, errlen);
        if (!serial_ok(v[i].serial)) {
            snprintf(err, errlen, "insert %u names no device", i + 1);
            return -1;
        }
        if (wire_get_records(in, &v[i].records, max_records - total, err, errlen))
            return -1;
        total += v[i].records.n;
    }
    *out = v;
    *n = k;
    return 0;
}

int wire_get_result(struct wire_in *in, int handler, size_t max_records, size_t max_publishes,
                    struct host_out *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (wire_get_records(in, &out->records, max_records, err, errlen) ||
        wire_get_publishes(in, &out->publishes, &out->npublishes, max_publishes, err, errlen))
        return -1;
    if (wire_get_logs(in, &out->logs, &out->nlogs, &out->logs_dropped, HOST_LOG_LINES)) {
        snprintf(err, errlen, "malformed log lines");
        return -1;
    }
    /* Returned and inserted records share the one limit (host.h). */
    return wire_get_inserts(in, &out->inserts, &out->ninserts, host_max_inserts(handler),
                            max_records - out->records.n, err, errlen) ||
                   wire_get_runs(in, &out->runs, &out->nruns, err, errlen) ||
                   wire_get_webhooks(in, &out->webhooks, &out->nwebhooks, err, errlen) ||
                   wire_get_deletes(in, &out->deletes, &out->ndeletes, err, errlen)
               ? -1
               : 0;
}

int wire_put_runs(struct buf *b, const struct host_run_call *v, size_t n)
{
    if (wire_u32(b, (uint32_t)n))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (wire_str(b, v[i].analysis) || wire_bytes(b, v[i].payload, v[i].payload_len))
            return -1;
    return 0;
}

int wire_get_runs(struct wire_in *in, struct host_run_call **out, size_t *n, char *err,
                  size_t errlen)
{
    uint32_t k;
    void *v;

    *n = 0;
    if (get_array(in, sizeof(**out), HOST_MAX_RUNS, "run_analysis calls", &k, &v, err, errlen))
        return -1;
    *out = v;
    for (uint32_t i = 0; i < k; i++) {
        struct host_run_call *r = &(*out)[i];
        size_t nl = 0;
        r->analysis = wire_get_str(in, &nl);
        r->payload = (const uint8_t *)wire_get_str(in, &r->payload_len);
        if (in->bad || !aname_valid(r->analysis, nl) || !r->payload ||
            r->payload_len > HOST_RUN_PAYLOAD_MAX) {
            snprintf(err, errlen, "%s", in->full ? "out of memory" : "malformed run_analysis call");
            return -1;
        }
    }
    *n = k;
    return 0;
}

int wire_put_webhooks(struct buf *b, const struct host_webhook *v, size_t n)
{
    if (wire_u32(b, (uint32_t)n))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (wire_str(b, v[i].method) || wire_str(b, v[i].url) ||
            wire_u32(b, (uint32_t)v[i].nheaders))
            return -1;
        for (size_t k = 0; k < v[i].nheaders; k++)
            if (wire_str(b, v[i].names[k]) || wire_str(b, v[i].values[k]))
                return -1;
        if (wire_bytes(b, v[i].body, v[i].body_len))
            return -1;
    }
    return 0;
}

/* A string of the frame that is a C string (no NUL inside), or NULL. */
static const char *get_cstr(struct wire_in *in)
{
    size_t n;
    const char *s = wire_get_str(in, &n);
    return s && strlen(s) == n ? s : NULL;
}

/* One webhook() call's headers into w; 0 or -1. */
static int get_headers(struct wire_in *in, struct host_webhook *w, char *err, size_t errlen)
{
    uint32_t k;
    void *names, *values = NULL;

    if (get_array(in, sizeof(char *), WEBHOOK_HEADERS_MAX, "webhook headers", &k, &names, err,
                  errlen))
        return -1;
    if (k && !(values = arena_calloc(in->a, k, sizeof(char *))))
        return out_of_memory(in, err, errlen);
    w->names = names;
    w->values = values;
    for (uint32_t j = 0; j < k; j++) {
        w->names[j] = get_cstr(in);
        w->values[j] = get_cstr(in);
        if (in->bad || !w->names[j] || !w->values[j] ||
            webhook_header_check(w->names[j], w->values[j], NULL, 0)) {
            snprintf(err, errlen, "%s", in->full ? "out of memory" : "malformed webhook header");
            return -1;
        }
    }
    w->nheaders = k;
    return 0;
}

int wire_get_webhooks(struct wire_in *in, struct host_webhook **out, size_t *n, char *err,
                      size_t errlen)
{
    uint32_t k;
    void *v;

    *n = 0;
    if (get_array(in, sizeof(**out), HOST_MAX_WEBHOOKS, "webhook calls", &k, &v, err, errlen))
        return -1;
    *out = v;
    for (uint32_t i = 0; i < k; i++) {
        struct host_webhook *w = &(*out)[i];
        w->method = get_cstr(in);
        w->url = get_cstr(in);
        if (!in->bad && (!w->method || webhook_method_check(w->method) || !w->url ||
                         strlen(w->url) > WEBHOOK_URL_MAX))
            in->bad = 1;
        if (in->bad)
            goto bad;
        if (get_headers(in, w, err, errlen))
            return -1;
        w->body = (const uint8_t *)wire_get_str(in, &w->body_len);
        if (in->bad || !w->body || w->body_len > WEBHOOK_BODY_MAX)
            goto bad;
    }
    *n = k;
    return 0;
bad:
    snprintf(err, errlen, "%s", in->full ? "out of memory" : "malformed webhook call");
    return -1;
}

const char *wire_get_webhook_entry(struct wire_in *in)
{
    const char *e = get_cstr(in);

    if (!e || webhook_entry_check(e, NULL, 0)) {
        in->bad = 1;
        return NULL;
    }
    return e;
}

/* query()'s variable as the host sends it: NULL, or 1-SP_LIMIT_VARIABLE bytes
 * without NUL, lowercased like stored names. */
static int query_variable_ok(const char *v, size_t n)
{
    if (!v)
        return 1;
    if (n == 0 || n > SP_LIMIT_VARIABLE || strlen(v) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] >= 'A' && v[i] <= 'Z')
            return 0;
    return 1;
}

int wire_get_query(struct wire_in *in, struct host_query *q)
{
    size_t vl;

    memset(q, 0, sizeof(*q));
    q->serial = wire_get_str(in, NULL);
    q->variable = wire_get_str(in, &vl);
    q->start_ms = wire_get_i64(in);
    q->stop_ms = wire_get_i64(in);
    q->qty = wire_get_u32(in);
    /* What host_set_query() promises the daemon's query function. */
    if (in->bad || !serial_ok(q->serial) || !query_variable_ok(q->variable, vl) ||
        q->start_ms > q->stop_ms || q->qty == 0 || q->qty > HOST_QUERY_MAX)
        return -1;
    return 0;
}

const char *wire_get_topic(struct wire_in *in)
{
    char mqtt[SP_LIMIT_TOPIC + 2];
    size_t n;
    const char *f = wire_get_str(in, &n);

    /* host_load's rules: 1-SP_LIMIT_TOPIC bytes of NUL-free UTF-8, no '$'
     * topic, a well-formed filter (route.c parses it from here on). */
    if (!f || n == 0 || n > SP_LIMIT_TOPIC || strlen(f) != n || !sp__utf8_valid(f, n) ||
        f[0] == '$' || route_mqtt_filter(f, mqtt, sizeof mqtt)) {
        in->bad = 1;
        return NULL;
    }
    return f;
}

/* What wire_data.c shares of the readers above (wire_internal.h). */
int wire__get_array(struct wire_in *in, size_t size, size_t max, const char *what, uint32_t *k,
                    void **v, char *err, size_t errlen)
{
    return get_array(in, size, max, what, k, v, err, errlen);
}

int wire__variable_ok(const char *v, size_t n)
{
    return query_variable_ok(v, n);
}

/* ---- blocking frame I/O (the worker's side) ----------------------------- */

/* Reads exactly n bytes; 0 on success, -1 on EOF or error. */
static int read_full(int fd, void *p, size_t n)
{
    uint8_t *q = p;
    while (n) {
        ssize_t r = read(fd, q, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        q += r;
        n -= (size_t)r;
    }
    return 0;
}

int wire_write_all(int fd, const void *p, size_t n)
{
    const uint8_t *q = p;
    while (n) {
        ssize_t r = write(fd, q, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        q += r;
        n -= (size_t)r;
    }
    return 0;
}

int wire_read_frame(int fd, struct buf *b)
{
    uint8_t h[4];
    char chunk[64 * 1024];

    if (read_full(fd, h, 4))
        return -1;
    uint32_t n = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
    if (n == 0 || n > WIRE_MAX_FRAME)
        return -1;
    buf_reset(b);
    while (n) {
        size_t k = n < sizeof chunk ? n : sizeof chunk;
        if (read_full(fd, chunk, k) || buf_append(b, chunk, k))
            return -1;
        n -= (uint32_t)k;
    }
    return (uint8_t)b->p[0];
}
