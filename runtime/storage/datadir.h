/*
 * datadir.h - the data directory as a whole: one daemon at a time, and no
 * directory conjured up by a command that only reads.
 *
 * The daemon takes the directory with datadir_lock() before anything else
 * touches it (the registry, the bucket, the embedded broker's files) and
 * holds it until it exits. The lock is an flock() on <dir>/sealpipe.lock, so
 * the kernel releases it when the daemon dies in any way (kill -9 included):
 * a crashed daemon never leaves a stale lock, and the next one may adopt the
 * broker it left running. The registry commands (cli.c) do not take it: they
 * write through SQLite's own locking while the daemon runs.
 */
#ifndef SP_DATADIR_H
#define SP_DATADIR_H

#include <stddef.h>

#define DATADIR_LOCK     "sealpipe.lock"
#define DATADIR_DB       "sealpipe.db"
#define DATADIR_ANALYSES "analyses-dir" /* the daemon's analyses folder (datadir_note_analyses) */

/* Creates dir (0700) if it does not exist and checks it is a directory.
 * Returns 0 or SP_ERR_IO with the reason in err. */
int datadir_ensure(const char *dir, char *err, size_t errlen) __attribute__((warn_unused_result));

/*
 * Creates dir (0700) if it does not exist and locks it for this process,
 * writing our pid into the lock file. *fd_out is the lock; it stays held
 * until datadir_unlock() or exit, and is not inherited across exec.
 * Returns 0, SP_ERR_EXISTS (another process holds it; err names its pid) or
 * SP_ERR_IO (err says why).
 */
int datadir_lock(const char *dir, int *fd_out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Releases a lock taken by datadir_lock(); -1 is ignored. */
void datadir_unlock(int fd);

/*
 * Checks, creating nothing, that dir exists and holds a registry
 * (sealpipe.db). Returns 0, or SP_ERR_NOTFOUND with the reason in err.
 */
int datadir_check(const char *dir, char *err, size_t errlen) __attribute__((warn_unused_result));

/* 1 while a daemon holds dir's lock (probed without taking it for long), else 0. */
int datadir_running(const char *dir);
/*
 * The analyses folder the daemon runs with, as an absolute path, kept in
 * <data_dir>/analyses-dir (written at every start, kept after it stops) so
 * that `device add|set --parser` check the folder the daemon loads from,
 * whatever --analyses-dir it was given. 0, SP_ERR_IO or SP_ERR_NOTFOUND.
 */
int datadir_note_analyses(const char *dir, const char *analyses_dir)
    __attribute__((warn_unused_result));
int datadir_analyses(const char *dir, char *out, size_t cap) __attribute__((warn_unused_result));

#endif
