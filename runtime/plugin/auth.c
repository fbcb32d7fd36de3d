/*
 * auth.c - sealpipe_auth.so, the mosquitto 2.0 plugin that makes a broker
 * speak TagoIO's MQTT rules for sealpipe's registry (issue #5).
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
 * Authorization (MOSQ_EVT_ACL_CHECK): a device publishes to its own
 * $tip[s]/<serial>/push|pull and reads its own $tip[s]/<serial>/ack; a
 * profile context does the same for every device of the profile, and for
 * well-formed serials no device has (so that it hears ERR|device_not_found),
 * and nothing else (it is no device: its messages carry no identity); other
 * topics follow the plugin_opt_publish / plugin_opt_subscribe filters (with
 * %s for the serial; default "#": anything that does not start with '$').
 * Nothing else starting with '$' (the daemon's $sealpipe/, $SYS, another
 * device's $tip topics) is reachable. Denials are logged with the client's
 * identity and the topic, every field escaped (log_field).
 *
 * Profiles are namespaces: a device reads a message on those other topics
 * only if a device of its own profile published it, or the daemon for its
 * profile (see "Origins"), unless plugin_opt_cross_profile is on.
 *
 * Identity (MOSQ_EVT_MESSAGE): every message a device publishes carries the
 * MQTT v5 user property "sealpipe-device" = its serial, whatever protocol it
 * speaks; that property and "sealpipe-profile" set by any client other than
 * the daemon are removed first. The daemon attributes messages on any topic
 * by the first, and names the profile an analysis's publish is for with the
 * second.
 *
 * Revocation (MOSQ_EVT_TICK, looked at every 100 ms): the registry is read
 * into memory at start and again whenever its generation number moves (one
 * small query each time; nothing touches SQLite in the auth or ACL paths). Each live
 * session remembers its token; a session whose token was revoked, has
 * expired, or whose device was removed is kicked at the next tick.
 *
 * The broker is single-threaded: no locks. Options (plugin_opt_<key>):
 *   registry      path of sealpipe.db (required; keys need 3+ characters)
 *   daemon_user   the daemon's username (default "sealpipe-daemon")
 *   daemon_client_id  the daemon's client id, refused to everyone else
 *                 (default "sealpipe")
 *   daemon_secret file holding the daemon's password (required)
 *   publish       space-separated filters devices may also publish to
 *   subscribe     the same for subscribing and reading
 *   cross_profile on: devices read every profile's messages (default off)
 *   retained_origins  file keeping retained messages' origins across a clean
 *                 restart (see kept_save)
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>
#include <sodium.h>
#include <sqlite3.h>

#define IDENTITY_PROP "sealpipe-device"
#define PROFILE_PROP  "sealpipe-profile" /* set by the daemon only: the profile it speaks for */
#ifndef ORIGIN_WINDOW
#define ORIGIN_WINDOW 262144 /* messages per origin generation, see "Origins" */
#endif
#define TOKEN_LEN        36 /* registry tokens: UUID text */
#define MAX_SERIAL       100
#define MAX_PROFILE_NAME 100
#define MAX_FILTERS      32
#define LOG_FIELD_MAX    512 /* a logged field, escaped; longer ones are cut */
#define DEFAULT_DAEMON   "sealpipe-daemon"

enum perm { PERM_FULL = 0, PERM_WRITE = 1, PERM_READ = 2 }; /* as schemas/registry.sql */

/* One device token of the registry, as the plugin keeps it. */
struct token {
    uint8_t hash[crypto_hash_sha256_BYTES];
    int64_t id;
    int perm;
    int64_t expires_ms; /* 0: never */
    int revoked;
    char serial[MAX_SERIAL + 1];
};

/* One profile: its auth hash (first: the bsearch key) and its name. */
struct profile {
    uint8_t auth_hash[8];
    char name[MAX_PROFILE_NAME + 1];
};

/* One device: its serial and its profile's auth hash. */
struct device {
    char serial[MAX_SERIAL + 1];
    uint8_t auth_hash[8];
};

/*
 * A connected client that logged in through this plugin. Device sessions
 * remember their token (by hash: ids are reused after `device rm` and `add`)
 * and are kicked when it goes. Only a client with a live session may
 * publish: mosquitto 2.0.11 sends a will without the MESSAGE event (no
 * identity stamp), checking only the ACL, after the DISCONNECT event or, on a
 * client-id takeover, after the new client's login; removing the session
 * first makes every will of a device or profile context fail that check.
 */
struct session {
    const struct mosquitto *client; /* identity of the connection */
    char *client_id;
    char *who; /* the username the plugin gave it, or the daemon's */
    int has_token;
    uint8_t token_hash[crypto_hash_sha256_BYTES];
};

/* Where a stored message came from: see "Origins" below. */
struct origin {
    const void *payload; /* the broker's copy of the message; NULL: free slot */
    int known;           /* 0: no profile (a device of none, an unstamped daemon message) */
    uint8_t profile[8];  /* auth hash of the publisher's profile */
};

struct origins {
    struct origin *slot; /* open addressing by payload address */
    size_t n, cap;       /* cap: a power of two, or 0 */
};

/* The origin of a retained message, by topic (they outlive any window). */
struct kept {
    struct kept *next;
    const void *payload; /* NULL: read back from plugin_opt_retained_origins */
    uint32_t len;
    uint8_t digest[16]; /* of the payload: identifies a message read back */
    int known;
    uint8_t profile[8];
    char topic[]; /* NUL-terminated */
};

struct plugin {
    mosquitto_plugin_id_t *id;
    sqlite3 *db;
    sqlite3_stmt *gen; /* SELECT n FROM registry_generation, prepared once */
    char *db_path;
    char daemon_user[128];
    char daemon_client_id[128]; /* reserved: no one else may take it */
    uint8_t daemon_hash[crypto_hash_sha256_BYTES];
    int have_daemon;
    char *pub_filters[MAX_FILTERS], *sub_filters[MAX_FILTERS];
    int npub, nsub;
    /* The registry in memory, sorted for bsearch. */
    struct token *tokens;
    size_t ntokens;
    struct device *devices;
    size_t ndevices;
    struct profile *profiles;
    size_t nprofiles;
    int64_t generation;
    int64_t last_check_ms;         /* monotonic */
    int view_failing;              /* the registry could not be read at the last look */
    int64_t last_login_check_ms;   /* monotonic: see fresh_view() */
    struct session *sessions;      /* open addressing by client address; NULL client: free */
    size_t nsessions, capsessions; /* capsessions: a power of two, or 0 */
    int cross_profile;             /* 1: devices read every profile's messages */
    char *kept_path;               /* plugin_opt_retained_origins, or NULL */
    struct origins young, old;     /* payload -> profile, see "Origins" */
    struct kept **kept;            /* retained topic -> profile, chained */
    size_t nkept, capkept;         /* capkept: a power of two, or 0 */
};

static struct plugin plug;

/* Wall-clock milliseconds (token expiry is wall-clock time). */
static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Monotonic milliseconds, for the tick's throttle. */
static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* [A-Za-z0-9_-]{1,100}: what the registry accepts as a serial. */
static int serial_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isalnum((unsigned char)s[n]) && s[n] != '_' && s[n] != '-')
            return 0;
    return n > 0 && n <= MAX_SERIAL;
}

/*
 * s as one log field: bytes below 0x20, 0x7f, '"' and '\' become \n, \r,
 * \t, \", \\ or \xHH, so nothing a client sends (client id, username,
 * topic) or a file holds can end a broker log line or forge the next one.
 * Writes into buf (cut to fit, always terminated) and returns it.
 */
static const char *log_field(char *buf, size_t cap, const char *s)
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

/* A log field in a buffer of the calling block (one per field of a line). */
#define LOG_FIELD(name, s) log_field(name, sizeof name, (s))

/* ------------------------------------------------------------------------ */
/* The registry in memory                                                   */
/* ------------------------------------------------------------------------ */

static int cmp_token(const void *a, const void *b)
{
    return memcmp(((const struct token *)a)->hash, ((const struct token *)b)->hash,
                  crypto_hash_sha256_BYTES);
}

static int cmp_device(const void *a, const void *b)
{
    return strcmp(((const struct device *)a)->serial, ((const struct device *)b)->serial);
}

/* Orders struct profile by auth hash; the key may be a bare 8-byte hash. */
static int cmp_profile(const void *a, const void *b)
{
    return memcmp(a, b, 8);
}

/* Reads the whole result of sql with one row callback; 0 or -1. */
static int each_row(const char *sql, int (*row)(sqlite3_stmt *s, void *ud), void *ud)
{
    sqlite3_stmt *s;
    int rc;

    if (sqlite3_prepare_v2(plug.db, sql, -1, &s, NULL) != SQLITE_OK)
        return -1;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        if (row(s, ud) != 0) {
            rc = SQLITE_ERROR;
            break;
        }
    sqlite3_finalize(s);
    return rc == SQLITE_DONE ? 0 : -1;
}

struct loading {
    struct token *tokens;
    size_t ntokens, captokens;
    struct device *devices;
    size_t ndevices, capdevices;
    struct profile *profiles;
    size_t nprofiles, capprofiles;
};

static void *grow(void *p, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return p;
    size_t c = *cap ? *cap * 2 : 64;
    void *np = realloc(p, c * size);
    if (np)
        *cap = c;
    return np;
}

static int token_row(sqlite3_stmt *s, void *ud)
{
    struct loading *l = ud;
    struct token *t;
    const void *h = sqlite3_column_blob(s, 0);
    const char *serial = (const char *)sqlite3_column_text(s, 5);

    if (!h || sqlite3_column_bytes(s, 0) != crypto_hash_sha256_BYTES || !serial ||
        !serial_ok(serial))
        return 0; /* not a row we can use; the registry checks what it writes */
    void *np = grow(l->tokens, &l->captokens, l->ntokens, sizeof(*l->tokens));
    if (!np)
        return -1;
    l->tokens = np;
    t = &l->tokens[l->ntokens++];
    memcpy(t->hash, h, sizeof t->hash);
    t->id = sqlite3_column_int64(s, 1);
    t->perm = sqlite3_column_int(s, 2);
    t->expires_ms = sqlite3_column_int64(s, 3);
    t->revoked = sqlite3_column_type(s, 4) != SQLITE_NULL;
    snprintf(t->serial, sizeof t->serial, "%s", serial);
    return 0;
}

static int device_row(sqlite3_stmt *s, void *ud)
{
    struct loading *l = ud;
    const char *serial = (const char *)sqlite3_column_text(s, 0);
    const void *ah = sqlite3_column_blob(s, 1);

    if (!serial || !serial_ok(serial) || !ah || sqlite3_column_bytes(s, 1) != 8)
        return 0;
    void *np = grow(l->devices, &l->capdevices, l->ndevices, sizeof(*l->devices));
    if (!np)
        return -1;
    l->devices = np;
    snprintf(l->devices[l->ndevices].serial, MAX_SERIAL + 1, "%s", serial);
    memcpy(l->devices[l->ndevices].auth_hash, ah, 8);
    l->ndevices++;
    return 0;
}

static int profile_row(sqlite3_stmt *s, void *ud)
{
    struct loading *l = ud;
    const void *ah = sqlite3_column_blob(s, 0);
    const char *name = (const char *)sqlite3_column_text(s, 1);

    if (!ah || sqlite3_column_bytes(s, 0) != 8 || !name)
        return 0;
    void *np = grow(l->profiles, &l->capprofiles, l->nprofiles, sizeof(*l->profiles));
    if (!np)
        return -1;
    l->profiles = np;
    memcpy(l->profiles[l->nprofiles].auth_hash, ah, 8);
    snprintf(l->profiles[l->nprofiles].name, sizeof l->profiles[0].name, "%s", name);
    l->nprofiles++;
    return 0;
}

static void free_view(void)
{
    if (plug.tokens)
        sodium_memzero(plug.tokens, plug.ntokens * sizeof(*plug.tokens));
    free(plug.tokens);
    free(plug.devices);
    free(plug.profiles);
    plug.tokens = NULL;
    plug.devices = NULL;
    plug.profiles = NULL;
    plug.ntokens = plug.ndevices = plug.nprofiles = 0;
}

/* The registry's generation number, or -1 (no registry yet, or an error). */
static int64_t generation(void)
{
    int64_t g = -1;

    /* Prepared on first success: the table may not exist yet at start. */
    if (!plug.gen && sqlite3_prepare_v2(plug.db, "SELECT n FROM registry_generation WHERE id = 1",
                                        -1, &plug.gen, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(plug.gen) == SQLITE_ROW)
        g = sqlite3_column_int64(plug.gen, 0);
    sqlite3_reset(plug.gen);
    return g;
}

/* Reads tokens, devices and profiles in one read transaction. 0 or -1. */
static int load_view(void)
{
    struct loading l;
    int rc;

    memset(&l, 0, sizeof l);
    if (sqlite3_exec(plug.db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    rc = each_row("SELECT t.token_hash, t.id, t.perm, t.expires_at, t.revoked_at, d.serial"
                  " FROM device_tokens t JOIN devices d ON d.id = t.device_id",
                  token_row, &l);
    if (rc == 0)
        rc = each_row("SELECT d.serial, p.auth_hash FROM devices d"
                      " JOIN profiles p ON p.id = d.profile_id",
                      device_row, &l);
    if (rc == 0)
        rc = each_row("SELECT auth_hash, name FROM profiles", profile_row, &l);
    int64_t g = rc == 0 ? generation() : -1;
    sqlite3_exec(plug.db, "COMMIT", NULL, NULL, NULL);
    if (rc != 0 || g < 0) {
        if (l.tokens)
            sodium_memzero(l.tokens, l.ntokens * sizeof(*l.tokens));
        free(l.tokens);
        free(l.devices);
        free(l.profiles);
        return -1;
    }
    qsort(l.tokens, l.ntokens, sizeof(*l.tokens), cmp_token);
    qsort(l.devices, l.ndevices, sizeof(*l.devices), cmp_device);
    qsort(l.profiles, l.nprofiles, sizeof(*l.profiles), cmp_profile);
    free_view();
    plug.tokens = l.tokens;
    plug.ntokens = l.ntokens;
    plug.devices = l.devices;
    plug.ndevices = l.ndevices;
    plug.profiles = l.profiles;
    plug.nprofiles = l.nprofiles;
    plug.generation = g;
    return 0;
}

static const struct token *find_token(const uint8_t hash[crypto_hash_sha256_BYTES])
{
    struct token key;
    const struct token *t;

    memcpy(key.hash, hash, sizeof key.hash);
    t = plug.ntokens ? bsearch(&key, plug.tokens, plug.ntokens, sizeof(*t), cmp_token) : NULL;
    /* bsearch compared with memcmp; confirm in constant time. */
    return t && sodium_memcmp(t->hash, hash, sizeof key.hash) == 0 ? t : NULL;
}

static const struct device *find_device(const char *serial, size_t n)
{
    struct device key;

    if (n == 0 || n > MAX_SERIAL || !plug.ndevices)
        return NULL;
    memcpy(key.serial, serial, n);
    key.serial[n] = '\0';
    return bsearch(&key, plug.devices, plug.ndevices, sizeof key, cmp_device);
}

/* A token that may log in now: known, not revoked, not expired. */
static int token_live(const struct token *t, int64_t now)
{
    return t && !t->revoked && (t->expires_ms == 0 || now < t->expires_ms);
}

/* ------------------------------------------------------------------------ */
/* Sessions                                                                 */
/* ------------------------------------------------------------------------ */

/* A slot for address p in an open-addressing table of cap (a power of two). */
static size_t ptr_hash(const void *p, size_t cap)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 29;
    x *= 0x9e3779b97f4a7c15ull;
    return (size_t)(x >> 32) & (cap - 1);
}

static size_t slot_of(const struct mosquitto *client)
{
    return ptr_hash(client, plug.capsessions);
}

/* The session of this connection: one probe sequence, on every publish. */
static struct session *session_of(const struct mosquitto *client)
{
    if (!plug.capsessions)
        return NULL;
    for (size_t i = slot_of(client); plug.sessions[i].client; i = (i + 1) & (plug.capsessions - 1))
        if (plug.sessions[i].client == client)
            return &plug.sessions[i];
    return NULL;
}

/* Frees slot x and closes the gap (backward shift: no tombstones). */
static void session_drop(struct session *x)
{
    size_t mask = plug.capsessions - 1, i = (size_t)(x - plug.sessions), j = i;

    free(x->client_id);
    free(x->who);
    for (;;) {
        j = (j + 1) & mask;
        if (!plug.sessions[j].client)
            break;
        size_t k = slot_of(plug.sessions[j].client);
        /* Move j back into i unless its home k lies cyclically in (i, j]. */
        if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
            plug.sessions[i] = plug.sessions[j];
            i = j;
        }
    }
    memset(&plug.sessions[i], 0, sizeof plug.sessions[i]);
    plug.nsessions--;
}

/* Forgets the session of this connection (not another's with the same id). */
static void session_forget(const struct mosquitto *client)
{
    struct session *x = session_of(client);
    if (x)
        session_drop(x);
}

static int sessions_grow(void)
{
    size_t cap = plug.capsessions ? plug.capsessions * 2 : 256;
    struct session *old = plug.sessions, *tab = calloc(cap, sizeof(*tab));
    size_t oldcap = plug.capsessions;

    if (!tab)
        return -1;
    plug.sessions = tab;
    plug.capsessions = cap;
    for (size_t i = 0; i < oldcap; i++)
        if (old[i].client) {
            size_t j = slot_of(old[i].client);
            while (tab[j].client)
                j = (j + 1) & (cap - 1);
            tab[j] = old[i];
        }
    free(old);
    return 0;
}

/*
 * Records a login. A client id held by a live session of another identity is
 * refused (a device must not take over the daemon's or another device's
 * session, and with it their queued messages); the same identity takes its
 * own session over, and the old connection's session goes at once (so its
 * will, sent during the takeover, is refused). Returns 0, MOSQ_ERR_AUTH or
 * MOSQ_ERR_NOMEM. A linear scan: logins are rare next to publishes.
 */
static int session_add(const struct mosquitto *client, const char *client_id, const char *who,
                       const uint8_t *token_hash)
{
    struct session *x;

    if (!client_id)
        return MOSQ_ERR_AUTH;
    for (size_t i = 0; i < plug.capsessions; i++) {
        x = &plug.sessions[i];
        if (x->client && strcmp(x->client_id, client_id) == 0) {
            if (strcmp(x->who, who) != 0)
                return MOSQ_ERR_AUTH;
            session_drop(x);
            break;
        }
    }
    session_forget(client); /* a reused address: that connection is gone */
    if ((plug.nsessions + 1) * 2 > plug.capsessions && sessions_grow() != 0)
        return MOSQ_ERR_NOMEM;
    size_t i = slot_of(client);
    while (plug.sessions[i].client)
        i = (i + 1) & (plug.capsessions - 1);
    x = &plug.sessions[i];
    x->client_id = strdup(client_id);
    x->who = strdup(who);
    if (!x->client_id || !x->who) {
        free(x->client_id);
        free(x->who);
        memset(x, 0, sizeof *x);
        return MOSQ_ERR_NOMEM;
    }
    x->client = client;
    x->has_token = token_hash != NULL;
    if (token_hash)
        memcpy(x->token_hash, token_hash, sizeof x->token_hash);
    plug.nsessions++;
    return MOSQ_ERR_SUCCESS;
}

/* Kicks every device session whose token may no longer log in. */
static void sweep(int64_t now)
{
    for (size_t i = 0; i < plug.capsessions; i++) {
        struct session *x = &plug.sessions[i];
        const struct token *t;
        if (!x->client || !x->has_token || token_live(t = find_token(x->token_hash), now))
            continue;
        char f_id[LOG_FIELD_MAX];
        mosquitto_log_printf(MOSQ_LOG_NOTICE, "sealpipe: disconnecting client %s: its token was %s",
                             LOG_FIELD(f_id, x->client_id),
                             !t           ? "removed (or its device)"
                             : t->revoked ? "revoked"
                                          : "expired");
        char *id = strdup(x->client_id);
        session_drop(x);
        if (id)
            mosquitto_kick_client_by_clientid(id, false);
        free(id);
        i--; /* the shift may have moved an unvisited entry here */
    }
}

/* ------------------------------------------------------------------------ */
/* Origins: profiles are namespaces                                         */
/* ------------------------------------------------------------------------ */

/*
 * A device reads only what its own profile published (TagoIO keeps each
 * profile's topics apart), unless plugin_opt_cross_profile is on. The READ
 * check of mosquitto 2.0.11 gets the topic and the stored message's payload
 * pointer, but neither its properties nor its publisher; the MESSAGE event
 * gets the same payload pointer first, and may replace it. So on_message
 * notes "this payload came from that profile" and the READ check looks it
 * up. A live message is routed (and READ-checked) right after its MESSAGE
 * event, QoS 2 at PUBREL, a queued one again when its device reconnects.
 *
 * A payload address is unique while its message lives; once the broker
 * frees it the address may come back for a new message, which then passes
 * on_message and overwrites the note. Nothing else reaches a device: $
 * topics are checked by name, wills of devices are dropped (struct session)
 * and the daemon sets none. An empty message gets a one-byte payload so
 * that it has an address too.
 *
 * Memory is bounded by two generations of ORIGIN_WINDOW notes (at most
 * 2 * 2 * ORIGIN_WINDOW slots of 24 bytes, about 25 MB): when the young one
 * is full the old one is dropped. A message still queued for an
 * offline device after 2 * ORIGIN_WINDOW newer messages has no known origin
 * when its device reconnects and is not delivered (fail closed). Retained
 * messages are noted by topic as well, without a window, and kept across a
 * clean restart (kept_save); the queued messages a restarted broker reloads
 * have no known origin.
 */

static struct origin *origins_find(const struct origins *g, const void *payload)
{
    if (!g->cap)
        return NULL;
    for (size_t i = ptr_hash(payload, g->cap); g->slot[i].payload; i = (i + 1) & (g->cap - 1))
        if (g->slot[i].payload == payload)
            return &g->slot[i];
    return NULL;
}

/* Doubles g (1024 slots at first). 0 or -1. */
static int origins_grow(struct origins *g)
{
    size_t cap = g->cap ? g->cap * 2 : 1024;
    struct origin *tab = calloc(cap, sizeof(*tab));

    if (!tab)
        return -1;
    for (size_t i = 0; i < g->cap; i++)
        if (g->slot[i].payload) {
            size_t j = ptr_hash(g->slot[i].payload, cap);
            while (tab[j].payload)
                j = (j + 1) & (cap - 1);
            tab[j] = g->slot[i];
        }
    free(g->slot);
    g->slot = tab;
    g->cap = cap;
    return 0;
}

/* Notes payload's origin (profile NULL: none). Never fails silently open. */
static void origin_note(const void *payload, const uint8_t *profile)
{
    struct origins *g = &plug.young;
    struct origin *o = origins_find(g, payload);

    if (!o && g->n >= ORIGIN_WINDOW) {
        free(plug.old.slot);
        plug.old = *g;
        memset(g, 0, sizeof *g);
    }
    if (!o && (g->n + 1) * 2 > g->cap) {
        if (origins_grow(g) != 0) {
            /* No room: at least no stale note may speak for this payload. */
            if ((o = origins_find(&plug.old, payload)) != NULL)
                o->known = 0;
            return;
        }
    }
    if (!o) {
        size_t i = ptr_hash(payload, g->cap);
        while (g->slot[i].payload)
            i = (i + 1) & (g->cap - 1);
        o = &g->slot[i];
        o->payload = payload;
        g->n++;
    }
    o->known = profile != NULL;
    memset(o->profile, 0, sizeof o->profile);
    if (profile)
        memcpy(o->profile, profile, sizeof o->profile);
}

static size_t topic_hash(const char *t, size_t cap)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *t; t++)
        h = (h ^ (unsigned char)*t) * 1099511628211ull;
    return (size_t)(h ^ (h >> 32)) & (cap - 1);
}

static struct kept **kept_link(const char *topic)
{
    if (!plug.capkept)
        return NULL;
    struct kept **k = &plug.kept[topic_hash(topic, plug.capkept)];
    while (*k && strcmp((*k)->topic, topic) != 0)
        k = &(*k)->next;
    return k;
}

/* The entry for topic, made if there is none; NULL if out of memory. */
static struct kept *kept_entry(const char *topic)
{
    struct kept **k = kept_link(topic), *x;

    if (k && *k)
        return *k;
    if (plug.nkept >= plug.capkept) {
        size_t cap = plug.capkept ? plug.capkept * 2 : 256;
        struct kept **tab = calloc(cap, sizeof(*tab));
        if (!tab)
            return NULL;
        for (size_t i = 0; i < plug.capkept; i++)
            while ((x = plug.kept[i]) != NULL) {
                plug.kept[i] = x->next;
                size_t j = topic_hash(x->topic, cap);
                x->next = tab[j];
                tab[j] = x;
            }
        free(plug.kept);
        plug.kept = tab;
        plug.capkept = cap;
    }
    size_t len = strlen(topic);
    if (!(x = calloc(1, sizeof(*x) + len + 1)))
        return NULL;
    memcpy(x->topic, topic, len + 1);
    k = &plug.kept[topic_hash(topic, plug.capkept)];
    x->next = *k;
    *k = x;
    plug.nkept++;
    return x;
}

static void kept_drop(const char *topic)
{
    struct kept **k = kept_link(topic), *x;

    if (k && (x = *k) != NULL) {
        *k = x->next;
        free(x);
        plug.nkept--;
    }
}

static void payload_digest(const void *payload, uint32_t len, uint8_t digest[16])
{
    crypto_generichash(digest, 16, payload, len, NULL, 0);
}

/* The retained message on topic is (payload, len), from profile (NULL: none). */
static void kept_note(const char *topic, const void *payload, uint32_t len, const uint8_t *profile)
{
    struct kept *x = kept_entry(topic);

    if (!x)
        return; /* the origin note by payload still holds, for a while */
    x->payload = payload;
    x->len = len;
    payload_digest(payload, len, x->digest);
    x->known = profile != NULL;
    memset(x->profile, 0, sizeof x->profile);
    if (profile)
        memcpy(x->profile, profile, sizeof x->profile);
}

/* Does entry x describe the stored message (payload, len)? An entry read
 * back at start is bound to the first message with its length and digest. */
static int kept_matches(struct kept *x, const void *payload, uint32_t len)
{
    uint8_t d[16];

    if (x->payload)
        return x->payload == payload;
    if (x->len != len)
        return 0;
    payload_digest(payload, len, d);
    if (sodium_memcmp(d, x->digest, sizeof d) != 0)
        return 0;
    x->payload = payload;
    return 1;
}

/* The profile a stored message (topic, payload) came from: 1 with *profile
 * set, or 0 if it came from none or is not known. */
static int origin_of(const char *topic, const void *payload, uint32_t len, uint8_t profile[8])
{
    const struct origin *o = origins_find(&plug.young, payload);
    struct kept **k;

    if (!o)
        o = origins_find(&plug.old, payload);
    if (o) {
        memcpy(profile, o->profile, 8);
        return o->known;
    }
    if ((k = kept_link(topic)) != NULL && *k && kept_matches(*k, payload, len)) {
        memcpy(profile, (*k)->profile, 8);
        return (*k)->known;
    }
    return 0;
}

/*
 * The retained messages' origins outlive the broker: at a clean stop they
 * are written to plugin_opt_retained_origins (one line per message of a
 * known profile: profile hash, length, digest, topic; topics hold no control
 * characters),
 * and read back, then removed, at the next start. A message is matched by
 * topic, length and digest, so a broker that reloads an older snapshot (or
 * none) gets no wrong origin; after a crash there is no file and reloaded
 * retained messages reach no device.
 */
static void kept_save(const char *path)
{
    char tmp[4096], hex[33];
    FILE *f;
    int fd;

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return;
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0 ||
        !(f = fdopen(fd, "w"))) {
        if (fd >= 0)
            close(fd);
        return;
    }
    for (size_t i = 0; i < plug.capkept; i++)
        for (const struct kept *x = plug.kept[i]; x; x = x->next) {
            if (!x->known)
                continue;
            sodium_bin2hex(hex, sizeof hex, x->profile, 8);
            fprintf(f, "%s %" PRIu32 " ", hex, x->len);
            sodium_bin2hex(hex, sizeof hex, x->digest, 16);
            fprintf(f, "%s %s\n", hex, x->topic);
        }
    int bad = fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0)
        unlink(tmp);
}

static int hex_exact(const char *hex, size_t n, uint8_t *out)
{
    size_t got = 0;
    return strlen(hex) == 2 * n && sodium_hex2bin(out, n, hex, 2 * n, NULL, &got, NULL) == 0 &&
           got == n;
}

/* Reads back what kept_save wrote, then removes the file. */
static void kept_restore(const char *path)
{
    char *line = NULL, f_path[LOG_FIELD_MAX];
    size_t cap = 0, n = 0;
    ssize_t len;
    FILE *f = fopen(path, "r");

    if (!f)
        return;
    while ((len = getline(&line, &cap, f)) > 0) {
        char *sp1, *sp2, *sp3, *end;
        uint8_t profile[8], digest[16];
        struct kept *x;
        if (line[len - 1] == '\n')
            line[--len] = '\0';
        if (!(sp1 = strchr(line, ' ')) || !(sp2 = strchr(sp1 + 1, ' ')) ||
            !(sp3 = strchr(sp2 + 1, ' ')))
            continue;
        *sp1 = *sp2 = *sp3 = '\0';
        unsigned long plen = strtoul(sp1 + 1, &end, 10);
        if (*end || plen > UINT32_MAX || !hex_exact(line, 8, profile) ||
            !hex_exact(sp2 + 1, 16, digest) || !sp3[1] || !(x = kept_entry(sp3 + 1)))
            continue;
        x->payload = NULL;
        x->len = (uint32_t)plen;
        memcpy(x->digest, digest, sizeof digest);
        memcpy(x->profile, profile, sizeof profile);
        x->known = 1;
        n++;
    }
    free(line);
    fclose(f);
    unlink(path); /* never again: a later crash must not reuse it */
    mosquitto_log_printf(MOSQ_LOG_INFO, "sealpipe: %zu retained message origins read from %s", n,
                         LOG_FIELD(f_path, path));
}

static void origins_free(void)
{
    free(plug.young.slot);
    free(plug.old.slot);
    for (size_t i = 0; i < plug.capkept; i++)
        for (struct kept *x = plug.kept[i], *next; x; x = next) {
            next = x->next;
            free(x);
        }
    free(plug.kept);
}

/* ------------------------------------------------------------------------ */
/* Callbacks                                                                */
/* ------------------------------------------------------------------------ */

/*
 * A login that the view refuses may be for a device added a moment ago:
 * before refusing, look at the registry's generation once (at most every
 * 10 ms, so a flood of bad logins costs little) and reload if it moved.
 * Returns 1 if the view changed.
 */
static int fresh_view(void)
{
    int64_t mono = mono_ms(), g;

    if (mono - plug.last_login_check_ms < 10)
        return 0;
    plug.last_login_check_ms = mono;
    g = generation();
    return g >= 0 && g != plug.generation && load_view() == 0;
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

static int on_basic_auth(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_basic_auth *ev = event_data;
    const char *user = ev->username, *pw = ev->password;
    const char *client_id = mosquitto_client_id(ev->client);
    uint8_t h[crypto_hash_sha256_BYTES];
    char name[16 + MAX_SERIAL];
    int64_t now = now_ms();
    int rc;

    (void)event;
    (void)userdata;
    if (!user || !pw)
        goto refuse;
    if (plug.have_daemon && strcmp(user, plug.daemon_user) == 0) {
        crypto_hash_sha256(h, (const uint8_t *)pw, strlen(pw));
        if (sodium_memcmp(h, plug.daemon_hash, sizeof h) != 0)
            goto refuse;
        rc = session_add(ev->client, client_id, plug.daemon_user, NULL);
        if (rc == MOSQ_ERR_AUTH)
            goto refuse;
        return rc;
    }
    /* The daemon's session (and its queue) is the daemon's alone. */
    if (client_id && strcmp(client_id, plug.daemon_client_id) == 0)
        goto refuse;
    if (strcmp(user, "Token") == 0) {
        const struct token *t;
        if (strlen(pw) != TOKEN_LEN)
            goto refuse;
        crypto_hash_sha256(h, (const uint8_t *)pw, TOKEN_LEN);
        t = find_token(h);
        if (!t && fresh_view())
            t = find_token(h);
        if (!token_live(t, now))
            goto refuse;
        snprintf(name, sizeof name, "d:%d:%s", t->perm, t->serial);
        rc = session_add(ev->client, client_id, name, h);
        if (rc == MOSQ_ERR_AUTH)
            goto refuse;
        if (rc != MOSQ_ERR_SUCCESS || mosquitto_set_username(ev->client, name) != MOSQ_ERR_SUCCESS)
            return MOSQ_ERR_NOMEM;
        return MOSQ_ERR_SUCCESS;
    }
    /* TagoTiP: the auth hash split over username and password (§3.1). */
    if (is_hex8(user) && is_hex8(pw)) {
        uint8_t ah[8];
        char hex[17];
        snprintf(hex, sizeof hex, "%s%s", user, pw);
        for (int i = 0; i < 8; i++) {
            unsigned v;
            sscanf(hex + 2 * i, "%2x", &v);
            ah[i] = (uint8_t)v;
        }
        int known = plug.nprofiles &&
                    bsearch(ah, plug.profiles, plug.nprofiles, sizeof(*plug.profiles), cmp_profile);
        if (!known && fresh_view())
            known = plug.nprofiles &&
                    bsearch(ah, plug.profiles, plug.nprofiles, sizeof(*plug.profiles), cmp_profile);
        if (known) {
            for (int i = 0; i < 16; i++)
                hex[i] = (char)tolower((unsigned char)hex[i]);
            snprintf(name, sizeof name, "p:%s", hex);
            rc = session_add(ev->client, client_id, name, NULL);
            if (rc == MOSQ_ERR_AUTH)
                goto refuse;
            if (rc != MOSQ_ERR_SUCCESS ||
                mosquitto_set_username(ev->client, name) != MOSQ_ERR_SUCCESS)
                return MOSQ_ERR_NOMEM;
            return MOSQ_ERR_SUCCESS;
        }
    }
refuse:;
    char f_id[LOG_FIELD_MAX], f_user[LOG_FIELD_MAX], f_addr[LOG_FIELD_MAX];
    mosquitto_log_printf(MOSQ_LOG_NOTICE, "sealpipe: refused client %s (username %s) from %s",
                         LOG_FIELD(f_id, client_id), LOG_FIELD(f_user, user),
                         LOG_FIELD(f_addr, mosquitto_client_address(ev->client)));
    return MOSQ_ERR_AUTH;
}

/* Who a client is, from the username on_basic_auth gave it. */
enum kind { K_NONE, K_DAEMON, K_DEVICE, K_PROFILE };

struct who {
    enum kind kind;
    int perm;
    const char *serial;   /* K_DEVICE */
    uint8_t auth_hash[8]; /* K_PROFILE */
};

static struct who who_is(struct mosquitto *client)
{
    const char *u = mosquitto_client_username(client);
    struct who w = {K_NONE, 0, NULL, {0}};

    if (!u)
        return w;
    if (plug.have_daemon && strcmp(u, plug.daemon_user) == 0) {
        w.kind = K_DAEMON;
    } else if (u[0] == 'd' && u[1] == ':' && u[2] >= '0' && u[2] <= '2' && u[3] == ':') {
        w.kind = K_DEVICE;
        w.perm = u[2] - '0';
        w.serial = u + 4;
    } else if (u[0] == 'p' && u[1] == ':' && strlen(u) == 18) {
        w.kind = K_PROFILE;
        for (int i = 0; i < 8; i++) {
            unsigned v;
            if (sscanf(u + 2 + 2 * i, "%2x", &v) != 1)
                return (struct who){K_NONE, 0, NULL, {0}};
            w.auth_hash[i] = (uint8_t)v;
        }
    }
    return w;
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
 * May the profile context with this auth hash use the TagoTiP topics of this
 * serial? Its own devices', and those of a well-formed serial no device has:
 * the daemon answers such a PUSH with ERR|device_not_found (TagoTiP §4.3) on
 * the ack topic and keeps it as a dead letter. Never another profile's
 * device. Checked per message: a serial that becomes a device of another
 * profile is out of reach from then on, subscription or not.
 */
static int context_reaches(const uint8_t auth_hash[8], const char *serial, size_t n)
{
    char s[MAX_SERIAL + 1];
    const struct device *d = find_device(serial, n);

    if (d)
        return memcmp(d->auth_hash, auth_hash, 8) == 0;
    if (n == 0 || n > MAX_SERIAL)
        return 0;
    memcpy(s, serial, n);
    s[n] = '\0';
    return serial_ok(s); /* no wildcard, nothing the registry could not hold */
}

/*
 * A retained message is one per topic for the whole broker: the topic belongs
 * to the profile whose message is retained there. Another profile's device
 * may not replace or clear it (1 if this device may). One of no known
 * profile (read back after a crash) may be replaced by anyone.
 */
static int may_retain(const struct who *w, const char *topic)
{
    const struct device *d = find_device(w->serial, strlen(w->serial));
    struct kept **k = kept_link(topic);

    if (!k || !*k || !(*k)->known)
        return 1;
    return d && memcmp((*k)->profile, d->auth_hash, 8) == 0;
}

/* 1 if the message being checked comes from the device's profile. */
static int of_own_profile(const struct who *w, const struct mosquitto_evt_acl_check *ev)
{
    const struct device *d = find_device(w->serial, strlen(w->serial));
    uint8_t from[8];

    return d && origin_of(ev->topic, ev->payload, ev->payloadlen, from) &&
           memcmp(from, d->auth_hash, 8) == 0;
}

static int acl_decide(const struct who *w, const struct mosquitto_evt_acl_check *ev)
{
    const char *topic = ev->topic;
    int access = ev->access;
    const char *serial, *leaf;
    size_t n;
    int writing = access == MOSQ_ACL_WRITE;

    if (w->kind == K_DAEMON)
        return 1;
    if (w->kind == K_NONE)
        return 0;
    if (access == MOSQ_ACL_UNSUBSCRIBE)
        return 1;
    if (w->kind == K_DEVICE &&
        ((writing && w->perm == PERM_READ) || (!writing && w->perm == PERM_WRITE)))
        return 0;
    if ((leaf = tip_topic(topic, &serial, &n)) != NULL) {
        if (!(w->kind == K_DEVICE ? strlen(w->serial) == n && memcmp(w->serial, serial, n) == 0
                                  : context_reaches(w->auth_hash, serial, n)))
            return 0;
        return writing ? strcmp(leaf, "push") == 0 || strcmp(leaf, "pull") == 0
                       : strcmp(leaf, "ack") == 0;
    }
    if (topic[0] == '$' || w->kind == K_PROFILE)
        return 0; /* $sealpipe/, $SYS, $CONTROL, ...: never for devices; a profile
                   * context speaks the TagoTiP binding only */
    if (writing)
        return allowed_by(plug.pub_filters, plug.npub, w->serial, topic) &&
               (!ev->retain || plug.cross_profile || may_retain(w, topic));
    return allowed_by(plug.sub_filters, plug.nsub, w->serial, topic) &&
           (access != MOSQ_ACL_READ || plug.cross_profile || of_own_profile(w, ev));
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_acl_check *ev = event_data;
    struct who w = who_is(ev->client);
    char f_who[LOG_FIELD_MAX], f_topic[LOG_FIELD_MAX];

    (void)event;
    (void)userdata;
    /* A write from a connection without a session is a will (see struct
     * session): never for devices or profile contexts. */
    if (ev->access == MOSQ_ACL_WRITE && w.kind != K_DAEMON && !session_of(ev->client)) {
        mosquitto_log_printf(MOSQ_LOG_NOTICE, "sealpipe: dropped the will of %s on %s",
                             w.kind == K_DEVICE ? LOG_FIELD(f_who, w.serial) : "a client",
                             LOG_FIELD(f_topic, ev->topic));
        return MOSQ_ERR_ACL_DENIED;
    }
    if (acl_decide(&w, ev))
        return MOSQ_ERR_SUCCESS;
    if (ev->access != MOSQ_ACL_READ) /* a read denial per message would flood the log */
        mosquitto_log_printf(MOSQ_LOG_NOTICE, "sealpipe: denied %s by %s on %s",
                             ev->access == MOSQ_ACL_WRITE ? "publish" : "subscribe",
                             w.kind == K_DEVICE ? LOG_FIELD(f_who, w.serial)
                             : w.kind == K_PROFILE
                                 ? LOG_FIELD(f_who, mosquitto_client_username(ev->client))
                                 : "an unknown client",
                             LOG_FIELD(f_topic, ev->topic));
    return MOSQ_ERR_ACL_DENIED;
}

/* The user property names only the plugin (IDENTITY_PROP) and the daemon
 * (PROFILE_PROP) may set. */
static int reserved_name(const char *k)
{
    return strcmp(k, IDENTITY_PROP) == 0 || strcmp(k, PROFILE_PROP) == 0;
}

/*
 * The value of the first user property named name in props, or NULL;
 * caller frees with mosquitto_free.
 */
static char *user_property(const mosquitto_property *props, const char *name)
{
    char *k = NULL, *v = NULL;
    const mosquitto_property *p = props;
    int first = 1;

    while ((p = mosquitto_property_read_string_pair(first ? props : p, MQTT_PROP_USER_PROPERTY, &k,
                                                    &v, !first))) {
        first = 0;
        int hit = strcmp(k, name) == 0;
        mosquitto_free(k);
        if (hit)
            return v;
        mosquitto_free(v);
        k = v = NULL;
    }
    return NULL;
}

/* 1 if props hold a user property with a reserved name. */
static int has_reserved(const mosquitto_property *props)
{
    char *k = NULL, *v = NULL;
    const mosquitto_property *p = props;
    int first = 1, found = 0;

    while (!found && (p = mosquitto_property_read_string_pair(
                          first ? props : p, MQTT_PROP_USER_PROPERTY, &k, &v, !first))) {
        first = 0;
        found = reserved_name(k);
        mosquitto_free(k);
        mosquitto_free(v);
        k = v = NULL;
    }
    return found;
}

/*
 * A copy of props without reserved user properties, or NULL with *err
 * set. Each property of a PUBLISH is copied by its type.
 */
static mosquitto_property *without_reserved(const mosquitto_property *props, int *err)
{
    mosquitto_property *out = NULL;
    int rc = MOSQ_ERR_SUCCESS;

    for (const mosquitto_property *p = props; p && rc == MOSQ_ERR_SUCCESS;
         p = mosquitto_property_next(p)) {
        int id = mosquitto_property_identifier(p);
        char *s = NULL, *k = NULL;
        void *bin = NULL;
        uint16_t blen = 0, v16 = 0;
        uint32_t v32 = 0;
        uint8_t v8 = 0;
        switch (id) {
        case MQTT_PROP_USER_PROPERTY:
            mosquitto_property_read_string_pair(p, id, &k, &s, false);
            if (k && s && !reserved_name(k))
                rc = mosquitto_property_add_string_pair(&out, id, k, s);
            break;
        case MQTT_PROP_CONTENT_TYPE:
        case MQTT_PROP_RESPONSE_TOPIC:
            mosquitto_property_read_string(p, id, &s, false);
            if (s)
                rc = mosquitto_property_add_string(&out, id, s);
            break;
        case MQTT_PROP_CORRELATION_DATA:
            mosquitto_property_read_binary(p, id, &bin, &blen, false);
            rc = mosquitto_property_add_binary(&out, id, bin, blen);
            break;
        case MQTT_PROP_PAYLOAD_FORMAT_INDICATOR:
            mosquitto_property_read_byte(p, id, &v8, false);
            rc = mosquitto_property_add_byte(&out, id, v8);
            break;
        case MQTT_PROP_MESSAGE_EXPIRY_INTERVAL:
            mosquitto_property_read_int32(p, id, &v32, false);
            rc = mosquitto_property_add_int32(&out, id, v32);
            break;
        case MQTT_PROP_TOPIC_ALIAS:
            mosquitto_property_read_int16(p, id, &v16, false);
            rc = mosquitto_property_add_int16(&out, id, v16);
            break;
        case MQTT_PROP_SUBSCRIPTION_IDENTIFIER:
            mosquitto_property_read_varint(p, id, &v32, false);
            rc = mosquitto_property_add_varint(&out, id, v32);
            break;
        default:
            break; /* not a PUBLISH property */
        }
        mosquitto_free(s);
        mosquitto_free(k);
        mosquitto_free(bin);
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        mosquitto_property_free_all(&out);
        *err = rc;
        return NULL;
    }
    *err = MOSQ_ERR_SUCCESS;
    return out;
}

/* The profile a message comes from: 1 with profile set, or 0 (none). */
static int publisher_profile(const struct mosquitto_evt_message *ev, const struct who *w,
                             uint8_t profile[8])
{
    const struct device *d;
    char *name;
    int found = 0;

    switch (w->kind) {
    case K_DEVICE:
        if ((d = find_device(w->serial, strlen(w->serial))) == NULL)
            return 0; /* removed a moment ago */
        memcpy(profile, d->auth_hash, 8);
        return 1;
    case K_PROFILE:
        memcpy(profile, w->auth_hash, 8);
        return 1;
    case K_DAEMON:
        /* The daemon names the profile an analysis ran for. */
        if ((name = user_property(ev->properties, PROFILE_PROP)) == NULL)
            return 0;
        for (size_t i = 0; i < plug.nprofiles && !found; i++)
            if (strcmp(plug.profiles[i].name, name) == 0) {
                memcpy(profile, plug.profiles[i].auth_hash, 8);
                found = 1;
            }
        mosquitto_free(name);
        return found;
    default:
        return 0;
    }
}

/* Notes where a message on a topic devices may read comes from (see Origins). */
static int note_origin(struct mosquitto_evt_message *ev, const struct who *w)
{
    uint8_t profile[8];
    int known;

    if (plug.cross_profile || ev->topic[0] == '$')
        return MOSQ_ERR_SUCCESS; /* $ topics are checked by name */
    known = publisher_profile(ev, w, profile);
    if (ev->retain && ev->payloadlen == 0) {
        kept_drop(ev->topic); /* clears the retained message: not delivered */
        return MOSQ_ERR_SUCCESS;
    }
    if (!ev->payload) {
        /* An empty message needs an address of its own to carry an origin;
         * the broker frees it like any payload. */
        if ((ev->payload = mosquitto_calloc(1, 1)) == NULL)
            return MOSQ_ERR_NOMEM;
    }
    origin_note(ev->payload, known ? profile : NULL);
    if (ev->retain)
        kept_note(ev->topic, ev->payload, ev->payloadlen, known ? profile : NULL);
    return MOSQ_ERR_SUCCESS;
}

static int on_message(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_message *ev = event_data;
    struct who w = who_is(ev->client);
    int rc;

    (void)event;
    (void)userdata;
    if (w.kind != K_DAEMON && has_reserved(ev->properties)) {
        mosquitto_property *clean = without_reserved(ev->properties, &rc);
        if (rc != MOSQ_ERR_SUCCESS)
            return rc;
        mosquitto_property_free_all(&ev->properties);
        ev->properties = clean;
    }
    if (w.kind == K_DEVICE &&
        (rc = mosquitto_property_add_string_pair(&ev->properties, MQTT_PROP_USER_PROPERTY,
                                                 IDENTITY_PROP, w.serial)) != MOSQ_ERR_SUCCESS)
        return rc;
    return note_origin(ev, &w);
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_disconnect *ev = event_data;

    (void)event;
    (void)userdata;
    session_forget(ev->client);
    return MOSQ_ERR_SUCCESS;
}

static int on_tick(int event, void *event_data, void *userdata)
{
    int64_t now = now_ms(), g;

    (void)event;
    (void)event_data;
    (void)userdata;
    /* Under load 2.0.11 calls this on every pass of its loop, not ~10 times
     * a second: look at the registry at most every 100 ms. */
    int64_t mono = mono_ms();
    if (mono - plug.last_check_ms < 100)
        return MOSQ_ERR_SUCCESS;
    plug.last_check_ms = mono;
    g = generation();
    int moved = g >= 0 && g != plug.generation;
    int failing = g < 0 || (moved && load_view() != 0);
    char f_path[LOG_FIELD_MAX];
    if (failing != plug.view_failing)
        mosquitto_log_printf(failing ? MOSQ_LOG_ERR : MOSQ_LOG_NOTICE,
                             failing ? "sealpipe: cannot read the registry %s; logins and "
                                       "revocations use the last copy read"
                                     : "sealpipe: registry %s readable again",
                             LOG_FIELD(f_path, plug.db_path));
    else if (moved && !failing) /* load_view() moved plug.generation to g */
        mosquitto_log_printf(MOSQ_LOG_INFO, "sealpipe: registry reloaded (%zu tokens)",
                             plug.ntokens);
    plug.view_failing = failing;
    sweep(now); /* revoked, removed, expired */
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

static int read_secret(const char *path)
{
    char buf[256];
    FILE *f = fopen(path, "r");
    size_t n;

    char f_path[LOG_FIELD_MAX];

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
    crypto_hash_sha256(plug.daemon_hash, (const uint8_t *)buf, n);
    sodium_memzero(buf, sizeof buf);
    plug.have_daemon = 1;
    return 0;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
    for (int i = 0; i < supported_version_count; i++)
        if (supported_versions[i] == 5)
            return 5;
    return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
                          struct mosquitto_opt *options, int option_count)
{
    const char *db = NULL, *secret = NULL, *pub = "#", *sub = "#";
    char f_k[LOG_FIELD_MAX], f_db[LOG_FIELD_MAX];

    memset(&plug, 0, sizeof plug);
    plug.id = identifier;
    *userdata = &plug;
    snprintf(plug.daemon_user, sizeof plug.daemon_user, "%s", DEFAULT_DAEMON);
    snprintf(plug.daemon_client_id, sizeof plug.daemon_client_id, "sealpipe");
    if (sodium_init() < 0)
        return MOSQ_ERR_UNKNOWN;
    for (int i = 0; i < option_count; i++) {
        const char *k = options[i].key, *v = options[i].value;
        if (strcmp(k, "registry") == 0)
            db = v;
        else if (strcmp(k, "daemon_secret") == 0)
            secret = v;
        else if (strcmp(k, "daemon_user") == 0)
            snprintf(plug.daemon_user, sizeof plug.daemon_user, "%s", v);
        else if (strcmp(k, "daemon_client_id") == 0)
            snprintf(plug.daemon_client_id, sizeof plug.daemon_client_id, "%s", v);
        else if (strcmp(k, "publish") == 0)
            pub = v;
        else if (strcmp(k, "subscribe") == 0)
            sub = v;
        else if (strcmp(k, "retained_origins") == 0) {
            free(plug.kept_path);
            plug.kept_path = strdup(v);
        } else if (strcmp(k, "cross_profile") == 0) {
            if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
                mosquitto_log_printf(MOSQ_LOG_ERR,
                                     "sealpipe: plugin_opt_cross_profile is on or off");
                return MOSQ_ERR_INVAL;
            }
            plug.cross_profile = strcmp(v, "on") == 0;
        } else
            mosquitto_log_printf(MOSQ_LOG_WARNING, "sealpipe: unknown option plugin_opt_%s",
                                 LOG_FIELD(f_k, k));
    }
    if (!db) {
        mosquitto_log_printf(MOSQ_LOG_ERR,
                             "sealpipe: plugin_opt_registry (the path of sealpipe.db) is required");
        return MOSQ_ERR_INVAL;
    }
    if ((secret && read_secret(secret) != 0) || split_filters(pub, plug.pub_filters, &plug.npub) ||
        split_filters(sub, plug.sub_filters, &plug.nsub))
        return MOSQ_ERR_INVAL;
    if (sqlite3_open_v2(db, &plug.db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "sealpipe: cannot open %s: %s", LOG_FIELD(f_db, db),
                             plug.db ? sqlite3_errmsg(plug.db) : "out of memory");
        return MOSQ_ERR_INVAL;
    }
    sqlite3_busy_timeout(plug.db, 200);
    plug.db_path = strdup(db);
    if (load_view() != 0)
        mosquitto_log_printf(MOSQ_LOG_WARNING,
                             "sealpipe: %s has no registry yet; devices are refused until it does",
                             LOG_FIELD(f_db, db));
    if (plug.kept_path && plug.cross_profile)
        unlink(plug.kept_path); /* stale by the time the option is off again */
    else if (plug.kept_path)
        kept_restore(plug.kept_path);
    mosquitto_log_printf(MOSQ_LOG_INFO, "sealpipe: auth plugin ready (%zu tokens, %zu profiles)",
                         plug.ntokens, plug.nprofiles);
    if (mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL) ||
        mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL) ||
        mosquitto_callback_register(identifier, MOSQ_EVT_MESSAGE, on_message, NULL, NULL) ||
        mosquitto_callback_register(identifier, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, NULL) ||
        mosquitto_callback_register(identifier, MOSQ_EVT_TICK, on_tick, NULL, NULL))
        return MOSQ_ERR_UNKNOWN;
    return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
    (void)userdata;
    (void)options;
    (void)option_count;
    mosquitto_callback_unregister(plug.id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
    mosquitto_callback_unregister(plug.id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
    mosquitto_callback_unregister(plug.id, MOSQ_EVT_MESSAGE, on_message, NULL);
    mosquitto_callback_unregister(plug.id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
    mosquitto_callback_unregister(plug.id, MOSQ_EVT_TICK, on_tick, NULL);
    free_view();
    if (plug.kept_path && !plug.cross_profile)
        kept_save(plug.kept_path);
    free(plug.kept_path);
    origins_free();
    for (size_t i = 0; i < plug.capsessions; i++)
        if (plug.sessions[i].client) {
            free(plug.sessions[i].client_id);
            free(plug.sessions[i].who);
        }
    free(plug.sessions);
    for (int i = 0; i < plug.npub; i++)
        free(plug.pub_filters[i]);
    for (int i = 0; i < plug.nsub; i++)
        free(plug.sub_filters[i]);
    sqlite3_finalize(plug.gen);
    sqlite3_close(plug.db);
    free(plug.db_path);
    sodium_memzero(plug.daemon_hash, sizeof plug.daemon_hash);
    memset(&plug, 0, sizeof plug);
    return MOSQ_ERR_SUCCESS;
}
