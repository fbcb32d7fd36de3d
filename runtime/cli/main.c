/*
 * main.c - the sealpipe command: its sub-commands, their command lines and
 * help; `run` itself is run.c.
 *
 *   sealpipe run [options]            the daemon
 *   sealpipe device|token|key|profile registry commands (cli.c)
 *   sealpipe config                   prints a commented example config
 *   sealpipe query <serial>           a device's stored data (query.c)
 *   sealpipe stats [--json]           the running daemon's metrics (stats.c)
 *
 * Every command line is read the same way (sp_cmdline.h); run's options are the
 * option table of conf.c, which the config file shares.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/errors.h"
#include "cli.h"
#include "conf.h"
#include "inspect_cli.h"
#include "query.h"
#include "run.h"
#include "sandbox/worker.h"
#include "sealpipe.h"
#include "sp_cmdline.h"
#include "stats.h"
#include "transport/webhook_send.h"

static void run_usage(FILE *f)
{
    fprintf(f, "usage: sealpipe run [options]\n\n"
               "Starts the daemon. Without --broker it runs its own mosquitto broker\n"
               "(listening on --bind:--port) and stops it on exit.\n\noptions:\n");
    conf_print_help(f);
}

/* sealpipe run [options]: argv[0] is "run". */
static int main_run(struct conf *c, int argc, char **argv)
{
    char err[CONF_ERR_MAX];
    int used;

    if (sp__cmdline_wants_help(argc - 1, argv + 1)) {
        run_usage(stdout);
        return 0;
    }
    used = conf_parse_args(c, argc - 1, argv + 1, err, sizeof(err));
    if (used >= 0 && used != argc - 1) {
        sp__cmdline_unexpected(argv[1 + used], err, sizeof(err));
        used = SP_ERR_CONFIG;
    }
    if (used < 0 || conf_check(c, err, sizeof(err)) != SP_OK) {
        fprintf(stderr, "sealpipe run: %s\n", err);
        return 2;
    }
    /* libcurl's global state, before any thread of the daemon starts. */
    if (webhook_sender_global_init() != SP_OK) {
        fprintf(stderr, "sealpipe run: cannot initialize libcurl\n");
        return 1;
    }
    return run_daemon(c);
}

static int main_registry(struct conf *c, int argc, char **argv)
{
    return cli_run(c, argc, argv);
}

/* `admin token <verb>`: the verbs of the group "admin token" (cli.c). */
static int main_admin(struct conf *c, int argc, char **argv)
{
    static char group[] = "admin token";

    if (argc < 2 || strcmp(argv[1], "token") != 0) {
        fprintf(stderr, "usage: sealpipe admin token add|list|revoke [options]\n");
        return 2;
    }
    argv[1] = group;
    return cli_run(c, argc - 1, argv + 1);
}

static int main_query(struct conf *c, int argc, char **argv)
{
    return query_main(c, argc, argv);
}

static int main_config(struct conf *c, int argc, char **argv)
{
    (void)c;
    (void)argc;
    (void)argv;
    conf_print_example(stdout);
    return 0;
}

static int main_version(struct conf *c, int argc, char **argv)
{
    (void)c;
    (void)argc;
    (void)argv;
    printf("sealpipe %s\n", sp_version());
    return 0;
}

/* The commands; those with a summary are listed by the usage. */
static const struct command {
    const char *name;
    const char *summary;
    int (*run)(struct conf *c, int argc, char **argv); /* argv[0]: the name */
} commands[] = {
    {"run", "start the daemon (embedded mosquitto broker by default)", main_run},
    {"device", "add, list, show, set or remove devices; list and show give their status",
     main_registry},
    {"token", "add, list or revoke device tokens", main_registry},
    {"key", "rotate a device's encryption key", main_registry},
    {"profile", "add or list profiles (TagoTiP authorization tokens)", main_registry},
    {"admin", "add, list or revoke the HTTP API's tokens (admin token ...)", main_admin},
    {"inspect", "follow a device's events live (Live Inspector)", inspect_main},
    {"query", "print a device's stored data (TagoIO's data queries)", main_query},
    {"dead-letter", "list, show or retry the messages that could not be stored", main_registry},
    {"stats", "print the running daemon's metrics (counters, latency histograms)", stats_command},
    {"config", "print a commented example config file", main_config},
    {"version", "print the version", main_version},
    {"--version", NULL, main_version},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: sealpipe <command> [options]\n"
               "\n"
               "sealpipe processes encrypted IoT data: devices publish over MQTT (TagoTiP,\n"
               "TagoTiP/S or any topic an analysis declares), analyses normalize the data,\n"
               "and records land in SQLite buckets.\n"
               "\n"
               "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (commands[i].summary)
            fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n"
               "Every command accepts --data-dir DIR (default ./sealpipe-data) and\n"
               "--config FILE. Run 'sealpipe <command> --help' for details.\n");
}

/* The defaults, then SEALPIPE_DATA_DIR. Returns 0, or 2 after saying why. */
static int conf_from_env(struct conf *c)
{
    char err[CONF_ERR_MAX];
    const char *dir = getenv("SEALPIPE_DATA_DIR");

    conf_defaults(c);
    if (dir && conf_set(c, "data_dir", dir, err, sizeof(err)) != SP_OK) {
        fprintf(stderr, "sealpipe: SEALPIPE_DATA_DIR: %s\n", err);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct conf c;

    /* A Lua worker started by pool.c: nothing else of main() applies. */
    if (argc > 1 && strcmp(argv[1], "__worker") == 0)
        return worker_command(argc, argv);
    if (sp_init() != SP_OK) {
        fprintf(stderr, "sealpipe: cannot initialize libsodium\n");
        return 1;
    }
    if (conf_from_env(&c))
        return 2;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(&c, argc - 1, argv + 1);
    fprintf(stderr, "sealpipe: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
