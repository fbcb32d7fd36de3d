/*
 * jreader.c - the device journal as an ingest source (see jreader.h).
 *
 * The reader walks the segments in id order. It holds a read position (the
 * segment, the offset of the next record, the last id read) and the one the
 * last ack() made committed; drop() goes back to the committed one. A record
 * that does not check out is skipped, the next one that does searched for
 * (skip_damage). A record the bytes end inside is the end of what there is
 * to read for now, unless a newer segment exists: the writer never writes an
 * older segment again, so the rest of this one is a tail a crash left half
 * written, skipped with a warning (its message was never acknowledged).
 * inotify, armed for one event once the reader has caught up (arm), wakes
 * the pipeline when the writer appends; a second inotify, always armed but
 * only for the creation of files (which appends never cause), says when the
 * directory must be listed again for a newer segment.
 */
#include "jreader.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/errors.h"
#include "base/journal.h"
#include "base/log.h"
#include "base/metrics.h"
#include "base/sp_limits.h"

#define READ_AHEAD     (1u << 20) /* bytes read from a segment at once */
#define WHOLE_MAX      (8u << 20) /* larger records are checked in pieces (read_large) */
#define SPACE_CHECK_MS 1000
#define LOW_LOG_MS     60000

struct jreader {
    char dir[PATH_MAX];
    int ino;      /* inotify on dir: appends, one event at a time (arm) */
    int ino_new;  /* inotify on dir: files made (IN_CREATE, IN_MOVED_TO) */
    int new_lost; /* ino_new's watch is gone: list dir at every look */
    const struct ingest_output *out;
    /* The read position: segment seg (fd), the next record at off. */
    uint64_t seg, off, last_id;
    int fd;
    int maybe_newer; /* a newer segment may have appeared since the last look */
    int armed;       /* the one-shot watch on ino is set and has not fired */
    /* Damaged bytes at damage_off of segment damage_seg, searched up to
     * damage_to for a record after them (skip_damage). */
    uint64_t damage_seg, damage_off, damage_to;
    int read_any; /* read() gave a message since the last ack() */
    /* What the last commit covers; ids up to committed are skipped. */
    uint64_t c_seg, c_off, c_id, committed;
    /* Bytes [buf_off, buf_off + len) of the segment. */
    uint8_t *buf;
    size_t cap, len;
    uint64_t buf_off;
    uint64_t min_free;
    char wal[PATH_MAX]; /* synced before a deletion; "": commits are synced */
    int low;            /* the filesystem is under min_free: the broker refuses */
    int64_t next_space_check, next_low_log, next_error_log;
    struct ingest_source src;
};

/* ---- the segment in hand ------------------------------------------------ */

/* A pointer to the segment's bytes from off, *avail of them (fewer than want
 * at the end of the file); NULL on a read error. */
static const uint8_t *view(struct jreader *r, uint64_t off, size_t want, size_t *avail)
{
    if (off >= r->buf_off && off + want <= r->buf_off + r->len) {
        *avail = (size_t)(r->buf_off + r->len - off);
        return r->buf + (off - r->buf_off);
    }
    size_t need = want > READ_AHEAD ? want : READ_AHEAD;
    if (need > r->cap) {
        uint8_t *nb = realloc(r->buf, need);
        if (!nb)
            return NULL;
        r->buf = nb;
        r->cap = need;
    }
    ssize_t got = pread(r->fd, r->buf, r->cap, (off_t)off);
    r->buf_off = off;
    r->len = got > 0 ? (size_t)got : 0;
    *avail = r->len;
    return got < 0 ? NULL : r->buf;
}

/* Opens segment first at offset off. 0, or -1 (logged). */
static int open_segment(struct jreader *r, uint64_t first, uint64_t off)
{
    char path[PATH_MAX];
    uint8_t head[JOURNAL_SEG_HEAD];
    uint64_t named;
    int fd;

    if (journal_seg_path(path, sizeof path, r->dir, first) ||
        (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        LOG_ERROR("journal: cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (pread(fd, head, sizeof head, 0) == (ssize_t)sizeof head &&
        (journal_seg_head_parse(head, &named) != 0 || named != first))
        LOG_WARN("journal: %s has a wrong header; reading its records all the same", path);
    if (r->fd >= 0)
        close(r->fd);
    r->fd = fd;
    r->seg = first;
    r->off = off;
    r->len = 0;
    r->buf_off = 0;
    r->maybe_newer = 1;
    return 0;
}

/* Reads every event queued on fd: the union of their masks (an event's
 * mask is never 0, so 0 means there was none). */
static uint32_t drain(int fd)
{
    char ev[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    uint32_t mask = 0;
    ssize_t n;

    while ((n = read(fd, ev, sizeof ev)) > 0)
        for (char *p = ev; p < ev + n;) {
            const struct inotify_event *e = (const struct inotify_event *)p;
            mask |= e->mask;
            p += sizeof *e + e->len;
        }
    return mask;
}

/* The watch for files made, (re)set on dir; 0 or -1. */
static int watch_new_files(struct jreader *r)
{
    uint32_t mask = IN_CREATE | IN_MOVED_TO | IN_MOVE_SELF;

    return inotify_add_watch(r->ino_new, r->dir, mask) < 0 ? -1 : 0;
}

/*
 * The first id of the oldest segment newer than the one in hand; 0: none.
 * The directory is listed only when a file was made since the last look,
 * or while the watch for that is lost (the directory was removed or moved
 * away: it is set again on whatever the path names now).
 */
static uint64_t newer_segment(struct jreader *r)
{
    uint64_t *firsts, next = 0;
    uint32_t m = drain(r->ino_new);
    size_t n;

    if (m)
        r->maybe_newer = 1;
    if (m & (IN_IGNORED | IN_MOVE_SELF))
        r->new_lost = 1;
    if (r->new_lost && watch_new_files(r) == 0)
        r->new_lost = 0;
    if (r->new_lost)
        r->maybe_newer = 1;
    if (!r->maybe_newer || journal_list(r->dir, &firsts, &n) != 0)
        return 0;
    for (size_t i = 0; i < n && !next; i++)
        if (firsts[i] > r->seg || r->fd < 0)
            next = firsts[i];
    free(firsts);
    r->maybe_newer = next != 0;
    return next;
}

/* ---- records ------------------------------------------------------------ */

/* Copies record rec into message m, strings and payload in a (the payload
 * cut at SP_LIMIT_PAYLOAD; full_len says how large it was). */
static int take(struct arena *a, const struct journal_rec *rec, struct ingest_msg *m)
{
    size_t len = rec->payload_len < SP_LIMIT_PAYLOAD ? rec->payload_len : SP_LIMIT_PAYLOAD;
    uint8_t *copy = arena_alloc(a, len + 1);

    memset(m, 0, sizeof *m);
    m->binding = INGEST_MQTT;
    m->topic = arena_strndup(a, rec->topic, rec->topic_len);
    m->publisher = rec->publisher_len ? arena_strndup(a, rec->publisher, rec->publisher_len) : NULL;
    if (!copy || !m->topic || (rec->publisher_len && !m->publisher))
        return SP_ERR_NOMEM;
    memcpy(copy, rec->payload, len);
    copy[len] = '\0';
    m->payload = copy;
    m->len = len;
    m->full_len = rec->payload_len;
    m->qos = rec->qos;
    m->retain = rec->retain;
    m->received_ms = rec->received_ms;
    return SP_OK;
}

/*
 * A record larger than WHOLE_MAX (its header parsed into rec): its CRC is
 * checked in READ_AHEAD pieces, and only what take() keeps is copied (a
 * payload that large is dead-lettered as too large anyway). Returns
 * JOURNAL_REC_OK with rec's strings pointing into a's copy, or SHORT or BAD.
 */
static enum journal_parse read_large(struct jreader *r, struct arena *a, struct journal_rec *rec,
                                     size_t total)
{
    size_t strings = rec->topic_len + rec->publisher_len;
    size_t keep = JOURNAL_REC_HEAD + strings +
                  (rec->payload_len < SP_LIMIT_PAYLOAD ? rec->payload_len : SP_LIMIT_PAYLOAD);
    uint8_t *copy = arena_alloc(a, keep);
    uint32_t crc = 0;
    size_t avail;

    if (!copy)
        return JOURNAL_REC_SHORT; /* the batch's memory: read it in the next one */
    for (size_t done = 0; done < total;) {
        const uint8_t *p = view(r, r->off + done, 1, &avail);
        if (!p || avail == 0)
            return JOURNAL_REC_SHORT;
        if (avail > total - done)
            avail = total - done;
        if (done < keep)
            memcpy(copy + done, p, avail < keep - done ? avail : keep - done);
        crc = done == 0 ? journal_crc32c(0, p + 8, avail - 8) : journal_crc32c(crc, p, avail);
        done += avail;
    }
    if (crc != rec->crc)
        return JOURNAL_REC_BAD;
    rec->topic = (const char *)copy + JOURNAL_REC_HEAD;
    rec->publisher = rec->topic + rec->topic_len;
    rec->payload = (const uint8_t *)rec->publisher + rec->publisher_len;
    return JOURNAL_REC_OK;
}

/* The record at the read position into rec, and its size: OK, SHORT (not
 * all there yet), BAD; -1 on a read error. */
static int parse_next(struct jreader *r, struct arena *a, struct journal_rec *rec, size_t *total)
{
    size_t avail;
    const uint8_t *p = view(r, r->off, JOURNAL_REC_HEAD, &avail);
    enum journal_parse rc;

    if (!p)
        return -1;
    rc = journal_head_parse(p, avail, rec, total);
    if (rc != JOURNAL_REC_OK)
        return rc;
    if (*total > WHOLE_MAX)
        return read_large(r, a, rec, *total);
    if (!(p = view(r, r->off, *total, &avail)))
        return -1;
    return journal_rec_parse(p, avail, rec, total);
}

/* Logs a read error at most once a minute. */
static void read_error(struct jreader *r)
{
    int64_t now = clock_mono_ms();

    if (now < r->next_error_log)
        return;
    r->next_error_log = now + 60000;
    LOG_ERROR("journal: cannot read segment %016llx at %llu: %s; trying again",
              (unsigned long long)r->seg, (unsigned long long)r->off, strerror(errno));
}

/* Damaged bytes at the end of the segment the broker writes, no record
 * after them yet: said at most once a minute. */
static void bad_record(struct jreader *r)
{
    int64_t now = clock_mono_ms();

    if (now < r->next_error_log)
        return;
    r->next_error_log = now + 60000;
    LOG_ERROR("journal: segment %016llx holds damaged bytes from byte %llu; records written "
              "after them will be read",
              (unsigned long long)r->seg, (unsigned long long)r->off);
}

/*
 * A record at the read position that does not check out: the next one that
 * does, or may (its end not written yet), is searched for from the byte
 * after it (journal_find), where the last search ended if it found none.
 * 1 with the read position moved there (the skip logged), 0: none yet.
 */
static int skip_damage(struct jreader *r)
{
    uint64_t from = r->damage_off == r->off && r->damage_seg == r->seg ? r->damage_to : r->off + 1;
    struct journal_rec rec;
    size_t avail, at, total;
    const uint8_t *p;

    r->damage_seg = r->seg;
    r->damage_off = r->off;
    while ((p = view(r, from, READ_AHEAD, &avail)) != NULL && avail >= 4) {
        enum journal_parse rc = journal_find(p, avail, 0, &at, &rec, &total);
        /* Ids only grow: an older one is bytes inside a damaged payload. */
        if (rc == JOURNAL_REC_OK && rec.id <= r->last_id) {
            from += at + 1;
            continue;
        }
        if (rc != JOURNAL_REC_BAD) {
            LOG_WARN("journal: segment %016llx: %llu damaged bytes skipped at byte %llu",
                     (unsigned long long)r->seg, (unsigned long long)(from + at - r->off),
                     (unsigned long long)r->off);
            r->off = from + at;
            return 1;
        }
        from += at;
        if (avail < READ_AHEAD)
            break; /* the end of the file */
    }
    r->damage_to = from;
    return 0;
}

/* Says so when the record after last_id is not the next id: the ids in
 * between, not committed, are in no segment (one deleted, or damaged). */
static void note_gap(struct jreader *r, uint64_t id)
{
    uint64_t from = (r->last_id > r->committed ? r->last_id : r->committed) + 1;

    if (id > from)
        LOG_WARN("journal: ids %llu to %llu are not in the journal (a segment removed or "
                 "damaged); going on from %llu",
                 (unsigned long long)from, (unsigned long long)id - 1, (unsigned long long)id);
}

/* The end of segment seg's records was reached and a newer one exists: says
 * what is skipped, if anything, and moves to next. */
static int next_segment(struct jreader *r, uint64_t next)
{
    struct stat st;

    if (r->fd >= 0 && fstat(r->fd, &st) == 0 && (uint64_t)st.st_size > r->off)
        LOG_WARN("journal: segment %016llx ends with %llu bytes that are not a whole, valid "
                 "record (a write a crash cut short, never acknowledged, or damage); skipped",
                 (unsigned long long)r->seg, (unsigned long long)st.st_size - r->off);
    return open_segment(r, next, JOURNAL_SEG_HEAD);
}

/*
 * The next message not committed yet into m: 1, or 0 when there is none
 * for now, or -1 on an error (logged).
 */
static int next_message(struct jreader *r, struct arena *a, struct ingest_msg *m)
{
    struct journal_rec rec;
    size_t total;
    int end_seen = 0;

    for (;;) {
        int rc = r->fd >= 0 ? parse_next(r, a, &rec, &total) : JOURNAL_REC_SHORT;
        if (rc < 0) {
            read_error(r);
            return -1;
        }
        if (rc == JOURNAL_REC_OK) {
            note_gap(r, rec.id);
            r->off += total;
            r->last_id = rec.id;
            r->read_any = 1;
            if (rec.id <= r->committed)
                continue;
            return take(a, &rec, m) == SP_OK ? 1 : -1;
        }
        if (rc == JOURNAL_REC_BAD && skip_damage(r))
            continue;
        /* The end of what this segment holds now. Once a newer segment is
         * known, look once more: its writer finished this one first. */
        uint64_t next = newer_segment(r);
        if (!next) {
            if (rc == JOURNAL_REC_BAD)
                bad_record(r);
            return 0;
        }
        if (!end_seen && r->fd >= 0) {
            end_seen = 1;
            r->len = 0; /* read the file again */
            continue;
        }
        if (next_segment(r, next) != 0)
            return -1;
        end_seen = 0;
    }
}

/* ---- free space ---------------------------------------------------------- */

/* Once a second: says loudly while the broker refuses device publishes for
 * want of space, by the plugin's own rule (journal_space_low). */
static void check_space(struct jreader *r)
{
    int64_t now = clock_mono_ms();
    uint64_t avail, backlog;

    if (now < r->next_space_check)
        return;
    r->next_space_check = now + SPACE_CHECK_MS;
    int low = journal_space_low(r->dir, r->min_free, &avail, &backlog);
    if (low && (!r->low || now >= r->next_low_log)) {
        LOG_ERROR("journal: %llu MiB free on the disk of %s, under --journal-min-free-mb %llu "
                  "plus room for the %llu MiB of journal: the broker refuses device publishes "
                  "until there is room",
                  (unsigned long long)(avail >> 20), r->dir,
                  (unsigned long long)(r->min_free >> 20), (unsigned long long)(backlog >> 20));
        r->next_low_log = now + LOW_LOG_MS;
    } else if (!low && r->low) {
        LOG_INFO("journal: %llu MiB free again on the disk of %s: device publishes are taken",
                 (unsigned long long)(avail >> 20), r->dir);
    }
    r->low = low;
}

/* ---- the ingest source ---------------------------------------------------- */

/* Empties the queue of the one-shot watch, which then is gone. */
static void drain_events(struct jreader *r)
{
    if (drain(r->ino))
        r->armed = 0;
}

/*
 * Arms the inotify watch for one event (IN_ONESHOT): a watch that stays
 * armed makes the kernel queue an event for every append, which cost the
 * broker 1.4 us a message while the daemon was not reading them (measured
 * with a writev loop). So it is armed only once the reader has caught up,
 * and what may have come before it was armed is looked for again. A watch
 * still armed since an earlier catch-up has seen nothing (it would have
 * fired), so it is left as it is. Newer segments are ino_new's: at 5,000
 * msg/s the reader catches up several times a batch, and re-arming and
 * listing the directory each time cost 5 us a message (make bench, r5k).
 */
static void arm(struct jreader *r)
{
    if (r->armed)
        return;
    if (inotify_add_watch(r->ino, r->dir, IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_ONESHOT) < 0)
        LOG_WARN("journal: cannot watch %s: %s", r->dir, strerror(errno));
    else
        r->armed = 1;
}

/* Messages into out[*n..max) while there are any and the batch has room;
 * 1 if it stopped because there were none left. */
static int take_all(struct jreader *r, struct arena *a, struct ingest_msg *out, size_t max,
                    size_t *n)
{
    while (*n < max && arena_used(a) < SP_LIMIT_BATCH_INPUT) {
        if (next_message(r, a, &out[*n]) != 1)
            return 1;
        metrics_received("journal", out[(*n)++].topic);
    }
    return 0;
}

static int source_read(void *ctx, int timeout_ms, struct arena *a, struct ingest_msg *out,
                       size_t max, size_t *n)
{
    struct jreader *r = ctx;

    *n = 0;
    check_space(r); /* here: a batch that cannot commit never gets to ack() */
    for (int pass = 0; pass < 2 && *n == 0; pass++) {
        if (pass == 1) {
            if (timeout_ms <= 0)
                break;
            struct pollfd pfd = {.fd = r->ino, .events = POLLIN};
            if (poll(&pfd, 1, timeout_ms) <= 0)
                break;
        }
        drain_events(r);
        if (take_all(r, a, out, max, n)) {
            arm(r);
            take_all(r, a, out, max, n);
        }
    }
    return SP_OK;
}

/* An answer to a journaled message leaves as a publish: there is no
 * connection of its own to answer on. */
static int source_answer(void *ctx, const struct ingest_msg *m, const char *topic,
                         const uint8_t *payload, size_t len)
{
    struct jreader *r = ctx;

    (void)m;
    return r->out->publish(r->out->ctx, topic, payload, len, 1, 0, NULL);
}

/* 0 once the commits so far are durable: with --sync normal, the WAL
 * synced (a commit is either in it or, checkpointed, in the synced
 * database file). */
static int commits_durable(const struct jreader *r)
{
    int fd, rc;

    if (!r->wal[0])
        return 0;
    if ((fd = open(r->wal, O_RDONLY | O_CLOEXEC)) < 0)
        return errno == ENOENT ? 0 : -1; /* no WAL: all is in the database */
    rc = fdatasync(fd);
    close(fd);
    return rc;
}

/* Deletes the segments before the committed one: all they hold is stored. */
static void delete_committed(struct jreader *r)
{
    uint64_t *firsts;
    size_t n;
    char path[PATH_MAX];

    if (commits_durable(r) != 0) {
        LOG_WARN("journal: cannot sync %s (%s); committed segments kept for now", r->wal,
                 strerror(errno));
        return;
    }
    if (journal_list(r->dir, &firsts, &n) != 0)
        return;
    for (size_t i = 0; i < n && firsts[i] < r->c_seg; i++)
        if (journal_seg_path(path, sizeof path, r->dir, firsts[i]) == 0 && unlink(path) != 0)
            LOG_WARN("journal: cannot delete %s: %s", path, strerror(errno));
    free(firsts);
}

static int source_ack(void *ctx)
{
    struct jreader *r = ctx;
    uint64_t old_seg = r->c_seg;

    /* The answers of the batch leave now (an answer channel writes them on
     * its flush; the MQTT link is flushed by the pipeline anyway). */
    if (r->out)
        (void)r->out->flush(r->out->ctx);

    if (r->read_any) {
        r->c_seg = r->seg;
        r->c_off = r->off;
        r->c_id = r->last_id;
        r->committed = r->last_id > r->committed ? r->last_id : r->committed;
        r->read_any = 0;
    }
    if (r->c_seg != old_seg)
        delete_committed(r);
    return SP_OK;
}

/* Not committed: read it all again from the committed position. */
static void source_drop(void *ctx)
{
    struct jreader *r = ctx;

    r->read_any = 0;
    r->last_id = r->c_id;
    if (r->c_seg && open_segment(r, r->c_seg, r->c_off) == 0)
        return;
    /* Nothing committed from a segment yet, or it cannot be opened: from
     * the oldest segment, skipping what is committed. */
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
    r->seg = 0;
    r->maybe_newer = 1;
}

static int source_wait_fd(void *ctx)
{
    return ((struct jreader *)ctx)->ino;
}

/* The last id read, never below what is committed: a batch that read only
 * committed records (the start of a segment, or a journal whose tail a power
 * loss took) must not move the position back. */
static int64_t source_position(void *ctx)
{
    struct jreader *r = ctx;

    if (!r->read_any)
        return -1;
    return (int64_t)(r->last_id > r->committed ? r->last_id : r->committed);
}

/* ---- open and close ------------------------------------------------------- */

/* Starts at the segment holding the id after the committed one, and deletes
 * the older ones (all committed). */
static int start_position(struct jreader *r)
{
    uint64_t *firsts, start = 0;
    size_t n;

    if (journal_list(r->dir, &firsts, &n) != 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (firsts[i] <= r->committed + 1 || !start)
            start = firsts[i];
    free(firsts);
    if (!start)
        return 0; /* empty: the first segment is found by newer_segment */
    if (open_segment(r, start, JOURNAL_SEG_HEAD) != 0)
        return -1;
    r->c_seg = start;
    r->c_off = JOURNAL_SEG_HEAD;
    delete_committed(r);
    return 0;
}

int jreader_open(const struct jreader_opts *o, struct jreader **out, char *err, size_t errlen)
{
    struct jreader *r = calloc(1, sizeof *r);

    *out = NULL;
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return SP_ERR_NOMEM;
    }
    r->fd = -1;
    r->ino = r->ino_new = -1;
    r->out = o->out;
    r->min_free = o->min_free;
    snprintf(r->wal, sizeof r->wal, "%s", o->wal ? o->wal : "");
    r->committed = r->c_id = r->last_id = o->committed > 0 ? (uint64_t)o->committed : 0;
    r->maybe_newer = 1;
    snprintf(r->dir, sizeof r->dir, "%s", o->dir);
    if ((mkdir(r->dir, 0700) != 0 && errno != EEXIST) ||
        (r->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0 ||
        (r->ino_new = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0 || watch_new_files(r) != 0 ||
        inotify_add_watch(r->ino, r->dir, IN_ONESHOT | IN_MODIFY) < 0 || start_position(r) != 0) {
        snprintf(err, errlen, "journal %s: %s", r->dir, strerror(errno));
        jreader_free(r);
        return SP_ERR_IO;
    }
    r->src = (struct ingest_source){.name = "journal",
                                    .ctx = r,
                                    .read = source_read,
                                    .answer = source_answer,
                                    .ack = source_ack,
                                    .drop = source_drop,
                                    .wait_fd = source_wait_fd,
                                    .position = source_position,
                                    .stays_up = 1};
    *out = r;
    return SP_OK;
}

void jreader_free(struct jreader *r)
{
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    if (r->ino >= 0)
        close(r->ino);
    if (r->ino_new >= 0)
        close(r->ino_new);
    free(r->buf);
    free(r);
}

const struct ingest_source *jreader_source(struct jreader *r)
{
    return &r->src;
}

uint64_t jreader_backlog(struct jreader *r)
{
    if (r->fd < 0)
        return journal_bytes(r->dir, 0);
    uint64_t bytes = journal_bytes(r->dir, r->seg);
    return bytes > r->off ? bytes - r->off : 0;
}
