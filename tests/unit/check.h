/*
 * check.h - the unit-test harness: assertions that count, and a closing line.
 *
 *     #include "check.h"
 *     static void test_x(void) { CHECK(1 + 1 == 2); CHECK_EQ_INT(f(), 3); }
 *     int main(void) { RUN(test_x); return check_done(); }
 *
 * check_done() prints "N passed, N failed" (the closing line CI reads) and
 * returns the exit status.
 */
#ifndef SP_CHECK_H
#define SP_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed, check_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond) {                                                                                \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                         \
    do {                                                                                           \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);                            \
        if (check_a_ == check_b_) {                                                                \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: CHECK_EQ_INT failed: %s == %lld, expected %s == %lld\n",       \
                    __FILE__, __LINE__, #a, check_a_, #b, check_b_);                               \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                         \
    do {                                                                                           \
        const char *check_a_ = (a), *check_b_ = (b);                                               \
        if (check_a_ && check_b_ && strcmp(check_a_, check_b_) == 0) {                             \
            check_passed++;                                                                        \
        } else {                                                                                   \
            check_failed++;                                                                        \
            fprintf(stderr, "%s:%d: CHECK_EQ_STR failed: %s = \"%s\", expected \"%s\"\n",          \
                    __FILE__, __LINE__, #a, check_a_ ? check_a_ : "(null)",                        \
                    check_b_ ? check_b_ : "(null)");                                               \
        }                                                                                          \
    } while (0)

#define CHECK_EQ_MEM(a, b, n) CHECK(memcmp((a), (b), (n)) == 0)

#define RUN(fn)                                                                                    \
    do {                                                                                           \
        int check_before_ = check_failed;                                                          \
        fn();                                                                                      \
        if (check_failed != check_before_)                                                         \
            fprintf(stderr, "FAIL %s\n", #fn);                                                     \
    } while (0)

static inline int check_done(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
