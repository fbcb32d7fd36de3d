/*
 * lapi_record.c - records and msg between C and Lua (see lapi.h): the msg
 * table handle() receives and the records query() returns are built here;
 * the records handle() returns and insert() stores are read back here, with
 * raw access only (lua_next, lua_rawget), so user metamethods never run in
 * the host, and checked with record_validate().
 */
#include <lauxlib.h>
#include <lua.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/sp_limits.h"
#include "base/errors.h"
#include "lapi.h"
#include "sealpipe.h"

/* ------------------------------------------------------------------------ */
/* C to Lua                                                                 */
/* ------------------------------------------------------------------------ */

void lapi_push_number(lua_State *L, double d)
{
    if (d == floor(d) && fabs(d) < 9.0e15)
        lua_pushinteger(L, (lua_Integer)d);
    else
        lua_pushnumber(L, d);
}

/* Pushes a JSON object text as a table; anything unreadable becomes {}. */
static void push_json_text(lua_State *L, struct arena *a, const char *text)
{
    struct json *j = NULL;
    if (text && json_parse(a, text, strlen(text), &j, NULL, 0) == 0 && j->type == JSON_OBJECT)
        lapi_push_json(L, j, 0);
    else
        lua_newtable(L);
}

void lapi_push_record(lua_State *L, struct arena *a, const struct record *r)
{
    lua_createtable(L, 0, 7);
    lua_pushstring(L, r->variable ? r->variable : "");
    lua_setfield(L, -2, "variable");
    switch (r->type) {
    case RECORD_NUMBER:
        lapi_push_number(L, r->number);
        break;
    case RECORD_STRING:
        lua_pushlstring(L, r->string ? r->string : "", r->string ? r->string_len : 0);
        break;
    case RECORD_BOOLEAN:
        lua_pushboolean(L, r->boolean);
        break;
    default:
        lua_pushnil(L);
        break;
    }
    lua_setfield(L, -2, "value");
    if (r->unit) {
        lua_pushstring(L, r->unit);
        lua_setfield(L, -2, "unit");
    }
    if (r->has_time) {
        lua_pushinteger(L, (lua_Integer)r->time_ms);
        lua_setfield(L, -2, "time");
    }
    if (r->group) {
        lua_pushstring(L, r->group);
        lua_setfield(L, -2, "group");
    }
    if (r->has_location) {
        lua_createtable(L, 0, 3);
        lua_pushnumber(L, r->lat);
        lua_setfield(L, -2, "lat");
        lua_pushnumber(L, r->lng);
        lua_setfield(L, -2, "lng");
        if (r->has_alt) {
            lua_pushnumber(L, r->alt);
            lua_setfield(L, -2, "alt");
        }
        lua_setfield(L, -2, "location");
    }
    if (r->metadata) {
        push_json_text(L, a, r->metadata);
        lua_setfield(L, -2, "metadata");
    }
}

void lapi_push_device(lua_State *L, struct arena *a, const char *serial, const char *name,
                      const char *tags_json, const char *params_json)
{
    lua_createtable(L, 0, 6);
    lua_pushstring(L, serial);
    lua_setfield(L, -2, "serial");
    lua_pushstring(L, name ? name : serial);
    lua_setfield(L, -2, "name");
    push_json_text(L, a, tags_json);
    lua_setfield(L, -2, "tags");
    push_json_text(L, a, params_json);
    lua_setfield(L, -2, "params");
}

/* Pushes the device of c->msg as msg.device / ctx.device has it. */
static void push_device(lua_State *L, struct call *c)
{
    const struct host_msg *m = c->msg;

    lapi_push_device(L, c->arena, m->serial, m->device_name, m->tags_json, m->params_json);
}

void lapi_push_msg(lua_State *L, struct call *c)
{
    const struct host_msg *m = c->msg;
    lua_createtable(L, 0, 8);
    lua_pushstring(L, m->topic ? m->topic : "");
    lua_setfield(L, -2, "topic");
    lua_pushlstring(L, m->payload ? (const char *)m->payload : "", m->payload ? m->payload_len : 0);
    lua_setfield(L, -2, "payload");
    lua_pushinteger(L, m->qos);
    lua_setfield(L, -2, "qos");
    lua_pushboolean(L, m->retain);
    lua_setfield(L, -2, "retain");
    lua_pushinteger(L, (lua_Integer)m->received_ms);
    lua_setfield(L, -2, "received");
    if (m->serial) {
        push_device(L, c);
        lua_setfield(L, -2, "device");
    }
    lua_createtable(L, (int)(m->nrecords < 1000000 ? m->nrecords : 0), 0);
    for (size_t i = 0; i < m->nrecords; i++) {
        lapi_push_record(L, c->arena, &m->records[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "records");
}

void lapi_push_ctx(lua_State *L, struct call *c)
{
    const struct host_msg *m = c->msg;
    char *text = arena_strndup(c->arena, (const char *)m->payload, m->payload_len);

    push_json_text(L, c->arena, text);
    if (m->serial) {
        push_device(L, c);
        lua_setfield(L, -2, "device");
    }
}

/* ------------------------------------------------------------------------ */
/* Lua to C, raw access only                                               */
/* ------------------------------------------------------------------------ */

/* Sets c->rerr to "<rwhat> N: <why>" and returns code. */
static int rec_fail(struct call *c, size_t idx, int code, const char *why)
{
    sandbox_seterr(c->rerr, c->rerrlen, "%s %zu: %s", c->rwhat, idx, why);
    return code;
}

/* A string field as an arena copy; NULL (with *bad set) if not a NUL-free string. */
static const char *field_string(lua_State *L, struct call *c, size_t *len, int *bad)
{
    size_t n;
    if (lua_type(L, -1) != LUA_TSTRING) {
        *bad = 1;
        return NULL;
    }
    const char *s = lua_tolstring(L, -1, &n);
    if (!len && memchr(s, '\0', n)) {
        *bad = 1;
        return NULL;
    }
    if (len)
        *len = n;
    return arena_strndup(c->arena, s, n);
}

static int number_field(lua_State *L, int idx, double *out)
{
    if (lua_type(L, idx) != LUA_TNUMBER)
        return 0;
    *out = lua_tonumber(L, idx);
    return 1;
}

static int read_location(lua_State *L, struct call *c, size_t idx, struct record *r)
{
    int t = lua_gettop(L), lat = 0, lng = 0;
    if (lua_type(L, t) != LUA_TTABLE)
        return rec_fail(c, idx, SP_ERR_LUA, "location must be a table {lat, lng[, alt]}");
    lua_pushnil(L);
    while (lua_next(L, t)) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        double v;
        if (!number_field(L, -1, &v))
            return rec_fail(c, idx, SP_ERR_LUA, "location members must be numbers");
        if (strcmp(k, "lat") == 0) {
            r->lat = v;
            lat = 1;
        } else if (strcmp(k, "lng") == 0) {
            r->lng = v;
            lng = 1;
        } else if (strcmp(k, "alt") == 0) {
            r->alt = v;
            r->has_alt = 1;
        } else {
            return rec_fail(c, idx, SP_ERR_LUA, "location accepts only lat, lng and alt");
        }
        lua_pop(L, 1);
    }
    if (!lat || !lng)
        return rec_fail(c, idx, SP_ERR_LUA, "location needs lat and lng");
    r->has_location = 1;
    return 0;
}

/* metadata: a flat table of string keys to string, number or boolean values. */
static int read_metadata(lua_State *L, struct call *c, size_t idx, struct record *r)
{
    int t = lua_gettop(L), first = 1;
    struct buf *b = &c->meta;
    if (lua_type(L, t) != LUA_TTABLE)
        return rec_fail(c, idx, SP_ERR_LUA, "metadata must be a table");
    buf_reset(b);
    if (buf_putc(b, '{'))
        return rec_fail(c, idx, SP_ERR_PAYLOAD, "metadata too large");
    lua_pushnil(L);
    while (lua_next(L, t)) {
        size_t kl, vl;
        int rc;
        if (lua_type(L, -2) != LUA_TSTRING)
            return rec_fail(c, idx, SP_ERR_LUA, "metadata keys must be strings");
        const char *k = lua_tolstring(L, -2, &kl);
        rc = first ? 0 : buf_putc(b, ',');
        rc = rc ? rc : json_write_string(b, k, kl);
        rc = rc ? rc : buf_putc(b, ':');
        switch (lua_type(L, -1)) {
        case LUA_TSTRING: {
            const char *v = lua_tolstring(L, -1, &vl);
            rc = rc ? rc : json_write_string(b, v, vl);
            break;
        }
        case LUA_TNUMBER:
            rc = rc ? rc : json_write_number(b, lua_tonumber(L, -1));
            break;
        case LUA_TBOOLEAN:
            rc = rc ? rc : buf_puts(b, lua_toboolean(L, -1) ? "true" : "false");
            break;
        default:
            return rec_fail(c, idx, SP_ERR_LUA,
                            "metadata values must be strings, numbers or booleans");
        }
        if (rc)
            return rec_fail(c, idx, rc == SP_ERR_TOOLARGE ? SP_ERR_PAYLOAD : rc,
                            "metadata too large");
        first = 0;
        lua_pop(L, 1);
    }
    if (first)
        return 0; /* {} is no metadata */
    if (buf_putc(b, '}'))
        return rec_fail(c, idx, SP_ERR_PAYLOAD, "metadata too large");
    r->metadata = arena_strndup(c->arena, b->p, b->len);
    return r->metadata ? 0 : rec_fail(c, idx, SP_ERR_NOMEM, "out of memory");
}

static int read_time(lua_State *L, struct call *c, size_t idx, struct record *r)
{
    if (lua_type(L, -1) == LUA_TNUMBER) {
        if (lua_isinteger(L, -1)) {
            r->time_ms = (int64_t)lua_tointeger(L, -1);
        } else {
            double d = lua_tonumber(L, -1);
            if (!isfinite(d) || fabs(d) > TIME_MS_MAX)
                return rec_fail(c, idx, SP_ERR_PAYLOAD, "time out of range");
            r->time_ms = (int64_t)llround(d);
        }
    } else if (lua_type(L, -1) == LUA_TSTRING) {
        size_t n;
        const char *s = lua_tolstring(L, -1, &n);
        if (iso8601_parse(s, n, &r->time_ms))
            return rec_fail(c, idx, SP_ERR_PAYLOAD, "time is not an ISO 8601 date-time");
    } else {
        return rec_fail(c, idx, SP_ERR_LUA, "time must be milliseconds or an ISO 8601 string");
    }
    r->has_time = 1;
    return 0;
}

/* Converts the record table on top of the stack into r (1-based idx for errors). */
static int read_record(lua_State *L, struct call *c, size_t idx, struct record *r)
{
    int t = lua_gettop(L);
    if (lua_type(L, t) != LUA_TTABLE)
        return rec_fail(c, idx, SP_ERR_LUA, "not a table");
    lua_pushnil(L);
    while (lua_next(L, t)) {
        int bad = 0, rc = 0;
        if (lua_type(L, -2) != LUA_TSTRING)
            return rec_fail(c, idx, SP_ERR_LUA, "keys must be strings");
        const char *k = lua_tostring(L, -2);
        if (strcmp(k, "variable") == 0) {
            r->variable = field_string(L, c, NULL, &bad);
        } else if (strcmp(k, "value") == 0) {
            switch (lua_type(L, -1)) {
            case LUA_TNUMBER:
                r->type = RECORD_NUMBER;
                r->number = lua_tonumber(L, -1);
                break;
            case LUA_TBOOLEAN:
                r->type = RECORD_BOOLEAN;
                r->boolean = lua_toboolean(L, -1);
                break;
            case LUA_TSTRING:
                r->type = RECORD_STRING;
                r->string = field_string(L, c, &r->string_len, &bad);
                break;
            default:
                return rec_fail(c, idx, SP_ERR_LUA, "value must be a number, string or boolean");
            }
        } else if (strcmp(k, "unit") == 0) {
            r->unit = field_string(L, c, NULL, &bad);
        } else if (strcmp(k, "group") == 0 || strcmp(k, "serie") == 0) {
            r->group = field_string(L, c, NULL, &bad);
        } else if (strcmp(k, "time") == 0) {
            rc = read_time(L, c, idx, r);
        } else if (strcmp(k, "location") == 0) {
            rc = read_location(L, c, idx, r);
        } else if (strcmp(k, "metadata") == 0) {
            rc = read_metadata(L, c, idx, r);
        } else if (strcmp(k, "id") && strcmp(k, "device") && strcmp(k, "created_at")) {
            char why[160];
            snprintf(why, sizeof why, "unknown field \"%.100s\"", k);
            return rec_fail(c, idx, SP_ERR_LUA, why);
        }
        if (rc)
            return rc;
        if (bad) {
            char why[160];
            snprintf(why, sizeof why, "%.100s must be a string without NUL bytes", k);
            return rec_fail(c, idx, SP_ERR_LUA, why);
        }
        lua_settop(L, t + 1); /* keep the key for lua_next */
    }
    if (!r->variable)
        return rec_fail(c, idx, SP_ERR_LUA, "variable (a string) is required");
    char why[256];
    if (record_validate(c->arena, r, why, sizeof why))
        return rec_fail(c, idx, SP_ERR_PAYLOAD, why);
    return 0;
}

static int add_record(lua_State *L, struct call *c, struct record_vec *vec, size_t idx)
{
    struct record *r = record_vec_push(c->arena, vec);
    if (!r) {
        if (vec->n >= SP_LIMIT_RECORDS)
            return rec_fail(c, idx, SP_ERR_LUA, "more records than the limit");
        return rec_fail(c, idx, SP_ERR_NOMEM, "out of memory");
    }
    int rc = read_record(L, c, idx, r);
    lua_pop(L, 1);
    return rc;
}

/*
 * Reads the table at index v, one record or a list of records, into vec.
 * Returns 0, an error with c->rerr set, or -1 with *count set when there are
 * more than room records.
 */
int lapi_read_records(lua_State *L, struct call *c, int v, struct record_vec *vec, size_t room,
                      lua_Unsigned *count)
{
    lua_pushliteral(L, "variable");
    int single = lua_rawget(L, v) != LUA_TNIL;
    lua_pop(L, 1);
    lua_Unsigned n = lua_rawlen(L, v);
    if (!single && n == 0) {
        lua_pushnil(L);
        single = lua_next(L, v) != 0; /* {value = 1}: a record missing its variable */
        lua_settop(L, v);
    }
    *count = single ? 1 : n;
    if (*count > room)
        return -1;
    if (single) {
        lua_pushvalue(L, v);
        return add_record(L, c, vec, 1);
    }
    for (lua_Unsigned i = 1; i <= n; i++) {
        lua_rawgeti(L, v, (lua_Integer)i);
        int rc = add_record(L, c, vec, (size_t)i);
        if (rc)
            return rc;
    }
    return 0;
}
