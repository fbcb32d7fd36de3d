/*
 * test_lapi_reads.c - unit tests for devices{}, aggregate{} and
 * delete_data{} (runtime/sandbox/lapi_data.c) in the host, with fake daemon
 * functions: the arguments they receive, the tables scripts get back, the
 * collected deletes, and the per-handler limits (10 insert and query calls
 * for handle and event, 100 for tick and run; devices and aggregate count as
 * queries).
 */
#include <stdint.h>

#include "check.h"
#include "host_fixture.h"

/* What the fakes were asked last, and how often. */
static struct host_devices_query dq;
static struct host_aggregate_query gq;
static char tags[512], after[128], serial[128], variable[128];
static int calls;

static int fake_devices(void *ctx, const struct host_devices_query *q, struct arena *a,
                        struct host_device **out, size_t *n, char *e, size_t elen)
{
    (void)ctx;
    (void)e;
    (void)elen;
    calls++;
    dq = *q;
    snprintf(tags, sizeof tags, "%s", q->tags_json ? q->tags_json : "(null)");
    snprintf(after, sizeof after, "%s", q->after);
    struct host_device *v = arena_calloc(a, 2, sizeof(*v));
    if (!v)
        return SP_ERR_NOMEM;
    v[0] = (struct host_device){.serial = "a-1",
                                .name = "Alpha",
                                .tags_json = "{\"site\":\"north\"}",
                                .params_json = "{\"k\":\"v\"}",
                                .connected = 1,
                                .last_sent = 1764000000123};
    v[1] = (struct host_device){.serial = "b-2", .tags_json = "{}", .params_json = "{}"};
    *out = v;
    *n = q->limit < 2 ? q->limit : 2;
    return 0;
}

static int fake_aggregate(void *ctx, const struct host_aggregate_query *q,
                          struct host_aggregate *out, char *e, size_t elen)
{
    (void)ctx;
    calls++;
    gq = *q;
    snprintf(serial, sizeof serial, "%s", q->serial);
    snprintf(variable, sizeof variable, "%s", q->variable);
    if (strcmp(q->variable, "none") == 0) {
        *out = (struct host_aggregate){0};
        return 0;
    }
    if (strcmp(q->variable, "broken") == 0) {
        snprintf(e, elen, "aggregate failed: database error");
        return SP_ERR_DB;
    }
    *out = (struct host_aggregate){
        .count = 3, .min = 10, .max = 30, .avg = 20, .sum = 60, .first = 10, .last = 30.5};
    return 0;
}

static struct host *reads_host(void)
{
    struct host *h = new_host();
    if (h)
        host_set_reads(h, fake_devices, fake_aggregate, NULL);
    return h;
}

/* Runs handler of analysis "t" (loaded from src) on a ctx for no device (tick, run). */
static int run_handler(struct host *h, int handler, struct arena *a, struct host_out *out)
{
    static const char ctx[] = "{\"scheduled\":1764000000000,\"missed\":0}";
    struct host_msg m = {.handler = handler,
                         .topic = "$trigger#tick/t",
                         .payload = (const uint8_t *)ctx,
                         .payload_len = sizeof ctx - 1};
    int i = host_find(h, "t");
    err[0] = '\0';
    return i < 0 ? SP_ERR_NOTFOUND : host_run(h, (size_t)i, &m, a, out, err, sizeof err);
}

/* Each of the n calls in bad, alone in handle(), raises an error. */
static void check_bad(struct host *h, struct arena *a, const char *const *bad, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char src[512];
        struct host_out out;
        snprintf(src, sizeof src, "return {handle = function() %s end}", bad[i]);
        CHECK_EQ_INT(load_run(h, src, a, &out), SP_ERR_LUA);
        if (getenv("SP_TEST_VERBOSE"))
            fprintf(stderr, "  %s: %s\n", bad[i], err);
    }
}

static void test_devices(void)
{
    struct host *h = reads_host();
    struct arena a;
    arena_init(&a, 1 << 20);
    calls = 0;
    check_lua(h, &a, "devices page",
              "local d = devices{}\n"
              "assert(#d == 2 and d[1].serial == 'a-1' and d[1].name == 'Alpha')\n"
              "assert(d[1].tags.site == 'north' and d[1].params.k == 'v')\n"
              "assert(d[1].connected == true and d[1].last_sent == 1764000000123)\n"
              "assert(d[2].name == 'b-2' and d[2].connected == false and d[2].last_sent == nil)\n"
              "assert(#devices{limit = 1} == 1)\n"
              "assert(devices(nil)[1].serial == 'a-1')");
    CHECK_EQ_INT(calls, 3);
    check_lua(h, &a, "devices args", "devices{tags = {site = 'north'}, after = 'a-1', limit = 7}");
    CHECK_EQ_STR(tags, "{\"site\":\"north\"}");
    CHECK_EQ_STR(after, "a-1");
    CHECK_EQ_INT(dq.limit, 7);
    check_lua(h, &a, "devices defaults", "devices{tags = {}}");
    CHECK_EQ_STR(tags, "(null)");
    CHECK_EQ_STR(after, "");
    CHECK_EQ_INT(dq.limit, HOST_DEVICES_MAX);
    calls = 0;
    static const char *const bad[] = {
        "devices{limit = 0}",
        "devices{limit = 1001}",
        "devices{limit = 1.5}",
        "devices{after = 'a b'}",
        "devices{after = 1}",
        "devices{tags = {site = 1}}",
        "devices{tags = {'x'}}",
        "devices{tags = 'x'}",
        "devices{bogus = 1}",
        "devices{tags = {a='1',b='1',c='1',d='1',e='1',f='1',g='1',h='1',i='1',j='1',k='1',"
        "l='1',m='1',n='1',o='1',p='1',q='1'}}",
        "devices('x')"};
    check_bad(h, &a, bad, sizeof bad / sizeof bad[0]);
    CHECK_EQ_INT(calls, 0);
    arena_cleanup(&a);
    host_free(h);
}

static void test_aggregate(void)
{
    struct host *h = reads_host();
    struct arena a;
    arena_init(&a, 1 << 20);
    check_lua(h, &a, "aggregate",
              "local g = aggregate{variable = 'Temp', start = 5, stop = '2026-01-01T00:00:00Z'}\n"
              "assert(g.count == 3 and g.min == 10 and g.max == 30 and g.avg == 20)\n"
              "assert(g.sum == 60 and g.first == 10 and g.last == 30.5)\n"
              "assert(math.type(g.min) == 'integer')");
    CHECK_EQ_STR(serial, "dev1"); /* the message's device */
    CHECK_EQ_STR(variable, "temp");
    CHECK(gq.start_ms == 5 && gq.stop_ms == 1767225600000);
    check_lua(h, &a, "aggregate of nothing",
              "local g = aggregate{serial = 'other', variable = 'none'}\n"
              "assert(g.count == 0 and g.min == nil and g.avg == nil and g.last == nil)");
    CHECK_EQ_STR(serial, "other");
    CHECK(gq.start_ms == INT64_MIN && gq.stop_ms == INT64_MAX);
    check_lua(h, &a, "aggregate failing",
              "local g, e = aggregate{variable = 'broken'}\n"
              "assert(g == nil and e:find('database error'))");
    static const char *const bad[] = {"aggregate{}",
                                      "aggregate{variable = 'a b c', x = 1}",
                                      "aggregate{variable = 't', start = 2, stop = 1}",
                                      "aggregate{variable = 't', serial = 'a b'}",
                                      "aggregate{variable = 't', start = 'noon'}",
                                      "aggregate()"};
    check_bad(h, &a, bad, sizeof bad / sizeof bad[0]);
    /* A tick has no device: serial is required. */
    CHECK_EQ_INT(load(h, "t",
                      "return {schedule = 'every 1m', tick = function() "
                      "aggregate{variable = 't'} end}"),
                 0);
    struct host_out out;
    CHECK_EQ_INT(run_handler(h, HOST_TICK, &a, &out), SP_ERR_LUA);
    CHECK(strstr(err, "aggregate: no serial given") != NULL);
    arena_cleanup(&a);
    host_free(h);
}

static void test_delete_data(void)
{
    struct host *h = reads_host();
    struct arena a;
    struct host_out out;
    arena_init(&a, 1 << 20);
    CHECK_EQ_INT(load_run(h,
                          "return {handle = function()\n"
                          "  delete_data{before = 1000}\n"
                          "  delete_data{serial = 'x-2', variable = 'Temp', "
                          "before = '1970-01-01T00:00:02Z'}\n"
                          "end}",
                          &a, &out),
                 0);
    CHECK_EQ_INT(out.ndeletes, 2);
    CHECK_EQ_STR(out.deletes[0].serial, "dev1");
    CHECK(out.deletes[0].variable == NULL && out.deletes[0].before_ms == 1000);
    CHECK_EQ_STR(out.deletes[1].serial, "x-2");
    CHECK_EQ_STR(out.deletes[1].variable, "temp");
    CHECK(out.deletes[1].before_ms == 2000);
    /* 10 calls at most, a limit a script may catch. */
    CHECK_EQ_INT(load_run(h,
                          "return {handle = function()\n"
                          "  for i = 1, 10 do delete_data{before = i} end\n"
                          "  assert(not pcall(delete_data, {before = 11}))\n"
                          "end}",
                          &a, &out),
                 0);
    CHECK_EQ_INT(out.ndeletes, 10);
    CHECK_EQ_INT(load_run(h,
                          "return {handle = function() for i = 1, 11 do "
                          "delete_data{before = i} end end}",
                          &a, &out),
                 SP_ERR_LIMIT);
    CHECK(strstr(err, "deletes limit: more than 10 delete_data() calls") != NULL);
    static const char *const bad[] = {"delete_data{}", "delete_data{before = 'later'}",
                                      "delete_data{before = 1, bogus = 2}",
                                      "delete_data{before = 1, variable = ''}", "delete_data(1)"};
    check_bad(h, &a, bad, sizeof bad / sizeof bad[0]);
    /* A failed run brings no deletes. */
    CHECK_EQ_INT(load_run(h, "return {handle = function() delete_data{before = 1}; error('x') end}",
                          &a, &out),
                 SP_ERR_LUA);
    arena_cleanup(&a);
    host_free(h);
}

/* insert() and the reads: 10 calls in handle(), 100 in tick() and run(). */
static void test_limits_per_handler(void)
{
    struct host *h = reads_host();
    struct arena a;
    struct host_out out;
    arena_init(&a, 4 << 20);
    static const char *const src =
        "local function go(n)\n"
        "  for i = 1, n do insert({variable = 'x', value = i}, 's') end\n"
        "  for i = 1, n do if i % 2 == 0 then devices{limit = 1} else "
        "aggregate{serial = 's', variable = 'v'} end end\n"
        "end\n"
        "return {schedule = 'every 1m', tick = function(ctx) go(ctx.n or 100) end,\n"
        "  run = function(ctx) go(101) end, handle = function() go(10) end}";
    CHECK_EQ_INT(load(h, "t", src), 0);
    CHECK_EQ_INT(run_handler(h, HOST_TICK, &a, &out), 0);
    CHECK_EQ_INT(out.ninserts, 100);
    CHECK_EQ_INT(run_handler(h, HOST_RUN, &a, &out), SP_ERR_LIMIT);
    CHECK(strstr(err, "more than 100 insert() calls in one run() call") != NULL);
    CHECK_EQ_INT(run(h, "t", &a, &out), 0);
    CHECK_EQ_INT(out.ninserts, 10);
    CHECK_EQ_INT(load(h, "t",
                      "return {handle = function() devices(); devices(); "
                      "for i = 1, 9 do aggregate{variable = 'v'} end end}"),
                 0);
    CHECK_EQ_INT(run(h, "t", &a, &out), SP_ERR_LIMIT);
    CHECK(strstr(err, "more than 10 query(), devices() and aggregate() calls in one handle() call "
                      "(aggregate)") != NULL);
    arena_cleanup(&a);
    host_free(h);
}

int main(void)
{
    RUN(test_devices);
    RUN(test_aggregate);
    RUN(test_delete_data);
    RUN(test_limits_per_handler);
    return check_done();
}
