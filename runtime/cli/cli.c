/*
 * cli.c - the command line of the registry subcommands: sealpipe
 * device|token|key|profile ... (their work is in cli_verbs.c).
 *
 * main.c hands over argv from the group name on. One table (verbs[]) holds
 * each verb's positional arguments, the options it accepts, its handler and
 * its usage text, so parsing and --help cannot drift apart; another
 * (cli_opts[]) holds every option with where its value goes. The command
 * line is read by the scanner every sealpipe command uses (sp_cmdline.h), so
 * options may come before or after the verb and its arguments, and
 * --data-dir, --analyses-dir and --config (conf.h, the config file read
 * first) are accepted by every verb. Arguments are parsed completely before
 * the registry is opened: a usage error (exit 2) touches nothing on disk.
 * Only the verbs that create things (device add, profile add) may create the
 * data directory; the others first check that it exists and holds a
 * registry, and create nothing when it does not.
 */
#include "cli.h"
#include "base/errors.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "base/arena.h"
#include "cli_deadletter.h"
#include "cli_verbs.h"
#include "sp_cmdline.h"
#include "conf.h"
#include "storage/datadir.h"
#include "storage/registry.h"
#include "sealpipe.h"

#define CLI_ARENA (16u * 1024 * 1024)

/* Options every verb accepts: where the data is (conf.h; given twice, the
 * last one counts, as for sealpipe run) and --help (cli_run looks for it). */
#define O_GLOBAL (O_DATA_DIR | O_ANALYSES_DIR | O_CONFIG | O_HELP)

enum cli_opt_kind { K_FLAG, K_VALUE, K_LIST };

#define AT(field) offsetof(struct cli_args, field)

static const struct cli_opt {
    const char *name;
    unsigned bit;
    enum cli_opt_kind kind;
    size_t at; /* K_VALUE: offset of its const char *; K_LIST: of its struct cli_list */
} cli_opts[] = {
    {"name", O_NAME, K_VALUE, AT(name)},
    {"tag", O_TAG, K_LIST, AT(tags)},
    {"param", O_PARAM, K_LIST, AT(params)},
    {"cipher", O_CIPHER, K_VALUE, AT(cipher)},
    {"require-encryption", O_REQUIRE_ENC, K_FLAG, AT(require_enc)},
    {"parser", O_PARSER, K_VALUE, AT(parser)},
    {"profile", O_PROFILE, K_VALUE, AT(profile)},
    {"counter", O_COUNTER, K_VALUE, AT(counter)},
    {"json", O_JSON, K_FLAG, 0},
    {"perm", O_PERM, K_VALUE, AT(perm)},
    {"expires", O_EXPIRES, K_VALUE, AT(expires)},
    {"token", O_TOKEN, K_VALUE, AT(token)},
    {"derive-key", O_DERIVE, K_FLAG, 0},
    {"plain", O_PLAIN, K_FLAG, 0},
    {"data-dir", O_DATA_DIR, K_VALUE, AT(data_dir)},
    {"analyses-dir", O_ANALYSES_DIR, K_VALUE, AT(analyses_dir)},
    {"config", O_CONFIG, K_LIST, AT(configs)},
    {"help", O_HELP, K_FLAG, 0},
    {"reason", O_REASON, K_VALUE, AT(reason)},
    {"device", O_DEVICE, K_VALUE, AT(device)},
    {"since", O_SINCE, K_VALUE, AT(since)},
    {"limit", O_LIMIT, K_VALUE, AT(limit)},
    {"wait", O_WAIT, K_FLAG, 0},
    {"force", O_FORCE, K_FLAG, 0},
    {"retention", O_RETENTION, K_VALUE, AT(retention)},
};

#define NOPTS (sizeof cli_opts / sizeof cli_opts[0])

/* Whether a verb may create the data directory, or needs an existing one. */
enum cli_access { V_NEEDS_DATA, V_CREATES_DATA };

struct cli_verb {
    const char *group;
    const char *verb;
    int npos; /* required positional arguments; negative: up to -npos optional ones */
    unsigned opts;
    enum cli_access access;
    int (*run)(struct cli_ctx *c, const struct cli_args *a);
    const char *usage;
};

/* ------------------------------------------------------------------------ */
/* The verb table, usage and dispatch                                       */
/* ------------------------------------------------------------------------ */

static const struct cli_verb verbs[] = {
    {"device", "add", 1,
     O_NAME | O_TAG | O_PARAM | O_CIPHER | O_REQUIRE_ENC | O_PARSER | O_PROFILE | O_COUNTER |
         O_DERIVE | O_TOKEN | O_JSON,
     V_CREATES_DATA, cli_device_add,
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
    {"device", "cmd", 2, O_PLAIN | O_JSON, V_NEEDS_DATA, cli_device_cmd,
     "sealpipe device cmd <serial> <command> [--plain] [--json]\n"
     "  Sends the TagoTiP command CMD|<command> to the device on its ack topic. The\n"
     "  running daemon publishes it (QoS 1) within a second; a device with a key gets it\n"
     "  sealed with that key on $tips/<serial>/ack, others plain on $tip/<serial>/ack.\n"
     "  <command>              printable ASCII without spaces and '|', e.g. reboot or\n"
     "                         ota=https://example.com/v2.1.bin\n"
     "  --plain                send it plain on $tip/<serial>/ack even if the device has a key\n"
     "  --json                 print one JSON object\n"},
    {"device", "list", 0, O_JSON, V_NEEDS_DATA, cli_device_list,
     "sealpipe device list [--json]\n"
     "  Lists all devices by serial: connected now or not, when each last sent, its\n"
     "  messages, records and dead letters (as the running daemon last wrote them).\n"},
    {"device", "show", 1, O_JSON, V_NEEDS_DATA, cli_device_show,
     "sealpipe device show <serial> [--json]\n"
     "  Shows a device with its status (connection, last connect, sent and stored,\n"
     "  counts), its retention and its tokens (never the secrets themselves).\n"},
    {"device", "rm", 1, 0, V_NEEDS_DATA, cli_device_rm,
     "sealpipe device rm <serial>\n"
     "  Removes a device with its tokens, keys and replay counter; its stored data stays.\n"},
    {"token", "add", 1, O_NAME | O_PERM | O_EXPIRES | O_JSON, V_NEEDS_DATA, cli_token_add,
     "sealpipe token add <serial> [options]\n"
     "  Creates another device token and prints it (shown once).\n"
     "  --name NAME            token name, 1-100 of A-Z a-z 0-9 _ - (default: its prefix)\n"
     "  --perm full|write|read permission (default: full)\n"
     "  --expires SECONDS      expire this many seconds from now (default: never)\n"
     "  --json                 print one JSON object\n"},
    {"token", "list", 1, O_JSON, V_NEEDS_DATA, cli_token_list,
     "sealpipe token list <serial> [--json]\n"
     "  Lists a device's tokens by name and prefix.\n"},
    {"token", "revoke", 2, 0, V_NEEDS_DATA, cli_token_revoke,
     "sealpipe token revoke <serial> <name-or-prefix>\n"
     "  Revokes one token of the device, named by its name or its 8-character prefix.\n"},
    {"admin token", "add", 0, O_NAME | O_PERM | O_JSON, V_CREATES_DATA, cli_admin_token_add,
     "sealpipe admin token add [--name NAME] [--perm full|read] [--json]\n"
     "  Creates a token of the daemon's HTTP API and prints it (shown once; only its\n"
     "  SHA-256 is kept). Requests send it as Authorization: Bearer <token>.\n"
     "  --name NAME            token name, 1-100 of A-Z a-z 0-9 _ - (default: its prefix)\n"
     "  --perm full|read       read: GET requests only (default: full)\n"
     "  --json                 print one JSON object\n"},
    {"admin token", "list", 0, O_JSON, V_NEEDS_DATA, cli_admin_token_list,
     "sealpipe admin token list [--json]\n"
     "  Lists the HTTP API's tokens by name and prefix, revoked ones too.\n"},
    {"admin token", "revoke", 1, 0, V_NEEDS_DATA, cli_admin_token_revoke,
     "sealpipe admin token revoke <name-or-prefix>\n"
     "  Revokes one token of the HTTP API, named by its name or its 8-character prefix.\n"},
    {"key", "rotate", 1, O_CIPHER | O_DERIVE | O_TOKEN | O_JSON, V_NEEDS_DATA, cli_key_rotate,
     "sealpipe key rotate <serial> [--cipher NAME] [--derive-key --token at...] [--json]\n"
     "  Replaces the device's encryption key and prints the new one (shown once). The old\n"
     "  key keeps opening envelopes for the daemon's key_grace seconds, and commands go out\n"
     "  sealed with it for as long as the device still uses it.\n"
     "  --cipher NAME          cipher of the new key (default: the current one): aes-128-ccm,\n"
     "                         aes-128-gcm, aes-256-ccm, aes-256-gcm, chacha20-poly1305\n"
     "  --derive-key           derive the new key from the profile token and the serial\n"
     "                         (TagoTiPs.md 2.4), as TagoIO's device SDK examples do\n"
     "  --token TOKEN          the profile's authorization token (\"at\" + 32 hex)\n"
     "  --json                 print one JSON object\n"},
    {"profile", "add", 1, O_TOKEN | O_JSON, V_CREATES_DATA, cli_profile_add,
     "sealpipe profile add <name> [--token at...] [--json]\n"
     "  Creates a profile: a TagoTiP authorization token shared by its devices.\n"
     "  <name>                 1-100 characters of A-Z a-z 0-9 _ -\n"
     "  --token TOKEN          use this token (\"at\" + 32 hex) instead of a random one\n"
     "  --json                 print one JSON object\n"},
    {"profile", "list", 0, O_JSON, V_NEEDS_DATA, cli_profile_list,
     "sealpipe profile list [--json]\n"
     "  Lists profiles with their auth hashes.\n"},
    {"dead-letter", "list", 0, O_REASON | O_DEVICE | O_SINCE | O_LIMIT | O_JSON, V_NEEDS_DATA,
     cli_deadletter_list,
     "sealpipe dead-letter list [--reason R] [--device S] [--since T] [--limit N] [--json]\n"
     "  Lists the messages the daemon could not store, newest first: id, time, device,\n"
     "  reason, topic, size, detail. Works while the daemon runs (read-only).\n"
     "  --reason R             only this reason, e.g. analysis_error, auth_failed\n"
     "  --device S             only this device's\n"
     "  --since T              received since T: 30s, 10m, 2h, 7d ago, or an ISO 8601 UTC\n"
     "                         time such as 2026-12-01T10:00Z\n"
     "  --limit N              at most N (default 50)\n"
     "  --json                 one JSON array\n"},
    {"dead-letter", "show", 1, O_JSON, V_NEEDS_DATA, cli_deadletter_show,
     "sealpipe dead-letter show <id> [--json]\n"
     "  Shows one dead letter: everything, the payload as text when printable, else hex\n"
     "  (--json: base64).\n"},
    {"dead-letter", "retry", -1, O_REASON | O_DEVICE | O_SINCE | O_WAIT | O_FORCE | O_JSON,
     V_NEEDS_DATA, cli_deadletter_retry,
     "sealpipe dead-letter retry <id> | --reason R | --device S | --since T [--wait] [--force]\n"
     "  Runs dead letters again through today's registry, keys and analyses, in the running\n"
     "  daemon (within a second; the request waits while no daemon runs). A retry that\n"
     "  stores the message deletes the dead letter in the same transaction, so a dead\n"
     "  letter is stored at most once; one that fails again stays, under its id, with the\n"
     "  new reason. Filters combine; at least one id or filter is needed.\n"
     "  --wait                 wait for the daemon and print each outcome (exit 1 if any\n"
     "                         failed again)\n"
     "  --force                retry 'replay' dead letters too: a replay may be a copy of an\n"
     "                         envelope that was stored, which would then be stored twice\n"
     "  --json                 one JSON object\n"},
    {"device", "set", 1,
     O_NAME | O_TAG | O_PARAM | O_REQUIRE_ENC | O_PARSER | O_COUNTER | O_RETENTION | O_JSON,
     V_NEEDS_DATA, cli_device_set,
     "sealpipe device set <serial> [options]\n"
     "  Changes a device; its tokens and keys stay. The running daemon applies the change\n"
     "  to the device's next message (within a second). Prints what changed.\n"
     "  --name NAME            display name\n"
     "  --tag KEY=VALUE        set one tag, keeping the others; KEY= removes it; repeat\n"
     "  --param KEY=VALUE      set one parameter, keeping the others; KEY= removes it\n"
     "  --parser NAME|none     analysis that normalizes payloads (<analyses_dir>/NAME.lua,\n"
     "                         the daemon's analyses folder: --analyses-dir or --config)\n"
     "  --require-encryption on|off  refuse plaintext TagoTiP from this device (on needs a key)\n"
     "  --counter strict|off   replay protection of envelope counters\n"
     "  --retention DURATION|forever|default  how long its data and dead letters are kept\n"
     "                         (e.g. 30d, 12h); default: the daemon's retention option\n"
     "  --json                 print one JSON object\n"},
};

#define NVERBS (sizeof verbs / sizeof verbs[0])

/* The flags (K_FLAG) that take a value in verb v: device add's
 * --require-encryption is a flag, device set's says on or off. */
static unsigned valued_opts(const struct cli_verb *v)
{
    return v->run == cli_device_set ? O_REQUIRE_ENC : 0;
}

static int is_help(const char *s)
{
    return strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0 || strcmp(s, "help") == 0;
}

/* Prints the usage of every verb of group. */
static void group_usage(FILE *f, const char *group)
{
    fprintf(f, "usage: sealpipe %s <verb> [arguments] [options]\n", group);
    fprintf(f, "Run sealpipe %s <verb> --help for one verb.\n", group);
    for (size_t i = 0; i < NVERBS; i++)
        if (strcmp(verbs[i].group, group) == 0)
            fprintf(f, "\n%s", verbs[i].usage);
}

/* Starts the scanner on argv (what follows the group) with every option. */
static void scan_init(struct sp__cmdline *cl, struct sp__cmdline_opt t[NOPTS], int argc,
                      char **argv, unsigned valued)
{
    for (size_t i = 0; i < NOPTS; i++)
        t[i] = (struct sp__cmdline_opt){cli_opts[i].name,
                                        cli_opts[i].kind != K_FLAG || (cli_opts[i].bit & valued)};
    sp__cmdline_init(cl, argc, argv, t, NOPTS);
}

/*
 * The verb: the first argument after the group, options before it left
 * aside. Returns its index in argv, -1 when there is none, or SP_ERR_CONFIG
 * with err set.
 */
static int find_verb(int argc, char **argv, char *err, size_t errlen)
{
    struct sp__cmdline_opt t[NOPTS];
    struct sp__cmdline cl;
    struct sp__cmdline_item it;

    scan_init(&cl, t, argc, argv, 0);
    do {
        if (sp__cmdline_next(&cl, &it, err, errlen) != SP_OK)
            return SP_ERR_CONFIG;
    } while (it.kind == SP__CMDLINE_OPTION);
    return it.kind == SP__CMDLINE_ARG ? it.index : -1;
}

/* Records option o with its value (NULL for a flag). Returns 0 or
 * SP_ERR_CONFIG with err set. */
static int take_option(const struct cli_verb *v, struct cli_args *a, const struct cli_opt *o,
                       const char *val, char *err, size_t errlen)
{
    if (!((v->opts | O_GLOBAL) & o->bit)) {
        sp__cmdline_unknown(o->name, strlen(o->name), err, errlen);
        return SP_ERR_CONFIG;
    }
    if (o->kind == K_LIST) {
        struct cli_list *l = (struct cli_list *)(void *)((char *)a + o->at);
        if (l->n >= CLI_MAX_KV) {
            snprintf(err, errlen, "more than %d --%s flags", CLI_MAX_KV, o->name);
            return SP_ERR_CONFIG;
        }
        l->v[l->n++] = val;
    } else if ((a->seen & o->bit) && !(o->bit & O_GLOBAL)) {
        snprintf(err, errlen, "option '--%s' given twice", o->name);
        return SP_ERR_CONFIG;
    } else if (o->kind == K_VALUE || (valued_opts(v) & o->bit)) {
        *(const char **)(void *)((char *)a + o->at) = val;
    }
    a->seen |= o->bit;
    return SP_OK;
}

/* Records an argument other than the verb (at argv[verb_at]). */
static int take_arg(const struct cli_verb *v, struct cli_args *a, const struct sp__cmdline_item *it,
                    int verb_at, char *err, size_t errlen)
{
    if (it->index == verb_at)
        return SP_OK;
    if (a->npos >= (v->npos < 0 ? -v->npos : v->npos)) {
        sp__cmdline_unexpected(it->value, err, errlen);
        return SP_ERR_CONFIG;
    }
    a->pos[a->npos++] = it->value;
    return SP_OK;
}

/* Parses argv (what follows the group) for v; returns 0, or 2 after
 * printing the usage error. */
static int parse_args(const struct cli_verb *v, int argc, char **argv, int verb_at,
                      struct cli_args *a)
{
    struct sp__cmdline_opt t[NOPTS];
    struct sp__cmdline cl;
    struct sp__cmdline_item it;
    char err[512];
    int rc;

    scan_init(&cl, t, argc, argv, valued_opts(v));
    while ((rc = sp__cmdline_next(&cl, &it, err, sizeof err)) == SP_OK &&
           it.kind != SP__CMDLINE_END) {
        if (it.kind == SP__CMDLINE_OPTION)
            rc = take_option(v, a, &cli_opts[it.opt], it.value, err, sizeof err);
        else
            rc = take_arg(v, a, &it, verb_at, err, sizeof err);
        if (rc)
            break;
    }
    if (rc) {
        fprintf(stderr, "sealpipe %s %s: %s\n", v->group, v->verb, err);
        return 2;
    }
    if (a->npos < v->npos) {
        fprintf(stderr, "sealpipe %s %s: missing argument\nusage: %s", v->group, v->verb, v->usage);
        return 2;
    }
    return 0;
}

/* Applies --config (first), --data-dir and --analyses-dir to conf. Returns
 * 0, or 2 after printing the problem. */
static int apply_globals(const struct cli_verb *v, const struct cli_args *a, struct conf *conf)
{
    char err[CONF_ERR_MAX];
    int rc = SP_OK;

    for (int i = 0; i < a->configs.n && rc == SP_OK; i++)
        rc = conf_load_file(conf, a->configs.v[i], err, sizeof err);
    if (rc == SP_OK && a->data_dir)
        rc = conf_set(conf, "data_dir", a->data_dir, err, sizeof err);
    if (rc == SP_OK && a->analyses_dir)
        rc = conf_set(conf, "analyses_dir", a->analyses_dir, err, sizeof err);
    if (rc) {
        fprintf(stderr, "sealpipe %s %s: %s\n", v->group, v->verb, err);
        return 2;
    }
    return 0;
}

/*
 * The verb of group named by argv[at] (at < 0: none given), or NULL after
 * printing the usage (on stdout when help was asked for); *rc is then the
 * exit status.
 */
static const struct cli_verb *pick_verb(const char *group, char **argv, int at, int help, int *rc)
{
    *rc = 0;
    if (at < 0 || is_help(argv[at])) {
        help = help || at >= 0;
        *rc = help ? 0 : 2;
        group_usage(help ? stdout : stderr, group);
        return NULL;
    }
    for (size_t i = 0; i < NVERBS; i++)
        if (strcmp(verbs[i].group, group) == 0 && strcmp(verbs[i].verb, argv[at]) == 0)
            return &verbs[i];
    fprintf(stderr, "sealpipe %s: unknown subcommand %s\n", group, argv[at]);
    group_usage(stderr, group);
    *rc = 2;
    return NULL;
}

/* Runs verb v with its arguments a. Returns the exit status. */
static int run_verb(const struct cli_verb *v, const struct cli_args *a, const struct conf *conf)
{
    struct cli_ctx c;
    char cmd[64];
    int rc;

    snprintf(cmd, sizeof cmd, "%s %s", v->group, v->verb);
    c.data_dir = conf->data_dir;
    c.analyses_dir = conf->analyses_dir;
    c.cmd = cmd;
    c.reg = NULL;
    c.json = !!(a->seen & O_JSON);
    /* --analyses-dir, or a config file that names the folder. */
    c.analyses_given = (a->seen & O_ANALYSES_DIR) || strcmp(conf->analyses_dir, "analyses") != 0;
    /* A verb that only works on what exists must not create a data
     * directory (registry_open would) for a mistyped --data-dir. */
    if (v->access == V_NEEDS_DATA) {
        char err[600];
        if (datadir_check(conf->data_dir, err, sizeof err) != SP_OK) {
            fprintf(stderr, "sealpipe %s: %s\n", cmd, err);
            return 1;
        }
    }
    arena_init(&c.arena, CLI_ARENA);
    rc = v->run(&c, a);
    registry_close(c.reg);
    arena_cleanup(&c.arena);
    return rc;
}

int cli_run(struct conf *conf, int argc, char **argv)
{
    const struct cli_verb *v;
    struct cli_args args;
    char err[512];
    int rc, at, help = sp__cmdline_wants_help(argc - 1, argv + 1);

    if ((at = find_verb(argc - 1, argv + 1, err, sizeof err)) == SP_ERR_CONFIG) {
        fprintf(stderr, "sealpipe %s: %s\n", argv[0], err);
        return 2;
    }
    if (!(v = pick_verb(argv[0], argv + 1, at, help, &rc)))
        return rc;
    if (help) {
        printf("usage: %s", v->usage);
        return 0;
    }
    memset(&args, 0, sizeof args);
    if ((rc = parse_args(v, argc - 1, argv + 1, at, &args)) || (rc = apply_globals(v, &args, conf)))
        return rc;
    return run_verb(v, &args, conf);
}
