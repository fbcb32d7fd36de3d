/*
 * bucket_internal.h - the bucket's connection, for the storage modules that
 * keep tables of their own in sealpipe.db and write them in the bucket's
 * batch transaction (retries.c, pickups.c), and for the reader of data rows
 * (dataquery.c). Nothing outside storage/ includes it.
 */
#ifndef SP_BUCKET_INTERNAL_H
#define SP_BUCKET_INTERNAL_H

#include <sqlite3.h>

#include "bucket.h"

/* Prepares the n statements sql[] on b's connection into st[] (persistent).
 * Returns 0, or SP_ERR_DB with every one finalized. */
int bucket__prepare(struct bucket *b, const char *const *sql, sqlite3_stmt **st, int n);
/* Finalizes the n statements of st[] (NULL ones too). */
void bucket__finalize(sqlite3_stmt **st, int n);
/* Steps st once, then resets it and clears its bindings: SQLITE_ROW,
 * SQLITE_DONE or an error code. */
int bucket__step_once(sqlite3_stmt *st);

/* Column i of st's current row as a NUL-terminated copy in a; NULL for SQL
 * NULL, and also when a is full, which then sets *bad (bad may be NULL). */
const char *bucket__text(sqlite3_stmt *st, int i, struct arena *a, int *bad);

/* deadletters.c: adds to dead_letters the columns and the index an older
 * version did not make (schemas/bucket.sql). Run after the schema, before
 * any statement that names them is prepared. 0 or SP_ERR_DB. */
int deadletters__upgrade(sqlite3 *db);

/*
 * Steps st, a SELECT of (id, serial, command, sealed, payload) from the
 * commands table whose ?1 is its LIMIT, into up to max commands of out,
 * strings in a, and resets it. Returns 0 with *n, SP_ERR_NOMEM or SP_ERR_DB.
 */
int bucket__read_commands(sqlite3_stmt *st, struct arena *a, struct bucket_command *out, size_t max,
                          size_t *n);

/*
 * Copies the current row of st, a SELECT of data's (type, value, unit, time,
 * group_id, lat, lng, alt, metadata, variable), into r, strings in a; with
 * variable set, that name instead of the tenth column (which may then be
 * absent). Returns 0 or SP_ERR_NOMEM.
 */
int bucket__row_record(sqlite3_stmt *st, const char *variable, struct arena *a, struct record *r);

/*
 * outbox.c: when dead letter id on db is a webhook_failed one, puts its
 * request back into webhook_outbox (attempts 0, next_at now, its old
 * delivery id when free) and deletes it and its retry request, in a
 * savepoint (inside the caller's transaction, if one is open). Returns 1
 * when it did, 0 when id is not a webhook's dead letter (or is gone), or
 * SP_ERR_DB / SP_ERR_NOMEM / SP_ERR_PAYLOAD (a payload it cannot read).
 */
int outbox__requeue(sqlite3 *db, int64_t id, int64_t now);

#endif
