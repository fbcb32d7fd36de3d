/*
 * devcache.c - devices and unwrapped keys in memory (see devcache.h).
 *
 * Two tables (keytab.h), one by serial and one by (auth hash, device hash),
 * whose entries point into one arena that holds the registry data. Nothing
 * is ever removed alone: the whole cache is emptied when the registry
 * generation moves or when it is full. Serials and hashes come from devices,
 * so both tables hash with their keyed SipHash.
 */
#include "devcache.h"
#include "base/errors.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "base/arena.h"
#include "base/keytab.h"
#include "base/log.h"

/* Each table starts at SLOTS_MIN and doubles up to SLOTS_MAX slots (it holds
 * half as many entries). A fleet larger than the cache empties it at every
 * batch and reads the registry for each message again (at 10,000 devices
 * and 8,192 slots that was most of the daemon's CPU), so the bounds are
 * sized for fleets of 100,000 devices. */
#define SLOTS_MIN 8192
#define SLOTS_MAX (1u << 18)
#define ARENA_CAP (128 * 1024 * 1024) /* registry data held: half of it */
#define SPILL_CAP (4 * 1024 * 1024)   /* results not cached, per batch */

/* What an entry points to is in the arena, so results stay put when a
 * table grows (keytab moves its entries then). */
struct dev_entry {
    const char *serial; /* the key, in the arena */
    int rc;             /* 0 or SP_ERR_NODEVICE */
    struct device_info *info;
};

static int dev_key_equal(const void *entry, const void *serial)
{
    return strcmp(((const struct dev_entry *)entry)->serial, serial) == 0;
}

static const struct keytab_type dev_type = {.entry_size = sizeof(struct dev_entry),
                                            .key_equal = dev_key_equal};

struct key_entry {
    uint8_t hashes[2 * SP_HASH_LEN]; /* the key: auth hash, then device hash */
    int rc;                          /* 0 or SP_ERR_CRYPTO */
    struct device_key *keys;
    size_t n;
    int64_t grace_ms;    /* the grace the entry was read with */
    int64_t valid_until; /* when the first retired key ages out; INT64_MAX */
};

static const struct keytab_type key_type = {.entry_size = sizeof(struct key_entry),
                                            .key_size = 2 * SP_HASH_LEN};

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
    struct keytab devs; /* struct dev_entry by serial */
    struct keytab keys; /* struct key_entry by hashes */
    /* The profiles' auth hashes, read at the first devcache_profile_known
     * after a change; few, so searched in a line. */
    uint8_t (*profiles)[SP_HASH_LEN];
    size_t nprofiles;
    int have_profiles;
};

static void empty(struct devcache *c)
{
    struct key_entry *e;

    for (size_t i = 0; (e = keytab_next(&c->keys, &i)) != NULL;)
        if (e->n)
            sodium_memzero(e->keys, e->n * sizeof(*e->keys));
    keytab_clear(&c->devs);
    keytab_clear(&c->keys);
    free(c->profiles);
    c->profiles = NULL;
    c->nprofiles = 0;
    c->have_profiles = 0;
    c->full = 0;
    arena_reset(&c->arena);
}

struct devcache *devcache_new(struct registry *r)
{
    struct devcache *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    if (keytab_init(&c->devs, &dev_type, SLOTS_MIN, SLOTS_MAX) ||
        keytab_init(&c->keys, &key_type, SLOTS_MIN, SLOTS_MAX)) {
        keytab_cleanup(&c->devs);
        free(c);
        return NULL;
    }
    c->reg = r;
    arena_init(&c->arena, ARENA_CAP);
    arena_init(&c->spill, SPILL_CAP);
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
    keytab_cleanup(&c->devs);
    keytab_cleanup(&c->keys);
    free(c);
}

/* Reads every profile's auth hash. Returns 0, SP_ERR_NOMEM or SP_ERR_DB. */
static int load_profiles(struct devcache *c)
{
    struct profile_info *list = NULL;
    struct arena a;
    size_t n = 0;
    int rc;

    arena_init(&a, ARENA_CAP);
    if (!(rc = registry_profile_list(c->reg, &a, &list, &n)) && n &&
        !(c->profiles = malloc(n * sizeof(*c->profiles))))
        rc = SP_ERR_NOMEM;
    for (size_t i = 0; !rc && i < n; i++)
        memcpy(c->profiles[i], list[i].auth_hash, SP_HASH_LEN);
    arena_cleanup(&a);
    if (rc)
        return rc;
    c->nprofiles = n;
    c->have_profiles = 1;
    return SP_OK;
}

int devcache_profile_known(struct devcache *c, const uint8_t auth_hash[SP_HASH_LEN])
{
    int rc;

    if (!c->have_profiles && (rc = load_profiles(c)))
        return rc;
    for (size_t i = 0; i < c->nprofiles; i++)
        if (sodium_memcmp(c->profiles[i], auth_hash, SP_HASH_LEN) == 0)
            return 1;
    return 0;
}

int devcache_sync(struct devcache *c)
{
    int64_t g;
    int rc = registry_generation(c->reg, &g);

    if (rc)
        return rc;
    if (!c->have_generation || g != c->generation || c->full) {
        if (keytab_count(&c->devs) || keytab_count(&c->keys))
            LOG_DEBUG("device cache emptied devices=%zu keysets=%zu reason=%s",
                      keytab_count(&c->devs), keytab_count(&c->keys),
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

/* The arena for a new entry's data: the cache's, or the spill when full
 * (table_full: the entry needs a slot its table does not have). */
static struct arena *room(struct devcache *c, int table_full)
{
    if (c->full || table_full || c->arena.total > ARENA_CAP / 2) {
        c->full = 1;
        return &c->spill;
    }
    return &c->arena;
}

int devcache_device(struct devcache *c, const char *serial, const struct device_info **out)
{
    size_t len = strlen(serial);
    uint64_t h = keytab_hash(&c->devs, serial, len);
    struct dev_entry *e = keytab_find(&c->devs, h, serial);
    void *slot;

    if (e) {
        *out = e->info;
        return e->rc;
    }
    /* Not cached (the spill): a copy that lives until the next sync. */
    struct arena *a = room(c, keytab_full(&c->devs));
    struct device_info *info = arena_alloc(a, sizeof(*info));
    if (!info)
        return SP_ERR_NOMEM;
    int rc = registry_device_get(c->reg, serial, a, info);
    if (rc && rc != SP_ERR_NODEVICE)
        return rc; /* a database error is not an answer to remember */
    *out = info;
    if (a == &c->spill)
        return rc;
    char *key = arena_strndup(a, serial, len);
    if (!key || keytab_put(&c->devs, h, serial, &slot) != KEYTAB_ADDED)
        return SP_ERR_NOMEM; /* room() saw that the table has or can make room */
    e = slot;
    e->serial = key;
    e->rc = rc;
    e->info = info;
    return rc;
}

/* Remembers keys read for an entry: a new one, or a stale one in place. */
static int keys_store(struct devcache *c, struct key_entry *e, const uint8_t *id, uint64_t h,
                      int rc, struct device_key *got, size_t ngot, int64_t grace_ms)
{
    void *slot;

    if (!e) {
        if (keytab_put(&c->keys, h, id, &slot) != KEYTAB_ADDED) {
            /* room() saw a free slot in a table that never grows: cannot happen. */
            sodium_memzero(got, ngot * sizeof(*got));
            return SP_ERR_NOMEM;
        }
        e = slot;
    }
    int64_t until = INT64_MAX;
    for (size_t k = 0; k < ngot; k++)
        if (got[k].retired_ms && got[k].retired_ms + grace_ms < until)
            until = got[k].retired_ms + grace_ms;
    e->rc = rc;
    e->keys = got;
    e->n = ngot;
    e->grace_ms = grace_ms;
    e->valid_until = until;
    return SP_OK;
}

/* Keeps keys handed out from the spill arena, to wipe at the next sync. */
static int keys_spill(struct devcache *c, struct device_key *got, size_t ngot)
{
    struct spilled *sp = arena_alloc(&c->spill, sizeof(*sp));

    if (!sp) {
        sodium_memzero(got, ngot * sizeof(*got));
        return SP_ERR_NOMEM;
    }
    *sp = (struct spilled){.keys = got, .n = ngot, .next = c->spilled};
    c->spilled = sp;
    return SP_OK;
}

int devcache_keys(struct devcache *c, const uint8_t auth_hash[SP_HASH_LEN],
                  const uint8_t device_hash[SP_HASH_LEN], int64_t now_ms, int64_t grace_ms,
                  const struct device_key **keys, size_t *n)
{
    uint8_t id[2 * SP_HASH_LEN];

    memcpy(id, auth_hash, SP_HASH_LEN);
    memcpy(id + SP_HASH_LEN, device_hash, SP_HASH_LEN);
    uint64_t h = keytab_hash(&c->keys, id, sizeof(id));
    struct key_entry *e = keytab_find(&c->keys, h, id);
    if (e && e->grace_ms == grace_ms && now_ms < e->valid_until) {
        *keys = e->keys;
        *n = e->n;
        return e->rc;
    }
    /* A miss, or an entry whose retired key has aged out: read again. A
     * stale entry's slot is reused in place (its keys wiped now, its other
     * bytes left in the arena until the next emptying). */
    if (e) {
        if (e->n)
            sodium_memzero(e->keys, e->n * sizeof(*e->keys));
        e->n = 0;
        e->valid_until = INT64_MIN; /* stale until rewritten below */
    }
    struct arena *a = room(c, !e && keytab_full(&c->keys));
    struct device_key *got = NULL;
    size_t ngot = 0;
    int rc = registry_keys_for(c->reg, auth_hash, device_hash, now_ms, grace_ms, a, &got, &ngot);
    if (rc && rc != SP_ERR_CRYPTO)
        return rc;
    *keys = got;
    *n = ngot;
    int rc2 = a == &c->spill ? keys_spill(c, got, ngot)
                             : keys_store(c, e, id, h, rc, got, ngot, grace_ms);
    return rc2 ? rc2 : rc;
}
