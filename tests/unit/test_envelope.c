/*
 * test_envelope.c - TagoTiP/S envelopes: the §11.1 AES-128-CCM vector byte for
 * byte, seal/open round trips for every suite, tampering and wrong keys, and
 * every header rejection of §12.
 */
#include "check.h"
#include "sealpipe.h"

#include <stdint.h>

static const uint8_t KEY16[16] = {0xfe, 0x09, 0xda, 0x81, 0xbc, 0x44, 0x00, 0xee,
                                  0x12, 0xab, 0x56, 0xcd, 0x78, 0xef, 0x90, 0x12};
static const uint8_t AUTH[8] = {0x4d, 0xee, 0xdd, 0x7b, 0xab, 0x88, 0x17, 0xec};
static const uint8_t DEV[8] = {0xab, 0x77, 0x88, 0xd2, 0x2e, 0xb7, 0x37, 0x2f};
static const char INNER[] = "sensor-01|[temp:=32]";

/* TagoTiPs.md §11.1, complete envelope (49 bytes). */
static const uint8_t VECTOR[49] = {0x00, 0x00, 0x00, 0x00, 0x2a, 0x4d, 0xee, 0xdd, 0x7b, 0xab,
                                   0x88, 0x17, 0xec, 0xab, 0x77, 0x88, 0xd2, 0x2e, 0xb7, 0x37,
                                   0x2f, 0xc8, 0xc5, 0xaa, 0x56, 0xd7, 0x55, 0x58, 0x2b, 0xac,
                                   0xea, 0x13, 0xbb, 0x57, 0x24, 0x93, 0xbb, 0x8c, 0xb1, 0x08,
                                   0x03, 0xcf, 0x82, 0x6f, 0xdb, 0x83, 0x3b, 0x79, 0xc6};

static void test_suites(void)
{
    CHECK_EQ_INT(sp_suite_from_name("aes-128-ccm"), SP_SUITE_AES128_CCM);
    CHECK_EQ_INT(sp_suite_from_name("AES-256-GCM"), SP_SUITE_AES256_GCM);
    CHECK_EQ_INT(sp_suite_from_name("ChaCha20-Poly1305"), SP_SUITE_CHACHA20_POLY1305);
    CHECK_EQ_INT(sp_suite_from_name("aes-128"), SP_ERR_CIPHER);
    CHECK_EQ_INT(sp_suite_from_name("aes-128-ccmx"), SP_ERR_CIPHER);
    CHECK_EQ_INT(sp_suite_from_name(""), SP_ERR_CIPHER);
    CHECK_EQ_STR(sp_suite_name(2), "aes-256-ccm");
    CHECK(sp_suite_name(5) == NULL);
    CHECK(sp_suite_name(-1) == NULL);
    CHECK_EQ_INT(sp_suite_key_len(0), 16);
    CHECK_EQ_INT(sp_suite_key_len(4), 32);
    CHECK_EQ_INT(sp_suite_key_len(7), 0);
    CHECK_EQ_INT(sp_suite_tag_len(0), 8);
    CHECK_EQ_INT(sp_suite_tag_len(2), 8);
    CHECK_EQ_INT(sp_suite_tag_len(3), 16);
    CHECK_EQ_INT(sp_suite_tag_len(5), 0);
    for (int s = 0; s <= 4; s++)
        CHECK_EQ_INT(sp_suite_available(s), 1);
    CHECK_EQ_INT(sp_suite_available(5), 0);
}

static void test_vector(void)
{
    uint8_t env[SP_ENV_MAX_LEN], pt[SP_MAX_FRAME];
    size_t n = 0, ptn = 0;
    struct sp_env_header h;

    CHECK_EQ_INT(sp_env_seal(SP_SUITE_AES128_CCM, SP_METHOD_PUSH, 42, AUTH, DEV, KEY16, 16,
                             (const uint8_t *)INNER, 20, env, sizeof env, &n),
                 0);
    CHECK_EQ_INT(n, 49);
    CHECK_EQ_MEM(env, VECTOR, 49);

    CHECK_EQ_INT(sp_env_parse_header(VECTOR, 49, &h), 0);
    CHECK_EQ_INT(h.flags, 0);
    CHECK_EQ_INT(h.suite, 0);
    CHECK_EQ_INT(h.version, 0);
    CHECK_EQ_INT(h.method, SP_METHOD_PUSH);
    CHECK_EQ_INT(h.counter, 42);
    CHECK_EQ_MEM(h.auth_hash, AUTH, 8);
    CHECK_EQ_MEM(h.device_hash, DEV, 8);
    CHECK_EQ_INT(sp_env_open(&h, VECTOR, 49, KEY16, 16, pt, sizeof pt, &ptn), 0);
    CHECK_EQ_INT(ptn, 20);
    CHECK_EQ_MEM(pt, INNER, 20);
    /* cap exactly the plaintext length is enough; one less is not */
    CHECK_EQ_INT(sp_env_open(&h, VECTOR, 49, KEY16, 16, pt, 20, &ptn), 0);
    CHECK_EQ_INT(sp_env_open(&h, VECTOR, 49, KEY16, 16, pt, 19, &ptn), SP_ERR_BUFSIZE);
    /* wrong key length for the suite */
    CHECK_EQ_INT(sp_env_open(&h, VECTOR, 49, KEY16, 15, pt, sizeof pt, &ptn), SP_ERR_INVAL);
}

static void make_key(int suite, uint8_t *key)
{
    for (size_t i = 0; i < sp_suite_key_len(suite); i++)
        key[i] = (uint8_t)(i * 7 + (size_t)suite);
}

static void roundtrip(int suite, int method, uint32_t counter, const uint8_t *inner, size_t len)
{
    static uint8_t env[SP_ENV_MAX_LEN], pt[SP_MAX_FRAME];
    uint8_t key[32];
    size_t n = 0, ptn = 0, tag = sp_suite_tag_len(suite);
    struct sp_env_header h;

    make_key(suite, key);
    CHECK_EQ_INT(sp_env_seal(suite, method, counter, AUTH, DEV, key, sp_suite_key_len(suite), inner,
                             len, env, sizeof env, &n),
                 0);
    CHECK_EQ_INT(n, SP_ENV_HEADER_LEN + len + tag);
    CHECK_EQ_INT(env[0], suite << 5 | method);
    CHECK_EQ_INT(sp_env_parse_header(env, n, &h), 0);
    CHECK_EQ_INT(h.suite, suite);
    CHECK_EQ_INT(h.method, method);
    CHECK_EQ_INT(h.counter, counter);
    ptn = 12345;
    CHECK_EQ_INT(sp_env_open(&h, env, n, key, sp_suite_key_len(suite), pt, sizeof pt, &ptn), 0);
    CHECK_EQ_INT(ptn, len);
    if (len)
        CHECK_EQ_MEM(pt, inner, len);
}

static void test_roundtrip(void)
{
    static uint8_t big[SP_MAX_FRAME];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)('a' + i % 26);
    for (int s = 0; s <= 4; s++) {
        roundtrip(s, SP_METHOD_PUSH, 42, (const uint8_t *)INNER, 20);
        if (s != SP_SUITE_AES256_CCM) /* 0x41 is reserved: see test_seal_rejects */
            roundtrip(s, SP_METHOD_PULL, 0, (const uint8_t *)"sensor-01|[temperature]", 23);
        roundtrip(s, SP_METHOD_PING, 0xffffffffu, (const uint8_t *)"sensor-01", 9);
        roundtrip(s, SP_METHOD_ACK, 7, (const uint8_t *)"OK|3", 4);
        roundtrip(s, SP_METHOD_PUSH, 1, (const uint8_t *)"", 0);
        roundtrip(s, SP_METHOD_PUSH, 2, big, sizeof big);
    }
}

/* Flipping any single bit of any byte (header, ciphertext, tag) must fail. */
static void test_tamper(void)
{
    static const uint8_t zero[SP_MAX_FRAME];
    uint8_t env[128], pt[64], key[32], bad[32];
    size_t n = 0, ptn = 0;
    struct sp_env_header h;
    int s, fails;

    for (s = 0; s <= 4; s++) {
        size_t klen = sp_suite_key_len(s);
        make_key(s, key);
        CHECK_EQ_INT(sp_env_seal(s, SP_METHOD_PUSH, 9, AUTH, DEV, key, klen, (const uint8_t *)INNER,
                                 20, env, sizeof env, &n),
                     0);
        fails = 0;
        for (size_t i = 0; i < n; i++) {
            uint8_t save = env[i];
            env[i] ^= 0x01;
            /* a header change may be refused at the header (reserved suite) */
            if (sp_env_parse_header(env, n, &h) == 0) {
                memset(pt, 0xaa, sizeof pt);
                if (sp_env_open(&h, env, n, key, klen, pt, sizeof pt, &ptn) == SP_ERR_AUTH &&
                    memcmp(pt, zero, 20) == 0)
                    fails++;
                else if (h.suite == s)
                    fprintf(stderr, "suite %d byte %zu not rejected\n", s, i);
                else
                    fails++; /* the flip changed the suite: key length mismatch */
            } else {
                fails++;
            }
            env[i] = save;
        }
        CHECK_EQ_INT(fails, (long long)n);
        /* wrong key */
        memcpy(bad, key, sizeof bad);
        bad[0] ^= 0x80;
        CHECK_EQ_INT(sp_env_parse_header(env, n, &h), 0);
        memset(pt, 0xaa, sizeof pt);
        CHECK_EQ_INT(sp_env_open(&h, env, n, bad, klen, pt, sizeof pt, &ptn), SP_ERR_AUTH);
        CHECK_EQ_MEM(pt, zero, 20);
        /* truncated by one byte */
        CHECK_EQ_INT(sp_env_parse_header(env, n - 1, &h), 0);
        CHECK_EQ_INT(sp_env_open(&h, env, n - 1, key, klen, pt, sizeof pt, &ptn), SP_ERR_AUTH);
    }
}

static void test_header_rejects(void)
{
    static uint8_t env[SP_ENV_MAX_LEN + 8];
    struct sp_env_header h;

    memcpy(env, VECTOR, sizeof VECTOR);
    env[0] = 0x08; /* version 1 */
    CHECK_EQ_INT(sp_env_parse_header(env, 49, &h), SP_ERR_VERSION);
    env[0] = 0x18; /* version 3 */
    CHECK_EQ_INT(sp_env_parse_header(env, 49, &h), SP_ERR_VERSION);
    env[0] = 0x49; /* the spec's alternative to 0x41: version 1 */
    CHECK_EQ_INT(sp_env_parse_header(env, 49, &h), SP_ERR_VERSION);
    for (int s = 5; s <= 7; s++) {
        env[0] = (uint8_t)(s << 5);
        CHECK_EQ_INT(sp_env_parse_header(env, 49, &h), SP_ERR_CIPHER);
    }
    for (int m = 4; m <= 7; m++) {
        env[0] = (uint8_t)m;
        CHECK_EQ_INT(sp_env_parse_header(env, 49, &h), SP_ERR_METHOD);
    }
    env[0] = 0x41;
    CHECK_EQ_INT(sp_env_parse_header(env, 49, &h), SP_ERR_METHOD);
    env[0] = 0x40; /* AES-256-CCM PUSH is fine */
    CHECK_EQ_INT(sp_env_parse_header(env, 49, &h), 0);
    env[0] = 0x42; /* AES-256-CCM PING is fine */
    CHECK_EQ_INT(sp_env_parse_header(env, 49, &h), 0);
    env[0] = 0x80;
    CHECK_EQ_INT(sp_env_parse_header(env, 49, &h), 0);

    /* short: header plus tag is the minimum */
    env[0] = 0x00;
    CHECK_EQ_INT(sp_env_parse_header(env, 0, &h), SP_ERR_SHORT);
    CHECK_EQ_INT(sp_env_parse_header(env, 20, &h), SP_ERR_SHORT);
    CHECK_EQ_INT(sp_env_parse_header(env, 28, &h), SP_ERR_SHORT);
    CHECK_EQ_INT(sp_env_parse_header(env, 29, &h), 0);
    env[0] = 0x20; /* GCM: 16-byte tag */
    CHECK_EQ_INT(sp_env_parse_header(env, 36, &h), SP_ERR_SHORT);
    CHECK_EQ_INT(sp_env_parse_header(env, 37, &h), 0);

    /* oversize: 16,413 for CCM, 16,421 for 16-byte tags */
    env[0] = 0x00;
    CHECK_EQ_INT(sp_env_parse_header(env, 16413, &h), 0);
    CHECK_EQ_INT(sp_env_parse_header(env, 16414, &h), SP_ERR_ENVTOOLARGE);
    env[0] = 0x80;
    CHECK_EQ_INT(sp_env_parse_header(env, 16421, &h), 0);
    CHECK_EQ_INT(sp_env_parse_header(env, 16422, &h), SP_ERR_ENVTOOLARGE);
}

static void test_seal_rejects(void)
{
    static uint8_t big[SP_MAX_FRAME + 1], out[SP_ENV_MAX_LEN + 8];
    uint8_t key[32] = {0};
    size_t n = 0;

    CHECK_EQ_INT(sp_env_seal(5, 0, 1, AUTH, DEV, key, 32, big, 1, out, sizeof out, &n),
                 SP_ERR_CIPHER);
    CHECK_EQ_INT(sp_env_seal(2, SP_METHOD_PULL, 1, AUTH, DEV, key, 32, big, 1, out, sizeof out, &n),
                 SP_ERR_METHOD);
    CHECK_EQ_INT(sp_env_seal(0, 4, 1, AUTH, DEV, key, 16, big, 1, out, sizeof out, &n),
                 SP_ERR_METHOD);
    CHECK_EQ_INT(sp_env_seal(0, 0, 1, AUTH, DEV, key, 32, big, 1, out, sizeof out, &n),
                 SP_ERR_INVAL);
    CHECK_EQ_INT(sp_env_seal(4, 0, 1, AUTH, DEV, key, 16, big, 1, out, sizeof out, &n),
                 SP_ERR_INVAL);
    CHECK_EQ_INT(sp_env_seal(0, 0, 1, AUTH, DEV, key, 16, big, sizeof big, out, sizeof out, &n),
                 SP_ERR_TOOLARGE);
    CHECK_EQ_INT(sp_env_seal(0, 0, 1, AUTH, DEV, key, 16, big, 20, out, 48, &n), SP_ERR_BUFSIZE);
    CHECK_EQ_INT(sp_env_seal(0, 0, 1, AUTH, DEV, key, 16, big, 20, out, 49, &n), 0);
    CHECK_EQ_INT(n, 49);
}

int main(void)
{
    if (sp_init() != 0)
        return 1;
    RUN(test_suites);
    RUN(test_vector);
    RUN(test_roundtrip);
    RUN(test_tamper);
    RUN(test_header_rejects);
    RUN(test_seal_rejects);
    return check_done();
}
