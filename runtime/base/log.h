/*
 * log.h - one line per event, key=value, to stderr.
 *
 *     LOG_INFO("batch committed messages=%zu ms=%.1f", n, ms);
 *
 * The macros check the level first, so arguments are not evaluated when the
 * level is off. Lines look like
 *     2026-11-24T10:00:00.123Z INFO batch committed messages=12 ms=0.8
 * The level is one of the documented global variables (set once at start-up).
 *
 * A line is always one line: control characters in the formatted text
 * (newlines from a topic, an analysis error, ...) are written escaped as \n,
 * \r, \t or \xNN (U+0080..U+009F as \u00NN), whatever the call site passes.
 * A line longer than 2 KiB is cut and ends in "...".
 */
#ifndef SP_LOG_H
#define SP_LOG_H

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

extern int log_level; /* global: the only mutable logging state */

void log_line(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Parses "error", "warn", "info", "debug"; returns the level or -1. */
int log_level_parse(const char *s);

#define LOG_AT(lvl, ...)                                                                           \
    do {                                                                                           \
        if (log_level >= (lvl))                                                                    \
            log_line((lvl), __VA_ARGS__);                                                          \
    } while (0)
#define LOG_ERROR(...) LOG_AT(LOG_LEVEL_ERROR, __VA_ARGS__)
#define LOG_WARN(...)  LOG_AT(LOG_LEVEL_WARN, __VA_ARGS__)
#define LOG_INFO(...)  LOG_AT(LOG_LEVEL_INFO, __VA_ARGS__)
#define LOG_DEBUG(...) LOG_AT(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
