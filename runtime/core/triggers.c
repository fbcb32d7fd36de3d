/*
 * triggers.c - analysis runs that no device message starts (see
 * triggers.h): their route, the runs an analysis queues, and the schedules.
 */
#include "triggers.h"
#include "triggers_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/errors.h"
#include "base/json.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/sp_limits.h"
#include "sandbox/pool.h"
#include "sealpipe.h"
#include "sp_text.h"
#include "storage/devcache.h"
#include "storage/condstate.h"
#include "storage/devevents.h"
#include "storage/triggerq.h"
#include "transport/trigsrc.h"

int triggers_open(struct bucket *bk, struct pool *pl, struct devcache *devs, int runs_max,
                  struct triggers **out)
{
    struct triggers *tr = calloc(1, sizeof(*tr));
    int rc;

    if (!tr)
        return SP_ERR_NOMEM;
    tr->bk = bk;
    tr->runs_max = runs_max > 0 ? runs_max : TRIGGERS_RUNS_MAX;
    tr->pool = pl;
    tr->devs = devs;
    buf_init(&tr->ctx, TRIGGERS_CTX_MAX);
    arena_init(&tr->scratch, 4 * 1024 * 1024);
    if ((rc = trigsrc_open(bk, &tr->src)) || (rc = triggerq_open(bk, &tr->q)) ||
        (rc = devevents_open(bk, &tr->ev)) || (rc = condstate_open(bk, &tr->cs))) {
        triggers_free(tr);
        return rc;
    }
    *out = tr;
    return SP_OK;
}

void triggers_free(struct triggers *tr)
{
    if (!tr)
        return;
    trigsrc_free(tr->src);
    triggerq_close(tr->q);
    devevents_close(tr->ev);
    condstate_close(tr->cs);
    arena_cleanup(&tr->scratch);
    buf_cleanup(&tr->ctx);
    free(tr);
}

const struct ingest_source *triggers_source(struct triggers *tr)
{
    return trigsrc_source(tr->src);
}

/* The words of the kinds of run in topics and the queue, by handler. */
static const char *const kind_word[TRIGGERS_KINDS] = {[HOST_TICK] = "tick",
                                                      [HOST_RUN] = "run",
                                                      [HOST_EVENT] = "event",
                                                      [HOST_CONDITION] = "condition"};

const char *triggers__kind(int handler)
{
    return handler >= 0 && handler < TRIGGERS_KINDS ? kind_word[handler] : NULL;
}

/* The handler of the kind of run a word names, or -1. */
static int kind_of(const char *word, size_t n)
{
    for (int k = 0; k < TRIGGERS_KINDS; k++)
        if (kind_word[k] && strlen(kind_word[k]) == n && memcmp(kind_word[k], word, n) == 0)
            return k;
    return -1;
}

/*
 * Splits $trigger#<kind>/<analysis>[/<serial>]: the kind's handler, the
 * analysis in name and the serial in serial ("" when none); -1 when the
 * topic is none of that.
 */
static int split_topic(const char *topic, char *name, size_t namecap, char *serial,
                       size_t serialcap)
{
    const char *k = topic + strlen(INGEST_TRIGGER_PREFIX);
    const char *a = strchr(k, '/');
    if (!INGEST_IS_TRIGGER_TOPIC(topic) || !a)
        return -1;
    int kind = kind_of(k, (size_t)(a - k));
    const char *s = strchr(++a, '/');
    size_t an = s ? (size_t)(s - a) : strlen(a);
    if (kind < 0 || an == 0 || an >= namecap || (s && (!s[1] || strlen(s + 1) >= serialcap)))
        return -1;
    memcpy(name, a, an);
    name[an] = '\0';
    snprintf(serial, serialcap, "%s", s ? s + 1 : "");
    return kind;
}

void triggers_route(struct triggers *tr, const struct ingest_msg *m, int64_t now, struct outcome *o)
{
    char name[72], serial[SP_MAX_SERIAL + 1];
    struct device_info dev = {0};
    int kind = split_topic(m->topic, name, sizeof(name), serial, sizeof(serial));

    o->serial = m->publisher; /* a dead letter is the device's, when it has one */
    if (kind < 0) {
        outcome_fail(o, R_unsupported,
                     "%s is not a trigger of a known kind (tick, run, event, condition)", m->topic);
        return;
    }
    int handler = kind, ai = pool_find(tr->pool, name);
    if (ai < 0 || !(pool_handlers(tr->pool, (size_t)ai) & HOST_BIT(handler))) {
        outcome_fail(o, R_no_route,
                     ai < 0 ? "analysis %s is not loaded" : "analysis %s has no %s function", name,
                     host_handler_name(handler));
        return;
    }
    if (serial[0] && outcome_device(o, tr->devs, serial, 0, &dev))
        return;
    o->authenticated = 1;
    o->job = ai;
    o->hm = (struct host_msg){.handler = handler,
                              .topic = m->topic,
                              .payload = m->payload,
                              .payload_len = m->len,
                              .qos = m->qos,
                              .received_ms = now,
                              .serial = serial[0] ? dev.serial : NULL,
                              .device_name = dev.name,
                              .tags_json = dev.tags_json,
                              .params_json = dev.params_json};
}

static int run_ctx(struct triggers *tr, const struct host_run_call *r, const char *from, int depth);

/* Why run r cannot be queued, or NULL. */
static const char *run_refused(struct triggers *tr, const struct host_run_call *r, const char *from)
{
    int ai = pool_find(tr->pool, r->analysis);

    if (ai < 0)
        return "no such analysis is loaded";
    if (!(pool_handlers(tr->pool, (size_t)ai) & HOST_BIT(HOST_RUN)))
        return "it has no run function";
    if (!sp__utf8_valid((const char *)r->payload, r->payload_len))
        return "the payload is not UTF-8 text (send bytes as base64)";
    /* Its ctx becomes a message's payload: it must fit like one. */
    if (run_ctx(tr, r, from, 0) || tr->ctx.len > SP_LIMIT_PAYLOAD)
        return "the payload is too large once written as JSON";
    return NULL;
}

/* 1 when as many runs of analysis wait as may: a call past it fails. The
 * runs this batch accepted are not in the table yet: they count too (all of
 * them, whatever analysis they are for: the bound errs on the safe side). */
static int runs_full(struct triggers *tr, const char *analysis)
{
    int64_t n = triggerq_waiting_count(tr->q, analysis, "run");
    if (n < 0 || n + tr->batch_runs >= tr->runs_max)
        return 1;
    tr->batch_runs++;
    return 0;
}

void triggers_check_runs(struct triggers *tr, struct outcome *o, const char *analysis)
{
    for (size_t k = 0; k < o->nruns && !o->reason; k++) {
        const char *why = run_refused(tr, &o->runs[k], analysis);
        if (why)
            outcome_fail(o, R_analysis_error, "analysis %s: run_analysis('%s'): %s", analysis,
                         o->runs[k].analysis, why);
        else if (runs_full(tr, o->runs[k].analysis))
            outcome_fail(o, R_limit,
                         "analysis %s: run_analysis('%s'): %d runs of it wait already "
                         "(trigger_queue_max)",
                         analysis, o->runs[k].analysis, tr->runs_max);
    }
}

/* The ctx of a run: {"payload": ..., "from": ..., "depth": n}, in tr->ctx. */
static int run_ctx(struct triggers *tr, const struct host_run_call *r, const char *from, int depth)
{
    struct buf *b = &tr->ctx;

    buf_reset(b);
    return buf_puts(b, "{\"payload\":") ||
                   json_write_string(b, (const char *)r->payload, r->payload_len) ||
                   buf_puts(b, ",\"from\":") || json_write_string(b, from, strlen(from)) ||
                   buf_printf(b, ",\"depth\":%d}", depth) || buf_putc(b, '\0')
               ? SP_ERR_NOMEM
               : SP_OK;
}

int triggers__queue(struct triggers *tr, const char *analysis, int handler, const char *serial,
                    int hops, int64_t now)
{
    struct triggerq_row r = {.analysis = analysis,
                             .kind = triggers__kind(handler),
                             .serial = serial,
                             .ctx = tr->ctx.p,
                             .hops = hops,
                             .created_at = now};
    return triggerq_add(tr->q, &r);
}

/* In the open batch: the runs o's analysis asked for. 0 or SP_ERR_DB. */
static int queue_runs(struct triggers *tr, const struct ingest_msg *m, const struct outcome *o,
                      int64_t now)
{
    const char *from = o->analysis ? o->analysis : "-";

    for (size_t k = 0; k < o->nruns; k++) {
        if (run_ctx(tr, &o->runs[k], from, m->hops + 1)) {
            LOG_ERROR("analysis %s: run_analysis('%s') dropped: out of memory", from,
                      o->runs[k].analysis);
            continue;
        }
        if (triggers__queue(tr, o->runs[k].analysis, HOST_RUN, o->serial, m->hops + 1, now))
            return SP_ERR_DB;
    }
    if (o->nruns)
        trigsrc_poke(tr->src);
    return SP_OK;
}

int triggers_finish(struct triggers *tr, const struct ingest_msg *m, const struct outcome *o,
                    int64_t now)
{
    char name[72], serial[SP_MAX_SERIAL + 1];
    int64_t row = trigsrc_row(tr->src, m);

    if (!o->reason && (queue_runs(tr, m, o, now) || triggers__records(tr, m, o, now)))
        return SP_ERR_DB;
    if (row && triggerq_done(tr->q, row))
        return SP_ERR_DB;
    int kind = m->trigger ? split_topic(m->topic, name, sizeof(name), serial, sizeof(serial)) : -1;
    if (kind >= 0)
        tr->batch[kind][o->reason != R_NONE]++;
    /* No device waits for its answer: the operator is told here. */
    if (m->trigger && o->reason)
        LOG_WARN("trigger failed topic=%s reason=%s detail=\"%s\"", m->topic,
                 outcome_reason_name(o->reason), o->detail);
    return SP_OK;
}

int triggers_deferred(struct triggers *tr, const struct ingest_msg *msgs,
                      const struct outcome *outs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int64_t row = outs[i].deferred ? trigsrc_row(tr->src, &msgs[i]) : 0;
        if (row && triggerq_done(tr->q, row))
            return SP_ERR_DB;
    }
    return SP_OK;
}

void triggers_done(struct triggers *tr, int committed)
{
    for (int k = 0; committed && k < TRIGGERS_KINDS; k++)
        for (int failed = 0; failed < 2; failed++)
            if (tr->batch[k][failed])
                metrics_add_labels(METRIC_TRIGGER_RUNS, kind_word[k], failed ? "failed" : "ok",
                                   tr->batch[k][failed]);
    memset(tr->batch, 0, sizeof(tr->batch));
    tr->batch_runs = 0;
}

/* 1 when every tag of scope (a JSON object) is the device's. */
static int has_tags(const char *scope, const char *tags_json)
{
    struct json *want = NULL, *have = NULL;
    struct arena a;
    int ok = 0;

    arena_init(&a, 64 * 1024);
    if (tags_json && !json_parse(&a, scope, strlen(scope), &want, NULL, 0) &&
        !json_parse(&a, tags_json, strlen(tags_json), &have, NULL, 0)) {
        ok = 1;
        for (const struct json *t = want->child; t && ok; t = t->next) {
            const struct json *v = json_get(have, t->key);
            ok = v && v->type == JSON_STRING && strcmp(v->str, t->str) == 0;
        }
    }
    arena_cleanup(&a);
    return ok;
}

int triggers__in_scope(struct triggers *tr, size_t ai, const char *serial)
{
    const char *scope = pool_scope(tr->pool, ai);
    const struct device_info *d;

    if (!scope)
        return 1;
    return devcache_device(tr->devs, serial, &d) == SP_OK && has_tags(scope, d->tags_json);
}

int triggers__end(struct triggers *tr, int rc, int queued)
{
    if (rc || (rc = bucket_commit(tr->bk))) {
        bucket_rollback(tr->bk);
        return rc;
    }
    if (queued)
        trigsrc_poke(tr->src);
    return queued;
}

const char *triggers__param(const struct device_info *d, struct arena *a, const char *name)
{
    struct json *params = NULL;
    const struct json *v;

    /* Most devices have no such param: no parse for them. */
    if (!d->params_json || !strstr(d->params_json, name) ||
        json_parse(a, d->params_json, strlen(d->params_json), &params, NULL, 0) ||
        !(v = json_get(params, name)) || v->type != JSON_STRING)
        return NULL;
    return v->str;
}
