/*
 * rawnet.c - TagoTiP's raw binding (TagoTipServers.md §4) over UDP and TCP:
 * one thread, one poll() loop over both listeners, the TCP connections and
 * an eventfd, turning each frame or envelope into a struct net_req for the
 * pipeline (netq.h) and sending its answers once done() hands it back.
 *
 * Which bytes are a message is rawframe.c's (the frame-or-envelope rule,
 * lines and length prefixes); which UDP sources are dropped for failing is
 * rawlimit.c's. Nothing here parses TagoTiP beyond asking the SDK whether an
 * answer is an error (the amplification and rate limits need that).
 *
 * Threads: done() runs on the pipeline's thread and only appends the
 * request to `back` (a ring sized for every request that can be out at
 * once) under `lock` and writes the eventfd. Everything else runs on this
 * module's thread. A request points at its connection (TCP) or its peer
 * address (UDP, a heap copy freed with it); a connection closed while its
 * requests are in the pipeline stays allocated (fd -1) until the last one
 * comes back, and their answers are dropped.
 *
 * Limits (docs/facts.md, "TagoTiP raw binding"): RAW_CONN_MAX connections,
 * RAW_PER_IP_MAX of them from one address, RAW_INFLIGHT_MAX requests in the
 * pipeline per connection (then the socket is not read: backpressure, as
 * when answers wait to be written or the queue is full), RAW_HELLO_MS for a
 * connection's first whole message and RAW_IDLE_MS idle time after it,
 * RAW_UDP_INFLIGHT datagrams in the pipeline at once, the failure limits of
 * rawlimit.c per UDP sender, and a plaintext UDP answer at most
 * max(RAW_ANSWER_MIN, RAW_ANSWER_FACTOR x the request) bytes.
 */
#include "rawnet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/errors.h"
#include "base/log.h"
#include "base/sp_limits.h"
#include "rawframe.h"
#include "rawlimit.h"
#include "sealpipe.h"

/* The ones a test may lower (tests/unit/test_rawnet.c). */
#ifndef RAW_CONN_MAX
#define RAW_CONN_MAX 1024
#endif
#ifndef RAW_PER_IP_MAX
#define RAW_PER_IP_MAX 32 /* connections from one address; more are closed at once */
#endif
#ifndef RAW_IDLE_MS
#define RAW_IDLE_MS (5 * 60 * 1000) /* a connection without traffic is closed */
#endif
#ifndef RAW_HELLO_MS
#define RAW_HELLO_MS (15 * 1000) /* from connect to the first whole message */
#endif
#ifndef RAW_TICK_MS
#define RAW_TICK_MS 1000 /* idle checks */
#endif
#define RAW_INFLIGHT_MAX 8                      /* requests in the pipeline per connection */
#define RAW_UDP_INFLIGHT 1024                   /* datagrams in the pipeline */
#define RAW_LINE_MAX     (4 * SP_LIMIT_PAYLOAD) /* a longer line closes the connection */
#define RAW_OUT_HIGH     (64 * 1024)            /* unsent answers that stop reading */
#define RAW_READ_CHUNK   8192
#define RAW_UDP_BURST    64    /* datagrams read per turn */
#define RAW_ACCEPT_BURST 64    /* connections accepted per turn */
#define RAW_RETRY_MS     20    /* poll timeout while a request waits for room */
#define RAW_LOG_EVERY_MS 10000 /* one line per kind of drop at most this often */
/* A UDP sender (address and port) may fail RAW_FAIL_BURST times in a row and
 * RAW_FAIL_RATE times a second; past that it is blocked for RAW_BLOCK_MS.
 * One that got a good answer is good for RAW_GOOD_MS; the others' datagrams
 * reach the pipeline at RAW_NEW_RATE a second, RAW_NEW_BURST in a row. */
#define RAW_FAIL_RATE  5.0
#define RAW_FAIL_BURST 20.0
#define RAW_BLOCK_MS   10000
#define RAW_GOOD_MS    (10 * 60 * 1000)
#define RAW_NEW_RATE   500.0
#define RAW_NEW_BURST  1000.0
/* A plaintext answer to a datagram (a frame's, whose auth hash is public)
 * carries at most this much, so a spoofed source gets no amplification. */
#define RAW_ANSWER_MIN    512
#define RAW_ANSWER_FACTOR 4
#define RAW_BACK_CAP      (RAW_UDP_INFLIGHT + RAW_CONN_MAX * RAW_INFLIGHT_MAX)
#define RAW_DGRAM_MAX     65536

static const char UDP[] = "udp", TCP[] = "tcp";

/* A count logged at most once per RAW_LOG_EVERY_MS. */
struct raw_drops {
    const char *what;
    uint64_t n, logged;
    int64_t last_ms;
};

struct raw_slot {
    struct net_req *r;
    int back; /* handed back by done() */
};

struct rawconn {
    int fd; /* -1 once closed */
    int eof;
    int index; /* in rawnet.conns */
    int spoke; /* a whole message came: RAW_IDLE_MS, else RAW_HELLO_MS */
    char peer[64];
    uint8_t ip[16]; /* addr_ip: RAW_PER_IP_MAX */
    int64_t born_ms, last_ms;
    struct rawframe rf;
    uint8_t in[RAW_READ_CHUNK];
    size_t in_off, in_len;
    struct net_req *held; /* made, not yet taken by the queue */
    struct raw_slot ring[RAW_INFLIGHT_MAX];
    size_t ring_head, ring_n;
    uint8_t *out;
    size_t out_off, out_len, out_cap;
};

struct udppeer {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    size_t req_len; /* the datagram's size: the bound of an error answer */
};

struct rawnet {
    struct netq *q;
    int udp_fd, tcp_fd, wake_fd;
    pthread_t thread;
    pthread_mutex_t lock;
    int stop;                 /* lock */
    struct net_req **back;    /* lock: ring of requests done() gave back */
    size_t back_head, back_n; /* lock */
    size_t outstanding;       /* requests in the pipeline */
    size_t udp_inflight;
    int any_held;
    struct rawconn *conns[RAW_CONN_MAX];
    size_t nconns;
    struct pollfd pfd[3 + RAW_CONN_MAX];
    struct rawconn *pconn[3 + RAW_CONN_MAX];
    struct rawlimit limit;
    struct raw_drops udp_full, udp_busy, udp_amplify, udp_limited, udp_new, udp_unsent;
    struct raw_drops udp_too_large, udp_cmd_too_large, tcp_refused, tcp_per_ip;
    uint8_t dgram[RAW_DGRAM_MAX];
};

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static void drops_note(struct raw_drops *d, int64_t now)
{
    d->n++;
    if (now - d->last_ms < RAW_LOG_EVERY_MS)
        return;
    LOG_WARN("raw dropped reason=%s count=%llu", d->what, (unsigned long long)(d->n - d->logged));
    d->logged = d->n;
    d->last_ms = now;
}

static void addr_text(const struct sockaddr_storage *a, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;

    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)a;
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof host);
        port = ntohs(v4->sin_port);
        snprintf(out, cap, "%s:%d", host, port);
    } else if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)a;
        inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof host);
        port = ntohs(v6->sin6_port);
        snprintf(out, cap, "[%s]:%d", host, port);
    } else {
        snprintf(out, cap, "?");
    }
}

/* The source address as 16 bytes (IPv4 as ::ffff:a.b.c.d). */
static void addr_ip(const struct sockaddr_storage *a, uint8_t ip[16])
{
    memset(ip, 0, 16);
    if (a->ss_family == AF_INET) {
        ip[10] = ip[11] = 0xff;
        memcpy(ip + 12, &((const struct sockaddr_in *)a)->sin_addr, 4);
    } else if (a->ss_family == AF_INET6) {
        memcpy(ip, &((const struct sockaddr_in6 *)a)->sin6_addr, 16);
    }
}

/* A UDP sender as the rate limiter's key: its address, then its port. */
static void addr_key(const struct sockaddr_storage *a, uint8_t key[RAWLIMIT_KEY])
{
    uint16_t port = 0; /* network order, as the key wants it */

    addr_ip(a, key);
    if (a->ss_family == AF_INET)
        port = ((const struct sockaddr_in *)a)->sin_port;
    else if (a->ss_family == AF_INET6)
        port = ((const struct sockaddr_in6 *)a)->sin6_port;
    memcpy(key + 16, &port, 2);
}

enum answer_kind { ANSWER_SEALED, ANSWER_PLAIN, ANSWER_ERROR };

/*
 * What an answer is: sealed (an envelope answered with the device's key:
 * never garbage's), an error (an "ACK|[!N|]ERR|..." frame: a frame's answer,
 * or the plaintext fallback to an envelope, which starts with 0x41,
 * TagoTiPs.md §5.3; also an answer the SDK cannot read), or another
 * plaintext answer, read into *a.
 */
static int answer_sealed(int binding, const struct net_blob *b)
{
    return binding == INGEST_ENVELOPE && b->len > 0 && b->data[0] != 'A';
}

static int answer_kind(int binding, const struct net_blob *b, struct sp_tip_ack *a)
{
    if (b->len == 0)
        return ANSWER_ERROR;
    if (answer_sealed(binding, b))
        return ANSWER_SEALED;
    if (sp_tip_parse_ack((const char *)b->data, b->len, SP_ACK_FRAME, a) != 0)
        return ANSWER_ERROR;
    return a->status == SP_ACK_ERR ? ANSWER_ERROR : ANSWER_PLAIN;
}

/* done(), on the pipeline's thread: back to this module's thread. */
static void raw_done(struct net_req *r)
{
    struct rawnet *rn = r->owner;
    uint64_t one = 1;

    pthread_mutex_lock(&rn->lock);
    rn->back[(rn->back_head + rn->back_n) % RAW_BACK_CAP] = r;
    rn->back_n++;
    pthread_mutex_unlock(&rn->lock);
    if (write(rn->wake_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        LOG_ERROR("raw wakeup failed error=\"%s\"", strerror(errno));
}

static struct net_req *req_make(struct rawnet *rn, const char *transport,
                                const struct rawframe_msg *m, void *conn)
{
    int line = m->kind == RAWFRAME_LINE;
    size_t len = m->len < SP_LIMIT_PAYLOAD ? m->len : SP_LIMIT_PAYLOAD;
    struct net_req *r;

    r = net_req_new(transport, line ? INGEST_FRAME : INGEST_ENVELOPE, line ? "$tip" : "$tips", NULL,
                    m->data, len, m->full_len);
    if (!r)
        return NULL;
    r->commands = 1;
    r->done = raw_done;
    r->owner = rn;
    r->conn = conn;
    return r;
}

/* ------------------------------------------------------------------------ */
/* UDP                                                                      */
/* ------------------------------------------------------------------------ */

static void udp_fail(struct rawnet *rn, const struct sockaddr_storage *from, int64_t now)
{
    uint8_t key[RAWLIMIT_KEY];
    uint64_t before = 0;
    char who[80];

    addr_key(from, key);
    if (!rawlimit_fail(&rn->limit, key, now, &before))
        return;
    addr_text(from, who, sizeof who);
    LOG_WARN("udp sender blocked peer=%s failures_per_s=%.0f block_ms=%d dropped_last_block=%llu",
             who, RAW_FAIL_RATE, RAW_BLOCK_MS, (unsigned long long)before);
}

static void udp_take(struct rawnet *rn, const struct sockaddr_storage *from, socklen_t fromlen,
                     size_t n, int64_t now)
{
    struct rawframe_msg m;
    struct udppeer *peer;
    struct net_req *r;
    uint8_t key[RAWLIMIT_KEY];

    addr_key(from, key);
    switch (rawlimit_admit(&rn->limit, key, now)) {
    case RAWLIMIT_BLOCKED:
        drops_note(&rn->udp_limited, now);
        return;
    case RAWLIMIT_BUSY:
        drops_note(&rn->udp_new, now);
        return;
    default:
        break;
    }
    if (rawframe_datagram(rn->dgram, n, &m) == RAWFRAME_NONE) {
        udp_fail(rn, from, now);
        return;
    }
    if (rn->udp_inflight >= RAW_UDP_INFLIGHT) {
        drops_note(&rn->udp_busy, now);
        return;
    }
    peer = malloc(sizeof *peer);
    r = peer ? req_make(rn, UDP, &m, peer) : NULL;
    if (!r) {
        free(peer);
        LOG_ERROR("udp out of memory");
        return;
    }
    memcpy(&peer->addr, from, fromlen);
    peer->addrlen = fromlen;
    peer->req_len = n;
    if (netq_submit(rn->q, r) != 0) { /* full, or stopping: nothing either way */
        drops_note(&rn->udp_full, now);
        net_req_free(r);
        free(peer);
        return;
    }
    rn->outstanding++;
    rn->udp_inflight++;
}

static void udp_read(struct rawnet *rn)
{
    struct sockaddr_storage from;
    socklen_t fromlen;
    ssize_t n;
    int i;

    for (i = 0; i < RAW_UDP_BURST; i++) {
        fromlen = sizeof from;
        n = recvfrom(rn->udp_fd, rn->dgram, sizeof rn->dgram, MSG_DONTWAIT,
                     (struct sockaddr *)&from, &fromlen);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                LOG_WARN("udp receive failed error=\"%s\"", strerror(errno));
            return;
        }
        udp_take(rn, &from, fromlen, (size_t)n, clock_mono_ms());
    }
}

static void udp_send(struct rawnet *rn, const struct udppeer *peer, const struct net_blob *b)
{
    if (sendto(rn->udp_fd, b->data, b->len, MSG_DONTWAIT | MSG_NOSIGNAL,
               (const struct sockaddr *)&peer->addr, peer->addrlen) < 0)
        drops_note(&rn->udp_unsent, clock_mono_ms());
}

/*
 * The first answer to a datagram, within budget bytes (RAW_ANSWER_MIN,
 * RAW_ANSWER_FACTOR): a plaintext one over it becomes
 * "ACK|[!N|]ERR|payload_too_large" with the answer's counter, sent if that
 * fits; an error is sent only if no larger than the request.
 */
static void udp_answer_first(struct rawnet *rn, struct net_req *r, size_t budget, int64_t now)
{
    struct udppeer *peer = r->conn;
    const struct net_blob *b = &r->answers[0];
    struct sp_tip_ack a;
    char tl[64];
    int kind = answer_kind(r->binding, b, &a), n;
    uint8_t key[RAWLIMIT_KEY];

    if (kind == ANSWER_ERROR) {
        udp_fail(rn, &peer->addr, now);
        if (b->len > peer->req_len)
            drops_note(&rn->udp_amplify, now);
        else
            udp_send(rn, peer, b);
        return;
    }
    addr_key(&peer->addr, key);
    rawlimit_good(&rn->limit, key, now);
    if (kind == ANSWER_SEALED || b->len <= budget) {
        udp_send(rn, peer, b);
        return;
    }
    drops_note(&rn->udp_too_large, now);
    n = sp_tip_build_ack(SP_ACK_FRAME, a.has_counter, a.counter, SP_ACK_ERR, "payload_too_large",
                         strlen("payload_too_large"), tl, sizeof tl);
    if (n > 0 && (size_t)n <= budget)
        udp_send(rn, peer, &(struct net_blob){(uint8_t *)tl, (size_t)n});
}

/*
 * A datagram's request is back: its answer (udp_answer_first), then the
 * commands, each its own datagram, each within the same budget unless
 * sealed (a retry of the request gets them again, so a spoofed retry must
 * not reflect them either); one over it is not sent, and counted.
 * NET_ACCEPTED and NET_FAILED send nothing (the sender retries).
 */
static void udp_answer(struct rawnet *rn, struct net_req *r)
{
    struct udppeer *peer = r->conn;
    size_t budget = RAW_ANSWER_FACTOR * peer->req_len, i;
    int64_t now = clock_mono_ms();
    const struct net_blob *b;

    if (budget < RAW_ANSWER_MIN)
        budget = RAW_ANSWER_MIN;
    rn->udp_inflight--;
    if (r->result == NET_ANSWERED && r->nanswers > 0) {
        udp_answer_first(rn, r, budget, now);
        for (i = 1; i < r->nanswers; i++) {
            b = &r->answers[i];
            if (b->len > budget && !answer_sealed(r->binding, b))
                drops_note(&rn->udp_cmd_too_large, now);
            else
                udp_send(rn, peer, b);
        }
    }
    free(peer);
    net_req_free(r);
}

/* ------------------------------------------------------------------------ */
/* TCP connections                                                          */
/* ------------------------------------------------------------------------ */

static void conn_free(struct rawnet *rn, struct rawconn *c)
{
    rn->conns[c->index] = NULL;
    rn->nconns--;
    free(c);
}

/* Closes the socket. The connection itself is freed by poll_build once no
 * request of it is in the pipeline, never while the loop may still hold it. */
static void conn_close(struct rawconn *c, const char *why)
{
    if (c->fd >= 0) {
        LOG_DEBUG("tcp closed peer=%s reason=%s", c->peer, why);
        close(c->fd);
        c->fd = -1;
    }
    if (c->held) {
        net_req_free(c->held);
        c->held = NULL;
    }
    rawframe_cleanup(&c->rf);
    free(c->out);
    c->out = NULL;
    c->out_off = c->out_len = c->out_cap = 0;
}

static int out_reserve(struct rawconn *c, size_t more)
{
    size_t cap = c->out_cap ? c->out_cap : 4096;
    uint8_t *p;

    if (c->out_off > 0 && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + more <= c->out_cap)
        return 0;
    while (cap < c->out_len + more)
        cap *= 2;
    p = realloc(c->out, cap);
    if (!p)
        return SP_ERR_NOMEM;
    c->out = p;
    c->out_cap = cap;
    return 0;
}

/* One answer in the request's framing: a line, or a length-prefixed message. */
static int out_answer(struct rawconn *c, int binding, const struct net_blob *b)
{
    int line = binding == INGEST_FRAME;
    int nl = line && !(b->len && b->data[b->len - 1] == '\n');

    if (!line && b->len > RAWFRAME_ENVELOPE_MAX)
        return 0; /* cannot be framed; never made by the pipeline */
    if (out_reserve(c, b->len + 2) != 0)
        return SP_ERR_NOMEM;
    if (!line) {
        c->out[c->out_len++] = (uint8_t)(b->len >> 8);
        c->out[c->out_len++] = (uint8_t)(b->len & 0xff);
    }
    memcpy(c->out + c->out_len, b->data, b->len);
    c->out_len += b->len;
    if (nl)
        c->out[c->out_len++] = '\n';
    return 0;
}

static void conn_write(struct rawconn *c)
{
    ssize_t n;

    while (c->fd >= 0 && c->out_off < c->out_len) {
        n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                conn_close(c, "write error");
            return;
        }
        c->out_off += (size_t)n;
        c->last_ms = clock_mono_ms();
    }
}

static size_t out_pending(const struct rawconn *c)
{
    return c->out_len - c->out_off;
}

/* Hands r to the queue. Returns 0, SP_ERR_FULL (the caller holds r and
 * retries) or SP_ERR_STOPPING (the caller closes the connection). */
static int conn_submit(struct rawnet *rn, struct rawconn *c, struct net_req *r)
{
    struct raw_slot *s;
    int rc = netq_submit(rn->q, r);

    if (rc == SP_ERR_STOPPING)
        return rc;
    if (rc != 0) {
        rn->any_held = 1;
        return SP_ERR_FULL;
    }
    s = &c->ring[(c->ring_head + c->ring_n) % RAW_INFLIGHT_MAX];
    s->r = r;
    s->back = 0;
    c->ring_n++;
    rn->outstanding++;
    return 0;
}

/* Reads once when readable, then cuts messages and submits them until the
 * input runs out or a limit stops it (backpressure: the rest waits in in[]). */
static int conn_next_input(struct rawconn *c, int *readable)
{
    ssize_t n;

    if (c->in_off < c->in_len)
        return 1;
    if (!*readable || c->eof)
        return 0;
    *readable = 0;
    n = recv(c->fd, c->in, sizeof c->in, MSG_DONTWAIT);
    if (n > 0) {
        c->in_off = 0;
        c->in_len = (size_t)n;
        c->last_ms = clock_mono_ms();
        return 1;
    }
    if (n == 0)
        c->eof = 1;
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        conn_close(c, "read error");
    return 0;
}

static void conn_pump(struct rawnet *rn, struct rawconn *c, int readable)
{
    struct rawframe_msg m;
    size_t used;
    int rc;

    while (c->fd >= 0) {
        if (c->held) {
            rc = conn_submit(rn, c, c->held);
            if (rc == SP_ERR_STOPPING)
                conn_close(c, "daemon stopping"); /* frees held: nothing stored */
            if (rc != 0)
                return;
            c->held = NULL;
        }
        if (c->ring_n == RAW_INFLIGHT_MAX || out_pending(c) >= RAW_OUT_HIGH)
            return;
        if (!conn_next_input(c, &readable))
            break;
        rc = rawframe_feed(&c->rf, c->in + c->in_off, c->in_len - c->in_off, &used, &m);
        c->in_off += used;
        if (rc < 0) {
            LOG_WARN("tcp closed peer=%s reason=\"%s\"", c->peer,
                     rc == SP_ERR_TOOLARGE ? "line over the hard limit" : "out of memory");
            conn_close(c, "framing");
            return;
        }
        if (rc == 1 && !(c->held = req_make(rn, TCP, &m, c))) {
            conn_close(c, "out of memory");
            return;
        }
        if (rc == 1)
            c->spoke = 1;
    }
    /* The peer shut its side: close once every answer is out. */
    if (c->fd >= 0 && c->eof && !c->held && c->ring_n == 0 && out_pending(c) == 0)
        conn_close(c, "eof");
}

/*
 * A request of c is back: answers go out in request order, so the ring's
 * head leaves first, with every request behind it that is back too.
 * NET_ACCEPTED sends nothing; NET_FAILED closes the connection (nothing was
 * stored: the device reconnects and retries).
 */
static void conn_back(struct rawnet *rn, struct rawconn *c, struct net_req *r)
{
    struct raw_slot *s;
    int failed = 0;
    size_t i;

    for (i = 0; i < c->ring_n; i++)
        if (c->ring[(c->ring_head + i) % RAW_INFLIGHT_MAX].r == r)
            c->ring[(c->ring_head + i) % RAW_INFLIGHT_MAX].back = 1;
    while (c->ring_n > 0 && (s = &c->ring[c->ring_head])->back) {
        r = s->r;
        c->ring_head = (c->ring_head + 1) % RAW_INFLIGHT_MAX;
        c->ring_n--;
        if (r->result == NET_FAILED)
            failed = 1;
        for (i = 0; c->fd >= 0 && !failed && r->result == NET_ANSWERED && i < r->nanswers; i++)
            if (out_answer(c, r->binding, &r->answers[i]) != 0)
                failed = 1;
        net_req_free(r);
    }
    if (c->fd < 0)
        return;
    conn_write(c);
    if (failed && c->fd >= 0)
        conn_close(c, "not committed");
    else if (c->fd >= 0)
        conn_pump(rn, c, 0);
}

static struct rawconn *conn_new(struct rawnet *rn, int fd, const struct sockaddr_storage *from)
{
    struct rawconn *c;
    size_t i;

    for (i = 0; i < RAW_CONN_MAX && rn->conns[i]; i++)
        ;
    if (i == RAW_CONN_MAX || !(c = calloc(1, sizeof *c)))
        return NULL;
    c->fd = fd;
    c->index = (int)i;
    c->born_ms = c->last_ms = clock_mono_ms();
    addr_text(from, c->peer, sizeof c->peer);
    addr_ip(from, c->ip);
    rawframe_init(&c->rf, SP_LIMIT_PAYLOAD, RAW_LINE_MAX);
    rn->conns[i] = c;
    rn->nconns++;
    return c;
}

/* Open connections from address ip. */
static size_t conns_from(const struct rawnet *rn, const uint8_t ip[16])
{
    size_t i, n = 0;

    for (i = 0; i < RAW_CONN_MAX; i++)
        if (rn->conns[i] && rn->conns[i]->fd >= 0 && memcmp(rn->conns[i]->ip, ip, 16) == 0)
            n++;
    return n;
}

static void tcp_accept(struct rawnet *rn)
{
    struct sockaddr_storage from;
    socklen_t fromlen;
    uint8_t ip[16];
    int i, fd;

    for (i = 0; i < RAW_ACCEPT_BURST; i++) {
        fromlen = sizeof from;
        fd = accept4(rn->tcp_fd, (struct sockaddr *)&from, &fromlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                LOG_WARN("tcp accept failed error=\"%s\"", strerror(errno));
            return;
        }
        addr_ip(&from, ip);
        if (conns_from(rn, ip) >= RAW_PER_IP_MAX) {
            close(fd);
            drops_note(&rn->tcp_per_ip, clock_mono_ms());
        } else if (rn->nconns >= RAW_CONN_MAX || !conn_new(rn, fd, &from)) {
            close(fd);
            drops_note(&rn->tcp_refused, clock_mono_ms());
        }
    }
}

/* ------------------------------------------------------------------------ */
/* The loop                                                                 */
/* ------------------------------------------------------------------------ */

/* Takes what done() gave back; returns 1 when the module is stopping. */
static int take_back(struct rawnet *rn)
{
    struct net_req *r;
    int stop;

    for (;;) {
        pthread_mutex_lock(&rn->lock);
        stop = rn->stop;
        r = NULL;
        if (rn->back_n > 0) {
            r = rn->back[rn->back_head];
            rn->back_head = (rn->back_head + 1) % RAW_BACK_CAP;
            rn->back_n--;
        }
        pthread_mutex_unlock(&rn->lock);
        if (!r)
            return stop;
        rn->outstanding--;
        if (strcmp(r->transport, UDP) == 0)
            udp_answer(rn, r);
        else
            conn_back(rn, (struct rawconn *)r->conn, r);
    }
}

static short conn_events(const struct rawconn *c)
{
    short ev = 0;

    if (!c->eof && !c->held && c->ring_n < RAW_INFLIGHT_MAX && out_pending(c) < RAW_OUT_HIGH &&
        c->in_off == c->in_len)
        ev |= POLLIN;
    if (out_pending(c) > 0)
        ev |= POLLOUT;
    return ev;
}

static nfds_t poll_build(struct rawnet *rn)
{
    nfds_t n = 0;
    size_t i;

    rn->pfd[n] = (struct pollfd){.fd = rn->wake_fd, .events = POLLIN};
    rn->pconn[n++] = NULL;
    if (rn->udp_fd >= 0) {
        rn->pfd[n] = (struct pollfd){.fd = rn->udp_fd, .events = POLLIN};
        rn->pconn[n++] = NULL;
    }
    if (rn->tcp_fd >= 0) {
        rn->pfd[n] = (struct pollfd){.fd = rn->tcp_fd, .events = POLLIN};
        rn->pconn[n++] = NULL;
    }
    for (i = 0; i < RAW_CONN_MAX; i++) {
        struct rawconn *c = rn->conns[i];

        if (c && c->fd < 0 && c->ring_n == 0) {
            conn_free(rn, c);
            continue;
        }
        if (!c || c->fd < 0)
            continue;
        rn->pfd[n] = (struct pollfd){.fd = c->fd, .events = conn_events(c)};
        rn->pconn[n++] = c;
    }
    return n;
}

/* Idle connections close (one that never sent a whole message RAW_HELLO_MS
 * after its connect, whatever it sent); held requests try the queue again. */
static void conn_sweep(struct rawnet *rn, int64_t now)
{
    size_t i;

    rn->any_held = 0;
    for (i = 0; i < RAW_CONN_MAX; i++) {
        struct rawconn *c = rn->conns[i];

        if (!c || c->fd < 0)
            continue;
        if (c->held)
            conn_pump(rn, c, 0);
        else if (!c->spoke && now - c->born_ms > RAW_HELLO_MS)
            conn_close(c, "no whole message in time");
        else if (c->ring_n == 0 && now - c->last_ms > RAW_IDLE_MS)
            conn_close(c, "idle");
    }
}

static void poll_serve(struct rawnet *rn, nfds_t n)
{
    nfds_t i;

    for (i = 0; i < n; i++) {
        struct rawconn *c = rn->pconn[i];
        short ev = rn->pfd[i].revents;

        if (!ev)
            continue;
        if (rn->pfd[i].fd == rn->udp_fd && !c)
            udp_read(rn);
        else if (rn->pfd[i].fd == rn->tcp_fd && !c)
            tcp_accept(rn);
        if (!c || c->fd != rn->pfd[i].fd)
            continue;
        if (ev & (POLLERR | POLLNVAL)) {
            conn_close(c, "socket error");
            continue;
        }
        if (ev & POLLOUT)
            conn_write(c);
        /* Also after a write: the answers waiting may have held reading up,
         * and a connection at eof closes once they are out. */
        if (c->fd >= 0)
            conn_pump(rn, c, (ev & (POLLIN | POLLHUP)) != 0);
        /* Both directions shut (a reset): nothing can be sent any more. */
        if (c->fd >= 0 && (ev & POLLHUP) && c->eof)
            conn_close(c, "hangup");
    }
}

static void *raw_main(void *arg)
{
    struct rawnet *rn = arg;
    int64_t next_tick = clock_mono_ms() + RAW_TICK_MS, now;
    uint64_t wakes;
    nfds_t n;

    for (;;) {
        n = poll_build(rn);
        if (poll(rn->pfd, n, rn->any_held ? RAW_RETRY_MS : RAW_TICK_MS) < 0 && errno != EINTR) {
            LOG_ERROR("raw poll failed error=\"%s\"", strerror(errno));
            break;
        }
        if (rn->pfd[0].revents && read(rn->wake_fd, &wakes, sizeof wakes) < 0)
            wakes = 0;
        if (take_back(rn))
            break;
        poll_serve(rn, n);
        now = clock_mono_ms();
        if (rn->any_held || now >= next_tick) {
            conn_sweep(rn, now);
            next_tick = now + RAW_TICK_MS;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Start and stop                                                           */
/* ------------------------------------------------------------------------ */

static int listen_on(const char *bind_addr, int port, int type, char *err, size_t errlen)
{
    const char *name = type == SOCK_DGRAM ? UDP : TCP;
    struct addrinfo hints = {0}, *ai = NULL;
    struct sockaddr_storage at;
    socklen_t atlen = sizeof at;
    char service[16], where[80];
    int fd = -1, one = 1, rc;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = type;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(service, sizeof service, "%d", port);
    rc = getaddrinfo(bind_addr && *bind_addr ? bind_addr : NULL, service, &hints, &ai);
    if (rc != 0) {
        snprintf(err, errlen, "%s listen=%s:%d: %s", name, bind_addr, port, gai_strerror(rc));
        return SP_ERR_IO;
    }
    fd = socket(ai->ai_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    /* SO_REUSEADDR on TCP only: on UDP it would let a second daemon share the port. */
    if (fd < 0 ||
        (type == SOCK_STREAM && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        (type == SOCK_STREAM && listen(fd, 128) != 0) ||
        getsockname(fd, (struct sockaddr *)&at, &atlen) != 0) {
        snprintf(err, errlen, "%s listen=%s:%d: %s", name, bind_addr, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(ai);
        return SP_ERR_IO;
    }
    freeaddrinfo(ai);
    addr_text(&at, where, sizeof where);
    LOG_INFO("%s listen=%s", name, where);
    return fd;
}

static void raw_free(struct rawnet *rn)
{
    size_t i;

    for (i = 0; i < RAW_CONN_MAX; i++) {
        if (rn->conns[i]) {
            conn_close(rn->conns[i], "stopping");
            conn_free(rn, rn->conns[i]);
        }
    }
    if (rn->udp_fd >= 0)
        close(rn->udp_fd);
    if (rn->tcp_fd >= 0)
        close(rn->tcp_fd);
    if (rn->wake_fd >= 0)
        close(rn->wake_fd);
    pthread_mutex_destroy(&rn->lock);
    free(rn->back);
    free(rn);
}

static struct rawnet *raw_new(struct netq *q)
{
    struct rawnet *rn = calloc(1, sizeof *rn);

    if (!rn)
        return NULL;
    rn->q = q;
    rn->udp_fd = rn->tcp_fd = -1;
    rn->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    rn->back = calloc(RAW_BACK_CAP, sizeof *rn->back);
    pthread_mutex_init(&rn->lock, NULL);
    rawlimit_init(&rn->limit, RAW_FAIL_RATE, RAW_FAIL_BURST, RAW_BLOCK_MS, RAW_GOOD_MS,
                  RAW_NEW_RATE, RAW_NEW_BURST);
    rn->udp_full.what = "udp_queue_full";
    rn->udp_busy.what = "udp_in_flight";
    rn->udp_amplify.what = "udp_error_larger_than_request";
    rn->udp_limited.what = "udp_sender_blocked";
    rn->udp_new.what = "udp_new_senders_over_rate";
    rn->udp_too_large.what = "udp_answer_too_large";
    rn->udp_cmd_too_large.what = "udp_command_too_large";
    rn->tcp_per_ip.what = "tcp_too_many_from_one_address";
    rn->udp_unsent.what = "udp_send_failed";
    rn->tcp_refused.what = "tcp_too_many_connections";
    if (rn->wake_fd < 0 || !rn->back) {
        raw_free(rn);
        return NULL;
    }
    return rn;
}

/* The thread blocks every signal: they belong to the daemon's main thread. */
static int raw_spawn(struct rawnet *rn)
{
    sigset_t all, old;
    int rc;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&rn->thread, NULL, raw_main, rn);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

int rawnet_start(const struct rawnet_opts *o, struct netq *q, struct rawnet **out, char *err,
                 size_t errlen)
{
    struct rawnet *rn;
    int rc;

    *out = NULL;
    if (o->udp_port <= 0 && o->tcp_port <= 0)
        return 0;
    if (!(rn = raw_new(q))) {
        snprintf(err, errlen, "raw binding: out of memory");
        return SP_ERR_IO;
    }
    if (o->udp_port > 0 &&
        (rn->udp_fd = listen_on(o->bind, o->udp_port, SOCK_DGRAM, err, errlen)) < 0)
        goto fail;
    if (o->tcp_port > 0 &&
        (rn->tcp_fd = listen_on(o->bind, o->tcp_port, SOCK_STREAM, err, errlen)) < 0)
        goto fail;
    rc = raw_spawn(rn);
    if (rc != 0) {
        snprintf(err, errlen, "raw binding: thread: %s", strerror(rc));
        goto fail;
    }
    *out = rn;
    return 0;
fail:
    raw_free(rn);
    return SP_ERR_IO;
}

void rawnet_stop(struct rawnet *rn)
{
    uint64_t one = 1;

    if (!rn)
        return;
    pthread_mutex_lock(&rn->lock);
    rn->stop = 1;
    pthread_mutex_unlock(&rn->lock);
    if (write(rn->wake_fd, &one, sizeof one) < 0)
        LOG_ERROR("raw wakeup failed error=\"%s\"", strerror(errno));
    pthread_join(rn->thread, NULL);
    take_back(rn);
    if (rn->outstanding > 0) {
        /* done() may still come for these: keep what it would touch. */
        LOG_ERROR("raw stopped with requests in the pipeline count=%zu", rn->outstanding);
        return;
    }
    raw_free(rn);
}
