/*
 * httpmap.h - the HTTP binding of TagoTiP (TagoTipServers.md §2) as pure
 * functions: which route a request takes, the hash of its Authorization
 * header, and the HTTP response an answer of the pipeline becomes (§2.5,
 * §2.6, §2.9). No sockets and no HTTP library: httpd.c calls these on
 * libmicrohttpd's thread, and the unit test and fuzz_http drive them alone.
 *
 *   POST /v1/tip/{serial}                 PUSH: "$tip/{serial}/push", the body
 *   GET  /v1/tip/{serial}?variables=a,b   PULL: "$tip/{serial}/pull", "a,b"
 *   HEAD /v1/tip/{serial}                 PING: "$tip/{serial}/ping", empty
 *   POST /v1/tips                         a TagoTiP/S envelope: "$tips"
 *
 * Every function is reentrant; none allocates.
 */
#ifndef SP_HTTPMAP_H
#define SP_HTTPMAP_H

#include <stddef.h>

#include "netq.h"
#include "sealpipe.h"

enum httpmap_kind { HTTPMAP_PUSH, HTTPMAP_PULL, HTTPMAP_PING, HTTPMAP_ENVELOPE };

/* Where a request goes. */
struct httpmap_route {
    int kind;                       /* enum httpmap_kind */
    char serial[SP_MAX_SERIAL + 1]; /* /v1/tip/{serial}; "" for /v1/tips */
};

/*
 * A response as the transport sends it. Text is borrowed: static strings,
 * or spans of the request's answers (valid as long as the request).
 */
struct httpmap_reply {
    unsigned status;  /* 200, 204, 400, ... */
    const char *type; /* Content-Type; NULL: none (a 204 has no body) */
    const char *body; /* len bytes; NULL when len is 0 */
    size_t len;
    const char *allow; /* the Allow header of a 405, else NULL */
    int retry_after;   /* seconds for Retry-After; 0: no header */
    size_t ncmds;      /* X-TagoTiP-CMD headers, one per pending command */
    struct sp_span cmds[NET_MAX_ANSWERS];
};

/* Answers made before the pipeline sees the request. */
enum httpmap_early {
    HTTPMAP_E_TOKEN,    /* no usable "Authorization: TagoTiP <hash>": 401 invalid_token */
    HTTPMAP_E_FULL,     /* the queue is full (SP_ERR_FULL): 429 rate_limited */
    HTTPMAP_E_TOOLARGE, /* past the transport's hard bound: 413 */
    HTTPMAP_E_NOMEM,    /* 500 server_error */
    HTTPMAP_E_STOPPING  /* the daemon is stopping (SP_ERR_STOPPING): 503 server_error,
                         * Retry-After, as a request the pipeline failed */
};

/*
 * Routes method and path (the URL's path without its query, percent-decoded
 * as libmicrohttpd passes it). Returns 0 and fills *route, or -1 and fills
 * *reply: 404 "not_found" for another path, 404 "device_not_found" for a
 * serial that breaks the serial rule (sp_serial_valid: this includes any
 * '/'), 405 "method_not_allowed" with Allow for another method.
 */
int httpmap_route(const char *method, const char *path, struct httpmap_route *route,
                  struct httpmap_reply *reply) __attribute__((warn_unused_result));

/*
 * The Authorization hash of an "Authorization: TagoTiP <hash>" header value
 * (NULL: no header): the scheme compared without case, then one or more
 * spaces, then the hash, trailing spaces ignored. The hash is taken as sent
 * (the pipeline checks it): 1 to cap - 1 printable characters without
 * spaces. Returns 0 and writes it NUL-terminated to out, or -1.
 */
int httpmap_auth(const char *header, char *out, size_t cap) __attribute__((warn_unused_result));

/*
 * The MQTT-style topic the pipeline routes on: "$tip/{serial}/push|pull|ping"
 * or "$tips". Returns its length, or -1 when it does not fit cap.
 */
int httpmap_topic(const struct httpmap_route *route, char *out, size_t cap)
    __attribute__((warn_unused_result));

/*
 * Percent-decodes s in place, for the URL's path and query arguments: every
 * "%HH" becomes its byte, except "%00", which stays as written (a NUL would
 * end the string early: "/v1/tip/a%00x" must not name device "a"), and so
 * does a '%' without two hex digits. Returns the new length; s stays
 * NUL-terminated and never grows.
 */
size_t httpmap_unescape(char *s);

/* The response to a request refused before the pipeline (enum httpmap_early). */
void httpmap_early(int kind, int early, struct httpmap_reply *reply);

/*
 * The response to a request the pipeline handed back (netq.h, req->result):
 *   NET_ACCEPTED           202 "accepted"
 *   NET_FAILED (or other)  503 "server_error" with Retry-After
 *   NET_ANSWERED, /v1/tip  answers[0] is "STATUS[|DETAIL]": OK -> 200 with
 *                          the detail (a count, or a PULL's "[list]"); PONG
 *                          -> 204, 200 when a command is attached; ERR ->
 *                          the code's status (httpmap_status), the code as
 *                          the body. answers[1..] "CMD|<command>" -> one
 *                          X-TagoTiP-CMD each.
 *   NET_ANSWERED, envelope a sealed ACK envelope -> 200 octet-stream; an
 *                          "ACK|ERR|code" fallback -> 400 text/plain with
 *                          that body (413 for envelope_too_large).
 * Returns 0, or -1 when answers[0] is not an answer of that form (the reply
 * is then 500 "server_error").
 */
int httpmap_answer(const struct net_req *r, int kind, struct httpmap_reply *reply);

/* The HTTP status of a TagoTiP error code (§2.5): 400 for one it does not list. */
unsigned httpmap_status(const char *code, size_t n);

#endif
