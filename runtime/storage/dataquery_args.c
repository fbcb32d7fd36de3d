/*
 * dataquery_args.c - a data query from names and text values (see
 * dataquery_args.h).
 */
#include "dataquery_args.h"

#include <stdio.h>
#include <string.h>

#include "base/errors.h"
#include "base/timespan.h"

static const char *const agg_names[] = {
    [DATAQUERY_RECORDS] = NULL,  [DATAQUERY_LAST] = "last", [DATAQUERY_FIRST] = "first",
    [DATAQUERY_COUNT] = "count", [DATAQUERY_MIN] = "min",   [DATAQUERY_MAX] = "max",
    [DATAQUERY_AVG] = "avg",     [DATAQUERY_SUM] = "sum",
};

/* More rows than any bucket holds. */
#define MAX_SKIP 1000000000000LL

int dataquery_args_variable(struct dataquery_args *a, const char *v, char *err, size_t errlen)
{
    size_t n = strlen(v);

    if (a->nvariables >= DATAQUERY_MAX_VARIABLES) {
        snprintf(err, errlen, "more than %d %svariable", DATAQUERY_MAX_VARIABLES, a->dash);
        return SP_ERR_CONFIG;
    }
    if (n == 0 || n > SP_LIMIT_VARIABLE) {
        snprintf(err, errlen, "%svariable: a name is 1-%d bytes", a->dash, SP_LIMIT_VARIABLE);
        return SP_ERR_CONFIG;
    }
    /* Stored names are lowercase (record.c); so are the ones asked for. */
    char *low = a->lowered[a->nvariables];
    for (size_t i = 0; i <= n; i++)
        low[i] = (v[i] >= 'A' && v[i] <= 'Z') ? (char)(v[i] - 'A' + 'a') : v[i];
    a->variables[a->nvariables++] = low;
    return SP_OK;
}

/* A whole number in [min, max]. */
static int whole_number(const struct dataquery_args *a, const char *name, const char *s,
                        int64_t min, int64_t max, int64_t *out, char *err, size_t errlen)
{
    int64_t v = 0;
    size_t i = 0;

    for (; s[i] >= '0' && s[i] <= '9' && v <= max; i++)
        v = v * 10 + (s[i] - '0');
    if (i == 0 || s[i] != '\0' || v < min || v > max) {
        snprintf(err, errlen, "%s%s: '%s' is not a whole number from %lld to %lld", a->dash, name,
                 s, (long long)min, (long long)max);
        return SP_ERR_CONFIG;
    }
    *out = v;
    return SP_OK;
}

/* start or end into *ms; *has set. */
static int instant(const struct dataquery_args *a, const char *name, const char *s, int64_t now,
                   int *has, int64_t *ms, char *err, size_t errlen)
{
    if (!s)
        return SP_OK;
    if (timespan_parse_instant(s, now, ms) != SP_OK) {
        snprintf(err, errlen,
                 "%s%s: '%s' is not a time: give ISO 8601 (2026-12-01T10:00:00Z), a date "
                 "(2026-12-01) or a length before now (30s, 10m, 1h, 7d)",
                 a->dash, name, s);
        return SP_ERR_CONFIG;
    }
    *has = 1;
    return SP_OK;
}

/* order and agg. */
static int order_and_agg(const struct dataquery_args *a, struct dataquery *q, char *err,
                         size_t errlen)
{
    const char *o = a->order, *g = a->agg;

    if (o && strcmp(o, "asc") && strcmp(o, "ascending") && strcmp(o, "desc") &&
        strcmp(o, "descending")) {
        snprintf(err, errlen, "%sorder: '%s' is not asc or desc", a->dash, o);
        return SP_ERR_CONFIG;
    }
    q->ascending = o && strncmp(o, "asc", 3) == 0;
    if (!g)
        return SP_OK;
    for (size_t i = 1; i < sizeof agg_names / sizeof agg_names[0]; i++)
        if (strcmp(g, agg_names[i]) == 0) {
            q->agg = (enum dataquery_agg)i;
            return SP_OK;
        }
    snprintf(err, errlen, "%sagg: '%s' is not one of last, first, count, min, max, avg, sum",
             a->dash, g);
    return SP_ERR_CONFIG;
}

int dataquery_args_apply(const struct dataquery_args *a, const char *serial, int64_t now,
                         struct dataquery *q, char *err, size_t errlen)
{
    memset(q, 0, sizeof(*q));
    q->serial = serial;
    q->variables = a->variables;
    q->nvariables = a->nvariables;
    q->group = a->group;
    q->qty = DATAQUERY_DEFAULT_QTY;
    if ((a->qty && whole_number(a, "qty", a->qty, 1, DATAQUERY_MAX_QTY, &q->qty, err, errlen)) ||
        (a->skip && whole_number(a, "skip", a->skip, 0, MAX_SKIP, &q->skip, err, errlen)) ||
        instant(a, "start", a->start, now, &q->has_start, &q->start_ms, err, errlen) ||
        instant(a, "end", a->end, now, &q->has_end, &q->end_ms, err, errlen) ||
        order_and_agg(a, q, err, errlen))
        return SP_ERR_CONFIG;
    if (q->has_start && q->has_end && q->start_ms > q->end_ms) {
        snprintf(err, errlen, "%sstart (%s) is after %send (%s)", a->dash, a->start, a->dash,
                 a->end);
        return SP_ERR_CONFIG;
    }
    if (!a->interval)
        return SP_OK;
    if (q->agg == DATAQUERY_RECORDS) {
        snprintf(err, errlen, "%sinterval needs %sagg (e.g. %sagg avg %sinterval 1h)", a->dash,
                 a->dash, a->dash, a->dash);
        return SP_ERR_CONFIG;
    }
    if (timespan_parse(a->interval, &q->interval_ms) != SP_OK) {
        snprintf(err, errlen,
                 "%sinterval: '%s' is not a length: a whole number above 0 and s, m, h, d or w "
                 "(30s, 15m, 1h, 1d)",
                 a->dash, a->interval);
        return SP_ERR_CONFIG;
    }
    return SP_OK;
}
