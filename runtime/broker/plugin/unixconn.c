/*
 * unixconn.c - the plugin's connections to the daemon's unix sockets in its
 * data directory: the Live Inspector's events (events.c) and the answers
 * it publishes (answers.c).
 */
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "plugin.h"

int unixconn_open(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    int fd;

    if (n >= sizeof sa.sun_path)
        return -1;
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
        return -1;
    memcpy(sa.sun_path, path, n + 1);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}
