/*
 * rawlimit.h - the raw UDP binding's limits on senders that keep failing
 * (garbage, "ACK|ERR|..." answers). A sender is an address and a source
 * port (a device's socket keeps its port, so one bad sender behind a NAT
 * blocks only itself). Each has a token bucket of failures in a small fixed
 * table; one that spends its bucket is blocked for block_ms: its datagrams
 * are dropped before they reach the pipeline. A sender that got a good
 * answer is "good" for good_ms, or until its next failure; every other
 * sender's datagrams share one global bucket (global_rate a second,
 * global_burst in a row), so a flood from ever new ports, or from senders
 * that made themselves good with a valid frame (its auth hash is public),
 * reaches the pipeline at about that rate at most. Pure (the
 * caller passes the time), one thread (rawnet.c's).
 *
 * The table is set-associative (RAWLIMIT_SETS sets of RAWLIMIT_WAYS
 * senders); a new sender takes the slot of its set that is free, else the
 * least recently seen one that is neither blocked nor good, else the least
 * recently seen good one, else the blocked one whose block ends first. So
 * its memory is fixed whatever the number of senders, and a flood of new
 * senders evicts neither blocked nor good ones while others are left.
 */
#ifndef SP_RAWLIMIT_H
#define SP_RAWLIMIT_H

#include <stdint.h>

#define RAWLIMIT_SETS 1024
#define RAWLIMIT_WAYS 4
/* A sender's key: IPv6 address (IPv4 mapped to ::ffff:a.b.c.d), then the
 * port, big-endian. */
#define RAWLIMIT_KEY 18

struct rawlimit_slot {
    uint8_t key[RAWLIMIT_KEY];
    int used;
    double tokens;         /* failures the sender may still make */
    int64_t seen_ms;       /* last refill */
    int64_t blocked_until; /* 0: not blocked */
    int64_t good_until;    /* 0: never answered good */
    uint64_t dropped;      /* datagrams dropped in the current or last block */
};

struct rawlimit {
    double rate;  /* failures per second a sender may keep making */
    double burst; /* failures in a row it may make */
    int64_t block_ms, good_ms;
    double global_rate, global_burst, global_tokens; /* senders not known good */
    int64_t global_ms;                               /* last refill */
    struct rawlimit_slot slot[RAWLIMIT_SETS * RAWLIMIT_WAYS];
};

void rawlimit_init(struct rawlimit *l, double rate, double burst, int64_t block_ms, int64_t good_ms,
                   double global_rate, double global_burst);

enum rawlimit_verdict {
    RAWLIMIT_PASS,    /* to the pipeline */
    RAWLIMIT_BLOCKED, /* the sender is blocked (the drop is counted in its slot) */
    RAWLIMIT_BUSY     /* not known good, and the global bucket is empty */
};

/* Whether a datagram of sender key at now goes to the pipeline (enum rawlimit_verdict). */
int rawlimit_admit(struct rawlimit *l, const uint8_t key[RAWLIMIT_KEY], int64_t now);

/* 1 when datagrams from key are dropped at now (the drop is counted), else 0. */
int rawlimit_blocked(struct rawlimit *l, const uint8_t key[RAWLIMIT_KEY], int64_t now);

/* The sender got a good answer at now: good until now + good_ms. */
void rawlimit_good(struct rawlimit *l, const uint8_t key[RAWLIMIT_KEY], int64_t now);

/*
 * Counts a failure of key at now (it is no longer good). Returns 1 when it starts a block (the
 * caller logs that, once per block), with *dropped_before the number of
 * datagrams the previous block of the same slot dropped; else 0.
 */
int rawlimit_fail(struct rawlimit *l, const uint8_t key[RAWLIMIT_KEY], int64_t now,
                  uint64_t *dropped_before);

#endif
