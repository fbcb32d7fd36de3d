/*
 * conditions.c - conditions on stored data (see triggers.h and
 * base/when.h): each record stored for a device, of a variable some
 * analysis's `when` watches, moves that condition's state for the device
 * (storage/condstate.h) in the transaction that stores it; a condition that
 * comes to hold queues one run of the analysis's condition(c), so the run
 * happens once the records are committed and never for a batch rolled back.
 * A condition with `for` fires from the due step between batches, if no
 * record broke it meanwhile.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/errors.h"
#include "base/json.h"
#include "base/log.h"
#include "base/when.h"
#include "sandbox/pool.h"
#include "storage/bucket.h"
#include "storage/condstate.h"
#include "storage/devcache.h"
#include "triggers.h"
#include "triggers_internal.h"

/* Rows of condition_state fired per due step. */
#define DUE_BATCH 256

/* What one evaluation needs: the analysis, the device, the message. */
struct eval {
    size_t ai;
    const char *name, *serial;
    const struct when *w;
    int hops;
    int64_t received, now;
    int *fired; /* a run of this analysis was queued for this message */
};

/* A record's value as when.h compares it, and as JSON text into b. */
static int record_value(const struct record *r, struct when_value *v, struct buf *b)
{
    memset(v, 0, sizeof(*v));
    switch (r->type) {
    case RECORD_NUMBER:
        v->type = 'n';
        v->number = r->number;
        return json_write_number(b, r->number);
    case RECORD_STRING:
        v->type = r->string_len <= WHEN_TEXT_MAX ? 's' : 'x'; /* longer: equals nothing */
        if (v->type == 's')
            memcpy(v->text, r->string, r->string_len), v->text[r->string_len] = '\0';
        return json_write_string(b, r->string, r->string_len);
    case RECORD_BOOLEAN:
        v->type = 'b';
        v->boolean = r->boolean;
        return buf_puts(b, r->boolean ? "true" : "false");
    default:
        v->type = 'x';
        return buf_puts(b, "null");
    }
}

/* The threshold of c for the device: its param when set to a number, else c's. */
static double threshold(struct triggers *tr, const struct when_cond *c, const char *serial)
{
    const struct device_info *d;
    const char *p;
    char *end;

    if (!c->param[0] || devcache_device(tr->devs, serial, &d) != SP_OK ||
        !(p = triggers__param(d, &tr->scratch, c->param)))
        return c->value.number;
    double t = strtod(p, &end);
    return end != p && *end == '\0' ? t : c->value.number;
}

/* The ctx of a run for condition j (1-based in it) of e, in tr->ctx. */
static int condition_ctx(struct triggers *tr, const struct eval *e, size_t j, const char *variable,
                         const char *value, const char *previous, int64_t time, int64_t since,
                         double t)
{
    struct buf *b = &tr->ctx;

    buf_reset(b);
    if (buf_puts(b, "{\"condition\":") || buf_printf(b, "%zu", j + 1) ||
        buf_puts(b, ",\"variable\":") || json_write_string(b, variable, strlen(variable)) ||
        buf_printf(b, ",\"value\":%s,\"previous\":%s", value ? value : "null",
                   previous ? previous : "null") ||
        buf_printf(b, ",\"time\":%lld,\"since\":%lld,\"transition\":\"enter\"", (long long)time,
                   (long long)since) ||
        (e->w->c[j].op <= WHEN_BELOW &&
         (buf_puts(b, ",\"threshold\":") || json_write_number(b, t))) ||
        buf_puts(b, "}") || buf_putc(b, '\0'))
        return SP_ERR_NOMEM;
    return SP_OK;
}

/* The next state of r for a record that holds or not; 1 when it fires. */
static int step_state(struct condrow *r, const struct when_cond *c, int holds, int release,
                      int64_t now)
{
    switch (r->state) {
    case WHEN_ARMED:
        if (!holds)
            return 0;
        r->since = now;
        r->state = c->for_ms ? WHEN_PENDING : WHEN_FIRED;
        r->due_at = c->for_ms ? now + c->for_ms : -1;
        return !c->for_ms;
    case WHEN_PENDING:
        if (!holds) {
            *r = (struct condrow){.analysis = r->analysis,
                                  .cond = r->cond,
                                  .serial = r->serial,
                                  .state = WHEN_ARMED,
                                  .since = -1,
                                  .due_at = -1,
                                  .last_value = r->last_value,
                                  .last_time = r->last_time};
            return 0;
        }
        if (now < r->due_at)
            return 0;
        r->state = WHEN_FIRED;
        r->due_at = -1;
        return 1;
    default:
        if (release) {
            r->state = WHEN_ARMED;
            r->since = -1;
        }
        return 0;
    }
}

/*
 * Record rec against condition j of e, whose state is r and last value
 * last (in memory: watch_cond reads and writes them once per message).
 * Returns 0 or an error.
 */
static int evaluate(struct triggers *tr, struct eval *e, size_t j, struct condrow *r,
                    struct buf *last, const struct record *rec, double t)
{
    const struct when_cond *c = &e->w->c[j];
    struct when_value v;
    struct buf text;
    int64_t time = rec->has_time ? rec->time_ms : e->received;
    int rc = SP_OK, release = 0, fire;

    /* A record dated in the future counts as received now: else one clock
     * glitch (a device sending 2099) would make every later record a
     * backfill, and the condition would never fire again. */
    if (time > e->now)
        time = e->now;
    if (time < r->last_time)
        return SP_OK; /* older than what was seen: a backfill fires nothing */
    buf_init(&text, WHEN_JSON_MAX + 64);
    if (record_value(rec, &v, &text) || buf_putc(&text, '\0')) {
        buf_cleanup(&text);
        return SP_ERR_NOMEM;
    }
    const char *previous = last->len ? last->p : NULL;
    if (c->op == WHEN_CHANGES) {
        fire = previous && strcmp(previous, text.p) != 0;
    } else {
        int holds = when_holds(c, &v, t, &release);
        fire = step_state(r, c, holds, release, e->now);
    }
    if (fire && !*e->fired) {
        rc = condition_ctx(tr, e, j, c->variable, text.p, previous, time,
                           r->since >= 0 ? r->since : e->now, t);
        if (!rc && !(rc = triggers__queue(tr, e->name, HOST_CONDITION, e->serial, e->hops, e->now)))
            *e->fired = 1;
    }
    buf_reset(last);
    if (!rc && buf_append(last, text.p, text.len))
        rc = SP_ERR_NOMEM;
    r->last_time = time;
    buf_cleanup(&text);
    return rc;
}

/* Condition j of e over the n records stored for its device: its state read
 * once, the records evaluated in order, the state written once. */
static int watch_cond(struct triggers *tr, struct eval *e, size_t j, const struct record *recs,
                      size_t n)
{
    const struct when_cond *c = &e->w->c[j];
    struct condrow r = {.analysis = e->name, .cond = c->key, .serial = e->serial};
    struct buf last;
    double t = 0;
    int loaded = 0, rc = SP_OK;

    buf_init(&last, WHEN_JSON_MAX + 64);
    for (size_t k = 0; k < n && !rc; k++) {
        if (!recs[k].variable || strcmp(recs[k].variable, c->variable) != 0)
            continue;
        if (!loaded) {
            arena_reset(&tr->scratch);
            if ((rc = condstate_get(tr->cs, &tr->scratch, &r)) < 0)
                break;
            rc = SP_OK;
            loaded = 1;
            if (r.last_value && buf_puts(&last, r.last_value))
                rc = SP_ERR_NOMEM;
            t = c->op <= WHEN_BELOW ? threshold(tr, c, e->serial) : 0;
        }
        if (!rc)
            rc = evaluate(tr, e, j, &r, &last, &recs[k], t);
    }
    if (loaded && !rc) {
        if (!last.len || buf_putc(&last, '\0'))
            r.last_value = NULL;
        else
            r.last_value = last.p;
        rc = condstate_put(tr->cs, &r);
    }
    buf_cleanup(&last);
    return rc;
}

/* The n records stored for serial against analysis ai's conditions; *fired
 * is shared by every call for one message (one run per analysis). */
static int watch(struct triggers *tr, size_t ai, const char *serial, const struct record *recs,
                 size_t n, const struct ingest_msg *m, int64_t now, int *fired)
{
    struct eval e = {.ai = ai,
                     .name = pool_name(tr->pool, ai),
                     .serial = serial,
                     .w = pool_when(tr->pool, ai),
                     .hops = m->hops + 1,
                     .received = m->received_ms > 0 ? m->received_ms : now,
                     .now = now,
                     .fired = fired};
    int rc = SP_OK;

    if (!e.w || !serial || !n || !triggers__in_scope(tr, ai, serial))
        return SP_OK;
    for (size_t j = 0; j < e.w->n && !rc; j++)
        rc = watch_cond(tr, &e, j, recs, n);
    return rc;
}

int triggers__records(struct triggers *tr, const struct ingest_msg *m, const struct outcome *o,
                      int64_t now)
{
    int rc = SP_OK;

    for (size_t ai = 0; ai < pool_count(tr->pool) && !rc; ai++) {
        int fired = 0;
        if (!pool_when(tr->pool, ai))
            continue;
        rc = watch(tr, ai, o->serial, o->records.v, o->records.n, m, now, &fired);
        for (size_t k = 0; k < o->ninserts && !rc; k++)
            rc = watch(tr, ai, o->inserts[k].serial, o->inserts[k].records.v,
                       o->inserts[k].records.n, m, now, &fired);
    }
    /* Only the database's failure is the batch's: anything else would fail
     * the same message at every redelivery. */
    if (rc && rc != SP_ERR_DB) {
        LOG_WARN("conditions not evaluated topic=%s error=%s", m->topic, errors_strerror(rc));
        rc = SP_OK;
    }
    return rc;
}

/* ---- `for`: the conditions that held long enough ------------------------ */

/* Condition r of a loaded analysis with a condition function, or NULL. */
static const struct when_cond *find_cond(struct triggers *tr, const struct condrow *r,
                                         struct eval *e)
{
    int ai = pool_find(tr->pool, r->analysis);
    const struct when *w = ai >= 0 ? pool_when(tr->pool, (size_t)ai) : NULL;

    for (size_t j = 0; w && j < w->n; j++)
        if (strcmp(w->c[j].key, r->cond) == 0) {
            *e = (struct eval){
                .ai = (size_t)ai, .name = r->analysis, .serial = r->serial, .w = w, .hops = 1};
            return &w->c[j];
        }
    return NULL;
}

/* Row r is due: it fires (or is dropped, its condition gone), in the open transaction. */
static int fire_due(struct triggers *tr, struct condrow *r, int64_t now, int *queued)
{
    struct eval e;
    const struct when_cond *c = find_cond(tr, r, &e);
    int rc = SP_OK;

    r->due_at = -1;
    r->state = c ? WHEN_FIRED : WHEN_ARMED;
    if (c) {
        e.now = now;
        size_t j = (size_t)(c - e.w->c);
        double t = c->op <= WHEN_BELOW ? threshold(tr, c, r->serial) : 0;
        if (!(rc = condition_ctx(tr, &e, j, c->variable, r->last_value, r->last_value, r->last_time,
                                 r->since, t)) &&
            !(rc = triggers__queue(tr, r->analysis, HOST_CONDITION, r->serial, 1, now)))
            (*queued)++;
    }
    return rc ? rc : condstate_put(tr->cs, r);
}

int triggers_due_step(struct triggers *tr, int64_t now)
{
    struct condrow r[DUE_BATCH];
    size_t n = 0;
    int queued = 0, rc;

    arena_reset(&tr->scratch);
    if ((rc = condstate_due(tr->cs, now, &tr->scratch, r, DUE_BATCH, &n)) || n == 0)
        return rc;
    if ((rc = bucket_begin(tr->bk)))
        return rc;
    for (size_t i = 0; i < n && !rc; i++)
        rc = fire_due(tr, &r[i], now, &queued);
    return triggers__end(tr, rc, queued);
}
