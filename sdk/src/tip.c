/*
 * tip.c - TagoTiP text (TagoTiP.md §4-§9, §12, §14): splitting a headless
 * inner frame and an MQTT payload's "!N|" prefix, parsing a PUSH body, a PULL
 * list, a whole uplink frame and an ACK into spans over the caller's bytes,
 * escaping and unescaping values, writing ACKs and frames, and a small
 * builder devices use to write bodies.
 *
 * The daemon parses every uplink through sp_tip_parse_body(); the device CLI
 * builds with the builder. The parser is a single left-to-right pass over an
 * explicit length: it never reads past len, never allocates, and needs no NUL.
 * It runs twice: a first pass only validates, so a rejected body leaves the
 * caller's struct untouched; the second pass fills it. Every rule of the ABNF
 * is enforced, including the limits of §4.5 and UTF-8 validity of non-ASCII
 * bytes, because a body that breaks any rule is rejected whole. Stateless and
 * thread-safe.
 */
#include "sealpipe.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Character classes (§14)                                                  */
/* ------------------------------------------------------------------------ */

static int is_namechar(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static int is_serialchar(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int is_hexchar(int c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_base64char(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) || c == '+' ||
           c == '/' || c == '=';
}

/* The structural characters: excluded from values, escapable in them. */
static int is_structural(int c)
{
    return c != '\0' && strchr("#;@[\\]^{|}", c) != NULL;
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

/*
 * Length of the valid UTF-8 sequence of two to four bytes at p[0..n), or 0 if
 * there is none (RFC 3629: no overlongs, no surrogates, nothing past U+10FFFF).
 */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    unsigned char lo = 0x80, hi = 0xbf;
    size_t need, i;

    if (c >= 0xc2 && c <= 0xdf)
        need = 2;
    else if (c >= 0xe0 && c <= 0xef)
        need = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        need = 4;
    else
        return 0;
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (n < need || p[1] < lo || p[1] > hi)
        return 0;
    for (i = 2; i < need; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return need;
}

/* ------------------------------------------------------------------------ */
/* The scanner                                                              */
/* ------------------------------------------------------------------------ */

struct scan {
    const char *p;
    size_t n;
    size_t i;
};

static int peek(const struct scan *s)
{
    return s->i < s->n ? (unsigned char)s->p[s->i] : -1;
}

static int peek2(const struct scan *s)
{
    return s->i + 1 < s->n ? (unsigned char)s->p[s->i + 1] : -1;
}

static int take(struct scan *s, int c)
{
    if (peek(s) != c)
        return 0;
    s->i++;
    return 1;
}

static struct sp_span span_from(const struct scan *s, size_t start)
{
    struct sp_span sp = {s->p + start, s->i - start};
    return sp;
}

/* 1*max VARNAMECHAR: variable names, groups, metadata keys. */
static int scan_ident(struct scan *s, struct sp_span *out)
{
    size_t start = s->i;

    while (is_namechar(peek(s)))
        s->i++;
    if (s->i == start || s->i - start > SP_MAX_NAME)
        return SP_ERR_PAYLOAD;
    *out = span_from(s, start);
    return SP_OK;
}

enum text_kind { TEXT_VALUE, TEXT_META, TEXT_UNIT };

/*
 * One or more VALCHAR, METAVALCHAR or UNITCHAR: printable ASCII minus the
 * structural characters, escapes (not in units), valid UTF-8. Stops at the
 * first byte that cannot continue the text; the caller decides whether that
 * byte may follow.
 */
static int scan_text(struct scan *s, enum text_kind kind, struct sp_span *out)
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
            k = utf8_len(u + s->i, s->n - s->i);
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
        if ((rc = scan_ident(s, &key)) < 0)
            return rc;
        if (!take(s, '='))
            return SP_ERR_PAYLOAD;
        if ((rc = scan_text(s, TEXT_META, &val)) < 0)
            return rc;
    } while (take(s, ','));
    *out = span_from(s, start);
    if (!take(s, '}'))
        return SP_ERR_PAYLOAD;
    return SP_OK;
}

/* lat,lng[,alt] */
static int scan_location(struct scan *s, struct sp_tip_var *v)
{
    struct sp_span c;
    int rc;

    if ((rc = scan_number(s, &c)) < 0 || (rc = number_value(c, &v->lat)) < 0)
        return rc;
    if (!take(s, ','))
        return SP_ERR_PAYLOAD;
    if ((rc = scan_number(s, &c)) < 0 || (rc = number_value(c, &v->lng)) < 0)
        return rc;
    v->has_alt = 0;
    v->alt = 0;
    if (take(s, ',')) {
        if ((rc = scan_number(s, &c)) < 0 || (rc = number_value(c, &v->alt)) < 0)
            return rc;
        v->has_alt = 1;
    }
    return SP_OK;
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
        return scan_text(s, TEXT_VALUE, &v->value);
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
    default:
        if ((rc = scan_location(s, v)) < 0)
            return rc;
        break;
    }
    v->value = span_from(s, start);
    return SP_OK;
}

/*
 * NAME OP VALUE [#unit] [@ts] [^group] [{meta}], each suffix at most once and
 * in this order. Operators are tried longest first (§12.4); since '=' is not a
 * name character, the name ends where the operator begins. The caller checks
 * that ';' or ']' follows.
 */
static int scan_var(struct scan *s, struct sp_tip_var *v)
{
    int rc;

    memset(v, 0, sizeof *v);
    if ((rc = scan_ident(s, &v->name)) < 0)
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
        if ((rc = scan_text(s, TEXT_UNIT, &v->unit)) < 0)
            return rc;
    }
    if (take(s, '@')) {
        if ((rc = scan_timestamp(s, &v->time_ms)) < 0)
            return rc;
        v->has_time = 1;
    }
    if (take(s, '^') && (rc = scan_ident(s, &v->group)) < 0)
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

/*
 * [^group] [@ts] [{meta}] "[" var *(";" var) "]". With out NULL only
 * validates, writing each variable into a scratch slot.
 */
static int parse_structured(const char *p, size_t n, struct sp_tip_body *out)
{
    struct scan s = {p, n, 0};
    struct sp_span group = {NULL, 0}, meta = {NULL, 0};
    struct sp_tip_var scratch, *v;
    int64_t time_ms = 0;
    int has_time = 0, rc;
    size_t nvars = 0;

    if (take(&s, '^') && (rc = scan_ident(&s, &group)) < 0)
        return rc;
    if (take(&s, '@')) {
        if ((rc = scan_timestamp(&s, &time_ms)) < 0)
            return rc;
        has_time = 1;
    }
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
        if (!v->has_time && has_time) {
            v->has_time = 1;
            v->time_ms = time_ms;
        }
        if (v->group.n == 0)
            v->group = group;
        nvars++;
    } while (take(&s, ';'));
    if (!take(&s, ']') || s.i != s.n)
        return SP_ERR_PAYLOAD;

    if (out) {
        out->passthrough = 0;
        out->data.p = NULL;
        out->data.n = 0;
        out->group = group;
        out->has_time = has_time;
        out->time_ms = time_ms;
        out->meta = meta;
        out->nvars = nvars;
    }
    return SP_OK;
}

/* A PUSH body without its LF; with out NULL only validates. */
static int parse_body(const char *body, size_t len, struct sp_tip_body *out)
{
    int rc;

    if (len == 0)
        return SP_ERR_PAYLOAD;
    if (body[0] == '>')
        return parse_passthrough(body, len, out);
    if ((rc = parse_structured(body, len, NULL)) < 0 || out == NULL)
        return rc;
    return parse_structured(body, len, out);
}

/* One trailing LF is the frame terminator, not part of the frame (§3). */
static size_t strip_lf(const char *p, size_t len)
{
    return len > 0 && p[len - 1] == '\n' ? len - 1 : len;
}

int sp_tip_parse_body(const char *body, size_t len, struct sp_tip_body *out)
{
    if ((body == NULL && len != 0) || out == NULL)
        return SP_ERR_INVAL;
    len = strip_lf(body, len);
    if (len > SP_MAX_FRAME)
        return SP_ERR_TOOLARGE;
    return parse_body(body, len, out);
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
            k = utf8_len(u + i, n - i);
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

/* ------------------------------------------------------------------------ */
/* Frame-level splitting                                                    */
/* ------------------------------------------------------------------------ */

/*
 * The serial's charset has no '\\', so the first '|' after it is the first
 * unescaped one: scanning the serial finds the split.
 */
int sp_serial_valid(const char *s, size_t n)
{
    if (!s || n == 0 || n > SP_MAX_SERIAL)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_serialchar((unsigned char)s[i]))
            return 0;
    return 1;
}

int sp_inner_split(const char *inner, size_t len, int method, struct sp_span *serial,
                   struct sp_span *body)
{
    size_t i = 0;

    if ((inner == NULL && len != 0) || serial == NULL || body == NULL)
        return SP_ERR_INVAL;
    if (method != SP_METHOD_PUSH && method != SP_METHOD_PULL && method != SP_METHOD_PING)
        return SP_ERR_PAYLOAD;
    while (i < len && is_serialchar((unsigned char)inner[i]))
        i++;
    if (i == 0 || i > SP_MAX_SERIAL)
        return SP_ERR_PAYLOAD;
    if (method == SP_METHOD_PING) {
        if (i != len && !(i + 1 == len && inner[i] == '\n'))
            return SP_ERR_PAYLOAD;
        body->p = inner + len;
        body->n = 0;
    } else {
        if (i >= len || inner[i] != '|')
            return SP_ERR_PAYLOAD;
        body->p = inner + i + 1;
        body->n = len - i - 1;
    }
    serial->p = inner;
    serial->n = i;
    return SP_OK;
}

/* "!" ("0" / %x31-39 *DIGIT) "|", the value fitting uint32. */
int sp_tip_split_counter(const char *payload, size_t len, int *has_counter, uint32_t *counter,
                         struct sp_span *body)
{
    size_t i = 1;
    uint64_t v = 0;

    if ((payload == NULL && len != 0) || has_counter == NULL || counter == NULL || body == NULL)
        return SP_ERR_INVAL;
    if (len == 0 || payload[0] != '!') {
        *has_counter = 0;
        *counter = 0;
        body->p = payload;
        body->n = len;
        return SP_OK;
    }
    if (i < len && payload[i] == '0') {
        i++;
    } else if (i < len && payload[i] >= '1' && payload[i] <= '9') {
        while (i < len && is_digit((unsigned char)payload[i])) {
            v = v * 10 + (uint64_t)(payload[i] - '0');
            if (v > UINT32_MAX)
                return SP_ERR_PAYLOAD;
            i++;
        }
    } else {
        return SP_ERR_PAYLOAD;
    }
    if (i >= len || payload[i] != '|')
        return SP_ERR_PAYLOAD;
    *has_counter = 1;
    *counter = (uint32_t)v;
    body->p = payload + i + 1;
    body->n = len - i - 1;
    return SP_OK;
}

/* ------------------------------------------------------------------------ */
/* Frames                                                                   */
/* ------------------------------------------------------------------------ */

/* The field at s (up to the next '|' or the end). */
static struct sp_span field_at(const struct scan *s)
{
    struct sp_span f = {s->p + s->i, 0};

    while (s->i + f.n < s->n && s->p[s->i + f.n] != '|')
        f.n++;
    return f;
}

static int span_is(struct sp_span sp, const char *lit)
{
    return sp.n == strlen(lit) && memcmp(sp.p, lit, sp.n) == 0;
}

/* "!" counter-value "|" at s, if s starts with '!'. */
static int scan_seq(struct scan *s, int *has, uint32_t *counter)
{
    struct sp_span body;
    int rc;

    *has = 0;
    *counter = 0;
    if (peek(s) != '!')
        return SP_OK;
    rc = sp_tip_split_counter(s->p + s->i, s->n - s->i, has, counter, &body);
    if (rc < 0)
        return SP_ERR_PAYLOAD;
    s->i = (size_t)(body.p - s->p);
    return SP_OK;
}

static int has_nul(const char *p, size_t n)
{
    return n > 0 && memchr(p, '\0', n) != NULL;
}

/* "[" name *99(";" name) "]", or name *99("," name) with csv. */
static int parse_pull(const char *p, size_t n, int csv, struct sp_tip_pull *out)
{
    struct scan s = {p, n, 0};
    struct sp_span name;
    size_t nvars = 0;
    int rc;

    if (!csv && !take(&s, '['))
        return SP_ERR_PAYLOAD;
    do {
        if (nvars >= SP_MAX_VARS)
            return SP_ERR_PAYLOAD;
        if ((rc = scan_ident(&s, &name)) < 0)
            return rc;
        if (out)
            out->vars[nvars] = name;
        nvars++;
    } while (take(&s, csv ? ',' : ';'));
    if ((!csv && !take(&s, ']')) || s.i != s.n)
        return SP_ERR_PAYLOAD;
    if (out)
        out->nvars = nvars;
    return SP_OK;
}

int sp_tip_parse_pull(const char *body, size_t len, int csv, struct sp_tip_pull *out)
{
    if ((body == NULL && len != 0) || out == NULL)
        return SP_ERR_INVAL;
    len = strip_lf(body, len);
    if (len > SP_MAX_FRAME)
        return SP_ERR_TOOLARGE;
    if (parse_pull(body, len, csv, NULL) < 0)
        return SP_ERR_PAYLOAD;
    return parse_pull(body, len, csv, out);
}

int sp_tip_parse_frame(const char *frame, size_t len, struct sp_tip_frame *out)
{
    struct scan s = {frame, 0, 0};
    struct sp_span f, serial, body = {NULL, 0};
    uint8_t auth[SP_HASH_LEN];
    uint32_t counter;
    int method, has_counter, rc;
    size_t i;

    if ((frame == NULL && len != 0) || out == NULL)
        return SP_ERR_INVAL;
    len = strip_lf(frame, len);
    s.n = len;
    if (len > SP_MAX_FRAME)
        return SP_ERR_TOOLARGE;
    f = field_at(&s);
    if (span_is(f, "PUSH"))
        method = SP_METHOD_PUSH;
    else if (span_is(f, "PULL"))
        method = SP_METHOD_PULL;
    else if (span_is(f, "PING"))
        method = SP_METHOD_PING;
    else
        return SP_ERR_METHOD;
    s.i += f.n;
    if (!take(&s, '|') || has_nul(frame, len))
        return SP_ERR_PAYLOAD;
    if ((rc = scan_seq(&s, &has_counter, &counter)) < 0)
        return rc;

    /* AUTH: 16HEXDIG (RFC 5234 HEXDIG: either case). */
    f = field_at(&s);
    if (f.n != 2 * SP_HASH_LEN)
        return SP_ERR_TOKEN;
    for (i = 0; i < SP_HASH_LEN; i++) {
        int hi = sp_hex_digit((unsigned char)f.p[2 * i]),
            lo = sp_hex_digit((unsigned char)f.p[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return SP_ERR_TOKEN;
        auth[i] = (uint8_t)(hi << 4 | lo);
    }
    s.i += f.n;
    if (!take(&s, '|'))
        return SP_ERR_PAYLOAD;

    serial.p = frame + s.i;
    while (is_serialchar(peek(&s)))
        s.i++;
    serial.n = (size_t)(frame + s.i - serial.p);
    if (serial.n == 0 || serial.n > SP_MAX_SERIAL)
        return SP_ERR_PAYLOAD;
    if (method == SP_METHOD_PING) {
        if (s.i != s.n)
            return SP_ERR_PAYLOAD;
        body.p = frame + s.i;
    } else {
        if (!take(&s, '|'))
            return SP_ERR_PAYLOAD;
        body.p = frame + s.i;
        body.n = s.n - s.i;
        rc = method == SP_METHOD_PUSH ? parse_body(body.p, body.n, NULL)
                                      : parse_pull(body.p, body.n, 0, NULL);
        if (rc < 0)
            return rc;
    }
    out->method = method;
    out->has_counter = has_counter;
    out->counter = counter;
    memcpy(out->auth_hash, auth, sizeof auth);
    out->serial = serial;
    out->body = body;
    return SP_OK;
}

/* DETAILCHAR = %x21-7B / %x7D-7E: printable ASCII without space and '|'. */
static int is_detail(struct sp_span d)
{
    size_t i;

    if (d.n == 0)
        return 0;
    for (i = 0; i < d.n; i++) {
        unsigned char c = (unsigned char)d.p[i];
        if (c < 0x21 || c > 0x7e || c == '|')
            return 0;
    }
    return 1;
}

static int is_count(struct sp_span d)
{
    size_t i;

    for (i = 0; i < d.n; i++)
        if (!is_digit((unsigned char)d.p[i]))
            return 0;
    return d.n > 0;
}

/* pull-response = "[" var-list "]": a structured body without modifiers. */
static int is_pull_response(struct sp_span d)
{
    return d.n > 0 && d.p[0] == '[' && parse_structured(d.p, d.n, NULL) == SP_OK;
}

static int parse_ack(const char *frame, size_t len, int form, struct sp_tip_ack *out)
{
    struct scan s = {frame, len, 0};
    struct sp_span st, d = {NULL, 0};
    int status, rc, has_counter = 0;
    uint32_t counter = 0;

    if (form == SP_ACK_FRAME) {
        st = field_at(&s);
        if (!span_is(st, "ACK"))
            return SP_ERR_PAYLOAD;
        s.i += st.n;
        if (!take(&s, '|'))
            return SP_ERR_PAYLOAD;
    }
    if (form != SP_ACK_INNER && (rc = scan_seq(&s, &has_counter, &counter)) < 0)
        return rc;
    st = field_at(&s);
    if (span_is(st, "OK"))
        status = SP_ACK_OK;
    else if (span_is(st, "PONG"))
        status = SP_ACK_PONG;
    else if (span_is(st, "CMD"))
        status = SP_ACK_CMD;
    else if (span_is(st, "ERR"))
        status = SP_ACK_ERR;
    else
        return SP_ERR_PAYLOAD;
    s.i += st.n;
    if (take(&s, '|')) {
        /*
         * The detail is the rest: a PULL response may hold escaped '|'. The
         * ABNF's ack-detail alternatives are each for a status (§14); PONG
         * has none (§9.1).
         */
        d.p = frame + s.i;
        d.n = len - s.i;
        if (status == SP_ACK_PONG ||
            (status == SP_ACK_OK ? !is_count(d) && !is_pull_response(d) : !is_detail(d)))
            return SP_ERR_PAYLOAD;
    }
    if (out) {
        out->has_counter = has_counter;
        out->counter = counter;
        out->status = status;
        out->detail = d;
    }
    return SP_OK;
}

int sp_tip_parse_ack(const char *frame, size_t len, int form, struct sp_tip_ack *out)
{
    if ((frame == NULL && len != 0) || out == NULL ||
        (form != SP_ACK_FRAME && form != SP_ACK_MQTT && form != SP_ACK_INNER))
        return SP_ERR_INVAL;
    len = strip_lf(frame, len);
    if (len > SP_MAX_FRAME)
        return SP_ERR_TOOLARGE;
    if (has_nul(frame, len))
        return SP_ERR_PAYLOAD;
    return parse_ack(frame, len, form, out);
}

int sp_tip_build_ack(char *out, size_t cap, int form, int has_counter, uint32_t counter, int status,
                     const char *detail, size_t detail_len)
{
    static const char *const names[] = {"OK", "PONG", "CMD", "ERR"};
    struct sp_tip_ack check;
    char seq[16] = "";
    int n;

    if (out == NULL || cap == 0 || status < SP_ACK_OK || status > SP_ACK_ERR ||
        (detail == NULL && detail_len != 0) ||
        (form != SP_ACK_FRAME && form != SP_ACK_MQTT && form != SP_ACK_INNER))
        return SP_ERR_INVAL;
    if (has_counter && form != SP_ACK_INNER)
        snprintf(seq, sizeof seq, "!%" PRIu32 "|", counter);
    n = snprintf(out, cap, "%s%s%s%s%.*s", form == SP_ACK_FRAME ? "ACK|" : "", seq, names[status],
                 detail_len ? "|" : "", (int)(detail_len > INT32_MAX ? 0 : detail_len),
                 detail_len ? detail : "");
    if (n < 0 || (size_t)n >= cap || detail_len > INT32_MAX) {
        out[0] = '\0';
        return SP_ERR_BUFSIZE;
    }
    /* A NUL in the detail would have cut it short: it must read back whole. */
    if (parse_ack(out, (size_t)n, form, &check) < 0 || check.detail.n != detail_len ||
        (size_t)n > SP_MAX_FRAME) {
        out[0] = '\0';
        return (size_t)n > SP_MAX_FRAME ? SP_ERR_TOOLARGE : SP_ERR_PAYLOAD;
    }
    return n;
}

int sp_tip_build_frame(char *out, size_t cap, int method, int has_counter, uint32_t counter,
                       const uint8_t auth_hash[SP_HASH_LEN], const char *serial, const char *body,
                       size_t body_len)
{
    static const char *const names[] = {"PUSH", "PULL", "PING"};
    struct sp_tip_frame check;
    char seq[16] = "", auth[2 * SP_HASH_LEN + 1];
    int n, rc;

    if (out == NULL || cap == 0 || auth_hash == NULL || serial == NULL || method < SP_METHOD_PUSH ||
        method > SP_METHOD_PING || (method != SP_METHOD_PING && body == NULL) ||
        body_len > INT32_MAX)
        return SP_ERR_INVAL;
    if (has_counter)
        snprintf(seq, sizeof seq, "!%" PRIu32 "|", counter);
    if (sp_hex_encode(auth_hash, SP_HASH_LEN, auth, sizeof auth) < 0)
        return SP_ERR_INVAL;
    if (method == SP_METHOD_PING)
        n = snprintf(out, cap, "PING|%s%s|%s", seq, auth, serial);
    else
        n = snprintf(out, cap, "%s|%s%s|%s|%.*s", names[method], seq, auth, serial, (int)body_len,
                     body);
    if (n < 0 || (size_t)n >= cap) {
        out[0] = '\0';
        return SP_ERR_BUFSIZE;
    }
    /*
     * It must also read back as the fields given: a '|' in the serial would
     * move the field boundary ("s|[a=x\\" + "y]" parses as serial "s"), a NUL
     * would cut a field short, and a trailing LF would be taken for the
     * terminator.
     */
    if ((rc = sp_tip_parse_frame(out, (size_t)n, &check)) == 0 &&
        (check.serial.n != strlen(serial) ||
         (method != SP_METHOD_PING && check.body.n != body_len)))
        rc = SP_ERR_PAYLOAD;
    if (rc < 0) {
        out[0] = '\0';
        return rc;
    }
    return n;
}

/* ------------------------------------------------------------------------ */
/* Builder                                                                  */
/* ------------------------------------------------------------------------ */

/*
 * b->stage: how far the body got. Body-level modifiers come first, then each
 * variable's value and suffixes; a stage may only move forward within a
 * variable, which enforces the order of §6.2 and §6.3.
 */
enum {
    ST_START,  /* nothing yet */
    ST_BGROUP, /* ^group written */
    ST_BTIME,  /* @time written */
    ST_BMETA,  /* {meta block open (b->nmeta pairs) */
    ST_VALUE,  /* a variable's value written */
    ST_UNIT,
    ST_VTIME,
    ST_VGROUP,
    ST_VMETA, /* its {meta block open */
    ST_DONE,  /* the last variable takes no more suffixes */
    ST_CLOSED /* sp_tip_build_end wrote the "]" */
};

void sp_tip_build_init(struct sp_tip_builder *b, char *buf, size_t cap)
{
    memset(b, 0, sizeof *b);
    b->buf = buf;
    b->cap = cap;
    b->stage = ST_START;
    b->err = (buf == NULL || cap == 0) ? SP_ERR_INVAL : SP_OK;
    if (b->err == SP_OK)
        buf[0] = '\0';
}

/*
 * The bytes that must still fit after b->len to close the body: "}" while a
 * metadata block is open, then "]". Every write keeps room for them and the
 * NUL, so sp_tip_build_end can always close what the calls accepted.
 */
static size_t tail_len(const struct sp_tip_builder *b)
{
    return b->nmeta ? 2 : 1;
}

/* Appends n bytes, keeping room for the tail and the NUL. */
static int put(struct sp_tip_builder *b, const char *s, size_t n)
{
    if (b->len + n + tail_len(b) + 1 > b->cap)
        return SP_ERR_BUFSIZE;
    if (b->len + n + tail_len(b) > SP_MAX_FRAME)
        return SP_ERR_TOOLARGE;
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    return SP_OK;
}

static int put_str(struct sp_tip_builder *b, const char *s)
{
    return put(b, s, strlen(s));
}

/* Appends an escaped value (string or metadata), at least one byte. */
static int put_escaped(struct sp_tip_builder *b, const char *v)
{
    size_t room = b->cap - b->len, tail = tail_len(b);
    int n;

    if (v == NULL)
        return SP_ERR_INVAL;
    if (v[0] == '\0')
        return SP_ERR_PAYLOAD;
    /* Escape in place, keeping room for the tail besides the NUL. */
    n = room <= tail ? SP_ERR_BUFSIZE : sp_tip_escape(v, strlen(v), b->buf + b->len, room - tail);
    if (n < 0)
        return n;
    if (b->len + (size_t)n + tail > SP_MAX_FRAME)
        return SP_ERR_TOOLARGE;
    b->len += (size_t)n;
    return SP_OK;
}

/* 1-100 VARNAMECHAR, or SP_ERR_PAYLOAD. */
static int check_ident(const char *name)
{
    size_t i, n;

    if (name == NULL)
        return SP_ERR_INVAL;
    n = strlen(name);
    if (n == 0 || n > SP_MAX_NAME)
        return SP_ERR_PAYLOAD;
    for (i = 0; i < n; i++)
        if (!is_namechar((unsigned char)name[i]))
            return SP_ERR_PAYLOAD;
    return SP_OK;
}

/* Closes an open {} block. */
static int close_meta(struct sp_tip_builder *b)
{
    if (b->nmeta == 0)
        return SP_OK;
    b->nmeta = 0;
    return put(b, "}", 1);
}

/* Starts a variable: separator, checked name, operator. */
static int begin_var(struct sp_tip_builder *b, const char *name, const char *op)
{
    int rc;

    if ((rc = check_ident(name)) < 0)
        return rc;
    if (b->nvars >= SP_MAX_VARS || b->stage == ST_CLOSED)
        return SP_ERR_PAYLOAD;
    if ((rc = close_meta(b)) < 0)
        return rc;
    b->var_start = b->len;
    if ((rc = put(b, b->nvars ? ";" : "[", 1)) < 0 || (rc = put_str(b, name)) < 0)
        return rc;
    b->stage = ST_VALUE;
    b->loc = 0;
    return put_str(b, op);
}

static int put_unit(struct sp_tip_builder *b, const char *unit)
{
    struct scan s;
    struct sp_span sp;
    int rc;

    if (unit == NULL || unit[0] == '\0')
        return SP_OK;
    if (b->loc)
        return SP_ERR_PAYLOAD; /* §6.3.2: no unit on a location */
    s.p = unit;
    s.n = strlen(unit);
    s.i = 0;
    if (scan_text(&s, TEXT_UNIT, &sp) < 0 || s.i != s.n)
        return SP_ERR_PAYLOAD;
    if ((rc = put(b, "#", 1)) < 0)
        return rc;
    b->stage = ST_UNIT;
    return put(b, unit, s.n);
}

/*
 * Numbers go out in plain decimal (the grammar has no exponent) with the
 * fewest fraction digits that read back as the same double.
 */
static int format_number(double v, char *buf, size_t cap)
{
    int d, n = 0;

    if (!isfinite(v))
        return SP_ERR_PAYLOAD;
    if (v == 0)
        v = 0; /* -0 would print as "-0", which reads back fine but looks odd */
    for (d = 0; d <= 330; d++) {
        n = snprintf(buf, cap, "%.*f", d, v);
        if (n < 0 || (size_t)n >= cap)
            return SP_ERR_PAYLOAD;
        if (strtod(buf, NULL) == v)
            return n;
    }
    return n;
}

static int put_number(struct sp_tip_builder *b, double v)
{
    char num[700];
    int n = format_number(v, num, sizeof num);

    return n < 0 ? n : put(b, num, (size_t)n);
}

/*
 * Runs one builder call: does nothing after an error; an error sticks and
 * rolls the buffer back to before the call (state included).
 */
#define BUILD_CALL(b, body)                                                                        \
    do {                                                                                           \
        struct sp_tip_builder saved_;                                                              \
        int rc_;                                                                                   \
        if ((b) == NULL || (b)->err)                                                               \
            return;                                                                                \
        saved_ = *(b);                                                                             \
        rc_ = (body);                                                                              \
        if (rc_ < 0) {                                                                             \
            *(b) = saved_;                                                                         \
            (b)->err = rc_;                                                                        \
            (b)->buf[(b)->len] = '\0';                                                             \
        }                                                                                          \
    } while (0)

static int add_number(struct sp_tip_builder *b, const char *name, double v, const char *unit)
{
    int rc;

    if (!isfinite(v))
        return SP_ERR_PAYLOAD;
    if ((rc = begin_var(b, name, ":=")) < 0 || (rc = put_number(b, v)) < 0 ||
        (rc = put_unit(b, unit)) < 0)
        return rc;
    b->nvars++;
    return SP_OK;
}

void sp_tip_add_number(struct sp_tip_builder *b, const char *name, double v, const char *unit)
{
    BUILD_CALL(b, add_number(b, name, v, unit));
}

static int add_string(struct sp_tip_builder *b, const char *name, const char *v, const char *unit)
{
    int rc;

    if (v == NULL)
        return SP_ERR_INVAL;
    if (v[0] == '\0')
        return SP_ERR_PAYLOAD;
    if ((rc = begin_var(b, name, "=")) < 0 || (rc = put_escaped(b, v)) < 0 ||
        (rc = put_unit(b, unit)) < 0)
        return rc;
    b->nvars++;
    return SP_OK;
}

void sp_tip_add_string(struct sp_tip_builder *b, const char *name, const char *v, const char *unit)
{
    BUILD_CALL(b, add_string(b, name, v, unit));
}

static int add_bool(struct sp_tip_builder *b, const char *name, int v)
{
    int rc;

    if ((rc = begin_var(b, name, "?=")) < 0 || (rc = put_str(b, v ? "true" : "false")) < 0)
        return rc;
    b->nvars++;
    return SP_OK;
}

void sp_tip_add_bool(struct sp_tip_builder *b, const char *name, int v)
{
    BUILD_CALL(b, add_bool(b, name, v));
}

static int add_location(struct sp_tip_builder *b, const char *name, double lat, double lng,
                        int has_alt, double alt)
{
    int rc;

    if (!isfinite(lat) || !isfinite(lng) || (has_alt && !isfinite(alt)))
        return SP_ERR_PAYLOAD;
    if ((rc = begin_var(b, name, "@=")) < 0 || (rc = put_number(b, lat)) < 0 ||
        (rc = put(b, ",", 1)) < 0 || (rc = put_number(b, lng)) < 0)
        return rc;
    if (has_alt && ((rc = put(b, ",", 1)) < 0 || (rc = put_number(b, alt)) < 0))
        return rc;
    b->loc = 1;
    b->nvars++;
    return SP_OK;
}

void sp_tip_add_location(struct sp_tip_builder *b, const char *name, double lat, double lng,
                         int has_alt, double alt)
{
    BUILD_CALL(b, add_location(b, name, lat, lng, has_alt, alt));
}

/* A suffix or modifier of the given stage: only forward, only in its part. */
static int advance(struct sp_tip_builder *b, int stage)
{
    int body_level = stage < ST_VALUE;

    if (b->stage == ST_CLOSED)
        return SP_ERR_PAYLOAD;
    if (body_level ? b->nvars > 0 || b->stage > stage
                   : b->nvars == 0 || b->stage < ST_VALUE || b->stage > stage)
        return SP_ERR_PAYLOAD;
    if (b->stage == stage && stage != ST_BMETA && stage != ST_VMETA)
        return SP_ERR_PAYLOAD; /* twice */
    return SP_OK;
}

static int put_time(struct sp_tip_builder *b, int stage, int64_t t)
{
    char num[24];
    int rc;

    if (t < 0)
        return SP_ERR_PAYLOAD;
    if ((rc = advance(b, stage)) < 0)
        return rc;
    snprintf(num, sizeof num, "@%" PRId64, t);
    b->stage = stage;
    return put_str(b, num);
}

static int put_group(struct sp_tip_builder *b, int stage, const char *group)
{
    int rc;

    if ((rc = check_ident(group)) < 0 || (rc = advance(b, stage)) < 0)
        return rc;
    b->stage = stage;
    if ((rc = put(b, "^", 1)) < 0)
        return rc;
    return put_str(b, group);
}

static int put_meta(struct sp_tip_builder *b, int stage, const char *key, const char *value)
{
    int rc;

    if ((rc = check_ident(key)) < 0 || (rc = advance(b, stage)) < 0)
        return rc;
    if (b->nmeta >= SP_MAX_META)
        return SP_ERR_PAYLOAD;
    b->stage = stage;
    if ((rc = put(b, b->nmeta ? "," : "{", 1)) < 0)
        return rc;
    /* Counted before the pair is written, so that it keeps room for the "}". */
    b->nmeta++;
    if ((rc = put_str(b, key)) < 0 || (rc = put(b, "=", 1)) < 0 || (rc = put_escaped(b, value)) < 0)
        return rc;
    return SP_OK;
}

void sp_tip_body_group(struct sp_tip_builder *b, const char *group)
{
    BUILD_CALL(b, put_group(b, ST_BGROUP, group));
}

void sp_tip_body_time(struct sp_tip_builder *b, int64_t time_ms)
{
    BUILD_CALL(b, put_time(b, ST_BTIME, time_ms));
}

void sp_tip_body_meta(struct sp_tip_builder *b, const char *key, const char *value)
{
    BUILD_CALL(b, put_meta(b, ST_BMETA, key, value));
}

static int var_unit(struct sp_tip_builder *b, const char *unit)
{
    int rc;

    if (unit == NULL || unit[0] == '\0')
        return SP_ERR_PAYLOAD;
    if ((rc = advance(b, ST_UNIT)) < 0)
        return rc;
    return put_unit(b, unit);
}

void sp_tip_var_unit(struct sp_tip_builder *b, const char *unit)
{
    BUILD_CALL(b, var_unit(b, unit));
}

void sp_tip_var_time(struct sp_tip_builder *b, int64_t time_ms)
{
    BUILD_CALL(b, put_time(b, ST_VTIME, time_ms));
}

void sp_tip_var_group(struct sp_tip_builder *b, const char *group)
{
    BUILD_CALL(b, put_group(b, ST_VGROUP, group));
}

void sp_tip_var_meta(struct sp_tip_builder *b, const char *key, const char *value)
{
    BUILD_CALL(b, put_meta(b, ST_VMETA, key, value));
}

/*
 * Where the last variable of buf[0..n) starts: its ";", or the "[" that opens
 * the block. Outside an escape these two bytes are always structure: values
 * are escaped, and names, groups, keys, units and numbers cannot hold them.
 */
static size_t last_var_start(const char *p, size_t n)
{
    size_t i = 0, at = 0;

    while (i < n) {
        if (p[i] == '\\') {
            i += 2;
            continue;
        }
        if (p[i] == ';' || p[i] == '[')
            at = i;
        i++;
    }
    return at;
}

void sp_tip_build_drop_last(struct sp_tip_builder *b)
{
    if (b == NULL || b->buf == NULL || b->nvars == 0)
        return;
    b->len = b->var_start;
    b->buf[b->len] = '\0';
    b->nvars--;
    /* The one before is now the last: found again, so a second drop works. */
    b->var_start = b->nvars ? last_var_start(b->buf, b->len) : 0;
    b->nmeta = 0;
    b->loc = 0;
    b->stage = ST_DONE;
    b->err = SP_OK;
}

int sp_tip_build_end(struct sp_tip_builder *b, size_t *len)
{
    int rc;

    if (b == NULL || len == NULL)
        return SP_ERR_INVAL;
    if (b->err)
        return b->err;
    if (b->stage == ST_CLOSED) {
        *len = b->len; /* a second call closes nothing more */
        return SP_OK;
    }
    if (b->nvars == 0) {
        b->err = SP_ERR_PAYLOAD; /* "[]" is not a body */
        return b->err;
    }
    if ((rc = close_meta(b)) < 0) {
        b->err = rc;
        return rc;
    }
    /* put() always left room for these bytes (see tail_len). */
    b->buf[b->len++] = ']';
    b->buf[b->len] = '\0';
    b->stage = ST_CLOSED;
    *len = b->len;
    return SP_OK;
}
