/*
 * netq.c - the network transports' requests as one ingest source (see
 * netq.h).
 *
 * Submitted requests wait in a list under a mutex; an eventfd is readable
 * while the list is not empty, which is the source's wait_fd. read() moves
 * requests from the list into the batch (copies in the arena) and keeps them
 * "in hand", in read order, until ack() hands each back to its transport
 * with its answers, or drop() fails them. The pipeline's thread alone
 * touches what is in hand.
 */
#include "netq.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/errors.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/sp_limits.h"
#include "sealpipe.h"

struct netq {
    pthread_mutex_t mu;
    struct net_req *head, *tail; /* submitted, oldest first */
    size_t queued;
    int closed;
    int efd; /* readable while anything is queued */
    /* The pipeline thread's: read and not handed back yet, in read order. */
    struct net_req **hand;
    unsigned char *again; /* hand[i] was given back unprocessed (requeue) */
    size_t nhand, caphand;
    struct ingest_source source;
};

/* ---- requests ------------------------------------------------------------ */

struct net_req *net_req_new(const char *transport, int binding, const char *topic, const char *auth,
                            const void *data, size_t len, size_t full_len)
{
    struct net_req *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    r->transport = transport;
    r->binding = binding;
    r->topic = strdup(topic ? topic : "");
    r->auth = auth ? strdup(auth) : NULL;
    r->data = malloc(len + 1);
    if (!r->topic || (auth && !r->auth) || !r->data) {
        net_req_free(r);
        return NULL;
    }
    if (len)
        memcpy(r->data, data, len);
    r->data[len] = '\0';
    r->len = len;
    r->full_len = full_len > len ? full_len : len;
    return r;
}

static void answers_clear(struct net_req *r)
{
    for (size_t i = 0; i < r->nanswers; i++)
        free(r->answers[i].data);
    r->nanswers = 0;
}

void net_req_free(struct net_req *r)
{
    if (!r)
        return;
    answers_clear(r);
    free(r->topic);
    free(r->auth);
    free(r->data);
    free(r);
}

/* Hands r back to its transport with its result. */
static void finish(struct net_req *r, int result)
{
    if (result == NET_FAILED)
        answers_clear(r);
    r->result = result;
    r->done(r);
}

/* ---- the queue ----------------------------------------------------------- */

/* Keeps the eventfd readable while requests wait (the lock is held). */
static void signal_locked(struct netq *q)
{
    uint64_t one = 1;

    if (q->queued && write(q->efd, &one, sizeof one) < 0 && errno != EAGAIN)
        LOG_DEBUG("netq wakeup: %s", strerror(errno));
}

int netq_submit(struct netq *q, struct net_req *r)
{
    int rc = SP_OK;

    pthread_mutex_lock(&q->mu);
    if (q->closed || q->queued >= NET_QUEUE_MAX) {
        rc = q->closed ? SP_ERR_STOPPING : SP_ERR_FULL;
    } else {
        r->next = NULL;
        if (q->tail)
            q->tail->next = r;
        else
            q->head = r;
        q->tail = r;
        q->queued++;
        signal_locked(q);
        metrics_received(r->transport, r->topic);
        metrics_gauge_set(METRIC_NETQ_DEPTH, (int64_t)q->queued);
    }
    pthread_mutex_unlock(&q->mu);
    return rc;
}

/* Takes the oldest queued request, or NULL; clears the eventfd when none is left. */
static struct net_req *take(struct netq *q)
{
    uint64_t count;
    struct net_req *r;

    pthread_mutex_lock(&q->mu);
    r = q->head;
    if (r) {
        q->head = r->next;
        if (!q->head)
            q->tail = NULL;
        q->queued--;
        r->next = NULL;
        metrics_gauge_set(METRIC_NETQ_DEPTH, (int64_t)q->queued);
    }
    if (!q->queued && read(q->efd, &count, sizeof count) < 0 && errno != EAGAIN)
        LOG_DEBUG("netq drain: %s", strerror(errno));
    pthread_mutex_unlock(&q->mu);
    return r;
}

/* Puts requests back at the head of the queue, in their order. */
static void push_front(struct netq *q, struct net_req **rs, size_t n)
{
    pthread_mutex_lock(&q->mu);
    for (size_t i = n; i-- > 0;) {
        rs[i]->next = q->head;
        q->head = rs[i];
        if (!q->tail)
            q->tail = rs[i];
        q->queued++;
    }
    signal_locked(q);
    pthread_mutex_unlock(&q->mu);
}

static int hand_add(struct netq *q, struct net_req *r)
{
    if (q->nhand == q->caphand) {
        size_t cap = q->caphand ? q->caphand * 2 : 64;
        struct net_req **h = realloc(q->hand, cap * sizeof(*h));
        unsigned char *a = h ? realloc(q->again, cap) : NULL;
        if (!a) {
            q->hand = h ? h : q->hand;
            return SP_ERR_NOMEM;
        }
        q->hand = h;
        q->again = a;
        q->caphand = cap;
    }
    q->again[q->nhand] = 0;
    q->hand[q->nhand++] = r;
    return SP_OK;
}

/* ---- the ingest source --------------------------------------------------- */

/* r as an ingest message in arena a; 0, or SP_ERR_NOMEM (the arena is full). */
static int to_msg(struct net_req *r, struct arena *a, struct ingest_msg *m)
{
    *m = (struct ingest_msg){.handle = r,
                             .binding = r->binding,
                             .topic = arena_strdup(a, r->topic),
                             .payload =
                                 (const uint8_t *)arena_strndup(a, (const char *)r->data, r->len),
                             .len = r->len,
                             .full_len = r->full_len,
                             .qos = 1,
                             .auth = r->auth ? arena_strdup(a, r->auth) : NULL,
                             .commands = r->commands,
                             .via = r->transport};
    return m->topic && m->payload && (!r->auth || m->auth) ? SP_OK : SP_ERR_NOMEM;
}

static int source_read(void *ctx, int timeout_ms, struct arena *a, struct ingest_msg *out,
                       size_t max, size_t *n)
{
    struct netq *q = ctx;
    struct pollfd pf = {.fd = q->efd, .events = POLLIN};
    struct net_req *r;

    *n = 0;
    if (timeout_ms > 0 && poll(&pf, 1, timeout_ms) < 0 && errno != EINTR)
        return SP_OK;
    while (*n < max && arena_used(a) < SP_LIMIT_BATCH_INPUT && (r = take(q))) {
        if (hand_add(q, r) != SP_OK || to_msg(r, a, &out[*n]) != SP_OK) {
            /* Out of memory: it waits for the next batch. */
            if (q->nhand && q->hand[q->nhand - 1] == r)
                q->nhand--;
            push_front(q, &r, 1);
            break;
        }
        (*n)++;
    }
    return SP_OK;
}

/* Copies one answer onto m's request; the transport sends it after ack(). */
static int source_answer(void *ctx, const struct ingest_msg *m, const char *topic,
                         const uint8_t *payload, size_t len)
{
    struct net_req *r = m->handle;
    struct net_blob *b;

    (void)ctx;
    (void)topic;
    if (!r || r->nanswers == NET_MAX_ANSWERS)
        return SP_ERR_FULL;
    b = &r->answers[r->nanswers];
    if (!(b->data = malloc(len ? len : 1)))
        return SP_ERR_NOMEM;
    memcpy(b->data, payload, len);
    b->len = len;
    r->nanswers++;
    return SP_OK;
}

static void source_requeue(void *ctx, const struct ingest_msg *m)
{
    struct netq *q = ctx;

    for (size_t i = 0; i < q->nhand; i++)
        if (q->hand[i] == m->handle)
            q->again[i] = 1;
}

/* Committed: each request goes back to its transport, or to the queue's
 * head when the pipeline gave it back unprocessed. */
static int source_ack(void *ctx)
{
    struct netq *q = ctx;
    size_t nagain = 0;

    for (size_t i = 0; i < q->nhand; i++) {
        struct net_req *r = q->hand[i];
        if (q->again[i]) {
            answers_clear(r);
            q->hand[nagain++] = r; /* kept in order, in front of the array */
        } else {
            finish(r, r->nanswers ? NET_ANSWERED : NET_ACCEPTED);
        }
    }
    if (nagain)
        push_front(q, q->hand, nagain);
    q->nhand = 0;
    return SP_OK;
}

/* Not committed: nothing of what is in hand was stored. */
static void source_drop(void *ctx)
{
    struct netq *q = ctx;

    for (size_t i = 0; i < q->nhand; i++)
        finish(q->hand[i], NET_FAILED);
    q->nhand = 0;
}

static int source_wait_fd(void *ctx)
{
    return ((struct netq *)ctx)->efd;
}

const struct ingest_source *netq_source(struct netq *q)
{
    return &q->source;
}

/* ---- life ---------------------------------------------------------------- */

int netq_new(struct netq **out)
{
    struct netq *q = calloc(1, sizeof(*q));

    if (!q)
        return SP_ERR_NOMEM;
    q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->efd < 0) {
        free(q);
        return SP_ERR_IO;
    }
    pthread_mutex_init(&q->mu, NULL);
    q->source = (struct ingest_source){.name = "net",
                                       .ctx = q,
                                       .read = source_read,
                                       .answer = source_answer,
                                       .ack = source_ack,
                                       .drop = source_drop,
                                       .wait_fd = source_wait_fd,
                                       .requeue = source_requeue,
                                       .answers_duplicates = 1,
                                       .stays_up = 1};
    *out = q;
    return SP_OK;
}

void netq_close(struct netq *q)
{
    struct net_req *r;

    if (!q)
        return;
    pthread_mutex_lock(&q->mu);
    q->closed = 1;
    pthread_mutex_unlock(&q->mu);
    source_drop(q);
    while ((r = take(q)))
        finish(r, NET_FAILED);
}

void netq_free(struct netq *q)
{
    if (!q)
        return;
    netq_close(q);
    close(q->efd);
    pthread_mutex_destroy(&q->mu);
    free(q->hand);
    free(q->again);
    free(q);
}
