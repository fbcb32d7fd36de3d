/*
 * buf.h - growable byte buffer with a cap (curl's dynbuf idea).
 *
 * Appends fail with SP_ERR_TOOLARGE once the buffer would exceed its maximum,
 * and with SP_ERR_NOMEM when malloc fails; the content is always
 * NUL-terminated so text can be used as a C string.
 */
#ifndef SP_BUF_H
#define SP_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *p;
    size_t len;
    size_t cap; /* allocated bytes */
    size_t max; /* most bytes of content allowed */
};

void buf_init(struct buf *b, size_t max);
void buf_cleanup(struct buf *b);
/* Empties the buffer, keeping its allocation. */
void buf_reset(struct buf *b);
int buf_append(struct buf *b, const void *p, size_t n) __attribute__((warn_unused_result));
int buf_puts(struct buf *b, const char *s) __attribute__((warn_unused_result));
int buf_putc(struct buf *b, char c) __attribute__((warn_unused_result));
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)))
__attribute__((warn_unused_result));

#endif
