/*
 * registry.c - profiles, devices, device tokens and encryption keys in
 * <data_dir>/sealpipe.db (see registry.h and schemas/registry.sql).
 *
 * Called by the CLI (cli.c) to manage devices and by the daemon to look up
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
#include "registry.h"
#include "errors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "datadir.h"
#include "json.h"

extern const char sp_schema_registry[]; /* schemas/registry.sql, embedded */

#define REGISTRY_SCHEMA_VERSION 1
#define REGISTRY_MASTER_LEN     crypto_aead_xchacha20poly1305_ietf_KEYBYTES
#define REGISTRY_NONCE_LEN      crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define REGISTRY_SEAL_LEN       (SP_MAX_KEY_LEN + crypto_aead_xchacha20poly1305_ietf_ABYTES)
#define REGISTRY_MAX_NAME       255         /* bytes of a device's display name */
#define REGISTRY_MAX_JSON       (64 * 1024) /* bytes of tags or params JSON */
#define REGISTRY_TOKEN_LEN      36          /* UUID text form */
#define REGISTRY_PREFIX_LEN     8

_Static_assert(crypto_hash_sha256_BYTES == 32, "token_hash column holds 32 bytes");
_Static_assert(REGISTRY_MASTER_LEN == 32, "master.key holds 32 bytes");

/* Every statement the registry runs, prepared once on first use. */
#define DEVICE_SELECT                                                                              \
    "SELECT d.id, d.serial, d.name, d.tags, d.params, d.parser, p.name,"                           \
    " d.encryption_required, d.counter_mode,"                                                      \
    " (SELECT k.suite FROM device_keys k WHERE k.device_id = d.id AND k.retired_at IS NULL"        \
    "  ORDER BY k.id DESC LIMIT 1),"                                                               \
    " d.device_hash, p.auth_hash, d.created_at"                                                    \
    " FROM devices d JOIN profiles p ON p.id = d.profile_id "

#define STATEMENTS(XX)                                                                             \
    XX(PROFILE_BY_NAME, "SELECT id, auth_hash FROM profiles WHERE name = ?1")                      \
    XX(PROFILE_INSERT, "INSERT INTO profiles (name, auth_hash, created_at) VALUES (?1, ?2, ?3)")   \
    XX(PROFILE_LIST, "SELECT id, name, auth_hash, created_at FROM profiles ORDER BY name")         \
    XX(DEVICE_INSERT, "INSERT INTO devices (serial, device_hash, profile_id, name, tags, params,"  \
                      " parser, encryption_required, counter_mode, created_at)"                    \
                      " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)")                         \
    XX(DEVICE_ID, "SELECT id FROM devices WHERE serial = ?1")                                      \
    XX(DEVICE_GET, DEVICE_SELECT "WHERE d.serial = ?1")                                            \
    XX(DEVICE_BY_ID, DEVICE_SELECT "WHERE d.id = ?1")                                              \
    XX(DEVICE_LIST, DEVICE_SELECT "ORDER BY d.serial")                                             \
    XX(DEVICE_HASHES, "SELECT d.device_hash, p.auth_hash FROM devices d"                           \
                      " JOIN profiles p ON p.id = d.profile_id WHERE d.id = ?1")                   \
    XX(DEVICE_DELETE, "DELETE FROM devices WHERE serial = ?1")                                     \
    XX(COUNTERS_EXIST,                                                                             \
       "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'device_counters'")            \
    XX(COUNTERS_DELETE, "DELETE FROM device_counters WHERE serial = ?1")                           \
    XX(TOKEN_INSERT, "INSERT INTO device_tokens (device_id, name, prefix, token_hash, perm,"       \
                     " expires_at, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")               \
    XX(TOKEN_LIST, "SELECT id, name, prefix, perm, expires_at, revoked_at, created_at"             \
                   " FROM device_tokens WHERE device_id = ?1 ORDER BY id")                         \
    XX(TOKEN_FIND, "SELECT id FROM device_tokens WHERE device_id = ?1"                             \
                   " AND (name = ?2 OR prefix = ?2 OR token_hash = ?3) LIMIT 2")                   \
    XX(TOKEN_REVOKE,                                                                               \
       "UPDATE device_tokens SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1")             \
    XX(TOKEN_CHECK, "SELECT device_id, token_hash, perm, expires_at, revoked_at"                   \
                    " FROM device_tokens WHERE token_hash = ?1")                                   \
    XX(KEY_INSERT, "INSERT INTO device_keys (device_id, suite, nonce, key_enc, created_at)"        \
                   " VALUES (?1, ?2, ?3, ?4, ?5)")                                                 \
    XX(KEY_CURRENT, "SELECT suite FROM device_keys WHERE device_id = ?1 AND retired_at IS NULL"    \
                    " ORDER BY id DESC LIMIT 1")                                                   \
    XX(KEY_RETIRE, "UPDATE device_keys SET retired_at = ?2"                                        \
                   " WHERE device_id = ?1 AND retired_at IS NULL")                                 \
    XX(KEYS_FOR, "SELECT d.id, d.serial, k.suite, k.nonce, k.key_enc, k.retired_at"                \
                 " FROM devices d JOIN profiles p ON p.id = d.profile_id"                          \
                 " JOIN device_keys k ON k.device_id = d.id"                                       \
                 " WHERE p.auth_hash = ?1 AND d.device_hash = ?2"                                  \
                 " AND (k.retired_at IS NULL OR ?3 - k.retired_at < ?4)"                           \
                 " ORDER BY k.retired_at IS NOT NULL, k.id DESC")                                  \
    XX(KEYS_EXIST, "SELECT count(*) FROM device_keys")                                             \
    XX(SCHEMA_VERSION, "SELECT version FROM schema_version WHERE component = 'registry'")          \
    XX(GENERATION, "SELECT n FROM registry_generation WHERE id = 1")

enum stmt_id {
#define XX(id, sql) ST_##id,
    STATEMENTS(XX)
#undef XX
        ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
#define XX(id, sql) [ST_##id] = sql,
    STATEMENTS(XX)
#undef XX
};

struct registry {
    sqlite3 *db;
    char *data_dir;
    sqlite3_stmt *st[ST_COUNT];
    int have_master;
    uint8_t master[REGISTRY_MASTER_LEN];
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 1-100 characters of [A-Za-z0-9_-]: serials, profile, token and parser names. */
static int ident_ok(const char *s)
{
    size_t n = 0;

    if (!s)
        return 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return 0;
        if (n >= SP_MAX_SERIAL)
            return 0;
    }
    return n > 0;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    size_t len, i;
    uint32_t cp;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xc2 && p[0] <= 0xdf)
        len = 2, cp = p[0] & 0x1fu;
    else if (p[0] >= 0xe0 && p[0] <= 0xef)
        len = 3, cp = p[0] & 0x0fu;
    else if (p[0] >= 0xf0 && p[0] <= 0xf4)
        len = 4, cp = p[0] & 0x07u;
    else
        return 0;
    if (len > n)
        return 0;
    for (i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Display names: valid UTF-8 without control characters. */
static int text_ok(const char *s, size_t max)
{
    size_t n = strlen(s), i = 0;

    if (n == 0 || n > max)
        return 0;
    while (i < n) {
        size_t k = utf8_seq((const unsigned char *)s + i, n - i);
        if (k == 0 || (unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
        i += k;
    }
    return 1;
}

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/*
 * Checks that s is one JSON object whose values are all strings, e.g.
 * {"room":"kitchen"}. The registry stores tags and params as given, so they
 * must be right here.
 */
static int json_object_of_strings(const char *s)
{
    size_t n = strlen(s);
    struct arena a;
    struct json *v = NULL;
    char err[128];

    if (n > REGISTRY_MAX_JSON)
        return 0;
    arena_init(&a, 16 * n + 4096); /* a parse node per member, at most */
    int ok = json_parse(&a, s, n, &v, err, sizeof err) == SP_OK && v->type == JSON_OBJECT;
    for (const struct json *m = ok ? v->child : NULL; m; m = m->next)
        ok = ok && m->type == JSON_STRING;
    arena_cleanup(&a);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* Statements and transactions                                              */
/* ------------------------------------------------------------------------ */

/* The prepared statement, reset and ready for binding; NULL on failure. */
static sqlite3_stmt *stmt(struct registry *r, enum stmt_id id)
{
    if (!r->st[id] && sqlite3_prepare_v3(r->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                         &r->st[id], NULL) != SQLITE_OK)
        return NULL;
    return r->st[id];
}

static void done(sqlite3_stmt *s)
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
        seterr(err, errlen, "%s", msg ? msg : sqlite3_errmsg(r->db));
        sqlite3_free(msg);
        return SP_ERR_DB;
    }
    return SP_OK;
}

static int begin(struct registry *r, char *err, size_t errlen)
{
    return exec(r, "BEGIN IMMEDIATE", err, errlen);
}

static int commit(struct registry *r, char *err, size_t errlen)
{
    return exec(r, "COMMIT", err, errlen);
}

static void rollback(struct registry *r)
{
    if (!sqlite3_get_autocommit(r->db))
        (void)sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
}

static int dberr(struct registry *r, char *err, size_t errlen)
{
    seterr(err, errlen, "database: %s", sqlite3_errmsg(r->db));
    return SP_ERR_DB;
}

/* Looks up a device id by serial: 0, SP_ERR_NODEVICE or SP_ERR_DB. */
static int device_id(struct registry *r, const char *serial, int64_t *id)
{
    sqlite3_stmt *s = stmt(r, ST_DEVICE_ID);
    int rc;

    if (!s)
        return SP_ERR_DB;
    sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(s, 0);
    done(s);
    return rc == SQLITE_ROW ? SP_OK : rc == SQLITE_DONE ? SP_ERR_NODEVICE : SP_ERR_DB;
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

/* A text column copied into the arena; NULL columns become NULL. */
static int col_text(sqlite3_stmt *s, int col, struct arena *a, const char **out)
{
    const unsigned char *t = sqlite3_column_text(s, col);

    if (!t) {
        *out = NULL;
        return SP_OK;
    }
    *out = arena_strndup(a, (const char *)t, (size_t)sqlite3_column_bytes(s, col));
    return *out ? SP_OK : SP_ERR_NOMEM;
}

static int col_hash(sqlite3_stmt *s, int col, uint8_t out[SP_HASH_LEN])
{
    if (sqlite3_column_bytes(s, col) != SP_HASH_LEN)
        return SP_ERR_DB;
    memcpy(out, sqlite3_column_blob(s, col), SP_HASH_LEN);
    return SP_OK;
}

/* Reads a row of DEVICE_SELECT. */
static int read_device(sqlite3_stmt *s, struct arena *a, struct device_info *d)
{
    struct device_info v = {0};
    int rc;

    v.id = sqlite3_column_int64(s, 0);
    if ((rc = col_text(s, 1, a, &v.serial)) || (rc = col_text(s, 2, a, &v.name)) ||
        (rc = col_text(s, 3, a, &v.tags_json)) || (rc = col_text(s, 4, a, &v.params_json)) ||
        (rc = col_text(s, 5, a, &v.parser)) || (rc = col_text(s, 6, a, &v.profile)) ||
        (rc = col_hash(s, 10, v.device_hash)) || (rc = col_hash(s, 11, v.auth_hash)))
        return rc;
    v.encryption_required = sqlite3_column_int(s, 7);
    v.counter_mode = sqlite3_column_int(s, 8);
    v.suite = sqlite3_column_type(s, 9) == SQLITE_NULL ? -1 : sqlite3_column_int(s, 9);
    v.created_ms = sqlite3_column_int64(s, 12);
    *d = v;
    return SP_OK;
}

/* ------------------------------------------------------------------------ */
/* Master key and key sealing                                               */
/* ------------------------------------------------------------------------ */

static int read_master(struct registry *r, const char *path, int fd, char *err, size_t errlen)
{
    struct stat st;
    size_t got = 0;

    if (fstat(fd, &st) != 0) {
        seterr(err, errlen, "%s: %s", path, strerror(errno));
        return SP_ERR_IO;
    }
    if (!S_ISREG(st.st_mode)) {
        seterr(err, errlen, "%s: not a regular file", path);
        return SP_ERR_IO;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        seterr(err, errlen,
               "%s: group or others can access it (mode %04o); refusing to use it "
               "(run: chmod 600 %s)",
               path, (unsigned)(st.st_mode & 07777), path);
        return SP_ERR_IO;
    }
    if (st.st_size != REGISTRY_MASTER_LEN) {
        seterr(err, errlen, "%s: expected %d bytes, found %lld", path, REGISTRY_MASTER_LEN,
               (long long)st.st_size);
        return SP_ERR_IO;
    }
    while (got < REGISTRY_MASTER_LEN) {
        ssize_t k = read(fd, r->master + got, REGISTRY_MASTER_LEN - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            sodium_memzero(r->master, sizeof r->master);
            seterr(err, errlen, "%s: short read", path);
            return SP_ERR_IO;
        }
        got += (size_t)k;
    }
    r->have_master = 1;
    return SP_OK;
}

/*
 * Creates master.key atomically: the key is written to a temporary file
 * (O_CREAT|O_EXCL, mode 0600) and linked into place, so a concurrent process
 * either sees no file or the whole key, and two racing creators agree on the
 * winner's key (link fails with EEXIST for the loser, who then reads it).
 */
static int create_master(struct registry *r, const char *path, char *err, size_t errlen)
{
    char tmp[4096];
    uint8_t key[REGISTRY_MASTER_LEN];
    size_t off = 0;
    int fd, rc = SP_ERR_IO;

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.%ld.%08x.tmp", path, (long)getpid(),
                         randombytes_random()) >= sizeof tmp) {
        seterr(err, errlen, "%s: path too long", path);
        return SP_ERR_IO;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        seterr(err, errlen, "%s: %s", tmp, strerror(errno));
        return SP_ERR_IO;
    }
    randombytes_buf(key, sizeof key);
    while (off < sizeof key) {
        ssize_t k = write(fd, key + off, sizeof key - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            seterr(err, errlen, "%s: %s", tmp, strerror(errno));
            goto fail_file;
        }
        off += (size_t)k;
    }
    if (fsync(fd) != 0) {
        seterr(err, errlen, "%s: fsync: %s", tmp, strerror(errno));
        goto fail_file;
    }
    if (link(tmp, path) != 0) {
        rc = errno == EEXIST ? 1 : SP_ERR_IO; /* 1: someone else won; read theirs */
        if (rc < 0)
            seterr(err, errlen, "%s: %s", path, strerror(errno));
        goto fail_file;
    }
    memcpy(r->master, key, sizeof key);
    r->have_master = 1;
    rc = SP_OK;
fail_file:
    sodium_memzero(key, sizeof key);
    close(fd);
    unlink(tmp);
    return rc;
}

/*
 * A new master key must not be created while keys sealed under a lost one
 * remain: they could never be opened, and the operator should restore the
 * file instead. Returns 0 when the key table is empty.
 */
static int keys_orphaned(struct registry *r, const char *path, char *err, size_t errlen)
{
    sqlite3_stmt *s = stmt(r, ST_KEYS_EXIST);
    int64_t n = -1;

    if (s && sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    done(s);
    if (n < 0)
        return dberr(r, err, errlen);
    if (n > 0) {
        seterr(err, errlen,
               "%s is missing but the registry holds %lld keys sealed under it; restore it "
               "from a backup",
               path, (long long)n);
        return SP_ERR_IO;
    }
    return SP_OK;
}

/* Reads or creates the master key, once per registry. */
static int master_load(struct registry *r, char *err, size_t errlen)
{
    char path[4096];
    int rc = SP_OK;

    if (r->have_master)
        return SP_OK;
    snprintf(path, sizeof path, "%s/master.key", r->data_dir);
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
            rc = read_master(r, path, fd, err, errlen);
            close(fd);
            return rc;
        }
        if (errno != ENOENT) {
            seterr(err, errlen, "%s: %s", path, strerror(errno));
            return SP_ERR_IO;
        }
        if ((rc = keys_orphaned(r, path, err, errlen)))
            return rc;
        rc = create_master(r, path, err, errlen);
        if (rc <= 0)
            return rc;
    }
    seterr(err, errlen, "%s: could not be created", path);
    return SP_ERR_IO;
}

int registry_generation(struct registry *r, int64_t *out)
{
    sqlite3_stmt *s = stmt(r, ST_GENERATION);
    int rc;

    if (!s)
        return SP_ERR_DB;
    rc = sqlite3_step(s);
    *out = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    done(s);
    return rc == SQLITE_ROW ? SP_OK : SP_ERR_DB;
}

int registry_load_master(struct registry *r, char *err, size_t errlen)
{
    return master_load(r, err, errlen);
}

static int key_seal(struct registry *r, const char *serial, const uint8_t *key, size_t len,
                    uint8_t nonce[REGISTRY_NONCE_LEN], uint8_t out[REGISTRY_SEAL_LEN],
                    size_t *out_len)
{
    unsigned long long n = 0;

    randombytes_buf(nonce, REGISTRY_NONCE_LEN);
    if (crypto_aead_xchacha20poly1305_ietf_encrypt(out, &n, key, len, (const uint8_t *)serial,
                                                   strlen(serial), NULL, nonce, r->master) != 0)
        return SP_ERR_CRYPTO;
    *out_len = (size_t)n;
    return SP_OK;
}

static int key_open(struct registry *r, const char *serial, const void *nonce, size_t nonce_len,
                    const void *enc, size_t enc_len, uint8_t out[SP_MAX_KEY_LEN], size_t *len)
{
    unsigned long long n = 0;

    if (nonce_len != REGISTRY_NONCE_LEN || enc_len > REGISTRY_SEAL_LEN ||
        enc_len < crypto_aead_xchacha20poly1305_ietf_ABYTES)
        return SP_ERR_CRYPTO;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(out, &n, NULL, enc, enc_len,
                                                   (const uint8_t *)serial, strlen(serial), nonce,
                                                   r->master) != 0)
        return SP_ERR_CRYPTO;
    *len = (size_t)n;
    return SP_OK;
}

/* ------------------------------------------------------------------------ */
/* Open and close                                                           */
/* ------------------------------------------------------------------------ */

static int schema_check(struct registry *r, char *err, size_t errlen)
{
    sqlite3_stmt *s = stmt(r, ST_SCHEMA_VERSION);
    int rc, version;

    if (!s)
        return dberr(r, err, errlen);
    rc = sqlite3_step(s);
    version = rc == SQLITE_ROW ? sqlite3_column_int(s, 0) : 0;
    done(s);
    if (rc != SQLITE_ROW)
        return dberr(r, err, errlen);
    if (version > REGISTRY_SCHEMA_VERSION) {
        seterr(err, errlen,
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
        seterr(err, errlen, "libsodium failed to initialize");
        return SP_ERR_CRYPTO;
    }
    if ((rc = datadir_ensure(data_dir, err, errlen)))
        return rc;
    if ((size_t)snprintf(path, sizeof path, "%s/" DATADIR_DB, data_dir) >= sizeof path) {
        seterr(err, errlen, "%s: path too long", data_dir);
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
        seterr(err, errlen, "%s: %s", path, r->db ? sqlite3_errmsg(r->db) : "cannot open");
        rc = SP_ERR_DB;
        goto fail_db;
    }
    sqlite3_busy_timeout(r->db, 5000);
    if ((rc = exec(r, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;", err, errlen)) ||
        (rc = begin(r, err, errlen)) || (rc = exec(r, sp_schema_registry, err, errlen)) ||
        (rc = commit(r, err, errlen)) || (rc = schema_check(r, err, errlen))) {
        rollback(r);
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
        seterr(err, errlen, "out of memory");
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

/* ------------------------------------------------------------------------ */
/* Profiles                                                                 */
/* ------------------------------------------------------------------------ */

static void profile_token_new(char out[3 + SP_TOKEN_HEX_LEN])
{
    uint8_t b[SP_TOKEN_HEX_LEN / 2];

    randombytes_buf(b, sizeof b);
    out[0] = 'a';
    out[1] = 't';
    if (sp_hex_encode(b, sizeof b, out + 2, 1 + SP_TOKEN_HEX_LEN) != SP_OK)
        out[2] = '\0'; /* cannot happen: the buffer fits */
    sodium_memzero(b, sizeof b);
}

static int profile_token_ok(const char *t)
{
    if (strlen(t) != 2 + SP_TOKEN_HEX_LEN || t[0] != 'a' || t[1] != 't')
        return 0;
    for (size_t i = 2; t[i]; i++)
        if (!is_hex(t[i]))
            return 0;
    return 1;
}

/* Inserts a profile inside the caller's transaction; sets *id. */
static int profile_insert(struct registry *r, const char *name, const char *token, int64_t *id,
                          uint8_t auth_hash[SP_HASH_LEN], char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc;

    if (sp_auth_hash(token, strlen(token), auth_hash) != SP_OK) {
        seterr(err, errlen, "bad profile token");
        return SP_ERR_INVAL;
    }
    if (!(s = stmt(r, ST_PROFILE_INSERT)))
        return dberr(r, err, errlen);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, auth_hash, SP_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now_ms());
    rc = sqlite3_step(s);
    done(s);
    if (rc == SQLITE_DONE) {
        *id = sqlite3_last_insert_rowid(r->db);
        return SP_OK;
    }
    if (rc == SQLITE_CONSTRAINT) {
        seterr(err, errlen, "a profile named %s, or one with this token, already exists", name);
        return SP_ERR_EXISTS;
    }
    return dberr(r, err, errlen);
}

int registry_profile_add(struct registry *r, const char *name, const char *token,
                         struct profile_secret *out, char *err, size_t errlen)
{
    struct profile_secret sec;
    uint8_t hash[SP_HASH_LEN];
    int64_t id;
    int rc;

    if (!ident_ok(name)) {
        seterr(err, errlen, "bad profile name (1-100 of A-Z a-z 0-9 _ -)");
        return SP_ERR_INVAL;
    }
    if (token && !profile_token_ok(token)) {
        seterr(err, errlen, "bad profile token: expected \"at\" and 32 hex characters");
        return SP_ERR_INVAL;
    }
    if (token)
        snprintf(sec.token, sizeof sec.token, "%s", token);
    else
        profile_token_new(sec.token);
    if ((rc = begin(r, err, errlen)))
        goto out;
    if ((rc = profile_insert(r, name, sec.token, &id, hash, err, errlen)) ||
        (rc = commit(r, err, errlen)))
        goto out;
    memcpy(out, &sec, sizeof sec);
out:
    rollback(r);
    sodium_memzero(&sec, sizeof sec);
    return rc;
}

int registry_profile_list(struct registry *r, struct arena *a, struct profile_info **out, size_t *n)
{
    struct vec v = {.size = sizeof(struct profile_info)};
    sqlite3_stmt *s = stmt(r, ST_PROFILE_LIST);
    int rc = SP_ERR_DB, step;

    if (!s)
        return SP_ERR_DB;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        struct profile_info *p = vec_push(&v);
        if (!p) {
            rc = SP_ERR_NOMEM;
            goto fail;
        }
        p->id = sqlite3_column_int64(s, 0);
        p->created_ms = sqlite3_column_int64(s, 3);
        if ((rc = col_text(s, 1, a, &p->name)) || (rc = col_hash(s, 2, p->auth_hash)))
            goto fail;
    }
    rc = step == SQLITE_DONE ? vec_to_arena(&v, a, (void **)out, n) : SP_ERR_DB;
fail:
    done(s);
    vec_free(&v);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Devices                                                                  */
/* ------------------------------------------------------------------------ */

/* A random version-4 UUID in text form: the device token. */
static void device_token_new(char out[REGISTRY_TOKEN_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    size_t o = 0;

    randombytes_buf(b, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    for (size_t i = 0; i < sizeof b; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
    sodium_memzero(b, sizeof b);
}

/* Inserts a token for device_id inside the caller's transaction. */
static int token_insert(struct registry *r, int64_t dev, const char *name, int perm,
                        int64_t expires_ms, char token[REGISTRY_TOKEN_LEN + 1])
{
    uint8_t hash[crypto_hash_sha256_BYTES];
    char prefix[REGISTRY_PREFIX_LEN + 1];
    sqlite3_stmt *s;
    int rc;

    device_token_new(token);
    crypto_hash_sha256(hash, (const uint8_t *)token, REGISTRY_TOKEN_LEN);
    memcpy(prefix, token, REGISTRY_PREFIX_LEN);
    prefix[REGISTRY_PREFIX_LEN] = '\0';
    if (!(s = stmt(r, ST_TOKEN_INSERT)))
        return SP_ERR_DB;
    sqlite3_bind_int64(s, 1, dev);
    sqlite3_bind_text(s, 2, name ? name : prefix, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 3, prefix, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(s, 4, hash, sizeof hash, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 5, perm);
    if (expires_ms > 0)
        sqlite3_bind_int64(s, 6, expires_ms);
    sqlite3_bind_int64(s, 7, now_ms());
    rc = sqlite3_step(s);
    done(s);
    if (rc == SQLITE_DONE)
        return SP_OK;
    sodium_memzero(token, REGISTRY_TOKEN_LEN + 1);
    return rc == SQLITE_CONSTRAINT ? SP_ERR_EXISTS : SP_ERR_DB;
}

/* Creates and stores a random key for suite inside the caller's transaction. */
/*
 * Stores a new key for device dev: random, or derived from token and the
 * serial (TagoTiPs.md §2.4) when token is not NULL. The token must be the
 * one whose hash is auth_hash (the device's profile).
 */
static int key_insert(struct registry *r, int64_t dev, const char *serial, int suite,
                      const char *token, const uint8_t auth_hash[SP_HASH_LEN],
                      uint8_t key[SP_MAX_KEY_LEN], size_t *key_len, char *err, size_t errlen)
{
    uint8_t nonce[REGISTRY_NONCE_LEN], enc[REGISTRY_SEAL_LEN], h[SP_HASH_LEN];
    size_t len = sp_suite_key_len(suite), enc_len;
    sqlite3_stmt *s;
    int rc;

    if (len == 0 || len > SP_MAX_KEY_LEN) {
        seterr(err, errlen, "unknown cipher suite %d", suite);
        return SP_ERR_INVAL;
    }
    if (token == NULL) {
        randombytes_buf(key, len);
    } else if (!profile_token_ok(token) || sp_auth_hash(token, strlen(token), h) != SP_OK ||
               sodium_memcmp(h, auth_hash, SP_HASH_LEN) != 0) {
        seterr(err, errlen, "that token is not the authorization token of the device's profile");
        return SP_ERR_INVAL;
    } else if (sp_derive_key(token, strlen(token), serial, strlen(serial), key, len) != SP_OK) {
        seterr(err, errlen, "key derivation failed");
        return SP_ERR_CRYPTO;
    }
    if ((rc = key_seal(r, serial, key, len, nonce, enc, &enc_len))) {
        seterr(err, errlen, "sealing the key failed");
        goto fail;
    }
    if (!(s = stmt(r, ST_KEY_INSERT))) {
        rc = dberr(r, err, errlen);
        goto fail;
    }
    sqlite3_bind_int64(s, 1, dev);
    sqlite3_bind_int(s, 2, suite);
    sqlite3_bind_blob(s, 3, nonce, sizeof nonce, SQLITE_STATIC);
    sqlite3_bind_blob(s, 4, enc, (int)enc_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, now_ms());
    rc = sqlite3_step(s) == SQLITE_DONE ? SP_OK : dberr(r, err, errlen);
    done(s);
    if (rc == SP_OK) {
        *key_len = len;
        return SP_OK;
    }
fail:
    sodium_memzero(key, SP_MAX_KEY_LEN);
    return rc;
}

static int spec_check(const struct device_spec *spec, char *err, size_t errlen)
{
    if (!ident_ok(spec->serial)) {
        seterr(err, errlen, "bad serial: use 1-100 of A-Z a-z 0-9 _ -");
        return SP_ERR_INVAL;
    }
    if (spec->name && !text_ok(spec->name, REGISTRY_MAX_NAME)) {
        seterr(err, errlen, "bad name: 1-%d bytes of UTF-8 text without control characters",
               REGISTRY_MAX_NAME);
        return SP_ERR_INVAL;
    }
    if (spec->tags_json && !json_object_of_strings(spec->tags_json)) {
        seterr(err, errlen, "bad tags: expected a JSON object of strings");
        return SP_ERR_INVAL;
    }
    if (spec->params_json && !json_object_of_strings(spec->params_json)) {
        seterr(err, errlen, "bad params: expected a JSON object of strings");
        return SP_ERR_INVAL;
    }
    if (spec->parser && !ident_ok(spec->parser)) {
        seterr(err, errlen, "bad parser name: use 1-100 of A-Z a-z 0-9 _ -");
        return SP_ERR_INVAL;
    }
    if (spec->profile && !ident_ok(spec->profile)) {
        seterr(err, errlen, "bad profile name: use 1-100 of A-Z a-z 0-9 _ -");
        return SP_ERR_INVAL;
    }
    if (spec->suite >= 0 && sp_suite_key_len(spec->suite) == 0) {
        seterr(err, errlen, "unknown cipher suite %d", spec->suite);
        return SP_ERR_INVAL;
    }
    if (spec->encryption_required && spec->suite < 0) {
        seterr(err, errlen, "encryption can only be required of a device with a key");
        return SP_ERR_INVAL;
    }
    if (spec->counter_mode != COUNTER_STRICT && spec->counter_mode != COUNTER_OFF) {
        seterr(err, errlen, "bad counter mode %d", spec->counter_mode);
        return SP_ERR_INVAL;
    }
    return SP_OK;
}

/*
 * Finds the device's profile inside the caller's transaction, creating
 * "default" when no profile was named and it does not exist yet (its token
 * then goes to sec->profile_token).
 */
static int device_profile(struct registry *r, const char *name, struct device_secrets *sec,
                          int64_t *id, char *err, size_t errlen)
{
    sqlite3_stmt *s = stmt(r, ST_PROFILE_BY_NAME);
    int rc;

    if (!s)
        return dberr(r, err, errlen);
    sqlite3_bind_text(s, 1, name ? name : "default", -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(s, 0);
        rc = col_hash(s, 1, sec->auth_hash);
    } else if (rc == SQLITE_DONE) {
        rc = SP_ERR_NOTFOUND;
    } else {
        rc = dberr(r, err, errlen);
    }
    done(s);
    if (rc != SP_ERR_NOTFOUND)
        return rc;
    if (name) {
        seterr(err, errlen, "unknown profile %s", name);
        return SP_ERR_NOTFOUND;
    }
    profile_token_new(sec->profile_token);
    rc = profile_insert(r, "default", sec->profile_token, id, sec->auth_hash, err, errlen);
    if (rc)
        sodium_memzero(sec->profile_token, sizeof sec->profile_token);
    return rc;
}

static int device_insert(struct registry *r, const struct device_spec *spec, int64_t profile,
                         const uint8_t hash[SP_HASH_LEN], int64_t *id, char *err, size_t errlen)
{
    sqlite3_stmt *s = stmt(r, ST_DEVICE_INSERT);
    int rc;

    if (!s)
        return dberr(r, err, errlen);
    sqlite3_bind_text(s, 1, spec->serial, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, hash, SP_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, profile);
    sqlite3_bind_text(s, 4, spec->name ? spec->name : spec->serial, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, spec->tags_json ? spec->tags_json : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, spec->params_json ? spec->params_json : "{}", -1, SQLITE_STATIC);
    if (spec->parser)
        sqlite3_bind_text(s, 7, spec->parser, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 8, spec->encryption_required ? 1 : 0);
    sqlite3_bind_int(s, 9, spec->counter_mode);
    sqlite3_bind_int64(s, 10, now_ms());
    rc = sqlite3_step(s);
    done(s);
    if (rc == SQLITE_DONE) {
        *id = sqlite3_last_insert_rowid(r->db);
        return SP_OK;
    }
    if (rc == SQLITE_CONSTRAINT) {
        seterr(err, errlen, "device %s already exists", spec->serial);
        return SP_ERR_EXISTS;
    }
    return dberr(r, err, errlen);
}

int registry_device_add(struct registry *r, const struct device_spec *spec,
                        struct device_secrets *out, char *err, size_t errlen)
{
    struct device_secrets sec;
    int64_t profile, dev;
    int rc;

    memset(&sec, 0, sizeof sec);
    sec.suite = spec->suite >= 0 ? spec->suite : -1;
    if ((rc = spec_check(spec, err, errlen)))
        return rc;
    if (spec->suite >= 0 && (rc = master_load(r, err, errlen)))
        return rc;
    sp_device_hash(spec->serial, strlen(spec->serial), sec.device_hash);
    if ((rc = begin(r, err, errlen)))
        goto out;
    if ((rc = device_profile(r, spec->profile, &sec, &profile, err, errlen)) ||
        (rc = device_insert(r, spec, profile, sec.device_hash, &dev, err, errlen)))
        goto out;
    if ((rc = token_insert(r, dev, "default", TOKEN_FULL, 0, sec.token))) {
        (void)dberr(r, err, errlen);
        goto out;
    }
    if (spec->derive && spec->suite < 0) {
        seterr(err, errlen, "a derived key needs a cipher");
        rc = SP_ERR_INVAL;
        goto out;
    }
    const char *token = !spec->derive          ? NULL
                        : spec->derive_token   ? spec->derive_token
                        : sec.profile_token[0] ? sec.profile_token
                                               : NULL;
    if (spec->derive && !token) {
        seterr(err, errlen,
               "profile %s exists: deriving the key needs its authorization token (--token)",
               spec->profile ? spec->profile : "default");
        rc = SP_ERR_INVAL;
        goto out;
    }
    if (spec->suite >= 0 && (rc = key_insert(r, dev, spec->serial, spec->suite, token,
                                             sec.auth_hash, sec.key, &sec.key_len, err, errlen)))
        goto out;
    if ((rc = commit(r, err, errlen)))
        goto out;
    memcpy(out, &sec, sizeof sec);
out:
    rollback(r);
    sodium_memzero(&sec, sizeof sec);
    return rc;
}

int registry_device_remove(struct registry *r, const char *serial)
{
    sqlite3_stmt *s;
    int rc, step;

    if ((rc = begin(r, NULL, 0)))
        return rc;
    rc = SP_ERR_DB;
    if (!(s = stmt(r, ST_DEVICE_DELETE)))
        goto out;
    sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
    step = sqlite3_step(s);
    done(s);
    if (step != SQLITE_DONE)
        goto out;
    if (sqlite3_changes(r->db) == 0) {
        rc = SP_ERR_NODEVICE;
        goto out;
    }
    /* The counter table belongs to bucket.sql and may not exist yet. */
    if (!(s = stmt(r, ST_COUNTERS_EXIST)))
        goto out;
    step = sqlite3_step(s);
    done(s);
    if (step == SQLITE_ROW) {
        if (!(s = stmt(r, ST_COUNTERS_DELETE)))
            goto out;
        sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
        step = sqlite3_step(s);
        done(s);
    }
    if (step != SQLITE_DONE && step != SQLITE_ROW)
        goto out;
    rc = commit(r, NULL, 0);
out:
    rollback(r);
    return rc;
}

int registry_device_get(struct registry *r, const char *serial, struct arena *a,
                        struct device_info *out)
{
    sqlite3_stmt *s = stmt(r, ST_DEVICE_GET);
    int rc;

    if (!s)
        return SP_ERR_DB;
    sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        rc = read_device(s, a, out);
    else
        rc = rc == SQLITE_DONE ? SP_ERR_NODEVICE : SP_ERR_DB;
    done(s);
    return rc;
}

int registry_device_list(struct registry *r, struct arena *a, struct device_info **out, size_t *n)
{
    struct vec v = {.size = sizeof(struct device_info)};
    sqlite3_stmt *s = stmt(r, ST_DEVICE_LIST);
    int rc = SP_OK, step;

    if (!s)
        return SP_ERR_DB;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        struct device_info *d = vec_push(&v);
        if (!d) {
            rc = SP_ERR_NOMEM;
            goto fail;
        }
        if ((rc = read_device(s, a, d)))
            goto fail;
    }
    rc = step == SQLITE_DONE ? vec_to_arena(&v, a, (void **)out, n) : SP_ERR_DB;
fail:
    done(s);
    vec_free(&v);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Keys                                                                     */
/* ------------------------------------------------------------------------ */

int registry_keys_for(struct registry *r, const uint8_t auth_hash[SP_HASH_LEN],
                      const uint8_t device_hash[SP_HASH_LEN], int64_t now, int64_t grace_ms,
                      struct arena *a, struct device_key **out, size_t *n)
{
    struct vec v = {.size = sizeof(struct device_key)};
    sqlite3_stmt *s;
    int rc = SP_OK, step;

    if (!(s = stmt(r, ST_KEYS_FOR)))
        return SP_ERR_DB;
    sqlite3_bind_blob(s, 1, auth_hash, SP_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, device_hash, SP_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now);
    sqlite3_bind_int64(s, 4, grace_ms);
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        struct device_key *k;
        if (!r->have_master && (rc = master_load(r, NULL, 0)))
            goto fail;
        if (!(k = vec_push(&v))) {
            rc = SP_ERR_NOMEM;
            goto fail;
        }
        k->device_id = sqlite3_column_int64(s, 0);
        k->suite = sqlite3_column_int(s, 2);
        k->retired_ms = sqlite3_column_int64(s, 5); /* NULL reads as 0: current */
        if ((rc = col_text(s, 1, a, &k->serial)))
            goto fail;
        rc = key_open(r, k->serial, sqlite3_column_blob(s, 3), (size_t)sqlite3_column_bytes(s, 3),
                      sqlite3_column_blob(s, 4), (size_t)sqlite3_column_bytes(s, 4), k->key,
                      &k->key_len);
        if (rc)
            goto fail;
    }
    rc = step == SQLITE_DONE ? vec_to_arena(&v, a, (void **)out, n) : SP_ERR_DB;
fail:
    done(s);
    vec_free(&v);
    return rc;
}

/* The device's hash and its profile's auth hash, into sec. */
static int device_profile_hashes(struct registry *r, int64_t dev, struct device_secrets *sec)
{
    sqlite3_stmt *s = stmt(r, ST_DEVICE_HASHES);
    int rc;

    if (!s)
        return SP_ERR_DB;
    sqlite3_bind_int64(s, 1, dev);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW)
        rc = col_hash(s, 0, sec->device_hash) ? SP_ERR_DB : col_hash(s, 1, sec->auth_hash);
    else
        rc = rc == SQLITE_DONE ? SP_ERR_NODEVICE : SP_ERR_DB;
    done(s);
    return rc;
}

int registry_key_rotate(struct registry *r, const char *serial, int suite, const char *derive_token,
                        struct device_secrets *out, char *err, size_t errlen)
{
    struct device_secrets sec;
    sqlite3_stmt *s;
    int64_t dev;
    int rc, step;

    memset(&sec, 0, sizeof sec);
    if (suite >= 0 && sp_suite_key_len(suite) == 0) {
        seterr(err, errlen, "unknown cipher suite %d", suite);
        return SP_ERR_INVAL;
    }
    if ((rc = master_load(r, err, errlen)) || (rc = begin(r, err, errlen)))
        return rc;
    if ((rc = device_id(r, serial, &dev))) {
        if (rc == SP_ERR_NODEVICE)
            seterr(err, errlen, "unknown device %s", serial);
        goto out;
    }
    if (suite < 0) {
        if (!(s = stmt(r, ST_KEY_CURRENT))) {
            rc = dberr(r, err, errlen);
            goto out;
        }
        sqlite3_bind_int64(s, 1, dev);
        step = sqlite3_step(s);
        suite = step == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
        done(s);
        if (step != SQLITE_ROW && step != SQLITE_DONE) {
            rc = dberr(r, err, errlen);
            goto out;
        }
        if (suite < 0) {
            seterr(err, errlen, "device %s has no key; name a cipher for its first one", serial);
            rc = SP_ERR_INVAL;
            goto out;
        }
    }
    if (!(s = stmt(r, ST_KEY_RETIRE))) {
        rc = dberr(r, err, errlen);
        goto out;
    }
    sqlite3_bind_int64(s, 1, dev);
    sqlite3_bind_int64(s, 2, now_ms());
    step = sqlite3_step(s);
    done(s);
    if (step != SQLITE_DONE) {
        rc = dberr(r, err, errlen);
        goto out;
    }
    if ((rc = device_profile_hashes(r, dev, &sec)) ||
        (rc = key_insert(r, dev, serial, suite, derive_token, sec.auth_hash, sec.key, &sec.key_len,
                         err, errlen)) ||
        (rc = commit(r, err, errlen)))
        goto out;
    sec.suite = suite;
    memcpy(out, &sec, sizeof sec);
out:
    rollback(r);
    sodium_memzero(&sec, sizeof sec);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Tokens                                                                   */
/* ------------------------------------------------------------------------ */

int registry_token_add(struct registry *r, const char *serial, const char *name, int perm,
                       int64_t expires_ms, char token_out[37])
{
    char token[REGISTRY_TOKEN_LEN + 1];
    int64_t dev;
    int rc;

    if ((name && !ident_ok(name)) || !registry_perm_name(perm) || expires_ms < 0)
        return SP_ERR_INVAL;
    if ((rc = begin(r, NULL, 0)))
        return rc;
    if ((rc = device_id(r, serial, &dev)) ||
        (rc = token_insert(r, dev, name, perm, expires_ms, token)) || (rc = commit(r, NULL, 0)))
        goto out;
    memcpy(token_out, token, sizeof token);
out:
    rollback(r);
    sodium_memzero(token, sizeof token);
    return rc;
}

int registry_token_list(struct registry *r, const char *serial, struct arena *a,
                        struct token_info **out, size_t *n)
{
    struct vec v = {.size = sizeof(struct token_info)};
    sqlite3_stmt *s;
    int64_t dev;
    int rc, step;

    if ((rc = device_id(r, serial, &dev)))
        return rc;
    if (!(s = stmt(r, ST_TOKEN_LIST)))
        return SP_ERR_DB;
    sqlite3_bind_int64(s, 1, dev);
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        struct token_info *t = vec_push(&v);
        if (!t) {
            rc = SP_ERR_NOMEM;
            goto fail;
        }
        t->id = sqlite3_column_int64(s, 0);
        t->perm = sqlite3_column_int(s, 3);
        t->expires_ms = sqlite3_column_int64(s, 4);
        t->revoked_ms = sqlite3_column_int64(s, 5);
        t->created_ms = sqlite3_column_int64(s, 6);
        if ((rc = col_text(s, 1, a, &t->name)) || (rc = col_text(s, 2, a, &t->prefix)))
            goto fail;
    }
    rc = step == SQLITE_DONE ? vec_to_arena(&v, a, (void **)out, n) : SP_ERR_DB;
fail:
    done(s);
    vec_free(&v);
    return rc;
}

/*
 * `which` may be the token's name, its 8-character prefix or (pasted by an
 * operator) the whole token. Revoking twice keeps the first revocation time.
 */
int registry_token_revoke(struct registry *r, const char *serial, const char *which)
{
    uint8_t hash[crypto_hash_sha256_BYTES];
    sqlite3_stmt *s;
    int64_t dev, id = 0;
    int rc, step, matches = 0;

    crypto_hash_sha256(hash, (const uint8_t *)which, strlen(which));
    if ((rc = begin(r, NULL, 0)))
        return rc;
    if ((rc = device_id(r, serial, &dev)))
        goto out;
    rc = SP_ERR_DB;
    if (!(s = stmt(r, ST_TOKEN_FIND)))
        goto out;
    sqlite3_bind_int64(s, 1, dev);
    sqlite3_bind_text(s, 2, which, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, hash, sizeof hash, SQLITE_STATIC);
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        id = sqlite3_column_int64(s, 0);
        matches++;
    }
    done(s);
    if (step != SQLITE_DONE)
        goto out;
    if (matches != 1) {
        rc = matches ? SP_ERR_INVAL : SP_ERR_NOTFOUND;
        goto out;
    }
    if (!(s = stmt(r, ST_TOKEN_REVOKE)))
        goto out;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, now_ms());
    step = sqlite3_step(s);
    done(s);
    if (step == SQLITE_DONE)
        rc = commit(r, NULL, 0);
out:
    rollback(r);
    sodium_memzero(hash, sizeof hash);
    return rc;
}

int registry_token_check(struct registry *r, const char *token, int64_t now, struct arena *a,
                         struct device_info *out, int *perm)
{
    uint8_t hash[crypto_hash_sha256_BYTES];
    sqlite3_stmt *s;
    int64_t dev = 0, expires = 0, revoked = 0;
    int rc = SP_ERR_TOKEN, p = 0, step;

    if (strlen(token) != REGISTRY_TOKEN_LEN)
        return SP_ERR_TOKEN;
    crypto_hash_sha256(hash, (const uint8_t *)token, REGISTRY_TOKEN_LEN);
    if (!(s = stmt(r, ST_TOKEN_CHECK))) {
        rc = SP_ERR_DB;
        goto out;
    }
    sqlite3_bind_blob(s, 1, hash, sizeof hash, SQLITE_STATIC);
    step = sqlite3_step(s);
    if (step == SQLITE_ROW && sqlite3_column_bytes(s, 1) == (int)sizeof hash &&
        sodium_memcmp(sqlite3_column_blob(s, 1), hash, sizeof hash) == 0) {
        dev = sqlite3_column_int64(s, 0);
        p = sqlite3_column_int(s, 2);
        expires = sqlite3_column_int64(s, 3);
        revoked = sqlite3_column_int64(s, 4);
        rc = SP_OK;
    } else if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = SP_ERR_DB;
    }
    done(s);
    if (rc)
        goto out;
    if (revoked || (expires && now >= expires)) {
        rc = SP_ERR_TOKEN;
        goto out;
    }
    if (!(s = stmt(r, ST_DEVICE_BY_ID))) {
        rc = SP_ERR_DB;
        goto out;
    }
    sqlite3_bind_int64(s, 1, dev);
    step = sqlite3_step(s);
    rc = step == SQLITE_ROW    ? read_device(s, a, out)
         : step == SQLITE_DONE ? SP_ERR_TOKEN
                               : SP_ERR_DB;
    done(s);
    if (rc == SP_OK)
        *perm = p;
out:
    sodium_memzero(hash, sizeof hash);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Enum names                                                               */
/* ------------------------------------------------------------------------ */

static const char *const perm_names[] = {
    [TOKEN_FULL] = "full", [TOKEN_WRITE] = "write", [TOKEN_READ] = "read"};

const char *registry_perm_name(int perm)
{
    if (perm < 0 || perm >= (int)(sizeof perm_names / sizeof perm_names[0]))
        return NULL;
    return perm_names[perm];
}

int registry_perm_parse(const char *s)
{
    for (int i = 0; i < (int)(sizeof perm_names / sizeof perm_names[0]); i++)
        if (s && strcmp(s, perm_names[i]) == 0)
            return i;
    return SP_ERR_INVAL;
}
