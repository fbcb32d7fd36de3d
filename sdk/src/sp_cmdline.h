/*
 * sp_cmdline.h - the one way sealpipe's programs read their command lines:
 * the daemon (sealpipe) and the device tool (sealpipe-device). Internal to
 * sealpipe, like sp_text.h: not installed and not part of sealpipe.h's API;
 * the code is in libsealpipe.a (cmdline.c), which a device program links only
 * if it calls it. The daemon and the tool include this header through the
 * build's include path, so the scanner exists once.
 *
 * Each command has an option table: the daemon's conf.c (sealpipe run, which
 * the config file shares) and cli.c (the registry commands), the device
 * tool's args.c. All are read through this scanner, so every command line
 * follows the same rules and reports a mistake in the same words:
 *
 *   --name value, --name=value  an option with a value; the value is taken
 *                               whatever it looks like (--key-grace -5 reaches
 *                               the option's validator, which refuses it)
 *   --name                      an option without one; --name=x is an error
 *   '-' and '_'                 alike in names (--data-dir, --data_dir);
 *                               names match whole, never abbreviated
 *   --                          ends the options: the rest are arguments
 *   anything else               an argument, including a word that starts
 *                               with a single '-' (a serial, a token name or
 *                               a TagoTiP body may) and "-" itself
 *
 * Options and arguments may come in any order. getopt_long is not used
 * because it reads "-dev" as options -d -e -v and accepts abbreviated names
 * (--tls for --tls-port), and the daemon's command line must mean exactly
 * what its config file means.
 *
 * The scanner keeps no global state and allocates nothing; callers own
 * struct sp__cmdline, and the table and argv it borrows.
 */
#ifndef SP_CMDLINE_H
#define SP_CMDLINE_H

#include <stddef.h>

struct sp__cmdline_opt {
    const char *name; /* without "--"; '-' and '_' alike */
    int has_value;
};

struct sp__cmdline {
    int argc;
    char **argv;
    int next;      /* index of the next word */
    int args_only; /* "--" was seen */
    const struct sp__cmdline_opt *opts;
    size_t nopts;
};

enum sp__cmdline_kind { SP__CMDLINE_END, SP__CMDLINE_OPTION, SP__CMDLINE_ARG };

struct sp__cmdline_item {
    enum sp__cmdline_kind kind;
    size_t opt;        /* SP__CMDLINE_OPTION: index in the table */
    const char *value; /* the option's value (NULL for one without), or the argument;
                          it points into argv */
    int index;         /* argv index of the option or argument */
};

/* Starts scanning argv[0..argc) against the table opts (borrowed). */
void sp__cmdline_init(struct sp__cmdline *cl, int argc, char **argv,
                      const struct sp__cmdline_opt *opts, size_t nopts);

/*
 * Reads the next option or argument into it. Returns 0 (it->kind says which,
 * SP__CMDLINE_END after the last word), or SP_ERR_INVAL with one of these in err:
 *   unknown option '--x' (see --help)
 *   option '--x' needs a value
 *   option '--x' takes no value
 */
int sp__cmdline_next(struct sp__cmdline *cl, struct sp__cmdline_item *it, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* Formats the error for an argument the command has no room for:
 * "unexpected argument 'x' (see --help)". */
void sp__cmdline_unexpected(const char *arg, char *err, size_t errlen);

/* Formats the error for an option the command does not take (name: len
 * bytes, without "--"), as sp__cmdline_next does for one not in its table. */
void sp__cmdline_unknown(const char *name, size_t len, char *err, size_t errlen);

/* 1 if name (len bytes) is table name `want`, with '-' and '_' alike. */
int sp__cmdline_name_is(const char *name, size_t len, const char *want);

/* 1 if argv asks for help: --help or -h before any "--". */
int sp__cmdline_wants_help(int argc, char **argv);

#endif
