/*
 * mqlink.h - the daemon's MQTT connection (the only module that includes
 * <mosquitto.h>).
 *
 * It gives the pipeline control over when acknowledgements leave: libmosquitto
 * queues the PUBACK of a QoS 1 message as it reads it, and in threaded mode
 * (which we set, driving the socket ourselves) nothing is written until
 * mqlink_flush(). So the pipeline reads a batch, commits it, then flushes: the
 * broker hears PUBACK only for committed messages. Any write flushes queued
 * PUBACKs too, so publishes and keepalives also wait for mqlink_flush().
 *
 * The session is persistent (fixed client id, MQTT v5 clean start off and a
 * session expiry interval), so unacknowledged messages are redelivered after
 * a crash or a reconnect.
 *
 * mqlink is the pipeline's first ingest source and its output (ingest.h):
 * read is mqlink_read, answer and publish are mqlink_publish, ack and flush
 * are mqlink_flush, drop is mqlink_drop.
 */
#ifndef SP_MQLINK_H
#define SP_MQLINK_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "core/ingest.h"

struct mqlink;

struct mqlink_opts {
    const char *host;
    int port;
    const char *username; /* NULL: none */
    const char *password;
    const char *client_id;
    int receive_max; /* QoS 1 messages the broker may send before our PUBACKs */
    int keepalive;   /* seconds */
};

/* Answers to the messages this link reads (its source's answer()) go
 * through answers (transport/answers.h: published by the embedded broker's
 * plugin) instead of being published on the link; NULL: on the link. */
void mqlink_answer_through(struct mqlink *l, const struct ingest_output *answers);

/* Creates the client (does not connect). Returns 0 or SP_ERR_MQTT/NOMEM. */
int mqlink_new(const struct mqlink_opts *o, struct mqlink **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void mqlink_free(struct mqlink *l);

/*
 * Connects and waits up to timeout_ms for CONNACK. Returns 0, or SP_ERR_MQTT
 * with the reason (refused, unreachable) in err. *session_present tells if
 * the broker resumed our session (then subscriptions still exist).
 */
int mqlink_connect(struct mqlink *l, int timeout_ms, int *session_present, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * Subscribes to n filters at QoS 1: writes the SUBSCRIBEs (and whatever else
 * is queued, so call it only between batches) and waits up to 5 s for the
 * SUBACKs without writing. If QoS 1/2 messages arrived with the CONNACK it
 * cannot write yet: the SUBSCRIBEs then leave with the next mqlink_flush. A
 * message arriving during the wait ends it. Either way a refusal makes a
 * later mqlink_read fail. Returns 0 or SP_ERR_MQTT.
 */
int mqlink_subscribe(struct mqlink *l, const char *const *filters, size_t n, char *err,
                     size_t errlen) __attribute__((warn_unused_result));
/* Queue one SUBSCRIBE (QoS 1) or UNSUBSCRIBE, sent by the next mqlink_flush;
 * a refused subscription makes a later mqlink_read fail. */
int mqlink_subscribe_one(struct mqlink *l, const char *filter) __attribute__((warn_unused_result));
int mqlink_unsubscribe(struct mqlink *l, const char *filter) __attribute__((warn_unused_result));

/*
 * Waits up to timeout_ms for data, then reads every message the socket holds
 * now, up to max, copying each into arena a, and sets *n. Writes nothing.
 * Messages a read brought beyond the batch are held and come first next
 * time; while any is held it does not read the socket (the broker queues).
 * A QoS 0 message that finds 32 MiB held is dropped and counted in
 * sealpipe_mqtt_qos0_dropped_total.
 * Returns 0, or SP_ERR_MQTT when the connection is lost (the *n messages
 * read so far are in out and still must be processed). Each
 * message's id is its packet id (0 for QoS 0), its publisher the v5 user
 * property "sealpipe-device", its hops "sealpipe-hops"; handle is NULL.
 */
int mqlink_read(struct mqlink *l, int timeout_ms, struct arena *a, struct ingest_msg *out,
                size_t max, size_t *n) __attribute__((warn_unused_result));

/* The MQTT v5 user properties sealpipe reads and sets: the publisher as the
 * broker plugin stamps it, and what a daemon publish carries. */
#define MQLINK_DEVICE_PROP  "sealpipe-device"
#define MQLINK_PROFILE_PROP "sealpipe-profile"
#define MQLINK_HOPS_PROP    "sealpipe-hops"

/* Queues a publish (sent by the next mqlink_flush), with the properties of
 * from (NULL: none) as MQLINK_PROFILE_PROP and MQLINK_HOPS_PROP. Returns 0,
 * SP_ERR_NOMEM or SP_ERR_MQTT. */
int mqlink_publish(struct mqlink *l, const char *topic, const void *payload, size_t len, int qos,
                   int retain, const struct ingest_origin *from)
    __attribute__((warn_unused_result));

/*
 * Writes everything queued: PUBACKs, publishes, keepalive pings (which it
 * schedules). Call only after the batch that was read is committed. Writes
 * nothing while QoS 1/2 messages read beyond the batch are held for the next
 * mqlink_read (their PUBACKs are queued already). Returns 0 or SP_ERR_MQTT.
 */
int mqlink_flush(struct mqlink *l) __attribute__((warn_unused_result));

/*
 * Marks the connection lost and queues a DISCONNECT (reason "with will"). Like
 * every queued packet it is written only by mqlink_flush, which the daemon
 * does not call before mqlink_connect opens a new connection, so nothing read
 * since the last flush is acknowledged (test_ackcommit checks this on the
 * wire). The broker keeps the session and redelivers.
 */
void mqlink_drop(struct mqlink *l);

/* 1 while connected. */
int mqlink_connected(const struct mqlink *l);

/* The link as the pipeline's ingest source and as its output (ingest.h);
 * both live as long as l. */
const struct ingest_source *mqlink_source(struct mqlink *l);
const struct ingest_output *mqlink_output(struct mqlink *l);

/*
 * Checks that the libmosquitto loaded at run time is a series whose
 * acknowledgement timing was verified (2.0.x; see mqlink.c). Call once at
 * start-up, before anything else. Returns 0, or SP_ERR_MQTT with the found
 * and the expected versions in err.
 */
int mqlink_check_version(char *err, size_t errlen) __attribute__((warn_unused_result));

#endif
