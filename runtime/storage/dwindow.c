/*
 * dwindow.c - see dwindow.h.
 */
#include "dwindow.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"

static const struct keytab_type win_count_type = {.entry_size = sizeof(struct win_count),
                                                  .key_size = sizeof(struct win_key)};

/* Twice the largest ring: a power of two whose half is at least WINDOW_MAX_ENTRIES. */
#define WINDOW_TABLE_MAX (1u << 18)
_Static_assert(WINDOW_TABLE_MAX / 2 >= WINDOW_MAX_ENTRIES, "the table holds every ring item");

int win_init(struct window *w)
{
    memset(w, 0, sizeof *w);
    return keytab_init(&w->counts, &win_count_type, 2 * WINDOW_MIN_CAP, WINDOW_TABLE_MAX)
               ? SP_ERR_NOMEM
               : SP_OK;
}

void win_cleanup(struct window *w)
{
    free(w->items);
    keytab_cleanup(&w->counts);
    memset(w, 0, sizeof *w);
}

void win_clear(struct window *w)
{
    w->head = 0;
    w->len = 0;
    keytab_clear(&w->counts);
}

/* Doubles the ring (or allocates the first one). */
static int win_grow(struct window *w)
{
    size_t ncap = w->cap ? 2 * w->cap : WINDOW_MIN_CAP;
    struct win_item *items;

    if (w->len >= WINDOW_MAX_ENTRIES)
        return SP_ERR_NOMEM;
    items = malloc(ncap * sizeof *items);
    if (!items)
        return SP_ERR_NOMEM;
    for (size_t i = 0; i < w->len; i++)
        items[i] = w->items[(w->head + i) & (w->cap - 1)];
    free(w->items);
    w->items = items;
    w->cap = ncap;
    w->head = 0;
    return SP_OK;
}

static uint64_t win_hash(const struct window *w, const struct win_key *k)
{
    return keytab_hash(&w->counts, k, sizeof *k);
}

int win_has(const struct window *w, const struct win_key *k)
{
    return w->len && keytab_find(&w->counts, win_hash(w, k), k) != NULL;
}

int win_push(struct window *w, int64_t seq, const struct win_key *k)
{
    void *entry;

    if (w->len == w->cap) {
        int rc = win_grow(w);
        if (rc)
            return rc;
    }
    if (keytab_put(&w->counts, win_hash(w, k), k, &entry) < 0)
        return SP_ERR_NOMEM;
    ((struct win_count *)entry)->count++;
    struct win_item *it = &w->items[(w->head + w->len) & (w->cap - 1)];
    it->seq = seq;
    it->key = *k;
    w->len++;
    return SP_OK;
}

/* Drops one reference to k; removes its entry at the last one. */
static void win_unref(struct window *w, const struct win_key *k)
{
    struct win_count *c = keytab_find(&w->counts, win_hash(w, k), k);

    assert(c && c->count);
    if (--c->count == 0)
        keytab_delete(&w->counts, c);
}

void win_truncate(struct window *w, size_t len)
{
    while (w->len > len) {
        w->len--;
        win_unref(w, &w->items[(w->head + w->len) & (w->cap - 1)].key);
    }
}

void win_evict(struct window *w, int64_t bound)
{
    while (w->len && w->items[w->head].seq <= bound) {
        win_unref(w, &w->items[w->head].key);
        w->head = (w->head + 1) & (w->cap - 1);
        w->len--;
    }
}

int64_t win_bound(const struct window *w)
{
    if (!w->len)
        return 0;
    int64_t max = w->items[(w->head + w->len - 1) & (w->cap - 1)].seq;
    return max > SP_LIMIT_DEDUP_WINDOW ? max - SP_LIMIT_DEDUP_WINDOW : 0;
}
