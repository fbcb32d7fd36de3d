/*
 * registry_keys.c - encryption keys: the master key (<data_dir>/master.key,
 * read or created on first need), keys sealed under it with the serial as
 * associated data, looked up by envelope hashes and rotated (see registry.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "registry_internal.h"
#include "base/errors.h"

/* ------------------------------------------------------------------------ */
/* Master key and key sealing                                               */
/* ------------------------------------------------------------------------ */

static int read_master(struct registry *r, const char *path, int fd, char *err, size_t errlen)
{
    struct stat st;
    size_t got = 0;

    if (fstat(fd, &st) != 0) {
        registry__seterr(err, errlen, "%s: %s", path, strerror(errno));
        return SP_ERR_IO;
    }
    if (!S_ISREG(st.st_mode)) {
        registry__seterr(err, errlen, "%s: not a regular file", path);
        return SP_ERR_IO;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        registry__seterr(err, errlen,
                         "%s: group or others can access it (mode %04o); refusing to use it "
                         "(run: chmod 600 %s)",
                         path, (unsigned)(st.st_mode & 07777), path);
        return SP_ERR_IO;
    }
    if (st.st_size != REGISTRY_MASTER_LEN) {
        registry__seterr(err, errlen, "%s: expected %d bytes, found %lld", path,
                         REGISTRY_MASTER_LEN, (long long)st.st_size);
        return SP_ERR_IO;
    }
    while (got < REGISTRY_MASTER_LEN) {
        ssize_t k = read(fd, r->master + got, REGISTRY_MASTER_LEN - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            sodium_memzero(r->master, sizeof r->master);
            registry__seterr(err, errlen, "%s: short read", path);
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
        registry__seterr(err, errlen, "%s: path too long", path);
        return SP_ERR_IO;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        registry__seterr(err, errlen, "%s: %s", tmp, strerror(errno));
        return SP_ERR_IO;
    }
    randombytes_buf(key, sizeof key);
    while (off < sizeof key) {
        ssize_t k = write(fd, key + off, sizeof key - off);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            registry__seterr(err, errlen, "%s: %s", tmp, strerror(errno));
            goto fail_file;
        }
        off += (size_t)k;
    }
    if (fsync(fd) != 0) {
        registry__seterr(err, errlen, "%s: fsync: %s", tmp, strerror(errno));
        goto fail_file;
    }
    if (link(tmp, path) != 0) {
        rc = errno == EEXIST ? 1 : SP_ERR_IO; /* 1: someone else won; read theirs */
        if (rc < 0)
            registry__seterr(err, errlen, "%s: %s", path, strerror(errno));
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
    sqlite3_stmt *s = registry__stmt(r, ST_KEYS_EXIST);
    int64_t n = -1;

    if (s && sqlite3_step(s) == SQLITE_ROW)
        n = sqlite3_column_int64(s, 0);
    registry__done(s);
    if (n < 0)
        return registry__dberr(r, err, errlen);
    if (n > 0) {
        registry__seterr(
            err, errlen,
            "%s is missing but the registry holds %lld keys sealed under it; restore it "
            "from a backup",
            path, (long long)n);
        return SP_ERR_IO;
    }
    return SP_OK;
}

/* Reads or creates the master key, once per registry. */
int registry__master_load(struct registry *r, char *err, size_t errlen)
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
            registry__seterr(err, errlen, "%s: %s", path, strerror(errno));
            return SP_ERR_IO;
        }
        if ((rc = keys_orphaned(r, path, err, errlen)))
            return rc;
        rc = create_master(r, path, err, errlen);
        if (rc <= 0)
            return rc;
    }
    registry__seterr(err, errlen, "%s: could not be created", path);
    return SP_ERR_IO;
}

int registry_load_master(struct registry *r, char *err, size_t errlen)
{
    return registry__master_load(r, err, errlen);
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

/*
 * Stores a new key for device dev: random, or derived from token and the
 * serial (TagoTiPs.md §2.4) when token is not NULL. The token must be the
 * one whose hash is auth_hash (the device's profile).
 */
int registry__key_insert(struct registry *r, int64_t dev, const char *serial, int suite,
                         const char *token, const uint8_t auth_hash[SP_HASH_LEN],
                         uint8_t key[SP_MAX_KEY_LEN], size_t *key_len, char *err, size_t errlen)
{
    uint8_t nonce[REGISTRY_NONCE_LEN], enc[REGISTRY_SEAL_LEN], h[SP_HASH_LEN];
    size_t len = sp_suite_key_len(suite), enc_len;
    sqlite3_stmt *s;
    int rc;

    if (len == 0 || len > SP_MAX_KEY_LEN) {
        registry__seterr(err, errlen, "unknown cipher suite %d", suite);
        return SP_ERR_INVAL;
    }
    if (token == NULL) {
        randombytes_buf(key, len);
    } else if (!registry__profile_token_ok(token) ||
               sp_auth_hash(token, strlen(token), h) != SP_OK ||
               sodium_memcmp(h, auth_hash, SP_HASH_LEN) != 0) {
        registry__seterr(err, errlen,
                         "that token is not the authorization token of the device's profile");
        return SP_ERR_INVAL;
    } else if (sp_derive_key(token, strlen(token), serial, strlen(serial), key, len) != SP_OK) {
        registry__seterr(err, errlen, "key derivation failed");
        return SP_ERR_CRYPTO;
    }
    if ((rc = key_seal(r, serial, key, len, nonce, enc, &enc_len))) {
        registry__seterr(err, errlen, "sealing the key failed");
        goto fail;
    }
    if (!(s = registry__stmt(r, ST_KEY_INSERT))) {
        rc = registry__dberr(r, err, errlen);
        goto fail;
    }
    sqlite3_bind_int64(s, 1, dev);
    sqlite3_bind_int(s, 2, suite);
    sqlite3_bind_blob(s, 3, nonce, sizeof nonce, SQLITE_STATIC);
    sqlite3_bind_blob(s, 4, enc, (int)enc_len, SQLITE_STATIC);
    sqlite3_bind_int64(s, 5, clock_wall_ms());
    rc = sqlite3_step(s) == SQLITE_DONE ? SP_OK : registry__dberr(r, err, errlen);
    registry__done(s);
    if (rc == SP_OK) {
        *key_len = len;
        return SP_OK;
    }
fail:
    sodium_memzero(key, SP_MAX_KEY_LEN);
    return rc;
}

/* Reads a row of KEYS_FOR, opening the sealed key (the master key is loaded
 * on the first row, so a lookup that finds nothing never creates it). */
static int read_key_row(struct registry *r, sqlite3_stmt *s, struct arena *a, void *row)
{
    struct device_key *k = row;
    int rc;

    if (!r->have_master && (rc = registry__master_load(r, NULL, 0)))
        return rc;
    k->device_id = sqlite3_column_int64(s, 0);
    k->suite = sqlite3_column_int(s, 2);
    k->retired_ms = sqlite3_column_int64(s, 5); /* NULL reads as 0: current */
    if ((rc = registry__col_text(s, 1, a, &k->serial)))
        return rc;
    return key_open(r, k->serial, sqlite3_column_blob(s, 3), (size_t)sqlite3_column_bytes(s, 3),
                    sqlite3_column_blob(s, 4), (size_t)sqlite3_column_bytes(s, 4), k->key,
                    &k->key_len);
}

int registry_keys_for(struct registry *r, const uint8_t auth_hash[SP_HASH_LEN],
                      const uint8_t device_hash[SP_HASH_LEN], int64_t now, int64_t grace_ms,
                      struct arena *a, struct device_key **out, size_t *n)
{
    sqlite3_stmt *s;

    if (!(s = registry__stmt(r, ST_KEYS_FOR)))
        return SP_ERR_DB;
    sqlite3_bind_blob(s, 1, auth_hash, SP_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_blob(s, 2, device_hash, SP_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, now);
    sqlite3_bind_int64(s, 4, grace_ms);
    return registry__collect(r, s, sizeof **out, read_key_row, a, (void **)out, n);
}

/* The device's hash and its profile's auth hash, into sec. */
static int device_profile_hashes(struct registry *r, int64_t dev, struct device_secrets *sec)
{
    sqlite3_stmt *s = registry__stmt(r, ST_DEVICE_HASHES);
    int rc;

    if (!s)
        return SP_ERR_DB;
    sqlite3_bind_int64(s, 1, dev);
    if ((rc = registry__step_device(s)) == SP_OK)
        rc = registry__col_hash(s, 0, sec->device_hash) ? SP_ERR_DB
                                                        : registry__col_hash(s, 1, sec->auth_hash);
    registry__done(s);
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
        registry__seterr(err, errlen, "unknown cipher suite %d", suite);
        return SP_ERR_INVAL;
    }
    if ((rc = registry__master_load(r, err, errlen)) || (rc = registry__begin(r, err, errlen)))
        return rc;
    if ((rc = registry__device_id(r, serial, &dev))) {
        if (rc == SP_ERR_NODEVICE)
            registry__seterr(err, errlen, "unknown device %s", serial);
        goto out;
    }
    if (suite < 0) {
        if (!(s = registry__stmt(r, ST_KEY_CURRENT))) {
            rc = registry__dberr(r, err, errlen);
            goto out;
        }
        sqlite3_bind_int64(s, 1, dev);
        step = sqlite3_step(s);
        suite = step == SQLITE_ROW ? sqlite3_column_int(s, 0) : -1;
        registry__done(s);
        if (step != SQLITE_ROW && step != SQLITE_DONE) {
            rc = registry__dberr(r, err, errlen);
            goto out;
        }
        if (suite < 0) {
            registry__seterr(err, errlen, "device %s has no key; name a cipher for its first one",
                             serial);
            rc = SP_ERR_INVAL;
            goto out;
        }
    }
    if (!(s = registry__stmt(r, ST_KEY_RETIRE))) {
        rc = registry__dberr(r, err, errlen);
        goto out;
    }
    sqlite3_bind_int64(s, 1, dev);
    sqlite3_bind_int64(s, 2, clock_wall_ms());
    step = sqlite3_step(s);
    registry__done(s);
    if (step != SQLITE_DONE) {
        rc = registry__dberr(r, err, errlen);
        goto out;
    }
    if ((rc = device_profile_hashes(r, dev, &sec)) ||
        (rc = registry__key_insert(r, dev, serial, suite, derive_token, sec.auth_hash, sec.key,
                                   &sec.key_len, err, errlen)) ||
        (rc = registry__commit(r, err, errlen)))
        goto out;
    sec.suite = suite;
    memcpy(out, &sec, sizeof sec);
out:
    registry__rollback(r);
    sodium_memzero(&sec, sizeof sec);
    return rc;
}
