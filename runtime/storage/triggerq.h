/*
 * triggerq.h - the trigger_queue and schedules tables (schemas/bucket.sql):
 * analysis runs that no device message starts, waiting to be run, and where
 * each analysis's schedule stands.
 *
 * Every write is made in the caller's open transaction on the bucket (the
 * batch's, or one the caller opened between batches), so a run is queued
 * exactly when what queued it commits, and consumed exactly when its outcome
 * does. Single-threaded, like the bucket.
 */
#ifndef SP_TRIGGERQ_H
#define SP_TRIGGERQ_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"

struct bucket;
struct triggerq;

/* One waiting run, as triggerq_take reads it (strings in the caller's arena). */
struct triggerq_row {
    int64_t id;
    const char *analysis;
    const char *kind;   /* "tick", "run" */
    const char *serial; /* NULL: no device */
    const char *ctx;    /* JSON object text */
    int hops;
    int64_t created_at;
};

int triggerq_open(struct bucket *b, struct triggerq **out) __attribute__((warn_unused_result));
void triggerq_close(struct triggerq *q);

/* Queues one run. 0 or SP_ERR_DB. */
int triggerq_add(struct triggerq *q, const struct triggerq_row *r)
    __attribute__((warn_unused_result));
/* Up to max waiting runs with id > after into out (strings in a): the
 * ticks, events and conditions first, oldest first, then the runs of
 * run_analysis(), oldest first, so that a chain that fans out does not hold
 * up the others. 0 with *n, SP_ERR_NOMEM or SP_ERR_DB. */
int triggerq_take(struct triggerq *q, struct arena *a, int64_t after, struct triggerq_row *out,
                  size_t max, size_t *n) __attribute__((warn_unused_result));
/* Deletes run id (absent: nothing). 0 or SP_ERR_DB. */
int triggerq_done(struct triggerq *q, int64_t id) __attribute__((warn_unused_result));
/*
 * 1 when a run of (analysis, kind) waits: in the queue, or in the deferred
 * table under the topic deferred_topic (a run still going when its batch
 * committed); 0 when none does; SP_ERR_DB.
 */
int triggerq_waiting(struct triggerq *q, const char *analysis, const char *kind,
                     const char *deferred_topic) __attribute__((warn_unused_result));
/* Rows of (analysis, kind) in the queue, or -1 on a database error. */
int64_t triggerq_waiting_count(struct triggerq *q, const char *analysis, const char *kind);
/* Rows in the queue, or -1 on a database error. */
int64_t triggerq_count(struct triggerq *q);

/*
 * The schedule row of analysis: 1 with spec (cut to cap bytes), *last_due
 * and *last_tick (-1: no tick yet); 0 when there is none; SP_ERR_DB.
 */
int triggerq_schedule_get(struct triggerq *q, const char *analysis, char *spec, size_t cap,
                          int64_t *last_due, int64_t *last_tick)
    __attribute__((warn_unused_result));
/* Writes the schedule row of analysis (last_tick -1: none). 0 or SP_ERR_DB. */
int triggerq_schedule_set(struct triggerq *q, const char *analysis, const char *spec,
                          int64_t last_due, int64_t last_tick) __attribute__((warn_unused_result));

#endif
