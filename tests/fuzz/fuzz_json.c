/*
 * fuzz_json.c - libFuzzer target for json_parse(), the reader of every JSON
 * payload, device tag, analysis env and record metadata, and for the writer
 * that prints what it read (json_write, json_write_string, utf8_valid).
 *
 * Each input is one text, in a heap block of exactly its size. A text that
 * parses gives a tree that must be well formed (member counts, keys only in
 * objects, NUL-free valid UTF-8 strings, finite numbers, nesting within
 * SP_LIMIT_JSON_DEPTH, json_get finds the last duplicate); json_write prints
 * it in a compact form that must parse back to the same tree and print the
 * same bytes again. Any input is also checked against an independent UTF-8
 * decoder and written as a string literal that must read back as itself.
 * Seeds: tests/fuzz/corpus/fuzz_json/ (from tests/data/json/).
 */
#include "fuzz.h"
#include "base/errors.h"
#include "base/json.h"
#include "sealpipe.h"
#include "base/sp_limits.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define FUZZ_ARENA (64u * 1024 * 1024)

/*
 * RFC 3629 the long way: decode each sequence to its code point and refuse
 * overlongs (smaller than the least code point of its length), surrogates
 * and anything past U+10FFFF.
 */
static int utf8_reference(const uint8_t *s, size_t n)
{
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    size_t i = 0;

    while (i < n) {
        uint8_t c = s[i];
        size_t len = c < 0x80             ? 1
                     : (c & 0xE0) == 0xC0 ? 2
                     : (c & 0xF0) == 0xE0 ? 3
                     : (c & 0xF8) == 0xF0 ? 4
                                          : 0;
        uint32_t cp;

        if (!len || n - i < len)
            return 0;
        cp = len == 1 ? c : (uint32_t)(c & (0x7F >> len));
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < least[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

static void check_string(const char *s, size_t n)
{
    FUZZ_CHECK(s != NULL);
    FUZZ_CHECK(strlen(s) == n); /* no NUL inside, terminated */
    FUZZ_CHECK(sp__utf8_valid(s, n) && utf8_reference((const uint8_t *)s, n));
}

/* The tree is what json.h promises; returns the deepest container nesting. */
static int check_tree(const struct json *v)
{
    int deepest = 0;
    size_t count = 0;

    switch (v->type) {
    case JSON_NULL:
    case JSON_FALSE:
    case JSON_TRUE:
        FUZZ_CHECK(v->child == NULL);
        return 0;
    case JSON_NUMBER:
        FUZZ_CHECK(isfinite(v->number));
        return 0;
    case JSON_STRING:
        check_string(v->str, v->len);
        return 0;
    case JSON_ARRAY:
    case JSON_OBJECT:
        break;
    default:
        FUZZ_FAIL("unknown node type");
    }
    for (const struct json *m = v->child; m; m = m->next, count++) {
        int d = check_tree(m);
        if (d > deepest)
            deepest = d;
        if (v->type == JSON_ARRAY) {
            FUZZ_CHECK(m->key == NULL);
            continue;
        }
        check_string(m->key, m->keylen);
        /* json_get: the last member of that name. */
        const struct json *last = m;
        for (const struct json *o = m->next; o; o = o->next)
            if (o->keylen == m->keylen && memcmp(o->key, m->key, m->keylen) == 0)
                last = o;
        FUZZ_CHECK(json_get(v, m->key) == last);
    }
    FUZZ_CHECK(count == v->len);
    if (v->type == JSON_ARRAY)
        FUZZ_CHECK(json_get(v, "") == NULL);
    return deepest + 1;
}

static int same_tree(const struct json *a, const struct json *b)
{
    if (a->type != b->type || a->len != b->len || a->keylen != b->keylen)
        return 0;
    if (a->keylen && memcmp(a->key, b->key, a->keylen) != 0)
        return 0;
    if (a->type == JSON_NUMBER)
        return a->number == b->number; /* -0 prints as 0: equal */
    if (a->type == JSON_STRING)
        return memcmp(a->str, b->str, a->len) == 0;
    for (a = a->child, b = b->child; a && b; a = a->next, b = b->next)
        if (!same_tree(a, b))
            return 0;
    return a == NULL && b == NULL;
}

/* Compact form: parses back to the same tree, and prints the same bytes. */
static void round_trip(struct arena *ar, const struct json *v)
{
    struct buf out, again;
    struct json *w;
    char err[256];

    buf_init(&out, FUZZ_ARENA);
    buf_init(&again, FUZZ_ARENA);
    FUZZ_CHECK(json_write(&out, v) == 0);
    if (json_parse(ar, out.p, out.len, &w, err, sizeof err) != 0) {
        fprintf(stderr, "written: %.*s\nparse: %s\n", (int)out.len, out.p, err);
        FUZZ_FAIL("json_write output does not parse");
    }
    FUZZ_CHECK(same_tree(v, w));
    FUZZ_CHECK(json_write(&again, w) == 0);
    FUZZ_CHECK(again.len == out.len && memcmp(again.p, out.p, out.len) == 0);
    buf_cleanup(&out);
    buf_cleanup(&again);
}

/* Any bytes written as a string literal read back: the same bytes when they
 * are valid UTF-8; otherwise each bad byte as the character of its value. */
static void string_literal(struct arena *ar, const uint8_t *data, size_t size)
{
    struct buf out;
    struct json *w;
    char err[256];

    if (memchr(data, 0, size)) /* \u0000 is refused by the reader, by design */
        return;
    buf_init(&out, FUZZ_ARENA);
    FUZZ_CHECK(json_write_string(&out, (const char *)data, size) == 0);
    if (json_parse(ar, out.p, out.len, &w, err, sizeof err) != 0) {
        fprintf(stderr, "written: %.*s\nparse: %s\n", (int)out.len, out.p, err);
        FUZZ_FAIL("json_write_string output does not parse");
    }
    FUZZ_CHECK(w->type == JSON_STRING);
    check_string(w->str, w->len);
    if (utf8_reference(data, size))
        FUZZ_CHECK(w->len == size && memcmp(w->str, data, size) == 0);
    else
        FUZZ_CHECK(w->len > size);
    buf_cleanup(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *p = fuzz_copy(data, size);
    struct arena ar;
    struct json *v = NULL;
    char err[256];
    int rc;

    FUZZ_CHECK(sp__utf8_valid(p, size) == utf8_reference(data, size));
    arena_init(&ar, FUZZ_ARENA);
    memset(err, 'x', sizeof err);
    rc = json_parse(&ar, p, size, &v, err, sizeof err);
    FUZZ_CHECK(memchr(err, '\0', sizeof err) != NULL);
    if (rc == 0) {
        FUZZ_CHECK(v != NULL && err[0] == '\0');
        FUZZ_CHECK(check_tree(v) <= SP_LIMIT_JSON_DEPTH);
        round_trip(&ar, v);
    } else {
        FUZZ_CHECK(rc == SP_ERR_PAYLOAD || rc == SP_ERR_NOMEM);
        FUZZ_CHECK(strncmp(err, "json: offset ", 13) == 0);
    }
    string_literal(&ar, data, size);
    arena_cleanup(&ar);
    free(p);
    return 0;
}
