/*
 * arena.h - bump allocator for per-batch scratch memory.
 *
 * Everything derived from one batch of messages (decoded bodies, records,
 * strings) is allocated here and released at once with arena_reset() after
 * the batch is committed. An arena has a cap: allocation past it fails like
 * an out-of-memory condition, so a hostile payload cannot grow it without
 * bound. Not thread-safe; one arena per thread.
 */
#ifndef SP_ARENA_H
#define SP_ARENA_H

#include <stddef.h>

struct arena_block;

/* The largest block arena_reset() keeps for reuse; larger ones go back to
 * the system, so one big batch does not pin its memory forever. */
#ifndef ARENA_KEEP_MAX
#define ARENA_KEEP_MAX (8u * 1024 * 1024)
#endif

struct arena {
    struct arena_block *head; /* current block; older blocks chain behind it */
    size_t total;             /* bytes held in blocks, used or not */
    size_t used;              /* bytes handed out since the last reset */
    size_t cap;               /* most bytes the arena may hold */
};

/* Initializes an empty arena that will hold at most cap bytes. */
void arena_init(struct arena *a, size_t cap);
/* Frees every block. The arena can be reused after arena_init(). */
void arena_cleanup(struct arena *a);
/* Frees all allocations. Keeps the newest block for reuse when it is at most
 * ARENA_KEEP_MAX bytes; frees it too otherwise. */
void arena_reset(struct arena *a);
/* Bytes handed out since the last reset (what a batch holds, as opposed to
 * a->total, what the arena holds). */
static inline size_t arena_used(const struct arena *a)
{
    return a->used;
}

/* 16-byte aligned, uninitialized. NULL when out of memory or over the cap. */
void *arena_alloc(struct arena *a, size_t n);
/* Zeroed allocation of n * size bytes; NULL on overflow, OOM or over the cap. */
void *arena_calloc(struct arena *a, size_t n, size_t size);
/* Copy of n bytes plus a terminating NUL (so binary data is also a C string). */
char *arena_strndup(struct arena *a, const char *s, size_t n);
char *arena_strdup(struct arena *a, const char *s);
/* printf into the arena. NULL on failure. */
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
