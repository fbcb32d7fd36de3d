/*
 * httpd_sse.c - the Live Inspector as Server-Sent Events (httpd_sse.h).
 *
 * Each stream's content reader runs on its listener's thread. It sends what
 * it holds, else takes the watcher's pending events (inspect_take) and
 * frames them, else suspends its connection (libmicrohttpd allows that from
 * a content reader, docs/facts.md) and returns 0. The thread below waits on
 * the streams' eventfd (the inspector writes it when a watcher's empty
 * output gets an event) and on a timer for the keep-alives; it resumes every
 * suspended stream, and marks the others "kicked" so that a reader about to
 * suspend looks once more. One mutex guards the list and the flags; a
 * reader never holds it while it copies.
 *
 * libmicrohttpd does not watch a suspended connection, so a browser leaving
 * a page would hold its stream's slot until the next keep-alive. The thread
 * polls the sockets of the suspended streams for the peer's close
 * (POLLRDHUP; a reader tells it of a new suspension through rebuild_fd),
 * and marks such a stream "gone" before resuming it: its reader ends it with
 * an error, which closes the connection at once.
 */
#include "httpd_sse.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/errors.h"
#include "base/log.h"
#include "core/inspect.h"

#define RAW_MAX     (16u << 10) /* taken at once; a line is at most INSPECT_EVENT_MAX + 40 */
#define END_WAIT_MS 1000        /* at stop, for the streams' last chunks */

struct stream {
    struct httpd_sse *s;
    struct MHD_Connection *conn;
    int fd; /* its socket, watched while suspended */
    struct inspect_watcher *w;
    struct stream *next;
    int suspended, kicked, keepalive; /* under s->mu */
    int gone;                         /* the client closed: under s->mu */
    int revoked;                      /* its token no longer works: under s->mu */
    uint64_t id;                      /* for the token checks */
    char *authz;                      /* its request's Authorization */
    char raw[RAW_MAX];                /* taken, not framed: a line's start */
    size_t rawlen;
    struct buf out; /* framed, not sent */
    size_t off;
};

struct httpd_sse {
    struct inspect *in;
    struct api *api;
    int wake_fd, stop_fd; /* eventfds */
    int rebuild_fd;       /* eventfd: a stream was suspended */
    pthread_t thread;
    pthread_mutex_t mu; /* guards what follows */
    struct stream *streams;
    int nstreams;
    uint64_t ids;
    int ending;
};

static void kick(int fd)
{
    uint64_t one = 1;

    if (write(fd, &one, sizeof one) < 0) {
        /* already readable: fine */
    }
}

/* ---- a stream's content ---------------------------------------------------- */

/* Frames the complete lines of st->raw into st->out, keeping a partial one. */
static void frame(struct stream *st)
{
    size_t at = 0;
    char *nl;

    while ((nl = memchr(st->raw + at, '\n', st->rawlen - at))) {
        const char *line = st->raw + at;
        size_t n = (size_t)(nl - line);
        uint64_t seq;
        int rc = 0;

        if (sscanf(line, "{\"seq\":%" SCNu64 ",", &seq) == 1)
            rc = buf_printf(&st->out, "id: %" PRIu64 "\n", seq);
        if (rc || buf_puts(&st->out, "data: ") || buf_append(&st->out, line, n) ||
            buf_puts(&st->out, "\n\n"))
            LOG_WARN("inspector stream: an event lost: out of memory");
        at += n + 1;
    }
    memmove(st->raw, st->raw + at, st->rawlen - at);
    st->rawlen -= at;
}

/* Takes the watcher's pending output. 1 when there was some. */
static int take(struct stream *st)
{
    size_t n = inspect_take(st->s->in, st->w, st->raw + st->rawlen, RAW_MAX - st->rawlen);

    st->rawlen += n;
    frame(st);
    return n > 0;
}

/* MHD_ContentReaderCallback. */
static ssize_t on_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream *st = cls;
    struct httpd_sse *s = st->s;

    (void)pos;
    for (;;) {
        if (st->off < st->out.len) {
            size_t n = st->out.len - st->off < max ? st->out.len - st->off : max;

            memcpy(buf, st->out.p + st->off, n);
            st->off += n;
            if (st->off == st->out.len) {
                buf_reset(&st->out);
                st->off = 0;
            }
            return (ssize_t)n;
        }
        if (take(st))
            continue;
        pthread_mutex_lock(&s->mu);
        if (s->ending || st->gone || st->revoked == 2) {
            int gone = st->gone;

            pthread_mutex_unlock(&s->mu);
            return gone ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (st->revoked == 1) { /* say why, then end */
            st->revoked = 2;
            pthread_mutex_unlock(&s->mu);
            if (buf_puts(&st->out, "data: {\"kind\":\"ended\",\"reason\":\"unauthorized\"}\n\n"))
                return MHD_CONTENT_READER_END_OF_STREAM;
            continue;
        }
        if (st->keepalive || st->kicked) {
            int ka = st->keepalive;

            st->keepalive = st->kicked = 0;
            pthread_mutex_unlock(&s->mu);
            if (ka && buf_puts(&st->out, ": keep-alive\n\n"))
                return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        st->suspended = 1;
        MHD_suspend_connection(st->conn);
        pthread_mutex_unlock(&s->mu);
        kick(s->rebuild_fd); /* watch its socket */
        return 0;
    }
}

/* Unlinks and frees st. */
static void stream_free(struct stream *st)
{
    struct httpd_sse *s = st->s;
    struct stream **p;

    pthread_mutex_lock(&s->mu);
    for (p = &s->streams; *p && *p != st; p = &(*p)->next)
        ;
    if (*p)
        *p = st->next;
    s->nstreams--;
    pthread_mutex_unlock(&s->mu);
    if (st->w)
        inspect_unwatch(s->in, st->w);
    buf_cleanup(&st->out);
    free(st->authz);
    free(st);
}

/* MHD_ContentReaderFreeCallback: the response is done with. */
static void on_free(void *cls)
{
    stream_free(cls);
    LOG_INFO("inspector: an HTTP watcher left");
}

struct sse_stream *httpd_sse_open(struct httpd_sse *s, const struct api_watch *w, const char *authz,
                                  const char **why)
{
    struct inspect_watch q = {.device = w->device[0] ? w->device : NULL,
                              .since_ms = w->since_ms,
                              .plaintext = w->plaintext,
                              .wake_fd = &s->wake_fd};
    struct stream *st = calloc(1, sizeof *st);

    *why = "nomem";
    if (!st || !authz || !(st->authz = strdup(authz))) {
        free(st);
        return NULL;
    }
    st->s = s;
    st->fd = -1;
    buf_init(&st->out, 2 * RAW_MAX);
    pthread_mutex_lock(&s->mu);
    if (s->ending || s->nstreams >= SSE_STREAMS_MAX) {
        *why = s->ending ? "stopping" : "too_many_watchers";
        pthread_mutex_unlock(&s->mu);
        free(st->authz);
        free(st);
        return NULL;
    }
    st->id = ++s->ids;
    st->next = s->streams; /* counted now; no connection to wake yet */
    s->streams = st;
    s->nstreams++;
    pthread_mutex_unlock(&s->mu);
    /* The replay, out of s->mu: it may copy megabytes. */
    if (!(st->w = inspect_watch(s->in, &q, clock_wall_ms()))) {
        *why = "too_many_watchers";
        stream_free(st);
        return NULL;
    }
    LOG_INFO("inspector: an HTTP watcher device=%s since_ms=%" PRId64 " plaintext=%d",
             w->device[0] ? w->device : "*", w->since_ms, w->plaintext);
    return (struct sse_stream *)st;
}

struct MHD_Response *httpd_sse_response(struct sse_stream *opened, struct MHD_Connection *conn)
{
    struct stream *st = (struct stream *)opened;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct MHD_Response *resp;

    pthread_mutex_lock(&st->s->mu);
    st->conn = conn;
    st->fd = ci ? ci->connect_fd : -1;
    pthread_mutex_unlock(&st->s->mu);
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, RAW_MAX, on_read, st, on_free);
    if (!resp)
        stream_free(st);
    return resp;
}

void httpd_sse_discard(struct sse_stream *opened)
{
    if (opened)
        stream_free((struct stream *)opened);
}

/* ---- the thread ----------------------------------------------------------- */

/* Resumes every suspended stream and kicks the others; keepalive: each gets
 * one. The resumes come after the unlock: a suspended connection cannot
 * close, so its pointer stays good until then. */
static void wake_streams(struct httpd_sse *s, int keepalive)
{
    struct MHD_Connection *resume[SSE_STREAMS_MAX];
    int n = 0;

    pthread_mutex_lock(&s->mu);
    for (struct stream *st = s->streams; st; st = st->next) {
        st->keepalive |= keepalive;
        if (st->suspended && n < SSE_STREAMS_MAX) {
            st->suspended = 0;
            resume[n++] = st->conn;
        } else {
            st->kicked = 1;
        }
    }
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n; i++)
        MHD_resume_connection(resume[i]);
}

/* Fills p with the sockets of the suspended streams; returns how many. */
static int watch_suspended(struct httpd_sse *s, struct pollfd *p)
{
    int n = 0;

    pthread_mutex_lock(&s->mu);
    for (struct stream *st = s->streams; st && n < SSE_STREAMS_MAX; st = st->next)
        if (st->suspended && st->fd >= 0)
            p[n++] = (struct pollfd){.fd = st->fd, .events = POLLRDHUP};
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* Marks the suspended streams whose socket is in gone[]: once resumed
 * (wake_streams), their readers end them. */
static void mark_gone(struct httpd_sse *s, const int *gone, int ngone)
{
    pthread_mutex_lock(&s->mu);
    for (struct stream *st = s->streams; st; st = st->next)
        for (int i = 0; i < ngone; i++)
            if (st->suspended && st->fd == gone[i])
                st->gone = 1;
    pthread_mutex_unlock(&s->mu);
}

/* Checks every stream's token again (the registry read outside the lock);
 * a stream whose token no longer works is marked and woken to end. */
static void recheck_tokens(struct httpd_sse *s)
{
    struct {
        uint64_t id;
        char *authz;
    } v[SSE_STREAMS_MAX];
    int n = 0;

    pthread_mutex_lock(&s->mu);
    for (struct stream *st = s->streams; st && n < SSE_STREAMS_MAX; st = st->next)
        if (!st->revoked && (v[n].authz = strdup(st->authz)))
            v[n++].id = st->id;
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < n; i++) {
        int ok = api_authorized(s->api, v[i].authz);

        free(v[i].authz);
        if (ok != 0)
            continue; /* valid, or the registry cannot tell: keep it */
        pthread_mutex_lock(&s->mu);
        for (struct stream *st = s->streams; st; st = st->next)
            if (st->id == v[i].id && !st->revoked) {
                st->revoked = 1;
                LOG_INFO("inspector: an HTTP watcher's token no longer works: its stream ends");
            }
        pthread_mutex_unlock(&s->mu);
    }
}

static void drain(int fd)
{
    uint64_t v;

    if (read(fd, &v, sizeof v) < 0) {
        /* nothing pending: fine */
    }
}

static void *run(void *arg)
{
    struct httpd_sse *s = arg;
    int64_t next = clock_mono_ms() + SSE_KEEPALIVE_MS;

    for (;;) {
        struct pollfd p[3 + SSE_STREAMS_MAX] = {{.fd = s->wake_fd, .events = POLLIN},
                                                {.fd = s->stop_fd, .events = POLLIN},
                                                {.fd = s->rebuild_fd, .events = POLLIN}};
        int n = 3 + watch_suspended(s, p + 3), gone[SSE_STREAMS_MAX], ngone = 0;
        int64_t wait = next - clock_mono_ms();

        if (poll(p, (nfds_t)n, wait > 0 ? (int)wait : 0) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break;
        if (p[0].revents)
            drain(s->wake_fd);
        if (p[2].revents)
            drain(s->rebuild_fd);
        for (int i = 3; i < n; i++)
            if (p[i].revents & (POLLRDHUP | POLLHUP | POLLERR))
                gone[ngone++] = p[i].fd;
        if (ngone)
            mark_gone(s, gone, ngone);
        int keepalive = clock_mono_ms() >= next;
        if (keepalive) {
            recheck_tokens(s);
            next = clock_mono_ms() + SSE_KEEPALIVE_MS;
        }
        if (p[0].revents || keepalive || ngone)
            wake_streams(s, keepalive);
    }
    return NULL;
}

int httpd_sse_start(struct inspect *in, struct api *a, struct httpd_sse **out)
{
    struct httpd_sse *s = calloc(1, sizeof *s);

    if (!s)
        return SP_ERR_NOMEM;
    s->in = in;
    s->api = a;
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    s->rebuild_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&s->mu, NULL);
    if (s->wake_fd < 0 || s->stop_fd < 0 || s->rebuild_fd < 0 ||
        pthread_create(&s->thread, NULL, run, s) != 0) {
        if (s->wake_fd >= 0)
            close(s->wake_fd);
        if (s->stop_fd >= 0)
            close(s->stop_fd);
        if (s->rebuild_fd >= 0)
            close(s->rebuild_fd);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return SP_ERR_IO;
    }
    *out = s;
    return 0;
}

void httpd_sse_end(struct httpd_sse *s)
{
    int left = 1;

    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->ending = 1;
    pthread_mutex_unlock(&s->mu);
    wake_streams(s, 0);
    /* Let their last chunk leave, so that a client sees a clean end. */
    for (int waited = 0; left && waited < END_WAIT_MS; waited += 10) {
        pthread_mutex_lock(&s->mu);
        left = s->nstreams;
        pthread_mutex_unlock(&s->mu);
        if (left)
            clock_sleep_ms(10);
    }
}

void httpd_sse_free(struct httpd_sse *s)
{
    if (!s)
        return;
    kick(s->stop_fd);
    pthread_join(s->thread, NULL);
    if (s->nstreams)
        LOG_ERROR("inspector: %d HTTP streams left at stop", s->nstreams);
    close(s->wake_fd);
    close(s->stop_fd);
    close(s->rebuild_fd);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
