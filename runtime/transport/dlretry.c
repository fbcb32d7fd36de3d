/*
 * dlretry.c - dead letters run again, as an ingest source (see dlretry.h).
 *
 * A request stays in dead_letter_retries until the batch that runs its dead
 * letter commits, which deletes it with the dead letter (or updates the
 * dead letter): after a crash, a failed commit or a cut batch the request is
 * simply read again, so nothing is held here between batches. For the same
 * reason the source reads once per batch: a second read() before ack(),
 * drop() or requeue() would take the same requests again (the batch's linger
 * reads every source more than once; test_dlretry stored a message four
 * times when it did).
 */
#include "dlretry.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/errors.h"
#include "base/log.h"
#include "base/sp_limits.h"
#include "tablepoll.h"
#include "storage/deadletters.h"

/* Dead letters per read: their payloads are at most SP_LIMIT_PAYLOAD each. */
#define DLRETRY_BATCH 32

struct dlretry {
    struct deadletters *dl;
    struct ingest_source src;
    int tfd;            /* a timerfd, readable every DLRETRY_POLL_MS */
    int more;           /* the last read was full: read again at once */
    int taken;          /* requests were handed out since the last ack, drop or requeue */
    int64_t err_logged; /* wall ms of the last error line */
};

/* The binding a dead letter's topic was received on (dlretry.h). */
static int binding_of(const char *topic)
{
    if (strcmp(topic, "$tip") == 0)
        return INGEST_FRAME;
    if (strcmp(topic, "$tips") == 0)
        return INGEST_ENVELOPE;
    return INGEST_MQTT;
}

static int dl_read(void *ctx, int timeout_ms, struct arena *a, struct ingest_msg *out, size_t max,
                   size_t *n)
{
    struct dlretry *r = ctx;
    struct dead_letter d[DLRETRY_BATCH];
    size_t got = 0;

    *n = 0;
    /* The requests stay in the table until their batch commits, so a second
     * read for the same batch would hand the same ones out again. */
    if (r->taken || !tablepoll_due(r->tfd, r->more, timeout_ms))
        return SP_OK;
    if (max > DLRETRY_BATCH)
        max = DLRETRY_BATCH;
    int rc = deadletters_take(r->dl, a, d, max, &got);
    if (rc) {
        int64_t now = clock_wall_ms();
        if (now - r->err_logged > 60000) {
            LOG_WARN("dead-letter retries: cannot read the requests error=%s", errors_strerror(rc));
            r->err_logged = now;
        }
        r->more = 0;
        return SP_OK; /* read again at the next tick */
    }
    r->more = got == max;
    r->taken = got > 0;
    for (size_t i = 0; i < got; i++) {
        int64_t *id = arena_alloc(a, sizeof(*id));
        if (!id)
            break;
        *id = d[i].id;
        out[i] = (struct ingest_msg){.handle = id,
                                     .id = 0, /* the request, not the delivery window */
                                     .binding = binding_of(d[i].topic ? d[i].topic : ""),
                                     .topic = d[i].topic ? d[i].topic : "",
                                     .payload = d[i].payload,
                                     .len = d[i].len,
                                     .full_len = d[i].len,
                                     .qos = 1,
                                     .publisher = d[i].device,
                                     .received_ms = d[i].received_ms,
                                     .trigger = d[i].topic && INGEST_IS_TRIGGER_TOPIC(d[i].topic)};
        LOG_INFO("dead letter retried id=%lld topic=%s reason=%s", (long long)d[i].id, out[i].topic,
                 d[i].reason);
        *n = i + 1;
    }
    return SP_OK;
}

static int dl_settle(void *ctx, const struct ingest_msg *m, const char *serial, const char *reason,
                     const char *detail)
{
    struct dlretry *r = ctx;
    int64_t id = *(const int64_t *)m->handle;

    if (!reason)
        return deadletters_stored(r->dl, id) ? SP_ERR_DB : 0;
    LOG_INFO("dead letter retried id=%lld failed again reason=%s", (long long)id, reason);
    return deadletters_failed(r->dl, id, serial, reason, detail) ? SP_ERR_DB : 1;
}

static int dl_ack(void *ctx)
{
    struct dlretry *r = ctx;

    r->taken = 0;
    return SP_OK;
}

static void dl_drop(void *ctx)
{
    struct dlretry *r = ctx;

    r->taken = 0; /* the requests are still in the table */
}

static void dl_requeue(void *ctx, const struct ingest_msg *m)
{
    struct dlretry *r = ctx;

    (void)m; /* its request is still in the table: read again at once */
    r->more = 1;
    r->taken = 0;
}

static int dl_wait_fd(void *ctx)
{
    struct dlretry *r = ctx;

    return r->more ? -1 : r->tfd;
}

int dlretry_open(struct bucket *b, struct dlretry **out)
{
    struct dlretry *r = calloc(1, sizeof(*r));

    if (!r)
        return SP_ERR_NOMEM;
    r->tfd = tablepoll_timer(DLRETRY_POLL_MS);
    if (r->tfd < 0) {
        dlretry_free(r);
        return SP_ERR_IO;
    }
    int rc = deadletters_open(b, &r->dl);
    if (rc) {
        dlretry_free(r);
        return rc;
    }
    r->src = (struct ingest_source){
        .name = DLRETRY_NAME,
        .ctx = r,
        .read = dl_read,
        .answer = tablepoll_no_answer, /* no retried message is answered (ingest.h, settle) */
        .ack = dl_ack,
        .drop = dl_drop,
        .wait_fd = dl_wait_fd,
        .requeue = dl_requeue,
        .settle = dl_settle,
        .stays_up = 1};
    *out = r;
    return SP_OK;
}

void dlretry_free(struct dlretry *r)
{
    if (!r)
        return;
    if (r->tfd >= 0)
        close(r->tfd);
    deadletters_close(r->dl);
    free(r);
}

const struct ingest_source *dlretry_source(struct dlretry *r)
{
    return &r->src;
}
