/*
 * outcome.c - filling in the outcome of one message (see outcome.h): the
 * dead-letter reasons, the device lookup every route starts with, and the
 * request to run an analysis.
 */
#include "outcome.h"
#include "base/errors.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "base/metrics.h"
#include "sealpipe.h"

static const char *const reason_names[R_COUNT] = {"",
#define XX(r) #r,
                                                  OUTCOME_REASONS(XX)
#undef XX
};

const char *outcome_reason_name(enum reason r)
{
    return r < R_COUNT ? reason_names[r] : "";
}

void outcome_reset(struct outcome *o)
{
    memset(o, 0, offsetof(struct outcome, detail));
    o->detail[0] = '\0';
    o->job = -1;
}

void outcome_fail(struct outcome *o, enum reason r, const char *fmt, ...)
{
    va_list ap;
    o->reason = r;
    va_start(ap, fmt);
    vsnprintf(o->detail, sizeof(o->detail), fmt, ap);
    va_end(ap);
}

int outcome_device(struct outcome *o, struct devcache *devs, const char *serial, int plain,
                   struct device_info *dev)
{
    const struct device_info *cached;
    int rc = devcache_device(devs, serial, &cached);

    if (rc == SP_ERR_NODEVICE) {
        outcome_fail(o, R_unknown_device, "no device '%s'", serial);
        return rc;
    }
    if (rc) {
        o->db_error = rc;
        return rc;
    }
    *dev = *cached;
    o->serial = dev->serial;
    o->dev = cached;
    o->created = dev->created_ms;
    if (plain && dev->encryption_required) {
        outcome_fail(o, R_plaintext_refused, "device %s requires TagoTiP/S", serial);
        return -1;
    }
    return SP_OK;
}

void outcome_run(struct outcome *o, int ai, const struct ingest_msg *m,
                 const struct device_info *dev, int64_t now)
{
    o->job = ai;
    o->hm = (struct host_msg){
        .topic = m->topic,
        .payload = m->payload,
        .payload_len = m->len,
        .qos = m->qos,
        .retain = m->retain,
        .received_ms = now,
        .serial = dev->serial,
        .device_name = dev->name,
        .tags_json = dev->tags_json,
        .params_json = dev->params_json,
        .records = o->records.v,
        .nrecords = o->records.n,
    };
}

int outcome_parser(struct outcome *o, struct pool *pl, const struct device_info *dev)
{
    if (!dev->parser || !*dev->parser)
        return -1;
    int ai = pool_find(pl, dev->parser);
    if (ai < 0)
        outcome_fail(o, R_analysis_error, "device %s names parser '%s', which is not loaded",
                     dev->serial, dev->parser);
    return ai;
}

void outcome_log_totals(void)
{
    char line[1024];
    size_t o = 0;
    uint64_t dead = 0;

    line[0] = '\0';
    for (int r = 1; r < R_COUNT; r++) {
        const char *name = outcome_reason_name((enum reason)r);
        uint64_t n = metrics_get(METRIC_DEAD, name, NULL);
        dead += n;
        if (n && o < sizeof(line))
            o += (size_t)snprintf(line + o, sizeof(line) - o, " dead.%s=%llu", name,
                                  (unsigned long long)n);
    }
    LOG_INFO("stats messages=%llu stored=%llu records=%llu duplicates=%llu ignored=%llu "
             "refused=%llu dead=%llu%s",
             (unsigned long long)metrics_get(METRIC_COMMITTED, NULL, NULL),
             (unsigned long long)metrics_get(METRIC_STORED, NULL, NULL),
             (unsigned long long)metrics_get(METRIC_RECORDS, NULL, NULL),
             (unsigned long long)metrics_get(METRIC_DUPLICATES, NULL, NULL),
             (unsigned long long)metrics_get(METRIC_IGNORED, NULL, NULL),
             (unsigned long long)metrics_get(METRIC_REFUSED, NULL, NULL), (unsigned long long)dead,
             line);
}
