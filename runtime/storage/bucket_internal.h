/*
 * bucket_internal.h - the bucket's connection, for the storage modules that
 * keep tables of their own in sealpipe.db and write them in the bucket's
 * batch transaction (retries.c, pickups.c). Nothing outside storage/
 * includes it.
 */
#ifndef SP_BUCKET_INTERNAL_H
#define SP_BUCKET_INTERNAL_H

#include <sqlite3.h>

#include "bucket.h"

/* The bucket's SQLite connection: statements on it join the open batch. */
sqlite3 *bucket__db(struct bucket *b);

/*
 * Steps st, a SELECT of (id, serial, command, sealed, payload) from the
 * commands table whose ?1 is its LIMIT, into up to max commands of out,
 * strings in a, and resets it. Returns 0 with *n, SP_ERR_NOMEM or SP_ERR_DB.
 */
int bucket__read_commands(sqlite3_stmt *st, struct arena *a, struct bucket_command *out, size_t max,
                          size_t *n);

#endif
