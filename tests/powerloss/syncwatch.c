/*
 * syncwatch.c - an LD_PRELOAD shim that records what a process does to the
 * files of one directory, for the power-loss test (tests/powerloss/check.py
 * replays the record as a filesystem that drops every unsynced write).
 *
 * Loaded into the embedded mosquitto (tests/integration/test_powerloss.py
 * starts it through a wrapper that sets LD_PRELOAD). Environment:
 *
 *   SYNCWATCH_DIR     the watched directory (absolute, no trailing slash):
 *                     calls on it and on the paths directly or indirectly
 *                     under it are logged, all others pass through untouched
 *   SYNCWATCH_LOG     the log file, appended to (O_APPEND), one line per call
 *   SYNCWATCH_MIRROR  optional: every file opened under SYNCWATCH_DIR is also
 *                     hard-linked there under its base name, so that its bytes
 *                     outlive an unlink by another process (the daemon deletes
 *                     the journal segments it has committed)
 *   SYNCWATCH_CLOCK_BACK_MS  optional fault: CLOCK_REALTIME reads this many ms
 *                     ahead during the first 500 ms of the process, then right:
 *                     the wall clock of a machine stepped back (by NTP, after a
 *                     boot with a wrong clock) while it runs. An interval timed
 *                     on the wall clock across the step lasts this much longer.
 *
 * A log line is tab-separated:
 *
 *   start_ns end_ns op result a b path [path2]
 *
 * start_ns/end_ns: CLOCK_MONOTONIC around the real call; result: its return
 * value, or -errno. a and b by op:
 *   open      flags, 1 if the path existed before the call else 0
 *   write     file offset of the first byte written, bytes asked for
 *             (write, writev, pwrite, pwritev and their 64-bit names)
 *   fsync, fdatasync, close          0 0
 *   ftruncate, fallocate             length (fallocate: offset+length), 0
 *   sync_file_range                  offset, length
 *   rename    0 0, path2 the new name; unlink  0 0
 *
 * A descriptor made by dup, dup2 or dup3 from a watched one is watched too
 * (the plugin's flusher fdatasyncs a dup of the active segment's); those
 * calls are not logged. fcntl(F_DUPFD) is not followed.
 *
 * Threading: any thread may call any of these (the plugin's flusher thread
 * fdatasyncs while the broker thread writes). The fd -> path table is an
 * array of atomic pointers; a path is copied under a mutex before use, so a
 * close racing an fsync on another thread never reads freed memory. Each log
 * line is one write(2) to an O_APPEND descriptor, so lines never interleave.
 * Calls on untracked descriptors cost one atomic load.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SW_FD_MAX   65536
#define SW_PATH_MAX 1024

static _Atomic(char *) fd_path[SW_FD_MAX];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;
static char watch_dir[SW_PATH_MAX];
static size_t watch_len;
static char mirror_dir[SW_PATH_MAX];
static int log_fd = -1;
static int64_t clock_back_ns, start_ns;

/* The real functions, found once (sw_init) or on first use. */
static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_ftruncate)(int, off_t);
static int (*real_fallocate)(int, int, off_t, off_t);
static int (*real_sync_file_range)(int, off_t, off_t, unsigned int);
static int (*real_close)(int);
static int (*real_dup)(int);
static int (*real_dup2)(int, int);
static int (*real_dup3)(int, int, int);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_clock_gettime)(clockid_t, struct timespec *);

#define REAL(name) (real_##name ? real_##name : (sw_init(), real_##name))

static void sw_init(void);

static int64_t now_ns(void)
{
    struct timespec ts;
    REAL(clock_gettime)(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

__attribute__((constructor)) static void sw_init(void)
{
    const char *d = getenv("SYNCWATCH_DIR"), *l = getenv("SYNCWATCH_LOG");
    const char *m = getenv("SYNCWATCH_MIRROR"), *back = getenv("SYNCWATCH_CLOCK_BACK_MS");

#define FIND(name) real_##name = (__typeof__(real_##name))dlsym(RTLD_NEXT, #name)
    FIND(open);
    FIND(openat);
    FIND(write);
    FIND(writev);
    FIND(pwrite);
    FIND(pwritev);
    FIND(fsync);
    FIND(fdatasync);
    FIND(ftruncate);
    FIND(fallocate);
    FIND(sync_file_range);
    FIND(close);
    FIND(dup);
    FIND(dup2);
    FIND(dup3);
    FIND(rename);
    FIND(renameat);
    FIND(unlink);
    FIND(unlinkat);
    FIND(clock_gettime);
#undef FIND
    if (back && !clock_back_ns) {
        clock_back_ns = atoll(back) * 1000000;
        start_ns = now_ns();
    }
    if (log_fd >= 0 || !d || !l || !*d || strlen(d) >= sizeof(watch_dir))
        return;
    snprintf(watch_dir, sizeof(watch_dir), "%s", d);
    watch_len = strlen(watch_dir);
    while (watch_len > 1 && watch_dir[watch_len - 1] == '/')
        watch_dir[--watch_len] = '\0';
    if (m && strlen(m) < sizeof(mirror_dir))
        snprintf(mirror_dir, sizeof(mirror_dir), "%s", m);
    log_fd = real_open(l, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

/* An absolute form of path (relative to dirfd, or to the working directory). */
static int abs_path(int dirfd, const char *path, char *out, size_t cap)
{
    char base[SW_PATH_MAX];
    char *p;

    if (!path)
        return -1;
    if (path[0] == '/')
        return snprintf(out, cap, "%s", path) < (int)cap ? 0 : -1;
    if (dirfd == AT_FDCWD) {
        if (!getcwd(base, sizeof(base)))
            return -1;
    } else {
        if (dirfd < 0 || dirfd >= SW_FD_MAX)
            return -1;
        pthread_mutex_lock(&table_lock);
        p = atomic_load(&fd_path[dirfd]);
        if (p)
            snprintf(base, sizeof(base), "%s", p);
        pthread_mutex_unlock(&table_lock);
        if (!p)
            return -1; /* relative to a directory we do not watch */
    }
    return snprintf(out, cap, "%s/%s", base, path) < (int)cap ? 0 : -1;
}

/* 1 if path is the watched directory or lies under it. */
static int watched(const char *path)
{
    if (!watch_len || strncmp(path, watch_dir, watch_len) != 0)
        return 0;
    return path[watch_len] == '\0' || path[watch_len] == '/';
}

static void log_line(int64_t t0, int64_t t1, const char *op, long long result, long long a,
                     long long b, const char *path, const char *path2)
{
    char line[2 * SW_PATH_MAX + 160];
    int n, saved = errno;

    if (log_fd < 0)
        return;
    n = snprintf(line, sizeof(line), "%lld\t%lld\t%s\t%lld\t%lld\t%lld\t%s%s%s\n", (long long)t0,
                 (long long)t1, op, result, a, b, path, path2 ? "\t" : "", path2 ? path2 : "");
    if (n > 0 && n < (int)sizeof(line))
        (void)!real_write(log_fd, line, (size_t)n);
    errno = saved;
}

/* Copies the watched path of fd into out; 0 if fd is not watched. */
static int fd_watched(int fd, char *out, size_t cap)
{
    char *p;

    if (fd < 0 || fd >= SW_FD_MAX || !atomic_load_explicit(&fd_path[fd], memory_order_relaxed))
        return 0;
    pthread_mutex_lock(&table_lock);
    p = atomic_load(&fd_path[fd]);
    if (p)
        snprintf(out, cap, "%s", p);
    pthread_mutex_unlock(&table_lock);
    return p != NULL;
}

static void track(int fd, const char *path)
{
    char *copy, *old;

    if (fd < 0 || fd >= SW_FD_MAX || !(copy = strdup(path)))
        return;
    pthread_mutex_lock(&table_lock);
    old = atomic_exchange(&fd_path[fd], copy);
    pthread_mutex_unlock(&table_lock);
    free(old);
}

static void untrack(int fd)
{
    char *old;

    if (fd < 0 || fd >= SW_FD_MAX)
        return;
    pthread_mutex_lock(&table_lock);
    old = atomic_exchange(&fd_path[fd], NULL);
    pthread_mutex_unlock(&table_lock);
    free(old);
}

/* The file's bytes stay reachable in the mirror whoever unlinks it. */
static void mirror(const char *path)
{
    char dst[2 * SW_PATH_MAX];
    const char *base = strrchr(path, '/');
    struct stat st;

    if (!mirror_dir[0] || !base || stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return;
    snprintf(dst, sizeof(dst), "%s%s", mirror_dir, base);
    if (link(path, dst) != 0 && errno == EEXIST) {
        /* A file of the same name from an earlier broker run: keep both. */
        snprintf(dst, sizeof(dst), "%s%s.%lld", mirror_dir, base, (long long)now_ns());
        (void)!link(path, dst);
    }
}

static int after_open(const char *abs, int existed, int flags, int fd, int64_t t0)
{
    int saved = errno;

    log_line(t0, now_ns(), "open", fd >= 0 ? fd : -saved, flags, existed, abs, NULL);
    if (fd >= 0) {
        track(fd, abs);
        if (!existed)
            mirror(abs);
    }
    errno = saved;
    return fd;
}

static int open_common(int dirfd, const char *path, int flags, mode_t mode)
{
    char abs[SW_PATH_MAX];
    struct stat st;
    int64_t t0;
    int existed, fd;

    if (!REAL(openat) || abs_path(dirfd, path, abs, sizeof(abs)) != 0 || !watched(abs))
        return real_openat(dirfd, path, flags, mode);
    existed = stat(abs, &st) == 0;
    t0 = now_ns();
    fd = real_openat(dirfd, path, flags, mode);
    return after_open(abs, existed, flags, fd, t0);
}

static mode_t open_mode(int flags, va_list ap)
{
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return open_common(AT_FDCWD, path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return open_common(AT_FDCWD, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return open_common(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    mode_t mode;

    va_start(ap, flags);
    mode = open_mode(flags, ap);
    va_end(ap);
    return open_common(dirfd, path, flags, mode);
}

int creat(const char *path, mode_t mode)
{
    return open_common(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

int creat64(const char *path, mode_t mode)
{
    return open_common(AT_FDCWD, path, O_CREAT | O_WRONLY | O_TRUNC, mode);
}

/* Logs a write that returned r, asked for len bytes; off: its offset, or -1
 * for the file position (read back after the call). */
static void log_write(int fd, const char *path, int64_t t0, ssize_t r, size_t len, off_t off)
{
    int saved = errno;
    int64_t t1 = now_ns();

    if (off < 0) {
        off = lseek(fd, 0, SEEK_CUR);
        if (r > 0 && off >= 0)
            off -= r;
    }
    log_line(t0, t1, "write", r >= 0 ? (long long)r : -saved, (long long)off, (long long)len, path,
             NULL);
    errno = saved;
}

static size_t iov_len(const struct iovec *iov, int n)
{
    size_t len = 0;

    for (int i = 0; i < n; i++)
        len += iov[i].iov_len;
    return len;
}

ssize_t write(int fd, const void *buf, size_t len)
{
    char path[SW_PATH_MAX];
    int64_t t0;
    ssize_t r;

    if (!fd_watched(fd, path, sizeof(path)))
        return REAL(write)(fd, buf, len);
    t0 = now_ns();
    r = real_write(fd, buf, len);
    log_write(fd, path, t0, r, len, -1);
    return r;
}

ssize_t writev(int fd, const struct iovec *iov, int n)
{
    char path[SW_PATH_MAX];
    int64_t t0;
    ssize_t r;

    if (!fd_watched(fd, path, sizeof(path)))
        return REAL(writev)(fd, iov, n);
    t0 = now_ns();
    r = real_writev(fd, iov, n);
    log_write(fd, path, t0, r, iov_len(iov, n), -1);
    return r;
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t off)
{
    char path[SW_PATH_MAX];
    int64_t t0;
    ssize_t r;

    if (!fd_watched(fd, path, sizeof(path)))
        return REAL(pwrite)(fd, buf, len, off);
    t0 = now_ns();
    r = real_pwrite(fd, buf, len, off);
    log_write(fd, path, t0, r, len, off);
    return r;
}

ssize_t pwrite64(int fd, const void *buf, size_t len, off_t off)
{
    return pwrite(fd, buf, len, off);
}

ssize_t pwritev(int fd, const struct iovec *iov, int n, off_t off)
{
    char path[SW_PATH_MAX];
    int64_t t0;
    ssize_t r;

    if (!fd_watched(fd, path, sizeof(path)))
        return REAL(pwritev)(fd, iov, n, off);
    t0 = now_ns();
    r = real_pwritev(fd, iov, n, off);
    log_write(fd, path, t0, r, iov_len(iov, n), off);
    return r;
}

ssize_t pwritev64(int fd, const struct iovec *iov, int n, off_t off)
{
    return pwritev(fd, iov, n, off);
}

/* fsync, fdatasync: a call on fd logged as op with a and b. */
static int fd_call(int (*fn)(int), int fd, const char *op)
{
    char path[SW_PATH_MAX];
    int64_t t0;
    int r, saved;

    if (!fd_watched(fd, path, sizeof(path)))
        return fn(fd);
    t0 = now_ns();
    r = fn(fd);
    saved = errno;
    log_line(t0, now_ns(), op, r == 0 ? 0 : -saved, 0, 0, path, NULL);
    errno = saved;
    return r;
}

int fsync(int fd)
{
    return fd_call(REAL(fsync), fd, "fsync");
}

int fdatasync(int fd)
{
    return fd_call(REAL(fdatasync), fd, "fdatasync");
}

/* The fd leaves the table before the real close: once closed, its number
 * may be reused by another thread's open at once. */
int close(int fd)
{
    char path[SW_PATH_MAX];
    int64_t t0;
    int r, saved;

    if (!fd_watched(fd, path, sizeof(path)))
        return REAL(close)(fd);
    untrack(fd);
    t0 = now_ns();
    r = real_close(fd);
    saved = errno;
    log_line(t0, now_ns(), "close", r == 0 ? 0 : -saved, 0, 0, path, NULL);
    errno = saved;
    return r;
}

/* newfd, made from oldfd, is watched when oldfd is (and forgotten if not). */
static int after_dup(int oldfd, int newfd)
{
    char path[SW_PATH_MAX];
    int saved = errno;

    if (newfd >= 0) {
        if (fd_watched(oldfd, path, sizeof(path)))
            track(newfd, path);
        else
            untrack(newfd);
    }
    errno = saved;
    return newfd;
}

int dup(int fd)
{
    return after_dup(fd, REAL(dup)(fd));
}

int dup2(int fd, int newfd)
{
    return after_dup(fd, REAL(dup2)(fd, newfd));
}

int dup3(int fd, int newfd, int flags)
{
    return after_dup(fd, REAL(dup3)(fd, newfd, flags));
}

int ftruncate(int fd, off_t len)
{
    char path[SW_PATH_MAX];
    int64_t t0;
    int r, saved;

    if (!fd_watched(fd, path, sizeof(path)))
        return REAL(ftruncate)(fd, len);
    t0 = now_ns();
    r = real_ftruncate(fd, len);
    saved = errno;
    log_line(t0, now_ns(), "ftruncate", r == 0 ? 0 : -saved, (long long)len, 0, path, NULL);
    errno = saved;
    return r;
}

int ftruncate64(int fd, off_t len)
{
    return ftruncate(fd, len);
}

int fallocate(int fd, int mode, off_t off, off_t len)
{
    char path[SW_PATH_MAX];
    int64_t t0;
    int r, saved;

    if (!fd_watched(fd, path, sizeof(path)))
        return REAL(fallocate)(fd, mode, off, len);
    t0 = now_ns();
    r = real_fallocate(fd, mode, off, len);
    saved = errno;
    log_line(t0, now_ns(), "fallocate", r == 0 ? 0 : -saved, (long long)(off + len), mode, path,
             NULL);
    errno = saved;
    return r;
}

int fallocate64(int fd, int mode, off_t off, off_t len)
{
    return fallocate(fd, mode, off, len);
}

int sync_file_range(int fd, off_t off, off_t len, unsigned int flags)
{
    char path[SW_PATH_MAX];
    int64_t t0;
    int r, saved;

    if (!fd_watched(fd, path, sizeof(path)))
        return REAL(sync_file_range)(fd, off, len, flags);
    t0 = now_ns();
    r = real_sync_file_range(fd, off, len, flags);
    saved = errno;
    log_line(t0, now_ns(), "sync_file_range", r == 0 ? 0 : -saved, (long long)off, (long long)len,
             path, NULL);
    errno = saved;
    return r;
}

static int rename_common(int olddir, const char *oldp, int newdir, const char *newp)
{
    char a[SW_PATH_MAX], b[SW_PATH_MAX];
    int64_t t0;
    int r, saved;

    if (!REAL(renameat) || abs_path(olddir, oldp, a, sizeof(a)) != 0 ||
        abs_path(newdir, newp, b, sizeof(b)) != 0 || (!watched(a) && !watched(b)))
        return real_renameat(olddir, oldp, newdir, newp);
    t0 = now_ns();
    r = real_renameat(olddir, oldp, newdir, newp);
    saved = errno;
    log_line(t0, now_ns(), "rename", r == 0 ? 0 : -saved, 0, 0, a, b);
    errno = saved;
    return r;
}

int rename(const char *oldp, const char *newp)
{
    return rename_common(AT_FDCWD, oldp, AT_FDCWD, newp);
}

int renameat(int olddir, const char *oldp, int newdir, const char *newp)
{
    return rename_common(olddir, oldp, newdir, newp);
}

static int unlink_common(int dirfd, const char *path, int flags)
{
    char abs[SW_PATH_MAX];
    int64_t t0;
    int r, saved;

    if (!REAL(unlinkat) || abs_path(dirfd, path, abs, sizeof(abs)) != 0 || !watched(abs))
        return real_unlinkat(dirfd, path, flags);
    t0 = now_ns();
    r = real_unlinkat(dirfd, path, flags);
    saved = errno;
    log_line(t0, now_ns(), "unlink", r == 0 ? 0 : -saved, 0, 0, abs, NULL);
    errno = saved;
    return r;
}

int unlink(const char *path)
{
    return unlink_common(AT_FDCWD, path, 0);
}

int unlinkat(int dirfd, const char *path, int flags)
{
    return unlink_common(dirfd, path, flags);
}

/* The SYNCWATCH_CLOCK_BACK_MS fault: see the top of the file. */
int clock_gettime(clockid_t clk, struct timespec *ts)
{
    int r = REAL(clock_gettime)(clk, ts);
    int64_t t;

    if (r != 0 || clk != CLOCK_REALTIME || !clock_back_ns || now_ns() - start_ns >= 500000000)
        return r;
    t = (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec + clock_back_ns;
    ts->tv_sec = (time_t)(t / 1000000000);
    ts->tv_nsec = (long)(t % 1000000000);
    return r;
}
