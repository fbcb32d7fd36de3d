/*
 * json.h - a small, strict JSON reader and writer for device payloads.
 *
 * The reader builds a read-only tree in an arena (so a whole batch is freed at
 * once) and is bounded: nesting depth SP_LIMIT_JSON_DEPTH, input length given
 * by the caller. It accepts RFC 8259 JSON only (no comments, no trailing
 * commas, no NaN), requires valid UTF-8, decodes \u escapes including
 * surrogate pairs, and rejects a NUL inside strings. Duplicate object keys are
 * kept in order; json_get() returns the last one.
 *
 * Strings in the tree are NUL-terminated copies with explicit lengths.
 */
#ifndef SP_JSON_H
#define SP_JSON_H

#include <stddef.h>

#include "arena.h"
#include "errors.h"
#include "buf.h"
#include "sp_text.h" /* sp__utf8_valid(), for the modules that check text */

enum json_type {
    JSON_NULL,
    JSON_FALSE,
    JSON_TRUE,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT
};

struct json {
    enum json_type type;
    double number;   /* JSON_NUMBER */
    const char *str; /* JSON_STRING: decoded, NUL-terminated */
    size_t len;      /* JSON_STRING: bytes; ARRAY/OBJECT: member count */
    const char *key; /* member of an object: its decoded key */
    size_t keylen;
    struct json *child; /* ARRAY/OBJECT: first member */
    struct json *next;  /* next sibling */
};

/*
 * Parses len bytes of text. Returns 0 and sets *out, or SP_ERR_PAYLOAD with a
 * message naming the byte offset in err (may be NULL), or SP_ERR_NOMEM when
 * the arena is exhausted.
 */
int json_parse(struct arena *a, const char *text, size_t len, struct json **out, char *err,
               size_t errlen) __attribute__((warn_unused_result));

/* Last member named key of an object, or NULL (also when obj is not an object). */
const struct json *json_get(const struct json *obj, const char *key);

/* Appends s as a JSON string literal (quoted, escaped). Invalid UTF-8 bytes
 * are written as \u00XX of the byte so the output is always valid JSON. */
int json_write_string(struct buf *b, const char *s, size_t n) __attribute__((warn_unused_result));
/* Appends a number: integers exactly, others with up to 17 significant digits;
 * NaN and infinities as null. */
int json_write_number(struct buf *b, double v) __attribute__((warn_unused_result));
/* Appends the tree v (compact form). */
int json_write(struct buf *b, const struct json *v) __attribute__((warn_unused_result));

#endif
