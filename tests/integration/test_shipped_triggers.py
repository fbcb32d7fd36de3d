"""The shipped trigger examples (issue #17, point 6) work as shipped: the
files of analyses/ copied as they are, but for the schedule line of the two
scheduled ones (made "every 2s", so the test need not wait an hour), run by
the real daemon with devices publishing over MQTT.

- hourly_summary: each tick stores avg/min/max of the hour its due time
  closes, from devices{} and aggregate{}: values published with explicit
  times inside that hour count, one before it and one after it do not; one
  record per due time; group is the hour's start; a device with two
  variables, one of them not in VARIABLES, gets only the listed one; with
  33 variables a call covers 3 devices, and the devices past them are
  summarised by the run() the tick hands them to.
- tag_retention: delete_data{} removes the rows older than KEEP of the
  devices with the TAG, and no others; counted in
  sealpipe_records_deleted_total.
- device_offline: a device silent past its param offline_after gets one
  alert on alerts/<serial>/offline, received by a device of its profile,
  and posted once to the WEBHOOK_URL of its .env file (a local HTTP server)."""

import json
import os
import queue
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import re
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

HOUR = 3600 * 1000


def copy(src_name, adir, every=None):
    with open(os.path.join(h.SOURCE, "analyses", src_name)) as f:
        text = f.read()
    if every:
        text, n = re.subn(r'^  schedule = "[^"]*",$', f'  schedule = "{every}",', text, flags=re.M)
        assert n == 1, f"{src_name}: one schedule line"
    with open(os.path.join(adir, src_name), "w") as f:
        f.write(text)


def records(*items):
    return json.dumps([{"variable": v, "value": x, "time": t} for v, x, t in items]).encode()


def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def check_summary(c, sp, serial, want):
    """Every avg/min/max record of serial: one per due time, the hour's
    start as its time and group, the values want (avg, min, max)."""
    rows = sp.rows("SELECT variable, value, time, group_id FROM data WHERE device = ? AND "
                   "variable LIKE 'summary_temperature_%' ORDER BY id", serial)
    by = {}
    for r in rows:
        by.setdefault(r["variable"], []).append(r)
    for k, v in zip(("avg", "min", "max"), want):
        got = by.get("summary_temperature_" + k, [])
        times = [r["time"] for r in got]
        c.check(len(got) >= 1, f"{serial}: {k} stored ({len(got)} ticks)")
        c.eq(len(set(times)), len(times), f"{serial}: {k} once per due time")
        c.eq(sorted({r["value"] for r in got}), [v], f"{serial}: hourly {k}")
        c.check(all(r["group_id"] == iso(r["time"]) and r["time"] % 2000 == 0 for r in got),
                f"{serial}: {k} at the hour's start, group its ISO time: {got[:2]}")
    c.eq(len(by.get("summary_temperature_avg", [])), len(by.get("summary_temperature_max", [])),
         f"{serial}: avg, min and max together")


def test(c, tmp, started):
    adir = os.path.join(tmp, "analyses")
    os.makedirs(adir)
    copy("mqtt_ingest.lua", adir)
    copy("device_offline.lua", adir)
    posts = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            posts.append((self.path, self.headers.get("Content-Type"), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    with open(os.path.join(adir, "device_offline.env"), "w") as f:
        f.write(f"WEBHOOK_URL=http://127.0.0.1:{hook.server_address[1]}/alerts\n")
    copy("hourly_summary.lua", adir, every="every 2s")
    copy("tag_retention.lua", adir, every="every 2s")
    # 33 variables leave room for 3 devices per call: of the 6 devices the
    # tick takes listen, off-1 and ret-a, and hands the rest (sum-1 and
    # sum-2 among them) to its run() through run_analysis.
    with open(os.path.join(adir, "hourly_summary.env"), "w") as f:
        f.write("VARIABLES=" + ",".join(["temperature"] + [f"v{i}" for i in range(32)]) + "\n")
    with open(os.path.join(adir, "tag_retention.env"), "w") as f:
        f.write("TAG=tier=free\nKEEP=1h\n")
    sp = h.Sealpipe(tmp, analyses=adir)
    for s in ("sum-1", "sum-2", "ret-b", "listen"):
        sp.add_device(s, "--cipher", "none")
    sp.add_device("ret-a", "--cipher", "none", "--tag", "tier=free")
    sp.add_device("off-1", "--cipher", "none", "--param", "offline_after=10s")
    sp.start()
    started.append(sp)

    # A device of the same profile listens for the offline alerts.
    got = queue.Queue()
    sub = sp.client(sp.creds("listen"), client_id="offline-listener")
    sub.on_message = lambda cl, ud, m: got.put((m.topic, json.loads(m.payload)))
    ready = queue.Queue()
    sub.on_subscribe = lambda *a: ready.put(True)
    sub.connect("127.0.0.1", sp.port)
    sub.loop_start()
    sub.subscribe("alerts/#", qos=1)
    ready.get(timeout=10)

    now = int(time.time() * 1000)
    sp.pub("devices/off-1/data", records(("x", 1, now)))
    sp.pub("devices/sum-1/data", records(
        ("temperature", 10, now - 30 * 60000), ("temperature", 20, now - 25 * 60000),
        ("temperature", 30, now - 20 * 60000), ("temperature", 1000, now - 2 * HOUR),
        ("temperature", -1000, now + 10 * 60000), ("humidity", 50, now - 20 * 60000)))
    sp.pub("devices/sum-2/data", records(("temperature", 5, now - 10 * 60000)))
    for s in ("ret-a", "ret-b"):
        sp.pub(f"devices/{s}/data", records(
            ("level", 1, now - 3 * HOUR), ("level", 2, now - 3 * HOUR + 1),
            ("level", 3, now - 2 * HOUR), ("level", 4, now - 10 * 60000)))

    # tag_retention: ret-a's three old rows go, ret-b keeps all four.
    level = "SELECT count(*) n FROM data WHERE device = ? AND variable = 'level'"
    h.wait_for(lambda: sp.count(level, "ret-b") == 4 and sp.count(level, "ret-a") == 1,
               timeout=20, what="ret-a's old rows deleted")
    c.eq([r["value"] for r in sp.rows("SELECT value FROM data WHERE device = 'ret-a' AND "
                                      "variable = 'level'")], [4], "ret-a keeps its recent row")
    c.eq(sp.count(level, "ret-b"), 4, "ret-b, without the tag, keeps every row")
    c.eq(sp.metric('sealpipe_records_deleted_total{by="analysis"}'), 3,
         "sealpipe_records_deleted_total counts the three")

    # hourly_summary: two ticks at least after the records were committed.
    avg = "SELECT count(*) n FROM data WHERE device = ? AND variable = 'summary_temperature_avg'"
    h.wait_for(lambda: sp.count(avg, "sum-1") >= 2 and sp.count(avg, "sum-2") >= 2, timeout=20,
               what="two summaries of each device")
    check_summary(c, sp, "sum-1", (20, 10, 30))
    check_summary(c, sp, "sum-2", (5, 5, 5))
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable LIKE 'humidity_hourly%'"), 0,
         "only the variables of VARIABLES")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE device LIKE 'ret-%' AND variable LIKE "
                  "'%hourly%'"), 0, "devices without numbers in the hour get nothing")

    # device_offline: one alert for off-1, about 10-15 s after its message.
    alerts = []
    deadline = time.time() + 30
    while time.time() < deadline and not alerts:
        try:
            alerts.append(got.get(timeout=0.5))
        except queue.Empty:
            pass
    time.sleep(7)  # another scan or more: no second alert for the same silence
    while not got.empty():
        alerts.append(got.get())
    sub.loop_stop()
    sub.disconnect()
    c.eq([t for t, _ in alerts], ["alerts/off-1/offline"], "one offline alert, for off-1")
    if alerts:
        a = alerts[0][1]
        c.eq(a.get("serial"), "off-1", "the alert names the device")
        c.check(isinstance(a.get("last_sent"), int) and abs(a["last_sent"] - now) < 10000,
                f"the alert's last_sent: {a}")
        c.check(a.get("silent_ms", 0) >= 10000 and a.get("offline_after") == 10000,
                f"silent past the param's 10 s: {a}")
        h.wait_for(lambda: posts, timeout=10, what="the webhook's POST")
        time.sleep(1)
        c.eq([(p, t, json.loads(b)) for p, t, b in posts], [("/alerts", "application/json", a)],
             "the same alert posted once to WEBHOOK_URL")
    hook.shutdown()
    c.check(sp.metric('sealpipe_trigger_runs_total{kind="run",result="ok"}', 0) >= 2,
            "the summary's continuation ran as run()")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters"), 0, "no dead letters")


if __name__ == "__main__":
    sys.exit(h.run(test))
