"""Retained messages are stored once (issue #10.11).

The daemon used to store a retained message again at every restart (the
broker sends retained messages on every subscribe). It now subscribes with
"retain handling: never" and "retain as published": a retained publish is
stored when it is published, once, whatever the restarts, and an empty
retained publish (which clears the retained message) is not a record.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

SMALL = """
return {
  topics = { "state/{serial}" },
  handle = function(msg)
    return { variable = "state", value = msg.payload, metadata = { retain = msg.retain } }
  end,
}
"""


def test(c, tmp, started):
    analyses = os.path.join(tmp, "analyses")
    os.makedirs(analyses)
    with open(os.path.join(analyses, "state.lua"), "w") as f:
        f.write(SMALL)
    sp = h.Sealpipe(tmp, analyses=analyses)
    dev = sp.add_device("ret-01", "--cipher", "none")
    sp.start()
    started.append(sp)

    def pub(payload, retain=True):
        args = ["mosquitto_pub", "-p", str(sp.port), "-h", "127.0.0.1", "-q", "1",
                "-u", "Token", "-P", dev["token"], "-t", "state/ret-01"]
        if retain:
            args.append("-r")
        args += ["-n"] if payload is None else ["-m", payload]
        r = h.subprocess.run(args, capture_output=True)
        if r.returncode != 0:
            raise AssertionError(f"mosquitto_pub: {r.stderr!r}")

    def rows():
        return [(r["value"], r["metadata"]) for r in
                sp.rows("SELECT value, metadata FROM data WHERE variable='state' ORDER BY id")]

    pub("open")
    h.wait_for(lambda: rows(), what="the retained message stored")
    c.eq(len(rows()), 1, "a retained publish is stored")
    c.check('"retain":true' in rows()[0][1].replace(" ", ""),
             f"the analysis sees msg.retain = true: {rows()[0][1]}")
    for i in range(3):
        sp.stop()
        sp.start()
        pub("tick-%d" % i, retain=False)
        h.wait_for(lambda: any(v == "tick-%d" % i for v, _ in rows()), what=f"tick {i}")
    c.eq([v for v, _ in rows()], ["open", "tick-0", "tick-1", "tick-2"],
         "after 3 restarts the retained message is still stored once")
    c.check('"retain":false' in rows()[1][1].replace(" ", ""), "a live publish has retain false")

    pub(None)  # clears the retained message
    pub("after-clear", retain=False)
    h.wait_for(lambda: any(v == "after-clear" for v, _ in rows()), what="after clear")
    c.eq([v for v, _ in rows()], ["open", "tick-0", "tick-1", "tick-2", "after-clear"],
         "an empty retained publish is not a record")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters"), 0, "... nor a dead letter")
    sp.stop()
    c.check("ignored=1" in sp.read_log(), "it is counted as ignored in the stats line")


if __name__ == "__main__":
    sys.exit(h.run(test))
