"""Reconciliation: what the publishers got a PUBACK for against what the daemon
committed to <data>/sealpipe.db (tables data and dead_letters), read-only.

The rule asserted, per device:
  - a numbered message (kinds seq and tip) that was PUBACKed is stored or a
    dead letter at least once: none missing;
  - it is there exactly once unless paho resent it after a disconnect (a
    resent message may be there once per copy the broker took, i.e. at most
    1 + resends times); any more is a duplicate, and so is a message that was
    never resent and is there twice;
  - a message never PUBACKed may be there (the broker took it and the
    PUBACK was lost) or not, but never more than 1 + resends times;
  - heartbeats (identical bytes every time) are counted: stored at least as
    many as PUBACKed, at most as many as sent plus resent;
  - nothing is there that no publisher sent.
"""

import json
import re
import sqlite3
import time

TIP_SEQ = re.compile(rb"\[tseq:=(\d+);")
JSON_SEQ = re.compile(rb'^\{"variable":"seq","value":(\d+),')
HB_PAYLOAD = b'{"variable":"hb","value":1}'


def load(paths):
    """The publishers' results, merged: a list of per-device results."""
    devices = []
    for p in paths:
        with open(p) as f:
            devices += json.load(f)["devices"]
    return devices


def _connect(db_path):
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    return con


def handled(db_path):
    """Messages the daemon has committed so far, as the publishers count them:
    seq, tseq and hb records plus dead letters."""
    try:
        con = _connect(db_path)
    except sqlite3.Error:
        return 0
    try:
        n = con.execute("SELECT count(*) FROM data WHERE variable IN ('seq','tseq','hb')"
                        ).fetchone()[0]
        return n + con.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        con.close()


def acked_total(devices):
    return sum(len(d["seq"]["acked"]) + len(d["tip"]["acked"]) + d["hb"]["acked"]
               for d in devices)


def progress(db_path):
    """A cheap token that changes whenever the daemon commits: the highest
    row ids of data and dead_letters (counting millions of rows every 200 ms
    would compete with the daemon it waits for)."""
    try:
        con = _connect(db_path)
    except sqlite3.Error:
        return None
    try:
        return (con.execute("SELECT max(id) FROM data").fetchone()[0],
                con.execute("SELECT max(id) FROM dead_letters").fetchone()[0])
    except sqlite3.Error:
        return None
    finally:
        con.close()


def wait_caught_up(db_path, want, timeout=120.0, settle=2.0, give_up=15.0):
    """Waits until the daemon has committed at least `want` messages and
    stopped committing for `settle` s, or has not committed anything for
    `give_up` s (messages lost: the count never gets there), or `timeout`.
    Returns (messages committed, seconds from the call until the last commit)."""
    t0 = time.monotonic()
    last, moved, n = progress(db_path), t0, None
    while True:
        time.sleep(0.2)
        now, p = time.monotonic(), progress(db_path)
        if p != last:
            last, moved, n = p, now, None
        still = now - moved
        if still >= settle and n is None:
            n = handled(db_path)
        if (n is not None and n >= want) or still >= give_up or now - t0 >= timeout:
            return (n if n is not None else handled(db_path)), moved - t0


def _stored(db_path):
    """{(serial, kind, n): count} and {serial: heartbeats}, records and dead
    letters together, and the number of dead letters."""
    counts, hbs, dead = {}, {}, 0
    con = _connect(db_path)
    try:
        for kind, var in (("seq", "seq"), ("tip", "tseq")):
            for dev, val, k in con.execute(
                    "SELECT device, value, count(*) FROM data WHERE variable = ? "
                    "GROUP BY device, value", (var,)):
                counts[(dev, kind, int(val))] = counts.get((dev, kind, int(val)), 0) + k
        for dev, k in con.execute("SELECT device, count(*) FROM data WHERE variable = 'hb' "
                                  "GROUP BY device"):
            hbs[dev] = hbs.get(dev, 0) + k
        for topic, payload in con.execute("SELECT topic, payload FROM dead_letters"):
            dead += 1
            serial = (topic or "").split("/")[1] if "/" in (topic or "") else None
            payload = bytes(payload or b"")
            m_json, m_tip = JSON_SEQ.match(payload), TIP_SEQ.search(payload)
            if payload == HB_PAYLOAD:
                hbs[serial] = hbs.get(serial, 0) + 1
            elif m_json or m_tip:
                key = (serial, "seq" if m_json else "tip", int((m_json or m_tip).group(1)))
                counts[key] = counts.get(key, 0) + 1
            else:
                counts[(serial, "other", topic)] = counts.get((serial, "other", topic), 0) + 1
    finally:
        con.close()
    return counts, hbs, dead


def reconcile(db_path, devices):
    """Counts (a dict) and a list of problems, each a line of text."""
    counts, hbs, dead = _stored(db_path)
    f = dict(sent=0, acked=0, unacked=0, resent=0, stored=0, dead_letters=dead,
             missing=0, doubled=0, unknown=0, hb_acked=0, hb_stored=0)
    problems, seen = [], set()
    for d in devices:
        s = d["serial"]
        for kind in ("seq", "tip"):
            r = d[kind]
            for acked, nums in ((True, r["acked"]), (False, r["unacked"])):
                for n in nums:
                    again = r["resent"].get(str(n), 0)
                    got = counts.get((s, kind, n), 0)
                    seen.add((s, kind, n))
                    f["resent"] += again > 0
                    if acked and got == 0:
                        f["missing"] += 1
                        if f["missing"] <= 5:
                            problems.append(f"missing: {s} {kind} {n} (PUBACKed)")
                    if got > 1 + again:
                        f["doubled"] += 1
                        if f["doubled"] <= 5:
                            problems.append(f"doubled: {s} {kind} {n} stored {got} times, "
                                            f"resent {again} times")
            f["acked"] += len(r["acked"])
            f["unacked"] += len(r["unacked"])
        hb = d["hb"]
        f["acked"] += hb["acked"]
        f["unacked"] += hb["unacked"]
        got = hbs.get(s, 0)
        f["hb_acked"] += hb["acked"]
        f["hb_stored"] += got
        if got < hb["acked"]:
            f["missing"] += hb["acked"] - got
            problems.append(f"missing: {s} heartbeats: {got} stored, {hb['acked']} PUBACKed")
        if got > hb["acked"] + hb["unacked"] + hb["resent"]:
            f["doubled"] += got - (hb["acked"] + hb["unacked"] + hb["resent"])
            problems.append(f"doubled: {s} heartbeats: {got} stored, {hb['acked']} PUBACKed, "
                            f"{hb['unacked']} not, {hb['resent']} resends")
    f["sent"] = f["acked"] + f["unacked"]
    f["stored"] = sum(counts.values()) + sum(hbs.values()) - dead
    for key, k in counts.items():
        if key not in seen:
            f["unknown"] += k
            if f["unknown"] <= 5:
                problems.append(f"stored but never sent: {key} x{k}")
    return f, problems


def summary(f):
    return (f"sent {f['sent']}, PUBACKed {f['acked']}, not PUBACKed {f['unacked']}, "
            f"resent {f['resent']}, stored {f['stored']}, dead letters {f['dead_letters']}, "
            f"missing {f['missing']}, doubled {f['doubled']}, unknown {f['unknown']} "
            f"(heartbeats PUBACKed {f['hb_acked']}, stored {f['hb_stored']})")


def check(c, db_path, devices, what):
    """Reconciles and records the result in c (harness.Checks): one check for
    'none missing', one for 'none doubled', one for 'nothing unknown'.
    Returns the counts."""
    f, problems = reconcile(db_path, devices)
    print(f"     {what}: {summary(f)}")
    for p in problems:
        print(f"     {p}")
    c.check(f["acked"] > 0, f"{what}: the publishers got PUBACKs ({f['acked']})")
    c.eq(f["missing"], 0, f"{what}: PUBACKed messages missing")
    c.eq(f["doubled"], 0, f"{what}: messages stored more often than sent")
    c.eq(f["unknown"], 0, f"{what}: stored messages no publisher sent")
    return f
