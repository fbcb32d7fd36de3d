/*
 * devstatus.h - the device_status table (schemas/bucket.sql): whether each
 * device is connected, when it last connected, sent and had records stored,
 * and its counts.
 *
 * Two kinds of change, both written inside a transaction the caller opens
 * on the bucket's connection (devstatus_write), so a batch's counts commit
 * with its records or not at all:
 *   - the batch's messages (devstatus_message), pipeline thread only; after
 *     a rollback they are dropped (the messages come again and count then);
 *   - connections (devstatus_connect, _disconnect, _roster), from any thread
 *     (transport/inspectd.c), kept until a commit has written them.
 * devstatus_flush() writes pending connection changes in a transaction of
 * their own, for when no batch comes.
 */
#ifndef SP_DEVSTATUS_H
#define SP_DEVSTATUS_H

#include <stddef.h>
#include <stdint.h>

struct bucket;
struct devstatus;

/* A connection as the broker plugin reports it; strings may be NULL. */
struct devstatus_conn {
    const char *serial;
    int64_t at;
    const char *client_id, *address, *protocol;
    const char *reason; /* disconnect: why */
};

int devstatus_open(struct bucket *b, struct devstatus **out);
void devstatus_close(struct devstatus *ds);

/* A message of serial received at (ms), stored with records records, or a
 * dead letter. retry: a dead letter run again (`dead-letter retry`): its
 * records count, but it is no new message and no new dead letter (the
 * counts are of what happened, as retention does not lower them either). */
void devstatus_message(struct devstatus *ds, const char *serial, int64_t at, size_t records,
                       int dead, int retry);

void devstatus_connect(struct devstatus *ds, const struct devstatus_conn *c);
void devstatus_disconnect(struct devstatus *ds, const struct devstatus_conn *c);
/* The whole set of connections open now (one entry per connection); a
 * device connected before and not in it left at end->at, for end->reason. */
void devstatus_roster(struct devstatus *ds, const struct devstatus_conn *v, size_t n,
                      const struct devstatus_conn *end);

/* In the caller's open transaction: writes what is pending. 0 or SP_ERR_DB. */
int devstatus_write(struct devstatus *ds);
/* The transaction committed (1) or rolled back (0). ds may be NULL, as for
 * devstatus_message (the pipeline runs without it when it could not open). */
void devstatus_done(struct devstatus *ds, int committed);
/* Pending connection changes in a transaction of their own. 0 or SP_ERR_DB. */
int devstatus_flush(struct devstatus *ds);
/* 1 once if connection changes were dropped since the last call (too many
 * waiting, or no memory): the caller has the broker send its roster again. */
int devstatus_lost(struct devstatus *ds);

#endif
