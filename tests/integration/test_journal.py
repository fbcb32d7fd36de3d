"""The device journal as a user meets it (issue #13): a device publish on a
topic no analysis declares is a no_route dead letter, not lost; records of a
backlog keep the time the broker received them; journaled and non-journaled
messages alternating (payload addresses reused by the broker) all arrive
once; a journal left with unread messages is still read after a restart
with --journal off; a broker started with another journal setting is not
adopted as it is."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402


def unrouted(c, sp):
    sp.pub("nowhere/dev-01/x", b"lost?")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters WHERE reason='no_route'") >= 1,
               what="the no_route dead letter")
    row = sp.rows("SELECT topic, device, payload FROM dead_letters WHERE reason='no_route'")[0]
    c.eq((row["topic"], row["device"], bytes(row["payload"])),
         ("nowhere/dev-01/x", "dev-01", b"lost?"),
         "a device publish no analysis declares is a no_route dead letter with its bytes")


def backlog_time(c, sp):
    """Published while the daemon is stopped: the records' time is when the
    broker took them, not when the daemon caught up."""
    os.kill(sp.proc.pid, signal.SIGSTOP)
    try:
        sent = int(time.time() * 1000)
        for i in range(3):
            sp.pub("$tip/dev-01/push", b"[late:=%d]" % i)
        time.sleep(2.0)  # the backlog's age: what the time must not include
    finally:
        os.kill(sp.proc.pid, signal.SIGCONT)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='late'") == 3,
               what="the backlog stored")
    times = [r["time"] for r in sp.rows("SELECT time FROM data WHERE variable='late'")]
    c.check(all(sent - 50 <= t < sent + 1500 for t in times),
            f"backlog records keep the broker's receive time ({[t - sent for t in times]} ms "
            "after the first publish)")


def alternating(c, sp):
    """A device's (journaled) and the daemon login's (not journaled, routed
    by MQTT) publishes one after the other: the broker frees and reuses
    payload addresses, and a journaled mark must never outlive its message."""
    import paho.mqtt.client as mqtt
    dev = sp.client(sp.creds("dev-01"), client_id="alt-dev")
    # The daemon's login stands in for a broker without the plugin (trusted
    # input routed by topic); its messages are the ones not in the journal.
    daemon = sp.client(sp.daemon_creds(), client_id="alt-daemon", protocol=mqtt.MQTTv5)
    for cl in (dev, daemon):
        cl.connect("127.0.0.1", sp.port)
        cl.loop_start()
    n = 150
    for i in range(n):
        dev.publish("$tip/dev-01/push", b"[alt_dev:=%d]" % i, qos=1).wait_for_publish(10)
        daemon.publish("$tip/dev-02/push", b"[alt_daemon:=%d]" % i, qos=1).wait_for_publish(10)
    for cl in (dev, daemon):
        cl.loop_stop()
        cl.disconnect()
    for var in ("alt_dev", "alt_daemon"):
        h.wait_for(lambda: sp.count("SELECT count(DISTINCT value) n FROM data WHERE variable=?",
                                    var) == n, timeout=30, what=f"{var} stored")
    time.sleep(0.5)
    for var in ("alt_dev", "alt_daemon"):
        c.eq(sp.count("SELECT count(*) n FROM data WHERE variable=?", var), n,
             f"{var}: every message stored once")


def client_id_switch(c, sp):
    """A run with another --client-id, then back: the session the first id
    left in the broker must not collect the journaled messages of the run
    in between (they would be stored twice when it comes back, and fill the
    broker's memory meanwhile)."""
    base = list(sp.extra)
    sp.stop()
    sp.extra = base + ["--client-id", "other-id"]
    sp.start()
    cl = sp.client(sp.creds("dev-01"), client_id="cid-dev")
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    want = 1000
    for i in range(want):
        cl.publish("$tip/dev-01/push", b"[cid:=%d]" % i, qos=1).wait_for_publish(10)
    cl.loop_stop()
    cl.disconnect()
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='cid'") >= want,
               what="stored under the other client id")
    sp.stop()
    sp.extra = base
    sp.start()
    time.sleep(2.0)  # what the old session held would arrive now
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable='cid'"), want,
         "back to the first client id: nothing stored twice")


def damaged(c, sp):
    """One byte of the journal flipped in the middle of a backlog: the
    damaged record is skipped with a warning, the ones after it are read
    without waiting, and after a restart (the broker scans that segment)
    no id is given twice. A file whose name no writer gives is ignored."""
    jdir = os.path.join(sp.data, "journal")
    os.kill(sp.proc.pid, signal.SIGSTOP)
    try:
        import paho.mqtt.client as mqtt  # noqa: F401
        cl = sp.client(sp.creds("dev-01"), client_id="dmg-dev")
        cl.connect("127.0.0.1", sp.port)
        cl.loop_start()
        for i in range(100):
            cl.publish("$tip/dev-01/push", b"[dmg:=%d]" % i, qos=1).wait_for_publish(10)
        seg = os.path.join(jdir, max(os.listdir(jdir)))
        with open(seg, "r+b") as f:
            f.seek(os.path.getsize(seg) // 2)
            b = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([b[0] ^ 0x20]))
    finally:
        os.kill(sp.proc.pid, signal.SIGCONT)
    for i in range(100, 150):
        cl.publish("$tip/dev-01/push", b"[dmg:=%d]" % i, qos=1).wait_for_publish(10)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='dmg'") >= 149,
               what="the records after the damage read")
    with open(os.path.join(jdir, "ffffffffffffffff.jnl"), "wb") as f:
        f.write(b"garbage")
    cl.loop_stop()
    cl.disconnect()
    sp.stop()
    sp.start()
    cl = sp.client(sp.creds("dev-01"), client_id="dmg-dev2")
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    for i in range(150, 200):
        cl.publish("$tip/dev-01/push", b"[dmg:=%d]" % i, qos=1).wait_for_publish(10)
    cl.loop_stop()
    cl.disconnect()
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='dmg'") >= 199,
               what="the messages after the restart")
    time.sleep(0.5)
    c.eq(sp.count("SELECT count(DISTINCT value) n FROM data WHERE variable='dmg'"), 199,
         "one flipped byte costs the one record it hit, no more")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable='dmg'"), 199, "... none twice")
    c.check("damaged bytes skipped" in sp.read_log(), "the daemon says it skipped damage")


def broker_pid(sp):
    with open(os.path.join(sp.data, "broker", "mosquitto.pid")) as f:
        return int(f.read().strip())


def leftover(c, sp):
    """Unread messages in the journal, the daemon killed (its broker runs
    on), then a restart with --journal off: the broker, left running with
    the journal on, is not adopted as it is but restarted with the new
    setting, and the journal's leftovers are stored, once."""
    os.kill(sp.proc.pid, signal.SIGSTOP)
    for i in range(4):
        sp.pub("$tip/dev-01/push", b"[left:=%d]" % i)
    os.kill(sp.proc.pid, signal.SIGKILL)
    sp.proc.wait()
    sp.stop()
    old = broker_pid(sp)
    sp.extra = [x for x in sp.extra] + ["--journal", "off"]
    sp.start()
    c.check(broker_pid(sp) != old and not os.path.exists(f"/proc/{old}"),
            "a broker left with other settings is restarted, not adopted")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='left'") >= 4,
               what="the journal's leftovers stored with --journal off")
    sp.pub("$tip/dev-01/push", b"[off:=1]")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='off'") == 1,
               what="a message without the journal")
    time.sleep(0.5)
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable='left'"), 4,
         "each leftover stored once")
    with open(os.path.join(sp.data, "broker", "mosquitto.conf")) as f:
        c.check("plugin_opt_journal " not in f.read(), "the broker runs without the journal")


def test(c, tmp, started):
    sp = h.Sealpipe(tmp, extra=["--log-level", "info"])
    sp.add_device("dev-01")
    sp.add_device("dev-02")
    sp.start()
    started.append(sp)
    c.check(os.path.isdir(os.path.join(sp.data, "journal")), "the journal folder exists")
    unrouted(c, sp)
    backlog_time(c, sp)
    alternating(c, sp)
    client_id_switch(c, sp)
    damaged(c, sp)
    leftover(c, sp)
    c.eq(sp.count("SELECT count(*) n FROM dead_letters WHERE reason != 'no_route'"), 0,
         "no other dead letter")


if __name__ == "__main__":
    sys.exit(h.run(test))
