/*
 * api_inspector.c - GET /api/v1/inspector (api.c has the table): checks what
 * the request asks to watch and says so in the reply's watch; the stream
 * itself is transport/httpd_sse.c's.
 *
 *   device=SERIAL   one device's events (it must exist); none: every device's
 *   since=DURATION  the kept events that recent first (e.g. 10m), as
 *                   `sealpipe inspect --since`
 *   plaintext=1     the private fields too (decrypted payloads): full tokens
 */
#include <stdio.h>
#include <string.h>

#include "api_internal.h"
#include "base/errors.h"
#include "base/timespan.h"
#include "storage/registry.h"

int api__inspector(struct api_req *r)
{
    static const char *const valid[] = {"device", "since", "plaintext", NULL};
    const char *v[3];
    struct api_watch *w = r->watch;
    struct device_info d;
    int rc;

    if (api__params(r, valid, NULL, v))
        return SP_ERR_CONFIG;
    memset(w, 0, sizeof *w);
    if (v[0]) {
        r->id = v[0];
        if (strlen(v[0]) >= sizeof w->device)
            return SP_ERR_NODEVICE;
        if ((rc = registry_device_get(r->a->reg, v[0], &r->a->arena, &d)))
            return rc;
        memcpy(w->device, v[0], strlen(v[0]) + 1);
    }
    if (v[1] && (timespan_parse(v[1], &w->since_ms) != 0 || w->since_ms <= 0)) {
        snprintf(r->err, sizeof r->err, "since=%.64s: not a duration (e.g. 30s, 10m, 2h, 1d)",
                 v[1]);
        return SP_ERR_CONFIG;
    }
    if (v[2] && strcmp(v[2], "1") != 0 && strcmp(v[2], "true") != 0 && strcmp(v[2], "0") != 0 &&
        strcmp(v[2], "false") != 0) {
        snprintf(r->err, sizeof r->err, "plaintext=%.64s: 1 or 0", v[2]);
        return SP_ERR_CONFIG;
    }
    w->plaintext = v[2] && (v[2][0] == '1' || v[2][0] == 't');
    if (w->plaintext && r->perm != TOKEN_FULL) {
        snprintf(r->err, sizeof r->err, "plaintext=1 takes a full token (admin token add)");
        return API_ERR_FORBIDDEN;
    }
    w->on = 1;
    return SP_OK;
}
