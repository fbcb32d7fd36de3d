/*
 * devstate.h - what the messages change per device: the counts and times of
 * device_status, and the last TagoTiP/S counter accepted (device_counters,
 * replay protection), both in schemas/bucket.sql.
 *
 * Written as rows of those tables, each device a batch holds costs an
 * UPDATE of each (about 1.5 us apiece), so a batch of 1,000 messages from
 * 1,000 devices cost three times what one from 10 devices did (make bench,
 * phase d10k). Instead, a batch writes its devices' tallies (tally.h) as one
 * row of device_status_pending, in its own transaction: a crash cannot make
 * them disagree with the data. The same tallies are kept in memory, and
 * devstate_flush() adds them to the two tables and deletes the rows, in one
 * transaction, within a second once the messages pause, and every 5 s while
 * they keep coming. devstate_open() folds what a daemon that stopped or
 * crashed left, before anything else runs, so the memory and the tables
 * together always know every counter committed.
 *
 * A device seen since the last fold is an entry in memory; the replay check
 * reads its last counter from there, and from device_counters once per fold.
 * A device that finds no room (more than DEVSTATE_DEVICES since the last
 * fold) is written directly, as before. Pipeline thread only.
 */
#ifndef SP_DEVSTATE_H
#define SP_DEVSTATE_H

#include <stddef.h>
#include <stdint.h>

struct bucket;
struct devstate;

/* Devices held in memory between two folds; past that, directly. */
#define DEVSTATE_DEVICES 16384

/* Prepares and folds the rows a stopped or crashed daemon left. Returns 0,
 * SP_ERR_NOMEM, or SP_ERR_DB with err set: the daemon must not start, as
 * the replay check would not see the counters in those rows. */
int devstate_open(struct bucket *b, struct devstate **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void devstate_close(struct devstate *st);

/*
 * In the open batch: 1 when counter is greater than the last one accepted
 * from the device, 0 when not (a replay), or SP_ERR_DB. created is the
 * device's created_ms: a device removed and added again under the same
 * serial starts over. Nothing is advanced: devstate_message() does that once
 * the message is written.
 */
int devstate_counter_new(struct devstate *st, const char *serial, int64_t created, uint32_t counter)
    __attribute__((warn_unused_result));

/* A message of the device written in the open batch. */
struct devstate_msg {
    const char *serial;
    int64_t created; /* the device's created_ms, 0 when not known */
    int64_t at;      /* received, Unix ms */
    size_t records;  /* stored for it */
    int dead;        /* a dead letter */
    int retry;       /* a dead letter run again: its records count, no new message */
    int64_t counter; /* the TagoTiP/S counter to advance to, -1: none */
};

/* Counts m for its device. 0, or SP_ERR_DB from a direct write. */
int devstate_message(struct devstate *st, const struct devstate_msg *m)
    __attribute__((warn_unused_result));

/* In the open batch, before its commit: its tallies as one row. 0 or SP_ERR_DB. */
int devstate_write(struct devstate *st) __attribute__((warn_unused_result));
/* The batch committed (1) or was rolled back (0). */
void devstate_done(struct devstate *st, int committed);

/* Between batches: the fold, in a transaction of its own, when due (the
 * batches paused since the last call, the oldest row is 5 s old, or memory
 * is filling) or when all is set. Called every half second. 0 or SP_ERR_DB
 * (then tried again at the next call). A stop does not fold: the next start
 * does. */
int devstate_flush(struct devstate *st, int all);

#endif
