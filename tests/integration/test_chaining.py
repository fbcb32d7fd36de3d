"""run_analysis(name, payload) (issue #17, point 5): a real device's messages
run analysis A, which queues analysis B's run(ctx) with the caller's device;
B's records are stored exactly once per message, also when B runs long
(detached, through the deferred table) and the daemon is killed -9 in the
middle; an unknown target fails the caller; a self-call stops at the hop
limit as a `loop` dead letter; a failing run is a dead letter of its own,
logged, counted, and `dead-letter retry` runs it again once fixed."""

import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

CALLER = """return {
  topics = { "chain/{serial}" },
  handle = function(msg)
    local n = tonumber(msg.payload:match("^(%d+)"))
    run_analysis(env.TARGET or "callee", { n = n, pad = msg.payload })
    return { variable = "a", value = n }
  end,
}
"""
CALLEE = """return {
  run = function(ctx)
    local p = json.decode(ctx.payload)
    local t = os.clock()
    while os.clock() - t < %(busy)s do end
    log("from " .. ctx.from .. " depth " .. ctx.depth .. " device " .. ctx.device.serial)
    return { variable = "b", value = p.n, metadata = { len = #p.pad } }
  end,
}
"""
BROKEN = """return { run = function(ctx) error("callee bug") end }
"""
LOOPER = """return {
  topics = { "loop/{serial}" },
  handle = function(msg) run_analysis("looper", "go") end,
  run = function(ctx)
    insert({ variable = "hop", value = ctx.depth })
    run_analysis("looper", "again")
  end,
}
"""
ORPHAN = """return {
  topics = { "orphan/{serial}" },
  handle = function(msg)
    run_analysis("nobody", "x")
    return { variable = "orphan", value = 1 }
  end,
}
"""


def payload(n):
    # A realistic reading: ~1 KB of JSON-ish text after the number.
    return (f"{n} " + "x" * 1000).encode()


def test(c, tmp, started):
    an = os.path.join(tmp, "analyses")
    os.makedirs(an)

    def write(name, text):
        with open(os.path.join(an, name + ".lua"), "w") as f:
            f.write(text)

    write("caller", CALLER)
    write("callee", CALLEE % {"busy": "0"})
    write("looper", LOOPER)
    write("orphan", ORPHAN)
    sp = h.Sealpipe(tmp, analyses=an, extra=["--lua-error-budget", "0",
                                             "--lua-instructions", "2000000000"])
    sp.add_device("dev-1", "--cipher", "none")
    sp.add_device("dev-2", "--cipher", "none")
    sp.start()
    started.append(sp)

    def reloaded(n):
        h.wait_for(lambda: sp.read_log().count("analysis reloaded name=callee") >= n,
                   what=f"callee reloaded {n} times")

    # 1. Two devices, 20 messages each: one b per a, for the caller's device.
    for i in range(20):
        sp.pub("chain/dev-1", payload(i))
        sp.pub("chain/dev-2", payload(100 + i))
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='b'") >= 40,
               timeout=20, what="40 runs of callee")
    rows = sp.rows("SELECT device, value, metadata FROM data WHERE variable='b' ORDER BY value")
    c.eq([(r["device"], r["value"]) for r in rows],
         [("dev-1", i) for i in range(20)] + [("dev-2", 100 + i) for i in range(20)],
         "each message's run stored once, for the caller's device")
    c.eq(sorted(json.loads(r["metadata"])["len"] for r in rows),
         sorted(len(payload(int(r["value"]))) for r in rows),
         "the payload table arrived whole (JSON-encoded by the host)")
    log = sp.read_log()
    c.check("analysis callee device=dev-1 log: \"from caller depth 1 device dev-1\"" in log,
            "ctx.from, ctx.depth and ctx.device")
    c.eq(sp.metric('sealpipe_trigger_runs_total{kind="run",result="ok"}'), 40, "runs counted")
    c.eq(sp.count("SELECT count(*) n FROM trigger_queue"), 0, "the queue is empty")

    # 2. An unknown target fails the caller: no record, an analysis_error.
    sp.pub("orphan/dev-1", b"1")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters WHERE topic='orphan/dev-1'"),
               what="the orphan's dead letter")
    d = sp.rows("SELECT reason, detail FROM dead_letters WHERE topic='orphan/dev-1'")[0]
    c.eq(d["reason"], "analysis_error", "unknown target: the caller fails")
    c.check("run_analysis('nobody'): no such analysis is loaded" in d["detail"], d["detail"])
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable='orphan'"), 0,
         "and its records are not stored")

    # 3. A run that calls itself stops at the hop limit, once.
    sp.pub("loop/dev-1", b"go")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters WHERE reason='loop'"),
               timeout=20, what="the loop dead letter")
    hops = [r["value"] for r in sp.rows("SELECT value FROM data WHERE variable='hop' ORDER BY value")]
    c.eq(hops, list(range(1, 8)), "depths 1..7 ran, the 8th is cut")
    dl = sp.rows("SELECT topic, device FROM dead_letters WHERE reason='loop'")
    c.eq([(x["topic"], x["device"]) for x in dl], [("$trigger#run/looper/dev-1", "dev-1")],
         "one loop dead letter, the device's")

    # 4. A run that fails: its own dead letter, logged and counted; fixed and retried.
    write("callee", BROKEN)
    reloaded(1)
    sp.pub("chain/dev-1", payload(500))
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters WHERE topic LIKE "
                                "'$trigger#run/callee/%'"), what="the failed run's dead letter")
    d = sp.rows("SELECT id, reason, device, payload FROM dead_letters WHERE topic LIKE "
                "'$trigger#run/callee/%'")[0]
    c.eq((d["reason"], d["device"]), ("analysis_error", "dev-1"), "a failed run is a dead letter")
    c.eq(json.loads(bytes(d["payload"]))["from"], "caller", "its payload is the ctx")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable='a' AND value=500"), 1,
         "the caller's own records are stored: the run is separate")
    c.check("trigger failed topic=$trigger#run/callee/dev-1 reason=analysis_error"
            in sp.read_log(), "and logged as a WARN line")
    c.eq(sp.metric('sealpipe_trigger_runs_total{kind="run",result="failed"}'), 2,
         "counted as failed (with the loop's)")
    write("callee", CALLEE % {"busy": "0"})
    reloaded(2)
    sp.cli("dead-letter", "retry", str(d["id"]))
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='b' AND value=500"),
               what="the retried run")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters WHERE topic LIKE '$trigger#%'"), 1,
         "its dead letter consumed (the loop's stays)")

    # 5. A slow callee (detached, deferred) and kill -9 mid-way: once each.
    write("callee", CALLEE % {"busy": "0.2"})
    reloaded(3)
    for i in range(30):
        sp.pub("chain/dev-2", payload(1000 + i))
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='b' "
                                "AND value >= 1000") >= 5, timeout=20, what="some slow runs")
    sp.proc.send_signal(signal.SIGKILL)
    sp.proc.wait()
    done = sp.count("SELECT count(*) n FROM data WHERE variable='b' AND value >= 1000")
    print(f"killed with {done} of 30 slow runs stored")
    c.check(done < 30, f"killed in the middle ({done} of 30)")
    sp.stop()
    sp.start()
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='b' "
                                "AND value >= 1000") >= 30, timeout=40, what="the rest")
    a = sp.count("SELECT count(*) n FROM data WHERE variable='a' AND value >= 1000")
    got = sp.rows("SELECT value, count(*) n FROM data WHERE variable='b' AND value >= 1000 "
                  "GROUP BY value")
    c.eq(a, 30, "every caller message stored once")
    c.eq(len(got), 30, "every run stored")
    c.eq(max(x["n"] for x in got), 1, "each exactly once")
    c.eq(sp.count("SELECT count(*) n FROM trigger_queue"), 0, "nothing left in the queue")
    c.eq(sp.count("SELECT count(*) n FROM deferred"), 0, "nor in the deferred table")


if __name__ == "__main__":
    sys.exit(h.run(test))
