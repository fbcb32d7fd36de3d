/*
 * tip_scan.h - what the TagoTiP text files share (internal to the SDK): the
 * character classes of TagoTiP.md §14, a scanner over an explicit length, and
 * the grammar pieces used by more than one of tip_body.c (PUSH bodies and
 * values), tip_frame.c (frames, PULL lists, ACKs) and tip_build.c (the
 * builder). Nothing here allocates or reads past s->n.
 */
#ifndef SP_TIP_SCAN_H
#define SP_TIP_SCAN_H

#include "sealpipe.h"

#include <string.h>

/* ------------------------------------------------------------------------ */
/* Character classes (§14)                                                  */
/* ------------------------------------------------------------------------ */

static inline int is_namechar(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static inline int is_serialchar(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

static inline int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* The structural characters: excluded from values, escapable in them. */
static inline int is_structural(int c)
{
    return c != '\0' && strchr("#;@[\\]^{|}", c) != NULL;
}

/* ------------------------------------------------------------------------ */
/* The scanner                                                              */
/* ------------------------------------------------------------------------ */

struct scan {
    const char *p;
    size_t n;
    size_t i;
};

static inline int peek(const struct scan *s)
{
    return s->i < s->n ? (unsigned char)s->p[s->i] : -1;
}

static inline int peek2(const struct scan *s)
{
    return s->i + 1 < s->n ? (unsigned char)s->p[s->i + 1] : -1;
}

static inline int take(struct scan *s, int c)
{
    if (peek(s) != c)
        return 0;
    s->i++;
    return 1;
}

static inline struct sp_span span_from(const struct scan *s, size_t start)
{
    struct sp_span sp = {s->p + start, s->i - start};
    return sp;
}

/* One trailing LF is the frame terminator, not part of the frame (§3). */
static inline size_t strip_lf(const char *p, size_t len)
{
    return len > 0 && p[len - 1] == '\n' ? len - 1 : len;
}

/* ------------------------------------------------------------------------ */
/* Grammar pieces (tip_body.c)                                              */
/* ------------------------------------------------------------------------ */

/* 1*SP_MAX_NAME VARNAMECHAR: variable names, groups, metadata keys. */
int sp__tip_scan_ident(struct scan *s, struct sp_span *out);

enum sp__text_kind { TEXT_VALUE, TEXT_META, TEXT_UNIT };

/*
 * One or more VALCHAR, METAVALCHAR or UNITCHAR: printable ASCII minus the
 * structural characters, escapes (not in units), valid UTF-8. Stops at the
 * first byte that cannot continue the text; the caller decides whether that
 * byte may follow.
 */
int sp__tip_scan_text(struct scan *s, enum sp__text_kind kind, struct sp_span *out);

/*
 * [@=loc] [@ts] [^group] [{meta}] "[" var *(";" var) "]" (Revision D; B's
 * [^group] [@ts] is read too). With out NULL only
 * validates, writing each variable into a scratch slot.
 */
int sp__tip_parse_structured(const char *p, size_t n, struct sp_tip_body *out);

/* A PUSH body without its LF; with out NULL only validates. */
int sp__tip_parse_body(const char *body, size_t len, struct sp_tip_body *out);

#endif
