/*
 * condstate.h - the condition_state table (schemas/bucket.sql): where each
 * analysis's conditions stand for each device. Writes are made in the
 * caller's open transaction. Single-threaded, like the bucket.
 */
#ifndef SP_CONDSTATE_H
#define SP_CONDSTATE_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"

struct bucket;
struct condstate;

/* One row; strings in the caller's arena. -1 for a NULL time. */
struct condrow {
    const char *analysis, *cond, *serial;
    int state; /* enum when_state */
    int64_t since, due_at;
    const char *last_value; /* JSON text, NULL: none yet */
    int64_t last_time;      /* INT64_MIN: none yet */
};

int condstate_open(struct bucket *b, struct condstate **out) __attribute__((warn_unused_result));
void condstate_close(struct condstate *cs);

/* The row of (analysis, cond, serial) into *r: 1, 0 when there is none (*r
 * is then armed, with nothing seen), or an error. */
int condstate_get(struct condstate *cs, struct arena *a, struct condrow *r)
    __attribute__((warn_unused_result));
/* Writes *r. 0 or SP_ERR_DB. */
int condstate_put(struct condstate *cs, const struct condrow *r)
    __attribute__((warn_unused_result));
/* Up to max rows whose due_at is at or before now, oldest due first. */
int condstate_due(struct condstate *cs, int64_t now, struct arena *a, struct condrow *out,
                  size_t max, size_t *n) __attribute__((warn_unused_result));

#endif
