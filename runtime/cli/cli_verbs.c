/*
 * cli_verbs.c - the work of the registry commands (sealpipe device|token|
 * key|profile ...), called by cli.c once the command line is read (see
 * cli_verbs.h).
 *
 * Secrets (device token, encryption key, profile token) are printed to
 * stdout exactly once, by the command that creates them, and wiped from our
 * buffers afterwards; hex is written by libsodium's constant-time encoder
 * and JSON strings by json.c. Problems are reported on stderr as one line
 * naming the command and the problem; failures exit 1.
 */
#include "cli_verbs.h"
#include "base/clock.h"
#include "base/errors.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "storage/bucket.h"
#include "base/buf.h"
#include "base/json.h"
#include "storage/datadir.h"
#include "storage/registry.h"
#include "storage/retention.h"
#include "sealpipe.h"

#define CLI_MAX_EXPIRES   (100LL * 365 * 24 * 3600)
#define CLI_DEFAULT_SUITE "chacha20-poly1305"
#define CLI_HASH_HEX      (2 * SP_HASH_LEN + 1) /* a hash in hex, with its NUL */

/* ------------------------------------------------------------------------ */
/* Output helpers                                                           */
/* ------------------------------------------------------------------------ */

void cli_fail(struct cli_ctx *c, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "sealpipe %s: ", c->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

const char *cli_iso(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (!gmtime_r(&t, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, 32, "%lld", (long long)ms);
    return out;
}

/* A hash in hex (out: CLI_HASH_HEX bytes). */
static const char *hash_hex(const uint8_t h[SP_HASH_LEN], char *out)
{
    return sodium_bin2hex(out, CLI_HASH_HEX, h, SP_HASH_LEN);
}

/*
 * A JSON string literal (or null for NULL) on stdout, escaped by json.c.
 * Its copy in our memory is wiped: s may be a token or a key.
 */
static void json_str(const char *s)
{
    struct buf b;

    if (!s) {
        fputs("null", stdout);
        return;
    }
    buf_init(&b, CLI_MAX_JSON);
    if (json_write_string(&b, s, strlen(s)) == SP_OK)
        fputs(b.p, stdout);
    if (b.p)
        sodium_memzero(b.p, b.cap);
    buf_cleanup(&b);
}

/* "key": value-string, with a leading comma unless first. */
void cli_json_kv(int first, const char *key, const char *value)
{
    printf("%s\"%s\":", first ? "" : ",", key);
    json_str(value);
}

static void json_time(const char *key, int64_t ms)
{
    char t[32];

    printf(",\"%s\":", key);
    if (ms)
        json_str(cli_iso(ms, t));
    else
        fputs("null", stdout);
}

static const char *cipher_name(int suite)
{
    return suite >= 0 ? sp_suite_name(suite) : NULL;
}

/* ------------------------------------------------------------------------ */
/* Argument helpers                                                         */
/* ------------------------------------------------------------------------ */

static void valid_ciphers(char *out, size_t cap)
{
    size_t len = 0;

    out[0] = '\0';
    for (int s = 0; s <= SP_SUITE_CHACHA20_POLY1305 && len < cap; s++)
        if (sp_suite_name(s))
            len += (size_t)snprintf(out + len, cap - len, "%s, ", sp_suite_name(s));
    if (len < cap)
        snprintf(out + len, cap - len, "none");
}

/* Suite number, -1 for "none" (if allowed), or -2 after printing the error. */
static int parse_cipher(struct cli_ctx *c, const char *name, int allow_none)
{
    char list[160];
    int suite;

    if (allow_none && strcmp(name, "none") == 0)
        return -1;
    suite = sp_suite_from_name(name);
    if (suite < 0) {
        valid_ciphers(list, sizeof list);
        if (!allow_none) {
            char *none = strstr(list, ", none");
            if (none)
                *none = '\0';
        }
        cli_fail(c, "unknown cipher %s (valid: %s)", name, list);
        return -2;
    }
    if (!sp_suite_available(suite))
        fprintf(stderr, "sealpipe %s: warning: this build cannot open %s envelopes\n", c->cmd,
                name);
    return suite;
}

/* Appends "key":"value" for one k=v flag, escaped by json.c. */
static int kv_member(struct buf *b, const char *kv, size_t klen)
{
    int rc = json_write_string(b, kv, klen);

    if (rc == SP_OK)
        rc = buf_putc(b, ':');
    if (rc == SP_OK)
        rc = json_write_string(b, kv + klen + 1, strlen(kv + klen + 1));
    return rc;
}

/* Checks repeated k=v flags: keys non-empty and unique, UTF-8 text.
 * Returns 0, or 1 after printing the problem. */
int cli_kv_check(struct cli_ctx *c, const char *what, const struct cli_list *kv)
{
    for (int i = 0; i < kv->n; i++) {
        const char *eq = strchr(kv->v[i], '=');
        size_t klen = eq ? (size_t)(eq - kv->v[i]) : 0;
        if (!eq || klen == 0) {
            cli_fail(c, "bad --%s %s: expected key=value", what, kv->v[i]);
            return 1;
        }
        if (!sp__utf8_valid(kv->v[i], strlen(kv->v[i]))) {
            cli_fail(c, "bad --%s: not valid UTF-8 text", what);
            return 1;
        }
        for (int j = 0; j < i; j++) {
            if (strncmp(kv->v[j], kv->v[i], klen + 1) == 0) {
                cli_fail(c, "duplicate --%s key %.*s", what, (int)klen, kv->v[i]);
                return 1;
            }
        }
    }
    return 0;
}

/*
 * Turns repeated k=v flags into a JSON object of strings (the registry
 * checks the result). Returns 0, or 1 after printing the problem.
 */
static int kv_json(struct cli_ctx *c, const char *what, const struct cli_list *kv, struct buf *b)
{
    int rc = buf_putc(b, '{');

    if (cli_kv_check(c, what, kv))
        return 1;
    for (int i = 0; i < kv->n && rc == 0; i++) {
        if (i)
            rc = buf_putc(b, ',');
        if (rc == 0)
            rc = kv_member(b, kv->v[i], (size_t)(strchr(kv->v[i], '=') - kv->v[i]));
    }
    if (rc == 0)
        rc = buf_putc(b, '}');
    if (rc) {
        cli_fail(c, "--%s values are too large (at most %d bytes of JSON)", what, CLI_MAX_JSON);
        return 1;
    }
    return 0;
}

int cli_open_registry(struct cli_ctx *c)
{
    char err[512] = "";
    int rc = registry_open(c->data_dir, &c->reg, err, sizeof err);

    if (rc) {
        cli_fail(c, "cannot open the registry in %s: %s", c->data_dir,
                 err[0] ? err : errors_strerror(rc));
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* device                                                                   */
/* ------------------------------------------------------------------------ */

/* Reports a registry error from a verb on device serial; returns 1. */
static int device_fail(struct cli_ctx *c, const char *serial, int rc)
{
    if (rc == SP_ERR_NODEVICE)
        cli_fail(c, "unknown device %s", serial);
    else
        cli_fail(c, "%s", errors_strerror(rc));
    return 1;
}

/*
 * Checks that analysis parser exists where the daemon looks for it:
 * <analyses_dir>/<parser>.lua, with analyses_dir the folder given here
 * (--analyses-dir, --config), else the one the daemon last ran with
 * (datadir_analyses), else the default from the current directory; the
 * message says which. Returns 1 if it exists; else 0 with the problem in why.
 */
int cli_parser_exists(struct cli_ctx *c, const char *parser, char *why, size_t whylen)
{
    char path[8192], dir[4096];
    const char *from = "";
    struct stat st;

    if (c->analyses_given || datadir_analyses(c->data_dir, dir, sizeof dir) != SP_OK) {
        char here[4096] = ".";
        if (c->analyses_dir[0] != '/' && !getcwd(here, sizeof here))
            snprintf(here, sizeof here, ".");
        snprintf(dir, sizeof dir, "%s%s%s", c->analyses_dir[0] == '/' ? "" : here,
                 c->analyses_dir[0] == '/' ? "" : "/", c->analyses_dir);
        from = c->analyses_given ? " (the folder given with --analyses-dir or --config)"
                                 : " (no daemon has run on this data directory yet: the default "
                                   "folder; give the daemon's with --analyses-dir or --config)";
    } else {
        from = " (the folder the daemon runs with)";
    }
    snprintf(path, sizeof path, "%s/%s.lua", dir, parser);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
        return 1;
    snprintf(why, whylen, "parser %s: %s does not exist%s", parser, path, from);
    return 0;
}

static void parser_warn(struct cli_ctx *c, const char *parser)
{
    char why[9000];

    if (!cli_parser_exists(c, parser, why, sizeof why))
        fprintf(stderr,
                "sealpipe %s: warning: %s; the device's payloads will fail until it exists\n",
                c->cmd, why);
}

/*
 * Fills spec from the options of device add; tags and params hold its JSON.
 * Returns 0, or 1 after printing the problem.
 */
static int device_spec_read(struct cli_ctx *c, const struct cli_args *a, struct device_spec *spec,
                            struct buf *tags, struct buf *params)
{
    spec->suite = parse_cipher(c, a->cipher ? a->cipher : CLI_DEFAULT_SUITE, 1);
    if (spec->suite == -2)
        return 1;
    if (a->counter && strcmp(a->counter, "strict") != 0 && strcmp(a->counter, "off") != 0) {
        cli_fail(c, "bad --counter %s (valid: strict, off)", a->counter);
        return 1;
    }
    spec->counter_mode =
        a->counter && strcmp(a->counter, "off") == 0 ? COUNTER_OFF : COUNTER_STRICT;
    if ((a->seen & O_REQUIRE_ENC) && spec->suite < 0) {
        cli_fail(c, "--require-encryption needs a key: drop --cipher none");
        return 1;
    }
    spec->encryption_required = !!(a->seen & O_REQUIRE_ENC);
    if (kv_json(c, "tag", &a->tags, tags) || kv_json(c, "param", &a->params, params))
        return 1;
    spec->name = a->name;
    spec->tags_json = tags->p;
    spec->params_json = params->p;
    spec->parser = a->parser;
    spec->profile = a->profile;
    spec->derive = !!(a->seen & O_DERIVE);
    spec->derive_token = a->token;
    if ((a->seen & O_TOKEN) && !spec->derive) {
        cli_fail(c, "--token is only used with --derive-key");
        return 1;
    }
    return 0;
}

/* Prints a new device's secrets, the only time they are shown. */
static void device_print_secrets(struct cli_ctx *c, const char *serial, const char *profile,
                                 const struct device_secrets *sec)
{
    char key[2 * SP_MAX_KEY_LEN + 1] = "", ah[CLI_HASH_HEX], dh[CLI_HASH_HEX];
    int more = sec->key_len || sec->profile_token[0];

    if (sec->key_len)
        sodium_bin2hex(key, sizeof key, sec->key, sec->key_len);
    hash_hex(sec->auth_hash, ah);
    hash_hex(sec->device_hash, dh);
    if (c->json) {
        printf("{");
        cli_json_kv(1, "serial", serial);
        cli_json_kv(0, "token", sec->token);
        cli_json_kv(0, "cipher", cipher_name(sec->suite));
        cli_json_kv(0, "key", sec->key_len ? key : NULL);
        cli_json_kv(0, "auth_hash", ah);
        cli_json_kv(0, "device_hash", dh);
        cli_json_kv(0, "profile", profile);
        cli_json_kv(0, "profile_token", sec->profile_token[0] ? sec->profile_token : NULL);
        printf("}\n");
    } else {
        printf("Device %s added to profile %s.\n", serial, profile);
        printf("  token          %s\n", sec->token);
        printf("  cipher         %s\n", sec->key_len ? sp_suite_name(sec->suite) : "none");
        if (sec->key_len)
            printf("  key            %s\n", key);
        printf("  auth hash      %s\n", ah);
        printf("  device hash    %s\n", dh);
        if (sec->profile_token[0])
            printf("  profile token  %s  (profile %s was created now)\n", sec->profile_token,
                   profile);
        printf("The token%s%s %s shown only once: store %s now.\n", sec->key_len ? ", key" : "",
               sec->profile_token[0] ? " and profile token" : "", more ? "are" : "is",
               more ? "them" : "it");
    }
    fflush(stdout);
    sodium_memzero(key, sizeof key);
}

int cli_device_add(struct cli_ctx *c, const struct cli_args *a)
{
    struct device_spec spec = {.serial = a->pos[0], .suite = -1};
    struct device_secrets sec;
    struct buf tags, params;
    char err[512] = "";
    int rc = 1;

    buf_init(&tags, CLI_MAX_JSON);
    buf_init(&params, CLI_MAX_JSON);
    if (device_spec_read(c, a, &spec, &tags, &params) || cli_open_registry(c))
        goto out;
    if (registry_device_add(c->reg, &spec, &sec, err, sizeof err) != SP_OK) {
        cli_fail(c, "%s", err);
        goto out;
    }
    if (a->parser)
        parser_warn(c, a->parser);
    device_print_secrets(c, spec.serial, a->profile ? a->profile : "default", &sec);
    sodium_memzero(&sec, sizeof sec);
    rc = 0;
out:
    buf_cleanup(&tags);
    buf_cleanup(&params);
    return rc;
}

/* The fields of a device as JSON members, without the braces. */
static void device_json_fields(const struct device_info *d)
{
    char ah[CLI_HASH_HEX], dh[CLI_HASH_HEX], t[32];

    cli_json_kv(1, "serial", d->serial);
    cli_json_kv(0, "name", d->name);
    cli_json_kv(0, "profile", d->profile);
    cli_json_kv(0, "cipher", cipher_name(d->suite));
    printf(",\"encryption_required\":%s", d->encryption_required ? "true" : "false");
    cli_json_kv(0, "counter", d->counter_mode == COUNTER_OFF ? "off" : "strict");
    cli_json_kv(0, "parser", d->parser);
    printf(",\"tags\":%s,\"params\":%s", d->tags_json, d->params_json);
    cli_json_kv(0, "auth_hash", hash_hex(d->auth_hash, ah));
    cli_json_kv(0, "device_hash", hash_hex(d->device_hash, dh));
    cli_json_kv(0, "created_at", cli_iso(d->created_ms, t));
}

/* "12s ago", "3h ago", "2d ago" or "-" (never). */
static const char *ago(int64_t ms, int64_t now, char out[32])
{
    int64_t s = (now - ms) / 1000;

    if (ms <= 0)
        return "-";
    if (s < 0)
        s = 0;
    if (s < 120)
        snprintf(out, 32, "%llds ago", (long long)s);
    else if (s < 7200)
        snprintf(out, 32, "%lldm ago", (long long)(s / 60));
    else if (s < 172800)
        snprintf(out, 32, "%lldh ago", (long long)(s / 3600));
    else
        snprintf(out, 32, "%lldd ago", (long long)(s / 86400));
    return out;
}

/* A device's status times, as device list --json and device show name them. */
#define STATUS_TIMES 4
struct status_time {
    const char *key, *label;
    int64_t ms; /* 0: never */
};

static void status_times(const struct device_status *st, struct status_time out[STATUS_TIMES])
{
    out[0] = (struct status_time){"last_connect", "last connect", st->last_connect};
    out[1] = (struct status_time){"last_disconnect", "last disconnect", st->last_disconnect};
    out[2] = (struct status_time){"last_sent", "last sent", st->last_sent};
    out[3] = (struct status_time){"last_stored", "last stored", st->last_stored};
}

/* ,"status":{...}: what the daemon last wrote of the device. */
static void status_json(const struct device_status *st)
{
    char t[32];

    printf(",\"status\":{\"connected\":%s,\"connections\":%lld",
           st->connections > 0 ? "true" : "false", (long long)st->connections);
    struct status_time times[STATUS_TIMES];
    status_times(st, times);
    for (size_t i = 0; i < STATUS_TIMES; i++)
        cli_json_kv(0, times[i].key, times[i].ms ? cli_iso(times[i].ms, t) : NULL);
    /* Of the last connection made, which may have ended since. */
    cli_json_kv(0, "last_client_id", st->client_id);
    cli_json_kv(0, "last_address", st->address);
    cli_json_kv(0, "last_protocol", st->protocol);
    cli_json_kv(0, "last_disconnect_reason", st->last_reason);
    printf(",\"messages\":%lld,\"records\":%lld,\"dead_letters\":%lld}", (long long)st->messages,
           (long long)st->records, (long long)st->dead_letters);
    /* Its own retention, or null: the daemon's retention option applies. */
    char keep[RETENTION_TEXT_MAX];
    if (st->has_retention)
        retention_format(st->retention_ms, keep);
    cli_json_kv(0, "retention", st->has_retention ? keep : NULL);
}

static int width(int w, const char *s)
{
    int n = s ? (int)strlen(s) : 1;
    return n > w ? n : w;
}

int cli_device_list(struct cli_ctx *c, const struct cli_args *a)
{
    struct device_info *ds = NULL;
    struct device_status *st;
    size_t n = 0;
    int ws = 6, wn = 4, wp = 7;
    int64_t now = clock_wall_ms();
    char t[32];
    int rc;

    (void)a;
    if (cli_open_registry(c))
        return 1;
    if ((rc = registry_device_list(c->reg, &c->arena, &ds, &n))) {
        cli_fail(c, "%s", errors_strerror(rc));
        return 1;
    }
    if (!(st = arena_calloc(&c->arena, n ? n : 1, sizeof(*st)))) {
        cli_fail(c, "out of memory");
        return 1;
    }
    if ((rc = registry_device_statuses(c->reg, ds, n, &c->arena, st))) {
        cli_fail(c, "%s", errors_strerror(rc));
        return 1;
    }
    if (c->json) {
        printf("{\"devices\":[");
        for (size_t i = 0; i < n; i++) {
            printf("%s{", i ? "," : "");
            device_json_fields(&ds[i]);
            status_json(&st[i]);
            putchar('}');
        }
        printf("]}\n");
        return 0;
    }
    if (n == 0) {
        printf("No devices. Add one with: sealpipe device add <serial>\n");
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        ws = width(ws, ds[i].serial);
        wn = width(wn, ds[i].name);
        wp = width(wp, ds[i].profile);
    }
    printf("%-*s  %-*s  %-*s  %-9s  %-10s  %8s  %8s  %6s  %-17s  %-8s  %-7s  %s\n", ws, "SERIAL",
           wn, "NAME", wp, "PROFILE", "CONNECTED", "LAST SENT", "MESSAGES", "RECORDS", "DEAD",
           "CIPHER", "REQUIRED", "COUNTER", "PARSER");
    for (size_t i = 0; i < n; i++) {
        const struct device_info *d = &ds[i];
        printf("%-*s  %-*s  %-*s  %-9s  %-10s  %8lld  %8lld  %6lld  %-17s  %-8s  %-7s  %s\n", ws,
               d->serial, wn, d->name, wp, d->profile, st[i].connections > 0 ? "yes" : "no",
               ago(st[i].last_sent, now, t), (long long)st[i].messages, (long long)st[i].records,
               (long long)st[i].dead_letters, d->suite >= 0 ? sp_suite_name(d->suite) : "none",
               d->encryption_required ? "yes" : "no",
               d->counter_mode == COUNTER_OFF ? "off" : "strict", d->parser ? d->parser : "-");
    }
    return 0;
}

static const char *token_status(const struct token_info *t, int64_t now)
{
    if (t->revoked_ms)
        return "revoked";
    if (t->expires_ms && now >= t->expires_ms)
        return "expired";
    return "active";
}

static void token_json(const struct token_info *t, int64_t now)
{
    char tm[32];

    printf("{");
    cli_json_kv(1, "name", t->name);
    cli_json_kv(0, "prefix", t->prefix);
    cli_json_kv(0, "perm", registry_perm_name(t->perm));
    cli_json_kv(0, "status", token_status(t, now));
    cli_json_kv(0, "created_at", cli_iso(t->created_ms, tm));
    json_time("expires_at", t->expires_ms);
    json_time("revoked_at", t->revoked_ms);
    printf("}");
}

/* The ,"tokens":[...] member of a device or token-list object. */
static void token_json_array(const struct token_info *ts, size_t n, int64_t now)
{
    printf(",\"tokens\":[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            putchar(',');
        token_json(&ts[i], now);
    }
    putchar(']');
}

static void token_table(const struct token_info *ts, size_t n, int64_t now, const char *indent)
{
    char t1[32], t2[32];
    int wn = 4;

    for (size_t i = 0; i < n; i++)
        wn = width(wn, ts[i].name);
    printf("%s%-*s  %-8s  %-5s  %-7s  %-20s  %s\n", indent, wn, "NAME", "PREFIX", "PERM", "STATUS",
           "CREATED", "EXPIRES");
    for (size_t i = 0; i < n; i++)
        printf("%s%-*s  %-8s  %-5s  %-7s  %-20s  %s\n", indent, wn, ts[i].name, ts[i].prefix,
               registry_perm_name(ts[i].perm), token_status(&ts[i], now),
               cli_iso(ts[i].created_ms, t1),
               ts[i].expires_ms ? cli_iso(ts[i].expires_ms, t2) : "never");
}

/* The status lines of device show. */
static void status_text(const struct device_status *st, int64_t now)
{
    char t[32], u[32];

    if (st->connections > 0)
        printf("connected            yes (%lld connection%s)\n", (long long)st->connections,
               st->connections > 1 ? "s" : "");
    else
        printf("connected            no\n");
    /* The last connection made, which may have ended since (the table keeps
     * no list of connections, only their number). */
    if (st->client_id)
        printf("last connection      %s from %s, %s\n", st->client_id,
               st->address ? st->address : "?", st->protocol ? st->protocol : "?");
    struct status_time times[STATUS_TIMES];
    status_times(st, times);
    for (size_t i = 0; i < STATUS_TIMES; i++)
        printf("%-21s%s%s%s%s\n", times[i].label, times[i].ms ? cli_iso(times[i].ms, t) : "never",
               times[i].ms ? " (" : "", times[i].ms ? ago(times[i].ms, now, u) : "",
               times[i].ms ? ")" : "");
    if (st->last_disconnect && st->last_reason)
        printf("disconnect reason    %s\n", st->last_reason);
    printf("messages             %lld\n", (long long)st->messages);
    printf("records              %lld\n", (long long)st->records);
    printf("dead letters         %lld\n", (long long)st->dead_letters);
    char keep[RETENTION_TEXT_MAX];
    if (st->has_retention)
        retention_format(st->retention_ms, keep);
    printf("retention            %s\n",
           st->has_retention ? keep : "the daemon's (its retention option)");
}

int cli_device_show(struct cli_ctx *c, const struct cli_args *a)
{
    struct device_info d;
    struct device_status st;
    struct token_info *ts = NULL;
    size_t n = 0;
    int64_t now = clock_wall_ms();
    char ah[CLI_HASH_HEX], dh[CLI_HASH_HEX], t[32];
    int rc;

    if (cli_open_registry(c))
        return 1;
    rc = registry_device_get(c->reg, a->pos[0], &c->arena, &d);
    if (rc == SP_OK)
        rc = registry_token_list(c->reg, a->pos[0], &c->arena, &ts, &n);
    if (rc == SP_OK)
        rc = registry_device_status(c->reg, &d, &c->arena, &st);
    if (rc)
        return device_fail(c, a->pos[0], rc);
    if (c->json) {
        putchar('{');
        device_json_fields(&d);
        status_json(&st);
        token_json_array(ts, n, now);
        printf("}\n");
        return 0;
    }
    printf("serial               %s\n", d.serial);
    printf("name                 %s\n", d.name);
    printf("profile              %s\n", d.profile);
    printf("auth hash            %s\n", hash_hex(d.auth_hash, ah));
    printf("device hash          %s\n", hash_hex(d.device_hash, dh));
    printf("cipher               %s\n", d.suite >= 0 ? sp_suite_name(d.suite) : "none");
    printf("encryption required  %s\n", d.encryption_required ? "yes" : "no");
    printf("counter              %s\n", d.counter_mode == COUNTER_OFF ? "off" : "strict");
    printf("parser               %s\n", d.parser ? d.parser : "-");
    printf("tags                 %s\n", d.tags_json);
    printf("params               %s\n", d.params_json);
    printf("created              %s\n", cli_iso(d.created_ms, t));
    status_text(&st, now);
    printf("tokens\n");
    token_table(ts, n, now, "  ");
    return 0;
}

int cli_device_rm(struct cli_ctx *c, const struct cli_args *a)
{
    int rc;

    if (cli_open_registry(c))
        return 1;
    rc = registry_device_remove(c->reg, a->pos[0]);
    if (rc)
        return device_fail(c, a->pos[0], rc);
    printf("Device %s removed with its tokens, keys and replay counter (its stored data stays "
           "in the bucket).\n",
           a->pos[0]);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* token                                                                    */
/* ------------------------------------------------------------------------ */

int cli_token_add(struct cli_ctx *c, const struct cli_args *a)
{
    char token[37], name[16], t[32];
    int64_t expires = 0;
    int perm = TOKEN_FULL, rc;

    if (a->perm && (perm = registry_perm_parse(a->perm)) < 0) {
        cli_fail(c, "bad --perm %s (valid: full, write, read)", a->perm);
        return 1;
    }
    if (a->expires) {
        char *end;
        long long s;
        errno = 0;
        s = strtoll(a->expires, &end, 10);
        if (errno || end == a->expires || *end || s <= 0 || s > CLI_MAX_EXPIRES) {
            cli_fail(c, "bad --expires %s: a number of seconds from now", a->expires);
            return 1;
        }
        expires = clock_wall_ms() + s * 1000;
    }
    if (cli_open_registry(c))
        return 1;
    rc = registry_token_add(c->reg, a->pos[0], a->name, perm, expires, token);
    if (rc == SP_ERR_EXISTS)
        cli_fail(c, "device %s already has a token named %s", a->pos[0], a->name);
    else if (rc == SP_ERR_INVAL)
        cli_fail(c, "bad token name %s: use 1-100 of A-Z a-z 0-9 _ -", a->name ? a->name : "");
    else if (rc)
        device_fail(c, a->pos[0], rc);
    if (rc)
        return 1;
    snprintf(name, sizeof name, "%.8s", token);
    if (c->json) {
        printf("{");
        cli_json_kv(1, "serial", a->pos[0]);
        cli_json_kv(0, "name", a->name ? a->name : name);
        cli_json_kv(0, "token", token);
        cli_json_kv(0, "prefix", name);
        cli_json_kv(0, "perm", registry_perm_name(perm));
        json_time("expires_at", expires);
        printf("}\n");
    } else {
        printf("Token %s added to device %s (perm %s, expires %s).\n", a->name ? a->name : name,
               a->pos[0], registry_perm_name(perm), expires ? cli_iso(expires, t) : "never");
        printf("  token  %s\n", token);
        printf("The token is shown only once: store it now.\n");
    }
    fflush(stdout);
    sodium_memzero(token, sizeof token);
    return 0;
}

int cli_token_list(struct cli_ctx *c, const struct cli_args *a)
{
    struct token_info *ts = NULL;
    size_t n = 0;
    int64_t now = clock_wall_ms();
    int rc;

    if (cli_open_registry(c))
        return 1;
    rc = registry_token_list(c->reg, a->pos[0], &c->arena, &ts, &n);
    if (rc)
        return device_fail(c, a->pos[0], rc);
    if (c->json) {
        printf("{");
        cli_json_kv(1, "serial", a->pos[0]);
        token_json_array(ts, n, now);
        printf("}\n");
        return 0;
    }
    token_table(ts, n, now, "");
    return 0;
}

int cli_token_revoke(struct cli_ctx *c, const struct cli_args *a)
{
    int rc;

    if (cli_open_registry(c))
        return 1;
    rc = registry_token_revoke(c->reg, a->pos[0], a->pos[1]);
    if (rc == SP_ERR_NOTFOUND)
        cli_fail(c, "device %s has no token named or prefixed %s", a->pos[0], a->pos[1]);
    else if (rc == SP_ERR_INVAL)
        cli_fail(c, "%s matches more than one token of device %s; give the other (name or prefix)",
                 a->pos[1], a->pos[0]);
    else if (rc)
        device_fail(c, a->pos[0], rc);
    if (rc)
        return 1;
    printf("Token %s of device %s revoked.\n", a->pos[1], a->pos[0]);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* admin token                                                              */
/* ------------------------------------------------------------------------ */

int cli_admin_token_add(struct cli_ctx *c, const struct cli_args *a)
{
    char token[REGISTRY_TOKEN_LEN + 1], prefix[REGISTRY_PREFIX_LEN + 1];
    int perm = TOKEN_FULL, rc;

    if (a->perm && (perm = registry_perm_parse(a->perm)) != TOKEN_FULL && perm != TOKEN_READ) {
        cli_fail(c, "bad --perm %s (valid: full, read)", a->perm);
        return 1;
    }
    if (cli_open_registry(c))
        return 1;
    rc = registry_admin_token_add(c->reg, a->name, perm, token);
    if (rc == SP_ERR_EXISTS)
        cli_fail(c, "an admin token named %s exists", a->name);
    else if (rc == SP_ERR_INVAL)
        cli_fail(c, "bad token name %s: use 1-100 of A-Z a-z 0-9 _ -", a->name ? a->name : "");
    else if (rc)
        cli_fail(c, "%s", errors_strerror(rc));
    if (rc)
        return 1;
    snprintf(prefix, sizeof prefix, "%.8s", token);
    if (c->json) {
        printf("{");
        cli_json_kv(1, "name", a->name ? a->name : prefix);
        cli_json_kv(0, "token", token);
        cli_json_kv(0, "prefix", prefix);
        cli_json_kv(0, "perm", registry_perm_name(perm));
        printf("}\n");
    } else {
        printf("Admin token %s added (perm %s).\n", a->name ? a->name : prefix,
               registry_perm_name(perm));
        printf("  token  %s\n", token);
        printf("The token is shown only once: store it now.\n");
    }
    fflush(stdout);
    sodium_memzero(token, sizeof token);
    return 0;
}

int cli_admin_token_list(struct cli_ctx *c, const struct cli_args *a)
{
    struct token_info *ts = NULL;
    size_t n = 0;
    int64_t now = clock_wall_ms();
    int rc;

    (void)a;
    if (cli_open_registry(c))
        return 1;
    if ((rc = registry_admin_token_list(c->reg, &c->arena, &ts, &n))) {
        cli_fail(c, "%s", errors_strerror(rc));
        return 1;
    }
    if (c->json) {
        printf("{\"count\":%zu", n);
        token_json_array(ts, n, now);
        printf("}\n");
        return 0;
    }
    token_table(ts, n, now, "");
    return 0;
}

int cli_admin_token_revoke(struct cli_ctx *c, const struct cli_args *a)
{
    int rc;

    if (cli_open_registry(c))
        return 1;
    rc = registry_admin_token_revoke(c->reg, a->pos[0]);
    if (rc == SP_ERR_NOTFOUND)
        cli_fail(c, "no admin token named or prefixed %s", a->pos[0]);
    else if (rc == SP_ERR_INVAL)
        cli_fail(c, "%s matches more than one admin token; give the other (name or prefix)",
                 a->pos[0]);
    else if (rc)
        cli_fail(c, "%s", errors_strerror(rc));
    if (rc)
        return 1;
    printf("Admin token %s revoked.\n", a->pos[0]);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* key, profile                                                             */
/* ------------------------------------------------------------------------ */

int cli_key_rotate(struct cli_ctx *c, const struct cli_args *a)
{
    struct device_secrets sec;
    char err[512] = "", key[2 * SP_MAX_KEY_LEN + 1] = "", ah[CLI_HASH_HEX], dh[CLI_HASH_HEX];
    int suite = -1, rc;

    if (a->cipher && (suite = parse_cipher(c, a->cipher, 0)) < 0)
        return 1;
    if (!(a->seen & O_DERIVE) != !a->token) {
        cli_fail(c, "--derive-key and --token go together");
        return 1;
    }
    if (cli_open_registry(c))
        return 1;
    rc = registry_key_rotate(c->reg, a->pos[0], suite, a->token, &sec, err, sizeof err);
    if (rc) {
        cli_fail(c, "%s", err[0] ? err : errors_strerror(rc));
        return 1;
    }
    sodium_bin2hex(key, sizeof key, sec.key, sec.key_len);
    if (c->json) {
        printf("{");
        cli_json_kv(1, "serial", a->pos[0]);
        cli_json_kv(0, "cipher", sp_suite_name(sec.suite));
        cli_json_kv(0, "key", key);
        cli_json_kv(0, "auth_hash", hash_hex(sec.auth_hash, ah));
        cli_json_kv(0, "device_hash", hash_hex(sec.device_hash, dh));
        printf("}\n");
    } else {
        printf("Key of device %s replaced.\n", a->pos[0]);
        printf("  cipher  %s\n", sp_suite_name(sec.suite));
        printf("  key     %s\n", key);
        printf("The key is shown only once: store it now. The previous key keeps opening the\n"
               "device's envelopes for the daemon's key_grace seconds (default 86400).\n");
    }
    fflush(stdout);
    sodium_memzero(key, sizeof key);
    sodium_memzero(&sec, sizeof sec);
    return 0;
}

/*
 * Queues "CMD|<command>" for a device in the commands table; the running
 * daemon seals (or not) and publishes it, so the nonce seeds and the master
 * key stay with one process and a command waits while the daemon is down.
 */
int cli_device_cmd(struct cli_ctx *c, const struct cli_args *a)
{
    const char *serial = a->pos[0], *command = a->pos[1];
    struct device_info d;
    struct device_key *keys = NULL;
    struct bucket *bk = NULL;
    char err[512] = "", frame[SP_MAX_FRAME + 1];
    size_t nkeys = 0;
    int64_t id;
    int sealed = 0, rc = 1;

    if (sp_tip_build_ack(SP_ACK_MQTT, 0, 0, SP_ACK_CMD, command, strlen(command), frame,
                         sizeof frame) < 0) {
        cli_fail(c, "bad command: use 1 or more printable ASCII characters without spaces and '|' "
                    "(TagoTiP DETAILCHAR)");
        return 1;
    }
    if (cli_open_registry(c))
        return 1;
    if (registry_device_get(c->reg, serial, &c->arena, &d) != SP_OK) {
        cli_fail(c, "unknown device %s", serial);
        return 1;
    }
    if (!(a->seen & O_PLAIN)) {
        if (registry_keys_for(c->reg, d.auth_hash, d.device_hash, clock_wall_ms(), 0, &c->arena,
                              &keys, &nkeys) != SP_OK) {
            cli_fail(c, "cannot read the keys of %s (is master.key the right one?)", serial);
            return 1;
        }
        for (size_t i = 0; i < nkeys; i++)
            if (keys[i].retired_ms == 0 && strcmp(keys[i].serial, serial) == 0)
                sealed = 1;
        if (nkeys)
            sodium_memzero(keys, nkeys * sizeof(*keys));
        if (!sealed && d.encryption_required) {
            cli_fail(c, "device %s requires encryption but has no key", serial);
            return 1;
        }
    }
    if (bucket_open(c->data_dir, 1, &bk, err, sizeof err) != SP_OK) {
        cli_fail(c, "%s", err);
        return 1;
    }
    if (bucket_command_queue(bk, serial, command, sealed, &id) != SP_OK) {
        cli_fail(c, "cannot queue the command (database error)");
        goto out;
    }
    snprintf(frame, sizeof frame, "%s/%s/ack", sealed ? "$tips" : "$tip", serial);
    if (c->json) {
        printf("{\"id\":%lld", (long long)id);
        cli_json_kv(0, "serial", serial);
        cli_json_kv(0, "topic", frame);
        printf(",\"sealed\":%s}\n", sealed ? "true" : "false");
    } else {
        printf("Command %lld queued for %s: CMD|%s, %s on %s.\n"
               "The running daemon sends it within a second (it waits while the daemon is down).\n",
               (long long)id, serial, command, sealed ? "sealed" : "plain", frame);
    }
    fflush(stdout);
    rc = 0;
out:
    bucket_close(bk);
    return rc;
}

int cli_profile_add(struct cli_ctx *c, const struct cli_args *a)
{
    struct profile_secret sec;
    uint8_t hash[SP_HASH_LEN];
    char err[512] = "", ah[CLI_HASH_HEX];

    if (cli_open_registry(c))
        return 1;
    if (registry_profile_add(c->reg, a->pos[0], a->token, &sec, err, sizeof err) != SP_OK) {
        cli_fail(c, "%s", err);
        return 1;
    }
    if (sp_auth_hash(sec.token, strlen(sec.token), hash) != SP_OK)
        memset(hash, 0, sizeof hash);
    hash_hex(hash, ah);
    if (c->json) {
        printf("{");
        cli_json_kv(1, "name", a->pos[0]);
        cli_json_kv(0, "token", sec.token);
        cli_json_kv(0, "auth_hash", ah);
        printf("}\n");
    } else {
        printf("Profile %s added.\n", a->pos[0]);
        printf("  token      %s\n", sec.token);
        printf("  auth hash  %s\n", ah);
        if (!a->token)
            printf("The token is shown only once: store it now.\n");
    }
    fflush(stdout);
    sodium_memzero(&sec, sizeof sec);
    return 0;
}

int cli_profile_list(struct cli_ctx *c, const struct cli_args *a)
{
    struct profile_info *ps = NULL;
    size_t n = 0;
    char ah[CLI_HASH_HEX], t[32];
    int rc, wn = 4;

    (void)a;
    if (cli_open_registry(c))
        return 1;
    if ((rc = registry_profile_list(c->reg, &c->arena, &ps, &n))) {
        cli_fail(c, "%s", errors_strerror(rc));
        return 1;
    }
    if (c->json) {
        printf("{\"profiles\":[");
        for (size_t i = 0; i < n; i++) {
            printf("%s{", i ? "," : "");
            cli_json_kv(1, "name", ps[i].name);
            cli_json_kv(0, "auth_hash", hash_hex(ps[i].auth_hash, ah));
            cli_json_kv(0, "created_at", cli_iso(ps[i].created_ms, t));
            printf("}");
        }
        printf("]}\n");
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        wn = width(wn, ps[i].name);
    printf("%-*s  %-16s  %s\n", wn, "NAME", "AUTH HASH", "CREATED");
    for (size_t i = 0; i < n; i++)
        printf("%-*s  %-16s  %s\n", wn, ps[i].name, hash_hex(ps[i].auth_hash, ah),
               cli_iso(ps[i].created_ms, t));
    return 0;
}
