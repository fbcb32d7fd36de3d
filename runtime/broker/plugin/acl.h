/*
 * acl.h - the broker plugin's access decision, as a pure function.
 *
 * Who a client is, what it asks for (topic, read/write/subscribe) and the
 * broker's namespace options go in; allow or deny, with the rule that
 * decided, comes out. What the decision must know about the registry and
 * stored messages (a device's profile, a message's origin) it asks through
 * struct acl_facts, only when a rule needs it. No mosquitto, SQLite or global
 * state: auth.c calls it for every MOSQ_EVT_ACL_CHECK and test_acl.c calls it
 * with tables of cases.
 *
 * The rules (see acl_decide): a device publishes to its own
 * $tip[s]/<serial>/push|pull and reads its own $tip[s]/<serial>/ack; a
 * profile context does the same for every device of its profile and for
 * well-formed serials no device has, and nothing else; other topics follow
 * the publish/subscribe filters (%s: the device's serial); nothing else
 * starting with '$' is reachable; a device reads only messages of its own
 * profile and replaces only retained messages of its own profile unless
 * cross_profile is on; a write from a connection without a session is a will
 * and is refused to all but the daemon.
 */
#ifndef SP_PLUGIN_ACL_H
#define SP_PLUGIN_ACL_H

#include <stddef.h>
#include <stdint.h>

#define ACL_HASH_LEN 8 /* a profile's auth hash */

enum acl_kind { ACL_UNKNOWN, ACL_DAEMON, ACL_DEVICE, ACL_PROFILE };

/* What a client asks for (mosquitto's MOSQ_ACL_* events, in our names). */
enum acl_access { ACL_READ, ACL_WRITE, ACL_SUBSCRIBE, ACL_UNSUBSCRIBE };

/* Who a client is. serial is borrowed from the username it was parsed from. */
struct acl_client {
    enum acl_kind kind;
    int perm;                        /* ACL_DEVICE: enum token_perm */
    const char *serial;              /* ACL_DEVICE */
    uint8_t auth_hash[ACL_HASH_LEN]; /* ACL_PROFILE */
    int has_session;                 /* logged in through the plugin and still live */
};

struct acl_request {
    const char *topic; /* a topic, or a filter for ACL_SUBSCRIBE */
    enum acl_access access;
    int retain; /* ACL_WRITE: the message is to be retained */
};

/* The broker's options (plugin_opt_publish, _subscribe, _cross_profile). */
struct acl_rules {
    char *const *pub_filters;
    int npub;
    char *const *sub_filters;
    int nsub;
    int cross_profile;
};

/*
 * Questions the decision may ask, each answering 1 with *out set or 0:
 *  device_profile    the auth hash of the profile of the device with serial
 *                    serial[0..n) (0: no such device);
 *  retained_profile  the profile whose retained message is stored on topic
 *                    (0: none, or of no known profile);
 *  message_profile   the profile the message being read came from (0: none
 *                    or not known).
 */
struct acl_facts {
    void *ctx;
    int (*device_profile)(void *ctx, const char *serial, size_t n, uint8_t out[ACL_HASH_LEN]);
    int (*retained_profile)(void *ctx, const char *topic, uint8_t out[ACL_HASH_LEN]);
    int (*message_profile)(void *ctx, uint8_t out[ACL_HASH_LEN]);
};

/* Why access was allowed (ACL_ALLOW_*) or denied (ACL_DENY_*). */
#define ACL_REASONS(XX)                                                                            \
    XX(ALLOW_DAEMON, "the daemon reaches everything")                                              \
    XX(ALLOW_UNSUBSCRIBE, "unsubscribing is always allowed")                                       \
    XX(ALLOW_TIP, "a TagoTiP topic of its own")                                                    \
    XX(ALLOW_FILTER, "within the publish or subscribe filters")                                    \
    XX(DENY_WILL, "a write without a session: a will")                                             \
    XX(DENY_UNKNOWN, "not a client of the plugin")                                                 \
    XX(DENY_PERM, "the token's permission")                                                        \
    XX(DENY_TIP_SERIAL, "another device's TagoTiP topic")                                          \
    XX(DENY_TIP_LEAF, "a TagoTiP topic of the wrong direction")                                    \
    XX(DENY_RESERVED, "a '$' topic")                                                               \
    XX(DENY_CONTEXT, "a profile context outside the TagoTiP topics")                               \
    XX(DENY_FILTER, "outside the publish or subscribe filters")                                    \
    XX(DENY_RETAINED, "another profile's retained message")                                        \
    XX(DENY_ORIGIN, "another profile's message")

enum acl_reason {
#define XX(name, text) ACL_##name,
    ACL_REASONS(XX)
#undef XX
};

/*
 * Who the client with this username is: usernames "d:<perm>:<serial>" and
 * "p:<16 hex>" are given by the plugin at login; daemon_user (NULL: no daemon
 * login is configured) is the daemon. Anything else is ACL_UNKNOWN.
 * out->serial points into username; out->has_session is left 0.
 */
void acl_client_parse(const char *username, const char *daemon_user, struct acl_client *out);

/* The decision for client c asking for q under rules r. */
enum acl_reason acl_decide(const struct acl_client *c, const struct acl_request *q,
                           const struct acl_rules *r, const struct acl_facts *f);

/* 1 if reason allows the access, else 0. */
int acl_allows(enum acl_reason reason);

/* The reason in words; never NULL. */
const char *acl_reason_text(enum acl_reason reason);

#endif
