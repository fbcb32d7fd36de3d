/*
 * metrics_bench.c - what the metrics cost on the data path (make bench
 * prints it after the end-to-end figures; built as BUILD/bench-metrics).
 *
 * Each line is nanoseconds per call, the median of 5 runs of ITER calls:
 * an unlabelled counter, a counter with a label value already seen (a hash
 * probe and a compare), a message received (its topic's kind, then two
 * labels), a histogram observation, and a labelled histogram (an analysis's
 * duration); then the unlabelled counter again with two threads adding to
 * it at once (the cache line moves between cores: the worst case, as the
 * listeners' threads and the pipeline's never share one in practice). A
 * message costs the daemon a few of these: received, one or two counters
 * at commit, publish-to-commit, an analysis's duration when it runs one.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/clock.h"
#include "base/metrics.h"

#define ITER 2000000
#define RUNS 5

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void inc(void)
{
    metrics_inc(METRIC_COMMITTED);
}

static void labelled(void)
{
    metrics_add_labels(METRIC_DEAD, "analysis_error", NULL, 1);
}

static void received(void)
{
    metrics_received("journal", "$tips/sensor-0001/push");
}

static void observe(void)
{
    metrics_observe(METRIC_PUBLISH_TO_COMMIT, 1234);
}

static void analysis(void)
{
    metrics_observe_labels(METRIC_ANALYSIS, "passthrough", NULL, 37);
}

static double ns_per_call(void (*fn)(void))
{
    double t[RUNS];

    for (int r = 0; r < RUNS; r++) {
        int64_t t0 = clock_mono_us();
        for (int i = 0; i < ITER; i++)
            fn();
        t[r] = (double)(clock_mono_us() - t0) * 1000.0 / ITER;
    }
    qsort(t, RUNS, sizeof t[0], cmp);
    return t[RUNS / 2];
}

static void *adder(void *arg)
{
    (void)arg;
    for (int i = 0; i < ITER; i++)
        inc();
    return NULL;
}

static double contended(void)
{
    pthread_t th;
    int64_t t0 = clock_mono_us();

    if (pthread_create(&th, NULL, adder, NULL) != 0)
        return -1;
    adder(NULL);
    pthread_join(th, NULL);
    return (double)(clock_mono_us() - t0) * 1000.0 / ITER;
}

int main(void)
{
    printf("metrics   ns per call (median of %d runs of %d calls):\n", RUNS, ITER);
    printf("  counter                         %6.1f\n", ns_per_call(inc));
    printf("  counter, labelled (seen value)  %6.1f\n", ns_per_call(labelled));
    printf("  message received (kind, labels) %6.1f\n", ns_per_call(received));
    printf("  histogram observe               %6.1f\n", ns_per_call(observe));
    printf("  histogram, labelled             %6.1f\n", ns_per_call(analysis));
    printf("  counter, 2 threads at once      %6.1f\n", contended());
    return 0;
}
