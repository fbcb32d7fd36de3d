"""End to end: encrypted TagoTiP/S, plain TagoTiP, TagoIO JSON on a declared
topic, and a raw payload through a device's parser, through the embedded
broker into the bucket."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

ANALYSES = os.path.join(os.path.dirname(__file__), "analyses")


def test(c, tmp, started):
    sp = h.Sealpipe(tmp, analyses=ANALYSES)
    dev = sp.add_device("sensor-01", "--cipher", "chacha20-poly1305")
    c.eq(dev["cipher"], "chacha20-poly1305", "device add prints the cipher")
    c.eq(len(dev["key"]), 64, "device add prints a 32-byte key")
    plain = sp.add_device("plain-02", "--cipher", "none", "--parser", "bytes_parser")
    sp.start()
    started.append(sp)
    p2 = sp.creds(plain)  # plain-02 sends and reads its own topics

    # TagoTiP/S, ChaCha20-Poly1305.
    sp.push(dev, "[temp:=32.5#C;status=online;active?=true;pos@=39.74,-104.99]")
    rows = h.wait_for(lambda: sp.rows(
        "SELECT * FROM data WHERE device='sensor-01' ORDER BY id") or None,
        what="encrypted records")
    by = {r["variable"]: r for r in rows}
    c.eq(sorted(by), ["active", "pos", "status", "temp"], "all four variables stored")
    c.eq((by["temp"]["type"], by["temp"]["value"], by["temp"]["unit"]),
         ("number", 32.5, "C"), "number with unit")
    c.eq((by["status"]["type"], by["status"]["value"]), ("string", "online"), "string")
    c.eq((by["active"]["type"], by["active"]["value"]), ("boolean", 1), "boolean")
    c.eq((by["pos"]["lat"], by["pos"]["lng"]), (39.74, -104.99), "location")

    # Plain TagoTiP with a counter prefix, and its ACK.
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(sp.port), "-V", "mqttv5", "-C", "1",
                            "-W", "10", "-t", "$tip/plain-02/ack", *sp.cred_args(p2)],
                           stdout=subprocess.PIPE, text=True)
    h.time.sleep(0.3)
    sp.pub("$tip/plain-02/push", b"!7|^batch_1@1694567890000[humidity:=65#%]", creds=p2)
    ack = sub.communicate(timeout=15)[0].strip()
    c.eq(ack, "!7|OK|1", "ACK on $tip/plain-02/ack echoes the counter and count")
    r = h.wait_for(lambda: sp.rows("SELECT * FROM data WHERE device='plain-02' AND "
                                   "variable='humidity'"), what="plain record")[0]
    c.eq((r["value"], r["unit"], r["time"], r["group_id"]), (65, "%", 1694567890000, "batch_1"),
         "plain TagoTiP record with inherited group and time")

    # TagoIO JSON on a topic an analysis declares.
    sp.pub("devices/plain-02/data",
           b'[{"variable":"Pressure","value":1013,"unit":"hPa","metadata":{"k":"v"}},'
           b'{"variable":"door","value":false}]', creds=p2)
    r = h.wait_for(lambda: sp.rows("SELECT * FROM data WHERE variable='pressure'"),
                   what="JSON record")[0]
    c.eq((r["device"], r["value"], r["unit"]), ("plain-02", 1013, "hPa"),
         "JSON record stored for the device named by the topic (variable lowercased)")
    meta = h.json.loads(r["metadata"])
    c.eq(meta, {"k": "v", "mqtt_topic": "devices/plain-02/data"}, "metadata keeps mqtt_topic")

    # Raw bytes on a declared topic go through the device's parser.
    sp.pub("raw/plain-02", bytes([0x08, 0x98, 0x2d]), creds=p2)
    r = h.wait_for(lambda: sp.rows("SELECT * FROM data WHERE variable='temperature' "
                                   "AND device='plain-02'"), what="parsed record")[0]
    c.eq((r["value"], r["unit"]), (22, "C"), "raw payload decoded by the parser analysis")

    # TagoTiP passthrough also reaches the parser.
    sp.pub("$tip/plain-02/push", b">x09C42E", creds=p2)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='temperature' "
                                "AND value=25") >= 1, what="passthrough parsed")
    r = sp.rows("SELECT value, unit FROM data WHERE variable='temperature' AND value=25")
    c.eq([(x["value"], x["unit"]) for x in r], [(25, "C")],
         "passthrough >x decoded by the parser analysis")

    c.eq(sp.count("SELECT count(*) n FROM dead_letters"), 0, "no dead letters")
    rc = sp.stop()
    c.eq(rc, 0, "SIGTERM stops the daemon cleanly")
    c.check("stopping: last batch committed" in sp.read_log(), "stop is logged")


if __name__ == "__main__":
    sys.exit(h.run(test))
