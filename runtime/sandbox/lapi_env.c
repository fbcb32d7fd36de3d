/*
 * lapi_env.c - env, an analysis's variables (see lapi.h): the JSON object
 * host_load_env receives is checked and copied once per load, and each Lua
 * state of the analysis gets a fresh table built from the copy. Values may
 * be secrets: every copy is wiped before it is freed.
 */
#include <lua.h>

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "lapi.h"
#include "base/errors.h"
#include "sealpipe.h"

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
void lapi_env_free(struct env_var *v, size_t n)
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
        sandbox_seterr(err, errlen, "must be a JSON object of strings");
        return SP_ERR_INVAL;
    }
    if (j->len > HOST_ENV_VARS) {
        sandbox_seterr(err, errlen, "more than %d variables", HOST_ENV_VARS);
        return SP_ERR_INVAL;
    }
    struct env_var *v = calloc(j->len ? j->len : 1, sizeof *v);
    size_t n = 0;
    if (!v)
        return SP_ERR_NOMEM;
    for (const struct json *m = j->child; m; m = m->next) {
        if (!env_name_valid(m->key, m->keylen)) {
            sandbox_seterr(err, errlen, "bad name \"%.64s\" (letters, digits, '_'; 1-%d bytes)",
                           m->key, HOST_ENV_NAME_MAX);
            lapi_env_free(v, n);
            return SP_ERR_INVAL;
        }
        if (m->type != JSON_STRING) {
            sandbox_seterr(err, errlen, "%.64s is not a string", m->key);
            lapi_env_free(v, n);
            return SP_ERR_INVAL;
        }
        v[n].key = strdup(m->key);
        v[n].val = malloc(m->len + 1);
        v[n].vlen = m->len;
        n++;
        if (!v[n - 1].key || !v[n - 1].val) {
            lapi_env_free(v, n);
            return SP_ERR_NOMEM;
        }
        memcpy(v[n - 1].val, m->str, m->len + 1);
    }
    *out = v;
    *nout = n;
    return 0;
}

/* Parses env_json (NULL or "": no variables) into a malloc'd list. */
int lapi_env_parse(const char *env_json, struct env_var **out, size_t *nout, char *err,
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
        sandbox_seterr(err, errlen, "%zu bytes, the limit is %d", len, HOST_ENV_MAX);
        return SP_ERR_TOOLARGE;
    }
    arena_init(&a, 8 * len + 64 * 1024);
    int rc = json_parse(&a, env_json, len, &j, why, sizeof why);
    if (rc == SP_ERR_PAYLOAD) {
        sandbox_seterr(err, errlen, "%s", why);
        rc = SP_ERR_INVAL;
    } else if (rc == 0) {
        rc = env_copy(j, out, nout, err, errlen);
        env_wipe_tree(j);
    }
    arena_cleanup(&a);
    return rc;
}

/* Pushes a fresh `env` table: each state gets its own copy. */
void lapi_push_env(lua_State *L, const struct env_var *v, size_t n)
{
    lua_createtable(L, 0, (int)n);
    for (size_t i = 0; i < n; i++) {
        lua_pushstring(L, v[i].key);
        lua_pushlstring(L, v[i].val, v[i].vlen);
        lua_rawset(L, -3);
    }
}
