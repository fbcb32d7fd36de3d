/*
 * outbox.h - the webhook_outbox table (schemas/bucket.sql): webhook()
 * requests waiting to be sent, and the form a request takes in its
 * webhook_failed dead letter (a JSON object), which `dead-letter retry` puts
 * back into the outbox.
 *
 * Every write is made in the caller's open transaction on the bucket: the
 * batch's (a call's request is queued with the call's results) or one that
 * transport/webhooks.c opens between batches for the results of a turn.
 * Single-threaded, like the bucket.
 */
#ifndef SP_OUTBOX_H
#define SP_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/buf.h"

struct bucket;
struct outbox;

/* Dead letters of requests have the topic OUTBOX_TOPIC_PREFIX<analysis>. */
#define OUTBOX_TOPIC_PREFIX "$webhook#"
#define OUTBOX_REASON       "webhook_failed"

/* One request; strings borrowed (outbox_get: in the caller's arena). */
struct outbox_row {
    int64_t id; /* outbox_add: 0 for a new id */
    const char *analysis;
    const char *serial; /* NULL: no device */
    const char *origin; /* topic of the message or run that made it; may be NULL */
    const char *method, *url;
    const char *headers; /* a JSON object {"Name": "value", ...} */
    const uint8_t *body;
    size_t body_len;
    int64_t created_at;
    int attempts; /* failed attempts so far */
    int64_t next_at;
    const char *last_error; /* NULL: none */
};

int outbox_open(struct bucket *b, struct outbox **out) __attribute__((warn_unused_result));
void outbox_close(struct outbox *ob);

/* Queues r (attempts 0, next_at r->next_at). 0 or SP_ERR_DB. */
int outbox_add(struct outbox *ob, const struct outbox_row *r) __attribute__((warn_unused_result));
/* Ids of up to max rows due at now (next_at <= now), soonest first, into
 * ids, at most per_host of one URL host (its oldest due rows: those in
 * flight are among them). 0 with *n, or SP_ERR_DB. */
int outbox_due(struct outbox *ob, int64_t now, int per_host, int64_t *ids, size_t max, size_t *n)
    __attribute__((warn_unused_result));
/* Row id into *r (strings and body in a). 0, SP_ERR_NOTFOUND, SP_ERR_NOMEM
 * or SP_ERR_DB. */
int outbox_get(struct outbox *ob, int64_t id, struct arena *a, struct outbox_row *r)
    __attribute__((warn_unused_result));
/* Deletes row id (absent: nothing). 0 or SP_ERR_DB. */
int outbox_delete(struct outbox *ob, int64_t id) __attribute__((warn_unused_result));
/* Row id failed and waits: attempts, next_at and last_error (NULL: none)
 * set. 0 or SP_ERR_DB. */
int outbox_retry(struct outbox *ob, int64_t id, int attempts, int64_t next_at,
                 const char *last_error) __attribute__((warn_unused_result));
/* Rows in the outbox, or -1 on a database error. */
int64_t outbox_count(struct outbox *ob);

/*
 * Appends r as its dead letter's payload: {"delivery": id (null when it has
 * none), "method", "url", "headers": {...}, "body_base64", "origin",
 * "attempts"}. The dead letter's topic is OUTBOX_TOPIC_PREFIX analysis and
 * its device r->serial. 0 or SP_ERR_NOMEM.
 */
int outbox_request_json(const struct outbox_row *r, struct buf *b)
    __attribute__((warn_unused_result));

#endif
