/*
 * run.h - `sealpipe run`: opens everything, runs the daemon until SIGINT or
 * SIGTERM, and closes it (run.c).
 */
#ifndef SP_RUN_H
#define SP_RUN_H

#include "conf.h"

/* Runs the daemon with the checked options c. Returns the exit status. */
int run_daemon(const struct conf *c);

#endif
