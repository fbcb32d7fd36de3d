/* test_when.c - conditions on stored data (base/when.c): the declaration's
 * rules, each refusal naming its field, and one value against a condition. */
#include "check.h"
#include "base/when.h"
#include "sealpipe.h"

#include <string.h>

static char err[256];

static int parse(const char *json, struct when *w)
{
    err[0] = '\0';
    return when_parse(json, w, err, sizeof err);
}

static void test_parse(void)
{
    struct when w;

    CHECK_EQ_INT(parse("{\"variable\":\"Temperature\",\"above\":30,\"hysteresis\":1,"
                       "\"for\":\"5m\"}",
                       &w),
                 0);
    CHECK_EQ_INT(w.n, 1);
    CHECK_EQ_STR(w.c[0].variable, "temperature");
    CHECK_EQ_INT(w.c[0].op, WHEN_ABOVE);
    CHECK(w.c[0].value.number == 30 && w.c[0].hysteresis == 1);
    CHECK_EQ_INT(w.c[0].for_ms, 300000);
    CHECK_EQ_INT(strlen(w.c[0].key), 16);
    CHECK_EQ_INT(
        parse("[{\"variable\":\"t\",\"below\":{\"param\":\"low\",\"default\":-5}},"
              "{\"variable\":\"door\",\"equals\":\"open\"},"
              "{\"variable\":\"on\",\"equals\":true},{\"variable\":\"m\",\"changes\":true}]",
              &w),
        0);
    CHECK_EQ_INT(w.n, 4);
    CHECK_EQ_STR(w.c[0].param, "low");
    CHECK(w.c[0].value.number == -5);
    CHECK_EQ_INT(w.c[1].value.type, 's');
    CHECK_EQ_INT(w.c[2].value.type, 'b');
    CHECK_EQ_INT(w.c[3].op, WHEN_CHANGES);
    /* An edited condition has another key; the same one the same key. */
    struct when a, b;
    CHECK_EQ_INT(parse("{\"variable\":\"t\",\"above\":1}", &a), 0);
    CHECK_EQ_INT(parse("{\"variable\":\"t\",\"above\":2}", &b), 0);
    CHECK(strcmp(a.c[0].key, b.c[0].key) != 0);
    CHECK_EQ_INT(parse("{\"variable\":\"t\",\"above\":1}", &b), 0);
    CHECK_EQ_STR(a.c[0].key, b.c[0].key);

    static const struct {
        const char *json, *why;
    } bad[] = {
        {"{}", "when[1].variable"},
        {"{\"variable\":\"t\"}", "needs one of above"},
        {"{\"variable\":\"t\",\"above\":1,\"below\":2}", "both above and below"},
        {"{\"variable\":\"t\",\"above\":\"x\"}", ".above must be"},
        {"{\"variable\":\"t\",\"above\":{\"param\":\"p\"}}", ".above must be"},
        {"{\"variable\":\"t\",\"changes\":false}", ".changes must be true"},
        {"{\"variable\":\"t\",\"equals\":[1]}", ".equals must be"},
        {"{\"variable\":\"t\",\"equals\":1,\"hysteresis\":1}", ".hysteresis"},
        {"{\"variable\":\"t\",\"above\":1,\"hysteresis\":-1}", ".hysteresis"},
        {"{\"variable\":\"t\",\"above\":1,\"for\":\"soon\"}", "[\"for\"]"},
        {"{\"variable\":\"t\",\"changes\":true,\"for\":\"1m\"}", "[\"for\"]"},
        {"{\"variable\":\"t\",\"above\":1,\"bogus\":1}", ".bogus is not a field"},
        {"[]", "list of 1 to 16"},
        {"[{\"variable\":\"t\",\"above\":1},{\"variable\":\"u\"}]", "when[2]"},
        {"42", "a condition or a list"},
        {"not json", "condition table or a list"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_EQ_INT(parse(bad[i].json, &w), SP_ERR_INVAL);
        CHECK(strstr(err, bad[i].why) != NULL);
        if (!strstr(err, bad[i].why))
            fprintf(stderr, "  %s: %s\n", bad[i].json, err);
    }
}

static void test_holds(void)
{
    struct when w;
    int rel;
    struct when_value n = {.type = 'n'}, s = {.type = 's'};

    CHECK_EQ_INT(parse("{\"variable\":\"t\",\"above\":30,\"hysteresis\":1}", &w), 0);
    n.number = 30.5;
    CHECK_EQ_INT(when_holds(&w.c[0], &n, 30, &rel), 1);
    CHECK_EQ_INT(rel, 0);
    n.number = 30;
    CHECK_EQ_INT(when_holds(&w.c[0], &n, 30, &rel), 0);
    CHECK_EQ_INT(rel, 0); /* not yet past the hysteresis */
    n.number = 29;
    CHECK_EQ_INT(when_holds(&w.c[0], &n, 30, &rel), 0);
    CHECK_EQ_INT(rel, 1);
    n.number = 45; /* the device's own threshold */
    CHECK_EQ_INT(when_holds(&w.c[0], &n, 50, &rel), 0);
    strcpy(s.text, "31");
    CHECK_EQ_INT(when_holds(&w.c[0], &s, 30, &rel), 0); /* a string is no number */
    CHECK_EQ_INT(rel, 0);
    CHECK_EQ_INT(parse("{\"variable\":\"t\",\"below\":10,\"hysteresis\":2}", &w), 0);
    n.number = 9;
    CHECK_EQ_INT(when_holds(&w.c[0], &n, 10, &rel), 1);
    n.number = 11;
    CHECK_EQ_INT(when_holds(&w.c[0], &n, 10, &rel), 0);
    CHECK_EQ_INT(rel, 0);
    n.number = 12;
    when_holds(&w.c[0], &n, 10, &rel);
    CHECK_EQ_INT(rel, 1);
    CHECK_EQ_INT(parse("{\"variable\":\"d\",\"equals\":\"open\"}", &w), 0);
    strcpy(s.text, "open");
    CHECK_EQ_INT(when_holds(&w.c[0], &s, 0, &rel), 1);
    strcpy(s.text, "opened");
    CHECK_EQ_INT(when_holds(&w.c[0], &s, 0, &rel), 0);
    CHECK_EQ_INT(rel, 1);
    CHECK_EQ_INT(parse("{\"variable\":\"d\",\"equals\":1}", &w), 0);
    n.number = 1;
    CHECK_EQ_INT(when_holds(&w.c[0], &n, 0, &rel), 1);
    strcpy(s.text, "1");
    CHECK_EQ_INT(when_holds(&w.c[0], &s, 0, &rel), 0); /* "1" is not 1 */
}

int main(void)
{
    RUN(test_parse);
    RUN(test_holds);
    return check_done();
}
