/*
 * registry_admin.c - the tokens of the daemon's HTTP API and web console
 * (admin_tokens, schemas/registry.sql): made at random like device tokens,
 * shown once, kept only as SHA-256; added, listed, revoked and checked here
 * (see registry.h).
 */
#include <string.h>

#include "base/errors.h"
#include "registry_internal.h"

int registry_admin_token_add(struct registry *r, const char *name, int perm,
                             char token_out[REGISTRY_TOKEN_LEN + 1])
{
    char token[REGISTRY_TOKEN_LEN + 1], prefix[REGISTRY_PREFIX_LEN + 1];
    uint8_t hash[crypto_hash_sha256_BYTES];
    sqlite3_stmt *s;
    int rc;

    if ((name && !registry__ident_ok(name)) || (perm != TOKEN_FULL && perm != TOKEN_READ))
        return SP_ERR_INVAL;
    registry__token_new(token, hash);
    memcpy(prefix, token, REGISTRY_PREFIX_LEN);
    prefix[REGISTRY_PREFIX_LEN] = '\0';
    if ((rc = registry__begin(r, NULL, 0)))
        goto out;
    rc = SP_ERR_DB;
    if (!(s = registry__stmt(r, ST_ADMIN_INSERT)))
        goto out;
    sqlite3_bind_text(s, 1, name ? name : prefix, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, prefix, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, hash, sizeof hash, SQLITE_STATIC);
    sqlite3_bind_int(s, 4, perm);
    sqlite3_bind_int64(s, 5, clock_wall_ms());
    if ((rc = registry__step_insert(r, s, NULL, NULL, 0)) || (rc = registry__commit(r, NULL, 0)))
        goto out;
    memcpy(token_out, token, sizeof token);
out:
    registry__rollback(r);
    sodium_memzero(token, sizeof token);
    sodium_memzero(hash, sizeof hash);
    return rc;
}

int registry_admin_token_list(struct registry *r, struct arena *a, struct token_info **out,
                              size_t *n)
{
    sqlite3_stmt *s = registry__stmt(r, ST_ADMIN_LIST);

    if (!s)
        return SP_ERR_DB;
    return registry__collect(r, s, sizeof **out, registry__read_token_row, a, (void **)out, n);
}

int registry_admin_token_revoke(struct registry *r, const char *which)
{
    uint8_t hash[crypto_hash_sha256_BYTES];
    sqlite3_stmt *s;
    int rc;

    crypto_hash_sha256(hash, (const uint8_t *)which, strlen(which));
    if ((rc = registry__begin(r, NULL, 0)))
        return rc;
    rc = SP_ERR_DB;
    if ((s = registry__stmt(r, ST_ADMIN_FIND))) {
        sqlite3_bind_text(s, 1, which, -1, SQLITE_STATIC);
        sqlite3_bind_blob(s, 2, hash, sizeof hash, SQLITE_STATIC);
        rc = registry__revoke_one(r, s, ST_ADMIN_REVOKE);
    }
    registry__rollback(r);
    sodium_memzero(hash, sizeof hash);
    return rc;
}

int registry_admin_token_check(struct registry *r, const char *token, int *perm)
{
    uint8_t hash[crypto_hash_sha256_BYTES];
    sqlite3_stmt *s;
    int rc = SP_ERR_TOKEN, step;

    if (strlen(token) != REGISTRY_TOKEN_LEN)
        return SP_ERR_TOKEN;
    crypto_hash_sha256(hash, (const uint8_t *)token, REGISTRY_TOKEN_LEN);
    if (!(s = registry__stmt(r, ST_ADMIN_CHECK))) {
        sodium_memzero(hash, sizeof hash);
        return SP_ERR_DB;
    }
    sqlite3_bind_blob(s, 1, hash, sizeof hash, SQLITE_STATIC);
    step = sqlite3_step(s);
    if (step == SQLITE_ROW && sqlite3_column_bytes(s, 0) == (int)sizeof hash &&
        sodium_memcmp(sqlite3_column_blob(s, 0), hash, sizeof hash) == 0 &&
        sqlite3_column_type(s, 2) == SQLITE_NULL) {
        *perm = sqlite3_column_int(s, 1);
        rc = SP_OK;
    } else if (step != SQLITE_ROW && step != SQLITE_DONE) {
        rc = SP_ERR_DB;
    }
    registry__done(s);
    sodium_memzero(hash, sizeof hash);
    return rc;
}
