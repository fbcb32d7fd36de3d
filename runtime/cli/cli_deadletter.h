/*
 * cli_deadletter.h - sealpipe dead-letter list|show|retry: the verbs' work
 * (cli.c parses their command lines into struct cli_args).
 *
 * Not an API: only cli.c and cli_deadletter.c include it.
 */
#ifndef SP_CLI_DEADLETTER_H
#define SP_CLI_DEADLETTER_H

#include "cli_verbs.h"

/* Each prints on stdout (JSON with --json), its problems on stderr, and
 * returns the exit status: 0, 1 on failure, 2 for a bad option value. */
int cli_deadletter_list(struct cli_ctx *c, const struct cli_args *a);
int cli_deadletter_show(struct cli_ctx *c, const struct cli_args *a);
int cli_deadletter_retry(struct cli_ctx *c, const struct cli_args *a);

#endif
