/*
 * devstatus.c - the device_status table (devstatus.h).
 *
 * Connection changes are a queue of operations applied in order, under a
 * mutex because the inspector's thread adds them. (The counts and times of
 * the messages are devstate.c's.)
 */
#include "devstatus.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/metrics.h"
#include "bucket.h"
#include "bucket_internal.h"

enum { DS_CONNECT, DS_ROSTER, DS_DISCONNECT, DS_RESET, DS_ROSTER_END, DS_CONNECTED, DS_COUNT };

static const char *const ds_sql[DS_COUNT] = {
    [DS_CONNECT] =
        "INSERT INTO device_status (serial, connections, last_connect, client_id, "
        "address, protocol) VALUES (?1, 1, ?2, ?3, ?4, ?5) ON CONFLICT (serial) DO "
        "UPDATE SET connections = connections + 1, last_connect = excluded.last_connect, "
        "client_id = excluded.client_id, address = excluded.address, "
        "protocol = excluded.protocol",
    /* A connection the roster lists: open since before; its time unknown. */
    [DS_ROSTER] = "INSERT INTO device_status (serial, connections, client_id, address, protocol) "
                  "VALUES (?1, 1, ?3, ?4, ?5) ON CONFLICT (serial) DO UPDATE SET "
                  "connections = max(connections, 0) + 1, client_id = excluded.client_id, "
                  "address = excluded.address, protocol = excluded.protocol",
    [DS_DISCONNECT] = "UPDATE device_status SET connections = max(connections - 1, 0), "
                      "last_disconnect = ?2, last_reason = ?6 WHERE serial = ?1",
    /* A roster begins: every device connected so far is marked -1, "not
     * seen in it yet"; those still at -1 at its end left unobserved (the
     * broker restarted, or the daemon missed their disconnection). One
     * transaction holds the three, so no reader sees the -1. */
    [DS_RESET] = "UPDATE device_status SET connections = -1 WHERE connections > 0",
    [DS_ROSTER_END] = "UPDATE device_status SET connections = 0, last_disconnect = ?2, "
                      "last_reason = ?6 WHERE connections < 0",
    [DS_CONNECTED] = "SELECT count(*) FROM device_status WHERE connections > 0",
};

/* Connection changes held at most: past that (the database refuses writes
 * for long, or a connection storm outruns it) they are dropped and the
 * broker plugin asked for its roster again (devstatus_lost). */
#define OPS_MAX 200000

/* One connection change. */
struct conn_op {
    int op; /* DS_CONNECT, DS_ROSTER, DS_DISCONNECT or DS_RESET */
    int64_t at;
    char *s[5]; /* serial, client id, address, protocol, reason */
};

struct devstatus {
    struct bucket *b;
    sqlite3_stmt *st[DS_COUNT];
    pthread_mutex_t mu; /* guards ops, nops, cap */
    struct conn_op *ops;
    size_t nops, cap;
    size_t written; /* ops in the open transaction */
    int lost;       /* some were dropped: the roster must come again */
};

int devstatus_open(struct bucket *b, struct devstatus **out)
{
    struct devstatus *ds = calloc(1, sizeof(*ds));

    if (!ds)
        return SP_ERR_NOMEM;
    if (bucket__prepare(b, ds_sql, ds->st, DS_COUNT)) {
        free(ds);
        return SP_ERR_DB;
    }
    ds->b = b;
    pthread_mutex_init(&ds->mu, NULL);
    *out = ds;
    return SP_OK;
}

static void op_free(struct conn_op *o)
{
    for (int i = 0; i < 5; i++)
        free(o->s[i]);
}

void devstatus_close(struct devstatus *ds)
{
    if (!ds)
        return;
    for (size_t i = 0; i < ds->nops; i++)
        op_free(&ds->ops[i]);
    free(ds->ops);
    bucket__finalize(ds->st, DS_COUNT);
    pthread_mutex_destroy(&ds->mu);
    free(ds);
}

/* ---- connections -------------------------------------------------------- */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Queues one change; a change that cannot be queued is lost (the next
 * roster mends it). Called with ds->mu held. */
static void queue(struct devstatus *ds, int op, const struct devstatus_conn *c)
{
    if (ds->nops >= OPS_MAX) {
        ds->lost = 1;
        return;
    }
    if (ds->nops == ds->cap) {
        size_t cap = ds->cap ? ds->cap * 2 : 64;
        struct conn_op *v = realloc(ds->ops, cap * sizeof(*v));
        if (!v) {
            ds->lost = 1;
            return;
        }
        ds->ops = v;
        ds->cap = cap;
    }
    struct conn_op *o = &ds->ops[ds->nops++];
    memset(o, 0, sizeof(*o));
    o->op = op;
    if (!c)
        return;
    o->at = c->at;
    o->s[0] = dup_or_null(c->serial);
    o->s[1] = dup_or_null(c->client_id);
    o->s[2] = dup_or_null(c->address);
    o->s[3] = dup_or_null(c->protocol);
    o->s[4] = dup_or_null(c->reason);
}

void devstatus_connect(struct devstatus *ds, const struct devstatus_conn *c)
{
    pthread_mutex_lock(&ds->mu);
    queue(ds, DS_CONNECT, c);
    pthread_mutex_unlock(&ds->mu);
}

void devstatus_disconnect(struct devstatus *ds, const struct devstatus_conn *c)
{
    pthread_mutex_lock(&ds->mu);
    queue(ds, DS_DISCONNECT, c);
    pthread_mutex_unlock(&ds->mu);
}

void devstatus_roster(struct devstatus *ds, const struct devstatus_conn *v, size_t n,
                      const struct devstatus_conn *end)
{
    pthread_mutex_lock(&ds->mu);
    /* All or nothing: a roster cut by the bound would leave devices at -1. */
    if (ds->nops + n + 2 > OPS_MAX) {
        ds->lost = 1;
    } else {
        queue(ds, DS_RESET, NULL);
        for (size_t i = 0; i < n; i++)
            queue(ds, DS_ROSTER, &v[i]);
        queue(ds, DS_ROSTER_END, end);
    }
    pthread_mutex_unlock(&ds->mu);
}

/* The parameters of the strings s[1..4] of an operation. */
static const char *const op_params[5] = {NULL, "?3", "?4", "?5", "?6"};

static int write_op(struct devstatus *ds, const struct conn_op *o)
{
    sqlite3_stmt *st = ds->st[o->op];

    if (o->op == DS_ROSTER_END) {
        sqlite3_bind_int64(st, 2, o->at);
        sqlite3_bind_text(st, 6, o->s[4], -1, SQLITE_STATIC);
    } else if (o->op != DS_RESET) {
        if (!o->s[0])
            return SP_OK;
        sqlite3_bind_text(st, 1, o->s[0], -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, o->at);
        for (int i = 1; i < 5; i++) {
            int k = sqlite3_bind_parameter_index(st, op_params[i]);
            if (k > 0)
                sqlite3_bind_text(st, k, o->s[i], -1, SQLITE_STATIC);
        }
    }
    int rc = bucket__step_once(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

/* ---- writing ------------------------------------------------------------ */

/* The devices connected now, for the sealpipe_devices_connected gauge. */
static int count_connected(struct devstatus *ds)
{
    sqlite3_stmt *st = ds->st[DS_CONNECTED];
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        metrics_gauge_set(METRIC_DEVICES_CONNECTED, sqlite3_column_int64(st, 0));
    sqlite3_reset(st);
    return rc == SQLITE_ROW ? SP_OK : SP_ERR_DB;
}

int devstatus_write(struct devstatus *ds)
{
    int rc = SP_OK;

    /* The operations queued so far; the lock is held while they are
     * written, as a queue() may move them (a few statements: short). */
    pthread_mutex_lock(&ds->mu);
    size_t n = ds->nops;
    for (size_t i = 0; rc == SP_OK && i < n; i++)
        rc = write_op(ds, &ds->ops[i]);
    pthread_mutex_unlock(&ds->mu);
    if (rc == SP_OK && n)
        rc = count_connected(ds);
    ds->written = n;
    return rc;
}

void devstatus_done(struct devstatus *ds, int committed)
{
    if (!ds)
        return;
    if (!committed || !ds->written)
        return;
    pthread_mutex_lock(&ds->mu);
    for (size_t i = 0; i < ds->written; i++)
        op_free(&ds->ops[i]);
    memmove(ds->ops, ds->ops + ds->written, (ds->nops - ds->written) * sizeof(*ds->ops));
    ds->nops -= ds->written;
    ds->written = 0;
    pthread_mutex_unlock(&ds->mu);
}

int devstatus_flush(struct devstatus *ds)
{
    int rc;

    pthread_mutex_lock(&ds->mu);
    size_t n = ds->nops;
    pthread_mutex_unlock(&ds->mu);
    if (n == 0)
        return SP_OK;
    if ((rc = bucket_begin(ds->b)))
        return rc;
    if ((rc = devstatus_write(ds)) == SP_OK)
        rc = bucket_commit(ds->b);
    if (rc)
        bucket_rollback(ds->b);
    devstatus_done(ds, rc == SP_OK);
    return rc;
}

int devstatus_lost(struct devstatus *ds)
{
    pthread_mutex_lock(&ds->mu);
    int lost = ds->lost;
    ds->lost = 0;
    pthread_mutex_unlock(&ds->mu);
    return lost;
}
