/*
 * deadletters.c - the dead_letters table for the operator and its retry
 * requests (see deadletters.h): statements on the daemon's bucket
 * connection, or on a connection of the command line's own.
 */
#include "deadletters.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/errors.h"
#include "bucket_internal.h"
#include "datadir.h"
#include "outbox.h"

extern const char sp_schema_bucket[]; /* schemas/bucket.sql, embedded by CMake */

#define DL_BUSY_MS 10000 /* how long the command line waits for the daemon's write lock */

enum {
    DS_LIST,
    DS_GET,
    DS_BY_REASON,
    DS_REQUEST,
    DS_PENDING,
    DS_TAKE,
    DS_UNREQUEST,
    DS_STORED,
    DS_FAILED,
    DS_TWINS_UNREQUEST,
    DS_TWINS,
    DS_BEGIN,
    DS_COMMIT,
    DS_ROLLBACK,
    DS_COUNT
};

/* The columns of struct dead_letter, as read_row() takes them; a database
 * the daemon has not upgraded yet has neither retries nor first_reason. */
#define COLS(payload)                                                                              \
    "id, received_at, topic, device, reason, detail, " payload ", retries, first_reason"
#define COLS_OLD(payload) "id, received_at, topic, device, reason, detail, " payload ", 0, NULL"
/* A listing leaves the payloads out (their sizes stay): a selection may be large. */
#define LIST_SQL(cols)                                                                             \
    "SELECT " cols ", length(payload) FROM dead_letters WHERE (?1 IS NULL OR reason = ?1)"         \
    " AND (?2 IS NULL OR device = ?2) AND received_at >= ?3 ORDER BY id DESC LIMIT ?4"
#define GET_SQL(cols) "SELECT " cols ", length(payload) FROM dead_letters WHERE id = ?1"

static const char *const ds_sql[DS_COUNT] = {
    [DS_LIST] = LIST_SQL(COLS("NULL")),
    [DS_GET] = GET_SQL(COLS("payload")),
    [DS_REQUEST] = "INSERT INTO dead_letter_retries (dead_letter_id, requested_at, force)"
                   " VALUES (?1, ?2, ?3) ON CONFLICT (dead_letter_id)"
                   " DO UPDATE SET force = max(force, excluded.force)",
    [DS_PENDING] = "SELECT 1 FROM dead_letter_retries WHERE dead_letter_id = ?1",
    [DS_BY_REASON] = "SELECT reason, count(*) FROM dead_letters GROUP BY reason ORDER BY reason",
    /* A request whose dead letter is gone comes back with a NULL id. */
    [DS_TAKE] = "SELECT d.id, d.received_at, d.topic, d.device, d.reason, d.detail, d.payload,"
                " d.retries, d.first_reason, length(d.payload), r.force, r.dead_letter_id, d.digest"
                " FROM dead_letter_retries r LEFT JOIN dead_letters d ON d.id = r.dead_letter_id"
                " ORDER BY r.requested_at, r.dead_letter_id LIMIT ?1",
    [DS_UNREQUEST] = "DELETE FROM dead_letter_retries WHERE dead_letter_id = ?1",
    [DS_STORED] = "DELETE FROM dead_letters WHERE id = ?1",
    /* SET's right-hand sides read the row as it was: first_reason takes the old reason. */
    [DS_FAILED] = "UPDATE dead_letters SET reason = ?2, detail = ?3, device = coalesce(?4, device),"
                  " retries = retries + 1, first_reason = coalesce(first_reason, reason)"
                  " WHERE id = ?1",
    /* The other dead letters of the same one-of-a-kind bytes (a NULL digest
     * equals nothing), and their requests, first. */
    [DS_TWINS_UNREQUEST] = "DELETE FROM dead_letter_retries WHERE dead_letter_id IN"
                           " (SELECT t.id FROM dead_letters d JOIN dead_letters t"
                           " ON t.digest = d.digest WHERE d.id = ?1 AND t.id <> ?1)",
    [DS_TWINS] = "DELETE FROM dead_letters WHERE digest = (SELECT digest FROM dead_letters"
                 " WHERE id = ?1) AND id <> ?1",
    [DS_BEGIN] = "BEGIN IMMEDIATE",
    [DS_COMMIT] = "COMMIT",
    [DS_ROLLBACK] = "ROLLBACK",
};

/* The statements a read-only connection prepares (the others need tables
 * or columns a daemon of this version adds). */
#define DS_READ_ONLY 3

struct deadletters {
    sqlite3 *own; /* the command line's connection; NULL: the bucket's */
    sqlite3_stmt *st[DS_COUNT];
};

/* 1 if dead_letters has column name, 0, or SP_ERR_DB. */
static int has_column(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info('dead_letters') WHERE name = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return SP_ERR_DB;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : SP_ERR_DB;
}

/* Adds column name (with its SQL type) to dead_letters when it is missing. */
static int add_column(sqlite3 *db, const char *name, const char *type)
{
    char sql[160];
    int rc = has_column(db, name);

    if (rc != 0)
        return rc < 0 ? rc : SP_OK;
    snprintf(sql, sizeof(sql), "ALTER TABLE dead_letters ADD COLUMN %s %s", name, type);
    return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? SP_OK : SP_ERR_DB;
}

/* The columns and the index older versions did not make (bucket_internal.h). */
int deadletters__upgrade(sqlite3 *db)
{
    if (add_column(db, "retries", "INTEGER NOT NULL DEFAULT 0") ||
        add_column(db, "first_reason", "TEXT") || add_column(db, "digest", "BLOB"))
        return SP_ERR_DB;
    return sqlite3_exec(db,
                        "CREATE INDEX IF NOT EXISTS dead_letters_digest ON dead_letters (digest)"
                        " WHERE digest IS NOT NULL",
                        NULL, NULL, NULL) == SQLITE_OK
               ? SP_OK
               : SP_ERR_DB;
}

int deadletters_open(struct bucket *b, struct deadletters **out)
{
    struct deadletters *d = calloc(1, sizeof(*d));

    if (!d)
        return SP_ERR_NOMEM;
    /* bucket_open upgraded the table (deadletters__upgrade). */
    if (bucket__prepare(b, ds_sql, d->st, DS_COUNT)) {
        free(d);
        return SP_ERR_DB;
    }
    *out = d;
    return SP_OK;
}

/* Prepares the statements of a command-line connection. */
static int prepare_own(struct deadletters *d, int writable, char *err, size_t errlen)
{
    int old = writable ? 0 : has_column(d->own, "first_reason");

    if (old < 0) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(d->own));
        return SP_ERR_DB;
    }
    /* No column at all: the bucket's tables are made by the daemon's first start. */
    if (!writable && old == 0 && has_column(d->own, "id") == 0) {
        snprintf(err, errlen, "no dead letters: the daemon has never run on this data directory");
        return SP_ERR_DB;
    }
    const char *sql[DS_COUNT];
    memcpy(sql, ds_sql, sizeof(sql));
    if (!writable && old == 0) {
        sql[DS_LIST] = LIST_SQL(COLS_OLD("NULL"));
        sql[DS_GET] = GET_SQL(COLS_OLD("payload"));
    }
    for (int i = 0; i < (writable ? DS_COUNT : DS_READ_ONLY); i++) {
        if (sqlite3_prepare_v2(d->own, sql[i], -1, &d->st[i], NULL) != SQLITE_OK) {
            snprintf(err, errlen, "%s", sqlite3_errmsg(d->own));
            return SP_ERR_DB;
        }
    }
    return SP_OK;
}

int deadletters_open_file(const char *data_dir, int writable, struct deadletters **out, char *err,
                          size_t errlen)
{
    struct deadletters *d = calloc(1, sizeof(*d));
    char path[4096];
    int flags = writable ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY;

    if (!d)
        return SP_ERR_NOMEM;
    snprintf(path, sizeof(path), "%s/%s", data_dir, DATADIR_DB);
    if (sqlite3_open_v2(path, &d->own, flags, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, d->own ? sqlite3_errmsg(d->own) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(d->own, DL_BUSY_MS);
    if (writable && (sqlite3_exec(d->own, sp_schema_bucket, NULL, NULL, NULL) != SQLITE_OK ||
                     deadletters__upgrade(d->own))) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(d->own));
        goto fail;
    }
    if (prepare_own(d, writable, err, errlen))
        goto fail;
    *out = d;
    return SP_OK;
fail:
    deadletters_close(d);
    return SP_ERR_DB;
}

void deadletters_close(struct deadletters *d)
{
    if (!d)
        return;
    bucket__finalize(d->st, DS_COUNT);
    sqlite3_close(d->own);
    free(d);
}

/* ---- the rule ----------------------------------------------------------- */

/* 1 if topic is TagoTiP's: $tip and $tips (a whole frame or envelope) and their levels. */
static int tip_topic(const char *t)
{
    return strcmp(t, "$tip") == 0 || strcmp(t, "$tips") == 0 || strncmp(t, "$tip/", 5) == 0 ||
           strncmp(t, "$tips/", 6) == 0;
}

/* 1 if a message on topic proves its sender in its own bytes, checked again
 * when it is retried: a whole frame (its auth hash) or an envelope (its key). */
static int carries_credentials(const char *t)
{
    return strcmp(t, "$tip") == 0 || strcmp(t, "$tips") == 0 || strncmp(t, "$tips/", 6) == 0;
}

/* 1 if dl is a webhook() request that could not be delivered (outbox.h). */
static int is_webhook(const struct dead_letter *dl)
{
    return strcmp(dl->reason, OUTBOX_REASON) == 0 && dl->topic &&
           strncmp(dl->topic, OUTBOX_TOPIC_PREFIX, strlen(OUTBOX_TOPIC_PREFIX)) == 0;
}

const char *deadletters_why_not(const struct dead_letter *dl, int force)
{
    const char *topic = dl->topic ? dl->topic : "";
    size_t n = strlen(topic);

    if (is_webhook(dl)) /* not a message: its request goes back to the outbox */
        return NULL;
    if (strcmp(dl->reason, "too_large") == 0)
        return "only the head of its payload was kept";
    if (strcmp(dl->reason, "replay") == 0 && !force)
        return "a replay may be a copy of an envelope that was stored; retry it with --force "
               "only if you know it was not";
    if (tip_topic(topic) && n > 5 && strcmp(topic + n - 5, "/pull") == 0)
        return "a PULL asks for an answer and has nothing to store";
    /* Without a device, the topic would name one: on $tip/<serial>/... a
     * profile context may publish for serials no device has (yet), and
     * elsewhere the stamp of the publisher is lost, except for no_route,
     * which records it whenever there was one. */
    if (!dl->device && !carries_credentials(topic) && strcmp(dl->reason, "no_route") != 0)
        return "it does not record which device published it";
    return NULL;
}

/* ---- reading ------------------------------------------------------------ */

/* The row st stands on (the columns of COLS, then the payload's size) into
 * *dl, with a copy of the payload unless listed. 0 or SP_ERR_NOMEM. */
static int read_row(sqlite3_stmt *st, struct arena *a, struct dead_letter *dl, int listed)
{
    const void *p = sqlite3_column_blob(st, 6);
    size_t len = (size_t)sqlite3_column_bytes(st, 6);
    uint8_t *copy = listed ? NULL : arena_alloc(a, len + 1);

    if (!listed && !copy)
        return SP_ERR_NOMEM;
    if (copy) {
        if (len)
            memcpy(copy, p, len);
        copy[len] = 0;
    }
    *dl = (struct dead_letter){.id = sqlite3_column_int64(st, 0),
                               .received_ms = sqlite3_column_int64(st, 1),
                               .topic = bucket__text(st, 2, a, NULL),
                               .device = bucket__text(st, 3, a, NULL),
                               .reason = bucket__text(st, 4, a, NULL),
                               .detail = bucket__text(st, 5, a, NULL),
                               .payload = copy,
                               .len = (size_t)sqlite3_column_int64(st, 9),
                               .retries = sqlite3_column_int(st, 7),
                               .first_reason = bucket__text(st, 8, a, NULL)};
    if (!dl->reason)
        dl->reason = "";
    return SP_OK;
}

/* Steps st into a growing array of rows (in a). */
static int read_rows(sqlite3_stmt *st, struct arena *a, struct dead_letter **out, size_t *n)
{
    struct dead_letter *v = NULL;
    size_t cap = 0, k = 0;
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (k == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct dead_letter *nv = arena_alloc(a, ncap * sizeof(*nv));
            if (!nv) {
                rc = SQLITE_NOMEM;
                break;
            }
            if (k)
                memcpy(nv, v, k * sizeof(*v));
            v = nv;
            cap = ncap;
        }
        if (read_row(st, a, &v[k], 1)) {
            rc = SQLITE_NOMEM;
            break;
        }
        k++;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        return rc == SQLITE_NOMEM ? SP_ERR_NOMEM : SP_ERR_DB;
    *out = v;
    *n = k;
    return SP_OK;
}

int deadletters_list(struct deadletters *d, const struct deadletters_filter *f, struct arena *a,
                     struct dead_letter **out, size_t *n)
{
    sqlite3_stmt *st = d->st[DS_LIST];

    if (f->reason)
        sqlite3_bind_text(st, 1, f->reason, -1, SQLITE_STATIC);
    if (f->device)
        sqlite3_bind_text(st, 2, f->device, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, f->since_ms);
    sqlite3_bind_int64(st, 4, f->limit > 0 ? f->limit : -1);
    return read_rows(st, a, out, n);
}

int deadletters_by_reason(struct deadletters *d, struct arena *a, struct dead_letter_count *out,
                          size_t max, size_t *n)
{
    sqlite3_stmt *st = d->st[DS_BY_REASON];
    int rc;

    *n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < max) {
        const char *reason = (const char *)sqlite3_column_text(st, 0);

        out[*n].reason = arena_strdup(a, reason ? reason : "");
        out[*n].n = sqlite3_column_int64(st, 1);
        if (!out[*n].reason) {
            rc = SQLITE_NOMEM;
            break;
        }
        (*n)++;
    }
    sqlite3_reset(st);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW)
        return SP_OK;
    return rc == SQLITE_NOMEM ? SP_ERR_NOMEM : SP_ERR_DB;
}

int deadletters_get(struct deadletters *d, int64_t id, struct arena *a, struct dead_letter *out)
{
    sqlite3_stmt *st = d->st[DS_GET];
    int rc;

    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        rc = read_row(st, a, out, 0) ? SQLITE_NOMEM : SQLITE_ROW;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc == SQLITE_ROW)
        return SP_OK;
    return rc == SQLITE_DONE ? SP_ERR_NOTFOUND : rc == SQLITE_NOMEM ? SP_ERR_NOMEM : SP_ERR_DB;
}

/* ---- requests ----------------------------------------------------------- */

static int step_done(sqlite3_stmt *st)
{
    return st && bucket__step_once(st) == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

int deadletters_begin(struct deadletters *d)
{
    return step_done(d->st[DS_BEGIN]);
}

int deadletters_commit(struct deadletters *d)
{
    return step_done(d->st[DS_COMMIT]);
}

void deadletters_rollback(struct deadletters *d)
{
    (void)step_done(d->st[DS_ROLLBACK]);
}

int deadletters_request(struct deadletters *d, int64_t id, int force, int64_t now_ms)
{
    sqlite3_stmt *st = d->st[DS_REQUEST];
    /* A webhook's request goes back to its outbox now: it is no message. */
    int rc = outbox__requeue(sqlite3_db_handle(st), id, now_ms);

    if (rc != 0)
        return rc < 0 ? rc : SP_OK;

    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, now_ms);
    sqlite3_bind_int(st, 3, !!force);
    return step_done(st);
}

int deadletters_pending(struct deadletters *d, int64_t id)
{
    sqlite3_stmt *st = d->st[DS_PENDING];
    int rc;

    sqlite3_bind_int64(st, 1, id);
    rc = bucket__step_once(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : SP_ERR_DB;
}

static int unrequest(struct deadletters *d, int64_t id)
{
    sqlite3_bind_int64(d->st[DS_UNREQUEST], 1, id);
    return step_done(d->st[DS_UNREQUEST]);
}

/* Column i of st, a digest or NULL, into dl. */
static void read_digest(sqlite3_stmt *st, int i, struct dead_letter *dl)
{
    dl->has_digest = sqlite3_column_bytes(st, i) == BUCKET_DIGEST_LEN;
    if (dl->has_digest)
        memcpy(dl->digest, sqlite3_column_blob(st, i), BUCKET_DIGEST_LEN);
}

/* 1 if one of out[0..k) has out[k]'s digest. */
static int twin_taken(const struct dead_letter *out, size_t k)
{
    for (size_t i = 0; i < k && out[k].has_digest; i++)
        if (out[i].has_digest && memcmp(out[i].digest, out[k].digest, BUCKET_DIGEST_LEN) == 0)
            return 1;
    return 0;
}

int deadletters_take(struct deadletters *d, struct arena *a, struct dead_letter *out, size_t max,
                     size_t *n)
{
    sqlite3_stmt *st = d->st[DS_TAKE];
    int64_t drop[64], hooks[64];
    size_t k = 0, ndrop = 0, nhooks = 0;
    int rc = SQLITE_DONE;

    sqlite3_bind_int64(st, 1, (int64_t)max);
    while (k < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        int gone = sqlite3_column_type(st, 0) == SQLITE_NULL;
        if (!gone && read_row(st, a, &out[k], 0)) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (!gone) {
            out[k].force = sqlite3_column_int(st, 10);
            read_digest(st, 12, &out[k]);
            /* Never run as a message: put back into the outbox below. */
            if (is_webhook(&out[k])) {
                if (nhooks < sizeof(hooks) / sizeof(hooks[0]))
                    hooks[nhooks++] = out[k].id;
                continue;
            }
            /* A twin of one taken here waits: storing that one deletes it. */
            if (twin_taken(out, k))
                continue;
        }
        if (gone || deadletters_why_not(&out[k], out[k].force)) {
            if (ndrop < sizeof(drop) / sizeof(drop[0]))
                drop[ndrop++] = sqlite3_column_int64(st, 11);
            continue;
        }
        k++;
    }
    if (k == max)
        rc = SQLITE_DONE;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        return rc == SQLITE_NOMEM ? SP_ERR_NOMEM : SP_ERR_DB;
    /* Outside any batch: these were never messages. */
    for (size_t i = 0; i < ndrop; i++)
        if (unrequest(d, drop[i]))
            return SP_ERR_DB;
    for (size_t i = 0; i < nhooks; i++)
        if (outbox__requeue(sqlite3_db_handle(st), hooks[i], clock_wall_ms()) < 0 &&
            unrequest(d, hooks[i]))
            return SP_ERR_DB;
    *n = k;
    return SP_OK;
}

int deadletters_stored(struct deadletters *d, int64_t id)
{
    for (int i = DS_TWINS_UNREQUEST; i <= DS_TWINS; i++) {
        sqlite3_bind_int64(d->st[i], 1, id);
        if (step_done(d->st[i]))
            return SP_ERR_DB;
    }
    sqlite3_bind_int64(d->st[DS_STORED], 1, id);
    if (step_done(d->st[DS_STORED]))
        return SP_ERR_DB;
    return unrequest(d, id);
}

int deadletters_failed(struct deadletters *d, int64_t id, const char *device, const char *reason,
                       const char *detail)
{
    sqlite3_stmt *st = d->st[DS_FAILED];

    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, reason, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, detail, -1, SQLITE_STATIC);
    if (device)
        sqlite3_bind_text(st, 4, device, -1, SQLITE_STATIC);
    if (step_done(st))
        return SP_ERR_DB;
    return unrequest(d, id);
}
