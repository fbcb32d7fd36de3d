/*
 * tip_frame.c - TagoTiP frames (TagoTiP.md §4, §7, §9, §12; TagoTiPs.md §4.1;
 * TagoTipServers.md §3): splitting a headless inner frame and an MQTT
 * payload's "!N|" prefix, parsing a whole uplink frame, a PULL list and a
 * downlink ACK into spans over the caller's bytes, and writing ACKs and
 * frames that are checked by reading them back. Bodies are parsed by
 * tip_body.c. Stateless and thread-safe.
 */
#include "tip_scan.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Frame-level splitting                                                    */
/* ------------------------------------------------------------------------ */

/*
 * The serial's charset has no '\\', so the first '|' after it is the first
 * unescaped one: scanning the serial finds the split.
 */
int sp_serial_valid(const char *s, size_t n)
{
    if (!s || n == 0 || n > SP_MAX_SERIAL)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!is_serialchar((unsigned char)s[i]))
            return 0;
    return 1;
}

int sp_inner_split(const char *inner, size_t len, int method, struct sp_span *serial,
                   struct sp_span *body)
{
    size_t i = 0;

    if ((inner == NULL && len != 0) || serial == NULL || body == NULL)
        return SP_ERR_INVAL;
    if (method != SP_METHOD_PUSH && method != SP_METHOD_PULL && method != SP_METHOD_PING)
        return SP_ERR_PAYLOAD;
    while (i < len && is_serialchar((unsigned char)inner[i]))
        i++;
    if (i == 0 || i > SP_MAX_SERIAL)
        return SP_ERR_PAYLOAD;
    if (method == SP_METHOD_PING) {
        if (i != len && !(i + 1 == len && inner[i] == '\n'))
            return SP_ERR_PAYLOAD;
        body->p = inner + len;
        body->n = 0;
    } else {
        if (i >= len || inner[i] != '|')
            return SP_ERR_PAYLOAD;
        body->p = inner + i + 1;
        body->n = len - i - 1;
    }
    serial->p = inner;
    serial->n = i;
    return SP_OK;
}

/* "!" ("0" / %x31-39 *DIGIT) "|", the value fitting uint32. */
int sp_tip_split_counter(const char *payload, size_t len, int *has_counter, uint32_t *counter,
                         struct sp_span *body)
{
    size_t i = 1;
    uint64_t v = 0;

    if ((payload == NULL && len != 0) || has_counter == NULL || counter == NULL || body == NULL)
        return SP_ERR_INVAL;
    if (len == 0 || payload[0] != '!') {
        *has_counter = 0;
        *counter = 0;
        body->p = payload;
        body->n = len;
        return SP_OK;
    }
    if (i < len && payload[i] == '0') {
        i++;
    } else if (i < len && payload[i] >= '1' && payload[i] <= '9') {
        while (i < len && is_digit((unsigned char)payload[i])) {
            v = v * 10 + (uint64_t)(payload[i] - '0');
            if (v > UINT32_MAX)
                return SP_ERR_PAYLOAD;
            i++;
        }
    } else {
        return SP_ERR_PAYLOAD;
    }
    if (i >= len || payload[i] != '|')
        return SP_ERR_PAYLOAD;
    *has_counter = 1;
    *counter = (uint32_t)v;
    body->p = payload + i + 1;
    body->n = len - i - 1;
    return SP_OK;
}

/* ------------------------------------------------------------------------ */
/* Frames                                                                   */
/* ------------------------------------------------------------------------ */

/* The field at s (up to the next '|' or the end). */
static struct sp_span field_at(const struct scan *s)
{
    struct sp_span f = {s->p + s->i, 0};

    while (s->i + f.n < s->n && s->p[s->i + f.n] != '|')
        f.n++;
    return f;
}

static int span_is(struct sp_span sp, const char *lit)
{
    return sp.n == strlen(lit) && memcmp(sp.p, lit, sp.n) == 0;
}

/* "!" counter-value "|" at s, if s starts with '!'. */
static int scan_seq(struct scan *s, int *has, uint32_t *counter)
{
    struct sp_span body;
    int rc;

    *has = 0;
    *counter = 0;
    if (peek(s) != '!')
        return SP_OK;
    rc = sp_tip_split_counter(s->p + s->i, s->n - s->i, has, counter, &body);
    if (rc < 0)
        return SP_ERR_PAYLOAD;
    s->i = (size_t)(body.p - s->p);
    return SP_OK;
}

static int has_nul(const char *p, size_t n)
{
    return n > 0 && memchr(p, '\0', n) != NULL;
}

/* "[" name *99(";" name) "]", or name *99("," name) with csv. */
static int parse_pull(const char *p, size_t n, int csv, struct sp_tip_pull *out)
{
    struct scan s = {p, n, 0};
    struct sp_span name;
    size_t nvars = 0;
    int rc;

    if (!csv && !take(&s, '['))
        return SP_ERR_PAYLOAD;
    do {
        if (nvars >= SP_MAX_VARS)
            return SP_ERR_PAYLOAD;
        if ((rc = sp__tip_scan_ident(&s, &name)) < 0)
            return rc;
        if (out)
            out->vars[nvars] = name;
        nvars++;
    } while (take(&s, csv ? ',' : ';'));
    if ((!csv && !take(&s, ']')) || s.i != s.n)
        return SP_ERR_PAYLOAD;
    if (out)
        out->nvars = nvars;
    return SP_OK;
}

int sp_tip_parse_pull(const char *body, size_t len, int csv, struct sp_tip_pull *out)
{
    if ((body == NULL && len != 0) || out == NULL)
        return SP_ERR_INVAL;
    len = strip_lf(body, len);
    if (len > SP_MAX_FRAME)
        return SP_ERR_TOOLARGE;
    if (parse_pull(body, len, csv, NULL) < 0)
        return SP_ERR_PAYLOAD;
    return parse_pull(body, len, csv, out);
}

int sp_tip_frame_counter(const char *frame, size_t len, uint32_t *counter)
{
    struct scan s = {frame, 0, 0};
    struct sp_span f;
    uint32_t c;
    int has = 0;

    if ((frame == NULL && len != 0) || counter == NULL)
        return 0;
    s.n = strip_lf(frame, len);
    f = field_at(&s);
    if (!span_is(f, "PUSH") && !span_is(f, "PULL") && !span_is(f, "PING"))
        return 0;
    s.i += f.n;
    if (!take(&s, '|') || scan_seq(&s, &has, &c) < 0 || !has)
        return 0;
    *counter = c;
    return 1;
}

int sp_tip_parse_frame(const char *frame, size_t len, struct sp_tip_frame *out)
{
    struct scan s = {frame, 0, 0};
    struct sp_span f, serial, body = {NULL, 0};
    uint8_t auth[SP_HASH_LEN];
    uint32_t counter;
    int method, has_counter, rc;

    if ((frame == NULL && len != 0) || out == NULL)
        return SP_ERR_INVAL;
    len = strip_lf(frame, len);
    s.n = len;
    if (len > SP_MAX_FRAME)
        return SP_ERR_TOOLARGE;
    f = field_at(&s);
    if (span_is(f, "PUSH"))
        method = SP_METHOD_PUSH;
    else if (span_is(f, "PULL"))
        method = SP_METHOD_PULL;
    else if (span_is(f, "PING"))
        method = SP_METHOD_PING;
    else
        return SP_ERR_METHOD;
    s.i += f.n;
    if (!take(&s, '|') || has_nul(frame, len))
        return SP_ERR_PAYLOAD;
    if ((rc = scan_seq(&s, &has_counter, &counter)) < 0)
        return rc;

    /* AUTH: 16HEXDIG (RFC 5234 HEXDIG: either case). */
    f = field_at(&s);
    if (f.n != 2 * SP_HASH_LEN || sp_hex_decode(f.p, f.n, auth, sizeof auth) != SP_HASH_LEN)
        return SP_ERR_TOKEN;
    s.i += f.n;
    if (!take(&s, '|'))
        return SP_ERR_PAYLOAD;

    serial.p = frame + s.i;
    while (is_serialchar(peek(&s)))
        s.i++;
    serial.n = (size_t)(frame + s.i - serial.p);
    if (serial.n == 0 || serial.n > SP_MAX_SERIAL)
        return SP_ERR_PAYLOAD;
    if (method == SP_METHOD_PING) {
        if (s.i != s.n)
            return SP_ERR_PAYLOAD;
        body.p = frame + s.i;
    } else {
        if (!take(&s, '|'))
            return SP_ERR_PAYLOAD;
        body.p = frame + s.i;
        body.n = s.n - s.i;
        rc = method == SP_METHOD_PUSH ? sp__tip_parse_body(body.p, body.n, NULL)
                                      : parse_pull(body.p, body.n, 0, NULL);
        if (rc < 0)
            return rc;
    }
    out->method = method;
    out->has_counter = has_counter;
    out->counter = counter;
    memcpy(out->auth_hash, auth, sizeof auth);
    out->serial = serial;
    out->body = body;
    return SP_OK;
}

/* DETAILCHAR = %x21-7B / %x7D-7E: printable ASCII without space and '|'. */
static int is_detail(struct sp_span d)
{
    size_t i;

    if (d.n == 0)
        return 0;
    for (i = 0; i < d.n; i++) {
        unsigned char c = (unsigned char)d.p[i];
        if (c < 0x21 || c > 0x7e || c == '|')
            return 0;
    }
    return 1;
}

static int is_count(struct sp_span d)
{
    size_t i;

    for (i = 0; i < d.n; i++)
        if (!is_digit((unsigned char)d.p[i]))
            return 0;
    return d.n > 0;
}

/* pull-response = "[" var-list "]": a structured body without modifiers. */
static int is_pull_response(struct sp_span d)
{
    return d.n > 0 && d.p[0] == '[' && sp__tip_parse_structured(d.p, d.n, NULL) == SP_OK;
}

static int parse_ack(const char *frame, size_t len, int form, struct sp_tip_ack *out)
{
    struct scan s = {frame, len, 0};
    struct sp_span st, d = {NULL, 0};
    int status, rc, has_counter = 0;
    uint32_t counter = 0;

    if (form == SP_ACK_FRAME) {
        st = field_at(&s);
        if (!span_is(st, "ACK"))
            return SP_ERR_PAYLOAD;
        s.i += st.n;
        if (!take(&s, '|'))
            return SP_ERR_PAYLOAD;
    }
    if (form != SP_ACK_INNER && (rc = scan_seq(&s, &has_counter, &counter)) < 0)
        return rc;
    st = field_at(&s);
    if (span_is(st, "OK"))
        status = SP_ACK_OK;
    else if (span_is(st, "PONG"))
        status = SP_ACK_PONG;
    else if (span_is(st, "CMD"))
        status = SP_ACK_CMD;
    else if (span_is(st, "ERR"))
        status = SP_ACK_ERR;
    else
        return SP_ERR_PAYLOAD;
    s.i += st.n;
    if (take(&s, '|')) {
        /*
         * The detail is the rest: a PULL response may hold escaped '|'. The
         * ABNF's ack-detail alternatives are each for a status (§14); PONG
         * has none (§9.1).
         */
        d.p = frame + s.i;
        d.n = len - s.i;
        if (status == SP_ACK_PONG ||
            (status == SP_ACK_OK ? !is_count(d) && !is_pull_response(d) : !is_detail(d)))
            return SP_ERR_PAYLOAD;
    }
    if (out) {
        out->has_counter = has_counter;
        out->counter = counter;
        out->status = status;
        out->detail = d;
    }
    return SP_OK;
}

int sp_tip_parse_ack(const char *frame, size_t len, int form, struct sp_tip_ack *out)
{
    if ((frame == NULL && len != 0) || out == NULL ||
        (form != SP_ACK_FRAME && form != SP_ACK_MQTT && form != SP_ACK_INNER))
        return SP_ERR_INVAL;
    len = strip_lf(frame, len);
    if (len > SP_MAX_FRAME)
        return SP_ERR_TOOLARGE;
    if (has_nul(frame, len))
        return SP_ERR_PAYLOAD;
    return parse_ack(frame, len, form, out);
}

int sp_tip_build_ack(int form, int has_counter, uint32_t counter, int status, const char *detail,
                     size_t detail_len, char *out, size_t cap)
{
    static const char *const names[] = {"OK", "PONG", "CMD", "ERR"};
    struct sp_tip_ack check;
    char seq[16] = "";
    int n;

    if (out == NULL || cap == 0 || status < SP_ACK_OK || status > SP_ACK_ERR ||
        (detail == NULL && detail_len != 0) ||
        (form != SP_ACK_FRAME && form != SP_ACK_MQTT && form != SP_ACK_INNER))
        return SP_ERR_INVAL;
    if (has_counter && form != SP_ACK_INNER)
        snprintf(seq, sizeof seq, "!%" PRIu32 "|", counter);
    n = snprintf(out, cap, "%s%s%s%s%.*s", form == SP_ACK_FRAME ? "ACK|" : "", seq, names[status],
                 detail_len ? "|" : "", (int)(detail_len > INT32_MAX ? 0 : detail_len),
                 detail_len ? detail : "");
    if (n < 0 || (size_t)n >= cap || detail_len > INT32_MAX) {
        out[0] = '\0';
        return SP_ERR_BUFSIZE;
    }
    /* A NUL in the detail would have cut it short: it must read back whole. */
    if (parse_ack(out, (size_t)n, form, &check) < 0 || check.detail.n != detail_len ||
        (size_t)n > SP_MAX_FRAME) {
        out[0] = '\0';
        return (size_t)n > SP_MAX_FRAME ? SP_ERR_TOOLARGE : SP_ERR_PAYLOAD;
    }
    return n;
}

int sp_tip_build_frame(int method, int has_counter, uint32_t counter,
                       const uint8_t auth_hash[SP_HASH_LEN], const char *serial, const char *body,
                       size_t body_len, char *out, size_t cap)
{
    static const char *const names[] = {"PUSH", "PULL", "PING"};
    struct sp_tip_frame check;
    char seq[16] = "", auth[2 * SP_HASH_LEN + 1];
    int n, rc;

    if (out == NULL || cap == 0 || auth_hash == NULL || serial == NULL || method < SP_METHOD_PUSH ||
        method > SP_METHOD_PING || (method != SP_METHOD_PING && body == NULL) ||
        body_len > INT32_MAX)
        return SP_ERR_INVAL;
    if (has_counter)
        snprintf(seq, sizeof seq, "!%" PRIu32 "|", counter);
    if (sp_hex_encode(auth_hash, SP_HASH_LEN, auth, sizeof auth) < 0)
        return SP_ERR_INVAL;
    if (method == SP_METHOD_PING)
        n = snprintf(out, cap, "PING|%s%s|%s", seq, auth, serial);
    else
        n = snprintf(out, cap, "%s|%s%s|%s|%.*s", names[method], seq, auth, serial, (int)body_len,
                     body);
    if (n < 0 || (size_t)n >= cap) {
        out[0] = '\0';
        return SP_ERR_BUFSIZE;
    }
    /*
     * It must also read back as the fields given: a '|' in the serial would
     * move the field boundary ("s|[a=x\\" + "y]" parses as serial "s"), a NUL
     * would cut a field short, and a trailing LF would be taken for the
     * terminator.
     */
    if ((rc = sp_tip_parse_frame(out, (size_t)n, &check)) == 0 &&
        (check.serial.n != strlen(serial) ||
         (method != SP_METHOD_PING && check.body.n != body_len)))
        rc = SP_ERR_PAYLOAD;
    if (rc < 0) {
        out[0] = '\0';
        return rc;
    }
    return n;
}
