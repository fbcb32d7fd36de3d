/*
 * answer.c - what the server sends a device, read the same way on every
 * transport: a plain ACK (MQTT's "STATUS|DETAIL" or the raw binding's
 * "ACK|STATUS|DETAIL"), a sealed ACK envelope opened with the key, or a
 * plaintext fallback "ACK|ERR|..." in place of an envelope; each becomes
 * its ACK frame line, the form the tool prints.
 */
#include "device.h"

#include <string.h>

#include <sodium.h>

/* Opens a sealed ACK envelope for this device into inner. 0 or -1. */
static int answer_open(const struct args *a, const uint8_t *p, size_t len, uint8_t *inner,
                       size_t cap, size_t *n)
{
    struct sp_env_header h;
    uint8_t dh[SP_HASH_LEN];

    sp_device_hash(a->serial, strlen(a->serial), dh);
    if (sp_env_parse_header(p, len, &h) != 0 || h.method != SP_METHOD_ACK ||
        memcmp(h.device_hash, dh, SP_HASH_LEN) != 0 ||
        sp_env_open(&h, p, len, a->key, a->key_len, inner, cap, n) != 0)
        return -1;
    return 0;
}

int answer_read(const struct args *a, int sealed, int plain_form, const uint8_t *p, size_t len,
                char *out, size_t cap, struct sp_tip_ack *ackp)
{
    uint8_t inner[SP_MAX_FRAME + 1];
    struct sp_tip_ack ack;
    size_t n = 0;
    int form = plain_form;
    const char *text = (const char *)p;

    if (sealed && !(len > 0 && p[0] == 'A')) {
        if (answer_open(a, p, len, inner, sizeof(inner), &n) < 0)
            return ANSWER_BAD_ENVELOPE;
        text = (const char *)inner;
        len = n;
        form = SP_ACK_INNER;
    } else if (sealed) {
        form = SP_ACK_FRAME; /* plaintext fallback, TagoTiPs.md §9 */
    }
    int rc = sp_tip_parse_ack(text, len, form, &ack);
    if (rc == SP_OK && len > 0 && text[len - 1] == '\n')
        len--; /* the optional LF ends the line we print */
    if (rc != SP_OK || (size_t)snprintf(out, cap, "%s%.*s", form == SP_ACK_FRAME ? "" : "ACK|",
                                        (int)len, text) >= cap) {
        sodium_memzero(inner, sizeof(inner));
        return ANSWER_NOT_ACK;
    }
    sodium_memzero(inner, sizeof(inner));
    if (ackp) {
        *ackp = ack; /* its detail span is not valid after return */
        ackp->detail.p = NULL;
        ackp->detail.n = 0;
    }
    return ack.status;
}
