/*
 * keytab.h - the one hash table: open addressing, linear probing,
 * backward-shift deletion, entries of the caller's size stored inline.
 *
 * A table maps a key to an entry of type->entry_size bytes (a struct of the
 * caller's) kept in the table's own slot array. The key is either the
 * entry's first type->key_size bytes, compared with memcmp (fixed-size keys:
 * digests, ids, pointers), or whatever type->key_equal understands (a string
 * the entry points to, a key with a length). The caller hashes: with
 * keytab_hash(), keyed SipHash-2-4 under the table's own random key, for keys
 * a hostile peer chooses (serials, digests: nobody can grind them into one
 * probe run), or with any function of its own when the key already is a
 * hash or a pointer. The same key must always come with the same hash.
 *
 * Capacity. A table has between min_slots and max_slots slots (powers of
 * two) and holds at most half as many entries as it has slots, so probe runs
 * stay short and there is always a free slot. keytab_init() allocates
 * min_slots; keytab_put() doubles the table when an entry would not fit,
 * until max_slots, and then answers KEYTAB_FULL: the caller decides what goes
 * (empties the table, drops a generation, serves the key uncached). A table
 * with min_slots == max_slots never allocates after keytab_init().
 *
 * Entry pointers stay valid until the next keytab_put() that adds, or
 * keytab_delete() / keytab_clear() / keytab_cleanup(). Entries hold no
 * resources the table knows of: free or wipe what they point to first.
 * Not thread-safe. Depends on libsodium only, so that the broker plugin can
 * compile it in too.
 */
#ifndef SP_KEYTAB_H
#define SP_KEYTAB_H

#include <stddef.h>
#include <stdint.h>

#define KEYTAB_ADDED 1  /* keytab_put: a new, zeroed entry */
#define KEYTAB_FOUND 0  /* keytab_put: the key was there */
#define KEYTAB_FULL  -1 /* keytab_put: max_slots reached, nothing added */
#define KEYTAB_NOMEM -2 /* keytab_init, keytab_put: out of memory */

#define KEYTAB_HASH_KEYBYTES 16 /* crypto_shorthash_KEYBYTES */

struct keytab_type {
    size_t entry_size; /* sizeof the caller's entry struct */
    size_t key_size;   /* the key is the entry's first key_size bytes ... */
    /* ... or, when set, key_equal decides (key_size is then ignored); key
     * is the pointer given to keytab_find() or keytab_put(). */
    int (*key_equal)(const void *entry, const void *key);
};

/* The fields are private; the struct is public so that callers can embed it. */
struct keytab {
    struct keytab_type type; /* a copy: one indirection less on every probe */
    uint64_t *hashes;        /* per slot: the entry's hash, 0 when the slot is free */
    unsigned char *entries;  /* slots * type->entry_size */
    size_t slots, max_slots, n;
    unsigned char hkey[KEYTAB_HASH_KEYBYTES];
};

/*
 * Prepares an empty table of min_slots slots that may grow to max_slots
 * (powers of two, 2 <= min_slots <= max_slots; it holds at most
 * max_slots / 2 entries) and draws its hash key. type is copied. Returns 0
 * or KEYTAB_NOMEM (then t needs no cleanup).
 */
int keytab_init(struct keytab *t, const struct keytab_type *type, size_t min_slots,
                size_t max_slots) __attribute__((warn_unused_result));
/* Frees the slots and wipes the hash key. t may be zeroed or cleaned up already. */
void keytab_cleanup(struct keytab *t);

/* Keyed SipHash-2-4 of len bytes under t's key: for keys from outside. */
uint64_t keytab_hash(const struct keytab *t, const void *data, size_t len);

/* The entry for key with this hash, or NULL. */
void *keytab_find(const struct keytab *t, uint64_t hash, const void *key);

/*
 * The entry for key, added if absent: *entry is set to the entry and the
 * result is KEYTAB_FOUND, or KEYTAB_ADDED for a new entry, zeroed except for
 * a fixed-size key, which is copied in (with key_equal the caller writes its
 * key before the next call on t). Returns KEYTAB_FULL when the key is absent
 * and the table holds max_slots / 2 entries, KEYTAB_NOMEM when growing
 * failed; *entry is then untouched and t unchanged.
 */
int keytab_put(struct keytab *t, uint64_t hash, const void *key, void **entry)
    __attribute__((warn_unused_result));

/* Removes entry (from keytab_find, keytab_put or keytab_next); entries
 * after it in its probe run may move back, so other entry pointers and an
 * iteration in progress are invalidated. */
void keytab_delete(struct keytab *t, void *entry);

/* Removes every entry; keeps the slots it has. */
void keytab_clear(struct keytab *t);

/* Entries held. */
static inline size_t keytab_count(const struct keytab *t)
{
    return t->n;
}

/* 1 if keytab_put() of an absent key would answer KEYTAB_FULL. */
static inline int keytab_full(const struct keytab *t)
{
    return t->n >= t->max_slots / 2;
}

/*
 * Iteration in slot order: the first entry in a slot at or after *pos, with
 * *pos moved past it; NULL at the end. Start with *pos = 0:
 *     for (size_t i = 0; (e = keytab_next(t, &i)) != NULL;) ...
 * To delete the entry just returned and go on, call keytab_delete() and step
 * back (i--): the entry that moved into its slot is looked at next. No entry
 * is missed; one that wrapped around the table's end may come twice.
 */
void *keytab_next(const struct keytab *t, size_t *pos);

#endif
