/*
 * tipdown.c - what goes down to a device sealed with its key (see
 * tipserver.h): the key to seal with (the one the device last opened an
 * envelope with, else its current key), sealed ACK envelopes with nonce seeds
 * committed first, analysis publishes for a device, and the commands of
 * `sealpipe device cmd`: published on MQTT, and picked up by the device's
 * HTTP, UDP and TCP requests.
 */
#include "tipserver.h"
#include "tipserver_internal.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "base/log.h"
#include "observe.h"
#include "sealpipe.h"
#include "storage/pickups.h"

/* ---- sealing ----------------------------------------------------------- */

/* The fingerprint that names key k in the bucket (downlink_counters, device_key_use). */
static void key_id(const struct device_key *k, uint8_t id[BUCKET_KEY_ID_LEN])
{
    crypto_generichash(id, BUCKET_KEY_ID_LEN, k->key, k->key_len, NULL, 0);
}

/* The nonce seed is durable before the envelope leaves, so it never repeats
 * for the key (tipserver_internal.h). */
int tipserver__seal_ack(struct tipserver *ts, const struct device_key *k,
                        const struct device_info *d, const uint8_t *inner, size_t len,
                        uint8_t **out, size_t *out_len)
{
    uint8_t id[BUCKET_KEY_ID_LEN];
    uint32_t ctr;
    int rc;

    key_id(k, id);
    if ((rc = bucket_downlink_counter(ts->o.bk, id, &ctr)))
        return rc == SP_ERR_REPLAY ? rc : SP_ERR_DB;
    size_t cap = SP_ENV_HEADER_LEN + len + SP_ENV_MAX_TAG;
    uint8_t *env = arena_alloc(ts->o.arena, cap);
    if (!env || sp_env_seal(k->suite, SP_METHOD_ACK, ctr, d->auth_hash, d->device_hash, k->key,
                            k->key_len, inner, len, env, cap, out_len))
        return SP_ERR_CRYPTO;
    *out = env;
    return SP_OK;
}

/*
 * The key to seal a downlink for device d with: the one it last opened an
 * envelope with, while that one still opens (a device on its old key
 * inside the rotation grace cannot open what the new key seals), else its
 * current key; NULL when it has none.
 */
static const struct device_key *downlink_key(struct tipserver *ts, const struct device_info *d,
                                             int64_t now)
{
    const struct device_key *keys, *current = NULL;
    uint8_t last[BUCKET_KEY_ID_LEN], id[BUCKET_KEY_ID_LEN];
    int has_last = bucket_key_last(ts->o.bk, d->serial, last) == SP_OK;
    size_t nk;

    if (devcache_keys(ts->o.devs, d->auth_hash, d->device_hash, now, ts->o.key_grace_ms, &keys,
                      &nk))
        return NULL;
    for (size_t i = 0; i < nk; i++) {
        if (strcmp(keys[i].serial, d->serial) != 0)
            continue;
        if (has_last) {
            key_id(&keys[i], id);
            if (memcmp(id, last, sizeof id) == 0)
                return &keys[i];
        }
        if (keys[i].retired_ms == 0)
            current = &keys[i];
    }
    return current;
}

int tipserver_key_used(struct tipserver *ts, const struct outcome *o)
{
    uint8_t id[BUCKET_KEY_ID_LEN];

    if (o->answer != ANSWER_SEALED || !o->key)
        return SP_OK;
    if (o->key->retired_ms == 0)
        return bucket_key_used(ts->o.bk, o->key->serial, NULL);
    key_id(o->key, id);
    return bucket_key_used(ts->o.bk, o->key->serial, id);
}

int tipserver_seal_publish(struct tipserver *ts, struct outcome *o, const struct host_publish *in,
                           struct host_publish *out, int64_t now)
{
    const struct device_info *d;
    const struct device_key *k;
    size_t len;
    uint8_t *env;
    int rc;

    /* Phase 2 checked the device; the registry cannot change in between. */
    if ((rc = devcache_device(ts->o.devs, in->seal_for, &d)))
        return SP_ERR_DB;
    if (!(k = downlink_key(ts, d, now))) {
        outcome_fail(o, R_analysis_error, "publish() sealed for %s: no usable key", d->serial);
        return SP_ERR_CRYPTO;
    }
    rc = tipserver__seal_ack(ts, k, d, in->payload, in->payload_len, &env, &len);
    if (rc == SP_ERR_DB)
        return rc;
    if (rc == SP_ERR_REPLAY) {
        outcome_fail(o, R_analysis_error,
                     "publish() sealed for %s: the key's counters are used up; rotate it",
                     d->serial);
        return rc;
    }
    if (rc) {
        outcome_fail(o, R_analysis_error, "publish() sealed for %s: sealing failed", d->serial);
        return rc;
    }
    *out = *in;
    out->payload = env;
    out->payload_len = len;
    return SP_OK;
}

/* ---- commands picked up by HTTP, UDP and TCP requests ------------------ */

/* 1 if o's sender proved it speaks for o->serial (a command may go to it). */
static int authenticated(const struct outcome *o)
{
    return o->authenticated && o->serial && o->reason != R_plaintext_refused;
}

static int command_payload(struct tipserver *ts, const struct bucket_command *bc, int64_t now,
                           uint8_t **out, size_t *len, const char **why);

/*
 * Command c as the answer form of o: a sealed one as it was sealed, or
 * sealed now (and kept, so that MQTT publishes the same envelope) when the
 * request came before the daemon sealed it between batches. 0, -1 (not
 * this time) or SP_ERR_DB.
 */
static int pickup_payload(struct tipserver *ts, const struct outcome *o, struct bucket_command *c,
                          int64_t now, struct tip_answer *a)
{
    size_t cap = strlen(c->command) + 16;
    const char *why = NULL;
    char *frame;
    int n, rc;

    if (c->sealed && !c->payload) {
        rc = command_payload(ts, c, now, &c->payload, &c->payload_len, &why);
        if (rc == SP_ERR_DB ||
            (!rc && bucket_command_update(ts->o.bk, c->id, c->payload, c->payload_len, 0, NULL)))
            return SP_ERR_DB;
        if (rc)
            return -1; /* the between-batches pass records why */
    }
    if (c->sealed) {
        *a = (struct tip_answer){"", c->payload, c->payload_len};
        return 0;
    }
    if (!(frame = arena_alloc(ts->o.arena, cap)))
        return -1;
    n = sp_tip_build_ack(o->answer == ANSWER_FRAME ? SP_ACK_FRAME : SP_ACK_MQTT, 0, 0, SP_ACK_CMD,
                         c->command, strlen(c->command), frame, cap);
    if (n < 0)
        return -1;
    *a = (struct tip_answer){"", (const uint8_t *)frame, (size_t)n};
    return 0;
}

int tipserver_pickup(struct tipserver *ts, const struct ingest_msg *m, const struct outcome *o,
                     int64_t now, struct tip_answer *out, size_t max, size_t *n)
{
    struct bucket_command bc[4];
    size_t got = 0;
    int rc;

    *n = 0;
    if (!m->commands || !authenticated(o))
        return SP_OK;
    if (max > 4)
        max = 4;
    /* A retry gets what the request took the first time, and nothing new. */
    rc = o->duplicate ? pickups_taken_by(ts->pk, o->digest, ts->o.arena, bc, max, &got)
                      : pickups_waiting(ts->pk, o->serial, o->answer == ANSWER_SEALED, ts->o.arena,
                                        bc, max, &got);
    if (rc)
        return rc == SP_ERR_NOMEM ? SP_OK : SP_ERR_DB;
    for (size_t i = 0; i < got; i++) {
        if ((rc = pickup_payload(ts, o, &bc[i], now, &out[*n])) == SP_ERR_DB)
            return rc;
        if (rc)
            continue;
        if (!o->duplicate) {
            if (pickups_take(ts->pk, bc[i].id, o->digest, now))
                return SP_ERR_DB;
            LOG_INFO("command picked up id=%lld serial=%s", (long long)bc[i].id, o->serial);
        }
        (*n)++;
    }
    return SP_OK;
}

/* ---- commands from the CLI -------------------------------------------- */

/* Seals (or frames) one queued command; 0, an error for the row, or SP_ERR_DB. */
static int command_payload(struct tipserver *ts, const struct bucket_command *bc, int64_t now,
                           uint8_t **out, size_t *len, const char **why)
{
    const struct device_info *d;
    const struct device_key *k;
    size_t cap = strlen(bc->command) + 16;
    char *frame = arena_alloc(ts->o.arena, cap);
    int n, rc;

    if (!frame)
        return SP_ERR_DB;
    n = sp_tip_build_ack(bc->sealed ? SP_ACK_INNER : SP_ACK_MQTT, 0, 0, SP_ACK_CMD, bc->command,
                         strlen(bc->command), frame, cap);
    if (n < 0) {
        *why = "not a valid TagoTiP command";
        return SP_ERR_PAYLOAD;
    }
    rc = devcache_device(ts->o.devs, bc->serial, &d);
    if (rc == SP_ERR_NODEVICE) {
        *why = "unknown device";
        return rc;
    }
    if (rc)
        return SP_ERR_DB;
    if (!bc->sealed) {
        *out = (uint8_t *)frame;
        *len = (size_t)n;
        return SP_OK;
    }
    if (!(k = downlink_key(ts, d, now))) {
        *why = "the device has no usable key";
        return SP_ERR_CRYPTO;
    }
    rc = tipserver__seal_ack(ts, k, d, (const uint8_t *)frame, (size_t)n, out, len);
    if (rc == SP_ERR_REPLAY)
        *why = "the key's nonce seeds are used up; rotate it";
    else if (rc && rc != SP_ERR_DB)
        *why = "sealing failed";
    return rc;
}

/* Seals what is new among bc[0..n) and commits it before anything leaves. */
static int commands_seal(struct tipserver *ts, struct bucket_command *bc, size_t n, int64_t now)
{
    int rc;

    if (devcache_sync(ts->o.devs) || bucket_begin(ts->o.bk))
        return SP_ERR_DB;
    for (size_t i = 0; i < n; i++) {
        const char *why = NULL;
        if (bc[i].payload)
            continue;
        rc = command_payload(ts, &bc[i], now, &bc[i].payload, &bc[i].payload_len, &why);
        if (rc == SP_ERR_DB)
            goto fail;
        if (rc) {
            LOG_WARN("command not sent id=%lld serial=%s reason=\"%s\"", (long long)bc[i].id,
                     bc[i].serial, why);
            bc[i].payload = NULL;
        }
        if (bucket_command_update(ts->o.bk, bc[i].id, bc[i].payload, bc[i].payload_len, 0,
                                  rc ? why : NULL))
            goto fail;
    }
    if (bucket_commit(ts->o.bk))
        goto fail;
    return SP_OK;
fail:
    bucket_rollback(ts->o.bk);
    return SP_ERR_DB;
}

int tipserver_commands(struct tipserver *ts, const struct ingest_output *out, struct inspect *in,
                       int64_t now)
{
    struct bucket_command bc[64];
    size_t n = 0, sent = 0;
    int rc;

    if ((rc = bucket_commands_pending(ts->o.bk, ts->o.arena, bc, 64, &n)) || n == 0)
        return rc ? SP_ERR_DB : 0;
    if ((rc = commands_seal(ts, bc, n, now)))
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (!bc[i].payload)
            continue;
        char *topic =
            arena_printf(ts->o.arena, "%s/%s/ack", bc[i].sealed ? "$tips" : "$tip", bc[i].serial);
        if (!topic || out->publish(out->ctx, topic, bc[i].payload, bc[i].payload_len, 1, 0, NULL))
            return SP_ERR_MQTT;
        if (bucket_command_update(ts->o.bk, bc[i].id, NULL, 0, now, NULL))
            return SP_ERR_DB;
        LOG_INFO("command sent id=%lld topic=%s", (long long)bc[i].id, topic);
        observe_sent(in, bc[i].serial, "command", topic, NULL, bc[i].payload_len, now);
        sent++;
    }
    return out->flush(out->ctx) == SP_OK ? (int)sent : SP_ERR_MQTT;
}
