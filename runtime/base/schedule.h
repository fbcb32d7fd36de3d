/*
 * schedule.h - when a scheduled analysis is due. An analysis declares
 * schedule = "every 5m" (due at the multiples of the period since the Unix
 * epoch, so a restart does not shift them) or a 5-field cron expression in
 * UTC, "0 * * * *" (Vixie cron's syntax and day rule, or @hourly, @daily,
 * @midnight, @weekly, @monthly, @yearly, @annually).
 *
 * Times are Unix milliseconds in UTC: no time zones, no daylight saving. Pure
 * functions: no clock (the caller passes the time), no allocation, no global
 * state, so any thread may call them. Times from 0 (1970) to SCHEDULE_TIME_MAX
 * (the end of 9999) are supported; the functions return -1 outside them.
 */
#ifndef SP_SCHEDULE_H
#define SP_SCHEDULE_H

#include <stddef.h>
#include <stdint.h>

/* The last millisecond of 9999-12-31, the latest time a schedule handles. */
#define SCHEDULE_TIME_MAX 253402300799999LL

/* The shortest and longest period of "every": 1 s and 366 days. */
#define SCHEDULE_EVERY_MIN_MS 1000LL
#define SCHEDULE_EVERY_MAX_MS (366LL * 86400 * 1000)

/*
 * A parsed schedule: plain data, filled by schedule_parse(), caller-allocated
 * and copyable with =. The fields are for this module and its tests.
 */
struct schedule {
    int64_t every_ms;  /* the period of "every"; 0 for cron */
    uint64_t minutes;  /* cron: bit n set when minute n (0-59) matches */
    uint32_t hours;    /* bit n: hour n (0-23) */
    uint32_t mdays;    /* bit n: day of the month n (1-31) */
    uint16_t months;   /* bit n: month n (1-12) */
    uint8_t wdays;     /* bit n: day of the week n (0-6, 0 is Sunday) */
    uint8_t mday_star; /* 1 when the day-of-month field starts with '*' */
    uint8_t wday_star; /* 1 when the day-of-week field starts with '*' */
};

/*
 * Parses spec: "every N<unit>" (exactly one space, N a positive whole number,
 * unit s, m, h or d, a period from 1s to 366d), or five cron fields separated
 * by spaces: minute (0-59), hour (0-23), day of the month (1-31), month (1-12
 * or jan-dec), day of the week (0-7 or sun-sat; 0 and 7 are Sunday). A field
 * is a list of items separated by commas; an item is *, a value or a range
 * a-b, optionally followed by a step /n: every nth value of the * or the
 * range, or for a value a, of a to the field's largest value (Vixie's a/n).
 * Names are case-insensitive. When both day fields are restricted (neither
 * starts with '*') a day matches when either does, as in Vixie cron;
 * otherwise it must match both. Or one of @hourly, @daily, @midnight,
 * @weekly, @monthly, @yearly, @annually.
 *
 * Parameters:
 *   spec   the text, NUL-terminated (borrowed)
 *   out    OUT: the schedule, written only on success
 *   err    OUT: a short message naming the bad field on failure, e.g.
 *          "schedule: minute field: 61 is out of range 0-59" (may be NULL)
 *   errlen the size of err
 * Returns 0, or SP_ERR_INVAL (anything else: 6 fields, seconds, ?, L, W, #,
 * a value out of range, a reversed range, a step of 0, an empty list item,
 * trailing text, leading or trailing spaces).
 */
int schedule_parse(const char *spec, struct schedule *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * Returns the first due time strictly after after_ms (cron: a whole minute),
 * or -1 when after_ms is outside 0..SCHEDULE_TIME_MAX, when the schedule never
 * fires (e.g. "0 0 31 2 *"), or when its next time is past SCHEDULE_TIME_MAX.
 * Cron skips months, days and hours that do not match and looks at most one
 * 400-year Gregorian cycle ahead, after which the calendar repeats.
 */
int64_t schedule_next(const struct schedule *s, int64_t after_ms);

/*
 * Returns the last due time at or before now_ms (now_ms itself when it is
 * due), or -1 when now_ms is outside 0..SCHEDULE_TIME_MAX or no due time lies
 * between the epoch and now_ms.
 */
int64_t schedule_latest(const struct schedule *s, int64_t now_ms);

/*
 * Returns how many due times lie strictly between a_ms and b_ms, at most cap:
 * 0 when b_ms <= a_ms + 1 or cap <= 0, -1 when a_ms is outside
 * 0..SCHEDULE_TIME_MAX. Due times past SCHEDULE_TIME_MAX are not counted.
 * "every" counts by arithmetic; cron calls schedule_next up to cap times.
 */
int64_t schedule_count_between(const struct schedule *s, int64_t a_ms, int64_t b_ms, int64_t cap);

#endif
