"""Fault injection with reconciliation (issue #13): `make chaos` runs every
scenario below against a real daemon, its embedded broker and QoS 1
publishers logged in as real devices (publisher.py), then checks that every
message a publisher got a PUBACK for is stored or dead-lettered exactly once
(reconcile.py). tests/integration/test_durable.py runs a reduced set.

Scenarios (python3 chaos.py [NAME...], default all):
  broker   kill -9 of the embedded broker, repeatedly, under load, each time
           while the daemon is held (SIGSTOP) so that the broker has a backlog
  daemon   kill -9 of the daemon under load, then a restart
  worker   kill -9 of the Lua worker under load (the daemon starts another)
  both     kill -9 of the daemon and its worker at once, then a restart
  dups     identical payloads (heartbeats) before and after broker and daemon
           restarts: each one sent is stored
  backlog  the daemon held (SIGSTOP) while devices publish at a high rate:
           everything stored afterwards, the broker's memory bounded, the
           catch-up rate printed
  diskfull a journal's free-space floor above the free space: devices get no
           PUBACK and both logs say "journal"; then a normal floor and the
           resent message stored; then the same on a real 64 MiB tmpfs

Sizes (environment):
  CHAOS_RATE         messages/s of the load scenarios (default 2000)
  CHAOS_KILLS        kills per kill scenario (default 5)
  CHAOS_DEVICES      devices, half MQTT 3.1.1, half MQTT 5 (default 4)
  CHAOS_PUBLISHERS   publisher processes (default 2)
  CHAOS_BACKLOG_S    how long the daemon is held in "backlog" (default 60)
  CHAOS_BACKLOG_RATE its rate (default 2000; the issue's case: 600 s at 5000)
  CHAOS_RSS_GROWTH_MB how much the broker's RSS may grow in "backlog" (32)
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)
import harness as h  # noqa: E402
import reconcile as rc  # noqa: E402
import publisher as pubmod  # noqa: E402


def env(name, default):
    return type(default)(os.environ.get(name, default))


# ---- the daemon, its broker and its worker -----------------------------------

def start(tmp, started, extra=(), ndev=4, analyses=None):
    """A daemon on tmp with ndev devices (half of them on MQTT 5)."""
    sp = h.Sealpipe(tmp, analyses=analyses,
                    extra=["--log-level", "info", "--stats-interval", "1", *extra])
    for i in range(ndev):
        sp.add_device(f"dev-{i:02d}", "--cipher", "none")
    sp.start()
    started.append(sp)
    started.append(Cleanup(sp))  # stopped first: resumes a held daemon
    return sp


class Cleanup:
    """Resumes a held daemon before the harness stops it."""

    def __init__(self, sp):
        self.sp = sp

    def stop(self):
        if self.sp.proc and self.sp.proc.poll() is None:
            self.sp.proc.send_signal(signal.SIGCONT)


def broker_pid(sp):
    try:
        with open(os.path.join(sp.data, "broker", "mosquitto.pid")) as f:
            pid = int(f.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def kill_broker9(sp, held=False):
    """kill -9 of the embedded broker (then resumes the daemon, if held by
    SIGSTOP); waits until the daemon has a new one running and listening.
    Returns the killed pid."""
    pid = broker_pid(sp)
    assert pid, "no embedded broker running"
    os.kill(pid, signal.SIGKILL)
    if held:
        sp.proc.send_signal(signal.SIGCONT)
    h.wait_for(lambda: broker_pid(sp) not in (None, pid) and h._listening(sp.port),
               timeout=30, what="the daemon restarting its broker")
    return pid


def children(pid):
    """Pids of pid's child processes, with their command names."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
        except OSError:
            continue
        comm = st[st.index("(") + 1:st.rindex(")")]
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        if ppid == pid:
            out.append((int(p), comm))
    return out


def worker_pids(sp):
    """The daemon's Lua workers: its children other than the broker."""
    if not sp.proc or sp.proc.poll() is not None:
        return []
    return [p for p, comm in children(sp.proc.pid) if "mosquitto" not in comm]


def kill_daemon9(sp):
    sp.proc.send_signal(signal.SIGKILL)
    sp.proc.wait()
    sp.log.close()
    sp.proc = None


def restart(sp):
    """Starts the daemon again (it adopts the broker left running)."""
    sp.start()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# ---- publishers -----------------------------------------------------------------

class Publishers:
    """nproc publisher.py processes sharing the devices of sp and a rate."""

    def __init__(self, sp, tmp, rate, duration=None, count=None, nproc=2, tip_every=10,
                 hb_every=7, drain=90, name="pub"):
        self.procs, self.outs = [], []
        self.stop_file = os.path.join(tmp, f"{name}.stop")
        serials = sorted(sp.devices)
        nproc = max(1, min(nproc, len(serials)))
        for i in range(nproc):
            devs = [{"serial": s, "token": sp.devices[s]["token"], "v5": j % 2 == 1}
                    for j, s in enumerate(serials) if j % nproc == i]
            out = os.path.join(tmp, f"{name}-{i}.json")
            cfg = dict(port=sp.port, devices=devs, rate=rate / nproc, duration=duration,
                       count=count, tip_every=tip_every, hb_every=hb_every, drain=drain,
                       out=out, stop_file=self.stop_file)
            path = os.path.join(tmp, f"{name}-{i}.conf.json")
            with open(path, "w") as f:
                json.dump(cfg, f)
            self.procs.append(subprocess.Popen([sys.executable,
                                                os.path.join(HERE, "publisher.py"), path]))
            self.outs.append(out)
        self.t0 = time.monotonic()

    def running(self):
        return any(p.poll() is None for p in self.procs)

    def wait(self, timeout=300):
        """Waits for the publishers; returns their merged results."""
        for p in self.procs:
            p.wait(timeout)
            if p.returncode != 0:
                raise AssertionError(f"a publisher exited with status {p.returncode}")
        return rc.load(self.outs)

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def publish(sp, tmp, started, **kw):
    p = Publishers(sp, tmp, **kw)
    started.append(p)
    return p


def settle_and_check(c, sp, devices, what, timeout=180):
    """Waits for the daemon to catch up, then reconciles."""
    db = os.path.join(sp.data, "sealpipe.db")
    n, t = rc.wait_caught_up(db, rc.acked_total(devices), timeout=timeout)
    print(f"     {what}: {n} messages committed, the count moved last {t:.1f} s after the "
          "publishers ended")
    return rc.check(c, db, devices, what)


def disconnects(devices):
    return sum(d["disconnects"] for d in devices)


# ---- scenarios -----------------------------------------------------------------

def scenario_broker(c, tmp, started, kills=None, rate=None, hold=2.0):
    """kill -9 of the broker `kills` times, each while the daemon has been held
    for `hold` s under load, so that the broker holds a backlog. At most 5:
    the daemon gives up on a broker that died 6 times a minute apart or less."""
    kills = min(5, kills or env("CHAOS_KILLS", 5))
    rate = rate or env("CHAOS_RATE", 2000)
    sp = start(tmp, started, ndev=env("CHAOS_DEVICES", 4))
    pubs = publish(sp, tmp, started, rate=rate, duration=kills * (hold + 1.5) + 2,
                   nproc=env("CHAOS_PUBLISHERS", 2))
    killed = []
    for _ in range(kills):
        time.sleep(1.0)
        sp.proc.send_signal(signal.SIGSTOP)
        time.sleep(hold)
        killed.append(kill_broker9(sp, held=True))
    devices = pubs.wait()
    c.eq(len(set(killed)), kills, "broker killed with SIGKILL, each time a new one")
    c.check(disconnects(devices) >= kills, f"publishers were cut off ({disconnects(devices)} "
            "disconnects) and reconnected")
    return settle_and_check(c, sp, devices, "broker kill -9")


def scenario_daemon(c, tmp, started, kills=None, rate=None):
    kills = kills or env("CHAOS_KILLS", 5)
    rate = rate or env("CHAOS_RATE", 2000)
    sp = start(tmp, started, ndev=env("CHAOS_DEVICES", 4))
    pubs = publish(sp, tmp, started, rate=rate, duration=kills * 2.0 + 2,
                   nproc=env("CHAOS_PUBLISHERS", 2))
    for _ in range(kills):
        time.sleep(1.5)
        kill_daemon9(sp)
        time.sleep(0.3)
        restart(sp)
    devices = pubs.wait()
    c.check("broker adopted" in sp.read_log(), "the restarted daemon adopted its broker")
    return settle_and_check(c, sp, devices, "daemon kill -9")


def scenario_worker(c, tmp, started, kills=None, rate=None, with_daemon=False):
    kills = kills or env("CHAOS_KILLS", 5)
    rate = rate or env("CHAOS_RATE", 2000)
    sp = start(tmp, started, ndev=env("CHAOS_DEVICES", 4))
    pubs = publish(sp, tmp, started, rate=rate, duration=kills * 2.0 + 2,
                   nproc=env("CHAOS_PUBLISHERS", 2))
    hit = 0
    for _ in range(kills):
        time.sleep(1.5)
        workers = h.wait_for(lambda: worker_pids(sp), timeout=20, what="a Lua worker")
        if with_daemon:
            sp.proc.send_signal(signal.SIGKILL)
        for w in workers:
            os.kill(w, signal.SIGKILL)
        print(f"     killed worker pids {workers}" + (" and the daemon" if with_daemon else ""))
        hit += 1
        if with_daemon:
            kill_daemon9(sp)
            time.sleep(0.3)
            restart(sp)
        else:
            h.wait_for(lambda: [w for w in worker_pids(sp) if w not in workers], timeout=20,
                       what="the daemon starting a new worker")
    devices = pubs.wait()
    what = "daemon and worker kill -9" if with_daemon else "worker kill -9"
    c.eq(hit, kills, f"{what}: kills")
    return settle_and_check(c, sp, devices, what)


def scenario_both(c, tmp, started, kills=None, rate=None):
    return scenario_worker(c, tmp, started, kills, rate, with_daemon=True)


def scenario_dups(c, tmp, started, rate=500, phase=2.5):
    """Identical payloads (every other message a heartbeat with the same bytes)
    across a clean daemon restart (its broker saves its state on the way
    down), a broker kill -9 (a broker restarted from an older save must not
    reuse an identity the daemon has committed) and a daemon kill -9."""
    sp = start(tmp, started, ndev=2)
    pubs = publish(sp, tmp, started, rate=rate, duration=phase * 4, nproc=1, tip_every=0,
                   hb_every=2)
    time.sleep(phase)
    sp.stop()
    restart(sp)
    time.sleep(phase)
    kill_broker9(sp)
    time.sleep(phase)
    kill_daemon9(sp)
    restart(sp)
    devices = pubs.wait()
    f = settle_and_check(c, sp, devices, "identical payloads across restarts")
    c.check(f["hb_acked"] > 0 and f["hb_stored"] >= f["hb_acked"],
            f"every PUBACKed heartbeat stored ({f['hb_stored']} of {f['hb_acked']})")
    return f


def scenario_backlog(c, tmp, started, seconds=None, rate=None, growth_mb=None):
    """The daemon held while devices publish: the backlog must not grow the
    broker's memory (it lives on disk), and must all be stored afterwards."""
    seconds = seconds or env("CHAOS_BACKLOG_S", 60)
    rate = rate or env("CHAOS_BACKLOG_RATE", 2000)
    growth_mb = growth_mb or env("CHAOS_RSS_GROWTH_MB", 32)
    sp = start(tmp, started, ndev=env("CHAOS_DEVICES", 4))
    bpid = broker_pid(sp)
    before = rss_kb(bpid)
    db = os.path.join(sp.data, "sealpipe.db")
    sp.proc.send_signal(signal.SIGSTOP)
    base = rc.handled(db)
    pubs = publish(sp, tmp, started, rate=rate, duration=seconds,
                   nproc=env("CHAOS_PUBLISHERS", 2), drain=60)
    devices = pubs.wait(seconds + 300)
    after = rss_kb(bpid)
    acked = rc.acked_total(devices)
    print(f"     backlog: {acked} messages PUBACKed in {seconds} s "
          f"({acked / seconds:.0f}/s) while the daemon was held")
    print(f"     broker VmRSS: {before / 1024:.1f} MiB before, {after / 1024:.1f} MiB after")
    sp.proc.send_signal(signal.SIGCONT)
    n, t = rc.wait_caught_up(db, base + acked, timeout=max(120, seconds * 3))
    if t > 0:
        print(f"     catch-up: {n - base} messages in {t:.1f} s: {(n - base) / t:.0f} msg/s")
    c.check(after - before <= growth_mb * 1024,
            f"broker RSS grew {(after - before) / 1024:.1f} MiB (bound {growth_mb} MiB) "
            f"for a backlog of {acked} messages")
    return rc.check(c, db, devices, "backlog")


# ---- disk nearly full -------------------------------------------------------------

def free_mb(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize // (1 << 20)


def probe_clients(sp, serials):
    """One publisher.Device per serial (MQTT 3.1.1 and 5 alternately),
    connected and looping, that publish one by one."""
    devs = []
    for i, s in enumerate(serials):
        cfg = {"port": sp.port, "tip_every": 0, "hb_every": 0}
        d = pubmod.Device(cfg, {"serial": s, "token": sp.devices[s]["token"], "v5": i % 2})
        d.start()
        devs.append(d)
    h.wait_for(lambda: all(d.cl.is_connected() for d in devs), timeout=10,
               what="probe clients connected")
    return devs


def broker_log(sp):
    try:
        with open(os.path.join(sp.data, "broker", "mosquitto.log"), errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def refused(c, sp, devs, what, since=(0, 0)):
    """Once the broker says its journal refuses (in its log after since[0];
    the daemon's log is read after since[1]), each dev publishes one message:
    none may get a PUBACK, each must be cut off, and both logs must say why."""
    h.wait_for(lambda: "refusing device publishes" in broker_log(sp)[since[0]:], timeout=15,
               what=f"{what}: the broker's journal refusing")
    marks = [len(d.sent) for d in devs]
    gone = [d.disconnects for d in devs]
    for d in devs:
        d.publish_next()
    h.wait_for(lambda: all(d.disconnects > g for d, g in zip(devs, gone)), timeout=15,
               what=f"{what}: refused clients cut off")
    time.sleep(1.0)  # a PUBACK would have come by now: the condition is its absence
    for d, m in zip(devs, marks):
        c.check(not pubmod.acked(d.sent[m][2]),
                f"{what}: {d.serial} (MQTT {'5' if d.v5 else '3.1.1'}) got no PUBACK, "
                f"was cut off (rc {d.last_rc!s})")
        if d.v5:
            got = raw_v5_publish(sp.port, sp.creds(d.serial), f"devices/{d.serial}/data",
                                 b'{"variable":"seq","value":999999999,"metadata":{}}')
            c.eq(got, [(0x20, 0), (0xE0, 0x80)], f"{what}: MQTT 5 on the wire: CONNACK, "
                 "then DISCONNECT 0x80 for the publish, no PUBACK")
    btext = broker_log(sp)[since[0]:]
    c.check("journal" in btext and "refusing" in btext,
            f"{what}: the broker's log says the journal refuses")
    dlog = sp.read_log()[since[1]:]
    c.check(any("ERROR" in ln and "journal" in ln for ln in dlog.splitlines()),
            f"{what}: the daemon logs an ERROR about the journal")


def _packet(sock):
    """(first byte, body) of the next MQTT packet, or None at EOF."""
    def read(n):
        b = b""
        while len(b) < n:
            chunk = sock.recv(n - len(b))
            if not chunk:
                return None
            b += chunk
        return b
    head = read(1)
    if head is None:
        return None
    length, shift = 0, 0
    while True:
        b = read(1)
        if b is None:
            return None
        length |= (b[0] & 0x7F) << shift
        shift += 7
        if not b[0] & 0x80:
            break
    body = read(length) if length else b""
    return None if body is None else (head[0], body)


def raw_v5_publish(port, creds, topic, payload):
    """One QoS 1 publish over a hand-made MQTT 5 connection; returns what the
    broker sent back until it closed: [(packet type byte, reason code)].
    paho 1.x does not report the reason code of a DISCONNECT that carries
    no properties, so this speaks the protocol itself."""
    import socket
    import struct

    def s(b):
        return struct.pack("!H", len(b)) + b

    def packet(first, body):
        n, enc = len(body), b""
        while True:
            n, digit = n >> 7, n & 0x7F
            enc += bytes([digit | (0x80 if n else 0)])
            if not n:
                return bytes([first]) + enc + body

    connect = (s(b"MQTT") + bytes([5, 0xC2]) + struct.pack("!H", 30) + b"\0" +
               s(b"chaos-raw-v5") + s(creds[0].encode()) + s(creds[1].encode()))
    publish = s(topic.encode()) + struct.pack("!H", 1) + b"\0" + payload
    got = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(packet(0x10, connect))
        p = _packet(sock)
        if p is None:
            return got
        got.append((p[0] & 0xF0, p[1][1] if len(p[1]) > 1 else 0))
        sock.sendall(packet(0x32, publish))
        while (p := _packet(sock)) is not None:
            if p[0] & 0xF0 == 0x40:  # PUBACK: packet id, then the reason code
                got.append((0x40, p[1][2] if len(p[1]) > 2 else 0))
            else:
                got.append((p[0] & 0xF0, p[1][0] if p[1] else 0))
    return got


def accepted(c, sp, devs, what):
    h.wait_for(lambda: all(pubmod.acked(i) for d in devs for _, _, i in d.sent),
               timeout=60, what=f"{what}: PUBACKs for the resent messages")
    results = [d.result() for d in devs]
    for d in devs:
        d.cl.disconnect()
        d.cl.loop_stop()
    return settle_and_check(c, sp, results, what)


def scenario_diskfull(c, tmp, started, tmpfs=True):
    floor = free_mb(tmp) + 1024
    sp = h.Sealpipe(tmp, extra=["--log-level", "info", "--journal-min-free-mb", str(floor)])
    for s in ("dev-00", "dev-01"):
        sp.add_device(s, "--cipher", "none")
    sp.start()
    started.append(sp)
    devs = probe_clients(sp, ["dev-00", "dev-01"])
    refused(c, sp, devs, "free space under --journal-min-free-mb")
    sp.stop()
    sp.extra = ["--log-level", "info"]
    restart(sp)
    accepted(c, sp, devs, "disk full, then room again")
    sp.stop()
    if tmpfs:
        tmpfs_case(c, tmp, started)


def tmpfs_case(c, tmp, started):
    """A real 64 MiB filesystem for the data directory, filled up."""
    fs = os.path.join(tmp, "fs")
    os.makedirs(fs)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", fs],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"SKIP tmpfs sub-case: mount failed ({r.stderr.strip()}): NOT tested")
        SKIPPED.append("diskfull on a real tmpfs (mount failed)")
        return
    started.insert(0, Unmount(fs))
    sp = h.Sealpipe(fs, extra=["--log-level", "info", "--journal-min-free-mb", "16"])
    sp.logpath = os.path.join(tmp, "tmpfs-sealpipe.log")
    for s in ("dev-00", "dev-01"):
        sp.add_device(s, "--cipher", "none")
    sp.start()
    started.append(sp)
    try:
        devs = probe_clients(sp, ["dev-00", "dev-01"])
        for d in devs:
            d.publish_next()
        h.wait_for(lambda: all(pubmod.acked(i) for d in devs for _, _, i in d.sent),
                   timeout=15, what="tmpfs: PUBACKs with room")
        since = (len(broker_log(sp)), len(sp.read_log()))
        filler = os.path.join(fs, "filler")
        with open(filler, "wb") as f:
            f.write(b"\0" * max(0, (free_mb(fs) - 8) << 20))
        print(f"     tmpfs: {free_mb(fs)} MiB free after filling, floor 16 MiB")
        refused(c, sp, devs, "tmpfs nearly full", since)
        os.unlink(filler)
        accepted(c, sp, devs, "tmpfs with room again")
    finally:  # the broker's log, kept where the unmount leaves it
        shutil.copy(os.path.join(sp.data, "broker", "mosquitto.log"),
                    os.path.join(tmp, "tmpfs-mosquitto.log"))


class Unmount:
    def __init__(self, path):
        self.path = path

    def stop(self):
        subprocess.run(["umount", "-l", self.path], capture_output=True)


SKIPPED = []  # sub-cases that could not run here: reported, never counted as passed

SCENARIOS = {
    "broker": scenario_broker,
    "daemon": scenario_daemon,
    "worker": scenario_worker,
    "both": scenario_both,
    "dups": scenario_dups,
    "backlog": scenario_backlog,
    "diskfull": scenario_diskfull,
}


def guarded(scenario, c, tmp, started):
    """Runs a scenario; an unexpected exception fails it (and only it)."""
    try:
        scenario(c, tmp, started)
    except AssertionError:
        raise
    except Exception as e:
        import traceback
        traceback.print_exc()
        raise AssertionError(f"{type(e).__name__}: {e}")


def main(names):
    failed, t0 = [], time.monotonic()
    for name in names or SCENARIOS:
        print(f"==== {name} ====", flush=True)
        t = time.monotonic()
        if h.run(lambda c, tmp, started: guarded(SCENARIOS[name], c, tmp, started)):
            failed.append(name)
        print(f"==== {name}: {time.monotonic() - t:.0f} s", flush=True)
    print(f"chaos: {len(names or SCENARIOS) - len(failed)} scenarios passed, "
          f"{len(failed)} failed {failed} in {time.monotonic() - t0:.0f} s")
    for what in SKIPPED:
        print(f"chaos: NOT tested: {what}")
    return 1 if failed else 0


if __name__ == "__main__":
    unknown = [n for n in sys.argv[1:] if n not in SCENARIOS]
    if unknown:
        sys.exit(f"unknown scenarios {unknown}; known: {' '.join(SCENARIOS)}")
    sys.exit(main(sys.argv[1:]))
