/*
 * sp_limits.h - the sealpipe daemon's hard limits, save a few kept next to
 * their only user (docs/ARCHITECTURE.md, "Where the limits live", lists those).
 *
 * Each can be overridden at build time (-DSP_LIMIT_X=...); the ones a user may
 * want to change at run time are also options in conf.c, whose defaults come
 * from here. Wire-format limits of TagoTiP live in sdk/include/sealpipe.h.
 */
#ifndef SP_LIMITS_H
#define SP_LIMITS_H

/* TagoIO data records (schemas/record.schema.json). */
#ifndef SP_LIMIT_VARIABLE
#define SP_LIMIT_VARIABLE 100 /* bytes of a variable name */
#endif
#ifndef SP_LIMIT_UNIT
#define SP_LIMIT_UNIT 25
#endif
#ifndef SP_LIMIT_GROUP
#define SP_LIMIT_GROUP 100
#endif
#ifndef SP_LIMIT_VALUE
#define SP_LIMIT_VALUE 6144 /* bytes of a string value */
#endif
#ifndef SP_LIMIT_METADATA
#define SP_LIMIT_METADATA 10240 /* bytes of metadata as JSON */
#endif
#ifndef SP_LIMIT_RECORDS
#define SP_LIMIT_RECORDS 1000 /* records one message may produce */
#endif

/* Messages. */
#ifndef SP_LIMIT_PAYLOAD
#define SP_LIMIT_PAYLOAD (256 * 1024) /* larger MQTT payloads are dead-lettered */
#endif
#ifndef SP_LIMIT_TOPIC
#define SP_LIMIT_TOPIC 1024
#endif
#ifndef SP_LIMIT_JSON_DEPTH
#define SP_LIMIT_JSON_DEPTH 32
#endif
#ifndef SP_LIMIT_BATCH
#define SP_LIMIT_BATCH 1000 /* default messages per commit; also MQTT receive maximum */
#endif
#ifndef SP_LIMIT_ARENA
/* Scratch memory for one batch: its messages and everything derived from them
 * (decrypted bodies, records, analysis results). It must hold one message's
 * largest analysis result (a worker reply is at most WIRE_MAX_FRAME, 64 MiB)
 * next to a full batch of input; a batch whose results outgrow it is cut and
 * continued in the next one (core/deferred.c, deferred_cut). Memory over
 * ARENA_KEEP_MAX goes back to the system after each batch. */
#define SP_LIMIT_ARENA (256u * 1024 * 1024)
#endif
#ifndef SP_LIMIT_BATCH_INPUT
#define SP_LIMIT_BATCH_INPUT (16u * 1024 * 1024) /* payload bytes one batch reads */
#endif
#ifndef SP_LIMIT_BATCH_MAX
#define SP_LIMIT_BATCH_MAX 4096 /* largest batch option */
#endif
#ifndef SP_LIMIT_DEDUP_WINDOW
/* Remembered (packet id, digest) pairs; must stay well below 65535 so that a
 * reused packet id never matches an old, legitimately different message, and
 * above what can be committed but not yet acknowledged: one batch plus the
 * messages mqlink may hold (HOLD_MAX, 2048). */
#define SP_LIMIT_DEDUP_WINDOW 8192
#endif
_Static_assert(SP_LIMIT_BATCH_MAX + 2048 < SP_LIMIT_DEDUP_WINDOW,
               "the delivery window must cover a batch and the held messages");

/* Analyses. */
#ifndef SP_LIMIT_SCRIPT
#define SP_LIMIT_SCRIPT (64 * 1024)
#endif
#ifndef SP_LIMIT_LUA_MEMORY
#define SP_LIMIT_LUA_MEMORY (32u * 1024 * 1024)
#endif
#ifndef SP_LIMIT_LUA_INSTRUCTIONS
#define SP_LIMIT_LUA_INSTRUCTIONS 10000000ull
#endif
#ifndef SP_LIMIT_PUBLISHES
#define SP_LIMIT_PUBLISHES 100 /* publish() calls per message */
#endif
#ifndef SP_LIMIT_HOPS
/* Messages produced by analyses in a row (analysis publish, another daemon's
 * analysis, ...): one that has come through this many is a `loop` dead letter. */
#define SP_LIMIT_HOPS 8
#endif
#ifndef SP_LIMIT_TOPICS_PER_ANALYSIS
#define SP_LIMIT_TOPICS_PER_ANALYSIS 32
#endif

/* The Lua worker process: resource limits it sets on itself (sandbox/worker.c,
 * from the arguments the pool passes). Neither is computed from the options. */
#ifndef SP_LIMIT_WORKER_ADDRESS_SPACE
/* RLIMIT_AS in bytes: a fixed backstop for the whole process. Each analysis's
 * Lua state is held to lua_memory_mb by the worker's allocator (host.c); this
 * cap catches what that does not count (a leak, the worker's own buffers). It
 * does not grow with lua_memory_mb or the number of analyses: when their
 * states together reach it, allocations fail and the analysis that asked
 * gets a memory error saying the worker ran out. Not set in sanitizer builds,
 * whose runtime needs the address space. */
#define SP_LIMIT_WORKER_ADDRESS_SPACE ((size_t)2 << 30)
#endif
#ifndef SP_LIMIT_WORKER_CPU_SECONDS
/* RLIMIT_CPU: CPU seconds over the worker's whole life, not per message (the
 * wall clock, lua_timeout_ms, bounds a message). A worker that reaches it is
 * killed by the kernel and replaced by the pool like any worker that died. */
#define SP_LIMIT_WORKER_CPU_SECONDS (24 * 3600)
#endif

#endif
