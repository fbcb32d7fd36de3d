/*
 * count_sub.c - the bare counting subscriber of scripts/bench.
 *
 * The baseline that sealpipe's end-to-end rate is compared with: an MQTT v5
 * client on the same libmosquitto as the daemon that subscribes with the
 * QoS of the phase (--qos 1 for the QoS 1 phase, --qos 0 for the QoS 0 one:
 * the broker then delivers at most QoS 0, as to the devices' publishes),
 * acknowledges every QoS 1 message the ordinary way (libmosquitto sends the
 * PUBACK as it reads the PUBLISH) and does nothing else with it but count.
 * It advertises the same Receive Maximum as the daemon (its --batch), so the
 * broker may keep as many messages in flight to it as to the daemon.
 *
 * Protocol with scripts/bench, on stdout: "ready" once the SUBACK arrived
 * (publishers may start), then, after --count messages,
 *   "count=N bytes=B first=T0 last=T1 run=R wait=W"
 * with T0/T1 the CLOCK_MONOTONIC seconds at which the first and last message
 * arrived (the same clock as Python's time.monotonic()), R the seconds this
 * process ran on a CPU and W the seconds it was runnable but waiting for one
 * (/proc/self/schedstat; -1 where unavailable). Exit status: 0 when
 * all messages arrived, 1 on a timeout (no message for --timeout seconds) or
 * a connection error, 2 on a usage error.
 *
 * Threading: one thread; it drives the libmosquitto loop itself.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

struct counter {
    const char *topic;
    int qos;
    long want;
    long count;
    long long bytes;
    double first, last;
    int ready;  /* 1 after SUBACK, -1 when the subscription was refused */
    int failed; /* CONNACK refused */
};

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_connect(struct mosquitto *m, void *ud, int rc, int flags,
                       const mosquitto_property *props)
{
    struct counter *c = ud;
    (void)flags;
    (void)props;
    if (rc != 0) {
        fprintf(stderr, "count_sub: connection refused: %s\n", mosquitto_reason_string(rc));
        c->failed = 1;
        return;
    }
    if (mosquitto_subscribe_v5(m, NULL, c->topic, c->qos, 0, NULL) != MOSQ_ERR_SUCCESS)
        c->failed = 1;
}

static void on_subscribe(struct mosquitto *m, void *ud, int mid, int qos_count, const int *granted,
                         const mosquitto_property *props)
{
    struct counter *c = ud;
    (void)m;
    (void)mid;
    (void)props;
    c->ready = qos_count >= 1 && granted[0] == c->qos ? 1 : -1;
    if (c->ready == 1) {
        printf("ready\n");
        fflush(stdout);
    }
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    struct counter *c = ud;
    double t = mono_s();
    (void)m;
    (void)props;
    if (c->count == 0)
        c->first = t;
    c->last = t;
    c->count++;
    c->bytes += msg->payloadlen;
}

static void print_result(const struct counter *c)
{
    unsigned long long run = 0, wait = 0;
    double r = -1, w = -1;
    FILE *f = fopen("/proc/self/schedstat", "r");
    if (f) {
        if (fscanf(f, "%llu %llu", &run, &wait) == 2) {
            r = (double)run / 1e9;
            w = (double)wait / 1e9;
        }
        fclose(f);
    }
    printf("count=%ld bytes=%lld first=%.6f last=%.6f run=%.6f wait=%.6f\n", c->count, c->bytes,
           c->first, c->last, r, w);
    fflush(stdout);
}

static int usage(void)
{
    fprintf(stderr, "usage: count_sub --port P --topic FILTER --count N [--host H] [--qos 0|1]\n"
                    "                 [--receive-max R] [--client-id ID] [--timeout SEC]\n"
                    "                 [--username U --password P]\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct counter c = {.qos = 1};
    const char *host = "127.0.0.1", *id = NULL, *user = NULL, *pass = NULL;
    int port = 0, receive_max = 1000, timeout = 30, rc = 1;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return usage();
        if (strcmp(a, "--port") == 0)
            port = atoi(v);
        else if (strcmp(a, "--topic") == 0)
            c.topic = v;
        else if (strcmp(a, "--count") == 0)
            c.want = atol(v);
        else if (strcmp(a, "--host") == 0)
            host = v;
        else if (strcmp(a, "--qos") == 0)
            c.qos = atoi(v);
        else if (strcmp(a, "--receive-max") == 0)
            receive_max = atoi(v);
        else if (strcmp(a, "--client-id") == 0)
            id = v;
        else if (strcmp(a, "--timeout") == 0)
            timeout = atoi(v);
        else if (strcmp(a, "--username") == 0)
            user = v;
        else if (strcmp(a, "--password") == 0)
            pass = v;
        else
            return usage();
        i++;
    }
    /* Port 0 with a path for --host: a unix socket, as the daemon uses. */
    if ((port <= 0 && host[0] != '/') || port > 65535 || !c.topic || c.want <= 0 || c.qos < 0 ||
        c.qos > 1 || receive_max < 1 || receive_max > 65535 || timeout < 1)
        return usage();

    mosquitto_lib_init();
    struct mosquitto *m = mosquitto_new(id, true, &c);
    mosquitto_property *props = NULL;
    if (!m || mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5) ||
        mosquitto_property_add_int16(&props, MQTT_PROP_RECEIVE_MAXIMUM, (uint16_t)receive_max)) {
        fprintf(stderr, "count_sub: cannot set up the client\n");
        goto out;
    }
    if (user && mosquitto_username_pw_set(m, user, pass) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "count_sub: cannot set the credentials\n");
        goto out;
    }
    mosquitto_connect_v5_callback_set(m, on_connect);
    mosquitto_subscribe_v5_callback_set(m, on_subscribe);
    mosquitto_message_v5_callback_set(m, on_message);
    if (mosquitto_connect_bind_v5(m, host, port, 60, NULL, props) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "count_sub: cannot connect to %s:%d\n", host, port);
        goto out;
    }

    long seen = -1;
    double progress = mono_s();
    while (c.count < c.want && !c.failed && c.ready >= 0) {
        int lrc = mosquitto_loop(m, 200, 1);
        if (lrc != MOSQ_ERR_SUCCESS) {
            fprintf(stderr, "count_sub: %s\n", mosquitto_strerror(lrc));
            goto out;
        }
        if (c.count != seen) {
            seen = c.count;
            progress = mono_s();
        } else if (mono_s() - progress > timeout) {
            fprintf(stderr, "count_sub: timeout: %ld of %ld messages after %d s idle\n", c.count,
                    c.want, timeout);
            print_result(&c);
            goto out;
        }
    }
    if (c.failed || c.ready < 0) {
        fprintf(stderr, "count_sub: %s\n", c.failed ? "connection failed" : "subscription refused");
        goto out;
    }
    print_result(&c);
    /* Let the last PUBACKs leave before the DISCONNECT. */
    for (int i = 0; i < 3; i++)
        mosquitto_loop(m, 10, 1);
    mosquitto_disconnect(m);
    rc = 0;
out:
    mosquitto_property_free_all(&props);
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    return rc;
}
