"""Durable from the broker's PUBACK (issue #13), the reduced fault suite of
`make chaos` (tests/chaos/chaos.py, which says what each scenario does):
the embedded broker killed with SIGKILL twice while the daemon is behind,
identical payloads (heartbeats) across broker and daemon restarts, a short
backlog with the daemon held, and a journal refusing devices when its disk
is nearly full. Each ends with a reconciliation of what the QoS 1
publishers (real devices, MQTT 3.1.1 and 5) got a PUBACK for against
sealpipe.db: none missing, none doubled."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "chaos"))
import chaos  # noqa: E402
import harness as h  # noqa: E402


def test(c, tmp, started):
    cases = [
        ("broker", lambda t, s: chaos.scenario_broker(c, t, s, kills=2, rate=1000, hold=1.5)),
        ("dups", lambda t, s: chaos.scenario_dups(c, t, s, rate=400, phase=1.5)),
        ("backlog", lambda t, s: chaos.scenario_backlog(c, t, s, seconds=8, rate=1500,
                                                        growth_mb=16)),
        ("diskfull", lambda t, s: chaos.scenario_diskfull(c, t, s, tmpfs=False)),
    ]
    for name, case in cases:
        print(f"---- {name}")
        sub = os.path.join(tmp, name)
        os.makedirs(sub)
        try:
            case(sub, started)
        except AssertionError as e:  # the next case still runs
            c.check(False, f"{name}: aborted: {e}")
        finally:
            for s in reversed(started):
                try:
                    s.stop()
                    if isinstance(s, h.Sealpipe):
                        s.kill_embedded_broker()
                except Exception as e:
                    print(f"cleanup: {e}")
            del started[:]


if __name__ == "__main__":
    sys.exit(h.run(test))
