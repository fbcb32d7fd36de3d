/*
 * api_metrics.c - GET /api/v1/metrics (api.c has the table): a summary of
 * the daemon's own counters and gauges (base/metrics.h), what the console's
 * health page shows; /metrics on the metrics port has them all, in
 * Prometheus' format. Beside them, dead_letters_kept: the dead letters the
 * bucket holds now, by reason (what the dead letters page lists), where
 * dead_letters counts what was dead-lettered since the daemon started.
 */
#include <stdio.h>
#include <string.h>

#include "api_internal.h"
#include "base/errors.h"
#include "base/json.h"
#include "base/metrics.h"
#include "core/outcome.h"
#include "storage/deadletters.h"

#define REASONS_MAX 1024 /* reasons of dead letters kept, listed at most (the daemon writes 15) */

/* A counter or gauge without labels, as a member. */
struct summary_item {
    const char *key;
    enum metric m;
};

static const struct summary_item items[] = {
    {"messages_committed", METRIC_COMMITTED},
    {"messages_stored", METRIC_STORED},
    {"records_stored", METRIC_RECORDS},
    {"duplicates", METRIC_DUPLICATES},
    {"requests_refused", METRIC_REFUSED},
    {"answers_lost", METRIC_ANSWERS_LOST},
    {"broker_connected", METRIC_BROKER_CONNECTED},
    {"devices_connected", METRIC_DEVICES_CONNECTED},
    {"requests_waiting", METRIC_NETQ_DEPTH},
    {"journal_backlog_bytes", METRIC_JOURNAL_BACKLOG},
    {"broker_restarts", METRIC_BROKER_RESTARTS},
    {"broker_reconnects", METRIC_MQTT_RECONNECTS},
    {"worker_restarts", METRIC_WORKER_RESTARTS},
    {"mqtt_qos0_dropped", METRIC_MQTT_QOS0_DROPPED},
};

/* ,"dead_letters_kept":{reason:count,...} from the bucket. */
static int put_kept(struct api_req *r)
{
    struct dead_letter_count v[REASONS_MAX];
    struct deadletters *d;
    size_t n = 0;
    int rc;

    if (deadletters_open_file(r->a->data_dir, 0, &d, r->err, sizeof r->err))
        return SP_ERR_DB;
    rc = deadletters_by_reason(d, &r->a->arena, v, REASONS_MAX, &n);
    deadletters_close(d);
    if (rc)
        return rc;
    rc = buf_puts(r->b, ",\"dead_letters_kept\":{");
    for (size_t i = 0; i < n && !rc; i++) {
        rc = buf_printf(r->b, "%s", i ? "," : "");
        if (!rc)
            rc = json_write_string(r->b, v[i].reason, strlen(v[i].reason));
        if (!rc)
            rc = buf_printf(r->b, ":%lld", (long long)v[i].n);
    }
    return rc ? rc : buf_putc(r->b, '}');
}

int api__metrics(struct api_req *r)
{
    struct buf *b = r->b;
    int rc = api__no_params(r);

    if (rc)
        return rc;
    /* started_at first: the counters count from then. */
    rc = buf_printf(b, "{\"started_at\":%llu",
                    (unsigned long long)metrics_get(METRIC_START_TIME, NULL, NULL) * 1000);
    for (size_t i = 0; !rc && i < sizeof items / sizeof items[0]; i++)
        rc = api__put_int(b, items[i].key, (long long)metrics_get(items[i].m, NULL, NULL));
    if (!rc)
        rc = buf_puts(b, ",\"dead_letters\":{");
    for (int k = 1, first = 1; !rc && k < R_COUNT; k++) {
        const char *reason = outcome_reason_name((enum reason)k);
        uint64_t n = metrics_get(METRIC_DEAD, reason, NULL);
        if (!n)
            continue;
        rc = buf_printf(b, "%s\"%s\":%llu", first ? "" : ",", reason, (unsigned long long)n);
        first = 0;
    }
    if (!rc)
        rc = buf_putc(b, '}');
    if (!rc)
        rc = put_kept(r);
    if (!rc)
        rc = buf_putc(b, '}');
    return rc == SP_ERR_DB ? rc : rc ? SP_ERR_NOMEM : SP_OK;
}
