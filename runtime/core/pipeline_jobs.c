/*
 * pipeline_jobs.c - phase 2 of a batch (see pipeline.c): the analyses the
 * batch's messages asked for run in the worker pool, each job's result goes
 * into its message's outcome, and a job still running after
 * PIPELINE_DETACH_MS is left detached (its message waits in the deferred
 * table, deferred.h).
 */
#include <stdio.h>

#include "base/errors.h"
#include "base/log.h"
#include "base/webhook_url.h"
#include "pipeline_internal.h"
#include "sealpipe.h"
#include "storage/dataops.h"
#include "triggers.h"

/* How long a batch waits for its analyses before it leaves the jobs still
 * running detached (pool.h): one slow analysis delays only its own messages. */
#define PIPELINE_DETACH_MS 50

/* query() from an analysis: committed data of the buckets. */
int pipeline__answer_query(void *ctx, const struct host_query *q, struct arena *a,
                           struct record_vec *out, char *err, size_t errlen)
{
    struct pipeline *p = ctx;
    int rc = bucket_query(p->bk, q->serial, q->variable, q->start_ms, q->stop_ms, q->qty, a, out);
    if (rc)
        snprintf(err, errlen, "query failed: %s", errors_strerror(rc));
    return rc;
}

int pipeline__answer_devices(void *ctx, const struct host_devices_query *q, struct arena *a,
                             struct host_device **out, size_t *n, char *err, size_t errlen)
{
    struct pipeline *p = ctx;
    int rc = dataops_devices(p->ops, q, a, out, n);
    if (rc)
        snprintf(err, errlen, "devices failed: %s", errors_strerror(rc));
    return rc;
}

int pipeline__answer_aggregate(void *ctx, const struct host_aggregate_query *q,
                               struct host_aggregate *out, char *err, size_t errlen)
{
    struct pipeline *p = ctx;
    int rc = dataops_aggregate(p->ops, q, out);
    if (rc)
        snprintf(err, errlen, "aggregate failed: %s", errors_strerror(rc));
    return rc;
}

int pipeline__delete_data(struct pipeline *p, const struct outcome *o, char *err, size_t errlen)
{
    for (size_t k = 0; k < o->ndeletes; k++) {
        const struct host_delete *d = &o->deletes[k];
        int n = dataops_delete(p->ops, d->serial, d->variable, d->before_ms, HOST_DELETE_ROWS);
        if (n < 0) {
            snprintf(err, errlen, "delete_data for %s failed", d->serial);
            return SP_ERR_DB;
        }
        p->st.deleted += (uint64_t)n;
    }
    return SP_OK;
}

/* The dead-letter reason of a failed analysis run (pool_run's rc). */
static enum reason run_reason(int rc)
{
    switch (rc) {
    case SP_ERR_TIMEOUT: /* the wall clock or the instruction count */
        return R_timeout;
    case SP_ERR_NOMEM: /* the Lua state's memory */
        return R_memory;
    case SP_ERR_LIMIT: /* records, publishes, publish size, inserts, queries */
        return R_limit;
    case SP_ERR_CRASH:
        return R_worker_crash;
    default:
        return R_analysis_error;
    }
}

/* What handle() logged, then one WARN line if its log lines were cut. */
static void job_log(const struct pool_job *j, const char *name, const char *serial)
{
    for (size_t l = 0; l < j->out.nlogs; l++)
        LOG_INFO("analysis %s device=%s log: \"%s\"", name, serial, j->out.logs[l]);
    if (j->out.logs_dropped)
        LOG_WARN("analysis %s device=%s limit=log_lines: more than %d lines in one handle() call, "
                 "%zu dropped",
                 name, serial, HOST_LOG_LINES, j->out.logs_dropped);
}

/* The devices an analysis's results name: publish{seal_for=} needs a
 * registered device with a key, insert() any registered device. */
static void job_check_devices(struct pipeline *p, struct outcome *o, const char *name)
{
    const struct device_info *d;
    int rc;

    for (size_t m = 0; m < o->npubs && !o->reason; m++) {
        if (!o->pubs[m].seal_for)
            continue;
        rc = devcache_device(p->devs, o->pubs[m].seal_for, &d);
        if (rc == SP_ERR_NODEVICE || (rc == SP_OK && d->suite < 0))
            outcome_fail(o, R_analysis_error, "analysis %s: publish() sealed for %s '%s'", name,
                         rc ? "unknown device" : "a device without a key", o->pubs[m].seal_for);
        else if (rc)
            o->db_error = rc;
    }
    for (size_t m = 0; m < o->ninserts && !o->reason; m++) {
        rc = devcache_device(p->devs, o->inserts[m].serial, &d);
        if (rc == SP_ERR_NODEVICE)
            outcome_fail(o, R_analysis_error, "analysis %s: insert() for unknown device '%s'", name,
                         o->inserts[m].serial);
        else if (rc)
            o->db_error = rc;
    }
    for (size_t m = 0; m < o->ndeletes && !o->reason; m++) {
        rc = devcache_device(p->devs, o->deletes[m].serial, &d);
        if (rc == SP_ERR_NODEVICE)
            outcome_fail(o, R_analysis_error, "analysis %s: delete_data() for unknown device '%s'",
                         name, o->deletes[m].serial);
        else if (rc)
            o->db_error = rc;
    }
}

/* o's webhook() calls against the `webhooks` list of analysis ai as the
 * pool holds it (checked again: the worker runs user code). */
static void job_check_webhooks(struct pipeline *p, struct outcome *o, size_t ai, const char *name)
{
    char why[WEBHOOK_HOST_LEN + 128];
    size_t n;
    const char *const *allow = pool_webhooks(p->pool, ai, &n);

    for (size_t k = 0; k < o->nwebhooks && !o->reason; k++)
        if (webhook_url_check(o->webhooks[k].url, allow, n, why, sizeof(why)))
            outcome_fail(o, R_analysis_error, "analysis %s: %s", name, why);
}

/* Takes the result of job j into its message's outcome o. */
static void job_done(struct pipeline *p, struct outcome *o, const struct pool_job *j, int64_t now)
{
    const char *name = pool_name(p->pool, j->analysis);
    const char *serial = o->hm.serial ? o->hm.serial : "-";

    if (j->rc == SP_ERR_FULL) {
        o->deferred = 1;
        return;
    }
    job_log(j, name, serial);
    o->analysis = name;
    o->logs = j->out.logs;
    o->nlogs = j->out.nlogs;
    if (j->rc) {
        enum reason r = run_reason(j->rc);
        analyses_budget_fail(p->an, name, o->hm.serial, now);
        outcome_fail(o, r, "analysis %s: %s", name, j->err);
        /* A limit or a crash is an operator's business: one line each. */
        if (r != R_analysis_error)
            LOG_WARN("analysis %s device=%s reason=%s: %s", name, serial, outcome_reason_name(r),
                     j->err);
        return;
    }
    o->records = j->out.records;
    o->pubs = j->out.publishes;
    o->npubs = j->out.npublishes;
    o->inserts = j->out.inserts;
    o->ninserts = j->out.ninserts;
    o->runs = j->out.runs;
    o->nruns = j->out.nruns;
    o->webhooks = j->out.webhooks;
    o->nwebhooks = j->out.nwebhooks;
    o->deletes = j->out.deletes;
    o->ndeletes = j->out.ndeletes;
    job_check_devices(p, o, name);
    triggers_check_runs(p->trig, o, name);
    job_check_webhooks(p, o, j->analysis, name);
}

/*
 * A deferred row whose detached job has ended: its result, claimed from the
 * pool (whether or not the message still asks for it, so that none is left
 * behind). Returns 1 when the message needs no run: it took the result, or
 * the job is somehow still running (it stays deferred rather than run
 * twice); 0 when it has no result and is run again.
 */
static int claim_result(struct pipeline *p, size_t i, int wants, int64_t now)
{
    struct pool_job j = {.analysis = (size_t)p->outs[i].job};
    int c = p->from_table ? pool_claim(p->pool, p->table_ids[i], &j, &p->arena) : 0;

    if (c < 0)
        p->outs[i].deferred = 1;
    else if (c > 0 && wants)
        job_done(p, &p->outs[i], &j, now);
    return c != 0;
}

/* The jobs pool_run left running: their messages wait in the deferred table. */
static void keep_detached(struct pipeline *p, const struct pool_job *jobs, const size_t *of,
                          size_t k)
{
    for (size_t j = 0; j < k; j++)
        if (jobs[j].ticket) {
            p->outs[of[j]].deferred = 1;
            p->tickets[of[j]] = jobs[j].ticket;
        }
}

/* Phase 2: runs the analyses the batch asked for, in one stream to each worker. */
void pipeline__run_jobs(struct pipeline *p, size_t n, int64_t now)
{
    struct pool_job *jobs = arena_calloc(&p->arena, n ? n : 1, sizeof(*jobs));
    size_t *of = arena_calloc(&p->arena, n ? n : 1, sizeof(*of));
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        struct outcome *o = &p->outs[i];
        int wants = !(o->job < 0 || o->reason ||
                      (o->duplicate && !answers_duplicates(&p->msgs[i])) || o->db_error);
        if (claim_result(p, i, wants, now) || !wants)
            continue;
        if (!jobs || !of) {
            o->deferred = 1; /* the batch's memory is full, not the message's fault */
            continue;
        }
        const char *name = pool_name(p->pool, (size_t)o->job);
        if (analyses_budget_spent(p->an, name, o->hm.serial, now)) {
            outcome_fail(o, R_analysis_error,
                         "analysis %s: skipped, device %s failed it %d times within the last "
                         "minute",
                         name, o->hm.serial ? o->hm.serial : "-", p->o.error_budget);
            continue;
        }
        jobs[k] = (struct pool_job){.analysis = (size_t)o->job, .msg = &o->hm};
        of[k++] = i;
    }
    if (k)
        pool_run(p->pool, jobs, k, &p->arena, PIPELINE_DETACH_MS);
    keep_detached(p, jobs, of, k);
    for (size_t j = 0; j < k; j++)
        if (!jobs[j].ticket)
            job_done(p, &p->outs[of[j]], &jobs[j], now);
}
