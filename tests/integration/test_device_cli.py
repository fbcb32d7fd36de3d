"""sealpipe-device's command line, read by the scanner sealpipe uses too
(sdk/src/sp_cmdline.h): names in full, --name=value, a word with one '-' is
an argument, '--' ends the options, -h/--help; usage errors exit 2 with the
words the tool has always used. Only the commands that need no broker (hash,
seal) run, so no daemon is started. --transport: which options go with which
transport, checked before anything is sent; a request to a port where
nothing listens fails (exit 1) naming the transport."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

KEY = "00112233445566778899aabbccddeeff" * 2
AUTH = "0011223344556677"
SEAL = ["seal", "--serial", "s-01", "--key", KEY, "--auth-hash", AUTH, "--counter", "1"]


def test(c, tmp, started):
    def dev(*args):
        return subprocess.run([h.DEVICE, *args], capture_output=True, text=True)

    def refused(args, words, what):
        r = dev(*args)
        c.check(r.returncode == 2 and all(w in r.stderr for w in words) and
                "Try 'sealpipe-device" in r.stderr and r.stderr.count("--help") == 1,
                f"{what}: exit {r.returncode}, {r.stderr.strip()!r} (one --help hint)")
        return r

    want = dev("hash", "--serial", "dev-1")
    c.eq((want.returncode, len(want.stdout.strip())), (0, 16), "hash --serial S")
    c.eq(dev("hash", "--serial=dev-1").stdout, want.stdout, "--name=value is --name value")

    # Names match whole: an abbreviation is an unknown option.
    refused(["hash", "--seri", "dev-1"], ["unknown option '--seri'"], "no abbreviations")
    refused(["listen", "--time", "3"], ["unknown option '--time'"], "no abbreviations (listen)")
    # One '-' is an argument, never a bundle of short options.
    refused(["hash", "--serial", "x", "-dev"], ["unexpected argument '-dev'"],
            "-dev is an argument")
    r = refused([*SEAL, "-5"], ["invalid BODY '-5'"], "a body starting with '-' is the BODY")
    c.check("unknown option" not in r.stderr, "-5 is not taken for an option")

    sealed = dev(*SEAL, "--hex", "[t:=1]")
    c.eq((sealed.returncode, len(sealed.stdout.strip()) > 42), (0, True), "seal --hex BODY")
    same = dev("seal", "[t:=1]", "--hex", "--serial=s-01", f"--key={KEY}", "--auth_hash", AUTH,
               "--counter", "1")
    c.eq(same.stdout, sealed.stdout,
         "options after the BODY, --name=value and '_' for '-' read the same")
    refused([*SEAL, "--", "--hex"], ["invalid BODY '--hex'"], "'--' ends the options")

    for flag in ("-h", "--help"):
        r = dev(*SEAL, flag)
        c.check(r.returncode == 0 and r.stdout.startswith("usage: sealpipe-device seal"),
                f"{flag} prints the help and exits 0")
    refused([*SEAL, "--", "-h"], ["invalid BODY '-h'"], "-h after '--' is the BODY")

    # The errors the tool has always reported, in the same words.
    refused(["hash", "--serial"], ["option '--serial' needs a value"], "missing value")
    refused(["seal", "--hex=1"], ["option '--hex' takes no value"], "a flag takes no value")
    refused(["seal", "--port", "1"], ["--port is not an option of 'seal'"], "option of another")
    refused(["push", "--serial", "s-01"], ["BODY is missing"], "push without BODY")
    refused(["pull", "--serial", "s-01"], ["VARIABLES is missing"], "pull without VARIABLES")
    refused(["push", "--serial", "s-01", "[a:=1]", "[b:=2]"],
            ["one BODY expected, got 2 arguments (quote the body)"], "two bodies")
    refused(["hash", "--serial", "x", "extra"], ["unexpected argument 'extra'"],
            "hash takes no argument")
    refused(["hash", "--serial", "bad serial"], ["--serial: 'bad serial' is not 1-100"],
            "values are checked")

    transports(c, dev, refused)


def transports(c, dev, refused):
    """--transport: the options of each transport, and ping's."""
    udp = ["--transport", "udp", "--serial", "s-01"]
    http = ["--transport", "http", "--serial", "s-01", "--auth-hash", AUTH]
    token = "at" + "e2bd319014b24e0a8aca9f00aea4c0d0"
    refused(["push", *udp, "--auth-hash", AUTH, "--transport", "ftp", "[a:=1]"],
            ["--transport: 'ftp' is not mqtt, http, udp or tcp"], "unknown transport")
    refused(["push", *http, "--qos", "1", "[a:=1]"],
            ["--qos is an MQTT option; it does not apply to --transport http"], "--qos with http")
    refused(["pull", *udp, "--auth-hash", AUTH, "--username", "u", "t"],
            ["--username is an MQTT option; it does not apply to --transport udp"],
            "--username with udp")
    refused(["push", "--transport", "tcp", "--serial", "s-01", "--mqtt-version", "311",
             "--auth-hash", AUTH, "[a:=1]"],
            ["--mqtt-version is an MQTT option"], "--mqtt-version with tcp")
    refused(["push", *udp, "[a:=1]"], ["--transport udp needs --auth-hash or --token"],
            "udp without credentials")
    refused(["push", *udp, "--auth-hash", AUTH, "--token", token, "[a:=1]"],
            ["give --auth-hash or --token, not both"], "both credentials")
    refused(["push", *udp, "--auth-hash", "0011", "[a:=1]"],
            ["--auth-hash: '0011' is not 16 hex characters"], "a short auth hash")
    refused(["push", *http, "--counter", "5", "[a:=1]"],
            ["--counter needs --encrypt (plain HTTP requests carry no counter)"],
            "plain http has no counter")
    refused(["push", *udp, "--auth-hash", AUTH, "--key", KEY, "[a:=1]"],
            ["--key needs --encrypt"], "--key without --encrypt")
    refused(["push", *udp, "--auth-hash", AUTH, "--encrypt", "[a:=1]"],
            ["--key is required with --encrypt"], "--encrypt without --key")
    refused(["push", *udp, "--auth-hash", AUTH, "--tls", "[a:=1]"],
            ["--tls applies to --transport http only, not udp"], "--tls with udp")
    refused(["push", *http, "--cafile", "/dev/null", "[a:=1]"], ["--cafile needs --tls"],
            "--cafile without --tls")
    refused(["push", "--serial", "s-01", "--tls", "[a:=1]"], ["--tls needs --transport http"],
            "--tls with mqtt")
    refused(["push", "--serial", "s-01", "--token", token, "[a:=1]"],
            ["--token needs --transport http, udp or tcp"], "--token with mqtt")
    refused(["listen", "--serial", "s-01", "--transport", "udp"],
            ["--transport is not an option of 'listen'"], "listen is MQTT only")
    refused(["ping", "--serial", "s-01", "--auth-hash", AUTH],
            ["ping needs --transport http, udp or tcp"], "ping over mqtt")
    refused(["ping", *udp, "--auth-hash", AUTH, "[a:=1]"], ["unexpected argument '[a:=1]'"],
            "ping takes no argument")
    refused(["ping", *udp, "--auth-hash", AUTH, "--password", "p"],
            ["--password is not an option of 'ping'"], "ping has no MQTT options")
    refused(["pull", *udp, "--auth-hash", AUTH, "Temp"], ["VARIABLES: 'Temp' is not"],
            "pull checks VARIABLES first")
    r = dev("ping", "--help")
    c.check(r.returncode == 0 and "ACK|PONG" in r.stdout and "--transport NAME" in r.stdout and
            "--username" not in r.stdout, "ping --help: the answers, no MQTT options")
    c.check("ping" in dev("--help").stdout, "the tool's --help lists ping")

    # Accepted, then refused by the network: port 1 on loopback has no listener.
    # The message names the transport and the peer; exit 1, not 2.
    for t, words in (("udp", "connection refused"), ("tcp", "cannot connect"),
                     ("http", "connect")):
        extra = [] if t == "http" else ["--counter", "7"]
        r = dev("ping", "--transport", t, "--serial", "s-01", "--token", token, "--port", "1",
                "--timeout", "2", *extra)
        c.check(r.returncode == 1 and f"{t} 127.0.0.1:1:" in r.stderr and words in r.stderr,
                f"{t} to a closed port: exit {r.returncode}, {r.stderr.strip()!r}")


if __name__ == "__main__":
    sys.exit(h.run(test))
