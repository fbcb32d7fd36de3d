/*
 * api_devices.c - the HTTP API's device routes (api.c has the table): the
 * device list and one device with their status (registry_status.c: what
 * `sealpipe device show` gives), and a device's records with `sealpipe
 * query`'s parameters (dataquery_args.c) and rows.
 */
#include <stdio.h>
#include <string.h>

#include "api_internal.h"
#include "base/clock.h"
#include "base/errors.h"
#include "base/record.h"
#include "storage/registry.h"

static int put_status(struct buf *b, const struct device_status *st)
{
    int rc = buf_printf(b, ",\"status\":{\"connected\":%s", st->connections > 0 ? "true" : "false");

    if (!rc)
        rc = api__put_int(b, "connections", st->connections > 0 ? st->connections : 0);
    if (!rc)
        rc = api__put_time(b, "last_connect", st->last_connect);
    if (!rc)
        rc = api__put_time(b, "last_disconnect", st->last_disconnect);
    if (!rc)
        rc = api__put_time(b, "last_sent", st->last_sent);
    if (!rc)
        rc = api__put_time(b, "last_stored", st->last_stored);
    if (!rc)
        rc = api__put_int(b, "messages", st->messages);
    if (!rc)
        rc = api__put_int(b, "records", st->records);
    if (!rc)
        rc = api__put_int(b, "dead_letters", st->dead_letters);
    return rc ? rc : buf_putc(b, '}');
}

static int put_device(struct buf *b, const struct device_info *d, const struct device_status *st)
{
    int rc = buf_putc(b, '{');

    if (!rc)
        rc = api__put_str(b, 1, "serial", d->serial);
    if (!rc)
        rc = api__put_str(b, 0, "name", d->name);
    if (!rc)
        rc = api__put_str(b, 0, "profile", d->profile);
    if (!rc)
        rc = api__put_str(b, 0, "parser", d->parser);
    if (!rc)
        rc = api__put_raw(b, "tags", d->tags_json);
    if (!rc)
        rc = api__put_raw(b, "params", d->params_json);
    if (!rc)
        rc =
            buf_printf(b, ",\"encryption_required\":%s", d->encryption_required ? "true" : "false");
    if (!rc)
        rc = api__put_int(b, "created_at", d->created_ms);
    if (!rc)
        rc = st->has_retention ? api__put_int(b, "retention_ms", st->retention_ms)
                               : buf_puts(b, ",\"retention_ms\":null");
    if (!rc)
        rc = put_status(b, st);
    return rc ? rc : buf_putc(b, '}');
}

int api__devices(struct api_req *r)
{
    struct api *a = r->a;
    struct buf *b = r->b;

    if (api__no_params(r))
        return SP_ERR_CONFIG;
    struct device_info *ds = NULL;
    struct device_status *st;
    size_t n = 0;
    int rc;

    if ((rc = registry_device_list(a->reg, &a->arena, &ds, &n)))
        return rc;
    if (!(st = arena_calloc(&a->arena, n ? n : 1, sizeof(*st))))
        return SP_ERR_NOMEM;
    if ((rc = registry_device_statuses(a->reg, ds, n, &a->arena, st)))
        return rc;
    rc = buf_printf(b, "{\"count\":%zu,\"devices\":[", n);
    for (size_t i = 0; i < n && !rc; i++) {
        if (i)
            rc = buf_putc(b, ',');
        if (!rc)
            rc = put_device(b, &ds[i], &st[i]);
    }
    if (!rc)
        rc = buf_puts(b, "]}");
    return rc; /* SP_ERR_TOOLARGE past the reply's bound */
}

int api__device(struct api_req *r)
{
    struct api *a = r->a;
    const char *serial = r->id;

    if (api__no_params(r))
        return SP_ERR_CONFIG;
    struct device_info d;
    struct device_status st;
    int rc;

    if ((rc = registry_device_get(a->reg, serial, &a->arena, &d)) ||
        (rc = registry_device_status(a->reg, &d, &a->arena, &st)))
        return rc;
    return put_device(r->b, &d, &st) ? SP_ERR_NOMEM : SP_OK;
}

/* dataquery_run's rows as the members of "data". */
struct rows {
    struct buf *b;
    size_t n;
};

static int on_row(void *ctx, const struct dataquery_row *row)
{
    struct rows *r = ctx;
    struct buf *b = r->b;
    char iso[ISO8601_LEN];
    int rc = r->n++ ? buf_putc(b, ',') : 0;

    if (!rc)
        rc = record_to_json(b, &row->rec);
    if (!rc && row->has_interval) {
        b->len--; /* the '}' */
        if (iso8601_format(row->interval_ms, iso) < 0)
            snprintf(iso, sizeof iso, "%lld", (long long)row->interval_ms);
        rc = buf_printf(b, ",\"interval\":\"%s\"}", iso);
    }
    return rc;
}

/* The query parameters into a->dq; 0, or SP_ERR_CONFIG with r->err. */
static int data_params(struct api_req *r, int latest)
{
    static const char *const valid[] = {"qty",   "skip", "start",    "end", "group",
                                        "order", "agg",  "interval", NULL};
    struct dataquery_args *dq = &r->a->dq;
    const char *v[sizeof valid / sizeof valid[0]];
    int rc;

    memset(dq, 0, sizeof(*dq));
    dq->dash = "";
    if (latest)
        return api__no_params(r);
    if ((rc = api__params(r, valid, "variable", v)))
        return rc;
    for (size_t i = 0; i < r->nparams; i++)
        if (strcmp(r->params[i].key, "variable") == 0 &&
            dataquery_args_variable(dq, r->params[i].value, r->err, sizeof r->err))
            return SP_ERR_CONFIG;
    dq->qty = v[0];
    dq->skip = v[1];
    dq->start = v[2];
    dq->end = v[3];
    dq->group = v[4];
    dq->order = v[5];
    dq->agg = v[6];
    dq->interval = v[7];
    return SP_OK;
}

/* A data route: its query (latest: the newest record of each variable), run. */
static int device_data(struct api_req *r, int latest)
{
    struct api *a = r->a;
    struct dataquery q;
    struct rows rows = {.b = r->b};
    int rc;

    if ((rc = data_params(r, latest)))
        return rc;
    if (latest) {
        a->dq.agg = "last";
        a->dq.qty = "10000";
    }
    if (dataquery_args_apply(&a->dq, r->id, clock_wall_ms(), &q, r->err, sizeof r->err))
        return SP_ERR_CONFIG;
    if ((rc = dataquery_device_exists(a->data, r->id, r->err, sizeof r->err)) != 1)
        return rc == 0 ? SP_ERR_NODEVICE : SP_ERR_DB;
    if (buf_puts(r->b, "{\"data\":["))
        return SP_ERR_NOMEM;
    rc = dataquery_run(a->data, &q, &a->arena, on_row, &rows, r->err, sizeof r->err);
    if (!rc)
        rc = buf_printf(r->b, "],\"count\":%zu}", rows.n);
    return rc;
}

int api__data(struct api_req *r)
{
    return device_data(r, 0);
}

/* Parameters are not read: there are none. */
int api__latest(struct api_req *r)
{
    return device_data(r, 1);
}
