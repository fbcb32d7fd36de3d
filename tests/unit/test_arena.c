/*
 * test_arena.c - unit tests for the per-batch bump allocator (runtime/base/arena.c):
 * alignment, the cap behaving like out-of-memory, zeroing, string copies and
 * reset keeping one block for reuse. Run under ASan so any overrun of a
 * returned block is caught.
 */
#include <stdint.h>
#include <string.h>

#include "base/arena.h"
#include "check.h"

static void test_alignment(void)
{
    struct arena a;
    static const size_t sizes[] = {1, 3, 15, 16, 17, 100, 4095, 1};

    arena_init(&a, 1024 * 1024);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        unsigned char *p = arena_alloc(&a, sizes[i]);
        CHECK(p != NULL);
        if (!p)
            continue;
        CHECK((uintptr_t)p % 16 == 0);
        memset(p, 0xAB, sizes[i]); /* ASan flags an undersized block */
    }
    CHECK(arena_alloc(&a, 0) != NULL);
    CHECK((uintptr_t)arena_alloc(&a, 0) % 16 == 0);
    arena_cleanup(&a);
}

static void test_distinct(void)
{
    struct arena a;

    arena_init(&a, 1024 * 1024);
    char *x = arena_alloc(&a, 10), *y = arena_alloc(&a, 10);
    CHECK(x && y && x != y);
    if (x && y) {
        CHECK(x + 16 <= y || y + 16 <= x);
    }
    arena_cleanup(&a);
}

static void test_cap(void)
{
    struct arena a;
    size_t got = 0;

    arena_init(&a, 64 * 1024);
    CHECK(arena_alloc(&a, 100 * 1024) == NULL);
    CHECK(arena_alloc(&a, 64 * 1024 + 1) == NULL);
    for (int i = 0; i < 1000; i++) {
        if (!arena_alloc(&a, 1024))
            break;
        got += 1024;
    }
    CHECK(got > 0);
    CHECK(got <= 64 * 1024);
    CHECK(a.total <= a.cap);
    /* Failure is not sticky for a request that still fits somewhere. */
    CHECK(arena_alloc(&a, 1024 * 1024) == NULL);
    arena_cleanup(&a);

    arena_init(&a, 0);
    CHECK(arena_alloc(&a, 1) == NULL);
    CHECK(arena_strdup(&a, "x") == NULL);
    arena_cleanup(&a);
}

static void test_calloc(void)
{
    struct arena a;

    arena_init(&a, 1024 * 1024);
    unsigned char *p = arena_alloc(&a, 64);
    CHECK(p != NULL);
    if (p)
        memset(p, 0xFF, 64);
    arena_reset(&a); /* the next block reuses dirty memory */
    unsigned char *z = arena_calloc(&a, 8, 8);
    CHECK(z != NULL);
    int zero = 1;
    for (size_t i = 0; z && i < 64; i++)
        zero &= z[i] == 0;
    CHECK(zero);
    CHECK(arena_calloc(&a, SIZE_MAX / 2, 4) == NULL);
    CHECK(arena_calloc(&a, SIZE_MAX, SIZE_MAX) == NULL);
    arena_cleanup(&a);
}

static void test_strings(void)
{
    struct arena a;
    char big[600];

    arena_init(&a, 1024 * 1024);
    char *s = arena_strndup(&a, "ab\0cd", 5);
    CHECK(s != NULL);
    if (s) {
        CHECK_EQ_MEM(s, "ab\0cd", 5);
        CHECK(s[5] == '\0');
    }
    CHECK_EQ_STR(arena_strdup(&a, "hello"), "hello");
    CHECK_EQ_STR(arena_strndup(&a, "hello", 0), "");
    CHECK_EQ_STR(arena_printf(&a, "%d-%s", 42, "x"), "42-x");
    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char *p = arena_printf(&a, "<%s>", big);
    CHECK(p != NULL && strlen(p) == sizeof(big) + 1);
    CHECK(arena_strndup(&a, "x", SIZE_MAX) == NULL);
    arena_cleanup(&a);
}

static void test_reset(void)
{
    struct arena a;

    arena_init(&a, 8 * 1024 * 1024);
    arena_reset(&a); /* empty arena: no-op */
    CHECK(a.total == 0);
    int ok = 1;
    for (int i = 0; i < 200; i++)
        ok &= arena_alloc(&a, 1000) != NULL;
    CHECK(ok);
    size_t before = a.total;
    CHECK(before >= 200 * 1000);
    arena_reset(&a);
    CHECK(a.total > 0);
    CHECK(a.total <= before);
    /* The kept block serves the next allocations without growing. */
    size_t kept = a.total;
    void *p = arena_alloc(&a, 1000);
    CHECK(p != NULL);
    CHECK(a.total == kept);
    void *q;
    arena_reset(&a);
    q = arena_alloc(&a, 1000);
    CHECK(p == q);
    arena_cleanup(&a);
    CHECK(a.total == 0 && a.head == NULL);
    /* Usable again after init. */
    arena_init(&a, 1024);
    CHECK(arena_alloc(&a, 100) != NULL);
    arena_cleanup(&a);
}

/*
 * After a batch that grew a large block, reset gives the memory back: the
 * arena holds no more than ARENA_KEEP_MAX afterwards, and what it holds is
 * free for the next batch. (A kept 16 MiB block once made the daemon's
 * "arena is full, stop reading" check true forever.)
 */
static void test_reset_after_big_batch(void)
{
    struct arena a;

    arena_init(&a, 256u * 1024 * 1024);
    int ok = 1;
    for (int i = 0; i < 100; i++)
        ok &= arena_alloc(&a, 256 * 1024 + 7) != NULL;
    CHECK(ok);
    CHECK(arena_alloc(&a, 20u * 1024 * 1024) != NULL);
    CHECK(arena_used(&a) >= 20u * 1024 * 1024 + 100 * 256 * 1024);
    arena_reset(&a);
    CHECK(arena_used(&a) == 0);
    CHECK(a.total <= ARENA_KEEP_MAX);
    /* Small batches after it still reuse one block. */
    CHECK(arena_alloc(&a, 100) != NULL);
    CHECK(arena_used(&a) == 112); /* 100 rounded up to 16 */
    arena_reset(&a);
    CHECK(arena_used(&a) == 0);
    CHECK(a.total <= ARENA_KEEP_MAX);
    arena_cleanup(&a);
}

int main(void)
{
    RUN(test_alignment);
    RUN(test_distinct);
    RUN(test_cap);
    RUN(test_calloc);
    RUN(test_strings);
    RUN(test_reset);
    RUN(test_reset_after_big_batch);
    return check_done();
}
