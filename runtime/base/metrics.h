/*
 * metrics.h - the daemon's counters, gauges and latency histograms, and
 * their Prometheus text form (transport/metricsd.c serves it on /metrics,
 * `sealpipe stats` reads it).
 *
 * Every metric is one row of METRICS_TABLE below: its Prometheus name,
 * type, help line and label names. A metric without labels has one series,
 * created at start, so it is exported (at 0) before anything happened. A
 * labelled one (a dead letter's reason, an envelope's suite, an analysis's
 * name) gets a series per value the first time the value is seen, up to
 * the row's cap; past it, further values count under the value "other", so
 * the table stays bounded whatever names come in.
 *
 * Threads: the pipeline's thread writes almost everything; the HTTP, UDP
 * and TCP listeners' threads count requests; libmicrohttpd's thread reads
 * (metrics_format). Values are C11 atomics updated with relaxed adds, so
 * the data path takes no lock; only the first use of a new label value
 * takes a mutex, to add its series. A reader sees each value whole, not a
 * snapshot of all of them at one instant.
 *
 * The state is process-wide (one daemon per process), like log_level: the
 * one documented global besides it and the stop flag. Counters count since
 * the daemon started; nothing is kept across a restart.
 */
#ifndef SP_METRICS_H
#define SP_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/*
 * XX(id, name, type, labels, help): type COUNTER, GAUGE, HIST_SECONDS
 * (observed in microseconds, exported in seconds) or HIST_COUNT; labels a
 * string of up to two comma-separated names ("" for none).
 */
#define METRICS_TABLE(XX)                                                                          \
    XX(RECEIVED, "sealpipe_messages_received_total", COUNTER, "transport,kind",                    \
       "messages read from a source (transport: mqtt, journal, http, udp, tcp; kind: tip, tips, "  \
       "other); a redelivery counts again")                                                        \
    XX(COMMITTED, "sealpipe_messages_committed_total", COUNTER, "",                                \
       "messages whose outcome (records or dead letter) was committed")                            \
    XX(STORED, "sealpipe_messages_stored_total", COUNTER, "",                                      \
       "messages whose records were committed")                                                    \
    XX(RECORDS, "sealpipe_records_stored_total", COUNTER, "", "records committed")                 \
    XX(DUPLICATES, "sealpipe_duplicates_total", COUNTER, "",                                       \
       "redeliveries and retries recognised and not stored again")                                 \
    XX(IGNORED, "sealpipe_messages_ignored_total", COUNTER, "",                                    \
       "empty retained publishes (no record)")                                                     \
    XX(REFUSED, "sealpipe_requests_refused_total", COUNTER, "",                                    \
       "HTTP, UDP and TCP requests refused before their sender proved who it is")                  \
    XX(DEAD, "sealpipe_dead_letters_total", COUNTER, "reason", "dead letters committed")           \
    XX(ENVELOPES, "sealpipe_envelopes_total", COUNTER, "suite,result",                             \
       "TagoTiP/S envelopes a device key opened or failed to open")                                \
    XX(ANALYSIS, "sealpipe_analysis_duration_seconds", HIST_SECONDS, "analysis",                   \
       "time an analysis took per message in the Lua worker")                                      \
    XX(WORKER_RESTARTS, "sealpipe_worker_restarts_total", COUNTER, "",                             \
       "Lua worker processes started after the first")                                             \
    XX(COMMIT_SECONDS, "sealpipe_commit_duration_seconds", HIST_SECONDS, "",                       \
       "time of a batch's write transaction, BEGIN to COMMIT")                                     \
    XX(COMMIT_BATCH, "sealpipe_commit_batch_messages", HIST_COUNT, "",                             \
       "messages written by one committed batch")                                                  \
    XX(ANSWERS, "sealpipe_answers_total", COUNTER, "via",                                          \
       "answers to devices handed over for publishing (via: plugin, the embedded "                 \
       "broker's plugin; mqtt, the daemon's MQTT link)")                                           \
    XX(ANSWERS_LOST, "sealpipe_answers_lost_total", COUNTER, "",                                   \
       "answers handed to the broker plugin that a broken connection to it lost")                  \
    XX(STAGE_CPU, "sealpipe_stage_cpu_microseconds_total", COUNTER, "stage",                       \
       "CPU time the pipeline's thread spent in each stage of its batches (read, prepare, "        \
       "analyses, write, commit, send)")                                                           \
    XX(PUBLISH_TO_COMMIT, "sealpipe_publish_to_commit_seconds", HIST_SECONDS, "",                  \
       "from a message's receipt (journal: when the broker wrote it; else when the daemon read "   \
       "it) to its commit")                                                                        \
    XX(MQTT_RECONNECTS, "sealpipe_broker_reconnects_total", COUNTER, "",                           \
       "times the daemon's MQTT link connected again after losing the broker")                     \
    XX(MQTT_QOS0_DROPPED, "sealpipe_mqtt_qos0_dropped_total", COUNTER, "",                         \
       "QoS 0 messages the daemon read from the broker and dropped: 32 MiB were held already")     \
    XX(BROKER_RESTARTS, "sealpipe_broker_restarts_total", COUNTER, "",                             \
       "times the embedded broker was restarted after it exited")                                  \
    XX(BROKER_CONNECTED, "sealpipe_broker_connected", GAUGE, "",                                   \
       "1 while the daemon's MQTT link to its broker is up, else 0")                               \
    XX(DEVICES_CONNECTED, "sealpipe_devices_connected", GAUGE, "",                                 \
       "devices connected to the embedded broker now")                                             \
    XX(NETQ_DEPTH, "sealpipe_requests_waiting", GAUGE, "",                                         \
       "HTTP, UDP and TCP requests waiting for the pipeline")                                      \
    XX(JOURNAL_BACKLOG, "sealpipe_journal_backlog_bytes", GAUGE, "",                               \
       "bytes of the device journal not yet committed by the daemon")                              \
    XX(TRIGGER_RUNS, "sealpipe_trigger_runs_total", COUNTER, "kind,result",                        \
       "analysis runs no device message started (tick, run), committed ok or failed")              \
    XX(TICKS_MISSED, "sealpipe_ticks_missed_total", COUNTER, "",                                   \
       "due times of schedules folded into a later tick (the daemon was down or busy)")            \
    XX(TRIGGERS_WAITING, "sealpipe_triggers_waiting", GAUGE, "",                                   \
       "analysis runs queued (schedules, run_analysis) and not yet taken")                         \
    XX(WEBHOOKS, "sealpipe_webhooks_total", COUNTER, "result",                                     \
       "webhook() requests answered or given up: ok (2xx, the row deleted), retry (another "       \
       "attempt later), failed (a webhook_failed dead letter)")                                    \
    XX(WEBHOOKS_WAITING, "sealpipe_webhooks_waiting", GAUGE, "",                                   \
       "webhook() requests in the outbox, waiting or in flight")                                   \
    XX(WEBHOOK_SECONDS, "sealpipe_webhook_duration_seconds", HIST_SECONDS, "",                     \
       "time of one webhook request, from its start to its answer or failure")                     \
    XX(START_TIME, "sealpipe_start_time_seconds", GAUGE, "",                                       \
       "when the daemon started, Unix time: the counters count from then")                         \
    XX(RECORDS_DELETED, "sealpipe_records_deleted_total", COUNTER, "by",                           \
       "data rows deleted, committed (by: analysis, delete_data() calls)")

enum metric {
#define METRICS__ID(id, name, type, labels, help) METRIC_##id,
    METRICS_TABLE(METRICS__ID)
#undef METRICS__ID
        METRIC_COUNT
};

#define METRICS_LABEL_MAX  64   /* bytes of a label value, with its NUL; longer ones are cut */
#define METRICS_VALUES     32   /* values a label may take (past it: "other") ... */
#define METRICS_ANALYSES   256  /* ... but this many analyses */
#define METRICS_SERIES     1024 /* series in all (a power of two), a hash table */
#define METRICS_FORMAT_MAX (4u << 20) /* bytes of the text form at most */

/* Adds n to counter m, of no labels. Any thread. */
void metrics_add(enum metric m, uint64_t n);
static inline void metrics_inc(enum metric m)
{
    metrics_add(m, 1);
}
/* Sets gauge m, of no labels. Any thread. */
void metrics_gauge_set(enum metric m, int64_t v);
/* One observation of histogram m, of no labels: microseconds for the
 * _seconds ones, a count for the others. Any thread. */
void metrics_observe(enum metric m, uint64_t v);

/*
 * The same for a labelled metric: l1 and l2 are its label values in the
 * table's order (l2 NULL when it has one label). Any thread; the first use
 * of a value takes a lock.
 */
void metrics_add_labels(enum metric m, const char *l1, const char *l2, uint64_t n);
void metrics_observe_labels(enum metric m, const char *l1, const char *l2, uint64_t v);

/* A message read from transport ("mqtt", "journal", "http", "udp", "tcp")
 * on topic: counted by the kind of its topic ($tip, $tips, other). */
void metrics_received(const char *transport, const char *topic);

/*
 * The value of counter or gauge m (labels l1, l2; NULL for none), or the
 * count of histogram m; 0 for a series not seen yet.
 */
uint64_t metrics_get(enum metric m, const char *l1, const char *l2);

/*
 * Appends every metric in the Prometheus text format 0.0.4 to b (HELP and
 * TYPE lines, histograms with cumulative buckets, _sum and _count). Any
 * thread. Returns 0, or SP_ERR_NOMEM / SP_ERR_TOOLARGE from b.
 */
int metrics_format(struct buf *b) __attribute__((warn_unused_result));

#endif
