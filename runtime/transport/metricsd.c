/*
 * metricsd.c - the metrics endpoint on libmicrohttpd (see metricsd.h).
 *
 * One libmicrohttpd daemon with its internal thread, a few connections:
 * a scrape is one small GET every few seconds. Each answer is the whole
 * text form, made on the request (metrics_format reads atomics, no lock
 * shared with the data path). What the endpoint relies on of the library
 * is what httpd.c relies on (docs/facts.md, "libmicrohttpd").
 */
#include "metricsd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/errors.h"
#include "base/log.h"
#include "base/metrics.h"

/*
 * Every client of a loopback endpoint comes from one address, so past the
 * per-address limit a connection is closed at once (docs/facts.md,
 * libmicrohttpd) rather than left in the kernel's backlog: a flood of idle
 * connections costs scrapes only while it lasts, not the minutes the library
 * would take to accept and time out a backlog of dead ones (review: 100 idle
 * connections kept /metrics down 30 s after they closed). Idle connections go
 * after METRICSD_TIMEOUT_S; a scraper sends its request at once.
 */
#define METRICSD_CONNECTIONS 64 /* at once, from every address */
#define METRICSD_PER_ADDRESS 32 /* from one address: past it, closed at once */
#define METRICSD_TIMEOUT_S   3  /* idle seconds before a close */
#define CONTENT_TYPE         "text/plain; version=0.0.4; charset=utf-8"

struct metricsd {
    struct MHD_Daemon *d;
    char addr_file[600];
};

/* A fixed short answer (404, 405) with a text body. */
static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, const char *text,
                                 const char *allow)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    enum MHD_Result rc;

    if (!resp)
        return MHD_NO;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain") != MHD_YES ||
        (allow && MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES)) {
        MHD_destroy_response(resp);
        return MHD_NO;
    }
    rc = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result send_metrics(struct MHD_Connection *conn)
{
    struct buf b;
    struct MHD_Response *resp;
    enum MHD_Result rc;

    buf_init(&b, METRICS_FORMAT_MAX);
    if (metrics_format(&b) != SP_OK) {
        buf_cleanup(&b);
        return send_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", NULL);
    }
    resp = MHD_create_response_from_buffer(b.len, b.p ? b.p : (char *)"", MHD_RESPMEM_MUST_COPY);
    buf_cleanup(&b);
    if (!resp)
        return MHD_NO;
    if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, CONTENT_TYPE) != MHD_YES) {
        MHD_destroy_response(resp);
        return MHD_NO;
    }
    rc = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return rc;
}

/*
 * Answers at the first call, before any body is read: a GET has none, and
 * a body sent with another method is discarded with the connection.
 */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **slot)
{
    (void)cls;
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)slot;
    if (strcmp(url, "/metrics") != 0)
        return send_text(conn, MHD_HTTP_NOT_FOUND, "not found: the metrics are at /metrics\n",
                         NULL);
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0)
        return send_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed: use GET\n", "GET");
    return send_metrics(conn);
}

int metricsd_is_loopback(const char *bind)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (inet_pton(AF_INET, bind, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, bind, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/* bind:port as a socket address; 0, or -1 when bind is not a numeric address. */
static int address(const char *bind, int port, struct sockaddr_storage *ss, int *v6)
{
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof *ss);
    *v6 = 0;
    if (inet_pton(AF_INET, bind, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)port);
        return 0;
    }
    if (inet_pton(AF_INET6, bind, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)port);
        *v6 = 1;
        return 0;
    }
    return -1;
}

/* Says where the endpoint listens, and which process it is (a daemon killed
 * with SIGKILL leaves the file): a temporary file renamed over addr_file. */
static int write_addr(const struct metricsd_opts *o, int v6, char *err, size_t errlen)
{
    char tmp[620];
    FILE *f;

    snprintf(tmp, sizeof tmp, "%s.tmp", o->addr_file);
    if (!(f = fopen(tmp, "w"))) {
        snprintf(err, errlen, "metrics: cannot write %s: %s", tmp, strerror(errno));
        return SP_ERR_IO;
    }
    fprintf(f, v6 ? "[%s]:%d\n%ld\n" : "%s:%d\n%ld\n", o->bind, o->port, (long)getpid());
    if (fclose(f) != 0 || rename(tmp, o->addr_file) != 0) {
        snprintf(err, errlen, "metrics: cannot write %s: %s", o->addr_file, strerror(errno));
        unlink(tmp);
        return SP_ERR_IO;
    }
    return SP_OK;
}

int metricsd_start(const struct metricsd_opts *o, struct metricsd **out, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    struct metricsd *m;
    unsigned flags = MHD_USE_AUTO_INTERNAL_THREAD;
    int v6;

    if (address(o->bind, o->port, &ss, &v6) != 0) {
        snprintf(err, errlen, "metrics_bind: '%s' is not a numeric IPv4 or IPv6 address", o->bind);
        return SP_ERR_CONFIG;
    }
    if (!(m = calloc(1, sizeof *m))) {
        snprintf(err, errlen, "metrics: out of memory");
        return SP_ERR_NOMEM;
    }
    snprintf(m->addr_file, sizeof m->addr_file, "%s", o->addr_file);
    m->d = MHD_start_daemon(
        flags | (v6 ? MHD_USE_IPv6 : 0), 0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, (unsigned)METRICSD_CONNECTIONS,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)METRICSD_PER_ADDRESS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)METRICSD_TIMEOUT_S, MHD_OPTION_END);
    if (!m->d) {
        snprintf(err, errlen, "metrics: cannot listen on %s:%d: %s", o->bind, o->port,
                 strerror(errno));
        free(m);
        return SP_ERR_IO;
    }
    if (write_addr(o, v6, err, errlen) != SP_OK) {
        MHD_stop_daemon(m->d);
        free(m);
        return SP_ERR_IO;
    }
    LOG_INFO("metrics listen=%s:%d path=/metrics", o->bind, o->port);
    if (!metricsd_is_loopback(o->bind))
        LOG_WARN("metrics: %s is not a loopback address: anyone who reaches it reads the "
                 "metrics (no authentication)",
                 o->bind);
    *out = m;
    return SP_OK;
}

void metricsd_stop(struct metricsd *m)
{
    if (!m)
        return;
    MHD_stop_daemon(m->d);
    unlink(m->addr_file);
    free(m);
}
