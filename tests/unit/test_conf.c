/* test_conf.c - the option table: defaults, file, command line, errors. */
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "base/errors.h"
#include "cli/conf.h"
#include "sealpipe.h"

static void test_defaults_and_args(void)
{
    struct conf c;
    char err[256];
    char *argv[] = {"--port", "2883", "--data-dir=/tmp/x", "--sync", "normal", "rest"};

    conf_defaults(&c);
    CHECK_EQ_INT(c.port, 1883);
    CHECK_EQ_STR(c.sync, "full");
    CHECK_EQ_INT(conf_parse_args(&c, 6, argv, err, sizeof(err)), 5);
    CHECK_EQ_INT(c.port, 2883);
    CHECK_EQ_STR(c.data_dir, "/tmp/x");
    CHECK_EQ_STR(c.sync, "normal");
}

static void test_errors(void)
{
    struct conf c;
    char err[256];
    char *bad_port[] = {"--port", "70000"};
    char *bad_enum[] = {"--sync", "sometimes"};
    char *unknown[] = {"--nope", "1"};
    char *missing[] = {"--port"};

    conf_defaults(&c);
    CHECK(conf_parse_args(&c, 2, bad_port, err, sizeof(err)) < 0);
    CHECK(strstr(err, "port") != NULL);
    CHECK(conf_parse_args(&c, 2, bad_enum, err, sizeof(err)) < 0);
    CHECK(strstr(err, "full|normal") != NULL);
    CHECK(conf_parse_args(&c, 2, unknown, err, sizeof(err)) < 0);
    CHECK(strstr(err, "--nope") != NULL);
    CHECK(conf_parse_args(&c, 1, missing, err, sizeof(err)) < 0);
    CHECK_EQ_INT(c.port, 1883);

    /* --config without a file: an error, not the index past argv. */
    char *no_file[] = {"--port", "2000", "--config", NULL};
    CHECK(conf_parse_args(&c, 3, no_file, err, sizeof(err)) < 0);
    CHECK(strstr(err, "--config") != NULL);
}

static void test_file(void)
{
    struct conf c;
    char err[256], path[] = "/tmp/sp_conf_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");

    fputs("# comment\nport = 3883\n\nanalyses_dir = /srv/a\n", f);
    fclose(f);
    conf_defaults(&c);
    char *argv[] = {"--config", path, "--port", "4883"};
    CHECK_EQ_INT(conf_parse_args(&c, 4, argv, err, sizeof(err)), 4);
    CHECK_EQ_INT(c.port, 4883); /* command line wins */
    CHECK_EQ_STR(c.analyses_dir, "/srv/a");

    f = fopen(path, "w");
    fputs("port = 1\nbogus line\n", f);
    fclose(f);
    CHECK_EQ_INT(conf_load_file(&c, path, err, sizeof(err)), SP_ERR_CONFIG);
    CHECK(strstr(err, ":2:") != NULL);
    unlink(path);
}

/* Writes text to a new temporary file; path receives its name. */
static void write_tmp(char path[32], const char *text)
{
    strcpy(path, "/tmp/sp_conf_XXXXXX");
    FILE *f = fdopen(mkstemp(path), "w");
    fputs(text, f);
    fclose(f);
}

/*
 * Loads the config file at path into a zeroed struct and compares every
 * option of the table (so a new option is covered without touching this
 * test) with the defaults; each option must also be written in the file, so
 * an option whose default is "" or 0 is not passed by the zeroed start.
 */
static void check_loads_as_defaults(const char *path)
{
    struct conf got, want;
    char err[256], g[1024], w[1024], text[16384], needle[80];
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;

    CHECK(f != NULL);
    if (f)
        fclose(f);
    text[n] = '\0';
    memset(&got, 0, sizeof(got));
    conf_defaults(&want);
    CHECK_EQ_INT(conf_load_file(&got, path, err, sizeof(err)), 0);
    CHECK(conf_option_count() > 20);
    for (size_t i = 0; i < conf_option_count(); i++) {
        const char *name = conf_option_name(i);
        CHECK_EQ_INT(conf_get(&got, name, g, sizeof(g)), 0);
        CHECK_EQ_INT(conf_get(&want, name, w, sizeof(w)), 0);
        if (strcmp(g, w) != 0)
            fprintf(stderr, "%s: option %s loads as \"%s\", its default is \"%s\"\n", path, name, g,
                    w);
        CHECK_EQ_STR(g, w);
        snprintf(needle, sizeof(needle), "\n%s = ", name);
        if (!strstr(text, needle))
            fprintf(stderr, "%s: option %s is missing\n", path, name);
        CHECK(strstr(text, needle) != NULL);
    }
    CHECK(conf_option_name(conf_option_count()) == NULL);
}

static void test_example_parses(void)
{
    char path[32];
    FILE *f;

    write_tmp(path, "");
    f = fopen(path, "w");
    conf_print_example(f);
    fclose(f);
    check_loads_as_defaults(path);
    unlink(path);
}

/* The file shipped in the repository, which users copy. */
static void test_shipped_example(void)
{
    check_loads_as_defaults(SP_SOURCE_DIR "/runtime/sealpipe.conf.example");
}

/* A comment is a whole line whose first non-blank is '#'; elsewhere '#' is
 * part of the value (a password, a topic filter). */
static void test_hash_in_values(void)
{
    struct conf c;
    char err[256], path[32];

    write_tmp(path, "# comment\n   # indented comment\n\t#\n"
                    "broker_password = se#cr et#\n"
                    "client_id = #\n"
                    "broker_username=#user\n");
    conf_defaults(&c);
    CHECK_EQ_INT(conf_load_file(&c, path, err, sizeof(err)), 0);
    CHECK_EQ_STR(c.broker_password, "se#cr et#");
    CHECK_EQ_STR(c.client_id, "#");
    CHECK_EQ_STR(c.broker_username, "#user");
    unlink(path);

    /* No inline comments: a number followed by one is an error that says why. */
    write_tmp(path, "port = 3883  # the usual\n");
    CHECK_EQ_INT(conf_load_file(&c, path, err, sizeof(err)), SP_ERR_CONFIG);
    CHECK(strstr(err, ":1:") != NULL);
    CHECK(strstr(err, "own line") != NULL);
    unlink(path);

    /* Values go into generated files line by line: no control characters. */
    CHECK_EQ_INT(conf_set(&c, "client_id", "a\nlistener 1", err, sizeof(err)), SP_ERR_CONFIG);
    CHECK(strstr(err, "control character") != NULL);
    CHECK_EQ_STR(c.client_id, "#");
}

/*
 * Each validator of the table, as conf.h documents it: a good value is
 * accepted and a bad one refused with "name: reason", the same words
 * whether it comes from conf_set, the command line or a config file (which
 * adds "file:line: ").
 */
struct value_case {
    const char *name, *value;
    const char *error; /* NULL: accepted */
};

static const struct value_case value_cases[] = {
    {"port", "1", NULL},
    {"port", "65535", NULL},
    {"port", "0", "port: '0' is not an integer in [1, 65535]"},
    {"port", "65536", "port: '65536' is not an integer in [1, 65535]"},
    {"port", "12x", "port: '12x' is not an integer in [1, 65535]"},
    {"port", "", "port: '' is not an integer in [1, 65535]"},
    {"key_grace", "0", NULL},
    {"key_grace", "-5", "key_grace: '-5' is not an integer in [0, 315360000]"},
    {"batch", "4096", NULL},
    {"batch", "0", "batch: '0' is not an integer in [1, 4096]"},
    {"lua_publishes", "0", NULL},
    {"sync", "normal", NULL},
    {"sync", "sometimes", "sync: 'sometimes' is not one of full|normal"},
    {"log_level", "debug", NULL},
    {"log_level", "loud", "log_level: 'loud' is not one of error|warn|info|debug"},
    {"device_cross_profile", "on", NULL},
    {"client_id", "sp#1", NULL},
    {"client_id", "a\tb", "client_id: control character 0x09 in the value"},
    {"client_id", "a\x7f", "client_id: control character 0x7f in the value"},
    {"broker", "", NULL},
    {"broker", "mqtt://broker.example:1884", NULL},
    {"broker", "mqtt://broker.example", NULL},
    {"broker", "10.0.0.1:1883", NULL},
    {"broker", "mqtt://", "broker: 'mqtt://': expected mqtt://host:port"},
    {"broker", "mqtt://h:0", "broker: 'mqtt://h:0': expected mqtt://host:port"},
    {"broker", "mqtt://h:65536", "broker: 'mqtt://h:65536': expected mqtt://host:port"},
    {"broker", "mqtt://h:x", "broker: 'mqtt://h:x': expected mqtt://host:port"},
    {"broker", ":1883", "broker: ':1883': expected mqtt://host:port"},
    {"retention", "forever", NULL},
    {"retention", "0", NULL},
    {"retention", "90d", NULL},
    {"retention", "12h", NULL},
    {"retention", "5200w", NULL},
    {"retention", "5x",
     "retention: '5x' is not a duration: a whole number and a unit, s m h d or w (e.g. 90d, "
     "12h), or forever"},
    {"retention", "1.5h",
     "retention: '1.5h' is not a duration: a whole number and a unit, s m h d or w (e.g. 90d, "
     "12h), or forever"},
    {"retention", "10",
     "retention: '10' is not a duration: a whole number and a unit, s m h d or w (e.g. 90d, "
     "12h), or forever"},
    {"retention", "-1d",
     "retention: '-1d' is not a duration: a whole number and a unit, s m h d or w (e.g. 90d, "
     "12h), or forever"},
};

/* The option set through the command line: --name value. */
static int set_by_argv(struct conf *c, const char *name, const char *value, char *err, size_t n)
{
    char flag[80];
    char *argv[] = {flag, (char *)value};

    snprintf(flag, sizeof flag, "--%s", name);
    int rc = conf_parse_args(c, 2, argv, err, n);
    return rc < 0 ? rc : SP_OK;
}

/* The option set through a config file: name = value. */
static int set_by_file(struct conf *c, const char *name, const char *value, char *err, size_t n)
{
    char path[32], text[600];

    snprintf(text, sizeof text, "%s = %s\n", name, value);
    write_tmp(path, text);
    int rc = conf_load_file(c, path, err, n);
    if (rc) {
        /* Compare the reason: drop "path:1: ". */
        char prefix[64];
        snprintf(prefix, sizeof prefix, "%s:1: ", path);
        CHECK(strncmp(err, prefix, strlen(prefix)) == 0);
        memmove(err, err + strlen(prefix), strlen(err + strlen(prefix)) + 1);
    }
    unlink(path);
    return rc;
}

static void test_validators(void)
{
    int (*const ways[])(struct conf *, const char *, const char *, char *,
                        size_t) = {conf_set, set_by_argv, set_by_file};

    for (size_t i = 0; i < sizeof value_cases / sizeof value_cases[0]; i++) {
        const struct value_case *vc = &value_cases[i];
        for (size_t w = 0; w < sizeof ways / sizeof ways[0]; w++) {
            struct conf c, before;
            char err[CONF_ERR_MAX] = "", got[600];
            conf_defaults(&c);
            before = c;
            int rc = ways[w](&c, vc->name, vc->value, err, sizeof err);
            if ((rc == SP_OK) != !vc->error || (vc->error && strcmp(err, vc->error) != 0))
                fprintf(stderr, "way %zu: %s = \"%s\": rc %d, \"%s\"\n", w, vc->name, vc->value, rc,
                        err);
            if (vc->error) {
                CHECK_EQ_INT(rc, SP_ERR_CONFIG);
                CHECK_EQ_STR(err, vc->error);
                CHECK(memcmp(&c, &before, sizeof c) == 0); /* nothing changed */
            } else {
                CHECK_EQ_INT(rc, SP_OK);
                CHECK_EQ_INT(conf_get(&c, vc->name, got, sizeof got), SP_OK);
                CHECK_EQ_STR(got, vc->value);
            }
        }
    }
}

/* A too-long value: the same refusal from the command line and a file. */
static void test_length_limit(void)
{
    struct conf c;
    char value[200], e1[CONF_ERR_MAX], e2[CONF_ERR_MAX];

    memset(value, 'a', sizeof value - 1);
    value[sizeof value - 1] = '\0';
    conf_defaults(&c);
    CHECK_EQ_INT(set_by_argv(&c, "client-id", value, e1, sizeof e1), SP_ERR_CONFIG);
    CHECK_EQ_INT(set_by_file(&c, "client_id", value, e2, sizeof e2), SP_ERR_CONFIG);
    CHECK_EQ_STR(e1, "client_id: value longer than 127 bytes");
    CHECK_EQ_STR(e2, e1);
}

/* The checks between options run by conf_check. */
static void test_cross_checks(void)
{
    struct conf c;
    char err[CONF_ERR_MAX];

    conf_defaults(&c);
    CHECK_EQ_INT(conf_check(&c, err, sizeof err), SP_OK);
    CHECK_EQ_INT(conf_set(&c, "tls_cert", "/etc/s.crt", err, sizeof err), SP_OK);
    CHECK_EQ_INT(conf_check(&c, err, sizeof err), SP_ERR_CONFIG);
    CHECK_EQ_STR(err, "tls_cert and tls_key go together");
    CHECK_EQ_INT(conf_set(&c, "tls_key", "/etc/s.key", err, sizeof err), SP_OK);
    CHECK_EQ_INT(conf_check(&c, err, sizeof err), SP_OK);

    /* With an external broker the TLS listener is not ours: no pairing. */
    conf_defaults(&c);
    CHECK_EQ_INT(conf_set(&c, "tls_key", "/etc/s.key", err, sizeof err), SP_OK);
    CHECK_EQ_INT(conf_check(&c, err, sizeof err), SP_ERR_CONFIG);
    CHECK_EQ_INT(conf_set(&c, "broker", "mqtt://b:1883", err, sizeof err), SP_OK);
    CHECK_EQ_INT(conf_check(&c, err, sizeof err), SP_OK);
}

static void test_broker_address(void)
{
    char host[CONF_HOST_MAX] = "unchanged", long_url[CONF_HOST_MAX + 16];
    int port = -1;

    CHECK_EQ_INT(conf_broker_address("mqtt://b.example:1884", host, sizeof host, &port), SP_OK);
    CHECK_EQ_STR(host, "b.example");
    CHECK_EQ_INT(port, 1884);
    CHECK_EQ_INT(conf_broker_address("b.example", host, sizeof host, &port), SP_OK);
    CHECK_EQ_INT(port, 1883);
    /* The last ':' separates the port. */
    CHECK_EQ_INT(conf_broker_address("mqtt://::1:2000", host, sizeof host, &port), SP_OK);
    CHECK_EQ_STR(host, "::1");
    CHECK_EQ_INT(port, 2000);
    /* Out-parameters are written only on success. */
    strcpy(host, "unchanged");
    port = -1;
    CHECK_EQ_INT(conf_broker_address("mqtt://b:0", host, sizeof host, &port), SP_ERR_CONFIG);
    CHECK_EQ_STR(host, "unchanged");
    CHECK_EQ_INT(port, -1);
    snprintf(long_url, sizeof long_url, "mqtt://%0*d", CONF_HOST_MAX, 0);
    CHECK_EQ_INT(conf_broker_address(long_url, host, sizeof host, &port), SP_ERR_CONFIG);
}

/* Every option of the table is settable as --name and --name_with_underscores. */
static void test_every_option_on_argv(void)
{
    for (size_t i = 0; i < conf_option_count(); i++) {
        struct conf c;
        char err[CONF_ERR_MAX], flag[700], dashed[80], value[600];
        const char *name = conf_option_name(i);
        conf_defaults(&c);
        CHECK_EQ_INT(conf_get(&c, name, value, sizeof value), SP_OK);
        snprintf(flag, sizeof flag, "--%s=%s", name, value);
        snprintf(dashed, sizeof dashed, "--%s", name);
        for (char *p = dashed; *p; p++)
            *p = *p == '_' ? '-' : *p;
        char *argv[] = {flag, dashed, value};
        CHECK_EQ_INT(conf_parse_args(&c, 3, argv, err, sizeof err), 3);
    }
}

int main(void)
{
    RUN(test_defaults_and_args);
    RUN(test_errors);
    RUN(test_file);
    RUN(test_example_parses);
    RUN(test_shipped_example);
    RUN(test_hash_in_values);
    RUN(test_validators);
    RUN(test_length_limit);
    RUN(test_cross_checks);
    RUN(test_broker_address);
    RUN(test_every_option_on_argv);
    return check_done();
}
