"""Every limit that trips is named, with its value and the analysis, in the
dead-letter detail and in one WARN log line (issue #10 point 2). Instruction
and memory trips used to be logged at DEBUG only, memory trips were filed
under `timeout`, and the per-message limits were plain `analysis_error`s. Reasons: `timeout` (wall clock, instructions), `memory`,
`limit` (records, publishes, publish size, inserts, queries: when the
limit's error ends handle(); a script may catch it and go on); log lines
past the 20 per message are dropped with a WARN line."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

# name -> (limits, handle body, reason, words the detail must hold)
CASES = {
    "instr": ("instructions = 100000", "while true do end", "timeout",
              ["instruction limit (100000)"]),
    "mem": ("memory_mb = 2", "local t = {} for i = 1, 1e7 do t[i] = ('x'):rep(100) .. i end",
            "memory", ["memory limit (2097152 bytes)"]),
    "wall": ("timeout_ms = 200", "('a'):rep(4096):find(('a-'):rep(12) .. 'b')", "timeout",
             ["wall-clock limit (200 ms)"]),
    "recs": ("records = 5",
             "local t = {} for i = 1, 6 do t[i] = {variable = 'v' .. i} end return t",
             "limit", ["records limit", "the limit is 5"]),
    "pubs": ("publishes = 2", "for i = 1, 3 do publish('x/out', 'p') end",
             "limit", ["publishes limit", "more than 2 publish()"]),
    "pubkb": ("publish_kb = 1", "publish('x/out', ('p'):rep(2048))", "limit",
              ["publish_kb limit", "2048 bytes, the limit is 1024"]),
    "ins": ("", "for i = 1, 11 do insert({variable = 'i'}) end", "limit",
            ["inserts limit", "more than 10 insert()"]),
    "qry": ("", "for i = 1, 11 do query() end", "limit",
            ["queries limit", "more than 10 query()"]),
}

# A limit's error the script catches is its own business: the message is stored.
CAUGHT = """
return {
  topics = { "l/caught/{serial}" },
  limits = { publishes = 2 },
  handle = function(msg)
    for i = 1, 3 do pcall(publish, "x/out", "p") end
    return { variable = "ok", value = 1 }
  end,
}
"""

LOGS = """
return {
  topics = { "l/logs/{serial}" },
  handle = function(msg)
    for i = 1, 25 do log("line " .. i) end
    return { variable = "logged", value = 25 }
  end,
}
"""


def test(c, tmp, started):
    adir = os.path.join(tmp, "analyses")
    os.makedirs(adir)
    for name, (limits, body, _, _) in CASES.items():
        with open(os.path.join(adir, f"lim_{name}.lua"), "w") as f:
            f.write(f'return {{ topics = {{ "l/{name}/{{serial}}" }}, limits = {{ {limits} }},\n'
                    f'  handle = function(msg) {body} end }}\n')
    with open(os.path.join(adir, "lim_logs.lua"), "w") as f:
        f.write(LOGS)
    with open(os.path.join(adir, "lim_caught.lua"), "w") as f:
        f.write(CAUGHT)
    sp = h.Sealpipe(tmp, analyses=adir,
                    extra=["--device-publish", "l/+/%s", "--lua-error-budget", "0"])
    dev = sp.add_device("lim-01", "--cipher", "none")
    sp.start()
    started.append(sp)

    for name in list(CASES) + ["logs", "caught"]:
        r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(sp.port), "-q", "1",
                            "-u", "Token", "-P", dev["token"], "-t", f"l/{name}/lim-01",
                            "-m", name], capture_output=True)
        c.check(r.returncode == 0, f"{name}: published")
    try:
        h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters") >= len(CASES) and
                   sp.count("SELECT count(*) n FROM data WHERE variable='logged'") == 1 and
                   sp.count("SELECT count(*) n FROM data WHERE variable='ok'") == 1,
                   timeout=20, what="every message handled")
    except AssertionError as e:
        c.check(False, str(e))  # and say which cases are missing below
    dead = {r["topic"].split("/")[1]: r for r in
            sp.rows("SELECT topic, reason, detail FROM dead_letters")}
    warns = [ln for ln in sp.read_log().splitlines() if " WARN " in ln]
    for name, (_, _, reason, words) in CASES.items():
        d = dead.get(name)
        c.check(d is not None and d["reason"] == reason,
                f"{name}: dead letter {reason} ({d['reason'] + ': ' + d['detail'] if d else None})")
        if d:
            c.check(all(w in d["detail"] for w in words) and f"lim_{name}" in d["detail"],
                    f"{name}: the detail names the analysis, the limit and its value")
        mine = [ln for ln in warns if f"analysis lim_{name} " in ln and f"reason={reason}" in ln]
        c.check(len(mine) == 1 and all(w in mine[0] for w in words),
                f"{name}: one WARN line names the limit: {mine}")
    logs = [ln for ln in warns if "lim_logs" in ln and "log_lines" in ln]
    c.check(len(logs) == 1 and "5 dropped" in logs[0] and "20 lines" in logs[0],
            f"dropped log lines: one WARN line names the limit: {logs}")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable='ok'"), 1,
         "a limit's error caught with pcall: the script goes on, the message is stored")
    c.eq(sp.stop(), 0, "daemon stops cleanly")


if __name__ == "__main__":
    sys.exit(h.run(test))
