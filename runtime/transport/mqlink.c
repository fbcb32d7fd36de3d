/*
 * mqlink.c - libmosquitto in threaded mode, driven by hand (see mqlink.h).
 *
 * libmosquitto 2.0.11 queues the PUBACK of a QoS 1 message before it calls
 * on_message, and with mosquitto_threaded_set(true) packet__queue() does not
 * write; mosquitto_loop_write() does. We therefore never call loop_write (or
 * loop_misc, whose PINGREQ would write) between reading a batch and
 * committing it. See docs/facts.md, "libmosquitto 2.0.11".
 *
 * Measured on 2.0.11: after a session takeover the broker does not honour our
 * Receive Maximum. And one mosquitto_loop_read() reads as many packets as
 * there are QoS 1/2 messages in libmosquitto's queues (lib/loop.c), our own
 * answers in flight included: one call may bring thousands of PUBLISHes. So
 * a message can arrive when there is no room for it: while we wait for
 * CONNACK or SUBACK, or after the caller's batch (or its arena) is full. Such
 * a message is held (a heap copy) and handed out first by the next
 * mqlink_read, which reads nothing while any is held: the back-pressure is
 * not reading, and the broker keeps the rest for us.
 *
 * A held QoS 1/2 message's PUBACK is already queued inside libmosquitto and
 * must not leave before the message is committed, so while one is held
 * mqlink_flush writes nothing, and past HOLD_MAX of them the link reconnects
 * (the broker redelivers them). A QoS 0 message has no PUBACK, no duplicate
 * check and no redelivery: holding it stops no flush and causes no reconnect
 * (a reconnect would lose the QoS 0 messages queued for us); only past
 * HOLD_BYTES_MAX of held payload is one dropped, and counted
 * (sealpipe_mqtt_qos0_dropped_total).
 */
#include "mqlink.h"
#include "base/clock.h"
#include "base/errors.h"

#include <errno.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "base/metrics.h"
#include "sealpipe.h"
#include "base/sp_limits.h"

/* mqlink_read stops taking messages once the batch arena holds this much, so
 * processing them (decrypted bodies, records, analysis results) still fits
 * under its cap. */
#define ARENA_READ_LIMIT SP_LIMIT_BATCH_INPUT

#define SESSION_EXPIRY (7 * 24 * 3600) /* seconds the broker keeps our session */
/*
 * Every subscription: never hear our own publishes (No Local), so an analysis
 * that publishes to a topic it declares cannot feed itself; see the retain
 * flag as the device set it; and never get retained messages at subscribe
 * time, so a retained message is stored when it is published, once, and not
 * again at every (re)subscription after a restart. Subscribing again with
 * these options replaces those of a session made by an older version.
 */
#define SUB_OPTIONS                                                                                \
    (MQTT_SUB_OPT_NO_LOCAL | MQTT_SUB_OPT_RETAIN_AS_PUBLISHED | MQTT_SUB_OPT_SEND_RETAIN_NEVER)
/* Most QoS 1/2 messages held at once. Every held one, and every committed
 * one whose PUBACK waits behind them, must stay inside the delivery window
 * (SP_LIMIT_DEDUP_WINDOW), so past this the connection is dropped instead:
 * nothing unacknowledged is lost, the broker redelivers it. */
#define HOLD_MAX 2048
/* Most payload bytes held at once, whatever their QoS. A QoS 0 message past
 * it is dropped and counted (the broker would not redeliver it after a
 * reconnect either); a QoS 1/2 one drops the connection as above. */
#define HOLD_BYTES_MAX    (2 * (size_t)SP_LIMIT_BATCH_INPUT)
#define DROP_LOG_EVERY_MS 10000 /* one warning about dropped QoS 0 at most this often */

struct mqlink {
    struct mosquitto *m;
    struct mqlink_opts o;
    int connected;
    int connack_rc; /* -1 until CONNACK */
    int session_present;
    int suback_done;
    int64_t last_misc_ms;
    /* Where on_message copies messages during mqlink_read. */
    struct arena *arena;
    struct ingest_msg *out;
    size_t max, n;
    /* Messages read when there was no room for them, oldest first; how many
     * of them are QoS 1/2 (their PUBACKs are queued), and their bytes. */
    struct held *pending;
    size_t npending, cappending;
    size_t held_acked, held_bytes;
    /* QoS 0 messages dropped (held bytes full), and how many were logged. */
    uint64_t dropped, dropped_logged;
    int64_t dropped_log_ms;
    int subacks_left;
    struct ingest_source source;         /* this link as ingest.h sees it */
    const struct ingest_output *answers; /* mqlink_answer_through, or NULL */
    struct ingest_output output;
};

/* A message as mqlink keeps it: a held one owns its strings (held_free);
 * on_message's view of a message it takes at once borrows libmosquitto's. */
struct held {
    char *topic;
    char *payload;   /* the first len bytes only: a longer one is a dead letter */
    size_t len;      /* at most SP_LIMIT_PAYLOAD */
    size_t full_len; /* as the broker sent it */
    int mid, qos, retain;
    char *publisher; /* the "sealpipe-device" user property, or NULL */
    int hops;        /* the "sealpipe-hops" user property, or 0 */
};

/* The link is up or down, for the health page's sealpipe_broker_connected. */
static void link_state(struct mqlink *l, int up)
{
    l->connected = up;
    metrics_gauge_set(METRIC_BROKER_CONNECTED, up);
}

static void on_connect(struct mosquitto *m, void *ud, int rc, int flags,
                       const mosquitto_property *props)
{
    struct mqlink *l = ud;
    (void)m;
    (void)props;
    l->connack_rc = rc;
    link_state(l, rc == 0);
    l->session_present = flags & 1;
}

static void on_disconnect(struct mosquitto *m, void *ud, int rc, const mosquitto_property *props)
{
    struct mqlink *l = ud;
    (void)m;
    (void)props;
    if (l->connected)
        LOG_WARN("mqtt disconnected error=\"%s\"", mosquitto_strerror(rc));
    link_state(l, 0);
}

static void on_subscribe(struct mosquitto *m, void *ud, int mid, int qos_count, const int *granted,
                         const mosquitto_property *props)
{
    struct mqlink *l = ud;
    (void)m;
    (void)mid;
    (void)props;
    if (l->subacks_left > 0)
        l->subacks_left--;
    if (qos_count < 1 || granted[0] > 2)
        l->suback_done = -1;
}

/*
 * The user properties sealpipe reads: "sealpipe-device", the publisher as
 * the broker plugin stamped it (*publisher, NULL when absent; free() it), and
 * "sealpipe-hops", how many analyses produced this message in a row
 * (*hops, 0 when absent).
 */
static void read_props(const mosquitto_property *props, char **publisher, int *hops)
{
    const mosquitto_property *p = props;
    char *name = NULL, *value = NULL;
    int first = 1;

    *publisher = NULL;
    *hops = 0;
    while ((p = mosquitto_property_read_string_pair(first ? props : p, MQTT_PROP_USER_PROPERTY,
                                                    &name, &value, !first))) {
        first = 0;
        if (strcmp(name, MQLINK_DEVICE_PROP) == 0 && !*publisher) {
            *publisher = value;
            value = NULL;
        } else if (strcmp(name, MQLINK_HOPS_PROP) == 0) {
            long h = strtol(value, NULL, 10);
            *hops = h < 0 ? 0 : h > 1000 ? 1000 : (int)h;
        }
        free(name);
        free(value);
        name = value = NULL;
    }
}

/* Logs the QoS 0 messages dropped since the last time, at most once per
 * DROP_LOG_EVERY_MS: from drop_qos0, and from mqlink_read for the rest. */
static void drop_log(struct mqlink *l)
{
    int64_t now = clock_mono_ms();

    if (l->dropped == l->dropped_logged ||
        (l->dropped_log_ms && now - l->dropped_log_ms < DROP_LOG_EVERY_MS))
        return;
    LOG_WARN("mqtt dropped QoS 0 messages count=%llu reason=\"more than %zu MiB held beyond the "
             "batch\"",
             (unsigned long long)(l->dropped - l->dropped_logged), HOLD_BYTES_MAX >> 20);
    l->dropped_logged = l->dropped;
    l->dropped_log_ms = now;
}

/* Counts a QoS 0 message read but not kept: the held bytes are full. */
static void drop_qos0(struct mqlink *l)
{
    l->dropped++;
    metrics_inc(METRIC_MQTT_QOS0_DROPPED);
    drop_log(l);
}

/* Drops the connection before a QoS 1/2 message is acknowledged; the broker
 * redelivers it. */
static void hold_fail(struct mqlink *l, const char *why)
{
    if (l->connected)
        LOG_WARN("mqtt %s; reconnecting", why);
    link_state(l, 0);
}

static void held_free(struct held *h)
{
    free(h->topic);
    free(h->payload);
    free(h->publisher);
}

/* msg as mqlink keeps it, borrowing its strings (no publisher, no hops yet).
 * Only the head of an oversized payload is kept: it is a dead letter anyway,
 * and a few of them must not exhaust the batch arena or the held bytes. */
static struct held held_view(const struct mosquitto_message *msg)
{
    size_t full = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;

    return (struct held){.topic = msg->topic,
                         .payload = msg->payload,
                         .len = full < SP_LIMIT_PAYLOAD ? full : SP_LIMIT_PAYLOAD,
                         .full_len = full,
                         .mid = msg->mid,
                         .qos = msg->qos,
                         .retain = msg->retain};
}

/*
 * Keeps a message read when there is no room for it. A QoS 0 one is never
 * a reason to reconnect: it has no PUBACK to hold back and no duplicate
 * check, and the broker would not send it again; past HOLD_BYTES_MAX (or
 * out of memory) it is dropped and counted instead.
 */
static void hold(struct mqlink *l, const struct mosquitto_message *msg,
                 const mosquitto_property *props)
{
    struct held v = held_view(msg);

    if (msg->qos > 0 && l->held_acked >= HOLD_MAX) {
        hold_fail(l, "holding too many QoS 1/2 messages beyond the batch");
        return;
    }
    if (l->held_bytes + v.len > HOLD_BYTES_MAX)
        goto full;
    if (l->npending == l->cappending) {
        size_t cap = l->cappending ? l->cappending * 2 : 64;
        void *p = realloc(l->pending, cap * sizeof(*l->pending));
        if (!p)
            goto full;
        l->pending = p;
        l->cappending = cap;
    }
    struct held *h = &l->pending[l->npending];
    *h = v;
    h->topic = strdup(v.topic);
    h->payload = malloc(v.len ? v.len : 1);
    if (!h->topic || !h->payload) {
        held_free(h);
        goto full;
    }
    if (v.len)
        memcpy(h->payload, v.payload, v.len);
    read_props(props, &h->publisher, &h->hops);
    l->npending++;
    l->held_bytes += v.len;
    l->held_acked += msg->qos > 0;
    return;
full:
    if (msg->qos > 0)
        hold_fail(l, "no room to hold a QoS 1/2 message beyond the batch");
    else
        drop_qos0(l);
}

/* Copies h into the caller's batch. */
static void take(struct mqlink *l, const struct held *h)
{
    struct ingest_msg *o = &l->out[l->n];
    char *topic = arena_strdup(l->arena, h->topic);
    char *payload = arena_strndup(l->arena, h->payload ? h->payload : "", h->len);
    if (!topic || !payload) {
        /* The arena is sized for a full batch of maximal messages, so this
         * is a bug; dropping the connection keeps the message unacknowledged. */
        LOG_ERROR("mqtt batch arena exhausted; reconnecting");
        link_state(l, 0);
        return;
    }
    *o = (struct ingest_msg){0};
    o->id = h->qos > 0 ? h->mid : 0;
    o->topic = topic;
    o->payload = (const uint8_t *)payload;
    o->len = h->len;
    o->full_len = h->full_len;
    o->qos = h->qos;
    o->retain = h->retain;
    o->publisher = h->publisher ? arena_strdup(l->arena, h->publisher) : NULL;
    o->hops = h->hops;
    l->n++;
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    struct mqlink *l = ud;
    (void)m;

    metrics_received("mqtt", msg->topic);
    if (!l->out || l->n >= l->max || l->npending || arena_used(l->arena) >= ARENA_READ_LIMIT) {
        hold(l, msg, props);
        return;
    }
    struct held view = held_view(msg);
    read_props(props, &view.publisher, &view.hops);
    take(l, &view);
    free(view.publisher);
}

/* ---- the link as an ingest source and output (ingest.h) ---------------- */

static int source_read(void *ctx, int timeout_ms, struct arena *a, struct ingest_msg *out,
                       size_t max, size_t *n)
{
    return mqlink_read(ctx, timeout_ms, a, out, max, n);
}

/* An answer is a QoS 1 publish on the topic the device listens on, written
 * with the batch's PUBACKs by the next flush. */
static int source_answer(void *ctx, const struct ingest_msg *m, const char *topic,
                         const uint8_t *payload, size_t len)
{
    struct mqlink *l = ctx;

    (void)m;
    if (l->answers)
        return l->answers->publish(l->answers->ctx, topic, payload, len, 1, 0, NULL);
    return mqlink_publish(l, topic, payload, len, 1, 0, NULL);
}

/* The PUBACKs of the batch are queued inside libmosquitto already; the
 * answers' channel writes its frames and queues its wake-up first. */
static int source_ack(void *ctx)
{
    struct mqlink *l = ctx;

    if (l->answers)
        (void)l->answers->flush(l->answers->ctx);
    return mqlink_flush(l);
}

void mqlink_answer_through(struct mqlink *l, const struct ingest_output *answers)
{
    l->answers = answers;
}

static void source_drop(void *ctx)
{
    mqlink_drop(ctx);
}

/* Readable when the broker sent something. Held messages need no wait:
 * the pipeline reads every source once before it waits. */
static int source_wait_fd(void *ctx)
{
    struct mqlink *l = ctx;

    return l->connected ? mosquitto_socket(l->m) : -1;
}

static int output_publish(void *ctx, const char *topic, const void *payload, size_t len, int qos,
                          int retain, const struct ingest_origin *from)
{
    return mqlink_publish(ctx, topic, payload, len, qos, retain, from);
}

static int output_flush(void *ctx)
{
    return mqlink_flush(ctx);
}

const struct ingest_source *mqlink_source(struct mqlink *l)
{
    return &l->source;
}

const struct ingest_output *mqlink_output(struct mqlink *l)
{
    return &l->output;
}

/* ---- set-up ------------------------------------------------------------- */

int mqlink_new(const struct mqlink_opts *o, struct mqlink **out, char *err, size_t errlen)
{
    struct mqlink *l = calloc(1, sizeof(*l));

    if (!l)
        return SP_ERR_NOMEM;
    mosquitto_lib_init();
    l->o = *o;
    l->connack_rc = -1;
    l->source = (struct ingest_source){.name = "mqtt",
                                       .ctx = l,
                                       .read = source_read,
                                       .answer = source_answer,
                                       .ack = source_ack,
                                       .drop = source_drop,
                                       .wait_fd = source_wait_fd};
    l->output = (struct ingest_output){.ctx = l, .publish = output_publish, .flush = output_flush};
    /* clean_session false: MQTT v5 clean start off, so the session persists. */
    l->m = mosquitto_new(o->client_id, false, l);
    if (!l->m) {
        snprintf(err, errlen, "mosquitto_new: %s", strerror(errno));
        free(l);
        return SP_ERR_MQTT;
    }
    mosquitto_int_option(l->m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_int_option(l->m, MOSQ_OPT_RECEIVE_MAXIMUM, o->receive_max);
    mosquitto_int_option(l->m, MOSQ_OPT_SEND_MAXIMUM, o->receive_max);
    mosquitto_threaded_set(l->m, true);
    if (o->username && *o->username)
        mosquitto_username_pw_set(l->m, o->username, o->password);
    mosquitto_connect_v5_callback_set(l->m, on_connect);
    mosquitto_disconnect_v5_callback_set(l->m, on_disconnect);
    mosquitto_subscribe_v5_callback_set(l->m, on_subscribe);
    mosquitto_message_v5_callback_set(l->m, on_message);
    *out = l;
    return SP_OK;
}

void mqlink_free(struct mqlink *l)
{
    if (!l)
        return;
    if (l->connected) {
        link_state(l, 0); /* a disconnect we asked for is not worth a warning */
        mosquitto_disconnect_v5(l->m, MQTT_RC_NORMAL_DISCONNECTION, NULL);
        mosquitto_loop_write(l->m, 1);
    }
    mosquitto_destroy(l->m);
    mosquitto_lib_cleanup();
    for (size_t i = 0; i < l->npending; i++)
        held_free(&l->pending[i]);
    free(l->pending);
    free(l);
}

/* One round of I/O: wait for the socket, read, and write if asked to. */
static int pump(struct mqlink *l, int timeout_ms, int write)
{
    int fd = mosquitto_socket(l->m);
    if (fd < 0)
        return SP_ERR_MQTT;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (write && mosquitto_want_write(l->m))
        p.events |= POLLOUT;
    int r = poll(&p, 1, timeout_ms);
    if (r < 0)
        return errno == EINTR ? SP_OK : SP_ERR_MQTT;
    if (p.revents & (POLLIN | POLLHUP | POLLERR))
        if (mosquitto_loop_read(l->m, 1) != MOSQ_ERR_SUCCESS)
            return SP_ERR_MQTT;
    if (write && mosquitto_want_write(l->m))
        if (mosquitto_loop_write(l->m, 1) != MOSQ_ERR_SUCCESS)
            return SP_ERR_MQTT;
    return SP_OK;
}

int mqlink_connect(struct mqlink *l, int timeout_ms, int *session_present, char *err, size_t errlen)
{
    mosquitto_property *props = NULL;
    int rc;

    l->connack_rc = -1;
    link_state(l, 0);
    mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, SESSION_EXPIRY);
    rc = mosquitto_connect_bind_v5(l->m, l->o.host, l->o.port, l->o.keepalive, NULL, props);
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_SUCCESS) {
        snprintf(err, errlen, "cannot connect to %s:%d: %s", l->o.host, l->o.port,
                 rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
        return SP_ERR_MQTT;
    }
    int64_t deadline = clock_mono_ms() + timeout_ms;
    while (l->connack_rc < 0 && clock_mono_ms() < deadline) {
        /* Nothing has been read yet, so writing here flushes only CONNECT. */
        if (pump(l, 50, 1) != SP_OK)
            break;
    }
    if (l->connack_rc != 0) {
        if (l->connack_rc < 0)
            snprintf(err, errlen, "no CONNACK from %s:%d within %d ms", l->o.host, l->o.port,
                     timeout_ms);
        else
            snprintf(err, errlen, "broker %s:%d refused the connection: %s", l->o.host, l->o.port,
                     mosquitto_reason_string(l->connack_rc));
        mqlink_drop(l);
        return SP_ERR_MQTT;
    }
    l->last_misc_ms = clock_mono_ms();
    *session_present = l->session_present;
    return SP_OK;
}

int mqlink_subscribe(struct mqlink *l, const char *const *filters, size_t n, char *err,
                     size_t errlen)
{
    int rc;

    if (n == 0)
        return SP_OK;
    l->suback_done = 0;
    l->subacks_left = 0;
    for (size_t i = 0; i < n; i++) {
        rc = mosquitto_subscribe_v5(l->m, NULL, filters[i], 1, SUB_OPTIONS, NULL);
        if (rc != MOSQ_ERR_SUCCESS) {
            snprintf(err, errlen, "subscribe %s: %s", filters[i], mosquitto_strerror(rc));
            return SP_ERR_MQTT;
        }
        l->subacks_left++;
    }
    /* QoS 1/2 messages that came in with the CONNACK are held, and writing
     * now would send their PUBACKs too: then the SUBSCRIBEs leave with the
     * first flush after those messages are committed, and a refusal is
     * reported by mqlink_read. */
    if (l->held_acked)
        return SP_OK;
    /* One write for all SUBSCRIBEs. */
    if (mqlink_flush(l) != SP_OK) {
        snprintf(err, errlen, "subscribe: connection lost");
        return SP_ERR_MQTT;
    }
    /* A resumed session is subscribed already, and its backlog floods in at
     * once (mosquitto 2.0.11 ignores our Receive Maximum after a takeover):
     * reading it here would only hold it. The SUBACKs are read with the
     * messages, and a refusal is reported by mqlink_read. A new session has
     * no backlog: wait, without writing, so that "connected" means
     * subscribed. A message that arrives meanwhile is held, and ends the
     * wait like a resumed session: nothing reads while messages are held. */
    if (l->session_present)
        return SP_OK;
    int64_t deadline = clock_mono_ms() + 5000;
    while (l->subacks_left > 0 && l->connected && !l->npending && clock_mono_ms() < deadline)
        if (pump(l, 50, 0) != SP_OK)
            break;
    if (l->npending && l->connected && l->suback_done >= 0)
        return SP_OK;
    if (l->subacks_left > 0 || l->suback_done < 0) {
        snprintf(err, errlen, "subscribe: %s",
                 l->suback_done < 0 ? "refused by the broker" : "no SUBACK within 5 s");
        return SP_ERR_MQTT;
    }
    return SP_OK;
}

int mqlink_subscribe_one(struct mqlink *l, const char *filter)
{
    return mosquitto_subscribe_v5(l->m, NULL, filter, 1, SUB_OPTIONS, NULL) == MOSQ_ERR_SUCCESS
               ? SP_OK
               : SP_ERR_MQTT;
}

int mqlink_unsubscribe(struct mqlink *l, const char *filter)
{
    return mosquitto_unsubscribe(l->m, NULL, filter) == MOSQ_ERR_SUCCESS ? SP_OK : SP_ERR_MQTT;
}

int mqlink_read(struct mqlink *l, int timeout_ms, struct arena *a, struct ingest_msg *out,
                size_t max, size_t *n)
{
    int rc = SP_OK;

    l->arena = a;
    l->out = out;
    l->max = max;
    l->n = 0;
    size_t used = 0;
    while (used < l->npending && l->n < max && arena_used(a) < ARENA_READ_LIMIT) {
        struct held *h = &l->pending[used++];
        take(l, h);
        l->held_bytes -= h->len;
        l->held_acked -= h->qos > 0;
        held_free(h);
    }
    drop_log(l);
    if (used) {
        l->npending -= used;
        memmove(l->pending, l->pending + used, l->npending * sizeof(*l->pending));
    }
    if (!l->connected) {
        rc = SP_ERR_MQTT;
        goto done;
    }
    if (l->suback_done < 0) {
        LOG_ERROR("mqtt subscription refused by the broker; reconnecting");
        rc = SP_ERR_MQTT;
        goto done;
    }
    int fd = mosquitto_socket(l->m);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int wait = l->n ? 0 : timeout_ms; /* held messages taken: no wait for more */
    /* Read until the socket is drained or the batch (or its arena) is full. */
    while (l->n < max && !l->npending && arena_used(a) < ARENA_READ_LIMIT) {
        int r = poll(&p, 1, wait);
        if (r < 0 && errno != EINTR) {
            rc = SP_ERR_MQTT;
            break;
        }
        if (r <= 0)
            break;
        if (mosquitto_loop_read(l->m, 1) != MOSQ_ERR_SUCCESS || !l->connected) {
            rc = SP_ERR_MQTT;
            break;
        }
        wait = 0;
    }
done:
    *n = l->n;
    l->out = NULL;
    l->arena = NULL;
    return rc;
}

int mqlink_publish(struct mqlink *l, const char *topic, const void *payload, size_t len, int qos,
                   int retain, const struct ingest_origin *from)
{
    mosquitto_property *props = NULL;
    char h[16];

    if (len > INT32_MAX)
        return SP_ERR_TOOLARGE;
    if (from && from->profile &&
        mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, MQLINK_PROFILE_PROP,
                                           from->profile) != MOSQ_ERR_SUCCESS)
        goto nomem;
    if (from && from->hops > 0) {
        snprintf(h, sizeof h, "%d", from->hops);
        if (mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, MQLINK_HOPS_PROP,
                                               h) != MOSQ_ERR_SUCCESS)
            goto nomem;
    }
    int rc = mosquitto_publish_v5(l->m, NULL, topic, (int)len, payload, qos, retain != 0, props);
    mosquitto_property_free_all(&props);
    return rc == MOSQ_ERR_SUCCESS ? SP_OK : SP_ERR_MQTT;
nomem:
    mosquitto_property_free_all(&props);
    return SP_ERR_NOMEM;
}

int mqlink_flush(struct mqlink *l)
{
    if (!l->connected)
        return SP_ERR_MQTT;
    /* A held QoS 1/2 message's PUBACK is queued already; it leaves with the
     * flush after the batch that takes the last such message is committed.
     * Held QoS 0 messages have none: writing answers and PUBACKs of the
     * committed batch keeps the daemon's QoS 1 publishes few, and with them
     * how much one mosquitto_loop_read reads (see the top of this file). */
    if (l->held_acked)
        return SP_OK;
    int64_t t = clock_mono_ms();
    if (t - l->last_misc_ms >= 1000) {
        l->last_misc_ms = t;
        if (mosquitto_loop_misc(l->m) != MOSQ_ERR_SUCCESS)
            return SP_ERR_MQTT;
    }
    int fd = mosquitto_socket(l->m);
    int64_t deadline = t + 5000;
    while (mosquitto_want_write(l->m)) {
        if (mosquitto_loop_write(l->m, 1) != MOSQ_ERR_SUCCESS)
            return SP_ERR_MQTT;
        if (!mosquitto_want_write(l->m))
            break;
        /* Socket buffer full: wait until it drains, without reading. */
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, 100) < 0 && errno != EINTR)
            return SP_ERR_MQTT;
        if (clock_mono_ms() > deadline)
            return SP_ERR_MQTT;
    }
    return SP_OK;
}

void mqlink_drop(struct mqlink *l)
{
    link_state(l, 0);
    mosquitto_disconnect_v5(l->m, MQTT_RC_DISCONNECT_WITH_WILL_MSG, NULL);
}

int mqlink_connected(const struct mqlink *l)
{
    return l->connected;
}

/*
 * The design at the top of this file rests on two behaviours of the
 * libmosquitto 2.0 series that no API promises: a QoS 1 PUBACK is queued
 * before on_message runs, and in threaded mode nothing queued is written
 * until mosquitto_loop_write. Another series may send the PUBACK before we
 * commit, which would lose messages on a crash without any error; so only
 * the series re-verified against these two facts (docs/facts.md) is run.
 * To allow another one, re-verify both and change the numbers below.
 */
#define MQLINK_VERIFIED_MAJOR 2
#define MQLINK_VERIFIED_MINOR 0

_Static_assert(LIBMOSQUITTO_MAJOR == MQLINK_VERIFIED_MAJOR &&
                   LIBMOSQUITTO_MINOR == MQLINK_VERIFIED_MINOR,
               "built against a libmosquitto whose acknowledgement timing is not verified "
               "(see mqlink_check_version)");

int mqlink_check_version(char *err, size_t errlen)
{
    int major = 0, minor = 0, rev = 0;

    mosquitto_lib_version(&major, &minor, &rev);
    if (major == MQLINK_VERIFIED_MAJOR && minor == MQLINK_VERIFIED_MINOR)
        return SP_OK;
    snprintf(err, errlen,
             "libmosquitto %d.%d.%d is loaded, but sealpipe is verified with %d.%d.x only: it "
             "relies on %d.%d holding a QoS 1 PUBACK until the daemon has committed the "
             "message; install libmosquitto %d.%d",
             major, minor, rev, MQLINK_VERIFIED_MAJOR, MQLINK_VERIFIED_MINOR, MQLINK_VERIFIED_MAJOR,
             MQLINK_VERIFIED_MINOR, MQLINK_VERIFIED_MAJOR, MQLINK_VERIFIED_MINOR);
    return SP_ERR_MQTT;
}
