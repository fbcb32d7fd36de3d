/*
 * rawframe.h - the message boundaries of TagoTiP's raw binding
 * (TagoTipServers.md §4): which bytes are a text frame and which a TagoTiP/S
 * envelope, and, on a stream (TCP), where each message ends. Pure: no
 * sockets, no TagoTiP parsing beyond the first byte; rawnet.c feeds it what
 * it reads and makes a request of each message.
 *
 * The rule (docs/facts.md, "TagoTiP raw binding"): a message whose first
 * byte is 'A' (0x41) or 'H'..'Z' (0x48-0x5A) is a text frame ("PUSH|...",
 * "PULL|...", "PING|..."); any other first byte starts an envelope. On UDP
 * that byte is the envelope's Flags byte, on TCP the high byte of its uint16
 * big-endian length prefix (TagoTiPs.md §5.4). On TCP a text frame ends at
 * "\n"; on UDP the datagram is the message and one trailing "\n" is dropped
 * (TagoTiP.md §3: optional there).
 *
 * A line longer than `keep` bytes is cut: the message carries its first
 * `keep` bytes and full_len says how long it was; the rest is skipped without
 * being stored. A line longer than `line_max` is an error: the stream cannot
 * be trusted any more and the caller closes the connection.
 */
#ifndef SP_RAWFRAME_H
#define SP_RAWFRAME_H

#include <stddef.h>
#include <stdint.h>

enum rawframe_kind {
    RAWFRAME_NONE,    /* no message (an empty datagram) */
    RAWFRAME_LINE,    /* a text frame, without its "\n" */
    RAWFRAME_ENVELOPE /* a TagoTiP/S envelope, without its length prefix */
};

/* The largest length a TCP prefix can announce. */
#define RAWFRAME_ENVELOPE_MAX 65535u

struct rawframe_msg {
    int kind;            /* enum rawframe_kind */
    const uint8_t *data; /* valid until the next rawframe_feed or cleanup */
    size_t len;          /* bytes in data */
    size_t full_len;     /* the message's real size: > len when a line was cut */
};

/* The splitter of one stream. Its fields are private. */
struct rawframe {
    size_t keep;     /* bytes of a line kept */
    size_t line_max; /* a longer line is an error */
    int state;
    size_t seen; /* bytes of the current line so far, '\n' excluded */
    size_t want; /* bytes of the current envelope */
    uint8_t *buf;
    size_t len, cap;
};

/* The kind of a message that starts with byte b: RAWFRAME_LINE or RAWFRAME_ENVELOPE. */
int rawframe_kind_of(uint8_t b);

/*
 * A datagram of n bytes as one message (out->data points into p). Returns
 * out->kind: RAWFRAME_NONE when n is 0, RAWFRAME_LINE (one trailing "\n"
 * left out) or RAWFRAME_ENVELOPE; full_len is len (a datagram is never cut
 * here).
 */
int rawframe_datagram(const uint8_t *p, size_t n, struct rawframe_msg *out);

/* A stream splitter keeping keep bytes of a line and refusing lines over
 * line_max (keep <= line_max). Allocates nothing yet. */
void rawframe_init(struct rawframe *f, size_t keep, size_t line_max);
/* Frees the buffer; f may be initialized again. */
void rawframe_cleanup(struct rawframe *f);

/*
 * Consumes bytes of in[0..n) until one message is complete or in is used
 * up; *used receives the number of bytes consumed (the caller passes the
 * rest again). Returns 1 with the message in out, 0 when every byte was
 * consumed without completing one, SP_ERR_TOOLARGE for a line longer than
 * line_max or SP_ERR_NOMEM; after an error the stream is lost.
 */
int rawframe_feed(struct rawframe *f, const uint8_t *in, size_t n, size_t *used,
                  struct rawframe_msg *out) __attribute__((warn_unused_result));

/* 1 when the splitter is between messages (nothing of a next one read). */
int rawframe_idle(const struct rawframe *f);

#endif
