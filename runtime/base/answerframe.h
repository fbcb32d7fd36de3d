/*
 * answerframe.h - the frames the daemon hands the broker plugin to publish:
 * its answers to devices (transport/answers.c writes them,
 * broker/plugin/answers.c reads them). Both ends are one build, so the format
 * has no version.
 *
 * A frame is an 8-byte head, the topic's length and the payload's (32 bits
 * each, little-endian), then the topic (no NUL) and the payload. The plugin
 * publishes each at QoS 1, not retained.
 */
#ifndef SP_ANSWERFRAME_H
#define SP_ANSWERFRAME_H

#include <stddef.h>
#include <stdint.h>

#define ANSWERFRAME_HEAD        8
#define ANSWERFRAME_TOPIC_MAX   65535u       /* MQTT's own limit */
#define ANSWERFRAME_PAYLOAD_MAX (256u << 10) /* larger answers go through MQTT */

static inline void answerframe__put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint32_t answerframe__get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline void answerframe_head(uint8_t head[ANSWERFRAME_HEAD], uint32_t topic_len,
                                    uint32_t payload_len)
{
    answerframe__put32(head, topic_len);
    answerframe__put32(head + 4, payload_len);
}

/* The lengths in a head: 0, or -1 when they are out of bounds (the
 * stream cannot be trusted past it). */
static inline int answerframe_parse(const uint8_t head[ANSWERFRAME_HEAD], uint32_t *topic_len,
                                    uint32_t *payload_len)
{
    *topic_len = answerframe__get32(head);
    *payload_len = answerframe__get32(head + 4);
    if (*topic_len == 0 || *topic_len > ANSWERFRAME_TOPIC_MAX ||
        *payload_len > ANSWERFRAME_PAYLOAD_MAX)
        return -1;
    return 0;
}

#endif
