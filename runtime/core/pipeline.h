/*
 * pipeline.h - the batch loop: message -> device -> decrypt -> parse ->
 * analysis -> records.
 *
 * The pipeline reads a batch from its ingest sources (ingest.h: the MQTT
 * link, and the queue of the HTTP, UDP and TCP listeners), turns each message
 * into records or a dead letter inside one bucket transaction, commits, and
 * only then lets the acknowledgements, the answers to devices and the
 * analyses' publishes leave. If the commit fails nothing is acknowledged:
 * the sources are dropped and the senders redeliver (or retry).
 *
 * Routing: $tips/{serial}/push carries TagoTiP/S envelopes, $tip/{serial}/push
 * plain TagoTiP bodies, and the listeners' requests whole frames, envelopes
 * and HTTP bodies (all served by tipserver.c); any other topic is taken
 * in only if an analysis declares a filter matching it (first analysis in
 * name order wins, analyses.c), for the device named by the filter's
 * {serial} level.
 *
 * Single-threaded; called from run.c's loop.
 */
#ifndef SP_PIPELINE_H
#define SP_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include "storage/bucket.h"
#include "ingest.h"
#include "storage/registry.h"
#include "sandbox/pool.h"

struct mqlink;
struct pipeline;

/* What the pipeline takes from the configuration (conf.h). */
struct pipeline_opts {
    size_t batch;             /* messages per batch and commit (batch) */
    int linger_ms;            /* a small batch waits this long for more (commit_linger_ms) */
    int key_grace;            /* seconds a rotated key still opens envelopes (key_grace) */
    int error_budget;         /* failures per (analysis, device) a minute (lua_error_budget) */
    int trigger_queue_max;    /* run_analysis() runs of one analysis waiting, at most */
    const char *analyses_dir; /* borrowed: must outlive the pipeline */
    size_t script_max;        /* bytes of one analysis source (lua_script_kb * 1024) */
};

/* Borrowed: all of them must outlive the pipeline. Returns 0 or SP_ERR_NOMEM. */
int pipeline_new(const struct pipeline_opts *o, struct registry *reg, struct bucket *bk,
                 struct pool *pl, struct pipeline **out) __attribute__((warn_unused_result));
void pipeline_free(struct pipeline *p);

/*
 * Where messages come from and where publishes go (ingest.h); borrowed, they
 * must outlive the pipeline. Call once before the first pipeline_step or
 * pipeline_commands.
 */
void pipeline_attach(struct pipeline *p, const struct ingest_source *src,
                     const struct ingest_output *out);

/*
 * Where the answers to messages taken from the deferred table go (they have
 * no source to answer through): the broker plugin's answers channel, as the
 * sources' own answers (transport/answers.h). Unset, the output takes them.
 */
void pipeline_answers_via(struct pipeline *p, const struct ingest_output *answers);

/* Most sources one pipeline reads (MQTT, the network transports' queue, the
 * device journal, dead-letter retries, the trigger queue). */
#define PIPELINE_MAX_SOURCES 5

/*
 * Another source, read in the same batches as the first (pipeline_attach's),
 * whose answers leave through it alone. Returns 0, or SP_ERR_FULL (no room,
 * or no first source yet).
 */
int pipeline_add_source(struct pipeline *p, const struct ingest_source *src);

/*
 * A source is down from the moment it fails (read() or ack() returned an
 * error, or a failed commit dropped it) until the caller has reconnected it
 * and calls pipeline_source_up. pipeline_step reads the sources that are up;
 * the output is flushed while the first source is up.
 */
void pipeline_source_up(struct pipeline *p, const struct ingest_source *src);
int pipeline_source_is_up(const struct pipeline *p, const struct ingest_source *src);

/*
 * Scans analyses_dir: loads each new or changed NAME.lua into the Lua worker
 * (a version that fails to load is reported and the previous one, if any,
 * keeps running; it is tried again when the file changes again) and unloads
 * the analyses whose file is gone. Call at start and then periodically (hot
 * reload). Returns 1 when the loaded set changed (see pipeline_resubscribe),
 * else 0; a missing or unreadable folder is reported once and loads nothing.
 */
int pipeline_scan_analyses(struct pipeline *p);

/* After a change: queues SUBSCRIBEs for new filters and UNSUBSCRIBEs for the
 * ones no analysis declares any more (sent with the next flush). */
void pipeline_resubscribe(struct pipeline *p, struct mqlink *link);

/*
 * Sends the commands `sealpipe device cmd` queued (the commands table):
 * seals each once with the key the device uses and a nonce seed committed
 * before it leaves, publishes it at QoS 1 through the output and marks it
 * sent. A command for a device that is gone or has no key is marked failed
 * with the reason. Call between batches, while connected. Returns the number
 * sent, or SP_ERR_DB / SP_ERR_MQTT.
 */
int pipeline_commands(struct pipeline *p);

/*
 * The trigger queue (core/triggers.h) as a source: the caller adds it with
 * pipeline_add_source, like the others.
 */
const struct ingest_source *pipeline_trigger_source(struct pipeline *p);

/*
 * Queues the runs no device message starts that are due (core/triggers.h):
 * the ticks of schedules, the device events recorded, and, when caught_up
 * (nothing devices sent waits to be read: the journal's backlog is empty),
 * the devices gone silent. Call between batches, every half second. Returns
 * 0 or an error (tried again at the next call).
 */
int pipeline_triggers(struct pipeline *p, int caught_up);

/*
 * The devices' counts and replay counters of the batches committed since the
 * last fold, added to device_status and device_counters when due
 * (storage/devstate.h), or now when all is set (at stop). Call between
 * batches, every half second. Returns 0 or SP_ERR_DB (tried again at the
 * next call; at stop, by the next start).
 */
int pipeline_fold(struct pipeline *p, int all);

/*
 * Subscribes link to the fixed topics and every analysis filter. Call after
 * each (re)connect, between batches. Returns 0, SP_ERR_MQTT or SP_ERR_NOMEM.
 */
/* The position source name committed last (ingest.h, position): 0 or SP_ERR_DB. */
int pipeline_source_position(struct pipeline *p, const char *name, int64_t *pos)
    __attribute__((warn_unused_result));

int pipeline_subscribe(struct pipeline *p, struct mqlink *link, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * One batch: waits up to timeout_ms for messages from the sources that are
 * up, processes and commits them, then acknowledges them and sends the
 * answers and publishes. Returns the number of messages handled, or an
 * error: SP_ERR_DB (the commit failed: nothing was acknowledged and every
 * source was dropped for redelivery), or the error a source was lost with
 * (mqlink: SP_ERR_MQTT). Nothing uncommitted is ever acknowledged. A lost
 * source stays down until pipeline_source_up; the others go on.
 */
int pipeline_step(struct pipeline *p, int timeout_ms);

/*
 * The Live Inspector and the device status the pipeline reports to (either
 * may be NULL): events after each commit (observe.h), pending connection
 * changes in each batch's transaction and between batches.
 */
struct inspect;
struct devstatus;
void pipeline_observe(struct pipeline *p, struct inspect *in, struct devstatus *ds);

/*
 * Where the analyses' webhook() calls are queued, in the batch transaction
 * of a stored call (transport/webhooks.h); borrowed. NULL (the default):
 * they are dropped, with a WARN line.
 */
struct webhooks;
void pipeline_webhooks(struct pipeline *p, struct webhooks *wh);

#endif
