/*
 * bucket.h - where results land: records and dead letters in SQLite.
 *
 * The buckets live in <data_dir>/sealpipe.db (schema: schemas/bucket.sql),
 * in WAL mode so users can query them with sqlite3 while the daemon writes.
 * This is the only module that writes data rows, and the only daemon module
 * that includes <sqlite3.h> for buckets.
 *
 * The daemon writes in batches: bucket_begin(), the messages' rows, then
 * bucket_commit(). The MQTT acknowledgements for the batch are released only
 * after bucket_commit() returns 0. A per-message savepoint
 * (bucket_msg_begin/bucket_msg_end) can roll one message back alone.
 *
 * Redelivery: the broker redelivers unacknowledged QoS 1 messages with their
 * original packet id. The bucket remembers the (packet id, payload digest) of
 * the last SP_LIMIT_DEDUP_WINDOW committed messages, in memory and in the
 * delivery_log row written in the same transaction, so a message that
 * was committed but not yet acknowledged when the daemon died is recognised
 * and not stored twice. The window is far smaller than the 65535 packet ids,
 * so a new message never matches an old one.
 *
 * Not thread-safe: one struct bucket per thread.
 */
#ifndef SP_BUCKET_H
#define SP_BUCKET_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/record.h"

#define BUCKET_DIGEST_LEN 16

struct bucket;

enum bucket_sync { BUCKET_SYNC_NORMAL = 1, BUCKET_SYNC_FULL = 2 };

/*
 * Opens (creating as needed) <data_dir>/sealpipe.db in WAL mode with
 * synchronous=sync (FULL: a commit survives power loss; NORMAL: survives a
 * process crash only), applies the schema and loads the delivery window.
 * Returns 0, SP_ERR_IO or SP_ERR_DB with details in err.
 */
int bucket_open(const char *data_dir, int sync, struct bucket **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void bucket_close(struct bucket *b);

/* Batch transaction (BEGIN IMMEDIATE ... COMMIT). Return 0 or SP_ERR_DB. */
int bucket_begin(struct bucket *b) __attribute__((warn_unused_result));
/* How long a statement waits for a lock another connection holds before it
 * fails with SQLITE_BUSY (BUCKET_BUSY_MS from bucket_open; shorter at stop). */
void bucket_busy_ms(struct bucket *b, int ms);
int bucket_commit(struct bucket *b) __attribute__((warn_unused_result));
/* Rolls the whole batch back, including the in-memory window changes. */
void bucket_rollback(struct bucket *b);

/*
 * Optional per-message savepoint inside a batch; keep = 0 rolls the message
 * back. The pipeline uses them only when it retries a batch that held a
 * message the database refused (see bucket_insert).
 */
int bucket_msg_begin(struct bucket *b) __attribute__((warn_unused_result));
int bucket_msg_end(struct bucket *b, int keep) __attribute__((warn_unused_result));

/* What the bucket records about a message. */
struct bucket_msg {
    const char *topic;
    const char *serial; /* device, NULL when unknown */
    int64_t received_ms;
    int mid; /* MQTT packet id, 0 for QoS 0 (never deduplicated) */
    uint8_t digest[BUCKET_DIGEST_LEN];
    /* Its bytes are one message (an envelope, a frame with "!N"): its dead
     * letter keeps the digest, which a retry that stores it looks for. */
    int one_of_a_kind;
};

/* Computes m->digest over topic and payload. */
void bucket_digest(const char *topic, const uint8_t *payload, size_t len,
                   uint8_t digest[BUCKET_DIGEST_LEN]);

/* 1 if (mid, digest) was committed recently, 0 if not. mid 0 is never seen. */
int bucket_seen(struct bucket *b, int mid, const uint8_t digest[BUCKET_DIGEST_LEN]);
/* Remembers (mid, digest) as part of the open batch. Returns 0 or SP_ERR_DB. */
int bucket_remember(struct bucket *b, int mid, const uint8_t digest[BUCKET_DIGEST_LEN])
    __attribute__((warn_unused_result));
/* Forgets the whole window (the broker started a new session: nothing can be
 * redelivered). Outside a batch. Returns 0 or SP_ERR_DB. */
int bucket_forget(struct bucket *b) __attribute__((warn_unused_result));

/*
 * Stores n records for device m->serial. Records without time get
 * m->received_ms. Returns 0, SP_ERR_PAYLOAD when the database refuses a
 * record (a constraint, a value too big: the message's fault), or SP_ERR_DB
 * (the database's: disk full, I/O), with details in err.
 */
int bucket_insert(struct bucket *b, const struct bucket_msg *m, const struct record *r, size_t n,
                  char *err, size_t errlen) __attribute__((warn_unused_result));

/*
 * Stores a dead letter: the message's topic, device (if known), reason (a
 * short word such as "replay"), detail (free text), and the original payload
 * bytes. Returns 0 or SP_ERR_DB.
 */
int bucket_dead(struct bucket *b, const struct bucket_msg *m, const char *reason,
                const char *detail, const uint8_t *payload, size_t len)
    __attribute__((warn_unused_result));

/*
 * The latest record (greatest time, then id) of a device's variable, strings
 * copied into a. Returns 0, SP_ERR_NOTFOUND or SP_ERR_DB.
 */
int bucket_latest(struct bucket *b, const char *serial, const char *variable, struct arena *a,
                  struct record *out) __attribute__((warn_unused_result));

/*
 * Up to qty records of device serial (and of variable, unless NULL) with
 * start_ms <= time <= stop_ms, newest first, into arena a. Reads committed
 * data. Returns 0, SP_ERR_NOMEM or SP_ERR_DB.
 */
/*
 * The next server-side TagoTiP/S counter for the key fingerprinted key_id,
 * advanced in the open batch (so it is durable before anything sealed with
 * it leaves). Returns 0, SP_ERR_REPLAY when the key's 2^32 counters are used
 * up (rotate it), or SP_ERR_DB.
 */
int bucket_downlink_counter(struct bucket *b, const uint8_t key_id[8], uint32_t *out)
    __attribute__((warn_unused_result));

/* The fingerprint of a key (downlink_counters, device_key_use). */
#define BUCKET_KEY_ID_LEN 8

/*
 * In the open batch: device serial's last envelope was opened with key
 * key_id, which is not its current key; or (key_id NULL) with its current
 * key. Returns 0 or SP_ERR_DB.
 */
int bucket_key_used(struct bucket *b, const char *serial, const uint8_t *key_id)
    __attribute__((warn_unused_result));
/* The key serial last used when that is not its current one: 0 with key_id,
 * SP_ERR_NOTFOUND (its current key, or none seen), or SP_ERR_DB. */
int bucket_key_last(struct bucket *b, const char *serial, uint8_t key_id[BUCKET_KEY_ID_LEN])
    __attribute__((warn_unused_result));

/* A message kept in the deferred table (schemas/bucket.sql). */
struct bucket_deferred {
    int64_t id;
    const char *topic;
    const uint8_t *payload; /* NUL-terminated */
    size_t len, full_len;
    int qos, retain, hops;
    const char *publisher; /* NULL: none */
};

/* Keeps d in the deferred table, as part of the open batch. Returns 0 with
 * its row's id in *id, or SP_ERR_DB. */
int bucket_defer(struct bucket *b, const struct bucket_deferred *d, int64_t *id)
    __attribute__((warn_unused_result));
/* The highest id in the deferred table (0: empty) in *id. Returns 0 or SP_ERR_DB. */
int bucket_deferred_last(struct bucket *b, int64_t *id) __attribute__((warn_unused_result));
/* The oldest deferred messages with after < id <= upto, at most max, copied
 * into a. Returns 0 with the count in *n, or SP_ERR_DB/NOMEM. */
int bucket_deferred_take(struct bucket *b, struct arena *a, struct bucket_deferred *out, size_t max,
                         int64_t after, int64_t upto, size_t *n)
    __attribute__((warn_unused_result));
/* Deletes deferred message id, as part of the open batch. Returns 0 or SP_ERR_DB. */
int bucket_deferred_done(struct bucket *b, int64_t id) __attribute__((warn_unused_result));

/* A command for a device (the commands table of schemas/bucket.sql). */
struct bucket_command {
    int64_t id;
    const char *serial;
    const char *command; /* the CMD detail */
    int sealed;
    uint8_t *payload; /* NULL until prepared */
    size_t payload_len;
};

/* Queues a command (sealpipe device cmd). Returns 0 with its id, or SP_ERR_DB. */
int bucket_command_queue(struct bucket *b, const char *serial, const char *command, int sealed,
                         int64_t *id) __attribute__((warn_unused_result));

/* Up to max commands not yet sent nor failed, oldest first, strings in a. */
int bucket_commands_pending(struct bucket *b, struct arena *a, struct bucket_command *out,
                            size_t max, size_t *n) __attribute__((warn_unused_result));

/*
 * Records progress of command id: with payload, the bytes to publish;
 * else with error, why it cannot be sent; else that it was sent at sent_ms.
 * Returns 0 or SP_ERR_DB.
 */
int bucket_command_update(struct bucket *b, int64_t id, const uint8_t *payload, size_t len,
                          int64_t sent_ms, const char *error) __attribute__((warn_unused_result));

int bucket_query(struct bucket *b, const char *serial, const char *variable, int64_t start_ms,
                 int64_t stop_ms, size_t qty, struct arena *a, struct record_vec *out)
    __attribute__((warn_unused_result));

#endif
