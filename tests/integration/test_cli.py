"""The registry CLI: secrets shown once, errors that name the problem with a
non-zero exit, --json for scripts, and --help for every command and verb."""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402


def test(c, tmp, started):
    data = os.path.join(tmp, "data")

    def sp(*args):
        return subprocess.run([h.SEALPIPE, *args, "--data-dir", data], capture_output=True,
                               text=True)

    def fails(args, words, what):
        r = sp(*args)
        c.check(r.returncode != 0 and all(w in r.stderr for w in words),
                f"{what}: exit {r.returncode}, {r.stderr.strip()!r}")

    for args in (["--help"], ["run", "--help"], ["device", "--help"], ["device", "add", "--help"],
                 ["token", "--help"], ["key", "--help"], ["profile", "--help"], ["config"],
                 ["version"]):
        r = subprocess.run([h.SEALPIPE, *args], capture_output=True, text=True)
        c.check(r.returncode == 0 and len(r.stdout) > 0, f"sealpipe {' '.join(args)} exits 0")

    r = sp("device", "add", "cli-01", "--name", "Pump", "--tag", "site=north", "--param",
           "interval=60", "--json")
    dev = json.loads(r.stdout)
    c.eq(sorted(k for k in ("serial", "token", "key", "auth_hash", "device_hash", "cipher")
                if k in dev), ["auth_hash", "cipher", "device_hash", "key", "serial", "token"],
         "device add --json prints the secrets and hashes")
    shown = sp("device", "show", "cli-01").stdout
    c.check(dev["token"] not in shown and dev["key"] not in shown,
            "device show never prints the token or key again")
    db = open(os.path.join(data, "sealpipe.db"), "rb").read()
    c.check(dev["token"].encode() not in db and bytes.fromhex(dev["key"]) not in db,
            "neither the token nor the key is stored in the clear")
    c.eq(oct(os.stat(os.path.join(data, "master.key")).st_mode & 0o777), "0o600",
         "master.key is created with mode 0600")
    info = json.loads(sp("device", "show", "cli-01", "--json").stdout)
    c.eq((info["name"], info["tags"], info["params"]),
         ("Pump", {"site": "north"}, {"interval": "60"}), "name, tags and params recorded")

    fails(["device", "add", "cli-01"], ["cli-01", "already exists"], "duplicate serial")
    fails(["device", "add", "x", "--cipher", "aes-512"], ["unknown cipher", "aes-512"],
          "bad cipher name")
    fails(["device", "add", "bad serial"], ["bad serial"], "bad serial")
    fails(["device", "show", "ghost"], ["unknown device", "ghost"], "unknown serial (show)")
    fails(["device", "rm", "ghost"], ["unknown device", "ghost"], "unknown serial (rm)")
    fails(["token", "add", "ghost"], ["unknown device", "ghost"], "unknown serial (token add)")
    fails(["key", "rotate", "ghost"], ["ghost"], "unknown serial (key rotate)")
    fails(["key", "rotate", "cli-01", "--cipher", "rot13"], ["unknown cipher", "rot13"],
          "bad cipher name (key rotate)")
    fails(["token", "revoke", "cli-01", "nosuch"], ["nosuch"], "unknown token")
    fails(["frobnicate"], ["unknown command", "frobnicate"], "unknown command")
    fails(["run", "--bogus"], ["unknown option", "--bogus"], "unknown option")

    tok = json.loads(sp("token", "add", "cli-01", "--name", "field", "--perm", "write",
                        "--expires", "3600", "--json").stdout)
    c.check(tok["token"] and tok["perm"] == "write" and tok["expires_at"],
            "token add --json prints the new token")
    r = sp("token", "revoke", "cli-01", "field")
    c.eq(r.returncode, 0, "token revoke by name")
    toks = json.loads(sp("token", "list", "cli-01", "--json").stdout)
    status = {t["name"]: t["status"] for t in toks["tokens"]}
    c.eq(status.get("field"), "revoked", "revoked token listed as revoked")

    new = json.loads(sp("key", "rotate", "cli-01", "--cipher", "aes-128-gcm", "--json").stdout)
    c.eq((new["cipher"], len(new["key"])), ("aes-128-gcm", 32), "key rotate prints a new key")
    c.check(new["key"] != dev["key"], "the rotated key differs")

    c.eq(sp("device", "rm", "cli-01").returncode, 0, "device rm")
    fails(["device", "show", "cli-01"], ["unknown device"], "removed device is gone")


if __name__ == "__main__":
    sys.exit(h.run(test))
