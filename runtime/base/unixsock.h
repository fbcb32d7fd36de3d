/*
 * unixsock.h - a listening unix stream socket in the daemon's data
 * directory (the inspector's sockets, the answers to the broker plugin).
 */
#ifndef SP_UNIXSOCK_H
#define SP_UNIXSOCK_H

#include <stddef.h>

/* Binds path (a stale socket there is replaced: the data dir lock is ours),
 * mode 0600, and listens, non-blocking. The fd, or -1 with err set. */
int unixsock_listen(const char *path, char *err, size_t errlen);

#endif
