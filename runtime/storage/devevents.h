/*
 * devevents.h - the device_events and offline_state tables
 * (schemas/bucket.sql): the connections and disconnections device_status's
 * TRIGGERs record, and which silence of each device each analysis has been
 * told of. Writes are made in the caller's open transaction.
 * Single-threaded, like the bucket.
 */
#ifndef SP_DEVEVENTS_H
#define SP_DEVEVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"

struct bucket;
struct devevents;

/* One row of device_events (strings in the caller's arena, NULL when absent). */
struct devevent {
    int64_t id;
    const char *serial, *kind; /* kind: "connected" or "disconnected" */
    int64_t at;
    const char *reason, *client_id, *address, *protocol;
};

/* A device silent since last_sent and not yet reported for it. */
struct devsilence {
    const char *serial;
    int64_t last_sent;
};

int devevents_open(struct bucket *b, struct devevents **out) __attribute__((warn_unused_result));
void devevents_close(struct devevents *de);

/* Up to max events, oldest first. 0 with *n, SP_ERR_NOMEM or SP_ERR_DB. */
int devevents_take(struct devevents *de, struct arena *a, struct devevent *out, size_t max,
                   size_t *n) __attribute__((warn_unused_result));
/* Deletes the events up to id. 0 or SP_ERR_DB. */
int devevents_forget(struct devevents *de, int64_t id) __attribute__((warn_unused_result));
/*
 * Up to max devices of device_status, in serial order after `after` ("" for
 * the first), that sent last at or before `before` and whose silence
 * analysis was not told of (offline_state). 0 with *n, SP_ERR_NOMEM or
 * SP_ERR_DB.
 */
int devevents_silent(struct devevents *de, const char *analysis, int64_t before, const char *after,
                     struct arena *a, struct devsilence *out, size_t max, size_t *n)
    __attribute__((warn_unused_result));
/* Records that analysis was told of serial's silence since last_sent. 0 or SP_ERR_DB. */
int devevents_reported(struct devevents *de, const char *analysis, const char *serial,
                       int64_t last_sent, int64_t now) __attribute__((warn_unused_result));

#endif
