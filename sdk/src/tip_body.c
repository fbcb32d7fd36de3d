/*
 * tip_body.c - TagoTiP PUSH bodies (TagoTiP.md §6, §12, §14; Revision D, and
 * Revision B's body-level order): the parser behind sp_tip_parse_body(), the
 * metadata iterators and the escaping of values. The grammar pieces that frames and the builder
 * reuse (identifiers, text, structured bodies) are declared in tip_scan.h.
 *
 * The daemon parses every uplink through here. The parser is a single
 * left-to-right pass over an explicit length: it never reads past len, never
 * allocates, and needs no NUL. It runs twice: a first pass only validates, so
 * a rejected body leaves the caller's struct untouched; the second pass fills
 * it. Every rule of the ABNF is enforced, including the limits of §4.5 and
 * UTF-8 validity of non-ASCII bytes, because a body that breaks any rule is
 * rejected whole. Stateless and thread-safe.
 */
#include "tip_scan.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sp_text.h"

/* sealpipe.h documents these sizes for device stacks: keep them in step. */
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(struct sp_tip_body) == 15312, "update sp_tip_body's size in sealpipe.h");
_Static_assert(sizeof(struct sp_tip_pull) == 1608, "update sp_tip_pull's size in sealpipe.h");
#endif

/* Character classes of §14 that only bodies use (the rest: tip_scan.h). */
static int is_hexchar(int c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_base64char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '+' ||
           c == '/' || c == '=';
}

/* VALCHAR/UNITCHAR base range: printable ASCII minus the structural set. */
static int is_plainchar(int c)
{
    return c >= 0x20 && c <= 0x7e && !is_structural(c);
}

/* The byte after a backslash in VALCHAR/METAVALCHAR. */
static int is_escapable(int c)
{
    return c == 'n' || c == ',' || is_structural(c);
}

/* 1*max VARNAMECHAR: variable names, groups, metadata keys. */
int sp__tip_scan_ident(struct scan *s, struct sp_span *out)
{
    size_t start = s->i;

    while (is_namechar(peek(s)))
        s->i++;
    if (s->i == start || s->i - start > SP_MAX_NAME)
        return SP_ERR_PAYLOAD;
    *out = span_from(s, start);
    return SP_OK;
}

/*
 * One or more VALCHAR, METAVALCHAR or UNITCHAR: printable ASCII minus the
 * structural characters, escapes (not in units), valid UTF-8. Stops at the
 * first byte that cannot continue the text; the caller decides whether that
 * byte may follow.
 */
int sp__tip_scan_text(struct scan *s, enum sp__text_kind kind, struct sp_span *out)
{
    const unsigned char *u = (const unsigned char *)s->p;
    size_t start = s->i, k;

    while (s->i < s->n) {
        int c = u[s->i];
        if (c == '\\' && kind != TEXT_UNIT) {
            if (s->i + 1 >= s->n || !is_escapable(u[s->i + 1]))
                return SP_ERR_PAYLOAD;
            s->i += 2;
        } else if (c >= 0x80) {
            k = sp__utf8_len(u + s->i, s->n - s->i);
            if (k == 0)
                return SP_ERR_PAYLOAD;
            s->i += k;
        } else if (is_plainchar(c) && !(kind == TEXT_META && c == ',')) {
            s->i++;
        } else {
            break;
        }
    }
    if (s->i == start || (kind == TEXT_UNIT && s->i - start > SP_MAX_UNIT))
        return SP_ERR_PAYLOAD;
    *out = span_from(s, start);
    return SP_OK;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)? */
static int scan_number(struct scan *s, struct sp_span *out)
{
    size_t start = s->i;

    take(s, '-');
    if (take(s, '0')) {
        /* a lone zero: no leading zeros */
    } else if (peek(s) >= '1' && peek(s) <= '9') {
        while (is_digit(peek(s)))
            s->i++;
    } else {
        return SP_ERR_PAYLOAD;
    }
    if (take(s, '.')) {
        if (!is_digit(peek(s)))
            return SP_ERR_PAYLOAD;
        while (is_digit(peek(s)))
            s->i++;
    }
    *out = span_from(s, start);
    return SP_OK;
}

/*
 * A validated number span to a double. strtod needs a terminated string; a
 * span longer than the buffer keeps its integer part and loses fraction digits
 * far below double precision. An integer part too long for the buffer is far
 * beyond DBL_MAX. Non-finite results are refused: the grammar allows 400-digit
 * integers, TagoIO's data model does not.
 */
static int number_value(struct sp_span sp, double *out)
{
    char buf[400];
    size_t n = sp.n, intlen = 0;
    double v;

    while (intlen < sp.n && sp.p[intlen] != '.')
        intlen++;
    if (intlen >= sizeof buf - 1)
        return SP_ERR_PAYLOAD;
    if (n >= sizeof buf)
        n = sizeof buf - 1;
    memcpy(buf, sp.p, n);
    buf[n] = '\0';
    v = strtod(buf, NULL);
    if (!isfinite(v))
        return SP_ERR_PAYLOAD;
    *out = v;
    return SP_OK;
}

/* 1*DIGIT that fits int64. */
static int scan_timestamp(struct scan *s, int64_t *out)
{
    size_t start = s->i;
    int64_t v = 0;

    while (is_digit(peek(s))) {
        int d = peek(s) - '0';
        if (v > (INT64_MAX - d) / 10)
            return SP_ERR_PAYLOAD;
        v = v * 10 + d;
        s->i++;
    }
    if (s->i == start)
        return SP_ERR_PAYLOAD;
    *out = v;
    return SP_OK;
}

/* "{" meta-pair *31("," meta-pair) "}"; *out gets the pairs without braces. */
static int scan_meta(struct scan *s, struct sp_span *out)
{
    struct sp_span key, val;
    size_t start, npairs = 0;
    int rc;

    if (!take(s, '{'))
        return SP_ERR_PAYLOAD;
    start = s->i;
    do {
        if (++npairs > SP_MAX_META)
            return SP_ERR_PAYLOAD;
        if ((rc = sp__tip_scan_ident(s, &key)) < 0)
            return rc;
        if (!take(s, '='))
            return SP_ERR_PAYLOAD;
        if ((rc = sp__tip_scan_text(s, TEXT_META, &val)) < 0)
            return rc;
    } while (take(s, ','));
    *out = span_from(s, start);
    if (!take(s, '}'))
        return SP_ERR_PAYLOAD;
    return SP_OK;
}

/* A parsed location: the @= operator's value, a suffix or a body modifier. */
struct loc {
    double lat, lng, alt;
    int has_alt;
};

/*
 * lat,lng[,alt] (§14 loc-value): two or three numbers of the number type's
 * format. Ranges are the application's (§6.3.1), not the parser's.
 */
static int scan_location(struct scan *s, struct loc *l)
{
    struct sp_span c;
    int rc;

    if ((rc = scan_number(s, &c)) < 0 || (rc = number_value(c, &l->lat)) < 0)
        return rc;
    if (!take(s, ','))
        return SP_ERR_PAYLOAD;
    if ((rc = scan_number(s, &c)) < 0 || (rc = number_value(c, &l->lng)) < 0)
        return rc;
    l->has_alt = 0;
    l->alt = 0;
    if (take(s, ',')) {
        if ((rc = scan_number(s, &c)) < 0 || (rc = number_value(c, &l->alt)) < 0)
            return rc;
        l->has_alt = 1;
    }
    return SP_OK;
}

/* "@=" loc-value when the scanner is at "@=" (§12.2: the 1-byte lookahead). */
static int scan_at_location(struct scan *s, struct loc *l, int *has)
{
    if (peek(s) != '@' || peek2(s) != '=')
        return SP_OK;
    s->i += 2;
    *has = 1;
    return scan_location(s, l);
}

static void var_set_location(struct sp_tip_var *v, const struct loc *l)
{
    v->has_loc = 1;
    v->lat = l->lat;
    v->lng = l->lng;
    v->alt = l->alt;
    v->has_alt = l->has_alt;
}

static int scan_value(struct scan *s, struct sp_tip_var *v)
{
    size_t start = s->i;
    int rc;

    switch (v->type) {
    case SP_TIP_NUMBER:
        if ((rc = scan_number(s, &v->value)) < 0)
            return rc;
        return number_value(v->value, &v->number);
    case SP_TIP_STRING:
        return sp__tip_scan_text(s, TEXT_VALUE, &v->value);
    case SP_TIP_BOOLEAN:
        if (s->n - s->i >= 4 && memcmp(s->p + s->i, "true", 4) == 0) {
            s->i += 4;
            v->boolean = 1;
        } else if (s->n - s->i >= 5 && memcmp(s->p + s->i, "false", 5) == 0) {
            s->i += 5;
            v->boolean = 0;
        } else {
            return SP_ERR_PAYLOAD;
        }
        break;
    default: {
        struct loc l;
        if ((rc = scan_location(s, &l)) < 0)
            return rc;
        var_set_location(v, &l);
        break;
    }
    }
    v->value = span_from(s, start);
    return SP_OK;
}

/*
 * NAME OP VALUE [#unit] [@=loc] [@ts] [^group] [{meta}], each suffix at most
 * once and in this order (§6.3, Revision D). Operators are tried longest
 * first (§12.4); since '=' is not a name character, the name ends where the
 * operator begins. An @= operator variable takes neither #unit nor @=loc
 * (§6.3.2). After '@', '=' means a location and a digit a timestamp; any
 * other byte, a second "@=" included, fails the timestamp. The caller checks
 * that ';' or ']' follows.
 */
static int scan_var(struct scan *s, struct sp_tip_var *v)
{
    int rc;

    memset(v, 0, sizeof *v);
    if ((rc = sp__tip_scan_ident(s, &v->name)) < 0)
        return rc;
    if (peek(s) == ':' && peek2(s) == '=')
        v->type = SP_TIP_NUMBER;
    else if (peek(s) == '?' && peek2(s) == '=')
        v->type = SP_TIP_BOOLEAN;
    else if (peek(s) == '@' && peek2(s) == '=')
        v->type = SP_TIP_LOCATION;
    else if (peek(s) == '=')
        v->type = SP_TIP_STRING;
    else
        return SP_ERR_PAYLOAD;
    s->i += v->type == SP_TIP_STRING ? 1 : 2;
    if ((rc = scan_value(s, v)) < 0)
        return rc;

    if (take(s, '#')) {
        if (v->type == SP_TIP_LOCATION)
            return SP_ERR_PAYLOAD;
        if ((rc = sp__tip_scan_text(s, TEXT_UNIT, &v->unit)) < 0)
            return rc;
    }
    if (peek(s) == '@' && peek2(s) == '=') {
        struct loc l;
        int has = 0;
        if (v->type == SP_TIP_LOCATION)
            return SP_ERR_PAYLOAD;
        if ((rc = scan_at_location(s, &l, &has)) < 0)
            return rc;
        var_set_location(v, &l);
    }
    if (take(s, '@')) {
        if ((rc = scan_timestamp(s, &v->time_ms)) < 0)
            return rc;
        v->has_time = 1;
    }
    if (take(s, '^') && (rc = sp__tip_scan_ident(s, &v->group)) < 0)
        return rc;
    if (peek(s) == '{' && (rc = scan_meta(s, &v->meta)) < 0)
        return rc;
    return SP_OK;
}

/* ">x" 1*(2HEXDIG) / ">b" 1*BASE64CHAR. With out NULL only validates. */
static int parse_passthrough(const char *p, size_t n, struct sp_tip_body *out)
{
    size_t i;
    int kind;

    if (n < 3 || (p[1] != 'x' && p[1] != 'b'))
        return SP_ERR_PAYLOAD;
    kind = p[1];
    for (i = 2; i < n; i++)
        if (kind == 'x' ? !is_hexchar((unsigned char)p[i]) : !is_base64char((unsigned char)p[i]))
            return SP_ERR_PAYLOAD;
    if (kind == 'x' && (n - 2) % 2 != 0)
        return SP_ERR_PAYLOAD;
    if (out) {
        memset(out, 0, offsetof(struct sp_tip_body, vars));
        out->passthrough = kind;
        out->data.p = p + 2;
        out->data.n = n - 2;
    }
    return SP_OK;
}

/* The body-level modifiers before {meta}, as scan_body_mods reads them. */
struct body_mods {
    struct loc loc;
    int has_loc;
    struct sp_span group;
    int has_time;
    int64_t time_ms;
};

/*
 * The body-level modifiers before {meta}: [@=loc] [@ts] [^group] (Revisions
 * C and D), or [^group] [@ts] (Revision B, still read: a body that starts
 * with '^' can only be B's order; B has no location, so after "@=loc" only
 * the current order is). Each at most once.
 */
static int scan_body_mods(struct scan *s, struct body_mods *m)
{
    int rc, b_order;

    if ((rc = scan_at_location(s, &m->loc, &m->has_loc)) < 0)
        return rc;
    b_order = !m->has_loc && take(s, '^');
    if (b_order && (rc = sp__tip_scan_ident(s, &m->group)) < 0)
        return rc;
    if (take(s, '@')) {
        if ((rc = scan_timestamp(s, &m->time_ms)) < 0)
            return rc;
        m->has_time = 1;
    }
    if (!b_order && take(s, '^') && (rc = sp__tip_scan_ident(s, &m->group)) < 0)
        return rc;
    return SP_OK;
}

/*
 * §6.4: a variable's own location, timestamp and group override the body's;
 * an @= operator variable's location is its value, which the body's never
 * replaces. Metadata merges later (sp_tip_meta_each).
 */
static void inherit(struct sp_tip_var *v, const struct body_mods *m)
{
    if (!v->has_time && m->has_time) {
        v->has_time = 1;
        v->time_ms = m->time_ms;
    }
    if (v->group.n == 0)
        v->group = m->group;
    if (!v->has_loc && m->has_loc)
        var_set_location(v, &m->loc);
}

/*
 * body-mods [{meta}] "[" var *(";" var) "]". With out NULL only validates,
 * writing each variable into a scratch slot.
 */
int sp__tip_parse_structured(const char *p, size_t n, struct sp_tip_body *out)
{
    struct scan s = {p, n, 0};
    struct body_mods m;
    struct sp_span meta = {NULL, 0};
    struct sp_tip_var scratch, *v;
    size_t nvars = 0;
    int rc;

    memset(&m, 0, sizeof m);
    if ((rc = scan_body_mods(&s, &m)) < 0)
        return rc;
    if (peek(&s) == '{' && (rc = scan_meta(&s, &meta)) < 0)
        return rc;
    if (!take(&s, '['))
        return SP_ERR_PAYLOAD;
    do {
        if (nvars >= SP_MAX_VARS)
            return SP_ERR_PAYLOAD;
        v = out ? &out->vars[nvars] : &scratch;
        if ((rc = scan_var(&s, v)) < 0)
            return rc;
        inherit(v, &m);
        nvars++;
    } while (take(&s, ';'));
    if (!take(&s, ']') || s.i != s.n)
        return SP_ERR_PAYLOAD;

    if (out) {
        out->passthrough = 0;
        out->data.p = NULL;
        out->data.n = 0;
        out->group = m.group;
        out->has_time = m.has_time;
        out->time_ms = m.time_ms;
        out->meta = meta;
        out->has_loc = m.has_loc;
        out->lat = m.loc.lat;
        out->lng = m.loc.lng;
        out->alt = m.loc.alt;
        out->has_alt = m.loc.has_alt;
        out->nvars = nvars;
    }
    return SP_OK;
}

/* A PUSH body without its LF; with out NULL only validates. */
int sp__tip_parse_body(const char *body, size_t len, struct sp_tip_body *out)
{
    int rc;

    if (len == 0)
        return SP_ERR_PAYLOAD;
    if (body[0] == '>')
        return parse_passthrough(body, len, out);
    if ((rc = sp__tip_parse_structured(body, len, NULL)) < 0 || out == NULL)
        return rc;
    return sp__tip_parse_structured(body, len, out);
}

int sp_tip_parse_body(const char *body, size_t len, struct sp_tip_body *out)
{
    if ((body == NULL && len != 0) || out == NULL)
        return SP_ERR_INVAL;
    len = strip_lf(body, len);
    if (len > SP_MAX_FRAME)
        return SP_ERR_TOOLARGE;
    return sp__tip_parse_body(body, len, out);
}

int sp_tip_meta_next(struct sp_span *cursor, struct sp_span *key, struct sp_span *value)
{
    const char *p;
    size_t n, i = 0, k;

    if (cursor == NULL || cursor->n == 0 || cursor->p == NULL)
        return 0;
    p = cursor->p;
    n = cursor->n;
    while (i < n && p[i] != '=')
        i++;
    k = i;
    if (i < n)
        i++;
    key->p = p;
    key->n = k;
    value->p = p + i;
    while (i < n && p[i] != ',') {
        if (p[i] == '\\' && i + 1 < n)
            i++;
        i++;
    }
    value->n = (size_t)(p + i - value->p);
    if (i < n)
        i++; /* the ',' */
    cursor->p = p + i;
    cursor->n = n - i;
    return 1;
}

/* 1 if a pair of block has this key. */
static int meta_has(struct sp_span block, struct sp_span key)
{
    struct sp_span k, v;

    while (sp_tip_meta_next(&block, &k, &v))
        if (k.n == key.n && memcmp(k.p, key.p, k.n) == 0)
            return 1;
    return 0;
}

/*
 * *pos counts the pairs looked at so far, the variable's block first. A
 * pair is skipped when its key comes again later in its own block, or when
 * it is a body pair whose key the variable has.
 */
int sp_tip_meta_each(const struct sp_tip_body *b, const struct sp_tip_var *v, size_t *pos,
                     struct sp_span *key, struct sp_span *value)
{
    struct sp_span blocks[2] = {{NULL, 0}, {NULL, 0}}, cur, k, val;
    size_t idx = 0;
    int i;

    if (pos == NULL || key == NULL || value == NULL)
        return 0;
    if (v)
        blocks[0] = v->meta;
    if (b)
        blocks[1] = b->meta;
    for (i = 0; i < 2; i++) {
        cur = blocks[i];
        while (sp_tip_meta_next(&cur, &k, &val)) {
            if (idx++ < *pos)
                continue;
            *pos = idx;
            if (meta_has(cur, k) || (i == 1 && meta_has(blocks[0], k)))
                continue;
            *key = k;
            *value = val;
            return 1;
        }
    }
    return 0;
}

int sp_tip_unescape(struct sp_span s, char *out, size_t cap)
{
    size_t i, o = 0;

    if (out == NULL || (s.p == NULL && s.n != 0))
        return SP_ERR_INVAL;
    for (i = 0; i < s.n; i++) {
        char c = s.p[i];
        if (c == '\\' && i + 1 < s.n) {
            c = s.p[++i];
            if (c == 'n')
                c = '\n';
        }
        if (o + 1 >= cap)
            return SP_ERR_BUFSIZE;
        out[o++] = c;
    }
    if (o >= cap)
        return SP_ERR_BUFSIZE;
    out[o] = '\0';
    return (int)o;
}

int sp_tip_escape(const char *in, size_t n, char *out, size_t cap)
{
    const unsigned char *u = (const unsigned char *)in;
    size_t i = 0, o = 0, k;

    if (out == NULL || (in == NULL && n != 0))
        return SP_ERR_INVAL;
    while (i < n) {
        unsigned char c = u[i];
        char esc = 0;
        k = 1;
        if (c == '\n') {
            esc = 'n';
        } else if (c == ',' || is_structural(c)) {
            esc = (char)c;
        } else if (c >= 0x80) {
            k = sp__utf8_len(u + i, n - i);
            if (k == 0)
                return SP_ERR_PAYLOAD;
        } else if (c < 0x20 || c == 0x7f) {
            return SP_ERR_PAYLOAD;
        }
        if (esc) {
            if (o + 2 >= cap)
                return SP_ERR_BUFSIZE;
            out[o++] = '\\';
            out[o++] = esc;
        } else {
            if (o + k >= cap)
                return SP_ERR_BUFSIZE;
            memcpy(out + o, in + i, k);
            o += k;
        }
        i += k;
    }
    if (o >= cap || o > (size_t)INT32_MAX)
        return SP_ERR_BUFSIZE;
    out[o] = '\0';
    return (int)o;
}
