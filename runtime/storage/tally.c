/*
 * tally.c - device tallies and their encoding in device_status_pending
 * (tally.h).
 */
#include "tally.h"

#include <string.h>

#include "base/buf.h"
#include "base/errors.h"
#include "sealpipe.h"

#define FIELDS 7 /* the i64s after the serial */

static void put_i64(unsigned char *p, int64_t v)
{
    uint64_t u = (uint64_t)v;

    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(u >> (8 * i));
}

static int64_t get_i64(const unsigned char *p)
{
    uint64_t u = 0;

    for (int i = 0; i < 8; i++)
        u |= (uint64_t)p[i] << (8 * i);
    return (int64_t)u;
}

int tally_encode(struct buf *out, const struct tally *t)
{
    size_t n = t->serial ? strlen(t->serial) : 0;
    unsigned char v[1 + SP_MAX_SERIAL + 8 * FIELDS];
    const int64_t f[FIELDS] = {t->last_sent, t->last_stored, t->messages, t->records,
                               t->dead,      t->counter,     t->created};

    if (n == 0 || n > SP_MAX_SERIAL)
        return SP_ERR_INVAL;
    v[0] = (unsigned char)n;
    memcpy(v + 1, t->serial, n);
    for (int i = 0; i < FIELDS; i++)
        put_i64(v + 1 + n + 8 * i, f[i]);
    return buf_append(out, v, 1 + n + 8 * FIELDS);
}

int tally_decode(const unsigned char *p, size_t len, size_t *pos, struct tally *t, char *serial)
{
    size_t at = *pos, n;

    if (at >= len)
        return 0;
    n = p[at];
    if (n == 0 || n > SP_MAX_SERIAL || len - at - 1 < n + 8 * FIELDS || memchr(p + at + 1, '\0', n))
        return -1;
    memcpy(serial, p + at + 1, n);
    serial[n] = '\0';
    const unsigned char *f = p + at + 1 + n;
    *t = (struct tally){.serial = serial,
                        .last_sent = get_i64(f),
                        .last_stored = get_i64(f + 8),
                        .messages = get_i64(f + 16),
                        .records = get_i64(f + 24),
                        .dead = get_i64(f + 32),
                        .counter = get_i64(f + 40),
                        .created = get_i64(f + 48)};
    *pos = at + 1 + n + 8 * FIELDS;
    return 1;
}

static int64_t larger(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

void tally_add(struct tally *dst, const struct tally *src)
{
    dst->last_sent = larger(dst->last_sent, src->last_sent);
    dst->last_stored = larger(dst->last_stored, src->last_stored);
    dst->messages += src->messages;
    dst->records += src->records;
    dst->dead += src->dead;
    dst->counter = larger(dst->counter, src->counter);
    dst->created = larger(dst->created, src->created);
}
