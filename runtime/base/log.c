/*
 * log.c - leveled key=value logging to stderr (see log.h).
 *
 * Many logged fields come from outside: topics, analysis errors and log()
 * text, dead-letter details. So the writer, not each call site, makes sure
 * a line stays one line: after formatting, every control byte (C0, DEL and
 * the UTF-8 encoded C1 controls such as NEL) is written as an escape, \n \r
 * \t or \xNN. Nothing a device or an analysis sends can start a line of its
 * own or move a terminal's cursor. Printable text, '\' and UTF-8 pass as they
 * are, so the common line is copied once without a change.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define LOG_LINE_MAX 2048 /* bytes of one line, escapes and newline included */

int log_level = LOG_LEVEL_INFO;

static const char *const names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

/*
 * Copies in[0..n) to out, escaping control characters, and stops before an
 * escape or a byte that would not fit in cap. Returns the bytes written;
 * *cut is set when not all of in was copied.
 */
static size_t escape(const char *in, size_t n, char *out, size_t cap, int *cut)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    *cut = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)in[i];
        char esc[8];
        size_t k = 0;

        if (ch == 0xc2 && i + 1 < n && (unsigned char)in[i + 1] >= 0x80 &&
            (unsigned char)in[i + 1] <= 0x9f) {
            /* U+0080..U+009F: NEL ends a line for some log readers. */
            ch = (unsigned char)in[++i];
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 15];
            k = 6;
        } else if (ch >= 0x20 && ch != 0x7f) {
            if (o + 1 > cap)
                goto full;
            out[o++] = (char)ch;
            continue;
        } else if (ch == '\n' || ch == '\r' || ch == '\t') {
            esc[0] = '\\';
            esc[1] = ch == '\n' ? 'n' : ch == '\r' ? 'r' : 't';
            k = 2;
        } else {
            esc[0] = '\\';
            esc[1] = 'x';
            esc[2] = hex[ch >> 4];
            esc[3] = hex[ch & 15];
            k = 4;
        }
        if (o + k > cap)
            goto full;
        memcpy(out + o, esc, k);
        o += k;
    }
    return o;
full:
    *cut = 1;
    return o;
}

void log_line(int level, const char *fmt, ...)
{
    char msg[LOG_LINE_MAX], line[LOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int cut;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, names[level]);
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    size_t mlen = (size_t)m < sizeof(msg) ? (size_t)m : sizeof(msg) - 1;
    /* Room for "..." and the newline after the message. */
    size_t len = (size_t)n + escape(msg, mlen, line + n, sizeof(line) - (size_t)n - 4, &cut);
    if (cut || mlen < (size_t)m) {
        memcpy(line + len, "...", 3);
        len += 3;
    }
    line[len++] = '\n';
    /* One write per line, so lines from several processes do not interleave. */
    fwrite(line, 1, len, stderr);
}

int log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, names[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return LOG_LEVEL_WARN;
    return -1;
}
