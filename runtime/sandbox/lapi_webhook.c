/*
 * lapi_webhook.c - webhook(url, body[, {headers = {...}, method = "POST"}])
 * and the declaration's `webhooks` allow-list (see lapi.h). A call is
 * checked here with the same functions the daemon checks it with again
 * (base/webhook_url.h) and collected into the call like publish(): the
 * worker has no network. The daemon writes it to the webhook outbox in the
 * transaction that stores the call's results, and sends it from there
 * (transport/webhooks.c), so a webhook leaves only for a committed call.
 */
#include <lauxlib.h>
#include <lua.h>

#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/webhook_url.h"
#include "lapi.h"

int lapi_read_webhooks(lua_State *L, int d, const char *name, char ***out, size_t *n, char *err,
                       size_t errlen)
{
    char why[200];
    char **v = NULL;
    int rc = SP_ERR_NOMEM;

    *out = NULL;
    *n = 0;
    lua_pushliteral(L, "webhooks");
    int type = lua_rawget(L, d);
    lua_Unsigned len = type == LUA_TTABLE ? lua_rawlen(L, -1) : 0;
    if (type == LUA_TNIL) {
        lua_pop(L, 1);
        return SP_OK;
    }
    if (type != LUA_TTABLE || len > HOST_WEBHOOK_HOSTS_MAX) {
        sandbox_seterr(err, errlen, "%s.lua: webhooks must be a list of at most %d hosts", name,
                       HOST_WEBHOOK_HOSTS_MAX);
        return SP_ERR_LUA;
    }
    if (len && !(v = calloc((size_t)len, sizeof(*v))))
        return SP_ERR_NOMEM;
    for (lua_Unsigned i = 1; i <= len; i++) {
        size_t el;
        const char *e =
            lua_rawgeti(L, -1, (lua_Integer)i) == LUA_TSTRING ? lua_tolstring(L, -1, &el) : NULL;
        if (!e || strlen(e) != el || webhook_entry_check(e, why, sizeof why)) {
            sandbox_seterr(err, errlen, "%s.lua: webhooks[%d]: %s", name, (int)i,
                           e && strlen(e) == el ? why : "not a string without NUL bytes");
            rc = SP_ERR_LUA;
            goto fail;
        }
        if (!(v[i - 1] = strdup(e)))
            goto fail;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    *out = v;
    *n = (size_t)len;
    return SP_OK;
fail:
    for (lua_Unsigned i = 0; i < len; i++)
        free(v[i]);
    free(v);
    return rc;
}

/* Sorts the call's headers by name (a Lua table has no order): the same
 * table makes the same request. */
static void sort_headers(struct host_webhook *w)
{
    for (size_t i = 1; i < w->nheaders; i++)
        for (size_t j = i; j > 0 && strcmp(w->names[j - 1], w->names[j]) > 0; j--) {
            const char *n = w->names[j], *v = w->values[j];
            w->names[j] = w->names[j - 1];
            w->values[j] = w->values[j - 1];
            w->names[j - 1] = n;
            w->values[j - 1] = v;
        }
}

/* The headers table at index t into w (strings in the call's arena). */
static void read_headers(lua_State *L, struct call *c, int t, struct host_webhook *w)
{
    char why[200];

    luaL_argcheck(L, lua_type(L, t) == LUA_TTABLE, 3, "headers must be a table {Name = \"value\"}");
    w->names = arena_calloc(c->arena, WEBHOOK_HEADERS_MAX, sizeof(*w->names));
    w->values = arena_calloc(c->arena, WEBHOOK_HEADERS_MAX, sizeof(*w->values));
    if (!w->names || !w->values)
        luaL_error(L, "webhook: out of memory");
    lua_pushnil(L);
    while (lua_next(L, t)) {
        size_t nl, vl;
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            luaL_argerror(L, 3, "headers must map names to strings");
        const char *name = lua_tolstring(L, -2, &nl), *value = lua_tolstring(L, -1, &vl);
        if (w->nheaders == WEBHOOK_HEADERS_MAX)
            luaL_error(L, "webhook: more than %d headers", WEBHOOK_HEADERS_MAX);
        if (strlen(name) != nl || strlen(value) != vl)
            luaL_error(L, "webhook: header %s has a NUL byte",
                       strlen(name) != nl ? "name" : "value");
        if (webhook_header_check(name, value, why, sizeof why))
            luaL_error(L, "%s", why);
        w->names[w->nheaders] = arena_strndup(c->arena, name, nl);
        w->values[w->nheaders] = arena_strndup(c->arena, value, vl);
        if (!w->names[w->nheaders] || !w->values[w->nheaders])
            luaL_error(L, "webhook: out of memory");
        w->nheaders++;
        lua_pop(L, 1);
    }
    sort_headers(w);
}

/* The options table at index 3 (headers, method) into w. */
static void read_options(lua_State *L, struct call *c, struct host_webhook *w)
{
    w->method = "POST";
    if (lua_isnoneornil(L, 3))
        return;
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 3)) {
        lua_pop(L, 1);
        const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (!k || (strcmp(k, "headers") && strcmp(k, "method")))
            luaL_argerror(L, 3, "unknown option (headers and method exist)");
    }
    if (lua_getfield(L, 3, "method") != LUA_TNIL) {
        const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (!m || webhook_method_check(m))
            luaL_argerror(L, 3, "method must be POST, PUT, PATCH, DELETE or GET");
        w->method = arena_strdup(c->arena, m);
        if (!w->method)
            luaL_error(L, "webhook: out of memory");
    }
    if (lua_getfield(L, 3, "headers") != LUA_TNIL)
        read_headers(L, c, lua_gettop(L), w);
}

int lapi_webhook(lua_State *L)
{
    struct call *c = sandbox_of(L)->call;
    char why[WEBHOOK_HOST_LEN + 200];
    size_t ul, bl;
    const char *url = luaL_checklstring(L, 1, &ul);

    if (!c)
        return luaL_error(L, "webhook: only available while a handler runs");
    lua_settop(L, 3);
    if (strlen(url) != ul)
        return luaL_argerror(L, 1, "the URL has a NUL byte");
    if (webhook_url_check(url, c->allow, c->nallow, why, sizeof why))
        return luaL_error(L, "%s%s", why,
                          strstr(why, "webhooks list") ? ": add it to `webhooks` in the analysis's "
                                                         "returned table"
                                                       : "");
    const char *body = lapi_text_arg(L, 2, &bl);
    if (bl > WEBHOOK_BODY_MAX)
        return luaL_argerror(L, 2, "body larger than 262144 bytes");
    if (c->nhooks >= HOST_MAX_WEBHOOKS)
        return luaL_error(L, "webhook: more than %d calls in one handler call", HOST_MAX_WEBHOOKS);
    if (!c->hooks && !(c->hooks = arena_calloc(c->arena, HOST_MAX_WEBHOOKS, sizeof *c->hooks)))
        return luaL_error(L, "webhook: out of memory");
    struct host_webhook *w = &c->hooks[c->nhooks];
    memset(w, 0, sizeof(*w));
    read_options(L, c, w);
    w->url = arena_strndup(c->arena, url, ul);
    w->body = (const uint8_t *)arena_strndup(c->arena, body, bl);
    if (!w->url || !w->body)
        return luaL_error(L, "webhook: out of memory");
    w->body_len = bl;
    (void)sandbox_charge(L, bl / 64);
    c->nhooks++;
    return 0;
}
