/*
 * tip_out.h - the text buffer test_tip.c and test_frame.c render parsed
 * TagoTiP into, with the helpers both use: values unescaped (a decoded
 * newline shows as <LF>), numbers with the fewest digits that read back.
 * Include after check.h and sealpipe.h.
 */
#ifndef SP_TIP_OUT_H
#define SP_TIP_OUT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct out {
    char buf[1 << 18];
    size_t n;
};

/* Appends n bytes (cut at the buffer's end), keeping buf NUL-terminated. */
static inline void put(struct out *o, const char *s, size_t n)
{
    if (o->n + n >= sizeof o->buf)
        n = sizeof o->buf - 1 - o->n;
    memcpy(o->buf + o->n, s, n);
    o->n += n;
    o->buf[o->n] = '\0';
}

static inline void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

static inline void put_span(struct out *o, struct sp_span s)
{
    put(o, s.p, s.n);
}

static inline void put_unescaped(struct out *o, struct sp_span s)
{
    static char tmp[SP_MAX_FRAME + 1];
    int n = sp_tip_unescape(s, tmp, sizeof tmp);

    CHECK(n >= 0);
    for (int i = 0; i < n; i++) {
        if (tmp[i] == '\n')
            puts_(o, "<LF>");
        else
            put(o, &tmp[i], 1);
    }
}

/* Fewest fraction digits that read back; %g only for tiny or huge values. */
static inline void put_double(struct out *o, double v)
{
    char b[400];

    for (int d = 0; d <= 20; d++) {
        snprintf(b, sizeof b, "%.*f", d, v);
        if (strtod(b, NULL) == v) {
            puts_(o, b);
            return;
        }
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(b, sizeof b, "%.*g", p, v);
        if (strtod(b, NULL) == v)
            break;
    }
    puts_(o, b);
}

/*
 * A variable without its metadata: name, operator, value, #unit, @=location
 * (own or inherited, on a variable that is not a location itself), @time and
 * ^group ("t:=21.5#C@=1,2@1700000000000^g"). Numbers are written by put_num.
 */
static inline void put_var(struct out *o, const struct sp_tip_var *v,
                           void (*put_num)(struct out *o, double v))
{
    static const char *const ops[] = {":=", "=", "?=", "@="};
    char t[32];

    put_span(o, v->name);
    puts_(o, ops[v->type]);
    switch (v->type) {
    case SP_TIP_NUMBER:
        put_num(o, v->number);
        break;
    case SP_TIP_STRING:
        put_unescaped(o, v->value);
        break;
    case SP_TIP_BOOLEAN:
        puts_(o, v->boolean ? "true" : "false");
        break;
    default:
        put_num(o, v->lat);
        puts_(o, ",");
        put_num(o, v->lng);
        if (v->has_alt) {
            puts_(o, ",");
            put_num(o, v->alt);
        }
        break;
    }
    if (v->unit.n) {
        puts_(o, "#");
        put_span(o, v->unit);
    }
    if (v->has_loc && v->type != SP_TIP_LOCATION) {
        puts_(o, "@=");
        put_num(o, v->lat);
        puts_(o, ",");
        put_num(o, v->lng);
        if (v->has_alt) {
            puts_(o, ",");
            put_num(o, v->alt);
        }
    }
    if (v->has_time) {
        snprintf(t, sizeof t, "@%lld", (long long)v->time_ms);
        puts_(o, t);
    }
    if (v->group.n) {
        puts_(o, "^");
        put_span(o, v->group);
    }
}

#endif
