/*
 * tip.c - TagoTiP bodies (TagoTiP.md §4.4-§4.5, §6, §12, §14): splitting a
 * headless inner frame and an MQTT payload's "!N|" prefix, parsing a PUSH
 * body into spans over the caller's bytes, escaping and unescaping values, and
 * a small builder devices use to write bodies.
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

/* ">x" 1*(2HEXDIG) / ">b" 1*BASE64CHAR */
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
    memset(out, 0, offsetof(struct sp_tip_body, vars));
    out->passthrough = kind;
    out->data.p = p + 2;
    out->data.n = n - 2;
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

int sp_tip_parse_body(const char *body, size_t len, struct sp_tip_body *out)
{
    int rc;

    if ((body == NULL && len != 0) || out == NULL)
        return SP_ERR_INVAL;
    /* One trailing LF is the frame terminator, not part of the body (§3). */
    if (len > 0 && body[len - 1] == '\n')
        len--;
    if (len > SP_MAX_FRAME)
        return SP_ERR_TOOLARGE;
    if (len == 0)
        return SP_ERR_PAYLOAD;
    if (body[0] == '>')
        return parse_passthrough(body, len, out);
    if ((rc = parse_structured(body, len, NULL)) < 0)
        return rc;
    return parse_structured(body, len, out);
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
/* Builder                                                                  */
/* ------------------------------------------------------------------------ */

void sp_tip_build_init(struct sp_tip_builder *b, char *buf, size_t cap)
{
    b->buf = buf;
    b->cap = cap;
    b->len = 0;
    b->nvars = 0;
    b->err = (buf == NULL || cap == 0) ? SP_ERR_INVAL : SP_OK;
    if (b->err == SP_OK)
        buf[0] = '\0';
}

/* Appends n bytes, keeping room for the closing "]" and the NUL. */
static int put(struct sp_tip_builder *b, const char *s, size_t n)
{
    if (b->len + n + 2 > b->cap)
        return SP_ERR_BUFSIZE;
    if (b->len + n + 1 > SP_MAX_FRAME)
        return SP_ERR_TOOLARGE;
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    return SP_OK;
}

static int put_str(struct sp_tip_builder *b, const char *s)
{
    return put(b, s, strlen(s));
}

/* Starts a variable: separator, checked name, operator. */
static int begin_var(struct sp_tip_builder *b, const char *name, const char *op)
{
    size_t i, n;
    int rc;

    if (name == NULL)
        return SP_ERR_INVAL;
    n = strlen(name);
    if (n == 0 || n > SP_MAX_NAME)
        return SP_ERR_PAYLOAD;
    for (i = 0; i < n; i++)
        if (!is_namechar((unsigned char)name[i]))
            return SP_ERR_PAYLOAD;
    if (b->nvars >= SP_MAX_VARS)
        return SP_ERR_PAYLOAD;
    if ((rc = put(b, b->nvars ? ";" : "[", 1)) < 0 || (rc = put(b, name, n)) < 0)
        return rc;
    return put_str(b, op);
}

static int put_unit(struct sp_tip_builder *b, const char *unit)
{
    struct scan s;
    struct sp_span sp;
    int rc;

    if (unit == NULL || unit[0] == '\0')
        return SP_OK;
    s.p = unit;
    s.n = strlen(unit);
    s.i = 0;
    if (scan_text(&s, TEXT_UNIT, &sp) < 0 || s.i != s.n)
        return SP_ERR_PAYLOAD;
    if ((rc = put(b, "#", 1)) < 0)
        return rc;
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
    for (d = 0; d <= 330; d++) {
        n = snprintf(buf, cap, "%.*f", d, v);
        if (n < 0 || (size_t)n >= cap)
            return SP_ERR_PAYLOAD;
        if (strtod(buf, NULL) == v)
            return n;
    }
    return n;
}

/* Runs one add: an error sticks and rolls the buffer back to before the add. */
static void finish_add(struct sp_tip_builder *b, size_t mark, int rc)
{
    if (rc < 0) {
        b->err = rc;
        b->len = mark;
        b->buf[mark] = '\0';
        return;
    }
    b->nvars++;
}

void sp_tip_add_number(struct sp_tip_builder *b, const char *name, double v, const char *unit)
{
    char num[700];
    size_t mark;
    int n, rc;

    if (b == NULL || b->err)
        return;
    mark = b->len;
    n = format_number(v, num, sizeof num);
    rc = n < 0 ? n : begin_var(b, name, ":=");
    if (rc == SP_OK)
        rc = put(b, num, (size_t)n);
    if (rc == SP_OK)
        rc = put_unit(b, unit);
    finish_add(b, mark, rc);
}

void sp_tip_add_string(struct sp_tip_builder *b, const char *name, const char *v, const char *unit)
{
    size_t mark, room;
    int rc, n = 0;

    if (b == NULL || b->err)
        return;
    mark = b->len;
    rc = v == NULL ? SP_ERR_INVAL : v[0] == '\0' ? SP_ERR_PAYLOAD : begin_var(b, name, "=");
    if (rc == SP_OK) {
        /* Escape in place; keep one byte for "]" besides the NUL. */
        room = b->cap - b->len;
        n = room < 2 ? SP_ERR_BUFSIZE : sp_tip_escape(v, strlen(v), b->buf + b->len, room - 1);
        if (n < 0)
            rc = n;
        else if (b->len + (size_t)n + 1 > SP_MAX_FRAME)
            rc = SP_ERR_TOOLARGE;
        else
            b->len += (size_t)n;
    }
    if (rc == SP_OK)
        rc = put_unit(b, unit);
    finish_add(b, mark, rc);
}

void sp_tip_add_bool(struct sp_tip_builder *b, const char *name, int v)
{
    size_t mark;
    int rc;

    if (b == NULL || b->err)
        return;
    mark = b->len;
    rc = begin_var(b, name, "?=");
    if (rc == SP_OK)
        rc = put_str(b, v ? "true" : "false");
    finish_add(b, mark, rc);
}

int sp_tip_build_end(struct sp_tip_builder *b, size_t *len)
{
    if (b == NULL || len == NULL)
        return SP_ERR_INVAL;
    if (b->err)
        return b->err;
    if (b->nvars == 0) {
        b->err = SP_ERR_PAYLOAD; /* "[]" is not a body */
        return b->err;
    }
    /* put() always left room for these two bytes. */
    b->buf[b->len++] = ']';
    b->buf[b->len] = '\0';
    *len = b->len;
    return SP_OK;
}
