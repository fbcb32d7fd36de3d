/*
 * devstatus.h - the device_status table (schemas/bucket.sql): whether each
 * device is connected, when it last connected, sent and had records stored,
 * and its counts.
 *
 * Connection changes (devstatus_connect, _disconnect, _roster) come from
 * any thread (transport/inspectd.c) and are kept until a commit has written
 * them: in the transaction of the next batch (devstatus_write), or in one of
 * their own (devstatus_flush) when no batch comes. The counts and times of
 * the messages are devstate.h's.
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

void devstatus_connect(struct devstatus *ds, const struct devstatus_conn *c);
void devstatus_disconnect(struct devstatus *ds, const struct devstatus_conn *c);
/* The whole set of connections open now (one entry per connection); a
 * device connected before and not in it left at end->at, for end->reason. */
void devstatus_roster(struct devstatus *ds, const struct devstatus_conn *v, size_t n,
                      const struct devstatus_conn *end);

/* In the caller's open transaction: writes what is pending. 0 or SP_ERR_DB. */
int devstatus_write(struct devstatus *ds);
/* The transaction committed (1) or rolled back (0). ds may be NULL (the
 * pipeline runs without it when it could not open). */
void devstatus_done(struct devstatus *ds, int committed);
/* Pending connection changes in a transaction of their own. 0 or SP_ERR_DB. */
int devstatus_flush(struct devstatus *ds);
/* 1 once if connection changes were dropped since the last call (too many
 * waiting, or no memory): the caller has the broker send its roster again. */
int devstatus_lost(struct devstatus *ds);

#endif
