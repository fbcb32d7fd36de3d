/*
 * fuzz_record.c - libFuzzer target for records_from_payload(), which turns
 * every MQTT payload into records, and for iso8601_parse(), which reads the
 * time of a TagoIO record.
 *
 * Each input is one payload, in a heap block of exactly its size, read
 * under three topics: none, an ordinary one, and a 1024-byte one full of
 * quotes, backslashes, control characters and non-ASCII text. A payload that
 * fails leaves the record vector as it was. A "payload" record carries the
 * input, as text or lowercase hex, and the topic in its metadata. TagoIO
 * records pass record_validate() again unchanged, carry mqtt_topic, and,
 * written with record_to_json() as an array, read back to the same records.
 *
 * The same input is also one ISO 8601 date-time. An accepted one is compared
 * with glibc's timegm() on the fields read by a separate grammar, and
 * record_to_json() prints a time that reads back to the same millisecond.
 * Seeds: tests/fuzz/corpus/fuzz_record/ (from tests/data/record/).
 */
#define _DEFAULT_SOURCE /* timegm */
#include "fuzz.h"
#include "base/errors.h"
#include "base/record.h"
#include "sealpipe.h"
#include "base/sp_limits.h"

#include <math.h>
#include <string.h>
#include <time.h>

#define FUZZ_ARENA (64u * 1024 * 1024)
#define MS_PER_DAY 86400000LL

static char nasty[SP_LIMIT_TOPIC + 1];
static const char *topics[3] = {NULL, "devices/sensor-01/data", nasty};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char piece[] = "a/\"b\\c\x01\x1f\x7f/é€𝄞/";
    size_t n = 0;

    (void)argc;
    (void)argv;
    while (n + sizeof piece - 1 <= SP_LIMIT_TOPIC) {
        memcpy(nasty + n, piece, sizeof piece - 1);
        n += sizeof piece - 1;
    }
    memset(nasty + n, 'z', SP_LIMIT_TOPIC - n);
    return 0;
}

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static int same_record(const struct record *a, const struct record *b)
{
    if (!same_str(a->variable, b->variable) || a->type != b->type || !same_str(a->unit, b->unit) ||
        a->has_time != b->has_time || (a->has_time && a->time_ms != b->time_ms) ||
        !same_str(a->group, b->group) || a->has_location != b->has_location ||
        !same_str(a->metadata, b->metadata))
        return 0;
    if (a->has_location && (a->lat != b->lat || a->lng != b->lng || a->has_alt != b->has_alt ||
                            (a->has_alt && a->alt != b->alt)))
        return 0;
    switch (a->type) {
    case RECORD_NUMBER:
        return a->number == b->number;
    case RECORD_STRING:
        return a->string_len == b->string_len && memcmp(a->string, b->string, a->string_len) == 0;
    case RECORD_BOOLEAN:
        return a->boolean == b->boolean;
    default:
        return 1;
    }
}

/* The metadata member mqtt_topic of r, or NULL. */
static const struct json *mqtt_topic(struct arena *ar, const struct record *r)
{
    struct json *m;

    if (!r->metadata)
        return NULL;
    FUZZ_CHECK(json_parse(ar, r->metadata, strlen(r->metadata), &m, NULL, 0) == 0);
    FUZZ_CHECK(m->type == JSON_OBJECT);
    return json_get(m, "mqtt_topic");
}

/* The raw record: the payload as text when it is NUL-free UTF-8, else hex. */
static void check_raw(struct arena *ar, const char *topic, const uint8_t *data, size_t size,
                      const struct record *r)
{
    static const char hex[] = "0123456789abcdef";

    FUZZ_CHECK(strcmp(r->variable, "payload") == 0 && r->type == RECORD_STRING);
    FUZZ_CHECK(r->string && strlen(r->string) == r->string_len);
    if (size == 0 || (!memchr(data, 0, size) && sp__utf8_valid((const char *)data, size))) {
        FUZZ_CHECK(r->string_len == size && memcmp(r->string, data, size) == 0);
    } else {
        FUZZ_CHECK(r->string_len == 2 * size);
        for (size_t i = 0; i < size; i++)
            FUZZ_CHECK(r->string[2 * i] == hex[data[i] >> 4] &&
                       r->string[2 * i + 1] == hex[data[i] & 15]);
    }
    const struct json *t = mqtt_topic(ar, r);
    if (topic)
        FUZZ_CHECK(t && t->type == JSON_STRING && strcmp(t->str, topic) == 0);
    else
        FUZZ_CHECK(r->metadata == NULL);
}

/* TagoIO records: valid, and they survive record_to_json and a second read. */
static void check_tago(struct arena *ar, const char *topic, const struct record *v, size_t n)
{
    struct record_vec again = {0};
    struct buf b;
    char err[512];

    FUZZ_CHECK(n >= 1 && n <= SP_LIMIT_RECORDS);
    buf_init(&b, FUZZ_ARENA);
    FUZZ_CHECK(buf_putc(&b, '[') == 0);
    for (size_t i = 0; i < n; i++) {
        struct record r = v[i];
        FUZZ_CHECK(record_validate(ar, &r, err, sizeof err) == 0);
        FUZZ_CHECK(same_record(&r, &v[i])); /* already normal: nothing changes */
        if (topic)
            FUZZ_CHECK(mqtt_topic(ar, &v[i]) != NULL);
        FUZZ_CHECK((i == 0 || buf_putc(&b, ',') == 0) && record_to_json(&b, &v[i]) == 0);
    }
    FUZZ_CHECK(buf_putc(&b, ']') == 0);
    int rc = records_from_payload(ar, topic, (const uint8_t *)b.p, b.len, &again, err, sizeof err);
    if (rc != 1) {
        fprintf(stderr, "written: %.*s\nread back: %d %s\n", (int)b.len, b.p, rc, err);
        FUZZ_FAIL("record_to_json output does not read back");
    }
    FUZZ_CHECK(again.n == n);
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK(same_record(&again.v[i], &v[i]));
    buf_cleanup(&b);
}

static void payload(struct arena *ar, const char *topic, const uint8_t *data, size_t size)
{
    struct record_vec rv = {0};
    char err[512];
    struct record *first = record_vec_push(ar, &rv);

    FUZZ_CHECK(first != NULL);
    first->variable = "sentinel";
    memset(err, 'x', sizeof err);
    int rc = records_from_payload(ar, topic, data, size, &rv, err, sizeof err);
    if (rc < 0) {
        FUZZ_CHECK(rc == SP_ERR_PAYLOAD || rc == SP_ERR_TOOLARGE || rc == SP_ERR_NOMEM);
        FUZZ_CHECK(memchr(err, '\0', sizeof err) && err[0] != '\0');
        FUZZ_CHECK(rv.n == 1); /* rolled back */
        return;
    }
    FUZZ_CHECK(rc == 0 || rc == 1);
    FUZZ_CHECK(rv.n >= 2 && strcmp(rv.v[0].variable, "sentinel") == 0);
    if (rc == 0) {
        FUZZ_CHECK(rv.n == 2);
        check_raw(ar, topic, data, size, &rv.v[1]);
    } else {
        check_tago(ar, topic, rv.v + 1, rv.n - 1);
    }
}

/* ---- ISO 8601 ----------------------------------------------------------- */

static int num(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/*
 * The grammar iso8601_parse documents, read by fixed positions:
 * YYYY-MM-DD[Tt ]HH:MM:SS[(.|,)1-9 digits][Z|z|(+|-)hh[[:]mm]].
 * Returns 1 and the UTC milliseconds from timegm(), or 0.
 */
static int iso_reference(const char *s, size_t n, int64_t *ms)
{
    struct tm tm = {0}, check;
    size_t i = 19;
    int frac = 0, sign = 0, oh = 0, om = 0;

    if (n < 19 || s[4] != '-' || s[7] != '-' || !strchr("Tt ", s[10]) || !s[10] || s[13] != ':' ||
        s[16] != ':')
        return 0;
    int y = num(s, 4), mo = num(s + 5, 2), d = num(s + 8, 2), h = num(s + 11, 2),
        mi = num(s + 14, 2), sec = num(s + 17, 2);
    if (y < 0 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 ||
        sec > 59)
        return 0;
    if (i < n && (s[i] == '.' || s[i] == ',')) {
        size_t start = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start || i - start > 9)
            return 0;
        char three[4] = "000";
        memcpy(three, s + start, i - start < 3 ? i - start : 3);
        frac = num(three, 3);
    }
    if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < n && (s[i] == '+' || s[i] == '-')) {
        sign = s[i] == '-' ? -1 : 1;
        size_t left = n - i - 1;
        const char *z = s + i + 1;
        if (left == 2)
            oh = num(z, 2);
        else if (left == 4)
            oh = num(z, 2), om = num(z + 2, 2);
        else if (left == 5 && z[2] == ':')
            oh = num(z, 2), om = num(z + 3, 2);
        else
            return 0;
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return 0;
        i = n;
    }
    if (i != n)
        return 0;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    check = tm;
    time_t t = timegm(&tm);
    if (tm.tm_mday != check.tm_mday || tm.tm_mon != check.tm_mon) /* 31 April */
        return 0;
    *ms = (int64_t)t * 1000 + frac - (int64_t)sign * (oh * 3600 + om * 60) * 1000;
    return 1;
}

static void iso8601(struct arena *ar, const char *p, size_t size)
{
    int64_t ms = 0, ref = 0, back = 0;
    int rc = iso8601_parse(p, size, &ms);
    int ok = iso_reference(p, size, &ref);

    FUZZ_CHECK(rc == 0 || rc == SP_ERR_PAYLOAD);
    if ((rc == 0) != ok || (ok && ms != ref)) {
        fprintf(stderr, "iso8601_parse: rc %d %lld, reference: %d %lld\n", rc, (long long)ms, ok,
                (long long)ref);
        FUZZ_FAIL("iso8601_parse disagrees with timegm");
    }
    if (rc)
        return;
    /* Printed as a record's time, it reads back to the same millisecond. */
    struct record r = {.variable = "t", .has_time = 1, .time_ms = ms};
    struct buf b;
    char err[256];
    buf_init(&b, 4096);
    if (record_validate(ar, &r, err, sizeof err) == 0) {
        FUZZ_CHECK(record_to_json(&b, &r) == 0);
        const char *q = strstr(b.p, "\"time\":\"");
        FUZZ_CHECK(q != NULL);
        q += 8;
        FUZZ_CHECK(iso8601_parse(q, strcspn(q, "\""), &back) == 0 && back == ms);
    } else {
        /* Only an offset can move a time of the years 0000-9999 out of them. */
        FUZZ_CHECK(size > 19 && (p[size - 3] == '+' || p[size - 3] == '-' || p[size - 5] == '+' ||
                                 p[size - 5] == '-' || p[size - 6] == '+' || p[size - 6] == '-'));
    }
    buf_cleanup(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *p = fuzz_copy(data, size);
    struct arena ar;

    arena_init(&ar, FUZZ_ARENA);
    for (size_t t = 0; t < sizeof topics / sizeof topics[0]; t++)
        payload(&ar, topics[t], (const uint8_t *)p, size);
    iso8601(&ar, p, size);
    arena_cleanup(&ar);
    free(p);
    return 0;
}
