/*
 * pipeline.c - the batch loop and the per-message path (see pipeline.h).
 *
 * Every message ends in exactly one of three ways, each inside the batch
 * transaction: its records are stored, it is stored as a dead letter with a
 * reason, or it is recognised as a redelivery of a message already committed
 * and skipped. A message's own failure is never a batch failure; only a
 * database error is, and then nothing of the batch is acknowledged.
 *
 * Dead-letter reasons (the `reason` column, and the stats line):
 *   too_large        payload over SP_LIMIT_PAYLOAD, TagoTiP body over 16,384 bytes
 *   no_route         topic matches no analysis (a subscription left over from
 *                    an analysis that was just removed)
 *   unknown_device   no such device (serial or envelope hashes)
 *   bad_envelope     TagoTiP/S header rejected (version, cipher, method, size)
 *   auth_failed      no key opens the envelope, or the inner serial differs
 *   replay           TagoTiP/S counter not greater than the last accepted one
 *   plaintext_refused a device that requires encryption sent plaintext
 *   invalid_body     TagoTiP body or TagoIO JSON breaks a rule
 *   analysis_error   an analysis raised an error or returned invalid records
 *   timeout          an analysis hit its wall-clock or instruction limit
 *   unsupported      a $tip/$tips topic other than push and pull
 *   loop             published by analyses SP_LIMIT_HOPS times in a row
 *   memory           an analysis's Lua state hit its memory limit
 *   limit            an analysis hit a per-message limit (records, publishes,
 *                    publish size, insert or query calls)
 *   worker_crash     the worker died running the message, twice (once alone)
 *
 * An empty retained publish (which clears the topic's retained message) is
 * not a record: it is acknowledged and counted as `ignored`.
 */
#include "pipeline.h"
#include "errors.h"

#include <dirent.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sp_limits.h"
#include "log.h"
#include "devcache.h"
#include "route.h"
#include "sealpipe.h"

#define REASONS(XX)                                                                                \
    XX(too_large)                                                                                  \
    XX(no_route)                                                                                   \
    XX(unknown_device)                                                                             \
    XX(bad_envelope)                                                                               \
    XX(auth_failed)                                                                                \
    XX(replay)                                                                                     \
    XX(plaintext_refused)                                                                          \
    XX(invalid_body)                                                                               \
    XX(analysis_error)                                                                             \
    XX(timeout)                                                                                    \
    XX(unsupported)                                                                                \
    XX(loop)                                                                                       \
    XX(memory)                                                                                     \
    XX(limit)                                                                                      \
    XX(worker_crash)

enum reason {
    R_NONE,
#define XX(r) R_##r,
    REASONS(XX)
#undef XX
        R_COUNT
};

static const char *const reason_names[R_COUNT] = {"",
#define XX(r) #r,
                                                  REASONS(XX)
#undef XX
};

/* A publish waiting for the batch commit. */
struct pending_pub {
    const char *topic;
    const uint8_t *payload;
    size_t len;
    int qos;
    int retain;
    struct mqlink_origin from; /* profile and hop count it carries */
};

struct stats {
    uint64_t messages, stored, records, duplicates, ignored, dead[R_COUNT];
};

/* One analyses/NAME.lua as last seen, to notice changes. */
struct watched {
    char *name;
    struct timespec mtime, env_mtime; /* of NAME.lua, and of NAME.env (0: none) */
    off_t size, env_size;
    ino_t ino, env_ino;
    int seen;   /* in the current scan */
    int failed; /* this version did not load */
};

static void free_filters(char **f, size_t n);

/*
 * The error budget of one (analysis, device): failures in the current
 * one-minute window. A device whose messages keep failing an analysis (each
 * timeout costs a worker) has its further messages dead-lettered without
 * running it until the window ends; other devices are not affected.
 */
#define BUDGET_SLOTS  4096 /* a power of two; at most half used */
#define BUDGET_WINDOW 60000
struct budget {
    char *key; /* analysis "\0" serial; NULL: empty */
    size_t keylen;
    int64_t start; /* window start, Unix ms */
    int failures;
};

struct pipeline {
    const struct conf *c;
    struct registry *reg;
    struct devcache *devs; /* the registry in memory, synced per batch */
    struct bucket *bk;
    struct pool *pool;
    struct arena arena;
    struct mqlink_msg *msgs;
    struct outcome *outs;  /* one per message of the batch */
    struct watched *watch; /* the analyses folder as last scanned */
    size_t nwatch;
    int scanned, dir_warned;
    char **subs; /* filters subscribed */
    size_t nsubs;
    struct budget *budgets; /* BUDGET_SLOTS, see struct budget */
    size_t nbudgets;
    unsigned char budget_key[crypto_shorthash_KEYBYTES];
    size_t batch;
    /* Messages of a cut batch wait in the bucket's deferred table. */
    int has_deferred; /* there may be some */
    int from_table;   /* the current batch comes from it */
    int64_t *table_ids;
    struct pending_pub *pubs;
    size_t npubs, cappubs;
    struct stats st;
};

/*
 * How a TagoTiP message is answered: plain on $tip/{serial}/ack
 * (TagoTipServers.md §3.5), sealed with the device's key on
 * $tips/{serial}/ack, or, when the envelope could not be opened, the
 * plaintext fallback "ACK|ERR|code" there (TagoTiPs.md §9).
 */
enum ack_kind { ACK_NONE, ACK_PLAIN, ACK_SEALED, ACK_FALLBACK };

/* The outcome of one message, before it is written. */
struct outcome {
    enum reason reason;
    const char *serial;
    struct record_vec records;
    /* TagoTiP: the answer, published once the message is committed. */
    int ack;                      /* enum ack_kind */
    const char *ack_serial;       /* serial level of the ack topic */
    int method;                   /* SP_METHOD_PUSH, PULL or PING */
    struct sp_tip_pull *pull;     /* PULL: the names asked for */
    const struct device_key *key; /* ACK_SEALED: the key that opened the envelope */
    const char *fallback;         /* the wire code of the failure, when the codec named it */
    int has_counter;              /* $tip: "!N|" to echo */
    uint32_t counter;
    /* A registry error that is not the message's fault: the batch is rolled
     * back and nothing acknowledged, so the message is redelivered. */
    int db_error;
    /* Its analysis's results did not fit in the batch memory: the batch is
     * cut before it and it runs again first in the next one. */
    int deferred;
    /* Filled by prepare() (phase 1), for run_jobs() and finish(). */
    uint8_t digest[BUCKET_DIGEST_LEN];
    int duplicate;             /* already committed: skip */
    int ignored;               /* not a record (a retained message cleared): skip */
    int job;                   /* analysis to run, -1: none */
    struct host_msg hm;        /* what it sees */
    int check_counter;         /* advance the device's TagoTiP/S counter */
    uint32_t env_counter;      /* to this */
    struct host_publish *pubs; /* the analysis's publishes, sent if stored */
    size_t npubs;
    struct host_insert *inserts; /* its insert() calls, stored with it */
    size_t ninserts;
    char detail[512]; /* last: prepare() clears only what comes before */
};

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void fail(struct outcome *o, enum reason r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct outcome *o, enum reason r, const char *fmt, ...)
{
    va_list ap;
    o->reason = r;
    va_start(ap, fmt);
    vsnprintf(o->detail, sizeof(o->detail), fmt, ap);
    va_end(ap);
}

static int queue_pub(struct pipeline *p, const char *topic, const uint8_t *payload, size_t len,
                     int qos, int retain, const struct mqlink_origin *from)
{
    if (p->npubs == p->cappubs) {
        size_t cap = p->cappubs ? p->cappubs * 2 : 64;
        void *np = realloc(p->pubs, cap * sizeof(*p->pubs));
        if (!np)
            return SP_ERR_NOMEM;
        p->pubs = np;
        p->cappubs = cap;
    }
    p->pubs[p->npubs++] = (struct pending_pub){
        topic, payload, len, qos, retain, from ? *from : (struct mqlink_origin){0}};
    return SP_OK;
}

/* ---- analyses ---------------------------------------------------------- */

/*
 * Asks for analysis ai to run on a message for device dev with the default
 * records (in run_jobs, for the whole batch at once); the records it returns
 * replace o->records.
 */
static void run_analysis(struct pipeline *p, int ai, const struct mqlink_msg *m,
                         const struct device_info *dev, int64_t now, struct outcome *o)
{
    (void)p;
    o->job = ai;
    o->hm = (struct host_msg){
        .topic = m->topic,
        .payload = m->payload,
        .payload_len = m->len,
        .qos = m->qos,
        .retain = m->retain,
        .received_ms = now,
        .serial = dev->serial,
        .device_name = dev->name,
        .tags_json = dev->tags_json,
        .params_json = dev->params_json,
        .records = o->records.v,
        .nrecords = o->records.n,
    };
}

/* The budget slot of (analysis, serial), created if create; NULL if none. */
static struct budget *budget_of(struct pipeline *p, const char *analysis, const char *serial,
                                int64_t now, int create)
{
    char key[SP_LIMIT_TOPIC + SP_MAX_SERIAL + 2];
    size_t a = strlen(analysis), s = serial ? strlen(serial) : 0;
    unsigned char h[crypto_shorthash_BYTES];
    uint64_t v;

    if (!p->budgets || a + s + 1 >= sizeof(key))
        return NULL;
    memcpy(key, analysis, a + 1);
    memcpy(key + a + 1, serial ? serial : "", s);
    size_t n = a + 1 + s;
    crypto_shorthash(h, (const unsigned char *)key, n, p->budget_key);
    memcpy(&v, h, sizeof v);
    size_t i = (size_t)v & (BUDGET_SLOTS - 1);
    for (; p->budgets[i].key; i = (i + 1) & (BUDGET_SLOTS - 1))
        if (p->budgets[i].keylen == n && memcmp(p->budgets[i].key, key, n) == 0)
            return &p->budgets[i];
    if (!create)
        return NULL;
    if (p->nbudgets >= BUDGET_SLOTS / 2) {
        /* Full of windows: start over (old windows only made devices wait). */
        for (size_t k = 0; k < BUDGET_SLOTS; k++)
            free(p->budgets[k].key);
        memset(p->budgets, 0, BUDGET_SLOTS * sizeof(*p->budgets));
        p->nbudgets = 0;
        return budget_of(p, analysis, serial, now, create);
    }
    char *copy = malloc(n);
    if (!copy)
        return NULL;
    memcpy(copy, key, n);
    p->budgets[i] = (struct budget){.key = copy, .keylen = n, .start = now};
    p->nbudgets++;
    return &p->budgets[i];
}

/* 1 if the device has used up its failures for this analysis this minute. */
static int budget_spent(struct pipeline *p, const char *analysis, const char *serial, int64_t now)
{
    struct budget *b = p->c->lua_error_budget ? budget_of(p, analysis, serial, now, 0) : NULL;
    if (!b || now - b->start >= BUDGET_WINDOW)
        return 0;
    return b->failures >= p->c->lua_error_budget;
}

static void budget_fail(struct pipeline *p, const char *analysis, const char *serial, int64_t now)
{
    struct budget *b = p->c->lua_error_budget ? budget_of(p, analysis, serial, now, 1) : NULL;
    if (!b)
        return;
    if (now - b->start >= BUDGET_WINDOW) {
        b->start = now;
        b->failures = 0;
    }
    if (++b->failures == p->c->lua_error_budget)
        LOG_WARN("analysis %s: device %s failed it %d times within a minute; its messages skip "
                 "it until the minute ends",
                 analysis, serial ? serial : "-", b->failures);
}

/* query() from an analysis: committed data of the buckets. */
static int answer_query(void *ctx, const struct host_query *q, struct arena *a,
                        struct record_vec *out, char *err, size_t errlen)
{
    struct pipeline *p = ctx;
    int rc = bucket_query(p->bk, q->serial, q->variable, q->start_ms, q->stop_ms, q->qty, a, out);
    if (rc)
        snprintf(err, errlen, "query failed: %s", errors_strerror(rc));
    return rc;
}

/* The dead-letter reason of a failed analysis run (pool_run's rc). */
static enum reason run_reason(int rc)
{
    switch (rc) {
    case SP_ERR_TIMEOUT: /* the wall clock or the instruction count */
        return R_timeout;
    case SP_ERR_NOMEM: /* the Lua state's memory */
        return R_memory;
    case SP_ERR_LIMIT: /* records, publishes, publish size, inserts, queries */
        return R_limit;
    case SP_ERR_CRASH:
        return R_worker_crash;
    default:
        return R_analysis_error;
    }
}

/* What handle() logged, then one WARN line if its log lines were cut. */
static void job_log(const struct pool_job *j, const char *name, const char *serial)
{
    for (size_t l = 0; l < j->out.nlogs; l++)
        LOG_INFO("analysis %s device=%s log: \"%s\"", name, serial, j->out.logs[l]);
    if (j->out.logs_dropped)
        LOG_WARN("analysis %s device=%s limit=log_lines: more than %d lines in one handle() call, "
                 "%zu dropped",
                 name, serial, HOST_LOG_LINES, j->out.logs_dropped);
}

/* Phase 2: runs the analyses the batch asked for, in one stream to the worker. */
static void run_jobs(struct pipeline *p, size_t n, int64_t now)
{
    struct pool_job *jobs = arena_calloc(&p->arena, n ? n : 1, sizeof(*jobs));
    size_t *of = arena_calloc(&p->arena, n ? n : 1, sizeof(*of));
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        struct outcome *o = &p->outs[i];
        if (o->job < 0 || o->reason || o->duplicate || o->db_error)
            continue;
        if (!jobs || !of) {
            o->deferred = 1; /* the batch's memory is full, not the message's fault */
            continue;
        }
        const char *name = pool_name(p->pool, (size_t)o->job);
        if (budget_spent(p, name, o->hm.serial, now)) {
            fail(o, R_analysis_error,
                 "analysis %s: skipped, device %s failed it %d times within the last minute", name,
                 o->hm.serial ? o->hm.serial : "-", p->c->lua_error_budget);
            continue;
        }
        jobs[k] = (struct pool_job){.analysis = (size_t)o->job, .msg = &o->hm};
        of[k++] = i;
    }
    if (k)
        pool_run(p->pool, jobs, k, &p->arena);
    for (size_t j = 0; j < k; j++) {
        struct outcome *o = &p->outs[of[j]];
        const char *name = pool_name(p->pool, jobs[j].analysis);
        const char *serial = o->hm.serial ? o->hm.serial : "-";
        if (jobs[j].rc == SP_ERR_FULL) {
            o->deferred = 1;
            continue;
        }
        job_log(&jobs[j], name, serial);
        if (jobs[j].rc) {
            enum reason r = run_reason(jobs[j].rc);
            budget_fail(p, name, o->hm.serial, now);
            fail(o, r, "analysis %s: %s", name, jobs[j].err);
            /* A limit or a crash is an operator's business: one line each. */
            if (r != R_analysis_error)
                LOG_WARN("analysis %s device=%s reason=%s: %s", name, serial, reason_names[r],
                         jobs[j].err);
        } else {
            o->records = jobs[j].out.records;
            o->pubs = jobs[j].out.publishes;
            o->npubs = jobs[j].out.npublishes;
            o->inserts = jobs[j].out.inserts;
            o->ninserts = jobs[j].out.ninserts;
            /* publish{seal_for=} needs a registered device with a key. */
            for (size_t m = 0; m < o->npubs && !o->reason; m++) {
                const struct device_info *d;
                if (!o->pubs[m].seal_for)
                    continue;
                int rc = devcache_device(p->devs, o->pubs[m].seal_for, &d);
                if (rc == SP_ERR_NODEVICE || (rc == SP_OK && d->suite < 0))
                    fail(o, R_analysis_error, "analysis %s: publish() sealed for %s '%s'", name,
                         rc ? "unknown device" : "a device without a key", o->pubs[m].seal_for);
                else if (rc)
                    o->db_error = rc;
            }
            /* insert() may name any registered device, and only those. */
            for (size_t m = 0; m < o->ninserts && !o->reason; m++) {
                const struct device_info *d;
                int rc = devcache_device(p->devs, o->inserts[m].serial, &d);
                if (rc == SP_ERR_NODEVICE)
                    fail(o, R_analysis_error, "analysis %s: insert() for unknown device '%s'", name,
                         o->inserts[m].serial);
                else if (rc)
                    o->db_error = rc;
            }
        }
    }
}

/* The device's payload parser, if it names one that is loaded; else -1. */
static int parser_of(struct pipeline *p, const struct device_info *dev, struct outcome *o)
{
    if (!dev->parser || !*dev->parser)
        return -1;
    int ai = pool_find(p->pool, dev->parser);
    if (ai < 0)
        fail(o, R_analysis_error, "device %s names parser '%s', which is not loaded", dev->serial,
             dev->parser);
    return ai;
}

/* ---- TagoTiP bodies ---------------------------------------------------- */

/*
 * The merged metadata of variable v (TagoTiP.md §6.4) as a JSON object in b,
 * or nothing when it has none.
 */
static int meta_json(struct buf *b, const struct sp_tip_body *tb, const struct sp_tip_var *v)
{
    static char val[SP_MAX_FRAME + 1];
    struct sp_span k, sv;
    size_t pos = 0;
    int first = 1;

    buf_reset(b);
    while (sp_tip_meta_each(tb, v, &pos, &k, &sv)) {
        int n = sp_tip_unescape(sv, val, sizeof(val));
        if (n < 0)
            return n;
        if (buf_putc(b, first ? '{' : ',') || json_write_string(b, k.p, k.n) || buf_putc(b, ':') ||
            json_write_string(b, val, (size_t)n))
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
 * Turns a TagoTiP PUSH body into records. Passthrough bodies become the
 * "payload" record (hex data decoded to bytes then shown as hex text, base64
 * delivered as text) and *raw is set so the device's parser gets them.
 */
static int tip_records(struct pipeline *p, const char *body, size_t len, const char *topic,
                       struct outcome *o, int *raw)
{
    static struct sp_tip_body tb; /* 10 KB: keep it off the stack; single-threaded */
    struct buf b;
    char err[256];
    int rc;

    *raw = 0;
    if ((rc = sp_tip_parse_body(body, len, &tb))) {
        o->fallback = errors_wirecode(rc); /* payload_too_large or invalid_payload */
        fail(o, rc == SP_ERR_TOOLARGE ? R_too_large : R_invalid_body, "TagoTiP body: %s%s",
             errors_strerror(rc), rc == SP_ERR_TOOLARGE ? " (more than 16,384 bytes)" : "");
        return rc;
    }
    if (tb.passthrough) {
        *raw = 1;
        const char *value;
        if (tb.passthrough == 'x') {
            /* Canonical lowercase hex of the decoded bytes. */
            char *h = arena_alloc(&p->arena, tb.data.n + 1);
            if (!h)
                return SP_ERR_NOMEM;
            for (size_t i = 0; i < tb.data.n; i++)
                h[i] = (char)(tb.data.p[i] >= 'A' && tb.data.p[i] <= 'F' ? tb.data.p[i] + 32
                                                                         : tb.data.p[i]);
            h[tb.data.n] = '\0';
            value = h;
        } else {
            value = arena_strndup(&p->arena, tb.data.p, tb.data.n);
        }
        struct record *r = record_vec_push(&p->arena, &o->records);
        if (!r || !value)
            return SP_ERR_NOMEM;
        r->variable = "payload";
        r->type = RECORD_STRING;
        r->string = value;
        r->string_len = strlen(value);
        return record_set_meta(&p->arena, r, "mqtt_topic", topic, 1);
    }
    buf_init(&b, SP_LIMIT_METADATA + 64);
    for (size_t i = 0; i < tb.nvars; i++) {
        const struct sp_tip_var *v = &tb.vars[i];
        struct record *r = record_vec_push(&p->arena, &o->records);
        if (!r) {
            rc = SP_ERR_NOMEM;
            goto out;
        }
        r->variable = span_dup(&p->arena, v->name);
        switch (v->type) {
        case SP_TIP_NUMBER:
            r->type = RECORD_NUMBER;
            r->number = v->number;
            break;
        case SP_TIP_BOOLEAN:
            r->type = RECORD_BOOLEAN;
            r->boolean = v->boolean;
            break;
        case SP_TIP_LOCATION:
            r->type = RECORD_NONE;
            r->has_location = 1;
            r->lat = v->lat;
            r->lng = v->lng;
            r->has_alt = v->has_alt;
            r->alt = v->alt;
            break;
        default: {
            char *s = arena_alloc(&p->arena, v->value.n + 1);
            int n = s ? sp_tip_unescape(v->value, s, v->value.n + 1) : SP_ERR_NOMEM;
            if (n < 0) {
                rc = n;
                goto out;
            }
            r->type = RECORD_STRING;
            r->string = s;
            r->string_len = (size_t)n;
        }
        }
        r->unit = span_dup(&p->arena, v->unit);
        r->has_time = v->has_time;
        r->time_ms = v->time_ms;
        r->group = span_dup(&p->arena, v->group);
        if ((rc = meta_json(&b, &tb, v)))
            goto out;
        if (b.len)
            r->metadata = arena_strndup(&p->arena, b.p, b.len);
        /* Like every record: the topic, unless the device set its own. */
        if ((rc = record_set_meta(&p->arena, r, "mqtt_topic", topic, 0))) {
            fail(o, R_invalid_body, "variable %zu: metadata too large", i + 1);
            goto out;
        }
        if ((rc = record_validate(&p->arena, r, err, sizeof(err)))) {
            fail(o, R_invalid_body, "variable %zu: %s", i + 1, err);
            goto out;
        }
    }
    rc = SP_OK;
out:
    buf_cleanup(&b);
    if (rc == SP_ERR_NOMEM)
        fail(o, R_invalid_body, "body too large to convert");
    return rc;
}

/* Records for a TagoTiP body of device dev, through its parser if raw. */
static void tip_body(struct pipeline *p, const struct mqlink_msg *m, const struct device_info *dev,
                     const char *body, size_t len, int64_t now, struct outcome *o)
{
    int raw;

    if (tip_records(p, body, len, m->topic, o, &raw) != SP_OK) {
        if (!o->reason)
            fail(o, R_invalid_body, "cannot convert body");
        return;
    }
    if (raw) {
        int ai = parser_of(p, dev, o);
        if (ai >= 0)
            run_analysis(p, ai, m, dev, now, o);
    }
}

/* ---- routes ------------------------------------------------------------ */

static int device_get(struct pipeline *p, const char *serial, struct device_info *dev,
                      struct outcome *o)
{
    const struct device_info *cached;
    int rc = devcache_device(p->devs, serial, &cached);
    if (rc == SP_OK)
        *dev = *cached;
    if (rc == SP_ERR_NODEVICE)
        fail(o, R_unknown_device, "no device '%s'", serial);
    else if (rc)
        o->db_error = rc;
    else
        o->serial = dev->serial;
    return rc;
}

/* device_get for a message in the clear: refused if the device requires TagoTiP/S. */
static int plain_device_get(struct pipeline *p, const char *serial, struct device_info *dev,
                            struct outcome *o)
{
    if (device_get(p, serial, dev, o))
        return -1;
    if (dev->encryption_required) {
        fail(o, R_plaintext_refused, "device %s requires TagoTiP/S", serial);
        return -1;
    }
    return 0;
}

/*
 * "$tip/{serial}/push" or "$tips/{serial}/pull" and the like: the serial
 * level (in the arena), or NULL; *method gets the last level.
 */
static const char *tip_serial(struct pipeline *p, const char *topic, const char **method)
{
    const char *s = strchr(topic, '/');
    if (!s)
        return NULL;
    const char *e = strchr(s + 1, '/');
    if (!e || e == s + 1 || strchr(e + 1, '/'))
        return NULL;
    *method = e + 1;
    return arena_strndup(&p->arena, s + 1, (size_t)(e - s - 1));
}

/* The names of a PULL request, in the arena. */
static void tip_pull(struct pipeline *p, const char *body, size_t len, int csv, struct outcome *o)
{
    o->pull = arena_alloc(&p->arena, sizeof(*o->pull));
    if (!o->pull)
        fail(o, R_invalid_body, "out of memory");
    else if (sp_tip_parse_pull(body, len, csv, o->pull) != SP_OK)
        fail(o, R_invalid_body, "TagoTiP PULL: expected %s", csv ? "name,name,..." : "[name;...]");
}

/*
 * $tips/{serial}/push and /pull: a TagoTiP/S envelope (TagoTiPs.md §12). The
 * method is the envelope's: PUSH on /push, PULL on /pull, PING on either.
 * Until a key opens it, failures are answered in plaintext; after that,
 * sealed with that key.
 */
static void route_tips(struct pipeline *p, const struct mqlink_msg *m, int64_t now,
                       struct outcome *o)
{
    struct sp_env_header h;
    const struct device_key *keys;
    struct device_info dev;
    struct sp_span serial, body;
    const char *method, *tserial = tip_serial(p, m->topic, &method);
    size_t nkeys, inner_len = 0;
    int rc;

    if (!tserial || (strcmp(method, "push") != 0 && strcmp(method, "pull") != 0)) {
        fail(o, R_unsupported, "topic %s: $tips/{serial}/push and /pull are served", m->topic);
        return;
    }
    o->ack = ACK_FALLBACK;
    o->ack_serial = tserial;
    if ((rc = sp_env_parse_header(m->payload, m->len, &h))) {
        o->fallback = errors_wirecode(rc);
        fail(o, R_bad_envelope, "%s (%s)", errors_strerror(rc), errors_wirecode(rc));
        return;
    }
    int want = strcmp(method, "push") == 0 ? SP_METHOD_PUSH : SP_METHOD_PULL;
    if (h.method != SP_METHOD_PING && h.method != want) {
        o->fallback = errors_wirecode(SP_ERR_METHOD);
        fail(o, R_bad_envelope, "envelope method %d on %s", h.method, m->topic);
        return;
    }
    o->fallback = errors_wirecode(SP_ERR_AUTH);
    rc = devcache_keys(p->devs, h.auth_hash, h.device_hash, now, (int64_t)p->c->key_grace * 1000,
                       &keys, &nkeys);
    if (rc == SP_ERR_CRYPTO) {
        fail(o, R_auth_failed,
             "a stored key for these hashes does not open under master.key (topic serial %s); "
             "was master.key replaced?",
             tserial);
        return;
    }
    if (rc) {
        o->db_error = rc;
        return;
    }
    if (nkeys == 0) {
        fail(o, R_unknown_device, "no device with these auth and device hashes (topic serial %s)",
             tserial);
        return;
    }
    uint8_t *inner = arena_alloc(&p->arena, m->len);
    if (!inner) {
        fail(o, R_bad_envelope, "out of memory");
        return;
    }
    /* Trial decryption: hash collisions and keys in their rotation grace. */
    const struct device_key *k = NULL;
    for (size_t i = 0; i < nkeys && !k; i++) {
        if (keys[i].suite != h.suite)
            continue;
        if (sp_env_open(&h, m->payload, m->len, keys[i].key, keys[i].key_len, inner, m->len,
                        &inner_len) == SP_OK)
            k = &keys[i];
    }
    if (!k) {
        fail(o, R_auth_failed, "no key of device %s opens the envelope (suite %s)", tserial,
             sp_suite_name(h.suite) ? sp_suite_name(h.suite) : "?");
        return;
    }
    /* Opened: from here on the device gets sealed answers. */
    o->serial = k->serial;
    o->ack = ACK_SEALED;
    o->fallback = NULL;
    o->key = k;
    o->method = h.method;
    if (sp_inner_split((const char *)inner, inner_len, h.method, &serial, &body) != SP_OK) {
        fail(o, R_invalid_body, "inner frame is not SERIAL%s",
             h.method == SP_METHOD_PING ? "" : "|BODY");
        return;
    }
    if (serial.n != strlen(k->serial) || memcmp(serial.p, k->serial, serial.n) != 0) {
        fail(o, R_auth_failed, "inner serial '%.*s' does not match device %s", (int)serial.n,
             serial.p, k->serial);
        return;
    }
    if (strcmp(tserial, k->serial) != 0) {
        fail(o, R_auth_failed, "envelope of device %s published on the topic of %s", k->serial,
             tserial);
        return;
    }
    if (device_get(p, k->serial, &dev, o))
        return;
    /* Checked and advanced by finish(), with the message's rows. */
    o->check_counter = dev.counter_mode == COUNTER_STRICT;
    o->env_counter = h.counter;
    if (h.method == SP_METHOD_PUSH)
        tip_body(p, m, &dev, (const char *)body.p, body.n, now, o);
    else if (h.method == SP_METHOD_PULL)
        tip_pull(p, (const char *)body.p, body.n, 0, o);
}

/* $tip/{serial}/push and /pull: the MQTT binding (TagoTipServers.md §3). */
static void route_tip(struct pipeline *p, const struct mqlink_msg *m, int64_t now,
                      struct outcome *o)
{
    struct device_info dev;
    struct sp_span body;
    const char *method, *serial = tip_serial(p, m->topic, &method);
    int pull;

    if (!serial || (strcmp(method, "push") != 0 && strcmp(method, "pull") != 0)) {
        fail(o, R_unsupported, "topic %s: $tip/{serial}/push and /pull are served", m->topic);
        return;
    }
    pull = strcmp(method, "pull") == 0;
    o->ack = ACK_PLAIN;
    o->ack_serial = serial;
    o->method = pull ? SP_METHOD_PULL : SP_METHOD_PUSH;
    if (sp_tip_split_counter((const char *)m->payload, m->len, &o->has_counter, &o->counter,
                             &body) != SP_OK) {
        fail(o, R_invalid_body, "malformed !N counter prefix");
        return;
    }
    if (plain_device_get(p, serial, &dev, o))
        return;
    if (pull)
        tip_pull(p, body.p, body.n, 1, o);
    else
        tip_body(p, m, &dev, body.p, body.n, now, o);
}

static void route_topic(struct pipeline *p, const struct mqlink_msg *m, int64_t now,
                        struct outcome *o)
{
    char serial[SP_MAX_SERIAL + 1];
    struct device_info dev;
    char err[512];
    int ai = -1;

    for (size_t i = 0; i < pool_count(p->pool) && ai < 0; i++)
        for (size_t j = 0; j < pool_topic_count(p->pool, i); j++)
            if (route_match(pool_topic(p->pool, i, j), m->topic, serial, sizeof(serial))) {
                ai = (int)i;
                break;
            }
    if (ai < 0) {
        fail(o, R_no_route, "no analysis declares a filter matching %s", m->topic);
        return;
    }
    /*
     * The broker plugin's stamp says who published: a device's data lands in
     * its own bucket whatever topic it used, {serial} level included
     * (TagoIO's behaviour). Without a stamp (the daemon's own broker user, or
     * a broker without the plugin) the topic names the device.
     */
    if (m->publisher) {
        if (serial[0] && strcmp(serial, m->publisher) != 0)
            LOG_DEBUG("topic=%s names %s; published by %s, stored for it", m->topic, serial,
                      m->publisher);
        snprintf(serial, sizeof(serial), "%s", m->publisher);
    } else if (!serial[0]) {
        fail(o, R_unknown_device, "filter of analysis %s names no {serial} level",
             pool_name(p->pool, (size_t)ai));
        return;
    }
    if (plain_device_get(p, serial, &dev, o))
        return;
    int rc = records_from_payload(&p->arena, m->topic, m->payload, m->len, &o->records, err,
                                  sizeof(err));
    if (rc < 0) {
        fail(o, R_invalid_body, "%s", err);
        return;
    }
    int parser = rc == 0 ? parser_of(p, &dev, o) : -1;
    if (o->reason)
        return;
    run_analysis(p, parser >= 0 ? parser : ai, m, &dev, now, o);
}

/* ---- the batch ---------------------------------------------------------- */

/* ---- answers to devices -------------------------------------------------- */

/*
 * Seals inner as a TagoTiP/S ACK envelope (TagoTiPs.md §4.2, §9) for device
 * d with key k. The nonce seed is the key's next server counter, advanced in
 * the open batch, so it is durable before the envelope leaves and never
 * repeats for the key. Returns 0 with the envelope in the arena,
 * SP_ERR_REPLAY (the key's 2^32 seeds are used up), SP_ERR_CRYPTO or
 * SP_ERR_DB.
 */
static int seal_ack(struct pipeline *p, const struct device_key *k, const struct device_info *d,
                    const uint8_t *inner, size_t len, uint8_t **out, size_t *out_len)
{
    uint8_t id[8];
    uint32_t ctr;
    int rc;

    crypto_generichash(id, sizeof id, k->key, k->key_len, NULL, 0);
    if ((rc = bucket_downlink_counter(p->bk, id, &ctr)))
        return rc == SP_ERR_REPLAY ? rc : SP_ERR_DB;
    size_t cap = SP_ENV_HEADER_LEN + len + SP_ENV_MAX_TAG;
    uint8_t *env = arena_alloc(&p->arena, cap);
    if (!env || sp_env_seal(k->suite, SP_METHOD_ACK, ctr, d->auth_hash, d->device_hash, k->key,
                            k->key_len, inner, len, env, cap, out_len))
        return SP_ERR_CRYPTO;
    *out = env;
    return SP_OK;
}

/* The device's current (not retired) key, or NULL. */
static const struct device_key *current_key(struct pipeline *p, const struct device_info *d,
                                            int64_t now)
{
    const struct device_key *keys;
    size_t nk;

    if (devcache_keys(p->devs, d->auth_hash, d->device_hash, now, (int64_t)p->c->key_grace * 1000,
                      &keys, &nk))
        return NULL;
    for (size_t i = 0; i < nk; i++)
        if (keys[i].retired_ms == 0 && strcmp(keys[i].serial, d->serial) == 0)
            return &keys[i];
    return NULL;
}

/*
 * Seals publish j of o for its seal_for device with the device's current
 * key. Returns 0 or an error with detail in o (a message failure) or
 * SP_ERR_DB.
 */
static int seal_publish(struct pipeline *p, struct outcome *o, const struct host_publish *in,
                        struct host_publish *out, int64_t now)
{
    const struct device_info *d;
    const struct device_key *k;
    size_t len;
    uint8_t *env;
    int rc;

    /* Phase 2 checked the device; the registry cannot change in between. */
    if ((rc = devcache_device(p->devs, in->seal_for, &d)))
        return SP_ERR_DB;
    if (!(k = current_key(p, d, now))) {
        fail(o, R_analysis_error, "publish() sealed for %s: no usable key", d->serial);
        return SP_ERR_CRYPTO;
    }
    rc = seal_ack(p, k, d, in->payload, in->payload_len, &env, &len);
    if (rc == SP_ERR_DB)
        return rc;
    if (rc == SP_ERR_REPLAY) {
        fail(o, R_analysis_error,
             "publish() sealed for %s: the key's counters are used up; rotate it", d->serial);
        return rc;
    }
    if (rc) {
        fail(o, R_analysis_error, "publish() sealed for %s: sealing failed", d->serial);
        return rc;
    }
    *out = *in;
    out->payload = env;
    out->payload_len = len;
    return SP_OK;
}

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
        return o->ack == ACK_PLAIN ? "payload_too_large" : "envelope_too_large";
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
 * Adds record r as variable name to b. With full set, also its group and its
 * metadata (but not metadata.mqtt_topic, which sealpipe adds to everything);
 * the unit and the time always. A record with neither a value nor a location
 * adds nothing.
 */
static void pull_var(struct pipeline *p, struct sp_tip_builder *b, const char *name,
                     const struct record *r, int full)
{
    struct json *meta = NULL;
    struct buf nb;
    size_t nmeta = 0;

    switch (r->type) {
    case RECORD_NUMBER:
        sp_tip_add_number(b, name, r->number, r->unit);
        break;
    case RECORD_STRING:
        if (strlen(r->string) != r->string_len)
            return; /* a NUL byte: TagoTiP cannot carry it */
        sp_tip_add_string(b, name, r->string, r->unit);
        break;
    case RECORD_BOOLEAN:
        sp_tip_add_bool(b, name, r->boolean);
        if (r->unit)
            sp_tip_var_unit(b, r->unit);
        break;
    default:
        if (!r->has_location)
            return;
        sp_tip_add_location(b, name, r->lat, r->lng, r->has_alt, r->alt);
    }
    if (r->has_time)
        sp_tip_var_time(b, r->time_ms);
    if (!full)
        return;
    if (r->group && tip_ident(r->group))
        sp_tip_var_group(b, r->group);
    if (!r->metadata ||
        json_parse(&p->arena, r->metadata, strlen(r->metadata), &meta, NULL, 0) != SP_OK)
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
 * The answer to a PULL (TagoTiP.md §7.2): the last stored value of each
 * variable asked for, in PUSH body syntax, in the arena. A variable that
 * does not fit the frame with its group and metadata goes without them;
 * one that does not fit at all is left out, like one never stored.
 * Returns 0, SP_ERR_NOTFOUND (none found) or SP_ERR_DB.
 */
static int pull_answer(struct pipeline *p, struct outcome *o, char **out, size_t *out_len)
{
    /* Room for "!4294967295|OK|" before the list. */
    size_t cap = SP_MAX_FRAME - 16 + 1, len;
    char *buf = arena_alloc(&p->arena, cap);
    struct sp_tip_builder b;
    int rc;

    if (!buf)
        return SP_ERR_DB;
    sp_tip_build_init(&b, buf, cap);
    for (size_t i = 0; i < o->pull->nvars; i++) {
        struct sp_span nm = o->pull->vars[i];
        int dup = 0;
        for (size_t j = 0; j < i && !dup; j++)
            dup = o->pull->vars[j].n == nm.n && memcmp(o->pull->vars[j].p, nm.p, nm.n) == 0;
        if (dup)
            continue;
        const char *name = arena_strndup(&p->arena, nm.p, nm.n);
        struct record r;
        if (!name)
            return SP_ERR_DB;
        rc = bucket_latest(p->bk, o->serial, name, &p->arena, &r);
        if (rc == SP_ERR_NOTFOUND)
            continue;
        if (rc)
            return SP_ERR_DB;
        size_t before = b.nvars;
        pull_var(p, &b, name, &r, 1);
        if (b.err) {
            if (b.nvars > before)
                sp_tip_build_drop_last(&b);
            b.err = SP_OK;
            pull_var(p, &b, name, &r, 0);
            if (b.err) {
                if (b.nvars > before)
                    sp_tip_build_drop_last(&b);
                b.err = SP_OK;
            }
        }
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
 * Queues the answer to a TagoTiP message, in the open batch (a sealed
 * answer's nonce seed is written with the batch). Returns 0 or SP_ERR_DB;
 * an answer that cannot be made is logged and dropped.
 */
static int tip_reply(struct pipeline *p, const struct mqlink_msg *m, struct outcome *o)
{
    const char *detail = NULL;
    char count[24], *frame, *topic;
    size_t dlen = 0, cap;
    int status = SP_ACK_OK, form, n, rc;

    if (o->reason) {
        status = SP_ACK_ERR;
        detail = err_code(o);
    } else if (o->method == SP_METHOD_PING) {
        status = SP_ACK_PONG;
    } else if (o->method == SP_METHOD_PULL) {
        char *list = NULL;
        rc = pull_answer(p, o, &list, &dlen);
        if (rc == SP_ERR_NOTFOUND) {
            status = SP_ACK_ERR;
            detail = "variable_not_found";
        } else if (rc) {
            return rc;
        }
        detail = list ? list : detail;
    } else {
        snprintf(count, sizeof count, "%zu", o->records.n);
        detail = count;
    }
    if (detail && !dlen)
        dlen = strlen(detail);
    form = o->ack == ACK_PLAIN ? SP_ACK_MQTT : o->ack == ACK_SEALED ? SP_ACK_INNER : SP_ACK_FRAME;
    cap = dlen + 32;
    frame = arena_alloc(&p->arena, cap);
    topic =
        arena_printf(&p->arena, "%s/%s/ack", o->ack == ACK_PLAIN ? "$tip" : "$tips", o->ack_serial);
    if (!frame || !topic)
        return SP_ERR_DB;
    n = sp_tip_build_ack(form, o->has_counter, o->counter, status, detail, dlen, frame, cap);
    if (n < 0) {
        LOG_WARN("answer dropped topic=%s error=\"%s\"", m->topic, errors_strerror(n));
        return SP_OK;
    }
    const uint8_t *payload = (const uint8_t *)frame;
    size_t len = (size_t)n;
    if (o->ack == ACK_SEALED) {
        const struct device_info *d;
        uint8_t *env;
        if ((rc = devcache_device(p->devs, o->key->serial, &d)))
            return rc == SP_ERR_NODEVICE ? SP_OK : SP_ERR_DB; /* cannot happen: same snapshot */
        rc = seal_ack(p, o->key, d, payload, len, &env, &len);
        if (rc == SP_ERR_DB)
            return rc;
        if (rc) {
            LOG_WARN("answer dropped topic=%s error=\"%s\"", m->topic,
                     rc == SP_ERR_REPLAY ? "the key's nonce seeds are used up; rotate it"
                                         : errors_strerror(rc));
            return SP_OK;
        }
        payload = env;
    }
    if (queue_pub(p, topic, payload, len, 1, 0, NULL))
        LOG_WARN("answer dropped topic=%s reason=out_of_memory", topic);
    return SP_OK;
}

/* ---- commands from the CLI -------------------------------------------- */

/* Seals (or frames) one queued command; 0, an error for the row, or SP_ERR_DB. */
static int command_payload(struct pipeline *p, const struct bucket_command *bc, int64_t now,
                           uint8_t **out, size_t *len, const char **why)
{
    const struct device_info *d;
    const struct device_key *k;
    size_t cap = strlen(bc->command) + 16;
    char *frame = arena_alloc(&p->arena, cap);
    int n, rc;

    if (!frame)
        return SP_ERR_DB;
    n = sp_tip_build_ack(bc->sealed ? SP_ACK_INNER : SP_ACK_MQTT, 0, 0, SP_ACK_CMD, bc->command,
                         strlen(bc->command), frame, cap);
    if (n < 0) {
        *why = "not a valid TagoTiP command";
        return SP_ERR_PAYLOAD;
    }
    rc = devcache_device(p->devs, bc->serial, &d);
    if (rc == SP_ERR_NODEVICE) {
        *why = "unknown device";
        return rc;
    }
    if (rc)
        return SP_ERR_DB;
    if (!bc->sealed) {
        *out = (uint8_t *)frame;
        *len = (size_t)n;
        return SP_OK;
    }
    if (!(k = current_key(p, d, now))) {
        *why = "the device has no usable key";
        return SP_ERR_CRYPTO;
    }
    rc = seal_ack(p, k, d, (const uint8_t *)frame, (size_t)n, out, len);
    if (rc == SP_ERR_REPLAY)
        *why = "the key's nonce seeds are used up; rotate it";
    else if (rc && rc != SP_ERR_DB)
        *why = "sealing failed";
    return rc;
}

int pipeline_commands(struct pipeline *p, struct mqlink *link)
{
    struct bucket_command bc[64];
    size_t n = 0, sent = 0;
    int64_t now = wall_ms();
    int rc;

    arena_reset(&p->arena);
    if ((rc = bucket_commands_pending(p->bk, &p->arena, bc, 64, &n)) || n == 0)
        return rc ? SP_ERR_DB : 0;
    if ((rc = devcache_sync(p->devs)) || (rc = bucket_begin(p->bk)))
        return SP_ERR_DB;
    /* First seal what is new, committed before anything leaves. */
    for (size_t i = 0; i < n; i++) {
        const char *why = NULL;
        if (bc[i].payload)
            continue;
        rc = command_payload(p, &bc[i], now, &bc[i].payload, &bc[i].payload_len, &why);
        if (rc == SP_ERR_DB)
            goto fail;
        if (rc) {
            LOG_WARN("command not sent id=%lld serial=%s reason=\"%s\"", (long long)bc[i].id,
                     bc[i].serial, why);
            bc[i].payload = NULL;
        }
        if (bucket_command_update(p->bk, bc[i].id, bc[i].payload, bc[i].payload_len, 0,
                                  rc ? why : NULL))
            goto fail;
    }
    if (bucket_commit(p->bk))
        goto fail;
    for (size_t i = 0; i < n; i++) {
        if (!bc[i].payload)
            continue;
        char *topic =
            arena_printf(&p->arena, "%s/%s/ack", bc[i].sealed ? "$tips" : "$tip", bc[i].serial);
        if (!topic || mqlink_publish(link, topic, bc[i].payload, bc[i].payload_len, 1, 0, NULL))
            return SP_ERR_MQTT;
        if (bucket_command_update(p->bk, bc[i].id, NULL, 0, now, NULL))
            return SP_ERR_DB;
        LOG_INFO("command sent id=%lld topic=%s", (long long)bc[i].id, topic);
        sent++;
    }
    return mqlink_flush(link) == SP_OK ? (int)sent : SP_ERR_MQTT;
fail:
    bucket_rollback(p->bk);
    return SP_ERR_DB;
}

/*
 * Whose oversized message this is, for its dead letter: the publisher the
 * broker plugin stamped, else the device a $tip/$tips topic names, if there
 * is one. Nothing else of the message is read.
 */
static void too_large_device(struct pipeline *p, const struct mqlink_msg *m, struct outcome *o)
{
    const struct device_info *d;

    if (m->publisher)
        o->serial = m->publisher;
    else if (o->ack_serial && devcache_device(p->devs, o->ack_serial, &d) == SP_OK)
        o->serial = d->serial;
}

/* Phase 1: everything but the analyses and the writes. Writes nothing. */
static void prepare(struct pipeline *p, const struct mqlink_msg *m, int64_t now, struct outcome *o)
{
    memset(o, 0, offsetof(struct outcome, detail));
    o->detail[0] = '\0';
    o->job = -1;
    bucket_digest(m->topic, m->payload, m->len, o->digest);
    if (bucket_seen(p->bk, m->mid, o->digest)) {
        o->duplicate = 1;
        return;
    }
    if (m->retain && m->full_len == 0) {
        o->ignored = 1;
        return;
    }
    if (m->hops >= SP_LIMIT_HOPS) {
        fail(o, R_loop,
             "produced by analyses %d times in a row (limit %d): a publish loop across analyses "
             "or daemons",
             m->hops, SP_LIMIT_HOPS);
        return;
    }
    if (m->full_len > SP_LIMIT_PAYLOAD) {
        fail(o, R_too_large, "%zu bytes, limit %d; the first %zu bytes are kept", m->full_len,
             SP_LIMIT_PAYLOAD, m->len);
        /* Still answered: payload_too_large, envelope_too_large. */
        const char *method;
        int tips = strncmp(m->topic, "$tips/", 6) == 0;
        if ((tips || strncmp(m->topic, "$tip/", 5) == 0) &&
            (o->ack_serial = tip_serial(p, m->topic, &method)) != NULL)
            o->ack = tips ? ACK_FALLBACK : ACK_PLAIN;
        if (o->ack == ACK_FALLBACK)
            o->fallback = errors_wirecode(SP_ERR_ENVTOOLARGE);
        too_large_device(p, m, o);
    } else if (strncmp(m->topic, "$tips/", 6) == 0)
        route_tips(p, m, now, o);
    else if (strncmp(m->topic, "$tip/", 5) == 0)
        route_tip(p, m, now, o);
    else
        route_topic(p, m, now, o);
}

/*
 * Phase 3: writes one message's outcome inside the open batch. Returns 0 or
 * SP_ERR_DB, or SP_ERR_PAYLOAD when the database refused the message's
 * records and the batch is not careful: the caller then rolls the batch back
 * and writes it again carefully, each message in its own savepoint, so that
 * the refused one becomes a dead letter alone. Savepoints cost two
 * statements a message, and a refusal means a record got past validation,
 * so the common path goes without.
 */
static int finish(struct pipeline *p, const struct mqlink_msg *m, int64_t now, struct outcome *o,
                  int careful)
{
    struct bucket_msg bm = {.topic = m->topic, .received_ms = now, .mid = m->mid};
    char err[512];
    int rc;

    /* Seen now but not in prepare(): a duplicate within this batch. */
    if (o->duplicate || bucket_seen(p->bk, m->mid, o->digest)) {
        p->st.duplicates++;
        return SP_OK;
    }
    if (o->ignored) {
        p->st.ignored++;
        return SP_OK;
    }
    if (o->db_error) {
        LOG_ERROR("registry lookup failed topic=%s error=%s", m->topic,
                  errors_strerror(o->db_error));
        return SP_ERR_DB;
    }
    memcpy(bm.digest, o->digest, sizeof(bm.digest));
    if (careful && (rc = bucket_msg_begin(p->bk)))
        return rc;
    bm.serial = o->serial;
    if (!o->reason && o->check_counter) {
        rc = bucket_counter_advance(p->bk, o->serial, o->env_counter);
        if (rc == SP_ERR_REPLAY)
            fail(o, R_replay, "counter %u not greater than the last accepted one", o->env_counter);
        else if (rc)
            goto db_error;
    }
    /* Sealed publishes first: a failure makes the message a dead letter. */
    struct host_publish *pubs = o->pubs;
    for (size_t k = 0; k < o->npubs && !o->reason; k++) {
        if (!o->pubs[k].seal_for)
            continue;
        if (pubs == o->pubs) {
            pubs = arena_calloc(&p->arena, o->npubs, sizeof(*pubs));
            if (!pubs) {
                fail(o, R_analysis_error, "out of memory sealing publishes");
                break;
            }
            memcpy(pubs, o->pubs, o->npubs * sizeof(*pubs));
        }
        if ((rc = seal_publish(p, o, &o->pubs[k], &pubs[k], now)) == SP_ERR_DB)
            goto db_error;
    }
    if (!o->reason) {
        rc = bucket_insert(p->bk, &bm, o->records.v, o->records.n, err, sizeof(err));
        for (size_t k = 0; k < o->ninserts && !rc; k++) {
            struct bucket_msg im = bm;
            im.serial = o->inserts[k].serial;
            rc = bucket_insert(p->bk, &im, o->inserts[k].records.v, o->inserts[k].records.n, err,
                               sizeof(err));
        }
        if (rc == SP_ERR_PAYLOAD && !careful)
            return rc;
        if (rc == SP_ERR_PAYLOAD) {
            /* Undo what the message wrote (its counter advance included)
             * and keep it as a dead letter instead. */
            if ((rc = bucket_msg_end(p->bk, 0)) || (rc = bucket_msg_begin(p->bk)))
                return rc;
            fail(o, R_invalid_body, "the bucket refused a record: %s", err);
            LOG_WARN("records refused topic=%s error=\"%s\"", m->topic, err);
        } else if (rc) {
            LOG_ERROR("bucket insert failed topic=%s error=\"%s\"", m->topic, err);
            goto db_error;
        } else {
            p->st.stored++;
            p->st.records += o->records.n;
            for (size_t k = 0; k < o->ninserts; k++)
                p->st.records += o->inserts[k].records.n;
            /* An analysis speaks for the profile of the device it ran for:
             * the broker plugin delivers its publishes to that profile. Each
             * carries one hop more than the message that ran it. */
            const struct device_info *dev = NULL;
            struct mqlink_origin from = {
                .profile = o->serial && devcache_device(p->devs, o->serial, &dev) == SP_OK
                               ? arena_strdup(&p->arena, dev->profile)
                               : NULL,
                .hops = m->hops + 1,
            };
            for (size_t i = 0; i < o->npubs; i++) {
                const struct host_publish *hp = &pubs[i];
                if (queue_pub(p, hp->topic, hp->payload, hp->payload_len, hp->qos, hp->retain,
                              &from))
                    LOG_WARN("publish dropped topic=%s reason=out_of_memory", hp->topic);
            }
        }
    }
    if (o->reason) {
        LOG_DEBUG("dead letter topic=%s reason=%s detail=\"%s\"", m->topic, reason_names[o->reason],
                  o->detail);
        if ((rc = bucket_dead(p->bk, &bm, reason_names[o->reason], o->detail, m->payload, m->len)))
            goto db_error;
        p->st.dead[o->reason]++;
    }
    if ((rc = bucket_remember(p->bk, m->mid, bm.digest)))
        goto db_error;
    if (o->ack && (rc = tip_reply(p, m, o)))
        goto db_error;
    if (careful && (rc = bucket_msg_end(p->bk, 1)))
        return rc;
    p->st.messages++;
    return SP_OK;
db_error:
    /* The whole batch is rolled back by the caller; this only tidies up. */
    if (careful && bucket_msg_end(p->bk, 0) != SP_OK)
        LOG_DEBUG("savepoint rollback failed after a database error");
    return SP_ERR_DB;
}

/*
 * Where the batch ends: before the first message whose analysis results did
 * not fit in the batch memory. The messages from there on are written to the
 * deferred table with the part before them (keep_rest), so the whole batch may
 * be acknowledged and the part's publishes leave at once: what a burst of
 * heavy messages holds in memory stays bounded by one part. A message that
 * does not fit even alone is a dead letter. Returns the number of messages
 * processed in this batch.
 */
static size_t cut_batch(struct pipeline *p, size_t n)
{
    size_t cut = 0;

    while (cut < n && !p->outs[cut].deferred)
        cut++;
    if (cut == 0 && n > 0) {
        struct outcome *o = &p->outs[0];
        const char *name = pool_name(p->pool, (size_t)o->job);
        o->deferred = 0;
        fail(o, R_analysis_error,
             "analysis %s: its results do not fit in the batch memory (%u MiB)", name,
             (unsigned)(SP_LIMIT_ARENA >> 20));
        LOG_WARN("%s; dead-lettered", o->detail);
        cut = 1;
    }
    if (cut < n)
        LOG_INFO("batch memory full after %zu of %zu messages; the rest run in the next batch", cut,
                 n);
    return cut;
}

/*
 * In the open batch: keeps messages [cut, n) of a batch read from the broker
 * for the next batches (they count as delivered, so a redelivery is
 * skipped), or, for a batch taken from the deferred table, deletes the rows
 * of the messages it processed.
 */
static int keep_rest(struct pipeline *p, size_t cut, size_t n)
{
    int rc = SP_OK;

    if (p->from_table) {
        for (size_t i = 0; i < cut && !rc; i++)
            rc = bucket_deferred_done(p->bk, p->table_ids[i]);
        return rc;
    }
    for (size_t i = cut; i < n && !rc; i++) {
        const struct mqlink_msg *m = &p->msgs[i];
        struct bucket_deferred d = {.topic = m->topic,
                                    .payload = m->payload,
                                    .len = m->len,
                                    .full_len = m->full_len,
                                    .qos = m->qos,
                                    .retain = m->retain,
                                    .hops = m->hops,
                                    .publisher = m->publisher};
        if (!(rc = bucket_defer(p->bk, &d)))
            rc = bucket_remember(p->bk, m->mid, p->outs[i].digest);
    }
    return rc;
}

/* The next deferred messages as a batch, or 0 when there are none. */
static size_t take_deferred(struct pipeline *p)
{
    struct bucket_deferred *d = arena_calloc(&p->arena, p->batch, sizeof(*d));
    size_t n = 0;

    if (!d || bucket_deferred_take(p->bk, &p->arena, d, p->batch, &n) != SP_OK) {
        LOG_ERROR("cannot read the deferred messages; reading the broker instead");
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        p->table_ids[i] = d[i].id;
        p->msgs[i] = (struct mqlink_msg){.mid = 0, /* never redelivered: it is in the table */
                                         .topic = d[i].topic,
                                         .payload = d[i].payload,
                                         .len = d[i].len,
                                         .full_len = d[i].full_len,
                                         .qos = d[i].qos,
                                         .retain = d[i].retain,
                                         .publisher = d[i].publisher,
                                         .hops = d[i].hops};
    }
    return n;
}

int pipeline_step(struct pipeline *p, struct mqlink *link, int timeout_ms)
{
    struct stats before = p->st;
    size_t n = 0;
    int rc, lost;

    arena_reset(&p->arena);
    p->npubs = 0;
    lost = 0;
    /* Deferred messages first: they were read before anything still queued. */
    p->from_table = p->has_deferred && (n = take_deferred(p)) > 0;
    p->has_deferred = p->from_table;
    if (!p->from_table)
        lost = mqlink_read(link, timeout_ms, &p->arena, p->msgs, p->batch, &n) != SP_OK;
    if (n > 0) {
        int64_t now = wall_ms();
        int careful = 0;
        size_t cut;
        if ((rc = devcache_sync(p->devs)))
            goto db_fail;
        for (size_t i = 0; i < n; i++)
            prepare(p, &p->msgs[i], now, &p->outs[i]);
        run_jobs(p, n, now);
        LOG_DEBUG("batch of %zu messages holds %zu KiB", n, arena_used(&p->arena) >> 10);
        cut = cut_batch(p, n);
    again:
        if ((rc = bucket_begin(p->bk)))
            goto db_fail;
        for (size_t i = 0; i < cut; i++) {
            rc = finish(p, &p->msgs[i], now, &p->outs[i], careful);
            if (rc == SP_ERR_PAYLOAD && !careful) {
                LOG_INFO("batch holds a message the bucket refuses; processing it again "
                         "message by message");
                bucket_rollback(p->bk);
                p->st = before;
                p->npubs = 0;
                careful = 1;
                goto again;
            }
            if (rc)
                goto db_fail_rollback;
        }
        if ((rc = keep_rest(p, cut, n)))
            goto db_fail_rollback;
        if ((rc = bucket_commit(p->bk)))
            goto db_fail_rollback;
        if (cut < n)
            p->has_deferred = 1;
        n = cut;
        /* Committed: now the PUBACKs may leave, with the publishes. */
        for (size_t i = 0; i < p->npubs; i++) {
            const struct pending_pub *pp = &p->pubs[i];
            if (mqlink_publish(link, pp->topic, pp->payload, pp->len, pp->qos, pp->retain,
                               &pp->from))
                LOG_WARN("publish failed topic=%s", pp->topic);
        }
    }
    if (lost || mqlink_flush(link) != SP_OK)
        return SP_ERR_MQTT;
    return (int)n;

db_fail_rollback:
    bucket_rollback(p->bk);
    p->st = before; /* the batch will be redelivered and counted then */
db_fail:
    LOG_ERROR("batch not committed messages=%zu error=%s; nothing acknowledged, reconnecting", n,
              errors_strerror(rc));
    mqlink_drop(link);
    return SP_ERR_DB;
}

/* ---- set-up ------------------------------------------------------------- */

int pipeline_new(const struct conf *c, struct registry *reg, struct bucket *bk, struct pool *pl,
                 struct pipeline **out)
{
    struct pipeline *p = calloc(1, sizeof(*p));

    if (!p)
        return SP_ERR_NOMEM;
    p->c = c;
    p->reg = reg;
    p->bk = bk;
    p->pool = pl;
    pool_set_query(pl, answer_query, p);
    p->batch = (size_t)c->batch;
    p->msgs = calloc(p->batch, sizeof(*p->msgs));
    p->outs = calloc(p->batch, sizeof(*p->outs));
    p->table_ids = calloc(p->batch, sizeof(*p->table_ids));
    p->devs = devcache_new(reg);
    p->budgets = calloc(BUDGET_SLOTS, sizeof(*p->budgets));
    p->has_deferred = 1; /* a cut batch may have been left by the last run */
    crypto_shorthash_keygen(p->budget_key);
    if (!p->msgs || !p->outs || !p->table_ids || !p->devs || !p->budgets) {
        free(p->budgets);
        devcache_free(p->devs);
        free(p->table_ids);
        free(p->outs);
        free(p->msgs);
        free(p);
        return SP_ERR_NOMEM;
    }
    arena_init(&p->arena, SP_LIMIT_ARENA);
    *out = p;
    return SP_OK;
}

void pipeline_free(struct pipeline *p)
{
    if (!p)
        return;
    arena_cleanup(&p->arena);
    devcache_free(p->devs);
    for (size_t i = 0; i < p->nwatch; i++)
        free(p->watch[i].name);
    free(p->watch);
    free_filters(p->subs, p->nsubs);
    for (size_t i = 0; p->budgets && i < BUDGET_SLOTS; i++)
        free(p->budgets[i].key);
    free(p->budgets);
    free(p->table_ids);
    free(p->outs);
    free(p->msgs);
    free(p->pubs);
    free(p);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && strcmp(s + n - m, suffix) == 0;
}

/* ---- the analyses folder ------------------------------------------------ */

static struct watched *watch_find(struct pipeline *p, const char *name)
{
    for (size_t i = 0; i < p->nwatch; i++)
        if (strcmp(p->watch[i].name, name) == 0)
            return &p->watch[i];
    return NULL;
}

static int env_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Opens a file of the analyses folder for reading, refusing a symbolic link
 * (O_NOFOLLOW: ELOOP), a file with other hard links (EMLINK) and anything but
 * a regular file (EINVAL): a link could hand another analysis's secrets, or a
 * file only root may read, to the sandbox or to the log.
 */
static FILE *open_plain(const char *path, const char *mode)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);

    if (fd < 0)
        return NULL;
    int e = fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ? EINVAL : st.st_nlink > 1 ? EMLINK : 0;
    if (e) {
        close(fd);
        errno = e;
        return NULL;
    }
    FILE *f = fdopen(fd, mode);
    if (!f)
        close(fd);
    return f;
}

/* Why open_plain failed, in words. */
static const char *plain_error(int e)
{
    if (e == ELOOP)
        return "is a symbolic link; links in the analyses folder are refused";
    if (e == EINVAL)
        return "is not a regular file";
    if (e == EMLINK)
        return "has other hard links; links in the analyses folder are refused";
    return strerror(e);
}

/* Formats err and returns SP_ERR_INVAL. */
static int env_error(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return SP_ERR_INVAL;
}

/*
 * The analysis's sidecar NAME.env (lines KEY=VALUE; blank lines and lines
 * starting with # are skipped) as a JSON object of strings in b, or "" when
 * there is no such file. Returns 0 or an error with err set.
 */
static int read_env(const char *path, struct buf *b, char *err, size_t errlen)
{
    char line[4096];
    int first = 1, n = 0;
    FILE *f = open_plain(path, "r");

    buf_reset(b);
    if (!f)
        return errno == ENOENT ? SP_OK : env_error(err, errlen, "%s: %s", path, plain_error(errno));
    int rc = buf_putc(b, '{') ? SP_ERR_NOMEM : SP_OK;
    while (!rc && fgets(line, sizeof line, f)) {
        n++;
        size_t len = strcspn(line, "\r\n");
        if (len == sizeof line - 1) {
            rc = env_error(err, errlen, "%s:%d: line too long", path, n);
            break;
        }
        line[len] = '\0';
        if (!line[0] || line[0] == '#')
            continue;
        char *eq = strchr(line, '=');
        size_t klen = eq ? (size_t)(eq - line) : 0;
        int ok = klen > 0 && (line[0] == '_' || ((line[0] | 32) >= 'a' && (line[0] | 32) <= 'z'));
        for (size_t i = 0; ok && i < klen; i++)
            ok = line[i] == '_' || (line[i] >= '0' && line[i] <= '9') ||
                 ((line[i] | 32) >= 'a' && (line[i] | 32) <= 'z');
        if (!ok) {
            rc = env_error(err, errlen, "%s:%d: expected KEY=VALUE with KEY of A-Z a-z 0-9 _", path,
                           n);
            break;
        }
        if ((!first && buf_putc(b, ',')) || json_write_string(b, line, klen) || buf_putc(b, ':') ||
            json_write_string(b, eq + 1, strlen(eq + 1)))
            rc = SP_ERR_NOMEM;
        first = 0;
    }
    fclose(f);
    if (!rc && buf_putc(b, '}'))
        rc = SP_ERR_NOMEM;
    if (rc == SP_ERR_NOMEM)
        env_error(err, errlen, "%s: too large", path);
    return rc;
}

/* Loads (or reloads) one analysis; the old version stays if the new one fails. */
static int load_file(struct pipeline *p, const char *path, const char *name, int reload)
{
    char err[1024], envpath[1024];
    struct buf env;

    buf_init(&env, 64 * 1024);
    snprintf(envpath, sizeof envpath, "%s/%s.env", p->c->analyses_dir, name);
    int erc = read_env(envpath, &env, err, sizeof err);
    if (erc) {
        LOG_ERROR("analysis not loaded name=%s error=\"%s\"", name, err);
        buf_cleanup(&env);
        return erc;
    }
    FILE *f = open_plain(path, "rb");
    if (!f) {
        LOG_ERROR("analysis not loaded file=%s error=\"%s\"", path, plain_error(errno));
        buf_cleanup(&env);
        return SP_ERR_IO;
    }
    size_t max = (size_t)p->c->lua_script_kb * 1024;
    char *src = malloc(max + 1);
    size_t len = src ? fread(src, 1, max + 1, f) : 0;
    fclose(f);
    err[0] = '\0';
    int rc = src ? pool_load(p->pool, name, src, len, env.len ? env.p : NULL, err, sizeof(err))
                 : SP_ERR_NOMEM;
    free(src);
    buf_cleanup(&env);
    if (rc) {
        LOG_ERROR("analysis not loaded name=%s error=\"%s\"%s", name,
                  rc == SP_ERR_TOOLARGE && !err[0] ? "script larger than lua_script_kb" : err,
                  reload && pool_find(p->pool, name) >= 0 ? "; the previous version keeps running"
                                                          : "");
        return rc;
    }
    LOG_INFO("analysis %s name=%s topics=%zu", reload ? "reloaded" : "loaded", name,
             pool_topic_count(p->pool, (size_t)pool_find(p->pool, name)));
    return SP_OK;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * The analysis names in the folder (NAME.lua, NAME of at most 64 bytes, no
 * leading dot), sorted so that loading order, and so which of two
 * overlapping analyses wins, does not depend on the file system. Returns
 * the count (*out to free with free_filters) or -1 when the folder is
 * unreadable.
 */
static long list_analyses(struct pipeline *p, char ***out)
{
    char **v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    DIR *d = opendir(p->c->analyses_dir);

    if (!d)
        return -1;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || !ends_with(e->d_name, ".lua") || len - 4 > 64)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nv = realloc(v, nc * sizeof(*nv));
            if (!nv)
                break;
            v = nv;
            cap = nc;
        }
        if (!(v[n] = strndup(e->d_name, len - 4)))
            break;
        n++;
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof(*v), name_cmp);
    *out = v;
    return (long)n;
}

/* 1 when w still describes the files st (NAME.lua) and es (NAME.env). */
static int watch_same(const struct watched *w, const struct stat *st, const struct stat *es)
{
    return w->mtime.tv_sec == st->st_mtim.tv_sec && w->mtime.tv_nsec == st->st_mtim.tv_nsec &&
           w->size == st->st_size && w->ino == st->st_ino &&
           w->env_mtime.tv_sec == es->st_mtim.tv_sec &&
           w->env_mtime.tv_nsec == es->st_mtim.tv_nsec && w->env_size == es->st_size &&
           w->env_ino == es->st_ino;
}

static struct watched *watch_add(struct pipeline *p, const char *name)
{
    struct watched *v = realloc(p->watch, (p->nwatch + 1) * sizeof(*v));
    char *copy = strdup(name);

    if (v)
        p->watch = v;
    if (!v || !copy) {
        free(copy);
        return NULL;
    }
    struct watched *w = &p->watch[p->nwatch++];
    *w = (struct watched){.name = copy, .seen = 1};
    return w;
}

int pipeline_scan_analyses(struct pipeline *p)
{
    char path[1024], envpath[1024];
    char **names = NULL;
    int changed = 0;
    long n = list_analyses(p, &names);

    if (n < 0) {
        if (!p->dir_warned)
            LOG_WARN("analyses folder unreadable dir=%s error=\"%s\"", p->c->analyses_dir,
                     strerror(errno));
        p->dir_warned = 1;
        return 0;
    }
    p->dir_warned = 0;
    for (size_t i = 0; i < p->nwatch; i++)
        p->watch[i].seen = 0;
    for (size_t i = 0; i < (size_t)n; i++) {
        struct stat st, es;
        const char *name = names[i];
        snprintf(path, sizeof(path), "%s/%s.lua", p->c->analyses_dir, name);
        snprintf(envpath, sizeof envpath, "%s/%s.env", p->c->analyses_dir, name);
        /* lstat: a link, a directory or a FIFO is a version of its own,
         * refused (with a log line) by load_file. */
        if (lstat(path, &st) < 0)
            continue;
        /* The sidecar NAME.env is part of the version. */
        if (lstat(envpath, &es) < 0)
            memset(&es, 0, sizeof es);
        struct watched *w = watch_find(p, name);
        if (w) {
            w->seen = 1;
            if (watch_same(w, &st, &es))
                continue;
        } else if (!(w = watch_add(p, name))) {
            continue;
        }
        /* Remember this version even if it fails: retry when it changes. */
        w->mtime = st.st_mtim;
        w->size = st.st_size;
        w->ino = st.st_ino;
        w->env_mtime = es.st_mtim;
        w->env_size = es.st_size;
        w->env_ino = es.st_ino;
        w->failed = load_file(p, path, name, p->scanned) != SP_OK;
        changed |= !w->failed;
    }
    free_filters(names, (size_t)n);
    for (size_t i = 0; i < p->nwatch;) {
        if (p->watch[i].seen) {
            i++;
            continue;
        }
        if (pool_unload(p->pool, p->watch[i].name) == SP_OK) {
            LOG_INFO("analysis removed name=%s", p->watch[i].name);
            changed = 1;
        }
        free(p->watch[i].name);
        p->watch[i] = p->watch[--p->nwatch];
    }
    /* An analysis refused because its filters overlapped another's may load
     * now that the other changed or left. */
    for (size_t i = 0; changed && p->scanned && i < p->nwatch; i++) {
        struct watched *w = &p->watch[i];
        if (!w->failed || pool_find(p->pool, w->name) >= 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s.lua", p->c->analyses_dir, w->name);
        w->failed = load_file(p, path, w->name, 0) != SP_OK;
    }
    p->scanned = 1;
    return changed;
}

/* The filters to subscribe: the TagoTiP topics and every declared one. */
static size_t wanted_filters(struct pipeline *p, char ***out)
{
    size_t max = 4, n = 0;
    for (size_t i = 0; i < pool_count(p->pool); i++)
        max += pool_topic_count(p->pool, i);
    char **f = calloc(max, sizeof(*f));
    if (!f)
        return 0;
    f[n++] = strdup("$tips/+/push");
    f[n++] = strdup("$tip/+/push");
    f[n++] = strdup("$tips/+/pull");
    f[n++] = strdup("$tip/+/pull");
    char buf[SP_LIMIT_TOPIC];
    for (size_t i = 0; i < pool_count(p->pool); i++)
        for (size_t j = 0; j < pool_topic_count(p->pool, i); j++) {
            if (route_mqtt_filter(pool_topic(p->pool, i, j), buf, sizeof(buf)))
                continue;
            int dup = 0;
            for (size_t k = 0; k < n && !dup; k++)
                dup = f[k] && strcmp(f[k], buf) == 0;
            if (!dup)
                f[n++] = strdup(buf);
        }
    for (size_t k = 0; k < n; k++)
        if (!f[k]) {
            for (size_t m = 0; m < n; m++)
                free(f[m]);
            free(f);
            return 0;
        }
    *out = f;
    return n;
}

static void free_filters(char **f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(f[i]);
    free(f);
}

static int has_filter(char **f, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(f[i], s) == 0)
            return 1;
    return 0;
}

int pipeline_subscribe(struct pipeline *p, struct mqlink *link, char *err, size_t errlen)
{
    char **f = NULL;
    size_t n = wanted_filters(p, &f);

    if (!n) {
        snprintf(err, errlen, "out of memory");
        return SP_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++)
        LOG_INFO("subscribe filter=%s", f[i]);
    int rc = mqlink_subscribe(link, (const char *const *)f, n, err, errlen);
    free_filters(p->subs, p->nsubs);
    p->subs = f;
    p->nsubs = n;
    return rc;
}

void pipeline_resubscribe(struct pipeline *p, struct mqlink *link)
{
    char **f = NULL;
    size_t n = wanted_filters(p, &f);

    if (!n)
        return;
    /* Queued now, written with the next flush (after the next commit). */
    for (size_t i = 0; i < n; i++)
        if (!has_filter(p->subs, p->nsubs, f[i])) {
            LOG_INFO("subscribe filter=%s", f[i]);
            if (mqlink_subscribe_one(link, f[i]))
                LOG_WARN("subscribe failed filter=%s", f[i]);
        }
    for (size_t i = 0; i < p->nsubs; i++)
        if (!has_filter(f, n, p->subs[i])) {
            LOG_INFO("unsubscribe filter=%s", p->subs[i]);
            if (mqlink_unsubscribe(link, p->subs[i]))
                LOG_WARN("unsubscribe failed filter=%s", p->subs[i]);
        }
    free_filters(p->subs, p->nsubs);
    p->subs = f;
    p->nsubs = n;
}

void pipeline_log_stats(struct pipeline *p)
{
    char line[1024];
    size_t o = 0;
    uint64_t dead = 0;

    for (int r = 1; r < R_COUNT; r++) {
        dead += p->st.dead[r];
        if (p->st.dead[r] && o < sizeof(line))
            o += (size_t)snprintf(line + o, sizeof(line) - o, " dead.%s=%llu", reason_names[r],
                                  (unsigned long long)p->st.dead[r]);
    }
    if (o == 0)
        line[0] = '\0';
    LOG_INFO("stats messages=%llu stored=%llu records=%llu duplicates=%llu ignored=%llu "
             "dead=%llu%s",
             (unsigned long long)p->st.messages, (unsigned long long)p->st.stored,
             (unsigned long long)p->st.records, (unsigned long long)p->st.duplicates,
             (unsigned long long)p->st.ignored, (unsigned long long)dead, line);
}
