"""Issue #12's "done when": a Revision D frame from each example of the newest
documents is stored exactly.

Every structured PUSH body the specification lists as valid (the "ok:" lines of
tests/data/tip/spec.txt whose body starts with "[", "@", "^" or "{") is pushed
twice to a daemon with its network listeners on: over the HTTP binding
(POST /v1/tip/{serial}, Python's http.client) and as a whole raw frame in a UDP
datagram. The rows each push stored are compared, field by field, with what
the independent reference (tagotips_ref.parse_body() and effective(), written
from TagoTiP.md and sharing no code with sealpipe) says the body means after
§6.4's inheritance: count and order, names, types and values, units, explicit
timestamps (else the receive time), groups, locations and metadata. Every
mismatch is a failure naming the example's line and the field.
"""

import http.client
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402
import tagotips_ref as ref  # noqa: E402

SPEC = os.path.join(h.SOURCE, "tests", "data", "tip", "spec.txt")
SERIAL = "sensor-01"
# Added by the daemon to every record that does not set it (README, "metadata").
DAEMON_META = "mqtt_topic"
# Beyond the spec's examples, the Revision D forms they leave out: a location
# suffix on string and boolean variables, a body-level altitude, escapes, an
# own group and metadata key over the body's in Revision B's order.
EXTRA = [
    r"@=-33.9,151.2,12[status=on\;line#txt@=1.5,2.5;ok?=false;pos@=3,4;n:=-0.25]",
    r"^g1@1694567890000{a=x\,y,b=1}[t:=0.5^g2{a=z};s=hi@=10,20,30@1694567899999;f?=true@=1,2]",
]


def spec_examples():
    """[(line numbers, body)] of spec.txt's valid structured bodies, each once."""
    seen = {}
    with open(SPEC, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            expect, tab, body = line.rstrip("\n").partition("\t")
            if tab and expect.startswith("ok:") and body[:1] in "[@^{":
                seen.setdefault(body, []).append(n)
    return [(lines, body) for body, lines in seen.items()]


def push_http(sp, dev, body):
    """(status, answer text) of POST /v1/tip/{serial}."""
    c = http.client.HTTPConnection("127.0.0.1", sp.http_port, timeout=15)
    try:
        c.request("POST", "/v1/tip/" + dev["serial"], body=body.encode(),
                  headers={"Authorization": "TagoTiP " + dev["auth_hash"],
                           "Content-Type": "text/plain"})
        r = c.getresponse()
        return r.status, r.read().decode(errors="replace")
    finally:
        c.close()


def push_udp(sp, dev, body):
    """The answer datagram to "PUSH|auth|serial|body" (None on no answer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5.0)
        s.sendto(f"PUSH|{dev['auth_hash']}|{dev['serial']}|{body}".encode(),
                 ("127.0.0.1", sp.udp_port))
        try:
            return s.recv(65536).decode(errors="replace")
        except socket.timeout:
            return None


def want_value(v):
    """(type, value) a reference variable is stored as (schemas/bucket.sql): a
    number as INTEGER when integral, else REAL; a boolean as 0/1; an @=
    variable's value in the location columns."""
    if v["type"] == "location":
        return "none", None
    if v["type"] == "number" and v["value"].is_integer():
        return "number", ("int", int(v["value"]))
    if v["type"] == "number":
        return "number", ("float", v["value"])
    if v["type"] == "boolean":
        return "boolean", int(v["value"])
    return v["type"], v["value"]


def got_value(row):
    if row["type"] == "number" and isinstance(row["value"], (int, float)):
        return "number", (type(row["value"]).__name__, row["value"])
    return row["type"], row["value"]


def field_problems(row, v, t0, t1):
    """[(field, got, want)] where a stored row differs from variable v;
    t0..t1 (Unix ms) brackets the request, for a variable without a time."""
    out = []

    def cmp(field, got, want):
        if got != want:
            out.append((field, got, want))

    cmp("variable", row["variable"], v["name"])
    gt, gv = got_value(row)
    wt, wv = want_value(v)
    cmp("type", gt, wt)
    cmp("value", gv, wv)
    cmp("unit", row["unit"], v["unit"])
    if v["time"] is not None:
        cmp("time", row["time"], v["time"])
    elif row["time"] != row["received_at"] or not t0 - 1000 <= row["time"] <= t1 + 1000:
        out.append(("time", row["time"], f"the receive time (received_at {row['received_at']}, "
                    f"request sent {t0}..{t1})"))
    cmp("group", row["group_id"], v["group"])
    cmp("location", (row["lat"], row["lng"], row["alt"]), v["location"] or (None, None, None))
    try:
        meta = json.loads(row["metadata"]) if row["metadata"] else {}
    except ValueError:
        meta = row["metadata"]
    want_meta = dict(v["metadata"] or {})
    if isinstance(meta, dict) and DAEMON_META not in want_meta:
        # The MQTT binding's topic, whatever the transport brought it.
        if meta.get(DAEMON_META) != f"$tip/{SERIAL}/push":
            out.append(("metadata", meta, f"{want_meta} with {DAEMON_META} "
                        f"$tip/{SERIAL}/push added"))
        meta = {k: x for k, x in meta.items() if k != DAEMON_META}
    cmp("metadata", meta, want_meta)
    return out


def check_stored(c, sp, how, where, body, after_id, t0, t1):
    """Checks the rows stored since after_id against the reference's meaning."""
    want = ref.effective(ref.parse_body(body))
    rows = sp.rows("SELECT * FROM data WHERE device = ? AND id > ? ORDER BY id",
                   SERIAL, after_id)
    if not c.check(len(rows) == len(want),
                   f"{where} {how}: {len(rows)} rows stored, want {len(want)} "
                   f"({[v['name'] for v in want]}): {body}"):
        return
    problems = []
    for i, (row, v) in enumerate(zip(rows, want), 1):
        problems += [f"variable {i} ({v['name']}) {field}: got {got!r}, want {w!r}"
                     for field, got, w in field_problems(row, v, t0, t1)]
    c.check(not problems, f"{where} {how}: stored exactly: {body}" +
            "".join("\n       " + p for p in problems))


def last_id(sp):
    return sp.rows("SELECT coalesce(max(id), 0) AS n FROM data")[0]["n"]


def push_and_check(c, sp, dev, where, body):
    """Pushes body over HTTP, then over UDP, checking the answer and rows of each."""
    n = len(ref.parse_body(body)[1])

    before, t0 = last_id(sp), int(time.time() * 1000)
    status, answer = push_http(sp, dev, body)
    t1 = int(time.time() * 1000)
    if c.eq((status, answer), (200, str(n)), f"{where} HTTP: 200 with the count: {body}"):
        check_stored(c, sp, "HTTP", where, body, before, t0, t1)

    before, t0 = last_id(sp), int(time.time() * 1000)
    answer = push_udp(sp, dev, body)
    t1 = int(time.time() * 1000)
    if c.eq(answer, f"ACK|OK|{n}", f"{where} UDP: ACK|OK|{n}: {body}"):
        check_stored(c, sp, "UDP", where, body, before, t0, t1)


def readable_examples(c):
    """[(where, body)] of the spec's examples the reference reads (a failure
    for each it cannot: the spec lists them as valid), then EXTRA."""
    out, parsed = [], []
    for lines, body in spec_examples():
        where = "spec.txt:" + ",".join(map(str, lines))
        try:
            parsed.append(ref.parse_body(body))
            out.append((where, body))
        except ValueError as e:
            c.check(False, f"{where}: the reference cannot read {body}: {e}")
    # The file is the test's input: it must still hold Revision D's examples.
    c.check(len(out) >= 30 and any(m["location"] for m, _ in parsed) and
            any(v["location"] for _, vs in parsed for v in vs),
            f"{len(out)} distinct structured examples, with body-level and variable locations")
    return out + [("extra", body) for body in EXTRA]


def test(c, tmp, started):
    examples = readable_examples(c)
    sp = h.Sealpipe(tmp, net=True)
    dev = sp.add_device(SERIAL, "--cipher", "none")
    sp.start()
    started.append(sp)
    for where, body in examples:
        push_and_check(c, sp, dev, where, body)
    c.eq(sp.count("SELECT count(*) AS n FROM dead_letters"), 0, "no dead letters")


if __name__ == "__main__":
    sys.exit(h.run(test))
