"""device_status's counts are folded in later, and stay exact (issue #15,
point 3: a batch writes one row of device_status_pending, not an upsert per
device; runtime/storage/devstate.c folds the rows within a second once the
messages pause).

From the outside: three devices log in with their tokens and publish plain
TagoTiP pushes with paho at QoS 1. Checked:
- right after the rows are committed, `device list --json` and `device show`
  count every message and record (the pending rows are added), and within a
  second the rows are folded: device_status alone is exact, and no pending
  row is left;
- kill -9 right after a backlog is committed: with the daemon down the CLI
  counts are exact, and the next daemon folds what the crash left;
- rows a daemon left (written here in the format of runtime/storage/tally.h):
  folded at start; a tally of a device removed meanwhile makes no row for
  it; a damaged row is logged, the tallies before the damage count, the row
  goes, and the daemon runs on; a row of 40 devices gives each device its
  own counts."""

import json
import os
import signal
import struct
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

SERIALS = ("fold-a", "fold-b", "fold-c")
PER_DEVICE = 60


def tally(serial, last_sent, last_stored, messages, records, dead, counter=-1, created=0):
    """One tally as runtime/storage/tally.h lays it out."""
    s = serial.encode()
    return bytes([len(s)]) + s + struct.pack("<7q", last_sent, last_stored, messages, records,
                                             dead, counter, created)


def publish(sp, serial, n, start):
    """n pushes of one record each from serial, QoS 1, all acknowledged."""
    import paho.mqtt.client as mqtt
    cl = sp.client(sp.creds(serial), client_id=f"{serial}-pub-{start}", protocol=mqtt.MQTTv311)
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    infos = [cl.publish(f"$tip/{serial}/push", f"[n:={start + i}]", qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(timeout=10)
    cl.disconnect()
    cl.loop_stop()


def statuses(sp):
    devs = json.loads(sp.cli("device", "list", "--json").stdout)["devices"]
    return {d["serial"]: d["status"] for d in devs}


def table_counts(sp):
    """device_status alone: serial -> (messages, records)."""
    return {r["serial"]: (r["messages"], r["records"])
            for r in sp.rows("SELECT serial, messages, records FROM device_status")}


def pending(sp):
    return sp.count("SELECT count(*) n FROM device_status_pending")


def send_all(sp, start):
    for s in SERIALS:
        publish(sp, s, PER_DEVICE, start)
    want = len(SERIALS) * (start + PER_DEVICE)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data") == want, timeout=20,
               what=f"{want} rows committed")


def check_counts(c, sp, each, when):
    st = statuses(sp)
    got = {s: (st[s]["messages"], st[s]["records"]) for s in SERIALS}
    c.eq(got, {s: (each, each) for s in SERIALS}, f"{when}: device list counts every message")
    c.check(all(st[s]["last_sent"] and st[s]["last_stored"] for s in SERIALS),
            f"{when}: the last sent and stored times are set")


def live(c, sp):
    send_all(sp, 0)
    check_counts(c, sp, PER_DEVICE, "just committed")
    show = sp.cli("device", "show", "fold-a").stdout
    c.check(f"messages             {PER_DEVICE}\n" in show, "device show counts them:\n" + show)
    h.wait_for(lambda: pending(sp) == 0, timeout=3, what="the pending rows folded")
    c.eq(table_counts(sp), {s: (PER_DEVICE, PER_DEVICE) for s in SERIALS},
         "folded within a second: device_status alone is exact")


def crash(c, sp):
    send_all(sp, PER_DEVICE)
    sp.proc.send_signal(signal.SIGKILL)
    sp.proc.wait()
    left = pending(sp)
    check_counts(c, sp, 2 * PER_DEVICE, f"kill -9 right after the commit ({left} rows pending)")
    sp.start()
    h.wait_for(lambda: pending(sp) == 0, timeout=5, what="what the crash left folded")
    c.eq(table_counts(sp), {s: (2 * PER_DEVICE, 2 * PER_DEVICE) for s in SERIALS},
         "the next daemon folds what the crash left")


def left_rows(c, sp):
    sp.stop()
    sp.cli("device", "rm", "fold-c")
    good = tally("fold-a", 1, 2, 5, 7, 1) + tally("fold-c", 1, 2, 5, 5, 0)
    damaged = tally("fold-b", 1, 2, 3, 3, 0) + bytes([200]) + b"fold-b"
    db = sp.db()
    db.execute("INSERT INTO device_status_pending (tallies) VALUES (?)", (good,))
    db.execute("INSERT INTO device_status_pending (tallies) VALUES (?)", (damaged,))
    db.commit()
    db.close()
    st = statuses(sp)
    c.eq((st["fold-a"]["messages"], st["fold-a"]["records"], st["fold-a"]["dead_letters"]),
         (2 * PER_DEVICE + 5, 2 * PER_DEVICE + 7, 1),
         "with the daemon down, device list adds the rows it left")
    sp.start()
    h.wait_for(lambda: pending(sp) == 0, timeout=5, what="the rows folded at start")
    counts = table_counts(sp)
    c.eq(counts.get("fold-a"), (2 * PER_DEVICE + 5, 2 * PER_DEVICE + 7), "folded at start")
    c.eq(counts.get("fold-b"), (2 * PER_DEVICE + 3, 2 * PER_DEVICE + 3),
         "a damaged row: the tallies before the damage count")
    c.check("fold-c" not in counts, "a device removed meanwhile gets no row again")
    c.check("device_status_pending id=" in sp.read_log() and "damaged at byte" in sp.read_log(),
            "the damaged row is logged")
    publish(sp, "fold-a", 1, 1000)
    h.wait_for(lambda: statuses(sp)["fold-a"]["messages"] == 2 * PER_DEVICE + 6,
               what="the daemon runs on")
    c.check(True, "the daemon runs on after a damaged row")


def many(c, sp):
    """A row of many devices, each tally its own device's."""
    sp.stop()
    db = sp.db()
    db.execute("INSERT INTO device_status_pending (tallies) VALUES (?)",
               (b"".join(tally(s, 1, 1, i + 1, i + 1, 0) for i, s in enumerate(MANY)),))
    db.commit()
    db.close()
    sp.start()
    h.wait_for(lambda: pending(sp) == 0, timeout=5, what="the many devices folded")
    counts = table_counts(sp)
    c.eq({s: counts.get(s) for s in MANY}, {s: (i + 1, i + 1) for i, s in enumerate(MANY)},
         f"a fold of {len(MANY)} devices: each its own counts")


MANY = tuple(f"many-{i:02d}" for i in range(40))


def test(c, tmp, started):
    sp = h.Sealpipe(tmp)
    for s in SERIALS + MANY:
        sp.add_device(s)
    sp.start()
    started.append(sp)
    live(c, sp)
    crash(c, sp)
    left_rows(c, sp)
    many(c, sp)


if __name__ == "__main__":
    sys.exit(h.run(test))
