/*
 * api.h - the daemon's HTTP API (issue #16): JSON under /api/v1/ on the
 * TagoTiP HTTP listeners, every request authenticated with an admin token
 * (`sealpipe admin token add`; registry_admin.c) sent as
 * "Authorization: Bearer <token>". docs/openapi.json describes every route.
 *
 * This part knows no HTTP library: transport/httpd.c hands it the method,
 * the path and the Authorization header, and sends the reply it makes. It
 * reads the registry and the buckets through a connection of its own, under
 * a mutex (each listener has its own thread). Errors are JSON too:
 * {"error":{"code":"...","message":"..."}}.
 */
#ifndef SP_API_H
#define SP_API_H

#include <stddef.h>

#include "base/buf.h"

struct api;

/* A reply: status, JSON body, and the Allow header of a 405 (or NULL). */
struct api_reply {
    unsigned status;
    struct buf body;
    const char *allow;
    const char *www_authenticate; /* of a 401, or NULL */
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

#endif
