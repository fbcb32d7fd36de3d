/*
 * view.c - the registry in the broker plugin's memory: every device token,
 * device and profile of sealpipe.db, read in one transaction with the
 * queries of registry_schema.h and sorted for bsearch, so that logins and ACL
 * checks never touch SQLite. auth.c reads it again whenever the registry's
 * generation number moves (on the tick, and before refusing a login). The
 * connection is read-only; the daemon and the CLI write the tables.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin.h"
#include "sealpipe.h"

static int cmp_token(const void *a, const void *b)
{
    return memcmp(((const struct token *)a)->hash, ((const struct token *)b)->hash,
                  REGISTRY_TOKEN_HASH_LEN);
}

static int cmp_device(const void *a, const void *b)
{
    return strcmp(((const struct device *)a)->serial, ((const struct device *)b)->serial);
}

/* Orders struct profile by auth hash; the key may be a bare 8-byte hash. */
static int cmp_profile(const void *a, const void *b)
{
    return memcmp(a, b, REGISTRY_HASH_LEN);
}

/* A serial the registry could hold. */
static int serial_ok(const char *s)
{
    return sp_serial_valid(s, strlen(s));
}

/* Reads the whole result of sql with one row callback; 0 or -1. */
static int each_row(sqlite3 *db, const char *sql, int (*row)(sqlite3_stmt *s, void *ud), void *ud)
{
    sqlite3_stmt *s;
    int rc;

    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
        return -1;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (row(s, ud) != 0) {
            rc = SQLITE_ERROR;
            break;
        }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* A copy being read; becomes the view when complete. */
struct loading {
    struct token *tokens;
    size_t ntokens, captokens;
    struct device *devices;
    size_t ndevices, capdevices;
    struct profile *profiles;
    size_t nprofiles, capprofiles;
};

static void *grow(void *p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return p;
    size_t c = *cap ? *cap * 2 : 64;
    void *np = realloc(p, c * size);
    if (np)
        *cap = c;
    return np;
}

static int token_row(sqlite3_stmt *s, void *ud)
{
    struct loading *l = ud;
    struct token *t;
    const void *h = sqlite3_column_blob(s, ALL_TOKENS_HASH);
    const char *serial = (const char *)sqlite3_column_text(s, ALL_TOKENS_SERIAL);

    if (!h || sqlite3_column_bytes(s, ALL_TOKENS_HASH) != REGISTRY_TOKEN_HASH_LEN || !serial ||
        !serial_ok(serial))
        return 0; /* not a row we can use; the registry checks what it writes */
    void *np = grow(l->tokens, &l->captokens, l->ntokens, sizeof(*l->tokens));
    if (!np)
        return -1;
    l->tokens = np;
    t = &l->tokens[l->ntokens++];
    memcpy(t->hash, h, sizeof t->hash);
    t->id = sqlite3_column_int64(s, ALL_TOKENS_ID);
    t->perm = sqlite3_column_int(s, ALL_TOKENS_PERM);
    t->expires_ms = sqlite3_column_int64(s, ALL_TOKENS_EXPIRES);
    t->revoked = sqlite3_column_type(s, ALL_TOKENS_REVOKED) != SQLITE_NULL;
    snprintf(t->serial, sizeof t->serial, "%s", serial);
    return 0;
}

static int device_row(sqlite3_stmt *s, void *ud)
{
    struct loading *l = ud;
    const char *serial = (const char *)sqlite3_column_text(s, ALL_DEVICES_SERIAL);
    const void *ah = sqlite3_column_blob(s, ALL_DEVICES_AUTH_HASH);

    if (!serial || !serial_ok(serial) || !ah ||
        sqlite3_column_bytes(s, ALL_DEVICES_AUTH_HASH) != REGISTRY_HASH_LEN)
        return 0;
    void *np = grow(l->devices, &l->capdevices, l->ndevices, sizeof(*l->devices));
    if (!np)
        return -1;
    l->devices = np;
    snprintf(l->devices[l->ndevices].serial, sizeof l->devices[0].serial, "%s", serial);
    memcpy(l->devices[l->ndevices].auth_hash, ah, REGISTRY_HASH_LEN);
    l->ndevices++;
    return 0;
}

static int profile_row(sqlite3_stmt *s, void *ud)
{
    struct loading *l = ud;
    const void *ah = sqlite3_column_blob(s, ALL_PROFILES_AUTH_HASH);
    const char *name = (const char *)sqlite3_column_text(s, ALL_PROFILES_NAME);

    if (!ah || sqlite3_column_bytes(s, ALL_PROFILES_AUTH_HASH) != REGISTRY_HASH_LEN || !name)
        return 0;
    void *np = grow(l->profiles, &l->capprofiles, l->nprofiles, sizeof(*l->profiles));
    if (!np)
        return -1;
    l->profiles = np;
    memcpy(l->profiles[l->nprofiles].auth_hash, ah, REGISTRY_HASH_LEN);
    snprintf(l->profiles[l->nprofiles].name, sizeof l->profiles[0].name, "%s", name);
    l->nprofiles++;
    return 0;
}

/* Frees a copy; token hashes are wiped. */
static void loading_free(struct loading *l)
{
    if (l->tokens)
        sodium_memzero(l->tokens, l->ntokens * sizeof(*l->tokens));
    free(l->tokens);
    free(l->devices);
    free(l->profiles);
}

static void view_free_copy(struct view *v)
{
    struct loading l = {
        .tokens = v->tokens, .ntokens = v->ntokens, .devices = v->devices, .profiles = v->profiles};

    loading_free(&l);
    v->tokens = NULL;
    v->devices = NULL;
    v->profiles = NULL;
    v->ntokens = v->ndevices = v->nprofiles = 0;
}

int view_open(struct view *v, const char *path, char *err, size_t errlen)
{
    if (sqlite3_open_v2(path, &v->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s", v->db ? sqlite3_errmsg(v->db) : "out of memory");
        sqlite3_close(v->db);
        v->db = NULL;
        return -1;
    }
    sqlite3_busy_timeout(v->db, 200);
    return 0;
}

void view_close(struct view *v)
{
    view_free_copy(v);
    sqlite3_finalize(v->gen);
    sqlite3_close(v->db);
    v->gen = NULL;
    v->db = NULL;
}

int64_t view_generation(struct view *v)
{
    int64_t g = -1;

    /* Prepared on first success: the table may not exist yet at start. */
    if (!v->gen &&
        sqlite3_prepare_v2(v->db, REGISTRY_SQL_GENERATION, -1, &v->gen, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(v->gen) == SQLITE_ROW)
        g = sqlite3_column_int64(v->gen, 0);
    sqlite3_reset(v->gen);
    return g;
}

uint64_t view_journal_floor(struct view *v)
{
    sqlite3_stmt *s = NULL;
    sqlite3_int64 floor = 0;

    if (sqlite3_prepare_v2(v->db, REGISTRY_SQL_JOURNAL_FLOOR, -1, &s, NULL) == SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        floor = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return floor > 0 ? (uint64_t)floor : 0;
}

int view_load(struct view *v)
{
    struct loading l;
    int rc;

    memset(&l, 0, sizeof l);
    if (sqlite3_exec(v->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    rc = each_row(v->db, REGISTRY_SQL_ALL_TOKENS, token_row, &l);
    if (rc == 0)
        rc = each_row(v->db, REGISTRY_SQL_ALL_DEVICES, device_row, &l);
    if (rc == 0)
        rc = each_row(v->db, REGISTRY_SQL_ALL_PROFILES, profile_row, &l);
    int64_t g = rc == 0 ? view_generation(v) : -1;
    sqlite3_exec(v->db, "COMMIT", NULL, NULL, NULL);
    if (rc != 0 || g < 0) {
        loading_free(&l);
        return -1;
    }
    qsort(l.tokens, l.ntokens, sizeof(*l.tokens), cmp_token);
    qsort(l.devices, l.ndevices, sizeof(*l.devices), cmp_device);
    qsort(l.profiles, l.nprofiles, sizeof(*l.profiles), cmp_profile);
    view_free_copy(v);
    v->tokens = l.tokens;
    v->ntokens = l.ntokens;
    v->devices = l.devices;
    v->ndevices = l.ndevices;
    v->profiles = l.profiles;
    v->nprofiles = l.nprofiles;
    v->generation = g;
    return 0;
}

const struct token *view_find_token(const struct view *v,
                                    const uint8_t hash[REGISTRY_TOKEN_HASH_LEN])
{
    struct token key;
    const struct token *t;

    memcpy(key.hash, hash, sizeof key.hash);
    t = v->ntokens ? bsearch(&key, v->tokens, v->ntokens, sizeof(*t), cmp_token) : NULL;
    /* bsearch compared with memcmp; confirm in constant time. */
    return t && sodium_memcmp(t->hash, hash, sizeof key.hash) == 0 ? t : NULL;
}

const struct device *view_find_device(const struct view *v, const char *serial, size_t n)
{
    struct device key;

    if (n == 0 || n > REGISTRY_MAX_IDENT || !v->ndevices)
        return NULL;
    memcpy(key.serial, serial, n);
    key.serial[n] = '\0';
    return bsearch(&key, v->devices, v->ndevices, sizeof key, cmp_device);
}

const struct profile *view_find_profile(const struct view *v,
                                        const uint8_t auth_hash[REGISTRY_HASH_LEN])
{
    if (!v->nprofiles)
        return NULL;
    return bsearch(auth_hash, v->profiles, v->nprofiles, sizeof(*v->profiles), cmp_profile);
}

const struct profile *view_profile_named(const struct view *v, const char *name)
{
    for (size_t i = 0; i < v->nprofiles; i++)
        if (strcmp(v->profiles[i].name, name) == 0)
            return &v->profiles[i];
    return NULL;
}

int view_token_live(const struct token *t, int64_t now)
{
    return t && !t->revoked && (t->expires_ms == 0 || now < t->expires_ms);
}
