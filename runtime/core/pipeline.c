/*
 * pipeline.c - the batch loop (see pipeline.h).
 *
 * One step: read a batch from the ingest source (or take the deferred rows
 * ready first, deferred.h) -> prepare each message (phase 1: duplicate check,
 * route, registry lookups; tipserver.c for $tip and $tips) -> run the
 * analyses the batch asked for in the worker pool (phase 2) -> write each
 * outcome in one transaction (phase 3: records, dead letters, counters,
 * answers' nonce seeds) -> COMMIT -> acknowledge, answer and publish.
 *
 * How each message ends, and the dead-letter reasons: outcome.h. An empty
 * retained publish (which clears the topic's retained message) is not a
 * record: it is acknowledged and counted as `ignored`.
 */
#include "pipeline.h"
#include "base/clock.h"
#include "base/errors.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analyses.h"
#include "deferred.h"
#include "storage/dataops.h"
#include "storage/devcache.h"
#include "storage/devstate.h"
#include "storage/devstatus.h"
#include "storage/positions.h"
#include "storage/retries.h"
#include "base/log.h"
#include "observe.h"
#include "base/metrics.h"
#include "outcome.h"
#include "sealpipe.h"
#include "base/sp_limits.h"
#include "pipeline_internal.h"
#include "tipserver.h"
#include "topicroute.h"
#include "triggers.h"
#include "transport/webhooks.h"

/* The thread's CPU time since the last mark goes to stage (METRIC_STAGE_CPU):
 * make bench's per-stage cost. */
static void stage_done(struct pipeline *p, const char *stage)
{
    int64_t now = clock_thread_cpu_us();

    if (now > p->stage_at)
        metrics_add_labels(METRIC_STAGE_CPU, stage, NULL, (uint64_t)(now - p->stage_at));
    p->stage_at = now;
}

static int queue_pub(struct pipeline *p, const char *topic, const uint8_t *payload, size_t len,
                     int qos, int retain, const struct ingest_origin *from,
                     const struct ingest_msg *to, const char *device)
{
    if (p->npubs == p->cappubs) {
        size_t cap = p->cappubs ? p->cappubs * 2 : 64;
        void *np = realloc(p->pubs, cap * sizeof(*p->pubs));
        if (!np)
            return SP_ERR_NOMEM;
        p->pubs = np;
        p->cappubs = cap;
    }
    p->pubs[p->npubs++] = (struct pending_pub){
        topic, payload, len, qos, retain, from ? *from : (struct ingest_origin){0}, to, device};
    return SP_OK;
}

/* 1 if m is a dead letter run again, a one-time token (ingest.h, settle). */
static int retried(const struct ingest_msg *m)
{
    return m->src && m->src->settle;
}

/*
 * 1 if m's bytes are one message however often they come: an envelope (its
 * counter and nonce) or a whole frame with "!N" (a device repeats it only in
 * a retry). Its dead letters keep its digest, so that the retry that stores
 * one of them deletes the others (storage/deadletters.h).
 */
static int one_of_a_kind(const struct ingest_msg *m, const struct outcome *o)
{
    return m->binding == INGEST_ENVELOPE || strncmp(m->topic, "$tips/", 6) == 0 ||
           (m->binding == INGEST_FRAME && o->has_counter);
}

/*
 * 1 if m was committed already: MQTT's redelivery by its packet id and
 * digest (the delivery window), a request's retry by its digest within the
 * retry_ms its route set (storage/retries.h). A lookup that fails counts as not seen: the
 * batch's commit then fails the same way.
 */
static int seen(struct pipeline *p, const struct ingest_msg *m, const struct outcome *o,
                int64_t now)
{
    if (retried(m))
        return 0;
    if (o->retry_ms)
        return retries_seen(p->retries, o->digest, now) == 1;
    return bucket_seen(p->bk, m->id, o->digest);
}

/* In the open batch: m is committed, so that its redelivery or retry is seen. */
static int remember(struct pipeline *p, const struct ingest_msg *m, const struct outcome *o,
                    int64_t now)
{
    if (retried(m))
        return SP_OK;
    if (o->retry_ms)
        return retries_remember(p->retries, o->digest, now + o->retry_ms);
    return bucket_remember(p->bk, m->id, o->digest);
}

/* ---- phase 1: prepare --------------------------------------------------- */

/*
 * Whose oversized message this is, for its dead letter: the publisher the
 * broker plugin stamped, else the device a $tip/$tips topic names, if there
 * is one. Nothing else of the message is read.
 */
static void too_large_device(struct pipeline *p, const struct ingest_msg *m, struct outcome *o)
{
    const struct device_info *d;

    if (m->publisher)
        o->serial = m->publisher;
    else if (o->answer_serial && devcache_device(p->devs, o->answer_serial, &d) == SP_OK)
        o->serial = d->serial;
}

/* When m was received: long before now for a backlog (ingest.h). */
static int64_t received_at(const struct ingest_msg *m, int64_t now)
{
    return m->received_ms > 0 ? m->received_ms : now;
}

/* Phase 1: everything but the analyses and the writes. Writes nothing. */
static void prepare(struct pipeline *p, const struct ingest_msg *m, int64_t now, struct outcome *o)
{
    int64_t received = received_at(m, now);

    outcome_reset(o);
    bucket_digest(m->topic, m->payload, m->len, o->digest);
    if (seen(p, m, o, now)) {
        o->duplicate = 1;
        /* A request's retry is answered again: its outcome is made again
         * (routed, run) to answer it, and stored by no one (finish). */
        if (!answers_duplicates(m))
            return;
    }
    if (m->retain && m->full_len == 0) {
        o->ignored = 1;
        return;
    }
    if (m->hops >= SP_LIMIT_HOPS) {
        outcome_fail(o, R_loop,
                     "produced by analyses %d times in a row (limit %d): a publish loop across "
                     "analyses or daemons",
                     m->hops, SP_LIMIT_HOPS);
        return;
    }
    if (m->full_len > SP_LIMIT_PAYLOAD) {
        outcome_fail(o, R_too_large, "%zu bytes, limit %d; the first %zu bytes are kept",
                     m->full_len, SP_LIMIT_PAYLOAD, m->len);
        /* Still answered: payload_too_large, envelope_too_large. */
        tipserver_too_large(p->tips, m, o);
        too_large_device(p, m, o);
    } else if (m->trigger) {
        triggers_route(p->trig, m, received, o);
    } else if (!tipserver_route(p->tips, m, received, o)) {
        topic_route(&p->topics, m, received, o);
    }
    /* A request's route says whether a retry of it can be told (retry_ms). */
    if (!o->duplicate && o->retry_ms && seen(p, m, o, now))
        o->duplicate = 1;
}

/* ---- phase 3: write ----------------------------------------------------- */

/*
 * The publishes of o with those for a device (seal_for) sealed, in *out (o's
 * own array when none is). Returns 0 or SP_ERR_DB; a sealing failure makes
 * o a dead letter.
 */
static int seal_publishes(struct pipeline *p, struct outcome *o, int64_t now,
                          struct host_publish **out)
{
    struct host_publish *pubs = o->pubs;

    for (size_t k = 0; k < o->npubs && !o->reason; k++) {
        if (!o->pubs[k].seal_for)
            continue;
        if (pubs == o->pubs) {
            pubs = arena_calloc(&p->arena, o->npubs, sizeof(*pubs));
            if (!pubs) {
                outcome_fail(o, R_analysis_error, "out of memory sealing publishes");
                break;
            }
            memcpy(pubs, o->pubs, o->npubs * sizeof(*pubs));
        }
        if (tipserver_seal_publish(p->tips, o, &o->pubs[k], &pubs[k], now) == SP_ERR_DB)
            return SP_ERR_DB;
    }
    *out = pubs;
    return SP_OK;
}

/* The records of o, and those its analysis insert()ed for other devices. */
static int insert_records(struct pipeline *p, const struct bucket_msg *bm, const struct outcome *o,
                          char *err, size_t errlen)
{
    /* A run for no device (a tick) may only insert(). */
    int rc = o->records.n ? bucket_insert(p->bk, bm, o->records.v, o->records.n, err, errlen) : 0;
    for (size_t k = 0; k < o->ninserts && !rc; k++) {
        struct bucket_msg im = *bm;
        im.serial = o->inserts[k].serial;
        rc = bucket_insert(p->bk, &im, o->inserts[k].records.v, o->inserts[k].records.n, err,
                           errlen);
    }
    return rc ? rc : pipeline__delete_data(p, o, err, errlen);
}

/* o's records are stored: counts them and queues its analysis's publishes. */
static void stored(struct pipeline *p, const struct ingest_msg *m, const struct outcome *o,
                   const struct host_publish *pubs)
{
    p->st.stored += !m->trigger; /* a run is no message (triggers.h counts it) */
    p->st.records += o->records.n;
    for (size_t k = 0; k < o->ninserts; k++)
        p->st.records += o->inserts[k].records.n;
    /* An analysis speaks for the profile of the device it ran for: the
     * broker plugin delivers its publishes to that profile. Each carries one
     * hop more than the message that ran it. */
    const struct device_info *dev = o->dev;
    if (!o->npubs)
        return;
    if (!dev && o->serial && devcache_device(p->devs, o->serial, &dev) != SP_OK)
        dev = NULL;
    struct ingest_origin from = {.profile = dev ? arena_strdup(&p->arena, dev->profile) : NULL,
                                 .hops = m->hops + 1};
    for (size_t i = 0; i < o->npubs; i++) {
        const struct host_publish *hp = &pubs[i];
        if (queue_pub(p, hp->topic, hp->payload, hp->payload_len, hp->qos, hp->retain, &from, NULL,
                      hp->seal_for))
            LOG_WARN("publish dropped topic=%s reason=out_of_memory", hp->topic);
    }
}

/*
 * Queues the answer to TagoTiP message m, made in the open batch, then the
 * commands its request picks up (HTTP, UDP, TCP). 0 or SP_ERR_DB.
 */
static int queue_answer(struct pipeline *p, const struct ingest_msg *m, const struct outcome *o,
                        int64_t now)
{
    struct tip_answer a[4];
    size_t n = 0;
    int rc = tipserver_answer(p->tips, m, o, &a[0]);

    if (rc <= 0)
        return rc; /* no answer (logged), or SP_ERR_DB */
    if ((rc = tipserver_pickup(p->tips, m, o, now, a + 1, 3, &n)))
        return rc;
    const char *to = observe_device(m, o);
    for (size_t i = 0; i <= n; i++)
        if (queue_pub(p, a[i].topic, a[i].payload, a[i].len, 1, 0, NULL, m, to))
            LOG_WARN("answer dropped topic=%s reason=out_of_memory", a[i].topic);
    return SP_OK;
}

/*
 * A message of HTTP, UDP or TCP refused before its sender proved who it is
 * (wrong auth hash, unknown device, an envelope no key opens, a frame that
 * names no one, too large to read): no device's data, so no dead letter
 * (anyone on the network could fill the table), but counted, logged at most
 * once a second, and answered.
 */
static void refuse(struct pipeline *p, const struct ingest_msg *m, const struct outcome *o,
                   int64_t now)
{
    p->st.refused++;
    if (now - p->refused_logged < 1000) {
        p->refused_quiet++;
        return;
    }
    LOG_INFO("refused source=%s topic=%s reason=%s detail=\"%s\" not_logged=%llu",
             m->src ? m->src->name : "-", m->topic, outcome_reason_name(o->reason), o->detail,
             (unsigned long long)p->refused_quiet);
    p->refused_logged = now;
    p->refused_quiet = 0;
}

/*
 * o, a dead letter, into the open batch, unless its retry kept the one it
 * was (kept: settle's 1). It is the device's it proved it is, the broker's
 * stamp included (an envelope no key opens still came from a device's
 * login), as the inspector and the device's status say. 0 or SP_ERR_DB.
 */
static int write_dead(struct pipeline *p, const struct ingest_msg *m, const struct outcome *o,
                      struct bucket_msg *bm, int kept)
{
    const char *reason = outcome_reason_name(o->reason), *dev = observe_device(m, o);

    LOG_DEBUG("dead letter topic=%s reason=%s detail=\"%s\"", m->topic, reason, o->detail);
    bm->serial = *dev ? dev : NULL;
    if (!kept && bucket_dead(p->bk, bm, reason, o->detail, m->payload, m->len))
        return SP_ERR_DB;
    p->st.dead[o->reason]++;
    return SP_OK;
}

/* A message written (stored or a dead letter): the stats and its device's,
 * its counter advanced. 0 or SP_ERR_DB. */
static int count_message(struct pipeline *p, const struct ingest_msg *m, const struct outcome *o,
                         int64_t received)
{
    /* The device the inspector names (observe.h): one rule for both. */
    struct devstate_msg dm = {.serial = observe_device(m, o),
                              .created = o->created,
                              .at = received,
                              .records = o->reason ? 0 : o->records.n,
                              .dead = !!o->reason,
                              .retry = retried(m),
                              .counter = o->counter_new ? (int64_t)o->env_counter : -1};
    p->st.messages++;
    return devstate_message(p->tallies, &dm);
}

/* In the open batch: a retried dead letter's source consumes it or keeps it
 * (ingest.h, settle): 1 when it kept it, 0, or SP_ERR_DB. */
static int settle(const struct ingest_msg *m, const struct outcome *o)
{
    if (!retried(m))
        return 0;
    return m->src->settle(m->src->ctx, m, o->serial,
                          o->reason ? outcome_reason_name(o->reason) : NULL, o->detail);
}

/*
 * In the open batch: whether o's TagoTiP/S counter is new (then
 * count_message advances the device's to it), or o a replay dead letter. A
 * retried dead letter is a one-time token (ingest.h, settle): its counter is
 * no replay, and the counter is not moved back. Returns 0 or SP_ERR_DB.
 */
static int advance_counter(struct pipeline *p, const struct ingest_msg *m, struct outcome *o)
{
    int rc;

    if (o->reason || !o->check_counter)
        return SP_OK;
    if ((rc = devstate_counter_new(p->tallies, o->serial, o->created, o->env_counter)) < 0)
        return SP_ERR_DB;
    o->counter_new = rc;
    if (!rc && !retried(m))
        outcome_fail(o, R_replay, "counter %u not greater than the last accepted one",
                     o->env_counter);
    return SP_OK;
}

/* In the open batch: the webhook() calls of o, when it is stored. 0 or SP_ERR_DB. */
static int queue_webhooks(struct pipeline *p, const struct ingest_msg *m, const struct outcome *o,
                          int64_t now)
{
    if (o->reason || !o->nwebhooks)
        return SP_OK;
    if (!p->wh) {
        LOG_WARN("analysis %s: %zu webhook() calls dropped: no webhook sender", o->analysis,
                 o->nwebhooks);
        return SP_OK;
    }
    return webhooks_queue(p->wh, o->analysis, o->serial, m->topic, o->webhooks, o->nwebhooks, now);
}

/*
 * Phase 3: writes one message's outcome inside the open batch. Returns 0 or
 * SP_ERR_DB, or SP_ERR_PAYLOAD when the database refused the message's
 * records and the batch is not careful: the caller then rolls the batch back
 * and writes it again carefully, each message in its own savepoint, so that
 * the refused one becomes a dead letter alone. Savepoints cost two
 * statements a message, and a refusal means a record got past validation,
 * so the common path goes without.
 */
static int finish(struct pipeline *p, const struct ingest_msg *m, int64_t now, struct outcome *o,
                  int careful)
{
    struct bucket_msg bm = {.topic = m->topic, .received_ms = received_at(m, now), .mid = m->id};
    struct host_publish *pubs;
    char err[512];
    int rc;

    /* Seen now but not in prepare(): a duplicate within this batch. */
    if (o->duplicate || seen(p, m, o, now)) {
        p->st.duplicates++;
        o->duplicate = 1; /* a retry: its answer takes no new command */
        if (answers_duplicates(m) && o->answer && !o->db_error)
            return queue_answer(p, m, o, now);
        return SP_OK;
    }
    if (o->ignored) {
        p->st.ignored++;
        return SP_OK;
    }
    if (o->reason && m->binding != INGEST_MQTT && !o->authenticated && !o->db_error) {
        refuse(p, m, o, now);
        if (retried(m))
            return settle(m, o) < 0 ? SP_ERR_DB : SP_OK;
        return o->answer ? queue_answer(p, m, o, now) : SP_OK;
    }
    if (o->db_error) {
        LOG_ERROR("registry lookup failed topic=%s error=%s", m->topic,
                  errors_strerror(o->db_error));
        return SP_ERR_DB;
    }
    memcpy(bm.digest, o->digest, sizeof(bm.digest));
    bm.one_of_a_kind = one_of_a_kind(m, o);
    if (careful && (rc = bucket_msg_begin(p->bk)))
        return rc;
    bm.serial = o->serial;
    if (advance_counter(p, m, o))
        goto db_error;
    /* The key that opened it seals what goes to the device from now on. */
    if (!o->reason && !retried(m) && tipserver_key_used(p->tips, o))
        goto db_error;
    /* Sealed publishes first: a failure makes the message a dead letter. */
    if (seal_publishes(p, o, now, &pubs))
        goto db_error;
    if (!o->reason) {
        rc = insert_records(p, &bm, o, err, sizeof(err));
        if (rc == SP_ERR_PAYLOAD && !careful)
            return rc;
        if (rc == SP_ERR_PAYLOAD) {
            /* Undo what the message wrote (its counter advance included)
             * and keep it as a dead letter instead. */
            if ((rc = bucket_msg_end(p->bk, 0)) || (rc = bucket_msg_begin(p->bk)))
                return rc;
            o->counter_new = 0;
            outcome_fail(o, R_invalid_body, "the bucket refused a record: %s", err);
            LOG_WARN("records refused topic=%s error=\"%s\"", m->topic, err);
        } else if (rc) {
            LOG_ERROR("bucket insert failed topic=%s error=\"%s\"", m->topic, err);
            goto db_error;
        } else {
            stored(p, m, o, pubs);
        }
    }
    if ((rc = settle(m, o)) < 0)
        goto db_error;
    if (o->reason && write_dead(p, m, o, &bm, rc))
        goto db_error;
    if (remember(p, m, o, now) || (o->answer && !retried(m) && queue_answer(p, m, o, now)))
        goto db_error;
    if (careful && (rc = bucket_msg_end(p->bk, 1)))
        return rc;
    if ((rc = triggers_finish(p->trig, m, o, now)) || (rc = queue_webhooks(p, m, o, now)))
        return rc;
    return m->trigger ? SP_OK : count_message(p, m, o, bm.received_ms);
db_error:
    /* The whole batch is rolled back by the caller; this only tidies up. */
    if (careful && bucket_msg_end(p->bk, 0) != SP_OK)
        LOG_DEBUG("savepoint rollback failed after a database error");
    return SP_ERR_DB;
}

/* ---- the batch ---------------------------------------------------------- */

/* Source k's messages appended to p->msgs[*n..]; a failure puts it down. */
static void read_source(struct pipeline *p, size_t k, int timeout_ms, size_t *n)
{
    const struct ingest_source *src = p->srcs[k].src;
    size_t got = 0;
    int rc;

    if (*n >= p->o.batch || arena_used(&p->arena) >= SP_LIMIT_BATCH_INPUT)
        return;
    rc = src->read(src->ctx, timeout_ms, &p->arena, p->msgs + *n, p->o.batch - *n, &got);
    for (size_t i = *n; i < *n + got; i++)
        p->msgs[i].src = src;
    *n += got;
    if (rc && !src->stays_up) {
        p->srcs[k].up = 0;
        p->srcs[k].lost = rc;
    }
}

/*
 * Waits up to timeout_ms until a source that is up has something to read:
 * poll() on their wait_fd. A source without one is read with the timeout
 * itself when it is the only one up; among others it is read at once, and
 * the wait is cut to 20 ms so that it is read again soon.
 */
static void wait_sources(struct pipeline *p, int timeout_ms)
{
    struct pollfd fds[PIPELINE_MAX_SOURCES];
    nfds_t nfds = 0;

    for (size_t k = 0; k < p->nsrcs; k++) {
        const struct ingest_source *src = p->srcs[k].src;
        int fd = p->srcs[k].up && src->wait_fd ? src->wait_fd(src->ctx) : -1;
        if (fd >= 0)
            fds[nfds++] = (struct pollfd){.fd = fd, .events = POLLIN};
        else if (p->srcs[k].up && timeout_ms > 20)
            timeout_ms = 20;
    }
    if (poll(fds, nfds, timeout_ms) < 0 && errno != EINTR)
        LOG_DEBUG("poll: %s", strerror(errno));
}

/* What every source that is up has now, appended to p->msgs[*n..]. */
static void read_all(struct pipeline *p, size_t *n)
{
    for (size_t k = 0; k < p->nsrcs; k++)
        if (p->srcs[k].up)
            read_source(p, k, 0, n);
}

/* A batch this large commits without lingering: its per-batch costs are
 * spread thin already. */
#define LINGER_ENOUGH 256
/* How often a lingering batch looks for more: waking for every message (a
 * journal append wakes inotify) cost more than the commits saved. */
#define LINGER_TICK_MS 2

/*
 * Lets a small batch of n messages wait up to linger_ms for more. Under a
 * steady load of a few thousand messages a second, batches were of three
 * messages, and the per-batch costs (the commit and its fsync, the sources'
 * bookkeeping) cost 91 us a message at 5,000 msg/s. A lone message waits
 * linger_ms more; a burst that fills the batch stops the wait at the next
 * tick.
 */
static void linger(struct pipeline *p, size_t *n)
{
    int64_t until = clock_mono_ms() + p->o.linger_ms;
    size_t enough = p->o.batch < LINGER_ENOUGH ? p->o.batch : LINGER_ENOUGH;

    while (*n > 0 && *n < enough && arena_used(&p->arena) < SP_LIMIT_BATCH_INPUT) {
        int64_t left = until - clock_mono_ms();
        if (left <= 0)
            return;
        poll(NULL, 0, (int)(left < LINGER_TICK_MS ? left : LINGER_TICK_MS));
        read_all(p, n);
    }
}

/* read_batch's first read. */
static void read_first(struct pipeline *p, int timeout_ms, size_t *n)
{
    size_t up = 0, last = 0;

    *n = 0;
    for (size_t k = 0; k < p->nsrcs; k++) {
        p->srcs[k].lost = SP_OK;
        if (p->srcs[k].up) {
            up++;
            last = k;
        }
    }
    if (up == 1) {
        read_source(p, last, timeout_ms, n);
        return;
    }
    for (int round = 0; round < 2 && *n == 0; round++) {
        if (round == 1)
            wait_sources(p, timeout_ms);
        read_all(p, n);
    }
}

/*
 * Reads a batch from the sources that are up into p->msgs, each taking what
 * it has, in order. With one source up it waits in that source's read();
 * with several, in wait_sources() when none had anything at once. Then a
 * small batch lingers for more.
 */
static void read_batch(struct pipeline *p, int timeout_ms, size_t *n)
{
    read_first(p, timeout_ms, n);
    if (p->o.linger_ms > 0)
        linger(p, n);
}

/* In the open batch, once a minute: forgets the requests whose retries are over. */
static int prune_retries(struct pipeline *p, int64_t now)
{
    if (now - p->pruned < 60000)
        return SP_OK;
    p->pruned = now;
    return retries_prune(p->retries, now);
}

/* In the open batch: where each source that keeps a log now stands. */
static int write_positions(struct pipeline *p)
{
    for (size_t k = 0; k < p->nsrcs; k++) {
        const struct ingest_source *src = p->srcs[k].src;
        int64_t pos = src->position && p->srcs[k].up ? src->position(src->ctx) : -1;
        if (pos >= 0 && positions_set(p->positions, src->name, pos))
            return SP_ERR_DB;
    }
    return SP_OK;
}

/* In the open batch: the devices' counts and connection changes. */
static int write_status(struct pipeline *p)
{
    int rc = devstate_write(p->tallies);

    return rc == SP_OK && p->ds ? devstatus_write(p->ds) : rc;
}

/*
 * Committed: the batch's counts go to the metrics (base/metrics.h), which
 * the stats line reads too; its size and times to the histograms.
 */
static void count_committed(struct pipeline *p, const struct stats *was, size_t n, size_t kept,
                            int64_t now, int64_t began_us)
{
    const struct stats *st = &p->st;
    int64_t done_us = clock_wall_us();

    metrics_observe(METRIC_COMMIT_SECONDS, (uint64_t)(clock_mono_us() - began_us));
    metrics_observe(METRIC_COMMIT_BATCH, kept);
    metrics_add(METRIC_COMMITTED, st->messages - was->messages);
    metrics_add(METRIC_STORED, st->stored - was->stored);
    metrics_add(METRIC_RECORDS, st->records - was->records);
    metrics_add(METRIC_DUPLICATES, st->duplicates - was->duplicates);
    metrics_add(METRIC_IGNORED, st->ignored - was->ignored);
    metrics_add(METRIC_REFUSED, st->refused - was->refused);
    if (st->deleted != was->deleted)
        metrics_add_labels(METRIC_RECORDS_DELETED, "analysis", NULL, st->deleted - was->deleted);
    for (int r = 1; r < R_COUNT; r++)
        if (st->dead[r] != was->dead[r])
            metrics_add_labels(METRIC_DEAD, outcome_reason_name((enum reason)r), NULL,
                               st->dead[r] - was->dead[r]);
    /* Only what was published just now: a retried dead letter's receipt is
     * its first arrival, and a deferred message's receipt is not kept. */
    for (size_t i = 0; i < n && !p->from_table; i++) {
        if (p->outs[i].deferred || retried(&p->msgs[i]))
            continue;
        int64_t us = done_us - received_at(&p->msgs[i], now) * 1000;
        metrics_observe(METRIC_PUBLISH_TO_COMMIT, us > 0 ? (uint64_t)us : 0);
    }
}

/*
 * Writes the batch's n messages in one transaction: the kept ones processed,
 * the deferred ones kept for later (deferred_keep), with the sources' positions,
 * and commits. A batch the bucket refuses a record of is written again
 * carefully (see finish). Returns 0, or an error with the batch rolled back
 * and its counts undone.
 */
static int write_batch(struct pipeline *p, size_t kept, size_t n, int64_t now)
{
    struct stats before = p->st;
    int64_t began_us = clock_mono_us();
    int rc;

    for (int careful = 0;; careful = 1) {
        if ((rc = bucket_begin(p->bk))) {
            deferred_settle(p->df, p->outs, p->table_ids, p->tickets, n, 0);
            return rc;
        }
        for (size_t i = 0; i < n && !rc; i++)
            if (!p->outs[i].deferred)
                rc = finish(p, &p->msgs[i], now, &p->outs[i], careful);
        if (rc == SP_ERR_PAYLOAD && !careful) {
            LOG_INFO("batch holds a message the bucket refuses; processing it again "
                     "message by message");
            bucket_rollback(p->bk);
            devstate_done(p->tallies, 0);
            devstatus_done(p->ds, 0);
            triggers_done(p->trig, 0);
            if (p->wh)
                webhooks_done(p->wh, 0);
            p->st = before;
            p->npubs = 0;
            continue;
        }
        if (!rc && !(rc = deferred_keep(p->df, p->msgs, p->outs, p->from_table, p->table_ids, n)) &&
            !(rc = triggers_deferred(p->trig, p->msgs, p->outs, n)) &&
            !(rc = prune_retries(p, now)) && !(rc = write_positions(p)) &&
            !(rc = write_status(p))) {
            stage_done(p, "write");
            rc = bucket_commit(p->bk);
            stage_done(p, "commit");
        }
        if (rc) {
            bucket_rollback(p->bk);
            p->st = before; /* the batch will be redelivered and counted then */
        } else {
            count_committed(p, &before, n, kept, now, began_us);
        }
        deferred_settle(p->df, p->outs, p->table_ids, p->tickets, n, rc == SP_OK);
        devstate_done(p->tallies, rc == SP_OK);
        devstatus_done(p->ds, rc == SP_OK);
        triggers_done(p->trig, rc == SP_OK);
        if (p->wh)
            webhooks_done(p->wh, rc == SP_OK);
        return rc;
    }
}

/*
 * Phases 1 to 3 and the commit for the n messages read. Returns 0 with *n
 * the number processed (the rest are deferred), or SP_ERR_DB.
 */
static int run_batch(struct pipeline *p, size_t *n)
{
    int64_t now = clock_wall_ms();
    size_t kept;
    int rc;

    if ((rc = devcache_sync(p->devs)))
        goto fail;
    memset(p->tickets, 0, *n * sizeof(*p->tickets));
    for (size_t i = 0; i < *n; i++)
        prepare(p, &p->msgs[i], now, &p->outs[i]);
    stage_done(p, "prepare");
    pipeline__run_jobs(p, *n, now);
    stage_done(p, "analyses");
    LOG_DEBUG("batch of %zu messages holds %zu KiB", *n, arena_used(&p->arena) >> 10);
    kept = deferred_cut(p->outs, p->tickets, *n, p->pool);
    if ((rc = write_batch(p, kept, *n, now)))
        goto fail;
    for (size_t i = 0; i < *n && p->in; i++)
        if (!p->outs[i].deferred)
            observe_message(p->in, &p->msgs[i], &p->outs[i], received_at(&p->msgs[i], now));
    stage_done(p, "observe");
    *n = kept;
    return SP_OK;
fail:
    LOG_ERROR("batch not committed messages=%zu error=%s; nothing acknowledged, reconnecting", *n,
              errors_strerror(rc));
    return SP_ERR_DB;
}

/* One of the batch's publishes: an answer through its message's source, or,
 * for a message taken from the deferred table (no source), through the
 * answers' output at QoS 1 as a source gives it; any other publish through
 * the output. */
static int send_one(struct pipeline *p, const struct pending_pub *pp)
{
    const struct ingest_source *src = pp->to ? pp->to->src : NULL;
    const struct ingest_output *out = p->out;

    if (src)
        return src->answer(src->ctx, pp->to, pp->topic, pp->payload, pp->len);
    if (pp->to && p->answers_out)
        return p->answers_out->publish(p->answers_out->ctx, pp->topic, pp->payload, pp->len, 1, 0,
                                       NULL);
    return out->publish(out->ctx, pp->topic, pp->payload, pp->len, pp->qos, pp->retain, &pp->from);
}

/* Committed: the answers and publishes, in the order they were made. */
static void send_pending(struct pipeline *p)
{
    for (size_t i = 0; i < p->npubs; i++) {
        const struct pending_pub *pp = &p->pubs[i];
        int rc = send_one(p, pp);
        if (rc)
            LOG_WARN("publish failed topic=%s", pp->topic);
        else if (pp->device)
            observe_sent(p->in, pp->device, pp->to ? "answer" : "publish", pp->topic,
                         pp->to ? pp->to->via : NULL, pp->len, clock_wall_ms());
    }
}

/* The batch could not be committed: every source that is up drops what it
 * read since its last ack() (the senders deliver again). */
static void drop_sources(struct pipeline *p)
{
    for (size_t k = 0; k < p->nsrcs; k++) {
        const struct ingest_source *src = p->srcs[k].src;
        if (!p->srcs[k].up)
            continue;
        src->drop(src->ctx);
        if (!src->stays_up) {
            p->srcs[k].up = 0;
            p->srcs[k].lost = SP_ERR_DB;
        }
    }
}

/*
 * Committed: each source that is still up acknowledges what it read, and
 * the output (the first source's link) sends what is queued. Returns the
 * error of the first source lost in this step, or SP_OK.
 */
static int ack_sources(struct pipeline *p)
{
    int lost = SP_OK, rc;

    for (size_t k = 0; k < p->nsrcs; k++) {
        const struct ingest_source *src = p->srcs[k].src;
        if (p->srcs[k].up && (rc = src->ack(src->ctx)) && !src->stays_up) {
            p->srcs[k].up = 0;
            p->srcs[k].lost = rc;
        }
    }
    if (p->nsrcs && p->srcs[0].up && (rc = p->out->flush(p->out->ctx))) {
        p->srcs[0].up = 0;
        p->srcs[0].lost = rc;
    }
    for (size_t k = 0; k < p->nsrcs && !lost; k++)
        lost = p->srcs[k].lost;
    return lost;
}

int pipeline_step(struct pipeline *p, int timeout_ms)
{
    size_t n = 0;
    int rc;

    assert(p->nsrcs && p->out);
    p->stage_at = clock_thread_cpu_us();
    arena_reset(&p->arena);
    p->npubs = 0;
    pool_pump(p->pool);
    /* Deferred messages first: they were read before anything still queued. */
    p->from_table = deferred_any(p->df) &&
                    (n = deferred_next(p->df, &p->arena, p->msgs, p->table_ids, p->o.batch)) > 0;
    if (!p->from_table)
        read_batch(p, timeout_ms, &n);
    if (n > 0) {
        /* Only steps with messages count: an idle step's polling is no stage
         * of a batch (and would move the counters while nothing happens). */
        stage_done(p, "read");
        if (run_batch(p, &n)) {
            drop_sources(p);
            return SP_ERR_DB;
        }
        send_pending(p);
    }
    rc = ack_sources(p);
    if (n > 0)
        stage_done(p, "send");
    return rc ? rc : (int)n;
}

/* ---- set-up ------------------------------------------------------------- */

int pipeline_new(const struct pipeline_opts *o, struct registry *reg, struct bucket *bk,
                 struct pool *pl, struct pipeline **out)
{
    struct pipeline *p = calloc(1, sizeof(*p));
    char err[256];
    int rc;

    if (!p)
        return SP_ERR_NOMEM;
    if ((rc = devstate_open(bk, &p->tallies, err, sizeof err))) {
        LOG_ERROR("%s", err);
        free(p);
        return rc;
    }
    p->o = *o;
    p->reg = reg;
    p->bk = bk;
    p->pool = pl;
    arena_init(&p->arena, SP_LIMIT_ARENA);
    p->msgs = calloc(o->batch, sizeof(*p->msgs));
    p->outs = calloc(o->batch, sizeof(*p->outs));
    p->table_ids = calloc(o->batch, sizeof(*p->table_ids));
    p->tickets = calloc(o->batch, sizeof(*p->tickets));
    p->devs = devcache_new(reg);
    struct analyses_opts ao = {
        .dir = o->analyses_dir, .script_max = o->script_max, .error_budget = o->error_budget};
    struct tipserver_opts to = {.arena = &p->arena,
                                .devs = p->devs,
                                .bk = bk,
                                .pool = pl,
                                .key_grace_ms = (int64_t)o->key_grace * 1000};
    if (!p->msgs || !p->outs || !p->table_ids || !p->tickets || !p->devs ||
        deferred_open(bk, pl, o->batch, &p->df) || analyses_new(&ao, pl, &p->an) ||
        tipserver_new(&to, &p->tips) || retries_open(bk, &p->retries) ||
        triggers_open(bk, pl, p->devs, o->trigger_queue_max, &p->trig) ||
        positions_open(bk, &p->positions) || dataops_open(bk, &p->ops)) {
        pipeline_free(p);
        return SP_ERR_NOMEM;
    }
    p->topics = (struct topic_route){.an = p->an, .devs = p->devs, .pool = pl, .arena = &p->arena};
    pool_set_query(pl, pipeline__answer_query, p);
    pool_set_reads(pl, pipeline__answer_devices, pipeline__answer_aggregate, p);
    *out = p;
    return SP_OK;
}

void pipeline_free(struct pipeline *p)
{
    if (!p)
        return;
    tipserver_free(p->tips);
    triggers_free(p->trig);
    devstate_close(p->tallies);
    retries_close(p->retries);
    positions_close(p->positions);
    dataops_close(p->ops);
    analyses_free(p->an);
    arena_cleanup(&p->arena);
    devcache_free(p->devs);
    free(p->table_ids);
    free(p->tickets);
    deferred_free(p->df);
    free(p->outs);
    free(p->msgs);
    free(p->pubs);
    free(p);
}

void pipeline_attach(struct pipeline *p, const struct ingest_source *src,
                     const struct ingest_output *out)
{
    p->srcs[0].src = src;
    p->srcs[0].up = 1;
    p->nsrcs = p->nsrcs ? p->nsrcs : 1;
    p->out = out;
}

void pipeline_answers_via(struct pipeline *p, const struct ingest_output *answers)
{
    p->answers_out = answers;
}

int pipeline_add_source(struct pipeline *p, const struct ingest_source *src)
{
    if (p->nsrcs == 0 || p->nsrcs == PIPELINE_MAX_SOURCES)
        return SP_ERR_FULL;
    p->srcs[p->nsrcs].src = src;
    p->srcs[p->nsrcs++].up = 1;
    return SP_OK;
}

static size_t source_slot(const struct pipeline *p, const struct ingest_source *src)
{
    size_t k = 0;

    while (k < p->nsrcs && p->srcs[k].src != src)
        k++;
    return k;
}

void pipeline_source_up(struct pipeline *p, const struct ingest_source *src)
{
    size_t k = source_slot(p, src);

    if (k < p->nsrcs)
        p->srcs[k].up = 1;
}

int pipeline_source_is_up(const struct pipeline *p, const struct ingest_source *src)
{
    size_t k = source_slot(p, src);

    return k < p->nsrcs && p->srcs[k].up;
}

int pipeline_scan_analyses(struct pipeline *p)
{
    return analyses_scan(p->an);
}

int pipeline_source_position(struct pipeline *p, const char *name, int64_t *pos)
{
    return positions_get(p->positions, name, pos);
}

int pipeline_subscribe(struct pipeline *p, struct mqlink *link, char *err, size_t errlen)
{
    return analyses_subscribe(p->an, link, err, errlen);
}

void pipeline_resubscribe(struct pipeline *p, struct mqlink *link)
{
    analyses_resubscribe(p->an, link);
}

int pipeline_commands(struct pipeline *p)
{
    arena_reset(&p->arena);
    return tipserver_commands(p->tips, p->out, p->in, clock_wall_ms());
}

const struct ingest_source *pipeline_trigger_source(struct pipeline *p)
{
    return triggers_source(p->trig);
}

int pipeline_triggers(struct pipeline *p, int caught_up)
{
    int64_t now = clock_wall_ms();
    int rc = triggers_schedule_step(p->trig, now), ev = triggers_events_step(p->trig, now);

    if (rc >= 0 && ev < 0)
        rc = ev;
    if ((ev = triggers_due_step(p->trig, now)) < 0)
        rc = ev;
    /* A silence is judged on committed, folded last_sent times. */
    if (caught_up && triggers_offline_due(p->trig, now) && pipeline_fold(p, 1) == SP_OK &&
        (ev = triggers_offline_step(p->trig, now)) < 0)
        rc = ev;
    return rc < 0 ? rc : SP_OK;
}

int pipeline_fold(struct pipeline *p, int all)
{
    return devstate_flush(p->tallies, all);
}

void pipeline_observe(struct pipeline *p, struct inspect *in, struct devstatus *ds)
{
    p->in = in;
    p->ds = ds;
}

void pipeline_webhooks(struct pipeline *p, struct webhooks *wh)
{
    p->wh = wh;
}
