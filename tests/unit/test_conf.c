/* test_conf.c - the option table: defaults, file, command line, errors. */
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
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
}

static void test_file(void)
{
    struct conf c;
    char err[256], path[] = "/tmp/sp_conf_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");

    fputs("# comment\nport = 3883   # trailing\n\nanalyses_dir = /srv/a\n", f);
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

static void test_example_parses(void)
{
    struct conf c;
    char err[256], path[] = "/tmp/sp_conf_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");

    conf_print_example(f);
    fclose(f);
    conf_defaults(&c);
    CHECK_EQ_INT(conf_load_file(&c, path, err, sizeof(err)), 0);
    CHECK_EQ_INT(c.port, 1883);
    unlink(path);
}

int main(void)
{
    RUN(test_defaults_and_args);
    RUN(test_errors);
    RUN(test_file);
    RUN(test_example_parses);
    return check_done();
}
