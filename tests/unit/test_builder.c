/*
 * test_builder.c - the TagoTiP body builder (sp_tip_build_*, TagoTiP.md §6):
 * scripted step sequences, the room it keeps to close a body, a random walk
 * of calls into random capacities, values that must read back the same, and
 * the metadata limit. Whatever a call does, a refused call leaves the buffer
 * as it was and a body that ends parses with sp_tip_parse_body.
 */
#include "check.h"
#include "sealpipe.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct sp_tip_body body, rebuilt_body;

/*
 * Runs builder steps separated by ", ": "bloc LAT LNG [ALT]", "bgroup G",
 * "btime T", "bmeta K V", "num NAME V [UNIT]", "str NAME V [UNIT]",
 * "bool NAME 0|1", "loc NAME LAT LNG [ALT]", "unit U", "vloc LAT LNG [ALT]",
 * "time T", "group G", "meta K V",
 * "drop", "end". A last sp_tip_build_end gives "ok:<body>" or
 * "err:<SP_ERR name>". After every step, checks that a call that failed, or
 * came after a failure, left the buffer as it was; a body that ends parses.
 */
static const char *build_steps(const char *steps, size_t cap)
{
    static char buf[SP_MAX_FRAME + 1], before[SP_MAX_FRAME + 1], result[SP_MAX_FRAME + 16];
    char copy[1024], *save = NULL, *step;
    struct sp_tip_builder b;
    size_t len = 0;
    int rc, failed;

    snprintf(copy, sizeof copy, "%s", steps);
    sp_tip_build_init(&b, buf, cap);
    for (step = strtok_r(copy, ",", &save); step; step = strtok_r(NULL, ",", &save)) {
        char op[16] = "", a1[128] = "", a2[128] = "", a3[128] = "", a4[128] = "";
        size_t before_len = b.len;
        int failed_before = b.err != 0;

        memcpy(before, buf, b.len);
        if (sscanf(step, " %15s %127s %127s %127s %127s", op, a1, a2, a3, a4) < 1)
            continue;
        if (strcmp(op, "bloc") == 0)
            sp_tip_body_location(&b, strtod(a1, NULL), strtod(a2, NULL), a3[0] != '\0',
                                 strtod(a3, NULL));
        else if (strcmp(op, "vloc") == 0)
            sp_tip_var_location(&b, strtod(a1, NULL), strtod(a2, NULL), a3[0] != '\0',
                                strtod(a3, NULL));
        else if (strcmp(op, "bgroup") == 0)
            sp_tip_body_group(&b, a1);
        else if (strcmp(op, "btime") == 0)
            sp_tip_body_time(&b, strtoll(a1, NULL, 10));
        else if (strcmp(op, "bmeta") == 0)
            sp_tip_body_meta(&b, a1, a2);
        else if (strcmp(op, "num") == 0)
            sp_tip_add_number(&b, a1, strtod(a2, NULL), a3);
        else if (strcmp(op, "str") == 0)
            sp_tip_add_string(&b, a1, a2, a3);
        else if (strcmp(op, "bool") == 0)
            sp_tip_add_bool(&b, a1, atoi(a2));
        else if (strcmp(op, "loc") == 0)
            sp_tip_add_location(&b, a1, strtod(a2, NULL), strtod(a3, NULL), a4[0] != '\0',
                                strtod(a4, NULL));
        else if (strcmp(op, "unit") == 0)
            sp_tip_var_unit(&b, a1);
        else if (strcmp(op, "time") == 0)
            sp_tip_var_time(&b, strtoll(a1, NULL, 10));
        else if (strcmp(op, "group") == 0)
            sp_tip_var_group(&b, a1);
        else if (strcmp(op, "meta") == 0)
            sp_tip_var_meta(&b, a1, a2);
        else if (strcmp(op, "drop") == 0)
            sp_tip_build_drop_last(&b);
        else if (strcmp(op, "end") == 0)
            rc = sp_tip_build_end(&b, &len); /* the final end below tells */
        else
            CHECK(!"unknown builder step");
        if (strcmp(op, "drop") != 0 && strcmp(op, "end") != 0 && (b.err || failed_before)) {
            CHECK_EQ_INT(b.len, before_len);
            CHECK(memcmp(before, buf, before_len) == 0);
        }
        CHECK(b.len < cap);
    }
    failed = b.err != 0 || b.nvars == 0;
    rc = sp_tip_build_end(&b, &len);
    /* whatever was accepted can be closed: the room for "}]" was kept */
    if (!failed)
        CHECK_EQ_INT(rc, 0);
    if (rc != 0) {
        snprintf(result, sizeof result, "err:%s", sp_errname(rc));
        return result;
    }
    CHECK_EQ_INT(len, (long long)strlen(buf));
    CHECK(len < cap && len <= SP_MAX_FRAME);
    CHECK_EQ_INT(sp_tip_parse_body(buf, len, &rebuilt_body), 0);
    CHECK_EQ_INT(rebuilt_body.nvars, (long long)b.nvars);
    snprintf(result, sizeof result, "ok:%s", buf);
    return result;
}

/*
 * Scripted step sequences and what each must give. Long because it is a
 * table of cases read top to bottom.
 */
static void test_builder_steps(void)
{
    static const struct {
        const char *steps, *expect;
    } cases[] = {
        /* the header's example */
        {"btime 1694567890000, bgroup batch_42, bmeta firmware 2.1, num temp 21.5 C, "
         "time 1694567891000, group reading_1, meta source dht22",
         "ok:@1694567890000^batch_42{firmware=2.1}[temp:=21.5#C@1694567891000^reading_1"
         "{source=dht22}]"},
        {"bmeta a 1, bmeta b 2, num x 1, meta c 3, meta d 4, num y 2",
         "ok:{a=1,b=2}[x:=1{c=3,d=4};y:=2]"},
        {"num a 1, unit C, time 5, group g, meta k v, meta j w", "ok:[a:=1#C@5^g{k=v,j=w}]"},
        {"str s x, unit C", "ok:[s=x#C]"},
        {"bool b 1, unit C, time 0", "ok:[b?=true#C@0]"},
        {"loc p 1 2 3, time 5, group g, meta k v", "ok:[p@=1,2,3@5^g{k=v}]"},
        {"loc p -1.5 2.25", "ok:[p@=-1.5,2.25]"},
        /* suffixes belong to the last variable, and a new variable starts over */
        {"num a 1, num b 2, time 5", "ok:[a:=1;b:=2@5]"},
        {"num a 1, time 5, meta k v, num b 2, unit C, time 4", "ok:[a:=1@5{k=v};b:=2#C@4]"},
        /* body-level modifiers: in order (Revision C: @time before ^group), once,
         * before the first variable; Revision B's order is read, never written */
        {"bgroup g, btime 5, num a 1", "err:PAYLOAD"},
        {"btime 5, bgroup g, num a 1", "ok:@5^g[a:=1]"},
        {"bmeta k v, btime 5, num a 1", "err:PAYLOAD"},
        {"bmeta k v, bgroup g, num a 1", "err:PAYLOAD"},
        {"bgroup g, bgroup h, num a 1", "err:PAYLOAD"},
        {"btime 1, btime 2, num a 1", "err:PAYLOAD"},
        {"num a 1, bgroup g", "err:PAYLOAD"},
        {"num a 1, btime 1", "err:PAYLOAD"},
        {"num a 1, bmeta k v", "err:PAYLOAD"},
        {"btime 1, bgroup g", "err:PAYLOAD"}, /* no variable */
        /* variable suffixes: after a variable, in order, once */
        {"unit C, num a 1", "err:PAYLOAD"},
        {"time 5, num a 1", "err:PAYLOAD"},
        {"group g, num a 1", "err:PAYLOAD"},
        {"meta k v, num a 1", "err:PAYLOAD"},
        {"num a 1 C, unit F", "err:PAYLOAD"},
        {"num a 1, unit C, unit F", "err:PAYLOAD"},
        {"str a x C, unit F", "err:PAYLOAD"},
        {"num a 1, time 5, unit C", "err:PAYLOAD"},
        {"num a 1, group g, unit C", "err:PAYLOAD"},
        {"num a 1, group g, time 5", "err:PAYLOAD"},
        {"num a 1, meta k v, unit C", "err:PAYLOAD"},
        {"num a 1, meta k v, time 5", "err:PAYLOAD"},
        {"num a 1, meta k v, group g", "err:PAYLOAD"},
        {"num a 1, time 1, time 2", "err:PAYLOAD"},
        {"num a 1, group g, group h", "err:PAYLOAD"},
        /* no unit on a location (§6.3.2) */
        {"loc p 1 2, unit m", "err:PAYLOAD"},
        {"loc p 1 2 3, time 5, unit m", "err:PAYLOAD"},
        /* Revision D: the @= location suffix after #unit, before @time (§6.3),
         * on numbers, strings and booleans, never on an @= variable (§6.3.2) */
        {"num speed 10 km/h, vloc 39.74 -104.99 305", "ok:[speed:=10#km/h@=39.74,-104.99,305]"},
        {"num t 32.5 C, vloc 39.74 -104.99, time 1694567890000, group reading_001, "
         "meta source dht22, meta quality high",
         "ok:[t:=32.5#C@=39.74,-104.99@1694567890000^reading_001{source=dht22,quality=high}]"},
        {"str s x, vloc 1 2, time 5", "ok:[s=x@=1,2@5]"},
        {"bool b 0, unit u, vloc -0.5 0", "ok:[b?=false#u@=-0.5,0]"},
        {"bool b 1, vloc 1 2, unit u", "err:PAYLOAD"},
        {"num a 1, time 5, vloc 1 2", "err:PAYLOAD"},
        {"num a 1, group g, vloc 1 2", "err:PAYLOAD"},
        {"num a 1, meta k v, vloc 1 2", "err:PAYLOAD"},
        {"num a 1, vloc 1 2, vloc 3 4", "err:PAYLOAD"},
        {"loc p 1 2, vloc 3 4", "err:PAYLOAD"},
        {"loc p 1 2 3, vloc 3 4 5", "err:PAYLOAD"},
        {"vloc 1 2, num a 1", "err:PAYLOAD"},
        {"num a 1, vloc 1 inf", "err:PAYLOAD"},
        {"num a 1, vloc nan 2", "err:PAYLOAD"},
        {"num a 1, vloc 1 2 inf", "err:PAYLOAD"},
        {"num a 1, vloc 1 2, num b 2, vloc 3 4 5", "ok:[a:=1@=1,2;b:=2@=3,4,5]"},
        /* Revision D body level: @=location first, then @time ^group {meta} */
        {"bloc 39.74 -104.99, btime 1694567890000, bgroup batch_42, bmeta firmware 2.1, "
         "num temp 32 C, num humidity 65 %",
         "ok:@=39.74,-104.99@1694567890000^batch_42{firmware=2.1}[temp:=32#C;humidity:=65#%]"},
        {"bloc 39.74 -104.99, btime 1694567890000, num temp 32, vloc 39.75 -105, "
         "time 1694567891000, num humidity 65",
         "ok:@=39.74,-104.99@1694567890000[temp:=32@=39.75,-105@1694567891000;humidity:=65]"},
        {"bloc 1 2 3, loc p 4 5", "ok:@=1,2,3[p@=4,5]"},
        {"btime 5, bloc 1 2, num a 1", "err:PAYLOAD"},
        {"bgroup g, bloc 1 2, num a 1", "err:PAYLOAD"},
        {"bmeta k v, bloc 1 2, num a 1", "err:PAYLOAD"},
        {"bloc 1 2, bloc 3 4, num a 1", "err:PAYLOAD"},
        {"num a 1, bloc 1 2", "err:PAYLOAD"},
        {"bloc inf 2, num a 1", "err:PAYLOAD"},
        {"bloc 1 2, num a 1, drop, num b 2", "ok:@=1,2[b:=2]"},
        /* bad fields */
        {"num Bad 1", "err:PAYLOAD"},
        {"num a-b 1", "err:PAYLOAD"},
        {"num a 1 a;b", "err:PAYLOAD"},
        {"num a 1 a\\b", "err:PAYLOAD"},
        {"num a 1 abcdefghijklmnopqrstuvwxyz", "err:PAYLOAD"},
        {"num a 1 abcdefghijklmnopqrstuvwxy", "ok:[a:=1#abcdefghijklmnopqrstuvwxy]"},
        {"num a 1, unit a#b", "err:PAYLOAD"},
        {"num a 1, time -1", "err:PAYLOAD"},
        {"num a 1, group G", "err:PAYLOAD"},
        {"num a 1, meta K v", "err:PAYLOAD"},
        {"bgroup g-h, num a 1", "err:PAYLOAD"},
        {"btime -5, num a 1", "err:PAYLOAD"},
        {"bmeta k= v, num a 1", "err:PAYLOAD"},
        {"num a inf", "err:PAYLOAD"},
        {"num a nan", "err:PAYLOAD"},
        {"loc p 1 inf", "err:PAYLOAD"},
        {"loc p 1 2 nan", "err:PAYLOAD"},
        /* an error sticks: later calls do nothing */
        {"num a 1, num Bad 1, num c 3", "err:PAYLOAD"},
        {"num a 1, time -1, time 5", "err:PAYLOAD"},
        /* drop_last, then go on */
        {"num a 1, num b 2, drop, num c 3", "ok:[a:=1;c:=3]"},
        {"num a 1, num b 2 C, time 5, meta k v, drop, num c 3", "ok:[a:=1;c:=3]"},
        {"num a 1, meta k v, num b 2, drop", "ok:[a:=1{k=v}]"},
        {"num a 1, meta k v, num b 2, meta j w, drop, num c 3", "ok:[a:=1{k=v};c:=3]"},
        {"num a 1, num b 2, num c 3, drop, drop, num d 4", "ok:[a:=1;d:=4]"},
        {"num a 1, num b 2, num c 3, drop, drop", "ok:[a:=1]"},
        {"num a 1, num b 2, drop, drop", "err:PAYLOAD"},
        {"num a 1, num b 2, drop, drop, drop, num c 3", "ok:[c:=3]"},
        {"bgroup g, bmeta k v, num a 1, drop, num b 2", "ok:^g{k=v}[b:=2]"},
        {"bgroup g, bmeta k v, num a 1, num b 2, drop, drop, num c 3", "ok:^g{k=v}[c:=3]"},
        {"str a x\\;y, str b z, drop", "ok:[a=x\\\\\\;y]"},
        {"drop, num a 1", "ok:[a:=1]"},
        /* after a drop the last variable takes no more suffixes */
        {"num a 1, num b 2, drop, time 5", "err:PAYLOAD"},
        {"num a 1, num b 2, drop, meta k v", "err:PAYLOAD"},
        /* drop clears an error; a failed add added nothing, so the drop takes the one before */
        {"num a 1, num b 2, time -1, drop, num c 3", "ok:[a:=1;c:=3]"},
        {"num a 1, num b 2, num Bad 3, drop, num c 3", "ok:[a:=1;c:=3]"},
        /* end: once it closed the block, only drop reopens it */
        {"num a 1, end", "ok:[a:=1]"},
        {"num a 1, end, end", "ok:[a:=1]"},
        {"num a 1, meta k v, end", "ok:[a:=1{k=v}]"},
        {"num a 1, end, num b 2", "err:PAYLOAD"},
        {"num a 1, end, time 5", "err:PAYLOAD"},
        {"num a 1, num b 2, end, drop", "ok:[a:=1]"},
        {"num a 1, num b 2, end, drop, num c 3", "ok:[a:=1;c:=3]"},
        {"end, num a 1", "err:PAYLOAD"}, /* an empty body is an error, and errors stick */
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *got = build_steps(cases[i].steps, SP_MAX_FRAME + 1);
        if (strcmp(got, cases[i].expect) == 0) {
            check_passed++;
        } else {
            check_failed++;
            fprintf(stderr, "builder: %s\n  expected %s\n  got      %s\n", cases[i].steps,
                    cases[i].expect, got);
        }
    }
}

/*
 * Every capacity: whatever the builder accepted, sp_tip_build_end can close,
 * so what fit is never lost to the closing "}" and "]".
 */
static void test_builder_room(void)
{
    static const char *const seqs[] = {
        "num a 1, meta k v",
        "num a 1, meta k v, meta j w",
        "bmeta k v, num a 1",
        "btime 5, bgroup g, bmeta k vv, bmeta j w, str s x;y, unit C, time 7, group h, meta m n",
        "num a 1, num b 2, meta k v, num c 3, meta j w",
        "loc p 1 2 3, meta k v",
        "bloc 1.5 -2 3, btime 5, num a 1 C, vloc -1 2.25 7, time 6, meta k v",
    };
    static char buf[SP_MAX_FRAME + 8];
    struct sp_tip_builder b;
    size_t len;

    for (size_t s = 0; s < sizeof seqs / sizeof seqs[0]; s++) {
        const char *full = build_steps(seqs[s], 200);
        CHECK(strncmp(full, "ok:", 3) == 0);
        for (size_t cap = 1; cap <= strlen(full) - 3 + 1; cap++) {
            const char *got = build_steps(seqs[s], cap);
            /* either it all fit, or a step failed for room */
            if (cap == strlen(full) - 3 + 1)
                CHECK_EQ_STR(got, full);
            else
                CHECK_EQ_STR(got, "err:BUFSIZE");
        }
    }

    /* the same at the frame limit: a metadata pair that fits can be closed */
    for (size_t fillen = SP_MAX_FRAME - 30; fillen <= SP_MAX_FRAME - 5; fillen++) {
        static char val[SP_MAX_FRAME];
        int rc;

        memset(val, 'x', fillen);
        val[fillen] = '\0';
        sp_tip_build_init(&b, buf, sizeof buf);
        sp_tip_add_string(&b, "s", val, NULL);
        sp_tip_var_meta(&b, "k", "v");
        sp_tip_var_meta(&b, "j", "w");
        if (b.err) {
            CHECK_EQ_INT(b.err, SP_ERR_TOOLARGE);
            continue;
        }
        rc = sp_tip_build_end(&b, &len);
        CHECK_EQ_INT(rc, 0);
        CHECK(len <= SP_MAX_FRAME);
        if (rc == 0)
            CHECK_EQ_INT(sp_tip_parse_body(buf, len, &rebuilt_body), 0);
    }
}

/* A small deterministic generator for the random walk below. */
static uint32_t rnd_state = 12345;

static uint32_t rnd(uint32_t n)
{
    rnd_state = rnd_state * 1103515245u + 12345u;
    return (rnd_state >> 8) % n;
}

/*
 * Random calls in random order into random capacities: whatever happens,
 * the buffer never changes on a refused call, and a body that ends parses
 * with as many variables as the builder counted.
 */
static void test_builder_random(void)
{
    static const char *const ops[] = {
        "bgroup g", "btime 5",     "bmeta k v",   "num a 1.5", "num b -2 C", "str s x;y",
        "bool t 1", "loc p 1 2",   "loc q 1 2 3", "unit U",    "time 9",     "group h",
        "meta m n", "meta m2 v|w", "drop",        "drop",      "end",        "num Bad 1",
        "bloc 1 2", "vloc 3 4",    "vloc 5 6 7",
    };
    char steps[1024];

    for (int iter = 0; iter < 3000; iter++) {
        size_t o = 0, nsteps = 1 + rnd(14), cap = 1 + rnd(120);
        for (size_t i = 0; i < nsteps; i++) {
            const char *op = ops[rnd(sizeof ops / sizeof ops[0])];
            o += (size_t)snprintf(steps + o, sizeof steps - o, "%s%s", i ? ", " : "", op);
        }
        (void)build_steps(steps, cap);
    }
}

/*
 * What the builder writes parses back to the same values. Long because it is
 * tables of values and the loops over them.
 */
static void test_builder_values(void)
{
    /* clang-format off */
    /* tiny, huge, subnormal, and those without a short decimal form */
    static const double nums[] = {
        0, -0.0, 1, -1, 0.1, -0.25, 1.0 / 3, 2.0 / 3, 1e-7, 123456789.125, 9007199254740993.0,
        1e20, 1e300, -1e-300, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
        -1.7976931348623157e308, 3.141592653589793, 0.30000000000000004, 100, 1234567.0e-3,
    };
    /* every character that needs escaping, alone and among others */
    static const char *const texts[] = {
        "a,b", "a|b", "a;b", "a[b]c", "{x}", "#tag", "@home", "^up", "back\\slash",
        "line\nbreak", "k=v=w", " lead", "trail ", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
        "\\", ",", "|[];,{}#@^\\\n", "!$%&()*+-./:<=>?_`~\"'", "x",
    };
    /* clang-format on */
    static char buf[SP_MAX_FRAME + 1], dec[SP_MAX_FRAME + 1];
    struct sp_tip_builder b;
    size_t len = 0, i;

    sp_tip_build_init(&b, buf, sizeof buf);
    for (i = 0; i < sizeof nums / sizeof nums[0]; i++)
        sp_tip_add_number(&b, "n", nums[i], NULL);
    for (i = 0; i < sizeof nums / sizeof nums[0]; i += 2)
        sp_tip_add_location(&b, "p", nums[i], nums[i + 1], (int)(i % 4 == 0), nums[i / 2]);
    CHECK_EQ_INT(sp_tip_build_end(&b, &len), 0);
    CHECK_EQ_INT(sp_tip_parse_body(buf, len, &body), 0);
    CHECK_EQ_INT(body.nvars, (long long)(sizeof nums / sizeof nums[0] * 3 / 2));
    for (i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        CHECK(body.vars[i].type == SP_TIP_NUMBER && body.vars[i].number == nums[i]);
        if (body.vars[i].number != nums[i])
            fprintf(stderr, "number %.17g came back as %.17g\n", nums[i], body.vars[i].number);
    }
    for (i = 0; i < sizeof nums / sizeof nums[0]; i += 2) {
        const struct sp_tip_var *v = &body.vars[sizeof nums / sizeof nums[0] + i / 2];
        CHECK(v->type == SP_TIP_LOCATION && v->lat == nums[i] && v->lng == nums[i + 1]);
        CHECK(v->has_alt == (int)(i % 4 == 0));
        CHECK(!v->has_alt || v->alt == nums[i / 2]);
    }
    /* plain decimal, no exponent: "-0" goes out as "0" */
    CHECK(strchr(buf, 'e') == NULL && strchr(buf, 'E') == NULL);
    CHECK(strncmp(buf, "[n:=0;n:=0;n:=1;", 16) == 0);

    /* strings and metadata values with every character that needs escaping */
    for (i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        struct sp_span k, v;
        size_t pos = 0;

        sp_tip_build_init(&b, buf, sizeof buf);
        sp_tip_body_meta(&b, "bk", texts[i]);
        sp_tip_add_string(&b, "s", texts[i], NULL);
        sp_tip_var_meta(&b, "vk", texts[i]);
        sp_tip_var_meta(&b, "after", "z");
        sp_tip_add_string(&b, "t", texts[i], "u");
        CHECK_EQ_INT(sp_tip_build_end(&b, &len), 0);
        CHECK_EQ_INT(sp_tip_parse_body(buf, len, &body), 0);
        CHECK_EQ_INT(body.nvars, 2);
        CHECK_EQ_INT(sp_tip_unescape(body.vars[0].value, dec, sizeof dec),
                     (long long)strlen(texts[i]));
        CHECK_EQ_STR(dec, texts[i]);
        CHECK_EQ_INT(sp_tip_unescape(body.vars[1].value, dec, sizeof dec),
                     (long long)strlen(texts[i]));
        CHECK_EQ_STR(dec, texts[i]);
        CHECK(body.vars[1].unit.n == 1 && body.vars[1].unit.p[0] == 'u');
        /* the variable's pairs, then the body's: every value intact */
        CHECK_EQ_INT(sp_tip_meta_each(&body, &body.vars[0], &pos, &k, &v), 1);
        CHECK(k.n == 2 && memcmp(k.p, "vk", 2) == 0);
        CHECK(sp_tip_unescape(v, dec, sizeof dec) >= 0 && strcmp(dec, texts[i]) == 0);
        CHECK_EQ_INT(sp_tip_meta_each(&body, &body.vars[0], &pos, &k, &v), 1);
        CHECK(k.n == 5 && v.n == 1 && v.p[0] == 'z');
        CHECK_EQ_INT(sp_tip_meta_each(&body, &body.vars[0], &pos, &k, &v), 1);
        CHECK(k.n == 2 && memcmp(k.p, "bk", 2) == 0);
        CHECK(sp_tip_unescape(v, dec, sizeof dec) >= 0 && strcmp(dec, texts[i]) == 0);
        CHECK_EQ_INT(sp_tip_meta_each(&body, &body.vars[0], &pos, &k, &v), 0);
    }

    /* values that cannot be written: control bytes, broken UTF-8, empty */
    static const char *const bad[] = {"", "a\tb", "a\rb", "\x7f", "\xc3", "\xc0\x80", "\x01"};
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sp_tip_build_init(&b, buf, sizeof buf);
        sp_tip_add_string(&b, "s", bad[i], NULL);
        CHECK_EQ_INT(sp_tip_build_end(&b, &len), SP_ERR_PAYLOAD);
        sp_tip_build_init(&b, buf, sizeof buf);
        sp_tip_add_bool(&b, "s", 0);
        sp_tip_var_meta(&b, "k", bad[i]);
        CHECK_EQ_INT(sp_tip_build_end(&b, &len), SP_ERR_PAYLOAD);
        sp_tip_build_init(&b, buf, sizeof buf);
        sp_tip_body_meta(&b, "k", bad[i]);
        CHECK_EQ_INT(b.err, SP_ERR_PAYLOAD);
    }

    /* timestamps and identifiers at their limits */
    {
        char name[SP_MAX_NAME + 2];
        memset(name, 'n', sizeof name - 1);
        name[SP_MAX_NAME] = '\0';
        sp_tip_build_init(&b, buf, sizeof buf);
        sp_tip_body_group(&b, name);
        sp_tip_body_meta(&b, name, "v");
        sp_tip_add_number(&b, name, 1, NULL);
        sp_tip_var_time(&b, INT64_MAX);
        sp_tip_var_group(&b, name);
        sp_tip_var_meta(&b, name, "w");
        CHECK_EQ_INT(sp_tip_build_end(&b, &len), 0);
        CHECK_EQ_INT(sp_tip_parse_body(buf, len, &body), 0);
        CHECK(body.vars[0].time_ms == INT64_MAX && body.vars[0].name.n == SP_MAX_NAME);
        name[SP_MAX_NAME] = 'n';
        name[SP_MAX_NAME + 1] = '\0';
        sp_tip_build_init(&b, buf, sizeof buf);
        sp_tip_add_number(&b, name, 1, NULL);
        CHECK_EQ_INT(b.err, SP_ERR_PAYLOAD);
        sp_tip_build_init(&b, buf, sizeof buf);
        sp_tip_body_group(&b, name);
        CHECK_EQ_INT(b.err, SP_ERR_PAYLOAD);
        sp_tip_build_init(&b, buf, sizeof buf);
        sp_tip_add_number(&b, "a", 1, NULL);
        sp_tip_var_meta(&b, name, "v");
        CHECK_EQ_INT(b.err, SP_ERR_PAYLOAD);
    }

    /* NULL arguments */
    sp_tip_build_init(&b, NULL, 10);
    CHECK_EQ_INT(sp_tip_build_end(&b, &len), SP_ERR_INVAL);
    sp_tip_build_init(&b, buf, 0);
    CHECK_EQ_INT(sp_tip_build_end(&b, &len), SP_ERR_INVAL);
    sp_tip_build_init(&b, buf, sizeof buf);
    sp_tip_add_string(&b, "s", NULL, NULL);
    CHECK_EQ_INT(sp_tip_build_end(&b, &len), SP_ERR_INVAL);
    sp_tip_build_init(&b, buf, sizeof buf);
    sp_tip_add_number(&b, NULL, 1, NULL);
    CHECK_EQ_INT(sp_tip_build_end(&b, &len), SP_ERR_INVAL);
    sp_tip_build_init(&b, buf, sizeof buf);
    sp_tip_add_number(&b, "a", 1, NULL);
    CHECK_EQ_INT(sp_tip_build_end(&b, NULL), SP_ERR_INVAL);
    CHECK_EQ_INT(sp_tip_build_end(NULL, &len), SP_ERR_INVAL);
    sp_tip_add_number(NULL, "a", 1, NULL);
    sp_tip_build_drop_last(NULL);
}

/* 32 metadata pairs a block, then SP_ERR_PAYLOAD with the buffer unchanged. */
static void test_builder_meta_limit(void)
{
    static char buf[4096], saved[4096];
    struct sp_tip_builder b;
    size_t len = 0, saved_len;

    for (int body_level = 0; body_level <= 1; body_level++) {
        sp_tip_build_init(&b, buf, sizeof buf);
        if (!body_level)
            sp_tip_add_number(&b, "a", 1, NULL);
        for (int i = 0; i < SP_MAX_META; i++) {
            char key[8];
            snprintf(key, sizeof key, "k%d", i);
            if (body_level)
                sp_tip_body_meta(&b, key, "v");
            else
                sp_tip_var_meta(&b, key, "v");
        }
        CHECK_EQ_INT(b.err, 0);
        saved_len = b.len;
        memcpy(saved, buf, b.len);
        if (body_level)
            sp_tip_body_meta(&b, "k32", "v");
        else
            sp_tip_var_meta(&b, "k32", "v");
        CHECK_EQ_INT(b.err, SP_ERR_PAYLOAD);
        CHECK_EQ_INT(b.len, (long long)saved_len);
        CHECK(memcmp(saved, buf, saved_len) == 0);
        CHECK_EQ_INT(sp_tip_build_end(&b, &len), SP_ERR_PAYLOAD);
        /* the next block has its own count */
        sp_tip_build_init(&b, buf, sizeof buf);
        for (int i = 0; i < SP_MAX_META; i++)
            sp_tip_body_meta(&b, "b", "v");
        sp_tip_add_number(&b, "a", 1, NULL);
        for (int i = 0; i < SP_MAX_META; i++)
            sp_tip_var_meta(&b, "v", "w");
        sp_tip_add_number(&b, "c", 1, NULL);
        for (int i = 0; i < SP_MAX_META; i++)
            sp_tip_var_meta(&b, "v", "w");
        CHECK_EQ_INT(sp_tip_build_end(&b, &len), 0);
        CHECK_EQ_INT(sp_tip_parse_body(buf, len, &body), 0);
    }
}

/*
 * Revision D locations read back the same: a suffix on every kind of value
 * (its own, not the body's), the body's inherited by the others, never by an
 * @= variable, whose value stays its own.
 */
static void test_builder_locations(void)
{
    static const double c[] = {0.1, -0.25, 1.0 / 3, -89.999999999, 179.99999999999997, 5e-324};
    static char buf[SP_MAX_FRAME + 1];
    struct sp_tip_builder b;
    size_t len = 0, i;

    sp_tip_build_init(&b, buf, sizeof buf);
    sp_tip_body_location(&b, 39.74, -104.99, 1, 1600.5);
    for (i = 0; i + 2 < sizeof c / sizeof c[0]; i++) {
        sp_tip_add_number(&b, "n", c[i], "u");
        sp_tip_var_location(&b, c[i], c[i + 1], (int)(i % 2), c[i + 2]);
        sp_tip_add_string(&b, "s", "x", NULL);
        sp_tip_var_location(&b, c[i + 1], c[i], 0, 0);
        sp_tip_var_time(&b, 5);
    }
    sp_tip_add_bool(&b, "inherits", 1);
    sp_tip_add_location(&b, "own", 1, 2, 0, 0);
    CHECK_EQ_INT(sp_tip_build_end(&b, &len), 0);
    CHECK_EQ_INT(sp_tip_parse_body(buf, len, &body), 0);
    CHECK(body.has_loc && body.lat == 39.74 && body.lng == -104.99);
    CHECK(body.has_alt && body.alt == 1600.5);
    for (i = 0; i + 2 < sizeof c / sizeof c[0]; i++) {
        const struct sp_tip_var *n = &body.vars[2 * i], *st = &body.vars[2 * i + 1];
        CHECK(n->type == SP_TIP_NUMBER && n->has_loc && n->lat == c[i] && n->lng == c[i + 1]);
        CHECK(n->has_alt == (int)(i % 2) && (!n->has_alt || n->alt == c[i + 2]));
        CHECK(n->unit.n == 1);
        CHECK(st->type == SP_TIP_STRING && st->has_loc && st->lat == c[i + 1]);
        CHECK(st->lng == c[i] && !st->has_alt && st->has_time && st->time_ms == 5);
    }
    CHECK(body.vars[body.nvars - 2].has_loc && body.vars[body.nvars - 2].lat == 39.74);
    CHECK(body.vars[body.nvars - 2].has_alt && body.vars[body.nvars - 2].alt == 1600.5);
    CHECK(body.vars[body.nvars - 1].type == SP_TIP_LOCATION);
    CHECK(body.vars[body.nvars - 1].lat == 1 && body.vars[body.nvars - 1].lng == 2);
    CHECK(!body.vars[body.nvars - 1].has_alt);
    CHECK(strncmp(buf, "@=39.74,-104.99,1600.5[n:=0.1#u@=0.1,-0.25;", 43) == 0);
}

int main(void)
{
    if (sp_init() != 0)
        return 1;
    RUN(test_builder_steps);
    RUN(test_builder_room);
    RUN(test_builder_random);
    RUN(test_builder_values);
    RUN(test_builder_locations);
    RUN(test_builder_meta_limit);
    return check_done();
}
