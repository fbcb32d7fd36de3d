/*
 * httpd.c - the HTTP binding of TagoTiP on libmicrohttpd (see httpd.h); with
 * metricsd.c (the /metrics endpoint), the only files that include
 * <microhttpd.h>. What it relies on of the library
 * is in docs/facts.md, "libmicrohttpd".
 *
 * One libmicrohttpd daemon per listener (HTTP, HTTPS), each with one
 * internal polling thread. A request is read into a struct call: the route
 * and Authorization header at its first callback (a bad path, method,
 * credential or announced size is answered there and then), the body in the
 * callbacks that follow (at most SP_LIMIT_PAYLOAD bytes kept, the rest only
 * counted, and the connection closed past HARD_BOUND). Once it is complete
 * the connection is suspended and the request submitted to the netq; the
 * pipeline's thread calls call_done after the commit, which marks the call
 * and resumes the connection; libmicrohttpd then calls on_request again on
 * its own thread, which sends the answer (httpmap.c). The net_req is freed
 * when libmicrohttpd reports the request complete.
 *
 * Suspended connections do not time out and count against the connection
 * limit, so a stalled pipeline holds at most CONNECTIONS requests per
 * listener, each with at most SP_LIMIT_PAYLOAD bytes of body.
 *
 * Slow clients (docs/facts.md, "libmicrohttpd"): at most PER_IP connections
 * from one address (libmicrohttpd closes more at once), a connection whose
 * headers are not in yet closes after HEADER_TIMEOUT_S without a byte, one
 * whose request is being read or answered after TIMEOUT_S. libmicrohttpd's
 * own messages are logged at most LOG_BURST per LOG_WINDOW_MS per listener.
 */
#include "httpd.h"

#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/errors.h"
#include "base/log.h"
#include "base/sp_limits.h"
#include "httpd_api.h"
#include "httpmap.h"

#define CONNECTIONS      1024        /* per listener */
#define PER_IP           32          /* per listener and source address */
#define HEADER_TIMEOUT_S 10          /* idle seconds before a close, until the headers are in */
#define TIMEOUT_S        30          /* idle seconds before a close, from the headers on */
#define CONN_MEMORY      (32 * 1024) /* request line and headers */
#define LOG_BURST        10          /* libmicrohttpd messages per window, per listener */
#define LOG_WINDOW_MS    10000
#define HARD_BOUND       (4 * (uint64_t)SP_LIMIT_PAYLOAD) /* body bytes read at most */
#define PEM_MAX          (1024 * 1024)
#define STOP_WAIT_MS     3000 /* for answers still on their way out at shutdown */
#define AUTH_MAX         128

struct listener {
    struct httpd *h;
    const char *name; /* "http" or "https", for logs */
    struct MHD_Daemon *d;
    MHD_socket quiesced;      /* the listening socket after httpd_stop's quiesce */
    pthread_mutex_t log_lock; /* on_log's window, below */
    int log_ready;
    int64_t log_start;
    int log_n;
    uint64_t log_suppressed;
};

struct httpd {
    struct netq *q;
    struct httpd_api *ha; /* /api/ requests and the console, or NULL */
    struct listener l[2];
    char *cert, *key; /* PEM contents, for the HTTPS listener */
    size_t key_len;
    atomic_int waiting; /* submitted, call_done not called yet */
    atomic_int open;    /* submitted, not completed yet */
};

enum call_state { CALL_READING, CALL_QUEUED, CALL_BACK, CALL_REFUSED };

/* One TagoTiP request, from its headers until libmicrohttpd reports it
 * complete. */
struct call {
    enum httpd_slot kind; /* SLOT_TIP: first, as httpd_api.h says */
    struct listener *l;
    struct MHD_Connection *conn;
    struct httpmap_route route;
    char auth[AUTH_MAX];
    uint8_t *body; /* the first SP_LIMIT_PAYLOAD bytes */
    size_t len, cap;
    uint64_t total; /* bytes received */
    struct net_req *req;
    atomic_int state; /* enum call_state */
    int refused;      /* enum httpmap_early, in CALL_REFUSED */
};

/* ---- responses -------------------------------------------------------------- */

static int add_header(struct MHD_Response *resp, const char *name, const char *p, size_t n)
{
    char *v = malloc(n + 1);
    int ok;

    if (!v)
        return -1;
    memcpy(v, p, n);
    v[n] = '\0';
    ok = MHD_add_response_header(resp, name, v) == MHD_YES;
    free(v);
    return ok ? 0 : -1;
}

static int add_headers(struct MHD_Response *resp, const struct httpmap_reply *reply)
{
    char retry[16];
    size_t i;
    int rc = 0;

    if (reply->type)
        rc |= add_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, reply->type, strlen(reply->type));
    if (reply->allow)
        rc |= add_header(resp, MHD_HTTP_HEADER_ALLOW, reply->allow, strlen(reply->allow));
    if (reply->retry_after > 0) {
        snprintf(retry, sizeof retry, "%d", reply->retry_after);
        rc |= add_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry, strlen(retry));
    }
    for (i = 0; i < reply->ncmds; i++)
        rc |= add_header(resp, "X-TagoTiP-CMD", reply->cmds[i].p, reply->cmds[i].n);
    return rc;
}

static enum MHD_Result send_reply(struct listener *l, struct MHD_Connection *conn,
                                  const char *method, const char *url,
                                  const struct httpmap_reply *reply)
{
    struct MHD_Response *resp;
    enum MHD_Result rc;

    resp = MHD_create_response_from_buffer(reply->len, (void *)reply->body,
                                           reply->len ? MHD_RESPMEM_MUST_COPY
                                                      : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        LOG_WARN("%s response failed: out of memory", l->name);
        return MHD_NO;
    }
    if (add_headers(resp, reply) != 0)
        LOG_WARN("%s response header refused path=%s", l->name, url);
    rc = MHD_queue_response(conn, reply->status, resp);
    MHD_destroy_response(resp);
    LOG_DEBUG("%s request method=%s path=%s status=%u commands=%zu", l->name, method, url,
              reply->status, reply->ncmds);
    return rc;
}

static enum MHD_Result send_early(struct listener *l, struct MHD_Connection *conn,
                                  const char *method, const char *url, int kind, int early)
{
    struct httpmap_reply reply;

    httpmap_early(kind, early, &reply);
    return send_reply(l, conn, method, url, &reply);
}

/* ---- a request's life ---------------------------------------------------------- */

/* 1 when the announced Content-Length is past HARD_BOUND. */
static int announced_too_large(struct MHD_Connection *conn)
{
    const char *v =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    unsigned long long n;
    char *end;

    if (!v)
        return 0;
    errno = 0;
    n = strtoull(v, &end, 10);
    return errno != 0 || n > HARD_BOUND;
}

/* The first callback of a request: its headers are in. */
static enum MHD_Result call_begin(struct listener *l, struct MHD_Connection *conn, const char *url,
                                  const char *method, void **slot)
{
    struct httpmap_reply reply;
    struct httpmap_route route;
    const char *authz;
    struct call *c;

    if (httpd_api_owns(l->h->ha, url))
        return httpd_api_begin(l->h->ha, conn, method, url, slot);
    if (httpmap_route(method, url, &route, &reply) != 0)
        return send_reply(l, conn, method, url, &reply);
    c = calloc(1, sizeof *c);
    if (!c)
        return send_early(l, conn, method, url, route.kind, HTTPMAP_E_NOMEM);
    authz = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (route.kind != HTTPMAP_ENVELOPE && httpmap_auth(authz, c->auth, sizeof c->auth) != 0) {
        free(c);
        return send_early(l, conn, method, url, route.kind, HTTPMAP_E_TOKEN);
    }
    if (announced_too_large(conn)) {
        free(c);
        LOG_INFO("%s body refused path=%s reason=larger than %llu bytes", l->name, url,
                 (unsigned long long)HARD_BOUND);
        return send_early(l, conn, method, url, route.kind, HTTPMAP_E_TOOLARGE);
    }
    /* The headers are in: the request's body and answer get TIMEOUT_S. */
    (void)MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)TIMEOUT_S);
    c->kind = SLOT_TIP;
    c->l = l;
    c->conn = conn;
    c->route = route;
    atomic_init(&c->state, CALL_READING);
    *slot = c;
    return MHD_YES;
}

/* A part of the body: kept up to SP_LIMIT_PAYLOAD, counted up to HARD_BOUND. */
static int call_read(struct call *c, const char *data, size_t n)
{
    size_t keep;

    c->total += n;
    if (c->total > HARD_BOUND) {
        LOG_INFO("%s body refused reason=larger than %llu bytes: connection closed", c->l->name,
                 (unsigned long long)HARD_BOUND);
        return -1;
    }
    if (c->route.kind != HTTPMAP_PUSH && c->route.kind != HTTPMAP_ENVELOPE)
        return 0; /* GET and HEAD carry no body of TagoTiP's */
    keep = c->len < SP_LIMIT_PAYLOAD ? SP_LIMIT_PAYLOAD - c->len : 0;
    if (n < keep)
        keep = n;
    if (keep == 0)
        return 0;
    if (c->len + keep > c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 4096;
        uint8_t *p;

        while (cap < c->len + keep)
            cap *= 2;
        if (cap > SP_LIMIT_PAYLOAD)
            cap = SP_LIMIT_PAYLOAD;
        p = realloc(c->body, cap);
        if (!p)
            return -1;
        c->body = p;
        c->cap = cap;
    }
    memcpy(c->body + c->len, data, keep);
    c->len += keep;
    return 0;
}

/* netq.h's done(): the pipeline's thread. Marks the call and wakes its connection. */
static void call_done(struct net_req *r)
{
    struct call *c = r->conn;
    struct httpd *h = r->owner;

    atomic_store(&c->state, CALL_BACK);
    MHD_resume_connection(c->conn); /* c may be answered and freed from here on */
    atomic_fetch_sub(&h->waiting, 1);
}

/* The payload the pipeline gets: the body, a PULL's "variables", or nothing. */
static void call_payload(struct call *c, const char **p, size_t *n, size_t *full)
{
    *p = (const char *)c->body;
    *n = c->len;
    *full = (size_t)c->total;
    if (c->route.kind == HTTPMAP_PULL) {
        *p = NULL;
        *n = 0;
        (void)MHD_lookup_connection_value_n(c->conn, MHD_GET_ARGUMENT_KIND, "variables",
                                            strlen("variables"), p, n);
        if (!*p) /* no "variables", or no value: the pipeline answers it */
            *n = 0;
        *full = *n;
    } else if (c->route.kind == HTTPMAP_PING) {
        *n = *full = 0;
    }
}

/* The request is complete: hand it to the pipeline and suspend the connection. */
static enum MHD_Result call_submit(struct call *c, const char *method, const char *url)
{
    struct httpd *h = c->l->h;
    char topic[SP_MAX_SERIAL + 16];
    size_t n, full;
    const char *p;
    int binding = c->route.kind == HTTPMAP_ENVELOPE ? INGEST_ENVELOPE : INGEST_HTTP, rc;

    call_payload(c, &p, &n, &full);
    if (httpmap_topic(&c->route, topic, sizeof topic) < 0)
        return send_early(c->l, c->conn, method, url, c->route.kind, HTTPMAP_E_NOMEM);
    c->req = net_req_new("http", binding, topic, binding == INGEST_HTTP ? c->auth : NULL,
                         p ? p : "", n, full);
    free(c->body);
    c->body = NULL;
    c->len = c->cap = 0;
    if (!c->req)
        return send_early(c->l, c->conn, method, url, c->route.kind, HTTPMAP_E_NOMEM);
    c->req->commands = binding == INGEST_HTTP;
    c->req->done = call_done;
    c->req->owner = h;
    c->req->conn = c;
    atomic_store(&c->state, CALL_QUEUED);
    atomic_fetch_add(&h->waiting, 1);
    atomic_fetch_add(&h->open, 1);
    /* Suspended before the pipeline can see it, so that call_done's resume
     * always finds a suspended connection. */
    MHD_suspend_connection(c->conn);
    rc = netq_submit(h->q, c->req);
    if (rc != 0) {
        atomic_fetch_sub(&h->waiting, 1);
        atomic_fetch_sub(&h->open, 1);
        net_req_free(c->req);
        c->req = NULL;
        c->refused = rc == SP_ERR_STOPPING ? HTTPMAP_E_STOPPING : HTTPMAP_E_FULL;
        atomic_store(&c->state, CALL_REFUSED);
        MHD_resume_connection(c->conn);
    }
    return MHD_YES;
}

static enum MHD_Result call_answer(struct call *c, const char *method, const char *url)
{
    struct httpmap_reply reply;

    if (httpmap_answer(c->req, c->route.kind, &reply) != 0)
        LOG_WARN("%s answer not understood path=%s answers=%zu", c->l->name, url, c->req->nanswers);
    return send_reply(c->l, c->conn, method, url, &reply);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **slot)
{
    struct call *c = *slot;

    (void)version;
    if (!c)
        return call_begin(cls, conn, url, method, slot);
    if (c->kind == SLOT_API)
        return httpd_api_step(conn, method, url, upload_size, c);
    if (*upload_size > 0) {
        int rc = call_read(c, upload_data, *upload_size);

        *upload_size = 0;
        return rc == 0 ? MHD_YES : MHD_NO;
    }
    switch (atomic_load(&c->state)) {
    case CALL_READING:
        return call_submit(c, method, url);
    case CALL_BACK:
        return call_answer(c, method, url);
    case CALL_REFUSED:
        return send_early(c->l, conn, method, url, c->route.kind, c->refused);
    default:
        return MHD_YES; /* CALL_QUEUED: suspended, not called */
    }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **slot,
                         enum MHD_RequestTerminationCode toe)
{
    struct listener *l = cls;
    struct call *c = *slot;

    (void)conn;
    (void)toe;
    *slot = NULL;
    if (!c)
        return;
    if (c->kind == SLOT_API) {
        httpd_api_completed(c);
        return;
    }
    if (c->req) {
        if (atomic_load(&c->state) == CALL_QUEUED)
            LOG_ERROR("%s request closed while the pipeline holds it (leaked)", l->name);
        else
            net_req_free(c->req);
        atomic_fetch_sub(&l->h->open, 1);
    }
    free(c->body);
    free(c);
}

/* MHD_OPTION_UNESCAPE_CALLBACK: the URL's path and arguments, decoded by httpmap.c. */
static size_t on_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    /* An API path is left as sent: a serial or id holds no escape, and a
     * decoded %2F would be taken for a separator (review: /devices/x%2Fdata
     * read x's data). Its query parameters are decoded. */
    if (strncmp(s, "/api/", 5) == 0)
        return strlen(s);
    return httpmap_unescape(s);
}

/* 1 when a message of libmicrohttpd may be logged now (LOG_BURST per
 * LOG_WINDOW_MS); the first one of a window says how many the last one
 * left out. Any thread: libmicrohttpd may log from a resume. */
static int log_allowed(struct listener *l)
{
    int64_t now = clock_mono_ms();
    uint64_t left_out = 0;
    int ok;

    pthread_mutex_lock(&l->log_lock);
    if (now - l->log_start >= LOG_WINDOW_MS) {
        left_out = l->log_suppressed;
        l->log_start = now;
        l->log_n = 0;
        l->log_suppressed = 0;
    }
    ok = l->log_n < LOG_BURST;
    if (ok)
        l->log_n++;
    else
        l->log_suppressed++;
    pthread_mutex_unlock(&l->log_lock);
    if (left_out)
        LOG_WARN("%s library=libmicrohttpd messages_left_out=%llu window_ms=%d", l->name,
                 (unsigned long long)left_out, LOG_WINDOW_MS);
    return ok;
}

/* libmicrohttpd's own errors (MHD_USE_ERROR_LOG), one log line each, LOG_BURST
 * per LOG_WINDOW_MS (one line per refused connection would let a flood
 * flood the log too). */
static void on_log(void *cls, const char *fmt, va_list ap)
{
    struct listener *l = cls;
    char msg[512];
    size_t n;

    if (!log_allowed(l))
        return;
    vsnprintf(msg, sizeof msg, fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    LOG_WARN("%s library=libmicrohttpd msg=\"%s\"", l->name, msg);
}

/* ---- listeners ---------------------------------------------------------------- */

static int read_pem(const char *what, const char *path, char **out, size_t *len, char *err,
                    size_t errlen)
{
    struct stat st;
    char *buf = NULL;
    ssize_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0 || st.st_size > PEM_MAX)
        goto fail;
    buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        goto fail;
    while (got < st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)(st.st_size - got));

        if (r <= 0)
            goto fail;
        got += r;
    }
    buf[got] = '\0';
    close(fd);
    *out = buf;
    *len = (size_t)got;
    return 0;
fail:
    snprintf(err, errlen, "https: cannot read %s %s: %s", what, path,
             fd < 0 || errno ? strerror(errno) : "empty or larger than 1 MiB");
    if (buf) {
        sodium_memzero(buf, (size_t)st.st_size);
        free(buf);
    }
    if (fd >= 0)
        close(fd);
    return SP_ERR_CONFIG;
}

static int resolve(const char *bind, int port, struct sockaddr_storage *ss, int *v6, char *err,
                   size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    char svc[8];
    int rc;

    snprintf(svc, sizeof svc, "%d", port);
    rc = getaddrinfo(bind && *bind ? bind : NULL, svc, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "http: bind address '%s': %s", bind ? bind : "", gai_strerror(rc));
        return SP_ERR_CONFIG;
    }
    memset(ss, 0, sizeof *ss);
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return 0;
}

static int listener_start(struct httpd *h, struct listener *l, const char *name,
                          const struct httpd_opts *o, int port, int tls, char *err, size_t errlen)
{
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    struct sockaddr_storage ss;
    int v6, rc;

    rc = resolve(o->bind, port, &ss, &v6, err, errlen);
    if (rc != 0)
        return rc;
    if (v6)
        flags |= MHD_USE_IPv6;
    if (tls)
        flags |= MHD_USE_TLS;
    l->h = h;
    l->name = name;
    l->quiesced = MHD_INVALID_SOCKET;
    pthread_mutex_init(&l->log_lock, NULL);
    l->log_ready = 1;
    l->log_start = clock_mono_ms();
    /* The logger first, so that it gets every message; without TLS the list
     * ends at the first MHD_OPTION_END. */
    l->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, l, MHD_OPTION_EXTERNAL_LOGGER, on_log, l,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)CONNECTIONS, MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)PER_IP,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)HEADER_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, l, MHD_OPTION_UNESCAPE_CALLBACK, on_unescape, NULL,
        tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, h->cert, MHD_OPTION_HTTPS_MEM_KEY, h->key,
        MHD_OPTION_END);
    if (!l->d) {
        snprintf(err, errlen, "%s: cannot listen on %s:%d%s", name, o->bind, port,
                 tls ? " (or the certificate and key do not load)" : "");
        return SP_ERR_IO;
    }
    LOG_INFO("%s listen=%s:%d%s%s", name, o->bind, port, tls ? " cert=" : "", tls ? o->cert : "");
    return 0;
}

static int start_tls(struct httpd *h, const struct httpd_opts *o, char *err, size_t errlen)
{
    size_t n;
    int rc;

    if (!o->cert || !*o->cert || !o->key || !*o->key) {
        LOG_INFO("https off: no certificate (tls_cert, tls_key)");
        return 0;
    }
    rc = read_pem("tls_cert", o->cert, &h->cert, &n, err, errlen);
    if (rc == 0)
        rc = read_pem("tls_key", o->key, &h->key, &h->key_len, err, errlen);
    if (rc == 0)
        rc = listener_start(h, &h->l[1], "https", o, o->tls_port, 1, err, errlen);
    return rc;
}

static void httpd_free(struct httpd *h)
{
    int i;

    for (i = 0; i < 2; i++)
        if (h->l[i].log_ready)
            pthread_mutex_destroy(&h->l[i].log_lock);
    httpd_api_free(h->ha);
    free(h->cert);
    if (h->key) {
        sodium_memzero(h->key, h->key_len);
        free(h->key);
    }
    free(h);
}

int httpd_start(const struct httpd_opts *o, struct netq *q, struct httpd **out, char *err,
                size_t errlen)
{
    struct httpd *h = calloc(1, sizeof *h);
    int rc = 0;

    if (!h) {
        snprintf(err, errlen, "http: out of memory");
        return SP_ERR_NOMEM;
    }
    h->q = q;
    if (o->api && httpd_api_start(o->api, o->inspect, &h->ha) != 0) {
        snprintf(err, errlen, "http: cannot start the API's threads");
        free(h);
        return SP_ERR_NOMEM;
    }
    atomic_init(&h->waiting, 0);
    atomic_init(&h->open, 0);
    if (o->port > 0)
        rc = listener_start(h, &h->l[0], "http", o, o->port, 0, err, errlen);
    if (rc == 0 && o->tls_port > 0)
        rc = start_tls(h, o, err, errlen);
    if (rc != 0) {
        httpd_stop(h);
        return rc;
    }
    *out = h;
    return 0;
}

void httpd_stop(struct httpd *h)
{
    int i, waited;

    if (!h)
        return;
    for (i = 0; i < 2; i++)
        if (h->l[i].d)
            h->l[i].quiesced = MHD_quiesce_daemon(h->l[i].d);
    httpd_api_stop(h->ha); /* its requests answered, its streams ended */
    /* netq_close has called done() for every request: let their answers leave. */
    for (waited = 0; atomic_load(&h->open) > 0 && waited < STOP_WAIT_MS; waited += 10)
        clock_sleep_ms(10);
    if (atomic_load(&h->waiting) > 0) {
        /* libmicrohttpd cannot stop with suspended connections: leave it be. */
        LOG_ERROR("http stop: %d requests never came back from the pipeline",
                  atomic_load(&h->waiting));
        return;
    }
    for (i = 0; i < 2; i++) {
        if (h->l[i].d)
            MHD_stop_daemon(h->l[i].d);
        if (h->l[i].quiesced != MHD_INVALID_SOCKET && h->l[i].d)
            close(h->l[i].quiesced);
    }
    httpd_free(h);
}
