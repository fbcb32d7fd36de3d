/*
 * pool.c - the daemon's side of the Lua workers (see pool.h, wire.h).
 */
#include "pool.h"
#include "base/clock.h"
#include "base/errors.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "base/log.h"
#include "base/metrics.h"
#include "base/sp_limits.h"
#include "sealpipe.h"
#include "wire.h"

/* Memory for one query() answer: HOST_QUERY_MAX records of the largest
 * kind (value, metadata, names) with room to spare. */
#define POOL_QUERY_ARENA (HOST_QUERY_MAX * 2 * (SP_LIMIT_VALUE + SP_LIMIT_METADATA + 1024))

/* Bytes a frame buffer keeps between batches; a larger one (the replies of
 * a batch of big publishes reach tens of MiB) is given back after the run. */
#define POOL_BUF_KEEP (1024 * 1024)

struct analysis {
    char *name;
    char *src;
    size_t len;
    char *env; /* JSON object text, or NULL */
    char **topics;
    size_t ntopics;
    int broken;     /* killed a fresh worker while loading: left out of it */
    int timeout_ms; /* its own wall-clock budget, 0: the pool's */
};

struct pool {
    struct pool_opts o;
    struct analysis *v; /* sorted by name */
    size_t n;
    pid_t pid; /* 0: no worker */
    int fd;    /* jobs and their replies */
    int qfd;   /* query() calls and their answers */
    host_query_fn query;
    void *query_ctx;
    struct buf out, in;  /* a batch's job frames; replies being read */
    struct buf ctl;      /* load and unload frames (also sent in mid-batch) */
    struct arena qarena; /* one query() answer at a time */
    unsigned long spawns;
};

static void analysis_free(struct analysis *a)
{
    free(a->name);
    free(a->src);
    if (a->env) /* may hold secrets */
        sodium_memzero(a->env, strlen(a->env));
    free(a->env);
    for (size_t i = 0; i < a->ntopics; i++)
        free(a->topics[i]);
    free(a->topics);
}

/* Ends the worker; returns its wait status (-1 if there was none). */
static int stop_worker(struct pool *pl)
{
    int status = -1;
    if (pl->pid > 0) {
        kill(pl->pid, SIGKILL);
        while (waitpid(pl->pid, &status, 0) < 0 && errno == EINTR)
            ;
        close(pl->fd);
        close(pl->qfd);
    }
    pl->pid = 0;
    pl->fd = pl->qfd = -1;
    buf_reset(&pl->in);
    return status;
}

static const char *describe(int status, char *b, size_t n)
{
    if (status >= 0 && WIFSIGNALED(status))
        snprintf(b, n, "the worker was killed by signal %d%s", WTERMSIG(status),
                 WTERMSIG(status) == SIGSYS ? " (a forbidden system call)" : "");
    else if (status >= 0 && WIFEXITED(status))
        snprintf(b, n, "the worker exited with status %d", WEXITSTATUS(status));
    else
        snprintf(b, n, "the worker is gone");
    return b;
}

/* Writes p[0..n) to the worker's (non-blocking) fd, waiting at most until deadline. */
static int send_all(int fd, const char *p, size_t n, int64_t deadline)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return SP_ERR_IO;
        struct pollfd q = {.fd = fd, .events = POLLOUT};
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0 || poll(&q, 1, (int)left) == 0)
            return SP_ERR_TIMEOUT;
    }
    return SP_OK;
}

/*
 * Reads from the worker's (non-blocking) fd until b holds a whole frame;
 * returns its length (with the 4-byte header), 0 on timeout, -1 when the
 * worker is gone, or -2 when it sent a frame too large.
 */
static long read_frame_on(int fd, struct buf *b, int64_t deadline)
{
    char chunk[64 * 1024];
    for (;;) {
        if (b->len >= 4) {
            const uint8_t *h = (const uint8_t *)b->p;
            uint32_t n =
                (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
            if (n == 0 || n > WIRE_MAX_FRAME)
                return -2;
            if (b->len >= 4 + (size_t)n)
                return 4 + (long)n;
        }
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r > 0) {
            if (buf_append(b, chunk, (size_t)r))
                return -2;
            continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EINTR))
            return -1;
        struct pollfd q = {.fd = fd, .events = POLLIN};
        int64_t left = deadline - clock_mono_ms();
        if (left <= 0)
            return 0;
        if (poll(&q, 1, (int)left) == 0)
            return 0;
    }
}

/* A reply on the job channel, into pl->in. */
static long read_frame(struct pool *pl, int64_t deadline)
{
    return read_frame_on(pl->fd, &pl->in, deadline);
}

static void consume(struct buf *b, size_t n)
{
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
    b->p[b->len] = '\0';
}

/* Sends one LOAD and reads its reply into *a's topics. */
static int load_in_worker(struct pool *pl, struct analysis *a, char *err, size_t errlen)
{
    struct arena ar;
    int rc;

    buf_reset(&pl->ctl);
    if (wire_begin(&pl->ctl, WIRE_LOAD) || wire_str(&pl->ctl, a->name) ||
        wire_bytes(&pl->ctl, a->src, a->len) || wire_str(&pl->ctl, a->env) ||
        wire_end(&pl->ctl, 0)) {
        snprintf(err, errlen, "script too large to send");
        return SP_ERR_TOOLARGE;
    }
    int64_t deadline = clock_mono_ms() + pl->o.wall_ms;
    rc = send_all(pl->fd, pl->ctl.p, pl->ctl.len, deadline);
    long n = rc ? -1 : read_frame(pl, deadline);
    if (n <= 0) {
        char why[128];
        int status = stop_worker(pl);
        if (n == 0) {
            snprintf(err, errlen, "loading took longer than %d ms", pl->o.wall_ms);
            return SP_ERR_TIMEOUT;
        }
        snprintf(err, errlen, "loading failed: %s", describe(status, why, sizeof why));
        return SP_ERR_LUA;
    }
    arena_init(&ar, 1024 * 1024);
    struct wire_in in = {.p = (const uint8_t *)pl->in.p + 4, .len = (size_t)n - 4, .a = &ar};
    unsigned type = wire_get_u8(&in);
    rc = (int)(int32_t)wire_get_u32(&in);
    const char *msg = wire_get_str(&in, NULL);
    uint32_t nt = wire_get_u32(&in);
    if (in.bad || type != WIRE_LOADED || nt > SP_LIMIT_TOPICS_PER_ANALYSIS) {
        rc = SP_ERR_LUA;
        snprintf(err, errlen, "the worker sent a malformed reply");
    } else if (rc) {
        snprintf(err, errlen, "%s", msg ? msg : errors_strerror(rc));
    } else {
        char **t = calloc(nt ? nt : 1, sizeof(*t));
        for (uint32_t i = 0; t && i < nt; i++) {
            const char *s = wire_get_topic(&in);
            t[i] = s ? strdup(s) : NULL;
            if (!t[i])
                in.bad = 1;
        }
        if (!t || in.bad) {
            for (uint32_t i = 0; t && i < nt; i++)
                free(t[i]);
            free(t);
            rc = SP_ERR_NOMEM;
            snprintf(err, errlen, "malformed topics in the worker's reply");
        } else {
            for (size_t i = 0; i < a->ntopics; i++)
                free(a->topics[i]);
            free(a->topics);
            a->topics = t;
            a->ntopics = nt;
            int ms = (int)(int32_t)wire_get_u32(&in);
            a->timeout_ms = !in.bad && ms > 0 && ms < pl->o.wall_ms ? ms : 0;
        }
    }
    consume(&pl->in, (size_t)n);
    arena_cleanup(&ar);
    return rc;
}

/* Starts one worker process: this executable again, as `sealpipe __worker`,
 * so that it inherits no memory (keys, the registry) from the daemon. */
static int start_process(struct pool *pl, char *err, size_t errlen)
{
    int sv[2], qv[2];
    char a[8][32];
    const struct worker_opts *w = &pl->o.worker;

    snprintf(a[0], sizeof a[0], "%llu", (unsigned long long)w->limits.instructions);
    snprintf(a[1], sizeof a[1], "%zu", w->limits.memory);
    snprintf(a[2], sizeof a[2], "%zu", w->limits.script_size);
    snprintf(a[3], sizeof a[3], "%zu", w->limits.max_records);
    snprintf(a[4], sizeof a[4], "%zu", w->limits.max_publishes);
    snprintf(a[5], sizeof a[5], "%zu", w->address_space);
    snprintf(a[6], sizeof a[6], "%d", w->cpu_seconds);
    snprintf(a[7], sizeof a[7], "%zu", w->limits.max_publish_bytes);
    char *argv[] = {"sealpipe", "__worker", a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], NULL};

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        snprintf(err, errlen, "socketpair: %s", strerror(errno));
        return SP_ERR_IO;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, qv) < 0) {
        snprintf(err, errlen, "socketpair: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return SP_ERR_IO;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        close(qv[0]);
        close(qv[1]);
        return SP_ERR_IO;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls until exec. dup2 clears CLOEXEC. */
        if (dup2(sv[1], WORKER_SOCKET_FD) < 0 || dup2(qv[1], WORKER_QUERY_FD) < 0)
            _exit(127);
        signal(SIGINT, SIG_IGN); /* the daemon decides when workers stop */
        execv(pl->o.exe, argv);
        _exit(127);
    }
    close(sv[1]);
    close(qv[1]);
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
    fcntl(qv[0], F_SETFL, fcntl(qv[0], F_GETFL) | O_NONBLOCK);
    pl->pid = pid;
    pl->fd = sv[0];
    pl->qfd = qv[0];
    pl->spawns++;
    if (pl->spawns > 1)
        metrics_inc(METRIC_WORKER_RESTARTS);
    buf_reset(&pl->in);
    return SP_OK;
}

/* Starts a worker and loads every analysis into it. An analysis whose
 * loading kills a fresh worker is left out (its messages then fail). */
static int spawn(struct pool *pl, char *err, size_t errlen)
{
    for (size_t attempt = 0; attempt <= pl->n; attempt++) {
        int rc = start_process(pl, err, errlen);
        if (rc)
            return rc;
        size_t i;
        for (i = 0; i < pl->n; i++) {
            char why[512];
            if (pl->v[i].broken || load_in_worker(pl, &pl->v[i], why, sizeof why) == SP_OK)
                continue;
            LOG_ERROR("analysis %s does not load in a new worker: %s", pl->v[i].name, why);
            if (!pl->pid) {
                pl->v[i].broken = 1;
                break;
            }
        }
        if (i == pl->n)
            return SP_OK;
    }
    snprintf(err, errlen, "the Lua worker keeps dying while loading analyses");
    return SP_ERR_LUA;
}

int pool_new(const struct pool_opts *o, struct pool **out, char *err, size_t errlen)
{
    struct pool *pl = calloc(1, sizeof(*pl));
    if (!pl)
        return SP_ERR_NOMEM;
    pl->o = *o;
    pl->fd = pl->qfd = -1;
    buf_init(&pl->out, (size_t)WIRE_MAX_FRAME * 4);
    buf_init(&pl->ctl, WIRE_MAX_FRAME);
    buf_init(&pl->in, WIRE_MAX_FRAME + 64 * 1024);
    arena_init(&pl->qarena, POOL_QUERY_ARENA);
    /* A worker that dies must not kill the daemon with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    int rc = spawn(pl, err, errlen);
    if (rc) {
        pool_free(pl);
        return rc;
    }
    *out = pl;
    return SP_OK;
}

void pool_free(struct pool *pl)
{
    if (!pl)
        return;
    stop_worker(pl);
    for (size_t i = 0; i < pl->n; i++)
        analysis_free(&pl->v[i]);
    free(pl->v);
    buf_cleanup(&pl->out);
    buf_cleanup(&pl->ctl);
    buf_cleanup(&pl->in);
    arena_cleanup(&pl->qarena);
    free(pl);
}

int pool_find(const struct pool *pl, const char *name)
{
    size_t lo = 0, hi = pl->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(pl->v[mid].name, name);
        if (c == 0)
            return (int)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

int pool_load(struct pool *pl, const char *name, const char *src, size_t len, const char *env_json,
              char *err, size_t errlen)
{
    struct analysis a = {0};
    int rc;

    if (!pl->pid && (rc = spawn(pl, err, errlen)))
        return rc;
    a.name = strdup(name);
    a.src = malloc(len + 1);
    a.env = env_json ? strdup(env_json) : NULL;
    if (!a.name || !a.src || (env_json && !a.env)) {
        analysis_free(&a);
        return SP_ERR_NOMEM;
    }
    memcpy(a.src, src, len);
    a.src[len] = '\0';
    a.len = len;
    rc = load_in_worker(pl, &a, err, errlen);
    if (rc) {
        analysis_free(&a);
        /* A load that killed the worker took the others' states with it. */
        if (!pl->pid) {
            char why[256];
            if (spawn(pl, why, sizeof why))
                LOG_ERROR("cannot restart the Lua worker: %s", why);
        }
        return rc;
    }
    int i = pool_find(pl, name);
    if (i >= 0) {
        analysis_free(&pl->v[i]);
        pl->v[i] = a;
        return SP_OK;
    }
    struct analysis *v = realloc(pl->v, (pl->n + 1) * sizeof(*v));
    if (!v) {
        analysis_free(&a);
        return SP_ERR_NOMEM;
    }
    pl->v = v;
    size_t at = 0;
    while (at < pl->n && strcmp(pl->v[at].name, name) < 0)
        at++;
    memmove(&pl->v[at + 1], &pl->v[at], (pl->n - at) * sizeof(*v));
    pl->v[at] = a;
    pl->n++;
    return SP_OK;
}

int pool_unload(struct pool *pl, const char *name)
{
    int i = pool_find(pl, name);
    if (i < 0)
        return SP_ERR_NOTFOUND;
    analysis_free(&pl->v[i]);
    memmove(&pl->v[i], &pl->v[i + 1], (pl->n - (size_t)i - 1) * sizeof(*pl->v));
    pl->n--;
    /* The worker forgets it too; if it cannot be told, a new one is started
     * (without it) at the next use. */
    buf_reset(&pl->ctl);
    int64_t deadline = clock_mono_ms() + pl->o.wall_ms;
    long n = -1;
    if (pl->pid && !wire_begin(&pl->ctl, WIRE_UNLOAD) && !wire_str(&pl->ctl, name) &&
        !wire_end(&pl->ctl, 0) && !send_all(pl->fd, pl->ctl.p, pl->ctl.len, deadline))
        n = read_frame(pl, deadline);
    if (n > 0)
        consume(&pl->in, (size_t)n);
    else
        stop_worker(pl);
    return SP_OK;
}

size_t pool_count(const struct pool *pl)
{
    return pl->n;
}

const char *pool_name(const struct pool *pl, size_t i)
{
    return i < pl->n ? pl->v[i].name : NULL;
}

size_t pool_topic_count(const struct pool *pl, size_t i)
{
    return i < pl->n ? pl->v[i].ntopics : 0;
}

const char *pool_topic(const struct pool *pl, size_t i, size_t j)
{
    return i < pl->n && j < pl->v[i].ntopics ? pl->v[i].topics[j] : NULL;
}

void pool_set_query(struct pool *pl, host_query_fn fn, void *ctx)
{
    pl->query = fn;
    pl->query_ctx = ctx;
}

/*
 * Answers one query() the worker sent on its query channel. The worker waits
 * for the answer (blocking), so this reads the whole request and writes the
 * whole answer; the job's deadline keeps running meanwhile. The answer is
 * built in the pool's query arena, emptied once it is sent: a batch's
 * queries do not add up in the batch's memory. Returns 0, 1 when the
 * deadline passed first, or -1 when the worker is gone.
 */
static int answer_query(struct pool *pl, int64_t deadline)
{
    struct arena *a = &pl->qarena;
    struct buf req;
    char err[256] = "";
    int rc = -1;

    buf_init(&req, WIRE_MAX_FRAME);
    long n = read_frame_on(pl->qfd, &req, deadline);
    if (n <= 0) {
        rc = n == 0 ? 1 : -1;
        goto out;
    }
    struct wire_in in = {.p = (const uint8_t *)req.p + 5, .len = (size_t)n - 5, .a = a};
    unsigned type = (uint8_t)req.p[4];
    struct host_query q = {0};
    struct record_vec out = {0};
    int qrc;
    if (type != WIRE_QUERY || wire_get_query(&in, &q)) {
        qrc = SP_ERR_INVAL;
        snprintf(err, sizeof err, "malformed query");
    } else if (!pl->query) {
        qrc = SP_ERR_INVAL;
        snprintf(err, sizeof err, "query() is not available here");
    } else {
        qrc = pl->query(pl->query_ctx, &q, a, &out, err, sizeof err);
    }
    buf_reset(&pl->ctl);
    if (wire_begin(&pl->ctl, WIRE_ANSWER) || wire_u32(&pl->ctl, (uint32_t)qrc) ||
        wire_str(&pl->ctl, qrc ? err : NULL) ||
        wire_put_records(&pl->ctl, qrc ? NULL : out.v, qrc ? 0 : out.n) || wire_end(&pl->ctl, 0))
        goto out;
    /* The answer goes on the query channel: the job stream stays in order. */
    int sent = send_all(pl->qfd, pl->ctl.p, pl->ctl.len, deadline);
    rc = sent == SP_ERR_TIMEOUT ? 1 : sent ? -1 : 0;
out:
    buf_cleanup(&req);
    arena_reset(a);
    return rc;
}

unsigned long pool_spawns(const struct pool *pl)
{
    return pl->spawns;
}

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
 * Reads job j's reply from frame (header included). When a cannot hold it
 * (*full set, now or by an earlier reply), the job gets SP_ERR_FULL: nothing
 * is wrong with the analysis, its message waits for a batch with room.
 */
static void take_reply(struct pool *pl, struct pool_job *j, long n, struct arena *a, int *full)
{
    char why[512];
    struct wire_in in = {.p = (const uint8_t *)pl->in.p + 4, .len = (size_t)n - 4, .a = a};
    unsigned type = wire_get_u8(&in);
    int rc = (int)(int32_t)wire_get_u32(&in);
    const char *msg = *full ? NULL : wire_get_str(&in, NULL);
    int bad = 0;

    memset(&j->out, 0, sizeof(j->out));
    if (!*full && !in.bad && type == WIRE_DONE)
        bad = wire_get_result(&in, pl->o.worker.limits.max_records,
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
    consume(&pl->in, (size_t)n);
}

/* How long a worker that looks dead gets to deliver the replies it wrote. */
#define LOST_GRACE_MS 1000

/* One pool_run. The worker runs jobs in order, one reply each, so the job
 * that is running is always the oldest one without a reply: jobs[done]. */
struct run {
    struct pool *pl;
    struct pool_job *jobs;
    size_t n;
    struct arena *a;
    size_t done;           /* jobs with a result */
    size_t sent;           /* bytes of pl->out the current worker was given */
    size_t *end;           /* end of job i's frame in pl->out */
    unsigned char *deaths; /* workers that died while job i was running */
    int alone;             /* jobs[done] runs alone in a fresh worker */
    int full;              /* a is full: every later job gets SP_ERR_FULL */
    int broke;             /* the worker sent a frame over the size limit */
    int64_t deadline;      /* for jobs[done] */
    int64_t started_us;    /* jobs[done]'s clock (metrics): the last reply, or the start */
};

static size_t frame_start(const struct run *r, size_t i)
{
    return i ? r->end[i - 1] : 0;
}

/* jobs[done] has its result: the next one's clock starts. */
static void next_job(struct run *r)
{
    int64_t now_us = clock_mono_us();

    metrics_observe_labels(METRIC_ANALYSIS, pool_name(r->pl, r->jobs[r->done].analysis), NULL,
                           (uint64_t)(now_us - r->started_us));
    r->started_us = now_us;
    r->done++;
    r->alone = 0;
    if (r->done < r->n)
        r->deadline = clock_mono_ms() + job_ms(r->pl, &r->jobs[r->done]);
}

static void fail_rest(struct run *r, int rc, const char *msg)
{
    for (; r->done < r->n; r->done++)
        job_fail(&r->jobs[r->done], r->a, rc, msg);
}

/* Takes the replies that arrive until `until` (0: those already there).
 * Returns -1 when the worker is gone or broke the protocol, else 0. */
static int take_replies(struct run *r, int64_t until)
{
    long f = 0;
    while (r->done < r->n && (f = read_frame(r->pl, until)) > 0) {
        take_reply(r->pl, &r->jobs[r->done], f, r->a, &r->full);
        next_job(r);
    }
    if (f == -2)
        r->broke = 1;
    return f < 0 ? -1 : 0;
}

/*
 * The worker died (or broke the protocol, or stopped answering a query).
 * Whatever told us first (the query channel's EOF often does), the replies
 * it wrote before dying are still in the socket: they are taken first, so
 * the job blamed is the one that was running. A death can also come from
 * the process as a whole (a limit reached over many jobs), so that job is
 * run again alone in a fresh worker; only a job that kills a worker twice
 * fails, with SP_ERR_CRASH. No other job of the batch is failed or run twice.
 */
static void worker_lost(struct run *r)
{
    struct pool *pl = r->pl;
    char why[256];

    take_replies(r, clock_mono_ms() + LOST_GRACE_MS);
    int status = stop_worker(pl);
    if (r->done == r->n)
        return;
    if (r->broke)
        snprintf(why, sizeof why, "the worker sent a frame over %u bytes", WIRE_MAX_FRAME);
    else
        describe(status, why, sizeof why);
    r->broke = 0;
    struct pool_job *j = &r->jobs[r->done];
    const char *name = pl->v[j->analysis].name;
    const char *serial = j->msg->serial ? j->msg->serial : "-";
    if (++r->deaths[r->done] < 2) {
        LOG_WARN("analysis %s device=%s: %s while running this message; running it again, alone, "
                 "in a new worker",
                 name, serial, why);
        r->alone = 1;
        return;
    }
    char m[400];
    snprintf(m, sizeof m,
             "the worker died running this message, and again running it alone in a new worker "
             "(%s); it is not run again",
             why);
    job_fail(j, r->a, SP_ERR_CRASH, m);
    next_job(r);
}

/* jobs[done] is out of wall-clock time: its worker is killed. */
static void expire(struct run *r)
{
    char why[128];

    stop_worker(r->pl);
    struct pool_job *j = &r->jobs[r->done];
    snprintf(why, sizeof why, "wall-clock limit (%d ms) exceeded; the worker was killed",
             job_ms(r->pl, j));
    job_fail(j, r->a, SP_ERR_TIMEOUT, why);
    next_job(r);
}

/* The deadline of jobs[done] passed with no reply seen. */
static void worker_timeout(struct run *r)
{
    size_t before = r->done;

    if (take_replies(r, 0) < 0)
        worker_lost(r);
    else if (r->done == before)
        expire(r);
    /* else the reply came in time after all */
}

/*
 * The worker asks a query(). Replies already written are taken first, so the
 * asking job is jobs[done] and its deadline applies. An exchange that runs
 * past the deadline is that job's timeout; a broken one, a lost worker.
 */
static void worker_query(struct run *r)
{
    if (take_replies(r, 0) < 0) {
        worker_lost(r);
        return;
    }
    if (r->done == r->n)
        return; /* nothing is running: not a query of this batch */
    int rc = answer_query(r->pl, r->deadline);
    if (rc < 0)
        worker_lost(r);
    else if (rc > 0)
        expire(r);
}

/* Encodes the jobs into pl->out. What does not fit gets SP_ERR_FULL (the
 * first job always fits: one message is far below the stream's cap). */
static size_t encode_jobs(struct run *r)
{
    struct pool *pl = r->pl;

    buf_reset(&pl->out);
    for (size_t i = 0; i < r->n; i++) {
        size_t start = pl->out.len;
        if (wire_begin(&pl->out, WIRE_JOB) ||
            wire_put_msg(&pl->out, pl->v[r->jobs[i].analysis].name, r->jobs[i].msg) ||
            wire_end(&pl->out, start)) {
            pl->out.len = start;
            for (size_t k = i; k < r->n; k++)
                job_fail(&r->jobs[k], r->a, i ? SP_ERR_FULL : SP_ERR_NOMEM,
                         i ? errors_strerror(SP_ERR_FULL) : "message too large for the worker");
            return i;
        }
        r->end[i] = pl->out.len;
    }
    return r->n;
}

/*
 * Frees the frame buffers an exceptional batch made large. Blocks that big
 * are mapped by malloc (`sealpipe run` fixes its mmap threshold, main.c), so
 * the memory goes back to the system.
 */
static void trim_buffers(struct pool *pl)
{
    struct buf *v[] = {&pl->out, &pl->in, &pl->ctl};

    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (v[i]->len == 0 && v[i]->cap > POOL_BUF_KEEP)
            buf_cleanup(v[i]);
}

void pool_run(struct pool *pl, struct pool_job *jobs, size_t n, struct arena *a)
{
    struct run r = {.pl = pl, .jobs = jobs, .n = n, .a = a};
    char why[256];

    if (!n)
        return;
    r.end = malloc(n * (sizeof(*r.end) + 1));
    if (!r.end) {
        fail_rest(&r, SP_ERR_NOMEM, "out of memory");
        return;
    }
    r.deaths = (unsigned char *)(r.end + n);
    memset(r.deaths, 0, n);
    r.n = encode_jobs(&r);
    r.deadline = clock_mono_ms() + job_ms(pl, &jobs[0]);
    r.started_us = clock_mono_us();
    while (r.done < r.n) {
        if (r.full) {
            /* None of the rest can be kept in this batch: rather than let
             * the worker run them for nothing, it is replaced (a new one is
             * started at the next run). */
            if (pl->pid)
                stop_worker(pl);
            fail_rest(&r, SP_ERR_FULL, errors_strerror(SP_ERR_FULL));
            break;
        }
        if (!pl->pid) {
            if (spawn(pl, why, sizeof why)) {
                fail_rest(&r, SP_ERR_LUA, why);
                break;
            }
            r.sent = frame_start(&r, r.done); /* resend what the dead one lost */
            r.deadline = clock_mono_ms() + job_ms(pl, &jobs[r.done]);
            r.started_us = clock_mono_us();
        }
        size_t limit = r.alone ? r.end[r.done] : pl->out.len;
        struct pollfd q[2] = {{.fd = pl->fd, .events = POLLIN}, {.fd = pl->qfd, .events = POLLIN}};
        if (r.sent < limit)
            q[0].events |= POLLOUT;
        int64_t left = r.deadline - clock_mono_ms();
        int k = left > 0 ? poll(q, 2, (int)left) : 0;
        if (k < 0 && errno == EINTR)
            continue;
        if (k == 0) {
            worker_timeout(&r);
            continue;
        }
        if (k < 0) {
            worker_lost(&r);
            continue;
        }
        if (q[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            worker_query(&r);
            continue;
        }
        if (q[0].revents & POLLOUT) {
            ssize_t w = write(pl->fd, pl->out.p + r.sent, limit - r.sent);
            if (w > 0)
                r.sent += (size_t)w;
        }
        if ((q[0].revents & (POLLIN | POLLHUP | POLLERR)) && take_replies(&r, 0) < 0)
            worker_lost(&r);
    }
    free(r.end);
    buf_reset(&pl->out);
    trim_buffers(pl);
}
