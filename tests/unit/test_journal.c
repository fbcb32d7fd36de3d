/*
 * test_journal.c - the device journal's format (base/journal.c) and its
 * reader (transport/jreader.c) on segments written here: CRC-32C's check
 * value, records that round-trip, are cut or damaged; the reader skipping
 * what is committed, crossing segments, skipping a torn tail only once a
 * newer segment exists, going back on drop(), deleting committed segments
 * on ack(), and cutting a payload over SP_LIMIT_PAYLOAD.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/arena.h"
#include "base/journal.h"
#include "base/sp_limits.h"
#include "check.h"
#include "transport/jreader.h"

static char dir[256];

/* Appends a record (id, topic, payload) to segment first, creating it with
 * its header when new. */
static void put(uint64_t first, uint64_t id, const char *topic, const void *payload, size_t len)
{
    char path[512];
    uint8_t head[JOURNAL_REC_HEAD], seg[JOURNAL_SEG_HEAD];
    struct journal_rec r = {.id = id,
                            .received_ms = 1000,
                            .qos = 1,
                            .topic = topic,
                            .topic_len = strlen(topic),
                            .publisher = "dev-1",
                            .publisher_len = 5,
                            .payload = payload,
                            .payload_len = len};
    struct stat st;

    CHECK(journal_seg_path(path, sizeof path, dir, first) == 0);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    CHECK(fd >= 0);
    if (fstat(fd, &st) == 0 && st.st_size == 0) {
        journal_seg_head(seg, first);
        CHECK(write(fd, seg, sizeof seg) == (ssize_t)sizeof seg);
    }
    CHECK(journal_rec_head(head, &r) == 0);
    CHECK(write(fd, head, sizeof head) == (ssize_t)sizeof head);
    CHECK(write(fd, topic, strlen(topic)) == (ssize_t)strlen(topic));
    CHECK(write(fd, "dev-1", 5) == 5);
    CHECK(write(fd, payload, len) == (ssize_t)len);
    close(fd);
}

/* Appends raw bytes to segment first (a torn or damaged tail). */
static void put_raw(uint64_t first, const void *p, size_t n)
{
    char path[512];

    CHECK(journal_seg_path(path, sizeof path, dir, first) == 0);
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0);
    CHECK(write(fd, p, n) == (ssize_t)n);
    close(fd);
}

/* Flips a bit of segment first's byte back bytes from its end. */
static void flip_near_end(uint64_t first, off_t back)
{
    char path[512];
    uint8_t b;

    CHECK(journal_seg_path(path, sizeof path, dir, first) == 0);
    int fd = open(path, O_RDWR);
    off_t at = lseek(fd, -back, SEEK_END);
    CHECK(pread(fd, &b, 1, at) == 1);
    b ^= 1;
    CHECK(pwrite(fd, &b, 1, at) == 1);
    close(fd);
}

static int seg_exists(uint64_t first)
{
    char path[512];

    CHECK(journal_seg_path(path, sizeof path, dir, first) == 0);
    return access(path, F_OK) == 0;
}

static void fresh_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/sp-journal-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
}

static void clean_dir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static void test_crc_and_records(void)
{
    uint8_t buf[256], head[JOURNAL_REC_HEAD];
    struct journal_rec r = {.id = 42,
                            .received_ms = 7,
                            .qos = 2,
                            .retain = 1,
                            .topic = "a/b",
                            .topic_len = 3,
                            .payload = (const uint8_t *)"xyz",
                            .payload_len = 3};
    struct journal_rec got;
    size_t total;

    CHECK_EQ_INT(journal_crc32c(0, "123456789", 9), 0xe3069283u); /* the check value */
    CHECK(journal_rec_head(head, &r) == 0);
    memcpy(buf, head, sizeof head);
    memcpy(buf + sizeof head, "a/bxyz", 6);
    CHECK_EQ_INT(journal_rec_parse(buf, sizeof head + 6, &got, &total), JOURNAL_REC_OK);
    CHECK_EQ_INT(total, sizeof head + 6);
    CHECK_EQ_INT(got.id, 42);
    CHECK_EQ_INT(got.qos, 2);
    CHECK_EQ_INT(got.retain, 1);
    CHECK_EQ_INT(got.publisher_len, 0);
    CHECK_EQ_MEM(got.payload, "xyz", 3);
    /* Cut anywhere: short, never bad. */
    for (size_t n = 0; n < sizeof head + 6; n++)
        CHECK_EQ_INT(journal_rec_parse(buf, n, &got, &total), JOURNAL_REC_SHORT);
    /* One flipped bit anywhere: bad. */
    for (size_t i = 0; i < sizeof head + 6; i++) {
        buf[i] ^= 0x10;
        CHECK_EQ_INT(journal_rec_parse(buf, sizeof head + 6, &got, &total), JOURNAL_REC_BAD);
        buf[i] ^= 0x10;
    }
    r.qos = 3;
    CHECK(journal_rec_head(head, &r) == -1);
}

/* An output that counts what it is given (answers leave through it). */
static int published;
static int count_publish(void *ctx, const char *topic, const void *payload, size_t len, int qos,
                         int retain, const struct ingest_origin *from)
{
    (void)ctx, (void)topic, (void)payload, (void)len, (void)qos, (void)retain, (void)from;
    published++;
    return 0;
}
/* The source flushes its output when it acknowledges (its answers leave then). */
static int flushed;
static int count_flush(void *ctx)
{
    (void)ctx;
    flushed++;
    return 0;
}
static const struct ingest_output counting = {NULL, count_publish, count_flush};

/* Reads what the source has now: the number of messages, their topics'
 * last characters into seen[]. */
static size_t read_all(const struct ingest_source *s, struct arena *a, char *seen)
{
    struct ingest_msg m[64];
    size_t n = 0;

    arena_reset(a);
    CHECK(s->read(s->ctx, 0, a, m, 64, &n) == 0);
    for (size_t i = 0; i < n; i++)
        seen[i] = m[i].topic[strlen(m[i].topic) - 1];
    seen[n] = '\0';
    return n;
}

static void test_reader(void)
{
    struct arena a;
    struct jreader *r;
    char err[256], seen[80];
    static const uint8_t torn[] = "SPJR\0\0\0\0\xff";

    fresh_dir();
    arena_init(&a, 64u << 20);
    put(1, 1, "t/a", "1", 1);
    put(1, 2, "t/b", "2", 1);
    put(1, 3, "t/c", "3", 1);
    put_raw(1, torn, 9); /* the broker died in a write */
    struct jreader_opts o = {.dir = dir, .committed = 1, .min_free = 0, .out = &counting};
    CHECK(jreader_open(&o, &r, err, sizeof err) == 0);
    const struct ingest_source *s = jreader_source(r);
    CHECK_EQ_INT(read_all(s, &a, seen), 2);
    CHECK_EQ_STR(seen, "bc"); /* 1 was committed */
    CHECK_EQ_INT(s->position(s->ctx), 3);
    /* The torn tail waits until a newer segment exists... */
    CHECK_EQ_INT(read_all(s, &a, seen), 0);
    put(4, 4, "t/d", "4", 1);
    put(4, 5, "t/e", "5", 1);
    /* ...then is skipped. */
    CHECK_EQ_INT(read_all(s, &a, seen), 2);
    CHECK_EQ_STR(seen, "de");
    /* Not committed: everything since the last ack comes again. */
    s->drop(s->ctx);
    CHECK_EQ_INT(read_all(s, &a, seen), 4);
    CHECK_EQ_STR(seen, "bcde");
    CHECK_EQ_INT(s->position(s->ctx), 5);
    CHECK(seg_exists(1));
    CHECK(s->ack(s->ctx) == 0);
    CHECK(!seg_exists(1)); /* all committed */
    CHECK(seg_exists(4));
    CHECK_EQ_INT(s->position(s->ctx), -1);
    /* A payload over the limit is cut, full_len keeps its size. */
    size_t big = SP_LIMIT_PAYLOAD + 10;
    uint8_t *payload = calloc(1, big);
    put(4, 6, "t/f", payload, big);
    struct ingest_msg m[4];
    size_t n;
    arena_reset(&a);
    CHECK(s->read(s->ctx, 0, &a, m, 4, &n) == 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(m[0].len, SP_LIMIT_PAYLOAD);
    CHECK_EQ_INT(m[0].full_len, big);
    CHECK_EQ_STR(m[0].publisher, "dev-1");
    CHECK_EQ_INT(m[0].id, 0);
    CHECK(s->answer(s->ctx, &m[0], "x/ack", (const uint8_t *)"ok", 2) == 0);
    CHECK_EQ_INT(published, 1);
    int flushes = flushed;
    CHECK(s->ack(s->ctx) == 0);
    CHECK_EQ_INT(flushed, flushes + 1);
    /* Over the reader's whole-record size: checked in pieces, its head kept;
     * one flipped byte far into it and the record is damaged. */
    size_t huge = (9u << 20) + 3;
    uint8_t *hp = malloc(huge);
    for (size_t i = 0; i < huge; i++)
        hp[i] = (uint8_t)(i * 7);
    put(4, 7, "t/h", hp, huge);
    arena_reset(&a);
    CHECK(s->read(s->ctx, 0, &a, m, 4, &n) == 0);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(m[0].full_len, huge);
    CHECK_EQ_INT(m[0].len, SP_LIMIT_PAYLOAD);
    CHECK(memcmp(m[0].payload, hp, SP_LIMIT_PAYLOAD) == 0);
    CHECK_EQ_STR(m[0].topic, "t/h");
    s->drop(s->ctx);
    put(20, 8, "t/i", hp, huge); /* written again, then damaged on disk */
    flip_near_end(20, 5);
    put(30, 9, "t/j", "9", 1);
    CHECK(s->ack(s->ctx) == 0);
    CHECK_EQ_INT(read_all(s, &a, seen), 2);
    CHECK_EQ_STR(seen, "hj"); /* 8 is skipped: it does not check out */
    CHECK(s->ack(s->ctx) == 0);
    free(hp);
    jreader_free(r);
    /* Reopened after that commit: nothing again. */
    o.committed = 9;
    CHECK(jreader_open(&o, &r, err, sizeof err) == 0);
    s = jreader_source(r);
    CHECK_EQ_INT(read_all(s, &a, seen), 0);
    put(30, 10, "t/g", "10", 2);
    CHECK_EQ_INT(read_all(s, &a, seen), 1);
    CHECK_EQ_STR(seen, "g");
    jreader_free(r);
    free(payload);
    arena_cleanup(&a);
    clean_dir();
}

/* Damage in the segment being written, records after it: they are read
 * without waiting for a newer segment; a name no writer gives is ignored. */
static void test_damage_in_place(void)
{
    struct arena a;
    struct jreader *r;
    char err[256], seen[80], path[512];
    static const uint8_t garbage[] = "SPJRxxxxnot a record at all, 40 bytes of it";

    fresh_dir();
    arena_init(&a, 64u << 20);
    put(1, 1, "t/a", "1", 1);
    put(1, 2, "t/b", "2", 1);
    flip_near_end(1, 2); /* record 2's payload */
    put_raw(1, garbage, sizeof garbage);
    put(1, 3, "t/c", "3", 1);
    put(1, 4, "t/d", "4", 1);
    snprintf(path, sizeof path, "%s/ffffffffffffffff.jnl", dir);
    FILE *f = fopen(path, "w");
    CHECK(f && fputs("garbage", f) >= 0 && fclose(f) == 0);
    uint64_t *firsts;
    size_t n;
    CHECK(journal_list(dir, &firsts, &n) == 0);
    CHECK_EQ_INT(n, 1); /* the stray name is not a segment */
    free(firsts);
    struct jreader_opts o = {.dir = dir, .committed = 0, .min_free = 0, .out = &counting};
    CHECK(jreader_open(&o, &r, err, sizeof err) == 0);
    const struct ingest_source *s = jreader_source(r);
    CHECK_EQ_INT(read_all(s, &a, seen), 3);
    CHECK_EQ_STR(seen, "acd");
    put(1, 5, "t/e", "5", 1);
    CHECK_EQ_INT(read_all(s, &a, seen), 1);
    CHECK_EQ_STR(seen, "e");
    jreader_free(r);
    arena_cleanup(&a);
    clean_dir();
}

/* The journal's tail lost (a power loss) after the daemon committed it:
 * reading what is left must not move the committed position back. */
static void test_position_never_back(void)
{
    struct arena a;
    struct jreader *r;
    char err[256], seen[80];

    fresh_dir();
    arena_init(&a, 1u << 20);
    put(1, 1, "t/a", "1", 1);
    put(1, 2, "t/b", "2", 1);
    struct jreader_opts o = {.dir = dir, .committed = 5, .min_free = 0, .out = &counting};
    CHECK(jreader_open(&o, &r, err, sizeof err) == 0);
    const struct ingest_source *s = jreader_source(r);
    CHECK_EQ_INT(read_all(s, &a, seen), 0);
    CHECK_EQ_INT(s->position(s->ctx), 5);
    jreader_free(r);
    arena_cleanup(&a);
    clean_dir();
}

int main(void)
{
    RUN(test_crc_and_records);
    RUN(test_reader);
    RUN(test_damage_in_place);
    RUN(test_position_never_back);
    return check_done();
}
