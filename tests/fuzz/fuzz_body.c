/*
 * fuzz_body.c - libFuzzer target for sp_tip_parse_body(), the parser every
 * PUSH body goes through in the daemon.
 *
 * Each input is one body, in a heap block of exactly its size. A body that
 * parses is walked the way the pipeline walks it: the effective metadata of
 * every variable (sp_tip_meta_each), every string and metadata value
 * unescaped, passthrough data decoded. A structured body is then written
 * again with the builder from the parsed values and must parse back to the
 * same variables (name, type, value, location, time, group). Seeds:
 * tests/data/tip/.
 */
#include "fuzz.h"
#include "sealpipe.h"

#include <string.h>

/* Unescapes a validated span; decoding never makes text longer. */
static const char *unescape(struct sp_span s, char *out, size_t cap)
{
    int n = sp_tip_unescape(s, out, cap);

    FUZZ_CHECK(n >= 0 && (size_t)n <= s.n);
    return out;
}

/* A span without escapes (name, group, key, unit) as a C string. */
static const char *cstr(struct sp_span s, char *out, size_t cap)
{
    FUZZ_CHECK(s.n > 0 && s.n < cap);
    memcpy(out, s.p, s.n);
    out[s.n] = '\0';
    return out;
}

static int span_eq(struct sp_span a, struct sp_span b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

/* What the pipeline does with a parsed body. */
static void walk(const struct sp_tip_body *b)
{
    static char text[SP_MAX_FRAME + 1];
    static uint8_t bin[SP_MAX_FRAME];
    struct sp_span k, v;
    size_t i, pos, npairs;

    if (b->passthrough == 'x')
        FUZZ_CHECK(sp_hex_decode(b->data.p, b->data.n, bin, sizeof bin) == (int)b->data.n / 2);
    else if (b->passthrough == 'b')
        (void)!sp_base64_decode(b->data.p, b->data.n, bin, sizeof bin); /* padding is not checked */
    for (i = 0; i < b->nvars; i++) {
        const struct sp_tip_var *var = &b->vars[i];
        if (var->type == SP_TIP_STRING)
            unescape(var->value, text, sizeof text);
        for (pos = 0, npairs = 0; sp_tip_meta_each(b, var, &pos, &k, &v); npairs++) {
            FUZZ_CHECK(k.n > 0 && k.n <= SP_MAX_NAME && npairs < 2 * SP_MAX_META);
            unescape(v, text, sizeof text);
        }
    }
}

/* Writes the pairs of a metadata block with add (body or variable level). */
static void build_meta(struct sp_tip_builder *bld, struct sp_span block,
                       void (*add)(struct sp_tip_builder *, const char *, const char *))
{
    static char val[SP_MAX_FRAME + 1];
    char key[SP_MAX_NAME + 1];
    struct sp_span k, v;

    while (sp_tip_meta_next(&block, &k, &v))
        add(bld, cstr(k, key, sizeof key), unescape(v, val, sizeof val));
}

static void build_var(struct sp_tip_builder *bld, const struct sp_tip_var *v)
{
    static char val[SP_MAX_FRAME + 1];
    char name[SP_MAX_NAME + 1], unit[SP_MAX_UNIT + 1];

    cstr(v->name, name, sizeof name);
    switch (v->type) {
    case SP_TIP_NUMBER:
        sp_tip_add_number(bld, name, v->number, NULL);
        break;
    case SP_TIP_STRING:
        sp_tip_add_string(bld, name, unescape(v->value, val, sizeof val), NULL);
        break;
    case SP_TIP_BOOLEAN:
        sp_tip_add_bool(bld, name, v->boolean);
        break;
    default:
        sp_tip_add_location(bld, name, v->lat, v->lng, v->has_alt, v->alt);
        break;
    }
    if (v->unit.n)
        sp_tip_var_unit(bld, cstr(v->unit, unit, sizeof unit));
    if (v->has_loc && v->type != SP_TIP_LOCATION)
        sp_tip_var_location(bld, v->lat, v->lng, v->has_alt, v->alt);
    if (v->has_time)
        sp_tip_var_time(bld, v->time_ms);
    if (v->group.n)
        sp_tip_var_group(bld, cstr(v->group, name, sizeof name));
    build_meta(bld, v->meta, sp_tip_var_meta);
}

/*
 * The values a rebuilt variable must keep (numbers are written to read back
 * exactly), its location included: the @= value, a suffix or the body's.
 */
static int same_var(const struct sp_tip_var *a, const struct sp_tip_var *b)
{
    if (!span_eq(a->name, b->name) || a->type != b->type || a->has_time != b->has_time ||
        a->time_ms != b->time_ms || !span_eq(a->group, b->group) || !span_eq(a->unit, b->unit))
        return 0;
    if (a->has_loc != b->has_loc || a->lat != b->lat || a->lng != b->lng ||
        a->has_alt != b->has_alt || a->alt != b->alt)
        return 0;
    switch (a->type) {
    case SP_TIP_NUMBER:
        return a->number == b->number;
    case SP_TIP_BOOLEAN:
        return a->boolean == b->boolean;
    default:
        return 1;
    }
}

/*
 * Variables are rebuilt with the group and time the parser gave them, which
 * includes what they inherited: the text differs, the meaning does not. The
 * buffer is large enough that only SP_ERR_TOOLARGE can stop the builder, and
 * that is legitimate: escaping a ',' in a string value and repeating an
 * inherited suffix on every variable make the body longer.
 */
static void rebuild(const struct sp_tip_body *b)
{
    static char out[4 * SP_MAX_FRAME];
    static struct sp_tip_body again;
    char group[SP_MAX_NAME + 1];
    struct sp_tip_builder bld;
    size_t i, len = 0;
    int rc;

    sp_tip_build_init(&bld, out, sizeof out);
    if (b->has_loc)
        sp_tip_body_location(&bld, b->lat, b->lng, b->has_alt, b->alt);
    if (b->has_time)
        sp_tip_body_time(&bld, b->time_ms);
    if (b->group.n)
        sp_tip_body_group(&bld, cstr(b->group, group, sizeof group));
    build_meta(&bld, b->meta, sp_tip_body_meta);
    for (i = 0; i < b->nvars; i++)
        build_var(&bld, &b->vars[i]);
    rc = sp_tip_build_end(&bld, &len);
    if (rc == SP_ERR_TOOLARGE)
        return;
    if (rc != 0)
        fprintf(stderr, "builder: %s\n", sp_strerror(rc));
    FUZZ_CHECK(rc == 0);
    FUZZ_CHECK(sp_tip_parse_body(out, len, &again) == 0);
    FUZZ_CHECK(again.nvars == b->nvars);
    for (i = 0; i < b->nvars; i++)
        FUZZ_CHECK(same_var(&again.vars[i], &b->vars[i]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct sp_tip_body body; /* 15 KiB: kept off the stack */
    char *p = fuzz_copy(data, size);

    if (sp_tip_parse_body(p, size, &body) == 0) {
        FUZZ_CHECK(body.passthrough ? body.nvars == 0 && body.data.n > 0
                                    : body.nvars >= 1 && body.nvars <= SP_MAX_VARS);
        walk(&body);
        if (!body.passthrough)
            rebuild(&body);
    }
    free(p);
    return 0;
}
