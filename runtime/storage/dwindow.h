/*
 * dwindow.h - the delivery window in memory (bucket.c): the (packet id,
 * digest) pairs of the last SP_LIMIT_DEDUP_WINDOW messages read over MQTT,
 * a multiset that takes an entry as soon as it is remembered and can undo
 * the newest ones (a message's savepoint or its batch rolled back). The
 * durable copy is bucket.c's delivery_log.
 */
#ifndef SP_DWINDOW_H
#define SP_DWINDOW_H

#include <stddef.h>
#include <stdint.h>

#include "base/keytab.h"
#include "base/sp_limits.h"
#include "bucket.h"

#define WINDOW_MIN_CAP 1024
/* The window holds the committed entries plus one batch's pending ones; a
 * batch cannot usefully remember more than the 65535 packet ids. */
#define WINDOW_MAX_ENTRIES (SP_LIMIT_DEDUP_WINDOW + 65536)

struct win_key {
    int mid;
    uint8_t digest[BUCKET_DIGEST_LEN];
};
_Static_assert(sizeof(struct win_key) == 4 + BUCKET_DIGEST_LEN, "no padding: keytab memcmp()s it");

/* One remembered message, in seq order in the ring. */
struct win_item {
    int64_t seq;
    struct win_key key;
};

/* Table entry: count is how many ring items carry key. */
struct win_count {
    struct win_key key;
    uint32_t count;
};

/*
 * A FIFO ring of items (oldest first) and a table counting each key's items.
 * The ring doubles only while it holds fewer than WINDOW_MAX_ENTRIES items,
 * so it never has more slots than the first power of two at or above that:
 * half of WINDOW_TABLE_MAX, and the table never answers KEYTAB_FULL. Digests
 * come from hostile payloads, so keys are hashed with the table's keyed
 * SipHash: nobody can grind payloads into one probe run.
 */
struct window {
    struct win_item *items;
    size_t cap; /* ring capacity, a power of two */
    size_t head;
    size_t len;
    struct keytab counts;
};

/* 0, or SP_ERR_NOMEM. */
int win_init(struct window *w);
void win_cleanup(struct window *w);
/* Forgets every entry. */
void win_clear(struct window *w);
/* 1 if an entry carries k. */
int win_has(const struct window *w, const struct win_key *k);
/* Appends an entry (seq grows with each). 0, or SP_ERR_NOMEM. */
int win_push(struct window *w, int64_t seq, const struct win_key *k);
/* Pops the newest entries until len remain (undo of a message or batch). */
void win_truncate(struct window *w, size_t len);
/* Drops the oldest entries with seq <= bound. */
void win_evict(struct window *w, int64_t bound);
/* Entries with seq <= this fall out of the window (0: none). */
int64_t win_bound(const struct window *w);

#endif
