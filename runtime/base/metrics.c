/*
 * metrics.c - counters, gauges and histograms, and their Prometheus text
 * form (see metrics.h).
 *
 * A series is a slot: its metric, its label values and its atomic values.
 * Unlabelled metrics have a slot each in `fixed`. Labelled series live in
 * an open-addressing hash table that only grows: a slot, once filled and
 * marked ready (a release store), never changes its metric or labels, so
 * lookups probe without a lock and only an insertion takes `mu`. Histograms
 * keep one counter per bucket (not cumulative) and the sum; their count is
 * the buckets' total, so an exported +Inf bucket always equals _count.
 */
#include "metrics.h"
#include "errors.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sealpipe.h"

enum mtype { COUNTER, GAUGE, HIST_SECONDS, HIST_COUNT };

struct family {
    const char *name, *help, *labels;
    enum mtype type;
};

static const struct family families[METRIC_COUNT] = {
#define METRICS__ROW(id, name, type, labels, help) {name, help, labels, type},
    METRICS_TABLE(METRICS__ROW)
#undef METRICS__ROW
};

/* Bucket bounds (le): microseconds for HIST_SECONDS, a count for HIST_COUNT. */
static const uint64_t bounds_us[] = {100,     250,     500,     1000,     2500,     5000,
                                     10000,   25000,   50000,   100000,   250000,   500000,
                                     1000000, 2500000, 5000000, 10000000, 30000000, 60000000};
static const uint64_t bounds_count[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096};
#define NB_US    (sizeof bounds_us / sizeof bounds_us[0])
#define NB_COUNT (sizeof bounds_count / sizeof bounds_count[0])
#define NB_MAX   NB_US

struct series {
    atomic_int ready; /* 1 once metric and labels are set, for good */
    int metric;
    unsigned seq; /* order of creation: the export's order within a metric */
    char l1[METRICS_LABEL_MAX], l2[METRICS_LABEL_MAX];
    atomic_uint_fast64_t v;             /* counter, gauge (int64 bits) */
    atomic_uint_fast64_t sum;           /* histogram */
    atomic_uint_fast64_t b[NB_MAX + 1]; /* histogram; the last is +Inf */
};

static struct series fixed[METRIC_COUNT];
static struct series table[METRICS_SERIES];
static unsigned per_metric[METRIC_COUNT]; /* labelled series made, under mu */
static unsigned nseries;                  /* under mu */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

_Static_assert((METRICS_SERIES & (METRICS_SERIES - 1)) == 0, "METRICS_SERIES: a power of two");

static int labelled(enum metric m)
{
    return families[m].labels[0] != '\0';
}

static const uint64_t *bounds(enum metric m, size_t *n)
{
    if (families[m].type == HIST_SECONDS) {
        *n = NB_US;
        return bounds_us;
    }
    *n = NB_COUNT;
    return bounds_count;
}

/* Equal as stored: a value longer than a slot holds matches its cut copy. */
static int label_eq(const char *stored, const char *in)
{
    for (size_t i = 0; i < METRICS_LABEL_MAX - 1; i++) {
        if (stored[i] != in[i])
            return 0;
        if (!in[i])
            return 1;
    }
    return 1;
}

/* A label value as stored: cut, and printable ASCII only. */
static void label_copy(char *dst, const char *src)
{
    size_t i;

    for (i = 0; i < METRICS_LABEL_MAX - 1 && src[i]; i++)
        dst[i] = (src[i] < 0x20 || src[i] > 0x7e) ? '?' : src[i];
    dst[i] = '\0';
}

static size_t hash(enum metric m, const char *l1, const char *l2)
{
    uint32_t h = 2166136261u ^ (uint32_t)m;

    for (size_t i = 0; i < METRICS_LABEL_MAX - 1 && l1[i]; i++)
        h = (h ^ (unsigned char)l1[i]) * 16777619u;
    h = (h ^ 0xff) * 16777619u;
    for (size_t i = 0; i < METRICS_LABEL_MAX - 1 && l2[i]; i++)
        h = (h ^ (unsigned char)l2[i]) * 16777619u;
    return h;
}

/*
 * The slot of (m, l1, l2), or the first free slot of its probe sequence in
 * *hole (NULL: the table is full). Safe without the lock: ready slots
 * never change, and a slot being filled reads as free.
 */
static struct series *probe(enum metric m, const char *l1, const char *l2, struct series **hole)
{
    size_t h = hash(m, l1, l2);

    *hole = NULL;
    for (size_t i = 0; i < METRICS_SERIES; i++) {
        struct series *s = &table[(h + i) & (METRICS_SERIES - 1)];
        if (!atomic_load_explicit(&s->ready, memory_order_acquire)) {
            *hole = s;
            return NULL;
        }
        if (s->metric == (int)m && label_eq(s->l1, l1) && label_eq(s->l2, l2))
            return s;
    }
    return NULL;
}

/* Adds the series (m, l1, l2) under mu; past the metric's cap, its "other". */
static struct series *insert_locked(enum metric m, const char *l1, const char *l2)
{
    struct series *hole, *s = probe(m, l1, l2, &hole);
    unsigned cap = m == METRIC_ANALYSIS ? METRICS_ANALYSES : METRICS_VALUES;

    if (s || !hole)
        return s;
    if (per_metric[m] >= cap && strcmp(l1, "other") != 0)
        return insert_locked(m, "other", l2);
    hole->metric = (int)m;
    label_copy(hole->l1, l1);
    label_copy(hole->l2, l2);
    hole->seq = nseries++;
    per_metric[m]++;
    atomic_store_explicit(&hole->ready, 1, memory_order_release);
    return hole;
}

/* The series of m with these labels, made on first use; NULL: no room. */
static struct series *series_of(enum metric m, const char *l1, const char *l2)
{
    struct series *hole, *s;

    if (m >= METRIC_COUNT)
        return NULL;
    if (!labelled(m))
        return &fixed[m];
    l1 = l1 ? l1 : "";
    l2 = l2 ? l2 : "";
    if ((s = probe(m, l1, l2, &hole)))
        return s;
    pthread_mutex_lock(&mu);
    s = insert_locked(m, l1, l2);
    pthread_mutex_unlock(&mu);
    return s;
}

static void observe(struct series *s, enum metric m, uint64_t v)
{
    size_t n, i = 0;
    const uint64_t *b = bounds(m, &n);

    while (i < n && v > b[i])
        i++;
    atomic_fetch_add_explicit(&s->b[i], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->sum, v, memory_order_relaxed);
}

void metrics_add(enum metric m, uint64_t n)
{
    metrics_add_labels(m, NULL, NULL, n);
}

void metrics_gauge_set(enum metric m, int64_t v)
{
    struct series *s = series_of(m, NULL, NULL);

    if (s)
        atomic_store_explicit(&s->v, (uint64_t)v, memory_order_relaxed);
}

void metrics_observe(enum metric m, uint64_t v)
{
    metrics_observe_labels(m, NULL, NULL, v);
}

void metrics_add_labels(enum metric m, const char *l1, const char *l2, uint64_t n)
{
    struct series *s = series_of(m, l1, l2);

    if (s)
        atomic_fetch_add_explicit(&s->v, n, memory_order_relaxed);
}

void metrics_observe_labels(enum metric m, const char *l1, const char *l2, uint64_t v)
{
    struct series *s = series_of(m, l1, l2);

    if (s)
        observe(s, m, v);
}

static const char *topic_kind(const char *topic)
{
    if (strncmp(topic, "$tips", 5) == 0 && (topic[5] == '/' || !topic[5]))
        return "tips";
    if (strncmp(topic, "$tip", 4) == 0 && (topic[4] == '/' || !topic[4]))
        return "tip";
    return "other";
}

void metrics_received(const char *transport, const char *topic)
{
    metrics_add_labels(METRIC_RECEIVED, transport, topic_kind(topic ? topic : ""), 1);
}

/* A histogram's count: its buckets' total. */
static uint64_t hist_count(const struct series *s, size_t nb)
{
    uint64_t c = 0;

    for (size_t i = 0; i <= nb; i++)
        c += atomic_load_explicit(&s->b[i], memory_order_relaxed);
    return c;
}

uint64_t metrics_get(enum metric m, const char *l1, const char *l2)
{
    struct series *hole, *s;
    size_t nb;

    if (m >= METRIC_COUNT)
        return 0;
    s = labelled(m) ? probe(m, l1 ? l1 : "", l2 ? l2 : "", &hole) : &fixed[m];
    if (!s)
        return 0;
    if (families[m].type == HIST_SECONDS || families[m].type == HIST_COUNT) {
        bounds(m, &nb);
        return hist_count(s, nb);
    }
    return atomic_load_explicit(&s->v, memory_order_relaxed);
}

/* ---- the text format ----------------------------------------------------- */

/* A label value between quotes: backslash and double quote escaped. */
static int put_value(struct buf *b, const char *v)
{
    int rc = SP_OK;

    for (; *v && !rc; v++)
        rc = (*v == '\\' || *v == '"') ? buf_putc(b, '\\') || buf_putc(b, *v) : buf_putc(b, *v);
    return rc ? SP_ERR_NOMEM : SP_OK;
}

/* {a="x",b="y"[,le="..."]}, or nothing for a series of no labels and no le. */
static int put_labels(struct buf *b, const struct series *s, enum metric m, const char *le)
{
    const char *names = families[m].labels, *comma = strchr(names, ',');
    int rc = SP_OK;

    if (!*names && !le)
        return SP_OK;
    rc = buf_putc(b, '{');
    if (*names) {
        rc = rc ? rc
                : buf_printf(b, "%.*s=\"", (int)(comma ? comma - names : (long)strlen(names)),
                             names);
        rc = rc ? rc : put_value(b, s->l1);
        rc = rc ? rc : buf_putc(b, '"');
        if (comma) {
            rc = rc ? rc : buf_printf(b, ",%s=\"", comma + 1);
            rc = rc ? rc : put_value(b, s->l2);
            rc = rc ? rc : buf_putc(b, '"');
        }
    }
    if (le)
        rc = rc ? rc : buf_printf(b, "%sle=\"%s\"", *names ? "," : "", le);
    return rc ? rc : buf_putc(b, '}');
}

static int put_bound(char *out, size_t cap, enum metric m, uint64_t v)
{
    if (families[m].type == HIST_SECONDS)
        return snprintf(out, cap, "%g", (double)v / 1e6);
    return snprintf(out, cap, "%llu", (unsigned long long)v);
}

static int put_histogram(struct buf *b, const struct series *s, enum metric m)
{
    const char *name = families[m].name;
    size_t nb;
    const uint64_t *bd = bounds(m, &nb);
    uint64_t cum = 0, sum = atomic_load_explicit(&s->sum, memory_order_relaxed);
    char le[32];
    int rc = SP_OK;

    for (size_t i = 0; i <= nb && !rc; i++) {
        cum += atomic_load_explicit(&s->b[i], memory_order_relaxed);
        if (i < nb)
            put_bound(le, sizeof le, m, bd[i]);
        else
            snprintf(le, sizeof le, "+Inf");
        rc = buf_printf(b, "%s_bucket", name);
        rc = rc ? rc : put_labels(b, s, m, le);
        rc = rc ? rc : buf_printf(b, " %llu\n", (unsigned long long)cum);
    }
    rc = rc ? rc : buf_printf(b, "%s_sum", name);
    rc = rc ? rc : put_labels(b, s, m, NULL);
    if (families[m].type == HIST_SECONDS)
        rc = rc ? rc : buf_printf(b, " %.6f\n", (double)sum / 1e6);
    else
        rc = rc ? rc : buf_printf(b, " %llu\n", (unsigned long long)sum);
    rc = rc ? rc : buf_printf(b, "%s_count", name);
    rc = rc ? rc : put_labels(b, s, m, NULL);
    return rc ? rc : buf_printf(b, " %llu\n", (unsigned long long)cum);
}

static int put_series(struct buf *b, const struct series *s, enum metric m)
{
    uint64_t v = atomic_load_explicit(&s->v, memory_order_relaxed);
    int rc;

    if (families[m].type == HIST_SECONDS || families[m].type == HIST_COUNT)
        return put_histogram(b, s, m);
    rc = buf_puts(b, families[m].name);
    rc = rc ? rc : put_labels(b, s, m, NULL);
    if (families[m].type == GAUGE)
        return rc ? rc : buf_printf(b, " %lld\n", (long long)(int64_t)v);
    return rc ? rc : buf_printf(b, " %llu\n", (unsigned long long)v);
}

static int by_metric_then_age(const void *a, const void *b)
{
    const struct series *x = *(const struct series *const *)a,
                        *y = *(const struct series *const *)b;

    if (x->metric != y->metric)
        return x->metric < y->metric ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static const char *type_word(enum mtype t)
{
    return t == COUNTER ? "counter" : t == GAUGE ? "gauge" : "histogram";
}

int metrics_format(struct buf *b)
{
    struct series **v = malloc(METRICS_SERIES * sizeof(*v));
    size_t n = 0, k = 0;
    int rc = SP_OK;

    if (!v)
        return SP_ERR_NOMEM;
    for (size_t i = 0; i < METRICS_SERIES; i++)
        if (atomic_load_explicit(&table[i].ready, memory_order_acquire))
            v[n++] = &table[i];
    qsort(v, n, sizeof(*v), by_metric_then_age);
    for (int m = 0; m < METRIC_COUNT && !rc; m++) {
        const struct family *f = &families[m];
        rc = buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                        type_word(f->type));
        if (!labelled((enum metric)m))
            rc = rc ? rc : put_series(b, &fixed[m], (enum metric)m);
        for (; !rc && k < n && v[k]->metric == m; k++)
            rc = put_series(b, v[k], (enum metric)m);
    }
    free(v);
    return rc;
}
