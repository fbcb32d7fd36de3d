/*
 * pool_run.c - jobs through the Lua workers (see pool.h): a batch's, sent to
 * all their workers at once, and those a batch left running (detached),
 * whose results are kept here until the pipeline claims them.
 */
#include "base/clock.h"
#include "base/errors.h"
#include "pool.h"
#include "pool_internal.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "base/metrics.h"
#include "sealpipe.h"
#include "wire.h"

/* Bytes a frame buffer keeps between batches; a larger one (the replies of
 * a batch of big publishes reach tens of MiB) is given back after the run. */
#define POOL_BUF_KEEP (1024 * 1024)

/* How long a worker that looks dead gets to deliver the replies it wrote. */
#define LOST_GRACE_MS 1000

/* The wall-clock budget of a job: its analysis's own, or the pool's. */
static int job_ms(const struct pool *pl, const struct pool_job *j)
{
    int ms = pl->v[j->analysis].timeout_ms;
    return ms > 0 ? ms : pl->o.wall_ms;
}

static void job_fail(struct pool_job *j, struct arena *a, int rc, const char *msg)
{
    memset(&j->out, 0, sizeof(j->out));
    j->rc = rc;
    j->err = arena_strdup(a, msg);
    if (!j->err)
        j->err = errors_strerror(rc);
}

/*
 * The codes a worker may answer a job with (host_run's, and NOTFOUND for an
 * analysis it does not hold); anything else, SP_ERR_FULL or SP_ERR_CRASH
 * included, is the daemon's to say and becomes SP_ERR_LUA.
 */
static int worker_rc(int rc)
{
    switch (rc) {
    case SP_ERR_LUA:
    case SP_ERR_TIMEOUT:
    case SP_ERR_NOMEM:
    case SP_ERR_LIMIT:
    case SP_ERR_PAYLOAD:
    case SP_ERR_INVAL:
    case SP_ERR_NOTFOUND:
        return rc;
    default:
        return SP_ERR_LUA;
    }
}

/*
 * Reads job j's reply from the frame of n bytes (header included) at p into
 * a. When a cannot hold it (*full set, now or by an earlier reply), the job
 * gets SP_ERR_FULL: nothing is wrong with the analysis, its message waits
 * for a batch with room.
 */
static void decode_reply(const struct pool *pl, const char *p, size_t n, int handler,
                         struct pool_job *j, struct arena *a, int *full)
{
    char why[512];
    struct wire_in in = {.p = (const uint8_t *)p + 4, .len = n - 4, .a = a};
    unsigned type = wire_get_u8(&in);
    int rc = (int)(int32_t)wire_get_u32(&in);
    const char *msg = *full ? NULL : wire_get_str(&in, NULL);
    int bad = 0;

    memset(&j->out, 0, sizeof(j->out));
    if (!*full && !in.bad && type == WIRE_DONE)
        bad = wire_get_result(&in, handler, pl->o.worker.limits.max_records,
                              pl->o.worker.limits.max_publishes, &j->out, why, sizeof why);
    if (*full || in.full) {
        *full = 1;
        memset(&j->out, 0, sizeof(j->out));
        j->rc = SP_ERR_FULL;
        j->err = errors_strerror(SP_ERR_FULL);
    } else if (in.bad || type != WIRE_DONE) {
        job_fail(j, a, SP_ERR_LUA, "the worker sent a malformed reply");
    } else if (bad) {
        char m[600];
        snprintf(m, sizeof m, "the worker sent a bad result: %s", why);
        job_fail(j, a, SP_ERR_LUA, m);
    } else if (rc) {
        /* A failed run still brings the lines it logged before failing. */
        j->rc = worker_rc(rc);
        j->err = msg ? msg : errors_strerror(j->rc);
        /* Limit texts go to the log as they are: one line each. */
        if (msg && j->rc != SP_ERR_LUA && j->rc != SP_ERR_PAYLOAD)
            for (char *c = (char *)msg; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f)
                    *c = '?';
        j->out.records = (struct record_vec){0};
        j->out.publishes = NULL;
        j->out.npublishes = 0;
        j->out.inserts = NULL;
        j->out.ninserts = 0;
    } else {
        j->rc = 0;
        j->err = NULL;
    }
}

/* ---- tickets: the results of detached jobs ------------------------------ */

static struct ticket *ticket_find(struct pool *pl, uint64_t id)
{
    size_t lo = 0, hi = pl->nt;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (pl->t[mid].id == id)
            return pl->t[mid].state == T_FREE ? NULL : &pl->t[mid];
        if (pl->t[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static struct ticket *ticket_by_tag(struct pool *pl, int64_t tag)
{
    for (size_t i = 0; i < pl->nt; i++)
        if (pl->t[i].state != T_FREE && pl->t[i].tag == tag)
            return &pl->t[i];
    return NULL;
}

/* A new ticket, T_RUNNING; 0 when there is no memory for it. */
static uint64_t ticket_new(struct pool *pl)
{
    if (pl->nfree > pl->nt / 2) { /* compacted, in order */
        size_t k = 0;
        for (size_t i = 0; i < pl->nt; i++)
            if (pl->t[i].state != T_FREE)
                pl->t[k++] = pl->t[i];
        pl->nt = k;
        pl->nfree = 0;
    }
    if (pl->nt == pl->capt) {
        size_t cap = pl->capt ? pl->capt * 2 : 64;
        struct ticket *t = realloc(pl->t, cap * sizeof(*t));
        if (!t)
            return 0;
        pl->t = t;
        pl->capt = cap;
    }
    pl->t[pl->nt++] = (struct ticket){.id = ++pl->next_ticket, .state = T_RUNNING};
    pl->running++;
    return pl->next_ticket;
}

/* Running ticket id, or NULL (forgotten), now ended. */
static struct ticket *ticket_end(struct pool *pl, uint64_t id)
{
    struct ticket *t = ticket_find(pl, id);
    if (!t || t->state != T_RUNNING)
        return NULL;
    pl->running--;
    t->state = T_DONE;
    return t;
}

/* A detached job failed with rc: the pool's verdict (a timeout, a crash). */
static void ticket_fail(struct pool *pl, uint64_t id, int rc, const char *err)
{
    struct ticket *t = ticket_end(pl, id);
    if (t) {
        t->rc = rc;
        t->err = strdup(err);
    }
}

/* A detached job's reply frame (header included), kept. */
static void ticket_reply(struct pool *pl, uint64_t id, const char *frame, size_t len)
{
    struct ticket *t = ticket_end(pl, id);
    if (!t)
        return;
    if ((t->frame = malloc(len))) {
        memcpy(t->frame, frame, len);
        t->len = len;
        pl->kept += len;
        return;
    }
    LOG_WARN("out of memory for a detached job's result (%zu bytes); its message runs again", len);
    t->state = T_LOST;
}

static void ticket_free(struct pool *pl, struct ticket *t)
{
    if (t->state == T_RUNNING)
        pl->running--;
    pl->kept -= t->len;
    free(t->frame);
    free(t->err);
    *t = (struct ticket){.id = t->id, .state = T_FREE};
    pl->nfree++;
}

void pool_tickets_free(struct pool *pl)
{
    for (size_t i = 0; i < pl->nt; i++) {
        free(pl->t[i].frame);
        free(pl->t[i].err);
    }
    free(pl->t);
    pl->t = NULL;
    pl->nt = pl->capt = pl->nfree = pl->running = pl->kept = 0;
}

void pool_tag(struct pool *pl, uint64_t ticket, int64_t tag)
{
    struct ticket *t = ticket_find(pl, ticket);
    if (t)
        t->tag = tag;
}

void pool_forget(struct pool *pl, uint64_t ticket)
{
    struct ticket *t = ticket_find(pl, ticket);
    if (t)
        ticket_free(pl, t);
}

size_t pool_ready(const struct pool *pl, int64_t *tags, size_t max)
{
    size_t k = 0;
    for (size_t i = 0; i < pl->nt && k < max; i++)
        if (pl->t[i].tag && (pl->t[i].state == T_DONE || pl->t[i].state == T_LOST))
            tags[k++] = pl->t[i].tag;
    return k;
}

int pool_claim(struct pool *pl, int64_t tag, struct pool_job *j, struct arena *a)
{
    struct ticket *t = ticket_by_tag(pl, tag);
    int full = 0;

    if (!t || t->state == T_LOST) {
        if (t)
            ticket_free(pl, t);
        return 0;
    }
    if (t->state == T_RUNNING)
        return -1;
    j->ticket = 0;
    if (t->frame)
        decode_reply(pl, t->frame, t->len, t->handler, j, a, &full);
    else
        job_fail(j, a, t->rc, t->err ? t->err : errors_strerror(t->rc));
    ticket_free(pl, t);
    return 1;
}

size_t pool_detached(const struct pool *pl)
{
    return pl->running;
}

/* ---- one worker's queue --------------------------------------------------- */

static struct pend *head(struct worker *w)
{
    return w->head < w->n ? &w->q[w->head] : NULL;
}

static const char *pend_name(const struct pool *pl, const struct pend *p)
{
    return p->ticket ? p->name : pl->v[p->job->analysis].name;
}

static const char *pend_serial(const struct pend *p)
{
    const char *s = p->ticket ? p->serial : p->job->msg->serial;
    return s ? s : "-";
}

/* q[head] has its result: the next one's clock starts. */
static void next_job(struct pool *pl, struct worker *w)
{
    struct pend *p = head(w);
    int64_t now_us = clock_mono_us();

    metrics_observe_labels(METRIC_ANALYSIS, pend_name(pl, p), NULL,
                           (uint64_t)(now_us - w->started_us));
    w->started_us = now_us;
    if (!p->ticket)
        w->attached--;
    free(p->name);
    free(p->serial);
    p->name = p->serial = NULL;
    w->head++;
    w->alone = 0;
    if ((p = head(w)))
        w->deadline = clock_mono_ms() + p->ms;
}

/* q[head] fails with rc (not run again). */
static void head_fail(struct pool *pl, struct worker *w, struct arena *a, int rc, const char *msg)
{
    struct pend *p = head(w);
    if (p->ticket)
        ticket_fail(pl, p->ticket, rc, msg);
    else
        job_fail(p->job, a, rc, msg);
    next_job(pl, w);
}

/*
 * The frame of n bytes at the front of w->in is q[head]'s reply. A detached
 * job's is kept while the kept results stay under POOL_KEPT_MAX (or a batch
 * waits for the worker: pl->keep_all); else it stays in w->in, and the
 * worker is not read from (it blocks once its socket is full) until claims
 * make room: the bound holds the workers back, it loses no result.
 */
static void take_reply(struct pool *pl, struct worker *w, long n, struct arena *a)
{
    struct pend *p = head(w);
    if (p->ticket && pl->kept && pl->kept + (size_t)n > POOL_KEPT_MAX && !pl->keep_all) {
        w->held = (size_t)n;
        return;
    }
    if (p->ticket)
        ticket_reply(pl, p->ticket, w->in.p, (size_t)n);
    else
        decode_reply(pl, w->in.p, (size_t)n, p->handler, p->job, a, &w->full);
    pool_consume(&w->in, (size_t)n);
    next_job(pl, w);
}

/* Takes the replies that arrive until `until` (0: those already there).
 * Returns -1 when the worker is gone or broke the protocol, else 0. */
static int take_replies(struct pool *pl, struct worker *w, struct arena *a, int64_t until)
{
    long f = 0;
    while (head(w) && !w->held && (f = pool_read_frame_on(w->fd, &w->in, until)) > 0)
        take_reply(pl, w, f, a);
    if (f == -2)
        w->broke = 1;
    return f < 0 ? -1 : 0;
}

/*
 * The worker died (or broke the protocol, or stopped answering a query).
 * Whatever told us first (the query channel's EOF often does), the replies
 * it wrote before dying are still in the socket: they are taken first, so
 * the job blamed is the one that was running. A death can also come from
 * the process as a whole (a limit reached over many jobs), so that job is
 * run again alone in a fresh worker; only a job that kills a worker twice
 * fails, with SP_ERR_CRASH. No other job is failed or run twice: the
 * worker's later jobs are sent to the new one, and the other workers never
 * notice.
 */
static void worker_lost(struct pool *pl, struct worker *w, struct arena *a)
{
    char why[256];

    take_replies(pl, w, a, clock_mono_ms() + LOST_GRACE_MS);
    int status = pool_stop_worker(w);
    struct pend *p = head(w);
    if (!p)
        return;
    if (w->broke)
        snprintf(why, sizeof why, "the worker sent a frame over %u bytes", WIRE_MAX_FRAME);
    else
        pool_describe(status, why, sizeof why);
    w->broke = 0;
    if (++p->deaths < 2) {
        LOG_WARN("analysis %s device=%s: %s while running this message; running it again, alone, "
                 "in a new worker",
                 pend_name(pl, p), pend_serial(p), why);
        w->alone = 1;
        return;
    }
    char m[400];
    snprintf(m, sizeof m,
             "the worker died running this message, and again running it alone in a new worker "
             "(%s); it is not run again",
             why);
    head_fail(pl, w, a, SP_ERR_CRASH, m);
}

/* q[head] is out of wall-clock time: its worker is killed. */
static void expire(struct pool *pl, struct worker *w, struct arena *a)
{
    char why[128];

    pool_stop_worker(w);
    snprintf(why, sizeof why, "wall-clock limit (%d ms) exceeded; the worker was killed",
             head(w)->ms);
    head_fail(pl, w, a, SP_ERR_TIMEOUT, why);
}

/* The deadline of q[head] passed with no reply seen. */
static void worker_timeout(struct pool *pl, struct worker *w, struct arena *a)
{
    size_t before = w->head;

    if (take_replies(pl, w, a, 0) < 0)
        worker_lost(pl, w, a);
    else if (w->head == before)
        expire(pl, w, a);
    /* else the reply came in time after all */
}

/*
 * The worker asks a query(). Replies already written are taken first, so the
 * asking job is q[head] and its deadline applies. An exchange that runs
 * past the deadline is that job's timeout; a broken one, a lost worker.
 */
static void worker_query(struct pool *pl, struct worker *w, struct arena *a)
{
    if (take_replies(pl, w, a, 0) < 0) {
        worker_lost(pl, w, a);
        return;
    }
    if (!head(w))
        return; /* nothing is running: not a query of ours */
    int rc = pool_answer_query(pl, w, w->deadline);
    if (rc < 0)
        worker_lost(pl, w, a);
    else if (rc > 0)
        expire(pl, w, a);
}

/* Drops the pends before q[head] and their frames. */
static void compact(struct worker *w)
{
    size_t off = head(w) ? head(w)->start : w->out.len;

    if (off) {
        memmove(w->out.p, w->out.p + off, w->out.len - off);
        w->out.len -= off;
    }
    w->sent = w->sent > off ? w->sent - off : 0;
    if (w->head)
        memmove(w->q, w->q + w->head, (w->n - w->head) * sizeof(*w->q));
    w->n -= w->head;
    w->head = 0;
    for (size_t i = 0; i < w->n; i++) {
        w->q[i].start -= off;
        w->q[i].end -= off;
    }
}

void pool_abandon(struct pool *pl, struct worker *w)
{
    if (!head(w))
        return;
    for (struct pend *p; (p = head(w));) {
        struct ticket *t = ticket_find(pl, p->ticket);
        if (t && t->state == T_RUNNING) {
            pl->running--;
            t->state = T_LOST;
        }
        free(p->name);
        free(p->serial);
        w->head++;
    }
    w->head = w->n = w->attached = w->held = 0;
    buf_reset(&w->out);
    w->sent = 0;
    pool_stop_worker(w);
}

/*
 * Appends job j's frame and pend to worker w. A frame that does not fit in
 * the stream's cap gets SP_ERR_FULL (the first one always fits: one message
 * is far below the cap), as does every later job of the worker.
 */
static void append_job(struct pool *pl, struct worker *w, struct pool_job *j, struct arena *a,
                       unsigned char *capped)
{
    size_t start = w->out.len;

    j->ticket = 0;
    if (*capped) {
        job_fail(j, a, SP_ERR_FULL, errors_strerror(SP_ERR_FULL));
        return;
    }
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        struct pend *q = realloc(w->q, cap * sizeof(*q));
        if (!q) {
            job_fail(j, a, SP_ERR_NOMEM, "out of memory");
            return;
        }
        w->q = q;
        w->cap = cap;
    }
    if (wire_begin(&w->out, WIRE_JOB) || wire_put_msg(&w->out, pl->v[j->analysis].name, j->msg) ||
        wire_end(&w->out, start)) {
        w->out.len = start;
        *capped = w->n > w->head;
        job_fail(j, a, *capped ? SP_ERR_FULL : SP_ERR_NOMEM,
                 *capped ? errors_strerror(SP_ERR_FULL) : "message too large for the worker");
        return;
    }
    w->q[w->n++] = (struct pend){.job = j,
                                 .ms = job_ms(pl, j),
                                 .start = start,
                                 .end = w->out.len,
                                 .handler = j->msg->handler};
    if (w->n - w->head == 1) {
        w->deadline = clock_mono_ms() + w->q[w->head].ms;
        w->started_us = clock_mono_us();
    }
    w->attached++;
}

/* Worker w's attached jobs leave the batch: they run on, their results kept
 * under tickets. Returns 0, or -1 (nothing changed) without memory. */
static int detach(struct pool *pl, struct worker *w)
{
    for (size_t i = w->head; i < w->n; i++) {
        struct pend *p = &w->q[i];
        if (p->ticket)
            continue;
        const char *serial = p->job->msg->serial;
        p->name = strdup(pl->v[p->job->analysis].name);
        p->serial = serial ? strdup(serial) : NULL;
        p->ticket = ticket_new(pl);
        if (!p->name || (serial && !p->serial) || !p->ticket)
            return -1; /* only by a lack of memory, with the earlier ones detached */
        p->job->ticket = p->ticket;
        ticket_find(pl, p->ticket)->handler = p->handler;
        p->job = NULL;
        w->attached--;
    }
    w->full = 0; /* their results no longer go to the batch's arena */
    return 0;
}

/* Whether the batch may leave more jobs running (the bounds of pool.h). */
static int may_detach(struct pool *pl, size_t more)
{
    if (pl->running + more <= POOL_DETACHED_MAX)
        return 1;
    int64_t now = clock_mono_ms();
    if (now - pl->refused_log >= 60000 || !pl->refused_log) {
        LOG_WARN("the batch waits for its slow analyses: %zu jobs run detached (at most %d)",
                 pl->running, POOL_DETACHED_MAX);
        pl->refused_log = now;
    }
    return 0;
}

/*
 * Whether worker w has jobs to run, with its process up: a worker whose
 * batch arena is full stops (it is replaced rather than left to run jobs
 * whose results cannot be kept), and a dead one is started again, the jobs
 * it lost sent to the new one.
 */
static int worker_ready(struct pool *pl, size_t wi, struct arena *a)
{
    struct worker *w = &pl->w[wi];
    char why[256];

    if (!head(w))
        return 0;
    if (w->held && (pl->kept + w->held <= POOL_KEPT_MAX || pl->keep_all)) {
        size_t n = w->held;
        w->held = 0;
        take_reply(pl, w, (long)n, a);
        if (!head(w))
            return 0;
    }
    if (w->held)
        return 0; /* nothing to wait for until results are claimed */
    if (w->full) {
        pool_stop_worker(w);
        while (head(w))
            head_fail(pl, w, a, SP_ERR_FULL, errors_strerror(SP_ERR_FULL));
        return 0;
    }
    if (!w->pid) {
        if (pool_spawn(pl, wi, why, sizeof why)) {
            while (head(w))
                head_fail(pl, w, a, SP_ERR_LUA, why);
            return 0;
        }
        w->sent = head(w)->start; /* resend what the dead one lost */
        head(w)->asked = 0;       /* its queries are asked again */
        w->deadline = clock_mono_ms() + head(w)->ms;
        w->started_us = clock_mono_us();
    }
    return 1;
}

/* How far the worker may be sent its jobs: only q[head] when it runs alone. */
static size_t send_limit(struct worker *w)
{
    return w->alone ? head(w)->end : w->out.len;
}

/* What poll() said about w's channels q[0] (jobs) and q[1] (queries). */
static void worker_events(struct pool *pl, struct worker *w, const struct pollfd *q,
                          struct arena *a)
{
    if (q[1].revents & (POLLIN | POLLHUP | POLLERR)) {
        worker_query(pl, w, a);
        return;
    }
    if (q[0].revents & POLLOUT) {
        ssize_t n = write(w->fd, w->out.p + w->sent, send_limit(w) - w->sent);
        if (n > 0)
            w->sent += (size_t)n;
    }
    if ((q[0].revents & (POLLIN | POLLHUP | POLLERR)) && take_replies(pl, w, a, 0) < 0) {
        worker_lost(pl, w, a);
        return;
    }
    if (head(w) && w->pid && clock_mono_ms() >= w->deadline)
        worker_timeout(pl, w, a);
}

/* The running batch's jobs still without a result. */
static size_t attached(const struct pool *pl)
{
    size_t k = 0;
    for (size_t i = 0; i < pl->nw; i++)
        k += pl->w[i].attached;
    return k;
}

/*
 * One round over every worker with jobs: one poll() over all of them, so
 * analyses held by different workers run on different cores. Waits at most
 * until `until` or the first job deadline.
 */
static void round_all(struct pool *pl, struct pollfd *q, struct arena *a, int64_t until)
{
    size_t nq = 0;
    for (size_t i = 0; i < pl->nw; i++) {
        struct worker *w = &pl->w[i];
        if (!worker_ready(pl, i, a))
            continue;
        short out = w->sent < send_limit(w) ? POLLOUT : 0;
        q[nq++] = (struct pollfd){.fd = w->fd, .events = POLLIN | out};
        q[nq++] = (struct pollfd){.fd = w->qfd, .events = POLLIN};
        if (w->deadline < until)
            until = w->deadline;
    }
    if (!nq)
        return;
    int64_t left = until - clock_mono_ms();
    int k = poll(q, (nfds_t)nq, left > 0 ? (int)left : 0);
    if (k < 0 && errno != EINTR)
        LOG_WARN("poll on the Lua workers: %s", strerror(errno));
    for (size_t i = 0, j = 0; k >= 0 && i < pl->nw && j < nq; i++)
        if (pl->w[i].fd == q[j].fd && head(&pl->w[i])) {
            worker_events(pl, &pl->w[i], &q[j], a);
            j += 2;
        }
}

/*
 * Frees the frame buffers an exceptional batch made large. Blocks that big
 * are mapped by malloc (`sealpipe run` fixes its mmap threshold, main.c), so
 * the memory goes back to the system.
 */
static void trim_buffers(struct pool *pl)
{
    for (size_t i = 0; i < pl->nw; i++) {
        struct worker *w = &pl->w[i];
        if (!head(w)) {
            buf_reset(&w->out);
            w->sent = 0;
        }
        struct buf *v[] = {&w->out, &w->in};
        for (size_t k = 0; k < 2; k++)
            if (v[k]->len == 0 && v[k]->cap > POOL_BUF_KEEP)
                buf_cleanup(v[k]);
    }
    if (pl->ctl.len == 0 && pl->ctl.cap > POOL_BUF_KEEP)
        buf_cleanup(&pl->ctl);
}

/*
 * A reply a worker has begun to write is read to its end now: between
 * batches nobody waits on the workers, and a large reply would otherwise
 * come in a socket buffer per batch while its worker stands still.
 */
static void finish_replies(struct pool *pl)
{
    for (size_t i = 0; i < pl->nw; i++) {
        struct worker *w = &pl->w[i];
        if (!head(w) || w->held || !w->pid || !w->in.len)
            continue;
        long f = pool_read_frame_on(w->fd, &w->in, clock_mono_ms() + LOST_GRACE_MS);
        if (f > 0)
            take_reply(pl, w, f, NULL);
        else if (f < 0)
            worker_lost(pl, w, NULL);
    }
}

void pool_pump(struct pool *pl)
{
    struct pollfd q[2 * POOL_WORKERS_MAX];

    round_all(pl, q, NULL, 0);
    finish_replies(pl);
    trim_buffers(pl);
}

/*
 * Worker w's attached jobs are detached once the job it runs has taken
 * detach_ms: a slow job, not a long queue of quick ones (those keep the
 * batch, which then costs no more than before). Returns when to look again.
 */
static int64_t detach_slow(struct pool *pl, struct worker *w, int detach_ms)
{
    if (!w->attached || !head(w) || head(w)->ticket)
        return INT64_MAX;
    int64_t at = w->started_us / 1000 + detach_ms;
    if (clock_mono_ms() < at)
        return at;
    if (may_detach(pl, w->attached))
        detach(pl, w);
    else
        pl->keep_all = 1; /* the batch waits as before, also for results held back */
    return INT64_MAX;
}

void pool_run(struct pool *pl, struct pool_job *jobs, size_t n, struct arena *a, int detach_ms)
{
    struct pollfd q[2 * POOL_WORKERS_MAX];
    unsigned char busy[POOL_WORKERS_MAX], capped[POOL_WORKERS_MAX] = {0};

    if (!n)
        return;
    for (size_t i = 0; i < pl->nw; i++) {
        struct worker *w = &pl->w[i];
        busy[i] = head(w) != NULL; /* still running jobs a batch left */
        w->full = 0;
        compact(w);
    }
    for (size_t i = 0; i < n; i++) {
        size_t w = pl->v[jobs[i].analysis].worker;
        append_job(pl, &pl->w[w], &jobs[i], a, &capped[w]);
    }
    /* A worker busy with detached jobs runs these after them: they are
     * detached at once rather than hold the batch. */
    for (size_t i = 0; i < pl->nw && detach_ms >= 0; i++) {
        if (!busy[i] || !pl->w[i].attached)
            continue;
        if (may_detach(pl, pl->w[i].attached))
            detach(pl, &pl->w[i]);
        else
            pl->keep_all = 1;
    }
    while (attached(pl)) {
        int64_t until = INT64_MAX;
        for (size_t i = 0; i < pl->nw && detach_ms >= 0; i++) {
            int64_t at = detach_slow(pl, &pl->w[i], detach_ms);
            until = at < until ? at : until;
        }
        if (attached(pl))
            round_all(pl, q, a, until);
    }
    pl->keep_all = 0;
    trim_buffers(pl);
}
