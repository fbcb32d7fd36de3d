/*
 * wire.h - the binary protocol between the daemon and its Lua workers.
 *
 * A frame is a 4-byte little-endian body length, then the body: one type
 * byte and the fields below, in order. Integers are little-endian; a string
 * is a u32 length and its bytes (length 0xffffffff: NULL); f64 is an IEEE
 * double's bits as u64.
 *
 *   daemon -> worker                      worker -> daemon
 *   'L' name src env                      'l' i32 rc, err, u32 n, n topics,
 *                                             i32 timeout_ms (0: the daemon's),
 *                                             u8 handlers (HOST_BIT mask), schedule,
 *                                             u8 events (HOST_BIT mask), i64 offline_after,
 *                                             when (JSON), scope (JSON),
 *                                             u32 n, n webhooks entries
 *   'U' name                              'u' i32 rc
 *   'J' analysis, u8 handler, message     'j' i32 rc, err, records, publishes,
 *       (wire_put_msg)                        logs (u32 n, n strings, u32 dropped),
 *                                             inserts (u32 n, n of: serial, records),
 *                                             runs (u32 n, n of: analysis, payload),
 *                                             webhooks (u32 n, n of: method, url,
 *                                             u32 k, k of: name, value; body)
 *   'A' i32 rc, err, records              'Q' serial, variable, i64 start,
 *                                             i64 stop, u32 qty
 *   'A' i32 rc, err, devices              'D' tags (JSON object or NULL), after,
 *       (u32 n, n of: serial, name, tags,     u32 limit
 *       params, u8 connected, i64 last_sent)
 *   'A' i32 rc, err, i64 count, f64 min,  'G' serial, variable, i64 start, i64 stop
 *       max, avg, sum, first, last
 *
 * While it runs a job the worker may send 'Q' (a query() call), 'D'
 * (devices{}) or 'G' (aggregate{}) and then waits for the 'A' answer before
 * it goes on; an answer's body after rc and err follows its request's kind.
 * The 'j' reply ends with the delete_data() calls: u32 n, n of: serial,
 * variable (NULL: every one), i64 before.
 *
 * The worker answers every request in order, one reply each. Everything the
 * daemon reads from a worker is checked as if it came from the network: a
 * worker runs user code and may have been subverted.
 */
#ifndef SP_WIRE_H
#define SP_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/buf.h"
#include "base/record.h"
#include "host.h"

#define WIRE_MAX_FRAME (64u * 1024 * 1024)

enum {
    WIRE_LOAD = 'L',
    WIRE_UNLOAD = 'U',
    WIRE_JOB = 'J',
    WIRE_LOADED = 'l',
    WIRE_UNLOADED = 'u',
    WIRE_DONE = 'j',
    WIRE_QUERY = 'Q',
    WIRE_ANSWER = 'A',
    WIRE_DEVICES = 'D',
    WIRE_AGGREGATE = 'G',
};

/* Writing: append to b (its max bounds a frame). Each returns 0 or -1. */
/* Blocking frame I/O on a socket, for the worker (and a test's scripted
 * worker); the daemon's side (pool.c) reads with deadlines instead.
 * wire_read_frame reads one whole frame into b and returns its type, or -1
 * at EOF, on an error or a frame over WIRE_MAX_FRAME. wire_write_all writes
 * n bytes; 0 or -1. */
int wire_read_frame(int fd, struct buf *b);
int wire_write_all(int fd, const void *p, size_t n);

int wire_begin(struct buf *b, int type);   /* reserves the length */
int wire_end(struct buf *b, size_t start); /* fills it in */
int wire_u8(struct buf *b, unsigned v);
int wire_u32(struct buf *b, uint32_t v);
int wire_i64(struct buf *b, int64_t v);
int wire_f64(struct buf *b, double v);
int wire_str(struct buf *b, const char *s); /* NULL allowed */
int wire_bytes(struct buf *b, const void *p, size_t n);
int wire_put_msg(struct buf *b, const char *analysis, const struct host_msg *m);
int wire_put_records(struct buf *b, const struct record *r, size_t n);
int wire_put_publishes(struct buf *b, const struct host_publish *p, size_t n);
int wire_put_logs(struct buf *b, const char *const *lines, size_t n, size_t dropped);
int wire_put_inserts(struct buf *b, const struct host_insert *v, size_t n);

/* Reading: a cursor over one frame body. A read past the end, or a bad
 * field, sets bad; later reads then return zeros and NULLs. When the arena
 * cannot hold what was read, full is set too: the frame may be well formed,
 * the reader is the one out of memory. */
struct wire_in {
    const uint8_t *p;
    size_t len, pos;
    int bad;
    int full;        /* bad because arena a is exhausted */
    struct arena *a; /* strings are copied here, NUL-terminated */
};

unsigned wire_get_u8(struct wire_in *in);
uint32_t wire_get_u32(struct wire_in *in);
int64_t wire_get_i64(struct wire_in *in);
double wire_get_f64(struct wire_in *in);
const char *wire_get_str(struct wire_in *in, size_t *len); /* len may be NULL */
/* A message; its strings and records live in in->a. Its records (the
 * daemon's default normalization) are checked for shape only, not with
 * record_validate(): a "payload" record may hold a whole payload. */
int wire_get_msg(struct wire_in *in, const char **analysis, struct host_msg *m);
/* Records, each checked with record_validate(); err says which failed
 * (in->full: the arena ran out, not a bad record). */
int wire_get_records(struct wire_in *in, struct record_vec *out, size_t max, char *err,
                     size_t errlen);
/* Records the daemon sends the worker (query() answers; msg.records in
 * wire_get_msg): checked for shape only. They are the daemon's own data,
 * which may hold string values longer than a record handle() returns may
 * (a "payload" record holds a whole payload). */
int wire_get_daemon_records(struct wire_in *in, struct record_vec *out, size_t max, char *err,
                            size_t errlen);
/* Publishes, at most max, under publish()'s rules: a topic of NUL-free UTF-8
 * without wildcards or '$' (but a device's ack topic), a seal_for serial. */
int wire_get_publishes(struct wire_in *in, struct host_publish **out, size_t *n, size_t max,
                       char *err, size_t errlen);
/* Log lines, at most max, each cut to HOST_LOG_LINE_MAX bytes and with any
 * control character or invalid UTF-8 byte replaced by '?', so a worker cannot
 * forge daemon log lines. */
int wire_get_logs(struct wire_in *in, const char ***out, size_t *n, size_t *dropped, size_t max);
/* Inserts, at most max calls and max_records records in all, each checked;
 * a serial must be 1-SP_MAX_SERIAL characters of [A-Za-z0-9_-]. */
int wire_get_inserts(struct wire_in *in, struct host_insert **out, size_t *n, size_t max,
                     size_t max_records, char *err, size_t errlen);
/*
 * The body of a job's reply after its rc and err ('j'), as the daemon reads
 * it: returned records and host_max_inserts(handler) inserts (the handler
 * the daemon asked for) with at most max_records records together, at most
 * max_publishes publishes, HOST_LOG_LINES log lines and HOST_MAX_DELETES
 * deletes. Returns 0, or -1 with err saying what was wrong (out is then
 * partly written).
 */
int wire_get_result(struct wire_in *in, int handler, size_t max_records, size_t max_publishes,
                    struct host_out *out, char *err, size_t errlen);
/* run_analysis() calls ('j', after the inserts): at most HOST_MAX_RUNS, each
 * a well-formed analysis name and a payload of at most HOST_RUN_PAYLOAD_MAX
 * bytes. */
int wire_put_runs(struct buf *b, const struct host_run_call *v, size_t n);
int wire_get_runs(struct wire_in *in, struct host_run_call **out, size_t *n, char *err,
                  size_t errlen);
/* webhook() calls ('j', after the runs): at most HOST_MAX_WEBHOOKS, each
 * with a method webhook_method_check accepts, a NUL-free URL of at most
 * WEBHOOK_URL_MAX bytes, at most WEBHOOK_HEADERS_MAX headers that pass
 * webhook_header_check, and a body of at most WEBHOOK_BODY_MAX bytes. The
 * URL against the analysis's list is the daemon's check (pipeline_jobs.c). */
int wire_put_webhooks(struct buf *b, const struct host_webhook *v, size_t n);
int wire_get_webhooks(struct wire_in *in, struct host_webhook **out, size_t *n, char *err,
                      size_t errlen);
/* A `webhooks` entry an analysis declares ('l'), or NULL (and bad set) when
 * webhook_entry_check refuses it. */
const char *wire_get_webhook_entry(struct wire_in *in);
/* A topic filter an analysis declares ('l'), or NULL (and bad set) when it is
 * not one host_load() accepts: a '$' topic, a malformed filter. */
const char *wire_get_topic(struct wire_in *in);
/* A query() call ('Q', after the type byte), with the checks host_set_query()
 * promises (serial shape, variable, start <= stop, qty). Returns 0, or -1
 * when it is malformed. */
int wire_get_query(struct wire_in *in, struct host_query *q);

/* ---- wire_data.c: devices{}, aggregate{}, delete_data{} ------------------ */

/* 'D' and 'G' after the type byte, and their answers after rc and err. The
 * readers check what host.h promises the daemon's functions (and the worker
 * what the daemon promises): 0, or -1 when malformed. */
int wire_put_devices_query(struct buf *b, const struct host_devices_query *q);
int wire_get_devices_query(struct wire_in *in, struct host_devices_query *q);
int wire_put_devices(struct buf *b, const struct host_device *v, size_t n);
/* At most max devices, in serial order, each a serial and JSON objects. */
int wire_get_devices(struct wire_in *in, struct host_device **out, size_t *n, size_t max);
int wire_put_aggregate_query(struct buf *b, const struct host_aggregate_query *q);
int wire_get_aggregate_query(struct wire_in *in, struct host_aggregate_query *q);
int wire_put_aggregate(struct buf *b, const struct host_aggregate *g);
int wire_get_aggregate(struct wire_in *in, struct host_aggregate *g);
/* delete_data() calls ('j', after the runs): at most HOST_MAX_DELETES, each
 * a serial, a variable as query()'s (or NULL) and a time. */
int wire_put_deletes(struct buf *b, const struct host_delete *v, size_t n);
int wire_get_deletes(struct wire_in *in, struct host_delete **out, size_t *n, char *err,
                     size_t errlen);

/* Internal to wire*.c: wire.c's array reader and variable check. */
int wire__get_array(struct wire_in *in, size_t size, size_t max, const char *what, uint32_t *k,
                    void **v, char *err, size_t errlen);
int wire__variable_ok(const char *v, size_t n);

#endif
