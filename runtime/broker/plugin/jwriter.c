/*
 * jwriter.c - the device journal's writer (plugin_opt_journal): every publish
 * the plugin accepts from anyone but the daemon is appended to the journal in
 * the MESSAGE event, which mosquitto 2.0.11 runs before it sends the PUBACK
 * (docs/facts.md). So a message a device was acknowledged is in the page
 * cache, and survives any crash of the broker or the daemon; a flusher thread
 * makes it survive a power loss within sync_ms (0: fdatasync before the
 * PUBACK). The format is base/journal.h; the daemon reads it
 * (transport/jreader.c) and deletes what it has committed.
 *
 * Ids are never reused: at start the writer continues after the larger of
 * the newest segment's last id and the highest id the daemon committed
 * (read from sealpipe.db by the caller), and begins a new segment, so a tail
 * a crash left half written is never written after. While the journal's
 * filesystem is short of space (journal_space_low), or after a write fails,
 * appends are refused: the caller refuses the publish without a PUBACK.
 *
 * Threads: the broker's (every call here) and the flusher, which shares only
 * the active segment's descriptor (under the mutex) and the byte counters.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/journal.h"
#include "plugin.h"

#define SPACE_CHECK_MS    1000       /* free space is looked at this often */
#define SPACE_CHECK_BYTES (1u << 20) /* and after this many bytes appended */
#define REFUSAL_LOG_MS    60000      /* a refusing writer says so again this often */
#define SCAN_CHUNK_BYTES  (1u << 20)

struct jwriter {
    char dir[PATH_MAX];
    int dirfd; /* for fsync of new segments' entries */
    int fd;    /* the active segment (the flusher reads it under mu) */
    uint64_t seg_size, next_id;
    int sync_ms;
    uint64_t min_free;
    int refusing;     /* 1: appends are refused */
    uint64_t refused; /* publishes refused since the last log line */
    int64_t next_space_check, next_refusal_log;
    uint64_t unchecked; /* bytes appended since the free space was looked at */
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_t flusher;
    int have_flusher, stop;    /* stop: under mu */
    _Atomic uint64_t written;  /* bytes appended in all, for the flusher */
    _Atomic uint64_t synced;   /* of them, known durable */
    _Atomic int64_t synced_at; /* monotonic ms: all written before then is durable */
    int64_t run_start;         /* when the appends not durable yet began */
};

/* The first bytes written are durable, and so is everything written before
 * at (monotonic ms). */
static void raise_synced(struct jwriter *w, uint64_t bytes, int64_t at)
{
    uint64_t was = atomic_load(&w->synced);
    int64_t then = atomic_load(&w->synced_at);

    while (was < bytes && !atomic_compare_exchange_weak(&w->synced, &was, bytes))
        ;
    while (then < at && !atomic_compare_exchange_weak(&w->synced_at, &then, at))
        ;
}

/* ---- the segment in hand ------------------------------------------------ */

/* The id of the last valid record of segment first (first - 1 when it has
 * none), read to its end or its first bad record. The segment is synced
 * too: a broker killed with -9 left its last journal_sync_ms of
 * acknowledged messages to the kernel's writeback, up to half a minute. */
static uint64_t scan_segment(const struct jwriter *w, uint64_t first)
{
    char path[PATH_MAX];
    uint64_t last = first - 1;
    uint8_t *buf = malloc(SCAN_CHUNK_BYTES);
    size_t have = 0, total, at;
    int fd = -1, damaged = 0;

    if (!buf || journal_seg_path(path, sizeof path, w->dir, first) ||
        (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 ||
        read(fd, buf, JOURNAL_SEG_HEAD) != JOURNAL_SEG_HEAD)
        goto done;
    for (;;) {
        struct journal_rec r;
        ssize_t got = read(fd, buf + have, SCAN_CHUNK_BYTES - have);
        if (got <= 0) {
            /* The end: what looked like a record cut short may be damage
             * with valid records after it. */
            for (size_t from = 1; journal_find(buf, have, from, &at, &r, &total) != JOURNAL_REC_BAD;
                 from = at + 1)
                if (journal_rec_parse(buf + at, have - at, &r, &total) == JOURNAL_REC_OK)
                    last = r.id > last ? r.id : last;
            break;
        }
        have += (size_t)got;
        size_t off = 0;
        enum journal_parse rc;
        /* Past damaged bytes too (journal_find): the largest id is wanted,
         * so that no id after the damage is given again. */
        while ((rc = journal_find(buf, have, off, &at, &r, &total)) == JOURNAL_REC_OK) {
            damaged |= at != off;
            last = r.id > last ? r.id : last;
            off = at + total;
        }
        if (rc == JOURNAL_REC_SHORT && total > SCAN_CHUNK_BYTES) {
            /* A record larger than the buffer: its id is in the header. */
            last = r.id > last ? r.id : last;
            if (lseek(fd, (off_t)(total - (have - at)), SEEK_CUR) < 0)
                goto done;
            at = have;
        }
        memmove(buf, buf + at, have - at);
        have -= at;
    }
done:
    if (damaged)
        mosquitto_log_printf(MOSQ_LOG_WARNING,
                             "sealpipe: journal: %s holds damaged bytes; ids go on after the "
                             "largest valid one (%llu)",
                             path, (unsigned long long)last);
    if (fd >= 0 && fdatasync(fd) != 0)
        mosquitto_log_printf(MOSQ_LOG_WARNING, "sealpipe: journal: cannot sync %s: %s", path,
                             strerror(errno));
    if (fd >= 0)
        close(fd);
    free(buf);
    return last;
}

/* Begins segment next_id (fsyncing its directory entry) and makes it the
 * active one; the previous one, made durable, is closed. reuse: the file
 * exists and holds no record (a crash right after its creation), and is
 * begun again in place: a reader may have it open already. 0 or -1. */
static int begin_segment(struct jwriter *w, int reuse)
{
    char path[PATH_MAX];
    uint8_t head[JOURNAL_SEG_HEAD];
    int fd, old;

    if (journal_seg_path(path, sizeof path, w->dir, w->next_id))
        return -1;
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (reuse ? O_TRUNC : O_EXCL), 0600);
    if (fd < 0)
        return -1;
    journal_seg_head(head, w->next_id);
    if (write(fd, head, sizeof head) != (ssize_t)sizeof head || fsync(w->dirfd) != 0) {
        close(fd);
        unlink(path);
        return -1;
    }
    uint64_t before = atomic_load(&w->written);
    int64_t at = clock_mono_ms();
    if (w->fd >= 0 && fdatasync(w->fd) != 0)
        mosquitto_log_printf(MOSQ_LOG_WARNING, "sealpipe: journal: cannot sync a segment: %s",
                             strerror(errno));
    else
        raise_synced(w, before, at);
    pthread_mutex_lock(&w->mu);
    old = w->fd;
    w->fd = fd;
    pthread_mutex_unlock(&w->mu);
    if (old >= 0)
        close(old);
    w->seg_size = sizeof head;
    atomic_fetch_add(&w->written, sizeof head);
    return 0;
}

/* ---- the flusher -------------------------------------------------------- */

/* Every sync_ms, fdatasync of the active segment when something was written
 * since the last one. A dup of the descriptor, so that a rotation may close
 * the original meanwhile (it syncs the old segment itself first). */
static void *flusher_main(void *arg)
{
    struct jwriter *w = arg;

    pthread_mutex_lock(&w->mu);
    while (!w->stop) {
        struct timespec until; /* on the monotonic clock (wake's), which no one steps */
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_nsec += (long)w->sync_ms * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&w->wake, &w->mu, &until);
        int64_t at = clock_mono_ms();
        uint64_t now_written = atomic_load(&w->written);
        if (w->stop || now_written <= atomic_load(&w->synced))
            continue;
        int fd = dup(w->fd);
        pthread_mutex_unlock(&w->mu);
        if (fd >= 0) {
            if (fdatasync(fd) == 0)
                raise_synced(w, now_written, at);
            close(fd);
        }
        pthread_mutex_lock(&w->mu);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- free space ---------------------------------------------------------- */

/* Says, once per state change and every minute while refusing, whether
 * device publishes are refused. */
static void set_refusing(struct jwriter *w, int refusing, const char *why, int64_t now)
{
    char f_dir[LOG_FIELD_MAX];

    if (refusing && (!w->refusing || now >= w->next_refusal_log)) {
        mosquitto_log_printf(MOSQ_LOG_ERR,
                             "sealpipe: journal %s: %s; refusing device publishes (no PUBACK: "
                             "devices send them again) refused_since_last=%" PRIu64,
                             LOG_FIELD(f_dir, w->dir), why, w->refused);
        w->next_refusal_log = now + REFUSAL_LOG_MS;
        w->refused = 0;
    } else if (!refusing && w->refusing) {
        mosquitto_log_printf(MOSQ_LOG_NOTICE,
                             "sealpipe: journal %s: accepting device publishes again "
                             "refused_since_last=%" PRIu64,
                             LOG_FIELD(f_dir, w->dir), w->refused);
        w->refused = 0;
    }
    w->refusing = refusing;
}

/* Refuses while the free space is short (journal_space_low: min_free plus
 * room for the daemon to store the journal). */
void jwriter_tick(struct jwriter *w, int64_t now)
{
    char why[192];
    uint64_t avail, backlog;
    int low;

    if (now < w->next_space_check)
        return;
    w->next_space_check = now + SPACE_CHECK_MS;
    w->unchecked = 0;
    low = journal_space_low(w->dir, w->min_free, &avail, &backlog);
    snprintf(why, sizeof why,
             "%" PRIu64 " MiB free, under the minimum of %" PRIu64 " MiB plus room for the %" PRIu64
             " MiB of journal the daemon stores",
             avail >> 20, w->min_free >> 20, backlog >> 20);
    set_refusing(w, low, why, now);
    /* The daemon deletes a segment only once the writer has left it: left
     * now, what it stores of the backlog gives the space back. */
    if (w->refusing && w->seg_size > JOURNAL_SEG_HEAD && w->seg_size != UINT64_MAX &&
        begin_segment(w, 0) != 0)
        mosquitto_log_printf(MOSQ_LOG_WARNING, "sealpipe: journal: cannot begin a segment: %s",
                             strerror(errno));
}

/* ---- open, append, close ------------------------------------------------ */

int jwriter_open(struct jwriter **out, const char *dir, uint64_t floor, int sync_ms,
                 uint64_t min_free)
{
    struct jwriter *w = calloc(1, sizeof *w);
    uint64_t *firsts = NULL, last = floor;
    size_t n = 0;
    int reuse = 0;

    *out = NULL;
    if (!w)
        return -1;
    w->fd = w->dirfd = -1;
    w->sync_ms = sync_ms;
    w->min_free = min_free;
    pthread_condattr_t ca;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->wake, &ca);
    pthread_condattr_destroy(&ca);
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    if ((mkdir(dir, 0700) != 0 && errno != EEXIST) ||
        (w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        journal_list(dir, &firsts, &n) != 0)
        goto fail;
    if (n > 0) {
        uint64_t newest = scan_segment(w, firsts[n - 1]);
        reuse = newest == firsts[n - 1] - 1 && newest >= last;
        last = newest > last ? newest : last;
    }
    free(firsts);
    if (last + 1 >= JOURNAL_ID_MAX) {
        errno = EOVERFLOW;
        goto fail;
    }
    w->next_id = last + 1;
    if (begin_segment(w, reuse) != 0)
        goto fail;
    if (sync_ms > 0 && pthread_create(&w->flusher, NULL, flusher_main, w) != 0)
        goto fail;
    w->have_flusher = sync_ms > 0;
    jwriter_tick(w, clock_mono_ms());
    *out = w;
    return 0;
fail:
    mosquitto_log_printf(MOSQ_LOG_ERR, "sealpipe: journal %s: %s", dir, strerror(errno));
    jwriter_close(w);
    return -1;
}

uint64_t jwriter_next_id(const struct jwriter *w)
{
    return w->next_id;
}

/* A failed write of total bytes at the end of the segment: cut back to where
 * it began, so that the segment stays whole, and refuse. */
static int append_failed(struct jwriter *w, int err)
{
    char why[256];

    if (ftruncate(w->fd, (off_t)w->seg_size) != 0)
        w->seg_size = UINT64_MAX; /* cannot be trusted: the next append rotates */
    snprintf(why, sizeof why, "cannot write: %s", strerror(err));
    set_refusing(w, 1, why, clock_mono_ms());
    w->next_space_check = clock_mono_ms() + SPACE_CHECK_MS;
    w->refused++;
    return -1;
}

/*
 * 1 when an append must be made durable before its PUBACK: always with
 * sync_ms 0, and when the oldest write not durable yet is 2 * sync_ms old.
 * On time the flusher never lets it get that old; late (a machine so loaded
 * that it wakes long after its timer), the broker's own thread, which is
 * running since it is taking this publish, bounds the power-loss window.
 */
static int sync_due(const struct jwriter *w, int64_t now)
{
    int64_t at = atomic_load(&w->synced_at);
    int64_t oldest = w->run_start > at ? w->run_start : at;

    return w->sync_ms == 0 || now - oldest >= 2 * (int64_t)w->sync_ms;
}

int jwriter_append(struct jwriter *w, struct journal_rec *r)
{
    uint8_t head[JOURNAL_REC_HEAD];
    size_t total;
    ssize_t n;

    if (w->refusing) {
        w->refused++;
        return -1;
    }
    if (w->seg_size >= JOURNAL_SEG_MAX && begin_segment(w, 0) != 0 && w->seg_size == UINT64_MAX)
        return append_failed(w, errno);
    r->id = w->next_id;
    if (journal_rec_head(head, r) != 0)
        return append_failed(w, EFBIG);
    total = journal_rec_size(r);
    struct iovec iov[4] = {{head, sizeof head},
                           {(void *)r->topic, r->topic_len},
                           {(void *)r->publisher, r->publisher_len},
                           {(void *)r->payload, r->payload_len}};
    uint64_t before = atomic_load(&w->written);
    int64_t now = clock_mono_ms();
    if (atomic_load(&w->synced) >= before)
        w->run_start = now; /* this append begins what is not durable yet */
    n = writev(w->fd, iov, 4);
    if (n != (ssize_t)total)
        return append_failed(w, n < 0 ? errno : ENOSPC);
    int due = sync_due(w, now);
    if (due && fdatasync(w->fd) != 0)
        return append_failed(w, errno);
    w->next_id++;
    w->seg_size += total;
    atomic_fetch_add(&w->written, total);
    if (due)
        raise_synced(w, before + total, now);
    /* A burst can fill a disk within the second between two looks. */
    if ((w->unchecked += total) >= SPACE_CHECK_BYTES) {
        w->next_space_check = 0;
        jwriter_tick(w, now);
    }
    return 0;
}

void jwriter_close(struct jwriter *w)
{
    if (!w)
        return;
    if (w->have_flusher) {
        pthread_mutex_lock(&w->mu);
        w->stop = 1;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->flusher, NULL);
    }
    if (w->fd >= 0) {
        (void)fdatasync(w->fd);
        close(w->fd);
    }
    if (w->dirfd >= 0)
        close(w->dirfd);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->wake);
    free(w);
}
