/*
 * outcome.h - how one message of a batch ends, as the pipeline, the TagoTiP
 * server (tipserver.c) and the routes fill it in before it is written.
 *
 * Every message ends in exactly one of three ways, each inside the batch
 * transaction: its records are stored, it is stored as a dead letter with a
 * reason, or it is recognised as a redelivery of a message already committed
 * and skipped. A message's own failure is never a batch failure; only a
 * database error is, and then nothing of the batch is acknowledged.
 *
 * Dead-letter reasons (the `reason` column, and the stats line):
 *   too_large        payload over SP_LIMIT_PAYLOAD, TagoTiP body over 16,384 bytes
 *   no_route         topic matches no analysis (a subscription left over from
 *                    an analysis that was just removed)
 *   unknown_device   no such device (serial or envelope hashes)
 *   bad_envelope     TagoTiP/S header rejected (version, cipher, method, size)
 *   auth_failed      no key opens the envelope, or the inner serial differs
 *   replay           TagoTiP/S counter not greater than the last accepted one
 *   plaintext_refused a device that requires encryption sent plaintext
 *   invalid_body     TagoTiP body or TagoIO JSON breaks a rule
 *   analysis_error   an analysis raised an error or returned invalid records
 *   timeout          an analysis hit its wall-clock or instruction limit
 *   unsupported      a $tip/$tips topic other than push and pull
 *   loop             published by analyses SP_LIMIT_HOPS times in a row
 *   memory           an analysis's Lua state hit its memory limit
 *   limit            an analysis hit a per-message limit (records, publishes,
 *                    publish size, insert or query calls)
 *   worker_crash     the worker died running the message, twice (once alone)
 *   webhook_failed   not a message: a webhook() request that could not be
 *                    delivered (a final HTTP status, its attempts spent, or
 *                    the outbox full); topic $webhook#<analysis>, payload the
 *                    request as JSON (transport/webhooks.h)
 *
 * Single-threaded, like the pipeline.
 */
#ifndef SP_OUTCOME_H
#define SP_OUTCOME_H

#include <stdint.h>

#include "storage/bucket.h"
#include "storage/devcache.h"
#include "ingest.h"
#include "base/record.h"
#include "sandbox/pool.h"

#define OUTCOME_REASONS(XX)                                                                        \
    XX(too_large)                                                                                  \
    XX(no_route)                                                                                   \
    XX(unknown_device)                                                                             \
    XX(bad_envelope)                                                                               \
    XX(auth_failed)                                                                                \
    XX(replay)                                                                                     \
    XX(plaintext_refused)                                                                          \
    XX(invalid_body)                                                                               \
    XX(analysis_error)                                                                             \
    XX(timeout)                                                                                    \
    XX(unsupported)                                                                                \
    XX(loop)                                                                                       \
    XX(memory)                                                                                     \
    XX(limit)                                                                                      \
    XX(worker_crash)                                                                               \
    XX(webhook_failed)

enum reason {
    R_NONE,
#define XX(r) R_##r,
    OUTCOME_REASONS(XX)
#undef XX
        R_COUNT
};

/* The `reason` column's word for r ("" for R_NONE). */
const char *outcome_reason_name(enum reason r);

/* Logs the totals of committed messages (messages, records, duplicates, dead
 * letters per reason), from the metrics the pipeline counts them in. */
void outcome_log_totals(void);

/*
 * How a TagoTiP message is answered: plain on $tip/{serial}/ack
 * (TagoTipServers.md §3.5; the HTTP binding's answers have the same form),
 * sealed with the device's key on $tips/{serial}/ack, or, when the envelope
 * could not be opened, the plaintext fallback "ACK|ERR|code" there
 * (TagoTiPs.md §9); a raw frame's as an ACK frame "ACK|..." (TagoTiP.md §4.2).
 */
enum answer_kind { ANSWER_NONE, ANSWER_PLAIN, ANSWER_SEALED, ANSWER_FALLBACK, ANSWER_FRAME };

/* The outcome of one message, before it is written. */
struct outcome {
    enum reason reason;
    const char *serial;
    struct record_vec records;
    /* TagoTiP: the answer, sent once the message is committed. */
    int answer;                   /* enum answer_kind */
    const char *answer_serial;    /* serial level of the ack topic */
    int method;                   /* SP_METHOD_PUSH, PULL or PING */
    struct sp_tip_pull *pull;     /* PULL: the names asked for */
    const struct device_key *key; /* ANSWER_SEALED: the key that opened the envelope */
    const char *fallback;         /* the wire code of the failure, when the codec named it */
    int has_counter;              /* $tip: "!N|" to echo */
    uint32_t counter;
    /* A registry error that is not the message's fault: the batch is rolled
     * back and nothing acknowledged, so the message is redelivered. */
    int db_error;
    /* Its analysis's results did not fit in the batch memory: the batch is
     * cut before it and it runs again first in the next one. */
    int deferred;
    /* Filled in phase 1 (prepare), for phase 2 (run_jobs) and 3 (finish). */
    uint8_t digest[BUCKET_DIGEST_LEN];
    int duplicate; /* already committed: skip */
    /* Not MQTT: how long a retry of the message (the same bytes, from a
     * device that missed its answer) is recognised, in ms, as the route
     * found it (ingest.h, INGEST_RETRY_MS); 0: never (it may be new data
     * sent twice on purpose). */
    int64_t retry_ms;
    /* Its sender proved it speaks for o->serial: the broker (MQTT), the
     * auth hash of an HTTP request or a frame, or a key that opened the
     * envelope. A non-MQTT message refused before that is no device's: it
     * is answered and counted, never stored (pipeline.c, refuse). */
    int authenticated;
    int ignored;          /* not a record (a retained message cleared): skip */
    int job;              /* analysis to run, -1: none */
    struct host_msg hm;   /* what it sees */
    int check_counter;    /* advance the device's TagoTiP/S counter */
    uint32_t env_counter; /* to this */
    int counter_new;      /* it is new: advanced when the message is written */
    /* o->serial's device when outcome_device found it (in the device cache:
     * valid until the next batch), else NULL; and its created_ms, else 0. */
    const struct device_info *dev;
    int64_t created;
    struct host_publish *pubs; /* the analysis's publishes, sent if stored */
    size_t npubs;
    struct host_insert *inserts; /* its insert() calls, stored with it */
    size_t ninserts;
    struct host_run_call *runs; /* its run_analysis() calls, queued with it (triggers.h) */
    size_t nruns;
    struct host_webhook *webhooks; /* its webhook() calls, queued with it (webhooks.h) */
    size_t nwebhooks;
    /* For the inspector (observe.c): the analysis that ran and what it logged. */
    const char *analysis;
    const char *const *logs;
    size_t nlogs;
    /* A TagoTiP/S envelope was examined (its header parsed): its suite and,
     * once a key opened it, the inner frame. */
    int envelope;
    int suite;
    const uint8_t *plain;
    size_t plain_len;
    struct host_delete *deletes; /* its delete_data() calls, run with its records */
    size_t ndeletes;
    char detail[512]; /* last: outcome_reset() clears only what comes before */
};

/* Makes o a fresh outcome: no reason, no job. */
void outcome_reset(struct outcome *o);

/* Makes o a dead letter with reason r and a detail line. */
void outcome_fail(struct outcome *o, enum reason r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Device serial of the registry (in the batch's snapshot) into *dev, and
 * o->serial. Returns 0; SP_ERR_NODEVICE with o an unknown_device dead letter;
 * or another error in o->db_error. With plain set, a device that requires
 * TagoTiP/S is refused (plaintext_refused, -1).
 */
int outcome_device(struct outcome *o, struct devcache *devs, const char *serial, int plain,
                   struct device_info *dev);

/*
 * Asks for analysis ai to run on message m of device dev with the default
 * records (in run_jobs, for the whole batch at once); the records it returns
 * replace o->records.
 */
void outcome_run(struct outcome *o, int ai, const struct ingest_msg *m,
                 const struct device_info *dev, int64_t now);

/* The device's payload parser, if it names one that is loaded; else -1
 * (with o an analysis_error dead letter when it names one that is not). */
int outcome_parser(struct outcome *o, struct pool *pl, const struct device_info *dev);

#endif
