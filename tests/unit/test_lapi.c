/*
 * test_lapi.c - the names the Lua host gives scripts (runtime/sandbox/
 * lapi_*.c): publish, hex and base64, json, log/print, tagotip, env, insert
 * and query, each called from a script inside a real host.
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
#include "base/record.h"
#include "sandbox/host.h"
#include "sealpipe.h"
#include "base/sp_limits.h"

/* Bad publish() arguments, and the per-message limits, caught or not. */
static void check_publish_limits(struct host *h, struct arena *a)
{
    struct host_out out;

    static const char *const bad[] = {
        "return {handle = function() publish('', 'x') end}",
        "return {handle = function() publish('a/+', 'x') end}",
        "return {handle = function() publish('a/#', 'x') end}",
        "return {handle = function() publish('$SYS/x', 'x') end}",
        "return {handle = function() publish('a', 'x', {qos = 3}) end}",
        "return {handle = function() publish('a', 'x', {retain = 1}) end}",
        "return {handle = function() publish('a') end}",
    };
    /* A per-message limit that ends handle() fails with SP_ERR_LIMIT and
     * a text naming the limit and its value (no traceback). */
    static const struct {
        const char *src, *needle;
    } limits[] = {
        {"return {handle = function() for i = 1, 101 do publish('a', 'x') end end}",
         "publishes limit: more than 100 publish() calls"},
        {"return {handle = function() for i = 1, 101 do local ok, e = pcall(publish, 'a', 'x') "
         "if not ok then error(e, 0) end end end}",
         "publishes limit: more than 100"},
        {"return {limits = {publish_kb = 1}, handle = function() "
         "publish('a', ('x'):rep(1025)) end}",
         "publish_kb limit: publish() payload of 1025 bytes, the limit is 1024"},
        {"return {handle = function() for i = 1, 11 do insert({variable = 'a'}) end end}",
         "inserts limit: more than 10 insert() calls"},
        {"return {limits = {records = 2}, handle = function() "
         "insert({{variable = 'a'}, {variable = 'b'}, {variable = 'c'}}) end}",
         "records limit: insert() of 3 records, but only 2 more fit"},
    };
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        int rc = load_run(h, limits[i].src, a, &out);
        CHECK_EQ_INT(rc, SP_ERR_LIMIT);
        CHECK(strstr(err, limits[i].needle) != NULL);
        CHECK(strstr(err, "traceback") == NULL);
        if (rc != SP_ERR_LIMIT || !strstr(err, limits[i].needle))
            fprintf(stderr, "  limit %zu: rc %d %s\n", i, rc, err);
    }
    /* Caught, a limit's error is the script's business: it goes on. */
    CHECK_EQ_INT(load_run(h,
                          "return {handle = function() for i = 1, 101 do pcall(publish, 'a', 'x') "
                          "end return {variable = 'ok'} end}",
                          a, &out),
                 0);
    CHECK_EQ_INT(out.npublishes, 100);
    /* Another error after a caught limit is that error. */
    CHECK_EQ_INT(load_run(h,
                          "return {handle = function() pcall(insert, {variable = 'bad.name'}) "
                          "for i = 1, 11 do pcall(insert, {variable = 'a'}) end error('own') end}",
                          a, &out),
                 SP_ERR_LUA);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = load_run(h, bad[i], a, &out);
        CHECK_EQ_INT(rc, SP_ERR_LUA);
        if (rc != SP_ERR_LUA)
            fprintf(stderr, "  script %zu: %s\n", i, bad[i]);
    }
    /* Exactly the limit is fine. */
    CHECK_EQ_INT(
        load_run(h, "return {handle = function() for i = 1, 100 do publish('a', 'x') end end}", a,
                 &out),
        0);
    CHECK_EQ_INT(out.npublishes, 100);
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
    check_publish_limits(h, &a);

    arena_cleanup(&a);
    host_free(h);
}

static void test_json_decode(void)
{
    struct host *h = new_host();
    struct arena a;
    arena_init(&a, 1 << 20);
    check_lua(h, &a, "decode values",
              "local v = json.decode('{\"a\":{\"b\":[1,2.5,\"x\",true,false,null]},\"n\":-3,"
              "\"big\":1e300,\"i\":9007199254740993,\"s\":\"\\\\u00e9\\\\n\"}')\n"
              "assert(type(v) == 'table' and type(v.a.b) == 'table' and #v.a.b == 6)\n"
              "assert(math.type(v.a.b[1]) == 'integer' and v.a.b[2] == 2.5)\n"
              "assert(math.type(v.a.b[2]) == 'float' and v.a.b[3] == 'x')\n"
              "assert(v.a.b[4] == true and v.a.b[5] == false and v.a.b[6] == json.null)\n"
              "assert(v.n == -3 and math.type(v.n) == 'integer')\n"
              "assert(math.type(v.big) == 'float' and v.big == 1e300)\n"
              "assert(math.type(v.i) == 'integer')\n"
              "assert(v.s == '\\u{e9}\\n')\n"
              "assert(json.decode('null') == json.null and json.decode(' 7 ') == 7)\n"
              "assert(json.decode('\"s\"') == 's' and next(json.decode('{}')) == nil)\n"
              "assert(type(json.null) == 'userdata' and json.null ~= json.empty_array)\n"
              "local d = json.decode('{\"k\":1,\"k\":2}') assert(d.k == 2)");
    check_lua(h, &a, "decode errors",
              "for _, s in ipairs({'', '{', '[1,]', '{\"a\":1}x', 'nul', 'NaN', '[1 2]',\n"
              "    '\"\\255\"', '{1:2}', '\"a\\\\u0000b\"', \"'x'\"}) do\n"
              "  local v, e = json.decode(s)\n"
              "  assert(v == nil and type(e) == 'string' and e:find('^json.decode: '), s)\n"
              "end\n"
              "local deep = ('['):rep(33) .. (']'):rep(33)\n"
              "local v, e = json.decode(deep) assert(v == nil and e:find('deeper'))\n"
              "assert(json.decode(('['):rep(32) .. (']'):rep(32)))\n"
              "local big = '\"' .. ('x'):rep(1 << 20) .. '\"'\n"
              "v, e = json.decode(big) assert(v == nil and e:find('larger'))\n"
              "local ok = pcall(json.decode) assert(not ok)\n"
              "ok = pcall(json.decode, {}) assert(not ok)");
    /* Large but legal: a 1 MiB - 2 string and a 500,000-element array. */
    check_lua(h, &a, "decode large",
              "local s = json.decode('\"' .. ('y'):rep((1 << 20) - 2) .. '\"')\n"
              "assert(#s == (1 << 20) - 2)\n"
              "local t = json.decode('[' .. ('0,'):rep(250000) .. '0]')\n"
              "assert(#t == 250001)");
    host_free(h);

    /* The parse tree counts against the memory limit: it fails cleanly. */
    struct host_limits l;
    host_limits_default(&l);
    l.memory = 4u << 20;
    h = host_new(&l);
    check_lua(h, &a, "decode memory",
              "local text = '[' .. ('0,'):rep(400000) .. '0]'\n"
              "local v, e = json.decode(text)\n"
              "assert(v == nil and e == 'json.decode: not enough memory', e)\n"
              "for i = 1, 5 do\n"
              "  v, e = json.decode(text) assert(v == nil)\n"
              "end\n"
              "assert(#json.decode('[' .. ('0,'):rep(1000) .. '0]') == 1001)");
    struct host_out out;
    CHECK_EQ_INT(load_run(h,
                          "return {handle = function()\n"
                          "  local keep = {}\n"
                          "  local text = '[' .. ('[0,1,2,3,4,5,6,7],'):rep(2000) .. '0]'\n"
                          "  for i = 1, 1000 do\n"
                          "    local v, e = json.decode(text)\n"
                          "    if not v then assert(e == 'json.decode: not enough memory', e) end\n"
                          "    keep[i] = v or ('x'):rep(100000)\n"
                          "  end\n"
                          "end}",
                          &a, &out),
                 SP_ERR_NOMEM);
    check_lua(h, &a, "after a trip", "assert(json.decode('[1]')[1] == 1)");
    arena_cleanup(&a);
    host_free(h);
}

static void test_json_encode(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    arena_init(&a, 1 << 20);
    check_lua(
        h, &a, "encode values",
        "local s = json.encode({b = 1, a = {1, 2, 3}, c = 'x\\n\"\\\\\\1', d = true,\n"
        "  e = json.null, f = json.empty_array, g = {}, h = 2.5, i = -0.1, j = false,\n"
        "  k = math.maxinteger, l = 3.0, m = 'é/'})\n"
        "assert(s == '{\"a\":[1,2,3],\"b\":1,\"c\":\"x\\\\n\\\\\"\\\\\\\\\\\\u0001\",\"d\":true,"
        "\"e\":null,\"f\":[],\"g\":{},\"h\":2.5,\"i\":-0.1,\"j\":false,"
        "\"k\":9223372036854775807,\"l\":3,\"m\":\"é/\"}', s)\n"
        "assert(json.encode(nil) == 'null' and json.encode('x') == '\"x\"')\n"
        "assert(json.encode(0.1) == '0.1' and json.encode(1e300) == '1e+300')\n"
        "assert(json.encode({{}, {{}}}) == '[{},[{}]]')\n"
        "local shared = {1} assert(json.encode({shared, shared}) == '[[1],[1]]')\n"
        "local t = {x = {1, json.null, 3}, y = 'z'}\n"
        "local back = json.decode(json.encode(t))\n"
        "assert(back.x[2] == json.null and back.x[3] == 3 and back.y == 'z')\n"
        "assert(json.encode(json.decode('{\"b\":[1,{\"c\":null}],\"a\":\"\\\\u2603\"}')) ==\n"
        "  '{\"a\":\"\\u{2603}\",\"b\":[1,{\"c\":null}]}')");
    check_lua(h, &a, "encode errors",
              "local function bad(v, what)\n"
              "  local s, e = json.encode(v)\n"
              "  assert(s == nil and type(e) == 'string' and e:find(what, 1, true), e)\n"
              "end\n"
              "local c = {} c.self = c bad(c, 'cycle')\n"
              "local l = {} l[1] = {l} bad(l, 'cycle')\n"
              "bad(0/0, 'NaN') bad(math.huge, 'NaN') bad({x = -math.huge}, 'NaN')\n"
              "bad(print, 'function') bad({f = print}, 'function')\n"
              "bad(coroutine.create(print), 'thread')\n"
              "bad({1, 2, x = 3}, 'mixes') bad({[1] = 1, [3] = 3}, 'holes')\n"
              "bad({[0] = 1}, 'keys') bad({[1.5] = 1}, 'keys') bad({[true] = 1}, 'keys')\n"
              "bad({[-1] = 1}, 'keys')\n"
              "bad('\\255', 'UTF-8') bad({['\\255'] = 1}, 'UTF-8')\n"
              "local d = {} for i = 1, 33 do d = {d} end bad(d, 'deeper')\n"
              "d = {} for i = 1, 31 do d = {d} end assert(json.encode(d))\n"
              "bad(('x'):rep(1 << 20), 'larger')\n"
              "local half = ('x'):rep(600000) bad({half, half}, 'larger')\n"
              "assert(not pcall(json.encode))");
    /* Shared subtrees double at every level: the output limit ends it quickly. */
    clock_t t0 = clock();
    check_lua(h, &a, "encode blow-up",
              "local t = {'xxxxxxxxxxxxxxxx'} for i = 1, 30 do t = {t, t} end\n"
              "local s, e = json.encode(t) assert(s == nil and e:find('larger'))");
    check_lua(h, &a, "encode blow-up (objects)",
              "local o = {k = 'v'} for i = 1, 30 do o = {a = o, b = o} end\n"
              "local s, e = json.encode(o) assert(s == nil and e:find('larger'))");
    CHECK((double)(clock() - t0) / CLOCKS_PER_SEC < 5);
    host_free(h);

    /* Output memory counts: a state near its limit trips instead of growing. */
    struct host_limits l;
    host_limits_default(&l);
    l.memory = 2u << 20;
    h = host_new(&l);
    CHECK_EQ_INT(load_run(h,
                          "return {handle = function()\n"
                          "  local s = ('x'):rep(700000)\n"
                          "  local t = {s}\n"
                          "  local e = json.encode(t)\n"
                          "  local keep = {e, json.encode({e})}\n"
                          "end}",
                          &a, &out),
                 SP_ERR_NOMEM);
    check_lua(h, &a, "after a trip", "assert(json.encode({1}) == '[1]')");
    arena_cleanup(&a);
    host_free(h);
}

/* Which lines a call returns: those before a failure, none from an earlier call. */
static void check_log_kept(struct host *h, struct arena *a)
{
    struct host_out out;

    /* Lines logged before a failure are still returned, also after a trip. */
    CHECK_EQ_INT(
        load_run(h, "return {handle = function() log('before') error('boom') end}", a, &out),
        SP_ERR_LUA);
    CHECK_EQ_INT(out.nlogs, 1);
    if (out.nlogs == 1)
        CHECK_EQ_STR(out.logs[0], "before");
    CHECK_EQ_INT(
        load_run(h, "return {handle = function() log('spin') while true do end end}", a, &out),
        SP_ERR_TIMEOUT);
    CHECK_EQ_INT(out.nlogs, 1);
    /* Every call starts with no lines. */
    CHECK_EQ_INT(run(h, "t", a, &out), SP_ERR_TIMEOUT);
    CHECK_EQ_INT(out.nlogs, 1);
    CHECK_EQ_INT(load_run(h, "return {handle = function() end}", a, &out), 0);
    CHECK_EQ_INT(out.nlogs, 0);
    CHECK(out.logs == NULL);
    /* log() in a coroutine reaches the same call. */
    CHECK_EQ_INT(load_run(h,
                          "return {handle = function()\n"
                          "  coroutine.wrap(function() log('co') end)()\n"
                          "end}",
                          a, &out),
                 0);
    CHECK_EQ_INT(out.nlogs, 1);
}

static void test_log(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    arena_init(&a, 1 << 20);

    CHECK_EQ_INT(load_run(h,
                          "log('top level, discarded')\n"
                          "return {handle = function()\n"
                          "  log('a', 1, 2.5, nil, true, json.null)\n"
                          "  print('x\\ny\\0z\\255', '°C', '\\t\\r\\127')\n"
                          "  log()\n"
                          "  log({}, print)\n"
                          "end}",
                          &a, &out),
                 0);
    CHECK_EQ_INT(out.nlogs, 4);
    CHECK_EQ_INT(out.logs_dropped, 0);
    if (out.nlogs == 4) {
        CHECK_EQ_STR(out.logs[0], "a 1 2.5 nil true json.null");
        CHECK_EQ_STR(out.logs[1], "x\\ny\\x00z\\xff °C \\t\\r\\x7f");
        CHECK_EQ_STR(out.logs[2], "");
        CHECK(strncmp(out.logs[3], "table: 0x", 9) == 0 && strstr(out.logs[3], " function: "));
    }

    /* Flooding: HOST_LOG_LINES kept, the rest counted. */
    CHECK_EQ_INT(
        load_run(h, "return {handle = function() for i = 1, 100000 do log(i) end end}", &a, &out),
        0);
    CHECK_EQ_INT(out.nlogs, HOST_LOG_LINES);
    CHECK_EQ_INT(out.logs_dropped, 100000 - HOST_LOG_LINES);
    if (out.nlogs == HOST_LOG_LINES) {
        CHECK_EQ_STR(out.logs[0], "1");
        CHECK_EQ_STR(out.logs[HOST_LOG_LINES - 1], "20");
    }

    /* A long line is cut, never mid-character or mid-escape, and marked. */
    CHECK_EQ_INT(load_run(h,
                          "return {handle = function()\n"
                          "  log(('x'):rep(5000)) log(('é'):rep(3000)) log(('\\1'):rep(3000))\n"
                          "  log(('x'):rep(100), ('y'):rep(5000), 'never')\n"
                          "end}",
                          &a, &out),
                 0);
    CHECK_EQ_INT(out.nlogs, 4);
    for (size_t i = 0; i < out.nlogs; i++) {
        size_t n = strlen(out.logs[i]);
        CHECK(n < HOST_LOG_LINE_MAX && n > HOST_LOG_LINE_MAX - 10);
        CHECK(strcmp(out.logs[i] + n - 3, "...") == 0);
    }
    if (out.nlogs == 4) {
        CHECK(strstr(out.logs[1], "\xc3\xa9...") != NULL);
        CHECK(strstr(out.logs[2], "\\x01...") != NULL);
        CHECK(strstr(out.logs[3], "never") == NULL);
    }

    check_log_kept(h, &a);

    arena_cleanup(&a);
    host_free(h);
}

static void test_tagotip(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    arena_init(&a, 1 << 20);

    CHECK_EQ_INT(
        load_run(h,
                 "return {handle = function()\n"
                 "  local r = assert(tagotip.parse('[temp:=32#C;humidity:=65.5#%]'))\n"
                 "  assert(#r == 2 and r[1].variable == 'temp' and r[1].value == 32)\n"
                 "  assert(math.type(r[1].value) == 'integer' and r[1].unit == 'C')\n"
                 "  assert(r[2].value == 65.5 and r[2].unit == '%')\n"
                 "  assert(r[1].time == nil and r[1].group == nil and r[1].metadata == nil)\n"
                 "  local b = assert(tagotip.parse('^g@1700000000000{k=v,j=body}'\n"
                 "    .. '[a:=1{j=w};s=hi\\\\nthere\\\\;;on?=true@7^h;p@=1.5,2.25,3]'))\n"
                 "  assert(#b == 4)\n"
                 "  assert(b[1].group == 'g' and b[1].time == 1700000000000)\n"
                 "  assert(b[1].metadata.k == 'v' and b[1].metadata.j == 'w')\n"
                 "  assert(b[2].value == 'hi\\nthere;' and b[2].metadata.j == 'body')\n"
                 "  assert(b[3].value == true and b[3].time == 7 and b[3].group == 'h')\n"
                 "  assert(b[4].value == nil and b[4].location.lat == 1.5)\n"
                 "  assert(b[4].location.lng == 2.25 and b[4].location.alt == 3)\n"
                 "  local x = assert(tagotip.parse('>xDEAD'))\n"
                 "  assert(x.passthrough == 'x' and x.data == '\\222\\173')\n"
                 "  local y = assert(tagotip.parse('>bAAA='))\n"
                 "  assert(y.passthrough == 'b' and y.data == '\\0\\0')\n"
                 "  local z = assert(tagotip.parse('>b' .. base64.encode('hello')))\n"
                 "  assert(z.data == 'hello')\n"
                 "  for _, v in ipairs(b) do r[#r + 1] = v end\n"
                 "  return r\n"
                 "end}",
                 &a, &out),
        0);
    if (err[0])
        fprintf(stderr, "  %s\n", err);
    CHECK_EQ_INT(out.records.n, 6);
    if (out.records.n == 6) {
        const struct record *r = out.records.v;
        CHECK_EQ_STR(r[0].variable, "temp");
        CHECK(r[0].number == 32);
        CHECK_EQ_STR(r[0].unit, "C");
        CHECK_EQ_STR(r[2].group, "g");
        CHECK_EQ_INT(r[2].time_ms, 1700000000000);
        CHECK(r[2].metadata && strstr(r[2].metadata, "\"j\":\"w\""));
        CHECK_EQ_INT(r[3].type, RECORD_STRING);
        CHECK_EQ_STR(r[3].string, "hi\nthere;");
        CHECK_EQ_INT(r[5].type, RECORD_NONE);
        CHECK(r[5].has_location && r[5].lat == 1.5 && r[5].has_alt && r[5].alt == 3);
    }
    check_lua(h, &a, "tagotip errors",
              "local function bad(body, code)\n"
              "  local v, e = tagotip.parse(body)\n"
              "  assert(v == nil and e == code, tostring(e))\n"
              "end\n"
              "for _, s in ipairs({'', '[', '[a:=1', '[a:=x]', '[a=1;]', '>x', '>xABC', '>xGG',\n"
              "    '>b ab', '[a:=1]>x12', '[a b:=1]', '[a?=yes]', '[a:=1]x', 'junk', '\\0'}) do\n"
              "  bad(s, 'invalid_payload')\n"
              "end\n"
              "bad('[s=' .. ('x'):rep(20000) .. ']', 'payload_too_large')\n"
              "local many = {} for i = 1, 101 do many[i] = 'v' .. i .. ':=1' end\n"
              "bad('[' .. table.concat(many, ';') .. ']', 'invalid_payload')\n"
              "bad(123, 'invalid_payload')\n"
              "assert(not pcall(tagotip.parse)) assert(not pcall(tagotip.parse, {}))\n"
              "for i = 1, 2000 do tagotip.parse('[a:=' .. i .. ']') end");
    arena_cleanup(&a);
    host_free(h);
}

#define ENV_SCRIPT                                                                                 \
    "local at_load = env.A\n"                                                                      \
    "local calls = 0\n"                                                                            \
    "return {handle = function(msg)\n"                                                             \
    "  calls = calls + 1\n"                                                                        \
    "  if msg.topic == 'trip' then local t = {} for i = 1, 1e9 do t[i] = i end end\n"              \
    "  if msg.topic == 'set' then env.A = 'changed' env.NEW = 'x' end\n"                           \
    "  local n = 0 for k, v in pairs(env) do n = n + 1 assert(type(v) == 'string') end\n"          \
    "  return {{variable = 'a', value = env.A or 'none'},\n"                                       \
    "          {variable = 'load', value = at_load or 'none'},\n"                                  \
    "          {variable = 'n', value = n}, {variable = 'calls', value = calls}}\n"                \
    "end}"

/* Runs analysis name on topic; returns records[0] ("a") as a string or "". */
static const char *env_run(struct host *h, const char *name, const char *topic, struct arena *a,
                           struct host_out *out, int *rc)
{
    struct host_msg m = {.topic = topic};
    int i = host_find(h, name);
    *rc = i < 0 ? SP_ERR_NOTFOUND : host_run(h, (size_t)i, &m, a, out, err, sizeof err);
    if (*rc || out->records.n != 4)
        return "";
    return out->records.v[0].string;
}

/* An env over a limit (variables, name length, text size) is refused; e1 keeps its own. */
static void check_env_limits(struct host *h, struct arena *a)
{
    struct host_out out;
    int rc;

    /* Limits: variables, name length, text size. */
    char *big = malloc(HOST_ENV_MAX + 64);
    CHECK(big != NULL);
    if (big) {
        size_t n = 0;
        n += (size_t)sprintf(big + n, "{");
        for (int i = 0; i <= HOST_ENV_VARS; i++)
            n += (size_t)sprintf(big + n, "%s\"V%d\":\"x\"", i ? "," : "", i);
        sprintf(big + n, "}");
        rc = host_load_env(h, "e1", ENV_SCRIPT, strlen(ENV_SCRIPT), big, err, sizeof err);
        CHECK_EQ_INT(rc, SP_ERR_INVAL);
        n = (size_t)sprintf(big, "{\"");
        memset(big + n, 'K', HOST_ENV_NAME_MAX + 1);
        sprintf(big + n + HOST_ENV_NAME_MAX + 1, "\":\"x\"}");
        rc = host_load_env(h, "e1", ENV_SCRIPT, strlen(ENV_SCRIPT), big, err, sizeof err);
        CHECK_EQ_INT(rc, SP_ERR_INVAL);
        n = (size_t)sprintf(big, "{\"A\":\"");
        memset(big + n, 'x', HOST_ENV_MAX);
        sprintf(big + n + HOST_ENV_MAX, "\"}");
        rc = host_load_env(h, "e1", ENV_SCRIPT, strlen(ENV_SCRIPT), big, err, sizeof err);
        CHECK_EQ_INT(rc, SP_ERR_TOOLARGE);
        /* Just under the size limit is fine. */
        n = (size_t)sprintf(big, "{\"A\":\"");
        memset(big + n, 'x', HOST_ENV_MAX - n - 2);
        sprintf(big + HOST_ENV_MAX - 2, "\"}");
        rc = host_load_env(h, "e3", ENV_SCRIPT, strlen(ENV_SCRIPT), big, err, sizeof err);
        CHECK_EQ_INT(rc, 0);
        free(big);
    }
    CHECK_EQ_STR(env_run(h, "e1", "x", a, &out, &rc), "one");
}

static void test_env(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    int rc;
    arena_init(&a, 1 << 20);
    const char *env1 = "{\"A\":\"one\",\"SECRET\":\"s3cr=t\",\"_x9\":\"\"}";

    CHECK_EQ_INT(host_load_env(h, "e1", ENV_SCRIPT, strlen(ENV_SCRIPT), env1, err, sizeof err), 0);
    CHECK_EQ_INT(load(h, "e2", ENV_SCRIPT), 0);
    CHECK_EQ_STR(env_run(h, "e1", "x", &a, &out, &rc), "one");
    CHECK_EQ_INT(rc, 0);
    if (out.records.n == 4) {
        CHECK_EQ_STR(out.records.v[1].string, "one"); /* visible at the top level */
        CHECK(out.records.v[2].number == 3);
    }
    /* Another analysis sees none of it. */
    CHECK_EQ_STR(env_run(h, "e2", "x", &a, &out, &rc), "none");
    if (out.records.n == 4)
        CHECK(out.records.v[2].number == 0);

    /* A script may change its own copy; nobody else sees the change... */
    CHECK_EQ_STR(env_run(h, "e1", "set", &a, &out, &rc), "changed");
    CHECK_EQ_STR(env_run(h, "e2", "x", &a, &out, &rc), "none");
    /* ...and a rebuilt state starts again from the env given at load. */
    env_run(h, "e1", "trip", &a, &out, &rc);
    CHECK_EQ_INT(rc, SP_ERR_NOMEM);
    CHECK_EQ_STR(env_run(h, "e1", "x", &a, &out, &rc), "one");
    CHECK_EQ_INT(rc, 0);
    if (out.records.n == 4) {
        CHECK(out.records.v[2].number == 3);
        CHECK(out.records.v[3].number == 1); /* a new state */
        CHECK_EQ_STR(out.records.v[1].string, "one");
    }

    /* Bad env: refused, and the loaded version (with its env) stays. */
    static const char *const bad[] = {
        "not json",
        "[\"A\"]",
        "\"A=1\"",
        "{\"A\":1}",
        "{\"A\":null}",
        "{\"A\":{\"B\":\"x\"}}",
        "{\"1A\":\"x\"}",
        "{\"A-B\":\"x\"}",
        "{\"\":\"x\"}",
        "{\"A B\":\"x\"}",
        "{\"\\u00e9\":\"x\"}",
        "{\"A\":\"x\"",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rc = host_load_env(h, "e1", ENV_SCRIPT, strlen(ENV_SCRIPT), bad[i], err, sizeof err);
        CHECK_EQ_INT(rc, SP_ERR_INVAL);
        CHECK(strncmp(err, "e1.env: ", 8) == 0);
        if (rc != SP_ERR_INVAL)
            fprintf(stderr, "  env %zu: %s\n", i, bad[i]);
    }
    CHECK(strstr(err, "s3cr") == NULL);
    CHECK_EQ_STR(env_run(h, "e1", "x", &a, &out, &rc), "one");

    check_env_limits(h, &a);

    /* NULL and "" are no env; reloading without one drops the old one. */
    CHECK_EQ_INT(host_load_env(h, "e1", ENV_SCRIPT, strlen(ENV_SCRIPT), "", err, sizeof err), 0);
    CHECK_EQ_STR(env_run(h, "e1", "x", &a, &out, &rc), "none");
    CHECK_EQ_INT(host_load_env(h, "e1", ENV_SCRIPT, strlen(ENV_SCRIPT), "{}", err, sizeof err), 0);
    CHECK_EQ_STR(env_run(h, "e1", "x", &a, &out, &rc), "none");
    CHECK_EQ_INT(host_load_env(h, "e1", ENV_SCRIPT, strlen(ENV_SCRIPT), env1, err, sizeof err), 0);
    CHECK_EQ_STR(env_run(h, "e1", "x", &a, &out, &rc), "one");
    CHECK_EQ_INT(load(h, "e1", ENV_SCRIPT), 0);
    CHECK_EQ_STR(env_run(h, "e1", "x", &a, &out, &rc), "none");
    /* A script that fails to load keeps the old version and its env. */
    CHECK_EQ_INT(host_load_env(h, "e1", ENV_SCRIPT, strlen(ENV_SCRIPT), env1, err, sizeof err), 0);
    CHECK_EQ_INT(host_load_env(h, "e1", "syntax error(", 13, "{\"A\":\"two\"}", err, sizeof err),
                 SP_ERR_LUA);
    CHECK_EQ_STR(env_run(h, "e1", "x", &a, &out, &rc), "one");
    arena_cleanup(&a);
    host_free(h);
}

/* Bad records, serials and arguments make insert() raise. */
static void check_insert_refused(struct host *h, struct arena *a)
{
    struct host_out out;

    /* Bad records, serials and arguments; out's inserts are not written on error. */
    static const char *const bad[] = {
        "insert({variable = 'bad.name'})",
        "insert({variable = 'a', bogus = 1})",
        "insert({{variable = 'a'}, {value = 1}})",
        "insert({variable = 'a'}, '')",
        "insert({variable = 'a'}, 'a b')",
        "insert({variable = 'a'}, 'dev/1')",
        "insert({variable = 'a'}, ('s'):rep(101))",
        "insert({variable = 'a'}, 42)",
        "insert({variable = 'a'}, {})",
        "insert('a')",
        "insert()",
    };
    char src[512];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(src, sizeof src, "return {handle = function(msg) %s end}", bad[i]);
        out.ninserts = 99;
        int rc = load_run(h, src, a, &out);
        CHECK_EQ_INT(rc, SP_ERR_LUA);
        CHECK_EQ_INT(out.ninserts, 99);
        if (rc != SP_ERR_LUA)
            fprintf(stderr, "  insert case %zu: rc %d %s\n", i, rc, err);
    }
    CHECK_EQ_INT(
        load_run(h, "return {handle = function() insert({variable = 'bad.name'}) end}", a, &out),
        SP_ERR_LUA);
    CHECK(strstr(err, "insert: bad record 1:") != NULL);
}

static void test_insert(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    arena_init(&a, 1 << 20);
    CHECK_EQ_INT(load_run(h,
                          "return {handle = function(msg)\n"
                          "  insert({variable = 'A', value = 1, unit = 'C'})\n"
                          "  insert({{variable = 'b', value = 'x'}, {variable = 'c', time = 5}},\n"
                          "         'other-dev_1')\n"
                          "  insert({})\n"
                          "  return {variable = 'r'}\n"
                          "end}",
                          &a, &out),
                 0);
    CHECK_EQ_INT(out.records.n, 1);
    CHECK_EQ_INT(out.ninserts, 3);
    if (out.ninserts == 3) {
        CHECK_EQ_STR(out.inserts[0].serial, "dev1");
        CHECK_EQ_INT(out.inserts[0].records.n, 1);
        if (out.inserts[0].records.n == 1) {
            CHECK_EQ_STR(out.inserts[0].records.v[0].variable, "a"); /* validated: lowercased */
            CHECK_EQ_STR(out.inserts[0].records.v[0].unit, "C");
        }
        CHECK_EQ_STR(out.inserts[1].serial, "other-dev_1");
        CHECK_EQ_INT(out.inserts[1].records.n, 2);
        if (out.inserts[1].records.n == 2) {
            CHECK_EQ_STR(out.inserts[1].records.v[0].string, "x");
            CHECK(out.inserts[1].records.v[1].has_time && out.inserts[1].records.v[1].time_ms == 5);
        }
        CHECK_EQ_INT(out.inserts[2].records.n, 0);
    }
    /* Without insert(): none. */
    CHECK_EQ_INT(load_run(h, OK_SCRIPT, &a, &out), 0);
    CHECK_EQ_INT(out.ninserts, 0);
    CHECK(out.inserts == NULL);

    check_insert_refused(h, &a);

    /* Good edge cases: 100-character serial, exactly 10 calls, a caught error. */
    CHECK_EQ_INT(load_run(h,
                          "return {handle = function(msg)\n"
                          "  for i = 1, 9 do insert({variable = 'a'}, ('s'):rep(100)) end\n"
                          "  local ok = pcall(insert, {variable = 'bad.name'})\n"
                          "  assert(not ok)\n"
                          "  insert({variable = 'z'})\n"
                          "  assert(not pcall(insert, {variable = 'y'}))\n"
                          "end}",
                          &a, &out),
                 0);
    CHECK_EQ_INT(out.ninserts, 10);
    if (out.ninserts == 10)
        CHECK_EQ_STR(out.inserts[9].records.v[0].variable, "z");

    /* No device: a serial is required. */
    CHECK_EQ_INT(load(h, "t", "return {handle = function(msg) insert({variable = 'a'}) end}"), 0);
    CHECK_EQ_INT(run_topic(h, "t", "x", NULL, &a, &out), SP_ERR_LUA);
    CHECK(strstr(err, "no serial given") != NULL);
    CHECK_EQ_INT(load(h, "t", "return {handle = function(msg) insert({variable = 'a'}, 'd') end}"),
                 0);
    CHECK_EQ_INT(run_topic(h, "t", "x", NULL, &a, &out), 0);
    CHECK_EQ_INT(out.ninserts, 1);

    /* Only inside handle(). */
    CHECK_EQ_INT(load(h, "t", "insert({variable = 'a'}, 'd') return {handle = print}"), SP_ERR_LUA);
    arena_cleanup(&a);
    host_free(h);
}

/* Returned and inserted records share the records limit. */
static void test_insert_limit(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    arena_init(&a, 1 << 20);
    static const char SRC[] = "local function recs(n) local t = {} "
                              "for i = 1, n do t[i] = {variable = 'v' .. i} end return t end\n"
                              "return {limits = {records = 5}, handle = function(msg)\n"
                              "  %s\n"
                              "end}";
    static const struct {
        const char *body, *needle;
        int expect;
    } cases[] = {
        {"insert(recs(3)) return recs(2)", NULL, 0},
        {"insert(recs(3)) return recs(3)", "returned 3 records and inserted 3", SP_ERR_LIMIT},
        {"insert(recs(5)) return {variable = 'x'}", "inserted 5", SP_ERR_LIMIT},
        {"insert(recs(3)) insert(recs(3))", "only 2 more fit", SP_ERR_LIMIT},
        {"insert(recs(2)) insert(recs(3))", NULL, 0},
        {"insert(recs(6))", "insert() of 6 records", SP_ERR_LIMIT},
    };
    char src[1024];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(src, sizeof src, SRC, cases[i].body);
        int rc = load_run(h, src, &a, &out);
        CHECK_EQ_INT(rc, cases[i].expect);
        if (cases[i].needle)
            CHECK(strstr(err, cases[i].needle) != NULL);
        if (rc != cases[i].expect || (cases[i].needle && !strstr(err, cases[i].needle)))
            fprintf(stderr, "  case %zu: %s\n", i, err);
    }
    arena_cleanup(&a);
    host_free(h);
}

/* A fake bucket for query(): records what it was asked, answers `give` records. */
struct fakeq {
    int calls;
    struct host_query last;
    char serial[128], variable[128];
    int has_variable;
    int fail;        /* SP_ERR_ code to return */
    const char *why; /* its message ("" for none) */
    size_t give;     /* records to answer */
};

static int fake_query(void *ctx, const struct host_query *q, struct arena *a,
                      struct record_vec *out, char *e, size_t elen)
{
    struct fakeq *f = ctx;
    f->calls++;
    f->last = *q;
    snprintf(f->serial, sizeof f->serial, "%s", q->serial ? q->serial : "(null)");
    f->has_variable = q->variable != NULL;
    snprintf(f->variable, sizeof f->variable, "%s", q->variable ? q->variable : "");
    if (f->fail) {
        snprintf(e, elen, "%s", f->why);
        return f->fail;
    }
    for (size_t i = 0; i < f->give; i++) {
        struct record *r = record_vec_push(a, out);
        if (!r)
            return SP_ERR_NOMEM;
        r->variable = arena_printf(a, "v%zu", i);
        r->type = RECORD_NUMBER;
        r->number = (double)i + 0.5;
        r->has_time = 1;
        r->time_ms = 1000 - (int64_t)i;
        if (i == 0) {
            r->unit = "C";
            r->group = "g";
            r->metadata = "{\"k\":\"v\",\"n\":3}";
        } else if (i == 1) {
            r->type = RECORD_STRING;
            r->string = "text";
            r->string_len = 4;
            r->has_location = 1;
            r->lat = -23.5;
            r->lng = 46.5;
        }
    }
    return 0;
}

/* Too many query() calls, and bad arguments, which never reach the query function. */
static void check_query_refused(struct host *h, struct arena *a, struct fakeq *f)
{
    struct host_out out;

    /* At most HOST_MAX_QUERIES calls per handle() call. */
    f->calls = 0;
    CHECK_EQ_INT(
        load_run(h, "return {handle = function() for i = 1, 10 do query() end end}", a, &out), 0);
    CHECK_EQ_INT(f->calls, 10);
    f->calls = 0;
    CHECK_EQ_INT(
        load_run(h, "return {handle = function() for i = 1, 11 do query() end end}", a, &out),
        SP_ERR_LIMIT);
    CHECK_EQ_INT(f->calls, 10);
    CHECK(strstr(err, "more than 10 query(), devices() and aggregate() calls in one handle()") !=
          NULL);

    /* Bad arguments raise, and never reach the function. */
    static const char *const bad[] = {
        "query{qty = 0}",       "query{qty = 101}",
        "query{qty = 1.5}",     "query{start = 'yesterday'}",
        "query{stop = true}",   "query{start = 2000, stop = 1000}",
        "query{limit = 5}",     "query{serial = 'a b'}",
        "query{serial = 7}",    "query{variable = 5}",
        "query{variable = ''}", "query{[1] = 'x'}",
        "query('dev1')",
    };
    char src[512];
    f->calls = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(src, sizeof src, "return {handle = function(msg) %s end}", bad[i]);
        int rc = load_run(h, src, a, &out);
        CHECK_EQ_INT(rc, SP_ERR_LUA);
        if (rc != SP_ERR_LUA)
            fprintf(stderr, "  query case %zu: rc %d\n", i, rc);
    }
    CHECK_EQ_INT(f->calls, 0);
    CHECK_EQ_INT(load_run(h, "return {handle = function() query{qty = 100} end}", a, &out), 0);
    CHECK_EQ_INT(f->last.qty, 100);
}

/* The query function's errors come back to the script as nil, err. */
static void check_query_errors(struct host *h, struct arena *a, struct fakeq *f)
{
    struct host_out out;

    /* Errors come back as nil, err. */
    f->fail = SP_ERR_IO;
    f->why = "bucket closed";
    CHECK_EQ_INT(load_run(h,
                          "return {handle = function(msg)\n"
                          "  local r, e = query{variable = 'x'}\n"
                          "  assert(r == nil)\n"
                          "  return {variable = 'e', value = e}\n"
                          "end}",
                          a, &out),
                 0);
    CHECK(out.records.n == 1 && strcmp(out.records.v[0].string, "bucket closed") == 0);
    f->why = "";
    CHECK_EQ_INT(run(h, "t", a, &out), 0);
    CHECK(out.records.n == 1 && strcmp(out.records.v[0].string, errors_name(SP_ERR_IO)) == 0);
    f->fail = 0;
}

static void test_query(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    struct fakeq f = {.give = 3};
    arena_init(&a, 1 << 20);

    /* Without a query function. */
    CHECK_EQ_INT(load_run(h, "return {handle = function() query{} end}", &a, &out), SP_ERR_LUA);
    CHECK(strstr(err, "query() is not available here") != NULL);

    host_set_query(h, fake_query, &f);
    /* Arguments arrive as given (variable lowercased), results are converted. */
    CHECK_EQ_INT(
        load_run(h,
                 "return {handle = function(msg)\n"
                 "  local r = query{variable = 'Temp', qty = 5, start = '2026-01-01T00:00:00Z',\n"
                 "                  stop = 1800000000000, serial = 'other_dev-2'}\n"
                 "  assert(#r == 3)\n"
                 "  local a, b = r[1], r[2]\n"
                 "  assert(a.variable == 'v0' and a.value == 0.5 and a.unit == 'C')\n"
                 "  assert(a.time == 1000 and a.group == 'g')\n"
                 "  assert(a.metadata.k == 'v' and a.metadata.n == 3 and a.location == nil)\n"
                 "  assert(b.value == 'text' and b.location.lat == -23.5 and b.time == 999)\n"
                 "  assert(b.unit == nil and b.metadata == nil)\n"
                 "  return r\n"
                 "end}",
                 &a, &out),
        0);
    if (err[0])
        fprintf(stderr, "  %s\n", err);
    CHECK_EQ_INT(f.calls, 1);
    CHECK_EQ_STR(f.serial, "other_dev-2");
    CHECK(f.has_variable);
    CHECK_EQ_STR(f.variable, "temp");
    CHECK_EQ_INT(f.last.qty, 5);
    CHECK(f.last.start_ms == 1767225600000LL);
    CHECK(f.last.stop_ms == 1800000000000LL);
    /* The converted records can be returned as they are. */
    CHECK_EQ_INT(out.records.n, 3);

    /* Defaults: the message's device, every variable, no bounds, 1 record. */
    f.calls = 0;
    CHECK_EQ_INT(load_run(h,
                          "return {handle = function(msg)\n"
                          "  local r = query()\n"
                          "  assert(#r == 1 and r[1].variable == 'v0')\n"
                          "  assert(#query{} == 1)\n"
                          "end}",
                          &a, &out),
                 0);
    CHECK_EQ_INT(f.calls, 2);
    CHECK_EQ_STR(f.serial, "dev1");
    CHECK(!f.has_variable);
    CHECK_EQ_INT(f.last.qty, 1);
    CHECK(f.last.start_ms == INT64_MIN);
    CHECK(f.last.stop_ms == INT64_MAX);

    check_query_errors(h, &a, &f);

    check_query_refused(h, &a, &f);

    /* No device and no serial; only inside handle(). */
    CHECK_EQ_INT(load(h, "t", "return {handle = function() query() end}"), 0);
    CHECK_EQ_INT(run_topic(h, "t", "x", NULL, &a, &out), SP_ERR_LUA);
    CHECK(strstr(err, "no serial given") != NULL);
    CHECK_EQ_INT(load(h, "t", "query{serial = 'd'} return {handle = print}"), SP_ERR_LUA);

    /* Removed again. */
    host_set_query(h, NULL, NULL);
    CHECK_EQ_INT(load_run(h, "return {handle = function() query() end}", &a, &out), SP_ERR_LUA);
    arena_cleanup(&a);
    host_free(h);
}

/*
 * hex and base64 are strict: one alphabet per text (standard or URL-safe,
 * never both), canonical (the unused low bits of the last character are
 * zero), padding either absent or exactly right. Each refusal says why.
 * The same base64 reader decodes a TagoTiP ">b" passthrough body.
 */
static void test_codec_strict(void)
{
    struct host *h = new_host();
    struct arena a;
    struct host_out out;
    arena_init(&a, 1 << 20);
    int rc = load_run(h,
                      "local function bad(f, s, want)\n"
                      "  local v, e = f(s)\n"
                      "  assert(v == nil, s .. ' was accepted')\n"
                      "  assert(e:find(want, 1, true), s .. ': ' .. e)\n"
                      "end\n"
                      "return {handle = function()\n"
                      "  local d = base64.decode\n"
                      "  assert(d('QQ==') == 'A' and d('QQ') == 'A' and d('QUI=') == 'AB')\n"
                      "  bad(d, 'QR==', 'base64.decode: non-canonical')\n"
                      "  bad(d, 'QR', 'non-canonical')\n"
                      "  bad(d, 'QUJ=', 'non-canonical')\n"
                      "  assert(d('+/+/') == '\\251\\255\\191' and d('-_-_') == d('+/+/'))\n"
                      "  bad(d, '+/-_', 'mixes the standard (+/) and URL-safe (-_) alphabets')\n"
                      "  bad(d, 'ab+_', 'mixes')\n"
                      "  bad(d, 'Zg=', 'bad padding')\n"
                      "  bad(d, 'Zg===', 'bad padding')\n"
                      "  bad(d, 'Zm9v=', 'bad padding')\n"
                      "  bad(d, 'Zg==Zg==', 'invalid character at 3')\n"
                      "  bad(d, 'Zm9v!', 'invalid character at 5')\n"
                      "  bad(d, 'Zm9vY', 'bad length')\n"
                      "  bad(hex.decode, '0g', 'hex.decode: invalid character at 2')\n"
                      "  bad(hex.decode, 'g0', 'invalid character at 1')\n"
                      "  bad(hex.decode, 'abc', 'odd length')\n"
                      "  assert(hex.encode('\\171\\205') == 'abcd' and hex.decode('AbCd') == "
                      "'\\171\\205')\n"
                      "  assert(tagotip.parse('>bQQ').data == 'A')\n"
                      "  bad(tagotip.parse, '>bQR==', 'invalid_payload')\n"
                      "end}",
                      &a, &out);
    CHECK_EQ_INT(rc, 0);
    if (rc)
        fprintf(stderr, "  %s\n", err);
    arena_cleanup(&a);
    host_free(h);
}

int main(void)
{
    RUN(test_publish_and_helpers);
    RUN(test_codec_strict);
    RUN(test_json_decode);
    RUN(test_json_encode);
    RUN(test_log);
    RUN(test_tagotip);
    RUN(test_env);
    RUN(test_insert);
    RUN(test_insert_limit);
    RUN(test_query);
    return check_done();
}
