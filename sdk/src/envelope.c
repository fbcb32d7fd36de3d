/*
 * envelope.c - TagoTiP/S envelopes (TagoTiPs.md §3, §5, §12): the 21-byte
 * header, the nonce built from it, and sealing and opening with the five AEAD
 * cipher suites.
 *
 * Devices seal and the daemon opens (and seals its answers and commands); both
 * go through here so the wire format exists once. Suite 4 (ChaCha20-Poly1305)
 * uses libsodium, suites 0-3 (AES-CCM/GCM) use OpenSSL's EVP interface with a
 * fresh context per call, so every function is thread-safe and keeps no
 * state. The header is the AEAD's associated data, so any change to it fails
 * authentication. Plaintext never survives a failed open: the output buffer
 * is wiped.
 */
#include "sealpipe.h"

#include <string.h>
#include <openssl/evp.h>
#include <sodium.h>

#define NONCE_CCM 13
#define NONCE_STD 12
#define NONCE_MAX 13

_Static_assert(SP_ENV_HEADER_LEN == 1 + 4 + SP_HASH_LEN + SP_HASH_LEN, "envelope header layout");

struct suite {
    const char *name;
    size_t key_len;
    size_t tag_len;
    size_t nonce_len;
    const EVP_CIPHER *(*evp)(void); /* NULL: libsodium ChaCha20-Poly1305 */
    int ccm;
};

static const struct suite suites[] = {
    [SP_SUITE_AES128_CCM] = {"aes-128-ccm", 16, 8, NONCE_CCM, EVP_aes_128_ccm, 1},
    [SP_SUITE_AES128_GCM] = {"aes-128-gcm", 16, 16, NONCE_STD, EVP_aes_128_gcm, 0},
    [SP_SUITE_AES256_CCM] = {"aes-256-ccm", 32, 8, NONCE_CCM, EVP_aes_256_ccm, 1},
    [SP_SUITE_AES256_GCM] = {"aes-256-gcm", 32, 16, NONCE_STD, EVP_aes_256_gcm, 0},
    [SP_SUITE_CHACHA20_POLY1305] = {"chacha20-poly1305", 32, 16, NONCE_STD, NULL, 0},
};

#define NSUITES ((int)(sizeof suites / sizeof suites[0]))

static const struct suite *suite_get(int suite)
{
    return suite >= 0 && suite < NSUITES ? &suites[suite] : NULL;
}

static int ascii_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

int sp_suite_from_name(const char *name)
{
    int i;
    size_t k;

    if (name == NULL)
        return SP_ERR_CIPHER;
    for (i = 0; i < NSUITES; i++) {
        const char *s = suites[i].name;
        for (k = 0; s[k] != '\0' && ascii_lower((unsigned char)name[k]) == s[k]; k++)
            ;
        if (s[k] == '\0' && name[k] == '\0')
            return i;
    }
    return SP_ERR_CIPHER;
}

const char *sp_suite_name(int suite)
{
    const struct suite *s = suite_get(suite);
    return s ? s->name : NULL;
}

size_t sp_suite_key_len(int suite)
{
    const struct suite *s = suite_get(suite);
    return s ? s->key_len : 0;
}

size_t sp_suite_tag_len(int suite)
{
    const struct suite *s = suite_get(suite);
    return s ? s->tag_len : 0;
}

int sp_suite_available(int suite)
{
    const struct suite *s = suite_get(suite);

    if (s == NULL)
        return 0;
    return s->evp == NULL || s->evp() != NULL;
}

int sp_env_parse_header(const uint8_t *env, size_t len, struct sp_env_header *out)
{
    const struct suite *s;
    uint8_t flags;
    int suite, version, method;

    if (env == NULL || out == NULL)
        return SP_ERR_INVAL;
    if (len < 1)
        return SP_ERR_SHORT;
    flags = env[0];
    suite = flags >> 5;
    version = (flags >> 3) & 0x3;
    method = flags & 0x7;
    if (version != 0)
        return SP_ERR_VERSION;
    s = suite_get(suite);
    if (s == NULL || !sp_suite_available(suite))
        return SP_ERR_CIPHER;
    /* 0x41 is 'A': a plaintext ACK fallback, never a flags byte (§5.3). */
    if (flags == 0x41 || method > SP_METHOD_ACK)
        return SP_ERR_METHOD;
    if (len < SP_ENV_HEADER_LEN + s->tag_len)
        return SP_ERR_SHORT;
    if (len > SP_ENV_HEADER_LEN + SP_MAX_FRAME + s->tag_len)
        return SP_ERR_ENVTOOLARGE;

    out->flags = flags;
    out->suite = suite;
    out->version = version;
    out->method = method;
    out->counter =
        (uint32_t)env[1] << 24 | (uint32_t)env[2] << 16 | (uint32_t)env[3] << 8 | (uint32_t)env[4];
    memcpy(out->auth_hash, env + 5, SP_HASH_LEN);
    memcpy(out->device_hash, env + 5 + SP_HASH_LEN, SP_HASH_LEN);
    return SP_OK;
}

/*
 * Nonce (§3.3): Flags || zero padding || DeviceHash[0..4) || Counter, taken
 * straight from the header bytes so it always matches the AAD.
 */
static void nonce_build(const struct suite *s, const uint8_t *hdr, uint8_t nonce[NONCE_MAX])
{
    size_t pad = s->nonce_len - 9;

    nonce[0] = hdr[0];
    memset(nonce + 1, 0, pad);
    memcpy(nonce + 1 + pad, hdr + 5 + SP_HASH_LEN, 4);
    memcpy(nonce + 5 + pad, hdr + 1, 4);
}

/*
 * One AEAD operation with OpenSSL. CCM insists on its order: nonce length and
 * tag (length, or expected value when decrypting) before the key, then the
 * total message length, then the AAD, then exactly one data update; a CCM
 * decrypt reports a bad tag from that data update. GCM takes the expected tag
 * before its final call. in/out are n bytes; tag is s->tag_len bytes, read
 * when decrypting and written when encrypting. Returns 0, SP_ERR_AUTH or
 * SP_ERR_CRYPTO.
 */
static int evp_aead(const struct suite *s, int enc, const uint8_t *key, const uint8_t *nonce,
                    const uint8_t *aad, const uint8_t *in, size_t n, uint8_t *out, uint8_t *tag)
{
    EVP_CIPHER_CTX *ctx;
    int outl = 0, ilen = (int)n, taglen = (int)s->tag_len;
    int rc = SP_ERR_CRYPTO;

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL)
        return SP_ERR_CRYPTO;
    if (EVP_CipherInit_ex(ctx, s->evp(), NULL, NULL, NULL, enc) != 1)
        goto out;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_IVLEN, (int)s->nonce_len, NULL) != 1)
        goto out;
    if (s->ccm && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, taglen, enc ? NULL : tag) != 1)
        goto out;
    if (EVP_CipherInit_ex(ctx, NULL, NULL, key, nonce, enc) != 1)
        goto out;
    if (s->ccm && EVP_CipherUpdate(ctx, NULL, &outl, NULL, ilen) != 1)
        goto out;
    if (EVP_CipherUpdate(ctx, NULL, &outl, aad, SP_ENV_HEADER_LEN) != 1)
        goto out;
    if (s->ccm || n > 0) {
        if (EVP_CipherUpdate(ctx, out, &outl, in, ilen) != 1) {
            rc = s->ccm && !enc ? SP_ERR_AUTH : SP_ERR_CRYPTO;
            goto out;
        }
    }
    if (!enc && !s->ccm) {
        if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, taglen, tag) != 1)
            goto out;
        if (EVP_CipherFinal_ex(ctx, out + n, &outl) != 1) {
            rc = SP_ERR_AUTH;
            goto out;
        }
    } else if (enc) {
        if (EVP_CipherFinal_ex(ctx, out + n, &outl) != 1)
            goto out;
        if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, taglen, tag) != 1)
            goto out;
    }
    rc = SP_OK;
out:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int sp_env_open(const struct sp_env_header *h, const uint8_t *env, size_t len, const uint8_t *key,
                size_t key_len, uint8_t *out, size_t cap, size_t *out_len)
{
    const struct suite *s;
    uint8_t nonce[NONCE_MAX];
    uint8_t tag[SP_ENV_MAX_TAG];
    size_t n;
    int rc;

    if (h == NULL || env == NULL || key == NULL || out_len == NULL)
        return SP_ERR_INVAL;
    s = suite_get(h->suite);
    if (s == NULL || key_len != s->key_len || len < SP_ENV_HEADER_LEN + s->tag_len ||
        len > SP_ENV_HEADER_LEN + SP_MAX_FRAME + s->tag_len || env[0] != h->flags)
        return SP_ERR_INVAL;
    n = len - SP_ENV_HEADER_LEN - s->tag_len;
    if (out == NULL || cap < n)
        return SP_ERR_BUFSIZE;

    nonce_build(s, env, nonce);
    memcpy(tag, env + len - s->tag_len, s->tag_len);
    if (s->evp == NULL) {
        rc = crypto_aead_chacha20poly1305_ietf_decrypt_detached(out, NULL, env + SP_ENV_HEADER_LEN,
                                                                n, tag, env, SP_ENV_HEADER_LEN,
                                                                nonce, key) == 0
                 ? SP_OK
                 : SP_ERR_AUTH;
    } else {
        rc = evp_aead(s, 0, key, nonce, env, env + SP_ENV_HEADER_LEN, n, out, tag);
    }
    if (rc != SP_OK) {
        sodium_memzero(out, n);
        return rc;
    }
    *out_len = n;
    return SP_OK;
}

int sp_env_seal(int suite, int method, uint32_t counter, const uint8_t auth_hash[SP_HASH_LEN],
                const uint8_t device_hash[SP_HASH_LEN], const uint8_t *key, size_t key_len,
                const uint8_t *inner, size_t inner_len, uint8_t *out, size_t cap, size_t *out_len)
{
    const struct suite *s;
    uint8_t nonce[NONCE_MAX];
    uint8_t flags;
    size_t total;
    int rc;

    if (auth_hash == NULL || device_hash == NULL || key == NULL || out_len == NULL ||
        (inner == NULL && inner_len != 0) || method < 0 || method > 7)
        return SP_ERR_INVAL;
    s = suite_get(suite);
    if (s == NULL || !sp_suite_available(suite))
        return SP_ERR_CIPHER;
    flags = (uint8_t)(suite << 5 | method);
    if (method > SP_METHOD_ACK || flags == 0x41)
        return SP_ERR_METHOD;
    if (key_len != s->key_len)
        return SP_ERR_INVAL;
    if (inner_len > SP_MAX_FRAME)
        return SP_ERR_TOOLARGE;
    total = SP_ENV_HEADER_LEN + inner_len + s->tag_len;
    if (out == NULL || cap < total)
        return SP_ERR_BUFSIZE;
    if (inner == NULL)
        inner = (const uint8_t *)"";

    out[0] = flags;
    out[1] = (uint8_t)(counter >> 24);
    out[2] = (uint8_t)(counter >> 16);
    out[3] = (uint8_t)(counter >> 8);
    out[4] = (uint8_t)counter;
    memcpy(out + 5, auth_hash, SP_HASH_LEN);
    memcpy(out + 5 + SP_HASH_LEN, device_hash, SP_HASH_LEN);
    nonce_build(s, out, nonce);

    if (s->evp == NULL) {
        rc = crypto_aead_chacha20poly1305_ietf_encrypt_detached(
                 out + SP_ENV_HEADER_LEN, out + SP_ENV_HEADER_LEN + inner_len, NULL, inner,
                 inner_len, out, SP_ENV_HEADER_LEN, NULL, nonce, key) == 0
                 ? SP_OK
                 : SP_ERR_CRYPTO;
    } else {
        rc = evp_aead(s, 1, key, nonce, out, inner, inner_len, out + SP_ENV_HEADER_LEN,
                      out + SP_ENV_HEADER_LEN + inner_len);
    }
    if (rc != SP_OK) {
        sodium_memzero(out, total);
        return rc;
    }
    *out_len = total;
    return SP_OK;
}
