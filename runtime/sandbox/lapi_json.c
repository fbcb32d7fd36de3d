/*
 * lapi_json.c - json.decode, json.encode, json.null and json.empty_array
 * (see lapi.h), on runtime/base/json.c: its reader builds the tree json.decode
 * turns into Lua values, and its writer writes json.encode's strings and
 * floats (integers are written here, exactly: json.c's writer takes
 * doubles). What is only Lua's is here: which tables are objects or arrays,
 * sorted keys, cycles, the sentinels, and refusing what JSON cannot say
 * (bytes that are not UTF-8, NaN, infinity) instead of mangling it. The
 * memory both functions hold outside Lua objects counts against the
 * sandbox's memory limit, and their work against its instruction budget, so
 * neither is a way around the limits.
 */
#include <lauxlib.h>
#include <lua.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/sp_limits.h"
#include "base/errors.h"
#include "lapi.h"
#include "sealpipe.h"

#define JSON_DECODE_MAX (1u << 20)                    /* bytes json.decode accepts */
#define JSON_ENCODE_MAX (1u << 20)                    /* bytes json.encode may produce */
#define JSON_STACK      (3 * SP_LIMIT_JSON_DEPTH + 8) /* Lua stack slots json needs */
/*
 * Work charged to the instruction budget (see sandbox_charge), measured so
 * that a budget's worth takes about as long as the same budget of plain Lua
 * (within about 2x): per value json.encode writes, per object key it sorts
 * (times log2 of the key count), per byte of JSON text, per 8 bytes of parse
 * tree.
 */
#define CHARGE_JSON_VALUE 16
#define CHARGE_JSON_KEY   8
#define CHARGE_TREE_BYTES 8

#define REG_JSON_EMPTY "sealpipe.json_empty" /* json.empty_array, a unique userdata */
#define REG_SCRATCH    "sealpipe.scratch"    /* metatable of struct scratch userdata */

/*
 * Memory a json function holds outside Lua objects while it runs: the parse
 * tree of json.decode, the output and the key list of json.encode. It lives
 * in a userdata whose __gc frees it, so an error raised half-way (only a
 * memory error can be: both functions check the Lua stack before they start)
 * leaks nothing; on the normal paths it is released at once. keys are
 * allocated through sandbox_alloc, so they count against the memory limit
 * like any Lua object. The arena and the output buffer (json.c's reader and
 * writer, which allocate with malloc) are charged to mem_used by hand while
 * they live: the tree and the tables built from it must fit in the limit
 * together, and so must the text json.encode writes.
 */
struct keyref {
    const char *s; /* a key string of the table being written: alive while it is */
    size_t n;
};

struct scratch {
    struct sandbox *sb; /* NULL once released */
    struct arena arena;
    size_t charged;     /* bytes of the arena added to sb->mem_used */
    struct buf out;     /* json.encode's text, at most JSON_ENCODE_MAX bytes */
    size_t out_charged; /* bytes of out's allocation added to sb->mem_used */
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
    buf_cleanup(&s->out);
    sb->mem_used -= s->out_charged;
    if (s->keys)
        (void)sandbox_alloc(sb, s->keys, s->keycap * sizeof *s->keys, 0);
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
    buf_init(&s->out, JSON_ENCODE_MAX);
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
    void *np = sandbox_alloc(sb, *p, *p ? *cap * sz : 0, ncap * sz);
    if (!np) {
        if (!sb->trip)
            sb->trip = SP_ERR_NOMEM; /* a refusal nobody retries: the state is done */
        return -1;
    }
    *p = np;
    *cap = ncap;
    return 0;
}

static int lapi_json_decode(lua_State *L)
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
    lapi_push_json(L, j, null_idx);
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

/* Memory that refusal would have been a trip for: nobody retries, the state is done. */
static int enc_nomem(struct enc *e)
{
    struct sandbox *sb = e->s->sb;
    if (!sb->trip)
        sb->trip = SP_ERR_NOMEM;
    return enc_fail(e, "not enough memory");
}

/*
 * The outcome of a write into the output (an SP_ERR_ code of struct buf):
 * 0, or -1 with e->err set. The buffer's growth is charged to the memory
 * limit as if the state's allocator had made it; growth that does not fit
 * trips the state, as a refusal of sandbox_alloc would.
 */
static int enc_wrote(struct enc *e, int rc)
{
    struct scratch *s = e->s;
    struct sandbox *sb = s->sb;

    if (rc == SP_ERR_TOOLARGE) {
        snprintf(e->err, sizeof e->err, "json.encode: output larger than %d bytes",
                 (int)JSON_ENCODE_MAX);
        return -1;
    }
    if (rc == SP_ERR_NOMEM)
        sb->worker_nomem = 1; /* the process, not this state's limit */
    if (rc)
        return enc_nomem(e);
    size_t grown = s->out.cap - s->out_charged;
    if (grown > (sb->mem_used < sb->mem_limit ? sb->mem_limit - sb->mem_used : 0))
        return enc_nomem(e);
    sb->mem_used += grown;
    s->out_charged = s->out.cap;
    return 0;
}

static int enc_put(struct enc *e, const char *p, size_t n)
{
    return enc_wrote(e, buf_append(&e->s->out, p, n));
}

/* A UTF-8 string as a JSON string literal; other bytes are refused, not mangled. */
static int enc_string(struct enc *e, const char *s, size_t n)
{
    if (!sp__utf8_valid(s, n))
        return enc_fail(e, "string is not valid UTF-8 (use hex or base64 for bytes)");
    return enc_wrote(e, json_write_string(&e->s->out, s, n));
}

/* Integers exactly (all 64 bits); floats as json.c writes them, but NaN and
 * infinity are an error rather than null. */
static int enc_number(struct enc *e, int idx)
{
    if (lua_isinteger(e->L, idx)) {
        char tmp[24];
        int n = snprintf(tmp, sizeof tmp, "%lld", (long long)lua_tointeger(e->L, idx));
        return enc_put(e, tmp, (size_t)n);
    }
    double v = lua_tonumber(e->L, idx);
    if (!isfinite(v))
        return enc_fail(e, "NaN and infinity have no JSON form");
    return enc_wrote(e, json_write_number(&e->s->out, v));
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

int lapi_json_encode(lua_State *L)
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
    (void)sandbox_charge(L, e.s->out.len);
    if (rc) {
        scratch_release(e.s);
        luaL_pushfail(L);
        lua_pushstring(L, e.err);
        return 2;
    }
    lua_pushlstring(L, e.s->out.p ? e.s->out.p : "", e.s->out.len);
    scratch_release(e.s);
    return 1;
}

/*
 * Pushes the tree j. null_idx is the stack index of the value JSON null
 * becomes (json.null), or 0 for nil. Numbers that are integral and in range
 * become integers. Depth is bounded by the JSON reader; each level checks
 * the Lua stack it needs.
 */
void lapi_push_json(lua_State *L, const struct json *j, int null_idx)
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
            lapi_push_json(L, m, null_idx);
            lua_rawseti(L, -2, i++);
        }
        break;
    }
    case JSON_OBJECT:
        luaL_checkstack(L, 4, "json");
        lua_createtable(L, 0, j->len < INT_MAX ? (int)j->len : 0);
        for (const struct json *m = j->child; m; m = m->next) {
            lua_pushlstring(L, m->key, m->keylen);
            lapi_push_json(L, m, null_idx);
            lua_rawset(L, -3);
        }
        break;
    }
}

/*
 * The json table, and what its functions find in the registry: the two
 * sentinels (full userdata, so each state has its own and scripts cannot
 * change them) and the scratch metatable.
 */
void lapi_open_json(lua_State *L)
{
    static const luaL_Reg fns[] = {
        {"decode", lapi_json_decode}, {"encode", lapi_json_encode}, {NULL, NULL}};

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
