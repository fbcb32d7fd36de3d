/*
 * devstate.c - device_status counts and replay counters, folded
 * (devstate.h).
 *
 * One table in memory, keyed by serial, holds an entry per device seen since
 * the last fold: what the open batch counted for it, what committed batches
 * did since the fold (the sum of its tallies in device_status_pending), and
 * device_counters' value, read the first time the replay check needs it.
 * The table never grows (min_slots == max_slots), so entries stay put and
 * the open batch keeps pointers to those it touched; a fold empties it.
 */
#include "devstate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/errors.h"
#include "base/keytab.h"
#include "base/log.h"
#include "bucket.h"
#include "bucket_internal.h"
#include "sealpipe.h"
#include "tally.h"

enum {
    ST_STATUS_UPDATE,
    ST_STATUS_INSERT,
    ST_COUNTER_GET,
    ST_COUNTER_SET,
    ST_PENDING_ADD,
    ST_PENDING_READ,
    ST_PENDING_CLEAR,
    ST_COUNT
};

static const char *const devstate_sql[ST_COUNT] = {
    /* A device seen before has its row: a plain UPDATE costs 12 % less than
     * an upsert's failed insert and update (docs/facts.md). A row it did not
     * find is inserted: the open transaction holds the write lock, so no
     * other connection can have made it in between. */
    [ST_STATUS_UPDATE] = "UPDATE device_status SET last_sent = max(coalesce(last_sent, 0), ?2), "
                         "last_stored = coalesce(max(last_stored, ?3), last_stored, ?3), "
                         "messages = messages + ?4, records = records + ?5, "
                         "dead_letters = dead_letters + ?6 WHERE serial = ?1 AND (?7 = 0 OR "
                         "EXISTS (SELECT 1 FROM devices WHERE serial = ?1 AND created_at = ?7))",
    /* A device removed since (`device rm` deletes its rows) gets none again,
     * nor does one added again under its serial (another created_at) get
     * the old one's counts; ?7 = 0: the device is not known. */
    [ST_STATUS_INSERT] = "INSERT INTO device_status (serial, last_sent, last_stored, messages, "
                         "records, dead_letters) SELECT ?1, ?2, ?3, ?4, ?5, ?6 "
                         "WHERE EXISTS (SELECT 1 FROM devices WHERE serial = ?1 "
                         "AND (?7 = 0 OR created_at = ?7))",
    [ST_COUNTER_GET] = "SELECT last_counter FROM device_counters WHERE serial = ?1",
    /* Only for the device the counter was accepted from: one removed and
     * added again under the serial (another created_at) starts over. */
    [ST_COUNTER_SET] = "INSERT INTO device_counters (serial, last_counter, updated_at) "
                       "SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM devices "
                       "WHERE serial = ?1 AND created_at = ?4) ON CONFLICT (serial) DO UPDATE "
                       "SET last_counter = excluded.last_counter, updated_at = excluded.updated_at "
                       "WHERE excluded.last_counter > last_counter",
    [ST_PENDING_ADD] = "INSERT INTO device_status_pending (tallies) VALUES (?1)",
    [ST_PENDING_READ] = "SELECT id, tallies FROM device_status_pending ORDER BY id",
    [ST_PENDING_CLEAR] = "DELETE FROM device_status_pending",
};

/* While batches keep coming, the tallies are folded this often. */
#define FOLD_BUSY_MS 5000

/* device_counters not read yet for the entry. */
#define COUNTER_UNREAD INT64_MIN

struct entry {
    char *serial;          /* the key, malloc'ed */
    int64_t created;       /* the device's created_ms, 0 until known */
    int64_t table_counter; /* device_counters' last_counter, -1: no row, or COUNTER_UNREAD */
    struct tally done;     /* committed since the last fold */
    struct tally batch;    /* the open batch's */
    int touched;           /* in devstate.touched */
};

struct devstate {
    struct bucket *b;
    sqlite3_stmt *st[ST_COUNT];
    struct keytab devs;     /* struct entry by serial */
    struct entry **touched; /* the entries the open batch counted */
    size_t ntouched;
    struct buf row;     /* the open batch's tallies, encoded */
    int row_written;    /* the open batch wrote them */
    int pending;        /* device_status_pending may hold rows */
    int64_t pending_ms; /* clock_mono_ms() when it last went from none to some */
    int batches;        /* rows committed since the last devstate_flush */
};

static int entry_equal(const void *entry, const void *key)
{
    return strcmp(((const struct entry *)entry)->serial, key) == 0;
}

static const struct keytab_type entry_type = {.entry_size = sizeof(struct entry),
                                              .key_equal = entry_equal};

static int64_t larger(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

static void entries_clear(struct devstate *st)
{
    struct entry *e;

    for (size_t i = 0; (e = keytab_next(&st->devs, &i)) != NULL;)
        free(e->serial);
    keytab_clear(&st->devs);
}

/*
 * The entry of serial, made if absent; NULL when there is no room (direct
 * writes then), or when it is another device's: one removed and added again
 * under this serial since the last fold (created differs).
 */
static struct entry *entry_for(struct devstate *st, const char *serial, int64_t created)
{
    size_t n = strlen(serial);
    uint64_t h = keytab_hash(&st->devs, serial, n);
    struct entry *e = keytab_find(&st->devs, h, serial);

    if (!e) {
        char *key = n <= SP_MAX_SERIAL && keytab_count(&st->devs) < DEVSTATE_DEVICES
                        ? strdup(serial)
                        : NULL;
        void *slot;
        if (!key || keytab_put(&st->devs, h, key, &slot) != KEYTAB_ADDED) {
            free(key);
            return NULL;
        }
        e = slot;
        *e = (struct entry){.serial = key,
                            .table_counter = COUNTER_UNREAD,
                            .done = TALLY_NONE(key),
                            .batch = TALLY_NONE(key)};
    }
    if (created && e->created && created != e->created)
        return NULL;
    if (created)
        e->created = created;
    return e;
}

/* ---- the tables --------------------------------------------------------- */

/* device_counters' last_counter of serial into *out, -1 without a row. */
static int read_counter(struct devstate *st, const char *serial, int64_t *out)
{
    sqlite3_stmt *s = st->st[ST_COUNTER_GET];
    int rc;

    sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

/* Runs a status statement for t; the rows it changed, or -1. */
static int run_status(sqlite3_stmt *s, const struct tally *t)
{
    sqlite3_bind_text(s, 1, t->serial, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, t->last_sent);
    if (t->last_stored)
        sqlite3_bind_int64(s, 3, t->last_stored);
    else
        sqlite3_bind_null(s, 3);
    sqlite3_bind_int64(s, 4, t->messages);
    sqlite3_bind_int64(s, 5, t->records);
    sqlite3_bind_int64(s, 6, t->dead);
    sqlite3_bind_int64(s, 7, t->created);
    int rc = bucket__step_once(s); /* resets s and clears its bindings */
    return rc == SQLITE_DONE ? sqlite3_changes(sqlite3_db_handle(s)) : -1;
}

static int write_counter(struct devstate *st, const struct tally *t)
{
    sqlite3_stmt *s = st->st[ST_COUNTER_SET];

    sqlite3_bind_text(s, 1, t->serial, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, t->counter);
    sqlite3_bind_int64(s, 3, t->last_sent ? t->last_sent : clock_wall_ms());
    sqlite3_bind_int64(s, 4, t->created);
    return bucket__step_once(s) == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

/* Adds t to its device's rows of device_status and device_counters. */
static int write_tally(struct devstate *st, const struct tally *t)
{
    int changed = 0;

    if (t->messages || t->records || t->dead || t->last_sent || t->last_stored) {
        changed = run_status(st->st[ST_STATUS_UPDATE], t);
        if (changed == 0) /* its first row, or a device removed */
            changed = run_status(st->st[ST_STATUS_INSERT], t);
    }
    if (changed < 0)
        return SP_ERR_DB;
    return t->counter >= 0 && t->created ? write_counter(st, t) : SP_OK;
}

/* ---- what is left at start ------------------------------------------------ */

/* One row's tallies written; a damaged one is said, the rest of it skipped. */
static int write_left_row(struct devstate *st, sqlite3_stmt *s)
{
    const unsigned char *p = sqlite3_column_blob(s, 1);
    size_t len = (size_t)sqlite3_column_bytes(s, 1), pos = 0;
    char serial[SP_MAX_SERIAL + 1];
    struct tally t;
    int got = 0, rc = SP_OK;

    while (rc == SP_OK && (got = tally_decode(p, len, &pos, &t, serial)) == 1)
        rc = write_tally(st, &t);
    if (rc == SP_OK && got < 0)
        LOG_WARN("device_status_pending id=%lld damaged at byte %zu of %zu; the device counts "
                 "and replay counters after it are lost",
                 (long long)sqlite3_column_int64(s, 0), pos, len);
    return rc;
}

/* The rows a stopped or crashed daemon left, written and deleted. */
static int fold_left(struct devstate *st, char *err, size_t errlen)
{
    sqlite3_stmt *s = st->st[ST_PENDING_READ];
    int rc, step;

    if ((rc = bucket_begin(st->b)))
        goto out;
    while ((step = sqlite3_step(s)) == SQLITE_ROW && (rc = write_left_row(st, s)) == SP_OK)
        ;
    sqlite3_reset(s);
    if (rc == SP_OK && step != SQLITE_DONE)
        rc = SP_ERR_DB;
    if (rc == SP_OK && bucket__step_once(st->st[ST_PENDING_CLEAR]) != SQLITE_DONE)
        rc = SP_ERR_DB;
    if (rc == SP_OK)
        rc = bucket_commit(st->b);
    if (rc)
        bucket_rollback(st->b);
out:
    if (rc)
        snprintf(err, errlen,
                 "cannot fold device_status_pending into device_status and "
                 "device_counters: %s",
                 errors_strerror(rc));
    return rc;
}

int devstate_open(struct bucket *b, struct devstate **out, char *err, size_t errlen)
{
    struct devstate *st = calloc(1, sizeof(*st));
    int rc = SP_ERR_NOMEM;

    snprintf(err, errlen, "out of memory");
    if (!st)
        return rc;
    st->b = b;
    buf_init(&st->row, SIZE_MAX / 2);
    st->touched = calloc(DEVSTATE_DEVICES, sizeof(*st->touched));
    if (!st->touched ||
        keytab_init(&st->devs, &entry_type, 2 * DEVSTATE_DEVICES, 2 * DEVSTATE_DEVICES))
        goto fail;
    rc = SP_ERR_DB;
    snprintf(err, errlen, "cannot prepare the device state statements");
    if (bucket__prepare(b, devstate_sql, st->st, ST_COUNT) || (rc = fold_left(st, err, errlen)))
        goto fail;
    *out = st;
    return SP_OK;
fail:
    devstate_close(st);
    return rc;
}

void devstate_close(struct devstate *st)
{
    if (!st)
        return;
    bucket__finalize(st->st, ST_COUNT);
    entries_clear(st);
    keytab_cleanup(&st->devs);
    free(st->touched);
    buf_cleanup(&st->row);
    free(st);
}

/* ---- the batch ---------------------------------------------------------- */

int devstate_counter_new(struct devstate *st, const char *serial, int64_t created, uint32_t counter)
{
    struct entry *e = entry_for(st, serial, created);
    int64_t last;

    if (!e) /* written directly: the table knows all */
        return read_counter(st, serial, &last) ? SP_ERR_DB : (int64_t)counter > last;
    if (e->table_counter == COUNTER_UNREAD) {
        /* Kept only once read: a failed read is no "no row". */
        if (read_counter(st, serial, &last))
            return SP_ERR_DB;
        e->table_counter = last;
    }
    last = larger(e->table_counter, larger(e->done.counter, e->batch.counter));
    return (int64_t)counter > last;
}

/* m added to t. */
static void count(struct tally *t, const struct devstate_msg *m)
{
    if (!m->retry) {
        t->messages++;
        t->last_sent = larger(t->last_sent, m->at);
        t->dead += m->dead;
    }
    if (!m->dead && m->records) {
        t->records += (int64_t)m->records;
        t->last_stored = larger(t->last_stored, m->at);
    }
    t->counter = larger(t->counter, m->counter);
}

int devstate_message(struct devstate *st, const struct devstate_msg *m)
{
    struct entry *e;

    if (!m->serial || !*m->serial)
        return SP_OK;
    if (!(e = entry_for(st, m->serial, m->created))) {
        struct tally one = TALLY_NONE(m->serial);
        count(&one, m);
        one.created = m->created;
        return write_tally(st, &one);
    }
    count(&e->batch, m);
    if (!e->touched) {
        e->touched = 1;
        st->touched[st->ntouched++] = e; /* room: one per entry */
    }
    return SP_OK;
}

int devstate_write(struct devstate *st)
{
    sqlite3_stmt *s = st->st[ST_PENDING_ADD];
    int rc = SP_OK;

    if (st->ntouched == 0)
        return SP_OK;
    buf_reset(&st->row);
    for (size_t i = 0; i < st->ntouched && rc == SP_OK; i++) {
        struct entry *e = st->touched[i];
        e->batch.created = e->created;
        rc = tally_encode(&st->row, &e->batch); /* serials are checked: entry_for */
    }
    if (rc)
        return rc;
    sqlite3_bind_blob(s, 1, st->row.p, (int)st->row.len, SQLITE_STATIC);
    if (bucket__step_once(s) != SQLITE_DONE)
        return SP_ERR_DB;
    st->row_written = 1;
    return SP_OK;
}

void devstate_done(struct devstate *st, int committed)
{
    if (!st)
        return;
    for (size_t i = 0; i < st->ntouched; i++) {
        struct entry *e = st->touched[i];
        if (committed && st->row_written)
            tally_add(&e->done, &e->batch);
        e->batch = TALLY_NONE(e->serial);
        e->touched = 0;
    }
    st->ntouched = 0;
    if (committed && st->row_written) {
        if (!st->pending)
            st->pending_ms = clock_mono_ms();
        st->pending = 1;
        st->batches++;
    }
    st->row_written = 0;
}

/* ---- the fold ----------------------------------------------------------- */

/* In the open transaction: every entry's committed tallies into the tables,
 * and the rows deleted. */
static int fold(struct devstate *st)
{
    struct entry *e;
    int rc = SP_OK;

    for (size_t i = 0; rc == SP_OK && (e = keytab_next(&st->devs, &i)) != NULL;) {
        e->done.created = e->created;
        rc = write_tally(st, &e->done);
    }
    if (rc == SP_OK && bucket__step_once(st->st[ST_PENDING_CLEAR]) != SQLITE_DONE)
        rc = SP_ERR_DB;
    return rc;
}

/* Whether this call folds: rows wait and the batches paused since the last
 * call or the oldest row is FOLD_BUSY_MS old; memory is filling; or all. */
static int fold_due(struct devstate *st, int all)
{
    int paused = st->batches == 0;

    st->batches = 0;
    if (keytab_count(&st->devs) >= DEVSTATE_DEVICES / 4 * 3)
        return 1;
    return st->pending && (all || paused || clock_mono_ms() - st->pending_ms >= FOLD_BUSY_MS);
}

int devstate_flush(struct devstate *st, int all)
{
    int rc;

    if (!fold_due(st, all))
        return SP_OK;
    if ((rc = bucket_begin(st->b)))
        return rc;
    if ((rc = fold(st)) == SP_OK)
        rc = bucket_commit(st->b);
    if (rc) {
        bucket_rollback(st->b);
        return rc;
    }
    entries_clear(st);
    st->pending = 0;
    return SP_OK;
}
