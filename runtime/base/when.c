/*
 * when.c - conditions on stored data (see when.h): the declaration's rules
 * and the comparison of one value.
 */
#include "when.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/arena.h"
#include "base/errors.h"
#include "base/json.h"
#include "base/timespan.h"

static int fail(char *err, size_t errlen, size_t i, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, size_t i, const char *fmt, ...)
{
    char why[200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (err && errlen)
        snprintf(err, errlen, "when[%zu]%s", i + 1, why);
    return SP_ERR_INVAL;
}

/* FNV-1a of s, as 16 hex digits in key. */
static void hash_key(const char *s, size_t n, char key[17])
{
    uint64_t h = 1469598103934665603ULL;

    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ULL;
    snprintf(key, 17, "%016llx", (unsigned long long)h);
}

/* A variable's name as records store it: 1-100 bytes, lowercased. */
static int read_variable(const struct json *v, struct when_cond *c)
{
    if (!v || v->type != JSON_STRING || v->len == 0 || v->len > SP_LIMIT_VARIABLE ||
        strlen(v->str) != v->len)
        return -1;
    for (size_t k = 0; k <= v->len; k++)
        c->variable[k] = (char)(v->str[k] >= 'A' && v->str[k] <= 'Z' ? v->str[k] + 32 : v->str[k]);
    return 0;
}

/* A threshold: a finite number, or {"param": name, "default": number}. */
static int read_threshold(const struct json *v, struct when_cond *c)
{
    if (v->type == JSON_OBJECT) {
        const struct json *p = json_get(v, "param"), *d = json_get(v, "default");
        if (v->len != 2 || !p || p->type != JSON_STRING || p->len == 0 || p->len > WHEN_PARAM_MAX ||
            !d || d->type != JSON_NUMBER)
            return -1;
        memcpy(c->param, p->str, p->len + 1);
        v = d;
    }
    if (v->type != JSON_NUMBER || !isfinite(v->number))
        return -1;
    c->value = (struct when_value){.type = 'n', .number = v->number};
    return 0;
}

/* What equals compares with: a number, a string or a boolean. */
static int read_value(const struct json *v, struct when_value *out)
{
    *out = (struct when_value){0};
    if (v->type == JSON_NUMBER && isfinite(v->number)) {
        out->type = 'n';
        out->number = v->number;
    } else if (v->type == JSON_STRING && v->len <= WHEN_TEXT_MAX && strlen(v->str) == v->len) {
        out->type = 's';
        memcpy(out->text, v->str, v->len + 1);
    } else if (v->type == JSON_TRUE || v->type == JSON_FALSE) {
        out->type = 'b';
        out->boolean = v->type == JSON_TRUE;
    } else {
        return -1;
    }
    return 0;
}

/* The one comparison of condition i: exactly one of above, below, equals, changes. */
static int read_op(const struct json *o, struct when_cond *c, size_t i, char *err, size_t errlen)
{
    static const char *const ops[] = {"above", "below", "equals", "changes"};
    int found = -1;

    for (int k = 0; k < 4; k++) {
        const struct json *v = json_get(o, ops[k]);
        if (!v)
            continue;
        if (found >= 0)
            return fail(err, errlen, i, " has both %s and %s: one comparison each", ops[found],
                        ops[k]);
        found = k;
        int bad = k < 2    ? read_threshold(v, c)
                  : k == 2 ? read_value(v, &c->value)
                           : v->type != JSON_TRUE;
        if (bad)
            return fail(err, errlen, i, ".%s must be %s", ops[k],
                        k < 2    ? "a number or {param = \"name\", default = number}"
                        : k == 2 ? "a number, a string of at most 128 bytes or a boolean"
                                 : "true");
    }
    if (found < 0)
        return fail(err, errlen, i, " needs one of above, below, equals, changes");
    c->op = found;
    return 0;
}

/* hysteresis (above/below, >= 0) and for (a length, not with changes). */
static int read_options(const struct json *o, struct when_cond *c, size_t i, char *err,
                        size_t errlen)
{
    const struct json *h = json_get(o, "hysteresis"), *f = json_get(o, "for");

    if (h &&
        (c->op > WHEN_BELOW || h->type != JSON_NUMBER || !(h->number >= 0) || !isfinite(h->number)))
        return fail(err, errlen, i, ".hysteresis must be a number >= 0, with above or below");
    c->hysteresis = h ? h->number : 0;
    if (f &&
        (c->op == WHEN_CHANGES || f->type != JSON_STRING || timespan_parse(f->str, &c->for_ms)))
        return fail(err, errlen, i, "[\"for\"] must be a length such as \"5m\" (not with changes)");
    return 0;
}

/* Condition i from object o. */
static int read_cond(const struct json *o, struct when_cond *c, size_t i, char *err, size_t errlen)
{
    static const char *const known[] = {"variable", "above", "below",      "equals",
                                        "changes",  "for",   "hysteresis", NULL};
    struct buf b;
    int rc;

    memset(c, 0, sizeof(*c));
    if (o->type != JSON_OBJECT)
        return fail(err, errlen, i, " must be a table");
    for (const struct json *m = o->child; m; m = m->next) {
        int k = 0;
        while (known[k] && strcmp(known[k], m->key))
            k++;
        if (!known[k])
            return fail(err, errlen, i,
                        ".%.40s is not a field (variable, above, below, equals, "
                        "changes, for, hysteresis)",
                        m->key);
    }
    if (read_variable(json_get(o, "variable"), c))
        return fail(err, errlen, i, ".variable must be a variable name of 1-%d bytes",
                    SP_LIMIT_VARIABLE);
    if ((rc = read_op(o, c, i, err, errlen)) || (rc = read_options(o, c, i, err, errlen)))
        return rc;
    /* The state's key: the condition as written, so that an edit starts afresh. */
    buf_init(&b, WHEN_JSON_MAX);
    if (json_write(&b, o) == 0)
        hash_key(b.p, b.len, c->key);
    buf_cleanup(&b);
    return 0;
}

int when_parse(const char *text, struct when *out, char *err, size_t errlen)
{
    struct arena a;
    struct json *j = NULL;
    int rc = SP_ERR_INVAL;

    arena_init(&a, 64 * 1024);
    if (!text || strlen(text) > WHEN_JSON_MAX ||
        json_parse(&a, text, strlen(text), &j, NULL, 0) != 0) {
        if (err && errlen)
            snprintf(err, errlen, "when must be a condition table or a list of them");
        goto done;
    }
    if (j->type == JSON_OBJECT) {
        out->n = 1;
        rc = read_cond(j, &out->c[0], 0, err, errlen);
        goto done;
    }
    if (j->type != JSON_ARRAY || j->len == 0 || j->len > WHEN_MAX) {
        if (err && errlen)
            snprintf(err, errlen, "when must be a condition or a list of 1 to %d", WHEN_MAX);
        goto done;
    }
    out->n = 0;
    rc = 0;
    for (const struct json *c = j->child; c && !rc; c = c->next, out->n++)
        rc = read_cond(c, &out->c[out->n], out->n, err, errlen);
done:
    arena_cleanup(&a);
    return rc;
}

int when_holds(const struct when_cond *c, const struct when_value *v, double t, int *release)
{
    int holds = 0;

    *release = 0;
    switch (c->op) {
    case WHEN_ABOVE:
        holds = v->type == 'n' && v->number > t;
        *release = v->type == 'n' && v->number <= t - c->hysteresis;
        break;
    case WHEN_BELOW:
        holds = v->type == 'n' && v->number < t;
        *release = v->type == 'n' && v->number >= t + c->hysteresis;
        break;
    case WHEN_EQUALS:
        holds = v->type == c->value.type && (v->type == 'n'   ? v->number == c->value.number
                                             : v->type == 's' ? strcmp(v->text, c->value.text) == 0
                                                              : v->boolean == c->value.boolean);
        *release = !holds;
        break;
    default: /* changes: decided by the caller against the last value */
        break;
    }
    return holds;
}
