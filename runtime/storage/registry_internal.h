/*
 * registry_internal.h - what the registry's files share (see registry.h for
 * the module): the connection, its prepared statements, transactions, row
 * helpers, and the steps one file's operation borrows from another's (a
 * device is added with a token and a key inside one transaction). Only
 * registry*.c include it.
 *
 * registry.c     open, close, statements, transactions, row helpers
 * registry_profiles.c, registry_devices.c, registry_tokens.c,
 * registry_keys.c  one table each (keys: with the master key and sealing)
 */
#ifndef SP_REGISTRY_INTERNAL_H
#define SP_REGISTRY_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <sodium.h>
#include <sqlite3.h>

#include "base/clock.h"
#include "registry.h"

#define REGISTRY_MASTER_LEN crypto_aead_xchacha20poly1305_ietf_KEYBYTES
#define REGISTRY_NONCE_LEN  crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define REGISTRY_SEAL_LEN   (SP_MAX_KEY_LEN + crypto_aead_xchacha20poly1305_ietf_ABYTES)

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
    XX(ADMIN_INSERT, "INSERT INTO admin_tokens (name, prefix, token_hash, perm, created_at)"       \
                     " VALUES (?1, ?2, ?3, ?4, ?5)")                                               \
    XX(ADMIN_LIST, "SELECT id, name, prefix, perm, 0, revoked_at, created_at"                      \
                   " FROM admin_tokens ORDER BY id")                                               \
    XX(ADMIN_FIND, "SELECT id FROM admin_tokens"                                                   \
                   " WHERE name = ?1 OR prefix = ?1 OR token_hash = ?2 LIMIT 2")                   \
    XX(ADMIN_REVOKE,                                                                               \
       "UPDATE admin_tokens SET revoked_at = coalesce(revoked_at, ?2) WHERE id = ?1")              \
    XX(ADMIN_CHECK, "SELECT token_hash, perm, revoked_at FROM admin_tokens WHERE token_hash = ?1") \
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
    XX(GENERATION, REGISTRY_SQL_GENERATION)

enum stmt_id {
#define XX(id, sql) ST_##id,
    STATEMENTS(XX)
#undef XX
        ST_COUNT
};

struct registry {
    sqlite3 *db;
    char *data_dir;
    sqlite3_stmt *st[ST_COUNT];
    int have_master;
    uint8_t master[REGISTRY_MASTER_LEN];
};

/* registry.c: errors, time, names. */
void registry__seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* 1 if s is a serial, or a profile, token or parser name. */
int registry__ident_ok(const char *s);

/* registry.c: statements and transactions. */
/* The prepared statement, reset and ready for binding; NULL on failure. */
sqlite3_stmt *registry__stmt(struct registry *r, enum stmt_id id);
/* Resets s (may be NULL) and clears its bindings. */
void registry__done(sqlite3_stmt *s);
int registry__begin(struct registry *r, char *err, size_t errlen);
int registry__commit(struct registry *r, char *err, size_t errlen);
/* Rolls back the open transaction, if any. */
void registry__rollback(struct registry *r);
/* SP_ERR_DB, with sqlite3_errmsg in err. */
int registry__dberr(struct registry *r, char *err, size_t errlen);
/* Steps a bound lookup of one device: 0 on its row, SP_ERR_NODEVICE, SP_ERR_DB. */
int registry__step_device(sqlite3_stmt *s);
/*
 * Steps a bound INSERT and resets it: 0 with the new row's id in *id (when id
 * is not NULL); SP_ERR_EXISTS on a uniqueness conflict, err left to the
 * caller, who knows what clashed; SP_ERR_DB with the SQLite message in err.
 */
int registry__step_insert(struct registry *r, sqlite3_stmt *s, int64_t *id, char *err,
                          size_t errlen);
/* Looks up a device id by serial: 0, SP_ERR_NODEVICE or SP_ERR_DB. */
int registry__device_id(struct registry *r, const char *serial, int64_t *id);

/* registry.c: rows. */
/*
 * Steps s (bound by the caller) to its end, reading each row with read_row
 * into a zeroed row of `size` bytes, and moves the rows into the arena: *out
 * and *n are set only on success. Returns 0, read_row's error, SP_ERR_NOMEM
 * or SP_ERR_DB. Resets s in every case.
 */
int registry__collect(struct registry *r, sqlite3_stmt *s, size_t size,
                      int (*read_row)(struct registry *r, sqlite3_stmt *s, struct arena *a,
                                      void *row),
                      struct arena *a, void **out, size_t *n);
/* A text column copied into the arena; NULL columns become NULL. */
int registry__col_text(sqlite3_stmt *s, int col, struct arena *a, const char **out);
int registry__col_hash(sqlite3_stmt *s, int col, uint8_t out[SP_HASH_LEN]);
/* Reads a row of DEVICE_SELECT. */
int registry__read_device(sqlite3_stmt *s, struct arena *a, struct device_info *d);

/* registry_profiles.c */
void registry__profile_token_new(char out[3 + SP_TOKEN_HEX_LEN]);
/* 1 if t is "at" and 32 hex characters. */
int registry__profile_token_ok(const char *t);
/* Inserts a profile inside the caller's transaction; sets *id and auth_hash. */
int registry__profile_insert(struct registry *r, const char *name, const char *token, int64_t *id,
                             uint8_t auth_hash[SP_HASH_LEN], char *err, size_t errlen);

/* registry_tokens.c: a new random token (UUID text form) and its SHA-256. */
void registry__token_new(char token[REGISTRY_TOKEN_LEN + 1], uint8_t hash[32]);
/* Revokes the one row `find` (bound, reset here) selects, with statement
 * `revoke` (?1 id, ?2 time), and commits. 0, SP_ERR_NOTFOUND, SP_ERR_INVAL
 * when it selects two, or SP_ERR_DB. Inside the caller's transaction. */
int registry__revoke_one(struct registry *r, sqlite3_stmt *find, enum stmt_id revoke);
/* Reads a row of TOKEN_LIST or ADMIN_LIST into a struct token_info. */
int registry__read_token_row(struct registry *r, sqlite3_stmt *s, struct arena *a, void *row);

/* registry_tokens.c: inserts a new token for device dev inside the caller's
 * transaction; the token goes to token. */
int registry__token_insert(struct registry *r, int64_t dev, const char *name, int perm,
                           int64_t expires_ms, char token[REGISTRY_TOKEN_LEN + 1]);

/* registry_keys.c */
/* Reads or creates the master key, once per registry. */
int registry__master_load(struct registry *r, char *err, size_t errlen);
/*
 * Stores a new key for device dev inside the caller's transaction: random,
 * or derived from token and the serial (TagoTiPs.md §2.4) when token is not
 * NULL. The token must be the one whose hash is auth_hash (the device's
 * profile).
 */
int registry__key_insert(struct registry *r, int64_t dev, const char *serial, int suite,
                         const char *token, const uint8_t auth_hash[SP_HASH_LEN],
                         uint8_t key[SP_MAX_KEY_LEN], size_t *key_len, char *err, size_t errlen);

#endif
