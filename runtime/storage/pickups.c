/*
 * pickups.c - commands picked up by requests (see pickups.h): three
 * statements on the bucket's connection and the command_pickups table.
 */
#include "pickups.h"

#include <stdlib.h>

#include "base/errors.h"
#include "bucket_internal.h"

enum { PK_WAITING, PK_TAKEN_BY, PK_TAKE, PK_COUNT };

static const char *const pk_sql[PK_COUNT] = {
    [PK_WAITING] = "SELECT id, serial, command, sealed, payload FROM commands c"
                   " WHERE serial = ?2 AND sealed = ?3 AND error IS NULL"
                   " AND NOT EXISTS (SELECT 1 FROM command_pickups WHERE command_id = c.id)"
                   " ORDER BY id LIMIT ?1",
    [PK_TAKEN_BY] = "SELECT c.id, c.serial, c.command, c.sealed, c.payload"
                    " FROM command_pickups p JOIN commands c ON c.id = p.command_id"
                    " WHERE p.digest = ?2 ORDER BY c.id LIMIT ?1",
    [PK_TAKE] = "INSERT OR IGNORE INTO command_pickups (command_id, digest, at)"
                " VALUES (?1, ?2, ?3)",
};

struct pickups {
    sqlite3_stmt *st[PK_COUNT];
};

int pickups_open(struct bucket *b, struct pickups **out)
{
    struct pickups *p = calloc(1, sizeof(*p));

    if (!p)
        return SP_ERR_NOMEM;
    if (bucket__prepare(b, pk_sql, p->st, PK_COUNT)) {
        free(p);
        return SP_ERR_DB;
    }
    *out = p;
    return SP_OK;
}

void pickups_close(struct pickups *p)
{
    if (!p)
        return;
    bucket__finalize(p->st, PK_COUNT);
    free(p);
}

int pickups_waiting(struct pickups *p, const char *serial, int sealed, struct arena *a,
                    struct bucket_command *out, size_t max, size_t *n)
{
    sqlite3_stmt *st = p->st[PK_WAITING];

    sqlite3_bind_text(st, 2, serial, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, sealed != 0);
    return bucket__read_commands(st, a, out, max, n);
}

int pickups_taken_by(struct pickups *p, const uint8_t digest[BUCKET_DIGEST_LEN], struct arena *a,
                     struct bucket_command *out, size_t max, size_t *n)
{
    sqlite3_stmt *st = p->st[PK_TAKEN_BY];

    sqlite3_bind_blob(st, 2, digest, BUCKET_DIGEST_LEN, SQLITE_STATIC);
    return bucket__read_commands(st, a, out, max, n);
}

int pickups_take(struct pickups *p, int64_t id, const uint8_t digest[BUCKET_DIGEST_LEN],
                 int64_t now_ms)
{
    sqlite3_stmt *st = p->st[PK_TAKE];

    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_blob(st, 2, digest, BUCKET_DIGEST_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now_ms);
    return bucket__step_once(st) == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}
