/*
 * triggers.h - analysis runs that no device message starts: a schedule's
 * tick(ctx), and run(ctx) for another analysis's run_analysis() call.
 *
 * One mechanism for both: a run is a row of trigger_queue
 * (storage/triggerq.h), written in a transaction (the caller's batch for
 * run_analysis, one of its own between batches for a tick), read by an
 * ingest source (transport/trigsrc.h) and run through the batch loop as a
 * message whose topic is $trigger#<kind>/<analysis>[/<serial>] and whose
 * payload is the handler's ctx (ingest.h, ingest_msg.trigger). So a run gets
 * everything a message gets: the sandboxed worker and its limits, detaching,
 * one transaction for its outputs and the consumption of its row, dead
 * letters with a reason (and `dead-letter retry`), the inspector, metrics.
 *
 * The guarantees (sdk/lua/README.md, "Triggers"): a run's records,
 * inserts, queued runs and publishes are committed once, with the deletion
 * of its row; a crash before that runs it again. Ticks of one analysis
 * never overlap: a tick is queued only when none of the analysis waits
 * (queued, or in the deferred table while it runs detached). Due times
 * missed while the daemon was down, or while a tick ran, make one tick
 * with ctx.missed.
 *
 * Called by the pipeline, single-threaded.
 */
#ifndef SP_TRIGGERS_H
#define SP_TRIGGERS_H

#include <stddef.h>
#include <stdint.h>

#include "ingest.h"
#include "outcome.h"

struct bucket;
struct devcache;
struct pool;
struct triggers;

/* runs_max: run_analysis() runs of one analysis that may wait (a call past
 * it fails its caller); 0: the default, 10,000. */
int triggers_open(struct bucket *bk, struct pool *pl, struct devcache *devs, int runs_max,
                  struct triggers **out) __attribute__((warn_unused_result));
void triggers_free(struct triggers *tr);

/* The trigger queue as a source, for pipeline_add_source. */
const struct ingest_source *triggers_source(struct triggers *tr);

/*
 * Phase 1, for a message with m->trigger: the analysis and handler its
 * topic names, and its device, into o (o->job, o->hm); or o a dead letter:
 * no_route when the analysis is not loaded or has no such handler (a
 * `dead-letter retry` runs it once it is back), unknown_device when the
 * device is gone, unsupported for a topic of no known kind.
 */
void triggers_route(struct triggers *tr, const struct ingest_msg *m, int64_t now,
                    struct outcome *o);

/* Phase 2: o's run_analysis() calls name loaded analyses with a run
 * function; else o fails (analysis_error), as insert() for an unknown
 * device does. */
void triggers_check_runs(struct triggers *tr, struct outcome *o, const char *analysis);

/*
 * Phase 3, in the open batch, once m's outcome is written: the runs o's
 * analysis asked for are queued (when o is stored), and, for a run read from
 * the queue, its row is consumed. 0 or SP_ERR_DB.
 */
int triggers_finish(struct triggers *tr, const struct ingest_msg *m, const struct outcome *o,
                    int64_t now) __attribute__((warn_unused_result));
/* In the open batch: the rows of the batch's runs that went to the deferred
 * table (deferred_keep) are consumed: the deferred row carries them now. */
int triggers_deferred(struct triggers *tr, const struct ingest_msg *msgs,
                      const struct outcome *outs, size_t n) __attribute__((warn_unused_result));
/* After the batch's commit (committed 1) or rollback: its runs counted. */
void triggers_done(struct triggers *tr, int committed);

/*
 * Between batches: queues a tick for each analysis whose schedule has come
 * due, in a transaction of its own, and sets the waiting gauge. Returns
 * the number queued, or SP_ERR_DB (tried again at the next call).
 */
int triggers_schedule_step(struct triggers *tr, int64_t now);

/*
 * Between batches: the connections and disconnections device_status
 * recorded since the last step become one event run per analysis whose `on`
 * lists them, in a transaction of their own that also forgets them (an
 * analysis loaded later does not see older ones). Returns the number of runs
 * queued, or an error (tried again at the next call).
 */
int triggers_events_step(struct triggers *tr, int64_t now);
/*
 * Between batches: the conditions whose `for` has run out since they began
 * to hold (and no record broke them) fire, in a transaction of their own.
 * Returns the number of runs queued, or an error.
 */
int triggers_due_step(struct triggers *tr, int64_t now);
/* 1 when some analysis has "offline" in its `on` and a scan is due. */
int triggers_offline_due(const struct triggers *tr, int64_t now);
/*
 * Between batches, when triggers_offline_due and the pipeline is caught up
 * with what devices sent (no backlog, device_status's last_sent folded):
 * every registered device silent for its offline_after (the device's param
 * offline_after, else the analysis's) and not yet reported for that silence
 * becomes one "offline" event run per such analysis, in a transaction of
 * its own. Returns the number queued, or an error.
 */
int triggers_offline_step(struct triggers *tr, int64_t now);

#endif
