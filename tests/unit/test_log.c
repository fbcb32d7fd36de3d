/* test_log.c - the log writer: one line per call, whatever the fields hold. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "base/log.h"

/* Runs one LOG_* call with stderr redirected; returns what it wrote. */
static char out[8192];
#define CAPTURE(call)                                                                              \
    do {                                                                                           \
        FILE *tmp_ = tmpfile();                                                                    \
        int saved_ = dup(2);                                                                       \
        fflush(stderr);                                                                            \
        dup2(fileno(tmp_), 2);                                                                     \
        call;                                                                                      \
        fflush(stderr);                                                                            \
        dup2(saved_, 2);                                                                           \
        close(saved_);                                                                             \
        rewind(tmp_);                                                                              \
        size_t n_ = fread(out, 1, sizeof(out) - 1, tmp_);                                          \
        out[n_] = '\0';                                                                            \
        fclose(tmp_);                                                                              \
    } while (0)

static int count_char(const char *s, char c)
{
    int n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

/* The text after "LEVEL ", without the newline. */
static const char *body(void)
{
    static char b[8192];
    const char *p = strchr(out, ' ');
    snprintf(b, sizeof(b), "%s", p ? p + 1 : "");
    char *nl = strchr(b, '\n');
    if (nl)
        *nl = '\0';
    return b;
}

static void test_plain(void)
{
    CAPTURE(LOG_INFO("batch committed messages=%d", 12));
    CHECK_EQ_INT(strlen(out) > 24, 1);
    CHECK(out[4] == '-' && out[10] == 'T' && out[23] == 'Z');
    CHECK_EQ_STR(body(), "INFO batch committed messages=12");
    CHECK_EQ_INT(count_char(out, '\n'), 1);
}

static void test_newline_in_field(void)
{
    const char *topic = "x\n2030-01-01T00:00:00.000Z ERROR forged";

    CAPTURE(LOG_WARN("publish failed topic=%s", topic));
    CHECK_EQ_INT(count_char(out, '\n'), 1);
    CHECK_EQ_STR(body(), "WARN publish failed topic=x\\n2030-01-01T00:00:00.000Z ERROR forged");
}

static void test_control_bytes(void)
{
    CAPTURE(LOG_ERROR("a=%s", "1\r2\t3\0334\1775\x01"));
    CHECK_EQ_STR(body(), "ERROR a=1\\r2\\t3\\x1b4\\x7f5\\x01");
    /* C1 controls in UTF-8 (NEL, CSI); other UTF-8 and '\' pass. */
    CAPTURE(LOG_INFO("a=%s", "\xc2\x85|\xc2\x9b|\xc2\xa0|\xc3\xa9|\\n|\xe2\x82\xac"));
    CHECK_EQ_STR(body(), "INFO a=\\u0085|\\u009b|\xc2\xa0|\xc3\xa9|\\n|\xe2\x82\xac");
    CHECK_EQ_INT(count_char(out, '\n'), 1);
    /* A lone 0xc2 at the end stays a byte (it is not a control). */
    CAPTURE(LOG_INFO("a=%s", "\xc2"));
    CHECK_EQ_STR(body(), "INFO a=\xc2");
}

static void test_long_lines(void)
{
    static char big[5000];

    /* Every byte escapes to 2: the line is cut between escapes, marked. */
    memset(big, '\n', sizeof(big) - 1);
    CAPTURE(LOG_INFO("x=%s", big));
    size_t n = strlen(out);
    CHECK(n <= 2048);
    CHECK_EQ_INT(count_char(out, '\n'), 1);
    CHECK(n > 8 && strcmp(out + n - 4, "...\n") == 0);
    CHECK(out[n - 5] == 'n' && out[n - 6] == '\\');
    /* Plain text past the buffer is cut and marked too. */
    memset(big, 'a', sizeof(big) - 1);
    CAPTURE(LOG_INFO("x=%s", big));
    n = strlen(out);
    CHECK(n <= 2048 && n > 2000);
    CHECK(strcmp(out + n - 5, "a...\n") == 0);
    /* A line that just fits is not marked. */
    big[100] = '\0';
    CAPTURE(LOG_INFO("x=%s", big));
    CHECK(strstr(out, "...") == NULL);
}

static void test_level(void)
{
    int calls = 0;

    log_level = LOG_LEVEL_WARN;
    CAPTURE(LOG_INFO("x=%d", ++calls));
    CHECK_EQ_STR(out, "");
    CHECK_EQ_INT(calls, 0); /* arguments are not evaluated */
    log_level = LOG_LEVEL_INFO;
    CHECK_EQ_INT(log_level_parse("debug"), LOG_LEVEL_DEBUG);
    CHECK_EQ_INT(log_level_parse("Warning"), LOG_LEVEL_WARN);
    CHECK_EQ_INT(log_level_parse("loud"), -1);
}

int main(void)
{
    RUN(test_plain);
    RUN(test_newline_in_field);
    RUN(test_control_bytes);
    RUN(test_long_lines);
    RUN(test_level);
    return check_done();
}
