/*
 * journal.h - the on-disk format of the device journal, written by the
 * broker plugin (broker/plugin/jwriter.c) and read by the daemon
 * (transport/jreader.c). Both build this file, so the format is written once.
 *
 * The journal is a folder of segments, each named after the id of its first
 * record as 16 lowercase hex digits and ".jnl" (0000000000000001.jnl). A
 * segment starts with JOURNAL_SEG_HEAD bytes: the magic "SPJOURN1" and the
 * first id (u64). Records follow back to back, little-endian, no padding:
 *
 *   off size
 *   0   4    magic "SPJR"
 *   4   4    CRC-32C of bytes [8, total)
 *   8   4    total: the record's length, header included
 *   12  1    flags: bits 0-1 QoS, bit 2 retain
 *   13  1    publisher length (0: none)
 *   14  2    topic length
 *   16  8    id: strictly increasing, never reused (see jwriter.c)
 *   24  8    received: wall-clock ms when the broker took the message
 *   32  4    payload length
 *   36       topic, publisher, payload
 *
 * A record is written with one writev(); a reader may see the tail of a
 * segment half written (the writer is at work, or died in a write) and tells
 * the two apart by whether a newer segment exists (the writer never writes an
 * older segment again). docs/ARCHITECTURE.md, "The device journal", has the
 * whole design.
 */
#ifndef SP_JOURNAL_H
#define SP_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#define JOURNAL_SEG_MAGIC "SPJOURN1"
#define JOURNAL_SEG_HEAD  16
#define JOURNAL_REC_MAGIC "SPJR"
#define JOURNAL_REC_HEAD  36
#define JOURNAL_NAME_LEN  20 /* 16 hex digits and ".jnl" */
/* Ids are below this (they are stored as SQLite integers, and a file name
 * naming a larger first id is not a segment). */
#define JOURNAL_ID_MAX (UINT64_C(1) << 62)
/* A segment is closed and a new one begun once it holds this much (one
 * record larger than that makes a segment that large). */
#define JOURNAL_SEG_MAX (64u * 1024 * 1024)

/* One record. Its strings are not NUL-terminated. */
struct journal_rec {
    uint64_t id;
    uint32_t crc; /* as read by journal_head_parse; the writer computes it */
    int64_t received_ms;
    int qos, retain;
    const char *topic;
    size_t topic_len; /* at most 65,535 (MQTT's limit) */
    const char *publisher;
    size_t publisher_len; /* at most 255; 0: none */
    const uint8_t *payload;
    size_t payload_len;
};

enum journal_parse {
    JOURNAL_REC_OK,    /* a whole valid record */
    JOURNAL_REC_SHORT, /* the bytes end before the record does */
    JOURNAL_REC_BAD    /* not a record: bad magic, sizes or CRC */
};

/* CRC-32C (Castagnoli) of p[0..n), continuing from crc (start with 0). */
uint32_t journal_crc32c(uint32_t crc, const void *p, size_t n);

/* The total size of r's record. */
size_t journal_rec_size(const struct journal_rec *r);

/* Fills head with r's record header, CRC included (r's strings and payload
 * follow it on disk). -1 if a length does not fit the format. */
int journal_rec_head(uint8_t head[JOURNAL_REC_HEAD], const struct journal_rec *r);

/*
 * Reads the header at p[0..avail): its total into *total (0 when fewer than
 * JOURNAL_REC_HEAD bytes) and the fixed fields into r (strings not set).
 * JOURNAL_REC_BAD for a header no writer makes, else JOURNAL_REC_OK.
 */
enum journal_parse journal_head_parse(const uint8_t *p, size_t avail, struct journal_rec *r,
                                      size_t *total);

/* The whole record at p[0..avail) into r (pointing into p). */
enum journal_parse journal_rec_parse(const uint8_t *p, size_t avail, struct journal_rec *r,
                                     size_t *total);

/*
 * The first record at or after p[from] whose magic starts it and that checks
 * out (JOURNAL_REC_OK, r and total set) or may, the bytes ending inside it
 * (JOURNAL_REC_SHORT, total set when its header was there): its offset in
 * *at. JOURNAL_REC_BAD when there is none, *at then being where a search
 * with more bytes should go on. How a reader gets past damaged bytes.
 */
enum journal_parse journal_find(const uint8_t *p, size_t avail, size_t from, size_t *at,
                                struct journal_rec *r, size_t *total);

/* The segment header for a segment whose first id is first. */
void journal_seg_head(uint8_t out[JOURNAL_SEG_HEAD], uint64_t first);

/* The first id a segment header names; -1 if p is not one. */
int journal_seg_head_parse(const uint8_t p[JOURNAL_SEG_HEAD], uint64_t *first);

/* The bytes of the segments in dir whose first id is at least from. */
uint64_t journal_bytes(const char *dir, uint64_t from);

/*
 * 1 while the broker refuses device publishes for want of space: the free
 * space of dir's filesystem is under min_free plus the journal's own size
 * (the daemon, whose database is on the same disk, needs about that much to
 * turn the backlog into rows before it deletes the segments). The plugin
 * refuses by it and the daemon says so by it. *avail and *backlog: the
 * figures (free space UINT64_MAX and 0 returned when it cannot be read).
 */
int journal_space_low(const char *dir, uint64_t min_free, uint64_t *avail, uint64_t *backlog);

/* "<dir>/<first>.jnl" into out. -1 if it does not fit. */
int journal_seg_path(char *out, size_t cap, const char *dir, uint64_t first);

/*
 * The segments in dir, by first id, ascending: a malloc'd array in *firsts
 * (free() it) of *n ids. Files with other names are ignored. 0, or -1 with
 * errno set (dir cannot be read, out of memory).
 */
int journal_list(const char *dir, uint64_t **firsts, size_t *n);

#endif
