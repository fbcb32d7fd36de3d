/*
 * test_devstate.c - device counts and TagoTiP/S replay counters, folded
 * (runtime/storage/devstate.c): the replay check within a batch, across
 * batches, rollbacks, folds and a crash (rows left, folded at the next
 * open); a device removed and added again under its serial; a failed read
 * of device_counters; the status counts, which lag until the fold; more
 * devices than the memory holds.
 *
 * Each test works in its own mkdtemp() directory and reads the tables with
 * a second sqlite3 connection, as a user would. The devices table is the
 * registry's (schemas/registry.sql); only serial and created_at matter here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "base/errors.h"
#include "check.h"
#include "storage/bucket.h"
#include "storage/devstate.h"

#define TMPDB_NAME "devstate"
#include "tmpdb.h"

static void sql(const char *q)
{
    sqlite3 *db;
    char *err = NULL;

    if (sqlite3_open(dbpath, &db) != SQLITE_OK ||
        sqlite3_exec(db, "PRAGMA busy_timeout = 2000", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, q, NULL, NULL, &err) != SQLITE_OK) {
        fprintf(stderr, "sql %s: %s\n", q, err ? err : sqlite3_errmsg(db));
        exit(2);
    }
    sqlite3_close(db);
}

static long long query_int(const char *q)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    long long v = -999;

    if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "query %s: %s\n", q, sqlite3_errmsg(db));
        exit(2);
    }
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_type(st, 0) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static long long counter_of(const char *serial)
{
    char q[256];

    snprintf(q, sizeof q, "SELECT last_counter FROM device_counters WHERE serial = '%s'", serial);
    return query_int(q);
}

static long long messages_of(const char *serial)
{
    char q[256];

    snprintf(q, sizeof q, "SELECT messages FROM device_status WHERE serial = '%s'", serial);
    return query_int(q);
}

/* The bucket, its tables made, with a devices table as the registry's. */
static struct bucket *open_bucket(void)
{
    struct bucket *b = NULL;
    char err[256] = "";

    if (bucket_open(dir, BUCKET_SYNC_NORMAL, &b, err, sizeof err)) {
        fprintf(stderr, "bucket_open: %s\n", err);
        exit(2);
    }
    sql("CREATE TABLE IF NOT EXISTS devices (id INTEGER PRIMARY KEY, serial TEXT NOT NULL "
        "UNIQUE, created_at INTEGER NOT NULL)");
    return b;
}

static struct devstate *open_state(struct bucket *b)
{
    struct devstate *st = NULL;
    char err[256] = "";
    int rc = devstate_open(b, &st, err, sizeof err);

    CHECK_EQ_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "devstate_open: %s\n", err);
        exit(2);
    }
    return st;
}

static void add_device(const char *serial, long long created)
{
    char q[256];

    snprintf(q, sizeof q, "INSERT INTO devices (serial, created_at) VALUES ('%s', %lld)", serial,
             created);
    sql(q);
}

/* A stored message of serial (created 100) with one record, advancing to counter. */
static int message(struct devstate *st, const char *serial, long long counter)
{
    struct devstate_msg m = {
        .serial = serial, .created = 100, .at = 1000 + counter, .records = 1, .counter = counter};
    return devstate_message(st, &m);
}

/* As the pipeline does: check, and advance when new. 1 new, 0 replay. */
static int check_and_count(struct devstate *st, const char *serial, uint32_t counter)
{
    int rc = devstate_counter_new(st, serial, 100, counter);

    if (rc == 1)
        CHECK_EQ_INT(message(st, serial, counter), 0);
    return rc;
}

static void commit(struct bucket *b, struct devstate *st)
{
    CHECK_EQ_INT(devstate_write(st), 0);
    CHECK_EQ_INT(bucket_commit(b), 0);
    devstate_done(st, 1);
}

static void test_counter(void)
{
    tmp_setup();
    struct bucket *b = open_bucket();
    add_device("dev", 100);
    add_device("other", 100);
    struct devstate *st = open_state(b);

    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(check_and_count(st, "dev", 5), 1);
    /* Later messages of the same batch see it. */
    CHECK_EQ_INT(check_and_count(st, "dev", 5), 0);
    CHECK_EQ_INT(check_and_count(st, "dev", 4), 0);
    CHECK_EQ_INT(check_and_count(st, "dev", 6), 1);
    CHECK_EQ_INT(check_and_count(st, "other", 0), 1);
    CHECK_EQ_INT(check_and_count(st, "other", 0), 0);
    /* Checked but never written (its message rolled back): not advanced. */
    CHECK_EQ_INT(devstate_counter_new(st, "dev", 100, 9), 1);
    CHECK_EQ_INT(check_and_count(st, "dev", 7), 1);
    commit(b, st);

    /* Committed, not folded: the tables lag, the check does not. */
    CHECK_EQ_INT(counter_of("dev"), -999);
    CHECK_EQ_INT(query_int("SELECT count(*) FROM device_status_pending"), 1);
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(devstate_counter_new(st, "dev", 100, 7), 0);
    CHECK_EQ_INT(devstate_counter_new(st, "dev", 100, 8), 1);
    bucket_rollback(b);
    devstate_done(st, 0);

    CHECK_EQ_INT(devstate_flush(st, 1), 0);
    CHECK_EQ_INT(counter_of("dev"), 7);
    CHECK_EQ_INT(counter_of("other"), 0);
    CHECK_EQ_INT(messages_of("dev"), 3);
    CHECK_EQ_INT(query_int("SELECT count(*) FROM device_status_pending"), 0);

    /* After the fold, from device_counters. */
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(devstate_counter_new(st, "dev", 100, 7), 0);
    CHECK_EQ_INT(check_and_count(st, "dev", UINT32_MAX), 1);
    CHECK_EQ_INT(devstate_counter_new(st, "dev", 100, UINT32_MAX), 0);
    bucket_rollback(b);
    devstate_done(st, 0);
    /* The rolled-back batch's counter is new again. */
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(check_and_count(st, "dev", 8), 1);
    commit(b, st);
    CHECK_EQ_INT(devstate_flush(st, 1), 0);
    CHECK_EQ_INT(counter_of("dev"), 8);
    devstate_close(st);
    bucket_close(b);
    tmp_teardown();
}

/* A crash leaves rows: the next open folds them before any check. */
static void test_crash(void)
{
    tmp_setup();
    struct bucket *b = open_bucket();
    add_device("dev", 100);
    struct devstate *st = open_state(b);

    for (uint32_t c = 1; c <= 3; c++) {
        CHECK_EQ_INT(bucket_begin(b), 0);
        CHECK_EQ_INT(check_and_count(st, "dev", c * 10), 1);
        commit(b, st);
    }
    CHECK_EQ_INT(query_int("SELECT count(*) FROM device_status_pending"), 3);
    devstate_close(st); /* no flush: as a kill -9 */
    bucket_close(b);
    CHECK_EQ_INT(counter_of("dev"), -999);

    b = open_bucket();
    st = open_state(b);
    CHECK_EQ_INT(query_int("SELECT count(*) FROM device_status_pending"), 0);
    CHECK_EQ_INT(counter_of("dev"), 30);
    CHECK_EQ_INT(messages_of("dev"), 3);
    CHECK_EQ_INT(query_int("SELECT records FROM device_status WHERE serial = 'dev'"), 3);
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(devstate_counter_new(st, "dev", 100, 30), 0);
    CHECK_EQ_INT(devstate_counter_new(st, "dev", 100, 31), 1);
    bucket_rollback(b);
    devstate_done(st, 0);
    devstate_close(st);
    bucket_close(b);
    tmp_teardown();
}

/* `device rm` then `device add` of the serial, with the old device's counter
 * still in memory and in a row: the new device starts over, and the fold
 * does not give it the old counter. */
static void test_recreated(void)
{
    tmp_setup();
    struct bucket *b = open_bucket();
    add_device("dev", 100);
    struct devstate *st = open_state(b);

    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(check_and_count(st, "dev", 20), 1);
    commit(b, st);
    sql("DELETE FROM devices WHERE serial = 'dev'");
    add_device("dev", 200);

    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(devstate_counter_new(st, "dev", 200, 1), 1);
    struct devstate_msg m = {
        .serial = "dev", .created = 200, .at = 5000, .records = 1, .counter = 1};
    CHECK_EQ_INT(devstate_message(st, &m), 0);
    commit(b, st);
    CHECK_EQ_INT(counter_of("dev"), 1); /* written at once: no room for it in memory */
    CHECK_EQ_INT(devstate_flush(st, 1), 0);
    CHECK_EQ_INT(counter_of("dev"), 1);
    CHECK_EQ_INT(messages_of("dev"), 1); /* the new device's message alone */
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(devstate_counter_new(st, "dev", 200, 1), 0);
    CHECK_EQ_INT(devstate_counter_new(st, "dev", 200, 2), 1);
    bucket_rollback(b);
    devstate_done(st, 0);
    devstate_close(st);
    bucket_close(b);
    tmp_teardown();
}

/* Counts and times of device_status, summed over batches; a dead letter and
 * a retried one; a device unknown to the registry gets no row. */
static void test_status(void)
{
    tmp_setup();
    struct bucket *b = open_bucket();
    add_device("s", 100);
    struct devstate *st = open_state(b);
    struct devstate_msg stored = {.serial = "s", .at = 1000, .records = 4, .counter = -1},
                        dead = {.serial = "s", .at = 3000, .dead = 1, .counter = -1},
                        retry = {.serial = "s", .at = 500, .records = 2, .retry = 1, .counter = -1},
                        ghost = {.serial = "ghost", .at = 1, .records = 1, .counter = -1};

    for (int batch = 0; batch < 2; batch++) {
        CHECK_EQ_INT(bucket_begin(b), 0);
        CHECK_EQ_INT(devstate_message(st, &stored), 0);
        CHECK_EQ_INT(devstate_message(st, &dead), 0);
        CHECK_EQ_INT(devstate_message(st, &ghost), 0);
        commit(b, st);
    }
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(devstate_message(st, &retry), 0);
    commit(b, st);
    CHECK_EQ_INT(messages_of("s"), -999);   /* not folded yet */
    CHECK_EQ_INT(devstate_flush(st, 0), 0); /* batches since the last call: not due */
    CHECK_EQ_INT(messages_of("s"), -999);
    CHECK_EQ_INT(devstate_flush(st, 0), 0); /* paused since: due */
    CHECK_EQ_INT(messages_of("s"), 4);
    CHECK_EQ_INT(query_int("SELECT records FROM device_status WHERE serial = 's'"), 10);
    CHECK_EQ_INT(query_int("SELECT dead_letters FROM device_status WHERE serial = 's'"), 2);
    CHECK_EQ_INT(query_int("SELECT last_sent FROM device_status WHERE serial = 's'"), 3000);
    CHECK_EQ_INT(query_int("SELECT last_stored FROM device_status WHERE serial = 's'"), 1000);
    CHECK_EQ_INT(query_int("SELECT count(*) FROM device_status WHERE serial = 'ghost'"), 0);
    CHECK_EQ_INT(query_int("SELECT count(*) FROM device_counters"), 0);
    devstate_close(st);
    bucket_close(b);
    tmp_teardown();
}

/* More devices in one batch than memory holds: the rest are written at
 * once, and every device ends with its own counter and count. */
static void test_full(void)
{
    enum { N = DEVSTATE_DEVICES + 100 };
    char serial[32];

    tmp_setup();
    struct bucket *b = open_bucket();
    sql("WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 16483) "
        "INSERT INTO devices (serial, created_at) SELECT 'd' || i, 100 FROM n");
    CHECK_EQ_INT(query_int("SELECT count(*) FROM devices"), N);
    struct devstate *st = open_state(b);

    CHECK_EQ_INT(bucket_begin(b), 0);
    for (int i = 0; i < N; i++) {
        snprintf(serial, sizeof serial, "d%d", i);
        CHECK_EQ_INT(check_and_count(st, serial, (uint32_t)i + 1), 1);
    }
    commit(b, st);
    CHECK_EQ_INT(query_int("SELECT count(*) FROM device_counters"), N - DEVSTATE_DEVICES);
    CHECK_EQ_INT(bucket_begin(b), 0);
    for (int i = 0; i < N; i += 97) {
        snprintf(serial, sizeof serial, "d%d", i);
        CHECK_EQ_INT(devstate_counter_new(st, serial, 100, (uint32_t)i + 1), 0);
    }
    bucket_rollback(b);
    devstate_done(st, 0);
    CHECK_EQ_INT(devstate_flush(st, 0), 0); /* memory is full: due */
    CHECK_EQ_INT(query_int("SELECT count(*) FROM device_counters WHERE last_counter = "
                           "CAST(substr(serial, 2) AS INTEGER) + 1"),
                 N);
    CHECK_EQ_INT(query_int("SELECT count(*) FROM device_status WHERE messages = 1"), N);
    devstate_close(st);
    bucket_close(b);
    tmp_teardown();
}

/* A read of device_counters that fails is no "no row": the next check reads
 * again (review: -1 was kept, and every counter below the table's was new). */
static void test_read_error(void)
{
    tmp_setup();
    struct bucket *b = open_bucket();
    add_device("dev", 100);
    sql("INSERT INTO device_counters (serial, last_counter, updated_at) VALUES ('dev', 50, 1)");
    struct devstate *st = open_state(b);

    sql("ALTER TABLE device_counters RENAME TO away");
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK(devstate_counter_new(st, "dev", 100, 10) < 0);
    bucket_rollback(b);
    devstate_done(st, 0);
    sql("ALTER TABLE away RENAME TO device_counters");
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(devstate_counter_new(st, "dev", 100, 10), 0);
    CHECK_EQ_INT(devstate_counter_new(st, "dev", 100, 51), 1);
    bucket_rollback(b);
    devstate_done(st, 0);
    devstate_close(st);
    bucket_close(b);
    tmp_teardown();
}

int main(void)
{
    RUN(test_counter);
    RUN(test_read_error);
    RUN(test_crash);
    RUN(test_recreated);
    RUN(test_status);
    RUN(test_full);
    return check_done();
}
