/* test_webhook_url.c - webhook(): URLs against allow-lists, allow-list
 * entries, header names and values, methods (base/webhook_url.c). Each
 * refusal is checked with a piece of its reason. */
#include "check.h"

#include <arpa/inet.h>
#include "base/errors.h"
#include "base/webhook_url.h"
#include "sealpipe.h"

#include <string.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

static char err[256];

/* 1 if url passes the list. */
static int allowed(const char *url, const char *const *list, size_t n)
{
    err[0] = '\0';
    return webhook_url_check(url, list, n, err, sizeof err) == SP_OK;
}

/* 1 if url is refused by the list with a reason holding why. */
static int refused(const char *url, const char *const *list, size_t n, const char *why)
{
    err[0] = '\0';
    if (webhook_url_check(url, list, n, err, sizeof err) != SP_ERR_INVAL)
        return 0;
    if (strstr(err, why) && strncmp(err, "webhook", 7) == 0 && !strchr(err, '\n'))
        return 1;
    fprintf(stderr, "  %s: reason \"%s\" lacks \"%s\"\n", url, err, why);
    return 0;
}

static int entry_refused(const char *entry, const char *why)
{
    err[0] = '\0';
    if (webhook_entry_check(entry, err, sizeof err) != SP_ERR_INVAL)
        return 0;
    if (strstr(err, why) && strncmp(err, "webhook entry", 13) == 0)
        return 1;
    fprintf(stderr, "  %s: reason \"%s\" lacks \"%s\"\n", entry ? entry : "(null)", err, why);
    return 0;
}

static int header_refused(const char *name, const char *value, const char *why)
{
    err[0] = '\0';
    if (webhook_header_check(name, value, err, sizeof err) != SP_ERR_INVAL)
        return 0;
    if (strstr(err, why))
        return 1;
    fprintf(stderr, "  header %s: reason \"%s\" lacks \"%s\"\n", name ? name : "(null)", err, why);
    return 0;
}

static void test_hosts(void)
{
    const char *list[] = {"api.example.com", "Hooks.Example.ORG."};

    CHECK(allowed("https://api.example.com/hook", list, N(list)));
    CHECK(allowed("http://api.example.com", list, N(list)));
    CHECK(allowed("HTTPS://API.Example.Com/x?y=1#frag", list, N(list)));
    CHECK(allowed("https://api.example.com./x", list, N(list)));    /* trailing dot */
    CHECK(allowed("https://api.example.com:8443/", list, N(list))); /* any port */
    CHECK(allowed("https://hooks.example.org/a", list, N(list)));
    CHECK(allowed("hTTp://hooks.example.org?q", list, N(list)));
    CHECK(allowed("https://api.example.com/%E2%82%AC?a=%20", list, N(list)));
    CHECK(refused("https://evil.example/", list, N(list),
                  "host evil.example is not in this analysis's webhooks list"));
    CHECK(refused("https://EVIL.example./", list, N(list), "host evil.example is not"));
    CHECK(refused("https://xapi.example.com/", list, N(list), "not in this analysis's"));
    CHECK(refused("https://a.api.example.com/", list, N(list), "not in this analysis's"));
    CHECK(refused("https://api.example.com.evil.example/", list, N(list), "not in this"));
    CHECK(refused("https://api.example.com/", NULL, 0, "(the list is empty)"));
    /* An entry that is not valid matches nothing. */
    const char *bad[] = {"https://api.example.com", NULL, ""};
    CHECK(refused("https://api.example.com/", bad, N(bad), "not in this analysis's"));
}

static void test_ports(void)
{
    const char *list[] = {"a.example.com:8443", "b.example.com:443", "c.example.com:80",
                          "d.example.com"};

    CHECK(allowed("https://a.example.com:8443/", list, N(list)));
    CHECK(allowed("https://a.example.com:08443/", list, N(list)));
    CHECK(refused("https://a.example.com/", list, N(list),
                  "port 443 of host a.example.com is not in"));
    CHECK(refused("https://a.example.com:8444/", list, N(list), "port 8444 of host"));
    CHECK(allowed("https://b.example.com/", list, N(list))); /* the default port counts */
    CHECK(allowed("http://b.example.com:443/", list, N(list)));
    CHECK(refused("http://b.example.com/", list, N(list), "port 80 of host b.example.com"));
    CHECK(allowed("http://c.example.com/", list, N(list)));
    CHECK(refused("https://c.example.com/", list, N(list), "port 443"));
    CHECK(allowed("http://d.example.com:1/", list, N(list)));
    CHECK(allowed("http://d.example.com:65535/", list, N(list)));
    CHECK(refused("http://d.example.com:65536/", list, N(list), "port that is not a number"));
    CHECK(refused("http://d.example.com:0/", list, N(list), "port that is not a number"));
    CHECK(refused("http://d.example.com:/", list, N(list), "port that is not a number"));
    CHECK(refused("http://d.example.com:8x/", list, N(list), "port that is not a number"));
    CHECK(refused("http://d.example.com:80:80/", list, N(list), "two ports"));
    /* A second entry for the same host with another port still counts. */
    const char *two[] = {"e.example.com:1", "e.example.com:2"};
    CHECK(allowed("http://e.example.com:2/", two, N(two)));
}

static void test_wildcards(void)
{
    const char *list[] = {"*.example.com", "*.Hooks.Example.net:9000"};

    CHECK(allowed("https://a.example.com/", list, N(list)));
    CHECK(allowed("https://a.b.c.example.com/", list, N(list)));
    CHECK(allowed("https://A.EXAMPLE.COM./", list, N(list)));
    CHECK(refused("https://example.com/", list, N(list), "host example.com is not"));
    CHECK(refused("https://aexample.com/", list, N(list), "not in this"));
    CHECK(refused("https://example.com.evil.net/", list, N(list), "not in this"));
    CHECK(allowed("http://x.hooks.example.net:9000/", list, N(list)));
    CHECK(refused("http://x.hooks.example.net/", list, N(list), "port 80 of host"));
    CHECK(refused("http://hooks.example.net:9000/", list, N(list), "not in this"));
}

static void test_literals(void)
{
    const char *list[] = {"192.0.2.7", "10.1.2.3:8080", "[::1]", "[2001:DB8::1]:8443", "localhost"};

    CHECK(allowed("http://192.0.2.7/", list, N(list)));
    CHECK(allowed("http://192.0.2.7:1234/", list, N(list)));
    CHECK(allowed("http://10.1.2.3:8080/x", list, N(list)));
    CHECK(refused("http://10.1.2.3/x", list, N(list), "port 80 of host 10.1.2.3"));
    CHECK(refused("http://192.0.2.8/", list, N(list), "host 192.0.2.8 is not"));
    CHECK(allowed("http://[::1]/", list, N(list)));
    CHECK(allowed("http://[0:0::1]:9/", list, N(list))); /* compared as addresses */
    CHECK(allowed("https://[2001:db8:0::1]:8443/", list, N(list)));
    CHECK(refused("https://[2001:db8::1]/", list, N(list), "port 443 of host [2001:db8::1]"));
    CHECK(refused("http://[::2]/", list, N(list), "host [::2] is not"));
    CHECK(allowed("http://localhost:3000/", list, N(list)));
    CHECK(allowed("http://LocalHost./", list, N(list)));
    /* The same machine in another form is another host. */
    CHECK(refused("http://[::ffff:192.0.2.7]/", list, N(list), "is not in"));
    CHECK(refused("http://127.0.0.1/", list, N(list), "host 127.0.0.1 is not"));
    /* Numbers curl would read as addresses. */
    CHECK(refused("http://3221225991/", list, N(list), "numeric host"));
    CHECK(refused("http://192.0.2.07/", list, N(list), "numeric host"));
    CHECK(refused("http://192.0.519/", list, N(list), "numeric host"));
    CHECK(refused("http://0xc0.0.2.7/", list, N(list), "numeric host"));
    CHECK(refused("http://0xC0000207/", list, N(list), "numeric host"));
    CHECK(refused("http://a.b.1/", list, N(list), "numeric host"));
    CHECK(refused("http://192.0.2.7./", list, N(list), "numeric host"));
    CHECK(refused("http://192.0.2.256/", list, N(list), "numeric host"));
    /* IPv6 forms that are not allowed. */
    CHECK(refused("http://[fe80::1%25eth0]/", list, N(list), "IPv6 address that is not valid"));
    CHECK(refused("http://[::1/", list, N(list), "IPv6 address that is not valid"));
    CHECK(refused("http://[::1]x/", list, N(list), "after its IPv6 address"));
    CHECK(refused("http://[]/", list, N(list), "IPv6 address that is not valid"));
    CHECK(refused("http://[nope]/", list, N(list), "IPv6 address that is not valid"));
    CHECK(refused("http://::1/", list, N(list), "outside brackets"));
}

static void test_url_forms(void)
{
    const char *list[] = {"good.example"};
    char big[WEBHOOK_URL_MAX + 2];

    CHECK(refused("ftp://good.example/", list, 1, "only http and https URLs"));
    CHECK(refused("file:///etc/passwd", list, 1, "only http and https URLs"));
    CHECK(refused("//good.example/", list, 1, "only http and https URLs"));
    CHECK(refused("good.example/x", list, 1, "only http and https URLs"));
    CHECK(refused("http:/good.example/", list, 1, "only http and https URLs"));
    CHECK(refused("http:good.example/", list, 1, "only http and https URLs"));
    CHECK(refused("httpx://good.example/", list, 1, "only http and https URLs"));
    CHECK(refused("", list, 1, "the URL is empty"));
    CHECK(refused(NULL, list, 1, "the URL is empty"));
    CHECK(refused("http:///good.example/", list, 1, "has no host"));
    CHECK(refused("http://", list, 1, "has no host"));
    CHECK(refused("http://?x", list, 1, "has no host"));
    CHECK(refused("http://user@good.example/", list, 1, "user information"));
    CHECK(refused("http://user:pw@good.example/", list, 1, "user information"));
    CHECK(refused("http://evil.example@good.example/", list, 1, "user information"));
    CHECK(refused("http://good.example\\@evil.example/", list, 1, "user information"));
    CHECK(refused("http://@good.example/", list, 1, "user information"));
    /* '@' past the authority is only a path or query byte. */
    CHECK(allowed("http://good.example/a@b?c@d#e@f", list, 1));
    CHECK(allowed("http://good.example?x@evil.example/", list, 1));
    CHECK(allowed("http://good.example#@evil.example/", list, 1));
    CHECK(refused("http://evil.example#@good.example/", list, 1, "host evil.example is not"));
    CHECK(refused("http://evil.example\\.good.example/", list, 1, "character outside"));
    CHECK(refused("http://good.example /", list, 1, "space or a control character"));
    CHECK(refused("http://good.example/a b", list, 1, "space or a control character"));
    CHECK(refused("http://good.example/\t", list, 1, "space or a control character"));
    CHECK(refused("http://good.example/#\x01", list, 1, "space or a control character"));
    CHECK(refused("http://good.example/\x7f", list, 1, "space or a control character"));
    CHECK(refused("http://good.example/\r\nX: y", list, 1, "space or a control character"));
    CHECK(refused("http://good.example/caf\xc3\xa9", list, 1, "non-ASCII bytes"));
    CHECK(refused("http://b\xc3\xbc"
                  "cher.example/",
                  list, 1, "IDN"));
    CHECK(refused("http://good%2eexample/", list, 1, "percent-encoded"));
    CHECK(refused("http://good.example%00/", list, 1, "percent-encoded"));
    CHECK(refused("http://good_example/", list, 1, "character outside"));
    CHECK(refused("http://good.example;x/", list, 1, "character outside"));
    CHECK(refused("http://*.example/", list, 1, "character outside"));
    CHECK(refused("http://good..example/", list, 1, "empty label"));
    CHECK(refused("http://.good.example/", list, 1, "empty label"));
    CHECK(refused("http://good.example../", list, 1, "empty label"));
    CHECK(refused("http://./", list, 1, "empty label"));
    /* Lengths: the URL, the name, a label. */
    memcpy(big, "http://good.example/", 20);
    memset(big + 20, 'a', WEBHOOK_URL_MAX - 20);
    big[WEBHOOK_URL_MAX] = '\0';
    CHECK(allowed(big, list, 1));
    big[WEBHOOK_URL_MAX] = 'a';
    big[WEBHOOK_URL_MAX + 1] = '\0';
    CHECK(refused(big, list, 1, "longer than 2048 bytes"));
    char label[80] = "http://";
    memset(label + 7, 'x', 64);
    strcpy(label + 71, ".com/");
    CHECK(refused(label, list, 1, "label longer than 63"));
    char name[300] = "http://";
    for (int i = 0; i < 4; i++)
        memcpy(name + 7 + i * 64,
               "0123456789012345678901234567890123456789012345678901234567890ab.", 64);
    strcpy(name + 7 + 256, "com/");
    CHECK(refused(name, list, 1, "longer than 253"));
}

static void test_match_index(void)
{
    const char *list[] = {"a.example", "[::1]:8080", "localhost", "*.example"};
    size_t at = 99;

    CHECK_EQ_INT(webhook_url_match("http://localhost/", list, N(list), &at, NULL, 0), SP_OK);
    CHECK_EQ_INT(at, 2);
    CHECK_EQ_INT(webhook_url_match("http://[::1]:8080/", list, N(list), &at, NULL, 0), SP_OK);
    CHECK_EQ_INT(at, 1);
    CHECK_EQ_INT(webhook_url_match("http://b.example/", list, N(list), &at, NULL, 0), SP_OK);
    CHECK_EQ_INT(at, 3);
    at = 99;
    CHECK_EQ_INT(webhook_url_match("http://example/", list, N(list), &at, err, 8), SP_ERR_INVAL);
    CHECK_EQ_INT(at, 99);         /* written only on success */
    CHECK_EQ_INT(strlen(err), 7); /* cut to errlen */

    char host[WEBHOOK_HOST_LEN];
    CHECK_EQ_INT(webhook_url_host("HTTPS://Api.Example.COM.:8443/x", host, sizeof host), SP_OK);
    CHECK_EQ_STR(host, "api.example.com");
    CHECK_EQ_INT(webhook_url_host("http://[::1]:80/", host, sizeof host), SP_OK);
    CHECK_EQ_STR(host, "[::1]");
    CHECK_EQ_INT(webhook_url_host("http://[0:0:0::1]:80/", host, sizeof host), SP_OK);
    CHECK_EQ_STR(host, "[::1]");
    CHECK_EQ_INT(webhook_url_host("http://[2001:DB8:0::A]/", host, sizeof host), SP_OK);
    CHECK_EQ_STR(host, "[2001:db8::a]");
    CHECK_EQ_INT(webhook_url_host("http://127.0.0.1/", host, sizeof host), SP_OK);
    CHECK_EQ_STR(host, "127.0.0.1");
    CHECK_EQ_INT(webhook_url_host("http://127.0.0.1/", host, 9), SP_ERR_BUFSIZE);
    CHECK_EQ_INT(webhook_url_host("http://u@x/", host, sizeof host), SP_ERR_INVAL);
}

static void test_entries(void)
{
    const char *good[] = {"api.example.com",
                          "API.Example.com.",
                          "api.example.com:8443",
                          "*.example.com",
                          "*.example.com:443",
                          "localhost",
                          "localhost:8080",
                          "192.0.2.7",
                          "10.0.0.1:65535",
                          "[::1]",
                          "[2001:db8::1]:8443",
                          "[::ffff:10.0.0.1]",
                          "x",
                          "a-b.c-d.example"};
    for (size_t i = 0; i < N(good); i++) {
        err[0] = '\0';
        CHECK_EQ_INT(webhook_entry_check(good[i], err, sizeof err), SP_OK);
        if (err[0])
            fprintf(stderr, "  %s: %s\n", good[i], err);
    }
    CHECK(entry_refused("", "empty"));
    CHECK(entry_refused(NULL, "empty"));
    CHECK(entry_refused("https://api.example.com", "without a scheme or path"));
    CHECK(entry_refused("api.example.com/hooks", "without a scheme or path"));
    CHECK(entry_refused("api.example.com?x", "without a scheme or path"));
    CHECK(entry_refused("user@api.example.com", "user information"));
    CHECK(entry_refused("*", "'*' only as the start"));
    CHECK(entry_refused("*example.com", "'*' only as the start"));
    CHECK(entry_refused("a.*.example.com", "'*' only as the start"));
    CHECK(entry_refused("*.*.example.com", "'*' only as the start"));
    CHECK(entry_refused("*.", "has no host"));
    CHECK(entry_refused("*.192.0.2.7", "*. must be followed by a domain name"));
    CHECK(entry_refused("*.[::1]", "*. must be followed by a domain name"));
    CHECK(entry_refused("::1", "IPv6 address in brackets"));
    CHECK(entry_refused("2001:db8::1", "IPv6 address in brackets"));
    CHECK(entry_refused("[::1", "IPv6 address that is not valid"));
    CHECK(entry_refused("[fe80::1%eth0]", "IPv6 address that is not valid"));
    CHECK(entry_refused("api.example.com:0", "port that is not a number"));
    CHECK(entry_refused("api.example.com:99999", "port that is not a number"));
    CHECK(entry_refused("api.example.com:", "port that is not a number"));
    CHECK(entry_refused("127.1", "numeric host"));
    CHECK(entry_refused("2130706433", "numeric host"));
    CHECK(entry_refused("0x7f.0.0.1", "numeric host"));
    CHECK(entry_refused("b\xc3\xbc"
                        "cher.example",
                        "IDN"));
    CHECK(entry_refused("a%2eb", "percent-encoded"));
    CHECK(entry_refused("a b.example", "character outside"));
    CHECK(entry_refused("a..example", "empty label"));
    /* The entry is quoted when it is printable, and not otherwise. */
    CHECK(entry_refused("ftp://x", "'ftp://x'"));
    CHECK(entry_refused("a\nb", "webhook entry '...'"));

    CHECK_EQ_INT(webhook_entry_is_literal("192.0.2.7"), 1);
    CHECK_EQ_INT(webhook_entry_is_literal("10.0.0.1:8080"), 1);
    CHECK_EQ_INT(webhook_entry_is_literal("[::1]"), 1);
    CHECK_EQ_INT(webhook_entry_is_literal("[fd00::5]:99"), 1);
    CHECK_EQ_INT(webhook_entry_is_literal("localhost"), 1);
    CHECK_EQ_INT(webhook_entry_is_literal("LOCALHOST.:8080"), 1);
    CHECK_EQ_INT(webhook_entry_is_literal("api.example.com"), 0);
    CHECK_EQ_INT(webhook_entry_is_literal("*.localhost"), 0);
    CHECK_EQ_INT(webhook_entry_is_literal("localhost.example.com"), 0);
    CHECK_EQ_INT(webhook_entry_is_literal("127.1"), 0);
    CHECK_EQ_INT(webhook_entry_is_literal(""), 0);
    CHECK_EQ_INT(webhook_entry_is_literal(NULL), 0);
}

static void test_headers(void)
{
    char value[WEBHOOK_HEADER_VALUE_MAX + 2];
    char name[WEBHOOK_HEADER_NAME_MAX + 2];

    CHECK_EQ_INT(webhook_header_check("Authorization", "Bearer abc.def", err, sizeof err), SP_OK);
    CHECK_EQ_INT(webhook_header_check("Content-Type", "text/plain; charset=utf-8", err, sizeof err),
                 SP_OK);
    CHECK_EQ_INT(webhook_header_check("X-Weird!#$%&'*+-.^_`|~09", "", err, sizeof err), SP_OK);
    CHECK_EQ_INT(webhook_header_check("X-Tab", "a\tb", err, sizeof err), SP_OK);
    CHECK_EQ_INT(webhook_header_check("X-Utf8", "caf\xc3\xa9", err, sizeof err), SP_OK);
    CHECK_EQ_INT(webhook_header_check("User-Agent", "mine/1", err, sizeof err), SP_OK);
    memset(name, 'n', WEBHOOK_HEADER_NAME_MAX);
    name[WEBHOOK_HEADER_NAME_MAX] = '\0';
    CHECK_EQ_INT(webhook_header_check(name, "v", err, sizeof err), SP_OK);
    name[WEBHOOK_HEADER_NAME_MAX] = 'n';
    name[WEBHOOK_HEADER_NAME_MAX + 1] = '\0';
    CHECK(header_refused(name, "v", "1 to 64 characters"));
    CHECK(header_refused("", "v", "1 to 64 characters"));
    CHECK(header_refused(NULL, "v", "1 to 64 characters"));
    memset(value, 'v', WEBHOOK_HEADER_VALUE_MAX);
    value[WEBHOOK_HEADER_VALUE_MAX] = '\0';
    CHECK_EQ_INT(webhook_header_check("X-Big", value, err, sizeof err), SP_OK);
    value[WEBHOOK_HEADER_VALUE_MAX] = 'v';
    value[WEBHOOK_HEADER_VALUE_MAX + 1] = '\0';
    CHECK(header_refused("X-Big", value, "longer than 4096 bytes"));
    const char *bad_names[] = {"X Y", "X:Y", "X(Y)", "X\"", "X/Y", "X\r", "Ü", "X@Y", "{X}"};
    for (size_t i = 0; i < N(bad_names); i++)
        CHECK(header_refused(bad_names[i], "v", "may hold only"));
    const char *owned[] = {"Host",       "host",   "Content-Length",    "CONTENT-LENGTH",
                           "Connection", "Expect", "Transfer-Encoding", "transfer-encoding",
                           "Upgrade",    "TE"};
    for (size_t i = 0; i < N(owned); i++)
        CHECK(header_refused(owned[i], "v", "is set by the sender"));
    CHECK(header_refused("Sealpipe-Delivery", "1", "Sealpipe-* headers"));
    CHECK(header_refused("sealpipe-attempt", "1", "Sealpipe-* headers"));
    CHECK(header_refused("X", "a\r\nHost: evil", "control character"));
    CHECK(header_refused("X", "a\nb", "control character"));
    CHECK(header_refused("X", "a\rb", "control character"));
    CHECK(header_refused("X", "a\x01", "control character"));
    CHECK(header_refused("X", "a\x7f", "control character"));
    CHECK(header_refused("X", NULL, "no value"));
}

static void test_methods(void)
{
    const char *ok[] = {"POST", "PUT", "PATCH", "DELETE", "GET"};
    const char *bad[] = {"post", "Get", "HEAD", "OPTIONS", "TRACE", "CONNECT", "", "POST ", "GETX"};

    for (size_t i = 0; i < N(ok); i++)
        CHECK_EQ_INT(webhook_method_check(ok[i]), SP_OK);
    for (size_t i = 0; i < N(bad); i++)
        CHECK_EQ_INT(webhook_method_check(bad[i]), SP_ERR_INVAL);
    CHECK_EQ_INT(webhook_method_check(NULL), SP_ERR_INVAL);
}

/* 1 if the address text a (IPv4 or IPv6) is one a name may not reach. */
static int priv(const char *a)
{
    unsigned char b[16];
    int v6 = strchr(a, ':') != NULL;
    if (inet_pton(v6 ? AF_INET6 : AF_INET, a, b) != 1)
        return -1;
    return webhook_addr_private(v6 ? 6 : 4, b);
}

/* The addresses the DNS-rebinding guard refuses, and those it lets through. */
static void test_private_addresses(void)
{
    static const char *const inside[] = {"0.0.0.0",
                                         "10.1.2.3",
                                         "100.64.0.1",
                                         "100.127.255.255",
                                         "127.0.0.1",
                                         "127.9.9.9",
                                         "169.254.1.1",
                                         "172.16.0.1",
                                         "172.31.255.255",
                                         "192.0.0.8",
                                         "192.168.1.1",
                                         "198.18.0.1",
                                         "198.19.255.1",
                                         "224.0.0.1",
                                         "239.255.255.250",
                                         "240.0.0.1",
                                         "255.255.255.255",
                                         "::",
                                         "::1",
                                         "fc00::1",
                                         "fd12:3456::1",
                                         "fe80::1",
                                         "fec0::1",
                                         "ff02::1",
                                         "::ffff:10.0.0.1",
                                         "::ffff:127.0.0.1",
                                         "::10.0.0.1",
                                         "64:ff9b::a00:1"};
    static const char *const outside[] = {
        "1.1.1.1",     "8.8.8.8",         "100.63.255.255", "100.128.0.1",     "172.15.0.1",
        "172.32.0.1",  "192.0.2.1",       "198.17.0.1",     "198.20.0.1",      "223.255.255.255",
        "2001:db8::1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"};

    for (size_t i = 0; i < sizeof inside / sizeof inside[0]; i++) {
        CHECK_EQ_INT(priv(inside[i]), 1);
        if (priv(inside[i]) != 1)
            fprintf(stderr, "  %s should be refused\n", inside[i]);
    }
    for (size_t i = 0; i < sizeof outside / sizeof outside[0]; i++) {
        CHECK_EQ_INT(priv(outside[i]), 0);
        if (priv(outside[i]) != 0)
            fprintf(stderr, "  %s should be allowed\n", outside[i]);
    }
    CHECK_EQ_INT(webhook_addr_private(5, "\0\0\0\0"), 1); /* an unknown family: refused */
}

int main(void)
{
    RUN(test_private_addresses);
    RUN(test_hosts);
    RUN(test_ports);
    RUN(test_wildcards);
    RUN(test_literals);
    RUN(test_url_forms);
    RUN(test_match_index);
    RUN(test_entries);
    RUN(test_headers);
    RUN(test_methods);
    return check_done();
}
