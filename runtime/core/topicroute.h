/*
 * topicroute.h - the route of every topic but $tip and $tips (topicroute.c).
 */
#ifndef SP_TOPICROUTE_H
#define SP_TOPICROUTE_H

#include <stdint.h>

#include "analyses.h"
#include "base/arena.h"
#include "core/ingest.h"
#include "outcome.h"
#include "sandbox/pool.h"
#include "storage/devcache.h"

/* What the route reads; all borrowed from the pipeline. */
struct topic_route {
    struct analyses *an;
    struct devcache *devs;
    struct pool *pool;
    struct arena *arena; /* the batch's: records land here */
};

/*
 * Routes m (prepare's phase 1): fills o with the analysis job to run (and its
 * device) or the records to store, or makes it a dead letter (no_route,
 * unknown_device, invalid_body). Writes nothing.
 */
void topic_route(const struct topic_route *r, const struct ingest_msg *m, int64_t now,
                 struct outcome *o);

#endif
