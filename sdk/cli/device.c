/*
 * device.c - sealpipe-device, the device side of sealpipe on the command line.
 *
 * Five commands: "push" publishes TagoTiP bodies over MQTT, plain on
 * $tip/<serial>/push or sealed into TagoTiP/S envelopes on $tips/<serial>/push;
 * "pull" asks for the last values of variables and prints the answer;
 * "listen" prints the ACK and CMD frames the server sends the device;
 * "seal" writes one envelope to stdout; "hash" prints a device or auth hash.
 * It uses only the public SDK (sealpipe.h) and is the only user of
 * <mosquitto.h> on the device side.
 *
 * Threading: one thread. push drives the libmosquitto loop itself (see
 * struct session); flow control is a window: it publishes while fewer than
 * DEVICE_WINDOW messages are unacknowledged and runs the loop otherwise.
 *
 * Invariants: an encryption counter is written to the counter file (fsync,
 * temp file + rename) before any envelope that uses it is published, so a
 * counter is never reused even if the process dies; keys are wiped before exit.
 * Exit codes: 0 ok, 1 failure, 2 usage error.
 */
#include "sealpipe.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <sodium.h>

/* Every limit and default of the tool, in one place. */
#define DEVICE_PROG             "sealpipe-device"
#define DEVICE_DEFAULT_HOST     "127.0.0.1"
#define DEVICE_DEFAULT_PORT     1883
#define DEVICE_DEFAULT_QOS      1
#define DEVICE_DEFAULT_CIPHER   "chacha20-poly1305"
#define DEVICE_DEFAULT_TIMEOUT  30   /* seconds without progress */
#define DEVICE_KEEPALIVE        60   /* seconds */
#define DEVICE_WINDOW           1000 /* unacknowledged messages in flight */
#define DEVICE_COUNTER_CHUNK    1024 /* counters reserved per counter-file write */
#define DEVICE_MAX_INTERVAL_MS  86400000u
#define DEVICE_MAX_TIMEOUT      86400u
#define DEVICE_DEFAULT_USERNAME "Token"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

/* ------------------------------------------------------------------------ */
/* Options: one table drives getopt and --help                              */
/* ------------------------------------------------------------------------ */

enum cmd { CMD_PUSH = 1u, CMD_SEAL = 2u, CMD_HASH = 4u, CMD_PULL = 8u, CMD_LISTEN = 16u };

/* Commands that talk MQTT, and those that may seal or open envelopes. */
#define CMD_NET    (CMD_PUSH | CMD_PULL | CMD_LISTEN)
#define CMD_CRYPTO (CMD_PUSH | CMD_PULL | CMD_LISTEN | CMD_SEAL)

enum opt_id {
    OPT_HELP = 'h',
    OPT_SERIAL = 256,
    OPT_HOST,
    OPT_PORT,
    OPT_USERNAME,
    OPT_PASSWORD,
    OPT_QOS,
    OPT_MQTT_VERSION,
    OPT_ENCRYPT,
    OPT_KEY,
    OPT_CIPHER,
    OPT_AUTH_HASH,
    OPT_COUNTER,
    OPT_COUNTER_FILE,
    OPT_COUNT,
    OPT_INTERVAL,
    OPT_TIMEOUT,
    OPT_QUIET,
    OPT_HEX,
    OPT_TOKEN
};

struct opt_def {
    const char *name;
    int id;
    const char *arg; /* NULL: a flag */
    unsigned cmds;   /* enum cmd bits */
    const char *help;
};

static const struct opt_def opt_table[] = {
    {"serial", OPT_SERIAL, "S", CMD_NET | CMD_SEAL | CMD_HASH,
     "device serial: 1-100 of A-Z a-z 0-9 - _"},
    {"host", OPT_HOST, "H", CMD_NET, "broker host (default " DEVICE_DEFAULT_HOST ")"},
    {"port", OPT_PORT, "P", CMD_NET, "broker port (default 1883)"},
    {"username", OPT_USERNAME, "U", CMD_NET, "MQTT username"},
    {"password", OPT_PASSWORD, "W", CMD_NET,
     "MQTT password; the username defaults to \"" DEVICE_DEFAULT_USERNAME "\""},
    {"qos", OPT_QOS, "0|1", CMD_PUSH,
     "QoS of each PUBLISH (default 1); with 1, waits for every PUBACK"},
    {"mqtt-version", OPT_MQTT_VERSION, "5|311", CMD_NET, "MQTT protocol version (default 5)"},
    {"encrypt", OPT_ENCRYPT, NULL, CMD_NET,
     "TagoTiP/S: envelopes on $tips/S/... instead of plain frames on $tip/S/..."},
    {"key", OPT_KEY, "HEX", CMD_CRYPTO,
     "encryption key in hex: 16 bytes for aes-128-*, 32 for aes-256-* and chacha20-poly1305"},
    {"cipher", OPT_CIPHER, "NAME", CMD_CRYPTO,
     "aes-128-ccm, aes-128-gcm, aes-256-ccm, aes-256-gcm or chacha20-poly1305 (default)"},
    {"auth-hash", OPT_AUTH_HASH, "HEX16", CMD_CRYPTO,
     "authorization hash, 16 hex characters (see: " DEVICE_PROG " hash --token)"},
    {"counter", OPT_COUNTER, "N", CMD_PUSH | CMD_PULL | CMD_SEAL,
     "envelope counter, 0-4294967295; for push, the first one (then +1 per message)"},
    {"counter-file", OPT_COUNTER_FILE, "PATH", CMD_PUSH | CMD_PULL,
     "file holding the last used counter (default "
     "$XDG_STATE_HOME/" DEVICE_PROG "/S.counter, else "
     "~/.local/state/" DEVICE_PROG "/S.counter); a missing file starts at counter 1"},
    {"count", OPT_COUNT, "N", CMD_PUSH | CMD_LISTEN,
     "push: number of messages to publish (default 1); listen: exit after N frames"},
    {"interval-ms", OPT_INTERVAL, "MS", CMD_PUSH, "pause between messages (default 0)"},
    {"timeout", OPT_TIMEOUT, "SEC", CMD_NET,
     "give up when the broker makes no progress for SEC seconds (default 30); pull: wait "
     "this long for the answer; listen: exit after SEC seconds without a frame (default: "
     "never)"},
    {"quiet", OPT_QUIET, NULL, CMD_PUSH, "no summary line on stderr"},
    {"hex", OPT_HEX, NULL, CMD_SEAL, "print the envelope as hex and a newline"},
    {"token", OPT_TOKEN, "at...", CMD_HASH, "authorization token (\"at\" + 32 hex characters)"},
    {"help", OPT_HELP, NULL, CMD_NET | CMD_SEAL | CMD_HASH, "show this help"},
};

#define OPT_COUNT_ALL (sizeof(opt_table) / sizeof(opt_table[0]))

/* Parsed command line; the decoded secrets are wiped by args_cleanup. */
struct args {
    unsigned cmd;
    const char *cmd_name;
    const char *serial;
    const char *host;
    const char *username;
    const char *password;
    char *key_hex; /* a copy; wiped and freed by args_cleanup */
    const char *cipher;
    const char *auth_hex;
    const char *counter_file;
    const char *token;
    const char *body;
    int port;
    int qos;
    int mqtt_version;
    int encrypt;
    int quiet;
    int hex;
    int has_counter;
    uint32_t counter;
    uint64_t count;
    uint64_t interval_ms;
    unsigned timeout_s;
    int timeout_set;
    /* decoded */
    int suite;
    uint8_t key[SP_MAX_KEY_LEN];
    size_t key_len;
    uint8_t auth_hash[SP_HASH_LEN];
};

static const char *const synopsis_push =
    "usage: " DEVICE_PROG " push --serial S [--host H] [--port P] [--username U --password W]\n"
    "         [--qos 0|1] [--mqtt-version 5|311] [--encrypt --key HEX [--cipher NAME]\n"
    "         --auth-hash HEX16 [--counter N | --counter-file PATH]] [--count N]\n"
    "         [--interval-ms MS] [--timeout SEC] [--quiet] BODY\n"
    "\n"
    "Publishes BODY, a TagoTiP PUSH body such as '[temp:=21.5#C;humidity:=40#%]' or\n"
    "'>xDEADBEEF', over MQTT (TagoTipServers.md section 3). BODY is validated first.\n"
    "  plain:     topic $tip/S/push, payload BODY\n"
    "  --encrypt: topic $tips/S/push, payload the TagoTiP/S envelope (method PUSH)\n"
    "             sealing the headless inner frame \"S|BODY\"\n"
    "A literal {n} in BODY becomes the message index (0, 1, ...) of each of the\n"
    "--count messages, e.g. '[seq:={n}]'.\n"
    "\n"
    "With --encrypt and no --counter, the counter file is read, and each counter is\n"
    "written back (fsync, temp file + rename) before any message using it is\n"
    "published, so a counter is never reused; a crash may skip counters, which is\n"
    "harmless. The file is locked against a second push of the same serial.\n"
    "\n"
    "Connects as client id " DEVICE_PROG "-S-PID with clean start, keeps up to 1000\n"
    "messages in flight, and exits once the broker acknowledged every QoS 1 message\n"
    "(QoS 0: once every message was written to the socket). Prints\n"
    "\"published N messages in X.XXX s (R msg/s)\" on stderr unless --quiet.\n";

static const char *const synopsis_pull =
    "usage: " DEVICE_PROG " pull --serial S [--host H] [--port P] [--username U --password W]\n"
    "         [--mqtt-version 5|311] [--encrypt --key HEX [--cipher NAME] --auth-hash HEX16\n"
    "         [--counter N | --counter-file PATH]] [--timeout SEC] VARIABLES\n"
    "\n"
    "Asks the server for the last value of each variable (TagoTiP PULL) and prints its\n"
    "answer as an ACK frame, e.g. ACK|OK|[temperature:=32#F@1694567890000].\n"
    "VARIABLES: names separated by commas, e.g. temperature,humidity.\n"
    "  plain:     publishes the list to $tip/S/pull, reads $tip/S/ack\n"
    "  --encrypt: publishes a PULL envelope to $tips/S/pull, opens the answer on $tips/S/ack\n"
    "Unsolicited CMD frames that arrive first are printed too. Exit status 0 when the\n"
    "answer is OK, 1 when it is ERR (e.g. ERR|variable_not_found) or none came.\n";

static const char *const synopsis_listen =
    "usage: " DEVICE_PROG " listen --serial S [--host H] [--port P] [--username U --password W]\n"
    "         [--mqtt-version 5|311] [--encrypt --key HEX [--cipher NAME] --auth-hash HEX16]\n"
    "         [--count N] [--timeout SEC]\n"
    "\n"
    "Prints every frame the server sends the device, one ACK frame a line (ACK|OK|3,\n"
    "ACK|!7|OK|[...], ACK|CMD|reboot, ACK|ERR|auth_failed): plain ones from $tip/S/ack,\n"
    "and with --encrypt the envelopes on $tips/S/ack, opened with the key (a frame that\n"
    "does not open is reported on stderr and skipped).\n";

static const char *const synopsis_seal =
    "usage: " DEVICE_PROG " seal --serial S --key HEX [--cipher NAME] --auth-hash HEX16\n"
    "         --counter N [--hex] BODY\n"
    "\n"
    "Seals the headless inner frame \"S|BODY\" into one TagoTiP/S PUSH envelope and\n"
    "writes its raw bytes to stdout (e.g. for mosquitto_pub -s -t '$tips/S/push'), or\n"
    "its hex with --hex. BODY is validated first; {n} is not expanded.\n";

static const char *const synopsis_hash =
    "usage: " DEVICE_PROG " hash --serial S\n"
    "       " DEVICE_PROG " hash --token at...\n"
    "\n"
    "Prints the device hash of a serial, or the authorization hash of a token (the\n"
    "first 8 bytes of SHA-256, as 16 hex characters).\n";

static const char *const exit_codes =
    "\nExit status: 0 ok, 1 failure, 2 usage error (bad or missing arguments).\n";
static const char *const exit_codes_body =
    "\nExit status: 0 ok, 1 failure, 2 usage error (bad or missing arguments,\n"
    "including an invalid BODY).\n";

/* Prints the options of cmd from opt_table, help wrapped to 79 columns. */
static void print_options(FILE *f, unsigned cmd)
{
    enum { LEFT = 25, WIDTH = 79 };
    fputs("\nOptions:\n", f);
    for (size_t i = 0; i < OPT_COUNT_ALL; i++) {
        const struct opt_def *o = &opt_table[i];
        char left[48];
        if (!(o->cmds & cmd))
            continue;
        snprintf(left, sizeof(left), "--%s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        fprintf(f, "  %-*s", LEFT - 2, left);
        size_t col = LEFT;
        for (const char *w = o->help; *w;) {
            size_t n = strcspn(w, " ");
            if (col > LEFT && col + 1 + n > WIDTH) {
                fprintf(f, "\n%*s", LEFT, "");
                col = LEFT;
            } else if (col > LEFT) {
                fputc(' ', f);
                col++;
            }
            fwrite(w, 1, n, f);
            col += n;
            w += n;
            w += strspn(w, " ");
        }
        fputc('\n', f);
    }
}

static void usage_cmd(FILE *f, unsigned cmd)
{
    fputs(cmd == CMD_PUSH     ? synopsis_push
          : cmd == CMD_PULL   ? synopsis_pull
          : cmd == CMD_LISTEN ? synopsis_listen
          : cmd == CMD_SEAL   ? synopsis_seal
                              : synopsis_hash,
          f);
    print_options(f, cmd);
    fputs(cmd == CMD_HASH ? exit_codes : exit_codes_body, f);
}

static void usage_top(FILE *f)
{
    fputs("usage: " DEVICE_PROG " <command> [options]\n"
          "\n"
          "The device side of sealpipe (TagoTiP and TagoTiP/S):\n"
          "  push   publish TagoTiP bodies over MQTT, plain or encrypted\n"
          "  pull   ask for the last values of variables and print the answer\n"
          "  listen print the ACK and CMD frames the server sends the device\n"
          "  seal   write one TagoTiP/S envelope to stdout\n"
          "  hash   print the device hash of a serial or the auth hash of a token\n"
          "\n"
          "Run '" DEVICE_PROG " <command> --help' for the options of a command.\n",
          f);
    fputs(exit_codes, f);
}

/* Reports a usage error and returns EXIT_USAGE. */
static int usage_error(const struct args *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int usage_error(const struct args *a, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s %s: ", DEVICE_PROG, a->cmd_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s %s --help'.\n", DEVICE_PROG, a->cmd_name);
    return EXIT_USAGE;
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Reports a runtime failure and returns EXIT_FAIL. */
static int fail(const char *fmt, ...)
{
    va_list ap;
    fputs(DEVICE_PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_FAIL;
}

/* Strict unsigned decimal: digits only, no sign, no spaces, at most max. */
static int parse_uint(const char *s, uint64_t max, uint64_t *out)
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
    for (size_t i = 0; i < OPT_COUNT_ALL; i++)
        if (opt_table[i].id == id)
            return &opt_table[i];
    return NULL;
}

/* Stores one option; returns 0 or EXIT_USAGE. */
static int args_set(struct args *a, int id, char *val)
{
    uint64_t v = 0;
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
        /* Copy the key and wipe it from /proc/<pid>/cmdline. */
        if (a->key_hex) {
            sodium_memzero(a->key_hex, strlen(a->key_hex));
            free(a->key_hex);
        }
        if (!(a->key_hex = strdup(val)))
            return fail("out of memory");
        sodium_memzero(val, strlen(val));
        break;
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
    case OPT_PORT:
        if (opt_uint(a, o->name, val, 1, 65535, &v))
            return EXIT_USAGE;
        a->port = (int)v;
        break;
    case OPT_QOS:
        if (opt_uint(a, o->name, val, 0, 1, &v))
            return EXIT_USAGE;
        a->qos = (int)v;
        break;
    case OPT_MQTT_VERSION:
        if (strcmp(val, "5") == 0)
            a->mqtt_version = MQTT_PROTOCOL_V5;
        else if (strcmp(val, "311") == 0)
            a->mqtt_version = MQTT_PROTOCOL_V311;
        else
            return usage_error(a, "--mqtt-version: '%s' is not 5 or 311", val);
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

/*
 * Parses argv (argv[0] is the command name). Returns 0, EXIT_USAGE, or -1
 * after printing --help.
 */
static int args_parse(struct args *a, int argc, char **argv)
{
    struct option longopts[OPT_COUNT_ALL + 1];
    int rc;

    for (size_t i = 0; i < OPT_COUNT_ALL; i++) {
        longopts[i].name = opt_table[i].name;
        longopts[i].has_arg = opt_table[i].arg ? required_argument : no_argument;
        longopts[i].flag = NULL;
        longopts[i].val = opt_table[i].id;
    }
    memset(&longopts[OPT_COUNT_ALL], 0, sizeof(longopts[0]));

    opterr = 0;
    optind = 1;
    for (;;) {
        int c = getopt_long(argc, argv, ":h", longopts, NULL);
        if (c == -1)
            break;
        if (c == 'h') {
            usage_cmd(stdout, a->cmd);
            return -1;
        }
        if (c == '?')
            return usage_error(a, "unknown option '%s'", argv[optind - 1]);
        if (c == ':')
            return usage_error(a, "option '%s' needs a value", argv[optind - 1]);
        if ((rc = args_set(a, c, optarg)) != 0)
            return rc;
    }
    if (a->cmd == CMD_HASH || a->cmd == CMD_LISTEN) {
        if (optind != argc)
            return usage_error(a, "unexpected argument '%s'", argv[optind]);
    } else if (optind == argc) {
        return usage_error(a, "%s is missing", a->cmd == CMD_PULL ? "VARIABLES" : "BODY");
    } else if (optind + 1 != argc) {
        return usage_error(a, "one BODY expected, got %d arguments (quote the body)",
                           argc - optind);
    } else {
        a->body = argv[optind];
    }
    return 0;
}

/* Decodes --key, --cipher and --auth-hash. Returns 0 or EXIT_USAGE. */
static int args_crypto(struct args *a)
{
    int n;
    if (!a->key_hex)
        return usage_error(a, "--key is required%s", a->cmd == CMD_PUSH ? " with --encrypt" : "");
    if (!a->auth_hex)
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
    if (strlen(a->auth_hex) != 2 * SP_HASH_LEN ||
        sp_hex_decode(a->auth_hex, strlen(a->auth_hex), a->auth_hash, sizeof(a->auth_hash)) !=
            SP_HASH_LEN)
        return usage_error(a, "--auth-hash: '%s' is not 16 hex characters", a->auth_hex);
    return 0;
}

/* Checks the combinations of options. Returns 0 or EXIT_USAGE. */
static int args_check(struct args *a)
{
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
    if (!a->encrypt) {
        const char *stray = a->key_hex        ? "--key"
                            : a->auth_hex     ? "--auth-hash"
                            : a->has_counter  ? "--counter"
                            : a->counter_file ? "--counter-file"
                            : a->cipher != NULL && strcmp(a->cipher, DEVICE_DEFAULT_CIPHER) != 0
                                ? "--cipher"
                                : NULL;
        if (stray)
            return usage_error(a, "%s needs --encrypt", stray);
        return 0;
    }
    if (a->has_counter && a->counter_file)
        return usage_error(a, "give --counter or --counter-file, not both");
    if (a->has_counter && (uint64_t)a->counter + a->count - 1 > UINT32_MAX)
        return usage_error(a,
                           "--counter %" PRIu32 " with --count %" PRIu64
                           " passes the largest counter, 4294967295",
                           a->counter, a->count);
    return args_crypto(a);
}

static void args_cleanup(struct args *a)
{
    sodium_memzero(a->key, sizeof(a->key));
    if (a->key_hex) {
        sodium_memzero(a->key_hex, strlen(a->key_hex));
        free(a->key_hex);
        a->key_hex = NULL;
    }
}

/* ------------------------------------------------------------------------ */
/* Bodies and envelopes                                                     */
/* ------------------------------------------------------------------------ */

/* Copies tmpl into out with every "{n}" replaced by index. */
static int body_expand(const char *tmpl, uint64_t index, char *out, size_t cap, size_t *out_len)
{
    char num[24];
    size_t nlen = (size_t)snprintf(num, sizeof(num), "%" PRIu64, index);
    size_t o = 0;
    for (const char *p = tmpl; *p;) {
        if (p[0] == '{' && p[1] == 'n' && p[2] == '}') {
            if (cap - o < nlen)
                return SP_ERR_TOOLARGE;
            memcpy(out + o, num, nlen);
            o += nlen;
            p += 3;
        } else {
            if (cap - o < 1)
                return SP_ERR_TOOLARGE;
            out[o++] = *p++;
        }
    }
    *out_len = o;
    return 0;
}

/* Per-run buffers of push and seal; heap-allocated, they are large. */
struct work {
    struct sp_tip_body parsed;
    char body[SP_MAX_FRAME + 1];
    char inner[SP_MAX_FRAME + 1];
    uint8_t env[SP_ENV_MAX_LEN];
    size_t body_len;
    size_t inner_len;
    size_t env_len;
};

/* Expands and validates message index of BODY into w->body; 0 or an sp_err. */
static int work_body(struct work *w, const char *tmpl, uint64_t index)
{
    int rc = body_expand(tmpl, index, w->body, sizeof(w->body), &w->body_len);
    if (rc < 0)
        return rc;
    return sp_tip_parse_body(w->body, w->body_len, &w->parsed);
}

static int body_error(const struct args *a, uint64_t index, int rc)
{
    if (strstr(a->body, "{n}"))
        return usage_error(a, "invalid BODY for message %" PRIu64 ": %s (%s)", index,
                           sp_strerror(rc), sp_wirecode(rc));
    return usage_error(a, "invalid BODY '%s': %s (%s)", a->body, sp_strerror(rc), sp_wirecode(rc));
}

/* Seals "serial|body" from w->body into w->env; 0 or an sp_err. */
static int work_seal(struct work *w, const struct args *a, const uint8_t device_hash[SP_HASH_LEN],
                     uint32_t counter)
{
    size_t slen = strlen(a->serial);
    if (slen + 1 + w->body_len > SP_MAX_FRAME)
        return SP_ERR_TOOLARGE;
    memcpy(w->inner, a->serial, slen);
    w->inner[slen] = '|';
    memcpy(w->inner + slen + 1, w->body, w->body_len);
    w->inner_len = slen + 1 + w->body_len;
    return sp_env_seal(a->suite, SP_METHOD_PUSH, counter, a->auth_hash, device_hash, a->key,
                       a->key_len, (const uint8_t *)w->inner, w->inner_len, w->env, sizeof(w->env),
                       &w->env_len);
}

static void work_free(struct work *w)
{
    if (!w)
        return;
    sodium_memzero(w, sizeof(*w));
    free(w);
}

/* ------------------------------------------------------------------------ */
/* Counter file                                                             */
/* ------------------------------------------------------------------------ */

/*
 * The counter file holds the last counter in decimal. Rather than one fsync
 * per message (100k messages would take minutes), counters are reserved in
 * chunks: the file is advanced to the end of the next chunk before the first
 * message of that chunk is sealed, and the last chunk ends at the last message,
 * so after a complete run the file holds exactly the last counter used. With
 * --interval-ms the chunk is one counter, so a killed slow run skips none.
 * A lock on PATH.lock keeps two pushes from sharing a counter.
 */
struct ctr_store {
    char *path;
    char *tmp;
    int lock_fd;
    int dir_fd;
    uint32_t reserved; /* value in the file */
};

static int mkdir_parents(char *path)
{
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(path, 0700);
        *p = '/';
        if (rc < 0 && errno != EEXIST)
            return -1;
    }
    return 0;
}

/* Default path; caller frees. NULL with a message on failure. */
static char *ctr_default_path(const char *serial)
{
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    char *path = NULL;
    int n;

    if (xdg && xdg[0] == '/')
        n = asprintf(&path, "%s/%s/%s.counter", xdg, DEVICE_PROG, serial);
    else if (home && home[0] == '/')
        n = asprintf(&path, "%s/.local/state/%s/%s.counter", home, DEVICE_PROG, serial);
    else {
        fail("no state directory for the counter file: set HOME or XDG_STATE_HOME, or pass "
             "--counter-file or --counter");
        return NULL;
    }
    if (n < 0) {
        fail("out of memory");
        return NULL;
    }
    if (mkdir_parents(path) < 0) {
        fail("cannot create the directory of %s: %s", path, strerror(errno));
        free(path);
        return NULL;
    }
    return path;
}

static int ctr_read(const struct ctr_store *c, uint32_t *last)
{
    char text[32];
    ssize_t n;
    uint64_t v;
    size_t len;
    int fd = open(c->path, O_RDONLY | O_CLOEXEC);

    if (fd < 0 && errno == ENOENT) {
        *last = 0;
        return 0;
    }
    if (fd < 0)
        return fail("cannot open counter file %s: %s", c->path, strerror(errno));
    n = read(fd, text, sizeof(text) - 1);
    int err = errno;
    close(fd);
    if (n < 0)
        return fail("cannot read counter file %s: %s", c->path, strerror(err));
    len = (size_t)n;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
        len--;
    text[len] = '\0';
    if (parse_uint(text, UINT32_MAX, &v) < 0)
        return fail("counter file %s is corrupt: expected one number from 0 to 4294967295",
                    c->path);
    *last = (uint32_t)v;
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Durably replaces the file's value with value. */
static int ctr_write(struct ctr_store *c, uint32_t value)
{
    char text[16];
    int n = snprintf(text, sizeof(text), "%" PRIu32 "\n", value);
    int err;
    int fd = open(c->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        goto fail;
    if (write_all(fd, text, (size_t)n) < 0 || fsync(fd) < 0)
        goto fail_fd;
    if (close(fd) < 0)
        goto fail;
    if (rename(c->tmp, c->path) < 0)
        goto fail;
    if (fsync(c->dir_fd) < 0)
        goto fail;
    c->reserved = value;
    return 0;

fail_fd:
    err = errno;
    close(fd);
    errno = err;
fail:
    err = errno;
    unlink(c->tmp);
    return fail("cannot write counter file %s: %s", c->path, strerror(err));
}

/* Opens and locks the store at path (takes ownership of path). */
static int ctr_open(struct ctr_store *c, char *path, uint32_t *last)
{
    char *lock = NULL;
    char *dir = NULL;
    int rc = EXIT_FAIL;

    c->path = path;
    c->lock_fd = -1;
    c->dir_fd = -1;
    c->tmp = NULL;
    if (asprintf(&c->tmp, "%s.tmp", path) < 0) {
        c->tmp = NULL;
        goto fail_nomem;
    }
    if (asprintf(&lock, "%s.lock", path) < 0) {
        lock = NULL;
        goto fail_nomem;
    }
    if (!(dir = strdup(path)))
        goto fail_nomem;
    c->dir_fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (c->dir_fd < 0) {
        fail("cannot open the directory of counter file %s: %s", path, strerror(errno));
        goto out;
    }
    c->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (c->lock_fd < 0) {
        fail("cannot create lock file %s: %s", lock, strerror(errno));
        goto out;
    }
    if (flock(c->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            fail("counter file %s is in use by another %s", path, DEVICE_PROG);
        else
            fail("cannot lock %s: %s", lock, strerror(errno));
        goto out;
    }
    if (ctr_read(c, last) != 0)
        goto out;
    c->reserved = *last;
    rc = 0;
    goto out;

fail_nomem:
    fail("out of memory");
out:
    free(lock);
    free(dir);
    return rc;
}

static void ctr_close(struct ctr_store *c)
{
    if (c->lock_fd >= 0)
        close(c->lock_fd);
    if (c->dir_fd >= 0)
        close(c->dir_fd);
    free(c->tmp);
    free(c->path);
    c->lock_fd = c->dir_fd = -1;
    c->tmp = c->path = NULL;
}

/* ------------------------------------------------------------------------ */
/* MQTT session                                                             */
/* ------------------------------------------------------------------------ */

/*
 * The session drives the libmosquitto loop itself, in this thread: in this
 * mode mosquitto_publish writes straight to the socket, and mosquitto_loop
 * reads PUBACKs (and sends what libmosquitto queued behind the broker's
 * Receive Maximum) whenever the window is full, while pausing, and at the end.
 * Compared with mosquitto_loop_start this saves a wake-up write, a poll and
 * two lock round trips per message: measured about 1.4x faster on a 2-core box
 * where client and broker compete for CPU. Callbacks run inside
 * mosquitto_loop, so the counters below need no lock.
 */
struct session {
    struct mosquitto *mosq;
    int version;
    int conn_state; /* 0 waiting for CONNACK, 1 connected, -1 refused */
    int conn_rc;
    int lost; /* unexpected disconnect or network error */
    int lost_rc;
    uint64_t queued;   /* messages handed to mosquitto_publish */
    uint64_t done;     /* on_publish: PUBACK received (QoS 1) or written (QoS 0) */
    uint64_t rejected; /* PUBACK with a failure reason code (MQTT 5) */
    int reject_rc;
    int subscribed; /* SUBACK: 1 granted, -1 refused */
    /* Messages received (pull, listen), handled between loop turns. */
    struct rx {
        char *topic;
        uint8_t *payload;
        size_t len;
    } rx[64];
    size_t nrx;
    uint64_t rx_dropped;
};

static void on_connect(struct mosquitto *m, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
    struct session *s = obj;
    (void)m;
    (void)flags;
    (void)props;
    if (s->conn_state == 0) {
        s->conn_rc = rc;
        s->conn_state = rc == 0 ? 1 : -1;
    }
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc, const mosquitto_property *props)
{
    struct session *s = obj;
    (void)m;
    (void)props;
    if (rc != 0 && !s->lost) {
        s->lost = 1;
        s->lost_rc = rc;
    }
}

static void on_publish(struct mosquitto *m, void *obj, int mid, int rc,
                       const mosquitto_property *props)
{
    struct session *s = obj;
    (void)m;
    (void)mid;
    (void)props;
    s->done++;
    if (rc >= 128) {
        s->rejected++;
        s->reject_rc = rc;
    }
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted,
                         const mosquitto_property *props)
{
    struct session *s = obj;
    (void)m;
    (void)mid;
    (void)props;
    s->subscribed = 1;
    for (int i = 0; i < n; i++)
        if (granted[i] >= 128)
            s->subscribed = -1;
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg,
                       const mosquitto_property *props)
{
    struct session *s = obj;
    struct rx *r;
    (void)m;
    (void)props;
    if (s->nrx == sizeof(s->rx) / sizeof(s->rx[0])) {
        s->rx_dropped++;
        return;
    }
    r = &s->rx[s->nrx];
    r->topic = strdup(msg->topic);
    r->payload = malloc(msg->payloadlen > 0 ? (size_t)msg->payloadlen : 1);
    if (!r->topic || !r->payload) {
        free(r->topic);
        free(r->payload);
        s->rx_dropped++;
        return;
    }
    r->len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    memcpy(r->payload, msg->payload, r->len);
    s->nrx++;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One turn of the network loop, waiting at most until the deadline. */
static void session_step(struct session *s, int64_t deadline)
{
    int64_t left = deadline - now_ms();
    /* Wake at least once a second so mosquitto_loop can send PINGREQs. */
    left = left < 0 ? 0 : left > 1000 ? 1000 : left;
    int rc = mosquitto_loop(s->mosq, (int)left, 1);
    if (rc != MOSQ_ERR_SUCCESS && !s->lost) {
        s->lost = 1;
        s->lost_rc = rc;
    }
}

static const char *connack_text(const struct session *s, int rc)
{
    return s->version == MQTT_PROTOCOL_V5 ? mosquitto_reason_string(rc)
                                          : mosquitto_connack_string(rc);
}

static int session_lost(const struct session *s)
{
    /* rc is a reason code when the broker sent DISCONNECT, else a MOSQ_ERR. */
    const char *why = s->version == MQTT_PROTOCOL_V5 && s->lost_rc >= 128
                          ? mosquitto_reason_string(s->lost_rc)
                          : mosquitto_strerror(s->lost_rc);
    return fail("lost the connection to the broker: %s (code %d); %" PRIu64 " of %" PRIu64
                " messages acknowledged",
                why, s->lost_rc, s->done, s->queued);
}

/* Connects and waits for CONNACK. Returns 0 or EXIT_FAIL. */
static int session_open(struct session *s, const struct args *a)
{
    char id[sizeof(DEVICE_PROG) + SP_MAX_SERIAL + 32];
    int rc;

    memset(s, 0, sizeof(*s));
    snprintf(id, sizeof(id), "%s-%s-%ld", DEVICE_PROG, a->serial, (long)getpid());
    s->version = a->mqtt_version;
    s->mosq = mosquitto_new(id, true, s);
    if (!s->mosq)
        return fail("cannot create an MQTT client: %s", strerror(errno));
    mosquitto_int_option(s->mosq, MOSQ_OPT_PROTOCOL_VERSION, a->mqtt_version);
    mosquitto_int_option(s->mosq, MOSQ_OPT_SEND_MAXIMUM, DEVICE_WINDOW);
    mosquitto_int_option(s->mosq, MOSQ_OPT_TCP_NODELAY, 1);
    if (a->username || a->password) {
        const char *user = a->username ? a->username : DEVICE_DEFAULT_USERNAME;
        if ((rc = mosquitto_username_pw_set(s->mosq, user, a->password)) != MOSQ_ERR_SUCCESS)
            return fail("cannot set MQTT credentials: %s", mosquitto_strerror(rc));
    }
    mosquitto_connect_v5_callback_set(s->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(s->mosq, on_disconnect);
    mosquitto_publish_v5_callback_set(s->mosq, on_publish);
    mosquitto_subscribe_v5_callback_set(s->mosq, on_subscribe);
    mosquitto_message_v5_callback_set(s->mosq, on_message);

    rc = mosquitto_connect(s->mosq, a->host, a->port, DEVICE_KEEPALIVE);
    if (rc != MOSQ_ERR_SUCCESS)
        return fail("cannot connect to %s:%d: %s", a->host, a->port,
                    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
    int64_t deadline = now_ms() + (int64_t)a->timeout_s * 1000;
    while (s->conn_state == 0 && !s->lost && now_ms() < deadline)
        session_step(s, deadline);
    if (s->conn_state < 0)
        return fail("broker %s:%d refused the connection: %s", a->host, a->port,
                    connack_text(s, s->conn_rc));
    if (s->conn_state == 0 && s->lost)
        return session_lost(s);
    if (s->conn_state == 0)
        return fail("no CONNACK from %s:%d within %u s", a->host, a->port, a->timeout_s);
    return 0;
}

/*
 * Runs the loop until at most max_out messages are unacknowledged. Gives up
 * when nothing was acknowledged for timeout_s seconds. Returns 0 or EXIT_FAIL.
 */
static int session_drain(struct session *s, uint64_t max_out, unsigned timeout_s)
{
    uint64_t seen = s->done;
    int64_t deadline = now_ms() + (int64_t)timeout_s * 1000;

    while (!s->lost && s->queued - s->done > max_out) {
        session_step(s, deadline);
        if (s->done != seen) {
            seen = s->done;
            deadline = now_ms() + (int64_t)timeout_s * 1000;
        } else if (now_ms() >= deadline) {
            return fail("timed out: no acknowledgement from the broker for %u s; %" PRIu64
                        " of %" PRIu64 " messages acknowledged",
                        timeout_s, s->done, s->queued);
        }
    }
    return s->lost ? session_lost(s) : 0;
}

/* Keeps the connection serviced for ms milliseconds. */
static int session_sleep(struct session *s, uint64_t ms)
{
    int64_t deadline = now_ms() + (int64_t)ms;
    while (!s->lost && now_ms() < deadline)
        session_step(s, deadline);
    return s->lost ? session_lost(s) : 0;
}

static int session_publish(struct session *s, const char *topic, const void *payload, size_t len,
                           int qos)
{
    s->queued++; /* before: a QoS 0 on_publish runs inside mosquitto_publish */
    int rc = mosquitto_publish(s->mosq, NULL, topic, (int)len, payload, qos, false);
    if (rc == MOSQ_ERR_SUCCESS)
        return 0;
    s->queued--;
    if (s->lost)
        return session_lost(s);
    if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO) {
        s->lost = 1;
        s->lost_rc = rc;
        return session_lost(s);
    }
    return fail("cannot publish to %s: %s", topic, mosquitto_strerror(rc));
}

/* Subscribes to the topics at QoS 1 and waits for the SUBACK. Returns 0 or EXIT_FAIL. */
static int session_subscribe(struct session *s, char *const *topics, int n, unsigned timeout_s)
{
    int64_t deadline = now_ms() + (int64_t)timeout_s * 1000;
    int rc = mosquitto_subscribe_multiple(s->mosq, NULL, n, topics, 1, 0, NULL);

    if (rc != MOSQ_ERR_SUCCESS)
        return fail("cannot subscribe to %s: %s", topics[0], mosquitto_strerror(rc));
    while (!s->subscribed && !s->lost && now_ms() < deadline)
        session_step(s, deadline);
    if (s->lost)
        return session_lost(s);
    if (s->subscribed < 0)
        return fail("the broker refused the subscription to %s", topics[0]);
    if (!s->subscribed)
        return fail("no SUBACK within %u s", timeout_s);
    return 0;
}

/* Frees the received messages. */
static void session_rx_clear(struct session *s)
{
    for (size_t i = 0; i < s->nrx; i++) {
        free(s->rx[i].topic);
        free(s->rx[i].payload);
    }
    s->nrx = 0;
}

/* Disconnects (cleanly if the session is healthy) and frees the client. */
static void session_close(struct session *s)
{
    if (!s->mosq)
        return;
    session_rx_clear(s);
    if (s->conn_state == 1 && !s->lost && mosquitto_disconnect(s->mosq) == MOSQ_ERR_SUCCESS) {
        /* Flush the DISCONNECT if the socket did not take it at once. */
        int64_t deadline = now_ms() + 1000;
        while (mosquitto_want_write(s->mosq) && now_ms() < deadline &&
               mosquitto_loop(s->mosq, 100, 1) == MOSQ_ERR_SUCCESS)
            ;
    }
    mosquitto_destroy(s->mosq);
    s->mosq = NULL;
}

/* ------------------------------------------------------------------------ */
/* Commands                                                                 */
/* ------------------------------------------------------------------------ */

/* Counter range of an encrypted push; store.path is NULL with --counter. */
struct counters {
    struct ctr_store store;
    uint32_t first;
    uint32_t chunk;
};

static int counters_open(struct counters *k, const struct args *a)
{
    uint32_t last = 0;
    char *path;

    memset(k, 0, sizeof(*k));
    k->store.lock_fd = k->store.dir_fd = -1;
    if (a->has_counter) {
        k->first = a->counter;
        return 0;
    }
    path = a->counter_file ? strdup(a->counter_file) : ctr_default_path(a->serial);
    if (!path)
        return a->counter_file ? fail("out of memory") : EXIT_FAIL;
    if (ctr_open(&k->store, path, &last) != 0)
        return EXIT_FAIL;
    if ((uint64_t)last + a->count > UINT32_MAX)
        return fail("counter file %s: last counter %" PRIu32 " leaves no room for %" PRIu64
                    " more messages; the device must be re-provisioned (TagoTiP.md 10.1)",
                    k->store.path, last, a->count);
    k->first = last + 1;
    k->chunk = a->interval_ms > 0 ? 1 : DEVICE_COUNTER_CHUNK;
    return 0;
}

/* Makes counter durable before use; last is the final counter of the run. */
static int counters_reserve(struct counters *k, uint32_t counter, uint32_t last)
{
    if (!k->store.path || counter <= k->store.reserved)
        return 0;
    uint64_t upto = (uint64_t)counter + k->chunk - 1;
    return ctr_write(&k->store, upto < last ? (uint32_t)upto : last);
}

/* Publishes every message; the session is connected. */
static int push_run(const struct args *a, struct session *s, struct work *w, struct counters *k)
{
    char topic[SP_MAX_SERIAL + 16];
    uint8_t device_hash[SP_HASH_LEN];
    uint32_t last = k->first + (uint32_t)(a->count - 1);
    int rc;

    snprintf(topic, sizeof(topic), "%s/%s/push", a->encrypt ? "$tips" : "$tip", a->serial);
    sp_device_hash(a->serial, strlen(a->serial), device_hash);
    for (uint64_t i = 0; i < a->count; i++) {
        if (i > 0 && a->interval_ms > 0 && (rc = session_sleep(s, a->interval_ms)) != 0)
            return rc;
        if ((rc = work_body(w, a->body, i)) < 0)
            return body_error(a, i, rc);
        const void *payload = w->body;
        size_t len = w->body_len;
        if (a->encrypt) {
            uint32_t counter = k->first + (uint32_t)i;
            if (counters_reserve(k, counter, last) != 0)
                return EXIT_FAIL;
            if ((rc = work_seal(w, a, device_hash, counter)) < 0)
                return fail("cannot seal message %" PRIu64 ": %s", i, sp_strerror(rc));
            payload = w->env;
            len = w->env_len;
        }
        if ((rc = session_drain(s, DEVICE_WINDOW - 1, a->timeout_s)) != 0)
            return rc;
        if ((rc = session_publish(s, topic, payload, len, a->qos)) != 0)
            return rc;
    }
    return session_drain(s, 0, a->timeout_s);
}

static int cmd_push(const struct args *a)
{
    struct session s;
    struct counters k;
    struct work *w = calloc(1, sizeof(*w));
    int rc;

    memset(&k, 0, sizeof(k));
    k.store.lock_fd = k.store.dir_fd = -1;
    if (!w)
        return fail("out of memory");
    /* Check the first and last body before connecting; the rest as they go. */
    uint64_t bad = 0;
    if ((rc = work_body(w, a->body, 0)) == 0 && (rc = work_body(w, a->body, a->count - 1)) < 0)
        bad = a->count - 1;
    if (rc < 0) {
        rc = body_error(a, bad, rc);
        goto out_work;
    }
    if (a->encrypt && (rc = counters_open(&k, a)) != 0)
        goto out_counters;
    signal(SIGPIPE, SIG_IGN);
    if ((rc = session_open(&s, a)) != 0)
        goto out_session;

    double t0 = now_s();
    if ((rc = push_run(a, &s, w, &k)) != 0)
        goto out_session;
    double dt = now_s() - t0;
    if (s.rejected > 0) {
        rc = fail("the broker rejected %" PRIu64 " of %" PRIu64 " messages: %s", s.rejected,
                  s.queued, mosquitto_reason_string(s.reject_rc));
        goto out_session;
    }
    if (!a->quiet)
        fprintf(stderr, "published %" PRIu64 " messages in %.3f s (%.0f msg/s)\n", a->count, dt,
                dt > 0 ? (double)a->count / dt : 0.0);
    rc = EXIT_OK;

out_session:
    session_close(&s);
out_counters:
    ctr_close(&k.store);
out_work:
    work_free(w);
    return rc;
}

/*
 * Turns a frame received on an ack topic into its raw-binding ACK form in
 * out ("ACK|" + the MQTT payload, or "ACK|" + the opened inner frame of an
 * envelope, or a plaintext fallback "ACK|ERR|..." as it came). Returns the
 * status (enum sp_ack_status), or -1 after reporting on stderr why the frame
 * cannot be read.
 */
static int read_ack(const struct args *a, const char *topic, const uint8_t *p, size_t len,
                    char *out, size_t cap, struct sp_tip_ack *ackp)
{
    uint8_t inner[SP_MAX_FRAME + 1], dh[SP_HASH_LEN];
    struct sp_env_header h;
    struct sp_tip_ack ack;
    size_t n = 0;
    int rc, form = SP_ACK_MQTT;
    const char *text = (const char *)p;

    if (strncmp(topic, "$tips/", 6) == 0 && !(len > 0 && p[0] == 'A')) {
        sp_device_hash(a->serial, strlen(a->serial), dh);
        if ((rc = sp_env_parse_header(p, len, &h)) != 0 || h.method != SP_METHOD_ACK ||
            memcmp(h.device_hash, dh, SP_HASH_LEN) != 0 ||
            (rc = sp_env_open(&h, p, len, a->key, a->key_len, inner, sizeof(inner), &n)) != 0) {
            fprintf(stderr, "%s: a %zu-byte frame on %s does not open with this key\n", DEVICE_PROG,
                    len, topic);
            return -1;
        }
        text = (const char *)inner;
        len = n;
        form = SP_ACK_INNER;
    } else if (strncmp(topic, "$tips/", 6) == 0) {
        form = SP_ACK_FRAME; /* plaintext fallback, TagoTiPs.md §9 */
    }
    if (sp_tip_parse_ack(text, len, form, &ack) != SP_OK ||
        (size_t)snprintf(out, cap, "%s%.*s", form == SP_ACK_FRAME ? "" : "ACK|", (int)len, text) >=
            cap) {
        fprintf(stderr, "%s: a %zu-byte frame on %s is not a TagoTiP ACK\n", DEVICE_PROG, len,
                topic);
        return -1;
    }
    sodium_memzero(inner, sizeof(inner));
    if (ackp) {
        *ackp = ack; /* its detail span is not valid after return */
        ackp->detail.p = NULL;
        ackp->detail.n = 0;
    }
    return ack.status;
}

/* Connects and subscribes to the device's ack topic(s). */
static int open_acks(struct session *s, const struct args *a)
{
    char plain[SP_MAX_SERIAL + 16], sealed[SP_MAX_SERIAL + 16];
    char *topics[2] = {plain, sealed};
    int rc;

    snprintf(plain, sizeof(plain), "$tip/%s/ack", a->serial);
    snprintf(sealed, sizeof(sealed), "$tips/%s/ack", a->serial);
    signal(SIGPIPE, SIG_IGN);
    if ((rc = session_open(s, a)) != 0)
        return rc;
    return a->encrypt ? session_subscribe(s, topics + 1, 1, 30)
                      : session_subscribe(s, topics, 1, 30);
}

static int cmd_listen(const struct args *a)
{
    static char line[SP_MAX_FRAME + 16];
    struct session s;
    uint64_t seen = 0;
    int rc;

    if ((rc = open_acks(&s, a)) != 0)
        goto out;
    int64_t idle = a->timeout_set ? (int64_t)a->timeout_s * 1000 : INT64_MAX / 2;
    int64_t deadline = now_ms() + idle;
    while (!s.lost && (a->count == 0 || seen < a->count) && now_ms() < deadline) {
        session_step(&s, deadline);
        for (size_t i = 0; i < s.nrx && (a->count == 0 || seen < a->count); i++) {
            if (read_ack(a, s.rx[i].topic, s.rx[i].payload, s.rx[i].len, line, sizeof line, NULL) <
                0)
                continue;
            printf("%s\n", line);
            fflush(stdout);
            seen++;
            deadline = now_ms() + idle;
        }
        session_rx_clear(&s);
    }
    rc = s.lost ? session_lost(&s) : EXIT_OK;
out:
    session_close(&s);
    return rc;
}

static int cmd_pull(const struct args *a)
{
    static char line[SP_MAX_FRAME + 16], inner[SP_MAX_FRAME + 1], req[SP_MAX_FRAME + 16];
    uint8_t env[SP_ENV_MAX_LEN], dh[SP_HASH_LEN];
    char topic[SP_MAX_SERIAL + 16];
    struct sp_tip_pull pl;
    struct session s;
    struct counters k;
    size_t len = 0, n = 0;
    int rc, status = -1;

    memset(&k, 0, sizeof(k));
    k.store.lock_fd = k.store.dir_fd = -1;
    memset(&s, 0, sizeof(s));
    /* The envelope carries "[a;b]"; the MQTT binding "a,b" (TagoTipServers.md §3.3). */
    if (sp_tip_parse_pull(a->body, strlen(a->body), 1, &pl) != SP_OK)
        return fail("bad VARIABLES");
    n = (size_t)snprintf(inner, sizeof(inner), "%s|[", a->serial);
    for (size_t i = 0; i < pl.nvars && n + pl.vars[i].n + 2 < sizeof(inner); i++)
        n += (size_t)snprintf(inner + n, sizeof(inner) - n, "%s%.*s", i ? ";" : "",
                              (int)pl.vars[i].n, pl.vars[i].p);
    n += (size_t)snprintf(inner + n, sizeof(inner) - n, "]");
    snprintf(topic, sizeof(topic), "%s/%s/pull", a->encrypt ? "$tips" : "$tip", a->serial);
    if (a->encrypt) {
        struct args one = *a;
        one.count = 1;
        if ((rc = counters_open(&k, &one)) != 0 || (rc = counters_reserve(&k, k.first, k.first)))
            goto out;
        sp_device_hash(a->serial, strlen(a->serial), dh);
        if ((rc = sp_env_seal(a->suite, SP_METHOD_PULL, k.first, a->auth_hash, dh, a->key,
                              a->key_len, (const uint8_t *)inner, n, env, sizeof(env), &len))) {
            rc = fail("cannot seal the PULL: %s%s", sp_strerror(rc),
                      rc == SP_ERR_METHOD ? " (AES-256-CCM cannot carry PULL: flags byte 0x41 "
                                            "is reserved, TagoTiPs.md 5.1)"
                                          : "");
            goto out;
        }
    }
    if ((rc = open_acks(&s, a)) != 0)
        goto out;
    /*
     * Which frame answers us: a plain request carries a "!N" the server
     * echoes (TagoTiP.md §9.5); an envelope cannot, so there the answer is
     * the first OK with a variable list or ERR (one request at a time,
     * TagoTiPs.md §9). Answers to earlier pushes are skipped.
     */
    uint32_t seq = randombytes_uniform(UINT32_MAX);
    if (a->encrypt) {
        rc = session_publish(&s, topic, env, len, 1);
    } else {
        n = (size_t)snprintf(req, sizeof(req), "!%" PRIu32 "|%s", seq, a->body);
        rc = session_publish(&s, topic, req, n, 1);
    }
    if (rc != 0)
        goto out;
    int64_t deadline = now_ms() + (int64_t)a->timeout_s * 1000;
    while (!s.lost && status < 0 && now_ms() < deadline) {
        session_step(&s, deadline);
        for (size_t i = 0; i < s.nrx && status < 0; i++) {
            struct sp_tip_ack ack;
            int st =
                read_ack(a, s.rx[i].topic, s.rx[i].payload, s.rx[i].len, line, sizeof line, &ack);
            /* (ack.detail points into read_ack's buffer: look at line.) */
            int ours = a->encrypt ? st == SP_ACK_ERR || strncmp(line, "ACK|OK|[", 8) == 0
                                  : ack.has_counter && ack.counter == seq;
            if (st < 0 || (st != SP_ACK_CMD && !ours))
                continue;
            printf("%s\n", line);
            fflush(stdout);
            if (st != SP_ACK_CMD)
                status = st;
        }
        session_rx_clear(&s);
    }
    if (s.lost)
        rc = session_lost(&s);
    else if (status < 0)
        rc = fail("no answer on %s/%s/ack within %u s", a->encrypt ? "$tips" : "$tip", a->serial,
                  a->timeout_s);
    else
        rc = status == SP_ACK_OK ? EXIT_OK : EXIT_FAIL;
out:
    session_close(&s);
    ctr_close(&k.store);
    sodium_memzero(inner, sizeof(inner));
    return rc;
}

static int cmd_seal(const struct args *a)
{
    uint8_t device_hash[SP_HASH_LEN];
    struct work *w = calloc(1, sizeof(*w));
    char *hex = NULL;
    int rc;

    if (!w)
        return fail("out of memory");
    /* seal takes BODY literally: no {n} expansion. */
    w->body_len = strlen(a->body);
    if (w->body_len > SP_MAX_FRAME)
        rc = SP_ERR_TOOLARGE;
    else {
        memcpy(w->body, a->body, w->body_len);
        rc = sp_tip_parse_body(w->body, w->body_len, &w->parsed);
    }
    if (rc < 0) {
        rc = body_error(a, 0, rc);
        goto out;
    }
    if (!a->hex && isatty(STDOUT_FILENO)) {
        rc = usage_error(a, "refusing to write a binary envelope to a terminal; use --hex or "
                            "redirect stdout");
        goto out;
    }
    sp_device_hash(a->serial, strlen(a->serial), device_hash);
    if ((rc = work_seal(w, a, device_hash, a->counter)) < 0) {
        rc = fail("cannot seal: %s", sp_strerror(rc));
        goto out;
    }
    if (a->hex) {
        size_t cap = 2 * w->env_len + 1;
        if (!(hex = malloc(cap))) {
            rc = fail("out of memory");
            goto out;
        }
        if (sp_hex_encode(w->env, w->env_len, hex, cap) != 0) {
            rc = fail("cannot encode hex");
            goto out;
        }
        printf("%s\n", hex);
    } else {
        fwrite(w->env, 1, w->env_len, stdout);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        rc = fail("cannot write to stdout: %s", strerror(errno));
        goto out;
    }
    rc = EXIT_OK;
out:
    free(hex);
    work_free(w);
    return rc;
}

static int cmd_hash(const struct args *a)
{
    uint8_t h[SP_HASH_LEN];
    char hex[2 * SP_HASH_LEN + 1];
    int rc;

    if (a->serial) {
        sp_device_hash(a->serial, strlen(a->serial), h);
    } else {
        size_t n = strlen(a->token);
        int ok = n == 2 + SP_TOKEN_HEX_LEN && strncmp(a->token, "at", 2) == 0 &&
                 strspn(a->token + 2, "0123456789abcdefABCDEF") == SP_TOKEN_HEX_LEN;
        if (!ok)
            fprintf(stderr,
                    "%s hash: warning: token is not \"at\" + 32 hex characters; hashing it "
                    "anyway\n",
                    DEVICE_PROG);
        if ((rc = sp_auth_hash(a->token, n, h)) != 0)
            return usage_error(a, "--token: %s", sp_strerror(rc));
    }
    if (sp_hex_encode(h, sizeof(h), hex, sizeof(hex)) != 0)
        return fail("cannot encode hex");
    printf("%s\n", hex);
    if (fflush(stdout) != 0)
        return fail("cannot write to stdout: %s", strerror(errno));
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    struct args a;
    int rc;

    memset(&a, 0, sizeof(a));
    a.host = DEVICE_DEFAULT_HOST;
    a.port = DEVICE_DEFAULT_PORT;
    a.qos = DEVICE_DEFAULT_QOS;
    a.mqtt_version = MQTT_PROTOCOL_V5;
    a.cipher = DEVICE_DEFAULT_CIPHER;
    a.count = 1;
    a.timeout_s = DEVICE_DEFAULT_TIMEOUT;

    if (argc < 2) {
        usage_top(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage_top(stdout);
        return EXIT_OK;
    }
    a.cmd_name = argv[1];
    if (!strcmp(argv[1], "push"))
        a.cmd = CMD_PUSH;
    else if (!strcmp(argv[1], "seal"))
        a.cmd = CMD_SEAL;
    else if (!strcmp(argv[1], "hash"))
        a.cmd = CMD_HASH;
    else if (!strcmp(argv[1], "pull"))
        a.cmd = CMD_PULL;
    else if (!strcmp(argv[1], "listen")) {
        a.cmd = CMD_LISTEN;
        a.count = 0; /* until interrupted */
    } else {
        fprintf(stderr, "%s: unknown command '%s'\nTry '%s --help'.\n", DEVICE_PROG, argv[1],
                DEVICE_PROG);
        return EXIT_USAGE;
    }
    if (sp_init() != 0)
        return fail("cannot initialize the crypto library");

    rc = args_parse(&a, argc - 1, argv + 1);
    if (rc < 0) {
        rc = EXIT_OK; /* --help */
        goto out;
    }
    if (rc != 0 || (rc = args_check(&a)) != 0)
        goto out;

    switch (a.cmd) {
    case CMD_PUSH:
        mosquitto_lib_init();
        rc = cmd_push(&a);
        mosquitto_lib_cleanup();
        break;
    case CMD_PULL:
    case CMD_LISTEN:
        mosquitto_lib_init();
        rc = a.cmd == CMD_PULL ? cmd_pull(&a) : cmd_listen(&a);
        mosquitto_lib_cleanup();
        break;
    case CMD_SEAL:
        rc = cmd_seal(&a);
        break;
    default:
        rc = cmd_hash(&a);
        break;
    }
out:
    args_cleanup(&a);
    return rc;
}
