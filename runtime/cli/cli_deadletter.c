/*
 * cli_deadletter.c - sealpipe dead-letter list|show|retry (see
 * cli_deadletter.h): the dead_letters table for the operator, and retry
 * requests for the running daemon (storage/deadletters.h).
 *
 * list and show open sealpipe.db read-only, beside a running daemon. retry
 * writes requests only; the daemon runs them (transport/dlretry.c), so the
 * analyses run in its worker pool, the master key stays with it, and only
 * it writes data. With --wait, retry polls until the daemon has done them.
 */
#include "cli_deadletter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/termtext.h"
#include "base/timespan.h"
#include "base/errors.h"
#include "base/json.h"
#include "base/record.h"
#include "sealpipe.h"
#include "storage/datadir.h"
#include "storage/deadletters.h"

#define DL_LIMIT_DEFAULT 50
#define DL_JSON_MAX      (64u * 1024 * 1024) /* a listing's JSON; payloads are base64 */
#define DL_WAIT_MS       120000              /* --wait gives up after this long */
#define DL_DETAIL_COLS   60                  /* detail characters in the list's column */
#define DL_TOPIC_COLS    24                  /* topic characters in the list's column */

/* ---- option values ------------------------------------------------------ */

/* The filter the options give; 0, or 2 after saying what is wrong. */
static int read_filter(struct cli_ctx *c, const struct cli_args *a, struct deadletters_filter *f)
{
    char *end;

    *f = (struct deadletters_filter){.reason = a->reason, .device = a->device};
    if (a->since && timespan_parse_instant(a->since, clock_wall_ms(), &f->since_ms)) {
        cli_fail(c, "--since %s: use 30s, 10m, 2h, 7d or an ISO 8601 time like 2026-12-01T10:00Z",
                 a->since);
        return 2;
    }
    if (a->limit) {
        f->limit = strtoll(a->limit, &end, 10);
        if (*end || end == a->limit || f->limit < 1 || f->limit > 1000000) {
            cli_fail(c, "--limit %s: a number from 1 to 1000000", a->limit);
            return 2;
        }
    }
    return 0;
}

/* A dead letter id from the command line; 0, or 2 after saying so. */
static int read_id(struct cli_ctx *c, const char *s, int64_t *id)
{
    char *end;
    long long v = strtoll(s, &end, 10);

    if (*end || end == s || v < 1) {
        cli_fail(c, "'%s' is not a dead letter id (a number from list)", s);
        return 2;
    }
    *id = (int64_t)v;
    return 0;
}

static struct deadletters *open_db(struct cli_ctx *c, int writable)
{
    struct deadletters *d = NULL;
    char err[600] = "";

    if (deadletters_open_file(c->data_dir, writable, &d, err, sizeof err) != SP_OK) {
        cli_fail(c, "%s", err);
        return NULL;
    }
    return d;
}

/* ---- output ------------------------------------------------------------- */

/* 1 if the payload reads as text: UTF-8 without control characters but tab and newlines. */
static int printable(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((p[i] < 0x20 && p[i] != '\t' && p[i] != '\n' && p[i] != '\r') || p[i] == 0x7f)
            return 0;
    return sp__utf8_valid((const char *)p, n);
}

/* "key": string (or null), with a comma before unless first. */
static int json_member(struct buf *b, int first, const char *key, const char *v)
{
    if (buf_printf(b, "%s\"%s\":", first ? "" : ",", key))
        return SP_ERR_NOMEM;
    return v ? json_write_string(b, v, strlen(v)) : buf_puts(b, "null");
}

/* One dead letter as a JSON object; with_payload adds it in base64. */
static int json_dead_letter(struct buf *b, const struct dead_letter *dl, int with_payload)
{
    char t[32];
    int rc = buf_printf(b, "{\"id\":%lld", (long long)dl->id) ||
             json_member(b, 0, "time", cli_iso(dl->received_ms, t)) ||
             json_member(b, 0, "device", dl->device) || json_member(b, 0, "reason", dl->reason) ||
             json_member(b, 0, "topic", dl->topic) ||
             buf_printf(b, ",\"size\":%zu,\"retries\":%d", dl->len, dl->retries) ||
             json_member(b, 0, "first_reason", dl->first_reason) ||
             json_member(b, 0, "detail", dl->detail);
    if (!rc && with_payload) {
        size_t cap = 4 * ((dl->len + 2) / 3) + 1;
        char *b64 = malloc(cap);
        rc = !b64 || sp_base64_encode(dl->payload, dl->len, b64, cap) ||
             json_member(b, 0, "payload_base64", b64);
        free(b64);
    }
    return rc || buf_putc(b, '}') ? SP_ERR_NOMEM : SP_OK;
}

/* Prints b on stdout, or says it did not fit. Returns the exit status. */
static int put_json(struct cli_ctx *c, struct buf *b, int rc)
{
    if (rc || buf_putc(b, '\n')) {
        cli_fail(c, "output too large; use --limit");
        buf_cleanup(b);
        return 1;
    }
    fputs(b->p, stdout);
    buf_cleanup(b);
    return 0;
}

/* s cut to cols bytes (at a character boundary, "..." added) with what
 * would act on a terminal blanked (base/termtext.h): a column of list. */
static void column(const char *s, size_t cols, char *out, size_t cap)
{
    size_t n = strlen(s);

    if (n > cols) {
        n = cols - 3;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    snprintf(out, cap, "%.*s%s", (int)n, s, s[n] ? "..." : "");
    termtext_blank(out, strlen(out));
}

/* One list line: id, time, device, reason, topic, size, detail (each cut). */
static void list_line(const struct dead_letter *dl)
{
    char t[32], topic[DL_TOPIC_COLS + 1], detail[DL_DETAIL_COLS + 4];

    column(dl->topic ? dl->topic : "-", DL_TOPIC_COLS, topic, sizeof topic);
    column(dl->detail ? dl->detail : "", DL_DETAIL_COLS, detail, sizeof detail);
    printf("%-6lld %-20s %-16s %-17s %-24s %7zu %s\n", (long long)dl->id,
           cli_iso(dl->received_ms, t), dl->device ? dl->device : "-", dl->reason, topic, dl->len,
           detail);
}

int cli_deadletter_list(struct cli_ctx *c, const struct cli_args *a)
{
    struct deadletters_filter f;
    struct deadletters *d;
    struct dead_letter *v = NULL;
    size_t n = 0;
    int rc;

    if ((rc = read_filter(c, a, &f)))
        return rc;
    if (!a->limit)
        f.limit = DL_LIMIT_DEFAULT;
    if (!(d = open_db(c, 0)))
        return 1;
    rc = deadletters_list(d, &f, &c->arena, &v, &n);
    deadletters_close(d);
    if (rc) {
        cli_fail(c, "cannot read the dead letters: %s", errors_strerror(rc));
        return 1;
    }
    if (c->json) {
        struct buf b;
        buf_init(&b, DL_JSON_MAX);
        rc = buf_putc(&b, '[');
        for (size_t i = 0; i < n && !rc; i++)
            rc = (i && buf_putc(&b, ',')) || json_dead_letter(&b, &v[i], 0);
        return put_json(c, &b, rc || buf_putc(&b, ']'));
    }
    printf("%-6s %-20s %-16s %-17s %-24s %7s %s\n", "ID", "TIME", "DEVICE", "REASON", "TOPIC",
           "SIZE", "DETAIL");
    for (size_t i = 0; i < n; i++)
        list_line(&v[i]);
    return 0;
}

/* The payload as text when printable, else as hex, 32 bytes a line. */
static void show_payload(const struct dead_letter *dl)
{
    if (printable(dl->payload, dl->len)) {
        printf("payload (text, %zu bytes):\n", dl->len);
        termtext_write(stdout, (const char *)dl->payload, dl->len, TERMTEXT_KEEP_LINES);
        putchar('\n');
        return;
    }
    printf("payload (hex, %zu bytes):\n", dl->len);
    for (size_t i = 0; i < dl->len; i += 32) {
        char hex[65];
        size_t k = dl->len - i < 32 ? dl->len - i : 32;
        if (sp_hex_encode(dl->payload + i, k, hex, sizeof(hex)) == SP_OK)
            printf("  %s\n", hex);
    }
}

int cli_deadletter_show(struct cli_ctx *c, const struct cli_args *a)
{
    struct deadletters *d;
    struct dead_letter dl;
    char t[32];
    int64_t id;
    int rc;

    if ((rc = read_id(c, a->pos[0], &id)))
        return rc;
    if (!(d = open_db(c, 0)))
        return 1;
    rc = deadletters_get(d, id, &c->arena, &dl);
    deadletters_close(d);
    if (rc == SP_ERR_NOTFOUND) {
        cli_fail(c, "no such dead letter %lld", (long long)id);
        return 1;
    }
    if (rc) {
        cli_fail(c, "cannot read the dead letter: %s", errors_strerror(rc));
        return 1;
    }
    if (c->json) {
        struct buf b;
        buf_init(&b, DL_JSON_MAX);
        return put_json(c, &b, json_dead_letter(&b, &dl, 1));
    }
    printf("id            %lld\n", (long long)dl.id);
    printf("time          %s\n", cli_iso(dl.received_ms, t));
    printf("device        %s\n", dl.device ? dl.device : "-");
    printf("reason        %s\n", dl.reason);
    printf("topic         ");
    termtext_write(stdout, dl.topic ? dl.topic : "-", strlen(dl.topic ? dl.topic : "-"), 0);
    printf("\ndetail        ");
    termtext_write(stdout, dl.detail ? dl.detail : "", strlen(dl.detail ? dl.detail : ""), 0);
    putchar('\n');
    if (dl.retries)
        printf("retries       %d failed (first reason: %s)\n", dl.retries,
               dl.first_reason ? dl.first_reason : "-");
    const char *why = deadletters_why_not(&dl, 0);
    if (!why)
        printf("retry         possible\n");
    else
        printf("retry         %s: %s\n",
               deadletters_why_not(&dl, 1) ? "not possible" : "only with --force", why);
    show_payload(&dl);
    return 0;
}

/* ---- retry -------------------------------------------------------------- */

#define DL_SKIP_LINES 10 /* skipped dead letters named one by one, then counted */

/* What retry asked for, and what became of it. */
struct retry_run {
    int64_t *ids;      /* queued */
    int64_t *received; /* when each was received: an id freed by a retry may be given again */
    size_t n, skipped;
};

/*
 * Queues the retries of v[0..nv) that may run (all of them, in one
 * transaction), each skipped one said on stderr (one: v is the one id asked
 * for). Returns 0 or an error.
 */
static int retry_queue(struct cli_ctx *c, struct deadletters *d, const struct dead_letter *v,
                       size_t nv, int force, int one, struct retry_run *r)
{
    int64_t now = clock_wall_ms();
    int rc = SP_OK;

    r->ids = arena_alloc(&c->arena, (nv ? nv : 1) * sizeof(*r->ids));
    r->received = arena_alloc(&c->arena, (nv ? nv : 1) * sizeof(*r->received));
    if (!r->ids || !r->received)
        return SP_ERR_NOMEM;
    for (size_t i = 0; i < nv && !rc; i++) {
        const char *why = deadletters_why_not(&v[i], force);
        if (why) {
            if (r->skipped++ < DL_SKIP_LINES)
                cli_fail(c, "dead letter %lld (%s) %s: %s", (long long)v[i].id, v[i].reason,
                         one ? "cannot be retried" : "skipped", why);
            continue;
        }
        if (strcmp(v[i].reason, "replay") == 0)
            cli_fail(c,
                     "warning: dead letter %lld is a replay, retried because of --force: if a copy "
                     "of this envelope was stored, its data is now stored twice",
                     (long long)v[i].id);
        if (!(rc = deadletters_request(d, v[i].id, force, now))) {
            r->received[r->n] = v[i].received_ms;
            r->ids[r->n++] = v[i].id;
        }
    }
    if (r->skipped > DL_SKIP_LINES)
        cli_fail(c, "... and %zu more skipped", r->skipped - DL_SKIP_LINES);
    return rc;
}

/* The dead letters a retry names: one id, or a selection. Returns 0, 1 or 2 (exit status). */
static int retry_pick(struct cli_ctx *c, const struct cli_args *a, struct deadletters *d,
                      struct dead_letter **v, size_t *n)
{
    struct deadletters_filter f;
    int64_t id;
    int rc;

    if (a->npos == 0) {
        if ((rc = read_filter(c, a, &f)))
            return rc;
        rc = deadletters_list(d, &f, &c->arena, v, n);
    } else {
        if ((rc = read_id(c, a->pos[0], &id)))
            return rc;
        *v = arena_alloc(&c->arena, sizeof(**v));
        *n = 1;
        rc = *v ? deadletters_get(d, id, &c->arena, *v) : SP_ERR_NOMEM;
        if (rc == SP_ERR_NOTFOUND) {
            cli_fail(c, "no such dead letter %lld (retried and stored already, or never there)",
                     (long long)id);
            return 1;
        }
    }
    if (rc) {
        cli_fail(c, "cannot read the dead letters: %s", errors_strerror(rc));
        return 1;
    }
    return 0;
}

/* Waits until the daemon has done every queued retry; 0, or -1 on timeout or error. */
static int retry_wait(struct deadletters *d, const struct retry_run *r)
{
    int64_t deadline = clock_mono_ms() + DL_WAIT_MS;
    size_t i = 0;

    while (i < r->n) {
        int rc = deadletters_pending(d, r->ids[i]);
        if (rc < 0 || clock_mono_ms() > deadline)
            return -1;
        if (rc == 0)
            i++;
        else
            usleep(100 * 1000);
    }
    return 0;
}

/* Each retry's outcome: stored (the dead letter is gone), or its new reason.
 * Returns how many failed again, or -1. */
static int retry_outcomes(struct cli_ctx *c, struct deadletters *d, const struct retry_run *r,
                          struct buf *json)
{
    int failed = 0;

    for (size_t i = 0; i < r->n; i++) {
        struct dead_letter dl;
        int rc = deadletters_get(d, r->ids[i], &c->arena, &dl);
        if (rc && rc != SP_ERR_NOTFOUND)
            return -1;
        /* SQLite gives the largest id again once it is deleted: another's now. */
        if (rc == SP_OK && dl.received_ms != r->received[i])
            rc = SP_ERR_NOTFOUND;
        failed += rc == SP_OK;
        if (json) {
            if (buf_printf(json, "%s{\"id\":%lld", i ? "," : "", (long long)r->ids[i]) ||
                json_member(json, 0, "outcome", rc ? "stored" : "dead_letter") ||
                (!rc && (json_member(json, 0, "reason", dl.reason) ||
                         json_member(json, 0, "detail", dl.detail))) ||
                buf_putc(json, '}'))
                return -1;
        } else if (rc) {
            printf("%lld stored\n", (long long)r->ids[i]);
        } else {
            printf("%lld failed again: %s: %s\n", (long long)r->ids[i], dl.reason,
                   dl.detail ? dl.detail : "");
        }
    }
    return failed;
}

/* What retry says once the requests are in; returns the exit status. */
static int retry_report(struct cli_ctx *c, const struct cli_args *a, struct deadletters *d,
                        const struct retry_run *r)
{
    int running = datadir_running(c->data_dir), failed = 0, waited = 0;
    struct buf b;

    if ((a->seen & O_WAIT) && running) {
        if (retry_wait(d, r)) {
            cli_fail(c, "the daemon did not finish the retries within %d s", DL_WAIT_MS / 1000);
            return 1;
        }
        waited = 1;
    }
    if (!c->json) {
        printf("queued: %zu; %s\n", r->n,
               running ? "the running daemon retries them within a second"
                       : "no daemon is running: the retries wait for it to start");
        if (waited && (failed = retry_outcomes(c, d, r, NULL)) < 0)
            cli_fail(c, "cannot read the outcomes");
    } else {
        buf_init(&b, DL_JSON_MAX);
        int rc = buf_printf(&b, "{\"queued\":%zu,\"skipped\":%zu,\"daemon_running\":%s", r->n,
                            r->skipped, running ? "true" : "false") ||
                 buf_puts(&b, ",\"ids\":[");
        for (size_t i = 0; i < r->n && !rc; i++)
            rc = buf_printf(&b, "%s%lld", i ? "," : "", (long long)r->ids[i]);
        rc = rc || buf_puts(&b, waited ? "],\"outcomes\":[" : "]");
        if (!rc && waited && (failed = retry_outcomes(c, d, r, &b)) < 0)
            rc = 1;
        if (put_json(c, &b, rc || buf_puts(&b, waited ? "]}" : "}")))
            return 1;
    }
    if ((a->seen & O_WAIT) && !running)
        cli_fail(c, "--wait: no daemon is running on %s", c->data_dir);
    return failed != 0 || ((a->seen & O_WAIT) && !running);
}

int cli_deadletter_retry(struct cli_ctx *c, const struct cli_args *a)
{
    int selection = !!(a->seen & (O_REASON | O_DEVICE | O_SINCE));
    int force = !!(a->seen & O_FORCE);
    struct retry_run r = {0};
    struct dead_letter *v = NULL;
    struct deadletters *d;
    size_t n = 0;
    int rc;

    if (selection == (a->npos == 1)) {
        cli_fail(c, "name one dead letter id, or select some with --reason, --device or --since");
        return 2;
    }
    if (!(d = open_db(c, 1)))
        return 1;
    if (deadletters_begin(d)) {
        cli_fail(c, "cannot write sealpipe.db (database busy?)");
        deadletters_close(d);
        return 1;
    }
    rc = retry_pick(c, a, d, &v, &n);
    if (!rc && (rc = retry_queue(c, d, v, n, force, a->npos == 1, &r)) != SP_OK)
        cli_fail(c, "cannot queue the retries: %s", errors_strerror(rc));
    if (rc || deadletters_commit(d)) {
        deadletters_rollback(d);
        deadletters_close(d);
        return rc == 2 ? 2 : 1;
    }
    if (r.n == 0) {
        if (a->npos == 0)
            cli_fail(c, "%s", n ? "nothing to retry" : "no dead letter matches");
        deadletters_close(d);
        return 1;
    }
    rc = retry_report(c, a, d, &r);
    deadletters_close(d);
    return rc;
}
