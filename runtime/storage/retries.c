/*
 * retries.c - recent HTTP, UDP and TCP requests by digest (see retries.h):
 * three statements on the bucket's connection and the net_retries table.
 */
#include "retries.h"

#include <stdlib.h>

#include "base/errors.h"
#include "bucket_internal.h"

enum { RT_SEEN, RT_REMEMBER, RT_PRUNE, RT_COUNT };

static const char *const rt_sql[RT_COUNT] = {
    [RT_SEEN] = "SELECT 1 FROM net_retries WHERE digest = ?1 AND until > ?2",
    [RT_REMEMBER] = "INSERT OR REPLACE INTO net_retries (digest, until) VALUES (?1, ?2)",
    [RT_PRUNE] = "DELETE FROM net_retries WHERE until <= ?1",
};

struct retries {
    sqlite3_stmt *st[RT_COUNT];
};

int retries_open(struct bucket *b, struct retries **out)
{
    struct retries *r = calloc(1, sizeof(*r));

    if (!r)
        return SP_ERR_NOMEM;
    if (bucket__prepare(b, rt_sql, r->st, RT_COUNT)) {
        free(r);
        return SP_ERR_DB;
    }
    *out = r;
    return SP_OK;
}

void retries_close(struct retries *r)
{
    if (!r)
        return;
    bucket__finalize(r->st, RT_COUNT);
    free(r);
}

int retries_seen(struct retries *r, const uint8_t digest[BUCKET_DIGEST_LEN], int64_t now_ms)
{
    sqlite3_stmt *st = r->st[RT_SEEN];

    sqlite3_bind_blob(st, 1, digest, BUCKET_DIGEST_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms);
    switch (bucket__step_once(st)) {
    case SQLITE_ROW:
        return 1;
    case SQLITE_DONE:
        return 0;
    default:
        return SP_ERR_DB;
    }
}

int retries_remember(struct retries *r, const uint8_t digest[BUCKET_DIGEST_LEN], int64_t until_ms)
{
    sqlite3_stmt *st = r->st[RT_REMEMBER];

    sqlite3_bind_blob(st, 1, digest, BUCKET_DIGEST_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, until_ms);
    return bucket__step_once(st) == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

int retries_prune(struct retries *r, int64_t now_ms)
{
    sqlite3_stmt *st = r->st[RT_PRUNE];

    sqlite3_bind_int64(st, 1, now_ms);
    return bucket__step_once(st) == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}
