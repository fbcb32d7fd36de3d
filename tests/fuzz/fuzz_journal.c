/*
 * fuzz_journal.c - libFuzzer target for the device journal's record reader
 * (runtime/base/journal.c), which the daemon runs on files the broker
 * plugin wrote and a crash, a power loss or a bad disk may have damaged.
 *
 * The input is a segment's records, read back to back as the reader does.
 * A record taken as whole is within the bytes, its sizes add up, its
 * strings and payload lie inside it, and writing its fields again gives the
 * very same header (CRC included); every shorter cut of it reads as
 * "short", never as a record or as damage. Seeds: records written by the
 * format's own rules (tests/fuzz/corpus/fuzz_journal).
 */
#include "fuzz.h"

#include "base/journal.h"

/* Every strict prefix of a whole record of total bytes at p is SHORT. */
static void check_prefixes(const uint8_t *p, size_t total)
{
    struct journal_rec r;
    size_t t;

    for (size_t cut = 0; cut < total; cut += 1 + cut / 8)
        FUZZ_CHECK(journal_rec_parse(p, cut, &r, &t) == JOURNAL_REC_SHORT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0, total;
    struct journal_rec r;
    uint8_t head[JOURNAL_REC_HEAD];

    while (off < size) {
        enum journal_parse rc = journal_rec_parse(data + off, size - off, &r, &total);
        if (rc != JOURNAL_REC_OK)
            break;
        FUZZ_CHECK(total >= JOURNAL_REC_HEAD && total <= size - off);
        FUZZ_CHECK(total == journal_rec_size(&r));
        FUZZ_CHECK((const uint8_t *)r.topic == data + off + JOURNAL_REC_HEAD);
        FUZZ_CHECK(r.payload + r.payload_len == data + off + total);
        FUZZ_CHECK(r.qos >= 0 && r.qos <= 2);
        FUZZ_CHECK(r.id > 0 && r.id < JOURNAL_ID_MAX);
        FUZZ_CHECK(journal_rec_head(head, &r) == 0);
        FUZZ_CHECK(memcmp(head, data + off, JOURNAL_REC_HEAD) == 0);
        check_prefixes(data + off, total);
        off += total;
    }
    return 0;
}
