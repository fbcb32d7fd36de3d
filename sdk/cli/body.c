/*
 * body.c - the messages of push and seal: a BODY template with its {n}
 * expanded and validated as a TagoTiP PUSH body, and the headless inner frame
 * "serial|body" sealed into a TagoTiP/S envelope. The buffers (struct work)
 * are wiped when freed.
 */
#include "device.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

/* Copies tmpl into out with every "{n}" replaced by index. */
static int body_expand(const char *tmpl, uint64_t index, char *out, size_t cap, size_t *out_len)
{
    char num[24];
    size_t nlen = (size_t)snprintf(num, sizeof(num), "%" PRIu64, index);
    size_t o = 0;
    for (const char *p = tmpl; *p;) {
        if (p[0] == '{' && p[1] == 'n' && p[2] == '}') {
            if (cap - o < nlen)
                return SP_ERR_TOOLARGE;
            memcpy(out + o, num, nlen);
            o += nlen;
            p += 3;
        } else {
            if (cap - o < 1)
                return SP_ERR_TOOLARGE;
            out[o++] = *p++;
        }
    }
    *out_len = o;
    return 0;
}

int work_body(struct work *w, const char *tmpl, uint64_t index)
{
    int rc = body_expand(tmpl, index, w->body, sizeof(w->body), &w->body_len);
    if (rc < 0)
        return rc;
    return sp_tip_parse_body(w->body, w->body_len, &w->parsed);
}

int body_error(const struct args *a, uint64_t index, int rc)
{
    if (strstr(a->body, "{n}"))
        return usage_error(a, "invalid BODY for message %" PRIu64 ": %s (%s)", index,
                           sp_strerror(rc), sp_wirecode(rc));
    return usage_error(a, "invalid BODY '%s': %s (%s)", a->body, sp_strerror(rc), sp_wirecode(rc));
}

int work_seal(struct work *w, const struct args *a, const uint8_t device_hash[SP_HASH_LEN],
              uint32_t counter)
{
    size_t slen = strlen(a->serial);
    if (slen + 1 + w->body_len > SP_MAX_FRAME)
        return SP_ERR_TOOLARGE;
    memcpy(w->inner, a->serial, slen);
    w->inner[slen] = '|';
    memcpy(w->inner + slen + 1, w->body, w->body_len);
    w->inner_len = slen + 1 + w->body_len;
    return sp_env_seal(a->suite, SP_METHOD_PUSH, counter, a->auth_hash, device_hash, a->key,
                       a->key_len, (const uint8_t *)w->inner, w->inner_len, w->env, sizeof(w->env),
                       &w->env_len);
}

void work_free(struct work *w)
{
    if (!w)
        return;
    sodium_memzero(w, sizeof(*w));
    free(w);
}
