/*
 * tipserver.c - the TagoTiP server (see tipserver.h): routes, bodies, PULL
 * and the answers to devices. What goes down to a device sealed with its key
 * (publishes, commands) is tipdown.c.
 *
 * Sections: TagoTiP bodies to records, the routes ($tips envelopes, $tip
 * bodies, HTTP requests, raw frames), answers (ACK, PONG, PULL values,
 * error codes).
 */
#include "tipserver.h"
#include "tipserver_internal.h"
#include "base/errors.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "base/metrics.h"
#include "sealpipe.h"
#include "base/sp_limits.h"
#include "storage/pickups.h"

int tipserver_new(const struct tipserver_opts *o, struct tipserver **out)
{
    struct tipserver *ts = calloc(1, sizeof(*ts));

    if (!ts)
        return SP_ERR_NOMEM;
    ts->o = *o;
    if (pickups_open(o->bk, &ts->pk)) {
        free(ts);
        return SP_ERR_DB;
    }
    *out = ts;
    return SP_OK;
}

void tipserver_free(struct tipserver *ts)
{
    if (ts)
        pickups_close(ts->pk);
    free(ts);
}

/* ---- TagoTiP bodies ---------------------------------------------------- */

/*
 * The merged metadata of variable v (TagoTiP.md §6.4) as a JSON object in b,
 * or nothing when it has none.
 */
static int meta_json(struct tipserver *ts, struct buf *b, const struct sp_tip_var *v)
{
    struct sp_span k, sv;
    size_t pos = 0;
    int first = 1;

    buf_reset(b);
    while (sp_tip_meta_each(&ts->body, v, &pos, &k, &sv)) {
        int n = sp_tip_unescape(sv, ts->value, sizeof(ts->value));
        if (n < 0)
            return n;
        if (buf_putc(b, first ? '{' : ',') || json_write_string(b, k.p, k.n) || buf_putc(b, ':') ||
            json_write_string(b, ts->value, (size_t)n))
            return SP_ERR_NOMEM;
        first = 0;
    }
    if (!first && buf_putc(b, '}'))
        return SP_ERR_NOMEM;
    return SP_OK;
}

static const char *span_dup(struct arena *a, struct sp_span s)
{
    return s.n ? arena_strndup(a, s.p, s.n) : NULL;
}

/*
 * A passthrough body as the "payload" record: hex data decoded to bytes then
 * shown as canonical lowercase hex text, base64 delivered as text.
 */
static int tip_passthrough(struct tipserver *ts, const char *topic, struct outcome *o)
{
    const struct sp_tip_body *tb = &ts->body;
    struct arena *a = ts->o.arena;
    const char *value;

    if (tb->passthrough == 'x') {
        char *h = arena_alloc(a, tb->data.n + 1);
        if (!h)
            return SP_ERR_NOMEM;
        for (size_t i = 0; i < tb->data.n; i++)
            h[i] = (char)(tb->data.p[i] >= 'A' && tb->data.p[i] <= 'F' ? tb->data.p[i] + 32
                                                                       : tb->data.p[i]);
        h[tb->data.n] = '\0';
        value = h;
    } else {
        value = arena_strndup(a, tb->data.p, tb->data.n);
    }
    struct record *r = record_vec_push(a, &o->records);
    if (!r || !value)
        return SP_ERR_NOMEM;
    r->variable = "payload";
    r->type = RECORD_STRING;
    r->string = value;
    r->string_len = strlen(value);
    return record_set_meta(a, r, "mqtt_topic", topic, 1);
}

/*
 * The value of variable v into record r, and its location: the value of an
 * @= variable, else its @= suffix or the body's it inherited (TagoTiP.md
 * §6.3.2, §6.4, Revision D), stored alike in lat/lng/alt.
 */
static int tip_value(struct arena *a, const struct sp_tip_var *v, struct record *r)
{
    if (v->has_loc) {
        r->has_location = 1;
        r->lat = v->lat;
        r->lng = v->lng;
        r->has_alt = v->has_alt;
        r->alt = v->alt;
    }
    switch (v->type) {
    case SP_TIP_NUMBER:
        r->type = RECORD_NUMBER;
        r->number = v->number;
        return SP_OK;
    case SP_TIP_BOOLEAN:
        r->type = RECORD_BOOLEAN;
        r->boolean = v->boolean;
        return SP_OK;
    case SP_TIP_LOCATION:
        r->type = RECORD_NONE; /* the location above is the value */
        return SP_OK;
    default: {
        char *s = arena_alloc(a, v->value.n + 1);
        int n = s ? sp_tip_unescape(v->value, s, v->value.n + 1) : SP_ERR_NOMEM;
        if (n < 0)
            return n;
        r->type = RECORD_STRING;
        r->string = s;
        r->string_len = (size_t)n;
        return SP_OK;
    }
    }
}

/* Variable i of the parsed body as a record of o; b is scratch space. */
static int tip_var_record(struct tipserver *ts, size_t i, const char *topic, struct buf *b,
                          struct outcome *o)
{
    const struct sp_tip_var *v = &ts->body.vars[i];
    struct arena *a = ts->o.arena;
    struct record *r = record_vec_push(a, &o->records);
    char err[256];
    int rc;

    if (!r)
        return SP_ERR_NOMEM;
    r->variable = span_dup(a, v->name);
    if ((rc = tip_value(a, v, r)))
        return rc;
    r->unit = span_dup(a, v->unit);
    r->has_time = v->has_time;
    r->time_ms = v->time_ms;
    r->group = span_dup(a, v->group);
    if ((rc = meta_json(ts, b, v)))
        return rc;
    if (b->len)
        r->metadata = arena_strndup(a, b->p, b->len);
    /* Like every record: the topic, unless the device set its own. */
    if ((rc = record_set_meta(a, r, "mqtt_topic", topic, 0))) {
        outcome_fail(o, R_invalid_body, "variable %zu: metadata too large", i + 1);
        return rc;
    }
    if ((rc = record_validate(a, r, err, sizeof(err)))) {
        outcome_fail(o, R_invalid_body, "variable %zu: %s", i + 1, err);
        return rc;
    }
    return SP_OK;
}

/*
 * Turns a TagoTiP PUSH body into records. A passthrough body becomes the
 * "payload" record and *raw is set so the device's parser gets it.
 */
static int tip_records(struct tipserver *ts, const char *body, size_t len, const char *topic,
                       struct outcome *o, int *raw)
{
    struct buf b;
    int rc;

    *raw = 0;
    if ((rc = sp_tip_parse_body(body, len, &ts->body))) {
        o->fallback = errors_wirecode(rc); /* payload_too_large or invalid_payload */
        outcome_fail(o, rc == SP_ERR_TOOLARGE ? R_too_large : R_invalid_body, "TagoTiP body: %s%s",
                     errors_strerror(rc), rc == SP_ERR_TOOLARGE ? " (more than 16,384 bytes)" : "");
        return rc;
    }
    if (ts->body.passthrough) {
        *raw = 1;
        return tip_passthrough(ts, topic, o);
    }
    buf_init(&b, SP_LIMIT_METADATA + 64);
    rc = SP_OK;
    for (size_t i = 0; i < ts->body.nvars && !rc; i++)
        rc = tip_var_record(ts, i, topic, &b, o);
    buf_cleanup(&b);
    if (rc == SP_ERR_NOMEM)
        outcome_fail(o, R_invalid_body, "body too large to convert");
    return rc;
}

/* Records for a TagoTiP body of device dev, through its parser if raw. */
/*
 * The topic m's records and its parser see: the MQTT binding's for the
 * device, whatever the transport, so that a reading stores the same
 * metadata.mqtt_topic over MQTT, HTTP, UDP and TCP. NULL: out of memory.
 */
static const char *tip_topic(struct tipserver *ts, const struct ingest_msg *m,
                             const struct device_info *dev)
{
    if (m->binding == INGEST_FRAME)
        return arena_printf(ts->o.arena, "$tip/%s/push", dev->serial);
    if (m->binding == INGEST_ENVELOPE)
        return arena_printf(ts->o.arena, "$tips/%s/push", dev->serial);
    return m->topic;
}

/* 1 if every variable of body b carries its time, its own or the body's. */
static int all_timestamped(const struct sp_tip_body *b)
{
    for (size_t i = 0; i < b->nvars; i++)
        if (!b->vars[i].has_time)
            return 0;
    return b->nvars > 0;
}

static void tip_body(struct tipserver *ts, const struct ingest_msg *m,
                     const struct device_info *dev, const char *body, size_t len, int64_t now,
                     struct outcome *o)
{
    struct ingest_msg as_mqtt = *m;
    int raw;

    if (!(as_mqtt.topic = tip_topic(ts, m, dev))) {
        outcome_fail(o, R_invalid_body, "out of memory");
        return;
    }
    if (tip_records(ts, body, len, as_mqtt.topic, o, &raw) != SP_OK) {
        if (!o->reason)
            outcome_fail(o, R_invalid_body, "cannot convert body");
        return;
    }
    if (!raw && m->binding != INGEST_MQTT && all_timestamped(&ts->body))
        o->retry_ms = INGEST_RETRY_MS; /* the same readings again are a retry */
    if (raw) {
        int ai = outcome_parser(o, ts->o.pool, dev);
        if (ai >= 0)
            outcome_run(o, ai, &as_mqtt, dev, now);
    }
}

/* The names of a PULL request, in the arena. */
static void tip_pull(struct tipserver *ts, const char *body, size_t len, int csv, struct outcome *o)
{
    o->pull = arena_alloc(ts->o.arena, sizeof(*o->pull));
    if (!o->pull)
        outcome_fail(o, R_invalid_body, "out of memory");
    else if (sp_tip_parse_pull(body, len, csv, o->pull) != SP_OK)
        outcome_fail(o, R_invalid_body, "TagoTiP PULL: expected %s",
                     csv ? "name,name,..." : "[name;...]");
}

/* ---- routes ------------------------------------------------------------ */

/*
 * "$tip/{serial}/push" or "$tips/{serial}/pull" and the like: the serial
 * level (in the arena), or NULL; *method gets the last level.
 */
static const char *tip_serial(struct tipserver *ts, const char *topic, const char **method)
{
    const char *s = strchr(topic, '/');
    if (!s)
        return NULL;
    const char *e = strchr(s + 1, '/');
    if (!e || e == s + 1 || strchr(e + 1, '/'))
        return NULL;
    *method = e + 1;
    return arena_strndup(ts->o.arena, s + 1, (size_t)(e - s - 1));
}

/*
 * The key among the device's that opens envelope m (header h) into *inner
 * (in the arena), or NULL with o a dead letter (or o->db_error set). Trial
 * decryption: hash collisions and keys in their rotation grace.
 */
static const struct device_key *tips_open(struct tipserver *ts, const struct ingest_msg *m,
                                          const struct sp_env_header *h, const char *tserial,
                                          int64_t now, uint8_t **inner, size_t *inner_len,
                                          struct outcome *o)
{
    const struct device_key *keys;
    size_t nkeys;
    int rc = devcache_keys(ts->o.devs, h->auth_hash, h->device_hash, now, ts->o.key_grace_ms, &keys,
                           &nkeys);

    if (rc == SP_ERR_CRYPTO) {
        outcome_fail(o, R_auth_failed,
                     "a stored key for these hashes does not open under master.key (topic serial "
                     "%s); was master.key replaced?",
                     tserial);
        return NULL;
    }
    if (rc) {
        o->db_error = rc;
        return NULL;
    }
    if (nkeys == 0) {
        outcome_fail(o, R_unknown_device,
                     "no device with these auth and device hashes (topic serial %s)", tserial);
        return NULL;
    }
    if (!(*inner = arena_alloc(ts->o.arena, m->len))) {
        outcome_fail(o, R_bad_envelope, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < nkeys; i++) {
        if (keys[i].suite != h->suite)
            continue;
        if (sp_env_open(h, m->payload, m->len, keys[i].key, keys[i].key_len, *inner, m->len,
                        inner_len) == SP_OK)
            return &keys[i];
    }
    outcome_fail(o, R_auth_failed, "no key of device %s opens the envelope (suite %s)", tserial,
                 sp_suite_name(h->suite) ? sp_suite_name(h->suite) : "?");
    return NULL;
}

/* The envelope's header, checked against the topic's method; 0 or -1 (o failed). */
static int tips_header(const struct ingest_msg *m, const char *method, struct sp_env_header *h,
                       struct outcome *o)
{
    int rc = sp_env_parse_header(m->payload, m->len, h);
    if (rc) {
        o->fallback = errors_wirecode(rc);
        outcome_fail(o, R_bad_envelope, "%s (%s)", errors_strerror(rc), errors_wirecode(rc));
        return -1;
    }
    if (!method) /* a whole envelope: any uplink method */
        return 0;
    int want = strcmp(method, "push") == 0 ? SP_METHOD_PUSH : SP_METHOD_PULL;
    if (h->method != SP_METHOD_PING && h->method != want) {
        o->fallback = errors_wirecode(SP_ERR_METHOD);
        outcome_fail(o, R_bad_envelope, "envelope method %d on %s", h->method, m->topic);
        return -1;
    }
    return 0;
}

/*
 * The opened inner frame of key k: SERIAL|BODY (SERIAL alone for PING), the
 * serial k's and the topic's. Returns 0 with *body set, or -1 (o failed).
 */
static int tips_inner(const uint8_t *inner, size_t len, int method, const struct device_key *k,
                      const char *tserial, struct sp_span *body, struct outcome *o)
{
    struct sp_span serial;

    if (sp_inner_split((const char *)inner, len, method, &serial, body) != SP_OK) {
        outcome_fail(o, R_invalid_body, "inner frame is not SERIAL%s",
                     method == SP_METHOD_PING ? "" : "|BODY");
        return -1;
    }
    if (serial.n != strlen(k->serial) || memcmp(serial.p, k->serial, serial.n) != 0) {
        outcome_fail(o, R_auth_failed, "inner serial '%.*s' does not match device %s",
                     (int)serial.n, serial.p, k->serial);
        return -1;
    }
    if (tserial && strcmp(tserial, k->serial) != 0) {
        outcome_fail(o, R_auth_failed, "envelope of device %s published on the topic of %s",
                     k->serial, tserial);
        return -1;
    }
    return 0;
}

/*
 * $tips/{serial}/push and /pull: a TagoTiP/S envelope (TagoTiPs.md §12). The
 * method is the envelope's: PUSH on /push, PULL on /pull, PING on either.
 * Until a key opens it, failures are answered in plaintext; after that,
 * sealed with that key.
 */
static void route_tips(struct tipserver *ts, const struct ingest_msg *m, int64_t now,
                       struct outcome *o)
{
    struct sp_env_header h;
    struct device_info dev;
    struct sp_span body;
    const char *method = NULL, *tserial = NULL;
    size_t inner_len = 0;

    /* A whole envelope (raw binding, HTTP /v1/tips) names its device in its
     * header alone; on MQTT the topic names it too, and they must agree. */
    if (m->binding != INGEST_ENVELOPE &&
        (!(tserial = tip_serial(ts, m->topic, &method)) ||
         (strcmp(method, "push") != 0 && strcmp(method, "pull") != 0))) {
        outcome_fail(o, R_unsupported, "topic %s: $tips/{serial}/push and /pull are served",
                     m->topic);
        return;
    }
    o->answer = ANSWER_FALLBACK;
    o->answer_serial = tserial;
    /* A whole envelope: its counter makes it one of a kind, so the same bytes
     * again are a retry (ingest.h). */
    if (m->binding == INGEST_ENVELOPE)
        o->retry_ms = INGEST_ENVELOPE_RETRY_MS;
    if (tips_header(m, method, &h, o))
        return;
    o->envelope = 1;
    o->suite = h.suite;
    o->fallback = errors_wirecode(SP_ERR_AUTH);
    uint8_t *inner = NULL;
    const struct device_key *k =
        tips_open(ts, m, &h, tserial ? tserial : "-", now, &inner, &inner_len, o);
    if (!o->db_error)
        metrics_add_labels(METRIC_ENVELOPES,
                           sp_suite_name(h.suite) ? sp_suite_name(h.suite) : "unknown",
                           k ? "opened" : "failed", 1);
    if (!k)
        return;
    /* Opened: from here on the device gets sealed answers. */
    o->serial = k->serial;
    o->authenticated = 1;
    o->answer = ANSWER_SEALED;
    o->fallback = NULL;
    o->key = k;
    o->method = h.method;
    o->plain = inner;
    o->plain_len = inner_len;
    if (tips_inner(inner, inner_len, h.method, k, tserial, &body, o))
        return;
    if (outcome_device(o, ts->o.devs, k->serial, 0, &dev))
        return;
    /* Checked and advanced by finish(), with the message's rows. */
    o->check_counter = dev.counter_mode == COUNTER_STRICT;
    o->env_counter = h.counter;
    if (h.method == SP_METHOD_PUSH)
        tip_body(ts, m, &dev, (const char *)body.p, body.n, now, o);
    else if (h.method == SP_METHOD_PULL)
        tip_pull(ts, (const char *)body.p, body.n, 0, o);
}

/* The 16 hex digits of an Authorization header as bytes; 0, or -1. */
static int tip_auth_hex(const char *hex, uint8_t hash[SP_HASH_LEN])
{
    size_t n = hex ? strlen(hex) : 0;

    return n == 2 * SP_HASH_LEN && sp_hex_decode(hex, n, hash, SP_HASH_LEN) == (int)SP_HASH_LEN
               ? 0
               : -1;
}

/*
 * The device of a request that carries its credentials (an HTTP request,
 * a raw frame), checked profile first as TagoIO does (TagoTipServers.md
 * §2.2, TagoTiP.md §4.3): a hash (NULL: unreadable) that no profile has is
 * invalid_token; a serial that is not a device of that profile is
 * device_not_found, whether it exists elsewhere or not. Then o is
 * authenticated, and plaintext_refused if the device requires TagoTiP/S.
 * Returns 0 with *dev, or -1 with o failed (or o->db_error set).
 */
static int tip_login(struct tipserver *ts, const char *serial, const uint8_t *hash,
                     struct device_info *dev, struct outcome *o)
{
    const struct device_info *d;
    int rc = hash ? devcache_profile_known(ts->o.devs, hash) : 0;

    if (rc < 0) {
        o->db_error = rc;
        return -1;
    }
    if (!rc) {
        o->fallback = "invalid_token";
        outcome_fail(o, R_auth_failed, "no profile has this authorization hash");
        return -1;
    }
    rc = devcache_device(ts->o.devs, serial, &d);
    if (rc && rc != SP_ERR_NODEVICE) {
        o->db_error = rc;
        return -1;
    }
    if (rc || sodium_memcmp(d->auth_hash, hash, SP_HASH_LEN) != 0) {
        outcome_fail(o, R_unknown_device,
                     "no device '%s' in the profile of this authorization hash", serial);
        return -1;
    }
    *dev = *d;
    o->serial = d->serial;
    o->dev = d;
    o->created = d->created_ms;
    o->authenticated = 1;
    if (!d->encryption_required)
        return 0;
    outcome_fail(o, R_plaintext_refused, "device %s requires TagoTiP/S", d->serial);
    return -1;
}

/* The method of a $tip topic's last level: push, pull, and ping where the
 * binding has it (HTTP's HEAD). -1: none. */
static int tip_method(const char *level, int binding)
{
    if (strcmp(level, "push") == 0)
        return SP_METHOD_PUSH;
    if (strcmp(level, "pull") == 0)
        return SP_METHOD_PULL;
    if (binding == INGEST_HTTP && strcmp(level, "ping") == 0)
        return SP_METHOD_PING;
    return -1;
}

/* A PUSH, PULL or PING body of device dev, checked already. */
static void tip_serve(struct tipserver *ts, const struct ingest_msg *m,
                      const struct device_info *dev, int method, int csv, struct sp_span body,
                      int64_t now, struct outcome *o)
{
    o->method = method;
    if (method == SP_METHOD_PULL)
        tip_pull(ts, body.p, body.n, csv, o);
    else if (method == SP_METHOD_PUSH)
        tip_body(ts, m, dev, body.p, body.n, now, o);
}

/*
 * $tip/{serial}/push and /pull: the MQTT binding (TagoTipServers.md §3),
 * whose sender the source authenticated; and the HTTP binding's
 * /push, /pull and /ping (§2), whose Authorization hash is checked here.
 */
static void route_tip(struct tipserver *ts, const struct ingest_msg *m, int64_t now,
                      struct outcome *o)
{
    struct device_info dev;
    struct sp_span body;
    const char *level, *serial = tip_serial(ts, m->topic, &level);
    int method = serial ? tip_method(level, m->binding) : -1;

    if (method < 0) {
        outcome_fail(o, R_unsupported, "topic %s: $tip/{serial}/push and /pull are served",
                     m->topic);
        return;
    }
    o->answer = ANSWER_PLAIN;
    o->answer_serial = serial;
    o->method = method;
    if (sp_tip_split_counter((const char *)m->payload, m->len, &o->has_counter, &o->counter,
                             &body) != SP_OK) {
        outcome_fail(o, R_invalid_body, "malformed !N counter prefix");
        return;
    }
    /* MQTT: the broker authenticated the sender; HTTP: check its hash first,
     * then whether the device takes plaintext. */
    if (m->binding == INGEST_HTTP) {
        uint8_t hash[SP_HASH_LEN];
        if (tip_login(ts, serial, tip_auth_hex(m->auth, hash) ? NULL : hash, &dev, o))
            return;
    } else if (outcome_device(o, ts->o.devs, serial, 1, &dev)) {
        return;
    }
    tip_serve(ts, m, &dev, method, 1, body, now, o);
}

/*
 * A whole frame METHOD|[!N|]AUTH|SERIAL[|BODY]: the raw binding
 * (TagoTipServers.md §4, TagoTiP.md §4), with its credentials in it.
 */
static void route_frame(struct tipserver *ts, const struct ingest_msg *m, int64_t now,
                        struct outcome *o)
{
    struct sp_tip_frame f;
    struct device_info dev;
    int rc = sp_tip_parse_frame((const char *)m->payload, m->len, &f);

    o->answer = ANSWER_FRAME;
    if (rc) {
        /* The ERR answer echoes the counter all the same (TagoTiP.md §4.2). */
        o->has_counter = sp_tip_frame_counter((const char *)m->payload, m->len, &o->counter);
        o->fallback = errors_wirecode(rc);
        outcome_fail(o, R_invalid_body, "TagoTiP frame: %s (%s)", errors_strerror(rc),
                     errors_wirecode(rc));
        return;
    }
    o->has_counter = f.has_counter;
    o->counter = f.counter;
    if (f.has_counter) /* a device repeats its "!N" only in a retry */
        o->retry_ms = INGEST_RETRY_MS;
    o->answer_serial = arena_strndup(ts->o.arena, f.serial.p, f.serial.n);
    if (!o->answer_serial) {
        outcome_fail(o, R_invalid_body, "out of memory");
        return;
    }
    if (tip_login(ts, o->answer_serial, f.auth_hash, &dev, o))
        return;
    tip_serve(ts, m, &dev, f.method, 0, f.body, now, o);
}

int tipserver_route(struct tipserver *ts, const struct ingest_msg *m, int64_t now,
                    struct outcome *o)
{
    if (m->binding == INGEST_FRAME)
        route_frame(ts, m, now, o);
    else if (m->binding == INGEST_ENVELOPE || strncmp(m->topic, "$tips/", 6) == 0)
        route_tips(ts, m, now, o);
    else if (strncmp(m->topic, "$tip/", 5) == 0)
        route_tip(ts, m, now, o);
    else
        return 0;
    return 1;
}

void tipserver_too_large(struct tipserver *ts, const struct ingest_msg *m, struct outcome *o)
{
    const char *method;
    int tips = strncmp(m->topic, "$tips/", 6) == 0;

    if (m->binding == INGEST_FRAME)
        o->answer = ANSWER_FRAME;
    else if (m->binding == INGEST_ENVELOPE)
        o->answer = ANSWER_FALLBACK;
    else if ((tips || strncmp(m->topic, "$tip/", 5) == 0) &&
             (o->answer_serial = tip_serial(ts, m->topic, &method)) != NULL)
        o->answer = tips ? ANSWER_FALLBACK : ANSWER_PLAIN;
    if (o->answer == ANSWER_FALLBACK)
        o->fallback = errors_wirecode(SP_ERR_ENVTOOLARGE);
    /* An HTTP request's credentials are outside its body: one from its
     * device is a dead letter of that device like an MQTT one. */
    uint8_t hash[SP_HASH_LEN];
    struct device_info d;
    struct outcome check = *o;
    if (m->binding == INGEST_HTTP && o->answer_serial && tip_auth_hex(m->auth, hash) == 0 &&
        (tip_login(ts, o->answer_serial, hash, &d, &check) == 0 || check.authenticated)) {
        o->authenticated = 1;
        o->serial = check.serial;
        o->dev = check.dev;
        o->created = check.created;
    }
}

/* ---- answers to devices ------------------------------------------------ */

/* The wire code a failed TagoTiP message is answered with (TagoTiP.md §9.2). */
static const char *err_code(const struct outcome *o)
{
    if (o->fallback)
        return o->fallback;
    switch (o->reason) {
    case R_unknown_device:
        return "device_not_found";
    case R_invalid_body:
    case R_analysis_error: /* the device's parser could not read it */
        return "invalid_payload";
    case R_replay:
        return "invalid_seq";
    case R_plaintext_refused:
    case R_auth_failed:
        return "auth_failed";
    case R_too_large:
        return o->answer == ANSWER_PLAIN || o->answer == ANSWER_FRAME ? "payload_too_large"
                                                                      : "envelope_too_large";
    case R_unsupported:
        return "invalid_method";
    default:
        return "server_error";
    }
}

/* 1-100 of [a-z0-9_]: what TagoTiP accepts as a name, group or metadata key. */
static int tip_ident(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
            return 0;
    return n > 0 && n <= SP_MAX_NAME;
}

/*
 * Adds the value of r as variable name to b, with its #unit and, in Revision
 * D syntax, its location: the @= suffix of a value, or the @= operator when
 * the location is all r holds. 0 when r has nothing TagoTiP can carry.
 */
static int pull_value(struct sp_tip_builder *b, const char *name, const struct record *r)
{
    switch (r->type) {
    case RECORD_NUMBER:
        sp_tip_add_number(b, name, r->number, r->unit);
        break;
    case RECORD_STRING:
        if (strlen(r->string) != r->string_len)
            return 0; /* a NUL byte: TagoTiP cannot carry it */
        sp_tip_add_string(b, name, r->string, r->unit);
        break;
    case RECORD_BOOLEAN:
        sp_tip_add_bool(b, name, r->boolean);
        if (r->unit)
            sp_tip_var_unit(b, r->unit);
        break;
    default:
        if (!r->has_location)
            return 0;
        sp_tip_add_location(b, name, r->lat, r->lng, r->has_alt, r->alt);
        return 1;
    }
    if (r->has_location)
        sp_tip_var_location(b, r->lat, r->lng, r->has_alt, r->has_alt ? r->alt : 0);
    return 1;
}

/* Adds the metadata of r (but not mqtt_topic) to the variable just added. */
static void pull_meta(struct tipserver *ts, struct sp_tip_builder *b, const struct record *r)
{
    struct json *meta = NULL;
    struct buf nb;
    size_t nmeta = 0;

    if (!r->metadata ||
        json_parse(ts->o.arena, r->metadata, strlen(r->metadata), &meta, NULL, 0) != SP_OK)
        return;
    buf_init(&nb, 64);
    for (const struct json *m = meta->child; m && nmeta < SP_MAX_META; m = m->next) {
        const char *v = NULL;
        if (!tip_ident(m->key) || strcmp(m->key, "mqtt_topic") == 0)
            continue;
        buf_reset(&nb);
        if (m->type == JSON_STRING)
            v = m->str;
        else if (m->type == JSON_NUMBER && !json_write_number(&nb, m->number) && !buf_putc(&nb, 0))
            v = nb.p;
        else if (m->type == JSON_TRUE || m->type == JSON_FALSE)
            v = m->type == JSON_TRUE ? "true" : "false";
        if (v && *v && strlen(v) == (m->type == JSON_STRING ? m->len : strlen(v))) {
            sp_tip_var_meta(b, m->key, v);
            nmeta++;
        }
    }
    buf_cleanup(&nb);
}

/*
 * Adds record r as variable name to b. With full set, also its group and its
 * metadata (but not metadata.mqtt_topic, which sealpipe adds to everything);
 * the unit, the location and the time always. A record with neither a value
 * nor a location adds nothing.
 */
static void pull_var(struct tipserver *ts, struct sp_tip_builder *b, const char *name,
                     const struct record *r, int full)
{
    if (!pull_value(b, name, r))
        return;
    if (r->has_time)
        sp_tip_var_time(b, r->time_ms);
    if (!full)
        return;
    if (r->group && tip_ident(r->group))
        sp_tip_var_group(b, r->group);
    pull_meta(ts, b, r);
}

/* Adds r to b with everything that fits: all, the value alone, or nothing. */
static void pull_add(struct tipserver *ts, struct sp_tip_builder *b, const char *name,
                     const struct record *r)
{
    size_t before = b->nvars;

    for (int full = 1; full >= 0; full--) {
        pull_var(ts, b, name, r, full);
        if (!b->err)
            return;
        if (b->nvars > before)
            sp_tip_build_drop_last(b);
        b->err = SP_OK;
    }
}

/* 1 if name i of the PULL request was asked for before. */
static int pull_repeated(const struct sp_tip_pull *pull, size_t i)
{
    struct sp_span nm = pull->vars[i];
    for (size_t j = 0; j < i; j++)
        if (pull->vars[j].n == nm.n && memcmp(pull->vars[j].p, nm.p, nm.n) == 0)
            return 1;
    return 0;
}

/*
 * The answer to a PULL (TagoTiP.md §7.2): the last stored value of each
 * variable asked for, in PUSH body syntax, in the arena. A variable that
 * does not fit the frame with its group and metadata goes without them;
 * one that does not fit at all is left out, like one never stored.
 * Returns 0, SP_ERR_NOTFOUND (none found) or SP_ERR_DB.
 */
static int pull_answer(struct tipserver *ts, const struct outcome *o, char **out, size_t *out_len)
{
    /* Room for "!4294967295|OK|" before the list. */
    size_t cap = SP_MAX_FRAME - 16 + 1, len;
    char *buf = arena_alloc(ts->o.arena, cap);
    struct sp_tip_builder b;
    int rc;

    if (!buf)
        return SP_ERR_DB;
    sp_tip_build_init(&b, buf, cap);
    for (size_t i = 0; i < o->pull->nvars; i++) {
        if (pull_repeated(o->pull, i))
            continue;
        const char *name = arena_strndup(ts->o.arena, o->pull->vars[i].p, o->pull->vars[i].n);
        struct record r;
        if (!name)
            return SP_ERR_DB;
        rc = bucket_latest(ts->o.bk, o->serial, name, ts->o.arena, &r);
        if (rc == SP_ERR_NOTFOUND)
            continue;
        if (rc)
            return SP_ERR_DB;
        pull_add(ts, &b, name, &r);
    }
    if (b.nvars == 0)
        return SP_ERR_NOTFOUND;
    if (sp_tip_build_end(&b, &len) != SP_OK)
        return SP_ERR_DB;
    *out = buf;
    *out_len = len;
    return SP_OK;
}

/*
 * The status and detail of the answer to o: the wire code of its failure,
 * PONG, the PULL values or the record count (in count). Returns 0 or
 * SP_ERR_DB.
 */
static int answer_status(struct tipserver *ts, const struct outcome *o, char count[24], int *status,
                         const char **detail, size_t *dlen)
{
    *status = SP_ACK_OK;
    *detail = NULL;
    *dlen = 0;
    if (o->reason) {
        *status = SP_ACK_ERR;
        *detail = err_code(o);
    } else if (o->method == SP_METHOD_PING) {
        *status = SP_ACK_PONG;
    } else if (o->method == SP_METHOD_PULL) {
        char *list = NULL;
        int rc = pull_answer(ts, o, &list, dlen);
        if (rc == SP_ERR_NOTFOUND) {
            *status = SP_ACK_ERR;
            *detail = "variable_not_found";
        } else if (rc) {
            return rc;
        }
        *detail = list ? list : *detail;
    } else {
        snprintf(count, 24, "%zu", o->records.n);
        *detail = count;
    }
    if (*detail && !*dlen)
        *dlen = strlen(*detail);
    return SP_OK;
}

/* Seals answer frame a for the key that opened o's envelope; 1, 0 (dropped) or SP_ERR_DB. */
static int answer_seal(struct tipserver *ts, const struct ingest_msg *m, const struct outcome *o,
                       struct tip_answer *a)
{
    const struct device_info *d = o->dev;
    uint8_t *env;
    size_t len;
    int rc;

    /* o->dev is the key's device when outcome_device found it by the key's
     * serial; looked up when the message ended before that. */
    if (d && strcmp(d->serial, o->key->serial) != 0)
        d = NULL;
    if (!d && (rc = devcache_device(ts->o.devs, o->key->serial, &d)))
        return rc == SP_ERR_NODEVICE ? 0 : SP_ERR_DB; /* cannot happen: same snapshot */
    rc = tipserver__seal_ack(ts, o->key, d, a->payload, a->len, &env, &len);
    if (rc == SP_ERR_DB)
        return rc;
    if (rc) {
        LOG_WARN("answer dropped topic=%s error=\"%s\"", m->topic,
                 rc == SP_ERR_REPLAY ? "the key's nonce seeds are used up; rotate it"
                                     : errors_strerror(rc));
        return 0;
    }
    a->payload = env;
    a->len = len;
    return 1;
}

int tipserver_answer(struct tipserver *ts, const struct ingest_msg *m, const struct outcome *o,
                     struct tip_answer *out)
{
    const char *detail;
    char count[24], *frame, *topic;
    size_t dlen, cap;
    int status, form, n, rc;

    if ((rc = answer_status(ts, o, count, &status, &detail, &dlen)))
        return rc;
    form = o->answer == ANSWER_PLAIN    ? SP_ACK_MQTT
           : o->answer == ANSWER_SEALED ? SP_ACK_INNER
                                        : SP_ACK_FRAME;
    cap = dlen + 32;
    frame = arena_alloc(ts->o.arena, cap);
    /* The topic MQTT answers on; other bindings answer the request itself. */
    topic = arena_printf(ts->o.arena, "%s/%s/ack",
                         o->answer == ANSWER_PLAIN || o->answer == ANSWER_FRAME ? "$tip" : "$tips",
                         o->answer_serial ? o->answer_serial : "-");
    if (!frame || !topic)
        return SP_ERR_DB;
    n = sp_tip_build_ack(form, o->has_counter, o->counter, status, detail, dlen, frame, cap);
    if (n < 0) {
        LOG_WARN("answer dropped topic=%s error=\"%s\"", m->topic, errors_strerror(n));
        return 0;
    }
    *out = (struct tip_answer){topic, (const uint8_t *)frame, (size_t)n};
    return o->answer == ANSWER_SEALED ? answer_seal(ts, m, o, out) : 1;
}
