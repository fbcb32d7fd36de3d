/*
 * answers.c - the daemon's answers to devices (TagoTiP ACKs), published from
 * inside the broker (plugin_opt_answers).
 *
 * Why not the daemon's MQTT link: every QoS 1 answer it publishes comes back
 * as a PUBACK, and libmosquitto 2.0.11 walks its whole list of messages in
 * flight for each PUBACK it reads (message__release_to_inflight), so a batch
 * of n answers cost the daemon O(n^2): a quarter of its CPU at full rate
 * (docs/facts.md). Here an answer is a frame on a unix socket
 * (base/answerframe.h) that mosquitto_broker_publish_copy() queues for the
 * subscribers at QoS 1, as if the daemon had published it: same topic, same
 * QoS, same ACL check on delivery.
 *
 * The daemon listens on <data_dir>/answers.sock; the plugin connects (again
 * every second while it cannot) and reads on every tick. A tick runs once
 * per pass of the broker's loop, which waits up to 100 ms for its sockets,
 * so the daemon publishes a QoS 0 wake-up on its own link after writing
 * answers (transport/answers.c). A connection whose stream goes bad (a
 * length out of bounds) is dropped; what it held is lost, as answers in a
 * broker that dies are.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/answerframe.h"
#include "base/clock.h"
#include "plugin.h"

#define ANSWERS_BUF      (1u << 20) /* more than one frame of the largest size */
#define ANSWERS_RETRY_MS 1000
#define ANSWERS_TICK_MAX (8u << 20) /* bytes read per tick, so one tick stays short */

_Static_assert(ANSWERFRAME_HEAD + ANSWERFRAME_TOPIC_MAX + ANSWERFRAME_PAYLOAD_MAX <= ANSWERS_BUF,
               "a whole frame must fit the buffer");

struct answers {
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int fd;           /* -1: not connected */
    int64_t next_try; /* monotonic ms */
    uint8_t *in;      /* bytes read, not yet published */
    size_t len;
    char topic[ANSWERFRAME_TOPIC_MAX + 1]; /* the frame's topic, as a string */
};

static void drop_connection(struct answers *a, const char *why)
{
    if (why)
        mosquitto_log_printf(MOSQ_LOG_WARNING, "sealpipe: answers from the daemon: %s", why);
    if (a->fd >= 0)
        close(a->fd);
    a->fd = -1;
    a->len = 0;
    a->next_try = clock_mono_ms() + ANSWERS_RETRY_MS;
}

/*
 * Publishes the frame at the start of in[0..len), its topic made a string
 * in topic. Returns its size, 0 when it is not whole yet, or -1 when the
 * stream is bad.
 */
static long publish_frame(const uint8_t *in, size_t len, char topic[ANSWERFRAME_TOPIC_MAX + 1])
{
    uint32_t tlen, plen;

    if (len < ANSWERFRAME_HEAD)
        return 0;
    if (answerframe_parse(in, &tlen, &plen) != 0)
        return -1;
    size_t size = ANSWERFRAME_HEAD + (size_t)tlen + plen;
    if (len < size)
        return 0;
    const uint8_t *payload = in + ANSWERFRAME_HEAD + tlen;
    memcpy(topic, in + ANSWERFRAME_HEAD, tlen);
    topic[tlen] = '\0';
    if (memchr(topic, '+', tlen) || memchr(topic, '#', tlen))
        mosquitto_log_printf(MOSQ_LOG_WARNING, "sealpipe: answer to a wildcard topic dropped");
    else if (mosquitto_broker_publish_copy(NULL, topic, (int)plen, plen ? payload : NULL, 1, false,
                                           NULL) != MOSQ_ERR_SUCCESS)
        mosquitto_log_printf(MOSQ_LOG_WARNING, "sealpipe: an answer could not be queued");
    return (long)size;
}

/* Publishes the whole frames read so far and keeps the rest. 0, or -1 when
 * the stream is bad. */
static int publish_all(struct answers *a)
{
    size_t at = 0;
    long n;

    while ((n = publish_frame(a->in + at, a->len - at, a->topic)) > 0)
        at += (size_t)n;
    if (at) {
        memmove(a->in, a->in + at, a->len - at);
        a->len -= at;
    }
    return n < 0 ? -1 : 0;
}

void answers_tick(struct answers *a)
{
    size_t got = 0;

    if (!a)
        return;
    if (a->fd < 0) {
        if (clock_mono_ms() < a->next_try)
            return;
        a->next_try = clock_mono_ms() + ANSWERS_RETRY_MS;
        if ((a->fd = unixconn_open(a->path)) < 0)
            return;
        a->len = 0;
    }
    while (got < ANSWERS_TICK_MAX) {
        ssize_t n = recv(a->fd, a->in + a->len, ANSWERS_BUF - a->len, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            drop_connection(a, NULL); /* the daemon stopped; it listens again when back */
            return;
        }
        a->len += (size_t)n;
        got += (size_t)n;
        if (publish_all(a) != 0) {
            drop_connection(a, "a frame out of bounds; connection dropped");
            return;
        }
    }
}

int answers_open(struct answers **out, const char *path)
{
    struct answers *a;

    *out = NULL;
    if (strlen(path) >= sizeof a->path) {
        char f_path[LOG_FIELD_MAX];
        mosquitto_log_printf(MOSQ_LOG_ERR, "sealpipe: plugin_opt_answers %s: path too long",
                             LOG_FIELD(f_path, path));
        return -1;
    }
    if (!(a = calloc(1, sizeof *a)) || !(a->in = malloc(ANSWERS_BUF))) {
        free(a);
        return -1;
    }
    snprintf(a->path, sizeof a->path, "%s", path);
    a->fd = -1;
    answers_tick(a);
    *out = a;
    return 0;
}

void answers_close(struct answers *a)
{
    if (!a)
        return;
    if (a->fd >= 0)
        close(a->fd);
    free(a->in);
    free(a);
}
