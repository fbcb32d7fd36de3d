/*
 * api_internal.h - what the HTTP API's files share (api.h): the handle, the
 * JSON members every route writes, and the routes.
 *
 * A route writes its JSON into b and returns 0, or fails: SP_ERR_CONFIG
 * with err (400 bad_request), SP_ERR_NODEVICE (404 device_not_found),
 * SP_ERR_NOTFOUND with err (404 not_found), SP_ERR_INVAL with err (409
 * conflict), API_ERR_FORBIDDEN with err (403 forbidden), or another error
 * (503/500). api.c turns that into the reply.
 * Routes run under api.mu, on a listener's thread.
 */
#ifndef SP_API_INTERNAL_H
#define SP_API_INTERNAL_H

#include <pthread.h>
#include <stddef.h>

#include "api.h"
#include "base/arena.h"
#include "base/buf.h"
#include "storage/dataquery_args.h"

struct registry;
struct deadletters;

#define API_ERR_FORBIDDEN (-1000) /* beside base/errors.h's: a 403 with err */

struct api {
    pthread_mutex_t mu; /* guards everything below */
    char *data_dir;
    struct registry *reg;
    struct dataquery_db *data; /* sealpipe.db read-only, for the data routes */
    struct arena arena;        /* a request's, reset after it */
    struct dataquery_args dq;  /* a request's data query (10 KiB: not on the stack) */
};

/* A request as a route sees it. */
struct api_req {
    struct api *a;
    const char *id; /* the path's {serial} or {id}, without what follows */
    const struct api_param *params;
    size_t nparams;
    struct buf *b;           /* the reply's body */
    struct api_watch *watch; /* the reply's stream, for api__inspector */
    int perm;                /* the token's: TOKEN_FULL or TOKEN_READ */
    char err[512];
};

/* Members of an object: ,"key":value (first: without the comma). */
int api__put_str(struct buf *b, int first, const char *key, const char *s);
int api__put_int(struct buf *b, const char *key, long long v);
int api__put_time(struct buf *b, const char *key, long long ms); /* null for 0 */
int api__put_raw(struct buf *b, const char *key, const char *json);
/* The query parameters named in the NULL-ended list valid into values (in
 * its order; NULL: not given). 0, or SP_ERR_CONFIG with r->err for a
 * parameter not in the list, or given twice unless it is `repeatable` (whose
 * values the caller reads from r->params itself; may be NULL). */
int api__params(struct api_req *r, const char *const *valid, const char *repeatable,
                const char **values);
/* The same for a route that takes no parameter. */
int api__no_params(struct api_req *r);

/* api_devices.c */
int api__devices(struct api_req *r);
int api__device(struct api_req *r);
int api__data(struct api_req *r);
int api__latest(struct api_req *r);

/* api_metrics.c */
int api__metrics(struct api_req *r);

/* api_inspector.c */
int api__inspector(struct api_req *r);

/* api_deadletters.c */
int api__dead_letters(struct api_req *r);
int api__dead_letter(struct api_req *r);
int api__dead_letter_retry(struct api_req *r);

#endif
