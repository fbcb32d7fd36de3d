/*
 * duration.h - lengths of time as users write them: a whole number and a
 * unit, "500ms", "30s", "10m", "1h", "7d", "2w". One parser for every option
 * and command that takes one (inspect --since, query's relative times,
 * retention, dead-letter --since).
 */
#ifndef SP_DURATION_H
#define SP_DURATION_H

#include <stdint.h>

#define DURATION_MAX_MS (100LL * 365 * 86400 * 1000) /* a century */

/* s as milliseconds into *ms: 0, or -1 when s is not a duration (a unit is
 * required; 0 without one is accepted as 0). */
int duration_parse(const char *s, int64_t *ms);

#endif
