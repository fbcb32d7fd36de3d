/*
 * test_rawnet.c - the raw binding's listeners (transport/rawnet.c) against a
 * stand-in for the request queue: this file's net_req_new/netq_submit keep
 * what the listeners submit, and the test answers each request as the
 * pipeline would (answers, result, done() from this thread), so that it
 * decides the order and timing. Real sockets on loopback: what a datagram
 * or a connection gets back, in which framing and order; no amplification;
 * a failing source blocked while another is served; backpressure per
 * connection; a connection closed with requests out; NET_FAILED closing the
 * connection; a full queue; a stopping queue; the bound on plaintext
 * answers; senders apart by port; the hard line bound, the idle timeouts,
 * the connection limit and the per-address limit (this binary is built with
 * them lowered).
 */
#include "check.h"
#include "transport/rawnet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/errors.h"
#include "base/log.h"
#include "base/sp_limits.h"
#include "sealpipe.h"

/* ---- the stand-in queue ------------------------------------------------- */

#define FAKE_MAX 256

struct netq {
    pthread_mutex_t lock;
    struct net_req *req[FAKE_MAX];
    size_t n;
    int full;     /* netq_submit says SP_ERR_FULL */
    int stopping; /* netq_submit says SP_ERR_STOPPING (after netq_close) */
    size_t refused;
};

static struct netq fake = {.lock = PTHREAD_MUTEX_INITIALIZER};

struct net_req *net_req_new(const char *transport, int binding, const char *topic, const char *auth,
                            const void *data, size_t len, size_t full_len)
{
    struct net_req *r = calloc(1, sizeof *r);

    if (!r)
        return NULL;
    r->transport = transport;
    r->binding = binding;
    r->topic = topic ? strdup(topic) : NULL;
    r->auth = auth ? strdup(auth) : NULL;
    r->data = malloc(len + 1);
    memcpy(r->data, data, len);
    r->data[len] = 0;
    r->len = len;
    r->full_len = full_len;
    return r;
}

void net_req_free(struct net_req *r)
{
    size_t i;

    if (!r)
        return;
    for (i = 0; i < r->nanswers; i++)
        free(r->answers[i].data);
    free(r->topic);
    free(r->auth);
    free(r->data);
    free(r);
}

int netq_submit(struct netq *q, struct net_req *r)
{
    int rc = 0;

    pthread_mutex_lock(&q->lock);
    if (q->stopping) {
        q->refused++;
        rc = SP_ERR_STOPPING;
    } else if (q->full || q->n == FAKE_MAX) {
        q->refused++;
        rc = SP_ERR_FULL;
    } else {
        q->req[q->n++] = r;
    }
    pthread_mutex_unlock(&q->lock);
    return rc;
}

static size_t queued(void)
{
    size_t n;

    pthread_mutex_lock(&fake.lock);
    n = fake.n;
    pthread_mutex_unlock(&fake.lock);
    return n;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Waits up to ms for n requests in the queue; returns how many there are. */
static size_t wait_queued_ms(size_t n, int ms)
{
    int i;

    for (i = 0; i < ms / 5 && queued() < n; i++)
        sleep_ms(5);
    return queued();
}

static size_t wait_queued(size_t n)
{
    return wait_queued_ms(n, 2000);
}

/* Takes request i out of the queue. */
static struct net_req *take(size_t i)
{
    struct net_req *r;

    pthread_mutex_lock(&fake.lock);
    r = fake.req[i];
    memmove(fake.req + i, fake.req + i + 1, (fake.n - i - 1) * sizeof *fake.req);
    fake.n--;
    pthread_mutex_unlock(&fake.lock);
    return r;
}

/* Answers r as the pipeline would: the given answers (NULL-terminated), then done(). */
static void answer(struct net_req *r, int result, const char *const *answers)
{
    r->result = result;
    for (; answers && *answers && r->nanswers < NET_MAX_ANSWERS; answers++) {
        r->answers[r->nanswers].data = (uint8_t *)strdup(*answers);
        r->answers[r->nanswers++].len = strlen(*answers);
    }
    r->done(r);
}

/* ---- sockets ------------------------------------------------------------ */

static int free_port(int type)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    int fd = socket(AF_INET, type, 0), port;

    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0)
        port = -1;
    else
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int udp_port, tcp_port;

/* A UDP socket bound to source address src (127.0.0.x), connected to the listener. */
static int udp_client(const char *src)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_DGRAM, 0);

    inet_pton(AF_INET, src, &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0)
        return -1;
    a.sin_port = htons((uint16_t)udp_port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        return -1;
    return fd;
}

/* A TCP connection to the listener from source address src (127.0.0.x). */
static int tcp_client_from(const char *src)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    inet_pton(AF_INET, src, &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0)
        return -1;
    a.sin_port = htons((uint16_t)tcp_port);
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        return -1;
    return fd;
}

static int tcp_client(void)
{
    return tcp_client_from("127.0.0.1");
}

/* Receives what arrives within ms into buf (NUL-terminated); returns its
 * length, 0 at end of stream, -1 when nothing came. */
static ssize_t recv_within(int fd, char *buf, size_t cap, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    ssize_t n;

    if (poll(&p, 1, ms) != 1)
        return -1;
    n = recv(fd, buf, cap - 1, 0);
    buf[n > 0 ? n : 0] = 0;
    return n;
}

/* Receives exactly want bytes of a stream within 2 s. */
static size_t recv_all(int fd, char *buf, size_t want)
{
    size_t got = 0;
    ssize_t n;

    while (got < want && (n = recv_within(fd, buf + got, want - got + 1, 2000)) > 0)
        got += (size_t)n;
    buf[got] = 0;
    return got;
}

static void send_str(int fd, const char *s)
{
    CHECK_EQ_INT(send(fd, s, strlen(s), 0), (long long)strlen(s));
}

/* ---- UDP ---------------------------------------------------------------- */

static void test_udp_answer_and_commands(void)
{
    const char *const ans[] = {"ACK|PONG", "ACK|CMD|reboot", NULL};
    int fd = udp_client("127.0.0.1");
    struct net_req *r;
    char buf[256];

    send_str(fd, "PING|4deedd7bab8817ec|sensor-01\n");
    CHECK_EQ_INT(wait_queued(1), 1);
    r = take(0);
    CHECK_EQ_INT(r->binding, INGEST_FRAME);
    CHECK_EQ_STR(r->topic, "$tip");
    CHECK_EQ_STR((char *)r->data, "PING|4deedd7bab8817ec|sensor-01"); /* without the LF */
    CHECK_EQ_INT(r->full_len, r->len);
    CHECK_EQ_INT(r->commands, 1);
    CHECK_EQ_STR(r->transport, "udp");
    answer(r, NET_ANSWERED, ans);
    CHECK_EQ_INT(recv_within(fd, buf, sizeof buf, 2000), 8);
    CHECK_EQ_STR(buf, "ACK|PONG");
    CHECK_EQ_INT(recv_within(fd, buf, sizeof buf, 2000), 14);
    CHECK_EQ_STR(buf, "ACK|CMD|reboot");
    close(fd);
}

static void test_udp_envelope_and_silence(void)
{
    const uint8_t env[] = {0x00, 0x00, 0x00, 0x00, 0x2a, 0x0a, 0x41};
    const char *const ok[] = {"\x03sealed", NULL};
    int fd = udp_client("127.0.0.1");
    struct net_req *r;
    char buf[256];

    CHECK_EQ_INT(send(fd, env, sizeof env, 0), sizeof env);
    CHECK_EQ_INT(wait_queued(1), 1);
    r = take(0);
    CHECK_EQ_INT(r->binding, INGEST_ENVELOPE);
    CHECK_EQ_STR(r->topic, "$tips");
    CHECK_EQ_INT(r->len, sizeof env); /* an envelope keeps its 0x0a */
    CHECK(memcmp(r->data, env, sizeof env) == 0);
    answer(r, NET_ANSWERED, ok);
    CHECK_EQ_INT(recv_within(fd, buf, sizeof buf, 2000), 7);
    /* NET_ACCEPTED and NET_FAILED: nothing. */
    send_str(fd, "PING|4deedd7bab8817ec|a");
    send_str(fd, "PING|4deedd7bab8817ec|b");
    CHECK_EQ_INT(wait_queued(2), 2);
    answer(take(0), NET_ACCEPTED, NULL);
    answer(take(0), NET_FAILED, NULL);
    CHECK_EQ_INT(recv_within(fd, buf, sizeof buf, 200), -1);
    close(fd);
}

/* An error answer larger than the datagram is not sent; one that fits is. */
static void test_udp_no_amplification(void)
{
    const char *const err[] = {"ACK|ERR|auth_failed", NULL};
    int fd = udp_client("127.0.0.3");
    char buf[256];

    send_str(fd, "xx");
    CHECK_EQ_INT(wait_queued(1), 1);
    answer(take(0), NET_ANSWERED, err);
    CHECK_EQ_INT(recv_within(fd, buf, sizeof buf, 300), -1);
    send_str(fd, "PUSH|0000000000000000|s|[x:=1]"); /* 30 bytes */
    CHECK_EQ_INT(wait_queued(1), 1);
    answer(take(0), NET_ANSWERED, err);
    CHECK_EQ_INT(recv_within(fd, buf, sizeof buf, 2000), 19);
    close(fd);
}

/* A source whose requests keep failing is blocked; another one is served. */
static void test_udp_rate_limit(void)
{
    const char *const err[] = {"ACK|ERR|invalid_payload", NULL};
    int bad = udp_client("127.0.0.2"), good = udp_client("127.0.0.1");
    size_t reached = 0, i;
    int blocked = 0;
    char buf[64];

    CHECK(bad >= 0);
    for (i = 0; i < 60 && !blocked; i++) {
        send_str(bad, "PUSH|garbage-garbage-garbage-garbage");
        if (wait_queued_ms(1, 300) == 1) {
            reached++;
            answer(take(0), NET_ANSWERED, err);
            CHECK_EQ_INT(recv_within(bad, buf, sizeof buf, 1000), 23);
        } else {
            blocked = 1;
        }
    }
    CHECK(blocked);
    CHECK(reached >= 21 && reached <= 30);
    for (i = 0; i < 5; i++)
        send_str(bad, "PING|4deedd7bab8817ec|sensor-01");
    sleep_ms(200);
    CHECK_EQ_INT(queued(), 0);
    send_str(good, "PING|4deedd7bab8817ec|sensor-01");
    CHECK_EQ_INT(wait_queued(1), 1);
    answer(take(0), NET_ANSWERED, (const char *const[]){"ACK|PONG", NULL});
    CHECK_EQ_INT(recv_within(good, buf, sizeof buf, 2000), 8);
    close(bad);
    close(good);
}

/* Two senders behind one address (a NAT): the one that keeps failing is
 * blocked, the other one, on another port, is still served. */
static void test_udp_same_address_other_port(void)
{
    const char *const err[] = {"ACK|ERR|invalid_payload", NULL};
    int bad = udp_client("127.0.0.4"), good = udp_client("127.0.0.4");
    size_t i;
    int blocked = 0;
    char buf[64];

    CHECK(bad >= 0 && good >= 0);
    for (i = 0; i < 60 && !blocked; i++) {
        send_str(bad, "PUSH|garbage-garbage-garbage-garbage");
        if (wait_queued_ms(1, 300) == 1) {
            answer(take(0), NET_ANSWERED, err);
            CHECK_EQ_INT(recv_within(bad, buf, sizeof buf, 1000), 23);
        } else {
            blocked = 1;
        }
    }
    CHECK(blocked);
    send_str(good, "PING|4deedd7bab8817ec|sensor-01");
    CHECK_EQ_INT(wait_queued(1), 1);
    if (queued() == 1)
        answer(take(0), NET_ANSWERED, (const char *const[]){"ACK|PONG", NULL});
    CHECK_EQ_INT(recv_within(good, buf, sizeof buf, 2000), 8);
    close(bad);
    close(good);
}

/*
 * A PULL answer "<prefix>[n...n:=1;...]" of exactly total bytes into out:
 * variables with names of up to 100 characters (at most 100 variables, so
 * up to about 10 KB).
 */
static const char *pull_answer(char *out, const char *prefix, size_t total)
{
    size_t n = strlen(prefix), rem = total - n - 2, k;

    memcpy(out, prefix, n);
    out[n++] = '[';
    while (rem > 0) {
        k = rem - 3 > 100 ? 100 : rem - 3; /* a name, ":=1" */
        if (rem - 3 > 100 && rem - 3 - 100 < 5)
            k = 95; /* leave room for one more whole variable */
        memset(out + n, 'v', k);
        memcpy(out + n + k, ":=1", 3);
        n += k + 3;
        rem -= k + 3;
        if (rem > 0) {
            out[n++] = ';';
            rem--;
        }
    }
    out[n++] = ']';
    out[n] = 0;
    return out;
}

/* Sends req and answers it with ans (and the command cmd, unless NULL);
 * returns what the sender receives first (-1: nothing) into buf. */
static ssize_t udp_exchange(int fd, const char *req, const char *ans, const char *cmd, char *buf,
                            size_t cap)
{
    send_str(fd, req);
    if (wait_queued(1) != 1)
        return -2;
    answer(take(0), NET_ANSWERED, (const char *const[]){ans, cmd, NULL});
    return recv_within(fd, buf, cap, 500);
}

/* A plaintext answer larger than max(512, 4 x the request) is not sent:
 * "ACK|[!N|]ERR|payload_too_large" instead (no reflection); nor is a
 * plaintext command over it. A sealed answer is not bounded. */
static void test_udp_answer_bound(void)
{
    static const char pull[] = "PULL|4deedd7bab8817ec|dev|[a]"; /* 29 bytes */
    static const char pull_n[] = "PULL|!7|4deedd7bab8817ec|dev|[a]";
    size_t cap = 12000;
    char *ans = malloc(cap), *buf = malloc(cap), req[201];
    struct sp_tip_ack ack;
    int fd = udp_client("127.0.0.11");

    pull_answer(ans, "ACK|OK|", 6000);
    CHECK_EQ_INT(sp_tip_parse_ack(ans, strlen(ans), SP_ACK_FRAME, &ack), 0); /* a real answer */
    CHECK_EQ_INT(strlen(ans), 6000);
    CHECK_EQ_INT(udp_exchange(fd, pull, ans, NULL, buf, cap), 25);
    CHECK_EQ_STR(buf, "ACK|ERR|payload_too_large");
    CHECK_EQ_INT(udp_exchange(fd, pull_n, pull_answer(ans, "ACK|!7|OK|", 6000), NULL, buf, cap),
                 28);
    CHECK_EQ_STR(buf, "ACK|!7|ERR|payload_too_large");
    /* 512 bytes pass whatever the request's size; 513 do not. */
    CHECK_EQ_INT(udp_exchange(fd, pull, pull_answer(ans, "ACK|OK|", 512), NULL, buf, cap), 512);
    CHECK_EQ_INT(udp_exchange(fd, pull, pull_answer(ans, "ACK|OK|", 513), NULL, buf, cap), 25);
    /* So do 4 x the request: a 200-byte request may get 800 bytes. */
    snprintf(req, sizeof req, "PULL|4deedd7bab8817ec|dev|[%0*d]", 200 - 28, 0);
    CHECK_EQ_INT(strlen(req), 200);
    CHECK_EQ_INT(udp_exchange(fd, req, pull_answer(ans, "ACK|OK|", 800), NULL, buf, cap), 800);
    CHECK_EQ_INT(udp_exchange(fd, req, pull_answer(ans, "ACK|OK|", 801), NULL, buf, cap), 25);
    /* A command after the answer has the same bound: 512 bytes go, 608 do not. */
    memcpy(ans, "ACK|CMD|", 8);
    memset(ans + 8, 'c', 504);
    ans[512] = 0;
    CHECK_EQ_INT(udp_exchange(fd, "PING|4deedd7bab8817ec|dev", "ACK|PONG", ans, buf, cap), 8);
    CHECK_EQ_INT(recv_within(fd, buf, cap, 500), 512);
    memset(ans + 8, 'c', 600);
    ans[608] = 0;
    CHECK_EQ_INT(udp_exchange(fd, "PING|4deedd7bab8817ec|dev", "ACK|PONG", ans, buf, cap), 8);
    CHECK_EQ_INT(recv_within(fd, buf, cap, 300), -1);
    /* A sealed answer to an envelope proves the key: not bounded. */
    {
        static const uint8_t env[] = {0x00, 0x00, 0x00, 0x00, 0x2a, 0x0a, 0x41};

        ans[0] = 0x03;
        memset(ans + 1, 's', 1999);
        ans[2000] = 0;
        CHECK_EQ_INT(send(fd, env, sizeof env, 0), sizeof env);
        CHECK_EQ_INT(wait_queued(1), 1);
        answer(take(0), NET_ANSWERED, (const char *const[]){ans, NULL});
        CHECK_EQ_INT(recv_within(fd, buf, cap, 500), 2000);
    }
    free(ans);
    free(buf);
    close(fd);
}

/* ---- TCP ---------------------------------------------------------------- */

/* Frames and an envelope in one write; answered out of order, sent in order. */
static void test_tcp_order_and_framing(void)
{
    static const char in[] = "PING|!1|4deedd7bab8817ec|a\n"
                             "\x00\x05\x00\x00\x00\x00\x2a"
                             "PUSH|!2|4deedd7bab8817ec|a|[x:=1]\n";
    int fd = tcp_client();
    struct net_req *r[3];
    char buf[256];
    size_t i;

    CHECK_EQ_INT(send(fd, in, sizeof in - 1, 0), (long long)(sizeof in - 1));
    CHECK_EQ_INT(wait_queued(3), 3);
    for (i = 0; i < 3; i++)
        r[i] = take(0);
    CHECK_EQ_STR((char *)r[0]->data, "PING|!1|4deedd7bab8817ec|a");
    CHECK_EQ_INT(r[1]->binding, INGEST_ENVELOPE);
    CHECK_EQ_INT(r[1]->len, 5);
    CHECK_EQ_STR((char *)r[2]->data, "PUSH|!2|4deedd7bab8817ec|a|[x:=1]");
    CHECK_EQ_STR(r[2]->transport, "tcp");
    answer(r[2], NET_ANSWERED, (const char *const[]){"ACK|!2|OK|1", "ACK|CMD|x", NULL});
    answer(r[1], NET_ANSWERED, (const char *const[]){"ACK|ERR|auth_failed", NULL});
    CHECK_EQ_INT(recv_within(fd, buf, sizeof buf, 300), -1); /* r[0] first */
    answer(r[0], NET_ANSWERED, (const char *const[]){"ACK|!1|PONG", NULL});
    CHECK_EQ_INT(recv_all(fd, buf, 12 + 21 + 12 + 10), 55);
    CHECK(memcmp(buf,
                 "ACK|!1|PONG\n\x00\x13"
                 "ACK|ERR|auth_failed"
                 "ACK|!2|OK|1\nACK|CMD|x\n",
                 55) == 0);
    close(fd);
}

/* One frame over many writes; an oversize line cut at SP_LIMIT_PAYLOAD. */
static void test_tcp_split_and_oversize(void)
{
    size_t big = SP_LIMIT_PAYLOAD + 1000, i;
    char *line = malloc(big + 1);
    int fd = tcp_client();
    struct net_req *r;
    const char *p;

    for (p = "PING|4deedd7bab8817ec|sensor-01\n"; *p; p++) {
        CHECK_EQ_INT(send(fd, p, 1, 0), 1);
        sleep_ms(1);
    }
    CHECK_EQ_INT(wait_queued(1), 1);
    r = take(0);
    CHECK_EQ_STR((char *)r->data, "PING|4deedd7bab8817ec|sensor-01");
    answer(r, NET_ACCEPTED, NULL);
    memset(line, 'P', big);
    line[big] = '\n';
    for (i = 0; i <= big;) {
        ssize_t n = send(fd, line + i, big + 1 - i, 0);

        CHECK(n > 0);
        i += n > 0 ? (size_t)n : big + 1;
    }
    CHECK_EQ_INT(wait_queued(1), 1);
    r = take(0);
    CHECK_EQ_INT(r->len, SP_LIMIT_PAYLOAD);
    CHECK_EQ_INT(r->full_len, big);
    answer(r, NET_ANSWERED, (const char *const[]){"ACK|ERR|payload_too_large", NULL});
    {
        char buf[64];

        CHECK_EQ_INT(recv_all(fd, buf, 26), 26);
        CHECK_EQ_STR(buf, "ACK|ERR|payload_too_large\n");
    }
    free(line);
    close(fd);
}

/* Eight requests in the pipeline stop reading that connection. */
static void test_tcp_backpressure(void)
{
    char in[20 * 32], buf[20 * 16];
    size_t n = 0, i;
    int fd = tcp_client();

    for (i = 0; i < 20; i++)
        n += (size_t)snprintf(in + n, sizeof in - n, "PING|!%zu|4deedd7bab8817ec|a\n", i);
    send_str(fd, in);
    CHECK_EQ_INT(wait_queued(8), 8);
    sleep_ms(100);
    CHECK_EQ_INT(queued(), 8);
    for (i = 0; i < 20; i++) {
        CHECK(wait_queued(1) >= 1);
        answer(take(0), NET_ANSWERED, (const char *const[]){"ACK|PONG", NULL});
    }
    CHECK_EQ_INT(recv_all(fd, buf, 20 * 9), 20 * 9);
    CHECK_EQ_INT(queued(), 0);
    close(fd);
}

/* The peer goes while its request is out: the answer is dropped (ASan
 * checks nothing freed is touched); a failed commit closes the connection. */
static void test_tcp_gone_and_failed(void)
{
    int fd = tcp_client();
    struct net_req *r;
    char buf[64];

    struct linger reset = {1, 0};

    send_str(fd, "PING|4deedd7bab8817ec|a\n");
    CHECK_EQ_INT(wait_queued(1), 1);
    close(fd);
    sleep_ms(100);
    r = take(0);
    answer(r, NET_ANSWERED, (const char *const[]){"ACK|PONG", NULL});
    sleep_ms(50);
    /* A reset: the listener closes its socket with the request still out. */
    fd = tcp_client();
    send_str(fd, "PING|4deedd7bab8817ec|a\n");
    CHECK_EQ_INT(wait_queued(1), 1);
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    close(fd);
    sleep_ms(100);
    answer(take(0), NET_ANSWERED, (const char *const[]){"ACK|PONG", NULL});
    sleep_ms(50);

    fd = tcp_client();
    send_str(fd, "PING|4deedd7bab8817ec|a\n");
    CHECK_EQ_INT(wait_queued(1), 1);
    answer(take(0), NET_FAILED, NULL);
    CHECK_EQ_INT(recv_within(fd, buf, sizeof buf, 2000), 0);
    close(fd);
}

/* A full queue: UDP drops the datagram; TCP holds the request until there is room. */
static void test_queue_full(void)
{
    int u = udp_client("127.0.0.1"), t = tcp_client();
    char buf[64];

    pthread_mutex_lock(&fake.lock);
    fake.full = 1;
    pthread_mutex_unlock(&fake.lock);
    send_str(u, "PING|4deedd7bab8817ec|a");
    send_str(t, "PING|4deedd7bab8817ec|b\n");
    sleep_ms(200);
    CHECK_EQ_INT(queued(), 0);
    pthread_mutex_lock(&fake.lock);
    CHECK(fake.refused >= 2);
    fake.full = 0;
    pthread_mutex_unlock(&fake.lock);
    CHECK_EQ_INT(wait_queued(1), 1);
    sleep_ms(100);
    CHECK_EQ_INT(queued(), 1);
    answer(take(0), NET_ANSWERED, (const char *const[]){"ACK|PONG", NULL});
    CHECK_EQ_INT(recv_all(t, buf, 9), 9);
    close(u);
    close(t);
}

/* A line past the hard bound (4 x SP_LIMIT_PAYLOAD) closes the connection
 * before its end comes; nothing reaches the queue. */
static void test_tcp_line_bound(void)
{
    size_t chunk = 64 * 1024, sent = 0;
    char *p = malloc(chunk), buf[64];
    int fd = tcp_client();
    ssize_t n;

    memset(p, 'P', chunk);
    while (sent <= 4u * SP_LIMIT_PAYLOAD + chunk) {
        n = send(fd, p, chunk, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        sent += (size_t)n;
    }
    {
        struct pollfd pf = {.fd = fd, .events = POLLIN};

        CHECK_EQ_INT(poll(&pf, 1, 2000), 1);
        n = recv(fd, buf, sizeof buf, 0);
        CHECK(n == 0 || (n < 0 && errno == ECONNRESET)); /* closed, not silent */
    }
    CHECK_EQ_INT(queued(), 0);
    free(p);
    close(fd);
}

/* Built with RAW_HELLO_MS 300, RAW_IDLE_MS 1500, RAW_TICK_MS 100,
 * RAW_CONN_MAX 4 and RAW_PER_IP_MAX 2 (tests/CMakeLists.txt). */
static void test_tcp_idle_and_limit(void)
{
    static const char *const from[5] = {"127.0.0.1", "127.0.0.2", "127.0.0.2", "127.0.0.3",
                                        "127.0.0.4"};
    int fd[5], i;
    char buf[64];

    for (i = 0; i < 5; i++)
        fd[i] = tcp_client_from(from[i]);
    /* The fifth is over the limit: closed at once. */
    CHECK_EQ_INT(recv_within(fd[4], buf, sizeof buf, 1000), 0);
    send_str(fd[0], "PING|4deedd7bab8817ec|a\n");
    CHECK_EQ_INT(wait_queued(1), 1);
    sleep_ms(700);
    /* Silent ones are closed; one with a request out is not. */
    CHECK_EQ_INT(recv_within(fd[1], buf, sizeof buf, 1500), 0);
    answer(take(0), NET_ANSWERED, (const char *const[]){"ACK|PONG", NULL});
    CHECK_EQ_INT(recv_all(fd[0], buf, 9), 9);
    CHECK_EQ_STR(buf, "ACK|PONG\n");
    for (i = 0; i < 5; i++)
        close(fd[i]);
    sleep_ms(500); /* every slot free again for later tests */
}

/* Past RAW_PER_IP_MAX connections from one address, the next is closed at
 * once; another address is still served. */
static void test_tcp_per_address(void)
{
    int a1 = tcp_client_from("127.0.0.5"), a2 = tcp_client_from("127.0.0.5");
    int a3 = tcp_client_from("127.0.0.5"), b = tcp_client_from("127.0.0.6");
    char buf[64];

    CHECK_EQ_INT(recv_within(a3, buf, sizeof buf, 1000), 0);
    CHECK_EQ_INT(recv_within(a1, buf, sizeof buf, 50), -1);
    send_str(b, "PING|4deedd7bab8817ec|b\n");
    CHECK_EQ_INT(wait_queued(1), 1);
    answer(take(0), NET_ANSWERED, (const char *const[]){"ACK|PONG", NULL});
    CHECK_EQ_INT(recv_all(b, buf, 9), 9);
    close(a1);
    close(a2);
    close(a3);
    close(b);
    sleep_ms(300);
}

/* A connection that never sent a whole message closes after RAW_HELLO_MS
 * (300 ms here); one that did stays until RAW_IDLE_MS (1500 ms here). */
static void test_tcp_hello_timeout(void)
{
    int spoke = tcp_client_from("127.0.0.7"), silent = tcp_client_from("127.0.0.8");
    int partial = tcp_client_from("127.0.0.9");
    char buf[64];
    int i;

    send_str(spoke, "PING|4deedd7bab8817ec|a\n");
    CHECK_EQ_INT(wait_queued(1), 1);
    answer(take(0), NET_ANSWERED, (const char *const[]){"ACK|PONG", NULL});
    CHECK_EQ_INT(recv_all(spoke, buf, 9), 9);
    /* A byte every 100 ms of a message that never ends does not keep it open. */
    for (i = 0; i < 8; i++) {
        send(partial, "P", 1, MSG_NOSIGNAL);
        sleep_ms(100);
    }
    CHECK_EQ_INT(recv_within(silent, buf, sizeof buf, 300), 0);
    CHECK_EQ_INT(recv_within(partial, buf, sizeof buf, 300), 0);
    CHECK_EQ_INT(recv_within(spoke, buf, sizeof buf, 50), -1); /* still open */
    CHECK_EQ_INT(recv_within(spoke, buf, sizeof buf, 2500), 0);
    CHECK_EQ_INT(queued(), 0);
    close(spoke);
    close(silent);
    close(partial);
}

/* After netq_close the queue says SP_ERR_STOPPING: UDP sends nothing, TCP
 * closes the connection (nothing was stored). */
static void test_stopping(void)
{
    int u = udp_client("127.0.0.10"), t = tcp_client_from("127.0.0.10");
    char buf[64];

    pthread_mutex_lock(&fake.lock);
    fake.stopping = 1;
    pthread_mutex_unlock(&fake.lock);
    send_str(u, "PING|4deedd7bab8817ec|a");
    send_str(t, "PING|4deedd7bab8817ec|b\n");
    CHECK_EQ_INT(recv_within(t, buf, sizeof buf, 1000), 0);
    CHECK_EQ_INT(recv_within(u, buf, sizeof buf, 100), -1);
    pthread_mutex_lock(&fake.lock);
    fake.stopping = 0;
    pthread_mutex_unlock(&fake.lock);
    CHECK_EQ_INT(queued(), 0);
    close(u);
    close(t);
    sleep_ms(100);
}

static void test_bind_error(void)
{
    struct rawnet_opts o = {.bind = "127.0.0.1", .udp_port = udp_port};
    struct rawnet *r2 = (struct rawnet *)&o;
    char err[256] = "";

    CHECK_EQ_INT(rawnet_start(&o, &fake, &r2, err, sizeof err), SP_ERR_IO);
    CHECK(r2 == NULL);
    CHECK(strstr(err, "udp listen=127.0.0.1:") != NULL);
    CHECK(strstr(err, "in use") != NULL);
}

int main(void)
{
    struct rawnet_opts o = {.bind = "127.0.0.1"};
    struct rawnet *rn = NULL;
    char err[256];

    log_level = LOG_LEVEL_ERROR;
    udp_port = free_port(SOCK_DGRAM);
    tcp_port = free_port(SOCK_STREAM);
    o.udp_port = udp_port;
    o.tcp_port = tcp_port;
    if (rawnet_start(&o, &fake, &rn, err, sizeof err) != 0) {
        fprintf(stderr, "rawnet_start: %s\n", err);
        return 1;
    }
    RUN(test_udp_answer_and_commands);
    RUN(test_udp_envelope_and_silence);
    RUN(test_udp_no_amplification);
    RUN(test_udp_rate_limit);
    RUN(test_udp_same_address_other_port);
    RUN(test_udp_answer_bound);
    RUN(test_tcp_order_and_framing);
    RUN(test_tcp_split_and_oversize);
    RUN(test_tcp_backpressure);
    RUN(test_tcp_gone_and_failed);
    RUN(test_queue_full);
    RUN(test_tcp_line_bound);
    RUN(test_tcp_idle_and_limit);
    RUN(test_tcp_per_address);
    RUN(test_tcp_hello_timeout);
    RUN(test_stopping);
    RUN(test_bind_error);
    rawnet_stop(rn);
    return check_done();
}
