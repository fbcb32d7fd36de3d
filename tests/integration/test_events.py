"""Device events (issue #17, point 2): `on = {"connected", "disconnected",
"offline"}` with event(ev), against the real daemon, broker plugin and paho
clients logged in as devices. A connection and a disconnection are one event
each, in order; two connections of one device make one connected and, when
both are gone, one disconnected; a device silent for offline_after (or its
own param offline_after) is reported once per silence, also across a
restart, and again after a new message and a new silence; a device that went
silent while the daemon was down is reported once it is back; a stop of the
daemon (its embedded broker stops too) says so in ev.reason."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

WATCH = """return {
  on = { "connected", "disconnected", "offline" },
  offline_after = "10s",
  event = function(ev)
    return { variable = "ev", value = ev.kind,
             metadata = { at = tostring(ev.at), client_id = ev.client_id or "",
                          reason = ev.reason or "", silent = tostring(ev.silent_ms or ""),
                          after = tostring(ev.offline_after or ""),
                          last_sent = tostring(ev.last_sent or "") } }
  end,
}
"""
INGEST = """return { topics = { "d/{serial}" }, handle = function(msg) return { variable = "x", value = 1 } end }
"""


def events(sp, serial, kind=None):
    q = "SELECT value, metadata FROM data WHERE variable='ev' AND device=?"
    args = [serial]
    if kind:
        q += " AND value=?"
        args.append(kind)
    return sp.rows(q + " ORDER BY id", *args)


def test(c, tmp, started):
    import json
    import paho.mqtt.client as mqtt
    an = os.path.join(tmp, "analyses")
    os.makedirs(an)
    for name, text in (("watch", WATCH), ("ingest", INGEST)):
        with open(os.path.join(an, name + ".lua"), "w") as f:
            f.write(text)
    sp = h.Sealpipe(tmp, analyses=an)
    for s in ("ev-1", "ev-2", "ev-3", "ev-4"):
        sp.add_device(s, "--cipher", "none")
    sp.cli("device", "set", "ev-3", "--param", "offline_after=20s")
    sp.start()
    started.append(sp)

    # 1. One connection, one disconnection: one event each, in order.
    cl = sp.client(sp.creds("ev-1"), client_id="cid-1", protocol=mqtt.MQTTv5)
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    h.wait_for(lambda: events(sp, "ev-1", "connected"), what="the connected event")
    cl.disconnect()
    cl.loop_stop()
    h.wait_for(lambda: events(sp, "ev-1", "disconnected"), what="the disconnected event")
    ev = events(sp, "ev-1")
    c.eq([e["value"] for e in ev], ["connected", "disconnected"], "one of each, in order")
    meta = [json.loads(e["metadata"]) for e in ev]
    c.eq(meta[0]["client_id"], "cid-1", "ev.client_id")
    c.check(int(meta[0]["at"]) <= int(meta[1]["at"]), f"ev.at in order: {meta}")

    # 2. Two connections of one device: one connected, one disconnected at the end.
    a = sp.client(sp.creds("ev-2"), client_id="two-a")
    b = sp.client(sp.creds("ev-2"), client_id="two-b")
    for x in (a, b):
        x.connect("127.0.0.1", sp.port)
        x.loop_start()
    h.wait_for(lambda: events(sp, "ev-2", "connected"), what="ev-2 connected")
    a.disconnect()
    a.loop_stop()
    time.sleep(1.5)
    c.eq([e["value"] for e in events(sp, "ev-2")], ["connected"],
         "the first of two connections leaving is no event")
    sp.pub("d/ev-2", b"1", creds=sp.creds("ev-2"))  # ev-2 sends: its silence starts now
    b.disconnect()
    b.loop_stop()
    h.wait_for(lambda: events(sp, "ev-2", "disconnected"), what="ev-2 disconnected")
    c.eq([e["value"] for e in events(sp, "ev-2")], ["connected", "disconnected"],
         "two connections: one connected, one disconnected")

    # 3. Offline: ev-2 (10 s, the analysis's) and ev-3 (20 s, its param).
    sp.pub("d/ev-3", b"1", creds=sp.creds("ev-3"))
    t0 = time.time()
    h.wait_for(lambda: events(sp, "ev-2", "offline"), timeout=25, what="ev-2 offline")
    off = json.loads(events(sp, "ev-2", "offline")[0]["metadata"])
    c.check(10000 <= int(off["silent"]) <= 17000, f"reported 10-17 s after its last message: {off}")
    c.eq(off["after"], "10000", "ev.offline_after is the analysis's")
    c.eq(events(sp, "ev-3", "offline"), [], "ev-3's own offline_after (20s) not reached yet")
    h.wait_for(lambda: events(sp, "ev-3", "offline"), timeout=30, what="ev-3 offline")
    off3 = json.loads(events(sp, "ev-3", "offline")[0]["metadata"])
    c.check(time.time() - t0 >= 19 and off3["after"] == "20000",
            f"ev-3 after its param's 20 s: {off3}")
    c.eq(len(events(sp, "ev-1", "offline")), 0, "a device that never sent is not reported")

    # Once per silence: scans go on, nothing more. ev-4 sends once, its
    # silence to pass while the daemon is down.
    sp.pub("d/ev-4", b"1", creds=sp.creds("ev-4"))
    time.sleep(6)
    c.eq(len(events(sp, "ev-2", "offline")), 1, "once per silence, not at every scan")

    # 4. Across a restart: a silence reported is not again; one that passed
    # while the daemon was down is reported once it is back and caught up.
    sp.stop()
    time.sleep(5)
    sp.start()
    t1 = time.time()
    h.wait_for(lambda: events(sp, "ev-4", "offline"), timeout=20, what="ev-4 offline after start")
    c.check(time.time() - t1 >= 4, "not before the start's catch-up delay")
    time.sleep(6)
    c.eq(len(events(sp, "ev-4", "offline")), 1, "silent while down: reported once")
    c.eq(len(events(sp, "ev-2", "offline")), 1, "still once after a restart")

    # A new message re-arms it.
    sp.pub("d/ev-2", b"1", creds=sp.creds("ev-2"))
    h.wait_for(lambda: len(events(sp, "ev-2", "offline")) == 2, timeout=25,
               what="ev-2's second silence")
    c.check(True, "a new message and a new silence: reported again")

    # 5. A stop of the daemon disconnects its devices: ev.reason says why.
    cl = sp.client(sp.creds("ev-1"), client_id="cid-1b")
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    h.wait_for(lambda: len(events(sp, "ev-1", "connected")) == 2, what="ev-1 connected again")
    sp.stop()
    sp.start()
    h.wait_for(lambda: len(events(sp, "ev-1", "disconnected")) == 2, timeout=15,
               what="the disconnection at the stop")
    last = json.loads(events(sp, "ev-1", "disconnected")[-1]["metadata"])
    c.check("stopped with the daemon" in last["reason"], f"ev.reason: {last['reason']!r}")
    h.wait_for(lambda: len(events(sp, "ev-1", "connected")) == 3, timeout=15,
               what="paho reconnects: connected again")
    cl.disconnect()
    cl.loop_stop()
    c.eq(sp.count("SELECT count(*) n FROM device_events"), 0, "device_events drained")


if __name__ == "__main__":
    sys.exit(h.run(test))
