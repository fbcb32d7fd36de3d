"""The shipped analyses work as shipped, through the daemon and its Lua worker:
JSON flattener, unit converter, and the threshold alert (which reads its
threshold from the sidecar analyses/threshold_alert.env or a device param,
publishes once per crossing, and logs through log())."""

import glob
import json
import os
import queue
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402


def test(c, tmp, started):
    adir = os.path.join(tmp, "analyses")
    os.makedirs(adir)
    for f in glob.glob(os.path.join(h.SOURCE, "analyses", "*.lua")):
        shutil.copy(f, adir)
    with open(os.path.join(adir, "threshold_alert.env"), "w") as f:
        f.write("# the alert threshold for every device without its own\nTHRESHOLD=25\n")
    sp = h.Sealpipe(tmp, analyses=adir)
    sp.add_device("s1", "--cipher", "none")
    sp.add_device("s2", "--cipher", "none", "--param", "threshold=40")
    sp.start()
    started.append(sp)

    got = queue.Queue()
    s1 = sp.creds("s1")
    # s1 listens for the alerts of its profile (s1's and s2's).
    sub = sp.client(s1, client_id="shipped-sub")
    sub.on_message = lambda cl, ud, m: got.put((m.topic, json.loads(m.payload)))
    ready = queue.Queue()
    sub.on_subscribe = lambda *a: ready.put(True)
    sub.connect("127.0.0.1", sp.port)
    sub.loop_start()
    sub.subscribe("alerts/#", qos=1)
    ready.get(timeout=10)

    sp.pub("devices/s1/json", b'{"env":{"temp":21.5,"hum":40},"batt":3.7,"ok":true,"x":null}',
           creds=s1)
    sp.pub("devices/s1/imperial",
           b'[{"variable":"t","value":212,"unit":"F"},{"variable":"d","value":1,"unit":"mi"},'
           b'{"variable":"n","value":5,"unit":"pcs"}]', creds=s1)
    for dev, v in (("s1", "20"), ("s1", "26"), ("s1", "27"), ("s1", "24"), ("s1", "28"),
                   ("s2", "26"), ("s2", "41")):
        sp.pub(f"devices/{dev}/temperature", v.encode(), creds=sp.creds(dev))
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data") >= 4 + 3 + 7, what="all stored")

    def rows(dev, var):
        return [(r["value"], r["unit"]) for r in
                sp.rows("SELECT value, unit FROM data WHERE device=? AND variable=? ORDER BY id",
                        dev, var)]
    c.eq([rows("s1", v) for v in ("env_temp", "env_hum", "batt", "ok")],
         [[(21.5, None)], [(40, None)], [(3.7, None)], [(1, None)]], "json_flatten")
    t, d, n = rows("s1", "t"), rows("s1", "d"), rows("s1", "n")
    c.check(len(t) == 1 and abs(t[0][0] - 100) < 1e-9 and t[0][1] in ("°C", "C"),
            f"unit_convert: 212 F -> {t}")
    c.check(len(d) == 1 and abs(d[0][0] - 1.609344) < 1e-6 and d[0][1] == "km",
            f"unit_convert: 1 mi -> {d}")
    c.eq(n, [(5, "pcs")], "unit_convert leaves other units alone")

    alerts = []
    deadline = time.time() + 5
    while time.time() < deadline and len(alerts) < 3:
        try:
            alerts.append(got.get(timeout=0.5))
        except queue.Empty:
            pass
    time.sleep(0.5)
    while not got.empty():
        alerts.append(got.get())
    sub.loop_stop()
    sub.disconnect()
    c.eq([(t, a["value"], a["threshold"]) for t, a in alerts],
         [("alerts/s1", 26, 25), ("alerts/s1", 28, 25), ("alerts/s2", 41, 40)],
         "threshold_alert: once per crossing, threshold from the .env file or the device param")
    c.check('log: "threshold_alert: s1 temperature 26 above 25"' in sp.read_log(),
            "log() lines reach the daemon's log")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters"), 0, "no dead letters")


if __name__ == "__main__":
    sys.exit(h.run(test))
