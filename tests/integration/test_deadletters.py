"""Every failure is stored as a dead letter with its reason and the original
bytes, and the daemon goes on: unknown device, bad envelope, authentication
failure, replay, plaintext from an encryption-only device, invalid body,
analysis error, analysis timeout, oversized payload."""

import os
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

ANALYSES = os.path.join(os.path.dirname(__file__), "analyses")


def seal(dev, body, counter, key=None, serial=None):
    serial = serial or dev["serial"]
    r = subprocess.run([h.DEVICE, "seal", "--serial", serial, "--key", key or dev["key"],
                        "--cipher", dev["cipher"], "--auth-hash", dev["auth_hash"],
                        "--counter", str(counter), body],
                       capture_output=True)
    if r.returncode != 0:
        raise AssertionError(f"seal failed: {r.stderr!r}")
    return r.stdout


def ids_never_reused(c, sp, creds):
    """A dead letter's id is never given again (review: the console's Retry of
    a row whose dead letter had been retried away retried another message,
    which got its id: SQLite gives max(id) + 1)."""
    def newest():
        return sp.count("SELECT coalesce(max(id), 0) n FROM dead_letters")

    before = newest()
    sp.pub("$tip/plain-01/push", b"[bad", creds=creds)
    h.wait_for(lambda: newest() > before, what="a dead letter")
    gone = newest()
    db = sp.db()
    db.execute("DELETE FROM dead_letters WHERE id = ?", (gone,))  # as a successful retry does
    db.commit()
    db.close()
    sp.pub("$tip/plain-01/push", b"[bad again", creds=creds)
    h.wait_for(lambda: newest() > before, what="the next dead letter")
    c.check(newest() == gone + 1,
            f"the newest dead letter deleted, the next one gets a new id ({gone} -> {newest()})")


def ids_seeded_on_upgrade(c, tmp):
    """A bucket of a version without dead_letter_ids: the schema seeds it
    from the highest id still to be seen, a dead letter's or a pending retry
    request's (review: seeding from dead_letters alone gave a requested,
    then stored, id again)."""
    with open(os.path.join(h.SOURCE, "schemas", "bucket.sql")) as f:
        schema = f.read()
    db = sqlite3.connect(os.path.join(tmp, "old-bucket.db"))
    db.executescript(schema)
    db.executescript("DROP TRIGGER dead_letters_ids; DROP TABLE dead_letter_ids;"
                     "INSERT INTO dead_letters (id, received_at, reason) VALUES (2, 1, 'x');"
                     "INSERT INTO dead_letter_retries (dead_letter_id, requested_at) VALUES (5, 1);")
    db.executescript(schema)
    c.eq(db.execute("SELECT last FROM dead_letter_ids").fetchall(), [(5,)],
         "upgraded: dead_letter_ids starts at the highest id still to be seen")
    db.executescript(schema)  # every start runs it: seeded once
    c.eq(db.execute("SELECT count(*) FROM dead_letter_ids").fetchone()[0], 1, "one row, once")
    db.close()


def test(c, tmp, started):
    sp = h.Sealpipe(tmp, analyses=ANALYSES,
                    extra=["--lua-instructions", "100000", "--lua-error-budget", "0"])
    enc = sp.add_device("enc-01", "--cipher", "chacha20-poly1305", "--require-encryption")
    plain = sp.add_device("plain-01", "--cipher", "none")
    sp.start()
    started.append(sp)
    e, p = sp.creds(enc), sp.creds(plain)
    # No device can publish for a serial that does not exist: the broker's ACL
    # keeps it to its own $tip topics, and the identity stamp puts its data on
    # other topics in its own bucket. The daemon's login stands in for a
    # broker without the plugin (--broker), where the topic names the device,
    # to reach the daemon's unknown_device path.
    nobody = sp.daemon_creds()

    cases = []  # (topic, payload, reason, who publishes)
    good = seal(enc, "[n:=1]", 100)
    cases.append(("$tips/enc-01/push", good, None, e))
    cases.append(("$tips/enc-01/push", good, "replay", e))                   # same bytes again
    cases.append(("$tips/enc-01/push", seal(enc, "[n:=2]", 50), "replay", e))  # older counter
    cases.append(("$tips/ghost/push", seal(enc, "[n:=3]", 1, serial="ghost"), "unknown_device",
                  nobody))
    cases.append(("$tips/enc-01/push", seal(enc, "[n:=4]", 101, key="00" * 32), "auth_failed", e))
    bad_version = bytearray(seal(enc, "[n:=5]", 102))
    bad_version[0] |= 0x08
    cases.append(("$tips/enc-01/push", bytes(bad_version), "bad_envelope", e))
    cases.append(("$tips/enc-01/push", b"short", "bad_envelope", e))
    cases.append(("$tips/enc-01/push",
                  h.seal_chacha(enc["key"], enc["auth_hash"], "enc-01", "[temp:=abc]", 103),
                  "invalid_body", e))
    cases.append(("$tips/enc-01/push",
                  h.seal_chacha(enc["key"], enc["auth_hash"], "enc-01", "[pynacl:=1]", 104), None,
                  e))
    cases.append(("$tip/enc-01/push", b"[n:=6]", "plaintext_refused", e))
    cases.append(("$tip/nobody/push", b"[n:=7]", "unknown_device", nobody))
    cases.append(("$tip/plain-01/push", b"[temp:=01]", "invalid_body", p))
    cases.append(("devices/plain-01/data", b'{"variable":"bad name","value":1}', "invalid_body", p))
    cases.append(("devices/ghost/data", b'{"variable":"x","value":1}', "unknown_device", nobody))
    cases.append(("broken/plain-01", b"x", "analysis_error", p))
    cases.append(("spin/plain-01", b"x", "timeout", p))
    cases.append(("devices/plain-01/data", bytes(range(256)) * 1200, "too_large", p))
    # A burst of large messages (over the batch arena's read limit) still flows.
    for i in range(80):
        cases.append(("devices/plain-01/data",
                      b'{"variable":"big","value":"%s"}' % (b"v" * 6000), None, p))
    # 80 MB of oversized payloads, more than the batch arena (64 MB) holds:
    # only their heads are kept, and a batch stops reading at a quarter of it.
    for i in range(80):
        cases.append(("devices/plain-01/data", b"%d" % i * (1024 * 1024 // 2), "too_large", p))
    for i in range(12):
        cases.append(("devices/plain-01/data", b"z" * (250 * 1024), "analysis_error", p))
    cases.append(("devices/plain-01/data", b'{"variable":"after","value":1}', None, p))

    for topic, payload, _, who in cases:
        sp.pub(topic, payload, creds=who)
    expected_dead = [x for x in cases if x[2]]
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters") >= len(expected_dead)
               and sp.count("SELECT count(*) n FROM data WHERE variable='after'") == 1,
               timeout=90, what="all messages handled")  # slow under ASan
    dead = sp.rows("SELECT topic, reason, detail, payload FROM dead_letters ORDER BY id")
    c.eq(len(dead), len(expected_dead), "one dead letter per bad message")
    for (topic, payload, reason, _), row in zip(expected_dead, dead):
        c.eq((row["topic"], row["reason"]), (topic, reason), f"reason for {topic}")
        if reason == "too_large":  # only the head of an oversized payload is kept
            c.check(bytes(row["payload"]) == payload[:256 * 1024] and
                    str(len(payload)) in row["detail"], f"first 256 KiB kept for {reason}")
        else:
            c.check(bytes(row["payload"]) == payload, f"original bytes kept for {reason}")
        c.check(len(row["detail"] or "") > 0, f"detail given for {reason}: {row['detail']}")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE device='enc-01' AND variable='n'"), 1,
         "the genuine envelope stored once")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable='pynacl'"), 1,
         "an envelope sealed by PyNaCl (independent implementation) is opened")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable='after'"), 1,
         "a good message after all the bad ones still arrives")
    c.check(sp.proc.poll() is None, "daemon still running")
    ids_never_reused(c, sp, p)
    ids_seeded_on_upgrade(c, tmp)
    sp.stop()
    log = sp.read_log()
    c.check("dead.replay=2" in log and "dead.timeout=1" in log,
            "stats line counts dead letters per reason")


if __name__ == "__main__":
    sys.exit(h.run(test))
