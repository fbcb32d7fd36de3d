/*
 * retention.c - deleting what is older than the retention window (see
 * retention.h), on the bucket's connection, between batches.
 *
 * A step has two parts, both bounded by the step's rows and milliseconds.
 *
 * The scan, the bulk: each table in the order its rows arrived (by id, from
 * a floor kept in memory), deleting the rows that are due, until the first
 * row that is not due under the global window. Rows arrive roughly in time
 * order, so what is due sits at the head of the table, and deleting it in
 * id order empties whole pages (deleting the same rows device by device
 * touched a different page per row: 26 us a row against 3-4 on a table of
 * 2 million rows of 50 devices). Rows kept longer by an override, or dated
 * ahead of their arrival, are stepped over, so they never hold it back.
 *
 * The key walk, once both scans have caught up: what the scan leaves
 * (readings that arrived late, with old times; rows of devices kept longer
 * or shorter than the global window). It goes key by key: data by (device,
 * variable), the leading columns of its index data_device_variable_time,
 * dead_letters by device (index dead_letters_device_received), plus the
 * dead letters of no known device under the global window; for each key it
 * deletes the oldest rows below that device's cutoff, each delete a range
 * of the index. A cursor per table remembers the last key visited, so
 * successive steps go round every key even when one step cannot finish the
 * round; a step goes round at most twice (wrapping once), so a caught-up
 * bucket costs an index probe per key a step, never a scan of a table.
 *
 * The overrides are read again only when another connection has committed
 * (PRAGMA data_version), which is how `sealpipe device set --retention`
 * reaches the daemon.
 */
#include "retention.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "bucket_internal.h"

enum {
    RS_BEGIN,
    RS_COMMIT,
    RS_ROLLBACK,
    RS_VERSION,
    RS_OVERRIDES,
    RS_DATA_NEXT,
    RS_DATA_DELETE,
    RS_DEAD_NEXT,
    RS_DEAD_DELETE,
    RS_DEAD_ANON_DELETE,
    RS_DATA_SCAN,
    RS_DEAD_SCAN,
    RS_DATA_DELETE_ID,
    RS_DEAD_DELETE_ID,
    RS_COUNT
};

/* ?1, ?2: the key after which to look (NEXT) or whose rows to delete
 * (DELETE); ?3: the cutoff, ?4: the most rows to delete. */
static const char *const rs_sql[RS_COUNT] = {
    [RS_BEGIN] = "BEGIN IMMEDIATE",
    [RS_COMMIT] = "COMMIT",
    [RS_ROLLBACK] = "ROLLBACK",
    [RS_VERSION] = "PRAGMA data_version",
    [RS_OVERRIDES] = "SELECT serial, retention_ms FROM device_retention ORDER BY serial",
    [RS_DATA_NEXT] = "SELECT device, variable FROM data WHERE (device, variable) > (?1, ?2)"
                     " ORDER BY device, variable LIMIT 1",
    [RS_DATA_DELETE] = "DELETE FROM data WHERE id IN (SELECT id FROM data"
                       " WHERE device = ?1 AND variable = ?2 AND time < ?3 LIMIT ?4)",
    [RS_DEAD_NEXT] = "SELECT device, '' FROM dead_letters WHERE device > ?1 AND ?2 IS NOT NULL"
                     " ORDER BY device LIMIT 1",
    [RS_DEAD_DELETE] = "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters"
                       " WHERE device = ?1 AND ?2 IS NOT NULL AND received_at < ?3 LIMIT ?4)",
    [RS_DEAD_ANON_DELETE] = "DELETE FROM dead_letters WHERE id IN (SELECT id FROM dead_letters"
                            " WHERE device IS NULL AND received_at < ?1 LIMIT ?2)",
    /* The rows after ?1 in the order they arrived: id, device, time, received. */
    [RS_DATA_SCAN] = "SELECT id, device, time, received_at FROM data WHERE id > ?1"
                     " ORDER BY id LIMIT ?2",
    [RS_DEAD_SCAN] = "SELECT id, device, received_at, received_at FROM dead_letters"
                     " WHERE id > ?1 ORDER BY id LIMIT ?2",
    [RS_DATA_DELETE_ID] = "DELETE FROM data WHERE id = ?1",
    [RS_DEAD_DELETE_ID] = "DELETE FROM dead_letters WHERE id = ?1",
};

/* Where the walk of one table stands: the last key visited ("" "" before
 * the first). */
struct cursor {
    char *device, *second;
};

struct override {
    char *serial;
    int64_t ms; /* 0: forever */
};

struct retention {
    sqlite3_stmt *st[RS_COUNT];
    int64_t global_ms;
    struct override *ov; /* sorted by serial (SQLite's BINARY order: strcmp) */
    size_t nov;
    int64_t version; /* PRAGMA data_version when ov was read; -1: never */
    struct cursor cur[2];
    int turn;         /* which table a step walks first, alternating */
    int64_t floor[2]; /* the scans: every row up to this id has been looked at */
    int behind;       /* the last step stopped at its bounds, not at the end of a round */
};

/* The tables a step walks: their NEXT and DELETE statements. */
static const int walk_next[2] = {RS_DATA_NEXT, RS_DEAD_NEXT};
static const int walk_delete[2] = {RS_DATA_DELETE, RS_DEAD_DELETE};
static const int scan_select[2] = {RS_DATA_SCAN, RS_DEAD_SCAN};
static const int scan_delete[2] = {RS_DATA_DELETE_ID, RS_DEAD_DELETE_ID};

void retention_format(int64_t ms, char out[RETENTION_TEXT_MAX])
{
    static const struct {
        char unit;
        int64_t ms;
    } units[] = {{'w', 604800000}, {'d', 86400000}, {'h', 3600000}, {'m', 60000}, {'s', 1000}};

    if (ms <= 0) {
        snprintf(out, RETENTION_TEXT_MAX, "forever");
        return;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (ms % units[i].ms == 0) {
            snprintf(out, RETENTION_TEXT_MAX, "%lld%c", (long long)(ms / units[i].ms),
                     units[i].unit);
            return;
        }
    snprintf(out, RETENTION_TEXT_MAX, "%lldms", (long long)ms);
}

static void overrides_free(struct retention *rt)
{
    for (size_t i = 0; i < rt->nov; i++)
        free(rt->ov[i].serial);
    free(rt->ov);
    rt->ov = NULL;
    rt->nov = 0;
}

static int cursor_set(struct cursor *c, const char *device, const char *second)
{
    char *d = strdup(device ? device : ""), *s = strdup(second ? second : "");

    if (!d || !s) {
        free(d);
        free(s);
        return SP_ERR_NOMEM;
    }
    free(c->device);
    free(c->second);
    c->device = d;
    c->second = s;
    return SP_OK;
}

int retention_open(struct bucket *b, int64_t global_ms, struct retention **out)
{
    struct retention *rt = calloc(1, sizeof *rt);

    if (!rt)
        return SP_ERR_NOMEM;
    rt->global_ms = global_ms > 0 ? global_ms : 0;
    rt->version = -1;
    if (cursor_set(&rt->cur[0], "", "") || cursor_set(&rt->cur[1], "", "")) {
        retention_close(rt);
        return SP_ERR_NOMEM;
    }
    if (bucket__prepare(b, rs_sql, rt->st, RS_COUNT)) {
        retention_close(rt);
        return SP_ERR_DB;
    }
    *out = rt;
    return SP_OK;
}

void retention_close(struct retention *rt)
{
    if (!rt)
        return;
    bucket__finalize(rt->st, RS_COUNT);
    overrides_free(rt);
    for (int i = 0; i < 2; i++) {
        free(rt->cur[i].device);
        free(rt->cur[i].second);
    }
    free(rt);
}

/* Reads the overrides into rt->ov. Returns 0, SP_ERR_NOMEM or SP_ERR_DB. */
static int overrides_read(struct retention *rt)
{
    sqlite3_stmt *st = rt->st[RS_OVERRIDES];
    struct override *ov = NULL;
    size_t n = 0, cap = 0;
    int rc;

    overrides_free(rt);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            struct override *p = realloc(ov, (cap = cap ? 2 * cap : 16) * sizeof *ov);
            if (!p)
                break;
            ov = p;
        }
        ov[n].serial = strdup((const char *)sqlite3_column_text(st, 0));
        ov[n].ms = sqlite3_column_int64(st, 1);
        if (!ov[n].serial)
            break;
        n++;
    }
    sqlite3_reset(st);
    rt->ov = ov;
    rt->nov = n;
    return rc == SQLITE_DONE ? SP_OK : rc == SQLITE_ROW ? SP_ERR_NOMEM : SP_ERR_DB;
}

/* Reads the overrides again if another connection committed since. */
static int overrides_fresh(struct retention *rt)
{
    sqlite3_stmt *st = rt->st[RS_VERSION];
    int64_t v = -1;

    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (v >= 0 && v == rt->version)
        return SP_OK;
    rt->version = -1;
    if (overrides_read(rt) != SP_OK)
        return SP_ERR_DB;
    rt->version = v;
    return SP_OK;
}

static int override_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct override *)elem)->serial);
}

/* The window of device serial's rows: its override, else the global one. */
static int64_t window_of(const struct retention *rt, const char *serial)
{
    const struct override *o =
        rt->nov ? bsearch(serial, rt->ov, rt->nov, sizeof *rt->ov, override_cmp) : NULL;

    return o ? o->ms : rt->global_ms;
}

/* 1 if some row may be old enough to go: a window somewhere is finite. */
static int anything_expires(const struct retention *rt)
{
    if (rt->global_ms > 0)
        return 1;
    for (size_t i = 0; i < rt->nov; i++)
        if (rt->ov[i].ms > 0)
            return 1;
    return 0;
}

/*
 * Moves table t's cursor to the next key. Returns SQLITE_ROW (the cursor is
 * the key), SQLITE_DONE (no key after it) or an error.
 */
static int next_key(struct retention *rt, int t)
{
    sqlite3_stmt *st = rt->st[walk_next[t]];
    struct cursor *c = &rt->cur[t];
    int rc;

    sqlite3_bind_text(st, 1, c->device, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, c->second, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && cursor_set(c, (const char *)sqlite3_column_text(st, 0),
                                       (const char *)sqlite3_column_text(st, 1)) != SP_OK)
        rc = SQLITE_NOMEM;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* Deletes up to max rows of the cursor's key older than cutoff. Returns the
 * count, or SP_ERR_DB. */
static int delete_key(struct retention *rt, int t, int64_t cutoff, int max)
{
    sqlite3_stmt *st = rt->st[walk_delete[t]];
    struct cursor *c = &rt->cur[t];

    sqlite3_bind_text(st, 1, c->device, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, c->second, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, cutoff);
    sqlite3_bind_int(st, 4, max);
    if (bucket__step_once(st) != SQLITE_DONE)
        return SP_ERR_DB;
    return sqlite3_changes(sqlite3_db_handle(st));
}

/*
 * Walks table t from its cursor, deleting what is due, until *budget rows
 * are deleted, deadline (monotonic ms) passes, or the walk has wrapped and
 * come to the end again. Returns 0 or SP_ERR_DB.
 */
static int walk(struct retention *rt, int t, int64_t now_ms, int64_t deadline, int *budget)
{
    int wrapped = 0;

    while (*budget > 0 && clock_mono_ms() < deadline) {
        int rc = next_key(rt, t);
        if (rc == SQLITE_DONE) {
            if (wrapped || cursor_set(&rt->cur[t], "", ""))
                return SP_OK;
            wrapped = 1;
            continue;
        }
        if (rc != SQLITE_ROW)
            return SP_ERR_DB;
        int64_t ms = window_of(rt, rt->cur[t].device);
        if (ms <= 0)
            continue;
        /* A key's rows are spread over the table's pages: in chunks, so
         * that the clock is looked at often. */
        int n;
        do {
            int max = *budget < RETENTION_KEY_ROWS ? *budget : RETENTION_KEY_ROWS;
            if ((n = delete_key(rt, t, now_ms - ms, max)) < 0)
                return SP_ERR_DB;
            *budget -= n;
        } while (n == RETENTION_KEY_ROWS && *budget > 0 && clock_mono_ms() < deadline);
    }
    return SP_OK;
}

/* One row the scan looked at. */
struct seen {
    int64_t id;
    int due;   /* older than its window: delete */
    int block; /* not due, under the global window and not dated ahead of its
                * arrival: what arrived after it is not due either, mostly */
};

/* Reads up to max rows of table t after its floor into rows. Returns the
 * count, or SP_ERR_DB. */
static int scan_read(struct retention *rt, int t, int64_t now_ms, struct seen *rows, int max)
{
    sqlite3_stmt *st = rt->st[scan_select[t]];
    int n = 0, rc = SQLITE_DONE;

    sqlite3_bind_int64(st, 1, rt->floor[t]);
    sqlite3_bind_int(st, 2, max);
    while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *dev = (const char *)sqlite3_column_text(st, 1);
        int64_t ms = dev ? window_of(rt, dev) : rt->global_ms;
        int64_t time = sqlite3_column_int64(st, 2);
        rows[n].id = sqlite3_column_int64(st, 0);
        rows[n].due = ms > 0 && time < now_ms - ms;
        rows[n].block = !rows[n].due && ms == rt->global_ms && time <= sqlite3_column_int64(st, 3);
        n++;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? n : SP_ERR_DB;
}

/*
 * The bulk of the work: table t in the order rows arrived (by id), from its
 * floor, deleting the rows that are due, up to the first that is not due
 * under the global window: rows arrive roughly in time order, so what is
 * due is mostly at the head of the table, and deleting it there frees whole
 * pages. Rows kept longer by an override, or dated ahead of their arrival,
 * are stepped over (the key walk deletes them when they are due), so they
 * never hold the scan back. Sets *caught_up when it reached such a row or
 * the end. Returns 0 or SP_ERR_DB.
 */
static int scan(struct retention *rt, int t, int64_t now_ms, int64_t deadline, int *budget,
                int *caught_up)
{
    struct seen rows[RETENTION_SCAN_ROWS];

    *caught_up = 0;
    while (*budget > 0 && clock_mono_ms() < deadline) {
        int want = *budget < RETENTION_SCAN_ROWS ? *budget : RETENTION_SCAN_ROWS;
        int n = scan_read(rt, t, now_ms, rows, want);
        if (n < 0)
            return SP_ERR_DB;
        for (int i = 0; i < n; i++) {
            if (rows[i].block) {
                *caught_up = 1;
                return SP_OK;
            }
            if (rows[i].due) {
                sqlite3_stmt *st = rt->st[scan_delete[t]];
                sqlite3_bind_int64(st, 1, rows[i].id);
                if (bucket__step_once(st) != SQLITE_DONE)
                    return SP_ERR_DB;
                (*budget)--;
            }
            rt->floor[t] = rows[i].id;
        }
        if (n < want) {
            *caught_up = 1;
            return SP_OK;
        }
    }
    return SP_OK;
}

/* Dead letters of no known device, under the global window. */
static int delete_anonymous(struct retention *rt, int64_t now_ms, int *budget)
{
    sqlite3_stmt *st = rt->st[RS_DEAD_ANON_DELETE];

    if (rt->global_ms <= 0 || *budget <= 0)
        return SP_OK;
    sqlite3_bind_int64(st, 1, now_ms - rt->global_ms);
    sqlite3_bind_int(st, 2, *budget);
    if (bucket__step_once(st) != SQLITE_DONE)
        return SP_ERR_DB;
    *budget -= sqlite3_changes(sqlite3_db_handle(st));
    return SP_OK;
}

int retention_step(struct retention *rt, int64_t now_ms)
{
    int64_t deadline = clock_mono_ms() + RETENTION_STEP_MS;
    int budget = RETENTION_STEP_ROWS;

    rt->behind = 0;
    if (overrides_fresh(rt) != SP_OK)
        return SP_ERR_DB;
    if (!anything_expires(rt))
        return 0;
    if (bucket__step_once(rt->st[RS_BEGIN]) != SQLITE_DONE)
        return SP_ERR_DB;
    /* The scans first (the bulk, page by page); once both have caught up,
     * the key walks (what arrived late or is kept longer). Alternating, so
     * that neither table waits while the other has more than a step's
     * worth. */
    rt->turn ^= 1;
    int a = rt->turn, b = !a, up_a = 0, up_b = 0, rc;
    rc = scan(rt, a, now_ms, deadline, &budget, &up_a);
    if (rc == SP_OK)
        rc = scan(rt, b, now_ms, deadline, &budget, &up_b);
    if (rc == SP_OK && up_a && up_b)
        rc = walk(rt, a, now_ms, deadline, &budget);
    if (rc == SP_OK && up_a && up_b)
        rc = delete_anonymous(rt, now_ms, &budget);
    if (rc == SP_OK && up_a && up_b)
        rc = walk(rt, b, now_ms, deadline, &budget);
    if (rc != SP_OK || bucket__step_once(rt->st[RS_COMMIT]) != SQLITE_DONE) {
        (void)bucket__step_once(rt->st[RS_ROLLBACK]);
        return SP_ERR_DB;
    }
    rt->behind = budget <= 0 || clock_mono_ms() >= deadline;
    return RETENTION_STEP_ROWS - budget;
}

/* Runs one statement of sql on b's connection, prepared for this call. */
static int run_once(struct bucket *b, const char *sql, const char *serial, int64_t ms, int64_t *out)
{
    sqlite3_stmt *st[1] = {NULL};
    int rc;

    if (bucket__prepare(b, &sql, st, 1))
        return SP_ERR_DB;
    sqlite3_bind_text(st[0], 1, serial, -1, SQLITE_STATIC);
    if (sqlite3_bind_parameter_count(st[0]) >= 2)
        sqlite3_bind_int64(st[0], 2, ms);
    rc = sqlite3_step(st[0]);
    if (rc == SQLITE_ROW && out)
        *out = sqlite3_column_int64(st[0], 0);
    bucket__finalize(st, 1);
    if (rc == SQLITE_ROW)
        return SP_OK;
    return rc == SQLITE_DONE ? (out ? SP_ERR_NOTFOUND : SP_OK) : SP_ERR_DB;
}

int retention_get_device(struct bucket *b, const char *serial, int64_t *ms)
{
    return run_once(b, "SELECT retention_ms FROM device_retention WHERE serial = ?1", serial, 0,
                    ms);
}

int retention_set_device(struct bucket *b, const char *serial, int64_t ms, int clear)
{
    if (clear)
        return run_once(b, "DELETE FROM device_retention WHERE serial = ?1", serial, 0, NULL);
    return run_once(b,
                    "INSERT INTO device_retention (serial, retention_ms) VALUES (?1, ?2)"
                    " ON CONFLICT (serial) DO UPDATE SET retention_ms = excluded.retention_ms",
                    serial, ms < 0 ? 0 : ms, NULL);
}

int retention_behind(const struct retention *rt)
{
    return rt->behind;
}
