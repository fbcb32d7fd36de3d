/*
 * cred.c - the credentials every TagoTiP message derives from: the
 * authorization hash and device hash (TagoTiP.md §2, TagoTiPs.md §2.1-§2.2),
 * the optional HMAC-SHA256 key derivation (TagoTiPs.md §2.4), and the hex and
 * base64 helpers integrators use to move keys and passthrough data around.
 *
 * Called by the device CLI when provisioning and by the daemon when it
 * registers tokens and devices. Every function is pure (no state, no
 * allocation) and thread-safe once sp_init() has run. Intermediate secrets
 * (the full HMAC output, the HMAC state) are wiped before returning.
 */
#include "sealpipe.h"

#include <limits.h>
#include <string.h>
#include <sodium.h>

/* A token is hashed without its "at" prefix; a bare hex token is used as is. */
static void strip_at(const char **token, size_t *len)
{
    if (*len >= 2 && (*token)[0] == 'a' && (*token)[1] == 't') {
        *token += 2;
        *len -= 2;
    }
}

int sp_auth_hash(const char *token, size_t len, uint8_t out[SP_HASH_LEN])
{
    uint8_t digest[crypto_hash_sha256_BYTES];

    if (token == NULL || out == NULL)
        return SP_ERR_INVAL;
    strip_at(&token, &len);
    if (len == 0)
        return SP_ERR_INVAL;
    crypto_hash_sha256(digest, (const unsigned char *)token, len);
    memcpy(out, digest, SP_HASH_LEN);
    return SP_OK;
}

void sp_device_hash(const char *serial, size_t len, uint8_t out[SP_HASH_LEN])
{
    uint8_t digest[crypto_hash_sha256_BYTES];

    crypto_hash_sha256(digest, (const unsigned char *)(len ? serial : ""), len);
    memcpy(out, digest, SP_HASH_LEN);
}

/*
 * crypto_auth_hmacsha256() wants a 32-byte key, but the token's hex part is
 * 32 characters only by convention; the init/update/final API follows RFC 2104
 * for a key of any length (hashing it first when longer than the block).
 */
int sp_derive_key(const char *token, size_t token_len, const char *serial, size_t serial_len,
                  uint8_t *out, size_t key_len)
{
    crypto_auth_hmacsha256_state st;
    uint8_t mac[crypto_auth_hmacsha256_BYTES];

    if (token == NULL || out == NULL || (serial == NULL && serial_len != 0))
        return SP_ERR_INVAL;
    if (key_len != 16 && key_len != 32)
        return SP_ERR_INVAL;
    strip_at(&token, &token_len);
    if (token_len == 0)
        return SP_ERR_INVAL;

    crypto_auth_hmacsha256_init(&st, (const unsigned char *)token, token_len);
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)(serial_len ? serial : ""),
                                  serial_len);
    crypto_auth_hmacsha256_final(&st, mac);
    memcpy(out, mac, key_len);
    sodium_memzero(&st, sizeof st);
    sodium_memzero(mac, sizeof mac);
    return SP_OK;
}

int sp_hex_encode(const uint8_t *in, size_t n, char *out, size_t cap)
{
    if (out == NULL || (in == NULL && n != 0))
        return SP_ERR_INVAL;
    if (n > (SIZE_MAX - 1) / 2 || cap < 2 * n + 1)
        return SP_ERR_BUFSIZE;
    sodium_bin2hex(out, cap, n ? in : (const uint8_t *)"", n);
    return SP_OK;
}

int sp_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * 1 if the even number of characters in[0..len) are all hex digits (either
 * case). Decoded through a scratch block first, so that nothing is written to
 * the caller's buffer for bad input and a bad character is reported before a
 * short buffer.
 */
static int hex_valid(const char *in, size_t len)
{
    uint8_t scratch[64];
    size_t done, k;
    int ok = 1;

    for (done = 0; ok && done < len; done += k) {
        k = len - done < 2 * sizeof scratch ? len - done : 2 * sizeof scratch;
        ok = sodium_hex2bin(scratch, sizeof scratch, in + done, k, NULL, NULL, NULL) == 0;
    }
    sodium_memzero(scratch, sizeof scratch); /* hex is how keys travel */
    return ok;
}

int sp_hex_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    size_t bin_len = 0;

    if ((in == NULL || out == NULL) && len != 0)
        return SP_ERR_INVAL;
    if (len % 2 != 0)
        return SP_ERR_PAYLOAD;
    if (len / 2 > (size_t)INT_MAX)
        return SP_ERR_INVAL;
    if (len == 0)
        return 0;
    if (!hex_valid(in, len))
        return SP_ERR_PAYLOAD;
    if (cap < len / 2)
        return SP_ERR_BUFSIZE;
    if (sodium_hex2bin(out, cap, in, len, NULL, &bin_len, NULL) != 0 || bin_len != len / 2)
        return SP_ERR_PAYLOAD;
    return (int)bin_len;
}

int sp_base64_encode(const uint8_t *in, size_t n, char *out, size_t cap)
{
    if (out == NULL || (in == NULL && n != 0))
        return SP_ERR_INVAL;
    if (n > (SIZE_MAX / 4) * 3 - 3 ||
        cap < sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL))
        return SP_ERR_BUFSIZE;
    sodium_bin2base64(out, cap, n ? in : (const uint8_t *)"", n, sodium_base64_VARIANT_ORIGINAL);
    return SP_OK;
}

/*
 * libsodium's ORIGINAL variant already insists on padding and on zero
 * trailing bits; the length check up front makes it strict about where the
 * input ends and tells a short buffer apart from bad input.
 */
int sp_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    size_t need, bin_len = 0;
    const char *end = NULL;

    if ((in == NULL || out == NULL) && len != 0)
        return SP_ERR_INVAL;
    if (len == 0)
        return 0;
    if (len % 4 != 0)
        return SP_ERR_PAYLOAD;
    need = len / 4 * 3;
    if (in[len - 1] == '=')
        need--;
    if (in[len - 2] == '=')
        need--;
    if (need > (size_t)INT_MAX)
        return SP_ERR_INVAL;
    if (cap < need)
        return SP_ERR_BUFSIZE;
    if (sodium_base642bin(out, cap, in, len, NULL, &bin_len, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != in + len || bin_len != need)
        return SP_ERR_PAYLOAD;
    return (int)bin_len;
}
