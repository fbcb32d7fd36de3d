/*
 * test_json.c - unit tests for the strict JSON reader and writer
 * (runtime/base/json.c). Text cases live in tests/data/json/: valid.txt holds
 * (input, expected compact output) pairs, invalid.txt one refused text per
 * line. Cases that need raw bytes (bad UTF-8, NUL) or generated input (deep
 * nesting, long numbers) are written here.
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
#include "sealpipe.h"

static int parse(struct arena *a, const char *s, size_t n, struct json **out)
{
    char err[128];
    return json_parse(a, s, n, out, err, sizeof(err));
}

/* What a corpus case runs with. */
struct corpus {
    struct arena a;
    struct buf b;
};

static int valid_case(void *ctx, const char *in, size_t in_n, const char *want, size_t want_n)
{
    struct corpus *c = ctx;
    struct json *v = NULL;
    char err[128] = "";
    int rc = json_parse(&c->a, in, in_n, &v, err, sizeof(err));

    if (rc) {
        fprintf(stderr, "valid case refused: %.*s (%s)\n", (int)in_n, in, err);
        CHECK(rc == 0);
        return 0;
    }
    buf_reset(&c->b);
    CHECK(json_write(&c->b, v) == 0);
    if (c->b.len != want_n || memcmp(c->b.p, want, want_n) != 0) {
        fprintf(stderr, "case %.*s: wrote %s, expected %.*s\n", (int)in_n, in, c->b.p, (int)want_n,
                want);
        CHECK(0);
    }
    /* The writer's output is itself valid and a fixed point. */
    struct json *again = NULL;
    CHECK(parse(&c->a, c->b.p, c->b.len, &again) == 0);
    if (again) {
        struct buf b2;
        buf_init(&b2, 1 << 20);
        CHECK(json_write(&b2, again) == 0);
        CHECK(b2.len == c->b.len && memcmp(b2.p, c->b.p, c->b.len) == 0);
        buf_cleanup(&b2);
    }
    return 1;
}

static void test_valid_corpus(void)
{
    struct corpus c;

    arena_init(&c.a, SP_LIMIT_ARENA);
    buf_init(&c.b, 1 << 20);
    CHECK(check_each_pair(SP_TEST_DATA "/json/valid.txt", valid_case, &c) >= 30);
    buf_cleanup(&c.b);
    arena_cleanup(&c.a);
}

static void test_invalid_corpus(void)
{
    struct arena a;
    size_t len, n, cases = 0;
    const char *in;
    char *text = check_slurp(SP_TEST_DATA "/json/invalid.txt", &len);

    CHECK(text != NULL);
    if (!text)
        return;
    arena_init(&a, SP_LIMIT_ARENA);
    const char *cur = text, *end = text + len;
    while (check_next_case(&cur, end, &in, &n)) {
        struct json *v = NULL;
        char err[128] = "";
        int rc = json_parse(&a, in, n, &v, err, sizeof(err));
        if (rc != SP_ERR_PAYLOAD) {
            fprintf(stderr, "invalid case accepted: %.*s\n", (int)n, in);
            CHECK(rc == SP_ERR_PAYLOAD);
            continue;
        }
        CHECK(strncmp(err, "json: offset ", 13) == 0);
        cases++;
    }
    CHECK(cases >= 50);
    arena_cleanup(&a);
    free(text);
}

static void expect_refused(struct arena *a, const char *s, size_t n)
{
    struct json *v = NULL;
    int rc = parse(a, s, n, &v);
    if (rc != SP_ERR_PAYLOAD) {
        fprintf(stderr, "accepted %zu bytes starting '%.*s'\n", n, n > 20 ? 20 : (int)n, s);
        CHECK(rc == SP_ERR_PAYLOAD);
    } else {
        CHECK(1);
    }
}

static void test_bad_utf8(void)
{
    struct arena a;
    static const char *const bad[] = {
        "\"\x80\"",             /* lone continuation byte */
        "\"\xC0\x80\"",         /* overlong NUL */
        "\"\xC1\xBF\"",         /* overlong */
        "\"\xE0\x80\xAF\"",     /* overlong 3-byte */
        "\"\xF0\x80\x80\xAF\"", /* overlong 4-byte */
        "\"\xED\xA0\x80\"",     /* encoded high surrogate */
        "\"\xED\xBF\xBF\"",     /* encoded low surrogate */
        "\"\xF4\x90\x80\x80\"", /* above U+10FFFF */
        "\"\xF5\x80\x80\x80\"",
        "\"\xFE\"",
        "\"\xFF\"",
        "\"\xE2\x82\"",   /* truncated */
        "\"\xE2\x82x\"",  /* bad continuation */
        "\xEF\xBB\xBF{}", /* a BOM is not JSON */
        "{\"\xFF\":1}",   /* in a key */
    };
    arena_init(&a, SP_LIMIT_ARENA);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        expect_refused(&a, bad[i], strlen(bad[i]));
    /* NUL bytes: raw inside a string, outside, and cutting a literal. */
    expect_refused(&a, "\"a\0b\"", 5);
    expect_refused(&a, "[1]\0", 4);
    expect_refused(&a, "nu\0l", 4);
    /* Raw control characters inside strings. */
    expect_refused(&a, "\"a\nb\"", 5);
    expect_refused(&a, "\"\x1f\"", 3);
    /* Empty and white space only. */
    expect_refused(&a, "", 0);
    expect_refused(&a, " \n\t", 3);
    /* Length is honoured: "[1]" cut to "[1". */
    expect_refused(&a, "[1]", 2);

    /* Boundaries that are valid. */
    static const char *const good[] = {
        "\"\xC2\x80\"",     "\"\xDF\xBF\"",         "\"\xE0\xA0\x80\"",    "\"\xED\x9F\xBF\"",
        "\"\xEE\x80\x80\"", "\"\xF0\x90\x80\x80\"", "\"\xF4\x8F\xBF\xBF\""};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct json *v = NULL;
        CHECK(parse(&a, good[i], strlen(good[i]), &v) == 0);
        CHECK(v && v->type == JSON_STRING && v->len == strlen(good[i]) - 2);
    }
    arena_cleanup(&a);
}

static void test_utf8_valid(void)
{
    CHECK(sp__utf8_valid("", 0));
    CHECK(sp__utf8_valid("abc", 3));
    CHECK(sp__utf8_valid("a\0b", 3)); /* NUL is valid UTF-8; callers decide */
    CHECK(sp__utf8_valid("\xC3\xA9", 2));
    CHECK(sp__utf8_valid("\xF0\x9F\x98\x80", 4));
    CHECK(!sp__utf8_valid("\xC3", 1));
    CHECK(!sp__utf8_valid("\xC3\xA9", 1));
    CHECK(!sp__utf8_valid("\xC0\xAF", 2));
    CHECK(!sp__utf8_valid("\xED\xA0\x80", 3));
    CHECK(!sp__utf8_valid("\xF4\x90\x80\x80", 4));
    CHECK(!sp__utf8_valid("ok\xFF", 3));
}

static void test_surrogates(void)
{
    struct arena a;
    struct json *v = NULL;

    arena_init(&a, SP_LIMIT_ARENA);
    CHECK(parse(&a, "\"\\ud83d\\ude00\"", 14, &v) == 0);
    CHECK(v && v->len == 4 && memcmp(v->str, "\xF0\x9F\x98\x80", 4) == 0);
    CHECK(parse(&a, "\"\\uDBFF\\uDFFF\"", 14, &v) == 0);
    CHECK(v && v->len == 4 && memcmp(v->str, "\xF4\x8F\xBF\xBF", 4) == 0);
    CHECK(parse(&a, "\"x\\u00e9y\"", 10, &v) == 0);
    CHECK(v && v->len == 4 && strcmp(v->str, "x\xC3\xA9y") == 0);
    expect_refused(&a, "\"\\ud83d\"", 8);
    expect_refused(&a, "\"\\ude00\"", 8);
    expect_refused(&a, "\"\\ud83d\\ud83d\"", 14);
    expect_refused(&a, "\"\\ud83d\\n\"", 10);
    expect_refused(&a, "\"\\ud83d\\u", 9);
    expect_refused(&a, "\"\\u0000\"", 8);
    arena_cleanup(&a);
}

static void test_depth(void)
{
    struct arena a;
    char text[2 * (SP_LIMIT_JSON_DEPTH + 1) + 1];
    struct json *v = NULL;

    arena_init(&a, SP_LIMIT_ARENA);
    for (int depth = SP_LIMIT_JSON_DEPTH; depth <= SP_LIMIT_JSON_DEPTH + 1; depth++) {
        memset(text, '[', (size_t)depth);
        memset(text + depth, ']', (size_t)depth);
        int rc = parse(&a, text, (size_t)(2 * depth), &v);
        CHECK_EQ_INT(rc, depth <= SP_LIMIT_JSON_DEPTH ? 0 : SP_ERR_PAYLOAD);
    }
    /* Objects count too. */
    struct buf b;
    buf_init(&b, 1 << 16);
    for (int i = 0; i < SP_LIMIT_JSON_DEPTH + 1; i++)
        CHECK(buf_puts(&b, "{\"a\":") == 0);
    CHECK(buf_putc(&b, '1') == 0);
    for (int i = 0; i < SP_LIMIT_JSON_DEPTH + 1; i++)
        CHECK(buf_putc(&b, '}') == 0);
    CHECK_EQ_INT(parse(&a, b.p, b.len, &v), SP_ERR_PAYLOAD);
    /* A very deep hostile input fails fast without recursing further. */
    buf_reset(&b);
    int ok = 1;
    for (int i = 0; i < 50000; i++)
        ok &= buf_putc(&b, '[') == 0;
    CHECK(ok);
    CHECK_EQ_INT(parse(&a, b.p, b.len, &v), SP_ERR_PAYLOAD);
    /* Siblings do not add depth. */
    buf_reset(&b);
    CHECK(buf_putc(&b, '[') == 0);
    for (int i = 0; i < 1000; i++)
        ok &= buf_puts(&b, i ? ",[]" : "[]") == 0;
    CHECK(ok);
    CHECK(buf_putc(&b, ']') == 0);
    CHECK_EQ_INT(parse(&a, b.p, b.len, &v), 0);
    CHECK(v && v->len == 1000);
    buf_cleanup(&b);
    arena_cleanup(&a);
}

static void test_numbers(void)
{
    struct arena a;
    struct json *v = NULL;
    char big[1000];

    arena_init(&a, SP_LIMIT_ARENA);
    CHECK(parse(&a, "1.7976931348623157e308", 22, &v) == 0);
    CHECK(v && v->number == 1.7976931348623157e308);
    CHECK(parse(&a, "-9007199254740992", 17, &v) == 0);
    CHECK(v && v->number == -9007199254740992.0);
    CHECK(parse(&a, "4.9e-324", 8, &v) == 0);
    CHECK(v && v->number > 0);
    CHECK(parse(&a, "-0", 2, &v) == 0);
    CHECK(v && v->number == 0 && signbit(v->number));
    /* 300 digits is fine, a number longer than the bounded copy is not. */
    memset(big, '9', sizeof(big));
    big[0] = '1';
    CHECK(parse(&a, big, 300, &v) == 0);
    CHECK(v && v->number > 1e299);
    expect_refused(&a, big, 309); /* 1e309 overflows to infinity */
    expect_refused(&a, big, sizeof(big));
    /* Input not NUL-terminated right after the number. */
    CHECK(parse(&a, "12345", 3, &v) == 0);
    CHECK(v && v->number == 123);
    arena_cleanup(&a);
}

static void test_tree_and_get(void)
{
    struct arena a;
    struct json *v = NULL;
    const char *t = "{\"a\":1,\"b\":{\"c\":[1,2,3]},\"a\":\"last\",\"k\\u0041\":true}";

    arena_init(&a, SP_LIMIT_ARENA);
    CHECK(parse(&a, t, strlen(t), &v) == 0);
    if (!v)
        return;
    CHECK(v->type == JSON_OBJECT && v->len == 4);
    const struct json *x = json_get(v, "a");
    CHECK(x && x->type == JSON_STRING && strcmp(x->str, "last") == 0);
    CHECK(v->child && v->child->type == JSON_NUMBER && v->child->number == 1);
    x = json_get(v, "b");
    CHECK(x && x->type == JSON_OBJECT && x->len == 1);
    x = json_get(x, "c");
    CHECK(x && x->type == JSON_ARRAY && x->len == 3 && x->child->next->number == 2);
    CHECK(x && x->child->key == NULL);
    x = json_get(v, "kA");
    CHECK(x && x->type == JSON_TRUE);
    CHECK(json_get(v, "missing") == NULL);
    CHECK(json_get(v, "") == NULL);
    CHECK(json_get(json_get(v, "a"), "a") == NULL); /* not an object */
    CHECK(json_get(NULL, "a") == NULL);
    /* Keys with escapes compare decoded; an embedded NUL key cannot exist. */
    CHECK(parse(&a, "{\"\\u00e9\":2}", 12, &v) == 0);
    CHECK(json_get(v, "\xC3\xA9") != NULL);
    arena_cleanup(&a);
}

static void test_errors(void)
{
    struct arena a;
    struct json *v = (struct json *)&a; /* must stay untouched on failure */
    struct json *const sentinel = v;
    char err[64];

    arena_init(&a, SP_LIMIT_ARENA);
    CHECK_EQ_INT(json_parse(&a, "[1,x]", 5, &v, err, sizeof(err)), SP_ERR_PAYLOAD);
    CHECK(v == sentinel);
    CHECK(strstr(err, "offset 3") != NULL);
    CHECK_EQ_INT(json_parse(&a, "[1]", 3, &v, NULL, 0), 0);
    /* A tiny error buffer is truncated, not overrun. */
    char small[8];
    CHECK_EQ_INT(json_parse(&a, "[1,x]", 5, &v, small, sizeof(small)), SP_ERR_PAYLOAD);
    CHECK(strlen(small) < sizeof(small));
    arena_cleanup(&a);

    /* Arena exhaustion is SP_ERR_NOMEM, not a payload error. */
    arena_init(&a, 64);
    CHECK_EQ_INT(json_parse(&a, "[1,2,3,4,5,6,7]", 15, &v, err, sizeof(err)), SP_ERR_NOMEM);
    arena_cleanup(&a);
}

static const char *write_str(struct buf *b, const char *s, size_t n)
{
    buf_reset(b);
    if (json_write_string(b, s, n))
        return "(error)";
    return b->p;
}

static const char *write_num(struct buf *b, double d)
{
    buf_reset(b);
    if (json_write_number(b, d))
        return "(error)";
    return b->p;
}

static void test_writer(void)
{
    struct buf b;
    struct arena a;

    buf_init(&b, 4096);
    arena_init(&a, SP_LIMIT_ARENA);
    CHECK_EQ_STR(write_str(&b, "", 0), "\"\"");
    CHECK_EQ_STR(write_str(&b, "plain", 5), "\"plain\"");
    CHECK_EQ_STR(write_str(&b, "q\"b\\s/", 6), "\"q\\\"b\\\\s/\"");
    CHECK_EQ_STR(write_str(&b, "\b\f\n\r\t", 5), "\"\\b\\f\\n\\r\\t\"");
    CHECK_EQ_STR(write_str(&b, "\x01\x1f\x7f", 3), "\"\\u0001\\u001f\x7f\"");
    CHECK_EQ_STR(write_str(&b, "a\0b", 3), "\"a\\u0000b\"");
    CHECK_EQ_STR(write_str(&b, "\xC3\xA9\xF0\x9F\x98\x80", 6), "\"\xC3\xA9\xF0\x9F\x98\x80\"");
    CHECK_EQ_STR(write_str(&b, "\xFF", 1), "\"\\u00ff\"");
    CHECK_EQ_STR(write_str(&b, "a\xC3", 2), "\"a\\u00c3\"");
    CHECK_EQ_STR(write_str(&b, "\xED\xA0\x80", 3), "\"\\u00ed\\u00a0\\u0080\"");

    /* Whatever the bytes, the output parses back. */
    unsigned char all[255];
    for (int i = 0; i < 255; i++)
        all[i] = (unsigned char)(i + 1);
    struct json *v = NULL;
    write_str(&b, (const char *)all, sizeof(all));
    CHECK(parse(&a, b.p, b.len, &v) == 0);
    CHECK(v && v->type == JSON_STRING);
    /* A NUL is written as \u0000, which the reader refuses by design. */
    write_str(&b, "a\0b", 3);
    CHECK_EQ_INT(parse(&a, b.p, b.len, &v), SP_ERR_PAYLOAD);

    CHECK_EQ_STR(write_num(&b, 0), "0");
    CHECK_EQ_STR(write_num(&b, -0.0), "0");
    CHECK_EQ_STR(write_num(&b, 42), "42");
    CHECK_EQ_STR(write_num(&b, -7), "-7");
    CHECK_EQ_STR(write_num(&b, 1795514400000.0), "1795514400000");
    CHECK_EQ_STR(write_num(&b, 9007199254740992.0), "9007199254740992");
    CHECK_EQ_STR(write_num(&b, -9007199254740992.0), "-9007199254740992");
    CHECK_EQ_STR(write_num(&b, 18014398509481984.0), "18014398509481984");
    CHECK_EQ_STR(write_num(&b, 1e100), "1e+100");
    CHECK_EQ_STR(write_num(&b, 0.1), "0.1");
    CHECK_EQ_STR(write_num(&b, 21.5), "21.5");
    CHECK_EQ_STR(write_num(&b, -46.6), "-46.6");
    CHECK_EQ_STR(write_num(&b, 1.0 / 3), "0.3333333333333333");
    CHECK_EQ_STR(write_num(&b, 5e-324), "4.94065645841247e-324");
    CHECK_EQ_STR(write_num(&b, 0.1 + 0.2), "0.30000000000000004");
    CHECK_EQ_STR(write_num(&b, NAN), "null");
    CHECK_EQ_STR(write_num(&b, INFINITY), "null");
    CHECK_EQ_STR(write_num(&b, -INFINITY), "null");
    /* Every finite double round-trips through the text. */
    static const double samples[] = {0.1 + 0.2, 1e-7, 123456.789, 2.5e-300, 1.7976931348623157e308};
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++)
        CHECK(strtod(write_num(&b, samples[i]), NULL) == samples[i]);

    /* Hand-built trees: NULL key, writing into a capped buffer. */
    struct json leaf = {.type = JSON_NUMBER, .number = 1};
    struct json obj = {.type = JSON_OBJECT, .child = &leaf, .len = 1};
    buf_reset(&b);
    CHECK(json_write(&b, &obj) == 0);
    CHECK_EQ_STR(b.p, "{\"\":1}");
    struct buf tiny;
    buf_init(&tiny, 4);
    CHECK_EQ_INT(json_write(&tiny, &obj), SP_ERR_TOOLARGE);
    CHECK_EQ_INT(json_write_string(&tiny, "abcdef", 6), SP_ERR_TOOLARGE);
    buf_cleanup(&tiny);
    buf_cleanup(&b);
    arena_cleanup(&a);
}

int main(void)
{
    RUN(test_valid_corpus);
    RUN(test_invalid_corpus);
    RUN(test_bad_utf8);
    RUN(test_utf8_valid);
    RUN(test_surrogates);
    RUN(test_depth);
    RUN(test_numbers);
    RUN(test_tree_and_get);
    RUN(test_errors);
    RUN(test_writer);
    return check_done();
}
