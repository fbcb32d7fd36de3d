/*
 * test_uplink.c - the request parts a device writes besides the body
 * (sdk/src/tip_uplink.c): the headless inner frame of TagoTiPs.md §4.1,
 * checked against the spec's test vector of §11.1, and the PULL body
 * "[a;b]" of TagoTiP.md §7.1, including what each must refuse.
 */
#include "check.h"
#include "sealpipe.h"

#include <stdint.h>

static void test_inner_push(void)
{
    char out[64];

    /* TagoTiPs.md §11.1: the 20-byte inner frame of the test vector. */
    CHECK_EQ_INT(sp_inner_build(SP_METHOD_PUSH, "sensor-01", "[temp:=32]", 10, out, sizeof out),
                 20);
    CHECK_EQ_STR(out, "sensor-01|[temp:=32]");
    CHECK_EQ_INT(
        sp_inner_build(SP_METHOD_PULL, "weather-denver", "[temperature]", 13, out, sizeof out), 28);
    CHECK_EQ_STR(out, "weather-denver|[temperature]");
}

/* The inner frame sealed as the spec's vector gives the spec's 49 bytes. */
static void test_inner_vector(void)
{
    static const char want[] = "000000002a4deedd7bab8817ecab7788d22eb7372f"
                               "c8c5aa56d755582bacea13bb572493bb8cb10803"
                               "cf826fdb833b79c6";
    uint8_t key[16], auth[SP_HASH_LEN], dev[SP_HASH_LEN], env[64];
    char inner[32], hex[2 * sizeof env + 1];
    size_t len = 0;
    int n;

    CHECK_EQ_INT(sp_hex_decode("fe09da81bc4400ee12ab56cd78ef9012", 32, key, sizeof key), 16);
    CHECK_EQ_INT(sp_auth_hash("ate2bd319014b24e0a8aca9f00aea4c0d0", 34, auth), 0);
    sp_device_hash("sensor-01", 9, dev);
    n = sp_inner_build(SP_METHOD_PUSH, "sensor-01", "[temp:=32]", 10, inner, sizeof inner);
    CHECK_EQ_INT(n, 20);
    CHECK_EQ_INT(sp_env_seal(SP_SUITE_AES128_CCM, SP_METHOD_PUSH, 42, auth, dev, key, sizeof key,
                             (const uint8_t *)inner, (size_t)(n < 0 ? 0 : n), env, sizeof env,
                             &len),
                 0);
    CHECK_EQ_INT(len, 49);
    CHECK_EQ_INT(sp_hex_encode(env, len, hex, sizeof hex), 0);
    CHECK_EQ_STR(hex, want);
}

static void test_inner_ping(void)
{
    char out[16];

    /* PING: the serial alone; a body given is ignored. */
    CHECK_EQ_INT(sp_inner_build(SP_METHOD_PING, "sensor-01", NULL, 0, out, sizeof out), 9);
    CHECK_EQ_STR(out, "sensor-01");
    CHECK_EQ_INT(sp_inner_build(SP_METHOD_PING, "sensor-01", "[x:=1]", 6, out, sizeof out), 9);
    CHECK_EQ_STR(out, "sensor-01");
    /* Exactly the room for "sensor-01" and its NUL, and one byte less. */
    CHECK_EQ_INT(sp_inner_build(SP_METHOD_PING, "sensor-01", NULL, 0, out, 10), 9);
    CHECK_EQ_INT(sp_inner_build(SP_METHOD_PING, "sensor-01", NULL, 0, out, 9), SP_ERR_BUFSIZE);
}

static void test_inner_refused(void)
{
    static char big[SP_MAX_FRAME + 8], out[SP_MAX_FRAME + 16];

    CHECK_EQ_INT(sp_inner_build(SP_METHOD_PUSH, "bad serial", "[a:=1]", 6, out, sizeof out),
                 SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_inner_build(SP_METHOD_PUSH, "a|b", "[a:=1]", 6, out, sizeof out),
                 SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_inner_build(SP_METHOD_PUSH, "", "[a:=1]", 6, out, sizeof out), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_inner_build(SP_METHOD_PUSH, "s-01", "", 0, out, sizeof out), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_inner_build(SP_METHOD_PUSH, "s-01", "[a:=1]\n", 7, out, sizeof out),
                 SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_inner_build(SP_METHOD_PUSH, "s-01", "[a:\0=1]", 7, out, sizeof out),
                 SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_inner_build(SP_METHOD_ACK, "s-01", "OK", 2, out, sizeof out), SP_ERR_METHOD);
    CHECK_EQ_INT(sp_inner_build(SP_METHOD_PUSH, NULL, "[a:=1]", 6, out, sizeof out), SP_ERR_INVAL);
    CHECK_EQ_INT(sp_inner_build(SP_METHOD_PUSH, "s-01", NULL, 3, out, sizeof out), SP_ERR_INVAL);
    CHECK_EQ_INT(sp_inner_build(SP_METHOD_PUSH, "s-01", "[a:=1]", 6, NULL, 8), SP_ERR_INVAL);
    /* "s-01|" + body: over SP_MAX_FRAME by one byte, and exactly at it. */
    memset(big, 'x', sizeof big);
    CHECK_EQ_INT(sp_inner_build(SP_METHOD_PUSH, "s-01", big, SP_MAX_FRAME - 4, out, sizeof out),
                 SP_ERR_TOOLARGE);
    CHECK_EQ_INT(sp_inner_build(SP_METHOD_PUSH, "s-01", big, SP_MAX_FRAME - 5, out, sizeof out),
                 SP_MAX_FRAME);
    /* A call that fails for room writes nothing. */
    memcpy(out, "keep", 5);
    CHECK_EQ_INT(sp_inner_build(SP_METHOD_PUSH, "s-01", "[a:=1]", 6, out, 8), SP_ERR_BUFSIZE);
    CHECK_EQ_STR(out, "keep");
}

static void test_pull_body(void)
{
    static struct sp_tip_pull pl;
    char out[64];

    /* From the MQTT binding's list (TagoTipServers.md §3.3) to the frame's. */
    CHECK_EQ_INT(sp_tip_parse_pull("temperature,humidity", 20, 1, &pl), 0);
    CHECK_EQ_INT(sp_tip_build_pull(&pl, out, sizeof out), 22);
    CHECK_EQ_STR(out, "[temperature;humidity]");
    CHECK_EQ_INT(sp_tip_parse_pull("t", 1, 1, &pl), 0);
    CHECK_EQ_INT(sp_tip_build_pull(&pl, out, sizeof out), 3);
    CHECK_EQ_STR(out, "[t]");
    /* Room: "[t]" needs 4 bytes with the NUL. */
    CHECK_EQ_INT(sp_tip_build_pull(&pl, out, 4), 3);
    CHECK_EQ_INT(sp_tip_build_pull(&pl, out, 3), SP_ERR_BUFSIZE);
}

static void test_pull_refused(void)
{
    static struct sp_tip_pull pl;
    char out[64];

    pl.nvars = 0;
    CHECK_EQ_INT(sp_tip_build_pull(&pl, out, sizeof out), SP_ERR_PAYLOAD);
    pl.nvars = SP_MAX_VARS + 1;
    CHECK_EQ_INT(sp_tip_build_pull(&pl, out, sizeof out), SP_ERR_PAYLOAD);
    /* Names that break the rules: read back, they are refused. */
    pl.nvars = 1;
    pl.vars[0] = (struct sp_span){"a;b", 3};
    CHECK_EQ_INT(sp_tip_build_pull(&pl, out, sizeof out), SP_ERR_PAYLOAD);
    CHECK_EQ_STR(out, "");
    pl.vars[0] = (struct sp_span){"Temp", 4};
    CHECK_EQ_INT(sp_tip_build_pull(&pl, out, sizeof out), SP_ERR_PAYLOAD);
    pl.vars[0] = (struct sp_span){"", 0};
    CHECK_EQ_INT(sp_tip_build_pull(&pl, out, sizeof out), SP_ERR_PAYLOAD);
    pl.vars[0] = (struct sp_span){NULL, 1};
    CHECK_EQ_INT(sp_tip_build_pull(&pl, out, sizeof out), SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_build_pull(NULL, out, sizeof out), SP_ERR_INVAL);
}

int main(void)
{
    RUN(test_inner_push);
    RUN(test_inner_vector);
    RUN(test_inner_ping);
    RUN(test_inner_refused);
    RUN(test_pull_body);
    RUN(test_pull_refused);
    return check_done();
}
