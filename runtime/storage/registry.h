/*
 * registry.h - profiles, devices, device tokens and encryption keys.
 *
 * The registry lives in the data directory's sealpipe.db (schema:
 * schemas/registry.sql), next to the buckets, so that a device's replay
 * counter can be advanced in the same transaction that stores its data (that
 * table, device_counters, is written by devstate.c). Secrets are stored as
 * little as possible:
 *  - profile authorization tokens only as their TagoTiP auth hash;
 *  - device tokens only as SHA-256 hashes (a token is shown once, at creation);
 *  - encryption keys encrypted at rest with XChaCha20-Poly1305 under the master
 *    key in <data_dir>/master.key (32 random bytes, mode 0600, created on first
 *    use), with the device serial as associated data.
 *
 * Used by the CLI (sealpipe device/token/key/profile) and by the daemon for
 * lookups. One connection per struct registry; not thread-safe. Concurrent
 * processes are fine (WAL, busy timeout).
 *
 * Outputs with variable-size members are allocated in a caller arena. The
 * values and queries the broker plugin shares with this module (permissions,
 * lengths, the tables it reads) are in registry_schema.h.
 */
#ifndef SP_REGISTRY_H
#define SP_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "registry_schema.h"
#include "sealpipe.h"

struct registry;

enum counter_mode { COUNTER_STRICT = 0, COUNTER_OFF = 1 };

struct device_info {
    int64_t id;
    const char *serial;
    const char *name;        /* defaults to the serial */
    const char *tags_json;   /* JSON object text, "{}" when none */
    const char *params_json; /* JSON object text, "{}" when none */
    const char *parser;      /* analysis name, NULL: none */
    const char *profile;     /* profile name */
    int encryption_required;
    int counter_mode; /* enum counter_mode */
    int suite;        /* cipher suite of the current key, -1: no key */
    uint8_t device_hash[SP_HASH_LEN];
    uint8_t auth_hash[SP_HASH_LEN]; /* of the device's profile */
    int64_t created_ms;
};

/* One key that may open a device's envelopes. */
struct device_key {
    int64_t device_id;
    const char *serial;
    int suite;
    uint8_t key[SP_MAX_KEY_LEN];
    size_t key_len;
    int64_t retired_ms; /* 0: current key; else when it was replaced */
};

struct token_info {
    int64_t id;
    const char *name;
    const char *prefix; /* first 8 characters of the token, to tell them apart */
    int perm;           /* enum token_perm */
    int64_t expires_ms; /* 0: never */
    int64_t revoked_ms; /* 0: active */
    int64_t created_ms;
};

struct profile_info {
    int64_t id;
    const char *name;
    uint8_t auth_hash[SP_HASH_LEN];
    int64_t created_ms;
};

/*
 * Opens (creating as needed) <data_dir>/sealpipe.db and applies the schema.
 * The master key is read or created lazily, when a key is first needed.
 * Returns 0, SP_ERR_IO or SP_ERR_DB with details in err.
 */
int registry_open(const char *data_dir, struct registry **out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void registry_close(struct registry *r);

/* Profiles. A profile named "default" is created on first device add. */
struct profile_secret {
    char token[3 + SP_TOKEN_HEX_LEN]; /* "at" + 32 hex, NUL-terminated */
};
/*
 * Creates profile name with a new random authorization token (or with token
 * if not NULL: "at" + 32 hex). Returns 0 and the token in *out (shown once),
 * SP_ERR_EXISTS, SP_ERR_INVAL.
 */
int registry_profile_add(struct registry *r, const char *name, const char *token,
                         struct profile_secret *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
int registry_profile_list(struct registry *r, struct arena *a, struct profile_info **out, size_t *n)
    __attribute__((warn_unused_result));

struct device_spec {
    const char *serial;      /* 1-100 of [A-Za-z0-9_-] */
    const char *name;        /* NULL: the serial */
    const char *tags_json;   /* JSON object of strings, NULL: {} */
    const char *params_json; /* JSON object of strings, NULL: {} */
    const char *parser;      /* analysis name, NULL: none */
    const char *profile;     /* NULL: "default" (created if missing) */
    int suite;               /* -1: no encryption key */
    int encryption_required; /* only allowed with a key */
    int counter_mode;
    /*
     * Derive the key from the profile's authorization token and the serial
     * (TagoTiPs.md §2.4) instead of drawing a random one. derive_token is
     * that token ("at" + 32 hex); NULL is allowed only when the profile is
     * created by this call, whose new token is then used.
     */
    int derive;
    const char *derive_token;
};

struct device_secrets {
    char token[REGISTRY_TOKEN_LEN + 1]; /* device token (UUID form), shown once */
    int suite;                          /* -1: no key */
    uint8_t key[SP_MAX_KEY_LEN];        /* the new encryption key, shown once */
    size_t key_len;
    uint8_t auth_hash[SP_HASH_LEN]; /* the profile's (public) */
    uint8_t device_hash[SP_HASH_LEN];
    char profile_token[3 + SP_TOKEN_HEX_LEN]; /* non-empty only if the
                                                 profile was created now */
};

/*
 * Adds a device with one token named "default" (full permission) and, if
 * spec->suite >= 0, a random key for that suite. Returns 0 and the secrets,
 * SP_ERR_EXISTS (duplicate serial), SP_ERR_INVAL (bad serial, tags, suite
 * combination; err says which), SP_ERR_NOTFOUND (unknown profile), SP_ERR_DB.
 */
int registry_device_add(struct registry *r, const struct device_spec *spec,
                        struct device_secrets *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Removes a device with its tokens, keys, counter and retention override
 * (records stay in the bucket, under the global retention). Returns 0 or
 * SP_ERR_NODEVICE. */
int registry_device_remove(struct registry *r, const char *serial)
    __attribute__((warn_unused_result));
/* Returns 0 or SP_ERR_NODEVICE. */
int registry_device_get(struct registry *r, const char *serial, struct arena *a,
                        struct device_info *out) __attribute__((warn_unused_result));
/*
 * What `sealpipe device set` changes: NULL or -1 leaves a field as it is.
 * tags_json and params_json replace the whole object (the caller merges).
 */
struct device_update {
    const char *name; /* NULL: unchanged */
    /* JSON merge patches (RFC 7396) of the tags and params, applied in the
     * UPDATE: "k":"v" sets k, "k":null removes it; NULL: unchanged. */
    const char *tags_patch;
    const char *params_patch;
    int set_parser; /* 1: parser becomes `parser` (NULL: none) */
    const char *parser;
    int encryption_required; /* 0, 1, or -1: unchanged */
    int counter_mode;        /* enum counter_mode, or -1: unchanged */
};

/*
 * Changes a device's description in one transaction (tokens and keys stay);
 * the daemon and the broker plugin see it within a second (the registry's
 * generation moves). Returns 0, SP_ERR_NODEVICE, SP_ERR_INVAL (a bad name,
 * tags, params or parser name, or encryption required of a device without a
 * key; err says which) or SP_ERR_DB.
 */
int registry_device_update(struct registry *r, const char *serial, const struct device_update *u,
                           char *err, size_t errlen) __attribute__((warn_unused_result));
/* All devices ordered by serial. */
int registry_device_list(struct registry *r, struct arena *a, struct device_info **out, size_t *n)
    __attribute__((warn_unused_result));

/*
 * A number that changes whenever profiles, devices, tokens or keys change, by
 * this process or any other (triggers in schemas/registry.sql). Caches of
 * registry data compare it to know when to drop their copies.
 */
int registry_generation(struct registry *r, int64_t *out) __attribute__((warn_unused_result));

/*
 * Reads (or, while the registry holds no keys, creates) master.key now rather
 * than at the first envelope, so that a missing or unreadable file stops
 * `sealpipe run` at start with err set. Returns 0 or an SP_ERR_ code.
 */
int registry_load_master(struct registry *r, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * Every key that may open an envelope with this (auth hash, device hash):
 * current keys and keys retired less than grace_ms ago, of every device whose
 * profile and serial hash match (collisions included). *n may be 0.
 * SP_ERR_CRYPTO: a stored key does not open under the master key (master.key
 * is not the one the keys were sealed with); other errors are the database's.
 */
int registry_keys_for(struct registry *r, const uint8_t auth_hash[SP_HASH_LEN],
                      const uint8_t device_hash[SP_HASH_LEN], int64_t now_ms, int64_t grace_ms,
                      struct arena *a, struct device_key **out, size_t *n)
    __attribute__((warn_unused_result));

/*
 * Replaces a device's key with a new random one (suite < 0 keeps the current
 * suite), or with the key derived from derive_token (the profile's
 * authorization token, checked against its auth hash) when that is not NULL. The old key is retired
 * now and still opens envelopes during the grace window. Returns 0 with the new key in out, or
 * SP_ERR_NODEVICE.
 */
int registry_key_rotate(struct registry *r, const char *serial, int suite, const char *derive_token,
                        struct device_secrets *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Tokens. expires_ms 0 = never. Returns 0 and the token (shown once). */
int registry_token_add(struct registry *r, const char *serial, const char *name, int perm,
                       int64_t expires_ms, char token_out[37]) __attribute__((warn_unused_result));
int registry_token_list(struct registry *r, const char *serial, struct arena *a,
                        struct token_info **out, size_t *n) __attribute__((warn_unused_result));
/* Revokes the device's token whose name or prefix is `which`.
 * Returns 0, SP_ERR_NODEVICE or SP_ERR_NOTFOUND (or SP_ERR_INVAL if ambiguous). */
int registry_token_revoke(struct registry *r, const char *serial, const char *which)
    __attribute__((warn_unused_result));
/*
 * Checks a device token: returns 0 and the device in *out if the token is
 * known, not revoked and not expired at now_ms; SP_ERR_TOKEN otherwise.
 * Compares hashes in constant time.
 */
int registry_token_check(struct registry *r, const char *token, int64_t now_ms, struct arena *a,
                         struct device_info *out, int *perm) __attribute__((warn_unused_result));

/*
 * Tokens of the HTTP API and web console (admin_tokens). perm is TOKEN_FULL
 * or TOKEN_READ (GET only). add: a new token into token_out (shown once;
 * name defaults to its prefix): 0, SP_ERR_INVAL, SP_ERR_EXISTS (the name is
 * taken) or SP_ERR_DB. list: every token, revoked ones too (expires_ms 0).
 * revoke: by name, prefix or the token itself: 0, SP_ERR_NOTFOUND or
 * SP_ERR_INVAL (ambiguous). check: 0 and *perm for a token not revoked,
 * SP_ERR_TOKEN otherwise (hashes compared in constant time), or SP_ERR_DB.
 */
int registry_admin_token_add(struct registry *r, const char *name, int perm,
                             char token_out[REGISTRY_TOKEN_LEN + 1])
    __attribute__((warn_unused_result));
int registry_admin_token_list(struct registry *r, struct arena *a, struct token_info **out,
                              size_t *n) __attribute__((warn_unused_result));
int registry_admin_token_revoke(struct registry *r, const char *which)
    __attribute__((warn_unused_result));
int registry_admin_token_check(struct registry *r, const char *token, int *perm)
    __attribute__((warn_unused_result));

/* Names for enums, and back. Return NULL / negative on unknown input. */
const char *registry_perm_name(int perm);
int registry_perm_parse(const char *s);

/* What the daemon last wrote of a device's status (device_status in
 * schemas/bucket.sql); times are Unix ms, 0: never. */
struct device_status {
    int seen; /* the daemon has a row for it */
    int64_t connections, last_connect, last_disconnect, last_sent, last_stored;
    int64_t messages, records, dead_letters;
    const char *client_id, *address, *protocol, *last_reason; /* NULL: none */
    int has_retention;    /* its own retention (device set --retention) */
    int64_t retention_ms; /* then: how long its rows are kept; 0: forever */
};

/* d's status into *out (all zero when the daemon never saw it); strings in
 * a. The counts are of what is committed: device_status and the tallies not
 * yet folded into it, read in one transaction (tallies of an earlier device
 * of the serial, another created_ms, are not d's). Returns 0, SP_ERR_DB or
 * SP_ERR_NOMEM. */
int registry_device_status(struct registry *r, const struct device_info *d, struct arena *a,
                           struct device_status *out);
/* The same for devs[0..n), into out[0..n), in one transaction. */
int registry_device_statuses(struct registry *r, const struct device_info *devs, size_t n,
                             struct arena *a, struct device_status *out);

#endif
