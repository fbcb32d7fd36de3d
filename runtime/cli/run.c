/*
 * run.c - `sealpipe run`: the daemon's life, in four steps.
 *
 *   open        the libmosquitto version check (the acknowledge-after-commit
 *               design depends on it), the data directory lock (sealpipe.lock:
 *               one daemon per data directory), registry and bucket
 *               (sealpipe.db), the master key, the Lua worker pool, the
 *               pipeline and its analyses
 *   broker      the embedded mosquitto child (or none: --broker), supervised
 *               and restarted while the daemon runs
 *   connect     the MQTT link, attached to the pipeline as its ingest source
 *               and output, and its subscriptions
 *   loop        batches (pipeline_step) until SIGINT/SIGTERM; between them
 *               the queued device commands, hot reload of the analyses, stats;
 *               a lost source is reconnected with backoff
 *   close       on a stop signal the batch in hand is finished, committed and
 *               acknowledged before the link and the embedded broker close
 *
 * This file wires the parts together; each part's work is in its folder
 * (core/, transport/, storage/, sandbox/, broker/).
 */
#include "run.h"

#include <errno.h>
#include <malloc.h>
#include <sqlite3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/errors.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/sp_limits.h"
#include "broker/broker.h"
#include "api/api.h"
#include "core/inspect.h"
#include "core/outcome.h"
#include "core/pipeline.h"
#include "sandbox/pool.h"
#include "sandbox/worker.h"
#include "sealpipe.h"
#include "storage/bucket.h"
#include "storage/datadir.h"
#include "storage/devstatus.h"
#include "storage/registry.h"
#include "storage/registry_schema.h"
#include "transport/dlretry.h"
#include "storage/retention.h"
#include "transport/httpd.h"
#include "transport/inspectd.h"
#include "transport/jreader.h"
#include "transport/answers.h"
#include "transport/metricsd.h"
#include "transport/mqlink.h"
#include "transport/netq.h"
#include "transport/rawnet.h"
#include "transport/webhooks.h"

static volatile sig_atomic_t stop_requested; /* the daemon's stop flag */

/* At stop, a lock another process holds is waited for this long (ms): the
 * stop's writes can wait for the next start. */
#define STOP_BUSY_MS 200
/* Devices are judged silent only this long after the start at the earliest
 * (caught_up). */
#define CAUGHT_UP_AFTER_MS 5000

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* Everything `sealpipe run` opens; run_close() closes what is set. */
struct daemon {
    const struct conf *c;
    int64_t started_ms; /* when the loop began, monotonic ms */
    int lock;           /* the data directory lock, -1: not held */
    struct registry *reg;
    struct bucket *bk;
    struct pool *pool;
    struct pipeline *p;
    struct broker *broker; /* the embedded one; NULL with --broker */
    struct mqlink *link;
    /* The TagoTiP HTTP, UDP and TCP listeners and their queue, the
     * pipeline's second source; NULL when every port is 0. */
    struct netq *netq;
    struct httpd *httpd;
    struct api *api; /* the HTTP API on httpd's listeners, or NULL */
    struct rawnet *raw;
    /* The device journal the embedded broker writes, the pipeline's input
     * from it; NULL with --broker or --journal off, unless a journal is left
     * from a run with it on. */
    struct jreader *journal;
    /* Answers to journaled messages, published by the embedded broker's
     * plugin (transport/answers.h); NULL: through the MQTT link. */
    struct answers *answers;
    struct metricsd *metrics; /* the /metrics endpoint; NULL: off */
    /* Retries of dead letters (`sealpipe dead-letter retry`), a source too. */
    struct dlretry *dlretry;
    struct retention *retention; /* deletes what the retention windows let go */
    struct webhooks *webhooks;   /* sends the analyses' webhook() requests */
    char journal_dir[600];
    /* The Live Inspector: events, the devices' status, their sockets. */
    struct inspect *inspect;
    struct devstatus *status;
    struct inspectd *inspectd;
    int journal_writes;       /* the embedded broker's plugin writes it */
    char host[CONF_HOST_MAX]; /* where the link connects */
    int port;
    /* The embedded broker's files: it keeps pointers to them (a restart
     * writes its config again), so they live as long as the daemon. */
    char plugin[600], cert[600], key[600], answers_path[600];
};

/* The main loop's clocks (mono_ms) and the link's state. */
struct loop {
    int connected, delay, restarts;
    int64_t next_try, last_restart, next_scan, next_check, next_stats;
    /* After a batch that could not be committed (a full disk, say): no
     * batch before next_batch, db_delay doubling up to 5 s, so that a
     * source that keeps its messages (the journal) is not read and run
     * again in a tight loop. */
    int64_t next_batch;
    int db_delay;
    int64_t next_retention; /* retention_turn() */
};

/* After a batch that could not be committed: says so if the data disk is
 * what is full (SQLite says only "database error"). */
static void say_if_disk_full(struct daemon *d)
{
    struct statvfs s;

    if (statvfs(d->c->data_dir, &s) != 0)
        return;
    uint64_t avail = (uint64_t)s.f_bavail * s.f_frsize;
    if (avail >= (64u << 20))
        return;
    LOG_ERROR("the disk of %s is full (%llu MiB free): nothing can be stored until there is "
              "room; what devices sent waits in %s",
              d->c->data_dir, (unsigned long long)(avail >> 20),
              d->journal ? "the journal" : "the broker");
}

/* A batch failed to commit (n == SP_ERR_DB) or did not: the backoff. */
static void batch_backoff(struct loop *l, int n)
{
    if (n != SP_ERR_DB) {
        l->db_delay = 0;
        return;
    }
    l->db_delay = l->db_delay ? (l->db_delay < 2500 ? l->db_delay * 2 : 5000) : 250;
    l->next_batch = clock_mono_ms() + l->db_delay;
    LOG_WARN("next batch in %d ms", l->db_delay);
}

/* ------------------------------------------------------------------------ */
/* The data path: the only code here that calls pipeline_* and mqlink_*     */
/* ------------------------------------------------------------------------ */

/* The acknowledge-after-commit design holds only for the libmosquitto
 * series mqlink.c was verified against. */
static int check_link_version(void)
{
    char err[1024];

    if (mqlink_check_version(err, sizeof(err))) {
        LOG_ERROR("%s", err);
        return SP_ERR_MQTT;
    }
    return SP_OK;
}

/* The pipeline over the open stores and pool, with the analyses loaded. */
static int open_pipeline(struct daemon *d)
{
    const struct conf *c = d->c;
    struct pipeline_opts po = {.batch = (size_t)c->batch,
                               .linger_ms = c->commit_linger_ms,
                               .key_grace = c->key_grace,
                               .error_budget = c->lua_error_budget,
                               .trigger_queue_max = c->trigger_queue_max,
                               .analyses_dir = c->analyses_dir,
                               .script_max = (size_t)c->lua_script_kb * 1024};

    int rc = pipeline_new(&po, d->reg, d->bk, d->pool, &d->p);
    if (rc) {
        LOG_ERROR("cannot start the pipeline: %s", errors_strerror(rc));
        return rc;
    }
    pipeline_scan_analyses(d->p);
    return SP_OK;
}

/* The MQTT link to d->host:port, as the embedded broker's daemon user or
 * with the external broker's credentials. */
static int open_link(struct daemon *d, char *err, size_t errlen)
{
    const struct conf *c = d->c;
    struct mqlink_opts mo = {.host = d->host,
                             .port = d->port,
                             .username = d->broker ? BROKER_DAEMON_USER : c->broker_username,
                             .password = d->broker ? broker_secret(d->broker) : c->broker_password,
                             .client_id = c->client_id,
                             .receive_max = c->batch,
                             .keepalive = 30};

    if (mqlink_new(&mo, &d->link, err, errlen) != SP_OK)
        return SP_ERR_MQTT;
    pipeline_attach(d->p, mqlink_source(d->link), mqlink_output(d->link));
    return SP_OK;
}

static int find_tls(const struct conf *c, char *cert, char *key, size_t cap);

/* The TagoTiP listeners (HTTP, HTTPS, UDP, TCP) and their queue, attached
 * to the pipeline as its second source. Nothing when every port is 0. */
static int open_net(struct daemon *d)
{
    const struct conf *c = d->c;
    char err[1024];

    if (!*d->cert && find_tls(c, d->cert, d->key, sizeof d->cert))
        return SP_ERR_IO;
    struct httpd_opts ho = {.bind = c->bind,
                            .port = c->http_port,
                            .tls_port = *d->cert ? c->https_port : 0,
                            .cert = d->cert,
                            .key = d->key};
    struct rawnet_opts ro = {.bind = c->bind, .udp_port = c->udp_port, .tcp_port = c->tcp_port};
    if (!ho.port && !ho.tls_port && !ro.udp_port && !ro.tcp_port)
        return SP_OK;
    if (netq_new(&d->netq) || pipeline_add_source(d->p, netq_source(d->netq))) {
        LOG_ERROR("cannot set up the TagoTiP listeners' queue");
        return SP_ERR_NOMEM;
    }
    /* Without its own connection the API is off; TagoTiP over HTTP runs on. */
    if ((ho.port || ho.tls_port) && api_open(c->data_dir, &d->api, err, sizeof err))
        LOG_WARN("http api off: %s", err);
    ho.api = d->api;
    ho.inspect = d->inspect;
    if ((ho.port || ho.tls_port) && httpd_start(&ho, d->netq, &d->httpd, err, sizeof err)) {
        LOG_ERROR("%s", err);
        return SP_ERR_IO;
    }
    if ((ro.udp_port || ro.tcp_port) && rawnet_start(&ro, d->netq, &d->raw, err, sizeof err)) {
        LOG_ERROR("%s", err);
        return SP_ERR_IO;
    }
    return SP_OK;
}

/*
 * The device journal as a source, from the id after the one committed last:
 * when the embedded broker's plugin writes it, and also when a journal is
 * left from such a run (--journal off or --broker now), so that its backlog
 * is still stored.
 */
static int open_journal(struct daemon *d)
{
    char err[1024];
    int64_t committed;

    if (!d->journal_writes && access(d->journal_dir, F_OK) != 0)
        return SP_OK;
    if (pipeline_source_position(d->p, JOURNAL_SOURCE_NAME, &committed)) {
        LOG_ERROR("cannot read the journal's position in sealpipe.db");
        return SP_ERR_DB;
    }
    char wal[600];
    snprintf(wal, sizeof wal, "%s/sealpipe.db-wal", d->c->data_dir);
    struct jreader_opts jo = {.dir = d->journal_dir,
                              .wal = strcmp(d->c->sync, "full") == 0 ? NULL : wal,
                              .committed = committed,
                              .min_free = (uint64_t)d->c->journal_min_free_mb << 20,
                              .out =
                                  d->answers ? answers_output(d->answers) : mqlink_output(d->link)};
    if (jreader_open(&jo, &d->journal, err, sizeof err) ||
        pipeline_add_source(d->p, jreader_source(d->journal))) {
        LOG_ERROR("%s", d->journal ? "too many ingest sources" : err);
        return SP_ERR_IO;
    }
    LOG_INFO("journal dir=%s committed=%lld%s", d->journal_dir, (long long)committed,
             d->journal_writes ? "" : " (left from a run with --journal on: read, not written)");
    return SP_OK;
}

/* The retries of dead letters as a source (transport/dlretry.h). */
static int open_dlretry(struct daemon *d)
{
    if (dlretry_open(d->bk, &d->dlretry) || pipeline_add_source(d->p, dlretry_source(d->dlretry))) {
        LOG_ERROR("cannot set up the dead-letter retries");
        return SP_ERR_IO;
    }
    return SP_OK;
}

/* The analysis runs no device message starts (core/triggers.h) as a source. */
static int open_triggers(struct daemon *d)
{
    if (pipeline_add_source(d->p, pipeline_trigger_source(d->p))) {
        LOG_ERROR("cannot set up the trigger queue");
        return SP_ERR_IO;
    }
    return SP_OK;
}

/* The webhook outbox's sender (transport/webhooks.h), and the pipeline's
 * calls queued into it. */
static int open_webhooks(struct daemon *d)
{
    struct webhooks_opts o = {.queue_max = d->c->webhook_queue_max,
                              .attempts = d->c->webhook_attempts,
                              .timeout_ms = d->c->webhook_timeout_ms,
                              .backoff_ms = d->c->webhook_backoff_ms};

    if (webhooks_open(d->bk, &o, &d->webhooks)) {
        LOG_ERROR("cannot start the webhook sender");
        return SP_ERR_IO;
    }
    pipeline_webhooks(d->p, d->webhooks);
    return SP_OK;
}

/* One attempt to connect and subscribe. Returns 0 or SP_ERR_MQTT with err. */
static int link_try(struct daemon *d, char *err, size_t errlen)
{
    int session_present = 0;

    if (mqlink_connect(d->link, 5000, &session_present, err, errlen) != SP_OK)
        return SP_ERR_MQTT;
    /* A new session has nothing to redeliver: forget the old packet ids. */
    if (!session_present && bucket_forget(d->bk) != SP_OK)
        LOG_WARN("could not clear the delivery window");
    if (pipeline_subscribe(d->p, d->link, err, errlen) != SP_OK) {
        mqlink_drop(d->link);
        return SP_ERR_MQTT;
    }
    pipeline_source_up(d->p, mqlink_source(d->link));
    LOG_INFO("mqtt connected session_present=%d", session_present);
    return SP_OK;
}

/* One batch: read, run, commit, acknowledge. Returns pipeline_step's status. */
static int step(struct daemon *d, int timeout_ms)
{
    return pipeline_step(d->p, timeout_ms);
}

/* 1 while the MQTT link is one of the pipeline's live sources. */
static int link_alive(struct daemon *d)
{
    return pipeline_source_is_up(d->p, mqlink_source(d->link));
}

/*
 * Between batches, when everything read is committed: queued device
 * commands, and hot reload (a changed analysis takes effect within a
 * second). Returns whether the link is still connected.
 */
/*
 * 1 when what devices sent has been read: the journal's backlog is empty
 * and the daemon has been up long enough for the broker to hand over what
 * its session kept (an external broker's queued messages come at connect).
 */
static int caught_up(struct daemon *d)
{
    return clock_mono_ms() - d->started_ms >= CAUGHT_UP_AFTER_MS &&
           (!d->journal || jreader_backlog(d->journal) == 0);
}

static int between_batches(struct daemon *d, int connected)
{
    if (d->status && devstatus_flush(d->status))
        LOG_WARN("device status not written (database error); tried again in a second");
    if (pipeline_fold(d->p, 0))
        LOG_WARN("device counts and counters not folded (database error); tried again shortly");
    if (pipeline_triggers(d->p, caught_up(d)) < 0)
        LOG_WARN("schedules and device events not checked (database error); tried again shortly");
    if (d->webhooks)
        (void)webhooks_turn(d->webhooks, clock_wall_ms()); /* it logs its errors */
    if (connected && pipeline_commands(d->p) == SP_ERR_MQTT)
        connected = 0;
    if (pipeline_scan_analyses(d->p) && connected) {
        pipeline_resubscribe(d->p, d->link);
        /* Between batches everything read is committed: send now. */
        if (mqlink_flush(d->link) != SP_OK)
            connected = 0;
    }
    return connected;
}

/* Old rows go a bounded step at a time, between batches: every 500 ms, every
 * 50 ms while the last step could not delete all that was due. */
static void retention_turn(struct daemon *d, struct loop *l, int64_t now)
{
    if (now < l->next_retention)
        return;
    int gone = retention_step(d->retention, clock_wall_ms());
    if (gone == SP_ERR_DB)
        LOG_WARN("retention: could not delete old rows (database error); trying again");
    else if (gone > 0)
        LOG_DEBUG("retention deleted=%d ms=%lld", gone, (long long)(clock_mono_ms() - now));
    l->next_retention = now + (retention_behind(d->retention) ? 50 : 500);
}

static void log_stats(struct daemon *d)
{
    outcome_log_totals();
    if (d->journal)
        LOG_INFO("journal backlog_bytes=%llu", (unsigned long long)jreader_backlog(d->journal));
}

/* The listeners first: what they still hold is failed (the devices retry). */
static void close_data_path(struct daemon *d)
{
    netq_close(d->netq);
    httpd_stop(d->httpd);
    api_close(d->api);
    rawnet_stop(d->raw);
    mqlink_free(d->link);
    /* What waits in device_status_pending, folded now so that the tables
     * are whole while the daemon is down; unless another process holds the
     * database (then the next start folds it: the CLI adds it meanwhile).
     * Everything at stop waits at most STOP_BUSY_MS for a lock. */
    if (d->bk)
        bucket_busy_ms(d->bk, STOP_BUSY_MS);
    if (d->p && pipeline_fold(d->p, 1))
        LOG_INFO("device counts and counters left in device_status_pending (database busy); "
                 "the next start folds them");
    pipeline_free(d->p);
    /* The answers in are written; requests in flight are abandoned: their
     * rows stay, sent after the next start. */
    webhooks_close(d->webhooks);
    netq_free(d->netq);
    jreader_free(d->journal);
    answers_free(d->answers);
    dlretry_free(d->dlretry);
}

/* ------------------------------------------------------------------------ */
/* Open                                                                     */
/* ------------------------------------------------------------------------ */

/*
 * The listeners may hold some 3,000 connections (HTTP, HTTPS and TCP, 1,024
 * each); a soft limit of 1,024 open files (systemd's default) would let a
 * flood of them leave SQLite and the broker link without descriptors. Every
 * poller here is poll() or epoll (libmicrohttpd's auto mode), so descriptors
 * past 1,023 are fine.
 */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= rl.rlim_max || rl.rlim_cur >= 65536)
        return;
    rl.rlim_cur = rl.rlim_max < 65536 ? rl.rlim_max : 65536;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        LOG_WARN("cannot raise the open-files limit: %s", strerror(errno));
}

static void setup_process(const struct conf *c)
{
    struct sigaction sa = {.sa_handler = on_signal};

    log_level = log_level_parse(c->log_level);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Blocks of 128 KiB or more (an exceptional batch's publishes and worker
     * frames) are mapped and given back when freed. Set explicitly, the
     * threshold stays put; glibc would otherwise raise it after the first
     * large free and keep such blocks in the heap for good (docs/facts.md). */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    /* Free memory at the top of the heap is kept up to this much instead of
     * 128 KiB: glibc gave it back and took it again on nearly every batch
     * (brk down, page faults up), and each shrink flushes the TLB of every
     * CPU the daemon's threads ran on; perf put 29 % of the daemon's CPU
     * there at 5,000 msg/s (docs/facts.md). */
    mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024);
    /* SQLite's memory statistics take a global mutex on every allocation;
     * nothing reads them. Before the library's first use. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    raise_fd_limit();
}

/* The Lua worker, with the options' limits and the fixed ones of sp_limits.h. */
static int open_pool(struct daemon *d, char *err, size_t errlen)
{
    const struct conf *c = d->c;
    struct host_limits lim;

    host_limits_default(&lim);
    lim.instructions = (uint64_t)c->lua_instructions;
    lim.memory = (size_t)c->lua_memory_mb * 1024 * 1024;
    lim.max_records = (size_t)c->lua_records;
    lim.max_publishes = (size_t)c->lua_publishes;
    lim.script_size = (size_t)c->lua_script_kb * 1024;
    lim.max_publish_bytes = (size_t)c->lua_publish_kb * 1024;
    struct pool_opts po = {.exe = "/proc/self/exe",
                           .worker = {.limits = lim,
                                      .address_space = SP_LIMIT_WORKER_ADDRESS_SPACE,
                                      .cpu_seconds = SP_LIMIT_WORKER_CPU_SECONDS},
                           .wall_ms = c->lua_timeout_ms,
                           .workers = c->workers};
    return pool_new(&po, &d->pool, err, errlen);
}

/*
 * The Live Inspector: its events, the devices' status and the sockets of
 * `sealpipe inspect` and the broker plugin. Without it the daemon runs on,
 * blind (said once).
 */
static void open_inspector(struct daemon *d)
{
    char err[600];

    if (inspect_new(&d->inspect) || devstatus_open(d->bk, &d->status)) {
        LOG_WARN("inspector off: out of memory or database error");
        return;
    }
    pipeline_observe(d->p, d->inspect, d->status);
    if (inspectd_start(d->c->data_dir, d->inspect, d->status, &d->inspectd, err, sizeof err))
        LOG_WARN("inspector off: %s; sealpipe inspect cannot connect", err);
}

/* The lock, the stores, the master key, the Lua worker, the pipeline and
 * the inspector. */
static int run_open(struct daemon *d)
{
    const struct conf *c = d->c;
    char err[1024];
    int sync = strcmp(c->sync, "full") == 0 ? BUCKET_SYNC_FULL : BUCKET_SYNC_NORMAL;

    if (check_link_version() != SP_OK)
        return SP_ERR_MQTT;
    snprintf(d->journal_dir, sizeof d->journal_dir, "%s/journal", c->data_dir);
    snprintf(d->answers_path, sizeof d->answers_path, "%s/answers.sock", c->data_dir);
    /* Before anything touches the data directory: a second daemon on it
     * would adopt our broker and fight us for the client id. */
    if (datadir_lock(c->data_dir, &d->lock, err, sizeof(err))) {
        LOG_ERROR("%s", err);
        return SP_ERR_IO;
    }
    if (registry_open(c->data_dir, &d->reg, err, sizeof(err)) ||
        bucket_open(c->data_dir, sync, &d->bk, err, sizeof(err))) {
        LOG_ERROR("cannot open data directory dir=%s error=\"%s\"", c->data_dir, err);
        return SP_ERR_DB;
    }
    if (registry_load_master(d->reg, err, sizeof(err))) {
        LOG_ERROR("cannot load the master key dir=%s error=\"%s\"", c->data_dir, err);
        return SP_ERR_DB;
    }
    int64_t keep_ms = 0; /* checked by the option's validator */
    if (retention_parse(c->retention, &keep_ms) || retention_open(d->bk, keep_ms, &d->retention)) {
        LOG_ERROR("cannot prepare the retention statements dir=%s", c->data_dir);
        return SP_ERR_DB;
    }
    if (open_pool(d, err, sizeof(err))) {
        LOG_ERROR("cannot start the Lua worker error=\"%s\"", err);
        return SP_ERR_LUA;
    }
    if (open_pipeline(d) != SP_OK || open_webhooks(d) != SP_OK)
        return SP_ERR_DB;
    if (datadir_note_analyses(c->data_dir, c->analyses_dir) != SP_OK)
        LOG_WARN("cannot note the analyses folder in %s/" DATADIR_ANALYSES
                 "; sealpipe device set --parser checks the default folder",
                 c->data_dir);
    open_inspector(d);
    return SP_OK;
}

/* ------------------------------------------------------------------------ */
/* The broker                                                               */
/* ------------------------------------------------------------------------ */

/*
 * The broker plugin: --broker-plugin, else sealpipe_auth.so next to this
 * binary (the build tree), else ../lib/sealpipe/ from it (an install).
 */
static int find_plugin(const struct conf *c, char *out, size_t cap)
{
    char exe[512], *slash;
    ssize_t n;

    if (*c->broker_plugin) {
        if (access(c->broker_plugin, R_OK) == 0) {
            snprintf(out, cap, "%s", c->broker_plugin);
            return 0;
        }
        LOG_ERROR("broker plugin %s: %s", c->broker_plugin, strerror(errno));
        return -1;
    }
    n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        if ((slash = strrchr(exe, '/')))
            *slash = '\0';
        snprintf(out, cap, "%s/sealpipe_auth.so", exe);
        if (access(out, R_OK) == 0)
            return 0;
        snprintf(out, cap, "%s/../lib/sealpipe/sealpipe_auth.so", exe);
        if (access(out, R_OK) == 0)
            return 0;
    }
    LOG_ERROR("cannot find sealpipe_auth.so (the broker plugin) next to the sealpipe binary "
              "or in ../lib/sealpipe/; set --broker-plugin PATH");
    return -1;
}

/* The TLS listener's files: the options (conf_check has paired them), else
 * <data_dir>/tls/server.{crt,key}, else none. */
static int find_tls(const struct conf *c, char *cert, char *key, size_t cap)
{
    if (*c->tls_cert) {
        if (access(c->tls_cert, R_OK) != 0 || access(c->tls_key, R_OK) != 0) {
            LOG_ERROR("cannot read %s or %s: %s", c->tls_cert, c->tls_key, strerror(errno));
            return -1;
        }
        snprintf(cert, cap, "%s", c->tls_cert);
        snprintf(key, cap, "%s", c->tls_key);
        return 0;
    }
    snprintf(cert, cap, "%s/tls/server.crt", c->data_dir);
    snprintf(key, cap, "%s/tls/server.key", c->data_dir);
    if (access(cert, R_OK) != 0 || access(key, R_OK) != 0)
        cert[0] = key[0] = '\0';
    return 0;
}

/* Starts (or adopts) the embedded broker, or takes --broker's address. */
static int run_start_broker(struct daemon *d)
{
    const struct conf *c = d->c;
    char err[1024];

    if (*c->broker) /* checked by the option's validator */
        return conf_broker_address(c->broker, d->host, sizeof d->host, &d->port);
    if (find_plugin(c, d->plugin, sizeof d->plugin) || find_tls(c, d->cert, d->key, sizeof d->cert))
        return SP_ERR_IO;
    d->journal_writes = strcmp(c->journal, "on") == 0;
    struct broker_opts bo = {.mosquitto = c->mosquitto,
                             .data_dir = c->data_dir,
                             .bind = c->bind,
                             .port = c->port,
                             .max_inflight = c->batch,
                             .plugin = d->plugin,
                             .tls_cert = d->cert,
                             .tls_key = d->key,
                             .tls_port = c->tls_port,
                             .device_publish = c->device_publish,
                             .device_subscribe = c->device_subscribe,
                             .cross_profile = strcmp(c->device_cross_profile, "on") == 0,
                             .client_id = c->client_id,
                             .journal_dir = d->journal_writes ? d->journal_dir : NULL,
                             .journal_sync_ms = c->journal_sync_ms,
                             .journal_min_free_mb = c->journal_min_free_mb,
                             .events = inspectd_broker_path(d->inspectd),
                             .answers = d->answers_path};
    if (broker_start(&bo, &d->broker, err, sizeof(err))) {
        LOG_ERROR("%s", err);
        return SP_ERR_IO;
    }
    snprintf(d->host, sizeof(d->host), "%s", broker_host(d->broker));
    d->port = broker_port(d->broker);
    if (*d->cert)
        LOG_INFO("broker tls listen=%s:%d cert=%s", c->bind, c->tls_port, d->cert);
    return SP_OK;
}

/*
 * Restarts the embedded broker if it died. Five deaths in a row, each within
 * a minute of the last restart, mean it cannot run here: returns an error
 * then (the daemon exits rather than loop).
 */
/* For `inspect --all`: the embedded broker died and was started again; its
 * devices' disconnections come with the new broker's roster. */
static void broker_restarted_event(struct daemon *d, int attempt)
{
    struct inspect_ev e;

    if (!d->inspect)
        return;
    inspect_begin(&e, "", "broker_restarted", clock_wall_ms());
    jsonline_str(&e.j, "reason", "the embedded broker exited; its clients were disconnected");
    jsonline_int(&e.j, "attempt", attempt);
    inspect_emit(d->inspect, &e);
}

static int supervise_broker(struct daemon *d, struct loop *l, int64_t now)
{
    char err[1024];

    if (!d->broker || broker_alive(d->broker))
        return SP_OK;
    l->restarts = now - l->last_restart < 60000 ? l->restarts + 1 : 1;
    l->last_restart = now;
    if (l->restarts <= 5)
        LOG_ERROR("embedded broker exited; restarting (attempt %d of 5)", l->restarts);
    if (l->restarts > 5 || broker_restart(d->broker, err, sizeof(err))) {
        LOG_ERROR("embedded broker cannot be restarted error=\"%s\"; exiting",
                  l->restarts > 5 ? "it died 5 times within a minute each" : err);
        return SP_ERR_IO;
    }
    l->next_try = 0; /* reconnect now */
    metrics_inc(METRIC_BROKER_RESTARTS);
    broker_restarted_event(d, l->restarts);
    return SP_OK;
}

/* ------------------------------------------------------------------------ */
/* The loop                                                                 */
/* ------------------------------------------------------------------------ */

/* Connects at start, retrying with backoff until deadline_ms or a stop. */
static int link_up(struct daemon *d, int64_t deadline_ms)
{
    char err[512];
    int delay = 100;

    while (!stop_requested) {
        if (link_try(d, err, sizeof(err)) == SP_OK)
            return SP_OK;
        if (clock_mono_ms() > deadline_ms) {
            LOG_ERROR("mqtt cannot connect error=\"%s\"", err);
            return SP_ERR_MQTT;
        }
        LOG_WARN("mqtt connect failed error=\"%s\" retry_ms=%d", err, delay);
        usleep((useconds_t)delay * 1000);
        delay = delay < 2000 ? delay * 2 : 2000;
    }
    return SP_ERR_MQTT;
}

/*
 * The /metrics endpoint. One that cannot listen (the port is taken, say by
 * another daemon's) leaves the daemon running without it, and says so.
 */
static void open_metrics(struct daemon *d)
{
    const struct conf *c = d->c;
    char err[1024], addr_file[600];

    metrics_gauge_set(METRIC_START_TIME, clock_wall_ms() / 1000);
    snprintf(addr_file, sizeof addr_file, "%s/metrics.addr", c->data_dir);
    unlink(addr_file); /* a killed daemon's */
    struct metricsd_opts mo = {
        .bind = c->metrics_bind, .port = c->metrics_port, .addr_file = addr_file};
    if (c->metrics_port && metricsd_start(&mo, &d->metrics, err, sizeof err))
        LOG_WARN("%s; running without the metrics endpoint", err);
}

/* With the embedded broker, answers to devices are published by its plugin
 * (transport/answers.h): those to journaled messages and to messages read
 * over the link alike. */
static int open_answers(struct daemon *d)
{
    char err[1024];

    if (!d->broker)
        return SP_OK;
    if (answers_open(d->answers_path, mqlink_output(d->link), &d->answers, err, sizeof err)) {
        LOG_ERROR("%s", err);
        return SP_ERR_IO;
    }
    mqlink_answer_through(d->link, answers_output(d->answers));
    pipeline_answers_via(d->p, answers_output(d->answers));
    return SP_OK;
}

/* The MQTT link, connected and subscribed within 15 s. */
static int run_connect(struct daemon *d)
{
    char err[1024];

    if (open_link(d, err, sizeof(err))) {
        LOG_ERROR("%s", err);
        return SP_ERR_MQTT;
    }
    if (open_answers(d) || open_net(d) || open_journal(d) || open_dlretry(d) || open_triggers(d))
        return SP_ERR_IO;
    open_metrics(d);
    if (link_up(d, clock_mono_ms() + 15000))
        return SP_ERR_MQTT;
    LOG_INFO("sealpipe running version=%s broker=%s:%d data_dir=%s analyses=%zu", sp_version(),
             d->host, d->port, d->c->data_dir, pool_count(d->pool));
    return SP_OK;
}

/* The link was lost in the last step (err: how): reconnect with backoff. */
static void link_lost(struct daemon *d, struct loop *l, int err)
{
    /* The pipeline has dropped the link after a failed commit (SP_ERR_DB)
     * and the link knows when it is gone (SP_ERR_MQTT); anything else drops
     * it here so that everything unacknowledged is delivered again. */
    if (err != SP_ERR_MQTT && err != SP_ERR_DB)
        mqlink_drop(d->link);
    l->connected = 0;
    l->delay = 100;
    /* After a database error (e.g. disk full) do not spin. */
    l->next_try = clock_mono_ms() + (err == SP_ERR_DB ? 500 : 0);
}

/*
 * One turn of the loop: a batch from every live source (the MQTT link while
 * connected, the TagoTiP listeners always), then, while the link is down,
 * one connection attempt when its backoff (up to 5 s) has passed. It never
 * blocks for long, so the broker check and a stop request are seen within a
 * second either way.
 */
static void loop_turn(struct daemon *d, struct loop *l)
{
    char err[1024];

    if (clock_mono_ms() < l->next_batch) {
        usleep(50 * 1000);
    } else if (l->connected || d->netq || d->journal) {
        int n = step(d, l->connected ? 200 : 50);
        batch_backoff(l, n);
        if (n == SP_ERR_DB)
            say_if_disk_full(d);
        if (n < 0 && l->connected && !link_alive(d))
            link_lost(d, l, n);
    } else {
        usleep(50 * 1000);
    }
    if (l->connected || clock_mono_ms() < l->next_try)
        return;
    if (link_try(d, err, sizeof(err)) == SP_OK) {
        l->connected = 1;
        metrics_inc(METRIC_MQTT_RECONNECTS);
    } else {
        LOG_WARN("mqtt connect failed error=\"%s\" retry_ms=%d", err, l->delay);
        l->next_try = clock_mono_ms() + l->delay;
        l->delay = l->delay < 5000 ? l->delay * 2 : 5000;
    }
}

/* Batches until a stop signal; returns the exit status. */
static int run_loop(struct daemon *d)
{
    int64_t now = clock_mono_ms(), stats_ms = d->c->stats_interval * 1000LL;

    d->started_ms = now;
    struct loop l = {.connected = 1,
                     .delay = 100,
                     .next_scan = now + 500,
                     .next_check = now + 1000,
                     .next_stats = now + stats_ms};

    while (!stop_requested) {
        loop_turn(d, &l);
        int64_t t = clock_mono_ms();
        retention_turn(d, &l, t);
        if (t >= l.next_scan) {
            l.next_scan = t + 500;
            l.connected = between_batches(d, l.connected);
            metrics_gauge_set(METRIC_JOURNAL_BACKLOG,
                              d->journal ? (int64_t)jreader_backlog(d->journal) : 0);
        }
        if (t >= l.next_check) {
            l.next_check = t + 1000;
            if (supervise_broker(d, &l, t) != SP_OK)
                return 1;
        }
        if (t >= l.next_stats) {
            l.next_stats = t + stats_ms;
            log_stats(d);
        }
    }
    LOG_INFO("stopping: last batch committed and acknowledged");
    log_stats(d);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Shut down, and the commands                                              */
/* ------------------------------------------------------------------------ */

static void run_close(struct daemon *d)
{
    inspectd_stop(d->inspectd);
    metricsd_stop(d->metrics);
    close_data_path(d);
    broker_stop(d->broker);
    /* Its devices are disconnected with it: say so now, not at the next start. */
    if (d->broker && d->status) {
        struct devstatus_conn end = {.at = clock_wall_ms(),
                                     .reason = "the embedded broker stopped with the daemon"};
        devstatus_roster(d->status, NULL, 0, &end);
        if (devstatus_flush(d->status))
            LOG_WARN("device status not written at stop (database error)");
    }
    devstatus_close(d->status);
    inspect_free(d->inspect);
    pool_free(d->pool);
    retention_close(d->retention);
    bucket_close(d->bk);
    registry_close(d->reg);
    datadir_unlock(d->lock);
}

int run_daemon(const struct conf *c)
{
    struct daemon d = {.c = c, .lock = -1};
    int rc = 1;

    setup_process(c);
    if (run_open(&d) == SP_OK && run_start_broker(&d) == SP_OK && run_connect(&d) == SP_OK)
        rc = run_loop(&d);
    run_close(&d);
    return rc;
}
