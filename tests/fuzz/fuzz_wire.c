/*
 * fuzz_wire.c - libFuzzer target for the daemon's reader of the worker
 * protocol (runtime/sandbox/wire.c), the trust boundary against a Lua worker
 * that user code may have subverted.
 *
 * Each input is one frame body as the daemon holds it once the 4-byte length
 * is read, in a heap block of exactly its size, and is read the way pool.c
 * reads it, by its type byte:
 *   'j'  a job's reply (take_reply): type, rc, err, then wire_get_result(),
 *        once with the default limits and once with small ones;
 *   'Q'  a query() call (answer_query): wire_get_query();
 *   'l'  a loaded analysis's reply (load_in_worker): the topic filters it
 *        declares, which route.c then parses;
 *   'J'  a job, as the worker reads it (wire_get_msg): the daemon's own data,
 *        whose records are checked for shape only (a "payload" record holds
 *        a whole payload, longer than a record a script returns may be).
 * A reader may refuse anything, but never reads outside the frame, and what
 * it accepts is what host.h promises the daemon: every record passes
 * record_validate() unchanged, no count or size is over its limit (returned
 * and inserted records together within the records limit), publishes follow
 * publish()'s rules, serials have the registry's shape, log lines are short
 * valid UTF-8 without control characters, a query's bounds are ordered, a
 * declared filter is one host_load() accepts (no '$' topic) and matches the
 * topics it should.
 * Seeds: tests/fuzz/corpus/fuzz_wire/ (written by scripts/fuzz --seeds).
 */
#include "fuzz.h"
#include "base/route.h"
#include "sandbox/wire.h"
#include "sealpipe.h"
#include "base/sp_limits.h"

#include <string.h>

#define FUZZ_ARENA SP_LIMIT_ARENA

static struct arena ar;

/* 1-SP_MAX_SERIAL characters of [A-Za-z0-9_-], as the registry takes them. */
static int serial_shape(const char *s)
{
    size_t n = s ? strlen(s) : 0;

    if (n == 0 || n > SP_MAX_SERIAL)
        return 0;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

static int has_upper(const char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            return 1;
    return 0;
}

static void check_text(const char *s, size_t max)
{
    FUZZ_CHECK(strlen(s) <= max && sp__utf8_valid(s, strlen(s)));
}

static void check_record(const struct record *r)
{
    struct record copy = *r;
    char err[256];
    struct json *m;

    FUZZ_CHECK(record_validate(&ar, &copy, err, sizeof err) == 0);
    FUZZ_CHECK(strcmp(copy.variable, r->variable) == 0 && copy.boolean == r->boolean);
    FUZZ_CHECK(r->type <= RECORD_BOOLEAN);
    FUZZ_CHECK(strlen(r->variable) >= 1 && strlen(r->variable) <= SP_LIMIT_VARIABLE);
    FUZZ_CHECK(!has_upper(r->variable));
    if (r->type == RECORD_STRING) {
        FUZZ_CHECK(r->string && r->string_len <= SP_LIMIT_VALUE);
        FUZZ_CHECK(strlen(r->string) == r->string_len && sp__utf8_valid(r->string, r->string_len));
    }
    if (r->unit)
        check_text(r->unit, SP_LIMIT_UNIT);
    if (r->group)
        check_text(r->group, SP_LIMIT_GROUP);
    if (r->metadata) {
        FUZZ_CHECK(strlen(r->metadata) <= SP_LIMIT_METADATA);
        FUZZ_CHECK(json_parse(&ar, r->metadata, strlen(r->metadata), &m, NULL, 0) == 0);
        FUZZ_CHECK(m->type == JSON_OBJECT);
    }
}

/* "$tip/S/ack" in the clear, or "$tips/S/ack" sealed for S. */
static int ack_topic(const char *topic, const char *seal_for)
{
    char s[SP_MAX_SERIAL + 1];
    const char *rest = strncmp(topic, "$tips/", 6) == 0  ? topic + 6
                       : strncmp(topic, "$tip/", 5) == 0 ? topic + 5
                                                         : NULL;
    size_t n = rest ? strcspn(rest, "/") : 0;

    if (!rest || n == 0 || n > SP_MAX_SERIAL || strcmp(rest + n, "/ack") != 0)
        return 0;
    memcpy(s, rest, n);
    s[n] = '\0';
    return rest == topic + 6 ? seal_for && strcmp(seal_for, s) == 0 : seal_for == NULL;
}

static void check_publish(const struct host_publish *p)
{
    size_t n = p->topic ? strlen(p->topic) : 0;

    FUZZ_CHECK(n >= 1 && n <= SP_LIMIT_TOPIC && sp__utf8_valid(p->topic, n));
    FUZZ_CHECK(!strpbrk(p->topic, "+#"));
    FUZZ_CHECK(p->topic[0] != '$' || ack_topic(p->topic, p->seal_for));
    FUZZ_CHECK(p->qos >= 0 && p->qos <= 2 && (p->retain == 0 || p->retain == 1));
    FUZZ_CHECK(p->payload != NULL && p->payload_len <= SP_LIMIT_PAYLOAD);
    if (p->seal_for)
        FUZZ_CHECK(serial_shape(p->seal_for) && p->payload_len <= SP_MAX_FRAME);
}

static void check_log(const char *line)
{
    FUZZ_CHECK(line != NULL);
    size_t n = strlen(line);
    FUZZ_CHECK(n <= HOST_LOG_LINE_MAX && sp__utf8_valid(line, n));
    for (size_t i = 0; i < n; i++)
        FUZZ_CHECK((unsigned char)line[i] >= 0x20 && line[i] != 0x7f);
}

/* pool.c's take_reply(), with the worker limits max_records and max_publishes. */
static void reply(const uint8_t *p, size_t n, size_t max_records, size_t max_publishes)
{
    struct wire_in in = {.p = p, .len = n, .a = &ar};
    struct host_out o;
    char why[512];
    unsigned type = wire_get_u8(&in);

    (void)(int32_t)wire_get_u32(&in);
    (void)wire_get_str(&in, NULL);
    if (in.bad || type != WIRE_DONE)
        return;
    int rc = wire_get_result(&in, HOST_TICK, max_records, max_publishes, &o, why, sizeof why);
    FUZZ_CHECK(in.pos <= in.len);
    if (rc) {
        FUZZ_CHECK(rc == -1 && why[0] != '\0' && memchr(why, '\0', sizeof why));
        return;
    }
    FUZZ_CHECK(!in.bad);
    FUZZ_CHECK(o.records.n <= max_records);
    for (size_t i = 0; i < o.records.n; i++)
        check_record(&o.records.v[i]);
    FUZZ_CHECK(o.npublishes <= max_publishes && (o.npublishes == 0 || o.publishes));
    for (size_t i = 0; i < o.npublishes; i++)
        check_publish(&o.publishes[i]);
    FUZZ_CHECK(o.nlogs <= HOST_LOG_LINES && (o.nlogs == 0 || o.logs));
    for (size_t i = 0; i < o.nlogs; i++)
        check_log(o.logs[i]);
    FUZZ_CHECK(o.ninserts <= HOST_MAX_INSERTS_RUN && (o.ninserts == 0 || o.inserts));
    FUZZ_CHECK(o.ndeletes <= HOST_MAX_DELETES && (o.ndeletes == 0 || o.deletes));
    for (size_t i = 0; i < o.ndeletes; i++)
        FUZZ_CHECK(serial_shape(o.deletes[i].serial));
    size_t total = o.records.n;
    for (size_t i = 0; i < o.ninserts; i++) {
        FUZZ_CHECK(serial_shape(o.inserts[i].serial));
        for (size_t k = 0; k < o.inserts[i].records.n; k++)
            check_record(&o.inserts[i].records.v[k]);
        total += o.inserts[i].records.n;
    }
    FUZZ_CHECK(total <= max_records);
}

/* pool.c's answer_query(): the type byte, then the call. */
static void query(const uint8_t *p, size_t n)
{
    struct wire_in in = {.p = p + 1, .len = n - 1, .a = &ar};
    struct host_query q;

    if (p[0] != WIRE_QUERY || wire_get_query(&in, &q))
        return;
    FUZZ_CHECK(!in.bad && in.pos <= in.len);
    FUZZ_CHECK(serial_shape(q.serial));
    if (q.variable) {
        size_t vl = strlen(q.variable);
        FUZZ_CHECK(vl >= 1 && vl <= SP_LIMIT_VARIABLE && !has_upper(q.variable));
    }
    FUZZ_CHECK(q.start_ms <= q.stop_ms);
    FUZZ_CHECK(q.qty >= 1 && q.qty <= HOST_QUERY_MAX);
}

/*
 * A topic made from filter f that f must match: '+' -> "x", "{serial}" ->
 * "sensor-01", a last '#' -> "a/b". Returns 0 when it does not fit.
 */
static int topic_for(const char *f, char *out, size_t cap)
{
    size_t o = 0;

    for (const char *l = f;;) {
        size_t n = strcspn(l, "/");
        const char *w = n == 1 && l[0] == '+'                     ? "x"
                        : n == 8 && memcmp(l, "{serial}", 8) == 0 ? "sensor-01"
                        : n == 1 && l[0] == '#'                   ? "a/b"
                                                                  : NULL;
        size_t wn = w ? strlen(w) : n;
        if (o + wn + 2 > cap)
            return 0;
        memcpy(out + o, w ? w : l, wn);
        o += wn;
        if (!l[n])
            break;
        out[o++] = '/';
        l += n + 1;
    }
    out[o] = '\0';
    return 1;
}

/* A declared filter from the worker: what host_load lets an analysis declare. */
static void check_filter(const char *f)
{
    static char mqtt[SP_LIMIT_TOPIC + 2], topic[4 * SP_LIMIT_TOPIC];
    char serial[SP_MAX_SERIAL + 1];
    size_t n = f ? strlen(f) : 0;

    FUZZ_CHECK(n >= 1 && n <= SP_LIMIT_TOPIC && sp__utf8_valid(f, n));
    FUZZ_CHECK(f[0] != '$');
    FUZZ_CHECK(route_mqtt_filter(f, mqtt, sizeof mqtt) == 0);
    FUZZ_CHECK(topic_for(f, topic, sizeof topic));
    FUZZ_CHECK(route_match(f, topic, serial, sizeof serial) == 1);
    FUZZ_CHECK(strcmp(serial, strstr(f, "{serial}") ? "sensor-01" : "") == 0);
    FUZZ_CHECK(route_overlap(f, f) && route_overlap(f, topic) && route_overlap(mqtt, f));
}

/* pool.c's load_in_worker(): an 'l' reply and the topics it declares. */
static void loaded(const uint8_t *p, size_t n)
{
    struct wire_in in = {.p = p, .len = n, .a = &ar};
    unsigned type = wire_get_u8(&in);
    int rc = (int)(int32_t)wire_get_u32(&in);

    (void)wire_get_str(&in, NULL);
    uint32_t nt = wire_get_u32(&in);
    if (in.bad || type != WIRE_LOADED || nt > SP_LIMIT_TOPICS_PER_ANALYSIS || rc)
        return;
    for (uint32_t i = 0; i < nt; i++) {
        const char *t = wire_get_topic(&in);
        if (!t)
            return;
        check_filter(t);
    }
}

/* worker.c's reading of a job. */
static void job(const uint8_t *p, size_t n)
{
    struct wire_in in = {.p = p + 1, .len = n - 1, .a = &ar};
    const char *analysis;
    struct host_msg m;

    if (p[0] != WIRE_JOB || wire_get_msg(&in, &analysis, &m))
        return;
    FUZZ_CHECK(!in.bad && in.pos <= in.len);
    FUZZ_CHECK(analysis && m.topic && m.payload);
    FUZZ_CHECK(m.nrecords <= SP_LIMIT_RECORDS);
    for (size_t i = 0; i < m.nrecords; i++) {
        const struct record *r = &m.records[i];
        FUZZ_CHECK(r->variable && r->type <= RECORD_BOOLEAN);
        if (r->type == RECORD_STRING)
            FUZZ_CHECK(r->string && r->string_len <= n);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *p;

    if (size == 0)
        return 0;
    p = (uint8_t *)fuzz_copy(data, size);
    arena_init(&ar, FUZZ_ARENA);
    reply(p, size, SP_LIMIT_RECORDS, SP_LIMIT_PUBLISHES);
    reply(p, size, 3, 2);
    query(p, size);
    loaded(p, size);
    job(p, size);
    arena_cleanup(&ar);
    free(p);
    return 0;
}
