/*
 * test_rawlimit.c - the UDP sources' failure limit (transport/rawlimit.c):
 * a burst, then a block that drops and ends, refill over time, sources kept
 * apart, and a full set that keeps its blocked sources.
 */
#include "check.h"
#include "transport/rawlimit.h"

static void addr(uint8_t a[16], int n)
{
    memset(a, 0, 16);
    a[10] = a[11] = 0xff;
    a[12] = 127;
    a[14] = (uint8_t)(n >> 8);
    a[15] = (uint8_t)n;
}

static void test_burst_then_block(void)
{
    static struct rawlimit l;
    uint8_t a[16], b[16];
    uint64_t before = 99;
    int i, started = 0;

    rawlimit_init(&l, 5, 20, 10000);
    addr(a, 1);
    addr(b, 2);
    for (i = 0; i < 20; i++)
        started += rawlimit_fail(&l, a, 1000, &before);
    CHECK_EQ_INT(started, 0);
    CHECK_EQ_INT(rawlimit_blocked(&l, a, 1000), 0);
    CHECK_EQ_INT(rawlimit_fail(&l, a, 1000, &before), 1);
    CHECK_EQ_INT(before, 0);
    CHECK_EQ_INT(rawlimit_blocked(&l, a, 1001), 1);
    CHECK_EQ_INT(rawlimit_blocked(&l, a, 10999), 1);
    CHECK_EQ_INT(rawlimit_blocked(&l, b, 1001), 0); /* another source is served */
    /* Failures while blocked start no second block (one log line). */
    CHECK_EQ_INT(rawlimit_fail(&l, a, 2000, &before), 0);
    CHECK_EQ_INT(rawlimit_blocked(&l, a, 11000), 0);
    /* The next block reports what the previous one dropped. */
    for (i = 0; i < 20; i++)
        CHECK_EQ_INT(rawlimit_fail(&l, a, 11000, &before), 0);
    CHECK_EQ_INT(rawlimit_fail(&l, a, 11000, &before), 1);
    CHECK_EQ_INT(before, 2);
}

static void test_refill(void)
{
    static struct rawlimit l;
    uint8_t a[16];
    uint64_t before;
    int64_t t;
    int blocks = 0;

    rawlimit_init(&l, 5, 20, 10000);
    addr(a, 3);
    /* Four failures a second for a minute stay under five a second. */
    for (t = 0; t < 60000; t += 250)
        blocks += rawlimit_fail(&l, a, t, &before);
    CHECK_EQ_INT(blocks, 0);
    /* Ten a second do not. */
    for (t = 60000; t < 70000; t += 100)
        blocks += rawlimit_fail(&l, a, t, &before);
    CHECK(blocks >= 1);
}

/* Many failing sources: the table keeps a blocked one over newer ones. */
static void test_full_table(void)
{
    static struct rawlimit l;
    uint8_t a[16], x[16];
    uint64_t before;
    int i, n;

    rawlimit_init(&l, 5, 2, 10000);
    addr(a, 7);
    for (i = 0; i < 3; i++)
        (void)rawlimit_fail(&l, a, 0, &before);
    CHECK_EQ_INT(rawlimit_blocked(&l, a, 1), 1);
    for (n = 100; n < 5000; n++) {
        addr(x, n);
        (void)rawlimit_fail(&l, x, 2, &before);
    }
    CHECK_EQ_INT(rawlimit_blocked(&l, a, 3), 1);
}

int main(void)
{
    RUN(test_burst_then_block);
    RUN(test_refill);
    RUN(test_full_table);
    return check_done();
}
