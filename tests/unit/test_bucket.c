/*
 * test_bucket.c - the SQLite buckets: records, savepoints, batches, the
 * delivery window, dead letters and WAL readers (TagoTiP/S replay counters:
 * test_devstate.c).
 *
 * Every test works in its own mkdtemp() directory and checks what landed with
 * plain SQL through a second sqlite3 connection, the way a user would.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "base/arena.h"
#include "base/errors.h"
#include "storage/bucket.h"
#include "storage/retries.h"
#include "check.h"
#include "base/sp_limits.h"
#include "base/record.h"
#include "sealpipe.h"

#define TMPDB_NAME "bucket"
#include "tmpdb.h"

static struct bucket *open_bucket(void)
{
    struct bucket *b = NULL;
    char err[256] = "";
    int rc = bucket_open(dir, BUCKET_SYNC_NORMAL, &b, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "bucket_open: %s\n", err);
        exit(2);
    }
    return b;
}

static sqlite3 *open_reader(void)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(dbpath, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(stderr, "reader: %s\n", db ? sqlite3_errmsg(db) : "?");
        exit(2);
    }
    sqlite3_busy_timeout(db, 1000);
    return db;
}

/* Runs a one-value query on a fresh reader; returns it as int64 (-1 on error). */
static long long query_int(const char *sql)
{
    sqlite3 *db = open_reader();
    sqlite3_stmt *st = NULL;
    long long v = -1;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    else
        fprintf(stderr, "query_int(%s): %s\n", sql, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* One-text-value query into out (empty on NULL or error). */
static void query_text(const char *sql, char *out, size_t cap)
{
    sqlite3 *db = open_reader();
    sqlite3_stmt *st = NULL;

    out[0] = '\0';
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        if (t)
            snprintf(out, cap, "%s", (const char *)t);
    } else {
        fprintf(stderr, "query_text(%s): %s\n", sql, sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static struct bucket_msg make_msg(const char *serial, int mid, const char *payload)
{
    struct bucket_msg m;
    memset(&m, 0, sizeof m);
    m.topic = "devices/data";
    m.serial = serial;
    m.received_ms = 1764000000000LL;
    m.mid = mid;
    bucket_digest(m.topic, (const uint8_t *)payload, strlen(payload), m.digest);
    return m;
}

static struct record num_record(const char *var, double x)
{
    struct record r;
    memset(&r, 0, sizeof r);
    r.variable = var;
    r.type = RECORD_NUMBER;
    r.number = x;
    return r;
}

/* One message: savepoint, optional remember, one record, kept or not. */
static void store_one(struct bucket *b, const struct bucket_msg *m, const char *var, double x,
                      int keep)
{
    struct record r = num_record(var, x);
    char err[256] = "";
    CHECK_EQ_INT(bucket_msg_begin(b), 0);
    CHECK_EQ_INT(bucket_remember(b, m->mid, m->digest), 0);
    CHECK_EQ_INT(bucket_insert(b, m, &r, 1, err, sizeof err), 0);
    CHECK_EQ_INT(bucket_msg_end(b, keep), 0);
}

static void test_digest(void)
{
    uint8_t d1[BUCKET_DIGEST_LEN], d2[BUCKET_DIGEST_LEN];
    unsigned char full[crypto_hash_sha256_BYTES];

    bucket_digest("ab", (const uint8_t *)"c", 1, d1);
    crypto_hash_sha256(full, (const unsigned char *)"ab\0c", 4);
    CHECK_EQ_MEM(d1, full, BUCKET_DIGEST_LEN);
    bucket_digest("a", (const uint8_t *)"bc", 2, d2);
    CHECK(memcmp(d1, d2, BUCKET_DIGEST_LEN) != 0);
    bucket_digest("ab", NULL, 0, d2);
    crypto_hash_sha256(full, (const unsigned char *)"ab", 3);
    CHECK_EQ_MEM(d2, full, BUCKET_DIGEST_LEN);
}

static void test_open_errors(void)
{
    struct bucket *b = NULL;
    char err[256] = "", sub[128], file[192];
    struct stat sb;

    tmp_setup();
    /* A missing leaf directory is created, private. */
    snprintf(sub, sizeof sub, "%s/data", dir);
    CHECK_EQ_INT(bucket_open(sub, BUCKET_SYNC_FULL, &b, err, sizeof err), 0);
    CHECK(stat(sub, &sb) == 0 && (sb.st_mode & 0777) == 0700);
    bucket_close(b);
    snprintf(file, sizeof file, "%s/sealpipe.db", sub);
    unlink(file);
    snprintf(file, sizeof file, "%s/sealpipe.db-wal", sub);
    unlink(file);
    snprintf(file, sizeof file, "%s/sealpipe.db-shm", sub);
    unlink(file);
    rmdir(sub);

    /* A file where the directory should be. */
    FILE *f = fopen(sub, "w");
    CHECK(f != NULL);
    if (f)
        fclose(f);
    b = NULL;
    CHECK_EQ_INT(bucket_open(sub, BUCKET_SYNC_FULL, &b, err, sizeof err), SP_ERR_IO);
    CHECK(b == NULL);
    CHECK(strstr(err, "not a directory") != NULL);
    unlink(sub);
    tmp_teardown();
}

/* One record of each type and optional field, for test_insert_types. */
static void typed_records(struct record r[7])
{
    memset(r, 0, 7 * sizeof *r);
    r[0] = num_record("temperature", 42.0);
    r[0].unit = "C";
    r[0].has_time = 1;
    r[0].time_ms = 1764000000123LL;
    r[1] = num_record("ratio", 3.5);
    r[2] = num_record("big", 1e300);
    r[3].variable = "status";
    r[3].type = RECORD_STRING;
    r[3].string = "hello, world";
    r[3].string_len = strlen(r[3].string);
    r[3].group = "g1";
    r[4].variable = "on";
    r[4].type = RECORD_BOOLEAN;
    r[4].boolean = 1;
    r[4].has_location = 1;
    r[4].lat = -23.5;
    r[4].lng = -46.25;
    r[4].has_alt = 1;
    r[4].alt = 760;
    r[5].variable = "empty";
    r[5].type = RECORD_NONE;
    r[5].metadata = "{\"mqtt_topic\":\"devices/data\",\"nested\":{\"a\":[1,2,\"x\"]}}";
    r[6] = num_record("negative", -7);
    r[6].has_location = 1; /* location without altitude */
    r[6].lat = 1;
    r[6].lng = 2;
}

static void test_insert_types(void)
{
    struct record r[7];
    char err[256] = "", txt[256];

    tmp_setup();
    struct bucket *b = open_bucket();
    struct bucket_msg m = make_msg("sensor-01", 1, "p1");
    typed_records(r);

    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(bucket_msg_begin(b), 0);
    CHECK_EQ_INT(bucket_insert(b, &m, r, 7, err, sizeof err), 0);
    CHECK_EQ_INT(bucket_msg_end(b, 1), 0);
    CHECK_EQ_INT(bucket_commit(b), 0);
    bucket_close(b);

    CHECK_EQ_INT(query_int("SELECT count(*) FROM data WHERE device = 'sensor-01'"), 7);
    query_text("SELECT typeof(value) || ':' || value || ':' || unit || ':' || type FROM data"
               " WHERE variable = 'temperature'",
               txt, sizeof txt);
    CHECK_EQ_STR(txt, "integer:42:C:number");
    CHECK_EQ_INT(query_int("SELECT time FROM data WHERE variable = 'temperature'"),
                 1764000000123LL);
    query_text("SELECT time_iso FROM data_iso WHERE variable = 'temperature'", txt, sizeof txt);
    CHECK_EQ_STR(txt, "2025-11-24T16:00:00.123Z");
    query_text("SELECT typeof(value) || ':' || value FROM data WHERE variable = 'ratio'", txt,
               sizeof txt);
    CHECK_EQ_STR(txt, "real:3.5");
    query_text("SELECT typeof(value) FROM data WHERE variable = 'big'", txt, sizeof txt);
    CHECK_EQ_STR(txt, "real");
    query_text("SELECT typeof(value) || ':' || value || ':' || group_id FROM data"
               " WHERE variable = 'status'",
               txt, sizeof txt);
    CHECK_EQ_STR(txt, "text:hello, world:g1");
    query_text("SELECT typeof(value) || ':' || value || ':' || lat || ':' || lng || ':' || alt"
               " FROM data WHERE variable = 'on'",
               txt, sizeof txt);
    CHECK_EQ_STR(txt, "integer:1:-23.5:-46.25:760.0");
    CHECK_EQ_INT(query_int("SELECT alt IS NULL AND lat = 1 FROM data WHERE variable = 'negative'"),
                 1);
    query_text("SELECT typeof(value) || ':' || value FROM data WHERE variable = 'negative'", txt,
               sizeof txt);
    CHECK_EQ_STR(txt, "integer:-7");
    CHECK_EQ_INT(query_int("SELECT value IS NULL AND type = 'none' FROM data"
                           " WHERE variable = 'empty'"),
                 1);
    query_text("SELECT metadata FROM data WHERE variable = 'empty'", txt, sizeof txt);
    CHECK_EQ_STR(txt, r[5].metadata);
    query_text("SELECT json_extract(metadata, '$.nested.a[2]') FROM data WHERE variable = 'empty'",
               txt, sizeof txt);
    CHECK_EQ_STR(txt, "x");
    /* Records without time get the receive time; received_at is always set. */
    CHECK_EQ_INT(query_int("SELECT time FROM data WHERE variable = 'empty'"), m.received_ms);
    CHECK_EQ_INT(query_int("SELECT count(*) FROM data WHERE received_at = 1764000000000"), 7);
    CHECK_EQ_INT(query_int("SELECT count(*) FROM data WHERE unit IS NULL"), 6);
    tmp_teardown();
}

static void test_savepoint(void)
{
    tmp_setup();
    struct bucket *b = open_bucket();
    struct bucket_msg m1 = make_msg("d", 11, "one"), m2 = make_msg("d", 12, "two"),
                      m3 = make_msg("d", 13, "three");
    CHECK_EQ_INT(bucket_begin(b), 0);
    store_one(b, &m1, "a", 1, 1);
    store_one(b, &m2, "b", 2, 0);
    store_one(b, &m3, "c", 3, 1);
    /* The rolled-back message's window entry went with it. */
    CHECK_EQ_INT(bucket_seen(b, m1.mid, m1.digest), 1);
    CHECK_EQ_INT(bucket_seen(b, m2.mid, m2.digest), 0);
    CHECK_EQ_INT(bucket_seen(b, m3.mid, m3.digest), 1);
    CHECK_EQ_INT(bucket_commit(b), 0);
    bucket_close(b);
    CHECK_EQ_INT(query_int("SELECT count(*) FROM data"), 2);
    CHECK_EQ_INT(query_int("SELECT count(*) FROM data WHERE variable = 'b'"), 0);
    CHECK_EQ_INT(query_int("SELECT coalesce(sum(last - first + 1), 0) FROM delivery_log"), 2);

    b = open_bucket();
    CHECK_EQ_INT(bucket_seen(b, m1.mid, m1.digest), 1);
    CHECK_EQ_INT(bucket_seen(b, m2.mid, m2.digest), 0);
    bucket_close(b);
    tmp_teardown();
}

static void test_batch_rollback(void)
{
    tmp_setup();
    struct bucket *b = open_bucket();
    struct bucket_msg m1 = make_msg("d", 1, "one"), m2 = make_msg("d", 2, "two");

    CHECK_EQ_INT(bucket_begin(b), 0);
    store_one(b, &m1, "a", 1, 1);
    CHECK_EQ_INT(bucket_commit(b), 0);

    CHECK_EQ_INT(bucket_begin(b), 0);
    store_one(b, &m2, "b", 2, 1);
    CHECK_EQ_INT(bucket_seen(b, m2.mid, m2.digest), 1);
    bucket_rollback(b);
    bucket_rollback(b); /* harmless when no batch is open */

    CHECK_EQ_INT(bucket_seen(b, m1.mid, m1.digest), 1);
    CHECK_EQ_INT(bucket_seen(b, m2.mid, m2.digest), 0);
    CHECK_EQ_INT(query_int("SELECT count(*) FROM data"), 1);
    CHECK_EQ_INT(query_int("SELECT coalesce(sum(last - first + 1), 0) FROM delivery_log"), 1);

    /* m2 was rolled back with its batch, so it is new again. */
    CHECK_EQ_INT(bucket_begin(b), 0);
    store_one(b, &m2, "b", 2, 1);
    CHECK_EQ_INT(bucket_commit(b), 0);
    CHECK_EQ_INT(bucket_seen(b, m2.mid, m2.digest), 1);
    bucket_close(b);
    CHECK_EQ_INT(query_int("SELECT count(*) FROM data"), 2);
    CHECK_EQ_INT(query_int("SELECT coalesce(sum(last - first + 1), 0) FROM delivery_log"), 2);
    tmp_teardown();
}

static void test_dedup(void)
{
    tmp_setup();
    struct bucket *b = open_bucket();
    struct bucket_msg m = make_msg("d", 7, "payload");
    struct bucket_msg other = make_msg("d", 7, "another payload");
    struct bucket_msg q0 = make_msg("d", 0, "qos0");

    CHECK_EQ_INT(bucket_seen(b, m.mid, m.digest), 0);
    CHECK_EQ_INT(bucket_begin(b), 0);
    store_one(b, &m, "a", 1, 1);
    /* A redelivery later in the same batch is caught before commit. */
    CHECK_EQ_INT(bucket_seen(b, m.mid, m.digest), 1);
    CHECK_EQ_INT(bucket_seen(b, m.mid + 1, m.digest), 0);
    CHECK_EQ_INT(bucket_seen(b, other.mid, other.digest), 0);
    store_one(b, &q0, "a", 2, 1);
    CHECK_EQ_INT(bucket_seen(b, 0, q0.digest), 0);
    CHECK_EQ_INT(bucket_commit(b), 0);
    CHECK_EQ_INT(query_int("SELECT coalesce(sum(last - first + 1), 0) FROM delivery_log"), 1);
    bucket_close(b);

    /* Persistence. */
    b = open_bucket();
    CHECK_EQ_INT(bucket_seen(b, m.mid, m.digest), 1);
    CHECK_EQ_INT(bucket_seen(b, other.mid, other.digest), 0);

    /* A new broker session forgets everything, durably. */
    CHECK_EQ_INT(bucket_forget(b), 0);
    CHECK_EQ_INT(bucket_seen(b, m.mid, m.digest), 0);
    bucket_close(b);
    CHECK_EQ_INT(query_int("SELECT coalesce(sum(last - first + 1), 0) FROM delivery_log"), 0);
    b = open_bucket();
    CHECK_EQ_INT(bucket_seen(b, m.mid, m.digest), 0);

    /* Remembering the same pair twice, then rolling one back, keeps it. */
    CHECK_EQ_INT(bucket_begin(b), 0);
    store_one(b, &m, "a", 1, 1);
    store_one(b, &m, "a", 1, 0);
    CHECK_EQ_INT(bucket_seen(b, m.mid, m.digest), 1);
    CHECK_EQ_INT(bucket_commit(b), 0);
    CHECK_EQ_INT(bucket_seen(b, m.mid, m.digest), 1);
    bucket_close(b);
    tmp_teardown();
}

/* Requests' retries (retries.h): seen until they expire, in the batch that
 * remembers them, durably, never past a rollback, and pruned. */
static void test_retries(void)
{
    tmp_setup();
    struct bucket *b = open_bucket();
    struct retries *r = NULL;
    struct bucket_msg m = make_msg("d", 0, "PUSH|!1|x|d|[a:=1]");
    struct bucket_msg gone = make_msg("d", 0, "PUSH|!2|x|d|[a:=2]");

    CHECK_EQ_INT(retries_open(b, &r), 0);
    CHECK_EQ_INT(retries_seen(r, m.digest, 1000), 0);
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(retries_remember(r, m.digest, 5000), 0);
    CHECK_EQ_INT(retries_remember(r, gone.digest, 5000), 0);
    CHECK_EQ_INT(retries_seen(r, m.digest, 1000), 1); /* within the batch */
    bucket_rollback(b);
    CHECK_EQ_INT(retries_seen(r, m.digest, 1000), 0); /* rolled back */
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(retries_remember(r, m.digest, 5000), 0);
    CHECK_EQ_INT(retries_remember(r, gone.digest, 2000), 0);
    CHECK_EQ_INT(bucket_commit(b), 0);
    retries_close(r);
    bucket_close(b);

    b = open_bucket();
    CHECK_EQ_INT(retries_open(b, &r), 0);
    CHECK_EQ_INT(retries_seen(r, m.digest, 4999), 1); /* durable */
    CHECK_EQ_INT(retries_seen(r, m.digest, 5000), 0); /* expired */
    CHECK_EQ_INT(bucket_forget(b), 0);                /* a new MQTT session */
    CHECK_EQ_INT(retries_seen(r, m.digest, 4999), 1); /* is not theirs */
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(retries_prune(r, 3000), 0);
    CHECK_EQ_INT(bucket_commit(b), 0);
    CHECK_EQ_INT(query_int("SELECT count(*) FROM net_retries"), 1);
    retries_close(r);
    bucket_close(b);
    tmp_teardown();
}

static void test_window_prune(void)
{
    const int total = SP_LIMIT_DEDUP_WINDOW + 5;
    const int batches = 3;
    uint8_t d[BUCKET_DIGEST_LEN];
    char p[32];

    tmp_setup();
    struct bucket *b = open_bucket();
    for (int k = 0, i = 0; k < batches; k++) {
        int end = total * (k + 1) / batches;
        CHECK_EQ_INT(bucket_begin(b), 0);
        for (; i < end; i++) {
            snprintf(p, sizeof p, "msg %d", i);
            bucket_digest("t", (const uint8_t *)p, strlen(p), d);
            if (bucket_remember(b, i % 65535 + 1, d) != 0) {
                CHECK(0);
                break;
            }
        }
        CHECK_EQ_INT(bucket_commit(b), 0);
    }
    /* The log is pruned by whole batches: the window plus part of one. */
    long long logged = query_int("SELECT coalesce(sum(last - first + 1), 0) FROM delivery_log");
    CHECK(logged >= SP_LIMIT_DEDUP_WINDOW && logged < SP_LIMIT_DEDUP_WINDOW + total / batches + 1);

    for (int pass = 0; pass < 2; pass++) {
        int seen_old = 0, seen_new = 0;
        for (int i = 0; i < total; i++) {
            snprintf(p, sizeof p, "msg %d", i);
            bucket_digest("t", (const uint8_t *)p, strlen(p), d);
            int s = bucket_seen(b, i % 65535 + 1, d);
            if (i < 5)
                seen_old += s;
            else
                seen_new += s;
        }
        CHECK_EQ_INT(seen_old, 0);
        CHECK_EQ_INT(seen_new, SP_LIMIT_DEDUP_WINDOW);
        bucket_close(b);
        b = open_bucket(); /* the second pass checks the reloaded window */
    }
    bucket_close(b);
    tmp_teardown();
}

/* Deterministic xorshift so failures reproduce. */
static uint32_t rng_state = 2463534242u;

static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

/* The key space is small (40 ids x 250 payloads) so pairs repeat often. */
static void stress_key(uint32_t k, int *mid, uint8_t d[BUCKET_DIGEST_LEN])
{
    char p[32];
    snprintf(p, sizeof p, "payload %u", (unsigned)(k / 40));
    *mid = (int)(k % 40) + 1;
    bucket_digest("t", (const uint8_t *)p, strlen(p), d);
}

static int model_has(const uint32_t *keys, size_t n, uint32_t k)
{
    for (size_t i = 0; i < n; i++)
        if (keys[i] == k)
            return 1;
    return 0;
}

/*
 * The window against a plain model: the list of committed keys, of which the
 * last SP_LIMIT_DEDUP_WINDOW are remembered. Random batches of messages that
 * are kept or rolled back, batches committed or rolled back, duplicates
 * remembered again, and a reopen at the end.
 */
static void test_window_model(void)
{
    enum { KEYS = 40 * 250, BATCHES = 30 };
    size_t cap = (size_t)SP_LIMIT_DEDUP_WINDOW * 2 + 4096;
    uint32_t *model = malloc(cap * sizeof *model);
    size_t n = 0;
    int mismatches = 0;
    uint8_t d[BUCKET_DIGEST_LEN];
    int mid;

    tmp_setup();
    struct bucket *b = open_bucket();
    for (int batch = 0; model && batch < BATCHES; batch++) {
        size_t batch_n = n;
        int msgs = (int)(rng() % 1000);
        CHECK_EQ_INT(bucket_begin(b), 0);
        for (int i = 0; i < msgs; i++) {
            size_t msg_n = n;
            int per = (int)(rng() % 3) + 1;
            int keep = rng() % 4 != 0;
            if (bucket_msg_begin(b))
                break;
            for (int j = 0; j < per; j++) {
                uint32_t k = rng() % KEYS;
                stress_key(k, &mid, d);
                if (bucket_remember(b, mid, d) == 0 && n < cap)
                    model[n++] = k;
            }
            if (bucket_msg_end(b, keep))
                break;
            if (!keep)
                n = msg_n;
        }
        if (rng() % 5 == 0) {
            bucket_rollback(b);
            n = batch_n;
        } else {
            CHECK_EQ_INT(bucket_commit(b), 0);
            if (n > SP_LIMIT_DEDUP_WINDOW) {
                memmove(model, model + (n - SP_LIMIT_DEDUP_WINDOW),
                        SP_LIMIT_DEDUP_WINDOW * sizeof *model);
                n = SP_LIMIT_DEDUP_WINDOW;
            }
        }
        if (batch == BATCHES - 1) {
            bucket_close(b);
            b = open_bucket();
        }
        for (uint32_t k = (uint32_t)batch % 7; k < KEYS; k += 7) {
            stress_key(k, &mid, d);
            if (bucket_seen(b, mid, d) != model_has(model, n, k))
                mismatches++;
        }
    }
    CHECK(model != NULL);
    CHECK_EQ_INT(mismatches, 0);
    /* The log is pruned by whole batches (of at most 999 * 3 entries). */
    long long logged = query_int("SELECT coalesce(sum(last - first + 1), 0) FROM delivery_log");
    CHECK(logged >= (long long)n && logged < (long long)n + 3000);
    bucket_close(b);
    free(model);
    tmp_teardown();
}

/* Server-side nonce seeds: counted in memory per batch, never handed out twice. */
static void test_downlink(void)
{
    const uint8_t a[8] = {1, 2, 3, 4, 5, 6, 7, 8}, k2[8] = {8, 7, 6, 5, 4, 3, 2, 1};
    uint32_t v = 0;

    tmp_setup();
    struct bucket *b = open_bucket();
    CHECK_EQ_INT(bucket_begin(b), 0);
    for (uint32_t i = 1; i <= 3; i++) {
        CHECK_EQ_INT(bucket_downlink_counter(b, a, &v), 0);
        CHECK_EQ_INT(v, i);
    }
    CHECK_EQ_INT(bucket_downlink_counter(b, k2, &v), 0);
    CHECK_EQ_INT(v, 1);
    /* A key first used in a message that is rolled back keeps counting up:
     * an answer sealed before the rollback may still be sent. */
    const uint8_t k3[8] = {9, 9, 9, 9, 9, 9, 9, 9};
    CHECK_EQ_INT(bucket_msg_begin(b), 0);
    CHECK_EQ_INT(bucket_downlink_counter(b, k3, &v), 0);
    CHECK_EQ_INT(v, 1);
    CHECK_EQ_INT(bucket_msg_end(b, 0), 0);
    CHECK_EQ_INT(bucket_downlink_counter(b, k3, &v), 0);
    CHECK_EQ_INT(v, 2);
    CHECK_EQ_INT(bucket_commit(b), 0);
    /* Counters are reserved 256 at a time: the row says the last reserved. */
    CHECK_EQ_INT(query_int("SELECT last FROM downlink_counters WHERE key_id = x'0102030405060708'"),
                 256);
    CHECK_EQ_INT(query_int("SELECT last FROM downlink_counters WHERE key_id = x'0909090909090909'"),
                 1 + 256);
    /* The rest of a range is handed out from memory, in later batches too:
     * no statement, the row unchanged. */
    CHECK_EQ_INT(bucket_begin(b), 0);
    for (uint32_t i = 4; i <= 256; i++) {
        CHECK_EQ_INT(bucket_downlink_counter(b, a, &v), 0);
        CHECK_EQ_INT(v, i);
    }
    CHECK_EQ_INT(bucket_commit(b), 0);
    CHECK_EQ_INT(query_int("SELECT last FROM downlink_counters WHERE key_id = x'0102030405060708'"),
                 256);
    /* A batch rolled back: the range it reserved is gone with it, and what
     * it handed out is never handed out again. */
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(bucket_downlink_counter(b, a, &v), 0);
    CHECK_EQ_INT(v, 257);
    CHECK_EQ_INT(bucket_downlink_counter(b, a, &v), 0);
    CHECK_EQ_INT(v, 258);
    bucket_rollback(b);
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(bucket_downlink_counter(b, a, &v), 0);
    CHECK_EQ_INT(v, 259);
    CHECK_EQ_INT(bucket_commit(b), 0);
    CHECK_EQ_INT(query_int("SELECT last FROM downlink_counters WHERE key_id = x'0102030405060708'"),
                 258 + 256);
    /* A restart skips the rest of the range: counters only grow. */
    bucket_close(b);
    b = open_bucket();
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(bucket_downlink_counter(b, a, &v), 0);
    CHECK_EQ_INT(v, 258 + 256 + 1);
    CHECK_EQ_INT(bucket_commit(b), 0);
    /* Near the end of the 32-bit counters: the range is cut at the last
     * one, then there is none left (the key must be rotated). */
    bucket_close(b);
    sqlite3 *db = NULL;
    CHECK(sqlite3_open(dbpath, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "UPDATE downlink_counters SET last = 4294967290"
                       " WHERE key_id = x'0807060504030201'",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    b = open_bucket();
    CHECK_EQ_INT(bucket_begin(b), 0);
    for (uint32_t i = 4294967291u; i != 0; i++) {
        CHECK_EQ_INT(bucket_downlink_counter(b, k2, &v), 0);
        CHECK_EQ_INT(v, i);
    }
    CHECK_EQ_INT(bucket_downlink_counter(b, k2, &v), SP_ERR_REPLAY);
    CHECK_EQ_INT(bucket_downlink_counter(b, k2, &v), SP_ERR_REPLAY);
    CHECK_EQ_INT(bucket_commit(b), 0);
    bucket_close(b);
    tmp_teardown();
}

static void test_dead(void)
{
    static const uint8_t payload[] = {'a', 0, 'b', 0xff, 0, 0x80, '\n', 0};
    struct bucket_msg m = make_msg(NULL, 3, "x");
    sqlite3 *db;
    sqlite3_stmt *st = NULL;

    tmp_setup();
    struct bucket *b = open_bucket();
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(bucket_msg_begin(b), 0);
    CHECK_EQ_INT(bucket_dead(b, &m, "payload", "not JSON at byte 1", payload, sizeof payload), 0);
    CHECK_EQ_INT(bucket_msg_end(b, 1), 0);
    m.serial = "d1";
    CHECK_EQ_INT(bucket_dead(b, &m, "replay", NULL, NULL, 0), 0);
    CHECK_EQ_INT(bucket_commit(b), 0);
    bucket_close(b);

    db = open_reader();
    CHECK(sqlite3_prepare_v2(db,
                             "SELECT received_at, topic, device IS NULL, reason, detail, payload,"
                             " typeof(payload) FROM dead_letters ORDER BY id",
                             -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_int64(st, 0), m.received_ms);
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 1), "devices/data");
    CHECK_EQ_INT(sqlite3_column_int(st, 2), 1);
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 3), "payload");
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 4), "not JSON at byte 1");
    CHECK_EQ_INT(sqlite3_column_bytes(st, 5), sizeof payload);
    const void *blob = sqlite3_column_blob(st, 5);
    CHECK(blob && memcmp(blob, payload, sizeof payload) == 0);
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 6), "blob");
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_int(st, 2), 0);
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 3), "replay");
    CHECK(sqlite3_column_type(st, 4) == SQLITE_NULL);
    CHECK_EQ_INT(sqlite3_column_bytes(st, 5), 0);
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 6), "blob");
    CHECK(sqlite3_step(st) == SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
    CHECK_EQ_INT(query_int("SELECT count(*) FROM dead_letters WHERE reason = 'replay'"), 1);
    tmp_teardown();
}

static void test_latest(void)
{
    struct arena a;
    struct record r[5], out;
    char err[256] = "";

    tmp_setup();
    arena_init(&a, 1 << 20);
    struct bucket *b = open_bucket();
    struct bucket_msg m = make_msg("d", 1, "x");
    memset(r, 0, sizeof r);
    r[0] = num_record("temp", 1);
    r[0].has_time = 1;
    r[0].time_ms = 1000;
    r[1] = num_record("temp", 2.5);
    r[1].has_time = 1;
    r[1].time_ms = 3000;
    r[2] = num_record("temp", 2);
    r[2].has_time = 1;
    r[2].time_ms = 2000;
    r[3].variable = "temp"; /* same time as r[1], inserted later: wins */
    r[3].type = RECORD_STRING;
    r[3].string = "hot";
    r[3].string_len = 3;
    r[3].unit = "C";
    r[3].group = "g";
    r[3].metadata = "{\"k\":\"v\"}";
    r[3].has_time = 1;
    r[3].time_ms = 3000;
    r[3].has_location = 1;
    r[3].lat = 10;
    r[3].lng = 20;
    r[4] = num_record("hum", 55);
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(bucket_insert(b, &m, r, 5, err, sizeof err), 0);
    CHECK_EQ_INT(bucket_commit(b), 0);

    memset(&out, 0, sizeof out);
    CHECK_EQ_INT(bucket_latest(b, "d", "temp", &a, &out), 0);
    CHECK_EQ_INT(out.type, RECORD_STRING);
    CHECK_EQ_STR(out.variable, "temp");
    CHECK_EQ_STR(out.string, "hot");
    CHECK_EQ_INT(out.string_len, 3);
    CHECK_EQ_STR(out.unit, "C");
    CHECK_EQ_STR(out.group, "g");
    CHECK_EQ_STR(out.metadata, "{\"k\":\"v\"}");
    CHECK_EQ_INT(out.has_time, 1);
    CHECK_EQ_INT(out.time_ms, 3000);
    CHECK(out.has_location && out.lat == 10 && out.lng == 20 && !out.has_alt);

    CHECK_EQ_INT(bucket_latest(b, "d", "hum", &a, &out), 0);
    CHECK_EQ_INT(out.type, RECORD_NUMBER);
    CHECK(out.number == 55);
    CHECK_EQ_INT(out.time_ms, m.received_ms);
    CHECK(out.unit == NULL && out.group == NULL && out.metadata == NULL && !out.has_location);

    memset(&out, 0, sizeof out);
    CHECK_EQ_INT(bucket_latest(b, "d", "nothing", &a, &out), SP_ERR_NOTFOUND);
    CHECK_EQ_INT(bucket_latest(b, "other", "temp", &a, &out), SP_ERR_NOTFOUND);
    CHECK(out.variable == NULL); /* untouched on failure */
    bucket_close(b);
    arena_cleanup(&a);
    tmp_teardown();
}

static void test_reader_during_batch(void)
{
    char txt[32];
    char err[256] = "";

    tmp_setup();
    struct bucket *b = open_bucket();
    struct bucket_msg m = make_msg("d", 1, "x");
    struct record r = num_record("v", 1);
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(bucket_insert(b, &m, &r, 1, err, sizeof err), 0);
    CHECK_EQ_INT(bucket_commit(b), 0);

    query_text("PRAGMA journal_mode", txt, sizeof txt);
    CHECK_EQ_STR(txt, "wal");

    /* A batch holds the write lock; a reader still sees the last commit. */
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(bucket_insert(b, &m, &r, 1, err, sizeof err), 0);
    sqlite3 *db = open_reader();
    sqlite3_busy_timeout(db, 0);
    sqlite3_stmt *st = NULL;
    CHECK(sqlite3_prepare_v2(db, "SELECT count(*) FROM data", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
    CHECK_EQ_INT(bucket_commit(b), 0);
    st = NULL;
    CHECK(sqlite3_prepare_v2(db, "SELECT count(*) FROM data", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_int(st, 0), 2);
    sqlite3_finalize(st);
    sqlite3_close(db);
    bucket_close(b);
    tmp_teardown();
}

static void test_insert_error(void)
{
    struct record r;
    char err[256] = "";

    tmp_setup();
    struct bucket *b = open_bucket();
    struct bucket_msg m = make_msg("d", 1, "x");
    r = num_record(NULL, 1); /* variable is NOT NULL: the database refuses */
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(bucket_msg_begin(b), 0);
    /* A refusal is the message's fault: SP_ERR_PAYLOAD, not a database error. */
    CHECK_EQ_INT(bucket_insert(b, &m, &r, 1, err, sizeof err), SP_ERR_PAYLOAD);
    CHECK(strstr(err, "NOT NULL") != NULL);
    CHECK_EQ_INT(bucket_msg_end(b, 0), 0);
    r = num_record("nan", NAN); /* SQLite stores NaN as NULL: the CHECK refuses */
    CHECK_EQ_INT(bucket_msg_begin(b), 0);
    CHECK_EQ_INT(bucket_insert(b, &m, &r, 1, err, sizeof err), SP_ERR_PAYLOAD);
    CHECK(strstr(err, "CHECK") != NULL);
    CHECK_EQ_INT(bucket_msg_end(b, 0), 0);
    r = num_record("ok", 2);
    store_one(b, &m, "ok", 2, 1);
    CHECK_EQ_INT(bucket_commit(b), 0);
    bucket_close(b);
    CHECK_EQ_INT(query_int("SELECT count(*) FROM data"), 1);
    tmp_teardown();
}

/* bucket_query: by device, variable and time range, newest first, at most qty. */
static void test_query(void)
{
    struct record r[6];
    char err[256] = "";
    struct arena a;

    tmp_setup();
    struct bucket *b = open_bucket();
    struct bucket_msg m = make_msg("q1", 1, "p");
    for (int i = 0; i < 6; i++) {
        r[i] = num_record(i % 2 ? "hum" : "temp", i);
        r[i].has_time = 1;
        r[i].time_ms = 1000 * (i + 1);
    }
    r[2].unit = "C";
    CHECK_EQ_INT(bucket_begin(b), 0);
    CHECK_EQ_INT(bucket_insert(b, &m, r, 6, err, sizeof err), 0);
    struct bucket_msg other = make_msg("q2", 2, "o");
    CHECK_EQ_INT(bucket_insert(b, &other, r, 1, err, sizeof err), 0);
    CHECK_EQ_INT(bucket_commit(b), 0);

    arena_init(&a, 1 << 20);
    struct record_vec v = {0};
    CHECK_EQ_INT(bucket_query(b, "q1", "temp", INT64_MIN, INT64_MAX, 10, &a, &v), 0);
    CHECK_EQ_INT((long long)v.n, 3);
    if (v.n == 3) {
        CHECK(v.v[0].time_ms == 5000 && v.v[0].number == 4 && v.v[2].time_ms == 1000);
        CHECK(strcmp(v.v[1].variable, "temp") == 0 && v.v[1].unit && !strcmp(v.v[1].unit, "C"));
    }
    v = (struct record_vec){0};
    CHECK_EQ_INT(bucket_query(b, "q1", NULL, 2000, 4000, 2, &a, &v), 0);
    CHECK_EQ_INT((long long)v.n, 2);
    if (v.n == 2)
        CHECK(v.v[0].time_ms == 4000 && v.v[1].time_ms == 3000 &&
              strcmp(v.v[0].variable, "hum") == 0);
    v = (struct record_vec){0};
    CHECK_EQ_INT(bucket_query(b, "nobody", NULL, INT64_MIN, INT64_MAX, 5, &a, &v), 0);
    CHECK_EQ_INT((long long)v.n, 0);
    arena_cleanup(&a);
    bucket_close(b);
    tmp_teardown();
}

int main(void)
{
    if (sodium_init() < 0)
        return 2;
    RUN(test_digest);
    RUN(test_open_errors);
    RUN(test_insert_types);
    RUN(test_query);
    RUN(test_savepoint);
    RUN(test_batch_rollback);
    RUN(test_dedup);
    RUN(test_retries);
    RUN(test_window_prune);
    RUN(test_window_model);
    RUN(test_downlink);
    RUN(test_dead);
    RUN(test_latest);
    RUN(test_reader_during_batch);
    RUN(test_insert_error);
    return check_done();
}
