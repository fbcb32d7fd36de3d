/*
 * datadir.c - the data directory lock and existence check (see datadir.h).
 *
 * flock() rather than fcntl() locks: an fcntl lock is dropped when any
 * descriptor of the file is closed by the process, and is not shared with
 * children; flock belongs to the open file description, which is opened
 * O_CLOEXEC so the broker and the Lua worker (fork + exec) do not keep it.
 * The file is never removed: unlinking a lock file races with a process that
 * has just opened it. The pid inside is only read while the lock is held by
 * someone else, so a stale pid is never reported.
 */
#include "datadir.h"
#include "base/clock.h"
#include "base/errors.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sealpipe.h"

/* The holder's pid from the lock file, or 0. It writes it just after
 * locking, so an empty file is read again for a moment. */
static long holder_pid(int fd)
{
    char buf[32];

    for (int tries = 0; tries < 20; tries++) {
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        if (n > 0) {
            buf[n] = '\0';
            return strtol(buf, NULL, 10);
        }
        clock_sleep_ms(10);
    }
    return 0;
}

static int write_pid(int fd)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());

    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t)n, 0) != n)
        return -1;
    return 0;
}

int datadir_ensure(const char *dir, char *err, size_t errlen)
{
    struct stat st;

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return SP_ERR_IO;
    }
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s: not a directory", dir);
        return SP_ERR_IO;
    }
    return SP_OK;
}

int datadir_lock(const char *dir, int *fd_out, char *err, size_t errlen)
{
    char path[4096];
    int fd, rc;

    if ((rc = datadir_ensure(dir, err, errlen)))
        return rc;
    if ((size_t)snprintf(path, sizeof path, "%s/" DATADIR_LOCK, dir) >= sizeof path) {
        snprintf(err, errlen, "%s: path too long", dir);
        return SP_ERR_IO;
    }
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return SP_ERR_IO;
    }
    while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK) {
            long pid = holder_pid(fd);
            if (pid > 0)
                snprintf(err, errlen,
                         "data directory %s is in use by sealpipe pid %ld (it holds %s); stop "
                         "that daemon or choose another --data-dir",
                         dir, pid, path);
            else
                snprintf(err, errlen,
                         "data directory %s is in use by another sealpipe (it holds %s); stop "
                         "that daemon or choose another --data-dir",
                         dir, path);
            close(fd);
            return SP_ERR_EXISTS;
        }
        snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
        close(fd);
        return SP_ERR_IO;
    }
    if (write_pid(fd) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        close(fd);
        return SP_ERR_IO;
    }
    *fd_out = fd;
    return SP_OK;
}

void datadir_unlock(int fd)
{
    if (fd >= 0)
        close(fd);
}

int datadir_check(const char *dir, char *err, size_t errlen)
{
    char path[4096];
    struct stat st;

    if (stat(dir, &st) != 0) {
        if (errno == ENOENT)
            snprintf(err, errlen,
                     "data directory %s does not exist (sealpipe device add creates it; or set "
                     "--data-dir)",
                     dir);
        else
            snprintf(err, errlen, "data directory %s: %s", dir, strerror(errno));
        return SP_ERR_NOTFOUND;
    }
    if (!S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "data directory %s is not a directory", dir);
        return SP_ERR_NOTFOUND;
    }
    snprintf(path, sizeof path, "%s/" DATADIR_DB, dir);
    if (stat(path, &st) != 0) {
        snprintf(err, errlen,
                 "%s holds no registry (%s is missing; sealpipe device add creates it)", dir,
                 DATADIR_DB);
        return SP_ERR_NOTFOUND;
    }
    return SP_OK;
}

int datadir_running(const char *dir)
{
    char path[4096];
    int fd, held;

    snprintf(path, sizeof(path), "%s/%s", dir, DATADIR_LOCK);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return 0;
    /* A shared lock is refused only while the daemon holds its exclusive one. */
    held = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return held;
}

int datadir_note_analyses(const char *dir, const char *analyses_dir)
{
    char real[PATH_MAX], path[4096], tmp[4200];
    FILE *f;

    if (!realpath(analyses_dir, real))
        return SP_ERR_IO;
    snprintf(path, sizeof path, "%s/" DATADIR_ANALYSES, dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (!(f = fopen(tmp, "w")))
        return SP_ERR_IO;
    int bad = fprintf(f, "%s\n", real) < 0;
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return SP_ERR_IO;
    }
    return SP_OK;
}

int datadir_analyses(const char *dir, char *out, size_t cap)
{
    char path[4096];
    FILE *f;

    snprintf(path, sizeof path, "%s/" DATADIR_ANALYSES, dir);
    if (!(f = fopen(path, "r")))
        return SP_ERR_NOTFOUND;
    int ok = fgets(out, (int)cap, f) != NULL;
    fclose(f);
    size_t n = ok ? strlen(out) : 0;
    if (n == 0 || out[n - 1] != '\n' || out[0] != '/')
        return SP_ERR_NOTFOUND;
    out[n - 1] = '\0';
    return SP_OK;
}
