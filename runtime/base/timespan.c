/*
 * timespan.c - lengths of time ("7d") and instants ("2026-12-01", "1h" ago)
 * typed by users; see timespan.h. Date-times are record.c's ISO 8601 parser,
 * so a time means the same on a command line as in a record.
 */
#include "timespan.h"

#include <stdio.h>
#include <string.h>

#include "errors.h"
#include "record.h"

int timespan_parse(const char *s, int64_t *ms)
{
    int64_t n = 0, unit;
    size_t i = 0;

    if (!s)
        return SP_ERR_INVAL;
    for (; s[i] >= '0' && s[i] <= '9'; i++) {
        n = n * 10 + (s[i] - '0');
        if (n > TIMESPAN_MAX_MS / 1000)
            return SP_ERR_INVAL;
    }
    if (i == 0 || n == 0 || s[i + (s[i] != '\0')] != '\0')
        return SP_ERR_INVAL;
    switch (s[i]) {
    case 's':
        unit = 1000;
        break;
    case 'm':
        unit = 60 * 1000;
        break;
    case 'h':
        unit = 3600 * 1000;
        break;
    case 'd':
        unit = 86400 * 1000;
        break;
    case 'w':
        unit = 7LL * 86400 * 1000;
        break;
    default:
        return SP_ERR_INVAL;
    }
    if (n > TIMESPAN_MAX_MS / unit)
        return SP_ERR_INVAL;
    *ms = n * unit;
    return SP_OK;
}

int timespan_parse_instant(const char *s, int64_t now_ms, int64_t *ms)
{
    char day[32];
    int64_t span;
    size_t n;

    if (!s)
        return SP_ERR_INVAL;
    if (timespan_parse(s, &span) == SP_OK) {
        *ms = now_ms - span;
        return SP_OK;
    }
    n = strlen(s);
    /* A date alone is its midnight UTC: the ISO parser wants a time. */
    if (n == 10) {
        memcpy(day, s, n);
        memcpy(day + n, "T00:00:00Z", sizeof "T00:00:00Z");
        s = day;
        n = strlen(day);
    } else if (n >= 16 && n < sizeof day - 3 && s[13] == ':' && (n == 16 || s[16] != ':')) {
        /* YYYY-MM-DDTHH:MM and a zone, if any: seconds added. */
        snprintf(day, sizeof day, "%.16s:00%s", s, s + 16);
        s = day;
        n = strlen(day);
    }
    return iso8601_parse(s, n, ms) == SP_OK ? SP_OK : SP_ERR_INVAL;
}
