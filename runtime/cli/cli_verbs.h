/*
 * cli_verbs.h - inside the registry commands: what cli.c (the command line:
 * options, verbs table, usage, dispatch) hands to cli_verbs.c (the verbs'
 * work: the registry calls and their output).
 *
 * Not an API: only cli.c, cli_verbs.c and the files of other verbs
 * (cli_deadletter.c, cli_device_set.c) include it.
 */
#ifndef SP_CLI_VERBS_H
#define SP_CLI_VERBS_H

#include <stdint.h>

#include "base/arena.h"

#define CLI_MAX_KV 100 /* --tag / --param / --config flags per command */

/* The options, as bits of struct cli_args.seen and of a verb's options. */
enum {
    O_NAME = 1u << 0,
    O_TAG = 1u << 1,
    O_PARAM = 1u << 2,
    O_CIPHER = 1u << 3,
    O_REQUIRE_ENC = 1u << 4,
    O_PARSER = 1u << 5,
    O_PROFILE = 1u << 6,
    O_COUNTER = 1u << 7,
    O_JSON = 1u << 8,
    O_PERM = 1u << 9,
    O_EXPIRES = 1u << 10,
    O_TOKEN = 1u << 11,
    O_DERIVE = 1u << 12,
    O_PLAIN = 1u << 13,
    O_DATA_DIR = 1u << 14,
    O_ANALYSES_DIR = 1u << 15,
    O_CONFIG = 1u << 16,
    O_HELP = 1u << 17,
    /* sealpipe dead-letter (cli_deadletter.c) */
    O_REASON = 1u << 18,
    O_DEVICE = 1u << 19,
    O_SINCE = 1u << 20,
    O_LIMIT = 1u << 21,
    O_WAIT = 1u << 22,
    O_FORCE = 1u << 23,
    O_RETENTION = 1u << 24, /* sealpipe device set */
};

/* A repeatable option's values, in order. */
struct cli_list {
    const char *v[CLI_MAX_KV];
    int n;
};

/* What the command line said, before anything is checked against the registry. */
struct cli_args {
    const char *pos[2];
    int npos;
    unsigned seen;
    const char *name, *cipher, *parser, *profile, *counter, *perm, *expires, *token;
    const char *data_dir, *analyses_dir;
    struct cli_list tags, params, configs;
    const char *reason, *device, *since, *limit; /* sealpipe dead-letter */
    const char *retention;                       /* device set */
    const char *require_enc;                     /* device set: on|off (device add: a flag) */
};

/* What a verb runs with. */
struct cli_ctx {
    const char *data_dir;
    const char *analyses_dir;
    int analyses_given; /* by --analyses-dir or --config, not the default */
    const char *cmd;    /* "device add", for messages */
    struct registry *reg;
    struct arena arena;
    int json;
};

/* "sealpipe <cmd>: " and the message on stderr, one line. */
void cli_fail(struct cli_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* ms as ISO 8601 UTC, e.g. 2026-11-24T10:00:00Z, in out. */
const char *cli_iso(int64_t ms, char out[32]);

#define CLI_MAX_JSON (64 * 1024) /* bytes of the tags / params JSON */

/* Shared with cli_device_set.c. */
/* "key": value as a JSON string (null for NULL), a comma first unless first. */
void cli_json_kv(int first, const char *key, const char *value);
/* Checks repeated k=v flags (keys non-empty and unique, UTF-8): 0, or 1
 * after printing the problem. */
int cli_kv_check(struct cli_ctx *c, const char *what, const struct cli_list *kv);
/* Opens the registry into c->reg: 0, or 1 after printing the problem. */
int cli_open_registry(struct cli_ctx *c);
/* 1 if analysis parser exists in the daemon's analyses folder; else 0 with
 * the problem (and the path checked) in why. */
int cli_parser_exists(struct cli_ctx *c, const char *parser, char *why, size_t whylen);

/*
 * The verbs, one per `sealpipe <group> <verb>`: each prints its result on
 * stdout (one JSON object with --json) and its problems on stderr, and
 * returns the exit status (0, or 1 on failure). The registry is opened on
 * demand into c->reg; the caller closes it.
 */
int cli_device_add(struct cli_ctx *c, const struct cli_args *a);
int cli_device_cmd(struct cli_ctx *c, const struct cli_args *a);
int cli_device_list(struct cli_ctx *c, const struct cli_args *a);
int cli_device_show(struct cli_ctx *c, const struct cli_args *a);
int cli_device_rm(struct cli_ctx *c, const struct cli_args *a);
int cli_token_add(struct cli_ctx *c, const struct cli_args *a);
int cli_token_list(struct cli_ctx *c, const struct cli_args *a);
int cli_token_revoke(struct cli_ctx *c, const struct cli_args *a);
int cli_admin_token_add(struct cli_ctx *c, const struct cli_args *a);
int cli_admin_token_list(struct cli_ctx *c, const struct cli_args *a);
int cli_admin_token_revoke(struct cli_ctx *c, const struct cli_args *a);
int cli_key_rotate(struct cli_ctx *c, const struct cli_args *a);
int cli_profile_add(struct cli_ctx *c, const struct cli_args *a);
int cli_profile_list(struct cli_ctx *c, const struct cli_args *a);
int cli_device_set(struct cli_ctx *c, const struct cli_args *a);

#endif
