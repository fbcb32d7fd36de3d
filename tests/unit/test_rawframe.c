/*
 * test_rawframe.c - the raw binding's message boundaries (transport/rawframe.c):
 * the frame-or-envelope rule on the spec's first bytes, datagrams, and the
 * TCP splitter fed whole, byte by byte, with lines cut at `keep` and refused
 * past `line_max`.
 */
#include "check.h"
#include "transport/rawframe.h"

#include "base/errors.h"

#define AUTH "4deedd7bab8817ec"

/* TagoTiPs.md §11.1: the 49-byte AES-128-CCM PUSH envelope. */
static const uint8_t VECTOR[49] = {0x00, 0x00, 0x00, 0x00, 0x2a, 0x4d, 0xee, 0xdd, 0x7b, 0xab,
                                   0x88, 0x17, 0xec, 0xab, 0x77, 0x88, 0xd2, 0x2e, 0xb7, 0x37,
                                   0x2f, 0xc8, 0xc5, 0xaa, 0x56, 0xd7, 0x55, 0x58, 0x2b, 0xac,
                                   0xea, 0x13, 0xbb, 0x57, 0x24, 0x93, 0xbb, 0x8c, 0xb1, 0x08,
                                   0x03, 0xcf, 0x82, 0x6f, 0xdb, 0x83, 0x3b, 0x79, 0xc6};

static void test_rule(void)
{
    int b;

    CHECK_EQ_INT(rawframe_kind_of('P'), RAWFRAME_LINE);
    CHECK_EQ_INT(rawframe_kind_of('A'), RAWFRAME_LINE); /* 0x41, reserved for plaintext */
    CHECK_EQ_INT(rawframe_kind_of('H'), RAWFRAME_LINE);
    CHECK_EQ_INT(rawframe_kind_of('Z'), RAWFRAME_LINE);
    /* Flags bytes of version 0 envelopes, every suite and method. */
    for (b = 0; b < 256; b++)
        if (((b >> 3) & 3) == 0 && (b >> 5) <= 4 && (b & 7) <= 3 && b != 0x41)
            CHECK_EQ_INT(rawframe_kind_of((uint8_t)b), RAWFRAME_ENVELOPE);
    /* High bytes of every length prefix up to the largest envelope (16,421). */
    for (b = 0; b <= (16421 >> 8); b++)
        CHECK_EQ_INT(rawframe_kind_of((uint8_t)b), RAWFRAME_ENVELOPE);
    CHECK_EQ_INT(rawframe_kind_of('p'), RAWFRAME_ENVELOPE);
    CHECK_EQ_INT(rawframe_kind_of('\n'), RAWFRAME_ENVELOPE);
}

static void test_datagram(void)
{
    static const char frame[] = "PING|" AUTH "|sensor-01\n";
    struct rawframe_msg m;

    CHECK_EQ_INT(rawframe_datagram((const uint8_t *)frame, sizeof frame - 1, &m), RAWFRAME_LINE);
    CHECK_EQ_INT(m.len, sizeof frame - 2);
    CHECK_EQ_INT(m.full_len, m.len);
    CHECK(memcmp(m.data, frame, m.len) == 0);
    CHECK_EQ_INT(rawframe_datagram((const uint8_t *)frame, sizeof frame - 2, &m), RAWFRAME_LINE);
    CHECK_EQ_INT(m.len, sizeof frame - 2);
    CHECK_EQ_INT(rawframe_datagram(VECTOR, sizeof VECTOR, &m), RAWFRAME_ENVELOPE);
    CHECK_EQ_INT(m.len, sizeof VECTOR); /* a 0x0a inside an envelope is data */
    CHECK_EQ_INT(rawframe_datagram(VECTOR, 0, &m), RAWFRAME_NONE);
}

/* Feeds in[0..n) in pieces of step bytes; writes what came out to log as
 * "L<len>/<full>:<data>;" or "E<len>:<hex>;", errors as "!<code>". */
static void split(struct rawframe *f, const uint8_t *in, size_t n, size_t step, char *log,
                  size_t cap)
{
    size_t off = 0, used, k, at = strlen(log);
    struct rawframe_msg m;
    int rc;

    while (off < n) {
        size_t piece = n - off < step ? n - off : step;

        rc = rawframe_feed(f, in + off, piece, &used, &m);
        CHECK(used <= piece);
        off += used;
        if (rc < 0) {
            at += (size_t)snprintf(log + at, cap - at, "!%d", rc);
            return;
        }
        if (rc == 0) {
            CHECK_EQ_INT(used, piece);
            continue;
        }
        if (m.kind == RAWFRAME_LINE) {
            at += (size_t)snprintf(log + at, cap - at, "L%zu/%zu:%.*s;", m.len, m.full_len,
                                   (int)m.len, (const char *)m.data);
        } else {
            at += (size_t)snprintf(log + at, cap - at, "E%zu:", m.len);
            for (k = 0; k < m.len && k < 4; k++)
                at += (size_t)snprintf(log + at, cap - at, "%02x", m.data[k]);
            at += (size_t)snprintf(log + at, cap - at, ";");
        }
    }
}

static void test_stream(void)
{
    static uint8_t in[512];
    static const char *frames = "PUSH|" AUTH "|s1|[t:=1]\nPING|!5|" AUTH "|s1\n";
    size_t n = strlen(frames), step;
    struct rawframe f;
    char log[1024];

    memcpy(in, frames, n);
    in[n++] = 0;
    in[n++] = sizeof VECTOR;
    memcpy(in + n, VECTOR, sizeof VECTOR);
    n += sizeof VECTOR;
    memcpy(in + n, "PULL|" AUTH "|s1|[t]\n", strlen("PULL|" AUTH "|s1|[t]\n"));
    n += strlen("PULL|" AUTH "|s1|[t]\n");
    in[n++] = 0; /* an empty envelope */
    in[n++] = 0;
    for (step = 1; step <= n; step++) {
        rawframe_init(&f, 1024, 4096);
        log[0] = '\0';
        split(&f, in, n, step, log, sizeof log);
        CHECK_EQ_STR(log, "L31/31:PUSH|" AUTH "|s1|[t:=1];L27/27:PING|!5|" AUTH
                          "|s1;E49:00000000;L28/28:PULL|" AUTH "|s1|[t];E0:;");
        CHECK(rawframe_idle(&f));
        rawframe_cleanup(&f);
    }
}

static void test_cut_and_refuse(void)
{
    static uint8_t in[300];
    struct rawframe f;
    char log[512];
    size_t step;

    /* "PPP...P\nPING\n": a 100-byte line, cut at 10, then a short one. */
    memset(in, 'P', 100);
    in[100] = '\n';
    memcpy(in + 101, "PING\n", 5);
    for (step = 1; step <= 106; step += 7) {
        rawframe_init(&f, 10, 100);
        log[0] = '\0';
        split(&f, in, 106, step, log, sizeof log);
        CHECK_EQ_STR(log, "L10/100:PPPPPPPPPP;L4/4:PING;");
        rawframe_cleanup(&f);
    }
    /* One byte more than line_max: refused before its "\n" comes. */
    memset(in, 'P', 101);
    rawframe_init(&f, 10, 100);
    log[0] = '\0';
    split(&f, in, 101, 50, log, sizeof log);
    CHECK_EQ_STR(log, "!-4");
    CHECK_EQ_INT(SP_ERR_TOOLARGE, -4);
    rawframe_cleanup(&f);
}

/* An envelope cut short stays pending; the largest prefix is taken whole. */
static void test_envelope_sizes(void)
{
    static uint8_t in[2 + RAWFRAME_ENVELOPE_MAX];
    struct rawframe_msg m;
    struct rawframe f;
    size_t used;

    rawframe_init(&f, 16, 64);
    in[0] = 0xff;
    in[1] = 0xff;
    memset(in + 2, 0x0a, RAWFRAME_ENVELOPE_MAX);
    CHECK_EQ_INT(rawframe_feed(&f, in, 1000, &used, &m), 0);
    CHECK(!rawframe_idle(&f));
    CHECK_EQ_INT(rawframe_feed(&f, in + 1000, sizeof in - 1000, &used, &m), 1);
    CHECK_EQ_INT(used, sizeof in - 1000);
    CHECK_EQ_INT(m.kind, RAWFRAME_ENVELOPE);
    CHECK_EQ_INT(m.len, RAWFRAME_ENVELOPE_MAX);
    CHECK(m.data[RAWFRAME_ENVELOPE_MAX - 1] == 0x0a);
    rawframe_cleanup(&f);
}

int main(void)
{
    RUN(test_rule);
    RUN(test_datagram);
    RUN(test_stream);
    RUN(test_cut_and_refuse);
    RUN(test_envelope_sizes);
    return check_done();
}
