/*
 * triggers_internal.h - the state of core/triggers.h, shared by its files:
 * triggers.c (the route, the runs an analysis queues, the queue's rows),
 * schedules.c (ticks) and devevents.c (connections, disconnections,
 * silences). Nothing else includes it.
 */
#ifndef SP_TRIGGERS_INTERNAL_H
#define SP_TRIGGERS_INTERNAL_H

#include <stdint.h>

#include "base/buf.h"
#include "sandbox/host.h"

/* Bytes of a ctx the daemon writes: a run's payload and a little more. */
#define TRIGGERS_CTX_MAX (HOST_RUN_PAYLOAD_MAX * 6 + 1024)

/* The kinds of run: the word in the topic and the queue, by handler. */
#define TRIGGERS_KINDS HOST_HANDLERS

struct bucket;
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
    struct buf ctx;                    /* scratch for a ctx */
    uint64_t batch[TRIGGERS_KINDS][2]; /* runs of the open batch: [handler][failed] */
    uint64_t missed;                   /* due times folded, not yet counted */
    int64_t next_offline;              /* when the next silence scan is due, wall ms */
};

/* triggers.c: the kind's word of a run ("tick", "run", "event"), by handler;
 * NULL for handle (a message, not a run). */
const char *triggers__kind(int handler);
/* Queues a run of kind handler for analysis (serial NULL: none) with the
 * ctx in tr->ctx, in the open transaction. 0 or SP_ERR_DB. */
int triggers__queue(struct triggers *tr, const char *analysis, int handler, const char *serial,
                    int hops, int64_t now);

#endif
