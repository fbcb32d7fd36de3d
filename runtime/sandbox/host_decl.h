/*
 * host_decl.h - reading an analysis's declaration (the table its file
 * returns): internal to the Lua host (host.c builds the sandbox and calls
 * host_decl_read on the returned value; host_decl.c reads each field).
 */
#ifndef SP_HOST_DECL_H
#define SP_HOST_DECL_H

#include <lua.h>

#include <stddef.h>

#include "host.h"
#include "lapi.h"

/* Context of one sandbox build: the declaration read from the script. */
struct boot {
    const char *name;
    const char *src;
    size_t len;
    const struct env_var *env;
    size_t nenv;
    char **topics; /* SP_LIMIT_TOPICS_PER_ANALYSIS slots, freed by the caller */
    size_t ntopics;
    struct host_limits lim; /* the host's, lowered by the declaration's limits */
    int timeout_ms;
    unsigned handlers;
    char *schedule; /* freed by the caller */
    unsigned events;
    int64_t offline_after_ms;
    char *when;                     /* JSON text; freed by the caller */
    char *scope;                    /* JSON text; freed by the caller */
    char **webhooks;                /* freed by the caller (free_topics) */
    size_t nwebhooks;               /* entries in it */
    const struct host_limits *keep; /* a rebuild: the limits of the first load */
    int code;
    char *err;
    size_t errlen;
};

/*
 * Reads the declaration at index d into bt (handlers into the registry,
 * under host_decl_registry's names). 0, or SP_ERR_LUA / SP_ERR_NOMEM with
 * bt->err naming the file and the field.
 */
int host_decl_read(lua_State *L, int d, struct boot *bt);
/* The registry field that holds handler h (scripts cannot reach the registry). */
const char *host_decl_registry(int h);

#endif
