/*
 * pipeline_internal.h - the batch loop's state, shared by the files of
 * core/ that make one step of it: pipeline.c (read, prepare, write,
 * commit, send) and pipeline_jobs.c (phase 2, the analyses). Nothing else
 * includes it: the rest of the daemon sees pipeline.h.
 */
#ifndef SP_PIPELINE_INTERNAL_H
#define SP_PIPELINE_INTERNAL_H

#include <stdint.h>

#include "analyses.h"
#include "deferred.h"
#include "ingest.h"
#include "outcome.h"
#include "pipeline.h"
#include "storage/devcache.h"
#include "topicroute.h"

struct devstatus;
struct devstate;
struct inspect;
struct positions;
struct retries;
struct tipserver;
struct triggers;
struct webhooks;

/*
 * Something to send once the batch is committed: the answer to message to
 * (through its source), or an analysis publish (through the output).
 */
struct pending_pub {
    const char *topic;
    const uint8_t *payload;
    size_t len;
    int qos;
    int retain;
    struct ingest_origin from;   /* profile and hop count it carries */
    const struct ingest_msg *to; /* an answer to this message; NULL: a publish */
    const char *device;          /* the device it is for, if one (the inspector's) */
};

struct dataops;

struct stats {
    uint64_t messages, stored, records, duplicates, ignored, refused, dead[R_COUNT];
    uint64_t deleted; /* rows delete_data() deleted */
};

struct pipeline {
    struct pipeline_opts o;
    struct registry *reg;
    struct devcache *devs; /* the registry in memory, synced per batch */
    struct bucket *bk;
    struct pool *pool;
    struct analyses *an;       /* the analyses folder, routes, budgets */
    struct tipserver *tips;    /* $tip and $tips */
    struct triggers *trig;     /* runs no device message starts: $trigger# */
    struct topic_route topics; /* every other topic */
    /* Where messages come from: the first one's link is also the output. A
     * source is down from an error of its read() or ack(), or a drop(), until
     * pipeline_source_up() (sources that stay up excepted, ingest.h). */
    struct {
        const struct ingest_source *src;
        int up;
        int lost; /* the error it was lost with in this step */
    } srcs[PIPELINE_MAX_SOURCES];
    size_t nsrcs;
    const struct ingest_output *out;
    const struct ingest_output *answers_out; /* pipeline_answers_via, or NULL */
    struct arena arena;
    struct ingest_msg *msgs;
    struct outcome *outs; /* one per message of the batch */
    /* Messages wait in the bucket's deferred table for room in a batch, or
     * for their detached job's result (deferred.h). */
    struct deferred *df;
    int from_table;     /* the current batch comes from it */
    int64_t *table_ids; /* per message: its row in the table, if it has one */
    uint64_t *tickets;  /* per message: its detached job, or 0 */
    struct pending_pub *pubs;
    size_t npubs, cappubs;
    struct stats st;
    int64_t refused_logged;      /* when refuse() last logged, wall ms */
    struct retries *retries;     /* recent requests of HTTP, UDP, TCP */
    struct positions *positions; /* of the sources that keep a log (ingest.h, position) */
    int64_t pruned;              /* when prune_retries last ran */
    uint64_t refused_quiet;      /* refusals not logged since */
    struct inspect *in;          /* the Live Inspector, or NULL */
    struct devstatus *ds;        /* device_status's connections, or NULL */
    struct devstate *tallies;    /* device_status's counts, device_counters */
    int64_t stage_at;            /* the thread's CPU time at the last stage_done, us */
    struct webhooks *wh;         /* where webhook() calls are queued, or NULL */
    struct dataops *ops;         /* devices{}, aggregate{}, delete_data{} */
};

/* 1 if m's source wants a duplicate answered again (ingest.h). */
static inline int answers_duplicates(const struct ingest_msg *m)
{
    return m->src && m->src->answers_duplicates;
}

/* pipeline_jobs.c: phase 2, the analyses the batch asked for, in one stream
 * to each worker; and query() from an analysis (pool_set_query). */
void pipeline__run_jobs(struct pipeline *p, size_t n, int64_t now);
int pipeline__answer_query(void *ctx, const struct host_query *q, struct arena *a,
                           struct record_vec *out, char *err, size_t errlen);
/* devices{} and aggregate{} from an analysis (pool_set_reads). */
int pipeline__answer_devices(void *ctx, const struct host_devices_query *q, struct arena *a,
                             struct host_device **out, size_t *n, char *err, size_t errlen);
int pipeline__answer_aggregate(void *ctx, const struct host_aggregate_query *q,
                               struct host_aggregate *out, char *err, size_t errlen);
/* In the open batch: o's delete_data() calls, HOST_DELETE_ROWS rows each at
 * most, counted in p->st.deleted. 0 or SP_ERR_DB (err set). */
int pipeline__delete_data(struct pipeline *p, const struct outcome *o, char *err, size_t errlen);

#endif
