/*
 * pull.c - the commands that read the server's answers on the device's ack
 * topic: pull (ask for the last values of variables, print the answer) and
 * listen (print every ACK and CMD frame), opening envelopes with the key.
 */
#include "device.h"

#include <inttypes.h>
#include <signal.h>
#include <string.h>

#include <sodium.h>

/*
 * Turns a frame received on an ack topic into its raw-binding ACK form in
 * out (answer_read) and returns its status, or -1 after reporting on
 * stderr why the frame cannot be read.
 */
static int read_ack(const struct args *a, const char *topic, const uint8_t *p, size_t len,
                    char *out, size_t cap, struct sp_tip_ack *ackp)
{
    int sealed = strncmp(topic, "$tips/", 6) == 0;
    int st = answer_read(a, sealed, SP_ACK_MQTT, p, len, out, cap, ackp);

    if (st == ANSWER_BAD_ENVELOPE)
        fprintf(stderr, "%s: a %zu-byte frame on %s does not open with this key\n", DEVICE_PROG,
                len, topic);
    else if (st == ANSWER_NOT_ACK)
        fprintf(stderr, "%s: a %zu-byte frame on %s is not a TagoTiP ACK\n", DEVICE_PROG, len,
                topic);
    return st < 0 ? -1 : st;
}

/* Connects and subscribes to the device's ack topic(s). */
static int open_acks(struct session *s, const struct args *a)
{
    char plain[SP_MAX_SERIAL + 16], sealed[SP_MAX_SERIAL + 16];
    char *topics[2] = {plain, sealed};
    int rc;

    snprintf(plain, sizeof(plain), "$tip/%s/ack", a->serial);
    snprintf(sealed, sizeof(sealed), "$tips/%s/ack", a->serial);
    signal(SIGPIPE, SIG_IGN);
    if ((rc = session_open(s, a)) != 0)
        return rc;
    return a->encrypt ? session_subscribe(s, topics + 1, 1, 30)
                      : session_subscribe(s, topics, 1, 30);
}

int cmd_listen(const struct args *a)
{
    static char line[SP_MAX_FRAME + 16];
    struct session s;
    uint64_t seen = 0;
    int rc;

    if ((rc = open_acks(&s, a)) != 0)
        goto out;
    int64_t idle = a->timeout_set ? (int64_t)a->timeout_s * 1000 : INT64_MAX / 2;
    int64_t deadline = now_ms() + idle;
    while (!s.lost && (a->count == 0 || seen < a->count) && now_ms() < deadline) {
        session_step(&s, deadline);
        for (size_t i = 0; i < s.nrx && (a->count == 0 || seen < a->count); i++) {
            if (read_ack(a, s.rx[i].topic, s.rx[i].payload, s.rx[i].len, line, sizeof line, NULL) <
                0)
                continue;
            printf("%s\n", line);
            fflush(stdout);
            seen++;
            deadline = now_ms() + idle;
        }
        session_rx_clear(&s);
    }
    rc = s.lost ? session_lost(&s) : EXIT_OK;
out:
    session_close(&s);
    return rc;
}

/* Seals the PULL "serial|[a;b]" into env with the next counter. 0 or an exit status. */
static int pull_seal(const struct args *a, const struct sp_tip_pull *pl, struct counters *k,
                     uint8_t *env, size_t cap, size_t *len)
{
    char list[SP_MAX_FRAME + 1];
    struct args one = *a;
    int n, rc;

    one.count = 1;
    if ((rc = counters_open(k, &one)) != 0 || (rc = counters_reserve(k, k->first, k->first)))
        return rc;
    /* The envelope carries "[a;b]"; the MQTT binding "a,b" (TagoTipServers.md §3.3). */
    if ((n = sp_tip_build_pull(pl, list, sizeof(list))) < 0)
        return fail("cannot write the PULL body: %s", sp_strerror(n));
    rc = seal_request(a, SP_METHOD_PULL, k->first, list, (size_t)n, env, cap, len);
    if (rc)
        return fail("cannot seal the PULL: %s%s", sp_strerror(rc),
                    rc == SP_ERR_METHOD ? " (AES-256-CCM cannot carry PULL: flags byte 0x41 "
                                          "is reserved, TagoTiPs.md 5.1)"
                                        : "");
    return 0;
}

/* Publishes the request (the envelope env, or the plain list); *seq is the
 * "!N" a plain answer echoes. 0 or EXIT_FAIL. */
static int pull_send(const struct args *a, struct session *s, const uint8_t *env, size_t len,
                     uint32_t *seq)
{
    static char req[SP_MAX_FRAME + 16];
    char topic[SP_MAX_SERIAL + 16];

    snprintf(topic, sizeof(topic), "%s/%s/pull", a->encrypt ? "$tips" : "$tip", a->serial);
    *seq = randombytes_uniform(UINT32_MAX);
    if (a->encrypt)
        return session_publish(s, topic, env, len, 1);
    size_t n = (size_t)snprintf(req, sizeof(req), "!%" PRIu32 "|%s", *seq, a->body);
    return session_publish(s, topic, req, n, 1);
}

/*
 * Prints the frames received that are ours and sets *status (enum
 * sp_ack_status) at the answer. Which frame answers us: a plain request
 * carries a "!N" the server echoes (TagoTiP.md §9.5); an envelope cannot, so
 * there the answer is the first OK with a variable list or ERR (one request
 * at a time, TagoTiPs.md §9). Answers to earlier pushes are skipped;
 * unsolicited CMD frames are printed.
 */
static void pull_take(const struct args *a, struct session *s, uint32_t seq, int *status)
{
    static char line[SP_MAX_FRAME + 16];

    for (size_t i = 0; i < s->nrx && *status < 0; i++) {
        struct sp_tip_ack ack;
        int st =
            read_ack(a, s->rx[i].topic, s->rx[i].payload, s->rx[i].len, line, sizeof line, &ack);
        if (st < 0)
            continue;
        /* (ack.detail points into read_ack's buffer: look at line.) */
        int ours = a->encrypt ? st == SP_ACK_ERR || strncmp(line, "ACK|OK|[", 8) == 0
                              : ack.has_counter && ack.counter == seq;
        if (st != SP_ACK_CMD && !ours)
            continue;
        printf("%s\n", line);
        fflush(stdout);
        if (st != SP_ACK_CMD)
            *status = st;
    }
    session_rx_clear(s);
}

/* Waits --timeout for the answer. Returns the exit status. */
static int pull_wait(const struct args *a, struct session *s, uint32_t seq)
{
    int64_t deadline = now_ms() + (int64_t)a->timeout_s * 1000;
    int status = -1;

    while (!s->lost && status < 0 && now_ms() < deadline) {
        session_step(s, deadline);
        pull_take(a, s, seq, &status);
    }
    if (s->lost)
        return session_lost(s);
    if (status < 0)
        return fail("no answer on %s/%s/ack within %u s", a->encrypt ? "$tips" : "$tip", a->serial,
                    a->timeout_s);
    return status == SP_ACK_OK ? EXIT_OK : EXIT_FAIL;
}

int cmd_pull(const struct args *a)
{
    uint8_t env[SP_ENV_MAX_LEN];
    struct sp_tip_pull pl;
    struct session s;
    struct counters k;
    size_t len = 0;
    uint32_t seq;
    int rc;

    counters_init(&k);
    memset(&s, 0, sizeof(s));
    if (sp_tip_parse_pull(a->body, strlen(a->body), 1, &pl) != SP_OK)
        return fail("bad VARIABLES");
    if (a->encrypt && (rc = pull_seal(a, &pl, &k, env, sizeof(env), &len)) != 0)
        goto out;
    if ((rc = open_acks(&s, a)) != 0 || (rc = pull_send(a, &s, env, len, &seq)) != 0)
        goto out;
    rc = pull_wait(a, &s, seq);
out:
    session_close(&s);
    counters_close(&k);
    return rc;
}
