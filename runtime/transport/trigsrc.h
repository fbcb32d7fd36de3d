/*
 * trigsrc.h - the analysis runs that no device message starts, as an ingest
 * source (core/ingest.h): the rows of trigger_queue (storage/triggerq.h)
 * become messages with the topic $trigger#<kind>/<analysis>[/<serial>], the
 * row's ctx as payload and ingest_msg.trigger set; core/triggers.c routes
 * them to the analysis's handler and deletes each row in the transaction
 * that stores its run's outcome (or moves it to the deferred table). Looked
 * at every TRIGSRC_POLL_MS, at once again while rows are left, and at once
 * after trigsrc_poke.
 *
 * The rows stay in the table until their batch commits, so nothing is held
 * here between batches, and the source reads once per batch (as
 * dlretry.c, for the same reason). Not thread-safe: the pipeline's thread.
 * The source stays up: a database error is logged and the rows are read
 * again later.
 */
#ifndef SP_TRIGSRC_H
#define SP_TRIGSRC_H

#include <stdint.h>

#include "core/ingest.h"
#include "storage/bucket.h"

#define TRIGSRC_POLL_MS 250
#define TRIGSRC_NAME    "triggers"

struct trigsrc;

/* On the daemon's bucket. 0, SP_ERR_IO, SP_ERR_NOMEM or SP_ERR_DB. */
int trigsrc_open(struct bucket *b, struct trigsrc **out) __attribute__((warn_unused_result));
void trigsrc_free(struct trigsrc *t);

const struct ingest_source *trigsrc_source(struct trigsrc *t);
/* Rows were queued: read at the next chance rather than at the next tick. */
void trigsrc_poke(struct trigsrc *t);
/* The queue row message m came from, or 0 when m is not one of this
 * source's (a run from the deferred table or a dead-letter retry). */
int64_t trigsrc_row(const struct trigsrc *t, const struct ingest_msg *m);

#endif
