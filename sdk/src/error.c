/*
 * error.c - the error table of sealpipe.h turned into lookups, the library's
 * version and sp_init(). The daemon's own errors have a table of their own
 * (runtime/base/errors.h) that falls back to these functions for SDK codes.
 */
#include "sealpipe.h"

#include <sodium.h>

struct errinfo {
    const char *name;
    const char *wire;
    const char *msg;
};

static const struct errinfo errs[] = {
#define SP__XX(name, num, wire, msg) {#name, wire, msg},
    SP_ERRNO_MAP(SP__XX)
#undef SP__XX
};

static const int err_nums[] = {
#define SP__XX(name, num, wire, msg) num,
    SP_ERRNO_MAP(SP__XX)
#undef SP__XX
};

static const struct errinfo *lookup(int err)
{
    static const struct errinfo ok = {"OK", "ok", "success"};
    size_t i;

    if (err == SP_OK)
        return &ok;
    for (i = 0; i < sizeof err_nums / sizeof err_nums[0]; i++)
        if (err_nums[i] == err)
            return &errs[i];
    return NULL;
}

const char *sp_strerror(int err)
{
    const struct errinfo *e = lookup(err);
    return e ? e->msg : "unknown error";
}

const char *sp_errname(int err)
{
    const struct errinfo *e = lookup(err);
    return e ? e->name : "UNKNOWN";
}

const char *sp_wirecode(int err)
{
    const struct errinfo *e = lookup(err);
    return e && err != 0 ? e->wire : "server_error";
}

const char *sp_version(void)
{
    return SP_VERSION_STRING;
}

int sp_init(void)
{
    return sodium_init() < 0 ? SP_ERR_CRYPTO : SP_OK;
}
