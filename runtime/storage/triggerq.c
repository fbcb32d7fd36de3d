/*
 * triggerq.c - the trigger_queue and schedules tables (see triggerq.h):
 * statements on the bucket's connection.
 */
#include "triggerq.h"

#include <stdio.h>
#include <stdlib.h>

#include "base/errors.h"
#include "bucket_internal.h"

enum {
    TQ_ADD,
    TQ_TAKE,
    TQ_TAKE_RUNS,
    TQ_COUNT_OF,
    TQ_DONE,
    TQ_WAITING,
    TQ_DEFERRED,
    TQ_COUNT_ROWS,
    TQ_SCHED_GET,
    TQ_SCHED_SET,
    TQ_COUNT
};

static const char *const tq_sql[TQ_COUNT] = {
    [TQ_ADD] = "INSERT INTO trigger_queue (analysis, kind, serial, ctx, hops, created_at)"
               " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    /* Ticks, events and conditions first (each bounded by its cause), then
     * the runs of run_analysis(), both by the (kind, id) index. */
    [TQ_TAKE] = "SELECT id, analysis, kind, serial, ctx, hops, created_at FROM trigger_queue"
                " WHERE kind IN ('tick', 'event', 'condition') AND id > ?1 ORDER BY id LIMIT ?2",
    [TQ_TAKE_RUNS] = "SELECT id, analysis, kind, serial, ctx, hops, created_at FROM trigger_queue"
                     " WHERE kind = 'run' AND id > ?1 ORDER BY id LIMIT ?2",
    [TQ_COUNT_OF] = "SELECT count(*) FROM trigger_queue WHERE analysis = ?1 AND kind = ?2",
    [TQ_DONE] = "DELETE FROM trigger_queue WHERE id = ?1",
    [TQ_WAITING] = "SELECT 1 FROM trigger_queue WHERE analysis = ?1 AND kind = ?2 LIMIT 1",
    [TQ_DEFERRED] = "SELECT 1 FROM deferred WHERE topic = ?1 LIMIT 1",
    [TQ_COUNT_ROWS] = "SELECT count(*) FROM trigger_queue",
    [TQ_SCHED_GET] = "SELECT spec, last_due, last_tick FROM schedules WHERE analysis = ?1",
    [TQ_SCHED_SET] = "INSERT OR REPLACE INTO schedules (analysis, spec, last_due, last_tick)"
                     " VALUES (?1, ?2, ?3, ?4)",
};

struct triggerq {
    sqlite3_stmt *st[TQ_COUNT];
};

int triggerq_open(struct bucket *b, struct triggerq **out)
{
    struct triggerq *q = calloc(1, sizeof(*q));

    if (!q)
        return SP_ERR_NOMEM;
    if (bucket__prepare(b, tq_sql, q->st, TQ_COUNT)) {
        free(q);
        return SP_ERR_DB;
    }
    *out = q;
    return SP_OK;
}

void triggerq_close(struct triggerq *q)
{
    if (!q)
        return;
    bucket__finalize(q->st, TQ_COUNT);
    free(q);
}

int triggerq_add(struct triggerq *q, const struct triggerq_row *r)
{
    sqlite3_stmt *st = q->st[TQ_ADD];

    sqlite3_bind_text(st, 1, r->analysis, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->serial, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, r->ctx, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 5, r->hops);
    sqlite3_bind_int64(st, 6, r->created_at);
    return bucket__step_once(st) == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

/* Steps st (its ?1 after and ?2 a limit) into out[*n..max). */
static int take_rows(sqlite3_stmt *st, struct arena *a, int64_t after, struct triggerq_row *out,
                     size_t max, size_t *n)
{
    int rc = SQLITE_DONE, bad = 0;

    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)(max - *n));
    while (!bad && *n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct triggerq_row *r = &out[*n];
        r->id = sqlite3_column_int64(st, 0);
        r->analysis = bucket__text(st, 1, a, &bad);
        r->kind = bucket__text(st, 2, a, &bad);
        r->serial = bucket__text(st, 3, a, &bad);
        r->ctx = bucket__text(st, 4, a, &bad);
        r->hops = sqlite3_column_int(st, 5);
        r->created_at = sqlite3_column_int64(st, 6);
        if (!bad && r->analysis && r->kind && r->ctx)
            (*n)++;
    }
    if (!bad && *n < max && rc != SQLITE_DONE)
        bad = 2;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return bad == 1 ? SP_ERR_NOMEM : bad ? SP_ERR_DB : SP_OK;
}

int triggerq_take(struct triggerq *q, struct arena *a, int64_t after, struct triggerq_row *out,
                  size_t max, size_t *n)
{
    int rc;

    *n = 0;
    if (max == 0 || (rc = take_rows(q->st[TQ_TAKE], a, after, out, max, n)))
        return max == 0 ? SP_OK : rc;
    return *n < max ? take_rows(q->st[TQ_TAKE_RUNS], a, after, out, max, n) : SP_OK;
}

int64_t triggerq_waiting_count(struct triggerq *q, const char *analysis, const char *kind)
{
    sqlite3_stmt *st = q->st[TQ_COUNT_OF];
    int64_t n = -1;

    sqlite3_bind_text(st, 1, analysis, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return n;
}

int triggerq_done(struct triggerq *q, int64_t id)
{
    sqlite3_stmt *st = q->st[TQ_DONE];

    sqlite3_bind_int64(st, 1, id);
    return bucket__step_once(st) == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

int triggerq_waiting(struct triggerq *q, const char *analysis, const char *kind,
                     const char *deferred_topic)
{
    sqlite3_stmt *st = q->st[TQ_WAITING];
    int rc;

    sqlite3_bind_text(st, 1, analysis, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
    rc = bucket__step_once(st);
    if (rc == SQLITE_DONE) {
        st = q->st[TQ_DEFERRED];
        sqlite3_bind_text(st, 1, deferred_topic, -1, SQLITE_STATIC);
        rc = bucket__step_once(st);
    }
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : SP_ERR_DB;
}

int64_t triggerq_count(struct triggerq *q)
{
    sqlite3_stmt *st = q->st[TQ_COUNT_ROWS];
    int64_t n = -1;

    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return n;
}

int triggerq_schedule_get(struct triggerq *q, const char *analysis, char *spec, size_t cap,
                          int64_t *last_due, int64_t *last_tick)
{
    sqlite3_stmt *st = q->st[TQ_SCHED_GET];
    int rc;

    sqlite3_bind_text(st, 1, analysis, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const unsigned char *s = sqlite3_column_text(st, 0);
        snprintf(spec, cap, "%s", s ? (const char *)s : "");
        *last_due = sqlite3_column_int64(st, 1);
        *last_tick = sqlite3_column_type(st, 2) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 2);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : SP_ERR_DB;
}

int triggerq_schedule_set(struct triggerq *q, const char *analysis, const char *spec,
                          int64_t last_due, int64_t last_tick)
{
    sqlite3_stmt *st = q->st[TQ_SCHED_SET];

    sqlite3_bind_text(st, 1, analysis, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, spec, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, last_due);
    if (last_tick >= 0)
        sqlite3_bind_int64(st, 4, last_tick);
    return bucket__step_once(st) == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}
