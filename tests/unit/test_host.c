/*
 * test_host.c - the Lua host: loading, declarations, results, publish, and
 * hostile scripts that must each be contained with the right error while the
 * analysis keeps working afterwards.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arena.h"
#include "check.h"
#include "sp_limits.h"
#include "record.h"
#include "sandbox/host.h"
#include "sealpipe.h"

static char err[2048];

#define OK_SCRIPT                                                                                  \
    "return { topics = {'sensors/{serial}/raw'},\n"                                                \
    "  handle = function(msg) return {variable = 'n', value = #msg.payload} end }\n"

static int load(struct host *h, const char *name, const char *src)
{
    return host_load(h, name, src, strlen(src), err, sizeof err);
}

static struct host *new_host(void)
{
    struct host_limits l;
    host_limits_default(&l);
    return host_new(&l);
}

/* Runs analysis `name` with a small binary payload; returns the status. */
static int run(struct host *h, const char *name, struct arena *a, struct host_out *out)
{
    static const uint8_t payload[] = {0x08, 0x98, 0x2d, 0x0e, 0x74};
    struct host_msg m = {.topic = "sensors/dev1/raw",
                         .payload = payload,
                         .payload_len = sizeof payload,
                         .qos = 1,
                         .received_ms = 1764000000000,
                         .serial = "dev1",
                         .device_name = "Device One",
                         .tags_json = "{\"site\":\"north\",\"floor\":\"2\"}",
                         .params_json = "{\"offset\":\"1.5\"}"};
    int i = host_find(h, name);
    if (i < 0)
        return SP_ERR_NOTFOUND;
    err[0] = '\0';
    return host_run(h, (size_t)i, &m, a, out, err, sizeof err);
}

/* Loads src as "t" and runs it once. */
static int load_run(struct host *h, const char *src, struct arena *a, struct host_out *out)
{
    int rc = load(h, "t", src);
    if (rc) {
        fprintf(stderr, "load failed: %s\n", err);
        return 1000 + rc;
    }
    return run(h, "t", a, out);
}

static void test_load_replace_unload(void)
{
    struct host *h = new_host();
    CHECK(h != NULL);
    CHECK_EQ_INT(load(h, "b", OK_SCRIPT), 0);
    CHECK_EQ_INT(load(h, "a", "return {handle = function() end}"), 0);
    CHECK_EQ_INT(load(h, "c-2_x", OK_SCRIPT), 0);
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
    /* Good filters. */
    CHECK_EQ_INT(load(h, "g",
                      "return {topics = {'#', '+', '+/+/#', '{serial}', 'a/{serial}/#',"
                      "'$tip/{serial}/push'}, handle = function() end}"),
                 0);

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
        int rc = load_run(h, lua_bad[i], &a, &out);
        CHECK_EQ_INT(rc, SP_ERR_LUA);
        if (rc != SP_ERR_LUA)
            fprintf(stderr, "  script %zu: %s\n", i, lua_bad[i]);
    }
    CHECK_EQ_INT(load_run(h, "return {handle = function()\n error('boom') end}", &a, &out),
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
        int rc = load_run(h, payload_bad[i], &a, &out);
        CHECK_EQ_INT(rc, SP_ERR_PAYLOAD);
        if (rc != SP_ERR_PAYLOAD)
            fprintf(stderr, "  script %zu: %s (%s)\n", i, payload_bad[i], err);
    }
    CHECK(strstr(err, "record 2") != NULL);

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

static void test_publish_and_helpers(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    arena_init(&a, 1 << 20);
    CHECK_EQ_INT(load_run(h,
                          "return {handle = function(msg)\n"
                          "  publish('out/' .. msg.device.serial, 'hello')\n"
                          "  publish('cmd/x', '\\0\\1', {qos = 2, retain = true})\n"
                          "  assert(hex.encode('\\1\\171') == '01ab')\n"
                          "  assert(hex.decode('01AB') == '\\1\\171')\n"
                          "  assert(hex.decode('0') == nil and hex.decode('zz') == nil)\n"
                          "  assert(base64.encode('hello') == 'aGVsbG8=')\n"
                          "  assert(base64.decode('aGVsbG8=') == 'hello')\n"
                          "  assert(base64.decode('aGVsbG8') == 'hello')\n"
                          "  assert(base64.decode('aGV*') == nil)\n"
                          "  assert(base64.decode(base64.encode('\\255\\0\\1\\2')) == "
                          "'\\255\\0\\1\\2')\n"
                          "  assert(unpack({1, 2}) == 1 and string.unpack('>i2', '\\8\\152') == "
                          "2200)\n"
                          "  assert(os.time() > 0 and type(os.clock()) == 'number')\n"
                          "  print('ignored')\n"
                          "end}",
                          &a, &out),
                 0);
    if (err[0])
        fprintf(stderr, "  %s\n", err);
    CHECK_EQ_INT(out.npublishes, 2);
    if (out.npublishes == 2) {
        CHECK_EQ_STR(out.publishes[0].topic, "out/dev1");
        CHECK_EQ_INT(out.publishes[0].payload_len, 5);
        CHECK_EQ_MEM(out.publishes[0].payload, "hello", 5);
        CHECK_EQ_INT(out.publishes[0].qos, 0);
        CHECK_EQ_INT(out.publishes[0].retain, 0);
        CHECK_EQ_STR(out.publishes[1].topic, "cmd/x");
        CHECK_EQ_INT(out.publishes[1].payload_len, 2);
        CHECK_EQ_MEM(out.publishes[1].payload, "\0\1", 2);
        CHECK_EQ_INT(out.publishes[1].qos, 2);
        CHECK_EQ_INT(out.publishes[1].retain, 1);
    }
    static const char *const bad[] = {
        "return {handle = function() publish('', 'x') end}",
        "return {handle = function() publish('a/+', 'x') end}",
        "return {handle = function() publish('a/#', 'x') end}",
        "return {handle = function() publish('$SYS/x', 'x') end}",
        "return {handle = function() publish('a', 'x', {qos = 3}) end}",
        "return {handle = function() publish('a', 'x', {retain = 1}) end}",
        "return {handle = function() publish('a') end}",
        "return {handle = function() for i = 1, 101 do publish('a', 'x') end end}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = load_run(h, bad[i], &a, &out);
        CHECK_EQ_INT(rc, SP_ERR_LUA);
        if (rc != SP_ERR_LUA)
            fprintf(stderr, "  script %zu: %s\n", i, bad[i]);
    }
    /* Exactly the limit is fine. */
    CHECK_EQ_INT(
        load_run(h, "return {handle = function() for i = 1, 100 do publish('a', 'x') end end}", &a,
                 &out),
        0);
    CHECK_EQ_INT(out.npublishes, 100);
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
    {"million records", SP_ERR_LUA,
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
                    sp_errname(rc), secs, err);
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
                 SP_ERR_LUA);
    CHECK_EQ_INT(
        load_run(h, "return {handle = function() publish('a','b') publish('a','b') end}", &a, &out),
        SP_ERR_LUA);
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
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *p = malloc(SP_LIMIT_SCRIPT + 1);
    size_t n = p ? fread(p, 1, SP_LIMIT_SCRIPT, f) : 0;
    fclose(f);
    *len = n;
    return p;
}

static void test_examples(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    size_t len;
    arena_init(&a, 1 << 20);

    char *src = slurp(SP_SOURCE_DIR "/analyses/binary_sensor.lua", &len);
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

    src = slurp(SP_SOURCE_DIR "/analyses/passthrough.lua", &len);
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

int main(void)
{
    RUN(test_load_replace_unload);
    RUN(test_declaration_errors);
    RUN(test_run_records);
    RUN(test_msg_fields);
    RUN(test_publish_and_helpers);
    RUN(test_hostile);
    RUN(test_custom_limits);
    RUN(test_examples);
    return check_done();
}
