/*
 * auth.c - sealpipe_auth.so, the mosquitto 2.0 plugin that makes a broker
 * speak TagoIO's MQTT rules for sealpipe's registry (issue #5). This file is
 * the glue: the entry points, the options and one callback per broker event,
 * each handing its work to the part that owns it (plugin.h lists them).
 *
 * Authentication (MOSQ_EVT_BASIC_AUTH):
 *   username "Token", password a device token  -> that device
 *   username/password the halves of a TagoTiP auth hash (TagoTipServers.md
 *   §3.1)                                       -> that profile's context
 *   the daemon's user and generated secret      -> everything
 *   anything else                               -> CONNACK "not authorized"
 * A client that passes is renamed (mosquitto_set_username) to what it is:
 * "d:<perm>:<serial>" for a device, "p:<auth hash>" for a profile context.
 * Only this plugin sets such names (a client cannot log in with one), so the
 * ACL check reads the client's identity from its username without a lookup.
 *
 * Authorization (MOSQ_EVT_ACL_CHECK): acl.c decides (the rules are listed in
 * acl.h); denials are logged with the client's identity and the topic, every
 * field escaped (log_field). Profiles are namespaces: origin.c remembers
 * which profile each stored message came from.
 *
 * Identity (MOSQ_EVT_MESSAGE): every message a device publishes carries the
 * MQTT v5 user property "sealpipe-device" = its serial, whatever protocol it
 * speaks; that property and "sealpipe-profile" set by any client other than
 * the daemon are removed first (props.c). The daemon attributes messages on
 * any topic by the first, and names the profile an analysis's publish is for
 * with the second.
 *
 * Revocation (MOSQ_EVT_TICK, looked at every 100 ms): the registry is read
 * into memory at start and again whenever its generation number moves
 * (view.c). Each live session remembers its token; a session whose token was
 * revoked, has expired, or whose device was removed is kicked at the next
 * tick (session.c).
 *
 * All state is one struct plugin, every callback's userdata. The broker is
 * single-threaded (the journal's flusher thread is jwriter.c's own). Options (plugin_opt_<key>):
 *   registry      path of sealpipe.db (required; keys need 3+ characters)
 *   daemon_user   the daemon's username (default "sealpipe-daemon")
 *   daemon_client_id  the daemon's client id, refused to everyone else
 *                 (default "sealpipe")
 *   daemon_secret file holding the daemon's password (required)
 *   publish       space-separated filters devices may also publish to
 *   subscribe     the same for subscribing and reading
 *   cross_profile on: devices read every profile's messages (default off)
 *   retained_origins  file keeping retained messages' origins across a clean
 *                 restart (see origins_save)
 *   journal       folder of the device journal (jwriter.c); without it, none
 *   journal_sync_ms   how often the journal is made durable (default 100;
 *                 0: before every PUBACK)
 *   journal_min_free_mb  publishes are refused while the journal's
 *                 filesystem has less free (default 256)
 *   events        the daemon's socket for the Live Inspector (events.c):
 *                 logins, disconnections, subscriptions, refusals
 *   answers       the daemon's socket of answers to journaled messages,
 *                 which the plugin publishes (answers.c)
 *
 * Journal (MOSQ_EVT_MESSAGE, with plugin_opt_journal): every publish of a
 * device or profile context is appended to the device journal before the
 * broker acknowledges it, and refused (no PUBACK) when it cannot be. The
 * daemon reads the journal instead of subscribing: its READ check of a
 * journaled message is denied, so the broker never queues it for the daemon.
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mqtt_protocol.h>

#include "acl.h"
#include "base/clock.h"
#include "plugin.h"

#define DEFAULT_DAEMON "sealpipe-daemon"
#define PLUGIN_EXPORT  __attribute__((visibility("default")))

const char *log_field(char *buf, size_t cap, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    if (!s)
        s = "(none)";
    for (; *s && o + 5 < cap; s++) {
        unsigned char ch = (unsigned char)*s;
        const char *esc = ch == '\n'   ? "\\n"
                          : ch == '\r' ? "\\r"
                          : ch == '\t' ? "\\t"
                          : ch == '"'  ? "\\\""
                          : ch == '\\' ? "\\\\"
                                       : NULL;
        if (esc) {
            buf[o++] = esc[0];
            buf[o++] = esc[1];
        } else if (ch < 0x20 || ch == 0x7f) {
            buf[o++] = '\\';
            buf[o++] = 'x';
            buf[o++] = hex[ch >> 4];
            buf[o++] = hex[ch & 15];
        } else {
            buf[o++] = (char)ch;
        }
    }
    buf[o] = '\0';
    return buf;
}

/* ------------------------------------------------------------------------ */
/* Logins                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * A login that the view refuses may be for a device added a moment ago:
 * before refusing, look at the registry's generation once (at most every
 * 10 ms, so a flood of bad logins costs little) and reload if it moved.
 * Returns 1 if the view changed.
 */
static int fresh_view(struct plugin *p)
{
    int64_t mono = clock_mono_ms(), g;

    if (mono - p->last_login_check_ms < 10)
        return 0;
    p->last_login_check_ms = mono;
    g = view_generation(&p->view);
    return g >= 0 && g != p->view.generation && view_load(&p->view) == 0;
}

static int is_hex8(const char *s)
{
    if (!s || strlen(s) != 8)
        return 0;
    for (int i = 0; i < 8; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

/* Records the session of a client that passed as name, and renames it
 * (rename 0: the daemon keeps its own username). */
static int login_as(struct plugin *p, const struct mosquitto_evt_basic_auth *ev, const char *name,
                    const uint8_t *token_hash, int rename)
{
    int rc =
        session_add(&p->sessions, ev->client, mosquitto_client_id(ev->client), name, token_hash);

    if (rc != MOSQ_ERR_SUCCESS || !rename)
        return rc;
    if (mosquitto_set_username(ev->client, name) != MOSQ_ERR_SUCCESS)
        return MOSQ_ERR_NOMEM;
    return MOSQ_ERR_SUCCESS;
}

static int login_daemon(struct plugin *p, const struct mosquitto_evt_basic_auth *ev)
{
    uint8_t h[crypto_hash_sha256_BYTES];

    crypto_hash_sha256(h, (const uint8_t *)ev->password, strlen(ev->password));
    if (sodium_memcmp(h, p->daemon_hash, sizeof h) != 0)
        return MOSQ_ERR_AUTH;
    return login_as(p, ev, p->daemon_user, NULL, 0);
}

/* Why a login was refused, and whose credential it was when that is known. */
struct refusal {
    const char *why;
    const char *device;
};

/* Username "Token", password a device token. */
static int login_token(struct plugin *p, const struct mosquitto_evt_basic_auth *ev,
                       struct refusal *no)
{
    uint8_t h[REGISTRY_TOKEN_HASH_LEN];
    char name[16 + REGISTRY_MAX_IDENT];
    const struct token *t;
    int rc;

    if (strlen(ev->password) != REGISTRY_TOKEN_LEN)
        return MOSQ_ERR_AUTH;
    crypto_hash_sha256(h, (const uint8_t *)ev->password, REGISTRY_TOKEN_LEN);
    t = view_find_token(&p->view, h);
    if (!t && fresh_view(p))
        t = view_find_token(&p->view, h);
    if (!view_token_live(t, clock_wall_ms())) {
        no->why = !t ? "unknown token" : t->revoked ? "token revoked" : "token expired";
        no->device = t ? t->serial : NULL;
        return MOSQ_ERR_AUTH;
    }
    snprintf(name, sizeof name, "d:%d:%s", t->perm, t->serial);
    if ((rc = login_as(p, ev, name, h, 1)) == MOSQ_ERR_SUCCESS)
        events_connect(p->events, ev->client, t->serial, NULL);
    else
        *no = (struct refusal){"client id in use by another device", t->serial};
    return rc;
}

/* TagoTiP: the auth hash split over username and password (§3.1). */
static int login_profile(struct plugin *p, const struct mosquitto_evt_basic_auth *ev,
                         struct refusal *no)
{
    uint8_t ah[REGISTRY_HASH_LEN];
    char hex[2 * REGISTRY_HASH_LEN + 1], name[4 + sizeof hex];
    const struct profile *pr;
    int rc;

    snprintf(hex, sizeof hex, "%s%s", ev->username, ev->password);
    for (int i = 0; i < REGISTRY_HASH_LEN; i++) {
        unsigned v;
        sscanf(hex + 2 * i, "%2x", &v);
        ah[i] = (uint8_t)v;
    }
    pr = view_find_profile(&p->view, ah);
    if (!pr && fresh_view(p))
        pr = view_find_profile(&p->view, ah);
    if (!pr) {
        no->why = "unknown profile auth hash";
        return MOSQ_ERR_AUTH;
    }
    for (int i = 0; i < 2 * REGISTRY_HASH_LEN; i++)
        hex[i] = (char)tolower((unsigned char)hex[i]);
    snprintf(name, sizeof name, "p:%s", hex);
    if ((rc = login_as(p, ev, name, NULL, 1)) == MOSQ_ERR_SUCCESS) {
        char who[16 + REGISTRY_MAX_IDENT];
        snprintf(who, sizeof who, "profile %s", pr->name);
        events_connect(p->events, ev->client, NULL, who);
    } else {
        no->why = "client id in use by another login";
    }
    return rc;
}

static int login(struct plugin *p, const struct mosquitto_evt_basic_auth *ev, struct refusal *no)
{
    const char *client_id = mosquitto_client_id(ev->client);

    no->why = "no username or password";
    if (!ev->username || !ev->password)
        return MOSQ_ERR_AUTH;
    no->why = "wrong password";
    if (p->have_daemon && strcmp(ev->username, p->daemon_user) == 0)
        return login_daemon(p, ev);
    /* The daemon's session (and its queue) is the daemon's alone. */
    no->why = "client id reserved for the daemon";
    if (client_id && strcmp(client_id, p->daemon_client_id) == 0)
        return MOSQ_ERR_AUTH;
    no->why = "unknown token";
    if (strcmp(ev->username, "Token") == 0)
        return login_token(p, ev, no);
    if (is_hex8(ev->username) && is_hex8(ev->password))
        return login_profile(p, ev, no);
    no->why = "not a device token or a profile auth hash";
    return MOSQ_ERR_AUTH;
}

/*
 * Lines caused by clients (refused logins, denials) go through a token
 * bucket: bursts of CLIENT_LINES_BURST, then CLIENT_LINES_PER_S. The
 * broker's log is on the data disk, and a client looping on a denied publish
 * must not fill it; what is dropped is counted in a line once a second.
 */
#define CLIENT_LINES_PER_S 20
#define CLIENT_LINES_BURST 200

/* Refills the bucket and says how many lines were dropped since the last
 * time it said so (at most once a second). */
static void client_lines_flush(struct plugin *p, int64_t now)
{
    int64_t earned = (now - p->lines_since) * CLIENT_LINES_PER_S / 1000;

    if (earned <= 0)
        return;
    p->lines_since += earned * 1000 / CLIENT_LINES_PER_S;
    p->lines =
        p->lines + earned > CLIENT_LINES_BURST ? CLIENT_LINES_BURST : (int)(p->lines + earned);
    if (p->lines_dropped && now - p->lines_said >= 1000) {
        mosquitto_log_printf(MOSQ_LOG_NOTICE,
                             "sealpipe: %llu more refused logins and denials not logged (at "
                             "most %d lines a second)",
                             (unsigned long long)p->lines_dropped, CLIENT_LINES_PER_S);
        p->lines_dropped = 0;
        p->lines_said = now;
    }
}

/* 1 if one more line caused by a client may be logged now. */
static int client_line(struct plugin *p)
{
    client_lines_flush(p, clock_mono_ms());
    if (p->lines > 0) {
        p->lines--;
        return 1;
    }
    p->lines_dropped++;
    return 0;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
    struct plugin *p = userdata;
    struct mosquitto_evt_basic_auth *ev = event_data;
    struct refusal no = {NULL, NULL};
    int rc = login(p, ev, &no);
    char f_id[LOG_FIELD_MAX], f_user[LOG_FIELD_MAX], f_addr[LOG_FIELD_MAX];

    (void)event;
    if (rc == MOSQ_ERR_AUTH)
        events_login_refused(p->events, ev->client, ev->username, no.device, no.why);
    if (rc != MOSQ_ERR_AUTH || !client_line(p))
        return rc;
    mosquitto_log_printf(MOSQ_LOG_NOTICE, "sealpipe: refused client %s (username %s) from %s",
                         LOG_FIELD(f_id, mosquitto_client_id(ev->client)),
                         LOG_FIELD(f_user, ev->username),
                         LOG_FIELD(f_addr, mosquitto_client_address(ev->client)));
    return MOSQ_ERR_AUTH;
}

/* ------------------------------------------------------------------------ */
/* Access                                                                   */
/* ------------------------------------------------------------------------ */

/* Who a client is, from the username on_basic_auth gave it. */
static void client_of(const struct plugin *p, const struct mosquitto *client, struct acl_client *c)
{
    acl_client_parse(mosquitto_client_username(client), p->have_daemon ? p->daemon_user : NULL, c);
}

/* The facts acl_decide may ask about one ACL check (struct acl_facts). */
struct check {
    struct plugin *p;
    const struct mosquitto_evt_acl_check *ev;
};

static int fact_device_profile(void *ctx, const char *serial, size_t n, uint8_t out[ACL_HASH_LEN])
{
    const struct check *c = ctx;
    const struct device *d = view_find_device(&c->p->view, serial, n);

    if (d)
        memcpy(out, d->auth_hash, ACL_HASH_LEN);
    return d != NULL;
}

static int fact_retained_profile(void *ctx, const char *topic, uint8_t out[ACL_HASH_LEN])
{
    const struct check *c = ctx;
    return origins_retained_by(&c->p->origins, topic, out);
}

static int fact_message_profile(void *ctx, uint8_t out[ACL_HASH_LEN])
{
    const struct check *c = ctx;
    return origins_of(&c->p->origins, c->ev->topic, c->ev->payload, c->ev->payloadlen, out);
}

static enum acl_access access_of(int mosq_access)
{
    switch (mosq_access) {
    case MOSQ_ACL_WRITE:
        return ACL_WRITE;
    case MOSQ_ACL_SUBSCRIBE:
        return ACL_SUBSCRIBE;
    case MOSQ_ACL_UNSUBSCRIBE:
        return ACL_UNSUBSCRIBE;
    default:
        return ACL_READ;
    }
}

static void log_denial(struct plugin *p, const struct acl_client *c,
                       const struct mosquitto_evt_acl_check *ev, enum acl_reason why)
{
    char f_who[LOG_FIELD_MAX], f_topic[LOG_FIELD_MAX];

    if (ev->access == MOSQ_ACL_READ && why != ACL_DENY_WILL)
        return; /* a read denial per message would flood the log */
    if (!client_line(p))
        return;
    if (why == ACL_DENY_WILL)
        mosquitto_log_printf(MOSQ_LOG_NOTICE, "sealpipe: dropped the will of %s on %s",
                             c->kind == ACL_DEVICE ? LOG_FIELD(f_who, c->serial) : "a client",
                             LOG_FIELD(f_topic, ev->topic));
    else
        mosquitto_log_printf(MOSQ_LOG_NOTICE, "sealpipe: denied %s by %s on %s",
                             ev->access == MOSQ_ACL_WRITE ? "publish" : "subscribe",
                             c->kind == ACL_DEVICE ? LOG_FIELD(f_who, c->serial)
                             : c->kind == ACL_PROFILE
                                 ? LOG_FIELD(f_who, mosquitto_client_username(ev->client))
                                 : "an unknown client",
                             LOG_FIELD(f_topic, ev->topic));
}

/*
 * 1 if a journaled message must not be queued for client, a client of the
 * daemon's login: the daemon's own session (its reserved client id) reads the
 * journal instead; a session of that login that is not connected (left by a
 * daemon that ran with another --client-id) would only pile the messages up
 * and hand them to that id if it ever came back. A connected client of the
 * login other than the daemon (a tool, make bench's counting subscriber)
 * reads what it subscribed to.
 */
static int journal_hides(const struct plugin *p, const struct acl_client *c,
                         const struct mosquitto *client)
{
    const char *id = mosquitto_client_id(client);

    return !c->has_session || (id && strcmp(id, p->daemon_client_id) == 0);
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
    struct plugin *p = userdata;
    struct mosquitto_evt_acl_check *ev = event_data;
    struct check chk = {p, ev};
    struct acl_facts facts = {&chk, fact_device_profile, fact_retained_profile,
                              fact_message_profile};
    struct acl_rules rules = {p->pub_filters, p->npub, p->sub_filters, p->nsub, p->cross_profile};
    struct acl_request q = {ev->topic, access_of(ev->access), ev->retain};
    struct acl_client c;
    enum acl_reason why;

    (void)event;
    client_of(p, ev->client, &c);
    c.has_session = session_find(&p->sessions, ev->client) != NULL;
    /* The daemon reads what is in the journal from there, never twice. */
    if (c.kind == ACL_DAEMON && ev->access == MOSQ_ACL_READ && p->journal &&
        origins_journaled(&p->origins, ev->payload) && journal_hides(p, &c, ev->client))
        return MOSQ_ERR_ACL_DENIED;
    why = acl_decide(&c, &q, &rules, &facts);
    if (acl_allows(why)) {
        if ((ev->access == MOSQ_ACL_SUBSCRIBE || ev->access == MOSQ_ACL_UNSUBSCRIBE) &&
            c.kind != ACL_DAEMON) /* the daemon's own are no device's business */
            events_access(p->events, ev->client, c.kind == ACL_DEVICE ? c.serial : "",
                          ev->access == MOSQ_ACL_SUBSCRIBE ? "subscribe" : "unsubscribe", NULL,
                          ev->topic);
        return MOSQ_ERR_SUCCESS;
    }
    log_denial(p, &c, ev, why);
    if (ev->access != MOSQ_ACL_READ)
        events_access(p->events, ev->client, c.kind == ACL_DEVICE ? c.serial : "", "denied",
                      ev->access == MOSQ_ACL_WRITE ? "publish" : "subscribe", ev->topic);
    return MOSQ_ERR_ACL_DENIED;
}

/* ------------------------------------------------------------------------ */
/* Messages, disconnections, ticks                                          */
/* ------------------------------------------------------------------------ */

/* The profile a message comes from: 1 with profile set, or 0 (none). */
static int publisher_profile(const struct plugin *p, const struct mosquitto_evt_message *ev,
                             const struct acl_client *c, uint8_t profile[REGISTRY_HASH_LEN])
{
    const struct device *d;
    const struct profile *named;
    char *name;

    switch (c->kind) {
    case ACL_DEVICE:
        if ((d = view_find_device(&p->view, c->serial, strlen(c->serial))) == NULL)
            return 0; /* removed a moment ago */
        memcpy(profile, d->auth_hash, REGISTRY_HASH_LEN);
        return 1;
    case ACL_PROFILE:
        memcpy(profile, c->auth_hash, REGISTRY_HASH_LEN);
        return 1;
    case ACL_DAEMON:
        /* The daemon names the profile an analysis ran for. */
        if ((name = props_user_property(ev->properties, PROFILE_PROP)) == NULL)
            return 0;
        named = view_profile_named(&p->view, name);
        if (named)
            memcpy(profile, named->auth_hash, REGISTRY_HASH_LEN);
        mosquitto_free(name);
        return named != NULL;
    default:
        return 0;
    }
}

/*
 * Notes where a message comes from (origin.c): its profile, for a topic
 * devices may read (not a $ topic, which is checked by name, and only while
 * profiles are namespaces), and, with a journal, whether it is in it. With
 * a journal every message is noted, journaled or not: a payload address the
 * broker freed comes back for a new message, whose note must replace the
 * old one's.
 */
static int note_origin(struct plugin *p, struct mosquitto_evt_message *ev,
                       const struct acl_client *c, int journaled)
{
    uint8_t profile[REGISTRY_HASH_LEN];
    int by_name = p->cross_profile || ev->topic[0] == '$';
    int known;

    if (by_name && !p->journal)
        return MOSQ_ERR_SUCCESS;
    known = !by_name && publisher_profile(p, ev, c, profile);
    if (ev->retain && ev->payloadlen == 0 && !by_name) {
        origins_unretain(&p->origins, ev->topic); /* clears the retained message: not delivered */
        if (!p->journal)
            return MOSQ_ERR_SUCCESS;
    }
    if (!ev->payload) {
        /* An empty message needs an address of its own to carry an origin;
         * the broker frees it like any payload. */
        if ((ev->payload = mosquitto_calloc(1, 1)) == NULL)
            return MOSQ_ERR_NOMEM;
    }
    origins_note(&p->origins, ev->payload, known ? profile : NULL, journaled);
    if (ev->retain && ev->payloadlen > 0 && !by_name)
        origins_retain(&p->origins, ev->topic, ev->payload, ev->payloadlen, known ? profile : NULL);
    return MOSQ_ERR_SUCCESS;
}

/*
 * Appends a publish to the device journal; the broker sends its PUBACK only
 * after this returns (docs/facts.md). MOSQ_ERR_UNKNOWN refuses it when the
 * journal cannot take it (disk nearly full, a write error; jwriter.c logs
 * it): the broker then closes the connection without a PUBACK (an MQTT 5
 * client first gets DISCONNECT 0x80), so the device keeps the message and
 * sends it again. mosquitto 2.0.11 gives a plugin no way to answer PUBACK
 * 0x97 (quota exceeded) instead.
 */
static int journal_message(struct plugin *p, const struct mosquitto_evt_message *ev,
                           const struct acl_client *c)
{
    const char *serial = c->kind == ACL_DEVICE ? c->serial : NULL;
    struct journal_rec r = {.received_ms = clock_wall_ms(),
                            .qos = ev->qos,
                            .retain = ev->retain,
                            .topic = ev->topic,
                            .topic_len = strlen(ev->topic),
                            .publisher = serial,
                            .publisher_len = serial ? strlen(serial) : 0,
                            .payload = ev->payload,
                            .payload_len = ev->payloadlen};

    return jwriter_append(p->journal, &r) == 0 ? MOSQ_ERR_SUCCESS : MOSQ_ERR_UNKNOWN;
}

static int on_message(int event, void *event_data, void *userdata)
{
    struct plugin *p = userdata;
    struct mosquitto_evt_message *ev = event_data;
    struct acl_client c;
    int rc, journaled = 0;

    (void)event;
    client_of(p, ev->client, &c);
    if (c.kind != ACL_DAEMON) {
        if ((rc = props_drop_reserved(&ev->properties)) != MOSQ_ERR_SUCCESS)
            return rc;
        /* Before anything keyed on the payload: a refused message is freed. */
        if (p->journal && (rc = journal_message(p, ev, &c)) != MOSQ_ERR_SUCCESS)
            return rc;
        journaled = p->journal != NULL;
    }
    if (c.kind == ACL_DEVICE &&
        (rc = mosquitto_property_add_string_pair(&ev->properties, MQTT_PROP_USER_PROPERTY,
                                                 IDENTITY_PROP, c.serial)) != MOSQ_ERR_SUCCESS)
        return rc;
    return note_origin(p, ev, &c, journaled);
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
    struct plugin *p = userdata;
    struct mosquitto_evt_disconnect *ev = event_data;

    (void)event;
    events_disconnect(p->events, ev->client, ev->reason);
    session_forget(&p->sessions, ev->client);
    return MOSQ_ERR_SUCCESS;
}

static int on_tick(int event, void *event_data, void *userdata)
{
    struct plugin *p = userdata;
    int64_t now = clock_wall_ms(), g;

    (void)event;
    (void)event_data;
    /* Under load 2.0.11 calls this on every pass of its loop, not ~10 times
     * a second: look at the registry at most every 100 ms. */
    int64_t mono = clock_mono_ms();
    if (p->journal)
        jwriter_tick(p->journal, mono);
    events_tick(p->events);
    answers_tick(p->answers);
    client_lines_flush(p, mono);
    if (mono - p->last_check_ms < 100)
        return MOSQ_ERR_SUCCESS;
    p->last_check_ms = mono;
    g = view_generation(&p->view);
    int moved = g >= 0 && g != p->view.generation;
    int failing = g < 0 || (moved && view_load(&p->view) != 0);
    char f_path[LOG_FIELD_MAX];
    if (failing != p->view_failing)
        mosquitto_log_printf(failing ? MOSQ_LOG_ERR : MOSQ_LOG_NOTICE,
                             failing ? "sealpipe: cannot read the registry %s; logins and "
                                       "revocations use the last copy read"
                                     : "sealpipe: registry %s readable again",
                             LOG_FIELD(f_path, p->db_path));
    else if (moved && !failing) /* view_load() moved the view's generation to g */
        mosquitto_log_printf(MOSQ_LOG_INFO, "sealpipe: registry reloaded (%zu tokens)",
                             p->view.ntokens);
    p->view_failing = failing;
    sessions_sweep(&p->sessions, &p->view, now, p->events); /* revoked, removed, expired */
    return MOSQ_ERR_SUCCESS;
}

/* ------------------------------------------------------------------------ */
/* Entry points                                                             */
/* ------------------------------------------------------------------------ */

static int split_filters(const char *value, char **out, int *n)
{
    char *copy = strdup(value), *save = NULL;

    if (!copy)
        return -1;
    for (char *t = strtok_r(copy, " ", &save); t && *n < MAX_FILTERS;
         t = strtok_r(NULL, " ", &save)) {
        if (mosquitto_sub_topic_check(t) != MOSQ_ERR_SUCCESS) {
            char f_t[LOG_FIELD_MAX];
            mosquitto_log_printf(MOSQ_LOG_ERR, "sealpipe: bad topic filter \"%s\"",
                                 LOG_FIELD(f_t, t));
            free(copy);
            return -1;
        }
        if (!(out[(*n)++] = strdup(t))) {
            free(copy);
            return -1;
        }
    }
    free(copy);
    return 0;
}

static int read_secret(struct plugin *p, const char *path)
{
    char buf[256], f_path[LOG_FIELD_MAX];
    FILE *f = fopen(path, "r");
    size_t n;

    if (!f) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "sealpipe: cannot read %s: %s", LOG_FIELD(f_path, path),
                             strerror(errno));
        return -1;
    }
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    if (n < 16) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "sealpipe: %s holds no secret", LOG_FIELD(f_path, path));
        return -1;
    }
    crypto_hash_sha256(p->daemon_hash, (const uint8_t *)buf, n);
    sodium_memzero(buf, sizeof buf);
    p->have_daemon = 1;
    return 0;
}

/* The options as given; the filters default to "#". */
struct options {
    const char *db, *secret, *pub, *sub;
    const char *journal;      /* NULL: no journal */
    long journal_sync_ms;     /* default 100 */
    long journal_min_free_mb; /* default 256 */
    const char *events;       /* NULL: no Live Inspector events */
    const char *answers;      /* NULL: the daemon publishes its answers itself */
};

/* A whole decimal number in [0, max] into *out: 0, or -1 (logged). */
static int option_number(const char *key, const char *v, long max, long *out)
{
    char *end;
    long n;

    errno = 0;
    n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < 0 || n > max) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "sealpipe: plugin_opt_%s is a number from 0 to %ld", key,
                             max);
        return -1;
    }
    *out = n;
    return 0;
}

/* Reads plugin_opt_*: 0, or MOSQ_ERR_INVAL (logged). */
static int read_options(struct plugin *p, const struct mosquitto_opt *options, int option_count,
                        struct options *o)
{
    char f_k[LOG_FIELD_MAX];

    for (int i = 0; i < option_count; i++) {
        const char *k = options[i].key, *v = options[i].value;
        if (strcmp(k, "registry") == 0)
            o->db = v;
        else if (strcmp(k, "daemon_secret") == 0)
            o->secret = v;
        else if (strcmp(k, "daemon_user") == 0)
            snprintf(p->daemon_user, sizeof p->daemon_user, "%s", v);
        else if (strcmp(k, "daemon_client_id") == 0)
            snprintf(p->daemon_client_id, sizeof p->daemon_client_id, "%s", v);
        else if (strcmp(k, "publish") == 0)
            o->pub = v;
        else if (strcmp(k, "subscribe") == 0)
            o->sub = v;
        else if (strcmp(k, "journal") == 0)
            o->journal = v;
        else if (strcmp(k, "events") == 0)
            o->events = v;
        else if (strcmp(k, "answers") == 0)
            o->answers = v;
        else if (strcmp(k, "journal_sync_ms") == 0) {
            if (option_number(k, v, 60000, &o->journal_sync_ms))
                return MOSQ_ERR_INVAL;
        } else if (strcmp(k, "journal_min_free_mb") == 0) {
            if (option_number(k, v, 1L << 30, &o->journal_min_free_mb))
                return MOSQ_ERR_INVAL;
        } else if (strcmp(k, "retained_origins") == 0) {
            free(p->kept_path);
            p->kept_path = strdup(v);
        } else if (strcmp(k, "cross_profile") == 0) {
            if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
                mosquitto_log_printf(MOSQ_LOG_ERR,
                                     "sealpipe: plugin_opt_cross_profile is on or off");
                return MOSQ_ERR_INVAL;
            }
            p->cross_profile = strcmp(v, "on") == 0;
        } else
            mosquitto_log_printf(MOSQ_LOG_WARNING, "sealpipe: unknown option plugin_opt_%s",
                                 LOG_FIELD(f_k, k));
    }
    if (!o->db) {
        mosquitto_log_printf(MOSQ_LOG_ERR,
                             "sealpipe: plugin_opt_registry (the path of sealpipe.db) is required");
        return MOSQ_ERR_INVAL;
    }
    return MOSQ_ERR_SUCCESS;
}

/* Opens the registry and reads it, and the retained origins. 0 or MOSQ_ERR_INVAL. */
static int open_registry(struct plugin *p, const char *db)
{
    char f_db[LOG_FIELD_MAX], err[256];

    if (view_open(&p->view, db, err, sizeof err) != 0) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "sealpipe: cannot open %s: %s", LOG_FIELD(f_db, db),
                             err);
        return MOSQ_ERR_INVAL;
    }
    p->db_path = strdup(db);
    if (view_load(&p->view) != 0)
        mosquitto_log_printf(MOSQ_LOG_WARNING,
                             "sealpipe: %s has no registry yet; devices are refused until it does",
                             LOG_FIELD(f_db, db));
    if (p->kept_path && p->cross_profile)
        unlink(p->kept_path); /* stale by the time the option is off again */
    else if (p->kept_path)
        origins_restore(&p->origins, p->kept_path);
    return MOSQ_ERR_SUCCESS;
}

/* The device journal, when plugin_opt_journal names its folder. Its ids
 * continue after what the daemon has committed. 0 or MOSQ_ERR_INVAL. */
static int open_journal(struct plugin *p, const struct options *o)
{
    char f_dir[LOG_FIELD_MAX];
    uint64_t floor;

    if (!o->journal)
        return MOSQ_ERR_SUCCESS;
    floor = view_journal_floor(&p->view);
    if (jwriter_open(&p->journal, o->journal, floor, (int)o->journal_sync_ms,
                     (uint64_t)o->journal_min_free_mb << 20) != 0)
        return MOSQ_ERR_INVAL;
    mosquitto_log_printf(
        MOSQ_LOG_INFO, "sealpipe: journal %s next_id=%llu sync_ms=%ld min_free_mb=%ld",
        LOG_FIELD(f_dir, o->journal), (unsigned long long)jwriter_next_id(p->journal),
        o->journal_sync_ms, o->journal_min_free_mb);
    return MOSQ_ERR_SUCCESS;
}

/* The events the plugin handles, registered and unregistered together. */
static const struct {
    int event;
    MOSQ_FUNC_generic_callback cb;
} callbacks[] = {
    {MOSQ_EVT_BASIC_AUTH, on_basic_auth},
    {MOSQ_EVT_ACL_CHECK, on_acl_check},
    {MOSQ_EVT_MESSAGE, on_message},
    {MOSQ_EVT_DISCONNECT, on_disconnect},
    {MOSQ_EVT_TICK, on_tick},
};

#define NCALLBACKS (sizeof callbacks / sizeof callbacks[0])

/* Undoes mosquitto_plugin_init, from any point of it (callbacks never
 * registered are simply not found). */
static void plugin_free(struct plugin *p)
{
    for (size_t i = 0; i < NCALLBACKS; i++)
        (void)mosquitto_callback_unregister(p->id, callbacks[i].event, callbacks[i].cb, NULL);
    jwriter_close(p->journal);
    events_close(p->events);
    answers_close(p->answers);
    view_close(&p->view);
    origins_free(&p->origins);
    sessions_free(&p->sessions);
    for (int i = 0; i < p->npub; i++)
        free(p->pub_filters[i]);
    for (int i = 0; i < p->nsub; i++)
        free(p->sub_filters[i]);
    free(p->kept_path);
    free(p->db_path);
    sodium_memzero(p->daemon_hash, sizeof p->daemon_hash);
    free(p);
}

PLUGIN_EXPORT int mosquitto_plugin_version(int supported_version_count,
                                           const int *supported_versions)
{
    for (int i = 0; i < supported_version_count; i++)
        if (supported_versions[i] == 5)
            return 5;
    return -1;
}

PLUGIN_EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
                                        struct mosquitto_opt *options, int option_count)
{
    struct options o = {NULL, NULL, "#", "#", NULL, 100, 256, NULL, NULL};
    struct plugin *p;
    int rc = MOSQ_ERR_NOMEM;

    if (sodium_init() < 0)
        return MOSQ_ERR_UNKNOWN;
    if (!(p = calloc(1, sizeof *p)))
        return MOSQ_ERR_NOMEM;
    p->id = identifier;
    p->lines = CLIENT_LINES_BURST;
    p->lines_since = clock_mono_ms();
    if (sessions_init(&p->sessions) != MOSQ_ERR_SUCCESS ||
        origins_init(&p->origins) != MOSQ_ERR_SUCCESS)
        goto fail; /* rc: MOSQ_ERR_NOMEM */
    snprintf(p->daemon_user, sizeof p->daemon_user, "%s", DEFAULT_DAEMON);
    snprintf(p->daemon_client_id, sizeof p->daemon_client_id, "sealpipe");
    if ((rc = read_options(p, options, option_count, &o)) != MOSQ_ERR_SUCCESS)
        goto fail;
    rc = MOSQ_ERR_INVAL;
    if ((o.secret && read_secret(p, o.secret) != 0) ||
        split_filters(o.pub, p->pub_filters, &p->npub) ||
        split_filters(o.sub, p->sub_filters, &p->nsub))
        goto fail;
    if ((rc = open_registry(p, o.db)) != MOSQ_ERR_SUCCESS ||
        (rc = open_journal(p, &o)) != MOSQ_ERR_SUCCESS)
        goto fail;
    if ((o.events && events_open(&p->events, o.events) != 0) ||
        (o.answers && answers_open(&p->answers, o.answers) != 0)) {
        rc = MOSQ_ERR_INVAL;
        goto fail;
    }
    mosquitto_log_printf(MOSQ_LOG_INFO, "sealpipe: auth plugin ready (%zu tokens, %zu profiles)",
                         p->view.ntokens, p->view.nprofiles);
    for (size_t i = 0; i < NCALLBACKS; i++)
        if (mosquitto_callback_register(identifier, callbacks[i].event, callbacks[i].cb, NULL, p)) {
            rc = MOSQ_ERR_UNKNOWN;
            goto fail;
        }
    *userdata = p;
    return MOSQ_ERR_SUCCESS;

fail:
    plugin_free(p);
    return rc;
}

PLUGIN_EXPORT int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options,
                                           int option_count)
{
    struct plugin *p = userdata;

    (void)options;
    (void)option_count;
    if (!p)
        return MOSQ_ERR_SUCCESS;
    if (p->kept_path && !p->cross_profile)
        origins_save(&p->origins, p->kept_path);
    plugin_free(p);
    return MOSQ_ERR_SUCCESS;
}
