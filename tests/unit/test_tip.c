/*
 * test_tip.c - TagoTiP bodies. The grammar is driven by data: every
 * file tests/data/tip/NAME.txt holds one case a line, "<expect>\t<body>", where expect
 * is "ok:<canonical>" or "err:<wire code>"; '#' starts a comment line. The
 * canonical rendering of a parsed body is
 *   [@=loc][^group][@ts][{k=v,...}]|   body-level modifiers, only when present
 *   name OP value[#unit][@=loc][@ts][^group][{k=v,...}]   per variable, joined by ';'
 * with values unescaped (a decoded newline shows as <LF>), numbers and
 * coordinates printed from the parsed doubles (fewest digits that read back),
 * and inherited location (not onto an @= variable), group and timestamp shown
 * on each variable. Passthrough
 * renders as "x:<data>" or "b:<data>". Every body is also parsed at every
 * prefix length from an exact-size heap copy, so ASan catches any overread.
 * The rest (bytes a text file cannot hold, limits, the splitters, escaping,
 * the builder) is tested in C below.
 */
#include "check.h"
#include "sealpipe.h"
#include "tip_out.h"

#include <stdint.h>
#include <stdlib.h>

#ifndef SP_TEST_DATA
#define SP_TEST_DATA "tests/data"
#endif

static void put_meta(struct out *o, struct sp_span meta)
{
    struct sp_span cur = meta, k, v;
    int first = 1;

    puts_(o, "{");
    while (sp_tip_meta_next(&cur, &k, &v)) {
        if (!first)
            puts_(o, ",");
        first = 0;
        put(o, k.p, k.n);
        puts_(o, "=");
        put_unescaped(o, v);
    }
    puts_(o, "}");
}

static void put_time(struct out *o, int64_t t)
{
    char b[32];
    snprintf(b, sizeof b, "@%lld", (long long)t);
    puts_(o, b);
}

static void render(const struct sp_tip_body *b, struct out *o)
{
    o->n = 0;
    o->buf[0] = '\0';
    if (b->passthrough) {
        put(o, b->passthrough == 'x' ? "x:" : "b:", 2);
        put(o, b->data.p, b->data.n);
        return;
    }
    if (b->has_loc || b->group.n || b->has_time || b->meta.n) {
        if (b->has_loc) {
            puts_(o, "@=");
            put_double(o, b->lat);
            puts_(o, ",");
            put_double(o, b->lng);
            if (b->has_alt) {
                puts_(o, ",");
                put_double(o, b->alt);
            }
        }
        if (b->group.n) {
            puts_(o, "^");
            put(o, b->group.p, b->group.n);
        }
        if (b->has_time)
            put_time(o, b->time_ms);
        if (b->meta.n)
            put_meta(o, b->meta);
        puts_(o, "|");
    }
    for (size_t i = 0; i < b->nvars; i++) {
        const struct sp_tip_var *v = &b->vars[i];
        if (i)
            puts_(o, ";");
        put_var(o, v, put_double);
        if (v->meta.n)
            put_meta(o, v->meta);
    }
}

static struct sp_tip_body body;
static struct out rendered;

/* Parses an exact-size heap copy, so ASan sees any read past len. */
static int parse_copy(const char *s, size_t n)
{
    char *copy = malloc(n ? n : 1);
    int rc;

    if (copy == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    memcpy(copy, s, n);
    rc = sp_tip_parse_body(copy, n, &body);
    if (rc == 0)
        render(&body, &rendered);
    free(copy);
    return rc;
}

static void run_case(const char *file, int lineno, const char *expect, const char *bodytext)
{
    size_t n = strlen(bodytext);
    int rc = parse_copy(bodytext, n);
    int good;

    if (strncmp(expect, "ok:", 3) == 0)
        good = rc == 0 && strcmp(rendered.buf, expect + 3) == 0;
    else if (strncmp(expect, "err:", 4) == 0)
        good = rc < 0 && strcmp(sp_wirecode(rc), expect + 4) == 0;
    else
        good = 0;
    if (good) {
        check_passed++;
    } else {
        check_failed++;
        fprintf(stderr, "%s:%d: body %s\n  expected %s\n  got      %s\n", file, lineno, bodytext,
                expect, rc == 0 ? rendered.buf : sp_wirecode(rc));
    }
    /* every prefix must parse or fail cleanly */
    for (size_t k = 0; k < n; k++)
        (void)parse_copy(bodytext, k);
}

static int run_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, cases = 0;

    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    while ((len = getline(&line, &cap, f)) >= 0) {
        char *tab;
        lineno++;
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        tab = strchr(line, '\t');
        if (tab == NULL) {
            fprintf(stderr, "%s:%d: no tab\n", path, lineno);
            check_failed++;
            continue;
        }
        *tab = '\0';
        run_case(path, lineno, line, tab + 1);
        cases++;
    }
    free(line);
    fclose(f);
    return cases;
}

static void test_data_files(void)
{
    CHECK(check_each_file(SP_TEST_DATA "/tip", "tip data", run_file) >= 3);
}

/* Parses s (n bytes) and returns the rc; on success rendered holds the result. */
static int parse_n(const char *s, size_t n)
{
    return parse_copy(s, n);
}

static int parse_s(const char *s)
{
    return parse_copy(s, strlen(s));
}

/* Bytes and sizes a line-oriented text file cannot carry. */
static void test_bytes(void)
{
    CHECK_EQ_INT(parse_s("[a:=1]\n"), 0);
    CHECK_EQ_STR(rendered.buf, "a:=1");
    CHECK_EQ_INT(parse_s(">xDEAD\n"), 0);
    CHECK_EQ_STR(rendered.buf, "x:DEAD");
    CHECK_EQ_INT(parse_s(">b3q2+7wECAwQ=\n"), 0);
    CHECK_EQ_STR(rendered.buf, "b:3q2+7wECAwQ=");
    CHECK_EQ_INT(parse_s("[a:=1]\n\n"), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(parse_s("\n"), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(parse_s("[a=x\ny]"), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(parse_s("[a:=1;\nb:=2]"), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(parse_s("[a:=1]\r\n"), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(parse_s("[a=x\ty]"), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(parse_s("[a=x\x7fy]"), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(parse_s("[a:=1{k=x\x01}]"), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(parse_n("[a=x\0y]", 7), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(parse_n("[a\0:=1]", 7), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(parse_n("[a:=1]\0", 7), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(parse_n(">xDEAD\0", 7), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(parse_n("\0", 1), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(parse_n("", 0), SP_ERR_PAYLOAD);
    /* UTF-8: valid sequences of every length pass, broken ones do not */
    CHECK_EQ_INT(parse_s("[t:=1#\xc2\xb0"
                         "C;s=caf\xc3\xa9;e=\xe2\x82\xac;g=\xf0\x9f\x98\x80]"),
                 0);
    CHECK_EQ_INT(parse_s("[a=\xc3]"), SP_ERR_PAYLOAD);             /* truncated */
    CHECK_EQ_INT(parse_s("[a=\xe2\x82]"), SP_ERR_PAYLOAD);         /* truncated */
    CHECK_EQ_INT(parse_s("[a=\xc0\x80]"), SP_ERR_PAYLOAD);         /* overlong NUL */
    CHECK_EQ_INT(parse_s("[a=\xe0\x80\xaf]"), SP_ERR_PAYLOAD);     /* overlong */
    CHECK_EQ_INT(parse_s("[a=\xed\xa0\x80]"), SP_ERR_PAYLOAD);     /* surrogate */
    CHECK_EQ_INT(parse_s("[a=\xf4\x90\x80\x80]"), SP_ERR_PAYLOAD); /* > U+10FFFF */
    CHECK_EQ_INT(parse_s("[a=\x80]"), SP_ERR_PAYLOAD);             /* lone continuation */
    CHECK_EQ_INT(parse_s("[a=\xff]"), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(parse_s("[a:=1{k=\xc3}]"), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(parse_s("[a:=1#\xc3]"), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(parse_s("[\xc3\xa9:=1]"), SP_ERR_PAYLOAD); /* not in names */
}

/* Fills buf with "prefix" + n copies of c + "suffix". */
static size_t build(char *buf, const char *prefix, char c, size_t n, const char *suffix)
{
    size_t p = strlen(prefix), s = strlen(suffix);
    memcpy(buf, prefix, p);
    memset(buf + p, c, n);
    memcpy(buf + p + n, suffix, s);
    buf[p + n + s] = '\0';
    return p + n + s;
}

/*
 * The limits of §4.5 at their edge and one past it. Long because it is a list
 * of independent cases read top to bottom.
 */
static void test_limits(void)
{
    static char buf[SP_MAX_FRAME + 64];
    size_t n, i;

    n = build(buf, "[", 'a', 100, ":=1]");
    CHECK_EQ_INT(parse_n(buf, n), 0);
    n = build(buf, "[", 'a', 101, ":=1]");
    CHECK_EQ_INT(parse_n(buf, n), SP_ERR_PAYLOAD);
    n = build(buf, "^", 'g', 100, "[a:=1]");
    CHECK_EQ_INT(parse_n(buf, n), 0);
    n = build(buf, "^", 'g', 101, "[a:=1]");
    CHECK_EQ_INT(parse_n(buf, n), SP_ERR_PAYLOAD);
    n = build(buf, "[a:=1^", 'g', 100, "]");
    CHECK_EQ_INT(parse_n(buf, n), 0);
    n = build(buf, "[a:=1^", 'g', 101, "]");
    CHECK_EQ_INT(parse_n(buf, n), SP_ERR_PAYLOAD);
    n = build(buf, "[a:=1{", 'k', 100, "=v}]");
    CHECK_EQ_INT(parse_n(buf, n), 0);
    n = build(buf, "[a:=1{", 'k', 101, "=v}]");
    CHECK_EQ_INT(parse_n(buf, n), SP_ERR_PAYLOAD);
    n = build(buf, "{", 'k', 101, "=v}[a:=1]");
    CHECK_EQ_INT(parse_n(buf, n), SP_ERR_PAYLOAD);
    n = build(buf, "[a:=1#", 'u', 25, "]");
    CHECK_EQ_INT(parse_n(buf, n), 0);
    n = build(buf, "[a:=1#", 'u', 26, "]");
    CHECK_EQ_INT(parse_n(buf, n), SP_ERR_PAYLOAD);
    /* the unit limit counts bytes: 12 two-byte characters fit, 13 do not */
    strcpy(buf, "[a:=1#");
    for (i = 0; i < 12; i++)
        strcat(buf, "\xc2\xb0");
    strcat(buf, "]");
    CHECK_EQ_INT(parse_s(buf), 0);
    buf[strlen(buf) - 1] = '\0';
    strcat(buf, "\xc2\xb0]");
    CHECK_EQ_INT(parse_s(buf), SP_ERR_PAYLOAD);

    /* 100 variables, then 101 */
    strcpy(buf, "[");
    for (i = 0; i < 100; i++)
        strcat(buf, i ? ";v:=1" : "v:=1");
    strcat(buf, "]");
    CHECK_EQ_INT(parse_s(buf), 0);
    CHECK_EQ_INT(body.nvars, 100);
    buf[strlen(buf) - 1] = '\0';
    strcat(buf, ";v:=1]");
    CHECK_EQ_INT(parse_s(buf), SP_ERR_PAYLOAD);

    /* 32 metadata pairs, then 33, at both levels */
    strcpy(buf, "[a:=1{");
    for (i = 0; i < 32; i++)
        strcat(buf, i ? ",k=v" : "k=v");
    strcat(buf, "}]");
    CHECK_EQ_INT(parse_s(buf), 0);
    buf[strlen(buf) - 2] = '\0';
    strcat(buf, ",k=v}]");
    CHECK_EQ_INT(parse_s(buf), SP_ERR_PAYLOAD);
    strcpy(buf, "{");
    for (i = 0; i < 33; i++)
        strcat(buf, i ? ",k=v" : "k=v");
    strcat(buf, "}[a:=1]");
    CHECK_EQ_INT(parse_s(buf), SP_ERR_PAYLOAD);

    /* the frame limit: 16384 bytes pass (plus a terminator), 16385 do not */
    n = build(buf, "[s=", 'x', SP_MAX_FRAME - 4, "]");
    CHECK_EQ_INT(n, SP_MAX_FRAME);
    CHECK_EQ_INT(parse_n(buf, n), 0);
    buf[n] = '\n';
    CHECK_EQ_INT(parse_n(buf, n + 1), 0);
    n = build(buf, "[s=", 'x', SP_MAX_FRAME - 3, "]");
    CHECK_EQ_INT(parse_n(buf, n), SP_ERR_TOOLARGE);
    CHECK_EQ_STR(sp_wirecode(SP_ERR_TOOLARGE), "payload_too_large");
    n = build(buf, ">x", 'a', SP_MAX_FRAME - 2, "");
    CHECK_EQ_INT(parse_n(buf, n), 0);
    n = build(buf, ">x", 'a', SP_MAX_FRAME, "");
    CHECK_EQ_INT(parse_n(buf, n), SP_ERR_TOOLARGE);

    /* a very long but grammatical number */
    n = build(buf, "[a:=1", '0', 300, "]");
    CHECK_EQ_INT(parse_n(buf, n), 0);
    CHECK(body.vars[0].number > 1e299);
    n = build(buf, "[a:=0.", '1', 2000, "]");
    CHECK_EQ_INT(parse_n(buf, n), 0);
    CHECK(body.vars[0].number > 0.111 && body.vars[0].number < 0.112);
}

static void test_fields(void)
{
    const char *s = "^g@5{fw=2.1,note=a\\,b=c}[temp:=32.5#C@7^own{src=x};pos@=1,-2;s=hi\\;x;"
                    "b?=false]";
    const struct sp_tip_var *v;
    struct sp_span cur, k, val;
    char dec[64];

    CHECK_EQ_INT(sp_tip_parse_body(s, strlen(s), &body), 0);
    CHECK_EQ_INT(body.passthrough, 0);
    CHECK_EQ_INT(body.nvars, 4);
    CHECK_EQ_INT(body.has_time, 1);
    CHECK_EQ_INT(body.time_ms, 5);
    CHECK(body.group.n == 1 && body.group.p == s + 1);
    CHECK(body.meta.n == strlen("fw=2.1,note=a\\,b=c"));
    v = &body.vars[0];
    CHECK_EQ_INT(v->type, SP_TIP_NUMBER);
    CHECK(v->number == 32.5);
    CHECK(v->value.n == 4 && memcmp(v->value.p, "32.5", 4) == 0);
    CHECK(v->unit.n == 1 && v->unit.p[0] == 'C');
    CHECK_EQ_INT(v->time_ms, 7);
    CHECK(v->group.n == 3 && memcmp(v->group.p, "own", 3) == 0);
    CHECK(v->meta.n == 5 && memcmp(v->meta.p, "src=x", 5) == 0);
    v = &body.vars[1];
    CHECK_EQ_INT(v->type, SP_TIP_LOCATION);
    CHECK(v->lat == 1 && v->lng == -2 && !v->has_alt);
    CHECK(v->unit.n == 0 && v->meta.n == 0);
    CHECK_EQ_INT(v->time_ms, 5); /* inherited */
    CHECK(v->group.p == s + 1);  /* inherited, pointing at the body's group */
    v = &body.vars[2];
    CHECK_EQ_INT(v->type, SP_TIP_STRING);
    CHECK(v->value.n == 5);
    CHECK_EQ_INT(sp_tip_unescape(v->value, dec, sizeof dec), 4);
    CHECK_EQ_STR(dec, "hi;x");
    CHECK_EQ_INT(sp_tip_unescape(v->value, dec, 5), 4);
    CHECK_EQ_INT(sp_tip_unescape(v->value, dec, 4), SP_ERR_BUFSIZE);
    v = &body.vars[3];
    CHECK_EQ_INT(v->type, SP_TIP_BOOLEAN);
    CHECK_EQ_INT(v->boolean, 0);

    /* metadata pairs split on the first '=', values keep escaped commas */
    cur = body.meta;
    CHECK_EQ_INT(sp_tip_meta_next(&cur, &k, &val), 1);
    CHECK(k.n == 2 && memcmp(k.p, "fw", 2) == 0);
    CHECK(val.n == 3 && memcmp(val.p, "2.1", 3) == 0);
    CHECK_EQ_INT(sp_tip_meta_next(&cur, &k, &val), 1);
    CHECK(k.n == 4 && memcmp(k.p, "note", 4) == 0);
    CHECK_EQ_INT(sp_tip_unescape(val, dec, sizeof dec), 5);
    CHECK_EQ_STR(dec, "a,b=c");
    CHECK_EQ_INT(sp_tip_meta_next(&cur, &k, &val), 0);
    CHECK_EQ_INT(sp_tip_meta_next(&cur, &k, &val), 0);

    /* a rejected body leaves the caller's struct untouched */
    memset(&body, 0x5a, sizeof body);
    CHECK_EQ_INT(sp_tip_parse_body("[a:=1;b:=x]", 11, &body), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(body.nvars, (long long)0x5a5a5a5a5a5a5a5aULL);
    CHECK_EQ_INT(((unsigned char *)&body.vars[0])[0], 0x5a);

    /* timestamps: int64 range */
    CHECK_EQ_INT(parse_s("[a:=1@9223372036854775807]"), 0);
    CHECK(body.vars[0].time_ms == INT64_MAX);
    CHECK_EQ_INT(parse_s("[a:=1@9223372036854775808]"), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(parse_s("@99999999999999999999[a:=1]"), SP_ERR_PAYLOAD);
}

static void test_escape(void)
{
    char out[128], back[300];
    const char *all = "a|b[c]d;e,f{g}h#i@j^k\\l\nm";
    int n;

    n = sp_tip_escape(all, strlen(all), out, sizeof out);
    CHECK_EQ_STR(out, "a\\|b\\[c\\]d\\;e\\,f\\{g\\}h\\#i\\@j\\^k\\\\l\\nm");
    CHECK_EQ_INT(n, (long long)strlen(out));
    {
        struct sp_span sp = {out, (size_t)n};
        CHECK_EQ_INT(sp_tip_unescape(sp, back, sizeof back), (long long)strlen(all));
        CHECK_EQ_STR(back, all);
    }
    /* the escaped text is a valid string value and metadata value */
    snprintf(back, sizeof back, "[s=%s{k=%s}]", out, out);
    CHECK_EQ_INT(parse_s(back), 0);
    CHECK_EQ_INT(sp_tip_escape("caf\xc3\xa9 = ok?", 11, out, sizeof out), 11);
    CHECK_EQ_INT(sp_tip_escape("a\0b", 3, out, sizeof out), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_tip_escape("a\tb", 3, out, sizeof out), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_tip_escape("a\rb", 3, out, sizeof out), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_tip_escape("a\x7f", 2, out, sizeof out), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_tip_escape("\xc3", 1, out, sizeof out), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_tip_escape("abc", 3, out, 4), 3);
    CHECK_EQ_INT(sp_tip_escape("abc", 3, out, 3), SP_ERR_BUFSIZE);
    CHECK_EQ_INT(sp_tip_escape("a;", 2, out, 3), SP_ERR_BUFSIZE);
    CHECK_EQ_INT(sp_tip_escape("a;", 2, out, 4), 3);
    CHECK_EQ_INT(sp_tip_escape("", 0, out, 1), 0);
}

static void test_inner_split(void)
{
    struct sp_span serial, b;
    static char buf[256];
    size_t n;

    CHECK_EQ_INT(sp_inner_split("sensor-01|[temp:=32]", 20, SP_METHOD_PUSH, &serial, &b), 0);
    CHECK(serial.n == 9 && memcmp(serial.p, "sensor-01", 9) == 0);
    CHECK(b.n == 10 && memcmp(b.p, "[temp:=32]", 10) == 0);
    CHECK_EQ_INT(sp_inner_split("sensor-01|[temperature]", 23, SP_METHOD_PULL, &serial, &b), 0);
    CHECK(b.n == 13);
    CHECK_EQ_INT(sp_inner_split("sensor-01", 9, SP_METHOD_PING, &serial, &b), 0);
    CHECK(serial.n == 9 && b.n == 0);
    CHECK_EQ_INT(sp_inner_split("sensor-01\n", 10, SP_METHOD_PING, &serial, &b), 0);
    CHECK(serial.n == 9 && b.n == 0);
    CHECK_EQ_INT(sp_inner_split("Dev_0A-1F|>xDEAD", 16, SP_METHOD_PUSH, &serial, &b), 0);
    CHECK(serial.n == 9 && b.n == 6);
    /* the body keeps its own escaped pipes */
    CHECK_EQ_INT(sp_inner_split("d|[s=a\\|b]", 10, SP_METHOD_PUSH, &serial, &b), 0);
    CHECK(serial.n == 1 && b.n == 8);

    CHECK_EQ_INT(sp_inner_split("sensor-01", 9, SP_METHOD_PUSH, &serial, &b), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_inner_split("sensor-01|x", 11, SP_METHOD_PING, &serial, &b), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_inner_split("|[a:=1]", 7, SP_METHOD_PUSH, &serial, &b), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_inner_split("", 0, SP_METHOD_PING, &serial, &b), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_inner_split("sen sor|[a:=1]", 14, SP_METHOD_PUSH, &serial, &b), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_inner_split("sen.sor|[a:=1]", 14, SP_METHOD_PUSH, &serial, &b), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_inner_split("sen\\|sor|[a:=1]", 15, SP_METHOD_PUSH, &serial, &b),
                 SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_inner_split("OK|3", 4, SP_METHOD_ACK, &serial, &b), SP_ERR_PAYLOAD);
    n = build(buf, "", 's', 100, "|[a:=1]");
    CHECK_EQ_INT(sp_inner_split(buf, n, SP_METHOD_PUSH, &serial, &b), 0);
    CHECK_EQ_INT(serial.n, 100);
    n = build(buf, "", 's', 101, "|[a:=1]");
    CHECK_EQ_INT(sp_inner_split(buf, n, SP_METHOD_PUSH, &serial, &b), SP_ERR_PAYLOAD);
    n = build(buf, "", 's', 101, "");
    CHECK_EQ_INT(sp_inner_split(buf, n, SP_METHOD_PING, &serial, &b), SP_ERR_PAYLOAD);
}

static void test_split_counter(void)
{
    struct sp_span b;
    int has = -1;
    uint32_t c = 99;

    CHECK_EQ_INT(sp_tip_split_counter("[a:=1]", 6, &has, &c, &b), 0);
    CHECK(has == 0 && c == 0 && b.n == 6);
    CHECK_EQ_INT(sp_tip_split_counter("!42|[temp:=32#C;humidity:=65#%]", 31, &has, &c, &b), 0);
    CHECK(has == 1 && c == 42 && b.n == 27 && b.p[0] == '[');
    CHECK_EQ_INT(sp_tip_split_counter("!1|>xDEADBEEF01020304", 21, &has, &c, &b), 0);
    CHECK(has == 1 && c == 1 && b.n == 18);
    CHECK_EQ_INT(sp_tip_split_counter("!0|[a:=1]", 9, &has, &c, &b), 0);
    CHECK(has == 1 && c == 0);
    CHECK_EQ_INT(sp_tip_split_counter("!4294967295|x", 13, &has, &c, &b), 0);
    CHECK(c == 4294967295u && b.n == 1);
    CHECK_EQ_INT(sp_tip_split_counter("!7|", 3, &has, &c, &b), 0);
    CHECK(c == 7 && b.n == 0);
    CHECK_EQ_INT(sp_tip_split_counter("", 0, &has, &c, &b), 0);
    CHECK(has == 0 && b.n == 0);

    has = -1;
    CHECK_EQ_INT(sp_tip_split_counter("!4294967296|x", 13, &has, &c, &b), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_tip_split_counter("!99999999999999999999|x", 23, &has, &c, &b), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_tip_split_counter("!01|x", 5, &has, &c, &b), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_tip_split_counter("!|x", 3, &has, &c, &b), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_tip_split_counter("!", 1, &has, &c, &b), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_tip_split_counter("!42", 3, &has, &c, &b), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_tip_split_counter("!-1|x", 5, &has, &c, &b), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_tip_split_counter("!+1|x", 5, &has, &c, &b), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_tip_split_counter("!4a|x", 5, &has, &c, &b), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_tip_split_counter("! 4|x", 5, &has, &c, &b), SP_ERR_PAYLOAD);
    CHECK_EQ_INT(has, -1); /* untouched on failure */
}

/* The builder end to end. Long because it is a list of cases read top to bottom. */
static void test_builder(void)
{
    char buf[256], small[12];
    struct sp_tip_builder b;
    size_t len = 0;

    sp_tip_build_init(&b, buf, sizeof buf);
    sp_tip_add_number(&b, "temp", 21.5, "C");
    sp_tip_add_number(&b, "count", 3, NULL);
    sp_tip_add_number(&b, "neg", -0.25, "");
    sp_tip_add_number(&b, "tiny", 0.1, NULL);
    sp_tip_add_number(&b, "big", 1e20, NULL);
    sp_tip_add_string(&b, "status", "a;b|c\nd", NULL);
    sp_tip_add_string(&b, "where", "caf\xc3\xa9", "\xc2\xb0");
    sp_tip_add_bool(&b, "on", 1);
    sp_tip_add_bool(&b, "off", 0);
    CHECK_EQ_INT(sp_tip_build_end(&b, &len), 0);
    CHECK_EQ_STR(buf, "[temp:=21.5#C;count:=3;neg:=-0.25;tiny:=0.1;big:=100000000000000000000;"
                      "status=a\\;b\\|c\\nd;where=caf\xc3\xa9#\xc2\xb0;on?=true;off?=false]");
    CHECK_EQ_INT(len, (long long)strlen(buf));
    /* what the builder writes parses back to the same values */
    CHECK_EQ_INT(parse_n(buf, len), 0);
    CHECK_EQ_STR(rendered.buf,
                 "temp:=21.5#C;count:=3;neg:=-0.25;tiny:=0.1;big:=100000000000000000000;"
                 "status=a;b|c<LF>d;where=caf\xc3\xa9#\xc2\xb0;on?=true;off?=false");
    CHECK(body.vars[0].number == 21.5);
    CHECK(body.vars[3].number == 0.1);

    /* errors stick and roll back */
    sp_tip_build_init(&b, buf, sizeof buf);
    sp_tip_add_number(&b, "ok", 1, NULL);
    sp_tip_add_number(&b, "Bad", 1, NULL);
    sp_tip_add_number(&b, "later", 1, NULL);
    CHECK_EQ_INT(sp_tip_build_end(&b, &len), SP_ERR_PAYLOAD);
    CHECK_EQ_STR(buf, "[ok:=1");
    sp_tip_build_init(&b, buf, sizeof buf);
    CHECK_EQ_INT(sp_tip_build_end(&b, &len), SP_ERR_PAYLOAD); /* no "[]" */
    sp_tip_build_init(&b, buf, sizeof buf);
    sp_tip_add_string(&b, "s", "", NULL);
    CHECK_EQ_INT(sp_tip_build_end(&b, &len), SP_ERR_PAYLOAD);
    sp_tip_build_init(&b, buf, sizeof buf);
    sp_tip_add_string(&b, "s", "a\tb", NULL);
    CHECK_EQ_INT(sp_tip_build_end(&b, &len), SP_ERR_PAYLOAD);
    sp_tip_build_init(&b, buf, sizeof buf);
    sp_tip_add_number(&b, "n", 0.0 / 0.0, NULL);
    CHECK_EQ_INT(sp_tip_build_end(&b, &len), SP_ERR_PAYLOAD);
    sp_tip_build_init(&b, buf, sizeof buf);
    sp_tip_add_number(&b, "n", 1, "a;b");
    CHECK_EQ_INT(sp_tip_build_end(&b, &len), SP_ERR_PAYLOAD);
    sp_tip_build_init(&b, buf, sizeof buf);
    sp_tip_add_number(&b, "n", 1, "abcdefghijklmnopqrstuvwxyz");
    CHECK_EQ_INT(sp_tip_build_end(&b, &len), SP_ERR_PAYLOAD);

    /* the buffer: "[a:=1]" plus NUL fits in 7, not in 6 */
    sp_tip_build_init(&b, small, 7);
    sp_tip_add_number(&b, "a", 1, NULL);
    CHECK_EQ_INT(sp_tip_build_end(&b, &len), 0);
    CHECK_EQ_STR(small, "[a:=1]");
    sp_tip_build_init(&b, small, 6);
    sp_tip_add_number(&b, "a", 1, NULL);
    CHECK_EQ_INT(sp_tip_build_end(&b, &len), SP_ERR_BUFSIZE);
    sp_tip_build_init(&b, small, 7);
    sp_tip_add_string(&b, "a", "x", NULL);
    CHECK_EQ_INT(sp_tip_build_end(&b, &len), 0);
    CHECK_EQ_STR(small, "[a=x]");
    sp_tip_build_init(&b, small, 6);
    sp_tip_add_string(&b, "a", "xy", NULL);
    CHECK_EQ_INT(sp_tip_build_end(&b, &len), SP_ERR_BUFSIZE);

    /* 100 variables, not 101 */
    {
        static char big[SP_MAX_FRAME];
        sp_tip_build_init(&b, big, sizeof big);
        for (int i = 0; i < 100; i++)
            sp_tip_add_bool(&b, "v", i & 1);
        CHECK_EQ_INT(sp_tip_build_end(&b, &len), 0);
        CHECK_EQ_INT(parse_n(big, len), 0);
        CHECK_EQ_INT(body.nvars, 100);
        sp_tip_build_init(&b, big, sizeof big);
        for (int i = 0; i < 101; i++)
            sp_tip_add_bool(&b, "v", i & 1);
        CHECK_EQ_INT(sp_tip_build_end(&b, &len), SP_ERR_PAYLOAD);
    }
}

int main(void)
{
    if (sp_init() != 0)
        return 1;
    RUN(test_data_files);
    RUN(test_bytes);
    RUN(test_limits);
    RUN(test_fields);
    RUN(test_escape);
    RUN(test_inner_split);
    RUN(test_split_counter);
    RUN(test_builder);
    return check_done();
}
