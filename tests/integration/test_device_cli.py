"""sealpipe-device's command line, read by the scanner sealpipe uses too
(sdk/src/sp_cmdline.h): names in full, --name=value, a word with one '-' is
an argument, '--' ends the options, -h/--help; usage errors exit 2 with the
words the tool has always used. Only the commands that need no broker (hash,
seal) run, so no daemon is started."""

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


if __name__ == "__main__":
    sys.exit(h.run(test))
