/*
 * topicroute.c - the route of every topic but $tip and $tips (those are the
 * TagoTiP server's, tipserver.c): TagoIO's MQTT behaviour. The analysis whose
 * declared filter matches takes the message; the device is the publisher the
 * broker plugin stamped, else the filter's {serial} level; a payload that is
 * TagoIO data becomes records (record.c), else the device's payload parser
 * (or the matching analysis) runs on it in the worker.
 */
#include "topicroute.h"

#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "base/record.h"
#include "sealpipe.h"

void topic_route(const struct topic_route *r, const struct ingest_msg *m, int64_t now,
                 struct outcome *o)
{
    char serial[SP_MAX_SERIAL + 1];
    struct device_info dev;
    char err[512];
    int ai = analyses_match(r->an, m->topic, serial, sizeof(serial));

    if (ai < 0) {
        o->serial = m->publisher; /* the dead letter is its publisher's, when known */
        outcome_fail(o, R_no_route, "no analysis declares a filter matching %s", m->topic);
        return;
    }
    /*
     * The broker plugin's stamp says who published: a device's data lands in
     * its own bucket whatever topic it used, {serial} level included
     * (TagoIO's behaviour). Without a stamp (the daemon's own broker user, or
     * a broker without the plugin) the topic names the device.
     */
    if (m->publisher) {
        if (serial[0] && strcmp(serial, m->publisher) != 0)
            LOG_DEBUG("topic=%s names %s; published by %s, stored for it", m->topic, serial,
                      m->publisher);
        snprintf(serial, sizeof(serial), "%s", m->publisher);
    } else if (!serial[0]) {
        outcome_fail(o, R_unknown_device, "filter of analysis %s names no {serial} level",
                     pool_name(r->pool, (size_t)ai));
        return;
    }
    if (outcome_device(o, r->devs, serial, 1, &dev))
        return;
    int rc =
        records_from_payload(r->arena, m->topic, m->payload, m->len, &o->records, err, sizeof(err));
    if (rc < 0) {
        outcome_fail(o, R_invalid_body, "%s", err);
        return;
    }
    int parser = rc == 0 ? outcome_parser(o, r->pool, &dev) : -1;
    if (o->reason)
        return;
    outcome_run(o, parser >= 0 ? parser : ai, m, &dev, now);
}
