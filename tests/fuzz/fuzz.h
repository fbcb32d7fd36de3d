/*
 * fuzz.h - shared by the libFuzzer targets in tests/fuzz/ (built with
 * -DSEALPIPE_FUZZ=ON, run by scripts/fuzz): the entry points libFuzzer calls
 * and FUZZ_CHECK, which turns a broken invariant into abort(). libFuzzer
 * reports the abort as a crash and saves the input; assert() would vanish
 * under NDEBUG.
 */
#ifndef SP_FUZZ_H
#define SP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A broken invariant that needs no condition (the caller printed the details). */
#define FUZZ_FAIL(what)                                                                            \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, what);                \
        abort();                                                                                   \
    } while (0)

/* An exact-size heap copy of the input, so AddressSanitizer sees a read past its end. */
static inline char *fuzz_copy(const uint8_t *data, size_t size)
{
    char *p = malloc(size ? size : 1);

    FUZZ_CHECK(p != NULL);
    if (size)
        memcpy(p, data, size);
    return p;
}

#endif
