/*
 * lapi_log.c - log(...) and print(...) (see lapi.h): lines a script logs
 * during handle(), collected into the call's arena for the daemon, which
 * writes them to its own log with the analysis and the message.
 */
#include <lauxlib.h>
#include <lua.h>

#include <stdio.h>
#include <string.h>

#include "lapi.h"

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
int lapi_log(lua_State *L)
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
