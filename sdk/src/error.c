/* error.c - the error table of sealpipe.h, turned into lookups. */
#include "sealpipe.h"

#include <sodium.h>

struct errinfo {
    const char *name;
    const char *wire;
    const char *msg;
};

static const struct errinfo errs[SP__ERRIDX_COUNT] = {[SP__ERRIDX_NONE] = {"OK", "ok", "success"},
#define SP__XX(name, wire, msg) [SP__ERRIDX_##name] = {#name, wire, msg},
                                                      SP_ERRNO_MAP(SP__XX)
#undef SP__XX
};

static const struct errinfo *lookup(int err)
{
    if (err > 0 || -err >= SP__ERRIDX_COUNT)
        return NULL;
    return &errs[-err];
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

int sp_init(void)
{
    return sodium_init() < 0 ? SP_ERR_CRYPTO : SP_OK;
}
