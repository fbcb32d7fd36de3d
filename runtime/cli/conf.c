/*
 * conf.c - the option table of `sealpipe run` (see conf.h).
 *
 * Each row names an option, its type, where it lives in struct conf, its
 * default, its bounds or choices, an optional validator and one line of
 * help (redis' config.c is the model). The config file, the command line
 * and the defaults all go through apply(), so `batch = 0` in a file and
 * `--batch 0` on the command line are refused by the same check with the
 * same words. Checks that involve two options run in conf_check(), once
 * everything is read. Adding an option means adding one row here and one
 * field in struct conf; parsing, --help and the example config follow.
 */
#include "conf.h"
#include "base/errors.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "sp_cmdline.h"
#include "sealpipe.h"
#include "base/sp_limits.h"
#include "storage/retention.h"

enum opt_type { OPT_STR, OPT_INT, OPT_ENUM };

/* A further check of a value that passed its type's; why gets the reason. */
typedef int (*opt_valid_fn)(const char *value, char *why, size_t whylen);

struct opt {
    const char *name;
    enum opt_type type;
    size_t offset;
    size_t size; /* of the char array for OPT_STR / OPT_ENUM */
    const char *def;
    long min, max;       /* OPT_INT */
    const char *choices; /* OPT_ENUM: '|'-separated */
    opt_valid_fn valid;  /* NULL: the type's checks only */
    const char *help;
};

#define FIELD(f) offsetof(struct conf, f), sizeof(((struct conf *)0)->f)
/* One row of each type. */
/* clang-format off */
#define STR(f, def, valid, help)    {#f, OPT_STR, FIELD(f), def, 0, 0, NULL, valid, help}
#define INT(f, def, min, max, help) {#f, OPT_INT, FIELD(f), def, min, max, NULL, NULL, help}
#define ENUM(f, def, choices, help) {#f, OPT_ENUM, FIELD(f), def, 0, 0, choices, NULL, help}
/* clang-format on */

#define SP_STRINGIFY2(x) #x
#define SP_STRINGIFY(x)  SP_STRINGIFY2(x)

static int valid_broker(const char *value, char *why, size_t whylen);
static int valid_numeric_address(const char *value, char *why, size_t whylen);
static int valid_retention(const char *value, char *why, size_t whylen);

static const struct opt opts[] = {
    STR(data_dir, "sealpipe-data", NULL,
        "directory for sealpipe.db (registry and buckets), master.key and the broker's files"),
    STR(analyses_dir, "analyses", NULL, "folder of analysis scripts (*.lua)"),
    STR(broker, "", valid_broker,
        "external broker URL mqtt://host:port; empty starts the embedded mosquitto"),
    STR(broker_username, "", NULL, "username for the external broker"),
    STR(broker_password, "", NULL, "password for the external broker"),
    STR(bind, "127.0.0.1", NULL,
        "address the embedded broker and the TagoTiP HTTP, UDP and TCP listeners listen on"),
    INT(port, "1883", 1, 65535, "port the embedded broker listens on"),
    INT(tls_port, "8883", 1, 65535, "TLS port of the embedded broker, when it has a certificate"),
    STR(tls_cert, "", NULL,
        "server certificate (PEM) for the TLS listener; empty: <data_dir>/tls/server.crt if "
        "present"),
    STR(tls_key, "", NULL, "its private key (PEM); empty: <data_dir>/tls/server.key if present"),
    INT(http_port, "8080", 0, 65535,
        "TagoTiP HTTP binding (POST/GET/HEAD /v1/tip/SERIAL, POST /v1/tips); 0: off"),
    INT(https_port, "8443", 0, 65535,
        "the same over HTTPS, when there is a certificate (tls_cert); 0: off"),
    INT(udp_port, "5540", 0, 65535,
        "TagoTiP raw binding over UDP (one frame per datagram); 0: off"),
    INT(tcp_port, "5540", 0, 65535,
        "TagoTiP raw binding over TCP (frames end with a newline); 0: off"),
    STR(broker_plugin, "", NULL,
        "sealpipe_auth.so for the embedded broker; empty: next to the sealpipe binary or in "
        "../lib/sealpipe/"),
    STR(device_publish, "#", NULL,
        "topic filters devices may publish to besides their $tip topics (space-separated, %s = "
        "serial)"),
    STR(device_subscribe, "#", NULL,
        "topic filters devices may subscribe to besides their ack topics"),
    ENUM(device_cross_profile, "off", "off|on",
         "off: a device receives only messages published by devices of its own profile (or by "
         "the daemon for it); on: one namespace for all profiles"),
    ENUM(journal, "on", "on|off",
         "on: the embedded broker writes every device publish to <data_dir>/journal/ before it "
         "acknowledges it, and the daemon reads them from there, so a broker crash loses "
         "nothing; off: the daemon subscribes (the broker's memory holds the backlog). Not used "
         "with --broker"),
    INT(journal_sync_ms, "100", 0, 60000,
        "how often the journal is flushed to disk: a power loss costs at most the device "
        "publishes of the last this many ms; 0: flushed before each acknowledgement"),
    INT(journal_min_free_mb, "256", 0, 1048576,
        "the broker refuses device publishes (no PUBACK, so devices send them again) while the "
        "journal's disk has less free space than this many MiB plus the journal's own size (room "
        "for the daemon to store it)"),
    STR(mosquitto, "/usr/sbin/mosquitto", NULL, "mosquitto binary for the embedded broker"),
    STR(client_id, "sealpipe", NULL, "MQTT client id of the daemon (its persistent session)"),
    ENUM(log_level, "info", "error|warn|info|debug", "log verbosity"),
    INT(batch, SP_STRINGIFY(SP_LIMIT_BATCH), 1, SP_LIMIT_BATCH_MAX,
        "most messages committed in one transaction (and MQTT receive maximum)"),
    INT(commit_linger_ms, "5", 0, 100,
        "how long a small batch waits for more messages before it is committed: fewer, larger "
        "commits under a steady load, at most this much more latency; 0: none"),
    ENUM(sync, "full", "full|normal",
         "full: commits survive power loss; normal: survive a crash of the daemon only"),
    INT(key_grace, "86400", 0, 315360000, "seconds a rotated encryption key still opens envelopes"),
    INT(stats_interval, "60", 1, 86400,
        "seconds between log lines with message and dead-letter counters"),
    INT(lua_instructions, "10000000", 1000, 2000000000,
        "Lua VM instructions an analysis may use per message"),
    INT(lua_memory_mb, "32", 1, 4096, "memory per analysis Lua state, in MiB"),
    INT(lua_timeout_ms, "1000", 10, 600000,
        "wall-clock time an analysis may take per message (the worker is killed past it)"),
    INT(workers, "2", 1, 16,
        "Lua worker processes; each analysis runs in one of them, so analyses on different "
        "workers use different cores"),
    INT(lua_error_budget, "10", 0, 1000000,
        "failed analysis runs per device and analysis per minute before that device's messages "
        "skip the analysis for the rest of the minute (0: no limit)"),
    INT(trigger_queue_max, "10000", 10, 10000000,
        "runs of one analysis that run_analysis() calls may leave waiting; a call past it fails "
        "its caller (limit), so a chain that fans out cannot fill the disk or hold up the ticks, "
        "events and conditions of other analyses"),
    INT(lua_records, SP_STRINGIFY(SP_LIMIT_RECORDS), 1, SP_LIMIT_RECORDS,
        "records one message's analysis may return and insert() together"),
    INT(lua_publishes, SP_STRINGIFY(SP_LIMIT_PUBLISHES), 0, SP_LIMIT_PUBLISHES,
        "publish() calls per message"),
    INT(lua_script_kb, "64", 1, 64, "largest analysis script, in KiB"),
    INT(lua_publish_kb, "256", 1, 256, "largest payload one publish() may send, in KiB"),
    INT(metrics_port, "9464", 0, 65535,
        "Prometheus metrics endpoint (GET /metrics; sealpipe stats reads it); 0: off"),
    STR(metrics_bind, "127.0.0.1", valid_numeric_address,
        "numeric address of the metrics endpoint; it has no authentication, so other than "
        "loopback only on a trusted network"),
    STR(retention, "forever", valid_retention,
        "how long data and dead letters are kept: e.g. 90d, 12h, 30m (units s m h d w), or "
        "forever; rows of data older than this by their record time, and dead letters by when "
        "they were received, are deleted while the daemon runs (sealpipe device set --retention "
        "overrides it per device)"),
    INT(webhook_queue_max, "100000", 1, 100000000,
        "webhook() requests the outbox may hold (waiting or being retried); a call past it is a "
        "webhook_failed dead letter at once, and the calling message's records are still stored"),
    INT(webhook_attempts, "10", 1, 100,
        "attempts of a webhook request that gets no answer, a timeout, 408, 425, 429 or 5xx "
        "before it becomes a webhook_failed dead letter"),
    INT(webhook_timeout_ms, "10000", 100, 600000,
        "time one webhook request may take, connecting included (connecting: at most 5000)"),
    INT(webhook_backoff_ms, "1000", 10, 600000,
        "delay before a webhook request's first retry, doubled at each one up to 10 minutes, "
        "+/- 20 %"),
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

/* ------------------------------------------------------------------------ */
/* Validators                                                               */
/* ------------------------------------------------------------------------ */

int conf_broker_address(const char *url, char *host, size_t cap, int *port)
{
    const char *p = url;

    if (strncmp(p, "mqtt://", 7) == 0)
        p += 7;
    const char *colon = strrchr(p, ':');
    size_t n = colon ? (size_t)(colon - p) : strlen(p);
    if (n == 0 || n >= cap)
        return SP_ERR_CONFIG;
    int v = 1883;
    if (colon) {
        char *end;
        errno = 0;
        long l = strtol(colon + 1, &end, 10);
        if (errno || *end || l < 1 || l > 65535)
            return SP_ERR_CONFIG;
        v = (int)l;
    }
    memcpy(host, p, n);
    host[n] = '\0';
    *port = v;
    return SP_OK;
}

static int valid_broker(const char *value, char *why, size_t whylen)
{
    char host[CONF_HOST_MAX];
    int port;

    if (!*value || conf_broker_address(value, host, sizeof host, &port) == SP_OK)
        return SP_OK;
    snprintf(why, whylen, "'%s': expected mqtt://host:port", value);
    return SP_ERR_CONFIG;
}

static int valid_numeric_address(const char *value, char *why, size_t whylen)
{
    unsigned char a[sizeof(struct in6_addr)];

    if (inet_pton(AF_INET, value, a) == 1 || inet_pton(AF_INET6, value, a) == 1)
        return SP_OK;
    snprintf(why, whylen, "'%s' is not a numeric IPv4 or IPv6 address", value);
    return SP_ERR_CONFIG;
}

static int valid_retention(const char *value, char *why, size_t whylen)
{
    int64_t ms;

    if (retention_parse(value, &ms) == SP_OK)
        return SP_OK;
    snprintf(why, whylen,
             "'%s' is not a duration: a whole number and a unit, s m h d or w (e.g. 90d, 12h), "
             "or forever",
             value);
    return SP_ERR_CONFIG;
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

/* Checks a string value; why gets the reason (without the option's name). */
static int check_string(const struct opt *o, const char *value, char *why, size_t whylen)
{
    if (o->type == OPT_ENUM && !choice_ok(o->choices, value)) {
        snprintf(why, whylen, "'%s' is not one of %s", value, o->choices);
        return SP_ERR_CONFIG;
    }
    /* Values end up in generated files (the broker's config), one per
     * line: a newline in one would add a line of its own. */
    for (const char *p = value; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            snprintf(why, whylen, "control character 0x%02x in the value",
                     (unsigned)(unsigned char)*p);
            return SP_ERR_CONFIG;
        }
    if (strlen(value) >= o->size) {
        snprintf(why, whylen, "value longer than %zu bytes", o->size - 1);
        return SP_ERR_CONFIG;
    }
    return o->valid ? o->valid(value, why, whylen) : SP_OK;
}

static int check_int(const struct opt *o, const char *value, int *out, char *why, size_t whylen)
{
    char *end;

    errno = 0;
    long v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < o->min || v > o->max) {
        snprintf(why, whylen, "'%s' is not an integer in [%ld, %ld]", value, o->min, o->max);
        return SP_ERR_CONFIG;
    }
    *out = (int)v;
    return SP_OK;
}

/* The one way a value reaches struct conf: from a default, a file or argv. */
static int apply(struct conf *c, const struct opt *o, const char *value, char *err, size_t errlen)
{
    char *field = (char *)c + o->offset, why[CONF_ERR_MAX / 2];
    int rc, v = 0;

    if (o->type == OPT_INT)
        rc = check_int(o, value, &v, why, sizeof why);
    else
        rc = check_string(o, value, why, sizeof why);
    if (rc) {
        snprintf(err, errlen, "%s: %s", o->name, why);
        return SP_ERR_CONFIG;
    }
    if (o->type == OPT_INT)
        *(int *)(void *)field = v;
    else
        memcpy(field, value, strlen(value) + 1);
    return SP_OK;
}

/* Checks between options, once all are read. */
static int check_tls_pair(const struct conf *c, char *err, size_t errlen)
{
    /* The TLS listener belongs to the embedded broker; with --broker the
     * two are not used. */
    if (!*c->broker && !*c->tls_cert != !*c->tls_key) {
        snprintf(err, errlen, "tls_cert and tls_key go together");
        return SP_ERR_CONFIG;
    }
    return SP_OK;
}

static int (*const cross_checks[])(const struct conf *c, char *err, size_t errlen) = {
    check_tls_pair,
};

int conf_check(const struct conf *c, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof cross_checks / sizeof cross_checks[0]; i++)
        if (cross_checks[i](c, err, errlen) != SP_OK)
            return SP_ERR_CONFIG;
    return SP_OK;
}

/* ------------------------------------------------------------------------ */
/* Options by name                                                          */
/* ------------------------------------------------------------------------ */

static const struct opt *find(const char *name)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (sp__cmdline_name_is(name, strlen(name), opts[i].name))
            return &opts[i];
    return NULL;
}

void conf_defaults(struct conf *c)
{
    char err[CONF_ERR_MAX];

    memset(c, 0, sizeof(*c));
    for (size_t i = 0; i < NOPTS; i++)
        if (apply(c, &opts[i], opts[i].def, err, sizeof(err)) != SP_OK)
            abort(); /* a bad default is a programmer error */
}

int conf_set(struct conf *c, const char *name, const char *value, char *err, size_t errlen)
{
    const struct opt *o = find(name);

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
    const struct opt *o = find(name);
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

/* ------------------------------------------------------------------------ */
/* The config file                                                          */
/* ------------------------------------------------------------------------ */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

/* Applies one trimmed, non-comment line; err gets the reason. */
static int load_line(struct conf *c, char *s, char *err, size_t errlen)
{
    char *eq = strchr(s, '=');

    if (!eq) {
        snprintf(err, errlen, "expected 'name = value'");
        return SP_ERR_CONFIG;
    }
    *eq = '\0';
    char *value = trim(eq + 1);
    if (conf_set(c, trim(s), value, err, errlen) == SP_OK)
        return SP_OK;
    /* Only whole lines are comments: '#' is a valid character in a topic
     * filter or a password, so a value is never cut at one. */
    if (strchr(value, '#')) {
        size_t n = strlen(err);
        snprintf(err + n, errlen - n, " (a comment must be on its own line)");
    }
    return SP_ERR_CONFIG;
}

int conf_load_file(struct conf *c, const char *path, char *err, size_t errlen)
{
    char line[1024], why[CONF_ERR_MAX];
    int lineno = 0, rc = SP_OK;
    FILE *f = fopen(path, "r");

    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return SP_ERR_IO;
    }
    while (rc == SP_OK && fgets(line, sizeof(line), f)) {
        int partial = !strchr(line, '\n') && !feof(f);
        char *s = trim(line);
        lineno++;
        if (partial) {
            snprintf(why, sizeof why, "line too long");
            rc = SP_ERR_CONFIG;
        } else if (*s && *s != '#') {
            rc = load_line(c, s, why, sizeof why);
        }
        if (rc)
            snprintf(err, errlen, "%s:%d: %s", path, lineno, why);
    }
    fclose(f);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The command line                                                         */
/* ------------------------------------------------------------------------ */

#define OPT_CONFIG NOPTS /* --config FILE, after the table's options */

/* The scanner's table: every option of the table, then --config. */
static void scan_table(struct sp__cmdline_opt t[NOPTS + 1])
{
    for (size_t i = 0; i < NOPTS; i++)
        t[i] = (struct sp__cmdline_opt){opts[i].name, 1};
    t[OPT_CONFIG] = (struct sp__cmdline_opt){"config", 1};
}

/*
 * One pass over argv: with files set, loads every --config FILE; without,
 * applies every other option. Returns the index of the first argument, or
 * a negative error.
 */
static int scan_args(struct conf *c, int argc, char **argv, int files, char *err, size_t errlen)
{
    struct sp__cmdline_opt t[NOPTS + 1];
    struct sp__cmdline cl;
    struct sp__cmdline_item it;
    int rc;

    scan_table(t);
    sp__cmdline_init(&cl, argc, argv, t, NOPTS + 1);
    for (;;) {
        if ((rc = sp__cmdline_next(&cl, &it, err, errlen)) != SP_OK)
            return SP_ERR_CONFIG; /* the scanner's SP_ERR_INVAL, as conf.h says */
        if (it.kind != SP__CMDLINE_OPTION)
            return it.index;
        if (files && it.opt == OPT_CONFIG)
            rc = conf_load_file(c, it.value, err, errlen);
        else if (!files && it.opt != OPT_CONFIG)
            rc = apply(c, &opts[it.opt], it.value, err, errlen);
        if (rc)
            return rc;
    }
}

int conf_parse_args(struct conf *c, int argc, char **argv, char *err, size_t errlen)
{
    /* The config files first, so the command line overrides them. */
    int rc = scan_args(c, argc, argv, 1, err, errlen);

    return rc < 0 ? rc : scan_args(c, argc, argv, 0, err, errlen);
}

/* ------------------------------------------------------------------------ */
/* --help and the example config                                            */
/* ------------------------------------------------------------------------ */

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
