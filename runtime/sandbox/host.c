/*
 * host.c - the Lua host: one sandboxed Lua state per analysis (see host.h).
 *
 * Each analysis owns a struct sandbox: a lua_State made with lua_newstate()
 * and a capped allocator, with an instruction-count hook installed before
 * anything else runs and never removed (coroutines inherit it). The script is
 * compiled as text only and its chunk gets an allow-list table as _ENV; the
 * real string library table is sanitized too, because the string metatable's
 * __index is that table and s:rep() reaches it without _ENV.
 *
 * Limits are per call: the hook adds HOOK_STEP to a budget shared by every
 * thread of the state; once it is spent, or once the allocator has refused
 * memory for good, the sandbox is "tripped": every later hook event raises an
 * error again with a count of 1, so pcall cannot swallow the kill, and the
 * host reports SP_ERR_TIMEOUT / SP_ERR_NOMEM even if the script caught the
 * error. A tripped state is discarded and rebuilt from the kept source text
 * before the analysis is used again.
 *
 * Every Lua API call that may raise (allocation) runs inside lua_pcall of a
 * C function; anything that function malloc()s is owned by a context struct
 * the caller frees, so a longjmp never leaks. Results are read with raw access
 * only (lua_next, lua_rawget), so user metamethods never run in the host.
 *
 * Known gap: C functions are not interruptible by the hook. string.rep and
 * table.move are bounded here; the pattern functions (find, match, gmatch,
 * gsub) only get their subject bounded to PATTERN_SUBJECT_MAX, which does not
 * stop a crafted pattern from backtracking for minutes. Only running scripts
 * in a killable worker process closes that; host.h is written so it can.
 *
 * Not thread-safe: one host per thread.
 */
#include "host.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../buf.h"
#include "../json.h"
#include "../sp_limits.h"
#include "sealpipe.h"

#define HOOK_STEP           1000        /* VM instructions between hook events */
#define REP_MAX             (1u << 20)  /* bytes string.rep may produce */
#define MOVE_MAX            1000000     /* elements one table.move may copy */
#define PATTERN_SUBJECT_MAX (64 * 1024) /* bytes of a pattern function's subject */
#define NAME_MAX_LEN        64          /* bytes of an analysis name */
#define TIME_MS_MAX         9.2e18      /* keeps a double inside int64_t */

/* One Lua state and the accounting its allocator and hook share. */
struct sandbox {
    lua_State *L;
    size_t mem_used;
    size_t mem_limit;
    uint64_t steps; /* instructions used by the current call (HOOK_STEP granularity) */
    uint64_t step_limit;
    int trip; /* 0, SP_ERR_TIMEOUT or SP_ERR_NOMEM: sticky until the state is freed */
    /* A refused growth Lua may retry after an emergency collection. */
    int refused;
    const void *refused_ptr;
    size_t refused_osize, refused_nsize;
    struct call *call; /* the host_run in progress, NULL at load time */
};

struct analysis {
    char *name;
    char *src;
    size_t len;
    char **topics;
    size_t ntopics;
    struct sandbox *sb; /* NULL: discarded after a limit trip, rebuilt on next use */
};

struct host {
    struct host_limits lim;
    struct analysis **v; /* sorted by name */
    size_t n, cap;
};

/* Context of one host_run: what publish() and the result reader write into. */
struct call {
    const struct host_limits *lim;
    const struct host_msg *msg;
    struct arena *arena;
    struct record_vec records;
    struct host_publish *pubs;
    size_t npubs, pubcap;
    struct buf meta; /* scratch for metadata JSON; freed by host_run */
    int code;        /* result decided inside the protected call */
    int lua_nomem;   /* handle() failed with a Lua memory error */
    char *err;
    size_t errlen;
};

/* Context of one sandbox build: the declaration read from the script. */
struct boot {
    const char *name;
    const char *src;
    size_t len;
    char **topics; /* SP_LIMIT_TOPICS_PER_ANALYSIS slots, freed by the caller */
    size_t ntopics;
    int code;
    char *err;
    size_t errlen;
};

static void seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static struct sandbox *sandbox_of(lua_State *L)
{
    void *ud = NULL;
    (void)lua_getallocf(L, &ud);
    return ud;
}

/* ------------------------------------------------------------------------ */
/* Allocator and hook                                                       */
/* ------------------------------------------------------------------------ */

/*
 * Growth past the cap is refused; shrinks and frees always succeed (a failed
 * shrink keeps the old, larger block). When Lua sees NULL it may run an
 * emergency collection and retry the very same request, so a refusal only
 * counts as a trip once the retry fails too or a different request follows.
 */
static void *sb_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct sandbox *sb = ud;
    size_t old = ptr ? osize : 0;

    if (nsize == 0) {
        free(ptr);
        sb->mem_used -= old;
        return NULL;
    }
    if (nsize > old) {
        int retry = sb->refused && sb->refused_ptr == ptr && sb->refused_osize == osize &&
                    sb->refused_nsize == nsize;
        if (sb->refused && !retry && !sb->trip)
            sb->trip = SP_ERR_NOMEM;
        sb->refused = 0;
        if (nsize - old > sb->mem_limit - sb->mem_used) {
            if (retry) {
                if (!sb->trip)
                    sb->trip = SP_ERR_NOMEM;
            } else {
                sb->refused = 1;
                sb->refused_ptr = ptr;
                sb->refused_osize = osize;
                sb->refused_nsize = nsize;
            }
            return NULL;
        }
    }
    void *p = realloc(ptr, nsize);
    if (!p && nsize > old)
        return NULL;
    /* A failed shrink keeps the old block; Lua will free it as nsize bytes. */
    sb->mem_used = sb->mem_used - old + nsize;
    return p ? p : ptr;
}

static void sb_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    struct sandbox *sb = sandbox_of(L);
    if (!sb->trip) {
        sb->steps += HOOK_STEP;
        if (sb->steps < sb->step_limit)
            return;
        sb->trip = SP_ERR_TIMEOUT;
    }
    /* From now on every instruction of every thread we can reach raises. */
    lua_sethook(L, sb_hook, LUA_MASKCOUNT, 1);
    if (L != sb->L)
        lua_sethook(sb->L, sb_hook, LUA_MASKCOUNT, 1);
    if (sb->trip == SP_ERR_NOMEM)
        luaL_error(L, "memory limit exceeded");
    luaL_error(L, "instruction limit exceeded");
}

/* Starts a new budget for one protected run. */
static void sandbox_arm(struct sandbox *sb, uint64_t instructions)
{
    sb->steps = 0;
    sb->step_limit = instructions ? instructions : 1;
}

/* The trip of the last run, counting a refusal nobody retried. */
static int sandbox_tripped(struct sandbox *sb)
{
    if (sb->refused && !sb->trip)
        sb->trip = SP_ERR_NOMEM;
    return sb->trip;
}

/* Message handler: the error text plus a traceback. Never calls metamethods. */
static int msgh(lua_State *L)
{
    const char *msg = NULL;
    if (lua_type(L, 1) == LUA_TSTRING || lua_type(L, 1) == LUA_TNUMBER)
        msg = lua_tostring(L, 1);
    if (!msg)
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Copies the error value on top of the stack into err. */
static void copy_lua_error(lua_State *L, char *err, size_t errlen)
{
    if (lua_type(L, -1) == LUA_TSTRING)
        seterr(err, errlen, "%s", lua_tostring(L, -1));
    else
        seterr(err, errlen, "(error object is a %s value)", luaL_typename(L, -1));
}

/* ------------------------------------------------------------------------ */
/* Bounded replacements for library functions                               */
/* ------------------------------------------------------------------------ */

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

/* find, match, gmatch, gsub: bound the subject (see the top of this file). */
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

static int print_ignore(lua_State *L)
{
    (void)L;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* hex and base64                                                           */
/* ------------------------------------------------------------------------ */

static int hex_encode(lua_State *L)
{
    static const char digits[] = "0123456789abcdef";
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, 2 * n);
    for (size_t i = 0; i < n; i++) {
        p[2 * i] = digits[s[i] >> 4];
        p[2 * i + 1] = digits[s[i] & 15];
    }
    luaL_pushresultsize(&b, 2 * n);
    return 1;
}

static int hex_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    if (n % 2) {
        luaL_pushfail(L);
        lua_pushliteral(L, "hex.decode: odd length");
        return 2;
    }
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, n / 2);
    for (size_t i = 0; i < n; i += 2) {
        int hi = sp_hex_digit((unsigned char)s[i]), lo = sp_hex_digit((unsigned char)s[i + 1]);
        if (hi < 0 || lo < 0) {
            luaL_pushresultsize(&b, 0);
            luaL_pushfail(L);
            lua_pushfstring(L, "hex.decode: invalid character at %d", (int)(i + 1 + (hi >= 0)));
            return 2;
        }
        p[i / 2] = (char)(hi << 4 | lo);
    }
    luaL_pushresultsize(&b, n / 2);
    return 1;
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_encode(lua_State *L)
{
    size_t n;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &n);
    size_t out = (n + 2) / 3 * 4, o = 0;
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, out);
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n)
            v |= s[i + 2];
        p[o++] = b64chars[v >> 18 & 63];
        p[o++] = b64chars[v >> 12 & 63];
        p[o++] = i + 1 < n ? b64chars[v >> 6 & 63] : '=';
        p[o++] = i + 2 < n ? b64chars[v & 63] : '=';
    }
    luaL_pushresultsize(&b, out);
    return 1;
}

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Standard or URL-safe alphabet; padding optional but correct when present. */
static int b64_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n);
    size_t pad = 0;
    while (pad < 2 && n > pad && s[n - 1 - pad] == '=')
        pad++;
    size_t data = n - pad;
    if (data % 4 == 1 || (pad && n % 4)) {
        luaL_pushfail(L);
        lua_pushliteral(L, "base64.decode: bad length");
        return 2;
    }
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, data / 4 * 3 + 2);
    uint32_t acc = 0;
    size_t o = 0;
    for (size_t i = 0; i < data; i++) {
        int v = b64val((unsigned char)s[i]);
        if (v < 0) {
            luaL_pushresultsize(&b, 0);
            luaL_pushfail(L);
            lua_pushfstring(L, "base64.decode: invalid character at %d", (int)(i + 1));
            return 2;
        }
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            p[o++] = (char)(acc >> 16);
            p[o++] = (char)(acc >> 8);
            p[o++] = (char)acc;
            acc = 0;
        }
    }
    if (data % 4 == 2) {
        p[o++] = (char)(acc >> 4);
    } else if (data % 4 == 3) {
        p[o++] = (char)(acc >> 10);
        p[o++] = (char)(acc >> 2);
    }
    luaL_pushresultsize(&b, o);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* publish()                                                                */
/* ------------------------------------------------------------------------ */

static int publish(lua_State *L)
{
    struct sandbox *sb = sandbox_of(L);
    struct call *c = sb->call;
    size_t tl, pl;
    const char *topic = luaL_checklstring(L, 1, &tl);
    const char *payload = luaL_checklstring(L, 2, &pl);
    lua_Integer qos = 0;
    int retain = 0;

    if (!c)
        return luaL_error(L, "publish: only available while handle() runs");
    if (tl == 0 || tl > SP_LIMIT_TOPIC || memchr(topic, '\0', tl) || strpbrk(topic, "+#") ||
        topic[0] == '$' || !utf8_valid(topic, tl))
        return luaL_argerror(L, 1, "a non-empty topic without wildcards or a leading '$'");
    if (pl > SP_LIMIT_PAYLOAD)
        return luaL_argerror(L, 2, "payload too large");
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
    }
    if (c->npubs >= c->lim->max_publishes)
        return luaL_error(L, "publish: more than %d messages in one call",
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
    p->qos = (int)qos;
    p->retain = retain;
    c->npubs++;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The environment                                                          */
/* ------------------------------------------------------------------------ */

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
static const char XPCALL_LUA[] = "local pcall, pack, unpack = ...\n"
                                 "return function(f, msgh, ...)\n"
                                 "  local r = pack(pcall(f, ...))\n"
                                 "  if r[1] then return unpack(r, 1, r.n) end\n"
                                 "  local _, v = pcall(msgh, r[2])\n"
                                 "  return false, v\n"
                                 "end\n";

/* Leaves the xpcall replacement on the stack; base and table libs at b, t. */
static void push_xpcall(lua_State *L, int b, int t)
{
    if (luaL_loadbufferx(L, XPCALL_LUA, sizeof XPCALL_LUA - 1, "=xpcall", "t") != LUA_OK)
        lua_error(L);
    lua_pushnil(L); /* it reads no globals; make sure it cannot */
    lua_setupvalue(L, -2, 1);
    lua_getfield(L, b, "pcall");
    lua_getfield(L, t, "pack");
    lua_getfield(L, t, "unpack");
    lua_call(L, 3, 1);
}

static void open_lib(lua_State *L, const char *name, lua_CFunction open)
{
    luaL_requiref(L, name, open, 0);
}

/*
 * Builds the allow-list environment and leaves it on top of the stack.
 * Anything not copied here is unreachable from the script: the globals table
 * the base library filled stays in the registry only.
 */
static void push_env(lua_State *L)
{
    static const char *const base[] = {
        "assert", "error",  "ipairs", "next",     "pairs",    "pcall", "rawequal", "rawlen",
        "rawget", "rawset", "select", "tonumber", "tostring", "type",  "_VERSION", NULL};
    static const char *const tab[] = {"concat", "insert", "pack", "remove",
                                      "sort",   "unpack", "move", NULL};
    static const char *const os[] = {"time", "clock", "date", NULL};
    static const char *const co[] = {"create", "isyieldable", "resume", "running",
                                     "status", "wrap",        "yield",  NULL};
    static const luaL_Reg hex[] = {{"encode", hex_encode}, {"decode", hex_decode}, {NULL, NULL}};
    static const luaL_Reg b64[] = {{"encode", b64_encode}, {"decode", b64_decode}, {NULL, NULL}};

    lua_newtable(L);
    int env = lua_gettop(L);

    open_lib(L, LUA_GNAME, luaopen_base);
    copy_fields(L, env, -1, base);
    open_lib(L, LUA_TABLIBNAME, luaopen_table);
    push_xpcall(L, lua_gettop(L) - 1, lua_gettop(L));
    lua_setfield(L, env, "xpcall");
    lua_pop(L, 2);
    lua_pushcfunction(L, print_ignore);
    lua_setfield(L, env, "print");

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

    luaL_newlib(L, hex);
    lua_setfield(L, env, "hex");
    luaL_newlib(L, b64);
    lua_setfield(L, env, "base64");
    lua_pushcfunction(L, publish);
    lua_setfield(L, env, "publish");
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */
/* ------------------------------------------------------------------------ */

static int name_valid(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > NAME_MAX_LEN)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
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
    if (memchr(f, '\0', n) || !utf8_valid(f, n))
        return "must be UTF-8 text without NUL";
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

/* Reads the declaration table at index d into the boot context. */
static int read_declaration(lua_State *L, int d, struct boot *bt)
{
    if (lua_type(L, d) != LUA_TTABLE) {
        seterr(bt->err, bt->errlen, "%s.lua: must return a table {topics = ..., handle = ...}",
               bt->name);
        return SP_ERR_LUA;
    }
    lua_pushliteral(L, "handle");
    lua_rawget(L, d);
    if (lua_type(L, -1) != LUA_TFUNCTION) {
        seterr(bt->err, bt->errlen, "%s.lua: the returned table has no handle function", bt->name);
        return SP_ERR_LUA;
    }
    lua_setfield(L, LUA_REGISTRYINDEX, "sealpipe.handle");

    lua_pushliteral(L, "topics");
    lua_rawget(L, d);
    int t = lua_gettop(L);
    if (lua_isnil(L, t))
        return 0;
    if (lua_type(L, t) != LUA_TTABLE) {
        seterr(bt->err, bt->errlen, "%s.lua: topics must be a list of strings", bt->name);
        return SP_ERR_LUA;
    }
    lua_Unsigned n = lua_rawlen(L, t);
    if (n > SP_LIMIT_TOPICS_PER_ANALYSIS) {
        seterr(bt->err, bt->errlen, "%s.lua: more than %d topics", bt->name,
               SP_LIMIT_TOPICS_PER_ANALYSIS);
        return SP_ERR_LUA;
    }
    for (lua_Unsigned i = 1; i <= n; i++) {
        size_t fl;
        if (lua_rawgeti(L, t, (lua_Integer)i) != LUA_TSTRING) {
            seterr(bt->err, bt->errlen, "%s.lua: topics[%d] is not a string", bt->name, (int)i);
            return SP_ERR_LUA;
        }
        const char *f = lua_tolstring(L, -1, &fl);
        const char *why = filter_check(f, fl);
        if (why) {
            seterr(bt->err, bt->errlen, "%s.lua: topics[%d] \"%.200s\" %s", bt->name, (int)i, f,
                   why);
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

/* Protected: builds the environment, compiles and runs the chunk. */
static int boot_p(lua_State *L)
{
    struct boot *bt = lua_touserdata(L, 1);
    char chunkname[NAME_MAX_LEN + 8];

    lua_pushcfunction(L, msgh);
    int h = lua_gettop(L);
    push_env(L);
    int env = lua_gettop(L);

    snprintf(chunkname, sizeof chunkname, "=%s.lua", bt->name);
    int st = luaL_loadbufferx(L, bt->src, bt->len, chunkname, "t");
    if (st != LUA_OK) {
        bt->code = st == LUA_ERRMEM ? SP_ERR_NOMEM : SP_ERR_LUA;
        copy_lua_error(L, bt->err, bt->errlen);
        return 0;
    }
    lua_pushvalue(L, env);
    if (!lua_setupvalue(L, -2, 1))
        lua_pop(L, 1); /* a chunk always has _ENV; be safe anyway */
    st = lua_pcall(L, 0, 1, h);
    if (st != LUA_OK) {
        bt->code = st == LUA_ERRMEM ? SP_ERR_NOMEM : SP_ERR_LUA;
        copy_lua_error(L, bt->err, bt->errlen);
        return 0;
    }
    bt->code = read_declaration(L, lua_gettop(L), bt);
    return 0;
}

static void sandbox_free(struct sandbox *sb)
{
    if (!sb)
        return;
    if (sb->L)
        lua_close(sb->L);
    free(sb);
}

/*
 * Creates a sandbox running src. On success returns 0 with *out set and the
 * declared topics in bt; on failure frees everything but bt->topics.
 */
static int sandbox_new(const struct host_limits *lim, struct boot *bt, struct sandbox **out)
{
    struct sandbox *sb = calloc(1, sizeof *sb);
    if (!sb)
        return SP_ERR_NOMEM;
    sb->mem_limit = lim->memory;
    sb->L = lua_newstate(sb_alloc, sb);
    if (!sb->L) {
        free(sb);
        seterr(bt->err, bt->errlen, "%s.lua: cannot create a Lua state", bt->name);
        return SP_ERR_NOMEM;
    }
    /* Before any other code runs: every thread created later inherits it. */
    lua_sethook(sb->L, sb_hook, LUA_MASKCOUNT, HOOK_STEP);
    sandbox_arm(sb, lim->instructions);

    bt->code = 0;
    lua_pushcfunction(sb->L, boot_p);
    lua_pushlightuserdata(sb->L, bt);
    int st = lua_pcall(sb->L, 1, 0, 0);
    int rc = bt->code;
    if (sandbox_tripped(sb))
        rc = sb->trip;
    else if (st == LUA_ERRMEM)
        rc = SP_ERR_NOMEM;
    else if (st != LUA_OK && !rc)
        rc = SP_ERR_LUA;
    if (rc == SP_ERR_TIMEOUT)
        seterr(bt->err, bt->errlen, "%s.lua: instruction limit (%llu) exceeded while loading",
               bt->name, (unsigned long long)lim->instructions);
    else if (rc == SP_ERR_NOMEM)
        seterr(bt->err, bt->errlen, "%s.lua: memory limit (%zu bytes) exceeded while loading",
               bt->name, lim->memory);
    else if (st != LUA_OK)
        copy_lua_error(sb->L, bt->err, bt->errlen);
    if (rc) {
        sandbox_free(sb);
        return rc;
    }
    lua_settop(sb->L, 0);
    *out = sb;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Host                                                                     */
/* ------------------------------------------------------------------------ */

void host_limits_default(struct host_limits *l)
{
    l->instructions = SP_LIMIT_LUA_INSTRUCTIONS;
    l->memory = SP_LIMIT_LUA_MEMORY;
    l->script_size = SP_LIMIT_SCRIPT;
    l->max_records = SP_LIMIT_RECORDS;
    l->max_publishes = SP_LIMIT_PUBLISHES;
}

struct host *host_new(const struct host_limits *l)
{
    struct host *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    if (l)
        h->lim = *l;
    else
        host_limits_default(&h->lim);
    return h;
}

static void free_topics(char **topics, size_t n)
{
    if (!topics)
        return;
    for (size_t i = 0; i < n; i++)
        free(topics[i]);
    free(topics);
}

static void analysis_free(struct analysis *a)
{
    if (!a)
        return;
    sandbox_free(a->sb);
    free_topics(a->topics, a->ntopics);
    free(a->name);
    free(a->src);
    free(a);
}

void host_free(struct host *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++)
        analysis_free(h->v[i]);
    free(h->v);
    free(h);
}

/* Index of name, or the insertion point encoded as -(pos + 1). */
static long host_search(const struct host *h, const char *name)
{
    size_t lo = 0, hi = h->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(h->v[mid]->name, name);
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -(long)lo - 1;
}

int host_load(struct host *h, const char *name, const char *src, size_t len, char *err,
              size_t errlen)
{
    struct boot bt = {.name = name, .src = src, .len = len, .err = err, .errlen = errlen};
    struct sandbox *sb = NULL;
    struct analysis *a = NULL;
    int rc;

    if (err && errlen)
        err[0] = '\0';
    if (!name || !name_valid(name)) {
        seterr(err, errlen, "bad analysis name (letters, digits, '_' and '-', 1-%d bytes)",
               NAME_MAX_LEN);
        return SP_ERR_INVAL;
    }
    if (len > h->lim.script_size) {
        seterr(err, errlen, "%s.lua: %zu bytes, the limit is %zu", name, len, h->lim.script_size);
        return SP_ERR_TOOLARGE;
    }
    bt.topics = calloc(SP_LIMIT_TOPICS_PER_ANALYSIS, sizeof *bt.topics);
    if (!bt.topics)
        return SP_ERR_NOMEM;
    rc = sandbox_new(&h->lim, &bt, &sb);
    if (rc)
        goto fail;

    rc = SP_ERR_NOMEM;
    a = calloc(1, sizeof *a);
    if (!a)
        goto fail;
    a->name = strdup(name);
    a->src = malloc(len ? len : 1);
    if (!a->name || !a->src)
        goto fail;
    memcpy(a->src, src, len);
    a->len = len;
    a->topics = bt.topics;
    a->ntopics = bt.ntopics;
    bt.topics = NULL;
    a->sb = sb;
    sb = NULL;

    long pos = host_search(h, name);
    if (pos >= 0) {
        analysis_free(h->v[pos]);
        h->v[pos] = a;
        return 0;
    }
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 8;
        struct analysis **v = realloc(h->v, cap * sizeof *v);
        if (!v)
            goto fail;
        h->v = v;
        h->cap = cap;
    }
    size_t at = (size_t)(-pos - 1);
    memmove(&h->v[at + 1], &h->v[at], (h->n - at) * sizeof *h->v);
    h->v[at] = a;
    h->n++;
    return 0;

fail:
    if (rc == SP_ERR_NOMEM && err && errlen && !err[0])
        seterr(err, errlen, "%s.lua: out of memory", name);
    analysis_free(a);
    sandbox_free(sb);
    free_topics(bt.topics, bt.ntopics);
    return rc;
}

int host_unload(struct host *h, const char *name)
{
    long pos = host_search(h, name);
    if (pos < 0)
        return SP_ERR_NOTFOUND;
    analysis_free(h->v[pos]);
    memmove(&h->v[pos], &h->v[pos + 1], (h->n - (size_t)pos - 1) * sizeof *h->v);
    h->n--;
    return 0;
}

size_t host_count(const struct host *h)
{
    return h->n;
}

const char *host_name(const struct host *h, size_t i)
{
    return i < h->n ? h->v[i]->name : NULL;
}

size_t host_topic_count(const struct host *h, size_t i)
{
    return i < h->n ? h->v[i]->ntopics : 0;
}

const char *host_topic(const struct host *h, size_t i, size_t j)
{
    if (i >= h->n || j >= h->v[i]->ntopics)
        return NULL;
    return h->v[i]->topics[j];
}

int host_find(const struct host *h, const char *name)
{
    long pos = host_search(h, name);
    return pos >= 0 ? (int)pos : -1;
}

/* ------------------------------------------------------------------------ */
/* msg: C to Lua                                                            */
/* ------------------------------------------------------------------------ */

static void push_json(lua_State *L, const struct json *j)
{
    switch (j->type) {
    case JSON_NULL:
        lua_pushnil(L);
        break;
    case JSON_FALSE:
    case JSON_TRUE:
        lua_pushboolean(L, j->type == JSON_TRUE);
        break;
    case JSON_NUMBER:
        if (j->number == floor(j->number) && fabs(j->number) < 9.0e15)
            lua_pushinteger(L, (lua_Integer)j->number);
        else
            lua_pushnumber(L, j->number);
        break;
    case JSON_STRING:
        lua_pushlstring(L, j->str, j->len);
        break;
    case JSON_ARRAY: {
        lua_createtable(L, (int)j->len, 0);
        lua_Integer i = 1;
        for (const struct json *m = j->child; m; m = m->next) {
            push_json(L, m); /* depth is bounded by the JSON reader */
            lua_rawseti(L, -2, i++);
        }
        break;
    }
    case JSON_OBJECT:
        lua_createtable(L, 0, (int)j->len);
        for (const struct json *m = j->child; m; m = m->next) {
            lua_pushlstring(L, m->key, m->keylen);
            push_json(L, m);
            lua_rawset(L, -3);
        }
        break;
    }
}

/* Pushes a JSON object text as a table; anything unreadable becomes {}. */
static void push_json_text(lua_State *L, struct arena *a, const char *text)
{
    struct json *j = NULL;
    if (text && json_parse(a, text, strlen(text), &j, NULL, 0) == 0 && j->type == JSON_OBJECT)
        push_json(L, j);
    else
        lua_newtable(L);
}

static void push_record(lua_State *L, struct arena *a, const struct record *r)
{
    lua_createtable(L, 0, 7);
    lua_pushstring(L, r->variable ? r->variable : "");
    lua_setfield(L, -2, "variable");
    switch (r->type) {
    case RECORD_NUMBER:
        if (r->number == floor(r->number) && fabs(r->number) < 9.0e15)
            lua_pushinteger(L, (lua_Integer)r->number);
        else
            lua_pushnumber(L, r->number);
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

static void push_msg(lua_State *L, struct call *c)
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
        lua_createtable(L, 0, 4);
        lua_pushstring(L, m->serial);
        lua_setfield(L, -2, "serial");
        lua_pushstring(L, m->device_name ? m->device_name : m->serial);
        lua_setfield(L, -2, "name");
        push_json_text(L, c->arena, m->tags_json);
        lua_setfield(L, -2, "tags");
        push_json_text(L, c->arena, m->params_json);
        lua_setfield(L, -2, "params");
        lua_setfield(L, -2, "device");
    }
    lua_createtable(L, (int)(m->nrecords < 1000000 ? m->nrecords : 0), 0);
    for (size_t i = 0; i < m->nrecords; i++) {
        push_record(L, c->arena, &m->records[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "records");
}

/* ------------------------------------------------------------------------ */
/* Results: Lua to C, raw access only                                       */
/* ------------------------------------------------------------------------ */

/* Sets c->err to "record N: <why>" and returns code. */
static int rec_fail(struct call *c, size_t idx, int code, const char *why)
{
    seterr(c->err, c->errlen, "handle() returned a bad record %zu: %s", idx, why);
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

static int add_record(lua_State *L, struct call *c, size_t idx)
{
    struct record *r = record_vec_push(c->arena, &c->records);
    if (!r) {
        if (c->records.n >= SP_LIMIT_RECORDS)
            return rec_fail(c, idx, SP_ERR_LUA, "more records than the limit");
        return rec_fail(c, idx, SP_ERR_NOMEM, "out of memory");
    }
    int rc = read_record(L, c, idx, r);
    lua_pop(L, 1);
    return rc;
}

/* The value at index v: nil, one record, or a list of records. */
static int read_result(lua_State *L, struct call *c, int v)
{
    if (lua_isnil(L, v))
        return 0;
    if (lua_type(L, v) != LUA_TTABLE) {
        seterr(c->err, c->errlen, "handle() must return nil, a record or a list of records, not %s",
               luaL_typename(L, v));
        return SP_ERR_LUA;
    }
    lua_pushliteral(L, "variable");
    int single = lua_rawget(L, v) != LUA_TNIL;
    lua_pop(L, 1);
    lua_Unsigned n = lua_rawlen(L, v);
    if (!single && n == 0) {
        lua_pushnil(L);
        single = lua_next(L, v) != 0; /* {value = 1}: a record missing its variable */
        lua_settop(L, v);
    }
    if (single) {
        lua_pushvalue(L, v);
        return add_record(L, c, 1);
    }
    if (n > c->lim->max_records) {
        seterr(c->err, c->errlen, "handle() returned %llu records, the limit is %zu",
               (unsigned long long)n, c->lim->max_records);
        return SP_ERR_LUA;
    }
    for (lua_Unsigned i = 1; i <= n; i++) {
        lua_rawgeti(L, v, (lua_Integer)i);
        int rc = add_record(L, c, (size_t)i);
        if (rc)
            return rc;
    }
    return 0;
}

/* Protected: pushes msg, calls handle(msg) with a traceback, reads the result. */
static int run_p(lua_State *L)
{
    struct call *c = lua_touserdata(L, 1);
    lua_pushcfunction(L, msgh);
    int h = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, "sealpipe.handle");
    push_msg(L, c);
    int st = lua_pcall(L, 1, 1, h);
    if (st != LUA_OK) {
        c->code = st == LUA_ERRMEM ? SP_ERR_NOMEM : SP_ERR_LUA;
        c->lua_nomem = st == LUA_ERRMEM;
        copy_lua_error(L, c->err, c->errlen);
        return 0;
    }
    c->code = read_result(L, c, lua_gettop(L));
    return 0;
}

int host_run(struct host *h, size_t i, const struct host_msg *m, struct arena *a,
             struct host_out *out, char *err, size_t errlen)
{
    struct call c = {.lim = &h->lim, .msg = m, .arena = a, .err = err, .errlen = errlen};
    int rc;

    if (err && errlen)
        err[0] = '\0';
    if (i >= h->n) {
        seterr(err, errlen, "no analysis %zu", i);
        return SP_ERR_INVAL;
    }
    struct analysis *an = h->v[i];
    if (!an->sb) {
        /* Rebuilt from the kept source; the topics of the first load stay. */
        struct boot bt = {
            .name = an->name, .src = an->src, .len = an->len, .err = err, .errlen = errlen};
        bt.topics = calloc(SP_LIMIT_TOPICS_PER_ANALYSIS, sizeof *bt.topics);
        if (!bt.topics)
            return SP_ERR_NOMEM;
        rc = sandbox_new(&h->lim, &bt, &an->sb);
        free_topics(bt.topics, bt.ntopics);
        if (rc)
            return rc;
    }
    struct sandbox *sb = an->sb;
    lua_State *L = sb->L;

    buf_init(&c.meta, SP_LIMIT_METADATA);
    sandbox_arm(sb, h->lim.instructions);
    sb->call = &c;
    lua_pushcfunction(L, run_p);
    lua_pushlightuserdata(L, &c);
    int st = lua_pcall(L, 1, 0, 0);
    sb->call = NULL;
    if (st != LUA_OK && !c.code) {
        c.code = st == LUA_ERRMEM ? SP_ERR_NOMEM : SP_ERR_LUA;
        c.lua_nomem = st == LUA_ERRMEM;
        copy_lua_error(L, err, errlen);
    }
    lua_settop(L, 0);
    buf_cleanup(&c.meta);

    /* A tripped state is discarded whatever the script made of the error. */
    rc = c.code;
    if (sandbox_tripped(sb) || c.lua_nomem) {
        rc = sb->trip ? sb->trip : SP_ERR_NOMEM;
        if (rc == SP_ERR_TIMEOUT)
            seterr(err, errlen, "%s.lua: instruction limit (%llu) exceeded", an->name,
                   (unsigned long long)h->lim.instructions);
        else
            seterr(err, errlen, "%s.lua: memory limit (%zu bytes) exceeded", an->name,
                   h->lim.memory);
        sandbox_free(sb);
        an->sb = NULL;
        return rc;
    }
    if (rc)
        return rc;
    out->records = c.records;
    out->publishes = c.pubs;
    out->npublishes = c.npubs;
    return 0;
}
