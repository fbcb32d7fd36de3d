/*
 * cli.c - the registry subcommands: sealpipe device|token|key|profile ...
 *
 * main.c hands over argv from the group name on. One table (verbs[]) holds
 * each verb's positional arguments, the options it accepts, its handler and
 * its usage text, so parsing and --help cannot drift apart. Arguments are
 * parsed completely before the registry is opened: a usage error (exit 2)
 * touches nothing on disk. Only the verbs that create things (device add,
 * profile add) may create the data directory; the others first check that it
 * exists and holds a registry, and create nothing when it does not.
 *
 * Secrets (device token, encryption key, profile token) are printed to
 * stdout exactly once, by the command that creates them, and wiped from our
 * buffers afterwards. Problems are reported on stderr as one line naming
 * the command and the problem; failures exit 1.
 */
#include "cli.h"
#include "errors.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <sodium.h>

#include "arena.h"
#include "bucket.h"
#include "buf.h"
#include "datadir.h"
#include "registry.h"
#include "sealpipe.h"

#define CLI_MAX_KV        100         /* --tag / --param flags per command */
#define CLI_MAX_JSON      (64 * 1024) /* bytes of the tags / params JSON */
#define CLI_MAX_EXPIRES   (100LL * 365 * 24 * 3600)
#define CLI_ARENA         (16u * 1024 * 1024)
#define CLI_DEFAULT_SUITE "chacha20-poly1305"

enum {
    O_NAME = 1u << 0,
    O_TAG = 1u << 1,
    O_PARAM = 1u << 2,
    O_CIPHER = 1u << 3,
    O_REQUIRE_ENC = 1u << 4,
    O_PARSER = 1u << 5,
    O_PROFILE = 1u << 6,
    O_COUNTER = 1u << 7,
    O_JSON = 1u << 8,
    O_PERM = 1u << 9,
    O_EXPIRES = 1u << 10,
    O_TOKEN = 1u << 11,
    O_DERIVE = 1u << 12,
    O_PLAIN = 1u << 13,
};

static const struct cli_opt {
    const char *name;
    unsigned bit;
    int has_arg;
} cli_opts[] = {
    {"name", O_NAME, 1},
    {"tag", O_TAG, 1},
    {"param", O_PARAM, 1},
    {"cipher", O_CIPHER, 1},
    {"require-encryption", O_REQUIRE_ENC, 0},
    {"parser", O_PARSER, 1},
    {"profile", O_PROFILE, 1},
    {"counter", O_COUNTER, 1},
    {"json", O_JSON, 0},
    {"perm", O_PERM, 1},
    {"expires", O_EXPIRES, 1},
    {"token", O_TOKEN, 1},
    {"derive-key", O_DERIVE, 0},
    {"plain", O_PLAIN, 0},
};

/* What the command line said, before anything is checked against the registry. */
struct cli_args {
    const char *pos[2];
    int npos;
    unsigned seen;
    const char *name, *cipher, *parser, *profile, *counter, *perm, *expires, *token;
    const char *tags[CLI_MAX_KV], *params[CLI_MAX_KV];
    int ntags, nparams;
};

struct cli_ctx {
    const char *data_dir;
    const char *analyses_dir;
    const char *cmd; /* "device add", for messages */
    struct registry *reg;
    struct arena arena;
    int json;
};

/* Whether a verb may create the data directory, or needs an existing one. */
enum cli_access { V_NEEDS_DATA, V_CREATES_DATA };

struct cli_verb {
    const char *group;
    const char *verb;
    int npos; /* required positional arguments */
    unsigned opts;
    enum cli_access access;
    int (*run)(struct cli_ctx *c, const struct cli_args *a);
    const char *usage;
};

/* ------------------------------------------------------------------------ */
/* Output helpers                                                           */
/* ------------------------------------------------------------------------ */

static void fail(struct cli_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct cli_ctx *c, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "sealpipe %s: ", c->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ISO 8601 UTC, e.g. 2026-11-24T10:00:00Z. */
static const char *iso(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;

    if (!gmtime_r(&t, &tm) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(out, 32, "%lld", (long long)ms);
    return out;
}

static const char *hex8(const uint8_t h[SP_HASH_LEN], char out[2 * SP_HASH_LEN + 1])
{
    if (sp_hex_encode(h, SP_HASH_LEN, out, 2 * SP_HASH_LEN + 1) != SP_OK)
        out[0] = '\0';
    return out;
}

/* A JSON string literal (or null for NULL) on stdout. Input is UTF-8. */
static void json_str(const char *s)
{
    if (!s) {
        fputs("null", stdout);
        return;
    }
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", stdout);
        else if (ch < 0x20 || ch == 0x7f)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* "key": value-string, with a leading comma unless first. */
static void json_kv(int first, const char *key, const char *value)
{
    printf("%s\"%s\":", first ? "" : ",", key);
    json_str(value);
}

static void json_time(const char *key, int64_t ms)
{
    char t[32];

    printf(",\"%s\":", key);
    if (ms)
        json_str(iso(ms, t));
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
        fail(c, "unknown cipher %s (valid: %s)", name, list);
        return -2;
    }
    if (!sp_suite_available(suite))
        fprintf(stderr, "sealpipe %s: warning: this build cannot open %s envelopes\n", c->cmd,
                name);
    return suite;
}

/*
 * Turns repeated k=v flags into a JSON object of strings. Keys must be
 * non-empty and unique; the registry checks the result (including UTF-8).
 * Returns 0, or 1 after printing the problem.
 */
static int kv_json(struct cli_ctx *c, const char *what, const char *const *kv, int n, struct buf *b)
{
    int rc = 0;

    rc |= buf_putc(b, '{');
    for (int i = 0; i < n && rc == 0; i++) {
        const char *eq = strchr(kv[i], '=');
        size_t klen = eq ? (size_t)(eq - kv[i]) : 0;
        if (!eq || klen == 0) {
            fail(c, "bad --%s %s: expected key=value", what, kv[i]);
            return 1;
        }
        for (int j = 0; j < i; j++) {
            if (strncmp(kv[j], kv[i], klen + 1) == 0) {
                fail(c, "duplicate --%s key %.*s", what, (int)klen, kv[i]);
                return 1;
            }
        }
        if (i)
            rc |= buf_putc(b, ',');
        for (int part = 0; part < 2 && rc == 0; part++) {
            const char *p = part ? eq + 1 : kv[i];
            size_t len = part ? strlen(eq + 1) : klen;
            rc |= buf_putc(b, '"');
            for (size_t k = 0; k < len && rc == 0; k++) {
                unsigned char ch = (unsigned char)p[k];
                if (ch == '"' || ch == '\\')
                    rc |= buf_printf(b, "\\%c", ch);
                else if (ch < 0x20 || ch == 0x7f)
                    rc |= buf_printf(b, "\\u%04x", ch);
                else
                    rc |= buf_putc(b, (char)ch);
            }
            rc |= buf_putc(b, '"');
            if (part == 0)
                rc |= buf_putc(b, ':');
        }
    }
    rc |= buf_putc(b, '}');
    if (rc) {
        fail(c, "--%s values are too large (at most %d bytes of JSON)", what, CLI_MAX_JSON);
        return 1;
    }
    return 0;
}

static int open_registry(struct cli_ctx *c)
{
    char err[512] = "";
    int rc = registry_open(c->data_dir, &c->reg, err, sizeof err);

    if (rc) {
        fail(c, "cannot open the registry in %s: %s", c->data_dir,
             err[0] ? err : errors_strerror(rc));
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* device                                                                   */
/* ------------------------------------------------------------------------ */

static void parser_warn(struct cli_ctx *c, const char *parser)
{
    char path[4096];
    struct stat st;

    if (!c->analyses_dir)
        return;
    snprintf(path, sizeof path, "%s/%s.lua", c->analyses_dir, parser);
    if (stat(path, &st) != 0)
        fprintf(stderr,
                "sealpipe %s: warning: parser %s: %s does not exist; the device's payloads "
                "will fail until it does\n",
                c->cmd, parser, path);
}

static int device_add(struct cli_ctx *c, const struct cli_args *a)
{
    struct device_spec spec = {.serial = a->pos[0], .suite = -1};
    struct device_secrets sec;
    struct buf tags, params;
    char err[512] = "", key[2 * SP_MAX_KEY_LEN + 1] = "", ah[17], dh[17];
    const char *profile = a->profile ? a->profile : "default";
    int rc = 1;

    buf_init(&tags, CLI_MAX_JSON);
    buf_init(&params, CLI_MAX_JSON);
    spec.suite = parse_cipher(c, a->cipher ? a->cipher : CLI_DEFAULT_SUITE, 1);
    if (spec.suite == -2)
        goto out;
    if (a->counter && strcmp(a->counter, "strict") != 0 && strcmp(a->counter, "off") != 0) {
        fail(c, "bad --counter %s (valid: strict, off)", a->counter);
        goto out;
    }
    spec.counter_mode = a->counter && strcmp(a->counter, "off") == 0 ? COUNTER_OFF : COUNTER_STRICT;
    if ((a->seen & O_REQUIRE_ENC) && spec.suite < 0) {
        fail(c, "--require-encryption needs a key: drop --cipher none");
        goto out;
    }
    spec.encryption_required = !!(a->seen & O_REQUIRE_ENC);
    if (kv_json(c, "tag", a->tags, a->ntags, &tags) ||
        kv_json(c, "param", a->params, a->nparams, &params))
        goto out;
    spec.name = a->name;
    spec.tags_json = tags.p;
    spec.params_json = params.p;
    spec.parser = a->parser;
    spec.profile = a->profile;
    spec.derive = !!(a->seen & O_DERIVE);
    spec.derive_token = a->token;
    if ((a->seen & O_TOKEN) && !spec.derive) {
        fail(c, "--token is only used with --derive-key");
        goto out;
    }
    if (open_registry(c))
        goto out;
    if (registry_device_add(c->reg, &spec, &sec, err, sizeof err) != SP_OK) {
        fail(c, "%s", err);
        goto out;
    }
    if (a->parser)
        parser_warn(c, a->parser);
    if (sec.key_len && sp_hex_encode(sec.key, sec.key_len, key, sizeof key) != SP_OK)
        key[0] = '\0';
    hex8(sec.auth_hash, ah);
    hex8(sec.device_hash, dh);
    if (c->json) {
        printf("{");
        json_kv(1, "serial", spec.serial);
        json_kv(0, "token", sec.token);
        json_kv(0, "cipher", cipher_name(sec.suite));
        json_kv(0, "key", sec.key_len ? key : NULL);
        json_kv(0, "auth_hash", ah);
        json_kv(0, "device_hash", dh);
        json_kv(0, "profile", profile);
        json_kv(0, "profile_token", sec.profile_token[0] ? sec.profile_token : NULL);
        printf("}\n");
    } else {
        printf("Device %s added to profile %s.\n", spec.serial, profile);
        printf("  token          %s\n", sec.token);
        printf("  cipher         %s\n", sec.key_len ? sp_suite_name(sec.suite) : "none");
        if (sec.key_len)
            printf("  key            %s\n", key);
        printf("  auth hash      %s\n", ah);
        printf("  device hash    %s\n", dh);
        if (sec.profile_token[0])
            printf("  profile token  %s  (profile %s was created now)\n", sec.profile_token,
                   profile);
        printf("The token%s%s %s shown only once: store %s now.\n", sec.key_len ? ", key" : "",
               sec.profile_token[0] ? " and profile token" : "",
               sec.key_len || sec.profile_token[0] ? "are" : "is",
               sec.key_len || sec.profile_token[0] ? "them" : "it");
    }
    fflush(stdout);
    rc = 0;
    sodium_memzero(&sec, sizeof sec);
out:
    sodium_memzero(key, sizeof key);
    buf_cleanup(&tags);
    buf_cleanup(&params);
    return rc;
}

/* The fields of a device as JSON members, without the braces. */
static void device_json_fields(const struct device_info *d)
{
    char ah[17], dh[17], t[32];

    json_kv(1, "serial", d->serial);
    json_kv(0, "name", d->name);
    json_kv(0, "profile", d->profile);
    json_kv(0, "cipher", cipher_name(d->suite));
    printf(",\"encryption_required\":%s", d->encryption_required ? "true" : "false");
    json_kv(0, "counter", d->counter_mode == COUNTER_OFF ? "off" : "strict");
    json_kv(0, "parser", d->parser);
    printf(",\"tags\":%s,\"params\":%s", d->tags_json, d->params_json);
    json_kv(0, "auth_hash", hex8(d->auth_hash, ah));
    json_kv(0, "device_hash", hex8(d->device_hash, dh));
    json_kv(0, "created_at", iso(d->created_ms, t));
}

static int width(int w, const char *s)
{
    int n = s ? (int)strlen(s) : 1;
    return n > w ? n : w;
}

static int device_list(struct cli_ctx *c, const struct cli_args *a)
{
    struct device_info *ds = NULL;
    size_t n = 0;
    int ws = 6, wn = 4, wp = 7;
    int rc;

    (void)a;
    if (open_registry(c))
        return 1;
    if ((rc = registry_device_list(c->reg, &c->arena, &ds, &n))) {
        fail(c, "%s", errors_strerror(rc));
        return 1;
    }
    if (c->json) {
        printf("{\"devices\":[");
        for (size_t i = 0; i < n; i++) {
            printf("%s{", i ? "," : "");
            device_json_fields(&ds[i]);
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
    printf("%-*s  %-*s  %-*s  %-17s  %-8s  %-7s  %s\n", ws, "SERIAL", wn, "NAME", wp, "PROFILE",
           "CIPHER", "REQUIRED", "COUNTER", "PARSER");
    for (size_t i = 0; i < n; i++) {
        const struct device_info *d = &ds[i];
        printf("%-*s  %-*s  %-*s  %-17s  %-8s  %-7s  %s\n", ws, d->serial, wn, d->name, wp,
               d->profile, d->suite >= 0 ? sp_suite_name(d->suite) : "none",
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
    json_kv(1, "name", t->name);
    json_kv(0, "prefix", t->prefix);
    json_kv(0, "perm", registry_perm_name(t->perm));
    json_kv(0, "status", token_status(t, now));
    json_kv(0, "created_at", iso(t->created_ms, tm));
    json_time("expires_at", t->expires_ms);
    json_time("revoked_at", t->revoked_ms);
    printf("}");
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
               registry_perm_name(ts[i].perm), token_status(&ts[i], now), iso(ts[i].created_ms, t1),
               ts[i].expires_ms ? iso(ts[i].expires_ms, t2) : "never");
}

static int device_show(struct cli_ctx *c, const struct cli_args *a)
{
    struct device_info d;
    struct token_info *ts = NULL;
    size_t n = 0;
    int64_t now = now_ms();
    char ah[17], dh[17], t[32];
    int rc;

    if (open_registry(c))
        return 1;
    rc = registry_device_get(c->reg, a->pos[0], &c->arena, &d);
    if (rc == SP_OK)
        rc = registry_token_list(c->reg, a->pos[0], &c->arena, &ts, &n);
    if (rc == SP_ERR_NODEVICE) {
        fail(c, "unknown device %s", a->pos[0]);
        return 1;
    }
    if (rc) {
        fail(c, "%s", errors_strerror(rc));
        return 1;
    }
    if (c->json) {
        putchar('{');
        device_json_fields(&d);
        printf(",\"tokens\":[");
        for (size_t i = 0; i < n; i++) {
            if (i)
                putchar(',');
            token_json(&ts[i], now);
        }
        printf("]}\n");
        return 0;
    }
    printf("serial               %s\n", d.serial);
    printf("name                 %s\n", d.name);
    printf("profile              %s\n", d.profile);
    printf("auth hash            %s\n", hex8(d.auth_hash, ah));
    printf("device hash          %s\n", hex8(d.device_hash, dh));
    printf("cipher               %s\n", d.suite >= 0 ? sp_suite_name(d.suite) : "none");
    printf("encryption required  %s\n", d.encryption_required ? "yes" : "no");
    printf("counter              %s\n", d.counter_mode == COUNTER_OFF ? "off" : "strict");
    printf("parser               %s\n", d.parser ? d.parser : "-");
    printf("tags                 %s\n", d.tags_json);
    printf("params               %s\n", d.params_json);
    printf("created              %s\n", iso(d.created_ms, t));
    printf("tokens\n");
    token_table(ts, n, now, "  ");
    return 0;
}

static int device_rm(struct cli_ctx *c, const struct cli_args *a)
{
    int rc;

    if (open_registry(c))
        return 1;
    rc = registry_device_remove(c->reg, a->pos[0]);
    if (rc == SP_ERR_NODEVICE) {
        fail(c, "unknown device %s", a->pos[0]);
        return 1;
    }
    if (rc) {
        fail(c, "%s", errors_strerror(rc));
        return 1;
    }
    printf("Device %s removed with its tokens, keys and replay counter (its stored data stays "
           "in the bucket).\n",
           a->pos[0]);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* token                                                                    */
/* ------------------------------------------------------------------------ */

static int token_add(struct cli_ctx *c, const struct cli_args *a)
{
    char token[37], name[16], t[32];
    int64_t expires = 0;
    int perm = TOKEN_FULL, rc;

    if (a->perm && (perm = registry_perm_parse(a->perm)) < 0) {
        fail(c, "bad --perm %s (valid: full, write, read)", a->perm);
        return 1;
    }
    if (a->expires) {
        char *end;
        long long s;
        errno = 0;
        s = strtoll(a->expires, &end, 10);
        if (errno || end == a->expires || *end || s <= 0 || s > CLI_MAX_EXPIRES) {
            fail(c, "bad --expires %s: a number of seconds from now", a->expires);
            return 1;
        }
        expires = now_ms() + s * 1000;
    }
    if (open_registry(c))
        return 1;
    rc = registry_token_add(c->reg, a->pos[0], a->name, perm, expires, token);
    if (rc == SP_ERR_NODEVICE)
        fail(c, "unknown device %s", a->pos[0]);
    else if (rc == SP_ERR_EXISTS)
        fail(c, "device %s already has a token named %s", a->pos[0], a->name);
    else if (rc == SP_ERR_INVAL)
        fail(c, "bad token name %s: use 1-100 of A-Z a-z 0-9 _ -", a->name ? a->name : "");
    else if (rc)
        fail(c, "%s", errors_strerror(rc));
    if (rc)
        return 1;
    snprintf(name, sizeof name, "%.8s", token);
    if (c->json) {
        printf("{");
        json_kv(1, "serial", a->pos[0]);
        json_kv(0, "name", a->name ? a->name : name);
        json_kv(0, "token", token);
        json_kv(0, "prefix", name);
        json_kv(0, "perm", registry_perm_name(perm));
        json_time("expires_at", expires);
        printf("}\n");
    } else {
        printf("Token %s added to device %s (perm %s, expires %s).\n", a->name ? a->name : name,
               a->pos[0], registry_perm_name(perm), expires ? iso(expires, t) : "never");
        printf("  token  %s\n", token);
        printf("The token is shown only once: store it now.\n");
    }
    fflush(stdout);
    sodium_memzero(token, sizeof token);
    return 0;
}

static int token_list(struct cli_ctx *c, const struct cli_args *a)
{
    struct token_info *ts = NULL;
    size_t n = 0;
    int64_t now = now_ms();
    int rc;

    if (open_registry(c))
        return 1;
    rc = registry_token_list(c->reg, a->pos[0], &c->arena, &ts, &n);
    if (rc == SP_ERR_NODEVICE) {
        fail(c, "unknown device %s", a->pos[0]);
        return 1;
    }
    if (rc) {
        fail(c, "%s", errors_strerror(rc));
        return 1;
    }
    if (c->json) {
        printf("{");
        json_kv(1, "serial", a->pos[0]);
        printf(",\"tokens\":[");
        for (size_t i = 0; i < n; i++) {
            if (i)
                putchar(',');
            token_json(&ts[i], now);
        }
        printf("]}\n");
        return 0;
    }
    token_table(ts, n, now, "");
    return 0;
}

static int token_revoke(struct cli_ctx *c, const struct cli_args *a)
{
    int rc;

    if (open_registry(c))
        return 1;
    rc = registry_token_revoke(c->reg, a->pos[0], a->pos[1]);
    if (rc == SP_ERR_NODEVICE)
        fail(c, "unknown device %s", a->pos[0]);
    else if (rc == SP_ERR_NOTFOUND)
        fail(c, "device %s has no token named or prefixed %s", a->pos[0], a->pos[1]);
    else if (rc == SP_ERR_INVAL)
        fail(c, "%s matches more than one token of device %s; give the other (name or prefix)",
             a->pos[1], a->pos[0]);
    else if (rc)
        fail(c, "%s", errors_strerror(rc));
    if (rc)
        return 1;
    printf("Token %s of device %s revoked.\n", a->pos[1], a->pos[0]);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* key, profile                                                             */
/* ------------------------------------------------------------------------ */

static int key_rotate(struct cli_ctx *c, const struct cli_args *a)
{
    struct device_secrets sec;
    char err[512] = "", key[2 * SP_MAX_KEY_LEN + 1] = "", ah[17], dh[17];
    int suite = -1, rc;

    if (a->cipher && (suite = parse_cipher(c, a->cipher, 0)) < 0)
        return 1;
    if (!(a->seen & O_DERIVE) != !a->token) {
        fail(c, "--derive-key and --token go together");
        return 1;
    }
    if (open_registry(c))
        return 1;
    rc = registry_key_rotate(c->reg, a->pos[0], suite, a->token, &sec, err, sizeof err);
    if (rc) {
        fail(c, "%s", err[0] ? err : errors_strerror(rc));
        return 1;
    }
    if (sp_hex_encode(sec.key, sec.key_len, key, sizeof key) != SP_OK)
        key[0] = '\0';
    if (c->json) {
        printf("{");
        json_kv(1, "serial", a->pos[0]);
        json_kv(0, "cipher", sp_suite_name(sec.suite));
        json_kv(0, "key", key);
        json_kv(0, "auth_hash", hex8(sec.auth_hash, ah));
        json_kv(0, "device_hash", hex8(sec.device_hash, dh));
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
static int device_cmd(struct cli_ctx *c, const struct cli_args *a)
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
        fail(c, "bad command: use 1 or more printable ASCII characters without spaces and '|' "
                "(TagoTiP DETAILCHAR)");
        return 1;
    }
    if (open_registry(c))
        return 1;
    if (registry_device_get(c->reg, serial, &c->arena, &d) != SP_OK) {
        fail(c, "unknown device %s", serial);
        return 1;
    }
    if (!(a->seen & O_PLAIN)) {
        if (registry_keys_for(c->reg, d.auth_hash, d.device_hash, now_ms(), 0, &c->arena, &keys,
                              &nkeys) != SP_OK) {
            fail(c, "cannot read the keys of %s (is master.key the right one?)", serial);
            return 1;
        }
        for (size_t i = 0; i < nkeys; i++)
            if (keys[i].retired_ms == 0 && strcmp(keys[i].serial, serial) == 0)
                sealed = 1;
        if (nkeys)
            sodium_memzero(keys, nkeys * sizeof(*keys));
        if (!sealed && d.encryption_required) {
            fail(c, "device %s requires encryption but has no key", serial);
            return 1;
        }
    }
    if (bucket_open(c->data_dir, 1, &bk, err, sizeof err) != SP_OK) {
        fail(c, "%s", err);
        return 1;
    }
    if (bucket_command_queue(bk, serial, command, sealed, &id) != SP_OK) {
        fail(c, "cannot queue the command (database error)");
        goto out;
    }
    snprintf(frame, sizeof frame, "%s/%s/ack", sealed ? "$tips" : "$tip", serial);
    if (c->json) {
        printf("{\"id\":%lld", (long long)id);
        json_kv(0, "serial", serial);
        json_kv(0, "topic", frame);
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

static int profile_add(struct cli_ctx *c, const struct cli_args *a)
{
    struct profile_secret sec;
    uint8_t hash[SP_HASH_LEN];
    char err[512] = "", ah[17];

    if (open_registry(c))
        return 1;
    if (registry_profile_add(c->reg, a->pos[0], a->token, &sec, err, sizeof err) != SP_OK) {
        fail(c, "%s", err);
        return 1;
    }
    if (sp_auth_hash(sec.token, strlen(sec.token), hash) != SP_OK)
        memset(hash, 0, sizeof hash);
    hex8(hash, ah);
    if (c->json) {
        printf("{");
        json_kv(1, "name", a->pos[0]);
        json_kv(0, "token", sec.token);
        json_kv(0, "auth_hash", ah);
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

static int profile_list(struct cli_ctx *c, const struct cli_args *a)
{
    struct profile_info *ps = NULL;
    size_t n = 0;
    char ah[17], t[32];
    int rc, wn = 4;

    (void)a;
    if (open_registry(c))
        return 1;
    if ((rc = registry_profile_list(c->reg, &c->arena, &ps, &n))) {
        fail(c, "%s", errors_strerror(rc));
        return 1;
    }
    if (c->json) {
        printf("{\"profiles\":[");
        for (size_t i = 0; i < n; i++) {
            printf("%s{", i ? "," : "");
            json_kv(1, "name", ps[i].name);
            json_kv(0, "auth_hash", hex8(ps[i].auth_hash, ah));
            json_kv(0, "created_at", iso(ps[i].created_ms, t));
            printf("}");
        }
        printf("]}\n");
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        wn = width(wn, ps[i].name);
    printf("%-*s  %-16s  %s\n", wn, "NAME", "AUTH HASH", "CREATED");
    for (size_t i = 0; i < n; i++)
        printf("%-*s  %-16s  %s\n", wn, ps[i].name, hex8(ps[i].auth_hash, ah),
               iso(ps[i].created_ms, t));
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The verb table, usage and dispatch                                       */
/* ------------------------------------------------------------------------ */

static const struct cli_verb verbs[] = {
    {"device", "add", 1,
     O_NAME | O_TAG | O_PARAM | O_CIPHER | O_REQUIRE_ENC | O_PARSER | O_PROFILE | O_COUNTER |
         O_DERIVE | O_TOKEN | O_JSON,
     V_CREATES_DATA, device_add,
     "sealpipe device add <serial> [options]\n"
     "  Registers a device and prints its token, encryption key and hashes (shown once).\n"
     "  <serial>               1-100 characters of A-Z a-z 0-9 _ -\n"
     "  --name NAME            display name (default: the serial)\n"
     "  --tag KEY=VALUE        a tag; repeat for more\n"
     "  --param KEY=VALUE      a configuration parameter; repeat for more\n"
     "  --cipher NAME|none     TagoTiP/S cipher of the device's key: aes-128-ccm,\n"
     "                         aes-128-gcm, aes-256-ccm, aes-256-gcm, chacha20-poly1305\n"
     "                         (default), or none for no key\n"
     "  --require-encryption   refuse plaintext TagoTiP from this device\n"
     "  --parser NAME          analysis that normalizes payloads (<analyses_dir>/NAME.lua)\n"
     "  --profile NAME         profile (authorization token) to join (default: default,\n"
     "                         created with its token on first use)\n"
     "  --counter strict|off   replay protection of envelope counters (default: strict)\n"
     "  --derive-key           derive the key from the profile token and the serial\n"
     "                         (HMAC-SHA256, TagoTiPs.md 2.4) instead of a random one\n"
     "  --token TOKEN          the profile's authorization token, for --derive-key (not\n"
     "                         needed when this command creates the profile)\n"
     "  --json                 print one JSON object\n"},
    {"device", "cmd", 2, O_PLAIN | O_JSON, V_NEEDS_DATA, device_cmd,
     "sealpipe device cmd <serial> <command> [--plain] [--json]\n"
     "  Sends the TagoTiP command CMD|<command> to the device on its ack topic. The\n"
     "  running daemon publishes it (QoS 1) within a second; a device with a key gets it\n"
     "  sealed with that key on $tips/<serial>/ack, others plain on $tip/<serial>/ack.\n"
     "  <command>              printable ASCII without spaces and '|', e.g. reboot or\n"
     "                         ota=https://example.com/v2.1.bin\n"
     "  --plain                send it plain on $tip/<serial>/ack even if the device has a key\n"
     "  --json                 print one JSON object\n"},
    {"device", "list", 0, O_JSON, V_NEEDS_DATA, device_list,
     "sealpipe device list [--json]\n"
     "  Lists all devices by serial.\n"},
    {"device", "show", 1, O_JSON, V_NEEDS_DATA, device_show,
     "sealpipe device show <serial> [--json]\n"
     "  Shows a device with its tokens (never the secrets themselves).\n"},
    {"device", "rm", 1, 0, V_NEEDS_DATA, device_rm,
     "sealpipe device rm <serial>\n"
     "  Removes a device with its tokens, keys and replay counter; its stored data stays.\n"},
    {"token", "add", 1, O_NAME | O_PERM | O_EXPIRES | O_JSON, V_NEEDS_DATA, token_add,
     "sealpipe token add <serial> [options]\n"
     "  Creates another device token and prints it (shown once).\n"
     "  --name NAME            token name, 1-100 of A-Z a-z 0-9 _ - (default: its prefix)\n"
     "  --perm full|write|read permission (default: full)\n"
     "  --expires SECONDS      expire this many seconds from now (default: never)\n"
     "  --json                 print one JSON object\n"},
    {"token", "list", 1, O_JSON, V_NEEDS_DATA, token_list,
     "sealpipe token list <serial> [--json]\n"
     "  Lists a device's tokens by name and prefix.\n"},
    {"token", "revoke", 2, 0, V_NEEDS_DATA, token_revoke,
     "sealpipe token revoke <serial> <name-or-prefix>\n"
     "  Revokes one token of the device, named by its name or its 8-character prefix.\n"},
    {"key", "rotate", 1, O_CIPHER | O_DERIVE | O_TOKEN | O_JSON, V_NEEDS_DATA, key_rotate,
     "sealpipe key rotate <serial> [--cipher NAME] [--derive-key --token at...] [--json]\n"
     "  Replaces the device's encryption key and prints the new one (shown once). The old\n"
     "  key keeps opening envelopes for the daemon's key_grace seconds.\n"
     "  --cipher NAME          cipher of the new key (default: the current one): aes-128-ccm,\n"
     "                         aes-128-gcm, aes-256-ccm, aes-256-gcm, chacha20-poly1305\n"
     "  --derive-key           derive the new key from the profile token and the serial\n"
     "                         (TagoTiPs.md 2.4), as TagoIO's device SDK examples do\n"
     "  --token TOKEN          the profile's authorization token (\"at\" + 32 hex)\n"
     "  --json                 print one JSON object\n"},
    {"profile", "add", 1, O_TOKEN | O_JSON, V_CREATES_DATA, profile_add,
     "sealpipe profile add <name> [--token at...] [--json]\n"
     "  Creates a profile: a TagoTiP authorization token shared by its devices.\n"
     "  <name>                 1-100 characters of A-Z a-z 0-9 _ -\n"
     "  --token TOKEN          use this token (\"at\" + 32 hex) instead of a random one\n"
     "  --json                 print one JSON object\n"},
    {"profile", "list", 0, O_JSON, V_NEEDS_DATA, profile_list,
     "sealpipe profile list [--json]\n"
     "  Lists profiles with their auth hashes.\n"},
};

#define NVERBS (sizeof verbs / sizeof verbs[0])

static int is_help(const char *s)
{
    return strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0 || strcmp(s, "help") == 0;
}

/* Prints the usage of every verb of group (or of all groups when NULL). */
static void group_usage(FILE *f, const char *group)
{
    fprintf(f, "usage: sealpipe %s <verb> [arguments] [options]\n",
            group ? group : "device|token|key|profile");
    fprintf(f, "Run sealpipe %s <verb> --help for one verb.\n", group ? group : "<group>");
    for (size_t i = 0; i < NVERBS; i++)
        if (!group || strcmp(verbs[i].group, group) == 0)
            fprintf(f, "\n%s", verbs[i].usage);
}

/* Parses argv[2..] for v; returns 0, or 2 after printing the usage error. */
static int parse_args(const struct cli_verb *v, int argc, char **argv, struct cli_args *a)
{
    const char *cmd_group = v->group, *cmd_verb = v->verb;
    int only_pos = 0;

    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i], *val = NULL, *eq;
        const struct cli_opt *o = NULL;
        size_t len;

        if (!only_pos && strcmp(arg, "--") == 0) {
            only_pos = 1; /* the rest are arguments, even if they start with -- */
            continue;
        }
        if (only_pos || strncmp(arg, "--", 2) != 0) {
            if (a->npos >= v->npos) {
                fprintf(stderr, "sealpipe %s %s: unexpected argument %s\n", cmd_group, cmd_verb,
                        arg);
                return 2;
            }
            a->pos[a->npos++] = arg;
            continue;
        }
        eq = strchr(arg + 2, '=');
        len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        for (size_t k = 0; k < sizeof cli_opts / sizeof cli_opts[0]; k++)
            if (strlen(cli_opts[k].name) == len && strncmp(cli_opts[k].name, arg + 2, len) == 0 &&
                (v->opts & cli_opts[k].bit))
                o = &cli_opts[k];
        if (!o) {
            fprintf(stderr, "sealpipe %s %s: unknown option %.*s\n", cmd_group, cmd_verb,
                    (int)len + 2, arg);
            return 2;
        }
        if (o->has_arg) {
            if (eq)
                val = eq + 1;
            else if (i + 1 < argc)
                val = argv[++i];
            else {
                fprintf(stderr, "sealpipe %s %s: --%s needs a value\n", cmd_group, cmd_verb,
                        o->name);
                return 2;
            }
        } else if (eq) {
            fprintf(stderr, "sealpipe %s %s: --%s takes no value\n", cmd_group, cmd_verb, o->name);
            return 2;
        }
        if ((o->bit & (O_TAG | O_PARAM)) == 0 && (a->seen & o->bit)) {
            fprintf(stderr, "sealpipe %s %s: --%s given twice\n", cmd_group, cmd_verb, o->name);
            return 2;
        }
        a->seen |= o->bit;
        switch (o->bit) {
        case O_NAME:
            a->name = val;
            break;
        case O_CIPHER:
            a->cipher = val;
            break;
        case O_PARSER:
            a->parser = val;
            break;
        case O_PROFILE:
            a->profile = val;
            break;
        case O_COUNTER:
            a->counter = val;
            break;
        case O_PERM:
            a->perm = val;
            break;
        case O_EXPIRES:
            a->expires = val;
            break;
        case O_TOKEN:
            a->token = val;
            break;
        case O_TAG:
        case O_PARAM: {
            int *n = o->bit == O_TAG ? &a->ntags : &a->nparams;
            if (*n >= CLI_MAX_KV) {
                fprintf(stderr, "sealpipe %s %s: more than %d --%s flags\n", cmd_group, cmd_verb,
                        CLI_MAX_KV, o->name);
                return 2;
            }
            (o->bit == O_TAG ? a->tags : a->params)[(*n)++] = val;
            break;
        }
        default:
            break;
        }
    }
    if (a->npos < v->npos) {
        fprintf(stderr, "sealpipe %s %s: missing argument\nusage: %s", cmd_group, cmd_verb,
                v->usage);
        return 2;
    }
    return 0;
}

int cli_run(const char *data_dir, const char *analyses_dir, int argc, char **argv)
{
    const struct cli_verb *v = NULL;
    struct cli_args args;
    struct cli_ctx c;
    char cmd[64];
    int known_group = 0, rc;

    if (argc < 1 || is_help(argv[0])) {
        group_usage(argc < 1 ? stderr : stdout, NULL);
        return argc < 1 ? 2 : 0;
    }
    for (size_t i = 0; i < NVERBS; i++)
        if (strcmp(verbs[i].group, argv[0]) == 0)
            known_group = 1;
    if (!known_group) {
        fprintf(stderr, "sealpipe: unknown command %s\n", argv[0]);
        group_usage(stderr, NULL);
        return 2;
    }
    if (argc < 2 || is_help(argv[1])) {
        group_usage(argc < 2 ? stderr : stdout, argv[0]);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < NVERBS; i++)
        if (strcmp(verbs[i].group, argv[0]) == 0 && strcmp(verbs[i].verb, argv[1]) == 0)
            v = &verbs[i];
    if (!v) {
        fprintf(stderr, "sealpipe %s: unknown subcommand %s\n", argv[0], argv[1]);
        group_usage(stderr, argv[0]);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: %s", v->usage);
            return 0;
        }
    }
    memset(&args, 0, sizeof args);
    if ((rc = parse_args(v, argc, argv, &args)))
        return rc;

    snprintf(cmd, sizeof cmd, "%s %s", v->group, v->verb);
    c.data_dir = data_dir;
    c.analyses_dir = analyses_dir;
    c.cmd = cmd;
    c.reg = NULL;
    c.json = !!(args.seen & O_JSON);
    /* A verb that only works on what exists must not create a data
     * directory (registry_open would) for a mistyped --data-dir. */
    if (v->access == V_NEEDS_DATA) {
        char err[600];
        if (datadir_check(data_dir, err, sizeof err) != SP_OK) {
            fail(&c, "%s", err);
            return 1;
        }
    }
    arena_init(&c.arena, CLI_ARENA);
    rc = v->run(&c, &args);
    registry_close(c.reg);
    arena_cleanup(&c.arena);
    return rc;
}
