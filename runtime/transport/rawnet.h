/*
 * rawnet.h - the raw binding of TagoTiP (TagoTipServers.md §4) over UDP and
 * TCP: whole frames METHOD|[!N|]AUTH|SERIAL[|BODY] and TagoTiP/S envelopes,
 * turned into struct net_req (netq.h) and answered once the pipeline has
 * committed them.
 *
 *   UDP  one frame or envelope per datagram, answered to the sender; an
 *        answer to a datagram that did not authenticate is never larger
 *        than the datagram, and a source that sends garbage is rate-limited
 *   TCP  frames end with "\n"; envelopes are length-prefixed (uint16,
 *        big-endian, TagoTiPs.md §5.4); answers in the same framing
 *
 * One thread runs both listeners.
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

/* Starts the listeners. Returns 0, or SP_ERR_IO with err. */
int rawnet_start(const struct rawnet_opts *o, struct netq *q, struct rawnet **out, char *err,
                 size_t errlen) __attribute__((warn_unused_result));
/* Stops listening, sends what done() gave back, closes every connection. */
void rawnet_stop(struct rawnet *r);

#endif
