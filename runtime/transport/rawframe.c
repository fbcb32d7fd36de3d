/*
 * rawframe.c - message boundaries of TagoTiP's raw binding (see rawframe.h):
 * the frame-or-envelope rule, datagrams, and a stream splitter that keeps
 * at most `keep` bytes of a line and at most one envelope (64 KiB) per
 * stream. No I/O, no locks: one splitter per connection, used by one thread.
 */
#include "rawframe.h"

#include <stdlib.h>
#include <string.h>

#include "base/errors.h"

/* A buffer larger than this is freed between messages, so that an idle
 * connection holds no more than a small one. */
#define BUF_KEEP 16384

enum state {
    ST_START, /* between messages */
    ST_LINE,  /* in a text frame, waiting for "\n" */
    ST_LEN,   /* read the high byte of an envelope's length prefix */
    ST_ENV    /* reading want bytes of an envelope */
};

/*
 * The first byte decides (docs/facts.md, "TagoTiP raw binding"). Every
 * uplink method starts with 'P' (TagoTiP.md §5.1). As an envelope's Flags
 * byte (TagoTiPs.md §5.1), 0x41 is reserved for plaintext and 0x48-0x5A has
 * version bits 1-3, which no envelope of version 0 has; 0x42-0x47 are
 * version 0 (0x42 an AES-256-CCM PING, 0x43 an ACK), so they stay envelopes.
 * As the high byte of a TCP length prefix, every envelope of at most
 * 16,421 bytes (TagoTiPs.md §5.5) starts with 0x00-0x40.
 */
int rawframe_kind_of(uint8_t b)
{
    return b == 'A' || (b >= 'H' && b <= 'Z') ? RAWFRAME_LINE : RAWFRAME_ENVELOPE;
}

int rawframe_datagram(const uint8_t *p, size_t n, struct rawframe_msg *out)
{
    memset(out, 0, sizeof *out);
    if (n == 0)
        return RAWFRAME_NONE;
    out->kind = rawframe_kind_of(p[0]);
    if (out->kind == RAWFRAME_LINE && p[n - 1] == '\n')
        n--;
    out->data = p;
    out->len = out->full_len = n;
    return out->kind;
}

void rawframe_init(struct rawframe *f, size_t keep, size_t line_max)
{
    memset(f, 0, sizeof *f);
    f->keep = keep;
    f->line_max = line_max < keep ? keep : line_max;
    f->state = ST_START;
}

void rawframe_cleanup(struct rawframe *f)
{
    free(f->buf);
    rawframe_init(f, f->keep, f->line_max);
}

int rawframe_idle(const struct rawframe *f)
{
    return f->state == ST_START;
}

static int reserve(struct rawframe *f, size_t need)
{
    size_t cap = f->cap ? f->cap : 256;
    uint8_t *p;

    if (need <= f->cap)
        return 0;
    while (cap < need)
        cap *= 2;
    p = realloc(f->buf, cap);
    if (!p)
        return SP_ERR_NOMEM;
    f->buf = p;
    f->cap = cap;
    return 0;
}

static int deliver(struct rawframe *f, int kind, size_t full_len, struct rawframe_msg *out)
{
    out->kind = kind;
    out->data = f->buf;
    out->len = f->len;
    out->full_len = full_len;
    f->state = ST_START;
    return 1;
}

/* Takes bytes of a line up to its "\n"; returns 1 at the end of the line, 0
 * when in ran out first, or an error. */
static int take_line(struct rawframe *f, const uint8_t *in, size_t n, size_t *i)
{
    const uint8_t *nl = memchr(in + *i, '\n', n - *i);
    size_t span = nl ? (size_t)(nl - (in + *i)) : n - *i;
    size_t store = f->keep - f->len;

    if (span > f->line_max - f->seen)
        return SP_ERR_TOOLARGE;
    if (store > span)
        store = span;
    if (store) {
        if (reserve(f, f->len + store) != 0)
            return SP_ERR_NOMEM;
        memcpy(f->buf + f->len, in + *i, store);
        f->len += store;
    }
    f->seen += span;
    *i += span + (nl != NULL);
    return nl != NULL;
}

int rawframe_feed(struct rawframe *f, const uint8_t *in, size_t n, size_t *used,
                  struct rawframe_msg *out)
{
    size_t i = 0, take;
    int rc = 0;

    if (f->state == ST_START) {
        f->len = f->seen = f->want = 0;
        if (f->cap > BUF_KEEP) {
            free(f->buf);
            f->buf = NULL;
            f->cap = 0;
        }
    }
    while (i < n && rc == 0) {
        switch (f->state) {
        case ST_START:
            if (rawframe_kind_of(in[i]) == RAWFRAME_LINE) {
                f->state = ST_LINE;
            } else {
                f->want = (size_t)in[i++] << 8;
                f->state = ST_LEN;
            }
            break;
        case ST_LINE:
            rc = take_line(f, in, n, &i);
            if (rc == 1)
                rc = deliver(f, RAWFRAME_LINE, f->seen, out);
            break;
        case ST_LEN:
            f->want |= in[i++];
            f->state = ST_ENV;
            if (reserve(f, f->want ? f->want : 1) != 0)
                rc = SP_ERR_NOMEM;
            else if (f->want == 0)
                rc = deliver(f, RAWFRAME_ENVELOPE, 0, out);
            break;
        case ST_ENV:
            take = f->want - f->len < n - i ? f->want - f->len : n - i;
            memcpy(f->buf + f->len, in + i, take);
            f->len += take;
            i += take;
            if (f->len == f->want)
                rc = deliver(f, RAWFRAME_ENVELOPE, f->len, out);
            break;
        }
    }
    *used = i;
    return rc;
}
