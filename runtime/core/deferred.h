/*
 * deferred.h - which rows of the bucket's deferred table a batch takes.
 *
 * A message waits in the deferred table when its analysis results did not
 * fit in a batch's memory (it runs again later), or when its job was
 * detached, still running in its worker when the batch committed (pool.h):
 * then its row is named by the job's ticket, and it is taken only once the
 * result is in, which the batch stores without running the analysis again.
 * Rows left by an earlier run of the daemon have no result in memory: they
 * run again, oldest first. The bookkeeping changes only with a commit: what
 * a rolled-back batch took is taken again.
 */
#ifndef SP_DEFERRED_H
#define SP_DEFERRED_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "ingest.h"
#include "outcome.h"
#include "sandbox/pool.h"
#include "storage/bucket.h"

struct deferred;

/* For bk's deferred table (rows in it now are an earlier run's) and pool's
 * detached jobs; batch: most rows taken at once. Returns 0 or an SP_ERR_ code. */
int deferred_open(struct bucket *bk, struct pool *pool, size_t batch, struct deferred **out)
    __attribute__((warn_unused_result));
void deferred_free(struct deferred *d);

/* Whether there are rows to take now. */
int deferred_any(struct deferred *d);
/*
 * Up to max rows to take now as a batch, into msgs (their memory in a) and
 * their ids into rows: an earlier run's, then those to run again, then those
 * whose result is in. They have no source: they were acknowledged when they
 * were deferred, and their answers leave through the output. Returns the
 * count (0 also when the table cannot be read: the broker is read instead).
 */
size_t deferred_next(struct deferred *d, struct arena *a, struct ingest_msg *msgs, int64_t *rows,
                     size_t max);
/*
 * Which of the batch's n messages wait in the deferred table: those whose
 * analysis results did not fit in the batch memory (outcome.deferred: a
 * worker's jobs from its first reply that did not fit on, pool.h), so that
 * the whole batch may be acknowledged and the rest's publishes leave at
 * once (what a burst of heavy messages holds in memory stays bounded by one
 * batch's), and those whose jobs were detached (tickets[i]). When no message
 * could be kept or detached, the first does not fit even alone: it becomes
 * a dead letter. Returns the number of messages processed now.
 */
size_t deferred_cut(struct outcome *outs, const uint64_t *tickets, size_t n, const struct pool *pl);
/*
 * In the open batch of n messages: writes those whose outcome is deferred
 * to the table (rows[i]: the new row's id) and their delivery to the
 * window (a redelivery is skipped), or hands them back to a source that
 * requeues; for a batch taken from the table, deletes the rows of the
 * messages processed (the others stay). Returns 0 or SP_ERR_DB.
 */
int deferred_keep(struct deferred *d, const struct ingest_msg *msgs, const struct outcome *outs,
                  int from_table, int64_t *rows, size_t n) __attribute__((warn_unused_result));
/*
 * The batch committed: its deferred rows are known (named by the detached
 * job's ticket, or to run again); or it was rolled back: its detached jobs
 * are dropped (the messages come again) and what it took is taken again.
 */
void deferred_settle(struct deferred *d, const struct outcome *outs, const int64_t *rows,
                     const uint64_t *tickets, size_t n, int committed);

#endif
