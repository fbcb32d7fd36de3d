/*
 * dataops.c - devices{}, aggregate{} and delete_data{} for analyses (see
 * dataops.h): statements on the bucket's connection.
 *
 * The HTTP API's and `sealpipe query`'s reductions (dataquery.c) give one
 * row per aggregate on a read-only connection of their own; an analysis
 * wants all of them for one variable at once, answered on the daemon's
 * connection while its worker waits, so this is one SELECT: the reductions
 * and two index seeks for the first and last value, all over the (device,
 * variable, time) index. The delete has the shape of retention.c's per-key
 * delete (a range of that index, LIMIT), in time order. The devices page
 * reads the registry's devices table and device_status, which live in the
 * same database; its statement is prepared at its first use, so the bucket
 * may be opened before the registry has made its tables.
 */
#include "dataops.h"

#include <stdlib.h>

#include "base/errors.h"
#include "bucket_internal.h"

enum { DO_AGGREGATE, DO_DELETE_VARIABLE, DO_DELETE_ALL, DO_DEVICES, DO_COUNT };
/* Prepared at open: those before DO_DEVICES (prepared at its first use). */
#define DO_PREPARED DO_DEVICES

#define RANGE "device = ?1 AND variable = ?2 AND time >= ?3 AND time <= ?4 AND type = 'number'"

static const char *const do_sql[DO_COUNT] = {
    [DO_AGGREGATE] = "SELECT count(*), min(value), max(value), avg(value), sum(value),"
                     " (SELECT value FROM data WHERE " RANGE " ORDER BY time ASC, id ASC LIMIT 1),"
                     " (SELECT value FROM data WHERE " RANGE " ORDER BY time DESC, id DESC LIMIT 1)"
                     " FROM data WHERE " RANGE,
    [DO_DELETE_VARIABLE] = "DELETE FROM data WHERE id IN (SELECT id FROM data WHERE device = ?1"
                           " AND variable = ?2 AND time < ?3 ORDER BY time, id LIMIT ?4)",
    [DO_DELETE_ALL] = "DELETE FROM data WHERE id IN (SELECT id FROM data WHERE device = ?1"
                      " AND time < ?3 ORDER BY time, id LIMIT ?4)",
    /* Every member of ?2 (a JSON object) is one of the device's tags. */
    [DO_DEVICES] = "SELECT d.serial, d.name, d.tags, d.params, coalesce(s.connections, 0) > 0,"
                   " coalesce(s.last_sent, 0) FROM devices AS d"
                   " LEFT JOIN device_status AS s ON s.serial = d.serial"
                   " WHERE d.serial > ?1 AND NOT EXISTS (SELECT 1 FROM json_each(?2) AS w"
                   " WHERE NOT EXISTS (SELECT 1 FROM json_each(d.tags) AS t"
                   " WHERE t.key = w.key AND t.type = 'text' AND t.value = w.value))"
                   " ORDER BY d.serial LIMIT ?3",
};

struct dataops {
    struct bucket *b;
    sqlite3_stmt *st[DO_COUNT];
};

int dataops_open(struct bucket *b, struct dataops **out)
{
    struct dataops *d = calloc(1, sizeof(*d));

    if (!d)
        return SP_ERR_NOMEM;
    d->b = b;
    if (bucket__prepare(b, do_sql, d->st, DO_PREPARED)) {
        free(d);
        return SP_ERR_DB;
    }
    *out = d;
    return SP_OK;
}

void dataops_close(struct dataops *d)
{
    if (!d)
        return;
    bucket__finalize(d->st, DO_COUNT);
    free(d);
}

/* One row of DO_DEVICES into v; 0 or SP_ERR_NOMEM. */
static int device_row(sqlite3_stmt *st, struct arena *a, struct host_device *v)
{
    int bad = 0;

    v->serial = bucket__text(st, 0, a, &bad);
    v->name = bucket__text(st, 1, a, &bad);
    v->tags_json = bucket__text(st, 2, a, &bad);
    v->params_json = bucket__text(st, 3, a, &bad);
    v->connected = sqlite3_column_int(st, 4) != 0;
    v->last_sent = sqlite3_column_int64(st, 5);
    return bad || !v->serial ? SP_ERR_NOMEM : SP_OK;
}

int dataops_devices(struct dataops *d, const struct host_devices_query *q, struct arena *a,
                    struct host_device **out, size_t *n)
{
    struct host_device *v;
    int rc;

    *n = 0;
    *out = NULL;
    if (!d->st[DO_DEVICES] && bucket__prepare(d->b, do_sql + DO_DEVICES, d->st + DO_DEVICES, 1))
        return SP_ERR_DB;
    if (!(v = arena_calloc(a, q->limit ? q->limit : 1, sizeof(*v))))
        return SP_ERR_NOMEM;
    sqlite3_stmt *st = d->st[DO_DEVICES];
    sqlite3_bind_text(st, 1, q->after ? q->after : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, q->tags_json ? q->tags_json : "{}", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)q->limit);
    int bad = SP_OK;
    rc = SQLITE_DONE;
    while (!bad && *n < q->limit && (rc = sqlite3_step(st)) == SQLITE_ROW)
        bad = device_row(st, a, &v[(*n)++]);
    rc = bad ? bad : rc == SQLITE_ROW || rc == SQLITE_DONE ? SP_OK : SP_ERR_DB;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    *out = v;
    return rc;
}

int dataops_aggregate(struct dataops *d, const struct host_aggregate_query *q,
                      struct host_aggregate *out)
{
    sqlite3_stmt *st = d->st[DO_AGGREGATE];
    int rc;

    sqlite3_bind_text(st, 1, q->serial, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, q->variable, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, q->start_ms);
    sqlite3_bind_int64(st, 4, q->stop_ms);
    *out = (struct host_aggregate){0};
    if ((rc = sqlite3_step(st)) == SQLITE_ROW && (out->count = sqlite3_column_int64(st, 0)) > 0) {
        out->min = sqlite3_column_double(st, 1);
        out->max = sqlite3_column_double(st, 2);
        out->avg = sqlite3_column_double(st, 3);
        out->sum = sqlite3_column_double(st, 4);
        out->first = sqlite3_column_double(st, 5);
        out->last = sqlite3_column_double(st, 6);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW ? SP_OK : SP_ERR_DB;
}

int dataops_delete(struct dataops *d, const char *serial, const char *variable, int64_t before_ms,
                   int64_t max)
{
    sqlite3_stmt *st = d->st[variable ? DO_DELETE_VARIABLE : DO_DELETE_ALL];

    sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
    if (variable)
        sqlite3_bind_text(st, 2, variable, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, before_ms);
    sqlite3_bind_int64(st, 4, max);
    int rc = bucket__step_once(st);
    if (rc != SQLITE_DONE)
        return SP_ERR_DB;
    return (int)sqlite3_changes(sqlite3_db_handle(st));
}
