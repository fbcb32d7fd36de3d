/*
 * schedule.c - "every 5m" and 5-field cron schedules in UTC, and their due
 * times (see schedule.h). Parsing turns a cron expression into one bit set
 * per field; the searches then walk the calendar a month, a day or an hour at
 * a time, skipping what does not match, so a schedule due once a year costs
 * a few hundred steps, not half a million minutes. The calendar is
 * civil.h's arithmetic, not libc's timegm/gmtime, so the answers are the
 * same on every platform. Pure: no clock, no allocation,
 * no state.
 */
#include "schedule.h"
#include "civil.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "errors.h"

#define MS_PER_MIN  60000LL
#define MS_PER_DAY  86400000LL
#define MIN_PER_DAY 1440
/* The day of SCHEDULE_TIME_MAX, in days since 1970-01-01. */
#define MAX_DAY (SCHEDULE_TIME_MAX / MS_PER_DAY)
/*
 * The Gregorian calendar repeats every 400 years, weekdays included (146097
 * days is exactly 20871 weeks): a cron schedule that does not fire in that
 * many days never fires, so no search looks further.
 */
#define CYCLE_DAYS 146097

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        int n = snprintf(err, errlen, "schedule: ");
        if (n >= 0 && (size_t)n < errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return SP_ERR_INVAL;
}

/* ------------------------------------------------------------------------ */
/* "every N<unit>"                                                          */

static int parse_every(const char *spec, struct schedule *out, char *err, size_t errlen)
{
    static const struct {
        char unit;
        int64_t ms;
    } units[] = {{'s', 1000}, {'m', 60000}, {'h', 3600000}, {'d', 86400000}};
    const char *p = spec + strlen("every");
    int64_t n = 0, unit = 0;

    if (p[0] != ' ' || p[1] < '0' || p[1] > '9')
        return fail(err, errlen, "expected \"every <N><s|m|h|d>\", e.g. \"every 5m\"");
    /* Saturates past the longest period, so no overflow and still too long. */
    for (p++; *p >= '0' && *p <= '9'; p++)
        if (n <= SCHEDULE_EVERY_MAX_MS / 1000)
            n = n * 10 + (*p - '0');
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (*p == units[i].unit)
            unit = units[i].ms;
    if (unit == 0 || p[1] != '\0')
        return fail(err, errlen, "expected \"every <N><s|m|h|d>\", e.g. \"every 5m\"");
    if (n > SCHEDULE_EVERY_MAX_MS / unit || n * unit < SCHEDULE_EVERY_MIN_MS)
        return fail(err, errlen, "every: the period must be 1s to 366d");
    memset(out, 0, sizeof *out);
    out->every_ms = n * unit;
    return SP_OK;
}

/* ------------------------------------------------------------------------ */
/* Cron fields                                                              */

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul",
                                          "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const day_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

/* One cron field: its name in messages, its values, and names[i] meaning min + i. */
struct field {
    const char *name;
    int min, max;
    const char *const *names;
};

static const struct field fields[5] = {
    {"minute", 0, 59, NULL},          {"hour", 0, 23, NULL},
    {"day-of-month", 1, 31, NULL},    {"month", 1, 12, month_names},
    {"day-of-week", 0, 7, day_names},
};

/* Reads the digits at s[*i], saturating past cap; -1 when there are none. */
static int read_number(const char *s, size_t n, size_t *i, int cap)
{
    size_t j = *i;
    int v = 0;

    for (; j < n && s[j] >= '0' && s[j] <= '9'; j++)
        if (v <= cap)
            v = v * 10 + (s[j] - '0');
    if (j == *i)
        return -1;
    *i = j;
    return v;
}

/* Whether s[0..n) starts with the lowercase name, in any case, and then no letter. */
static int name_at(const char *s, size_t n, const char *name)
{
    size_t len = strlen(name);

    if (n < len)
        return 0;
    /* c | 0x20 is the lowercase letter only for that letter in either case. */
    for (size_t k = 0; k < len; k++)
        if ((s[k] | 0x20) != name[k])
            return 0;
    return n == len || (s[len] | 0x20) < 'a' || (s[len] | 0x20) > 'z';
}

/* Reads one value of field f at s[*i]: a number or one of its names. */
static int read_value(const struct field *f, const char *s, size_t n, size_t *i, int *v, char *err,
                      size_t errlen)
{
    size_t start = *i;
    int num = read_number(s, n, i, f->max);

    if (num >= 0) {
        if (num < f->min || num > f->max)
            return fail(err, errlen, "%s field: %.*s is out of range %d-%d", f->name,
                        (int)(*i - start), s + start, f->min, f->max);
        *v = num;
        return SP_OK;
    }
    for (int k = 0; f->names && f->names[k]; k++) {
        if (name_at(s + start, n - start, f->names[k])) {
            *i = start + strlen(f->names[k]);
            *v = f->min + k;
            return SP_OK;
        }
    }
    return fail(err, errlen, "%s field: unexpected \"%.*s\"", f->name, (int)(n - start), s + start);
}

/*
 * Adds one list item, s[0..n), to *bits: *, a value or a range a-b, each
 * with an optional step /n. A value with a step, a/n, runs to the field's
 * largest value, as in Vixie cron.
 */
static int parse_item(const struct field *f, const char *s, size_t n, uint64_t *bits, char *err,
                      size_t errlen)
{
    size_t i = 0;
    int lo = f->min, hi = f->max, step = 1, rc;

    if (n == 0)
        return fail(err, errlen, "%s field: empty list item", f->name);
    if (s[0] == '*') {
        i = 1;
    } else {
        if ((rc = read_value(f, s, n, &i, &lo, err, errlen)) != SP_OK)
            return rc;
        if (i < n && s[i] == '-') {
            i++;
            if ((rc = read_value(f, s, n, &i, &hi, err, errlen)) != SP_OK)
                return rc;
            if (hi < lo)
                return fail(err, errlen, "%s field: range %.*s is reversed", f->name, (int)i, s);
        } else if (i == n || s[i] != '/') {
            hi = lo;
        }
    }
    if (i < n && s[i] == '/') {
        i++;
        step = read_number(s, n, &i, f->max);
        if (step < 1 || step > f->max)
            return fail(err, errlen, "%s field: the step must be 1 to %d", f->name, f->max);
    }
    if (i != n)
        return fail(err, errlen, "%s field: unexpected \"%.*s\"", f->name, (int)(n - i), s + i);
    for (int v = lo; v <= hi; v += step)
        *bits |= 1ULL << v;
    return SP_OK;
}

/* Parses field f, s[0..n), a list of items separated by commas, into *bits. */
static int parse_field(const struct field *f, const char *s, size_t n, uint64_t *bits, char *err,
                       size_t errlen)
{
    size_t start = 0;

    *bits = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != ',')
            continue;
        int rc = parse_item(f, s + start, i - start, bits, err, errlen);
        if (rc != SP_OK)
            return rc;
        start = i + 1;
    }
    return SP_OK;
}

/* Parses five cron fields separated by runs of spaces. */
static int parse_cron(const char *spec, struct schedule *out, char *err, size_t errlen)
{
    const char *tok[5];
    size_t len[5], count = 0, n = strlen(spec);
    uint64_t bits[5];
    struct schedule s = {0};

    for (size_t i = 0; i < n; i++) {
        if (spec[i] == ' ' || (i > 0 && spec[i - 1] != ' '))
            continue;
        if (count == 5)
            return fail(err, errlen, "expected \"every <N><s|m|h|d>\" or 5 cron fields");
        tok[count] = spec + i;
        len[count] = strcspn(spec + i, " ");
        count++;
    }
    if (count != 5 || n == 0 || spec[0] == ' ' || spec[n - 1] == ' ')
        return fail(err, errlen, "expected \"every <N><s|m|h|d>\" or 5 cron fields");
    for (int k = 0; k < 5; k++) {
        int rc = parse_field(&fields[k], tok[k], len[k], &bits[k], err, errlen);
        if (rc != SP_OK)
            return rc;
    }
    s.minutes = bits[0];
    s.hours = (uint32_t)bits[1];
    s.mdays = (uint32_t)bits[2];
    s.months = (uint16_t)bits[3];
    /* Day 7 is Sunday, day 0. */
    s.wdays = (uint8_t)((bits[4] | bits[4] >> 7) & 0x7f);
    s.mday_star = tok[2][0] == '*';
    s.wday_star = tok[4][0] == '*';
    *out = s;
    return SP_OK;
}

int schedule_parse(const char *spec, struct schedule *out, char *err, size_t errlen)
{
    static const char *const shorthands[][2] = {
        {"@hourly", "0 * * * *"},   {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
        {"@weekly", "0 0 * * 0"},   {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
        {"@annually", "0 0 1 1 *"},
    };

    if (!spec || !out)
        return fail(err, errlen, "expected \"every <N><s|m|h|d>\" or 5 cron fields");
    if (strncmp(spec, "every", 5) == 0)
        return parse_every(spec, out, err, errlen);
    if (spec[0] != '@')
        return parse_cron(spec, out, err, errlen);
    for (size_t i = 0; i < sizeof shorthands / sizeof shorthands[0]; i++)
        if (strcmp(spec, shorthands[i][0]) == 0)
            return parse_cron(shorthands[i][1], out, err, errlen);
    return fail(err, errlen,
                "unknown \"%.20s\": use @hourly, @daily, @midnight, @weekly, @monthly, "
                "@yearly or @annually",
                spec);
}

/* ------------------------------------------------------------------------ */
/* Cron search                                                              */

/* The lowest set bit of mask at or above from (0-63), or -1. */
static int bit_at_or_above(uint64_t mask, int from)
{
    mask >>= from;
    return mask ? from + __builtin_ctzll(mask) : -1;
}

/* The highest set bit of mask at or below from (0-63), or -1. */
static int bit_at_or_below(uint64_t mask, int from)
{
    if (from < 63)
        mask &= (2ULL << from) - 1;
    return mask ? 63 - __builtin_clzll(mask) : -1;
}

/*
 * Whether the day, days since 1970-01-01, the d-th of its month, matches.
 * Vixie cron's rule: two restricted day fields match when either does; when
 * one starts with '*' both must (the '*' one then matches every day, or for
 * "*" followed by a step, its days only).
 */
static int day_matches(const struct schedule *s, int64_t day, int d)
{
    int mday = (s->mdays >> d) & 1;
    int wday = (s->wdays >> ((day + 4) % 7)) & 1; /* 1970-01-01 was a Thursday */

    return s->mday_star || s->wday_star ? mday && wday : mday || wday;
}

/* The first matching minute of a matching day at or after minute from, or -1. */
static int first_in_day(const struct schedule *s, int from)
{
    for (int h = bit_at_or_above(s->hours, from / 60); h >= 0;
         h = bit_at_or_above(s->hours, h + 1)) {
        int m = bit_at_or_above(s->minutes, h == from / 60 ? from % 60 : 0);
        if (m >= 0)
            return h * 60 + m;
    }
    return -1;
}

/* The last matching minute of a matching day at or before minute from, or -1. */
static int last_in_day(const struct schedule *s, int from)
{
    for (int h = bit_at_or_below(s->hours, from / 60); h >= 0;
         h = h ? bit_at_or_below(s->hours, h - 1) : -1) {
        int m = bit_at_or_below(s->minutes, h == from / 60 ? from % 60 : 59);
        if (m >= 0)
            return h * 60 + m;
    }
    return -1;
}

/*
 * Whether a cron schedule ever fires. Only one kind never does: a restricted
 * day of the month that must also match a day-of-week field starting with
 * '*', when none of its days exists in any of its months ("0 0 31 2 *",
 * "0 0 30,31 2 *"). Any other kind fires within a 400-year cycle: a restricted
 * day of the week ORed with the day of the month fires weekly; a day of the
 * month starting with '*' includes the 1st, and the 1st of every month falls
 * on every day of the week in a cycle; so does every date, February 29th too.
 * Answering early spares a search through a whole cycle.
 */
static int cron_can_fire(const struct schedule *s)
{
    static const int longest[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (s->mday_star || !s->wday_star)
        return 1;
    for (int m = 1; m <= 12; m++)
        if (((s->months >> m) & 1) && (s->mdays & ((2ULL << longest[m]) - 1)) != 0)
            return 1;
    return 0;
}

static int64_t cron_next(const struct schedule *s, int64_t after_ms)
{
    int64_t minute = after_ms / MS_PER_MIN + 1;
    int64_t day = minute / MIN_PER_DAY, end = day + CYCLE_DAYS;
    int from = (int)(minute % MIN_PER_DAY);

    if (!cron_can_fire(s))
        return -1;
    while (day <= end && day <= MAX_DAY) {
        int64_t y;
        int m, d, found;
        civil_date(day, &y, &m, &d);
        if (!((s->months >> m) & 1)) {
            /* Not this month: on to the 1st of the next. */
            day = civil_days(y + m / 12, m % 12 + 1, 1);
            from = 0;
            continue;
        }
        if (day_matches(s, day, d) && (found = first_in_day(s, from)) >= 0)
            return (day * MIN_PER_DAY + found) * MS_PER_MIN;
        day++;
        from = 0;
    }
    return -1;
}

static int64_t cron_latest(const struct schedule *s, int64_t now_ms)
{
    int64_t minute = now_ms / MS_PER_MIN;
    int64_t day = minute / MIN_PER_DAY, stop = day - CYCLE_DAYS;
    int from = (int)(minute % MIN_PER_DAY);

    if (!cron_can_fire(s))
        return -1;
    while (day >= 0 && day >= stop) {
        int64_t y;
        int m, d, found;
        civil_date(day, &y, &m, &d);
        if (!((s->months >> m) & 1)) {
            /* Not this month: back to the last day of the one before. */
            day = civil_days(y, m, 1) - 1;
            from = MIN_PER_DAY - 1;
            continue;
        }
        if (day_matches(s, day, d) && (found = last_in_day(s, from)) >= 0)
            return (day * MIN_PER_DAY + found) * MS_PER_MIN;
        day--;
        from = MIN_PER_DAY - 1;
    }
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Due times                                                                */

int64_t schedule_next(const struct schedule *s, int64_t after_ms)
{
    if (after_ms < 0 || after_ms > SCHEDULE_TIME_MAX)
        return -1;
    if (s->every_ms > 0) {
        int64_t t = (after_ms / s->every_ms + 1) * s->every_ms;
        return t <= SCHEDULE_TIME_MAX ? t : -1;
    }
    return cron_next(s, after_ms);
}

int64_t schedule_latest(const struct schedule *s, int64_t now_ms)
{
    if (now_ms < 0 || now_ms > SCHEDULE_TIME_MAX)
        return -1;
    if (s->every_ms > 0)
        return now_ms / s->every_ms * s->every_ms;
    return cron_latest(s, now_ms);
}

int64_t schedule_count_between(const struct schedule *s, int64_t a_ms, int64_t b_ms, int64_t cap)
{
    int64_t n = 0;

    if (a_ms < 0 || a_ms > SCHEDULE_TIME_MAX)
        return -1;
    if (b_ms > SCHEDULE_TIME_MAX)
        b_ms = SCHEDULE_TIME_MAX + 1;
    if (cap <= 0 || b_ms <= a_ms + 1)
        return 0;
    if (s->every_ms > 0) {
        /* The multiples k * every_ms with a_ms < k * every_ms < b_ms. */
        n = (b_ms - 1) / s->every_ms - a_ms / s->every_ms;
        return n < cap ? n : cap;
    }
    for (int64_t t = schedule_next(s, a_ms); t >= 0 && t < b_ms && n < cap; t = schedule_next(s, t))
        n++;
    return n;
}
