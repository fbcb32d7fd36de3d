"""A slow analysis delays only its own messages (issue #15 point 2). "slow"
takes 0.4 s of CPU per message (under every limit), "fast" is quick; their
devices publish together. The batch waits for its jobs only briefly: the
slow analysis's jobs go on running detached, their messages wait in the
deferred table, and the fast device's messages are stored while the slow
backlog is still being worked through (compared by what the database holds
when the last fast row appears, not by wall-clock thresholds). Every message
is stored exactly once, also when the daemon is killed with -9 while slow
jobs are detached, and restarted."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402
from test_lanes import start_fast_slow  # noqa: E402

SLOW = """
return {
  topics = { "slow/{serial}" },
  handle = function(msg)
    local t0 = os.clock()
    while os.clock() - t0 < 0.4 do end
    return { variable = "s", value = msg.payload }
  end,
}
"""

FAST = """
return {
  topics = { "fast/{serial}" },
  handle = function(msg) return { variable = "f", value = msg.payload } end,
}
"""

N = 8


def test(c, tmp, started):
    sp = start_fast_slow(tmp, started, FAST, SLOW, ["a-01", "b-01"])

    def values(var):
        return [r["value"] for r in sp.rows("SELECT value FROM data WHERE variable=?", var)]

    def burst(first):
        """N slow and N fast messages, published while the daemon is stopped
        so that they reach it together."""
        os.kill(sp.proc.pid, signal.SIGSTOP)
        try:
            for i in range(first, first + N):
                sp.pub("slow/a-01", b"s%d" % i)
                sp.pub("fast/b-01", b"f%d" % i)
        finally:
            os.kill(sp.proc.pid, signal.SIGCONT)

    sp.pub("fast/b-01", b"warm")
    h.wait_for(lambda: values("f") == ["warm"], what="a first message")

    # 1. The fast messages do not wait for the slow backlog.
    burst(0)
    slow_when_fast_done = None
    deadline = time.time() + 60
    while time.time() < deadline:
        f, s = len(values("f")), len(values("s"))
        if f == N + 1 and slow_when_fast_done is None:
            slow_when_fast_done = s
        if s == N:
            break
        time.sleep(0.02)
    c.check(slow_when_fast_done is not None and slow_when_fast_done < N // 2,
            f"every fast message stored while the slow backlog is worked through "
            f"(slow rows then: {slow_when_fast_done} of {N})")
    c.eq(sorted(values("s")), sorted(f"s{i}" for i in range(N)), "every slow message once")
    c.eq(sorted(values("f")), sorted(["warm"] + [f"f{i}" for i in range(N)]),
         "every fast message once")
    c.eq(sp.count("SELECT count(*) n FROM deferred"), 0, "nothing left deferred")

    # 2. kill -9 with slow jobs detached: after a restart, each message once.
    burst(N)
    h.wait_for(lambda: len(values("f")) == 2 * N + 1 and
               sp.count("SELECT count(*) n FROM deferred") > 0, timeout=30, interval=0.01,
               what="the fast messages stored, slow ones deferred")
    sp.stop(signal.SIGKILL)
    sp.start()
    h.wait_for(lambda: len(values("s")) >= 2 * N, timeout=60, what="the slow messages after a restart")
    time.sleep(1)
    c.eq(sorted(values("s")), sorted(f"s{i}" for i in range(2 * N)),
         "after kill -9 with jobs detached, every slow message stored once")
    c.eq(len(values("f")), 2 * N + 1, "... and every fast one")
    c.eq(sp.count("SELECT count(*) n FROM deferred"), 0, "... and none is left deferred")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters"), 0, "no dead letters")


if __name__ == "__main__":
    sys.exit(h.run(test))
