/*
 * tablepoll.c - the timer and the answer of the table-reading sources (see
 * tablepoll.h).
 */
#include "tablepoll.h"

#include <errno.h>
#include <poll.h>
#include <sys/timerfd.h>
#include <unistd.h>

int tablepoll_timer(long every_ms)
{
    struct itimerspec every = {
        .it_interval = {.tv_nsec = every_ms * 1000000L},
        .it_value = {.tv_nsec = every_ms * 1000000L},
    };
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);

    if (tfd >= 0 && timerfd_settime(tfd, 0, &every, NULL) != 0) {
        close(tfd);
        tfd = -1;
    }
    return tfd;
}

int tablepoll_due(int tfd, int more, int timeout_ms)
{
    uint64_t ticks;

    if (more)
        return 1;
    if (timeout_ms > 0) {
        struct pollfd pfd = {.fd = tfd, .events = POLLIN};
        if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR)
            return 0;
    }
    return read(tfd, &ticks, sizeof(ticks)) == (ssize_t)sizeof(ticks);
}

int tablepoll_no_answer(void *ctx, const struct ingest_msg *m, const char *topic,
                        const uint8_t *payload, size_t len)
{
    (void)ctx;
    (void)m;
    (void)topic;
    (void)payload;
    (void)len;
    return 0;
}
