/*
 * test_pool.c - pool.c against a scripted worker.
 *
 * The pool runs this very binary as its worker (`test_pool __worker ...`),
 * which then speaks the worker protocol (wire.h) as the payload of each job
 * tells it to, so the daemon's side can be driven into what a real worker
 * does only by accident: dying after its query channel closed but before
 * its last replies were read, replies too large for the batch's memory, a
 * malformed reply, many query() calls in one job.
 *
 * Job payloads: "ok:X" answers one record v = X (held back while more jobs
 * are already waiting, so several replies leave at once); "die" closes the
 * query channel, waits, writes the held replies and exits with status 7;
 * "big" answers 1000 records of 6,000 bytes; "bad" answers a truncated
 * frame; "query:N" asks N queries and answers v = "answers=K", K of them
 * answered with records; "rc:N:TEXT" fails with code -N and error TEXT;
 * "stall" sends half a query and hangs; "span:MS" takes MS ms and answers
 * v = "PID START END" (its process and the monotonic microseconds it ran);
 * "count" answers v = "PID:K", K counting its process's "count" jobs (the
 * globals of a Lua state, in small).
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/arena.h"
#include "base/errors.h"
#include "base/buf.h"
#include "check.h"
#include "base/log.h"
#include "base/record.h"
#include "sandbox/pool.h"
#include "sandbox/wire.h"
#include "sandbox/worker.h"
#include "sealpipe.h"
#include "base/sp_limits.h"

/* ---- the scripted worker ------------------------------------------------ */

static int more_waiting(int fd)
{
    struct pollfd q = {.fd = fd, .events = POLLIN};
    return poll(&q, 1, 0) > 0;
}

/* A 'j' reply with records v = value, n times (string values of len bytes). */
static void put_done(struct buf *o, int rc, const char *value, size_t n, size_t len)
{
    size_t start = o->len;
    struct record *r = calloc(n ? n : 1, sizeof(*r));
    char *s = malloc(len + 1);
    if (!r || !s)
        _exit(3);
    memset(s, 'x', len);
    s[len] = '\0';
    for (size_t i = 0; i < n; i++) {
        r[i].variable = "v";
        r[i].type = RECORD_STRING;
        r[i].string = value ? value : s;
        r[i].string_len = value ? strlen(value) : len;
    }
    if (wire_begin(o, WIRE_DONE) || wire_u32(o, (uint32_t)rc) || wire_str(o, NULL) ||
        wire_put_records(o, r, n) || wire_put_publishes(o, NULL, 0) ||
        wire_put_logs(o, NULL, 0, 0) || wire_put_inserts(o, NULL, 0) || wire_put_runs(o, NULL, 0) ||
        wire_put_webhooks(o, NULL, 0) || wire_put_deletes(o, NULL, 0) || wire_end(o, start))
        _exit(3);
    free(r);
    free(s);
}

/* Asks n queries on the query channel; returns how many got records. */
static int ask_queries(int n, struct buf *q)
{
    int good = 0;
    struct arena a;
    arena_init(&a, 64u << 20);
    for (int i = 0; i < n; i++) {
        buf_reset(q);
        if (wire_begin(q, WIRE_QUERY) || wire_str(q, "dev") || wire_str(q, NULL) ||
            wire_i64(q, INT64_MIN) || wire_i64(q, INT64_MAX) || wire_u32(q, 100) ||
            wire_end(q, 0) || wire_write_all(WORKER_QUERY_FD, q->p, q->len) ||
            wire_read_frame(WORKER_QUERY_FD, q) != WIRE_ANSWER)
            _exit(4);
        struct wire_in in = {.p = (const uint8_t *)q->p + 1, .len = q->len - 1, .a = &a};
        int rc = (int)(int32_t)wire_get_u32(&in);
        (void)wire_get_str(&in, NULL);
        struct record_vec rv = {0};
        char err[128];
        if (rc == 0 && wire_get_records(&in, &rv, 100, err, sizeof err) == 0 && rv.n == 100)
            good++;
        arena_reset(&a);
    }
    arena_cleanup(&a);
    return good;
}

static long long mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The jobs that only write their reply into out: 1 when p is one of them. */
static int simple_job(const char *p, struct buf *out)
{
    static int count;
    char v[64];
    size_t start = out->len;

    if (strcmp(p, "big") == 0) {
        put_done(out, 0, NULL, 1000, 6000);
    } else if (strcmp(p, "bad") == 0) {
        if (wire_begin(out, WIRE_DONE) || wire_u32(out, 0) || wire_u32(out, 77) ||
            wire_end(out, start))
            _exit(3);
    } else if (strncmp(p, "rc:", 3) == 0) {
        char *text;
        long code = strtol(p + 3, &text, 10);
        if (wire_begin(out, WIRE_DONE) || wire_u32(out, (uint32_t)-code) ||
            wire_str(out, text + 1) || wire_put_records(out, NULL, 0) ||
            wire_put_publishes(out, NULL, 0) || wire_put_logs(out, NULL, 0, 0) ||
            wire_put_inserts(out, NULL, 0) || wire_put_runs(out, NULL, 0) ||
            wire_put_webhooks(out, NULL, 0) || wire_put_deletes(out, NULL, 0) ||
            wire_end(out, start))
            _exit(3);
    } else if (strncmp(p, "span:", 5) == 0) {
        long long t0 = mono_us();
        usleep((useconds_t)atoi(p + 5) * 1000);
        snprintf(v, sizeof v, "%d %lld %lld", (int)getpid(), t0, mono_us());
        put_done(out, 0, v, 1, 0);
    } else if (strcmp(p, "count") == 0) {
        snprintf(v, sizeof v, "%d:%d", (int)getpid(), ++count);
        put_done(out, 0, v, 1, 0);
    } else {
        return 0;
    }
    return 1;
}

static int fake_worker(void)
{
    struct buf in, out, q;
    struct arena a;
    int held = 0;

    buf_init(&in, WIRE_MAX_FRAME);
    buf_init(&out, WIRE_MAX_FRAME * 2u);
    buf_init(&q, WIRE_MAX_FRAME);
    arena_init(&a, 64u << 20);
    for (;;) {
        int type = wire_read_frame(WORKER_SOCKET_FD, &in);
        if (type < 0)
            break;
        if (type == WIRE_LOAD) {
            size_t start = out.len;
            if (wire_begin(&out, WIRE_LOADED) || wire_u32(&out, 0) || wire_str(&out, NULL) ||
                wire_u32(&out, 0) || wire_u32(&out, 0) || wire_u8(&out, HOST_BIT(HOST_HANDLE)) ||
                wire_str(&out, NULL) || wire_u8(&out, 0) || wire_i64(&out, 0) ||
                wire_str(&out, NULL) || wire_str(&out, NULL) || wire_u32(&out, 1) ||
                wire_str(&out, "127.0.0.1:9") || wire_end(&out, start))
                _exit(3);
        } else if (type == WIRE_UNLOAD) {
            size_t start = out.len;
            if (wire_begin(&out, WIRE_UNLOADED) || wire_u32(&out, 0) || wire_end(&out, start))
                _exit(3);
        } else if (type == WIRE_JOB) {
            struct wire_in r = {.p = (const uint8_t *)in.p + 1, .len = in.len - 1, .a = &a};
            const char *analysis;
            struct host_msg m;
            if (wire_get_msg(&r, &analysis, &m))
                _exit(5);
            const char *p = (const char *)m.payload;
            if (strncmp(p, "ok:", 3) == 0) {
                put_done(&out, 0, p + 3, 1, 0);
                held = 1;
            } else if (strcmp(p, "die") == 0) {
                close(WORKER_QUERY_FD);
                usleep(200 * 1000);
                wire_write_all(WORKER_SOCKET_FD, out.p, out.len);
                _exit(7);
            } else if (strcmp(p, "stall") == 0) {
                /* Half a query, then nothing: stuck in the middle of it. */
                static const uint8_t half[] = {100, 0, 0, 0, WIRE_QUERY, 1, 2, 3};
                if (wire_write_all(WORKER_SOCKET_FD, out.p, out.len) ||
                    wire_write_all(WORKER_QUERY_FD, half, sizeof half))
                    _exit(3);
                buf_reset(&out);
                sleep(30);
                _exit(0);
            } else if (strncmp(p, "query:", 6) == 0) {
                char v[32];
                /* As a real worker: earlier replies are out before it asks. */
                if (wire_write_all(WORKER_SOCKET_FD, out.p, out.len))
                    _exit(3);
                buf_reset(&out);
                snprintf(v, sizeof v, "answers=%d", ask_queries(atoi(p + 6), &q));
                put_done(&out, 0, v, 1, 0);
            } else if (!simple_job(p, &out)) {
                _exit(6);
            }
        } else {
            break;
        }
        arena_reset(&a);
        /* "ok" replies wait while more jobs are there: they leave together. */
        if (held && more_waiting(WORKER_SOCKET_FD))
            continue;
        if (wire_write_all(WORKER_SOCKET_FD, out.p, out.len))
            break;
        buf_reset(&out);
        held = 0;
    }
    _exit(0);
}

/* ---- the daemon's side -------------------------------------------------- */

/* A pool of two workers with analysis "a" loaded (the first worker's). */
static struct pool *new_pool_ms(int wall_ms)
{
    struct pool_opts o = {.exe = "/proc/self/exe", .wall_ms = wall_ms, .workers = 2};
    o.worker.limits.max_records = SP_LIMIT_RECORDS;
    o.worker.limits.max_publishes = 100;
    struct pool *pl = NULL;
    char err[256];
    CHECK_EQ_INT(pool_new(&o, &pl, err, sizeof err), 0);
    if (pl)
        CHECK_EQ_INT(pool_load(pl, "a", "x", 1, NULL, err, sizeof err), 0);
    if (pl) {
        size_t nw = 0;
        const char *const *wh = pool_webhooks(pl, 0, &nw);
        CHECK(nw == 1 && wh && strcmp(wh[0], "127.0.0.1:9") == 0);
    }
    return pl;
}

static struct pool *new_pool(void)
{
    return new_pool_ms(5000);
}

/*
 * Runs payloads[0..n) into jobs, with arena a: through analysis "a", or,
 * for a payload written "b=PAYLOAD", through analysis "b" (and "t=PAYLOAD"
 * as a tick's job, else handle's); jobs without a result after detach_ms
 * are detached (< 0: never).
 */
static void run_detach(struct pool *pl, struct pool_job *jobs, struct host_msg *msgs,
                       const char *const *payloads, size_t n, struct arena *a, int detach_ms)
{
    for (size_t i = 0; i < n; i++) {
        const char *p = payloads[i];
        int b = strncmp(p, "b=", 2) == 0, tick = strncmp(p, "t=", 2) == 0, skip = b || tick ? 2 : 0;
        msgs[i] = (struct host_msg){.topic = "t/dev",
                                    .payload = (const uint8_t *)p + skip,
                                    .payload_len = strlen(p) - (size_t)skip,
                                    .serial = "dev",
                                    .handler = tick ? HOST_TICK : HOST_HANDLE};
        jobs[i] =
            (struct pool_job){.analysis = (size_t)pool_find(pl, b ? "b" : "a"), .msg = &msgs[i]};
    }
    pool_run(pl, jobs, n, a, detach_ms);
}

static void run(struct pool *pl, struct pool_job *jobs, struct host_msg *msgs,
                const char *const *payloads, size_t n, struct arena *a)
{
    run_detach(pl, jobs, msgs, payloads, n, a, -1);
}

static int stored(const struct pool_job *j, const char *value)
{
    return j->rc == 0 && j->out.records.n == 1 && j->out.records.v[0].string &&
           strcmp(j->out.records.v[0].string, value) == 0;
}

/*
 * The worker dies on job 3 after closing its query channel, with the
 * replies of jobs 0-2 still unread. The crash is blamed on job 3 only: it
 * runs again alone, kills that worker too, and fails with SP_ERR_CRASH;
 * every other job has its real result.
 */
static void test_crash_blame(void)
{
    static const char *const p[] = {"ok:0", "ok:1", "ok:2", "die", "ok:4", "ok:5"};
    enum { N = sizeof p / sizeof p[0] };
    struct pool_job jobs[N];
    struct host_msg msgs[N];
    struct arena a;
    struct pool *pl = new_pool();
    if (!pl)
        return;
    arena_init(&a, 16u << 20);
    unsigned long spawns = pool_spawns(pl);
    run(pl, jobs, msgs, p, N, &a);
    for (size_t i = 0; i < N; i++) {
        if (i == 3)
            continue;
        char want[8];
        snprintf(want, sizeof want, "%zu", i);
        CHECK(stored(&jobs[i], want));
        if (!stored(&jobs[i], want))
            fprintf(stderr, "  job %zu: rc %d %s\n", i, jobs[i].rc, jobs[i].err);
    }
    CHECK_EQ_INT(jobs[3].rc, SP_ERR_CRASH);
    CHECK(jobs[3].err && strstr(jobs[3].err, "exited with status 7") != NULL);
    if (jobs[3].err)
        fprintf(stderr, "  job 3: %s\n", jobs[3].err);
    CHECK_EQ_INT(pool_spawns(pl) - spawns, 2); /* the alone run, and one for the rest */

    /* Alone in its batch: it kills two workers, then fails. */
    arena_reset(&a);
    static const char *const q[] = {"die"};
    run(pl, jobs, msgs, q, 1, &a);
    CHECK_EQ_INT(jobs[0].rc, SP_ERR_CRASH);
    arena_cleanup(&a);
    pool_free(pl);
}

/*
 * A reply the batch arena cannot hold gets SP_ERR_FULL, and so does every
 * later job; one before it keeps its result. A malformed reply is not
 * taken for a full arena.
 */
static void test_full(void)
{
    static const char *const p[] = {"ok:a", "big", "ok:b", "ok:c"};
    enum { N = sizeof p / sizeof p[0] };
    struct pool_job jobs[N];
    struct host_msg msgs[N];
    struct arena a;
    struct pool *pl = new_pool();
    if (!pl)
        return;
    arena_init(&a, 1u << 20);
    run(pl, jobs, msgs, p, N, &a);
    CHECK(stored(&jobs[0], "a"));
    CHECK_EQ_INT(jobs[1].rc, SP_ERR_FULL);
    CHECK_EQ_INT(jobs[2].rc, SP_ERR_FULL);
    CHECK_EQ_INT(jobs[3].rc, SP_ERR_FULL);
    arena_cleanup(&a);

    /* With room, the same reply is stored; a truncated one is malformed. */
    static const char *const q[] = {"big", "bad", "ok:d"};
    arena_init(&a, 64u << 20);
    run(pl, jobs, msgs, q, 3, &a);
    CHECK_EQ_INT(jobs[0].rc, 0);
    CHECK_EQ_INT(jobs[0].out.records.n, 1000);
    CHECK_EQ_INT(jobs[1].rc, SP_ERR_LUA);
    CHECK(jobs[1].err && strstr(jobs[1].err, "malformed") != NULL);
    CHECK(stored(&jobs[2], "d"));
    arena_cleanup(&a);
    pool_free(pl);
}

/*
 * The worker cannot claim what only the daemon may say (a full arena, a
 * crash), and a limit's text cannot put a second line in the log.
 */
static void test_worker_codes(void)
{
    char full[32], crash[32], limit[64], lua[64];
    snprintf(full, sizeof full, "rc:%d:x", -SP_ERR_FULL);
    snprintf(crash, sizeof crash, "rc:%d:x", -SP_ERR_CRASH);
    snprintf(limit, sizeof limit, "rc:%d:records limit\nERROR forged", -SP_ERR_LIMIT);
    snprintf(lua, sizeof lua, "rc:%d:boom\nstack traceback:", -SP_ERR_LUA);
    const char *const p[] = {full, crash, limit, lua, "ok:f"};
    enum { N = sizeof p / sizeof p[0] };
    struct pool_job jobs[N];
    struct host_msg msgs[N];
    struct arena a;
    struct pool *pl = new_pool();
    if (!pl)
        return;
    arena_init(&a, 1u << 20);
    run(pl, jobs, msgs, p, N, &a);
    CHECK_EQ_INT(jobs[0].rc, SP_ERR_LUA);
    CHECK_EQ_INT(jobs[1].rc, SP_ERR_LUA);
    CHECK_EQ_INT(jobs[2].rc, SP_ERR_LIMIT);
    CHECK(jobs[2].err && strcmp(jobs[2].err, "records limit?ERROR forged") == 0);
    CHECK_EQ_INT(jobs[3].rc, SP_ERR_LUA);
    CHECK(jobs[3].err && strcmp(jobs[3].err, "boom\nstack traceback:") == 0);
    CHECK(stored(&jobs[4], "f"));
    arena_cleanup(&a);
    pool_free(pl);
}

/* A fake bucket: 100 records of 1,000 bytes per query (after *ctx ms). */
static int fake_query(void *ctx, const struct host_query *q, struct arena *a,
                      struct record_vec *out, char *err, size_t errlen)
{
    (void)q;
    if (ctx)
        usleep((useconds_t)(*(int *)ctx * 1000));
    for (int i = 0; i < 100; i++) {
        struct record *r = record_vec_push(a, out);
        char *s = arena_alloc(a, 1001);
        if (!r || !s) {
            snprintf(err, errlen, "out of memory");
            return SP_ERR_NOMEM;
        }
        memset(s, 'q', 1000);
        s[1000] = '\0';
        *r = (struct record){
            .variable = "v", .type = RECORD_STRING, .string = s, .string_len = 1000};
    }
    return 0;
}

/* query() answers do not pile up in the batch's arena. */
static void test_query_memory(void)
{
    static const char *const p[] = {"query:10", "query:10", "ok:e"};
    enum { N = sizeof p / sizeof p[0] };
    struct pool_job jobs[N];
    struct host_msg msgs[N];
    struct arena a;
    struct pool *pl = new_pool();
    if (!pl)
        return;
    pool_set_query(pl, fake_query, NULL);
    arena_init(&a, 256u << 10); /* less than two answers */
    run(pl, jobs, msgs, p, N, &a);
    CHECK(stored(&jobs[0], "answers=10"));
    CHECK(stored(&jobs[1], "answers=10"));
    CHECK(stored(&jobs[2], "e"));
    for (size_t i = 0; i < 2; i++)
        if (jobs[i].rc == 0 && jobs[i].out.records.n == 1)
            fprintf(stderr, "  job %zu: %s\n", i, jobs[i].out.records.v[0].string);
    CHECK(a.total < (128u << 10));
    arena_cleanup(&a);
    pool_free(pl);
}

/*
 * A query() exchange that outlasts the job's wall-clock budget is that
 * job's timeout, not a crash: the worker is replaced once and the rest of
 * the batch runs. Slow answers, and a worker stuck halfway through a query.
 */
static void test_query_timeout(void)
{
    static const char *const p[] = {"ok:g", "query:3", "ok:h", "stall", "ok:i"};
    enum { N = sizeof p / sizeof p[0] };
    struct pool_job jobs[N];
    struct host_msg msgs[N];
    struct arena a;
    int slow = 400;
    struct pool *pl = new_pool_ms(300);
    if (!pl)
        return;
    pool_set_query(pl, fake_query, &slow);
    arena_init(&a, 1u << 20);
    unsigned long spawns = pool_spawns(pl);
    run(pl, jobs, msgs, p, N, &a);
    CHECK(stored(&jobs[0], "g"));
    CHECK_EQ_INT(jobs[1].rc, SP_ERR_TIMEOUT);
    if (jobs[1].rc)
        fprintf(stderr, "  job 1: %s\n", jobs[1].err);
    CHECK(stored(&jobs[2], "h"));
    CHECK_EQ_INT(jobs[3].rc, SP_ERR_TIMEOUT);
    if (jobs[3].rc)
        fprintf(stderr, "  job 3: %s\n", jobs[3].err);
    CHECK(stored(&jobs[4], "i"));
    CHECK_EQ_INT(pool_spawns(pl) - spawns, 2);
    arena_cleanup(&a);
    pool_free(pl);
}

/* The string value of job j's one record, or "". */
static const char *value(const struct pool_job *j)
{
    return j->rc == 0 && j->out.records.n == 1 && j->out.records.v[0].string
               ? j->out.records.v[0].string
               : "";
}

/* A pool of two workers with analyses "a" and "b", one on each. */
static struct pool *new_pool_ab(void)
{
    char err[256];
    struct pool *pl = new_pool();
    if (pl && pool_load(pl, "b", "x", 1, NULL, err, sizeof err) != 0) {
        CHECK(0);
        pool_free(pl);
        pl = NULL;
    }
    return pl;
}

/*
 * Two analyses on two workers run at the same time: the jobs report
 * different processes, and their running times overlap (each takes 300 ms;
 * in turn they could not). query() calls from both workers are answered.
 */
/*
 * The daemon counts a job's queries itself, with the handler it sent: past
 * the limit (10 for handle, 100 for tick) a worker, which may be subverted,
 * gets errors instead of answers.
 */
static void test_query_limit(void)
{
    static const char *const p[] = {"query:12", "t=query:12"};
    enum { N = sizeof p / sizeof p[0] };
    struct pool_job jobs[N];
    struct host_msg msgs[N];
    struct arena a;
    struct pool *pl = new_pool();
    if (!pl)
        return;
    pool_set_query(pl, fake_query, NULL);
    arena_init(&a, 1u << 20);
    run(pl, jobs, msgs, p, N, &a);
    CHECK(stored(&jobs[0], "answers=10"));
    CHECK(stored(&jobs[1], "answers=12"));
    arena_cleanup(&a);
    pool_free(pl);
}

static void test_two_workers(void)
{
    static const char *const p[] = {"span:300", "b=span:300", "query:2", "b=query:2"};
    enum { N = sizeof p / sizeof p[0] };
    struct pool_job jobs[N];
    struct host_msg msgs[N];
    struct arena a;
    struct pool *pl = new_pool_ab();
    if (!pl)
        return;
    pool_set_query(pl, fake_query, NULL);
    arena_init(&a, 1u << 20);
    run(pl, jobs, msgs, p, N, &a);
    int pa = 0, pb = 0;
    long long a0 = 0, a1 = 0, b0 = 0, b1 = 0;
    CHECK_EQ_INT(sscanf(value(&jobs[0]), "%d %lld %lld", &pa, &a0, &a1), 3);
    CHECK_EQ_INT(sscanf(value(&jobs[1]), "%d %lld %lld", &pb, &b0, &b1), 3);
    fprintf(stderr, "  a: pid %d %lld..%lld; b: pid %d %lld..%lld\n", pa, a0, a1, pb, b0, b1);
    CHECK(pa != pb);
    CHECK(a0 < b1 && b0 < a1);
    CHECK(stored(&jobs[2], "answers=2"));
    CHECK(stored(&jobs[3], "answers=2"));
    arena_cleanup(&a);
    pool_free(pl);
}

/*
 * A crash in b's worker leaves a's alone: a's jobs keep their results, in
 * the same process (its count, the stand-in for Lua globals, goes on), and
 * only b's worker is started again.
 */
static void test_crash_isolated(void)
{
    static const char *const first[] = {"count"};
    static const char *const p[] = {"b=ok:1", "count", "b=die", "count", "b=ok:3", "count"};
    enum { N = sizeof p / sizeof p[0] };
    struct pool_job jobs[N];
    struct host_msg msgs[N];
    struct arena a;
    struct pool *pl = new_pool_ab();
    if (!pl)
        return;
    arena_init(&a, 1u << 20);
    run(pl, jobs, msgs, first, 1, &a);
    int pid = 0, k = 0;
    CHECK_EQ_INT(sscanf(value(&jobs[0]), "%d:%d", &pid, &k), 2);
    CHECK_EQ_INT(k, 1);
    unsigned long spawns = pool_spawns(pl);
    run(pl, jobs, msgs, p, N, &a);
    CHECK(stored(&jobs[0], "1"));
    CHECK_EQ_INT(jobs[2].rc, SP_ERR_CRASH);
    CHECK(stored(&jobs[4], "3"));
    for (int i = 0; i < 3; i++) {
        char want[32];
        snprintf(want, sizeof want, "%d:%d", pid, i + 2);
        CHECK(stored(&jobs[1 + 2 * i], want));
        if (!stored(&jobs[1 + 2 * i], want))
            fprintf(stderr, "  job %d: rc %d '%s', want '%s'\n", 1 + 2 * i, jobs[1 + 2 * i].rc,
                    value(&jobs[1 + 2 * i]), want);
    }
    CHECK_EQ_INT(pool_spawns(pl) - spawns, 2); /* b's: the alone run, and one for the rest */
    arena_cleanup(&a);
    pool_free(pl);
}

/* Pumps the pool until want detached results are ready (10 s at most). */
static size_t wait_ready(struct pool *pl, size_t want)
{
    int64_t tags[16];
    size_t k = 0;
    for (int i = 0; i < 1000 && (k = pool_ready(pl, tags, 16)) < want; i++) {
        pool_pump(pl);
        usleep(10 * 1000);
    }
    return k;
}

/*
 * A slow analysis's jobs are detached after the bound; the fast one's
 * results come back with the batch. The detached ones run on, in order:
 * their results are kept until claimed by tag, and a job that kills its
 * worker twice while detached gets SP_ERR_CRASH as it would attached. A
 * worker still busy with detached jobs has the next batch's detached at
 * once.
 */
static void test_detach(void)
{
    static const char *const p[] = {"span:400", "b=ok:1", "count", "die"};
    static const char *const q[] = {"count", "b=ok:2"};
    enum { N = sizeof p / sizeof p[0] };
    struct pool_job jobs[N], more[2];
    struct host_msg msgs[N], mmsgs[2];
    struct arena a;
    struct pool *pl = new_pool_ab();
    if (!pl)
        return;
    arena_init(&a, 1u << 20);
    run_detach(pl, jobs, msgs, p, N, &a, 50);
    CHECK(jobs[0].ticket && jobs[2].ticket && jobs[3].ticket);
    CHECK(!jobs[1].ticket && stored(&jobs[1], "1"));
    CHECK_EQ_INT(pool_detached(pl), 3);
    run_detach(pl, more, mmsgs, q, 2, &a, 50);
    CHECK(more[0].ticket != 0); /* behind a's detached jobs: at once */
    CHECK(stored(&more[1], "2"));
    pool_tag(pl, jobs[0].ticket, 10);
    pool_tag(pl, jobs[2].ticket, 12);
    pool_tag(pl, jobs[3].ticket, 13);
    pool_tag(pl, more[0].ticket, 14);
    CHECK_EQ_INT(wait_ready(pl, 4), 4);
    struct pool_job j;
    int pid = 0, k = 0;
    long long t0, t1;
    CHECK_EQ_INT(pool_claim(pl, 10, &j, &a), 1);
    CHECK_EQ_INT(sscanf(value(&j), "%d %lld %lld", &pid, &t0, &t1), 3);
    CHECK_EQ_INT(pool_claim(pl, 12, &j, &a), 1);
    CHECK(sscanf(value(&j), "%*d:%d", &k) == 1 && k == 1);
    CHECK_EQ_INT(pool_claim(pl, 13, &j, &a), 1);
    CHECK_EQ_INT(j.rc, SP_ERR_CRASH);
    CHECK_EQ_INT(pool_claim(pl, 14, &j, &a), 1);
    CHECK(sscanf(value(&j), "%*d:%d", &k) == 1 && k == 1); /* a new worker after the crash */
    CHECK_EQ_INT(pool_claim(pl, 14, &j, &a), 0);           /* claimed once */
    CHECK_EQ_INT(pool_detached(pl), 0);
    arena_cleanup(&a);
    pool_free(pl);
}

/* Many quick jobs past the bound are waited for: only a slow one detaches. */
static void test_quick_queue(void)
{
    enum { N = 20 };
    const char *p[N];
    struct pool_job jobs[N];
    struct host_msg msgs[N];
    struct arena a;
    struct pool *pl = new_pool_ab();
    if (!pl)
        return;
    for (size_t i = 0; i < N; i++)
        p[i] = "span:10"; /* 200 ms in all */
    arena_init(&a, 1u << 20);
    run_detach(pl, jobs, msgs, p, N, &a, 50);
    size_t detached = 0, done = 0;
    for (size_t i = 0; i < N; i++) {
        detached += jobs[i].ticket != 0;
        done += jobs[i].rc == 0 && jobs[i].out.records.n == 1;
    }
    CHECK_EQ_INT(detached, 0);
    CHECK_EQ_INT(done, N);
    arena_cleanup(&a);
    pool_free(pl);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "__worker") == 0)
        return fake_worker();
    log_level = LOG_LEVEL_ERROR;
    RUN(test_crash_blame);
    RUN(test_full);
    RUN(test_query_memory);
    RUN(test_query_limit);
    RUN(test_worker_codes);
    RUN(test_query_timeout);
    RUN(test_two_workers);
    RUN(test_crash_isolated);
    RUN(test_detach);
    RUN(test_quick_queue);
    return check_done();
}
