/* test_cmdline.c - the command-line scanner of sp_cmdline.h (sealpipe, sealpipe-device). */
#include "check.h"
#include "sp_cmdline.h"
#include "sealpipe.h"

static const struct sp__cmdline_opt opts[] = {
    {"data_dir", 1},
    {"json", 0},
    {"name", 1},
};

/* Scans argv and writes what was found as one line, e.g. "data_dir=x json @a". */
static int scan(int argc, char **argv, char *out, size_t cap, char *err, size_t errlen)
{
    struct sp__cmdline cl;
    struct sp__cmdline_item it;
    size_t len = 0;
    int rc;

    out[0] = '\0';
    sp__cmdline_init(&cl, argc, argv, opts, sizeof opts / sizeof opts[0]);
    while ((rc = sp__cmdline_next(&cl, &it, err, errlen)) == SP_OK && it.kind != SP__CMDLINE_END) {
        if (it.kind == SP__CMDLINE_ARG)
            len += (size_t)snprintf(out + len, cap - len, "%s@%s", len ? " " : "", it.value);
        else if (it.value)
            len += (size_t)snprintf(out + len, cap - len, "%s%s=%s", len ? " " : "",
                                    opts[it.opt].name, it.value);
        else
            len +=
                (size_t)snprintf(out + len, cap - len, "%s%s", len ? " " : "", opts[it.opt].name);
    }
    return rc;
}

static void test_forms(void)
{
    char out[256], err[256];
    char *argv[] = {"--data-dir", "d1", "--data_dir=d2", "a", "--json", "-x", "-", "--name", "-5"};

    CHECK_EQ_INT(scan(9, argv, out, sizeof out, err, sizeof err), SP_OK);
    CHECK_EQ_STR(out, "data_dir=d1 data_dir=d2 @a json @-x @- name=-5");
}

static void test_double_dash(void)
{
    char out[256], err[256];
    char *argv[] = {"--json", "--", "--json", "--", "--nope"};

    CHECK_EQ_INT(scan(5, argv, out, sizeof out, err, sizeof err), SP_OK);
    CHECK_EQ_STR(out, "json @--json @-- @--nope");
}

static void test_errors(void)
{
    char out[256], err[256];
    char *unknown[] = {"--nope=1"};
    char *abbrev[] = {"--data", "x"};
    char *flag_value[] = {"--json=yes"};
    char *missing[] = {"--name"};

    CHECK_EQ_INT(scan(1, unknown, out, sizeof out, err, sizeof err), SP_ERR_INVAL);
    CHECK_EQ_STR(err, "unknown option '--nope' (see --help)");
    CHECK_EQ_INT(scan(2, abbrev, out, sizeof out, err, sizeof err), SP_ERR_INVAL);
    CHECK_EQ_STR(err, "unknown option '--data' (see --help)");
    CHECK_EQ_INT(scan(1, flag_value, out, sizeof out, err, sizeof err), SP_ERR_INVAL);
    CHECK_EQ_STR(err, "option '--json' takes no value");
    CHECK_EQ_INT(scan(1, missing, out, sizeof out, err, sizeof err), SP_ERR_INVAL);
    CHECK_EQ_STR(err, "option '--name' needs a value");
    sp__cmdline_unexpected("x", err, sizeof err);
    CHECK_EQ_STR(err, "unexpected argument 'x' (see --help)");
}

static void test_indexes(void)
{
    struct sp__cmdline cl;
    struct sp__cmdline_item it;
    char err[256];
    char *argv[] = {"--name", "n", "pos", "--json"};

    sp__cmdline_init(&cl, 4, argv, opts, sizeof opts / sizeof opts[0]);
    CHECK_EQ_INT(sp__cmdline_next(&cl, &it, err, sizeof err), SP_OK);
    CHECK_EQ_INT(it.index, 0);
    CHECK_EQ_INT(sp__cmdline_next(&cl, &it, err, sizeof err), SP_OK);
    CHECK_EQ_INT(it.kind, SP__CMDLINE_ARG);
    CHECK_EQ_INT(it.index, 2);
    CHECK_EQ_INT(sp__cmdline_next(&cl, &it, err, sizeof err), SP_OK);
    CHECK_EQ_INT(it.index, 3);
    CHECK_EQ_INT(sp__cmdline_next(&cl, &it, err, sizeof err), SP_OK);
    CHECK_EQ_INT(it.kind, SP__CMDLINE_END);
    CHECK_EQ_INT(it.index, 4);
}

static void test_names_and_help(void)
{
    char *help[] = {"add", "x", "-h"};
    char *after[] = {"add", "--", "--help"};

    CHECK(sp__cmdline_name_is("data-dir", 8, "data_dir"));
    CHECK(sp__cmdline_name_is("data_dir", 8, "data_dir"));
    CHECK(!sp__cmdline_name_is("data", 4, "data_dir"));
    CHECK(!sp__cmdline_name_is("data_dirs", 9, "data_dir"));
    CHECK(sp__cmdline_wants_help(3, help));
    CHECK(!sp__cmdline_wants_help(3, after));
}

int main(void)
{
    RUN(test_forms);
    RUN(test_double_dash);
    RUN(test_errors);
    RUN(test_indexes);
    RUN(test_names_and_help);
    return check_done();
}
