/*
 * arena.c - bump allocator with a cap (see arena.h).
 *
 * Blocks grow geometrically from 16 KiB; a request larger than the standard
 * block gets a block of its own. Reset keeps the newest block, which is the
 * largest, so a steady workload stops calling malloc after warm-up; a block
 * over ARENA_KEEP_MAX is freed instead, so the memory of an exceptional batch
 * goes back to the system (large blocks are mapped by malloc, whose threshold
 * `sealpipe run` fixes: see main.c).
 */
#include "arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_MIN_BLOCK (16 * 1024)
/* Growth stops doubling here: a batch that needs 100 MiB takes 8 MiB blocks
 * rather than a 64 MiB one after a full 32 MiB one, which would waste up to
 * half of the cap. A larger request still gets a block of its own. */
#define ARENA_MAX_BLOCK ARENA_KEEP_MAX
#define ARENA_ALIGN     16

struct arena_block {
    struct arena_block *prev;
    size_t size; /* usable bytes in data[] */
    size_t used;
    _Alignas(ARENA_ALIGN) unsigned char data[];
};

void arena_init(struct arena *a, size_t cap)
{
    a->head = NULL;
    a->total = 0;
    a->used = 0;
    a->cap = cap;
}

void arena_cleanup(struct arena *a)
{
    struct arena_block *b = a->head;

    while (b) {
        struct arena_block *prev = b->prev;
        free(b);
        b = prev;
    }
    a->head = NULL;
    a->total = 0;
    a->used = 0;
}

void arena_reset(struct arena *a)
{
    struct arena_block *keep = a->head;

    if (keep && keep->size > ARENA_KEEP_MAX) {
        arena_cleanup(a);
        return;
    }
    a->used = 0;
    if (!keep)
        return;
    struct arena_block *b = keep->prev;
    while (b) {
        struct arena_block *prev = b->prev;
        a->total -= b->size;
        free(b);
        b = prev;
    }
    keep->prev = NULL;
    keep->used = 0;
}

void *arena_alloc(struct arena *a, size_t n)
{
    struct arena_block *b = a->head;

    n = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    if (n == 0)
        n = ARENA_ALIGN;
    if (b && b->size - b->used >= n) {
        void *p = b->data + b->used;
        b->used += n;
        a->used += n;
        return p;
    }
    size_t size = b ? b->size * 2 : ARENA_MIN_BLOCK;
    if (size > ARENA_MAX_BLOCK)
        size = ARENA_MAX_BLOCK;
    if (size < n)
        size = n;
    if (size > a->cap - a->total || a->total > a->cap) {
        size = n; /* try the exact size before giving up */
        if (size > a->cap - a->total || a->total > a->cap)
            return NULL;
    }
    struct arena_block *nb = malloc(sizeof(*nb) + size);
    if (!nb)
        return NULL;
    nb->prev = b;
    nb->size = size;
    nb->used = n;
    a->head = nb;
    a->total += size;
    a->used += n;
    return nb->data;
}

void *arena_calloc(struct arena *a, size_t n, size_t size)
{
    if (size && n > SIZE_MAX / size)
        return NULL;
    void *p = arena_alloc(a, n * size);
    if (p)
        memset(p, 0, n * size);
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    if (n == SIZE_MAX)
        return NULL;
    char *p = arena_alloc(a, n + 1);
    if (!p)
        return NULL;
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *arena_strdup(struct arena *a, const char *s)
{
    return arena_strndup(a, s, strlen(s));
}

char *arena_printf(struct arena *a, const char *fmt, ...)
{
    va_list ap;
    char small[256];

    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    if ((size_t)n < sizeof(small))
        return arena_strndup(a, small, (size_t)n);
    char *p = arena_alloc(a, (size_t)n + 1);
    if (!p)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}
