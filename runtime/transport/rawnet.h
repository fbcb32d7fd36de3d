/*
 * rawnet.h - the raw binding of TagoTiP (TagoTipServers.md §4) over UDP and
 * TCP: whole frames METHOD|[!N|]AUTH|SERIAL[|BODY] and TagoTiP/S envelopes,
 * turned into struct net_req (netq.h) and answered once the pipeline has
 * committed them.
 *
 *   UDP  one frame or envelope per datagram, answered to the sender; an
 *        error answer is never larger than the datagram, another plaintext
 *        answer never larger than max(512, 4 x the datagram), and a sender
 *        (address and port) that keeps failing is blocked
 *   TCP  frames end with "\n"; envelopes are length-prefixed (uint16,
 *        big-endian, TagoTiPs.md §5.4); answers in the same framing; at
 *        most 32 connections from one address
 *
 * A message is a text frame or an envelope by its first byte (rawframe.h,
 * docs/facts.md "TagoTiP raw binding"); frames become INGEST_FRAME requests
 * on topic "$tip", envelopes INGEST_ENVELOPE on "$tips", both with commands
 * (pending commands leave after the answer, each its own datagram or
 * message). One thread runs both listeners; it logs one line per listener
 * at start ("udp listen=127.0.0.1:5540").
 */
#ifndef SP_RAWNET_H
#define SP_RAWNET_H

#include <stddef.h>

#include "netq.h"

struct rawnet_opts {
    const char *bind; /* listener address, e.g. "127.0.0.1" */
    int udp_port;     /* 0: none */
    int tcp_port;     /* 0: none */
};

struct rawnet;

/*
 * Starts the listeners on o->bind and their thread, which submits to q.
 * Returns 0, or SP_ERR_IO with err set ("udp listen=127.0.0.1:5540: Address
 * already in use"). With both ports 0 it starts nothing and *out is NULL.
 */
int rawnet_start(const struct rawnet_opts *o, struct netq *q, struct rawnet **out, char *err,
                 size_t errlen) __attribute__((warn_unused_result));
/*
 * Stops listening, sends what done() gave back, closes every connection and
 * frees r (NULL: nothing). Call it after netq_close, when no request can
 * come back any more; should one still be out, r is left allocated (and
 * logged) so that its done() finds it.
 */
void rawnet_stop(struct rawnet *r);

#endif
