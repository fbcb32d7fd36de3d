/*
 * inspect_bench.c - what the Live Inspector costs the pipeline per message
 * (make bench prints it after the end-to-end figures; BUILD/bench-inspect).
 *
 * A typical stored TagoTiP message makes three events: "message" (with a
 * payload preview), "stored" (two variables) and "sent" (its answer), each
 * formatted, kept in its device's ring and handed to the watchers it
 * concerns. 1,000 devices take turns, so the rings are full and the hash of
 * rings is probed as in a daemon with many devices. Nanoseconds per message,
 * the median of 5 runs: with nobody watching, and with one `inspect --all`
 * watcher whose output a second thread takes as the daemon's socket thread
 * would.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "core/inspect.h"
#include "core/observe.h"

#define ITER    300000
#define RUNS    5
#define DEVICES 1000

static char serials[DEVICES][16];
static volatile int draining;

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double run_once(struct inspect *in)
{
    static const uint8_t payload[] = "[temperature:=21.5#C;humidity:=40#%]";
    struct record rec[2] = {{.variable = "temperature"}, {.variable = "humidity"}};
    struct ingest_msg m = {.topic = "$tip/sensor-0001/push",
                           .payload = payload,
                           .len = sizeof payload - 1,
                           .full_len = sizeof payload - 1,
                           .qos = 1};
    struct outcome o;
    int64_t t0 = clock_mono_us();

    memset(&o, 0, sizeof o);
    o.records = (struct record_vec){rec, 2, 2};
    for (int i = 0; i < ITER; i++) {
        o.serial = serials[i % DEVICES];
        m.publisher = o.serial;
        observe_message(in, &m, &o, 1796000000000 + i);
        observe_sent(in, o.serial, "answer", "$tip/sensor-0001/ack", NULL, 12, 1796000000000 + i);
    }
    return (double)(clock_mono_us() - t0) * 1000.0 / ITER;
}

static double ns_per_message(struct inspect *in)
{
    double t[RUNS];

    for (int r = 0; r < RUNS; r++)
        t[r] = run_once(in);
    qsort(t, RUNS, sizeof t[0], cmp);
    return t[RUNS / 2];
}

struct drain {
    struct inspect *in;
    struct inspect_watcher *w;
    size_t bytes;
};

static void *drainer(void *arg)
{
    struct drain *d = arg;
    static char buf[1 << 16];

    /* As the socket thread: take everything, then wait for more. */
    while (draining) {
        size_t n = inspect_take(d->in, d->w, buf, sizeof buf);
        d->bytes += n;
        if (n < sizeof buf)
            usleep(1000);
    }
    return NULL;
}

int main(void)
{
    struct inspect *in;
    pthread_t th;

    for (int i = 0; i < DEVICES; i++)
        snprintf(serials[i], sizeof serials[i], "sensor-%04d", i);
    if (inspect_new(&in))
        return 1;
    printf("inspector ns per message, 3 events (median of %d runs of %d messages, %d "
           "devices):\n",
           RUNS, ITER, DEVICES);
    printf("  nobody watching                 %6.0f\n", ns_per_message(in));
    struct inspect_watch q = {0};
    struct drain d = {in, inspect_watch(in, &q, clock_wall_ms()), 0};
    draining = 1;
    if (!d.w || pthread_create(&th, NULL, drainer, &d) != 0)
        return 1;
    printf("  one watcher of every device     %6.0f\n", ns_per_message(in));
    draining = 0;
    pthread_join(th, NULL);
    inspect_unwatch(in, d.w);
    inspect_free(in);
    return 0;
}
