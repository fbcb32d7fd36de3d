/*
 * stats.c - `sealpipe stats` (see stats.h).
 *
 * It asks the running daemon, never the database: the counters live in the
 * daemon's memory (base/metrics.h). The address comes from
 * <data_dir>/metrics.addr, which the daemon writes once its endpoint
 * listens and removes when it stops; the request is a plain HTTP/1.0 GET
 * on a socket (the answer ends when the endpoint closes the connection).
 * The text is read back as the Prometheus text format it is: # TYPE lines
 * name the families, samples are `name{labels} value`, and a histogram's
 * _bucket/_sum/_count samples are gathered per label set (le aside).
 */
#include "stats.h"

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/errors.h"
#include "base/json.h"
#include "base/metrics.h"
#include "conf.h"
#include "storage/datadir.h"
#include "sealpipe.h"
#include "sp_cmdline.h"

#define STATS_TIMEOUT_S    5
#define STATS_RESPONSE_MAX (METRICS_FORMAT_MAX + 65536)
#define STATS_FAMILIES_MAX 128
#define STATS_SERIES_MAX   4096
#define STATS_BUCKETS_MAX  32
#define STATS_LABELS_MAX   320 /* label text of one series, le aside */

enum ftype { F_COUNTER, F_GAUGE, F_HISTOGRAM, F_OTHER };

struct family {
    char name[128];
    enum ftype type;
};

struct series {
    size_t family;
    char labels[STATS_LABELS_MAX]; /* a="x",b="y" as sent, without le */
    double value;                  /* counter, gauge */
    double sum, count;             /* histogram */
    size_t nb;
    double le[STATS_BUCKETS_MAX], cum[STATS_BUCKETS_MAX];
};

struct scrape {
    struct family f[STATS_FAMILIES_MAX];
    size_t nf;
    struct series *s;
    size_t ns;
};

/* ---- the request --------------------------------------------------------- */

/* "host:port" or "[v6]:port" from the first line of <data_dir>/metrics.addr. */
static int read_addr(const char *data_dir, char *host, size_t cap, char *port, size_t pcap,
                     char *shown, size_t scap)
{
    char path[600], line[256];
    FILE *f;

    snprintf(path, sizeof path, "%s/metrics.addr", data_dir);
    if (!(f = fopen(path, "r"))) {
        if (datadir_running(data_dir))
            fprintf(stderr,
                    "sealpipe stats: the daemon runs on %s but serves no metrics (metrics_port "
                    "0, or its port was taken: see the daemon's log)\n",
                    data_dir);
        else
            fprintf(stderr,
                    "sealpipe stats: the daemon is not running on %s (no %s; or it runs with "
                    "metrics_port 0)\n",
                    data_dir, path);
        return 1;
    }
    char *ok = fgets(line, sizeof line, f), pidline[32];
    long pid = fgets(pidline, sizeof pidline, f) ? strtol(pidline, NULL, 10) : 0;
    fclose(f);
    /* A daemon killed with SIGKILL leaves the file; another daemon may have
     * taken its port since. */
    if (pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
        fprintf(stderr,
                "sealpipe stats: the daemon is not running on %s (%s is left from "
                "process %ld, which has exited)\n",
                data_dir, path, pid);
        return 1;
    }
    line[strcspn(line, "\r\n")] = '\0';
    char *colon = ok ? strrchr(line, ':') : NULL;
    char *h = line;
    if (colon) {
        *colon = '\0';
        if (*h == '[' && colon > h && colon[-1] == ']') {
            h++;
            colon[-1] = '\0';
        }
    }
    if (!colon || !*h || !colon[1] || strlen(h) >= cap || strlen(colon + 1) >= pcap) {
        fprintf(stderr, "sealpipe stats: %s does not hold ADDR:PORT\n", path);
        return 1;
    }
    snprintf(host, cap, "%s", h);
    snprintf(port, pcap, "%s", colon + 1);
    snprintf(shown, scap, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
    return 0;
}

static int connect_to(const char *host, const char *port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *res;
    struct timeval tv = {.tv_sec = STATS_TIMEOUT_S};
    int fd, rc = getaddrinfo(host, port, &hints, &res);

    if (rc != 0) {
        snprintf(err, errlen, "%s", gai_strerror(rc));
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    /* On Linux the send timeout bounds connect() too. */
    if (fd >= 0 && (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
                    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
                    connect(fd, res->ai_addr, res->ai_addrlen) != 0)) {
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        snprintf(err, errlen, "%s", strerror(errno));
    freeaddrinfo(res);
    return fd;
}

/* GET /metrics; the body (after a 200) in b. Returns 0, or 1 with err set. */
static int fetch(const char *host, const char *port, struct buf *b, char *err, size_t errlen)
{
    static const char req[] = "GET /metrics HTTP/1.0\r\nAccept: text/plain\r\n\r\n";
    char chunk[16384];
    ssize_t n;
    int fd = connect_to(host, port, err, errlen);

    if (fd < 0)
        return 1;
    if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof req - 1)) {
        snprintf(err, errlen, "%s", strerror(errno));
        close(fd);
        return 1;
    }
    while ((n = recv(fd, chunk, sizeof chunk, 0)) > 0)
        if (buf_append(b, chunk, (size_t)n) != SP_OK) {
            snprintf(err, errlen, "answer larger than %u bytes", (unsigned)STATS_RESPONSE_MAX);
            n = -2;
            break;
        }
    if (n == -1)
        snprintf(err, errlen, "%s", strerror(errno));
    close(fd);
    if (n < 0)
        return 1;
    char *body = b->p ? strstr(b->p, "\r\n\r\n") : NULL;
    if (!body || strncmp(b->p, "HTTP/1.", 7) != 0 || strncmp(b->p + 8, " 200", 4) != 0) {
        snprintf(err, errlen, "not a metrics endpoint: %.40s", b->p ? b->p : "(no answer)");
        return 1;
    }
    body += 4;
    b->len -= (size_t)(body - b->p);
    memmove(b->p, body, b->len + 1);
    return 0;
}

/* ---- the text format ----------------------------------------------------- */

/*
 * The next name="value" pair of label text p (n bytes) from *at, the value
 * unescaped. Returns 1, 0 at the end, -1 when it is not label text.
 */
static int next_label(const char *p, size_t n, size_t *at, char *name, size_t ncap, char *val,
                      size_t vcap)
{
    size_t i = *at, k = 0;

    if (i < n && p[i] == ',')
        i++;
    if (i >= n)
        return 0;
    while (i < n && p[i] != '=' && k + 1 < ncap)
        name[k++] = p[i++];
    name[k] = '\0';
    if (i + 1 >= n || p[i] != '=' || p[i + 1] != '"')
        return -1;
    for (i += 2, k = 0; i < n && p[i] != '"'; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n)
            c = p[++i] == 'n' ? '\n' : p[i];
        if (k + 1 < vcap)
            val[k++] = c;
    }
    val[k] = '\0';
    if (i >= n)
        return -1;
    *at = i + 1;
    return 1;
}

/* The label text of p (n bytes) without its le pair, in out; *le its value. */
static int split_le(const char *p, size_t n, char *out, size_t cap, double *le)
{
    char name[64], val[METRICS_LABEL_MAX * 2];
    size_t at = 0, o = 0, start;
    int rc;

    *le = NAN;
    out[0] = '\0';
    for (start = 0; (rc = next_label(p, n, &at, name, sizeof name, val, sizeof val)) == 1;
         start = at) {
        if (strcmp(name, "le") == 0) {
            *le = strcmp(val, "+Inf") == 0 ? INFINITY : strtod(val, NULL);
            continue;
        }
        size_t from = start < n && p[start] == ',' ? start + 1 : start;
        int w = snprintf(out + o, cap - o, "%s%.*s", o ? "," : "", (int)(at - from), p + from);
        if (w < 0 || (size_t)w >= cap - o)
            return -1;
        o += (size_t)w;
    }
    return rc;
}

static size_t family_of(const struct scrape *sc, const char *name, const char **part)
{
    size_t len = strlen(name);

    for (size_t i = 0; i < sc->nf; i++) {
        size_t fl = strlen(sc->f[i].name);
        if (strncmp(name, sc->f[i].name, fl) != 0)
            continue;
        *part = name + fl;
        if (fl == len)
            return i;
        if (sc->f[i].type == F_HISTOGRAM &&
            (!strcmp(*part, "_bucket") || !strcmp(*part, "_sum") || !strcmp(*part, "_count")))
            return i;
    }
    return SIZE_MAX;
}

static struct series *series_of(struct scrape *sc, size_t fam, const char *labels)
{
    for (size_t i = 0; i < sc->ns; i++)
        if (sc->s[i].family == fam && strcmp(sc->s[i].labels, labels) == 0)
            return &sc->s[i];
    if (sc->ns == STATS_SERIES_MAX)
        return NULL;
    struct series *s = &sc->s[sc->ns++];
    memset(s, 0, sizeof *s);
    s->family = fam;
    snprintf(s->labels, sizeof s->labels, "%s", labels);
    return s;
}

/* "# TYPE name type" */
static void take_type(struct scrape *sc, const char *line)
{
    char name[128], type[32];

    if (sc->nf == STATS_FAMILIES_MAX || sscanf(line, "# TYPE %127s %31s", name, type) != 2)
        return;
    struct family *f = &sc->f[sc->nf++];
    snprintf(f->name, sizeof f->name, "%s", name);
    f->type = !strcmp(type, "counter")     ? F_COUNTER
              : !strcmp(type, "gauge")     ? F_GAUGE
              : !strcmp(type, "histogram") ? F_HISTOGRAM
                                           : F_OTHER;
}

/* One sample line; lines this command does not understand are skipped. */
static void take_sample(struct scrape *sc, char *line)
{
    char labels[STATS_LABELS_MAX] = "";
    const char *part = "";
    double le = NAN;
    char *brace = strpbrk(line, "{ ");
    char *rest = brace + 1; /* after the blank, or the label text */

    if (!brace)
        return;
    if (*brace == '{') {
        char *close = brace + 1;
        for (int q = 0; *close && (q || *close != '}'); close++)
            if (*close == '\\' && q && close[1])
                close++;
            else if (*close == '"')
                q = !q;
        if (*close != '}' ||
            split_le(brace + 1, (size_t)(close - brace - 1), labels, sizeof labels, &le) < 0)
            return;
        rest = close + 1;
    }
    *brace = '\0';
    size_t fam = family_of(sc, line, &part);
    struct series *s = fam == SIZE_MAX ? NULL : series_of(sc, fam, labels);
    double v = strtod(rest, NULL);
    if (!s)
        return;
    if (!*part)
        s->value = v;
    else if (!strcmp(part, "_sum"))
        s->sum = v;
    else if (!strcmp(part, "_count"))
        s->count = v;
    else if (s->nb < STATS_BUCKETS_MAX) {
        s->le[s->nb] = le;
        s->cum[s->nb++] = v;
    }
}

static void parse(struct scrape *sc, char *text)
{
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "# TYPE ", 7) == 0)
            take_type(sc, line);
        else if (*line != '#')
            take_sample(sc, line);
    }
}

/*
 * Quantile q of a histogram from its cumulative buckets, by linear
 * interpolation within the bucket the rank falls in (Prometheus'
 * histogram_quantile); NAN when it has no observations.
 */
static double quantile(const struct series *s, double q)
{
    double total = s->nb ? s->cum[s->nb - 1] : 0;

    if (total <= 0)
        return NAN;
    double rank = q * total;
    for (size_t i = 0; i < s->nb; i++) {
        if (s->cum[i] < rank)
            continue;
        double lo = i ? s->le[i - 1] : 0, clo = i ? s->cum[i - 1] : 0;
        if (isinf(s->le[i]))
            return lo;
        if (s->cum[i] == clo)
            return s->le[i];
        return lo + (s->le[i] - lo) * (rank - clo) / (s->cum[i] - clo);
    }
    return NAN;
}

/* ---- output -------------------------------------------------------------- */

static void print_text(const struct scrape *sc, const char *addr)
{
    char started[64] = "?";

    for (size_t i = 0; i < sc->ns; i++)
        if (!strcmp(sc->f[sc->s[i].family].name, "sealpipe_start_time_seconds")) {
            time_t t = (time_t)sc->s[i].value;
            strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
        }
    printf("sealpipe stats from %s: counts since the daemon started (%s)\n\n", addr, started);
    for (size_t i = 0; i < sc->ns; i++) {
        const struct series *s = &sc->s[i];
        const struct family *f = &sc->f[s->family];
        char name[512];
        snprintf(name, sizeof name, "%s%s%s%s",
                 f->name + (strncmp(f->name, "sealpipe_", 9) ? 0 : 9), *s->labels ? "{" : "",
                 s->labels, *s->labels ? "}" : "");
        if (f->type != F_HISTOGRAM) {
            printf("  %-60s %.15g\n", name, s->value);
            continue;
        }
        printf("  %-60s count %.15g", name, s->count);
        if (s->count > 0)
            printf("  avg %.6g  p50 %.6g  p99 %.6g", s->sum / s->count, quantile(s, 0.5),
                   quantile(s, 0.99));
        printf("\n");
    }
}

static int json_labels(struct buf *b, const char *labels)
{
    char name[64], val[METRICS_LABEL_MAX * 2];
    size_t at = 0, n = strlen(labels);
    int rc = buf_putc(b, '{'), first = 1;

    while (!rc && next_label(labels, n, &at, name, sizeof name, val, sizeof val) == 1) {
        rc = (!first && buf_putc(b, ',')) || json_write_string(b, name, strlen(name)) ||
             buf_putc(b, ':') || json_write_string(b, val, strlen(val));
        first = 0;
    }
    return rc || buf_putc(b, '}');
}

static int json_num(struct buf *b, const char *key, double v)
{
    return buf_printf(b, ",\"%s\":", key) || json_write_number(b, v);
}

static int json_series(struct buf *b, const struct scrape *sc, const struct series *s)
{
    int rc = buf_puts(b, "{\"labels\":") || json_labels(b, s->labels);

    if (sc->f[s->family].type != F_HISTOGRAM)
        return rc || json_num(b, "value", s->value) || buf_putc(b, '}');
    return rc || json_num(b, "count", s->count) || json_num(b, "sum", s->sum) ||
           json_num(b, "avg", s->count > 0 ? s->sum / s->count : NAN) ||
           json_num(b, "p50", quantile(s, 0.5)) || json_num(b, "p99", quantile(s, 0.99)) ||
           buf_putc(b, '}');
}

/* {"address":..., "metrics":{name:[series...], ...}} */
static int print_json(const struct scrape *sc, const char *addr)
{
    struct buf b;
    int rc;

    buf_init(&b, STATS_RESPONSE_MAX * 2);
    rc = buf_puts(&b, "{\"address\":") || json_write_string(&b, addr, strlen(addr)) ||
         buf_puts(&b, ",\"metrics\":{");
    for (size_t f = 0; f < sc->nf && !rc; f++) {
        rc = (f && buf_putc(&b, ',')) ||
             json_write_string(&b, sc->f[f].name, strlen(sc->f[f].name)) || buf_puts(&b, ":[");
        for (size_t i = 0, first = 1; i < sc->ns && !rc; i++)
            if (sc->s[i].family == f) {
                rc = (!first && buf_putc(&b, ',')) || json_series(&b, sc, &sc->s[i]);
                first = 0;
            }
        rc = rc || buf_putc(&b, ']');
    }
    rc = rc || buf_puts(&b, "}}\n");
    if (!rc)
        fputs(b.p, stdout);
    buf_cleanup(&b);
    return rc ? 1 : 0;
}

/* ---- the command --------------------------------------------------------- */

static const char usage_text[] =
    "usage: sealpipe stats [--json] [--data-dir DIR] [--config FILE]\n"
    "  Prints the running daemon's metrics: counters since it started, gauges, and\n"
    "  latency histograms as count, average, p50 and p99 (estimated from the buckets).\n"
    "  It reads them from the daemon's /metrics endpoint, at the address the daemon\n"
    "  wrote to <data_dir>/metrics.addr.\n"
    "  --json                 print one JSON object\n";

enum { S_JSON, S_DATA_DIR, S_ANALYSES_DIR, S_CONFIG, S_HELP, S_NOPTS };

/* Reads the options into c, --config first (--analyses-dir, which every
 * registry command takes, is accepted and not used); *json. Returns 0, or 2. */
static int parse_args(struct conf *c, int argc, char **argv, int *json)
{
    static const struct sp__cmdline_opt t[S_NOPTS] = {
        {"json", 0}, {"data-dir", 1}, {"analyses-dir", 1}, {"config", 1}, {"help", 0}};
    char err[CONF_ERR_MAX];
    const char *data_dir = NULL;
    struct sp__cmdline cl;
    struct sp__cmdline_item it;
    int rc = SP_OK;

    sp__cmdline_init(&cl, argc - 1, argv + 1, t, S_NOPTS);
    while (rc == SP_OK && (rc = sp__cmdline_next(&cl, &it, err, sizeof err)) == SP_OK &&
           it.kind != SP__CMDLINE_END) {
        if (it.kind == SP__CMDLINE_ARG) {
            sp__cmdline_unexpected(it.value, err, sizeof err);
            rc = SP_ERR_CONFIG;
        } else if (it.opt == S_JSON) {
            *json = 1;
        } else if (it.opt == S_DATA_DIR) {
            data_dir = it.value;
        } else if (it.opt == S_CONFIG) {
            rc = conf_load_file(c, it.value, err, sizeof err);
        }
    }
    if (rc == SP_OK && data_dir)
        rc = conf_set(c, "data_dir", data_dir, err, sizeof err);
    if (rc != SP_OK) {
        fprintf(stderr, "sealpipe stats: %s\n", err);
        return 2;
    }
    return 0;
}

int stats_command(struct conf *c, int argc, char **argv)
{
    char host[128], port[16], addr[160], err[256];
    struct scrape *sc;
    struct buf b;
    int json = 0, rc;

    if (sp__cmdline_wants_help(argc - 1, argv + 1)) {
        fputs(usage_text, stdout);
        return 0;
    }
    if ((rc = parse_args(c, argc, argv, &json)))
        return rc;
    if (read_addr(c->data_dir, host, sizeof host, port, sizeof port, addr, sizeof addr))
        return 1;
    buf_init(&b, STATS_RESPONSE_MAX);
    if (fetch(host, port, &b, err, sizeof err)) {
        fprintf(stderr, "sealpipe stats: no metrics from %s (%s): is the daemon running?\n", addr,
                err);
        buf_cleanup(&b);
        return 1;
    }
    sc = calloc(1, sizeof *sc);
    if (sc)
        sc->s = calloc(STATS_SERIES_MAX, sizeof *sc->s);
    if (!sc || !sc->s) {
        fprintf(stderr, "sealpipe stats: out of memory\n");
        rc = 1;
    } else {
        parse(sc, b.p ? b.p : (char *)"");
        if (json)
            rc = print_json(sc, addr);
        else
            print_text(sc, addr);
    }
    if (sc)
        free(sc->s);
    free(sc);
    buf_cleanup(&b);
    return rc;
}
