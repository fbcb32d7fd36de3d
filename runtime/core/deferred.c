/*
 * deferred.c - which deferred rows a batch takes (see deferred.h).
 */
#include "deferred.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/sp_limits.h"
#include "sealpipe.h"

struct ids {
    int64_t *v;
    size_t n, cap;
};

struct deferred {
    struct bucket *bk;
    struct pool *pool;
    int64_t after, upto; /* an earlier run's rows: after < id <= upto */
    int64_t next_after;  /* after, once the batch that took them commits */
    struct ids rerun;    /* rows of this run to run again */
    struct ids taken;    /* rows the open batch took from rerun or by result */
    int64_t *tags;       /* pool_ready's answer */
    size_t batch;
};

static int ids_push(struct ids *s, int64_t id)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        int64_t *v = realloc(s->v, cap * sizeof(*v));
        if (!v)
            return SP_ERR_NOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = id;
    return SP_OK;
}

int deferred_open(struct bucket *bk, struct pool *pool, size_t batch, struct deferred **out)
{
    struct deferred *d = calloc(1, sizeof(*d));
    int rc;

    if (!d || !(d->tags = calloc(batch ? batch : 1, sizeof(*d->tags)))) {
        free(d);
        return SP_ERR_NOMEM;
    }
    d->bk = bk;
    d->pool = pool;
    d->batch = batch;
    if ((rc = bucket_deferred_last(bk, &d->upto))) {
        deferred_free(d);
        return rc;
    }
    d->next_after = d->after;
    *out = d;
    return SP_OK;
}

void deferred_free(struct deferred *d)
{
    if (!d)
        return;
    free(d->rerun.v);
    free(d->taken.v);
    free(d->tags);
    free(d);
}

int deferred_any(struct deferred *d)
{
    return d->after < d->upto || d->rerun.n || pool_ready(d->pool, d->tags, 1);
}

/* Row id alone into out[*n] (absent: deleted since, nothing taken). */
static int take_one(struct deferred *d, struct arena *a, int64_t id, struct bucket_deferred *out,
                    size_t *n)
{
    size_t k = 0;
    int rc = bucket_deferred_take(d->bk, a, &out[*n], 1, id - 1, id, &k);
    *n += k;
    return rc ? rc : ids_push(&d->taken, id);
}

static int id_cmp(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

static int take(struct deferred *d, struct arena *a, struct bucket_deferred *out, size_t max,
                size_t *n)
{
    int rc = SP_OK;

    *n = 0;
    d->taken.n = 0;
    if (d->after < d->upto) {
        if ((rc = bucket_deferred_take(d->bk, a, out, max, d->after, d->upto, n)))
            return rc;
        d->next_after = *n < max ? d->upto : out[*n - 1].id;
    }
    /* Oldest first: one analysis's messages keep their order. */
    if (d->rerun.n)
        qsort(d->rerun.v, d->rerun.n, sizeof(*d->rerun.v), id_cmp);
    size_t r = 0;
    while (!rc && *n < max && r < d->rerun.n)
        rc = take_one(d, a, d->rerun.v[r++], out, n);
    if (r) {
        memmove(d->rerun.v, d->rerun.v + r, (d->rerun.n - r) * sizeof(*d->rerun.v));
        d->rerun.n -= r;
    }
    size_t k = rc || *n >= max ? 0 : pool_ready(d->pool, d->tags, max - *n);
    for (size_t i = 0; i < k && !rc; i++)
        rc = take_one(d, a, d->tags[i], out, n);
    return rc;
}

size_t deferred_next(struct deferred *d, struct arena *a, struct ingest_msg *msgs, int64_t *rows,
                     size_t max)
{
    struct bucket_deferred *r = arena_calloc(a, max ? max : 1, sizeof(*r));
    size_t n = 0;

    if (!r || take(d, a, r, max, &n) != SP_OK) {
        LOG_ERROR("cannot read the deferred messages; reading the broker instead");
        deferred_settle(d, NULL, NULL, NULL, 0, 0);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        rows[i] = r[i].id;
        msgs[i] = (struct ingest_msg){.id = 0, /* never redelivered: it is in the table */
                                      .topic = r[i].topic,
                                      .payload = r[i].payload,
                                      .len = r[i].len,
                                      .full_len = r[i].full_len,
                                      .qos = r[i].qos,
                                      .retain = r[i].retain,
                                      .publisher = r[i].publisher,
                                      .hops = r[i].hops,
                                      .trigger = INGEST_IS_TRIGGER_TOPIC(r[i].topic)};
    }
    return n;
}

int deferred_keep(struct deferred *d, const struct ingest_msg *msgs, const struct outcome *outs,
                  int from_table, int64_t *rows, size_t n)
{
    int rc = SP_OK;

    for (size_t i = 0; i < n && !rc; i++) {
        const struct ingest_msg *m = &msgs[i];
        if (from_table) {
            if (!outs[i].deferred)
                rc = bucket_deferred_done(d->bk, rows[i]);
            continue;
        }
        if (!outs[i].deferred)
            continue;
        if (m->src && m->src->requeue) {
            m->src->requeue(m->src->ctx, m);
            rows[i] = 0;
            continue;
        }
        struct bucket_deferred r = {.topic = m->topic,
                                    .payload = m->payload,
                                    .len = m->len,
                                    .full_len = m->full_len,
                                    .qos = m->qos,
                                    .retain = m->retain,
                                    .hops = m->hops,
                                    .publisher = m->publisher};
        if (!(rc = bucket_defer(d->bk, &r, &rows[i])))
            rc = bucket_remember(d->bk, m->id, outs[i].digest);
    }
    return rc;
}

size_t deferred_cut(struct outcome *outs, const uint64_t *tickets, size_t n, const struct pool *pl)
{
    size_t kept = 0, detached = 0;

    for (size_t i = 0; i < n; i++) {
        kept += !outs[i].deferred;
        detached += tickets[i] != 0;
    }
    if (kept == 0 && detached == 0 && n > 0) {
        struct outcome *o = &outs[0];
        o->deferred = 0;
        outcome_fail(o, R_analysis_error,
                     "analysis %s: its results do not fit in the batch memory (%u MiB)",
                     pool_name(pl, (size_t)o->job), (unsigned)(SP_LIMIT_ARENA >> 20));
        LOG_WARN("%s; dead-lettered", o->detail);
        kept = 1;
    }
    if (kept + detached < n)
        LOG_INFO("batch memory full: %zu of %zu messages processed; the rest run in the next batch",
                 kept + detached, n);
    return kept;
}

static void kept(struct deferred *d, int64_t row, uint64_t ticket)
{
    if (ticket)
        pool_tag(d->pool, ticket, row);
    else if (ids_push(&d->rerun, row))
        LOG_ERROR("out of memory: deferred message %lld waits for the next start", (long long)row);
}

void deferred_settle(struct deferred *d, const struct outcome *outs, const int64_t *rows,
                     const uint64_t *tickets, size_t n, int committed)
{
    for (size_t i = 0; i < n; i++) {
        if (committed && outs[i].deferred && rows[i])
            kept(d, rows[i], tickets[i]);
        else if (tickets[i])
            pool_forget(d->pool, tickets[i]);
    }
    if (committed) {
        d->after = d->next_after;
    } else {
        d->next_after = d->after;
        for (size_t i = 0; i < d->taken.n; i++)
            kept(d, d->taken.v[i], 0);
    }
    d->taken.n = 0;
}
