/*
 * pickups.h - the commands of `sealpipe device cmd` that leave with the
 * answers to a device's HTTP, UDP and TCP requests (those transports have no
 * topic to publish them on; TagoTipServers.md §2.6): each command once, to
 * the first request of its kind (plain or sealed) after it was queued,
 * recorded with the request's digest in the request's batch transaction
 * (the command_pickups table, schemas/bucket.sql). A retry of that request
 * gets the same commands again, and picks up no new one: a captured request
 * replayed by someone else cannot take the device's commands.
 *
 * Not thread-safe: the pipeline's thread, like its bucket.
 */
#ifndef SP_PICKUPS_H
#define SP_PICKUPS_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "bucket.h"

struct pickups;

/* Prepares the statements on b's connection. Returns 0, SP_ERR_NOMEM or SP_ERR_DB. */
int pickups_open(struct bucket *b, struct pickups **out) __attribute__((warn_unused_result));
void pickups_close(struct pickups *p);

/*
 * Up to max commands for serial, sealed or plain, that no request picked up
 * yet (payload NULL: not sealed yet), oldest first, strings in a. Returns
 * 0, SP_ERR_NOMEM or SP_ERR_DB.
 */
int pickups_waiting(struct pickups *p, const char *serial, int sealed, struct arena *a,
                    struct bucket_command *out, size_t max, size_t *n)
    __attribute__((warn_unused_result));
/* The commands the request of this digest picked up, oldest first. */
int pickups_taken_by(struct pickups *p, const uint8_t digest[BUCKET_DIGEST_LEN], struct arena *a,
                     struct bucket_command *out, size_t max, size_t *n)
    __attribute__((warn_unused_result));
/* In the open batch: command id leaves with the answer to the request of
 * this digest. Returns 0 or SP_ERR_DB. */
int pickups_take(struct pickups *p, int64_t id, const uint8_t digest[BUCKET_DIGEST_LEN],
                 int64_t now_ms) __attribute__((warn_unused_result));

#endif
