/*
 * cli.h - the registry subcommands: sealpipe device|token|key|profile ...
 *
 * Every command prints human-readable text by default and one JSON object
 * with --json; secrets (device token, encryption key, profile token) are
 * printed exactly once, when created. Errors name the problem on stderr and
 * return a non-zero exit status.
 */
#ifndef SP_CLI_H
#define SP_CLI_H

struct conf;

/*
 * Runs one subcommand. argv[0] is the group ("device", "token", "key",
 * "profile"); the verb and its arguments and options follow, options before
 * or after the verb. conf holds the defaults (and SEALPIPE_DATA_DIR); the
 * command line's --config, --data-dir and --analyses-dir are applied to it:
 * data_dir is where sealpipe.db lives, analyses_dir is used to check
 * --parser names. Returns the exit status (0 success, 1 failure, 2 usage
 * error).
 */
int cli_run(struct conf *conf, int argc, char **argv);

#endif
