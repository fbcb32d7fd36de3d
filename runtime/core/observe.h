/*
 * observe.h - what a committed batch tells the Live Inspector (inspect.h):
 * per message, in order, "message", "envelope", "log" lines, then "stored",
 * "dead_letter", "duplicate", "ignored" or "refused"; and "sent" for what
 * leaves for a device. Called after the commit, so what it reports holds.
 */
#ifndef SP_OBSERVE_H
#define SP_OBSERVE_H

#include <stddef.h>
#include <stdint.h>

#include "ingest.h"
#include "outcome.h"

struct inspect;

/* The device m's events are about: the one it proved it is (or the broker
 * vouches for), else "" (a serial it merely names is no proof). */
const char *observe_device(const struct ingest_msg *m, const struct outcome *o);

void observe_message(struct inspect *in, const struct ingest_msg *m, const struct outcome *o,
                     int64_t now);
/* what: "answer", "command" or "publish"; to: the device's serial; via:
 * the transport of an answer to a request (HTTP, UDP, TCP: no topic), NULL
 * for MQTT. */
void observe_sent(struct inspect *in, const char *to, const char *what, const char *topic,
                  const char *via, size_t len, int64_t now);

#endif
