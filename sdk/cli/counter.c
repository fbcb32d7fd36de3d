/*
 * counter.c - the counter file of encrypted push and pull (struct ctr_store,
 * device.h): read at start, locked against a second sealpipe-device of the
 * same serial, and advanced durably (fsync, temp file + rename) before any
 * envelope with a counter past the stored value is published, so a counter
 * is never reused even if the process dies.
 */
#include "device.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static int mkdir_parents(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(path, 0700);
        *p = '/';
        if (rc < 0 && errno != EEXIST)
            return -1;
    }
    return 0;
}

/* Default path; caller frees. NULL with a message on failure. */
static char *ctr_default_path(const char *serial)
{
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    char *path = NULL;
    int n;

    if (xdg && xdg[0] == '/')
        n = asprintf(&path, "%s/%s/%s.counter", xdg, DEVICE_PROG, serial);
    else if (home && home[0] == '/')
        n = asprintf(&path, "%s/.local/state/%s/%s.counter", home, DEVICE_PROG, serial);
    else {
        fail("no state directory for the counter file: set HOME or XDG_STATE_HOME, or pass "
             "--counter-file or --counter");
        return NULL;
    }
    if (n < 0) {
        fail("out of memory");
        return NULL;
    }
    if (mkdir_parents(path) < 0) {
        fail("cannot create the directory of %s: %s", path, strerror(errno));
        free(path);
        return NULL;
    }
    return path;
}

static int ctr_read(const struct ctr_store *c, uint32_t *last)
{
    char text[32];
    ssize_t n;
    uint64_t v;
    size_t len;
    int fd = open(c->path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 && errno == ENOENT) {
        *last = 0;
        return 0;
    }
    if (fd < 0)
        return fail("cannot open counter file %s: %s", c->path, strerror(errno));
    n = read(fd, text, sizeof(text) - 1);
    int err = errno;
    close(fd);
    if (n < 0)
        return fail("cannot read counter file %s: %s", c->path, strerror(err));
    len = (size_t)n;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
        len--;
    text[len] = '\0';
    if (parse_uint(text, UINT32_MAX, &v) < 0)
        return fail("counter file %s is corrupt: expected one number from 0 to 4294967295",
                    c->path);
    *last = (uint32_t)v;
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Durably replaces the file's value with value. */
static int ctr_write(struct ctr_store *c, uint32_t value)
{
    char text[16];
    int n = snprintf(text, sizeof(text), "%" PRIu32 "\n", value);
    int err;
    int fd = open(c->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        goto fail;
    if (write_all(fd, text, (size_t)n) < 0 || fsync(fd) < 0)
        goto fail_fd;
    if (close(fd) < 0)
        goto fail;
    if (rename(c->tmp, c->path) < 0)
        goto fail;
    if (fsync(c->dir_fd) < 0)
        goto fail;
    c->reserved = value;
    return 0;

fail_fd:
    err = errno;
    close(fd);
    errno = err;
fail:
    err = errno;
    unlink(c->tmp);
    return fail("cannot write counter file %s: %s", c->path, strerror(err));
}

/* Opens and locks the store at path (takes ownership of path). */
static int ctr_open(struct ctr_store *c, char *path, uint32_t *last)
{
    char *lock = NULL;
    char *dir = NULL;
    int rc = EXIT_FAIL;

    c->path = path;
    c->lock_fd = -1;
    c->dir_fd = -1;
    c->tmp = NULL;
    if (asprintf(&c->tmp, "%s.tmp", path) < 0) {
        c->tmp = NULL;
        goto fail_nomem;
    }
    if (asprintf(&lock, "%s.lock", path) < 0) {
        lock = NULL;
        goto fail_nomem;
    }
    if (!(dir = strdup(path)))
        goto fail_nomem;
    c->dir_fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c->dir_fd < 0) {
        fail("cannot open the directory of counter file %s: %s", path, strerror(errno));
        goto out;
    }
    c->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (c->lock_fd < 0) {
        fail("cannot create lock file %s: %s", lock, strerror(errno));
        goto out;
    }
    if (flock(c->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            fail("counter file %s is in use by another %s", path, DEVICE_PROG);
        else
            fail("cannot lock %s: %s", lock, strerror(errno));
        goto out;
    }
    if (ctr_read(c, last) != 0)
        goto out;
    c->reserved = *last;
    rc = 0;
    goto out;

fail_nomem:
    fail("out of memory");
out:
    free(lock);
    free(dir);
    return rc;
}

static void ctr_close(struct ctr_store *c)
{
    if (c->lock_fd >= 0)
        close(c->lock_fd);
    if (c->dir_fd >= 0)
        close(c->dir_fd);
    free(c->tmp);
    free(c->path);
    c->lock_fd = c->dir_fd = -1;
    c->tmp = c->path = NULL;
}

void counters_init(struct counters *k)
{
    memset(k, 0, sizeof(*k));
    k->store.lock_fd = k->store.dir_fd = -1;
}

int counters_open(struct counters *k, const struct args *a)
{
    uint32_t last = 0;
    char *path;

    counters_init(k);
    if (a->has_counter) {
        k->first = a->counter;
        return 0;
    }
    path = a->counter_file ? strdup(a->counter_file) : ctr_default_path(a->serial);
    if (!path)
        return a->counter_file ? fail("out of memory") : EXIT_FAIL;
    if (ctr_open(&k->store, path, &last) != 0)
        return EXIT_FAIL;
    if ((uint64_t)last + a->count > UINT32_MAX)
        return fail("counter file %s: last counter %" PRIu32 " leaves no room for %" PRIu64
                    " more messages; the device must be re-provisioned (TagoTiP.md 10.1)",
                    k->store.path, last, a->count);
    k->first = last + 1;
    k->chunk = a->interval_ms > 0 ? 1 : DEVICE_COUNTER_CHUNK;
    return 0;
}

int counters_reserve(struct counters *k, uint32_t counter, uint32_t last)
{
    if (!k->store.path || counter <= k->store.reserved)
        return 0;
    uint64_t upto = (uint64_t)counter + k->chunk - 1;
    return ctr_write(&k->store, upto < last ? (uint32_t)upto : last);
}

void counters_close(struct counters *k)
{
    ctr_close(&k->store);
}
