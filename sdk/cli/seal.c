/*
 * seal.c - the commands that need no broker: seal (one TagoTiP/S envelope to
 * stdout, raw or hex) and hash (the device hash of a serial or the auth hash
 * of a token).
 */
#include "device.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cmd_seal(const struct args *a)
{
    uint8_t device_hash[SP_HASH_LEN];
    struct work *w = calloc(1, sizeof(*w));
    char *hex = NULL;
    int rc;

    if (!w)
        return fail("out of memory");
    /* seal takes BODY literally: no {n} expansion. */
    w->body_len = strlen(a->body);
    if (w->body_len > SP_MAX_FRAME)
        rc = SP_ERR_TOOLARGE;
    else {
        memcpy(w->body, a->body, w->body_len);
        rc = sp_tip_parse_body(w->body, w->body_len, &w->parsed);
    }
    if (rc < 0) {
        rc = body_error(a, 0, rc);
        goto out;
    }
    if (!a->hex && isatty(STDOUT_FILENO)) {
        rc = usage_error(a, "refusing to write a binary envelope to a terminal; use --hex or "
                            "redirect stdout");
        goto out;
    }
    sp_device_hash(a->serial, strlen(a->serial), device_hash);
    if ((rc = work_seal(w, a, device_hash, a->counter)) < 0) {
        rc = fail("cannot seal: %s", sp_strerror(rc));
        goto out;
    }
    if (a->hex) {
        size_t cap = 2 * w->env_len + 1;
        if (!(hex = malloc(cap))) {
            rc = fail("out of memory");
            goto out;
        }
        if (sp_hex_encode(w->env, w->env_len, hex, cap) != 0) {
            rc = fail("cannot encode hex");
            goto out;
        }
        printf("%s\n", hex);
    } else {
        fwrite(w->env, 1, w->env_len, stdout);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        rc = fail("cannot write to stdout: %s", strerror(errno));
        goto out;
    }
    rc = EXIT_OK;
out:
    free(hex);
    work_free(w);
    return rc;
}

int cmd_hash(const struct args *a)
{
    uint8_t h[SP_HASH_LEN];
    char hex[2 * SP_HASH_LEN + 1];
    int rc;

    if (a->serial) {
        sp_device_hash(a->serial, strlen(a->serial), h);
    } else {
        size_t n = strlen(a->token);
        int ok = n == 2 + SP_TOKEN_HEX_LEN && strncmp(a->token, "at", 2) == 0 &&
                 strspn(a->token + 2, "0123456789abcdefABCDEF") == SP_TOKEN_HEX_LEN;
        if (!ok)
            fprintf(stderr,
                    "%s hash: warning: token is not \"at\" + 32 hex characters; hashing it "
                    "anyway\n",
                    DEVICE_PROG);
        if ((rc = sp_auth_hash(a->token, n, h)) != 0)
            return usage_error(a, "--token: %s", sp_strerror(rc));
    }
    if (sp_hex_encode(h, sizeof(h), hex, sizeof(hex)) != 0)
        return fail("cannot encode hex");
    printf("%s\n", hex);
    if (fflush(stdout) != 0)
        return fail("cannot write to stdout: %s", strerror(errno));
    return EXIT_OK;
}
