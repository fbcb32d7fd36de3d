/*
 * api_deadletters.c - the HTTP API's dead-letter routes (api.c has the
 * table), on storage/deadletters.c as `sealpipe dead-letter list|show|retry`
 * uses it: the same filters, the same rule of what may be retried
 * (deadletters_why_not), the same request the daemon's retry source takes
 * within a second. Each request opens its own connection to sealpipe.db
 * (read-only, or read-write for a retry), as the command does.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "base/clock.h"
#include "base/errors.h"
#include "base/timespan.h"
#include "storage/deadletters.h"

#define LIST_DEFAULT 100   /* dead letters a listing gives without limit */
#define LIST_MAX     10000 /* ... and at most */

/* The dead letter's members, its payload's size but not the payload. */
static int put_dead(struct buf *b, const struct dead_letter *dl)
{
    const char *why = deadletters_why_not(dl, 0);
    int rc = buf_printf(b, "{\"id\":%lld", (long long)dl->id);

    if (!rc)
        rc = api__put_int(b, "received_at", dl->received_ms);
    if (!rc)
        rc = api__put_str(b, 0, "topic", dl->topic);
    if (!rc)
        rc = api__put_str(b, 0, "device", dl->device);
    if (!rc)
        rc = api__put_str(b, 0, "reason", dl->reason);
    if (!rc)
        rc = api__put_str(b, 0, "detail", dl->detail);
    if (!rc)
        rc = api__put_int(b, "size", (long long)dl->len);
    if (!rc)
        rc = api__put_int(b, "retries", dl->retries);
    if (!rc)
        rc = api__put_str(b, 0, "first_reason", dl->first_reason);
    /* Why a retry is refused (null: it is not), and whether force helps. */
    if (!rc)
        rc = api__put_str(b, 0, "retry_refused", why);
    if (!rc)
        rc = buf_printf(b, ",\"force_allows\":%s",
                        why && !deadletters_why_not(dl, 1) ? "true" : "false");
    return rc;
}

static int open_db(struct api_req *r, int writable, struct deadletters **d)
{
    return deadletters_open_file(r->a->data_dir, writable, d, r->err, sizeof r->err) ? SP_ERR_DB
                                                                                     : SP_OK;
}

/* A whole number in [min, max], or -1. */
static long long number(const char *s, long long min, long long max)
{
    long long v = 0;
    size_t i = 0;

    for (; s[i] >= '0' && s[i] <= '9' && v <= max; i++)
        v = v * 10 + (s[i] - '0');
    return i == 0 || s[i] || v < min || v > max ? -1 : v;
}

static int list_filter(struct api_req *r, struct deadletters_filter *f)
{
    static const char *const valid[] = {"reason", "device", "since", "limit", NULL};
    const char *v[5];
    int rc;

    if ((rc = api__params(r, valid, NULL, v)))
        return rc;
    *f = (struct deadletters_filter){.reason = v[0], .device = v[1], .limit = LIST_DEFAULT};
    if (v[2] && timespan_parse_instant(v[2], clock_wall_ms(), &f->since_ms)) {
        snprintf(r->err, sizeof r->err,
                 "since: '%.64s' is not a time: give ISO 8601, a date or a length before now "
                 "(30s, 10m, 1h, 7d)",
                 v[2]);
        return SP_ERR_CONFIG;
    }
    if (v[3] && (f->limit = number(v[3], 1, LIST_MAX)) < 0) {
        snprintf(r->err, sizeof r->err, "limit: '%.64s' is not a whole number from 1 to %d", v[3],
                 LIST_MAX);
        return SP_ERR_CONFIG;
    }
    return SP_OK;
}

int api__dead_letters(struct api_req *r)
{
    struct deadletters_filter f;
    struct deadletters *d;
    struct dead_letter *v = NULL;
    size_t n = 0;
    int rc;

    if ((rc = list_filter(r, &f)) || (rc = open_db(r, 0, &d)))
        return rc;
    rc = deadletters_list(d, &f, &r->a->arena, &v, &n);
    deadletters_close(d);
    if (rc)
        return rc;
    if (buf_printf(r->b, "{\"count\":%zu,\"dead_letters\":[", n))
        return SP_ERR_NOMEM;
    for (size_t i = 0; i < n; i++)
        if ((i && buf_putc(r->b, ',')) || put_dead(r->b, &v[i]) || buf_putc(r->b, '}'))
            return SP_ERR_NOMEM;
    return buf_puts(r->b, "]}") ? SP_ERR_NOMEM : SP_OK;
}

/* Dead letter r->id into *dl, on d. SP_ERR_NOTFOUND with r->err when none. */
static int get_one(struct api_req *r, struct deadletters *d, struct dead_letter *dl)
{
    long long id = number(r->id, 1, INT64_MAX / 10);
    int rc = id < 0 ? SP_ERR_NOTFOUND : deadletters_get(d, id, &r->a->arena, dl);

    if (rc == SP_ERR_NOTFOUND)
        snprintf(r->err, sizeof r->err, "no dead letter %.40s", r->id);
    return rc;
}

/* One, with its payload as base64 (its bytes as received). */
int api__dead_letter(struct api_req *r)
{
    struct deadletters *d;
    struct dead_letter dl;
    int rc;

    if ((rc = api__no_params(r)) || (rc = open_db(r, 0, &d)))
        return rc;
    rc = get_one(r, d, &dl);
    deadletters_close(d);
    if (rc)
        return rc;
    size_t cap = sodium_base64_ENCODED_LEN(dl.len, sodium_base64_VARIANT_ORIGINAL);
    char *b64 = arena_alloc(&r->a->arena, cap);
    if (!b64 || put_dead(r->b, &dl) || buf_puts(r->b, ",\"payload_base64\":\"") ||
        buf_puts(r->b, sodium_bin2base64(b64, cap, dl.payload ? dl.payload : (const uint8_t *)"",
                                         dl.len, sodium_base64_VARIANT_ORIGINAL)) ||
        buf_puts(r->b, "\"}"))
        return SP_ERR_NOMEM;
    return SP_OK;
}

/* Asks the daemon to retry it (`dead-letter retry`; force: force=1). */
int api__dead_letter_retry(struct api_req *r)
{
    static const char *const valid[] = {"force", NULL};
    struct deadletters *d;
    struct dead_letter dl;
    const char *v[1], *why;
    int rc, force;

    if ((rc = api__params(r, valid, NULL, v)))
        return rc;
    if (v[0] && strcmp(v[0], "1") && strcmp(v[0], "true")) {
        snprintf(r->err, sizeof r->err, "force: '%.32s' is not 1 or true", v[0]);
        return SP_ERR_CONFIG;
    }
    force = v[0] != NULL;
    if ((rc = open_db(r, 1, &d)))
        return rc;
    if ((rc = get_one(r, d, &dl)) == SP_OK && (why = deadletters_why_not(&dl, force))) {
        snprintf(r->err, sizeof r->err, "%s%s", why,
                 deadletters_why_not(&dl, 1) ? "" : " (force=1 retries it anyway)");
        rc = SP_ERR_INVAL;
    }
    if (rc == SP_OK && !(rc = deadletters_begin(d))) {
        rc = deadletters_request(d, dl.id, force, clock_wall_ms());
        if (rc || (rc = deadletters_commit(d)))
            deadletters_rollback(d);
    }
    deadletters_close(d);
    if (rc)
        return rc;
    return buf_printf(r->b, "{\"id\":%lld,\"queued\":true,\"force\":%s}", (long long)dl.id,
                      force ? "true" : "false")
               ? SP_ERR_NOMEM
               : SP_OK;
}
