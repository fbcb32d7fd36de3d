/*
 * keytab.c - the one hash table (see keytab.h): open addressing with linear
 * probing over two parallel arrays, the slots' hashes and the entries.
 *
 * A probe reads only the dense hash array and looks at an entry when the
 * full 64-bit hash matches, so a miss rarely touches entry memory. Stored
 * hashes carry KEYTAB_USED (the top bit), which makes 0 mean "free" without
 * reserving a hash value and leaves the home slot (the low bits) as it was.
 * Deletion shifts the later members of the probe run back instead of leaving
 * tombstones, so a table that sees many deletions (the delivery window)
 * never slows down; growing re-places entries by their stored hash, without
 * hashing a key again.
 */
#include "keytab.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

_Static_assert(KEYTAB_HASH_KEYBYTES == crypto_shorthash_KEYBYTES, "SipHash key size");
_Static_assert(crypto_shorthash_BYTES == sizeof(uint64_t), "SipHash output size");

#define KEYTAB_USED (UINT64_C(1) << 63)

static unsigned char *entry_at(const struct keytab *t, size_t i)
{
    return t->entries + i * t->type.entry_size;
}

static size_t index_of(const struct keytab *t, const void *entry)
{
    size_t off = (size_t)((const unsigned char *)entry - t->entries);

    assert(off % t->type.entry_size == 0 && off / t->type.entry_size < t->slots);
    return off / t->type.entry_size;
}

static int key_matches(const struct keytab *t, size_t i, const void *key)
{
    const void *e = entry_at(t, i);

    if (t->type.key_equal)
        return t->type.key_equal(e, key);
    return memcmp(e, key, t->type.key_size) == 0;
}

/* The slot holding key, or the free slot that ends its probe run. */
static size_t probe(const struct keytab *t, uint64_t h, const void *key)
{
    const uint64_t *hashes = t->hashes;
    size_t mask = t->slots - 1, i = (size_t)h & mask;

    while (hashes[i] && !(hashes[i] == h && key_matches(t, i, key)))
        i = (i + 1) & mask;
    return i;
}

/* Allocates the arrays for slots slots, all free. 0 or KEYTAB_NOMEM. */
static int slots_alloc(const struct keytab *t, size_t slots, uint64_t **hashes,
                       unsigned char **entries)
{
    if (slots > SIZE_MAX / t->type.entry_size)
        return KEYTAB_NOMEM;
    *hashes = calloc(slots, sizeof **hashes);
    *entries = malloc(slots * t->type.entry_size);
    if (!*hashes || !*entries) {
        free(*hashes);
        free(*entries);
        return KEYTAB_NOMEM;
    }
    return 0;
}

int keytab_init(struct keytab *t, const struct keytab_type *type, size_t min_slots,
                size_t max_slots)
{
    assert(type->entry_size > 0 && (type->key_equal || type->key_size <= type->entry_size));
    assert(min_slots >= 2 && (min_slots & (min_slots - 1)) == 0);
    assert(max_slots >= min_slots && (max_slots & (max_slots - 1)) == 0);
    memset(t, 0, sizeof *t);
    t->type = *type;
    if (sodium_init() < 0 || slots_alloc(t, min_slots, &t->hashes, &t->entries)) {
        memset(t, 0, sizeof *t); /* no dangling pointers: keytab_cleanup stays harmless */
        return KEYTAB_NOMEM;
    }
    t->slots = min_slots;
    t->max_slots = max_slots;
    randombytes_buf(t->hkey, sizeof t->hkey);
    return 0;
}

void keytab_cleanup(struct keytab *t)
{
    free(t->hashes);
    free(t->entries);
    sodium_memzero(t->hkey, sizeof t->hkey);
    memset(t, 0, sizeof *t);
}

uint64_t keytab_hash(const struct keytab *t, const void *data, size_t len)
{
    unsigned char out[crypto_shorthash_BYTES];
    uint64_t h;

    crypto_shorthash(out, data, len, t->hkey);
    memcpy(&h, out, sizeof h);
    return h;
}

void *keytab_find(const struct keytab *t, uint64_t hash, const void *key)
{
    size_t i = probe(t, hash | KEYTAB_USED, key);

    return t->hashes[i] ? entry_at(t, i) : NULL;
}

/* Doubles the slots, re-placing every entry by its stored hash. */
static int grow(struct keytab *t)
{
    size_t slots = 2 * t->slots, mask = slots - 1, esize = t->type.entry_size;
    uint64_t *hashes;
    unsigned char *entries;

    if (slots_alloc(t, slots, &hashes, &entries))
        return KEYTAB_NOMEM;
    for (size_t i = 0; i < t->slots; i++) {
        if (!t->hashes[i])
            continue;
        size_t j = (size_t)t->hashes[i] & mask;
        while (hashes[j])
            j = (j + 1) & mask;
        hashes[j] = t->hashes[i];
        memcpy(entries + j * esize, entry_at(t, i), esize);
    }
    free(t->hashes);
    free(t->entries);
    t->hashes = hashes;
    t->entries = entries;
    t->slots = slots;
    return 0;
}

int keytab_put(struct keytab *t, uint64_t hash, const void *key, void **entry)
{
    uint64_t h = hash | KEYTAB_USED;
    size_t i = probe(t, h, key);

    if (t->hashes[i]) {
        *entry = entry_at(t, i);
        return KEYTAB_FOUND;
    }
    if (2 * (t->n + 1) > t->slots) {
        if (t->slots >= t->max_slots)
            return KEYTAB_FULL;
        if (grow(t))
            return KEYTAB_NOMEM;
        i = probe(t, h, key);
    }
    unsigned char *e = entry_at(t, i);
    memset(e, 0, t->type.entry_size);
    if (!t->type.key_equal)
        memcpy(e, key, t->type.key_size);
    t->hashes[i] = h;
    t->n++;
    *entry = e;
    return KEYTAB_ADDED;
}

/*
 * Backward-shift deletion: walks the run after the hole and moves back each
 * entry whose home slot does not lie cyclically in (hole, j], i.e. that the
 * hole would cut off from its home; the last hole becomes free.
 */
void keytab_delete(struct keytab *t, void *entry)
{
    size_t mask = t->slots - 1, esize = t->type.entry_size;
    size_t hole = index_of(t, entry), j = hole;

    assert(t->hashes[hole]);
    for (;;) {
        j = (j + 1) & mask;
        if (!t->hashes[j])
            break;
        size_t home = (size_t)t->hashes[j] & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            t->hashes[hole] = t->hashes[j];
            memcpy(entry_at(t, hole), entry_at(t, j), esize);
            hole = j;
        }
    }
    t->hashes[hole] = 0;
    t->n--;
}

void keytab_clear(struct keytab *t)
{
    if (t->n)
        memset(t->hashes, 0, t->slots * sizeof *t->hashes);
    t->n = 0;
}

void *keytab_next(const struct keytab *t, size_t *pos)
{
    for (size_t i = *pos; i < t->slots; i++) {
        if (t->hashes[i]) {
            *pos = i + 1;
            return entry_at(t, i);
        }
    }
    *pos = t->slots;
    return NULL;
}
