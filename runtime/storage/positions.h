/*
 * positions.h - where an ingest source that keeps its own log stands (the
 * device journal, transport/jreader.c): the highest id of its messages that
 * is stored or dead-lettered, written in the batch transaction that stores
 * them, so that after a crash the source starts right after what was
 * committed, and nothing is read twice or skipped. The rows are in
 * sealpipe.db's source_positions table (schemas/bucket.sql); the broker
 * plugin reads the journal's row at start (storage/registry_schema.h,
 * REGISTRY_SQL_JOURNAL_FLOOR).
 *
 * Not thread-safe: the pipeline's thread, like its bucket.
 */
#ifndef SP_POSITIONS_H
#define SP_POSITIONS_H

#include <stdint.h>

#include "bucket.h"

struct positions;

/* Prepares the statements on b's connection. Returns 0, SP_ERR_NOMEM or SP_ERR_DB. */
int positions_open(struct bucket *b, struct positions **out) __attribute__((warn_unused_result));
void positions_close(struct positions *ps);

/* Source name's position into *pos (0 when it has none). 0 or SP_ERR_DB. */
int positions_get(struct positions *ps, const char *name, int64_t *pos)
    __attribute__((warn_unused_result));
/* In the open batch: source name stands at pos. 0 or SP_ERR_DB. */
int positions_set(struct positions *ps, const char *name, int64_t pos)
    __attribute__((warn_unused_result));

#endif
