"""Every documented Lua function works inside the real sandboxed worker
(issue #10, point 4): the analysis tests/integration/luaapi/luaapi.lua calls
each name of the sdk/lua/README.md reference ("What is available") with
ordinary and edge arguments, one message per group, published by a device
logged in with its token. Checks that the worker survives every call (no
dead letter, same worker pid, no crash in the log), that each case returned
its expected value or raised a Lua error, that every documented name has a
case (an ordinary one, and a bad-argument one where bad arguments exist), and
that the sandbox holds exactly the documented names: nothing undocumented
(io, os.execute, require, load, debug, ...) is reachable."""

import json
import os
import queue
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402
from test_sandbox import worker_pids  # noqa: E402

HERE = os.path.dirname(__file__)
README = os.path.join(h.SOURCE, "sdk", "lua", "README.md")
GROUPS = ["base", "string", "pack", "table", "math", "utf8", "os", "coroutine", "json", "codec",
          "tagotip", "publish", "insert", "query", "run_analysis", "webhook", "log", "env",
          "toplevel", "inventory", "devices", "aggregate", "delete_data"]
# Groups whose message must fail as a whole, and what the dead letter says.
FAILING = {"insert_ghost": "insert() for unknown device 'ghost'",
           "seal_ghost": "publish() sealed for unknown device 'ghost'",
           "command_nokey": "sealed for a device without a key",
           "delete_ghost": "delete_data() for unknown device 'ghost'"}
# Names for which no argument is wrong (constants, argument-less functions,
# functions that take anything).
NO_BAD_ARGS = {"_VERSION", "math.huge", "math.pi", "math.maxinteger", "math.mininteger",
               "utf8.charpattern", "json.null", "json.empty_array", "env", "os.clock",
               "coroutine.running", "coroutine.isyieldable", "log", "print", "table.pack",
               "error"}
# Cases that cover more than one name, or a path rather than a name.
EXTRA_CASES = {"string methods", "hex and base64"}
# Never reachable, whatever the README says (a sample of the standard library).
FORBIDDEN = ["io", "load", "loadstring", "dofile", "loadfile", "require", "package", "debug",
             "collectgarbage", "setmetatable", "getmetatable", "string.dump", "coroutine.close",
             "os.execute", "os.getenv", "os.exit", "os.remove", "os.rename", "os.tmpname",
             "os.setlocale", "os.difftime", "_G"]


def documented():
    """The names in the README's "What is available" table: "assert",
    "string.byte", "json.null", ... A table row is `name` or (globals)/host,
    then backticked names."""
    with open(README) as f:
        text = f.read()
    start = text.index("## What is available")
    section = text[start:text.index("\n## ", start + 1)]
    names = set()
    for line in section.splitlines():
        cols = [x.strip() for x in line.split("|")]
        if len(cols) < 4 or cols[1] in ("table", "---"):
            continue
        lib = re.fullmatch(r"`(\w+)`", cols[1])
        for name in re.findall(r"`(\w+)`", cols[2]):
            names.add(f"{lib.group(1)}.{name}" if lib else name)
    return names


def test(c, tmp, started):
    folder = os.path.join(tmp, "analyses")
    os.makedirs(folder)
    shutil.copy(os.path.join(HERE, "luaapi", "luaapi.lua"), folder)
    with open(os.path.join(folder, "luaapi.env"), "w") as f:
        f.write("THRESHOLD=35\n")
    sp = h.Sealpipe(tmp, analyses=folder)
    dev = sp.add_device("api-01", "--cipher", "none")
    serial, token = dev["serial"], dev["token"]
    sp.start()
    started.append(sp)
    workers = worker_pids(sp.proc.pid)
    c.eq(len(workers), 2, "two Lua workers at start (the default `workers`)")

    # The device listens to what the analysis publishes for it.
    import paho.mqtt.client as mqtt
    got = queue.Queue()
    sub = mqtt.Client(client_id="luaapi-listener", protocol=mqtt.MQTTv311)
    sub.username_pw_set("Token", token)
    subscribed = queue.Queue()
    sub.on_connect = lambda cl, u, f, rc, *a: cl.subscribe(
        [(f"luaapi-out/{serial}/#", 1), (f"luaapi-out/{serial}", 1), (f"$tip/{serial}/ack", 1)])
    sub.on_subscribe = lambda *a: subscribed.put(1)
    sub.on_message = lambda cl, u, m: got.put((m.topic, m.payload))
    sub.connect("127.0.0.1", sp.port)
    sub.loop_start()
    try:
        subscribed.get(timeout=10)
        run(c, sp, serial, token, got)
    finally:
        sub.loop_stop()
        sub.disconnect()

    c.eq(worker_pids(sp.proc.pid), workers, "the same workers ran every call (none was killed)")
    log = sp.read_log()
    c.check("the worker was killed" not in log and "the worker exited" not in log
            and "sealpipe worker:" not in log, "no worker crash in the daemon log")
    c.check("Sanitizer" not in log and "runtime error:" not in log,
            "no sanitizer report in the daemon log (ASan/UBSan builds)")


def publish(sp, token, topic, payload=b"x"):
    r = subprocess.run(["mosquitto_pub", "-p", str(sp.port), "-h", "127.0.0.1", "-q", "1",
                        "-u", "Token", "-P", token, "-t", topic, "-s"], input=payload,
                       capture_output=True)
    if r.returncode != 0:
        raise AssertionError(f"mosquitto_pub failed: {r.stderr!r}")


def run(c, sp, serial, token, got):
    dead = "SELECT count(*) n FROM dead_letters"
    # query() reads committed data only: store the record it looks for first.
    publish(sp, token, f"luaapi/{serial}/seed")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable = 'seed'") or
               sp.count(dead), what="the seed record")
    for g in GROUPS + list(FAILING):
        publish(sp, token, f"luaapi/{serial}/{g}")
    done = "SELECT count(*) n FROM data WHERE variable = 'group_done'"
    # Every message ends as one group_done row (seed's included) or one dead letter.
    h.wait_for(lambda: sp.count(done) + sp.count(dead) >= 1 + len(GROUPS) + len(FAILING),
               timeout=30, what="every group handled or dead-lettered")
    for d in sp.rows("SELECT topic, reason, detail FROM dead_letters"):
        g = d["topic"].rsplit("/", 1)[-1]
        c.check(g in FAILING and d["reason"] == "analysis_error" and FAILING[g] in d["detail"],
                f"dead letter {d['topic']}: {d['reason']}: {d['detail']}")
    c.eq(sp.count(dead), len(FAILING), "only the messages meant to fail are dead letters")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable = 'ghost'"), 0,
         "a failed message stores nothing")
    finished = {r["value"] for r in sp.rows("SELECT value FROM data WHERE variable = 'group_done'")}
    c.eq(sorted(set(GROUPS) - finished), [], "every group ran to the end")

    cases = sp.rows("SELECT value, metadata FROM data WHERE variable = 'case' ORDER BY id")
    kinds = {}
    for r in cases:
        m = json.loads(r["metadata"])
        c.check(r["value"] == "pass",
                f"{m['fn']} [{m['kind']}] {m['name']}: got {m['got']}; want {m['want']}")
        kinds.setdefault(m["fn"], set()).add(m["kind"])

    names = documented()
    c.check(len(names) > 100, f"the README lists the sandbox's names ({len(names)})")
    for n in sorted(names):
        k = kinds.get(n, set())
        c.check("ok" in k, f"{n} has a case with ordinary arguments")
        if n not in NO_BAD_ARGS:
            c.check(k & {"err", "fail"}, f"{n} has a case with bad arguments")
    c.eq(sorted(set(kinds) - names - EXTRA_CASES), [], "every case is about a documented name")

    inv = sp.rows("SELECT value FROM data WHERE variable = 'inventory'")
    have = set(inv[0]["value"].split()) if inv else set()
    libs = {n.split(".")[0] for n in names if "." in n}
    c.eq(sorted(have - names - libs), [], "nothing in the sandbox that the README does not list")
    c.eq(sorted(names - have), [], "everything the README lists is in the sandbox")
    c.eq([n for n in FORBIDDEN if n in have], [], "io, load, require, debug... are absent")

    # The side effects, seen from outside.
    c.eq(sp.count("SELECT count(*) n FROM data WHERE device = ? AND variable = 'inserted' "
                  "AND value = 7", serial), 1, "insert() stored its record")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE device = ? AND variable = 'inserted_list'",
                  serial), 2, "insert() stored a list")
    c.eq([r["time"] for r in sp.rows("SELECT time FROM data WHERE variable = 'doomed'")], [3000],
         "delete_data() deleted the old row only")
    c.eq(sp.metric('sealpipe_records_deleted_total{by="analysis"}'), 1,
         "sealpipe_records_deleted_total counts it")
    seen = {}
    try:
        while len(seen) < 5:
            t, p = got.get(timeout=10)
            seen.setdefault(t, p)
    except queue.Empty:
        pass
    out = f"luaapi-out/{serial}"
    c.eq(seen.get(out), b"hello", "publish() reached the device")
    c.check(out + "/sealed" not in seen, "a failed message publishes nothing")
    c.eq(seen.get(out + "/co"), b"from a coroutine", "publish() from a coroutine")
    c.eq(seen.get(out + "/bin"), b"\0\xff", "publish() of binary bytes")
    c.eq(seen.get(out + "/empty"), b"", "publish() of an empty payload")
    ack = seen.get(f"$tip/{serial}/ack", b"")
    c.check(ack.endswith(b"CMD|fan=on"), f"tagotip.command() reached the device: {ack!r}")
    c.check(eventually(lambda: 'log: "luaapi-marker 1 2.5 nil true json.null a\\nb\\xff"'
                       in sp.read_log()), "log() wrote one escaped line")
    c.check(eventually(lambda: 'log: "luaapi-print"' in sp.read_log()), "print() wrote its line")


def eventually(pred, timeout=10):
    try:
        return h.wait_for(pred, timeout=timeout)
    except AssertionError:
        return False


if __name__ == "__main__":
    sys.exit(h.run(test))
