/*
 * session.c - sealpipe-device's MQTT connection (struct session, device.h):
 * connect, publish within a window, subscribe, and collect what arrives,
 * driving the libmosquitto loop in this thread.
 */
#include "device.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    struct session *s = obj;
    (void)m;
    (void)flags;
    (void)props;
    if (s->conn_state == 0) {
        s->conn_rc = rc;
        s->conn_state = rc == 0 ? 1 : -1;
    }
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc, const mosquitto_property *props)
{
    struct session *s = obj;
    (void)m;
    (void)props;
    if (rc != 0 && !s->lost) {
        s->lost = 1;
        s->lost_rc = rc;
    }
}

static void on_publish(struct mosquitto *m, void *obj, int mid, int rc,
                       const mosquitto_property *props)
{
    struct session *s = obj;
    (void)m;
    (void)mid;
    (void)props;
    s->done++;
    if (rc >= 128) {
        s->rejected++;
        s->reject_rc = rc;
    }
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted,
                         const mosquitto_property *props)
{
    struct session *s = obj;
    (void)m;
    (void)mid;
    (void)props;
    s->subscribed = 1;
    for (int i = 0; i < n; i++)
        if (granted[i] >= 128)
            s->subscribed = -1;
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    struct session *s = obj;
    struct rx *r;
    (void)m;
    (void)props;
    if (s->nrx == sizeof(s->rx) / sizeof(s->rx[0])) {
        s->rx_dropped++;
        return;
    }
    r = &s->rx[s->nrx];
    r->topic = strdup(msg->topic);
    r->payload = malloc(msg->payloadlen > 0 ? (size_t)msg->payloadlen : 1);
    if (!r->topic || !r->payload) {
        free(r->topic);
        free(r->payload);
        s->rx_dropped++;
        return;
    }
    r->len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    memcpy(r->payload, msg->payload, r->len);
    s->nrx++;
}

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void session_step(struct session *s, int64_t deadline)
{
    int64_t left = deadline - now_ms();
    /* Wake at least once a second so mosquitto_loop can send PINGREQs. */
    left = left < 0 ? 0 : left > 1000 ? 1000 : left;
    int rc = mosquitto_loop(s->mosq, (int)left, 1);
    if (rc != MOSQ_ERR_SUCCESS && !s->lost) {
        s->lost = 1;
        s->lost_rc = rc;
    }
}

static const char *connack_text(const struct session *s, int rc)
{
    return s->version == MQTT_PROTOCOL_V5 ? mosquitto_reason_string(rc)
                                          : mosquitto_connack_string(rc);
}

int session_lost(const struct session *s)
{
    /* rc is a reason code when the broker sent DISCONNECT, else a MOSQ_ERR. */
    const char *why = s->version == MQTT_PROTOCOL_V5 && s->lost_rc >= 128
                          ? mosquitto_reason_string(s->lost_rc)
                          : mosquitto_strerror(s->lost_rc);
    return fail("lost the connection to the broker: %s (code %d); %" PRIu64 " of %" PRIu64
                " messages acknowledged",
                why, s->lost_rc, s->done, s->queued);
}

int session_open(struct session *s, const struct args *a)
{
    char id[sizeof(DEVICE_PROG) + SP_MAX_SERIAL + 32];
    int rc;

    memset(s, 0, sizeof(*s));
    snprintf(id, sizeof(id), "%s-%s-%ld", DEVICE_PROG, a->serial, (long)getpid());
    s->version = a->mqtt_version;
    s->mosq = mosquitto_new(id, true, s);
    if (!s->mosq)
        return fail("cannot create an MQTT client: %s", strerror(errno));
    mosquitto_int_option(s->mosq, MOSQ_OPT_PROTOCOL_VERSION, a->mqtt_version);
    mosquitto_int_option(s->mosq, MOSQ_OPT_SEND_MAXIMUM, DEVICE_WINDOW);
    mosquitto_int_option(s->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    if (a->username || a->password) {
        const char *user = a->username ? a->username : DEVICE_DEFAULT_USERNAME;
        if ((rc = mosquitto_username_pw_set(s->mosq, user, a->password)) != MOSQ_ERR_SUCCESS)
            return fail("cannot set MQTT credentials: %s", mosquitto_strerror(rc));
    }
    mosquitto_connect_v5_callback_set(s->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(s->mosq, on_disconnect);
    mosquitto_publish_v5_callback_set(s->mosq, on_publish);
    mosquitto_subscribe_v5_callback_set(s->mosq, on_subscribe);
    mosquitto_message_v5_callback_set(s->mosq, on_message);

    rc = mosquitto_connect(s->mosq, a->host, a->port, DEVICE_KEEPALIVE);
    if (rc != MOSQ_ERR_SUCCESS)
        return fail("cannot connect to %s:%d: %s", a->host, a->port,
                    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
    int64_t deadline = now_ms() + (int64_t)a->timeout_s * 1000;
    while (s->conn_state == 0 && !s->lost && now_ms() < deadline)
        session_step(s, deadline);
    if (s->conn_state < 0)
        return fail("broker %s:%d refused the connection: %s", a->host, a->port,
                    connack_text(s, s->conn_rc));
    if (s->conn_state == 0 && s->lost)
        return session_lost(s);
    if (s->conn_state == 0)
        return fail("no CONNACK from %s:%d within %u s", a->host, a->port, a->timeout_s);
    return 0;
}

int session_drain(struct session *s, uint64_t max_out, unsigned timeout_s)
{
    uint64_t seen = s->done;
    int64_t deadline = now_ms() + (int64_t)timeout_s * 1000;

    while (!s->lost && s->queued - s->done > max_out) {
        session_step(s, deadline);
        if (s->done != seen) {
            seen = s->done;
            deadline = now_ms() + (int64_t)timeout_s * 1000;
        } else if (now_ms() >= deadline) {
            return fail("timed out: no acknowledgement from the broker for %u s; %" PRIu64
                        " of %" PRIu64 " messages acknowledged",
                        timeout_s, s->done, s->queued);
        }
    }
    return s->lost ? session_lost(s) : 0;
}

int session_rejected(const struct session *s)
{
    return fail("the broker rejected %" PRIu64 " of %" PRIu64 " messages: %s", s->rejected,
                s->queued, mosquitto_reason_string(s->reject_rc));
}

int session_sleep(struct session *s, uint64_t ms)
{
    int64_t deadline = now_ms() + (int64_t)ms;
    while (!s->lost && now_ms() < deadline)
        session_step(s, deadline);
    return s->lost ? session_lost(s) : 0;
}

int session_publish(struct session *s, const char *topic, const void *payload, size_t len, int qos)
{
    s->queued++; /* before: a QoS 0 on_publish runs inside mosquitto_publish */
    int rc = mosquitto_publish(s->mosq, NULL, topic, (int)len, payload, qos, false);
    if (rc == MOSQ_ERR_SUCCESS)
        return 0;
    s->queued--;
    if (s->lost)
        return session_lost(s);
    if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO) {
        s->lost = 1;
        s->lost_rc = rc;
        return session_lost(s);
    }
    return fail("cannot publish to %s: %s", topic, mosquitto_strerror(rc));
}

int session_subscribe(struct session *s, char *const *topics, int n, unsigned timeout_s)
{
    int64_t deadline = now_ms() + (int64_t)timeout_s * 1000;
    int rc = mosquitto_subscribe_multiple(s->mosq, NULL, n, topics, 1, 0, NULL);

    if (rc != MOSQ_ERR_SUCCESS)
        return fail("cannot subscribe to %s: %s", topics[0], mosquitto_strerror(rc));
    while (!s->subscribed && !s->lost && now_ms() < deadline)
        session_step(s, deadline);
    if (s->lost)
        return session_lost(s);
    if (s->subscribed < 0)
        return fail("the broker refused the subscription to %s", topics[0]);
    if (!s->subscribed)
        return fail("no SUBACK within %u s", timeout_s);
    return 0;
}

void session_rx_clear(struct session *s)
{
    for (size_t i = 0; i < s->nrx; i++) {
        free(s->rx[i].topic);
        free(s->rx[i].payload);
    }
    s->nrx = 0;
}

void session_close(struct session *s)
{
    if (!s->mosq)
        return;
    session_rx_clear(s);
    if (s->conn_state == 1 && !s->lost && mosquitto_disconnect(s->mosq) == MOSQ_ERR_SUCCESS) {
        /* Flush the DISCONNECT if the socket did not take it at once. */
        int64_t deadline = now_ms() + 1000;
        while (mosquitto_want_write(s->mosq) && now_ms() < deadline &&
               mosquitto_loop(s->mosq, 100, 1) == MOSQ_ERR_SUCCESS)
            ;
    }
    mosquitto_destroy(s->mosq);
    s->mosq = NULL;
}
