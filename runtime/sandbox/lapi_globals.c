/*
 * lapi_globals.c - what a script's _ENV holds (see lapi.h): the allow-list
 * of the standard library, bounded replacements for the library functions
 * whose one C call could otherwise run for very long, xpcall rebuilt on
 * pcall, and the host's API tables, assembled into the table the chunk gets
 * as _ENV.
 *
 * Anything not copied here is unreachable from the script: the globals
 * table the base library fills stays in the registry only. The real string
 * library table is sanitized too, because the string metatable's __index is
 * that table and s:rep() reaches it without _ENV. sdk/lua/README.md ("What
 * is available") lists exactly these names; test_luaapi.py checks both ways.
 */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lapi.h"

#define REP_MAX             (1u << 20)  /* bytes string.rep may produce */
#define MOVE_MAX            1000000     /* elements one table.move may copy */
#define PATTERN_SUBJECT_MAX (64 * 1024) /* bytes of a pattern function's subject */

/* Calls upvalue 1 with all arguments, returning all its results. */
static int call_original(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* string.rep: the C loop runs n times even for "", so bound n * (len + sep). */
static int str_rep(lua_State *L)
{
    size_t l, lsep;
    luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &lsep);
    if (n > 0) {
        size_t unit = l + lsep ? l + lsep : 1;
        if ((lua_Unsigned)n > REP_MAX / unit)
            return luaL_error(L, "string.rep: result larger than %d bytes", (int)REP_MAX);
    }
    lua_settop(L, 3);
    return call_original(L);
}

/*
 * find, match, gmatch, gsub: bound the subject. That does not stop a crafted
 * pattern from backtracking for minutes; the worker's wall-clock limit does
 * (see host.c).
 */
static int str_pattern(lua_State *L)
{
    size_t l;
    luaL_checklstring(L, 1, &l);
    if (l > PATTERN_SUBJECT_MAX)
        return luaL_error(L, "pattern functions accept subjects up to %d bytes",
                          (int)PATTERN_SUBJECT_MAX);
    return call_original(L);
}

/* table.move: one uninterruptible loop over e - f + 1 elements. */
static int tab_move(lua_State *L)
{
    lua_Integer f = luaL_checkinteger(L, 2);
    lua_Integer e = luaL_checkinteger(L, 3);
    if (e >= f && (lua_Unsigned)e - (lua_Unsigned)f >= MOVE_MAX)
        return luaL_error(L, "table.move: more than %d elements", MOVE_MAX);
    return call_original(L);
}

/* t[name] = lib[name] for each name; t at index dst, lib at index src. */
static void copy_fields(lua_State *L, int dst, int src, const char *const *names)
{
    for (; *names; names++) {
        lua_getfield(L, src, *names);
        lua_setfield(L, dst, *names);
    }
}

/* Replaces lib[name] (lib on top) with a closure of fn over the original. */
static void wrap_field(lua_State *L, const char *name, lua_CFunction fn)
{
    lua_getfield(L, -1, name);
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, -2, name);
}

/*
 * xpcall, rebuilt on pcall. When the count hook raises, Lua calls the
 * message handler before unwinding, while hooks are still off for the thread
 * (allowhook is only restored by the pcall that catches the error): the real
 * xpcall would let `xpcall(f, function() while true do end end)` run
 * forever. Here the handler runs after the unwinding, with hooks on. Scripts
 * cannot tell the difference: without the debug library the handler cannot
 * look at the stack it would otherwise have seen.
 */
static const char XPCALL_LUA[] = "local pcall, pack, unpack, type, error = ...\n"
                                 "return function(f, msgh, ...)\n"
                                 "  if type(msgh) ~= 'function' then\n"
                                 "    error(\"bad argument #2 to 'xpcall' \"\n"
                                 "      .. '(function expected, got ' .. type(msgh) .. ')', 2)\n"
                                 "  end\n"
                                 "  local r = pack(pcall(f, ...))\n"
                                 "  if r[1] then return unpack(r, 1, r.n) end\n"
                                 "  local _, v = pcall(msgh, r[2])\n"
                                 "  return false, v\n"
                                 "end\n";

/* Leaves the xpcall replacement on the stack; base and table libs at b, t.
 * Like the real one it refuses a handler that is not a function. */
static void push_xpcall(lua_State *L, int b, int t)
{
    if (luaL_loadbufferx(L, XPCALL_LUA, sizeof XPCALL_LUA - 1, "=xpcall", "t") != LUA_OK)
        lua_error(L);
    lua_pushnil(L); /* it reads no globals; make sure it cannot */
    lua_setupvalue(L, -2, 1);
    lua_getfield(L, b, "pcall");
    lua_getfield(L, t, "pack");
    lua_getfield(L, t, "unpack");
    lua_getfield(L, b, "type");
    lua_getfield(L, b, "error");
    lua_call(L, 5, 1);
}

static void open_lib(lua_State *L, const char *name, lua_CFunction open)
{
    luaL_requiref(L, name, open, 0);
}

/* Copies the standard library's allowed names into the table at index env. */
static void push_stdlib(lua_State *L, int env)
{
    static const char *const base[] = {
        "assert", "error",  "ipairs", "next",     "pairs",    "pcall", "rawequal", "rawlen",
        "rawget", "rawset", "select", "tonumber", "tostring", "type",  "_VERSION", NULL};
    static const char *const tab[] = {"concat", "insert", "pack", "remove",
                                      "sort",   "unpack", "move", NULL};
    static const char *const os[] = {"time", "clock", "date", NULL};
    static const char *const co[] = {"create", "isyieldable", "resume", "running",
                                     "status", "wrap",        "yield",  NULL};

    open_lib(L, LUA_GNAME, luaopen_base);
    copy_fields(L, env, -1, base);
    open_lib(L, LUA_TABLIBNAME, luaopen_table);
    push_xpcall(L, lua_gettop(L) - 1, lua_gettop(L));
    lua_setfield(L, env, "xpcall");
    lua_pop(L, 2);
    lua_pushcfunction(L, lapi_log);
    lua_setfield(L, env, "print");
    lua_pushcfunction(L, lapi_log);
    lua_setfield(L, env, "log");

    /* The real string table: the string metatable's __index points to it. */
    open_lib(L, LUA_STRLIBNAME, luaopen_string);
    lua_pushnil(L);
    lua_setfield(L, -2, "dump");
    wrap_field(L, "rep", str_rep);
    wrap_field(L, "find", str_pattern);
    wrap_field(L, "match", str_pattern);
    wrap_field(L, "gmatch", str_pattern);
    wrap_field(L, "gsub", str_pattern);
    lua_setfield(L, env, "string");

    open_lib(L, LUA_TABLIBNAME, luaopen_table);
    lua_getfield(L, -1, "unpack");
    lua_setfield(L, env, "unpack");
    lua_newtable(L);
    copy_fields(L, lua_gettop(L), -2, tab);
    wrap_field(L, "move", tab_move);
    lua_setfield(L, env, "table");
    lua_pop(L, 1);

    open_lib(L, LUA_MATHLIBNAME, luaopen_math);
    lua_setfield(L, env, "math");
    open_lib(L, LUA_UTF8LIBNAME, luaopen_utf8);
    lua_setfield(L, env, "utf8");

    open_lib(L, LUA_OSLIBNAME, luaopen_os);
    lua_newtable(L);
    copy_fields(L, lua_gettop(L), -2, os);
    lua_setfield(L, env, "os");
    lua_pop(L, 1);

    open_lib(L, LUA_COLIBNAME, luaopen_coroutine);
    lua_newtable(L);
    copy_fields(L, lua_gettop(L), -2, co);
    lua_setfield(L, env, "coroutine");
    lua_pop(L, 1);
}

/* Sets the host's own tables and functions in the table at index env. */
static void push_host_api(lua_State *L, int env, const struct env_var *vars, size_t nvars)
{
    lapi_open_hex(L);
    lua_setfield(L, env, "hex");
    lapi_open_base64(L);
    lua_setfield(L, env, "base64");
    lua_pushcfunction(L, lapi_publish);
    lua_setfield(L, env, "publish");
    lua_pushcfunction(L, lapi_insert);
    lua_setfield(L, env, "insert");
    lua_pushcfunction(L, lapi_query);
    lua_setfield(L, env, "query");
    lua_pushcfunction(L, lapi_run_analysis);
    lua_setfield(L, env, "run_analysis");
    lua_pushcfunction(L, lapi_webhook);
    lua_setfield(L, env, "webhook");
    lapi_open_json(L);
    lua_setfield(L, env, "json");
    lapi_open_tagotip(L);
    lua_setfield(L, env, "tagotip");
    lapi_push_env(L, vars, nvars);
    lua_setfield(L, env, "env");
    lua_pushcfunction(L, lapi_devices);
    lua_setfield(L, env, "devices");
    lua_pushcfunction(L, lapi_aggregate);
    lua_setfield(L, env, "aggregate");
    lua_pushcfunction(L, lapi_delete_data);
    lua_setfield(L, env, "delete_data");
}

void lapi_push_globals(lua_State *L, const struct env_var *env, size_t nenv)
{
    lua_newtable(L);
    int t = lua_gettop(L);
    push_stdlib(L, t);
    push_host_api(L, t, env, nenv);
}
