/*
 * host.h - the Lua host: where analyses run.
 *
 * An analysis is one file analyses/<name>.lua that returns a table:
 *
 *     return {
 *       topics = { "sensors/{serial}/raw" },   -- optional MQTT topic filters
 *       handle = function(msg) ... return records end,
 *     }
 *
 * The host keeps one Lua state per analysis, created with a capped allocator
 * and an instruction-count hook installed before any user code runs. Scripts
 * are loaded as text only into a restricted environment (no io, os except
 * time/clock/date, package, debug, load, dofile, require, collectgarbage,
 * setmetatable, getmetatable, string.dump, coroutine.close) plus the host's
 * helpers (publish, log/print, hex, base64, json, tagotip, env). See
 * sdk/lua/README.md for the API analysis authors see.
 *
 * This interface is all the daemon knows of Lua: the implementation may move
 * into sandboxed worker processes without changing callers.
 * Not thread-safe: one host per thread.
 */
#ifndef SP_HOST_H
#define SP_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "../arena.h"
#include "../record.h"

struct host;

struct host_limits {
    uint64_t instructions; /* VM instructions per handle() call */
    size_t memory;         /* bytes per Lua state */
    size_t script_size;    /* bytes of source */
    size_t max_records;    /* records one call may return */
    size_t max_publishes;  /* publish() calls per handle() call */
};

/* Fills l with the defaults from sp_limits.h. */
void host_limits_default(struct host_limits *l);

/* Returns a new host, or NULL when out of memory. */
struct host *host_new(const struct host_limits *l);
void host_free(struct host *h);

/*
 * Compiles src as analysis `name` (a file name without ".lua": letters,
 * digits, '_' and '-'), runs its top level with the limits, and reads the
 * returned declaration: topics (list of strings, each a valid MQTT filter
 * where a level may be exactly "{serial}"; at most
 * SP_LIMIT_TOPICS_PER_ANALYSIS) and handle (function, required).
 * On success the analysis replaces any loaded analysis of the same name; on
 * any failure the old version stays loaded and err says why (syntax error
 * with line, bad declaration, limit hit).
 * Returns 0, SP_ERR_INVAL (bad name), SP_ERR_TOOLARGE (script too big),
 * SP_ERR_LUA, SP_ERR_TIMEOUT or SP_ERR_NOMEM.
 */
int host_load(struct host *h, const char *name, const char *src, size_t len, char *err,
              size_t errlen) __attribute__((warn_unused_result));

/* Most bytes of env_json, variables in it, and bytes of one name. */
#ifndef HOST_ENV_MAX
#define HOST_ENV_MAX (64 * 1024)
#endif
#ifndef HOST_ENV_VARS
#define HOST_ENV_VARS 256
#endif
#ifndef HOST_ENV_NAME_MAX
#define HOST_ENV_NAME_MAX 128
#endif

/*
 * As host_load, and gives the analysis its `env` table: env_json is a JSON
 * object whose members are strings, keys matching [A-Za-z_][A-Za-z0-9_]*
 * (at most HOST_ENV_NAME_MAX bytes), at most HOST_ENV_VARS members and
 * HOST_ENV_MAX bytes of text. NULL or "" means an empty `env`. The host keeps
 * a copy (wiped when freed) and gives each Lua state of this analysis a fresh
 * table built from it, also after a rebuild; no other analysis sees it.
 * host_load(...) is host_load_env(..., NULL, ...): reloading without an env
 * drops the old one.
 * Returns as host_load, and SP_ERR_INVAL for a malformed env_json or
 * SP_ERR_TOOLARGE for one over HOST_ENV_MAX; err then starts "<name>.env: "
 * and names keys and byte offsets, not values (except the one character of
 * a bad JSON escape). On any error the old version stays loaded.
 */
int host_load_env(struct host *h, const char *name, const char *src, size_t len,
                  const char *env_json, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Unloads analysis name. Returns 0 or SP_ERR_NOTFOUND. */
int host_unload(struct host *h, const char *name);

/* Loaded analyses, in name order: index 0 .. host_count()-1. */
size_t host_count(const struct host *h);
const char *host_name(const struct host *h, size_t i);
size_t host_topic_count(const struct host *h, size_t i);
/* The j-th declared topic filter, as written (may contain "{serial}"). */
const char *host_topic(const struct host *h, size_t i, size_t j);
/* Index of the analysis called name, or -1. */
int host_find(const struct host *h, const char *name);

/* What handle(msg) sees as msg (see sdk/lua/README.md). */
struct host_msg {
    const char *topic;
    const uint8_t *payload; /* msg.payload, a Lua string of raw bytes */
    size_t payload_len;
    int qos;
    int retain;
    int64_t received_ms;
    const char *serial;           /* msg.device.serial; NULL: no device */
    const char *device_name;      /* msg.device.name */
    const char *tags_json;        /* msg.device.tags: JSON object text or NULL */
    const char *params_json;      /* msg.device.params: JSON object text or NULL */
    const struct record *records; /* msg.records: the default normalization */
    size_t nrecords;
};

/* A publish(topic, payload[, {qos, retain}]) call made by handle(). */
struct host_publish {
    const char *topic;
    const uint8_t *payload;
    size_t payload_len;
    int qos;
    int retain;
};

/* log()/print() lines kept per handle() call, and bytes of one line. */
#ifndef HOST_LOG_LINES
#define HOST_LOG_LINES 20
#endif
#ifndef HOST_LOG_LINE_MAX
#define HOST_LOG_LINE_MAX 1024
#endif

struct host_out {
    struct record_vec records; /* returned records, validated */
    struct host_publish *publishes;
    size_t npublishes;
    /*
     * Lines handle() passed to log() or print(), in order: at most
     * HOST_LOG_LINES, each NUL-terminated, valid UTF-8 without control
     * characters (escaped as \n, \t, \xNN), shorter than HOST_LOG_LINE_MAX
     * bytes (longer ones are cut and end in "..."). logs_dropped counts the lines
     * past the limit. Allocated in the arena given to host_run.
     */
    const char **logs;
    size_t nlogs;
    size_t logs_dropped;
};

/*
 * Calls handle(msg) of analysis i. The returned value must be nil (no
 * records), one record table, or a list of record tables; each becomes a
 * struct record in arena a and is checked with record_validate(). Results are
 * read with raw access inside a protected call, so user metamethods never run
 * in the host. Publishes are collected, not sent: the daemon sends them after
 * the batch is committed.
 * On an instruction or memory limit the analysis's Lua state is discarded and
 * rebuilt from its source before the next call.
 * Returns 0 and fills *out, or SP_ERR_LUA (runtime error or a bad return
 * value; err has the message and traceback), SP_ERR_TIMEOUT (instruction
 * limit), SP_ERR_NOMEM (memory limit) or SP_ERR_PAYLOAD (a record failed
 * validation; err names it). On error only out->logs, out->nlogs and
 * out->logs_dropped are written (what was logged before the failure, which
 * is what an operator needs to see); records and publishes are not.
 * Lines logged by the top level, at load or at a rebuild, are discarded.
 */
int host_run(struct host *h, size_t i, const struct host_msg *m, struct arena *a,
             struct host_out *out, char *err, size_t errlen) __attribute__((warn_unused_result));

#endif
