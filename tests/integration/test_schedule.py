"""Schedules (issue #17, point 1): `schedule = "every 1s"` with tick(ctx)
against the real daemon. Ticks come once per due time while it runs; a
stop of several periods makes exactly one tick when it is back, with
ctx.missed and ctx.previous; a tick longer than its period is never run
twice at once (the next waits, and says what it missed); a tick killed -9
in the middle runs again and stores once; a failing tick is a dead letter,
logged and counted, and the next one still runs; a bad spec fails the load
with the field named; a changed spec starts at its next due time."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

TICKER = """return {
  schedule = "%(spec)s",
  tick = function(ctx)
    insert({ variable = "tick", value = ctx.missed, group = tostring(ctx.scheduled),
             metadata = { previous = ctx.previous and tostring(ctx.previous) or "none" } },
           "clock-1")
  end,
}
"""
SLOW = """return {
  schedule = "every 1s",
  limits = { timeout_ms = 8000 },
  tick = function(ctx)
    local t = os.clock()
    while os.clock() - t < 2.5 do end
    insert({ variable = "slow", value = ctx.missed, group = tostring(ctx.scheduled) }, "clock-1")
  end,
}
"""
BROKEN = """return {
  schedule = "every 1s",
  tick = function(ctx) error("tick bug at " .. ctx.scheduled) end,
}
"""
BAD_SPEC = """return { schedule = "0 25 * * *", tick = function(ctx) end }
"""


def ticks(sp, variable="tick"):
    return sp.rows(f"SELECT value, group_id, metadata FROM data WHERE variable='{variable}' "
                   "ORDER BY CAST(group_id AS INTEGER)")


def test(c, tmp, started):
    an = os.path.join(tmp, "analyses")
    os.makedirs(an)

    def write(name, text):
        with open(os.path.join(an, name + ".lua"), "w") as f:
            f.write(text)

    write("ticker", TICKER % {"spec": "every 1s"})
    write("badspec", BAD_SPEC)
    sp = h.Sealpipe(tmp, analyses=an, extra=["--lua-error-budget", "0", "--lua-timeout-ms",
                                             "10000", "--lua-instructions", "2000000000"])
    sp.add_device("clock-1", "--cipher", "none")
    sp.start()
    started.append(sp)

    # A bad spec fails the load, with the field named.
    h.wait_for(lambda: "badspec" in sp.read_log(), what="the bad spec's load error")
    c.check("badspec.lua: schedule: hour field: 25 is out of range 0-23" in sp.read_log(),
            "a bad spec fails the load with the field named")

    # 1. While up: one tick per due time, in order, no gaps, no repeats.
    h.wait_for(lambda: len(ticks(sp)) >= 4, timeout=15, what="four ticks")
    t = ticks(sp)
    due = [int(r["group_id"]) for r in t]
    c.check(all(d % 1000 == 0 for d in due), f"due times are whole seconds: {due}")
    c.eq(due, list(range(due[0], due[0] + 1000 * len(due), 1000)), "one tick per second")
    c.eq([r["value"] for r in t], [0] * len(t), "none missed while up")
    prev = [json.loads(r["metadata"])["previous"] for r in t]
    c.eq(prev, ["none"] + [str(d) for d in due[:-1]], "ctx.previous is the last tick's due time")

    # 2. Stopped for about 4 periods: one tick when back, saying what it missed.
    sp.stop()
    last = int(ticks(sp)[-1]["group_id"])
    time.sleep(4.5)
    sp.start()
    h.wait_for(lambda: int(ticks(sp)[-1]["group_id"]) > last, timeout=10, what="a tick after start")
    time.sleep(2.5)
    after = [r for r in ticks(sp) if int(r["group_id"]) > last]
    first = after[0]
    gap = (int(first["group_id"]) - last) // 1000
    c.check(gap >= 4, f"the first tick after the stop is for the latest due time ({gap} s later)")
    c.eq(first["value"], gap - 1, "ctx.missed counts the due times in between")
    c.eq(json.loads(first["metadata"])["previous"], str(last), "ctx.previous the last before it")
    c.eq([r["value"] for r in after[1:]], [0] * (len(after) - 1), "then one per second again")
    c.check(sp.metric("sealpipe_ticks_missed_total") >= gap - 1, "missed ticks counted")

    # 3. A changed spec starts at its next due time: no catch-up.
    write("ticker", TICKER % {"spec": "every 3s"})
    h.wait_for(lambda: "analysis reloaded name=ticker" in sp.read_log(), what="the reload")
    time.sleep(1.5)  # a tick queued under the old spec may still come
    n = len(ticks(sp))
    time.sleep(7)
    new = ticks(sp)[n:]
    c.check(1 <= len(new) <= 3 and all(int(r["group_id"]) % 3000 == 0 for r in new),
            f"every 3s after the change: {[r['group_id'] for r in new]}")
    c.eq(new[0]["value"] if new else None, 0, "the first under the new spec misses nothing")

    # 4. A tick longer than its period: never two at once; the next says what it missed.
    os.remove(os.path.join(an, "ticker.lua"))
    write("slow", SLOW)
    h.wait_for(lambda: len(ticks(sp, "slow")) >= 3, timeout=30, what="three slow ticks")
    s = ticks(sp, "slow")
    due = [int(r["group_id"]) for r in s]
    c.check(all(b - a >= 2000 for a, b in zip(due, due[1:])),
            f"slow ticks never overlap: due times {due}")
    c.check(all(r["value"] >= 1 for r in s[1:]), f"each later one missed some: {[r['value'] for r in s]}")

    # 5. kill -9 in the middle of a slow tick: it runs again, stored once.
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM trigger_queue") +
               sp.count("SELECT count(*) n FROM deferred WHERE topic LIKE '$trigger#%'") > 0,
               timeout=10, interval=0.01, what="a slow tick waiting")
    time.sleep(0.5)
    sp.proc.send_signal(signal.SIGKILL)
    sp.proc.wait()
    before = {r["group_id"] for r in ticks(sp, "slow")}
    sp.stop()
    sp.start()
    h.wait_for(lambda: len(ticks(sp, "slow")) >= len(before) + 2, timeout=30,
               what="slow ticks after the kill")
    groups = [r["group_id"] for r in ticks(sp, "slow")]
    c.eq(len(groups), len(set(groups)), "each due time stored once across the kill")

    # 6. A failing tick: a dead letter, logged, counted, in the inspector; the next still runs.
    watch = subprocess.Popen([h.SEALPIPE, "inspect", "--all", "--json", "--data-dir", sp.data],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    os.remove(os.path.join(an, "slow.lua"))
    write("broken", BROKEN)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters WHERE "
                                "topic='$trigger#tick/broken'") >= 2, timeout=15,
               what="two failed ticks")
    d = sp.rows("SELECT reason, device, detail, payload FROM dead_letters WHERE "
                "topic='$trigger#tick/broken' ORDER BY id")
    c.eq({x["reason"] for x in d}, {"analysis_error"}, "a failed tick is an analysis_error")
    c.eq({x["device"] for x in d}, {None}, "of no device")
    sched = [json.loads(bytes(x["payload"]))["scheduled"] for x in d]
    c.check(len(set(sched)) == len(sched) and "tick bug at" in d[0]["detail"],
            f"each its own due time, with the error: {sched} {d[0]['detail']!r}")
    c.check("trigger failed topic=$trigger#tick/broken reason=analysis_error" in sp.read_log(),
            "logged as a WARN line")
    watch.terminate()
    seen = [json.loads(line) for line in watch.communicate(timeout=10)[0].splitlines()]
    kinds = [(e["kind"], e.get("topic", e.get("reason"))) for e in seen
             if e["kind"] in ("trigger", "dead_letter") and "broken" in json.dumps(e)]
    c.check(("trigger", "$trigger#tick/broken") in kinds and
            ("dead_letter", "analysis_error") in kinds,
            f"the inspector shows the tick and its dead letter: {kinds[:4]}")
    c.check(sp.metric('sealpipe_trigger_runs_total{kind="tick",result="failed"}') >= 2,
            "counted as failed")
    c.check(sp.metric('sealpipe_trigger_runs_total{kind="tick",result="ok"}') >= 1,
            "the good ones (since the last start) counted too")

    # 7. A schedule with nothing due writes nothing: another process holding
    # sealpipe.db's write lock does not hold up the daemon's stop (each step
    # began a transaction, which waited up to 5 s for the lock).
    os.remove(os.path.join(an, "broken.lua"))
    write("hourly", TICKER % {"spec": "0 0 1 1 *"})
    h.wait_for(lambda: "name=hourly" in sp.read_log(), what="the yearly schedule")

    time.sleep(1)
    con = sqlite3.connect(os.path.join(sp.data, "sealpipe.db"), timeout=10, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    time.sleep(3)
    t0 = time.time()
    rc = sp.stop()
    took = time.time() - t0
    con.execute("ROLLBACK")
    con.close()
    # About 1.5 s: the broker's stop, and the device status's 200 ms for the
    # lock at stop; a step waiting for the lock made it 3.5 s or more.
    c.check(rc == 0 and took < 2.5, f"stopped in {took:.1f} s (rc {rc}) while the lock was held")


if __name__ == "__main__":
    sys.exit(h.run(test))
