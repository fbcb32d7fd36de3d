/*
 * termtext.h - text a device chose (payloads, topics, client ids, details
 * that quote them) made safe for an operator's terminal.
 *
 * A terminal acts on control characters: ESC starts sequences that clear
 * the screen, retitle the window or fake output, BEL rings, CR overwrites a
 * line, and the C1 controls U+0080-U+009F (0xC2 0x80-0x9F in UTF-8) are
 * taken as ESC sequences by some. The `sealpipe` commands that print what a
 * device sent escape them (\xHH, \u00HH) or, in aligned columns, blank them.
 */
#ifndef SP_TERMTEXT_H
#define SP_TERMTEXT_H

#include <stddef.h>
#include <stdio.h>

#define TERMTEXT_ESC_MAX 8

/* Newline and tab are text, kept as they are (a payload shown whole). */
#define TERMTEXT_KEEP_LINES 1

/*
 * If s[i] starts a character a terminal would act on, writes its escape
 * into esc and returns how many bytes it spans (1 or 2); 0: show it as it is.
 */
size_t termtext_escape(const char *s, size_t n, size_t i, int flags, char esc[TERMTEXT_ESC_MAX]);
/* Writes s[0..n) to f with those characters escaped. */
void termtext_write(FILE *f, const char *s, size_t n, int flags);
/* In place: each of those characters' bytes as spaces (for aligned columns). */
void termtext_blank(char *s, size_t n);
/* 1 if s[0..n) holds any of them. */
int termtext_unsafe(const char *s, size_t n, int flags);

#endif
