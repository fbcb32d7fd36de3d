/*
 * fuzz_rawframe.c - libFuzzer target for the raw binding's stream splitter
 * (runtime/transport/rawframe.c): TCP bytes in, text frames and
 * length-prefixed envelopes out.
 *
 * The first two bytes choose the limits (keep 1-64, line_max up to about
 * 1 KiB more), so cut and refused lines are reached quickly; the rest is the
 * stream. It is split twice: fed whole, and fed in pieces whose sizes come
 * from the input itself; both must give the same messages and end the same
 * way. Every message fed whole is checked against the bytes it came from:
 * its kind follows the first-byte rule, a line is its bytes up to "\n" cut
 * at keep with full_len its real length, an envelope is the bytes its
 * big-endian prefix announces. The datagram reader sees the stream too.
 * Seeds: a few frames and envelopes (tests/fuzz/corpus/fuzz_rawframe).
 */
#include "fuzz.h"
#include "transport/rawframe.h"

#include "base/errors.h"

struct log {
    uint8_t *p;
    size_t n, cap;
};

static void log_add(struct log *l, const void *p, size_t n)
{
    if (l->n + n > l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4096;

        while (cap < l->n + n)
            cap *= 2;
        l->p = realloc(l->p, cap);
        FUZZ_CHECK(l->p != NULL);
        l->cap = cap;
    }
    memcpy(l->p + l->n, p, n);
    l->n += n;
}

static void log_msg(struct log *l, const struct rawframe_msg *m)
{
    log_add(l, &m->kind, sizeof m->kind);
    log_add(l, &m->len, sizeof m->len);
    log_add(l, &m->full_len, sizeof m->full_len);
    log_add(l, m->data, m->len);
}

/* The message m was made of in[start..end): check it against those bytes. */
static void check_msg(const struct rawframe *f, const struct rawframe_msg *m, const uint8_t *in,
                      size_t start, size_t end)
{
    size_t n = end - start;

    FUZZ_CHECK(n > 0 && m->kind == rawframe_kind_of(in[start]));
    if (m->kind == RAWFRAME_LINE) {
        /* A "\r" before the "\n" goes too when the line is kept whole. */
        int crlf = n >= 2 && in[end - 2] == '\r' && n - 1 <= f->keep;
        FUZZ_CHECK(in[end - 1] == '\n' && m->full_len == n - 1 - (size_t)crlf);
        FUZZ_CHECK(memchr(in + start, '\n', n - 1) == NULL);
        FUZZ_CHECK(m->full_len <= f->line_max);
        FUZZ_CHECK(m->len == (m->full_len < f->keep ? m->full_len : f->keep));
        FUZZ_CHECK(m->len == 0 || memcmp(m->data, in + start, m->len) == 0);
    } else {
        FUZZ_CHECK(m->kind == RAWFRAME_ENVELOPE && n >= 2);
        FUZZ_CHECK(m->len == ((size_t)in[start] << 8 | in[start + 1]) && m->len == n - 2);
        FUZZ_CHECK(m->full_len == m->len);
        FUZZ_CHECK(m->len == 0 || memcmp(m->data, in + start + 2, m->len) == 0);
    }
}

/* Feeds in[0..n) in pieces (sizes from sizes[], cycled; none: whole). Returns
 * the final status: 0, or the error that ended the stream. */
static int run(const uint8_t *in, size_t n, size_t keep, size_t line_max, const uint8_t *sizes,
               size_t nsizes, struct log *out)
{
    struct rawframe f;
    struct rawframe_msg m;
    size_t off = 0, start = 0, k = 0, used;
    int rc = 0;

    rawframe_init(&f, keep, line_max);
    while (off < n) {
        size_t piece = nsizes ? 1 + sizes[k++ % nsizes] % 97 : n - off;

        if (piece > n - off)
            piece = n - off;
        rc = rawframe_feed(&f, in + off, piece, &used, &m);
        FUZZ_CHECK(used <= piece);
        off += used;
        if (rc < 0)
            break;
        if (rc == 0) {
            FUZZ_CHECK(used == piece);
            continue;
        }
        FUZZ_CHECK(rc == 1);
        if (!nsizes)
            check_msg(&f, &m, in, start, off);
        log_msg(out, &m);
        start = off;
        FUZZ_CHECK(rawframe_idle(&f));
    }
    if (rc == 1)
        rc = 0; /* the last message ended the input */
    FUZZ_CHECK(rc == 0 || rc == SP_ERR_TOOLARGE);
    if (rc == SP_ERR_TOOLARGE)
        FUZZ_CHECK(rawframe_kind_of(in[start]) == RAWFRAME_LINE && off - start <= line_max);
    log_add(out, &rc, sizeof rc);
    rawframe_cleanup(&f);
    return rc;
}

static void datagram(const uint8_t *p, size_t n)
{
    struct rawframe_msg m;
    int kind = rawframe_datagram(p, n, &m);

    FUZZ_CHECK(kind == m.kind && m.len == m.full_len);
    if (n == 0) {
        FUZZ_CHECK(kind == RAWFRAME_NONE);
        return;
    }
    FUZZ_CHECK(kind == rawframe_kind_of(p[0]) && m.data == p);
    size_t want = n;
    if (kind == RAWFRAME_LINE && p[want - 1] == '\n')
        want--;
    if (kind == RAWFRAME_LINE && want && p[want - 1] == '\r')
        want--;
    FUZZ_CHECK(m.len == want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct log whole = {0}, pieces = {0};
    size_t keep, line_max;
    uint8_t *in;

    if (size < 2)
        return 0;
    keep = 1 + (data[0] & 63);
    line_max = keep + (size_t)data[1] * 4;
    in = (uint8_t *)fuzz_copy(data + 2, size - 2);
    datagram(in, size - 2);
    run(in, size - 2, keep, line_max, NULL, 0, &whole);
    run(in, size - 2, keep, line_max, data, size, &pieces);
    FUZZ_CHECK(whole.n == pieces.n && memcmp(whole.p, pieces.p, whole.n) == 0);
    free(whole.p);
    free(pieces.p);
    free(in);
    return 0;
}
