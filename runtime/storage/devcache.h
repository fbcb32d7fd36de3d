/*
 * devcache.h - the registry as the pipeline reads it: devices and their
 * unwrapped keys kept in memory.
 *
 * Two SQLite queries and an XChaCha20 unwrap per message were a third of the
 * daemon's CPU. The cache answers from memory and follows the registry's
 * generation number (registry_generation), which any writer bumps: the
 * pipeline calls devcache_sync() at the start of each batch, and when the
 * number moved (a device added or removed, a key rotated) everything is
 * dropped. So a registry change takes effect at the next batch.
 *
 * Misses are cached too (an unknown serial, hashes that match no key), so a
 * flood of messages for unknown devices does not reach SQLite either. The
 * cache is bounded; when full it is emptied at the next sync.
 *
 * Results point into the cache and stay valid until the next devcache_sync().
 * Key material is wiped when the cache is emptied or freed.
 */
#ifndef SP_DEVCACHE_H
#define SP_DEVCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "registry.h"

struct devcache;

struct devcache *devcache_new(struct registry *r);
void devcache_free(struct devcache *c);

/* Drops everything if the registry changed. Returns 0 or SP_ERR_DB. */
int devcache_sync(struct devcache *c) __attribute__((warn_unused_result));

/* registry_device_get, cached. Returns 0, SP_ERR_NODEVICE or an error. */
int devcache_device(struct devcache *c, const char *serial, const struct device_info **out)
    __attribute__((warn_unused_result));

/* 1 if a profile has this TagoTiP auth hash, 0 if none, or an error. */
int devcache_profile_known(struct devcache *c, const uint8_t auth_hash[SP_HASH_LEN]);

/*
 * registry_keys_for, cached: the keys that may open an envelope with these
 * hashes at now_ms (current keys, and keys retired less than grace_ms ago).
 * Returns 0 (with *n possibly 0), SP_ERR_CRYPTO or an error.
 */
int devcache_keys(struct devcache *c, const uint8_t auth_hash[SP_HASH_LEN],
                  const uint8_t device_hash[SP_HASH_LEN], int64_t now_ms, int64_t grace_ms,
                  const struct device_key **keys, size_t *n) __attribute__((warn_unused_result));

#endif
