/*
 * pool_reads.c - the daemon's answers to devices{} and aggregate{} (see
 * pool.h, pool_set_reads), which a worker asks on its query channel like
 * query() (pool.c, pool_answer_query), and the queries limit the daemon
 * keeps for each job itself: a subverted worker could ask without end.
 * Called on the pipeline's thread, inside pool_run or pool_pump.
 */
#include <stdio.h>

#include "base/errors.h"
#include "pool_internal.h"
#include "wire.h"

void pool_set_reads(struct pool *pl, host_devices_fn devices, host_aggregate_fn aggregate,
                    void *ctx)
{
    pl->devices = devices;
    pl->aggregate = aggregate;
    pl->reads_ctx = ctx;
}

int pool__over_queries(struct pend *p, char *err, size_t errlen)
{
    size_t max = host_max_queries(p->handler);

    if (++p->asked <= max)
        return 0;
    snprintf(err, errlen, "queries limit: more than %zu query(), devices() and aggregate() calls",
             max);
    return 1;
}

/* The answer's head: rc and, for an error, its text. */
static int answer_head(struct buf *b, int rc, const char *err)
{
    return wire_begin(b, WIRE_ANSWER) || wire_u32(b, (uint32_t)rc) || wire_str(b, rc ? err : NULL)
               ? -1
               : 0;
}

static int answer_devices(struct pool *pl, struct wire_in *in, char *err, size_t errlen)
{
    struct host_devices_query q;
    struct host_device *v = NULL;
    size_t n = 0;
    int rc;

    if (wire_get_devices_query(in, &q)) {
        rc = SP_ERR_INVAL;
        snprintf(err, errlen, "malformed devices request");
    } else if (!pl->devices) {
        rc = SP_ERR_INVAL;
        snprintf(err, errlen, "devices() is not available here");
    } else {
        rc = pl->devices(pl->reads_ctx, &q, in->a, &v, &n, err, errlen);
    }
    if (!rc && n > q.limit)
        n = q.limit;
    return answer_head(&pl->ctl, rc, err) || (!rc && wire_put_devices(&pl->ctl, v, n)) ? -1 : 0;
}

static int answer_aggregate(struct pool *pl, struct wire_in *in, char *err, size_t errlen)
{
    struct host_aggregate_query q;
    struct host_aggregate g = {0};
    int rc;

    if (wire_get_aggregate_query(in, &q)) {
        rc = SP_ERR_INVAL;
        snprintf(err, errlen, "malformed aggregate request");
    } else if (!pl->aggregate) {
        rc = SP_ERR_INVAL;
        snprintf(err, errlen, "aggregate() is not available here");
    } else {
        rc = pl->aggregate(pl->reads_ctx, &q, &g, err, errlen);
    }
    return answer_head(&pl->ctl, rc, err) || (!rc && wire_put_aggregate(&pl->ctl, &g)) ? -1 : 0;
}

int pool__answer_read(struct pool *pl, struct pend *p, unsigned type, struct wire_in *in)
{
    char err[256] = "";

    if (type != WIRE_DEVICES && type != WIRE_AGGREGATE)
        return answer_head(&pl->ctl, SP_ERR_INVAL, "malformed query");
    if (pool__over_queries(p, err, sizeof err))
        return answer_head(&pl->ctl, SP_ERR_LIMIT, err);
    return type == WIRE_DEVICES ? answer_devices(pl, in, err, sizeof err)
                                : answer_aggregate(pl, in, err, sizeof err);
}
