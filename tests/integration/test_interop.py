"""Interoperability: TagoTiP/S envelopes sealed by an independent
implementation (tagotips_ref.py: python3-cryptography for AES-CCM/GCM,
python3-nacl for ChaCha20-Poly1305, written from the specification, no code
shared with sealpipe) and published with paho-mqtt, one device per cipher
suite. Checks that the daemon stores exactly the expected records, turns a
replay and a wrong key into dead letters, and that its answers on
$tips/<serial>/ack (sealed ACK envelopes, and the plaintext auth_failed
fallback) open and read as TagoTiPs.md §9 says: method ACK, the device's
suite and hashes, server counters increasing per device, and the expected
inner frame for PUSH, PULL and PING."""

import json
import os
import queue
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402
import tagotips_ref as ref  # noqa: E402

ANALYSES = os.path.join(os.path.dirname(__file__), "analyses")
TOKEN = ref.SPEC_TOKEN  # the profile's token: its auth hash is computed here, not read back
RECV = object()         # expected time: the daemon's receive time

FIRST_ACK_WAIT = 4.0    # the first answer of the run (daemon warming up)
ACK_WAIT = 3.0          # each answer while answers arrive
MISSING_ACK_WAIT = 0.1   # after one went missing: keep the run short, report at the end


def now_ms():
    return int(time.time() * 1000)


def rec(variable, typ, value, unit=None, t=RECV, group=None, loc=None, meta=None):
    lat, lng, alt = loc if loc else (None, None, None)
    return {"variable": variable, "type": typ, "value": value, "unit": unit, "time": t,
            "group_id": group, "lat": lat, "lng": lng, "alt": alt, "metadata": meta or {}}


# ---- what each device sends, and what must come of it ----------------------

# Body 1: numbers (negative, fraction, zero, > 2^31), strings with every
# escape of TagoTiP.md §4.4, booleans, units.
BODY1 = (r"[temp:=21.5#C;delta:=-3;tiny:=-0.125;zero:=0;big:=1234567890123;status=online;"
         r"note=a\;b\,c\nd;path=C:\\tmp\|x\#1\@2\^3\{4\}\[5\];msg=hello, world = ok;"
         r"active?=true;door?=false;speed:=12.5#m/s]")
RECORDS1 = [
    rec("temp", "number", 21.5, "C"),
    rec("delta", "number", -3),
    rec("tiny", "number", -0.125),
    rec("zero", "number", 0),
    rec("big", "number", 1234567890123),
    rec("status", "string", "online"),
    rec("note", "string", "a;b,c\nd"),
    rec("path", "string", "C:\\tmp|x#1@2^3{4}[5]"),
    rec("msg", "string", "hello, world = ok"),
    rec("active", "boolean", 1),
    rec("door", "boolean", 0),
    rec("speed", "number", 12.5, "m/s"),
]

# Body 2: body-level ^group @time {metadata}, inherited and overridden per
# variable; variable metadata merged over the body's (variable wins);
# locations with and without altitude; every suffix in order.
BODY2 = (r"^batch_1@1700000000000{fw=2.1,site=north}[temp:=22#C;hum:=40#%@1700000000500;"
         r"pos@=39.74,-104.99,305;pos2@=-33.8688,151.2093@1700000000250{site=south,src=gps};"
         r"label=x^grp_b;pressure:=1013.25#hPa@1700000001000^g2{sensor=bmp280,fw=3.0}]")
BODY_META = {"fw": "2.1", "site": "north"}
RECORDS2 = [
    rec("temp", "number", 22, "C", 1700000000000, "batch_1", meta=BODY_META),
    rec("hum", "number", 40, "%", 1700000000500, "batch_1", meta=BODY_META),
    rec("pos", "none", None, None, 1700000000000, "batch_1", (39.74, -104.99, 305),
        BODY_META),
    rec("pos2", "none", None, None, 1700000000250, "batch_1", (-33.8688, 151.2093, None),
        {"fw": "2.1", "site": "south", "src": "gps"}),
    rec("label", "string", "x", None, 1700000000000, "grp_b", meta=BODY_META),
    rec("pressure", "number", 1013.25, "hPa", 1700000001000, "g2",
        meta={"fw": "3.0", "site": "north", "sensor": "bmp280"}),
]

# Body 3: newer values (receive time, later than body 1's and body 2's
# times) for PULL; escapes in a metadata value.
BODY3 = r"[temp:=23.5#C;status=idle\;ok{note=a\,b\}c\\d\ne}]"
RECORDS3 = [
    rec("temp", "number", 23.5, "C"),
    rec("status", "string", "idle;ok", meta={"note": "a,b}c\\d\ne"}),
]

BAD_BODY = "[temp:=01]"  # leading zero: TagoTiP.md §6.3.1
LAST_BODY = "[after:=1]"
RECORDS_LAST = [rec("after", "number", 1)]
PULL_FOUND = ["temp", "status", "nothing", "pos"]
PULL_NONE = ["nothing", "absent"]


def plan(dev):
    """The requests of one device, in order: dicts with topic, payload, what,
    expect (('sealed', inner) | ('plain', bytes) | ('pull', names) | ('refused',))
    and dead (the dead-letter reason the payload must get, or None)."""
    suite, serial, key = dev["suite"], dev["serial"], dev["key"]
    ah, dh = dev["ah"], dev["dh"]
    push, pull = f"$tips/{serial}/push", f"$tips/{serial}/pull"

    def env(method, counter, inner, k=key):
        return ref.seal(k, suite, method, counter, ah, dh, inner)

    first = env(ref.PUSH, 1, f"{serial}|{BODY1}")
    wrong = bytes(b ^ 0x5A for b in key)
    reqs = [
        dict(what="PUSH 1 (numbers, strings, escapes, booleans, units)", topic=push,
             payload=first, expect=("sealed", f"OK|{len(RECORDS1)}"), dead=None),
        dict(what="PUSH 2 (body-level group/time/metadata, locations)", topic=push,
             payload=env(ref.PUSH, 2, f"{serial}|{BODY2}"),
             expect=("sealed", f"OK|{len(RECORDS2)}"), dead=None),
        dict(what="PUSH 3 (newer values, metadata escapes)", topic=push,
             payload=env(ref.PUSH, 3, f"{serial}|{BODY3}"),
             expect=("sealed", f"OK|{len(RECORDS3)}"), dead=None),
        dict(what="PUSH 4 malformed body", topic=push,
             payload=env(ref.PUSH, 4, f"{serial}|{BAD_BODY}"),
             expect=("sealed", "ERR|invalid_payload"), dead="invalid_body"),
        dict(what="PUSH 1 replayed byte for byte", topic=push, payload=first,
             expect=("sealed", "ERR|invalid_seq"), dead="replay"),
        dict(what="PUSH with used counter 3, new body", topic=push,
             payload=env(ref.PUSH, 3, f"{serial}|[replayed:=1]"),
             expect=("sealed", "ERR|invalid_seq"), dead="replay"),
        dict(what="PUSH 5 sealed with a wrong key", topic=push,
             payload=env(ref.PUSH, 5, f"{serial}|[wrongkey:=1]", wrong),
             expect=("plain", b"ACK|ERR|auth_failed"), dead="auth_failed"),
        dict(what="PING 6", topic=push, payload=env(ref.PING, 6, serial),
             expect=("sealed", "PONG"), dead=None),
    ]
    if suite != 2:  # AES-256-CCM + PULL would be flags 0x41, reserved (TagoTiPs.md §5.1)
        reqs += [
            dict(what=f"PULL 7 [{';'.join(PULL_FOUND)}]", topic=pull,
                 payload=env(ref.PULL, 7, f"{serial}|[{';'.join(PULL_FOUND)}]"),
                 expect=("pull", PULL_FOUND), dead=None),
            dict(what=f"PULL 8 [{';'.join(PULL_NONE)}]", topic=pull,
                 payload=env(ref.PULL, 8, f"{serial}|[{';'.join(PULL_NONE)}]"),
                 expect=("sealed", "ERR|variable_not_found"), dead=None),
        ]
    reqs.append(dict(what="PUSH 9 after all that", topic=push,
                     payload=env(ref.PUSH, 9, f"{serial}|{LAST_BODY}"),
                     expect=("sealed", f"OK|{len(RECORDS_LAST)}"), dead=None))
    if suite == 2:
        reqs.append(dict(what="PULL 10 with the reserved flags 0x41", topic=pull,
                         payload=env(ref.PULL, 10, f"{serial}|[temp]"),
                         expect=("refused",), dead="bad_envelope"))
    for r in reqs:
        r["acks"] = []
    return reqs


def expected_records(serial):
    topic = {"mqtt_topic": f"$tips/{serial}/push"}
    out = []
    for r in RECORDS1 + RECORDS2 + RECORDS3 + RECORDS_LAST:
        out.append(dict(r, metadata={**r["metadata"], **topic}))
    return out


# ---- talking to the daemon ---------------------------------------------------

class Device:
    """One paho client per device, logged in with its own token: subscribes
    to its ack topic, then sends one request at a time and waits for its
    answer (TagoTiPs.md §9)."""

    def __init__(self, sp, serial):
        self.got = queue.Queue()
        subscribed = queue.Queue()
        self.cl = sp.client(sp.creds(serial), client_id=f"interop-{serial}")
        self.cl.on_message = lambda c, u, m: self.got.put(bytes(m.payload)) \
            if m.topic == f"$tips/{serial}/ack" else None
        self.cl.on_subscribe = lambda *a: subscribed.put(True)
        self.cl.connect("127.0.0.1", sp.port)
        self.cl.loop_start()
        self.cl.subscribe(f"$tips/{serial}/ack", qos=1)
        try:
            subscribed.get(timeout=10)
        except queue.Empty:
            raise AssertionError(f"no SUBACK for $tips/{serial}/ack") from None

    def drain(self, into):
        while True:
            try:
                into.append(self.got.get_nowait())
            except queue.Empty:
                return

    def send(self, req, prev, wait):
        """Publishes req (QoS 1); answers that came before belong to prev."""
        if prev is not None:
            self.drain(prev["acks"])
        info = self.cl.publish(req["topic"], req["payload"], qos=1)
        info.wait_for_publish()
        try:
            req["acks"].append(self.got.get(timeout=wait))
            return True
        except queue.Empty:
            return False

    def close(self):
        self.cl.disconnect()
        self.cl.loop_stop()


# ---- checks --------------------------------------------------------------------

def row_view(r):
    return {"variable": r["variable"], "type": r["type"], "value": r["value"],
            "unit": r["unit"], "time": r["time"], "group_id": r["group_id"],
            "lat": r["lat"], "lng": r["lng"], "alt": r["alt"],
            "metadata": json.loads(r["metadata"]) if r["metadata"] else None}


def check_records(c, dev, rows, t0, t1):
    serial = dev["serial"]
    topic = f"$tips/{serial}/push"
    want = expected_records(serial)
    got = [row_view(r) for r in rows]
    c.eq([g["variable"] for g in got], [w["variable"] for w in want],
         f"{serial}: stored variables, in order")
    diffs = []
    for i, (g, w) in enumerate(zip(got, want)):
        for k, wv in w.items():
            gv = g[k]
            if k == "metadata":  # mqtt_topic is checked on its own below
                gv = {x: y for x, y in (gv or {}).items() if x != "mqtt_topic"}
                wv = {x: y for x, y in wv.items() if x != "mqtt_topic"}
            if wv is RECV:
                if not (isinstance(gv, int) and t0 <= gv <= t1):
                    diffs.append(f"#{i + 1} {w['variable']}.time {gv!r} not a receive time "
                                 f"in [{t0}, {t1}]")
            elif gv != wv:
                diffs.append(f"#{i + 1} {w['variable']}.{k}: got {gv!r}, want {wv!r}")
    c.check(not diffs and len(got) == len(want),
            f"{serial}: exactly the expected {len(want)} records (value, type, unit, time, "
            f"group, location, metadata)" +
            ("" if not diffs else "; differences: " + "; ".join(diffs)))
    no_topic = [f"#{i + 1} {g['variable']} ({(g['metadata'] or {}).get('mqtt_topic')!r})"
                for i, g in enumerate(got) if (g["metadata"] or {}).get("mqtt_topic") != topic]
    c.check(got and not no_topic,
            f"{serial}: every record has metadata.mqtt_topic = {topic!r}" +
            ("" if not no_topic else
             f"; none of the {len(got)} records has it" if len(no_topic) == len(got) else
             f"; not so in {len(no_topic)} of {len(got)}: " + ", ".join(no_topic)))
    late = [r["received_at"] for r in rows if not (t0 <= r["received_at"] <= t1)]
    c.check(not late, f"{serial}: received_at within the run [{t0}, {t1}]: outside: {late}")


def check_dead(c, dev, reqs, dead_rows):
    """Each PUSH payload gets exactly the dead letters planned for it (none
    for a stored one; the replayed bytes of PUSH 1 get one). PING and PULL
    are only reported: whether an answered request leaves a dead letter is
    the daemon's choice."""
    serial = dev["serial"]
    by_payload = {}
    for r in reqs:
        by_payload.setdefault(r["payload"], []).append(r)
    for payload, rs in by_payload.items():
        rows = [d for d in dead_rows if bytes(d["payload"] or b"") == payload]
        got = [(d["reason"], d["topic"]) for d in rows]
        what = " / ".join(r["what"] for r in rs)
        if all(ref.split_flags(payload[0])[2] != ref.PUSH and not r["dead"] for r in rs):
            if rows:
                print(f"info {serial}: {what} left dead letters "
                      f"{[(d['reason'], d['detail']) for d in rows]}")
            continue
        want = [(r["dead"], r["topic"]) for r in rs if r["dead"]]
        c.eq(got, want, f"{serial}: dead letters of {what}")
        for d in rows:  # an envelope that did not open names no device for certain
            if d["reason"] not in ("bad_envelope", "auth_failed"):
                c.eq(d["device"], serial, f"{serial}: dead letter '{d['reason']}' names the device")


def open_sealed(dev, payload):
    """(opened, problem): the ACK envelope opened with the device's key."""
    if payload[:1] == bytes([ref.PLAINTEXT_FALLBACK_BYTE]):
        return None, f"plaintext {payload!r} where a sealed envelope was due"
    try:
        o = ref.open_envelope(dev["key"], payload)
    except ref.EnvelopeError as e:
        return None, f"cannot open ({e}): {payload.hex()}"
    problems = []
    if o.method != ref.ACK:
        problems.append(f"method {o.method}, want 3 (ACK)")
    if o.suite != dev["suite"]:
        problems.append(f"suite {o.suite}, want {dev['suite']}")
    if o.auth_hash != dev["ah"]:
        problems.append(f"auth hash {o.auth_hash.hex()}, want {dev['ah'].hex()}")
    if o.device_hash != dev["dh"]:
        problems.append(f"device hash {o.device_hash.hex()}, want {dev['dh'].hex()}")
    return o, "; ".join(problems)


def check_pull(dev, detail, names, rows):
    """Problems of a PULL answer's detail against the last stored rows."""
    try:
        got = ref.parse_var_list(detail)
    except ValueError as e:
        return [f"detail {detail!r} is not a TagoTiP variable list: {e}"]
    last = {}
    for r in rows:
        last[r["variable"]] = r  # rows are in id order
    want = [n for n in names if n in last]
    problems = []
    if sorted(v["name"] for v in got) != sorted(want):
        problems.append(f"variables {[v['name'] for v in got]}, want {want}")
    for v in got:
        r = last.get(v["name"])
        if r is None:
            continue
        if r["type"] == "none" and r["lat"] is not None:
            want_t, want_v = "location", (r["lat"], r["lng"], r["alt"])
        else:
            want_t = r["type"]
            want_v = bool(r["value"]) if want_t == "boolean" else r["value"]
        if (v["type"], v["value"]) != (want_t, want_v):
            problems.append(f"{v['name']}: {v['type']} {v['value']!r}, want {want_t} {want_v!r}")
        if v["unit"] != r["unit"]:
            problems.append(f"{v['name']}: unit {v['unit']!r}, want {r['unit']!r}")
        if v["time"] is not None and v["time"] != r["time"]:
            problems.append(f"{v['name']}: time {v['time']}, stored {r['time']}")
        if v["group"] is not None and v["group"] != r["group_id"]:
            problems.append(f"{v['name']}: group {v['group']!r}, stored {r['group_id']!r}")
        meta = json.loads(r["metadata"]) if r["metadata"] else {}
        if v["metadata"] is not None and any(meta.get(k) != x for k, x in v["metadata"].items()):
            problems.append(f"{v['name']}: metadata {v['metadata']!r} not in stored {meta!r}")
    return problems


def check_acks(c, dev, reqs, rows):
    serial = dev["serial"]
    counters = []
    for r in reqs:
        acks, kind = r["acks"], r["expect"][0]
        label = f"{serial}: answer to {r['what']}"
        if kind == "refused":
            bad = []
            for a in acks:
                o, _ = open_sealed(dev, a) if a[:1] != b"A" else (None, "")
                if o is not None and o.inner.startswith(b"OK"):
                    bad.append(o.inner)
            c.check(not bad and len(acks) <= 1,
                    f"{label}: none, or an error (got {acks!r}; sealed OK answers: {bad!r})")
            continue
        if len(acks) != 1:
            c.check(False, f"{label}: got {len(acks)} messages on $tips/{serial}/ack, want 1 " +
                           ("(no ACK arrived)" if not acks else f"({acks!r})"))
            continue
        a = acks[0]
        if kind == "plain":
            c.eq(a, r["expect"][1], f"{label}: plaintext fallback (first byte 0x41)")
            continue
        o, problem = open_sealed(dev, a)
        if o is None:
            c.check(False, f"{label}: {problem}")
            continue
        counters.append(o.counter)
        c.check(not problem, f"{label}: ACK envelope flags 0x{o.flags:02x} "
                             f"(suite {dev['suite']}, v0, method 3), hashes" +
                (f": {problem}" if problem else ""))
        try:
            inner = o.inner.decode("utf-8")
        except UnicodeDecodeError:
            c.check(False, f"{label}: inner frame is not UTF-8: {o.inner!r}")
            continue
        if kind == "sealed":
            c.eq(inner, r["expect"][1], f"{label}: sealed inner frame")
        else:
            status, _, detail = inner.partition("|")
            problems = [f"status {status!r}, want 'OK'"] if status != "OK" else \
                check_pull(dev, detail, r["expect"][1], rows)
            c.check(not problems, f"{label}: sealed {inner!r} has the last stored values" +
                    ("" if not problems else ": " + "; ".join(problems)))
    c.check(len(counters) >= 2 and all(a < b for a, b in zip(counters, counters[1:])),
            f"{serial}: ACK counters strictly increase: {counters}")


# ---- the test ------------------------------------------------------------------

def test(c, tmp, started):
    for ok, what in ref.self_check():
        c.check(ok, f"reference implementation: {what}")

    sp = h.Sealpipe(tmp, analyses=ANALYSES)
    prof = json.loads(sp.cli("profile", "add", "interop", "--token", TOKEN, "--json").stdout)
    ah = ref.auth_hash(TOKEN)
    c.eq(prof["auth_hash"], ah.hex(), "profile auth hash = SHA-256(token without 'at')[:8]")

    devs = []
    for suite in ref.SUITES.values():
        serial = "io-" + suite.name
        j = sp.add_device(serial, "--cipher", suite.name, "--profile", "interop")
        dev = {"serial": serial, "suite": suite.id, "key": bytes.fromhex(j["key"]),
               "ah": ah, "dh": ref.device_hash(serial)}
        c.eq((j["cipher"], len(dev["key"]), j["auth_hash"], j["device_hash"]),
             (suite.name, suite.key_len, ah.hex(), dev["dh"].hex()),
             f"{serial}: device add prints cipher, key length, auth and device hash")
        dev["reqs"] = plan(dev)
        devs.append(dev)

        # The other direction of the comparison: sealpipe's sealer gives the
        # same bytes as the reference for the same inputs.
        out = subprocess.run([h.DEVICE, "seal", "--serial", serial, "--key", j["key"],
                              "--cipher", suite.name, "--auth-hash", j["auth_hash"],
                              "--counter", "1", BODY1], capture_output=True)
        want = dev["reqs"][0]["payload"]
        c.check(out.returncode == 0 and out.stdout == want,
                f"{serial}: sealpipe-device seal gives the reference's envelope byte for byte"
                + ("" if out.stdout == want else
                   f" (got {out.stdout.hex()} rc {out.returncode} {out.stderr!r}, "
                   f"want {want.hex()})"))

    sp.start()
    started.append(sp)

    wait = FIRST_ACK_WAIT
    windows = {}
    for dev in devs:
        cl = Device(sp, dev["serial"])
        t0 = now_ms()
        prev = None
        for r in dev["reqs"]:
            due = MISSING_ACK_WAIT if r["expect"][0] == "refused" else wait
            if not cl.send(r, prev, due) and r["expect"][0] != "refused":
                if wait != MISSING_ACK_WAIT:
                    print(f"info {dev['serial']}: no answer to {r['what']} within {due}s; "
                          f"from now on waiting {MISSING_ACK_WAIT}s per answer")
                wait = MISSING_ACK_WAIT
            elif r["expect"][0] != "refused" and wait == FIRST_ACK_WAIT:
                wait = ACK_WAIT
            prev = r
        dev["client"], dev["prev"] = cl, prev
        windows[dev["serial"]] = t0

    # Everything reaches the bucket (the daemon commits before it answers,
    # but it may not answer yet).
    def settled():
        for dev in devs:
            n = sp.count("SELECT count(*) n FROM data WHERE device = ?", dev["serial"])
            if n < len(expected_records(dev["serial"])):
                return False
        dead = sp.rows("SELECT payload FROM dead_letters")
        payloads = [bytes(d["payload"] or b"") for d in dead]
        return all(r["payload"] in payloads for dev in devs for r in dev["reqs"]
                   if r["dead"] and r["dead"] != "bad_envelope")
    try:
        h.wait_for(settled, timeout=8, what="records and dead letters")
    except AssertionError as e:
        print(f"info {e}")
    time.sleep(0.5)  # late answers
    for dev in devs:
        dev["client"].drain(dev["prev"]["acks"])
        dev["client"].close()
    t1 = now_ms()

    dead_rows = sp.rows("SELECT topic, device, reason, detail, payload FROM dead_letters "
                        "ORDER BY id")
    for dev in devs:
        rows = sp.rows("SELECT * FROM data WHERE device = ? ORDER BY id", dev["serial"])
        check_records(c, dev, rows, windows[dev["serial"]], t1)
        check_dead(c, dev, dev["reqs"], dead_rows)
        check_acks(c, dev, dev["reqs"], rows)
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable IN "
                  "('replayed', 'wrongkey')"), 0, "replayed and wrong-key envelopes stored nothing")


if __name__ == "__main__":
    sys.exit(h.run(test))
