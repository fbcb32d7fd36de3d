/*
 * cmdline.c - the command-line scanner of sp_cmdline.h, shared by every
 * command of sealpipe and sealpipe-device (the header has the rules it
 * implements). Pure functions over the caller's struct sp__cmdline.
 */
#include "sp_cmdline.h"

#include <stdio.h>
#include <string.h>

#include "sealpipe.h"

void sp__cmdline_init(struct sp__cmdline *cl, int argc, char **argv,
                      const struct sp__cmdline_opt *opts, size_t nopts)
{
    cl->argc = argc;
    cl->argv = argv;
    cl->next = 0;
    cl->args_only = 0;
    cl->opts = opts;
    cl->nopts = nopts;
}

int sp__cmdline_name_is(const char *name, size_t len, const char *want)
{
    size_t i;

    for (i = 0; i < len && want[i]; i++) {
        char a = name[i] == '_' ? '-' : name[i], b = want[i] == '_' ? '-' : want[i];
        if (a != b)
            return 0;
    }
    return i == len && want[i] == '\0';
}

static const struct sp__cmdline_opt *find(const struct sp__cmdline *cl, const char *name,
                                          size_t len)
{
    for (size_t i = 0; i < cl->nopts; i++)
        if (sp__cmdline_name_is(name, len, cl->opts[i].name))
            return &cl->opts[i];
    return NULL;
}

/* Reads the option in word (which starts with "--") and, if it has one, its value. */
static int read_option(struct sp__cmdline *cl, const char *word, struct sp__cmdline_item *it,
                       char *err, size_t errlen)
{
    const char *name = word + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const struct sp__cmdline_opt *o = find(cl, name, len);

    if (!o) {
        sp__cmdline_unknown(name, len, err, errlen);
        return SP_ERR_INVAL;
    }
    it->kind = SP__CMDLINE_OPTION;
    it->opt = (size_t)(o - cl->opts);
    it->value = NULL;
    if (!o->has_value) {
        if (eq) {
            snprintf(err, errlen, "option '--%s' takes no value", o->name);
            return SP_ERR_INVAL;
        }
        return SP_OK;
    }
    if (eq) {
        it->value = eq + 1;
    } else if (cl->next < cl->argc) {
        it->value = cl->argv[cl->next++];
    } else {
        snprintf(err, errlen, "option '--%s' needs a value", o->name);
        return SP_ERR_INVAL;
    }
    return SP_OK;
}

int sp__cmdline_next(struct sp__cmdline *cl, struct sp__cmdline_item *it, char *err, size_t errlen)
{
    for (;;) {
        if (cl->next >= cl->argc) {
            it->kind = SP__CMDLINE_END;
            it->index = cl->argc;
            return SP_OK;
        }
        it->index = cl->next;
        const char *word = cl->argv[cl->next++];
        if (!cl->args_only && strcmp(word, "--") == 0) {
            cl->args_only = 1;
            continue;
        }
        if (cl->args_only || strncmp(word, "--", 2) != 0) {
            it->kind = SP__CMDLINE_ARG;
            it->value = word;
            return SP_OK;
        }
        return read_option(cl, word, it, err, errlen);
    }
}

void sp__cmdline_unknown(const char *name, size_t len, char *err, size_t errlen)
{
    snprintf(err, errlen, "unknown option '--%.*s' (see --help)", (int)len, name);
}

void sp__cmdline_unexpected(const char *arg, char *err, size_t errlen)
{
    snprintf(err, errlen, "unexpected argument '%s' (see --help)", arg);
}

int sp__cmdline_wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc && strcmp(argv[i], "--") != 0; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return 1;
    return 0;
}
