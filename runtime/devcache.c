/*
 * devcache.c - devices and unwrapped keys in memory (see devcache.h).
 *
 * Two open-addressing tables (linear probing, never more than half full),
 * one by serial and one by (auth hash, device hash), whose entries and the
 * registry data they point to live in one arena. Nothing is ever removed
 * alone: the whole cache is emptied when the registry generation moves or
 * when it is full. Serials and hashes come from devices, so slots are chosen
 * with keyed SipHash (crypto_shorthash) under a per-process random key.
 */
#include "devcache.h"
#include "errors.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "arena.h"
#include "log.h"

#define SLOTS       8192               /* per table, a power of two */
#define MAX_ENTRIES (SLOTS / 2)        /* per table, keeps probes short */
#define ARENA_CAP   (32 * 1024 * 1024) /* registry data held */
#define SPILL_CAP   (4 * 1024 * 1024)  /* results not cached, per batch */

struct dev_entry {
    const char *serial; /* NULL: empty slot */
    int rc;             /* 0 or SP_ERR_NODEVICE */
    struct device_info info;
};

struct key_entry {
    int used;
    uint8_t hashes[2 * SP_HASH_LEN]; /* auth hash, then device hash */
    int rc;                          /* 0 or SP_ERR_CRYPTO */
    struct device_key *keys;
    size_t n;
    int64_t grace_ms;    /* the grace the entry was read with */
    int64_t valid_until; /* when the first retired key ages out; INT64_MAX */
};

/* Keys handed out from the spill arena, to wipe before it is reused. */
struct spilled {
    struct device_key *keys;
    size_t n;
    struct spilled *next;
};

struct devcache {
    struct registry *reg;
    int64_t generation;
    int have_generation;
    int full; /* empty everything at the next sync */
    struct arena arena;
    struct arena spill; /* results that did not fit, valid for one batch */
    struct spilled *spilled;
    struct dev_entry *devs;
    struct key_entry *keys;
    size_t ndevs, nkeys;
    unsigned char hkey[crypto_shorthash_KEYBYTES];
};

static size_t slot_of(const struct devcache *c, const void *p, size_t n)
{
    unsigned char h[crypto_shorthash_BYTES];
    uint64_t v;

    crypto_shorthash(h, p, n, c->hkey);
    memcpy(&v, h, sizeof(v));
    return (size_t)(v & (SLOTS - 1));
}

static void empty(struct devcache *c)
{
    for (size_t i = 0; i < SLOTS; i++)
        if (c->keys[i].used && c->keys[i].n)
            sodium_memzero(c->keys[i].keys, c->keys[i].n * sizeof(*c->keys[i].keys));
    memset(c->devs, 0, SLOTS * sizeof(*c->devs));
    memset(c->keys, 0, SLOTS * sizeof(*c->keys));
    c->ndevs = c->nkeys = 0;
    c->full = 0;
    arena_reset(&c->arena);
}

struct devcache *devcache_new(struct registry *r)
{
    struct devcache *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    c->devs = calloc(SLOTS, sizeof(*c->devs));
    c->keys = calloc(SLOTS, sizeof(*c->keys));
    if (!c->devs || !c->keys) {
        free(c->devs);
        free(c->keys);
        free(c);
        return NULL;
    }
    c->reg = r;
    arena_init(&c->arena, ARENA_CAP);
    arena_init(&c->spill, SPILL_CAP);
    crypto_shorthash_keygen(c->hkey);
    return c;
}

void devcache_free(struct devcache *c)
{
    if (!c)
        return;
    for (struct spilled *s = c->spilled; s; s = s->next)
        sodium_memzero(s->keys, s->n * sizeof(*s->keys));
    empty(c);
    arena_cleanup(&c->arena);
    arena_cleanup(&c->spill);
    free(c->devs);
    free(c->keys);
    free(c);
}

int devcache_sync(struct devcache *c)
{
    int64_t g;
    int rc = registry_generation(c->reg, &g);

    if (rc)
        return rc;
    if (!c->have_generation || g != c->generation || c->full) {
        if (c->ndevs || c->nkeys)
            LOG_DEBUG("device cache emptied devices=%zu keysets=%zu reason=%s", c->ndevs, c->nkeys,
                      c->full ? "full" : "registry changed");
        empty(c);
        c->generation = g;
        c->have_generation = 1;
    }
    for (struct spilled *s = c->spilled; s; s = s->next)
        sodium_memzero(s->keys, s->n * sizeof(*s->keys));
    c->spilled = NULL;
    arena_reset(&c->spill);
    return SP_OK;
}

/* The arena for a new entry's data: the cache's, or the spill when full. */
static struct arena *room(struct devcache *c, size_t entries)
{
    if (c->full || entries >= MAX_ENTRIES || c->arena.total > ARENA_CAP / 2) {
        c->full = 1;
        return &c->spill;
    }
    return &c->arena;
}

int devcache_device(struct devcache *c, const char *serial, const struct device_info **out)
{
    size_t len = strlen(serial), i = slot_of(c, serial, len);
    struct dev_entry *e;

    for (; (e = &c->devs[i])->serial; i = (i + 1) & (SLOTS - 1)) {
        if (strcmp(e->serial, serial) == 0) {
            *out = &e->info;
            return e->rc;
        }
    }
    struct arena *a = room(c, c->ndevs);
    struct device_info info;
    int rc = registry_device_get(c->reg, serial, a, &info);
    if (rc && rc != SP_ERR_NODEVICE)
        return rc; /* a database error is not an answer to remember */
    if (a == &c->spill) {
        /* Not cached: hand out a spill copy that lives until the next sync. */
        struct device_info *copy = arena_alloc(a, sizeof(*copy));
        if (!copy)
            return SP_ERR_NOMEM;
        *copy = info;
        *out = copy;
        return rc;
    }
    char *key = arena_strndup(a, serial, len);
    if (!key)
        return SP_ERR_NOMEM;
    e->serial = key;
    e->rc = rc;
    e->info = info;
    c->ndevs++;
    *out = &e->info;
    return rc;
}

int devcache_keys(struct devcache *c, const uint8_t auth_hash[SP_HASH_LEN],
                  const uint8_t device_hash[SP_HASH_LEN], int64_t now_ms, int64_t grace_ms,
                  const struct device_key **keys, size_t *n)
{
    uint8_t id[2 * SP_HASH_LEN];
    struct key_entry *e;
    size_t i;

    memcpy(id, auth_hash, SP_HASH_LEN);
    memcpy(id + SP_HASH_LEN, device_hash, SP_HASH_LEN);
    for (i = slot_of(c, id, sizeof(id)); (e = &c->keys[i])->used; i = (i + 1) & (SLOTS - 1))
        if (memcmp(e->hashes, id, sizeof(id)) == 0)
            break;
    if (e->used && e->grace_ms == grace_ms && now_ms < e->valid_until) {
        *keys = e->keys;
        *n = e->n;
        return e->rc;
    }
    /* A miss, or an entry whose retired key has aged out: read again. A
     * stale entry's slot is reused in place (its keys wiped now, its other
     * bytes left in the arena until the next emptying). */
    if (e->used) {
        if (e->n)
            sodium_memzero(e->keys, e->n * sizeof(*e->keys));
        e->n = 0;
        e->valid_until = INT64_MIN; /* stale until rewritten below */
    }
    struct arena *a = room(c, e->used ? 0 : c->nkeys);
    struct device_key *got = NULL;
    size_t ngot = 0;
    int rc = registry_keys_for(c->reg, auth_hash, device_hash, now_ms, grace_ms, a, &got, &ngot);
    if (rc && rc != SP_ERR_CRYPTO)
        return rc;
    *keys = got;
    *n = ngot;
    if (a == &c->spill) {
        struct spilled *sp = arena_alloc(a, sizeof(*sp));
        if (!sp) {
            sodium_memzero(got, ngot * sizeof(*got));
            return SP_ERR_NOMEM;
        }
        *sp = (struct spilled){.keys = got, .n = ngot, .next = c->spilled};
        c->spilled = sp;
        return rc;
    }
    int64_t until = INT64_MAX;
    for (size_t k = 0; k < ngot; k++)
        if (got[k].retired_ms && got[k].retired_ms + grace_ms < until)
            until = got[k].retired_ms + grace_ms;
    if (!e->used)
        c->nkeys++;
    e->used = 1;
    memcpy(e->hashes, id, sizeof(id));
    e->rc = rc;
    e->keys = got;
    e->n = ngot;
    e->grace_ms = grace_ms;
    e->valid_until = until;
    return rc;
}
