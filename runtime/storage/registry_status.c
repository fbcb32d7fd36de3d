/*
 * registry_status.c - a device's row of device_status and its retention
 * override (schemas/bucket.sql), for `sealpipe device list` and `device show`
 * (registry.h). The daemon writes device_status (devstatus.c), `device set`
 * device_retention (retention.c); until the daemon has run once neither
 * table exists, which reads as "never seen" and "no override". The latest
 * counts wait in device_status_pending (tally.h; devstate.c folds them
 * within seconds); they are added, in the same read transaction, so that the
 * counts are those of what is committed.
 */
#include <string.h>

#include "base/arena.h"
#include "base/errors.h"
#include "base/keytab.h"
#include "registry_internal.h"
#include "sealpipe.h"
#include "tally.h"

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

static const char *const pending_sql = "SELECT tallies FROM device_status_pending";

/* A device of the request: its serial, and where its status goes. Tallies
 * of another device of the serial (another created_at) are not its. */
struct wanted {
    const char *serial;
    int64_t created; /* its devices.created_at */
    struct device_status *out;
    struct tally sum; /* its pending tallies */
};

static int wanted_equal(const void *entry, const void *key)
{
    return strcmp(((const struct wanted *)entry)->serial, key) == 0;
}

static const struct keytab_type wanted_type = {.entry_size = sizeof(struct wanted),
                                               .key_equal = wanted_equal};

static uint64_t serial_hash(const struct keytab *t, const char *serial)
{
    return keytab_hash(t, serial, strlen(serial));
}

/* Adds every tally of the rows of device_status_pending to its device's sum,
 * when that device is wanted. */
static int sum_pending(struct registry *r, struct keytab *want)
{
    char serial[SP_MAX_SERIAL + 1];
    sqlite3_stmt *st;
    struct wanted *w;
    struct tally t;
    int rc;

    if (sqlite3_prepare_v2(r->db, pending_sql, -1, &st, NULL) != SQLITE_OK)
        return SP_OK; /* no such table yet: none */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *p = sqlite3_column_blob(st, 0);
        size_t len = (size_t)sqlite3_column_bytes(st, 0), pos = 0;
        while (tally_decode(p, len, &pos, &t, serial) == 1)
            if ((w = keytab_find(want, serial_hash(want, serial), serial)) &&
                (t.created == 0 || t.created == w->created))
                tally_add(&w->sum, &t);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

/* The tallies not yet folded (devstate.c), added to the statuses
 * out[0..n) of devs[0..n). */
static int add_pending(struct registry *r, const struct device_info *devs, size_t n,
                       struct device_status *out)
{
    size_t slots = 4;
    struct keytab want;
    struct wanted *w;
    void *slot;
    int rc;

    while (slots < 2 * n + 2)
        slots *= 2;
    if (keytab_init(&want, &wanted_type, slots, slots))
        return SP_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        if (keytab_put(&want, serial_hash(&want, devs[i].serial), devs[i].serial, &slot) ==
            KEYTAB_ADDED)
            *(struct wanted *)slot = (struct wanted){
                .serial = devs[i].serial, .created = devs[i].created_ms, .out = &out[i]};
    rc = sum_pending(r, &want);
    for (size_t i = 0; rc == SP_OK && (w = keytab_next(&want, &i)) != NULL;) {
        struct device_status *o = w->out;
        if (!w->sum.messages && !w->sum.records && !w->sum.dead && !w->sum.last_sent)
            continue;
        o->seen = 1;
        o->last_sent = w->sum.last_sent > o->last_sent ? w->sum.last_sent : o->last_sent;
        o->last_stored = w->sum.last_stored > o->last_stored ? w->sum.last_stored : o->last_stored;
        o->messages += w->sum.messages;
        o->records += w->sum.records;
        o->dead_letters += w->sum.dead;
    }
    keytab_cleanup(&want);
    return rc;
}

/* serial's row of device_status and its retention, without the pending. */
static int read_status(struct registry *r, const char *serial, struct arena *a,
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

int registry_device_statuses(struct registry *r, const struct device_info *devs, size_t n,
                             struct arena *a, struct device_status *out)
{
    int rc = SP_OK;

    /* One snapshot: a fold between reading device_status and the pending
     * rows would count its tallies twice, or not at all. */
    if (sqlite3_exec(r->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return SP_ERR_DB;
    for (size_t i = 0; i < n && rc == SP_OK; i++)
        rc = read_status(r, devs[i].serial, a, &out[i]);
    if (rc == SP_OK)
        rc = add_pending(r, devs, n, out);
    sqlite3_exec(r->db, rc == SP_OK ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int registry_device_status(struct registry *r, const struct device_info *d, struct arena *a,
                           struct device_status *out)
{
    return registry_device_statuses(r, d, 1, a, out);
}
