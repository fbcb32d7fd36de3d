/*
 * dlretry.h - dead letters run again, as an ingest source (core/ingest.h):
 * the requests `sealpipe dead-letter retry` leaves in sealpipe.db
 * (storage/deadletters.h) become messages with the dead letter's topic,
 * original bytes, device and binding, and each is consumed or kept with its
 * new reason in the batch transaction (the source's settle()). Looked at
 * every DLRETRY_POLL_MS, and at once again while requests are left.
 *
 * The binding comes from the topic: "$tip" is a raw frame and "$tips" a
 * whole envelope (UDP, TCP, HTTP's /v1/tips), which carry their own
 * credentials and are checked again; every other topic, HTTP's
 * $tip/<serial>/push included, runs as the MQTT binding, whose sender was
 * authenticated when the message first came in (a message of HTTP, UDP or
 * TCP refused before its sender proved who it is never becomes a dead
 * letter). The publisher is the dead letter's device.
 *
 * Not thread-safe: the pipeline's thread. The source stays up: a database
 * error is logged and the requests are read again later.
 */
#ifndef SP_DLRETRY_H
#define SP_DLRETRY_H

#include "core/ingest.h"
#include "storage/bucket.h"

#define DLRETRY_POLL_MS 250
#define DLRETRY_NAME    "dead-letter-retry"

struct dlretry;

/* On the daemon's bucket. 0, SP_ERR_IO, SP_ERR_NOMEM or SP_ERR_DB. */
int dlretry_open(struct bucket *b, struct dlretry **out) __attribute__((warn_unused_result));
void dlretry_free(struct dlretry *r);

const struct ingest_source *dlretry_source(struct dlretry *r);

#endif
