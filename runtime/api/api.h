/*
 * api.h - the daemon's HTTP API (issue #16): JSON under /api/v1/ on the
 * TagoTiP HTTP listeners, every request authenticated with an admin token
 * (`sealpipe admin token add`; registry_admin.c) sent as
 * "Authorization: Bearer <token>". docs/openapi.json describes every route.
 *
 * This part knows no HTTP library: transport/httpd.c hands it the method,
 * the path and the Authorization header, and sends the reply it makes. It
 * reads the registry and the buckets through a connection of its own, under
 * a mutex (httpd_api.c calls it from one worker thread of its own). Errors are JSON too:
 * {"error":{"code":"...","message":"..."}}.
 */
#ifndef SP_API_H
#define SP_API_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"

struct api;

/* What GET /api/v1/inspector asked to watch (core/inspect.h). */
struct api_watch {
    int on;           /* 1: the reply is this stream, not body */
    char device[128]; /* "" for every device */
    int64_t since_ms; /* replay the kept events this recent first; 0: none */
    int plaintext;    /* private fields too (a full token's) */
};

/* A reply: status, JSON body, and the Allow header of a 405 (or NULL); or,
 * with watch.on, the inspector's events as Server-Sent Events
 * (transport/httpd_sse.c streams them). */
struct api_reply {
    unsigned status;
    struct buf body;
    const char *allow;
    const char *www_authenticate; /* of a 401, or NULL */
    struct api_watch watch;
};

/* A query parameter of the request, decoded. */
struct api_param {
    const char *key, *value; /* value "" for ?key */
};

/* The most query parameters a request may have (a data query's variables). */
#define API_PARAMS_MAX 128

/* Opens the API's registry connection in data_dir. 0, or an error with err set. */
int api_open(const char *data_dir, struct api **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void api_close(struct api *a);

/* 1 when path is the API's (under /api/). */
int api_owns(const char *path);

/* Answers one request into *out (api_reply_free it). authz: the
 * Authorization header, or NULL; params: its query parameters, nparams
 * above API_PARAMS_MAX meaning "too many". Any thread. */
void api_handle(struct api *a, const char *method, const char *path, const char *authz,
                const struct api_param *params, size_t nparams, struct api_reply *out);
void api_reply_free(struct api_reply *r);
/* Whether authz still holds a valid token: 1, 0 (unknown, expired or
 * revoked), or -1 when the registry cannot tell. Any thread. */
int api_authorized(struct api *a, const char *authz);
/* Makes *r the JSON error {"error":{"code":code,"message":message}}. */
void api_reply_error(struct api_reply *r, unsigned status, const char *code, const char *message);

#endif
