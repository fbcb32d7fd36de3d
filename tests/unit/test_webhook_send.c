/*
 * test_webhook_send.c - the webhook sender (transport/webhook_send.c)
 * against a small HTTP/1.1 server in this process: plain sockets on
 * 127.0.0.1, an ephemeral port, one thread per connection, every request
 * recorded (method, path, headers, body) and answered by its path:
 *   /ok 200 "fine"   /fail 500   /redir 302 to /ok   /retry 429, Retry-After: 7
 *   /retrylong Retry-After: 99999   /retrydate an HTTP-date   /text control bytes
 *   /big a 1 MB body   /gate held until the test opens the gate
 * Each connection is closed after one answer. Waits are on conditions with
 * bounded deadlines; the only fixed pauses check that something does NOT
 * happen (a fifth request while four are held).
 */
#include "check.h"
#include "base/errors.h"
#include "base/webhook_url.h"
#include "transport/webhook_send.h"
#include "sealpipe.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <pthread.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "base/clock.h"

/* ---- the server ---------------------------------------------------------- */

#define SRV_MAX_REQS  64
#define SRV_MAX_CONNS 128
#define SRV_HEAD_MAX  16384
#define BIG_LEN       (1024 * 1024)

struct seen {
    char method[16], path[256];
    char head[SRV_HEAD_MAX]; /* the header lines as received */
    unsigned char *body;
    size_t body_len;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int lfd, port;
    int stop;
    int gate_open;
    pthread_t acceptor;
    pthread_t conns[SRV_MAX_CONNS];
    size_t n_conns; /* accepted */
    struct seen reqs[SRV_MAX_REQS];
    size_t n_reqs;
    int active, max_active; /* requests being answered now, the most at once */
} srv = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void send_all(int fd, const void *p, size_t n)
{
    const char *c = p;

    while (n > 0) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
        if (w <= 0)
            return; /* the client went away (/big) */
        c += w;
        n -= (size_t)w;
    }
}

static void respond(int fd, const char *status, const char *extra, const char *body, size_t len)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\n%sContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
                     extra, len);

    send_all(fd, head, (size_t)n);
    send_all(fd, body, len);
}

/* A 1 MB body: 199 'a', an 'é' cut by the snippet's end, then 'x'. */
static void respond_big(int fd)
{
    char *b = malloc(BIG_LEN);

    memset(b, 'x', BIG_LEN);
    memset(b, 'a', 199);
    memcpy(b + 199, "\xc3\xa9", 2);
    respond(fd, "200 OK", "", b, BIG_LEN);
    free(b);
}

/* Holds the request until the test opens the gate (or 5 s pass). */
static void wait_gate(void)
{
    struct timespec until;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&srv.mu);
    while (!srv.gate_open && !srv.stop)
        if (pthread_cond_timedwait(&srv.cv, &srv.mu, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&srv.mu);
}

static void answer(int fd, const struct seen *s)
{
    static const char text[] = "caf\xc3\xa9\r\n\0\xff end";

    if (strcmp(s->path, "/ok") == 0)
        respond(fd, "200 OK", "", "fine", 4);
    else if (strcmp(s->path, "/fail") == 0)
        respond(fd, "500 Internal Server Error", "", "broken", 6);
    else if (strcmp(s->path, "/redir") == 0)
        respond(fd, "302 Found", "Location: /ok\r\n", "", 0);
    else if (strcmp(s->path, "/retry") == 0)
        respond(fd, "429 Too Many Requests", "Retry-After: 7\r\n", "", 0);
    else if (strcmp(s->path, "/retrylong") == 0)
        respond(fd, "503 Service Unavailable", "retry-after:  99999 \r\n", "", 0);
    else if (strcmp(s->path, "/retrydate") == 0)
        respond(fd, "503 Service Unavailable", "Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n", "",
                0);
    else if (strcmp(s->path, "/text") == 0)
        respond(fd, "200 OK", "", text, sizeof text - 1);
    else if (strcmp(s->path, "/big") == 0)
        respond_big(fd);
    else if (strcmp(s->path, "/gate") == 0)
        respond(fd, "200 OK", "", "open", 4); /* conn_main waited at the gate */
    else
        respond(fd, "404 Not Found", "", "", 0);
}

/* The value of header name in s (its first), or NULL; into out. */
static const char *header(const struct seen *s, const char *name, char *out, size_t cap)
{
    size_t n = strlen(name);

    for (const char *p = s->head; *p;) {
        const char *e = strstr(p, "\r\n");
        if (!e)
            break;
        if ((size_t)(e - p) > n && strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1;
            while (*v == ' ')
                v++;
            snprintf(out, cap, "%.*s", (int)(e - v), v);
            return out;
        }
        p = e + 2;
    }
    return NULL;
}

/* Reads one request into s: the head, then Content-Length bytes. 0 or -1. */
static int read_request(int fd, struct seen *s)
{
    char buf[SRV_HEAD_MAX + 1], cl[32];
    size_t n = 0, body_len = 0;
    char *end = NULL;

    while (!end) {
        ssize_t r = n < SRV_HEAD_MAX ? recv(fd, buf + n, SRV_HEAD_MAX - n, 0) : -1;
        if (r <= 0)
            return -1;
        n += (size_t)r;
        buf[n] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    char *line_end = strstr(buf, "\r\n");
    if (sscanf(buf, "%15s %255s", s->method, s->path) != 2)
        return -1;
    snprintf(s->head, sizeof s->head, "%.*s", (int)(end + 2 - (line_end + 2)), line_end + 2);
    if (header(s, "Content-Length", cl, sizeof cl))
        body_len = strtoul(cl, NULL, 10);
    s->body = malloc(body_len + 1);
    s->body_len = n - (size_t)(end + 4 - buf);
    memcpy(s->body, end + 4, s->body_len);
    while (s->body_len < body_len) {
        ssize_t r = recv(fd, s->body + s->body_len, body_len - s->body_len, 0);
        if (r <= 0)
            return -1;
        s->body_len += (size_t)r;
    }
    return 0;
}

static void *conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct seen *s = calloc(1, sizeof *s);

    if (read_request(fd, s) == 0) {
        pthread_mutex_lock(&srv.mu);
        if (srv.n_reqs < SRV_MAX_REQS) {
            srv.reqs[srv.n_reqs++] = *s;
            s->body = NULL; /* the record owns it */
        }
        if (++srv.active > srv.max_active)
            srv.max_active = srv.active;
        pthread_cond_broadcast(&srv.cv);
        pthread_mutex_unlock(&srv.mu);
        if (strcmp(s->path, "/gate") == 0)
            wait_gate();
        /* No longer active before the answer leaves: once the client has it,
         * the sender may start the next request at once, and it must not find
         * this one still counted. */
        pthread_mutex_lock(&srv.mu);
        srv.active--;
        pthread_cond_broadcast(&srv.cv);
        pthread_mutex_unlock(&srv.mu);
        answer(fd, s);
    }
    free(s->body);
    free(s);
    close(fd);
    return NULL;
}

static void *accept_main(void *arg)
{
    (void)arg;
    for (;;) {
        struct pollfd p = {.fd = srv.lfd, .events = POLLIN};
        int fd;

        pthread_mutex_lock(&srv.mu);
        int stop = srv.stop;
        pthread_mutex_unlock(&srv.mu);
        if (stop)
            return NULL;
        if (poll(&p, 1, 50) <= 0 || (fd = accept(srv.lfd, NULL, NULL)) < 0)
            continue;
        pthread_mutex_lock(&srv.mu);
        if (srv.n_conns < SRV_MAX_CONNS &&
            pthread_create(&srv.conns[srv.n_conns], NULL, conn_main, (void *)(intptr_t)fd) == 0)
            srv.n_conns++;
        else
            close(fd);
        pthread_cond_broadcast(&srv.cv);
        pthread_mutex_unlock(&srv.mu);
    }
}

static int server_start(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;

    srv.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (bind(srv.lfd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(srv.lfd, (struct sockaddr *)&a, &alen) != 0 || listen(srv.lfd, 64) != 0)
        return -1;
    srv.port = ntohs(a.sin_port);
    srv.stop = 0;
    return pthread_create(&srv.acceptor, NULL, accept_main, NULL) == 0 ? 0 : -1;
}

/* Forgets what was seen, after the connections are done; the gate closes. */
static void server_reset(void)
{
    pthread_mutex_lock(&srv.mu);
    srv.gate_open = 1;
    pthread_cond_broadcast(&srv.cv);
    pthread_mutex_unlock(&srv.mu);
    for (;;) {
        pthread_mutex_lock(&srv.mu);
        size_t n = srv.n_conns;
        pthread_t t = n ? srv.conns[n - 1] : 0;
        if (n)
            srv.n_conns--;
        pthread_mutex_unlock(&srv.mu);
        if (!n)
            break;
        pthread_join(t, NULL);
    }
    pthread_mutex_lock(&srv.mu);
    for (size_t i = 0; i < srv.n_reqs; i++)
        free(srv.reqs[i].body);
    srv.n_reqs = 0;
    srv.active = srv.max_active = 0;
    srv.gate_open = 0;
    pthread_mutex_unlock(&srv.mu);
}

static void server_stop(void)
{
    server_reset();
    pthread_mutex_lock(&srv.mu);
    srv.stop = 1;
    pthread_mutex_unlock(&srv.mu);
    pthread_join(srv.acceptor, NULL);
    close(srv.lfd);
}

static void gate_open(void)
{
    pthread_mutex_lock(&srv.mu);
    srv.gate_open = 1;
    pthread_cond_broadcast(&srv.cv);
    pthread_mutex_unlock(&srv.mu);
}

/* Waits up to ms until *v reaches at least want (read under the lock); returns it. */
static long long wait_at_least(const void *v, int is_size, long long want, int ms)
{
    struct timespec until;
    long long now;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&srv.mu);
    for (;;) {
        now = is_size ? (long long)*(const size_t *)v : (long long)*(const int *)v;
        if (now >= want || pthread_cond_timedwait(&srv.cv, &srv.mu, &until) == ETIMEDOUT)
            break;
    }
    now = is_size ? (long long)*(const size_t *)v : (long long)*(const int *)v;
    pthread_mutex_unlock(&srv.mu);
    if (now < want)
        fprintf(stderr, "  waited %d ms for %lld, have %lld\n", ms, want, now);
    return now;
}

static size_t seen_count(void)
{
    pthread_mutex_lock(&srv.mu);
    size_t n = srv.n_reqs;
    pthread_mutex_unlock(&srv.mu);
    return n;
}

/* The recorded request for path (the first), or NULL. The records stay put
 * until server_reset. */
static const struct seen *seen_path(const char *path)
{
    const struct seen *s = NULL;

    pthread_mutex_lock(&srv.mu);
    for (size_t i = 0; i < srv.n_reqs && !s; i++)
        if (strcmp(srv.reqs[i].path, path) == 0)
            s = &srv.reqs[i];
    pthread_mutex_unlock(&srv.mu);
    return s;
}

/* ---- the sender's side --------------------------------------------------- */

static struct webhook_sender *start(int64_t timeout_ms, int in_flight, int per_host, int waiting)
{
    struct webhook_sender_opts o = {.timeout_ms = timeout_ms,
                                    .connect_timeout_ms = 1000,
                                    .max_in_flight = in_flight,
                                    .max_per_host = per_host,
                                    .max_waiting = waiting,
                                    .user_agent = "sealpipe-test/1"};
    struct webhook_sender *ws = NULL;

    CHECK_EQ_INT(webhook_sender_start(&o, &ws), SP_OK);
    return ws;
}

static char url_buf[8][128];

/* http://127.0.0.1:<port><path>; eight in turn stay valid. */
static const char *url(const char *path)
{
    static int k;
    char *u = url_buf[k++ % 8];

    snprintf(u, sizeof url_buf[0], "http://127.0.0.1:%d%s", srv.port, path);
    return u;
}

static int submit(struct webhook_sender *ws, int64_t id, const char *method, const char *u,
                  const char *body)
{
    struct webhook_req r = {.id = id,
                            .method = method,
                            .url = u,
                            .body = body,
                            .body_len = body ? strlen(body) : 0,
                            .attempt = 1,
                            .allow_private = 1};

    return webhook_sender_submit(ws, &r);
}

/* Takes n results into out within ms (polling the sender's fd); returns how many came. */
static size_t wait_results(struct webhook_sender *ws, struct webhook_result *out, size_t n, int ms)
{
    int64_t deadline = clock_mono_ms() + ms;
    size_t got = 0;

    while (got < n) {
        int64_t left = deadline - clock_mono_ms();
        struct pollfd p = {.fd = webhook_sender_fd(ws), .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        got += webhook_sender_take(ws, out + got, n - got);
    }
    if (got < n)
        fprintf(stderr, "  waited %d ms for %zu results, have %zu\n", ms, n, got);
    return got;
}

/* One request, its result. */
static struct webhook_result one(struct webhook_sender *ws, const struct webhook_req *r)
{
    struct webhook_result res = {.status = -1};

    CHECK_EQ_INT(webhook_sender_submit(ws, r), SP_OK);
    CHECK_EQ_INT(wait_results(ws, &res, 1, 3000), 1);
    return res;
}

static struct webhook_result one_simple(struct webhook_sender *ws, const char *method,
                                        const char *u, int allow_private)
{
    struct webhook_req r = {
        .id = 1, .method = method, .url = u, .attempt = 1, .allow_private = allow_private};

    return one(ws, &r);
}

/* ---- tests --------------------------------------------------------------- */

static void test_statuses(void)
{
    struct webhook_sender *ws = start(2000, 4, 4, 8);
    struct webhook_result r;

    r = one_simple(ws, "POST", url("/ok"), 1);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_STR(r.error, "");
    CHECK_EQ_STR(r.snippet, "fine");
    CHECK_EQ_INT(r.retry_after_ms, -1);
    CHECK(r.duration_ms >= 0 && r.duration_ms < 2000);
    r = one_simple(ws, "POST", url("/fail"), 1);
    CHECK_EQ_INT(r.status, 500);
    CHECK_EQ_STR(r.snippet, "broken");
    CHECK_EQ_INT(r.retry_after_ms, -1);
    r = one_simple(ws, "POST", url("/nowhere"), 1);
    CHECK_EQ_INT(r.status, 404);
    CHECK_EQ_STR(r.error, "");
    /* A redirect is an answer, not followed. */
    server_reset();
    r = one_simple(ws, "POST", url("/redir"), 1);
    CHECK_EQ_INT(r.status, 302);
    CHECK_EQ_STR(r.error, "");
    CHECK(seen_path("/redir") != NULL);
    CHECK(seen_path("/ok") == NULL);
    CHECK_EQ_INT(seen_count(), 1);
    /* Retry-After in seconds, capped; the date form ignored. */
    r = one_simple(ws, "POST", url("/retry"), 1);
    CHECK_EQ_INT(r.status, 429);
    CHECK_EQ_INT(r.retry_after_ms, 7000);
    r = one_simple(ws, "POST", url("/retrylong"), 1);
    CHECK_EQ_INT(r.status, 503);
    CHECK_EQ_INT(r.retry_after_ms, WEBHOOK_RETRY_AFTER_MAX_MS);
    r = one_simple(ws, "POST", url("/retrydate"), 1);
    CHECK_EQ_INT(r.status, 503);
    CHECK_EQ_INT(r.retry_after_ms, -1);
    /* Control bytes and bytes that are not UTF-8 in the snippet. */
    r = one_simple(ws, "GET", url("/text"), 1);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_STR(r.snippet, "caf\xc3\xa9???? end");
    webhook_sender_stop(ws);
    server_reset();
}

static void test_big_body(void)
{
    struct webhook_sender *ws = start(3000, 4, 4, 8);
    struct webhook_result r;
    int64_t t0 = clock_mono_ms();

    r = one_simple(ws, "GET", url("/big"), 1);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_STR(r.error, "");
    CHECK_EQ_INT(strlen(r.snippet), WEBHOOK_SNIPPET_MAX);
    CHECK(strspn(r.snippet, "a") == 199 && r.snippet[199] == '?'); /* the cut 'é' */
    CHECK(clock_mono_ms() - t0 < 2000);
    webhook_sender_stop(ws);
    server_reset();
}

static void test_request_bytes(void)
{
    static const char body[] = "{\"a\":1}\0\x01\xff\xc3\xa9 end";
    const char *headers[] = {"X-Custom: abc def", "Authorization: Bearer t0k", "X-Empty:"};
    struct webhook_req r = {.id = 4242,
                            .method = "POST",
                            .url = url("/ok"),
                            .headers = headers,
                            .n_headers = 3,
                            .body = body,
                            .body_len = sizeof body - 1,
                            .attempt = 3,
                            .allow_private = 1};
    struct webhook_sender *ws = start(2000, 4, 4, 8);
    const struct seen *s;
    char v[256];

    CHECK_EQ_INT(one(ws, &r).status, 200);
    s = seen_path("/ok");
    CHECK(s != NULL);
    if (s) {
        CHECK_EQ_STR(s->method, "POST");
        CHECK_EQ_INT(s->body_len, sizeof body - 1);
        CHECK(s->body_len == sizeof body - 1 && memcmp(s->body, body, sizeof body - 1) == 0);
        CHECK_EQ_STR(header(s, "Sealpipe-Delivery", v, sizeof v), "4242");
        CHECK_EQ_STR(header(s, "Sealpipe-Attempt", v, sizeof v), "3");
        CHECK_EQ_STR(header(s, "Content-Type", v, sizeof v), "application/json");
        CHECK_EQ_STR(header(s, "User-Agent", v, sizeof v), "sealpipe-test/1");
        CHECK_EQ_STR(header(s, "X-Custom", v, sizeof v), "abc def");
        CHECK_EQ_STR(header(s, "Authorization", v, sizeof v), "Bearer t0k");
        CHECK_EQ_STR(header(s, "X-Empty", v, sizeof v), "");
        CHECK(header(s, "Expect", v, sizeof v) == NULL);
        CHECK(header(s, "Host", v, sizeof v) != NULL);
    }
    server_reset();

    /* The caller's Content-Type replaces the default; other methods carry the body. */
    const char *ct[] = {"content-type: text/plain"};
    const char *methods[] = {"PUT", "PATCH", "DELETE"};
    for (size_t i = 0; i < 3; i++) {
        r.method = methods[i];
        r.headers = ct;
        r.n_headers = 1;
        CHECK_EQ_INT(one(ws, &r).status, 200);
        s = seen_path("/ok");
        CHECK(s != NULL);
        if (!s)
            continue;
        CHECK_EQ_STR(s->method, methods[i]);
        CHECK(s->body_len == sizeof body - 1 && memcmp(s->body, body, sizeof body - 1) == 0);
        CHECK_EQ_STR(header(s, "Content-Type", v, sizeof v), "text/plain");
        CHECK(strstr(s->head, "application/json") == NULL);
        server_reset();
    }

    /* GET sends no body, whatever it was given, and no Content-Type. */
    r.method = "GET";
    r.headers = NULL;
    r.n_headers = 0;
    CHECK_EQ_INT(one(ws, &r).status, 200);
    s = seen_path("/ok");
    CHECK(s != NULL);
    if (s) {
        CHECK_EQ_STR(s->method, "GET");
        CHECK_EQ_INT(s->body_len, 0);
        CHECK(header(s, "Content-Length", v, sizeof v) == NULL ||
              strcmp(header(s, "Content-Length", v, sizeof v), "0") == 0);
        CHECK(header(s, "Content-Type", v, sizeof v) == NULL);
        CHECK_EQ_STR(header(s, "Sealpipe-Delivery", v, sizeof v), "4242");
    }
    webhook_sender_stop(ws);
    server_reset();
}

static void test_timeout_and_connect(void)
{
    struct webhook_sender *ws = start(300, 4, 4, 8);
    struct webhook_result r;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    char closed[64];
    int fd;

    r = one_simple(ws, "POST", url("/gate"), 1);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_STR(r.error, "timeout after 300 ms");
    CHECK(r.duration_ms >= 250 && r.duration_ms < 2000);
    server_reset();

    /* A port nobody listens on. */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
    close(fd);
    snprintf(closed, sizeof closed, "http://127.0.0.1:%d/ok", ntohs(a.sin_port));
    r = one_simple(ws, "POST", closed, 1);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_STR(r.error, "connect: Connection refused");
    CHECK_EQ_STR(r.snippet, "");
    webhook_sender_stop(ws);
}

static void test_private_guard(void)
{
    struct webhook_sender *ws = start(2000, 4, 4, 8);
    struct webhook_result r;
    char u[128];

    server_reset();
    r = one_simple(ws, "POST", url("/ok"), 0);
    CHECK_EQ_INT(r.status, 0);
    CHECK_EQ_STR(r.error, "refused: 127.0.0.1 resolves to a private address 127.0.0.1");
    snprintf(u, sizeof u, "http://localhost:%d/ok", srv.port);
    r = one_simple(ws, "POST", u, 0);
    CHECK_EQ_INT(r.status, 0);
    CHECK(strncmp(r.error, "refused: localhost resolves to a private address ", 49) == 0);
    CHECK(strcmp(r.error + 49, "::1") == 0 || strcmp(r.error + 49, "127.0.0.1") == 0);
    pthread_mutex_lock(&srv.mu);
    CHECK_EQ_INT(srv.n_conns, 0); /* not even a connection */
    pthread_mutex_unlock(&srv.mu);
    r = one_simple(ws, "POST", url("/ok"), 1);
    CHECK_EQ_INT(r.status, 200);
    r = one_simple(ws, "POST", u, 1);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(seen_count(), 2);
    webhook_sender_stop(ws);
    server_reset();
}

static void test_in_flight(void)
{
    struct webhook_sender *ws = start(5000, 4, 4, 16);
    struct webhook_result res[20];
    int ok = 0;

    for (int i = 0; i < 20; i++)
        CHECK_EQ_INT(submit(ws, i + 1, "POST", url("/gate"), "{}"), SP_OK);
    CHECK_EQ_INT(webhook_sender_busy(ws), 20);
    CHECK_EQ_INT(wait_at_least(&srv.active, 0, 4, 3000), 4);
    clock_sleep_ms(150); /* a fifth would have arrived by now */
    CHECK_EQ_INT(seen_count(), 4);
    gate_open();
    CHECK_EQ_INT(wait_results(ws, res, 20, 5000), 20);
    for (int i = 0; i < 20; i++)
        ok += res[i].status == 200;
    CHECK_EQ_INT(ok, 20);
    CHECK_EQ_INT(seen_count(), 20);
    pthread_mutex_lock(&srv.mu);
    CHECK_EQ_INT(srv.max_active, 4);
    pthread_mutex_unlock(&srv.mu);
    CHECK_EQ_INT(webhook_sender_busy(ws), 0);
    webhook_sender_stop(ws);
    server_reset();
}

/* Per host: two of 127.0.0.1 at once; the third waits while localhost's goes first. */
static void test_per_host(void)
{
    struct webhook_sender *ws = start(5000, 3, 2, 8);
    struct webhook_result res[6];
    char local[128], v[64];
    int by_ip = 0, by_name = 0;

    snprintf(local, sizeof local, "http://localhost:%d/gate", srv.port);
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(submit(ws, i + 1, "POST", url("/gate"), "{}"), SP_OK);
    CHECK_EQ_INT(submit(ws, 5, "POST", local, "{}"), SP_OK);
    CHECK_EQ_INT(submit(ws, 6, "POST", local, "{}"), SP_OK);
    CHECK_EQ_INT(wait_at_least(&srv.active, 0, 3, 3000), 3);
    clock_sleep_ms(150);
    pthread_mutex_lock(&srv.mu);
    CHECK_EQ_INT(srv.n_reqs, 3);
    for (size_t i = 0; i < srv.n_reqs; i++) {
        const char *h = header(&srv.reqs[i], "Host", v, sizeof v);
        by_ip += h && strncmp(h, "127.0.0.1:", 10) == 0;
        by_name += h && strncmp(h, "localhost:", 10) == 0;
    }
    pthread_mutex_unlock(&srv.mu);
    CHECK_EQ_INT(by_ip, 2);
    CHECK_EQ_INT(by_name, 1);
    gate_open();
    CHECK_EQ_INT(wait_results(ws, res, 6, 5000), 6);
    webhook_sender_stop(ws);
    server_reset();
}

static void test_full_and_invalid(void)
{
    struct webhook_sender *ws = start(5000, 1, 1, 2);
    struct webhook_result res[3];
    struct pollfd p = {.fd = webhook_sender_fd(ws), .events = POLLIN};
    const char *crlf[] = {"X-A: b\r\nHost: evil"}, *nocolon[] = {"X-A b"}, *host[] = {"Host: x"};
    const char *many[WEBHOOK_HEADERS_MAX + 1];
    struct webhook_req r = {.id = 1, .method = "POST", .url = "http://127.0.0.1:1/", .attempt = 1};

    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(submit(ws, i + 1, "POST", url("/gate"), "{}"), SP_OK);
    CHECK_EQ_INT(submit(ws, 4, "POST", url("/gate"), "{}"), SP_ERR_FULL);
    CHECK_EQ_INT(webhook_sender_busy(ws), 3);
    CHECK_EQ_INT(poll(&p, 1, 0), 0); /* nothing to take */
    CHECK_EQ_INT(webhook_sender_take(ws, res, 3), 0);

    CHECK_EQ_INT(submit(ws, 9, "HEAD", url("/ok"), NULL), SP_ERR_FULL); /* full comes first */
    gate_open();
    CHECK_EQ_INT(wait_results(ws, res, 3, 5000), 3);
    CHECK_EQ_INT(res[0].id, 1); /* FIFO */
    CHECK_EQ_INT(res[1].id, 2);
    CHECK_EQ_INT(res[2].id, 3);
    CHECK_EQ_INT(poll(&p, 1, 0), 0); /* all taken: not readable */
    CHECK_EQ_INT(webhook_sender_busy(ws), 0);

    CHECK_EQ_INT(submit(ws, 9, "HEAD", url("/ok"), NULL), SP_ERR_INVAL);
    CHECK_EQ_INT(submit(ws, 9, "post", url("/ok"), NULL), SP_ERR_INVAL);
    CHECK_EQ_INT(submit(ws, 9, "POST", "ftp://127.0.0.1/", NULL), SP_ERR_INVAL);
    CHECK_EQ_INT(submit(ws, 9, "POST", "http://u@127.0.0.1/", NULL), SP_ERR_INVAL);
    CHECK_EQ_INT(submit(ws, 9, "POST", NULL, NULL), SP_ERR_INVAL);
    r.headers = crlf;
    r.n_headers = 1;
    CHECK_EQ_INT(webhook_sender_submit(ws, &r), SP_ERR_INVAL);
    r.headers = nocolon;
    CHECK_EQ_INT(webhook_sender_submit(ws, &r), SP_ERR_INVAL);
    r.headers = host;
    CHECK_EQ_INT(webhook_sender_submit(ws, &r), SP_ERR_INVAL);
    for (int i = 0; i <= WEBHOOK_HEADERS_MAX; i++)
        many[i] = "X-A: b";
    r.headers = many;
    r.n_headers = WEBHOOK_HEADERS_MAX + 1;
    CHECK_EQ_INT(webhook_sender_submit(ws, &r), SP_ERR_INVAL);
    r.headers = NULL;
    r.n_headers = 0;
    r.body = "x";
    r.body_len = WEBHOOK_BODY_MAX + 1;
    CHECK_EQ_INT(webhook_sender_submit(ws, &r), SP_ERR_INVAL);
    CHECK_EQ_INT(webhook_sender_busy(ws), 0);
    webhook_sender_stop(ws);
    server_reset();

    struct webhook_sender *bad = NULL;
    struct webhook_sender_opts o = {.max_in_flight = WEBHOOK_IN_FLIGHT_LIMIT + 1};
    CHECK_EQ_INT(webhook_sender_start(&o, &bad), SP_ERR_INVAL);
    o = (struct webhook_sender_opts){.timeout_ms = -1};
    CHECK_EQ_INT(webhook_sender_start(&o, &bad), SP_ERR_INVAL);
    CHECK(bad == NULL);
    CHECK_EQ_INT(webhook_sender_start(NULL, &bad), SP_OK); /* all defaults */
    webhook_sender_stop(bad);
    webhook_sender_stop(NULL);
}

static void test_stop_in_flight(void)
{
    struct webhook_sender *ws = start(10000, 4, 4, 8);
    int64_t t0;

    for (int i = 0; i < 6; i++)
        CHECK_EQ_INT(submit(ws, i + 1, "POST", url("/gate"), "{}"), SP_OK);
    CHECK_EQ_INT(wait_at_least(&srv.active, 0, 4, 3000), 4);
    t0 = clock_mono_ms();
    webhook_sender_stop(ws);
    CHECK(clock_mono_ms() - t0 < 1000);
    server_reset();
}

/* What webhook_url_check accepts, libcurl reads as the same host. */
static void test_parsers_agree(void)
{
    static const char *urls[] = {
        "http://good.example/",          "HTTP://GOOD.EXAMPLE./x",
        "http://good.example?x@evil/",   "http://good.example#@evil/",
        "http://good.example:80/a\\b",   "https://good.example:0443/?a=b#c",
        "http://good.example/..%2f../x", "http://good.example/a@b:c",
    };
    const char *allow[] = {"good.example"};

    for (size_t i = 0; i < sizeof urls / sizeof urls[0]; i++) {
        CURLU *h = curl_url();
        char *host = NULL;

        CHECK_EQ_INT(webhook_url_check(urls[i], allow, 1, NULL, 0), SP_OK);
        CHECK_EQ_INT(curl_url_set(h, CURLUPART_URL, urls[i], 0), CURLUE_OK);
        CHECK_EQ_INT(curl_url_get(h, CURLUPART_HOST, &host, 0), CURLUE_OK);
        if (host) {
            for (char *c = host; *c; c++)
                *c = (char)tolower((unsigned char)*c);
            size_t n = strlen(host);
            if (n && host[n - 1] == '.')
                host[n - 1] = '\0';
            CHECK_EQ_STR(host, "good.example");
        }
        curl_free(host);
        curl_url_cleanup(h);
    }
}

int main(void)
{
    /* Proxies in the environment are not used: one here would fail every request. */
    setenv("http_proxy", "http://127.0.0.1:9", 1);
    setenv("HTTP_PROXY", "http://127.0.0.1:9", 1);
    setenv("ALL_PROXY", "http://127.0.0.1:9", 1);
    if (webhook_sender_global_init() != SP_OK || server_start() != 0) {
        fprintf(stderr, "cannot start libcurl or the test server\n");
        return 1;
    }
    RUN(test_statuses);
    RUN(test_big_body);
    RUN(test_request_bytes);
    RUN(test_timeout_and_connect);
    RUN(test_private_guard);
    RUN(test_in_flight);
    RUN(test_per_host);
    RUN(test_full_and_invalid);
    RUN(test_stop_in_flight);
    RUN(test_parsers_agree);
    server_stop();
    curl_global_cleanup();
    return check_done();
}
