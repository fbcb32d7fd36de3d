/*
 * rawlimit.c - failures per source address, a token bucket each, in a
 * fixed set-associative table (see rawlimit.h). Used by rawnet.c's thread.
 */
#include "rawlimit.h"

#include <string.h>

void rawlimit_init(struct rawlimit *l, double rate, double burst, int64_t block_ms)
{
    memset(l, 0, sizeof *l);
    l->rate = rate;
    l->burst = burst;
    l->block_ms = block_ms;
}

/* FNV-1a of the address: which set it lives in. */
static struct rawlimit_slot *set_of(struct rawlimit *l, const uint8_t addr[16])
{
    uint32_t h = 2166136261u;
    int i;

    for (i = 0; i < 16; i++)
        h = (h ^ addr[i]) * 16777619u;
    return &l->slot[(h % RAWLIMIT_SETS) * RAWLIMIT_WAYS];
}

static struct rawlimit_slot *find(struct rawlimit *l, const uint8_t addr[16])
{
    struct rawlimit_slot *s = set_of(l, addr);
    int i;

    for (i = 0; i < RAWLIMIT_WAYS; i++)
        if (s[i].used && memcmp(s[i].addr, addr, 16) == 0)
            return &s[i];
    return NULL;
}

/* 1 when slot a is a better one to give a new address than slot b: a free
 * one, else one not blocked and least recently seen, else the one whose
 * block ends first. */
static int better(const struct rawlimit_slot *a, const struct rawlimit_slot *b, int64_t now)
{
    int a_blocked = a->blocked_until > now, b_blocked = b->blocked_until > now;

    if (!a->used || !b->used)
        return !a->used && b->used;
    if (a_blocked != b_blocked)
        return !a_blocked;
    return a_blocked ? a->blocked_until < b->blocked_until : a->seen_ms < b->seen_ms;
}

static struct rawlimit_slot *take(struct rawlimit *l, const uint8_t addr[16], int64_t now)
{
    struct rawlimit_slot *s = set_of(l, addr), *best = s;
    int i;

    for (i = 1; i < RAWLIMIT_WAYS; i++)
        if (better(&s[i], best, now))
            best = &s[i];
    memset(best, 0, sizeof *best);
    memcpy(best->addr, addr, 16);
    best->used = 1;
    best->tokens = l->burst;
    best->seen_ms = now;
    return best;
}

int rawlimit_blocked(struct rawlimit *l, const uint8_t addr[16], int64_t now)
{
    struct rawlimit_slot *s = find(l, addr);

    if (!s || s->blocked_until <= now)
        return 0;
    s->dropped++;
    return 1;
}

int rawlimit_fail(struct rawlimit *l, const uint8_t addr[16], int64_t now, uint64_t *dropped_before)
{
    struct rawlimit_slot *s = find(l, addr);

    if (!s)
        s = take(l, addr, now);
    if (now > s->seen_ms) {
        s->tokens += (double)(now - s->seen_ms) * l->rate / 1000.0;
        if (s->tokens > l->burst)
            s->tokens = l->burst;
        s->seen_ms = now;
    }
    s->tokens -= 1.0;
    if (s->tokens >= 0.0 || s->blocked_until > now)
        return 0;
    *dropped_before = s->dropped;
    s->dropped = 0;
    s->blocked_until = now + l->block_ms;
    s->tokens = l->burst;
    return 1;
}
