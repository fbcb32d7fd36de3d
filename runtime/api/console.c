/*
 * console.c - finding the web console's files (console.h).
 */
#include "console.h"

#include <string.h>

const struct console_file *console_find(const char *path)
{
    if (path[0] != '/')
        return NULL;
    path = path[1] ? path + 1 : "index.html";
    for (unsigned i = 0; i < sp_console_nfiles; i++)
        if (strcmp(sp_console_files[i].name, path) == 0)
            return &sp_console_files[i];
    return NULL;
}

const char *console_type(const struct console_file *f)
{
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".json", "application/json"},
    };
    const char *dot = strrchr(f->name, '.');

    for (size_t i = 0; dot && i < sizeof types / sizeof types[0]; i++)
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    return "application/octet-stream";
}
