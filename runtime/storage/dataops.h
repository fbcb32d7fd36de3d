/*
 * dataops.h - what analyses ask of the buckets besides query(): a page of
 * the devices with their tags and status (devices{}), one variable's numbers
 * reduced (aggregate{}), and old rows deleted (delete_data{}). Statements on
 * the bucket's connection, used by the pipeline's thread: the reads between
 * batches or while a batch's analyses run (committed data: no batch
 * transaction is open then), the delete inside the batch transaction that
 * stores the run's results. Not thread-safe, like the bucket.
 */
#ifndef SP_DATAOPS_H
#define SP_DATAOPS_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "sandbox/host.h"

struct bucket;
struct dataops;

/* Prepares the statements. 0, SP_ERR_NOMEM or SP_ERR_DB. */
int dataops_open(struct bucket *b, struct dataops **out) __attribute__((warn_unused_result));
void dataops_close(struct dataops *d);

/*
 * Up to q->limit devices of the registry with serial > q->after, in serial
 * order, whose tags hold every member of q->tags_json (a JSON object of
 * strings, or NULL), with connected (device_status.connections > 0) and
 * last_sent (device_status; 0: never). Strings in a. device_status lags the
 * latest messages by up to a fold (devstate.h: a few seconds) for last_sent.
 * Returns 0 with *out and *n, SP_ERR_NOMEM or SP_ERR_DB.
 */
int dataops_devices(struct dataops *d, const struct host_devices_query *q, struct arena *a,
                    struct host_device **out, size_t *n) __attribute__((warn_unused_result));

/*
 * count, min, max, avg, sum, and the first and last value (by time, then
 * id) of the numeric records of q->serial's q->variable with start <= time
 * <= stop, in one statement over the (device, variable, time) index. With
 * count 0 the rest is 0. Returns 0 or SP_ERR_DB.
 */
int dataops_aggregate(struct dataops *d, const struct host_aggregate_query *q,
                      struct host_aggregate *out) __attribute__((warn_unused_result));

/*
 * In the open batch: deletes at most max rows of serial's data (of variable
 * only, unless NULL) with time < before_ms, the oldest first (time, then
 * id). Returns the number deleted, or SP_ERR_DB.
 */
int dataops_delete(struct dataops *d, const char *serial, const char *variable, int64_t before_ms,
                   int64_t max) __attribute__((warn_unused_result));

#endif
