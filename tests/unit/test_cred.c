/*
 * test_cred.c - credentials: the spec's auth hash, device hash and derived-key
 * vectors (TagoTiP.md §2, TagoTiPs.md §2.1-§2.4), and the hex and base64
 * helpers, including what they must refuse.
 */
#include "check.h"
#include "sealpipe.h"

#include <stdint.h>

#define TOKEN "ate2bd319014b24e0a8aca9f00aea4c0d0"

static void hex_of(const uint8_t *b, size_t n, char *out, size_t cap)
{
    CHECK_EQ_INT(sp_hex_encode(b, n, out, cap), 0);
}

static void test_auth_hash(void)
{
    uint8_t h[SP_HASH_LEN], h2[SP_HASH_LEN];
    char hex[2 * SP_HASH_LEN + 1];

    CHECK_EQ_INT(sp_auth_hash(TOKEN, strlen(TOKEN), h), 0);
    hex_of(h, sizeof h, hex, sizeof hex);
    CHECK_EQ_STR(hex, "4deedd7bab8817ec");
    /* Without the prefix the token is hashed as given: same result. */
    CHECK_EQ_INT(sp_auth_hash(TOKEN + 2, strlen(TOKEN) - 2, h2), 0);
    CHECK_EQ_MEM(h, h2, sizeof h);
    CHECK_EQ_INT(sp_auth_hash("", 0, h), SP_ERR_INVAL);
    CHECK_EQ_INT(sp_auth_hash("at", 2, h), SP_ERR_INVAL);
}

static void test_device_hash(void)
{
    uint8_t h[SP_HASH_LEN];
    char hex[2 * SP_HASH_LEN + 1];

    sp_device_hash("sensor-01", 9, h);
    hex_of(h, sizeof h, hex, sizeof hex);
    CHECK_EQ_STR(hex, "ab7788d22eb7372f");
}

static void test_derive_key(void)
{
    uint8_t k[32], k16[16], k2[32];
    char hex[65];

    CHECK_EQ_INT(sp_derive_key(TOKEN, strlen(TOKEN), "sensor-01", 9, k, 32), 0);
    hex_of(k, 32, hex, sizeof hex);
    CHECK_EQ_STR(hex, "e505f03cc9e93fdbcc382844cca3e17fdf0bb31318585395ceaaa39a5d141964");
    CHECK_EQ_INT(sp_derive_key(TOKEN, strlen(TOKEN), "sensor-01", 9, k16, 16), 0);
    CHECK_EQ_MEM(k16, k, 16);
    CHECK_EQ_INT(sp_derive_key(TOKEN + 2, strlen(TOKEN) - 2, "sensor-01", 9, k2, 32), 0);
    CHECK_EQ_MEM(k2, k, 32);
    CHECK_EQ_INT(sp_derive_key(TOKEN, strlen(TOKEN), "sensor-01", 9, k, 24), SP_ERR_INVAL);
    CHECK_EQ_INT(sp_derive_key("at", 2, "sensor-01", 9, k, 32), SP_ERR_INVAL);
    /* A key longer than SHA-256's block is hashed first (RFC 2104), not refused. */
    {
        char longkey[200];
        memset(longkey, 'a', sizeof longkey);
        CHECK_EQ_INT(sp_derive_key(longkey, sizeof longkey, "x", 1, k, 32), 0);
    }
}

static void test_hex(void)
{
    uint8_t in[] = {0x00, 0x01, 0xab, 0xff}, out[8];
    char s[9];

    CHECK_EQ_INT(sp_hex_encode(in, 4, s, sizeof s), 0);
    CHECK_EQ_STR(s, "0001abff");
    CHECK_EQ_INT(sp_hex_encode(in, 4, s, 8), SP_ERR_BUFSIZE);
    CHECK_EQ_INT(sp_hex_encode(in, 0, s, 1), 0);
    CHECK_EQ_STR(s, "");
    CHECK_EQ_INT(sp_hex_decode("0001ABff", 8, out, sizeof out), 4);
    CHECK_EQ_MEM(out, in, 4);
    CHECK_EQ_INT(sp_hex_decode("DEADBEEF01020304", 16, out, sizeof out), 8);
    CHECK_EQ_INT(out[0], 0xde);
    CHECK_EQ_INT(out[7], 0x04);
    CHECK_EQ_INT(sp_hex_decode("abc", 3, out, sizeof out), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_hex_decode("zz", 2, out, sizeof out), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_hex_decode("0g", 2, out, sizeof out), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_hex_decode(" 0", 2, out, sizeof out), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_hex_decode("0001abff", 8, out, 3), SP_ERR_BUFSIZE);
    CHECK_EQ_INT(sp_hex_decode("", 0, out, 0), 0);
}

static void test_base64(void)
{
    uint8_t bin[] = {0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04}, out[16];
    char s[32];
    int i;

    CHECK_EQ_INT(sp_base64_encode(bin, 8, s, sizeof s), 0);
    CHECK_EQ_STR(s, "3q2+7wECAwQ=");
    CHECK_EQ_INT(sp_base64_encode(bin, 8, s, 12), SP_ERR_BUFSIZE);
    CHECK_EQ_INT(sp_base64_encode(bin, 8, s, 13), 0);
    CHECK_EQ_INT(sp_base64_decode("3q2+7wECAwQ=", 12, out, sizeof out), 8);
    CHECK_EQ_MEM(out, bin, 8);
    CHECK_EQ_INT(sp_base64_decode("3q2+7wECAwQ=", 12, out, 7), SP_ERR_BUFSIZE);
    CHECK_EQ_INT(sp_base64_decode("3q2+7wECAwQ=", 12, out, 8), 8);
    /* Round trips for every length 0..8 (all three padding cases). */
    for (i = 0; i <= 8; i++) {
        uint8_t back[16];
        CHECK_EQ_INT(sp_base64_encode(bin, (size_t)i, s, sizeof s), 0);
        CHECK_EQ_INT(sp_base64_decode(s, strlen(s), back, sizeof back), i);
        CHECK_EQ_MEM(back, bin, (size_t)i);
    }
    CHECK_EQ_INT(sp_base64_decode("3q2+7wECAwQ", 11, out, sizeof out), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_base64_decode("3q2+7wECAx==", 12, out, sizeof out), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_base64_decode("3q2-7wECAwQ=", 12, out, sizeof out), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_base64_decode("3q2+7w=CAwQ=", 12, out, sizeof out), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_base64_decode("3q2 7wECAwQ=", 12, out, sizeof out), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_base64_decode("A===", 4, out, sizeof out), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_base64_decode("", 0, out, sizeof out), 0);
}

int main(void)
{
    if (sp_init() != 0)
        return 1;
    RUN(test_auth_hash);
    RUN(test_device_hash);
    RUN(test_derive_key);
    RUN(test_hex);
    RUN(test_base64);
    return check_done();
}
