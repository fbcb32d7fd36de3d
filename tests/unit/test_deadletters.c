/* test_deadletters.c - which dead letters may be retried, and the requests'
 * round trip: asked by the command line, taken, failed again, stored. */
#include "check.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "storage/bucket.h"
#include "storage/deadletters.h"
#include "sealpipe.h"

static void test_why_not(void)
{
    static const struct {
        const char *topic, *device, *reason;
        int force, ok;
    } cases[] = {
        {"sensors/d1/raw", "d1", "analysis_error", 0, 1},
        {"sensors/d1/raw", NULL, "analysis_error", 0, 0}, /* who published it? */
        {"sensors/d1/raw", NULL, "no_route", 0, 1},       /* no stamp: trusted input */
        {"sensors/d1/raw", "d1", "too_large", 1, 0},      /* only its head was kept */
        {"$tips/d1/push", "d1", "replay", 0, 0},
        {"$tips/d1/push", "d1", "replay", 1, 1},
        {"$tip/d1/pull", "d1", "analysis_error", 0, 0}, /* nothing to store */
        {"$tips/d1/pull", "d1", "auth_failed", 0, 0},
        {"$tip/d1/push", NULL, "unknown_device", 0, 0}, /* a profile context's */
        {"$tip/d1/push", "d1", "plaintext_refused", 0, 1},
        {"$tips/ghost/push", NULL, "unknown_device", 0, 1}, /* its key decides */
        {"$tips", NULL, "unknown_device", 0, 1},
        {"$tip", NULL, "unknown_device", 0, 1}, /* a frame's auth hash decides */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct dead_letter dl = {
            .topic = cases[i].topic, .device = cases[i].device, .reason = cases[i].reason};
        CHECK_EQ_INT(deadletters_why_not(&dl, cases[i].force) == NULL, cases[i].ok);
    }
}

static void rm_dir(const char *dir)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
}

/* A bucket in a new directory, with the daemon's and the command line's
 * dead-letter handles on it. */
struct fixture {
    char dir[32];
    struct bucket *b;
    struct deadletters *daemon, *cli;
    struct arena a;
};

static void fx_open(struct fixture *f)
{
    char err[256] = "";

    *f = (struct fixture){.dir = "/tmp/sp-dlq-XXXXXX"};
    CHECK(mkdtemp(f->dir) != NULL);
    arena_init(&f->a, 1 << 20);
    CHECK_EQ_INT(bucket_open(f->dir, BUCKET_SYNC_NORMAL, &f->b, err, sizeof err), SP_OK);
    CHECK_EQ_INT(deadletters_open(f->b, &f->daemon), SP_OK);
    CHECK_EQ_INT(deadletters_open_file(f->dir, 1, &f->cli, err, sizeof err), SP_OK);
}

static void fx_close(struct fixture *f)
{
    deadletters_close(f->cli);
    deadletters_close(f->daemon);
    bucket_close(f->b);
    arena_cleanup(&f->a);
    rm_dir(f->dir);
}

/* One dead letter of d1 in the bucket, as the pipeline writes it. */
static void put_dead(struct bucket *b)
{
    struct bucket_msg m = {.topic = "sensors/d1/raw", .serial = "d1", .received_ms = 1000};
    CHECK_EQ_INT(bucket_begin(b), SP_OK);
    CHECK_EQ_INT(bucket_dead(b, &m, "analysis_error", "bug", (const uint8_t *)"\x08\x98", 2),
                 SP_OK);
    CHECK_EQ_INT(bucket_commit(b), SP_OK);
}

static void test_round_trip(void)
{
    struct fixture f;
    struct dead_letter got[4];
    size_t n = 9;

    fx_open(&f);
    struct bucket *b = f.b;
    struct deadletters *daemon = f.daemon, *cli = f.cli;
    struct arena *a = &f.a;
    put_dead(b);
    CHECK_EQ_INT(deadletters_take(daemon, a, got, 4, &n), SP_OK);
    CHECK_EQ_INT((int)n, 0);
    CHECK_EQ_INT(deadletters_request(cli, 1, 0, 5), SP_OK);
    CHECK_EQ_INT(deadletters_request(cli, 1, 0, 6), SP_OK); /* asking twice is asking once */
    CHECK_EQ_INT(deadletters_request(cli, 7, 0, 6), SP_OK); /* no such dead letter: dropped */
    CHECK_EQ_INT(deadletters_pending(cli, 1), 1);
    CHECK_EQ_INT(deadletters_take(daemon, a, got, 4, &n), SP_OK);
    CHECK_EQ_INT((int)n, 1);
    CHECK_EQ_INT(deadletters_pending(cli, 7), 0);
    CHECK_EQ_INT((int)got[0].len, 2);
    CHECK_EQ_STR(got[0].device, "d1");
    /* Failed again: same id, new reason, the first one kept. */
    CHECK_EQ_INT(bucket_begin(b), SP_OK);
    CHECK_EQ_INT(deadletters_failed(daemon, 1, NULL, "timeout", "slow"), SP_OK);
    CHECK_EQ_INT(bucket_commit(b), SP_OK);
    CHECK_EQ_INT(deadletters_pending(cli, 1), 0);
    CHECK_EQ_INT(deadletters_get(cli, 1, a, &got[1]), SP_OK);
    CHECK_EQ_STR(got[1].reason, "timeout");
    CHECK_EQ_STR(got[1].first_reason, "analysis_error");
    CHECK_EQ_STR(got[1].device, "d1");
    CHECK_EQ_INT(got[1].retries, 1);
    /* Stored: gone with its request, in the batch's transaction. */
    CHECK_EQ_INT(deadletters_request(cli, 1, 0, 7), SP_OK);
    CHECK_EQ_INT(bucket_begin(b), SP_OK);
    CHECK_EQ_INT(deadletters_stored(daemon, 1), SP_OK);
    CHECK_EQ_INT(bucket_commit(b), SP_OK);
    CHECK_EQ_INT(deadletters_pending(cli, 1), 0);
    CHECK_EQ_INT(deadletters_get(cli, 1, a, &got[1]), SP_ERR_NOTFOUND);
    fx_close(&f);
}

/* A dead letter of bytes p on topic, as the pipeline writes it. */
static void put_msg(struct bucket *b, const char *topic, const char *p, int one_of_a_kind)
{
    struct bucket_msg m = {
        .topic = topic, .serial = "d1", .received_ms = 1000, .one_of_a_kind = one_of_a_kind};
    bucket_digest(topic, (const uint8_t *)p, strlen(p), m.digest);
    CHECK_EQ_INT(bucket_begin(b), SP_OK);
    CHECK_EQ_INT(bucket_dead(b, &m, "auth_failed", "no key", (const uint8_t *)p, strlen(p)), SP_OK);
    CHECK_EQ_INT(bucket_commit(b), SP_OK);
}

/* One envelope dead-lettered three times is one message: one is taken, and
 * storing it takes its twins and their requests; plain bytes stay. */
static void test_twins(void)
{
    struct fixture f;
    struct dead_letter got[8];
    size_t n = 0;

    fx_open(&f);
    struct bucket *b = f.b;
    struct deadletters *daemon = f.daemon, *cli = f.cli;
    struct arena *a = &f.a;
    for (int i = 0; i < 3; i++)
        put_msg(b, "$tips/d1/push", "env-7", 1); /* ids 1, 2, 3 */
    put_msg(b, "$tips/d1/push", "env-8", 1);     /* 4: another envelope */
    put_msg(b, "$tip/d1/push", "[x:=1]", 0);     /* 5, 6: two plain messages */
    put_msg(b, "$tip/d1/push", "[x:=1]", 0);
    for (int id = 1; id <= 6; id++)
        CHECK_EQ_INT(deadletters_request(cli, id, 0, 10 + id), SP_OK);
    CHECK_EQ_INT(deadletters_take(daemon, a, got, 8, &n), SP_OK);
    CHECK_EQ_INT((int)n, 4); /* 1, 4, 5, 6: 2 and 3 wait */
    CHECK_EQ_INT((int)got[0].id, 1);
    CHECK_EQ_INT((int)got[1].id, 4);
    CHECK_EQ_INT(deadletters_pending(cli, 2), 1);
    CHECK_EQ_INT(bucket_begin(b), SP_OK);
    CHECK_EQ_INT(deadletters_stored(daemon, 1), SP_OK);
    CHECK_EQ_INT(deadletters_stored(daemon, 5), SP_OK);
    CHECK_EQ_INT(bucket_commit(b), SP_OK);
    for (int id = 1; id <= 3; id++) {
        CHECK_EQ_INT(deadletters_get(cli, id, a, &got[7]), SP_ERR_NOTFOUND);
        CHECK_EQ_INT(deadletters_pending(cli, id), 0);
    }
    CHECK_EQ_INT(deadletters_get(cli, 4, a, &got[7]), SP_OK);
    CHECK_EQ_INT(deadletters_get(cli, 6, a, &got[7]), SP_OK); /* plain bytes: two messages */
    CHECK_EQ_INT(deadletters_pending(cli, 6), 1);
    fx_close(&f);
}

/* A dead_letters table of an older version gets the new columns at start;
 * its rows have no digest and are retried one by one. */
static void test_upgrade(void)
{
    char dir[] = "/tmp/sp-dlq-XXXXXX", path[64], err[256] = "";
    struct bucket *b = NULL;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/sealpipe.db", dir);
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db,
                              "CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, received_at "
                              "INTEGER NOT NULL, topic TEXT, device TEXT, reason TEXT NOT NULL, "
                              "detail TEXT, payload BLOB);"
                              "INSERT INTO dead_letters VALUES (1, 5, '$tips/d1/push', 'd1', "
                              "'auth_failed', NULL, x'01')",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    CHECK_EQ_INT(bucket_open(dir, BUCKET_SYNC_NORMAL, &b, err, sizeof err), SP_OK);
    bucket_close(b);
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_prepare_v2(db,
                                    "SELECT retries, first_reason IS NULL, digest IS NULL,"
                                    " (SELECT count(*) FROM sqlite_master WHERE name ="
                                    " 'dead_letters_digest') FROM dead_letters",
                                    -1, &st, NULL),
                 SQLITE_OK);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(sqlite3_column_int(st, i), i == 0 ? 0 : 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
    rm_dir(dir);
}

int main(void)
{
    RUN(test_why_not);
    RUN(test_round_trip);
    RUN(test_twins);
    RUN(test_upgrade);
    return check_done();
}
