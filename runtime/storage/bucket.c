/*
 * bucket.c - where results land: records and dead letters in SQLite (see
 * bucket.h; schema in schemas/bucket.sql).
 *
 * The pipeline thread owns one struct bucket. It holds one connection to
 * <data_dir>/sealpipe.db in WAL mode and every statement it runs, prepared
 * once at open. A batch is one BEGIN IMMEDIATE ... COMMIT; when the pipeline
 * writes a batch again carefully, each message inside it is SAVEPOINT m ...
 * RELEASE m (or ROLLBACK TO m), so a message's rows, dead letter and window
 * entry stand or fall together (its replay counter is devstate.c's, advanced
 * only once the message is written).
 *
 * The delivery window lives twice: in memory (dwindow.c), a multiset for bucket_seen()
 * that takes an entry as soon as it is remembered (so a duplicate later in
 * the same batch is caught) and drops it again when its message savepoint or
 * its batch is rolled back; and durably, one delivery_log row per batch
 * holding that batch's entries, written just before COMMIT. Because nothing
 * leaves the front of the window during a batch, "the window's length when
 * the batch (or message) began" is a complete undo log, and the entries from
 * batch_mark to the end are exactly the batch's row.
 */
#include "bucket.h"
#include "bucket_internal.h"
#include "base/clock.h"
#include "base/errors.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>
#include <sqlite3.h>

#include "datadir.h"
#include "dwindow.h"
#include "base/keytab.h"
#include "base/sp_limits.h"
#include "sealpipe.h"

extern const char sp_schema_bucket[]; /* schemas/bucket.sql, embedded by CMake */

#define BUCKET_BUSY_MS 5000

/* ---------------------------------------------------------------------- */
/* Statements                                                             */
/* ---------------------------------------------------------------------- */

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_LOG_INSERT,
    ST_LOG_PRUNE,
    ST_LOG_CLEAR,
    ST_DATA_INSERT,
    ST_DEAD_INSERT,
    ST_KEY_USED,
    ST_KEY_CURRENT,
    ST_KEY_LAST,
    ST_KEY_ANY,
    ST_DOWN_RESERVE,
    ST_LATEST,
    ST_QUERY,
    ST_CMD_QUEUE,
    ST_CMD_PENDING,
    ST_CMD_PAYLOAD,
    ST_CMD_SENT,
    ST_CMD_FAILED,
    ST_DEFER,
    ST_DEFERRED,
    ST_DEFERRED_LAST,
    ST_DEFERRED_DONE,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT m",
    [ST_RELEASE] = "RELEASE m",
    [ST_ROLLBACK_TO] = "ROLLBACK TO m",
    [ST_LOG_INSERT] = "INSERT INTO delivery_log (first, last, entries) VALUES (?1, ?2, ?3)",
    [ST_LOG_PRUNE] = "DELETE FROM delivery_log WHERE first <= ?1 AND last <= ?1",
    [ST_LOG_CLEAR] = "DELETE FROM delivery_log",
    [ST_DATA_INSERT] = "INSERT INTO data (device, variable, type, value, unit, time, group_id,"
                       " lat, lng, alt, metadata, received_at)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    [ST_DEAD_INSERT] = "INSERT INTO dead_letters (id, received_at, topic, device, reason,"
                       " detail, payload, digest) VALUES ((SELECT last + 1 FROM dead_letter_ids),"
                       " ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_DEFER] = "INSERT INTO deferred (topic, payload, full_len, qos, retain, publisher, hops)"
                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_DEFERRED] = "SELECT id, topic, payload, full_len, qos, retain, publisher, hops"
                    " FROM deferred WHERE id > ?2 AND id <= ?3 ORDER BY id LIMIT ?1",
    [ST_DEFERRED_LAST] = "SELECT coalesce(max(id), 0) FROM deferred",
    [ST_DEFERRED_DONE] = "DELETE FROM deferred WHERE id = ?1",
    [ST_CMD_QUEUE] = "INSERT INTO commands (serial, command, sealed, created_at)"
                     " VALUES (?1, ?2, ?3, ?4)",
    [ST_CMD_PENDING] = "SELECT id, serial, command, sealed, payload FROM commands"
                       " WHERE sent_at IS NULL AND error IS NULL ORDER BY id LIMIT ?1",
    [ST_CMD_PAYLOAD] = "UPDATE commands SET payload = ?2 WHERE id = ?1",
    [ST_CMD_SENT] = "UPDATE commands SET sent_at = ?2 WHERE id = ?1",
    [ST_CMD_FAILED] = "UPDATE commands SET error = ?2 WHERE id = ?1",
    /* ?2: the last counter handed out (a rollback may have taken the row
     * below it); ?3: how many to reserve. */
    [ST_DOWN_RESERVE] = "INSERT INTO downlink_counters (key_id, last) VALUES (?1, ?2 + ?3)"
                        " ON CONFLICT (key_id) DO UPDATE SET last = max(last, ?2) + ?3"
                        " RETURNING last",
    /* One statement checks and advances: no row changes for a replay. */
    [ST_KEY_USED] =
        "INSERT OR REPLACE INTO device_key_use (serial, key_id, at) VALUES (?1, ?2, ?3)",
    [ST_KEY_CURRENT] = "DELETE FROM device_key_use WHERE serial = ?1",
    [ST_KEY_LAST] = "SELECT key_id FROM device_key_use WHERE serial = ?1",
    [ST_KEY_ANY] = "SELECT 1 FROM device_key_use LIMIT 1",
    [ST_QUERY] = "SELECT type, value, unit, time, group_id, lat, lng, alt, metadata, variable"
                 " FROM data WHERE device = ?1 AND (?2 IS NULL OR variable = ?2)"
                 " AND time BETWEEN ?3 AND ?4 ORDER BY time DESC, id DESC LIMIT ?5",
    [ST_LATEST] = "SELECT type, value, unit, time, group_id, lat, lng, alt, metadata"
                  " FROM data WHERE device = ?1 AND variable = ?2"
                  " ORDER BY time DESC, id DESC LIMIT 1",
};

/*
 * Downlink counters (nonce seeds) are reserved DOWN_RANGE at a time: the row
 * says the last one reserved, in the transaction of the first envelope
 * sealed from the range, and the rest of the range is handed out from
 * memory, across batches, with no statement. A restart skips what was left
 * of each range (counters only grow, gaps are allowed). A rollback, of a
 * batch or of one message, gives up the ranges reserved in what it undid
 * (down_unreserve): they are no longer in the row, which may now be below
 * counters already handed out (an answer sealed before a message's rollback
 * may still leave), so the next reservation starts above both. At
 * most DOWN_SLOTS / 2 keys are held; past that, all are forgotten, which is
 * safe because every counter handed out is at most its row's (uncommitted
 * rows included) once no rollback is pending.
 */
#define DOWN_RANGE 256
#define DOWN_SLOTS 65536

/* A downlink key's range: counters (next, top] are reserved and unused. */
struct down_entry {
    uint8_t id[8]; /* the key: a key id, already a hash */
    uint32_t next;
    uint32_t top;
    uint64_t gen; /* b->down_gen when reserved */
};

static const struct keytab_type down_type = {.entry_size = sizeof(struct down_entry),
                                             .key_size = 8};

struct bucket {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
    struct window win;
    int in_batch;
    int in_msg;
    size_t batch_mark; /* win.len at bucket_begin */
    size_t msg_mark;   /* win.len at bucket_msg_begin */
    int64_t seq;       /* number of the newest window entry */
    int last_rc;       /* sqlite3_step's result in the last run() */
    int64_t batch_seq; /* seq at bucket_begin */
    uint8_t *log;      /* a batch's entries, serialized for delivery_log */
    size_t logcap;
    /*
     * Downlink counters handed out in the open batch: the first use of a key
     * advances its row, later ones count here, and bucket_commit() writes
     * the last value of each before COMMIT. One statement per key per batch
     * instead of one per sealed answer. Emptied when the batch ends.
     */
    struct keytab down;                    /* downlink counters reserved, by key (DOWN_RANGE) */
    uint64_t down_gen, batch_gen, msg_gen; /* reservations since a batch or message began */
    /* device_key_use may hold rows (set at open and by bucket_key_used):
     * without, the common case costs no statement. */
    int key_use;
};

#define LOG_ENTRY (4 + BUCKET_DIGEST_LEN)

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/*
 * Steps a statement that returns no rows (or whose rows are ignored), then
 * resets it and clears its bindings. On failure copies sqlite3_errmsg into
 * err (before the reset can change it). Returns 0 or SP_ERR_DB.
 */
static int run(struct bucket *b, enum stmt_id id, char *err, size_t errlen)
{
    sqlite3_stmt *st = b->st[id];
    int rc = sqlite3_step(st);

    b->last_rc = rc;
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        set_err(err, errlen, "%s", sqlite3_errmsg(b->db));
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SP_OK : SP_ERR_DB;
}

static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
    return s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* ---------------------------------------------------------------------- */
/* Open and close                                                         */
/* ---------------------------------------------------------------------- */

static int load_window(struct bucket *b, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (sqlite3_prepare_v2(b->db, "SELECT first, last, entries FROM delivery_log ORDER BY first",
                           -1, &st, NULL) != SQLITE_OK)
        goto fail_db;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int64_t first = sqlite3_column_int64(st, 0), last = sqlite3_column_int64(st, 1);
        const uint8_t *e = sqlite3_column_blob(st, 2);
        size_t n = (size_t)sqlite3_column_bytes(st, 2) / LOG_ENTRY;
        if (!e || last - first + 1 != (int64_t)n || first <= b->seq)
            continue; /* not ours; can never match */
        for (size_t i = 0; i < n; i++, e += LOG_ENTRY) {
            struct win_key k = {.mid = (int)((uint32_t)e[0] << 24 | (uint32_t)e[1] << 16 |
                                             (uint32_t)e[2] << 8 | e[3])};
            memcpy(k.digest, e + 4, BUCKET_DIGEST_LEN);
            if (win_push(&b->win, first + (int64_t)i, &k)) {
                set_err(err, errlen, "delivery window: out of memory");
                sqlite3_finalize(st);
                return SP_ERR_NOMEM;
            }
        }
        b->seq = last;
    }
    if (rc != SQLITE_DONE)
        goto fail_db;
    sqlite3_finalize(st);
    /* The limit may have shrunk since these rows were written. */
    win_evict(&b->win, win_bound(&b->win));
    return SP_OK;

fail_db:
    set_err(err, errlen, "delivery window: %s", sqlite3_errmsg(b->db));
    sqlite3_finalize(st);
    return SP_ERR_DB;
}

/*
 * The size sealpipe.db-wal is cut back to once a checkpoint has reset it. An
 * outside reader that holds a read transaction keeps checkpoints from
 * resetting the WAL, which then grows with every commit; without a limit
 * SQLite would keep the file that large for good (docs/facts.md, "SQLite's
 * WAL").
 */
#define BUCKET_WAL_LIMIT_PRAGMA "PRAGMA journal_size_limit=67108864" /* 64 MiB */

/*
 * The connection's page cache: 16 MiB, against SQLite's default of 2 MB,
 * which the index of data and the per-device tables outgrow at a few
 * thousand devices; past it every batch reads its pages back with pread()
 * (docs/facts.md, "SQLite's page cache"). Pages are allocated as used.
 */
#define BUCKET_CACHE_PRAGMA "PRAGMA cache_size=-16384" /* KiB */

/* PRAGMA journal_mode answers with the mode it ended up in. */
static int enable_wal(struct bucket *b, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int ok = 0;

    if (sqlite3_prepare_v2(b->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK) {
        set_err(err, errlen, "journal_mode: %s", sqlite3_errmsg(b->db));
        return SP_ERR_DB;
    }
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(st, 0);
        ok = mode && strcasecmp(mode, "wal") == 0;
    }
    if (!ok)
        set_err(err, errlen, "cannot enable WAL mode: %s", sqlite3_errmsg(b->db));
    sqlite3_finalize(st);
    return ok ? SP_OK : SP_ERR_DB;
}

int bucket__prepare(struct bucket *b, const char *const *sql, sqlite3_stmt **st, int n)
{
    for (int i = 0; i < n; i++) {
        if (sqlite3_prepare_v3(b->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st[i], NULL) !=
            SQLITE_OK) {
            bucket__finalize(st, n);
            return SP_ERR_DB;
        }
    }
    return SP_OK;
}

void bucket__finalize(sqlite3_stmt **st, int n)
{
    for (int i = 0; i < n; i++) {
        sqlite3_finalize(st[i]);
        st[i] = NULL;
    }
}

int bucket__step_once(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

int bucket_open(const char *data_dir, int sync, struct bucket **out, char *err, size_t errlen)
{
    struct bucket *b = NULL;
    char *path = NULL;
    char *msg = NULL;
    size_t n;
    int rc;

    rc = datadir_ensure(data_dir, err, errlen);
    if (rc)
        return rc;
    if (sodium_init() < 0) {
        set_err(err, errlen, "libsodium initialization failed");
        return SP_ERR_IO;
    }
    n = strlen(data_dir) + sizeof "/" DATADIR_DB;
    path = malloc(n);
    b = calloc(1, sizeof *b);
    if (!path || !b) {
        set_err(err, errlen, "out of memory");
        rc = SP_ERR_NOMEM;
        goto fail;
    }
    snprintf(path, n, "%s/%s", data_dir, DATADIR_DB);
    if (win_init(&b->win) || keytab_init(&b->down, &down_type, 1024, DOWN_SLOTS)) {
        set_err(err, errlen, "out of memory");
        rc = SP_ERR_NOMEM;
        goto fail;
    }

    rc = SP_ERR_DB;
    /* One thread uses the connection (the pipeline's): no mutex per call. */
    if (sqlite3_open_v2(path, &b->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        set_err(err, errlen, "%s: %s", path,
                b->db ? sqlite3_errmsg(b->db) : "cannot allocate a connection");
        goto fail;
    }
    sqlite3_extended_result_codes(b->db, 1);
    sqlite3_busy_timeout(b->db, BUCKET_BUSY_MS);
    if (enable_wal(b, err, errlen))
        goto fail;
    if (sqlite3_exec(b->db,
                     sync == BUCKET_SYNC_NORMAL ? "PRAGMA synchronous=NORMAL"
                                                : "PRAGMA synchronous=FULL",
                     NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(b->db, "PRAGMA foreign_keys=ON", NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(b->db, BUCKET_WAL_LIMIT_PRAGMA, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(b->db, BUCKET_CACHE_PRAGMA, NULL, NULL, &msg) != SQLITE_OK) {
        set_err(err, errlen, "%s: %s", path, msg ? msg : "pragma failed");
        goto fail;
    }
    if (sqlite3_exec(b->db, sp_schema_bucket, NULL, NULL, &msg) != SQLITE_OK) {
        set_err(err, errlen, "bucket schema: %s", msg ? msg : "failed");
        goto fail;
    }
    if (deadletters__upgrade(b->db)) {
        set_err(err, errlen, "dead_letters upgrade: %s", sqlite3_errmsg(b->db));
        goto fail;
    }
    for (int i = 0; i < ST_COUNT; i++) {
        if (sqlite3_prepare_v3(b->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &b->st[i],
                               NULL) != SQLITE_OK) {
            set_err(err, errlen, "prepare \"%s\": %s", stmt_sql[i], sqlite3_errmsg(b->db));
            goto fail;
        }
    }
    b->key_use = sqlite3_step(b->st[ST_KEY_ANY]) == SQLITE_ROW;
    sqlite3_reset(b->st[ST_KEY_ANY]);
    rc = load_window(b, err, errlen);
    if (rc)
        goto fail;
    free(path);
    *out = b;
    return SP_OK;

fail:
    sqlite3_free(msg);
    free(path);
    bucket_close(b);
    return rc;
}

void bucket_close(struct bucket *b)
{
    if (!b)
        return;
    if (b->in_batch)
        bucket_rollback(b);
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(b->st[i]);
    sqlite3_close(b->db);
    win_cleanup(&b->win);
    keytab_cleanup(&b->down);
    free(b->log);
    free(b);
}

/* ---------------------------------------------------------------------- */
/* Transactions                                                           */
/* ---------------------------------------------------------------------- */

/* The ranges reserved since generation gen are given up; the counters
 * handed out are kept (see DOWN_RANGE). */
static void down_unreserve(struct bucket *b, uint64_t gen)
{
    struct down_entry *e;

    for (size_t i = 0; (e = keytab_next(&b->down, &i)) != NULL;)
        if (e->gen >= gen)
            e->top = e->next;
}

void bucket_busy_ms(struct bucket *b, int ms)
{
    sqlite3_busy_timeout(b->db, ms);
}

int bucket_begin(struct bucket *b)
{
    assert(!b->in_batch);
    int rc = run(b, ST_BEGIN, NULL, 0);
    if (rc)
        return rc;
    b->in_batch = 1;
    b->in_msg = 0;
    b->batch_gen = ++b->down_gen;
    b->batch_mark = b->win.len;
    b->batch_seq = b->seq;
    return SP_OK;
}

/* Writes the batch's window entries as one delivery_log row. */
static int log_batch(struct bucket *b)
{
    size_t n = b->win.len - b->batch_mark;
    sqlite3_stmt *st = b->st[ST_LOG_INSERT];

    if (n == 0)
        return SP_OK;
    if (n * LOG_ENTRY > b->logcap) {
        uint8_t *p = realloc(b->log, n * LOG_ENTRY);
        if (!p)
            return SP_ERR_NOMEM;
        b->log = p;
        b->logcap = n * LOG_ENTRY;
    }
    uint8_t *e = b->log;
    for (size_t i = b->batch_mark; i < b->win.len; i++, e += LOG_ENTRY) {
        const struct win_item *it = &b->win.items[(b->win.head + i) & (b->win.cap - 1)];
        uint32_t mid = (uint32_t)it->key.mid;
        e[0] = (uint8_t)(mid >> 24);
        e[1] = (uint8_t)(mid >> 16);
        e[2] = (uint8_t)(mid >> 8);
        e[3] = (uint8_t)mid;
        memcpy(e + 4, it->key.digest, BUCKET_DIGEST_LEN);
    }
    const struct win_item *first = &b->win.items[(b->win.head + b->batch_mark) & (b->win.cap - 1)];
    sqlite3_bind_int64(st, 1, first->seq);
    sqlite3_bind_int64(st, 2, b->seq);
    sqlite3_bind_blob(st, 3, b->log, (int)(n * LOG_ENTRY), SQLITE_STATIC);
    return run(b, ST_LOG_INSERT, NULL, 0);
}

/*
 * The prune rides in the batch's transaction, so the table and the memory
 * window shrink together or not at all. A failed COMMIT rolls the whole batch
 * back (rows and window) before returning, so the caller never has to guess
 * whether a transaction is still open.
 */
int bucket_commit(struct bucket *b)
{
    assert(b->in_batch && !b->in_msg);
    int64_t bound = win_bound(&b->win);

    if (log_batch(b))
        goto fail;
    if (bound > 0) {
        sqlite3_bind_int64(b->st[ST_LOG_PRUNE], 1, bound);
        if (run(b, ST_LOG_PRUNE, NULL, 0))
            goto fail;
    }
    if (run(b, ST_COMMIT, NULL, 0))
        goto fail;
    b->in_batch = 0;
    win_evict(&b->win, bound);
    return SP_OK;

fail:
    bucket_rollback(b);
    return SP_ERR_DB;
}

void bucket_rollback(struct bucket *b)
{
    if (!b->in_batch)
        return;
    /* May fail when SQLite already rolled back on its own (e.g. disk full);
     * either way no transaction is open afterwards. */
    (void)run(b, ST_ROLLBACK, NULL, 0);
    down_unreserve(b, b->batch_gen);
    win_truncate(&b->win, b->batch_mark);
    b->seq = b->batch_seq;
    b->in_batch = 0;
    b->in_msg = 0;
}

int bucket_msg_begin(struct bucket *b)
{
    assert(b->in_batch && !b->in_msg);
    int rc = run(b, ST_SAVEPOINT, NULL, 0);
    if (rc)
        return rc;
    b->in_msg = 1;
    b->msg_gen = ++b->down_gen;
    b->msg_mark = b->win.len;
    return SP_OK;
}

int bucket_msg_end(struct bucket *b, int keep)
{
    assert(b->in_msg);
    b->in_msg = 0;
    if (keep)
        return run(b, ST_RELEASE, NULL, 0);
    b->seq -= (int64_t)(b->win.len - b->msg_mark);
    win_truncate(&b->win, b->msg_mark);
    down_unreserve(b, b->msg_gen); /* a range reserved in the message is undone */
    int rc = run(b, ST_ROLLBACK_TO, NULL, 0);
    int rc2 = run(b, ST_RELEASE, NULL, 0);
    return rc ? rc : rc2;
}

/* ---------------------------------------------------------------------- */
/* Delivery window                                                        */
/* ---------------------------------------------------------------------- */

void bucket_digest(const char *topic, const uint8_t *payload, size_t len,
                   uint8_t digest[BUCKET_DIGEST_LEN])
{
    crypto_hash_sha256_state st;
    unsigned char full[crypto_hash_sha256_BYTES];
    const unsigned char zero = 0;

    crypto_hash_sha256_init(&st);
    if (topic)
        crypto_hash_sha256_update(&st, (const unsigned char *)topic, strlen(topic));
    crypto_hash_sha256_update(&st, &zero, 1);
    if (len)
        crypto_hash_sha256_update(&st, payload, len);
    crypto_hash_sha256_final(&st, full);
    memcpy(digest, full, BUCKET_DIGEST_LEN);
}

int bucket_seen(struct bucket *b, int mid, const uint8_t digest[BUCKET_DIGEST_LEN])
{
    struct win_key k = {.mid = mid};

    if (mid == 0)
        return 0;
    memcpy(k.digest, digest, BUCKET_DIGEST_LEN);
    return win_has(&b->win, &k);
}

int bucket_remember(struct bucket *b, int mid, const uint8_t digest[BUCKET_DIGEST_LEN])
{
    struct win_key k = {.mid = mid};

    assert(b->in_batch);
    if (mid == 0)
        return SP_OK; /* QoS 0 is never redelivered */
    memcpy(k.digest, digest, BUCKET_DIGEST_LEN);
    /* Durable with the batch's delivery_log row, written at commit. */
    int rc = win_push(&b->win, b->seq + 1, &k);
    if (rc == SP_OK)
        b->seq++;
    return rc;
}

int bucket_forget(struct bucket *b)
{
    assert(!b->in_batch);
    int rc = run(b, ST_LOG_CLEAR, NULL, 0);
    if (rc)
        return rc;
    win_clear(&b->win);
    return SP_OK;
}

/* ---------------------------------------------------------------------- */
/* Data                                                                   */
/* ---------------------------------------------------------------------- */

static const char *type_name(enum record_type t)
{
    switch (t) {
    case RECORD_NUMBER:
        return "number";
    case RECORD_STRING:
        return "string";
    case RECORD_BOOLEAN:
        return "boolean";
    case RECORD_NONE:
        break;
    }
    return "none";
}

/* Integral doubles go in as INTEGER so that sqlite3 shows 42, not 42.0. */
static void bind_number(sqlite3_stmt *st, int i, double x)
{
    if (x >= -9223372036854775808.0 && x < 9223372036854775808.0) {
        sqlite3_int64 v = (sqlite3_int64)x;
        if ((double)v == x) {
            sqlite3_bind_int64(st, i, v);
            return;
        }
    }
    sqlite3_bind_double(st, i, x);
}

static void bind_record(sqlite3_stmt *st, const struct bucket_msg *m, const struct record *r)
{
    sqlite3_bind_text(st, 1, m->serial, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->variable, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, type_name(r->type), -1, SQLITE_STATIC);
    switch (r->type) {
    case RECORD_NUMBER:
        bind_number(st, 4, r->number);
        break;
    case RECORD_STRING:
        sqlite3_bind_text64(st, 4, r->string ? r->string : "", r->string ? r->string_len : 0,
                            SQLITE_STATIC, SQLITE_UTF8);
        break;
    case RECORD_BOOLEAN:
        sqlite3_bind_int(st, 4, r->boolean ? 1 : 0);
        break;
    case RECORD_NONE:
        sqlite3_bind_null(st, 4);
        break;
    }
    bind_text(st, 5, r->unit);
    sqlite3_bind_int64(st, 6, r->has_time ? r->time_ms : m->received_ms);
    bind_text(st, 7, r->group);
    if (r->has_location) {
        sqlite3_bind_double(st, 8, r->lat);
        sqlite3_bind_double(st, 9, r->lng);
    }
    if (r->has_location && r->has_alt)
        sqlite3_bind_double(st, 10, r->alt);
    bind_text(st, 11, r->metadata);
    sqlite3_bind_int64(st, 12, m->received_ms);
}

int bucket_insert(struct bucket *b, const struct bucket_msg *m, const struct record *r, size_t n,
                  char *err, size_t errlen)
{
    char why[256];

    if (!m->serial) {
        set_err(err, errlen, "records without a device");
        return SP_ERR_INVAL;
    }
    for (size_t i = 0; i < n; i++) {
        /* Unbound parameters are NULL: run() clears bindings every time. */
        bind_record(b->st[ST_DATA_INSERT], m, &r[i]);
        if (run(b, ST_DATA_INSERT, why, sizeof why)) {
            set_err(err, errlen, "record %zu (%s): %s", i, r[i].variable ? r[i].variable : "?",
                    why);
            int primary = b->last_rc & 0xff;
            return primary == SQLITE_CONSTRAINT || primary == SQLITE_TOOBIG ||
                           primary == SQLITE_MISMATCH
                       ? SP_ERR_PAYLOAD
                       : SP_ERR_DB;
        }
    }
    return SP_OK;
}

int bucket_dead(struct bucket *b, const struct bucket_msg *m, const char *reason,
                const char *detail, const uint8_t *payload, size_t len)
{
    sqlite3_stmt *st = b->st[ST_DEAD_INSERT];

    sqlite3_bind_int64(st, 1, m->received_ms);
    bind_text(st, 2, m->topic);
    bind_text(st, 3, m->serial);
    sqlite3_bind_text(st, 4, reason ? reason : "unknown", -1, SQLITE_STATIC);
    bind_text(st, 5, detail);
    /* A non-NULL pointer keeps an empty payload a zero-length BLOB. */
    sqlite3_bind_blob64(st, 6, payload && len ? (const void *)payload : "", len, SQLITE_STATIC);
    if (m->one_of_a_kind)
        sqlite3_bind_blob(st, 7, m->digest, BUCKET_DIGEST_LEN, SQLITE_STATIC);
    return run(b, ST_DEAD_INSERT, NULL, 0);
}

int bucket_key_used(struct bucket *b, const char *serial, const uint8_t *key_id)
{
    enum stmt_id which = key_id ? ST_KEY_USED : ST_KEY_CURRENT;
    sqlite3_stmt *st = b->st[which];

    if (!key_id && !b->key_use)
        return SP_OK;
    b->key_use |= key_id != NULL;
    bind_text(st, 1, serial);
    if (key_id) {
        sqlite3_bind_blob(st, 2, key_id, BUCKET_KEY_ID_LEN, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, clock_wall_ms());
    }
    return run(b, which, NULL, 0);
}

int bucket_key_last(struct bucket *b, const char *serial, uint8_t key_id[BUCKET_KEY_ID_LEN])
{
    sqlite3_stmt *st = b->st[ST_KEY_LAST];
    int rc = SP_ERR_NOTFOUND;

    if (!b->key_use)
        return rc;
    bind_text(st, 1, serial);
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW && sqlite3_column_bytes(st, 0) == BUCKET_KEY_ID_LEN) {
        memcpy(key_id, sqlite3_column_blob(st, 0), BUCKET_KEY_ID_LEN);
        rc = SP_OK;
    } else if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = SP_ERR_DB;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* Reserves the next DOWN_RANGE counters of a key: *e covers them. */
static int down_reserve(struct bucket *b, const uint8_t key_id[8], struct down_entry *e)
{
    sqlite3_stmt *st = b->st[ST_DOWN_RESERVE];

    sqlite3_bind_blob(st, 1, key_id, 8, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, e->next);
    sqlite3_bind_int64(st, 3, DOWN_RANGE);
    int rc = sqlite3_step(st);
    int64_t top = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_ROW)
        return SP_ERR_DB;
    if (top - DOWN_RANGE >= (int64_t)UINT32_MAX)
        return SP_ERR_REPLAY; /* every counter of this key is used: rotate it */
    e->next = (uint32_t)(top - DOWN_RANGE);
    e->top = top > (int64_t)UINT32_MAX ? UINT32_MAX : (uint32_t)top;
    e->gen = b->down_gen;
    return SP_OK;
}

int bucket_downlink_counter(struct bucket *b, const uint8_t key_id[8], uint32_t *out)
{
    struct down_entry *e, one;
    uint64_t h;
    void *added;
    int rc;

    /* The key id is already a hash: its bytes are the table's hash. */
    memcpy(&h, key_id, sizeof h);
    if ((e = keytab_find(&b->down, h, key_id)) == NULL) {
        if (keytab_full(&b->down))
            keytab_clear(&b->down);
        e = keytab_put(&b->down, h, key_id, &added) == KEYTAB_ADDED ? added : &one;
        e->next = e->top = 0;
    }
    if (e->next == e->top && (rc = down_reserve(b, key_id, e)) != SP_OK) {
        if (e != &one)
            keytab_delete(&b->down, e);
        return rc;
    }
    *out = ++e->next;
    return SP_OK;
}

/* Copies column i into the arena; *out stays NULL for SQL NULL. */
const char *bucket__text(sqlite3_stmt *st, int i, struct arena *a, int *bad)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    char *c = s ? arena_strdup(a, (const char *)s) : NULL;

    if (s && !c && bad)
        *bad = 1;
    return c;
}

static int column_dup(sqlite3_stmt *st, int i, struct arena *a, const char **out, size_t *len)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    size_t n = (size_t)sqlite3_column_bytes(st, i);

    *out = NULL;
    if (len)
        *len = 0;
    if (!s)
        return sqlite3_column_type(st, i) == SQLITE_NULL ? SP_OK : SP_ERR_NOMEM;
    *out = arena_strndup(a, s, n);
    if (!*out)
        return SP_ERR_NOMEM;
    if (len)
        *len = n;
    return SP_OK;
}

static enum record_type type_parse(const char *s)
{
    if (!s)
        return RECORD_NONE;
    if (strcmp(s, "number") == 0)
        return RECORD_NUMBER;
    if (strcmp(s, "string") == 0)
        return RECORD_STRING;
    if (strcmp(s, "boolean") == 0)
        return RECORD_BOOLEAN;
    return RECORD_NONE;
}

/* Copies a data row into r (bucket_internal.h); also dataquery.c's reader. */
int bucket__row_record(sqlite3_stmt *st, const char *variable, struct arena *a, struct record *r)
{
    memset(r, 0, sizeof(*r));
    r->type = type_parse((const char *)sqlite3_column_text(st, 0));
    switch (r->type) {
    case RECORD_NUMBER:
        r->number = sqlite3_column_double(st, 1); /* converts INTEGER too */
        break;
    case RECORD_STRING:
        if (column_dup(st, 1, a, &r->string, &r->string_len))
            return SP_ERR_NOMEM;
        break;
    case RECORD_BOOLEAN:
        r->boolean = sqlite3_column_int64(st, 1) != 0;
        break;
    case RECORD_NONE:
        break;
    }
    r->has_time = 1;
    r->time_ms = sqlite3_column_int64(st, 3);
    if (sqlite3_column_type(st, 5) != SQLITE_NULL && sqlite3_column_type(st, 6) != SQLITE_NULL) {
        r->has_location = 1;
        r->lat = sqlite3_column_double(st, 5);
        r->lng = sqlite3_column_double(st, 6);
        if (sqlite3_column_type(st, 7) != SQLITE_NULL) {
            r->has_alt = 1;
            r->alt = sqlite3_column_double(st, 7);
        }
    }
    if (variable)
        r->variable = arena_strdup(a, variable);
    else if (column_dup(st, 9, a, &r->variable, NULL))
        return SP_ERR_NOMEM;
    if (!r->variable || column_dup(st, 2, a, &r->unit, NULL) ||
        column_dup(st, 4, a, &r->group, NULL) || column_dup(st, 8, a, &r->metadata, NULL))
        return SP_ERR_NOMEM;
    return SP_OK;
}

int bucket_latest(struct bucket *b, const char *serial, const char *variable, struct arena *a,
                  struct record *out)
{
    sqlite3_stmt *st = b->st[ST_LATEST];
    int rc;

    sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, variable, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        rc = bucket__row_record(st, variable, a, out);
    else
        rc = rc == SQLITE_DONE ? SP_ERR_NOTFOUND : SP_ERR_DB;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

int bucket_query(struct bucket *b, const char *serial, const char *variable, int64_t start_ms,
                 int64_t stop_ms, size_t qty, struct arena *a, struct record_vec *out)
{
    sqlite3_stmt *st = b->st[ST_QUERY];
    int rc;

    sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
    bind_text(st, 2, variable);
    sqlite3_bind_int64(st, 3, start_ms);
    sqlite3_bind_int64(st, 4, stop_ms);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)qty);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct record *r = record_vec_push(a, out);
        if (!r || bucket__row_record(st, NULL, a, r)) {
            rc = SP_ERR_NOMEM;
            break;
        }
    }
    rc = rc == SQLITE_DONE ? SP_OK : rc == SP_ERR_NOMEM ? SP_ERR_NOMEM : SP_ERR_DB;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* ---- messages of a cut batch (the deferred table) ------------------------- */

int bucket_defer(struct bucket *b, const struct bucket_deferred *d, int64_t *id)
{
    sqlite3_stmt *st = b->st[ST_DEFER];

    assert(b->in_batch);
    bind_text(st, 1, d->topic);
    sqlite3_bind_blob(st, 2, d->payload, (int)d->len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)d->full_len);
    sqlite3_bind_int(st, 4, d->qos);
    sqlite3_bind_int(st, 5, d->retain);
    bind_text(st, 6, d->publisher);
    sqlite3_bind_int(st, 7, d->hops);
    int rc = run(b, ST_DEFER, NULL, 0);
    *id = rc ? 0 : (int64_t)sqlite3_last_insert_rowid(b->db);
    return rc;
}

int bucket_deferred_last(struct bucket *b, int64_t *id)
{
    sqlite3_stmt *st = b->st[ST_DEFERRED_LAST];
    int rc = sqlite3_step(st);

    *id = rc == SQLITE_ROW ? (int64_t)sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? SP_OK : SP_ERR_DB;
}

int bucket_deferred_take(struct bucket *b, struct arena *a, struct bucket_deferred *out, size_t max,
                         int64_t after, int64_t upto, size_t *n)
{
    sqlite3_stmt *st = b->st[ST_DEFERRED];
    int rc = SQLITE_DONE; /* max == 0 reads nothing */

    *n = 0;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)max);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)after);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)upto);
    while (*n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct bucket_deferred *d = &out[*n];
        const void *p = sqlite3_column_blob(st, 2);
        d->id = sqlite3_column_int64(st, 0);
        d->len = (size_t)sqlite3_column_bytes(st, 2);
        d->full_len = (size_t)sqlite3_column_int64(st, 3);
        d->qos = sqlite3_column_int(st, 4);
        d->retain = sqlite3_column_int(st, 5);
        d->hops = sqlite3_column_int(st, 7);
        char *payload = arena_alloc(a, d->len + 1);
        if (!payload || column_dup(st, 1, a, &d->topic, NULL) || !d->topic ||
            column_dup(st, 6, a, &d->publisher, NULL)) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (d->len)
            memcpy(payload, p, d->len);
        payload[d->len] = '\0';
        d->payload = (const uint8_t *)payload;
        (*n)++;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc == SQLITE_NOMEM)
        return SP_ERR_NOMEM;
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

int bucket_deferred_done(struct bucket *b, int64_t id)
{
    assert(b->in_batch);
    sqlite3_bind_int64(b->st[ST_DEFERRED_DONE], 1, id);
    return run(b, ST_DEFERRED_DONE, NULL, 0);
}

/* ---- commands for devices ------------------------------------------------ */

int bucket_command_queue(struct bucket *b, const char *serial, const char *command, int sealed,
                         int64_t *id)
{
    sqlite3_stmt *st = b->st[ST_CMD_QUEUE];

    bind_text(st, 1, serial);
    bind_text(st, 2, command);
    sqlite3_bind_int(st, 3, sealed ? 1 : 0);
    sqlite3_bind_int64(st, 4, clock_wall_ms());
    if (run(b, ST_CMD_QUEUE, NULL, 0))
        return SP_ERR_DB;
    *id = sqlite3_last_insert_rowid(b->db);
    return SP_OK;
}

/* See bucket_internal.h. */
int bucket__read_commands(sqlite3_stmt *st, struct arena *a, struct bucket_command *out, size_t max,
                          size_t *n)
{
    int rc = SQLITE_DONE; /* max == 0 reads nothing */

    *n = 0;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)max);
    while (*n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct bucket_command *c = &out[*n];
        const void *p = sqlite3_column_blob(st, 4);
        c->id = sqlite3_column_int64(st, 0);
        c->sealed = sqlite3_column_int(st, 3);
        c->payload_len = (size_t)sqlite3_column_bytes(st, 4);
        c->payload = p ? arena_alloc(a, c->payload_len ? c->payload_len : 1) : NULL;
        if ((p && !c->payload) || column_dup(st, 1, a, &c->serial, NULL) ||
            column_dup(st, 2, a, &c->command, NULL) || !c->serial || !c->command) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (p)
            memcpy(c->payload, p, c->payload_len);
        (*n)++;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc == SQLITE_NOMEM)
        return SP_ERR_NOMEM; /* as bucket_deferred_take: the arena is full, not the database */
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

int bucket_commands_pending(struct bucket *b, struct arena *a, struct bucket_command *out,
                            size_t max, size_t *n)
{
    return bucket__read_commands(b->st[ST_CMD_PENDING], a, out, max, n);
}

int bucket_command_update(struct bucket *b, int64_t id, const uint8_t *payload, size_t len,
                          int64_t sent_ms, const char *error)
{
    enum stmt_id which = payload ? ST_CMD_PAYLOAD : error ? ST_CMD_FAILED : ST_CMD_SENT;
    sqlite3_stmt *st = b->st[which];

    sqlite3_bind_int64(st, 1, id);
    if (payload)
        sqlite3_bind_blob(st, 2, payload, (int)len, SQLITE_STATIC);
    else if (error)
        bind_text(st, 2, error);
    else
        sqlite3_bind_int64(st, 2, sent_ms);
    return run(b, which, NULL, 0);
}
