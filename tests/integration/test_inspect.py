"""The Live Inspector and device status (issue #14, points 1-3), from the
outside: real devices log in through the broker plugin with their tokens,
publish with paho and mosquitto_pub, get refused and denied; `sealpipe
inspect` follows from another process, as a user would in another shell, and
`sealpipe device list|show` report the status.

Checked: every kind of event, each naming its device, in order; the JSON and
readable forms; --since with the kept events; plaintext only when asked;
connected/disconnected in device_status, also across a daemon kill -9 (the
broker lives on; what happened meanwhile comes with the plugin's roster) and a
clean stop (the embedded broker's devices are disconnected with it)."""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

ANALYSIS = """
return {
  topics = { "sensors/{serial}/data" },
  handle = function(msg)
    log("got", msg.payload)
    if msg.payload == "boom" then error("boom asked") end
    return { variable = "level", value = tonumber(msg.payload) }
  end,
}
"""


class Watcher:
    """`sealpipe inspect ARGS --json` in the background; its events in a queue."""

    def __init__(self, sp, *args):
        self.proc = subprocess.Popen([h.SEALPIPE, "inspect", *args, "--json", "--data-dir",
                                      sp.data], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.events = []
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.q.put(json.loads(line))

    def drain(self):
        while True:
            try:
                self.events.append(self.q.get_nowait())
            except queue.Empty:
                return self.events

    def wait(self, pred, what, timeout=10):
        h.wait_for(lambda: any(pred(e) for e in self.drain()), timeout=timeout, what=what)
        return [e for e in self.events if pred(e)]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=5)


def kinds(events, device=None):
    return [e["kind"] for e in events if device is None or e.get("device") == device]


def status(sp, serial):
    devs = json.loads(sp.cli("device", "list", "--json").stdout)["devices"]
    return next(d["status"] for d in devs if d["serial"] == serial)


def check_usage(c, sp):
    r = subprocess.run([h.SEALPIPE, "inspect", "--data-dir", sp.data], capture_output=True,
                       text=True)
    c.eq(r.returncode, 2, "inspect without a device or --all is a usage error")
    r = subprocess.run([h.SEALPIPE, "inspect", "--all", "--since", "yesterday", "--data-dir",
                        sp.data], capture_output=True, text=True)
    c.check(r.returncode == 2 and "--since" in r.stderr, "a bad --since is named")
    r = subprocess.run([h.SEALPIPE, "inspect", "--all", "--data-dir", sp.data], capture_output=True,
                       text=True)
    c.check(r.returncode == 1 and "cannot reach the daemon" in r.stderr,
            "no daemon: inspect says so and exits 1")
    for serial in ("nosuch", "x" * 5000):
        r = subprocess.run([h.SEALPIPE, "inspect", serial, "--data-dir", sp.data],
                           capture_output=True, text=True, timeout=10)
        c.check(r.returncode == 1 and "no such device" in r.stderr,
                f"an unknown serial ({len(serial)} characters) is named, not waited for")


def too_many_watchers(c, sp):
    many = [subprocess.Popen([h.SEALPIPE, "inspect", "--all", "--data-dir", sp.data],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            for _ in range(32)]
    for p in many:
        p.stdout.readline()  # the live mark: it is watching
    r = subprocess.run([h.SEALPIPE, "inspect", "--all", "--data-dir", sp.data],
                       capture_output=True, text=True, timeout=10)
    c.check(r.returncode == 1 and "too many watchers" in r.stderr and r.stdout == "",
            f"the 33rd watcher is told why, on stderr: {r.stderr.strip()!r}")
    for p in many:
        p.terminate()
        p.wait()


def mqtt_session(c, sp, w, a, b):
    """A paho device: connect, subscribe (allowed and denied), publish
    (stored, denied, an analysis that logs and one that fails), disconnect."""
    import paho.mqtt.client as mqtt
    cl = sp.client(sp.creds(a), client_id="insp-a", protocol=mqtt.MQTTv5)
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    con = w.wait(lambda e: e["kind"] == "connect" and e.get("device") == "insp-a", "connect")[0]
    c.eq((con["client_id"], con["protocol"], con["address"]), ("insp-a", "MQTT 5", "127.0.0.1"),
         "connect: client id, protocol version, address")
    h.wait_for(lambda: status(sp, "insp-a")["connected"], timeout=3, what="connected in status")
    c.check(True, "device list: connected within a second of the connection")
    cl.subscribe("$tip/insp-a/ack", qos=1)
    cl.subscribe("$tip/insp-b/ack", qos=1)  # another device's: denied
    w.wait(lambda e: e["kind"] == "denied" and e.get("access") == "subscribe", "denied subscribe")
    cl.publish("$tip/insp-a/push", b"[temperature:=21;humidity:=40]", qos=1).wait_for_publish()
    cl.publish("$tip/insp-b/push", b"[temperature:=1]", qos=1)  # another device's: denied
    cl.publish("sensors/insp-a/data", b"7", qos=1).wait_for_publish()
    cl.publish("sensors/insp-a/data", b"boom", qos=1).wait_for_publish()
    w.wait(lambda e: e["kind"] == "dead_letter" and e["reason"] == "analysis_error", "boom")
    cl.disconnect()
    cl.loop_stop()
    w.wait(lambda e: e["kind"] == "disconnect" and e.get("device") == "insp-a", "disconnect")
    h.wait_for(lambda: not status(sp, "insp-a")["connected"], what="disconnected in status")
    ev = w.drain()
    a_kinds = kinds(ev, "insp-a")
    for k in ("connect", "subscribe", "denied", "message", "stored", "sent", "log", "dead_letter",
              "disconnect"):
        c.check(k in a_kinds, f"event '{k}' of the device")
    stored = [e for e in ev if e["kind"] == "stored" and e["device"] == "insp-a"]
    c.eq(sorted(stored[0]["variables"]), ["humidity", "temperature"],
         "stored: the records' variables")
    c.eq(stored[0]["records"], 2, "stored: the count")
    sub = [e for e in ev if e["kind"] == "subscribe" and e["device"] == "insp-a"]
    c.eq(sub[0]["topic"], "$tip/insp-a/ack", "subscribe: the filter")
    den = [e for e in ev if e["kind"] == "denied" and e.get("access") == "publish"]
    c.eq([e["topic"] for e in den], ["$tip/insp-b/push"], "denied publish: the topic")
    msg = [e for e in ev if e["kind"] == "message" and e["device"] == "insp-a"]
    c.eq(msg[0]["topic"], "$tip/insp-a/push", "message: topic")
    c.eq((msg[0]["size"], msg[0]["qos"], msg[0]["retain"], msg[0]["transport"]),
         (30, 1, False, "mqtt"), "message: size, QoS, retain, transport")
    lvl = [e for e in ev if e["kind"] == "stored" and "level" in e["variables"]]
    c.eq([e.get("analysis") for e in lvl], ["levels"], "stored: the analysis that parsed it")
    logs = [e["line"] for e in ev if e["kind"] == "log"]
    c.eq(logs, ["got 7", "got boom"], "the analysis's log lines, for its device")
    sent = [e for e in ev if e["kind"] == "sent" and e["device"] == "insp-a"]
    c.check(any(e["what"] == "answer" and e["topic"] == "$tip/insp-a/ack" for e in sent),
            "sent: the TagoTiP answer")
    c.check(all(e.get("device") != "insp-b" for e in ev),
            "nothing is put on a device it is not about")
    seqs = [e["seq"] for e in ev if "seq" in e]
    c.eq(seqs, sorted(seqs), "events come in order")
    c.check(kinds(ev, "insp-a").index("connect") < kinds(ev, "insp-a").index("message")
            < kinds(ev, "insp-a").index("stored"), "connect, then message, then stored")


def envelopes(c, sp, w, b):
    sp.push(b, "[pressure:=1013]")
    e = w.wait(lambda e: e["kind"] == "envelope" and e.get("device") == "insp-b", "envelope")[0]
    c.eq((e["result"], e["suite"]), ("opened", b["cipher"]), "envelope opened, with its suite")
    c.check("plaintext" not in e, "no plaintext unless asked for")
    wrong = h.device_seal(b, "0" * len(b["key"]), "[pressure:=1]", 50)
    sp.pub("$tips/insp-b/push", wrong, creds=sp.creds(b))
    rej = w.wait(lambda e: e["kind"] == "envelope" and e["result"] == "rejected", "rejected")[0]
    c.eq(rej["reason"], "auth_failed", "envelope rejected: the reason")
    c.check("key" not in json.dumps(rej).lower().replace("no key", ""),
            "a rejected envelope's event shows no key")
    r = subprocess.run([h.SEALPIPE, "inspect", "insp-b", "--since", "10m", "--no-follow",
                        "--json", "--plaintext", "--data-dir", sp.data],
                       capture_output=True, text=True, timeout=10)
    opened = [json.loads(x) for x in r.stdout.splitlines()]
    opened = [e for e in opened if e["kind"] == "envelope" and e["result"] == "opened"]
    c.check(opened and opened[0].get("plaintext") == "insp-b|[pressure:=1013]",
            "--plaintext: the opened envelope's plaintext")


def logins(c, sp, w, a):
    r = subprocess.run(["mosquitto_pub", "-p", str(sp.port), "-u", "Token", "-P",
                        "00000000-0000-0000-0000-000000000000", "-t", "x", "-m", "y"],
                       capture_output=True)
    c.check(r.returncode != 0, "an unknown token is refused")
    e = w.wait(lambda e: e["kind"] == "login_refused", "login_refused")[0]
    c.eq((e["device"], e["reason"]), ("", "unknown token"), "refused login: no device, why")
    extra = sp.add_token("insp-a", "--name", "spare")
    import paho.mqtt.client as mqtt
    cl = sp.client(extra, client_id="insp-a2", protocol=mqtt.MQTTv311)
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    w.wait(lambda e: e["kind"] == "connect" and e["client_id"] == "insp-a2", "second connect")
    sp.cli("token", "revoke", "insp-a", "spare")
    d = w.wait(lambda e: e["kind"] == "disconnect" and e["client_id"] == "insp-a2",
               "kicked", timeout=5)[0]
    c.eq(d.get("reason"), "token revoked", "disconnect: sealpipe says why it kicked")
    cl.loop_stop()
    r = subprocess.run(["mosquitto_pub", "-p", str(sp.port), "-u", "Token", "-P", extra[1],
                        "-t", "x", "-m", "y"], capture_output=True)
    e = w.wait(lambda e: e["kind"] == "login_refused" and e["device"] == "insp-a", "revoked")[0]
    c.eq(e["reason"], "token revoked", "a revoked token's login: its device and why")


def unproven(c, sp, w):
    """Requests whose sender proved nothing are no device's events: a flood of
    made-up serials, or a wrong hash for a real device, must not write into a
    device's ring (the review found 4,200 requests erasing a device's history)."""
    import urllib.request
    for serial in ("ghost-1", "insp-a"):
        req = urllib.request.Request(f"http://127.0.0.1:{sp.http_port}/v1/tip/{serial}",
                                     data=b"[t=stranger-text]", method="POST",
                                     headers={"Authorization": "TagoTiP 0000000000000000"})
        try:
            urllib.request.urlopen(req, timeout=5)
        except Exception:
            pass  # refused: 401
    w.wait(lambda e: e["kind"] == "message" and e.get("claimed") == "insp-a", "message")
    w.wait(lambda e: e["kind"] == "refused" and e["seq"] > max(
        x["seq"] for x in w.events if x.get("claimed") == "insp-a"), "refused")
    mine = [e for e in w.drain() if e.get("claimed") in ("ghost-1", "insp-a")]
    refused = [e for e in w.events if e["kind"] == "refused"]
    c.check(len(mine) == 2 and all(e["device"] == "" for e in mine + refused),
            "unproven requests: under no device, the serial they name as 'claimed'")
    r = subprocess.run([h.SEALPIPE, "inspect", "ghost-1", "--since", "10m", "--no-follow",
                        "--json", "--data-dir", sp.data], capture_output=True, text=True)
    c.eq(r.stdout.count("\n"), 0, "no ring for a serial only a stranger named: " + r.stdout)
    r = subprocess.run([h.SEALPIPE, "inspect", "insp-a", "--since", "10m", "--no-follow",
                        "--json", "--data-dir", sp.data], capture_output=True, text=True)
    c.check("stranger-text" not in r.stdout, "a stranger's text is not in a real device's events")


def frame_hides_auth(c, sp, w, a):
    """A raw frame carries the profile's auth hash, a credential: its message
    event shows no payload (review)."""
    import socket
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.sendto(f"PUSH|!1|{a['auth_hash']}|insp-a|[udp:=1]".encode(), ("127.0.0.1", sp.udp_port))
    u.close()
    e = w.wait(lambda e: e["kind"] == "message" and e.get("transport") == "udp" and
               e.get("device") == "insp-a", "the UDP frame")[0]
    c.check("payload" not in e and a["auth_hash"] not in json.dumps(w.drain()),
            "a raw frame's event shows no payload, and the auth hash nowhere")


def commands(c, sp, w):
    sp.cli("device", "cmd", "insp-a", "reboot")
    e = w.wait(lambda e: e["kind"] == "sent" and e["what"] == "command", "command", timeout=5)[0]
    c.eq((e["device"], e["topic"]), ("insp-a", "$tips/insp-a/ack"), "sent: the command")


def kept_and_readable(c, sp):
    # A device's bytes must not act on the operator's terminal.
    sp.pub("sensors/insp-a/data", b"\x1b[2J\x1b]0;owned\x07\xc2\x9b31m", creds=sp.creds("insp-a"))
    h.wait_for(lambda: status(sp, "insp-a")["messages"] >= 4, what="the escape payload handled")
    r = subprocess.run([h.SEALPIPE, "inspect", "insp-a", "--since", "10m", "--no-follow",
                        "--data-dir", sp.data], capture_output=True, text=True, timeout=10)
    lines = r.stdout.splitlines()
    c.eq(r.returncode, 0, "--no-follow exits 0 after the kept events")
    c.check(len(lines) > 8 and all(" insp-a " in x for x in lines),
            "readable lines, one per kept event of the device")
    c.check("\033" not in r.stdout and "\x07" not in r.stdout and "\x9b" not in r.stdout,
            "no colour off a terminal, and no control character a device sent")
    c.check(any("\\x1b[2J" in x for x in lines), "a device's control characters are shown escaped")
    c.check(any(" stored " in x and "records=2" in x for x in lines), "readable: stored records=2")
    r = subprocess.run([h.SEALPIPE, "inspect", "--all", "--no-follow", "--json", "--data-dir",
                        sp.data], capture_output=True, text=True, timeout=10)
    c.eq(r.stdout, "", "without --since nothing kept is replayed")


def dead_letter_output(c, sp):
    """dead-letter list and show print what a device sent: never its escape
    sequences raw (the sibling of inspect's and query's)."""
    # Text that is UTF-8 throughout (so show prints it as text, not hex) with
    # a C1 CSI and a carriage return in it.
    sp.pub("nowhere/insp-a", b"text\xc2\x9b2J\rforged", creds=sp.creds("insp-a"))
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters WHERE reason='no_route'")
               == 1, what="the no_route dead letter")
    dl = sp.rows("SELECT id FROM dead_letters WHERE reason='no_route'")[0]["id"]
    for args in (["list"], ["show", str(dl)]):
        out = subprocess.run([h.SEALPIPE, "dead-letter", *args, "--data-dir", sp.data],
                             capture_output=True).stdout
        c.check(b"nowhere/insp-a" in out and not any(x in out for x in (b"\r", b"\xc2\x9b")),
                f"dead-letter {args[0]}: no control character of the device's reaches the terminal")


def status_counts(c, sp):
    st = status(sp, "insp-a")
    data = sp.count("SELECT count(*) n FROM data WHERE device='insp-a'")
    dead = sp.count("SELECT count(*) n FROM dead_letters WHERE device='insp-a'")
    c.eq((st["records"], st["dead_letters"], st["messages"]), (data, dead, 6),
         "device status: records, dead letters, messages as stored")
    c.check(st["last_sent"] and st["last_stored"] and st["last_connect"], "the times are set")
    h.wait_for(lambda: not status(sp, "insp-a")["connected"], what="mosquitto_pub gone")
    show = sp.cli("device", "show", "insp-a").stdout
    c.check("retention            the daemon's" in show, "device show: no retention of its own")
    sp.cli("device", "set", "insp-a", "--retention", "30d")
    c.check("retention            30d\n" in sp.cli("device", "show", "insp-a").stdout,
            "device show: its retention (device set --retention)")
    devs = json.loads(sp.cli("device", "list", "--json").stdout)["devices"]
    c.eq([d["retention"] for d in devs], ["30d", None], "device list --json: retention or null")
    c.check("connected            no" in show and f"records              {data}\n" in show,
            "device show prints the status:\n" + show)


def restarts(c, sp, a):
    """kill -9 of the daemon: the broker stays and its devices with it; one
    that connects meanwhile is known once the daemon is back (the roster)."""
    import paho.mqtt.client as mqtt
    cl = sp.client(sp.creds(a), client_id="insp-long", protocol=mqtt.MQTTv311)
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    h.wait_for(lambda: status(sp, "insp-a")["connected"], what="connected")
    sp.proc.send_signal(signal.SIGKILL)
    sp.proc.wait()
    # Nothing happens while it is away, but the status it left is wrong (as
    # when it died with events unread): the next daemon gets the roster all
    # the same, as the plugin notices the old one is gone.
    db = sp.db()
    db.execute("UPDATE device_status SET connections = 7 WHERE serial = 'insp-b'")
    db.commit()
    db.close()
    sp.start()
    h.wait_for(lambda: status(sp, "insp-b")["connections"] == 0 and
               status(sp, "insp-a")["connections"] == 1, what="roster without any event")
    c.check(True, "a new daemon gets the roster though no client came or went")
    sp.proc.send_signal(signal.SIGKILL)
    sp.proc.wait()
    cl.disconnect()  # while the daemon is away
    cl.loop_stop()
    time.sleep(0.3)
    cl2 = sp.client(sp.creds("insp-b"), client_id="insp-b1", protocol=mqtt.MQTTv311)
    cl2.connect("127.0.0.1", sp.port)
    cl2.loop_start()
    time.sleep(0.3)
    sp.start()
    h.wait_for(lambda: status(sp, "insp-b")["connected"] and
               not status(sp, "insp-a")["connected"], what="status mended by the roster")
    c.check(True, "after a kill -9: who connected and left meanwhile is right again")
    st = status(sp, "insp-a")
    c.check(st["last_disconnect"] and "listed its clients" in (st["last_disconnect_reason"] or ""),
            f"a device that left unobserved gets a disconnect time and why: {st}")
    # The embedded broker killed under a connected device (review: the status
    # said it never disconnected, and nothing said the broker restarted).
    cl2.loop_stop()  # no reconnection to the new broker
    before = status(sp, "insp-b")["last_disconnect"] or ""
    pid = int(open(os.path.join(sp.data, "broker", "mosquitto.pid")).read())
    os.kill(pid, signal.SIGKILL)
    h.wait_for(lambda: not status(sp, "insp-b")["connected"] and
               (status(sp, "insp-b")["last_disconnect"] or "") > before, timeout=15,
               what="the broker's death recorded as the device's disconnection")
    r = subprocess.run([h.SEALPIPE, "inspect", "--all", "--since", "1m", "--no-follow", "--json",
                        "--data-dir", sp.data], capture_output=True, text=True, timeout=10)
    c.check('"kind":"broker_restarted"' in r.stdout,
            "the broker's death: a disconnect time for its devices and a broker_restarted event")
    sp.stop()
    c.check(not status(sp, "insp-b")["connected"],
            "a clean stop: the embedded broker's devices are disconnected with it")
    c.check(status(sp, "insp-b")["messages"] > 0, "insp-b has a status")
    sp.cli("device", "rm", "insp-b")
    sp.add_device("insp-b")
    st = status(sp, "insp-b")
    c.check(st["messages"] == 0 and st["last_connect"] is None and st["last_sent"] is None,
            "a device added again under a removed serial starts with no status")


def inspector_off(c, tmp, started):
    """A daemon whose inspector cannot open still stores data, and says why."""
    sp = h.Sealpipe(os.path.join(tmp, "off"))
    sp.add_device("off-1")
    os.makedirs(os.path.join(sp.data, "inspect.sock", "in-the-way"))
    sp.start()
    started.append(sp)
    c.check("inspector off" in sp.read_log(), "the daemon says its inspector is off, and why")
    sp.pub("$tip/off-1/push", b"[t:=1]", creds=sp.creds("off-1"))
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data") == 1, what="stored")
    c.check(True, "without its inspector the daemon stores data all the same")
    sp.stop()
    started.remove(sp)


def external_broker(c, tmp, started):
    """Your own mosquitto with the plugin and plugin_opt_events, as the README
    shows: the inspector and the status see its connections too."""
    import secrets
    import paho.mqtt.client as mqtt
    sp = h.Sealpipe(os.path.join(tmp, "ext"))
    dev = sp.add_device("ext-1")
    secret = secrets.token_hex(32)
    secret_file = os.path.join(sp.tmp, "daemon.secret")
    with open(secret_file, "w") as f:
        f.write(secret + "\n")
    os.chmod(secret_file, 0o600)
    plugin = os.path.join(os.path.dirname(os.path.abspath(h.SEALPIPE)), "sealpipe_auth.so")
    broker = h.Mosquitto(sp.tmp, name="guarded", settings=(
        f"per_listener_settings false\nallow_anonymous false\nplugin {plugin}\n"
        f"plugin_opt_registry {sp.data}/sealpipe.db\nplugin_opt_daemon_secret {secret_file}\n"
        f"plugin_opt_events {sp.data}/broker-events.sock\n"))
    started.append(broker)
    sp.port = broker.port
    sp.extra = ["--broker", f"mqtt://127.0.0.1:{broker.port}", "--broker-username",
                "sealpipe-daemon", "--broker-password", secret]
    sp.start()
    started.append(sp)
    # The plugin tries the daemon's socket every second: what happens before
    # it is through is not an event (its roster mends the status).
    h.wait_for(lambda: "the broker plugin reports" in sp.read_log(), what="the plugin's roster")
    cl = sp.client(sp.creds(dev), client_id="ext-c", protocol=mqtt.MQTTv311)
    cl.connect("127.0.0.1", broker.port)
    cl.loop_start()
    h.wait_for(lambda: status(sp, "ext-1")["connected"], timeout=5, what="connected (external)")
    r = subprocess.run([h.SEALPIPE, "inspect", "ext-1", "--since", "1m", "--no-follow", "--json",
                        "--data-dir", sp.data], capture_output=True, text=True, timeout=10)
    c.check('"kind":"connect"' in r.stdout and '"client_id":"ext-c"' in r.stdout,
            "an external broker with plugin_opt_events: its connections reach the inspector: "
            + r.stdout + r.stderr)
    cl.disconnect()
    cl.loop_stop()
    h.wait_for(lambda: not status(sp, "ext-1")["connected"], timeout=5,
               what="disconnected (external)")
    c.check(True, "and the device status")
    sp.stop()
    started.remove(sp)


def test(c, tmp, started):
    inspector_off(c, tmp, started)
    external_broker(c, tmp, started)
    folder = os.path.join(tmp, "analyses")
    os.makedirs(folder)
    with open(os.path.join(folder, "levels.lua"), "w") as f:
        f.write(ANALYSIS)
    sp = h.Sealpipe(tmp, analyses=folder, net=True)
    a = sp.add_device("insp-a")
    b = sp.add_device("insp-b", "--cipher", "aes-128-gcm")
    check_usage(c, sp)
    sp.start()
    started.append(sp)
    too_many_watchers(c, sp)
    w = Watcher(sp, "--all")
    w.wait(lambda e: e["kind"] == "live", "the live mark")
    try:
        mqtt_session(c, sp, w, a, b)
        envelopes(c, sp, w, b)
        logins(c, sp, w, a)
        unproven(c, sp, w)
        frame_hides_auth(c, sp, w, a)
        commands(c, sp, w)
    finally:
        w.stop()
    kept_and_readable(c, sp)
    dead_letter_output(c, sp)
    status_counts(c, sp)
    restarts(c, sp, a)


if __name__ == "__main__":
    sys.exit(h.run(test))
