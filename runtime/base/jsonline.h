/*
 * jsonline.h - one JSON object on one line, written into a fixed buffer.
 *
 * The events the broker plugin sends the daemon and the inspector's events
 * (core/inspect.h) are such lines. Nothing is allocated, so the broker's
 * thread and the pipeline's can build one per event for the price of a few
 * copies. A string that does not fit is cut at a character boundary and a
 * field that does not fit at all is left out; either way the object ends
 * with "cut":true, so a long event is shortened, never lost or malformed.
 *
 *     char b[512];
 *     struct jsonline j;
 *     jsonline_begin(&j, b, sizeof b);
 *     jsonline_str(&j, "kind", "connect");
 *     jsonline_int(&j, "at", now_ms);
 *     size_t n = jsonline_end(&j);   // b holds {"kind":"connect","at":...}
 */
#ifndef SP_JSONLINE_H
#define SP_JSONLINE_H

#include <stddef.h>
#include <stdint.h>

/* Room kept for the end: ,"cut":true} and the NUL. */
#define JSONLINE_TAIL 13
#define JSONLINE_MIN  (JSONLINE_TAIL + 2)

struct jsonline {
    char *p;
    size_t cap, len;
    int cut;    /* something was shortened or left out */
    int fields; /* fields written so far */
};

/* Starts an object in buf[0..cap), cap at least JSONLINE_MIN. */
void jsonline_begin(struct jsonline *j, char *buf, size_t cap);
/* A string field; s NULL: the field is left out. Invalid UTF-8 and control
 * characters are escaped. */
void jsonline_str(struct jsonline *j, const char *key, const char *s);
void jsonline_strn(struct jsonline *j, const char *key, const char *s, size_t n);
/* An array of strings; elements that do not fit whole are left out. */
void jsonline_strs(struct jsonline *j, const char *key, const char *const *v, size_t n);
void jsonline_int(struct jsonline *j, const char *key, int64_t v);
void jsonline_bool(struct jsonline *j, const char *key, int v);
/* A field whose value is JSON text already (an array the caller built). */
void jsonline_raw(struct jsonline *j, const char *key, const char *json, size_t n);
/* Closes the object (NUL-terminated) and returns its length. */
size_t jsonline_end(struct jsonline *j);

#endif
