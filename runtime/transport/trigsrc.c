/*
 * trigsrc.c - trigger_queue as an ingest source (see trigsrc.h).
 */
#include "trigsrc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/errors.h"
#include "base/log.h"
#include "tablepoll.h"
#include "storage/triggerq.h"

/* Rows per read: a ctx is small, but the batch is shared with devices. */
#define TRIGSRC_BATCH 64

struct trigsrc {
    struct triggerq *q;
    struct ingest_source src;
    int tfd;            /* a timerfd, readable every TRIGSRC_POLL_MS */
    int more;           /* the last read was full, or a poke: read again at once */
    int taken;          /* rows were handed out since the last ack or drop */
    int64_t err_logged; /* wall ms of the last error line */
};

/* Row r as a message in out (strings in a); -1 when a is full. */
static int row_msg(const struct triggerq_row *r, struct arena *a, struct ingest_msg *out)
{
    int64_t *id = arena_alloc(a, sizeof(*id));
    size_t len = strlen(r->kind) + strlen(r->analysis) + (r->serial ? strlen(r->serial) : 0) + 16;
    char *topic = arena_alloc(a, len);

    if (!id || !topic)
        return -1;
    *id = r->id;
    snprintf(topic, len, "%s%s/%s%s%s", INGEST_TRIGGER_PREFIX, r->kind, r->analysis,
             r->serial ? "/" : "", r->serial ? r->serial : "");
    size_t plen = strlen(r->ctx);
    *out = (struct ingest_msg){.handle = id,
                               .id = 0, /* the row, not the delivery window */
                               .binding = INGEST_MQTT,
                               .topic = topic,
                               .payload = (const uint8_t *)r->ctx,
                               .len = plen,
                               .full_len = plen,
                               .qos = 1,
                               .publisher = r->serial,
                               .hops = r->hops,
                               .trigger = 1};
    return 0;
}

static int ts_read(void *ctx, int timeout_ms, struct arena *a, struct ingest_msg *out, size_t max,
                   size_t *n)
{
    struct trigsrc *t = ctx;
    struct triggerq_row r[TRIGSRC_BATCH];
    size_t got = 0;

    *n = 0;
    /* The rows stay in the table until their batch commits: a second read
     * for the same batch would hand the same ones out again. */
    if (t->taken || !tablepoll_due(t->tfd, t->more, timeout_ms))
        return SP_OK;
    if (max > TRIGSRC_BATCH)
        max = TRIGSRC_BATCH;
    int rc = triggerq_take(t->q, a, 0, r, max, &got);
    if (rc) {
        int64_t now = clock_wall_ms();
        if (now - t->err_logged > 60000) {
            LOG_WARN("triggers: cannot read the queue error=%s", errors_strerror(rc));
            t->err_logged = now;
        }
        t->more = 0;
        return SP_OK; /* read again at the next tick */
    }
    t->more = got == max;
    t->taken = got > 0;
    for (size_t i = 0; i < got && row_msg(&r[i], a, &out[i]) == 0; i++)
        *n = i + 1;
    return SP_OK;
}

/* ack and drop alike: what was read is committed, or still in the table. */
static int ts_ack(void *ctx)
{
    struct trigsrc *t = ctx;

    t->taken = 0;
    return SP_OK;
}

static void ts_drop(void *ctx)
{
    (void)ts_ack(ctx);
}

static int ts_wait_fd(void *ctx)
{
    struct trigsrc *t = ctx;

    return t->more ? -1 : t->tfd;
}

int trigsrc_open(struct bucket *b, struct trigsrc **out)
{
    struct trigsrc *t = calloc(1, sizeof(*t));

    if (!t)
        return SP_ERR_NOMEM;
    t->tfd = tablepoll_timer(TRIGSRC_POLL_MS);
    if (t->tfd < 0) {
        trigsrc_free(t);
        return SP_ERR_IO;
    }
    int rc = triggerq_open(b, &t->q);
    if (rc) {
        trigsrc_free(t);
        return rc;
    }
    t->src = (struct ingest_source){.name = TRIGSRC_NAME,
                                    .ctx = t,
                                    .read = ts_read,
                                    .answer = tablepoll_no_answer, /* a run has no sender */
                                    .ack = ts_ack,
                                    .drop = ts_drop,
                                    .wait_fd = ts_wait_fd,
                                    .stays_up = 1};
    *out = t;
    return SP_OK;
}

void trigsrc_free(struct trigsrc *t)
{
    if (!t)
        return;
    if (t->tfd >= 0)
        close(t->tfd);
    triggerq_close(t->q);
    free(t);
}

const struct ingest_source *trigsrc_source(struct trigsrc *t)
{
    return &t->src;
}

void trigsrc_poke(struct trigsrc *t)
{
    t->more = 1;
}

int64_t trigsrc_row(const struct trigsrc *t, const struct ingest_msg *m)
{
    return m->src == &t->src && m->handle ? *(const int64_t *)m->handle : 0;
}
