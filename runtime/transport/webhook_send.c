/*
 * webhook_send.c - the webhook sender: one thread, one libcurl multi handle
 * (see webhook_send.h).
 *
 * A submitted request becomes a struct job (everything copied, its header
 * list built) and waits in a FIFO under the mutex. The thread loops: start
 * the waiting jobs that fit the limits (the first that fits, so a busy host
 * does not hold back the others), curl_multi_perform, turn the finished
 * transfers into results, curl_multi_poll. curl_multi_wakeup (from submit
 * and stop) ends the poll early. Results go to a ring under the mutex, sized
 * for every request that can be busy at once, and the eventfd is readable
 * while the ring is not empty.
 *
 * The thread alone touches the multi handle and the jobs in flight; the
 * owner's thread alone submits and takes.
 */
#include "webhook_send.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "base/clock.h"
#include "base/errors.h"
#include "base/webhook_url.h"
#include "sealpipe.h"
#include "sp_text.h"

/* The longest the thread sleeps in curl_multi_poll when nothing wakes it. */
#define POLL_MS 1000

struct job {
    struct job *next; /* in the waiting list, or in flight */
    int64_t id;
    int attempt, allow_private, is_get;
    const char *method; /* a literal: webhook_method_check passed */
    char *url;
    char host[WEBHOOK_HOST_LEN]; /* webhook_url_host: per-host count, messages */
    struct curl_slist *headers;
    unsigned char *body;
    size_t body_len;
    /* In flight. */
    CURL *easy;
    int64_t started_ms;
    size_t body_seen; /* response body bytes read */
    int cut;          /* ... past WEBHOOK_RESPONSE_MAX: the write callback ended it */
    char snippet[WEBHOOK_SNIPPET_MAX];
    size_t snippet_len;
    int64_t retry_after_ms;
    char refused[160]; /* the open-socket callback refused an address: why */
    char errbuf[CURL_ERROR_SIZE];
};

struct webhook_sender {
    struct webhook_sender_opts o;
    char *user_agent;
    CURLM *multi;
    pthread_t thread;
    int efd;            /* readable while results wait */
    pthread_mutex_t mu; /* guards the waiting list, the ring, busy and stopping */
    struct job *wait_head, *wait_tail;
    size_t busy; /* submitted, not taken */
    size_t cap;  /* max_in_flight + max_waiting: the most busy may be */
    struct webhook_result *ring;
    size_t ring_head, ring_n; /* ring[ring_head] is the oldest, ring_n of them */
    int stopping;
    int fresh; /* a job came since the thread last looked */
    /* The thread's. */
    struct job *flying;
    int n_flying;
};

/* ---- libcurl, once ------------------------------------------------------- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int webhook_sender_global_init(void)
{
    pthread_once(&global_once, global_init);
    return global_rc == CURLE_OK ? SP_OK : SP_ERR_IO;
}

/* ---- jobs ---------------------------------------------------------------- */

static void job_free(struct job *j)
{
    if (!j)
        return;
    if (j->easy)
        curl_easy_cleanup(j->easy);
    curl_slist_free_all(j->headers);
    free(j->url);
    free(j->body);
    free(j);
}

/* Appends line to j's header list; 0 or SP_ERR_NOMEM. */
static int job_add_header(struct job *j, const char *line)
{
    struct curl_slist *l = curl_slist_append(j->headers, line);

    if (!l)
        return SP_ERR_NOMEM;
    j->headers = l;
    return SP_OK;
}

/*
 * Adds the caller's "Name: value" line, checked as webhook() checks it. An
 * empty value is written "Name;", libcurl's way to send one ("Name:" alone
 * removes a header). Sets *content_type when it is one.
 */
static int job_add_caller_header(struct job *j, const char *line, int *content_type)
{
    char name[WEBHOOK_HEADER_NAME_MAX + 1], out[WEBHOOK_HEADER_NAME_MAX + 2];
    const char *colon = line ? strchr(line, ':') : NULL, *value;
    size_t n;

    if (!colon || (n = (size_t)(colon - line)) == 0 || n > WEBHOOK_HEADER_NAME_MAX)
        return SP_ERR_INVAL;
    memcpy(name, line, n);
    name[n] = '\0';
    for (value = colon + 1; *value == ' ' || *value == '\t'; value++)
        ;
    if (webhook_header_check(name, value, NULL, 0) != SP_OK)
        return SP_ERR_INVAL;
    if (strcasecmp(name, "Content-Type") == 0)
        *content_type = 1;
    if (*value)
        return job_add_header(j, line);
    snprintf(out, sizeof out, "%s;", name);
    return job_add_header(j, out);
}

/* The header list: the caller's lines, then the sender's. */
static int job_headers(struct job *j, const struct webhook_req *r)
{
    char line[64];
    int content_type = 0, rc;

    for (size_t i = 0; i < r->n_headers; i++)
        if ((rc = job_add_caller_header(j, r->headers[i], &content_type)) != SP_OK)
            return rc;
    snprintf(line, sizeof line, "Sealpipe-Delivery: %lld", (long long)r->id);
    if ((rc = job_add_header(j, line)) != SP_OK)
        return rc;
    snprintf(line, sizeof line, "Sealpipe-Attempt: %d", r->attempt);
    if ((rc = job_add_header(j, line)) != SP_OK)
        return rc;
    if (!content_type && !j->is_get &&
        (rc = job_add_header(j, "Content-Type: application/json")) != SP_OK)
        return rc;
    /* No "Expect: 100-continue" wait before a body over 1 KiB (docs/facts.md). */
    return job_add_header(j, "Expect:");
}

/* The literal of an allowed method, or NULL. */
static const char *method_literal(const char *m)
{
    static const char *const known[] = {"POST", "PUT", "PATCH", "DELETE", "GET"};

    if (webhook_method_check(m) != SP_OK)
        return NULL;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(m, known[i]) == 0)
            return known[i];
    return NULL;
}

/* A job copied from r; 0 with *out, SP_ERR_INVAL or SP_ERR_NOMEM. */
static int job_new(const struct webhook_req *r, struct job **out)
{
    struct job *j;
    int rc;

    if (!r || !r->url || r->n_headers > WEBHOOK_HEADERS_MAX || (r->n_headers && !r->headers) ||
        r->body_len > WEBHOOK_BODY_MAX || (r->body_len && !r->body))
        return SP_ERR_INVAL;
    if (!(j = calloc(1, sizeof *j)))
        return SP_ERR_NOMEM;
    j->id = r->id;
    j->attempt = r->attempt;
    j->allow_private = r->allow_private;
    j->retry_after_ms = -1;
    if (!(j->method = method_literal(r->method)) ||
        webhook_url_host(r->url, j->host, sizeof j->host) != SP_OK) {
        rc = SP_ERR_INVAL;
        goto fail;
    }
    j->is_get = strcmp(j->method, "GET") == 0;
    rc = SP_ERR_NOMEM;
    if (!(j->url = strdup(r->url)) || !(j->body = malloc(r->body_len ? r->body_len : 1)))
        goto fail;
    if (r->body_len && !j->is_get)
        memcpy(j->body, r->body, r->body_len);
    j->body_len = j->is_get ? 0 : r->body_len;
    if ((rc = job_headers(j, r)) != SP_OK)
        goto fail;
    *out = j;
    return SP_OK;
fail:
    job_free(j);
    return rc;
}

/* ---- the transfer's callbacks -------------------------------------------- */

/* Keeps the first bytes of the body; ends the transfer past the cap. */
static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct job *j = ud;
    size_t len = size * n, room = sizeof j->snippet - j->snippet_len;

    memcpy(j->snippet + j->snippet_len, p, len < room ? len : room);
    j->snippet_len += len < room ? len : room;
    j->body_seen += len;
    if (j->body_seen > WEBHOOK_RESPONSE_MAX) {
        j->cut = 1;
        return 0; /* CURLE_WRITE_ERROR: the status is kept (job_result) */
    }
    return len;
}

/*
 * Retry-After in its delta-seconds form; the HTTP-date form is ignored.
 * Each status line (a 100 Continue's too) starts the headers afresh.
 */
static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    static const char name[] = "Retry-After:";
    struct job *j = ud;
    size_t len = size * n, i = sizeof name - 1;
    int64_t s = 0;

    if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        j->retry_after_ms = -1;
        return len;
    }
    if (len < i || strncasecmp(p, name, i) != 0)
        return len;
    while (i < len && (p[i] == ' ' || p[i] == '\t'))
        i++;
    if (i == len || p[i] < '0' || p[i] > '9')
        return len;
    for (; i < len && p[i] >= '0' && p[i] <= '9'; i++)
        if (s <= WEBHOOK_RETRY_AFTER_MAX_MS / 1000)
            s = s * 10 + (p[i] - '0');
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    if (i == len)
        j->retry_after_ms =
            s > WEBHOOK_RETRY_AFTER_MAX_MS / 1000 ? WEBHOOK_RETRY_AFTER_MAX_MS : s * 1000;
    return len;
}

/* 1 if a is an address no name-based entry may reach (webhook_url.h). */
static int addr_private(const struct sockaddr *a)
{
    if (a->sa_family == AF_INET)
        return webhook_addr_private(4, &((const struct sockaddr_in *)a)->sin_addr);
    if (a->sa_family == AF_INET6)
        return webhook_addr_private(6, ((const struct sockaddr_in6 *)a)->sin6_addr.s6_addr);
    return 1;
}

/* The DNS-rebinding guard: libcurl asks for each address it tries. */
static curl_socket_t on_open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct job *j = ud;
    char text[INET6_ADDRSTRLEN] = "?";

    if (purpose != CURLSOCKTYPE_IPCXN)
        return CURL_SOCKET_BAD;
    if (!j->allow_private && addr_private(&a->addr)) {
        if (a->family == AF_INET)
            inet_ntop(AF_INET, &((struct sockaddr_in *)&a->addr)->sin_addr, text, sizeof text);
        else if (a->family == AF_INET6)
            inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&a->addr)->sin6_addr, text, sizeof text);
        /* A long name is cut so the address fits. */
        snprintf(j->refused, sizeof j->refused, "refused: %.64s resolves to a private address %s",
                 j->host, text);
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* ---- starting and finishing transfers ------------------------------------ */

/* The easy handle of j, added to the multi handle; 0 or -1. */
static int job_start(struct webhook_sender *ws, struct job *j)
{
    CURL *c = curl_easy_init();
    CURLcode e = CURLE_OK;

    if (!c)
        return -1;
    j->easy = c;
    j->started_ms = clock_mono_ms();
    /* Each setopt's failure is kept: one unknown option refuses the transfer. */
#define SET(opt, val) (e = e != CURLE_OK ? e : curl_easy_setopt(c, opt, val))
    SET(CURLOPT_URL, j->url);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_PROXY, ""); /* "" turns proxies off, the environment's too */
    SET(CURLOPT_TIMEOUT_MS, (long)ws->o.timeout_ms);
    SET(CURLOPT_CONNECTTIMEOUT_MS, (long)ws->o.connect_timeout_ms);
    /* A resolver thread still busy at a timeout is left to finish alone,
     * instead of this thread waiting for it (libcurl 7.87+). */
    SET(CURLOPT_QUICK_EXIT, 1L);
    SET(CURLOPT_USERAGENT, ws->user_agent);
    SET(CURLOPT_HTTPHEADER, j->headers);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, j);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, j);
    SET(CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
    SET(CURLOPT_OPENSOCKETDATA, j);
    SET(CURLOPT_ERRORBUFFER, j->errbuf);
    SET(CURLOPT_PRIVATE, j);
    if (j->is_get) {
        SET(CURLOPT_HTTPGET, 1L);
    } else {
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->body_len);
        SET(CURLOPT_POSTFIELDS, j->body);
        if (strcmp(j->method, "POST") != 0)
            SET(CURLOPT_CUSTOMREQUEST, j->method);
    }
#undef SET
    if (e != CURLE_OK || curl_multi_add_handle(ws->multi, c) != CURLM_OK)
        return -1;
    return 0;
}

/* Body bytes as text: control bytes and bytes that are not UTF-8 become '?'. */
static void snippet_copy(char *out, const char *in, size_t n)
{
    size_t i = 0, k;

    while (i < n) {
        const unsigned char *p = (const unsigned char *)in + i;
        k = sp__utf8_len(p, n - i);
        if (k == 0 || (k == 1 && (p[0] < 0x20 || p[0] == 0x7f))) {
            out[i++] = '?';
            continue;
        }
        memcpy(out + i, p, k);
        i += k;
    }
    out[n] = '\0';
}

/* Why a transfer that got no answer failed, in a line for operators. */
static void describe_error(const struct webhook_sender *ws, const struct job *j, CURLcode rc,
                           char *out, size_t cap)
{
    curl_off_t connected = 0;
    long os_errno = 0;
    char buf[128];

    switch (rc) {
    case CURLE_OK:
        snprintf(out, cap, "no HTTP status in the answer");
        return;
    case CURLE_OPERATION_TIMEDOUT:
        curl_easy_getinfo(j->easy, CURLINFO_CONNECT_TIME_T, &connected);
        if (connected == 0 && ws->o.connect_timeout_ms < ws->o.timeout_ms)
            snprintf(out, cap, "connect: timeout after %lld ms",
                     (long long)ws->o.connect_timeout_ms);
        else
            snprintf(out, cap, "timeout after %lld ms", (long long)ws->o.timeout_ms);
        return;
    case CURLE_COULDNT_CONNECT:
        curl_easy_getinfo(j->easy, CURLINFO_OS_ERRNO, &os_errno);
        if (j->refused[0])
            snprintf(out, cap, "%.150s", j->refused);
        else if (os_errno)
            snprintf(out, cap, "connect: %s", strerror_r((int)os_errno, buf, sizeof buf));
        else
            snprintf(out, cap, "connect: %.140s", j->errbuf[0] ? j->errbuf : "failed");
        return;
    case CURLE_COULDNT_RESOLVE_HOST:
        snprintf(out, cap, "resolve: cannot resolve host %.100s", j->host);
        return;
    case CURLE_OUT_OF_MEMORY:
        snprintf(out, cap, "out of memory");
        return;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
        snprintf(out, cap, "tls: %.140s", j->errbuf[0] ? j->errbuf : curl_easy_strerror(rc));
        return;
    default:
        snprintf(out, cap, "%.150s", j->errbuf[0] ? j->errbuf : curl_easy_strerror(rc));
    }
}

/* The result of a finished transfer. A body cut at the cap is an answer. */
static void job_result(const struct webhook_sender *ws, const struct job *j, CURLcode rc,
                       struct webhook_result *r)
{
    long status = 0;

    memset(r, 0, sizeof *r);
    r->id = j->id;
    r->retry_after_ms = -1;
    r->duration_ms = clock_mono_ms() - j->started_ms;
    if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && j->cut)) {
        curl_easy_getinfo(j->easy, CURLINFO_RESPONSE_CODE, &status);
        r->status = (int)status;
        r->retry_after_ms = j->retry_after_ms;
        snippet_copy(r->snippet, j->snippet, j->snippet_len);
        if (status > 0)
            return;
    }
    r->status = 0;
    describe_error(ws, j, rc, r->error, sizeof r->error);
}

/* Hands r to the owner: the ring has room for every busy request. */
static void post_result(struct webhook_sender *ws, const struct webhook_result *r)
{
    uint64_t one = 1;

    pthread_mutex_lock(&ws->mu);
    if (ws->ring_n < ws->cap) {
        ws->ring[(ws->ring_head + ws->ring_n) % ws->cap] = *r;
        ws->ring_n++;
        /* Fails only when the count is near 2^64: it is readable then. */
        ssize_t w = write(ws->efd, &one, sizeof one);
        (void)w;
    }
    pthread_mutex_unlock(&ws->mu);
}

/* Takes j out of the in-flight list (it is in it). */
static void unlink_flying(struct webhook_sender *ws, struct job *j)
{
    struct job **pp = &ws->flying;

    while (*pp != j)
        pp = &(*pp)->next;
    *pp = j->next;
    ws->n_flying--;
}

/* A job that could not start: a result saying why, and gone. */
static void job_fail(struct webhook_sender *ws, struct job *j, const char *why)
{
    struct webhook_result r = {.id = j->id, .retry_after_ms = -1};

    snprintf(r.error, sizeof r.error, "%s", why);
    if (j->easy)
        curl_multi_remove_handle(ws->multi, j->easy);
    unlink_flying(ws, j);
    post_result(ws, &r);
    job_free(j);
}

/* Results of the transfers that finished; returns how many. */
static int collect(struct webhook_sender *ws)
{
    struct webhook_result r;
    CURLMsg *m;
    int left, n = 0;

    while ((m = curl_multi_info_read(ws->multi, &left))) {
        struct job *j;
        char *priv = NULL;

        if (m->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
        j = (struct job *)priv;
        job_result(ws, j, m->data.result, &r);
        curl_multi_remove_handle(ws->multi, j->easy);
        unlink_flying(ws, j);
        post_result(ws, &r);
        job_free(j);
        n++;
    }
    return n;
}

/* Jobs in flight to host. */
static int host_flying(const struct webhook_sender *ws, const char *host)
{
    int n = 0;

    for (const struct job *j = ws->flying; j; j = j->next)
        n += strcmp(j->host, host) == 0;
    return n;
}

/*
 * Moves the waiting jobs that fit the limits into flight, in the order they
 * came; a job whose host is full is passed over, not waited for. Only when
 * something changed: a job came (ws->fresh) or one finished (finished).
 */
static void start_waiting(struct webhook_sender *ws, int finished)
{
    struct job **pp, *j, *next;

    pthread_mutex_lock(&ws->mu);
    if (!ws->fresh && !finished) {
        pthread_mutex_unlock(&ws->mu);
        return;
    }
    ws->fresh = 0;
    for (pp = &ws->wait_head; (j = *pp) && ws->n_flying < ws->o.max_in_flight;) {
        if (host_flying(ws, j->host) >= ws->o.max_per_host) {
            pp = &j->next;
            continue;
        }
        *pp = j->next;
        j->next = ws->flying;
        ws->flying = j;
        ws->n_flying++;
    }
    ws->wait_tail = NULL;
    for (j = ws->wait_head; j; j = j->next)
        ws->wait_tail = j;
    pthread_mutex_unlock(&ws->mu);
    /* The ones just moved have no easy handle yet. */
    for (j = ws->flying; j; j = next) {
        next = j->next;
        if (!j->easy && job_start(ws, j) != 0)
            job_fail(ws, j, "could not start the transfer (libcurl)");
    }
}

/* ---- the thread ---------------------------------------------------------- */

static int is_stopping(struct webhook_sender *ws)
{
    int s;

    pthread_mutex_lock(&ws->mu);
    s = ws->stopping;
    pthread_mutex_unlock(&ws->mu);
    return s;
}

static void *run(void *arg)
{
    struct webhook_sender *ws = arg;
    int running, finished = 0;

    while (!is_stopping(ws)) {
        start_waiting(ws, finished);
        curl_multi_perform(ws->multi, &running);
        finished = collect(ws);
        if (!finished)
            curl_multi_poll(ws->multi, NULL, 0, POLL_MS, NULL);
    }
    /* Abandoned: no result. */
    while (ws->flying) {
        struct job *j = ws->flying;
        curl_multi_remove_handle(ws->multi, j->easy);
        unlink_flying(ws, j);
        job_free(j);
    }
    return NULL;
}

/* ---- the owner's side ---------------------------------------------------- */

/* The options with their defaults; 0 or SP_ERR_INVAL. */
static int opts_fill(const struct webhook_sender_opts *in, struct webhook_sender_opts *o)
{
    *o = in ? *in : (struct webhook_sender_opts){0};
    if (o->timeout_ms < 0 || o->connect_timeout_ms < 0 || o->max_in_flight < 0 ||
        o->max_per_host < 0 || o->max_waiting < 0 || o->max_in_flight > WEBHOOK_IN_FLIGHT_LIMIT ||
        o->max_waiting > WEBHOOK_WAITING_LIMIT || o->timeout_ms > 86400000 ||
        o->connect_timeout_ms > 86400000)
        return SP_ERR_INVAL;
    if (!o->timeout_ms)
        o->timeout_ms = 10000;
    if (!o->connect_timeout_ms)
        o->connect_timeout_ms = 5000;
    if (!o->max_in_flight)
        o->max_in_flight = 16;
    if (!o->max_per_host)
        o->max_per_host = 4;
    if (!o->max_waiting)
        o->max_waiting = 64;
    if (!o->user_agent)
        o->user_agent = "sealpipe/" SP_VERSION_STRING;
    return SP_OK;
}

/* Frees what start made; the thread is not running. */
static void sender_free(struct webhook_sender *ws)
{
    struct job *j;

    while ((j = ws->wait_head)) {
        ws->wait_head = j->next;
        job_free(j);
    }
    if (ws->multi)
        curl_multi_cleanup(ws->multi);
    if (ws->efd >= 0)
        close(ws->efd);
    pthread_mutex_destroy(&ws->mu);
    free(ws->ring);
    free(ws->user_agent);
    free(ws);
}

int webhook_sender_start(const struct webhook_sender_opts *o, struct webhook_sender **out)
{
    struct webhook_sender *ws;
    int rc;

    if ((rc = webhook_sender_global_init()) != SP_OK)
        return rc;
    if (!(ws = calloc(1, sizeof *ws)))
        return SP_ERR_NOMEM;
    ws->efd = -1;
    pthread_mutex_init(&ws->mu, NULL);
    if ((rc = opts_fill(o, &ws->o)) != SP_OK)
        goto fail;
    ws->cap = (size_t)ws->o.max_in_flight + (size_t)ws->o.max_waiting;
    rc = SP_ERR_NOMEM;
    if (!(ws->ring = calloc(ws->cap, sizeof *ws->ring)) ||
        !(ws->user_agent = strdup(ws->o.user_agent)))
        goto fail;
    ws->o.user_agent = ws->user_agent;
    rc = SP_ERR_IO;
    if ((ws->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 || !(ws->multi = curl_multi_init()))
        goto fail;
    if (pthread_create(&ws->thread, NULL, run, ws) != 0)
        goto fail;
    *out = ws;
    return SP_OK;
fail:
    sender_free(ws);
    return rc;
}

/* 1 if one more request may be busy (the lock is held). */
static int has_room(const struct webhook_sender *ws)
{
    return ws->busy < ws->cap;
}

int webhook_sender_submit(struct webhook_sender *ws, const struct webhook_req *r)
{
    struct job *j;
    int rc, room;

    pthread_mutex_lock(&ws->mu);
    room = has_room(ws);
    pthread_mutex_unlock(&ws->mu);
    if (!room)
        return SP_ERR_FULL; /* before copying a body that would be thrown away */
    if ((rc = job_new(r, &j)) != SP_OK)
        return rc;
    pthread_mutex_lock(&ws->mu);
    if (!has_room(ws)) {
        pthread_mutex_unlock(&ws->mu);
        job_free(j);
        return SP_ERR_FULL;
    }
    if (ws->wait_tail)
        ws->wait_tail->next = j;
    else
        ws->wait_head = j;
    ws->wait_tail = j;
    ws->busy++;
    ws->fresh = 1;
    pthread_mutex_unlock(&ws->mu);
    curl_multi_wakeup(ws->multi);
    return SP_OK;
}

size_t webhook_sender_busy(const struct webhook_sender *ws)
{
    pthread_mutex_t *mu = (pthread_mutex_t *)&ws->mu; /* locking changes nothing seen */
    size_t n;

    pthread_mutex_lock(mu);
    n = ws->busy;
    pthread_mutex_unlock(mu);
    return n;
}

size_t webhook_sender_take(struct webhook_sender *ws, struct webhook_result *out, size_t max)
{
    uint64_t count;
    size_t n;

    pthread_mutex_lock(&ws->mu);
    for (n = 0; n < max && ws->ring_n > 0; n++) {
        out[n] = ws->ring[ws->ring_head];
        ws->ring_head = (ws->ring_head + 1) % ws->cap;
        ws->ring_n--;
        ws->busy--;
    }
    if (ws->ring_n == 0) {
        /* Zeroes the count (EAGAIN when it already is): not readable now. */
        ssize_t r = read(ws->efd, &count, sizeof count);
        (void)r;
    }
    pthread_mutex_unlock(&ws->mu);
    return n;
}

int webhook_sender_fd(const struct webhook_sender *ws)
{
    return ws->efd;
}

void webhook_sender_stop(struct webhook_sender *ws)
{
    if (!ws)
        return;
    pthread_mutex_lock(&ws->mu);
    ws->stopping = 1;
    pthread_mutex_unlock(&ws->mu);
    curl_multi_wakeup(ws->multi);
    pthread_join(ws->thread, NULL);
    sender_free(ws);
}
