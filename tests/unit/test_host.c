/*
 * test_host.c - the Lua host's core: loading, declarations, results, limits
 * (the analysis's own, and hostile scripts that must each be contained with
 * the right error while the analysis keeps working afterwards), and the
 * shipped example analyses. The API families are in test_lapi.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/arena.h"
#include "base/errors.h"
#include "check.h"
#include "host_fixture.h"
#include "base/when.h"
#include "base/record.h"
#include "sandbox/host.h"
#include "sealpipe.h"
#include "base/sp_limits.h"

static void test_load_replace_unload(void)
{
    struct host *h = new_host();
    CHECK(h != NULL);
    CHECK_EQ_INT(load(h, "b", OK_SCRIPT), 0);
    CHECK_EQ_INT(load(h, "a", "return {handle = function() end}"), 0);
    /* c-2_x is a parser only: filters may not overlap b's. */
    CHECK_EQ_INT(load(h, "c-2_x", "return {handle = function() end}"), 0);
    CHECK_EQ_INT(host_count(h), 3);
    CHECK_EQ_STR(host_name(h, 0), "a");
    CHECK_EQ_STR(host_name(h, 1), "b");
    CHECK_EQ_STR(host_name(h, 2), "c-2_x");
    CHECK_EQ_INT(host_find(h, "b"), 1);
    CHECK_EQ_INT(host_find(h, "zz"), -1);
    CHECK_EQ_INT(host_topic_count(h, 0), 0);
    CHECK_EQ_INT(host_topic_count(h, 1), 1);
    CHECK_EQ_STR(host_topic(h, 1, 0), "sensors/{serial}/raw");
    CHECK(host_topic(h, 1, 1) == NULL);

    /* Replace: new topics take effect. */
    CHECK_EQ_INT(load(h, "b", "return {topics = {'x/#', 'y/+/z'}, handle = function() end}"), 0);
    CHECK_EQ_INT(host_count(h), 3);
    CHECK_EQ_INT(host_topic_count(h, 1), 2);
    CHECK_EQ_STR(host_topic(h, 1, 0), "x/#");

    CHECK_EQ_INT(host_unload(h, "a"), 0);
    CHECK_EQ_INT(host_unload(h, "a"), SP_ERR_NOTFOUND);
    CHECK_EQ_INT(host_count(h), 2);
    CHECK_EQ_STR(host_name(h, 0), "b");

    /* Names. */
    CHECK_EQ_INT(load(h, "", OK_SCRIPT), SP_ERR_INVAL);
    CHECK_EQ_INT(load(h, "../etc", OK_SCRIPT), SP_ERR_INVAL);
    CHECK_EQ_INT(load(h, "a.lua", OK_SCRIPT), SP_ERR_INVAL);
    CHECK_EQ_INT(load(h, "a b", OK_SCRIPT), SP_ERR_INVAL);

    /* Size. */
    size_t big = SP_LIMIT_SCRIPT + 1;
    char *src = malloc(big);
    CHECK(src != NULL);
    memset(src, ' ', big);
    CHECK_EQ_INT(host_load(h, "big", src, big, err, sizeof err), SP_ERR_TOOLARGE);
    free(src);
    host_free(h);
}

static void test_declaration_errors(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    arena_init(&a, 1 << 20);
    CHECK_EQ_INT(load(h, "d", OK_SCRIPT), 0);

    static const char *const bad[] = {
        "return {}",                                        /* missing handle */
        "return {handle = 1}",                              /* not a function */
        "return 42",                                        /* not a table */
        "return {topics = 'a/b', handle = function() end}", /* not a list */
        "return {topics = {1}, handle = function() end}",
        "return {topics = {''}, handle = function() end}",
        "return {topics = {'a/b+'}, handle = function() end}",
        "return {topics = {'a/#/b'}, handle = function() end}",
        "return {topics = {'a#'}, handle = function() end}",
        "return {topics = {'{serial}/{serial}'}, handle = function() end}",
        "return {topics = {'a/{Serial}'}, handle = function() end}",
        "return {topics = {'a/x{serial}'}, handle = function() end}",
        "return {topics = {'a','b','c','d','e','f','g','h','i','j','k','l','m','n','o','p',"
        "'q','r','s','t','u','v','w','x','y','z','A','B','C','D','E','F','G'},"
        "handle = function() end}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = load(h, "d", bad[i]);
        CHECK_EQ_INT(rc, SP_ERR_LUA);
        CHECK(err[0] != '\0');
        if (rc != SP_ERR_LUA)
            fprintf(stderr, "  script %zu: %s\n", i, bad[i]);
    }
    /* Good filters (one at a time: they overlap each other). */
    static const char *const good[] = {
        "return {topics = {'#'}, handle = function() end}",
        "return {topics = {'+'}, handle = function() end}",
        "return {topics = {'+/+/#'}, handle = function() end}",
        "return {topics = {'{serial}'}, handle = function() end}",
        "return {topics = {'a/{serial}/#', 'b/{serial}'}, handle = function() end}",
    };
    struct host *alone = new_host();
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        CHECK_EQ_INT(load(alone, "g", good[i]), 0);
    host_free(alone);

    /* Syntax error: reported with the line; the old version stays. */
    CHECK_EQ_INT(load(h, "d", "return {\n handle = function(msg)\n retrun 1 end }"), SP_ERR_LUA);
    CHECK(strstr(err, "d.lua:3:") != NULL);
    CHECK_EQ_INT(run(h, "d", &a, &out), 0);
    CHECK_EQ_INT(out.records.n, 1);
    CHECK_EQ_STR(out.records.v[0].variable, "n");
    CHECK_EQ_INT(host_topic_count(h, (size_t)host_find(h, "d")), 1);

    /* A runtime error at the top level has a traceback. */
    CHECK_EQ_INT(load(h, "d", "local x = nil\nreturn x.y"), SP_ERR_LUA);
    CHECK(strstr(err, "d.lua:2:") != NULL);
    CHECK(strstr(err, "traceback") != NULL);

    /* Bytecode is refused. */
    CHECK_EQ_INT(load(h, "d", "\x1bLua\x54"), SP_ERR_LUA);
    /* Top-level infinite loop. */
    CHECK_EQ_INT(load(h, "d", "while true do end"), SP_ERR_TIMEOUT);
    /* publish() is not available at load time. */
    CHECK_EQ_INT(load(h, "d", "publish('a', 'b') return {handle = function() end}"), SP_ERR_LUA);
    CHECK_EQ_INT(run(h, "d", &a, &out), 0);

    arena_cleanup(&a);
    host_free(h);
}

static const char ALL_TYPES[] =
    "return { handle = function(msg)\n"
    "  return {\n"
    "    {variable = 'Temperature', value = 21.5, unit = 'C', time = 1764000000000,\n"
    "     group = 'g1', location = {lat = -23.5, lng = -46.6, alt = 760},\n"
    "     metadata = {color = 'red', n = 3, ok = true}},\n"
    "    {variable = 'status', value = 'on', time = '2026-11-24T10:00:00Z'},\n"
    "    {variable = 'alarm', value = false, serie = 's'},\n"
    "    {variable = 'seen', metadata = {}},\n"
    "    {variable = 'int', value = 42},\n"
    "  }\n"
    "end }";

/* handle() results that are not records, or that break the record rules. */
static void check_bad_returns(struct host *h, struct arena *a)
{
    struct host_out out;

    /* Bad returns. */
    static const char *const lua_bad[] = {
        "return {handle = function() return 'x' end}",
        "return {handle = function() return {value = 1} end}",
        "return {handle = function() return {variable = 1} end}",
        "return {handle = function() return {variable = 'a', value = {}} end}",
        "return {handle = function() return {variable = 'a', colour = 1} end}",
        "return {handle = function() return {variable = 'a', location = {lat = 1}} end}",
        "return {handle = function() return {variable = 'a', metadata = {x = {}}} end}",
        "return {handle = function() return {variable = 'a', metadata = {[1] = 'x'}} end}",
        "return {handle = function() return {{variable = 'a'}, 7} end}",
        "return {handle = function() error('boom') end}",
        "return {handle = function() error({}) end}",
    };
    for (size_t i = 0; i < sizeof lua_bad / sizeof lua_bad[0]; i++) {
        int rc = load_run(h, lua_bad[i], a, &out);
        CHECK_EQ_INT(rc, SP_ERR_LUA);
        if (rc != SP_ERR_LUA)
            fprintf(stderr, "  script %zu: %s\n", i, lua_bad[i]);
    }
    CHECK_EQ_INT(load_run(h, "return {handle = function()\n error('boom') end}", a, &out),
                 SP_ERR_LUA);
    CHECK(strstr(err, "t.lua:2: boom") != NULL);
    CHECK(strstr(err, "traceback") != NULL);

    /* Validation failures name the record. */
    static const char *const payload_bad[] = {
        "return {handle = function() return {variable = 'a b'} end}",
        "return {handle = function() return {variable = 'ok', unit = ('u'):rep(26)} end}",
        "return {handle = function() return {variable = 'ok', value = 0/0} end}",
        "return {handle = function() return {variable='ok', location={lat=91, lng=0}} end}",
        "return {handle = function() return {variable = 'ok', time = 'yesterday'} end}",
        "return {handle = function() return {{variable = 'ok'}, {variable = 'b.c'}} end}",
    };
    for (size_t i = 0; i < sizeof payload_bad / sizeof payload_bad[0]; i++) {
        int rc = load_run(h, payload_bad[i], a, &out);
        CHECK_EQ_INT(rc, SP_ERR_PAYLOAD);
        if (rc != SP_ERR_PAYLOAD)
            fprintf(stderr, "  script %zu: %s (%s)\n", i, payload_bad[i], err);
    }
    CHECK(strstr(err, "record 2") != NULL);
}

static void test_run_records(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    arena_init(&a, 1 << 20);
    CHECK_EQ_INT(load_run(h, ALL_TYPES, &a, &out), 0);
    CHECK_EQ_INT(out.records.n, 5);
    CHECK_EQ_INT(out.npublishes, 0);
    if (out.records.n == 5) {
        const struct record *r = out.records.v;
        CHECK_EQ_STR(r[0].variable, "temperature");
        CHECK_EQ_INT(r[0].type, RECORD_NUMBER);
        CHECK(r[0].number == 21.5);
        CHECK_EQ_STR(r[0].unit, "C");
        CHECK_EQ_INT(r[0].has_time, 1);
        CHECK_EQ_INT(r[0].time_ms, 1764000000000);
        CHECK_EQ_STR(r[0].group, "g1");
        CHECK_EQ_INT(r[0].has_location, 1);
        CHECK(r[0].lat == -23.5 && r[0].lng == -46.6 && r[0].has_alt && r[0].alt == 760);
        CHECK(r[0].metadata && strstr(r[0].metadata, "\"color\":\"red\""));
        CHECK(r[0].metadata && strstr(r[0].metadata, "\"n\":3"));
        CHECK(r[0].metadata && strstr(r[0].metadata, "\"ok\":true"));
        CHECK_EQ_INT(r[1].type, RECORD_STRING);
        CHECK_EQ_STR(r[1].string, "on");
        CHECK_EQ_INT(r[1].string_len, 2);
        CHECK_EQ_INT(r[1].time_ms, 1795514400000);
        CHECK_EQ_INT(r[2].type, RECORD_BOOLEAN);
        CHECK_EQ_INT(r[2].boolean, 0);
        CHECK_EQ_STR(r[2].group, "s");
        CHECK_EQ_INT(r[3].type, RECORD_NONE);
        CHECK(r[3].metadata == NULL);
        CHECK(r[4].number == 42);
    }

    /* nil, a single record, an empty list. */
    CHECK_EQ_INT(load_run(h, "return {handle = function() end}", &a, &out), 0);
    CHECK_EQ_INT(out.records.n, 0);
    CHECK_EQ_INT(load_run(h, "return {handle = function() return {} end}", &a, &out), 0);
    CHECK_EQ_INT(out.records.n, 0);

    check_bad_returns(h, &a);

    arena_cleanup(&a);
    host_free(h);
}

static void test_msg_fields(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    arena_init(&a, 1 << 20);
    CHECK_EQ_INT(load(h, "m",
                      "return {handle = function(msg)\n"
                      "  local d = msg.device\n"
                      "  assert(msg.topic == 'sensors/dev1/raw')\n"
                      "  assert(#msg.payload == 5 and msg.payload:byte(1) == 8)\n"
                      "  assert(msg.qos == 1 and msg.retain == false)\n"
                      "  assert(msg.received == 1764000000000)\n"
                      "  assert(d.serial == 'dev1' and d.name == 'Device One')\n"
                      "  assert(d.tags.site == 'north' and d.tags.floor == '2')\n"
                      "  assert(d.params.offset == '1.5')\n"
                      "  local r = msg.records[1]\n"
                      "  assert(r.variable == 'raw' and r.value == 7 and r.unit == 'V')\n"
                      "  assert(r.time == 1000 and r.group == 'g')\n"
                      "  assert(r.location.lat == 1 and r.location.lng == 2)\n"
                      "  assert(r.metadata.k == 'v')\n"
                      "  assert(msg.records[2].value == 'text')\n"
                      "  return r\n"
                      "end}"),
                 0);
    struct record recs[2] = {
        {.variable = "raw",
         .type = RECORD_NUMBER,
         .number = 7,
         .unit = "V",
         .has_time = 1,
         .time_ms = 1000,
         .group = "g",
         .has_location = 1,
         .lat = 1,
         .lng = 2,
         .metadata = "{\"k\":\"v\"}"},
        {.variable = "s", .type = RECORD_STRING, .string = "text", .string_len = 4}};
    static const uint8_t payload[] = {8, 0, 0, 0, 0};
    struct host_msg m = {.topic = "sensors/dev1/raw",
                         .payload = payload,
                         .payload_len = 5,
                         .qos = 1,
                         .received_ms = 1764000000000,
                         .serial = "dev1",
                         .device_name = "Device One",
                         .tags_json = "{\"site\":\"north\",\"floor\":\"2\"}",
                         .params_json = "{\"offset\":\"1.5\"}",
                         .records = recs,
                         .nrecords = 2};
    int rc = host_run(h, 0, &m, &a, &out, err, sizeof err);
    CHECK_EQ_INT(rc, 0);
    if (rc)
        fprintf(stderr, "  %s\n", err);
    CHECK_EQ_INT(out.records.n, 1);
    if (out.records.n == 1) {
        CHECK_EQ_STR(out.records.v[0].variable, "raw");
        CHECK_EQ_STR(out.records.v[0].metadata, "{\"k\":\"v\"}");
        CHECK(out.records.v[0].lat == 1);
    }
    /* No device: msg.device is nil. */
    CHECK_EQ_INT(load(h, "m", "return {handle = function(msg) assert(msg.device == nil) end}"), 0);
    m.serial = NULL;
    CHECK_EQ_INT(host_run(h, 0, &m, &a, &out, err, sizeof err), 0);
    arena_cleanup(&a);
    host_free(h);
}

/* Hostile script under test: expected status, then a normal call must work. */
struct hostile {
    const char *what;
    int expect;
    const char *handle_body;
};

static const struct hostile HOSTILE[] = {
    {"infinite loop", SP_ERR_TIMEOUT, "while true do end"},
    {"loop in pcall", SP_ERR_TIMEOUT, "while true do pcall(function() while true do end end) end"},
    {"pcall swallows, returns", SP_ERR_TIMEOUT,
     "pcall(function() while true do end end) return {variable = 'x'}"},
    {"xpcall looping handler", SP_ERR_TIMEOUT,
     "xpcall(function() while true do end end, function() while true do end end)"},
    {"xpcall erroring handler", SP_ERR_TIMEOUT,
     "xpcall(function() while true do end end, function() error('x') end) while true do end"},
    {"xpcall semantics", SP_ERR_LUA,
     "local ok, v = xpcall(function(a) error(a .. '!', 0) end, function(e) return e .. '?' end, "
     "'x')\n"
     "assert(ok == false and v == 'x!?')\n"
     "local a, b, c = xpcall(function(...) return ... end, print, 1, nil, 3)\n"
     "assert(a == true and b == 1 and c == nil and select('#', xpcall(function() return 1, nil "
     "end, print)) == 3)\n"
     "error('fine')"},
    {"loop in coroutine", SP_ERR_TIMEOUT,
     "local co = coroutine.create(function() while true do end end)\n"
     "local ok = coroutine.resume(co) return {variable = 'x'}"},
    {"loop in wrap", SP_ERR_TIMEOUT, "coroutine.wrap(function() while true do end end)()"},
    {"string growth", SP_ERR_NOMEM, "local s = 'x' while true do s = s .. s end"},
    {"table growth", SP_ERR_NOMEM, "local t = {} for i = 1, 1e9 do t[i] = i end"},
    {"caught memory error", SP_ERR_NOMEM,
     "pcall(function() local t = {} for i = 1, 1e9 do t[i] = {} end end)\n"
     "return {variable = 'x'}"},
    {"string.rep huge", SP_ERR_LUA, "return {variable = 'x', value = string.rep('x', 1 << 40)}"},
    {"string.rep empty", SP_ERR_LUA, "string.rep('', 1 << 60)"},
    {"rep via metatable", SP_ERR_LUA, "local s = ('x'):rep(1 << 40)"},
    {"rep with sep", SP_ERR_LUA, "local s = ('x'):rep(600000, 'y')"},
    {"table.move", SP_ERR_LUA, "table.move({}, 1, math.maxinteger, 1, {})"},
    {"table.move negative", SP_ERR_LUA, "table.move({}, math.mininteger, -1, 1, {})"},
    {"long pattern subject", SP_ERR_LUA, "string.find(('a'):rep(70000), '.-b')"},
    {"pattern via metatable", SP_ERR_LUA, "local s = ('a'):rep(70000) s:match('x')"},
    {"load", SP_ERR_LUA, "load('return 1')"},
    {"loadstring", SP_ERR_LUA, "loadstring('return 1')"},
    {"dofile", SP_ERR_LUA, "dofile('/etc/passwd')"},
    {"require", SP_ERR_LUA, "require('os')"},
    {"io", SP_ERR_LUA, "io.open('/etc/passwd')"},
    {"os.execute", SP_ERR_LUA, "os.execute('true')"},
    {"os.exit", SP_ERR_LUA, "os.exit(1)"},
    {"os.getenv", SP_ERR_LUA, "os.getenv('HOME')"},
    {"debug", SP_ERR_LUA, "debug.sethook()"},
    {"package", SP_ERR_LUA, "return package.loaded"},
    {"collectgarbage", SP_ERR_LUA, "collectgarbage()"},
    {"string.dump", SP_ERR_LUA, "string.dump(function() end)"},
    {"dump via metatable", SP_ERR_LUA, "('x').dump(function() end)"},
    {"setmetatable", SP_ERR_LUA, "setmetatable({}, {})"},
    {"getmetatable", SP_ERR_LUA, "getmetatable('')"},
    {"coroutine.close", SP_ERR_LUA, "coroutine.close(coroutine.create(print))"},
    {"_G", SP_ERR_LUA, "return _G.load"},
    {"deep recursion", SP_ERR_NOMEM, "local function f(n) return 1 + f(n + 1) end return f(1)"},
    {"cyclic table", SP_ERR_LUA, "local t = {variable = 'x'} t.metadata = t return t"},
    {"cyclic list", SP_ERR_LUA, "local l = {} l[1] = l return l"},
    {"__index field", SP_ERR_LUA, "return {variable = 'x', __index = function() end}"},
    {"json.encode in a loop", SP_ERR_TIMEOUT,
     "local t = {} for i = 1, 20000 do t['k' .. i] = i end while true do json.encode(t) end"},
    {"json.decode in a loop", SP_ERR_TIMEOUT,
     "local s = '[' .. ('1,'):rep(100000) .. '1]' while true do json.decode(s) end"},
    {"tagotip.parse in a loop", SP_ERR_TIMEOUT,
     "local b = '[' .. ('a:=1;'):rep(99) .. 'a:=1]' while true do tagotip.parse(b) end"},
    {"log in a loop", SP_ERR_TIMEOUT, "local s = ('x'):rep(2000) while true do log(s, s) end"},
    {"json.decode deep", SP_ERR_LUA, "assert(json.decode(('['):rep(100000)))"},
    {"json.encode deep", SP_ERR_LUA,
     "local t = {} for i = 1, 100000 do t = {t} end assert(json.encode(t))"},
    {"json.encode cycle", SP_ERR_LUA, "local t = {} t[1] = t assert(json.encode(t))"},
    {"million records", SP_ERR_LIMIT,
     "local r = {variable = 'x', value = 1} local t = {}\n"
     "for i = 1, 1000000 do t[i] = r end return t"},
};

static void test_hostile(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    char src[1024];
    arena_init(&a, 1 << 20);
    CHECK_EQ_INT(load(h, "ok", OK_SCRIPT), 0);
    for (size_t i = 0; i < sizeof HOSTILE / sizeof HOSTILE[0]; i++) {
        const struct hostile *t = &HOSTILE[i];
        snprintf(src, sizeof src,
                 "local calls = 0\n"
                 "return {handle = function(msg)\n"
                 "  calls = calls + 1\n"
                 "  if msg.topic == 'normal' then return {variable = 'calls', value = calls} end\n"
                 "  %s\n"
                 "end}",
                 t->handle_body);
        if (getenv("SP_TEST_VERBOSE"))
            fprintf(stderr, "hostile: %s\n", t->what);
        int rc = load(h, "hostile", src);
        CHECK_EQ_INT(rc, 0);
        clock_t t0 = clock();
        rc = run(h, "hostile", &a, &out);
        double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
        CHECK_EQ_INT(rc, t->expect);
        CHECK(secs < 5);
        if (rc != t->expect || secs >= 5)
            fprintf(stderr, "  hostile \"%s\": rc %d (%s) in %.2fs: %s\n", t->what, rc,
                    errors_name(rc), secs, err);
        /* The same analysis still works afterwards (rebuilt if it tripped). */
        struct host_msg m = {.topic = "normal"};
        rc = host_run(h, (size_t)host_find(h, "hostile"), &m, &a, &out, err, sizeof err);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(out.records.n, 1);
        if (rc == 0 && out.records.n == 1) {
            /* A tripped state was rebuilt: its counter starts again at 1. */
            int tripped = t->expect == SP_ERR_TIMEOUT || t->expect == SP_ERR_NOMEM;
            CHECK(out.records.v[0].number == (tripped ? 1 : 2));
        }
        /* Other analyses are untouched. */
        CHECK_EQ_INT(run(h, "ok", &a, &out), 0);
        arena_reset(&a);
    }
    arena_cleanup(&a);
    host_free(h);
}

/* Limits come from host_limits: a small instruction budget trips sooner. */
static void test_custom_limits(void)
{
    struct host_limits l;
    host_limits_default(&l);
    l.instructions = 10000;
    l.max_records = 2;
    l.max_publishes = 1;
    l.memory = 1 << 20;
    struct host *h = host_new(&l);
    struct arena a;
    struct host_out out;
    arena_init(&a, 1 << 20);
    CHECK_EQ_INT(load_run(h, "return {handle = function() for i = 1, 100000 do end end}", &a, &out),
                 SP_ERR_TIMEOUT);
    CHECK_EQ_INT(load_run(h,
                          "return {handle = function() return {{variable='a'},{variable='b'},"
                          "{variable='c'}} end}",
                          &a, &out),
                 SP_ERR_LIMIT);
    CHECK_EQ_INT(
        load_run(h, "return {handle = function() publish('a','b') publish('a','b') end}", &a, &out),
        SP_ERR_LIMIT);
    CHECK_EQ_INT(load_run(h,
                          "return {handle = function() local s = ('x'):rep(1 << 19) "
                          "s = s .. s .. s end}",
                          &a, &out),
                 SP_ERR_NOMEM);
    CHECK_EQ_INT(load(h, "t", "local s = ('x'):rep(1 << 20) return {handle = print}"),
                 SP_ERR_NOMEM);
    arena_cleanup(&a);
    host_free(h);
}

/* The example analyses shipped in analyses/ load and parse their documented payloads. */
static void test_examples(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    size_t len;
    arena_init(&a, 1 << 20);

    char *src = check_slurp(SP_SOURCE_DIR "/analyses/binary_sensor.lua", &len);
    CHECK(src != NULL);
    if (src) {
        CHECK_EQ_INT(host_load(h, "binary_sensor", src, len, err, sizeof err), 0);
        if (err[0])
            fprintf(stderr, "  %s\n", err);
        free(src);
        CHECK_EQ_STR(host_topic(h, 0, 0), "sensors/{serial}/raw");
        CHECK_EQ_INT(run(h, "binary_sensor", &a, &out), 0);
        CHECK_EQ_INT(out.records.n, 3);
        if (out.records.n == 3) {
            CHECK_EQ_STR(out.records.v[0].variable, "temperature");
            CHECK(out.records.v[0].number == 22.0);
            CHECK_EQ_STR(out.records.v[0].unit, "°C");
            CHECK_EQ_STR(out.records.v[1].variable, "humidity");
            CHECK(out.records.v[1].number == 45);
            CHECK_EQ_STR(out.records.v[2].variable, "battery");
            CHECK(out.records.v[2].number == 3.7);
        }
        /* A short frame is an error, not a crash. */
        struct host_msg m = {
            .topic = "sensors/x/raw", .payload = (const uint8_t *)"\1", .payload_len = 1};
        CHECK_EQ_INT(host_run(h, 0, &m, &a, &out, err, sizeof err), SP_ERR_LUA);
    }

    src = check_slurp(SP_SOURCE_DIR "/analyses/passthrough.lua", &len);
    CHECK(src != NULL);
    if (src) {
        CHECK_EQ_INT(host_load(h, "passthrough", src, len, err, sizeof err), 0);
        if (err[0])
            fprintf(stderr, "  %s\n", err);
        free(src);
        struct record r = {.variable = "payload",
                           .type = RECORD_STRING,
                           .string = "0102ff00",
                           .string_len = 8,
                           .metadata = "{\"mqtt_topic\":\"$tip/dev1/push\"}"};
        struct host_msg m = {
            .topic = "$tip/dev1/push", .serial = "dev1", .records = &r, .nrecords = 1};
        int i = host_find(h, "passthrough");
        CHECK_EQ_INT(host_run(h, (size_t)i, &m, &a, &out, err, sizeof err), 0);
        if (err[0])
            fprintf(stderr, "  %s\n", err);
        CHECK_EQ_INT(out.records.n, 3);
        if (out.records.n == 3) {
            CHECK_EQ_STR(out.records.v[0].variable, "payload_size");
            CHECK(out.records.v[0].number == 4);
            CHECK_EQ_STR(out.records.v[1].variable, "ch1");
            CHECK(out.records.v[1].number == 258);
            CHECK_EQ_STR(out.records.v[2].variable, "ch2");
            CHECK(out.records.v[2].number == 65280);
        }
    }
    arena_cleanup(&a);
    host_free(h);
}

/* Loads analyses/<name>.lua from the source tree; 0 or the host_load status. */
static int load_example(struct host *h, const char *name, const char *env_json)
{
    char path[512];
    size_t len;
    snprintf(path, sizeof path, "%s/analyses/%s.lua", SP_SOURCE_DIR, name);
    char *src = check_slurp(path, &len);
    if (!src)
        return SP_ERR_NOTFOUND;
    int rc = host_load_env(h, name, src, len, env_json, err, sizeof err);
    if (rc)
        fprintf(stderr, "  %s: %s\n", path, err);
    free(src);
    return rc;
}

static const struct record *find_record(const struct host_out *out, const char *variable)
{
    for (size_t i = 0; i < out->records.n; i++)
        if (strcmp(out->records.v[i].variable, variable) == 0)
            return &out->records.v[i];
    return NULL;
}

static void test_example_json_flatten(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    arena_init(&a, 1 << 20);
    CHECK_EQ_INT(load_example(h, "json_flatten", NULL), 0);
    CHECK_EQ_STR(host_topic(h, 0, 0), "devices/{serial}/json");

    CHECK_EQ_INT(run_text(h, "json_flatten", "devices/dev1/json",
                          "{\"env\":{\"temp\":21.5,\"hum\":40},\"batt\":3.7,\"ok\":true,"
                          "\"cells\":[4.1,null,{\"V\":4}],\"none\":null,\"Odd.Key-1\":\"x\","
                          "\"empty\":{}}",
                          NULL, &a, &out),
                 0);
    CHECK_EQ_INT(out.records.n, 7);
    static const char *const order[] = {"odd_key_1", "batt",     "cells_1", "cells_3_v",
                                        "env_hum",   "env_temp", "ok",      NULL};
    for (size_t i = 0; order[i] && i < out.records.n; i++)
        CHECK_EQ_STR(out.records.v[i].variable, order[i]);
    const struct record *r = find_record(&out, "env_temp");
    CHECK(r && r->type == RECORD_NUMBER && r->number == 21.5);
    r = find_record(&out, "env_hum");
    CHECK(r && r->number == 40);
    r = find_record(&out, "ok");
    CHECK(r && r->type == RECORD_BOOLEAN && r->boolean == 1);
    r = find_record(&out, "cells_3_v");
    CHECK(r && r->number == 4);
    CHECK(find_record(&out, "none") == NULL && find_record(&out, "cells_2") == NULL);

    /* Bounded: 150 values give 100 records and a log line. */
    char big[4096];
    size_t n = (size_t)sprintf(big, "{\"v\":[");
    for (int i = 0; i < 150; i++)
        n += (size_t)sprintf(big + n, "%s%d", i ? "," : "", i);
    sprintf(big + n, "]}");
    CHECK_EQ_INT(run_text(h, "json_flatten", "devices/dev1/json", big, NULL, &a, &out), 0);
    CHECK_EQ_INT(out.records.n, 100);
    CHECK_EQ_INT(out.nlogs, 1);
    if (out.records.n == 100)
        CHECK_EQ_STR(out.records.v[99].variable, "v_100");

    /* Not JSON, not an object: errors. */
    CHECK_EQ_INT(run_text(h, "json_flatten", "devices/dev1/json", "{oops", NULL, &a, &out),
                 SP_ERR_LUA);
    CHECK(strstr(err, "payload is not JSON") != NULL);
    CHECK_EQ_INT(run_text(h, "json_flatten", "devices/dev1/json", "[1,2]", NULL, &a, &out),
                 SP_ERR_LUA);
    CHECK_EQ_INT(run_text(h, "json_flatten", "devices/dev1/json", "42", NULL, &a, &out),
                 SP_ERR_LUA);
    arena_cleanup(&a);
    host_free(h);
}

static void test_example_unit_convert(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    arena_init(&a, 1 << 20);
    CHECK_EQ_INT(load_example(h, "unit_convert", NULL), 0);
    CHECK_EQ_STR(host_topic(h, 0, 0), "devices/{serial}/imperial");

    struct record in[] = {
        {.variable = "temp", .type = RECORD_NUMBER, .number = 71.6, .unit = "°F"},
        {.variable = "oven", .type = RECORD_NUMBER, .number = 212, .unit = "F", .group = "g"},
        {.variable = "trip", .type = RECORD_NUMBER, .number = 10, .unit = "mi"},
        {.variable = "load", .type = RECORD_NUMBER, .number = 100, .unit = "lb"},
        {.variable = "baro", .type = RECORD_NUMBER, .number = 29.92, .unit = "inHg"},
        {.variable = "wind",
         .type = RECORD_NUMBER,
         .number = 10,
         .unit = "mph",
         .metadata = "{\"mqtt_topic\":\"devices/dev1/imperial\"}"},
        {.variable = "hum", .type = RECORD_NUMBER, .number = 40, .unit = "%"},
        {.variable = "label", .type = RECORD_STRING, .string = "5", .string_len = 1, .unit = "mi"},
    };
    struct host_msg m = {.topic = "devices/dev1/imperial",
                         .serial = "dev1",
                         .records = in,
                         .nrecords = sizeof in / sizeof in[0]};
    CHECK_EQ_INT(host_run(h, 0, &m, &a, &out, err, sizeof err), 0);
    if (err[0])
        fprintf(stderr, "  %s\n", err);
    CHECK_EQ_INT(out.records.n, 8);
    if (out.records.n == 8) {
        const struct record *r = out.records.v;
        CHECK(fabs(r[0].number - 22) < 1e-9);
        CHECK_EQ_STR(r[0].unit, "°C");
        CHECK(r[0].metadata && strstr(r[0].metadata, "\"converted_from\":\"°F\""));
        CHECK(r[1].number == 100);
        CHECK_EQ_STR(r[1].unit, "°C");
        CHECK_EQ_STR(r[1].group, "g");
        CHECK(fabs(r[2].number - 16.09344) < 1e-9);
        CHECK_EQ_STR(r[2].unit, "km");
        CHECK(fabs(r[3].number - 45.359237) < 1e-9);
        CHECK_EQ_STR(r[3].unit, "kg");
        CHECK(fabs(r[4].number - 1013.207888) < 1e-6);
        CHECK_EQ_STR(r[4].unit, "hPa");
        CHECK(fabs(r[5].number - 16.09344) < 1e-9);
        CHECK_EQ_STR(r[5].unit, "km/h");
        CHECK(r[5].metadata && strstr(r[5].metadata, "\"mqtt_topic\":\"devices/dev1/imperial\""));
        CHECK(r[6].number == 40);
        CHECK_EQ_STR(r[6].unit, "%");
        CHECK(r[6].metadata == NULL);
        CHECK_EQ_INT(r[7].type, RECORD_STRING);
        CHECK_EQ_STR(r[7].unit, "mi");
    }
    arena_cleanup(&a);
    host_free(h);
}

/* threshold_alert.lua's condition(c) with the ctx the daemon makes. */
static int alert_run(struct host *h, const char *serial, double value, double threshold,
                     struct arena *a, struct host_out *out)
{
    char ctx[256];
    snprintf(ctx, sizeof ctx,
             "{\"condition\":1,\"variable\":\"temperature\",\"value\":%g,\"previous\":null,"
             "\"time\":1764000000000,\"since\":1764000000000,\"transition\":\"enter\","
             "\"threshold\":%g}",
             value, threshold);
    struct host_msg m = {.handler = HOST_CONDITION,
                         .topic = "$trigger#condition/threshold_alert/x",
                         .payload = (const uint8_t *)ctx,
                         .payload_len = strlen(ctx),
                         .serial = serial};
    return host_run(h, 0, &m, a, out, err, sizeof err);
}

static void test_example_threshold_alert(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    struct when w;
    arena_init(&a, 1 << 20);
    CHECK_EQ_INT(load_example(h, "threshold_alert", NULL), 0);
    CHECK_EQ_STR(host_topic(h, 0, 0), "devices/{serial}/temperature");
    const char *t = "devices/dev1/temperature";

    /* handle() stores the reading and publishes nothing: the daemon checks `when`. */
    CHECK_EQ_INT(run_text(h, "threshold_alert", t, "31.5", NULL, &a, &out), 0);
    CHECK_EQ_INT(out.npublishes, 0);
    CHECK_EQ_INT(out.records.n, 1);
    if (out.records.n == 1) {
        CHECK_EQ_STR(out.records.v[0].variable, "temperature");
        CHECK(out.records.v[0].number == 31.5);
    }
    CHECK_EQ_INT(when_parse(host_when(h, 0), &w, err, sizeof err), 0);
    CHECK_EQ_INT(w.n, 1);
    CHECK_EQ_STR(w.c[0].variable, "temperature");
    CHECK_EQ_INT(w.c[0].op, WHEN_ABOVE);
    CHECK_EQ_STR(w.c[0].param, "threshold");
    CHECK(w.c[0].value.number == 30);

    /* condition(c) publishes the alert. */
    CHECK_EQ_INT(alert_run(h, "dev1", 31.5, 30, &a, &out), 0);
    CHECK_EQ_INT(out.npublishes, 1);
    if (out.npublishes == 1) {
        CHECK_EQ_STR(out.publishes[0].topic, "alerts/dev1");
        CHECK_EQ_INT(out.publishes[0].qos, 1);
        CHECK_EQ_STR((const char *)out.publishes[0].payload,
                     "{\"serial\":\"dev1\",\"threshold\":30,\"time\":1764000000000,"
                     "\"value\":31.5,\"variable\":\"temperature\"}");
    }
    CHECK_EQ_INT(out.nlogs, 1);

    /* TagoIO JSON: msg.records carries the temperature record. */
    struct record rec = {
        .variable = "temperature", .type = RECORD_NUMBER, .number = 10, .unit = "°C"};
    struct host_msg m = {.topic = t,
                         .payload = (const uint8_t *)"{}",
                         .payload_len = 2,
                         .serial = "dev2",
                         .records = &rec,
                         .nrecords = 1};
    CHECK_EQ_INT(host_run(h, 0, &m, &a, &out, err, sizeof err), 0);
    CHECK_EQ_INT(out.records.n, 1);
    if (out.records.n == 1)
        CHECK_EQ_STR(out.records.v[0].unit, "°C");

    /* THRESHOLD in env is the default a device param overrides. */
    CHECK_EQ_INT(load_example(h, "threshold_alert", "{\"THRESHOLD\":\"50\"}"), 0);
    CHECK_EQ_INT(when_parse(host_when(h, 0), &w, err, sizeof err), 0);
    CHECK(w.c[0].value.number == 50);

    /* Not a number, no device: errors. */
    CHECK_EQ_INT(run_text(h, "threshold_alert", t, "warm", NULL, &a, &out), SP_ERR_LUA);
    CHECK_EQ_INT(run_text(h, "threshold_alert", t, "1e999", NULL, &a, &out), SP_ERR_LUA);
    m.serial = NULL;
    CHECK_EQ_INT(host_run(h, 0, &m, &a, &out, err, sizeof err), SP_ERR_LUA);
    arena_cleanup(&a);
    host_free(h);
}

/* timeout_ms as declared, bad limits refused, and the state fitting the analysis's memory. */
static void check_declared_limits(struct host *h)
{
    char src[1024];

    /* timeout_ms is kept as declared. */
    CHECK_EQ_INT(load(h, "t", "return {limits = {timeout_ms = 200}, handle = print}"), 0);
    CHECK_EQ_INT(host_timeout_ms(h, (size_t)host_find(h, "t")), 200);
    CHECK_EQ_INT(load(h, "t", "return {limits = {timeout_ms = 1e12}, handle = print}"), 0);
    CHECK_EQ_INT(host_timeout_ms(h, (size_t)host_find(h, "t")), 2147483647);
    CHECK_EQ_INT(load(h, "t", "return {handle = print}"), 0);
    CHECK_EQ_INT(host_timeout_ms(h, (size_t)host_find(h, "t")), 0);
    CHECK_EQ_INT(host_timeout_ms(h, 99), 0);

    /* Bad values and keys are refused, naming the field; the old version stays. */
    CHECK_EQ_INT(load(h, "t", "return {limits = {timeout_ms = 300}, handle = print}"), 0);
    static const struct {
        const char *limits, *needle;
    } bad[] = {
        {"5", "limits must be a table"},
        {"{instructions = 0}", "limits.instructions must be a positive integer"},
        {"{instructions = -1}", "limits.instructions"},
        {"{memory_mb = 1.5}", "limits.memory_mb must be a positive integer"},
        {"{records = '10'}", "limits.records"},
        {"{publishes = true}", "limits.publishes"},
        {"{timeout_ms = 0/0}", "limits.timeout_ms"},
        {"{memory = 8}", "limits.memory is not a limit"},
        {"{instrucions = 8}", "limits.instrucions is not a limit"},
        {"{5}", "limits has a key that is not a string"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(src, sizeof src, "return {limits = %s, handle = print}", bad[i].limits);
        CHECK_EQ_INT(load(h, "t", src), SP_ERR_LUA);
        CHECK(strstr(err, bad[i].needle) != NULL);
        if (!strstr(err, bad[i].needle))
            fprintf(stderr, "  limits %s: %s\n", bad[i].limits, err);
    }
    CHECK_EQ_INT(host_timeout_ms(h, (size_t)host_find(h, "t")), 300);

    /* The top level runs under the host's limits, but must then fit the analysis's memory. */
    CHECK_EQ_INT(load(h, "t",
                      "local big = ('x'):rep(1 << 20) .. ('y'):rep(1 << 20)\n"
                      "return {limits = {memory_mb = 1}, handle = function() return big end}"),
                 SP_ERR_NOMEM);
    CHECK(strstr(err, "while loading") != NULL);
    CHECK_EQ_INT(load(h, "t",
                      "local big = ('x'):rep(1 << 20) .. ('y'):rep(1 << 20)\n"
                      "big = nil\n"
                      "return {limits = {memory_mb = 1}, handle = function() end}"),
                 0);
}

/* An analysis's `limits` lower the host's for itself, never raise them. */
static void test_analysis_limits(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    arena_init(&a, 1 << 20);

    /* A lower instruction limit trips where the host's would not. */
    static const char LOOP[] = "return {%s handle = function() for i = 1, 100000 do end end}";
    char src[1024];
    snprintf(src, sizeof src, LOOP, "");
    CHECK_EQ_INT(load_run(h, src, &a, &out), 0);
    snprintf(src, sizeof src, LOOP, "limits = {instructions = 2e4},");
    CHECK_EQ_INT(load_run(h, src, &a, &out), SP_ERR_TIMEOUT);
    CHECK(strstr(err, "(20000)") != NULL);
    CHECK_EQ_INT(host_timeout_ms(h, 0), 0);

    /* A smaller memory cap trips where the host's would not. */
    static const char BIG[] = "return {%s handle = function() local s = ('x'):rep(1 << 19) "
                              "s = s .. s .. s return {variable = 'n', value = #s} end}";
    snprintf(src, sizeof src, BIG, "");
    CHECK_EQ_INT(load_run(h, src, &a, &out), 0);
    snprintf(src, sizeof src, BIG, "limits = {memory_mb = 1},");
    CHECK_EQ_INT(load_run(h, src, &a, &out), SP_ERR_NOMEM);
    CHECK(strstr(err, "(1048576 bytes)") != NULL);

    /* records and publishes. */
    CHECK_EQ_INT(load_run(h,
                          "return {limits = {records = 2}, handle = function() "
                          "return {{variable='a'},{variable='b'},{variable='c'}} end}",
                          &a, &out),
                 SP_ERR_LIMIT);
    CHECK(strstr(err, "the limit is 2") != NULL);
    CHECK_EQ_INT(load_run(h,
                          "return {limits = {records = 2}, handle = function() "
                          "return {{variable='a'},{variable='b'}} end}",
                          &a, &out),
                 0);
    CHECK_EQ_INT(load_run(h,
                          "return {limits = {publishes = 1}, handle = function() "
                          "publish('a','b') publish('a','b') end}",
                          &a, &out),
                 SP_ERR_LIMIT);
    CHECK_EQ_INT(load_run(h,
                          "return {limits = {publishes = 1}, handle = function() "
                          "publish('a','b') end}",
                          &a, &out),
                 0);
    CHECK_EQ_INT(out.npublishes, 1);

    check_declared_limits(h);

    arena_cleanup(&a);
    host_free(h);
}

/* Clamped to the host's limits: a script cannot raise them. */
static void test_analysis_limits_clamped(void)
{
    struct host_limits l;
    host_limits_default(&l);
    l.instructions = 10000;
    l.memory = 1 << 20;
    l.max_records = 2;
    l.max_publishes = 1;
    struct host *h = host_new(&l);
    struct arena a;
    struct host_out out;
    arena_init(&a, 1 << 20);
    CHECK_EQ_INT(load_run(h,
                          "return {limits = {instructions = 1e9}, handle = function() "
                          "for i = 1, 100000 do end end}",
                          &a, &out),
                 SP_ERR_TIMEOUT);
    CHECK(strstr(err, "(10000)") != NULL);
    CHECK_EQ_INT(load_run(h,
                          "return {limits = {memory_mb = 64}, handle = function() "
                          "local s = ('x'):rep(1 << 19) s = s .. s .. s end}",
                          &a, &out),
                 SP_ERR_NOMEM);
    CHECK(strstr(err, "(1048576 bytes)") != NULL);
    CHECK_EQ_INT(load_run(h,
                          "return {limits = {records = 1000}, handle = function() "
                          "return {{variable='a'},{variable='b'},{variable='c'}} end}",
                          &a, &out),
                 SP_ERR_LIMIT);
    CHECK_EQ_INT(load_run(h,
                          "return {limits = {publishes = 100}, handle = function() "
                          "publish('a','b') publish('a','b') end}",
                          &a, &out),
                 SP_ERR_LIMIT);
    arena_cleanup(&a);
    host_free(h);
}

/* A state rebuilt after a trip keeps the analysis's limits. */
static void test_analysis_limits_rebuild(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    arena_init(&a, 1 << 20);
    CHECK_EQ_INT(load(h, "r",
                      "local calls = 0\n"
                      "return {limits = {instructions = 50000, memory_mb = 1, records = 1,\n"
                      "                  timeout_ms = 150},\n"
                      "  handle = function(msg)\n"
                      "    calls = calls + 1\n"
                      "    if msg.topic == 'loop' then while true do end end\n"
                      "    if msg.topic == 'spin' then for i = 1, 100000 do end end\n"
                      "    if msg.topic == 'big' then\n"
                      "      local s = ('x'):rep(1 << 19) s = s .. s .. s end\n"
                      "    if msg.topic == 'two' then return {{variable='a'},{variable='b'}} end\n"
                      "    return {variable = 'calls', value = calls}\n"
                      "  end}"),
                 0);
    CHECK_EQ_INT(run_topic(h, "r", "loop", "dev1", &a, &out), SP_ERR_TIMEOUT);
    CHECK(strstr(err, "(50000)") != NULL);
    /* Rebuilt: counter restarts, and every limit is still the analysis's. */
    CHECK_EQ_INT(run_topic(h, "r", "n", "dev1", &a, &out), 0);
    CHECK(out.records.n == 1 && out.records.v[0].number == 1);
    CHECK_EQ_INT(run_topic(h, "r", "big", "dev1", &a, &out), SP_ERR_NOMEM);
    CHECK(strstr(err, "(1048576 bytes)") != NULL);
    CHECK_EQ_INT(run_topic(h, "r", "spin", "dev1", &a, &out), SP_ERR_TIMEOUT);
    CHECK_EQ_INT(run_topic(h, "r", "two", "dev1", &a, &out), SP_ERR_LIMIT);
    CHECK_EQ_INT(host_timeout_ms(h, 0), 150);
    CHECK_EQ_INT(run_topic(h, "r", "n", "dev1", &a, &out), 0);
    arena_cleanup(&a);
    host_free(h);
}

/*
 * One message runs one analysis, so declared filters may not overlap: the
 * analysis loaded second is refused with an error naming both, the first
 * keeps its traffic, and a refused new version leaves the old one loaded.
 * $ topics belong to the broker and the daemon.
 */
static void test_topic_rules(void)
{
    struct host *h = new_host();
#define DECL(topics) "return { topics = {" topics "}, handle = function(m) end }"
    CHECK_EQ_INT(load(h, "a", DECL("'sensors/{serial}/raw'")), 0);
    CHECK_EQ_INT(load(h, "b", DECL("'#'")), SP_ERR_LUA);
    CHECK(strstr(err, "b.lua") && strstr(err, "a.lua") && strstr(err, "sensors/{serial}/raw"));
    CHECK_EQ_INT(host_find(h, "b"), -1);
    CHECK_EQ_INT(load(h, "c", DECL("'sensors/+/cooked'")), 0);
    /* A new version of a that overlaps c is refused; the old a stays. */
    CHECK_EQ_INT(load(h, "a", DECL("'sensors/#'")), SP_ERR_LUA);
    CHECK(strstr(err, "c.lua") != NULL);
    CHECK(host_find(h, "a") >= 0 &&
          strcmp(host_topic(h, (size_t)host_find(h, "a"), 0), "sensors/{serial}/raw") == 0);
    /* An analysis may keep its own filters across versions. */
    CHECK_EQ_INT(load(h, "a", DECL("'sensors/{serial}/raw', 'sensors/{serial}/raw2'")), 0);
    /* Overlap within one declaration is refused too. */
    CHECK_EQ_INT(load(h, "d", DECL("'d/+', 'd/x'")), SP_ERR_LUA);
    static const char *const dollar[] = {DECL("'$SYS/#'"), DECL("'$tip/+/ack'"),
                                         DECL("'$tips/{serial}/push'"), DECL("'$sealpipe/x'")};
    for (size_t i = 0; i < sizeof(dollar) / sizeof(dollar[0]); i++) {
        CHECK_EQ_INT(load(h, "e", dollar[i]), SP_ERR_LUA);
        CHECK(strstr(err, "$ topic") != NULL);
    }
#undef DECL
    host_free(h);
}

/* xpcall is rebuilt on pcall; like the real one it refuses a handler that
 * is not a function (it used to return false, "attempt to call a nil value"). */
static void test_xpcall_handler_checked(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out = {0};
    arena_init(&a, 1 << 20);
    CHECK_EQ_INT(load_run(h,
                          "return {handle = function()\n"
                          "  local ok, e = pcall(xpcall, error, nil, 'x')\n"
                          "  return {variable = 'x', value = tostring(ok) .. ' ' .. e}\n"
                          "end}",
                          &a, &out),
                 0);
    CHECK_EQ_INT((int)out.records.n, 1);
    if (out.records.n == 1)
        CHECK_EQ_STR(out.records.v[0].string,
                     "false bad argument #2 to 'xpcall' (function expected, got nil)");
    arena_cleanup(&a);
    host_free(h);
}

/* Schedules, run_analysis targets and device events: what the declaration
 * may say, and what each handler gets. */
static void test_trigger_declarations(void)
{
    static const struct {
        const char *src, *why;
    } bad[] = {
        {"return {tick = function() end}", "tick needs a schedule"},
        {"return {schedule = 'every 1m', handle = function() end}", "schedule needs a tick"},
        {"return {schedule = 'every 0s', tick = function() end}", "schedule: every"},
        {"return {schedule = '61 * * * *', tick = function() end}", "minute field: 61"},
        {"return {schedule = 5, tick = function() end}", "schedule must be a string"},
        {"return {topics = {'a/b'}, run = function() end}", "topics need a handle"},
        {"return {tick = 1, schedule = 'every 1m'}", "tick must be a function"},
        {"return {event = function() end}", "event needs on"},
        {"return {on = {'connected'}, handle = function() end}", "on needs an event"},
        {"return {on = {}, event = function() end}", "on must be a list"},
        {"return {on = {'online'}, event = function() end}", "on[1] is not an event"},
        {"return {on = {'offline', 'offline'}, event = function() end}", "on[2] is a repeat"},
        {"return {on = {'offline'}, event = function() end}", "needs offline_after"},
        {"return {on = {'offline'}, offline_after = '5s', event = function() end}", "from 10s"},
        {"return {on = {'connected'}, offline_after = '1m', event = function() end}",
         "offline_after needs \"offline\""},
        {"return {when = {}, handle = function() end}", "when needs a condition function"},
        {"return {condition = function() end}", "condition needs when"},
        {"return {when = {variable = 't'}, condition = print}", "when[1] needs one of above"},
        {"return {when = {variable = 't', above = 1}, condition = print, devices = {}}",
         "devices must be {tags"},
        {"return {devices = {tags = {a = 'b'}}, handle = print}", "devices needs on or when"},
    };
    struct host *h = new_host();
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = load(h, "t", bad[i].src);
        CHECK_EQ_INT(rc, SP_ERR_LUA);
        CHECK(strstr(err, bad[i].why) != NULL);
        if (!strstr(err, bad[i].why))
            fprintf(stderr, "  %s: %s\n", bad[i].src, err);
    }
    CHECK_EQ_INT(load(h, "t",
                      "return {schedule = '*/5 * * * *', tick = function(c) return nil end,"
                      " run = function(c) return {variable = 'p', value = c.payload} end,"
                      " on = {'disconnected', 'offline'}, offline_after = '2h',"
                      " event = function(e) end}"),
                 0);
    size_t i = (size_t)host_find(h, "t");
    CHECK_EQ_INT(host_handlers(h, i),
                 HOST_BIT(HOST_TICK) | HOST_BIT(HOST_RUN) | HOST_BIT(HOST_EVENT));
    CHECK_EQ_STR(host_schedule(h, i), "*/5 * * * *");
    CHECK_EQ_INT(host_events(h, i), HOST_BIT(HOST_EV_DISCONNECTED) | HOST_BIT(HOST_EV_OFFLINE));
    CHECK_EQ_INT(host_offline_after_ms(h, i), 2 * 3600 * 1000);
    CHECK_EQ_INT(host_topic_count(h, i), 0);

    /* run(ctx): the payload's JSON is ctx, with ctx.device; records are its. */
    struct arena a;
    struct host_out out;
    arena_init(&a, 1 << 20);
    const char *ctx = "{\"payload\":\"hi\",\"from\":\"x\",\"depth\":1}";
    struct host_msg m = {.handler = HOST_RUN,
                         .topic = "$trigger#run/t/dev",
                         .payload = (const uint8_t *)ctx,
                         .payload_len = strlen(ctx),
                         .serial = "dev"};
    CHECK_EQ_INT(host_run(h, i, &m, &a, &out, err, sizeof err), 0);
    CHECK_EQ_INT(out.records.n, 1);
    CHECK_EQ_STR(out.records.v[0].string, "hi");
    /* A run for no device may not return records; a handler it lacks fails. */
    m.serial = NULL;
    CHECK_EQ_INT(host_run(h, i, &m, &a, &out, err, sizeof err), SP_ERR_LUA);
    CHECK(strstr(err, "runs for no device") != NULL);
    m.handler = HOST_HANDLE;
    CHECK_EQ_INT(host_run(h, i, &m, &a, &out, err, sizeof err), SP_ERR_LUA);
    CHECK(strstr(err, "no handle function") != NULL);
    arena_cleanup(&a);
    host_free(h);
}

/* The declaration's `webhooks` list, and webhook() held to it. */
static void test_webhooks(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    arena_init(&a, 1 << 20);
    static const char *const bad[] = {
        "return {webhooks = {'https://x.com'}, handle = function() end}",
        "return {webhooks = 'a.example.com', handle = function() end}",
        "return {webhooks = {1}, handle = function() end}",
        "return {webhooks = {'a','a','a','a','a','a','a','a','a','a','a','a','a','a','a','a',"
        "'a','a','a','a','a','a','a','a','a','a','a','a','a','a','a','a','a'},"
        "handle = function() end}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(load(h, "w", bad[i]), SP_ERR_LUA);
        CHECK(strstr(err, "webhooks") != NULL);
    }
    CHECK(load(h, "w", bad[0]) == SP_ERR_LUA && strstr(err, "w.lua: webhooks[1]: ") == err);
    CHECK_EQ_INT(load(h, "w",
                      "return {webhooks = {'hooks.example.com', '*.example.org', '127.0.0.1:8099'},"
                      " handle = function(m) webhook('https://a.example.org/x', {v = 1},"
                      " {headers = {B = '2', A = '1'}, method = 'PATCH'}) end}"),
                 0);
    CHECK_EQ_INT(host_webhook_count(h, 0), 3);
    CHECK_EQ_STR(host_webhook_entry(h, 0, 1), "*.example.org");
    CHECK_EQ_INT(run(h, "w", &a, &out), 0);
    CHECK(out.nwebhooks == 1 && strcmp(out.webhooks[0].method, "PATCH") == 0 &&
          out.webhooks[0].nheaders == 2 && strcmp(out.webhooks[0].names[0], "A") == 0 &&
          out.webhooks[0].body_len == 7 && memcmp(out.webhooks[0].body, "{\"v\":1}", 7) == 0);
    CHECK_EQ_INT(load(h, "w", "return {handle = function(m) webhook('http://a.example.org/') end}"),
                 0);
    CHECK_EQ_INT(run(h, "w", &a, &out), SP_ERR_LUA);
    CHECK(strstr(err, "host a.example.org is not in this analysis's webhooks list") != NULL);
    arena_cleanup(&a);
    host_free(h);
}

int main(void)
{
    RUN(test_topic_rules);
    RUN(test_load_replace_unload);
    RUN(test_declaration_errors);
    RUN(test_trigger_declarations);
    RUN(test_run_records);
    RUN(test_msg_fields);
    RUN(test_hostile);
    RUN(test_custom_limits);
    RUN(test_examples);
    RUN(test_example_json_flatten);
    RUN(test_example_unit_convert);
    RUN(test_example_threshold_alert);
    RUN(test_analysis_limits);
    RUN(test_analysis_limits_clamped);
    RUN(test_analysis_limits_rebuild);
    RUN(test_xpcall_handler_checked);
    RUN(test_webhooks);
    return check_done();
}
