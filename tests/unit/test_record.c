/*
 * test_record.c - unit tests for TagoIO records (runtime/base/record.c).
 *
 * Payload cases live in tests/data/record/: accept.txt pairs a payload with
 * the records it must give (as record_to_json output), reject.txt pairs a
 * refused payload with a piece of its error message. Topic metadata, binary
 * payloads, limits that need generated input, record_set_meta and the ISO
 * 8601 parser are tested here directly.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/errors.h"
#include "base/buf.h"
#include "check.h"
#include "base/json.h"
#include "base/sp_limits.h"
#include "base/record.h"
#include "sealpipe.h"

/* The records as a JSON array of record_to_json objects. */
static void records_json(struct buf *b, const struct record_vec *rv, size_t from)
{
    buf_reset(b);
    int rc = buf_putc(b, '[');
    for (size_t i = from; !rc && i < rv->n; i++) {
        if (i > from)
            rc = buf_putc(b, ',');
        if (!rc)
            rc = record_to_json(b, &rv->v[i]);
    }
    if (!rc)
        rc = buf_putc(b, ']');
    CHECK(rc == 0);
}

/* What a corpus case runs with. */
struct corpus {
    struct arena a;
    struct buf b;
};

static int accept_case(void *ctx, const char *in, size_t in_n, const char *want, size_t want_n)
{
    struct corpus *c = ctx;
    struct record_vec rv = {0};
    char err[256] = "";
    int rc = records_from_payload(&c->a, NULL, (const uint8_t *)in, in_n, &rv, err, sizeof(err));

    if (rc < 0) {
        fprintf(stderr, "refused: %.*s (%s)\n", (int)in_n, in, err);
        CHECK(rc >= 0);
        return 0;
    }
    /* 1 exactly when the expected records are not the raw payload one. */
    int raw = want_n > 22 && memcmp(want, "[{\"variable\":\"payload\"", 22) == 0;
    CHECK_EQ_INT(rc, raw ? 0 : 1);
    records_json(&c->b, &rv, 0);
    if (c->b.len != want_n || memcmp(c->b.p, want, want_n) != 0) {
        fprintf(stderr, "case %.*s:\n  got  %s\n  want %.*s\n", (int)in_n, in, c->b.p, (int)want_n,
                want);
        CHECK(0);
    }
    /* record_to_json output is TagoIO data that reads back the same. */
    if (!raw) {
        struct record_vec again = {0};
        struct buf b2;
        buf_init(&b2, 1 << 20);
        CHECK_EQ_INT(records_from_payload(&c->a, NULL, (const uint8_t *)c->b.p, c->b.len, &again,
                                          err, sizeof(err)),
                     1);
        records_json(&b2, &again, 0);
        CHECK(b2.len == c->b.len && memcmp(b2.p, c->b.p, c->b.len) == 0);
        buf_cleanup(&b2);
    }
    return 1;
}

static void test_accept_corpus(void)
{
    struct corpus c;

    arena_init(&c.a, SP_LIMIT_ARENA);
    buf_init(&c.b, 1 << 20);
    CHECK(check_each_pair(SP_TEST_DATA "/record/accept.txt", accept_case, &c) >= 38);
    buf_cleanup(&c.b);
    arena_cleanup(&c.a);
}

static int reject_case(void *ctx, const char *in, size_t in_n, const char *want, size_t want_n)
{
    struct arena *a = ctx;
    struct record_vec rv = {0};
    char err[256] = "", frag[256];
    int rc;

    snprintf(frag, sizeof(frag), "%.*s", (int)want_n, want);
    rc = records_from_payload(a, "t", (const uint8_t *)in, in_n, &rv, err, sizeof(err));
    if (rc != SP_ERR_PAYLOAD || !strstr(err, frag)) {
        fprintf(stderr, "case %.*s:\n  rc %d err \"%s\"\n  want \"%s\"\n", (int)in_n, in, rc, err,
                frag);
        CHECK(0);
    } else {
        CHECK(1);
    }
    CHECK_EQ_INT(rv.n, 0); /* nothing left behind */
    return 1;
}

static void test_reject_corpus(void)
{
    struct arena a;

    arena_init(&a, SP_LIMIT_ARENA);
    CHECK(check_each_pair(SP_TEST_DATA "/record/reject.txt", reject_case, &a) >= 40);
    arena_cleanup(&a);
}

static const char *first_json(struct arena *a, const char *topic, const void *p, size_t n, int *rc)
{
    static struct buf b; /* test-only scratch, freed by the OS at exit */
    static char err[256];
    struct record_vec rv = {0};

    if (!b.max)
        buf_init(&b, 1 << 20);
    *rc = records_from_payload(a, topic, p, n, &rv, err, sizeof(err));
    if (*rc < 0 || rv.n == 0)
        return err;
    records_json(&b, &rv, 0);
    return b.p;
}

static void test_topic_metadata(void)
{
    struct arena a;
    int rc;

    arena_init(&a, SP_LIMIT_ARENA);
    const char *in = "{\"variable\":\"temp\",\"value\":21}";
    CHECK_EQ_STR(first_json(&a, "devices/abc/data", in, strlen(in), &rc),
                 "[{\"variable\":\"temp\",\"value\":21,\"metadata\":{\"mqtt_topic\":\"devices/abc/"
                 "data\"}}]");
    CHECK_EQ_INT(rc, 1);
    /* Existing metadata gains the topic; a record's own mqtt_topic wins. */
    in = "[{\"variable\":\"a\",\"metadata\":{\"x\":1}},"
         "{\"variable\":\"b\",\"metadata\":{\"mqtt_topic\":\"mine\",\"y\":[true]}}]";
    CHECK_EQ_STR(first_json(&a, "t/1", in, strlen(in), &rc),
                 "[{\"variable\":\"a\",\"metadata\":{\"x\":1,\"mqtt_topic\":\"t/1\"}},"
                 "{\"variable\":\"b\",\"metadata\":{\"mqtt_topic\":\"mine\",\"y\":[true]}}]");
    CHECK_EQ_INT(rc, 1);
    /* Non-TagoIO JSON becomes the payload record with the topic. */
    in = "{\"temp\":21}";
    CHECK_EQ_STR(first_json(&a, "t/1", in, strlen(in), &rc),
                 "[{\"variable\":\"payload\",\"value\":\"{\\\"temp\\\":21}\","
                 "\"metadata\":{\"mqtt_topic\":\"t/1\"}}]");
    CHECK_EQ_INT(rc, 0);
    /* A topic that needs escaping stays valid JSON. */
    in = "x";
    CHECK_EQ_STR(first_json(&a, "a\"b", in, 1, &rc),
                 "[{\"variable\":\"payload\",\"value\":\"x\",\"metadata\":{\"mqtt_topic\":"
                 "\"a\\\"b\"}}]");
    arena_cleanup(&a);
}

static void test_binary_payload(void)
{
    struct arena a;
    int rc;
    static const uint8_t bin[] = {0x00, 0x01, 0xAB, 0xff, 0x7f};
    static const uint8_t bad_utf8[] = {'o', 'k', 0xC3};
    static const uint8_t nul[] = {'a', 0x00, 'b'};

    arena_init(&a, SP_LIMIT_ARENA);
    CHECK_EQ_STR(first_json(&a, NULL, bin, sizeof(bin), &rc),
                 "[{\"variable\":\"payload\",\"value\":\"0001abff7f\"}]");
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(first_json(&a, NULL, bad_utf8, sizeof(bad_utf8), &rc),
                 "[{\"variable\":\"payload\",\"value\":\"6f6bc3\"}]");
    CHECK_EQ_STR(first_json(&a, NULL, nul, sizeof(nul), &rc),
                 "[{\"variable\":\"payload\",\"value\":\"610062\"}]");
    /* Valid UTF-8 text is kept as text. */
    CHECK_EQ_STR(first_json(&a, NULL, "d\xC3\xA9j\xC3\xA0", 6, &rc),
                 "[{\"variable\":\"payload\",\"value\":\"d\xC3\xA9j\xC3\xA0\"}]");
    /* The empty payload, including a NULL pointer. */
    CHECK_EQ_STR(first_json(&a, NULL, NULL, 0, &rc), "[{\"variable\":\"payload\",\"value\":\"\"}]");
    CHECK_EQ_INT(rc, 0);

    struct record_vec rv = {0};
    CHECK_EQ_INT(records_from_payload(&a, "t", bin, sizeof(bin), &rv, NULL, 0), 0);
    CHECK(rv.n == 1 && rv.v[0].type == RECORD_STRING && rv.v[0].string_len == 10);
    CHECK(rv.n == 1 && strcmp(rv.v[0].variable, "payload") == 0);
    /* Appends: a second payload adds a second record. */
    CHECK_EQ_INT(
        records_from_payload(&a, "t", (const uint8_t *)"[{\"variable\":\"v\"}]", 18, &rv, NULL, 0),
        1);
    CHECK_EQ_INT(rv.n, 2);
    CHECK(rv.n == 2 && strcmp(rv.v[1].variable, "v") == 0);
    arena_cleanup(&a);
}

static void test_failure_rolls_back(void)
{
    struct arena a;
    struct record_vec rv = {0};
    char err[256];
    const char *ok = "{\"variable\":\"a\"}";
    const char *bad = "[{\"variable\":\"b\"},{\"variable\":\"c\",\"value\":[]}]";

    arena_init(&a, SP_LIMIT_ARENA);
    CHECK_EQ_INT(
        records_from_payload(&a, NULL, (const uint8_t *)ok, strlen(ok), &rv, err, sizeof(err)), 1);
    CHECK_EQ_INT(
        records_from_payload(&a, NULL, (const uint8_t *)bad, strlen(bad), &rv, err, sizeof(err)),
        SP_ERR_PAYLOAD);
    CHECK(strstr(err, "record 1: value:") != NULL);
    CHECK_EQ_INT(rv.n, 1);
    arena_cleanup(&a);
}

/* Builds {"variable":"v","<member>":"<n x fill>"} and runs it. */
static int long_member(struct arena *a, const char *member, size_t n, char *err, size_t errlen)
{
    struct buf b;
    struct record_vec rv = {0};
    int rc;

    buf_init(&b, 1 << 20);
    rc = buf_printf(&b, "{\"variable\":\"v\",\"%s\":\"", member);
    for (size_t i = 0; !rc && i < n; i++)
        rc = buf_putc(&b, 'x');
    if (!rc)
        rc = buf_puts(&b, "\"}");
    if (!rc)
        rc = records_from_payload(a, NULL, (const uint8_t *)b.p, b.len, &rv, err, errlen);
    buf_cleanup(&b);
    return rc;
}

static void test_limits(void)
{
    struct arena a;
    char err[256];

    arena_init(&a, SP_LIMIT_ARENA);
    CHECK_EQ_INT(long_member(&a, "value", SP_LIMIT_VALUE, err, sizeof(err)), 1);
    CHECK_EQ_INT(long_member(&a, "value", SP_LIMIT_VALUE + 1, err, sizeof(err)), SP_ERR_PAYLOAD);
    CHECK(strstr(err, "value: string longer than 6144 bytes") != NULL);
    CHECK_EQ_INT(long_member(&a, "unit", SP_LIMIT_UNIT, err, sizeof(err)), 1);
    CHECK_EQ_INT(long_member(&a, "group", SP_LIMIT_GROUP, err, sizeof(err)), 1);

    /* Metadata up to SP_LIMIT_METADATA bytes of compact JSON. */
    struct buf b;
    struct record_vec rv = {0};
    buf_init(&b, 1 << 20);
    CHECK(buf_puts(&b, "{\"variable\":\"v\",\"metadata\":{\"k\":\"") == 0);
    for (int i = 0; i < SP_LIMIT_METADATA; i++)
        if (buf_putc(&b, 'm'))
            break;
    CHECK(buf_puts(&b, "\"}}") == 0);
    CHECK_EQ_INT(records_from_payload(&a, NULL, (const uint8_t *)b.p, b.len, &rv, err, sizeof(err)),
                 SP_ERR_PAYLOAD);
    CHECK(strstr(err, "metadata: longer than 10240 bytes") != NULL);
    /* Just under the limit, the topic pushes it over: the payload fails. */
    buf_reset(&b);
    CHECK(buf_puts(&b, "{\"variable\":\"v\",\"metadata\":{\"k\":\"") == 0);
    for (int i = 0; i < SP_LIMIT_METADATA - 10; i++)
        if (buf_putc(&b, 'm'))
            break;
    CHECK(buf_puts(&b, "\"}}") == 0);
    CHECK_EQ_INT(records_from_payload(&a, NULL, (const uint8_t *)b.p, b.len, &rv, err, sizeof(err)),
                 1);
    CHECK_EQ_INT(records_from_payload(&a, "some/long/topic", (const uint8_t *)b.p, b.len, &rv, err,
                                      sizeof(err)),
                 SP_ERR_PAYLOAD);
    CHECK(strstr(err, "mqtt_topic") != NULL);

    /* SP_LIMIT_RECORDS records per payload. */
    for (int count = SP_LIMIT_RECORDS; count <= SP_LIMIT_RECORDS + 1; count++) {
        struct record_vec many = {0};
        buf_reset(&b);
        int rc = buf_putc(&b, '[');
        for (int i = 0; !rc && i < count; i++)
            rc = buf_puts(&b, i ? ",{\"variable\":\"v\"}" : "{\"variable\":\"v\"}");
        if (!rc)
            rc = buf_putc(&b, ']');
        CHECK(rc == 0);
        rc = records_from_payload(&a, "t", (const uint8_t *)b.p, b.len, &many, err, sizeof(err));
        if (count <= SP_LIMIT_RECORDS) {
            CHECK_EQ_INT(rc, 1);
            CHECK_EQ_INT(many.n, count);
        } else {
            CHECK_EQ_INT(rc, SP_ERR_TOOLARGE);
            CHECK_EQ_INT(many.n, 0);
        }
    }
    buf_cleanup(&b);

    /* record_vec_push itself. */
    struct record_vec rvp = {0};
    int all = 1;
    for (int i = 0; i < SP_LIMIT_RECORDS; i++) {
        struct record *r = record_vec_push(&a, &rvp);
        all &= r != NULL && r->variable == NULL && r->type == RECORD_NONE;
        if (r)
            r->time_ms = i;
    }
    CHECK(all);
    CHECK(record_vec_push(&a, &rvp) == NULL);
    CHECK_EQ_INT(rvp.n, SP_LIMIT_RECORDS);
    CHECK(rvp.v[0].time_ms == 0 && rvp.v[SP_LIMIT_RECORDS - 1].time_ms == SP_LIMIT_RECORDS - 1);
    arena_cleanup(&a);

    /* An exhausted arena gives NULL / SP_ERR_NOMEM. */
    struct record_vec none = {0};
    arena_init(&a, 16);
    CHECK(record_vec_push(&a, &none) == NULL);
    CHECK_EQ_INT(records_from_payload(&a, NULL, (const uint8_t *)"x", 1, &none, err, sizeof(err)),
                 SP_ERR_NOMEM);
    arena_cleanup(&a);
}

static struct record base(void)
{
    struct record r;
    memset(&r, 0, sizeof(r));
    r.variable = "Temp";
    return r;
}

static void expect_invalid(struct arena *a, struct record r, const char *frag)
{
    char err[256] = "";
    int rc = record_validate(a, &r, err, sizeof(err));
    if (rc != SP_ERR_PAYLOAD || !strstr(err, frag)) {
        fprintf(stderr, "validate: rc %d err \"%s\", want \"%s\"\n", rc, err, frag);
        CHECK(0);
    } else {
        CHECK(1);
    }
}

static void test_validate(void)
{
    struct arena a;
    struct record r;
    char err[256];

    arena_init(&a, SP_LIMIT_ARENA);
    r = base();
    CHECK_EQ_INT(record_validate(&a, &r, err, sizeof(err)), 0);
    CHECK_EQ_STR(r.variable, "temp");
    r = base();
    r.type = RECORD_BOOLEAN;
    r.boolean = 7;
    CHECK_EQ_INT(record_validate(&a, &r, err, sizeof(err)), 0);
    CHECK_EQ_INT(r.boolean, 1);
    r = base();
    r.type = RECORD_STRING; /* NULL string of length 0 is "" */
    CHECK_EQ_INT(record_validate(&a, &r, err, sizeof(err)), 0);
    CHECK_EQ_STR(r.string, "");

    r = base();
    r.variable = NULL;
    expect_invalid(&a, r, "variable: missing");
    r = base();
    r.variable = "caf\xC3";
    expect_invalid(&a, r, "variable: not valid UTF-8");
    r = base();
    r.variable = "a\x7f";
    expect_invalid(&a, r, "variable: white space or control character");
    r = base();
    r.type = RECORD_NUMBER;
    r.number = NAN;
    expect_invalid(&a, r, "value: number is not finite");
    r.number = -INFINITY;
    expect_invalid(&a, r, "value: number is not finite");
    r = base();
    r.type = RECORD_STRING;
    r.string = "a\0b";
    r.string_len = 3;
    expect_invalid(&a, r, "value: string contains a NUL byte");
    r.string = "\xFF";
    r.string_len = 1;
    expect_invalid(&a, r, "value: string is not valid UTF-8");
    r.string = NULL;
    r.string_len = 4;
    expect_invalid(&a, r, "value: string missing");
    r = base();
    r.type = (enum record_type)42;
    expect_invalid(&a, r, "value: unknown type");
    r = base();
    r.unit = "\xC3";
    expect_invalid(&a, r, "unit: not valid UTF-8");
    r = base();
    r.group = "\xFF";
    expect_invalid(&a, r, "group: not valid UTF-8");
    r = base();
    r.has_location = 1;
    r.lat = NAN;
    expect_invalid(&a, r, "location: latitude");
    r.lat = 0;
    r.lng = INFINITY;
    expect_invalid(&a, r, "location: longitude");
    r.lng = 0;
    r.has_alt = 1;
    r.alt = NAN;
    expect_invalid(&a, r, "location: altitude is not finite");
    r = base();
    r.has_time = 1;
    r.time_ms = INT64_MIN;
    expect_invalid(&a, r, "time:");
    r.time_ms = 253402300800000; /* 10000-01-01 */
    expect_invalid(&a, r, "outside the years 0000-9999");
    r.time_ms = 253402300799999;
    CHECK_EQ_INT(record_validate(&a, &r, err, sizeof(err)), 0);
    r = base();
    r.metadata = "[1]";
    expect_invalid(&a, r, "metadata: must be a JSON object");
    r.metadata = "{\"a\":";
    expect_invalid(&a, r, "metadata: json: offset 5");
    r.metadata = "{\"a\":1}";
    CHECK_EQ_INT(record_validate(&a, &r, err, sizeof(err)), 0);
    /* err may be NULL. */
    r = base();
    r.variable = "";
    CHECK_EQ_INT(record_validate(&a, &r, NULL, 0), SP_ERR_PAYLOAD);
    arena_cleanup(&a);
}

static void test_set_meta(void)
{
    struct arena a;
    struct record r;

    arena_init(&a, SP_LIMIT_ARENA);
    r = base();
    CHECK_EQ_INT(record_set_meta(&a, &r, "k", "v", 0), 0);
    CHECK_EQ_STR(r.metadata, "{\"k\":\"v\"}");
    CHECK_EQ_INT(record_set_meta(&a, &r, "k", "w", 0), 0);
    CHECK_EQ_STR(r.metadata, "{\"k\":\"v\"}");
    CHECK_EQ_INT(record_set_meta(&a, &r, "k", "w", 1), 0);
    CHECK_EQ_STR(r.metadata, "{\"k\":\"w\"}");
    r.metadata = "{ \"a\" : [1, 2.50, {\"b\":null}], \"k\":1, \"z\":true, \"k\":2 }";
    CHECK_EQ_INT(record_set_meta(&a, &r, "k", "new", 1), 0);
    CHECK_EQ_STR(r.metadata, "{\"a\":[1,2.5,{\"b\":null}],\"k\":\"new\",\"z\":true}");
    CHECK_EQ_INT(record_set_meta(&a, &r, "q\"\n", "\x01", 1), 0);
    CHECK_EQ_STR(r.metadata,
                 "{\"a\":[1,2.5,{\"b\":null}],\"k\":\"new\",\"z\":true,\"q\\\"\\n\":\"\\u0001\"}");
    r.metadata = "{}";
    CHECK_EQ_INT(record_set_meta(&a, &r, "x", "", 0), 0);
    CHECK_EQ_STR(r.metadata, "{\"x\":\"\"}");

    /* Too large: unchanged, SP_ERR_TOOLARGE. */
    char *big = malloc(SP_LIMIT_METADATA + 1);
    CHECK(big != NULL);
    if (big) {
        memset(big, 'b', SP_LIMIT_METADATA);
        big[SP_LIMIT_METADATA] = '\0';
        r.metadata = "{\"x\":1}";
        CHECK_EQ_INT(record_set_meta(&a, &r, "big", big, 1), SP_ERR_TOOLARGE);
        CHECK_EQ_STR(r.metadata, "{\"x\":1}");
        free(big);
    }
    arena_cleanup(&a);
}

static int64_t iso(const char *s)
{
    int64_t ms = -424242;
    if (iso8601_parse(s, strlen(s), &ms))
        return -424242;
    return ms;
}

static void test_iso8601(void)
{
    CHECK_EQ_INT(iso("1970-01-01T00:00:00Z"), 0);
    CHECK_EQ_INT(iso("1970-01-01T00:00:00.001Z"), 1);
    CHECK_EQ_INT(iso("1969-12-31T23:59:59.999Z"), -1);
    CHECK_EQ_INT(iso("2026-11-24T10:00:00Z"), 1795514400000LL);
    CHECK_EQ_INT(iso("2026-11-24t10:00:00z"), 1795514400000LL);
    CHECK_EQ_INT(iso("2026-11-24T10:00:00"), 1795514400000LL);
    CHECK_EQ_INT(iso("2026-11-24 10:00:00.000+00:00"), 1795514400000LL);
    CHECK_EQ_INT(iso("2026-11-24T13:00:00+03:00"), 1795514400000LL);
    CHECK_EQ_INT(iso("2026-11-24T04:30:00-05:30"), 1795514400000LL);
    CHECK_EQ_INT(iso("2026-11-24T04:30:00-0530"), 1795514400000LL);
    CHECK_EQ_INT(iso("2026-11-24T11:00:00+01"), 1795514400000LL);
    CHECK_EQ_INT(iso("2026-11-24T10:00:00,5Z"), 1795514400500LL);
    CHECK_EQ_INT(iso("2026-11-24T10:00:00.123456789Z"), 1795514400123LL);
    CHECK_EQ_INT(iso("2000-02-29T00:00:00Z"), 951782400000LL);
    CHECK_EQ_INT(iso("0001-01-01T00:00:00Z"), -62135596800000LL);
    CHECK_EQ_INT(iso("9999-12-31T23:59:59.999Z"), 253402300799999LL);

    static const char *const bad[] = {
        "",
        "2026",
        "2026-11-24",
        "2026-11-24T",
        "2026-11-24T10:00",
        "2026-11-24T10:00:00.",
        "2026-11-24T10:00:00.1234567890Z",
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-04-31T00:00:00Z",
        "2025-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2026-11-24T24:00:00Z",
        "2026-11-24T10:60:00Z",
        "2026-11-24T10:00:60Z",
        "2026-11-24T10:00:00+24:00",
        "2026-11-24T10:00:00+01:60",
        "2026-11-24T10:00:00+1",
        "2026-11-24T10:00:00+01:",
        "2026-11-24T10:00:00+01:0",
        "2026-11-24T10:00:00ZZ",
        "2026-11-24T10:00:00 Z",
        "2026-11-24X10:00:00Z",
        "26-11-24T10:00:00Z",
        "+2026-11-24T10:00:00Z",
        "2026-1-24T10:00:00Z",
        "2026-11-24T10:00:00.5ZX",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ms = 77;
        int rc = iso8601_parse(bad[i], strlen(bad[i]), &ms);
        if (rc != SP_ERR_PAYLOAD)
            fprintf(stderr, "iso8601 accepted \"%s\"\n", bad[i]);
        CHECK_EQ_INT(rc, SP_ERR_PAYLOAD);
    }
    /* The explicit length is honoured (no NUL needed, trailing bytes ignored). */
    int64_t ms = 0;
    CHECK_EQ_INT(iso8601_parse("1970-01-01T00:00:01Zjunk", 20, &ms), 0);
    CHECK_EQ_INT(ms, 1000);
}

static void test_to_json(void)
{
    struct buf b;
    struct record r;

    buf_init(&b, 1 << 16);
    r = base();
    r.variable = "v";
    r.type = RECORD_NUMBER;
    r.number = 1.25;
    r.unit = "m/s";
    r.has_time = 1;
    r.time_ms = -62135596800000LL + 1;
    r.group = "g";
    r.has_location = 1;
    r.lat = 1.5;
    r.lng = -2;
    r.has_alt = 1;
    r.alt = -10.5;
    r.metadata = "{\"a\":1}";
    CHECK(record_to_json(&b, &r) == 0);
    CHECK_EQ_STR(b.p, "{\"variable\":\"v\",\"value\":1.25,\"unit\":\"m/s\","
                      "\"time\":\"0001-01-01T00:00:00.001Z\",\"group\":\"g\","
                      "\"location\":{\"lat\":1.5,\"lng\":-2,\"alt\":-10.5},"
                      "\"metadata\":{\"a\":1}}");
    buf_reset(&b);
    r = base();
    r.variable = "s";
    r.type = RECORD_STRING;
    r.string = "a\"\n";
    r.string_len = 3;
    r.has_time = 1;
    r.time_ms = 951868799999LL; /* leap day, last millisecond */
    CHECK(record_to_json(&b, &r) == 0);
    CHECK_EQ_STR(b.p, "{\"variable\":\"s\",\"value\":\"a\\\"\\n\","
                      "\"time\":\"2000-02-29T23:59:59.999Z\"}");
    /* A capped buffer reports SP_ERR_TOOLARGE. */
    struct buf tiny;
    buf_init(&tiny, 10);
    CHECK_EQ_INT(record_to_json(&tiny, &r), SP_ERR_TOOLARGE);
    buf_cleanup(&tiny);
    buf_cleanup(&b);
}

static void test_from_json_direct(void)
{
    struct arena a;
    struct json *v = NULL;
    struct record r;
    char err[256];
    const char *t = "{\"variable\":\"GPS\",\"value\":\"x\",\"location\":{\"type\":\"Point\","
                    "\"coordinates\":[10.25,-5.5]},\"serie\":\"old\"}";

    arena_init(&a, SP_LIMIT_ARENA);
    CHECK(json_parse(&a, t, strlen(t), &v, NULL, 0) == 0);
    CHECK_EQ_INT(record_from_json(&a, v, &r, err, sizeof(err)), 0);
    CHECK_EQ_STR(r.variable, "gps");
    CHECK(r.type == RECORD_STRING && r.string_len == 1);
    CHECK(r.has_location && r.lng == 10.25 && r.lat == -5.5 && !r.has_alt);
    CHECK_EQ_STR(r.group, "old");
    CHECK(r.metadata == NULL && r.unit == NULL && !r.has_time);
    /* Not an object; out is untouched on failure. */
    memset(&r, 0x5A, sizeof(r));
    struct record before = r;
    CHECK(json_parse(&a, "[1]", 3, &v, NULL, 0) == 0);
    CHECK_EQ_INT(record_from_json(&a, v, &r, err, sizeof(err)), SP_ERR_PAYLOAD);
    CHECK(strstr(err, "must be a JSON object") != NULL);
    CHECK(json_parse(&a, "{\"value\":1}", 11, &v, NULL, 0) == 0);
    CHECK_EQ_INT(record_from_json(&a, v, &r, err, sizeof(err)), SP_ERR_PAYLOAD);
    CHECK(strstr(err, "variable: missing") != NULL);
    CHECK(memcmp(&r, &before, sizeof(r)) == 0);
    /* Unknown member names are sanitized in the message. */
    CHECK(json_parse(&a, "{\"variable\":\"a\",\"b\\nad\":1}", 26, &v, NULL, 0) == 0);
    CHECK_EQ_INT(record_from_json(&a, v, &r, err, sizeof(err)), SP_ERR_PAYLOAD);
    CHECK(strstr(err, "unknown member \"b?ad\"") != NULL);
    arena_cleanup(&a);
}

int main(void)
{
    RUN(test_accept_corpus);
    RUN(test_reject_corpus);
    RUN(test_topic_metadata);
    RUN(test_binary_payload);
    RUN(test_failure_rolls_back);
    RUN(test_limits);
    RUN(test_validate);
    RUN(test_set_meta);
    RUN(test_iso8601);
    RUN(test_to_json);
    RUN(test_from_json_direct);
    return check_done();
}
