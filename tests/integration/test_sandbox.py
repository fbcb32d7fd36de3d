"""Hostile analyses are contained (issue #3): each one's message becomes a
dead letter naming the cause, the daemon keeps running, and a well-behaved
analysis keeps storing other devices' messages. Scripts: tests/integration/
hostile/*.lua. Also checks the worker process is locked down."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

HOSTILE = os.path.join(os.path.dirname(__file__), "hostile")

# script -> reasons that count as contained
EXPECT = {
    "loop": {"timeout"},
    "loop_pcall": {"timeout"},
    "loop_coroutine": {"timeout"},
    "membomb": {"memory", "timeout"},
    "rep": {"analysis_error"},
    "tmove": {"analysis_error"},
    "pattern": {"timeout"},
    "dump": {"analysis_error"},
    "load": {"analysis_error"},
    "strmeta": {"analysis_error"},
    "recurse": {"analysis_error", "timeout", "memory"},
    "huge": {"analysis_error", "timeout", "memory", "limit"},
    "cyclic": {"analysis_error"},
    "close": {"analysis_error"},
    "io": {"analysis_error"},
    "exec": {"analysis_error"},
}


def worker_pids(parent):
    """Pids of the Lua workers whose parent is the daemon's pid."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if len(argv) > 1 and argv[1] == b"__worker" and ppid == parent:
                pids.append(int(d))
    return pids


def test(c, tmp, started):
    sp = h.Sealpipe(tmp, analyses=HOSTILE, extra=["--lua-timeout-ms", "1000"])
    sp.add_device("bad-01", "--cipher", "none")
    sp.add_device("ok-01", "--cipher", "none")
    sp.start()
    started.append(sp)

    mine = worker_pids(sp.proc.pid)
    c.eq(len(mine), 2, "two Lua worker processes (the default `workers`)")
    for pid in mine:
        with open(f"/proc/{pid}/status") as f:
            st = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        c.eq(st.get("Seccomp"), "2", "the worker runs under a seccomp filter")
        c.eq(st.get("NoNewPrivs"), "1", "the worker cannot gain privileges")
        if os.geteuid() == 0:
            c.check(st.get("Uid", "").split()[0] == "65534", "the worker dropped root")
        fds = sorted(int(x) for x in os.listdir(f"/proc/{pid}/fd"))
        c.eq(fds, [0, 1, 2, 3, 4], "the worker holds only stdio and its two sockets")
    c.check("bytecode" in sp.read_log() and "analysis loaded name=bytecode" not in sp.read_log(),
            "a bytecode file is refused at load, with the reason logged")

    payload = b"a" * 4096
    for i, name in enumerate(EXPECT):
        sp.pub(f"h/{name}/bad-01", payload, creds=sp.creds("bad-01"))
        sp.pub("h/good/ok-01", b"m%d" % i, creds=sp.creds("ok-01"))
    n = len(EXPECT)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters") >= n and
               sp.count("SELECT count(*) n FROM data WHERE device='ok-01'") >= n,
               timeout=120, what="every message handled")
    dead = {r["topic"].split("/")[1]: r for r in sp.rows("SELECT * FROM dead_letters")}
    for name, ok in EXPECT.items():
        r = dead.get(name)
        c.check(r is not None and r["reason"] in ok and r["detail"],
                f"{name}: {r['reason'] + ': ' + r['detail'][:100] if r else 'no dead letter'}")
    good = sorted(r["value"] for r in sp.rows("SELECT value FROM data WHERE device='ok-01'"))
    c.eq(good, sorted("M%d" % i for i in range(n)), "every other device's message stored")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE device='bad-01'"), 0,
         "nothing of the hostile scripts was stored")
    c.check(not os.path.exists("/tmp/sealpipe-pwned"), "no process was run")
    c.check(sp.proc.poll() is None, "daemon still running")
    last = worker_pids(sp.proc.pid)
    c.eq(len(last), 2, "two workers again after the kills")
    c.eq(sp.stop(), 0, "daemon stops cleanly")
    c.check(all(not os.path.exists(f"/proc/{p}") for p in last), "no worker left behind")


if __name__ == "__main__":
    sys.exit(h.run(test))
