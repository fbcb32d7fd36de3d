/*
 * inspect_cli.c - sealpipe inspect [<serial> | --all]: the Live Inspector
 * from a shell, like tail -f.
 *
 * It connects to the running daemon's <data_dir>/inspect.sock (a unix
 * socket only the daemon's user can reach: no secret on the command line),
 * sends one request line (transport/inspectd.h) and prints each event: one
 * readable line (coloured on a terminal, unless NO_COLOR is set), or with
 * --json the event's JSON object as the daemon sent it.
 */
#include "inspect_cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "base/arena.h"
#include "base/buf.h"
#include "base/timespan.h"
#include "base/json.h"
#include "base/termtext.h"
#include "conf.h"
#include "storage/dataquery.h"
#include "storage/datadir.h"
#include "sp_cmdline.h"
#include "transport/inspectd.h"

struct inspect_args {
    const char *serial;
    int all, json, plaintext, follow;
    int64_t since_ms;
    int color;
};

static const char usage_text[] =
    "usage: sealpipe inspect <serial> | --all [options]\n"
    "\n"
    "Follows what happens to a device in the running daemon, as TagoIO's Live\n"
    "Inspector shows it: connections, subscriptions, refused logins and denials,\n"
    "messages received, envelopes opened or rejected, analysis log lines, records\n"
    "stored, dead letters, answers and commands sent. Stop it with Ctrl-C.\n"
    "\n"
    "  --all              every device (and what belongs to none: refused logins)\n"
    "  --since DURATION   start with the events kept from that long ago, e.g. 10m\n"
    "                     (the daemon keeps about the last 500 events per device)\n"
    "  --no-follow        print the kept events and exit\n"
    "  --json             one JSON object per line, as the daemon sends them;\n"
    "                     {\"kind\":\"live\"} comes after the kept events\n"
    "  --plaintext        include opened envelopes' plaintext (first 256 bytes)\n"
    "  --data-dir DIR, --config FILE   as for sealpipe run\n";

/* ---- the readable line -------------------------------------------------- */

static const char *kind_color(const char *kind)
{
    static const struct {
        const char *kind, *color;
    } colors[] = {
        {"connect", "32"},
        {"stored", "32"},
        {"subscribe", "36"},
        {"message", "36"},
        {"trigger", "36"},
        {"envelope", "36"},
        {"sent", "34"},
        {"disconnect", "33"},
        {"duplicate", "33"},
        {"ignored", "33"},
        {"log", "35"},
        {"dead_letter", "31"},
        {"refused", "31"},
        {"denied", "31"},
        {"login_refused", "31"},
        {"dropped", "31"},
        {"events_dropped", "31"},
    };
    for (size_t i = 0; i < sizeof colors / sizeof colors[0]; i++)
        if (strcmp(colors[i].kind, kind) == 0)
            return colors[i].color;
    return "0";
}

/*
 * A string as the terminal should see it (base/termtext.h: what a device
 * sent may hold escape sequences), quoted when it holds one of those, a
 * space, a quote, '=' or a backslash.
 */
static void print_string(FILE *f, const char *s, size_t n)
{
    char esc[TERMTEXT_ESC_MAX];
    int quote = n == 0 || strcspn(s, " \t\"=\\") < n || termtext_unsafe(s, n, 0);

    if (quote)
        putc('"', f);
    for (size_t i = 0; i < n; i++) {
        size_t k = termtext_escape(s, n, i, 0, esc);
        if (k) {
            fputs(esc, f);
            i += k - 1;
        } else if (quote && (s[i] == '"' || s[i] == '\\')) {
            fprintf(f, "\\%c", s[i]);
        } else {
            putc(s[i], f);
        }
    }
    if (quote)
        putc('"', f);
}

/* A value as key=value. */
static void print_value(FILE *f, const struct json *v, struct buf *tmp)
{
    if (v->type == JSON_STRING) {
        print_string(f, v->str, v->len);
        return;
    }
    buf_reset(tmp);
    if (json_write(tmp, v) == 0)
        fputs(tmp->p, f);
}

static void print_time(FILE *f, double at)
{
    time_t t = (time_t)(at / 1000);
    struct tm tm;
    char s[16];

    localtime_r(&t, &tm);
    strftime(s, sizeof s, "%H:%M:%S", &tm);
    fprintf(f, "%s.%03d", s, (int)((int64_t)at % 1000));
}

static void print_event(const struct inspect_args *a, const struct json *o, struct buf *tmp)
{
    const struct json *at = json_get(o, "at"), *dev = json_get(o, "device"),
                      *kind = json_get(o, "kind");
    const char *k = kind && kind->type == JSON_STRING ? kind->str : "?";
    const char *d = dev && dev->type == JSON_STRING && *dev->str ? dev->str : "-";

    if (strcmp(k, "live") == 0) {
        printf(a->color ? "\033[2m--- live ---\033[0m\n" : "--- live ---\n");
        return;
    }
    if (at && at->type == JSON_NUMBER)
        print_time(stdout, at->number);
    if (a->color)
        printf(" %-12s \033[%sm%-13s\033[0m", d, kind_color(k), k);
    else
        printf(" %-12s %-13s", d, k);
    for (const struct json *m = o->child; m; m = m->next) {
        if (!strcmp(m->key, "at") || !strcmp(m->key, "device") || !strcmp(m->key, "kind") ||
            !strcmp(m->key, "seq"))
            continue;
        printf(" %s=", m->key);
        print_value(stdout, m, tmp);
    }
    putchar('\n');
}

/* ---- the connection ----------------------------------------------------- */

/* 1 if the registry has the device; else 0 after saying so (a mistyped
 * serial would otherwise wait for events that never come). */
static int known_device(const char *data_dir, const char *serial)
{
    struct dataquery_db *d;
    char err[1024];
    int rc;

    if (datadir_check(data_dir, err, sizeof err) != SP_OK ||
        dataquery_open(data_dir, &d, err, sizeof err) != SP_OK) {
        fprintf(stderr, "sealpipe inspect: %s\n", err);
        return 0;
    }
    rc = dataquery_device_exists(d, serial, err, sizeof err);
    dataquery_close(d);
    if (rc == 0)
        fprintf(stderr, "sealpipe inspect: no such device '%.100s' (see sealpipe device list)\n",
                serial);
    else if (rc < 0)
        fprintf(stderr, "sealpipe inspect: %s\n", err);
    return rc == 1;
}

static int connect_daemon(const char *data_dir)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;

    if ((size_t)snprintf(sa.sun_path, sizeof sa.sun_path, "%s/%s", data_dir, INSPECTD_WATCH_SOCK) >=
        sizeof sa.sun_path) {
        fprintf(stderr, "sealpipe inspect: data directory path too long for a unix socket\n");
        return -1;
    }
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(stderr,
                "sealpipe inspect: cannot reach the daemon at %s: %s\n"
                "Is `sealpipe run` running with this --data-dir?\n",
                sa.sun_path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int send_request(int fd, const struct inspect_args *a)
{
    struct buf b;
    int rc;

    buf_init(&b, 4096);
    rc = buf_puts(&b, "{\"device\":");
    if (!rc && a->serial)
        rc = json_write_string(&b, a->serial, strlen(a->serial));
    else if (!rc)
        rc = buf_puts(&b, "null");
    if (!rc)
        rc = buf_printf(&b, ",\"since_ms\":%lld,\"plaintext\":%s}\n", (long long)a->since_ms,
                        a->plaintext ? "true" : "false");
    if (!rc && write(fd, b.p, b.len) != (ssize_t)b.len)
        rc = -1;
    buf_cleanup(&b);
    return rc;
}

/* One line from the daemon. Returns 1 at the "live" mark with --no-follow,
 * -1 when the daemon refused the watch (said), else 0. */
static int handle_line(const struct inspect_args *a, char *line, size_t len, struct arena *ar,
                       struct buf *tmp)
{
    struct json *o;
    char err[128];

    arena_reset(ar);
    if (json_parse(ar, line, len, &o, err, sizeof err) || o->type != JSON_OBJECT)
        return 0;
    const struct json *k = json_get(o, "kind"), *why = json_get(o, "error");
    int live = k && k->type == JSON_STRING && strcmp(k->str, "live") == 0;
    if (k && k->type == JSON_STRING && strcmp(k->str, "error") == 0) {
        fprintf(stderr, "sealpipe inspect: the daemon refused: %s\n",
                why && why->type == JSON_STRING ? why->str : "?");
        return -1;
    }
    if (live && !a->follow)
        return 1;
    if (a->json)
        printf("%s\n", line); /* {"kind":"live"} included: where the kept events end */
    else if (!a->json)
        print_event(a, o, tmp);
    fflush(stdout);
    return 0;
}

/* Reads and prints events until the daemon goes (or the kept ones end). */
static int follow(int fd, const struct inspect_args *a)
{
    static char in[1 << 16];
    size_t len = 0;
    struct arena ar;
    struct buf tmp;
    int rc = 1, done = 0;

    arena_init(&ar, 1u << 20);
    buf_init(&tmp, 1u << 16);
    while (!done) {
        ssize_t n = read(fd, in + len, sizeof in - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "sealpipe inspect: the daemon closed the connection (stopped?)\n");
            break;
        }
        len += (size_t)n;
        char *start = in, *nl;
        while (!done && (nl = memchr(start, '\n', len - (size_t)(start - in))) != NULL) {
            *nl = '\0';
            done = handle_line(a, start, (size_t)(nl - start), &ar, &tmp);
            start = nl + 1;
        }
        len -= (size_t)(start - in);
        memmove(in, start, len);
        if (len == sizeof in - 1)
            len = 0; /* a line longer than any event: skip it */
        rc = done > 0 ? 0 : rc;
    }
    arena_cleanup(&ar);
    buf_cleanup(&tmp);
    return rc;
}

/* ---- the command line --------------------------------------------------- */

enum { O_ALL, O_JSON, O_PLAIN, O_NOFOLLOW, O_SINCE, O_DATA, O_CONFIG, O_HELP, O_N };

static const struct sp__cmdline_opt opts[O_N] = {
    [O_ALL] = {"all", 0},         [O_JSON] = {"json", 0},
    [O_PLAIN] = {"plaintext", 0}, [O_NOFOLLOW] = {"no-follow", 0},
    [O_SINCE] = {"since", 1},     [O_DATA] = {"data-dir", 1},
    [O_CONFIG] = {"config", 1},   [O_HELP] = {"help", 0},
};

static int take(struct inspect_args *a, struct conf *c, const struct sp__cmdline_item *it,
                char *err, size_t errlen)
{
    if (it->kind == SP__CMDLINE_ARG) {
        if (a->serial) {
            sp__cmdline_unexpected(it->value, err, errlen);
            return -1;
        }
        a->serial = it->value;
        return 0;
    }
    switch (it->opt) {
    case O_ALL:
        a->all = 1;
        return 0;
    case O_JSON:
        a->json = 1;
        return 0;
    case O_PLAIN:
        a->plaintext = 1;
        return 0;
    case O_NOFOLLOW:
        a->follow = 0;
        return 0;
    case O_SINCE:
        if (timespan_parse(it->value, &a->since_ms) == 0)
            return 0;
        snprintf(err, errlen, "--since %s: not a duration (e.g. 30s, 10m, 2h, 1d)", it->value);
        return -1;
    case O_DATA:
        return conf_set(c, "data_dir", it->value, err, errlen) ? -1 : 0;
    case O_CONFIG:
        return conf_load_file(c, it->value, err, errlen) ? -1 : 0;
    default:
        return 0;
    }
}

int inspect_main(struct conf *c, int argc, char **argv)
{
    struct inspect_args a = {.follow = 1};
    struct sp__cmdline cl;
    struct sp__cmdline_item it;
    char err[600];

    if (sp__cmdline_wants_help(argc - 1, argv + 1)) {
        fputs(usage_text, stdout);
        return 0;
    }
    sp__cmdline_init(&cl, argc - 1, argv + 1, opts, O_N);
    while (sp__cmdline_next(&cl, &it, err, sizeof err) == 0 && it.kind != SP__CMDLINE_END)
        if (take(&a, c, &it, err, sizeof err)) {
            fprintf(stderr, "sealpipe inspect: %s\n", err);
            return 2;
        }
    if (it.kind != SP__CMDLINE_END) {
        fprintf(stderr, "sealpipe inspect: %s\n", err);
        return 2;
    }
    if (!a.serial == !a.all) {
        fprintf(stderr, "sealpipe inspect: name one device, or --all\n%s", usage_text);
        return 2;
    }
    a.color = !a.json && isatty(STDOUT_FILENO) && !getenv("NO_COLOR");
    if (a.serial && !known_device(c->data_dir, a.serial))
        return 1;
    int fd = connect_daemon(c->data_dir);
    if (fd < 0)
        return 1;
    int rc = send_request(fd, &a) ? 1 : follow(fd, &a);
    close(fd);
    return rc;
}
