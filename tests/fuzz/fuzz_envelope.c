/*
 * fuzz_envelope.c - libFuzzer target for TagoTiP/S envelopes
 * (sp_env_parse_header, sp_env_open, sp_env_seal).
 *
 * Every input is used twice:
 *  - as an envelope off the wire, in a heap block of exactly its size: when
 *    its header is accepted it is opened with a fixed key, which must fail
 *    with SP_ERR_AUTH (forging a tag by mutation is out of reach) and must
 *    never read outside the input;
 *  - as a recipe: byte 0 chooses the suite (bits 7-5) and the method (bits
 *    2-0) as in a flags byte, bytes 1-4 the counter, the rest the inner frame. It is sealed
 *    with the fixed key and must open to the same plaintext with the same
 *    header fields; with one bit flipped (chosen by the counter) it must not
 *    open at all.
 * Seeds: the TagoTiPs.md §11.1 vector and envelopes of the other suites
 * (scripts/fuzz); none is sealed with KEY.
 */
#include "fuzz.h"
#include "sealpipe.h"

#include <string.h>

/* Not the key of the §11.1 vector: no seed opens with it. */
static const uint8_t KEY[SP_MAX_KEY_LEN] = {
    0x5a, 0x11, 0xc3, 0x07, 0x9e, 0x42, 0xd8, 0x6b, 0x20, 0xf1, 0x3c, 0x85, 0x4e, 0xa7, 0x19, 0x62,
    0xbd, 0x08, 0x73, 0xe4, 0x2f, 0x96, 0x51, 0xca, 0x0d, 0xb8, 0x37, 0x6e, 0xf5, 0x24, 0x9b, 0x40};
static const uint8_t AUTH[SP_HASH_LEN] = {0x4d, 0xee, 0xdd, 0x7b, 0xab, 0x88, 0x17, 0xec};
static const uint8_t DEV[SP_HASH_LEN] = {0xab, 0x77, 0x88, 0xd2, 0x2e, 0xb7, 0x37, 0x2f};

static uint8_t plain[SP_ENV_MAX_LEN];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    FUZZ_CHECK(sp_init() == 0);
    return 0;
}

/* Opens env[0..n) with KEY; returns what sp_env_open returned, or 1 if the header was refused. */
static int open_with_key(const uint8_t *env, size_t n, struct sp_env_header *h, size_t *plain_len)
{
    if (sp_env_parse_header(env, n, h) != 0)
        return 1;
    FUZZ_CHECK(h->version == 0 && h->method <= SP_METHOD_ACK && h->flags != 0x41 &&
               sp_suite_available(h->suite));
    FUZZ_CHECK(n >= SP_ENV_HEADER_LEN + sp_suite_tag_len(h->suite) && n <= SP_ENV_MAX_LEN);
    return sp_env_open(h, env, n, KEY, sp_suite_key_len(h->suite), plain, sizeof plain, plain_len);
}

static void from_wire(const uint8_t *data, size_t size)
{
    uint8_t *env = (uint8_t *)fuzz_copy(data, size);
    struct sp_env_header h;
    size_t n;
    int rc = open_with_key(env, size, &h, &n);

    FUZZ_CHECK(rc == 1 || rc == SP_ERR_AUTH);
    free(env);
}

static void round_trip(const uint8_t *data, size_t size)
{
    static uint8_t sealed[SP_ENV_MAX_LEN];
    const uint8_t *inner = data + 5;
    size_t inner_len = size - 5, n = 0, plain_len = 0, bit;
    struct sp_env_header h;
    uint32_t counter;
    int suite, method, rc;
    uint8_t *env;

    if (size < 5)
        return;
    suite = data[0] >> 5;
    method = data[0] & 7;
    counter = (uint32_t)data[1] << 24 | (uint32_t)data[2] << 16 | (uint32_t)data[3] << 8 | data[4];
    rc = sp_env_seal(suite, method, counter, AUTH, DEV, KEY, sp_suite_key_len(suite), inner,
                     inner_len, sealed, sizeof sealed, &n);
    /* 0x41 ('A', a plaintext ACK) is never a flags byte (§5.3): no AES-256-CCM PULL. */
    if (!sp_suite_available(suite) || method > SP_METHOD_ACK || (suite << 5 | method) == 0x41 ||
        inner_len > SP_MAX_FRAME) {
        FUZZ_CHECK(rc < 0); /* reserved suite or method, the 0x41 byte, or too long */
        return;
    }
    FUZZ_CHECK(rc == 0 && n == SP_ENV_HEADER_LEN + inner_len + sp_suite_tag_len(suite));

    env = (uint8_t *)fuzz_copy(sealed, n);
    FUZZ_CHECK(open_with_key(env, n, &h, &plain_len) == 0);
    FUZZ_CHECK(h.suite == suite && h.method == method && h.counter == counter &&
               memcmp(h.auth_hash, AUTH, SP_HASH_LEN) == 0 &&
               memcmp(h.device_hash, DEV, SP_HASH_LEN) == 0);
    FUZZ_CHECK(plain_len == inner_len && (inner_len == 0 || memcmp(plain, inner, inner_len) == 0));

    /* The header is associated data and the tag covers the rest: any flipped bit is refused. */
    bit = counter % (n * 8);
    env[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    FUZZ_CHECK(open_with_key(env, n, &h, &plain_len) != 0);
    free(env);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    from_wire(data, size);
    round_trip(data, size);
    return 0;
}
