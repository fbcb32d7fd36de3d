/*
 * test_tally.c - device tallies and their encoding in device_status_pending
 * (runtime/storage/tally.c): round trips at the bounds of the format (serial
 * lengths 1 and SP_MAX_SERIAL, negative and extreme values, no counter and
 * the largest), the bytes as
 * tally.h documents them, serials the format cannot hold, every truncation
 * and damage a decoder must refuse without reading past the end, and how
 * tallies add up.
 */
#include "check.h"
#include "storage/tally.h"

#include <stdint.h>
#include <string.h>

#include "base/buf.h"
#include "base/errors.h"
#include "sealpipe.h"

static void test_round_trip(void)
{
    char longest[SP_MAX_SERIAL + 1], got[SP_MAX_SERIAL + 1];
    struct buf b;
    struct tally t, in[3] = {
                        {"a", 1, 0, 1, 0, 1, -1, 0},
                        {longest, INT64_MAX, INT64_MIN, -1, 1 << 20, 0, UINT32_MAX, INT64_MAX},
                        {"sensor-01", 1700000000123, 1700000000100, 3, 9, 0, 7, 1700000000000},
                    };
    size_t pos = 0;

    memset(longest, 'x', SP_MAX_SERIAL);
    longest[SP_MAX_SERIAL] = '\0';
    buf_init(&b, 1 << 20);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(tally_encode(&b, &in[i]), 0);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(tally_decode((const unsigned char *)b.p, b.len, &pos, &t, got), 1);
        CHECK_EQ_STR(t.serial, in[i].serial);
        CHECK(t.serial == got);
        CHECK(t.last_sent == in[i].last_sent && t.last_stored == in[i].last_stored);
        CHECK(t.messages == in[i].messages && t.records == in[i].records && t.dead == in[i].dead);
        CHECK(t.counter == in[i].counter && t.created == in[i].created);
    }
    CHECK_EQ_INT(tally_decode((const unsigned char *)b.p, b.len, &pos, &t, got), 0);
    CHECK_EQ_INT((int)pos, (int)b.len);
    buf_cleanup(&b);
}

/* The layout tally.h documents, byte for byte. */
static void test_layout(void)
{
    static const unsigned char want[] = {
        2,    'a',  'b',                                /* the serial */
        1,    0,    0,    0,    0,    0,    0,    0,    /* last_sent 1 */
        0,    1,    0,    0,    0,    0,    0,    0,    /* last_stored 256 */
        3,    0,    0,    0,    0,    0,    0,    0,    /* messages 3 */
        4,    0,    0,    0,    0,    0,    0,    0,    /* records 4 */
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* dead -1 */
        5,    0,    0,    0,    0,    0,    0,    0,    /* counter 5 */
        0,    0,    1,    0,    0,    0,    0,    0,    /* created 65536 */
    };
    struct tally t = {"ab", 1, 256, 3, 4, -1, 5, 65536};
    struct buf b;

    buf_init(&b, 1024);
    CHECK_EQ_INT(tally_encode(&b, &t), 0);
    CHECK_EQ_INT((int)b.len, (int)sizeof want);
    CHECK_EQ_MEM(b.p, want, sizeof want);
    buf_cleanup(&b);
}

static void test_unencodable(void)
{
    char too_long[SP_MAX_SERIAL + 2];
    struct tally t = {.serial = ""};
    struct buf b;

    memset(too_long, 'y', sizeof too_long - 1);
    too_long[sizeof too_long - 1] = '\0';
    buf_init(&b, 1024);
    CHECK_EQ_INT(tally_encode(&b, &t), SP_ERR_INVAL);
    t.serial = NULL;
    CHECK_EQ_INT(tally_encode(&b, &t), SP_ERR_INVAL);
    t.serial = too_long;
    CHECK_EQ_INT(tally_encode(&b, &t), SP_ERR_INVAL);
    CHECK_EQ_INT((int)b.len, 0);
    buf_cleanup(&b);
}

/* Every cut of a valid encoding and every bad length byte is refused, *pos
 * unchanged; the decoder never reads past len (ASan watches the copies). */
static void test_damage(void)
{
    char got[SP_MAX_SERIAL + 1];
    struct tally t = {"dev-7", 1, 2, 3, 4, 5, 6, 7};
    unsigned char copy[128];
    struct buf b;
    size_t pos;

    buf_init(&b, 1024);
    CHECK_EQ_INT(tally_encode(&b, &t), 0);
    for (size_t cut = 1; cut < b.len; cut++) {
        unsigned char *p = malloc(cut); /* exactly cut bytes: overreads are caught */
        memcpy(p, b.p, cut);
        pos = 0;
        CHECK_EQ_INT(tally_decode(p, cut, &pos, &t, got), -1);
        CHECK_EQ_INT((int)pos, 0);
        free(p);
    }
    memcpy(copy, b.p, b.len);
    const unsigned char bad_len[] = {0, SP_MAX_SERIAL + 1, 255};
    for (size_t i = 0; i < sizeof bad_len; i++) {
        copy[0] = bad_len[i];
        pos = 0;
        CHECK_EQ_INT(tally_decode(copy, b.len, &pos, &t, got), -1);
    }
    copy[0] = (unsigned char)strlen("dev-7");
    copy[3] = '\0'; /* a NUL inside the serial */
    pos = 0;
    CHECK_EQ_INT(tally_decode(copy, b.len, &pos, &t, got), -1);
    buf_cleanup(&b);
}

static void test_add(void)
{
    struct tally sum = {"d", 10, 0, 1, 2, 0, -1, 0}, later = {"d", 20, 15, 2, 0, 1, 9, 100},
                 older = {"d", 5, 3, 1, 1, 0, 4, 100}, none = TALLY_NONE("d");

    tally_add(&sum, &later);
    tally_add(&sum, &older);
    CHECK(sum.last_sent == 20 && sum.last_stored == 15);
    CHECK(sum.messages == 4 && sum.records == 3 && sum.dead == 1);
    CHECK(sum.counter == 9 && sum.created == 100);
    tally_add(&none, &older);
    CHECK(none.counter == 4 && none.messages == 1);
}

int main(void)
{
    RUN(test_round_trip);
    RUN(test_layout);
    RUN(test_unencodable);
    RUN(test_damage);
    RUN(test_add);
    return check_done();
}
