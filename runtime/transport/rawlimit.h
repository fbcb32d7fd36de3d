/*
 * rawlimit.h - the raw UDP binding's limit on sources that keep failing
 * (garbage, "ACK|ERR|..." answers): a token bucket of failures per source
 * address in a small fixed table. A source that spends its bucket is blocked
 * for block_ms: its datagrams are dropped before they reach the pipeline.
 * Pure (the caller passes the time), one thread (rawnet.c's).
 *
 * The table is set-associative (RAWLIMIT_SETS sets of RAWLIMIT_WAYS
 * addresses); a new address takes the least recently seen slot of its set
 * that is not blocked, or else the one whose block ends first. So its memory
 * is fixed whatever the number of sources, and a blocked source stays
 * blocked unless its whole set is taken by newer blocked ones.
 */
#ifndef SP_RAWLIMIT_H
#define SP_RAWLIMIT_H

#include <stdint.h>

#define RAWLIMIT_SETS 64
#define RAWLIMIT_WAYS 4

struct rawlimit_slot {
    uint8_t addr[16]; /* IPv6, or IPv4 mapped to ::ffff:a.b.c.d */
    int used;
    double tokens;         /* failures the source may still make */
    int64_t seen_ms;       /* last refill */
    int64_t blocked_until; /* 0: not blocked */
    uint64_t dropped;      /* datagrams dropped in the current or last block */
};

struct rawlimit {
    double rate;  /* failures per second a source may keep making */
    double burst; /* failures in a row it may make */
    int64_t block_ms;
    struct rawlimit_slot slot[RAWLIMIT_SETS * RAWLIMIT_WAYS];
};

void rawlimit_init(struct rawlimit *l, double rate, double burst, int64_t block_ms);

/* 1 when datagrams from addr are dropped at now (the drop is counted), else 0. */
int rawlimit_blocked(struct rawlimit *l, const uint8_t addr[16], int64_t now);

/*
 * Counts a failure of addr at now. Returns 1 when it starts a block (the
 * caller logs that, once per block), with *dropped_before the number of
 * datagrams the previous block of the same slot dropped; else 0.
 */
int rawlimit_fail(struct rawlimit *l, const uint8_t addr[16], int64_t now,
                  uint64_t *dropped_before);

#endif
