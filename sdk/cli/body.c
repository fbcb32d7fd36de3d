/*
 * body.c - the messages of push and seal: a BODY template with its {n}
 * expanded and validated as a TagoTiP PUSH body, and the headless inner frame
 * "serial|body" (or "serial" for PING) sealed into a TagoTiP/S envelope. The
 * buffers (struct work) are wiped when freed.
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

int seal_request(const struct args *a, int method, uint32_t counter, const char *body,
                 size_t body_len, uint8_t *env, size_t cap, size_t *env_len)
{
    static char inner[SP_MAX_FRAME + 1];
    uint8_t device_hash[SP_HASH_LEN];
    int n = sp_inner_build(method, a->serial, body, body_len, inner, sizeof(inner));

    if (n < 0)
        return n;
    sp_device_hash(a->serial, strlen(a->serial), device_hash);
    n = sp_env_seal(a->suite, method, counter, a->auth_hash, device_hash, a->key, a->key_len,
                    (const uint8_t *)inner, (size_t)n, env, cap, env_len);
    sodium_memzero(inner, sizeof(inner));
    return n;
}

int work_seal(struct work *w, const struct args *a, const uint8_t device_hash[SP_HASH_LEN],
              uint32_t counter)
{
    int n =
        sp_inner_build(SP_METHOD_PUSH, a->serial, w->body, w->body_len, w->inner, sizeof(w->inner));
    if (n < 0)
        return n;
    w->inner_len = (size_t)n;
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
