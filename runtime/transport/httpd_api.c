/*
 * httpd_api.c - the HTTP API and the web console on the listeners
 * (httpd_api.h).
 *
 * A job lives from the request's headers to its completion: NEW while its
 * body (no route reads one) is dropped, QUEUED while suspended for the
 * worker, DONE once the worker made its reply and resumed it. The worker
 * never touches a job after resuming it: the listener's thread answers and
 * frees it from then on. Query parameters and headers stay in
 * libmicrohttpd's memory, untouched while the connection is suspended, so
 * the worker reads them there.
 */
#include "httpd_api.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "api/api.h"
#include "api/console.h"
#include "base/clock.h"
#include "base/errors.h"
#include "base/log.h"
#include "httpd_sse.h"

#define BODY_MAX     (64u * 1024) /* of a request's body (no route reads one), then 413 */
#define STOP_WAIT_MS 3000         /* at stop, for the answers of the jobs to leave */

enum job_state { JOB_NEW, JOB_QUEUED, JOB_DONE };

struct job {
    enum httpd_slot kind; /* SLOT_API: first, as httpd.c reads it */
    struct httpd_api *ha;
    const struct console_file *file; /* a console file's request, or NULL */
    struct MHD_Connection *conn;
    int fd; /* its socket: the worker skips a job whose client left */
    const char *method, *path, *authz;
    struct api_param params[API_PARAMS_MAX];
    size_t nparams; /* past API_PARAMS_MAX: only counted */
    uint64_t body;  /* bytes of body dropped */
    struct api_reply reply;
    struct sse_stream *stream; /* opened by the worker, until a response owns it */
    const char *stream_why;    /* why none could be opened */
    atomic_int state;
    int counted; /* in ha->open */
    int refused; /* answered at its first call */
    struct job *next;
};

struct httpd_api {
    struct api *api;
    struct httpd_sse *sse; /* NULL: no inspector */
    pthread_t worker;
    pthread_mutex_t mu; /* guards what follows */
    pthread_cond_t cond;
    struct job *head, *tail;
    int queued;
    int stopping;
    int joined;      /* the worker */
    atomic_int open; /* jobs queued, not completed yet */
};

/* ---- replies ---------------------------------------------------------------- */

static enum MHD_Result queue(struct MHD_Connection *conn, unsigned status,
                             struct MHD_Response *resp)
{
    enum MHD_Result rc;

    if (!resp)
        return MHD_NO; /* out of memory: the connection closes */
    rc = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static int add(struct MHD_Response *resp, const char *name, const char *value)
{
    return value && MHD_add_response_header(resp, name, value) != MHD_YES;
}

/* Makes j's reply, not made yet by the API, the JSON error code. */
static void job_error(struct job *j, unsigned status, const char *code, const char *message)
{
    buf_init(&j->reply.body, 4096);
    api_reply_error(&j->reply, status, code, message);
}

static enum MHD_Result send_json(struct job *j)
{
    struct api_reply *r = &j->reply;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(r->body.len, r->body.p, MHD_RESPMEM_MUST_COPY);

    if (resp && (add(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json") |
                 add(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") |
                 add(resp, "X-Content-Type-Options", "nosniff") |
                 add(resp, MHD_HTTP_HEADER_ALLOW, r->allow) |
                 add(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, r->www_authenticate)))
        LOG_WARN("api response header refused path=%s", j->path);
    LOG_DEBUG("api method=%s path=%s status=%u", j->method, j->path, r->status);
    return queue(j->conn, r->status, resp);
}

/* The inspector's stream the worker opened, or a JSON 503 when it could not. */
static enum MHD_Result send_stream(struct job *j)
{
    struct MHD_Response *resp = NULL;

    if (strcmp(j->method, "HEAD") == 0) {
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    } else if (j->stream) {
        resp = httpd_sse_response(j->stream, j->conn);
        j->stream = NULL; /* the response's, or freed */
    }
    if (!resp) {
        const char *why = j->stream_why ? j->stream_why : "nomem";

        api_reply_error(&j->reply, 503, strcmp(why, "nomem") == 0 ? "server_error" : why,
                        strcmp(why, "stopping") == 0 ? "the daemon is stopping"
                        : strcmp(why, "too_many_watchers") == 0
                            ? "the Live Inspector has no room for another watcher: close one"
                            : "out of memory");
        return send_json(j);
    }
    if (add(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream") |
        add(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") |
        add(resp, "X-Content-Type-Options", "nosniff") | add(resp, "X-Accel-Buffering", "no"))
        LOG_WARN("api response header refused path=%s", j->path);
    return queue(j->conn, MHD_HTTP_OK, resp);
}

static enum MHD_Result send_file(struct job *j)
{
    const struct console_file *f = j->file;
    struct MHD_Response *resp;

    if (strcmp(j->method, "GET") != 0 && strcmp(j->method, "HEAD") != 0) {
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (resp && add(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD"))
            LOG_WARN("console response header refused path=%s", j->path);
        return queue(j->conn, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
    }
    resp = MHD_create_response_from_buffer(f->len, (void *)f->data, MHD_RESPMEM_PERSISTENT);
    if (resp &&
        (add(resp, MHD_HTTP_HEADER_CONTENT_TYPE, console_type(f)) |
         add(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache") |
         add(resp, "Content-Security-Policy", CONSOLE_CSP) |
         add(resp, "X-Content-Type-Options", "nosniff") |
         add(resp, "Referrer-Policy", "no-referrer") | add(resp, "X-Frame-Options", "DENY")))
        LOG_WARN("console response header refused path=%s", j->path);
    return queue(j->conn, MHD_HTTP_OK, resp);
}

/* ---- the worker --------------------------------------------------------------- */

/* 1 when the client of j closed its connection while j waited: a FIN
 * (recv gives 0) or a reset. Data waiting (a pipelined request, TLS
 * records) counts as alive. */
static int client_left(const struct job *j)
{
    char c;
    ssize_t n;

    if (j->fd < 0)
        return 0;
    n = recv(j->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* The worker's part of j: its reply (and its stream, for the inspector). */
static void answer(struct httpd_api *ha, struct job *j, int stopping)
{
    if (stopping || client_left(j)) {
        job_error(j, 503, stopping ? "stopping" : "gone",
                  stopping ? "the daemon is stopping" : "the client left");
        if (!stopping)
            LOG_DEBUG("api request skipped path=%s: the client left", j->path);
        return;
    }
    api_handle(ha->api, j->method, j->path, j->authz, j->params, j->nparams, &j->reply);
    if (j->reply.watch.on && j->reply.status == MHD_HTTP_OK && strcmp(j->method, "HEAD") != 0) {
        j->stream_why = ha->sse ? NULL : "nomem";
        if (ha->sse)
            j->stream = httpd_sse_open(ha->sse, &j->reply.watch, j->authz, &j->stream_why);
    }
}

static void *work(void *arg)
{
    struct httpd_api *ha = arg;

    pthread_mutex_lock(&ha->mu);
    for (;;) {
        struct job *j;

        while (!ha->head && !ha->stopping)
            pthread_cond_wait(&ha->cond, &ha->mu);
        if (!(j = ha->head))
            break;
        if (!(ha->head = j->next))
            ha->tail = NULL;
        ha->queued--;
        int stopping = ha->stopping;
        pthread_mutex_unlock(&ha->mu);
        answer(ha, j, stopping);
        atomic_store(&j->state, JOB_DONE);
        MHD_resume_connection(j->conn); /* j is the listener's from here on */
        pthread_mutex_lock(&ha->mu);
    }
    pthread_mutex_unlock(&ha->mu);
    return NULL;
}

/* MHD_KeyValueIterator: one query parameter (decoded by libmicrohttpd). */
static enum MHD_Result on_param(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    struct job *j = cls;

    (void)kind;
    if (j->nparams < API_PARAMS_MAX)
        j->params[j->nparams] = (struct api_param){.key = key, .value = value ? value : ""};
    j->nparams++;
    return MHD_YES;
}

/* The request is in: suspend it and queue it for the worker, or answer 503. */
static enum MHD_Result submit(struct job *j)
{
    struct httpd_api *ha = j->ha;
    const char *why = NULL;

    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(j->conn, MHD_CONNECTION_INFO_CONNECTION_FD);

    j->fd = ci ? ci->connect_fd : -1;
    j->authz = MHD_lookup_connection_value(j->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    MHD_get_connection_values(j->conn, MHD_GET_ARGUMENT_KIND, on_param, j);
    pthread_mutex_lock(&ha->mu);
    if (ha->stopping) {
        why = "the daemon is stopping";
    } else if (ha->queued >= API_JOBS_MAX) {
        why = "too many API requests at once: try again";
    } else {
        atomic_store(&j->state, JOB_QUEUED);
        atomic_fetch_add(&ha->open, 1);
        j->counted = 1;
        MHD_suspend_connection(j->conn); /* before the worker can resume it */
        if (ha->tail)
            ha->tail->next = j;
        else
            ha->head = j;
        ha->tail = j;
        ha->queued++;
        pthread_cond_signal(&ha->cond);
    }
    pthread_mutex_unlock(&ha->mu);
    if (!why)
        return MHD_YES;
    job_error(j, 503, ha->stopping ? "stopping" : "busy", why);
    return send_json(j);
}

/* ---- a request's calls ------------------------------------------------------------ */

int httpd_api_owns(const struct httpd_api *ha, const char *path)
{
    return ha && (api_owns(path) || console_find(path));
}

/* 1 when the request announces a body past BODY_MAX. */
static int body_too_large(struct MHD_Connection *conn)
{
    const char *v =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    char *end;

    errno = 0;
    return v && (strtoull(v, &end, 10) > BODY_MAX || errno != 0);
}

enum MHD_Result httpd_api_begin(struct httpd_api *ha, struct MHD_Connection *conn,
                                const char *method, const char *path, void **slot)
{
    struct job *j = calloc(1, sizeof *j);

    if (!j)
        return MHD_NO;
    j->kind = SLOT_API;
    j->ha = ha;
    j->conn = conn;
    j->method = method;
    j->path = path;
    j->fd = -1;
    j->file = api_owns(path) ? NULL : console_find(path);
    atomic_init(&j->state, JOB_NEW);
    *slot = j;
    if (!body_too_large(conn))
        return MHD_YES;
    /* Answered now: libmicrohttpd then drops the body and closes. */
    job_error(j, 413, "payload_too_large", "no route reads a body this large");
    j->refused = 1;
    return send_json(j);
}

enum MHD_Result httpd_api_step(struct MHD_Connection *conn, const char *method, const char *path,
                               size_t *upload_size, void *slot)
{
    struct job *j = slot;

    if (j->refused)
        return MHD_YES; /* answered; the library drops the body */
    if (*upload_size > 0) {
        j->body += *upload_size;
        *upload_size = 0; /* no route reads a body */
        if (j->body > BODY_MAX) {
            LOG_INFO("api body refused path=%s: larger than %u bytes, connection closed", path,
                     BODY_MAX);
            return MHD_NO;
        }
        return MHD_YES;
    }
    j->conn = conn;
    j->method = method;
    j->path = path;
    if (j->file)
        return send_file(j);
    switch (atomic_load(&j->state)) {
    case JOB_NEW:
        return submit(j);
    case JOB_DONE:
        return j->reply.watch.on && j->reply.status == MHD_HTTP_OK ? send_stream(j) : send_json(j);
    default:
        return MHD_YES; /* JOB_QUEUED: suspended, not called */
    }
}

void httpd_api_completed(void *slot)
{
    struct job *j = slot;

    if (atomic_load(&j->state) == JOB_QUEUED) {
        LOG_ERROR("api request closed while the worker holds it (leaked)");
        return;
    }
    if (j->counted)
        atomic_fetch_sub(&j->ha->open, 1);
    httpd_sse_discard(j->stream);
    api_reply_free(&j->reply);
    free(j);
}

/* ---- start and stop ------------------------------------------------------------------- */

int httpd_api_start(struct api *a, struct inspect *in, struct httpd_api **out)
{
    struct httpd_api *ha = calloc(1, sizeof *ha);
    int rc = SP_ERR_NOMEM;

    if (!ha)
        return rc;
    ha->api = a;
    atomic_init(&ha->open, 0);
    pthread_mutex_init(&ha->mu, NULL);
    pthread_cond_init(&ha->cond, NULL);
    if ((in && (rc = httpd_sse_start(in, a, &ha->sse))) ||
        (rc = pthread_create(&ha->worker, NULL, work, ha) ? SP_ERR_IO : 0)) {
        httpd_sse_free(ha->sse);
        pthread_cond_destroy(&ha->cond);
        pthread_mutex_destroy(&ha->mu);
        free(ha);
        return rc;
    }
    *out = ha;
    return 0;
}

void httpd_api_stop(struct httpd_api *ha)
{
    if (!ha)
        return;
    pthread_mutex_lock(&ha->mu);
    ha->stopping = 1;
    pthread_cond_signal(&ha->cond);
    pthread_mutex_unlock(&ha->mu);
    if (!ha->joined)
        pthread_join(ha->worker, NULL);
    ha->joined = 1;
    httpd_sse_end(ha->sse);
    /* Every job is answered: let the answers leave before the listeners stop. */
    for (int waited = 0; atomic_load(&ha->open) > 0 && waited < STOP_WAIT_MS; waited += 10)
        clock_sleep_ms(10);
}

void httpd_api_free(struct httpd_api *ha)
{
    if (!ha)
        return;
    httpd_api_stop(ha);
    httpd_sse_free(ha->sse);
    pthread_cond_destroy(&ha->cond);
    pthread_mutex_destroy(&ha->mu);
    free(ha);
}
