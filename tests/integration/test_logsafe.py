"""No one outside the daemon writes a line of its log (issue #10, point 10).

An analysis (driven by a device's payload) publishes to a topic holding a
newline, logs text holding one and raises an error holding one; the topics
it declares and a dead letter carry them too. Each reaches the daemon's log
escaped: every line of the log is a line the daemon wrote (it starts with
the timestamp), and the forged text shows up only inside them, as \\n."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

FORGER = r'''
return {
  topics = { "forge/{serial}" },
  handle = function(msg)
    local nl = "\n2030-01-01T00:00:00.000Z ERROR forged-"
    if msg.payload == "log" then
      log("text" .. nl .. "log", "\r\27[2Jcleared")
    elseif msg.payload == "publish" then
      publish("x" .. nl .. "publish", "p", { qos = 1 })
    elseif msg.payload == "error" then
      error("boom" .. nl .. "error", 0)
    end
    return { variable = "seen", value = msg.payload }
  end,
}
'''

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (ERROR|WARN|INFO|DEBUG) ")


def test(c, tmp, started):
    analyses = os.path.join(tmp, "analyses")
    os.makedirs(analyses)
    with open(os.path.join(analyses, "forger.lua"), "w") as f:
        f.write(FORGER)
    sp = h.Sealpipe(tmp, analyses=analyses)
    dev = sp.add_device("dev-a", "--cipher", "none")
    sp.start()
    started.append(sp)
    for what in ("log", "publish", "error"):
        r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(sp.port), "-q", "1",
                            "-u", "Token", "-P", dev["token"], "-t", "forge/dev-a", "-m", what],
                           capture_output=True, text=True, timeout=10)
        c.eq(r.returncode, 0, f"the device publishes '{what}'")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable = 'seen'") >= 2
               and sp.count("SELECT count(*) n FROM dead_letters") >= 1,
               what="the three messages handled")
    want = {w: f"\\n2030-01-01T00:00:00.000Z ERROR forged-{w}" for w in ("log", "publish",
                                                                            "error")}
    h.wait_for(lambda: all(v in sp.read_log() for v in want.values()), timeout=5,
               what="the three lines in the log")
    log = sp.read_log()
    lines = log.split("\n")[:-1]
    strays = [ln for ln in lines if not TIMESTAMP.match(ln)]
    c.eq(strays, [], "every line of the daemon log is one the daemon started")
    c.eq([ln for ln in lines if ln.startswith("2030-")], [], "no forged line")
    for w, esc in want.items():
        c.check(any(esc in ln for ln in lines), f"the {w} path logs the text escaped")
    c.check("\\r\\x1b[2Jcleared" in log, "a carriage return and an escape sequence are escaped")
    c.check("\r" not in log and "\x1b" not in log, "... and do not reach the log raw")


if __name__ == "__main__":
    sys.exit(h.run(test))
