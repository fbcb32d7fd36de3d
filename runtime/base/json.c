/*
 * json.c - strict RFC 8259 reader into an arena tree, and a compact writer
 * (see json.h).
 *
 * Called by record.c (TagoIO payloads, metadata), the registry (device tags
 * and params), the Lua host, the TagoTiP server (metadata), analyses.c
 * (NAME.env as a JSON object) and the registry commands (--json). The reader
 * is a recursive-descent parser whose recursion is bounded by
 * SP_LIMIT_JSON_DEPTH; it never reads past the length
 * it is given and never needs the input to be NUL-terminated. Every node and
 * string lives in the caller's arena, so a failed parse only wastes arena
 * space that the next arena_reset() returns. No global state; thread-safe as
 * long as each thread uses its own arena.
 */
#include "json.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "sp_limits.h"
#include "sp_text.h"

/* Longest number token we hand to strtod; longer ones are refused rather
 * than silently truncated. 2^53 needs 16 digits; 400 leaves room for long
 * decimal expansions some encoders emit. */
#define JSON_NUMBER_MAX 400

struct parser {
    struct arena *a;
    const unsigned char *s;
    size_t len;
    size_t pos;
    int depth;
    char *err;
    size_t errlen;
};

static int fail(struct parser *p, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, int rc, const char *fmt, ...)
{
    if (p->err && p->errlen) {
        int n = snprintf(p->err, p->errlen, "json: offset %zu: ", p->pos);
        if (n >= 0 && (size_t)n < p->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return rc;
}

static int nomem(struct parser *p)
{
    return fail(p, SP_ERR_NOMEM, "out of memory");
}

static size_t utf8_put(char *out, uint32_t cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static void skip_ws(struct parser *p)
{
    while (p->pos < p->len) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        p->pos++;
    }
}

/* Reads the four hex digits of a \u escape at p->pos (just after the 'u'). */
static int read_hex4(struct parser *p, uint32_t *out)
{
    uint8_t v[2];

    if (p->len - p->pos < 4)
        return fail(p, SP_ERR_PAYLOAD, "truncated \\u escape");
    if (sp_hex_decode((const char *)p->s + p->pos, 4, v, sizeof v) != 2)
        return fail(p, SP_ERR_PAYLOAD, "bad hex digit in \\u escape");
    p->pos += 4;
    *out = (uint32_t)v[0] << 8 | v[1];
    return 0;
}

/* Decodes one escape sequence at p->pos (just after the backslash) into out;
 * *n receives the bytes written (at most 4). */
static int read_escape(struct parser *p, char *out, size_t *n)
{
    uint32_t cp = 0, lo = 0; /* set by read_hex4; gcc -O3 cannot tell */
    int rc;

    if (p->pos >= p->len)
        return fail(p, SP_ERR_PAYLOAD, "unterminated string");
    unsigned char c = p->s[p->pos++];
    switch (c) {
    case '"':
    case '\\':
    case '/':
        out[0] = (char)c;
        *n = 1;
        return 0;
    case 'b':
        out[0] = '\b';
        *n = 1;
        return 0;
    case 'f':
        out[0] = '\f';
        *n = 1;
        return 0;
    case 'n':
        out[0] = '\n';
        *n = 1;
        return 0;
    case 'r':
        out[0] = '\r';
        *n = 1;
        return 0;
    case 't':
        out[0] = '\t';
        *n = 1;
        return 0;
    case 'u':
        break;
    default:
        p->pos--;
        return fail(p, SP_ERR_PAYLOAD, "invalid escape '\\%c'",
                    c >= 0x20 && c < 0x7F ? (char)c : '?');
    }
    if ((rc = read_hex4(p, &cp)))
        return rc;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
        return fail(p, SP_ERR_PAYLOAD, "lone low surrogate in \\u escape");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
            return fail(p, SP_ERR_PAYLOAD, "high surrogate not followed by a low one");
        p->pos += 2;
        if ((rc = read_hex4(p, &lo)))
            return rc;
        if (lo < 0xDC00 || lo > 0xDFFF)
            return fail(p, SP_ERR_PAYLOAD, "high surrogate not followed by a low one");
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (cp == 0)
        return fail(p, SP_ERR_PAYLOAD, "NUL character in string");
    *n = utf8_put(out, cp);
    return 0;
}

/*
 * Reads a string literal at p->pos (on the opening quote). The decoded text
 * is never longer than the literal, so one allocation of the literal's length
 * suffices; the closing quote is found first to size it.
 */
static int parse_string(struct parser *p, const char **out, size_t *outlen)
{
    size_t start = ++p->pos, end = start;
    int rc;

    while (end < p->len && p->s[end] != '"') {
        if (p->s[end] == '\\')
            end++;
        end++;
    }
    if (end >= p->len)
        return fail(p, SP_ERR_PAYLOAD, "unterminated string");
    char *dst = arena_alloc(p->a, end - start + 1);
    if (!dst)
        return nomem(p);
    size_t n = 0;
    while (p->pos < end) {
        unsigned char c = p->s[p->pos];
        if (c == '\\') {
            size_t k = 0;
            p->pos++;
            if ((rc = read_escape(p, dst + n, &k)))
                return rc;
            n += k;
        } else if (c < 0x20) {
            return fail(p, SP_ERR_PAYLOAD,
                        c ? "unescaped control character in string" : "NUL character in string");
        } else if (c < 0x80) {
            dst[n++] = (char)c;
            p->pos++;
        } else {
            size_t k = sp__utf8_len(p->s + p->pos, end - p->pos);
            if (!k)
                return fail(p, SP_ERR_PAYLOAD, "invalid UTF-8 in string");
            memcpy(dst + n, p->s + p->pos, k);
            n += k;
            p->pos += k;
        }
    }
    /* An escape may have consumed the quote we stopped at ("\\u" at the end
     * is caught by read_hex4, but keep the invariant explicit). */
    if (p->pos != end)
        return fail(p, SP_ERR_PAYLOAD, "unterminated string");
    p->pos++; /* closing quote */
    dst[n] = '\0';
    *out = dst;
    *outlen = n;
    return 0;
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Number grammar of RFC 8259 section 6, then strtod on a bounded copy. */
static int parse_number(struct parser *p, double *out)
{
    size_t start = p->pos, i = p->pos;
    char tmp[JSON_NUMBER_MAX + 1];

    if (i < p->len && p->s[i] == '-')
        i++;
    if (i >= p->len || !is_digit(p->s[i]))
        return fail(p, SP_ERR_PAYLOAD, "invalid number");
    if (p->s[i] == '0') {
        i++;
        if (i < p->len && is_digit(p->s[i])) {
            p->pos = i;
            return fail(p, SP_ERR_PAYLOAD, "leading zero in number");
        }
    } else {
        while (i < p->len && is_digit(p->s[i]))
            i++;
    }
    if (i < p->len && p->s[i] == '.') {
        i++;
        if (i >= p->len || !is_digit(p->s[i])) {
            p->pos = i;
            return fail(p, SP_ERR_PAYLOAD, "digit expected after decimal point");
        }
        while (i < p->len && is_digit(p->s[i]))
            i++;
    }
    if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
        i++;
        if (i < p->len && (p->s[i] == '+' || p->s[i] == '-'))
            i++;
        if (i >= p->len || !is_digit(p->s[i])) {
            p->pos = i;
            return fail(p, SP_ERR_PAYLOAD, "digit expected in exponent");
        }
        while (i < p->len && is_digit(p->s[i]))
            i++;
    }
    if (i - start > JSON_NUMBER_MAX)
        return fail(p, SP_ERR_PAYLOAD, "number longer than %d characters", JSON_NUMBER_MAX);
    memcpy(tmp, p->s + start, i - start);
    tmp[i - start] = '\0';
    double v = strtod(tmp, NULL);
    if (!isfinite(v))
        return fail(p, SP_ERR_PAYLOAD, "number out of range");
    p->pos = i;
    *out = v;
    return 0;
}

static int literal(struct parser *p, const char *word, size_t n)
{
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return fail(p, SP_ERR_PAYLOAD, "invalid literal");
    p->pos += n;
    return 0;
}

static int parse_value(struct parser *p, struct json **out);

/* Arrays and objects share one loop; members of an object carry a key. */
static int parse_container(struct parser *p, struct json *v, int is_object)
{
    char close = is_object ? '}' : ']';
    struct json **tail = &v->child;
    int rc;

    if (++p->depth > SP_LIMIT_JSON_DEPTH)
        return fail(p, SP_ERR_PAYLOAD, "nesting deeper than %d", SP_LIMIT_JSON_DEPTH);
    p->pos++; /* opening bracket */
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        p->depth--;
        return 0;
    }
    for (;;) {
        const char *key = NULL;
        size_t keylen = 0;
        struct json *m;

        skip_ws(p);
        if (is_object) {
            if (p->pos >= p->len || p->s[p->pos] != '"')
                return fail(p, SP_ERR_PAYLOAD, "object key expected");
            if ((rc = parse_string(p, &key, &keylen)))
                return rc;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':')
                return fail(p, SP_ERR_PAYLOAD, "':' expected");
            p->pos++;
        }
        if ((rc = parse_value(p, &m)))
            return rc;
        m->key = key;
        m->keylen = keylen;
        *tail = m;
        tail = &m->next;
        v->len++;
        skip_ws(p);
        if (p->pos >= p->len)
            return fail(p, SP_ERR_PAYLOAD, "unexpected end of input");
        if (p->s[p->pos] == ',') {
            p->pos++;
            continue;
        }
        if (p->s[p->pos] == close) {
            p->pos++;
            break;
        }
        return fail(p, SP_ERR_PAYLOAD, is_object ? "',' or '}' expected" : "',' or ']' expected");
    }
    p->depth--;
    return 0;
}

static int parse_value(struct parser *p, struct json **out)
{
    int rc = 0;

    skip_ws(p);
    if (p->pos >= p->len)
        return fail(p, SP_ERR_PAYLOAD, "unexpected end of input");
    struct json *v = arena_calloc(p->a, 1, sizeof(*v));
    if (!v)
        return nomem(p);
    switch (p->s[p->pos]) {
    case '{':
        v->type = JSON_OBJECT;
        rc = parse_container(p, v, 1);
        break;
    case '[':
        v->type = JSON_ARRAY;
        rc = parse_container(p, v, 0);
        break;
    case '"':
        v->type = JSON_STRING;
        rc = parse_string(p, &v->str, &v->len);
        break;
    case 't':
        v->type = JSON_TRUE;
        rc = literal(p, "true", 4);
        break;
    case 'f':
        v->type = JSON_FALSE;
        rc = literal(p, "false", 5);
        break;
    case 'n':
        v->type = JSON_NULL;
        rc = literal(p, "null", 4);
        break;
    default:
        if (p->s[p->pos] == '-' || is_digit(p->s[p->pos])) {
            v->type = JSON_NUMBER;
            rc = parse_number(p, &v->number);
        } else {
            rc = fail(p, SP_ERR_PAYLOAD, "unexpected character");
        }
    }
    if (rc)
        return rc;
    *out = v;
    return 0;
}

int json_parse(struct arena *a, const char *text, size_t len, struct json **out, char *err,
               size_t errlen)
{
    struct parser p = {a, (const unsigned char *)text, len, 0, 0, err, errlen};
    struct json *v;
    int rc;

    if (err && errlen)
        err[0] = '\0';
    if (!text && len)
        return fail(&p, SP_ERR_PAYLOAD, "no input");
    if ((rc = parse_value(&p, &v)))
        return rc;
    skip_ws(&p);
    if (p.pos != p.len)
        return fail(&p, SP_ERR_PAYLOAD, "trailing characters after the value");
    *out = v;
    return 0;
}

const struct json *json_get(const struct json *obj, const char *key)
{
    const struct json *found = NULL;

    if (!obj || obj->type != JSON_OBJECT || !key)
        return NULL;
    size_t n = strlen(key);
    for (const struct json *m = obj->child; m; m = m->next)
        if (m->key && m->keylen == n && memcmp(m->key, key, n) == 0)
            found = m;
    return found;
}

/* ------------------------------------------------------------------------ */
/* Writers                                                                  */

int json_write_string(struct buf *b, const char *s, size_t n)
{
    char esc[SP__JSON_ESC_MAX];
    size_t run;
    int rc;

    if ((rc = buf_putc(b, '"')))
        return rc;
    /* Runs of bytes that need no escaping go in one append. */
    while (n > 0) {
        run = sp__json_plain_run(s, n, esc);
        if (run && (rc = buf_append(b, s, run)))
            return rc;
        if (run == n)
            break;
        if ((rc = buf_puts(b, esc)))
            return rc;
        s += run + 1;
        n -= run + 1;
    }
    return buf_putc(b, '"');
}

/*
 * Integers up to 2^53 are exact in a double and are printed without a
 * fraction or exponent, so Unix milliseconds and counters read naturally.
 * Other values get the shortest of %.15g/%.16g/%.17g that reads back to the
 * same double, so 0.1 stays "0.1" while every value still round-trips.
 */
int json_write_number(struct buf *b, double v)
{
    char tmp[40];
    int n = sp__double_format(v, 0, tmp, sizeof tmp);

    return n < 0 ? buf_puts(b, "null") : buf_append(b, tmp, (size_t)n);
}

int json_write(struct buf *b, const struct json *v)
{
    int rc = 0;

    if (!v)
        return buf_puts(b, "null");
    switch (v->type) {
    case JSON_NULL:
        return buf_puts(b, "null");
    case JSON_FALSE:
        return buf_puts(b, "false");
    case JSON_TRUE:
        return buf_puts(b, "true");
    case JSON_NUMBER:
        return json_write_number(b, v->number);
    case JSON_STRING:
        return json_write_string(b, v->str ? v->str : "", v->str ? v->len : 0);
    case JSON_ARRAY:
    case JSON_OBJECT:
        break;
    default:
        return SP_ERR_INVAL;
    }
    int is_object = v->type == JSON_OBJECT;
    if ((rc = buf_putc(b, is_object ? '{' : '[')))
        return rc;
    for (const struct json *m = v->child; m; m = m->next) {
        if (m != v->child && (rc = buf_putc(b, ',')))
            return rc;
        if (is_object) {
            if ((rc = json_write_string(b, m->key ? m->key : "", m->key ? m->keylen : 0)))
                return rc;
            if ((rc = buf_putc(b, ':')))
                return rc;
        }
        if ((rc = json_write(b, m)))
            return rc;
    }
    return buf_putc(b, is_object ? '}' : ']');
}
