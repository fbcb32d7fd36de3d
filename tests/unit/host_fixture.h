/*
 * host_fixture.h - what test_host.c and test_lapi.c share: a host with the
 * default limits, loading a script, and running it on a fixed message (a
 * small binary payload from device dev1), on a text payload or on a given
 * topic. err holds the last error text. Include after check.h.
 */
#ifndef SP_HOST_FIXTURE_H
#define SP_HOST_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "sandbox/host.h"
#include "sealpipe.h"

static char err[2048]; /* the last error text */

#define OK_SCRIPT                                                                                  \
    "return { topics = {'sensors/{serial}/raw'},\n"                                                \
    "  handle = function(msg) return {variable = 'n', value = #msg.payload} end }\n"

static inline int load(struct host *h, const char *name, const char *src)
{
    return host_load(h, name, src, strlen(src), err, sizeof err);
}

static inline struct host *new_host(void)
{
    struct host_limits l;
    host_limits_default(&l);
    return host_new(&l);
}

/* Runs analysis `name` with a small binary payload; returns the status. */
static inline int run(struct host *h, const char *name, struct arena *a, struct host_out *out)
{
    static const uint8_t payload[] = {0x08, 0x98, 0x2d, 0x0e, 0x74};
    struct host_msg m = {.topic = "sensors/dev1/raw",
                         .payload = payload,
                         .payload_len = sizeof payload,
                         .qos = 1,
                         .received_ms = 1764000000000,
                         .serial = "dev1",
                         .device_name = "Device One",
                         .tags_json = "{\"site\":\"north\",\"floor\":\"2\"}",
                         .params_json = "{\"offset\":\"1.5\"}"};
    int i = host_find(h, name);
    if (i < 0)
        return SP_ERR_NOTFOUND;
    err[0] = '\0';
    return host_run(h, (size_t)i, &m, a, out, err, sizeof err);
}

/* Loads src as "t" and runs it once. */
static inline int load_run(struct host *h, const char *src, struct arena *a, struct host_out *out)
{
    int rc = load(h, "t", src);
    if (rc) {
        fprintf(stderr, "load failed: %s\n", err);
        return 1000 + rc;
    }
    return run(h, "t", a, out);
}

/* Runs analysis name on a text payload, with device dev1 and optional params. */
static inline int run_text(struct host *h, const char *name, const char *topic, const char *payload,
                           const char *params_json, struct arena *a, struct host_out *out)
{
    struct host_msg m = {.topic = topic,
                         .payload = (const uint8_t *)payload,
                         .payload_len = strlen(payload),
                         .received_ms = 1764000000000,
                         .serial = "dev1",
                         .device_name = "dev1",
                         .params_json = params_json};
    int i = host_find(h, name);
    if (i < 0)
        return SP_ERR_NOTFOUND;
    err[0] = '\0';
    int rc = host_run(h, (size_t)i, &m, a, out, err, sizeof err);
    if (rc && getenv("SP_TEST_VERBOSE"))
        fprintf(stderr, "  %s: %s\n", name, err);
    return rc;
}

/* A Lua handle body that must run without error (its asserts are the checks). */
static inline void check_lua(struct host *h, struct arena *a, const char *what, const char *body)
{
    struct host_out out;
    char *src = malloc(strlen(body) + 128);
    CHECK(src != NULL);
    if (!src)
        return;
    sprintf(src, "return {handle = function(msg)\n%s\nend}", body);
    int rc = load_run(h, src, a, &out);
    CHECK_EQ_INT(rc, 0);
    if (rc)
        fprintf(stderr, "  %s: %s\n", what, err);
    free(src);
}

/* Runs analysis `name` with topic and serial (NULL: no device). */
static inline int run_topic(struct host *h, const char *name, const char *topic, const char *serial,
                            struct arena *a, struct host_out *out)
{
    struct host_msg m = {.topic = topic, .received_ms = 1764000000000, .serial = serial};
    int i = host_find(h, name);
    if (i < 0)
        return SP_ERR_NOTFOUND;
    err[0] = '\0';
    return host_run(h, (size_t)i, &m, a, out, err, sizeof err);
}

#endif
