/*
 * condstate.c - the condition_state table (see condstate.h): statements on
 * the bucket's connection.
 */
#include "condstate.h"

#include <stdlib.h>

#include "base/errors.h"
#include "bucket_internal.h"

enum { CS_GET, CS_PUT, CS_DUE, CS_COUNT };

static const char *const cs_sql[CS_COUNT] = {
    [CS_GET] = "SELECT state, since, due_at, last_value, last_time FROM condition_state"
               " WHERE analysis = ?1 AND cond = ?2 AND serial = ?3",
    [CS_PUT] = "INSERT OR REPLACE INTO condition_state (analysis, cond, serial, state, since,"
               " due_at, last_value, last_time) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    [CS_DUE] = "SELECT analysis, cond, serial, state, since, due_at, last_value, last_time"
               " FROM condition_state WHERE due_at IS NOT NULL AND due_at <= ?1"
               " ORDER BY due_at LIMIT ?2",
};

struct condstate {
    sqlite3_stmt *st[CS_COUNT];
};

int condstate_open(struct bucket *b, struct condstate **out)
{
    struct condstate *cs = calloc(1, sizeof(*cs));

    if (!cs)
        return SP_ERR_NOMEM;
    if (bucket__prepare(b, cs_sql, cs->st, CS_COUNT)) {
        free(cs);
        return SP_ERR_DB;
    }
    *out = cs;
    return SP_OK;
}

void condstate_close(struct condstate *cs)
{
    if (!cs)
        return;
    bucket__finalize(cs->st, CS_COUNT);
    free(cs);
}

static int64_t time_at(sqlite3_stmt *st, int i, int64_t none)
{
    return sqlite3_column_type(st, i) == SQLITE_NULL ? none : sqlite3_column_int64(st, i);
}

/* Columns first.. of st (state, since, due_at, last_value, last_time) into r. */
static int read_state(sqlite3_stmt *st, int first, struct arena *a, struct condrow *r)
{
    int bad = 0;

    r->state = sqlite3_column_int(st, first);
    r->since = time_at(st, first + 1, -1);
    r->due_at = time_at(st, first + 2, -1);
    r->last_value = bucket__text(st, first + 3, a, &bad);
    r->last_time = time_at(st, first + 4, INT64_MIN);
    return bad;
}

int condstate_get(struct condstate *cs, struct arena *a, struct condrow *r)
{
    sqlite3_stmt *st = cs->st[CS_GET];
    int rc, bad = 0;

    sqlite3_bind_text(st, 1, r->analysis, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->cond, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->serial, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        bad = read_state(st, 0, a, r);
    else
        *r = (struct condrow){.analysis = r->analysis,
                              .cond = r->cond,
                              .serial = r->serial,
                              .since = -1,
                              .due_at = -1,
                              .last_time = INT64_MIN};
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (bad)
        return SP_ERR_NOMEM;
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : SP_ERR_DB;
}

static void bind_time(sqlite3_stmt *st, int i, int64_t t, int64_t none)
{
    if (t != none)
        sqlite3_bind_int64(st, i, t);
}

int condstate_put(struct condstate *cs, const struct condrow *r)
{
    sqlite3_stmt *st = cs->st[CS_PUT];

    sqlite3_bind_text(st, 1, r->analysis, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->cond, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->serial, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, r->state);
    bind_time(st, 5, r->since, -1);
    bind_time(st, 6, r->due_at, -1);
    sqlite3_bind_text(st, 7, r->last_value, -1, SQLITE_STATIC);
    bind_time(st, 8, r->last_time, INT64_MIN);
    return bucket__step_once(st) == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

int condstate_due(struct condstate *cs, int64_t now, struct arena *a, struct condrow *out,
                  size_t max, size_t *n)
{
    sqlite3_stmt *st = cs->st[CS_DUE];
    int rc = SQLITE_DONE, bad = 0;

    *n = 0;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    while (!bad && *n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct condrow *r = &out[*n];
        r->analysis = bucket__text(st, 0, a, &bad);
        r->cond = bucket__text(st, 1, a, &bad);
        r->serial = bucket__text(st, 2, a, &bad);
        bad = bad || read_state(st, 3, a, r) || !r->analysis || !r->cond || !r->serial;
        (*n) += !bad;
    }
    if (!bad && *n < max && rc != SQLITE_DONE)
        bad = 2;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return bad == 1 ? SP_ERR_NOMEM : bad ? SP_ERR_DB : SP_OK;
}
