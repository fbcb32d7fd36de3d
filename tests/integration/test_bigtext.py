"""Every payload up to the documented maximum (256 KiB) reaches handle()
(issue #10 point 5). A text payload over 6,144 bytes (the longest string
value a stored record may have) used to fail with "analysis is not loaded in
the worker": the worker checked msg.records, the daemon's own default
normalization (one "payload" record holding the whole text, or its hex),
against the rules for stored records and refused the job. Text, JSON and
binary payloads of 6,145 bytes, 64 KiB and 256 KiB are published by a device
with its own token; the analysis stores what it saw."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

ANALYSIS = """
-- Stores the sizes handle() saw: the payload and msg.records[1].value.
return {
  topics = { "big/{serial}/+" },
  handle = function(msg)
    local r = msg.records[1]
    return {
      { variable = "len", value = #msg.payload,
        metadata = { kind = msg.topic:match("[^/]+$"), recs = #msg.records,
                     reclen = r and type(r.value) == "string" and #r.value or -1 } },
    }
  end,
}
"""

PEEK = """
-- query() the device's stored "payload" record; stores its length or the error.
return {
  topics = { "peek/{serial}" },
  handle = function(msg)
    local r, err = query({ variable = "payload" })
    return { variable = "peeked", value = r and r[1] and #r[1].value or tostring(err) }
  end,
}
"""

SIZES = [6145, 64 * 1024, 256 * 1024]


def payloads(n):
    """Text (UTF-8, no NUL), JSON that is not TagoIO data, and binary, n bytes each."""
    text = ("é" * (n // 2) + "x" * (n % 2)).encode()
    js = b'{"blob":"' + b"y" * (n - len(b'{"blob":""}')) + b'"}'
    binary = bytes(i % 256 for i in range(n))
    return {"text": (text, n), "json": (js, n), "binary": (binary, 2 * n)}


def test(c, tmp, started):
    adir = os.path.join(tmp, "analyses")
    os.makedirs(adir)
    with open(os.path.join(adir, "sizes.lua"), "w") as f:
        f.write(ANALYSIS)
    with open(os.path.join(adir, "peek.lua"), "w") as f:
        f.write(PEEK)
    sp = h.Sealpipe(tmp, analyses=adir, extra=["--device-publish", "big/%s/# peek/%s"])
    dev = sp.add_device("big-01", "--cipher", "none")
    sp.start()
    started.append(sp)

    want = {}
    for n in SIZES:
        for kind, (body, reclen) in payloads(n).items():
            c.eq(len(body), n, f"{kind} payload of {n} bytes built")
            r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(sp.port), "-q",
                                "1", "-u", "Token", "-P", dev["token"], "-t",
                                f"big/big-01/{kind}", "-s"], input=body, capture_output=True)
            c.check(r.returncode == 0, f"{kind} {n}: published ({r.stderr.decode().strip()})")
            want[(kind, n)] = reclen
    total = len(want)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data") +
               sp.count("SELECT count(*) n FROM dead_letters") >= total,
               timeout=30, what="every message handled")
    for d in sp.rows("SELECT reason, detail FROM dead_letters"):
        c.check(False, f"dead letter {d['reason']}: {d['detail'][:200]}")
    import json
    got = {}
    for r in sp.rows("SELECT value, metadata FROM data WHERE device='big-01' AND variable='len'"):
        m = json.loads(r["metadata"])
        got[(m["kind"], int(float(r["value"])))] = (int(m["recs"]), int(m["reclen"]))
    for (kind, n), reclen in want.items():
        c.eq(got.get((kind, n)), (1, reclen),
             f"{kind} payload of {n} bytes reached handle() whole, msg.records[1] of {reclen}")
    c.check("not loaded in the worker" not in sp.read_log(), "no false 'not loaded' error")

    # A TagoTiP passthrough body without a parser is stored whole as the
    # "payload" record (8,000 hex digits here); query() hands it back whole.
    def mqtt(topic, body):
        r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(sp.port), "-q", "1",
                            "-u", "Token", "-P", dev["token"], "-t", topic, "-m", body],
                           capture_output=True)
        c.check(r.returncode == 0, f"published on {topic}")
    mqtt("$tip/big-01/push", ">x" + "ab" * 4000)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='payload'") == 1,
               what="the passthrough body stored")
    mqtt("peek/big-01", "?")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='peeked'") +
               sp.count("SELECT count(*) n FROM dead_letters") >= 1, what="peek handled")
    got = [r["value"] for r in sp.rows("SELECT value FROM data WHERE variable='peeked'")]
    c.eq(got, [8000], "query() returns a stored record longer than 6,144 bytes whole")
    c.eq(sp.stop(), 0, "daemon stops cleanly")


if __name__ == "__main__":
    sys.exit(h.run(test))
