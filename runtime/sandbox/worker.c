/*
 * worker.c - the Lua worker process (see worker.h).
 */
#include "worker.h"
#include "base/errors.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/sp_limits.h"
#include "sealpipe.h"
#include "wire.h"

#define WORKER_FD WORKER_SOCKET_FD
#define NOBODY    65534

static void die(const char *what)
{
    /* stderr is the daemon's log; this is the only line a worker writes. */
    dprintf(2, "sealpipe worker: %s: %s\n", what, strerror(errno));
    _exit(111);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/*
 * Makes glibc do, while files and any system call are still allowed, the
 * work it would otherwise do lazily on a call the analyses can reach; under
 * the filter that work is a forbidden call and kills the worker. Each item
 * names what reaches it; a new libc call in the host needs a look here.
 *
 * - Time zone (os.time, os.date). With TZ unset, mktime() runs tzset() on
 *   every call and tzset() stats /etc/localtime each time to see whether it
 *   changed. With TZ set, tzset() returns early while the value is the one
 *   it last read. The worker's zone is UTC, whatever the host's, so
 *   analyses behave the same everywhere (sdk/lua/README.md). "UTC0" is a
 *   POSIX rule, so no tzdata file is needed either.
 * - qsort() (json.encode sorting keys) asks sysconf(_SC_PHYS_PAGES), a
 *   sysinfo() call, the first time it sorts 1 KiB or more, then keeps it.
 * - The locale stays "C" (nothing calls setlocale), which needs no file.
 */
static void warm_libc(void)
{
    int v[1024];

    if (setenv("TZ", "UTC0", 1) < 0)
        die("setenv TZ");
    tzset();
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    (void)mktime(&tm);
    for (size_t i = 0; i < sizeof v / sizeof *v; i++)
        v[i] = (int)(i * 7919 % 1024);
    qsort(v, sizeof v / sizeof *v, sizeof *v, cmp_int);
}

/*
 * Everything before the first frame: descriptors, user, limits, filter.
 * Long because the seccomp rules are one per line, read top to bottom as the
 * worker's whole system-call allowance.
 */
static void lock_down(int fd, const struct worker_opts *o)
{
    if (fd != WORKER_FD && dup2(fd, WORKER_FD) < 0)
        die("dup2");
    /* Keep stderr (the daemon's log) and the two sockets; close the rest. */
    if (close_range(WORKER_QUERY_FD + 1, ~0U, 0) < 0)
        die("close_range");
    int devnull = open("/dev/null", O_RDWR);
    if (devnull >= 0) {
        dup2(devnull, 0);
        dup2(devnull, 1);
        if (devnull > 2 && devnull != WORKER_FD)
            close(devnull);
    }
    if (getuid() == 0 || geteuid() == 0) {
        if (setgroups(0, NULL) < 0 || setgid(NOBODY) < 0 || setuid(NOBODY) < 0)
            die("dropping root");
    }
    struct rlimit zero = {0, 0};
    setrlimit(RLIMIT_CORE, &zero);
    setrlimit(RLIMIT_NPROC, &zero);
    /* No RLIMIT_FSIZE: stderr may be the daemon's log file, and the filter
     * below already keeps the worker from opening any file. */
#ifndef SEALPIPE_SANITIZE
    if (o->address_space) {
        struct rlimit as = {o->address_space, o->address_space};
        if (setrlimit(RLIMIT_AS, &as) < 0)
            die("RLIMIT_AS");
    }
#endif
    if (o->cpu_seconds > 0) {
        struct rlimit cpu = {(rlim_t)o->cpu_seconds, (rlim_t)o->cpu_seconds + 1};
        if (setrlimit(RLIMIT_CPU, &cpu) < 0)
            die("RLIMIT_CPU");
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        die("no_new_privs");

        /* Anything not listed kills the process. Under the sanitizers, whose
         * runtime makes calls of its own (and forks to look for leaks at exit),
         * the filter is installed but only logs. */
#ifdef SEALPIPE_SANITIZE
    scmp_filter_ctx f = seccomp_init(SCMP_ACT_LOG);
#else
    scmp_filter_ctx f = seccomp_init(SCMP_ACT_KILL_PROCESS);
#endif
    if (!f)
        die("seccomp_init");
    int rc = 0;
    /* Each SCMP_A* comparison names datum_b too (0, unused by SCMP_CMP_EQ): the
     * compound literal is then complete, which clang's -Wextra insists on. */
    rc |=
        seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(read), 1, SCMP_A0(SCMP_CMP_EQ, WORKER_FD, 0));
    rc |=
        seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(write), 1, SCMP_A0(SCMP_CMP_EQ, WORKER_FD, 0));
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(write), 1, SCMP_A0(SCMP_CMP_EQ, 2, 0));
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(read), 1,
                           SCMP_A0(SCMP_CMP_EQ, WORKER_QUERY_FD, 0));
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(write), 1,
                           SCMP_A0(SCMP_CMP_EQ, WORKER_QUERY_FD, 0));
    /* Memory, never executable. */
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(brk), 0);
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                           SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                           SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(munmap), 0);
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(mremap), 0);
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(madvise), 0);
    /* os.time, os.clock, os.date (no file once warm_libc has run). */
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(clock_gettime), 0);
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(gettimeofday), 0);
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(time), 0);
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(getrusage), 0);
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(times), 0);
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(getrandom), 0);
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(rt_sigreturn), 0);
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(exit), 0);
    rc |= seccomp_rule_add(f, SCMP_ACT_ALLOW, SCMP_SYS(exit_group), 0);
    if (rc)
        die("seccomp_rule_add");
    warm_libc();
    if (seccomp_load(f) < 0)
        die("seccomp_load");
    seccomp_release(f);
}

static int read_frame(struct buf *b)
{
    return wire_read_frame(WORKER_FD, b);
}

/*
 * Sends the request written into b (from wire_begin on; put: whether that
 * went well) and reads the daemon's answer into b, *in over its body after
 * rc and err. Returns the answer's rc (err set), SP_OK, or SP_ERR_INVAL for
 * a malformed answer.
 */
static int exchange(struct buf *b, int put, struct arena *a, struct wire_in *in, char *err,
                    size_t errlen)
{
    if (put || wire_end(b, 0) || wire_write_all(WORKER_QUERY_FD, b->p, b->len) ||
        wire_read_frame(WORKER_QUERY_FD, b) != WIRE_ANSWER) {
        /* The daemon is gone or out of step: nothing sensible is left. */
        _exit(0);
    }
    *in = (struct wire_in){.p = (const uint8_t *)b->p + 1, .len = b->len - 1, .a = a};
    int rc = (int)(int32_t)wire_get_u32(in);
    const char *msg = wire_get_str(in, NULL);
    if (rc || in->bad) {
        snprintf(err, errlen, "%s", msg ? msg : "query failed");
        return rc ? rc : SP_ERR_INVAL;
    }
    return SP_OK;
}

/* query() from an analysis: ask the daemon and wait for its answer. */
static int ask(void *ctx, const struct host_query *q, struct arena *a, struct record_vec *out,
               char *err, size_t errlen)
{
    struct buf *b = ctx;
    struct wire_in in;

    buf_reset(b);
    int put = wire_begin(b, WIRE_QUERY) || wire_str(b, q->serial) || wire_str(b, q->variable) ||
              wire_i64(b, q->start_ms) || wire_i64(b, q->stop_ms) || wire_u32(b, (uint32_t)q->qty);
    int rc = exchange(b, put, a, &in, err, errlen);
    if (rc)
        return rc;
    return wire_get_daemon_records(&in, out, HOST_QUERY_MAX, err, errlen) ? SP_ERR_INVAL : SP_OK;
}

/* The 'l' reply's `webhooks` list of analysis i (none when i < 0). 0 or -1. */
static int put_webhook_hosts(struct buf *b, const struct host *h, int i)
{
    size_t n = i < 0 ? 0 : host_webhook_count(h, (size_t)i);

    if (wire_u32(b, (uint32_t)n))
        return -1;
    for (size_t j = 0; j < n; j++)
        if (wire_str(b, host_webhook_entry(h, (size_t)i, j)))
            return -1;
    return 0;
}

/* devices{} from an analysis, as ask(). */
static int ask_devices(void *ctx, const struct host_devices_query *q, struct arena *a,
                       struct host_device **out, size_t *n, char *err, size_t errlen)
{
    struct buf *b = ctx;
    struct wire_in in;

    buf_reset(b);
    int put = wire_begin(b, WIRE_DEVICES) || wire_put_devices_query(b, q);
    int rc = exchange(b, put, a, &in, err, errlen);
    if (rc)
        return rc;
    if (wire_get_devices(&in, out, n, q->limit)) {
        snprintf(err, errlen, "malformed devices answer");
        return SP_ERR_INVAL;
    }
    return SP_OK;
}

/* aggregate{} from an analysis, as ask(). */
static int ask_aggregate(void *ctx, const struct host_aggregate_query *q, struct host_aggregate *g,
                         char *err, size_t errlen)
{
    struct buf *b = ctx;
    struct wire_in in;
    struct arena a;

    arena_init(&a, 4096); /* the answer has no strings but the error */
    buf_reset(b);
    int put = wire_begin(b, WIRE_AGGREGATE) || wire_put_aggregate_query(b, q);
    int rc = exchange(b, put, &a, &in, err, errlen);
    if (!rc && wire_get_aggregate(&in, g)) {
        snprintf(err, errlen, "malformed aggregate answer");
        rc = SP_ERR_INVAL;
    }
    arena_cleanup(&a);
    return rc;
}

static void serve(struct host *h)
{
    struct buf in, out, q;
    struct arena a;
    char err[2048];

    buf_init(&in, WIRE_MAX_FRAME);
    buf_init(&out, WIRE_MAX_FRAME);
    buf_init(&q, WIRE_MAX_FRAME);
    arena_init(&a, SP_LIMIT_ARENA);
    host_set_query(h, ask, &q);
    host_set_reads(h, ask_devices, ask_aggregate, &q);
    for (;;) {
        int type = read_frame(&in);
        if (type < 0)
            break;
        struct wire_in r = {.p = (const uint8_t *)in.p + 1, .len = in.len - 1, .a = &a};
        int rc = SP_ERR_INVAL;
        buf_reset(&out);
        err[0] = '\0';
        if (type == WIRE_LOAD) {
            size_t len;
            const char *name = wire_get_str(&r, NULL), *src = wire_get_str(&r, &len);
            const char *env = wire_get_str(&r, NULL);
            if (!r.bad && name && src)
                rc = host_load_env(h, name, src, len, env, err, sizeof err);
            int i = rc ? -1 : host_find(h, name);
            size_t nt = i < 0 ? 0 : host_topic_count(h, (size_t)i);
            int bad = wire_begin(&out, WIRE_LOADED) || wire_u32(&out, (uint32_t)rc) ||
                      wire_str(&out, err) || wire_u32(&out, (uint32_t)nt);
            for (size_t j = 0; j < nt && !bad; j++)
                bad = wire_str(&out, host_topic(h, (size_t)i, j));
            bad = bad || wire_u32(&out, (uint32_t)(i < 0 ? 0 : host_timeout_ms(h, (size_t)i))) ||
                  wire_u8(&out, i < 0 ? 0 : host_handlers(h, (size_t)i)) ||
                  wire_str(&out, i < 0 ? NULL : host_schedule(h, (size_t)i)) ||
                  wire_u8(&out, i < 0 ? 0 : host_events(h, (size_t)i)) ||
                  wire_i64(&out, i < 0 ? 0 : host_offline_after_ms(h, (size_t)i)) ||
                  wire_str(&out, i < 0 ? NULL : host_when(h, (size_t)i)) ||
                  wire_str(&out, i < 0 ? NULL : host_scope(h, (size_t)i)) ||
                  put_webhook_hosts(&out, h, i);
            if (bad)
                break;
        } else if (type == WIRE_UNLOAD) {
            const char *name = wire_get_str(&r, NULL);
            rc = name ? host_unload(h, name) : SP_ERR_INVAL;
            if (wire_begin(&out, WIRE_UNLOADED) || wire_u32(&out, (uint32_t)rc))
                break;
        } else if (type == WIRE_JOB) {
            const char *analysis;
            struct host_msg m;
            struct host_out o = {0};
            int i = -1, got = wire_get_msg(&r, &analysis, &m) == 0;
            if (got)
                i = host_find(h, analysis);
            rc = i < 0 ? SP_ERR_NOTFOUND : host_run(h, (size_t)i, &m, &a, &o, err, sizeof err);
            if (i < 0)
                snprintf(err, sizeof err, "%s",
                         !got ? (r.full ? "the message does not fit in the worker's memory"
                                        : "the worker could not read the message")
                              : "analysis is not loaded in the worker");
            if (wire_begin(&out, WIRE_DONE) || wire_u32(&out, (uint32_t)rc) ||
                wire_str(&out, err) ||
                wire_put_records(&out, rc ? NULL : o.records.v, rc ? 0 : o.records.n) ||
                wire_put_publishes(&out, rc ? NULL : o.publishes, rc ? 0 : o.npublishes) ||
                wire_put_logs(&out, o.logs, o.nlogs, o.logs_dropped) ||
                wire_put_inserts(&out, rc ? NULL : o.inserts, rc ? 0 : o.ninserts) ||
                wire_put_runs(&out, rc ? NULL : o.runs, rc ? 0 : o.nruns) ||
                wire_put_webhooks(&out, rc ? NULL : o.webhooks, rc ? 0 : o.nwebhooks) ||
                wire_put_deletes(&out, rc ? NULL : o.deletes, rc ? 0 : o.ndeletes))
                break;
        } else {
            break;
        }
        if (wire_end(&out, 0) || wire_write_all(WORKER_FD, out.p, out.len))
            break;
        arena_reset(&a);
    }
    arena_cleanup(&a);
    buf_cleanup(&in);
    buf_cleanup(&out);
    buf_cleanup(&q);
}

void worker_main(int fd, const struct worker_opts *o)
{
    lock_down(fd, o);
    struct host *h = host_new(&o->limits);
    if (h)
        serve(h);
    _exit(0);
}

int worker_command(int argc, char **argv)
{
    struct worker_opts o;
    unsigned long long v[8];

    if (argc != 10)
        return 2;
    for (int i = 0; i < 8; i++) {
        char *end;
        errno = 0;
        v[i] = strtoull(argv[2 + i], &end, 10);
        if (errno || *end || end == argv[2 + i])
            return 2;
    }
    memset(&o, 0, sizeof o);
    o.limits.instructions = v[0];
    o.limits.memory = (size_t)v[1];
    o.limits.script_size = (size_t)v[2];
    o.limits.max_records = (size_t)v[3];
    o.limits.max_publishes = (size_t)v[4];
    o.address_space = (size_t)v[5];
    o.cpu_seconds = (int)v[6];
    o.limits.max_publish_bytes = (size_t)v[7];
    worker_main(WORKER_FD, &o);
}
