/*
 * test_httpmap.c - the HTTP binding's pure half (runtime/transport/httpmap.c):
 * routes of TagoTipServers.md §2.1-§2.3 and §2.9, the Authorization header
 * of §2.2, and every row of the status tables of §2.5 and §2.9, from answers
 * written as the pipeline writes them.
 */
#include <string.h>

#include "check.h"
#include "transport/httpmap.h"

static struct httpmap_route route;
static struct httpmap_reply reply;

/* The body of reply as a string (bodies here are short). */
static const char *body(void)
{
    static char buf[256];
    size_t n = reply.len < sizeof buf - 1 ? reply.len : sizeof buf - 1;

    if (n)
        memcpy(buf, reply.body, n);
    buf[n] = '\0';
    return buf;
}

static void test_routes(void)
{
    char topic[200];

    CHECK_EQ_INT(httpmap_route("POST", "/v1/tip/sensor-01", &route, &reply), 0);
    CHECK_EQ_INT(route.kind, HTTPMAP_PUSH);
    CHECK_EQ_STR(route.serial, "sensor-01");
    CHECK_EQ_INT(httpmap_topic(&route, topic, sizeof topic), 19);
    CHECK_EQ_STR(topic, "$tip/sensor-01/push");
    CHECK_EQ_INT(httpmap_route("GET", "/v1/tip/weather-denver", &route, &reply), 0);
    CHECK_EQ_INT(route.kind, HTTPMAP_PULL);
    CHECK(httpmap_topic(&route, topic, sizeof topic) > 0);
    CHECK_EQ_STR(topic, "$tip/weather-denver/pull");
    CHECK_EQ_INT(httpmap_route("HEAD", "/v1/tip/sensor_01", &route, &reply), 0);
    CHECK_EQ_INT(route.kind, HTTPMAP_PING);
    CHECK(httpmap_topic(&route, topic, sizeof topic) > 0);
    CHECK_EQ_STR(topic, "$tip/sensor_01/ping");
    CHECK_EQ_INT(httpmap_topic(&route, topic, 10), -1);
    CHECK_EQ_INT(httpmap_route("POST", "/v1/tips", &route, &reply), 0);
    CHECK_EQ_INT(route.kind, HTTPMAP_ENVELOPE);
    CHECK(httpmap_topic(&route, topic, sizeof topic) > 0);
    CHECK_EQ_STR(topic, "$tips");
}

static void test_route_refusals(void)
{
    static const struct {
        const char *method, *path;
        unsigned status;
        const char *body, *allow;
    } cases[] = {
        {"POST", "/", 404, "not_found", NULL},
        {"POST", "/v1/tip", 404, "not_found", NULL},
        {"POST", "/v1/tipsy", 404, "not_found", NULL},
        {"POST", "/v1/tips/", 404, "not_found", NULL},
        {"POST", "/v2/tip/sensor-01", 404, "not_found", NULL},
        {"POST", "/v1/tip/", 404, "device_not_found", NULL},
        {"POST", "/v1/tip/a/b", 404, "device_not_found", NULL},
        {"POST", "/v1/tip/sensor-01/", 404, "device_not_found", NULL},
        {"GET", "/v1/tip/s.01", 404, "device_not_found", NULL},
        {"HEAD", "/v1/tip/s 01", 404, "device_not_found", NULL},
        {"PUT", "/v1/tip/sensor-01", 405, "method_not_allowed", "POST, GET, HEAD"},
        {"post", "/v1/tip/sensor-01", 405, "method_not_allowed", "POST, GET, HEAD"},
        {"DELETE", "/v1/tip/a/b", 405, "method_not_allowed", "POST, GET, HEAD"},
        {"GET", "/v1/tips", 405, "method_not_allowed", "POST"},
        {"HEAD", "/v1/tips", 405, "method_not_allowed", "POST"},
    };
    char longer[SP_MAX_SERIAL + 20];
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&reply, 0, sizeof reply);
        CHECK_EQ_INT(httpmap_route(cases[i].method, cases[i].path, &route, &reply), -1);
        CHECK_EQ_INT(reply.status, cases[i].status);
        CHECK_EQ_STR(body(), cases[i].body);
        CHECK_EQ_STR(reply.type, "text/plain");
        if (cases[i].allow)
            CHECK_EQ_STR(reply.allow, cases[i].allow);
        else
            CHECK(reply.allow == NULL);
    }
    /* The longest serial passes, one more character does not. */
    strcpy(longer, "/v1/tip/");
    memset(longer + 8, 'a', SP_MAX_SERIAL);
    longer[8 + SP_MAX_SERIAL] = '\0';
    CHECK_EQ_INT(httpmap_route("POST", longer, &route, &reply), 0);
    CHECK_EQ_INT(strlen(route.serial), SP_MAX_SERIAL);
    strcat(longer, "a");
    CHECK_EQ_INT(httpmap_route("POST", longer, &route, &reply), -1);
    CHECK_EQ_INT(reply.status, 404);
}

static void test_auth(void)
{
    static const struct {
        const char *header, *hash;
    } cases[] = {
        {"TagoTiP 4deedd7bab8817ec", "4deedd7bab8817ec"},
        {"tagotip  4deedd7bab8817ec ", "4deedd7bab8817ec"},
        {"TAGOTIP\t4deedd7bab8817ec", "4deedd7bab8817ec"},
        {"TagoTiP short", "short"}, /* as sent: the pipeline checks it */
        {NULL, NULL},
        {"", NULL},
        {"TagoTiP", NULL},
        {"TagoTiP ", NULL},
        {"TagoTiP4deedd7bab8817ec", NULL},
        {"Bearer 4deedd7bab8817ec", NULL},
        {"Basic dXNlcjpwYXNz", NULL},
        {"TagoTiP 4deedd7b ab8817ec", NULL},
        {"TagoTiP 4deedd7b\x01", NULL},
        {"TagoTiP 4deedd7bab8817ec\xc3\xa9", NULL},
    };
    char out[32];
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = httpmap_auth(cases[i].header, out, sizeof out);

        CHECK_EQ_INT(rc, cases[i].hash ? 0 : -1);
        if (cases[i].hash && rc == 0)
            CHECK_EQ_STR(out, cases[i].hash);
    }
    CHECK_EQ_INT(httpmap_auth("TagoTiP 4deedd7bab8817ec", out, 16), -1); /* no room for the NUL */
    CHECK_EQ_INT(httpmap_auth("TagoTiP 4deedd7bab8817ec", out, 17), 0);
}

/* A request handed back with the given answers. */
static struct net_req *answered(int result, const char *a0, const char *a1, const char *a2)
{
    static struct net_req r;
    const char *a[] = {a0, a1, a2};
    size_t i;

    memset(&r, 0, sizeof r);
    r.result = result;
    for (i = 0; i < 3 && a[i]; i++) {
        r.answers[i].data = (uint8_t *)(uintptr_t)a[i];
        r.answers[i].len = strlen(a[i]);
        r.nanswers++;
    }
    return &r;
}

/* §2.5: every row, from "STATUS[|DETAIL]" answers. */
static void test_tip_answers(void)
{
    static const struct {
        int kind;
        const char *answer;
        unsigned status;
        const char *body;
    } cases[] = {
        {HTTPMAP_PUSH, "OK|3", 200, "3"},
        {HTTPMAP_PULL, "OK|[temperature:=32#F@1694567890000;humidity:=65#%@1694567890000]", 200,
         "[temperature:=32#F@1694567890000;humidity:=65#%@1694567890000]"},
        {HTTPMAP_PING, "PONG", 204, ""},
        {HTTPMAP_PUSH, "ERR|invalid_payload", 400, "invalid_payload"},
        {HTTPMAP_PUSH, "ERR|invalid_token", 401, "invalid_token"},
        {HTTPMAP_PUSH, "ERR|device_not_found", 404, "device_not_found"},
        {HTTPMAP_PULL, "ERR|variable_not_found", 404, "variable_not_found"},
        {HTTPMAP_PUSH, "ERR|rate_limited", 429, "rate_limited"},
        {HTTPMAP_PUSH, "ERR|server_error", 500, "server_error"},
        {HTTPMAP_PUSH, "ERR|payload_too_large", 413, "payload_too_large"},
        {HTTPMAP_PUSH, "ERR|auth_failed", 400, "auth_failed"},
        {HTTPMAP_PUSH, "ERR|invalid_method", 400, "invalid_method"},
    };
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK_EQ_INT(httpmap_answer(answered(NET_ANSWERED, cases[i].answer, NULL, NULL),
                                    cases[i].kind, &reply),
                     0);
        CHECK_EQ_INT(reply.status, cases[i].status);
        CHECK_EQ_STR(body(), cases[i].body);
        CHECK_EQ_INT(reply.ncmds, 0);
        if (cases[i].status == 204)
            CHECK(reply.type == NULL);
        else
            CHECK_EQ_STR(reply.type, "text/plain");
    }
}

/* §2.6: pending commands, one header each; a PING with one is a 200. */
static void test_commands(void)
{
    CHECK_EQ_INT(httpmap_answer(answered(NET_ANSWERED, "PONG", "CMD|reboot",
                                         "CMD|ota=https://example.com/v2.1.bin"),
                                HTTPMAP_PING, &reply),
                 0);
    CHECK_EQ_INT(reply.status, 200);
    CHECK_EQ_INT(reply.ncmds, 2);
    CHECK(reply.cmds[0].n == 6 && memcmp(reply.cmds[0].p, "reboot", 6) == 0);
    CHECK(reply.cmds[1].n == 32 &&
          memcmp(reply.cmds[1].p, "ota=https://example.com/v2.1.bin", 32) == 0);
    CHECK_EQ_INT(
        httpmap_answer(answered(NET_ANSWERED, "OK|2", "CMD|reboot", NULL), HTTPMAP_PUSH, &reply),
        0);
    CHECK_EQ_INT(reply.status, 200);
    CHECK_EQ_STR(body(), "2");
    CHECK_EQ_INT(reply.ncmds, 1);
    /* A command never travels with a line break or with what is not a command. */
    CHECK_EQ_INT(httpmap_answer(answered(NET_ANSWERED, "PONG", "CMD|a\r\nX-Evil: 1", "OK|1"),
                                HTTPMAP_PING, &reply),
                 0);
    CHECK_EQ_INT(reply.status, 204);
    CHECK_EQ_INT(reply.ncmds, 0);
}

/* §2.9: sealed answers pass through; plaintext fallbacks are 400 or 413. */
static void test_envelope_answers(void)
{
    static const char sealed[] = "\x03\x00\x00\x00\x01sealed-bytes";
    static const struct {
        const char *answer;
        unsigned status;
    } fallbacks[] = {
        {"ACK|ERR|auth_failed", 400},
        {"ACK|ERR|unsupported_version", 400},
        {"ACK|ERR|unsupported_cipher", 400},
        {"ACK|ERR|envelope_too_large", 413},
    };
    struct net_req *r = answered(NET_ANSWERED, "x", NULL, NULL);
    size_t i;

    r->answers[0].data = (uint8_t *)(uintptr_t)sealed;
    r->answers[0].len = sizeof sealed - 1;
    CHECK_EQ_INT(httpmap_answer(r, HTTPMAP_ENVELOPE, &reply), 0);
    CHECK_EQ_INT(reply.status, 200);
    CHECK_EQ_STR(reply.type, "application/octet-stream");
    CHECK(reply.len == sizeof sealed - 1 && memcmp(reply.body, sealed, reply.len) == 0);
    for (i = 0; i < sizeof fallbacks / sizeof fallbacks[0]; i++) {
        CHECK_EQ_INT(httpmap_answer(answered(NET_ANSWERED, fallbacks[i].answer, NULL, NULL),
                                    HTTPMAP_ENVELOPE, &reply),
                     0);
        CHECK_EQ_INT(reply.status, fallbacks[i].status);
        CHECK_EQ_STR(reply.type, "text/plain");
        CHECK_EQ_STR(body(), fallbacks[i].answer);
    }
}

/* What the pipeline did not answer, and answers that are not answers. */
static void test_other_results(void)
{
    CHECK_EQ_INT(httpmap_answer(answered(NET_ACCEPTED, NULL, NULL, NULL), HTTPMAP_PUSH, &reply), 0);
    CHECK_EQ_INT(reply.status, 202);
    CHECK_EQ_STR(body(), "accepted");
    CHECK_EQ_INT(httpmap_answer(answered(NET_FAILED, NULL, NULL, NULL), HTTPMAP_PUSH, &reply), 0);
    CHECK_EQ_INT(reply.status, 503);
    CHECK_EQ_STR(body(), "server_error");
    CHECK(reply.retry_after > 0);
    CHECK_EQ_INT(httpmap_answer(answered(NET_FAILED, NULL, NULL, NULL), HTTPMAP_ENVELOPE, &reply),
                 0);
    CHECK_EQ_INT(reply.status, 503);
    CHECK_EQ_STR(body(), "ACK|ERR|server_error");
    CHECK_EQ_INT(httpmap_answer(answered(NET_ANSWERED, NULL, NULL, NULL), HTTPMAP_PUSH, &reply),
                 -1);
    CHECK_EQ_INT(reply.status, 500);
    CHECK_EQ_INT(
        httpmap_answer(answered(NET_ANSWERED, "CMD|reboot", NULL, NULL), HTTPMAP_PUSH, &reply), -1);
    CHECK_EQ_INT(reply.status, 500);
    CHECK_EQ_INT(
        httpmap_answer(answered(NET_ANSWERED, "ACK|OK|1", NULL, NULL), HTTPMAP_PUSH, &reply), -1);
    CHECK_EQ_INT(
        httpmap_answer(answered(NET_ANSWERED, "ACK|OK|1", NULL, NULL), HTTPMAP_ENVELOPE, &reply),
        -1);
    CHECK_EQ_INT(reply.status, 500);
    CHECK_EQ_STR(body(), "ACK|ERR|server_error");
}

static void test_early(void)
{
    static const struct {
        int early;
        unsigned status;
        const char *tip, *tips;
        int retry_after;
    } cases[] = {
        {HTTPMAP_E_TOKEN, 401, "invalid_token", "ACK|ERR|auth_failed", 0},
        {HTTPMAP_E_FULL, 429, "rate_limited", "ACK|ERR|rate_limited", 0},
        {HTTPMAP_E_TOOLARGE, 413, "payload_too_large", "ACK|ERR|envelope_too_large", 0},
        {HTTPMAP_E_NOMEM, 500, "server_error", "ACK|ERR|server_error", 0},
        /* The daemon is stopping (SP_ERR_STOPPING): nothing stored, retry later. */
        {HTTPMAP_E_STOPPING, 503, "server_error", "ACK|ERR|server_error", 5},
    };
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        httpmap_early(HTTPMAP_PUSH, cases[i].early, &reply);
        CHECK_EQ_INT(reply.status, cases[i].status);
        CHECK_EQ_STR(body(), cases[i].tip);
        CHECK_EQ_INT(reply.retry_after, cases[i].retry_after);
        httpmap_early(HTTPMAP_ENVELOPE, cases[i].early, &reply);
        CHECK_EQ_INT(reply.status, cases[i].status);
        CHECK_EQ_STR(body(), cases[i].tips);
        CHECK_EQ_INT(reply.retry_after, cases[i].retry_after);
    }
    CHECK_EQ_INT(httpmap_status("variable_not_found", 18), 404);
    CHECK_EQ_INT(httpmap_status("variable_not_foun", 17), 400);
}

/* The URL decoding libmicrohttpd calls: "%00" and broken escapes stay as written. */
static void test_unescape(void)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"/v1/tip/sensor-01", "/v1/tip/sensor-01"},
        {"/v1/tip/a%2Fb", "/v1/tip/a/b"},
        {"a%2cb%2Cc", "a,b,c"},
        {"/v1/tip/a%00x", "/v1/tip/a%00x"},
        {"%", "%"},
        {"%4", "%4"},
        {"%G1x", "%G1x"},
        {"%%41", "%A"},
        {"a+b", "a+b"},
        {"%e2%82%ac", "\xe2\x82\xac"},
        {"", ""},
    };
    char buf[64];
    size_t i;

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        strcpy(buf, cases[i].in);
        CHECK_EQ_INT(httpmap_unescape(buf), strlen(cases[i].out));
        CHECK_EQ_STR(buf, cases[i].out);
    }
    /* Decoded, "/v1/tip/a%00x" is no serial: 404, never device "a". */
    strcpy(buf, "/v1/tip/a%00x");
    httpmap_unescape(buf);
    CHECK_EQ_INT(httpmap_route("POST", buf, &route, &reply), -1);
    CHECK_EQ_INT(reply.status, 404);
}

int main(void)
{
    RUN(test_routes);
    RUN(test_route_refusals);
    RUN(test_auth);
    RUN(test_tip_answers);
    RUN(test_commands);
    RUN(test_envelope_answers);
    RUN(test_other_results);
    RUN(test_early);
    RUN(test_unescape);
    return check_done();
}
