/*
 * inspect.c - the inspector's events (inspect.h): a ring of recent events
 * per device, and the watchers' pending output.
 *
 * A kept event is its line without the "seq" field, which the line a watcher
 * gets starts with: {"seq":N,<the rest>. Rings are found by a hash of the
 * serial and kept in least-recently-active order, so that past
 * INSPECT_RINGS_MAX devices the quietest one's ring goes. A ring's slots
 * grow with its events (RING_SLOTS_MIN, doubling to INSPECT_RING_EVENTS):
 * past INSPECT_RINGS_MAX devices a ring is made and another dropped at
 * nearly every message (10,000 devices sending in turn), and 512 slots
 * made that a 4 KiB calloc each time: 0.9 us a message (make bench, d10k).
 */
#include "inspect.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/errors.h"

#define HASH_SLOTS     8192 /* 2 x INSPECT_RINGS_MAX */
#define RING_SLOTS_MIN 4

struct kept {
    uint64_t seq;
    int64_t at;
    uint32_t len;        /* of line */
    uint32_t private_at; /* 0: none */
    char line[];
};

struct ring {
    struct ring *hnext;         /* same hash slot */
    struct ring *older, *newer; /* activity order */
    struct kept **ev;           /* slots, a circular buffer: the oldest at head */
    size_t slots, head, n, bytes;
    char device[];
};

struct inspect_watcher {
    char *device; /* NULL: all */
    int plaintext;
    int used;
    int wake;         /* eventfd */
    uint64_t dropped; /* events not given for want of room */
    struct buf out;   /* output; the first `taken` bytes already taken */
    size_t taken;
};

struct inspect {
    pthread_mutex_t mu;
    int wake; /* eventfd */
    uint64_t seq;
    struct ring *slots[HASH_SLOTS];
    struct ring *oldest, *newest;
    size_t nrings;
    size_t kept_bytes; /* of every ring's events */
    size_t kept;       /* events in every ring */
    size_t nwatchers;  /* watchers[] in use: none, the common case, skips them */
    struct inspect_watcher watchers[INSPECT_WATCHERS_MAX];
};

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;

    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h % HASH_SLOTS;
}

/* ---- building ----------------------------------------------------------- */

void inspect_begin(struct inspect_ev *e, const char *device, const char *kind, int64_t at_ms)
{
    size_t n = device ? strnlen(device, sizeof e->device - 1) : 0;

    memcpy(e->device, device ? device : "", n);
    e->device[n] = '\0';
    e->private_at = 0;
    e->at = at_ms;
    jsonline_begin(&e->j, e->buf, sizeof e->buf);
    jsonline_int(&e->j, "at", at_ms);
    jsonline_str(&e->j, "device", e->device);
    jsonline_str(&e->j, "kind", kind);
}

void inspect_private(struct inspect_ev *e)
{
    e->private_at = e->j.len;
}

/* ---- rings -------------------------------------------------------------- */

static void lru_unlink(struct inspect *in, struct ring *r)
{
    if (r->older)
        r->older->newer = r->newer;
    else
        in->oldest = r->newer;
    if (r->newer)
        r->newer->older = r->older;
    else
        in->newest = r->older;
    r->older = r->newer = NULL;
}

static void lru_push(struct inspect *in, struct ring *r)
{
    r->older = in->newest;
    r->newer = NULL;
    if (in->newest)
        in->newest->newer = r;
    else
        in->oldest = r;
    in->newest = r;
}

static void ring_free(struct ring *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->ev[(r->head + i) % r->slots]);
    free(r->ev);
    free(r);
}

/* Drops the ring of the device that has been quiet longest. */
static void drop_oldest_ring(struct inspect *in)
{
    struct ring *r = in->oldest, **pp;

    for (pp = &in->slots[hash(r->device)]; *pp != r; pp = &(*pp)->hnext)
        ;
    *pp = r->hnext;
    lru_unlink(in, r);
    in->kept_bytes -= r->bytes;
    in->kept -= r->n;
    ring_free(r);
    in->nrings--;
}

/* The ring of device, made if needed, as the most recently active. */
static struct ring *ring_of(struct inspect *in, const char *device)
{
    uint32_t h = hash(device);
    struct ring *r;

    for (r = in->slots[h]; r; r = r->hnext)
        if (strcmp(r->device, device) == 0) {
            lru_unlink(in, r);
            lru_push(in, r);
            return r;
        }
    if (in->nrings >= INSPECT_RINGS_MAX)
        drop_oldest_ring(in);
    size_t n = strlen(device) + 1;
    if (!(r = calloc(1, sizeof *r + n)))
        return NULL;
    if (!(r->ev = malloc(RING_SLOTS_MIN * sizeof *r->ev))) {
        free(r);
        return NULL;
    }
    r->slots = RING_SLOTS_MIN;
    memcpy(r->device, device, n);
    r->hnext = in->slots[h];
    in->slots[h] = r;
    lru_push(in, r);
    in->nrings++;
    return r;
}

static void ring_pop(struct inspect *in, struct ring *r)
{
    struct kept *k = r->ev[r->head];

    r->bytes -= k->len;
    in->kept_bytes -= k->len;
    free(k);
    r->head = (r->head + 1) % r->slots;
    r->n--;
    in->kept--;
}

/* Doubles r's slots, oldest event first. -1: no memory (r is unchanged). */
static int ring_grow(struct ring *r)
{
    struct kept **ev = malloc(2 * r->slots * sizeof *ev);

    if (!ev)
        return -1;
    for (size_t i = 0; i < r->n; i++)
        ev[i] = r->ev[(r->head + i) % r->slots];
    free(r->ev);
    r->ev = ev;
    r->slots *= 2;
    r->head = 0;
    return 0;
}

/* Keeps k in r (the most recently active ring), dropping r's oldest events
 * past its bounds, then the quietest devices' rings past the global one. */
static void ring_push(struct inspect *in, struct ring *r, struct kept *k)
{
    while (r->n && (r->n == INSPECT_RING_EVENTS || r->bytes + k->len > INSPECT_RING_BYTES))
        ring_pop(in, r);
    if (r->n == r->slots && ring_grow(r))
        ring_pop(in, r); /* no memory for more: the oldest makes room */
    r->ev[(r->head + r->n) % r->slots] = k;
    r->n++;
    r->bytes += k->len;
    in->kept_bytes += k->len;
    in->kept++;
    while (in->kept_bytes > INSPECT_KEPT_BYTES && in->oldest != r)
        drop_oldest_ring(in);
}

/* ---- watchers' output --------------------------------------------------- */

static int concerns(const struct inspect_watcher *w, const char *device)
{
    return w->used && (!w->device || strcmp(w->device, device) == 0);
}

/* Appends k to w's output as the line w gets. 0, or -1 for want of room. */
static int give(struct inspect_watcher *w, const struct kept *k)
{
    char head[40];
    int hn = snprintf(head, sizeof head, "{\"seq\":%" PRIu64 ",", k->seq);
    int hide = k->private_at && !w->plaintext;
    size_t body = hide ? k->private_at - 1 : k->len - 1; /* without the '{' */

    if (w->out.len + (size_t)hn + body + 3 > INSPECT_WATCH_BUF)
        return -1;
    if (buf_append(&w->out, head, (size_t)hn) || buf_append(&w->out, k->line + 1, body) ||
        (hide && buf_putc(&w->out, '}')) || buf_putc(&w->out, '\n'))
        return -1;
    return 0;
}

/* Gives k to w, saying first how many w missed, if any. */
static void deliver(struct inspect_watcher *w, const struct kept *k)
{
    if (w->dropped) {
        if (w->out.len + 64 > INSPECT_WATCH_BUF ||
            buf_printf(&w->out, "{\"kind\":\"dropped\",\"count\":%" PRIu64 "}\n", w->dropped)) {
            w->dropped++;
            return;
        }
        w->dropped = 0;
    }
    if (give(w, k))
        w->dropped++;
}

static void wake(int fd)
{
    uint64_t one = 1;

    if (write(fd, &one, sizeof one) < 0) {
        /* already readable (the counter is far from overflowing): fine */
    }
}

/* ---- emitting ----------------------------------------------------------- */

static void keep(struct inspect *in, const char *device, const char *line, size_t len,
                 size_t private_at, int64_t at)
{
    struct kept *k = malloc(sizeof *k + len + 1);
    int fds[INSPECT_WATCHERS_MAX];
    size_t nfds = 0;

    if (!k)
        return;
    memcpy(k->line, line, len + 1);
    k->len = (uint32_t)len;
    k->private_at = (uint32_t)private_at;
    k->at = at;
    pthread_mutex_lock(&in->mu);
    k->seq = ++in->seq;
    /* A watcher's thread takes its output until it is empty, so only output
     * that was empty needs it woken: one write() per burst, not per event. */
    for (size_t i = 0; i < INSPECT_WATCHERS_MAX && in->nwatchers; i++) {
        struct inspect_watcher *w = &in->watchers[i];
        size_t f;

        if (!concerns(w, device))
            continue;
        for (f = 0; w->out.len == 0 && f < nfds && fds[f] != w->wake; f++)
            ;
        if (w->out.len == 0 && f == nfds)
            fds[nfds++] = w->wake;
        deliver(w, k);
    }
    struct ring *r = ring_of(in, device);
    if (r)
        ring_push(in, r, k);
    else
        free(k);
    pthread_mutex_unlock(&in->mu);
    for (size_t f = 0; f < nfds; f++)
        wake(fds[f]);
}

void inspect_emit(struct inspect *in, struct inspect_ev *e)
{
    size_t len = jsonline_end(&e->j);

    if (in)
        keep(in, e->device, e->buf, len, e->private_at, e->at);
}

void inspect_emit_line(struct inspect *in, const char *device, const char *line, size_t len)
{
    const char *at = strstr(line, "\"at\":");

    if (in && len >= 2 && line[0] == '{' && line[len] == '\0')
        keep(in, device ? device : "", line, len, 0, at ? strtoll(at + 5, NULL, 10) : 0);
}

/* ---- watching ----------------------------------------------------------- */

static int by_seq(const void *a, const void *b)
{
    const struct kept *x = *(const struct kept *const *)a, *y = *(const struct kept *const *)b;

    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Appends the kept events of r at or after since to v[*n..cap). */
static void collect(const struct ring *r, int64_t since, const struct kept **v, size_t *n,
                    size_t cap)
{
    for (size_t i = 0; i < r->n && *n < cap; i++) {
        const struct kept *k = r->ev[(r->head + i) % r->slots];
        if (k->at >= since)
            v[(*n)++] = k;
    }
}

/* Gives w the kept events it asked for, oldest first. */
static void replay(struct inspect *in, struct inspect_watcher *w, int64_t since)
{
    size_t cap = w->device ? INSPECT_RING_EVENTS : in->kept, n = 0;
    const struct kept **v = cap ? malloc(cap * sizeof *v) : NULL;

    if (!v)
        return;
    for (const struct ring *r = in->oldest; r; r = r->newer)
        if (!w->device || strcmp(r->device, w->device) == 0)
            collect(r, since, v, &n, cap);
    qsort(v, n, sizeof *v, by_seq);
    for (size_t i = 0; i < n; i++)
        deliver(w, v[i]);
    free(v);
}

struct inspect_watcher *inspect_watch(struct inspect *in, const struct inspect_watch *q,
                                      int64_t now_ms)
{
    struct inspect_watcher *w = NULL;

    pthread_mutex_lock(&in->mu);
    for (size_t i = 0; i < INSPECT_WATCHERS_MAX && !w; i++)
        if (!in->watchers[i].used)
            w = &in->watchers[i];
    if (w) {
        memset(w, 0, sizeof *w);
        buf_init(&w->out, INSPECT_WATCH_BUF + 64);
        w->plaintext = q->plaintext;
        w->wake = q->wake_fd ? *q->wake_fd : in->wake;
        w->device = q->device ? strdup(q->device) : NULL;
        if (q->device && !w->device) {
            w = NULL;
        } else {
            if (q->since_ms > 0)
                replay(in, w, now_ms - q->since_ms);
            if (buf_puts(&w->out, "{\"kind\":\"live\"}\n"))
                w->dropped++;
            w->used = 1;
            in->nwatchers++;
        }
    }
    pthread_mutex_unlock(&in->mu);
    return w;
}

void inspect_unwatch(struct inspect *in, struct inspect_watcher *w)
{
    pthread_mutex_lock(&in->mu);
    free(w->device);
    buf_cleanup(&w->out);
    memset(w, 0, sizeof *w);
    in->nwatchers--;
    pthread_mutex_unlock(&in->mu);
}

size_t inspect_take(struct inspect *in, struct inspect_watcher *w, char *out, size_t cap)
{
    size_t n;

    pthread_mutex_lock(&in->mu);
    /* Caught up after missing some: say so now, not at the next event. */
    if (w->out.len == 0 && w->dropped &&
        buf_printf(&w->out, "{\"kind\":\"dropped\",\"count\":%" PRIu64 "}\n", w->dropped) == 0)
        w->dropped = 0;
    n = w->out.len - w->taken < cap ? w->out.len - w->taken : cap;
    memcpy(out, w->out.p + w->taken, n);
    w->taken += n;
    /* Moved down only once half is taken: draining 8 MiB in 16 KiB takes
     * then moves each byte about once, not 512 times (review). Empty output
     * is out.len 0, which keep() relies on. */
    if (w->taken == w->out.len) {
        w->out.len = w->taken = 0;
    } else if (w->taken >= w->out.len / 2) {
        memmove(w->out.p, w->out.p + w->taken, w->out.len - w->taken);
        w->out.len -= w->taken;
        w->taken = 0;
    }
    pthread_mutex_unlock(&in->mu);
    return n;
}

int inspect_wake_fd(const struct inspect *in)
{
    return in->wake;
}

void inspect_clear_wake(struct inspect *in)
{
    uint64_t v;

    if (read(in->wake, &v, sizeof v) < 0) {
        /* nothing pending: fine */
    }
}

uint64_t inspect_count(struct inspect *in)
{
    uint64_t n;

    pthread_mutex_lock(&in->mu);
    n = in->seq;
    pthread_mutex_unlock(&in->mu);
    return n;
}

int inspect_new(struct inspect **out)
{
    struct inspect *in = calloc(1, sizeof *in);

    if (!in)
        return SP_ERR_NOMEM;
    if ((in->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        free(in);
        return SP_ERR_IO;
    }
    pthread_mutex_init(&in->mu, NULL);
    *out = in;
    return SP_OK;
}

void inspect_free(struct inspect *in)
{
    if (!in)
        return;
    while (in->oldest)
        drop_oldest_ring(in);
    for (size_t i = 0; i < INSPECT_WATCHERS_MAX; i++)
        if (in->watchers[i].used) {
            free(in->watchers[i].device);
            buf_cleanup(&in->watchers[i].out);
        }
    close(in->wake);
    pthread_mutex_destroy(&in->mu);
    free(in);
}
