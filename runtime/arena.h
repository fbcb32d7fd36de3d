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

struct arena {
    struct arena_block *head; /* current block; older blocks chain behind it */
    size_t total;             /* bytes held in blocks */
    size_t cap;               /* most bytes the arena may hold */
};

/* Initializes an empty arena that will hold at most cap bytes. */
void arena_init(struct arena *a, size_t cap);
/* Frees every block. The arena can be reused after arena_init(). */
void arena_cleanup(struct arena *a);
/* Frees all allocations but keeps the first block for reuse. */
void arena_reset(struct arena *a);

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
