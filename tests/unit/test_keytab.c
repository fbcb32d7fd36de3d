/*
 * test_keytab.c - the hash table (runtime/base/keytab.c): scripted cases as data
 * (each a table size and a list of operations with hashes chosen to collide,
 * wrap around the end and fill the table), string keys, growth, and a random
 * run against a plain array model, checking the probe invariant after every
 * step.
 */
#include "check.h"
#include "base/keytab.h"

#include <sodium.h>

/* ---- fixed keys: a 4-byte id and a value ------------------------------------ */

struct item {
    uint32_t id; /* the key */
    uint32_t value;
};

static const struct keytab_type item_type = {.entry_size = sizeof(struct item),
                                             .key_size = sizeof(uint32_t)};

/*
 * Every entry is reachable: no free slot between its home and its slot.
 * Also counts the entries against keytab_count().
 */
static int invariant_ok(const struct keytab *t)
{
    size_t mask = t->slots - 1, n = 0;

    for (size_t i = 0; i < t->slots; i++) {
        if (!t->hashes[i])
            continue;
        n++;
        for (size_t j = (size_t)t->hashes[i] & mask; j != i; j = (j + 1) & mask)
            if (!t->hashes[j])
                return 0;
    }
    return n == keytab_count(t);
}

enum op { PUT, DEL, HAS, NOT };

struct step {
    enum op op;
    uint32_t id;
    uint64_t hash;
    int want; /* PUT: the keytab_put result */
};

struct script {
    const char *name;
    size_t min_slots, max_slots;
    struct step steps[24];
    size_t nsteps;
};

#define N(...) (sizeof((struct step[]){__VA_ARGS__}) / sizeof(struct step))
/* CASE(name, min_slots, max_slots, {op, id, hash, want}...) */
#define CASE(name, min, max, ...)                                                                  \
    {                                                                                              \
        name, min, max, {__VA_ARGS__}, N(__VA_ARGS__)                                              \
    }

static const struct script scripts[] = {
    CASE("put, find, delete", 8, 8, {PUT, 1, 1, KEYTAB_ADDED}, {PUT, 2, 2, KEYTAB_ADDED},
         {HAS, 1, 1, 0}, {HAS, 2, 2, 0}, {NOT, 3, 3, 0}, {PUT, 1, 1, KEYTAB_FOUND}, {DEL, 1, 1, 0},
         {NOT, 1, 1, 0}, {HAS, 2, 2, 0}),
    /* Same hash for all: the keys decide, and a delete in the middle of
     * the run pulls the later ones back. */
    CASE("colliding hashes", 16, 16, {PUT, 1, 5, KEYTAB_ADDED}, {PUT, 2, 5, KEYTAB_ADDED},
         {PUT, 3, 5, KEYTAB_ADDED}, {PUT, 4, 5, KEYTAB_ADDED}, {DEL, 2, 5, 0}, {HAS, 1, 5, 0},
         {NOT, 2, 5, 0}, {HAS, 3, 5, 0}, {HAS, 4, 5, 0}, {DEL, 1, 5, 0}, {HAS, 3, 5, 0},
         {HAS, 4, 5, 0}, {PUT, 2, 5, KEYTAB_ADDED}, {HAS, 2, 5, 0}),
    /* Homes 6 and 7 of 8 slots: the run wraps to slots 0 and 1. Deleting
     * slot 7 must pull the wrapped entries back across the end; an entry
     * at home in slot 0 must not move before its home. */
    CASE("wrap-around", 8, 8, {PUT, 1, 6, KEYTAB_ADDED}, {PUT, 2, 7, KEYTAB_ADDED},
         {PUT, 3, 6, KEYTAB_ADDED}, {PUT, 4, 0, KEYTAB_ADDED}, {DEL, 2, 7, 0}, {HAS, 1, 6, 0},
         {HAS, 3, 6, 0}, {HAS, 4, 0, 0}, {DEL, 1, 6, 0}, {HAS, 3, 6, 0}, {HAS, 4, 0, 0},
         {NOT, 2, 7, 0}, {PUT, 2, 7, KEYTAB_ADDED}, {HAS, 2, 7, 0}),
    /* 8 slots hold 4 entries; a present key is still found when full, and
     * a delete makes room again. */
    CASE("full table", 8, 8, {PUT, 1, 1, KEYTAB_ADDED}, {PUT, 2, 2, KEYTAB_ADDED},
         {PUT, 3, 3, KEYTAB_ADDED}, {PUT, 4, 3, KEYTAB_ADDED}, {PUT, 5, 5, KEYTAB_FULL},
         {NOT, 5, 5, 0}, {PUT, 3, 3, KEYTAB_FOUND}, {DEL, 3, 3, 0}, {HAS, 4, 3, 0},
         {PUT, 5, 5, KEYTAB_ADDED}, {HAS, 5, 5, 0}, {PUT, 6, 6, KEYTAB_FULL}),
    /* The same key again and again after deletes: one entry, same slot. */
    CASE("reuse after delete", 4, 4, {PUT, 9, 3, KEYTAB_ADDED}, {DEL, 9, 3, 0},
         {PUT, 9, 3, KEYTAB_ADDED}, {PUT, 8, 3, KEYTAB_ADDED}, {DEL, 9, 3, 0}, {HAS, 8, 3, 0},
         {PUT, 9, 3, KEYTAB_ADDED}, {PUT, 7, 3, KEYTAB_FULL}, {DEL, 8, 3, 0}, {DEL, 9, 3, 0},
         {PUT, 7, 3, KEYTAB_ADDED}),
    /* Growing from 2 to 8 slots keeps every entry; then it is full. */
    CASE("growth to the cap", 2, 8, {PUT, 1, 1, KEYTAB_ADDED}, {PUT, 2, 1, KEYTAB_ADDED},
         {PUT, 3, 7, KEYTAB_ADDED}, {PUT, 4, 15, KEYTAB_ADDED}, {PUT, 5, 2, KEYTAB_FULL},
         {HAS, 1, 1, 0}, {HAS, 2, 1, 0}, {HAS, 3, 7, 0}, {HAS, 4, 15, 0}),
};

static void run_step(struct keytab *t, const struct script *sc, size_t k)
{
    const struct step *s = &sc->steps[k];
    struct item *e = NULL;
    void *p = NULL;
    int rc;

    switch (s->op) {
    case PUT:
        rc = keytab_put(t, s->hash, &s->id, &p);
        if (rc != s->want)
            fprintf(stderr, "%s: step %zu: put %u -> %d\n", sc->name, k, s->id, rc);
        CHECK_EQ_INT(rc, s->want);
        if (rc == KEYTAB_ADDED) {
            e = p;
            CHECK_EQ_INT(e->id, s->id);
            CHECK_EQ_INT(e->value, 0);
            e->value = s->id * 10;
        }
        break;
    case DEL:
        e = keytab_find(t, s->hash, &s->id);
        CHECK(e != NULL);
        if (e)
            keytab_delete(t, e);
        break;
    case HAS:
        e = keytab_find(t, s->hash, &s->id);
        if (!e)
            fprintf(stderr, "%s: step %zu: %u missing\n", sc->name, k, s->id);
        CHECK(e && e->id == s->id && e->value == s->id * 10);
        break;
    case NOT:
        CHECK(keytab_find(t, s->hash, &s->id) == NULL);
        break;
    }
    CHECK(invariant_ok(t));
}

static void test_scripts(void)
{
    for (size_t c = 0; c < sizeof scripts / sizeof scripts[0]; c++) {
        struct keytab t;
        CHECK_EQ_INT(keytab_init(&t, &item_type, scripts[c].min_slots, scripts[c].max_slots), 0);
        for (size_t k = 0; k < scripts[c].nsteps; k++)
            run_step(&t, &scripts[c], k);
        keytab_cleanup(&t);
    }
}

/* Iteration visits each entry once; clear empties and keeps working. */
static void test_next_and_clear(void)
{
    struct keytab t;
    struct item *e;
    uint32_t seen = 0;
    size_t n = 0;

    CHECK_EQ_INT(keytab_init(&t, &item_type, 16, 16), 0);
    for (uint32_t id = 0; id < 8; id++) {
        void *p;
        CHECK_EQ_INT(keytab_put(&t, keytab_hash(&t, &id, sizeof id), &id, &p), KEYTAB_ADDED);
    }
    CHECK(keytab_full(&t));
    for (size_t i = 0; (e = keytab_next(&t, &i)) != NULL; n++)
        seen |= 1u << e->id;
    CHECK_EQ_INT(n, 8);
    CHECK_EQ_INT(seen, 0xff);
    keytab_clear(&t);
    CHECK_EQ_INT(keytab_count(&t), 0);
    size_t i = 0;
    CHECK(keytab_next(&t, &i) == NULL);
    uint32_t id = 3;
    CHECK(keytab_find(&t, keytab_hash(&t, &id, sizeof id), &id) == NULL);
    void *p;
    CHECK_EQ_INT(keytab_put(&t, keytab_hash(&t, &id, sizeof id), &id, &p), KEYTAB_ADDED);
    keytab_cleanup(&t);
    keytab_cleanup(&t); /* twice is harmless */
}

/* Deleting while iterating, with runs that wrap around the end: every odd
 * id goes, every even one is seen and stays. */
static void test_delete_while_iterating(void)
{
    struct keytab t;
    struct item *e;
    uint32_t seen = 0;
    void *p;

    CHECK_EQ_INT(keytab_init(&t, &item_type, 32, 32), 0);
    for (uint32_t id = 0; id < 16; id++)
        CHECK_EQ_INT(keytab_put(&t, 28 + id % 6, &id, &p), KEYTAB_ADDED);
    for (size_t i = 0; (e = keytab_next(&t, &i)) != NULL;) {
        if (e->id % 2) {
            keytab_delete(&t, e);
            i--;
        } else {
            seen |= 1u << e->id;
        }
    }
    CHECK_EQ_INT(seen, 0x5555);
    CHECK_EQ_INT(keytab_count(&t), 8);
    CHECK(invariant_ok(&t));
    for (uint32_t id = 0; id < 16; id++)
        CHECK((keytab_find(&t, 28 + id % 6, &id) != NULL) == (id % 2 == 0));
    keytab_cleanup(&t);
}

/* ---- string keys through key_equal ----------------------------------------- */

struct named {
    const char *name; /* the key: the entry points to it */
    int n;
};

static int named_equal(const void *entry, const void *key)
{
    return strcmp(((const struct named *)entry)->name, key) == 0;
}

static const struct keytab_type named_type = {.entry_size = sizeof(struct named),
                                              .key_equal = named_equal};

static void test_string_keys(void)
{
    static const char *const names[] = {"sensor-1", "sensor-2", "gate", "a", ""};
    struct keytab t;
    void *p;

    CHECK_EQ_INT(keytab_init(&t, &named_type, 2, 64), 0);
    for (size_t i = 0; i < 5; i++) {
        uint64_t h = keytab_hash(&t, names[i], strlen(names[i]));
        CHECK_EQ_INT(keytab_put(&t, h, names[i], &p), KEYTAB_ADDED);
        ((struct named *)p)->name = names[i];
        ((struct named *)p)->n = (int)i;
    }
    char buf[16];
    snprintf(buf, sizeof buf, "%s", "gate"); /* another copy: compared by value */
    struct named *e = keytab_find(&t, keytab_hash(&t, buf, 4), buf);
    CHECK(e && e->n == 2);
    CHECK(keytab_find(&t, keytab_hash(&t, "gat", 3), "gat") == NULL);
    CHECK_EQ_INT(keytab_put(&t, keytab_hash(&t, buf, 4), buf, &p), KEYTAB_FOUND);
    CHECK(p == e);
    CHECK(invariant_ok(&t));
    keytab_cleanup(&t);
}

/* The keyed hash: deterministic per table, different between tables. */
static void test_hash_keyed(void)
{
    struct keytab a, b;
    const char msg[] = "same input";

    CHECK_EQ_INT(keytab_init(&a, &item_type, 2, 2), 0);
    CHECK_EQ_INT(keytab_init(&b, &item_type, 2, 2), 0);
    CHECK(keytab_hash(&a, msg, sizeof msg) == keytab_hash(&a, msg, sizeof msg));
    CHECK(keytab_hash(&a, msg, sizeof msg) != keytab_hash(&b, msg, sizeof msg));
    keytab_cleanup(&a);
    keytab_cleanup(&b);
}

/* ---- a random run against an array model ---------------------------------- */

#define MODEL_KEYS 200

/* Few distinct hashes: long runs, collisions and wrap-around everywhere. */
static uint64_t weak_hash(uint32_t id)
{
    return (uint64_t)(id * 2654435761u) >> 27;
}

static int model_step(struct keytab *t, int present[MODEL_KEYS])
{
    uint32_t id = randombytes_uniform(MODEL_KEYS);
    uint64_t h = weak_hash(id);
    struct item *e = keytab_find(t, h, &id);
    void *p;

    if ((e != NULL) != present[id])
        return 0;
    if (e && randombytes_uniform(2)) {
        keytab_delete(t, e);
        present[id] = 0;
    } else {
        int rc = keytab_put(t, h, &id, &p);
        if (rc == KEYTAB_ADDED) {
            ((struct item *)p)->value = id;
            present[id] = 1;
        } else if (rc == KEYTAB_FULL ? !keytab_full(t) || present[id] : rc != KEYTAB_FOUND) {
            return 0;
        }
    }
    return invariant_ok(t);
}

static void test_model(void)
{
    static const size_t sizes[][2] = {{2, 64}, {64, 64}, {128, 256}};

    for (size_t s = 0; s < 3; s++) {
        struct keytab t;
        int present[MODEL_KEYS] = {0}, ok = 1;
        CHECK_EQ_INT(keytab_init(&t, &item_type, sizes[s][0], sizes[s][1]), 0);
        for (int step = 0; step < 20000 && ok; step++)
            ok = model_step(&t, present);
        CHECK(ok);
        for (uint32_t id = 0; id < MODEL_KEYS; id++) {
            struct item *e = keytab_find(&t, weak_hash(id), &id);
            CHECK((e != NULL) == present[id] && (!e || e->value == id));
        }
        keytab_cleanup(&t);
    }
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    RUN(test_scripts);
    RUN(test_next_and_clear);
    RUN(test_delete_while_iterating);
    RUN(test_string_keys);
    RUN(test_hash_keyed);
    RUN(test_model);
    return check_done();
}
