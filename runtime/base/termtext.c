/*
 * termtext.c - device text made safe for a terminal (termtext.h).
 */
#include "termtext.h"

#include <string.h>

size_t termtext_escape(const char *s, size_t n, size_t i, int flags, char esc[TERMTEXT_ESC_MAX])
{
    const unsigned char *u = (const unsigned char *)s;

    if (u[i] < 0x20 || u[i] == 0x7F) {
        if ((flags & TERMTEXT_KEEP_LINES) && (u[i] == '\n' || u[i] == '\t'))
            return 0;
        snprintf(esc, TERMTEXT_ESC_MAX, "\\x%02x", u[i]);
        return 1;
    }
    if (u[i] == 0xC2 && i + 1 < n && u[i + 1] >= 0x80 && u[i + 1] < 0xA0) {
        snprintf(esc, TERMTEXT_ESC_MAX, "\\u%04x", u[i + 1]);
        return 2;
    }
    return 0;
}

void termtext_write(FILE *f, const char *s, size_t n, int flags)
{
    char esc[TERMTEXT_ESC_MAX];

    for (size_t i = 0; i < n; i++) {
        size_t k = termtext_escape(s, n, i, flags, esc);
        if (k) {
            fputs(esc, f);
            i += k - 1;
        } else {
            putc(s[i], f);
        }
    }
}

void termtext_blank(char *s, size_t n)
{
    char esc[TERMTEXT_ESC_MAX];

    for (size_t i = 0; i < n;) {
        size_t k = termtext_escape(s, n, i, 0, esc);
        if (k)
            memset(s + i, ' ', k);
        i += k ? k : 1;
    }
}

int termtext_unsafe(const char *s, size_t n, int flags)
{
    char esc[TERMTEXT_ESC_MAX];

    for (size_t i = 0; i < n; i++)
        if (termtext_escape(s, n, i, flags, esc))
            return 1;
    return 0;
}
