/*
 * schedules.c - the ticks of the analyses that declare a schedule (see
 * triggers.h): between batches, a tick is queued for each analysis whose
 * latest due time (base/schedule.h) is past the last one dealt with and that
 * has no tick waiting, so ticks never overlap and the due times missed
 * while the daemon was down make one.
 */
#include <stdio.h>
#include <string.h>

#include "base/errors.h"
#include "base/metrics.h"
#include "base/schedule.h"
#include "ingest.h"
#include "sandbox/pool.h"
#include "storage/bucket.h"
#include "storage/triggerq.h"
#include "triggers.h"
#include "triggers_internal.h"

/* Missed due times counted into one tick, at most. */
#define TRIGGERS_MISSED_MAX 10000

/* The ctx of a tick: {"scheduled": due, "missed": n[, "previous": tick]}. */
static int tick_ctx(struct triggers *tr, int64_t due, int64_t missed, int64_t previous)
{
    struct buf *b = &tr->ctx;

    buf_reset(b);
    if (buf_printf(b, "{\"scheduled\":%lld,\"missed\":%lld", (long long)due, (long long)missed) ||
        (previous >= 0 && buf_printf(b, ",\"previous\":%lld", (long long)previous)) ||
        buf_puts(b, "}") || buf_putc(b, '\0'))
        return SP_ERR_NOMEM;
    return SP_OK;
}

/*
 * In the open transaction: analysis i's schedule at now. A schedule the
 * table does not know (a new analysis, a changed spec) starts at its next
 * due time; a due time past the last one dealt with makes a tick when none
 * of the analysis waits. Returns 1 when it queued one, 0, or SP_ERR_DB.
 * Without write, it only says (1) whether it would write anything: the step
 * opens a transaction only then, as a write transaction waits for a lock
 * another process may hold for long (the daemon's stop must not).
 */
static int schedule_one(struct triggers *tr, size_t i, int64_t now, int write)
{
    const char *name = pool_name(tr->pool, i), *spec = pool_schedule(tr->pool, i);
    char kept[HOST_SCHEDULE_MAX + 1], topic[96], why[160];
    struct schedule sc;
    int64_t last = 0, tick = -1, due;
    int rc;

    if (!spec || schedule_parse(spec, &sc, why, sizeof(why)) ||
        (due = schedule_latest(&sc, now)) < 0)
        return 0;
    if ((rc = triggerq_schedule_get(tr->q, name, kept, sizeof(kept), &last, &tick)) < 0)
        return rc;
    if (rc == 0 || strcmp(kept, spec) != 0)
        return write ? triggerq_schedule_set(tr->q, name, spec, due, rc ? tick : -1) : 1;
    snprintf(topic, sizeof(topic), "%stick/%s", INGEST_TRIGGER_PREFIX, name);
    if (due <= last || (rc = triggerq_waiting(tr->q, name, "tick", topic)) != 0)
        return rc < 0 ? rc : 0;
    if (!write)
        return 1;
    int64_t missed = schedule_count_between(&sc, last, due, TRIGGERS_MISSED_MAX);
    if (tick_ctx(tr, due, missed, tick))
        return 0;
    if ((rc = triggers__queue(tr, name, HOST_TICK, NULL, 0, now)) ||
        (rc = triggerq_schedule_set(tr->q, name, spec, due, due)))
        return rc;
    tr->missed += (uint64_t)missed;
    return 1;
}

/* 1 when some loaded analysis's schedule has something to write, or SP_ERR_DB. */
static int any_due(struct triggers *tr, int64_t now)
{
    int rc = 0;

    for (size_t i = 0; i < pool_count(tr->pool) && rc == 0; i++)
        rc = schedule_one(tr, i, now, 0);
    return rc;
}

int triggers_schedule_step(struct triggers *tr, int64_t now)
{
    int queued = 0, rc = SP_OK;

    metrics_gauge_set(METRIC_TRIGGERS_WAITING, triggerq_count(tr->q));
    if ((rc = any_due(tr, now)) <= 0)
        return rc;
    if (bucket_begin(tr->bk))
        return SP_ERR_DB;
    for (size_t i = 0; i < pool_count(tr->pool) && rc >= 0; i++)
        if ((rc = schedule_one(tr, i, now, 1)) > 0)
            queued++;
    rc = triggers__end(tr, rc < 0 ? rc : SP_OK, queued);
    if (rc >= 0 && tr->missed)
        metrics_add(METRIC_TICKS_MISSED, tr->missed);
    tr->missed = 0;
    return rc;
}
