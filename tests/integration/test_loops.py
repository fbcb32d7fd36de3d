"""Publish loops (issue #10.6).

An analysis that publishes to a topic it declares itself used to feed itself
forever (8,664 records from one message in 5 s): the daemon now subscribes
with MQTT v5 No Local and never takes in what it published. Two daemons on
one external broker can still feed each other (No Local is per client):
every analysis publish carries a hop count, and a message that has come
through SP_LIMIT_HOPS (8) analyses in a row is a `loop` dead letter.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

SELF = """
return {
  topics = { "loop/{serial}" },
  handle = function(msg)
    publish("loop/" .. msg.device.serial, "again:" .. msg.payload)
    return { variable = "seen", value = msg.payload }
  end,
}
"""


def write(folder, name, src):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name + ".lua"), "w") as f:
        f.write(src)


def count_seen(sp):
    return sp.count("SELECT count(*) n FROM data WHERE variable='seen'")


def test_self(c, tmp, started):
    analyses = os.path.join(tmp, "self")
    write(analyses, "selfloop", SELF)
    sp = h.Sealpipe(os.path.join(tmp, "a"), analyses=analyses)
    os.makedirs(sp.tmp, exist_ok=True)
    dev = sp.add_device("loop-01", "--cipher", "none")
    sp.start()
    started.append(sp)
    r = h.subprocess.run(["mosquitto_pub", "-p", str(sp.port), "-h", "127.0.0.1", "-q", "1",
                          "-u", "Token", "-P", dev["token"], "-t", "loop/loop-01", "-m", "x"],
                         capture_output=True)
    c.eq(r.returncode, 0, "the device publishes")
    h.wait_for(lambda: count_seen(sp) >= 1, what="first record")
    time.sleep(2)
    c.eq(count_seen(sp), 1, "an analysis publishing to its own topic runs once, not forever")
    c.eq([r["value"] for r in sp.rows("SELECT value FROM data WHERE variable='seen' LIMIT 3")],
         ["x"], "the record of the device's message")


def test_two_daemons(c, tmp, started):
    broker = h.Mosquitto(tmp)
    started.append(broker)
    analyses = os.path.join(tmp, "shared")
    write(analyses, "selfloop", SELF)
    daemons = []
    for name in ("d1", "d2"):
        sp = h.Sealpipe(os.path.join(tmp, name), analyses=analyses, broker=broker,
                        extra=["--client-id", "sealpipe-" + name])
        sp.add_device("loop-01", "--cipher", "none")
        sp.start()
        started.append(sp)
        daemons.append(sp)
    r = h.subprocess.run(["mosquitto_pub", "-p", str(broker.port), "-h", "127.0.0.1", "-q", "1",
                          "-t", "loop/loop-01", "-m", "x"], capture_output=True)
    c.eq(r.returncode, 0, "a device publishes on the shared broker")
    h.wait_for(lambda: all(sp.count("SELECT count(*) n FROM dead_letters WHERE reason='loop'")
                           for sp in daemons), timeout=15, what="loop dead letters")
    time.sleep(1.5)
    seen = [count_seen(sp) for sp in daemons]
    # Each daemon stores the device's message and publishes it on (hop 1);
    # the other stores that and publishes hop 2, and so on: each of the two
    # chains stores hops 1-7, and hop 8 is refused.
    c.eq(seen, [8, 8], "the chains stop at the hop limit")
    dead = [sp.rows("SELECT reason, detail FROM dead_letters") for sp in daemons]
    c.check(all(d and all(x["reason"] == "loop" for x in d) for d in dead),
            f"each daemon dead-letters the message at the hop limit: {dead}")
    c.check(all("8 times" in x["detail"] for d in dead for x in d), "the detail names the limit")
    time.sleep(1)
    c.eq([count_seen(sp) for sp in daemons], seen, "and nothing more arrives")


def test(c, tmp, started):
    test_self(c, tmp, started)
    test_two_daemons(c, tmp, started)


if __name__ == "__main__":
    sys.exit(h.run(test))
