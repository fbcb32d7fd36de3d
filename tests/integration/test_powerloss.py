"""Power loss (issue #13, point 5): what the device journal keeps when the
machine loses power, and how old the acknowledged data it can lose may be.

The embedded mosquitto runs with tests/powerloss/syncwatch.so preloaded
(through a wrapper given to --mosquitto): it logs every open, write,
fdatasync/fsync and close under <data>/journal with CLOCK_MONOTONIC times
and hard-links each new segment into a mirror. Devices publish at QoS 1
with paho, 300-byte payloads, and note when each PUBACK arrives
(time.monotonic_ns(), CLOCK_MONOTONIC too). tests/powerloss/check.py then
replays the log as a filesystem that drops every write not made durable by
a completed fdatasync (and every segment whose directory was not fsynced
after its creation) for crash instants T across the run, parses what would
survive, and asserts:

  - --journal-sync-ms 100 (the default) at ~2,000 msg/s: no message
    acknowledged before T - (100 ms + 2 x the longest fdatasync seen + a
    scheduling margin) is lost at any T (a message written just after a
    sync began waits for it, the flusher's 100 ms and the next sync); the
    margin is 50 ms + the longest wake-up delay a probe process sees during
    the run (on a loaded machine the flusher wakes up late too);
  - --journal-sync-ms 0: nothing acknowledged is lost at any T;
  - --journal-sync-ms 100 again, with the broker's wall clock stepped back
    3 s just after it starts (syncwatch's SYNCWATCH_CLOCK_BACK_MS, as NTP
    does to a machine that booted with its clock ahead): the same window;
  - --journal-sync-ms 100 again, the broker killed with -9 halfway: the
    same window plus the time until the next broker starts, which must sync
    what the dead one left unsynced.

Both runs also check that the daemon stored every acknowledged message
exactly once. On a daemon without the journal the options are refused and
the test fails."""

import os
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "powerloss"))
import harness as h  # noqa: E402
import check as pl  # noqa: E402

DEVICES = 3
PAYLOAD = 300


def shim_path(tmp):
    """build/syncwatch.so (CMake builds it next to sealpipe), else built here."""
    so = os.path.join(os.path.dirname(os.path.abspath(h.SEALPIPE)), "syncwatch.so")
    if os.path.exists(so):
        return so
    so = os.path.join(tmp, "syncwatch.so")
    src = os.path.join(h.SOURCE, "tests", "powerloss", "syncwatch.c")
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", so, src, "-ldl", "-lpthread"],
                   check=True)
    return so


def wrapper(tmp, so, journal, log, mirror, clock_back_ms):
    """A --mosquitto that runs the real one with syncwatch preloaded."""
    path = os.path.join(tmp, "syncwatch-mosquitto")
    with open(path, "w") as f:
        f.write("#!/bin/sh\n"
                f"export LD_PRELOAD='{so}' SYNCWATCH_DIR='{journal}' SYNCWATCH_LOG='{log}'\n"
                f"export SYNCWATCH_MIRROR='{mirror}'\n" +
                (f"export SYNCWATCH_CLOCK_BACK_MS={clock_back_ms}\n" if clock_back_ms else "") +
                f"exec {h.MOSQUITTO} \"$@\"\n")
    os.chmod(path, 0o755)
    return path


class Device:
    """One device's paho client; acks[mid] is when its PUBACK arrived."""

    def __init__(self, sp, serial):
        self.serial = serial
        self.topic = f"$tip/{serial}/push"
        self.sent = []  # (mid, payload)
        self.acks = {}
        self.lock = threading.Lock()
        self.cl = sp.client(sp.creds(serial), client_id="pl-" + serial)
        self.cl.max_inflight_messages_set(100)
        self.cl.on_publish = self.on_publish
        self.cl.connect("127.0.0.1", sp.port)
        self.cl.loop_start()

    def on_publish(self, client, userdata, mid):
        t = time.monotonic_ns()
        with self.lock:
            self.acks[mid] = t

    def publish(self, seq):
        body = f"[seq:={seq};fill=".encode()
        payload = body + b"x" * (PAYLOAD - len(body) - 1) + b"]"
        info = self.cl.publish(self.topic, payload, qos=1)
        self.sent.append((info.mid, payload))

    def acked(self):
        with self.lock:
            return sum(1 for mid, _ in self.sent if mid in self.acks)

    def close(self):
        self.cl.disconnect()
        self.cl.loop_stop()


def publish(devs, rate, seconds, midway=None):
    """rate msg/s spread over the devices for seconds, paced every 10 ms;
    midway() is called once, halfway through."""
    total, seq = int(rate * seconds), 0
    t0 = time.monotonic()
    while seq < total:
        if midway and seq >= total // 2:
            midway()
            midway = None
        due = min(total, int((time.monotonic() - t0) * rate))
        while seq < due:
            devs[seq % len(devs)].publish(seq // len(devs))
            seq += 1
        time.sleep(0.01)
    return total


def tail_synced(log):
    """True once the log shows a segment fdatasync/fsync that started after
    the last write to a segment ended."""
    try:
        events = [e for e in pl.read_log(log) if e["path"].endswith(".jnl")]
    except OSError:
        return False
    last = max((e["t1"] for e in events if e["op"] == "write"), default=None)
    return last is not None and any(e["op"] in ("fdatasync", "fsync") and e["t0"] >= last and
                                    e["result"] == 0 for e in events)


# A process of its own (no GIL shared with paho) that sleeps 5 ms at a time
# and prints how late, at most, it woke up: the machine's scheduling delay
# while the broker runs, which delays the flusher's wake-ups alike.
PROBE = """
import sys, time
end, worst = time.monotonic() + float(sys.argv[1]), 0.0
while time.monotonic() < end:
    t = time.monotonic()
    time.sleep(0.005)
    worst = max(worst, time.monotonic() - t - 0.005)
print(worst * 1000)
"""


def start_probe(seconds):
    return subprocess.Popen([sys.executable, "-c", PROBE, str(seconds)], stdout=subprocess.PIPE,
                            text=True)


# Long because it is one whole run: start, publish, reconcile, then check_journal().
def broker_pid(sp):
    try:
        with open(os.path.join(sp.data, "broker", "mosquitto.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def kill9_broker(sp, killed):
    """kill -9 of the embedded broker (the daemon starts a new one)."""
    pid = broker_pid(sp)
    os.kill(pid, signal.SIGKILL)
    killed.append((pid, time.monotonic_ns()))


def run_case(c, tmp, started, so, sync_ms, rate, seconds, clock_back_ms=0, kill9=False):
    name = f"sync{sync_ms}" + (f"-clockback{clock_back_ms}" if clock_back_ms else "") + \
        ("-kill9" if kill9 else "")
    run_tmp = os.path.join(tmp, name)
    os.makedirs(run_tmp)
    data = os.path.join(run_tmp, "data")
    journal, log = os.path.join(data, "journal"), os.path.join(run_tmp, "syncwatch.log")
    mirror = os.path.join(run_tmp, "mirror")
    os.makedirs(mirror)
    mosq = wrapper(run_tmp, so, journal, log, mirror, clock_back_ms)
    sp = h.Sealpipe(run_tmp, extra=["--mosquitto", mosq, "--journal", "on",
                                    "--journal-sync-ms", str(sync_ms)])
    serials = [f"pl-{name}-{i}" for i in range(DEVICES)]
    for s in serials:
        sp.add_device(s, "--cipher", "none")
    sp.start()
    started.append(sp)
    devs = [Device(sp, s) for s in serials]
    probe = start_probe(seconds + 1)
    killed = []
    total = publish(devs, rate, seconds, (lambda: kill9_broker(sp, killed)) if kill9 else None)
    if kill9:
        h.wait_for(lambda: broker_pid(sp) not in (None, killed[0][0]) and
                   os.path.exists(f"/proc/{broker_pid(sp)}"), timeout=30,
                   what="the daemon's new broker")
    h.wait_for(lambda: sum(d.acked() for d in devs) == total, timeout=60,
               what=f"{total} PUBACKs")
    for d in devs:
        d.close()
    stored = lambda: sp.count("SELECT count(*) n FROM data WHERE variable = 'seq'")  # noqa: E731
    h.wait_for(lambda: stored() >= total, timeout=60, what=f"{total} messages stored")
    if sync_ms:  # the flusher makes the tail durable with its next sync
        try:
            h.wait_for(lambda: tail_synced(log), timeout=10, what="a sync")
            c.check(True, f"{name}: the flusher synced the segment after its last write")
        except AssertionError as e:
            c.check(False, f"{name}: the flusher synced the segment after its last write ({e})")
    end_ns = time.monotonic_ns()
    per_dev = sp.rows("SELECT device, count(*) n, count(DISTINCT value) d FROM data "
                      "WHERE variable = 'seq' GROUP BY device ORDER BY device")
    got = {r["device"]: (r["n"], r["d"]) for r in per_dev}
    want = {d.serial: (len(d.sent), len(d.sent)) for d in devs}
    if kill9:  # a publish the killed broker journaled but did not acknowledge comes again
        dups = sum(n - k for n, k in got.values())
        c.check({k: v[1] for k, v in got.items()} == {k: v[1] for k, v in want.items()},
                f"{name}: every acknowledged message stored ({dups} sent again and stored "
                f"twice; per device (rows, distinct seq) {got})")
    else:
        c.check(got == want, f"{name}: every acknowledged message stored once "
                             f"({sum(n for n, _ in got.values())} rows of {total} sent; "
                             f"per device (rows, distinct seq) {got})")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters"), 0, f"{name}: no dead letters")
    acks = [(d.acks[mid], d.topic.encode(), payload) for d in devs for mid, payload in d.sent]
    print(f"---- check.py, {name}: --journal-sync-ms {sync_ms}, {total} messages in {seconds} s"
          + (f", the wall clock stepped back {clock_back_ms} ms" if clock_back_ms else "") +
          " ----")
    check_journal(c, name, sync_ms, run_tmp, acks, float(probe.communicate(timeout=30)[0]),
                  end_ns, killed[0][1] if killed else None)
    sp.stop()
    sp.kill_embedded_broker()


def restart_delay_ms(log, killed_ns):
    """From the kill -9 to the first call the next broker made in the journal."""
    later = [e["t0"] for e in pl.read_log(log) if e["t0"] > killed_ns]
    return (min(later) - killed_ns) / 1e6 if later else 0.0


def check_journal(c, name, sync_ms, run_tmp, acks, late_ms, end_ns, killed_ns=None):
    """check.py over one run's log, against its PUBACKs. After a kill -9 of
    the broker no one can sync until the next broker starts: the margin
    grows by that delay, no more."""
    journal = os.path.join(run_tmp, "data", "journal")
    log, mirror = os.path.join(run_tmp, "syncwatch.log"), os.path.join(run_tmp, "mirror")
    restart_ms = restart_delay_ms(log, killed_ns) if killed_ns else 0.0
    if killed_ns:
        print(f"---- the next broker touched the journal {restart_ms:.1f} ms after the kill -9; "
              "the margin grows by that ----")
    print(f"---- scheduling: a probe process woke up to {late_ms:.1f} ms late during the run; "
          f"the margin is 50 ms + that ----")
    r = pl.check(log, journal, mirror, acks, sync_ms, margin_ms=50 + late_ms + restart_ms,
                 n_random=1000,
                 end_ns=end_ns, per_t=os.path.join(run_tmp, "per-t.csv"))
    c.eq(r["journaled"], len(acks), f"{name}: acknowledged messages in the journal "
                                    f"({r['segments']} segment(s))")
    c.eq(r["never"], 0, f"{name}: acknowledged messages never synced by the end of the run")
    c.check(r["dir_syncs"] >= 1, f"{name}: the journal directory was fsynced "
                                 f"({r['dir_syncs']} times)")
    c.eq(r["problems"], [], f"{name}: the log fits the model (appends, syncs that succeed, "
                            "a directory fsync after each new segment)")
    c.check(r["instants"] >= 1000, f"{name}: {r['instants']} crash instants tried")
    if sync_ms:
        c.check(r["worst_ns"] <= r["allowed_ns"],
                f"{name}: worst age of acknowledged, unsynced data {r['worst_ns'] / 1e6:.1f} ms "
                f"<= {sync_ms} + 2 x the longest fdatasync {r['longest_sync_ns'] / 1e6:.1f} "
                f"+ 50 + {late_ms:.1f} ms (the probe's delay)" +
                (f" + {restart_ms:.1f} ms (the restart)" if killed_ns else ""))
        c.eq(r["t_lost_allowed"], 0, f"{name}: instants T losing a message acknowledged before "
                                     "T - that bound")
    else:
        c.eq(r["max_lost"], 0, f"{name}: acknowledged messages lost at the worst T")
        c.eq(r["worst_ns"], 0, f"{name}: worst age of acknowledged, unsynced data (ns)")


def test(c, tmp, started):
    so = shim_path(tmp)
    run_case(c, tmp, started, so, 100, rate=2000, seconds=10)
    run_case(c, tmp, started, so, 0, rate=500, seconds=4)
    # The window is an interval: a step of the wall clock must not stretch it.
    run_case(c, tmp, started, so, 100, rate=2000, seconds=4, clock_back_ms=3000)
    # A broker killed with -9 leaves up to journal_sync_ms of acknowledged messages
    # unsynced in its last segment: its successor must sync them, not only the kernel.
    run_case(c, tmp, started, so, 100, rate=2000, seconds=6, kill9=True)


if __name__ == "__main__":
    sys.exit(h.run(test))
