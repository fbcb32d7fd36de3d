/*
 * query.c - sealpipe query <serial>: the command line and the three outputs
 * (a table, JSON lines, CSV) of a data query; the query itself is
 * storage/dataquery.c.
 *
 * main.c hands over argv from "query" on. Everything on the command line is
 * read and checked before anything on disk is touched, so a usage error
 * (exit 2) needs no data directory. Then the data directory must exist and
 * hold sealpipe.db (datadir_check), which is opened read-only: the command
 * creates nothing and works while the daemon writes. Relative times ("1h")
 * are taken from the clock once, when the command line is read.
 *
 * The table is printed after the last row (its columns fit the widest cell,
 * and a column no row fills is left out); JSON and CSV rows are printed as
 * they come.
 */
#include "query.h"
#include "base/errors.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/arena.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/json.h"
#include "base/record.h"
#include "base/sp_limits.h"
#include "base/termtext.h"
#include "conf.h"
#include "sealpipe.h"
#include "sp_cmdline.h"
#include "sp_text.h"
#include "storage/datadir.h"
#include "storage/dataquery.h"
#include "storage/dataquery_args.h"

static const char usage_text[] =
    "usage: sealpipe query <serial> [options]\n"
    "\n"
    "Prints a device's stored records, newest first, as TagoIO's data queries do\n"
    "(GET /data: variable, qty, skip, start_date, end_date, groups, ordination).\n"
    "Reads <data_dir>/sealpipe.db read-only; works while the daemon runs.\n"
    "\n"
    "  --variable NAME     only this variable (lowercased, as stored); repeat for more\n"
    "  --qty N             at most N rows, 1-10000 (default 15, as TagoIO)\n"
    "  --skip N            skip the first N rows (default 0)\n"
    "  --start TIME        records at or after TIME\n"
    "  --end TIME          records at or before TIME\n"
    "                      TIME: ISO 8601 (2026-12-01T10:00:00Z, +01:00 offsets, no\n"
    "                      zone is UTC), a date (2026-12-01: its midnight UTC), or\n"
    "                      that long before now: 30s, 10m, 1h, 7d, 2w\n"
    "  --group G           only records of group G\n"
    "  --order asc|desc    oldest or newest first (default desc, as TagoIO)\n"
    "  --agg F             one row per variable instead of the records:\n"
    "                        last, first  the newest / oldest record\n"
    "                        count        how many records\n"
    "                        min, max     the record with the smallest / largest number\n"
    "                                     (of equal ones, the newest)\n"
    "                        avg, sum     of the numbers; the unit shown when all agree\n"
    "                      min, max, avg and sum skip strings, booleans and records\n"
    "                      without a value (a variable with no number has no row)\n"
    "  --interval LEN      with --agg: one row per variable and interval of LEN (30s,\n"
    "                      15m, 1h, 1d, 1w), intervals aligned to the Unix epoch (UTC\n"
    "                      midnight for days; weeks start on Thursdays); rows in time\n"
    "                      order per --order, then by variable\n"
    "  --json              one JSON object per line, TagoIO's record fields (variable,\n"
    "                      value, unit, time, group, location, metadata; \"interval\",\n"
    "                      the interval's start, with --interval)\n"
    "  --csv               a header line, then one line per row (RFC 4180 quoting)\n"
    "  --data-dir DIR      where sealpipe.db is (default ./sealpipe-data)\n"
    "  --config FILE       read options from a config file first\n"
    "\n"
    "--qty and --skip count the rows printed, aggregated or not. The table cuts\n"
    "cells longer than 60 characters; --json and --csv print them whole. A known\n"
    "device without matching data prints nothing (a CSV header only) and exits 0.\n";

enum opt {
    OPT_VARIABLE,
    OPT_QTY,
    OPT_SKIP,
    OPT_START,
    OPT_END,
    OPT_GROUP,
    OPT_ORDER,
    OPT_AGG,
    OPT_INTERVAL,
    OPT_JSON,
    OPT_CSV,
    OPT_DATA_DIR,
    OPT_CONFIG,
    OPT_HELP,
    NOPTS
};

static const struct sp__cmdline_opt opts[NOPTS] = {
    [OPT_VARIABLE] = {"variable", 1}, [OPT_QTY] = {"qty", 1},   [OPT_SKIP] = {"skip", 1},
    [OPT_START] = {"start", 1},       [OPT_END] = {"end", 1},   [OPT_GROUP] = {"group", 1},
    [OPT_ORDER] = {"order", 1},       [OPT_AGG] = {"agg", 1},   [OPT_INTERVAL] = {"interval", 1},
    [OPT_JSON] = {"json", 0},         [OPT_CSV] = {"csv", 0},   [OPT_DATA_DIR] = {"data-dir", 1},
    [OPT_CONFIG] = {"config", 1},     [OPT_HELP] = {"help", 0},
};

#define QUERY_MAX_CONFIGS 8

enum format { FORMAT_TABLE, FORMAT_JSON, FORMAT_CSV };

/* The command line as given (values point into argv), then as understood. */
struct query_args {
    const char *val[NOPTS]; /* the last value of each option; flags: "" */
    const char *serial;
    struct dataquery_args dq; /* the variables; the rest is copied from val at the end */
    const char *configs[QUERY_MAX_CONFIGS];
    int nconfigs;
    enum format format;
    struct dataquery q;
};

/* ---- reading the command line ------------------------------------------------ */

/* Records one option; returns 0 or SP_ERR_CONFIG with err set. */
static int take_option(struct query_args *a, size_t o, const char *v, char *err, size_t errlen)
{
    if (o == OPT_VARIABLE)
        return dataquery_args_variable(&a->dq, v, err, errlen);
    if (o == OPT_CONFIG) {
        if (a->nconfigs >= QUERY_MAX_CONFIGS) {
            snprintf(err, errlen, "more than %d --config options", QUERY_MAX_CONFIGS);
            return SP_ERR_CONFIG;
        }
        a->configs[a->nconfigs++] = v;
        return SP_OK;
    }
    if (a->val[o] && o != OPT_DATA_DIR) {
        snprintf(err, errlen, "option '--%s' given twice", opts[o].name);
        return SP_ERR_CONFIG;
    }
    a->val[o] = v ? v : "";
    return SP_OK;
}

/* Reads argv (what follows "query") into a. Returns 0 or SP_ERR_CONFIG. */
static int scan(int argc, char **argv, struct query_args *a, char *err, size_t errlen)
{
    struct sp__cmdline cl;
    struct sp__cmdline_item it;
    int rc;

    sp__cmdline_init(&cl, argc, argv, opts, NOPTS);
    while ((rc = sp__cmdline_next(&cl, &it, err, errlen)) == SP_OK && it.kind != SP__CMDLINE_END) {
        if (it.kind == SP__CMDLINE_OPTION) {
            if ((rc = take_option(a, it.opt, it.value, err, errlen)))
                return rc;
        } else if (!a->serial) {
            a->serial = it.value;
        } else {
            sp__cmdline_unexpected(it.value, err, errlen);
            return SP_ERR_CONFIG;
        }
    }
    if (rc)
        return SP_ERR_CONFIG;
    if (!a->serial) {
        snprintf(err, errlen, "missing <serial> (see --help)");
        return SP_ERR_CONFIG;
    }
    if (!sp_serial_valid(a->serial, strlen(a->serial))) {
        snprintf(err, errlen, "bad serial '%s' (1-100 characters of A-Z a-z 0-9 _ -)", a->serial);
        return SP_ERR_CONFIG;
    }
    return SP_OK;
}

/* Turns the options into a->q and a->format. Returns 0 or SP_ERR_CONFIG. */
static int understand(struct query_args *a, int64_t now, char *err, size_t errlen)
{
    const char *const *v = a->val;
    struct dataquery_args *dq = &a->dq;

    dq->qty = v[OPT_QTY];
    dq->skip = v[OPT_SKIP];
    dq->start = v[OPT_START];
    dq->end = v[OPT_END];
    dq->group = v[OPT_GROUP];
    dq->order = v[OPT_ORDER];
    dq->agg = v[OPT_AGG];
    dq->interval = v[OPT_INTERVAL];
    if (dataquery_args_apply(dq, a->serial, now, &a->q, err, errlen))
        return SP_ERR_CONFIG;
    if (v[OPT_JSON] && v[OPT_CSV]) {
        snprintf(err, errlen, "--json and --csv: choose one");
        return SP_ERR_CONFIG;
    }
    a->format = v[OPT_JSON] ? FORMAT_JSON : v[OPT_CSV] ? FORMAT_CSV : FORMAT_TABLE;
    return SP_OK;
}

/* --config files (first, in order), then --data-dir. */
static int apply_conf(const struct query_args *a, struct conf *conf, char *err, size_t errlen)
{
    int rc = SP_OK;

    for (int i = 0; i < a->nconfigs && rc == SP_OK; i++)
        rc = conf_load_file(conf, a->configs[i], err, errlen);
    if (rc == SP_OK && a->val[OPT_DATA_DIR])
        rc = conf_set(conf, "data_dir", a->val[OPT_DATA_DIR], err, errlen);
    return rc;
}

/* ---- the outputs ------------------------------------------------------------- */

/* The table's columns, in order; CSV has the same, location split in three. */
enum col {
    C_INTERVAL,
    C_TIME,
    C_VARIABLE,
    C_VALUE,
    C_UNIT,
    C_GROUP,
    C_LOCATION,
    C_METADATA,
    NCOLS
};

static const char *const col_names[NCOLS] = {"interval", "time",  "variable", "value",
                                             "unit",     "group", "location", "metadata"};

/* Cells longer than this are cut in the table. */
#define QUERY_CELL_MAX 60

struct output {
    enum format format;
    int with_interval;     /* CSV: the interval column */
    struct arena *scratch; /* the row dataquery_run hands over, reset after each */
    struct arena *keep;    /* the table's cells */
    const char **cells;    /* nrows * NCOLS, in keep */
    size_t nrows, cap;
    struct buf line;
    int tty; /* stdout is a terminal: CSV's control characters are blanked too */
};

static const char *iso_or_empty(int has, int64_t ms, char out[ISO8601_LEN])
{
    if (!has)
        return "";
    if (iso8601_format(ms, out) < 0)
        snprintf(out, ISO8601_LEN, "%lld", (long long)ms);
    return out;
}

/* A number as JSON writes it. */
static const char *number_text(double v, char out[40])
{
    if (sp__double_format(v, 0, out, 40) < 0)
        snprintf(out, 40, "null");
    return out;
}

/* The record's value as text: number, true/false, the string, or "". */
static const char *value_text(const struct record *r, char num[40])
{
    switch (r->type) {
    case RECORD_NUMBER:
        return number_text(r->number, num);
    case RECORD_BOOLEAN:
        return r->boolean ? "true" : "false";
    case RECORD_STRING:
        return r->string ? r->string : "";
    case RECORD_NONE:
        break;
    }
    return "";
}

/* Appends s as one CSV field: quoted when it holds a comma, a quote or a
 * line break, quotes doubled (RFC 4180). */
static int csv_field(struct buf *b, const char *s, int first)
{
    int rc = first ? 0 : buf_putc(b, ',');

    if (rc || !strpbrk(s, ",\"\r\n"))
        return rc ? rc : buf_puts(b, s);
    rc = buf_putc(b, '"');
    for (; !rc && *s; s++)
        rc = *s == '"' ? buf_puts(b, "\"\"") : buf_putc(b, *s);
    return rc ? rc : buf_putc(b, '"');
}

static int csv_header(struct buf *b, int with_interval)
{
    static const char *const names[] = {"variable", "value", "unit", "time",    "group",
                                        "lat",      "lng",   "alt",  "metadata"};
    int rc = with_interval ? buf_puts(b, "interval,") : 0;

    for (size_t i = 0; !rc && i < sizeof names / sizeof names[0]; i++)
        rc = csv_field(b, names[i], i == 0);
    return rc ? rc : buf_putc(b, '\n');
}

static int csv_row(struct buf *b, const struct dataquery_row *row, int with_interval)
{
    const struct record *r = &row->rec;
    char iso[ISO8601_LEN], num[40], lat[40] = "", lng[40] = "", alt[40] = "";
    int rc = 0;

    if (with_interval && !(rc = csv_field(b, iso_or_empty(1, row->interval_ms, iso), 1)))
        rc = buf_putc(b, ',');
    if (r->has_location) {
        number_text(r->lat, lat);
        number_text(r->lng, lng);
        if (r->has_alt)
            number_text(r->alt, alt);
    }
    const char *f[] = {r->variable,
                       value_text(r, num),
                       r->unit ? r->unit : "",
                       iso_or_empty(r->has_time, r->time_ms, iso),
                       r->group ? r->group : "",
                       lat,
                       lng,
                       alt,
                       r->metadata ? r->metadata : ""};
    for (size_t i = 0; !rc && i < sizeof f / sizeof f[0]; i++)
        rc = csv_field(b, f[i], i == 0);
    return rc ? rc : buf_putc(b, '\n');
}

/* record_to_json's object, with "interval" before its closing brace. */
static int json_row(struct buf *b, const struct dataquery_row *row)
{
    char iso[ISO8601_LEN];
    int rc = record_to_json(b, &row->rec);

    if (!rc && row->has_interval) {
        b->len--; /* the '}' */
        rc = buf_printf(b, ",\"interval\":\"%s\"}", iso_or_empty(1, row->interval_ms, iso));
    }
    return rc ? rc : buf_putc(b, '\n');
}

/* A copy of s in the arena for a table cell: control characters (a line
 * break in a string value, an escape sequence) as spaces, cut to
 * QUERY_CELL_MAX characters with "...". */
static const char *cell(struct arena *a, const char *s)
{
    size_t n = strlen(s);
    char *c;

    if (n > QUERY_CELL_MAX) {
        n = QUERY_CELL_MAX - 3;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--; /* not inside a UTF-8 sequence */
    }
    if (!(c = arena_printf(a, "%.*s%s", (int)n, s, s[n] ? "..." : "")))
        return NULL;
    termtext_blank(c, strlen(c));
    return c;
}

/* Keeps one row's cells for the table. */
static int table_row(struct output *o, const struct dataquery_row *row)
{
    const struct record *r = &row->rec;
    char iso[ISO8601_LEN], iso2[ISO8601_LEN], num[40], loc[128] = "";

    if (o->nrows == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        const char **c = arena_calloc(o->keep, cap * NCOLS, sizeof *c);
        if (!c)
            return SP_ERR_NOMEM;
        if (o->nrows)
            memcpy(c, o->cells, o->nrows * NCOLS * sizeof *c);
        o->cells = c;
        o->cap = cap;
    }
    if (r->has_location) {
        char a[40], b[40], h[40];
        snprintf(loc, sizeof loc, "%s,%s%s%s", number_text(r->lat, a), number_text(r->lng, b),
                 r->has_alt ? "," : "", r->has_alt ? number_text(r->alt, h) : "");
    }
    const char *v[NCOLS] = {
        [C_INTERVAL] = iso_or_empty(row->has_interval, row->interval_ms, iso2),
        [C_TIME] = iso_or_empty(r->has_time, r->time_ms, iso),
        [C_VARIABLE] = r->variable,
        [C_VALUE] = value_text(r, num),
        [C_UNIT] = r->unit ? r->unit : "",
        [C_GROUP] = r->group ? r->group : "",
        [C_LOCATION] = loc,
        [C_METADATA] = r->metadata ? r->metadata : "",
    };
    const char **out = o->cells + o->nrows * NCOLS;
    for (int i = 0; i < NCOLS; i++)
        if (!(out[i] = cell(o->keep, v[i])))
            return SP_ERR_NOMEM;
    o->nrows++;
    return SP_OK;
}

/* dataquery_row_fn: prints a JSON or CSV row, or keeps a table row. */
static int on_row(void *ctx, const struct dataquery_row *row)
{
    struct output *o = ctx;
    int rc;

    if (o->format == FORMAT_TABLE) {
        rc = table_row(o, row);
    } else {
        buf_reset(&o->line);
        rc = o->format == FORMAT_JSON ? json_row(&o->line, row)
                                      : csv_row(&o->line, row, o->with_interval);
        /* Piped, CSV keeps every byte (a line break in a quoted field
         * included); on a terminal, for eyes, only its own line end. */
        if (!rc && o->format == FORMAT_CSV && o->tty)
            termtext_blank(o->line.p, o->line.len - 1);
        if (!rc)
            fwrite(o->line.p, 1, o->line.len, stdout);
    }
    /* The row is printed or copied: its strings may go. */
    arena_reset(o->scratch);
    return rc;
}

/* Characters of UTF-8 text s, for column widths. */
static size_t text_width(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Appends s padded to width + 2 characters. */
static int put_padded(struct buf *b, const char *s, size_t width)
{
    int rc = buf_puts(b, s);

    for (size_t n = text_width(s); !rc && n < width + 2; n++)
        rc = buf_putc(b, ' ');
    return rc;
}

/* Prints one line of the table's shown columns, without trailing blanks. */
static void table_line(struct buf *b, const char *const *cells, const int *shown,
                       const size_t *width)
{
    int rc = 0;

    buf_reset(b);
    for (int c = 0; !rc && c < NCOLS; c++)
        if (shown[c])
            rc = put_padded(b, cells[c], width[c]);
    while (b->len > 0 && b->p[b->len - 1] == ' ')
        b->len--;
    if (!rc)
        printf("%.*s\n", (int)b->len, b->p);
}

/* The kept rows as a table: a header, then the rows; columns no row fills
 * are left out (variable and value always shown). */
static void table_print(struct output *o)
{
    size_t width[NCOLS] = {0};
    int shown[NCOLS] = {[C_VARIABLE] = 1, [C_VALUE] = 1};

    if (o->nrows == 0)
        return;
    for (size_t r = 0; r < o->nrows; r++)
        for (int c = 0; c < NCOLS; c++) {
            size_t w = text_width(o->cells[r * NCOLS + c]);
            shown[c] |= w > 0;
            width[c] = w > width[c] ? w : width[c];
        }
    for (int c = 0; c < NCOLS; c++)
        width[c] = strlen(col_names[c]) > width[c] ? strlen(col_names[c]) : width[c];
    table_line(&o->line, col_names, shown, width);
    for (size_t r = 0; r < o->nrows; r++)
        table_line(&o->line, o->cells + r * NCOLS, shown, width);
}

/* ---- the command ------------------------------------------------------------- */

/* Runs the understood query against the data directory. Returns the exit status. */
static int run_query(const struct query_args *a, const char *data_dir)
{
    struct dataquery_db *d = NULL;
    struct output o = {
        .format = a->format, .with_interval = a->q.interval_ms > 0, .tty = isatty(STDOUT_FILENO)};
    struct arena scratch, keep;
    char err[1024];
    int rc, status = 1;

    if (datadir_check(data_dir, err, sizeof err) != SP_OK ||
        dataquery_open(data_dir, &d, err, sizeof err) != SP_OK) {
        fprintf(stderr, "sealpipe query: %s\n", err);
        return 1;
    }
    if ((rc = dataquery_device_exists(d, a->serial, err, sizeof err)) != 1) {
        if (rc == 0)
            fprintf(stderr, "sealpipe query: no such device '%s' (see sealpipe device list)\n",
                    a->serial);
        else
            fprintf(stderr, "sealpipe query: %s\n", err);
        dataquery_close(d);
        return 1;
    }
    arena_init(&scratch, SP_LIMIT_ARENA);
    arena_init(&keep, SP_LIMIT_ARENA);
    buf_init(&o.line, 4u * 1024 * 1024);
    o.scratch = &scratch;
    o.keep = &keep;
    rc = SP_OK;
    if (a->format == FORMAT_CSV && (rc = csv_header(&o.line, o.with_interval)) == SP_OK)
        fwrite(o.line.p, 1, o.line.len, stdout);
    rc = rc ? rc : dataquery_run(d, &a->q, &scratch, on_row, &o, err, sizeof err);
    if (rc == SP_OK) {
        table_print(&o);
        status = fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
        if (status)
            fprintf(stderr, "sealpipe query: cannot write the output\n");
    } else {
        fprintf(stderr, "sealpipe query: %s\n", rc == SP_ERR_DB ? err : errors_strerror(rc));
    }
    buf_cleanup(&o.line);
    arena_cleanup(&keep);
    arena_cleanup(&scratch);
    dataquery_close(d);
    return status;
}

int query_main(struct conf *conf, int argc, char **argv)
{
    struct query_args a; /* about 10 KiB, the lowered names */
    char err[CONF_ERR_MAX];

    if (sp__cmdline_wants_help(argc - 1, argv + 1)) {
        fputs(usage_text, stdout);
        return 0;
    }
    memset(&a, 0, sizeof a);
    a.dq.dash = "--";
    if (scan(argc - 1, argv + 1, &a, err, sizeof err) ||
        understand(&a, clock_wall_ms(), err, sizeof err) || apply_conf(&a, conf, err, sizeof err)) {
        fprintf(stderr, "sealpipe query: %s\n", err);
        return 2;
    }
    return run_query(&a, conf->data_dir);
}
