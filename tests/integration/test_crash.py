"""kill -9 of the daemon while a publisher sends thousands of QoS 1 messages,
then restart: every message is in the bucket or the dead-letter table exactly
once. The embedded broker survives the daemon and is adopted on restart;
messages committed but not yet acknowledged when the daemon died are
redelivered and recognised, not stored twice (and not taken for replays)."""

import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

N_ENC = 40000  # sealed TagoTiP/S messages
N_JSON = 5000  # plain JSON messages, with some invalid ones mixed in
ANALYSES = os.path.join(os.path.dirname(__file__), "analyses")


def json_publisher(sp):
    """paho-mqtt QoS 1 publisher, logged in as json-01; every 100th message
    is invalid on purpose."""
    cl = sp.client(sp.creds("json-01"), client_id="crash-json")
    cl.max_inflight_messages_set(200)
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    infos = []
    for i in range(N_JSON):
        if i % 100 == 99:
            body = b'{"variable":"bad name","value":%d}' % i
        else:
            body = b'{"variable":"j","value":%d}' % i
        infos.append(cl.publish("devices/json-01/data", body, qos=1))
    for info in infos:
        info.wait_for_publish(60)
    ok = all(i.is_published() for i in infos)
    cl.loop_stop()
    cl.disconnect()
    return ok


def test(c, tmp, started):
    sp = h.Sealpipe(tmp, analyses=ANALYSES, extra=["--log-level", "info", "--sync", "normal", "--stats-interval", "1"])
    dev = sp.add_device("crash-01", "--cipher", "chacha20-poly1305")
    sp.add_device("json-01", "--cipher", "none")
    sp.start()
    started.append(sp)

    pub = subprocess.Popen([h.DEVICE, "push", "--port", str(sp.port), "--serial", "crash-01",
                            "--qos", "1", "--encrypt", "--key", dev["key"], "--cipher",
                            dev["cipher"], "--auth-hash", dev["auth_hash"], "--counter", "1",
                            "--count", str(N_ENC), "--interval-ms", "0",
                            "--username", "Token", "--password", dev["token"], "[seq:={n}]"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import threading
    jres = {}
    jt = threading.Thread(target=lambda: jres.setdefault("ok", json_publisher(sp)))
    jt.start()

    kills = 0
    mid_stream = 0
    for delay in (0.15, 0.3, 0.3):
        time.sleep(delay)
        mid_stream += pub.poll() is None
        sp.proc.send_signal(signal.SIGKILL)
        sp.proc.wait()
        kills += 1
        time.sleep(0.2)
        sp.start()

    out, err = pub.communicate(timeout=120)
    jt.join(120)
    c.eq(pub.returncode, 0, f"publisher got every PUBACK from the broker ({err.strip()})")
    c.check(jres.get("ok"), "JSON publisher got every PUBACK")
    c.eq(kills, 3, "daemon killed with SIGKILL three times")
    c.check(mid_stream >= 1, f"{mid_stream} of the kills hit while the publisher was sending")

    total = N_ENC + N_JSON
    def handled():
        return (sp.count("SELECT count(*) n FROM data") +
                sp.count("SELECT count(*) n FROM dead_letters"))
    h.wait_for(lambda: handled() >= total, timeout=60, what=f"{total} messages handled")
    time.sleep(1.0)  # anything more would be a duplicate
    enc = sp.rows("SELECT value FROM data WHERE device='crash-01' AND variable='seq'")
    values = sorted(r["value"] for r in enc)
    c.eq(len(values), N_ENC, "sealed messages stored")
    c.eq(values, list(range(N_ENC)), "each sealed message exactly once")
    js = sorted(r["value"] for r in sp.rows("SELECT value FROM data WHERE variable='j'"))
    want = [i for i in range(N_JSON) if i % 100 != 99]
    c.eq(js, want, "each valid JSON message exactly once")
    dead = sp.rows("SELECT reason, detail, payload FROM dead_letters ORDER BY id")
    for r in dead:
        if r["reason"] != "invalid_body":
            print(f"     unexpected dead letter: {r['reason']}: {r['detail']}")
    c.eq(sorted(r["reason"] for r in dead), ["invalid_body"] * (N_JSON // 100),
         "only the invalid messages are dead letters (no false replays)")
    bad = sorted(int(bytes(r["payload"]).split(b":")[-1].rstrip(b"}")) for r in dead
                 if r["reason"] == "invalid_body")
    c.eq(bad, [i for i in range(N_JSON) if i % 100 == 99], "each invalid message exactly once")
    c.check("broker adopted" in sp.read_log(), "restarted daemon adopted the running broker")
    sp.stop()
    for line in sp.read_log().splitlines():
        if " stats " in line or "session_present" in line:
            print("     " + line)


if __name__ == "__main__":
    sys.exit(h.run(test))
