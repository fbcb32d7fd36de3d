/*
 * ingest.h - where a message comes from and how it is acknowledged and
 * answered after the commit: the interface between the batch loop
 * (pipeline.c) and the transports that feed it.
 *
 * A source (MQTT, mqlink.c; the listeners' queue, netq.c) hands the
 * pipeline messages; the pipeline stores each of them, or its dead letter,
 * in one bucket transaction and only then calls the source back to
 * acknowledge the batch and to deliver the
 * answers (TagoTiP ACKs, sealed answers) to the devices that sent them.
 * Publishes of analyses leave through an output (the MQTT link), not through
 * the source of the message that ran them. The batch loop sees no socket,
 * packet id or request, only a message's source and an opaque handle; but
 * subscriptions are still MQTT's (pipeline_subscribe and analyses_subscribe
 * take the MQTT link, TIPSERVER_FILTERS are MQTT filters) and routing is on
 * MQTT topics (see topic below).
 *
 * Several sources per pipeline: pipeline_attach takes the first (MQTT,
 * mqlink.c) with the output, pipeline_add_source the others (the TagoTiP
 * HTTP, UDP and TCP listeners behind one queue, transport/netq.c; the device
 * journal, jreader.c; the retries of dead letters, dlretry.c). One
 * batch takes what every live source has (pipeline.c, read_batch), waiting
 * on their wait_fd() when none had anything; each message is answered
 * through its own source, and every source is acknowledged after the
 * commit. A source that fails is down until the caller reconnects it
 * (pipeline_source_up); the others go on.
 *
 * The source's lifecycle is not in this interface: connecting and
 * reconnecting, subscribing after each connect, clearing the delivery window
 * when the broker starts a new session (bucket_forget), starting and
 * stopping the listeners, and the work between batches (pipeline_commands,
 * the analyses rescan with pipeline_scan_analyses and pipeline_resubscribe)
 * are done by the caller, runtime/cli/run.c.
 *
 * One batch, as the pipeline drives it (pipeline_step):
 *   0          if the deferred table holds messages, they are the batch and
 *              read() is not called (their src is NULL, see below).
 *   1 read()   copies messages into the batch arena. Nothing is acknowledged
 *              to their senders yet.
 *   2          the pipeline prepares, runs and writes them in one transaction.
 *   3          COMMIT.
 *   4 answer() per TagoTiP message, on the message's own source, in the order
 *              the messages were read; the output's publish() for analysis
 *              publishes and for the answers to deferred messages,
 *              interleaved in the same order.
 *   5 ack()    on the source, then the output's flush() (when both are the
 *              same link, the flush finds nothing left to write).
 * If the commit fails, drop() is called instead of 4 and 5: nothing read
 * since the last ack() may be acknowledged, and the source disconnects so
 * that the senders deliver again. If read() returned an error with messages
 * in hand, 2 to 4 run for them but pipeline_step returns the error before 5:
 * the answers queued in 4 may be lost with the connection, and the messages,
 * unacknowledged, are delivered again and recognised as duplicates (their
 * answers are not sent again).
 *
 * After a crash anywhere before ack(), every message of the batch is still
 * unacknowledged and its sender redelivers it (MQTT: the persistent session).
 * A message committed before a crash that lost its acknowledgement is
 * recognised by the delivery window (its id and digest, bucket.h) and not
 * stored twice. A sender that does not redeliver (UDP) gets no more than
 * "stored at most once".
 *
 * The delivery window knows no source: it is keyed by (id, digest of topic
 * and payload) alone, and run.c clears all of it (bucket_forget) when the
 * MQTT session is new. So ids must be unique across the sources of one
 * pipeline, and a source whose sender cannot redeliver uses id 0. The
 * network sources' requests use id 0 instead: the tipserver, which reads
 * them, says how long a retry of one is recognised (outcome.h, retry_ms),
 * and within that time it is recognised by its digest alone (storage/retries.h, a table of
 * its own that a new MQTT session does not clear) and answered again
 * (answers_duplicates).
 *
 * Authorization is the source's for the MQTT binding, the tipserver's for
 * the others: an HTTP message's auth, a whole frame's AUTH field and an
 * envelope's key are checked against the device (tipserver.c) before
 * anything is stored for it, so those sources deliver whatever they receive.
 * For INGEST_MQTT, the TagoTiP routes (tipserver.c, route_tip
 * and route_tips) trust the serial in the topic; for MQTT the broker plugin's
 * ACL (broker/plugin/acl.c, tip_reaches) guarantees it. A source delivers a
 * message on $tip/<serial>/... or $tips/<serial>/... only for a sender it
 * authenticated as <serial> (and then sets publisher to <serial>) or as a
 * party allowed to speak for <serial> (MQTT: a profile context of the
 * serial's profile, TagoTiPs' MQTT binding; the plugin stamps no publisher
 * for it). Otherwise a NULL publisher is only for input the source trusts
 * (MQTT: the daemon's own broker user, or a broker without the plugin, which
 * the operator vouches for): topic_route then stores the message for the
 * device the topic's {serial} level names.
 *
 * Every callback is called from the pipeline's thread, between or inside
 * pipeline_step; none of them may call back into the pipeline.
 */
#ifndef SP_INGEST_H
#define SP_INGEST_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/arena.h"

struct ingest_source;

/*
 * The TagoTiP binding a message came in (TagoTipServers.md), which says
 * where its method, device and credentials are and how it is answered.
 */
enum ingest_binding {
    /* MQTT: $tip/{serial}/push|pull, $tips/{serial}/push|pull; the source
     * authenticated the sender (see "Authorization" above). Answers are
     * publishes on .../ack. Every topic that is not TagoTiP's, too. */
    INGEST_MQTT,
    /* HTTP §2: topic $tip/{serial}/push|pull|ping, payload the body (a PULL's
     * names as "a,b"), auth the Authorization hash for the tipserver to
     * check. Answered "STATUS[|DETAIL]" (SP_ACK_MQTT's form). */
    INGEST_HTTP,
    /* Raw §4: topic "$tip", payload a whole frame METHOD|[!N|]AUTH|SERIAL...
     * with its own credentials. Answered "ACK|..." (SP_ACK_FRAME). */
    INGEST_FRAME,
    /* Raw §4.2 and HTTP §2.9: topic "$tips", payload a whole TagoTiP/S
     * envelope; its header names the device. Answered with a sealed ACK, or
     * an "ACK|ERR|..." frame when it cannot be opened. */
    INGEST_ENVELOPE
};

/* One message as a source read it; its strings and payload are in the batch arena. */
struct ingest_msg {
    /* Set by the pipeline. NULL: a message of the deferred table (bucket.h),
     * acknowledged when it was deferred; its answer leaves through the output. */
    const struct ingest_source *src;
    void *handle; /* the source's own, for answer(); NULL: none */
    /* What a redelivery of this message repeats (MQTT: its packet id): with
     * the digest of topic and payload it keys the delivery window. Unique
     * across the sources of one pipeline (the window knows no source); 0:
     * never redelivered, never in the window. */
    int id;
    int binding; /* enum ingest_binding */
    /* The MQTT topic the message would have had, whatever the transport:
     * routing is on it ($tip/ and $tips/ prefixes, the analyses' MQTT filters)
     * and it is part of the delivery window's digest. */
    const char *topic;
    const uint8_t *payload; /* NUL-terminated copy for convenience */
    size_t len;             /* at most SP_LIMIT_PAYLOAD: a larger payload is cut */
    size_t full_len;        /* its size as received; > len when cut */
    int qos;
    int retain;
    /* The device the source authenticated the sender as; NULL: not one
     * device (trusted input only, see "Authorization" above). */
    const char *publisher;
    /* INGEST_HTTP: the TagoTiP authorization hash the sender presented, as
     * sent (unchecked); the tipserver checks it against the topic's device. */
    const char *auth;
    /* Not MQTT: the source delivers the commands pending for the device with
     * the answer (answer() is called once more for each, after the answer). */
    int commands;
    int hops; /* analyses that led to it (a publish loop is cut at SP_LIMIT_HOPS) */
    /* When the message was received (wall-clock ms), if long before the
     * batch that runs it (the device journal's backlog): records without a
     * time of their own take it. 0: now. */
    int64_t received_ms;
    /* How it came: "http", "udp" or "tcp" (the listeners' queue); NULL: MQTT. */
    const char *via;
    /* A run of an analysis that no device message started (a schedule's
     * tick, a run_analysis() call): its topic is
     * INGEST_TRIGGER_PREFIX<kind>/<analysis>[/<serial>] and its payload the
     * JSON its handler gets (core/triggers.h). Set only by the sources that
     * read such runs from sealpipe.db (the trigger queue, the deferred
     * table, dead-letter retries); no device can send that topic (MQTT
     * forbids '#' in a topic name, and the other bindings make $tip topics). */
    int trigger;
};

#define INGEST_TRIGGER_PREFIX "$trigger#"
/* 1 when topic is a trigger run's (see ingest_msg.trigger). */
#define INGEST_IS_TRIGGER_TOPIC(topic) (strncmp((topic), INGEST_TRIGGER_PREFIX, 9) == 0)

/*
 * How long a retry of a non-MQTT request is recognised (outcome.h, retry_ms): an
 * envelope's, whose counter makes it one of a kind, for 10 minutes; a frame
 * with "!N" or timestamped readings (tipserver.c) for 2 minutes,
 * long enough for a device's retries and short enough that a device that
 * restarts its "!N" at 1 and sends the same reading again is new data.
 */
#define INGEST_RETRY_MS          (2 * 60 * 1000)
#define INGEST_ENVELOPE_RETRY_MS (10 * 60 * 1000)

/* Who a publish speaks for (the MQTT link sends it as v5 user properties). */
struct ingest_origin {
    /* The profile it speaks for: the broker plugin delivers it only to devices
     * of that profile (unless device_cross_profile is on); without one a
     * message outside the TagoTiP topics reaches no device. NULL: none. */
    const char *profile;
    int hops; /* analyses that led to it, > 0; 0: none */
};

/*
 * A source of messages. Errors are negative SP_ERR_* codes. Any error from
 * read() or ack() means the source is lost (MQTT returns SP_ERR_MQTT, but the
 * code does not matter): pipeline_step returns it, the caller
 * (runtime/cli/run.c, loop_turn) marks the source disconnected and
 * reconnects it, and everything unacknowledged is delivered again.
 */
struct ingest_source {
    const char *name; /* for logs: "mqtt" */
    void *ctx;        /* the source's own state, first argument of each call */
    /*
     * Waits up to timeout_ms for messages, then copies up to max of them into
     * out and arena a, and sets *n. Acknowledges nothing. Stops taking
     * messages once a holds SP_LIMIT_BATCH_INPUT bytes, so that processing
     * them still fits under the arena's cap (mqlink: ARENA_READ_LIMIT).
     * Messages that arrive beyond max (or that limit) stay unacknowledged
     * with the source, which hands them out first at the next read(); it
     * holds a bounded number (mqlink: HOLD_MAX) and past it gives up the
     * connection and returns an error (the sender redelivers). While it holds
     * any, it acknowledges nothing, not even committed messages (mqlink: the
     * PUBACKs wait in libmosquitto's queue), so a held message cannot be
     * acknowledged before it is committed. On an error, the *n
     * messages in out were read before it and are processed all the same
     * (see "If read() returned an error" above). read() may be called
     * several times for one batch (a small batch lingers for more,
     * pipeline.c): it never hands out a message twice before the next ack(),
     * drop() or requeue().
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
     * answers, and does the source's housekeeping (keepalives). Called at the
     * end of every pipeline_step whose read() did not fail and whose batch,
     * if any, was committed, including one that took its batch from the
     * deferred table without calling read(); empty or not.
     * Returns 0 or an error.
     *
     * Not every message read has been answered by then: messages of a batch
     * that is cut, or whose analysis is still running (core/deferred.c,
     * deferred_cut and deferred_keep), are written to the deferred table in
     * the commit and acknowledged by this ack() unfinished. Those
     * messages are processed in later batches with src == NULL, and their
     * answers leave through the output's publish(), not answer(). So a
     * request/response source must not assume that every message it read was
     * answered before ack(): a deferred one gets no answer() call at all.
     */
    int (*ack)(void *ctx);
    /* The batch could not be committed: disconnects without acknowledging
     * anything read since the last ack(), so that it is delivered again. */
    void (*drop)(void *ctx);
    /*
     * Optional: a descriptor that polls readable when read() may have
     * messages, so that one loop can wait on several sources (the pipeline
     * calls read() with timeout 0 once it is readable, and always once per
     * step). NULL or -1: poll this source by calling read() alone.
     */
    int (*wait_fd)(void *ctx);
    /*
     * Optional: gives message m back, unprocessed, to be read again first
     * (from the next ack(); a drop() fails it with the rest). A batch that
     * defers messages (core/deferred.c, deferred_keep) hands them back this
     * way instead of to the bucket, for a source whose answers cannot leave
     * through the output. NULL: they are deferred.
     */
    void (*requeue)(void *ctx, const struct ingest_msg *m);
    /*
     * Optional, for a source that reads its own durable log (the device
     * journal, transport/jreader.c) and so has no sender to redeliver: where
     * it stands, the log id of the last message read() gave (every message
     * up to it is in the batch or an earlier one), or -1 when nothing was read
     * since the last ack(). The pipeline writes it in the batch transaction
     * under the source's name (storage/positions.h), so that the records and
     * the position commit together; the caller reads it back at start. Such a
     * source gives its messages id 0: the position, not the delivery window,
     * keeps them from being stored twice. NULL: none.
     */
    int64_t (*position)(void *ctx);
    /*
     * Optional, for a source that runs dead letters again (`sealpipe
     * dead-letter retry`, transport/dlretry.c): called in the open batch once
     * message m's outcome is decided, with the device it was for (or NULL)
     * and its dead-letter reason and detail, or reason NULL when it was
     * stored. The source consumes the dead letter there, in the transaction
     * that stores the message, or keeps it with the new reason. Returns 1
     * when it kept the dead letter itself (the pipeline writes none), 0, or
     * SP_ERR_DB (the batch is rolled back).
     *
     * Such a source's messages are one-time tokens: its dead letter row is
     * consumed with them, so the pipeline does not look them up in, nor add
     * them to, the delivery window or the requests' retries; takes a
     * TagoTiP/S counter not greater than the device's last one as no replay
     * (the counter is not moved back; README, "Dead letters"); does not
     * record the key that opened the envelope as the one the device uses
     * now; and answers nothing (the device asked long ago). NULL: none.
     */
    int (*settle)(void *ctx, const struct ingest_msg *m, const char *serial, const char *reason,
                  const char *detail);
    /* Request/response senders retry a request whose answer they did not
     * get: a duplicate is answered again (its outcome is made again, not
     * stored). MQTT's duplicates are not answered. */
    int answers_duplicates;
    /* Never lost: read() and ack() do not fail and drop() fails the
     * requests in hand without disconnecting (netq.c). Without it, an error
     * of read() or ack(), or a drop(), puts the source down until the caller
     * reconnects it (pipeline_source_up). */
    int stays_up;
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
