/*
 * tipserver.h - the TagoTiP server: the $tip and $tips routes, PUSH, PULL and
 * PING, the answers to devices (plain, sealed, fallback) and the commands of
 * `sealpipe device cmd`.
 *
 * Topics: $tips/{serial}/push and /pull carry TagoTiP/S envelopes (the method
 * is the envelope's; PING on either), $tip/{serial}/push and /pull plain
 * TagoTiP bodies (TagoTipServers.md §3). Answers go to {prefix}/{serial}/ack.
 *
 * The pipeline calls it per message in phase 1 (tipserver_route), while
 * writing in phase 3 (tipserver_seal_publish, tipserver_answer), and between
 * batches (tipserver_commands). It writes into the pipeline's batch arena and
 * open transaction; every result lives until the next arena_reset. A sealed
 * answer's nonce seed is the key's next server counter, advanced in the open
 * batch, so it is durable before the envelope leaves and never repeats.
 *
 * Single-threaded, like the pipeline.
 */
#ifndef SP_TIPSERVER_H
#define SP_TIPSERVER_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "storage/bucket.h"
#include "storage/devcache.h"
#include "ingest.h"
#include "outcome.h"
#include "sandbox/pool.h"

/* The MQTT filters the server is reached on, subscribed to at QoS 1. */
#define TIPSERVER_FILTERS                                                                          \
    {                                                                                              \
        "$tips/+/push", "$tip/+/push", "$tips/+/pull", "$tip/+/pull"                               \
    }
#define TIPSERVER_NFILTERS 4

/* Borrowed: all of them must outlive the server. */
struct tipserver_opts {
    struct arena *arena;   /* the batch arena */
    struct devcache *devs; /* synced by the pipeline per batch */
    struct bucket *bk;
    struct pool *pool;    /* the devices' payload parsers */
    int64_t key_grace_ms; /* how long a rotated key still opens envelopes */
};

struct tipserver;

int tipserver_new(const struct tipserver_opts *o, struct tipserver **out)
    __attribute__((warn_unused_result));
void tipserver_free(struct tipserver *ts);

/*
 * Phase 1 for a message on a $tip or $tips topic: opens, checks and parses
 * it into o (records, a dead letter, or a job for the device's parser) and
 * notes how it is to be answered. Writes nothing. Returns 1 when m's topic
 * is one of the server's, else 0 (o untouched).
 */
int tipserver_route(struct tipserver *ts, const struct ingest_msg *m, int64_t now,
                    struct outcome *o);

/* For a too_large dead letter on a $tip or $tips topic: notes the answer
 * (payload_too_large, envelope_too_large) without reading the payload. */
void tipserver_too_large(struct tipserver *ts, const struct ingest_msg *m, struct outcome *o);

/*
 * Seals publish in for its seal_for device with the key it uses (the one
 * that last opened its envelopes, else its current key),
 * in the open batch. Returns 0 with *out the sealed copy; SP_ERR_DB; or
 * another error with o an analysis_error dead letter.
 */
int tipserver_seal_publish(struct tipserver *ts, struct outcome *o, const struct host_publish *in,
                           struct host_publish *out, int64_t now);

/*
 * In the open batch, for a message that is not a dead letter: notes which key opened its
 * envelope, so that downlink to the device (commands, sealed publishes) is
 * sealed with the key it uses. Returns 0 or SP_ERR_DB.
 */
int tipserver_key_used(struct tipserver *ts, const struct outcome *o)
    __attribute__((warn_unused_result));

/* An answer to a device, in the batch arena. */
struct tip_answer {
    const char *topic; /* {prefix}/{serial}/ack */
    const uint8_t *payload;
    size_t len;
};

/*
 * The answer to TagoTiP message m (o->answer set), made in the open batch after
 * m's rows are written: ACK|OK with the record count, PONG, the PULL values,
 * or ACK|ERR with the wire code of o's reason. Returns 1 with *out set, 0
 * when no answer can be made (logged), or SP_ERR_DB.
 */
int tipserver_answer(struct tipserver *ts, const struct ingest_msg *m, const struct outcome *o,
                     struct tip_answer *out);

/*
 * The commands waiting for the device of m (m->commands set: HTTP, UDP,
 * TCP), as answers in the form of o's answer, up to max (at most 4), each
 * recorded as picked up in the open batch; none unless o's sender proved it
 * speaks for the device. Returns 0 with *n set, or SP_ERR_DB.
 */
int tipserver_pickup(struct tipserver *ts, const struct ingest_msg *m, const struct outcome *o,
                     int64_t now, struct tip_answer *out, size_t max, size_t *n)
    __attribute__((warn_unused_result));

/*
 * Sends the commands `sealpipe device cmd` queued (the commands table):
 * seals each once with the key the device uses and a nonce seed committed
 * before it leaves, publishes it at QoS 1 through out and marks it sent. A
 * command for a device that is gone or has no key is marked failed with the
 * reason. Call between batches, with the arena reset. Each one sent is an
 * inspector event (in may be NULL). Returns the number sent, SP_ERR_DB, or
 * SP_ERR_MQTT (out lost).
 */
struct inspect;
int tipserver_commands(struct tipserver *ts, const struct ingest_output *out, struct inspect *in,
                       int64_t now);

#endif
