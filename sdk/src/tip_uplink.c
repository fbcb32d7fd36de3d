/*
 * tip_uplink.c - the parts of an uplink request a device writes besides
 * the body: the headless inner frame "SERIAL|BODY" (or "SERIAL" for PING)
 * that a TagoTiP/S envelope seals (TagoTiPs.md §4.1), and the PULL body
 * "[name;name]" (TagoTiP.md §7.1) from a list of names. Whole frames are
 * written by sp_tip_build_frame (tip_frame.c). Stateless and thread-safe.
 */
#include "sealpipe.h"

#include <string.h>

int sp_inner_build(int method, const char *serial, const char *body, size_t body_len, char *out,
                   size_t cap)
{
    struct sp_span s, b;
    size_t slen, n;

    if (out == NULL || cap == 0 || serial == NULL ||
        (method != SP_METHOD_PING && body == NULL && body_len != 0))
        return SP_ERR_INVAL;
    if (method != SP_METHOD_PUSH && method != SP_METHOD_PULL && method != SP_METHOD_PING)
        return SP_ERR_METHOD;
    slen = strlen(serial);
    if (!sp_serial_valid(serial, slen))
        return SP_ERR_PAYLOAD;
    if (method == SP_METHOD_PING)
        body_len = 0;
    else if (body_len == 0 || memchr(body, '\0', body_len) || memchr(body, '\n', body_len))
        return SP_ERR_PAYLOAD;
    n = slen + (method == SP_METHOD_PING ? 0 : 1 + body_len);
    if (n > SP_MAX_FRAME)
        return SP_ERR_TOOLARGE;
    if (n >= cap)
        return SP_ERR_BUFSIZE;
    memcpy(out, serial, slen);
    if (method != SP_METHOD_PING) {
        out[slen] = '|';
        memcpy(out + slen + 1, body, body_len);
    }
    out[n] = '\0';
    /* It must read back as the fields given. */
    if (sp_inner_split(out, n, method, &s, &b) != SP_OK || s.n != slen || b.n != body_len) {
        out[0] = '\0';
        return SP_ERR_PAYLOAD;
    }
    return (int)n;
}

int sp_tip_build_pull(const struct sp_tip_pull *pull, char *out, size_t cap)
{
    struct sp_tip_pull check;
    size_t n = 0;

    if (pull == NULL || out == NULL || cap == 0)
        return SP_ERR_INVAL;
    if (pull->nvars == 0 || pull->nvars > SP_MAX_VARS)
        return SP_ERR_PAYLOAD;
    for (size_t i = 0; i <= pull->nvars; i++) {
        const char *p = i == 0 ? "[" : pull->vars[i - 1].p;
        size_t len = i == 0 ? 1 : pull->vars[i - 1].n;
        if (i > 0 && p == NULL)
            return SP_ERR_INVAL;
        if (cap - n <= len + 1) { /* the name, its ';' or ']', then the NUL */
            out[0] = '\0';
            return SP_ERR_BUFSIZE;
        }
        memcpy(out + n, p, len);
        n += len;
        if (i > 0)
            out[n++] = i == pull->nvars ? ']' : ';';
    }
    out[n] = '\0';
    /* Names are checked by reading the list back: each must come out whole. */
    if (n > SP_MAX_FRAME || sp_tip_parse_pull(out, n, 0, &check) != SP_OK ||
        check.nvars != pull->nvars) {
        out[0] = '\0';
        return n > SP_MAX_FRAME ? SP_ERR_TOOLARGE : SP_ERR_PAYLOAD;
    }
    return (int)n;
}
