/*
 * test_retention.c - retention windows: parsing and formatting durations,
 * what a step deletes (the global window, overrides longer, shorter and
 * forever, rows that arrived late, dead letters with and without a device),
 * the bounds of a step, and the overrides' get and set.
 *
 * Rows are written and counted with plain SQL through a second connection,
 * as a user would see them; the steps run on the bucket's own.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "base/errors.h"
#include "check.h"
#include "storage/bucket.h"
#include "storage/retention.h"

#define HOUR (3600 * 1000LL)

static char dir[64];
static char dbpath[128];

static struct bucket *setup(sqlite3 **db)
{
    struct bucket *b = NULL;
    char err[256] = "";

    snprintf(dir, sizeof dir, "/tmp/sp-retention-XXXXXX");
    if (!mkdtemp(dir))
        exit(2);
    snprintf(dbpath, sizeof dbpath, "%s/sealpipe.db", dir);
    if (bucket_open(dir, BUCKET_SYNC_NORMAL, &b, err, sizeof err) != SP_OK ||
        sqlite3_open(dbpath, db) != SQLITE_OK) {
        fprintf(stderr, "setup: %s\n", err);
        exit(2);
    }
    sqlite3_busy_timeout(*db, 5000);
    return b;
}

static void teardown(struct bucket *b, sqlite3 *db)
{
    static const char *const suffix[] = {"", "-wal", "-shm"};
    char p[192];

    sqlite3_close(db);
    bucket_close(b);
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        snprintf(p, sizeof p, "%s%s", dbpath, suffix[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void sql(sqlite3 *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sql(sqlite3 *db, const char *fmt, ...)
{
    char text[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    int rc = sqlite3_exec(db, text, NULL, NULL, NULL);
    CHECK_EQ_INT(rc, SQLITE_OK);
    if (rc != SQLITE_OK)
        fprintf(stderr, "%s: %s\n", text, sqlite3_errmsg(db));
}

static long long count(sqlite3 *db, const char *where)
{
    char text[512];
    sqlite3_stmt *st;
    long long n = -1;

    snprintf(text, sizeof text, "SELECT count(*) FROM %s", where);
    if (sqlite3_prepare_v2(db, text, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* A reading of device dev with record time t, received at recv. */
static void reading(sqlite3 *db, const char *dev, const char *var, long long t, long long recv)
{
    sql(db,
        "INSERT INTO data (device, variable, type, value, time, received_at)"
        " VALUES ('%s', '%s', 'number', 1, %lld, %lld)",
        dev, var, t, recv);
}

/* Steps until a step deletes nothing; returns the rows deleted. */
static long long drain(struct retention *rt, long long now)
{
    long long total = 0;

    for (int i = 0; i < 1000; i++) {
        int n = retention_step(rt, now);
        CHECK(n >= 0);
        if (n <= 0)
            break;
        total += n;
    }
    return total;
}

static void test_parse_format(void)
{
    static const struct {
        const char *text;
        long long ms;
    } good[] = {{"forever", 0},   {"0", 0},       {"90d", 90 * 24 * HOUR}, {"12h", 12 * HOUR},
                {"30m", 1800000}, {"45s", 45000}, {"2w", 14 * 24 * HOUR}};
    static const char *const bad[] = {"", "5x", "1.5h", "-1d", "10", "h", "1h ", "never", NULL};
    char out[RETENTION_TEXT_MAX];
    int64_t ms;

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ms = -1;
        CHECK_EQ_INT(retention_parse(good[i].text, &ms), SP_OK);
        CHECK_EQ_INT(ms, good[i].ms);
    }
    for (size_t i = 0; bad[i]; i++)
        CHECK_EQ_INT(retention_parse(bad[i], &ms), SP_ERR_INVAL);
    CHECK_EQ_INT(retention_parse(NULL, &ms), SP_ERR_INVAL);
    retention_format(0, out);
    CHECK_EQ_STR(out, "forever");
    retention_format(90 * 24 * HOUR, out);
    CHECK_EQ_STR(out, "90d");
    retention_format(36 * HOUR, out);
    CHECK_EQ_STR(out, "36h");
    retention_format(14 * 24 * HOUR, out);
    CHECK_EQ_STR(out, "2w");
    retention_format(90000, out);
    CHECK_EQ_STR(out, "90s");
}

/* Every kind of row, one step loop, and exactly what must stay. */
static void test_windows(void)
{
    sqlite3 *db;
    struct bucket *b = setup(&db);
    struct retention *rt = NULL;
    long long now = 1800000000000LL;

    CHECK_EQ_INT(retention_set_device(b, "longer", 2 * HOUR, 0), SP_OK);
    CHECK_EQ_INT(retention_set_device(b, "shorter", 600000, 0), SP_OK);
    CHECK_EQ_INT(retention_set_device(b, "kept", 0, 0), SP_OK);
    /* Ages in minutes, arriving oldest first, the devices interleaved. */
    static const int ages[] = {200, 130, 90, 61, 59, 11, 9, 1};
    static const char *const devs[] = {"plain", "longer", "shorter", "kept"};
    for (size_t i = 0; i < sizeof ages / sizeof ages[0]; i++)
        for (size_t d = 0; d < 4; d++)
            reading(db, devs[d], "v", now - ages[i] * 60000LL, now - ages[i] * 60000LL);
    /* A late arrival: an old reading received after the new ones. */
    reading(db, "plain", "late", now - 3 * HOUR, now);
    /* A reading dated ahead of its arrival, in the middle. */
    reading(db, "plain", "ahead", now + HOUR, now - 2 * HOUR);
    sql(db,
        "INSERT INTO dead_letters (received_at, device, reason) VALUES"
        " (%lld, 'plain', 'x'), (%lld, NULL, 'x'), (%lld, 'shorter', 'x'), (%lld, 'kept', 'x'),"
        " (%lld, 'plain', 'x'), (%lld, NULL, 'x')",
        now - 2 * HOUR, now - 2 * HOUR, now - 20 * 60000LL, now - 3 * HOUR, now - 60000,
        now - 60000);

    CHECK_EQ_INT(retention_open(b, HOUR, &rt), SP_OK);
    drain(rt, now);
    CHECK_EQ_INT(count(db, "data WHERE device = 'plain' AND variable = 'v'"), 4); /* 59 11 9 1 */
    CHECK_EQ_INT(count(db, "data WHERE device = 'plain' AND variable = 'v' AND time < "
                           "1800000000000 - 3600000"),
                 0);
    CHECK_EQ_INT(count(db, "data WHERE device = 'longer'"), 6);  /* up to 90 */
    CHECK_EQ_INT(count(db, "data WHERE device = 'shorter'"), 2); /* 9 1 */
    CHECK_EQ_INT(count(db, "data WHERE device = 'kept'"), 8);
    CHECK_EQ_INT(count(db, "data WHERE variable = 'late'"), 0);
    CHECK_EQ_INT(count(db, "data WHERE variable = 'ahead'"), 1);
    CHECK_EQ_INT(count(db, "dead_letters"), 3); /* kept's, and the two a minute old */
    CHECK_EQ_INT(count(db, "dead_letters WHERE device = 'kept'"), 1);

    /* An hour later the ahead-dated reading is still inside its window; back
     * to the default, the shorter device's rows follow the global hour. */
    sql(db, "DELETE FROM device_retention WHERE serial = 'shorter'"); /* as the CLI would */
    drain(rt, now + 30 * 60000LL);
    CHECK_EQ_INT(count(db, "data WHERE device = 'shorter'"), 2);
    drain(rt, now + 70 * 60000LL);
    CHECK_EQ_INT(count(db, "data WHERE device = 'shorter'"), 0);
    CHECK_EQ_INT(count(db, "data WHERE variable = 'ahead'"), 1);
    drain(rt, now + 3 * HOUR);
    CHECK_EQ_INT(count(db, "data WHERE variable = 'ahead'"), 0);
    CHECK_EQ_INT(count(db, "data WHERE device = 'kept'"), 8);
    retention_close(rt);

    /* Forever everywhere: a step does nothing, not even a transaction. */
    CHECK_EQ_INT(retention_open(b, 0, &rt), SP_OK);
    CHECK_EQ_INT(retention_step(rt, now + 100 * HOUR), 0);
    CHECK_EQ_INT(count(db, "data WHERE device = 'kept'"), 8);
    retention_close(rt);
    teardown(b, db);
}

/* A step deletes at most RETENTION_STEP_ROWS and says when it is behind. */
static void test_bounds(void)
{
    sqlite3 *db;
    struct bucket *b = setup(&db);
    struct retention *rt = NULL;
    long long now = 1800000000000LL, rows = 3 * RETENTION_STEP_ROWS;

    sql(db,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %lld)"
        " INSERT INTO data (device, variable, type, value, time, received_at)"
        " SELECT 'd' || (i %% 7), 'v', 'number', i, %lld + i, %lld FROM n",
        rows, now - 2 * HOUR, now - 2 * HOUR + rows);
    reading(db, "d1", "v", now, now);
    CHECK_EQ_INT(retention_open(b, HOUR, &rt), SP_OK);
    int n = retention_step(rt, now);
    CHECK(n > 0 && n <= RETENTION_STEP_ROWS);
    CHECK_EQ_INT(retention_behind(rt), 1);
    CHECK_EQ_INT(drain(rt, now) + n, rows);
    CHECK_EQ_INT(retention_behind(rt), 0);
    CHECK_EQ_INT(count(db, "data"), 1);
    retention_close(rt);
    teardown(b, db);
}

static void test_get_set(void)
{
    sqlite3 *db;
    struct bucket *b = setup(&db);
    int64_t ms = -1;

    CHECK_EQ_INT(retention_get_device(b, "s", &ms), SP_ERR_NOTFOUND);
    CHECK_EQ_INT(retention_set_device(b, "s", 30 * 24 * HOUR, 0), SP_OK);
    CHECK_EQ_INT(retention_get_device(b, "s", &ms), SP_OK);
    CHECK_EQ_INT(ms, 30 * 24 * HOUR);
    CHECK_EQ_INT(retention_set_device(b, "s", 0, 0), SP_OK);
    CHECK_EQ_INT(retention_get_device(b, "s", &ms), SP_OK);
    CHECK_EQ_INT(ms, 0);
    CHECK_EQ_INT(retention_set_device(b, "s", 0, 1), SP_OK);
    CHECK_EQ_INT(retention_get_device(b, "s", &ms), SP_ERR_NOTFOUND);
    CHECK_EQ_INT(retention_set_device(b, "s", 0, 1), SP_OK); /* nothing to remove */
    teardown(b, db);
}

int main(void)
{
    if (sodium_init() < 0)
        return 2;
    RUN(test_parse_format);
    RUN(test_windows);
    RUN(test_bounds);
    RUN(test_get_set);
    return check_done();
}
