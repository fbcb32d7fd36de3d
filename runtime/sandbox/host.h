/*
 * host.h - the Lua host: where analyses run.
 *
 * An analysis is one file analyses/<name>.lua that returns a table:
 *
 *     return {
 *       topics = { "sensors/{serial}/raw" },   -- optional MQTT topic filters
 *       handle = function(msg) ... return records end,
 *       schedule = "every 5m", tick = function(ctx) end,  -- optional
 *       run = function(ctx) end,               -- optional: run_analysis() target
 *       webhooks = { "hooks.example.com" },    -- optional: hosts webhook() may call
 *       limits = { instructions = 2e6, memory_mb = 8 },  -- optional
 *     }
 *
 * The host keeps one Lua state per analysis, created with a capped allocator
 * and an instruction-count hook installed before any user code runs. Scripts
 * are loaded as text only into a restricted environment (no io, os except
 * time/clock/date, package, debug, load, dofile, require, collectgarbage,
 * setmetatable, getmetatable, string.dump, coroutine.close) plus the host's
 * helpers (publish, insert, query, devices, aggregate, delete_data,
 * log/print, hex, base64, json, tagotip, env). See sdk/lua/README.md for
 * the API analysis authors see.
 *
 * The daemon never calls this in its own process: the worker process
 * (worker.h) holds the host, and the pool (pool.h) drives it. The count hook
 * cannot interrupt one C function (a Lua pattern can backtrack for minutes);
 * the pool's wall-clock limit does, by killing the worker, and a worker that
 * dies is blamed on the message it was running only if that message kills
 * a fresh worker too.
 * Not thread-safe: one host per thread.
 */
#ifndef SP_HOST_H
#define SP_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "base/arena.h"
#include "base/record.h"

struct host;

/*
 * The global limits. All but script_size are also ceilings: an analysis's
 * `limits` table may lower them for itself, never raise them (see
 * host_load).
 */
struct host_limits {
    uint64_t instructions;    /* VM instructions per handle() call */
    size_t memory;            /* bytes per Lua state */
    size_t script_size;       /* bytes of source */
    size_t max_records;       /* records one call may return and insert(), together */
    size_t max_publishes;     /* publish() calls per handle() call */
    size_t max_publish_bytes; /* payload of one publish() */
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
 * SP_LIMIT_TOPICS_PER_ANALYSIS; they need handle), the handlers handle, tick
 * and run (functions, at least one), schedule (base/schedule.h; with tick
 * and only with it), webhooks (a list of at most HOST_WEBHOOK_HOSTS_MAX
 * allow-list entries, each webhook_entry_check'ed) and limits (optional
 * table).
 * limits may hold instructions, memory_mb, timeout_ms, records, publishes
 * and publish_kb, each a positive integer (an integral float such as 2e6 is
 * accepted); any other key or value fails the load with an error naming the
 * field. instructions, memory_mb (MiB), records, publishes and publish_kb
 * (KiB) are clamped to the host's instructions, memory, max_records,
 * max_publishes and max_publish_bytes and replace them for this analysis's
 * handle() calls and its Lua state's allocator,
 * also after a rebuild. timeout_ms is only kept for host_timeout_ms(). The
 * top level itself runs under the host's limits (the declaration is only
 * known once it returns); once it has, the state must fit in the analysis's
 * memory limit (after a full collection) or the load fails with
 * SP_ERR_NOMEM.
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
/*
 * The analysis's wall-clock budget per message from its `limits.timeout_ms`,
 * or 0 when it declares none (the daemon's lua_timeout_ms applies). Not
 * clamped here (the host does not know lua_timeout_ms, the ceiling): the
 * daemon uses the smaller of the two. At most INT_MAX.
 */
int host_timeout_ms(const struct host *h, size_t i);

/*
 * The handlers an analysis may declare (at least one): handle(msg) for the
 * messages of its topics and the devices it parses for, tick(ctx) for its
 * schedule, run(ctx) for run_analysis() calls. host_handlers() gives them
 * as a mask of HOST_BIT(handler).
 */
enum host_handler { HOST_HANDLE, HOST_TICK, HOST_RUN, HOST_EVENT, HOST_CONDITION, HOST_HANDLERS };
#define HOST_BIT(handler) (1u << (handler))
/* The Lua name of a handler ("handle", "tick", "run", "event", "condition"). */
const char *host_handler_name(int handler);

/* The device events an analysis's `on` may list, for event(ev); as a mask of
 * HOST_BIT(event) from host_events(). */
enum host_event { HOST_EV_CONNECTED, HOST_EV_DISCONNECTED, HOST_EV_OFFLINE, HOST_EVENTS };
/* The word of an event ("connected", "disconnected", "offline"). */
const char *host_event_name(int event);
/* The shortest and longest offline_after: a device is offline after that long without a message. */
#define HOST_OFFLINE_MIN_MS (10 * 1000LL)
#define HOST_OFFLINE_MAX_MS (366 * 86400 * 1000LL)
unsigned host_events(const struct host *h, size_t i);
/* offline_after in ms when `on` has "offline", else 0. */
int64_t host_offline_after_ms(const struct host *h, size_t i);
/* The analysis's `when` as JSON text (base/when.h checks it), or NULL. */
const char *host_when(const struct host *h, size_t i);
/* The tags of its `devices` scope as a JSON object of strings, or NULL:
 * every device. */
const char *host_scope(const struct host *h, size_t i);
/* Most tags a scope may name. */
#define HOST_SCOPE_TAGS 16
/* Most bytes of a schedule spec (base/schedule.h). */
#define HOST_SCHEDULE_MAX 128

unsigned host_handlers(const struct host *h, size_t i);
/* The analysis's `schedule` as written (checked with schedule_parse), or NULL. */
const char *host_schedule(const struct host *h, size_t i);

/*
 * What a handler sees (see sdk/lua/README.md): handle(msg) all of it as
 * msg; tick(ctx) and run(ctx) the JSON object in payload as ctx (the daemon
 * makes it), with ctx.device when serial is set.
 */
struct host_msg {
    int handler; /* enum host_handler */
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

/* A publish(topic, payload[, {qos, retain, seal_for}]) call made by handle(). */
struct host_publish {
    const char *topic;
    const uint8_t *payload;
    size_t payload_len;
    int qos;
    int retain;
    /* NULL, or the serial of a device (shape checked, existence not): the
     * daemon seals the payload as a TagoTiP/S ACK envelope for it. */
    const char *seal_for;
};

/* An insert(records[, serial]) call made by handle(). */
struct host_insert {
    const char *serial;        /* the device to store for (not checked here; the daemon checks) */
    struct record_vec records; /* validated like returned records */
};

/*
 * insert() and query() calls per handler call; most records one query
 * answers. HOST_MAX_INSERTS and HOST_MAX_QUERIES are handle()'s and
 * event()'s; tick() and run(), which have no message and work for many
 * devices, get HOST_MAX_INSERTS_RUN and HOST_MAX_QUERIES_RUN
 * (host_max_inserts, host_max_queries). devices{} and aggregate{} count as
 * queries.
 */
#ifndef HOST_MAX_INSERTS
#define HOST_MAX_INSERTS 10
#endif
#ifndef HOST_MAX_QUERIES
#define HOST_MAX_QUERIES 10
#endif
#ifndef HOST_MAX_INSERTS_RUN
#define HOST_MAX_INSERTS_RUN 100
#endif
#ifndef HOST_MAX_QUERIES_RUN
#define HOST_MAX_QUERIES_RUN 100
#endif
#ifndef HOST_QUERY_MAX
#define HOST_QUERY_MAX 100
#endif

/*
 * A query{...} call made by handle(): read-only access to the stored records
 * of a device, answered by the daemon (host_set_query).
 */
struct host_query {
    const char *serial;   /* device; defaults to msg.device.serial */
    const char *variable; /* NULL: every variable */
    int64_t start_ms;     /* inclusive; INT64_MIN: no bound */
    int64_t stop_ms;      /* inclusive; INT64_MAX: no bound */
    size_t qty;           /* most records, newest first: 1..HOST_QUERY_MAX (100), default 1 */
};
/* Answers a query with records (newest first) in arena a; returns 0 or an
 * SP_ERR_ code with err set. Called from inside host_run. */
typedef int (*host_query_fn)(void *ctx, const struct host_query *q, struct arena *a,
                             struct record_vec *out, char *err, size_t errlen);
/*
 * Sets the function query() calls (NULL: none). Without a query function,
 * query() raises "query() is not available here". The host checks the
 * arguments before calling fn: serial is 1-100 characters of [A-Za-z0-9_-],
 * variable (lowercased, as records are stored) 1-SP_LIMIT_VARIABLE bytes
 * without NUL, start_ms <= stop_ms. At most qty of the records fn returns
 * are given to the script; an error makes query() return nil and err (or the
 * error's name when err is empty).
 */
void host_set_query(struct host *h, host_query_fn fn, void *ctx);

/* The insert() and query() calls one call of handler (enum host_handler) may make. */
static inline size_t host_max_inserts(int handler)
{
    return handler == HOST_TICK || handler == HOST_RUN ? HOST_MAX_INSERTS_RUN : HOST_MAX_INSERTS;
}
static inline size_t host_max_queries(int handler)
{
    return handler == HOST_TICK || handler == HOST_RUN ? HOST_MAX_QUERIES_RUN : HOST_MAX_QUERIES;
}

/* log()/print() lines kept per handle() call, and bytes of one line. */
#ifndef HOST_LOG_LINES
#define HOST_LOG_LINES 20
#endif
#ifndef HOST_LOG_LINE_MAX
#define HOST_LOG_LINE_MAX 1024
#endif

/* A run_analysis(name, payload) call: payload is a string (a table is
 * JSON-encoded by the host), at most HOST_RUN_PAYLOAD_MAX bytes. */
struct host_run_call {
    const char *analysis; /* an analysis name's shape, checked; its existence is the daemon's */
    const uint8_t *payload;
    size_t payload_len;
};
#ifndef HOST_MAX_RUNS
#define HOST_MAX_RUNS 10
#endif
#define HOST_RUN_PAYLOAD_MAX (64 * 1024)

/*
 * A webhook(url, body[, {headers, method}]) call: url passed
 * webhook_url_check against the analysis's `webhooks` list, each header
 * webhook_header_check, method webhook_method_check (base/webhook_url.h).
 * Nothing is sent by the worker: the daemon queues it with the call's other
 * results and sends it once they are committed.
 */
struct host_webhook {
    const char *method;
    const char *url;
    const char **names, **values; /* nheaders of each, sorted by name */
    size_t nheaders;              /* at most WEBHOOK_HEADERS_MAX */
    const uint8_t *body;          /* body_len bytes, at most WEBHOOK_BODY_MAX */
    size_t body_len;
};
#ifndef HOST_MAX_WEBHOOKS
#define HOST_MAX_WEBHOOKS 10 /* webhook() calls per handler call */
#endif
#define HOST_WEBHOOK_HOSTS_MAX 32 /* entries of the `webhooks` list */

/* The analysis's `webhooks` list: entry j of analysis i, as written
 * (webhook_entry_check passed), or NULL. */
size_t host_webhook_count(const struct host *h, size_t i);
const char *host_webhook_entry(const struct host *h, size_t i, size_t j);

/*
 * devices{tags = {k = v}, after = serial, limit = n}: a page of the
 * registry's devices in serial order, answered by the daemon
 * (host_set_reads). The host checks the arguments: tags_json is NULL or a
 * JSON object of at most HOST_DEVICES_TAGS string members in at most
 * HOST_DEVICES_TAGS_MAX bytes; after is "" (from the first) or 1-100
 * characters of [A-Za-z0-9_-]; limit 1..HOST_DEVICES_MAX.
 */
#define HOST_DEVICES_MAX      1000
#define HOST_DEVICES_TAGS     16
#define HOST_DEVICES_TAGS_MAX 4096
struct host_devices_query {
    const char *tags_json; /* every member must equal the device's tag; NULL: any device */
    const char *after;     /* only serials greater than this; "": from the first */
    size_t limit;
};
/* One device of a devices{} page. */
struct host_device {
    const char *serial, *name;
    const char *tags_json, *params_json; /* JSON objects of strings */
    int connected;                       /* it has an MQTT connection now */
    int64_t last_sent;                   /* its last message, Unix ms; 0: never */
};
/* Answers devices{}: up to q->limit devices into *out (in arena a); 0 or an
 * SP_ERR_ code with err set. */
typedef int (*host_devices_fn)(void *ctx, const struct host_devices_query *q, struct arena *a,
                               struct host_device **out, size_t *n, char *err, size_t errlen);

/* aggregate{serial, variable, start, stop}: numbers over a device's variable. */
struct host_aggregate_query {
    const char *serial;   /* as host_query's */
    const char *variable; /* required, lowercased */
    int64_t start_ms;     /* inclusive; INT64_MIN: no bound */
    int64_t stop_ms;      /* inclusive; INT64_MAX: no bound */
};
/* The numeric records (type number) in the range; with count 0 the rest is 0. */
struct host_aggregate {
    int64_t count;
    double min, max, avg, sum;
    double first, last; /* the oldest and the newest value (time, then id) */
};
typedef int (*host_aggregate_fn)(void *ctx, const struct host_aggregate_query *q,
                                 struct host_aggregate *out, char *err, size_t errlen);
/*
 * Sets the functions devices{} and aggregate{} call (NULL: they raise "not
 * available here"). Called from inside host_run, like the query function.
 */
void host_set_reads(struct host *h, host_devices_fn devices, host_aggregate_fn aggregate,
                    void *ctx);

/*
 * A delete_data{serial, variable, before} call: collected like insert(),
 * executed by the daemon with the run's results, at most HOST_DELETE_ROWS
 * rows (the oldest) per call, at most HOST_MAX_DELETES calls per handler
 * call.
 */
struct host_delete {
    const char *serial;   /* 1-100 characters of [A-Za-z0-9_-]; existence is the daemon's */
    const char *variable; /* lowercased; NULL: every variable */
    int64_t before_ms;    /* rows with time < before_ms */
};
#ifndef HOST_MAX_DELETES
#define HOST_MAX_DELETES 10
#endif
#ifndef HOST_DELETE_ROWS
#define HOST_DELETE_ROWS 10000
#endif

struct host_out {
    struct record_vec records;  /* returned records, validated */
    struct host_run_call *runs; /* run_analysis() calls, in order, at most HOST_MAX_RUNS */
    size_t nruns;
    struct host_webhook *webhooks; /* webhook() calls, in order, at most HOST_MAX_WEBHOOKS */
    size_t nwebhooks;
    struct host_publish *publishes;
    size_t npublishes;
    /*
     * insert() calls, in order: at most HOST_MAX_INSERTS, each serial 1-100
     * characters of [A-Za-z0-9_-]; records here and returned together are at
     * most the analysis's records limit.
     */
    struct host_insert *inserts;
    size_t ninserts;
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
    struct host_delete *deletes; /* delete_data() calls, in order, at most HOST_MAX_DELETES */
    size_t ndeletes;
};

/*
 * Calls handle(msg) of analysis i. The returned value must be nil (no
 * records), one record table, or a list of record tables; each becomes a
 * struct record in arena a and is checked with record_validate(). Results are
 * read with raw access inside a protected call, so user metamethods never run
 * in the host. Publishes and inserts are collected, not sent or stored: the
 * daemon acts on them after handle() succeeds (sends publishes after the
 * batch is committed). The analysis's own limits apply (see host_load).
 * On an instruction or memory limit the analysis's Lua state is discarded and
 * rebuilt from its source before the next call.
 * Returns 0 and fills *out, or SP_ERR_LUA (runtime error or a bad return
 * value; err has the message and traceback), SP_ERR_TIMEOUT (instruction
 * limit), SP_ERR_NOMEM (memory limit), SP_ERR_LIMIT (records, publishes,
 * publish size, insert or query calls: err starts with the limit's name,
 * e.g. "publishes limit: ", and gives its value; when the limit's error is
 * what ended handle(): a script may catch it and go on) or SP_ERR_PAYLOAD (a record
 * failed validation; err names it). On error only out->logs, out->nlogs and
 * out->logs_dropped are written (what was logged before the failure, which
 * is what an operator needs to see); records, publishes and inserts are not.
 * Lines logged by the top level, at load or at a rebuild, are discarded.
 */
int host_run(struct host *h, size_t i, const struct host_msg *m, struct arena *a,
             struct host_out *out, char *err, size_t errlen) __attribute__((warn_unused_result));

#endif
