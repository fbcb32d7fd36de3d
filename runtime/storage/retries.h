/*
 * retries.h - recent HTTP, UDP and TCP requests, remembered so that a
 * device's retry of one (the same bytes again, because it missed the
 * answer) is recognised and answered again instead of stored twice.
 *
 * MQTT redelivers with a packet id and the bucket's delivery window keys on
 * it (bucket.h). A request over the other transports has no such id and is
 * retried at the device's pace, so it is remembered by the digest of its
 * topic and payload (bucket_digest) for a time instead: INGEST_RETRY_MS and
 * INGEST_ENVELOPE_RETRY_MS (core/ingest.h). The rows are in sealpipe.db's
 * net_retries table (schemas/bucket.sql), written in the batch transaction
 * of the request, so a request committed before a crash is still known
 * after it, and a new MQTT session does not forget them.
 *
 * Not thread-safe: the pipeline's thread, like its bucket.
 */
#ifndef SP_RETRIES_H
#define SP_RETRIES_H

#include <stdint.h>

#include "bucket.h"

struct retries;

/* Prepares the statements on b's connection. Returns 0, SP_ERR_NOMEM or SP_ERR_DB. */
int retries_open(struct bucket *b, struct retries **out) __attribute__((warn_unused_result));
void retries_close(struct retries *r);

/* 1 if digest was remembered and has not expired at now_ms, 0 if not,
 * SP_ERR_DB. Sees what the open batch remembered. */
int retries_seen(struct retries *r, const uint8_t digest[BUCKET_DIGEST_LEN], int64_t now_ms);
/* In the open batch: remembers digest until until_ms. Returns 0 or SP_ERR_DB. */
int retries_remember(struct retries *r, const uint8_t digest[BUCKET_DIGEST_LEN], int64_t until_ms)
    __attribute__((warn_unused_result));
/* In the open batch: forgets what expired before now_ms. Returns 0 or SP_ERR_DB. */
int retries_prune(struct retries *r, int64_t now_ms) __attribute__((warn_unused_result));

#endif
