/*
 * registry_schema.h - the registry's tables as C sees them: the values,
 * lengths and queries that schemas/registry.sql fixes, for every reader of
 * sealpipe.db. registry*.c write the tables; the broker plugin
 * (runtime/broker/plugin/) reads them directly and shares nothing else of the
 * daemon's but base/keytab.c and the SDK, so this header is plain C: no
 * SQLite, libsodium or mosquitto types.
 *
 * Keep it in step with schemas/registry.sql. test_registry prepares every
 * query below against a freshly created registry, so a renamed table or
 * column fails there rather than in a running broker.
 */
#ifndef SP_REGISTRY_SCHEMA_H
#define SP_REGISTRY_SCHEMA_H

/* schema_version.version of component 'registry' that this code writes. */
#define REGISTRY_SCHEMA_VERSION 1

/* device_tokens.perm: what a device token may do over MQTT. */
enum token_perm { TOKEN_FULL = 0, TOKEN_WRITE = 1, TOKEN_READ = 2 };

#define REGISTRY_TOKEN_LEN      36  /* a device token: UUID text form */
#define REGISTRY_PREFIX_LEN     8   /* device_tokens.prefix: the token's first characters */
#define REGISTRY_TOKEN_HASH_LEN 32  /* device_tokens.token_hash: SHA-256 of the token */
#define REGISTRY_HASH_LEN       8   /* profiles.auth_hash, devices.device_hash (SP_HASH_LEN) */
#define REGISTRY_MAX_IDENT      100 /* serials and profile, token, parser names (SP_MAX_SERIAL) */

/* registry_generation.n: moves with every change to the registry's tables. */
#define REGISTRY_SQL_GENERATION "SELECT n FROM registry_generation WHERE id = 1"

/*
 * The whole registry as the broker plugin keeps it in memory, read in one
 * transaction. Column numbers follow each query.
 */
#define REGISTRY_SQL_ALL_TOKENS                                                                    \
    "SELECT t.token_hash, t.id, t.perm, t.expires_at, t.revoked_at, d.serial"                      \
    " FROM device_tokens t JOIN devices d ON d.id = t.device_id"
enum {
    ALL_TOKENS_HASH,
    ALL_TOKENS_ID,
    ALL_TOKENS_PERM,
    ALL_TOKENS_EXPIRES,
    ALL_TOKENS_REVOKED,
    ALL_TOKENS_SERIAL
};

#define REGISTRY_SQL_ALL_DEVICES                                                                   \
    "SELECT d.serial, p.auth_hash FROM devices d JOIN profiles p ON p.id = d.profile_id"
enum { ALL_DEVICES_SERIAL, ALL_DEVICES_AUTH_HASH };

#define REGISTRY_SQL_ALL_PROFILES "SELECT auth_hash, name FROM profiles"
enum { ALL_PROFILES_AUTH_HASH, ALL_PROFILES_NAME };

/*
 * Not the registry's, but read by the plugin from the same file: the highest
 * device journal id the daemon has committed (schemas/bucket.sql,
 * source_positions; storage/positions.c writes it). The table may not exist
 * yet: no row, no table, both mean 0.
 */
#define JOURNAL_SOURCE_NAME "journal"
#define REGISTRY_SQL_JOURNAL_FLOOR                                                                 \
    "SELECT position FROM source_positions WHERE name = '" JOURNAL_SOURCE_NAME "'"

#endif
