/*
 * lapi_data.c - publish(), insert(), query(), devices(), aggregate() and
 * delete_data() (see lapi.h): what a script sends, stores and deletes is
 * collected into the call (in its arena) for the daemon to act on after the
 * handler succeeds; query(), devices() and aggregate() ask the daemon
 * through the host's functions. Each enforces its per-call limit (some
 * depend on the handler: host_max_inserts, host_max_queries).
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
    size_t max = host_max_inserts(c->msg->handler);
    if (c->nins >= max)
        return limit_trip(L, c, "inserts limit: more than %d insert() calls in one %s() call",
                          (int)max, host_handler_name(c->msg->handler));
    if (!c->ins && !(c->ins = arena_calloc(c->arena, max, sizeof *c->ins)))
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

/* The variable of query() (or fn): lowercased like stored names, in the arena. */
static const char *variable_arg(lua_State *L, struct call *c, int i, const char *fn)
{
    size_t n;
    if (lua_type(L, i) != LUA_TSTRING)
        luaL_error(L, "%s: variable must be a string", fn);
    const char *s = lua_tolstring(L, i, &n);
    if (n == 0 || n > SP_LIMIT_VARIABLE || memchr(s, '\0', n))
        luaL_error(L, "%s: variable must be 1-%d bytes", fn, SP_LIMIT_VARIABLE);
    char *low = arena_strndup(c->arena, s, n);
    if (!low)
        luaL_error(L, "%s: out of memory", fn);
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
            q->variable = variable_arg(L, c, v, "query");
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

/*
 * One more read of the daemon's (query, devices, aggregate): they share the
 * queries limit of the handler, and each is charged CHARGE_QUERY.
 */
static void count_query(lua_State *L, struct call *c, const char *fn)
{
    size_t max = host_max_queries(c->msg->handler);
    if (c->nqueries >= max)
        limit_trip(L, c,
                   "queries limit: more than %d query(), devices() and aggregate() calls in one "
                   "%s() call (%s)",
                   (int)max, host_handler_name(c->msg->handler), fn);
    c->nqueries++;
    (void)sandbox_charge(L, CHARGE_QUERY);
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
    count_query(L, c, "query");
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

/* ---- devices{}, aggregate{}, delete_data{} ------------------------------- */

/* Raises fn's error for an unknown field k, naming the fields that exist. */
static void unknown_field(lua_State *L, const char *fn, const char *k, const char *known)
{
    char name[72];
    snprintf(name, sizeof name, "%.64s", k);
    luaL_error(L, "%s: unknown field \"%s\" (%s)", fn, name, known);
}

/* The key of the pair lua_next left at v - 1, which must be a string. */
static const char *field_key(lua_State *L, int v, const char *fn)
{
    if (lua_type(L, v - 1) != LUA_TSTRING)
        luaL_error(L, "%s: keys must be strings", fn);
    return lua_tostring(L, v - 1);
}

/* devices{}'s tags at index i, a table of strings, as a JSON object in the arena. */
static const char *tags_arg(lua_State *L, struct call *c, int i)
{
    struct buf *b = &c->meta; /* scratch, freed by host_run */
    int n = 0, bad = 0;

    if (lua_type(L, i) != LUA_TTABLE)
        luaL_error(L, "devices: tags must be a table of strings");
    buf_reset(b);
    bad = buf_putc(b, '{');
    lua_pushnil(L);
    while (!bad && lua_next(L, i)) {
        size_t kl, vl;
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "devices: tags must be a table of strings");
        if (++n > HOST_DEVICES_TAGS)
            luaL_error(L, "devices: at most %d tags", HOST_DEVICES_TAGS);
        const char *k = lua_tolstring(L, -2, &kl), *v = lua_tolstring(L, -1, &vl);
        bad = (n > 1 && buf_putc(b, ',')) || json_write_string(b, k, kl) || buf_putc(b, ':') ||
              json_write_string(b, v, vl);
        lua_pop(L, 1);
    }
    if (bad || buf_putc(b, '}') || b->len > HOST_DEVICES_TAGS_MAX)
        luaL_error(L, "devices: tags too long (%d bytes of JSON at most)", HOST_DEVICES_TAGS_MAX);
    const char *json = arena_strndup(c->arena, b->p, b->len);
    if (!json)
        luaL_error(L, "devices: out of memory");
    return n ? json : NULL;
}

/* Reads devices{}'s table argument at index 1 into q. */
static void devices_args(lua_State *L, struct call *c, struct host_devices_query *q)
{
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        int v = lua_gettop(L);
        const char *k = field_key(L, v, "devices");
        if (strcmp(k, "tags") == 0) {
            q->tags_json = tags_arg(L, c, v);
        } else if (strcmp(k, "after") == 0) {
            size_t n = 0;
            const char *s = lua_type(L, v) == LUA_TSTRING ? lua_tolstring(L, v, &n) : NULL;
            if (!s || (n && !sp_serial_valid(s, n)))
                luaL_error(L, "devices: after must be a serial or \"\"");
            if (!(q->after = arena_strndup(c->arena, s, n)))
                luaL_error(L, "devices: out of memory");
        } else if (strcmp(k, "limit") == 0) {
            int ok = 0;
            lua_Integer n = lua_type(L, v) == LUA_TNUMBER ? lua_tointegerx(L, v, &ok) : 0;
            if (!ok || n < 1 || n > HOST_DEVICES_MAX)
                luaL_error(L, "devices: limit must be an integer from 1 to %d", HOST_DEVICES_MAX);
            q->limit = (size_t)n;
        } else {
            unknown_field(L, "devices", k, "tags, after, limit");
        }
        lua_settop(L, v - 1);
    }
}

/* devices{tags=, after=, limit=} -> list of devices in serial order, or nil, err. */
int lapi_devices(lua_State *L)
{
    struct call *c = sandbox_of(L)->call;
    struct host_devices_query q = {.after = "", .limit = HOST_DEVICES_MAX};
    struct host_device *v = NULL;
    size_t n = 0;
    char why[256] = "";

    if (!c)
        return luaL_error(L, "devices: only available while a handler runs");
    if (!c->dfn)
        return luaL_error(L, "devices() is not available here");
    lua_settop(L, 1);
    if (!lua_isnil(L, 1)) {
        luaL_checktype(L, 1, LUA_TTABLE);
        devices_args(L, c, &q);
    }
    count_query(L, c, "devices");
    int rc = c->dfn(c->rctx, &q, c->arena, &v, &n, why, sizeof why);
    if (rc) {
        luaL_pushfail(L);
        lua_pushstring(L, why[0] ? why : errors_name(rc));
        return 2;
    }
    (void)sandbox_charge(L, n * CHARGE_QUERY_REC);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lapi_push_device(L, c->arena, v[i].serial, v[i].name, v[i].tags_json, v[i].params_json);
        lua_pushboolean(L, v[i].connected);
        lua_setfield(L, -2, "connected");
        if (v[i].last_sent) {
            lua_pushinteger(L, (lua_Integer)v[i].last_sent);
            lua_setfield(L, -2, "last_sent");
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* Reads aggregate{}'s table argument at index 1 into q. */
static void aggregate_args(lua_State *L, struct call *c, struct host_aggregate_query *q)
{
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        int v = lua_gettop(L);
        const char *k = field_key(L, v, "aggregate");
        if (strcmp(k, "serial") == 0) {
            q->serial = serial_arg(L, c, v, "aggregate");
        } else if (strcmp(k, "variable") == 0) {
            q->variable = variable_arg(L, c, v, "aggregate");
        } else if (strcmp(k, "start") == 0 || strcmp(k, "stop") == 0) {
            if (time_arg(L, v, k[2] == 'a' ? &q->start_ms : &q->stop_ms))
                luaL_error(L, "aggregate: %s must be milliseconds or an ISO 8601 date-time", k);
        } else {
            unknown_field(L, "aggregate", k, "serial, variable, start, stop");
        }
        lua_settop(L, v - 1);
    }
}

/* Sets t[k] = d, a number. */
static void set_number(lua_State *L, const char *k, double d)
{
    lapi_push_number(L, d);
    lua_setfield(L, -2, k);
}

/* aggregate{serial=, variable=, start=, stop=} -> {count, min, max, avg, sum, first, last}. */
int lapi_aggregate(lua_State *L)
{
    struct call *c = sandbox_of(L)->call;
    struct host_aggregate_query q = {.start_ms = INT64_MIN, .stop_ms = INT64_MAX};
    struct host_aggregate g = {0};
    char why[256] = "";

    if (!c)
        return luaL_error(L, "aggregate: only available while a handler runs");
    if (!c->gfn)
        return luaL_error(L, "aggregate() is not available here");
    lua_settop(L, 1);
    luaL_checktype(L, 1, LUA_TTABLE);
    aggregate_args(L, c, &q);
    if (!q.variable)
        return luaL_error(L, "aggregate: variable is required");
    if (!q.serial)
        q.serial = serial_arg(L, c, 2, "aggregate"); /* index 2 is none: the run's device */
    if (q.start_ms > q.stop_ms)
        return luaL_error(L, "aggregate: start is after stop");
    count_query(L, c, "aggregate");
    int rc = c->gfn(c->rctx, &q, &g, why, sizeof why);
    if (rc) {
        luaL_pushfail(L);
        lua_pushstring(L, why[0] ? why : errors_name(rc));
        return 2;
    }
    lua_createtable(L, 0, 7);
    lua_pushinteger(L, (lua_Integer)g.count);
    lua_setfield(L, -2, "count");
    if (g.count > 0) {
        set_number(L, "min", g.min);
        set_number(L, "max", g.max);
        set_number(L, "avg", g.avg);
        set_number(L, "sum", g.sum);
        set_number(L, "first", g.first);
        set_number(L, "last", g.last);
    }
    return 1;
}

/* Reads delete_data{}'s table argument at index 1 into d; 1 if before was given. */
static int delete_args(lua_State *L, struct call *c, struct host_delete *d)
{
    int before = 0;
    lua_pushnil(L);
    while (lua_next(L, 1)) {
        int v = lua_gettop(L);
        const char *k = field_key(L, v, "delete_data");
        if (strcmp(k, "serial") == 0) {
            d->serial = serial_arg(L, c, v, "delete_data");
        } else if (strcmp(k, "variable") == 0) {
            d->variable = variable_arg(L, c, v, "delete_data");
        } else if (strcmp(k, "before") == 0) {
            if (time_arg(L, v, &d->before_ms))
                luaL_error(L, "delete_data: before must be milliseconds or an ISO 8601 date-time");
            before = 1;
        } else {
            unknown_field(L, "delete_data", k, "serial, variable, before");
        }
        lua_settop(L, v - 1);
    }
    return before;
}

/* delete_data{serial=, variable=, before=}: collected, executed with the run's results. */
int lapi_delete_data(lua_State *L)
{
    struct call *c = sandbox_of(L)->call;
    struct host_delete d = {0};

    if (!c)
        return luaL_error(L, "delete_data: only available while a handler runs");
    lua_settop(L, 1);
    luaL_checktype(L, 1, LUA_TTABLE);
    if (!delete_args(L, c, &d))
        return luaL_error(L, "delete_data: before is required");
    if (!d.serial)
        d.serial = serial_arg(L, c, 2, "delete_data"); /* index 2 is none: the run's device */
    if (c->ndels >= HOST_MAX_DELETES)
        return limit_trip(L, c, "deletes limit: more than %d delete_data() calls in one %s() call",
                          HOST_MAX_DELETES, host_handler_name(c->msg->handler));
    if (!c->dels && !(c->dels = arena_calloc(c->arena, HOST_MAX_DELETES, sizeof *c->dels)))
        return luaL_error(L, "delete_data: out of memory");
    c->dels[c->ndels++] = d;
    return 0;
}
