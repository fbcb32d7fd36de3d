/*
 * events.c - what the plugin tells the daemon's Live Inspector: logins,
 * disconnections, subscriptions, refusals (core/inspect.h lists the kinds).
 *
 * The daemon listens on a unix stream socket in its data directory
 * (plugin_opt_events); no device can reach it. Each event is one JSON line
 * (base/jsonline.h). Writes never block the broker: what the socket does not
 * take waits in a buffer of EVENTS_BUF bytes, flushed at every tick; past
 * that the connection is dropped and made again. Every new connection (the
 * daemon started, or a broker started while it runs) begins with the roster:
 * every client connected now, between {"kind":"roster_begin"} and
 * {"kind":"roster_end"}, so the daemon's "connected" is right whatever it
 * missed.
 *
 * The connections announced are kept here by client (not in session.c),
 * because mosquitto reports the disconnection of a client whose session was
 * already dropped (taken over, kicked): its device is found here.
 *
 * Events a client can cause at will without connecting again (denials,
 * subscriptions) go through a token bucket of EVENTS_BURST, then
 * EVENTS_PER_S; the rest are counted in the next {"kind":"events_dropped"}.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/jsonline.h"
#include "plugin.h"

#define EVENTS_BUF      (1u << 20)
#define EVENTS_LINE     2048
#define EVENTS_PER_S    200
#define EVENTS_BURST    1000
#define EVENTS_RETRY_MS 1000
#define EVENTS_CHECK_MS 100 /* how often a quiet connection is checked for the daemon's end */

/* One announced connection. */
struct conn {
    const struct mosquitto *client; /* the key */
    char *device;                   /* serial, or "" for a profile context */
    char *line;                     /* its connect event, for the roster */
    const char *why;                /* why sealpipe ends it, when it does */
};

struct events {
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int fd;             /* -1: not connected */
    int64_t next_try;   /* monotonic ms */
    int64_t next_check; /* monotonic ms */
    char *out;          /* bytes the socket has not taken */
    size_t len;
    struct keytab conns;  /* struct conn by client */
    int64_t tokens_since; /* token bucket, monotonic ms */
    int tokens;
    uint64_t dropped;
};

static const struct keytab_type conn_type = {.entry_size = sizeof(struct conn),
                                             .key_size = sizeof(const struct mosquitto *)};

static void drop_connection(struct events *ev)
{
    if (ev->fd >= 0)
        close(ev->fd);
    ev->fd = -1;
    ev->len = 0;
    ev->next_try = clock_mono_ms() + EVENTS_RETRY_MS;
}

/* Writes what is buffered; a broken or stuck connection is dropped. */
static void flush(struct events *ev)
{
    while (ev->fd >= 0 && ev->len > 0) {
        ssize_t n = send(ev->fd, ev->out, ev->len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            drop_connection(ev);
            return;
        }
        memmove(ev->out, ev->out + n, ev->len - (size_t)n);
        ev->len -= (size_t)n;
    }
}

/* Queues one line (and its newline) and writes what the socket takes. */
static void send_line(struct events *ev, const char *line, size_t n)
{
    if (ev->fd < 0)
        return;
    if (ev->len + n + 1 > EVENTS_BUF) {
        drop_connection(ev); /* the daemon is stuck: the roster mends it later */
        return;
    }
    memcpy(ev->out + ev->len, line, n);
    ev->out[ev->len + n] = '\n';
    ev->len += n + 1;
    flush(ev);
}

/* 1 if an event a client can repeat at will may go now. */
static int take_token(struct events *ev)
{
    int64_t now = clock_mono_ms(), earned = (now - ev->tokens_since) * EVENTS_PER_S / 1000;

    if (earned > 0) {
        ev->tokens_since += earned * 1000 / EVENTS_PER_S;
        ev->tokens = ev->tokens + earned > EVENTS_BURST ? EVENTS_BURST : (int)(ev->tokens + earned);
    }
    if (ev->tokens > 0) {
        ev->tokens--;
        return 1;
    }
    ev->dropped++;
    return 0;
}

static void begin(struct jsonline *j, char *buf, const char *device, const char *kind)
{
    jsonline_begin(j, buf, EVENTS_LINE);
    jsonline_int(j, "at", clock_wall_ms());
    jsonline_str(j, "device", device ? device : "");
    jsonline_str(j, "kind", kind);
}

static void client_fields(struct jsonline *j, const struct mosquitto *client)
{
    static const char *const versions[] = {"", "", "", "MQTT 3.1", "MQTT 3.1.1", "MQTT 5"};
    int v = mosquitto_client_protocol_version(client);

    jsonline_str(j, "client_id", mosquitto_client_id(client));
    jsonline_str(j, "address", mosquitto_client_address(client));
    jsonline_str(j, "protocol", v >= 3 && v <= 5 ? versions[v] : "MQTT");
    if (mosquitto_client_protocol(client) == mp_websockets)
        jsonline_str(j, "transport", "websockets");
    /* 2.0.11's plugin API tells TLS apart only by a client certificate. */
    if (mosquitto_client_certificate(client))
        jsonline_bool(j, "tls", 1);
}

/* ---- the roster --------------------------------------------------------- */

static void send_roster(struct events *ev)
{
    char buf[EVENTS_LINE];
    struct jsonline j;
    struct conn *c;

    begin(&j, buf, "", "roster_begin");
    send_line(ev, buf, jsonline_end(&j));
    for (size_t i = 0; ev->fd >= 0 && (c = keytab_next(&ev->conns, &i)) != NULL;)
        send_line(ev, c->line, strlen(c->line));
    begin(&j, buf, "", "roster_end");
    jsonline_int(&j, "connections", (int64_t)ev->conns.n);
    send_line(ev, buf, jsonline_end(&j));
}

/* Connects to the daemon's socket; on success the roster goes first. */
static void try_connect(struct events *ev)
{
    int fd = unixconn_open(ev->path);

    ev->next_try = clock_mono_ms() + EVENTS_RETRY_MS;
    if (fd < 0)
        return;
    ev->fd = fd;
    ev->len = 0;
    send_roster(ev);
}

/* ---- the events --------------------------------------------------------- */

void events_connect(struct events *ev, const struct mosquitto *client, const char *device,
                    const char *who)
{
    char buf[EVENTS_LINE];
    struct jsonline j;
    void *slot;

    if (!ev)
        return;
    begin(&j, buf, device, "connect");
    client_fields(&j, client);
    if (!device)
        jsonline_str(&j, "login", who);
    jsonline_int(&j, "keepalive", mosquitto_client_keepalive(client));
    jsonline_bool(&j, "clean_start", mosquitto_client_clean_session(client));
    size_t n = jsonline_end(&j);
    int rc = keytab_put(&ev->conns, ptr_hash(client), &client, &slot);
    if (rc == KEYTAB_ADDED || rc == KEYTAB_FOUND) {
        struct conn *c = slot;
        free(c->device);
        free(c->line);
        c->device = strdup(device ? device : "");
        c->line = strdup(buf);
        if (!c->device || !c->line) {
            free(c->device);
            free(c->line);
            keytab_delete(&ev->conns, c);
        }
    }
    send_line(ev, buf, n);
}

void events_kicking(struct events *ev, const struct mosquitto *client, const char *why)
{
    struct conn *c;

    if (ev && (c = keytab_find(&ev->conns, ptr_hash(client), &client)))
        c->why = why;
}

/*
 * mosquitto 2.0.11 gives the DISCONNECT event reason -1 whatever happened
 * (context__disconnect, do_disconnect): only the disconnections sealpipe
 * itself makes have a reason (events_kicking); a code other than -1, from a
 * later mosquitto, is passed on.
 */
void events_disconnect(struct events *ev, const struct mosquitto *client, int reason)
{
    char buf[EVENTS_LINE];
    struct jsonline j;
    struct conn *c;

    if (!ev || !(c = keytab_find(&ev->conns, ptr_hash(client), &client)))
        return; /* never announced: refused at login, or the daemon */
    begin(&j, buf, c->device, "disconnect");
    jsonline_str(&j, "client_id", mosquitto_client_id(client));
    if (c->why)
        jsonline_str(&j, "reason", c->why);
    if (reason != -1)
        jsonline_int(&j, "code", reason);
    free(c->device);
    free(c->line);
    keytab_delete(&ev->conns, c);
    send_line(ev, buf, jsonline_end(&j));
}

void events_login_refused(struct events *ev, const struct mosquitto *client, const char *username,
                          const char *device, const char *why)
{
    char buf[EVENTS_LINE];
    struct jsonline j;

    if (!ev || !take_token(ev))
        return;
    begin(&j, buf, device, "login_refused");
    client_fields(&j, client);
    jsonline_str(&j, "username", username);
    jsonline_str(&j, "reason", why);
    send_line(ev, buf, jsonline_end(&j));
}

void events_access(struct events *ev, const struct mosquitto *client, const char *device,
                   const char *kind, const char *access, const char *topic)
{
    char buf[EVENTS_LINE];
    struct jsonline j;

    if (!ev || !take_token(ev))
        return;
    begin(&j, buf, device, kind);
    jsonline_str(&j, "client_id", mosquitto_client_id(client));
    if (access)
        jsonline_str(&j, "access", access);
    jsonline_str(&j, "topic", topic);
    send_line(ev, buf, jsonline_end(&j));
}

/*
 * The daemon never writes to this connection, so anything to read is its
 * end: a daemon that stopped or died, whose unread events are lost. Found
 * within EVENTS_CHECK_MS, not at the next event, so that the next daemon
 * gets the roster at once even when nothing happens meanwhile.
 */
static void check_peer(struct events *ev, int64_t now)
{
    char c;

    if (ev->fd < 0 || now < ev->next_check)
        return;
    ev->next_check = now + EVENTS_CHECK_MS;
    ssize_t n = recv(ev->fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        drop_connection(ev);
}

void events_tick(struct events *ev)
{
    char buf[EVENTS_LINE];
    struct jsonline j;
    int64_t now;

    if (!ev)
        return;
    now = clock_mono_ms();
    check_peer(ev, now);
    if (ev->fd < 0 && now >= ev->next_try)
        try_connect(ev);
    flush(ev);
    if (ev->dropped && take_token(ev)) {
        begin(&j, buf, "", "events_dropped");
        jsonline_int(&j, "count", (int64_t)ev->dropped);
        ev->dropped = 0;
        send_line(ev, buf, jsonline_end(&j));
    }
}

int events_open(struct events **out, const char *path)
{
    struct events *ev;

    *out = NULL;
    if (strlen(path) >= sizeof ev->path) {
        char f_path[LOG_FIELD_MAX];
        mosquitto_log_printf(MOSQ_LOG_ERR, "sealpipe: plugin_opt_events %s: path too long",
                             LOG_FIELD(f_path, path));
        return -1;
    }
    if (!(ev = calloc(1, sizeof *ev)) || !(ev->out = malloc(EVENTS_BUF)) ||
        keytab_init(&ev->conns, &conn_type, 256, SIZE_MAX / 2 + 1)) {
        if (ev)
            free(ev->out);
        free(ev);
        return -1;
    }
    snprintf(ev->path, sizeof ev->path, "%s", path);
    ev->fd = -1;
    ev->tokens = EVENTS_BURST;
    ev->tokens_since = clock_mono_ms();
    try_connect(ev);
    *out = ev;
    return 0;
}

void events_close(struct events *ev)
{
    struct conn *c;

    if (!ev)
        return;
    flush(ev);
    if (ev->fd >= 0)
        close(ev->fd);
    for (size_t i = 0; (c = keytab_next(&ev->conns, &i)) != NULL;) {
        free(c->device);
        free(c->line);
    }
    keytab_cleanup(&ev->conns);
    free(ev->out);
    free(ev);
}
