/* test_termtext.c - device text made safe for a terminal (base/termtext.c):
 * C0, DEL and C1 controls escaped or blanked, everything else kept. */
#include "check.h"
#include "base/termtext.h"

#include <stdio.h>
#include <string.h>

static void test_escape(void)
{
    char out[256];
    FILE *f = fmemopen(out, sizeof out, "w");
    const char s[] = "a\x1b[2J\x07\r\n\tb\x7f\xc2\x9b"
                     "c\xc2\xa0\xc3\xa9";

    termtext_write(f, s, sizeof s - 1, 0);
    fputc('|', f);
    termtext_write(f, "x\ny\tz\r", 6, TERMTEXT_KEEP_LINES);
    fputc('\0', f);
    fclose(f);
    /* NBSP (C2 A0) and é (C3 A9) are text; the C1 CSI (C2 9B) is not. */
    CHECK_EQ_STR(out, "a\\x1b[2J\\x07\\x0d\\x0a\\x09b\\x7f\\u009bc\xc2\xa0\xc3\xa9|x\ny\tz\\x0d");
    CHECK(termtext_unsafe(s, sizeof s - 1, 0));
    CHECK(!termtext_unsafe("plain \xc3\xa9", 8, 0));
    CHECK(!termtext_unsafe("a\nb", 3, TERMTEXT_KEEP_LINES));
    CHECK(termtext_unsafe("a\nb", 3, 0));
    /* A C2 at the very end is not read past. */
    CHECK(!termtext_unsafe("a\xc2", 2, 0));
}

static void test_blank(void)
{
    char s[] = "x\x1b]0;t\x07y\xc2\x9bz\xc3\xa9";

    termtext_blank(s, strlen(s));
    CHECK_EQ_STR(s, "x ]0;t y  z\xc3\xa9");
}

int main(void)
{
    RUN(test_escape);
    RUN(test_blank);
    return check_done();
}
