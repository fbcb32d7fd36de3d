"""Retention: the running daemon deletes rows of data older than their
device's window (by the record's time) and dead letters (by when they were
received), and nothing newer: a global window (--retention) and per-device
overrides set with `sealpipe device set --retention` (longer, shorter,
forever, default), while devices keep sending, across a restart with another
global window. Invalid durations are refused."""

import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

# Ages (seconds) of the readings each device sends, around every window used
# (10 min, 1 h, 2 h), a few minutes either side: the test takes far less.
AGES = [120, 420, 780, 3300, 3900, 6900, 7500, 12000]


def ages_left(sp, serial):
    return sorted(r["value"] for r in
                  sp.rows("SELECT value FROM data WHERE device = ? AND variable = 'age'", serial))


def test(c, tmp, started):
    sp = h.Sealpipe(tmp, extra=["--retention", "1h"])
    serials = ["rt-global", "rt-longer", "rt-shorter", "rt-forever", "rt-default", "rt-dead"]
    for s in serials:
        sp.add_device(s)
    sp.cli("device", "set", "rt-longer", "--retention", "2h")
    sp.cli("device", "set", "rt-shorter", "--retention", "10m")
    sp.cli("device", "set", "rt-forever", "--retention", "forever")
    sp.cli("device", "set", "rt-default", "--retention", "10m")
    r = sp.cli("device", "set", "rt-default", "--retention", "default")
    c.check("10m -> default" in r.stdout, f"back to the default is printed: {r.stdout!r}")
    sp.start()
    started.append(sp)

    now = int(time.time() * 1000)
    for s in serials[:5]:
        for a in AGES:  # the body's @TIME is the time of its readings
            sp.pub(f"$tip/{s}/push", f"@{now - a * 1000}[age:={a}]".encode(),
                   creds=sp.creds(s))
    want = {"rt-global": [a for a in AGES if a < 3600],
            "rt-longer": [a for a in AGES if a < 7200],
            "rt-shorter": [a for a in AGES if a < 600],
            "rt-forever": AGES,
            "rt-default": [a for a in AGES if a < 3600]}
    h.wait_for(lambda: all(ages_left(sp, s) == w for s, w in want.items()), timeout=15,
               what="old readings deleted")
    for s, w in want.items():
        c.eq(ages_left(sp, s), w, f"{s}: what is older than its window is gone, nothing newer")

    # Dead letters, by when they were received: rt-dead keeps them 3 s, the
    # others under the global hour stay. Meanwhile devices keep sending.
    sp.cli("device", "set", "rt-dead", "--retention", "3s")
    for s in ("rt-dead", "rt-global"):
        sp.pub(f"$tip/{s}/push", b"[broken", creds=sp.creds(s))
    sp.pub("$tip/rt-dead/push", b"[live:=1]", creds=sp.creds("rt-dead"))
    # rt-dead's may be gone by the time we look (3 s): its creation is in the log.
    h.wait_for(lambda: "dead letter topic=$tip/rt-dead/push" in sp.read_log() and
               sp.count("SELECT count(*) n FROM dead_letters WHERE device='rt-global'") == 1,
               what="dead letters")
    sent = 300
    burst = threading.Thread(target=lambda: sp.device(
        "push", "--serial", "rt-global", "--qos", "1", "--count", str(sent), "--interval-ms", "2",
        "--quiet", "[n:={n}]"))
    burst.start()
    # Old rows of another device arrive while the burst runs, and go.
    for i in range(20):
        sp.pub("$tip/rt-shorter/push",
               ("@%d[" % (now - 3600 * 1000) + ";".join(f"old{j}:={i}" for j in range(50)) +
                "]").encode(), creds=sp.creds("rt-shorter"))
    burst.join()
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters WHERE device='rt-dead'")
               == 0, timeout=15, what="rt-dead's dead letter deleted")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters WHERE device='rt-global'"), 1,
         "a dead letter within the global window stays")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable LIKE 'old%'") == 0,
               timeout=15, what="old rows sent during the burst deleted")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='n'") >= sent,
               timeout=20, what="the burst stored")
    c.eq(sp.count("SELECT count(DISTINCT value) n FROM data WHERE variable='n'"), sent,
         "every message of the burst was stored while old rows were being deleted")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE device='rt-dead'") == 0,
               timeout=15, what="rt-dead's reading deleted after 3 s")

    # A dead letter of no known device (a profile context pushing for a
    # serial no device has), kept under the global window.
    sp.pub("$tip/rt-ghost/push", b"[x:=1]", creds=sp.profile_creds(sp.devices["rt-global"]))
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters WHERE reason = "
                                "'unknown_device'") == 1, what="unknown device dead letter")

    # Restart with a global window of 5 s: what only the hour kept now goes,
    # the overrides stay as they were.
    sp.stop()
    sp.extra = ["--retention", "5s"]
    sp.start()
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters") == 0 and
               ages_left(sp, "rt-global") == [] and ages_left(sp, "rt-default") == [],
               timeout=20, what="global 5 s applied after the restart")
    c.eq(ages_left(sp, "rt-longer"), want["rt-longer"], "the 2 h override outlives the restart")
    c.eq(ages_left(sp, "rt-forever"), AGES, "forever keeps everything under any global window")
    c.check(AGES[0] in ages_left(sp, "rt-shorter"),
            "the 10 min override, not the 5 s global window, still governs rt-shorter")
    # device rm takes the override with it: the data it left follows the
    # global window (5 s now).
    sp.cli("device", "rm", "rt-forever")
    h.wait_for(lambda: ages_left(sp, "rt-forever") == [], timeout=15,
               what="a removed device's data under the global window")
    c.eq(sp.count("SELECT count(*) n FROM device_retention WHERE serial = 'rt-forever'"), 0,
         "device rm removed the override")
    sp.pub("$tip/rt-global/push", b"[fresh:=1]", creds=sp.creds("rt-global"))
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='fresh'") == 1,
               what="fresh reading stored")

    # Invalid durations.
    for bad in ("5x", "1.5h", "-3d", "h", "10"):
        r = sp.cli("device", "set", "rt-global", "--retention", bad, check=False)
        c.check(r.returncode == 1 and "bad --retention" in r.stderr,
                f"device set --retention {bad}: exit {r.returncode} {r.stderr.strip()!r}")
    r = subprocess.run([h.SEALPIPE, "run", "--data-dir", os.path.join(tmp, "other"),
                        "--retention", "3 days"], capture_output=True, text=True)
    c.check(r.returncode == 2 and "retention: '3 days' is not a duration" in r.stderr,
            f"run --retention '3 days': exit {r.returncode} {r.stderr.strip()!r}")


if __name__ == "__main__":
    sys.exit(h.run(test))
