"""A flat-out burst of QoS 0 messages that reaches the daemon over MQTT is
stored whole, exactly once, with no reconnect (issue #15.1).

Where the daemon reads devices over MQTT -- the embedded broker with
--journal off, and an external broker (--broker) -- several devices publish
20,000 plain TagoTiP PUSHes of ~2 KB at QoS 0 as fast as mosquitto_pub -l
sends them. Every PUSH is answered with a QoS 1 publish, so the daemon has
thousands of its own answers in flight, and libmosquitto 2.0.11 reads as
many packets per mosquitto_loop_read as it has QoS 1 messages queued: one
read brings thousands of PUSHes beyond the batch. Before the fix the link
reconnected once it held 2,048 of them, and the broker does not redeliver
QoS 0: most of the burst was lost.
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

DEVICES = 4
PER_DEVICE = 5000
PAD = "x" * 2000  # ~2 KB per message


def burst(sp, serials, creds, qos=0):
    """Publishes PER_DEVICE QoS 0 PUSHes per serial, one mosquitto_pub -l per
    device, all at once. creds(serial): its login arguments."""
    procs = []
    for s in serials:
        path = os.path.join(sp.tmp, s + ".lines")
        with open(path, "w") as f:
            for i in range(PER_DEVICE):
                f.write(f"[s={s}n{i:05d}{PAD}]\n")
        with open(path, "rb") as f:
            procs.append(subprocess.Popen(
                ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(sp.port), "-q", str(qos), "-l",
                 "-i", "burst-" + s, "-t", f"$tip/{s}/push", *creds(s)],
                stdin=f, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    t0 = time.time()
    out = [p.communicate(timeout=120)[0] for p in procs]
    bad = [o for p, o in zip(procs, out) if p.returncode != 0]
    if bad:
        raise AssertionError(f"mosquitto_pub failed: {bad[0][-400:]!r}")
    return time.time() - t0


def check_burst(c, sp, serials, creds, label):
    total = len(serials) * PER_DEVICE
    sent_s = burst(sp, serials, creds)
    # Stored, or stuck: wait while the count still grows.
    last, still = -1, time.time()
    while time.time() - still < 15:
        n = sp.count("SELECT count(*) n FROM data WHERE variable='s'")
        if n >= total:
            break
        if n != last:
            last, still = n, time.time()
        time.sleep(0.2)
    stored = sp.count("SELECT count(*) n FROM data WHERE variable='s'")
    distinct = sp.count("SELECT count(DISTINCT value) n FROM data WHERE variable='s'")
    rate = total / sent_s if sent_s > 0 else 0
    c.eq(stored, total, f"{label}: {total} QoS 0 messages of ~2 KB from {len(serials)} devices "
         f"at {rate:.0f} msg/s: all stored (lost {100 * (total - distinct) / total:.1f} %)")
    c.eq(distinct, total, f"{label}: ... each exactly once")
    c.eq(sp.metric("sealpipe_mqtt_qos0_dropped_total"), 0.0,
         f"{label}: sealpipe_mqtt_qos0_dropped_total is 0")
    c.eq(sp.metric("sealpipe_broker_reconnects_total"), 0.0,
         f"{label}: no reconnect")
    c.check("reconnecting" not in sp.read_log(), f"{label}: the log says no reconnect")


def embedded(c, tmp, started):
    analyses = os.path.join(tmp, "analyses")  # none: the burst's cost is the link's
    os.makedirs(analyses)
    sp = h.Sealpipe(tmp, analyses=analyses, extra=["--journal", "off", "--log-level", "info"])
    serials = [f"burst-{i:02d}" for i in range(DEVICES)]
    for s in serials:
        sp.add_device(s, "--cipher", "none")
    sp.start()
    started.append(sp)
    check_burst(c, sp, serials, lambda s: sp.cred_args(sp.creds(s)), "embedded, --journal off")


def external(c, tmp, started):
    ext = h.Mosquitto(tmp)
    started.append(ext)
    analyses = os.path.join(tmp, "ext-analyses")
    os.makedirs(analyses)
    sp = h.Sealpipe(os.path.join(tmp, "ext"), analyses=analyses, broker=ext,
                    extra=["--log-level", "info"])
    serials = [f"ext-{i:02d}" for i in range(DEVICES)]
    for s in serials:
        sp.add_device(s, "--cipher", "none")
    sp.start()
    started.append(sp)
    check_burst(c, sp, serials, lambda s: [], "external broker")


def test(c, tmp, started):
    embedded(c, tmp, started)
    external(c, tmp, started)


if __name__ == "__main__":
    sys.exit(h.run(test))
