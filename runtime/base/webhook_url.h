/*
 * webhook_url.h - what an analysis may ask webhook(url, body, {headers,
 * method}) to send: the URL against the analysis's `webhooks` allow-list, its
 * header lines and its method. Checked in the Lua worker when the call is
 * made and again in the daemon before a request is queued, so both run the
 * same code; transport/webhook_send.c sends what passed.
 *
 * An allow-list entry is one of (as an analysis author writes it):
 *   host            that host name on any port        api.example.com
 *   host:port       only that port (a URL without a   api.example.com:8443
 *                   port has 80 for http, 443 for https)
 *   *.domain[:port] any subdomain at any depth of      *.example.com
 *                   domain, not domain itself
 *   IPv4[:port]     that address, dotted decimal      192.0.2.7:8080
 *   [IPv6][:port]   that address, in brackets         [::1]
 * Host names are compared without regard to case, and a trailing dot is
 * ignored. An empty list allows nothing.
 *
 * The URL parser is deliberately narrower than RFC 3986, so that nothing it
 * accepts means another host to libcurl (whose parser sends the request):
 * no user information (`user@`), no percent-encoded or non-ASCII host, no
 * numeric host other than a dotted-decimal IPv4 address (curl reads
 * 2130706433, 127.1 and 0x7f.1 as 127.0.0.1), no IPv6 zone, no spaces or
 * control characters anywhere.
 *
 * Pure functions: no allocation, no state, thread-safe; linked into the Lua
 * worker too. Every pointer is borrowed. err (errlen bytes, may be NULL or
 * 0) receives a one-line reason that starts with "webhook" and quotes only
 * printable ASCII.
 */
#ifndef SP_WEBHOOK_URL_H
#define SP_WEBHOOK_URL_H

#include <stddef.h>

/* The limits of a request an analysis makes (docs/design-triggers.md §4);
 * webhook_send.c refuses a request over them too. */
#ifndef WEBHOOK_URL_MAX
#define WEBHOOK_URL_MAX 2048 /* bytes of a URL */
#endif
#ifndef WEBHOOK_HEADERS_MAX
#define WEBHOOK_HEADERS_MAX 32 /* header lines of one request, the caller's */
#endif
#ifndef WEBHOOK_HEADER_NAME_MAX
#define WEBHOOK_HEADER_NAME_MAX 64
#endif
#ifndef WEBHOOK_HEADER_VALUE_MAX
#define WEBHOOK_HEADER_VALUE_MAX 4096
#endif
#ifndef WEBHOOK_BODY_MAX
#define WEBHOOK_BODY_MAX (256 * 1024) /* bytes of a request body */
#endif

/* Room for the host webhook_url_host writes: a name of 253 bytes, or an
 * IPv6 literal in brackets, and the NUL. */
#define WEBHOOK_HOST_LEN 256

/*
 * Checks url against the allow-list allow[0..n_allow) (allow may be NULL
 * when n_allow is 0). Returns 0 when url is an absolute http:// or https://
 * URL (scheme in any case) of at most WEBHOOK_URL_MAX bytes, without user
 * information, spaces, control characters or non-ASCII bytes (percent-encode
 * them), whose host is a name of [A-Za-z0-9.-], a dotted-decimal IPv4
 * address or a bracketed IPv6 address, and whose host and port match one
 * entry. Else SP_ERR_INVAL with the reason in err, e.g. "webhook: host
 * evil.example is not in this analysis's webhooks list". Entries that are
 * not valid (webhook_entry_check) match nothing.
 */
int webhook_url_check(const char *url, const char *const *allow, size_t n_allow, char *err,
                      size_t errlen) __attribute__((warn_unused_result));

/*
 * As webhook_url_check, and on success *entry (when entry is not NULL) is
 * the index in allow of the first entry that matched, so that the caller
 * can ask webhook_entry_is_literal about it (struct webhook_req's
 * allow_private).
 */
int webhook_url_match(const char *url, const char *const *allow, size_t n_allow, size_t *entry,
                      char *err, size_t errlen) __attribute__((warn_unused_result));

/*
 * The host of url as matched: a name in lower case without its trailing
 * dot, an IPv4 address, or an IPv6 address in brackets in its shortest
 * form ("[::1]" for "[0:0::1]"). Returns 0, or SP_ERR_INVAL when url is not one
 * webhook_url_check could accept (the allow-list aside), or SP_ERR_BUFSIZE
 * (cap under WEBHOOK_HOST_LEN may not hold it). For the sender's per-host
 * count and for messages.
 */
int webhook_url_host(const char *url, char *host, size_t cap) __attribute__((warn_unused_result));

/*
 * Checks one allow-list entry as an analysis author wrote it. Returns 0, or
 * SP_ERR_INVAL with the reason in err, e.g. "webhook entry 'https://x.com':
 * write a host, host:port or *.domain, without a scheme or path".
 */
int webhook_entry_check(const char *entry, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/*
 * 1 when entry is a valid IP literal (IPv4, [IPv6]) or localhost, with or
 * without a port: a request it allows may reach a loopback or private
 * address (webhook_send.h, allow_private). 0 for a name, a wildcard or an
 * entry that is not valid.
 */
int webhook_entry_is_literal(const char *entry);

/*
 * 1 if addr (family 4: 4 bytes, 6: 16 bytes, network order) is one a
 * request allowed by a name may not connect to (webhook_send.c's guard
 * against a name that resolves, or is made to resolve, inside the network):
 * in IPv4 0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12, 192.0.0/24,
 * 192.168/16, 198.18/15, 224/4 (multicast) and 240/4 (reserved, broadcast);
 * in IPv6 ::, ::1, fc00::/7, fe80::/10, fec0::/10, ff00::/8 (multicast) and
 * an IPv4 address in ::ffff:0:0/96, ::/96 or 64:ff9b::/96 that is one of
 * those. 0 otherwise.
 */
int webhook_addr_private(int family, const void *addr);

/*
 * Checks a header the analysis adds: name 1..WEBHOOK_HEADER_NAME_MAX RFC
 * 7230 token characters, not one the sender or libcurl owns (Host,
 * Content-Length, Transfer-Encoding, Connection, Expect, Upgrade, TE,
 * Sealpipe-*, in any case); value at most WEBHOOK_HEADER_VALUE_MAX bytes
 * without control characters other than tab (so no CR, LF). A value with a
 * NUL byte cannot be passed as a C string: the caller refuses one whose
 * length is not its strlen. Returns 0 or SP_ERR_INVAL with the reason.
 */
int webhook_header_check(const char *name, const char *value, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* 0 for POST, PUT, PATCH, DELETE or GET (exactly, upper case), else SP_ERR_INVAL. */
int webhook_method_check(const char *method) __attribute__((warn_unused_result));

#endif
