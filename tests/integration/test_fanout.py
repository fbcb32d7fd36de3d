"""A chain of run_analysis() calls that fans out (issue #17, review): each
run asks for ten more. The runs of one analysis that may wait are capped
(trigger_queue_max): past it the call fails its caller as a `limit` dead
letter, so the queue stays bounded; and another analysis's ticks, which are
read before such runs, keep coming on time meanwhile."""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

FANOUT = """return {
  topics = { "fan/{serial}" },
  handle = function(msg) for i = 1, 10 do run_analysis("fanout", "x") end end,
  run = function(ctx)
    local t = os.clock()
    while os.clock() - t < 0.002 do end
    for i = 1, 10 do run_analysis("fanout", "x") end
  end,
}
"""
TICKER = """return {
  schedule = "every 1s",
  tick = function(ctx)
    insert({ variable = "tick", value = ctx.missed, group = tostring(ctx.scheduled) }, "fan-1")
  end,
}
"""


def test(c, tmp, started):
    an = os.path.join(tmp, "analyses")
    os.makedirs(an)
    for name, text in (("fanout", FANOUT), ("ticker", TICKER)):
        with open(os.path.join(an, name + ".lua"), "w") as f:
            f.write(text)
    sp = h.Sealpipe(tmp, analyses=an, extra=["--trigger-queue-max", "500",
                                             "--lua-error-budget", "0"])
    sp.add_device("fan-1", "--cipher", "none")
    sp.start()
    started.append(sp)

    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='tick'") >= 2,
               what="the ticker running")
    sp.pub("fan/fan-1", b"go")
    most = 0
    t0 = time.time()
    while time.time() - t0 < 8:
        most = max(most, sp.count("SELECT count(*) n FROM trigger_queue WHERE kind='run'"))
        time.sleep(0.2)
    print(f"most runs waiting: {most}")
    c.check(250 <= most <= 500, f"the runs waiting stay at most at the cap of 500: {most}")
    # Ticks kept coming while the queue was full: one per second, none missed.
    late = sp.rows("SELECT value, group_id FROM data WHERE variable='tick' AND "
                   "CAST(group_id AS INTEGER) >= ? ORDER BY CAST(group_id AS INTEGER)",
                   int(t0 * 1000))
    c.check(len(late) >= 6, f"ticks while the chain ran: {len(late)} in 8 s")
    c.eq([r["value"] for r in late], [0] * len(late), "no tick missed its due time")
    # The chain ends (depth 8), bounded: no more than the cap per level.
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM trigger_queue") == 0, timeout=120,
               what="the chain's end")
    runs = sp.metric('sealpipe_trigger_runs_total{kind="run",result="ok"}', 0) + \
        sp.metric('sealpipe_trigger_runs_total{kind="run",result="failed"}', 0)
    c.check(runs <= 10 + 100 + 6 * 500 + 100, f"runs in all: {runs:.0f}, not 10^8")
    dl = sp.count("SELECT count(*) n FROM dead_letters WHERE reason='limit' AND "
                  "detail LIKE '%trigger_queue_max%'")
    c.check(dl > 0, f"calls past the cap fail their caller as limit dead letters ({dl})")
    size = os.path.getsize(os.path.join(sp.data, "sealpipe.db"))
    c.check(size < 64 * 1024 * 1024, f"sealpipe.db stays small: {size >> 20} MiB")


if __name__ == "__main__":
    sys.exit(h.run(test))
