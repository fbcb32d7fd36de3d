/*
 * tally.h - what a batch changed for one device: its device_status counts
 * and times and its replay counter, and how a batch's tallies are kept in a
 * row of device_status_pending (schemas/bucket.sql) until the daemon folds
 * them into device_status and device_counters (devstate.c).
 *
 * The row's tallies column is the batch's tallies one after another, each
 *
 *     u8 n            the serial's length, 1..SP_MAX_SERIAL
 *     n bytes         the serial (no NUL)
 *     7 x i64         last_sent, last_stored, messages, records, dead_letters,
 *                     counter, created; 8 bytes each, little-endian
 *
 * last_stored is 0 when nothing was stored; counter is the last TagoTiP/S
 * counter accepted, -1 when none; created is the device's created_at
 * (devices, schemas/registry.sql), 0 when not known, so that a device
 * removed and added again under the same serial is told apart. Tallies add
 * up: counts sum, times and counters take the larger one (tally_add), so
 * tallies folded in any grouping give the same rows.
 */
#ifndef SP_TALLY_H
#define SP_TALLY_H

#include <stddef.h>
#include <stdint.h>

struct buf;

struct tally {
    const char *serial;
    int64_t last_sent, last_stored;
    int64_t messages, records, dead;
    int64_t counter; /* -1: none */
    int64_t created; /* 0: not known */
};

/* A tally of nothing (counter -1). */
#define TALLY_NONE(s) ((struct tally){.serial = (s), .counter = -1})

/* Appends t to out. 0, or the buf error (SP_ERR_NOMEM, SP_ERR_TOOLARGE);
 * SP_ERR_INVAL for a serial of no or too many bytes. */
int tally_encode(struct buf *out, const struct tally *t);

/*
 * The tally at *pos of the len bytes p, then *pos moves past it. Its serial
 * is copied to serial[SP_MAX_SERIAL + 1] and t->serial points there.
 * Returns 1, 0 at the end, or -1 when the bytes are no tally (then *pos is
 * unchanged: the rest of p cannot be read).
 */
int tally_decode(const unsigned char *p, size_t len, size_t *pos, struct tally *t, char *serial);

/* Adds src's counts to dst's; times, counter and created become the larger
 * of the two. */
void tally_add(struct tally *dst, const struct tally *src);

#endif
