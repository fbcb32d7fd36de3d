/*
 * test_registry.c - the registry against a real SQLite file in a temporary
 * data directory: devices, profiles, tokens, keys at rest and the master key.
 */
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <sqlite3.h>

#include "check.h"
#include "base/errors.h"
#include "storage/devcache.h"
#include "storage/registry.h"

static char data_dir[256];

static int64_t test_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct registry *open_reg(void)
{
    struct registry *r = NULL;
    char err[256] = "";
    int rc = registry_open(data_dir, &r, err, sizeof err);

    if (rc != 0)
        fprintf(stderr, "registry_open: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    return r;
}

static struct device_spec spec_for(const char *serial, int suite)
{
    struct device_spec s = {.serial = serial, .suite = suite, .counter_mode = COUNTER_STRICT};
    return s;
}

static int file_contains(const char *path, const uint8_t *needle, size_t n)
{
    FILE *f = fopen(path, "rb");
    unsigned char *p;
    long len;
    int found = 0;

    if (!f)
        return 0;
    fseek(f, 0, SEEK_END);
    len = ftell(f);
    fseek(f, 0, SEEK_SET);
    p = malloc(len > 0 ? (size_t)len : 1);
    if (p && fread(p, 1, (size_t)len, f) == (size_t)len)
        found = memmem(p, (size_t)len, needle, n) != NULL;
    free(p);
    fclose(f);
    return found;
}

static void test_profile_auth_hash(void)
{
    struct registry *r = open_reg();
    struct profile_secret sec;
    struct profile_info *ps = NULL;
    struct arena a;
    size_t n = 0;
    char err[256], hex[2 * SP_HASH_LEN + 1] = "";
    int found = 0;

    arena_init(&a, 1 << 20);
    CHECK_EQ_INT(registry_profile_add(r, "acme", "ate2bd319014b24e0a8aca9f00aea4c0d0", &sec, err,
                                      sizeof err),
                 0);
    CHECK_EQ_STR(sec.token, "ate2bd319014b24e0a8aca9f00aea4c0d0");
    CHECK_EQ_INT(registry_profile_add(r, "acme", NULL, &sec, err, sizeof err), SP_ERR_EXISTS);
    CHECK_EQ_INT(registry_profile_add(r, "other", "ate2bd319014b24e0a8aca9f00aea4c0d0", &sec, err,
                                      sizeof err),
                 SP_ERR_EXISTS);
    CHECK_EQ_INT(registry_profile_add(r, "bad", "at1234", &sec, err, sizeof err), SP_ERR_INVAL);
    CHECK_EQ_INT(registry_profile_add(r, "bad name", NULL, &sec, err, sizeof err), SP_ERR_INVAL);
    CHECK_EQ_INT(registry_profile_add(r, "fresh", NULL, &sec, err, sizeof err), 0);
    CHECK_EQ_INT(strlen(sec.token), 2 + SP_TOKEN_HEX_LEN);
    CHECK(strncmp(sec.token, "at", 2) == 0);
    CHECK_EQ_INT(registry_profile_list(r, &a, &ps, &n), 0);
    CHECK_EQ_INT(n, 2);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(ps[i].name, "acme") == 0) {
            CHECK_EQ_INT(sp_hex_encode(ps[i].auth_hash, SP_HASH_LEN, hex, sizeof hex), 0);
            found = 1;
        }
    }
    CHECK(found);
    CHECK_EQ_STR(hex, "4deedd7bab8817ec");
    arena_cleanup(&a);
    registry_close(r);
}

/* Removal takes the replay counter along when bucket.sql's table exists. */
static void check_remove_takes_counter(struct registry *r)
{
    sqlite3 *db = NULL;
    char path[512];
    snprintf(path, sizeof path, "%s/sealpipe.db", data_dir);
    CHECK_EQ_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_exec(db,
                              "CREATE TABLE IF NOT EXISTS device_counters (serial TEXT "
                              "PRIMARY KEY, last_counter INTEGER NOT NULL, updated_at INTEGER "
                              "NOT NULL); INSERT INTO device_counters VALUES ('sensor-02', 7, "
                              "0), ('sensor-01', 3, 0);",
                              NULL, NULL, NULL),
                 SQLITE_OK);
    CHECK_EQ_INT(registry_device_remove(r, "sensor-02"), 0);
    sqlite3_stmt *st = NULL;
    CHECK_EQ_INT(
        sqlite3_prepare_v2(db, "SELECT group_concat(serial) FROM device_counters", -1, &st, NULL),
        SQLITE_OK);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_EQ_STR((const char *)sqlite3_column_text(st, 0), "sensor-01");
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_device_add_get_list_remove(void)
{
    struct registry *r = open_reg();
    struct device_spec s = spec_for("sensor-01", SP_SUITE_CHACHA20_POLY1305);
    struct device_secrets sec, sec2;
    struct device_info d, *ds = NULL;
    struct arena a;
    uint8_t dh[SP_HASH_LEN];
    size_t n = 0;
    char err[256] = "";

    arena_init(&a, 1 << 20);
    s.name = "Kitchen sensor";
    s.tags_json = "{\"room\":\"kitchen\",\"floor\":\"1\"}";
    s.parser = "decoder";
    s.encryption_required = 1;
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), 0);
    CHECK_EQ_INT(strlen(sec.token), 36);
    CHECK(sec.token[14] == '4');
    CHECK_EQ_INT(sec.suite, SP_SUITE_CHACHA20_POLY1305);
    CHECK_EQ_INT(sec.key_len, 32);
    CHECK(sec.profile_token[0] == 'a'); /* "default" was created now */
    sp_device_hash("sensor-01", 9, dh);
    CHECK_EQ_MEM(sec.device_hash, dh, SP_HASH_LEN);

    /* The second device joins the existing default profile. */
    s = spec_for("sensor-02", -1);
    CHECK_EQ_INT(registry_device_add(r, &s, &sec2, err, sizeof err), 0);
    CHECK_EQ_INT(sec2.profile_token[0], 0);
    CHECK_EQ_INT(sec2.suite, -1);
    CHECK_EQ_INT(sec2.key_len, 0);
    CHECK_EQ_MEM(sec2.auth_hash, sec.auth_hash, SP_HASH_LEN);

    CHECK_EQ_INT(registry_device_get(r, "sensor-01", &a, &d), 0);
    CHECK_EQ_STR(d.serial, "sensor-01");
    CHECK_EQ_STR(d.name, "Kitchen sensor");
    CHECK_EQ_STR(d.tags_json, "{\"room\":\"kitchen\",\"floor\":\"1\"}");
    CHECK_EQ_STR(d.params_json, "{}");
    CHECK_EQ_STR(d.parser, "decoder");
    CHECK_EQ_STR(d.profile, "default");
    CHECK_EQ_INT(d.encryption_required, 1);
    CHECK_EQ_INT(d.suite, SP_SUITE_CHACHA20_POLY1305);
    CHECK_EQ_MEM(d.device_hash, dh, SP_HASH_LEN);
    CHECK_EQ_MEM(d.auth_hash, sec.auth_hash, SP_HASH_LEN);
    CHECK(d.created_ms > 0);
    CHECK_EQ_INT(registry_device_get(r, "sensor-02", &a, &d), 0);
    CHECK_EQ_STR(d.name, "sensor-02");
    CHECK(d.parser == NULL);
    CHECK_EQ_INT(d.suite, -1);
    CHECK_EQ_INT(registry_device_get(r, "nope", &a, &d), SP_ERR_NODEVICE);

    CHECK_EQ_INT(registry_device_list(r, &a, &ds, &n), 0);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_STR(ds[0].serial, "sensor-01");
        CHECK_EQ_STR(ds[1].serial, "sensor-02");
    }

    check_remove_takes_counter(r);
    CHECK_EQ_INT(registry_device_get(r, "sensor-02", &a, &d), SP_ERR_NODEVICE);
    CHECK_EQ_INT(registry_device_remove(r, "sensor-02"), SP_ERR_NODEVICE);
    CHECK_EQ_INT(registry_device_list(r, &a, &ds, &n), 0);
    CHECK_EQ_INT(n, 1);
    arena_cleanup(&a);
    registry_close(r);
}

/*
 * The cache holds a fleet larger than its first table (8,192 slots, 4,096
 * devices): it grows instead of filling, so the next batch's sync keeps it,
 * and what it handed out before it grew is still valid (ASan checks that
 * the results do not live in the table it moved).
 */
static void test_devcache_fleet(void)
{
    enum { FLEET = 5000 };
    struct registry *r = open_reg();
    struct device_secrets sec;
    const struct device_info *first, *d, *again;
    char serial[32], err[256] = "";

    for (int i = 0; i < FLEET; i++) {
        snprintf(serial, sizeof serial, "fleet-%05d", i);
        struct device_spec s = spec_for(serial, -1);
        CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), 0);
    }
    struct devcache *c = devcache_new(r);
    CHECK(c != NULL);
    CHECK_EQ_INT(devcache_sync(c), 0);
    CHECK_EQ_INT(devcache_device(c, "fleet-00000", &first), 0);
    for (int i = 1; i < FLEET; i++) {
        snprintf(serial, sizeof serial, "fleet-%05d", i);
        CHECK_EQ_INT(devcache_device(c, serial, &d), 0);
        CHECK_EQ_STR(d->serial, serial);
    }
    CHECK_EQ_STR(first->serial, "fleet-00000");
    /* A rename behind the cache's back (the generation unchanged): a cache
     * that kept the fleet does not see it; one that was emptied would. */
    char path[600];
    sqlite3 *db = NULL;
    snprintf(path, sizeof path, "%s/sealpipe.db", data_dir);
    CHECK(sqlite3_open(path, &db) == SQLITE_OK);
    CHECK(sqlite3_exec(db,
                       "BEGIN; UPDATE devices SET name = 'renamed' WHERE serial = 'fleet-00000';"
                       " UPDATE registry_generation SET n = n - 1; COMMIT",
                       NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    CHECK_EQ_INT(devcache_sync(c), 0);
    CHECK_EQ_INT(devcache_device(c, "fleet-00000", &again), 0);
    CHECK_EQ_STR(again->name, "fleet-00000"); /* still cached: not read again */
    devcache_free(c);
    registry_close(r);
}

static void test_device_errors(void)
{
    struct registry *r = open_reg();
    struct device_spec s = spec_for("err-01", SP_SUITE_AES128_CCM);
    struct device_secrets sec;
    char err[256] = "", longserial[102];

    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), 0);
    CHECK_EQ_INT(sec.key_len, 16);
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), SP_ERR_EXISTS);
    CHECK(strstr(err, "already exists") != NULL);

    s = spec_for("bad serial", -1);
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), SP_ERR_INVAL);
    CHECK(strstr(err, "serial") != NULL);
    s.serial = "";
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), SP_ERR_INVAL);
    memset(longserial, 'a', 101);
    longserial[101] = '\0';
    s.serial = longserial;
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), SP_ERR_INVAL);
    longserial[100] = '\0'; /* exactly 100 is fine */
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), 0);

    s = spec_for("err-02", 9);
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), SP_ERR_INVAL);
    CHECK(strstr(err, "cipher") != NULL);
    s = spec_for("err-02", -1);
    s.encryption_required = 1;
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), SP_ERR_INVAL);
    s = spec_for("err-02", -1);
    s.tags_json = "{\"a\":1}";
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), SP_ERR_INVAL);
    CHECK(strstr(err, "tags") != NULL);
    s.tags_json = "{\"a\":\"b\"} x";
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), SP_ERR_INVAL);
    s.tags_json = "{\"a\":\"\xff\"}";
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), SP_ERR_INVAL);
    s.tags_json = " { \"a\" : \"b\\u00e9\\n\" , \"c\":\"\xc3\xa9\" } ";
    s.profile = "missing";
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), SP_ERR_NOTFOUND);
    s.profile = NULL;
    s.parser = "../etc/passwd";
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), SP_ERR_INVAL);
    s.parser = NULL;
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), 0);
    CHECK_EQ_INT(registry_device_remove(r, "err-02"), 0);
    CHECK_EQ_INT(registry_device_remove(r, "err-01"), 0);
    CHECK_EQ_INT(registry_device_remove(r, longserial), 0);
    registry_close(r);
}

static void test_tokens(void)
{
    struct registry *r = open_reg();
    struct device_spec s = spec_for("tok-01", -1);
    struct device_secrets sec;
    struct device_info d;
    struct token_info *ts = NULL;
    struct arena a;
    char err[256] = "", t1[37], t2[37], prefix[9];
    int64_t now = test_now_ms();
    size_t n = 0;
    int perm = -1;

    arena_init(&a, 1 << 20);
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), 0);
    CHECK_EQ_INT(registry_token_check(r, sec.token, now, &a, &d, &perm), 0);
    CHECK_EQ_STR(d.serial, "tok-01");
    CHECK_EQ_INT(perm, TOKEN_FULL);

    CHECK_EQ_INT(registry_token_add(r, "tok-01", "reader", TOKEN_READ, 0, t1), 0);
    CHECK_EQ_INT(registry_token_add(r, "tok-01", "reader", TOKEN_READ, 0, t2), SP_ERR_EXISTS);
    CHECK_EQ_INT(registry_token_add(r, "nope", "x", TOKEN_READ, 0, t2), SP_ERR_NODEVICE);
    CHECK_EQ_INT(registry_token_add(r, "tok-01", "x", 7, 0, t2), SP_ERR_INVAL);
    CHECK_EQ_INT(registry_token_add(r, "tok-01", "soon", TOKEN_WRITE, now + 1000, t2), 0);
    CHECK(strcmp(t1, t2) != 0);

    CHECK_EQ_INT(registry_token_check(r, t1, now, &a, &d, &perm), 0);
    CHECK_EQ_INT(perm, TOKEN_READ);
    /* Expiry: valid before, refused at and after expires_ms. */
    CHECK_EQ_INT(registry_token_check(r, t2, now + 999, &a, &d, &perm), 0);
    CHECK_EQ_INT(perm, TOKEN_WRITE);
    CHECK_EQ_INT(registry_token_check(r, t2, now + 2000, &a, &d, &perm), SP_ERR_TOKEN);
    CHECK_EQ_INT(
        registry_token_check(r, "00000000-0000-4000-8000-000000000000", now, &a, &d, &perm),
        SP_ERR_TOKEN);
    CHECK_EQ_INT(registry_token_check(r, "short", now, &a, &d, &perm), SP_ERR_TOKEN);

    CHECK_EQ_INT(registry_token_list(r, "tok-01", &a, &ts, &n), 0);
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK_EQ_STR(ts[0].name, "default");
        CHECK_EQ_STR(ts[1].name, "reader");
        CHECK_EQ_INT(ts[1].perm, TOKEN_READ);
        CHECK(strncmp(ts[1].prefix, t1, 8) == 0);
        CHECK_EQ_INT(ts[2].expires_ms, now + 1000);
        CHECK_EQ_INT(ts[0].revoked_ms, 0);
    }
    CHECK_EQ_INT(registry_token_list(r, "nope", &a, &ts, &n), SP_ERR_NODEVICE);

    /* Revoke by name, by prefix; unknown names. */
    CHECK_EQ_INT(registry_token_revoke(r, "tok-01", "reader"), 0);
    CHECK_EQ_INT(registry_token_check(r, t1, now, &a, &d, &perm), SP_ERR_TOKEN);
    memcpy(prefix, sec.token, 8);
    prefix[8] = '\0';
    CHECK_EQ_INT(registry_token_revoke(r, "tok-01", prefix), 0);
    CHECK_EQ_INT(registry_token_check(r, sec.token, now, &a, &d, &perm), SP_ERR_TOKEN);
    CHECK_EQ_INT(registry_token_revoke(r, "tok-01", "nothing"), SP_ERR_NOTFOUND);
    CHECK_EQ_INT(registry_token_revoke(r, "nope", "reader"), SP_ERR_NODEVICE);
    CHECK_EQ_INT(registry_token_list(r, "tok-01", &a, &ts, &n), 0);
    CHECK(n == 3 && ts[0].revoked_ms > 0 && ts[1].revoked_ms > 0 && ts[2].revoked_ms == 0);

    /* A removed device's tokens stop working. */
    CHECK_EQ_INT(registry_token_add(r, "tok-01", "last", TOKEN_FULL, 0, t1), 0);
    CHECK_EQ_INT(registry_device_remove(r, "tok-01"), 0);
    CHECK_EQ_INT(registry_token_check(r, t1, now, &a, &d, &perm), SP_ERR_TOKEN);

    CHECK_EQ_STR(registry_perm_name(TOKEN_WRITE), "write");
    CHECK_EQ_INT(registry_perm_parse("read"), TOKEN_READ);
    CHECK(registry_perm_parse("admin") < 0);
    CHECK(registry_perm_name(3) == NULL);
    arena_cleanup(&a);
    registry_close(r);
}

/* TagoTiPs.md §2.4: keys derived from the profile token and the serial. */
static void test_derived_keys(void)
{
    struct registry *r = NULL;
    char dir[600];
    struct device_spec s = spec_for("drv-01", SP_SUITE_AES128_CCM);
    struct device_secrets sec, rot;
    struct profile_secret ps;
    uint8_t want[32];
    char err[256] = "";
    const char *spec_token = "ate2bd319014b24e0a8aca9f00aea4c0d0";

    /* A registry of its own: the first device must create the profile. */
    snprintf(dir, sizeof dir, "%s/derived", data_dir);
    CHECK(mkdir(dir, 0700) == 0);
    CHECK_EQ_INT(registry_open(dir, &r, err, sizeof err), 0);
    if (!r)
        return;
    /* The profile is created by this call: its new token is used. */
    s.derive = 1;
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), 0);
    CHECK(sec.profile_token[0] != '\0');
    CHECK_EQ_INT(sp_derive_key(sec.profile_token, strlen(sec.profile_token), "drv-01", 6, want, 16),
                 0);
    CHECK_EQ_INT(sec.key_len, 16);
    CHECK_EQ_MEM(sec.key, want, 16);

    /* An existing profile needs its token, and only its token. */
    CHECK_EQ_INT(registry_profile_add(r, "spec", spec_token, &ps, err, sizeof err), 0);
    s = spec_for("sensor-01", SP_SUITE_CHACHA20_POLY1305);
    s.profile = "spec";
    s.derive = 1;
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), SP_ERR_INVAL);
    CHECK(strstr(err, "--token") != NULL);
    s.derive_token = "at00000000000000000000000000000000";
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), SP_ERR_INVAL);
    s.derive_token = spec_token;
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), 0);
    /* The spec's vector: e5 05 f0 3c ... 19 64 (32 bytes for ChaCha20). */
    CHECK_EQ_INT(sp_derive_key(spec_token, strlen(spec_token), "sensor-01", 9, want, 32), 0);
    CHECK_EQ_INT(want[0], 0xe5);
    CHECK_EQ_INT(want[31], 0x64);
    CHECK_EQ_MEM(sec.key, want, 32);

    /* Rotation to a derived key of another suite, and back to a random one. */
    CHECK_EQ_INT(
        registry_key_rotate(r, "sensor-01", SP_SUITE_AES128_GCM, spec_token, &rot, err, sizeof err),
        0);
    CHECK_EQ_MEM(rot.key, want, 16);
    CHECK_EQ_INT(registry_key_rotate(r, "sensor-01", -1, "at11111111111111111111111111111111", &rot,
                                     err, sizeof err),
                 SP_ERR_INVAL);
    CHECK_EQ_INT(registry_key_rotate(r, "sensor-01", -1, NULL, &rot, err, sizeof err), 0);
    CHECK(memcmp(rot.key, want, 16) != 0);
    registry_close(r);
}

/*
 * master.key is 0600, and refused once others may read it; a lost master key
 * is not silently replaced while sealed keys remain.
 */
static void check_master_key_file(void)
{
    struct registry *r;
    struct device_secrets rot;
    struct stat st;
    char err[256] = "", path[512];

    snprintf(path, sizeof path, "%s/master.key", data_dir);
    CHECK_EQ_INT(stat(path, &st), 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0600);
    CHECK_EQ_INT(st.st_size, 32);
    CHECK_EQ_INT(chmod(path, 0644), 0);
    r = open_reg();
    CHECK_EQ_INT(registry_key_rotate(r, "key-01", -1, NULL, &rot, err, sizeof err), SP_ERR_IO);
    CHECK(strstr(err, "chmod 600") != NULL);
    registry_close(r);
    CHECK_EQ_INT(chmod(path, 0600), 0);
    r = open_reg();
    CHECK_EQ_INT(registry_key_rotate(r, "key-01", -1, NULL, &rot, err, sizeof err), 0);
    registry_close(r);

    /* A lost master key is not silently replaced while sealed keys remain. */
    {
        char saved[520];
        snprintf(saved, sizeof saved, "%s.saved", path);
        CHECK_EQ_INT(rename(path, saved), 0);
        r = open_reg();
        CHECK_EQ_INT(registry_key_rotate(r, "key-01", -1, NULL, &rot, err, sizeof err), SP_ERR_IO);
        CHECK(strstr(err, "restore") != NULL);
        CHECK(access(path, F_OK) != 0);
        registry_close(r);
        CHECK_EQ_INT(rename(saved, path), 0);
    }
}

static void test_keys(void)
{
    struct registry *r = open_reg();
    struct device_spec s = spec_for("key-01", SP_SUITE_AES256_GCM);
    struct device_secrets sec, rot;
    struct device_key *ks = NULL;
    struct arena a;
    uint8_t key0[SP_MAX_KEY_LEN];
    char err[256] = "", path[512], wal[520];
    size_t n = 0;
    int64_t now;

    arena_init(&a, 1 << 20);
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), 0);
    CHECK_EQ_INT(sec.key_len, 32);
    memcpy(key0, sec.key, sizeof key0);

    now = test_now_ms();
    CHECK_EQ_INT(registry_keys_for(r, sec.auth_hash, sec.device_hash, now, 1000, &a, &ks, &n), 0);
    CHECK_EQ_INT(n, 1);
    if (n == 1) {
        CHECK_EQ_STR(ks[0].serial, "key-01");
        CHECK_EQ_INT(ks[0].suite, SP_SUITE_AES256_GCM);
        CHECK_EQ_INT(ks[0].key_len, 32);
        CHECK_EQ_MEM(ks[0].key, key0, 32);
        CHECK_EQ_INT(ks[0].retired_ms, 0);
    }
    /* Wrong device hash: nothing. */
    {
        uint8_t other[SP_HASH_LEN] = {0};
        CHECK_EQ_INT(registry_keys_for(r, sec.auth_hash, other, now, 1000, &a, &ks, &n), 0);
        CHECK_EQ_INT(n, 0);
    }

    /* Rotation keeps the suite; the old key opens only within the grace. */
    CHECK_EQ_INT(registry_key_rotate(r, "key-01", -1, NULL, &rot, err, sizeof err), 0);
    CHECK_EQ_INT(rot.suite, SP_SUITE_AES256_GCM);
    CHECK_EQ_INT(rot.key_len, 32);
    CHECK(memcmp(rot.key, key0, 32) != 0);
    CHECK_EQ_MEM(rot.auth_hash, sec.auth_hash, SP_HASH_LEN);
    CHECK_EQ_MEM(rot.device_hash, sec.device_hash, SP_HASH_LEN);
    now = test_now_ms();
    CHECK_EQ_INT(registry_keys_for(r, sec.auth_hash, sec.device_hash, now, 60000, &a, &ks, &n), 0);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_MEM(ks[0].key, rot.key, 32);
        CHECK_EQ_INT(ks[0].retired_ms, 0);
        CHECK_EQ_MEM(ks[1].key, key0, 32);
        CHECK(ks[1].retired_ms > 0);
    }
    CHECK_EQ_INT(
        registry_keys_for(r, sec.auth_hash, sec.device_hash, now + 120000, 60000, &a, &ks, &n), 0);
    CHECK_EQ_INT(n, 1);
    if (n == 1)
        CHECK_EQ_MEM(ks[0].key, rot.key, 32);

    /* A new suite on rotation; unknown devices. */
    CHECK_EQ_INT(registry_key_rotate(r, "key-01", SP_SUITE_AES128_CCM, NULL, &rot, err, sizeof err),
                 0);
    CHECK_EQ_INT(rot.key_len, 16);
    CHECK_EQ_INT(registry_key_rotate(r, "nope", -1, NULL, &rot, err, sizeof err), SP_ERR_NODEVICE);
    s = spec_for("key-02", -1);
    CHECK_EQ_INT(registry_device_add(r, &s, &sec, err, sizeof err), 0);
    CHECK_EQ_INT(registry_key_rotate(r, "key-02", -1, NULL, &rot, err, sizeof err), SP_ERR_INVAL);
    registry_close(r);

    /* At rest: the key bytes are nowhere in the database files. */
    snprintf(path, sizeof path, "%s/sealpipe.db", data_dir);
    snprintf(wal, sizeof wal, "%s-wal", path);
    CHECK(file_contains(path, (const uint8_t *)"key-01", 6)); /* the check can find things */
    CHECK(!file_contains(path, key0, 32));
    CHECK(!file_contains(wal, key0, 32));

    check_master_key_file();

    sodium_memzero(key0, sizeof key0);
    arena_cleanup(&a);
}

/*
 * The queries registry_schema.h shares with the broker plugin run against
 * the tables schemas/registry.sql creates, and their columns are where the
 * header says.
 */
static void test_schema_queries(void)
{
    struct registry *r = open_reg();
    struct device_secrets sec;
    struct device_spec spec = spec_for("schema-01", -1);
    char err[256] = "", path[512];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int found = 0;

    if (!r)
        return;
    CHECK_EQ_INT(registry_device_add(r, &spec, &sec, err, sizeof err), 0);
    registry_close(r);
    snprintf(path, sizeof path, "%s/sealpipe.db", data_dir);
    CHECK_EQ_INT(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_prepare_v2(db, REGISTRY_SQL_GENERATION, -1, &st, NULL), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK(sqlite3_column_int64(st, 0) > 0);
    sqlite3_finalize(st);
    CHECK_EQ_INT(sqlite3_prepare_v2(db, REGISTRY_SQL_ALL_TOKENS, -1, &st, NULL), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_column_count(st), ALL_TOKENS_SERIAL + 1);
    while (sqlite3_step(st) == SQLITE_ROW)
        if (strcmp((const char *)sqlite3_column_text(st, ALL_TOKENS_SERIAL), "schema-01") == 0) {
            found++;
            CHECK_EQ_INT(sqlite3_column_bytes(st, ALL_TOKENS_HASH), REGISTRY_TOKEN_HASH_LEN);
            CHECK_EQ_INT(sqlite3_column_int(st, ALL_TOKENS_PERM), TOKEN_FULL);
            CHECK_EQ_INT(sqlite3_column_type(st, ALL_TOKENS_REVOKED), SQLITE_NULL);
        }
    CHECK_EQ_INT(found, 1);
    sqlite3_finalize(st);
    CHECK_EQ_INT(sqlite3_prepare_v2(db, REGISTRY_SQL_ALL_DEVICES, -1, &st, NULL), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_column_count(st), ALL_DEVICES_AUTH_HASH + 1);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_bytes(st, ALL_DEVICES_AUTH_HASH), REGISTRY_HASH_LEN);
    sqlite3_finalize(st);
    CHECK_EQ_INT(sqlite3_prepare_v2(db, REGISTRY_SQL_ALL_PROFILES, -1, &st, NULL), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_column_count(st), ALL_PROFILES_NAME + 1);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_EQ_INT(sqlite3_column_bytes(st, ALL_PROFILES_AUTH_HASH), REGISTRY_HASH_LEN);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void cleanup_dir(void)
{
    const char *names[] = {"sealpipe.db", "sealpipe.db-wal", "sealpipe.db-shm", "master.key"};
    char path[512];

    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", data_dir, names[i]);
        unlink(path);
    }
    rmdir(data_dir);
    *strrchr(data_dir, '/') = '\0';
    rmdir(data_dir);
}

/* The HTTP API's tokens: full and read, names, revocation by name, prefix
 * and the token itself; only the SHA-256 is kept. */
static void test_admin_tokens(void)
{
    struct registry *r = open_reg();
    struct token_info *ts = NULL;
    struct arena a;
    char full[37], ro[37], other[37], prefix[9];
    size_t n = 0;
    int perm = -1;

    arena_init(&a, 1 << 20);
    CHECK_EQ_INT(registry_admin_token_add(r, "ops", TOKEN_FULL, full), 0);
    CHECK_EQ_INT(registry_admin_token_add(r, NULL, TOKEN_READ, ro), 0);
    CHECK_EQ_INT(registry_admin_token_add(r, "ops", TOKEN_READ, other), SP_ERR_EXISTS);
    CHECK_EQ_INT(registry_admin_token_add(r, "x", TOKEN_WRITE, other), SP_ERR_INVAL);
    CHECK_EQ_INT(registry_admin_token_add(r, "bad name", TOKEN_FULL, other), SP_ERR_INVAL);
    CHECK_EQ_INT(registry_admin_token_check(r, full, &perm), 0);
    CHECK_EQ_INT(perm, TOKEN_FULL);
    CHECK_EQ_INT(registry_admin_token_check(r, ro, &perm), 0);
    CHECK_EQ_INT(perm, TOKEN_READ);
    CHECK_EQ_INT(registry_admin_token_check(r, "00000000-0000-4000-8000-000000000000", &perm),
                 SP_ERR_TOKEN);
    CHECK_EQ_INT(registry_admin_token_check(r, "", &perm), SP_ERR_TOKEN);

    CHECK_EQ_INT(registry_admin_token_list(r, &a, &ts, &n), 0);
    CHECK_EQ_INT(n, 2);
    if (n == 2) {
        CHECK_EQ_STR(ts[0].name, "ops");
        CHECK(strncmp(ts[1].name, ro, 8) == 0 && strncmp(ts[1].prefix, ro, 8) == 0);
        CHECK_EQ_INT(ts[1].perm, TOKEN_READ);
    }
    CHECK_EQ_INT(registry_admin_token_revoke(r, "nothing"), SP_ERR_NOTFOUND);
    CHECK_EQ_INT(registry_admin_token_revoke(r, "ops"), 0);
    CHECK_EQ_INT(registry_admin_token_check(r, full, &perm), SP_ERR_TOKEN);
    memcpy(prefix, ro, 8);
    prefix[8] = '\0';
    CHECK_EQ_INT(registry_admin_token_revoke(r, prefix), 0);
    CHECK_EQ_INT(registry_admin_token_check(r, ro, &perm), SP_ERR_TOKEN);
    CHECK_EQ_INT(registry_admin_token_add(r, "again", TOKEN_FULL, other), 0);
    CHECK_EQ_INT(registry_admin_token_revoke(r, other), 0); /* the whole token, pasted */
    CHECK_EQ_INT(registry_admin_token_check(r, other, &perm), SP_ERR_TOKEN);
    CHECK_EQ_INT(registry_admin_token_list(r, &a, &ts, &n), 0);
    CHECK(n == 3 && ts[0].revoked_ms > 0 && ts[1].revoked_ms > 0 && ts[2].revoked_ms > 0);
    arena_cleanup(&a);
    registry_close(r);
}

int main(void)
{
    char tmpl[] = "/tmp/sp_registry_XXXXXX";

    if (sp_init() != 0 || !mkdtemp(tmpl))
        return 1;
    /* A data directory that does not exist yet: registry_open creates it. */
    snprintf(data_dir, sizeof data_dir, "%s/data", tmpl);
    RUN(test_profile_auth_hash);
    RUN(test_device_add_get_list_remove);
    RUN(test_device_errors);
    RUN(test_devcache_fleet);
    RUN(test_tokens);
    RUN(test_admin_tokens);
    RUN(test_keys);
    RUN(test_derived_keys);
    RUN(test_schema_queries);
    {
        struct stat st;
        CHECK(stat(data_dir, &st) == 0 && (st.st_mode & 0777) == 0700);
    }
    cleanup_dir();
    return check_done();
}
