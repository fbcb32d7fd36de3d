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
 * Requests run on libmicrohttpd's threads; each is suspended while the
 * pipeline works on it and resumed by its done() callback.
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
};

struct httpd;

/* Starts the listeners. Returns 0, or SP_ERR_IO / SP_ERR_CONFIG with err. */
int httpd_start(const struct httpd_opts *o, struct netq *q, struct httpd **out, char *err,
                size_t errlen) __attribute__((warn_unused_result));
/* Stops listening, answers what done() gave back, closes every connection. */
void httpd_stop(struct httpd *h);

#endif
