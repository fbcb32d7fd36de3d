/*
 * httpd_api.h - the HTTP API (api/api.h) and the web console's files
 * (api/console.h) on httpd.c's listeners.
 *
 * An API request is answered by a worker thread of its own, so that a slow
 * query never holds a listener's thread, and TagoTiP over HTTP with it: at
 * the call after its headers its connection is suspended and the request
 * queued; the worker runs api_handle and resumes the connection; the call
 * that follows sends the reply, or starts the inspector's stream
 * (httpd_sse.h). At most API_JOBS_MAX wait; past that, 503 busy at once.
 * The worker skips a request whose client closed its connection while it
 * waited (503 gone, never read), so abandoned queries cost nothing. A body
 * (no route reads one) announced past 64 KiB is refused with 413, one sent
 * past it closes the connection. At stop, what waits is answered 503
 * stopping, and the answers get up to 3 s to leave.
 * A console file is answered on the listener's thread (it is in memory).
 */
#ifndef SP_HTTPD_API_H
#define SP_HTTPD_API_H

#include <microhttpd.h>

#define API_JOBS_MAX 64 /* requests queued for the worker */

/* The first member of what a request's slot points to: httpd.c's struct
 * call, or this file's job. */
enum httpd_slot { SLOT_TIP = 1, SLOT_API };

struct api;
struct inspect;
struct httpd_api;

/* Starts the worker (and the inspector's stream thread when in is set). */
int httpd_api_start(struct api *a, struct inspect *in, struct httpd_api **out)
    __attribute__((warn_unused_result));
/* 1 when a request for path is this file's (the API's, or a console file). */
int httpd_api_owns(const struct httpd_api *ha, const char *path);
/* A request's calls: the first (headers in; sets *slot), the ones after, and
 * its completion. */
enum MHD_Result httpd_api_begin(struct httpd_api *ha, struct MHD_Connection *conn,
                                const char *method, const char *path, void **slot);
enum MHD_Result httpd_api_step(struct MHD_Connection *conn, const char *method, const char *path,
                               size_t *upload_size, void *slot);
void httpd_api_completed(void *slot);
/* Answers what waits with 503 stopping, waits for the request being
 * answered, and ends the inspector's streams, so that libmicrohttpd may
 * stop. Then, after the listeners stopped, httpd_api_free. */
void httpd_api_stop(struct httpd_api *ha);
void httpd_api_free(struct httpd_api *ha);

#endif
