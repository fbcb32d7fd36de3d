/*
 * test_acl.c - the broker plugin's access decision (runtime/broker/plugin/acl.c),
 * as tables of cases: who asks (a username as the plugin gives it at login),
 * for what, under which options, and the rule that must decide. The world
 * the decision asks about is fixed below: profiles A and B, devices dev-a
 * and dev-b of A and dev-c of B, retained messages of A on ret/a and of B on
 * ret/b.
 */
#include <stdint.h>
#include <string.h>

#include "check.h"
#include "broker/plugin/acl.h"

#define A      "\x11\x11\x11\x11\x11\x11\x11\x11"
#define B      "\x22\x22\x22\x22\x22\x22\x22\x22"
#define CTX_A  "p:1111111111111111"
#define CTX_B  "p:2222222222222222"
#define DAEMON "sealpipe-daemon"

static const struct {
    const char *serial, *profile;
} devices[] = {{"dev-a", A}, {"dev-b", A}, {"dev-c", B}};

static const struct {
    const char *topic, *profile;
} retained[] = {{"ret/a", A}, {"ret/b", B}};

/* The profile the message being read came from, for this case (NULL: none). */
static const char *message_from;

static int device_profile(void *ctx, const char *serial, size_t n, uint8_t out[ACL_HASH_LEN])
{
    (void)ctx;
    for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++)
        if (strlen(devices[i].serial) == n && memcmp(devices[i].serial, serial, n) == 0) {
            memcpy(out, devices[i].profile, ACL_HASH_LEN);
            return 1;
        }
    return 0;
}

static int retained_profile(void *ctx, const char *topic, uint8_t out[ACL_HASH_LEN])
{
    (void)ctx;
    for (size_t i = 0; i < sizeof retained / sizeof retained[0]; i++)
        if (strcmp(retained[i].topic, topic) == 0) {
            memcpy(out, retained[i].profile, ACL_HASH_LEN);
            return 1;
        }
    return 0;
}

static int message_profile(void *ctx, uint8_t out[ACL_HASH_LEN])
{
    (void)ctx;
    if (!message_from)
        return 0;
    memcpy(out, message_from, ACL_HASH_LEN);
    return 1;
}

static char *default_filters[] = {"#"};
static char *pub_filters[] = {"devices/%s/up"};
static char *sub_filters[] = {"devices/%s/down", "public/#"};

/* Rule sets: the defaults, the defaults with cross_profile on, filters with %s. */
enum { DEF, CROSS, FILT };
static const struct acl_rules rule_sets[] = {
    [DEF] = {default_filters, 1, default_filters, 1, 0},
    [CROSS] = {default_filters, 1, default_filters, 1, 1},
    [FILT] = {pub_filters, 1, sub_filters, 2, 0},
};

enum { NO_SESSION, SESSION };
enum { PLAIN, RETAIN };
#define R ACL_READ
#define W ACL_WRITE
#define S ACL_SUBSCRIBE
#define U ACL_UNSUBSCRIBE
#define LONG_SERIAL                                                                                \
    "x123456789x123456789x123456789x123456789x123456789"                                           \
    "x123456789x123456789x123456789x123456789x123456789x"

struct acl_case {
    const char *user; /* username as given at login; NULL: none */
    int session;
    int rules;
    enum acl_access access;
    const char *topic;
    int retain;
    const char *from; /* READ: the message's profile, NULL: none known */
    enum acl_reason want;
};

static const struct acl_case cases[] = {
    /* The daemon reaches everything, with or without a session. */
    {DAEMON, SESSION, DEF, W, "$sealpipe/cmd", PLAIN, NULL, ACL_ALLOW_DAEMON},
    {DAEMON, NO_SESSION, DEF, W, "x/y", RETAIN, NULL, ACL_ALLOW_DAEMON},
    {DAEMON, SESSION, DEF, S, "#", PLAIN, NULL, ACL_ALLOW_DAEMON},
    {DAEMON, SESSION, DEF, R, "ret/b", PLAIN, A, ACL_ALLOW_DAEMON},
    /* Anyone else the plugin did not name. */
    {NULL, SESSION, DEF, R, "x", PLAIN, A, ACL_DENY_UNKNOWN},
    {"someone", SESSION, DEF, S, "x", PLAIN, NULL, ACL_DENY_UNKNOWN},
    {"someone", NO_SESSION, DEF, W, "x", PLAIN, NULL, ACL_DENY_WILL},
    /* Wills: a write without a session (revoked, removed, or disconnected). */
    {"d:0:dev-a", NO_SESSION, DEF, W, "$tip/dev-a/push", PLAIN, NULL, ACL_DENY_WILL},
    {"d:0:dev-a", NO_SESSION, DEF, W, "data/x", PLAIN, NULL, ACL_DENY_WILL},
    {CTX_A, NO_SESSION, DEF, W, "$tip/dev-a/push", PLAIN, NULL, ACL_DENY_WILL},
    {"d:0:dev-a", NO_SESSION, DEF, R, "$tip/dev-a/ack", PLAIN, NULL, ACL_ALLOW_TIP},
    /* A device's own TagoTiP topics, both bindings. */
    {"d:0:dev-a", SESSION, DEF, W, "$tip/dev-a/push", PLAIN, NULL, ACL_ALLOW_TIP},
    {"d:0:dev-a", SESSION, DEF, W, "$tip/dev-a/pull", PLAIN, NULL, ACL_ALLOW_TIP},
    {"d:0:dev-a", SESSION, DEF, W, "$tips/dev-a/push", PLAIN, NULL, ACL_ALLOW_TIP},
    {"d:0:dev-a", SESSION, DEF, S, "$tip/dev-a/ack", PLAIN, NULL, ACL_ALLOW_TIP},
    {"d:0:dev-a", SESSION, DEF, R, "$tips/dev-a/ack", PLAIN, NULL, ACL_ALLOW_TIP},
    {"d:0:dev-a", SESSION, DEF, W, "$tip/dev-a/ack", PLAIN, NULL, ACL_DENY_TIP_LEAF},
    {"d:0:dev-a", SESSION, DEF, S, "$tip/dev-a/push", PLAIN, NULL, ACL_DENY_TIP_LEAF},
    {"d:0:dev-a", SESSION, DEF, W, "$tip/dev-a/other", PLAIN, NULL, ACL_DENY_TIP_LEAF},
    {"d:0:dev-a", SESSION, DEF, S, "$tip/dev-a/+", PLAIN, NULL, ACL_DENY_TIP_LEAF},
    {"d:0:dev-a", SESSION, DEF, S, "$tip/dev-a/#", PLAIN, NULL, ACL_DENY_TIP_LEAF},
    /* Another device's, and wildcards over devices. */
    {"d:0:dev-a", SESSION, DEF, W, "$tip/dev-b/push", PLAIN, NULL, ACL_DENY_TIP_SERIAL},
    {"d:0:dev-a", SESSION, DEF, S, "$tip/dev-c/ack", PLAIN, NULL, ACL_DENY_TIP_SERIAL},
    {"d:0:dev-a", SESSION, DEF, R, "$tips/dev-b/ack", PLAIN, NULL, ACL_DENY_TIP_SERIAL},
    {"d:0:dev-a", SESSION, DEF, S, "$tip/+/ack", PLAIN, NULL, ACL_DENY_TIP_SERIAL},
    {"d:0:dev-a", SESSION, DEF, S, "$tip/#", PLAIN, NULL, ACL_DENY_RESERVED},
    {"d:0:dev-a", SESSION, DEF, W, "$tip/dev-a/push/x", PLAIN, NULL, ACL_DENY_RESERVED},
    {"d:0:dev-a", SESSION, DEF, W, "$tip//push", PLAIN, NULL, ACL_DENY_RESERVED},
    /* Token permissions: read may not write, write may not read. */
    {"d:2:dev-a", SESSION, DEF, W, "$tip/dev-a/push", PLAIN, NULL, ACL_DENY_PERM},
    {"d:2:dev-a", SESSION, DEF, W, "data/x", PLAIN, NULL, ACL_DENY_PERM},
    {"d:2:dev-a", SESSION, DEF, S, "$tip/dev-a/ack", PLAIN, NULL, ACL_ALLOW_TIP},
    {"d:1:dev-a", SESSION, DEF, W, "$tip/dev-a/push", PLAIN, NULL, ACL_ALLOW_TIP},
    {"d:1:dev-a", SESSION, DEF, S, "$tip/dev-a/ack", PLAIN, NULL, ACL_DENY_PERM},
    {"d:1:dev-a", SESSION, DEF, R, "data/x", PLAIN, A, ACL_DENY_PERM},
    {"d:1:dev-a", SESSION, DEF, U, "$tip/dev-a/ack", PLAIN, NULL, ACL_ALLOW_UNSUBSCRIBE},
    {"d:0:dev-a", SESSION, DEF, U, "$SYS/#", PLAIN, NULL, ACL_ALLOW_UNSUBSCRIBE},
    /* '$' topics other than the TagoTiP ones. */
    {"d:0:dev-a", SESSION, DEF, S, "$SYS/broker/uptime", PLAIN, NULL, ACL_DENY_RESERVED},
    {"d:0:dev-a", SESSION, DEF, W, "$sealpipe/x", PLAIN, NULL, ACL_DENY_RESERVED},
    {"d:0:dev-a", SESSION, CROSS, R, "$CONTROL/x", PLAIN, A, ACL_DENY_RESERVED},
    /* A profile context: the TagoTiP topics of its profile's devices and of
     * well-formed serials no device has, nothing else. */
    {CTX_A, SESSION, DEF, W, "$tip/dev-a/push", PLAIN, NULL, ACL_ALLOW_TIP},
    {CTX_A, SESSION, DEF, W, "$tips/dev-b/pull", PLAIN, NULL, ACL_ALLOW_TIP},
    {CTX_A, SESSION, DEF, S, "$tip/dev-b/ack", PLAIN, NULL, ACL_ALLOW_TIP},
    {CTX_A, SESSION, DEF, W, "$tip/new-serial/push", PLAIN, NULL, ACL_ALLOW_TIP},
    {CTX_A, SESSION, DEF, S, "$tip/new-serial/ack", PLAIN, NULL, ACL_ALLOW_TIP},
    {CTX_A, SESSION, DEF, W, "$tip/dev-c/push", PLAIN, NULL, ACL_DENY_TIP_SERIAL},
    {CTX_B, SESSION, DEF, R, "$tip/dev-a/ack", PLAIN, NULL, ACL_DENY_TIP_SERIAL},
    {CTX_B, SESSION, DEF, W, "$tip/dev-c/push", PLAIN, NULL, ACL_ALLOW_TIP},
    {CTX_A, SESSION, DEF, S, "$tip/+/ack", PLAIN, NULL, ACL_DENY_TIP_SERIAL},
    {CTX_A, SESSION, DEF, W, "$tip/bad.serial/push", PLAIN, NULL, ACL_DENY_TIP_SERIAL},
    {CTX_A, SESSION, DEF, W, "$tip/" LONG_SERIAL "/push", PLAIN, NULL, ACL_DENY_TIP_SERIAL},
    {CTX_A, SESSION, DEF, W, "$tip/dev-a/ack", PLAIN, NULL, ACL_DENY_TIP_LEAF},
    {CTX_A, SESSION, DEF, W, "data/x", PLAIN, NULL, ACL_DENY_CONTEXT},
    {CTX_A, SESSION, CROSS, S, "#", PLAIN, NULL, ACL_DENY_CONTEXT},
    {CTX_A, SESSION, DEF, S, "$SYS/#", PLAIN, NULL, ACL_DENY_RESERVED},
    {CTX_A, SESSION, DEF, U, "data/x", PLAIN, NULL, ACL_ALLOW_UNSUBSCRIBE},
    /* Other topics: the default filters ("#": anything not starting with '$'). */
    {"d:0:dev-a", SESSION, DEF, W, "data/x", PLAIN, NULL, ACL_ALLOW_FILTER},
    {"d:0:dev-a", SESSION, DEF, S, "#", PLAIN, NULL, ACL_ALLOW_FILTER},
    {"d:0:dev-a", SESSION, DEF, S, "+/x", PLAIN, NULL, ACL_ALLOW_FILTER},
    /* Profiles are namespaces: reads by the message's origin. */
    {"d:0:dev-a", SESSION, DEF, R, "data/x", PLAIN, A, ACL_ALLOW_FILTER},
    {"d:2:dev-b", SESSION, DEF, R, "data/x", PLAIN, A, ACL_ALLOW_FILTER},
    {"d:0:dev-a", SESSION, DEF, R, "data/x", PLAIN, B, ACL_DENY_ORIGIN},
    {"d:0:dev-c", SESSION, DEF, R, "data/x", PLAIN, A, ACL_DENY_ORIGIN},
    {"d:0:dev-a", SESSION, DEF, R, "data/x", PLAIN, NULL, ACL_DENY_ORIGIN},
    {"d:0:gone", SESSION, DEF, R, "data/x", PLAIN, A, ACL_DENY_ORIGIN},
    {"d:0:dev-a", SESSION, CROSS, R, "data/x", PLAIN, B, ACL_ALLOW_FILTER},
    {"d:0:dev-a", SESSION, CROSS, R, "data/x", PLAIN, NULL, ACL_ALLOW_FILTER},
    /* Retained messages belong to the profile that retained them. */
    {"d:0:dev-a", SESSION, DEF, W, "ret/a", RETAIN, NULL, ACL_ALLOW_FILTER},
    {"d:0:dev-a", SESSION, DEF, W, "ret/b", RETAIN, NULL, ACL_DENY_RETAINED},
    {"d:0:dev-c", SESSION, DEF, W, "ret/b", RETAIN, NULL, ACL_ALLOW_FILTER},
    {"d:0:dev-a", SESSION, DEF, W, "ret/none", RETAIN, NULL, ACL_ALLOW_FILTER},
    {"d:0:dev-a", SESSION, DEF, W, "ret/b", PLAIN, NULL, ACL_ALLOW_FILTER},
    {"d:0:dev-a", SESSION, CROSS, W, "ret/b", RETAIN, NULL, ACL_ALLOW_FILTER},
    {"d:0:gone", SESSION, DEF, W, "ret/a", RETAIN, NULL, ACL_DENY_RETAINED},
    {"d:0:gone", SESSION, DEF, W, "ret/none", RETAIN, NULL, ACL_ALLOW_FILTER},
    /* Filters with %s: the device's own serial. */
    {"d:0:dev-a", SESSION, FILT, W, "devices/dev-a/up", PLAIN, NULL, ACL_ALLOW_FILTER},
    {"d:0:dev-a", SESSION, FILT, W, "devices/dev-b/up", PLAIN, NULL, ACL_DENY_FILTER},
    {"d:0:dev-a", SESSION, FILT, W, "devices/dev-a/down", PLAIN, NULL, ACL_DENY_FILTER},
    {"d:0:dev-a", SESSION, FILT, S, "devices/dev-a/down", PLAIN, NULL, ACL_ALLOW_FILTER},
    {"d:0:dev-a", SESSION, FILT, S, "devices/+/down", PLAIN, NULL, ACL_DENY_FILTER},
    {"d:0:dev-a", SESSION, FILT, S, "devices/#", PLAIN, NULL, ACL_DENY_FILTER},
    {"d:0:dev-a", SESSION, FILT, S, "public/#", PLAIN, NULL, ACL_ALLOW_FILTER},
    {"d:0:dev-a", SESSION, FILT, S, "public/+/x", PLAIN, NULL, ACL_ALLOW_FILTER},
    /* "#" in an allowed filter does not take its parent level. */
    {"d:0:dev-a", SESSION, FILT, S, "public", PLAIN, NULL, ACL_DENY_FILTER},
    {"d:0:dev-a", SESSION, FILT, S, "#", PLAIN, NULL, ACL_DENY_FILTER},
    {"d:0:dev-a", SESSION, FILT, R, "public/news", PLAIN, B, ACL_DENY_ORIGIN},
    {"d:0:dev-a", SESSION, FILT, R, "public/news", PLAIN, A, ACL_ALLOW_FILTER},
};

static void test_cases(void)
{
    const struct acl_facts facts = {NULL, device_profile, retained_profile, message_profile};

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct acl_case *k = &cases[i];
        struct acl_client c;
        struct acl_request q = {k->topic, k->access, k->retain};
        acl_client_parse(k->user, DAEMON, &c);
        c.has_session = k->session;
        message_from = k->from;
        enum acl_reason got = acl_decide(&c, &q, &rule_sets[k->rules], &facts);
        if (got != k->want)
            fprintf(stderr, "case %zu (%s, access %d, %s): %s, expected %s\n", i,
                    k->user ? k->user : "(none)", (int)k->access, k->topic, acl_reason_text(got),
                    acl_reason_text(k->want));
        CHECK_EQ_INT(got, k->want);
    }
}

static void test_parse(void)
{
    struct acl_client c;

    acl_client_parse("d:2:sensor-01", DAEMON, &c);
    CHECK_EQ_INT(c.kind, ACL_DEVICE);
    CHECK_EQ_INT(c.perm, 2);
    CHECK_EQ_STR(c.serial, "sensor-01");
    CHECK_EQ_INT(c.has_session, 0);
    acl_client_parse("d:3:sensor-01", DAEMON, &c);
    CHECK_EQ_INT(c.kind, ACL_UNKNOWN);
    acl_client_parse("p:00ff11ee22dd33cc", DAEMON, &c);
    CHECK_EQ_INT(c.kind, ACL_PROFILE);
    CHECK_EQ_MEM(c.auth_hash, "\x00\xff\x11\xee\x22\xdd\x33\xcc", ACL_HASH_LEN);
    acl_client_parse("p:00ff11ee22dd33c", DAEMON, &c);
    CHECK_EQ_INT(c.kind, ACL_UNKNOWN);
    acl_client_parse("p:zzff11ee22dd33cc", DAEMON, &c);
    CHECK_EQ_INT(c.kind, ACL_UNKNOWN);
    acl_client_parse(DAEMON, DAEMON, &c);
    CHECK_EQ_INT(c.kind, ACL_DAEMON);
    acl_client_parse(DAEMON, NULL, &c); /* no daemon login configured */
    CHECK_EQ_INT(c.kind, ACL_UNKNOWN);
    acl_client_parse(NULL, DAEMON, &c);
    CHECK_EQ_INT(c.kind, ACL_UNKNOWN);
    acl_client_parse("Token", DAEMON, &c);
    CHECK_EQ_INT(c.kind, ACL_UNKNOWN);
}

static void test_reasons(void)
{
    CHECK(acl_allows(ACL_ALLOW_DAEMON));
    CHECK(acl_allows(ACL_ALLOW_FILTER));
    CHECK(!acl_allows(ACL_DENY_WILL));
    CHECK(!acl_allows(ACL_DENY_ORIGIN));
    CHECK_EQ_STR(acl_reason_text(ACL_DENY_PERM), "the token's permission");
    CHECK_EQ_STR(acl_reason_text((enum acl_reason)99), "unknown reason");
}

int main(void)
{
    RUN(test_cases);
    RUN(test_parse);
    RUN(test_reasons);
    return check_done();
}
