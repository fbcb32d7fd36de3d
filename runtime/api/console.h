/*
 * console.h - the web console's files (runtime/console/), built into the
 * binary by cmake/embed_dir.cmake and served at / by transport/httpd_api.c:
 * "/" is index.html, "/NAME" the file NAME. A flat folder: no file name
 * holds a slash.
 */
#ifndef SP_CONSOLE_H
#define SP_CONSOLE_H

#include <stddef.h>

struct console_file {
    const char *name;
    const unsigned char *data;
    size_t len;
};

/* The generated table (console_files.c), ended by a {NULL} entry. */
extern const struct console_file sp_console_files[];
extern const unsigned sp_console_nfiles;

/* The file a GET of path serves, or NULL. */
const struct console_file *console_find(const char *path);
/* Its Content-Type, from its name's extension. */
const char *console_type(const struct console_file *f);

/* The headers every console file is sent with: the console runs no script
 * but its own files, loads nothing from elsewhere and cannot be framed. */
#define CONSOLE_CSP                                                                                \
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

#endif
