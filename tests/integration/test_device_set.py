"""`sealpipe device set` changes a device without new secrets, and the running
daemon applies the change to the device's next message: require-encryption,
parser and counter mode, name, tags (merged: K=V sets one, K= removes it) and
params. --parser is checked in the daemon's analyses folder: a relative
--analyses-dir is taken from the running daemon's working directory, not the
shell's. Bad values, an unknown serial and nothing to change are refused."""

import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402


def cli_in(sp, cwd, *args):
    """sealpipe ARGS --data-dir DATA, run from cwd (without the harness's
    --analyses-dir, so that ARGS choose it)."""
    return subprocess.run([os.path.abspath(h.SEALPIPE), *args, "--data-dir", sp.data], cwd=cwd,
                          capture_output=True, text=True)


# A parser that stores what the daemon tells it about the device.
WHOAMI = """
return { handle = function(msg)
  return { { variable = "name", value = msg.device.name },
           { variable = "site", value = msg.device.tags.site or "-" } }
end }
"""


def test(c, tmp, started):
    analyses = os.path.join(tmp, "analyses")
    os.makedirs(analyses)
    shutil.copy(os.path.join(h.SOURCE, "analyses", "passthrough.lua"), analyses)
    with open(os.path.join(analyses, "whoami.lua"), "w") as f:
        f.write(WHOAMI)
    sp = h.Sealpipe(tmp, analyses=analyses)
    dev = sp.add_device("ds-1", "--tag", "site=north", "--tag", "room=a", "--param", "k=1")
    sp.start()
    started.append(sp)
    creds = sp.creds(dev)

    def stored(n):
        h.wait_for(lambda: sp.count("SELECT count(*) n FROM data") +
                   sp.count("SELECT count(*) n FROM dead_letters") >= n, what=f"{n} handled")

    sp.pub("$tip/ds-1/push", b">x0102ff00", creds=creds)
    stored(1)
    c.eq([r["variable"] for r in sp.rows("SELECT variable FROM data")], ["payload"],
         "without a parser, passthrough data is one payload record")

    # The parser, checked in the daemon's folder (absolute here).
    r = sp.cli("device", "set", "ds-1", "--parser", "passthrough", "--json")
    c.eq(json.loads(r.stdout)["changed"], {"parser": {"from": "-", "to": "passthrough"}},
         "--json says what changed")
    sp.pub("$tip/ds-1/push", b">x0102ff00", creds=creds)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data") >= 4, what="parsed")
    c.eq(sorted(r["variable"] for r in sp.rows("SELECT variable FROM data WHERE id > 1")),
         ["ch1", "ch2", "payload_size"], "the running daemon uses the new parser at once")

    # require-encryption: the next plaintext message is refused.
    sp.cli("device", "set", "ds-1", "--require-encryption", "on")
    sp.pub("$tip/ds-1/push", b"[t:=1]", creds=creds)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters") >= 1, what="refusal")
    c.eq([r["reason"] for r in sp.rows("SELECT reason FROM dead_letters")],
         ["plaintext_refused"], "require-encryption on applies to the next message")
    sp.push(dev, "[t:=2]")  # sealed still works: the key is untouched
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='t'") == 1,
               what="sealed message")
    sp.cli("device", "set", "ds-1", "--require-encryption", "off", "--parser", "none")
    sp.pub("$tip/ds-1/push", b"[t:=3]", creds=creds)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='t'") == 2,
               what="plaintext accepted again")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters"), 1, "off applies to the next message")

    # Counter mode: off accepts a counter that is not greater than the last.
    sp.cli("device", "set", "ds-1", "--counter", "off")
    sealed = h.device_seal(dev, dev["key"], "[t:=4]", 1)  # counter 1 < the push's counters
    sp.pub("$tips/ds-1/push", sealed, creds=creds)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='t'") == 3,
               what="counter off")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters"), 1, "no replay dead letter")

    # Name, tags merged, params; the analysis sees them through the device.
    r = sp.cli("device", "set", "ds-1", "--name", "Greenhouse 2", "--tag", "site=south",
               "--tag", "room=", "--tag", "floor=1", "--param", "k=2")
    c.check("name" in r.stdout and "-> Greenhouse 2" in r.stdout, "the change is printed")
    show = json.loads(sp.cli("device", "show", "ds-1", "--json").stdout)
    c.eq((show["name"], show["tags"], show["params"]),
         ("Greenhouse 2", {"site": "south", "floor": "1"}, {"k": "2"}),
         "tags merged (room= removes room), params set")
    c.eq(len(show["tokens"]), 1, "no new token")
    r = sp.cli("device", "set", "ds-1", "--name", "Greenhouse 2")
    c.check("nothing changed" in r.stdout, "setting the same value says nothing changed")

    def seen_by_parser(want, what):
        before = sp.count("SELECT count(*) n FROM data")
        sp.pub("$tip/ds-1/push", b">x00", creds=creds)
        h.wait_for(lambda: sp.count("SELECT count(*) n FROM data") >= before + 2, what=what)
        got = {r["variable"]: r["value"] for r in
               sp.rows("SELECT variable, value FROM data WHERE id > (SELECT max(id) - 2 FROM data)")}
        c.eq(got, want, what)

    sp.cli("device", "set", "ds-1", "--parser", "whoami")
    seen_by_parser({"name": "Greenhouse 2", "site": "south"}, "the parser sees the new name")
    sp.cli("device", "set", "ds-1", "--name", "Greenhouse 3", "--tag", "site=east")
    seen_by_parser({"name": "Greenhouse 3", "site": "east"},
                   "a name and tag changed while running reach the next message")

    # Without --analyses-dir the parser is looked for in the folder the daemon
    # runs with, whatever it was given (the review: a daemon started with an
    # absolute --analyses-dir had its folder ignored), from any directory.
    elsewhere = os.path.join(tmp, "elsewhere")
    os.makedirs(elsewhere)
    r = cli_in(sp, elsewhere, "device", "set", "ds-1", "--parser", "passthrough")
    c.eq(r.returncode, 0, f"the daemon's folder, from another directory: {r.stderr}")
    r = cli_in(sp, elsewhere, "device", "set", "ds-1", "--parser", "nosuch")
    c.check(r.returncode == 1 and "the folder the daemon runs with" in r.stderr and
            os.path.join(analyses, "nosuch.lua") in r.stderr,
            f"a missing parser names the path checked: {r.stderr!r}")

    # Two device set at once each keep the other's tag (the review lost 4 of
    # 120 when the merge was read in one command and written in the other).
    for i in range(20):
        ps = [subprocess.Popen([h.SEALPIPE, "device", "set", "ds-1", "--tag", f"{k}{i}=1",
                                "--data-dir", sp.data], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE) for k in ("a", "b")]
        for p in ps:
            p.wait()
    tags = json.loads(sp.cli("device", "show", "ds-1", "--json").stdout)["tags"]
    c.eq(sorted(k for k in tags if k[0] in "ab" and k[1:].isdigit()),
         sorted(f"{k}{i}" for i in range(20) for k in ("a", "b")),
         "40 tags set two at a time: none lost")
    sp.cli("device", "set", "ds-1", "--tag", "big1=" + "x" * 40000)
    r = sp.cli("device", "set", "ds-1", "--tag", "big2=" + "x" * 40000, check=False)
    c.check(r.returncode == 1 and "big2" not in json.loads(
        sp.cli("device", "show", "ds-1", "--json").stdout)["tags"],
        f"tags that would grow past 64 KiB are refused, nothing changed: {r.stderr.strip()!r}")
    sp.cli("device", "set", "ds-1", "--tag", "big1=")

    # Refusals.
    for args, rc, words in [
            (("device", "set", "ds-1"), 2, "nothing to change"),
            (("device", "set", "nope", "--name", "x"), 1, "unknown device nope"),
            (("device", "set", "ds-1", "--require-encryption", "yes"), 1, "valid: on, off"),
            (("device", "set", "ds-1", "--counter", "loose"), 1, "valid: strict, off"),
            (("device", "set", "ds-1", "--tag", "novalue"), 1, "expected key=value"),
            (("device", "set", "ds-1", "--name", ""), 1, "bad name")]:
        r = sp.cli(*args, check=False)
        c.check(r.returncode == rc and words in r.stderr,
                f"{' '.join(args)}: exit {r.returncode} {r.stderr.strip()!r}")
    plain = sp.add_device("ds-plain", "--cipher", "none")
    r = sp.cli("device", "set", plain["serial"], "--require-encryption", "on", check=False)
    c.check(r.returncode == 1 and "has no key" in r.stderr, f"no key: {r.stderr.strip()!r}")

    # Stopped, the folder it last ran with still counts; a folder given here is
    # taken from here, as every path on a command line is.
    sp.stop()
    r = cli_in(sp, elsewhere, "device", "set", "ds-1", "--parser", "whoami")
    c.eq(r.returncode, 0, f"the daemon's last folder, while it is stopped: {r.stderr}")
    r = cli_in(sp, elsewhere, "device", "set", "ds-1", "--parser", "passthrough",
               "--analyses-dir", "analyses")
    c.check(r.returncode == 1 and "given with --analyses-dir" in r.stderr and
            os.path.join(elsewhere, "analyses", "passthrough.lua") in r.stderr,
            f"a folder given here is taken from here, and named: {r.stderr.strip()!r}")


if __name__ == "__main__":
    sys.exit(h.run(test))
