/*
 * registry_status.c - a device's row of device_status and its retention
 * override (schemas/bucket.sql), for `sealpipe device list` and `device show`
 * (registry.h). The daemon writes device_status (devstatus.c), `device set`
 * device_retention (retention.c); until the daemon has run once neither
 * table exists, which reads as "never seen" and "no override".
 */
#include <string.h>

#include "base/arena.h"
#include "base/errors.h"
#include "registry_internal.h"

static const char *const status_sql =
    "SELECT connections, last_connect, last_disconnect, client_id, address, protocol, "
    "last_reason, last_sent, last_stored, messages, records, dead_letters "
    "FROM device_status WHERE serial = ?1";

static const char *text(sqlite3_stmt *st, int i, struct arena *a)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    return s ? arena_strdup(a, (const char *)s) : NULL;
}

static void row(sqlite3_stmt *st, struct arena *a, struct device_status *o)
{
    o->seen = 1;
    o->connections = sqlite3_column_int64(st, 0);
    o->last_connect = sqlite3_column_int64(st, 1);
    o->last_disconnect = sqlite3_column_int64(st, 2);
    o->client_id = text(st, 3, a);
    o->address = text(st, 4, a);
    o->protocol = text(st, 5, a);
    o->last_reason = text(st, 6, a);
    o->last_sent = sqlite3_column_int64(st, 7);
    o->last_stored = sqlite3_column_int64(st, 8);
    o->messages = sqlite3_column_int64(st, 9);
    o->records = sqlite3_column_int64(st, 10);
    o->dead_letters = sqlite3_column_int64(st, 11);
}

static const char *const retention_sql =
    "SELECT retention_ms FROM device_retention WHERE serial = ?1";

/* The device's own retention, if it has one (retention.c writes it). */
static int own_retention(struct registry *r, const char *serial, struct device_status *out)
{
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(r->db, retention_sql, -1, &st, NULL) != SQLITE_OK)
        return SP_OK; /* no such table yet: none */
    sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        out->has_retention = 1;
        out->retention_ms = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

int registry_device_status(struct registry *r, const char *serial, struct arena *a,
                           struct device_status *out)
{
    sqlite3_stmt *st;
    int rc;

    memset(out, 0, sizeof(*out));
    if (sqlite3_prepare_v2(r->db, status_sql, -1, &st, NULL) != SQLITE_OK)
        return SP_OK; /* no such table yet: never seen */
    sqlite3_bind_text(st, 1, serial, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        row(st, a, out);
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return SP_ERR_DB;
    return own_retention(r, serial, out);
}
