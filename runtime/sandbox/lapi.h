/*
 * lapi.h - what the Lua host's core (host.c) and its API libraries
 * (lapi_*.c) share. Internal to runtime/sandbox/: the daemon sees host.h.
 *
 * The core owns the state of one sandbox (struct sandbox: the Lua state, its
 * capped allocator and instruction budget) and of one handle() call (struct
 * call: where publish(), insert(), log() and the result reader write). Each
 * lapi_*.c file is one family of names a script sees: the allow-list of the
 * standard library (lapi_globals.c), hex and base64 (lapi_encoding.c),
 * log/print (lapi_log.c), json (lapi_json.c), tagotip (lapi_tagotip.c),
 * publish/insert/query/devices/aggregate/delete_data (lapi_data.c), env
 * (lapi_env.c), and the records and msg tables both ways (lapi_record.c).
 *
 * Rules every API function follows: anything that may raise (allocation)
 * runs inside the protected call the core set up; memory a function holds
 * outside Lua objects is owned by a userdata or by the call's arena, so a
 * longjmp never leaks; tables from scripts are read with raw access only;
 * work done in C is charged with sandbox_charge().
 */
#ifndef SP_LAPI_H
#define SP_LAPI_H

#include <lua.h>

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/json.h"
#include "host.h"

#define TIME_MS_MAX 9.2e18 /* keeps a double inside int64_t */

/* Registry field of json.null, a unique userdata (scripts cannot reach the registry). */
#define REG_JSON_NULL "sealpipe.json_null"

/* One Lua state and the accounting its allocator and hook share. */
struct sandbox {
    lua_State *L;
    size_t mem_used;
    size_t mem_limit;
    uint64_t steps; /* instructions used by the current call (HOOK_STEP granularity) */
    uint64_t step_limit;
    int trip; /* 0, SP_ERR_TIMEOUT or SP_ERR_NOMEM: sticky until the state is freed */
    /* A refused growth Lua may retry after an emergency collection. */
    int refused;
    const void *refused_ptr;
    size_t refused_osize, refused_nsize;
    /* The process, not this state's limit, refused memory: the worker holds
     * every analysis's state in one address space. */
    int worker_nomem;
    struct call *call; /* the host_run in progress, NULL at load time */
};

/* Context of one host_run: what publish(), insert() and the result reader write into. */
struct call {
    const struct host_limits *lim; /* the analysis's */
    const struct host_msg *msg;
    struct arena *arena;
    struct record_vec records;
    struct host_publish *pubs;
    size_t npubs, pubcap;
    struct host_insert *ins; /* HOST_MAX_INSERTS slots in the arena, once insert() is called */
    size_t nins;
    size_t inserted; /* records in ins */
    size_t nqueries;
    struct host_run_call
        *runs; /* HOST_MAX_RUNS slots in the arena, once run_analysis() is called */
    size_t nruns;
    const char *const *allow; /* the analysis's `webhooks` list */
    size_t nallow;
    struct host_webhook *hooks; /* HOST_MAX_WEBHOOKS slots in the arena, once webhook() is called */
    size_t nhooks;
    host_query_fn qfn;
    void *qctx;
    /* Where the record reader reports a bad record, and how it starts. */
    const char *rwhat;
    char *rerr;
    size_t rerrlen;
    struct buf meta;   /* scratch for metadata JSON; freed by host_run */
    const char **logs; /* HOST_LOG_LINES slots in the arena, once log() is called */
    size_t nlogs, logs_dropped;
    int code;      /* result decided inside the protected call */
    int lua_nomem; /* handle() failed with a Lua memory error */
    char *err;
    size_t errlen;
    char limit[256];     /* the last per-message limit that tripped ("": none) */
    host_devices_fn dfn; /* devices{} and aggregate{} (host_set_reads) */
    host_aggregate_fn gfn;
    void *rctx;
    struct host_delete
        *dels; /* HOST_MAX_DELETES slots in the arena, once delete_data() is called */
    size_t ndels;
};

/* One variable of an analysis's env, as host_load_env received it. */
struct env_var {
    char *key; /* NUL-terminated; wiped before free, as is val */
    char *val;
    size_t vlen;
};

/* --- host.c: the core ------------------------------------------------------ */

/* The sandbox L belongs to (any thread of its state). */
struct sandbox *sandbox_of(lua_State *L);
/*
 * The state's allocator (lua_Alloc): growth past the limit is refused. Also
 * for memory a C function holds for a script, so it counts like a Lua
 * object; free it with nsize 0.
 */
void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
/* Charges units of work done in C to the instruction budget; returns the trip, if any. */
int sandbox_charge(lua_State *L, size_t units);
/* snprintf into err (NULL or errlen 0: nothing). */
void sandbox_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- lapi_globals.c -------------------------------------------------------- */

/* Pushes the allow-list table the chunk gets as _ENV, with env's variables as `env`. */
void lapi_push_globals(lua_State *L, const struct env_var *env, size_t nenv);

/* --- lapi_encoding.c ------------------------------------------------------- */

void lapi_open_hex(lua_State *L);    /* pushes the hex table */
void lapi_open_base64(lua_State *L); /* pushes the base64 table */
/*
 * Push the bytes n characters of hex / base64 text decode to (the formats
 * sdk/lua/README.md documents) and return 0; or push nothing, write why
 * (without a function name) and return -1.
 */
int lapi_push_unhex(lua_State *L, const char *s, size_t n, char *why, size_t whylen);
int lapi_push_unbase64(lua_State *L, const char *s, size_t n, char *why, size_t whylen);

/* --- lapi_log.c ------------------------------------------------------------ */

int lapi_log(lua_State *L); /* log(...) and print(...) */

/* --- lapi_json.c ----------------------------------------------------------- */

/* Pushes the json table (and registers json.null and what json needs). */
void lapi_open_json(lua_State *L);
/* json.encode(value): pushes the text, or raises. */
int lapi_json_encode(lua_State *L);
/* Pushes the tree j; JSON null becomes the value at null_idx, or nil when 0. */
void lapi_push_json(lua_State *L, const struct json *j, int null_idx);

/* --- lapi_tagotip.c -------------------------------------------------------- */

void lapi_open_tagotip(lua_State *L); /* pushes the tagotip table */

/* --- lapi_data.c ----------------------------------------------------------- */

int lapi_publish(lua_State *L);
int lapi_insert(lua_State *L);
int lapi_query(lua_State *L);
int lapi_devices(lua_State *L);     /* devices{tags, after, limit} */
int lapi_aggregate(lua_State *L);   /* aggregate{serial, variable, start, stop} */
int lapi_delete_data(lua_State *L); /* delete_data{serial, variable, before} */

/* --- lapi_trigger.c -------------------------------------------------------- */

int lapi_run_analysis(lua_State *L); /* run_analysis(name, payload) */
/* Appends one publish to the call (what publish() and tagotip.command() share);
 * raises on a limit or out of memory. */
int lapi_queue_publish(lua_State *L, struct call *c, const char *topic, size_t tl,
                       const char *payload, size_t pl, int qos, int retain, const char *seal_for,
                       size_t sl);

/* The argument at index i as text: a string as is, a table JSON-encoded
 * (replacing it on the stack), nil or none as ""; raises otherwise. */
const char *lapi_text_arg(lua_State *L, int i, size_t *len);

/* --- lapi_webhook.c -------------------------------------------------------- */

int lapi_webhook(lua_State *L); /* webhook(url, body[, {headers, method}]) */
/*
 * Reads `webhooks` of the declaration at index d: nil (none) or a list of at
 * most HOST_WEBHOOK_HOSTS_MAX strings, each webhook_entry_check'ed. Returns
 * 0 with *out (a malloc'd list of n malloc'd strings, NULL when n is 0) or
 * SP_ERR_LUA / SP_ERR_NOMEM with err naming the entry ("<name>.lua: ...").
 */
int lapi_read_webhooks(lua_State *L, int d, const char *name, char ***out, size_t *n, char *err,
                       size_t errlen);

/* --- lapi_env.c ------------------------------------------------------------ */

/* Parses env_json (NULL or "": no variables) into a malloc'd list; 0 or an
 * SP_ERR_ code with err set. Free with lapi_env_free. */
int lapi_env_parse(const char *env_json, struct env_var **out, size_t *nout, char *err,
                   size_t errlen);
/* Wipes and frees n variables (v may be NULL). */
void lapi_env_free(struct env_var *v, size_t n);
/* Pushes a fresh `env` table: each state gets its own copy. */
void lapi_push_env(lua_State *L, const struct env_var *v, size_t n);

/* --- lapi_record.c --------------------------------------------------------- */

/* A number as an integer when it is integral and small enough, else a float. */
void lapi_push_number(lua_State *L, double d);
/* Pushes r as a record table; parses its metadata JSON in arena a. */
void lapi_push_record(lua_State *L, struct arena *a, const struct record *r);
/* Pushes a device table as msg.device has it: serial, name (the serial when
 * NULL), tags and params (JSON object texts, as tables; {} when unreadable). */
void lapi_push_device(lua_State *L, struct arena *a, const char *serial, const char *name,
                      const char *tags_json, const char *params_json);
/* Pushes c->msg as the table handle() receives. */
void lapi_push_msg(lua_State *L, struct call *c);
/* Pushes the ctx tick() and run() receive: c->msg's payload, a JSON object,
 * as a table, with c->msg's device as ctx.device when it has one. */
void lapi_push_ctx(lua_State *L, struct call *c);
/*
 * Reads the table at index v, one record or a list of records, into vec.
 * Returns 0, an error with c->rerr set ("<c->rwhat> N: why"), or -1 with
 * *count set when there are more than room records.
 */
int lapi_read_records(lua_State *L, struct call *c, int v, struct record_vec *vec, size_t room,
                      lua_Unsigned *count);

#endif
