/*
 * webhook_send.h - sends the HTTP requests of webhook() (rows of the
 * webhook outbox) and hands back what each one got: a status, or why there
 * was none. The only module that includes <curl/curl.h>.
 *
 * One thread drives a libcurl multi handle. The caller (the pipeline's
 * thread, between batches) submits requests, polls webhook_sender_fd and
 * takes the results; it decides what a result means (delete the row, retry,
 * dead-letter). Requests past max_in_flight, or past max_per_host for their
 * URL's host, wait inside the sender in the order submitted; past that a
 * bounded waiting room (max_waiting), then SP_ERR_FULL: the caller keeps the
 * request and submits it again later.
 *
 * Every transfer: no redirects followed (a 3xx is returned as its status),
 * http and https only, no proxy (the environment's included), the caller's
 * timeouts, the response body read up to WEBHOOK_RESPONSE_MAX bytes (the
 * transfer ends there, the status kept), and unless the request says
 * allow_private, no connection to an address webhook_addr_private refuses
 * (loopback, private, link-local, CGNAT, multicast, reserved...), whatever
 * the name resolves to (DNS rebinding).
 * Headers added to every request: Sealpipe-Delivery: <id>, Sealpipe-Attempt:
 * <attempt>, User-Agent, and Content-Type: application/json when the caller
 * gave none (GET sends no body and no Content-Type).
 *
 * Threads: submit, busy, take, fd and stop from one thread, the owner's (any
 * one, but not concurrently with stop). curl_global_init must have run
 * before any other thread of the process starts: main calls
 * webhook_sender_global_init first.
 */
#ifndef SP_WEBHOOK_SEND_H
#define SP_WEBHOOK_SEND_H

#include <stddef.h>
#include <stdint.h>

#ifndef WEBHOOK_RESPONSE_MAX
#define WEBHOOK_RESPONSE_MAX (64 * 1024) /* response body bytes read, then the transfer ends */
#endif
#define WEBHOOK_SNIPPET_MAX        200    /* of them kept in a result */
#define WEBHOOK_RETRY_AFTER_MAX_MS 600000 /* a longer Retry-After is cut to this */
#define WEBHOOK_IN_FLIGHT_LIMIT    256    /* largest max_in_flight */
#define WEBHOOK_WAITING_LIMIT      4096   /* largest max_waiting */

/* One request; borrowed by webhook_sender_submit, which copies it. */
struct webhook_req {
    int64_t id; /* the outbox row id; echoed in the result, sent as Sealpipe-Delivery */
    const char *method, *url;   /* webhook_method_check; an http(s) URL */
    const char *const *headers; /* "Name: value" lines, n_headers of them */
    size_t n_headers;           /* at most WEBHOOK_HEADERS_MAX */
    const void *body;           /* body_len bytes, any; ignored for GET */
    size_t body_len;            /* at most WEBHOOK_BODY_MAX */
    int attempt;                /* 1 for the first try; sent as Sealpipe-Attempt */
    int allow_private;          /* 1: the allow-list entry that matched is an IP
                                   literal or localhost (webhook_entry_is_literal) */
};

/* What one request got. */
struct webhook_result {
    int64_t id;
    int status; /* HTTP status, or 0 when there was no answer (error says why) */
    /* "" with an answer; else e.g. "timeout after 10000 ms", "connect:
     * Connection refused", "refused: db.example resolves to a private
     * address 10.0.0.5". */
    char error[160];
    /* The first bytes of the response body, up to WEBHOOK_SNIPPET_MAX: control
     * bytes and bytes that are not UTF-8 replaced by '?'. */
    char snippet[WEBHOOK_SNIPPET_MAX + 1];
    int64_t retry_after_ms; /* Retry-After in seconds (delta form only), at most
                               WEBHOOK_RETRY_AFTER_MAX_MS; -1 if none */
    int64_t duration_ms;    /* from the start of the transfer */
};

/* Zero fields take the default named. */
struct webhook_sender_opts {
    int64_t timeout_ms;         /* the whole request; 10000 */
    int64_t connect_timeout_ms; /* 5000 */
    int max_in_flight;          /* transfers at once, 1..WEBHOOK_IN_FLIGHT_LIMIT; 16 */
    int max_per_host;           /* of them to one URL host; 4 */
    int max_waiting;            /* requests held beyond those in flight; 64 */
    const char *user_agent;     /* copied; "sealpipe/<version>" */
};

struct webhook_sender;

/*
 * curl_global_init, once per process (later calls return the first one's
 * status). Call it from main before starting any thread; start calls it
 * too, for tests. Returns 0 or SP_ERR_IO.
 */
int webhook_sender_global_init(void) __attribute__((warn_unused_result));

/*
 * Starts the sender's thread. o may be NULL (all defaults). Returns 0 with
 * *out (stop it with webhook_sender_stop), SP_ERR_INVAL (a negative option,
 * one over its limit), SP_ERR_NOMEM or SP_ERR_IO (libcurl, eventfd or the
 * thread could not start).
 */
int webhook_sender_start(const struct webhook_sender_opts *o, struct webhook_sender **out)
    __attribute__((warn_unused_result));

/*
 * Queues one request (copies it). Returns 0; SP_ERR_FULL when
 * max_in_flight + max_waiting requests are submitted and not yet taken
 * back (the caller keeps r and tries later); SP_ERR_INVAL for a request the
 * sender will not send: a method webhook_method_check refuses, a URL
 * webhook_url_host cannot read, more than WEBHOOK_HEADERS_MAX header lines
 * or one webhook_header_check refuses, a body over WEBHOOK_BODY_MAX;
 * SP_ERR_NOMEM.
 */
int webhook_sender_submit(struct webhook_sender *ws, const struct webhook_req *r)
    __attribute__((warn_unused_result));

/* Requests submitted and not yet taken back as results. */
size_t webhook_sender_busy(const struct webhook_sender *ws);

/* Moves up to max finished results into out[0..max), oldest first; returns
 * how many. */
size_t webhook_sender_take(struct webhook_sender *ws, struct webhook_result *out, size_t max);

/* An eventfd that is readable while results wait to be taken; the caller
 * polls it, never reads it. Owned by the sender. */
int webhook_sender_fd(const struct webhook_sender *ws);

/*
 * Stops the thread and frees the sender: requests waiting or in flight are
 * abandoned (no result; a request may have reached its server), results not
 * taken are dropped. Returns within about a second. ws may be NULL.
 */
void webhook_sender_stop(struct webhook_sender *ws);

#endif
