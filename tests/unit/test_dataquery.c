/*
 * test_dataquery.c - storage/dataquery.c's time limit (the HTTP API's guard:
 * a query holds the listener's thread): a query over a million records
 * stops with SP_ERR_TIMEOUT and a message when the limit is 1 ms, and runs
 * to its end without one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "base/errors.h"
#include "check.h"
#include "storage/bucket.h"
#include "storage/dataquery.h"

static int count_row(void *ctx, const struct dataquery_row *row)
{
    (void)row;
    (*(size_t *)ctx)++;
    return 0;
}

static void test_time_limit(void)
{
    char dir[] = "/tmp/sp-dataquery-XXXXXX", path[128], err[256] = "";
    struct bucket *b = NULL;
    struct dataquery_db *d = NULL;
    sqlite3 *db;
    struct arena a;
    size_t rows = 0;

    if (!mkdtemp(dir))
        exit(2);
    CHECK_EQ_INT(bucket_open(dir, BUCKET_SYNC_NORMAL, &b, err, sizeof err), 0);
    bucket_close(b);
    snprintf(path, sizeof path, "%s/sealpipe.db", dir);
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "CREATE TABLE devices (id INTEGER PRIMARY KEY, serial TEXT UNIQUE, "
                       "created_at INTEGER); INSERT INTO devices VALUES (1, 'big', 1);"
                       "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n "
                       "WHERE i < 999999) INSERT INTO data (device, variable, type, value, time, "
                       "received_at) SELECT 'big', 'v', 'number', i, i * 1000, 0 FROM n",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);

    struct dataquery q = {
        .serial = "big", .qty = 10000, .agg = DATAQUERY_MIN, .interval_ms = 60000, .ascending = 1};
    arena_init(&a, 64u << 20);
    CHECK_EQ_INT(dataquery_open(dir, &d, err, sizeof err), 0);
    dataquery_time_limit(d, 1);
    CHECK_EQ_INT(dataquery_run(d, &q, &a, count_row, &rows, err, sizeof err), SP_ERR_TIMEOUT);
    CHECK(strstr(err, "ran past 1 ms") != NULL);
    dataquery_time_limit(d, 0);
    rows = 0;
    arena_reset(&a);
    CHECK_EQ_INT(dataquery_run(d, &q, &a, count_row, &rows, err, sizeof err), 0);
    CHECK_EQ_INT(rows, 10000);
    dataquery_close(d);
    arena_cleanup(&a);
    static const char *const suffix[] = {"", "-wal", "-shm"};
    for (size_t i = 0; i < sizeof suffix / sizeof suffix[0]; i++) {
        snprintf(path, sizeof path, "%s/sealpipe.db%s", dir, suffix[i]);
        unlink(path);
    }
    rmdir(dir);
}

int main(void)
{
    RUN(test_time_limit);
    return check_done();
}
