/*
 * usage.c - what sealpipe-device says about itself: the --help of each
 * command (synopsis, then the options of opt_table, then the exit codes) and
 * the one-line reports of usage errors and failures, all on stdout/stderr.
 */
#include "device.h"

#include <stdarg.h>
#include <string.h>

static const char *const synopsis_push =
    "usage: " DEVICE_PROG " push --serial S [--host H] [--port P] [--username U --password W]\n"
    "         [--qos 0|1] [--mqtt-version 5|311] [--encrypt --key HEX [--cipher NAME]\n"
    "         --auth-hash HEX16 [--counter N | --counter-file PATH]] [--count N]\n"
    "         [--interval-ms MS] [--timeout SEC] [--quiet] BODY\n"
    "       " DEVICE_PROG " push --transport http|udp|tcp --serial S [--host H] [--port P]\n"
    "         (--auth-hash HEX16 | --token at...) [--tls [--cafile PATH]] [--encrypt --key HEX\n"
    "         [--cipher NAME]] [--counter N | --counter-file PATH] [--count N]\n"
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
    "\"published N messages in X.XXX s (R msg/s)\" on stderr unless --quiet.\n"
    "\n"
    "--transport http, udp or tcp sends one message at a time and waits for its\n"
    "answer, printed on stdout as an ACK frame (ACK|OK|2, ACK|!7|OK|1), with any\n"
    "pending command (ACK|CMD|reboot); an ERR answer stops the run (exit 1):\n"
    "  http:  POST /v1/tip/S with BODY, \"Authorization: TagoTiP HEX16\" (section 2);\n"
    "         --encrypt: POST /v1/tips with the envelope. --tls for https.\n"
    "  udp:   one datagram per message, PUSH|!N|HEX16|S|BODY or the envelope, sent\n"
    "         again (the same bytes) while no answer comes (section 4).\n"
    "  tcp:   one connection; frames end with a newline, envelopes follow a 2-byte\n"
    "         big-endian length (TagoTiPs.md 5.4).\n"
    "Raw plain frames take their !N from the counter file, like envelopes.\n"
    "Prints \"sent N messages over T in X.XXX s (R msg/s)\" on stderr unless --quiet.\n";

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
    "  --transport http: GET /v1/tip/S?variables=VARIABLES (--encrypt: POST /v1/tips)\n"
    "  --transport udp, tcp: the frame PULL|!N|HEX16|S|[a;b] (or the envelope)\n"
    "Unsolicited CMD frames that arrive first are printed too. Exit status 0 when the\n"
    "answer is OK, 1 when it is ERR (e.g. ERR|variable_not_found) or none came.\n";

static const char *const synopsis_ping =
    "usage: " DEVICE_PROG " ping --transport http|udp|tcp --serial S [--host H] [--port P]\n"
    "         (--auth-hash HEX16 | --token at...) [--tls [--cafile PATH]] [--encrypt --key HEX\n"
    "         [--cipher NAME]] [--counter N | --counter-file PATH] [--timeout SEC]\n"
    "\n"
    "Sends a TagoTiP PING and prints the answer as an ACK frame: ACK|PONG, or the\n"
    "command the server had pending for the device (ACK|CMD|reboot).\n"
    "  http:     HEAD /v1/tip/S: 204 is PONG, 200 carries X-TagoTiP-CMD headers\n"
    "  udp, tcp: the frame PING|!N|HEX16|S, or with --encrypt a PING envelope\n"
    "MQTT has no TagoTiP PING (TagoTipServers.md 3.4), so --transport is required.\n"
    "Exit status 0 on PONG or a command, 1 on ERR or no answer.\n";

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

/* How the command line is read: sp_cmdline.h's rules, the daemon's too. */
static const char *const option_rules =
    "\nOptions are --name VALUE or --name=VALUE, before or after the arguments;\n"
    "names are written in full ('-' and '_' alike). A word that starts with a\n"
    "single '-' is an argument (a BODY may), and '--' ends the options.\n";

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
    for (size_t i = 0; i < opt_count; i++) {
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

void usage_cmd(FILE *f, unsigned cmd)
{
    fputs(cmd == CMD_PUSH     ? synopsis_push
          : cmd == CMD_PULL   ? synopsis_pull
          : cmd == CMD_PING   ? synopsis_ping
          : cmd == CMD_LISTEN ? synopsis_listen
          : cmd == CMD_SEAL   ? synopsis_seal
                              : synopsis_hash,
          f);
    print_options(f, cmd);
    fputs(option_rules, f);
    fputs(cmd == CMD_HASH ? exit_codes : exit_codes_body, f);
}

void usage_top(FILE *f)
{
    fputs("usage: " DEVICE_PROG " <command> [options]\n"
          "\n"
          "The device side of sealpipe (TagoTiP and TagoTiP/S):\n"
          "  push   publish TagoTiP bodies, plain or encrypted\n"
          "  pull   ask for the last values of variables and print the answer\n"
          "  ping   send a TagoTiP PING and print the answer (PONG or a command)\n"
          "  listen print the ACK and CMD frames the server sends the device\n"
          "  seal   write one TagoTiP/S envelope to stdout\n"
          "  hash   print the device hash of a serial or the auth hash of a token\n"
          "\n"
          "push, pull and ping go over MQTT unless --transport http, udp or tcp says\n"
          "otherwise (TagoTipServers.md sections 2-4).\n"
          "\n"
          "Run '" DEVICE_PROG " <command> --help' for the options of a command.\n",
          f);
    fputs(option_rules, f);
    fputs(exit_codes, f);
}

int usage_error(const struct args *a, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s %s: ", DEVICE_PROG, a->cmd_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s %s --help'.\n", DEVICE_PROG, a->cmd_name);
    return EXIT_USAGE;
}

int fail(const char *fmt, ...)
{
    va_list ap;
    fputs(DEVICE_PROG ": ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_FAIL;
}
