/*
 * duration.c - "10m" and the like (duration.h).
 */
#include "duration.h"

#include <stddef.h>
#include <string.h>

static const struct {
    const char *unit;
    int64_t ms;
} units[] = {
    {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}, {"w", 604800000},
};

int duration_parse(const char *s, int64_t *ms)
{
    int64_t n = 0;
    const char *p = s;

    if (!s || *p < '0' || *p > '9')
        return -1;
    while (*p >= '0' && *p <= '9') {
        if (n > DURATION_MAX_MS)
            return -1;
        n = n * 10 + (*p++ - '0');
    }
    if (*p == '\0' && n == 0) {
        *ms = 0;
        return 0;
    }
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(p, units[i].unit) == 0) {
            if (n > DURATION_MAX_MS / units[i].ms)
                return -1;
            *ms = n * units[i].ms;
            return 0;
        }
    return -1;
}
