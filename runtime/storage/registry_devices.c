/*
 * registry_devices.c - devices: checking a device's description (serial,
 * UTF-8 name, JSON tags and params), adding one with its first token and key
 * in one transaction, removing, reading and listing (see registry.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/errors.h"
#include "registry_internal.h"

#define REGISTRY_MAX_NAME 255         /* bytes of a device's display name */
#define REGISTRY_MAX_JSON (64 * 1024) /* bytes of tags or params JSON */

/* Display names: valid UTF-8 without control characters. */
static int text_ok(const char *s, size_t max)
{
    size_t n = strlen(s), i = 0;

    if (n == 0 || n > max)
        return 0;
    while (i < n) {
        size_t k = sp__utf8_len((const unsigned char *)s + i, n - i);
        if (k == 0 || (unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
        i += k;
    }
    return 1;
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

static int spec_check(const struct device_spec *spec, char *err, size_t errlen)
{
    if (!registry__ident_ok(spec->serial)) {
        registry__seterr(err, errlen, "bad serial: use 1-100 of A-Z a-z 0-9 _ -");
        return SP_ERR_INVAL;
    }
    if (spec->name && !text_ok(spec->name, REGISTRY_MAX_NAME)) {
        registry__seterr(err, errlen,
                         "bad name: 1-%d bytes of UTF-8 text without control characters",
                         REGISTRY_MAX_NAME);
        return SP_ERR_INVAL;
    }
    if (spec->tags_json && !json_object_of_strings(spec->tags_json)) {
        registry__seterr(err, errlen, "bad tags: expected a JSON object of strings");
        return SP_ERR_INVAL;
    }
    if (spec->params_json && !json_object_of_strings(spec->params_json)) {
        registry__seterr(err, errlen, "bad params: expected a JSON object of strings");
        return SP_ERR_INVAL;
    }
    if (spec->parser && !registry__ident_ok(spec->parser)) {
        registry__seterr(err, errlen, "bad parser name: use 1-100 of A-Z a-z 0-9 _ -");
        return SP_ERR_INVAL;
    }
    if (spec->profile && !registry__ident_ok(spec->profile)) {
        registry__seterr(err, errlen, "bad profile name: use 1-100 of A-Z a-z 0-9 _ -");
        return SP_ERR_INVAL;
    }
    if (spec->suite >= 0 && sp_suite_key_len(spec->suite) == 0) {
        registry__seterr(err, errlen, "unknown cipher suite %d", spec->suite);
        return SP_ERR_INVAL;
    }
    if (spec->encryption_required && spec->suite < 0) {
        registry__seterr(err, errlen, "encryption can only be required of a device with a key");
        return SP_ERR_INVAL;
    }
    if (spec->counter_mode != COUNTER_STRICT && spec->counter_mode != COUNTER_OFF) {
        registry__seterr(err, errlen, "bad counter mode %d", spec->counter_mode);
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
    sqlite3_stmt *s = registry__stmt(r, ST_PROFILE_BY_NAME);
    int rc;

    if (!s)
        return registry__dberr(r, err, errlen);
    sqlite3_bind_text(s, 1, name ? name : "default", -1, SQLITE_STATIC);
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *id = sqlite3_column_int64(s, 0);
        rc = registry__col_hash(s, 1, sec->auth_hash);
    } else if (rc == SQLITE_DONE) {
        rc = SP_ERR_NOTFOUND;
    } else {
        rc = registry__dberr(r, err, errlen);
    }
    registry__done(s);
    if (rc != SP_ERR_NOTFOUND)
        return rc;
    if (name) {
        registry__seterr(err, errlen, "unknown profile %s", name);
        return SP_ERR_NOTFOUND;
    }
    registry__profile_token_new(sec->profile_token);
    rc =
        registry__profile_insert(r, "default", sec->profile_token, id, sec->auth_hash, err, errlen);
    if (rc)
        sodium_memzero(sec->profile_token, sizeof sec->profile_token);
    return rc;
}

static int device_insert(struct registry *r, const struct device_spec *spec, int64_t profile,
                         const uint8_t hash[SP_HASH_LEN], int64_t *id, char *err, size_t errlen)
{
    sqlite3_stmt *s = registry__stmt(r, ST_DEVICE_INSERT);
    int rc;

    if (!s)
        return registry__dberr(r, err, errlen);
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
    sqlite3_bind_int64(s, 10, clock_wall_ms());
    if ((rc = registry__step_insert(r, s, id, err, errlen)) == SP_ERR_EXISTS)
        registry__seterr(err, errlen, "device %s already exists", spec->serial);
    return rc;
}

int registry_device_add(struct registry *r, const struct device_spec *spec,
                        struct device_secrets *out, char *err, size_t errlen)
{
    struct device_secrets sec;
    int64_t profile = 0, dev = 0;
    int rc;

    memset(&sec, 0, sizeof sec);
    sec.suite = spec->suite >= 0 ? spec->suite : -1;
    if ((rc = spec_check(spec, err, errlen)))
        return rc;
    if (spec->suite >= 0 && (rc = registry__master_load(r, err, errlen)))
        return rc;
    sp_device_hash(spec->serial, strlen(spec->serial), sec.device_hash);
    if ((rc = registry__begin(r, err, errlen)))
        goto out;
    if ((rc = device_profile(r, spec->profile, &sec, &profile, err, errlen)) ||
        (rc = device_insert(r, spec, profile, sec.device_hash, &dev, err, errlen)))
        goto out;
    if ((rc = registry__token_insert(r, dev, "default", TOKEN_FULL, 0, sec.token))) {
        (void)registry__dberr(r, err, errlen);
        goto out;
    }
    if (spec->derive && spec->suite < 0) {
        registry__seterr(err, errlen, "a derived key needs a cipher");
        rc = SP_ERR_INVAL;
        goto out;
    }
    const char *token = !spec->derive          ? NULL
                        : spec->derive_token   ? spec->derive_token
                        : sec.profile_token[0] ? sec.profile_token
                                               : NULL;
    if (spec->derive && !token) {
        registry__seterr(
            err, errlen,
            "profile %s exists: deriving the key needs its authorization token (--token)",
            spec->profile ? spec->profile : "default");
        rc = SP_ERR_INVAL;
        goto out;
    }
    if (spec->suite >= 0 &&
        (rc = registry__key_insert(r, dev, spec->serial, spec->suite, token, sec.auth_hash, sec.key,
                                   &sec.key_len, err, errlen)))
        goto out;
    if ((rc = registry__commit(r, err, errlen)))
        goto out;
    memcpy(out, &sec, sizeof sec);
out:
    registry__rollback(r);
    sodium_memzero(&sec, sizeof sec);
    return rc;
}

/*
 * Inside device rm's transaction: the device's row of a table of bucket.sql
 * (its retention override: what it left in the bucket falls under the
 * global window; its status: a device added again under the serial starts
 * afresh), if the daemon has made the table yet. table is one of ours, never
 * input. Returns 0 or SP_ERR_DB.
 */
static int drop_bucket_row(struct registry *r, const char *table, const char *serial)
{
    sqlite3_stmt *s = NULL;
    char sql[128];
    int rc = SP_ERR_DB, step;

    if (sqlite3_prepare_v2(r->db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
                           -1, &s, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(s, 1, table, -1, SQLITE_STATIC);
    step = sqlite3_step(s);
    sqlite3_finalize(s);
    s = NULL;
    if (step == SQLITE_DONE)
        return SP_OK;
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE serial = ?1", table);
    if (step != SQLITE_ROW || sqlite3_prepare_v2(r->db, sql, -1, &s, NULL) != SQLITE_OK)
        goto out;
    sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_DONE)
        rc = SP_OK;
out:
    sqlite3_finalize(s);
    return rc;
}

int registry_device_remove(struct registry *r, const char *serial)
{
    sqlite3_stmt *s;
    int rc, step;

    if ((rc = registry__begin(r, NULL, 0)))
        return rc;
    rc = SP_ERR_DB;
    if (!(s = registry__stmt(r, ST_DEVICE_DELETE)))
        goto out;
    sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
    step = sqlite3_step(s);
    registry__done(s);
    if (step != SQLITE_DONE)
        goto out;
    if (sqlite3_changes(r->db) == 0) {
        rc = SP_ERR_NODEVICE;
        goto out;
    }
    /* The counter table belongs to bucket.sql and may not exist yet. */
    if (!(s = registry__stmt(r, ST_COUNTERS_EXIST)))
        goto out;
    step = sqlite3_step(s);
    registry__done(s);
    if (step == SQLITE_ROW) {
        if (!(s = registry__stmt(r, ST_COUNTERS_DELETE)))
            goto out;
        sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
        step = sqlite3_step(s);
        registry__done(s);
    }
    if ((step != SQLITE_DONE && step != SQLITE_ROW) ||
        drop_bucket_row(r, "device_retention", serial) != SP_OK ||
        drop_bucket_row(r, "device_status", serial) != SP_OK ||
        /* What the analyses' triggers keep for it (core/triggers.h): its
         * conditions' and silences' states, its events and runs waiting. */
        drop_bucket_row(r, "condition_state", serial) != SP_OK ||
        drop_bucket_row(r, "offline_state", serial) != SP_OK ||
        drop_bucket_row(r, "device_events", serial) != SP_OK ||
        drop_bucket_row(r, "trigger_queue", serial) != SP_OK)
        goto out;
    rc = registry__commit(r, NULL, 0);
out:
    registry__rollback(r);
    return rc;
}

int registry_device_get(struct registry *r, const char *serial, struct arena *a,
                        struct device_info *out)
{
    sqlite3_stmt *s = registry__stmt(r, ST_DEVICE_GET);
    int rc;

    if (!s)
        return SP_ERR_DB;
    sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
    if ((rc = registry__step_device(s)) == SP_OK)
        rc = registry__read_device(s, a, out);
    registry__done(s);
    return rc;
}

static int read_device_row(struct registry *r, sqlite3_stmt *s, struct arena *a, void *row)
{
    (void)r;
    return registry__read_device(s, a, row);
}

int registry_device_list(struct registry *r, struct arena *a, struct device_info **out, size_t *n)
{
    sqlite3_stmt *s = registry__stmt(r, ST_DEVICE_LIST);

    if (!s)
        return SP_ERR_DB;
    return registry__collect(r, s, sizeof **out, read_device_row, a, (void **)out, n);
}

/* The checks of device add that apply to an update's fields. */
static int update_check(const struct device_update *u, char *err, size_t errlen)
{
    /* The patches are checked by their result (after_check). */
    struct device_spec spec = {.serial = "x",
                               .name = u->name,
                               .parser = u->set_parser ? u->parser : NULL,
                               .suite = -1,
                               .counter_mode =
                                   u->counter_mode < 0 ? COUNTER_STRICT : u->counter_mode};

    return spec_check(&spec, err, errlen);
}

/* Binds an update's fields to DEVICE_UPDATE below: NULL leaves a column. */
static void update_bind(sqlite3_stmt *s, const char *serial, const struct device_update *u)
{
    sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
    if (u->name)
        sqlite3_bind_text(s, 2, u->name, -1, SQLITE_STATIC);
    if (u->tags_patch)
        sqlite3_bind_text(s, 3, u->tags_patch, -1, SQLITE_STATIC);
    if (u->params_patch)
        sqlite3_bind_text(s, 4, u->params_patch, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 5, u->set_parser ? 1 : 0);
    if (u->set_parser && u->parser)
        sqlite3_bind_text(s, 6, u->parser, -1, SQLITE_STATIC);
    if (u->encryption_required >= 0)
        sqlite3_bind_int(s, 7, u->encryption_required ? 1 : 0);
    if (u->counter_mode >= 0)
        sqlite3_bind_int(s, 8, u->counter_mode);
}

#define DEVICE_UPDATE                                                                              \
    "UPDATE devices SET name = coalesce(?2, name),"                                                \
    " tags = CASE WHEN ?3 IS NULL THEN tags ELSE json_patch(tags, ?3) END,"                        \
    " params = CASE WHEN ?4 IS NULL THEN params ELSE json_patch(params, ?4) END,"                  \
    " parser = CASE ?5 WHEN 1 THEN ?6 ELSE parser END,"                                            \
    " encryption_required = coalesce(?7, encryption_required),"                                    \
    " counter_mode = coalesce(?8, counter_mode) WHERE serial = ?1"

/* Encryption may be required only of a device with a current key. */
static int update_key_check(struct registry *r, const char *serial, const struct device_update *u,
                            char *err, size_t errlen)
{
    sqlite3_stmt *s;
    int rc, suite;

    if (u->encryption_required != 1)
        return SP_OK;
    if (!(s = registry__stmt(r, ST_DEVICE_GET)))
        return registry__dberr(r, err, errlen);
    sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
    rc = registry__step_device(s);
    suite = rc == SP_OK && sqlite3_column_type(s, 9) != SQLITE_NULL ? sqlite3_column_int(s, 9) : -1;
    registry__done(s);
    if (rc == SP_OK && suite < 0) {
        registry__seterr(err, errlen,
                         "device %s has no key: encryption can only be required of a device with "
                         "one (sealpipe key rotate %s gives it one)",
                         serial, serial);
        rc = SP_ERR_INVAL;
    }
    return rc;
}

/*
 * Inside the update's transaction: the tags and params the patches made
 * are what a device may have (objects of strings, not too large), else
 * SP_ERR_INVAL and the caller rolls back.
 */
static int after_check(struct registry *r, const char *serial, char *err, size_t errlen)
{
    sqlite3_stmt *s = NULL;
    int rc = SP_ERR_DB;

    if (sqlite3_prepare_v2(r->db, "SELECT tags, params FROM devices WHERE serial = ?1", -1, &s,
                           NULL) != SQLITE_OK)
        return registry__dberr(r, err, errlen);
    sqlite3_bind_text(s, 1, serial, -1, SQLITE_STATIC);
    if (sqlite3_step(s) == SQLITE_ROW) {
        struct device_spec spec = {.serial = "x",
                                   .tags_json = (const char *)sqlite3_column_text(s, 0),
                                   .params_json = (const char *)sqlite3_column_text(s, 1),
                                   .suite = -1};
        rc = spec_check(&spec, err, errlen);
    } else {
        rc = registry__dberr(r, err, errlen);
    }
    sqlite3_finalize(s);
    return rc;
}

int registry_device_update(struct registry *r, const char *serial, const struct device_update *u,
                           char *err, size_t errlen)
{
    sqlite3_stmt *s = NULL;
    int rc;

    if ((rc = update_check(u, err, errlen)) || (rc = registry__begin(r, err, errlen)))
        return rc;
    if ((rc = update_key_check(r, serial, u, err, errlen)))
        goto out;
    rc = SP_ERR_DB;
    if (sqlite3_prepare_v2(r->db, DEVICE_UPDATE, -1, &s, NULL) != SQLITE_OK) {
        (void)registry__dberr(r, err, errlen);
        goto out;
    }
    update_bind(s, serial, u);
    if (sqlite3_step(s) != SQLITE_DONE) {
        (void)registry__dberr(r, err, errlen);
        goto out;
    }
    if (sqlite3_changes(r->db) == 0) {
        rc = SP_ERR_NODEVICE;
        goto out;
    }
    if ((rc = after_check(r, serial, err, errlen)))
        goto out;
    rc = registry__commit(r, err, errlen);
out:
    sqlite3_finalize(s);
    registry__rollback(r);
    if (rc == SP_ERR_NODEVICE)
        registry__seterr(err, errlen, "unknown device %s", serial);
    return rc;
}
