"""Stopping never kills a broker that is still saving (issue #13, point 7):
on SIGTERM mosquitto saves its queued messages before it exits, which takes
seconds with a large backlog. The daemon waits for as long as the save grows
and kills the broker only when it stops making progress. A stand-in
mosquitto (tools/slow-stopping-mosquitto) takes 8 s to save."""

import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

SLOW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tools",
                    "slow-stopping-mosquitto")


def test(c, tmp, started):
    sp = h.Sealpipe(tmp, extra=["--mosquitto", SLOW])
    sp.start()
    started.append(sp)
    t0 = time.monotonic()
    sp.proc.send_signal(signal.SIGTERM)
    rc = sp.proc.wait(timeout=60)
    took = time.monotonic() - t0
    c.eq(rc, 0, "the daemon stops cleanly")
    c.check(os.path.exists(os.path.join(sp.data, "broker", "saved")),
            f"the broker finished its save ({took:.1f} s) instead of being killed")
    c.check("killing" not in sp.read_log(), "no kill in the log")
    c.check("still saving its queue" in sp.read_log(), "the wait is logged")


if __name__ == "__main__":
    sys.exit(h.run(test))
