/*
 * host.c - the Lua host's core: one sandboxed Lua state per analysis (see
 * host.h). The names scripts see are in the lapi_*.c files (see lapi.h).
 *
 * Each analysis owns a struct sandbox: a lua_State made with lua_newstate()
 * and a capped allocator, with an instruction-count hook installed before
 * anything else runs and never removed (coroutines inherit it). The script is
 * compiled as text only and its chunk gets an allow-list table as _ENV
 * (lapi_globals.c).
 *
 * Limits are per call: the hook adds HOOK_STEP to a budget shared by every
 * thread of the state; once it is spent, or once the allocator has refused
 * memory for good, the sandbox is "tripped": every later hook event raises an
 * error again with a count of 1, so pcall cannot swallow the kill, and the
 * host reports SP_ERR_TIMEOUT / SP_ERR_NOMEM even if the script caught the
 * error. A tripped state is discarded and rebuilt from the kept source text
 * before the analysis is used again. C functions of the host that can do
 * much work in one call charge it to the budget (sandbox_charge).
 *
 * The hook cannot interrupt one C function: string.rep and table.move are
 * bounded (lapi_globals.c), but a crafted Lua pattern can backtrack for
 * minutes on a short subject, and a bug could loop in C. That is not this
 * file's to stop: the daemon runs hosts only in a worker process
 * (worker.c), and the pool (pool.c) kills a worker that overruns a
 * message's wall-clock budget (lua_timeout_ms, or the analysis's
 * limits.timeout_ms), fails that message with SP_ERR_TIMEOUT and starts a
 * new one; a worker that dies is blamed on the message it was running only
 * if that message kills a fresh worker too.
 *
 * Every Lua API call that may raise (allocation) runs inside lua_pcall of a
 * C function; anything that function malloc()s is owned by a context struct
 * the caller frees, so a longjmp never leaks. handle()'s result is read with
 * raw access only (lapi_record.c), so user metamethods never run in the host.
 *
 * Not thread-safe: one host per thread.
 */
#include "host.h"
#include "base/errors.h"

#include <lauxlib.h>
#include <lua.h>

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/aname.h"
#include "base/route.h"
#include "base/sp_limits.h"
#include "host_decl.h"
#include "lapi.h"
#include "sealpipe.h"

#define HOOK_STEP 1000 /* VM instructions between hook events */

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
    unsigned handlers;      /* HOST_BIT of each handler declared */
    char *schedule;         /* NULL: none */
    unsigned events;        /* HOST_BIT of each event in `on` */
    int64_t offline_after_ms;
    char *when;         /* JSON text, NULL: none */
    char *scope;        /* JSON text, NULL: every device */
    char **webhooks;    /* the `webhooks` list (lapi_webhook.c) */
    size_t nwebhooks;   /* entries in it */
    struct sandbox *sb; /* NULL: discarded after a limit trip, rebuilt on next use */
};

struct host {
    struct host_limits lim;
    struct analysis **v; /* sorted by name */
    size_t n, cap;
    host_query_fn qfn;
    void *qctx;
    host_devices_fn dfn; /* devices{} and aggregate{} (host_set_reads) */
    host_aggregate_fn gfn;
    void *rctx;
};

void sandbox_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

struct sandbox *sandbox_of(lua_State *L)
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
void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
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
int sandbox_charge(lua_State *L, size_t units)
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
        sandbox_seterr(err, errlen, "%s", lua_tostring(L, -1));
    else
        sandbox_seterr(err, errlen, "(error object is a %s value)", luaL_typename(L, -1));
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */
/* ------------------------------------------------------------------------ */

/* Protected: builds the environment, compiles and runs the chunk. */
static int boot_p(lua_State *L)
{
    struct boot *bt = lua_touserdata(L, 1);
    char chunkname[ANAME_MAX + 8];

    lua_pushcfunction(L, msgh);
    int h = lua_gettop(L);
    lapi_push_globals(L, bt->env, bt->nenv);
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
    bt->code = host_decl_read(L, lua_gettop(L), bt);
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
    sb->L = lua_newstate(sandbox_alloc, sb);
    if (!sb->L) {
        free(sb);
        sandbox_seterr(bt->err, bt->errlen, "%s.lua: cannot create a Lua state", bt->name);
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
        sandbox_seterr(bt->err, bt->errlen,
                       "%s.lua: instruction limit (%llu) exceeded while loading", bt->name,
                       (unsigned long long)lim->instructions);
    else if (rc == SP_ERR_NOMEM)
        sandbox_seterr(bt->err, bt->errlen,
                       "%s.lua: memory limit (%zu bytes) exceeded while loading", bt->name,
                       lim->memory);
    else if (st != LUA_OK)
        copy_lua_error(sb->L, bt->err, bt->errlen);
    if (!rc) {
        /* From now on the analysis's own memory limit applies. */
        lua_settop(sb->L, 0);
        sb->mem_limit = bt->keep ? bt->keep->memory : bt->lim.memory;
        if (sb->mem_used > sb->mem_limit)
            lua_gc(sb->L, LUA_GCCOLLECT);
        if (sb->mem_used > sb->mem_limit) {
            sandbox_seterr(
                bt->err, bt->errlen,
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
    lapi_env_free(a->env, a->nenv);
    free_topics(a->topics, a->ntopics);
    free_topics(a->webhooks, a->nwebhooks);
    free(a->schedule);
    free(a->when);
    free(a->scope);
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

/* What host_load_env checks before it builds anything. */
static int load_check(const struct host *h, const char *name, size_t len, char *err, size_t errlen)
{
    if (!name || !aname_valid(name, strlen(name))) {
        sandbox_seterr(err, errlen, "bad analysis name (letters, digits, '_' and '-', 1-%d bytes)",
                       ANAME_MAX);
        return SP_ERR_INVAL;
    }
    if (len > h->lim.script_size) {
        sandbox_seterr(err, errlen, "%s.lua: %zu bytes, the limit is %zu", name, len,
                       h->lim.script_size);
        return SP_ERR_TOOLARGE;
    }
    return 0;
}

/*
 * The analysis a successful build (bt, *sb) makes, with a copy of its
 * source. Takes ownership of *sb, bt's topics and *env (and clears them);
 * NULL when out of memory, having taken nothing.
 */
static struct analysis *analysis_new(struct boot *bt, struct sandbox **sb, struct env_var **env,
                                     size_t nenv)
{
    struct analysis *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->name = strdup(bt->name);
    a->src = malloc(bt->len ? bt->len : 1);
    if (!a->name || !a->src) {
        free(a->name);
        free(a->src);
        free(a);
        return NULL;
    }
    memcpy(a->src, bt->src, bt->len);
    a->len = bt->len;
    a->topics = bt->topics;
    a->ntopics = bt->ntopics;
    bt->topics = NULL;
    a->env = *env;
    a->nenv = nenv;
    *env = NULL;
    a->lim = bt->lim;
    a->timeout_ms = bt->timeout_ms;
    a->handlers = bt->handlers;
    a->schedule = bt->schedule;
    bt->schedule = NULL;
    a->events = bt->events;
    a->offline_after_ms = bt->offline_after_ms;
    a->when = bt->when;
    a->scope = bt->scope;
    bt->when = bt->scope = NULL;
    a->webhooks = bt->webhooks;
    a->nwebhooks = bt->nwebhooks;
    bt->webhooks = NULL;
    a->sb = *sb;
    *sb = NULL;
    return a;
}

/* Puts a into h in name order, replacing the analysis of the same name.
 * Returns 0, or SP_ERR_NOMEM without taking a. */
static int host_put(struct host *h, struct analysis *a)
{
    long pos = host_search(h, a->name);
    if (pos >= 0) {
        analysis_free(h->v[pos]);
        h->v[pos] = a;
        return 0;
    }
    if (h->n == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 8;
        struct analysis **v = realloc(h->v, cap * sizeof *v);
        if (!v)
            return SP_ERR_NOMEM;
        h->v = v;
        h->cap = cap;
    }
    size_t at = (size_t)(-pos - 1);
    memmove(&h->v[at + 1], &h->v[at], (h->n - at) * sizeof *h->v);
    h->v[at] = a;
    h->n++;
    return 0;
}

int host_load_env(struct host *h, const char *name, const char *src, size_t len,
                  const char *env_json, char *err, size_t errlen)
{
    struct boot bt = {.name = name, .src = src, .len = len, .err = err, .errlen = errlen};
    struct sandbox *sb = NULL;
    struct analysis *a = NULL;
    struct env_var *env = NULL;
    size_t nenv = 0;
    char why[256] = "out of memory"; /* lapi_env_parse writes it for every other error */
    int rc;

    if (err && errlen)
        err[0] = '\0';
    rc = load_check(h, name, len, err, errlen);
    if (rc)
        return rc;
    rc = lapi_env_parse(env_json, &env, &nenv, why, sizeof why);
    if (rc) {
        sandbox_seterr(err, errlen, "%s.env: %s", name, why);
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
    a = analysis_new(&bt, &sb, &env, nenv);
    if (!a)
        goto fail;
    rc = host_put(h, a);
    if (rc)
        goto fail;
    return 0;

fail:
    if (rc == SP_ERR_NOMEM && err && errlen && !err[0])
        sandbox_seterr(err, errlen, "%s.lua: out of memory", name);
    analysis_free(a);
    sandbox_free(sb);
    free_topics(bt.topics, bt.ntopics);
    free_topics(bt.webhooks, bt.nwebhooks);
    free(bt.schedule);
    free(bt.when);
    free(bt.scope);
    lapi_env_free(env, nenv);
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
                sandbox_seterr(err, errlen, "%s.lua: topics \"%.200s\" and \"%.200s\" overlap",
                               name, topics[i], topics[j]);
                return SP_ERR_LUA;
            }
        for (size_t k = 0; k < h->n; k++) {
            const struct analysis *o = h->v[k];
            if (strcmp(o->name, name) == 0)
                continue;
            for (size_t j = 0; j < o->ntopics; j++)
                if (route_overlap(topics[i], o->topics[j])) {
                    sandbox_seterr(
                        err, errlen,
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

unsigned host_handlers(const struct host *h, size_t i)
{
    return i < h->n ? h->v[i]->handlers : 0;
}

const char *host_schedule(const struct host *h, size_t i)
{
    return i < h->n ? h->v[i]->schedule : NULL;
}

unsigned host_events(const struct host *h, size_t i)
{
    return i < h->n ? h->v[i]->events : 0;
}

int64_t host_offline_after_ms(const struct host *h, size_t i)
{
    return i < h->n ? h->v[i]->offline_after_ms : 0;
}

size_t host_webhook_count(const struct host *h, size_t i)
{
    return i < h->n ? h->v[i]->nwebhooks : 0;
}

const char *host_webhook_entry(const struct host *h, size_t i, size_t j)
{
    return i < h->n && j < h->v[i]->nwebhooks ? h->v[i]->webhooks[j] : NULL;
}

const char *host_when(const struct host *h, size_t i)
{
    return i < h->n ? h->v[i]->when : NULL;
}

const char *host_scope(const struct host *h, size_t i)
{
    return i < h->n ? h->v[i]->scope : NULL;
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

void host_set_reads(struct host *h, host_devices_fn devices, host_aggregate_fn aggregate, void *ctx)
{
    h->dfn = devices;
    h->gfn = aggregate;
    h->rctx = ctx;
}

/* ------------------------------------------------------------------------ */
/* Running a handler                                                        */
/* ------------------------------------------------------------------------ */

/* The value the handler returned, at index v: nil, one record, or a list of records. */
static int read_result(lua_State *L, struct call *c, int v)
{
    const char *fn = host_handler_name(c->msg->handler);
    char what[48];
    lua_Unsigned n = 0;

    if (lua_isnil(L, v))
        return 0;
    if (lua_type(L, v) != LUA_TTABLE) {
        sandbox_seterr(c->err, c->errlen,
                       "%s() must return nil, a record or a list of records, not %s", fn,
                       luaL_typename(L, v));
        return SP_ERR_LUA;
    }
    if (!c->msg->serial && c->msg->handler != HOST_HANDLE) {
        sandbox_seterr(c->err, c->errlen,
                       "%s() returned records, but it runs for no device: store them with "
                       "insert(records, serial)",
                       fn);
        return SP_ERR_LUA;
    }
    snprintf(what, sizeof what, "%s() returned a bad record", fn);
    c->rwhat = what;
    c->rerr = c->err;
    c->rerrlen = c->errlen;
    int rc = lapi_read_records(L, c, v, &c->records, c->lim->max_records - c->inserted, &n);
    if (rc == -1 && c->inserted)
        snprintf(c->limit, sizeof c->limit,
                 "records limit: %s() returned %llu records and inserted %zu, the limit is "
                 "%zu in all",
                 fn, (unsigned long long)n, c->inserted, c->lim->max_records);
    else if (rc == -1)
        snprintf(c->limit, sizeof c->limit,
                 "records limit: %s() returned %llu records, the limit is %zu", fn,
                 (unsigned long long)n, c->lim->max_records);
    return rc == -1 ? SP_ERR_LIMIT : rc;
}

/* Protected: pushes the argument, calls the handler with a traceback, reads the result. */
static int run_p(lua_State *L)
{
    struct call *c = lua_touserdata(L, 1);
    int handler = c->msg->handler;

    lua_pushcfunction(L, msgh);
    int h = lua_gettop(L);
    if (lua_getfield(L, LUA_REGISTRYINDEX, host_decl_registry(handler)) != LUA_TFUNCTION) {
        c->code = SP_ERR_LUA;
        sandbox_seterr(c->err, c->errlen, "the analysis has no %s function",
                       host_handler_name(handler));
        return 0;
    }
    if (handler == HOST_HANDLE)
        lapi_push_msg(L, c);
    else
        lapi_push_ctx(L, c);
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

/* Rebuilds a discarded state from the kept source and env; the topics of the first load stay. */
static int analysis_rebuild(const struct host *h, struct analysis *an, char *err, size_t errlen)
{
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
    int rc = sandbox_new(&h->lim, &bt, &an->sb);
    free_topics(bt.topics, bt.ntopics);
    free_topics(bt.webhooks, bt.nwebhooks);
    free(bt.schedule);
    free(bt.when);
    free(bt.scope);
    return rc;
}

/* Runs handle(msg) in sb under the analysis's budget; the outcome is in c. */
static void call_run(struct sandbox *sb, const struct analysis *an, struct call *c)
{
    lua_State *L = sb->L;

    c->lim = &an->lim;
    c->allow = (const char *const *)an->webhooks;
    c->nallow = an->nwebhooks;
    buf_init(&c->meta, SP_LIMIT_METADATA);
    sandbox_arm(sb, an->lim.instructions);
    sb->call = c;
    lua_pushcfunction(L, run_p);
    lua_pushlightuserdata(L, c);
    int st = lua_pcall(L, 1, 0, 0);
    sb->call = NULL;
    if (st != LUA_OK && !c->code) {
        c->code = st == LUA_ERRMEM ? SP_ERR_NOMEM : SP_ERR_LUA;
        c->lua_nomem = st == LUA_ERRMEM;
        copy_lua_error(L, c->err, c->errlen);
    }
    lua_settop(L, 0);
    buf_cleanup(&c->meta);
}

/* A tripped state is discarded whatever the script made of the error: says
 * which limit, frees the state and returns the trip. */
static int analysis_discard(struct analysis *an, char *err, size_t errlen)
{
    struct sandbox *sb = an->sb;
    int rc = sb->trip ? sb->trip : SP_ERR_NOMEM;

    if (rc == SP_ERR_TIMEOUT)
        sandbox_seterr(err, errlen, "%s.lua: instruction limit (%llu) exceeded", an->name,
                       (unsigned long long)an->lim.instructions);
    else if (sb->worker_nomem && sb->mem_used < an->lim.memory)
        sandbox_seterr(err, errlen,
                       "%s.lua: the worker process ran out of memory (all analyses' states "
                       "together); this analysis used %zu of its %zu bytes",
                       an->name, sb->mem_used, an->lim.memory);
    else
        sandbox_seterr(err, errlen, "%s.lua: memory limit (%zu bytes) exceeded", an->name,
                       an->lim.memory);
    sandbox_free(sb);
    an->sb = NULL;
    return rc;
}

int host_run(struct host *h, size_t i, const struct host_msg *m, struct arena *a,
             struct host_out *out, char *err, size_t errlen)
{
    struct call c = {
        .msg = m, .arena = a, .qfn = h->qfn, .qctx = h->qctx, .err = err, .errlen = errlen};
    int rc;

    c.dfn = h->dfn;
    c.gfn = h->gfn;
    c.rctx = h->rctx;
    if (err && errlen)
        err[0] = '\0';
    out->logs = NULL;
    out->nlogs = 0;
    out->logs_dropped = 0;
    if (i >= h->n || m->handler < 0 || m->handler >= HOST_HANDLERS) {
        sandbox_seterr(err, errlen, "no analysis %zu or handler %d", i, m->handler);
        return SP_ERR_INVAL;
    }
    struct analysis *an = h->v[i];
    if (!an->sb && (rc = analysis_rebuild(h, an, err, errlen)))
        return rc;
    call_run(an->sb, an, &c);
    out->logs = c.logs;
    out->nlogs = c.nlogs;
    out->logs_dropped = c.logs_dropped;
    if (sandbox_tripped(an->sb) || c.lua_nomem)
        return analysis_discard(an, err, errlen);
    /* A limit's error that ended handle() ("t.lua:3: <limit text>", then
     * the traceback). */
    rc = c.code;
    if (rc == SP_ERR_LUA && c.limit[0] && err && strstr(err, c.limit))
        rc = SP_ERR_LIMIT;
    if (rc == SP_ERR_LIMIT)
        sandbox_seterr(err, errlen, "%s", c.limit);
    if (rc)
        return rc;
    out->records = c.records;
    out->publishes = c.pubs;
    out->npublishes = c.npubs;
    out->inserts = c.ins;
    out->ninserts = c.nins;
    out->runs = c.runs;
    out->nruns = c.nruns;
    out->webhooks = c.hooks;
    out->nwebhooks = c.nhooks;
    out->deletes = c.dels;
    out->ndeletes = c.ndels;
    return 0;
}
