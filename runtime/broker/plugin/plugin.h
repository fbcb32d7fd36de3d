/*
 * plugin.h - the parts of sealpipe_auth.so and the state they share.
 *
 * auth.c is the mosquitto glue (entry points, options, event callbacks);
 * view.c keeps the registry in memory (credential lookup and caching);
 * session.c the logged-in connections; origin.c where stored messages came
 * from; props.c the MQTT v5 user properties the plugin owns; acl.c the
 * access decision, a pure function. Everything hangs off one struct plugin,
 * allocated by mosquitto_plugin_init and handed to every callback as its
 * userdata. The broker is single-threaded: no locks.
 */
#ifndef SP_PLUGIN_H
#define SP_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <sodium.h>
#include <sqlite3.h>

#include "base/journal.h"
#include "base/keytab.h"
#include "storage/registry_schema.h"

#define IDENTITY_PROP "sealpipe-device"
#define PROFILE_PROP  "sealpipe-profile" /* set by the daemon only: the profile it speaks for */
#define MAX_FILTERS   32
#define LOG_FIELD_MAX 512 /* a logged field, escaped; longer ones are cut */

_Static_assert(REGISTRY_TOKEN_HASH_LEN == crypto_hash_sha256_BYTES, "token hashes are SHA-256");

/* ------------------------------------------------------------------------ */
/* view.c: the registry in memory                                           */
/* ------------------------------------------------------------------------ */

/* One device token of the registry, as the plugin keeps it. */
struct token {
    uint8_t hash[REGISTRY_TOKEN_HASH_LEN];
    int64_t id;
    int perm;           /* enum token_perm */
    int64_t expires_ms; /* 0: never */
    int revoked;
    char serial[REGISTRY_MAX_IDENT + 1];
};

/* One profile: its auth hash (first: the bsearch key) and its name. */
struct profile {
    uint8_t auth_hash[REGISTRY_HASH_LEN];
    char name[REGISTRY_MAX_IDENT + 1];
};

/* One device: its serial and its profile's auth hash. */
struct device {
    char serial[REGISTRY_MAX_IDENT + 1];
    uint8_t auth_hash[REGISTRY_HASH_LEN];
};

/*
 * The registry's tokens, devices and profiles, sorted for bsearch, and the
 * read-only connection they are read from. Nothing touches SQLite in the
 * auth or ACL paths: the copy is read again when the generation moves.
 */
struct view {
    sqlite3 *db;
    sqlite3_stmt *gen; /* REGISTRY_SQL_GENERATION, prepared once */
    struct token *tokens;
    size_t ntokens;
    struct device *devices;
    size_t ndevices;
    struct profile *profiles;
    size_t nprofiles;
    int64_t generation;
};

/* Opens path read-only. 0, or -1 with the reason in err. */
int view_open(struct view *v, const char *path, char *err, size_t errlen);
/* Frees the copy and closes the connection. */
void view_close(struct view *v);
/* The registry's generation number, or -1 (no registry yet, or an error). */
int64_t view_generation(struct view *v);
/* The highest device journal id the daemon has committed; 0: none (or no
 * table yet). */
uint64_t view_journal_floor(struct view *v);
/* Reads tokens, devices and profiles in one read transaction. 0 or -1
 * (the old copy stays). */
int view_load(struct view *v);
/* The token with this SHA-256 (compared in constant time), or NULL. */
const struct token *view_find_token(const struct view *v,
                                    const uint8_t hash[REGISTRY_TOKEN_HASH_LEN]);
/* The device with serial[0..n), or NULL. */
const struct device *view_find_device(const struct view *v, const char *serial, size_t n);
/* The profile with this auth hash, or NULL. */
const struct profile *view_find_profile(const struct view *v,
                                        const uint8_t auth_hash[REGISTRY_HASH_LEN]);
/* The profile named name, or NULL (a linear scan). */
const struct profile *view_profile_named(const struct view *v, const char *name);
/* 1 if token t may log in at now (wall-clock ms): known, not revoked, not expired. */
int view_token_live(const struct token *t, int64_t now);

/* ------------------------------------------------------------------------ */
/* session.c: connections that logged in through the plugin                 */
/* ------------------------------------------------------------------------ */

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
    const struct mosquitto *client; /* identity of the connection: the key (first) */
    char *client_id;
    char *who; /* the username the plugin gave it, or the daemon's */
    int has_token;
    uint8_t token_hash[REGISTRY_TOKEN_HASH_LEN];
};

struct sessions {
    struct keytab by_client; /* struct session by client address */
};

/* Prepares an empty table. MOSQ_ERR_SUCCESS or MOSQ_ERR_NOMEM. */
int sessions_init(struct sessions *s);
/* The session of this connection, or NULL. */
struct session *session_find(const struct sessions *s, const struct mosquitto *client);
/* Records a login: 0, MOSQ_ERR_AUTH (client id held by another identity) or
 * MOSQ_ERR_NOMEM. token_hash NULL: no token (daemon, profile context). */
int session_add(struct sessions *s, const struct mosquitto *client, const char *client_id,
                const char *who, const uint8_t *token_hash);
/* Forgets the session of this connection (not another's with the same id). */
void session_forget(struct sessions *s, const struct mosquitto *client);
struct events;
/* Kicks every device session whose token may no longer log in at now
 * (saying why to ev). */
void sessions_sweep(struct sessions *s, const struct view *v, int64_t now, struct events *ev);
/* Frees every session; s may be zeroed (sessions_init not called or failed). */
void sessions_free(struct sessions *s);

/* ------------------------------------------------------------------------ */
/* origin.c: which profile a stored message came from                       */
/* ------------------------------------------------------------------------ */

/* Where a stored message came from (see origin.c). */
struct origin {
    const void *payload; /* the broker's copy of the message: the key (first) */
    uint8_t known;       /* 0: no profile (a device of none, an unstamped daemon message) */
    uint8_t journaled;   /* 1: in the device journal, so never delivered to the daemon */
    uint8_t profile[REGISTRY_HASH_LEN]; /* auth hash of the publisher's profile */
};

struct kept; /* the origin of a retained message, by topic */

struct origins {
    struct keytab young, old; /* payload -> profile: struct origin, two generations */
    struct kept **kept;       /* retained topic -> profile, chained */
    size_t nkept, capkept;    /* capkept: a power of two, or 0 */
};

/* Prepares empty tables. MOSQ_ERR_SUCCESS or MOSQ_ERR_NOMEM. */
int origins_init(struct origins *o);
/* Notes payload's origin (profile NULL: none) and whether it was journaled.
 * Never fails silently open. */
void origins_note(struct origins *o, const void *payload, const uint8_t *profile, int journaled);
/* 1 if the stored message at payload was written to the device journal. */
int origins_journaled(struct origins *o, const void *payload);
/* The retained message on topic is (payload, len), from profile (NULL: none). */
void origins_retain(struct origins *o, const char *topic, const void *payload, uint32_t len,
                    const uint8_t *profile);
/* The retained message on topic was cleared. */
void origins_unretain(struct origins *o, const char *topic);
/* The profile a stored message (topic, payload) came from: 1 with profile
 * set, or 0 if it came from none or is not known. */
int origins_of(struct origins *o, const char *topic, const void *payload, uint32_t len,
               uint8_t profile[REGISTRY_HASH_LEN]);
/* The profile of the retained message on topic: 1 with profile set, or 0
 * (none, or of no known profile). */
int origins_retained_by(struct origins *o, const char *topic, uint8_t profile[REGISTRY_HASH_LEN]);
/* Writes the retained messages' origins to path (at a clean stop). */
void origins_save(const struct origins *o, const char *path);
/* Reads back what origins_save wrote, then removes the file. */
void origins_restore(struct origins *o, const char *path);
/* Frees everything; o may be zeroed (origins_init not called or failed). */
void origins_free(struct origins *o);

/* ------------------------------------------------------------------------ */
/* props.c: the user properties only the plugin and the daemon may set      */
/* ------------------------------------------------------------------------ */

/* Removes IDENTITY_PROP and PROFILE_PROP user properties from *props.
 * Returns MOSQ_ERR_SUCCESS or a mosquitto error (*props unchanged). */
int props_drop_reserved(mosquitto_property **props);
/* The value of the first user property named name, or NULL; caller frees
 * with mosquitto_free. */
char *props_user_property(const mosquitto_property *props, const char *name);

/* ------------------------------------------------------------------------ */
/* jwriter.c: the device journal                                            */
/* ------------------------------------------------------------------------ */

struct jwriter;

/* Opens the journal in dir (made if missing): ids continue after the larger
 * of the newest segment's last id and floor (the highest id the daemon
 * committed), in a new segment. sync_ms: how often the flusher thread makes
 * appends durable (0: before each append returns); min_free: appends are
 * refused while the filesystem has less free. 0, or -1 (logged). */
int jwriter_open(struct jwriter **out, const char *dir, uint64_t floor, int sync_ms,
                 uint64_t min_free);
/* Appends r under the next id (set in r->id). 0, or -1: not journaled (the
 * disk is nearly full or a write failed, logged); refuse the publish. */
int jwriter_append(struct jwriter *w, struct journal_rec *r);
/* From the TICK event (now: monotonic ms): looks at the free space about
 * once a second and says when refusing starts and stops. */
void jwriter_tick(struct jwriter *w, int64_t now);
/* The id the next append gets. */
uint64_t jwriter_next_id(const struct jwriter *w);
/* Makes everything durable, stops the flusher, frees w (NULL: nothing). */
void jwriter_close(struct jwriter *w);

/* ------------------------------------------------------------------------ */
/* auth.c: the plugin                                                       */
/* ------------------------------------------------------------------------ */

struct plugin {
    mosquitto_plugin_id_t *id;
    char *db_path;
    char daemon_user[128];
    char daemon_client_id[128]; /* reserved: no one else may take it */
    uint8_t daemon_hash[crypto_hash_sha256_BYTES];
    int have_daemon;
    char *pub_filters[MAX_FILTERS], *sub_filters[MAX_FILTERS];
    int npub, nsub;
    int cross_profile; /* 1: devices read every profile's messages */
    char *kept_path;   /* plugin_opt_retained_origins, or NULL */
    struct view view;
    int64_t last_check_ms;       /* monotonic */
    int view_failing;            /* the registry could not be read at the last look */
    int64_t last_login_check_ms; /* monotonic: see fresh_view() */
    struct sessions sessions;
    struct origins origins;  /* payload or retained topic -> profile */
    struct jwriter *journal; /* plugin_opt_journal, or NULL: no journal */
    int64_t lines_since;     /* monotonic ms: client-caused log lines earned up to then */
    int64_t lines_said;      /* when the dropped ones were last counted in the log */
    int lines;               /* that may be logged now (auth.c, client_line) */
    uint64_t lines_dropped;  /* not logged since lines_said */
    struct events *events;   /* plugin_opt_events, or NULL: none */
    struct answers *answers; /* plugin_opt_answers, or NULL: none */
};

/* ------------------------------------------------------------------------ */
/* events.c: what the daemon's Live Inspector is told (all no-ops on NULL)  */
/* ------------------------------------------------------------------------ */

struct events;

/* Connects to the daemon's socket at path (again every second while it
 * cannot). 0, or -1 (logged). */
int events_open(struct events **out, const char *path);
void events_close(struct events *ev);
/* A client logged in: as device (a serial), or as who (a profile context). */
void events_connect(struct events *ev, const struct mosquitto *client, const char *device,
                    const char *who);
/* sealpipe is about to disconnect client, for this reason (a static string). */
void events_kicking(struct events *ev, const struct mosquitto *client, const char *why);
/* A client announced by events_connect is gone; reason as mosquitto gives it. */
void events_disconnect(struct events *ev, const struct mosquitto *client, int reason);
/* A login was refused; device when the credential names one. */
void events_login_refused(struct events *ev, const struct mosquitto *client, const char *username,
                          const char *device, const char *why);
/* kind "subscribe", "unsubscribe" or "denied" (access "publish" or "subscribe"). */
void events_access(struct events *ev, const struct mosquitto *client, const char *device,
                   const char *kind, const char *access, const char *topic);
/* Every tick: reconnects, writes what waits. */
void events_tick(struct events *ev);

/* unixconn.c: a non-blocking connection to the daemon's unix socket at
 * path; the fd, or -1. */
int unixconn_open(const char *path);

/* ------------------------------------------------------------------------ */
/* answers.c: the daemon's answers, published by the plugin                 */
/* ------------------------------------------------------------------------ */

struct answers;

/* Connects to the daemon's socket at path (again every second while it
 * cannot). 0, or -1 (logged). */
int answers_open(struct answers **out, const char *path);
void answers_close(struct answers *a);
/* Every tick: reconnects, publishes every whole frame the daemon sent. */
void answers_tick(struct answers *a);

/*
 * s as one log field: bytes below 0x20, 0x7f, '"' and '\' become \n, \r,
 * \t, \", \\ or \xHH, so nothing a client sends (client id, username,
 * topic) or a file holds can end a broker log line or forge the next one.
 * Writes into buf (cut to fit, always terminated) and returns it.
 */
const char *log_field(char *buf, size_t cap, const char *s);

/* A log field in a buffer of the calling block (one per field of a line). */
#define LOG_FIELD(name, s) log_field(name, sizeof name, (s))

/* The hash of address p for a keytab (which takes the slot from the low
 * bits): a multiplicative mix, its well-mixed high half turned down. */
static inline uint64_t ptr_hash(const void *p)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 29;
    x *= 0x9e3779b97f4a7c15ull;
    return (x >> 32) | (x << 32);
}

#endif
