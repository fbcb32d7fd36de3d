"""Conditions on stored data (issue #17, point 3): `when` with
condition(c), against the real daemon and devices publishing TagoIO JSON.
above with hysteresis fires on entering, not on every message above; below,
equals and changes; `for` fires without a new record once it held long
enough, and a record that breaks it re-arms; a `devices` tag scope; a
threshold from the device's param; a backfill fires nothing; several
conditions of one analysis make one run per message; a run whose records
committed before a kill -9 still runs, once."""

import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

INGEST = """return { topics = { "data/{serial}" }, handle = function(msg) return msg.records end }
"""
ALERT = """return {
  when = { variable = "temperature", above = { param = "threshold", default = 30 },
           hysteresis = 1 },
  condition = function(c)
    return { variable = "alert", value = c.value,
             metadata = { previous = tostring(c.previous), cond = c.condition,
                          threshold = c.threshold, variable = c.variable } }
  end,
}
"""
MULTI = """return {
  when = {
    { variable = "humidity", below = 20 },
    { variable = "door", equals = "open" },
    { variable = "mode", changes = true },
    { variable = "humidity", below = 25 },
  },
  devices = { tags = { site = "north" } },
  condition = function(c)
    return { variable = "multi", value = c.variable .. ":" .. tostring(c.value),
             metadata = { cond = c.condition } }
  end,
}
"""
HOLD = """return {
  when = { variable = "pressure", above = 100, ["for"] = "2s" },
  condition = function(c)
    return { variable = "held", value = c.value, metadata = { since = c.since } }
  end,
}
"""
MANY = """return {
  topics = { "many/{serial}" },
  handle = function(msg)
    for _, v in ipairs({ 40, 10, 40, 10, 40 }) do
      insert({ variable = "temperature", value = v })
    end
  end,
}
"""
SLOW = """return {
  when = { variable = "level", above = 5 },
  condition = function(c)
    local t = os.clock()
    while os.clock() - t < 0.5 do end
    return { variable = "slow", value = c.value }
  end,
}
"""


def test(c, tmp, started):
    an = os.path.join(tmp, "analyses")
    os.makedirs(an)
    for name, text in (("ingest", INGEST), ("alert", ALERT), ("multi", MULTI), ("hold", HOLD),
                       ("slow", SLOW), ("many", MANY)):
        with open(os.path.join(an, name + ".lua"), "w") as f:
            f.write(text)
    sp = h.Sealpipe(tmp, analyses=an, extra=["--lua-instructions", "2000000000"])
    sp.add_device("north-1", "--cipher", "none", "--tag", "site=north")
    sp.add_device("south-1", "--cipher", "none", "--tag", "site=south")
    sp.add_device("hot-1", "--cipher", "none", "--param", "threshold=50")
    sp.start()
    started.append(sp)

    def send(serial, variable, value, t=None):
        rec = {"variable": variable, "value": value}
        if t is not None:
            rec["time"] = t
        sp.pub(f"data/{serial}", json.dumps([rec]).encode(), creds=sp.creds(serial))

    def values(variable, serial=None):
        q = f"SELECT value, metadata FROM data WHERE variable='{variable}'"
        if serial:
            q += f" AND device='{serial}'"
        return sp.rows(q + " ORDER BY id")

    def stored(serial, variable, n):
        h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE device=? AND variable=?",
                                    serial, variable) >= n, what=f"{n} {variable} of {serial}")

    # 1. above 30, hysteresis 1: 29, 31, 32, 30, 28.5, 31 -> two runs (31, 31).
    for i, v in enumerate([29, 31, 32, 30, 28.5, 31]):
        send("north-1", "temperature", v)
        stored("north-1", "temperature", i + 1)
    h.wait_for(lambda: len(values("alert", "north-1")) >= 2, what="two alerts")
    time.sleep(1)
    a = values("alert", "north-1")
    c.eq([x["value"] for x in a], [31, 31], "fires entering above 30, re-armed below 29")
    m = [json.loads(x["metadata"]) for x in a]
    c.eq([x["previous"] for x in m], ["29", "28.5"], "c.previous is the value before")
    c.eq(m[0]["threshold"], 30, "c.threshold")

    # 2. The device's param threshold (50): 40 is nothing, 51 fires.
    send("hot-1", "temperature", 40)
    send("hot-1", "temperature", 51)
    h.wait_for(lambda: values("alert", "hot-1"), what="hot-1's alert")
    c.eq([x["value"] for x in values("alert", "hot-1")], [51], "the param's threshold applies")

    # 3. A backfill (older record time) fires nothing.
    now = int(time.time() * 1000)
    send("hot-1", "temperature", 20)  # re-arm
    send("hot-1", "temperature", 99, t=now - 3600 * 1000)
    stored("hot-1", "temperature", 4)
    time.sleep(1.5)
    c.eq(len(values("alert", "hot-1")), 1, "an older record changes nothing")

    # 4. below, equals, changes; tag scope; one run per message.
    for var, v in (("mode", "auto"), ("mode", "auto"), ("mode", "manual"), ("door", "closed"),
                   ("door", "open"), ("humidity", 22)):
        send("north-1", var, v)
    sp.pub("data/north-1", json.dumps([{"variable": "humidity", "value": 10}]).encode())
    for var, v in (("mode", "auto"), ("mode", "manual"), ("door", "open"), ("humidity", 10)):
        send("south-1", var, v)
    h.wait_for(lambda: len(values("multi")) >= 4, what="multi's runs")
    time.sleep(1.5)
    got = [x["value"] for x in values("multi")]
    c.eq(got, ["mode:manual", "door:open", "humidity:22", "humidity:10"],
         "changes (not the first value), equals, below 25 then below 20; nothing for south")
    c.eq([json.loads(x["metadata"])["cond"] for x in values("multi")], [3, 2, 4, 1],
         "c.condition says which")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable='multi' AND device='south-1'"), 0,
         "a device outside the devices scope runs nothing")

    # 5. for = "2s": fires without a new record; a breaking record re-arms.
    send("north-1", "pressure", 120)
    t0 = time.time()
    h.wait_for(lambda: values("held"), timeout=10, what="the held condition")
    c.check(time.time() - t0 >= 1.8, f"not before its 2 s ({time.time() - t0:.1f} s)")
    send("north-1", "pressure", 50)  # re-arm
    send("north-1", "pressure", 130)
    time.sleep(0.5)
    send("north-1", "pressure", 90)  # broken before its 2 s
    time.sleep(3.5)
    c.eq(len(values("held")), 1, "a record that breaks it in time: nothing")

    # 6. A record dated far in the future counts as received now: the
    #    condition goes on firing at each crossing after it.
    sp.add_device("fut-1", "--cipher", "none")
    time.sleep(1.5)  # the registry reload
    send("fut-1", "temperature", 40)
    send("fut-1", "temperature", 40, t=4070908800000)  # 2099-01-01
    for i, v in enumerate([10, 40, 10, 40]):
        send("fut-1", "temperature", v)
    stored("fut-1", "temperature", 6)
    h.wait_for(lambda: len(values("alert", "fut-1")) >= 3, what="fut-1's three alerts")
    c.eq(len(values("alert", "fut-1")), 3, "a future-dated record does not silence the condition")

    # 7. One message, five inserts crossing the threshold three times: one run.
    sp.add_device("ins-1", "--cipher", "none")
    time.sleep(1.5)
    sp.pub("many/ins-1", b"go", creds=sp.creds("ins-1"))
    stored("ins-1", "temperature", 5)
    h.wait_for(lambda: values("alert", "ins-1"), what="ins-1's alert")
    time.sleep(1.5)
    c.eq([x["value"] for x in values("alert", "ins-1")], [40],
         "one run per analysis per stored message, however many inserts")

    # 8. A device removed while its condition waits out its `for`: nothing
    #    fires for it, and what the daemon kept for it goes with it.
    sp.add_device("rm-1", "--cipher", "none")
    time.sleep(1.5)
    send("rm-1", "pressure", 120)
    stored("rm-1", "pressure", 1)
    c.eq(sp.count("SELECT count(*) n FROM condition_state WHERE serial='rm-1'"), 1,
         "rm-1's condition waits")
    sp.cli("device", "rm", "rm-1")
    c.eq(sp.count("SELECT count(*) n FROM condition_state WHERE serial='rm-1'"), 0,
         "device rm drops its condition state")
    time.sleep(3)
    c.eq(sp.count("SELECT count(*) n FROM dead_letters WHERE topic LIKE '%/rm-1'"), 0,
         "and nothing fires for it later")

    # 9. kill -9 once the records are committed and the run queued: it runs once.
    send("south-1", "level", 1)
    for i in range(5):
        send("south-1", "level", 10 + i)
        send("south-1", "level", 1)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='level'") >= 11,
               what="the level records")
    sp.proc.send_signal(signal.SIGKILL)
    sp.proc.wait()
    ran = len(values("slow"))
    print(f"killed with {ran} of 5 slow runs done")
    sp.stop()
    sp.start()
    h.wait_for(lambda: len(values("slow")) >= 5, timeout=20, what="the slow runs after restart")
    time.sleep(1)
    c.eq(sorted(x["value"] for x in values("slow")), [10, 11, 12, 13, 14],
         "each transition's run stored once across the kill")
    c.eq(sp.metric('sealpipe_trigger_runs_total{kind="condition",result="failed"}', absent=0), 0,
         "no failed runs")


if __name__ == "__main__":
    sys.exit(h.run(test))
