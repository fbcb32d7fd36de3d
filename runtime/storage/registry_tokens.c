/*
 * registry_tokens.c - device tokens, the devices' MQTT passwords: made
 * at random (UUID form), shown once, kept only as SHA-256; added, listed,
 * revoked and checked here (see registry.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry_internal.h"
#include "base/errors.h"

/* A random version-4 UUID in text form. */
static void uuid_new(char out[REGISTRY_TOKEN_LEN + 1])
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

void registry__token_new(char token[REGISTRY_TOKEN_LEN + 1], uint8_t hash[32])
{
    uuid_new(token);
    crypto_hash_sha256(hash, (const uint8_t *)token, REGISTRY_TOKEN_LEN);
}

/* Inserts a token for device_id inside the caller's transaction. */
int registry__token_insert(struct registry *r, int64_t dev, const char *name, int perm,
                           int64_t expires_ms, char token[REGISTRY_TOKEN_LEN + 1])
{
    uint8_t hash[crypto_hash_sha256_BYTES];
    char prefix[REGISTRY_PREFIX_LEN + 1];
    sqlite3_stmt *s;
    int rc;

    registry__token_new(token, hash);
    memcpy(prefix, token, REGISTRY_PREFIX_LEN);
    prefix[REGISTRY_PREFIX_LEN] = '\0';
    if (!(s = registry__stmt(r, ST_TOKEN_INSERT)))
        return SP_ERR_DB;
    sqlite3_bind_int64(s, 1, dev);
    sqlite3_bind_text(s, 2, name ? name : prefix, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(s, 3, prefix, -1, SQLITE_TRANSIENT);
    sqlite3_bind_blob(s, 4, hash, sizeof hash, SQLITE_TRANSIENT);
    sqlite3_bind_int(s, 5, perm);
    if (expires_ms > 0)
        sqlite3_bind_int64(s, 6, expires_ms);
    sqlite3_bind_int64(s, 7, clock_wall_ms());
    if ((rc = registry__step_insert(r, s, NULL, NULL, 0)))
        sodium_memzero(token, REGISTRY_TOKEN_LEN + 1);
    return rc;
}

int registry_token_add(struct registry *r, const char *serial, const char *name, int perm,
                       int64_t expires_ms, char token_out[37])
{
    char token[REGISTRY_TOKEN_LEN + 1];
    int64_t dev;
    int rc;

    if ((name && !registry__ident_ok(name)) || !registry_perm_name(perm) || expires_ms < 0)
        return SP_ERR_INVAL;
    if ((rc = registry__begin(r, NULL, 0)))
        return rc;
    if ((rc = registry__device_id(r, serial, &dev)) ||
        (rc = registry__token_insert(r, dev, name, perm, expires_ms, token)) ||
        (rc = registry__commit(r, NULL, 0)))
        goto out;
    memcpy(token_out, token, sizeof token);
out:
    registry__rollback(r);
    sodium_memzero(token, sizeof token);
    return rc;
}

int registry__read_token_row(struct registry *r, sqlite3_stmt *s, struct arena *a, void *row)
{
    struct token_info *t = row;
    int rc;

    (void)r;
    t->id = sqlite3_column_int64(s, 0);
    t->perm = sqlite3_column_int(s, 3);
    t->expires_ms = sqlite3_column_int64(s, 4);
    t->revoked_ms = sqlite3_column_int64(s, 5);
    t->created_ms = sqlite3_column_int64(s, 6);
    if ((rc = registry__col_text(s, 1, a, &t->name)))
        return rc;
    return registry__col_text(s, 2, a, &t->prefix);
}

int registry_token_list(struct registry *r, const char *serial, struct arena *a,
                        struct token_info **out, size_t *n)
{
    sqlite3_stmt *s;
    int64_t dev;
    int rc;

    if ((rc = registry__device_id(r, serial, &dev)))
        return rc;
    if (!(s = registry__stmt(r, ST_TOKEN_LIST)))
        return SP_ERR_DB;
    sqlite3_bind_int64(s, 1, dev);
    return registry__collect(r, s, sizeof **out, registry__read_token_row, a, (void **)out, n);
}

int registry__revoke_one(struct registry *r, sqlite3_stmt *find, enum stmt_id revoke)
{
    sqlite3_stmt *s;
    int64_t id = 0;
    int step, matches = 0;

    while ((step = sqlite3_step(find)) == SQLITE_ROW) {
        id = sqlite3_column_int64(find, 0);
        matches++;
    }
    registry__done(find);
    if (step != SQLITE_DONE)
        return SP_ERR_DB;
    if (matches != 1)
        return matches ? SP_ERR_INVAL : SP_ERR_NOTFOUND;
    if (!(s = registry__stmt(r, revoke)))
        return SP_ERR_DB;
    sqlite3_bind_int64(s, 1, id);
    sqlite3_bind_int64(s, 2, clock_wall_ms());
    step = sqlite3_step(s);
    registry__done(s);
    return step == SQLITE_DONE ? registry__commit(r, NULL, 0) : SP_ERR_DB;
}

/*
 * `which` may be the token's name, its 8-character prefix or (pasted by an
 * operator) the whole token. Revoking twice keeps the first revocation time.
 */
int registry_token_revoke(struct registry *r, const char *serial, const char *which)
{
    uint8_t hash[crypto_hash_sha256_BYTES];
    sqlite3_stmt *s;
    int64_t dev;
    int rc;

    crypto_hash_sha256(hash, (const uint8_t *)which, strlen(which));
    if ((rc = registry__begin(r, NULL, 0)))
        return rc;
    if ((rc = registry__device_id(r, serial, &dev)))
        goto out;
    rc = SP_ERR_DB;
    if (!(s = registry__stmt(r, ST_TOKEN_FIND)))
        goto out;
    sqlite3_bind_int64(s, 1, dev);
    sqlite3_bind_text(s, 2, which, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, hash, sizeof hash, SQLITE_STATIC);
    rc = registry__revoke_one(r, s, ST_TOKEN_REVOKE);
out:
    registry__rollback(r);
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
    if (!(s = registry__stmt(r, ST_TOKEN_CHECK))) {
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
    registry__done(s);
    if (rc)
        goto out;
    if (revoked || (expires && now >= expires)) {
        rc = SP_ERR_TOKEN;
        goto out;
    }
    if (!(s = registry__stmt(r, ST_DEVICE_BY_ID))) {
        rc = SP_ERR_DB;
        goto out;
    }
    sqlite3_bind_int64(s, 1, dev);
    step = sqlite3_step(s);
    rc = step == SQLITE_ROW    ? registry__read_device(s, a, out)
         : step == SQLITE_DONE ? SP_ERR_TOKEN
                               : SP_ERR_DB;
    registry__done(s);
    if (rc == SP_OK)
        *perm = p;
out:
    sodium_memzero(hash, sizeof hash);
    return rc;
}

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
