/*
 * device.c - sealpipe-device, the device side of sealpipe on the command line.
 *
 * Six commands: "push" publishes TagoTiP bodies over MQTT, plain on
 * $tip/<serial>/push or sealed into TagoTiP/S envelopes on $tips/<serial>/push;
 * "pull" asks for the last values of variables and prints the answer;
 * "listen" prints the ACK and CMD frames the server sends the device;
 * "seal" writes one envelope to stdout; "hash" prints a device or auth hash;
 * "ping" sends a TagoTiP PING. push, pull and ping also go over HTTP, UDP or
 * TCP (--transport, link.c), one request and its answer at a time.
 * It uses the public SDK (sealpipe.h), plus the command-line scanner the
 * daemon shares (sp_cmdline.h), and is the only user of <mosquitto.h> and
 * <curl/curl.h> on the device side. This file is main(): it picks the command
 * and runs it; the other files are listed in device.h.
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
#include "device.h"

#include <string.h>

#include <mosquitto.h>

int main(int argc, char **argv)
{
    struct args a;
    int rc;

    if (argc < 2) {
        usage_top(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage_top(stdout);
        return EXIT_OK;
    }
    if (args_init(&a, argv[1]) < 0) {
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

    if (a.transport != TRANSPORT_MQTT) {
        rc = a.cmd == CMD_PUSH ? link_push(&a) : a.cmd == CMD_PULL ? link_pull(&a) : link_ping(&a);
        goto out;
    }
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
