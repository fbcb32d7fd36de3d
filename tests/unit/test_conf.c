/* test_conf.c - the option table: defaults, file, command line, errors. */
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "errors.h"
#include "conf.h"
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

int main(void)
{
    RUN(test_defaults_and_args);
    RUN(test_errors);
    RUN(test_file);
    RUN(test_example_parses);
    RUN(test_shipped_example);
    RUN(test_hash_in_values);
    return check_done();
}
