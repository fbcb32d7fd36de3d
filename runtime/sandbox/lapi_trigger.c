/*
 * lapi_trigger.c - run_analysis(name, payload) (see lapi.h): a run of
 * another analysis's run(ctx), collected into the call like publish() and
 * queued by the daemon in the transaction that stores this call's results
 * (core/triggers.c), so it runs once those are committed, and never for a
 * call that failed.
 */
#include <lauxlib.h>
#include <lua.h>

#include <string.h>

#include "base/aname.h"
#include "lapi.h"
#include "sp_text.h"

const char *lapi_text_arg(lua_State *L, int i, size_t *len)
{
    int type = lua_type(L, i);

    if (type == LUA_TNONE || type == LUA_TNIL) {
        *len = 0;
        return "";
    }
    if (type == LUA_TTABLE) {
        lua_pushcfunction(L, lapi_json_encode);
        lua_pushvalue(L, i);
        lua_call(L, 1, 1);
        lua_replace(L, i);
    } else if (type != LUA_TSTRING) {
        luaL_argerror(L, i, "a string or a table (sent as JSON)");
    }
    return lua_tolstring(L, i, len);
}

int lapi_run_analysis(lua_State *L)
{
    struct call *c = sandbox_of(L)->call;
    size_t nl, pl;
    const char *name = luaL_checklstring(L, 1, &nl);

    if (!c)
        return luaL_error(L, "run_analysis: only available while a handler runs");
    if (!aname_valid(name, nl))
        return luaL_argerror(L, 1, "an analysis name (letters, digits, '_' and '-')");
    lua_settop(L, 2);
    const char *payload = lapi_text_arg(L, 2, &pl);
    if (pl > HOST_RUN_PAYLOAD_MAX)
        return luaL_argerror(L, 2, "payload larger than 65536 bytes");
    if (!sp__utf8_valid(payload, pl))
        return luaL_argerror(L, 2, "payload must be UTF-8 text (send bytes as base64)");
    if (c->nruns >= HOST_MAX_RUNS)
        return luaL_error(L, "run_analysis: more than %d calls in one handler call", HOST_MAX_RUNS);
    if (!c->runs && !(c->runs = arena_calloc(c->arena, HOST_MAX_RUNS, sizeof *c->runs)))
        return luaL_error(L, "run_analysis: out of memory");
    struct host_run_call *r = &c->runs[c->nruns];
    r->analysis = arena_strndup(c->arena, name, nl);
    r->payload = (const uint8_t *)arena_strndup(c->arena, payload, pl);
    if (!r->analysis || !r->payload)
        return luaL_error(L, "run_analysis: out of memory");
    r->payload_len = pl;
    c->nruns++;
    return 0;
}
