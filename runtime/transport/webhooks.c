/*
 * webhooks.c - delivery of webhook() requests (see webhooks.h): the outbox
 * rows a batch writes, the sender they are handed to between batches, and
 * what each answer makes of its row (deleted, retried later, or a
 * webhook_failed dead letter).
 *
 * The sender (webhook_send.c) runs a thread of its own; this file runs on
 * the pipeline's thread and is the only one that writes the outbox's
 * results. The ids handed to the sender and not yet answered are kept in
 * `busy`, so a due row is never in the sender twice.
 */
#include "webhooks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "base/arena.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/errors.h"
#include "base/json.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/webhook_url.h"
#include "storage/bucket.h"
#include "storage/outbox.h"
#include "webhook_send.h"

#define WEBHOOKS_BUSY    (WEBHOOKS_IN_FLIGHT + WEBHOOKS_WAITING)
#define WEBHOOKS_SCRATCH (2u << 20) /* a request as JSON: body in base64 and headers */
#define WEBHOOKS_ARENA   (8u << 20)

struct webhooks {
    struct webhooks_opts o;
    struct bucket *bk;
    struct outbox *ob;
    struct webhook_sender *ws;
    int64_t busy[WEBHOOKS_BUSY]; /* ids in the sender */
    size_t nbusy;
    int64_t rows;       /* rows committed, at the last count */
    size_t batch_added; /* rows the open batch adds */
    uint64_t batch_dead;
    uint64_t ok, retry, failed; /* results of the open turn */
    struct arena arena;
    struct buf scratch;
    struct webhook_result res[WEBHOOKS_BUSY * 2]; /* a turn's: answers, then refusals */
};

int webhooks_open(struct bucket *bk, const struct webhooks_opts *o, struct webhooks **out)
{
    struct webhooks *wh = calloc(1, sizeof(*wh));
    struct webhook_sender_opts so = {.timeout_ms = o->timeout_ms,
                                     .connect_timeout_ms =
                                         o->timeout_ms < 5000 ? o->timeout_ms : 5000,
                                     .max_in_flight = WEBHOOKS_IN_FLIGHT,
                                     .max_per_host = WEBHOOKS_PER_HOST,
                                     .max_waiting = WEBHOOKS_WAITING};
    int rc;

    if (!wh)
        return SP_ERR_NOMEM;
    wh->o = *o;
    wh->bk = bk;
    arena_init(&wh->arena, WEBHOOKS_ARENA);
    buf_init(&wh->scratch, WEBHOOKS_SCRATCH);
    if ((rc = outbox_open(bk, &wh->ob)) || (rc = webhook_sender_start(&so, &wh->ws))) {
        webhooks_close(wh);
        return rc;
    }
    wh->rows = outbox_count(wh->ob);
    *out = wh;
    return SP_OK;
}

static int write_results(struct webhooks *wh, const struct webhook_result *res, size_t n,
                         int64_t now);
static void unbusy(struct webhooks *wh, int64_t id);

void webhooks_close(struct webhooks *wh)
{
    if (!wh)
        return;
    /* The answers already in: written, so that they are not sent again
     * after the next start (those still in flight are). */
    size_t n = webhook_sender_take(wh->ws, wh->res, WEBHOOKS_BUSY);
    for (size_t i = 0; i < n; i++)
        unbusy(wh, wh->res[i].id);
    if (n && write_results(wh, wh->res, n, clock_wall_ms()) < 0)
        LOG_WARN("webhook answers not written at stop (database error); sent again at start");
    webhook_sender_stop(wh->ws);
    outbox_close(wh->ob);
    arena_cleanup(&wh->arena);
    buf_cleanup(&wh->scratch);
    free(wh);
}

/* ---- queueing, in the batch --------------------------------------------- */

/* The headers of call w as a JSON object, NUL-terminated, in b. */
static int headers_json(struct buf *b, const struct host_webhook *w)
{
    buf_reset(b);
    if (buf_putc(b, '{'))
        return SP_ERR_NOMEM;
    for (size_t k = 0; k < w->nheaders; k++)
        if ((k && buf_putc(b, ',')) || json_write_string(b, w->names[k], strlen(w->names[k])) ||
            buf_putc(b, ':') || json_write_string(b, w->values[k], strlen(w->values[k])))
            return SP_ERR_NOMEM;
    return buf_putc(b, '}') || buf_putc(b, '\0') ? SP_ERR_NOMEM : SP_OK;
}

/* Row r (not queued) as a webhook_failed dead letter with detail. 0 or SP_ERR_DB. */
static int dead_letter(struct webhooks *wh, const struct outbox_row *r, const char *detail,
                       int64_t now)
{
    char topic[96];
    struct bucket_msg bm = {.topic = topic, .serial = r->serial, .received_ms = now};

    snprintf(topic, sizeof(topic), "%s%s", OUTBOX_TOPIC_PREFIX, r->analysis);
    buf_reset(&wh->scratch);
    if (outbox_request_json(r, &wh->scratch)) {
        LOG_ERROR("webhook delivery=%lld analysis=%s: its dead letter does not fit in memory; "
                  "dropped",
                  (long long)r->id, r->analysis);
        return SP_OK;
    }
    char id[24] = "-";
    if (r->id > 0)
        snprintf(id, sizeof(id), "%lld", (long long)r->id);
    LOG_WARN("webhook failed analysis=%s device=%s delivery=%s method=%s url=%s detail=\"%s\"",
             r->analysis, r->serial ? r->serial : "-", id, r->method, r->url, detail);
    return bucket_dead(wh->bk, &bm, OUTBOX_REASON, detail, (const uint8_t *)wh->scratch.p,
                       wh->scratch.len);
}

int webhooks_queue(struct webhooks *wh, const char *analysis, const char *serial,
                   const char *origin, const struct host_webhook *v, size_t n, int64_t now)
{
    char detail[96];

    for (size_t i = 0; i < n; i++) {
        struct outbox_row r = {.analysis = analysis ? analysis : "-",
                               .serial = serial,
                               .origin = origin,
                               .method = v[i].method,
                               .url = v[i].url,
                               .body = v[i].body,
                               .body_len = v[i].body_len,
                               .created_at = now,
                               .next_at = now};
        if (headers_json(&wh->scratch, &v[i])) {
            LOG_ERROR("webhook analysis=%s url=%s dropped: its headers do not fit in memory",
                      r.analysis, r.url);
            continue;
        }
        char *headers = arena_strdup(&wh->arena, wh->scratch.p);
        r.headers = headers;
        if (!headers)
            return SP_ERR_DB; /* the batch is retried once the arena is free */
        if (wh->rows + (int64_t)wh->batch_added >= wh->o.queue_max) {
            snprintf(detail, sizeof(detail), "outbox full (webhook_queue_max %lld rows)",
                     (long long)wh->o.queue_max);
            if (dead_letter(wh, &r, detail, now))
                return SP_ERR_DB;
            wh->batch_dead++;
        } else if (outbox_add(wh->ob, &r)) {
            return SP_ERR_DB;
        } else {
            wh->batch_added++;
        }
        arena_reset(&wh->arena);
    }
    return SP_OK;
}

void webhooks_done(struct webhooks *wh, int committed)
{
    if (committed) {
        wh->rows += (int64_t)wh->batch_added;
        if (wh->batch_dead)
            metrics_add_labels(METRIC_DEAD, OUTBOX_REASON, NULL, wh->batch_dead);
        if (wh->batch_dead)
            metrics_add_labels(METRIC_WEBHOOKS, "failed", NULL, wh->batch_dead);
    }
    wh->batch_added = 0;
    wh->batch_dead = 0;
}

/* ---- results, between batches ------------------------------------------- */

/* 1 when status is worth another attempt: no answer, or one that says later. */
static int retryable(int status)
{
    return status == 0 || status == 408 || status == 425 || status == 429 ||
           (status >= 500 && status <= 599);
}

/* The delay before attempt `attempts + 1`: backoff · 2^attempts up to
 * 10 min, ± 20 %; or the server's Retry-After. */
static int64_t retry_delay(const struct webhooks *wh, int attempts, int64_t retry_after_ms)
{
    int64_t d = wh->o.backoff_ms;

    if (retry_after_ms >= 0)
        return retry_after_ms;
    for (int k = 0; k < attempts && d < WEBHOOKS_BACKOFF_MAX_MS; k++)
        d *= 2;
    if (d > WEBHOOKS_BACKOFF_MAX_MS)
        d = WEBHOOKS_BACKOFF_MAX_MS;
    return d * (80 + (int64_t)randombytes_uniform(41)) / 100;
}

/* One line for what a result got: "HTTP 500: <snippet>", "timeout after ...". */
static void describe(const struct webhook_result *res, char *out, size_t cap)
{
    if (res->status > 0)
        snprintf(out, cap, "HTTP %d%s%s", res->status, res->snippet[0] ? ": " : "", res->snippet);
    else if (res->status < 0) /* refused before it was sent */
        snprintf(out, cap, "%s", res->error);
    else
        snprintf(out, cap, "no answer (%s)", res->error);
}

/* In the open transaction: what result res makes of its row. 0 or SP_ERR_DB. */
static int apply_result(struct webhooks *wh, const struct webhook_result *res, int64_t now)
{
    struct outbox_row r;
    char what[WEBHOOK_SNIPPET_MAX + 200], detail[WEBHOOK_SNIPPET_MAX + 260];
    int rc = outbox_get(wh->ob, res->id, &wh->arena, &r);

    if (rc == SP_ERR_NOTFOUND)
        return SP_OK;
    if (rc)
        return rc == SP_ERR_NOMEM ? SP_OK : SP_ERR_DB; /* NOMEM: taken again next time */
    describe(res, what, sizeof(what));
    if (res->status >= 200 && res->status <= 299) {
        LOG_DEBUG("webhook ok analysis=%s delivery=%lld attempt=%d status=%d ms=%lld", r.analysis,
                  (long long)r.id, r.attempts + 1, res->status, (long long)res->duration_ms);
        wh->ok++;
        return outbox_delete(wh->ob, r.id);
    }
    int attempts = r.attempts + 1;
    if (retryable(res->status) && attempts < wh->o.attempts) {
        int64_t next = now + retry_delay(wh, attempts, res->retry_after_ms);
        LOG_DEBUG("webhook retry analysis=%s delivery=%lld attempt=%d in_ms=%lld error=\"%s\"",
                  r.analysis, (long long)r.id, attempts, (long long)(next - now), what);
        wh->retry++;
        return outbox_retry(wh->ob, r.id, attempts, next, what);
    }
    snprintf(detail, sizeof(detail), "%s after %d attempt%s", what, attempts,
             attempts == 1 ? "" : "s");
    if (res->status > 0 && res->snippet[0]) /* the answer's text last */
        snprintf(detail, sizeof(detail), "HTTP %d after %d attempt%s: %s", res->status, attempts,
                 attempts == 1 ? "" : "s", res->snippet);
    r.attempts = attempts;
    wh->failed++;
    if (dead_letter(wh, &r, detail, now) || outbox_delete(wh->ob, r.id))
        return SP_ERR_DB;
    return SP_OK;
}

/* Forgets id as being in the sender. */
static void unbusy(struct webhooks *wh, int64_t id)
{
    for (size_t i = 0; i < wh->nbusy; i++)
        if (wh->busy[i] == id) {
            wh->busy[i] = wh->busy[--wh->nbusy];
            return;
        }
}

/* The results of res[0..n) in one transaction. n, or SP_ERR_DB. */
static int write_results(struct webhooks *wh, const struct webhook_result *res, size_t n,
                         int64_t now)
{
    int rc = SP_OK;

    wh->ok = wh->retry = wh->failed = 0;
    if (bucket_begin(wh->bk))
        return SP_ERR_DB;
    for (size_t i = 0; i < n && !rc; i++) {
        rc = apply_result(wh, &res[i], now);
        arena_reset(&wh->arena);
    }
    if (rc || bucket_commit(wh->bk)) {
        bucket_rollback(wh->bk);
        return SP_ERR_DB;
    }
    metrics_add_labels(METRIC_WEBHOOKS, "ok", NULL, wh->ok);
    metrics_add_labels(METRIC_WEBHOOKS, "retry", NULL, wh->retry);
    if (wh->failed) {
        metrics_add_labels(METRIC_WEBHOOKS, "failed", NULL, wh->failed);
        metrics_add_labels(METRIC_DEAD, OUTBOX_REASON, NULL, wh->failed);
    }
    wh->rows -= (int64_t)(wh->ok + wh->failed);
    return (int)n;
}

/* ---- submitting ----------------------------------------------------------- */

/* r's request for the sender: its headers as "Name: value" lines in a. */
static int make_request(struct arena *a, const struct outbox_row *r, struct webhook_req *req)
{
    char host[WEBHOOK_HOST_LEN];
    struct json *h;
    size_t k = 0;

    if (json_parse(a, r->headers, strlen(r->headers), &h, NULL, 0) || h->type != JSON_OBJECT ||
        h->len > WEBHOOK_HEADERS_MAX)
        return SP_ERR_INVAL;
    const char **lines = arena_calloc(a, h->len ? h->len : 1, sizeof(*lines));
    if (!lines)
        return SP_ERR_NOMEM;
    for (const struct json *m = h->child; m; m = m->next) {
        if (m->type != JSON_STRING)
            return SP_ERR_INVAL;
        char *line = arena_alloc(a, m->keylen + m->len + 3);
        if (!line)
            return SP_ERR_NOMEM;
        snprintf(line, m->keylen + m->len + 3, "%s: %s", m->key, m->str);
        lines[k++] = line;
    }
    *req = (struct webhook_req){.id = r->id,
                                .method = r->method,
                                .url = r->url,
                                .headers = lines,
                                .n_headers = k,
                                .body = r->body,
                                .body_len = r->body_len,
                                .attempt = r->attempts + 1};
    /* The entry that allowed the URL is an IP literal or localhost exactly
     * when the URL's host is one (a name entry matches only names). */
    req->allow_private =
        webhook_url_host(r->url, host, sizeof(host)) == SP_OK && webhook_entry_is_literal(host);
    return SP_OK;
}

/* 1 when id is in the sender. */
static int is_busy(const struct webhooks *wh, int64_t id)
{
    for (size_t i = 0; i < wh->nbusy; i++)
        if (wh->busy[i] == id)
            return 1;
    return 0;
}

/*
 * Hands the sender the rows due at now that it does not hold, while it has
 * room. A row it refuses (SP_ERR_INVAL: it will never send it) gets a
 * result of its own in *refused, written like an answer. Returns the number
 * submitted, or SP_ERR_DB.
 */
static int submit_due(struct webhooks *wh, int64_t now, struct webhook_result *refused,
                      size_t *nrefused)
{
    int64_t ids[WEBHOOKS_BUSY * 2];
    size_t n, sent = 0;

    if (wh->nbusy >= WEBHOOKS_BUSY)
        return 0;
    if (outbox_due(wh->ob, now, WEBHOOKS_PER_HOST, ids, wh->nbusy + WEBHOOKS_BUSY, &n))
        return SP_ERR_DB;
    for (size_t i = 0; i < n && wh->nbusy < WEBHOOKS_BUSY; i++) {
        struct outbox_row r;
        struct webhook_req req;
        if (is_busy(wh, ids[i]) || outbox_get(wh->ob, ids[i], &wh->arena, &r))
            continue;
        int rc = make_request(&wh->arena, &r, &req);
        if (rc == SP_OK)
            rc = webhook_sender_submit(wh->ws, &req);
        if (rc == SP_OK) {
            wh->busy[wh->nbusy++] = r.id;
            sent++;
        } else if (rc == SP_ERR_INVAL && *nrefused < WEBHOOKS_BUSY) {
            refused[*nrefused] = (struct webhook_result){.id = r.id, .retry_after_ms = -1};
            snprintf(refused[(*nrefused)++].error, sizeof(refused->error),
                     "the sender refuses the request (method, URL or headers)");
        }
        arena_reset(&wh->arena);
        if (rc == SP_ERR_FULL)
            break;
    }
    return (int)sent;
}

int webhooks_turn(struct webhooks *wh, int64_t now)
{
    struct webhook_result *res = wh->res;
    size_t n = webhook_sender_take(wh->ws, res, WEBHOOKS_BUSY), nrefused = 0;
    int written = 0;

    for (size_t i = 0; i < n; i++) {
        unbusy(wh, res[i].id);
        metrics_observe(METRIC_WEBHOOK_SECONDS, (uint64_t)res[i].duration_ms * 1000);
    }
    if (n && (written = write_results(wh, res, n, now)) < 0)
        LOG_WARN("webhook results not written (database error); the requests are sent again");
    if (submit_due(wh, now, res + WEBHOOKS_BUSY, &nrefused) < 0)
        LOG_WARN("webhook outbox not read (database error); tried again shortly");
    /* A refused row fails now, as a final answer would (a status of 0 whose
     * attempts are spent). */
    for (size_t i = 0; i < nrefused; i++)
        res[WEBHOOKS_BUSY + i].status = -1;
    if (nrefused && write_results(wh, res + WEBHOOKS_BUSY, nrefused, now) < 0)
        LOG_WARN("webhook results not written (database error)");
    int64_t rows = outbox_count(wh->ob);
    if (rows >= 0)
        wh->rows = rows;
    metrics_gauge_set(METRIC_WEBHOOKS_WAITING, wh->rows);
    return written < 0 ? SP_ERR_DB : written;
}
