/*
 * journal.c - the device journal's on-disk format (journal.h): record and
 * segment headers, their checks, segment names, and CRC-32C.
 */
#include "journal.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

/* ---- CRC-32C ------------------------------------------------------------- */

/*
 * CRC-32C, reflected polynomial 0x82f63b78, as iSCSI and ext4 use it: the
 * SSE4.2 crc32 instruction where the CPU has it (a 2 KB payload in well
 * under a microsecond, which matters in the broker's path), else a table.
 */
static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc_soft(uint32_t c, const uint8_t *p, size_t n)
{
    pthread_once(&crc_once, crc_table_init);
    while (n--)
        c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc_hard(uint32_t c, const uint8_t *p, size_t n)
{
    uint64_t c64 = c;

    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c64 = __builtin_ia32_crc32di(c64, w);
    }
    c = (uint32_t)c64;
    while (n--)
        c = __builtin_ia32_crc32qi(c, *p++);
    return c;
}
#endif

uint32_t journal_crc32c(uint32_t crc, const void *p, size_t n)
{
    uint32_t c = ~crc;

#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2"))
        return ~crc_hard(c, p, n);
#endif
    return ~crc_soft(c, p, n);
}

/* ---- little-endian fields ---------------------------------------------- */

static void put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    put16(p, v & 0xffff);
    put16(p + 2, v >> 16);
}

static void put64(uint8_t *p, uint64_t v)
{
    put32(p, (uint32_t)v);
    put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t get32(const uint8_t *p)
{
    return get16(p) | get16(p + 2) << 16;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* ---- records ------------------------------------------------------------ */

size_t journal_rec_size(const struct journal_rec *r)
{
    return JOURNAL_REC_HEAD + r->topic_len + r->publisher_len + r->payload_len;
}

int journal_rec_head(uint8_t head[JOURNAL_REC_HEAD], const struct journal_rec *r)
{
    size_t total = journal_rec_size(r);
    uint32_t crc;

    if (r->topic_len > 0xffff || r->publisher_len > 0xff || r->payload_len > 0xffffffffu ||
        total > 0xffffffffu || r->qos < 0 || r->qos > 2)
        return -1;
    memcpy(head, JOURNAL_REC_MAGIC, 4);
    put32(head + 8, (uint32_t)total);
    head[12] = (uint8_t)(r->qos | (r->retain ? 4 : 0));
    head[13] = (uint8_t)r->publisher_len;
    put16(head + 14, (uint32_t)r->topic_len);
    put64(head + 16, r->id);
    put64(head + 24, (uint64_t)r->received_ms);
    put32(head + 32, (uint32_t)r->payload_len);
    crc = journal_crc32c(0, head + 8, JOURNAL_REC_HEAD - 8);
    crc = journal_crc32c(crc, r->topic, r->topic_len);
    crc = journal_crc32c(crc, r->publisher, r->publisher_len);
    crc = journal_crc32c(crc, r->payload, r->payload_len);
    put32(head + 4, crc);
    return 0;
}

enum journal_parse journal_head_parse(const uint8_t *p, size_t avail, struct journal_rec *r,
                                      size_t *total)
{
    *total = 0;
    if (avail < JOURNAL_REC_HEAD)
        return avail >= 4 && memcmp(p, JOURNAL_REC_MAGIC, 4) != 0 ? JOURNAL_REC_BAD
                                                                  : JOURNAL_REC_SHORT;
    memset(r, 0, sizeof *r);
    *total = get32(p + 8);
    r->crc = get32(p + 4);
    r->qos = p[12] & 3;
    r->retain = (p[12] & 4) != 0;
    r->publisher_len = p[13];
    r->topic_len = get16(p + 14);
    r->id = get64(p + 16);
    r->received_ms = (int64_t)get64(p + 24);
    r->payload_len = get32(p + 32);
    if (memcmp(p, JOURNAL_REC_MAGIC, 4) != 0 || (p[12] & ~7u) || r->qos == 3 ||
        *total != journal_rec_size(r) || r->id == 0 || r->id >= JOURNAL_ID_MAX)
        return JOURNAL_REC_BAD;
    return JOURNAL_REC_OK;
}

enum journal_parse journal_rec_parse(const uint8_t *p, size_t avail, struct journal_rec *r,
                                     size_t *total)
{
    enum journal_parse rc = journal_head_parse(p, avail, r, total);

    if (rc != JOURNAL_REC_OK)
        return rc;
    if (avail < *total)
        return JOURNAL_REC_SHORT;
    if (journal_crc32c(0, p + 8, *total - 8) != r->crc)
        return JOURNAL_REC_BAD;
    r->topic = (const char *)p + JOURNAL_REC_HEAD;
    r->publisher = r->topic + r->topic_len;
    r->payload = (const uint8_t *)r->publisher + r->publisher_len;
    return JOURNAL_REC_OK;
}

enum journal_parse journal_find(const uint8_t *p, size_t avail, size_t from, size_t *at,
                                struct journal_rec *r, size_t *total)
{
    for (size_t i = from; i + 4 <= avail; i++) {
        const uint8_t *m = memchr(p + i, 'S', avail - i);
        if (!m)
            break;
        i = (size_t)(m - p);
        if (avail - i < 4)
            break;
        if (memcmp(m, JOURNAL_REC_MAGIC, 4) != 0)
            continue;
        enum journal_parse rc = journal_rec_parse(m, avail - i, r, total);
        if (rc != JOURNAL_REC_BAD) {
            *at = i;
            return rc;
        }
    }
    *at = avail > from + 3 ? avail - 3 : from; /* a magic may begin in the last 3 bytes */
    return JOURNAL_REC_BAD;
}

/* ---- segments ----------------------------------------------------------- */

void journal_seg_head(uint8_t out[JOURNAL_SEG_HEAD], uint64_t first)
{
    memcpy(out, JOURNAL_SEG_MAGIC, 8);
    put64(out + 8, first);
}

int journal_seg_head_parse(const uint8_t p[JOURNAL_SEG_HEAD], uint64_t *first)
{
    if (memcmp(p, JOURNAL_SEG_MAGIC, 8) != 0)
        return -1;
    *first = get64(p + 8);
    return 0;
}

int journal_seg_path(char *out, size_t cap, const char *dir, uint64_t first)
{
    int n = snprintf(out, cap, "%s/%016llx.jnl", dir, (unsigned long long)first);

    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* The first id a segment's file name gives, or -1: not a segment's name. */
static int name_first(const char *name, uint64_t *first)
{
    uint64_t v = 0;

    if (strlen(name) != JOURNAL_NAME_LEN || strcmp(name + 16, ".jnl") != 0)
        return -1;
    for (int i = 0; i < 16; i++) {
        char c = name[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return -1;
        v = v << 4 | (uint64_t)d;
    }
    if (v == 0 || v >= JOURNAL_ID_MAX)
        return -1; /* no writer names a segment so */
    *first = v;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int journal_list(const char *dir, uint64_t **firsts, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    uint64_t *v = NULL, first;
    size_t cap = 0;

    *firsts = NULL;
    *n = 0;
    if (!d)
        return -1;
    while ((e = readdir(d)) != NULL) {
        if (name_first(e->d_name, &first) != 0)
            continue;
        if (*n == cap) {
            uint64_t *nv = realloc(v, (cap ? cap * 2 : 16) * sizeof *v);
            if (!nv) {
                free(v);
                closedir(d);
                errno = ENOMEM;
                return -1;
            }
            v = nv;
            cap = cap ? cap * 2 : 16;
        }
        v[(*n)++] = first;
    }
    closedir(d);
    qsort(v, *n, sizeof *v, cmp_u64);
    *firsts = v;
    return 0;
}

uint64_t journal_bytes(const char *dir, uint64_t from)
{
    uint64_t *firsts, bytes = 0;
    size_t n;
    char path[PATH_MAX];
    struct stat st;

    if (journal_list(dir, &firsts, &n) != 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (firsts[i] >= from && journal_seg_path(path, sizeof path, dir, firsts[i]) == 0 &&
            stat(path, &st) == 0)
            bytes += (uint64_t)st.st_size;
    free(firsts);
    return bytes;
}

int journal_space_low(const char *dir, uint64_t min_free, uint64_t *avail, uint64_t *backlog)
{
    struct statvfs s;

    *backlog = journal_bytes(dir, 0);
    if (statvfs(dir, &s) != 0) {
        *avail = UINT64_MAX; /* unknown: the writes themselves will tell */
        return 0;
    }
    *avail = (uint64_t)s.f_bavail * s.f_frsize;
    return *avail < min_free + *backlog;
}
