/*
 * push.c - the push command: publishes --count TagoTiP bodies, plain on
 * $tip/<serial>/push or sealed on $tips/<serial>/push, with up to
 * DEVICE_WINDOW unacknowledged, each counter durable before its envelope
 * goes out; prints the rate on stderr.
 */
#include "device.h"

#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* Publishes every message; the session is connected. */
static int push_run(const struct args *a, struct session *s, struct work *w, struct counters *k)
{
    char topic[SP_MAX_SERIAL + 16];
    uint8_t device_hash[SP_HASH_LEN];
    uint32_t last = k->first + (uint32_t)(a->count - 1);
    int rc;

    snprintf(topic, sizeof(topic), "%s/%s/push", a->encrypt ? "$tips" : "$tip", a->serial);
    sp_device_hash(a->serial, strlen(a->serial), device_hash);
    for (uint64_t i = 0; i < a->count; i++) {
        if (i > 0 && a->interval_ms > 0 && (rc = session_sleep(s, a->interval_ms)) != 0)
            return rc;
        if ((rc = work_body(w, a->body, i)) < 0)
            return body_error(a, i, rc);
        const void *payload = w->body;
        size_t len = w->body_len;
        if (a->encrypt) {
            uint32_t counter = k->first + (uint32_t)i;
            if (counters_reserve(k, counter, last) != 0)
                return EXIT_FAIL;
            if ((rc = work_seal(w, a, device_hash, counter)) < 0)
                return fail("cannot seal message %" PRIu64 ": %s", i, sp_strerror(rc));
            payload = w->env;
            len = w->env_len;
        }
        if ((rc = session_drain(s, DEVICE_WINDOW - 1, a->timeout_s)) != 0)
            return rc;
        if ((rc = session_publish(s, topic, payload, len, a->qos)) != 0)
            return rc;
    }
    return session_drain(s, 0, a->timeout_s);
}

int cmd_push(const struct args *a)
{
    struct session s;
    struct counters k;
    struct work *w = calloc(1, sizeof(*w));
    int rc;

    counters_init(&k);
    if (!w)
        return fail("out of memory");
    /* Check the first and last body before connecting; the rest as they go. */
    uint64_t bad = 0;
    if ((rc = work_body(w, a->body, 0)) == 0 && (rc = work_body(w, a->body, a->count - 1)) < 0)
        bad = a->count - 1;
    if (rc < 0) {
        rc = body_error(a, bad, rc);
        goto out_work;
    }
    if (a->encrypt && (rc = counters_open(&k, a)) != 0)
        goto out_counters;
    signal(SIGPIPE, SIG_IGN);
    if ((rc = session_open(&s, a)) != 0)
        goto out_session;

    double t0 = now_s();
    if ((rc = push_run(a, &s, w, &k)) != 0)
        goto out_session;
    double dt = now_s() - t0;
    if (s.rejected > 0) {
        rc = session_rejected(&s);
        goto out_session;
    }
    if (!a->quiet)
        fprintf(stderr, "published %" PRIu64 " messages in %.3f s (%.0f msg/s)\n", a->count, dt,
                dt > 0 ? (double)a->count / dt : 0.0);
    rc = EXIT_OK;

out_session:
    session_close(&s);
out_counters:
    counters_close(&k);
out_work:
    work_free(w);
    return rc;
}
