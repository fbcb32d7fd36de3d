/*
 * outbox.c - the webhook_outbox table (see outbox.h): statements on the
 * bucket's connection; and outbox__requeue (bucket_internal.h), which puts
 * a webhook_failed dead letter back into the table on whatever connection
 * `dead-letter retry` holds.
 */
#include "outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/json.h"
#include "base/webhook_url.h"
#include "bucket_internal.h"
#include "sealpipe.h"

enum { OB_ADD, OB_DUE, OB_GET, OB_DELETE, OB_RETRY, OB_COUNT_ROWS, OB_COUNT };

/* ?1 NULL: a new id. */
#define OB_INSERT                                                                                  \
    "INSERT INTO webhook_outbox (id, analysis, serial, origin, method, url, headers, body,"        \
    " created_at, next_at, host) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"

static const char *const ob_sql[OB_COUNT] = {
    [OB_ADD] = OB_INSERT,
    /* The due rows, at most ?3 of each host (the oldest, those in flight
     * among them: their next_at stays due while they are), so that a host
     * that does not answer cannot take every place in the sender. */
    [OB_DUE] = "SELECT id FROM (SELECT id, next_at, row_number() OVER (PARTITION BY host"
               " ORDER BY next_at, id) AS rn FROM webhook_outbox WHERE next_at <= ?1)"
               " WHERE rn <= ?3 ORDER BY next_at, id LIMIT ?2",
    [OB_GET] = "SELECT id, analysis, serial, origin, method, url, headers, body, created_at,"
               " attempts, next_at, last_error FROM webhook_outbox WHERE id = ?1",
    [OB_DELETE] = "DELETE FROM webhook_outbox WHERE id = ?1",
    [OB_RETRY] = "UPDATE webhook_outbox SET attempts = ?2, next_at = ?3, last_error = ?4"
                 " WHERE id = ?1",
    [OB_COUNT_ROWS] = "SELECT count(*) FROM webhook_outbox",
};

struct outbox {
    sqlite3_stmt *st[OB_COUNT];
};

int outbox_open(struct bucket *b, struct outbox **out)
{
    struct outbox *ob = calloc(1, sizeof(*ob));

    if (!ob)
        return SP_ERR_NOMEM;
    if (bucket__prepare(b, ob_sql, ob->st, OB_COUNT)) {
        free(ob);
        return SP_ERR_DB;
    }
    *out = ob;
    return SP_OK;
}

void outbox_close(struct outbox *ob)
{
    if (!ob)
        return;
    bucket__finalize(ob->st, OB_COUNT);
    free(ob);
}

/* Binds r to st, an OB_INSERT; id 0 as NULL. */
static void bind_row(sqlite3_stmt *st, const struct outbox_row *r)
{
    if (r->id > 0)
        sqlite3_bind_int64(st, 1, r->id);
    sqlite3_bind_text(st, 2, r->analysis, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, r->serial, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, r->origin, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, r->method, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, r->url, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, r->headers, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 8, r->body_len ? (const void *)r->body : "", (int)r->body_len,
                      SQLITE_STATIC);
    sqlite3_bind_int64(st, 9, r->created_at);
    sqlite3_bind_int64(st, 10, r->next_at);
    char host[WEBHOOK_HOST_LEN];
    if (r->url && webhook_url_host(r->url, host, sizeof(host)) == SP_OK)
        sqlite3_bind_text(st, 11, host, -1, SQLITE_TRANSIENT);
}

int outbox_add(struct outbox *ob, const struct outbox_row *r)
{
    bind_row(ob->st[OB_ADD], r);
    return bucket__step_once(ob->st[OB_ADD]) == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

int outbox_due(struct outbox *ob, int64_t now, int per_host, int64_t *ids, size_t max, size_t *n)
{
    sqlite3_stmt *st = ob->st[OB_DUE];
    int rc = SQLITE_DONE;

    *n = 0;
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
    sqlite3_bind_int64(st, 3, per_host);
    while (*n < max && (rc = sqlite3_step(st)) == SQLITE_ROW)
        ids[(*n)++] = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

/* The row st stands on (OB_GET's columns) into *r; 0 or SP_ERR_NOMEM. */
static int read_row(sqlite3_stmt *st, struct arena *a, struct outbox_row *r)
{
    int bad = 0;
    const void *body = sqlite3_column_blob(st, 7);
    size_t len = (size_t)sqlite3_column_bytes(st, 7);
    uint8_t *copy = arena_alloc(a, len + 1);

    r->id = sqlite3_column_int64(st, 0);
    r->analysis = bucket__text(st, 1, a, &bad);
    r->serial = bucket__text(st, 2, a, &bad);
    r->origin = bucket__text(st, 3, a, &bad);
    r->method = bucket__text(st, 4, a, &bad);
    r->url = bucket__text(st, 5, a, &bad);
    r->headers = bucket__text(st, 6, a, &bad);
    if (!copy || bad || !r->analysis || !r->method || !r->url || !r->headers)
        return SP_ERR_NOMEM;
    if (len)
        memcpy(copy, body, len);
    copy[len] = '\0';
    r->body = copy;
    r->body_len = len;
    r->created_at = sqlite3_column_int64(st, 8);
    r->attempts = sqlite3_column_int(st, 9);
    r->next_at = sqlite3_column_int64(st, 10);
    r->last_error = bucket__text(st, 11, a, &bad);
    return bad ? SP_ERR_NOMEM : SP_OK;
}

int outbox_get(struct outbox *ob, int64_t id, struct arena *a, struct outbox_row *r)
{
    sqlite3_stmt *st = ob->st[OB_GET];
    int rc;

    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        rc = read_row(st, a, r);
    else
        rc = rc == SQLITE_DONE ? SP_ERR_NOTFOUND : SP_ERR_DB;
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

int outbox_delete(struct outbox *ob, int64_t id)
{
    sqlite3_bind_int64(ob->st[OB_DELETE], 1, id);
    return bucket__step_once(ob->st[OB_DELETE]) == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

int outbox_retry(struct outbox *ob, int64_t id, int attempts, int64_t next_at,
                 const char *last_error)
{
    sqlite3_stmt *st = ob->st[OB_RETRY];

    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int(st, 2, attempts);
    sqlite3_bind_int64(st, 3, next_at);
    sqlite3_bind_text(st, 4, last_error, -1, SQLITE_STATIC);
    return bucket__step_once(st) == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

int64_t outbox_count(struct outbox *ob)
{
    sqlite3_stmt *st = ob->st[OB_COUNT_ROWS];
    int64_t n = -1;

    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return n;
}

/* ---- a request as its dead letter's payload ----------------------------- */

/* Appends "key": and s as a JSON string (or null). */
static int put_str(struct buf *b, const char *key, const char *s)
{
    if (buf_printf(b, ",\"%s\":", key))
        return -1;
    return s ? json_write_string(b, s, strlen(s)) : buf_puts(b, "null");
}

int outbox_request_json(const struct outbox_row *r, struct buf *b)
{
    size_t cap = (r->body_len + 2) / 3 * 4 + 1;
    char *b64 = malloc(cap);
    int rc = SP_ERR_NOMEM;

    if (!b64 || sp_base64_encode(r->body, r->body_len, b64, cap))
        goto out;
    if ((r->id > 0 ? buf_printf(b, "{\"delivery\":%lld", (long long)r->id)
                   : buf_puts(b, "{\"delivery\":null")) ||
        put_str(b, "method", r->method) || put_str(b, "url", r->url) ||
        buf_puts(b, ",\"headers\":") || buf_puts(b, r->headers) || put_str(b, "body_base64", b64) ||
        put_str(b, "origin", r->origin) || buf_printf(b, ",\"attempts\":%d}", r->attempts))
        goto out;
    rc = SP_OK;
out:
    free(b64);
    return rc;
}

/* ---- dead-letter retry -------------------------------------------------- */

/* A string member of obj, or NULL. */
static const char *get_str(const struct json *obj, const char *key)
{
    const struct json *v = json_get(obj, key);
    return v && v->type == JSON_STRING ? v->str : NULL;
}

/*
 * The request of a dead letter's payload (outbox_request_json) into *r,
 * strings and body in a. 0 or SP_ERR_PAYLOAD / SP_ERR_NOMEM.
 */
static int parse_request(struct arena *a, const char *payload, size_t len, struct outbox_row *r)
{
    struct json *j;
    struct buf hb;
    int rc;

    if ((rc = json_parse(a, payload, len, &j, NULL, 0)))
        return rc;
    const struct json *id = json_get(j, "delivery"), *h = json_get(j, "headers");
    const char *b64 = get_str(j, "body_base64");
    r->method = get_str(j, "method");
    r->url = get_str(j, "url");
    r->origin = get_str(j, "origin");
    r->id = id && id->type == JSON_NUMBER && id->number >= 1 && id->number < 9e15
                ? (int64_t)id->number
                : 0;
    if (!r->method || !r->url || !b64 || !h || h->type != JSON_OBJECT)
        return SP_ERR_PAYLOAD;
    uint8_t *body = arena_alloc(a, strlen(b64) + 1);
    int n = body ? sp_base64_decode(b64, strlen(b64), body, strlen(b64) + 1) : SP_ERR_NOMEM;
    if (n < 0)
        return n == SP_ERR_NOMEM ? n : SP_ERR_PAYLOAD;
    r->body = body;
    r->body_len = (size_t)n;
    buf_init(&hb, 1 << 20);
    rc = json_write(&hb, h) || buf_putc(&hb, '\0') ? SP_ERR_NOMEM : SP_OK;
    r->headers = rc ? NULL : arena_strdup(a, hb.p);
    buf_cleanup(&hb);
    return r->headers ? SP_OK : SP_ERR_NOMEM;
}

/* Prepares sql and steps it once with ?1 id. */
static int exec_id(sqlite3 *db, const char *sql, int64_t id)
{
    sqlite3_stmt *st;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return SP_ERR_DB;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SP_OK : SP_ERR_DB;
}

/* Inserts r as a new outbox row (its own id unless that is taken), and
 * deletes dead letter id and its retry request. */
static int requeue_row(sqlite3 *db, int64_t id, const struct outbox_row *r)
{
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(db, OB_INSERT, -1, &st, NULL) != SQLITE_OK)
        return SP_ERR_DB;
    bind_row(st, r);
    rc = sqlite3_step(st);
    if (rc == SQLITE_CONSTRAINT && r->id > 0) { /* the id is taken: a new one */
        sqlite3_reset(st);
        sqlite3_bind_null(st, 1);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return SP_ERR_DB;
    if (exec_id(db, "DELETE FROM dead_letter_retries WHERE dead_letter_id = ?1", id) ||
        exec_id(db, "DELETE FROM dead_letters WHERE id = ?1", id))
        return SP_ERR_DB;
    return SP_OK;
}

/* Reads dead letter id; a webhook's: its request into r (in a), returns 1. */
static int read_dead(sqlite3 *db, int64_t id, struct arena *a, struct outbox_row *r)
{
    static const char sql[] = "SELECT topic, device, payload FROM dead_letters WHERE id = ?1"
                              " AND reason = '" OUTBOX_REASON "'";
    size_t pl = strlen(OUTBOX_TOPIC_PREFIX);
    sqlite3_stmt *st;
    int rc;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return SP_ERR_DB;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    const char *topic = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : NULL;
    if (rc == SQLITE_ROW && topic && strncmp(topic, OUTBOX_TOPIC_PREFIX, pl) == 0 && topic[pl]) {
        const unsigned char *dev = sqlite3_column_text(st, 1);
        r->analysis = arena_strdup(a, topic + pl);
        r->serial = dev ? arena_strdup(a, (const char *)dev) : NULL;
        rc = parse_request(a, sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2), r);
        rc = rc ? rc : !r->analysis || (dev && !r->serial) ? SP_ERR_NOMEM : 1;
    } else {
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : SP_ERR_DB;
    }
    sqlite3_finalize(st);
    return rc;
}

int outbox__requeue(sqlite3 *db, int64_t id, int64_t now)
{
    struct outbox_row r = {0};
    struct arena a;
    int rc;

    arena_init(&a, 4u << 20);
    rc = read_dead(db, id, &a, &r);
    if (rc == 1) {
        r.created_at = r.next_at = now;
        if (sqlite3_exec(db, "SAVEPOINT outbox_requeue", NULL, NULL, NULL) != SQLITE_OK)
            rc = SP_ERR_DB;
        else if ((rc = requeue_row(db, id, &r)) != SP_OK)
            (void)sqlite3_exec(db, "ROLLBACK TO outbox_requeue; RELEASE outbox_requeue", NULL, NULL,
                               NULL);
        else
            rc = sqlite3_exec(db, "RELEASE outbox_requeue", NULL, NULL, NULL) == SQLITE_OK
                     ? 1
                     : SP_ERR_DB;
    }
    arena_cleanup(&a);
    return rc;
}
