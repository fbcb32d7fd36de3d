/*
 * httpd_sse.h - the Live Inspector as Server-Sent Events, for
 * GET /api/v1/inspector (api/api_inspector.c checks the request).
 *
 * A stream is a libmicrohttpd response whose content reader takes the
 * events of its inspector watcher (core/inspect.h) and sends each as
 *
 *   id: <seq>
 *   data: <the event's JSON line>
 *
 * (the markers {"kind":"live"} and {"kind":"dropped",...} without an id),
 * and a ": keep-alive" comment every SSE_KEEPALIVE_MS. With nothing to send
 * the reader suspends its connection; one thread, woken by the watchers'
 * eventfd, resumes them. A slow reader costs its own watcher's events
 * (counted in a "dropped" marker), never the daemon's time.
 *
 * A stream's token is checked again at every keep-alive: once it is revoked
 * (or expired) the stream sends {"kind":"ended","reason":"unauthorized"} and
 * ends, within SSE_KEEPALIVE_MS.
 */
#ifndef SP_HTTPD_SSE_H
#define SP_HTTPD_SSE_H

#include <microhttpd.h>

#include "api/api.h"

#define SSE_STREAMS_MAX  16    /* at once, of INSPECT_WATCHERS_MAX (the rest: sealpipe inspect) */
#define SSE_KEEPALIVE_MS 5000  /* also how soon a revoked token's stream ends */

struct inspect;
struct httpd_sse;

/* Starts the thread; a stream's token is checked with api_authorized(a, ...).
 * 0, or an error code. */
int httpd_sse_start(struct inspect *in, struct api *a, struct httpd_sse **out)
    __attribute__((warn_unused_result));
/* A response streaming what w asks, for conn, whose request carried authz
 * (queue it, then destroy it); NULL when SSE_STREAMS_MAX stream already, the
 * inspector has no watcher left, or memory is short. */
struct MHD_Response *httpd_sse_response(struct httpd_sse *s, struct MHD_Connection *conn,
                                        const struct api_watch *w, const char *authz);
/* Ends every stream: their readers end them and new ones are refused. Their
 * connections are resumed, so that libmicrohttpd may stop, and their last
 * chunks get up to a second to leave. */
void httpd_sse_end(struct httpd_sse *s);
/* Stops the thread and frees s; after the listeners stopped (no stream left). */
void httpd_sse_free(struct httpd_sse *s);

#endif
