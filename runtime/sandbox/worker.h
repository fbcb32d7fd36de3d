/*
 * worker.h - a Lua worker process: the child side of pool.c.
 *
 * The daemon starts a worker by running itself again as `sealpipe __worker`
 * with one end of a socketpair on WORKER_SOCKET_FD and one of the query
 * channel on WORKER_QUERY_FD (so the worker inherits none of the daemon's
 * memory), and that calls worker_main(). The worker closes every other
 * descriptor but stderr, drops root (to nobody) if it has it, sets resource
 * limits (address space, CPU time, no processes, no core dumps), and installs
 * a seccomp filter that allows only reading and writing its two sockets,
 * writing stderr, memory management, the clock, getrandom and exiting: no
 * open, socket, connect, fork, exec or executable mappings. Then it serves
 * frames (wire.h) with an in-process host (host.h) until the socket closes.
 * Even a Lua VM exploit inside it can only talk to the daemon, which checks
 * every reply.
 */
#ifndef SP_WORKER_H
#define SP_WORKER_H

#include <stddef.h>

#include "host.h"

#define WORKER_SOCKET_FD 3 /* where the worker finds its end of the socket */
#define WORKER_QUERY_FD  4 /* and of the query channel (query() calls) */

struct worker_opts {
    struct host_limits limits;
    size_t address_space; /* RLIMIT_AS in bytes; 0: leave as is */
    int cpu_seconds;      /* RLIMIT_CPU; 0: leave as is */
};

/* Never returns: serves fd until it closes, then _exit()s. */
void worker_main(int fd, const struct worker_opts *o) __attribute__((noreturn));

/* `sealpipe __worker` with the arguments pool.c passes: parses them and
 * calls worker_main(WORKER_SOCKET_FD). Returns 2 on bad arguments. */
int worker_command(int argc, char **argv);

#endif
