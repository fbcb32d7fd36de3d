"""sealpipe query: TagoIO's data queries against known data.

A device sends a known day of records (numbers, integers, strings with a comma
and quotes, booleans, a location, groups, metadata, mixed units) with explicit
timestamps through the real daemon, half sealed with sealpipe-device push,
half plain with mosquitto_pub, plus records a few minutes and hours before now
for the relative times. Once the bucket holds exactly what was sent, every
option is checked against answers computed here in Python from those rows:
the newest 15, qty and skip, order, variables, absolute and relative times
with both ends inclusive, groups, each aggregate with and without --interval;
JSON, CSV (parsed with the csv module) and the table; the error cases; the
README's "Querying data" examples, whose sqlite3 SQL is run with Python's
sqlite3 and compared with the command's output; queries while the daemon keeps
writing; and, with the daemon stopped, that a query leaves the data directory
byte for byte as it was.
"""

import csv
import hashlib
import io
import json
import math
import os
import re
import shlex
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

SERIAL = "sensor-01"
HOUR = 3600 * 1000
MIN = 60 * 1000
AGGS = ("last", "first", "count", "min", "max", "avg", "sum")


def ms(text):
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def iso(t):
    d = datetime.fromtimestamp(t // 1000, timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + ".%03dZ" % (t % 1000)


DAY = ms("2026-12-01T00:00:00Z")


def known_day():
    """The records of 2026-12-01: (variable, kind, value, unit, time, group,
    location, metadata)."""
    recs = []
    for i in range(24):  # 09:00 .. 12:50, every 10 minutes; values repeat (ties)
        t = DAY + 9 * HOUR + i * 10 * MIN
        meta = {"source": "dht22", "quality": "high"} if i == 0 else None
        recs.append(("temperature", "number", 18 + (i * 7 % 11) * 0.5, "C", t,
                     "batch_%d" % (7 + (i // 6) % 2), None, meta))
    for i in range(12):  # integers
        recs.append(("humidity", "number", 40 + i * 3 % 17, "%", DAY + 9 * HOUR + i * 20 * MIN,
                     None, None, None))
    for i in range(8):
        recs.append(("status", "string", "warn" if i % 3 == 0 else "ok", None,
                     DAY + 9 * HOUR + i * 30 * MIN, None, None, None))
    for i in range(4):
        recs.append(("door", "boolean", i % 2 == 0, None, DAY + (9 + i) * HOUR + 5 * MIN, None,
                     None, None))
    recs.append(("position", "none", None, None, DAY + 9 * HOUR + 5 * MIN, None,
                 (39.74, -104.99, 305), None))
    recs.append(("pressure", "number", 1013, "hPa", DAY + 9 * HOUR + 15 * MIN, None, None, None))
    recs.append(("pressure", "number", 101.2, "kPa", DAY + 9 * HOUR + 45 * MIN, None, None, None))
    recs.append(("note", "string", 'hot, "dry"', None, DAY + 10 * HOUR, None, None, None))
    return recs


def recent(now):
    """Records minutes to days before now, for --start 1h and the like."""
    return [("temperature", "number", 30, "C", now - 30 * MIN, None, None, None),
            ("temperature", "number", 31.25, "C", now - 90 * MIN, None, None, None),
            ("humidity", "number", 50, "%", now - 45 * MIN, None, None, None),
            ("humidity", "number", 51, "%", now - 3 * HOUR, None, None, None),
            ("humidity", "number", 52, "%", now - 48 * HOUR, None, None, None)]


def tip(rec):
    """One TagoTiP variable with its suffixes (TagoTiP.md: #unit @=loc @time ^group {meta})."""
    var, kind, value, unit, t, group, loc, meta = rec
    s = var
    if kind == "number":
        s += ":=%s" % value
    elif kind == "string":
        s += "=" + value.replace(",", "\\,")
    elif kind == "boolean":
        s += "?=" + ("true" if value else "false")
    if unit:
        s += "#" + unit
    if loc:
        s += "@=" + ",".join(str(x) for x in loc)
    s += "@%d" % t
    if group:
        s += "^" + group
    if meta:
        s += "{" + ",".join("%s=%s" % kv for kv in meta.items()) + "}"
    return s


def send(sp, dev, recs):
    """Pushes recs in bodies of 10, alternately sealed and plain."""
    for n, k in enumerate(range(0, len(recs), 10)):
        body = "[" + ";".join(tip(r) for r in recs[k:k + 10]) + "]"
        if n % 2 == 0:
            sp.push(dev, body)
        else:
            sp.pub("$tip/%s/push" % SERIAL, body.encode())


# ---- the answers, computed here ---------------------------------------------------


def as_json(r):
    """A data row as TagoIO's record object (what --json prints)."""
    o = {"variable": r["variable"]}
    if r["type"] == "boolean":
        o["value"] = bool(r["value"])
    elif r["type"] != "none":
        o["value"] = r["value"]
    if r["unit"] is not None:
        o["unit"] = r["unit"]
    o["time"] = iso(r["time"])
    if r["group_id"] is not None:
        o["group"] = r["group_id"]
    if r["lat"] is not None:
        o["location"] = {"lat": r["lat"], "lng": r["lng"]}
        if r["alt"] is not None:
            o["location"]["alt"] = r["alt"]
    if r["metadata"] is not None:
        o["metadata"] = json.loads(r["metadata"])
    return o


def pick(rows, variables=(), start=None, end=None, group=None):
    return [r for r in rows
            if (not variables or r["variable"] in variables)
            and (start is None or r["time"] >= start) and (end is None or r["time"] <= end)
            and (group is None or r["group_id"] == group)]


def records(rows, qty=15, skip=0, asc=False):
    rows = sorted(rows, key=lambda r: (r["time"], r["id"]), reverse=not asc)
    return [as_json(r) for r in rows[skip:skip + qty]]


def reduce_one(f, rs, var):
    if f == "last":
        return as_json(max(rs, key=lambda r: (r["time"], r["id"])))
    if f == "first":
        return as_json(min(rs, key=lambda r: (r["time"], r["id"])))
    if f == "min":
        return as_json(min(rs, key=lambda r: (r["value"], -r["time"], -r["id"])))
    if f == "max":
        return as_json(max(rs, key=lambda r: (r["value"], r["time"], r["id"])))
    o = {"variable": var}
    values = [r["value"] for r in rs]
    o["value"] = len(rs) if f == "count" else sum(values) / len(values) if f == "avg" \
        else sum(values)
    units = set(r["unit"] for r in rs if r["unit"] is not None)
    if f != "count" and len(units) == 1:
        o["unit"] = units.pop()
    return o


def aggregate(rows, f, interval=None, asc=False, qty=15, skip=0):
    groups = {}
    for r in rows:
        if f in ("min", "max", "avg", "sum") and r["type"] != "number":
            continue
        slot = r["time"] - r["time"] % interval if interval else None
        groups.setdefault((r["variable"], slot), []).append(r)
    out = []
    for (var, slot) in sorted(groups, key=lambda k: k[0]):
        o = reduce_one(f, groups[(var, slot)], var)
        if interval:
            o["interval"] = iso(slot)
        out.append((slot, o))
    if interval:
        out.sort(key=lambda so: so[0], reverse=not asc)  # stable: variables stay in order
    return [o for _, o in out][skip:skip + qty]


def same(got, want):
    """Equal, numbers within a rounding error (averages)."""
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(same(got[k], want[k]) for k in got)
    if isinstance(got, list) and isinstance(want, list):
        return len(got) == len(want) and all(same(a, b) for a, b in zip(got, want))
    if isinstance(got, (int, float)) and isinstance(want, (int, float)) \
            and not isinstance(got, bool) and not isinstance(want, bool):
        return math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12)
    return got == want


# ---- the README's examples --------------------------------------------------------


def readme_examples():
    """(arguments, SQL) of each ```sh block of the README's "Querying data"."""
    with open(os.path.join(h.SOURCE, "README.md")) as f:
        text = f.read()
    section = text.split("### Querying data\n", 1)[1].split("\n## ", 1)[0]
    out = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.S):
        block = block.replace("\\\n", " ")
        cmd = next(line for line in block.splitlines() if line.startswith("sealpipe query"))
        sql = block.split('sealpipe.db "', 1)[1].rsplit('"', 1)[0]
        out.append((shlex.split(cmd)[3:], sql))
    return out


def cell_equal(a, b):
    a = {"true": "1", "false": "0"}.get(a, a)
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-12)
    except ValueError:
        return a == b


def check_readme(c, sp, query):
    examples = readme_examples()
    c.check(len(examples) >= 10, "the README shows %d query examples" % len(examples))
    con = sqlite3.connect("file:%s?mode=ro" % os.path.join(sp.data, "sealpipe.db"), uri=True)
    names = {"time_iso": "time", "group_id": "group"}
    for args, sql in examples:
        r = query(*args, "--csv")
        got = list(csv.DictReader(io.StringIO(r.stdout)))
        cur = con.execute(sql)
        cols = [names.get(d[0], d[0]) for d in cur.description]
        want = [["" if v is None else str(v) for v in row] for row in cur.fetchall()]
        ok = r.returncode == 0 and len(want) > 0 and len(got) == len(want) and all(
            cell_equal(g[col], w) for g, row in zip(got, want) for col, w in zip(cols, row))
        c.check(ok, "README: sealpipe query %s == its SQL (%d rows, %d by SQL)"
                % (" ".join(args), len(got), len(want)))
    con.close()


# ---- the test ------------------------------------------------------------------------


def check_records(c, rows, query, now):
    def js(*args):
        r = query(*args, "--json")
        if r.returncode != 0:
            return "exit %d: %s" % (r.returncode, r.stderr.strip())
        return [json.loads(line) for line in r.stdout.splitlines()]

    def eq(args, want, what):
        got = js(*args)
        ok = same(got, want)
        c.check(ok, "%s: %s%s" % (what, " ".join(args), "" if ok else "\n   got  %s\n   want %s"
                                  % (str(got)[:600], str(want)[:600])))

    eq([], records(rows), "the 15 newest records, TagoIO's default")
    eq(["--qty", "5", "--skip", "10"], records(rows, 5, 10), "qty and skip")
    eq(["--order", "asc", "--qty", "7", "--skip", "2"], records(rows, 7, 2, asc=True),
       "oldest first")
    eq(["--qty", "10000"], records(rows, 10000), "qty 10000 (the maximum): every record")
    eq(["--variable", "temperature", "--variable", "HUMIDITY", "--qty", "100"],
       records(pick(rows, ("temperature", "humidity")), 100), "two variables, any case")
    s, e = DAY + 9 * HOUR + 30 * MIN, DAY + 10 * HOUR + 30 * MIN
    want = records(pick(rows, start=s, end=e), 100)
    c.check(want[0]["time"] == iso(e) and want[-1]["time"] == iso(s),
            "the data has records at both ends of the range")
    eq(["--start", iso(s), "--end", iso(e), "--qty", "100"], want, "both ends inclusive")
    eq(["--start", "2026-12-01T10:30:00+01:00", "--end", "2026-12-01 10:30:00", "--qty", "100"],
       want, "an offset, and TagoIO's readable form")
    eq(["--start", "2026-12-01", "--end", "2026-12-02", "--qty", "10000"],
       records(pick(rows, start=DAY, end=DAY + 24 * HOUR), 10000), "dates: midnight UTC")
    eq(["--start", "1h"], records(pick(rows, start=now - HOUR)), "the last hour")
    eq(["--start", "2h", "--end", "60m"], records(pick(rows, start=now - 2 * HOUR,
                                                       end=now - HOUR)), "2h to 60m ago")
    eq(["--start", "4d", "--qty", "100"], records(pick(rows, start=now - 96 * HOUR), 100),
       "the last 4 days")
    c.eq(len(js("--start", "4d", "--qty", "100")), 5, "the last 4 days: the 5 recent records")
    eq(["--start", "7d", "--qty", "1000"], records(rows, 1000), "the last week: everything")
    eq(["--group", "batch_7", "--qty", "100"], records(pick(rows, group="batch_7"), 100),
       "one group")
    eq(["--group", "batch_7", "--variable", "temperature", "--start", "2026-12-01T11:00:00Z",
        "--order", "asc", "--qty", "3"],
       records(pick(rows, ("temperature",), start=ms("2026-12-01T11:00:00Z"),
                    group="batch_7"), 3, asc=True), "every filter at once")
    return eq


def check_aggregates(c, rows, eq):
    day = pick(rows, start=DAY, end=DAY + 24 * HOUR)
    for f in AGGS:
        eq(["--agg", f], aggregate(rows, f), "--agg %s" % f)
        eq(["--agg", f, "--interval", "1h", "--start", "2026-12-01", "--end", "2026-12-02",
            "--qty", "1000"], aggregate(day, f, HOUR, qty=1000), "--agg %s per hour" % f)
        eq(["--agg", f, "--interval", "30m", "--order", "asc", "--variable", "temperature",
            "--qty", "5", "--skip", "1", "--start", "2026-12-01", "--end", "2026-12-02"],
           aggregate(pick(day, ("temperature",)), f, 30 * MIN, asc=True, qty=5, skip=1),
           "--agg %s per 30 minutes, oldest first, paged" % f)
    eq(["--agg", "count", "--interval", "1d", "--qty", "100"],
       aggregate(rows, "count", 24 * HOUR, qty=100), "counts per UTC day")
    avg = {o["variable"]: o for o in aggregate(rows, "avg")}
    c.eq(sorted(avg), ["humidity", "pressure", "temperature"],
         "avg skips strings, booleans and records without a value")
    c.check("unit" not in avg["pressure"] and avg["temperature"]["unit"] == "C",
            "avg keeps the unit only when the records agree")
    temps = [r for r in day if r["variable"] == "temperature"]
    top = max(r["value"] for r in temps)
    c.check(sum(r["value"] == top for r in temps) > 1, "the day has equal maxima (ties)")


def check_formats(c, rows, query):
    day = pick(rows, start=DAY, end=DAY + 24 * HOUR)
    r = query("--csv", "--start", "2026-12-01", "--end", "2026-12-02", "--qty", "1000")
    lines = r.stdout.splitlines()
    c.eq(lines[0] if lines else "", "variable,value,unit,time,group,lat,lng,alt,metadata",
         "CSV header")
    got = list(csv.DictReader(io.StringIO(r.stdout)))
    c.eq(len(got), len(day), "CSV: one line per record")
    byvar = {g["variable"]: g for g in got}
    c.eq(byvar["note"]["value"], 'hot, "dry"', "CSV: a comma and quotes survive (RFC 4180)")
    c.eq((byvar["position"]["lat"], byvar["position"]["lng"], byvar["position"]["alt"],
          byvar["position"]["value"]), ("39.74", "-104.99", "305", ""), "CSV: a location")
    meta = [json.loads(g["metadata"]) for g in got if "source" in g["metadata"]]
    c.check(len(meta) == 1 and meta[0].get("quality") == "high", "CSV: metadata JSON quoted")
    c.check(all(g["time"] == iso(ms(g["time"])) for g in got), "CSV: ISO 8601 UTC times")
    r = query("--csv", "--agg", "sum", "--interval", "1h", "--start", "2026-12-01")
    c.check(r.stdout.startswith("interval,variable,value"), "CSV with --interval: its column")
    r = query()
    lines = r.stdout.splitlines()
    c.check(r.returncode == 0 and len(lines) == 16 and lines[0].split()[:3] ==
            ["time", "variable", "value"], "table: a header and 15 rows")
    r = query("--variable", "note", "--start", "2026-12-01")
    c.check('hot, "dry"' in r.stdout, "table: a string as it is")


def check_errors(c, sp, query, tmp):
    def fails(args, status, words, what):
        r = query(*args)
        c.check(r.returncode == status and all(w in r.stderr for w in words) and not r.stdout,
                "%s: exit %d (want %d), %r" % (what, r.returncode, status, r.stderr.strip()))

    fails(["--qty", "-1"], 2, ["--qty", "-1"], "negative qty")
    fails(["--qty", "0"], 2, ["--qty", "1 to 10000"], "qty 0")
    fails(["--qty", "10001"], 2, ["10000"], "qty over the maximum")
    fails(["--skip", "x"], 2, ["--skip"], "skip not a number")
    fails(["--start", "yesterday"], 2, ["--start", "yesterday", "ISO 8601"], "start yesterday")
    fails(["--end", "2026-13-01"], 2, ["--end"], "no 13th month")
    fails(["--agg", "median"], 2, ["median", "last, first, count"], "unknown aggregate")
    fails(["--agg", "avg", "--interval", "0"], 2, ["--interval", "'0'"], "interval 0")
    fails(["--agg", "avg", "--interval", "1.5h"], 2, ["--interval"], "fractional interval")
    fails(["--interval", "1h"], 2, ["--interval needs --agg"], "interval without agg")
    fails(["--start", "2026-12-02", "--end", "2026-12-01"], 2, ["after --end"], "start > end")
    fails(["--order", "sideways"], 2, ["--order"], "unknown order")
    fails(["--json", "--csv"], 2, ["choose one"], "json and csv")
    fails(["--frobnicate"], 2, ["unknown option"], "unknown option")
    fails(["extra"], 2, ["unexpected argument"], "two serials")
    r = subprocess.run([h.SEALPIPE, "query", "--data-dir", sp.data], capture_output=True,
                       text=True)
    c.check(r.returncode == 2 and "missing <serial>" in r.stderr, "no serial: exit 2")
    r = subprocess.run([h.SEALPIPE, "query", "ghost", "--data-dir", sp.data],
                       capture_output=True, text=True)
    c.check(r.returncode == 1 and "no such device 'ghost'" in r.stderr, "unknown device: exit 1")
    missing = os.path.join(tmp, "nowhere")
    r = subprocess.run([h.SEALPIPE, "query", SERIAL, "--data-dir", missing],
                       capture_output=True, text=True)
    c.check(r.returncode == 1 and "does not exist" in r.stderr and not os.path.exists(missing),
            "missing data directory: exit 1, nothing created")
    conf = os.path.join(tmp, "query.conf")
    with open(conf, "w") as f:
        f.write("data_dir = %s\n" % sp.data)
    want = query("--agg", "count").stdout
    r = subprocess.run([h.SEALPIPE, "query", SERIAL, "--config", conf, "--agg", "count"],
                       capture_output=True, text=True)
    c.check(r.returncode == 0 and r.stdout == want, "--config names the data directory")
    r = subprocess.run([h.SEALPIPE, "query", SERIAL, "--agg", "count"], capture_output=True,
                       text=True, env=dict(os.environ, SEALPIPE_DATA_DIR=sp.data))
    c.check(r.returncode == 0 and r.stdout == want, "so does SEALPIPE_DATA_DIR")
    for fmt, want in (([], ""), (["--json"], ""),
                      (["--csv"], "variable,value,unit,time,group,lat,lng,alt,metadata\n")):
        r = subprocess.run([h.SEALPIPE, "query", "empty-01", "--data-dir", sp.data, *fmt],
                           capture_output=True, text=True)
        c.check(r.returncode == 0 and r.stdout == want and not r.stderr,
                "a known device without data %s: exit 0, %r" % (fmt, r.stdout))


def check_while_writing(c, sp, query):
    """Queries, one after the other, while the daemon stores a 3-second burst
    from another device."""
    other = sp.devices["other-01"]
    total = 1500
    burst = subprocess.Popen(
        [h.DEVICE, "push", "--serial", "other-01", "--qos", "1", "--count", str(total),
         "--interval-ms", "2", "--port", str(sp.port),
         *sp.cred_args(sp.creds(other), "--username", "--password"), "--quiet",
         "[load:={n}#W]"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    quiet = [query("--agg", "count").stdout, query("--agg", "avg", "--interval", "1h").stdout]
    counts, ok, n = [], True, 0
    while burst.poll() is None or n < 3:
        n += 1
        r = subprocess.run([h.SEALPIPE, "query", "other-01", "--data-dir", sp.data, "--agg",
                            "count", "--json"], capture_output=True, text=True)
        ok = ok and r.returncode == 0 and [query("--agg", "count").stdout, query(
            "--agg", "avg", "--interval", "1h").stdout] == quiet
        counts.append(json.loads(r.stdout)["value"] if r.stdout else 0)
    c.eq(burst.wait(), 0, "the burst was published")
    h.wait_for(lambda: sp.count("SELECT count(*) AS n FROM data WHERE device = 'other-01'")
               == total, timeout=60, what="the burst stored")
    final = subprocess.run([h.SEALPIPE, "query", "other-01", "--data-dir", sp.data, "--agg",
                            "count", "--json"], capture_output=True, text=True).stdout
    c.check(ok, "%d rounds of queries while the daemon wrote: each exit 0, the quiet device's "
            "answers unchanged" % n)
    c.check(counts == sorted(counts) and len(set(counts) - {0, total}) >= 2 and
            json.loads(final)["value"] == total,
            "the busy device's count only grows, seen between 0 and %d at least twice (%s)"
            % (total, sorted(set(counts))[:10]))


def check_read_only(c, sp, query):
    """With the daemon stopped: a query changes nothing in the data directory."""
    def snapshot():
        out = {}
        for name in sorted(os.listdir(sp.data)):
            p = os.path.join(sp.data, name)
            if os.path.isfile(p):
                with open(p, "rb") as f:
                    out[name] = hashlib.sha256(f.read()).hexdigest()
        return out

    before = snapshot()
    for args in ([], ["--agg", "avg", "--interval", "1h"], ["--json", "--qty", "10000"]):
        query(*args)
    subprocess.run([h.SEALPIPE, "query", "ghost", "--data-dir", sp.data], capture_output=True)
    c.eq(snapshot(), before, "queries of a stopped daemon's data change and create nothing")
    c.check(query("--agg", "count").returncode == 0, "and still answer")


def check_terminal(c, sp):
    """A device's bytes must not act on the terminal of whoever queries: an
    escape sequence in a string value or unit is blanked in the table, and in
    CSV when stdout is a terminal; piped, CSV keeps every byte (a review found
    CSV writing them raw to the terminal)."""
    import pty
    sp.pub("devices/other-01/data", json.dumps(
        {"variable": "esc", "value": "\u001b]0;PWNED\u0007\u001b[2J\u00c2\u009b31mX\r\nfake",
         "unit": "\u001b[5m"}).encode(), creds=sp.creds("other-01"))
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable = 'esc'") == 1,
               what="the escape record")
    bad = (b"\x1b", b"\x07", b"\xc2\x9b")  # (the pty itself turns \n into \r\n)
    for fmt in ([], ["--csv"]):
        master, slave = pty.openpty()
        p = subprocess.Popen([h.SEALPIPE, "query", "other-01", "--variable", "esc", "--data-dir",
                              sp.data, *fmt],
                             stdout=slave, stderr=subprocess.PIPE)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        p.wait()
        os.close(master)
        c.check(b"PWNED" in out and not any(x in out for x in bad),
                f"query {' '.join(fmt) or '(table)'} on a terminal: no control character of the "
                f"device's reaches it: {out!r}")
    r = subprocess.run([h.SEALPIPE, "query", "other-01", "--variable", "esc", "--data-dir",
                        sp.data, "--csv"],
                       capture_output=True)
    c.check(b"\x1b]0;PWNED\x07" in r.stdout, "query --csv piped keeps the bytes as stored")


def test(c, tmp, started):
    sp = h.Sealpipe(tmp)
    sp.start()
    started.append(sp)
    dev = sp.add_device(SERIAL)
    sp.add_device("empty-01")
    sp.add_device("other-01")
    now = int(time.time() * 1000)
    sent = known_day() + recent(now)
    send(sp, dev, sent)
    h.wait_for(lambda: sp.count("SELECT count(*) AS n FROM data WHERE device = ?", SERIAL)
               >= len(sent), timeout=30, what="the records stored")
    rows = sp.rows("SELECT id, variable, type, value, unit, time, group_id, lat, lng, alt, "
                   "metadata FROM data WHERE device = ?", SERIAL)
    c.eq(sorted((r["variable"], r["time"], r["type"], r["value"], r["unit"], r["group_id"])
                for r in rows),
         sorted((v, t, k, (int(x) if k == "boolean" else x), u, g)
                for v, k, x, u, t, g, _, _ in sent), "the bucket holds exactly what was sent")

    def query(*args):
        return subprocess.run([h.SEALPIPE, "query", SERIAL, "--data-dir", sp.data, *args],
                              capture_output=True, text=True)

    eq = check_records(c, rows, query, now)
    check_aggregates(c, rows, eq)
    check_formats(c, rows, query)
    check_errors(c, sp, query, tmp)
    check_readme(c, sp, query)
    check_while_writing(c, sp, query)
    check_terminal(c, sp)
    sp.stop()
    check_read_only(c, sp, query)


if __name__ == "__main__":
    sys.exit(h.run(test))
