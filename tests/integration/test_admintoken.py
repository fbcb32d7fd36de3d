"""`sealpipe admin token add|list|revoke` (issue #16, point 1): the tokens of
the daemon's HTTP API, from the outside. Checked: a token is printed once and
only its SHA-256 is kept (the database files never hold it); names are
unique; --perm full|read; list shows name, prefix, perm and status, never the
token; revoke by name or prefix, and unknown or bad input exits 1 or 2 with
a clear message."""

import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402


def db_bytes(sp):
    out = b""
    for suffix in ("", "-wal"):
        p = os.path.join(sp.data, "sealpipe.db" + suffix)
        if os.path.exists(p):
            with open(p, "rb") as f:
                out += f.read()
    return out


def test(c, tmp, started):
    sp = h.Sealpipe(tmp)
    ops = json.loads(sp.cli("admin", "token", "add", "--name", "ops", "--json").stdout)
    ro = json.loads(sp.cli("admin", "token", "add", "--perm", "read", "--json").stdout)
    c.eq((ops["name"], ops["perm"], ro["perm"], ro["name"]), ("ops", "full", "read", ro["token"][:8]),
         "added: names (default: the prefix) and perms")
    raw = db_bytes(sp)
    c.check(ops["token"].encode() not in raw and ro["token"].encode() not in raw,
            "the database never holds a token")
    c.eq(sp.count("SELECT count(*) n FROM admin_tokens WHERE token_hash = ?",
                  hashlib.sha256(ops["token"].encode()).digest()), 1, "its SHA-256 is kept")

    r = sp.cli("admin", "token", "add", "--name", "ops", check=False)
    c.check(r.returncode == 1 and "an admin token named ops exists" in r.stderr,
            f"a name is unique: {r.stderr!r}")
    r = sp.cli("admin", "token", "add", "--perm", "write", check=False)
    c.check(r.returncode == 1 and "valid: full, read" in r.stderr, f"--perm full|read: {r.stderr!r}")

    listed = sp.cli("admin", "token", "list").stdout
    c.check("ops" in listed and ops["token"][:8] in listed and ops["token"] not in listed,
            "list: names and prefixes, never the token:\n" + listed)
    c.check(sp.cli("admin", "token", "revoke", "ops").returncode == 0, "revoke by name")
    c.check(sp.cli("admin", "token", "revoke", ro["token"][:8]).returncode == 0, "revoke by prefix")
    tokens = json.loads(sp.cli("admin", "token", "list", "--json").stdout)["tokens"]
    c.eq(sorted((t["name"], t["status"]) for t in tokens),
         sorted([("ops", "revoked"), (ro["name"], "revoked")]), "both revoked")
    r = sp.cli("admin", "token", "revoke", "nothing", check=False)
    c.check(r.returncode == 1 and "no admin token named or prefixed nothing" in r.stderr,
            f"an unknown token: {r.stderr!r}")
    r = sp.cli("admin", "tokens", check=False)
    c.check(r.returncode == 2 and "usage: sealpipe admin token" in r.stderr,
            f"a wrong subcommand: usage, exit 2 ({r.stderr!r})")


if __name__ == "__main__":
    sys.exit(h.run(test))
