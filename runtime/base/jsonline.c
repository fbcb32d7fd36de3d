/*
 * jsonline.c - one JSON object on one line in a fixed buffer (jsonline.h).
 *
 * Every write checks the room left before the tail JSONLINE_TAIL keeps for
 * the end, so jsonline_end() can always close the object.
 */
#include "jsonline.h"

#include <string.h>

#include "sp_text.h"

/* Bytes that may still be written before the kept tail. */
static size_t room(const struct jsonline *j)
{
    return j->cap - JSONLINE_TAIL - j->len;
}

static void put(struct jsonline *j, const char *s, size_t n)
{
    memcpy(j->p + j->len, s, n);
    j->len += n;
}

/* The separator, the key and the colon; 0, or -1 (the field is left out). */
static int key(struct jsonline *j, const char *k, size_t value_min)
{
    size_t kn = strlen(k);

    if (room(j) < kn + 4 + value_min) {
        j->cut = 1;
        return -1;
    }
    if (j->fields++)
        put(j, ",", 1);
    put(j, "\"", 1);
    put(j, k, kn); /* keys are ours: plain ASCII */
    put(j, "\":", 2);
    return 0;
}

void jsonline_begin(struct jsonline *j, char *buf, size_t cap)
{
    j->p = buf;
    j->cap = cap;
    j->len = 0;
    j->cut = 0;
    j->fields = 0;
    put(j, "{", 1);
}

/* The longest prefix of s[0..n) of at most max bytes that ends on a UTF-8
 * character boundary. */
static size_t utf8_prefix(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    return max;
}

/*
 * Appends s[0..n) as a JSON string (quoted, escaped), keeping keep bytes of
 * room after it; what does not fit is cut at a character boundary. Needs
 * room for its two quotes and keep. Returns 1 if s went in whole.
 */
static int put_string(struct jsonline *j, const char *s, size_t n, size_t keep)
{
    char esc[SP__JSON_ESC_MAX];
    int whole = 1;

    put(j, "\"", 1);
    while (n > 0) {
        size_t run = sp__json_plain_run(s, n, esc);
        size_t fit = utf8_prefix(s, run, room(j) - 1 - keep);
        put(j, s, fit);
        if (fit < run) {
            whole = 0;
            break;
        }
        if (run == n)
            break;
        size_t en = strlen(esc);
        if (room(j) - 1 - keep < en) {
            whole = 0;
            break;
        }
        put(j, esc, en);
        s += run + 1;
        n -= run + 1;
    }
    put(j, "\"", 1);
    return whole;
}

void jsonline_strn(struct jsonline *j, const char *k, const char *s, size_t n)
{
    if (s && key(j, k, 2) == 0 && !put_string(j, s, n, 0))
        j->cut = 1;
}

void jsonline_strs(struct jsonline *j, const char *k, const char *const *v, size_t n)
{
    if (key(j, k, 2))
        return;
    put(j, "[", 1);
    for (size_t i = 0; i < n; i++) {
        size_t mark = j->len;
        /* An element goes in whole or not at all: a cut name would mislead. */
        if (room(j) < (i ? 1u : 0u) + 3) {
            j->cut = 1;
            break;
        }
        if (i)
            put(j, ",", 1);
        if (!put_string(j, v[i], strlen(v[i]), 1)) {
            j->len = mark;
            j->cut = 1;
            break;
        }
    }
    put(j, "]", 1);
}

void jsonline_str(struct jsonline *j, const char *k, const char *s)
{
    jsonline_strn(j, k, s, s ? strlen(s) : 0);
}

/* v in decimal at the end of num[24]; returns where it starts (no printf:
 * events are made per message). */
static char *decimal(int64_t v, char num[24])
{
    char *p = num + 24;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do
        *--p = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (v < 0)
        *--p = '-';
    return p;
}

void jsonline_int(struct jsonline *j, const char *k, int64_t v)
{
    char num[24], *p = decimal(v, num);
    size_t n = (size_t)(num + 24 - p);

    if (key(j, k, n) == 0)
        put(j, p, n);
}

void jsonline_bool(struct jsonline *j, const char *k, int v)
{
    const char *t = v ? "true" : "false";

    if (key(j, k, strlen(t)) == 0)
        put(j, t, strlen(t));
}

void jsonline_raw(struct jsonline *j, const char *k, const char *json, size_t n)
{
    if (key(j, k, n) == 0)
        put(j, json, n);
}

size_t jsonline_end(struct jsonline *j)
{
    if (j->cut) {
        const char *t = j->fields ? ",\"cut\":true" : "\"cut\":true";
        put(j, t, strlen(t));
    }
    put(j, "}", 1);
    j->p[j->len] = '\0';
    return j->len;
}
