/*
 * devevents.c - the device_events and offline_state tables (see
 * devevents.h): statements on the bucket's connection.
 */
#include "devevents.h"

#include <stdlib.h>

#include "base/errors.h"
#include "bucket_internal.h"

enum { DE_TAKE, DE_FORGET, DE_SILENT, DE_REPORTED, DE_COUNT };

static const char *const de_sql[DE_COUNT] = {
    [DE_TAKE] = "SELECT id, serial, kind, at, reason, client_id, address, protocol"
                " FROM device_events ORDER BY id LIMIT ?1",
    [DE_FORGET] = "DELETE FROM device_events WHERE id <= ?1",
    [DE_SILENT] = "SELECT s.serial, s.last_sent FROM device_status s"
                  " LEFT JOIN offline_state o ON o.analysis = ?1 AND o.serial = s.serial"
                  " WHERE s.serial > ?3 AND s.last_sent IS NOT NULL AND s.last_sent <= ?2"
                  " AND (o.last_sent IS NULL OR o.last_sent <> s.last_sent)"
                  " ORDER BY s.serial LIMIT ?4",
    [DE_REPORTED] =
        "INSERT OR REPLACE INTO offline_state (analysis, serial, last_sent, reported_at)"
        " VALUES (?1, ?2, ?3, ?4)",
};

struct devevents {
    sqlite3_stmt *st[DE_COUNT];
};

int devevents_open(struct bucket *b, struct devevents **out)
{
    struct devevents *de = calloc(1, sizeof(*de));

    if (!de)
        return SP_ERR_NOMEM;
    if (bucket__prepare(b, de_sql, de->st, DE_COUNT)) {
        free(de);
        return SP_ERR_DB;
    }
    *out = de;
    return SP_OK;
}

void devevents_close(struct devevents *de)
{
    if (!de)
        return;
    bucket__finalize(de->st, DE_COUNT);
    free(de);
}

/* Steps st into rows with read_row until max or the end; resets st. */
static int read_rows(sqlite3_stmt *st, size_t max, size_t *n,
                     int (*read_row)(sqlite3_stmt *st, size_t i, void *out, struct arena *a),
                     void *out, struct arena *a)
{
    int rc = SQLITE_DONE, bad = 0;

    *n = 0;
    while (!bad && *n < max && (rc = sqlite3_step(st)) == SQLITE_ROW)
        bad = read_row(st, (*n)++, out, a);
    if (!bad && *n < max && rc != SQLITE_DONE)
        bad = 2;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return bad == 1 ? SP_ERR_NOMEM : bad ? SP_ERR_DB : SP_OK;
}

static int event_row(sqlite3_stmt *st, size_t i, void *out, struct arena *a)
{
    struct devevent *e = (struct devevent *)out + i;
    int bad = 0;

    e->id = sqlite3_column_int64(st, 0);
    e->serial = bucket__text(st, 1, a, &bad);
    e->kind = bucket__text(st, 2, a, &bad);
    e->at = sqlite3_column_int64(st, 3);
    e->reason = bucket__text(st, 4, a, &bad);
    e->client_id = bucket__text(st, 5, a, &bad);
    e->address = bucket__text(st, 6, a, &bad);
    e->protocol = bucket__text(st, 7, a, &bad);
    return bad;
}

int devevents_take(struct devevents *de, struct arena *a, struct devevent *out, size_t max,
                   size_t *n)
{
    sqlite3_bind_int64(de->st[DE_TAKE], 1, (sqlite3_int64)max);
    return read_rows(de->st[DE_TAKE], max, n, event_row, out, a);
}

int devevents_forget(struct devevents *de, int64_t id)
{
    sqlite3_bind_int64(de->st[DE_FORGET], 1, id);
    return bucket__step_once(de->st[DE_FORGET]) == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

static int silence_row(sqlite3_stmt *st, size_t i, void *out, struct arena *a)
{
    struct devsilence *s = (struct devsilence *)out + i;
    int bad = 0;

    s->serial = bucket__text(st, 0, a, &bad);
    s->last_sent = sqlite3_column_int64(st, 1);
    return bad || !s->serial;
}

int devevents_silent(struct devevents *de, const char *analysis, int64_t before, const char *after,
                     struct arena *a, struct devsilence *out, size_t max, size_t *n)
{
    sqlite3_stmt *st = de->st[DE_SILENT];

    sqlite3_bind_text(st, 1, analysis, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, before);
    sqlite3_bind_text(st, 3, after, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)max);
    return read_rows(st, max, n, silence_row, out, a);
}

int devevents_reported(struct devevents *de, const char *analysis, const char *serial,
                       int64_t last_sent, int64_t now)
{
    sqlite3_stmt *st = de->st[DE_REPORTED];

    sqlite3_bind_text(st, 1, analysis, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, serial, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, last_sent);
    sqlite3_bind_int64(st, 4, now);
    return bucket__step_once(st) == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}
