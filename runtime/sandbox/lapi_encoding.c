/*
 * lapi_encoding.c - hex and base64 (see lapi.h), on libsodium's
 * constant-time codecs. The readers are also what tagotip.parse decodes a
 * passthrough body with.
 *
 * Strict, as sdk/lua/README.md documents: hex in either case, an even
 * number of digits; base64 in the standard (+/) or the URL-safe (-_)
 * alphabet but never both in one text, with padding either absent or
 * exactly right, and canonical (the unused low bits of the last character
 * must be zero, so each byte string has one encoding per alphabet and
 * padding choice). A refusal says why; the reasons are only worked out
 * once a text has failed. What this relies on in libsodium is in
 * docs/facts.md.
 */
#include <lauxlib.h>
#include <lua.h>

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "lapi.h"
#include "sealpipe.h"

static int hex_encode(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, 2 * n + 1); /* sodium_bin2hex adds a NUL */
    sodium_bin2hex(p, 2 * n + 1, s, n);
    luaL_pushresultsize(&b, 2 * n);
    return 1;
}

int lapi_push_unhex(lua_State *L, const char *s, size_t n, char *why, size_t whylen)
{
    const char *end = NULL;
    size_t len = 0;
    luaL_Buffer b;

    if (n % 2) {
        snprintf(why, whylen, "odd length");
        return -1;
    }
    unsigned char *p = (unsigned char *)luaL_buffinitsize(L, &b, n / 2);
    if (sodium_hex2bin(p, n / 2, s, n, NULL, &len, &end) == 0 && end == s + n) {
        luaL_pushresultsize(&b, len);
        return 0;
    }
    luaL_pushresultsize(&b, 0);
    lua_pop(L, 1);
    /* libsodium stops at the start of the pair that holds the bad digit (docs/facts.md). */
    size_t at = (size_t)(end - s);
    if (at < n && sp_hex_digit((unsigned char)s[at]) >= 0)
        at++;
    snprintf(why, whylen, "invalid character at %zu", at + 1);
    return -1;
}

/* The Lua side of a decoder: the bytes, or fail and "<fn>: <why>". */
static int decode_arg(lua_State *L, const char *fn,
                      int (*push_decoded)(lua_State *L, const char *s, size_t n, char *why,
                                          size_t whylen))
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    char why[96];
    if (push_decoded(L, s, n, why, sizeof why) == 0)
        return 1;
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s", fn, why);
    return 2;
}

static int hex_decode(lua_State *L)
{
    return decode_arg(L, "hex.decode", lapi_push_unhex);
}

static int b64_encode(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    size_t out = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL); /* with the NUL */
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, out);
    sodium_bin2base64(p, out, s, n, sodium_base64_VARIANT_ORIGINAL);
    luaL_pushresultsize(&b, out - 1);
    return 1;
}

/* The libsodium variant for text s: its alphabet and whether it is padded; -1 when it mixes. */
static int b64_variant(const char *s, size_t n)
{
    int standard = memchr(s, '+', n) || memchr(s, '/', n);
    int urlsafe = memchr(s, '-', n) || memchr(s, '_', n);
    int padded = n && s[n - 1] == '=';

    if (standard && urlsafe)
        return -1;
    if (urlsafe)
        return padded ? sodium_base64_VARIANT_URLSAFE : sodium_base64_VARIANT_URLSAFE_NO_PADDING;
    return padded ? sodium_base64_VARIANT_ORIGINAL : sodium_base64_VARIANT_ORIGINAL_NO_PADDING;
}

static int b64_char(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/' || c == '-' || c == '_';
}

/* Why libsodium refused text s (of one alphabet): the first rule it breaks. */
static void b64_why(const char *s, size_t n, char *why, size_t whylen)
{
    size_t pad = 0;
    while (pad < n && s[n - 1 - pad] == '=')
        pad++;
    size_t data = n - pad;
    for (size_t i = 0; i < data; i++) {
        if (!b64_char((unsigned char)s[i])) {
            snprintf(why, whylen, "invalid character at %zu", i + 1);
            return;
        }
    }
    if (data % 4 == 1)
        snprintf(why, whylen, "bad length");
    else if (pad && (pad > 2 || n % 4))
        snprintf(why, whylen, "bad padding");
    else
        snprintf(why, whylen, "non-canonical (the unused low bits of the last character are set)");
}

int lapi_push_unbase64(lua_State *L, const char *s, size_t n, char *why, size_t whylen)
{
    int variant = b64_variant(s, n);
    const char *end = NULL;
    size_t room = n / 4 * 3 + 2, len = 0;
    luaL_Buffer b;

    if (variant < 0) {
        snprintf(why, whylen, "mixes the standard (+/) and URL-safe (-_) alphabets");
        return -1;
    }
    unsigned char *p = (unsigned char *)luaL_buffinitsize(L, &b, room);
    if (sodium_base642bin(p, room, s, n, NULL, &len, &end, variant) == 0 && end == s + n) {
        luaL_pushresultsize(&b, len);
        return 0;
    }
    luaL_pushresultsize(&b, 0);
    lua_pop(L, 1);
    b64_why(s, n, why, whylen);
    return -1;
}

static int b64_decode(lua_State *L)
{
    return decode_arg(L, "base64.decode", lapi_push_unbase64);
}

void lapi_open_hex(lua_State *L)
{
    static const luaL_Reg fns[] = {{"encode", hex_encode}, {"decode", hex_decode}, {NULL, NULL}};
    luaL_newlib(L, fns);
}

void lapi_open_base64(lua_State *L)
{
    static const luaL_Reg fns[] = {{"encode", b64_encode}, {"decode", b64_decode}, {NULL, NULL}};
    luaL_newlib(L, fns);
}
