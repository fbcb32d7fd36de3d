/*
 * wire_data.c - the frames of the read and delete APIs analyses gained with
 * triggers (see wire.h): devices{} ('D') and aggregate{} ('G') asked by the
 * worker while a job runs and answered with 'A', and delete_data() calls at
 * the end of a job's reply. Each reader checks what host.h promises the side
 * that acts on it: the daemon reads the requests and the deletes from a
 * worker that may have been subverted; the worker reads the answers.
 */
#include "wire.h"

#include <stdio.h>
#include <string.h>

#include "base/json.h"
#include "sealpipe.h"

/* devices{}'s tags as the host sends them: NULL, or a JSON object of at
 * most HOST_DEVICES_TAGS string members in at most HOST_DEVICES_TAGS_MAX
 * bytes (the daemon hands it to SQLite's json_each). */
static int tags_ok(struct arena *a, const char *tags, size_t n)
{
    struct json *j;
    size_t k = 0;

    if (!tags)
        return 1;
    if (n > HOST_DEVICES_TAGS_MAX || strlen(tags) != n || json_parse(a, tags, n, &j, NULL, 0) ||
        j->type != JSON_OBJECT)
        return 0;
    for (const struct json *m = j->child; m; m = m->next)
        if (m->type != JSON_STRING || ++k > HOST_DEVICES_TAGS)
            return 0;
    return 1;
}

int wire_put_devices_query(struct buf *b, const struct host_devices_query *q)
{
    return wire_str(b, q->tags_json) || wire_str(b, q->after) || wire_u32(b, (uint32_t)q->limit)
               ? -1
               : 0;
}

int wire_get_devices_query(struct wire_in *in, struct host_devices_query *q)
{
    size_t tl = 0, al = 0;

    memset(q, 0, sizeof(*q));
    q->tags_json = wire_get_str(in, &tl);
    q->after = wire_get_str(in, &al);
    q->limit = wire_get_u32(in);
    if (in->bad || !q->after || strlen(q->after) != al || (al && !sp_serial_valid(q->after, al)) ||
        q->limit == 0 || q->limit > HOST_DEVICES_MAX || !tags_ok(in->a, q->tags_json, tl))
        return -1;
    return 0;
}

int wire_put_devices(struct buf *b, const struct host_device *v, size_t n)
{
    if (wire_u32(b, (uint32_t)n))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (wire_str(b, v[i].serial) || wire_str(b, v[i].name) || wire_str(b, v[i].tags_json) ||
            wire_str(b, v[i].params_json) || wire_u8(b, (unsigned)(v[i].connected != 0)) ||
            wire_i64(b, v[i].last_sent))
            return -1;
    return 0;
}

int wire_get_devices(struct wire_in *in, struct host_device **out, size_t *n, size_t max)
{
    struct host_device *v;
    char err[64];
    uint32_t k;

    *out = NULL;
    *n = 0;
    if (wire__get_array(in, sizeof(*v), max, "devices", &k, (void **)&v, err, sizeof err))
        return -1;
    for (uint32_t i = 0; i < k; i++) {
        size_t sl = 0;
        v[i].serial = wire_get_str(in, &sl);
        v[i].name = wire_get_str(in, NULL);
        v[i].tags_json = wire_get_str(in, NULL);
        v[i].params_json = wire_get_str(in, NULL);
        v[i].connected = wire_get_u8(in) != 0;
        v[i].last_sent = wire_get_i64(in);
        if (in->bad || !v[i].serial || !sp_serial_valid(v[i].serial, sl))
            return -1;
    }
    *out = v;
    *n = k;
    return 0;
}

int wire_put_aggregate_query(struct buf *b, const struct host_aggregate_query *q)
{
    return wire_str(b, q->serial) || wire_str(b, q->variable) || wire_i64(b, q->start_ms) ||
                   wire_i64(b, q->stop_ms)
               ? -1
               : 0;
}

int wire_get_aggregate_query(struct wire_in *in, struct host_aggregate_query *q)
{
    size_t sl = 0, vl = 0;

    memset(q, 0, sizeof(*q));
    q->serial = wire_get_str(in, &sl);
    q->variable = wire_get_str(in, &vl);
    q->start_ms = wire_get_i64(in);
    q->stop_ms = wire_get_i64(in);
    if (in->bad || !q->serial || !sp_serial_valid(q->serial, sl) || !q->variable ||
        !wire__variable_ok(q->variable, vl) || q->start_ms > q->stop_ms)
        return -1;
    return 0;
}

int wire_put_aggregate(struct buf *b, const struct host_aggregate *g)
{
    return wire_i64(b, g->count) || wire_f64(b, g->min) || wire_f64(b, g->max) ||
                   wire_f64(b, g->avg) || wire_f64(b, g->sum) || wire_f64(b, g->first) ||
                   wire_f64(b, g->last)
               ? -1
               : 0;
}

int wire_get_aggregate(struct wire_in *in, struct host_aggregate *g)
{
    g->count = wire_get_i64(in);
    g->min = wire_get_f64(in);
    g->max = wire_get_f64(in);
    g->avg = wire_get_f64(in);
    g->sum = wire_get_f64(in);
    g->first = wire_get_f64(in);
    g->last = wire_get_f64(in);
    return in->bad || g->count < 0 ? -1 : 0;
}

int wire_put_deletes(struct buf *b, const struct host_delete *v, size_t n)
{
    if (wire_u32(b, (uint32_t)n))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (wire_str(b, v[i].serial) || wire_str(b, v[i].variable) || wire_i64(b, v[i].before_ms))
            return -1;
    return 0;
}

int wire_get_deletes(struct wire_in *in, struct host_delete **out, size_t *n, char *err,
                     size_t errlen)
{
    struct host_delete *v;
    uint32_t k;

    *out = NULL;
    *n = 0;
    if (wire__get_array(in, sizeof(*v), HOST_MAX_DELETES, "delete_data calls", &k, (void **)&v, err,
                        errlen))
        return -1;
    for (uint32_t i = 0; i < k; i++) {
        size_t sl = 0, vl = 0;
        v[i].serial = wire_get_str(in, &sl);
        v[i].variable = wire_get_str(in, &vl);
        v[i].before_ms = wire_get_i64(in);
        if (in->bad || !v[i].serial || !sp_serial_valid(v[i].serial, sl) ||
            !wire__variable_ok(v[i].variable, vl)) {
            snprintf(err, errlen, "%s", in->full ? "out of memory" : "malformed delete_data call");
            return -1;
        }
    }
    *out = v;
    *n = k;
    return 0;
}
