"""The broker side of `sealpipe run`: the embedded mosquitto is restarted when
it dies (the daemon never keeps running deaf) and is stopped with the daemon;
--broker joins an external broker instead, and the persistent session there
keeps messages published while the daemon was down."""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402


def broker_pid(sp):
    with open(os.path.join(sp.data, "broker", "mosquitto.pid")) as f:
        return int(f.read().strip())


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of the daemon counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def embedded(c, tmp, started):
    sp = h.Sealpipe(os.path.join(tmp, "emb"))
    sp.add_device("emb-01", "--cipher", "none")
    sp.start()
    started.append(sp)
    first = broker_pid(sp)
    c.check(alive(first), "embedded broker running")

    os.kill(first, signal.SIGKILL)
    h.wait_for(lambda: "broker restarted" in sp.read_log() and broker_pid(sp) != first,
               timeout=20, what="broker restart")
    c.check(sp.proc.poll() is None, "daemon still running after its broker died")
    c.check("embedded broker exited; restarting" in sp.read_log(), "the broker's death is logged")
    h.wait_for(lambda: "mqtt connected" in sp.read_log().split("broker restarted")[-1],
               timeout=20, what="reconnect to the new broker")

    sp.pub("$tip/emb-01/push", b"[after_restart:=1]", creds=sp.creds("emb-01"))
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='after_restart'") >= 1,
               timeout=20, what="data through the restarted broker")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable='after_restart'"), 1,
         "data flows through the restarted broker")

    second = broker_pid(sp)
    c.eq(sp.stop(), 0, "SIGTERM stops the daemon cleanly")
    h.wait_for(lambda: not alive(second), timeout=10, what="broker stopped with the daemon")
    c.check(not alive(second), "the embedded broker is stopped with the daemon")


def external(c, tmp, started):
    ext = h.Mosquitto(tmp)
    started.append(ext)
    sp = h.Sealpipe(os.path.join(tmp, "ext"), broker=ext)
    sp.add_device("ext-01", "--cipher", "none")
    sp.start()
    started.append(sp)
    c.check("broker started" not in sp.read_log(), "no embedded broker with --broker")
    c.check(not os.path.exists(os.path.join(sp.data, "broker", "mosquitto.pid")),
            "no embedded broker pid file")

    # A plain mosquitto has no plugin: no logins, no ACL, no identity stamp.
    sp.pub("$tip/ext-01/push", b"[n:=1]", creds=h.NO_CREDS)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data") == 1, what="first message")

    c.eq(sp.stop(), 0, "daemon stops")
    c.check(ext.proc.poll() is None, "the external broker is left running")
    for i in range(2, 12):  # published while the daemon is down
        sp.pub("$tip/ext-01/push", b"[n:=%d]" % i, creds=h.NO_CREDS)
    sp.start()
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data") == 11, timeout=20,
               what="messages queued in the session")
    vals = sorted(r["value"] for r in sp.rows("SELECT value FROM data"))
    c.eq(vals, list(range(1, 12)), "every message sent while the daemon was down arrived once")
    c.check("session_present=1" in sp.read_log(), "the session was resumed")

    # The health page's broker state (GET /api/v1/metrics, broker_connected).
    c.eq(sp.metric("sealpipe_broker_connected"), 1.0, "sealpipe_broker_connected: 1, the link up")
    ext.stop()
    h.wait_for(lambda: sp.metric("sealpipe_broker_connected") == 0.0, timeout=20,
               what="sealpipe_broker_connected 0 once the broker is gone")
    c.check(True, "sealpipe_broker_connected: 0 once the external broker stopped")


def test(c, tmp, started):
    embedded(c, tmp, started)
    external(c, tmp, started)


if __name__ == "__main__":
    sys.exit(h.run(test))
