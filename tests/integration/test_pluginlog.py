"""What a client chooses cannot forge a line of the broker's log: a CONNECT
whose client id or username holds a newline, a C1 NEL (U+0085, a line break
for some log readers) or an ESC is refused by mosquitto itself as a protocol
error (MQTT's UTF-8 rules, docs/facts.md), before the broker plugin sees it,
and no raw control byte reaches mosquitto's log. The plugin's own escaping
(log_field) is the second line of defence behind this one. Nor can a
client fill the data disk through that log: a device looping on a denied
publish gets a burst of 200 lines, then at most 20 a second, and a count
of the rest."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

FORGED = ["x\n2030-01-01 forged", "nel\u0085forged", "esc\x1b[2Jforged"]


def attempt(sp, client_id, username):
    """Connects once; returns (CONNACK code or None, disconnect code or None)."""
    got = {}
    cl = sp.client(("Token", "not-a-token"), client_id=client_id)
    cl.username_pw_set(username, "not-a-token")
    cl.on_connect = lambda cl_, ud, flags, rc: got.setdefault("connack", rc)
    cl.on_disconnect = lambda cl_, ud, rc: got.setdefault("disconnect", rc)
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    h.wait_for(lambda: got, timeout=5, what="an answer to the CONNECT")
    time.sleep(0.1)
    cl.loop_stop()
    return got.get("connack"), got.get("disconnect")


def test(c, tmp, started):
    sp = h.Sealpipe(tmp)
    sp.start()
    started.append(sp)
    for f in FORGED:
        for cid, user in (("cid-" + f, "user"), ("cid-ok", "user-" + f)):
            connack, _ = attempt(sp, cid, user)
            c.check(connack is None, f"CONNECT refused before any CONNACK: {cid!r} / {user!r}")
    # A plain refused login is logged by the plugin, so the log is being read.
    connack, _ = attempt(sp, "cid-plain", "user-plain")
    c.check(connack not in (None, 0), f"a plain bad login gets a refusing CONNACK: {connack}")
    path = os.path.join(sp.data, "broker", "mosquitto.log")
    h.wait_for(lambda: b"sealpipe: refused client" in open(path, "rb").read(),
               what="the plugin's refused-login line")
    raw = open(path, "rb").read()
    c.check(b"forged" not in raw, "no forged text in the broker log")
    c.check(not any(b in raw for b in (b"\xc2\x85", b"\x1b")), "no raw NEL or ESC in the log")
    flood(c, sp, path)


def flood(c, sp, path):
    """5,000 denied publishes (another device's $tip topic) in a burst."""
    sp.add_device("flood-a")
    sp.add_device("flood-b")
    cl = sp.client(sp.creds("flood-a"), client_id="flood-a")
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    before = open(path, "rb").read().count(b"sealpipe: denied publish")
    t0 = time.monotonic()
    for i in range(5000):
        cl.publish("$tip/flood-b/push", b"[x:=1]", qos=0)
    time.sleep(1.5)  # the second after the burst, whose count line says what was dropped
    cl.publish("$tip/flood-b/push", b"[x:=1]", qos=0)
    secs = time.monotonic() - t0
    h.wait_for(lambda: b"not logged (at most 20 lines a second)" in open(path, "rb").read(),
               what="the count of the lines not logged")
    cl.loop_stop()
    cl.disconnect()
    lines = open(path, "rb").read().count(b"sealpipe: denied publish") - before
    c.check(0 < lines <= 200 + 20 * (secs + 2),
            f"a flood of 5,000 denials logs {lines} lines in {secs:.1f} s, not 5,000")


if __name__ == "__main__":
    sys.exit(h.run(test))
