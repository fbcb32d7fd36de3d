/*
 * deadletters.h - the dead_letters table for the operator and its retries:
 * `sealpipe dead-letter list|show|retry` (cli/cli_deadletter.c) reads it and
 * queues retry requests in dead_letter_retries (schemas/bucket.sql); the
 * daemon's retry source (transport/dlretry.c) takes the requests and, in
 * the batch transaction that stores each message again, consumes its dead
 * letter (deadletters_stored) or keeps it under the same id with the new
 * reason (deadletters_failed). A dead letter row is a one-time token: the
 * daemon took those bytes in once and stored nothing of them, and a retry
 * deletes the row in the transaction that stores the data, so one dead
 * letter is stored at most once however often it is retried.
 *
 * Two ways to open it: on the daemon's bucket connection (deadletters_open,
 * statements in the batch transaction), or on a connection of its own for
 * the command line (deadletters_open_file: read-only for list and show,
 * read-write for retry), beside a running daemon (SQLite's WAL locking).
 *
 * Not thread-safe: one thread per handle.
 */
#ifndef SP_DEADLETTERS_H
#define SP_DEADLETTERS_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "bucket.h"

/* One dead letter; strings and payload in the caller's arena. */
struct dead_letter {
    int64_t id;
    int64_t received_ms;
    const char *topic;
    const char *device; /* NULL: the device was not known */
    const char *reason;
    const char *detail;
    const uint8_t *payload;   /* as stored; NUL-terminated copy; NULL in a listing */
    size_t len;               /* its size */
    int retries;              /* retries that failed again */
    const char *first_reason; /* the reason before them; NULL: never retried */
    int force;                /* deadletters_take: the request was made with --force */
    int has_digest;           /* deadletters_take: one of a kind (schemas/bucket.sql) */
    uint8_t digest[BUCKET_DIGEST_LEN];
};

/* Which dead letters: NULL / 0 for "any". */
struct deadletters_filter {
    const char *reason;
    const char *device;
    int64_t since_ms; /* received at or after */
    int64_t limit;    /* at most this many, newest first; 0: no limit */
};

struct deadletters;

/*
 * On the daemon's bucket connection: adds the retries and first_reason
 * columns to dead_letters when they are missing, and prepares the
 * statements. Returns 0, SP_ERR_NOMEM or SP_ERR_DB.
 */
int deadletters_open(struct bucket *b, struct deadletters **out)
    __attribute__((warn_unused_result));
/*
 * On a connection of its own to <data_dir>/sealpipe.db, which must exist:
 * read-only, or (writable) read-write with the schema applied, for retry
 * requests. Returns 0, or SP_ERR_DB / SP_ERR_NOMEM with err set.
 */
int deadletters_open_file(const char *data_dir, int writable, struct deadletters **out, char *err,
                          size_t errlen) __attribute__((warn_unused_result));
void deadletters_close(struct deadletters *d);

/*
 * Why dl may not be retried, or NULL when it may: only the head of a
 * too_large payload was kept; a replay may be a copy of an envelope that was
 * stored (unless force); a PULL has nothing to store; a message whose
 * device is not recorded could have come from anyone, unless its bytes carry
 * credentials (a whole frame, an envelope) or it is no_route (which records
 * the publisher whenever there was one). Pure.
 */
const char *deadletters_why_not(const struct dead_letter *dl, int force);

/* The dead letters f selects, newest first, into *out (in a), without their
 * payloads (len is set). 0 or SP_ERR_DB / SP_ERR_NOMEM. */
int deadletters_list(struct deadletters *d, const struct deadletters_filter *f, struct arena *a,
                     struct dead_letter **out, size_t *n) __attribute__((warn_unused_result));
/* How many dead letters the bucket keeps of each reason, by reason: at most
 * max into out (reasons in a). 0 or SP_ERR_DB / SP_ERR_NOMEM. */
struct dead_letter_count {
    const char *reason;
    int64_t n;
};
int deadletters_by_reason(struct deadletters *d, struct arena *a, struct dead_letter_count *out,
                          size_t max, size_t *n) __attribute__((warn_unused_result));
/* Dead letter id into *out (in a). 0, SP_ERR_NOTFOUND or SP_ERR_DB. */
int deadletters_get(struct deadletters *d, int64_t id, struct arena *a, struct dead_letter *out)
    __attribute__((warn_unused_result));

/* A write transaction on a writable file handle. 0 or SP_ERR_DB. */
int deadletters_begin(struct deadletters *d) __attribute__((warn_unused_result));
int deadletters_commit(struct deadletters *d) __attribute__((warn_unused_result));
void deadletters_rollback(struct deadletters *d);
/* Asks the daemon to retry dead letter id (again: no second request). 0 or SP_ERR_DB. */
int deadletters_request(struct deadletters *d, int64_t id, int force, int64_t now_ms)
    __attribute__((warn_unused_result));
/* 1 while a retry of id is asked for and not done, 0, or SP_ERR_DB. */
int deadletters_pending(struct deadletters *d, int64_t id);

/*
 * The daemon: up to max requested dead letters, oldest request first, into
 * out (in a). Requests it may not run (deadletters_why_not, or a dead letter
 * deleted since) are deleted here. Of the dead letters of the same
 * one-of-a-kind bytes one comes per call: storing it deletes the others.
 * 0 or SP_ERR_DB / SP_ERR_NOMEM.
 */
int deadletters_take(struct deadletters *d, struct arena *a, struct dead_letter *out, size_t max,
                     size_t *n) __attribute__((warn_unused_result));
/* In the open batch: dead letter id is stored; it and its request go, and so
 * do the other dead letters of the same one-of-a-kind bytes (its digest) and
 * their requests. 0 or SP_ERR_DB. */
int deadletters_stored(struct deadletters *d, int64_t id) __attribute__((warn_unused_result));
/*
 * In the open batch: the retry of id failed again; the dead letter keeps its
 * id and bytes with the new reason and detail (device, when now known),
 * counts the retry, keeps its first reason; its request goes. 0 or SP_ERR_DB.
 */
int deadletters_failed(struct deadletters *d, int64_t id, const char *device, const char *reason,
                       const char *detail) __attribute__((warn_unused_result));

#endif
