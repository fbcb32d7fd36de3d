/*
 * tipserver_internal.h - what tipserver.c (routes, answers) and tipdown.c
 * (sealing, commands) share: the server's state and the sealing of an ACK.
 * Nothing else includes it.
 */
#ifndef SP_TIPSERVER_INTERNAL_H
#define SP_TIPSERVER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "sealpipe.h"
#include "tipserver.h"

struct tipserver {
    struct tipserver_opts o;
    struct pickups *pk;           /* commands picked up by requests */
    struct sp_tip_body body;      /* 15 KB: off the stack */
    char value[SP_MAX_FRAME + 1]; /* one unescaped metadata value */
};

/*
 * Seals inner as a TagoTiP/S ACK envelope (TagoTiPs.md §4.2, §9) for device
 * d with key k, its nonce seed the key's next server counter advanced in the
 * open batch. Returns 0 with the envelope in the arena, SP_ERR_REPLAY (the
 * key's 2^32 seeds are used up), SP_ERR_CRYPTO or SP_ERR_DB.
 */
int tipserver__seal_ack(struct tipserver *ts, const struct device_key *k,
                        const struct device_info *d, const uint8_t *inner, size_t len,
                        uint8_t **out, size_t *out_len);

#endif
