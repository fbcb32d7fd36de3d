/*
 * sp_text.h - text helpers the SDK and the sealpipe daemon share: UTF-8
 * validation, JSON string escaping and the shortest round-trip formatting of
 * a double. Internal to sealpipe (sp__ names, not installed): devices use the
 * API of sealpipe.h; the daemon includes this header through the build's
 * include path so that each helper exists once.
 *
 * Pure functions over explicit lengths: no allocation, no state, thread-safe.
 */
#ifndef SP_TEXT_H
#define SP_TEXT_H

#include <stddef.h>

/*
 * Length of the UTF-8 sequence at p (n bytes available, n >= 1): 1 for an
 * ASCII byte, 2 to 4 for a well-formed multi-byte sequence, 0 when the bytes
 * there are not one (RFC 3629: no overlong forms, no UTF-16 surrogates
 * U+D800..U+DFFF, nothing above U+10FFFF).
 */
size_t sp__utf8_len(const unsigned char *p, size_t n);

/* 1 if the n bytes are valid UTF-8 (a NUL byte is valid; callers decide), else 0. */
int sp__utf8_valid(const char *s, size_t n);

/* Room for the longest escape sp__json_plain_run writes, with its NUL. */
#define SP__JSON_ESC_MAX 8

/*
 * JSON string escaping (RFC 8259 §7). Returns how many bytes at the start of
 * s[0..n) a JSON string literal holds as they are: valid UTF-8 other than
 * '"', '\\' and control characters. When that is less than n, esc receives
 * the NUL-terminated escape of the one byte that follows: \" \\ \b \f \n \r
 * \t, or \u00XX for other control characters and for a byte that does not
 * start valid UTF-8 (so the output is always valid JSON). A writer appends
 * the run, then esc, and continues one byte after the run.
 */
size_t sp__json_plain_run(const char *s, size_t n, char esc[SP__JSON_ESC_MAX]);

/*
 * Writes the finite double v with the fewest digits that read back (strtod)
 * as the same double, NUL-terminated; cap counts the NUL. Integers of
 * magnitude up to 2^53 are written as integers and -0 as "0" in both styles.
 * Otherwise, with plain set: fixed-point decimal without an exponent
 * (TagoTiP numbers; up to ~640 characters for DBL_MAX); else the shortest of
 * %.15g, %.16g and %.17g (JSON numbers; 32 bytes always suffice).
 * Returns the length, or -1 when v is not finite or cap is too small.
 */
int sp__double_format(double v, int plain, char *out, size_t cap);

#endif
