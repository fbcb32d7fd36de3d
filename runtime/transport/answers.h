/*
 * answers.h - the daemon's answers to devices (TagoTiP ACKs), handed to the
 * embedded broker's plugin to publish (broker/plugin/answers.c says why).
 *
 * The channel is an ingest output (core/ingest.h) in front of the MQTT link:
 * a QoS 1 publish without retain or origin (an answer) goes to the plugin
 * while one is connected and takes it; everything else, and everything while
 * no plugin is connected, goes through the link as before. flush() writes
 * the frames and, when it wrote any, publishes a QoS 0 wake-up on the link
 * (ANSWERS_WAKE_TOPIC), so that the broker's loop turns and the plugin reads
 * them now rather than within 100 ms. Frames a dead connection did not take
 * are lost and counted (sealpipe_answers_lost_total), as answers queued in
 * a broker that dies are. Not thread-safe: the pipeline's thread.
 */
#ifndef SP_ANSWERS_H
#define SP_ANSWERS_H

#include <stddef.h>

#include "core/ingest.h"

/* No client subscribes to it: wildcards do not match topics that begin with '$'. */
#define ANSWERS_WAKE_TOPIC "$sealpipe/wake"

struct answers;

/* Listens on path; link is the MQTT link's output. 0, or SP_ERR_IO with err. */
int answers_open(const char *path, const struct ingest_output *link, struct answers **out,
                 char *err, size_t errlen) __attribute__((warn_unused_result));
void answers_free(struct answers *a);

const struct ingest_output *answers_output(struct answers *a);

#endif
