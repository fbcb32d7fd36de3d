/*
 * test_dataops.c - storage/dataops.c, what devices{}, aggregate{} and
 * delete_data{} run on the bucket's connection: tag matching and paging of
 * the devices with their status, the reductions over numeric records of a
 * range (strings, other variables and times outside skipped; first and last
 * by time, then id), and deletes bounded by a row count, oldest first.
 */
#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

#include "base/errors.h"
#include "check.h"
#include "storage/bucket.h"
#include "storage/dataops.h"

#define TMPDB_NAME "dataops"
#include "tmpdb.h"

static struct dataops *ops;

static void exec(const char *sql)
{
    sqlite3 *db;
    CHECK(sqlite3_open(dbpath, &db) == SQLITE_OK);
    char *e = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &e) != SQLITE_OK)
        fprintf(stderr, "  sql: %s\n", e ? e : "?");
    sqlite3_free(e);
    sqlite3_close(db);
}

/* The serials of a devices page, space-separated. */
static const char *page(struct dataops *d, const char *tags, const char *after, size_t limit)
{
    static char out[256];
    struct host_devices_query q = {.tags_json = tags, .after = after, .limit = limit};
    struct host_device *v;
    struct arena a;
    size_t n = 0;

    arena_init(&a, 1 << 16);
    out[0] = '\0';
    int rc = dataops_devices(d, &q, &a, &v, &n);
    CHECK_EQ_INT(rc, 0);
    if (rc)
        fprintf(stderr, "  page %s %s %zu\n", tags ? tags : "-", after, limit);
    for (size_t i = 0; i < n; i++)
        snprintf(out + strlen(out), sizeof out - strlen(out), "%s%s:%d:%lld", i ? " " : "",
                 v[i].serial, v[i].connected, (long long)v[i].last_sent);
    arena_cleanup(&a);
    return out;
}

static void test_devices(void)
{
    struct dataops *d = ops;
    exec("CREATE TABLE devices (id INTEGER PRIMARY KEY, serial TEXT UNIQUE, name TEXT, "
         "tags TEXT, params TEXT);"
         "INSERT INTO devices (serial, name, tags, params) VALUES"
         " ('a', 'A', '{\"site\":\"north\",\"floor\":\"2\"}', '{}'),"
         " ('b', 'B', '{\"site\":\"south\"}', '{}'),"
         " ('c', 'C', '{\"site\":\"north\"}', '{\"x\":\"y\"}'),"
         " ('d', 'D', '{}', '{}');"
         "INSERT INTO device_status (serial, connections, last_sent) VALUES ('a', 2, 100),"
         " ('c', 0, 50);");
    CHECK_EQ_STR(page(d, NULL, "", 1000), "a:1:100 b:0:0 c:0:50 d:0:0");
    CHECK_EQ_STR(page(d, "{\"site\":\"north\"}", "", 1000), "a:1:100 c:0:50");
    CHECK_EQ_STR(page(d, "{\"site\":\"north\",\"floor\":\"2\"}", "", 1000), "a:1:100");
    CHECK_EQ_STR(page(d, "{\"site\":\"north\"}", "a", 1000), "c:0:50");
    CHECK_EQ_STR(page(d, NULL, "", 2), "a:1:100 b:0:0");
    CHECK_EQ_STR(page(d, NULL, "b", 2), "c:0:50 d:0:0");
    CHECK_EQ_STR(page(d, "{\"site\":\"west\"}", "", 10), "");
    CHECK_EQ_STR(page(d, "{\"floor\":\"3\"}", "", 10), "");
}

static struct host_aggregate agg(struct dataops *d, const char *serial, const char *variable,
                                 int64_t start, int64_t stop)
{
    struct host_aggregate g;
    struct host_aggregate_query q = {
        .serial = serial, .variable = variable, .start_ms = start, .stop_ms = stop};
    CHECK_EQ_INT(dataops_aggregate(d, &q, &g), 0);
    return g;
}

static void test_aggregate(void)
{
    struct dataops *d = ops;
    exec("INSERT INTO data (device, variable, type, value, time, received_at) VALUES"
         " ('s', 't', 'number', 10, 1000, 0), ('s', 't', 'number', 30, 3000, 0),"
         " ('s', 't', 'number', 20, 2000, 0), ('s', 't', 'string', 'hot', 1500, 0),"
         " ('s', 't', 'number', 99, 5000, 0), ('s', 'u', 'number', 1, 2000, 0),"
         " ('z', 't', 'number', 7, 2000, 0), ('s', 't', 'number', 2.5, 999, 0),"
         " ('s', 'e', 'number', 1, 10, 0), ('s', 'e', 'number', 2, 10, 0);");
    struct host_aggregate g = agg(d, "s", "t", 1000, 4000);
    CHECK_EQ_INT(g.count, 3);
    CHECK(g.min == 10 && g.max == 30 && g.avg == 20 && g.sum == 60);
    CHECK(g.first == 10 && g.last == 30);
    g = agg(d, "s", "t", INT64_MIN, INT64_MAX);
    CHECK_EQ_INT(g.count, 5);
    CHECK(g.min == 2.5 && g.max == 99 && g.first == 2.5 && g.last == 99);
    g = agg(d, "s", "e", INT64_MIN, INT64_MAX); /* equal times: by id */
    CHECK(g.count == 2 && g.first == 1 && g.last == 2);
    g = agg(d, "s", "t", 6000, 7000);
    CHECK(g.count == 0 && g.min == 0 && g.last == 0);
    g = agg(d, "nobody", "t", INT64_MIN, INT64_MAX);
    CHECK_EQ_INT(g.count, 0);
}

static int64_t count(const char *serial, int64_t *min_time)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t n = -1;
    CHECK(sqlite3_open(dbpath, &db) == SQLITE_OK);
    CHECK(sqlite3_prepare_v2(db, "SELECT count(*), min(time) FROM data WHERE device = ?1", -1, &st,
                             NULL) == SQLITE_OK);
    sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        n = sqlite3_column_int64(st, 0);
        *min_time = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static void test_delete(void)
{
    struct dataops *d = ops;
    int64_t t0 = 0;
    exec("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 24)"
         " INSERT INTO data (device, variable, type, value, time, received_at)"
         " SELECT 'del', 'v', 'number', i, i, 0 FROM n;"
         "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 4)"
         " INSERT INTO data (device, variable, type, value, time, received_at)"
         " SELECT 'del', 'w', 'number', i, i, 0 FROM n;"
         "INSERT INTO data (device, variable, type, value, time, received_at)"
         " VALUES ('keep', 'v', 'number', 1, 0, 0);");
    CHECK_EQ_INT(count("del", &t0), 30);
    /* One variable, bounded by the row count: its oldest rows. */
    CHECK_EQ_INT(dataops_delete(d, "del", "v", 10, 4), 4);
    CHECK_EQ_INT(count("del", &t0), 26);
    /* Every variable: w's three rows below 3 (v's are gone already). */
    CHECK_EQ_INT(dataops_delete(d, "del", NULL, 3, 100), 3);
    /* The five oldest of any variable: w3, v4, w4, v5, v6. */
    CHECK_EQ_INT(dataops_delete(d, "del", NULL, 100, 5), 5);
    CHECK_EQ_INT(count("del", &t0), 18);
    CHECK_EQ_INT((int)t0, 7);
    CHECK_EQ_INT(dataops_delete(d, "del", "v", 7, 100), 0);
    CHECK_EQ_INT(dataops_delete(d, "nobody", NULL, 100, 100), 0);
    CHECK_EQ_INT(count("keep", &t0), 1);
}

int main(void)
{
    char err[256];
    struct bucket *b = NULL;
    struct dataops *d = NULL;

    tmp_setup();
    CHECK_EQ_INT(bucket_open(dir, BUCKET_SYNC_NORMAL, &b, err, sizeof err), 0);
    CHECK_EQ_INT(dataops_open(b, &d), 0);
    ops = d;
    if (d) {
        RUN(test_devices);
        RUN(test_aggregate);
        RUN(test_delete);
    }
    dataops_close(d);
    bucket_close(b);
    tmp_teardown();
    return check_done();
}
