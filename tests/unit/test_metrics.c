/* test_metrics.c - counters, gauges, histograms, the label cap and the text form. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "base/buf.h"
#include "base/metrics.h"
#include "sealpipe.h"

/* The text form, in b (caller cleans up). */
static const char *text(struct buf *b)
{
    buf_reset(b);
    CHECK_EQ_INT(metrics_format(b), 0);
    return b->p ? b->p : "";
}

static void test_counters(void)
{
    struct buf b;

    buf_init(&b, METRICS_FORMAT_MAX);
    CHECK(strstr(text(&b), "\nsealpipe_records_stored_total 0\n") != NULL);
    CHECK(strstr(text(&b), "# TYPE sealpipe_dead_letters_total counter\n") != NULL);
    metrics_add(METRIC_RECORDS, 3);
    metrics_inc(METRIC_RECORDS);
    CHECK_EQ_INT((int)metrics_get(METRIC_RECORDS, NULL, NULL), 4);
    metrics_gauge_set(METRIC_NETQ_DEPTH, -2);
    CHECK(strstr(text(&b), "\nsealpipe_requests_waiting -2\n") != NULL);
    metrics_received("journal", "$tips/d1/push");
    metrics_received("journal", "$tip/d1/push");
    metrics_received("http", "$tip");
    metrics_received("mqtt", "$tipsy/x");
    CHECK_EQ_INT((int)metrics_get(METRIC_RECEIVED, "journal", "tips"), 1);
    CHECK_EQ_INT((int)metrics_get(METRIC_RECEIVED, "http", "tip"), 1);
    CHECK_EQ_INT((int)metrics_get(METRIC_RECEIVED, "mqtt", "other"), 1);
    CHECK(strstr(text(&b),
                 "sealpipe_messages_received_total{transport=\"journal\",kind=\"tip\"} 1\n"));
    buf_cleanup(&b);
}

static void test_histogram(void)
{
    struct buf b;

    buf_init(&b, METRICS_FORMAT_MAX);
    metrics_observe(METRIC_COMMIT_SECONDS, 50);       /* 0.00005 s: first bucket */
    metrics_observe(METRIC_COMMIT_SECONDS, 2000);     /* 0.002 s */
    metrics_observe(METRIC_COMMIT_SECONDS, 90000000); /* 90 s: only +Inf */
    const char *t = text(&b);
    CHECK(strstr(t, "sealpipe_commit_duration_seconds_bucket{le=\"0.0001\"} 1\n") != NULL);
    CHECK(strstr(t, "sealpipe_commit_duration_seconds_bucket{le=\"0.0025\"} 2\n") != NULL);
    CHECK(strstr(t, "sealpipe_commit_duration_seconds_bucket{le=\"60\"} 2\n") != NULL);
    CHECK(strstr(t, "sealpipe_commit_duration_seconds_bucket{le=\"+Inf\"} 3\n") != NULL);
    CHECK(strstr(t, "sealpipe_commit_duration_seconds_count 3\n") != NULL);
    CHECK(strstr(t, "sealpipe_commit_duration_seconds_sum 90.002050\n") != NULL);
    metrics_observe(METRIC_COMMIT_BATCH, 3);
    CHECK(strstr(text(&b), "sealpipe_commit_batch_messages_bucket{le=\"4\"} 1\n") != NULL);
    metrics_observe_labels(METRIC_ANALYSIS, "a\"b\\c", NULL, 10);
    CHECK(strstr(text(&b), "{analysis=\"a\\\"b\\\\c\",le=\"0.0001\"} 1\n") != NULL);
    buf_cleanup(&b);
}

/* Past the cap a label's new values count under "other". */
static void test_cap(void)
{
    char name[32];

    for (int i = 0; i < METRICS_VALUES + 10; i++) {
        snprintf(name, sizeof name, "reason_%d", i);
        metrics_add_labels(METRIC_DEAD, name, NULL, 1);
    }
    CHECK_EQ_INT((int)metrics_get(METRIC_DEAD, "reason_0", NULL), 1);
    CHECK_EQ_INT((int)metrics_get(METRIC_DEAD, "reason_31", NULL), 1);
    CHECK_EQ_INT((int)metrics_get(METRIC_DEAD, "reason_32", NULL), 0);
    CHECK_EQ_INT((int)metrics_get(METRIC_DEAD, "other", NULL), 10);
    /* A value seen before the cap still counts under its own name. */
    metrics_add_labels(METRIC_DEAD, "reason_5", NULL, 1);
    CHECK_EQ_INT((int)metrics_get(METRIC_DEAD, "reason_5", NULL), 2);
    /* Values longer than a label holds are cut, and match their cut copy. */
    char longv[200];
    memset(longv, 'x', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    for (int i = 0; i < 3; i++)
        metrics_observe_labels(METRIC_ANALYSIS, longv, NULL, 1);
    CHECK_EQ_INT((int)metrics_get(METRIC_ANALYSIS, longv, NULL), 3);
}

int main(void)
{
    RUN(test_counters);
    RUN(test_histogram);
    RUN(test_cap);
    return check_done();
}
