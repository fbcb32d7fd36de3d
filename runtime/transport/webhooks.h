/*
 * webhooks.h - delivery of webhook() requests: the outbox
 * (storage/outbox.h) filled in the batch transaction, and the sender
 * (webhook_send.h) that empties it between batches.
 *
 * A call's requests are queued with its results (webhooks_queue, from the
 * pipeline's finish(), only for a call that is stored), so a request is
 * queued exactly once per committed message or run. webhooks_turn, between
 * batches, hands the sender the rows that are due and writes what came back
 * in one transaction of its own: a 2xx answer deletes the row; 408, 425,
 * 429, 5xx or no answer (connect error, timeout) counts an attempt and sets
 * next_at = now + min(backoff · 2^attempts, 10 min) ± 20 % (a Retry-After
 * of up to 10 min instead); any other status, or the attempts spent, makes
 * the row a webhook_failed dead letter (topic $webhook#<analysis>, the
 * call's device, payload the request as JSON) in the same transaction. A row
 * in flight when the daemon stops or crashes stays and is sent again
 * (at least once; Sealpipe-Delivery, the row id, lets a receiver see it).
 *
 * Single-threaded: the pipeline's thread calls every function; the sender
 * has a thread of its own and never touches SQLite.
 */
#ifndef SP_WEBHOOKS_H
#define SP_WEBHOOKS_H

#include <stddef.h>
#include <stdint.h>

#include "sandbox/host.h"

struct bucket;
struct webhooks;

struct webhooks_opts {
    int64_t queue_max;  /* rows the outbox may hold; a call past it is a dead letter */
    int attempts;       /* attempts before a retryable failure is a dead letter */
    int64_t timeout_ms; /* one request, from connect to the end of the answer */
    int64_t backoff_ms; /* the first retry's delay, doubled each time */
};

/* The most at once in the sender: in flight, and waiting in it. */
#define WEBHOOKS_IN_FLIGHT      16
#define WEBHOOKS_PER_HOST       4
#define WEBHOOKS_WAITING        64
#define WEBHOOKS_BACKOFF_MAX_MS 600000 /* 10 min */

/*
 * Prepares the outbox statements on bk's connection and starts the sender
 * (webhook_sender_global_init must have run). Returns 0 with *out (free it
 * with webhooks_close), SP_ERR_DB, SP_ERR_NOMEM or SP_ERR_IO.
 */
int webhooks_open(struct bucket *bk, const struct webhooks_opts *o, struct webhooks **out)
    __attribute__((warn_unused_result));
/* Stops the sender (requests in flight are abandoned: their rows stay) and
 * frees wh. wh may be NULL. */
void webhooks_close(struct webhooks *wh);

/*
 * In the open batch: the n webhook() calls v[0..n) that analysis (for device
 * serial, may be NULL; started by a message or run on topic origin) made,
 * as outbox rows due at now; past queue_max rows, each further one is a
 * webhook_failed dead letter ("outbox full") instead. 0 or SP_ERR_DB.
 */
int webhooks_queue(struct webhooks *wh, const char *analysis, const char *serial,
                   const char *origin, const struct host_webhook *v, size_t n, int64_t now)
    __attribute__((warn_unused_result));
/* After the batch's commit (committed 1) or rollback: its rows counted. */
void webhooks_done(struct webhooks *wh, int committed);

/*
 * Between batches: writes the results the sender has (one transaction),
 * then submits the rows due at now (wall ms) that are not in the sender
 * yet, as many as it takes; sets the waiting gauge. Returns the number of
 * results written, or SP_ERR_DB (those rows are sent again).
 */
int webhooks_turn(struct webhooks *wh, int64_t now);

#endif
