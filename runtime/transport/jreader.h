/*
 * jreader.h - the device journal as an ingest source (core/ingest.h): the
 * daemon's input from the embedded broker when the plugin journals device
 * publishes (base/journal.h has the format, broker/plugin/jwriter.c writes
 * it). Messages are read from the id after the highest one committed, which
 * the pipeline writes with every batch (the source's position(), storage/
 * positions.h); segments the daemon has committed are deleted.
 *
 * Answers to journaled messages ($tip/.../ack) leave through the output (the
 * MQTT link), as publishes. The source never goes down: a read error is
 * logged and read again later. Not thread-safe: the pipeline's thread.
 */
#ifndef SP_JREADER_H
#define SP_JREADER_H

#include <stdint.h>

#include "core/ingest.h"

struct jreader_opts {
    const char *dir;                 /* <data_dir>/journal */
    int64_t committed;               /* the highest id committed (positions_get "journal") */
    uint64_t min_free;               /* the plugin refuses publishes under this many free bytes */
    const struct ingest_output *out; /* where answers go */
    /* With --sync normal a commit is durable only once the WAL is synced
     * (SQLite syncs it before each checkpoint): the WAL's path, synced
     * before committed segments are deleted. NULL with --sync full. */
    const char *wal;
};

struct jreader;

/* Opens the journal (made if missing). 0, or SP_ERR_IO/SP_ERR_NOMEM with err. */
int jreader_open(const struct jreader_opts *o, struct jreader **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void jreader_free(struct jreader *r);

const struct ingest_source *jreader_source(struct jreader *r);

/* Bytes of the journal not read yet (for the stats line). */
uint64_t jreader_backlog(struct jreader *r);

#endif
