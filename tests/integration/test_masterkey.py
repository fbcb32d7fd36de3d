"""master.key problems are named, never mistaken for device errors: a missing
master key stops `sealpipe run` at start with a clear error, and a master key
that does not open the stored device keys dead-letters envelopes as
auth_failed with a detail naming master.key while other data still flows."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402


def test(c, tmp, started):
    sp = h.Sealpipe(tmp)
    enc = sp.add_device("enc-01", "--cipher", "chacha20-poly1305")
    sp.add_device("plain-01", "--cipher", "none")
    master = os.path.join(sp.data, "master.key")

    os.rename(master, master + ".bak")
    r = subprocess.run([h.SEALPIPE, "run", "--data-dir", sp.data, "--port", str(sp.port)],
                       capture_output=True, text=True, timeout=20)
    c.check(r.returncode != 0, f"run refuses to start without master.key (exit {r.returncode})")
    c.check("restore it from a backup" in r.stderr, f"error says what to do: {r.stderr.strip()}")
    c.check(not os.path.exists(master), "no new master.key was created over the lost one")

    with open(master, "wb") as f:  # a different key: the stored ones no longer open
        f.write(os.urandom(32))
    os.chmod(master, 0o600)
    sp.start()
    started.append(sp)
    body = subprocess.run([h.DEVICE, "seal", "--serial", "enc-01", "--key", enc["key"],
                           "--cipher", enc["cipher"], "--auth-hash", enc["auth_hash"],
                           "--counter", "1", "[n:=1]"], capture_output=True, check=True).stdout
    sp.pub("$tips/enc-01/push", body, creds=sp.creds(enc))
    sp.pub("$tip/plain-01/push", b"[n:=2]", creds=sp.creds("plain-01"))
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters") >= 1 and
               sp.count("SELECT count(*) n FROM data") >= 1, what="both messages handled")
    dead = sp.rows("SELECT reason, detail FROM dead_letters")
    c.eq([d["reason"] for d in dead], ["auth_failed"], "envelope dead-lettered as auth_failed")
    c.check("master.key" in dead[0]["detail"], f"detail names master.key: {dead[0]['detail']}")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE device='plain-01'"), 1,
         "other devices' data still stored")
    c.eq(sp.stop(), 0, "daemon stops cleanly")


if __name__ == "__main__":
    sys.exit(h.run(test))
