/*
 * pool.c - the daemon's side of the Lua workers (see pool.h, wire.h).
 */
#include "pool.h"
#include "base/json.h"
#include "base/schedule.h"
#include "base/when.h"
#include "pool_internal.h"
#include "base/clock.h"
#include "base/errors.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
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
#include "base/route.h"
#include "base/sp_limits.h"
#include "sealpipe.h"
#include "wire.h"

/* Memory for one query() answer: HOST_QUERY_MAX records of the largest
 * kind (value, metadata, names) with room to spare. */
#define POOL_QUERY_ARENA (HOST_QUERY_MAX * 2 * (SP_LIMIT_VALUE + SP_LIMIT_METADATA + 1024))

static void free_list(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

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
    free(a->schedule);
    free(a->when);
    free(a->scope);
    free_list(a->webhooks, a->nwebhooks);
}

/* Ends worker w; returns its wait status (-1 if there was none). */
int pool_stop_worker(struct worker *w)
{
    int status = -1;
    if (w->pid > 0) {
        kill(w->pid, SIGKILL);
        while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR)
            ;
        close(w->fd);
        close(w->qfd);
    }
    w->pid = 0;
    w->fd = w->qfd = -1;
    buf_reset(&w->in);
    return status;
}

const char *pool_describe(int status, char *b, size_t n)
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
long pool_read_frame_on(int fd, struct buf *b, int64_t deadline)
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

/* A reply on w's job channel, into w->in. */
static long read_frame(struct worker *w, int64_t deadline)
{
    return pool_read_frame_on(w->fd, &w->in, deadline);
}

void pool_consume(struct buf *b, size_t n)
{
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
    b->p[b->len] = '\0';
}

/* 1 when a declaration's handlers, schedule and events hold together, as
 * host_decl.c makes them. */
static int triggers_ok(unsigned handlers, const char *spec, unsigned events, int64_t offline)
{
    struct schedule sc;
    char why[160];

    if (!handlers || handlers >= HOST_BIT(HOST_HANDLERS) || events >= HOST_BIT(HOST_EVENTS))
        return 0;
    if (spec && (strlen(spec) > HOST_SCHEDULE_MAX || schedule_parse(spec, &sc, why, sizeof why)))
        return 0;
    if (!spec != !(handlers & HOST_BIT(HOST_TICK)) || !events != !(handlers & HOST_BIT(HOST_EVENT)))
        return 0;
    if (events & HOST_BIT(HOST_EV_OFFLINE))
        return offline >= HOST_OFFLINE_MIN_MS && offline <= HOST_OFFLINE_MAX_MS;
    return offline == 0;
}

/* A scope as host_decl.c makes it: with on or when, a JSON object of 1 to
 * HOST_SCOPE_TAGS strings; or none. */
static int scope_ok(const char *scope, unsigned events, const char *when)
{
    struct arena ar;
    struct json *j = NULL;
    int ok = 1;

    if (!scope)
        return 1;
    arena_init(&ar, 64 * 1024);
    if ((!events && !when) || json_parse(&ar, scope, strlen(scope), &j, NULL, 0) ||
        j->type != JSON_OBJECT || j->len == 0 || j->len > HOST_SCOPE_TAGS)
        ok = 0;
    for (const struct json *m = ok ? j->child : NULL; m; m = m->next)
        ok = ok && m->type == JSON_STRING;
    arena_cleanup(&ar);
    return ok;
}

/* The handlers, schedule and events of a LOAD's reply into *a, checked
 * again: the worker runs user code. 0, or SP_ERR_LUA with err set. */
static int read_triggers(struct wire_in *in, struct analysis *a, char *err, size_t errlen)
{
    unsigned handlers = wire_get_u8(in);
    const char *spec = wire_get_str(in, NULL);
    unsigned events = wire_get_u8(in);
    int64_t offline = wire_get_i64(in);

    const char *when = wire_get_str(in, NULL), *scope = wire_get_str(in, NULL);
    struct when *w = NULL;
    char *copy = NULL, *tags = NULL;

    if (in->bad || !triggers_ok(handlers, spec, events, offline) ||
        !when != !(handlers & HOST_BIT(HOST_CONDITION)) || !scope_ok(scope, events, when)) {
        snprintf(err, errlen, "the worker sent a malformed reply (handlers, schedule, events)");
        return SP_ERR_LUA;
    }
    if ((spec && !(copy = strdup(spec))) || (when && !(w = malloc(sizeof(*w)))) ||
        (scope && !(tags = strdup(scope)))) {
        free(copy);
        free(w);
        return SP_ERR_NOMEM;
    }
    if (w && when_parse(when, w, err, errlen)) {
        free(copy);
        free(w);
        free(tags);
        return SP_ERR_LUA;
    }
    free(a->schedule);
    free(a->when);
    free(a->scope);
    a->schedule = copy;
    a->when = w;
    a->scope = tags;
    a->handlers = handlers;
    a->events = events;
    a->offline_after_ms = offline;
    return SP_OK;
}

/* The `webhooks` list of a LOAD's reply (after the schedule) into *a,
 * each entry checked again. 0, or SP_ERR_LUA / SP_ERR_NOMEM with err set. */
static int read_webhook_hosts(struct wire_in *in, struct analysis *a, char *err, size_t errlen)
{
    uint32_t n = wire_get_u32(in);
    char **v = NULL;

    if (!in->bad && n > HOST_WEBHOOK_HOSTS_MAX)
        in->bad = 1;
    if (!in->bad && n && !(v = calloc(n, sizeof(*v)))) {
        snprintf(err, errlen, "out of memory");
        return SP_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < n && !in->bad; i++) {
        const char *e = wire_get_webhook_entry(in);
        if (e && !(v[i] = strdup(e))) {
            free_list(v, n);
            snprintf(err, errlen, "out of memory");
            return SP_ERR_NOMEM;
        }
    }
    if (in->bad) {
        free_list(v, n);
        snprintf(err, errlen, "the worker sent a malformed reply (webhooks)");
        return SP_ERR_LUA;
    }
    free_list(a->webhooks, a->nwebhooks);
    a->webhooks = v;
    a->nwebhooks = n;
    return SP_OK;
}

/* Sends one LOAD to a's worker and reads its reply into *a's topics. */
static int load_in_worker(struct pool *pl, struct analysis *a, char *err, size_t errlen)
{
    struct worker *w = &pl->w[a->worker];
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
    rc = send_all(w->fd, pl->ctl.p, pl->ctl.len, deadline);
    long n = rc ? -1 : read_frame(w, deadline);
    if (n <= 0) {
        char why[128];
        int status = pool_stop_worker(w);
        if (n == 0) {
            snprintf(err, errlen, "loading took longer than %d ms", pl->o.wall_ms);
            return SP_ERR_TIMEOUT;
        }
        snprintf(err, errlen, "loading failed: %s", pool_describe(status, why, sizeof why));
        return SP_ERR_LUA;
    }
    arena_init(&ar, 1024 * 1024);
    struct wire_in in = {.p = (const uint8_t *)w->in.p + 4, .len = (size_t)n - 4, .a = &ar};
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
            rc = read_triggers(&in, a, err, errlen);
            if (rc == SP_OK)
                rc = read_webhook_hosts(&in, a, err, errlen);
        }
    }
    pool_consume(&w->in, (size_t)n);
    arena_cleanup(&ar);
    return rc;
}

/* Starts one worker process: this executable again, as `sealpipe __worker`,
 * so that it inherits no memory (keys, the registry) from the daemon. */
static int start_process(struct pool *pl, struct worker *wk, char *err, size_t errlen)
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
    wk->pid = pid;
    wk->fd = sv[0];
    wk->qfd = qv[0];
    pl->spawns++;
    if (wk->started)
        metrics_inc(METRIC_WORKER_RESTARTS);
    wk->started = 1;
    buf_reset(&wk->in);
    return SP_OK;
}

/* Starts worker w and loads its analyses into it. An analysis whose
 * loading kills a fresh worker is left out (its messages then fail). */
int pool_spawn(struct pool *pl, size_t w, char *err, size_t errlen)
{
    struct worker *wk = &pl->w[w];

    for (size_t attempt = 0; attempt <= pl->n; attempt++) {
        int rc = start_process(pl, wk, err, errlen);
        if (rc)
            return rc;
        size_t i;
        for (i = 0; i < pl->n; i++) {
            char why[512];
            struct analysis *a = &pl->v[i];
            if (a->worker != w || a->broken || load_in_worker(pl, a, why, sizeof why) == SP_OK)
                continue;
            LOG_ERROR("analysis %s does not load in a new worker: %s", a->name, why);
            if (!wk->pid) {
                a->broken = 1;
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
    pl->nw = o->workers < 1                  ? 1
             : o->workers > POOL_WORKERS_MAX ? POOL_WORKERS_MAX
                                             : (size_t)o->workers;
    pl->w = calloc(pl->nw, sizeof(*pl->w));
    if (!pl->w) {
        free(pl);
        return SP_ERR_NOMEM;
    }
    for (size_t i = 0; i < pl->nw; i++) {
        pl->w[i].fd = pl->w[i].qfd = -1;
        buf_init(&pl->w[i].out, (size_t)WIRE_MAX_FRAME * 4);
        buf_init(&pl->w[i].in, WIRE_MAX_FRAME + 64 * 1024);
    }
    buf_init(&pl->ctl, WIRE_MAX_FRAME);
    arena_init(&pl->qarena, POOL_QUERY_ARENA);
    /* A worker that dies must not kill the daemon with SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < pl->nw; i++) {
        int rc = pool_spawn(pl, i, err, errlen);
        if (rc) {
            pool_free(pl);
            return rc;
        }
    }
    *out = pl;
    return SP_OK;
}

void pool_free(struct pool *pl)
{
    if (!pl)
        return;
    for (size_t i = 0; i < pl->nw; i++) {
        pool_abandon(pl, &pl->w[i]);
        pool_stop_worker(&pl->w[i]);
        buf_cleanup(&pl->w[i].out);
        buf_cleanup(&pl->w[i].in);
        free(pl->w[i].q);
    }
    free(pl->w);
    pool_tickets_free(pl);
    for (size_t i = 0; i < pl->n; i++)
        analysis_free(&pl->v[i]);
    free(pl->v);
    buf_cleanup(&pl->ctl);
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

/* Worker w forgets analysis name; if it cannot be told, it is stopped and a
 * new one is started (without it) at the next use. */
static void unload_in_worker(struct pool *pl, struct worker *w, const char *name)
{
    pool_abandon(pl, w);
    buf_reset(&pl->ctl);
    int64_t deadline = clock_mono_ms() + pl->o.wall_ms;
    long n = -1;
    if (w->pid && !wire_begin(&pl->ctl, WIRE_UNLOAD) && !wire_str(&pl->ctl, name) &&
        !wire_end(&pl->ctl, 0) && !send_all(w->fd, pl->ctl.p, pl->ctl.len, deadline))
        n = read_frame(w, deadline);
    if (n > 0)
        pool_consume(&w->in, (size_t)n);
    else
        pool_stop_worker(w);
}

/*
 * A message runs exactly one analysis, so no two declared filters may
 * overlap. A worker checks that among the analyses it holds (host.c); this
 * checks the new version a against those of the other workers. Returns 0 or
 * SP_ERR_LUA with err as the worker words it.
 */
static int overlap_elsewhere(const struct pool *pl, const struct analysis *a, char *err,
                             size_t errlen)
{
    for (size_t k = 0; k < pl->n; k++) {
        const struct analysis *o = &pl->v[k];
        if (o->worker == a->worker || strcmp(o->name, a->name) == 0)
            continue;
        for (size_t i = 0; i < a->ntopics; i++)
            for (size_t j = 0; j < o->ntopics; j++)
                if (route_overlap(a->topics[i], o->topics[j])) {
                    snprintf(err, errlen,
                             "%s.lua: topic \"%.200s\" overlaps \"%.200s\" of %s.lua, which is "
                             "loaded; a message runs one analysis, so filters may not overlap",
                             a->name, a->topics[i], o->topics[j], o->name);
                    return SP_ERR_LUA;
                }
    }
    return 0;
}

/*
 * The worker took a, which the pool refuses: it forgets it, and a reloaded
 * analysis's previous version is loaded there again (its globals start
 * afresh, as after a restart).
 */
static void undo_load(struct pool *pl, const struct analysis *a)
{
    char why[512];
    int i = pool_find(pl, a->name);

    if (i < 0) {
        unload_in_worker(pl, &pl->w[a->worker], a->name);
        return;
    }
    if (load_in_worker(pl, &pl->v[i], why, sizeof why))
        LOG_ERROR("analysis %s: its previous version does not load again: %s", a->name, why);
}

/*
 * The worker a new analysis goes to: the one holding the fewest analyses
 * (the first such), so that busy analyses are likely to sit on different
 * cores. A reloaded analysis stays where it is.
 */
static size_t choose_worker(const struct pool *pl, const char *name)
{
    int i = pool_find(pl, name);
    if (i >= 0)
        return pl->v[i].worker;
    size_t best = 0, best_n = SIZE_MAX;
    for (size_t w = 0; w < pl->nw; w++) {
        size_t k = 0;
        for (size_t j = 0; j < pl->n; j++)
            k += pl->v[j].worker == w;
        if (k < best_n) {
            best = w;
            best_n = k;
        }
    }
    return best;
}

int pool_load(struct pool *pl, const char *name, const char *src, size_t len, const char *env_json,
              char *err, size_t errlen)
{
    struct analysis a = {0};
    int rc;

    a.worker = choose_worker(pl, name);
    pool_abandon(pl, &pl->w[a.worker]); /* its replies would come before LOADED's */
    if (!pl->w[a.worker].pid && (rc = pool_spawn(pl, a.worker, err, errlen)))
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
    if (!rc && (rc = overlap_elsewhere(pl, &a, err, errlen)))
        undo_load(pl, &a);
    if (rc) {
        analysis_free(&a);
        /* A load that killed the worker took the states it held with it. */
        if (!pl->w[a.worker].pid) {
            char why[256];
            if (pool_spawn(pl, a.worker, why, sizeof why))
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
    struct worker *w = &pl->w[pl->v[i].worker];
    analysis_free(&pl->v[i]);
    memmove(&pl->v[i], &pl->v[i + 1], (pl->n - (size_t)i - 1) * sizeof(*pl->v));
    pl->n--;
    unload_in_worker(pl, w, name);
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

unsigned pool_handlers(const struct pool *pl, size_t i)
{
    return i < pl->n ? pl->v[i].handlers : 0;
}

const char *pool_schedule(const struct pool *pl, size_t i)
{
    return i < pl->n ? pl->v[i].schedule : NULL;
}

const struct when *pool_when(const struct pool *pl, size_t i)
{
    return i < pl->n ? pl->v[i].when : NULL;
}

const char *pool_scope(const struct pool *pl, size_t i)
{
    return i < pl->n ? pl->v[i].scope : NULL;
}

unsigned pool_events(const struct pool *pl, size_t i)
{
    return i < pl->n ? pl->v[i].events : 0;
}

int64_t pool_offline_after_ms(const struct pool *pl, size_t i)
{
    return i < pl->n ? pl->v[i].offline_after_ms : 0;
}

const char *const *pool_webhooks(const struct pool *pl, size_t i, size_t *n)
{
    *n = i < pl->n ? pl->v[i].nwebhooks : 0;
    return *n ? (const char *const *)pl->v[i].webhooks : NULL;
}

void pool_set_query(struct pool *pl, host_query_fn fn, void *ctx)
{
    pl->query = fn;
    pl->query_ctx = ctx;
}

/*
 * Answers one query() worker w sent on its query channel. The worker waits
 * for the answer (blocking), so this reads the whole request and writes the
 * whole answer; the job's deadline keeps running meanwhile. The answer is
 * built in the pool's query arena, emptied once it is sent: a batch's
 * queries do not add up in the batch's memory. Returns 0, 1 when the
 * deadline passed first, or -1 when the worker is gone.
 */
int pool_answer_query(struct pool *pl, struct worker *w, int64_t deadline)
{
    struct arena *a = &pl->qarena;
    struct buf req;
    char err[256] = "";
    int rc = -1;

    buf_init(&req, WIRE_MAX_FRAME);
    long n = pool_read_frame_on(w->qfd, &req, deadline);
    if (n <= 0) {
        rc = n == 0 ? 1 : -1;
        goto out;
    }
    struct wire_in in = {.p = (const uint8_t *)req.p + 5, .len = (size_t)n - 5, .a = a};
    unsigned type = (uint8_t)req.p[4];
    struct host_query q = {0};
    struct record_vec out = {0};
    int qrc;
    buf_reset(&pl->ctl);
    if (type != WIRE_QUERY) {
        /* devices{}, aggregate{}: pool_reads.c, which counts them too */
        if (pool__answer_read(pl, &w->q[w->head], type, &in) || wire_end(&pl->ctl, 0))
            goto out;
    } else {
        if (pool__over_queries(&w->q[w->head], err, sizeof err)) {
            qrc = SP_ERR_LIMIT;
        } else if (wire_get_query(&in, &q)) {
            qrc = SP_ERR_INVAL;
            snprintf(err, sizeof err, "malformed query");
        } else if (!pl->query) {
            qrc = SP_ERR_INVAL;
            snprintf(err, sizeof err, "query() is not available here");
        } else {
            qrc = pl->query(pl->query_ctx, &q, a, &out, err, sizeof err);
        }
        if (wire_begin(&pl->ctl, WIRE_ANSWER) || wire_u32(&pl->ctl, (uint32_t)qrc) ||
            wire_str(&pl->ctl, qrc ? err : NULL) ||
            wire_put_records(&pl->ctl, qrc ? NULL : out.v, qrc ? 0 : out.n) ||
            wire_end(&pl->ctl, 0))
            goto out;
    }
    /* The answer goes on the query channel: the job stream stays in order. */
    int sent = send_all(w->qfd, pl->ctl.p, pl->ctl.len, deadline);
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
