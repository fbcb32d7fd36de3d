/*
 * registry_profiles.c - profiles: a TagoTiP authorization token each, kept
 * only as its auth hash (see registry.h). A profile named "default" is
 * created with the first device that names none (registry_devices.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry_internal.h"
#include "base/errors.h"

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* ------------------------------------------------------------------------ */
/* Profiles                                                                 */
/* ------------------------------------------------------------------------ */

void registry__profile_token_new(char out[3 + SP_TOKEN_HEX_LEN])
{
    uint8_t b[SP_TOKEN_HEX_LEN / 2];

    randombytes_buf(b, sizeof b);
    out[0] = 'a';
    out[1] = 't';
    if (sp_hex_encode(b, sizeof b, out + 2, 1 + SP_TOKEN_HEX_LEN) != SP_OK)
        out[2] = '\0'; /* cannot happen: the buffer fits */
    sodium_memzero(b, sizeof b);
}

int registry__profile_token_ok(const char *t)
{
    if (strlen(t) != 2 + SP_TOKEN_HEX_LEN || t[0] != 'a' || t[1] != 't')
        return 0;
    for (size_t i = 2; t[i]; i++)
        if (!is_hex(t[i]))
            return 0;
    return 1;
}

/* Inserts a profile inside the caller's transaction; sets *id. */
int registry__profile_insert(struct registry *r, const char *name, const char *token, int64_t *id,
                             uint8_t auth_hash[SP_HASH_LEN], char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc;

    if (sp_auth_hash(token, strlen(token), auth_hash) != SP_OK) {
        registry__seterr(err, errlen, "bad profile token");
        return SP_ERR_INVAL;
    }
    if (!(s = registry__stmt(r, ST_PROFILE_INSERT)))
        return registry__dberr(r, err, errlen);
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, auth_hash, SP_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, clock_wall_ms());
    if ((rc = registry__step_insert(r, s, id, err, errlen)) == SP_ERR_EXISTS)
        registry__seterr(err, errlen, "a profile named %s, or one with this token, already exists",
                         name);
    return rc;
}

int registry_profile_add(struct registry *r, const char *name, const char *token,
                         struct profile_secret *out, char *err, size_t errlen)
{
    struct profile_secret sec;
    uint8_t hash[SP_HASH_LEN];
    int64_t id;
    int rc;

    if (!registry__ident_ok(name)) {
        registry__seterr(err, errlen, "bad profile name (1-100 of A-Z a-z 0-9 _ -)");
        return SP_ERR_INVAL;
    }
    if (token && !registry__profile_token_ok(token)) {
        registry__seterr(err, errlen, "bad profile token: expected \"at\" and 32 hex characters");
        return SP_ERR_INVAL;
    }
    if (token)
        snprintf(sec.token, sizeof sec.token, "%s", token);
    else
        registry__profile_token_new(sec.token);
    if ((rc = registry__begin(r, err, errlen)))
        goto out;
    if ((rc = registry__profile_insert(r, name, sec.token, &id, hash, err, errlen)) ||
        (rc = registry__commit(r, err, errlen)))
        goto out;
    memcpy(out, &sec, sizeof sec);
out:
    registry__rollback(r);
    sodium_memzero(&sec, sizeof sec);
    return rc;
}

/* Reads a row of PROFILE_LIST. */
static int read_profile_row(struct registry *r, sqlite3_stmt *s, struct arena *a, void *row)
{
    struct profile_info *p = row;
    int rc;

    (void)r;
    p->id = sqlite3_column_int64(s, 0);
    p->created_ms = sqlite3_column_int64(s, 3);
    if ((rc = registry__col_text(s, 1, a, &p->name)))
        return rc;
    return registry__col_hash(s, 2, p->auth_hash);
}

int registry_profile_list(struct registry *r, struct arena *a, struct profile_info **out, size_t *n)
{
    sqlite3_stmt *s = registry__stmt(r, ST_PROFILE_LIST);

    if (!s)
        return SP_ERR_DB;
    return registry__collect(r, s, sizeof **out, read_profile_row, a, (void **)out, n);
}
