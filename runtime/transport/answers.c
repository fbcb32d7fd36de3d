/*
 * answers.c - see answers.h.
 */
#include "answers.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/answerframe.h"
#include "base/clock.h"
#include "base/errors.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/unixsock.h"

#define ANSWERS_OUT_MAX   (4u << 20) /* frames waiting for the socket; past it, the link */
#define ANSWERS_ACCEPT_MS 200        /* how often a new plugin is looked for */
#define ANSWERS_ALONE_MS  10000      /* no plugin this long: look at the socket file */

struct answers {
    char path[4096];
    int lfd;          /* listening */
    int fd;           /* the plugin's connection, or -1 */
    int64_t next_try; /* monotonic ms: when to accept() again */
    int64_t alone;    /* monotonic ms since when no plugin is connected; 0: one is */
    uint8_t *out;     /* frames not written yet, whole but the first */
    size_t len;
    size_t frames;    /* frames in out, the partly written first one included */
    size_t head_left; /* bytes of the first frame not written yet; 0: out starts with a frame */
    int wake;         /* frames were written since the last wake-up */
    const struct ingest_output *link;
    struct ingest_output output;
};

static void drop_plugin(struct answers *a, const char *why)
{
    if (a->frames) {
        LOG_WARN("answers: %zu answers lost with the broker plugin's connection (%s)", a->frames,
                 why);
        metrics_add(METRIC_ANSWERS_LOST, a->frames);
    }
    close(a->fd);
    a->fd = -1;
    a->len = 0;
    a->frames = 0;
    a->head_left = 0;
    a->alone = clock_mono_ms();
}

/* 1 if the plugin's end of the connection is still open (a broker that
 * died closed it; what is written to it now would be lost). */
static int plugin_alive(const struct answers *a)
{
    char c;
    ssize_t n = recv(a->fd, &c, 1, MSG_DONTWAIT | MSG_PEEK);

    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR));
}

/* The socket file was removed (a cleaner, an operator): listen again, so
 * that the next broker's plugin can connect. */
static void listen_again(struct answers *a)
{
    char err[1024];
    int fd;

    if (access(a->path, F_OK) == 0)
        return;
    if ((fd = unixsock_listen(a->path, err, sizeof err)) < 0) {
        LOG_WARN("answers: %s; answers go through MQTT", err);
        return;
    }
    LOG_WARN("answers: %s was removed; listening on it again", a->path);
    close(a->lfd);
    a->lfd = fd;
}

/*
 * Takes every connection waiting and keeps the newest: each broker that
 * started (and maybe died) since the last look left one, oldest first, and
 * only the newest can be alive (fits() drops one whose plugin is gone before
 * anything is written to it).
 */
static void look_for_plugin(struct answers *a)
{
    int64_t now = clock_mono_ms();
    int fd;

    if (now < a->next_try)
        return;
    a->next_try = now + ANSWERS_ACCEPT_MS;
    while ((fd = accept4(a->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        if (a->fd >= 0)
            drop_plugin(a, "a new broker connected");
        a->fd = fd;
        a->alone = 0;
        LOG_DEBUG("answers: the broker plugin connected");
    }
    if (a->fd < 0 && now - a->alone >= ANSWERS_ALONE_MS) {
        a->alone = now;
        listen_again(a);
    }
}

/* n more bytes of out were written: the frames they complete are gone. */
static void frames_written(struct answers *a, size_t n)
{
    size_t at = 0;
    uint32_t tlen, plen;

    while (n > 0) {
        if (a->head_left == 0) {
            (void)answerframe_parse(a->out + at, &tlen, &plen); /* written here: valid */
            a->head_left = ANSWERFRAME_HEAD + (size_t)tlen + plen;
        }
        size_t take = n < a->head_left ? n : a->head_left;
        n -= take;
        at += take;
        a->head_left -= take;
        if (a->head_left == 0)
            a->frames--;
    }
}

/* Writes what the socket takes. 0, or -1 when the connection is gone. */
static int write_out(struct answers *a)
{
    size_t at = 0;

    while (at < a->len) {
        ssize_t n = send(a->fd, a->out + at, a->len - at, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            drop_plugin(a, n < 0 ? strerror(errno) : "closed");
            return -1;
        }
        at += (size_t)n;
        a->wake = 1;
    }
    frames_written(a, at);
    memmove(a->out, a->out + at, a->len - at);
    a->len -= at;
    return 0;
}

/* 1 if the frame of an answer fits the channel now. */
static int fits(struct answers *a, size_t tlen, size_t len)
{
    size_t size = ANSWERFRAME_HEAD + tlen + len;

    if (tlen == 0 || tlen > ANSWERFRAME_TOPIC_MAX || len > ANSWERFRAME_PAYLOAD_MAX)
        return 0;
    look_for_plugin(a);
    if (a->fd < 0)
        return 0;
    /* Once a step, before its first frame: a dead plugin costs nothing. */
    if (a->len == 0 && !plugin_alive(a)) {
        drop_plugin(a, "closed");
        return 0;
    }
    if (a->len + size > ANSWERS_OUT_MAX && write_out(a) != 0)
        return 0;
    return a->len + size <= ANSWERS_OUT_MAX;
}

static int channel_publish(void *ctx, const char *topic, const void *payload, size_t len, int qos,
                           int retain, const struct ingest_origin *from)
{
    struct answers *a = ctx;
    size_t tlen = strlen(topic);

    if (qos != 1 || retain || from)
        return a->link->publish(a->link->ctx, topic, payload, len, qos, retain, from);
    if (!fits(a, tlen, len)) {
        metrics_add_labels(METRIC_ANSWERS, "mqtt", NULL, 1);
        return a->link->publish(a->link->ctx, topic, payload, len, qos, retain, from);
    }
    metrics_add_labels(METRIC_ANSWERS, "plugin", NULL, 1);
    answerframe_head(a->out + a->len, (uint32_t)tlen, (uint32_t)len);
    memcpy(a->out + a->len + ANSWERFRAME_HEAD, topic, tlen);
    if (len)
        memcpy(a->out + a->len + ANSWERFRAME_HEAD + tlen, payload, len);
    a->len += ANSWERFRAME_HEAD + tlen + len;
    a->frames++;
    return SP_OK;
}

/* The link itself is flushed by the pipeline, after this. */
static int channel_flush(void *ctx)
{
    struct answers *a = ctx;

    if (a->fd >= 0 && a->len)
        write_out(a);
    if (a->wake && a->link->publish(a->link->ctx, ANSWERS_WAKE_TOPIC, "", 0, 0, 0, NULL) == SP_OK)
        a->wake = 0;
    return SP_OK;
}

int answers_open(const char *path, const struct ingest_output *link, struct answers **out,
                 char *err, size_t errlen)
{
    struct answers *a = calloc(1, sizeof *a);

    *out = NULL;
    if (!a || !(a->out = malloc(ANSWERS_OUT_MAX))) {
        free(a);
        snprintf(err, errlen, "answers: out of memory");
        return SP_ERR_IO;
    }
    if ((a->lfd = unixsock_listen(path, err, errlen)) < 0) {
        free(a->out);
        free(a);
        return SP_ERR_IO;
    }
    a->fd = -1;
    a->alone = clock_mono_ms();
    snprintf(a->path, sizeof a->path, "%s", path);
    a->link = link;
    a->output =
        (struct ingest_output){.ctx = a, .publish = channel_publish, .flush = channel_flush};
    *out = a;
    return SP_OK;
}

void answers_free(struct answers *a)
{
    if (!a)
        return;
    if (a->fd >= 0 && a->len)
        write_out(a);
    if (a->fd >= 0)
        close(a->fd);
    close(a->lfd);
    free(a->out);
    free(a);
}

const struct ingest_output *answers_output(struct answers *a)
{
    return &a->output;
}
