/*
 * positions.c - the sources' positions (see positions.h): two statements on
 * the bucket's connection and the source_positions table.
 */
#include "positions.h"

#include <stdlib.h>

#include "base/errors.h"
#include "bucket_internal.h"

enum { PS_GET, PS_SET, PS_COUNT };

static const char *const ps_sql[PS_COUNT] = {
    [PS_GET] = "SELECT position FROM source_positions WHERE name = ?1",
    [PS_SET] = "INSERT OR REPLACE INTO source_positions (name, position) VALUES (?1, ?2)",
};

struct positions {
    sqlite3_stmt *st[PS_COUNT];
};

int positions_open(struct bucket *b, struct positions **out)
{
    struct positions *ps = calloc(1, sizeof(*ps));

    if (!ps)
        return SP_ERR_NOMEM;
    if (bucket__prepare(b, ps_sql, ps->st, PS_COUNT)) {
        free(ps);
        return SP_ERR_DB;
    }
    *out = ps;
    return SP_OK;
}

void positions_close(struct positions *ps)
{
    if (!ps)
        return;
    bucket__finalize(ps->st, PS_COUNT);
    free(ps);
}

int positions_get(struct positions *ps, const char *name, int64_t *pos)
{
    sqlite3_stmt *st = ps->st[PS_GET];
    int rc;

    *pos = 0;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *pos = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

int positions_set(struct positions *ps, const char *name, int64_t pos)
{
    sqlite3_stmt *st = ps->st[PS_SET];

    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, pos);
    return bucket__step_once(st) == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}
