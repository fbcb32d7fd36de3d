/* route.c - matching topics against declared filters (see route.h). */
#include "route.h"

#include <string.h>

#include "sealpipe.h"

#define SERIAL_LEVEL "{serial}"

/* Length of the level starting at s (up to '/' or the end). */
static size_t level_len(const char *s)
{
    const char *slash = strchr(s, '/');
    return slash ? (size_t)(slash - s) : strlen(s);
}

int route_mqtt_filter(const char *filter, char *out, size_t cap)
{
    size_t o = 0;
    int serials = 0;
    const char *p = filter;

    if (!*filter)
        return SP_ERR_INVAL;
    for (;;) {
        size_t len = level_len(p), n = len;
        const char *lvl = p;
        if (n == sizeof(SERIAL_LEVEL) - 1 && memcmp(lvl, SERIAL_LEVEL, n) == 0) {
            if (++serials > 1)
                return SP_ERR_INVAL;
            lvl = "+";
            n = 1;
        } else if (memchr(lvl, '+', n) && n != 1) {
            return SP_ERR_INVAL;
        } else if (memchr(lvl, '#', n) && (n != 1 || p[len] != '\0')) {
            return SP_ERR_INVAL;
        } else if (memchr(lvl, '{', n) || memchr(lvl, '}', n)) {
            return SP_ERR_INVAL;
        }
        if (o + n + 2 > cap)
            return SP_ERR_BUFSIZE;
        memcpy(out + o, lvl, n);
        o += n;
        if (p[len] == '\0')
            break;
        out[o++] = '/';
        p += len + 1;
    }
    out[o] = '\0';
    return SP_OK;
}

int route_match(const char *filter, const char *topic, char *serial, size_t cap)
{
    const char *f = filter, *t = topic;
    int first = 1;

    if (cap)
        serial[0] = '\0';
    for (;;) {
        size_t fn = level_len(f), tn = level_len(t);
        int wild = 0;
        if (fn == 1 && f[0] == '#') {
            return !(first && t[0] == '$');
        } else if (fn == 1 && f[0] == '+') {
            wild = 1;
        } else if (fn == sizeof(SERIAL_LEVEL) - 1 && memcmp(f, SERIAL_LEVEL, fn) == 0) {
            if (tn == 0 || tn + 1 > cap)
                return 0;
            memcpy(serial, t, tn);
            serial[tn] = '\0';
            wild = 1;
        } else if (fn != tn || memcmp(f, t, fn) != 0) {
            return 0;
        }
        if (wild && first && t[0] == '$')
            return 0;
        first = 0;
        if (f[fn] == '\0' || t[tn] == '\0') {
            /* "a/#" also matches "a". */
            if (t[tn] == '\0' && f[fn] == '/' && strcmp(f + fn + 1, "#") == 0)
                return 1;
            return f[fn] == '\0' && t[tn] == '\0';
        }
        f += fn + 1;
        t += tn + 1;
    }
}

/* 1 for a level that matches any one level: '+' or "{serial}". */
static int any_level(const char *s, size_t n)
{
    return (n == 1 && s[0] == '+') ||
           (n == sizeof(SERIAL_LEVEL) - 1 && memcmp(s, SERIAL_LEVEL, n) == 0);
}

int route_overlap(const char *a, const char *b)
{
    int first = 1;

    for (;;) {
        size_t an = level_len(a), bn = level_len(b);
        int ahash = an == 1 && a[0] == '#', bhash = bn == 1 && b[0] == '#';
        int awild = ahash || any_level(a, an), bwild = bhash || any_level(b, bn);
        /* Wildcards never match a leading '$' level. */
        if (first && ((awild && b[0] == '$') || (bwild && a[0] == '$')))
            return 0;
        if (ahash || bhash)
            return 1;
        if (!awild && !bwild && (an != bn || memcmp(a, b, an) != 0))
            return 0;
        first = 0;
        int aend = a[an] == '\0', bend = b[bn] == '\0';
        if (aend || bend) {
            /* "a/#" also matches "a". */
            if (aend && bend)
                return 1;
            return strcmp(aend ? b + bn + 1 : a + an + 1, "#") == 0;
        }
        a += an + 1;
        b += bn + 1;
    }
}
