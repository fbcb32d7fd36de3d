/*
 * acl.c - the broker plugin's access decision (see acl.h): who may publish,
 * subscribe to and read which topic. Pure: everything it knows comes in
 * through its arguments, so test_acl.c drives it with tables of cases and
 * auth.c calls it from MOSQ_EVT_ACL_CHECK. Single-threaded like the broker;
 * no state.
 */
#include "acl.h"

#include <stdio.h>
#include <string.h>

#include "storage/registry_schema.h"
#include "sealpipe.h"

static const char *const reason_text[] = {
#define XX(name, text) [ACL_##name] = text,
    ACL_REASONS(XX)
#undef XX
};

int acl_allows(enum acl_reason reason)
{
    return reason < ACL_DENY_WILL;
}

const char *acl_reason_text(enum acl_reason reason)
{
    if ((size_t)reason >= sizeof reason_text / sizeof reason_text[0])
        return "unknown reason";
    return reason_text[reason];
}

void acl_client_parse(const char *u, const char *daemon_user, struct acl_client *out)
{
    struct acl_client c = {ACL_UNKNOWN, 0, NULL, {0}, 0};

    *out = c;
    if (!u)
        return;
    if (daemon_user && strcmp(u, daemon_user) == 0) {
        out->kind = ACL_DAEMON;
    } else if (u[0] == 'd' && u[1] == ':' && u[2] >= '0' && u[2] <= '2' && u[3] == ':') {
        out->kind = ACL_DEVICE;
        out->perm = u[2] - '0';
        out->serial = u + 4;
    } else if (u[0] == 'p' && u[1] == ':' && strlen(u) == 2 + 2 * ACL_HASH_LEN &&
               sp_hex_decode(u + 2, 2 * ACL_HASH_LEN, c.auth_hash, ACL_HASH_LEN) == ACL_HASH_LEN) {
        /* Run for every message of a profile context: no sscanf per byte. */
        c.kind = ACL_PROFILE;
        *out = c;
    }
}

/*
 * The TagoTiP topics of a device: "$tip/<serial>/<leaf>" or "$tips/...".
 * Returns the leaf ("push", "pull", "ack") and the serial span, or NULL.
 */
static const char *tip_topic(const char *topic, const char **serial, size_t *n)
{
    const char *s;

    if (strncmp(topic, "$tip/", 5) == 0)
        s = topic + 5;
    else if (strncmp(topic, "$tips/", 6) == 0)
        s = topic + 6;
    else
        return NULL;
    const char *e = strchr(s, '/');
    if (!e || e == s || strchr(e + 1, '/'))
        return NULL;
    *serial = s;
    *n = (size_t)(e - s);
    return e + 1;
}

/*
 * 1 if everything filter `want` (a topic, or a subscription filter) can
 * match is matched by filter `allow`: level by level, "#" in allow takes the
 * rest, "+" in allow takes one level that is not "#", other levels must be
 * equal. (mosquitto_topic_matches_sub refuses wildcards in its topic.)
 */
static int covers(const char *allow, const char *want)
{
    for (;;) {
        size_t na = strcspn(allow, "/"), nw = strcspn(want, "/");
        if (na == 1 && allow[0] == '#')
            return 1;
        if (na == 1 && allow[0] == '+') {
            if (nw == 1 && want[0] == '#')
                return 0;
        } else if (na != nw || memcmp(allow, want, na) != 0) {
            return 0;
        }
        allow += na;
        want += nw;
        if (!*allow || !*want)
            return !*allow && !*want;
        allow++;
        want++;
    }
}

/* Does topic (or a subscription filter) fall under one of the filters, %s = serial? */
static int allowed_by(char *const *filters, int n, const char *serial, const char *topic)
{
    char f[512];

    for (int i = 0; i < n; i++) {
        const char *ps = strstr(filters[i], "%s");
        if (ps && !serial)
            continue;
        int len = ps ? snprintf(f, sizeof f, "%.*s%s%s", (int)(ps - filters[i]), filters[i], serial,
                                ps + 2)
                     : snprintf(f, sizeof f, "%s", filters[i]);
        if (len < 0 || (size_t)len >= sizeof f)
            continue; /* never match a cut filter */
        if (covers(f, topic))
            return 1;
    }
    return 0;
}

/*
 * May client c use the TagoTiP topics of serial[0..n)? A device its own. A
 * profile context its own devices', and those of a well-formed serial no
 * device has: the daemon answers such a PUSH with ERR|device_not_found
 * (TagoTiP §4.3) on the ack topic and keeps it as a dead letter. Never
 * another profile's device. Checked per message: a serial that becomes a
 * device of another profile is out of reach from then on, subscription or not.
 */
static int tip_reaches(const struct acl_client *c, const struct acl_facts *f, const char *serial,
                       size_t n)
{
    uint8_t profile[ACL_HASH_LEN];

    if (c->kind == ACL_DEVICE)
        return strlen(c->serial) == n && memcmp(c->serial, serial, n) == 0;
    if (f->device_profile(f->ctx, serial, n, profile))
        return memcmp(profile, c->auth_hash, ACL_HASH_LEN) == 0;
    return sp_serial_valid(serial, n); /* no wildcard, nothing the registry could not hold */
}

static enum acl_reason tip_decide(const struct acl_client *c, const struct acl_request *q,
                                  const struct acl_facts *f, const char *leaf, const char *serial,
                                  size_t n)
{
    int ok;

    if (!tip_reaches(c, f, serial, n))
        return ACL_DENY_TIP_SERIAL;
    ok = q->access == ACL_WRITE ? strcmp(leaf, "push") == 0 || strcmp(leaf, "pull") == 0
                                : strcmp(leaf, "ack") == 0;
    return ok ? ACL_ALLOW_TIP : ACL_DENY_TIP_LEAF;
}

/*
 * A retained message is one per topic for the whole broker: the topic belongs
 * to the profile whose message is retained there. Another profile's device
 * may not replace or clear it. One of no known profile (read back after a
 * crash) may be replaced by anyone.
 */
static int may_retain(const struct acl_client *c, const struct acl_facts *f, const char *topic)
{
    uint8_t own[ACL_HASH_LEN], owner[ACL_HASH_LEN];
    int known_device = f->device_profile(f->ctx, c->serial, strlen(c->serial), own);

    if (!f->retained_profile(f->ctx, topic, owner))
        return 1;
    return known_device && memcmp(owner, own, ACL_HASH_LEN) == 0;
}

/* 1 if the message being read comes from the device's profile. */
static int of_own_profile(const struct acl_client *c, const struct acl_facts *f)
{
    uint8_t own[ACL_HASH_LEN], from[ACL_HASH_LEN];

    return f->device_profile(f->ctx, c->serial, strlen(c->serial), own) &&
           f->message_profile(f->ctx, from) && memcmp(from, own, ACL_HASH_LEN) == 0;
}

/* A device's topic outside $: the filters, then the profile namespaces. */
static enum acl_reason filter_decide(const struct acl_client *c, const struct acl_request *q,
                                     const struct acl_rules *r, const struct acl_facts *f)
{
    if (q->access == ACL_WRITE) {
        if (!allowed_by(r->pub_filters, r->npub, c->serial, q->topic))
            return ACL_DENY_FILTER;
        if (q->retain && !r->cross_profile && !may_retain(c, f, q->topic))
            return ACL_DENY_RETAINED;
        return ACL_ALLOW_FILTER;
    }
    if (!allowed_by(r->sub_filters, r->nsub, c->serial, q->topic))
        return ACL_DENY_FILTER;
    if (q->access == ACL_READ && !r->cross_profile && !of_own_profile(c, f))
        return ACL_DENY_ORIGIN;
    return ACL_ALLOW_FILTER;
}

enum acl_reason acl_decide(const struct acl_client *c, const struct acl_request *q,
                           const struct acl_rules *r, const struct acl_facts *f)
{
    const char *serial, *leaf;
    size_t n;
    int writing = q->access == ACL_WRITE;

    /* A write from a connection without a session is a will (see plugin.h, session.c):
     * never for devices or profile contexts. */
    if (writing && c->kind != ACL_DAEMON && !c->has_session)
        return ACL_DENY_WILL;
    if (c->kind == ACL_DAEMON)
        return ACL_ALLOW_DAEMON;
    if (c->kind == ACL_UNKNOWN)
        return ACL_DENY_UNKNOWN;
    if (q->access == ACL_UNSUBSCRIBE)
        return ACL_ALLOW_UNSUBSCRIBE;
    if (c->kind == ACL_DEVICE &&
        ((writing && c->perm == TOKEN_READ) || (!writing && c->perm == TOKEN_WRITE)))
        return ACL_DENY_PERM;
    if ((leaf = tip_topic(q->topic, &serial, &n)) != NULL)
        return tip_decide(c, q, f, leaf, serial, n);
    if (q->topic[0] == '$')
        return ACL_DENY_RESERVED; /* $sealpipe/, $SYS, $CONTROL, ...: never for devices */
    if (c->kind == ACL_PROFILE)
        return ACL_DENY_CONTEXT; /* a profile context speaks the TagoTiP binding only */
    return filter_decide(c, q, r, f);
}
