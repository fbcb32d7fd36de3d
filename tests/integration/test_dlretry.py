"""sealpipe dead-letter list|show|retry (issue #14, point 6): real devices'
messages dead-lettered by a broken analysis, a missing key and a replay; the
analysis fixed (the daemon reloads it) and the key rotated; retries through
the running daemon store each message exactly once, also when asked twice,
while no daemon runs, over HTTP and UDP, and across a kill -9 mid-retry; a
retry that fails again keeps its dead letter with the new reason; a replay is
refused without --force."""

import base64
import json
import os
import signal
import socket
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

TOKEN = "at" + "5e" * 16

BROKEN = """return {
  topics = { "sensors/{serial}/raw" },
  handle = function(msg) error("decoder bug") end,
}
"""
SPINS = """return {
  topics = { "sensors/{serial}/raw" },
  handle = function(msg) while true do end end,
}
"""
FIXED = """-- 2 bytes big-endian temperature * 100, 1 byte humidity; also TagoTiP's >x passthrough.
return {
  topics = { "sensors/{serial}/raw" },
  handle = function(msg)
    local bytes = msg.payload
    local p = msg.records[1]
    if p and p.variable == "payload" and msg.topic:sub(1, 1) == "$" then
      bytes = hex.decode(p.value)
    end
    local t, hum = string.unpack(">i2B", bytes)
    return {
      { variable = "temperature", value = t / 100 },
      { variable = "humidity", value = hum },
    }
  end,
}
"""


def frame(centi, hum=40):
    return struct.pack(">hB", centi, hum)


def test(c, tmp, started):
    analyses = os.path.join(tmp, "analyses")
    os.makedirs(analyses)
    decoder = os.path.join(analyses, "decoder.lua")

    def write_decoder(text):
        sp.reload_analysis("decoder", text)

    with open(decoder, "w") as f:
        f.write(BROKEN)
    sp = h.Sealpipe(tmp, analyses=analyses, net=True,
                    extra=["--lua-instructions", "2000000", "--lua-error-budget", "0"])
    sp.cli("profile", "add", "p", "--token", TOKEN)
    d1 = sp.add_device("dev-01", "--cipher", "none", "--profile", "p")
    sp.add_device("dev-02", "--cipher", "none", "--profile", "p")
    d3 = sp.add_device("dev-03", "--cipher", "none", "--profile", "p", "--parser", "decoder")
    enc = sp.add_device("enc-01", "--cipher", "chacha20-poly1305", "--profile", "p")

    def dl(*args, check=False):
        return sp.cli("dead-letter", *args, check=check)

    r = dl("list")
    c.check(r.returncode == 1 and "never run" in r.stderr, f"before the first start: {r.stderr!r}")
    sp.start()
    started.append(sp)

    def dead(sql="1", *params):
        return sp.count(f"SELECT count(*) n FROM dead_letters WHERE {sql}", *params)

    def temps(centi):
        return sp.count("SELECT count(*) n FROM data WHERE variable='temperature' AND value=?",
                        centi / 100)

    # ---- dead letters from a broken analysis -------------------------------
    for i in range(3):
        sp.pub("sensors/dev-01/raw", frame(2100 + i))
    sp.pub("sensors/dev-02/raw", frame(2200))
    binary = b"\x00\xfe"  # too short for the decoder, and not text
    sp.pub("sensors/dev-01/raw", binary)
    h.wait_for(lambda: dead() == 5, what="5 dead letters")

    # ---- list and show -------------------------------------------------------
    r = dl("list", "--json")
    rows = json.loads(r.stdout) if r.returncode == 0 else []
    c.eq(len(rows), 5, "list --json: every dead letter")
    c.check(all(a["id"] > b["id"] for a, b in zip(rows, rows[1:])), "list: newest first")
    c.check(all(set(x) >= {"id", "time", "device", "reason", "topic", "size", "detail"}
                for x in rows), "list --json: every column")
    c.eq({x["reason"] for x in rows}, {"analysis_error"}, "the reason of each")
    c.eq(len(json.loads(dl("list", "--json", "--device", "dev-02").stdout)), 1,
         "list --device")
    c.eq(len(json.loads(dl("list", "--json", "--reason", "replay").stdout)), 0, "list --reason")
    c.eq(len(json.loads(dl("list", "--json", "--since", "10m").stdout)), 5, "list --since 10m")
    c.eq(len(json.loads(dl("list", "--json", "--since", "2099-01-01T00:00Z").stdout)), 0,
         "list --since a future ISO time")
    c.eq(len(json.loads(dl("list", "--json", "--limit", "2").stdout)), 2, "list --limit 2")
    r = dl("list")
    c.check(r.returncode == 0 and r.stdout.startswith("ID") and "decoder bug" in r.stdout
            and "sensors/dev-02/raw" in r.stdout, f"list as a table: {r.stdout[:300]!r}")
    r = dl("list", "--since", "yesterday")
    c.check(r.returncode == 2 and "--since" in r.stderr, f"a bad --since: {r.stderr!r}")
    r = dl("list", "--limit", "0")
    c.eq(r.returncode, 2, "a bad --limit")
    bin_id = rows[0]["id"]
    r = dl("show", str(bin_id))
    c.check(r.returncode == 0 and "payload (hex, 2 bytes)" in r.stdout
            and "00fe" in r.stdout, f"show: a binary payload in hex: {r.stdout!r}")
    one = json.loads(dl("show", str(bin_id), "--json").stdout)
    c.eq(base64.b64decode(one["payload_base64"]), binary, "show --json: the payload in base64")
    r = dl("show", "99999")
    c.check(r.returncode == 1 and "no such dead letter" in r.stderr, "show: an unknown id")
    r = dl("show", "abc")
    c.eq(r.returncode, 2, "show: not an id")
    r = dl("retry")
    c.check(r.returncode == 2 and "--reason" in r.stderr, f"retry without a selection: {r.stderr!r}")

    # ---- a retry that fails again keeps its dead letter, with the new reason
    first = rows[-1]["id"]  # dev-01's first frame
    write_decoder(SPINS)
    r = dl("retry", str(first), "--wait")
    c.check(r.returncode == 1 and f"{first} failed again: timeout" in r.stdout,
            f"retry that fails again: {r.stdout!r} {r.stderr!r}")
    row = sp.rows("SELECT reason, retries, first_reason FROM dead_letters WHERE id=?", first)
    c.eq([tuple(x.values()) for x in row], [("timeout", 1, "analysis_error")],
         "the same id, the new reason, one failed retry, the first reason")
    c.eq(sp.count("SELECT count(*) n FROM dead_letter_retries"), 0, "the request is done")

    # ---- HTTP and UDP dead letters (dev-03's parser is the broken decoder) --
    env = dict(os.environ, XDG_STATE_HOME=os.path.join(tmp, "state"))
    for transport, port, body in (("http", sp.http_port, ">x0a8c32"),
                                  ("udp", sp.udp_port, ">x0af032")):
        r = subprocess.run([h.DEVICE, "push", "--transport", transport, "--serial", "dev-03",
                            "--port", str(port), "--timeout", "10", "--auth-hash",
                            d3["auth_hash"], body], capture_output=True, text=True, env=env,
                           timeout=60)
    h.wait_for(lambda: dead("device='dev-03'") == 2, what="dev-03's two dead letters")
    c.eq(sorted(x["topic"] for x in sp.rows("SELECT topic FROM dead_letters "
                                            "WHERE device='dev-03'")),
         ["$tip", "$tip/dev-03/push"], "HTTP keeps its MQTT topic, UDP's frame is '$tip'")

    # ---- fixed: retry one, then the same one again ----------------------------
    write_decoder(FIXED)
    r = dl("retry", str(first), "--wait")
    c.check(r.returncode == 0 and f"{first} stored" in r.stdout, f"retry stored: {r.stdout!r}")
    c.eq(temps(2100), 1, "the retried message is stored once")
    c.eq(dead("id=?", first), 0, "its dead letter is gone")
    r = dl("retry", str(first))
    c.check(r.returncode == 1 and "no such dead letter" in r.stderr,
            f"retrying it again: {r.stderr!r}")
    r = dl("retry", "--device", "dev-02", "--wait", "--json")
    out = json.loads(r.stdout) if r.returncode == 0 else {}
    c.eq([o["outcome"] for o in out.get("outcomes", [])], ["stored"], "retry --device --json")
    c.eq(temps(2200), 1, "dev-02's message stored once")
    r = dl("retry", "--device", "dev-03", "--wait")
    c.check(r.returncode == 0 and r.stdout.count("stored") == 2,
            f"HTTP's and UDP's dead letters retried: {r.stdout!r} {r.stderr!r}")
    c.eq(temps(2700) + temps(2800), 2, "both stored once")
    # The binary one still fails (too short for the decoder): it stays.
    r = dl("retry", "--reason", "analysis_error", "--wait")
    c.check(r.returncode == 1 and r.stdout.count(" stored") == 2 and "failed again" in r.stdout,
            f"retry --reason: {r.stdout!r}")
    c.eq(temps(2101) + temps(2102), 2, "dev-01's other frames stored once each")
    c.eq(dead(), 1, "only the binary payload is left")

    # ---- asked twice while no daemon runs ------------------------------------
    sp.stop()
    r1, r2 = dl("retry", str(bin_id)), dl("retry", str(bin_id))
    c.check(r1.returncode == 0 and "no daemon is running" in r1.stdout,
            f"retry without a daemon waits for it: {r1.stdout!r}")
    c.eq(r2.returncode, 0, "asked again")
    c.eq(sp.count("SELECT count(*) n FROM dead_letter_retries"), 1, "asking twice is asking once")
    with open(decoder, "w") as f:  # this one takes anything: the binary payload is stored
        f.write(FIXED.replace('">i2B", bytes)', '">i2B", bytes .. "\\0\\0\\0")'))
    sp.start()
    h.wait_for(lambda: dead() == 0, what="the retry after the restart")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE device='dev-01' AND variable='humidity'"),
         4, "stored once after the restart")

    # ---- encrypted: a key that was missing, then a replay --------------------
    scratch = os.path.join(tmp, "scratch")
    subprocess.run([h.SEALPIPE, "profile", "add", "p", "--token", TOKEN, "--data-dir", scratch],
                   check=True, capture_output=True)
    derived = json.loads(subprocess.run(
        [h.SEALPIPE, "device", "add", "enc-01", "--profile", "p", "--derive-key", "--token", TOKEN,
         "--cipher", "chacha20-poly1305", "--json", "--data-dir", scratch],
        check=True, capture_output=True, text=True).stdout)["key"]
    e = sp.creds(enc)
    early = h.device_seal(enc, derived, "[seal:=7]", 7)  # a key the daemon does not have yet
    good = h.device_seal(enc, enc["key"], "[seal:=10]", 10)
    for _ in range(3):  # the device sends it again and again: one envelope, 3 dead letters
        sp.pub("$tips/enc-01/push", early, creds=e)
    sp.pub("$tips/enc-01/push", good, creds=e)
    sp.pub("$tips/enc-01/push", good, creds=e)  # the same envelope again: a replay
    h.wait_for(lambda: dead() == 4, what="auth_failed and replay dead letters")
    auth_ids = [x["id"] for x in sp.rows("SELECT id FROM dead_letters WHERE reason='auth_failed'"
                                         " ORDER BY id")]
    c.eq(len(auth_ids), 3, "the envelope sent three times is three auth_failed dead letters")
    r = dl("list", "--device", "enc-01", "--reason", "auth_failed", "--json")
    c.eq(len(json.loads(r.stdout)), 3,
         "they are the device's (its login sent them): list --device finds them")
    auth_id = auth_ids[0]
    replay_id = sp.rows("SELECT id FROM dead_letters WHERE reason='replay'")[0]["id"]
    r = dl("retry", str(auth_id), "--wait")
    c.check(r.returncode == 1 and "failed again: auth_failed" in r.stdout,
            f"before the key is there it fails again: {r.stdout!r}")
    sp.cli("key", "rotate", "enc-01", "--derive-key", "--token", TOKEN)
    r = dl("retry", "--reason", "auth_failed", "--wait")
    c.check(r.returncode == 0 and r.stdout.count(" stored") == 3 and "failed" not in r.stdout,
            f"after key rotate: {r.stdout!r}")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable='seal' AND value=7"), 1,
         "the envelope with the older counter, dead-lettered 3 times, is stored once")
    c.eq(dead("reason='auth_failed'"), 0, "its three dead letters are gone")
    c.eq(sp.count("SELECT count(*) n FROM dead_letter_retries"), 0, "and their requests")
    # device_counters takes the counters at the daemon's next fold (devstate.h).
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM device_status_pending") == 0,
               what="the counters folded")
    c.eq(sp.rows("SELECT last_counter FROM device_counters WHERE serial='enc-01'")[0]
         ["last_counter"], 10, "the device's counter is not moved back")
    st = json.loads(sp.cli("device", "show", "enc-01", "--json").stdout)["status"]
    c.eq((st["messages"], st["dead_letters"], st["records"]), (5, 4, 2),
         "device status: 5 messages, 4 dead letters as they happened, the retry's record added")
    r = dl("retry", str(replay_id))
    c.check(r.returncode == 1 and "replay" in r.stderr and "--force" in r.stderr,
            f"a replay is refused: {r.stderr!r}")
    r = dl("retry", "--reason", "replay")
    c.check(r.returncode == 1 and "skipped" in r.stderr, "also in a selection")
    c.eq(sp.count("SELECT count(*) n FROM dead_letter_retries"), 0, "nothing queued for it")
    r = dl("show", str(replay_id))
    c.check("only with --force" in r.stdout, f"show says why: {r.stdout!r}")
    good11 = h.device_seal(enc, derived, "[seal:=11]", 11)
    sp.pub("$tips/enc-01/push", good11, creds=e)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='seal' AND value=11")
               == 1, what="a new envelope after the retry")
    c.eq(dead(), 1, "new envelopes are still checked: only the replay is left")
    r = dl("retry", str(replay_id), "--force", "--wait")
    c.check(r.returncode == 0 and "stored" in r.stdout and "warning" in r.stderr
            and "stored twice" in r.stderr, f"--force retries it, with a warning: {r.stderr!r}")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable='seal' AND value=10"), 2,
         "--force: the replayed copy is stored (as the warning says)")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM device_status_pending") == 0,
               what="the counters folded")
    c.eq(sp.rows("SELECT last_counter FROM device_counters WHERE serial='enc-01'")[0]
         ["last_counter"], 11, "the counter stays where it was")

    # A whole envelope over UDP (topic "$tips") runs with its own binding:
    # its key is checked again. An older counter makes it a replay.
    old = h.device_seal(enc, derived, "[seal:=5]", 5)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.sendto(old, ("127.0.0.1", sp.udp_port))
        s.recvfrom(2048)
    h.wait_for(lambda: dead("topic='$tips'") == 1, what="a replay over UDP")
    udp_id = sp.rows("SELECT id FROM dead_letters WHERE topic='$tips'")[0]["id"]
    r = dl("retry", str(udp_id), "--force", "--wait")
    c.check(r.returncode == 0 and f"{udp_id} stored" in r.stdout,
            f"a UDP envelope retried: {r.stdout!r} {r.stderr!r}")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable='seal' AND value=5"), 1,
         "stored once")

    # A profile context may publish for a serial no device has: no device is
    # recorded, and a retry would trust the topic's serial, so it is refused.
    sp.pub("$tip/ghost-9/push", b"[n:=1]", creds=sp.profile_creds(d1))
    h.wait_for(lambda: dead("reason='unknown_device'") == 1, what="an unknown_device dead letter")
    ghost = sp.rows("SELECT id FROM dead_letters WHERE reason='unknown_device'")[0]["id"]
    sp.add_device("ghost-9", "--cipher", "none")
    r = dl("retry", str(ghost))
    c.check(r.returncode == 1 and "does not record which device" in r.stderr,
            f"no device recorded: refused: {r.stderr!r}")

    # ---- kill -9 mid-retry ---------------------------------------------------
    n = 400
    write_decoder(BROKEN)
    cl = sp.client(sp.creds(d1))
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    infos = [cl.publish("sensors/dev-01/raw", frame(3000 + i), qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(10)
    cl.loop_stop()
    cl.disconnect()
    h.wait_for(lambda: dead("reason='analysis_error'") == n, timeout=60, what=f"{n} dead letters")
    # Slower (a millisecond or so a message), so that the kill lands mid-way.
    write_decoder(FIXED.replace("local bytes", "for _ = 1, 100000 do end\n    local bytes"))
    r = dl("retry", "--reason", "analysis_error")
    c.check(r.returncode == 0 and f"queued: {n}" in r.stdout, f"queued {n}: {r.stdout!r}")
    r = dl("retry", "--reason", "analysis_error")  # again, while the first ones run
    c.eq(r.returncode, 0, "asked again while they run")
    h.wait_for(lambda: dead("reason='analysis_error'") < n, timeout=20, interval=0.005,
               what="the first retries")
    sp.proc.send_signal(signal.SIGKILL)
    sp.proc.wait()
    left = dead("reason='analysis_error'")
    print(f"killed with {left} of {n} dead letters left")
    c.check(0 < left < n, f"killed mid-retry ({left} of {n} left)")
    stored_now = {round(x["value"] * 100) for x in sp.rows(
        "SELECT value FROM data WHERE variable='temperature' AND value >= 30")}
    dead_now = {struct.unpack(">hB", bytes(x["payload"]))[0] for x in sp.rows(
        "SELECT payload FROM dead_letters WHERE reason='analysis_error'")}
    c.check(not (stored_now & dead_now) and stored_now | dead_now == set(range(3000, 3000 + n)),
            "after the kill each message is stored or a dead letter, never both or neither")
    sp.stop()
    sp.start()
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letter_retries") == 0, timeout=60,
               what="the rest after the restart")
    got = sp.rows("SELECT value, count(*) n FROM data WHERE variable='temperature' "
                  "AND value >= 30 GROUP BY value")
    c.eq(len(got), n, "every retried message stored")
    c.eq(max(x["n"] for x in got), 1, "each exactly once")
    c.eq(dead("reason='analysis_error'"), 0, "and their dead letters gone")


if __name__ == "__main__":
    sys.exit(h.run(test))
