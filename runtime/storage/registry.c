/*
 * registry.c - profiles, devices, device tokens and encryption keys in
 * <data_dir>/sealpipe.db (see registry.h and schemas/registry.sql). This file
 * opens and closes the registry and holds what the others share: prepared
 * statements, transactions, rows copied into arenas (registry_internal.h).
 * Each table has a file of its own: registry_profiles.c, registry_devices.c,
 * registry_tokens.c and registry_keys.c (with the master key).
 *
 * Called by the CLI (cli_verbs.c) to manage devices and by the daemon to look up
 * tokens and keys. One SQLite connection per struct registry, used from one
 * thread; other processes may use the same database at the same time (WAL,
 * busy timeout), and every change that touches several rows runs in one
 * BEGIN IMMEDIATE transaction.
 *
 * Invariants: no secret is written to the database in the clear. Profile
 * tokens become their TagoTiP auth hash, device tokens their SHA-256, and
 * encryption keys are sealed with XChaCha20-Poly1305 under the master key
 * (<data_dir>/master.key, read or created on first need) with the serial as
 * associated data. Secrets held in memory here (master key, fresh keys and
 * tokens) are wiped with sodium_memzero before their storage is released.
 * Out-parameters are written only on success.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "datadir.h"
#include "base/errors.h"
#include "registry_internal.h"

extern const char sp_schema_registry[]; /* schemas/registry.sql, embedded */

_Static_assert(crypto_hash_sha256_BYTES == REGISTRY_TOKEN_HASH_LEN, "token_hash holds SHA-256");
_Static_assert(REGISTRY_MASTER_LEN == 32, "master.key holds 32 bytes");
_Static_assert(REGISTRY_HASH_LEN == SP_HASH_LEN, "auth and device hashes are the SDK's");
_Static_assert(REGISTRY_MAX_IDENT == SP_MAX_SERIAL, "serials are the SDK's");

static const char *const stmt_sql[ST_COUNT] = {
#define XX(id, sql) [ST_##id] = sql,
    STATEMENTS(XX)
#undef XX
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

void registry__seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* 1-100 characters of [A-Za-z0-9_-]: serials, profile, token and parser
 * names (the SDK's serial rule, TagoTiP.md §13). */
int registry__ident_ok(const char *s)
{
    return s && sp_serial_valid(s, strlen(s));
}
/* ------------------------------------------------------------------------ */
/* Statements and transactions                                              */
/* ------------------------------------------------------------------------ */

/* The prepared statement, reset and ready for binding; NULL on failure. */
sqlite3_stmt *registry__stmt(struct registry *r, enum stmt_id id)
{
    if (!r->st[id] && sqlite3_prepare_v3(r->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                         &r->st[id], NULL) != SQLITE_OK)
        return NULL;
    return r->st[id];
}

void registry__done(sqlite3_stmt *s)
{
    if (s) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
}

static int exec(struct registry *r, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;

    if (sqlite3_exec(r->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        registry__seterr(err, errlen, "%s", msg ? msg : sqlite3_errmsg(r->db));
        sqlite3_free(msg);
        return SP_ERR_DB;
    }
    return SP_OK;
}

int registry__begin(struct registry *r, char *err, size_t errlen)
{
    return exec(r, "BEGIN IMMEDIATE", err, errlen);
}

int registry__commit(struct registry *r, char *err, size_t errlen)
{
    return exec(r, "COMMIT", err, errlen);
}

void registry__rollback(struct registry *r)
{
    if (!sqlite3_get_autocommit(r->db))
        (void)sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
}

int registry__dberr(struct registry *r, char *err, size_t errlen)
{
    registry__seterr(err, errlen, "database: %s", sqlite3_errmsg(r->db));
    return SP_ERR_DB;
}

int registry__step_device(sqlite3_stmt *s)
{
    int step = sqlite3_step(s);

    return step == SQLITE_ROW ? SP_OK : step == SQLITE_DONE ? SP_ERR_NODEVICE : SP_ERR_DB;
}

int registry__step_insert(struct registry *r, sqlite3_stmt *s, int64_t *id, char *err,
                          size_t errlen)
{
    int step = sqlite3_step(s);

    registry__done(s);
    if (step == SQLITE_DONE) {
        if (id)
            *id = sqlite3_last_insert_rowid(r->db);
        return SP_OK;
    }
    if (step == SQLITE_CONSTRAINT)
        return SP_ERR_EXISTS;
    return registry__dberr(r, err, errlen);
}

/* Looks up a device id by serial: 0, SP_ERR_NODEVICE or SP_ERR_DB. */
int registry__device_id(struct registry *r, const char *serial, int64_t *id)
{
    sqlite3_stmt *s = registry__stmt(r, ST_DEVICE_ID);
    int rc;

    if (!s)
        return SP_ERR_DB;
    sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
    if ((rc = registry__step_device(s)) == SP_OK)
        *id = sqlite3_column_int64(s, 0);
    registry__done(s);
    return rc;
}

/*
 * A growable array of fixed-size rows, copied into the caller's arena at the
 * end (the arena cannot grow an allocation). Old storage is wiped because
 * rows may hold keys.
 */
struct vec {
    unsigned char *p;
    size_t n, cap, size;
};

static void *vec_push(struct vec *v)
{
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        unsigned char *p = calloc(cap, v->size);
        if (!p)
            return NULL;
        if (v->p) {
            memcpy(p, v->p, v->n * v->size);
            sodium_memzero(v->p, v->n * v->size);
            free(v->p);
        }
        v->p = p;
        v->cap = cap;
    }
    return v->p + v->n++ * v->size;
}

static void vec_free(struct vec *v)
{
    if (v->p) {
        sodium_memzero(v->p, v->cap * v->size);
        free(v->p);
    }
    v->p = NULL;
    v->n = v->cap = 0;
}

/* Moves the rows into the arena: 0 or SP_ERR_NOMEM. */
static int vec_to_arena(struct vec *v, struct arena *a, void **out, size_t *n)
{
    void *p = NULL;

    if (v->n) {
        p = arena_alloc(a, v->n * v->size);
        if (!p)
            return SP_ERR_NOMEM;
        memcpy(p, v->p, v->n * v->size);
    }
    *out = p;
    *n = v->n;
    return SP_OK;
}

int registry__collect(struct registry *r, sqlite3_stmt *s, size_t size,
                      int (*read_row)(struct registry *r, sqlite3_stmt *s, struct arena *a,
                                      void *row),
                      struct arena *a, void **out, size_t *n)
{
    struct vec v = {.size = size};
    int rc = SP_OK, step;

    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        void *row = vec_push(&v);
        if (!row) {
            rc = SP_ERR_NOMEM;
            goto fail;
        }
        if ((rc = read_row(r, s, a, row)))
            goto fail;
    }
    rc = step == SQLITE_DONE ? vec_to_arena(&v, a, out, n) : SP_ERR_DB;
fail:
    registry__done(s);
    vec_free(&v);
    return rc;
}

/* A text column copied into the arena; NULL columns become NULL. */
int registry__col_text(sqlite3_stmt *s, int col, struct arena *a, const char **out)
{
    const unsigned char *t = sqlite3_column_text(s, col);

    if (!t) {
        *out = NULL;
        return SP_OK;
    }
    *out = arena_strndup(a, (const char *)t, (size_t)sqlite3_column_bytes(s, col));
    return *out ? SP_OK : SP_ERR_NOMEM;
}

int registry__col_hash(sqlite3_stmt *s, int col, uint8_t out[SP_HASH_LEN])
{
    if (sqlite3_column_bytes(s, col) != SP_HASH_LEN)
        return SP_ERR_DB;
    memcpy(out, sqlite3_column_blob(s, col), SP_HASH_LEN);
    return SP_OK;
}

/* Reads a row of DEVICE_SELECT. */
int registry__read_device(sqlite3_stmt *s, struct arena *a, struct device_info *d)
{
    struct device_info v = {0};
    int rc;

    v.id = sqlite3_column_int64(s, 0);
    if ((rc = registry__col_text(s, 1, a, &v.serial)) ||
        (rc = registry__col_text(s, 2, a, &v.name)) ||
        (rc = registry__col_text(s, 3, a, &v.tags_json)) ||
        (rc = registry__col_text(s, 4, a, &v.params_json)) ||
        (rc = registry__col_text(s, 5, a, &v.parser)) ||
        (rc = registry__col_text(s, 6, a, &v.profile)) ||
        (rc = registry__col_hash(s, 10, v.device_hash)) ||
        (rc = registry__col_hash(s, 11, v.auth_hash)))
        return rc;
    v.encryption_required = sqlite3_column_int(s, 7);
    v.counter_mode = sqlite3_column_int(s, 8);
    v.suite = sqlite3_column_type(s, 9) == SQLITE_NULL ? -1 : sqlite3_column_int(s, 9);
    v.created_ms = sqlite3_column_int64(s, 12);
    *d = v;
    return SP_OK;
}

/* ------------------------------------------------------------------------ */
/* Open and close                                                           */
/* ------------------------------------------------------------------------ */

static int schema_check(struct registry *r, char *err, size_t errlen)
{
    sqlite3_stmt *s = registry__stmt(r, ST_SCHEMA_VERSION);
    int rc, version;

    if (!s)
        return registry__dberr(r, err, errlen);
    rc = sqlite3_step(s);
    version = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
    registry__done(s);
    if (rc != SQLITE_ROW)
        return registry__dberr(r, err, errlen);
    if (version > REGISTRY_SCHEMA_VERSION) {
        registry__seterr(
            err, errlen,
            "database registry schema version %d is newer than this sealpipe supports (%d)",
            version, REGISTRY_SCHEMA_VERSION);
        return SP_ERR_DB;
    }
    return SP_OK;
}

int registry_open(const char *data_dir, struct registry **out, char *err, size_t errlen)
{
    struct registry *r;
    char path[4096];
    int rc = SP_ERR_NOMEM;

    if (sodium_init() < 0) {
        registry__seterr(err, errlen, "libsodium failed to initialize");
        return SP_ERR_CRYPTO;
    }
    if ((rc = datadir_ensure(data_dir, err, errlen)))
        return rc;
    if ((size_t)snprintf(path, sizeof path, "%s/" DATADIR_DB, data_dir) >= sizeof path) {
        registry__seterr(err, errlen, "%s: path too long", data_dir);
        return SP_ERR_IO;
    }
    r = calloc(1, sizeof *r);
    if (!r)
        goto fail;
    r->data_dir = strdup(data_dir);
    if (!r->data_dir)
        goto fail_r;
    if (sqlite3_open_v2(path, &r->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        registry__seterr(err, errlen, "%s: %s", path,
                         r->db ? sqlite3_errmsg(r->db) : "cannot open");
        rc = SP_ERR_DB;
        goto fail_db;
    }
    sqlite3_busy_timeout(r->db, 5000);
    if ((rc = exec(r, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;", err, errlen)) ||
        (rc = registry__begin(r, err, errlen)) || (rc = exec(r, sp_schema_registry, err, errlen)) ||
        (rc = registry__commit(r, err, errlen)) || (rc = schema_check(r, err, errlen))) {
        registry__rollback(r);
        goto fail_db;
    }
    *out = r;
    return SP_OK;

fail_db:
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(r->st[i]);
    sqlite3_close(r->db);
    free(r->data_dir);
fail_r:
    free(r);
fail:
    if (rc == SP_ERR_NOMEM)
        registry__seterr(err, errlen, "out of memory");
    return rc;
}

void registry_close(struct registry *r)
{
    if (!r)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(r->st[i]);
    sqlite3_close(r->db);
    sodium_memzero(r->master, sizeof r->master);
    free(r->data_dir);
    free(r);
}

int registry_generation(struct registry *r, int64_t *out)
{
    sqlite3_stmt *s = registry__stmt(r, ST_GENERATION);
    int rc;

    if (!s)
        return SP_ERR_DB;
    rc = sqlite3_step(s);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    registry__done(s);
    return rc == SQLITE_ROW ? SP_OK : SP_ERR_DB;
}
