/* test_schedule.c - "every" and cron schedules: parsing and its errors, due
 * times at and around boundaries (month and year ends, leap days, the day
 * rule), and a brute-force reference walking minute by minute, with gmtime_r
 * as an independent calendar, checked against next() and latest() at random
 * instants in 2026-2030. */
#include "check.h"
#include "base/schedule.h"
#include "sealpipe.h"

#include <stdint.h>
#include <string.h>
#include <time.h>

#define MIN  60000LL
#define HOUR (60 * MIN)
#define DAY  (24 * HOUR)

static int leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Unix ms of y-mo-d h:mi UTC, counted the slow way (no shared calendar code). */
static int64_t utc(int y, int mo, int d, int h, int mi)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int64_t days = d - 1;

    for (int yy = 1970; yy < y; yy++)
        days += leap(yy) ? 366 : 365;
    for (int mm = 1; mm < mo; mm++)
        days += dim[mm - 1] + (mm == 2 && leap(y));
    return days * DAY + h * HOUR + mi * MIN;
}

static struct schedule parse(const char *spec)
{
    struct schedule s;
    char err[128] = "";

    memset(&s, 0, sizeof s);
    if (schedule_parse(spec, &s, err, sizeof err) != SP_OK) {
        fprintf(stderr, "parse \"%s\": %s\n", spec, err);
        CHECK(0);
    }
    return s;
}

static int64_t next(const char *spec, int64_t after)
{
    struct schedule s = parse(spec);
    return schedule_next(&s, after);
}

static int64_t latest(const char *spec, int64_t now)
{
    struct schedule s = parse(spec);
    return schedule_latest(&s, now);
}

static int64_t count(const char *spec, int64_t a, int64_t b, int64_t cap)
{
    struct schedule s = parse(spec);
    return schedule_count_between(&s, a, b, cap);
}

static void test_every(void)
{
    int64_t t = 1796119200000; /* 2026-12-01T10:00:00Z, a Tuesday */

    CHECK_EQ_INT(utc(2026, 12, 1, 10, 0), t);
    CHECK_EQ_INT(next("every 2s", 0), 2000);
    CHECK_EQ_INT(next("every 2s", 1999), 2000);
    CHECK_EQ_INT(next("every 2s", 2000), 4000);
    CHECK_EQ_INT(latest("every 2s", 2000), 2000);
    CHECK_EQ_INT(latest("every 2s", 1999), 0);
    CHECK_EQ_INT(latest("every 2s", 3999), 2000);
    CHECK_EQ_INT(count("every 2s", 0, 2000, 100), 0);
    CHECK_EQ_INT(count("every 2s", 0, 2001, 100), 1);
    CHECK_EQ_INT(count("every 2s", 0, 10000, 100), 4);
    CHECK_EQ_INT(count("every 2s", 1999, 4001, 100), 2);
    CHECK_EQ_INT(count("every 2s", 0, 1000000000, 10), 10);

    CHECK_EQ_INT(next("every 5m", t), t + 5 * MIN);
    CHECK_EQ_INT(next("every 5m", t - 1), t);
    CHECK_EQ_INT(latest("every 5m", t), t);
    CHECK_EQ_INT(latest("every 5m", t - 1), t - 5 * MIN);
    CHECK_EQ_INT(count("every 5m", t, t + HOUR, 100), 11);
    CHECK_EQ_INT(count("every 5m", t - 1, t + HOUR + 1, 100), 13);

    CHECK_EQ_INT(next("every 1h", t), t + HOUR);
    CHECK_EQ_INT(next("every 1h", t + HOUR - 1), t + HOUR);
    CHECK_EQ_INT(latest("every 1h", t + HOUR - 1), t);
    CHECK_EQ_INT(count("every 1h", t, t + DAY, 100), 23);

    CHECK_EQ_INT(next("every 1d", t), utc(2026, 12, 2, 0, 0));
    CHECK_EQ_INT(latest("every 1d", t), utc(2026, 12, 1, 0, 0));
    CHECK_EQ_INT(latest("every 1d", utc(2026, 12, 1, 0, 0)), utc(2026, 12, 1, 0, 0));
    CHECK_EQ_INT(count("every 1d", utc(2026, 1, 1, 0, 0) - 1, utc(2027, 1, 1, 0, 0), 1000), 365);
    /* Not every 36 h from the first run: multiples of 36 h since 1970. */
    CHECK_EQ_INT(next("every 36h", 0), 36 * HOUR);
    CHECK_EQ_INT(next("every 36h", t) % (36 * HOUR), 0);

    /* Outside 0..SCHEDULE_TIME_MAX, and the bad counts. */
    CHECK_EQ_INT(next("every 1s", -1), -1);
    CHECK_EQ_INT(latest("every 1s", -1), -1);
    CHECK_EQ_INT(next("every 1s", SCHEDULE_TIME_MAX), -1);
    CHECK_EQ_INT(next("every 1s", SCHEDULE_TIME_MAX - 1000), SCHEDULE_TIME_MAX - 999);
    CHECK_EQ_INT(latest("every 1s", SCHEDULE_TIME_MAX), SCHEDULE_TIME_MAX - 999);
    CHECK_EQ_INT(count("every 1s", -1, 5000, 10), -1);
    CHECK_EQ_INT(count("every 1s", 5000, 5000, 10), 0);
    CHECK_EQ_INT(count("every 1s", 5000, 1000, 10), 0);
    CHECK_EQ_INT(count("every 1s", 0, 5000, 0), 0);
    CHECK_EQ_INT(count("every 1s", SCHEDULE_TIME_MAX - 3000, INT64_MAX, 10), 3);
}

static void test_every_errors(void)
{
    struct schedule s;
    char err[128];
    const char *good[] = {"every 1s", "every 366d", "every 8784h", "every 31622400s", "every 05m"};
    /* clang-format off */
    const char *bad[] = {
        "every 0s", "every 0m", "every 5", "every 5x", "every -5m", "every +5m", "every 1.5h",
        "every  5m", "every5m", "every 5m ", "every 5 m", "Every 5m", "every 5M", "every 367d",
        "every 8785h", "every 527041m", "every 1w", "every", "every ", "every m", "every 5mm",
        "every 31622401s", "", "everyday 5m", "every 5m,10m", "every 99999999999999999999s",
    };
    /* clang-format on */

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK_EQ_INT(schedule_parse(good[i], &s, err, sizeof err), SP_OK);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s.every_ms = 7;
        int rc = schedule_parse(bad[i], &s, err, sizeof err);
        CHECK_EQ_INT(rc, SP_ERR_INVAL);
        if (rc == SP_OK)
            fprintf(stderr, "accepted \"%s\"\n", bad[i]);
        CHECK_EQ_INT(s.every_ms, 7); /* untouched on failure */
        CHECK(strncmp(err, "schedule: ", 10) == 0);
    }
    CHECK_EQ_INT(schedule_parse("every 0s", &s, err, sizeof err), SP_ERR_INVAL);
    CHECK_EQ_STR(err, "schedule: every: the period must be 1s to 366d");
    CHECK_EQ_INT(schedule_parse("every 5x", &s, err, sizeof err), SP_ERR_INVAL);
    CHECK_EQ_STR(err, "schedule: expected \"every <N><s|m|h|d>\", e.g. \"every 5m\"");
    CHECK_EQ_INT(schedule_parse(NULL, &s, err, sizeof err), SP_ERR_INVAL);
    /* No buffer, or a short one. */
    CHECK_EQ_INT(schedule_parse("every 0s", &s, NULL, 0), SP_ERR_INVAL);
    CHECK_EQ_INT(schedule_parse("every 0s", &s, err, 5), SP_ERR_INVAL);
    CHECK_EQ_STR(err, "sche");
}

static void check_error(const char *spec, const char *want)
{
    struct schedule s;
    char err[128] = "";

    CHECK_EQ_INT(schedule_parse(spec, &s, err, sizeof err), SP_ERR_INVAL);
    CHECK_EQ_STR(err, want);
}

static void test_cron_errors(void)
{
    struct schedule s;
    char err[128];
    /* clang-format off */
    const char *bad[] = {
        "* * * * * *", "0 * * * * *", "0 0 1 * * 2026", "* * * *", "", " 0 * * * *", "0 * * * * ",
        "0\t* * * *", "? * * * *", "0 0 ? * *", "0 0 L * *", "0 0 15W * *", "0 0 * * 5#2",
        "0 0 * * 5L", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * 32 * *", "* * * 0 *",
        "* * * 13 *", "* * * * 8", "-1 * * * *", "5-1 * * * *", "*/0 * * * *", "1-5/0 * * * *",
        "*/60 * * * *", "*/ * * * *", "1,,2 * * * *", ",1 * * * *", "1, * * * *", "0 0 * * 1x",
        "*-5 * * * *", "1-* * * * *", "1-2-3 * * * *", "0 * * * monday", "0 * * jan-xyz *",
        "0 * * * fri-mon", "0 mon * * *", "0 0 1 * jan", "@reboot", "@HOURLY", "@hourly ", "@",
        "0 0 1 1 * @yearly", "99999999999 * * * *", "1/2/3 * * * *", "** * * * *", "0 0 1 1 sun,",
    };
    /* clang-format on */

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s.minutes = 7;
        int rc = schedule_parse(bad[i], &s, err, sizeof err);
        CHECK_EQ_INT(rc, SP_ERR_INVAL);
        if (rc == SP_OK)
            fprintf(stderr, "accepted \"%s\"\n", bad[i]);
        CHECK_EQ_INT(s.minutes, 7);
    }
    check_error("61 * * * *", "schedule: minute field: 61 is out of range 0-59");
    check_error("* * * *", "schedule: expected \"every <N><s|m|h|d>\" or 5 cron fields");
    check_error("0 0 1 * * *", "schedule: expected \"every <N><s|m|h|d>\" or 5 cron fields");
    check_error("0 17-9 * * *", "schedule: hour field: range 17-9 is reversed");
    check_error("0 0 * * fri-mon", "schedule: day-of-week field: range fri-mon is reversed");
    check_error("*/0 * * * *", "schedule: minute field: the step must be 1 to 59");
    check_error("0 0 L * *", "schedule: day-of-month field: unexpected \"L\"");
    check_error("0 0 * * 5#2", "schedule: day-of-week field: unexpected \"#2\"");
    check_error("0 0 * 13 *", "schedule: month field: 13 is out of range 1-12");
    check_error("1,,2 * * * *", "schedule: minute field: empty list item");
    check_error("99999999999 * * * *", "schedule: minute field: 99999999999 is out of range 0-59");
    check_error("@reboot", "schedule: unknown \"@reboot\": use @hourly, @daily, @midnight, "
                           "@weekly, @monthly, @yearly or @annually");
}

static void test_cron_parse(void)
{
    struct schedule a = parse("0 0 * * 7"), b = parse("0 0 * * 0"), c;

    CHECK_EQ_INT(a.wdays, 1);
    CHECK_EQ_INT(a.wdays, b.wdays);
    CHECK_EQ_INT(parse("0 0 * * 0-7").wdays, 0x7f);
    CHECK_EQ_INT(parse("0 0 * * 5-7").wdays, 0x61);
    CHECK_EQ_INT(parse("*/20 * * * *").minutes, 1 | 1 << 20 | 1ULL << 40);
    CHECK_EQ_INT(parse("50/3 * * * *").minutes, 1ULL << 50 | 1ULL << 53 | 1ULL << 56 | 1ULL << 59);
    CHECK_EQ_INT(parse("0 1-10/4 * * *").hours, 1 << 1 | 1 << 5 | 1 << 9);
    CHECK_EQ_INT(parse("0 0 * JAN,Jul,dec *").months, 1 << 1 | 1 << 7 | 1 << 12);
    CHECK_EQ_INT(parse("0 0 * * Mon-FRI").wdays, 0x3e);
    CHECK_EQ_INT(parse("0  0   1 *  *").mdays, 2);
    /* Which day fields count as '*' for the day rule. */
    a = parse("0 0 */2 * mon");
    CHECK(a.mday_star && !a.wday_star);
    a = parse("0 0 13 * fri");
    CHECK(!a.mday_star && !a.wday_star);
    /* Plain data: a copy behaves the same. */
    a = parse("0 9-17/2 * * mon-fri");
    c = a;
    CHECK_EQ_INT(schedule_next(&c, 1796119200000), schedule_next(&a, 1796119200000));
}

static void test_cron_basic(void)
{
    int64_t t = utc(2026, 12, 1, 10, 0); /* a Tuesday */

    CHECK_EQ_INT(next("* * * * *", t), t + MIN);
    CHECK_EQ_INT(next("* * * * *", t + 1), t + MIN);
    CHECK_EQ_INT(next("* * * * *", t - 1), t);
    CHECK_EQ_INT(latest("* * * * *", t), t);
    CHECK_EQ_INT(latest("* * * * *", t + MIN - 1), t);
    CHECK_EQ_INT(latest("* * * * *", t - 1), t - MIN);
    CHECK_EQ_INT(count("* * * * *", t, t + 10 * MIN, 100), 9);
    CHECK_EQ_INT(count("* * * * *", t - 1, t + 10 * MIN, 100), 10);
    CHECK_EQ_INT(count("* * * * *", t, t + DAY, 100), 100);
    CHECK_EQ_INT(count("* * * * *", t, t + DAY, 0), 0);
    CHECK_EQ_INT(count("* * * * *", t, t, 10), 0);
    CHECK_EQ_INT(count("* * * * *", -1, t, 10), -1);

    CHECK_EQ_INT(next("0 * * * *", t), t + HOUR);
    CHECK_EQ_INT(next("0 * * * *", t - 1), t);
    CHECK_EQ_INT(latest("0 * * * *", t + HOUR - 1), t);
    CHECK_EQ_INT(latest("0 * * * *", t), t);
    CHECK_EQ_INT(count("0 * * * *", t, t + DAY + 1, 100), 24);

    CHECK_EQ_INT(next("*/15 * * * *", t), t + 15 * MIN);
    CHECK_EQ_INT(next("*/15 * * * *", t + 15 * MIN - 1), t + 15 * MIN);
    CHECK_EQ_INT(next("*/15 * * * *", t + 45 * MIN), t + HOUR);
    CHECK_EQ_INT(latest("*/15 * * * *", t + 14 * MIN), t);
    CHECK_EQ_INT(latest("*/15 * * * *", t - 1), t - 15 * MIN);

    /* Lists: 3:05-3:10, 3:50-3:55, 23:05... every day. */
    const char *list = "5,10,50-55 3,23 * * *";
    CHECK_EQ_INT(next(list, t), utc(2026, 12, 1, 23, 5));
    CHECK_EQ_INT(next(list, utc(2026, 12, 1, 23, 10)), utc(2026, 12, 1, 23, 50));
    CHECK_EQ_INT(next(list, utc(2026, 12, 1, 23, 55)), utc(2026, 12, 2, 3, 5));
    CHECK_EQ_INT(latest(list, t), utc(2026, 12, 1, 3, 55));
    CHECK_EQ_INT(latest(list, utc(2026, 12, 1, 3, 49)), utc(2026, 12, 1, 3, 10));
    CHECK_EQ_INT(latest(list, utc(2026, 12, 1, 3, 4)), utc(2026, 11, 30, 23, 55));
    CHECK_EQ_INT(latest("59 3 * * *", t), utc(2026, 12, 1, 3, 59));
    CHECK_EQ_INT(next("0 21 * * *", t), utc(2026, 12, 1, 21, 0));
    CHECK_EQ_INT(count(list, utc(2026, 12, 1, 0, 0), utc(2026, 12, 2, 0, 0), 100), 16);

    /* Names. */
    CHECK_EQ_INT(next("0 0 1 jan,jul *", t), utc(2027, 1, 1, 0, 0));
    CHECK_EQ_INT(next("0 0 1 jan,jul *", utc(2027, 1, 1, 0, 0)), utc(2027, 7, 1, 0, 0));
    CHECK_EQ_INT(latest("0 0 1 jan,jul *", t), utc(2026, 7, 1, 0, 0));
    CHECK_EQ_INT(next("0 12 * * SAT,sun", t), utc(2026, 12, 5, 12, 0));
    CHECK_EQ_INT(latest("0 12 * * SAT,sun", t), utc(2026, 11, 29, 12, 0));
}

static void test_cron_working_hours(void)
{
    const char *spec = "0 9-17/2 * * mon-fri";
    int64_t t = utc(2026, 12, 1, 10, 0); /* a Tuesday */

    CHECK_EQ_INT(next(spec, t), utc(2026, 12, 1, 11, 0));
    CHECK_EQ_INT(latest(spec, t), utc(2026, 12, 1, 9, 0));
    CHECK_EQ_INT(next(spec, utc(2026, 12, 1, 17, 0)), utc(2026, 12, 2, 9, 0));
    CHECK_EQ_INT(latest(spec, utc(2026, 12, 1, 17, 0)), utc(2026, 12, 1, 17, 0));
    /* Friday evening to Monday morning, both ways. */
    CHECK_EQ_INT(next(spec, utc(2026, 12, 4, 17, 0)), utc(2026, 12, 7, 9, 0));
    CHECK_EQ_INT(latest(spec, utc(2026, 12, 5, 12, 0)), utc(2026, 12, 4, 17, 0));
    CHECK_EQ_INT(latest(spec, utc(2026, 12, 7, 8, 59)), utc(2026, 12, 4, 17, 0));
    /* Nine, eleven, one, three, five, five days a week. */
    CHECK_EQ_INT(count(spec, utc(2026, 12, 7, 0, 0), utc(2026, 12, 14, 0, 0), 100), 25);
    CHECK_EQ_INT(count(spec, utc(2026, 12, 7, 0, 0), utc(2026, 12, 14, 0, 0), 7), 7);
}

static void test_cron_calendar(void)
{
    /* Month and year ends. */
    CHECK_EQ_INT(next("0 0 1 * *", utc(2026, 1, 31, 12, 0)), utc(2026, 2, 1, 0, 0));
    CHECK_EQ_INT(next("0 0 1 * *", utc(2026, 12, 15, 0, 0)), utc(2027, 1, 1, 0, 0));
    CHECK_EQ_INT(next("0 0 1 * *", utc(2026, 12, 31, 23, 59)), utc(2027, 1, 1, 0, 0));
    CHECK_EQ_INT(latest("0 0 1 * *", utc(2027, 1, 1, 0, 0)), utc(2027, 1, 1, 0, 0));
    CHECK_EQ_INT(latest("0 0 1 * *", utc(2026, 12, 31, 23, 59)), utc(2026, 12, 1, 0, 0));
    CHECK_EQ_INT(latest("0 0 1 * *", utc(2027, 1, 1, 0, 0) - 1), utc(2026, 12, 1, 0, 0));
    CHECK_EQ_INT(next("59 23 31 * *", utc(2026, 1, 31, 23, 59)), utc(2026, 3, 31, 23, 59));
    CHECK_EQ_INT(latest("59 23 31 * *", utc(2026, 3, 31, 23, 58)), utc(2026, 1, 31, 23, 59));
    CHECK_EQ_INT(next("0 0 31 * *", utc(2026, 4, 1, 0, 0)), utc(2026, 5, 31, 0, 0));

    /* Leap days. */
    CHECK_EQ_INT(next("0 12 29 2 *", utc(2027, 3, 1, 0, 0)), utc(2028, 2, 29, 12, 0));
    CHECK_EQ_INT(next("0 12 29 2 *", utc(2028, 2, 29, 12, 0)), utc(2032, 2, 29, 12, 0));
    CHECK_EQ_INT(latest("0 12 29 2 *", utc(2028, 2, 29, 11, 59)), utc(2024, 2, 29, 12, 0));
    CHECK_EQ_INT(latest("0 12 29 2 *", utc(2028, 2, 29, 12, 0)), utc(2028, 2, 29, 12, 0));
    /* 2100 is not a leap year: eight years apart. */
    CHECK_EQ_INT(next("0 12 29 2 *", utc(2097, 1, 1, 0, 0)), utc(2104, 2, 29, 12, 0));

    /* Both day fields restricted: the 13th, and every Friday. */
    const char *f13 = "0 0 13 * fri";
    CHECK_EQ_INT(next(f13, utc(2026, 12, 1, 10, 0)), utc(2026, 12, 4, 0, 0));
    CHECK_EQ_INT(next(f13, utc(2026, 12, 4, 0, 0)), utc(2026, 12, 11, 0, 0));
    CHECK_EQ_INT(next(f13, utc(2026, 12, 11, 0, 0)), utc(2026, 12, 13, 0, 0)); /* a Sunday */
    CHECK_EQ_INT(next(f13, utc(2026, 12, 13, 0, 0)), utc(2026, 12, 18, 0, 0));
    CHECK_EQ_INT(latest(f13, utc(2026, 12, 17, 0, 0)), utc(2026, 12, 13, 0, 0));
    CHECK_EQ_INT(latest(f13, utc(2026, 12, 12, 0, 0)), utc(2026, 12, 11, 0, 0));
    CHECK_EQ_INT(count(f13, utc(2026, 12, 1, 0, 0) - 1, utc(2027, 1, 1, 0, 0), 100), 5);
    /* One of them '*' (even with a step): both must match. */
    CHECK_EQ_INT(next("0 0 */2 * fri", utc(2026, 12, 1, 10, 0)), utc(2026, 12, 11, 0, 0));
    CHECK_EQ_INT(next("0 0 13 * *", utc(2026, 12, 1, 10, 0)), utc(2026, 12, 13, 0, 0));
    CHECK_EQ_INT(next("0 0 * * fri", utc(2026, 12, 1, 10, 0)), utc(2026, 12, 4, 0, 0));

    /* Day 7 is Sunday. */
    CHECK_EQ_INT(next("0 0 * * 7", utc(2026, 12, 1, 10, 0)), utc(2026, 12, 6, 0, 0));
    CHECK_EQ_INT(latest("0 0 * * 7", utc(2026, 12, 1, 10, 0)), utc(2026, 11, 29, 0, 0));
    CHECK_EQ_INT(next("0 0 * * 6-7", utc(2026, 12, 5, 0, 0)), utc(2026, 12, 6, 0, 0));
}

static void test_cron_rare(void)
{
    const char *never[] = {"0 0 31 2 *", "0 0 30,31 2 *", "0 0 31 2,4,6,9,11 *", "0 0 31 2 */7"};

    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++) {
        CHECK_EQ_INT(next(never[i], utc(2026, 1, 1, 0, 0)), -1);
        CHECK_EQ_INT(latest(never[i], utc(2026, 1, 1, 0, 0)), -1);
        CHECK_EQ_INT(count(never[i], 0, SCHEDULE_TIME_MAX, 10), 0);
    }
    /* Restricted both, so ORed: every Monday in February. */
    CHECK_EQ_INT(next("0 0 31 2 mon", utc(2026, 3, 1, 0, 0)), utc(2027, 2, 1, 0, 0));
    /* Further apart than five years: February 1st on a Monday ... */
    CHECK_EQ_INT(next("0 0 */31 2 mon", utc(2027, 2, 2, 0, 0)), utc(2038, 2, 1, 0, 0));
    CHECK_EQ_INT(latest("0 0 */31 2 mon", utc(2038, 1, 31, 0, 0)), utc(2027, 2, 1, 0, 0));
    /* ... and February 29th on a Sunday: 2032, 2060, 2088, then 2128. */
    CHECK_EQ_INT(next("0 0 29 2 */7", utc(2026, 1, 1, 0, 0)), utc(2032, 2, 29, 0, 0));
    CHECK_EQ_INT(next("0 0 29 2 */7", utc(2089, 1, 1, 0, 0)), utc(2128, 2, 29, 0, 0));
    CHECK_EQ_INT(latest("0 0 29 2 */7", utc(2128, 2, 28, 0, 0)), utc(2088, 2, 29, 0, 0));
    /* None since the epoch. */
    CHECK_EQ_INT(latest("0 0 2 1 *", DAY - 1), -1);
    CHECK_EQ_INT(latest("0 0 1 1 *", 1000), 0);
    /* The end of the supported range. */
    CHECK_EQ_INT(next("59 23 31 12 *", SCHEDULE_TIME_MAX - 59999), -1);
    CHECK_EQ_INT(next("59 23 31 12 *", SCHEDULE_TIME_MAX - 60000), SCHEDULE_TIME_MAX - 59999);
    CHECK_EQ_INT(latest("* * * * *", SCHEDULE_TIME_MAX), SCHEDULE_TIME_MAX - 59999);
    CHECK_EQ_INT(next("* * * * *", SCHEDULE_TIME_MAX + 1), -1);
    CHECK_EQ_INT(next("* * * * *", -1), -1);
    CHECK_EQ_INT(latest("* * * * *", -1), -1);
}

static void test_shorthands(void)
{
    int64_t t = utc(2026, 12, 1, 10, 0); /* a Tuesday */

    CHECK_EQ_INT(next("@hourly", t), t + HOUR);
    CHECK_EQ_INT(latest("@hourly", t + 1), t);
    CHECK_EQ_INT(next("@daily", t), utc(2026, 12, 2, 0, 0));
    CHECK_EQ_INT(next("@midnight", t), utc(2026, 12, 2, 0, 0));
    CHECK_EQ_INT(latest("@daily", t), utc(2026, 12, 1, 0, 0));
    CHECK_EQ_INT(next("@weekly", t), utc(2026, 12, 6, 0, 0));
    CHECK_EQ_INT(latest("@weekly", t), utc(2026, 11, 29, 0, 0));
    CHECK_EQ_INT(next("@monthly", t), utc(2027, 1, 1, 0, 0));
    CHECK_EQ_INT(latest("@monthly", t), utc(2026, 12, 1, 0, 0));
    CHECK_EQ_INT(next("@yearly", t), utc(2027, 1, 1, 0, 0));
    CHECK_EQ_INT(next("@annually", t), utc(2027, 1, 1, 0, 0));
    CHECK_EQ_INT(latest("@yearly", t), utc(2026, 1, 1, 0, 0));
    CHECK_EQ_INT(count("@monthly", utc(2026, 1, 1, 0, 0) - 1, utc(2027, 1, 1, 0, 0), 100), 12);
}

/* Sparse schedules take bounded time: no assertion on it, only that it ends. */
static void test_bounded(void)
{
    struct schedule never = parse("0 0 31 2 *"), leapday = parse("0 12 29 2 *");
    struct schedule sunday29 = parse("0 0 29 2 */7");
    int64_t t = 0, n = 0;

    for (int i = 0; i < 1000; i++)
        n += schedule_next(&never, utc(2026, 1, 1, 0, 0) + i * HOUR) == -1;
    CHECK_EQ_INT(n, 1000);
    /* A thousand leap days on from 1970: past the year 6000. */
    for (int i = 0; i < 1000 && t >= 0; i++)
        t = schedule_next(&leapday, t);
    CHECK(t > utc(6000, 1, 1, 0, 0));
    CHECK_EQ_INT(schedule_latest(&leapday, t), t);
    n = 0;
    for (int i = 0; i < 1000; i++)
        n += schedule_next(&sunday29, utc(2089, 1, 1, 0, 0) + i * DAY) == utc(2128, 2, 29, 0, 0);
    CHECK_EQ_INT(n, 1000);
    CHECK_EQ_INT(schedule_count_between(&sunday29, 0, utc(2400, 1, 1, 0, 0), 1000), 14);
}

/* ------------------------------------------------------------------------ */
/* The reference: every minute, matched with gmtime_r's calendar            */

/* Whether the date of day (days since 1970) matches, by the rule read plainly. */
static int ref_date(const struct schedule *s, int64_t day)
{
    time_t secs = (time_t)(day * 86400);
    struct tm tm;

    if (!gmtime_r(&secs, &tm))
        return 0;
    int mday = (s->mdays >> tm.tm_mday) & 1, wday = (s->wdays >> tm.tm_wday) & 1;
    int ok = s->mday_star || s->wday_star ? mday && wday : mday || wday;
    return ok && ((s->months >> (tm.tm_mon + 1)) & 1);
}

/* Whether minute t is due; the date's answer is kept across a day's minutes. */
static int ref_due(const struct schedule *s, int64_t t, int64_t *day, int *date_ok)
{
    if (t / DAY != *day) {
        *day = t / DAY;
        *date_ok = ref_date(s, *day);
    }
    return *date_ok && ((s->hours >> (t % DAY / HOUR)) & 1) &&
           ((s->minutes >> (t % HOUR / MIN)) & 1);
}

#define REF_LIMIT (12 * 366 * DAY)

static int64_t ref_next(const struct schedule *s, int64_t after)
{
    int64_t day = -1;
    int ok = 0;

    for (int64_t t = (after / MIN + 1) * MIN; t < after + REF_LIMIT; t += MIN)
        if (ref_due(s, t, &day, &ok))
            return t;
    return -1;
}

static int64_t ref_latest(const struct schedule *s, int64_t now)
{
    int64_t day = -1;
    int ok = 0;

    for (int64_t t = now / MIN * MIN; t >= 0 && t > now - REF_LIMIT; t -= MIN)
        if (ref_due(s, t, &day, &ok))
            return t;
    return -1;
}

static uint64_t rng_next(uint64_t *state)
{
    /* splitmix64: deterministic, so a failure reproduces. */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void test_against_reference(void)
{
    const char *specs[] = {
        "* * * * *",
        "0 * * * *",
        "*/15 * * * *",
        "0 9-17/2 * * mon-fri",
        "5,10,50-55 3,23 * * *",
        "0 0 1 * *",
        "0 12 29 2 *",
        "0 0 13 * fri",
        "30 6 * * 7",
        "15 14 1 * *",
        "0 22 * * 1-5",
        "23 0-20/2 * * *",
        "0 0,12 1 */2 *",
        "0 4 8-14 * *",
        "0 4 8-14 * 1",
        "0 4 */3 * 1",
        "0 0 * jan,jul *",
        "59 23 31 12 *",
        "0 0 31 * *",
        "0 0 30 2,4 *",
        "1/7 2/5 * * *",
        "*/7 * */2 * */3",
        "0 12 * * 0,6",
        "@yearly",
        "0 0 29 2 1",
        "45 23 28-31 * *",
        "0 0 1,15 * 3",
        "*/30 */6 * * sun",
        "0 0 31 1-12/2 *",
        "7 7 7 7 *",
        "0 0 * * 5-7",
        "@weekly",
        "0 0 1 mar-may/2 *",
        "58-59 23 * * sat",
        "0 1 29,30,31 * 2",
        "@monthly",
        "59 */5 * * *",
        "0,59 3 * * *",
    };
    uint64_t rng = 42;
    int64_t lo = utc(2026, 1, 1, 0, 0), span = utc(2031, 1, 1, 0, 0) - lo;

    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        struct schedule s = parse(specs[i]);
        int bad = 0;
        for (int k = 0; k < 25; k++) {
            int64_t t = lo + (int64_t)(rng_next(&rng) % (uint64_t)span);
            if (k % 4 == 0)
                t = t / MIN * MIN; /* exactly on a minute, often a due time */
            int64_t n = schedule_next(&s, t), l = schedule_latest(&s, t);
            bad += n != ref_next(&s, t);
            bad += l != ref_latest(&s, t);
            if (n >= 0) {
                bad += schedule_latest(&s, n) != n;
                bad += schedule_latest(&s, n - 1) != ref_latest(&s, n - 1);
            }
        }
        if (bad)
            fprintf(stderr, "\"%s\" differs from the reference %d times\n", specs[i], bad);
        CHECK_EQ_INT(bad, 0);
    }
}

int main(void)
{
    RUN(test_every);
    RUN(test_every_errors);
    RUN(test_cron_errors);
    RUN(test_cron_parse);
    RUN(test_cron_basic);
    RUN(test_cron_working_hours);
    RUN(test_cron_calendar);
    RUN(test_cron_rare);
    RUN(test_shorthands);
    RUN(test_bounded);
    RUN(test_against_reference);
    return check_done();
}
