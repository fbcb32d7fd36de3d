/*
 * test_frame.c - whole TagoTiP frames, PULL lists, ACKs, and the MQTT and
 * TagoTiP/S forms of each (TagoTiP.md Revision D §4-§14,
 * TagoTiPs.md §4, TagoTipServers.md §2-§3).
 *
 * Driven by data: every file tests/data/conformance/NAME.txt holds one case a
 * line, "<kind>\t<expect>\t<input>", '#' starting a comment line. expect is
 * "ok:<rendering>" or "err:<wire code>" (sp_wirecode of the error). Kinds:
 *   frame       sp_tip_parse_frame: METHOD|[!N|]AUTH|SERIAL[|BODY]
 *   ack         sp_tip_parse_ack, SP_ACK_FRAME: ACK|[!N|]STATUS[|DETAIL]
 *   ack_mqtt    sp_tip_parse_ack, SP_ACK_MQTT:  [!N|]STATUS[|DETAIL]
 *   ack_inner   sp_tip_parse_ack, SP_ACK_INNER: STATUS[|DETAIL]
 *   pull        sp_tip_parse_pull: [a;b]
 *   pull_csv    sp_tip_parse_pull with csv: a,b
 *   body        sp_tip_parse_body: a PUSH body (HTTP POST) or a PULL response
 *   mqtt_push   sp_tip_split_counter, then sp_tip_parse_body
 *   mqtt_pull   sp_tip_split_counter, then sp_tip_parse_pull with csv
 *   inner_push, inner_pull, inner_ping
 *               sp_inner_split with that method, then the body or the list
 * The rendering of a success is its fields separated by single spaces:
 *   frame       METHOD [!N] AUTH SERIAL [BODY or LIST]  (AUTH from the parsed
 *               bytes, in lowercase hex)
 *   ack*        [!N] STATUS [DETAIL]  (an OK detail that is a PULL response
 *               shows as "[" RECORDS "]", any other detail as written)
 *   mqtt_*      [!N] BODY or LIST
 *   inner_*     SERIAL [BODY or LIST]
 * LIST is "[name;name]" whichever separator the input used. BODY is
 * "x:<data>" / "b:<data>" for passthrough, else RECORDS: one record per
 * variable, joined by ';', as
 *   name OP value [#unit] [@=lat,lng[,alt]] [@time] [^group] [{k=v,...}]
 * with the body's location (Revision D: not onto an @= variable), group and
 * time inherited, the metadata merged by
 * sp_tip_meta_each (the variable's pairs, then the body's it does not
 * override), values unescaped (a decoded newline shows as <LF>), and numbers
 * printed from the parsed doubles with the fewest digits that read back (-0
 * as 0). "ok" without a rendering (generated cases only) accepts any success.
 *
 * Every input is also parsed at every prefix length from an exact-size heap
 * copy, so ASan catches an overread. Every success is rebuilt: frames with
 * sp_tip_build_frame and ACKs with sp_tip_build_ack must give back the input
 * (AUTH lowercased, no LF), and every structured body rebuilt record by record
 * with the builder must parse back to the same records. Cases a text file
 * cannot hold (long fields, limits, NUL and LF bytes) are generated below and
 * run through the same checks; sp_tip_meta_each and the ACK and frame writers
 * follow. The body builder has its own file, test_builder.c.
 */
#include "check.h"
#include "sealpipe.h"
#include "tip_out.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#ifndef SP_TEST_DATA
#define SP_TEST_DATA "tests/data"
#endif

enum kind {
    K_FRAME,
    K_ACK,
    K_ACK_MQTT,
    K_ACK_INNER,
    K_PULL,
    K_PULL_CSV,
    K_BODY,
    K_MQTT_PUSH,
    K_MQTT_PULL,
    K_INNER_PUSH,
    K_INNER_PULL,
    K_INNER_PING,
    K_COUNT
};

static const char *const kind_names[K_COUNT] = {
    "frame", "ack",       "ack_mqtt",  "ack_inner",  "pull",       "pull_csv",
    "body",  "mqtt_push", "mqtt_pull", "inner_push", "inner_pull", "inner_ping",
};

static const char *const method_names[] = {"PUSH", "PULL", "PING", "ACK"};
static const char *const status_names[] = {"OK", "PONG", "CMD", "ERR"};

/* ------------------------------------------------------------------------ */
/* Rendering                                                                */
/* ------------------------------------------------------------------------ */

/* The builder writes -0 as 0, the same number: so does this rendering. */
static void put_number(struct out *o, double v)
{
    put_double(o, v == 0 ? 0.0 : v);
}

static void put_counter(struct out *o, int has, uint32_t c)
{
    char b[16];

    if (!has)
        return;
    snprintf(b, sizeof b, "!%" PRIu32 " ", c);
    puts_(o, b);
}

static void put_records(struct out *o, const struct sp_tip_body *b)
{
    if (b->passthrough) {
        puts_(o, b->passthrough == 'x' ? "x:" : "b:");
        put_span(o, b->data);
        return;
    }
    for (size_t i = 0; i < b->nvars; i++) {
        const struct sp_tip_var *v = &b->vars[i];
        struct sp_span k, val;
        size_t pos = 0;
        int first = 1;

        if (i)
            puts_(o, ";");
        put_var(o, v, put_number);
        while (sp_tip_meta_each(b, v, &pos, &k, &val)) {
            puts_(o, first ? "{" : ",");
            first = 0;
            put_span(o, k);
            puts_(o, "=");
            put_unescaped(o, val);
        }
        if (!first)
            puts_(o, "}");
    }
}

static void put_list(struct out *o, const struct sp_tip_pull *l)
{
    puts_(o, "[");
    for (size_t i = 0; i < l->nvars; i++) {
        if (i)
            puts_(o, ";");
        put_span(o, l->vars[i]);
    }
    puts_(o, "]");
}

/* ------------------------------------------------------------------------ */
/* Round trips                                                              */
/* ------------------------------------------------------------------------ */

static struct sp_tip_body body, rebuilt_body;
static struct sp_tip_pull pull;
static struct out rendered, scratch_out;

/* A NUL-terminated copy of a span in a static ring of buffers. */
static const char *cstr(struct sp_span s)
{
    static char ring[8][SP_MAX_FRAME + 1];
    static int next;
    char *p = ring[next++ % 8];
    size_t n = s.n < SP_MAX_FRAME ? s.n : SP_MAX_FRAME;

    if (n)
        memcpy(p, s.p, n); /* an absent field is {NULL, 0} */
    p[n] = '\0';
    return p;
}

static const char *unescaped(struct sp_span s)
{
    static char ring[4][SP_MAX_FRAME + 1];
    static int next;
    char *p = ring[next++ % 4];

    CHECK(sp_tip_unescape(s, p, SP_MAX_FRAME + 1) >= 0);
    return p;
}

/*
 * Writes every record of b again with the builder, variable-level fields
 * only (the inherited ones spelled out), and checks that the result parses
 * to the same records. Skipped when the records cannot be one valid body: a
 * merged metadata block over 32 pairs, or a body over the frame limit.
 */
static void roundtrip_records(const struct sp_tip_body *b, const char *want)
{
    static char buf[SP_MAX_FRAME + 1];
    struct sp_tip_builder bl;
    size_t len = 0;
    int rc;

    if (b->passthrough)
        return;
    sp_tip_build_init(&bl, buf, sizeof buf);
    for (size_t i = 0; i < b->nvars; i++) {
        const struct sp_tip_var *v = &b->vars[i];
        const char *name = cstr(v->name), *unit = cstr(v->unit);
        struct sp_span k, val;
        size_t pos = 0, npairs = 0;

        switch (v->type) {
        case SP_TIP_NUMBER:
            sp_tip_add_number(&bl, name, v->number, unit);
            break;
        case SP_TIP_STRING:
            sp_tip_add_string(&bl, name, unescaped(v->value), unit);
            break;
        case SP_TIP_BOOLEAN:
            sp_tip_add_bool(&bl, name, v->boolean);
            if (v->unit.n)
                sp_tip_var_unit(&bl, unit);
            break;
        default:
            sp_tip_add_location(&bl, name, v->lat, v->lng, v->has_alt, v->alt);
            break;
        }
        if (v->has_loc && v->type != SP_TIP_LOCATION)
            sp_tip_var_location(&bl, v->lat, v->lng, v->has_alt, v->alt);
        if (v->has_time)
            sp_tip_var_time(&bl, v->time_ms);
        if (v->group.n)
            sp_tip_var_group(&bl, cstr(v->group));
        while (sp_tip_meta_each(b, v, &pos, &k, &val)) {
            if (++npairs > SP_MAX_META)
                return;
            sp_tip_var_meta(&bl, cstr(k), unescaped(val));
        }
    }
    rc = sp_tip_build_end(&bl, &len);
    if (rc == SP_ERR_TOOLARGE)
        return;
    CHECK_EQ_INT(rc, 0);
    if (rc != 0)
        return;
    CHECK_EQ_INT(len, (long long)strlen(buf));
    rc = sp_tip_parse_body(buf, len, &rebuilt_body);
    CHECK_EQ_INT(rc, 0);
    if (rc != 0)
        return;
    scratch_out.n = 0;
    scratch_out.buf[0] = '\0';
    put_records(&scratch_out, &rebuilt_body);
    if (strcmp(scratch_out.buf, want) != 0) {
        check_failed++;
        fprintf(stderr, "builder round trip\n  built  %s\n  gives  %s\n  wanted %s\n", buf,
                scratch_out.buf, want);
    } else {
        check_passed++;
    }
}

/* The records of a body rendered alone, for roundtrip_records. */
static const char *records_of(const struct sp_tip_body *b)
{
    static struct out o;

    o.n = 0;
    o.buf[0] = '\0';
    put_records(&o, b);
    return o.buf;
}

/* sp_tip_build_frame from the parsed fields gives back the input. */
static void roundtrip_frame(const struct sp_tip_frame *f, const char *in, size_t n)
{
    static char out[SP_MAX_FRAME + 2], want[SP_MAX_FRAME + 2];
    struct sp_tip_frame g;
    size_t wn = n > 0 && in[n - 1] == '\n' ? n - 1 : n;
    size_t auth_at = (size_t)(f->serial.p - in) - 2 * SP_HASH_LEN - 1;
    int m;

    memcpy(want, in, wn);
    want[wn] = '\0';
    for (size_t i = 0; i < 2 * SP_HASH_LEN; i++)
        want[auth_at + i] = (char)tolower((unsigned char)want[auth_at + i]);
    m = sp_tip_build_frame(f->method, f->has_counter, f->counter, f->auth_hash, cstr(f->serial),
                           f->body.p, f->body.n, out, sizeof out);
    CHECK_EQ_INT(m, (long long)wn);
    if (m < 0)
        return;
    CHECK_EQ_STR(out, want);
    CHECK_EQ_INT(sp_tip_parse_frame(out, (size_t)m, &g), 0);
    CHECK(g.method == f->method && g.has_counter == f->has_counter && g.counter == f->counter);
    CHECK_EQ_MEM(g.auth_hash, f->auth_hash, SP_HASH_LEN);
    CHECK(g.serial.n == f->serial.n && memcmp(g.serial.p, f->serial.p, f->serial.n) == 0);
    CHECK(g.body.n == f->body.n && memcmp(g.body.p, f->body.p, f->body.n) == 0);
}

/* sp_tip_build_ack from the parsed fields gives back the input. */
static void roundtrip_ack(const struct sp_tip_ack *a, int form, const char *in, size_t n)
{
    static char out[SP_MAX_FRAME + 2];
    struct sp_tip_ack g;
    size_t wn = n > 0 && in[n - 1] == '\n' ? n - 1 : n;
    int m;

    m = sp_tip_build_ack(form, a->has_counter, a->counter, a->status,
                         a->detail.n ? a->detail.p : NULL, a->detail.n, out, sizeof out);
    CHECK_EQ_INT(m, (long long)wn);
    if (m < 0)
        return;
    CHECK(memcmp(out, in, wn) == 0 && out[wn] == '\0');
    CHECK_EQ_INT(sp_tip_parse_ack(out, (size_t)m, form, &g), 0);
    CHECK(g.has_counter == a->has_counter && g.counter == a->counter && g.status == a->status);
    CHECK(g.detail.n == a->detail.n &&
          (a->detail.n == 0 || memcmp(g.detail.p, a->detail.p, a->detail.n) == 0));
}

/* ------------------------------------------------------------------------ */
/* Parsing one input of a kind                                              */
/* ------------------------------------------------------------------------ */

/* A PUSH body rendered into o; deep also rebuilds it. */
static int push_body(struct out *o, const char *p, size_t n, int deep)
{
    int rc = sp_tip_parse_body(p, n, &body);

    if (rc < 0)
        return rc;
    put_records(o, &body);
    if (deep)
        roundtrip_records(&body, records_of(&body));
    return SP_OK;
}

static int pull_list(struct out *o, const char *p, size_t n, int csv)
{
    int rc = sp_tip_parse_pull(p, n, csv, &pull);

    if (rc < 0)
        return rc;
    put_list(o, &pull);
    return SP_OK;
}

static int parse_frame_kind(const char *s, size_t n, struct out *o, int deep)
{
    struct sp_tip_frame f;
    char hex[2 * SP_HASH_LEN + 1];
    int rc = sp_tip_parse_frame(s, n, &f);

    if (rc < 0)
        return rc;
    CHECK(f.method >= SP_METHOD_PUSH && f.method <= SP_METHOD_PING);
    puts_(o, method_names[f.method]);
    puts_(o, " ");
    put_counter(o, f.has_counter, f.counter);
    CHECK_EQ_INT(sp_hex_encode(f.auth_hash, SP_HASH_LEN, hex, sizeof hex), 0);
    puts_(o, hex);
    puts_(o, " ");
    put_span(o, f.serial);
    if (deep)
        roundtrip_frame(&f, s, n);
    if (f.method == SP_METHOD_PING) {
        CHECK_EQ_INT(f.body.n, 0);
        return SP_OK;
    }
    puts_(o, " ");
    /* a frame that passed was validated whole: its body parses */
    rc = f.method == SP_METHOD_PUSH ? push_body(o, f.body.p, f.body.n, deep)
                                    : pull_list(o, f.body.p, f.body.n, 0);
    CHECK_EQ_INT(rc, 0);
    return SP_OK;
}

static int parse_ack_kind(const char *s, size_t n, int form, struct out *o, int deep)
{
    struct sp_tip_ack a;
    int rc = sp_tip_parse_ack(s, n, form, &a);

    if (rc < 0)
        return rc;
    CHECK(form != SP_ACK_INNER || !a.has_counter);
    put_counter(o, a.has_counter, a.counter);
    puts_(o, status_names[a.status]);
    if (a.detail.n) {
        puts_(o, " ");
        if (a.status == SP_ACK_OK && a.detail.p[0] == '[') {
            puts_(o, "[");
            CHECK_EQ_INT(push_body(o, a.detail.p, a.detail.n, deep), 0);
            puts_(o, "]");
        } else {
            put_span(o, a.detail);
        }
    }
    if (deep)
        roundtrip_ack(&a, form, s, n);
    return SP_OK;
}

static int parse_inner_kind(const char *s, size_t n, int method, struct out *o, int deep)
{
    struct sp_span serial, rest;
    int rc = sp_inner_split(s, n, method, &serial, &rest);

    if (rc < 0)
        return rc;
    put_span(o, serial);
    if (method == SP_METHOD_PING)
        return SP_OK;
    puts_(o, " ");
    if (method == SP_METHOD_PUSH)
        return push_body(o, rest.p, rest.n, deep);
    return pull_list(o, rest.p, rest.n, 0);
}

static int parse_mqtt_kind(const char *s, size_t n, int is_pull, struct out *o, int deep)
{
    struct sp_span rest;
    uint32_t counter;
    int has, rc = sp_tip_split_counter(s, n, &has, &counter, &rest);

    if (rc < 0)
        return rc;
    put_counter(o, has, counter);
    return is_pull ? pull_list(o, rest.p, rest.n, 1) : push_body(o, rest.p, rest.n, deep);
}

static int parse_kind(int kind, const char *s, size_t n, struct out *o, int deep)
{
    o->n = 0;
    o->buf[0] = '\0';
    switch (kind) {
    case K_FRAME:
        return parse_frame_kind(s, n, o, deep);
    case K_ACK:
        return parse_ack_kind(s, n, SP_ACK_FRAME, o, deep);
    case K_ACK_MQTT:
        return parse_ack_kind(s, n, SP_ACK_MQTT, o, deep);
    case K_ACK_INNER:
        return parse_ack_kind(s, n, SP_ACK_INNER, o, deep);
    case K_PULL:
        return pull_list(o, s, n, 0);
    case K_PULL_CSV:
        return pull_list(o, s, n, 1);
    case K_BODY:
        return push_body(o, s, n, deep);
    case K_MQTT_PUSH:
        return parse_mqtt_kind(s, n, 0, o, deep);
    case K_MQTT_PULL:
        return parse_mqtt_kind(s, n, 1, o, deep);
    case K_INNER_PUSH:
        return parse_inner_kind(s, n, SP_METHOD_PUSH, o, deep);
    case K_INNER_PULL:
        return parse_inner_kind(s, n, SP_METHOD_PULL, o, deep);
    default:
        return parse_inner_kind(s, n, SP_METHOD_PING, o, deep);
    }
}

/* Parses an exact-size heap copy, so ASan sees any read past n. */
static int parse_copy(int kind, const char *s, size_t n, struct out *o, int deep)
{
    char *copy = malloc(n ? n : 1);
    int rc;

    if (copy == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    memcpy(copy, s, n);
    rc = parse_kind(kind, copy, n, o, deep);
    free(copy);
    return rc;
}

/* Printable form of an input for failure messages. */
static const char *shown(const char *s, size_t n)
{
    static char b[600];
    size_t o = 0;

    for (size_t i = 0; i < n && o + 8 < sizeof b; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != 0x7f)
            b[o++] = (char)c;
        else
            o += (size_t)snprintf(b + o, sizeof b - o, "<%02x>", c);
    }
    if (n > 0 && o + 8 >= sizeof b)
        o += (size_t)snprintf(b + o, sizeof b - o, "...");
    b[o] = '\0';
    return b;
}

static int cases_run;

static void run_case(const char *where, int kind, const char *expect, const char *in, size_t n)
{
    int rc = parse_copy(kind, in, n, &rendered, 1);
    int good;

    cases_run++;
    if (strcmp(expect, "ok") == 0)
        good = rc == 0;
    else if (strncmp(expect, "ok:", 3) == 0)
        good = rc == 0 && strcmp(rendered.buf, expect + 3) == 0;
    else if (strncmp(expect, "err:", 4) == 0)
        good = rc < 0 && strcmp(sp_wirecode(rc), expect + 4) == 0;
    else
        good = 0;
    if (good) {
        check_passed++;
    } else {
        check_failed++;
        fprintf(stderr, "%s: %s %s\n  expected %s\n  got      %s%.300s\n", where, kind_names[kind],
                shown(in, n), expect,
                rc == 0 ? "ok:" : "err:", rc == 0 ? rendered.buf : sp_wirecode(rc));
    }
    /* every prefix parses or fails cleanly; long inputs only near both ends */
    for (size_t k = 0; k < n; k++) {
        if (n > 4096 && k == 256)
            k = n - 256;
        (void)parse_copy(kind, in, k, &scratch_out, 0);
    }
}

/* ------------------------------------------------------------------------ */
/* The data files                                                           */
/* ------------------------------------------------------------------------ */

static int run_file(const char *path)
{
    size_t len;
    char *text = check_slurp(path, &len);
    const char *cur, *line;
    size_t n;
    int cases = 0;

    if (text == NULL)
        return -1;
    cur = text;
    while (check_next_case(&cur, text + len, &line, &n)) {
        const char *t1 = memchr(line, '\t', n), *t2;
        char where[1100], expect[2048];
        int kind, lineno = 1;

        for (const char *p = text; p < line; p++)
            lineno += *p == '\n';
        snprintf(where, sizeof where, "%s:%d", path, lineno);
        t2 = t1 ? memchr(t1 + 1, '\t', (size_t)(line + n - t1 - 1)) : NULL;
        for (kind = 0; t1 && kind < K_COUNT; kind++)
            if ((size_t)(t1 - line) == strlen(kind_names[kind]) &&
                memcmp(line, kind_names[kind], (size_t)(t1 - line)) == 0)
                break;
        if (t2 == NULL || kind == K_COUNT || (size_t)(t2 - t1 - 1) >= sizeof expect) {
            fprintf(stderr, "%s: not <kind><TAB><expect><TAB><input>\n", where);
            check_failed++;
            continue;
        }
        memcpy(expect, t1 + 1, (size_t)(t2 - t1 - 1));
        expect[t2 - t1 - 1] = '\0';
        run_case(where, kind, expect, t2 + 1, (size_t)(line + n - t2 - 1));
        cases++;
    }
    free(text);
    return cases;
}

static void test_data_files(void)
{
    CHECK(check_each_file(SP_TEST_DATA "/conformance", "conformance", run_file) >= 5);
}

/* ------------------------------------------------------------------------ */
/* Generated cases: bytes and sizes a text file cannot carry                */
/* ------------------------------------------------------------------------ */

#define AUTH "4deedd7bab8817ec"

static char gen_buf[SP_MAX_FRAME + 4096];

/* gen_buf = prefix + n copies of c + suffix; returns the length. */
static size_t fill(const char *prefix, char c, size_t n, const char *suffix)
{
    size_t p = strlen(prefix), s = strlen(suffix);

    memcpy(gen_buf, prefix, p);
    memset(gen_buf + p, c, n);
    memcpy(gen_buf + p + n, suffix, s);
    gen_buf[p + n + s] = '\0';
    return p + n + s;
}

/* gen_buf = prefix + n copies of item (the first without its separator) + suffix. */
static size_t repeat(const char *prefix, const char *first, const char *item, size_t n,
                     const char *suffix)
{
    size_t len = 0;

    len += (size_t)snprintf(gen_buf, sizeof gen_buf, "%s", prefix);
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(gen_buf + len, sizeof gen_buf - len, "%s", i ? item : first);
    len += (size_t)snprintf(gen_buf + len, sizeof gen_buf - len, "%s", suffix);
    return len;
}

#define GEN(kind, expect, len) run_case(__FILE__ ":" #len, kind, expect, gen_buf, len)

/*
 * Every limit of §4.5 at its edge and one past it. Long because it is a list
 * of independent cases read top to bottom.
 */
static void test_limits(void)
{
    size_t n;

    /* §4.5.1 identifiers: 100 bytes pass, 101 do not, wherever they stand */
    GEN(K_FRAME, "ok", fill("PUSH|" AUTH "|s|[", 'a', 100, ":=1]"));
    GEN(K_FRAME, "err:invalid_payload", fill("PUSH|" AUTH "|s|[", 'a', 101, ":=1]"));
    GEN(K_INNER_PUSH, "ok", fill("s|[", 'a', 100, ":=1]"));
    GEN(K_INNER_PUSH, "err:invalid_payload", fill("s|[", 'a', 101, ":=1]"));
    GEN(K_MQTT_PUSH, "ok", fill("!1|[", 'a', 100, ":=1]"));
    GEN(K_MQTT_PUSH, "err:invalid_payload", fill("!1|[", 'a', 101, ":=1]"));
    GEN(K_FRAME, "ok", fill("PULL|" AUTH "|s|[", 'a', 100, "]"));
    GEN(K_FRAME, "err:invalid_payload", fill("PULL|" AUTH "|s|[", 'a', 101, "]"));
    GEN(K_PULL, "ok", fill("[b;", 'a', 100, "]"));
    GEN(K_PULL, "err:invalid_payload", fill("[b;", 'a', 101, "]"));
    GEN(K_PULL_CSV, "ok", fill("b,", 'a', 100, ""));
    GEN(K_PULL_CSV, "err:invalid_payload", fill("b,", 'a', 101, ""));
    GEN(K_MQTT_PULL, "ok", fill("!7|", 'a', 100, ""));
    GEN(K_MQTT_PULL, "err:invalid_payload", fill("!7|", 'a', 101, ""));
    GEN(K_INNER_PULL, "err:invalid_payload", fill("s|[", 'a', 101, "]"));
    GEN(K_ACK, "ok", fill("ACK|OK|[", 'a', 100, "?=true]"));
    GEN(K_ACK, "err:invalid_payload", fill("ACK|OK|[", 'a', 101, "?=true]"));

    n = fill("PUSH|" AUTH "|", 'S', 100, "|[a:=1]");
    GEN(K_FRAME, "ok", n);
    GEN(K_FRAME, "err:invalid_payload", fill("PUSH|" AUTH "|", 'S', 101, "|[a:=1]"));
    GEN(K_FRAME, "ok", fill("PING|!1|" AUTH "|", '-', 100, ""));
    GEN(K_FRAME, "err:invalid_payload", fill("PING|!1|" AUTH "|", '-', 101, ""));
    GEN(K_FRAME, "ok", fill("PULL|" AUTH "|", '_', 100, "|[a]"));
    GEN(K_FRAME, "err:invalid_payload", fill("PULL|" AUTH "|", '_', 101, "|[a]"));
    GEN(K_INNER_PUSH, "ok", fill("", '9', 100, "|[a:=1]"));
    GEN(K_INNER_PUSH, "err:invalid_payload", fill("", '9', 101, "|[a:=1]"));
    GEN(K_INNER_PING, "ok", fill("", 'z', 100, ""));
    GEN(K_INNER_PING, "err:invalid_payload", fill("", 'z', 101, ""));
    GEN(K_INNER_PULL, "ok", fill("", 'Z', 100, "|[a]"));
    GEN(K_INNER_PULL, "err:invalid_payload", fill("", 'Z', 101, "|[a]"));

    GEN(K_FRAME, "ok", fill("PUSH|" AUTH "|s|^", 'g', 100, "[a:=1]"));
    GEN(K_FRAME, "err:invalid_payload", fill("PUSH|" AUTH "|s|^", 'g', 101, "[a:=1]"));
    GEN(K_FRAME, "ok", fill("PUSH|" AUTH "|s|[a:=1^", 'g', 100, "]"));
    GEN(K_FRAME, "err:invalid_payload", fill("PUSH|" AUTH "|s|[a:=1^", 'g', 101, "]"));
    GEN(K_FRAME, "ok", fill("PUSH|" AUTH "|s|{", 'k', 100, "=v}[a:=1]"));
    GEN(K_FRAME, "err:invalid_payload", fill("PUSH|" AUTH "|s|{", 'k', 101, "=v}[a:=1]"));
    GEN(K_FRAME, "ok", fill("PUSH|" AUTH "|s|[a:=1{", 'k', 100, "=v}]"));
    GEN(K_FRAME, "err:invalid_payload", fill("PUSH|" AUTH "|s|[a:=1{", 'k', 101, "=v}]"));
    GEN(K_FRAME, "ok", fill("PUSH|" AUTH "|s|[a:=1#", 'u', 25, "]"));
    GEN(K_FRAME, "err:invalid_payload", fill("PUSH|" AUTH "|s|[a:=1#", 'u', 26, "]"));
    GEN(K_FRAME, "ok", repeat("PUSH|" AUTH "|s|[a:=1#", "\xc2\xb0", "\xc2\xb0", 12, "]"));
    GEN(K_FRAME, "err:invalid_payload",
        repeat("PUSH|" AUTH "|s|[a:=1#", "\xc2\xb0", "\xc2\xb0", 13, "]"));

    /* §4.5.1 counts: 100 variables, 32 metadata pairs */
    GEN(K_FRAME, "ok", repeat("PUSH|" AUTH "|s|[", "v:=1", ";v:=1", 100, "]"));
    CHECK_EQ_INT(body.nvars, 100);
    GEN(K_FRAME, "err:invalid_payload", repeat("PUSH|" AUTH "|s|[", "v:=1", ";v:=1", 101, "]"));
    GEN(K_FRAME, "ok", repeat("PULL|" AUTH "|s|[", "v", ";v", 100, "]"));
    CHECK_EQ_INT(pull.nvars, 100);
    GEN(K_FRAME, "err:invalid_payload", repeat("PULL|" AUTH "|s|[", "v", ";v", 101, "]"));
    GEN(K_PULL, "ok", repeat("[", "v", ";v", 100, "]"));
    GEN(K_PULL, "err:invalid_payload", repeat("[", "v", ";v", 101, "]"));
    GEN(K_PULL_CSV, "ok", repeat("", "v", ",v", 100, ""));
    GEN(K_PULL_CSV, "err:invalid_payload", repeat("", "v", ",v", 101, ""));
    GEN(K_MQTT_PULL, "ok", repeat("!1|", "v", ",v", 100, ""));
    GEN(K_MQTT_PULL, "err:invalid_payload", repeat("!1|", "v", ",v", 101, ""));
    GEN(K_INNER_PULL, "ok", repeat("s|[", "v", ";v", 100, "]"));
    GEN(K_INNER_PULL, "err:invalid_payload", repeat("s|[", "v", ";v", 101, "]"));
    GEN(K_ACK_MQTT, "ok", repeat("!9|OK|[", "v=x", ";v=x", 100, "]"));
    GEN(K_ACK_MQTT, "err:invalid_payload", repeat("!9|OK|[", "v=x", ";v=x", 101, "]"));
    GEN(K_FRAME, "ok", repeat("PUSH|" AUTH "|s|[a:=1{", "k=v", ",k=v", 32, "}]"));
    GEN(K_FRAME, "err:invalid_payload", repeat("PUSH|" AUTH "|s|[a:=1{", "k=v", ",k=v", 33, "}]"));
    GEN(K_FRAME, "ok", repeat("PUSH|" AUTH "|s|{", "k=v", ",k=v", 32, "}[a:=1]"));
    GEN(K_FRAME, "err:invalid_payload", repeat("PUSH|" AUTH "|s|{", "k=v", ",k=v", 33, "}[a:=1]"));

    /* §4.5: 16384 bytes pass, with one LF too; 16385 are payload_too_large */
    n = fill("PUSH|" AUTH "|s|[s=", 'x', SP_MAX_FRAME - 28, "]");
    CHECK_EQ_INT(n, SP_MAX_FRAME);
    GEN(K_FRAME, "ok", n);
    gen_buf[n] = '\n';
    GEN(K_FRAME, "ok", n + 1);
    gen_buf[n + 1] = '\n';
    GEN(K_FRAME, "err:payload_too_large", n + 2); /* only one LF is the terminator */
    n = fill("PUSH|" AUTH "|s|[s=", 'x', SP_MAX_FRAME - 27, "]");
    GEN(K_FRAME, "err:payload_too_large", n);
    n = fill("PUSH|" AUTH "|s|>x", 'a', SP_MAX_FRAME - 26, "");
    CHECK_EQ_INT(n, SP_MAX_FRAME);
    GEN(K_FRAME, "ok", n);
    n = fill("PUSH|" AUTH "|s|>x", 'a', SP_MAX_FRAME - 24, "");
    GEN(K_FRAME, "err:payload_too_large", n);
    /* size is checked first: before the method, the token and the rest */
    GEN(K_FRAME, "err:payload_too_large", fill("PULL|" AUTH "|s|[", 'a', SP_MAX_FRAME, "]"));
    GEN(K_FRAME, "err:payload_too_large", fill("PING|" AUTH "|", 's', SP_MAX_FRAME, ""));
    GEN(K_FRAME, "err:payload_too_large", fill("POST|" AUTH "|s|[s=", 'x', SP_MAX_FRAME, "]"));
    GEN(K_FRAME, "err:payload_too_large", fill("PUSH|zz|s|[s=", 'x', SP_MAX_FRAME, "]"));
    GEN(K_FRAME, "err:payload_too_large", fill("", '\0', SP_MAX_FRAME + 1, ""));
    /*
     * The same limit for bodies, lists and ACKs in every form. An MQTT
     * payload's limit counts the body after "!N|": TagoTipServers.md §3.3 calls
     * the payload a body, and §4.5 limits frames and bodies, not the prefix.
     */
    GEN(K_BODY, "ok", fill("[s=", 'x', SP_MAX_FRAME - 4, "]"));
    GEN(K_BODY, "err:payload_too_large", fill("[s=", 'x', SP_MAX_FRAME - 3, "]"));
    GEN(K_MQTT_PUSH, "ok", fill("!1|[s=", 'x', SP_MAX_FRAME - 4, "]"));
    GEN(K_MQTT_PUSH, "err:payload_too_large", fill("!1|[s=", 'x', SP_MAX_FRAME - 3, "]"));
    GEN(K_INNER_PUSH, "err:payload_too_large", fill("s|[s=", 'x', SP_MAX_FRAME - 3, "]"));
    GEN(K_PULL, "err:payload_too_large", fill("[", 'a', SP_MAX_FRAME - 1, "]"));
    GEN(K_PULL_CSV, "err:payload_too_large", fill("", 'a', SP_MAX_FRAME + 1, ""));
    GEN(K_ACK, "ok", fill("ACK|!1|OK|[s=", 'x', SP_MAX_FRAME - 14, "]"));
    GEN(K_ACK, "err:payload_too_large", fill("ACK|!1|OK|[s=", 'x', SP_MAX_FRAME - 13, "]"));
    GEN(K_ACK_MQTT, "ok", fill("ERR|", 'x', SP_MAX_FRAME - 4, ""));
    GEN(K_ACK_MQTT, "err:payload_too_large", fill("ERR|", 'x', SP_MAX_FRAME - 3, ""));
    GEN(K_ACK_INNER, "ok", fill("CMD|", 'x', SP_MAX_FRAME - 4, "\n"));
    GEN(K_ACK_INNER, "err:payload_too_large", fill("CMD|", 'x', SP_MAX_FRAME - 3, ""));

    /* §10.1: the counter is a uint32 */
    GEN(K_FRAME, "ok", fill("PING|!4294967295|" AUTH "|s", 'x', 0, ""));
    GEN(K_FRAME, "err:invalid_payload", fill("PING|!4294967296|" AUTH "|s", 'x', 0, ""));
    GEN(K_FRAME, "err:invalid_payload", fill("PING|!", '9', 30, "|" AUTH "|s"));
    GEN(K_ACK, "err:invalid_payload", fill("ACK|!", '9', 30, "|PONG"));
    GEN(K_MQTT_PUSH, "err:invalid_payload", fill("!", '9', 30, "|[a:=1]"));
}

/*
 * Revision D locations at the limits: 100 variables with a suffix, the body's
 * location inherited by all of them, coordinates as long as a double holds
 * and one digit more, a fraction of any length, and the frame limit with a
 * suffix at its end.
 */
static void test_limits_location(void)
{
    size_t n;

    GEN(K_FRAME, "ok", repeat("PUSH|" AUTH "|s|[", "v:=1@=1,2,3", ";v:=1@=1,2,3", 100, "]"));
    CHECK(body.nvars == 100 && body.vars[99].has_loc && body.vars[99].alt == 3);
    GEN(K_FRAME, "err:invalid_payload",
        repeat("PUSH|" AUTH "|s|[", "v:=1@=1,2,3", ";v:=1@=1,2,3", 101, "]"));
    GEN(K_FRAME, "ok", repeat("PUSH|" AUTH "|s|@=-1,-2[", "v=x", ";v=x", 100, "]"));
    CHECK(body.nvars == 100 && body.vars[99].has_loc && body.vars[99].lng == -2);
    CHECK(!body.vars[99].has_alt);
    /* 1e308 is a double, 1e309 is not (number_value refuses infinities) */
    GEN(K_BODY, "ok", fill("[a:=1@=1", '0', 308, ",2]"));
    GEN(K_BODY, "err:invalid_payload", fill("[a:=1@=1", '0', 309, ",2]"));
    GEN(K_BODY, "ok", fill("@=1,-1", '0', 308, "[a:=1]"));
    GEN(K_BODY, "err:invalid_payload", fill("@=1,-1", '0', 309, "[a:=1]"));
    GEN(K_BODY, "err:invalid_payload", fill("[a:=1@=1,2,1", '0', 309, "]"));
    GEN(K_BODY, "ok", fill("[a:=1@=0.", '5', 16000, ",2]"));
    CHECK(body.vars[0].lat == 0.5555555555555556);
    /* §4.5: 16384 bytes with a suffix at the end pass, 16385 do not */
    n = fill("PUSH|" AUTH "|s|[s=", 'x', SP_MAX_FRAME - 35, "@=1,2,3]");
    CHECK_EQ_INT(n, SP_MAX_FRAME);
    GEN(K_FRAME, "ok", n);
    n = fill("PUSH|" AUTH "|s|[s=", 'x', SP_MAX_FRAME - 34, "@=1,2,3]");
    GEN(K_FRAME, "err:payload_too_large", n);
}

#define GENB(kind, expect, lit) run_case(__FILE__, kind, expect, lit, sizeof lit - 1)

/* NUL (§1.3), LF (§3) and other control bytes. */
static void test_bytes(void)
{
    /* one trailing LF is the terminator on every form; two are not */
    GENB(K_FRAME, "ok:PUSH 4deedd7bab8817ec s a:=1", "PUSH|" AUTH "|s|[a:=1]\n");
    GENB(K_FRAME, "ok:PING !5 4deedd7bab8817ec s", "PING|!5|" AUTH "|s\n");
    GENB(K_FRAME, "ok:PULL 4deedd7bab8817ec s [a]", "PULL|" AUTH "|s|[a]\n");
    GENB(K_FRAME, "ok:PUSH 4deedd7bab8817ec s x:AB", "PUSH|" AUTH "|s|>xAB\n");
    GENB(K_FRAME, "err:invalid_payload", "PUSH|" AUTH "|s|[a:=1]\n\n");
    GENB(K_FRAME, "err:invalid_payload", "PING|" AUTH "|s\n\n");
    GENB(K_FRAME, "err:invalid_payload", "PING|" AUTH "|s\r\n");
    GENB(K_FRAME, "err:invalid_payload", "PUSH|" AUTH "|s|[a:=1]\r\n");
    GENB(K_FRAME, "err:invalid_payload", "PUSH|" AUTH "|s|[a=x\ny]");
    GENB(K_FRAME, "err:invalid_payload", "PUSH|" AUTH "|s\n|[a:=1]");
    GENB(K_FRAME, "err:invalid_payload", "PUSH|" AUTH "|s|[a=x\ty]");
    GENB(K_FRAME, "err:invalid_method", "\n");
    GENB(K_FRAME, "err:invalid_method", "PUSH\n|" AUTH "|s|[a:=1]");
    GENB(K_ACK, "ok:!1 OK 3", "ACK|!1|OK|3\n");
    GENB(K_ACK, "ok:PONG", "ACK|PONG\n");
    GENB(K_ACK, "err:invalid_payload", "ACK|PONG\n\n");
    GENB(K_ACK, "err:invalid_payload", "ACK|CMD|a\tb");
    GENB(K_ACK, "err:invalid_payload", "ACK|CMD|a\x7f");
    GENB(K_ACK_MQTT, "ok:!42 OK 2", "!42|OK|2\n");
    GENB(K_ACK_INNER, "ok:CMD reboot", "CMD|reboot\n");
    GENB(K_PULL, "ok:[a;b]", "[a;b]\n");
    GENB(K_PULL_CSV, "ok:[a;b]", "a,b\n");
    GENB(K_PULL_CSV, "err:invalid_payload", "a,b\n\n");
    GENB(K_MQTT_PULL, "ok:!7 [a;b]", "!7|a,b\n");
    GENB(K_MQTT_PUSH, "ok:!7 a:=1", "!7|[a:=1]\n");
    GENB(K_INNER_PUSH, "ok:s a:=1", "s|[a:=1]\n");
    GENB(K_INNER_PULL, "ok:s [a]", "s|[a]\n");
    GENB(K_INNER_PING, "ok:s", "s\n");
    GENB(K_INNER_PING, "err:invalid_payload", "s\n\n");

    /*
     * NUL is refused anywhere (§1.3). In the method field it makes an unknown
     * method; the NUL check runs right after the method, so a NUL later in
     * the frame is invalid_payload even before a bad token.
     */
    GENB(K_FRAME, "err:invalid_method", "PU\0SH|" AUTH "|s|[a:=1]");
    GENB(K_FRAME, "err:invalid_method", "PUSH\0|" AUTH "|s|[a:=1]");
    GENB(K_FRAME, "err:invalid_payload", "PUSH|\0" AUTH "|s|[a:=1]");
    GENB(K_FRAME, "err:invalid_payload",
         "PUSH|4deedd7bab88\0"
         "17ec|s|[a:=1]");
    GENB(K_FRAME, "err:invalid_payload", "PUSH|!1\0|" AUTH "|s|[a:=1]");
    GENB(K_FRAME, "err:invalid_payload", "PUSH|" AUTH "|s\0|[a:=1]");
    GENB(K_FRAME, "err:invalid_payload", "PUSH|" AUTH "|s|[a=x\0y]");
    GENB(K_FRAME, "err:invalid_payload", "PUSH|" AUTH "|s|[a:=1]\0");
    GENB(K_FRAME, "err:invalid_payload", "PUSH|" AUTH "|s|[a:=1]\0\n");
    GENB(K_FRAME, "err:invalid_payload", "PUSH|" AUTH "|s|>xAB\0");
    GENB(K_FRAME, "err:invalid_payload", "PING|" AUTH "|s\0");
    GENB(K_FRAME, "err:invalid_payload", "PULL|" AUTH "|s|[a\0]");
    GENB(K_FRAME, "err:invalid_method", "\0");
    GENB(K_ACK, "err:invalid_payload", "ACK|CMD|re\0boot");
    GENB(K_ACK, "err:invalid_payload", "ACK|OK|3\0");
    GENB(K_ACK, "err:invalid_payload", "ACK|OK|[s=a\0]");
    GENB(K_ACK_MQTT, "err:invalid_payload", "!1\0|OK");
    GENB(K_ACK_INNER, "err:invalid_payload", "PONG\0");
    GENB(K_PULL, "err:invalid_payload", "[a\0]");
    GENB(K_PULL_CSV, "err:invalid_payload", "a,\0");
    GENB(K_MQTT_PUSH, "err:invalid_payload", "!1|[a=\0]");
    GENB(K_INNER_PUSH, "err:invalid_payload", "s\0|[a:=1]");
    GENB(K_INNER_PING, "err:invalid_payload", "s\0");

    /* UTF-8 in values, refused in the fields that are identifiers or ASCII */
    GENB(K_FRAME,
         "ok:PUSH 4deedd7bab8817ec s t:=1#\xc2\xb0"
         "C;s=caf\xc3\xa9",
         "PUSH|" AUTH "|s|[t:=1#\xc2\xb0"
         "C;s=caf\xc3\xa9]");
    GENB(K_FRAME, "err:invalid_payload", "PUSH|" AUTH "|caf\xc3\xa9|[a:=1]");
    GENB(K_FRAME, "err:invalid_payload", "PUSH|" AUTH "|s|[a=\xc3]");
    GENB(K_FRAME, "err:invalid_token", "PUSH|4deedd7bab8817\xc3\xa9|s|[a:=1]");
    GENB(K_ACK, "err:invalid_payload", "ACK|CMD|caf\xc3\xa9");
    GENB(K_ACK, "ok:OK [s=caf\xc3\xa9]", "ACK|OK|[s=caf\xc3\xa9]");
}

/* A frame, list or ACK that is refused leaves the caller's struct as it was. */
static void test_untouched(void)
{
    static struct sp_tip_pull l;
    struct sp_tip_frame f;
    struct sp_tip_ack a;

    memset(&f, 0x5a, sizeof f);
    CHECK(sp_tip_parse_frame("PUSH|!1|" AUTH "|s|[a:=1;b:=x]", 38, &f) == SP_ERR_PAYLOAD);
    CHECK(f.method == 0x5a5a5a5a && f.counter == 0x5a5a5a5au && f.auth_hash[0] == 0x5a);
    memset(&a, 0x5a, sizeof a);
    CHECK(sp_tip_parse_ack("ACK|!1|OK|x", 11, SP_ACK_FRAME, &a) == SP_ERR_PAYLOAD);
    CHECK(a.status == 0x5a5a5a5a && a.counter == 0x5a5a5a5au);
    memset(&l, 0x5a, sizeof l);
    CHECK(sp_tip_parse_pull("[a;b;B]", 7, 0, &l) == SP_ERR_PAYLOAD);
    CHECK(l.nvars == (size_t)0x5a5a5a5a5a5a5a5aULL && ((unsigned char *)&l.vars[0])[0] == 0x5a);
    CHECK(sp_tip_parse_pull("a,b,", 4, 1, &l) == SP_ERR_PAYLOAD);
    CHECK(l.nvars == (size_t)0x5a5a5a5a5a5a5a5aULL);

    /* NULL arguments */
    CHECK_EQ_INT(sp_tip_parse_frame(NULL, 1, &f), SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_parse_frame("PING", 4, NULL), SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_parse_ack(NULL, 1, SP_ACK_FRAME, &a), SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_parse_ack("OK", 2, SP_ACK_MQTT, NULL), SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_parse_ack("OK", 2, 3, &a), SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_parse_ack("OK", 2, -1, &a), SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_parse_pull(NULL, 1, 0, &l), SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_parse_pull("[a]", 3, 0, NULL), SP_ERR_INVAL);
}

/* ------------------------------------------------------------------------ */
/* sp_tip_meta_each                                                         */
/* ------------------------------------------------------------------------ */

/* The effective metadata of variable i of text, as "k=v,..." (values as written). */
static const char *merged(const char *text, size_t i)
{
    static char b[4096];
    struct sp_span k, v;
    size_t pos = 0, o = 0;

    b[0] = '\0';
    if (sp_tip_parse_body(text, strlen(text), &body) != 0)
        return "(parse failed)";
    while (sp_tip_meta_each(&body, &body.vars[i], &pos, &k, &v))
        o += (size_t)snprintf(b + o, sizeof b - o, "%s%.*s=%.*s", o ? "," : "", (int)k.n, k.p,
                              (int)v.n, v.p);
    /* at the end it stays at the end */
    CHECK_EQ_INT(sp_tip_meta_each(&body, &body.vars[i], &pos, &k, &v), 0);
    return b;
}

static void test_meta_each(void)
{
    struct sp_span k, v;
    size_t pos = 0;

    /* TagoTiP.md §6.4: variable pairs merge over body pairs */
    CHECK_EQ_STR(merged("{firmware=2.1}[temp:=32{source=dht22};humidity:=65]", 0),
                 "source=dht22,firmware=2.1");
    CHECK_EQ_STR(merged("{firmware=2.1}[temp:=32{source=dht22};humidity:=65]", 1), "firmware=2.1");
    /* the variable wins a key conflict */
    CHECK_EQ_STR(merged("{a=body,b=2}[x:=1{a=var}]", 0), "a=var,b=2");
    CHECK_EQ_STR(merged("{a=body,b=2}[x:=1{b=var,a=var2}]", 0), "b=var,a=var2");
    /* within one block a later pair wins, and the key comes once */
    CHECK_EQ_STR(merged("[x:=1{a=1,b=2,a=3}]", 0), "b=2,a=3");
    CHECK_EQ_STR(merged("{a=1,a=2}[x:=1]", 0), "a=2");
    CHECK_EQ_STR(merged("{a=1,b=1,a=2}[x:=1{b=3,b=4}]", 0), "b=4,a=2");
    CHECK_EQ_STR(merged("{a=1,a=2}[x:=1{a=3,a=4}]", 0), "a=4");
    /* keys are compared whole: a prefix is another key */
    CHECK_EQ_STR(merged("{ab=1,a=2}[x:=1{a_=3,abc=4}]", 0), "a_=3,abc=4,ab=1,a=2");
    /* escapes stay in the values and do not split pairs */
    CHECK_EQ_STR(merged("{k=a\\,b=c,j=\\}}[x:=1{k=\\\\}]", 0), "k=\\\\,j=\\}");
    /* no metadata at all */
    CHECK_EQ_STR(merged("[x:=1]", 0), "");
    CHECK_EQ_STR(merged("^g@1[x:=1;y:=2{k=v}]", 0), "");
    CHECK_EQ_STR(merged("^g@1[x:=1;y:=2{k=v}]", 1), "k=v");

    /* 32 variable pairs and 32 other body pairs: 64 effective pairs */
    {
        static char text[4096];
        size_t o = 0, count = 0;
        o += (size_t)snprintf(text + o, sizeof text - o, "{");
        for (int i = 0; i < 32; i++)
            o += (size_t)snprintf(text + o, sizeof text - o, "%sb%d=%d", i ? "," : "", i, i);
        o += (size_t)snprintf(text + o, sizeof text - o, "}[x:=1{");
        for (int i = 0; i < 32; i++)
            o += (size_t)snprintf(text + o, sizeof text - o, "%sv%d=%d", i ? "," : "", i, i);
        snprintf(text + o, sizeof text - o, "}]");
        CHECK_EQ_INT(sp_tip_parse_body(text, strlen(text), &body), 0);
        pos = 0;
        while (sp_tip_meta_each(&body, &body.vars[0], &pos, &k, &v))
            count++;
        CHECK_EQ_INT(count, 64);
    }

    /* either side may be missing */
    CHECK_EQ_INT(sp_tip_parse_body("{a=1}[x:=1{b=2}]", 16, &body), 0);
    pos = 0;
    CHECK_EQ_INT(sp_tip_meta_each(&body, NULL, &pos, &k, &v), 1);
    CHECK(k.n == 1 && k.p[0] == 'a');
    CHECK_EQ_INT(sp_tip_meta_each(&body, NULL, &pos, &k, &v), 0);
    pos = 0;
    CHECK_EQ_INT(sp_tip_meta_each(NULL, &body.vars[0], &pos, &k, &v), 1);
    CHECK(k.n == 1 && k.p[0] == 'b');
    CHECK_EQ_INT(sp_tip_meta_each(NULL, &body.vars[0], &pos, &k, &v), 0);
    pos = 0;
    CHECK_EQ_INT(sp_tip_meta_each(NULL, NULL, &pos, &k, &v), 0);
    CHECK_EQ_INT(sp_tip_meta_each(&body, &body.vars[0], NULL, &k, &v), 0);
    CHECK_EQ_INT(sp_tip_meta_each(&body, &body.vars[0], &pos, NULL, &v), 0);
    CHECK_EQ_INT(sp_tip_meta_each(&body, &body.vars[0], &pos, &k, NULL), 0);
}

/* ------------------------------------------------------------------------ */
/* sp_tip_build_ack and sp_tip_build_frame                                  */
/* ------------------------------------------------------------------------ */

/* Long because it is a list of independent cases read top to bottom. */
static void test_build_ack(void)
{
    char out[64];
    static char big[SP_MAX_FRAME + 64];
    int n;

    CHECK_EQ_INT(sp_tip_build_ack(SP_ACK_FRAME, 0, 0, SP_ACK_OK, "3", 1, out, sizeof out), 8);
    CHECK_EQ_STR(out, "ACK|OK|3");
    CHECK_EQ_INT(sp_tip_build_ack(SP_ACK_FRAME, 1, 7, SP_ACK_PONG, NULL, 0, out, sizeof out), 11);
    CHECK_EQ_STR(out, "ACK|!7|PONG");
    CHECK_EQ_INT(sp_tip_build_ack(SP_ACK_MQTT, 1, 4294967295u, SP_ACK_ERR, "invalid_seq", 11, out,
                                  sizeof out),
                 27);
    CHECK_EQ_STR(out, "!4294967295|ERR|invalid_seq");
    CHECK_EQ_INT(sp_tip_build_ack(SP_ACK_MQTT, 1, 0, SP_ACK_OK, "0", 1, out, sizeof out), 7);
    CHECK_EQ_STR(out, "!0|OK|0");
    CHECK_EQ_INT(sp_tip_build_ack(SP_ACK_MQTT, 0, 5, SP_ACK_CMD, "reboot", 6, out, sizeof out), 10);
    CHECK_EQ_STR(out, "CMD|reboot");
    /* the inner form never carries a counter */
    CHECK_EQ_INT(sp_tip_build_ack(SP_ACK_INNER, 1, 9, SP_ACK_OK, "[t:=32#F@1694567890000]", 23, out,
                                  sizeof out),
                 26);
    CHECK_EQ_STR(out, "OK|[t:=32#F@1694567890000]");
    /* detail_len counts, not a NUL */
    CHECK_EQ_INT(sp_tip_build_ack(SP_ACK_INNER, 0, 0, SP_ACK_CMD, "rebootXX", 6, out, sizeof out),
                 10);
    CHECK_EQ_STR(out, "CMD|reboot");

    /* details that do not fit their status */
    static const struct {
        int status;
        const char *detail;
    } bad[] = {
        {SP_ACK_OK, "three"},   {SP_ACK_OK, "3a"},           {SP_ACK_OK, "-1"},
        {SP_ACK_OK, "[]"},      {SP_ACK_OK, "[a]"},          {SP_ACK_OK, "^g[a:=1]"},
        {SP_ACK_OK, "[a:=1]x"}, {SP_ACK_PONG, "x"},          {SP_ACK_CMD, "re boot"},
        {SP_ACK_CMD, "a|b"},    {SP_ACK_CMD, "a\nb"},        {SP_ACK_ERR, "bad code"},
        {SP_ACK_ERR, "a|b"},    {SP_ACK_CMD, "caf\xc3\xa9"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int form = SP_ACK_FRAME; form <= SP_ACK_INNER; form++) {
            memset(out, 'Z', sizeof out);
            n = sp_tip_build_ack(form, 1, 1, bad[i].status, bad[i].detail, strlen(bad[i].detail),
                                 out, sizeof out);
            if (n != SP_ERR_PAYLOAD)
                fprintf(stderr, "build_ack %s|%s gave %d\n", status_names[bad[i].status],
                        bad[i].detail, n);
            CHECK_EQ_INT(n, SP_ERR_PAYLOAD);
            CHECK_EQ_STR(out, "");
        }
    }
    /* a NUL inside the detail would cut it short: refused, not truncated */
    CHECK_EQ_INT(sp_tip_build_ack(SP_ACK_FRAME, 0, 0, SP_ACK_CMD, "ab\0cd", 5, out, sizeof out),
                 SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_tip_build_ack(SP_ACK_FRAME, 0, 0, SP_ACK_OK, "1\0", 2, out, sizeof out),
                 SP_ERR_PAYLOAD);
    CHECK_EQ_INT(sp_tip_build_ack(SP_ACK_FRAME, 0, 0, SP_ACK_ERR, "\0", 1, out, sizeof out),
                 SP_ERR_PAYLOAD);

    /* arguments */
    CHECK_EQ_INT(sp_tip_build_ack(SP_ACK_FRAME, 0, 0, SP_ACK_OK, NULL, 0, NULL, 8), SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_build_ack(SP_ACK_FRAME, 0, 0, SP_ACK_OK, NULL, 0, out, 0), SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_build_ack(SP_ACK_FRAME, 0, 0, -1, NULL, 0, out, sizeof out), SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_build_ack(SP_ACK_FRAME, 0, 0, 4, NULL, 0, out, sizeof out), SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_build_ack(SP_ACK_FRAME, 0, 0, SP_ACK_OK, NULL, 1, out, sizeof out),
                 SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_build_ack(-1, 0, 0, SP_ACK_PONG, NULL, 0, out, sizeof out), SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_build_ack(3, 1, 1, SP_ACK_PONG, NULL, 0, out, sizeof out), SP_ERR_INVAL);

    /* the buffer: "ACK|!12|OK|345" is 14 bytes and needs 15 */
    for (size_t cap = 1; cap <= 15; cap++) {
        memset(out, 'Z', sizeof out);
        n = sp_tip_build_ack(SP_ACK_FRAME, 1, 12, SP_ACK_OK, "345", 3, out, cap);
        CHECK_EQ_INT(n, cap == 15 ? 14 : SP_ERR_BUFSIZE);
        CHECK_EQ_STR(out, cap == 15 ? "ACK|!12|OK|345" : "");
        CHECK(out[cap] == 'Z');
    }

    /* a PULL response up to the frame limit, not over it */
    n = (int)fill("[s=", 'x', SP_MAX_FRAME - 11, "]");
    CHECK_EQ_INT(
        sp_tip_build_ack(SP_ACK_FRAME, 0, 0, SP_ACK_OK, gen_buf, (size_t)n, big, sizeof big),
        SP_MAX_FRAME);
    n = (int)fill("[s=", 'x', SP_MAX_FRAME - 10, "]");
    CHECK_EQ_INT(
        sp_tip_build_ack(SP_ACK_FRAME, 0, 0, SP_ACK_OK, gen_buf, (size_t)n, big, sizeof big),
        SP_ERR_TOOLARGE);
}

/* Long because it is a list of independent cases read top to bottom. */
static void test_build_frame(void)
{
    static const uint8_t auth[SP_HASH_LEN] = {0x4d, 0xee, 0xdd, 0x7b, 0xab, 0x88, 0x17, 0xec};
    static char big[SP_MAX_FRAME + 64];
    char out[128];
    int n;

    CHECK_EQ_INT(sp_tip_build_frame(SP_METHOD_PUSH, 0, 0, auth, "sensor-01", "[temperature:=32]",
                                    17, out, sizeof out),
                 49);
    CHECK_EQ_STR(out, "PUSH|4deedd7bab8817ec|sensor-01|[temperature:=32]");
    CHECK_EQ_INT(sp_tip_build_frame(SP_METHOD_PUSH, 1, 42, auth, "sensor-01", "[temperature:=32]",
                                    17, out, sizeof out),
                 53);
    CHECK_EQ_STR(out, "PUSH|!42|4deedd7bab8817ec|sensor-01|[temperature:=32]");
    CHECK_EQ_INT(sp_tip_build_frame(SP_METHOD_PULL, 1, 7, auth, "weather-denver", "[temperature]",
                                    13, out, sizeof out),
                 53);
    CHECK_EQ_STR(out, "PULL|!7|4deedd7bab8817ec|weather-denver|[temperature]");
    /* PING ignores the body, even NULL */
    CHECK_EQ_INT(
        sp_tip_build_frame(SP_METHOD_PING, 1, 5, auth, "sensor-01", "[x:=1]", 6, out, sizeof out),
        34);
    CHECK_EQ_STR(out, "PING|!5|4deedd7bab8817ec|sensor-01");
    CHECK_EQ_INT(
        sp_tip_build_frame(SP_METHOD_PING, 0, 0, auth, "sensor-01", NULL, 0, out, sizeof out), 31);
    CHECK_EQ_STR(out, "PING|4deedd7bab8817ec|sensor-01");
    /* body_len counts */
    CHECK_EQ_INT(
        sp_tip_build_frame(SP_METHOD_PUSH, 0, 0, auth, "s", ">xABCDEF", 6, out, sizeof out), 30);
    CHECK_EQ_STR(out, "PUSH|4deedd7bab8817ec|s|>xABCD");

    /* what would not parse, or would parse as something else, is refused */
    static const struct {
        int method;
        const char *serial, *body;
        size_t body_len;
    } bad[] = {
        {SP_METHOD_PUSH, "", "[a:=1]", 6},
        {SP_METHOD_PUSH, "sen sor", "[a:=1]", 6},
        {SP_METHOD_PUSH, "sen.sor", "[a:=1]", 6},
        {SP_METHOD_PING, "s|x", NULL, 0},
        /* a serial that would move the field boundary */
        {SP_METHOD_PUSH, "s|[a=x\\", "y]", 2},
        {SP_METHOD_PUSH, "s|[a:=1", "]", 1},
        {SP_METHOD_PULL, "s|[a", "]", 1},
        {SP_METHOD_PUSH, "s", "", 0},
        {SP_METHOD_PUSH, "s", "[]", 2},
        {SP_METHOD_PUSH, "s", "[a:=1]x", 7},
        {SP_METHOD_PUSH, "s", "[a:=1]|x", 8},
        {SP_METHOD_PULL, "s", "[a:=1]", 6},
        {SP_METHOD_PULL, "s", "a,b", 3},
        /* a NUL would cut the body short */
        {SP_METHOD_PUSH, "s", "[a:=1]\0junk", 11},
        /* the terminator is the transport's, not part of a body */
        {SP_METHOD_PUSH, "s", "[a:=1]\n", 7},
        {SP_METHOD_PULL, "s", "[a]\n", 4},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(out, 'Z', sizeof out);
        n = sp_tip_build_frame(bad[i].method, 0, 0, auth, bad[i].serial, bad[i].body,
                               bad[i].body_len, out, sizeof out);
        if (n != SP_ERR_PAYLOAD)
            fprintf(stderr, "build_frame case %zu gave %d: %s\n", i, n, out);
        CHECK_EQ_INT(n, SP_ERR_PAYLOAD);
        CHECK_EQ_STR(out, "");
    }
    n = (int)fill("", 's', 101, "");
    CHECK_EQ_INT(sp_tip_build_frame(SP_METHOD_PING, 0, 0, auth, gen_buf, NULL, 0, out, sizeof out),
                 SP_ERR_PAYLOAD);

    /* arguments */
    CHECK_EQ_INT(sp_tip_build_frame(SP_METHOD_PING, 0, 0, auth, "s", NULL, 0, NULL, 8),
                 SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_build_frame(SP_METHOD_PING, 0, 0, auth, "s", NULL, 0, out, 0),
                 SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_build_frame(SP_METHOD_ACK, 0, 0, auth, "s", "", 0, out, sizeof out),
                 SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_build_frame(-1, 0, 0, auth, "s", "", 0, out, sizeof out), SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_build_frame(SP_METHOD_PING, 0, 0, NULL, "s", NULL, 0, out, sizeof out),
                 SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_build_frame(SP_METHOD_PING, 0, 0, auth, NULL, NULL, 0, out, sizeof out),
                 SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_build_frame(SP_METHOD_PUSH, 0, 0, auth, "s", NULL, 0, out, sizeof out),
                 SP_ERR_INVAL);

    /* the buffer: "PING|!1|4deedd7bab8817ec|s" is 26 bytes and needs 27 */
    for (size_t cap = 1; cap <= 27; cap++) {
        memset(out, 'Z', sizeof out);
        n = sp_tip_build_frame(SP_METHOD_PING, 1, 1, auth, "s", NULL, 0, out, cap);
        CHECK_EQ_INT(n, cap == 27 ? 26 : SP_ERR_BUFSIZE);
        CHECK(cap == 27 ? strcmp(out, "PING|!1|4deedd7bab8817ec|s") == 0 : out[0] == '\0');
        CHECK(out[cap] == 'Z');
    }

    /* the frame limit */
    n = (int)fill("[s=", 'x', SP_MAX_FRAME - 28, "]");
    CHECK_EQ_INT(
        sp_tip_build_frame(SP_METHOD_PUSH, 0, 0, auth, "s", gen_buf, (size_t)n, big, sizeof big),
        SP_MAX_FRAME);
    n = (int)fill("[s=", 'x', SP_MAX_FRAME - 27, "]");
    CHECK_EQ_INT(
        sp_tip_build_frame(SP_METHOD_PUSH, 0, 0, auth, "s", gen_buf, (size_t)n, big, sizeof big),
        SP_ERR_TOOLARGE);
}

/* The counter of a refused frame, for the ERR answer to echo. */
static void test_error_counter(void)
{
    static const char *const bad[] = {"PUSH|!7|" AUTH "|s1|[bad",
                                      "PUSH|!7|nothex0000000000|s1|[a:=1]",
                                      "PULL|!7|" AUTH "|s1|[]\n", "PING|!7|"};
    uint32_t c = 0;

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c = 0;
        CHECK_EQ_INT(sp_tip_frame_counter(bad[i], strlen(bad[i]), &c), 1);
        CHECK_EQ_INT(c, 7);
    }
    CHECK_EQ_INT(sp_tip_frame_counter("PUSH|!x|", 8, &c), 0);
    CHECK_EQ_INT(sp_tip_frame_counter("PUSH|" AUTH "|s1|[a:=1]", 30, &c), 0);
    CHECK_EQ_INT(sp_tip_frame_counter("POST|!7|", 8, &c), 0);
    CHECK_EQ_INT(sp_tip_frame_counter("PUSH|!4294967296|", 17, &c), 0);
}

int main(void)
{
    if (sp_init() != 0)
        return 1;
    RUN(test_data_files);
    RUN(test_limits);
    RUN(test_limits_location);
    RUN(test_bytes);
    RUN(test_untouched);
    RUN(test_meta_each);
    RUN(test_build_ack);
    RUN(test_build_frame);
    RUN(test_error_counter);
    fprintf(stderr, "frame: %d cases run\n", cases_run);
    return check_done();
}
