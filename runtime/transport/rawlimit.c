/*
 * rawlimit.c - failures per UDP sender (address and port), a token bucket
 * each in a fixed set-associative table, and one global bucket for senders
 * not known good (see rawlimit.h). Used by rawnet.c's thread.
 */
#include "rawlimit.h"

#include <string.h>

void rawlimit_init(struct rawlimit *l, double rate, double burst, int64_t block_ms, int64_t good_ms,
                   double global_rate, double global_burst)
{
    memset(l, 0, sizeof *l);
    l->rate = rate;
    l->burst = burst;
    l->block_ms = block_ms;
    l->good_ms = good_ms;
    l->global_rate = global_rate;
    l->global_burst = global_burst;
    l->global_tokens = global_burst;
}

/* FNV-1a of the key: which set it lives in. */
static struct rawlimit_slot *set_of(struct rawlimit *l, const uint8_t key[RAWLIMIT_KEY])
{
    uint32_t h = 2166136261u;
    int i;

    for (i = 0; i < RAWLIMIT_KEY; i++)
        h = (h ^ key[i]) * 16777619u;
    return &l->slot[(h % RAWLIMIT_SETS) * RAWLIMIT_WAYS];
}

static struct rawlimit_slot *find(struct rawlimit *l, const uint8_t key[RAWLIMIT_KEY])
{
    struct rawlimit_slot *s = set_of(l, key);
    int i;

    for (i = 0; i < RAWLIMIT_WAYS; i++)
        if (s[i].used && memcmp(s[i].key, key, RAWLIMIT_KEY) == 0)
            return &s[i];
    return NULL;
}

/* How much a slot is worth keeping: 0 free, 1 idle, 2 good, 3 blocked. */
static int worth(const struct rawlimit_slot *s, int64_t now)
{
    if (!s->used)
        return 0;
    if (s->blocked_until > now)
        return 3;
    return s->good_until >= now ? 2 : 1;
}

/* 1 when slot a is a better one to give a new sender than slot b (rawlimit.h). */
static int better(const struct rawlimit_slot *a, const struct rawlimit_slot *b, int64_t now)
{
    int wa = worth(a, now), wb = worth(b, now);

    if (wa != wb)
        return wa < wb;
    if (wa == 0)
        return 0;
    return wa == 3 ? a->blocked_until < b->blocked_until : a->seen_ms < b->seen_ms;
}

static struct rawlimit_slot *take(struct rawlimit *l, const uint8_t key[RAWLIMIT_KEY], int64_t now)
{
    struct rawlimit_slot *s = set_of(l, key), *best = s;
    int i;

    for (i = 1; i < RAWLIMIT_WAYS; i++)
        if (better(&s[i], best, now))
            best = &s[i];
    memset(best, 0, sizeof *best);
    memcpy(best->key, key, RAWLIMIT_KEY);
    best->used = 1;
    best->tokens = l->burst;
    best->seen_ms = now;
    return best;
}

/* One token of the global bucket, if there is one. */
static int global_take(struct rawlimit *l, int64_t now)
{
    if (now > l->global_ms) {
        l->global_tokens += (double)(now - l->global_ms) * l->global_rate / 1000.0;
        if (l->global_tokens > l->global_burst)
            l->global_tokens = l->global_burst;
        l->global_ms = now;
    }
    if (l->global_tokens < 1.0)
        return 0;
    l->global_tokens -= 1.0;
    return 1;
}

int rawlimit_admit(struct rawlimit *l, const uint8_t key[RAWLIMIT_KEY], int64_t now)
{
    struct rawlimit_slot *s = find(l, key);

    if (s && s->blocked_until > now) {
        s->dropped++;
        return RAWLIMIT_BLOCKED;
    }
    if (s && s->good_until >= now)
        return RAWLIMIT_PASS;
    return global_take(l, now) ? RAWLIMIT_PASS : RAWLIMIT_BUSY;
}

int rawlimit_blocked(struct rawlimit *l, const uint8_t key[RAWLIMIT_KEY], int64_t now)
{
    struct rawlimit_slot *s = find(l, key);

    if (!s || s->blocked_until <= now)
        return 0;
    s->dropped++;
    return 1;
}

void rawlimit_good(struct rawlimit *l, const uint8_t key[RAWLIMIT_KEY], int64_t now)
{
    struct rawlimit_slot *s = find(l, key);

    if (!s)
        s = take(l, key, now);
    s->good_until = now + l->good_ms;
}

int rawlimit_fail(struct rawlimit *l, const uint8_t key[RAWLIMIT_KEY], int64_t now,
                  uint64_t *dropped_before)
{
    struct rawlimit_slot *s = find(l, key);

    if (!s)
        s = take(l, key, now);
    if (now > s->seen_ms) {
        s->tokens += (double)(now - s->seen_ms) * l->rate / 1000.0;
        if (s->tokens > l->burst)
            s->tokens = l->burst;
        s->seen_ms = now;
    }
    s->tokens -= 1.0;
    s->good_until = 0; /* back under the global bucket until a good answer */
    if (s->tokens >= 0.0 || s->blocked_until > now)
        return 0;
    *dropped_before = s->dropped;
    s->dropped = 0;
    s->blocked_until = now + l->block_ms;
    s->tokens = l->burst;
    return 1;
}
