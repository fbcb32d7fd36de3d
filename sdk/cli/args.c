/*
 * args.c - the command line of sealpipe-device: one option table drives
 * the scanner the daemon uses too (sp_cmdline.h, so both programs read a
 * command line the same way), --help (usage.c) and which command takes
 * which option; the values are checked as they are stored, the combinations
 * afterwards, and --key is copied and wiped from the process's argv.
 */
#include "device.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <sodium.h>

#include "sp_cmdline.h"

const struct opt_def opt_table[] = {
    {"serial", OPT_SERIAL, "S", CMD_NET | CMD_SEAL | CMD_HASH,
     "device serial: 1-100 of A-Z a-z 0-9 - _"},
    {"transport", OPT_TRANSPORT, "NAME", CMD_XPORT,
     "mqtt (default), http (TagoTipServers.md 2), udp or tcp (raw frames, 4)"},
    {"host", OPT_HOST, "H", CMD_NET, "server host (default " DEVICE_DEFAULT_HOST ")"},
    {"port", OPT_PORT, "P", CMD_NET,
     "server port (default: mqtt 1883, http 8080, udp and tcp 5540)"},
    {"tls", OPT_TLS, NULL, CMD_XPORT, "http: use https"},
    {"cafile", OPT_CAFILE, "PATH", CMD_XPORT,
     "http with --tls: trust the CA certificate(s) in PATH (e.g. a self-signed one)"},
    {"username", OPT_USERNAME, "U", CMD_MQTT, "MQTT username"},
    {"password", OPT_PASSWORD, "W", CMD_MQTT,
     "MQTT password; the username defaults to \"" DEVICE_DEFAULT_USERNAME "\""},
    {"qos", OPT_QOS, "0|1", CMD_PUSH,
     "QoS of each PUBLISH (default 1); with 1, waits for every PUBACK"},
    {"mqtt-version", OPT_MQTT_VERSION, "5|311", CMD_MQTT, "MQTT protocol version (default 5)"},
    {"encrypt", OPT_ENCRYPT, NULL, CMD_NET,
     "TagoTiP/S: envelopes on $tips/S/... instead of plain frames on $tip/S/... (http: "
     "POST /v1/tips instead of /v1/tip/S; udp, tcp: envelopes instead of frames)"},
    {"key", OPT_KEY, "HEX", CMD_CRYPTO,
     "encryption key in hex: 16 bytes for aes-128-*, 32 for aes-256-* and chacha20-poly1305"},
    {"cipher", OPT_CIPHER, "NAME", CMD_CRYPTO,
     "aes-128-ccm, aes-128-gcm, aes-256-ccm, aes-256-gcm or chacha20-poly1305 (default)"},
    {"auth-hash", OPT_AUTH_HASH, "HEX16", CMD_CRYPTO,
     "authorization hash, 16 hex characters (see: " DEVICE_PROG
     " hash --token); http, udp and tcp send it with plain requests too"},
    {"counter", OPT_COUNTER, "N", CMD_XPORT | CMD_SEAL,
     "envelope counter, 0-4294967295; for push, the first one (then +1 per message); udp "
     "and tcp: also the \"!N\" of plain frames"},
    {"counter-file", OPT_COUNTER_FILE, "PATH", CMD_XPORT,
     "file holding the last used counter (default "
     "$XDG_STATE_HOME/" DEVICE_PROG "/S.counter, else "
     "~/.local/state/" DEVICE_PROG "/S.counter); a missing file starts at counter 1"},
    {"count", OPT_COUNT, "N", CMD_PUSH | CMD_LISTEN,
     "push: number of messages to publish (default 1); listen: exit after N frames"},
    {"interval-ms", OPT_INTERVAL, "MS", CMD_PUSH, "pause between messages (default 0)"},
    {"timeout", OPT_TIMEOUT, "SEC", CMD_NET,
     "give up when the broker makes no progress for SEC seconds (default 30); pull, and "
     "each request over http, udp and tcp: wait this long for the answer; listen: exit "
     "after SEC seconds without a frame (default: never)"},
    {"quiet", OPT_QUIET, NULL, CMD_PUSH, "no summary line on stderr"},
    {"hex", OPT_HEX, NULL, CMD_SEAL, "print the envelope as hex and a newline"},
    {"token", OPT_TOKEN, "at...", CMD_HASH | CMD_XPORT,
     "authorization token (\"at\" + 32 hex characters); http, udp, tcp: instead of "
     "--auth-hash, which is derived from it"},
    {"help", OPT_HELP, NULL, CMD_NET | CMD_SEAL | CMD_HASH, "show this help"},
};

#define NOPTS (sizeof(opt_table) / sizeof(opt_table[0]))

const size_t opt_count = NOPTS;

static const struct {
    const char *name;
    unsigned cmd;
} commands[] = {
    {"push", CMD_PUSH}, {"seal", CMD_SEAL},     {"hash", CMD_HASH},
    {"pull", CMD_PULL}, {"listen", CMD_LISTEN}, {"ping", CMD_PING},
};

int args_init(struct args *a, const char *name)
{
    memset(a, 0, sizeof(*a));
    a->host = DEVICE_DEFAULT_HOST;
    a->transport = TRANSPORT_MQTT;
    a->qos = DEVICE_DEFAULT_QOS;
    a->mqtt_version = MQTT_PROTOCOL_V5;
    a->cipher = DEVICE_DEFAULT_CIPHER;
    a->count = 1;
    a->timeout_s = DEVICE_DEFAULT_TIMEOUT;
    a->cmd_name = name;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(name, commands[i].name) == 0)
            a->cmd = commands[i].cmd;
    if (a->cmd == CMD_LISTEN)
        a->count = 0; /* until interrupted */
    return a->cmd ? 0 : -1;
}

int parse_uint(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '\0')
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int opt_uint(const struct args *a, const char *name, const char *s, uint64_t min,
                    uint64_t max, uint64_t *out)
{
    if (parse_uint(s, max, out) < 0 || *out < min)
        return usage_error(a, "--%s: '%s' is not a whole number from %" PRIu64 " to %" PRIu64, name,
                           s, min, max);
    return 0;
}

static const struct opt_def *opt_find(int id)
{
    for (size_t i = 0; i < opt_count; i++)
        if (opt_table[i].id == id)
            return &opt_table[i];
    return NULL;
}

/* Copies --key and wipes it from /proc/<pid>/cmdline. 0 or EXIT_FAIL. */
static int set_key(struct args *a, char *val)
{
    if (a->key_hex) {
        sodium_memzero(a->key_hex, strlen(a->key_hex));
        free(a->key_hex);
    }
    if (!(a->key_hex = strdup(val)))
        return fail("out of memory");
    sodium_memzero(val, strlen(val));
    return 0;
}

/* Stores a numeric option (or --mqtt-version); returns 0 or EXIT_USAGE. */
static int set_number(struct args *a, const struct opt_def *o, const char *val)
{
    uint64_t v = 0;

    switch (o->id) {
    case OPT_PORT:
        if (opt_uint(a, o->name, val, 1, 65535, &v))
            return EXIT_USAGE;
        a->port = (int)v;
        break;
    case OPT_QOS:
        if (opt_uint(a, o->name, val, 0, 1, &v))
            return EXIT_USAGE;
        a->qos = (int)v;
        a->qos_set = 1;
        break;
    case OPT_MQTT_VERSION:
        if (strcmp(val, "5") == 0)
            a->mqtt_version = MQTT_PROTOCOL_V5;
        else if (strcmp(val, "311") == 0)
            a->mqtt_version = MQTT_PROTOCOL_V311;
        else
            return usage_error(a, "--mqtt-version: '%s' is not 5 or 311", val);
        a->mqtt_version_set = 1;
        break;
    case OPT_COUNTER:
        if (opt_uint(a, o->name, val, 0, UINT32_MAX, &v))
            return EXIT_USAGE;
        a->counter = (uint32_t)v;
        a->has_counter = 1;
        break;
    case OPT_COUNT:
        if (opt_uint(a, o->name, val, 1, UINT32_MAX, &a->count))
            return EXIT_USAGE;
        break;
    case OPT_INTERVAL:
        if (opt_uint(a, o->name, val, 0, DEVICE_MAX_INTERVAL_MS, &a->interval_ms))
            return EXIT_USAGE;
        break;
    case OPT_TIMEOUT:
        if (opt_uint(a, o->name, val, 1, DEVICE_MAX_TIMEOUT, &v))
            return EXIT_USAGE;
        a->timeout_s = (unsigned)v;
        a->timeout_set = 1;
        break;
    default:
        return usage_error(a, "unhandled option");
    }
    return 0;
}

static const char *const transport_names[] = {"mqtt", "http", "udp", "tcp"};

const char *transport_name(int transport)
{
    return transport_names[transport];
}

/* --transport NAME; 0 or EXIT_USAGE. */
static int set_transport(struct args *a, const char *val)
{
    for (int t = TRANSPORT_MQTT; t <= TRANSPORT_TCP; t++)
        if (strcmp(val, transport_names[t]) == 0) {
            a->transport = t;
            return 0;
        }
    return usage_error(a, "--transport: '%s' is not mqtt, http, udp or tcp", val);
}

/* Stores one option; returns 0, EXIT_USAGE or EXIT_FAIL. */
static int args_set(struct args *a, int id, char *val)
{
    const struct opt_def *o = opt_find(id);
    if (!o || !(o->cmds & a->cmd))
        return usage_error(a, "--%s is not an option of '%s'", o ? o->name : "?", a->cmd_name);
    switch (id) {
    case OPT_SERIAL:
        a->serial = val;
        break;
    case OPT_HOST:
        a->host = val;
        break;
    case OPT_USERNAME:
        a->username = val;
        break;
    case OPT_PASSWORD:
        a->password = val;
        break;
    case OPT_KEY:
        return set_key(a, val);
    case OPT_CIPHER:
        a->cipher = val;
        break;
    case OPT_AUTH_HASH:
        a->auth_hex = val;
        break;
    case OPT_COUNTER_FILE:
        a->counter_file = val;
        break;
    case OPT_TOKEN:
        a->token = val;
        break;
    case OPT_ENCRYPT:
        a->encrypt = 1;
        break;
    case OPT_QUIET:
        a->quiet = 1;
        break;
    case OPT_HEX:
        a->hex = 1;
        break;
    case OPT_TLS:
        a->tls = 1;
        break;
    case OPT_CAFILE:
        a->cafile = val;
        break;
    case OPT_TRANSPORT:
        return set_transport(a, val);
    default:
        return set_number(a, o, val);
    }
    return 0;
}

/* The scanner's table: opt_table's names, in its order, and which take a value. */
static void scan_table(struct sp__cmdline_opt t[NOPTS])
{
    for (size_t i = 0; i < NOPTS; i++)
        t[i] = (struct sp__cmdline_opt){opt_table[i].name, opt_table[i].arg != NULL};
}

/* Takes the n arguments (first: the first) as the command's BODY or
 * VARIABLES, or refuses them. Returns 0 or EXIT_USAGE. */
static int take_args(struct args *a, const char *first, int n)
{
    if (a->cmd == CMD_HASH || a->cmd == CMD_LISTEN || a->cmd == CMD_PING) {
        if (n != 0)
            return usage_error(a, "unexpected argument '%s'", first);
    } else if (n == 0) {
        return usage_error(a, "%s is missing", a->cmd == CMD_PULL ? "VARIABLES" : "BODY");
    } else if (n != 1) {
        return usage_error(a, "one BODY expected, got %d arguments (quote the body)", n);
    } else {
        a->body = first;
    }
    return 0;
}

/*
 * Reads argv with the scanner every sealpipe command uses (sp_cmdline.h):
 * -h or --help anywhere before "--" prints the help; options and arguments
 * come in any order; each option is stored as it comes, the arguments
 * counted and checked at the end.
 */
int args_parse(struct args *a, int argc, char **argv)
{
    struct sp__cmdline_opt t[NOPTS];
    struct sp__cmdline cl;
    struct sp__cmdline_item it;
    const char *first = NULL;
    char err[160];
    int rc, nargs = 0;

    if (sp__cmdline_wants_help(argc - 1, argv + 1)) {
        usage_cmd(stdout, a->cmd);
        return -1;
    }
    scan_table(t);
    sp__cmdline_init(&cl, argc - 1, argv + 1, t, NOPTS);
    while ((rc = sp__cmdline_next(&cl, &it, err, sizeof err)) == SP_OK &&
           it.kind != SP__CMDLINE_END) {
        if (it.kind == SP__CMDLINE_ARG) {
            if (nargs++ == 0)
                first = it.value;
            continue;
        }
        /* The value points into argv, which is writable: set_key wipes it. */
        if ((rc = args_set(a, opt_table[it.opt].id, (char *)it.value)) != 0)
            return rc;
    }
    if (rc != SP_OK) {
        /* usage_error() ends with its own "Try ... --help" line. */
        char *hint = strstr(err, " (see --help)");
        if (hint)
            *hint = '\0';
        return usage_error(a, "%s", err);
    }
    return take_args(a, first, nargs);
}

/* Decodes --auth-hash, or derives it from --token. Returns 0 or EXIT_USAGE. */
static int args_auth(struct args *a)
{
    if (a->token) {
        if (a->auth_hex)
            return usage_error(a, "give --auth-hash or --token, not both");
        if (sp_auth_hash(a->token, strlen(a->token), a->auth_hash) != 0)
            return usage_error(a, "--token: '%s' is not a token", a->token);
        return 0;
    }
    if (strlen(a->auth_hex) != 2 * SP_HASH_LEN ||
        sp_hex_decode(a->auth_hex, strlen(a->auth_hex), a->auth_hash, sizeof(a->auth_hash)) !=
            SP_HASH_LEN)
        return usage_error(a, "--auth-hash: '%s' is not 16 hex characters", a->auth_hex);
    return 0;
}

/* Decodes --key, --cipher and --auth-hash. Returns 0 or EXIT_USAGE. */
static int args_crypto(struct args *a)
{
    int n;
    if (!a->key_hex)
        return usage_error(a, "--key is required%s", a->cmd == CMD_PUSH ? " with --encrypt" : "");
    if (!a->auth_hex && !a->token)
        return usage_error(a, "--auth-hash is required%s",
                           a->cmd == CMD_PUSH ? " with --encrypt" : "");
    a->suite = sp_suite_from_name(a->cipher);
    if (a->suite < 0)
        return usage_error(a, "--cipher: unknown cipher suite '%s'", a->cipher);
    if (!sp_suite_available(a->suite))
        return usage_error(a, "--cipher: %s is not available in this build",
                           sp_suite_name(a->suite));
    size_t want = sp_suite_key_len(a->suite);
    n = sp_hex_decode(a->key_hex, strlen(a->key_hex), a->key, sizeof(a->key));
    if (n == SP_ERR_BUFSIZE || (n >= 0 && (size_t)n != want))
        return usage_error(a, "--key: %s needs a %zu-byte key (%zu hex characters), got %zu",
                           sp_suite_name(a->suite), want, want * 2, strlen(a->key_hex) / 2);
    if (n < 0)
        return usage_error(a, "--key: not an even number of hex characters");
    a->key_len = (size_t)n;
    return args_auth(a);
}

/* The first option given that needs --encrypt, or NULL; plain requests of
 * http, udp and tcp take --auth-hash (with_auth), those of udp and tcp the
 * counter options too (with_counters). */
static const char *args_stray_crypto(const struct args *a, int with_auth, int with_counters)
{
    if (a->key_hex)
        return "--key";
    if (a->auth_hex && !with_auth)
        return "--auth-hash";
    if (a->has_counter && !with_counters)
        return "--counter";
    if (a->counter_file && !with_counters)
        return "--counter-file";
    if (a->cipher != NULL && strcmp(a->cipher, DEVICE_DEFAULT_CIPHER) != 0)
        return "--cipher";
    return NULL;
}

/* Checks the counter options against --count. 0 or EXIT_USAGE. */
static int args_counters(struct args *a)
{
    if (a->has_counter && a->counter_file)
        return usage_error(a, "give --counter or --counter-file, not both");
    if (a->has_counter && (uint64_t)a->counter + a->count - 1 > UINT32_MAX)
        return usage_error(a,
                           "--counter %" PRIu32 " with --count %" PRIu64
                           " passes the largest counter, 4294967295",
                           a->counter, a->count);
    return 0;
}

/*
 * The options of the transport: its default port, and those that belong to
 * another transport. Returns 0 or EXIT_USAGE.
 */
static int args_transport(struct args *a)
{
    static const int ports[] = {DEVICE_DEFAULT_PORT, DEVICE_DEFAULT_HTTP_PORT,
                                DEVICE_DEFAULT_RAW_PORT, DEVICE_DEFAULT_RAW_PORT};
    const char *t = transport_name(a->transport);

    if (a->port == 0)
        a->port = ports[a->transport];
    if (a->transport == TRANSPORT_MQTT) {
        if (a->cmd == CMD_PING)
            return usage_error(a, "ping needs --transport http, udp or tcp: MQTT keeps the "
                                  "connection alive itself and has no TagoTiP PING "
                                  "(TagoTipServers.md 3.4)");
        if (a->tls || a->cafile)
            return usage_error(a, "%s needs --transport http", a->tls ? "--tls" : "--cafile");
        if (a->token && a->cmd != CMD_HASH)
            return usage_error(a, "--token needs --transport http, udp or tcp (MQTT logs in "
                                  "with --username and --password)");
        return 0;
    }
    const char *mqtt_only = a->username           ? "--username"
                            : a->password         ? "--password"
                            : a->qos_set          ? "--qos"
                            : a->mqtt_version_set ? "--mqtt-version"
                                                  : NULL;
    if (mqtt_only)
        return usage_error(a, "%s is an MQTT option; it does not apply to --transport %s",
                           mqtt_only, t);
    if (a->transport != TRANSPORT_HTTP && (a->tls || a->cafile))
        return usage_error(a, "%s applies to --transport http only, not %s",
                           a->tls ? "--tls" : "--cafile", t);
    if (a->cafile && !a->tls)
        return usage_error(a, "--cafile needs --tls");
    if (!a->auth_hex && !a->token)
        return usage_error(a, "--transport %s needs --auth-hash or --token", t);
    return 0;
}

/* The checks of --transport http, udp and tcp. Returns 0 or EXIT_USAGE. */
static int args_link(struct args *a)
{
    int rc;

    if (!a->encrypt) {
        /* Plain raw frames carry the counter as "!N"; HTTP has none (§2.7). */
        int http = a->transport == TRANSPORT_HTTP;
        const char *stray = args_stray_crypto(a, 1, !http);
        if (stray)
            return usage_error(a, "%s needs --encrypt%s", stray,
                               http && strncmp(stray, "--counter", 9) == 0
                                   ? " (plain HTTP requests carry no counter)"
                                   : "");
        if ((rc = args_counters(a)) != 0)
            return rc;
        return args_auth(a);
    }
    if ((rc = args_counters(a)) != 0)
        return rc;
    return args_crypto(a);
}

int args_check(struct args *a)
{
    int rc;

    if (a->cmd == CMD_HASH) {
        if (!!a->serial == !!a->token)
            return usage_error(a, "give exactly one of --serial and --token");
        if (a->serial && !sp_serial_valid(a->serial, strlen(a->serial)))
            return usage_error(a, "--serial: '%s' is not 1-100 of A-Z a-z 0-9 - _", a->serial);
        return 0;
    }
    if (!a->serial)
        return usage_error(a, "--serial is required");
    if (!sp_serial_valid(a->serial, strlen(a->serial)))
        return usage_error(a, "--serial: '%s' is not 1-100 of A-Z a-z 0-9 - _", a->serial);
    if (a->cmd == CMD_SEAL) {
        if (!a->has_counter)
            return usage_error(a, "--counter is required");
        return args_crypto(a);
    }
    if (a->cmd == CMD_PULL) {
        struct sp_tip_pull pl;
        if (sp_tip_parse_pull(a->body, strlen(a->body), 1, &pl) != SP_OK)
            return usage_error(a,
                               "VARIABLES: '%s' is not 1-100 names of a-z 0-9 _ separated "
                               "by commas",
                               a->body);
    }
    if ((rc = args_transport(a)) != 0)
        return rc;
    if (a->transport != TRANSPORT_MQTT)
        return args_link(a);
    if (!a->encrypt) {
        const char *stray = args_stray_crypto(a, 0, 0);
        if (stray)
            return usage_error(a, "%s needs --encrypt", stray);
        return 0;
    }
    if ((rc = args_counters(a)) != 0)
        return rc;
    return args_crypto(a);
}

void args_cleanup(struct args *a)
{
    sodium_memzero(a->key, sizeof(a->key));
    if (a->key_hex) {
        sodium_memzero(a->key_hex, strlen(a->key_hex));
        free(a->key_hex);
        a->key_hex = NULL;
    }
}
