/*
 * link.c - push, pull and ping over a request/answer transport (--transport
 * http, udp or tcp): each request is built with the SDK (a raw frame with
 * sp_tip_build_frame, a sealed one with sp_env_seal; HTTP carries the bare
 * body), sent by the transport (net_http.c, net_raw.c), and answered before
 * the next one goes (TagoTiPs.md §9: one request outstanding). Every answer
 * and pending command is printed on stdout as an ACK frame line. Counters:
 * envelopes, and the "!N" of raw plain frames, take theirs from the counter
 * file as MQTT's encrypted push does (counter.c), so a server that enforces
 * them (TagoTiP.md §10.2) accepts every run.
 */
#include "device.h"

#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A raw frame's "METHOD|!N|AUTH|SERIAL|" around a body of up to SP_MAX_FRAME
 * bytes, so a body too long for a frame is reported as too large. */
#define LINK_FRAME_CAP (SP_MAX_FRAME + 160)

int link_open(struct link *l, const struct args *a)
{
    memset(l, 0, sizeof(*l));
    l->a = a;
    l->fd = -1;
    snprintf(l->where, sizeof(l->where), strchr(a->host, ':') ? "[%s]:%d" : "%s:%d", a->host,
             a->port);
    return a->transport == TRANSPORT_HTTP ? http_open(l) : raw_open(l);
}

int link_exchange(struct link *l, const struct request *rq)
{
    l->why[0] = '\0';
    l->http_status = 0;
    return l->a->transport == TRANSPORT_HTTP ? http_exchange(l, rq) : raw_exchange(l, rq);
}

void link_close(struct link *l)
{
    if (l->a && l->a->transport == TRANSPORT_HTTP)
        http_close(l);
    else
        raw_close(l);
}

/*
 * Which answer is ours: with "!N" the one that echoes it (TagoTiP.md §9.5;
 * one without a counter too, from a server that does not echo); without,
 * the first that is not a CMD (one request at a time), and for PING a CMD
 * as well, the pending command it polls for.
 */
static int link_ours(const struct request *rq, int status, const struct sp_tip_ack *ack)
{
    if (rq->after)
        return 0;
    if (!rq->sealed && rq->has_seq && ack->has_counter)
        return ack->counter == rq->seq;
    return status != SP_ACK_CMD || rq->method == SP_METHOD_PING;
}

int link_take(struct link *l, const struct request *rq, int plain_form, const uint8_t *p,
              size_t len)
{
    const char *t = transport_name(l->a->transport);
    struct sp_tip_ack ack;
    int st = answer_read(l->a, rq->sealed, plain_form, p, len, l->line, sizeof(l->line), &ack);

    if (st == ANSWER_BAD_ENVELOPE || st == ANSWER_NOT_ACK) {
        fprintf(stderr, "%s: %s %s: a %zu-byte answer %s\n", DEVICE_PROG, t, l->where, len,
                st == ANSWER_BAD_ENVELOPE ? "does not open with this key" : "is not a TagoTiP ACK");
        return LINK_BAD;
    }
    int ours = link_ours(rq, st, &ack);
    if (!ours && st != SP_ACK_CMD)
        return LINK_MORE; /* the answer to an earlier try, already taken */
    printf("%s\n", l->line);
    fflush(stdout);
    if (!ours)
        return LINK_MORE;
    if (st == SP_ACK_ERR) {
        const char *detail = strstr(l->line, "ERR|");
        detail = detail ? detail + 4 : "";
        if (l->http_status)
            snprintf(l->why, sizeof(l->why), "http %ld %.100s from %s", l->http_status, detail,
                     l->where);
        else
            snprintf(l->why, sizeof(l->why), "%s ERR %.100s from %s", t, detail, l->where);
    }
    return st;
}

static void link_sleep(uint64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* Whether requests take a counter: envelopes always, plain frames on udp and tcp. */
static int link_counted(const struct args *a)
{
    return a->encrypt || a->transport != TRANSPORT_HTTP;
}

/*
 * The request of method with body (PUSH body, PULL "[a;b]", none for PING)
 * and counter: sealed into env, or a raw frame written into frame, or for
 * plain HTTP the body itself (bare is what HTTP sends: the body, or the
 * VARIABLES list of a GET). Returns 0 or an sp_err.
 */
static int link_request(const struct args *a, int method, const char *body, size_t body_len,
                        const char *bare, uint32_t counter, uint8_t *env, char *frame,
                        struct request *rq)
{
    int n;

    memset(rq, 0, sizeof(*rq));
    rq->method = method;
    if (a->encrypt) {
        rq->sealed = 1;
        rq->bytes = env;
        return seal_request(a, method, counter, body, body_len, env, SP_ENV_MAX_LEN, &rq->len);
    }
    if (a->transport == TRANSPORT_HTTP) {
        rq->bytes = (const uint8_t *)bare;
        rq->len = bare ? strlen(bare) : 0;
        return 0;
    }
    n = sp_tip_build_frame(method, 1, counter, a->auth_hash, a->serial, body, body_len, frame,
                           LINK_FRAME_CAP);
    if (n < 0)
        return n;
    rq->bytes = (const uint8_t *)frame;
    rq->len = (size_t)n;
    rq->has_seq = 1;
    rq->seq = counter;
    return 0;
}

/* Reports a request that failed (st < 0: already reported) or was refused. */
static int link_failed(const struct link *l, int st, const char *what)
{
    if (st < 0)
        return EXIT_FAIL;
    return fail("%s%s%s", l->why, what ? " " : "", what ? what : "");
}

/* Sends every message of push; the link is open. Returns the exit status. */
static int push_run(const struct args *a, struct link *l, struct work *w, struct counters *k,
                    char *frame)
{
    uint32_t last = k->first + (uint32_t)(a->count - 1);
    struct request rq;
    char what[64];
    int rc, st;

    for (uint64_t i = 0; i < a->count; i++) {
        uint32_t counter = k->first + (uint32_t)i;
        if (i > 0 && a->interval_ms > 0)
            link_sleep(a->interval_ms);
        if ((rc = work_body(w, a->body, i)) < 0)
            return body_error(a, i, rc);
        if (link_counted(a) && counters_reserve(k, counter, last) != 0)
            return EXIT_FAIL;
        w->body[w->body_len] = '\0';
        rc = link_request(a, SP_METHOD_PUSH, w->body, w->body_len, w->body, counter, w->env, frame,
                          &rq);
        if (rc < 0)
            return fail("cannot write message %" PRIu64 ": %s", i, sp_strerror(rc));
        rq.linger_ms = i + 1 == a->count ? DEVICE_LINGER_MS : 0;
        st = link_exchange(l, &rq);
        if (st != SP_ACK_OK && st != SP_ACK_CMD) {
            snprintf(what, sizeof(what), "(message %" PRIu64 ")", i);
            return link_failed(l, st, a->count > 1 ? what : NULL);
        }
    }
    return EXIT_OK;
}

int link_push(const struct args *a)
{
    struct work *w = calloc(1, sizeof(*w));
    char *frame = malloc(LINK_FRAME_CAP);
    struct counters k;
    struct link l;
    uint64_t bad = 0;
    int rc;

    counters_init(&k);
    memset(&l, 0, sizeof(l));
    l.fd = -1;
    if (!w || !frame) {
        rc = fail("out of memory");
        goto out;
    }
    if ((rc = work_body(w, a->body, 0)) == 0 && (rc = work_body(w, a->body, a->count - 1)) < 0)
        bad = a->count - 1;
    if (rc < 0) {
        rc = body_error(a, bad, rc);
        goto out;
    }
    if (link_counted(a) && (rc = counters_open(&k, a)) != 0)
        goto out;
    signal(SIGPIPE, SIG_IGN);
    if ((rc = link_open(&l, a)) != 0)
        goto out;
    double t0 = now_s();
    if ((rc = push_run(a, &l, w, &k, frame)) != 0)
        goto out;
    double dt = now_s() - t0;
    if (!a->quiet)
        fprintf(stderr, "sent %" PRIu64 " messages over %s in %.3f s (%.0f msg/s)\n", a->count,
                transport_name(a->transport), dt, dt > 0 ? (double)a->count / dt : 0.0);
    rc = EXIT_OK;
out:
    link_close(&l);
    counters_close(&k);
    work_free(w);
    free(frame);
    return rc;
}

/* Sends one request of method and waits for its answer; ok: the bits
 * (1 << status) of the answers that mean success. Returns the exit status. */
static int link_one(const struct args *a, int method, const char *body, size_t body_len,
                    const char *bare, unsigned ok)
{
    static uint8_t env[SP_ENV_MAX_LEN];
    static char frame[LINK_FRAME_CAP];
    struct counters k;
    struct request rq;
    struct link l;
    struct args one = *a;
    int rc, st;

    counters_init(&k);
    memset(&l, 0, sizeof(l));
    l.fd = -1;
    one.count = 1;
    if (link_counted(a) &&
        ((rc = counters_open(&k, &one)) != 0 || (rc = counters_reserve(&k, k.first, k.first)) != 0))
        goto out;
    if ((rc = link_request(a, method, body, body_len, bare, k.first, env, frame, &rq)) < 0) {
        rc = fail("cannot write the request: %s%s", sp_strerror(rc),
                  rc == SP_ERR_METHOD ? " (AES-256-CCM cannot carry PULL: flags byte 0x41 is "
                                        "reserved, TagoTiPs.md 5.1)"
                                      : "");
        goto out;
    }
    rq.linger_ms = DEVICE_LINGER_MS;
    signal(SIGPIPE, SIG_IGN);
    if ((rc = link_open(&l, a)) != 0)
        goto out;
    st = link_exchange(&l, &rq);
    rc = st >= 0 && (ok & (1u << st)) ? EXIT_OK : link_failed(&l, st, NULL);
out:
    link_close(&l);
    counters_close(&k);
    return rc;
}

int link_pull(const struct args *a)
{
    static struct sp_tip_pull pl;
    static char list[SP_MAX_FRAME + 1];
    int n;

    if (sp_tip_parse_pull(a->body, strlen(a->body), 1, &pl) != SP_OK)
        return fail("bad VARIABLES");
    /* Raw frames and envelopes carry "[a;b]"; HTTP's query "a,b" (TagoTipServers.md §2.4). */
    if ((n = sp_tip_build_pull(&pl, list, sizeof(list))) < 0)
        return fail("cannot write the PULL body: %s", sp_strerror(n));
    return link_one(a, SP_METHOD_PULL, list, (size_t)n, a->body, 1u << SP_ACK_OK);
}

/* PONG, or the pending command the server answers with instead (§2.6). */
int link_ping(const struct args *a)
{
    return link_one(a, SP_METHOD_PING, NULL, 0, NULL, (1u << SP_ACK_PONG) | (1u << SP_ACK_CMD));
}
