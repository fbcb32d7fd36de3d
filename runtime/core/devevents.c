/*
 * devevents.c - device events for the analyses whose `on` lists them (see
 * triggers.h): between batches, each connection or disconnection that
 * device_status's TRIGGERs recorded (storage/devevents.h) becomes one event
 * run per interested analysis; and, every OFFLINE_SCAN_MS while the
 * pipeline is caught up, each device silent for its offline_after becomes
 * one "offline" run per analysis, once per silence (offline_state).
 */
#include <stdio.h>
#include <string.h>

#include "base/arena.h"
#include "base/errors.h"
#include "base/json.h"
#include "base/log.h"
#include "base/timespan.h"
#include "sandbox/pool.h"
#include "storage/bucket.h"
#include "storage/devcache.h"
#include "storage/devevents.h"
#include "triggers.h"
#include "triggers_internal.h"

/* Device events fanned out per step, and silent devices read per page. */
#define EVENTS_BATCH  256
#define SILENCES_PAGE 256
/* How often the silences are looked for. */
#define OFFLINE_SCAN_MS 5000
/* Scratch for one step's rows. */
#define EVENTS_ARENA (1024 * 1024)

/* Appends ,"key":value to b, a JSON string or null. 0 or -1. */
static int put_str(struct buf *b, const char *key, const char *v)
{
    if (buf_printf(b, ",\"%s\":", key))
        return -1;
    return v ? json_write_string(b, v, strlen(v)) : buf_puts(b, "null");
}

/* The ctx of a connection or disconnection, in tr->ctx. */
static int event_ctx(struct triggers *tr, const struct devevent *e)
{
    struct buf *b = &tr->ctx;

    buf_reset(b);
    if (buf_puts(b, "{\"kind\":") || json_write_string(b, e->kind, strlen(e->kind)) ||
        buf_printf(b, ",\"at\":%lld", (long long)e->at) || put_str(b, "client_id", e->client_id) ||
        put_str(b, "address", e->address) || put_str(b, "protocol", e->protocol) ||
        (strcmp(e->kind, "disconnected") == 0 && put_str(b, "reason", e->reason)) ||
        buf_puts(b, "}") || buf_putc(b, '\0'))
        return SP_ERR_NOMEM;
    return SP_OK;
}

/* The event bit of a device_events kind, or -1. */
static int event_of(const char *kind)
{
    for (int k = 0; k < HOST_EVENTS; k++)
        if (strcmp(kind, host_event_name(k)) == 0)
            return k;
    return -1;
}

/* In the open transaction: e as one run per analysis that listens. */
static int fan_out(struct triggers *tr, const struct devevent *e, int64_t now, int *queued)
{
    int ev = event_of(e->kind);

    for (size_t i = 0; ev >= 0 && i < pool_count(tr->pool); i++) {
        if (!(pool_events(tr->pool, i) & HOST_BIT(ev)) || !triggers__in_scope(tr, i, e->serial))
            continue;
        if (event_ctx(tr, e))
            return SP_ERR_NOMEM;
        if (triggers__queue(tr, pool_name(tr->pool, i), HOST_EVENT, e->serial, 0, now))
            return SP_ERR_DB;
        (*queued)++;
    }
    return SP_OK;
}

int triggers_events_step(struct triggers *tr, int64_t now)
{
    struct devevent e[EVENTS_BATCH];
    struct arena a;
    size_t n = 0;
    int queued = 0, rc;

    arena_init(&a, EVENTS_ARENA);
    rc = devevents_take(tr->ev, &a, e, EVENTS_BATCH, &n);
    if (rc || n == 0) {
        arena_cleanup(&a);
        return rc;
    }
    if (!(rc = bucket_begin(tr->bk))) {
        for (size_t i = 0; i < n && !rc; i++)
            rc = fan_out(tr, &e[i], now, &queued);
        if (!rc)
            rc = devevents_forget(tr->ev, e[n - 1].id);
        rc = triggers__end(tr, rc, queued);
    }
    arena_cleanup(&a);
    return rc;
}

/* ---- silences --------------------------------------------------------------- */

int triggers_offline_due(const struct triggers *tr, int64_t now)
{
    if (now < tr->next_offline)
        return 0;
    for (size_t i = 0; i < pool_count(tr->pool); i++)
        if (pool_events(tr->pool, i) & HOST_BIT(HOST_EV_OFFLINE))
            return 1;
    return 0;
}

/*
 * How long serial may be silent before it is offline for an analysis
 * whose offline_after is dflt: its param offline_after when that is a
 * valid length, else dflt; 0 when the device is not registered (any more).
 */
static int64_t device_offline_after(struct triggers *tr, struct arena *a, const char *serial,
                                    int64_t dflt)
{
    const struct device_info *d;
    const char *v;
    int64_t ms;

    if (devcache_device(tr->devs, serial, &d) != SP_OK)
        return 0;
    if (!(v = triggers__param(d, a, "offline_after")) || timespan_parse(v, &ms) ||
        ms < HOST_OFFLINE_MIN_MS)
        return dflt;
    return ms;
}

/* The ctx of a silence, in tr->ctx. */
static int offline_ctx(struct triggers *tr, const struct devsilence *s, int64_t after, int64_t now)
{
    buf_reset(&tr->ctx);
    if (buf_printf(&tr->ctx,
                   "{\"kind\":\"offline\",\"at\":%lld,\"last_sent\":%lld,\"silent_ms\":%lld,"
                   "\"offline_after\":%lld}",
                   (long long)now, (long long)s->last_sent, (long long)(now - s->last_sent),
                   (long long)after) ||
        buf_putc(&tr->ctx, '\0'))
        return SP_ERR_NOMEM;
    return SP_OK;
}

/*
 * Analysis i's silent devices, page by page, each reported in a
 * transaction begun at the first of them (*open): a scan that finds nothing
 * writes nothing, and waits for no lock.
 */
static int offline_one(struct triggers *tr, size_t i, int64_t now, int *queued, int *open)
{
    const char *name = pool_name(tr->pool, i);
    int64_t dflt = pool_offline_after_ms(tr->pool, i);
    char after[SP_MAX_SERIAL + 1] = "";
    struct devsilence s[SILENCES_PAGE];
    struct arena a;
    size_t n;
    int rc;

    arena_init(&a, EVENTS_ARENA);
    do {
        arena_reset(&a);
        rc = devevents_silent(tr->ev, name, now - HOST_OFFLINE_MIN_MS, after, &a, s, SILENCES_PAGE,
                              &n);
        for (size_t k = 0; k < n && !rc; k++) {
            int64_t limit = device_offline_after(tr, &a, s[k].serial, dflt);
            if (limit == 0 || now - s[k].last_sent < limit ||
                !triggers__in_scope(tr, i, s[k].serial))
                continue;
            if (!*open && !(rc = bucket_begin(tr->bk)))
                *open = 1;
            if (!rc && !(rc = offline_ctx(tr, &s[k], limit, now)) &&
                !(rc = triggers__queue(tr, name, HOST_EVENT, s[k].serial, 0, now)))
                rc = devevents_reported(tr->ev, name, s[k].serial, s[k].last_sent, now);
            (*queued) += !rc;
        }
        if (n)
            snprintf(after, sizeof(after), "%s", s[n - 1].serial);
    } while (!rc && n == SILENCES_PAGE);
    arena_cleanup(&a);
    return rc;
}

int triggers_offline_step(struct triggers *tr, int64_t now)
{
    int queued = 0, open = 0, rc = SP_OK;

    tr->next_offline = now + OFFLINE_SCAN_MS;
    for (size_t i = 0; i < pool_count(tr->pool) && !rc; i++)
        if (pool_events(tr->pool, i) & HOST_BIT(HOST_EV_OFFLINE))
            rc = offline_one(tr, i, now, &queued, &open);
    return open ? triggers__end(tr, rc, queued) : rc;
}
