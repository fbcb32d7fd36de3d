/*
 * conf.c - the option table (see conf.h).
 *
 * Each option has a name, a type, where it lives in struct conf, its default,
 * bounds for integers and one line of help. Adding an option means adding one
 * row here and one field in struct conf; parsing, --help and the example
 * config follow.
 */
#include "conf.h"
#include "errors.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "sp_limits.h"
#include "log.h"
#include "sealpipe.h"

enum opt_type { OPT_STR, OPT_INT, OPT_ENUM };

struct opt {
    const char *name;
    enum opt_type type;
    size_t offset;
    size_t size; /* of the char array for OPT_STR / OPT_ENUM */
    const char *def;
    long min, max;       /* OPT_INT */
    const char *choices; /* OPT_ENUM: '|'-separated */
    const char *help;
};

#define STR(field)  OPT_STR, offsetof(struct conf, field), sizeof(((struct conf *)0)->field)
#define ENUM(field) OPT_ENUM, offsetof(struct conf, field), sizeof(((struct conf *)0)->field)
#define INT(field)  OPT_INT, offsetof(struct conf, field), 0

#define SP_STRINGIFY2(x) #x
#define SP_STRINGIFY(x)  SP_STRINGIFY2(x)

static const struct opt opts[] = {
    {"data_dir", STR(data_dir), "sealpipe-data", 0, 0, NULL,
     "directory for sealpipe.db (registry and buckets), master.key and the broker's files"},
    {"analyses_dir", STR(analyses_dir), "analyses", 0, 0, NULL,
     "folder of analysis scripts (*.lua)"},
    {"broker", STR(broker), "", 0, 0, NULL,
     "external broker URL mqtt://host:port; empty starts the embedded mosquitto"},
    {"broker_username", STR(broker_username), "", 0, 0, NULL, "username for the external broker"},
    {"broker_password", STR(broker_password), "", 0, 0, NULL, "password for the external broker"},
    {"bind", STR(bind), "127.0.0.1", 0, 0, NULL, "address the embedded broker listens on"},
    {"port", INT(port), "1883", 1, 65535, NULL, "port the embedded broker listens on"},
    {"tls_port", INT(tls_port), "8883", 1, 65535, NULL,
     "TLS port of the embedded broker, when it has a certificate"},
    {"tls_cert", STR(tls_cert), "", 0, 0, NULL,
     "server certificate (PEM) for the TLS listener; empty: <data_dir>/tls/server.crt if present"},
    {"tls_key", STR(tls_key), "", 0, 0, NULL,
     "its private key (PEM); empty: <data_dir>/tls/server.key if present"},
    {"broker_plugin", STR(broker_plugin), "", 0, 0, NULL,
     "sealpipe_auth.so for the embedded broker; empty: next to the sealpipe binary or in "
     "../lib/sealpipe/"},
    {"device_publish", STR(device_publish), "#", 0, 0, NULL,
     "topic filters devices may publish to besides their $tip topics (space-separated, %s = "
     "serial)"},
    {"device_subscribe", STR(device_subscribe), "#", 0, 0, NULL,
     "topic filters devices may subscribe to besides their ack topics"},
    {"device_cross_profile", ENUM(device_cross_profile), "off", 0, 0, "off|on",
     "off: a device receives only messages published by devices of its own profile (or by the "
     "daemon for it); on: one namespace for all profiles"},
    {"mosquitto", STR(mosquitto), "/usr/sbin/mosquitto", 0, 0, NULL,
     "mosquitto binary for the embedded broker"},
    {"client_id", STR(client_id), "sealpipe", 0, 0, NULL,
     "MQTT client id of the daemon (its persistent session)"},
    {"log_level", ENUM(log_level), "info", 0, 0, "error|warn|info|debug", "log verbosity"},
    {"batch", INT(batch), SP_STRINGIFY(SP_LIMIT_BATCH), 1, SP_LIMIT_BATCH_MAX, NULL,
     "most messages committed in one transaction (and MQTT receive maximum)"},
    {"sync", ENUM(sync), "full", 0, 0, "full|normal",
     "full: commits survive power loss; normal: survive a crash of the daemon only"},
    {"key_grace", INT(key_grace), "86400", 0, 315360000, NULL,
     "seconds a rotated encryption key still opens envelopes"},
    {"stats_interval", INT(stats_interval), "60", 1, 86400, NULL,
     "seconds between log lines with message and dead-letter counters"},
    {"lua_instructions", INT(lua_instructions), "10000000", 1000, 2000000000, NULL,
     "Lua VM instructions an analysis may use per message"},
    {"lua_memory_mb", INT(lua_memory_mb), "32", 1, 4096, NULL,
     "memory per analysis Lua state, in MiB"},
    {"lua_timeout_ms", INT(lua_timeout_ms), "1000", 10, 600000, NULL,
     "wall-clock time an analysis may take per message (the worker is killed past it)"},
    {"lua_error_budget", INT(lua_error_budget), "10", 0, 1000000, NULL,
     "failed analysis runs per device and analysis per minute before that device's messages "
     "skip the analysis for the rest of the minute (0: no limit)"},
    {"lua_records", INT(lua_records), SP_STRINGIFY(SP_LIMIT_RECORDS), 1, SP_LIMIT_RECORDS, NULL,
     "records one message's analysis may return and insert() together"},
    {"lua_publishes", INT(lua_publishes), SP_STRINGIFY(SP_LIMIT_PUBLISHES), 0, SP_LIMIT_PUBLISHES,
     NULL, "publish() calls per message"},
    {"lua_script_kb", INT(lua_script_kb), "64", 1, 64, NULL, "largest analysis script, in KiB"},
    {"lua_publish_kb", INT(lua_publish_kb), "256", 1, 256, NULL,
     "largest payload one publish() may send, in KiB"},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static const struct opt *find(const char *name, size_t n)
{
    char norm[64];

    if (n >= sizeof(norm))
        return NULL;
    for (size_t i = 0; i < n; i++)
        norm[i] = name[i] == '-' ? '_' : name[i];
    norm[n] = '\0';
    for (size_t i = 0; i < NOPTS; i++)
        if (strcmp(opts[i].name, norm) == 0)
            return &opts[i];
    return NULL;
}

static int choice_ok(const char *choices, const char *v)
{
    size_t vl = strlen(v);
    const char *p = choices;

    while (*p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == vl && strncmp(p, v, n) == 0)
            return 1;
        p += n + (bar ? 1 : 0);
    }
    return 0;
}

static int apply(struct conf *c, const struct opt *o, const char *value, char *err, size_t errlen)
{
    char *field = (char *)c + o->offset;

    switch (o->type) {
    case OPT_ENUM:
        if (!choice_ok(o->choices, value)) {
            snprintf(err, errlen, "%s: '%s' is not one of %s", o->name, value, o->choices);
            return SP_ERR_CONFIG;
        }
        /* fall through */
    case OPT_STR:
        /* Values end up in generated files (the broker's config), one per
         * line: a newline in one would add a line of its own. */
        for (const char *p = value; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                snprintf(err, errlen, "%s: control character 0x%02x in the value", o->name,
                         (unsigned)(unsigned char)*p);
                return SP_ERR_CONFIG;
            }
        if (strlen(value) >= o->size) {
            snprintf(err, errlen, "%s: value longer than %zu bytes", o->name, o->size - 1);
            return SP_ERR_CONFIG;
        }
        memcpy(field, value, strlen(value) + 1);
        return SP_OK;
    case OPT_INT: {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < o->min || v > o->max) {
            snprintf(err, errlen, "%s: '%s' is not an integer in [%ld, %ld]", o->name, value,
                     o->min, o->max);
            return SP_ERR_CONFIG;
        }
        *(int *)(void *)field = (int)v;
        return SP_OK;
    }
    }
    return SP_ERR_CONFIG;
}

void conf_defaults(struct conf *c)
{
    char err[256];

    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < NOPTS; i++)
        if (apply(c, &opts[i], opts[i].def, err, sizeof(err)) != SP_OK)
            abort(); /* a bad default is a programmer error */
}

int conf_set(struct conf *c, const char *name, const char *value, char *err, size_t errlen)
{
    const struct opt *o = find(name, strlen(name));

    if (!o) {
        snprintf(err, errlen, "unknown option '%s'", name);
        return SP_ERR_NOTFOUND;
    }
    return apply(c, o, value, err, errlen);
}

size_t conf_option_count(void)
{
    return NOPTS;
}

const char *conf_option_name(size_t i)
{
    return i < NOPTS ? opts[i].name : NULL;
}

int conf_get(const struct conf *c, const char *name, char *out, size_t cap)
{
    const struct opt *o = find(name, strlen(name));
    const char *field;
    int n;

    if (!o)
        return SP_ERR_NOTFOUND;
    field = (const char *)c + o->offset;
    if (o->type == OPT_INT)
        n = snprintf(out, cap, "%d", *(const int *)(const void *)field);
    else
        n = snprintf(out, cap, "%.*s", (int)o->size, field);
    return n < 0 || (size_t)n >= cap ? SP_ERR_BUFSIZE : SP_OK;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

int conf_load_file(struct conf *c, const char *path, char *err, size_t errlen)
{
    char line[1024], why[256];
    int lineno = 0, rc = SP_OK;
    FILE *f = fopen(path, "r");

    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return SP_ERR_IO;
    }
    while (fgets(line, sizeof(line), f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            snprintf(err, errlen, "%s:%d: line too long", path, lineno);
            rc = SP_ERR_CONFIG;
            break;
        }
        /* Only whole lines are comments: '#' is a valid character in a
         * topic filter or a password, so a value is never cut at one. */
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%d: expected 'name = value'", path, lineno);
            rc = SP_ERR_CONFIG;
            break;
        }
        *eq = '\0';
        char *value = trim(eq + 1);
        rc = conf_set(c, trim(s), value, why, sizeof(why));
        if (rc) {
            snprintf(err, errlen, "%s:%d: %s%s", path, lineno, why,
                     strchr(value, '#') ? " (a comment must be on its own line)" : "");
            rc = SP_ERR_CONFIG;
            break;
        }
    }
    fclose(f);
    return rc;
}

int conf_parse_args(struct conf *c, int argc, char **argv, char *err, size_t errlen)
{
    int i, rc;

    /* The config file first, so the command line overrides it. */
    for (i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--config") == 0 && i + 1 < argc) {
            if ((rc = conf_load_file(c, argv[i + 1], err, errlen)))
                return rc;
        } else if (strncmp(a, "--config=", 9) == 0) {
            if ((rc = conf_load_file(c, a + 9, err, errlen)))
                return rc;
        }
    }
    for (i = 0; i < argc; i++) {
        const char *a = argv[i], *value;
        if (strncmp(a, "--", 2) != 0)
            break;
        a += 2;
        const char *eq = strchr(a, '=');
        size_t n = eq ? (size_t)(eq - a) : strlen(a);
        if (n == 6 && strncmp(a, "config", 6) == 0) {
            if (!eq && i + 1 >= argc) {
                snprintf(err, errlen, "option '--config' needs a file");
                return SP_ERR_CONFIG;
            }
            if (!eq)
                i++;
            continue;
        }
        const struct opt *o = find(a, n);
        if (!o) {
            snprintf(err, errlen, "unknown option '--%.*s' (see --help)", (int)n, a);
            return SP_ERR_CONFIG;
        }
        if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            snprintf(err, errlen, "option '--%s' needs a value", o->name);
            return SP_ERR_CONFIG;
        }
        if ((rc = apply(c, o, value, err, errlen)))
            return rc;
    }
    return i;
}

static void dashed(const char *name, char *out, size_t cap)
{
    size_t i;
    for (i = 0; name[i] && i + 1 < cap; i++)
        out[i] = name[i] == '_' ? '-' : name[i];
    out[i] = '\0';
}

void conf_print_help(FILE *f)
{
    char d[64];

    fprintf(f, "  --config FILE          read options from FILE (name = value lines)\n");
    for (size_t i = 0; i < NOPTS; i++) {
        const struct opt *o = &opts[i];
        dashed(o->name, d, sizeof(d));
        fprintf(f, "  --%-20s %s (default: %s)\n", d, o->help, *o->def ? o->def : "\"\"");
    }
}

void conf_print_example(FILE *f)
{
    fprintf(f, "# sealpipe configuration. Use with: sealpipe run --config FILE\n"
               "# Every option is shown with its default; command-line flags\n"
               "# (--name value) override this file.\n"
               "#\n"
               "# A line whose first non-blank character is '#' is a comment. A value is\n"
               "# everything after '=' without the blanks around it; '#' and quotes in\n"
               "# it are part of it (topic filters, passwords), so a comment never\n"
               "# follows a value on the same line.\n");
    for (size_t i = 0; i < NOPTS; i++) {
        const struct opt *o = &opts[i];
        fprintf(f, "\n# %s", o->help);
        if (o->type == OPT_INT)
            fprintf(f, " [%ld..%ld]", o->min, o->max);
        else if (o->type == OPT_ENUM)
            fprintf(f, " [%s]", o->choices);
        fprintf(f, "\n%s = %s\n", o->name, o->def);
    }
}
