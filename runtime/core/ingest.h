/*
 * ingest.h - where a message comes from and how it is acknowledged and
 * answered after the commit: the interface between the batch loop
 * (pipeline.c) and the transports that feed it.
 *
 * A source (MQTT today, mqlink.c; HTTP, UDP and TCP later) hands the pipeline
 * messages; the pipeline stores each of them, or its dead letter, in one
 * bucket transaction and only then calls the source back to acknowledge the
 * batch and to deliver the answers (TagoTiP ACKs, sealed answers) to the
 * devices that sent them. Publishes of analyses leave through an output (the
 * MQTT link), not through the source of the message that ran them. The
 * pipeline knows no transport: it never sees a socket, a packet id or a
 * request; it holds a message's source and an opaque handle.
 *
 * One batch, as the pipeline drives it (pipeline_step):
 *   1 read()   copies messages into the batch arena. Nothing is acknowledged
 *              to their senders yet.
 *   2          the pipeline prepares, runs and writes them in one transaction.
 *   3          COMMIT.
 *   4 answer() per TagoTiP message, on the message's own source, in the order
 *              the messages were read; the output's publish() for analysis
 *              publishes, interleaved in the same order.
 *   5 ack()    on the source, then the output's flush() (when both are the
 *              same link, the flush finds nothing left to write).
 * If the commit fails, drop() is called instead of 4 and 5: nothing read
 * since the last ack() may be acknowledged, and the source disconnects so
 * that the senders deliver again.
 *
 * After a crash anywhere before ack(), every message of the batch is still
 * unacknowledged and its sender redelivers it (MQTT: the persistent session).
 * A message committed before a crash that lost its acknowledgement is
 * recognised by the delivery window (its id and digest, bucket.h) and not
 * stored twice. A sender that does not redeliver (UDP) gets no more than
 * "stored at most once".
 *
 * Every callback is called from the pipeline's thread, between or inside
 * pipeline_step; none of them may call back into the pipeline.
 */
#ifndef SP_INGEST_H
#define SP_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"

struct ingest_source;

/* One message as a source read it; its strings and payload are in the batch arena. */
struct ingest_msg {
    /* Set by the pipeline. NULL: a message of the deferred table (bucket.h),
     * acknowledged when it was deferred; its answer leaves through the output. */
    const struct ingest_source *src;
    void *handle; /* the source's own, for answer(); NULL: none */
    /* What a redelivery of this message repeats (MQTT: its packet id): with
     * the digest of topic and payload it keys the delivery window. 0: never
     * redelivered, never deduplicated. */
    int id;
    const char *topic;      /* MQTT topic, or the equivalent path of the transport */
    const uint8_t *payload; /* NUL-terminated copy for convenience */
    size_t len;             /* at most SP_LIMIT_PAYLOAD: a larger payload is cut */
    size_t full_len;        /* its size as received; > len when cut */
    int qos;
    int retain;
    const char *publisher; /* the authenticated device that sent it, NULL: unknown */
    int hops;              /* analyses that led to it (a publish loop is cut at SP_LIMIT_HOPS) */
};

/* Who a publish speaks for (the MQTT link sends it as v5 user properties). */
struct ingest_origin {
    /* The profile it speaks for: the broker plugin delivers it only to devices
     * of that profile (unless device_cross_profile is on); without one a
     * message outside the TagoTiP topics reaches no device. NULL: none. */
    const char *profile;
    int hops; /* analyses that led to it, > 0; 0: none */
};

/*
 * A source of messages. Errors are negative SP_ERR_* codes; an error from
 * read() or ack() means the source is lost (MQTT: SP_ERR_MQTT): the caller
 * reconnects it, and everything unacknowledged is delivered again.
 */
struct ingest_source {
    const char *name; /* for logs: "mqtt" */
    void *ctx;        /* the source's own state, first argument of each call */
    /*
     * Waits up to timeout_ms for messages, then copies up to max of them into
     * out and arena a, and sets *n. Acknowledges nothing. On an error, the
     * *n messages in out were read before it and are processed all the same.
     */
    int (*read)(void *ctx, int timeout_ms, struct arena *a, struct ingest_msg *out, size_t max,
                size_t *n);
    /*
     * Queues the answer to message m (called only after m is committed):
     * payload goes to the device that sent m, on topic where the transport
     * has topics ($tip/{serial}/ack), as the reply to m's request where it
     * has requests. Sent by the next ack() at the latest. Returns 0 or an
     * error (the answer is lost; m stays committed and acknowledged).
     */
    int (*answer)(void *ctx, const struct ingest_msg *m, const char *topic, const uint8_t *payload,
                  size_t len);
    /*
     * Everything read so far is committed: acknowledges it, sends the queued
     * answers, and does the source's housekeeping (keepalives). Called after
     * every read(), empty or not. Returns 0 or an error.
     */
    int (*ack)(void *ctx);
    /* The batch could not be committed: disconnects without acknowledging
     * anything read since the last ack(), so that it is delivered again. */
    void (*drop)(void *ctx);
};

/* Where analysis publishes and the commands of `sealpipe device cmd` go. */
struct ingest_output {
    void *ctx;
    /* Queues a publish, sent by the next flush(). Returns 0 or an error. */
    int (*publish)(void *ctx, const char *topic, const void *payload, size_t len, int qos,
                   int retain, const struct ingest_origin *from);
    /* Sends what is queued. Returns 0 or an error (the output is lost). */
    int (*flush)(void *ctx);
};

#endif
