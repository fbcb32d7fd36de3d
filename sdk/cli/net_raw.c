/*
 * net_raw.c - the raw binding (TagoTipServers.md §4) for sealpipe-device:
 * UDP, one frame or envelope per datagram, resent (the same bytes) while
 * no answer comes; TCP, plain frames ended by LF and envelopes behind a
 * uint16 big-endian length (TagoTiPs.md §5.4), both ways, on one
 * connection for the whole command. Each message received goes to
 * link_take, which says whether it answers the request.
 */
#include "device.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static int raw_is_udp(const struct link *l)
{
    return l->a->transport == TRANSPORT_UDP;
}

static const char *raw_name(const struct link *l)
{
    return transport_name(l->a->transport);
}

/* Connects fd to ai within the deadline (TCP), or sets its peer (UDP). 0 or -1 with errno. */
static int raw_connect(int fd, const struct addrinfo *ai, int64_t deadline)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS)
            return -1;
        struct pollfd p = {fd, POLLOUT, 0};
        int64_t left = deadline - now_ms();
        int n = left > 0 ? poll(&p, 1, (int)left) : 0;
        int err = 0;
        socklen_t el = sizeof(err);
        if (n == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            return -1;
        if (err) {
            errno = err;
            return -1;
        }
    }
    return 0;
}

int raw_open(struct link *l)
{
    const struct args *a = l->a;
    struct addrinfo hints = {0}, *res = NULL;
    char port[8];
    int rc, err = 0;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = raw_is_udp(l) ? SOCK_DGRAM : SOCK_STREAM;
    snprintf(port, sizeof(port), "%d", a->port);
    if ((rc = getaddrinfo(a->host, port, &hints, &res)) != 0)
        return fail("%s: cannot resolve %s: %s", raw_name(l), a->host, gai_strerror(rc));
    int64_t deadline = now_ms() + (int64_t)a->timeout_s * 1000;
    for (struct addrinfo *ai = res; ai && l->fd < 0; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd >= 0 && raw_connect(fd, ai, deadline) == 0) {
            l->fd = fd;
            break;
        }
        err = errno;
        if (fd >= 0)
            close(fd);
    }
    freeaddrinfo(res);
    if (l->fd < 0)
        return fail("%s %s: cannot connect: %s", raw_name(l), l->where, strerror(err));
    return 0;
}

void raw_close(struct link *l)
{
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
}

/* Writes all of iov (TCP) or sends it as one datagram (UDP). 0 or -1 with errno. */
static int raw_send(struct link *l, struct iovec *iov, int n)
{
    struct msghdr m = {0};
    m.msg_iov = iov;
    m.msg_iovlen = (size_t)n;
    while (m.msg_iovlen > 0) {
        struct pollfd p = {l->fd, POLLOUT, 0};
        ssize_t w = sendmsg(l->fd, &m, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (poll(&p, 1, (int)l->a->timeout_s * 1000) <= 0)
                return errno = ETIMEDOUT, -1;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        if (raw_is_udp(l))
            return 0;
        while (m.msg_iovlen > 0 && (size_t)w >= m.msg_iov->iov_len) {
            w -= (ssize_t)m.msg_iov->iov_len;
            m.msg_iov++;
            m.msg_iovlen--;
        }
        if (m.msg_iovlen > 0) {
            m.msg_iov->iov_base = (char *)m.msg_iov->iov_base + w;
            m.msg_iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

/* Sends the request in the transport's framing. 0 or EXIT_FAIL. */
static int raw_put(struct link *l, const struct request *rq)
{
    uint8_t prefix[2] = {(uint8_t)(rq->len >> 8), (uint8_t)rq->len};
    struct iovec iov[2];
    int n = 0;

    if (!raw_is_udp(l) && rq->sealed) {
        if (rq->len > 0xffff)
            return fail("tcp: a %zu-byte envelope does not fit the 16-bit length", rq->len);
        iov[n++] = (struct iovec){prefix, 2};
    }
    iov[n++] = (struct iovec){(void *)rq->bytes, rq->len};
    if (!raw_is_udp(l) && !rq->sealed)
        iov[n++] = (struct iovec){"\n", 1};
    if (raw_send(l, iov, n) < 0)
        return fail("%s %s: cannot send: %s", raw_name(l), l->where, strerror(errno));
    return 0;
}

/*
 * Takes the complete messages buffered from the TCP stream, in order: a
 * line (plain) or a length-prefixed message (sealed). Returns the answer's
 * status, LINK_MORE when none answered yet, or LINK_BAD.
 */
static int tcp_take(struct link *l, const struct request *rq)
{
    int st = LINK_MORE;

    while (st == LINK_MORE) {
        size_t hdr = rq->sealed ? 2 : 0, n = 0, skip = 0;
        if (rq->sealed && l->nrx >= 2) {
            n = ((size_t)l->rx[0] << 8) | l->rx[1];
            if (l->nrx < 2 + n)
                break;
            skip = 2 + n;
        } else if (!rq->sealed) {
            uint8_t *lf = memchr(l->rx, '\n', l->nrx);
            if (!lf)
                break;
            n = (size_t)(lf - l->rx);
            skip = n + 1;
        } else {
            break;
        }
        if (n > 0)
            st = link_take(l, rq, SP_ACK_FRAME, l->rx + hdr, n);
        memmove(l->rx, l->rx + skip, l->nrx - skip);
        l->nrx -= skip;
    }
    return st;
}

/* Reads what arrived on the socket and hands it on. Returns as tcp_take, or
 * LINK_BAD after reporting a closed or broken connection. */
static int raw_read(struct link *l, const struct request *rq)
{
    if (raw_is_udp(l)) {
        ssize_t n = recv(l->fd, l->rx, sizeof(l->rx), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return LINK_MORE;
        if (n < 0) {
            fail("udp %s: %s", l->where,
                 errno == ECONNREFUSED ? "connection refused (is anything listening?)"
                                       : strerror(errno));
            return LINK_BAD;
        }
        int st = link_take(l, rq, SP_ACK_FRAME, l->rx, (size_t)n);
        return st == LINK_BAD ? LINK_MORE : st; /* a stray datagram: keep waiting */
    }
    if (l->nrx == sizeof(l->rx)) {
        fail("tcp %s: an answer longer than %zu bytes", l->where, sizeof(l->rx));
        return LINK_BAD;
    }
    ssize_t n = recv(l->fd, l->rx + l->nrx, sizeof(l->rx) - l->nrx, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return LINK_MORE;
    if (n <= 0) {
        fail("tcp %s: %s", l->where, n == 0 ? "the server closed the connection" : strerror(errno));
        return LINK_BAD;
    }
    l->nrx += (size_t)n;
    return tcp_take(l, rq);
}

/* Waits until the deadline for something to read. 1 readable, 0 not yet. */
static int raw_wait(const struct link *l, int64_t until)
{
    struct pollfd p = {l->fd, POLLIN, 0};
    int64_t left = until - now_ms();
    if (left < 0)
        left = 0;
    return poll(&p, 1, (int)left) > 0;
}

/* After the answer: prints the CMD frames that follow within linger_ms. */
static void raw_linger(struct link *l, const struct request *rq)
{
    int64_t until = now_ms() + rq->linger_ms;
    struct request cmds = *rq;

    cmds.after = 1;
    while (rq->linger_ms > 0 && now_ms() < until) {
        if (!raw_is_udp(l) && tcp_take(l, &cmds) == LINK_BAD)
            return;
        if (raw_wait(l, until) && raw_read(l, &cmds) == LINK_BAD)
            return;
    }
}

int raw_exchange(struct link *l, const struct request *rq)
{
    int64_t deadline = now_ms() + (int64_t)l->a->timeout_s * 1000;
    int64_t wait = DEVICE_UDP_FIRST_WAIT_MS, resend = now_ms() + wait;
    int tries = 1, st = LINK_MORE;

    if (raw_put(l, rq) != 0)
        return -1;
    if (!raw_is_udp(l))
        st = tcp_take(l, rq); /* what came after the last answer */
    while (st == LINK_MORE && now_ms() < deadline) {
        int udp_retry = raw_is_udp(l) && tries < DEVICE_UDP_TRIES;
        int64_t until = udp_retry && resend < deadline ? resend : deadline;
        if (raw_wait(l, until))
            st = raw_read(l, rq);
        else if (udp_retry && now_ms() >= resend) {
            if (raw_put(l, rq) != 0)
                return -1;
            tries++;
            wait *= 2;
            resend = now_ms() + wait;
        }
    }
    if (st == LINK_BAD)
        return -1;
    if (st == LINK_MORE) {
        if (raw_is_udp(l))
            fail("udp %s: no answer within %u s (%d sends)", l->where, l->a->timeout_s, tries);
        else
            fail("tcp %s: no answer within %u s", l->where, l->a->timeout_s);
        return -1;
    }
    raw_linger(l, rq);
    return st;
}
