/*
 * triggers_internal.h - the state of core/triggers.h, shared by its files:
 * triggers.c (the route, the runs an analysis queues, the queue's rows),
 * schedules.c (ticks) and devevents.c (connections, disconnections,
 * silences). Nothing else includes it.
 */
#ifndef SP_TRIGGERS_INTERNAL_H
#define SP_TRIGGERS_INTERNAL_H

#include <stdint.h>

#include "base/arena.h"
#include "base/buf.h"
#include "core/ingest.h"
#include "core/outcome.h"
#include "sandbox/host.h"

/* Bytes of a ctx the daemon writes: a run's payload and a little more. */
#define TRIGGERS_CTX_MAX (HOST_RUN_PAYLOAD_MAX * 6 + 1024)

/* run_analysis() runs of one analysis that may wait, by default. */
#define TRIGGERS_RUNS_MAX 10000

/* The kinds of run: the word in the topic and the queue, by handler. */
#define TRIGGERS_KINDS HOST_HANDLERS

struct bucket;
struct condstate;
struct devcache;
struct devevents;
struct pool;
struct triggerq;
struct trigsrc;

struct triggers {
    struct bucket *bk;
    struct pool *pool;
    struct devcache *devs;
    struct trigsrc *src;
    struct triggerq *q;
    struct devevents *ev;
    struct condstate *cs;
    struct buf ctx;                    /* scratch for a ctx */
    struct arena scratch;              /* scratch for rows and parsed params, reset per use */
    uint64_t batch[TRIGGERS_KINDS][2]; /* runs of the open batch: [handler][failed] */
    uint64_t missed;                   /* due times folded, not yet counted */
    int64_t next_offline;              /* when the next silence scan is due, wall ms */
    int runs_max;                      /* run_analysis() runs of one analysis that may wait */
    int64_t batch_runs;                /* runs the open batch accepted (runs_full) */
};

/* triggers.c: the kind's word of a run ("tick", "run", "event", "condition"), by handler;
 * NULL for handle (a message, not a run). */
const char *triggers__kind(int handler);
/* Queues a run of kind handler for analysis (serial NULL: none) with the
 * ctx in tr->ctx, in the open transaction. 0 or SP_ERR_DB. */
int triggers__queue(struct triggers *tr, const char *analysis, int handler, const char *serial,
                    int hops, int64_t now);

/* triggers.c: ends a step's own transaction: commits it when rc is 0 (and
 * has the queue read at once when runs were queued), else rolls it back.
 * Returns queued, or the error. */
int triggers__end(struct triggers *tr, int rc, int queued);
struct device_info;
/* triggers.c: the device's param name (its params are strings), parsed in
 * a; NULL when it has none. */
const char *triggers__param(const struct device_info *d, struct arena *a, const char *name);
/* triggers.c: 1 when the device serial is in analysis ai's `devices`
 * scope (it has every tag the scope names), or the analysis has none. */
int triggers__in_scope(struct triggers *tr, size_t ai, const char *serial);
/* conditions.c: the records o stored (its own and its inserts) against
 * every analysis's `when`, in the open batch. 0 or an error. */
int triggers__records(struct triggers *tr, const struct ingest_msg *m, const struct outcome *o,
                      int64_t now);

#endif
