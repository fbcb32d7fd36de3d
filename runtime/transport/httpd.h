/*
 * httpd.h - the HTTP binding of TagoTiP (TagoTipServers.md §2): a
 * libmicrohttpd listener that turns each request into a struct net_req
 * (netq.h) and answers it once the pipeline has committed it.
 *
 *   POST /v1/tip/{serial}                  PUSH (body: a TagoTiP PUSH body)
 *   GET  /v1/tip/{serial}?variables=a,b    PULL
 *   HEAD /v1/tip/{serial}                  PING
 *   POST /v1/tips                          a TagoTiP/S envelope
 *
 * With an API (httpd_opts.api) the same listeners also serve /api/ and the
 * web console's files at / (httpd_api.c, its worker and the inspector's
 * streams in httpd_sse.c).
 *
 * Requests run on libmicrohttpd's threads (one per listener); each is
 * suspended while the pipeline works on it and resumed by its done()
 * callback, then answered by httpmap.c's mapping (§2.5, §2.6, §2.9).
 *
 * Limits per listener: 1024 connections, 32 from one address, 10 s of
 * inactivity until the headers are in and 30 s after, 32 KiB for the
 * request line and headers. A body is kept up to SP_LIMIT_PAYLOAD bytes and
 * submitted with its real size (the pipeline refuses it as too large); past
 * four times that the request is refused with 413 at once when its
 * Content-Length says so, and its connection closed otherwise.
 */
#ifndef SP_HTTPD_H
#define SP_HTTPD_H

#include <stddef.h>

#include "netq.h"

struct httpd_opts {
    const char *bind; /* listener address, e.g. "127.0.0.1" */
    int port;         /* plain HTTP; 0: none */
    int tls_port;     /* HTTPS with cert/key; 0: none */
    const char *cert; /* PEM files, for tls_port */
    const char *key;
    struct api *api;         /* answers /api/ (api/api.h) on both listeners, or NULL; and
                                serves the web console (api/console.h) at / */
    struct inspect *inspect; /* for GET /api/v1/inspector, or NULL */
};

struct httpd;
struct api;
struct inspect;

/*
 * Starts the listeners: plain HTTP on port, HTTPS on tls_port when cert and
 * key are set (their PEM files are read here; without them HTTPS is off and
 * a line says so). Logs one line per listener ("http listen=ADDR:PORT").
 * Requests go to q, which must outlive the listeners. Returns 0 and *out,
 * or SP_ERR_CONFIG (bad bind address, unreadable certificate or key),
 * SP_ERR_IO (cannot listen, or the certificate does not load) or
 * SP_ERR_NOMEM, with the reason in err.
 */
int httpd_start(const struct httpd_opts *o, struct netq *q, struct httpd **out, char *err,
                size_t errlen) __attribute__((warn_unused_result));
/*
 * Stops listening, sends the answers of the requests done() gave back
 * (waiting up to 3 s for them), closes every connection and frees h (NULL:
 * nothing). Call it after netq_close, so that every request has come back;
 * if one has not, the listener is left running (libmicrohttpd cannot stop
 * with a suspended connection) and an error is logged.
 */
void httpd_stop(struct httpd *h);

#endif
