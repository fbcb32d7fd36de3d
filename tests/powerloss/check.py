#!/usr/bin/env python3
"""What a power loss at instant T would leave of the device journal.

Replays the log that tests/powerloss/syncwatch.c wrote for the embedded
mosquitto (every open, write, fsync/fdatasync, close, rename and unlink under
the journal directory, with CLOCK_MONOTONIC start and end times) as a
filesystem that drops every write not made durable:

  - a segment's bytes survive a crash at T up to the extent written by writes
    that ended before the start of an fsync/fdatasync of that file that ended
    before T (a write racing a sync is taken as not covered by it);
  - a segment created by the broker survives only if an fsync of the journal
    directory started after its creation and ended before T (the strict POSIX
    rule: ext4 happens to commit the entry with the file's own fsync, other
    filesystems need not). A segment with no such directory fsync is reported.

The surviving bytes are the first ones of the segment as it was at the end of
the run: syncwatch hard-links every segment the broker creates into a mirror
folder, so a segment the daemon deletes after committing it is still there,
and the journal is append-only (a write anywhere but at the end is reported,
as then the end state would not tell what an earlier T kept). Each segment is
parsed with the on-disk format of runtime/base/journal.h (segment header
"SPJOURN1" and first id; records "SPJR", CRC-32C, total, ...): a record
survives at T if the surviving extent covers all of it and it is valid.

Against that it takes the publisher's acknowledgements: one line per message,
"puback_ns<TAB>topic<TAB>payload as hex", puback_ns from CLOCK_MONOTONIC
(time.monotonic_ns() in Python) when the PUBACK arrived. A message is lost at
T when its PUBACK came before T and its record does not survive T. Its age is
T - puback. For every message, the first instant its record is durable (D)
follows from the log, so a message is lost exactly for T in (puback, D): the
worst age over all T is the largest D - puback, reached just before D, which
is always the end of a sync. The T tried are those instants (just before
every fsync/fdatasync ends) and RANDOM others across the run.

W = journal_sync_ms + the longest fdatasync seen is the window one would
claim; the check reports how many T lose a message older than that. What the
flusher bounds is one more fdatasync: a message written just after a sync
started waits for that sync to end, journal_sync_ms, and the next sync. So
the check passes when no message PUBACKed before T - B is lost at any T,
i.e. the worst age <= B = journal_sync_ms + 2 x the longest fdatasync +
margin, and when nothing in the log breaks the model (failed or short
writes, failed syncs, writes out of order, segments without a directory
fsync, renames, CRC errors in synced bytes). It also prints how long written
bytes waited, at most, for a sync to start (from the write, or from the end
of the sync running then): the flusher's pause, wake-up delay included.
With journal_sync_ms 0, B is 0: nothing acknowledged may be lost at any T.

Usage: check.py --log LOG --dir JOURNAL_DIR --mirror MIRROR --acks ACKS
                --sync-ms N [--margin-ms 50] [--random 1000] [--end-ns NS]
                [--per-t FILE]
       check.py --self-test
Exit status 0 when the check passes.
"""

import argparse
import bisect
import os
import random
import struct
import sys
import tempfile

SEG_MAGIC = b"SPJOURN1"
SEG_HEAD = 16
REC_MAGIC = b"SPJR"
REC_HEAD = 36
INF = float("inf")


def _crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC_TABLE = _crc32c_table()


def crc32c(data, crc=0):
    """CRC-32C (Castagnoli; reflected, init ~0, final ~0), as iSCSI and ext4."""
    c = crc ^ 0xFFFFFFFF
    t = CRC_TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


# ---- the journal format --------------------------------------------------------

def make_record(rid, topic, payload, publisher=b"", qos=1, retain=False, received_ms=0):
    """One record's bytes, written from the format (independent of the C code)."""
    topic = topic.encode() if isinstance(topic, str) else topic
    publisher = publisher.encode() if isinstance(publisher, str) else publisher
    flags = (qos & 3) | (4 if retain else 0)
    total = REC_HEAD + len(topic) + len(publisher) + len(payload)
    body = struct.pack("<IBBHQqI", total, flags, len(publisher), len(topic), rid, received_ms,
                       len(payload)) + topic + publisher + payload
    return REC_MAGIC + struct.pack("<I", crc32c(body)) + body


def make_segment_head(first):
    return SEG_MAGIC + struct.pack("<Q", first)


def parse_segment(data):
    """(first id, records, stop): records are dicts (offset, end, id, flags,
    received_ms, topic, publisher, payload) of the valid records from the start
    of data; stop is None when data ends on a record boundary, else why parsing
    stopped ("short" for a record cut by the end of data, "bad ..." otherwise)."""
    if len(data) < SEG_HEAD:
        return None, [], "short" if SEG_MAGIC.startswith(data[:8]) else "bad segment header"
    if data[:8] != SEG_MAGIC:
        return None, [], "bad segment header"
    first = struct.unpack_from("<Q", data, 8)[0]
    recs, off = [], SEG_HEAD
    while off < len(data):
        rec, stop = parse_record(data, off)
        if rec is None:
            return first, recs, stop
        recs.append(rec)
        off = rec["end"]
    return first, recs, None


def parse_record(data, off):
    """The record at data[off:], or (None, why)."""
    avail = len(data) - off
    if avail < REC_HEAD:
        ok = REC_MAGIC.startswith(data[off:off + 4])
        return None, "short" if ok else f"bad magic at {off}"
    if data[off:off + 4] != REC_MAGIC:
        return None, f"bad magic at {off}"
    crc, total, flags, plen, tlen, rid, received, paylen = struct.unpack_from(
        "<IIBBHQqI", data, off + 4)
    if total != REC_HEAD + tlen + plen + paylen:
        return None, f"bad total at {off}"
    if avail < total:
        return None, "short"
    if crc32c(memoryview(data)[off + 8:off + total]) != crc:
        return None, f"bad CRC at {off}"
    t0 = off + REC_HEAD
    return {"offset": off, "end": off + total, "id": rid, "flags": flags,
            "received_ms": received, "topic": bytes(data[t0:t0 + tlen]),
            "publisher": bytes(data[t0 + tlen:t0 + tlen + plen]),
            "payload": bytes(data[t0 + tlen + plen:off + total])}, None


# ---- the syncwatch log ---------------------------------------------------------

def read_log(path):
    """The log's calls as dicts (t0, t1, op, result, a, b, path, path2)."""
    events = []
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 7:
                continue
            events.append({"t0": int(parts[0]), "t1": int(parts[1]), "op": parts[2],
                           "result": int(parts[3]), "a": int(parts[4]), "b": int(parts[5]),
                           "path": parts[6], "path2": parts[7] if len(parts) > 7 else None})
    events.sort(key=lambda e: e["t0"])
    return events


class File:
    """What the log says of one segment."""

    def __init__(self, path):
        self.path = path
        self.created = None  # end of the open that created it; None: it existed
        self.writes = []     # (offset, length, end ns), in offset order
        self.syncs = []      # (start, end) of the successful fsync/fdatasync
        self.extent = 0


class Model:
    """The log of one run, with the problems that break the model."""

    def __init__(self, events, journal_dir):
        self.dir = journal_dir.rstrip("/")
        self.files = {}
        self.dir_syncs = []
        self.problems = []
        self.sync_durations = []  # ns, of every fsync/fdatasync of a segment
        self.write_durations = []  # ns, of every successful write to a segment
        self.last_ns = max((e["t1"] for e in events), default=0)
        for e in events:
            self._take(e)
        for f in self.files.values():
            f.sync_start = [s for s, _ in sorted(f.syncs)]
            f.sync_end_min = _suffix_min([e for _, e in sorted(f.syncs)])
            f.write_end = [w[0] + w[1] for w in f.writes]
            f.write_done = _prefix_max([w[2] for w in f.writes])
            f.durable_from = self._entry_durable(f)
        self.dir_syncs.sort()

    def _file(self, path):
        if path not in self.files:
            self.files[path] = File(path)
        return self.files[path]

    # Long because it is the one switch over the log's ops.
    def _take(self, e):
        op, path, res = e["op"], e["path"], e["result"]
        is_dir = path == self.dir
        if op == "open":
            if res >= 0 and not is_dir and not e["b"] and (e["a"] & os.O_CREAT):
                self._file(path).created = e["t1"]
            elif res >= 0 and not is_dir:
                self._file(path)
        elif op == "write":
            f = self._file(path)
            if res < 0:
                self.problems.append(f"write failed ({res}) on {path} at {e['a']}")
            elif res < e["b"]:
                self.problems.append(f"short write on {path}: {res} of {e['b']} bytes")
            if res > 0:
                if e["a"] != f.extent:
                    self.problems.append(f"write at offset {e['a']} of {path}, not at its "
                                         f"end {f.extent}: the journal is not append-only")
                f.writes.append((e["a"], res, e["t1"]))
                self.write_durations.append(e["t1"] - e["t0"])
                f.extent = max(f.extent, e["a"] + res)
        elif op in ("fsync", "fdatasync"):
            if res != 0:
                self.problems.append(f"{op} failed ({res}) on {path}")
            elif is_dir:
                self.dir_syncs.append((e["t0"], e["t1"]))
            else:
                self._file(path).syncs.append((e["t0"], e["t1"]))
                self.sync_durations.append(e["t1"] - e["t0"])
        elif op in ("ftruncate", "fallocate", "sync_file_range", "rename"):
            self.problems.append(f"{op} on {path} (the model does not cover it)")
        elif op == "unlink" and res == 0:
            self.problems.append(f"the broker unlinked {path}")

    def _entry_durable(self, f):
        """When the segment's directory entry became durable."""
        if f.created is None:
            return 0
        for s, e in self.dir_syncs:
            if s >= f.created:
                return e
        return INF

    def durable_at(self, f, end):
        """The first instant the first `end` bytes of f are durable (INF: never)."""
        i = bisect.bisect_left(f.write_end, end)
        if i == len(f.writes):
            return INF  # never written that far
        j = bisect.bisect_left(f.sync_start, f.write_done[i])
        data = f.sync_end_min[j] if j < len(f.sync_end_min) else INF
        return max(data, f.durable_from)

    def extent_at(self, f, t):
        """How many bytes of f survive a crash at t (-1: the file is gone)."""
        if f.durable_from > t:
            return -1
        best = 0
        for s, e in f.syncs:
            if e <= t:
                k = bisect.bisect_right(f.write_done, s)
                best = max(best, f.write_end[k - 1] if k else 0)
        return best


def _suffix_min(xs):
    out, m = [0] * len(xs), INF
    for i in range(len(xs) - 1, -1, -1):
        m = min(m, xs[i])
        out[i] = m
    return out


def _prefix_max(xs):
    out, m = [], 0
    for x in xs:
        m = max(m, x)
        out.append(m)
    return out


# ---- the check -----------------------------------------------------------------

def read_acks(path):
    """[(puback_ns, topic bytes, payload bytes)] from the publisher's log."""
    out = []
    with open(path) as f:
        for line in f:
            t, topic, payload = line.rstrip("\n").split("\t")
            out.append((int(t), topic.encode(), bytes.fromhex(payload)))
    return out


def load_segments(model, mirror):
    """Parses every segment the broker wrote (from the mirror): a map
    (topic, payload) -> D, the instant its record became durable."""
    durable = {}
    for path, f in sorted(model.files.items()):
        name = os.path.basename(path)
        if not name.endswith(".jnl"):
            continue
        try:
            with open(os.path.join(mirror, name), "rb") as fh:
                data = fh.read()
        except OSError as e:
            model.problems.append(f"{name}: not in the mirror ({e.strerror})")
            continue
        first, recs, stop = parse_segment(data)
        if stop and stop != "short":
            model.problems.append(f"{name}: {stop} (after {len(recs)} valid records)")
        if first is not None and name != f"{first:016x}.jnl":
            model.problems.append(f"{name}: its header names first id {first}")
        if f.durable_from == INF and f.created is not None:
            model.problems.append(f"{name}: created, but no fsync of {model.dir} after it: "
                                  "a power loss loses the whole segment")
        for r in recs:
            key = (r["topic"], r["payload"])
            d = model.durable_at(f, r["end"])
            if key not in durable or d < durable[key]:
                durable[key] = d
    return durable


def lost_counts(acks, ds, ts, lag):
    """For each T of ts: the number of messages PUBACKed before T - lag whose
    record is not durable at T. acks and ds: parallel lists, acks sorted."""
    # Only a message with D - puback > lag can be lost at some T.
    cand = sorted((p, d) for p, d in zip(acks, ds) if d - p > lag)
    out = []
    for t in ts:
        lim = t - lag
        n = 0
        for p, d in cand:
            if p >= lim:
                break
            if d > t:
                n += 1
        out.append(n)
    return out


def instants(model, acks, end_ns, n_random, seed):
    """The crash instants tried: just before every sync of the journal ends,
    and n_random others between the first PUBACK and end_ns."""
    ts = set()
    for f in model.files.values():
        ts.update(e - 1 for _, e in f.syncs)
    ts.update(e - 1 for _, e in model.dir_syncs)
    lo = acks[0] if acks else 0
    ts = {t for t in ts if lo <= t <= end_ns}
    rnd = random.Random(seed)
    ts.update(rnd.randint(lo, end_ns) for _ in range(n_random if end_ns > lo else 0))
    return sorted(ts)


# Long because it is the whole report, printed as it is computed.
def check(log, journal_dir, mirror, acks, sync_ms, margin_ms=50, n_random=1000, end_ns=None,
          seed=1, per_t=None, out=print):
    """Runs the check; returns a dict of the figures, "ok" among them."""
    model = Model(read_log(log), journal_dir)
    durable = load_segments(model, mirror)
    acks = sorted(acks)
    end_ns = end_ns or model.last_ns
    ps = [p for p, _, _ in acks]
    ds = [durable.get((t, pl), INF) for _, t, pl in acks]
    journaled = sum(1 for _, t, pl in acks if (t, pl) in durable)
    never = sum(1 for d in ds if d == INF)
    longest = max(model.sync_durations, default=0)
    window = sync_ms * 1_000_000 + longest
    # journal_sync_ms 0 claims no window at all: nothing acknowledged is lost.
    allowed = window + longest + int(margin_ms * 1_000_000) if sync_ms else 0
    pause = longest_pause(model)
    ages = [min(d, end_ns) - p for p, d in zip(ps, ds) if p < min(d, end_ns)]
    worst = max(ages, default=0)
    ts = instants(model, ps, end_ns, n_random, seed)
    lost = lost_counts(ps, ds, ts, 0)
    lost_w = lost_counts(ps, ds, ts, window)
    lost_allowed = lost_counts(ps, ds, ts, allowed)
    segs = sum(1 for p in model.files if p.endswith(".jnl"))
    nsyncs = len(model.sync_durations)
    out(f"log       {segs} segment(s), {nsyncs} fsync/fdatasync of segments "
        f"(longest {longest / 1e6:.2f} ms, median "
        f"{_median(model.sync_durations) / 1e6:.2f} ms), {len(model.dir_syncs)} of the "
        f"directory; {len(model.write_durations)} writes (median "
        f"{_median(model.write_durations) / 1e3:.1f} us, 99th percentile "
        f"{_pct(model.write_durations, 99) / 1e3:.1f} us)")
    out(f"acks      {len(acks)} PUBACKed messages, {journaled} of them in the journal "
        f"({len(durable)} records in all); {never} never durable before the end of the run")
    out(f"window    W = journal_sync_ms {sync_ms} + longest fdatasync {longest / 1e6:.2f} ms "
        f"= {window / 1e6:.2f} ms; bound B = W + another fdatasync + {margin_ms:.0f} ms = "
        f"{allowed / 1e6:.2f} ms; written bytes waited for a sync to start up to "
        f"{pause / 1e6:.2f} ms")
    out(f"worst     age of acknowledged but not durable data: {worst / 1e6:.2f} ms")
    out(f"crashes   {len(ts)} instants T: PUBACKed messages lost per T: max {max(lost, default=0)},"
        f" median {_median(lost)}; T with a loss older than W: "
        f"{sum(1 for n in lost_w if n)}; older than B: "
        f"{sum(1 for n in lost_allowed if n)}")
    for p in model.problems[:20]:
        out(f"problem   {p}")
    if len(model.problems) > 20:
        out(f"problem   ... and {len(model.problems) - 20} more")
    if per_t:
        with open(per_t, "w") as f:
            f.write("t_ns,lost,lost_older_than_w,lost_older_than_b\n")
            for row in zip(ts, lost, lost_w, lost_allowed):
                f.write(",".join(map(str, row)) + "\n")
    ok = (not model.problems and worst <= allowed and not any(lost_allowed) and
          len(acks) > 0 and len(ts) > 0)
    return {"ok": ok, "worst_ns": worst, "window_ns": window, "allowed_ns": allowed,
            "longest_sync_ns": longest, "pause_ns": pause, "syncs": nsyncs, "dir_syncs": len(model.dir_syncs),
            "segments": segs, "acks": len(acks), "records": len(durable), "never": never,
            "journaled": journaled,
            "write_median_ns": _median(model.write_durations),
            "instants": len(ts), "max_lost": max(lost, default=0),
            "t_lost_w": sum(1 for n in lost_w if n),
            "t_lost_allowed": sum(1 for n in lost_allowed if n), "problems": model.problems}


def longest_pause(model):
    """How long the flusher left written bytes waiting, at most: for each
    write, from its end (or from the end of the sync running then) to the
    start of the next sync of its segment."""
    worst = 0
    for f in model.files.values():
        ss = sorted(f.syncs)
        starts = [x for x, _ in ss]
        for off, _, end in f.writes:
            i = bisect.bisect_left(starts, end)
            if off == 0:
                continue  # the segment header: synced with the first records
            if i == len(ss):
                continue  # never synced: load_segments() reports what that costs
            prev_end = ss[i - 1][1] if i else end
            worst = max(worst, starts[i] - max(end, prev_end))
    return worst


def _median(xs):
    return _pct(xs, 50)


def _pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, len(xs) * p // 100)] if xs else 0


# ---- the checker's own test ----------------------------------------------------

MS = 1_000_000


def _scenario(tmp, dir_sync=True, overwrite=False):
    """A synthetic run: a segment created at 10 ms, its directory fsynced at
    11-12 ms (if dir_sync), records written at 20, 30, 130 and 250 ms, each
    acknowledged 1 ms after its write, fdatasyncs at 100-105 ms and 200-230 ms.
    Returns (log, journal dir, mirror, acks)."""
    jdir, mirror = os.path.join(tmp, "journal"), os.path.join(tmp, "mirror")
    os.makedirs(jdir, exist_ok=True)
    os.makedirs(mirror, exist_ok=True)
    seg = os.path.join(jdir, "0000000000000001.jnl")
    lines = [(10 * MS, 10 * MS + 5, "open", 5, os.O_CREAT | os.O_WRONLY, 0, seg)]
    if dir_sync:
        lines.append((11 * MS, 11 * MS + 9, "open", 6, os.O_RDONLY, 1, jdir))
        lines.append((11 * MS + 10, 12 * MS, "fsync", 0, 0, 0, jdir))
    data = bytearray(make_segment_head(1))
    lines.append((10 * MS + 10, 10 * MS + 20, "write", SEG_HEAD, 0, SEG_HEAD, seg))
    acks = []
    for i, at in enumerate((20, 30, 130, 250)):
        payload = f"[seq:={i};fill={'x' * 40}]".encode()
        rec = make_record(i + 1, "$tip/dev-1/push", payload, "dev-1", received_ms=at)
        off = len(data) if not (overwrite and i == 2) else SEG_HEAD
        lines.append((at * MS, at * MS + 100, "write", len(rec), off, len(rec), seg))
        data += rec
        acks.append(((at + 1) * MS, b"$tip/dev-1/push", payload))
    lines.append((100 * MS, 105 * MS, "fdatasync", 0, 0, 0, seg))
    lines.append((200 * MS, 230 * MS, "fdatasync", 0, 0, 0, seg))
    with open(os.path.join(mirror, os.path.basename(seg)), "wb") as f:
        f.write(data)
    log = os.path.join(tmp, "syncwatch.log")
    with open(log, "w") as f:
        for ln in lines:
            f.write("\t".join(map(str, ln)) + "\n")
    return log, jdir, mirror, acks


def self_test():
    """Checks the parser and the model on data written here from the format."""
    fails, passes = [], []

    def expect(cond, what):
        print(f"{'ok  ' if cond else 'FAIL'} {what}")
        (passes if cond else fails).append(what)

    expect(crc32c(b"123456789") == 0xE3069283, "CRC-32C of '123456789' is e3069283")
    recs = [make_record(7 + i, f"$tip/d{i}/push", b"p" * (100 + i), f"d{i}", qos=1,
                        retain=i == 1, received_ms=1700000000000 + i) for i in range(3)]
    data = make_segment_head(7) + b"".join(recs)
    first, got, stop = parse_segment(data)
    expect(first == 7 and len(got) == 3 and stop is None, "a segment of 3 records parses")
    expect([r["id"] for r in got] == [7, 8, 9], "ids")
    expect(got[1]["topic"] == b"$tip/d1/push" and got[1]["publisher"] == b"d1" and
           got[1]["payload"] == b"p" * 101 and got[1]["flags"] == 5 and
           got[1]["received_ms"] == 1700000000001, "topic, publisher, payload, flags, received")
    _, got, stop = parse_segment(data[:-10])
    expect(len(got) == 2 and stop == "short", "a cut record is short, the ones before it stay")
    bad = bytearray(data)
    bad[SEG_HEAD + len(recs[0]) + 40] ^= 1
    _, got, stop = parse_segment(bytes(bad))
    expect(len(got) == 1 and stop.startswith("bad CRC"), f"a flipped bit: {stop}")
    _, got, stop = parse_segment(b"SPJOURN2" + data[8:])
    expect(not got and stop == "bad segment header", "a bad segment header")

    with tempfile.TemporaryDirectory() as tmp:
        log, jdir, mirror, acks = _scenario(tmp)
        quiet = []
        r = check(log, jdir, mirror, acks, 100, n_random=200, end_ns=300 * MS,
                  out=quiet.append)
        # Records 0 and 1 (written by 30.1 ms) are durable at 105 ms, record 2
        # (130 ms) at 230 ms, record 3 (250 ms) never: its age at the end of
        # the run (300 ms) is 300 - 251 = 49 ms; the worst is record 0's,
        # acknowledged at 21 ms, durable at 105 ms: 84 ms; record 2's: 230 - 131 = 99 ms.
        expect(r["worst_ns"] == 99 * MS, f"worst age 99 ms: {r['worst_ns'] / MS} ms")
        expect(r["longest_sync_ns"] == 30 * MS and r["window_ns"] == 130 * MS and
               r["allowed_ns"] == 210 * MS, "W = 100 + 30 ms, B = W + 30 + 50 ms")
        # The record written by 20.0001 ms waited for the sync of 100 ms.
        expect(r["pause_ns"] == 80 * MS - 100, f"bytes waited 80 ms for a sync: {r['pause_ns']}")
        expect(r["ok"] and r["never"] == 1, "within the window; one message not yet durable")
        r = check(log, jdir, mirror, acks, 0, n_random=200, end_ns=300 * MS, out=quiet.append)
        expect(not r["ok"] and r["max_lost"] == 2, "journal_sync_ms 0 claims no loss at all")
    with tempfile.TemporaryDirectory() as tmp:
        r = check(*_scenario(tmp, dir_sync=False), 100, end_ns=300 * MS, out=quiet.append)
        expect(not r["ok"] and any("no fsync of" in p for p in r["problems"]),
               "a segment without a directory fsync is reported")
    with tempfile.TemporaryDirectory() as tmp:
        r = check(*_scenario(tmp, overwrite=True), 100, end_ns=300 * MS, out=quiet.append)
        expect(not r["ok"] and any("not append-only" in p for p in r["problems"]),
               "a write before the end is reported")
    print(f"{len(passes)} passed, {len(fails)} failed")
    return 1 if fails else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--log")
    ap.add_argument("--dir")
    ap.add_argument("--mirror")
    ap.add_argument("--acks")
    ap.add_argument("--sync-ms", type=int)
    ap.add_argument("--margin-ms", type=int, default=50)
    ap.add_argument("--random", type=int, default=1000)
    ap.add_argument("--end-ns", type=int)
    ap.add_argument("--per-t")
    a = ap.parse_args()
    if a.self_test:
        return self_test()
    if None in (a.log, a.dir, a.mirror, a.acks, a.sync_ms):
        ap.error("--log, --dir, --mirror, --acks and --sync-ms are needed")
    r = check(a.log, a.dir, a.mirror, read_acks(a.acks), a.sync_ms, a.margin_ms, a.random,
              a.end_ns, per_t=a.per_t)
    print("check     " + ("passed" if r["ok"] else "FAILED"))
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
