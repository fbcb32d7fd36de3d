/*
 * inspectd.c - the Live Inspector's sockets (inspectd.h): one thread, one
 * poll() over the two listening sockets, the inspector's wake-up eventfd, a
 * stop eventfd, and the connections.
 *
 * A watcher's events are taken from its inspector buffer (inspect_take) into
 * its connection's own buffer and written without blocking; what the socket
 * does not take waits for POLLOUT, and nothing more is taken meanwhile, so a
 * slow watcher fills its inspector buffer and loses events (counted in a
 * {"kind":"dropped"} line), never the daemon's time.
 */
#include "inspectd.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/arena.h"
#include "base/clock.h"
#include "base/errors.h"
#include "base/json.h"
#include "base/log.h"
#include "base/unixsock.h"
#include "core/inspect.h"
#include "storage/devstatus.h"

#define MAX_CONNS  (INSPECT_WATCHERS_MAX + 4)
#define CONN_BUF   (64u << 10)
#define REQUEST_MS 5000 /* a watcher's request must come within this */
#define ROSTER_MAX (1u << 20)

enum conn_kind { C_FREE, C_WATCHER, C_BROKER };

struct conn {
    enum conn_kind kind;
    int fd;
    int64_t opened;            /* monotonic ms */
    struct inspect_watcher *w; /* C_WATCHER, once it asked */
    char *buf;                 /* C_WATCHER: output not yet written; C_BROKER: a partial line */
    size_t len, off;
};

/* A roster being received from the broker. */
struct roster {
    int open;
    struct devstatus_conn *v;
    size_t n, cap;
};

struct inspectd {
    struct inspect *in;
    struct devstatus *ds;
    int watch_fd, broker_fd, stop_fd;
    char watch_path[4096], broker_path[4096]; /* unixsock_listen says when too long for a socket */
    pthread_t thread;
    int started;
    struct conn conns[MAX_CONNS];
    struct roster roster;
    struct arena arena;   /* one parsed line at a time */
    int64_t roster_asked; /* monotonic ms, for the warning */
};

/* ---- sockets ------------------------------------------------------------ */

static void conn_close(struct inspectd *d, struct conn *c)
{
    if (c->w)
        inspect_unwatch(d->in, c->w);
    close(c->fd);
    free(c->buf);
    memset(c, 0, sizeof *c);
}

static void accept_one(struct inspectd *d, int lfd, enum conn_kind kind)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    struct conn *c = NULL;

    if (fd < 0)
        return;
    for (size_t i = 0; i < MAX_CONNS && !c; i++)
        if (d->conns[i].kind == C_FREE)
            c = &d->conns[i];
    if (!c || !(c->buf = malloc(CONN_BUF))) {
        LOG_WARN("inspector: connection refused (%d at most)", MAX_CONNS);
        close(fd);
        return;
    }
    c->kind = kind;
    c->fd = fd;
    c->opened = clock_mono_ms();
}

/* ---- the broker's events ------------------------------------------------ */

static const char *str_of(const struct json *o, const char *key)
{
    const struct json *v = json_get(o, key);
    return v && v->type == JSON_STRING ? v->str : NULL;
}

static struct devstatus_conn conn_of(const struct json *o)
{
    const struct json *at = json_get(o, "at");
    return (struct devstatus_conn){
        .serial = str_of(o, "device"),
        .at = at && at->type == JSON_NUMBER ? (int64_t)at->number : clock_wall_ms(),
        .client_id = str_of(o, "client_id"),
        .address = str_of(o, "address"),
        .protocol = str_of(o, "protocol"),
        .reason = str_of(o, "reason"),
    };
}

static void roster_clear(struct roster *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free((char *)r->v[i].serial);
        free((char *)r->v[i].client_id);
        free((char *)r->v[i].address);
        free((char *)r->v[i].protocol);
    }
    r->n = 0;
    r->open = 0;
}

static void roster_add(struct roster *r, const struct devstatus_conn *c)
{
    if (!c->serial || !*c->serial || r->n >= ROSTER_MAX)
        return; /* a profile context: not a device */
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        struct devstatus_conn *v = realloc(r->v, cap * sizeof *v);
        if (!v)
            return;
        r->v = v;
        r->cap = cap;
    }
    struct devstatus_conn *e = &r->v[r->n++];
    *e = *c;
    e->serial = strdup(c->serial);
    e->client_id = c->client_id ? strdup(c->client_id) : NULL;
    e->address = c->address ? strdup(c->address) : NULL;
    e->protocol = c->protocol ? strdup(c->protocol) : NULL;
    e->reason = NULL;
}

/* One line from the broker plugin. */
static void broker_line(struct inspectd *d, const char *line, size_t len)
{
    struct json *o;
    char err[128];

    arena_reset(&d->arena);
    if (json_parse(&d->arena, line, len, &o, err, sizeof err) || o->type != JSON_OBJECT) {
        LOG_WARN("inspector: the broker plugin sent a line that is not a JSON object: %s", err);
        return;
    }
    const char *kind = str_of(o, "kind"), *device = str_of(o, "device");
    struct devstatus_conn c = conn_of(o);
    if (!kind)
        return;
    if (strcmp(kind, "roster_begin") == 0) {
        roster_clear(&d->roster);
        d->roster.open = 1;
    } else if (strcmp(kind, "roster_end") == 0) {
        if (d->roster.open) {
            struct devstatus_conn end = {
                .at = c.at,
                .reason = "not connected when the broker listed its clients (the broker "
                          "restarted, or the daemon was away when it left)"};
            devstatus_roster(d->ds, d->roster.v, d->roster.n, &end);
            LOG_INFO("inspector: the broker plugin reports %zu device connections", d->roster.n);
        }
        roster_clear(&d->roster);
    } else if (d->roster.open && strcmp(kind, "connect") == 0) {
        roster_add(&d->roster, &c);
    } else {
        if (strcmp(kind, "connect") == 0 && device && *device)
            devstatus_connect(d->ds, &c);
        else if (strcmp(kind, "disconnect") == 0 && device && *device)
            devstatus_disconnect(d->ds, &c);
        inspect_emit_line(d->in, device, line, len);
    }
}

/* Reads what the broker sent and handles every whole line. */
static void broker_read(struct inspectd *d, struct conn *c)
{
    ssize_t n = read(c->fd, c->buf + c->len, CONN_BUF - 1 - c->len);
    char *nl;

    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            roster_clear(&d->roster); /* a roster cut short says nothing */
            conn_close(d, c);
        }
        return;
    }
    c->len += (size_t)n;
    size_t start = 0;
    while ((nl = memchr(c->buf + start, '\n', c->len - start)) != NULL) {
        *nl = '\0';
        broker_line(d, c->buf + start, (size_t)(nl - (c->buf + start)));
        start = (size_t)(nl - c->buf) + 1;
    }
    memmove(c->buf, c->buf + start, c->len - start);
    c->len -= start;
    if (c->len == CONN_BUF - 1) {
        LOG_WARN("inspector: a line of the broker plugin is over %u bytes; dropped", CONN_BUF - 1);
        c->len = 0;
    }
}

/* ---- watchers ----------------------------------------------------------- */

/* The request line of a watcher: registers it. -1: close the connection. */
static int watch_request(struct inspectd *d, struct conn *c, const char *line, size_t len)
{
    struct inspect_watch q = {0};
    struct json *o;
    char err[128];
    const struct json *v;

    arena_reset(&d->arena);
    if (json_parse(&d->arena, line, len, &o, err, sizeof err) || o->type != JSON_OBJECT)
        return -1;
    q.device = str_of(o, "device");
    if ((v = json_get(o, "since_ms")) && v->type == JSON_NUMBER && v->number > 0)
        q.since_ms = (int64_t)v->number;
    q.plaintext = (v = json_get(o, "plaintext")) && v->type == JSON_TRUE;
    if (!(c->w = inspect_watch(d->in, &q, clock_wall_ms()))) {
        static const char busy[] = "{\"kind\":\"error\",\"error\":\"too many watchers\"}\n";
        if (write(c->fd, busy, sizeof busy - 1) < 0) {
            /* closing anyway */
        }
        return -1;
    }
    c->len = c->off = 0;
    LOG_INFO("inspector: watching device=%s since_ms=%lld plaintext=%s",
             q.device ? q.device : "(all)", (long long)q.since_ms, q.plaintext ? "yes" : "no");
    return 0;
}

static void watcher_write(struct inspectd *d, struct conn *c);

/* Before its request: reads it. */
static void watcher_read(struct inspectd *d, struct conn *c)
{
    ssize_t n = read(c->fd, c->buf + c->len, CONN_BUF - 1 - c->len);
    char *nl;

    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        conn_close(d, c);
        return;
    }
    if (n < 0 || c->w)
        return; /* after the request, what a watcher sends is ignored */
    c->len += (size_t)n;
    if ((nl = memchr(c->buf, '\n', c->len)) == NULL) {
        if (c->len == CONN_BUF - 1)
            conn_close(d, c);
        return;
    }
    if (watch_request(d, c, c->buf, (size_t)(nl - c->buf)))
        conn_close(d, c);
    else
        watcher_write(d, c); /* the kept events and the "live" mark, now */
}

/* Writes what the watcher has pending. */
static void watcher_write(struct inspectd *d, struct conn *c)
{
    for (;;) {
        if (c->off == c->len) {
            c->off = 0;
            c->len = inspect_take(d->in, c->w, c->buf, CONN_BUF);
            if (c->len == 0)
                return;
        }
        ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            conn_close(d, c);
            return;
        }
        c->off += (size_t)n;
    }
}

/* ---- the thread --------------------------------------------------------- */

enum { P_WATCH, P_BROKER, P_WAKE, P_STOP, P_CONNS };

static size_t fill_polls(struct inspectd *d, struct pollfd *p, struct conn **of)
{
    size_t n = P_CONNS;

    p[P_WATCH] = (struct pollfd){d->watch_fd, POLLIN, 0};
    p[P_BROKER] = (struct pollfd){d->broker_fd, POLLIN, 0};
    p[P_WAKE] = (struct pollfd){inspect_wake_fd(d->in), POLLIN, 0};
    p[P_STOP] = (struct pollfd){d->stop_fd, POLLIN, 0};
    for (size_t i = 0; i < MAX_CONNS; i++) {
        struct conn *c = &d->conns[i];
        if (c->kind == C_FREE)
            continue;
        short want = POLLIN;
        if (c->kind == C_WATCHER && c->w && c->off < c->len)
            want |= POLLOUT;
        p[n] = (struct pollfd){c->fd, want, 0};
        of[n++] = c;
    }
    return n;
}

/* Connection changes were lost: closing the broker's connections makes the
 * plugin connect again, and every connection starts with its roster. */
static void ask_roster(struct inspectd *d)
{
    int64_t now = clock_mono_ms();

    if (now - d->roster_asked >= 60000) /* while the database fails: once a minute */
        LOG_WARN("inspector: connection changes were dropped (too many waiting); asking the "
                 "broker for its list of connected clients again");
    d->roster_asked = now;
    for (size_t i = 0; i < MAX_CONNS; i++)
        if (d->conns[i].kind == C_BROKER)
            conn_close(d, &d->conns[i]);
}

/* Closes watchers that never sent their request. */
static void expire_requests(struct inspectd *d)
{
    int64_t now = clock_mono_ms();

    for (size_t i = 0; i < MAX_CONNS; i++) {
        struct conn *c = &d->conns[i];
        if (c->kind == C_WATCHER && !c->w && now - c->opened > REQUEST_MS)
            conn_close(d, c);
    }
}

static void serve_conn(struct inspectd *d, struct conn *c, short revents)
{
    if (c->kind == C_BROKER) {
        if (revents & (POLLIN | POLLHUP | POLLERR))
            broker_read(d, c);
        return;
    }
    if (revents & (POLLIN | POLLHUP | POLLERR))
        watcher_read(d, c);
    if (c->kind == C_WATCHER && c->w && (revents & POLLOUT))
        watcher_write(d, c);
}

static void *run(void *arg)
{
    struct inspectd *d = arg;
    struct pollfd p[P_CONNS + MAX_CONNS];
    struct conn *of[P_CONNS + MAX_CONNS];

    for (;;) {
        size_t n = fill_polls(d, p, of);
        if (poll(p, n, 1000) < 0 && errno != EINTR)
            break;
        if (p[P_STOP].revents)
            break;
        if (p[P_WATCH].revents & POLLIN)
            accept_one(d, d->watch_fd, C_WATCHER);
        if (p[P_BROKER].revents & POLLIN)
            accept_one(d, d->broker_fd, C_BROKER);
        for (size_t i = P_CONNS; i < n; i++)
            if (p[i].revents && of[i]->kind != C_FREE)
                serve_conn(d, of[i], p[i].revents);
        if (p[P_WAKE].revents & POLLIN) {
            inspect_clear_wake(d->in);
            for (size_t i = 0; i < MAX_CONNS; i++)
                if (d->conns[i].kind == C_WATCHER && d->conns[i].w)
                    watcher_write(d, &d->conns[i]);
        }
        expire_requests(d);
        if (devstatus_lost(d->ds))
            ask_roster(d);
    }
    return NULL;
}

/* ---- start and stop ----------------------------------------------------- */

int inspectd_start(const char *data_dir, struct inspect *in, struct devstatus *ds,
                   struct inspectd **out, char *err, size_t errlen)
{
    struct inspectd *d = calloc(1, sizeof *d);

    *out = NULL;
    if (!d)
        return SP_ERR_NOMEM;
    d->in = in;
    d->ds = ds;
    d->watch_fd = d->broker_fd = d->stop_fd = -1;
    arena_init(&d->arena, 1u << 20);
    snprintf(d->watch_path, sizeof d->watch_path, "%s/%s", data_dir, INSPECTD_WATCH_SOCK);
    snprintf(d->broker_path, sizeof d->broker_path, "%s/%s", data_dir, INSPECTD_BROKER_SOCK);
    if ((d->watch_fd = unixsock_listen(d->watch_path, err, errlen)) < 0 ||
        (d->broker_fd = unixsock_listen(d->broker_path, err, errlen)) < 0)
        goto fail;
    if ((d->stop_fd = eventfd(0, EFD_CLOEXEC)) < 0 ||
        pthread_create(&d->thread, NULL, run, d) != 0) {
        snprintf(err, errlen, "cannot start the inspector's thread: %s", strerror(errno));
        goto fail;
    }
    d->started = 1;
    *out = d;
    return SP_OK;
fail:
    inspectd_stop(d);
    return SP_ERR_IO;
}

void inspectd_stop(struct inspectd *d)
{
    uint64_t one = 1;

    if (!d)
        return;
    if (d->started) {
        if (write(d->stop_fd, &one, sizeof one) < 0)
            LOG_WARN("inspector: cannot stop its thread: %s", strerror(errno));
        pthread_join(d->thread, NULL);
    }
    for (size_t i = 0; i < MAX_CONNS; i++)
        if (d->conns[i].kind != C_FREE)
            conn_close(d, &d->conns[i]);
    roster_clear(&d->roster);
    free(d->roster.v);
    if (d->watch_fd >= 0) {
        close(d->watch_fd);
        unlink(d->watch_path);
    }
    if (d->broker_fd >= 0) {
        close(d->broker_fd);
        unlink(d->broker_path);
    }
    if (d->stop_fd >= 0)
        close(d->stop_fd);
    arena_cleanup(&d->arena);
    free(d);
}

const char *inspectd_broker_path(const struct inspectd *d)
{
    return d ? d->broker_path : NULL;
}
