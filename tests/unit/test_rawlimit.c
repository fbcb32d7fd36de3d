/*
 * test_rawlimit.c - the UDP senders' failure limit (transport/rawlimit.c):
 * a burst, then a block that drops and ends, refill over time, senders kept
 * apart (two ports of one address too), a full set that keeps its blocked
 * senders, and the global bucket of senders not known good.
 */
#include "check.h"
#include "transport/rawlimit.h"

/* Sender n: 127.0.n.n port 5000 (the key is the address, then the port). */
static void addr(uint8_t a[RAWLIMIT_KEY], int n)
{
    memset(a, 0, RAWLIMIT_KEY);
    a[10] = a[11] = 0xff;
    a[12] = 127;
    a[14] = (uint8_t)(n >> 8);
    a[15] = (uint8_t)n;
    a[16] = 5000 >> 8;
    a[17] = 5000 & 0xff;
}

#define INIT(l, rate, burst, block) rawlimit_init(l, rate, burst, block, 600000, 100, 200)

static void test_burst_then_block(void)
{
    static struct rawlimit l;
    uint8_t a[RAWLIMIT_KEY], b[RAWLIMIT_KEY];
    uint64_t before = 99;
    int i, started = 0;

    INIT(&l, 5, 20, 10000);
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
    uint8_t a[RAWLIMIT_KEY];
    uint64_t before;
    int64_t t;
    int blocks = 0;

    INIT(&l, 5, 20, 10000);
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
    uint8_t a[RAWLIMIT_KEY], x[RAWLIMIT_KEY];
    uint64_t before;
    int i, n;

    INIT(&l, 5, 2, 10000);
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

/* Another port of a blocked address is another sender: it is served. */
static void test_port_apart(void)
{
    static struct rawlimit l;
    uint8_t a[RAWLIMIT_KEY], b[RAWLIMIT_KEY];
    uint64_t before;
    int i;

    INIT(&l, 5, 20, 10000);
    addr(a, 9);
    addr(b, 9);
    b[17]++; /* port 5001 */
    for (i = 0; i < 21; i++)
        (void)rawlimit_fail(&l, a, 0, &before);
    CHECK_EQ_INT(rawlimit_blocked(&l, a, 1), 1);
    CHECK_EQ_INT(rawlimit_blocked(&l, b, 1), 0);
    CHECK_EQ_INT(rawlimit_admit(&l, a, 1), RAWLIMIT_BLOCKED);
    CHECK_EQ_INT(rawlimit_admit(&l, b, 1), RAWLIMIT_PASS);
}

/* Senders not known good share a global bucket (100/s, 200 in a row): a
 * flood from ever new ports is bounded; a good sender passes it. */
static void test_global_bucket(void)
{
    static struct rawlimit l;
    uint8_t good[RAWLIMIT_KEY], x[RAWLIMIT_KEY];
    uint64_t before;
    int n, passed = 0;

    INIT(&l, 5, 20, 10000);
    addr(good, 1);
    rawlimit_good(&l, good, 0);
    for (n = 0; n < 1000; n++) {
        addr(x, 1000 + n);
        passed += rawlimit_admit(&l, x, 0) == RAWLIMIT_PASS;
    }
    CHECK_EQ_INT(passed, 200);
    CHECK_EQ_INT(rawlimit_admit(&l, x, 0), RAWLIMIT_BUSY);
    CHECK_EQ_INT(rawlimit_admit(&l, good, 0), RAWLIMIT_PASS);
    /* Half a second refills 50. */
    for (passed = 0, n = 0; n < 100; n++) {
        addr(x, 3000 + n);
        passed += rawlimit_admit(&l, x, 500) == RAWLIMIT_PASS;
    }
    CHECK_EQ_INT(passed, 50);
    /* Good for good_ms (600 s) after its last good answer. */
    for (n = 0; n < 300; n++) {
        addr(x, 5000 + n);
        (void)rawlimit_admit(&l, x, 600000);
    }
    CHECK_EQ_INT(rawlimit_admit(&l, good, 600000), RAWLIMIT_PASS);
    CHECK_EQ_INT(rawlimit_admit(&l, good, 600001), RAWLIMIT_BUSY);
    /* A failure ends it: a valid frame (public hash) buys no free pass for garbage. */
    rawlimit_good(&l, good, 600002);
    CHECK_EQ_INT(rawlimit_admit(&l, good, 600002), RAWLIMIT_PASS);
    (void)rawlimit_fail(&l, good, 600002, &before);
    CHECK_EQ_INT(rawlimit_admit(&l, good, 600002), RAWLIMIT_BUSY);
}

int main(void)
{
    RUN(test_burst_then_block);
    RUN(test_refill);
    RUN(test_full_table);
    RUN(test_port_apart);
    RUN(test_global_bucket);
    return check_done();
}
