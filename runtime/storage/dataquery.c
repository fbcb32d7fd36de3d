/*
 * dataquery.c - TagoIO's data queries over the data table, read-only (see
 * dataquery.h); used by sealpipe query.
 *
 * Each query is one SELECT built from the options, so that what the command
 * does can be written out as SQL (dataquery_sql; the README shows sqlite3
 * statements that give the same rows). Three shapes:
 *  - records: the filtered rows in time order, LIMIT qty OFFSET skip;
 *  - a pick (last, first, min, max): the record chosen per variable (and
 *    interval), so the whole record comes back: for last and first without
 *    intervals one index seek per variable, else row_number() in the pick's
 *    order;
 *  - a reduction (count, avg, sum): GROUP BY variable (and interval).
 * min, max, avg and sum read only records of type 'number': strings,
 * booleans and records without a value are skipped, so a variable that has
 * no number gives no row. The interval of a time t is t - (t mod I) with a
 * floor modulo, aligned to the Unix epoch and therefore to UTC midnight for
 * whole days. The (device, variable, time) index serves every shape.
 */
#include "dataquery.h"
#include "base/clock.h"
#include "base/errors.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bucket_internal.h"
#include "datadir.h"

struct dataquery_db {
    sqlite3 *db;
    int limit_ms;        /* dataquery_time_limit; 0: none */
    int64_t deadline_ms; /* clock_mono_ms() past which a running query stops */
};

/* sqlite3_progress_handler: nonzero stops the statement (SQLITE_INTERRUPT). */
static int past_deadline(void *ctx)
{
    const struct dataquery_db *d = ctx;

    return clock_mono_ms() > d->deadline_ms;
}

void dataquery_time_limit(struct dataquery_db *d, int ms)
{
    d->limit_ms = ms;
    sqlite3_progress_handler(d->db, ms > 0 ? 10000 : 0, ms > 0 ? past_deadline : NULL, d);
}

/* How long to wait for a lock: a reader waits only while the daemon
 * checkpoints or recovers the WAL. */
#define DATAQUERY_BUSY_MS 5000

#define COLS "type, value, unit, time, group_id, lat, lng, alt, metadata, variable"

/*
 * The URI that opens path read-only. A reader of a WAL database needs the
 * -wal and -shm files, and a read-only connection creates them when they are
 * missing (and cannot delete them after). They are missing only while no
 * connection has the database open (the last one to close deletes them), so
 * then immutable=1: SQLite takes no lock and creates nothing, and reads the
 * database file alone, which nobody is changing. (Should the daemon start
 * during the read, it writes to a new WAL; the database file changes only
 * when the daemon checkpoints, after far more writes than a query lasts.)
 */
static int open_uri(const char *path, char *uri, size_t cap)
{
    char wal[4096];
    struct stat st;
    size_t n = 0;

    if (snprintf(wal, sizeof wal, "%s-wal", path) >= (int)sizeof wal)
        return -1;
    n += (size_t)snprintf(uri, cap, "file:");
    for (const char *p = path; *p && n + 4 < cap; p++)
        n += (size_t)(*p == '%' || *p == '?' || *p == '#'
                          ? snprintf(uri + n, cap - n, "%%%02X", (unsigned char)*p)
                          : snprintf(uri + n, cap - n, "%c", *p));
    n += (size_t)snprintf(uri + n, cap - n, "%s",
                          stat(wal, &st) != 0 && errno == ENOENT ? "?immutable=1" : "");
    return n + 1 < cap ? 0 : -1;
}

int dataquery_open(const char *data_dir, struct dataquery_db **out, char *err, size_t errlen)
{
    char path[4096], uri[3 * 4096 + 32];
    struct dataquery_db *d;
    int rc;

    if (snprintf(path, sizeof path, "%s/" DATADIR_DB, data_dir) >= (int)sizeof path ||
        open_uri(path, uri, sizeof uri)) {
        snprintf(err, errlen, "data directory path too long");
        return SP_ERR_NOTFOUND;
    }
    if (!(d = calloc(1, sizeof *d)))
        return SP_ERR_NOMEM;
    rc = sqlite3_open_v2(uri, &d->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX,
                         NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, d->db ? sqlite3_errmsg(d->db) : "cannot open");
        dataquery_close(d);
        return rc == SQLITE_CANTOPEN ? SP_ERR_NOTFOUND : SP_ERR_DB;
    }
    sqlite3_busy_timeout(d->db, DATAQUERY_BUSY_MS);
    *out = d;
    return SP_OK;
}

void dataquery_close(struct dataquery_db *d)
{
    if (!d)
        return;
    sqlite3_close(d->db);
    free(d);
}

int dataquery_device_exists(struct dataquery_db *d, const char *serial, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(d->db, "SELECT 1 FROM devices WHERE serial = ?1", -1, &st, NULL)) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(d->db));
        return SP_ERR_DB;
    }
    sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        snprintf(err, errlen, "%s", sqlite3_errmsg(d->db));
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : SP_ERR_DB;
}

/* ---- the statement --------------------------------------------------------- */

static int numeric_only(enum dataquery_agg agg)
{
    return agg == DATAQUERY_MIN || agg == DATAQUERY_MAX || agg == DATAQUERY_AVG ||
           agg == DATAQUERY_SUM;
}

/* The WHERE clause's conditions. */
static int put_where(struct buf *b, const struct dataquery *q)
{
    int rc = buf_puts(b, "device = ?1");

    if (!rc && q->nvariables) {
        rc = buf_puts(b, " AND variable IN (");
        for (size_t i = 0; !rc && i < q->nvariables; i++)
            rc = buf_printf(b, "%s?%zu", i ? ", " : "", 7 + i);
        rc = rc ? rc : buf_putc(b, ')');
    }
    if (!rc && q->has_start)
        rc = buf_puts(b, " AND time >= ?2");
    if (!rc && q->has_end)
        rc = buf_puts(b, " AND time <= ?3");
    if (!rc && q->group)
        rc = buf_puts(b, " AND group_id = ?4");
    if (!rc && numeric_only(q->agg))
        rc = buf_puts(b, " AND type = 'number'");
    return rc;
}

/* "<slot> AS slot FROM data WHERE <conditions>": the matching rows, each
 * with the start of its interval (NULL without intervals). */
static int put_slotted(struct buf *b, const struct dataquery *q)
{
    long long i = (long long)q->interval_ms;
    int rc = i > 0 ? buf_printf(b, "time - ((time %% %lld) + %lld) %% %lld", i, i, i)
                   : buf_puts(b, "NULL");

    if (!rc)
        rc = buf_puts(b, " AS slot FROM data WHERE ");
    return rc ? rc : put_where(b, q);
}

/* The aggregate rows' order: intervals in time order, then variables. */
static int put_agg_tail(struct buf *b, const struct dataquery *q)
{
    if (q->interval_ms > 0)
        return buf_printf(b, " ORDER BY slot %s, variable LIMIT ?5 OFFSET ?6",
                          q->ascending ? "ASC" : "DESC");
    return buf_puts(b, " ORDER BY variable LIMIT ?5 OFFSET ?6");
}

/*
 * last or first without intervals: for each variable of the device (its
 * distinct names, read from the index), the id of its newest or oldest
 * matching record, found by a seek on (device, variable, time). A tenth of
 * a second for a million records, where numbering every row takes seconds.
 */
static int put_seek(struct buf *b, const struct dataquery *q)
{
    const char *order = q->agg == DATAQUERY_LAST ? "DESC" : "ASC";
    int rc = buf_puts(b, "SELECT " COLS ", NULL FROM data WHERE id IN (SELECT (SELECT id FROM"
                         " data WHERE ");

    if (!rc)
        rc = put_where(b, q);
    if (!rc)
        rc = buf_printf(b,
                        " AND variable = v.variable ORDER BY time %s, id %s LIMIT 1) FROM"
                        " (SELECT DISTINCT variable FROM data WHERE ",
                        order, order);
    if (!rc)
        rc = put_where(b, q);
    return rc ? rc : buf_puts(b, ") AS v) ORDER BY variable LIMIT ?5 OFFSET ?6");
}

/* A pick per variable and interval: row_number() over the few columns the
 * order needs, then the chosen rows by id. */
static int put_pick(struct buf *b, const struct dataquery *q)
{
    static const char *const order[] = {
        [DATAQUERY_LAST] = "time DESC, id DESC",
        [DATAQUERY_FIRST] = "time ASC, id ASC",
        [DATAQUERY_MIN] = "value ASC, time DESC, id DESC",
        [DATAQUERY_MAX] = "value DESC, time DESC, id DESC",
    };
    int rc;

    if ((q->agg == DATAQUERY_LAST || q->agg == DATAQUERY_FIRST) && q->interval_ms <= 0)
        return put_seek(b, q);
    rc = buf_printf(b,
                    "SELECT " COLS ", slot FROM data JOIN (SELECT id AS pick_id, slot FROM"
                    " (SELECT id, slot, row_number() OVER (PARTITION BY variable, slot ORDER BY"
                    " %s) AS pick FROM (SELECT id, variable, time, value, ",
                    order[q->agg]);
    if (!rc)
        rc = put_slotted(b, q);
    if (!rc)
        rc = buf_puts(b, ")) WHERE pick = 1) ON id = pick_id");
    return rc ? rc : put_agg_tail(b, q);
}

static int put_reduction(struct buf *b, const struct dataquery *q)
{
    const char *fn = q->agg == DATAQUERY_COUNT ? "count(*)"
                     : q->agg == DATAQUERY_AVG ? "avg(value)"
                                               : "sum(value)";
    const char *unit =
        q->agg == DATAQUERY_COUNT ? "NULL" : "CASE WHEN min(unit) = max(unit) THEN min(unit) END";
    int rc = buf_printf(
        b, "SELECT 'number', %s, %s, NULL, NULL, NULL, NULL, NULL, NULL, variable, ", fn, unit);

    if (!rc)
        rc = put_slotted(b, q);
    if (!rc)
        rc = buf_puts(b, " GROUP BY variable, slot");
    return rc ? rc : put_agg_tail(b, q);
}

int dataquery_sql(const struct dataquery *q, struct buf *out)
{
    int rc;

    switch (q->agg) {
    case DATAQUERY_RECORDS:
        if ((rc = buf_puts(out, "SELECT " COLS ", NULL FROM data WHERE ")) ||
            (rc = put_where(out, q)))
            return rc;
        return buf_puts(out, q->ascending ? " ORDER BY time ASC, id ASC LIMIT ?5 OFFSET ?6"
                                          : " ORDER BY time DESC, id DESC LIMIT ?5 OFFSET ?6");
    case DATAQUERY_LAST:
    case DATAQUERY_FIRST:
    case DATAQUERY_MIN:
    case DATAQUERY_MAX:
        return put_pick(out, q);
    case DATAQUERY_COUNT:
    case DATAQUERY_AVG:
    case DATAQUERY_SUM:
        return put_reduction(out, q);
    }
    return SP_ERR_INVAL;
}

/* ---- running it ------------------------------------------------------------ */

static void bind_all(sqlite3_stmt *st, const struct dataquery *q)
{
    sqlite3_bind_text(st, 1, q->serial, -1, SQLITE_STATIC);
    if (q->has_start)
        sqlite3_bind_int64(st, 2, q->start_ms);
    if (q->has_end)
        sqlite3_bind_int64(st, 3, q->end_ms);
    if (q->group)
        sqlite3_bind_text(st, 4, q->group, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, q->qty);
    sqlite3_bind_int64(st, 6, q->skip);
    for (size_t i = 0; i < q->nvariables; i++)
        sqlite3_bind_text(st, (int)(7 + i), q->variables[i], -1, SQLITE_STATIC);
}

/* 1 if the database has the data table, 0 if not, or SP_ERR_DB. */
static int has_data_table(struct dataquery_db *d)
{
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(d->db,
                           "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'data'", -1,
                           &st, NULL))
        return SP_ERR_DB;
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : SP_ERR_DB;
}

/* Steps st through its rows, handing each to fn. */
static int step_rows(sqlite3_stmt *st, struct arena *a, dataquery_row_fn fn, void *ctx)
{
    struct dataquery_row row;
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        memset(&row, 0, sizeof row);
        if (bucket__row_record(st, NULL, a, &row.rec))
            return SP_ERR_NOMEM;
        /* A reduction has no time of its own. */
        row.rec.has_time = sqlite3_column_type(st, 3) != SQLITE_NULL;
        row.has_interval = sqlite3_column_type(st, 10) != SQLITE_NULL;
        row.interval_ms = sqlite3_column_int64(st, 10);
        if ((rc = fn(ctx, &row)))
            return rc;
    }
    return rc == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

int dataquery_run(struct dataquery_db *d, const struct dataquery *q, struct arena *a,
                  dataquery_row_fn fn, void *ctx, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    struct buf sql;
    int rc;

    buf_init(&sql, 64 * 1024);
    /* The daemon creates the data table when it first starts: until then a
     * registered device simply has no data. */
    if ((rc = has_data_table(d)) <= 0)
        goto done;
    if ((rc = dataquery_sql(q, &sql)))
        goto done;
    if (sqlite3_prepare_v2(d->db, sql.p, (int)sql.len, &st, NULL)) {
        rc = SP_ERR_DB;
        goto done;
    }
    bind_all(st, q);
    d->deadline_ms = clock_mono_ms() + d->limit_ms;
    rc = step_rows(st, a, fn, ctx);
    if (rc == SP_ERR_DB && d->limit_ms && sqlite3_errcode(d->db) == SQLITE_INTERRUPT) {
        snprintf(err, errlen,
                 "the query ran past %d ms and was stopped: ask for a narrower range (start, "
                 "end) or fewer rows",
                 d->limit_ms);
        rc = SP_ERR_TIMEOUT;
    }
done:
    if (rc == SP_ERR_DB)
        snprintf(err, errlen, "%s", sqlite3_errmsg(d->db));
    sqlite3_finalize(st);
    buf_cleanup(&sql);
    return rc;
}
