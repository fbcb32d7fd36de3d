/*
 * bucket_internal.h - the bucket's connection, for the storage modules that
 * keep tables of their own in sealpipe.db and write them in the bucket's
 * batch transaction (retries.c). Nothing outside storage/ includes it.
 */
#ifndef SP_BUCKET_INTERNAL_H
#define SP_BUCKET_INTERNAL_H

#include <sqlite3.h>

#include "bucket.h"

/* The bucket's SQLite connection: statements on it join the open batch. */
sqlite3 *bucket__db(struct bucket *b);

#endif
