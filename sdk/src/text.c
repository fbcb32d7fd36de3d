/*
 * text.c - the text helpers of sp_text.h: UTF-8 validation, JSON string
 * escaping and shortest round-trip number formatting, written once for the
 * TagoTiP codec (tip_*.c) and the daemon's JSON reader and writer.
 */
#include "sp_text.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/*
 * The second byte of a multi-byte sequence narrows the range that keeps it
 * well-formed: E0 and F0 would be overlong below A0 and 90, ED above 9F is a
 * surrogate, F4 above 8F is past U+10FFFF (RFC 3629 §4).
 */
size_t sp__utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0], lo = 0x80, hi = 0xbf;
    size_t need, i;

    if (c < 0x80)
        return 1;
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
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return need;
}

int sp__utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, k;

    while (i < n) {
        k = sp__utf8_len(u + i, n - i);
        if (k == 0)
            return 0;
        i += k;
    }
    return 1;
}

/* The escape of an ASCII byte, or NULL when it stands for itself. */
static const char *json_escape_ascii(unsigned char c)
{
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    default:
        return NULL;
    }
}

size_t sp__json_plain_run(const char *s, size_t n, char esc[SP__JSON_ESC_MAX])
{
    const unsigned char *u = (const unsigned char *)s;
    const char *named;
    size_t i = 0, k;

    while (i < n) {
        unsigned char c = u[i];
        if (c >= 0x80) {
            if ((k = sp__utf8_len(u + i, n - i)) == 0)
                break;
            i += k;
        } else if ((named = json_escape_ascii(c)) != NULL) {
            snprintf(esc, SP__JSON_ESC_MAX, "%s", named);
            return i;
        } else if (c < 0x20) {
            break;
        } else {
            i++;
        }
    }
    if (i < n)
        snprintf(esc, SP__JSON_ESC_MAX, "\\u%04x", u[i]);
    return i;
}

/* Integers that a double holds exactly: printed without a fraction. */
#define EXACT_INT_MAX 9007199254740992.0 /* 2^53 */

int sp__double_format(double v, int plain, char *out, size_t cap)
{
    int n = -1, d;

    if (!isfinite(v) || out == NULL || cap == 0)
        return -1;
    if (v == 0)
        v = 0; /* -0 would print as "-0", which reads back fine but looks odd */
    /* Range first: the cast is defined only for values that fit. No libm. */
    if (v >= -EXACT_INT_MAX && v <= EXACT_INT_MAX && v == (double)(long long)v) {
        n = snprintf(out, cap, "%.0f", v);
    } else if (plain) {
        for (d = 0; d <= 330; d++) {
            n = snprintf(out, cap, "%.*f", d, v);
            if (n < 0 || (size_t)n >= cap || strtod(out, NULL) == v)
                break;
        }
    } else {
        for (d = 15; d <= 17; d++) {
            n = snprintf(out, cap, "%.*g", d, v);
            if (n < 0 || (size_t)n >= cap || d == 17 || strtod(out, NULL) == v)
                break;
        }
    }
    return n < 0 || (size_t)n >= cap ? -1 : n;
}
