/*
 * timespan.h - the times and lengths of time a user types on a command line:
 * "30s", "10m", "1h", "7d", "2w" for a length, and for an instant an ISO 8601
 * date-time (record.h's iso8601_parse: 2026-12-01T10:00:00Z, with an offset,
 * or no zone for UTC), a date alone (2026-12-01, midnight UTC), or a length
 * meaning that long before now (TagoIO's relative start_date/end_date).
 *
 * Pure functions: the caller passes "now", so tests need no clock. Used by
 * every command that takes a time: query, inspect --since, dead-letter
 * --since, the retention option.
 */
#ifndef SP_TIMESPAN_H
#define SP_TIMESPAN_H

#include <stdint.h>

/* The longest length accepted: 100 years of 365 days. */
#define TIMESPAN_MAX_MS (100LL * 365 * 86400 * 1000)

/*
 * Parses a length: a positive whole number followed by one unit, s (seconds),
 * m (minutes), h (hours), d (days of 24 h) or w (weeks), e.g. "90d", at most
 * TIMESPAN_MAX_MS. Returns 0 with *ms, or SP_ERR_INVAL (zero, a sign, a
 * fraction, no unit, another unit, too long).
 */
int timespan_parse(const char *s, int64_t *ms) __attribute__((warn_unused_result));

/*
 * Parses an instant: a length (now_ms minus it), a date YYYY-MM-DD (its
 * midnight UTC), or an ISO 8601 date-time (seconds may be left out:
 * 2026-12-01T10:00Z). Returns 0 with *ms (Unix
 * milliseconds), or SP_ERR_INVAL.
 */
int timespan_parse_instant(const char *s, int64_t now_ms, int64_t *ms)
    __attribute__((warn_unused_result));

#endif
