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
 * The helpers scripts get besides the Lua libraries (publish, insert, query,
 * log/print, hex, base64, json, tagotip, and the per-analysis env table) are
 * C functions in this file. Those that can do much work in one call charge it
 * to the instruction budget (sandbox_charge), and json's temporary memory
 * counts against the memory limit (struct scratch). log() lines, like
 * publishes, are collected into the call's arena for the caller.
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
#include "errors.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <limits.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../buf.h"
#include "../json.h"
#include "../route.h"
#include "../sp_limits.h"
#include "sealpipe.h"

#define HOOK_STEP           1000        /* VM instructions between hook events */
#define REP_MAX             (1u << 20)  /* bytes string.rep may produce */
#define MOVE_MAX            1000000     /* elements one table.move may copy */
#define PATTERN_SUBJECT_MAX (64 * 1024) /* bytes of a pattern function's subject */
#define NAME_MAX_LEN        64          /* bytes of an analysis name */
#define TIME_MS_MAX         9.2e18      /* keeps a double inside int64_t */
#define JSON_DECODE_MAX     (1u << 20)  /* bytes json.decode accepts */
#define JSON_ENCODE_MAX     (1u << 20)  /* bytes json.encode may produce */
#define JSON_STACK          (3 * SP_LIMIT_JSON_DEPTH + 8) /* Lua stack slots json needs */
/*
 * Work C functions charge to the instruction budget (see sandbox_charge),
 * measured so that a budget's worth takes about as long as the same budget
 * of plain Lua (within about 2x): per value json.encode writes, per object
 * key it sorts (times log2 of the key count), per byte of JSON text, per 8
 * bytes of parse tree, per TagoTiP variable.
 */
#define CHARGE_JSON_VALUE 16
#define CHARGE_JSON_KEY   8
#define CHARGE_TREE_BYTES 8
#define CHARGE_TIP_VAR    100
#define CHARGE_QUERY      1000 /* per query() call, besides per record */
#define CHARGE_QUERY_REC  100
#define MIB               (1024u * 1024u)

/* Registry fields the host keeps in every state (scripts cannot reach the registry). */
#define REG_HANDLE     "sealpipe.handle"     /* the declaration's handle function */
#define REG_JSON_NULL  "sealpipe.json_null"  /* json.null, a unique userdata */
#define REG_JSON_EMPTY "sealpipe.json_empty" /* json.empty_array, likewise */
#define REG_SCRATCH    "sealpipe.scratch"    /* metatable of struct scratch userdata */

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
    /* The process, not this state's limit, refused memory: the worker holds
     * every analysis's state in one address space. */
    int worker_nomem;
    struct call *call; /* the host_run in progress, NULL at load time */
};

/* One variable of an analysis's env, as host_load_env received it. */
struct env_var {
    char *key; /* NUL-terminated; wiped before free, as is val */
    char *val;
    size_t vlen;
};

struct analysis {
    char *name;
    char *src;
    size_t len;
    struct env_var *env; /* kept so a rebuilt state gets the same env */
    size_t nenv;
    char **topics;
    size_t ntopics;
    struct host_limits lim; /* the host's, lowered by the declaration's limits */
    int timeout_ms;         /* limits.timeout_ms, 0: none */
    struct sandbox *sb;     /* NULL: discarded after a limit trip, rebuilt on next use */
};

struct host {
    struct host_limits lim;
    struct analysis **v; /* sorted by name */
    size_t n, cap;
    host_query_fn qfn;
    void *qctx;
};

/* Context of one host_run: what publish(), insert() and the result reader write into. */
struct call {
    const struct host_limits *lim; /* the analysis's */
    const struct host_msg *msg;
    struct arena *arena;
    struct record_vec records;
    struct host_publish *pubs;
    size_t npubs, pubcap;
    struct host_insert *ins; /* HOST_MAX_INSERTS slots in the arena, once insert() is called */
    size_t nins;
    size_t inserted; /* records in ins */
    size_t nqueries;
    host_query_fn qfn;
    void *qctx;
    /* Where the record reader reports a bad record, and how it starts. */
    const char *rwhat;
    char *rerr;
    size_t rerrlen;
    struct buf meta;   /* scratch for metadata JSON; freed by host_run */
    const char **logs; /* HOST_LOG_LINES slots in the arena, once log() is called */
    size_t nlogs, logs_dropped;
    int code;      /* result decided inside the protected call */
    int lua_nomem; /* handle() failed with a Lua memory error */
    char *err;
    size_t errlen;
    char limit[256]; /* the first per-message limit that tripped ("": none) */
};

/* Context of one sandbox build: the declaration read from the script. */
struct boot {
    const char *name;
    const char *src;
    size_t len;
    const struct env_var *env;
    size_t nenv;
    char **topics; /* SP_LIMIT_TOPICS_PER_ANALYSIS slots, freed by the caller */
    size_t ntopics;
    struct host_limits lim; /* the host's, lowered by the declaration's limits */
    int timeout_ms;
    const struct host_limits *keep; /* a rebuild: the limits of the first load */
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

static void push_json(lua_State *L, const struct json *j, int null_idx);
static void push_record(lua_State *L, struct arena *a, const struct record *r);
static int read_records(lua_State *L, struct call *c, int v, struct record_vec *vec, size_t room,
                        lua_Unsigned *count);

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
    if (!p && nsize > old) {
        sb->worker_nomem = 1;
        return NULL;
    }
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

/*
 * Charges work a C function did to the instruction budget, so repeating a
 * costly call (json.encode of a huge table) runs out like a Lua loop would.
 * On a trip the hook is set to fire at the very next instruction, as sb_hook
 * does, rather than up to HOOK_STEP instructions (and as many costly calls)
 * later. Returns the trip, if any.
 */
static int sandbox_charge(lua_State *L, size_t units)
{
    struct sandbox *sb = sandbox_of(L);
    sb->steps += units;
    if (sb->steps >= sb->step_limit && !sb->trip) {
        sb->trip = SP_ERR_TIMEOUT;
        lua_sethook(L, sb_hook, LUA_MASKCOUNT, 1);
        if (L != sb->L)
            lua_sethook(sb->L, sb_hook, LUA_MASKCOUNT, 1);
    }
    return sb->trip;
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

/* Decodes n (even) hex digits into p; returns -1, or the offset of a bad digit. */
static long hex_decode_raw(const char *s, size_t n, char *p)
{
    for (size_t i = 0; i < n; i += 2) {
        int hi = sp_hex_digit((unsigned char)s[i]), lo = sp_hex_digit((unsigned char)s[i + 1]);
        if (hi < 0 || lo < 0)
            return (long)(i + (hi >= 0));
        p[i / 2] = (char)(hi << 4 | lo);
    }
    return -1;
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
    long bad = hex_decode_raw(s, n, p);
    if (bad >= 0) {
        luaL_pushresultsize(&b, 0);
        luaL_pushfail(L);
        lua_pushfstring(L, "hex.decode: invalid character at %d", (int)bad + 1);
        return 2;
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

/*
 * Bytes of base64 data in s without its padding, or (size_t)-1 for a bad
 * length. Standard or URL-safe alphabet; padding optional but correct when
 * present.
 */
static size_t b64_data_len(const char *s, size_t n)
{
    size_t pad = 0;
    while (pad < 2 && n > pad && s[n - 1 - pad] == '=')
        pad++;
    size_t data = n - pad;
    if (data % 4 == 1 || (pad && n % 4))
        return (size_t)-1;
    return data;
}

/* At most B64_OUT(data) bytes decode from data characters. */
#define B64_OUT(data) ((data) / 4 * 3 + 2)

/* Decodes data characters into p; returns -1 with *o set, or a bad character's offset. */
static long b64_decode_raw(const char *s, size_t data, char *p, size_t *o)
{
    uint32_t acc = 0;
    size_t k = 0;
    for (size_t i = 0; i < data; i++) {
        int v = b64val((unsigned char)s[i]);
        if (v < 0)
            return (long)i;
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            p[k++] = (char)(acc >> 16);
            p[k++] = (char)(acc >> 8);
            p[k++] = (char)acc;
            acc = 0;
        }
    }
    if (data % 4 == 2) {
        p[k++] = (char)(acc >> 4);
    } else if (data % 4 == 3) {
        p[k++] = (char)(acc >> 10);
        p[k++] = (char)(acc >> 2);
    }
    *o = k;
    return -1;
}

static int b64_decode(lua_State *L)
{
    size_t n, o = 0;
    const char *s = luaL_checklstring(L, 1, &n);
    size_t data = b64_data_len(s, n);
    if (data == (size_t)-1) {
        luaL_pushfail(L);
        lua_pushliteral(L, "base64.decode: bad length");
        return 2;
    }
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, B64_OUT(data));
    long bad = b64_decode_raw(s, data, p, &o);
    if (bad >= 0) {
        luaL_pushresultsize(&b, 0);
        luaL_pushfail(L);
        lua_pushfstring(L, "base64.decode: invalid character at %d", (int)bad + 1);
        return 2;
    }
    luaL_pushresultsize(&b, o);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* log() and print()                                                        */
/* ------------------------------------------------------------------------ */

/*
 * One log line being built on the C stack (so an error raised while an
 * argument is converted leaks nothing). Everything is escaped into one line
 * of valid UTF-8 without control characters, because the daemon writes it
 * into its own line-oriented log: a script must not be able to forge log
 * lines. Units (a character or an escape) are added whole; the first one that
 * does not fit ends the line with "...".
 */
struct line {
    char p[HOST_LOG_LINE_MAX];
    size_t n;
    int cut;
};

#define LINE_ROOM (HOST_LOG_LINE_MAX - sizeof "...") /* bytes before the "..." and NUL */

static void line_unit(struct line *l, const char *u, size_t n)
{
    if (l->cut)
        return;
    if (n > LINE_ROOM - l->n) {
        memcpy(l->p + l->n, "...", 3);
        l->n += 3;
        l->cut = 1;
        return;
    }
    memcpy(l->p + l->n, u, n);
    l->n += n;
}

static void line_put(struct line *l, const char *s, size_t n)
{
    for (size_t i = 0; i < n && !l->cut;) {
        unsigned char ch = (unsigned char)s[i];
        char esc[8];
        size_t k = 1;
        if (ch >= 0x80) {
            /* A valid sequence is copied whole; a stray byte is escaped. */
            k = ch >= 0xf0 ? 4 : ch >= 0xe0 ? 3 : 2;
            if (k <= n - i && sp__utf8_valid(s + i, k)) {
                line_unit(l, s + i, k);
                i += k;
                continue;
            }
            k = 1;
        }
        if (ch >= 0x20 && ch != 0x7f && ch < 0x80) {
            line_unit(l, s + i, 1);
        } else if (ch == '\n' || ch == '\t' || ch == '\r') {
            esc[0] = '\\';
            esc[1] = ch == '\n' ? 'n' : ch == '\t' ? 't' : 'r';
            line_unit(l, esc, 2);
        } else {
            snprintf(esc, sizeof esc, "\\x%02x", ch);
            line_unit(l, esc, 4);
        }
        i += k;
    }
}

/* Appends argument i as tostring() would, but never through a metamethod. */
static void line_arg(lua_State *L, struct line *l, int i)
{
    size_t n;
    const char *s;
    switch (lua_type(L, i)) {
    case LUA_TSTRING:
        s = lua_tolstring(L, i, &n);
        line_put(l, s, n);
        return;
    case LUA_TNUMBER:
        lua_pushvalue(L, i); /* convert a copy: lua_tolstring changes its argument */
        s = lua_tolstring(L, -1, &n);
        line_put(l, s, n);
        lua_pop(L, 1);
        return;
    case LUA_TNIL:
        line_put(l, "nil", 3);
        return;
    case LUA_TBOOLEAN:
        s = lua_toboolean(L, i) ? "true" : "false";
        line_put(l, s, strlen(s));
        return;
    default:
        lua_getfield(L, LUA_REGISTRYINDEX, REG_JSON_NULL);
        if (lua_rawequal(L, i, -1))
            s = lua_pushliteral(L, "json.null");
        else
            s = lua_pushfstring(L, "%s: %p", luaL_typename(L, i), lua_topointer(L, i));
        line_put(l, s, strlen(s));
        lua_pop(L, 2);
    }
}

/*
 * log(...) and print(...): one line, the arguments separated by spaces, kept
 * in the current call's output. Past HOST_LOG_LINES a call only counts as
 * dropped (and costs no formatting). At the top level there is no call and
 * the line is discarded.
 */
static int log_call(lua_State *L)
{
    struct call *c = sandbox_of(L)->call;
    struct line l;
    if (!c)
        return 0;
    if (c->nlogs >= HOST_LOG_LINES) {
        c->logs_dropped++;
        return 0;
    }
    l.n = 0;
    l.cut = 0;
    int n = lua_gettop(L);
    for (int i = 1; i <= n && !l.cut; i++) {
        if (i > 1)
            line_put(&l, " ", 1);
        line_arg(L, &l, i);
    }
    if (!c->logs)
        c->logs = arena_calloc(c->arena, HOST_LOG_LINES, sizeof *c->logs);
    const char *kept = c->logs ? arena_strndup(c->arena, l.p, l.n) : NULL;
    if (!kept) {
        c->logs_dropped++;
        return 0;
    }
    c->logs[c->nlogs++] = kept;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* json.decode and json.encode                                              */
/* ------------------------------------------------------------------------ */

/*
 * Memory a json function holds outside Lua objects while it runs: the parse
 * tree of json.decode, the output and the key list of json.encode. It lives
 * in a userdata whose __gc frees it, so an error raised half-way (only a
 * memory error can be: both functions check the Lua stack before they start)
 * leaks nothing; on the normal paths it is released at once. out and keys
 * are allocated through sb_alloc, so they count against the memory limit
 * like any Lua object. The arena (json.c allocates with malloc) is charged to
 * mem_used by hand while it lives: the tree and the tables built from it
 * must fit in the limit together.
 */
struct keyref {
    const char *s; /* a key string of the table being written: alive while it is */
    size_t n;
};

struct scratch {
    struct sandbox *sb; /* NULL once released */
    struct arena arena;
    size_t charged; /* bytes of the arena added to sb->mem_used */
    char *out;
    size_t len, cap;
    struct keyref *keys;
    size_t nkeys, keycap;
};

static void scratch_release(struct scratch *s)
{
    struct sandbox *sb = s->sb;
    if (!sb)
        return;
    arena_cleanup(&s->arena);
    sb->mem_used -= s->charged;
    if (s->out)
        (void)sb_alloc(sb, s->out, s->cap, 0);
    if (s->keys)
        (void)sb_alloc(sb, s->keys, s->keycap * sizeof *s->keys, 0);
    memset(s, 0, sizeof *s);
}

static int scratch_gc(lua_State *L)
{
    scratch_release(lua_touserdata(L, 1));
    return 0;
}

/* Pushes a new scratch userdata (raises only a memory error). */
static struct scratch *scratch_new(lua_State *L)
{
    struct scratch *s = lua_newuserdatauv(L, sizeof *s, 0);
    memset(s, 0, sizeof *s);
    luaL_setmetatable(L, REG_SCRATCH);
    s->sb = sandbox_of(L);
    return s;
}

/* Grows *p (an array of *cap elements of size sz) to hold need elements. */
static int scratch_grow(struct sandbox *sb, void **p, size_t *cap, size_t need, size_t sz)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 64;
    while (ncap < need)
        ncap *= 2;
    void *np = sb_alloc(sb, *p, *p ? *cap * sz : 0, ncap * sz);
    if (!np) {
        if (!sb->trip)
            sb->trip = SP_ERR_NOMEM; /* a refusal nobody retries: the state is done */
        return -1;
    }
    *p = np;
    *cap = ncap;
    return 0;
}

static int json_decode(lua_State *L)
{
    size_t n;
    const char *text = luaL_checklstring(L, 1, &n);
    char why[160];
    struct json *j = NULL;

    if (n > JSON_DECODE_MAX) {
        luaL_pushfail(L);
        lua_pushfstring(L, "json.decode: input larger than %d bytes", (int)JSON_DECODE_MAX);
        return 2;
    }
    luaL_checkstack(L, JSON_STACK, "json.decode");
    lua_getfield(L, LUA_REGISTRYINDEX, REG_JSON_NULL);
    int null_idx = lua_gettop(L);
    struct scratch *s = scratch_new(L);
    struct sandbox *sb = s->sb;
    arena_init(&s->arena, sb->mem_used < sb->mem_limit ? sb->mem_limit - sb->mem_used : 0);
    int rc = json_parse(&s->arena, text, n, &j, why, sizeof why);
    (void)sandbox_charge(L, n + s->arena.total / CHARGE_TREE_BYTES);
    s->charged = s->arena.total;
    sb->mem_used += s->charged;
    if (rc) {
        scratch_release(s);
        luaL_pushfail(L);
        if (rc == SP_ERR_NOMEM)
            lua_pushliteral(L, "json.decode: not enough memory");
        else
            lua_pushfstring(L, "json.decode: %s", strncmp(why, "json: ", 6) ? why : why + 6);
        return 2;
    }
    push_json(L, j, null_idx);
    scratch_release(s);
    return 1;
}

/* State of one json.encode: a failure sets err and unwinds with -1. */
struct enc {
    lua_State *L;
    struct scratch *s;
    int null_idx, empty_idx;               /* the json.null and json.empty_array sentinels */
    const void *path[SP_LIMIT_JSON_DEPTH]; /* tables being written, outermost first */
    int depth;
    char err[128];
};

static int enc_fail(struct enc *e, const char *why)
{
    snprintf(e->err, sizeof e->err, "json.encode: %s", why);
    return -1;
}

static int enc_put(struct enc *e, const char *p, size_t n)
{
    struct scratch *s = e->s;
    if (n == 0)
        return 0;
    if (n > JSON_ENCODE_MAX - s->len) {
        snprintf(e->err, sizeof e->err, "json.encode: output larger than %d bytes",
                 (int)JSON_ENCODE_MAX);
        return -1;
    }
    void *out = s->out;
    if (scratch_grow(s->sb, &out, &s->cap, s->len + n, 1))
        return enc_fail(e, "not enough memory");
    s->out = out;
    memcpy(s->out + s->len, p, n);
    s->len += n;
    return 0;
}

/* A UTF-8 string as a JSON string literal; other bytes are refused, not mangled. */
static int enc_string(struct enc *e, const char *s, size_t n)
{
    if (!sp__utf8_valid(s, n))
        return enc_fail(e, "string is not valid UTF-8 (use hex or base64 for bytes)");
    if (enc_put(e, "\"", 1))
        return -1;
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\')
            continue;
        char esc[8];
        size_t k = 2;
        esc[0] = '\\';
        switch (ch) {
        case '"':
        case '\\':
            esc[1] = (char)ch;
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            k = 6;
        }
        if (enc_put(e, s + run, i - run) || enc_put(e, esc, k))
            return -1;
        run = i + 1;
    }
    return enc_put(e, s + run, n - run) || enc_put(e, "\"", 1) ? -1 : 0;
}

static int enc_number(struct enc *e, int idx)
{
    char tmp[48];
    if (lua_isinteger(e->L, idx)) {
        snprintf(tmp, sizeof tmp, "%lld", (long long)lua_tointeger(e->L, idx));
        return enc_put(e, tmp, strlen(tmp));
    }
    double v = lua_tonumber(e->L, idx);
    if (!isfinite(v))
        return enc_fail(e, "NaN and infinity have no JSON form");
    if (v == trunc(v) && fabs(v) <= 9007199254740992.0) {
        snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    } else {
        for (int prec = 15; prec <= 17; prec++) { /* the shortest text that reads back as v */
            snprintf(tmp, sizeof tmp, "%.*g", prec, v);
            if (strtod(tmp, NULL) == v)
                break;
        }
    }
    return enc_put(e, tmp, strlen(tmp));
}

static int keyref_cmp(const void *a, const void *b)
{
    const struct keyref *x = a, *y = b;
    int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
    return c ? c : (x->n > y->n) - (x->n < y->n);
}

static int enc_value(struct enc *e, int idx);

static int enc_array(struct enc *e, int t, lua_Integer n)
{
    if (enc_put(e, "[", 1))
        return -1;
    for (lua_Integer i = 1; i <= n; i++) {
        if (i > 1 && enc_put(e, ",", 1))
            return -1;
        lua_rawgeti(e->L, t, i);
        int rc = enc_value(e, lua_gettop(e->L));
        lua_pop(e->L, 1);
        if (rc)
            return -1;
    }
    return enc_put(e, "]", 1);
}

/* Keys are written sorted, so equal tables always give equal text. */
static int enc_object(struct enc *e, int t, size_t n)
{
    lua_State *L = e->L;
    struct scratch *s = e->s;
    size_t base = s->nkeys, log2n = 1;
    while (log2n < 64 && n >> log2n)
        log2n++;
    if (sandbox_charge(L, n * CHARGE_JSON_KEY * log2n))
        return enc_fail(e, "instruction limit exceeded");
    void *keys = s->keys;
    if (scratch_grow(s->sb, &keys, &s->keycap, base + n, sizeof *s->keys))
        return enc_fail(e, "not enough memory");
    s->keys = keys;
    lua_pushnil(L);
    while (lua_next(L, t)) {
        struct keyref *k = &s->keys[s->nkeys++];
        k->s = lua_tolstring(L, -2, &k->n); /* a string key: no conversion */
        lua_pop(L, 1);
    }
    if (n > 1)
        qsort(s->keys + base, n, sizeof *s->keys, keyref_cmp);
    int rc = enc_put(e, "{", 1);
    for (size_t i = 0; i < n && !rc; i++) {
        const struct keyref *k = &s->keys[base + i];
        rc = (i && enc_put(e, ",", 1)) || enc_string(e, k->s, k->n) || enc_put(e, ":", 1);
        if (rc)
            break;
        lua_pushlstring(L, k->s, k->n);
        lua_rawget(L, t);
        rc = enc_value(e, lua_gettop(L));
        lua_pop(L, 1);
    }
    s->nkeys = base;
    return rc || enc_put(e, "}", 1) ? -1 : 0;
}

/*
 * A table is an object when every key is a string, an array when its keys are
 * exactly 1..n, and refused otherwise (a sparse list or mixed keys would lose
 * data silently). {} is an object; json.empty_array is [].
 */
static int enc_table(struct enc *e, int t)
{
    lua_State *L = e->L;
    const void *self = lua_topointer(L, t);
    size_t count = 0, strings = 0;
    lua_Integer max = 0;

    for (int i = 0; i < e->depth; i++)
        if (e->path[i] == self)
            return enc_fail(e, "table contains itself (a cycle)");
    if (e->depth >= SP_LIMIT_JSON_DEPTH)
        return enc_fail(e, "nesting deeper than the limit");
    lua_pushnil(L);
    while (lua_next(L, t)) {
        lua_pop(L, 1);
        count++;
        if (lua_type(L, -1) == LUA_TSTRING) {
            strings++;
        } else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
            if (lua_tointeger(L, -1) > max)
                max = lua_tointeger(L, -1);
        } else {
            lua_pop(L, 1);
            return enc_fail(e, "keys must be strings, or the integers 1..n of a list");
        }
    }
    if (sandbox_charge(L, count))
        return enc_fail(e, "instruction limit exceeded");
    if (strings && strings != count)
        return enc_fail(e, "a table mixes string and integer keys");
    if (!strings && count && (lua_Unsigned)max != count)
        return enc_fail(e, "a list has holes (keys are not exactly 1..n)");
    e->path[e->depth++] = self;
    int rc = strings || !count ? enc_object(e, t, count) : enc_array(e, t, max);
    e->depth--;
    return rc;
}

static int enc_value(struct enc *e, int idx)
{
    lua_State *L = e->L;
    size_t n;
    if (sandbox_charge(L, CHARGE_JSON_VALUE))
        return enc_fail(e, "instruction limit exceeded");
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
        return enc_put(e, "null", 4);
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? enc_put(e, "true", 4) : enc_put(e, "false", 5);
    case LUA_TNUMBER:
        return enc_number(e, idx);
    case LUA_TSTRING: {
        const char *s = lua_tolstring(L, idx, &n);
        return enc_string(e, s, n);
    }
    case LUA_TTABLE:
        return enc_table(e, idx);
    case LUA_TUSERDATA:
        if (lua_rawequal(L, idx, e->null_idx))
            return enc_put(e, "null", 4);
        if (lua_rawequal(L, idx, e->empty_idx))
            return enc_put(e, "[]", 2);
        /* fall through */
    default:
        snprintf(e->err, sizeof e->err, "json.encode: cannot encode a %s", luaL_typename(L, idx));
        return -1;
    }
}

static int json_encode(lua_State *L)
{
    struct enc e = {.L = L};
    luaL_checkany(L, 1);
    lua_settop(L, 1);
    luaL_checkstack(L, JSON_STACK, "json.encode");
    lua_getfield(L, LUA_REGISTRYINDEX, REG_JSON_NULL);
    lua_getfield(L, LUA_REGISTRYINDEX, REG_JSON_EMPTY);
    e.null_idx = 2;
    e.empty_idx = 3;
    e.s = scratch_new(L);
    int rc = enc_value(&e, 1);
    (void)sandbox_charge(L, e.s->len);
    if (rc) {
        scratch_release(e.s);
        luaL_pushfail(L);
        lua_pushstring(L, e.err);
        return 2;
    }
    lua_pushlstring(L, e.s->out ? e.s->out : "", e.s->len);
    scratch_release(e.s);
    return 1;
}

/* ------------------------------------------------------------------------ */
/* tagotip.parse                                                            */
/* ------------------------------------------------------------------------ */

static void push_number(lua_State *L, double d)
{
    if (d == floor(d) && fabs(d) < 9.0e15)
        lua_pushinteger(L, (lua_Integer)d);
    else
        lua_pushnumber(L, d);
}

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

/* Pushes one variable as a record table, as runtime/pipeline.c stores it. */
static int push_tip_var(lua_State *L, const struct sp_tip_body *tb, const struct sp_tip_var *v)
{
    int rc = 0;
    lua_createtable(L, 0, 8);
    lua_pushlstring(L, v->name.p, v->name.n);
    lua_setfield(L, -2, "variable");
    switch (v->type) {
    case SP_TIP_NUMBER:
        push_number(L, v->number);
        lua_setfield(L, -2, "value");
        break;
    case SP_TIP_BOOLEAN:
        lua_pushboolean(L, v->boolean);
        lua_setfield(L, -2, "value");
        break;
    case SP_TIP_LOCATION:
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
        break;
    default:
        if ((rc = push_unescaped(L, v->value)))
            return rc;
        lua_setfield(L, -2, "value");
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

/* {passthrough = "x" | "b", data = <decoded bytes>}; 0 or SP_ERR_PAYLOAD. */
static int push_passthrough(lua_State *L, const struct sp_tip_body *tb)
{
    const char *s = tb->data.p;
    size_t n = tb->data.n, o = 0;
    long bad;
    luaL_Buffer b;

    lua_createtable(L, 0, 2);
    lua_pushstring(L, tb->passthrough == 'x' ? "x" : "b");
    lua_setfield(L, -2, "passthrough");
    if (tb->passthrough == 'x') {
        if (n % 2)
            return SP_ERR_PAYLOAD;
        bad = hex_decode_raw(s, n, luaL_buffinitsize(L, &b, n / 2));
        o = n / 2;
    } else {
        size_t data = b64_data_len(s, n);
        if (data == (size_t)-1)
            return SP_ERR_PAYLOAD;
        bad = b64_decode_raw(s, data, luaL_buffinitsize(L, &b, B64_OUT(data)), &o);
    }
    luaL_pushresultsize(&b, bad >= 0 ? 0 : o);
    if (bad >= 0)
        return SP_ERR_PAYLOAD;
    lua_setfield(L, -2, "data");
    return 0;
}

/*
 * tagotip.parse(body): the SDK parser does all the checking; the body struct
 * (10 KB) is a Lua userdata, so it is counted and collected like any object.
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

/* ------------------------------------------------------------------------ */
/* env: the analysis's variables                                            */
/* ------------------------------------------------------------------------ */

static int env_name_valid(const char *k, size_t n)
{
    if (n == 0 || n > HOST_ENV_NAME_MAX || (k[0] >= '0' && k[0] <= '9'))
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = k[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_'))
            return 0;
    }
    return 1;
}

/* Values may be secrets: wiped before they are freed. */
static void env_free(struct env_var *v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++) {
        if (v[i].key)
            sodium_memzero(v[i].key, strlen(v[i].key));
        if (v[i].val)
            sodium_memzero(v[i].val, v[i].vlen);
        free(v[i].key);
        free(v[i].val);
    }
    free(v);
}

/* Wipes the decoded strings of a parsed env before its arena is freed
 * (recursion bounded by the JSON depth limit). */
static void env_wipe_tree(struct json *j)
{
    if (j->key)
        sodium_memzero((char *)j->key, j->keylen);
    if (j->type == JSON_STRING && j->str)
        sodium_memzero((char *)j->str, j->len);
    for (struct json *m = j->child; m; m = m->next)
        env_wipe_tree(m);
}

/* Checks one parsed env object and copies it into *out; 0 or an error. */
static int env_copy(const struct json *j, struct env_var **out, size_t *nout, char *err,
                    size_t errlen)
{
    if (j->type != JSON_OBJECT) {
        seterr(err, errlen, "must be a JSON object of strings");
        return SP_ERR_INVAL;
    }
    if (j->len > HOST_ENV_VARS) {
        seterr(err, errlen, "more than %d variables", HOST_ENV_VARS);
        return SP_ERR_INVAL;
    }
    struct env_var *v = calloc(j->len ? j->len : 1, sizeof *v);
    size_t n = 0;
    if (!v)
        return SP_ERR_NOMEM;
    for (const struct json *m = j->child; m; m = m->next) {
        if (!env_name_valid(m->key, m->keylen)) {
            seterr(err, errlen, "bad name \"%.64s\" (letters, digits, '_'; 1-%d bytes)", m->key,
                   HOST_ENV_NAME_MAX);
            env_free(v, n);
            return SP_ERR_INVAL;
        }
        if (m->type != JSON_STRING) {
            seterr(err, errlen, "%.64s is not a string", m->key);
            env_free(v, n);
            return SP_ERR_INVAL;
        }
        v[n].key = strdup(m->key);
        v[n].val = malloc(m->len + 1);
        v[n].vlen = m->len;
        n++;
        if (!v[n - 1].key || !v[n - 1].val) {
            env_free(v, n);
            return SP_ERR_NOMEM;
        }
        memcpy(v[n - 1].val, m->str, m->len + 1);
    }
    *out = v;
    *nout = n;
    return 0;
}

/* Parses env_json (NULL or "": no variables) into a malloc'd list. */
static int env_parse(const char *env_json, struct env_var **out, size_t *nout, char *err,
                     size_t errlen)
{
    struct arena a;
    struct json *j = NULL;
    char why[160];

    *out = NULL;
    *nout = 0;
    if (!env_json || !env_json[0])
        return 0;
    size_t len = strlen(env_json);
    if (len > HOST_ENV_MAX) {
        seterr(err, errlen, "%zu bytes, the limit is %d", len, HOST_ENV_MAX);
        return SP_ERR_TOOLARGE;
    }
    arena_init(&a, 8 * len + 64 * 1024);
    int rc = json_parse(&a, env_json, len, &j, why, sizeof why);
    if (rc == SP_ERR_PAYLOAD) {
        seterr(err, errlen, "%s", why);
        rc = SP_ERR_INVAL;
    } else if (rc == 0) {
        rc = env_copy(j, out, nout, err, errlen);
        env_wipe_tree(j);
    }
    arena_cleanup(&a);
    return rc;
}

/* Pushes a fresh `env` table: each state gets its own copy. */
static void push_env_vars(lua_State *L, const struct env_var *v, size_t n)
{
    lua_createtable(L, 0, (int)n);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, v[i].key);
        lua_pushlstring(L, v[i].val, v[i].vlen);
        lua_rawset(L, -3);
    }
}

/* ------------------------------------------------------------------------ */
/* publish()                                                                */
/* ------------------------------------------------------------------------ */

static int queue_publish(lua_State *L, struct call *c, const char *topic, size_t tl,
                         const char *payload, size_t pl, int qos, int retain, const char *seal_for,
                         size_t sl);

static int publish(lua_State *L)
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
        return luaL_error(L, "publish: only available while handle() runs");
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
    return queue_publish(L, c, topic, tl, payload, pl, (int)qos, retain, seal_for, sl);
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
        return luaL_error(L, "tagotip.command: only available while handle() runs");
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
    return queue_publish(L, c, topic, strlen(topic), frame, (size_t)n, (int)qos, 0,
                         plain ? NULL : serial, sl);
}

/* Appends one publish to the call; what publish() and tagotip.command() share. */
static int queue_publish(lua_State *L, struct call *c, const char *topic, size_t tl,
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

/* ------------------------------------------------------------------------ */
/* insert() and query()                                                     */
/* ------------------------------------------------------------------------ */

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
static int insert_call(lua_State *L)
{
    struct call *c = sandbox_of(L)->call;
    char why[512];
    lua_Unsigned n = 0;

    if (!c)
        return luaL_error(L, "insert: only available while handle() runs");
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
    int rc = read_records(L, c, 1, &in->records, room, &n);
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
static int query_call(lua_State *L)
{
    struct call *c = sandbox_of(L)->call;
    struct host_query q = {.start_ms = INT64_MIN, .stop_ms = INT64_MAX, .qty = 1};
    struct record_vec out = {0};
    char why[256] = "";

    if (!c)
        return luaL_error(L, "query: only available while handle() runs");
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
        push_record(L, c->arena, &out.v[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
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

/*
 * The json table, and what its functions find in the registry: the two
 * sentinels (full userdata, so each state has its own and scripts cannot
 * change them) and the scratch metatable.
 */
static void push_json_lib(lua_State *L)
{
    static const luaL_Reg fns[] = {{"decode", json_decode}, {"encode", json_encode}, {NULL, NULL}};

    luaL_newmetatable(L, REG_SCRATCH);
    lua_pushcfunction(L, scratch_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    luaL_newlib(L, fns);
    lua_newuserdatauv(L, 0, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, REG_JSON_NULL);
    lua_setfield(L, -2, "null");
    lua_newuserdatauv(L, 0, 0);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, REG_JSON_EMPTY);
    lua_setfield(L, -2, "empty_array");
}

/*
 * Builds the allow-list environment and leaves it on top of the stack.
 * Anything not copied here is unreachable from the script: the globals table
 * the base library filled stays in the registry only. bt gives the
 * analysis's env variables.
 */
static void push_env(lua_State *L, const struct boot *bt)
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
    static const luaL_Reg tip[] = {{"parse", tip_parse}, {"command", tip_command}, {NULL, NULL}};

    lua_newtable(L);
    int env = lua_gettop(L);

    open_lib(L, LUA_GNAME, luaopen_base);
    copy_fields(L, env, -1, base);
    open_lib(L, LUA_TABLIBNAME, luaopen_table);
    push_xpcall(L, lua_gettop(L) - 1, lua_gettop(L));
    lua_setfield(L, env, "xpcall");
    lua_pop(L, 2);
    lua_pushcfunction(L, log_call);
    lua_setfield(L, env, "print");
    lua_pushcfunction(L, log_call);
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

    luaL_newlib(L, hex);
    lua_setfield(L, env, "hex");
    luaL_newlib(L, b64);
    lua_setfield(L, env, "base64");
    lua_pushcfunction(L, publish);
    lua_setfield(L, env, "publish");
    lua_pushcfunction(L, insert_call);
    lua_setfield(L, env, "insert");
    lua_pushcfunction(L, query_call);
    lua_setfield(L, env, "query");
    push_json_lib(L);
    lua_setfield(L, env, "json");
    luaL_newlib(L, tip);
    lua_setfield(L, env, "tagotip");
    push_env_vars(L, bt->env, bt->nenv);
    lua_setfield(L, env, "env");
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
 * limits = {instructions =, memory_mb =, timeout_ms =, records =, publishes =}:
 * each a positive integer, clamped to the host's limit already in bt->lim.
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
        seterr(bt->err, bt->errlen, "%s.lua: limits must be a table, not %s", bt->name,
               luaL_typename(L, t));
        return SP_ERR_LUA;
    }
    lua_pushnil(L);
    while (lua_next(L, t)) {
        int k = 0, ok = 0;
        if (lua_type(L, -2) != LUA_TSTRING) {
            seterr(bt->err, bt->errlen, "%s.lua: limits has a key that is not a string", bt->name);
            return SP_ERR_LUA;
        }
        const char *key = lua_tostring(L, -2);
        while (keys[k] && strcmp(keys[k], key))
            k++;
        if (!keys[k]) {
            seterr(bt->err, bt->errlen,
                   "%s.lua: limits.%.64s is not a limit (instructions, memory_mb, timeout_ms, "
                   "records, publishes, publish_kb)",
                   bt->name, key);
            return SP_ERR_LUA;
        }
        lua_Integer v = lua_type(L, -1) == LUA_TNUMBER ? lua_tointegerx(L, -1, &ok) : 0;
        if (!ok || v <= 0) {
            seterr(bt->err, bt->errlen, "%s.lua: limits.%s must be a positive integer", bt->name,
                   key);
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
    lua_setfield(L, LUA_REGISTRYINDEX, REG_HANDLE);

    int rc = read_limits(L, d, bt);
    if (rc)
        return rc;

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
    push_env(L, bt);
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
    bt->lim = *lim;
    bt->timeout_ms = 0;
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
    if (!rc) {
        /* From now on the analysis's own memory limit applies. */
        lua_settop(sb->L, 0);
        sb->mem_limit = bt->keep ? bt->keep->memory : bt->lim.memory;
        if (sb->mem_used > sb->mem_limit)
            lua_gc(sb->L, LUA_GCCOLLECT);
        if (sb->mem_used > sb->mem_limit) {
            seterr(bt->err, bt->errlen,
                   "%s.lua: memory limit (%zu bytes) exceeded while loading (%zu bytes in use)",
                   bt->name, sb->mem_limit, sb->mem_used);
            rc = SP_ERR_NOMEM;
        }
    }
    if (rc) {
        sandbox_free(sb);
        return rc;
    }
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
    l->max_publish_bytes = SP_LIMIT_PAYLOAD;
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

static int topics_check_overlap(const struct host *h, const char *name, char *const *topics,
                                size_t n, char *err, size_t errlen);

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
    env_free(a->env, a->nenv);
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
    return host_load_env(h, name, src, len, NULL, err, errlen);
}

int host_load_env(struct host *h, const char *name, const char *src, size_t len,
                  const char *env_json, char *err, size_t errlen)
{
    struct boot bt = {.name = name, .src = src, .len = len, .err = err, .errlen = errlen};
    struct sandbox *sb = NULL;
    struct analysis *a = NULL;
    struct env_var *env = NULL;
    size_t nenv = 0;
    char why[256] = "out of memory"; /* env_parse writes it for every other error */
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
    rc = env_parse(env_json, &env, &nenv, why, sizeof why);
    if (rc) {
        seterr(err, errlen, "%s.env: %s", name, why);
        goto fail;
    }
    bt.env = env;
    bt.nenv = nenv;
    rc = SP_ERR_NOMEM;
    bt.topics = calloc(SP_LIMIT_TOPICS_PER_ANALYSIS, sizeof *bt.topics);
    if (!bt.topics)
        goto fail;
    rc = sandbox_new(&h->lim, &bt, &sb);
    if (rc)
        goto fail;
    rc = topics_check_overlap(h, name, bt.topics, bt.ntopics, err, errlen);
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
    a->env = env;
    a->nenv = nenv;
    env = NULL;
    a->lim = bt.lim;
    a->timeout_ms = bt.timeout_ms;
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
    env_free(env, nenv);
    return rc;
}

/*
 * A message runs exactly one analysis, so no two declared filters may
 * overlap: neither within the new declaration nor with another loaded
 * analysis (an older version of the same one does not count). Returns 0 or
 * SP_ERR_LUA with err naming both filters and both files.
 */
static int topics_check_overlap(const struct host *h, const char *name, char *const *topics,
                                size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = i + 1; j < n; j++)
            if (route_overlap(topics[i], topics[j])) {
                seterr(err, errlen, "%s.lua: topics \"%.200s\" and \"%.200s\" overlap", name,
                       topics[i], topics[j]);
                return SP_ERR_LUA;
            }
        for (size_t k = 0; k < h->n; k++) {
            const struct analysis *o = h->v[k];
            if (strcmp(o->name, name) == 0)
                continue;
            for (size_t j = 0; j < o->ntopics; j++)
                if (route_overlap(topics[i], o->topics[j])) {
                    seterr(err, errlen,
                           "%s.lua: topic \"%.200s\" overlaps \"%.200s\" of %s.lua, which is "
                           "loaded; a message runs one analysis, so filters may not overlap",
                           name, topics[i], o->topics[j], o->name);
                    return SP_ERR_LUA;
                }
        }
    }
    return 0;
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

int host_timeout_ms(const struct host *h, size_t i)
{
    return i < h->n ? h->v[i]->timeout_ms : 0;
}

void host_set_query(struct host *h, host_query_fn fn, void *ctx)
{
    h->qfn = fn;
    h->qctx = ctx;
}

/* ------------------------------------------------------------------------ */
/* msg: C to Lua                                                            */
/* ------------------------------------------------------------------------ */

/*
 * Pushes the tree j. null_idx is the stack index of the value JSON null
 * becomes (json.null), or 0 for nil. Numbers that are integral and in range
 * become integers. Depth is bounded by the JSON reader; each level checks
 * the Lua stack it needs.
 */
static void push_json(lua_State *L, const struct json *j, int null_idx)
{
    switch (j->type) {
    case JSON_NULL:
        if (null_idx)
            lua_pushvalue(L, null_idx);
        else
            lua_pushnil(L);
        break;
    case JSON_FALSE:
    case JSON_TRUE:
        lua_pushboolean(L, j->type == JSON_TRUE);
        break;
    case JSON_NUMBER:
        /* [-2^63, 2^63): every integral double there converts exactly. */
        if (j->number == floor(j->number) && j->number >= -9223372036854775808.0 &&
            j->number < 9223372036854775808.0)
            lua_pushinteger(L, (lua_Integer)j->number);
        else
            lua_pushnumber(L, j->number);
        break;
    case JSON_STRING:
        lua_pushlstring(L, j->str, j->len);
        break;
    case JSON_ARRAY: {
        luaL_checkstack(L, 4, "json");
        lua_createtable(L, j->len < INT_MAX ? (int)j->len : 0, 0);
        lua_Integer i = 1;
        for (const struct json *m = j->child; m; m = m->next) {
            push_json(L, m, null_idx);
            lua_rawseti(L, -2, i++);
        }
        break;
    }
    case JSON_OBJECT:
        luaL_checkstack(L, 4, "json");
        lua_createtable(L, 0, j->len < INT_MAX ? (int)j->len : 0);
        for (const struct json *m = j->child; m; m = m->next) {
            lua_pushlstring(L, m->key, m->keylen);
            push_json(L, m, null_idx);
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
        push_json(L, j, 0);
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
        push_number(L, r->number);
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

/* Sets c->rerr to "<rwhat> N: <why>" and returns code. */
static int rec_fail(struct call *c, size_t idx, int code, const char *why)
{
    seterr(c->rerr, c->rerrlen, "%s %zu: %s", c->rwhat, idx, why);
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
static int read_records(lua_State *L, struct call *c, int v, struct record_vec *vec, size_t room,
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

/* The value handle() returned, at index v: nil, one record, or a list of records. */
static int read_result(lua_State *L, struct call *c, int v)
{
    lua_Unsigned n = 0;
    if (lua_isnil(L, v))
        return 0;
    if (lua_type(L, v) != LUA_TTABLE) {
        seterr(c->err, c->errlen, "handle() must return nil, a record or a list of records, not %s",
               luaL_typename(L, v));
        return SP_ERR_LUA;
    }
    c->rwhat = "handle() returned a bad record";
    c->rerr = c->err;
    c->rerrlen = c->errlen;
    int rc = read_records(L, c, v, &c->records, c->lim->max_records - c->inserted, &n);
    if (rc == -1 && c->inserted)
        snprintf(c->limit, sizeof c->limit,
                 "records limit: handle() returned %llu records and inserted %zu, the limit is "
                 "%zu in all",
                 (unsigned long long)n, c->inserted, c->lim->max_records);
    else if (rc == -1)
        snprintf(c->limit, sizeof c->limit,
                 "records limit: handle() returned %llu records, the "
                 "limit is %zu",
                 (unsigned long long)n, c->lim->max_records);
    return rc == -1 ? SP_ERR_LIMIT : rc;
}

/* Protected: pushes msg, calls handle(msg) with a traceback, reads the result. */
static int run_p(lua_State *L)
{
    struct call *c = lua_touserdata(L, 1);
    lua_pushcfunction(L, msgh);
    int h = lua_gettop(L);
    lua_getfield(L, LUA_REGISTRYINDEX, REG_HANDLE);
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
    struct call c = {
        .msg = m, .arena = a, .qfn = h->qfn, .qctx = h->qctx, .err = err, .errlen = errlen};
    int rc;

    if (err && errlen)
        err[0] = '\0';
    out->logs = NULL;
    out->nlogs = 0;
    out->logs_dropped = 0;
    if (i >= h->n) {
        seterr(err, errlen, "no analysis %zu", i);
        return SP_ERR_INVAL;
    }
    struct analysis *an = h->v[i];
    if (!an->sb) {
        /* Rebuilt from the kept source and env; the topics of the first load stay. */
        struct boot bt = {.name = an->name,
                          .src = an->src,
                          .len = an->len,
                          .env = an->env,
                          .nenv = an->nenv,
                          .keep = &an->lim,
                          .err = err,
                          .errlen = errlen};
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

    c.lim = &an->lim;
    buf_init(&c.meta, SP_LIMIT_METADATA);
    sandbox_arm(sb, an->lim.instructions);
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
    out->logs = c.logs;
    out->nlogs = c.nlogs;
    out->logs_dropped = c.logs_dropped;

    /* A tripped state is discarded whatever the script made of the error. */
    rc = c.code;
    if (sandbox_tripped(sb) || c.lua_nomem) {
        rc = sb->trip ? sb->trip : SP_ERR_NOMEM;
        if (rc == SP_ERR_TIMEOUT)
            seterr(err, errlen, "%s.lua: instruction limit (%llu) exceeded", an->name,
                   (unsigned long long)an->lim.instructions);
        else if (sb->worker_nomem && sb->mem_used < an->lim.memory)
            seterr(err, errlen,
                   "%s.lua: the worker process ran out of memory (all analyses' states "
                   "together); this analysis used %zu of its %zu bytes",
                   an->name, sb->mem_used, an->lim.memory);
        else
            seterr(err, errlen, "%s.lua: memory limit (%zu bytes) exceeded", an->name,
                   an->lim.memory);
        sandbox_free(sb);
        an->sb = NULL;
        return rc;
    }
    /* A limit's error that ended handle() ("t.lua:3: <limit text>", then
     * the traceback). */
    if (rc == SP_ERR_LUA && c.limit[0] && err && strstr(err, c.limit))
        rc = SP_ERR_LIMIT;
    if (rc == SP_ERR_LIMIT)
        seterr(err, errlen, "%s", c.limit);
    if (rc)
        return rc;
    out->records = c.records;
    out->publishes = c.pubs;
    out->npublishes = c.npubs;
    out->inserts = c.ins;
    out->ninserts = c.nins;
    return 0;
}
