/*
 * loadgen.c - the fleet of scripts/bench: many devices, one process.
 *
 * Reads a credentials file (one device a line, as `sealpipe device add
 * --json` gives them: "serial token cipher key_hex auth_hash device_hash"),
 * opens --conns MQTT v5 connections that log in through the broker plugin as
 * production devices do (--login device: one connection per device, user
 * "Token" and its token; --login context: the profile context, user and
 * password the first and last 8 hex digits of the profile's auth hash, each
 * connection publishing for its share of the devices), and publishes sealed
 * TagoTiP/S envelopes to $tips/<serial>/push. Message j of the run goes to
 * device j % devices, so the load is spread round-robin and each device's
 * envelope counter (1, 2, ...) grows by one per message; {n} in --body is
 * replaced by that counter. Flat out (--rate 0) a connection keeps at most
 * --window messages unacknowledged (QoS 1: PUBACK; QoS 0: written); at
 * --rate R a token bucket releases R messages a second.
 *
 * With --answers each connection subscribes to its devices' answer topics
 * $tips/<serial>/ack, opens every answer with the device's key and checks it
 * is OK. A device's answers come in the order of its messages, so its k-th
 * answer is for message k * devices + d: publish -> answer latency is exact
 * (CLOCK_MONOTONIC, the clock of Python's time.monotonic()).
 *
 * Protocol with scripts/bench, on stdout: --warmup messages are sent first
 * (and, with --answers, answered), then "ready"; the measured --count
 * messages start when a line arrives on stdin; once all of them are
 * acknowledged (with the journal: journaled by the broker) "published" is
 * printed, before the answers are waited for; and the last line is
 *   "sent=N done=N answers=N errors=E t0=T first=T last_pub=T last_done=T
 *    last_answer=T p50=S p90=S p99=S max=S cpu=S"
 * (times in seconds; p* of publish -> answer, -1 without answers; cpu: this
 * process's user+system seconds during the measured part). Exit status 0
 * when everything was acknowledged (and answered OK), 1 on a failure or
 * --timeout seconds without progress (the line is printed all the same), 2
 * on a usage error. With --times FILE the publish times of the measured
 * messages are written there, message by message (j = warmup, warmup + 1,
 * ...), as native doubles: scripts/bench pairs them with the commit times it
 * polls to get publish -> commit per message.
 *
 * One thread; it drives every libmosquitto client itself with poll(2)
 * (mosquitto_loop_read/write/misc), so 100 connections cost one process.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <time.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "sealpipe.h"

#define LG_KEEPALIVE  60
#define LG_SUB_CHUNK  100  /* topics per SUBSCRIBE packet */
#define LG_BURST      1000 /* messages published before the sockets are serviced again */
#define LG_LINE       1024
#define LG_FIELDS     6
#define LG_BODY_MAX   1024
#define LG_TOPIC_MAX  (SP_MAX_SERIAL + 16)
#define LG_MAX_DEVICE 1000000

struct device {
    char serial[SP_MAX_SERIAL + 1];
    char token[128];
    int suite;
    uint8_t key[SP_MAX_KEY_LEN];
    size_t key_len;
    uint8_t auth_hash[SP_HASH_LEN];
    uint8_t device_hash[SP_HASH_LEN];
    int conn;          /* index of the connection that publishes for it */
    uint64_t answered; /* answers received */
};

struct conn {
    struct mosquitto *m;
    int state; /* 0 connecting, 1 connected, -1 refused or lost */
    uint64_t queued, done;
    int subs_waiting; /* SUBACKs not yet received */
};

struct opts {
    const char *host, *creds, *body, *times;
    int port, qos, conns, context, answers, timeout;
    uint64_t count, warmup, window;
    double rate;
};

struct run {
    struct opts o;
    struct device *dev;
    size_t ndev;
    struct conn *conn;
    size_t *slot; /* serial -> device index + 1, open addressing */
    size_t nslot;
    double *pub_at; /* publish time of message j */
    double *lat;    /* publish -> answer of measured messages, in arrival order */
    uint64_t next, total, nlat, answers, errors;
    double t0, first, last_pub, last_done, last_answer, progress;
    uint64_t done_seen;
    int said_published; /* "published" printed */
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static uint64_t fnv(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* The device named by s[0..n), or NULL. */
static struct device *device_find(struct run *r, const char *s, size_t n)
{
    for (size_t i = fnv(s, n) % r->nslot;; i = (i + 1) % r->nslot) {
        size_t v = r->slot[i];
        if (!v)
            return NULL;
        struct device *d = &r->dev[v - 1];
        if (strlen(d->serial) == n && memcmp(d->serial, s, n) == 0)
            return d;
    }
}

static int hex_field(const char *hex, uint8_t *out, size_t cap, size_t *n)
{
    int rc = sp_hex_decode(hex, strlen(hex), out, cap);
    if (rc < 0)
        return -1;
    if (n)
        *n = (size_t)rc;
    else if ((size_t)rc != cap)
        return -1;
    return 0;
}

/* One line of the credentials file into d. 0 or -1. */
static int device_parse(char *line, struct device *d)
{
    char *f[LG_FIELDS], *save = NULL;
    int n = 0;
    for (char *t = strtok_r(line, " \t\r\n", &save); t && n < LG_FIELDS;
         t = strtok_r(NULL, " \t\r\n", &save))
        f[n++] = t;
    if (n != LG_FIELDS || strlen(f[0]) > SP_MAX_SERIAL || strlen(f[1]) >= sizeof(d->token))
        return -1;
    strcpy(d->serial, f[0]);
    strcpy(d->token, f[1]);
    d->suite = sp_suite_from_name(f[2]);
    if (d->suite < 0 || hex_field(f[3], d->key, sizeof(d->key), &d->key_len) < 0 ||
        d->key_len != sp_suite_key_len(d->suite) ||
        hex_field(f[4], d->auth_hash, SP_HASH_LEN, NULL) < 0 ||
        hex_field(f[5], d->device_hash, SP_HASH_LEN, NULL) < 0)
        return -1;
    return 0;
}

static int devices_load(struct run *r)
{
    FILE *f = fopen(r->o.creds, "r");
    char line[LG_LINE];
    size_t cap = 0;
    if (!f) {
        fprintf(stderr, "loadgen: %s: %s\n", r->o.creds, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '\n' || line[0] == '#')
            continue;
        if (r->ndev == cap) {
            cap = cap ? 2 * cap : 256;
            struct device *nd = cap <= LG_MAX_DEVICE ? realloc(r->dev, cap * sizeof(*nd)) : NULL;
            if (!nd)
                break;
            r->dev = nd;
        }
        memset(&r->dev[r->ndev], 0, sizeof(r->dev[0]));
        if (device_parse(line, &r->dev[r->ndev]) < 0) {
            fprintf(stderr, "loadgen: %s: line %zu is not a device\n", r->o.creds, r->ndev + 1);
            fclose(f);
            return -1;
        }
        r->ndev++;
    }
    fclose(f);
    if (r->ndev == 0) {
        fprintf(stderr, "loadgen: %s: no devices\n", r->o.creds);
        return -1;
    }
    r->nslot = 2 * r->ndev + 1;
    if (!(r->slot = calloc(r->nslot, sizeof(*r->slot))))
        return -1;
    for (size_t i = 0; i < r->ndev; i++) {
        const char *s = r->dev[i].serial;
        size_t k = fnv(s, strlen(s)) % r->nslot;
        while (r->slot[k])
            k = (k + 1) % r->nslot;
        r->slot[k] = i + 1;
    }
    return 0;
}

static void on_connect(struct mosquitto *m, void *ud, int rc, int flags,
                       const mosquitto_property *props)
{
    struct conn *c = ud;
    (void)m;
    (void)flags;
    (void)props;
    if (rc != 0)
        fprintf(stderr, "loadgen: connection refused: %s\n", mosquitto_reason_string(rc));
    c->state = rc == 0 ? 1 : -1;
}

static int closing; /* set before the clients disconnect at the end */

static void on_disconnect(struct mosquitto *m, void *ud, int rc, const mosquitto_property *props)
{
    struct conn *c = ud;
    (void)m;
    (void)props;
    if (closing)
        return;
    fprintf(stderr, "loadgen: disconnected: %s\n", mosquitto_reason_string(rc));
    c->state = -1;
}

static void on_publish(struct mosquitto *m, void *ud, int mid, int reason,
                       const mosquitto_property *props)
{
    struct conn *c = ud;
    (void)m;
    (void)mid;
    (void)props;
    if (reason >= 0x80) {
        fprintf(stderr, "loadgen: publish refused: %s\n", mosquitto_reason_string(reason));
        c->state = -1;
    }
    c->done++;
}

static void on_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *granted,
                         const mosquitto_property *props)
{
    struct conn *c = ud;
    (void)m;
    (void)mid;
    (void)props;
    for (int i = 0; i < n; i++)
        if (granted[i] >= 0x80) {
            fprintf(stderr, "loadgen: subscription refused: %s\n",
                    mosquitto_reason_string(granted[i]));
            c->state = -1;
        }
    c->subs_waiting--;
}

/* 1 when the answer is a sealed OK for device d. */
static int answer_ok(const struct device *d, const uint8_t *p, size_t len)
{
    struct sp_env_header h;
    struct sp_tip_ack ack;
    uint8_t inner[SP_MAX_FRAME + 1];
    size_t n;

    if (sp_env_parse_header(p, len, &h) != 0 || h.method != SP_METHOD_ACK ||
        memcmp(h.device_hash, d->device_hash, SP_HASH_LEN) != 0 ||
        sp_env_open(&h, p, len, d->key, d->key_len, inner, sizeof(inner), &n) != 0)
        return 0;
    return sp_tip_parse_ack((const char *)inner, n, SP_ACK_INNER, &ack) == 0 &&
           ack.status == SP_ACK_OK;
}

static struct run *the_run; /* for on_message: the clients' userdata is their conn */

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    struct run *r = the_run;
    double t = mono_s();
    (void)m;
    (void)ud;
    (void)props;
    /* $tips/<serial>/ack */
    struct device *d = NULL;
    if (strncmp(msg->topic, "$tips/", 6) == 0) {
        const char *s = msg->topic + 6, *e = strrchr(s, '/');
        d = e && e > s ? device_find(r, s, (size_t)(e - s)) : NULL;
    }
    if (!d) {
        fprintf(stderr, "loadgen: message on %s\n", msg->topic);
        r->errors++;
        return;
    }
    uint64_t j = d->answered++ * r->ndev + (uint64_t)(d - r->dev);
    if (!answer_ok(d, msg->payload, (size_t)msg->payloadlen)) {
        if (r->errors++ < 5)
            fprintf(stderr, "loadgen: answer %" PRIu64 " of %s is not a sealed OK\n", d->answered,
                    d->serial);
    }
    r->answers++;
    r->last_answer = t;
    r->progress = t;
    if (j < r->next && j >= r->o.warmup)
        r->lat[r->nlat++] = t - r->pub_at[j];
}

/* Copies the template with every "{n}" replaced by n; the length or -1. */
static int body_expand(const char *tmpl, uint64_t n, char *out, size_t cap)
{
    char num[24];
    size_t nlen = (size_t)snprintf(num, sizeof(num), "%" PRIu64, n), o = 0;
    for (const char *p = tmpl; *p;) {
        int is_n = p[0] == '{' && p[1] == 'n' && p[2] == '}';
        size_t k = is_n ? nlen : 1;
        if (o + k >= cap)
            return -1;
        memcpy(out + o, is_n ? num : p, k);
        o += k;
        p += is_n ? 3 : 1;
    }
    out[o] = '\0';
    return (int)o;
}

/* Seals and publishes message j. 0, 1 when its connection's window is full, -1. */
static int publish_one(struct run *r, uint64_t j)
{
    struct device *d = &r->dev[j % r->ndev];
    struct conn *c = &r->conn[d->conn];
    uint32_t counter = (uint32_t)(j / r->ndev + 1);
    char body[LG_BODY_MAX], inner[LG_BODY_MAX + SP_MAX_SERIAL + 2], topic[LG_TOPIC_MAX];
    uint8_t env[SP_ENV_HEADER_LEN + sizeof(inner) + SP_ENV_MAX_TAG];
    size_t env_len;
    int n, rc;

    if (c->queued - c->done >= r->o.window)
        return 1;
    if ((n = body_expand(r->o.body, counter, body, sizeof(body))) < 0 ||
        (n = sp_inner_build(SP_METHOD_PUSH, d->serial, body, (size_t)n, inner, sizeof(inner))) <
            0 ||
        (rc = sp_env_seal(d->suite, SP_METHOD_PUSH, counter, d->auth_hash, d->device_hash, d->key,
                          d->key_len, (const uint8_t *)inner, (size_t)n, env, sizeof(env),
                          &env_len)) < 0) {
        fprintf(stderr, "loadgen: cannot seal message %" PRIu64 " of %s\n", j, d->serial);
        return -1;
    }
    snprintf(topic, sizeof(topic), "$tips/%s/push", d->serial);
    r->pub_at[j] = mono_s();
    rc = mosquitto_publish_v5(c->m, NULL, topic, (int)env_len, env, r->o.qos, false, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "loadgen: publish: %s\n", mosquitto_strerror(rc));
        return -1;
    }
    c->queued++;
    r->next++;
    r->last_pub = r->pub_at[j];
    return 0;
}

/*
 * Publishes what the rate and the windows allow, up to message `upto`.
 * Returns the milliseconds poll(2) may wait before the next call: 0 when
 * the burst limit stopped it, until the next token at a fixed rate, else
 * 100 (an acknowledgement or an answer wakes it sooner); -1 on a failure.
 */
static int publish_some(struct run *r, uint64_t upto, double started)
{
    uint64_t allowed = upto;
    int wait_ms = 100;
    if (r->o.rate > 0 && r->next >= r->o.warmup) {
        double at = mono_s() - started;
        uint64_t due = r->o.warmup + (uint64_t)(at * r->o.rate) + 1;
        allowed = due < upto ? due : upto;
        if (due < upto)
            wait_ms = 1 + (int)(((double)(due - r->o.warmup) / r->o.rate - at) * 1e3);
    }
    for (int burst = 0; r->next < allowed; burst++) {
        if (burst == LG_BURST)
            return 0;
        int rc = publish_one(r, r->next);
        if (rc)
            return rc < 0 ? -1 : 100; /* a window is full: wait for acknowledgements */
    }
    return wait_ms;
}

/* One poll(2) over every connection, at most wait_ms. 0 or -1. */
static int service(struct run *r, struct pollfd *pf, int wait_ms)
{
    static double misc_at; /* keepalives need mosquitto_loop_misc about once a second */
    size_t nc = (size_t)r->o.conns;
    double now = mono_s();
    int misc = now - misc_at >= 1.0;
    if (misc)
        misc_at = now;
    for (size_t i = 0; i < nc; i++) {
        pf[i].fd = mosquitto_socket(r->conn[i].m);
        pf[i].events = POLLIN | (mosquitto_want_write(r->conn[i].m) ? POLLOUT : 0);
        pf[i].revents = 0;
    }
    if (poll(pf, nc, wait_ms) < 0 && errno != EINTR)
        return -1;
    for (size_t i = 0; i < nc; i++) {
        struct mosquitto *m = r->conn[i].m;
        int rc = MOSQ_ERR_SUCCESS;
        if (pf[i].revents & (POLLIN | POLLHUP | POLLERR))
            rc = mosquitto_loop_read(m, 1);
        if (rc == MOSQ_ERR_SUCCESS && (pf[i].revents & POLLOUT))
            rc = mosquitto_loop_write(m, 1);
        if (rc == MOSQ_ERR_SUCCESS && misc)
            rc = mosquitto_loop_misc(m);
        if (rc != MOSQ_ERR_SUCCESS || r->conn[i].state < 0) {
            fprintf(stderr, "loadgen: connection %zu: %s\n", i,
                    rc != MOSQ_ERR_SUCCESS ? mosquitto_strerror(rc) : "failed");
            return -1;
        }
    }
    return 0;
}

static uint64_t total_done(const struct run *r)
{
    uint64_t n = 0;
    for (int i = 0; i < r->o.conns; i++)
        n += r->conn[i].done;
    return n;
}

/*
 * Publishes messages up to `upto` and waits until all are acknowledged and,
 * with --answers, answered. 0, or -1 on a failure or --timeout idle seconds.
 */
static int run_until(struct run *r, uint64_t upto, struct pollfd *pf)
{
    double started = mono_s();
    r->progress = started;
    for (;;) {
        int wait_ms = publish_some(r, upto, started);
        if (wait_ms < 0)
            return -1;
        uint64_t done = total_done(r);
        double now = mono_s();
        if (done != r->done_seen) {
            r->done_seen = done;
            r->last_done = r->progress = now;
        }
        if (upto == r->total && r->next == upto && done == upto && !r->said_published) {
            r->said_published = 1;
            printf("published\n");
            fflush(stdout);
        }
        if (r->next == upto && done == upto && (!r->o.answers || r->answers >= upto))
            return 0;
        if (now - r->progress > r->o.timeout) {
            fprintf(stderr,
                    "loadgen: timeout: %" PRIu64 " published, %" PRIu64 " done, %" PRIu64
                    " answered of %" PRIu64 "\n",
                    r->next, done, r->answers, upto);
            return -1;
        }
        if (service(r, pf, wait_ms) < 0)
            return -1;
    }
}

/* Subscribes connection c to the answer topics of its devices. 0 or -1. */
static int subscribe_answers(struct run *r, int ci)
{
    struct conn *c = &r->conn[ci];
    char *topics[LG_SUB_CHUNK];
    int n = 0, rc = 0;
    for (size_t i = 0; i <= r->ndev && rc == 0; i++) {
        if (i < r->ndev && r->dev[i].conn == ci) {
            size_t len = strlen(r->dev[i].serial) + 11;
            if (!(topics[n] = malloc(len)))
                return -1;
            snprintf(topics[n++], len, "$tips/%s/ack", r->dev[i].serial);
        }
        if (n == LG_SUB_CHUNK || (i == r->ndev && n > 0)) {
            rc = mosquitto_subscribe_multiple(c->m, NULL, n, topics, 1, 0, NULL);
            c->subs_waiting++;
            while (n > 0)
                free(topics[--n]);
        }
    }
    return rc == MOSQ_ERR_SUCCESS ? 0 : -1;
}

/* Connects every client, and subscribes them. 0 or -1. */
static int connect_all(struct run *r, struct pollfd *pf)
{
    char id[64], user[SP_HASH_LEN * 2 + 1], hex[SP_HASH_LEN * 2 + 1];
    mosquitto_property *props = NULL;
    if (sp_hex_encode(r->dev[0].auth_hash, SP_HASH_LEN, hex, sizeof(hex)) < 0)
        return -1;
    for (int i = 0; i < r->o.conns; i++) {
        struct conn *c = &r->conn[i];
        const struct device *d = &r->dev[i];
        snprintf(id, sizeof(id), "loadgen-%ld-%d", (long)getpid(), i);
        if (!(c->m = mosquitto_new(id, true, c)))
            return -1;
        mosquitto_int_option(c->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
        mosquitto_int_option(c->m, MOSQ_OPT_TCP_NODELAY, 1);
        snprintf(user, sizeof(user), "%.8s", hex);
        if (mosquitto_username_pw_set(c->m, r->o.context ? user : "Token",
                                      r->o.context ? hex + 8 : d->token) != MOSQ_ERR_SUCCESS)
            return -1;
        mosquitto_connect_v5_callback_set(c->m, on_connect);
        mosquitto_disconnect_v5_callback_set(c->m, on_disconnect);
        mosquitto_publish_v5_callback_set(c->m, on_publish);
        mosquitto_subscribe_v5_callback_set(c->m, on_subscribe);
        mosquitto_message_v5_callback_set(c->m, on_message);
        int rc = mosquitto_connect_bind_v5(c->m, r->o.host, r->o.port, LG_KEEPALIVE, NULL, props);
        if (rc != MOSQ_ERR_SUCCESS) {
            fprintf(stderr, "loadgen: connect to %s:%d: %s\n", r->o.host, r->o.port,
                    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
            return -1;
        }
    }
    double deadline = mono_s() + r->o.timeout;
    for (int subscribed = 0;;) {
        int up = 0, waiting = 0;
        for (int i = 0; i < r->o.conns; i++) {
            up += r->conn[i].state == 1;
            waiting += r->conn[i].subs_waiting;
        }
        if (up == r->o.conns && !subscribed && r->o.answers) {
            for (int i = 0; i < r->o.conns; i++)
                if (subscribe_answers(r, i) < 0)
                    return -1;
            subscribed = 1;
            continue;
        }
        if (up == r->o.conns && waiting == 0 && (subscribed || !r->o.answers))
            return 0;
        if (mono_s() > deadline) {
            fprintf(stderr, "loadgen: %d of %d connections up after %d s\n", up, r->o.conns,
                    r->o.timeout);
            return -1;
        }
        if (service(r, pf, 100) < 0)
            return -1;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double quantile(const double *v, uint64_t n, double q)
{
    return n ? v[(uint64_t)(q * (double)(n - 1) + 0.5)] : -1;
}

static void print_result(struct run *r, double cpu)
{
    uint64_t measured = r->next > r->o.warmup ? r->next - r->o.warmup : 0;
    uint64_t done = total_done(r);
    qsort(r->lat, r->nlat, sizeof(double), cmp_double);
    printf("sent=%" PRIu64 " done=%" PRIu64 " answers=%" PRIu64 " errors=%" PRIu64
           " t0=%.6f first=%.6f last_pub=%.6f last_done=%.6f last_answer=%.6f"
           " p50=%.6f p90=%.6f p99=%.6f max=%.6f cpu=%.6f\n",
           measured, done > r->o.warmup ? done - r->o.warmup : 0,
           r->answers > r->o.warmup ? r->answers - r->o.warmup : 0, r->errors, r->t0, r->first,
           r->last_pub, r->last_done, r->last_answer, quantile(r->lat, r->nlat, 0.5),
           quantile(r->lat, r->nlat, 0.9), quantile(r->lat, r->nlat, 0.99),
           r->nlat ? r->lat[r->nlat - 1] : -1, cpu);
    fflush(stdout);
}

/* The publish times of the measured messages into --times. 0 or -1. */
static int write_times(const struct run *r)
{
    FILE *f = fopen(r->o.times, "wb");
    size_t n = (size_t)(r->next - r->o.warmup);
    int bad = !f || fwrite(r->pub_at + r->o.warmup, sizeof(double), n, f) != n;
    if ((f && fclose(f) != 0) || bad) {
        fprintf(stderr, "loadgen: cannot write %s\n", r->o.times);
        return -1;
    }
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench-loadgen --port P --creds FILE --count N [--host H]\n"
                    "         [--login device|context] [--conns C] [--qos 0|1] [--warmup W]\n"
                    "         [--rate MSG_PER_S] [--window W] [--body TEMPLATE] [--answers]\n"
                    "         [--timeout SEC] [--times FILE]\n");
    return 2;
}

static int parse_args(struct opts *o, int argc, char **argv)
{
    *o = (struct opts){
        .host = "127.0.0.1", .body = "[seq:={n}]", .qos = 1, .timeout = 30, .window = 1000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--answers") == 0) {
            o->answers = 1;
            continue;
        }
        if (!v)
            return -1;
        i++;
        if (strcmp(a, "--host") == 0)
            o->host = v;
        else if (strcmp(a, "--port") == 0)
            o->port = atoi(v);
        else if (strcmp(a, "--creds") == 0)
            o->creds = v;
        else if (strcmp(a, "--login") == 0 && (!strcmp(v, "device") || !strcmp(v, "context")))
            o->context = strcmp(v, "context") == 0;
        else if (strcmp(a, "--conns") == 0)
            o->conns = atoi(v);
        else if (strcmp(a, "--qos") == 0)
            o->qos = atoi(v);
        else if (strcmp(a, "--count") == 0)
            o->count = strtoull(v, NULL, 10);
        else if (strcmp(a, "--warmup") == 0)
            o->warmup = strtoull(v, NULL, 10);
        else if (strcmp(a, "--rate") == 0)
            o->rate = atof(v);
        else if (strcmp(a, "--window") == 0)
            o->window = strtoull(v, NULL, 10);
        else if (strcmp(a, "--body") == 0)
            o->body = v;
        else if (strcmp(a, "--timeout") == 0)
            o->timeout = atoi(v);
        else if (strcmp(a, "--times") == 0)
            o->times = v;
        else
            return -1;
    }
    if (o->port <= 0 || o->port > 65535 || !o->creds || o->count == 0 || o->qos < 0 || o->qos > 1 ||
        o->conns < 0 || o->rate < 0 || o->window == 0 || o->timeout < 1)
        return -1;
    return 0;
}

/* Checks --body once, as the daemon will read it. 0 or -1. */
static int body_check(const char *tmpl)
{
    static struct sp_tip_body parsed;
    char body[LG_BODY_MAX];
    int n = body_expand(tmpl, 1, body, sizeof(body));
    if (n < 0 || sp_tip_parse_body(body, (size_t)n, &parsed) != 0) {
        fprintf(stderr, "loadgen: --body %s is not a TagoTiP PUSH body\n", tmpl);
        return -1;
    }
    return 0;
}

/* Sets up the run from its options: devices, connections, buffers. 0 or -1. */
static int run_init(struct run *r)
{
    if (body_check(r->o.body) < 0 || devices_load(r) < 0)
        return -1;
    if (!r->o.context)
        r->o.conns = (int)r->ndev; /* one connection per device */
    else if (r->o.conns == 0 || (size_t)r->o.conns > r->ndev)
        r->o.conns = (int)(r->ndev < 100 ? r->ndev : 100);
    for (size_t i = 0; i < r->ndev; i++)
        r->dev[i].conn = (int)(i % (size_t)r->o.conns);
    r->total = r->o.warmup + r->o.count;
    r->conn = calloc((size_t)r->o.conns, sizeof(*r->conn));
    r->pub_at = calloc(r->total, sizeof(*r->pub_at));
    r->lat = calloc(r->o.count, sizeof(*r->lat));
    return r->conn && r->pub_at && r->lat ? 0 : -1;
}

int main(int argc, char **argv)
{
    static struct run run;
    struct run *r = &run;
    struct pollfd *pf = NULL;
    char line[16];
    int rc = 1;

    if (parse_args(&r->o, argc, argv) < 0)
        return usage();
    if (sp_init() != 0 || mosquitto_lib_init() != MOSQ_ERR_SUCCESS || run_init(r) < 0)
        return 1;
    the_run = r;
    if (!(pf = calloc((size_t)r->o.conns, sizeof(*pf))) || connect_all(r, pf) < 0)
        goto out;
    if (r->o.warmup && run_until(r, r->o.warmup, pf) < 0)
        goto out;
    printf("ready\n");
    fflush(stdout);
    if (!fgets(line, sizeof(line), stdin))
        goto out;
    double cpu0 = cpu_s();
    r->t0 = mono_s();
    rc = run_until(r, r->total, pf) < 0;
    r->first = r->pub_at[r->o.warmup];
    if (r->o.times && write_times(r) < 0)
        rc = 1;
    print_result(r, cpu_s() - cpu0);
out:
    closing = 1;
    for (int i = 0; r->conn && i < r->o.conns; i++)
        if (r->conn[i].m) {
            mosquitto_disconnect(r->conn[i].m);
            mosquitto_destroy(r->conn[i].m);
        }
    mosquitto_lib_cleanup();
    free(pf);
    return rc;
}
