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

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
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

#define CHECK_FILE_MAX (1024 * 1024)

/* The first CHECK_FILE_MAX bytes of a file, NUL-terminated (free() it), or NULL. */
static inline char *check_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return NULL;
    }
    char *p = malloc(CHECK_FILE_MAX + 1);
    size_t n = p ? fread(p, 1, CHECK_FILE_MAX, f) : 0;
    fclose(f);
    if (p)
        p[n] = '\0';
    *len = n;
    return p;
}

/* Case files: the next line that is neither empty nor a '#' comment; 0 at the end. */
static inline int check_next_case(const char **cur, const char *end, const char **line, size_t *n)
{
    while (*cur < end) {
        const char *s = *cur;
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *e = nl ? nl : end;
        *cur = nl ? nl + 1 : end;
        if (e == s || s[0] == '#')
            continue;
        *line = s;
        *n = (size_t)(e - s);
        return 1;
    }
    return 0;
}

/*
 * Case files of pairs (an input line, then its expected line): calls run on
 * each pair and returns how many pairs run counted (it returns 1 for a case
 * that ran to the end, 0 for one it gave up on).
 */
static inline size_t check_each_pair(const char *path,
                                     int (*run)(void *ctx, const char *in, size_t in_n,
                                                const char *want, size_t want_n),
                                     void *ctx)
{
    size_t len, in_n = 0, want_n = 0, cases = 0;
    const char *in = NULL, *want = NULL;
    char *text = check_slurp(path, &len);

    CHECK(text != NULL);
    if (!text)
        return 0;
    const char *cur = text, *end = text + len;
    while (check_next_case(&cur, end, &in, &in_n)) {
        CHECK(check_next_case(&cur, end, &want, &want_n));
        cases += (size_t)run(ctx, in, in_n, want, want_n);
    }
    free(text);
    return cases;
}

/*
 * Case folders: calls run_file on each *.txt file in dir, which returns how
 * many cases the file held (each must hold one) or -1 if it cannot read it.
 * The counts go to stderr under label; returns the number of files.
 */
static inline int check_each_file(const char *dir, const char *label,
                                  int (*run_file)(const char *path))
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int files = 0, cases = 0;

    CHECK(d != NULL);
    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        char path[1024];
        size_t n = strlen(e->d_name);
        int c;

        if (n < 5 || strcmp(e->d_name + n - 4, ".txt") != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        c = run_file(path);
        CHECK(c > 0);
        fprintf(stderr, "%s: %s: %d cases\n", label, e->d_name, c);
        cases += c;
        files++;
    }
    closedir(d);
    fprintf(stderr, "%s: %d files, %d cases\n", label, files, cases);
    return files;
}

static inline int check_done(void)
{
    printf("%d passed, %d failed\n", check_passed, check_failed);
    return check_failed ? 1 : 0;
}

#endif
