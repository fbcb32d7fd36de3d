/*
 * net_http.c - the HTTP binding (TagoTipServers.md §2) for sealpipe-device,
 * over libcurl (the only file that includes <curl/curl.h>): POST, GET and
 * HEAD on /v1/tip/{serial} with "Authorization: TagoTiP <auth hash>", or an
 * envelope POSTed to /v1/tips; the response (status, body, X-TagoTiP-CMD
 * headers) is turned into the ACK frame lines every transport prints,
 * built with sp_tip_build_ack, and handed to link_take. One handle, so the
 * connection is kept across the requests of a push.
 */
#include "device.h"

#include <string.h>
#include <strings.h>

#include <curl/curl.h>

/* Room for a response body: a sealed ACK envelope or an ACK frame. */
#define HTTP_BODY_CAP SP_ENV_MAX_LEN
#define HTTP_MAX_CMDS 16

/* What one response brought, filled by the callbacks. */
struct http_rx {
    uint8_t body[HTTP_BODY_CAP];
    size_t len;
    int overflow;
    char cmds[HTTP_MAX_CMDS][SP_MAX_FRAME / HTTP_MAX_CMDS];
    int ncmds;
};

static struct http_rx rx;

static size_t http_on_body(char *p, size_t size, size_t n, void *ud)
{
    (void)ud;
    n *= size;
    if (n > sizeof(rx.body) - rx.len) {
        rx.overflow = 1;
        return 0; /* aborts the transfer */
    }
    memcpy(rx.body + rx.len, p, n);
    rx.len += n;
    return n;
}

/* Keeps the value of each X-TagoTiP-CMD header (§2.6). */
static size_t http_on_header(char *p, size_t size, size_t n, void *ud)
{
    static const char name[] = "X-TagoTiP-CMD:";
    size_t len = size * n;
    (void)ud;
    if (len > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1) == 0 &&
        rx.ncmds < HTTP_MAX_CMDS) {
        const char *v = p + sizeof(name) - 1, *end = p + len;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
            end--;
        snprintf(rx.cmds[rx.ncmds++], sizeof(rx.cmds[0]), "%.*s", (int)(end - v), v);
    }
    return len;
}

int http_open(struct link *l)
{
    const struct args *a = l->a;
    CURL *c;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || !(c = curl_easy_init()))
        return fail("http: cannot initialize libcurl");
    l->curl = c;
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)a->timeout_s);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)a->timeout_s);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, http_on_body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, http_on_header);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_USERAGENT, DEVICE_PROG "/" SP_VERSION_STRING);
    if (a->cafile)
        curl_easy_setopt(c, CURLOPT_CAINFO, a->cafile);
    return 0;
}

void http_close(struct link *l)
{
    if (l->curl) {
        curl_easy_cleanup(l->curl);
        curl_global_cleanup();
    }
    l->curl = NULL;
}

/* The URL of the request: /v1/tips, or /v1/tip/{serial}[?variables=a,b]. */
static void http_url(const struct link *l, const struct request *rq, char *url, size_t cap)
{
    const struct args *a = l->a;
    int n = snprintf(url, cap, "%s://%s", a->tls ? "https" : "http", l->where);
    if (rq->sealed)
        snprintf(url + n, cap - (size_t)n, "/v1/tips");
    else if (rq->method == SP_METHOD_PULL) /* names and commas need no escaping */
        snprintf(url + n, cap - (size_t)n, "/v1/tip/%s?variables=%.*s", a->serial, (int)rq->len,
                 (const char *)rq->bytes);
    else
        snprintf(url + n, cap - (size_t)n, "/v1/tip/%s", a->serial);
}

/* The headers of the request; NULL if out of memory. */
static struct curl_slist *http_headers(const struct link *l, const struct request *rq)
{
    struct curl_slist *h = NULL, *t;
    char auth[2 * SP_HASH_LEN + 1], line[64];
    const char *lines[3] = {"Expect:", NULL, NULL};

    if (rq->sealed) {
        lines[1] = "Content-Type: application/octet-stream";
    } else {
        if (sp_hex_encode(l->a->auth_hash, SP_HASH_LEN, auth, sizeof(auth)) != 0)
            return NULL;
        snprintf(line, sizeof(line), "Authorization: TagoTiP %s", auth);
        lines[1] = line;
        if (rq->method == SP_METHOD_PUSH)
            lines[2] = "Content-Type: text/plain";
    }
    for (int i = 0; i < 3 && lines[i]; i++) {
        if (!(t = curl_slist_append(h, lines[i]))) {
            curl_slist_free_all(h);
            return NULL;
        }
        h = t;
    }
    return h;
}

/* The TagoTiP error of an HTTP status (§2.5, §2.9), or NULL. */
static const char *http_error_code(long status)
{
    switch (status) {
    case 400:
        return "invalid_payload";
    case 401:
        return "invalid_token";
    case 404:
        return "device_not_found";
    case 413:
        return "payload_too_large";
    case 429:
        return "rate_limited";
    case 500:
        return "server_error";
    default:
        return NULL;
    }
}

/* Hands link_take the ACK frame line "ACK|status[|detail]". */
static int http_take_ack(struct link *l, const struct request *rq, int status, const char *detail,
                         size_t dlen)
{
    char line[SP_MAX_FRAME + 16];
    struct request plain = *rq;
    int n = sp_tip_build_ack(SP_ACK_FRAME, 0, 0, status, detail, dlen, line, sizeof(line));

    if (n < 0) {
        fail("http %ld from %s: the answer '%.*s' is not a TagoTiP %s", l->http_status, l->where,
             (int)(dlen > 80 ? 80 : dlen), detail, status == SP_ACK_ERR ? "error code" : "answer");
        return LINK_BAD;
    }
    plain.sealed = 0;
    return link_take(l, &plain, SP_ACK_FRAME, (const uint8_t *)line, (size_t)n);
}

/*
 * Reads the response of a plain request (§2.5, §2.6): the commands of the
 * X-TagoTiP-CMD headers, then 200 OK with the count or the variable list,
 * 204 (or a 200 without commands) to HEAD as PONG, an error status with its
 * code in the body. Returns the answer's status or LINK_BAD.
 */
static int http_answer(struct link *l, const struct request *rq)
{
    size_t n = rx.len;
    int st = LINK_MORE;

    while (n > 0 && (rx.body[n - 1] == '\n' || rx.body[n - 1] == '\r' || rx.body[n - 1] == ' '))
        n--;
    for (int i = 0; i < rx.ncmds; i++) {
        int r = http_take_ack(l, rq, SP_ACK_CMD, rx.cmds[i], strlen(rx.cmds[i]));
        if (r >= 0 && st < 0)
            st = r; /* a PING's pending command answers it */
    }
    if (rq->sealed && l->http_status == 200)
        return link_take(l, rq, SP_ACK_FRAME, rx.body, rx.len);
    if (rq->sealed && n > 0 && rx.body[0] == 'A') /* plaintext fallback, §2.9 */
        return link_take(l, rq, SP_ACK_FRAME, rx.body, n);
    if (l->http_status == 204 || (l->http_status == 200 && rq->method == SP_METHOD_PING))
        return st >= 0 ? st : http_take_ack(l, rq, SP_ACK_PONG, NULL, 0);
    if (l->http_status == 200)
        return http_take_ack(l, rq, SP_ACK_OK, (const char *)rx.body, n);
    const char *code = http_error_code(l->http_status);
    if (!code) {
        fail("http %ld from %s: not a TagoTiP answer", l->http_status, l->where);
        return LINK_BAD;
    }
    /* The body is the error code (§2.5); a server that sends none gets the status's. */
    if (n > 0 && n < 64 &&
        strspn((const char *)rx.body, "abcdefghijklmnopqrstuvwxyz0123456789_") == n)
        return http_take_ack(l, rq, SP_ACK_ERR, (const char *)rx.body, n);
    return http_take_ack(l, rq, SP_ACK_ERR, code, strlen(code));
}

int http_exchange(struct link *l, const struct request *rq)
{
    static char url[512 + SP_MAX_FRAME];
    CURL *c = l->curl;
    struct curl_slist *h = http_headers(l, rq);
    char err[CURL_ERROR_SIZE] = "";
    CURLcode rc;
    int st;

    if (!h)
        return fail("out of memory"), -1;
    http_url(l, rq, url, sizeof(url));
    memset(&rx, 0, sizeof(rx));
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
    if (rq->method == SP_METHOD_PING && !rq->sealed) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (rq->method == SP_METHOD_PULL && !rq->sealed) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, (const char *)rq->bytes);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)rq->len);
    }
    rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &l->http_status);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(h);
    if (rc != CURLE_OK) {
        fail("http %s: %s", l->where,
             rx.overflow ? "the answer is larger than any TagoTiP answer"
                         : (err[0] ? err : curl_easy_strerror(rc)));
        return -1;
    }
    st = http_answer(l, rq);
    return st < 0 ? -1 : st;
}
