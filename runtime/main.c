/*
 * main.c - the sealpipe command: argv, signals, start-up order, the loop.
 *
 *   sealpipe run [options]            the daemon
 *   sealpipe device|token|key|profile registry commands (cli.c)
 *   sealpipe config                   prints a commented example config
 *
 * Start-up order for run: options, the libmosquitto version check (the
 * acknowledge-after-commit design depends on it), the data directory lock (sealpipe.lock:
 * one daemon per data directory), registry and bucket (sealpipe.db), the Lua
 * host and analyses, the broker (embedded child or external), the MQTT link
 * and subscriptions; then batches until SIGINT/SIGTERM. On a stop signal the
 * batch in hand is finished, committed and acknowledged before the link and
 * the embedded broker are closed.
 */
#include <errno.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "errors.h"
#include "bucket.h"
#include "cli.h"
#include "conf.h"
#include "datadir.h"
#include "sp_limits.h"
#include "log.h"
#include "mqlink.h"
#include "pipeline.h"
#include "registry.h"
#include "sandbox/pool.h"
#include "sandbox/worker.h"
#include "sealpipe.h"

static volatile sig_atomic_t stop_requested; /* the daemon's stop flag */

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: sealpipe <command> [options]\n"
               "\n"
               "sealpipe processes encrypted IoT data: devices publish over MQTT (TagoTiP,\n"
               "TagoTiP/S or any topic an analysis declares), analyses normalize the data,\n"
               "and records land in SQLite buckets.\n"
               "\n"
               "commands:\n"
               "  run        start the daemon (embedded mosquitto broker by default)\n"
               "  device     add, list, show or remove devices\n"
               "  token      add, list or revoke device tokens\n"
               "  key        rotate a device's encryption key\n"
               "  profile    add or list profiles (TagoTiP authorization tokens)\n"
               "  config     print a commented example config file\n"
               "  version    print the version\n"
               "\n"
               "Every command accepts --data-dir DIR (default ./sealpipe-data) and\n"
               "--config FILE. Run 'sealpipe <command> --help' for details.\n");
}

static void run_usage(FILE *f)
{
    fprintf(f, "usage: sealpipe run [options]\n\n"
               "Starts the daemon. Without --broker it runs its own mosquitto broker\n"
               "(listening on --bind:--port) and stops it on exit.\n\noptions:\n");
    conf_print_help(f);
}

/* Splits mqtt://host:port into its parts. */
static int parse_broker_url(const char *url, char *host, size_t cap, int *port)
{
    const char *p = url;
    if (strncmp(p, "mqtt://", 7) == 0)
        p += 7;
    const char *colon = strrchr(p, ':');
    size_t n = colon ? (size_t)(colon - p) : strlen(p);
    if (n == 0 || n >= cap)
        return SP_ERR_CONFIG;
    memcpy(host, p, n);
    host[n] = '\0';
    *port = 1883;
    if (colon) {
        char *end;
        long v = strtol(colon + 1, &end, 10);
        if (*end || v < 1 || v > 65535)
            return SP_ERR_CONFIG;
        *port = (int)v;
    }
    return SP_OK;
}

/* One attempt to connect and subscribe. Returns 0 or SP_ERR_MQTT with err. */
static int link_try(struct mqlink *link, struct pipeline *p, struct bucket *bk, char *err,
                    size_t errlen)
{
    int session_present = 0;

    if (mqlink_connect(link, 5000, &session_present, err, errlen) != SP_OK)
        return SP_ERR_MQTT;
    /* A new session has nothing to redeliver: forget the old packet ids. */
    if (!session_present && bucket_forget(bk) != SP_OK)
        LOG_WARN("could not clear the delivery window");
    if (pipeline_subscribe(p, link, err, errlen) != SP_OK) {
        mqlink_drop(link);
        return SP_ERR_MQTT;
    }
    LOG_INFO("mqtt connected session_present=%d", session_present);
    return SP_OK;
}

/* Connects at start, retrying with backoff until deadline_ms or a stop. */
static int link_up(struct mqlink *link, struct pipeline *p, struct bucket *bk, int64_t deadline_ms)
{
    char err[512];
    int delay = 100;

    while (!stop_requested) {
        if (link_try(link, p, bk, err, sizeof(err)) == SP_OK)
            return SP_OK;
        if (mono_ms() > deadline_ms) {
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

/* The TLS listener's files: the options, else <data_dir>/tls/server.{crt,key}. */
static int find_tls(const struct conf *c, char *cert, char *key, size_t cap)
{
    if (*c->tls_cert || *c->tls_key) {
        if (!*c->tls_cert || !*c->tls_key) {
            LOG_ERROR("tls_cert and tls_key go together");
            return -1;
        }
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

static int cmd_run(struct conf *c)
{
    struct registry *reg = NULL;
    struct bucket *bk = NULL;
    struct pool *pool = NULL;
    struct pipeline *p = NULL;
    struct broker *broker = NULL;
    struct mqlink *link = NULL;
    struct host_limits lim;
    char err[1024], host_name[256], plugin[600], cert[600], key[600];
    int port, rc = 1, lock = -1;

    log_level = log_level_parse(c->log_level);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Blocks of 128 KiB or more (an exceptional batch's publishes and worker
     * frames) are mapped and given back when freed. Set explicitly, the
     * threshold stays put; glibc would otherwise raise it after the first
     * large free and keep such blocks in the heap for good (docs/facts.md). */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);

    if (mqlink_check_version(err, sizeof(err))) {
        LOG_ERROR("%s", err);
        return 1;
    }
    /* Before anything touches the data directory: a second daemon on it
     * would adopt our broker and fight us for the client id. */
    if (datadir_lock(c->data_dir, &lock, err, sizeof(err))) {
        LOG_ERROR("%s", err);
        return 1;
    }
    if (registry_open(c->data_dir, &reg, err, sizeof(err)) ||
        bucket_open(c->data_dir,
                    strcmp(c->sync, "full") == 0 ? BUCKET_SYNC_FULL : BUCKET_SYNC_NORMAL, &bk, err,
                    sizeof(err))) {
        LOG_ERROR("cannot open data directory dir=%s error=\"%s\"", c->data_dir, err);
        goto out;
    }
    if (registry_load_master(reg, err, sizeof(err))) {
        LOG_ERROR("cannot load the master key dir=%s error=\"%s\"", c->data_dir, err);
        goto out;
    }
    host_limits_default(&lim);
    lim.instructions = (uint64_t)c->lua_instructions;
    lim.memory = (size_t)c->lua_memory_mb * 1024 * 1024;
    lim.max_records = (size_t)c->lua_records;
    lim.max_publishes = (size_t)c->lua_publishes;
    lim.script_size = (size_t)c->lua_script_kb * 1024;
    lim.max_publish_bytes = (size_t)c->lua_publish_kb * 1024;
    /* The worker's address space: every analysis at its memory cap, plus
     * the interpreter, the batch arena and the buffers. */
    struct pool_opts po = {
        .exe = "/proc/self/exe",
        .worker = {.limits = lim, .address_space = (size_t)2 << 30, .cpu_seconds = 24 * 3600},
        .wall_ms = c->lua_timeout_ms};
    if (pool_new(&po, &pool, err, sizeof(err))) {
        LOG_ERROR("cannot start the Lua worker error=\"%s\"", err);
        goto out;
    }
    if (pipeline_new(c, reg, bk, pool, &p)) {
        LOG_ERROR("out of memory");
        goto out;
    }
    pipeline_scan_analyses(p);

    if (*c->broker) {
        if (parse_broker_url(c->broker, host_name, sizeof(host_name), &port)) {
            LOG_ERROR("bad --broker '%s': expected mqtt://host:port", c->broker);
            goto out;
        }
    } else {
        if (find_plugin(c, plugin, sizeof plugin) || find_tls(c, cert, key, sizeof cert))
            goto out;
        struct broker_opts bo = {.mosquitto = c->mosquitto,
                                 .data_dir = c->data_dir,
                                 .bind = c->bind,
                                 .port = c->port,
                                 .max_inflight = c->batch,
                                 .plugin = plugin,
                                 .tls_cert = cert,
                                 .tls_key = key,
                                 .tls_port = c->tls_port,
                                 .device_publish = c->device_publish,
                                 .device_subscribe = c->device_subscribe,
                                 .cross_profile = strcmp(c->device_cross_profile, "on") == 0,
                                 .client_id = c->client_id};
        if (broker_start(&bo, &broker, err, sizeof(err))) {
            LOG_ERROR("%s", err);
            goto out;
        }
        snprintf(host_name, sizeof(host_name), "%s", broker_host(broker));
        port = broker_port(broker);
        if (*cert)
            LOG_INFO("broker tls listen=%s:%d cert=%s", c->bind, c->tls_port, cert);
    }
    struct mqlink_opts mo = {.host = host_name,
                             .port = port,
                             .username = broker ? BROKER_DAEMON_USER : c->broker_username,
                             .password = broker ? broker_secret(broker) : c->broker_password,
                             .client_id = c->client_id,
                             .receive_max = c->batch,
                             .keepalive = 30};
    if (mqlink_new(&mo, &link, err, sizeof(err))) {
        LOG_ERROR("%s", err);
        goto out;
    }
    if (link_up(link, p, bk, mono_ms() + 15000))
        goto out;
    LOG_INFO("sealpipe running version=%s broker=%s:%d data_dir=%s analyses=%zu", sp_version(),
             host_name, port, c->data_dir, pool_count(pool));

    /*
     * The main loop never blocks for long: while the link is down it retries
     * one connection at a time (backoff up to 5 s), so the broker check and
     * a stop request are seen within a second either way.
     */
    int64_t now = mono_ms();
    int64_t next_stats = now + c->stats_interval * 1000LL, next_check = now + 1000;
    int64_t next_try = 0, last_restart = 0, next_scan = now + 500;
    int connected = 1, delay = 100, restarts = 0;
    while (!stop_requested) {
        if (connected) {
            int n = pipeline_step(p, link, 200);
            if (n == SP_ERR_MQTT || n == SP_ERR_DB) {
                connected = 0;
                delay = 100;
                /* After a database error (e.g. disk full) do not spin. */
                next_try = mono_ms() + (n == SP_ERR_DB ? 500 : 0);
            }
        } else if (mono_ms() >= next_try) {
            if (link_try(link, p, bk, err, sizeof(err)) == SP_OK) {
                connected = 1;
            } else {
                LOG_WARN("mqtt connect failed error=\"%s\" retry_ms=%d", err, delay);
                next_try = mono_ms() + delay;
                delay = delay < 5000 ? delay * 2 : 5000;
            }
        } else {
            usleep(50 * 1000);
        }
        int64_t t = mono_ms();
        if (t >= next_scan) {
            /* Hot reload: a changed analysis takes effect within a second. */
            next_scan = t + 500;
            /* Commands from `sealpipe device cmd`, between batches. */
            if (connected && pipeline_commands(p, link) == SP_ERR_MQTT)
                connected = 0;
            if (pipeline_scan_analyses(p) && connected) {
                pipeline_resubscribe(p, link);
                /* Between batches everything read is committed: send now. */
                if (mqlink_flush(link) != SP_OK)
                    connected = 0;
            }
        }
        if (t >= next_check) {
            next_check = t + 1000;
            if (broker && !broker_alive(broker)) {
                /* Five deaths in a row, each within a minute of the last
                 * restart, mean it cannot run here: exit rather than loop. */
                restarts = t - last_restart < 60000 ? restarts + 1 : 1;
                last_restart = t;
                if (restarts <= 5)
                    LOG_ERROR("embedded broker exited; restarting (attempt %d of 5)", restarts);
                if (restarts > 5 || broker_restart(broker, err, sizeof(err))) {
                    LOG_ERROR("embedded broker cannot be restarted error=\"%s\"; exiting",
                              restarts > 5 ? "it died 5 times within a minute each" : err);
                    goto out;
                }
                next_try = 0; /* reconnect now */
            }
        }
        if (t >= next_stats) {
            next_stats = t + c->stats_interval * 1000LL;
            pipeline_log_stats(p);
        }
    }
    LOG_INFO("stopping: last batch committed and acknowledged");
    pipeline_log_stats(p);
    rc = 0;
out:
    mqlink_free(link);
    broker_stop(broker);
    pipeline_free(p);
    pool_free(pool);
    bucket_close(bk);
    registry_close(reg);
    datadir_unlock(lock);
    return rc;
}

/*
 * Takes --data-dir/--config (and their = forms) out of argv for the registry
 * commands, applying them to c. Returns the new argc, or -1 on a bad option.
 */
static int take_globals(struct conf *c, int argc, char **argv)
{
    char err[512];
    int out = 0;

    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *name = NULL, *value = NULL;
        if (strcmp(a, "--data-dir") == 0 || strcmp(a, "--config") == 0 ||
            strcmp(a, "--analyses-dir") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "sealpipe: %s needs a value\n", a);
                return -1;
            }
            name = a + 2;
            value = argv[++i];
        } else if (strncmp(a, "--data-dir=", 11) == 0 || strncmp(a, "--config=", 9) == 0 ||
                   strncmp(a, "--analyses-dir=", 15) == 0) {
            static char nm[32];
            const char *eq = strchr(a, '=');
            snprintf(nm, sizeof(nm), "%.*s", (int)(eq - a - 2), a + 2);
            name = nm;
            value = eq + 1;
        }
        if (!name) {
            argv[out++] = argv[i];
            continue;
        }
        int rc = strcmp(name, "config") == 0 ? conf_load_file(c, value, err, sizeof(err))
                                             : conf_set(c, name, value, err, sizeof(err));
        if (rc) {
            fprintf(stderr, "sealpipe: %s\n", err);
            return -1;
        }
    }
    return out;
}

int main(int argc, char **argv)
{
    struct conf c;
    char err[1024];

    /* A Lua worker started by pool.c: nothing else of main() applies. */
    if (argc > 1 && strcmp(argv[1], "__worker") == 0)
        return worker_command(argc, argv);
    if (sp_init() != SP_OK) {
        fprintf(stderr, "sealpipe: cannot initialize libsodium\n");
        return 1;
    }
    conf_defaults(&c);
    if (getenv("SEALPIPE_DATA_DIR") &&
        conf_set(&c, "data_dir", getenv("SEALPIPE_DATA_DIR"), err, sizeof(err)) != SP_OK) {
        fprintf(stderr, "sealpipe: SEALPIPE_DATA_DIR: %s\n", err);
        return 2;
    }
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("sealpipe %s\n", sp_version());
        return 0;
    }
    if (strcmp(cmd, "config") == 0) {
        conf_print_example(stdout);
        return 0;
    }
    if (strcmp(cmd, "run") == 0) {
        for (int i = 2; i < argc; i++)
            if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
                run_usage(stdout);
                return 0;
            }
        int used = conf_parse_args(&c, argc - 2, argv + 2, err, sizeof(err));
        if (used < 0) {
            fprintf(stderr, "sealpipe run: %s\n", err);
            return 2;
        }
        if (used != argc - 2) {
            fprintf(stderr, "sealpipe run: unexpected argument '%s' (see --help)\n",
                    argv[2 + used]);
            return 2;
        }
        return cmd_run(&c);
    }
    if (strcmp(cmd, "device") == 0 || strcmp(cmd, "token") == 0 || strcmp(cmd, "key") == 0 ||
        strcmp(cmd, "profile") == 0) {
        int n = take_globals(&c, argc - 1, argv + 1);
        if (n < 0)
            return 2;
        return cli_run(c.data_dir, c.analyses_dir, n, argv + 1);
    }
    fprintf(stderr, "sealpipe: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
