/*
 * lapi_data.c - publish(), insert() and query() (see lapi.h): what a
 * script sends and stores is collected into the call (in its arena) for the
 * daemon to act on after handle() succeeds; query() asks the daemon through
 * the host's query function. Each enforces its per-message limit.
 */
#include <lauxlib.h>
#include <lua.h>

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/sp_limits.h"
#include "base/errors.h"
#include "lapi.h"
#include "sealpipe.h"

#define CHARGE_QUERY     1000 /* instructions charged per query() call, besides per record */
#define CHARGE_QUERY_REC 100

/*
 * A per-message limit (publishes, publish_kb, inserts, queries, records)
 * tripped: raises the error, and keeps its text in the call. If the error
 * is what ends handle(), the run fails with SP_ERR_LIMIT and this text (the
 * limit's name first, then its value); a script may also catch it with
 * pcall and go on, as with any error a helper raises.
 */
static int limit_trip(lua_State *L, struct call *c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int limit_trip(lua_State *L, struct call *c, const char *fmt, ...)
{
    char m[sizeof c->limit];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m, sizeof m, fmt, ap);
    va_end(ap);
    memcpy(c->limit, m, sizeof m);
    return luaL_error(L, "%s", m);
}

int lapi_publish(lua_State *L)
{
    struct sandbox *sb = sandbox_of(L);
    struct call *c = sb->call;
    size_t tl, pl;
    const char *topic = luaL_checklstring(L, 1, &tl);
    const char *payload = luaL_checklstring(L, 2, &pl);
    lua_Integer qos = 0;
    int retain = 0;
    const char *seal_for = NULL;
    size_t sl = 0;

    if (!c)
        return luaL_error(L, "publish: only available while a handler runs");
    if (tl == 0 || tl > SP_LIMIT_TOPIC || memchr(topic, '\0', tl) || strpbrk(topic, "+#") ||
        topic[0] == '$' || !sp__utf8_valid(topic, tl))
        return luaL_argerror(L, 1, "a non-empty topic without wildcards or a leading '$'");
    if (pl > c->lim->max_publish_bytes)
        return limit_trip(L, c, "publish_kb limit: publish() payload of %d bytes, the limit is %d",
                          (int)pl, (int)c->lim->max_publish_bytes);
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_pushliteral(L, "qos");
        lua_rawget(L, 3);
        if (!lua_isnil(L, -1)) {
            int ok;
            qos = lua_tointegerx(L, -1, &ok);
            if (!ok || qos < 0 || qos > 2)
                return luaL_argerror(L, 3, "qos must be 0, 1 or 2");
        }
        lua_pushliteral(L, "retain");
        lua_rawget(L, 3);
        if (!lua_isnil(L, -1)) {
            if (lua_type(L, -1) != LUA_TBOOLEAN)
                return luaL_argerror(L, 3, "retain must be a boolean");
            retain = lua_toboolean(L, -1);
        }
        lua_pushliteral(L, "seal_for");
        lua_rawget(L, 3);
        if (!lua_isnil(L, -1)) {
            seal_for = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &sl) : NULL;
            if (!seal_for || !sp_serial_valid(seal_for, sl))
                return luaL_argerror(L, 3, "seal_for must be a device serial");
            if (pl > SP_MAX_FRAME)
                return luaL_argerror(L, 2, "payload too large to seal (16384 bytes at most)");
        }
        /* An option this version does not know (a typo of seal_for would
         * publish in the clear) is an error. */
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            lua_pop(L, 1);
            const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
            if (!k || (strcmp(k, "qos") && strcmp(k, "retain") && strcmp(k, "seal_for")))
                return luaL_argerror(L, 3, "unknown option (qos, retain and seal_for exist)");
        }
    }
    return lapi_queue_publish(L, c, topic, tl, payload, pl, (int)qos, retain, seal_for, sl);
}

/* Appends one publish to the call; what publish() and tagotip.command() share. */
int lapi_queue_publish(lua_State *L, struct call *c, const char *topic, size_t tl,
                       const char *payload, size_t pl, int qos, int retain, const char *seal_for,
                       size_t sl)
{
    if (c->npubs >= c->lim->max_publishes)
        return limit_trip(L, c,
                          "publishes limit: more than %d publish() calls in one handle() call",
                          (int)c->lim->max_publishes);
    if (c->npubs == c->pubcap) {
        size_t cap = c->pubcap ? 2 * c->pubcap : 8;
        struct host_publish *v = arena_calloc(c->arena, cap, sizeof *v);
        if (!v)
            return luaL_error(L, "publish: out of memory");
        if (c->npubs)
            memcpy(v, c->pubs, c->npubs * sizeof *v);
        c->pubs = v;
        c->pubcap = cap;
    }
    struct host_publish *p = &c->pubs[c->npubs];
    p->topic = arena_strndup(c->arena, topic, tl);
    p->payload = (const uint8_t *)arena_strndup(c->arena, payload, pl);
    if (!p->topic || !p->payload)
        return luaL_error(L, "publish: out of memory");
    p->payload_len = pl;
    p->qos = qos;
    p->retain = retain;
    p->seal_for = seal_for ? arena_strndup(c->arena, seal_for, sl) : NULL;
    if (seal_for && !p->seal_for)
        return luaL_error(L, "publish: out of memory");
    c->npubs++;
    return 0;
}

/* The serial argument at index i (a string, or nil for the message's device). */
static const char *serial_arg(lua_State *L, struct call *c, int i, const char *fn)
{
    size_t n;
    const char *s;
    if (lua_isnoneornil(L, i)) {
        if (!c->msg->serial)
            luaL_error(L, "%s: no serial given and the message has no device", fn);
        s = c->msg->serial;
        n = strlen(s);
    } else {
        if (lua_type(L, i) != LUA_TSTRING)
            luaL_error(L, "%s: serial must be a string", fn);
        s = lua_tolstring(L, i, &n);
        if (!sp_serial_valid(s, n))
            luaL_error(L, "%s: serial must be 1-%d characters of A-Z a-z 0-9 _ -", fn,
                       SP_MAX_SERIAL);
    }
    const char *copy = arena_strndup(c->arena, s, n);
    if (!copy)
        luaL_error(L, "%s: out of memory", fn);
    return copy;
}

/* insert(records[, serial]): records stored for a device, collected like publishes. */
int lapi_insert(lua_State *L)
{
    struct call *c = sandbox_of(L)->call;
    char why[512];
    lua_Unsigned n = 0;

    if (!c)
        return luaL_error(L, "insert: only available while a handler runs");
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    const char *serial = serial_arg(L, c, 2, "insert");
    if (c->nins >= HOST_MAX_INSERTS)
        return limit_trip(L, c, "inserts limit: more than %d insert() calls in one handle() call",
                          HOST_MAX_INSERTS);
    if (!c->ins && !(c->ins = arena_calloc(c->arena, HOST_MAX_INSERTS, sizeof *c->ins)))
        return luaL_error(L, "insert: out of memory");
    struct host_insert *in = &c->ins[c->nins];
    memset(in, 0, sizeof *in);
    c->rwhat = "insert: bad record";
    c->rerr = why;
    c->rerrlen = sizeof why;
    size_t room = c->lim->max_records - c->inserted;
    int rc = lapi_read_records(L, c, 1, &in->records, room, &n);
    if (rc == -1)
        return limit_trip(L, c,
                          "records limit: insert() of %d records, but only %d more fit in the "
                          "limit of %d records per message (inserted and returned)",
                          (int)(n < INT_MAX ? n : INT_MAX), (int)room, (int)c->lim->max_records);
    if (rc)
        return luaL_error(L, "%s", why);
    in->serial = serial;
    c->inserted += in->records.n;
    c->nins++;
    return 0;
}

/* A bound of query(): integer (or integral float) milliseconds, or ISO 8601. */
static int time_arg(lua_State *L, int i, int64_t *ms)
{
    if (lua_type(L, i) == LUA_TNUMBER) {
        if (lua_isinteger(L, i)) {
            *ms = (int64_t)lua_tointeger(L, i);
            return 0;
        }
        double d = lua_tonumber(L, i);
        if (!isfinite(d) || fabs(d) > TIME_MS_MAX)
            return -1;
        *ms = (int64_t)llround(d);
        return 0;
    }
    if (lua_type(L, i) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, i, &n);
        return iso8601_parse(s, n, ms) ? -1 : 0;
    }
    return -1;
}

/* The variable of query(): lowercased like stored names, in the arena. */
static const char *variable_arg(lua_State *L, struct call *c, int i)
{
    size_t n;
    if (lua_type(L, i) != LUA_TSTRING)
        luaL_error(L, "query: variable must be a string");
    const char *s = lua_tolstring(L, i, &n);
    if (n == 0 || n > SP_LIMIT_VARIABLE || memchr(s, '\0', n))
        luaL_error(L, "query: variable must be 1-%d bytes", SP_LIMIT_VARIABLE);
    char *low = arena_strndup(c->arena, s, n);
    if (!low)
        luaL_error(L, "query: out of memory");
    for (size_t k = 0; k < n; k++)
        if (low[k] >= 'A' && low[k] <= 'Z')
            low[k] = (char)(low[k] - 'A' + 'a');
    return low;
}

/* Reads query()'s table argument at index 1 into q. */
static void query_args(lua_State *L, struct call *c, struct host_query *q)
{
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        int v = lua_gettop(L);
        if (lua_type(L, v - 1) != LUA_TSTRING)
            luaL_error(L, "query: keys must be strings");
        const char *k = lua_tostring(L, v - 1);
        if (strcmp(k, "serial") == 0) {
            q->serial = serial_arg(L, c, v, "query");
        } else if (strcmp(k, "variable") == 0) {
            q->variable = variable_arg(L, c, v);
        } else if (strcmp(k, "qty") == 0) {
            int ok = 0;
            lua_Integer n = lua_type(L, v) == LUA_TNUMBER ? lua_tointegerx(L, v, &ok) : 0;
            if (!ok || n < 1 || n > HOST_QUERY_MAX)
                luaL_error(L, "query: qty must be an integer from 1 to %d", HOST_QUERY_MAX);
            q->qty = (size_t)n;
        } else if (strcmp(k, "start") == 0 || strcmp(k, "stop") == 0) {
            if (time_arg(L, v, k[2] == 'a' ? &q->start_ms : &q->stop_ms))
                luaL_error(L, "query: %s must be milliseconds or an ISO 8601 date-time", k);
        } else {
            char name[72];
            snprintf(name, sizeof name, "%.64s", k);
            luaL_error(L, "query: unknown field \"%s\" (serial, variable, qty, start, stop)", name);
        }
        lua_settop(L, v - 1);
    }
}

/* query{serial=, variable=, qty=, start=, stop=} -> records newest first, or nil, err. */
int lapi_query(lua_State *L)
{
    struct call *c = sandbox_of(L)->call;
    struct host_query q = {.start_ms = INT64_MIN, .stop_ms = INT64_MAX, .qty = 1};
    struct record_vec out = {0};
    char why[256] = "";

    if (!c)
        return luaL_error(L, "query: only available while a handler runs");
    if (!c->qfn)
        return luaL_error(L, "query() is not available here");
    lua_settop(L, 1);
    if (!lua_isnil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        query_args(L, c, &q);
    }
    if (!q.serial)
        q.serial = serial_arg(L, c, 2, "query"); /* index 2 is none: the message's device */
    if (q.start_ms > q.stop_ms)
        return luaL_error(L, "query: start is after stop");
    if (c->nqueries >= HOST_MAX_QUERIES)
        return limit_trip(L, c, "queries limit: more than %d query() calls in one handle() call",
                          HOST_MAX_QUERIES);
    c->nqueries++;
    (void)sandbox_charge(L, CHARGE_QUERY);
    int rc = c->qfn(c->qctx, &q, c->arena, &out, why, sizeof why);
    if (rc) {
        luaL_pushfail(L);
        lua_pushstring(L, why[0] ? why : errors_name(rc));
        return 2;
    }
    size_t n = out.n < q.qty ? out.n : q.qty;
    (void)sandbox_charge(L, n * CHARGE_QUERY_REC);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lapi_push_record(L, c->arena, &out.v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}
