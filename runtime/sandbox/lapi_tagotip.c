/*
 * lapi_tagotip.c - tagotip.parse and tagotip.command (see lapi.h): the
 * daemon's own TagoTiP parser and ACK frame builder from the SDK, for
 * scripts. A command is queued like a publish() and sent after the commit.
 */
#include <lauxlib.h>
#include <lua.h>

#include <stdio.h>
#include <string.h>

#include "lapi.h"
#include "base/errors.h"
#include "sealpipe.h"

#define CHARGE_TIP_VAR 100 /* instructions charged per TagoTiP variable parsed */

/* Pushes the unescaped text of a validated span; 0, or an SDK error. */
static int push_unescaped(lua_State *L, struct sp_span v)
{
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, v.n + 1);
    int n = sp_tip_unescape(v, p, v.n + 1);
    luaL_pushresultsize(&b, n < 0 ? 0 : (size_t)n);
    return n < 0 ? n : 0;
}

/* Adds v's merged metadata (TagoTiP.md §6.4) to the table on top. */
static int push_meta_pairs(lua_State *L, const struct sp_tip_body *tb, const struct sp_tip_var *v)
{
    struct sp_span k, val;
    size_t pos = 0;
    while (sp_tip_meta_each(tb, v, &pos, &k, &val)) {
        lua_pushlstring(L, k.p, k.n);
        int rc = push_unescaped(L, val);
        if (rc) {
            lua_pop(L, 2);
            return rc;
        }
        lua_rawset(L, -3);
    }
    return 0;
}

/* Pushes one variable as a record table, as the daemon stores it. */
static int push_tip_var(lua_State *L, const struct sp_tip_body *tb, const struct sp_tip_var *v)
{
    int rc = 0;
    lua_createtable(L, 0, 8);
    lua_pushlstring(L, v->name.p, v->name.n);
    lua_setfield(L, -2, "variable");
    switch (v->type) {
    case SP_TIP_NUMBER:
        lapi_push_number(L, v->number);
        lua_setfield(L, -2, "value");
        break;
    case SP_TIP_BOOLEAN:
        lua_pushboolean(L, v->boolean);
        lua_setfield(L, -2, "value");
        break;
    case SP_TIP_LOCATION:
        break; /* the location below is its value */
    default:
        if ((rc = push_unescaped(L, v->value)))
            return rc;
        lua_setfield(L, -2, "value");
    }
    if (v->has_loc) { /* the value, a @= suffix or the body's (Revision D) */
        lua_createtable(L, 0, 3);
        lua_pushnumber(L, v->lat);
        lua_setfield(L, -2, "lat");
        lua_pushnumber(L, v->lng);
        lua_setfield(L, -2, "lng");
        if (v->has_alt) {
            lua_pushnumber(L, v->alt);
            lua_setfield(L, -2, "alt");
        }
        lua_setfield(L, -2, "location");
    }
    if (v->unit.n) {
        lua_pushlstring(L, v->unit.p, v->unit.n);
        lua_setfield(L, -2, "unit");
    }
    if (v->has_time) {
        lua_pushinteger(L, (lua_Integer)v->time_ms);
        lua_setfield(L, -2, "time");
    }
    if (v->group.n) {
        lua_pushlstring(L, v->group.p, v->group.n);
        lua_setfield(L, -2, "group");
    }
    if (v->meta.n || tb->meta.n) {
        lua_newtable(L);
        if ((rc = push_meta_pairs(L, tb, v)))
            return rc;
        lua_setfield(L, -2, "metadata");
    }
    return 0;
}

/*
 * {passthrough = "x" | "b", data = <decoded bytes>}; 0 or SP_ERR_PAYLOAD.
 * The data is read as hex.decode and base64.decode read their text.
 */
static int push_passthrough(lua_State *L, const struct sp_tip_body *tb)
{
    char why[96];
    int rc;

    lua_createtable(L, 0, 2);
    lua_pushstring(L, tb->passthrough == 'x' ? "x" : "b");
    lua_setfield(L, -2, "passthrough");
    if (tb->passthrough == 'x')
        rc = lapi_push_unhex(L, tb->data.p, tb->data.n, why, sizeof why);
    else
        rc = lapi_push_unbase64(L, tb->data.p, tb->data.n, why, sizeof why);
    if (rc)
        return SP_ERR_PAYLOAD;
    lua_setfield(L, -2, "data");
    return 0;
}

/*
 * tagotip.parse(body): the SDK parser does all the checking; the body struct
 * (15 KB) is a Lua userdata, so it is counted and collected like any object.
 * On failure the stack is reset to the results: nil and the spec's code.
 */
static int tip_parse(lua_State *L)
{
    size_t n;
    const char *body = luaL_checklstring(L, 1, &n);
    lua_settop(L, 1);
    struct sp_tip_body *tb = lua_newuserdatauv(L, sizeof *tb, 0);
    int rc = sp_tip_parse_body(body, n, tb);
    (void)sandbox_charge(L, n + (rc ? 0 : tb->nvars * CHARGE_TIP_VAR));
    if (!rc && tb->passthrough) {
        rc = push_passthrough(L, tb);
    } else if (!rc) {
        lua_createtable(L, (int)tb->nvars, 0);
        for (size_t i = 0; i < tb->nvars && !rc; i++) {
            if (!(rc = push_tip_var(L, tb, &tb->vars[i])))
                lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
    }
    if (rc) {
        lua_settop(L, 1);
        luaL_pushfail(L);
        lua_pushstring(L, errors_wirecode(rc));
        return 2;
    }
    return 1;
}

/*
 * tagotip.command(serial, command[, {plain = bool, qos = n}]): "CMD|command"
 * on the device's ack topic, sealed for it on $tips/{serial}/ack unless
 * plain, then on $tip/{serial}/ack (TagoTipServers.md §3.5, TagoTiPs.md §9).
 */
static int tip_command(lua_State *L)
{
    struct sandbox *sb = sandbox_of(L);
    struct call *c = sb->call;
    size_t sl, cl;
    const char *serial = luaL_checklstring(L, 1, &sl);
    const char *command = luaL_checklstring(L, 2, &cl);
    char frame[SP_MAX_FRAME + 1], topic[SP_MAX_SERIAL + 16];
    lua_Integer qos = 1;
    int plain = 0, n;

    if (!c)
        return luaL_error(L, "tagotip.command: only available while a handler runs");
    if (!sp_serial_valid(serial, sl))
        return luaL_argerror(L, 1, "a device serial");
    n = sp_tip_build_ack(SP_ACK_MQTT, 0, 0, SP_ACK_CMD, command, cl, frame, sizeof frame);
    if (n < 0)
        return luaL_argerror(L, 2, "printable ASCII without spaces and '|'");
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
            int ok = 1;
            if (strcmp(k, "plain") == 0 && lua_type(L, -1) == LUA_TBOOLEAN) {
                plain = lua_toboolean(L, -1);
            } else if (strcmp(k, "qos") == 0) {
                qos = lua_tointegerx(L, -1, &ok);
                ok = ok && qos >= 0 && qos <= 2;
            } else {
                ok = 0;
            }
            if (!ok)
                return luaL_argerror(L, 3, "options are plain (a boolean) and qos (0, 1, 2)");
            lua_pop(L, 1);
        }
    }
    snprintf(topic, sizeof topic, "%s/%.*s/ack", plain ? "$tip" : "$tips", (int)sl, serial);
    return lapi_queue_publish(L, c, topic, strlen(topic), frame, (size_t)n, (int)qos, 0,
                              plain ? NULL : serial, sl);
}

void lapi_open_tagotip(lua_State *L)
{
    static const luaL_Reg fns[] = {{"parse", tip_parse}, {"command", tip_command}, {NULL, NULL}};
    luaL_newlib(L, fns);
}
