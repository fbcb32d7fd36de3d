"""Analyses in two Lua workers (issue #15 point 2, first step): a worker that
dies running one analysis's message does not touch the analyses of the other
worker. "fast" counts its messages in a global, "slow" burns 0.3 s of CPU per
message; they load into different workers (each goes to the worker holding
the fewest). The slow one's worker is killed (kill -9) while it runs: the
message it was running is run again alone in a new worker and stored, every
slow message is stored once, and fast's count goes on where it was (with one
worker for both, its global would start again from 1)."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402
from test_crashblame import workers as worker_cpu  # noqa: E402

FAST = """
n = 0
return {
  topics = { "fast/{serial}" },
  handle = function(msg)
    n = n + 1
    return { variable = "n", value = n }
  end,
}
"""

SLOW = """
return {
  topics = { "slow/{serial}" },
  handle = function(msg)
    local t0 = os.clock()
    while os.clock() - t0 < 0.3 do end
    return { variable = "s", value = msg.payload }
  end,
}
"""


def workers(parent):
    """{pid: utime + stime in ticks} of the daemon's Lua workers."""
    return dict(worker_cpu(parent))


def start_fast_slow(tmp, started, fast, slow, serials):
    """The daemon with the analyses fast and slow (their sources) and two
    devices without keys, slow ones allowed 5 s a message."""
    analyses = os.path.join(tmp, "analyses")
    os.makedirs(analyses)
    for name, src in [("fast", fast), ("slow", slow)]:
        with open(os.path.join(analyses, name + ".lua"), "w") as f:
            f.write(src)
    sp = h.Sealpipe(tmp, analyses=analyses,
                    extra=["--lua-instructions", "2000000000", "--lua-timeout-ms", "5000"])
    for serial in serials:
        sp.add_device(serial, "--cipher", "none")
    sp.start()
    started.append(sp)
    return sp


def test(c, tmp, started):
    sp = start_fast_slow(tmp, started, FAST, SLOW, ["f-01", "s-01"])

    def fast_values():
        return [int(float(r["value"])) for r in
                sp.rows("SELECT value FROM data WHERE variable='n' ORDER BY id")]

    def slow_values():
        return sorted(r["value"] for r in sp.rows("SELECT value FROM data WHERE variable='s'"))

    for _ in range(2):
        sp.pub("fast/f-01", b"x")
    h.wait_for(lambda: len(fast_values()) == 2, what="two fast messages")
    before = workers(sp.proc.pid)
    c.eq(len(before), 2, "two Lua workers (the default)")

    for i in range(6):
        sp.pub("slow/s-01", b"s%d" % i)
    # The worker whose CPU time grows runs "slow": killed in mid-message.
    busy = None
    deadline = time.time() + 10
    while busy is None and time.time() < deadline:
        for pid, ticks in workers(sp.proc.pid).items():
            if pid in before and ticks - before[pid] >= 10:
                busy = pid
        time.sleep(0.02)
    c.check(busy is not None, "the slow analysis's worker found")
    if busy is None:
        return
    os.kill(busy, signal.SIGKILL)
    others = [p for p in before if p != busy]
    h.wait_for(lambda: len(slow_values()) == 6, timeout=30, what="every slow message")

    sp.pub("fast/f-01", b"x")
    h.wait_for(lambda: len(fast_values()) == 3, what="the third fast message")
    time.sleep(0.5)
    c.eq(slow_values(), [f"s{i}" for i in range(6)], "every slow message stored once")
    c.eq(fast_values(), [1, 2, 3], "fast's global counts on: its worker was not touched")
    now = workers(sp.proc.pid)
    c.check(others and others[0] in now and busy not in now and len(now) == 2,
            f"only the killed worker was replaced: {sorted(before)} -> {sorted(now)}")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters"), 0, "no dead letters")
    c.check("running it again, alone, in a new worker" in sp.read_log(),
            "the message the killed worker ran was run again alone")


if __name__ == "__main__":
    sys.exit(h.run(test))
