/*
 * aname.h - the shape of an analysis name: its file name without ".lua",
 * 1-ANAME_MAX bytes of letters, digits, '_' and '-'. One rule for the host
 * (loading), run_analysis() and the daemon's check of a worker's reply.
 */
#ifndef SP_ANAME_H
#define SP_ANAME_H

#include <stddef.h>

#define ANAME_MAX 64

/* 1 when s[0..n) is an analysis name. */
static inline int aname_valid(const char *s, size_t n)
{
    if (!s || n == 0 || n > ANAME_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

#endif
