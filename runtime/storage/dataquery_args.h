/*
 * dataquery_args.h - a data query as a user gives it, by name and text
 * value: `sealpipe query`'s options (cli/query.c) and the HTTP API's query
 * parameters (api/api.c) take the same names, the same checks and the same
 * messages, and become the same struct dataquery (dataquery.h).
 */
#ifndef SP_DATAQUERY_ARGS_H
#define SP_DATAQUERY_ARGS_H

#include <stdint.h>

#include "base/sp_limits.h"
#include "dataquery.h"

struct dataquery_args {
    /* As given; NULL: not given. */
    const char *qty, *skip, *start, *end, *group, *order, *agg, *interval;
    /* The variables asked for, lowercased (dataquery_args_variable). */
    const char *variables[DATAQUERY_MAX_VARIABLES];
    char lowered[DATAQUERY_MAX_VARIABLES][SP_LIMIT_VARIABLE + 1];
    size_t nvariables;
    /* Put before a name in a message: "--" for options, "" for parameters. */
    const char *dash;
};

/* Adds variable v. Returns 0 or SP_ERR_CONFIG with err set. */
int dataquery_args_variable(struct dataquery_args *a, const char *v, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * Makes *q, the query of serial's records that a asks for; relative times
 * ("1h") count back from now. q->variables points into a. Returns 0 or
 * SP_ERR_CONFIG with err set (e.g. "--qty: 'x' is not a whole number from 1
 * to 10000").
 */
int dataquery_args_apply(const struct dataquery_args *a, const char *serial, int64_t now,
                         struct dataquery *q, char *err, size_t errlen)
    __attribute__((warn_unused_result));

#endif
