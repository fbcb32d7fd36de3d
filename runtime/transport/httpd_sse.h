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

#define SSE_STREAMS_MAX  16   /* at once, of INSPECT_WATCHERS_MAX (the rest: sealpipe inspect) */
#define SSE_KEEPALIVE_MS 5000 /* also how soon a revoked token's stream ends */

struct inspect;
struct httpd_sse;

/* Starts the thread; a stream's token is checked with api_authorized(a, ...).
 * 0, or an error code. */
int httpd_sse_start(struct inspect *in, struct api *a, struct httpd_sse **out)
    __attribute__((warn_unused_result));
/*
 * A stream in two steps. httpd_sse_open, on the API's worker: takes a slot
 * and starts the watcher with its replay (which may copy megabytes: never on
 * a listener's thread). NULL with *why "too_many_watchers", "stopping" or
 * "nomem". Then, on the listener's thread, httpd_sse_response makes the
 * response for conn (queue it, then destroy it; NULL: out of memory, the
 * stream freed), or httpd_sse_discard frees a stream never answered.
 */
struct sse_stream;
struct sse_stream *httpd_sse_open(struct httpd_sse *s, const struct api_watch *w, const char *authz,
                                  const char **why);
struct MHD_Response *httpd_sse_response(struct sse_stream *st, struct MHD_Connection *conn);
void httpd_sse_discard(struct sse_stream *st);
/* Ends every stream: their readers end them and new ones are refused. Their
 * connections are resumed, so that libmicrohttpd may stop, and their last
 * chunks get up to a second to leave. */
void httpd_sse_end(struct httpd_sse *s);
/* Stops the thread and frees s; after the listeners stopped (no stream left). */
void httpd_sse_free(struct httpd_sse *s);

#endif
