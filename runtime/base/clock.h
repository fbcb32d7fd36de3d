/*
 * clock.h - the two clocks the daemon and the broker plugin read, in
 * milliseconds (microseconds for the metrics' short durations): wall-clock
 * time for what is stored or compared with stored times (record times,
 * token expiry, key grace), monotonic time for deadlines, timeouts and
 * intervals. Header-only, so that the plugin, which links nothing of the
 * daemon, has the same two.
 */
#ifndef SP_CLOCK_H
#define SP_CLOCK_H

#include <errno.h>
#include <stdint.h>
#include <time.h>

/* Clock id's time in units of 1/per_s of a second (per_s: 1000 or 1000000). */
static inline int64_t clock__read(clockid_t id, int64_t per_s)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * per_s + ts.tv_nsec / (1000000000 / per_s);
}

static inline int64_t clock_wall_ms(void)
{
    return clock__read(CLOCK_REALTIME, 1000);
}

static inline int64_t clock_mono_ms(void)
{
    return clock__read(CLOCK_MONOTONIC, 1000);
}

/* The same two in microseconds, for durations under a millisecond (metrics). */
static inline int64_t clock_wall_us(void)
{
    return clock__read(CLOCK_REALTIME, 1000000);
}

static inline int64_t clock_mono_us(void)
{
    return clock__read(CLOCK_MONOTONIC, 1000000);
}

/* CPU time the calling thread has used, in microseconds. */
static inline int64_t clock_thread_cpu_us(void)
{
    return clock__read(CLOCK_THREAD_CPUTIME_ID, 1000000);
}

/* Sleeps ms milliseconds, the whole of them even if a signal comes. */
static inline void clock_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

#endif
