/*
 * webhook_url.c - the checks of webhook(): URL against the allow-list,
 * allow-list entries, headers, method (see webhook_url.h).
 *
 * A URL's authority and an entry are both read into a struct host by
 * parse_hostport; matching compares two of them. The parser reads a host
 * only as a whole: every byte between "//" and the first '/', '?' or '#' is
 * the host and port, so a byte it does not expect is refused rather than
 * skipped (libcurl, for one, reads "http://good.example\@evil.com/" as
 * evil.com).
 */
#include "webhook_url.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "errors.h"

#define NAME_MAX_LEN  253 /* a DNS name, without its trailing dot */
#define LABEL_MAX_LEN 63
#define ENTRY_MAX_LEN 300 /* "*." + a name + ":65535", with room */
#define QUOTE_MAX     80  /* longest entry or name echoed in a message */

enum { HOST_NAME, HOST_V4, HOST_V6 };

/* A URL's host and port, or an allow-list entry. */
struct host {
    int kind;                    /* HOST_NAME, HOST_V4, HOST_V6 */
    int wildcard;                /* entries: "*.name", name is the domain */
    int port;                    /* 0: none written */
    char name[WEBHOOK_HOST_LEN]; /* names: lower case, no trailing dot; IPs canonical */
    unsigned char addr[16];      /* HOST_V4: the first 4 bytes */
};

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err && errlen) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return SP_ERR_INVAL;
}

/* 1 if s[0..n) is printable ASCII (safe to quote in a message). */
static int printable(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            return 0;
    return 1;
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

static int is_hex(int c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* ---- host names and addresses -------------------------------------------- */

/* A dotted-decimal IPv4 address, four parts 0..255 without leading zeros. */
static int parse_v4(const char *s, size_t n, unsigned char out[4])
{
    size_t i = 0;

    for (int part = 0; part < 4; part++) {
        unsigned v = 0;
        size_t start;

        if (part > 0 && (i >= n || s[i++] != '.'))
            return -1;
        start = i;
        while (i < n && is_digit(s[i]) && i - start < 3)
            v = v * 10 + (unsigned)(s[i++] - '0');
        if (i == start || v > 255 || (s[start] == '0' && i - start > 1))
            return -1;
        out[part] = (unsigned char)v;
    }
    return i == n ? 0 : -1;
}

/*
 * 1 if the label s[0..n) is a number: decimal, or hex with 0x. A host whose
 * last label is one is an IPv4 address to curl and to inet_aton (127.1,
 * 2130706433, 0x7f.0.0.1), whatever its other labels hold, so it is
 * refused unless it is dotted decimal.
 */
static int label_numeric(const char *s, size_t n)
{
    size_t i = 0;

    if (n >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        for (i = 2; i < n && is_hex(s[i]); i++)
            ;
        return i == n;
    }
    for (; i < n && is_digit(s[i]); i++)
        ;
    return n > 0 && i == n;
}

/*
 * Checks the name s[0..n) (its trailing dot already gone): labels of
 * [A-Za-z0-9-], 1..63 bytes, the last one not a number. Returns NULL or the
 * problem.
 */
static const char *name_problem(const char *s, size_t n)
{
    size_t label = 0, last = 0;

    if (n == 0)
        return "has no host";
    if (n > NAME_MAX_LEN)
        return "has a host name longer than 253 bytes";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '%')
            return "has a percent-encoded host name: write it plainly";
        if (c >= 0x80)
            return "has an international (IDN) host name: write its xn-- form";
        if (c == '.') {
            if (label == 0)
                return "has an empty label in its host name";
            label = 0;
            last = i + 1;
            continue;
        }
        if (!is_digit(c) && !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && c != '-')
            return "has a host with a character outside A-Z, a-z, 0-9, '.' and '-'";
        if (++label > LABEL_MAX_LEN)
            return "has a host name label longer than 63 bytes";
    }
    if (label == 0)
        return "has an empty label in its host name";
    if (label_numeric(s + last, n - last))
        return "has a numeric host that is not a dotted-decimal IPv4 address";
    return NULL;
}

/* The port s[0..n): 1..65535, digits only. */
static int parse_port(const char *s, size_t n)
{
    int v = 0;

    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v >= 1 && v <= 65535 ? v : -1;
}

/* The bracketed IPv6 address s[0..n) ("[...]") into h; 0 or -1. */
static int parse_v6(const char *s, size_t n, struct host *h)
{
    char text[48];

    if (n < 3 || n - 2 >= sizeof text || s[0] != '[' || s[n - 1] != ']')
        return -1;
    memcpy(text, s + 1, n - 2);
    text[n - 2] = '\0';
    if (inet_pton(AF_INET6, text, h->addr) != 1 ||
        !inet_ntop(AF_INET6, h->addr, text, sizeof text)) /* one spelling per address */
        return -1;
    snprintf(h->name, sizeof h->name, "[%s]", text);
    h->kind = HOST_V6;
    return 0;
}

/*
 * Reads "host[:port]" (s[0..n)) into h: a bracketed IPv6 address, a
 * dotted-decimal IPv4 address or a name (lowered, its trailing dot
 * dropped). Returns NULL or the problem, worded to follow "the URL " or
 * "the entry ".
 */
static const char *parse_hostport(const char *s, size_t n, struct host *h)
{
    size_t hn = n;
    const char *colon, *why;

    memset(h, 0, sizeof *h);
    if (n > 0 && s[0] == '[') {
        const char *end = memchr(s, ']', n);
        if (!end || parse_v6(s, (size_t)(end - s) + 1, h) != 0)
            return "has an IPv6 address that is not valid (no zone, in brackets)";
        hn = (size_t)(end - s) + 1;
        if (hn < n && s[hn] != ':')
            return "has something after its IPv6 address other than :port";
    } else if ((colon = memchr(s, ':', n)) != NULL) {
        if (memchr(colon + 1, ':', n - (size_t)(colon + 1 - s)))
            return "has an IPv6 address outside brackets, or two ports";
        hn = (size_t)(colon - s);
    }
    if (hn < n && (h->port = parse_port(s + hn + 1, n - hn - 1)) < 0)
        return "has a port that is not a number from 1 to 65535";
    if (h->kind == HOST_V6)
        return NULL;
    if (parse_v4(s, hn, h->addr) == 0) {
        h->kind = HOST_V4;
        memcpy(h->name, s, hn);
        h->name[hn] = '\0';
        return NULL;
    }
    if (hn > 1 && s[hn - 1] == '.')
        hn--; /* "example.com." is example.com */
    if ((why = name_problem(s, hn)) != NULL)
        return why;
    for (size_t i = 0; i < hn; i++)
        h->name[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] - 'A' + 'a' : s[i]);
    h->name[hn] = '\0';
    h->kind = HOST_NAME;
    return NULL;
}

/* ---- URLs ---------------------------------------------------------------- */

/* The parts of a URL that matter here. */
struct url {
    struct host host;
    int port; /* the one written, else the scheme's */
};

/* Reads url into u; 0 or SP_ERR_INVAL with the reason. */
static int parse_url(const char *url, struct url *u, char *err, size_t errlen)
{
    size_t n, skip, an;
    const char *auth, *why;

    if (!url || !*url)
        return fail(err, errlen, "webhook: the URL is empty");
    n = strlen(url);
    if (n > WEBHOOK_URL_MAX)
        return fail(err, errlen, "webhook: the URL is longer than %d bytes", WEBHOOK_URL_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f)
            return fail(err, errlen, "webhook: the URL contains a space or a control character");
    if (strncasecmp(url, "http://", 7) == 0)
        skip = 7, u->port = 80;
    else if (strncasecmp(url, "https://", 8) == 0)
        skip = 8, u->port = 443;
    else
        return fail(err, errlen, "webhook: only http and https URLs (http://host/...)");
    auth = url + skip;
    an = strcspn(auth, "/?#");
    if (an == 0)
        return fail(err, errlen, "webhook: the URL has no host");
    if (memchr(auth, '@', an))
        return fail(err, errlen, "webhook: URLs with user information (user@host) are refused");
    if ((why = parse_hostport(auth, an, &u->host)) != NULL)
        return fail(err, errlen, "webhook: the URL %s", why);
    if (u->host.port)
        u->port = u->host.port;
    for (size_t i = skip + an; i < n; i++)
        if ((unsigned char)url[i] >= 0x80)
            return fail(err, errlen, "webhook: the URL has non-ASCII bytes: percent-encode them");
    return SP_OK;
}

/* 1 if entry e allows host h (ports aside). */
static int host_matches(const struct host *e, const struct host *h)
{
    size_t hn, en;

    if (e->kind != h->kind)
        return 0;
    if (e->kind == HOST_V4)
        return memcmp(e->addr, h->addr, 4) == 0;
    if (e->kind == HOST_V6)
        return memcmp(e->addr, h->addr, 16) == 0;
    if (!e->wildcard)
        return strcmp(e->name, h->name) == 0;
    hn = strlen(h->name);
    en = strlen(e->name);
    return hn > en + 1 && h->name[hn - en - 1] == '.' && strcmp(h->name + hn - en, e->name) == 0;
}

static int parse_entry(const char *entry, struct host *e, char *err, size_t errlen);

int webhook_url_match(const char *url, const char *const *allow, size_t n_allow, size_t *entry,
                      char *err, size_t errlen)
{
    struct url u;
    struct host e;
    int host_seen = 0;
    int rc = parse_url(url, &u, err, errlen);

    if (rc != SP_OK)
        return rc;
    for (size_t i = 0; i < n_allow; i++) {
        if (!allow[i] || parse_entry(allow[i], &e, NULL, 0) != SP_OK || !host_matches(&e, &u.host))
            continue;
        host_seen = 1;
        if (e.port == 0 || e.port == u.port) {
            if (entry)
                *entry = i;
            return SP_OK;
        }
    }
    if (host_seen)
        return fail(err, errlen,
                    "webhook: port %d of host %s is not in this analysis's webhooks list", u.port,
                    u.host.name);
    return fail(err, errlen, "webhook: host %s is not in this analysis's webhooks list%s",
                u.host.name, n_allow ? "" : " (the list is empty)");
}

int webhook_url_check(const char *url, const char *const *allow, size_t n_allow, char *err,
                      size_t errlen)
{
    return webhook_url_match(url, allow, n_allow, NULL, err, errlen);
}

int webhook_url_host(const char *url, char *host, size_t cap)
{
    struct url u;
    size_t n;

    if (parse_url(url, &u, NULL, 0) != SP_OK)
        return SP_ERR_INVAL;
    n = strlen(u.host.name);
    if (!host || n >= cap)
        return SP_ERR_BUFSIZE;
    memcpy(host, u.host.name, n + 1);
    return SP_OK;
}

/* ---- allow-list entries -------------------------------------------------- */

/* Reads an entry into e; 0 or SP_ERR_INVAL with the reason. */
static int parse_entry(const char *entry, struct host *e, char *err, size_t errlen)
{
    size_t n = entry ? strlen(entry) : 0;
    int wild;
    const char *why;
    /* Quoted only when it is safe and short to print. */
    const char *q = n <= QUOTE_MAX && printable(entry, n) ? entry : "...";

    if (n == 0)
        return fail(err, errlen, "webhook entry: empty");
    if (n > ENTRY_MAX_LEN)
        return fail(err, errlen, "webhook entry: longer than %d bytes", ENTRY_MAX_LEN);
    if (strchr(entry, '/') || strchr(entry, '?') || strchr(entry, '#'))
        return fail(err, errlen,
                    "webhook entry '%s': write a host, host:port or *.domain, without a scheme "
                    "or path",
                    q);
    if (strchr(entry, '@'))
        return fail(err, errlen, "webhook entry '%s': user information (user@) is not allowed", q);
    wild = strncmp(entry, "*.", 2) == 0;
    if (strchr(entry + (wild ? 2 : 0), '*'))
        return fail(err, errlen, "webhook entry '%s': '*' only as the start of *.domain", q);
    if (!wild && strchr(entry, ':') && strchr(entry, ':') != strrchr(entry, ':') && entry[0] != '[')
        return fail(err, errlen, "webhook entry '%s': write an IPv6 address in brackets: [::1]", q);
    if ((why = parse_hostport(entry + (wild ? 2 : 0), n - (wild ? 2 : 0), e)) != NULL)
        return fail(err, errlen, "webhook entry '%s' %s", q, why);
    if (wild && e->kind != HOST_NAME)
        return fail(err, errlen, "webhook entry '%s': *. must be followed by a domain name", q);
    e->wildcard = wild;
    return SP_OK;
}

int webhook_entry_check(const char *entry, char *err, size_t errlen)
{
    struct host e;

    return parse_entry(entry, &e, err, errlen);
}

int webhook_entry_is_literal(const char *entry)
{
    struct host e;

    if (parse_entry(entry, &e, NULL, 0) != SP_OK)
        return 0;
    return e.kind != HOST_NAME || (!e.wildcard && strcmp(e.name, "localhost") == 0);
}

/* ---- headers and methods ------------------------------------------------- */

/* RFC 7230 §3.2.6 tchar. */
static int is_tchar(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c) ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Headers the sender or libcurl writes, or that change how the request is
 * framed or carried: an analysis may not set them. */
static const char *const reserved_headers[] = {
    "Host", "Content-Length", "Transfer-Encoding", "Connection", "Expect", "Upgrade", "TE",
};

int webhook_header_check(const char *name, const char *value, char *err, size_t errlen)
{
    size_t n = name ? strlen(name) : 0, vn;

    if (n == 0 || n > WEBHOOK_HEADER_NAME_MAX)
        return fail(err, errlen, "webhook: a header name must be 1 to %d characters long",
                    WEBHOOK_HEADER_NAME_MAX);
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)name[i]))
            return fail(
                err, errlen,
                "webhook: a header name may hold only letters, digits and !#$%%&'*+-.^_`|~");
    for (size_t i = 0; i < sizeof reserved_headers / sizeof reserved_headers[0]; i++)
        if (strcasecmp(name, reserved_headers[i]) == 0)
            return fail(err, errlen, "webhook: header %s is set by the sender, not the analysis",
                        name);
    if (strncasecmp(name, "Sealpipe-", 9) == 0)
        return fail(err, errlen, "webhook: Sealpipe-* headers are set by the sender (%s)", name);
    if (!value)
        return fail(err, errlen, "webhook: header %s has no value", name);
    vn = strlen(value);
    if (vn > WEBHOOK_HEADER_VALUE_MAX)
        return fail(err, errlen, "webhook: header %s has a value longer than %d bytes", name,
                    WEBHOOK_HEADER_VALUE_MAX);
    for (size_t i = 0; i < vn; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return fail(err, errlen,
                        "webhook: header %s has a control character (CR, LF, ...) in its value",
                        name);
    }
    return SP_OK;
}

int webhook_method_check(const char *method)
{
    static const char *const ok[] = {"POST", "PUT", "PATCH", "DELETE", "GET"};

    for (size_t i = 0; method && i < sizeof ok / sizeof ok[0]; i++)
        if (strcmp(method, ok[i]) == 0)
            return SP_OK;
    return SP_ERR_INVAL;
}

/* 1 if the IPv4 address b is private, local, shared, multicast or reserved. */
static int v4_private(const unsigned char *b)
{
    return b[0] == 0 ||                               /* 0/8, 0.0.0.0 */
           b[0] == 10 ||                              /* 10/8 */
           b[0] == 127 ||                             /* 127/8 */
           b[0] >= 224 ||                             /* 224/4, 240/4 */
           (b[0] == 169 && b[1] == 254) ||            /* 169.254/16 */
           (b[0] == 172 && (b[1] & 0xf0) == 16) ||    /* 172.16/12 */
           (b[0] == 192 && b[1] == 168) ||            /* 192.168/16 */
           (b[0] == 192 && b[1] == 0 && b[2] == 0) || /* 192.0.0/24 */
           (b[0] == 198 && (b[1] & 0xfe) == 18) ||    /* 198.18/15 */
           (b[0] == 100 && (b[1] & 0xc0) == 64);      /* 100.64/10 */
}

int webhook_addr_private(int family, const void *addr)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char zero[12] = {0};
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b};
    const unsigned char *b = addr;

    if (family == 4)
        return v4_private(b);
    if (family != 6)
        return 1;
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, zero, 12) == 0 || memcmp(b, nat64, 12) == 0)
        return v4_private(b + 12); /* ::/96 holds :: and ::1 (0.0.0.0/8) */
    return (b[0] & 0xfe) == 0xfc || b[0] == 0xff || (b[0] == 0xfe && (b[1] & 0x80) == 0x80);
}
