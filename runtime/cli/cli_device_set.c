/*
 * cli_device_set.c - sealpipe device set: changes a device's name, tags,
 * params, parser, require-encryption, counter mode and retention, never its
 * secrets (see the verb's usage in cli.c and README "Changing a device").
 *
 * The registry row is changed in one transaction (registry_device_update),
 * which moves the registry's generation: the running daemon reloads its
 * device cache before the device's next message. Tags and params change key
 * by key, as a JSON merge patch the UPDATE applies. The retention override is the bucket's
 * (storage/retention.h), written after the registry; the daemon reads it at
 * its next retention step.
 */
#include "cli_verbs.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "base/errors.h"
#include "base/json.h"
#include "storage/bucket.h"
#include "storage/registry.h"
#include "storage/retention.h"

/*
 * The --tag K=V flags of device set (or --param) as a JSON merge patch (RFC
 * 7396): {"K":"V"} sets K, {"K":null} (from K=) removes it, the keys it does
 * not name stay. The registry applies it in the UPDATE itself, so that two
 * device set at once each keep the other's keys (a merge read here and
 * written there lost one). The last flag of a key wins. Returns 0 with the
 * patch in b, or 1 after printing the problem.
 */
static int kv_patch(struct cli_ctx *c, const char *what, const struct cli_list *kv, struct buf *b)
{
    int rc;

    if (cli_kv_check(c, what, kv))
        return 1;
    rc = buf_putc(b, '{');
    for (int i = 0; i < kv->n && rc == SP_OK; i++) {
        size_t klen = (size_t)(strchr(kv->v[i], '=') - kv->v[i]);
        const char *v = kv->v[i] + klen + 1;
        if (i)
            rc = buf_putc(b, ',');
        if (rc == SP_OK)
            rc = json_write_string(b, kv->v[i], klen);
        if (rc == SP_OK)
            rc = buf_putc(b, ':');
        if (rc == SP_OK)
            rc = *v ? json_write_string(b, v, strlen(v)) : buf_puts(b, "null");
    }
    if (rc == SP_OK)
        rc = buf_putc(b, '}');
    if (rc != SP_OK) {
        cli_fail(c, "--%s values are too large (at most %d bytes of JSON)", what, CLI_MAX_JSON);
        return 1;
    }
    return 0;
}

/* What device set was asked to do, read and checked before anything is changed. */
struct set_plan {
    struct device_update u;
    int registry;  /* some field of the devices row changes */
    int retention; /* 0: not given; 1: set to keep_ms; 2: back to the default */
    int64_t keep_ms;
};

/* An on|off value; -1 after printing the problem. */
static int on_off(struct cli_ctx *c, const char *opt, const char *v)
{
    if (strcmp(v, "on") == 0 || strcmp(v, "off") == 0)
        return v[1] == 'n';
    cli_fail(c, "bad --%s %s (valid: on, off)", opt, v);
    return -1;
}

/* Reads the options of device set that need no registry. Returns 0 or 1. */
static int set_read_args(struct cli_ctx *c, const struct cli_args *a, struct set_plan *p)
{
    p->u = (struct device_update){.name = a->name, .encryption_required = -1, .counter_mode = -1};
    if (a->require_enc &&
        (p->u.encryption_required = on_off(c, "require-encryption", a->require_enc)) < 0)
        return 1;
    if (a->counter) {
        if (strcmp(a->counter, "strict") != 0 && strcmp(a->counter, "off") != 0) {
            cli_fail(c, "bad --counter %s (valid: strict, off)", a->counter);
            return 1;
        }
        p->u.counter_mode = strcmp(a->counter, "off") == 0 ? COUNTER_OFF : COUNTER_STRICT;
    }
    if (a->parser) {
        p->u.set_parser = 1;
        p->u.parser = strcmp(a->parser, "none") == 0 ? NULL : a->parser;
    }
    if (a->retention) {
        p->retention = strcmp(a->retention, "default") == 0 ? 2 : 1;
        if (p->retention == 1 && retention_parse(a->retention, &p->keep_ms) != SP_OK) {
            cli_fail(c,
                     "bad --retention %s: a whole number and a unit, s m h d or w (e.g. 30d, 12h), "
                     "forever, or default (the daemon's retention option)",
                     a->retention);
            return 1;
        }
    }
    p->registry = a->name || a->tags.n || a->params.n || a->require_enc || a->counter || a->parser;
    return 0;
}

/* Retention of serial as `device set` shows it: "default" or a duration. */
static void keep_text(struct bucket *bk, const char *serial, char out[RETENTION_TEXT_MAX])
{
    int64_t ms;

    if (retention_get_device(bk, serial, &ms) == SP_OK)
        retention_format(ms, out);
    else
        snprintf(out, RETENTION_TEXT_MAX, "default");
}

/* Applies plan p's retention to serial; from/to get the texts. Returns 0 or 1. */
static int set_retention(struct cli_ctx *c, const char *serial, const struct set_plan *p,
                         char from[RETENTION_TEXT_MAX], char to[RETENTION_TEXT_MAX])
{
    struct bucket *bk = NULL;
    char err[512] = "";
    int rc = 1;

    if (bucket_open(c->data_dir, BUCKET_SYNC_FULL, &bk, err, sizeof err) != SP_OK) {
        cli_fail(c, "%s", err);
        return 1;
    }
    keep_text(bk, serial, from);
    if (retention_set_device(bk, serial, p->keep_ms, p->retention == 2) != SP_OK) {
        cli_fail(c, "cannot set the retention of %s (database error)", serial);
        goto out;
    }
    keep_text(bk, serial, to);
    rc = 0;
out:
    bucket_close(bk);
    return rc;
}

/* One changed field: a line, or a member of the "changed" JSON object. */
static void change(struct cli_ctx *c, int *n, const char *field, const char *from, const char *to,
                   int raw_json)
{
    from = from ? from : "-";
    to = to ? to : "-";
    if (strcmp(from, to) == 0)
        return;
    if (!c->json) {
        printf("  %-20s %s -> %s\n", field, from, to);
    } else if (raw_json) {
        printf("%s\"%s\":{\"from\":%s,\"to\":%s}", *n ? "," : "", field, from, to);
    } else {
        printf("%s\"%s\":{", *n ? "," : "", field);
        cli_json_kv(1, "from", from);
        cli_json_kv(0, "to", to);
        putchar('}');
    }
    (*n)++;
}

/* Prints what device set changed, before and after. */
static void set_print(struct cli_ctx *c, const struct device_info *b, const struct device_info *d,
                      const char *keep_from, const char *keep_to)
{
    int n = 0;

    if (c->json) {
        printf("{");
        cli_json_kv(1, "serial", d->serial);
        printf(",\"changed\":{");
    } else {
        printf("Device %s:\n", d->serial);
    }
    change(c, &n, "name", b->name, d->name, 0);
    change(c, &n, "tags", b->tags_json, d->tags_json, 1);
    change(c, &n, "params", b->params_json, d->params_json, 1);
    change(c, &n, "parser", b->parser, d->parser, 0);
    change(c, &n, "require_encryption", b->encryption_required ? "on" : "off",
           d->encryption_required ? "on" : "off", 0);
    change(c, &n, "counter", b->counter_mode == COUNTER_OFF ? "off" : "strict",
           d->counter_mode == COUNTER_OFF ? "off" : "strict", 0);
    change(c, &n, "retention", keep_from, keep_to, 0);
    if (c->json)
        printf("}}\n");
    else if (n == 0)
        printf("  nothing changed: it already had these values\n");
    else
        printf("The running daemon applies this to the device's next message.\n");
}

/* The registry part of device set: patches tags and params, checks the parser,
 * updates the row. Returns 0 or 1. */
static int set_registry(struct cli_ctx *c, const struct cli_args *a, const struct device_info *b,
                        struct set_plan *p)
{
    struct buf tags, params;
    char err[9000] = "";
    int rc = 1;

    buf_init(&tags, CLI_MAX_JSON);
    buf_init(&params, CLI_MAX_JSON);
    if ((a->tags.n && kv_patch(c, "tag", &a->tags, &tags)) ||
        (a->params.n && kv_patch(c, "param", &a->params, &params)))
        goto out;
    p->u.tags_patch = a->tags.n ? tags.p : NULL;
    p->u.params_patch = a->params.n ? params.p : NULL;
    if (p->u.parser && !cli_parser_exists(c, p->u.parser, err, sizeof err)) {
        cli_fail(c, "%s", err);
        goto out;
    }
    if (registry_device_update(c->reg, b->serial, &p->u, err, sizeof err) != SP_OK) {
        cli_fail(c, "%s", err);
        goto out;
    }
    rc = 0;
out:
    buf_cleanup(&tags);
    buf_cleanup(&params);
    return rc;
}

int cli_device_set(struct cli_ctx *c, const struct cli_args *a)
{
    const char *serial = a->pos[0];
    struct device_info before, after;
    struct set_plan p = {0};
    char keep_from[RETENTION_TEXT_MAX] = "", keep_to[RETENTION_TEXT_MAX] = "";

    if (set_read_args(c, a, &p))
        return 1;
    if (!p.registry && !p.retention) {
        fprintf(stderr,
                "sealpipe %s: nothing to change: give --name, --tag, --param, --parser, "
                "--require-encryption, --counter or --retention\n",
                c->cmd);
        return 2;
    }
    if (cli_open_registry(c))
        return 1;
    if (registry_device_get(c->reg, serial, &c->arena, &before) != SP_OK) {
        cli_fail(c, "unknown device %s", serial);
        return 1;
    }
    if (p.registry && set_registry(c, a, &before, &p))
        return 1;
    if (p.retention && set_retention(c, serial, &p, keep_from, keep_to))
        return 1;
    if (registry_device_get(c->reg, serial, &c->arena, &after) != SP_OK) {
        cli_fail(c, "device %s was removed meanwhile", serial);
        return 1;
    }
    set_print(c, &before, &after, keep_from, keep_to);
    return 0;
}
