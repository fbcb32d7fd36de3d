/*
 * pipeline.h - message -> device -> decrypt -> parse -> analysis -> records.
 *
 * The pipeline owns the batch loop: it reads what the broker has sent
 * (mqlink_read), turns each message into records or a dead letter inside one
 * bucket transaction, commits, and only then lets the acknowledgements and
 * the analyses' publishes leave (mqlink_flush). If the commit fails nothing
 * is acknowledged: the connection is dropped and the broker redelivers.
 *
 * Routing: $tips/{serial}/push carries TagoTiP/S envelopes, $tip/{serial}/push
 * plain TagoTiP bodies; any other topic is taken in only if an analysis
 * declares a filter matching it (first analysis in name order wins), for the
 * device named by the filter's {serial} level.
 *
 * Single-threaded; called from main.c's loop.
 */
#ifndef SP_PIPELINE_H
#define SP_PIPELINE_H

#include <stdint.h>

#include "bucket.h"
#include "conf.h"
#include "mqlink.h"
#include "registry.h"
#include "sandbox/pool.h"

struct pipeline;

/* Borrowed: all of them must outlive the pipeline. */
int pipeline_new(const struct conf *c, struct registry *reg, struct bucket *bk, struct pool *pl,
                 struct pipeline **out) __attribute__((warn_unused_result));
void pipeline_free(struct pipeline *p);

/*
 * Loads every analyses_dir/NAME.lua into the Lua worker. A script that fails to load
 * is reported in the log and skipped. Returns the number loaded, or SP_ERR_IO
 * if the folder cannot be read (a missing folder loads nothing).
 */
int pipeline_load_analyses(struct pipeline *p);

/*
 * Subscribes link to the fixed topics and every analysis filter. Call after
 * each (re)connect, between batches. Returns 0 or SP_ERR_MQTT.
 */
int pipeline_subscribe(struct pipeline *p, struct mqlink *link, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * One batch: waits up to timeout_ms for messages, processes and commits them,
 * then flushes acknowledgements and publishes. Returns the number of messages
 * handled, or SP_ERR_MQTT (connection lost: reconnect and call again; nothing
 * uncommitted was acknowledged) or SP_ERR_DB (commit failed: nothing was
 * acknowledged and the connection was dropped for redelivery).
 */
int pipeline_step(struct pipeline *p, struct mqlink *link, int timeout_ms);

/* Logs the counters (messages, records, duplicates, dead letters per reason). */
void pipeline_log_stats(struct pipeline *p);

#endif
