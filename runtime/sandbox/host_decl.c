/*
 * host_decl.c - an analysis's declaration, field by field (see
 * host_decl.h): topics, the handlers, schedule, limits. Every field is read
 * with raw access, and every error names the file and the field.
 */
#include "host_decl.h"
#include "base/errors.h"

#include <lauxlib.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/schedule.h"
#include "base/timespan.h"
#include "base/when.h"
#include "base/sp_limits.h"

#define MIB (1024u * 1024u)

/* Registry fields of the declaration's handlers (scripts cannot reach the
 * registry), by enum host_handler. */
static const char *const reg_handler[HOST_HANDLERS] = {
    "sealpipe.handle", "sealpipe.tick", "sealpipe.run", "sealpipe.event", "sealpipe.condition"};
static const char *const handler_name[HOST_HANDLERS] = {"handle", "tick", "run", "event",
                                                        "condition"};
static const char *const event_name[HOST_EVENTS] = {"connected", "disconnected", "offline"};

const char *host_decl_registry(int h)
{
    return reg_handler[h];
}

const char *host_handler_name(int handler)
{
    return handler >= 0 && handler < HOST_HANDLERS ? handler_name[handler] : "?";
}

const char *host_event_name(int event)
{
    return event >= 0 && event < HOST_EVENTS ? event_name[event] : "?";
}

/*
 * MQTT filter rules: '+' and '#' stand alone in their level, '#' only last.
 * A level may be exactly "{serial}" (a named '+'), at most once; other braces
 * are refused so a typo such as "{Serial}" is not silently a literal level.
 */
static const char *filter_check(const char *f, size_t n)
{
    int serials = 0;
    if (n == 0 || n > SP_LIMIT_TOPIC)
        return "must be 1 to 1024 bytes";
    if (memchr(f, '\0', n) || !sp__utf8_valid(f, n))
        return "must be UTF-8 text without NUL";
    if (f[0] == '$')
        return "is a $ topic: those belong to the broker, and the daemon serves $tip/ and "
               "$tips/ itself";
    for (size_t i = 0; i <= n;) {
        const char *end = memchr(f + i, '/', n - i);
        size_t j = end ? (size_t)(end - f) : n;
        const char *lvl = f + i;
        size_t ll = j - i;
        if (ll == 8 && memcmp(lvl, "{serial}", 8) == 0) {
            if (++serials > 1)
                return "has more than one {serial}";
        } else if (memchr(lvl, '{', ll) || memchr(lvl, '}', ll)) {
            return "has a brace outside a level that is exactly {serial}";
        } else if (memchr(lvl, '+', ll) && ll != 1) {
            return "has '+' that is not a whole level";
        } else if (memchr(lvl, '#', ll) && (ll != 1 || j != n)) {
            return "has '#' that is not the whole last level";
        }
        i = j + 1;
    }
    return NULL;
}

/*
 * limits = {instructions =, memory_mb =, timeout_ms =, records =, publishes =,
 * publish_kb =}: each a positive integer, clamped to the host's limit already in bt->lim.
 */
static int read_limits(lua_State *L, int d, struct boot *bt)
{
    static const char *const keys[] = {"instructions", "memory_mb",  "timeout_ms", "records",
                                       "publishes",    "publish_kb", NULL};
    lua_pushliteral(L, "limits");
    lua_rawget(L, d);
    int t = lua_gettop(L);
    if (lua_isnil(L, t)) {
        lua_pop(L, 1);
        return 0;
    }
    if (lua_type(L, t) != LUA_TTABLE) {
        sandbox_seterr(bt->err, bt->errlen, "%s.lua: limits must be a table, not %s", bt->name,
                       luaL_typename(L, t));
        return SP_ERR_LUA;
    }
    lua_pushnil(L);
    while (lua_next(L, t)) {
        int k = 0, ok = 0;
        if (lua_type(L, -2) != LUA_TSTRING) {
            sandbox_seterr(bt->err, bt->errlen, "%s.lua: limits has a key that is not a string",
                           bt->name);
            return SP_ERR_LUA;
        }
        const char *key = lua_tostring(L, -2);
        while (keys[k] && strcmp(keys[k], key))
            k++;
        if (!keys[k]) {
            sandbox_seterr(
                bt->err, bt->errlen,
                "%s.lua: limits.%.64s is not a limit (instructions, memory_mb, timeout_ms, "
                "records, publishes, publish_kb)",
                bt->name, key);
            return SP_ERR_LUA;
        }
        lua_Integer v = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &ok) : 0;
        if (!ok || v <= 0) {
            sandbox_seterr(bt->err, bt->errlen, "%s.lua: limits.%s must be a positive integer",
                           bt->name, key);
            return SP_ERR_LUA;
        }
        lua_Unsigned u = (lua_Unsigned)v;
        struct host_limits *l = &bt->lim;
        switch (k) {
        case 0:
            if (u < l->instructions)
                l->instructions = u;
            break;
        case 1:
            if (u < l->memory / MIB)
                l->memory = (size_t)u * MIB;
            break;
        case 2:
            bt->timeout_ms = u < INT_MAX ? (int)u : INT_MAX;
            break;
        case 3:
            if (u < l->max_records)
                l->max_records = (size_t)u;
            break;
        case 4:
            if (u < l->max_publishes)
                l->max_publishes = (size_t)u;
            break;
        default:
            if (u < l->max_publish_bytes / 1024)
                l->max_publish_bytes = (size_t)u * 1024;
            break;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return 0;
}

/* The handlers of the declaration at index d, each kept in the registry. */
static int read_handlers(lua_State *L, int d, struct boot *bt)
{
    bt->handlers = 0;
    for (int k = 0; k < HOST_HANDLERS; k++) {
        lua_pushstring(L, handler_name[k]);
        int type = lua_rawget(L, d);
        if (type == LUA_TNIL) {
            lua_pop(L, 1);
            continue;
        }
        if (type != LUA_TFUNCTION) {
            sandbox_seterr(bt->err, bt->errlen, "%s.lua: %s must be a function, not %s", bt->name,
                           handler_name[k], luaL_typename(L, -1));
            return SP_ERR_LUA;
        }
        lua_setfield(L, LUA_REGISTRYINDEX, reg_handler[k]);
        bt->handlers |= HOST_BIT(k);
    }
    if (!bt->handlers) {
        sandbox_seterr(bt->err, bt->errlen,
                       "%s.lua: the returned table has no handle, tick, run, event or condition "
                       "function",
                       bt->name);
        return SP_ERR_LUA;
    }
    return 0;
}

/* schedule = "every 5m" | "<5 cron fields>": with tick, and only with it. */
static int read_schedule(lua_State *L, int d, struct boot *bt)
{
    char why[160];
    struct schedule sc;
    size_t n;

    lua_pushliteral(L, "schedule");
    int type = lua_rawget(L, d);
    int tick = (bt->handlers & HOST_BIT(HOST_TICK)) != 0;
    if (type == LUA_TNIL) {
        lua_pop(L, 1);
        if (!tick)
            return 0;
        sandbox_seterr(bt->err, bt->errlen, "%s.lua: tick needs a schedule (\"every 5m\", cron)",
                       bt->name);
        return SP_ERR_LUA;
    }
    const char *spec = type == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
    if (!spec || n > HOST_SCHEDULE_MAX || memchr(spec, '\0', n)) {
        sandbox_seterr(bt->err, bt->errlen, "%s.lua: schedule must be a string of at most %d bytes",
                       bt->name, HOST_SCHEDULE_MAX);
        return SP_ERR_LUA;
    }
    if (schedule_parse(spec, &sc, why, sizeof why)) {
        sandbox_seterr(bt->err, bt->errlen, "%s.lua: %s", bt->name, why);
        return SP_ERR_LUA;
    }
    if (!tick) {
        sandbox_seterr(bt->err, bt->errlen, "%s.lua: schedule needs a tick function", bt->name);
        return SP_ERR_LUA;
    }
    if (!(bt->schedule = strdup(spec)))
        return SP_ERR_NOMEM;
    lua_pop(L, 1);
    return 0;
}

/* on = {"connected", ...}: a non-empty list of distinct event names. */
static int read_on(lua_State *L, int t, struct boot *bt)
{
    lua_Unsigned n = lua_type(L, t) == LUA_TTABLE ? lua_rawlen(L, t) : 0;

    if (n == 0 || n > HOST_EVENTS) {
        sandbox_seterr(bt->err, bt->errlen,
                       "%s.lua: on must be a list of events (connected, disconnected, offline)",
                       bt->name);
        return SP_ERR_LUA;
    }
    for (lua_Unsigned i = 1; i <= n; i++) {
        const char *w = lua_rawgeti(L, t, (lua_Integer)i) == LUA_TSTRING ? lua_tostring(L, -1) : "";
        int k = 0;
        while (k < HOST_EVENTS && strcmp(w, event_name[k]) != 0)
            k++;
        if (k == HOST_EVENTS || (bt->events & HOST_BIT(k))) {
            sandbox_seterr(bt->err, bt->errlen,
                           "%s.lua: on[%d] is %s (connected, disconnected, offline, once each)",
                           bt->name, (int)i, k == HOST_EVENTS ? "not an event" : "a repeat");
            return SP_ERR_LUA;
        }
        bt->events |= HOST_BIT(k);
        lua_pop(L, 1);
    }
    return 0;
}

/* offline_after = "15m": with "offline" in on, and only with it. */
static int read_offline_after(lua_State *L, int d, struct boot *bt)
{
    int64_t ms = 0;
    int offline = (bt->events & HOST_BIT(HOST_EV_OFFLINE)) != 0;

    lua_pushliteral(L, "offline_after");
    int type = lua_rawget(L, d);
    const char *s = type == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    lua_pop(L, 1);
    if (type == LUA_TNIL && !offline)
        return 0;
    if (!offline) {
        sandbox_seterr(bt->err, bt->errlen, "%s.lua: offline_after needs \"offline\" in on",
                       bt->name);
        return SP_ERR_LUA;
    }
    if (!s || timespan_parse(s, &ms) || ms < HOST_OFFLINE_MIN_MS || ms > HOST_OFFLINE_MAX_MS) {
        sandbox_seterr(bt->err, bt->errlen,
                       "%s.lua: \"offline\" in on needs offline_after, a length from 10s to "
                       "366d such as \"15m\"",
                       bt->name);
        return SP_ERR_LUA;
    }
    bt->offline_after_ms = ms;
    return 0;
}

/* on and event come together; offline_after with "offline". */
static int read_events(lua_State *L, int d, struct boot *bt)
{
    int event = (bt->handlers & HOST_BIT(HOST_EVENT)) != 0;

    bt->events = 0;
    bt->offline_after_ms = 0;
    lua_pushliteral(L, "on");
    int type = lua_rawget(L, d);
    if (type == LUA_TNIL) {
        lua_pop(L, 1);
        if (event) {
            sandbox_seterr(bt->err, bt->errlen, "%s.lua: event needs on = {...}", bt->name);
            return SP_ERR_LUA;
        }
        return read_offline_after(L, d, bt);
    }
    int rc = read_on(L, lua_gettop(L), bt);
    lua_pop(L, 1);
    if (!rc && !event) {
        sandbox_seterr(bt->err, bt->errlen, "%s.lua: on needs an event function", bt->name);
        rc = SP_ERR_LUA;
    }
    return rc ? rc : read_offline_after(L, d, bt);
}

/* The value at index v as JSON text (json.encode: keys sorted, so the same
 * table gives the same text), a malloc'd copy; NULL when out of memory. */
static char *encode(lua_State *L, int v)
{
    lua_pushcfunction(L, lapi_json_encode);
    lua_pushvalue(L, v);
    lua_call(L, 1, 1);
    char *s = strdup(lua_tostring(L, -1));
    lua_pop(L, 1);
    return s;
}

/* when = {...} or a list of them: with condition, and only with it. */
static int read_when(lua_State *L, int d, struct boot *bt)
{
    int cond = (bt->handlers & HOST_BIT(HOST_CONDITION)) != 0;
    struct when w;
    char why[256];

    lua_pushliteral(L, "when");
    int type = lua_rawget(L, d);
    if (type == LUA_TNIL || !cond) {
        lua_pop(L, 1);
        if (type == LUA_TNIL && !cond)
            return 0;
        sandbox_seterr(bt->err, bt->errlen, "%s.lua: %s", bt->name,
                       cond ? "condition needs when = {...}" : "when needs a condition function");
        return SP_ERR_LUA;
    }
    if (type != LUA_TTABLE || !(bt->when = encode(L, lua_gettop(L))) ||
        when_parse(bt->when, &w, why, sizeof why)) {
        sandbox_seterr(bt->err, bt->errlen, "%s.lua: %s", bt->name,
                       type != LUA_TTABLE ? "when must be a table"
                       : bt->when         ? why
                                          : "out of memory");
        return SP_ERR_LUA;
    }
    lua_pop(L, 1);
    return 0;
}

/* The tags of a scope at index t: at most HOST_SCOPE_TAGS string keys and values. */
static int scope_tags_ok(lua_State *L, int t)
{
    int n = 0;

    if (lua_type(L, t) != LUA_TTABLE)
        return 0;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        int ok = lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING;
        lua_pop(L, 1);
        if (!ok || ++n > HOST_SCOPE_TAGS) {
            lua_pop(L, 1);
            return 0;
        }
    }
    return n > 0;
}

/* devices = {tags = {k = "v"}}: which devices `on` and `when` watch. */
static int read_scope(lua_State *L, int d, struct boot *bt)
{
    lua_pushliteral(L, "devices");
    int type = lua_rawget(L, d);
    if (type == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (!bt->events && !(bt->handlers & HOST_BIT(HOST_CONDITION))) {
        sandbox_seterr(bt->err, bt->errlen, "%s.lua: devices needs on or when", bt->name);
        return SP_ERR_LUA;
    }
    int t = lua_gettop(L);
    if (type == LUA_TTABLE) {
        lua_pushliteral(L, "tags");
        if (lua_rawget(L, t) == LUA_TNIL) {
            lua_pop(L, 1);
            lua_pushliteral(L, "tag"); /* the name TagoIO's docs use */
            lua_rawget(L, t);
        }
    }
    if (type != LUA_TTABLE || !scope_tags_ok(L, lua_gettop(L))) {
        sandbox_seterr(bt->err, bt->errlen,
                       "%s.lua: devices must be {tags = {key = \"value\", ...}} (1 to %d tags)",
                       bt->name, HOST_SCOPE_TAGS);
        return SP_ERR_LUA;
    }
    if (!(bt->scope = encode(L, lua_gettop(L))))
        return SP_ERR_NOMEM;
    lua_pop(L, 2);
    return 0;
}

/* Reads the declaration table at index d into the boot context. */
int host_decl_read(lua_State *L, int d, struct boot *bt)
{
    int rc;

    if (lua_type(L, d) != LUA_TTABLE) {
        sandbox_seterr(bt->err, bt->errlen,
                       "%s.lua: must return a table {topics = ..., handle = ...}", bt->name);
        return SP_ERR_LUA;
    }
    if ((rc = read_handlers(L, d, bt)) || (rc = read_schedule(L, d, bt)) ||
        (rc = read_events(L, d, bt)) || (rc = read_when(L, d, bt)) || (rc = read_scope(L, d, bt)) ||
        (rc = read_limits(L, d, bt)) ||
        (rc = lapi_read_webhooks(L, d, bt->name, &bt->webhooks, &bt->nwebhooks, bt->err,
                                 bt->errlen)))
        return rc;

    lua_pushliteral(L, "topics");
    lua_rawget(L, d);
    int t = lua_gettop(L);
    if (lua_isnil(L, t))
        return 0;
    if (!(bt->handlers & HOST_BIT(HOST_HANDLE))) {
        sandbox_seterr(bt->err, bt->errlen, "%s.lua: topics need a handle function", bt->name);
        return SP_ERR_LUA;
    }
    if (lua_type(L, t) != LUA_TTABLE) {
        sandbox_seterr(bt->err, bt->errlen, "%s.lua: topics must be a list of strings", bt->name);
        return SP_ERR_LUA;
    }
    lua_Unsigned n = lua_rawlen(L, t);
    if (n > SP_LIMIT_TOPICS_PER_ANALYSIS) {
        sandbox_seterr(bt->err, bt->errlen, "%s.lua: more than %d topics", bt->name,
                       SP_LIMIT_TOPICS_PER_ANALYSIS);
        return SP_ERR_LUA;
    }
    for (lua_Unsigned i = 1; i <= n; i++) {
        size_t fl;
        if (lua_rawgeti(L, t, (lua_Integer)i) != LUA_TSTRING) {
            sandbox_seterr(bt->err, bt->errlen, "%s.lua: topics[%d] is not a string", bt->name,
                           (int)i);
            return SP_ERR_LUA;
        }
        const char *f = lua_tolstring(L, -1, &fl);
        const char *why = filter_check(f, fl);
        if (why) {
            sandbox_seterr(bt->err, bt->errlen, "%s.lua: topics[%d] \"%.200s\" %s", bt->name,
                           (int)i, f, why);
            return SP_ERR_LUA;
        }
        bt->topics[bt->ntopics] = strdup(f);
        if (!bt->topics[bt->ntopics])
            return SP_ERR_NOMEM;
        bt->ntopics++;
        lua_pop(L, 1);
    }
    return 0;
}
