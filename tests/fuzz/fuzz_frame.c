/*
 * fuzz_frame.c - libFuzzer target for the frame-level parsers of TagoTiP:
 * whole uplink frames (sp_tip_parse_frame, sp_tip_frame_counter), PULL bodies in both spellings
 * (sp_tip_parse_pull), the MQTT binding's "!N|" prefix
 * (sp_tip_split_counter), headless inner frames (sp_inner_split) and the
 * three forms of a downlink ACK (sp_tip_parse_ack).
 *
 * Every parser sees the same input, in a heap block of exactly its size.
 * What a parser accepts is checked against the rest of the SDK: a frame's
 * body passes the body parser on its own and sp_tip_build_frame writes the
 * frame again; an accepted ACK is written again by sp_tip_build_ack,
 * byte for byte, and parses to the same fields. Seeds: the spec's example
 * frames and tests/data/ (scripts/fuzz).
 */
#include "fuzz.h"
#include "sealpipe.h"

#include <string.h>

static struct sp_tip_body body; /* 15 KiB: kept off the stack */
static struct sp_tip_pull pull;

static int span_eq(struct sp_span a, const char *p, size_t n)
{
    return a.n == n && (n == 0 || memcmp(a.p, p, n) == 0);
}

/* A body that a frame-level parser accepted must pass the body parser alone. */
static void check_body(int method, struct sp_span b)
{
    if (method == SP_METHOD_PUSH)
        FUZZ_CHECK(sp_tip_parse_body(b.p, b.n, &body) == 0);
    else if (method == SP_METHOD_PULL)
        FUZZ_CHECK(sp_tip_parse_pull(b.p, b.n, 0, &pull) == 0);
    else
        FUZZ_CHECK(b.n == 0);
}

static void frame(const char *p, size_t n)
{
    static char out[SP_MAX_FRAME + 2];
    struct sp_tip_frame f, again;
    char serial[SP_MAX_SERIAL + 1];
    uint32_t counter = 0;
    int len, has = sp_tip_frame_counter(p, n, &counter);

    if (sp_tip_parse_frame(p, n, &f) != 0)
        return;
    /* The counter the ERR answer of a refused frame would echo is the one
     * an accepted frame has. */
    FUZZ_CHECK(has == f.has_counter && (!has || counter == f.counter));
    FUZZ_CHECK(f.serial.n > 0 && f.serial.n <= SP_MAX_SERIAL);
    check_body(f.method, f.body);

    memcpy(serial, f.serial.p, f.serial.n);
    serial[f.serial.n] = '\0';
    len = sp_tip_build_frame(f.method, f.has_counter, f.counter, f.auth_hash, serial, f.body.p,
                             f.body.n, out, sizeof out);
    FUZZ_CHECK(len > 0 && sp_tip_parse_frame(out, (size_t)len, &again) == 0);
    FUZZ_CHECK(
        again.method == f.method && again.has_counter == f.has_counter &&
        again.counter == f.counter && memcmp(again.auth_hash, f.auth_hash, SP_HASH_LEN) == 0 &&
        span_eq(again.serial, f.serial.p, f.serial.n) && span_eq(again.body, f.body.p, f.body.n));
}

/*
 * The ACK grammar has one spelling per value (no leading zeros in the
 * counter, the detail is the rest of the frame), so writing the parsed
 * fields again gives back the input without its trailing LF.
 */
static void ack(const char *p, size_t n, int form)
{
    static char out[SP_MAX_FRAME + 2];
    struct sp_tip_ack a, again;
    int len;

    if (sp_tip_parse_ack(p, n, form, &a) != 0)
        return;
    FUZZ_CHECK(form != SP_ACK_INNER || !a.has_counter);
    len = sp_tip_build_ack(form, a.has_counter, a.counter, a.status, a.detail.p, a.detail.n, out,
                           sizeof out);
    if (len < 0)
        fprintf(stderr, "sp_tip_build_ack: %s\n", sp_strerror(len));
    FUZZ_CHECK(len > 0 && sp_tip_parse_ack(out, (size_t)len, form, &again) == 0);
    FUZZ_CHECK(again.has_counter == a.has_counter && again.counter == a.counter &&
               again.status == a.status && span_eq(again.detail, a.detail.p, a.detail.n));
    if (n > 0 && p[n - 1] == '\n')
        n--;
    FUZZ_CHECK((size_t)len == n && memcmp(out, p, n) == 0);
}

static void pull_lists(const char *p, size_t n)
{
    size_t i;
    int csv;

    for (csv = 0; csv <= 1; csv++) {
        if (sp_tip_parse_pull(p, n, csv, &pull) != 0)
            continue;
        FUZZ_CHECK(pull.nvars >= 1 && pull.nvars <= SP_MAX_VARS);
        for (i = 0; i < pull.nvars; i++)
            FUZZ_CHECK(pull.vars[i].n >= 1 && pull.vars[i].n <= SP_MAX_NAME);
    }
}

/* An MQTT payload: the optional "!N|", then a PUSH body or a PULL list. */
static void mqtt_payload(const char *p, size_t n)
{
    struct sp_span b;
    uint32_t counter;
    int has;

    if (sp_tip_split_counter(p, n, &has, &counter, &b) != 0)
        return;
    FUZZ_CHECK(b.p >= p && b.p + b.n == p + n);
    (void)!sp_tip_parse_body(b.p, b.n, &body);
    (void)!sp_tip_parse_pull(b.p, b.n, 1, &pull);
}

static void inner(const char *p, size_t n)
{
    static const int methods[] = {SP_METHOD_PUSH, SP_METHOD_PULL, SP_METHOD_PING};
    struct sp_span serial, b;
    size_t i;

    for (i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (sp_inner_split(p, n, methods[i], &serial, &b) != 0)
            continue;
        FUZZ_CHECK(serial.p == p && serial.n > 0 && serial.n <= SP_MAX_SERIAL);
        FUZZ_CHECK(b.p >= p && b.p + b.n <= p + n);
        if (methods[i] == SP_METHOD_PUSH)
            (void)!sp_tip_parse_body(b.p, b.n, &body);
        else if (methods[i] == SP_METHOD_PULL)
            (void)!sp_tip_parse_pull(b.p, b.n, 0, &pull);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *p = fuzz_copy(data, size);

    frame(p, size);
    pull_lists(p, size);
    mqtt_payload(p, size);
    inner(p, size);
    ack(p, size, SP_ACK_FRAME);
    ack(p, size, SP_ACK_MQTT);
    ack(p, size, SP_ACK_INNER);
    free(p);
    return 0;
}
