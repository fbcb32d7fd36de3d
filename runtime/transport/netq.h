/*
 * netq.h - the hand-over between the network transports (HTTP, UDP, TCP)
 * and the batch loop: requests that the transports' threads received,
 * queued for the pipeline as one ingest source (ingest.h), and handed back
 * with their answers once they are committed.
 *
 * A transport thread makes a struct net_req (net_req_new), and submits it
 * (netq_submit). The pipeline's thread reads it as an ingest message of its
 * binding (ingest.h, enum ingest_binding), stores it or its dead letter, and
 * after the commit attaches the answers and calls the request's done()
 * callback. done() runs on the pipeline's thread and must only hand the
 * request back to its transport (a queue and a wakeup); the transport's
 * thread then sends the answers and frees the request (net_req_free).
 *
 * How a request ends (req->result):
 *   NET_ANSWERED  committed: answers[0] is the TagoTiP answer (HTTP
 *                 binding: "STATUS[|DETAIL]"; whole frame: "ACK|...";
 *                 envelope: a sealed ACK envelope, or an "ACK|ERR|..." frame
 *                 when it could not be opened), answers[1..] commands
 *                 pending for the device, in the same form.
 *   NET_ACCEPTED  committed but not processed yet (a cut batch's tail waits
 *                 in the deferred table, pipeline.c): stored once, whatever
 *                 happens next, but there is no answer to give. HTTP
 *                 answers 202; UDP and TCP send nothing.
 *   NET_FAILED    not committed (the database refused the batch, or the
 *                 daemon is stopping): nothing was stored, the device must
 *                 retry. HTTP answers 503; UDP sends nothing; TCP closes
 *                 the connection.
 * A crash before the commit loses the request with its connection: no
 * answer, so the device retries. A retry of a committed request that
 * carries a correlation counter (a frame's "!N", an envelope's counter) is
 * recognised by the delivery window, not stored twice, and answered again.
 *
 * Thread safety: netq_submit may be called from any thread; everything
 * else of the queue from the pipeline's thread only. At shutdown:
 * netq_close, then stop the transports (they free what done() gave back),
 * then netq_free.
 */
#ifndef SP_NETQ_H
#define SP_NETQ_H

#include <stddef.h>
#include <stdint.h>

#include "core/ingest.h"

#define NET_MAX_ANSWERS 4    /* the answer and up to three pending commands */
#define NET_QUEUE_MAX   4096 /* requests waiting for the pipeline at once */

enum net_result { NET_PENDING, NET_ANSWERED, NET_ACCEPTED, NET_FAILED };

struct net_blob {
    uint8_t *data; /* malloc'ed, owned by the request */
    size_t len;
};

struct net_req {
    /* Set by the transport (net_req_new). */
    const char *transport; /* "http", "udp", "tcp": for logs */
    int binding;           /* enum ingest_binding, not INGEST_MQTT */
    char *topic;           /* INGEST_HTTP: "$tip/{serial}/push|pull|ping" */
    char *auth;            /* INGEST_HTTP: the Authorization hash as sent */
    uint8_t *data;         /* the body, frame or envelope; NUL-terminated */
    size_t len;
    size_t full_len; /* its size as received: > len when the transport cut it */
    /* 1: the transport can deliver commands pending for the device with
     * the answer (answers[1..]): HTTP's X-TagoTiP-CMD, more UDP datagrams
     * or TCP frames. A command handed over is marked delivered. */
    int commands;
    void (*done)(struct net_req *r); /* back to the transport, see above */
    void *owner;                     /* the transport's, for done() */
    void *conn;                      /* the transport's connection or peer */
    /* Set by the pipeline's thread before done(). */
    int result; /* enum net_result */
    size_t nanswers;
    struct net_blob answers[NET_MAX_ANSWERS];
    /* The queue's. */
    int id;
    struct net_req *next;
};

/*
 * A request of the given binding, copying topic and auth (NULL: none) and
 * the first len bytes of data; full_len is its size as received. Returns
 * NULL when out of memory.
 */
struct net_req *net_req_new(const char *transport, int binding, const char *topic, const char *auth,
                            const void *data, size_t len, size_t full_len);
void net_req_free(struct net_req *r);

struct netq;

/* Returns 0, or SP_ERR_NOMEM / SP_ERR_IO (the wakeup descriptor). */
int netq_new(struct netq **out) __attribute__((warn_unused_result));
/*
 * Stops taking requests (netq_submit fails from now on) and fails every
 * request still queued (NET_FAILED, done() called). Pipeline's thread, after
 * its last batch and before the transports stop.
 */
void netq_close(struct netq *q);
/* Frees the queue, after netq_close and once no transport can submit. */
void netq_free(struct netq *q);

/*
 * Queues r for the pipeline (any thread). Returns 0; SP_ERR_FULL when
 * NET_QUEUE_MAX requests wait already: the transport keeps r and answers
 * "rate_limited" (HTTP 429) or nothing; or SP_ERR_STOPPING after
 * netq_close: as NET_FAILED (HTTP 503, TCP closes, UDP nothing).
 */
int netq_submit(struct netq *q, struct net_req *r) __attribute__((warn_unused_result));

/* The queue as the pipeline's second ingest source. */
const struct ingest_source *netq_source(struct netq *q);

#endif
