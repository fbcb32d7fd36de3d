/*
 * test_wire.c - unit tests for the daemon's reader of the worker protocol
 * (runtime/sandbox/wire.c): what a subverted worker may send and what the
 * daemon must refuse or clean. Frames are written with the same writers the
 * worker uses, then read as pool.c reads them (wire_get_result for a job's
 * reply, wire_get_query for a query() call, wire_get_topic for the filters a
 * loaded analysis declares). tests/fuzz/fuzz_wire.c checks
 * the same promises on arbitrary bytes.
 */
#include <stdio.h>
#include <string.h>

#include "base/arena.h"
#include "base/buf.h"
#include "check.h"
#include "sandbox/wire.h"
#include "sealpipe.h"
#include "base/sp_limits.h"
#include "base/webhook_url.h"

static struct arena ar;
static struct buf b;
static struct host_out out;
static char why[512];

static struct record rec(const char *variable)
{
    return (struct record){.variable = variable, .type = RECORD_NUMBER, .number = 1};
}

/* The body of a job reply after rc and err, as worker.c writes it. */
static void reply(const struct record *r, size_t nr, const struct host_publish *p, size_t np,
                  const char *const *logs, size_t nl, const struct host_insert *ins, size_t ni)
{
    buf_reset(&b);
    CHECK(wire_put_records(&b, r, nr) == 0 && wire_put_publishes(&b, p, np) == 0 &&
          wire_put_logs(&b, logs, nl, 0) == 0 && wire_put_inserts(&b, ins, ni) == 0 &&
          wire_put_runs(&b, NULL, 0) == 0 && wire_put_webhooks(&b, NULL, 0) == 0 &&
          wire_put_deletes(&b, NULL, 0) == 0);
}

/* The reply as the daemon reads it for a job of handler. */
static int read_reply_of(int handler, size_t max_records)
{
    struct wire_in in = {.p = (const uint8_t *)b.p, .len = b.len, .a = &ar};
    why[0] = '\0';
    return wire_get_result(&in, handler, max_records, SP_LIMIT_PUBLISHES, &out, why, sizeof why);
}

static int read_reply(size_t max_records)
{
    return read_reply_of(HOST_HANDLE, max_records);
}

static struct host_insert insert(const char *serial, struct record *r, size_t n)
{
    return (struct host_insert){.serial = serial, .records = {.v = r, .n = n, .cap = n}};
}

static void test_result_ok(void)
{
    struct record r[2] = {rec("a"), rec("b")};
    struct host_publish p[2] = {
        {.topic = "alerts/x", .payload = (const uint8_t *)"hot", .payload_len = 3, .qos = 1},
        {.topic = "$tips/sensor-01/ack",
         .payload = (const uint8_t *)"x",
         .payload_len = 1,
         .seal_for = "sensor-01"}};
    const char *logs[] = {"one", "naïve"};
    struct host_insert ins[1] = {insert("Sensor_2-b", r, 2)};

    reply(r, 2, p, 2, logs, 2, ins, 1);
    CHECK_EQ_INT(read_reply(4), 0);
    CHECK_EQ_INT(out.records.n, 2);
    CHECK_EQ_INT(out.npublishes, 2);
    CHECK_EQ_STR(out.logs[1], "naïve");
    CHECK_EQ_STR(out.inserts[0].serial, "Sensor_2-b");
}

/* Returned and inserted records share one limit (host.h, struct host_out). */
static void test_records_limit_is_shared(void)
{
    struct record r[3] = {rec("a"), rec("b"), rec("c")};
    struct host_insert ins[2] = {insert("s1", r, 2), insert("s2", r, 1)};

    reply(r, 3, NULL, 0, NULL, 0, ins, 2);
    CHECK_EQ_INT(read_reply(6), 0);
    CHECK_EQ_INT(read_reply(5), -1);
    reply(r, 0, NULL, 0, NULL, 0, ins, 2);
    CHECK_EQ_INT(read_reply(3), 0);
    CHECK_EQ_INT(read_reply(2), -1);
}

/* Serials from the worker have the registry's shape: they reach log lines and lookups. */
static void test_serials(void)
{
    static const char *const bad[] = {"", "a b", "x\nERROR forged", "a/b", "sensor\x7f", "é"};
    struct record r[1] = {rec("a")};

    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct host_insert ins[1] = {insert(bad[i], r, 1)};
        reply(NULL, 0, NULL, 0, NULL, 0, ins, 1);
        CHECK_EQ_INT(read_reply(SP_LIMIT_RECORDS), -1);
        struct host_publish p[1] = {
            {.topic = "x", .payload = (const uint8_t *)"", .seal_for = bad[i]}};
        reply(NULL, 0, p, 1, NULL, 0, NULL, 0);
        CHECK_EQ_INT(read_reply(SP_LIMIT_RECORDS), -1);
    }
}

/* Topics are what publish() takes: NUL-free valid UTF-8. */
static void test_publish_topic(void)
{
    struct host_publish p[1] = {{.topic = "a/\xff", .payload = (const uint8_t *)""}};

    reply(NULL, 0, p, 1, NULL, 0, NULL, 0);
    CHECK_EQ_INT(read_reply(SP_LIMIT_RECORDS), -1);
    /* "a\0b": wire_str cannot write it; patch the byte in place. */
    p[0].topic = "a#b";
    reply(NULL, 0, p, 1, NULL, 0, NULL, 0);
    char *hash = memchr(b.p, '#', b.len);
    CHECK(hash != NULL);
    *hash = '\0';
    CHECK_EQ_INT(read_reply(SP_LIMIT_RECORDS), -1);
}

/* Log lines come out as valid UTF-8 without control characters, cut or not. */
static void test_logs(void)
{
    char longer[HOST_LOG_LINE_MAX + 64];
    memset(longer, 'x', sizeof longer);
    memcpy(longer + HOST_LOG_LINE_MAX - 1, "é", 2); /* cut in the middle */
    longer[sizeof longer - 1] = '\0';
    const char *logs[] = {"bad \xff\xfe bytes", "ctl \x01\n\x7f", longer};

    reply(NULL, 0, NULL, 0, logs, 3, NULL, 0);
    CHECK_EQ_INT(read_reply(SP_LIMIT_RECORDS), 0);
    CHECK_EQ_INT(out.nlogs, 3);
    for (size_t i = 0; i < out.nlogs; i++) {
        size_t n = strlen(out.logs[i]);
        CHECK(n <= HOST_LOG_LINE_MAX && sp__utf8_valid(out.logs[i], n));
        for (size_t k = 0; k < n; k++)
            CHECK((unsigned char)out.logs[i][k] >= 0x20 && out.logs[i][k] != 0x7f);
    }
    CHECK_EQ_STR(out.logs[0], "bad ?? bytes");
    CHECK_EQ_STR(out.logs[1], "ctl ???");
}

static int read_query(const char *serial, const char *variable, size_t vlen, int64_t start,
                      int64_t stop, uint32_t qty)
{
    struct host_query q;

    buf_reset(&b);
    CHECK(wire_str(&b, serial) == 0 &&
          (variable ? wire_bytes(&b, variable, vlen) : wire_str(&b, NULL)) == 0 &&
          wire_i64(&b, start) == 0 && wire_i64(&b, stop) == 0 && wire_u32(&b, qty) == 0);
    struct wire_in in = {.p = (const uint8_t *)b.p, .len = b.len, .a = &ar};
    return wire_get_query(&in, &q);
}

/* The arguments host_set_query() promises the daemon's query function. */
static void test_query(void)
{
    char v101[SP_LIMIT_VARIABLE + 2];
    memset(v101, 'v', sizeof v101);

    CHECK_EQ_INT(read_query("sensor-01", "temperature", 11, INT64_MIN, INT64_MAX, 100), 0);
    CHECK_EQ_INT(read_query("sensor-01", NULL, 0, 5, 5, 1), 0);
    CHECK_EQ_INT(read_query("sensor-01", v101, SP_LIMIT_VARIABLE, 5, 5, 1), 0);
    CHECK_EQ_INT(read_query("sensor 01", NULL, 0, 5, 5, 1), -1);
    CHECK_EQ_INT(read_query("x\nERROR", NULL, 0, 5, 5, 1), -1);
    CHECK_EQ_INT(read_query(NULL, NULL, 0, 5, 5, 1), -1);
    CHECK_EQ_INT(read_query("s", NULL, 0, 6, 5, 1), -1);
    CHECK_EQ_INT(read_query("s", NULL, 0, 5, 5, 0), -1);
    CHECK_EQ_INT(read_query("s", NULL, 0, 5, 5, 101), -1);
    CHECK_EQ_INT(read_query("s", "", 0, 5, 5, 1), -1);
    CHECK_EQ_INT(read_query("s", "Temp", 4, 5, 5, 1), -1);
    CHECK_EQ_INT(read_query("s", "t\0x", 3, 5, 5, 1), -1);
    CHECK_EQ_INT(read_query("s", v101, SP_LIMIT_VARIABLE + 1, 5, 5, 1), -1);
}

static const char *read_topic(const char *f, size_t n)
{
    buf_reset(&b);
    CHECK(wire_bytes(&b, f, n) == 0);
    struct wire_in in = {.p = (const uint8_t *)b.p, .len = b.len, .a = &ar};
    const char *t = wire_get_topic(&in);
    CHECK((t == NULL) == (in.bad != 0));
    return t;
}

/* The filters an analysis declares ('l' reply): only what host_load() accepts. */
static void test_topics(void)
{
    static const char *const good[] = {"sensors/{serial}/raw", "#", "a/+/b", "x/#", "a//b", "é/+"};
    static const char *const bad[] = {"$SYS/#",     "$tip/+/ack",        "a/b#", "a/+b", "#/a",
                                      "{Serial}/x", "{serial}/{serial}", "\xff"};
    char big[SP_LIMIT_TOPIC + 1];

    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECK_EQ_STR(read_topic(good[i], strlen(good[i])), good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(read_topic(bad[i], strlen(bad[i])) == NULL);
    CHECK(read_topic("", 0) == NULL);
    CHECK(read_topic("a\0b", 3) == NULL);
    memset(big, 'a', sizeof big);
    CHECK(read_topic(big, SP_LIMIT_TOPIC) != NULL);
    CHECK(read_topic(big, SP_LIMIT_TOPIC + 1) == NULL);
}

/* A reply whose only content is one webhook() call; then read back. */
static int read_webhook(const char *method, const char *url, const char *name, const char *value,
                        size_t body_len)
{
    static char body[WEBHOOK_BODY_MAX + 2];
    const char *names[1] = {name}, *values[1] = {value};
    struct host_webhook w = {.method = method,
                             .url = url,
                             .names = names,
                             .values = values,
                             .nheaders = name ? 1 : 0,
                             .body = (const uint8_t *)body,
                             .body_len = body_len};

    memset(body, 'b', sizeof body);
    buf_reset(&b);
    CHECK(wire_put_records(&b, NULL, 0) == 0 && wire_put_publishes(&b, NULL, 0) == 0 &&
          wire_put_logs(&b, NULL, 0, 0) == 0 && wire_put_inserts(&b, NULL, 0) == 0 &&
          wire_put_runs(&b, NULL, 0) == 0 && wire_put_webhooks(&b, &w, 1) == 0 &&
          wire_put_deletes(&b, NULL, 0) == 0);
    arena_reset(&ar);
    return read_reply(10);
}

static void test_webhooks(void)
{
    const char *url = "http://127.0.0.1:9/x";

    CHECK_EQ_INT(read_webhook("PUT", url, "X-Token", "t", 5), 0);
    CHECK(out.nwebhooks == 1 && strcmp(out.webhooks[0].method, "PUT") == 0 &&
          strcmp(out.webhooks[0].url, url) == 0 && out.webhooks[0].nheaders == 1 &&
          strcmp(out.webhooks[0].values[0], "t") == 0 && out.webhooks[0].body_len == 5);
    CHECK_EQ_INT(read_webhook("POST", url, NULL, NULL, WEBHOOK_BODY_MAX), 0);
    /* What webhook() refuses in the worker, refused again here. */
    CHECK_EQ_INT(read_webhook("TRACE", url, NULL, NULL, 1), -1);
    CHECK_EQ_INT(read_webhook("POST", url, "Host", "evil", 1), -1);
    CHECK_EQ_INT(read_webhook("POST", url, "X-A", "a\r\nX-B: b", 1), -1);
    CHECK_EQ_INT(read_webhook("POST", url, "Bad Name", "v", 1), -1);
    CHECK_EQ_INT(read_webhook("POST", url, NULL, NULL, WEBHOOK_BODY_MAX + 1), -1);
    CHECK_EQ_STR(why, "malformed webhook call");
}

/* insert() calls: 10 for handle() and event(), 100 for tick() and run(),
 * checked with the handler the daemon sent, whatever the worker says. */
static void test_inserts_per_handler(void)
{
    static struct host_insert ins[HOST_MAX_INSERTS_RUN + 1];
    struct record r = rec("a");

    for (size_t i = 0; i < sizeof ins / sizeof ins[0]; i++)
        ins[i] = insert("sensor-01", &r, 1);
    reply(NULL, 0, NULL, 0, NULL, 0, ins, HOST_MAX_INSERTS + 1);
    CHECK_EQ_INT(read_reply_of(HOST_HANDLE, SP_LIMIT_RECORDS), -1);
    CHECK(strstr(why, "too many inserts") != NULL);
    CHECK_EQ_INT(read_reply_of(HOST_EVENT, SP_LIMIT_RECORDS), -1);
    CHECK_EQ_INT(read_reply_of(HOST_TICK, SP_LIMIT_RECORDS), 0);
    CHECK_EQ_INT(out.ninserts, HOST_MAX_INSERTS + 1);
    CHECK_EQ_INT(read_reply_of(HOST_RUN, SP_LIMIT_RECORDS), 0);
    reply(NULL, 0, NULL, 0, NULL, 0, ins, HOST_MAX_INSERTS_RUN + 1);
    CHECK_EQ_INT(read_reply_of(HOST_TICK, SP_LIMIT_RECORDS), -1);
}

/* A reply whose delete_data() calls are dels[0..n), after the runs. */
static int read_deletes(const struct host_delete *dels, size_t n)
{
    buf_reset(&b);
    CHECK(wire_put_records(&b, NULL, 0) == 0 && wire_put_publishes(&b, NULL, 0) == 0 &&
          wire_put_logs(&b, NULL, 0, 0) == 0 && wire_put_inserts(&b, NULL, 0) == 0 &&
          wire_put_runs(&b, NULL, 0) == 0 && wire_put_webhooks(&b, NULL, 0) == 0 &&
          wire_put_deletes(&b, dels, n) == 0);
    return read_reply_of(HOST_TICK, SP_LIMIT_RECORDS);
}

static void test_deletes(void)
{
    struct host_delete d[HOST_MAX_DELETES + 1];

    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
        d[i] = (struct host_delete){.serial = "sensor-01", .before_ms = 5};
    d[1].variable = "temperature";
    CHECK_EQ_INT(read_deletes(d, HOST_MAX_DELETES), 0);
    CHECK_EQ_INT(out.ndeletes, HOST_MAX_DELETES);
    CHECK(out.deletes[0].variable == NULL);
    CHECK_EQ_STR(out.deletes[1].variable, "temperature");
    CHECK_EQ_INT((int)out.deletes[1].before_ms, 5);
    CHECK_EQ_INT(read_deletes(d, HOST_MAX_DELETES + 1), -1);
    d[0].serial = "bad serial";
    CHECK_EQ_INT(read_deletes(d, 1), -1);
    d[0].serial = "s";
    d[0].variable = "Temp";
    CHECK_EQ_INT(read_deletes(d, 1), -1);
    d[0].variable = "";
    CHECK_EQ_INT(read_deletes(d, 1), -1);
}

static int read_devices_query(const char *tags, const char *after, uint32_t limit)
{
    struct host_devices_query q = {.tags_json = tags, .after = after, .limit = limit}, got;
    buf_reset(&b);
    CHECK(wire_put_devices_query(&b, &q) == 0);
    struct wire_in in = {.p = (const uint8_t *)b.p, .len = b.len, .a = &ar};
    return wire_get_devices_query(&in, &got);
}

/* What host.h promises devices{}'s function: tags an object of strings. */
static void test_devices_query(void)
{
    char many[512] = "{";
    for (int i = 0; i <= HOST_DEVICES_TAGS; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s\"k%d\":\"v\"", i ? "," : "",
                 i);
    strcat(many, "}");

    CHECK_EQ_INT(read_devices_query(NULL, "", 1000), 0);
    CHECK_EQ_INT(read_devices_query("{\"site\":\"north\"}", "dev-9", 1), 0);
    CHECK_EQ_INT(read_devices_query("{}", "", 1), 0);
    CHECK_EQ_INT(read_devices_query(NULL, "", 0), -1);
    CHECK_EQ_INT(read_devices_query(NULL, "", HOST_DEVICES_MAX + 1), -1);
    CHECK_EQ_INT(read_devices_query(NULL, NULL, 1), -1);
    CHECK_EQ_INT(read_devices_query(NULL, "a b", 1), -1);
    CHECK_EQ_INT(read_devices_query("[]", "", 1), -1);
    CHECK_EQ_INT(read_devices_query("{\"n\":1}", "", 1), -1);
    CHECK_EQ_INT(read_devices_query("{\"n\":", "", 1), -1);
    CHECK_EQ_INT(read_devices_query(many, "", 1), -1);
}

/* devices{}'s answer, as the worker reads it: at most the limit it asked. */
static void test_devices_answer(void)
{
    struct host_device v[2] = {
        {.serial = "a-1", .name = "A", .tags_json = "{}", .params_json = "{}", .connected = 1},
        {.serial = "b-2", .tags_json = "{\"x\":\"y\"}", .last_sent = 42}};
    struct host_device *got;
    size_t n;

    buf_reset(&b);
    CHECK(wire_put_devices(&b, v, 2) == 0);
    struct wire_in in = {.p = (const uint8_t *)b.p, .len = b.len, .a = &ar};
    CHECK_EQ_INT(wire_get_devices(&in, &got, &n, 2), 0);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_STR(got[0].name, "A");
    CHECK_EQ_INT(got[0].connected, 1);
    CHECK(got[1].name == NULL);
    CHECK_EQ_INT((int)got[1].last_sent, 42);
    in = (struct wire_in){.p = (const uint8_t *)b.p, .len = b.len, .a = &ar};
    CHECK_EQ_INT(wire_get_devices(&in, &got, &n, 1), -1);
}

static int read_aggregate_query(const char *serial, const char *variable, int64_t a, int64_t z)
{
    struct host_aggregate_query q = {.serial = serial,
                                     .variable = variable,
                                     .start_ms = a,
                                     .stop_ms = z},
                                got;
    buf_reset(&b);
    CHECK(wire_put_aggregate_query(&b, &q) == 0);
    struct wire_in in = {.p = (const uint8_t *)b.p, .len = b.len, .a = &ar};
    return wire_get_aggregate_query(&in, &got);
}

static void test_aggregate(void)
{
    struct host_aggregate g = {.count = 3, .min = 1, .max = 3, .avg = 2, .sum = 6, .last = 3}, h;

    CHECK_EQ_INT(read_aggregate_query("s", "t", INT64_MIN, INT64_MAX), 0);
    CHECK_EQ_INT(read_aggregate_query("s", NULL, 0, 1), -1);
    CHECK_EQ_INT(read_aggregate_query("s", "T", 0, 1), -1);
    CHECK_EQ_INT(read_aggregate_query("s", "t", 2, 1), -1);
    CHECK_EQ_INT(read_aggregate_query("s s", "t", 0, 1), -1);
    buf_reset(&b);
    CHECK(wire_put_aggregate(&b, &g) == 0);
    struct wire_in in = {.p = (const uint8_t *)b.p, .len = b.len, .a = &ar};
    CHECK_EQ_INT(wire_get_aggregate(&in, &h), 0);
    CHECK(h.count == 3 && h.avg == 2 && h.sum == 6 && h.last == 3);
    in = (struct wire_in){.p = (const uint8_t *)b.p, .len = b.len - 1, .a = &ar};
    CHECK_EQ_INT(wire_get_aggregate(&in, &h), -1);
}

int main(void)
{
    arena_init(&ar, SP_LIMIT_ARENA);
    buf_init(&b, WIRE_MAX_FRAME);
    RUN(test_result_ok);
    RUN(test_records_limit_is_shared);
    RUN(test_serials);
    RUN(test_publish_topic);
    RUN(test_logs);
    RUN(test_query);
    RUN(test_topics);
    RUN(test_webhooks);
    RUN(test_inserts_per_handler);
    RUN(test_deletes);
    RUN(test_devices_query);
    RUN(test_devices_answer);
    RUN(test_aggregate);
    buf_cleanup(&b);
    arena_cleanup(&ar);
    return check_done();
}
