/*
 * observe.c - the inspector's events of a committed message (observe.h).
 *
 * Every event of one message names the same device: the one the message was
 * attributed to (its records' bucket), else the publisher the broker
 * stamped, else none (""): a serial a message only names is shown as
 * "claimed", under no device.
 */
#include "observe.h"

#include <string.h>

#include "inspect.h"
#include "sealpipe.h"

#define VARIABLES_SHOWN 20

/* Only a sender that proved who it is writes into a device's events: else
 * anyone reaching the HTTP or UDP port could name any serial, filling the
 * rings with devices of their invention and a real device's with their
 * text. */
const char *observe_device(const struct ingest_msg *m, const struct outcome *o)
{
    if (m->via && !o->authenticated)
        return "";
    if (o->serial)
        return o->serial;
    return m->publisher ? m->publisher : "";
}

/* The payload's first bytes as text, unless it is an envelope (binary,
 * sealed: its plaintext is the envelope event's, and private) or a raw
 * frame (it carries the profile's auth hash, a credential: review). */
static void payload_preview(struct inspect_ev *e, const struct ingest_msg *m,
                            const struct outcome *o)
{
    size_t n = m->len < INSPECT_PREVIEW ? m->len : INSPECT_PREVIEW;

    if (o->envelope || strncmp(m->topic, "$tips/", 6) == 0 || m->binding == INGEST_ENVELOPE ||
        m->binding == INGEST_FRAME)
        return;
    jsonline_strn(&e->j, "payload", (const char *)m->payload, n);
    if (m->full_len > n)
        jsonline_bool(&e->j, "payload_cut", 1);
}

static void received(struct inspect *in, const struct ingest_msg *m, const struct outcome *o,
                     const char *dev, int64_t at)
{
    struct inspect_ev e;

    if (m->trigger) {
        /* A run no device message started: its topic says which; its ctx is
         * the payload. */
        inspect_begin(&e, dev, "trigger", at);
        jsonline_str(&e.j, "topic", m->topic);
        jsonline_int(&e.j, "size", (int64_t)m->full_len);
        payload_preview(&e, m, o);
        inspect_emit(in, &e);
        return;
    }
    inspect_begin(&e, dev, "message", at);
    jsonline_str(&e.j, "transport", m->via ? m->via : "mqtt");
    jsonline_str(&e.j, "topic", m->topic);
    if (!*dev && o->answer_serial)
        jsonline_str(&e.j, "claimed", o->answer_serial); /* the serial it names, unproven */
    jsonline_int(&e.j, "size", (int64_t)m->full_len);
    if (!m->via) {
        jsonline_int(&e.j, "qos", m->qos);
        jsonline_bool(&e.j, "retain", m->retain);
    }
    if (m->publisher)
        jsonline_str(&e.j, "publisher", m->publisher);
    payload_preview(&e, m, o);
    inspect_emit(in, &e);
}

static void envelope(struct inspect *in, const struct outcome *o, const char *dev, int64_t at)
{
    struct inspect_ev e;
    const char *suite = sp_suite_name(o->suite);

    inspect_begin(&e, dev, "envelope", at);
    jsonline_str(&e.j, "result", o->key ? "opened" : "rejected");
    jsonline_str(&e.j, "suite", suite ? suite : "?");
    if (o->check_counter)
        jsonline_int(&e.j, "counter", o->env_counter);
    if (!o->key) {
        jsonline_str(&e.j, "reason", outcome_reason_name(o->reason));
        jsonline_str(&e.j, "detail", o->detail);
    }
    if (o->plain) {
        size_t n = o->plain_len < INSPECT_PREVIEW ? o->plain_len : INSPECT_PREVIEW;
        inspect_private(&e);
        jsonline_strn(&e.j, "plaintext", (const char *)o->plain, n);
    }
    inspect_emit(in, &e);
}

static void logs(struct inspect *in, const struct outcome *o, const char *dev, int64_t at)
{
    struct inspect_ev e;

    for (size_t i = 0; i < o->nlogs; i++) {
        inspect_begin(&e, dev, "log", at);
        jsonline_str(&e.j, "analysis", o->analysis);
        jsonline_str(&e.j, "line", o->logs[i]);
        inspect_emit(in, &e);
    }
}

/* The distinct variables of rv, the first VARIABLES_SHOWN, into v. */
static size_t variables(const struct record_vec *rv, const char *v[VARIABLES_SHOWN])
{
    size_t shown = 0;

    for (size_t i = 0; i < rv->n && shown < VARIABLES_SHOWN; i++) {
        int seen = 0;
        for (size_t k = 0; k < shown && !seen; k++)
            seen = strcmp(v[k], rv->v[i].variable) == 0;
        if (!seen)
            v[shown++] = rv->v[i].variable;
    }
    return shown;
}

static void stored(struct inspect *in, const char *dev, const struct record_vec *rv,
                   const char *analysis, const char *by, int64_t at)
{
    struct inspect_ev e;
    const char *vars[VARIABLES_SHOWN];

    inspect_begin(&e, dev, "stored", at);
    jsonline_int(&e.j, "records", (int64_t)rv->n);
    jsonline_strs(&e.j, "variables", vars, variables(rv, vars));
    jsonline_str(&e.j, "analysis", analysis); /* the parser that made them, if one did */
    if (by)
        jsonline_str(&e.j, "inserted_by", by);
    inspect_emit(in, &e);
}

/* How the message ended. */
static void ending(struct inspect *in, const struct ingest_msg *m, const struct outcome *o,
                   const char *dev, int64_t at)
{
    struct inspect_ev e;
    const char *kind = o->duplicate                  ? "duplicate"
                       : o->ignored                  ? "ignored"
                       : !o->reason                  ? NULL
                       : m->via && !o->authenticated ? "refused"
                                                     : "dead_letter";

    if (!kind) {
        stored(in, dev, &o->records, o->analysis, NULL, at);
        for (size_t k = 0; k < o->ninserts; k++)
            stored(in, o->inserts[k].serial, &o->inserts[k].records, o->analysis, dev, at);
        return;
    }
    inspect_begin(&e, dev, kind, at);
    if (o->reason) {
        jsonline_str(&e.j, "reason", outcome_reason_name(o->reason));
        jsonline_str(&e.j, "detail", o->detail);
        jsonline_str(&e.j, "analysis", o->analysis);
    }
    inspect_emit(in, &e);
}

void observe_message(struct inspect *in, const struct ingest_msg *m, const struct outcome *o,
                     int64_t now)
{
    const char *dev = observe_device(m, o);

    if (!in)
        return;
    received(in, m, o, dev, now);
    if (o->envelope)
        envelope(in, o, dev, now);
    logs(in, o, dev, now);
    ending(in, m, o, dev, now);
}

void observe_sent(struct inspect *in, const char *to, const char *what, const char *topic,
                  const char *via, size_t len, int64_t now)
{
    struct inspect_ev e;

    if (!in || !to)
        return;
    inspect_begin(&e, to, "sent", now);
    jsonline_str(&e.j, "what", what);
    if (via)
        jsonline_str(&e.j, "transport", via);
    else
        jsonline_str(&e.j, "topic", topic);
    jsonline_int(&e.j, "size", (int64_t)len);
    inspect_emit(in, &e);
}
