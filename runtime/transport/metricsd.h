/*
 * metricsd.h - the metrics endpoint: `GET /metrics` in the Prometheus text
 * format 0.0.4 (base/metrics.h), on a libmicrohttpd listener of its own,
 * loopback by default (options metrics_port, metrics_bind).
 *
 *   GET /metrics     200, Content-Type: text/plain; version=0.0.4
 *   other methods    405 (Allow: GET)
 *   other paths      404
 *
 * There is no authentication: what it shows (counts, analysis names, dead
 * letter reasons) is for whoever can reach the address, so the default is
 * 127.0.0.1 and a non-loopback metrics_bind is the operator's explicit
 * choice (logged as a warning at start).
 *
 * Once listening it writes where, "ADDR:PORT\n" ("[ADDR]:PORT" for IPv6),
 * then the daemon's pid and a newline, to addr_file (a temporary file
 * renamed over it), which `sealpipe stats` reads; metricsd_stop removes the
 * file. A daemon killed with SIGKILL leaves it: the pid tells. Requests run on libmicrohttpd's
 * thread, which only reads the metrics.
 */
#ifndef SP_METRICSD_H
#define SP_METRICSD_H

#include <stddef.h>

struct metricsd_opts {
    const char *bind;      /* a numeric IPv4 or IPv6 address */
    int port;              /* > 0 */
    const char *addr_file; /* where to say where it listens */
};

struct metricsd;

/*
 * Starts the listener and writes addr_file. Returns 0 and *out, or
 * SP_ERR_CONFIG (bind is not a numeric address), SP_ERR_IO (cannot listen,
 * or addr_file cannot be written) or SP_ERR_NOMEM, with the reason in err.
 */
int metricsd_start(const struct metricsd_opts *o, struct metricsd **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Stops listening, removes addr_file and frees m (NULL: nothing). */
void metricsd_stop(struct metricsd *m);

/* 1 if the numeric address bind is a loopback one (127.0.0.0/8, ::1). */
int metricsd_is_loopback(const char *bind);

#endif
