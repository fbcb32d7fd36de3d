/*
 * fuzz_http.c - libFuzzer target for the HTTP binding's pure half
 * (runtime/transport/httpmap.c): routing a method and path, reading an
 * Authorization header, decoding a URL, and turning the pipeline's answers
 * into a response.
 *
 * Input: a selector byte (method, binding kind, request result), then up to
 * five '\n'-separated fields: path, Authorization value, answers[0..2]. Each
 * field is a heap copy of its size plus a NUL (path and header are C
 * strings), so AddressSanitizer sees a read past it.
 * Invariants: a route is a valid serial and a topic that fits; a refusal is
 * a 404 or a 405 with Allow; a hash is a non-empty run of printable
 * characters taken from the header; a response has a real status, a body
 * inside the answer or a static string, a 204 without body, and command
 * headers without a byte that could end a header line.
 */
#include "fuzz.h"
#include "transport/httpmap.h"

#include <string.h>

#define FIELDS 5

static const char *const methods[] = {"POST", "GET", "HEAD", "PUT", ""};

static void check_route(const char *method, const char *path)
{
    struct httpmap_route route;
    struct httpmap_reply reply;
    char topic[SP_MAX_SERIAL + 16];
    int n;

    if (httpmap_route(method, path, &route, &reply) != 0) {
        FUZZ_CHECK(reply.status == 404 || reply.status == 405);
        FUZZ_CHECK((reply.status == 405) == (reply.allow != NULL));
        FUZZ_CHECK(reply.len > 0 && reply.body != NULL);
        return;
    }
    n = httpmap_topic(&route, topic, sizeof topic);
    FUZZ_CHECK(n > 0 && (size_t)n == strlen(topic));
    if (route.kind == HTTPMAP_ENVELOPE) {
        FUZZ_CHECK(strcmp(topic, "$tips") == 0);
        return;
    }
    FUZZ_CHECK(sp_serial_valid(route.serial, strlen(route.serial)));
    FUZZ_CHECK(strncmp(topic, "$tip/", 5) == 0 && strchr(route.serial, '/') == NULL);
}

/* Decoding never grows the text, never makes a NUL, and changes nothing without a %. */
static void check_unescape(const char *in)
{
    size_t n = strlen(in), m;
    char *s = malloc(n + 1);

    FUZZ_CHECK(s != NULL);
    memcpy(s, in, n + 1);
    m = httpmap_unescape(s);
    FUZZ_CHECK(m <= n && strlen(s) == m);
    if (memchr(in, '%', n) == NULL)
        FUZZ_CHECK(m == n && memcmp(s, in, n) == 0);
    free(s);
}

static void check_auth(const char *header)
{
    char out[32];
    size_t i, n;

    if (httpmap_auth(header, out, sizeof out) != 0)
        return;
    n = strlen(out);
    FUZZ_CHECK(n > 0 && n < sizeof out && strstr(header, out) != NULL);
    for (i = 0; i < n; i++)
        FUZZ_CHECK(out[i] > ' ' && out[i] < 0x7f);
}

static int inside(const char *p, size_t n, const struct net_blob *b)
{
    return p >= (const char *)b->data && p + n <= (const char *)b->data + b->len;
}

static void check_answer(struct net_req *r, int kind)
{
    struct httpmap_reply reply;
    size_t i, j;

    (void)httpmap_answer(r, kind, &reply);
    FUZZ_CHECK(reply.status >= 200 && reply.status <= 599);
    FUZZ_CHECK(reply.len == 0 || reply.body != NULL);
    if (reply.status == 204)
        FUZZ_CHECK(reply.len == 0 && reply.type == NULL);
    FUZZ_CHECK(reply.ncmds <= (r->nanswers > 0 ? r->nanswers - 1 : 0));
    FUZZ_CHECK(kind != HTTPMAP_ENVELOPE || reply.ncmds == 0);
    if (reply.len > 0 && r->nanswers > 0 && reply.status != 202 && reply.status < 500)
        FUZZ_CHECK(inside(reply.body, reply.len, &r->answers[0]));
    for (i = 0; i < reply.ncmds; i++) {
        FUZZ_CHECK(reply.cmds[i].n > 0);
        for (j = 0; j < reply.cmds[i].n; j++)
            FUZZ_CHECK(reply.cmds[i].p[j] > ' ' && reply.cmds[i].p[j] < 0x7f);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int results[] = {NET_ANSWERED, NET_ANSWERED, NET_ACCEPTED, NET_FAILED};
    char *field[FIELDS] = {0};
    size_t len[FIELDS] = {0}, nfields = 0, start = 1, i;
    struct net_req r;
    uint8_t sel;

    if (size < 1)
        return 0;
    sel = data[0];
    for (i = 1; i <= size && nfields < FIELDS; i++) {
        if (i == size || data[i] == '\n') {
            len[nfields] = i - start;
            field[nfields] = malloc(len[nfields] + 1);
            FUZZ_CHECK(field[nfields] != NULL);
            memcpy(field[nfields], data + start, len[nfields]);
            field[nfields][len[nfields]] = '\0';
            nfields++;
            start = i + 1;
        }
    }
    check_unescape(nfields > 0 ? field[0] : "");
    check_route(methods[sel % 5], nfields > 0 ? field[0] : "");
    check_auth(nfields > 1 ? field[1] : "");
    memset(&r, 0, sizeof r);
    r.result = results[(sel >> 3) & 3];
    for (i = 2; i < nfields; i++) {
        r.answers[r.nanswers].data = (uint8_t *)field[i];
        r.answers[r.nanswers].len = len[i];
        r.nanswers++;
    }
    check_answer(&r, (sel >> 5) & 3);
    for (i = 0; i < nfields; i++)
        free(field[i]);
    return 0;
}
