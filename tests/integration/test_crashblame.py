"""A worker crash is blamed on the message that caused it (issue #10 point
3). One device's message makes the Lua worker die (a pattern no hook can
interrupt burns CPU; a watchdog in this test kills any worker that has used
half a second of CPU, as a resource limit or the seccomp filter would), in a
stream with other devices' messages for the same analysis. The daemon runs
the message that was unanswered when the worker died alone in a new worker;
when it kills that one too it is dead-lettered `worker_crash`. Every other
message is stored exactly once, and with an error budget of 1 no other
device is charged: their later messages are stored too."""

import os
import queue
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

ANALYSIS = """
-- Stores the payload; "crash" runs a pattern that backtracks for minutes.
return {
  topics = { "cr/{serial}" },
  handle = function(msg)
    if msg.payload == "crash" then
      string.rep("a", 4096):find(string.rep("a-", 12) .. "b")
    end
    return { variable = "v", value = msg.payload }
  end,
}
"""
CPU_TICKS = 50  # clock ticks (1/100 s) of CPU a worker may use


def workers(parent):
    """(pid, utime + stime in ticks) of the Lua workers of the daemon."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{d}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if len(argv) > 1 and argv[1] == b"__worker" and int(st[1]) == parent:
            out.append((int(d), int(st[11]) + int(st[12])))
    return out


def watchdog(parent, stop, kills):
    while not stop.is_set():
        for pid, ticks in workers(parent):
            if ticks >= CPU_TICKS:
                try:
                    os.kill(pid, signal.SIGKILL)
                    kills.append(pid)
                except OSError:
                    pass
        time.sleep(0.02)


def client(sp, dev):
    import paho.mqtt.client as mqtt
    cl = mqtt.Client(client_id="cb-" + dev["serial"], protocol=mqtt.MQTTv311)
    cl.username_pw_set("Token", dev["token"])
    up = queue.Queue()
    cl.on_connect = lambda c, u, f, rc, *a: up.put(rc)
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    rc = up.get(timeout=10)
    if rc != 0:
        raise AssertionError(f"{dev['serial']}: CONNACK {rc}")
    return cl


def test(c, tmp, started):
    adir = os.path.join(tmp, "analyses")
    os.makedirs(adir)
    with open(os.path.join(adir, "crashy.lua"), "w") as f:
        f.write(ANALYSIS)
    sp = h.Sealpipe(tmp, analyses=adir,
                    extra=["--device-publish", "cr/%s", "--lua-timeout-ms", "30000",
                           "--lua-error-budget", "1"])
    devs = {s: sp.add_device(s, "--cipher", "none") for s in ("bad-01", "ok-01", "ok-02")}
    sp.start()
    started.append(sp)

    stop, kills = threading.Event(), []
    dog = threading.Thread(target=watchdog, args=(sp.proc.pid, stop, kills), daemon=True)
    dog.start()
    try:
        cl = {s: client(sp, d) for s, d in devs.items()}
        infos = []
        for i in range(5):
            infos.append(cl["ok-01"].publish("cr/ok-01", f"a{i}", qos=1))
            if i == 2:
                infos.append(cl["bad-01"].publish("cr/bad-01", "crash", qos=1))
            infos.append(cl["ok-02"].publish("cr/ok-02", f"b{i}", qos=1))
        for info in infos:
            info.wait_for_publish(10)
        h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters") >= 1 and
                   sp.count("SELECT count(*) n FROM data") >= 10,
                   timeout=60, what="the batch handled")
        # Later messages of the innocent devices: no budget was charged to them.
        for i in range(3):
            cl["ok-01"].publish("cr/ok-01", f"c{i}", qos=1).wait_for_publish(10)
            cl["ok-02"].publish("cr/ok-02", f"d{i}", qos=1).wait_for_publish(10)
        h.wait_for(lambda: sp.count("SELECT count(*) n FROM data") +
                   sp.count("SELECT count(*) n FROM dead_letters") >= 17,
                   timeout=30, what="the later messages handled")
        for x in cl.values():
            x.loop_stop()
            x.disconnect()
    finally:
        stop.set()
        dog.join()

    dead = sp.rows("SELECT device, reason, detail FROM dead_letters")
    c.eq([(d["device"], d["reason"]) for d in dead], [("bad-01", "worker_crash")],
         "one dead letter: the crashing message, reason worker_crash")
    if dead:
        c.check("crashy" in dead[0]["detail"] and "signal 9" in dead[0]["detail"],
                f"the detail names the analysis and the cause: {dead[0]['detail']}")
    c.eq(len(kills), 2, "the crashing message killed the worker twice, then was not run again")

    def values(serial):
        return sorted(r["value"] for r in
                      sp.rows("SELECT value FROM data WHERE device=?", serial))
    c.eq(values("ok-01"), sorted([f"a{i}" for i in range(5)] + [f"c{i}" for i in range(3)]),
         "ok-01: every message stored once, also after the crash")
    c.eq(values("ok-02"), sorted([f"b{i}" for i in range(5)] + [f"d{i}" for i in range(3)]),
         "ok-02: every message stored once, also after the crash")
    c.eq(values("bad-01"), [], "nothing stored for the crashing message")
    log = sp.read_log()
    warn = [ln for ln in log.splitlines() if " WARN " in ln and "worker_crash" in ln]
    c.check(len(warn) == 1 and "crashy" in warn[0] and "bad-01" in warn[0],
            f"one WARN line names the reason, analysis and device: {warn}")
    c.check("query() failed" not in log, "no false query() failure")
    c.check(not [ln for ln in log.splitlines() if "failed it" in ln and "ok-0" in ln],
            "no error budget spent for the innocent devices")
    c.check(sp.proc.poll() is None, "daemon still running")
    c.eq(len(workers(sp.proc.pid)), 2, "two workers again (the default `workers`)")
    c.eq(sp.stop(), 0, "daemon stops cleanly")


if __name__ == "__main__":
    sys.exit(h.run(test))
