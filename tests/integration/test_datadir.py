"""The data directory belongs to one daemon (issue #10, point 12).

A second `sealpipe run` on a data directory in use exits at once with an error
naming the pid that holds it, and the first daemon keeps its broker, its MQTT
session and its data. A daemon killed with -9 leaves no stale lock: the next
one starts (and adopts the broker it left). Commands that only read the
registry say so when the data directory does not exist instead of creating
it; commands that write keep working while the daemon runs."""

import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402


def device_pub(sp, dev, body):
    """Publishes at QoS 1 as the device itself (username Token, its token)."""
    r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(sp.port), "-q", "1",
                        "-u", "Token", "-P", dev["token"], "-t", f"$tip/{dev['serial']}/push",
                        "-m", body], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise AssertionError(f"mosquitto_pub failed: {r.stderr}")


def stored(sp, serial, variable):
    return sp.count("SELECT count(*) n FROM data WHERE device = ? AND variable = ?",
                    serial, variable)


def cli(data, *args):
    return subprocess.run([h.SEALPIPE, *args, "--data-dir", data], capture_output=True,
                          text=True, timeout=10)


def second_daemon(c, sp, tmp):
    """Runs a second daemon on sp's data directory; it must exit at once."""
    log = os.path.join(tmp, "second.log")
    with open(log, "w") as f:
        t0 = time.monotonic()
        p = subprocess.Popen([h.SEALPIPE, "run", "--data-dir", sp.data, "--analyses-dir",
                              sp.analyses, "--port", str(h.free_port())], stdout=f,
                             stderr=subprocess.STDOUT)
        try:
            rc = p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()  # SIGKILL: it must not stop anything on its way out
            rc = p.wait()
            rc = f"still running after 5 s (killed, {rc})"
        took = time.monotonic() - t0
    with open(log) as f:
        out = f.read()
    c.check(isinstance(rc, int) and rc != 0, f"a second daemon exits non-zero ({rc})")
    c.check(took < 3, f"... at once ({took:.2f} s)")
    c.check(f"pid {sp.proc.pid}" in out and "in use" in out,
            f"... naming the pid that holds the data directory ({out.strip()[-300:]!r})")


def test(c, tmp, started):
    sp = h.Sealpipe(tmp)
    dev = sp.add_device("dev-a", "--cipher", "none")
    sp.start()
    started.append(sp)
    device_pub(sp, dev, "[before:=1]")
    h.wait_for(lambda: stored(sp, "dev-a", "before"), what="the first publish stored")
    log_at = len(sp.read_log())

    # --- a second daemon on the same data directory --------------------------
    second_daemon(c, sp, tmp)
    c.check(sp.proc.poll() is None, "the first daemon is still running")
    device_pub(sp, dev, "[after:=1]")
    try:
        h.wait_for(lambda: stored(sp, "dev-a", "after"), timeout=5, what="after")
    except AssertionError:
        pass
    c.eq(stored(sp, "dev-a", "after"), 1, "the first daemon still stores a device's publish")
    time.sleep(0.5)  # a disconnect storm, if any, shows within this
    tail = sp.read_log()[log_at:]
    c.eq(tail.count("mqtt disconnected") + tail.count("mqtt connected"), 0,
         "no disconnect or reconnect in the first daemon's log")
    c.check("broker exited" not in tail, "the first daemon's broker kept running")

    # --- registry commands while the daemon runs -----------------------------
    r = cli(sp.data, "device", "add", "dev-b", "--cipher", "none", "--json")
    c.eq(r.returncode, 0, f"device add works while the daemon runs ({r.stderr.strip()})")
    r = cli(sp.data, "device", "list")
    c.check(r.returncode == 0 and "dev-b" in r.stdout, "device list works while it runs")

    # --- read-only commands on a data directory that does not exist ----------
    missing = os.path.join(tmp, "nope")
    for args in (("device", "list"), ("device", "show", "dev-a"), ("token", "list", "dev-a"),
                 ("profile", "list"), ("device", "rm", "dev-a"),
                 ("token", "revoke", "dev-a", "x"), ("key", "rotate", "dev-a"),
                 ("device", "cmd", "dev-a", "reboot")):
        r = cli(missing, *args)
        what = " ".join(args[:2])
        c.check(r.returncode == 1 and "does not exist" in r.stderr and missing in r.stderr,
                f"{what} on a missing data directory says so ({r.stderr.strip()!r})")
        c.check(not os.path.exists(missing), f"... and creates nothing")
    empty = os.path.join(tmp, "empty")
    os.mkdir(empty)
    r = cli(empty, "device", "list")
    c.check(r.returncode == 1 and "no registry" in r.stderr,
            f"device list on an empty directory says it holds no registry ({r.stderr.strip()!r})")
    c.eq(os.listdir(empty), [], "... and creates nothing in it")
    fresh = os.path.join(tmp, "fresh")
    r = cli(fresh, "device", "add", "dev-z", "--cipher", "none")
    c.check(r.returncode == 0 and os.path.exists(os.path.join(fresh, "sealpipe.db")),
            "device add still creates a new data directory")

    # --- kill -9: the kernel releases the lock; the next daemon starts -------
    sp.stop(signal.SIGKILL)
    sp.start()
    c.check(sp.proc.poll() is None, "a daemon starts after the previous one was killed -9")
    c.check("broker adopted" in sp.read_log(),
            "... and adopts the broker the killed daemon left running")
    device_pub(sp, dev, "[restarted:=1]")
    h.wait_for(lambda: stored(sp, "dev-a", "restarted"), what="the publish after restart")
    c.eq(stored(sp, "dev-a", "restarted"), 1, "... and stores a device's publish")
    second_daemon(c, sp, tmp)


if __name__ == "__main__":
    sys.exit(h.run(test))
