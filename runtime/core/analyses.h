/*
 * analyses.h - the analyses registry: the analyses folder and what its
 * analyses declare.
 *
 * It loads analyses_dir/NAME.lua (with its sidecar NAME.env) into the Lua
 * worker pool and reloads them when they change (hot reload), answers which
 * analysis takes a topic (the filters they declare; the first by name wins),
 * keeps the broker subscriptions equal to the TagoTiP topics plus every
 * declared filter, and keeps the error budget of each (analysis, device).
 *
 * Called by the pipeline, single-threaded.
 */
#ifndef SP_ANALYSES_H
#define SP_ANALYSES_H

#include <stddef.h>
#include <stdint.h>

#include "sandbox/pool.h"

struct mqlink; /* transport/mqlink.h: subscriptions are MQTT-only */

struct analyses_opts {
    const char *dir;   /* the analyses folder; borrowed, must outlive the registry */
    size_t script_max; /* bytes of a NAME.lua (lua_script_kb) */
    int error_budget;  /* failures per (analysis, device) a minute; 0: no budget */
};

struct analyses;

/* pl is borrowed and must outlive the registry. Returns 0 or SP_ERR_NOMEM. */
int analyses_new(const struct analyses_opts *o, struct pool *pl, struct analyses **out)
    __attribute__((warn_unused_result));
void analyses_free(struct analyses *a);

/*
 * Scans the folder: loads each new or changed NAME.lua into the Lua worker
 * (a version that fails to load is reported and the previous one, if any,
 * keeps running; it is tried again when the file changes again) and unloads
 * the analyses whose file is gone. Call at start and then periodically (hot
 * reload). Returns 1 when the loaded set changed (see analyses_resubscribe),
 * else 0; a missing or unreadable folder is reported once and loads nothing.
 */
int analyses_scan(struct analyses *a);

/*
 * Subscribes link to the TagoTiP topics and every declared filter. Call
 * after each (re)connect, between batches. Returns 0 or SP_ERR_MQTT (or
 * SP_ERR_NOMEM) with err set.
 */
int analyses_subscribe(struct analyses *a, struct mqlink *link, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* After a change: queues SUBSCRIBEs for new filters and UNSUBSCRIBEs for the
 * ones no analysis declares any more (sent with the next flush). */
void analyses_resubscribe(struct analyses *a, struct mqlink *link);

/*
 * The analysis whose declared filter matches topic (the first in name
 * order), with the filter's {serial} level in serial ("" when it has none);
 * -1 when none does.
 */
int analyses_match(struct analyses *a, const char *topic, char *serial, size_t cap);

/*
 * The error budget of one (analysis, device): failures in the current
 * one-minute window. A device whose messages keep failing an analysis (each
 * timeout costs a worker) has its further messages dead-lettered without
 * running it until the window ends; other devices are not affected.
 * analyses_budget_spent is 1 when serial (NULL: none) has used up its
 * failures of analysis this minute; analyses_budget_fail counts one.
 */
int analyses_budget_spent(struct analyses *a, const char *analysis, const char *serial,
                          int64_t now);
void analyses_budget_fail(struct analyses *a, const char *analysis, const char *serial,
                          int64_t now);

#endif
