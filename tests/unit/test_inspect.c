/* test_inspect.c - the inspector's building blocks: one JSON line in a fixed
 * buffer (base/jsonline.c: escaping, cutting at a character boundary, always
 * well formed), and the event rings and watchers (core/inspect.c: order,
 * bounds, kept events, private fields, a slow watcher). */
#include "check.h"
#include "base/jsonline.h"
#include "core/inspect.h"

#include <stdio.h>
#include <string.h>

static void test_line(void)
{
    char b[128];
    struct jsonline j;

    jsonline_begin(&j, b, sizeof b);
    jsonline_str(&j, "s", "a\"b\\c\n\x01");
    jsonline_int(&j, "n", -9223372036854775807LL - 1);
    jsonline_int(&j, "z", 0);
    jsonline_bool(&j, "t", 1);
    jsonline_raw(&j, "v", "[1,2]", 5);
    jsonline_str(&j, "none", NULL);
    CHECK_EQ_INT(jsonline_end(&j), strlen(b));
    CHECK_EQ_STR(b, "{\"s\":\"a\\\"b\\\\c\\n\\u0001\",\"n\":-9223372036854775808,\"z\":0,"
                    "\"t\":true,\"v\":[1,2]}");
    /* Invalid UTF-8 is escaped, valid kept. */
    jsonline_begin(&j, b, sizeof b);
    jsonline_strn(&j, "p", "\xff\xc3\xa9", 3);
    jsonline_end(&j);
    CHECK_EQ_STR(b, "{\"p\":\"\\u00ff\xc3\xa9\"}");
}

/* A long string is cut, at a character boundary, and the line says so. */
static void test_cut(void)
{
    char b[40], s[100];
    struct jsonline j;

    memset(s, 'x', sizeof s);
    memcpy(s + 20, "\xc3\xa9\xc3\xa9\xc3\xa9", 6);
    for (size_t cap = JSONLINE_MIN; cap <= sizeof b; cap++) {
        jsonline_begin(&j, b, cap);
        jsonline_strn(&j, "k", s, sizeof s);
        jsonline_int(&j, "n", 12345);
        size_t n = jsonline_end(&j);
        CHECK(n < cap && b[n] == '\0' && b[0] == '{' && b[n - 1] == '}');
        CHECK(strstr(b, "\"cut\":true") != NULL);
        /* No half character: every 0xc3 is followed by its 0xa9. */
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)b[i] == 0xc3)
                CHECK((unsigned char)b[i + 1] == 0xa9);
    }
}

static void emit(struct inspect *in, const char *dev, const char *kind, int64_t at, int secret)
{
    struct inspect_ev e;

    inspect_begin(&e, dev, kind, at);
    jsonline_str(&e.j, "x", "y");
    if (secret) {
        inspect_private(&e);
        jsonline_str(&e.j, "plaintext", "s3cret");
    }
    inspect_emit(in, &e);
}

static size_t take_all(struct inspect *in, struct inspect_watcher *w, char *out, size_t cap)
{
    size_t n = inspect_take(in, w, out, cap - 1);
    out[n] = '\0';
    return n;
}

static int lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_watch(void)
{
    static char out[1 << 20];
    struct inspect *in;

    CHECK_EQ_INT(inspect_new(&in), 0);
    emit(in, "a", "old", 1000, 0);
    emit(in, "a", "message", 5000, 1);
    emit(in, "b", "message", 5001, 0);
    /* --since: the kept events of a from 2000 on, then the live mark. */
    struct inspect_watch q = {.device = "a", .since_ms = 4000};
    struct inspect_watcher *w = inspect_watch(in, &q, 6000);
    CHECK(w != NULL);
    take_all(in, w, out, sizeof out);
    CHECK_EQ_STR(out, "{\"seq\":2,\"at\":5000,\"device\":\"a\",\"kind\":\"message\",\"x\":\"y\"}\n"
                      "{\"kind\":\"live\"}\n");
    /* Live: a's events only; the private field only for a plaintext watcher. */
    struct inspect_watch all = {.plaintext = 1};
    struct inspect_watcher *w2 = inspect_watch(in, &all, 6000);
    take_all(in, w2, out, sizeof out);
    emit(in, "b", "message", 7000, 0);
    emit(in, "a", "envelope", 7001, 1);
    take_all(in, w, out, sizeof out);
    CHECK_EQ_STR(out,
                 "{\"seq\":5,\"at\":7001,\"device\":\"a\",\"kind\":\"envelope\",\"x\":\"y\"}\n");
    take_all(in, w2, out, sizeof out);
    CHECK_EQ_INT(lines(out), 2);
    CHECK(strstr(out, "\"plaintext\":\"s3cret\"") != NULL);
    inspect_unwatch(in, w);
    inspect_unwatch(in, w2);
    CHECK_EQ_INT(inspect_count(in), 5);
    inspect_free(in);
}

/* A ring keeps at most INSPECT_RING_EVENTS of its device, the newest; a
 * watcher that never reads loses events and is told how many. */
static void test_bounds(void)
{
    static char out[INSPECT_WATCH_BUF + 4096];
    struct inspect *in;

    CHECK_EQ_INT(inspect_new(&in), 0);
    for (int i = 0; i < 3 * INSPECT_RING_EVENTS; i++)
        emit(in, "a", "message", 10000 + i, 0);
    struct inspect_watch q = {.device = "a", .since_ms = 1000000};
    struct inspect_watcher *w = inspect_watch(in, &q, 20000);
    take_all(in, w, out, sizeof out);
    int kept = lines(out) - 1;
    CHECK(kept > 0 && kept <= INSPECT_RING_EVENTS);
    char want[64];
    snprintf(want, sizeof want, "\"at\":%d,", 10000 + 3 * INSPECT_RING_EVENTS - 1);
    CHECK(strstr(out, want) != NULL); /* the newest is kept */
    /* Never read: the buffer stops at INSPECT_WATCH_BUF, then counts. */
    size_t big = INSPECT_EVENT_MAX;
    for (size_t i = 0; i < 2 * INSPECT_WATCH_BUF / 100; i++)
        emit(in, "a", "message", 30000, 0);
    size_t n = take_all(in, w, out, sizeof out);
    CHECK(n <= INSPECT_WATCH_BUF && n > INSPECT_WATCH_BUF - big);
    /* Once it has read everything, it is told at once, not at the next event. */
    take_all(in, w, out, sizeof out);
    CHECK(strncmp(out, "{\"kind\":\"dropped\",\"count\":", 26) == 0);
    emit(in, "a", "after", 40000, 0);
    take_all(in, w, out, sizeof out);
    CHECK(strstr(out, "\"kind\":\"after\"") != NULL && !strstr(out, "dropped"));
    inspect_unwatch(in, w);
    inspect_free(in);
}

/* Past INSPECT_KEPT_BYTES in all, the quietest devices' rings go first. */
static void test_budget(void)
{
    static char out[1 << 20];
    struct inspect *in;
    char dev[16];
    int devices = (int)(INSPECT_KEPT_BYTES / INSPECT_RING_BYTES) * 15 / 8;

    CHECK(devices < INSPECT_RINGS_MAX); /* the bytes bound bites, not the count */
    CHECK_EQ_INT(inspect_new(&in), 0);
    for (int d = 0; d < devices; d++) {
        snprintf(dev, sizeof dev, "d%d", d);
        for (int i = 0; i < INSPECT_RING_EVENTS; i++) /* about 26 KiB a device */
            emit(in, dev, "message", 1000, 0);
    }
    struct inspect_watch first = {.device = "d0", .since_ms = 1000000};
    struct inspect_watcher *w = inspect_watch(in, &first, 2000);
    take_all(in, w, out, sizeof out);
    CHECK_EQ_STR(out, "{\"kind\":\"live\"}\n");
    inspect_unwatch(in, w);
    snprintf(dev, sizeof dev, "d%d", devices - 1);
    struct inspect_watch last = {.device = dev, .since_ms = 1000000};
    w = inspect_watch(in, &last, 2000);
    take_all(in, w, out, sizeof out);
    CHECK(lines(out) > 100);
    inspect_unwatch(in, w);
    inspect_free(in);
}

/*
 * More devices than INSPECT_RINGS_MAX, a few events each (a fleet where every
 * message comes from another device): the rings of the newest devices are
 * kept, each with all its events, and a watcher of every device gets every
 * kept event once, in order (the replay is sized by the events kept).
 */
static void test_many_devices(void)
{
    static char out[INSPECT_WATCH_BUF + 4096];
    const int devices = 2 * INSPECT_RINGS_MAX, per = 3;
    struct inspect *in;
    char dev[16];

    CHECK_EQ_INT(inspect_new(&in), 0);
    for (int d = 0; d < devices; d++) {
        snprintf(dev, sizeof dev, "m%d", d);
        for (int i = 0; i < per; i++)
            emit(in, dev, "message", 1000 + d, 0);
    }
    struct inspect_watch all = {.since_ms = 1000000};
    struct inspect_watcher *w = inspect_watch(in, &all, 100000);
    take_all(in, w, out, sizeof out);
    CHECK_EQ_INT(lines(out), INSPECT_RINGS_MAX * per + 1); /* and the live mark */
    snprintf(dev, sizeof dev, "\"m%d\"", devices - INSPECT_RINGS_MAX);
    CHECK(strstr(out, dev) != NULL); /* the oldest kept */
    snprintf(dev, sizeof dev, "\"m%d\"", devices - INSPECT_RINGS_MAX - 1);
    CHECK(strstr(out, dev) == NULL); /* the newest dropped */
    const char *first = strstr(out, "\"at\":");
    char want[32];
    snprintf(want, sizeof want, "\"at\":%d,", 1000 + devices - INSPECT_RINGS_MAX);
    CHECK(first && strncmp(first, want, strlen(want)) == 0); /* oldest first */
    inspect_unwatch(in, w);
    inspect_free(in);
}

/* Output taken in small pieces while events keep coming: every event once,
 * in order, whatever the piece size (inspect_take moves what is left down
 * only once half is taken). */
static void test_take_pieces(void)
{
    static char all[1 << 20];
    struct inspect *in;
    struct inspect_watch q = {0};
    size_t len = 0;
    char piece[97];
    int next = 0;

    CHECK(inspect_new(&in) == 0);
    struct inspect_watcher *w = inspect_watch(in, &q, 1000);
    CHECK(w != NULL);
    for (int round = 0; round < 300; round++) {
        for (int k = 0; k < 7; k++)
            emit(in, "d", "message", 1000 + next++, 0);
        for (int k = 0; k < 5; k++) {
            size_t n = inspect_take(in, w, piece, sizeof piece);
            CHECK(len + n < sizeof all);
            memcpy(all + len, piece, n);
            len += n;
        }
    }
    size_t n;
    while ((n = inspect_take(in, w, piece, sizeof piece)) > 0) {
        memcpy(all + len, piece, n);
        len += n;
    }
    all[len] = '\0';
    CHECK_EQ_INT(lines(all), next + 1); /* and the live marker first */
    const char *at = all;
    for (int i = 0; i < next; i++) {
        char want[48];
        snprintf(want, sizeof want, "{\"seq\":%d,\"at\":%d,", i + 1, 1000 + i);
        at = strstr(at, want);
        CHECK(at != NULL);
        if (!at)
            break;
    }
    inspect_unwatch(in, w);
    inspect_free(in);
}

int main(void)
{
    RUN(test_line);
    RUN(test_cut);
    RUN(test_watch);
    RUN(test_bounds);
    RUN(test_budget);
    RUN(test_many_devices);
    RUN(test_take_pieces);
    return check_done();
}
