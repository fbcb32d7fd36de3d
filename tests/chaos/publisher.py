"""A QoS 1 publisher that records exactly which of its messages got a PUBACK.

Runs as a process of its own (python3 publisher.py CONFIG.json) so that the
chaos driver can run several at once and kill, stop and restart the daemon
and its broker meanwhile. Each device of the config gets one paho-mqtt
client (MQTT 3.1.1 or 5, logged in with the device's token) that reconnects
whenever the broker goes away and keeps publishing; paho resends, after the
reconnect, every message that was waiting for its PUBACK.

Three kinds of message, per device, each numbered by the device's sequence
number n (unique within a run):
  seq  devices/<serial>/data  {"variable":"seq","value":n,"metadata":{"pad":..}}
  tip  $tip/<serial>/push     [tseq:=n;pad=..]   (a plain TagoTiP PUSH body)
  hb   devices/<serial>/data  {"variable":"hb","value":1}  (the same bytes every
                                                        time: a heartbeat)
Padding brings seq and tip messages to 100 B - 2 KB.

The result (written to config["out"] as JSON) says, per device and kind,
which numbers were PUBACKed, which were sent but never PUBACKed, and how
many times each was resent after a disconnect. A message resent after a
lost PUBACK may legitimately be stored twice: the broker may have taken the
first copy. Heartbeats are counted, not numbered.

Config keys: port, devices [{serial, token, v5}], rate (messages/s for the
whole process), duration (s) or count (messages per device), tip_every,
hb_every (every Nth message of a device is of that kind; 0: none),
drain (s to wait for the last PUBACKs), out, stop_file (stop early when it
exists).
"""

import json
import os
import sys
import threading
import time

import paho.mqtt.client as mqtt

HB_PAYLOAD = b'{"variable":"hb","value":1}'


def pad(n, salt):
    """Padding of 80 to ~1,950 bytes, different from one message to the next."""
    return "p" * (80 + (n * 7919 + salt) % 1870)


def acked(info):
    """Whether the broker PUBACKed the message of info. is_published() raises
    for a message published while the client was disconnected (paho queues it
    and sends it after the reconnect), so read the flag itself."""
    return info._published


def message(serial, n, cfg):
    """(kind, topic, payload) of a device's message number n."""
    tip, hb = cfg.get("tip_every", 0), cfg.get("hb_every", 0)
    if hb and n % hb == hb - 1:
        return "hb", f"devices/{serial}/data", HB_PAYLOAD
    if tip and n % tip == tip // 2:
        return "tip", f"$tip/{serial}/push", f"[tseq:={n};pad={pad(n, 17)}]".encode()
    body = '{"variable":"seq","value":%d,"metadata":{"pad":"%s"}}' % (n, pad(n, 0))
    return "seq", f"devices/{serial}/data", body.encode()


class Device:
    """One device's client and the fate of each of its messages."""

    def __init__(self, cfg, dev):
        self.cfg, self.serial = cfg, dev["serial"]
        proto = mqtt.MQTTv5 if dev.get("v5") else mqtt.MQTTv311
        self.v5 = proto == mqtt.MQTTv5
        self.cl = mqtt.Client(client_id=f"chaos-{self.serial}", protocol=proto)
        self.cl.username_pw_set("Token", dev["token"])
        self.cl.max_inflight_messages_set(100)
        self.cl.reconnect_delay_set(0.05, 0.5)
        self.cl.on_disconnect = self.on_disconnect
        self.sent = []  # (kind, n, MQTTMessageInfo)
        self.resent = {}  # MQTTMessageInfo -> times paho will send it again
        self.disconnects = 0
        self.last_rc = None  # why the last disconnect happened (v5: a reason code)
        self.lock = threading.Lock()
        self.n = 0

    def on_disconnect(self, cl, userdata, rc, *props):
        # Every message written to the socket and still waiting for its
        # PUBACK is sent again after the reconnect (paho marks it dup): the
        # broker may have taken the first copy. paho keeps them in
        # _out_messages; there is no public accessor.
        self.disconnects += 1
        self.last_rc = rc
        with cl._out_message_mutex:
            for m in cl._out_messages.values():
                if m.state == mqtt.mqtt_ms_wait_for_puback:
                    self.resent[m.info] = self.resent.get(m.info, 0) + 1

    def start(self):
        self.cl.connect_async("127.0.0.1", self.cfg["port"], keepalive=10)
        self.cl.loop_start()

    def publish_next(self):
        kind, topic, payload = message(self.serial, self.n, self.cfg)
        info = self.cl.publish(topic, payload, qos=1)
        self.sent.append((kind, self.n, info))
        self.n += 1

    def outstanding(self):
        return sum(1 for _, _, i in self.sent if not acked(i))

    def result(self):
        r = {"serial": self.serial, "v5": self.v5, "disconnects": self.disconnects,
             "seq": {"acked": [], "unacked": [], "resent": {}},
             "tip": {"acked": [], "unacked": [], "resent": {}},
             "hb": {"acked": 0, "unacked": 0, "resent": 0}}
        for kind, n, info in self.sent:
            ok = acked(info)
            again = self.resent.get(info, 0)
            if kind == "hb":
                r["hb"]["acked" if ok else "unacked"] += 1
                r["hb"]["resent"] += again
                continue
            r[kind]["acked" if ok else "unacked"].append(n)
            if again:
                r[kind]["resent"][str(n)] = again
        return r


def run(cfg):
    devs = [Device(cfg, d) for d in cfg["devices"]]
    for d in devs:
        d.start()
    rate, t0 = float(cfg["rate"]), time.monotonic()
    duration, count = cfg.get("duration"), cfg.get("count")
    stop_file, sent = cfg.get("stop_file"), 0
    while True:
        if duration is not None and time.monotonic() - t0 >= duration:
            break
        if count is not None and all(d.n >= count for d in devs):
            break
        if stop_file and os.path.exists(stop_file):
            break
        for d in devs:
            if count is None or d.n < count:
                d.publish_next()
                sent += 1
        ahead = sent / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
    elapsed = time.monotonic() - t0
    deadline = time.monotonic() + cfg.get("drain", 60)
    while time.monotonic() < deadline and any(d.outstanding() for d in devs):
        time.sleep(0.1)
    for d in devs:
        d.cl.disconnect()
        d.cl.loop_stop()
    out = {"elapsed": elapsed, "devices": [d.result() for d in devs]}
    with open(cfg["out"] + ".tmp", "w") as f:
        json.dump(out, f)
    os.rename(cfg["out"] + ".tmp", cfg["out"])


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        run(json.load(f))
