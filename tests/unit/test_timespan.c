/* test_timespan.c - lengths ("7d") and instants ("2026-12-01", "1h" ago) typed
 * on a command line, and record.c's ISO 8601 writer they print with. */
#include "check.h"
#include "base/record.h"
#include "base/timespan.h"
#include "sealpipe.h"

#include <stdint.h>

static int64_t span(const char *s)
{
    int64_t ms = -1;
    return timespan_parse(s, &ms) == SP_OK ? ms : -1;
}

static void test_lengths(void)
{
    CHECK_EQ_INT(span("30s"), 30000);
    CHECK_EQ_INT(span("10m"), 600000);
    CHECK_EQ_INT(span("1h"), 3600000);
    CHECK_EQ_INT(span("7d"), 7LL * 86400000);
    CHECK_EQ_INT(span("2w"), 14LL * 86400000);
    CHECK_EQ_INT(span("36500d"), TIMESPAN_MAX_MS);
    /* Not lengths. */
    const char *bad[] = {"",    "0s",       "0",    "h",   "1",   "1x",     "1hh",
                         "-1h", "+1h",      "1.5h", " 1h", "1h ", "36501d", "99999999999999999999s",
                         "1H",  "yesterday"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT(span(bad[i]), -1);
    CHECK_EQ_INT(timespan_parse(NULL, &(int64_t){0}), SP_ERR_INVAL);
}

static int64_t at(const char *s, int64_t now)
{
    int64_t ms = -1;
    return timespan_parse_instant(s, now, &ms) == SP_OK ? ms : -1;
}

static void test_instants(void)
{
    int64_t now = 1796119200000; /* 2026-12-01T10:00:00Z */

    CHECK_EQ_INT(at("2026-12-01T10:00:00Z", 0), now);
    CHECK_EQ_INT(at("2026-12-01T10:00:00", 0), now); /* no zone: UTC */
    CHECK_EQ_INT(at("2026-12-01 10:00:00", 0), now); /* TagoIO's readable form */
    CHECK_EQ_INT(at("2026-12-01T11:00:00+01:00", 0), now);
    CHECK_EQ_INT(at("2026-12-01T10:00:00.250Z", 0), now + 250);
    CHECK_EQ_INT(at("2026-12-01", 0), now - 10 * 3600000);
    CHECK_EQ_INT(at("1h", now), now - 3600000);
    CHECK_EQ_INT(at("7d", now), now - 7LL * 86400000);
    /* Seconds may be left out (dead-letter --since 2026-12-01T10:00Z). */
    CHECK_EQ_INT(at("2026-12-01T10:00Z", 0), now);
    CHECK_EQ_INT(at("2026-12-01T11:00+01:00", 0), now);
    const char *bad[] = {"",          "yesterday",  "2026-13-01",           "2026-02-30",
                         "2026-12-1", "12/01/2026", "2026-12-01T25:00:00Z", "2026-12-01T10:0Z",
                         "now",       "-1h",        "2026-12-01T10:60Z"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_EQ_INT(at(bad[i], now), -1);
}

static void test_format(void)
{
    char out[ISO8601_LEN];

    CHECK_EQ_INT(iso8601_format(1796119200123, out), 24);
    CHECK_EQ_STR(out, "2026-12-01T10:00:00.123Z");
    CHECK_EQ_INT(iso8601_format(0, out), 24);
    CHECK_EQ_STR(out, "1970-01-01T00:00:00.000Z");
    CHECK_EQ_INT(iso8601_format(-1, out), 24);
    CHECK_EQ_STR(out, "1969-12-31T23:59:59.999Z");
    CHECK_EQ_INT(iso8601_format(INT64_MAX, out), -1);
}

int main(void)
{
    RUN(test_lengths);
    RUN(test_instants);
    RUN(test_format);
    return check_done();
}
