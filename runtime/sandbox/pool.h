/*
 * pool.h - analyses run in a sandboxed worker process (worker.h), seen from
 * the daemon.
 *
 * The pool keeps the loaded analyses' names, declared topics and sources,
 * and a few worker processes. Each analysis lives in exactly one of them
 * (chosen at its first load: the worker holding the fewest; a reload stays
 * there), so its Lua globals are one state and its messages run in order,
 * while analyses on different workers run on different cores. A batch's
 * jobs are sent to all their workers at once, each worker's in one stream,
 * and the replies are read from all of them as they come, so the cost per
 * message is a few microseconds of encoding, not a process round trip. A
 * batch need not wait for a slow analysis: its jobs may be left running,
 * detached, their results kept until claimed (pool_run).
 *
 * Each message has a wall-clock budget: a worker that overruns it (a
 * pattern or string.rep that no hook can interrupt, an endless C call) is
 * killed, that message fails with SP_ERR_TIMEOUT, a new worker is started
 * with its analyses loaded again, and the rest of the batch goes on. When a
 * worker dies (a crash, the seccomp filter, a resource limit) the replies it
 * wrote are taken first; the message it was running is then run alone in a
 * new worker and fails, with SP_ERR_CRASH, only if it kills that one too. No
 * other message is failed for it, and the other workers (their analyses'
 * globals, their jobs) never notice.
 *
 * Loading runs the script's top level in the worker too, so no user code
 * ever runs in the daemon.
 */
#ifndef SP_POOL_H
#define SP_POOL_H

#include <stddef.h>

#include "base/arena.h"
#include "host.h"
#include "worker.h"

struct pool_opts {
    const char *exe; /* this program, run as `exe __worker ...` (/proc/self/exe) */
    struct worker_opts worker;
    int wall_ms; /* per message (unless an analysis asks for less), and for loading */
    int workers; /* worker processes (POOL_WORKERS_MAX at most); 0: one */
};

#define POOL_WORKERS_MAX 16

struct pool;

/* Starts the workers. Returns 0 or an SP_ERR_ code with err set. */
int pool_new(const struct pool_opts *o, struct pool **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void pool_free(struct pool *pl);

/* As host_load_env/host_unload (host.h), run in the analysis's worker.
 * env_json: the analysis's `env` as a JSON object of strings, or NULL. */
int pool_load(struct pool *pl, const char *name, const char *src, size_t len, const char *env_json,
              char *err, size_t errlen) __attribute__((warn_unused_result));
int pool_unload(struct pool *pl, const char *name);

/* Loaded analyses in name order, as host_count() and friends. */
size_t pool_count(const struct pool *pl);
const char *pool_name(const struct pool *pl, size_t i);
size_t pool_topic_count(const struct pool *pl, size_t i);
const char *pool_topic(const struct pool *pl, size_t i, size_t j);
int pool_find(const struct pool *pl, const char *name);
/* As host_handlers() and host_schedule(), checked again by the pool. */
unsigned pool_handlers(const struct pool *pl, size_t i);
const char *pool_schedule(const struct pool *pl, size_t i);
unsigned pool_events(const struct pool *pl, size_t i);
int64_t pool_offline_after_ms(const struct pool *pl, size_t i);
/* Its conditions (base/when.h), parsed and checked again; NULL: none. */
const struct when *pool_when(const struct pool *pl, size_t i);
/* The tags its `devices` scope requires, a JSON object text; NULL: every device. */
const char *pool_scope(const struct pool *pl, size_t i);
/* Analysis i's `webhooks` list (host_webhook_entry), checked again by the
 * pool: *n entries (0 and NULL when it has none or i is out of range). */
const char *const *pool_webhooks(const struct pool *pl, size_t i, size_t *n);

struct pool_job {
    size_t analysis;            /* index, as pool_find() */
    const struct host_msg *msg; /* what handle(msg) sees */
    /* Results. */
    int rc;          /* 0, or as host_run(); SP_ERR_TIMEOUT also for the wall clock;
                        SP_ERR_CRASH: it killed the worker twice (once alone);
                        SP_ERR_FULL: the arena could not hold its result (the
                        analysis did nothing wrong: run it again later) */
    const char *err; /* when rc != 0, in the arena */
    struct host_out out;
    uint64_t ticket; /* non-zero: detached (rc and out not set), see pool_run */
};

/* Answers the analyses' query() calls (read-only, from the buckets). Without
 * it query() fails with an error. */
void pool_set_query(struct pool *pl, host_query_fn fn, void *ctx);
/* Answers devices{} and aggregate{} (host_set_reads); without them those
 * fail with an error. */
void pool_set_reads(struct pool *pl, host_devices_fn devices, host_aggregate_fn aggregate,
                    void *ctx);

/*
 * Runs the jobs, those of one analysis in order; results (records,
 * publishes, errors) go into a. Once a reply does not fit in a, that job and
 * every later one of the same worker get SP_ERR_FULL, and that worker is
 * replaced rather than left to run them (its analyses' globals are reset, as
 * after a timeout); the other workers' jobs keep their results, so the jobs
 * with SP_ERR_FULL need not be a suffix of jobs. query() answers do not use a.
 *
 * detach_ms >= 0: once a worker's running job has taken detach_ms, that
 * job and the worker's later ones are detached: they run on in the worker,
 * and the call returns with their ticket set (a long queue of quick jobs is
 * waited for). So are, at once, the jobs of a worker still busy with
 * detached ones (they would run after them). A detached job's result is
 * kept by the pool, out of a, until claimed (pool_tag, pool_claim); the same
 * timeout and crash rules apply to it. Past POOL_KEPT_MAX bytes of kept
 * results, a worker's next result waits in the worker (which then stops)
 * until claims make room. Past POOL_DETACHED_MAX running detached jobs, the
 * call waits for every job as with detach_ms < 0 (and says so in the log
 * once a minute).
 */
void pool_run(struct pool *pl, struct pool_job *jobs, size_t n, struct arena *a, int detach_ms);

#define POOL_DETACHED_MAX 10000
#define POOL_KEPT_MAX     (64u << 20)

/* Takes the detached jobs' results that arrived, without waiting (and
 * applies their deadlines and crash rules). */
void pool_pump(struct pool *pl);
/* Names detached job `ticket` by tag (non-zero; a deferred row's id). */
void pool_tag(struct pool *pl, uint64_t ticket, int64_t tag);
/* Drops detached job `ticket`: its result, when it comes, is thrown away. */
void pool_forget(struct pool *pl, uint64_t ticket);
/* Up to max tags of detached jobs that have ended (or whose result was lost:
 * pool_claim says so), oldest first; returns their count. */
size_t pool_ready(const struct pool *pl, int64_t *tags, size_t max);
/* The result of the detached job tagged tag into j (rc, err, out, in a):
 * 1, and the pool forgets it; 0 when the pool has none (it was lost, or the
 * daemon restarted since: run the message again); -1 while it runs. */
int pool_claim(struct pool *pl, int64_t tag, struct pool_job *j, struct arena *a);
/* Detached jobs running. */
size_t pool_detached(const struct pool *pl);

/* Worker processes started since pool_new (workers + restarts); for tests
 * and stats. */
unsigned long pool_spawns(const struct pool *pl);

#endif
