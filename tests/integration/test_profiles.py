"""Profiles are namespaces on the broker (issue #10, point 8), as in TagoIO:
devices publish and subscribe to any topic, but a device receives only what
devices of its own profile (or the daemon, for that profile) published, live
or retained. `device_cross_profile = on` restores one shared namespace.

Clients log in with real device tokens. Each check publishes the other
profile's message first and a same-profile marker after it: once the marker
has arrived, the other message would have too."""

import json
import os
import queue
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402


ANALYSES = os.path.join(os.path.dirname(__file__), "analyses")


class Device:
    """A paho MQTT v5 client logged in with a device token, collecting messages."""

    def __init__(self, sp, dev, client_id, keep_session=False, creds=None):
        import paho.mqtt.client as mqtt
        from paho.mqtt.properties import Properties
        from paho.mqtt.packettypes import PacketTypes
        self.got = queue.Queue()
        self.seen = []
        up, subbed = queue.Queue(), queue.Queue()
        self.c = sp.client(creds or ("Token", dev["token"]), client_id=client_id,
                           protocol=mqtt.MQTTv5)
        self.c.on_connect = lambda c, u, f, rc, *a: up.put(int(rc.value))
        self.c.on_message = lambda c, u, m: self.got.put((m.topic, m.payload.decode(), m.retain))
        self.c.on_subscribe = lambda c, u, mid, codes, *a: subbed.put(codes)
        props = None
        if keep_session:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 300
        self.c.connect("127.0.0.1", sp.port, clean_start=not keep_session, properties=props)
        self.c.loop_start()
        if up.get(timeout=10) != 0:
            raise AssertionError(f"{client_id}: CONNACK refused")
        self.subbed = subbed

    def subscribe(self, flt):
        self.c.subscribe(flt, qos=1)
        self.subbed.get(timeout=10)

    def publish(self, topic, payload, retain=False, props=None, qos=1):
        self.c.publish(topic, payload, qos=qos, retain=retain,
                       properties=props).wait_for_publish(10)

    def until(self, payload, timeout=5):
        """Collects messages until one with this payload; returns the payloads seen."""
        deadline = time.monotonic() + timeout
        while payload not in [p for _, p, _ in self.seen]:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                self.seen.append(self.got.get(timeout=left))
            except queue.Empty:
                break
        return [p for _, p, _ in self.seen]

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


def run_case(c, tmp, started, cross):
    tag = "[cross on] " if cross else ""
    sp = h.Sealpipe(os.path.join(tmp, "cross" if cross else "own"), analyses=ANALYSES,
                    extra=["--device-cross-profile", "on"] if cross else [])
    sp.cli("profile", "add", "alpha")
    sp.cli("profile", "add", "beta")
    a1 = sp.add_device("a1", "--cipher", "none", "--profile", "alpha")
    a2 = sp.add_device("a2", "--cipher", "none", "--profile", "alpha")
    b1 = sp.add_device("b1", "--cipher", "none", "--profile", "beta")
    b2 = sp.add_device("b2", "--cipher", "none", "--profile", "beta")
    sp.start()
    started.append(sp)

    pa, pb = Device(sp, a1, "pub-a1"), Device(sp, b2, "pub-b2")
    # Retained, before anyone subscribes.
    pa.publish("state/door", "retained-from-alpha", retain=True)
    pb.publish("state/window", "retained-from-beta", retain=True)

    sa, sb = Device(sp, a2, "sub-a2"), Device(sp, b1, "sub-b1")
    sa.subscribe("#")
    sb.subscribe("#")
    pb.publish("mark/b", "retained-mark-b", retain=True)
    pa.publish("mark/a", "retained-mark-a", retain=True)
    got_b = sb.until("retained-mark-b")
    got_a = sa.until("retained-mark-a")
    c.check("retained-from-beta" in got_b, f"{tag}a retained message reaches its own profile")
    c.eq("retained-from-alpha" in got_b, cross,
         f"{tag}profile beta {'gets' if cross else 'does not get'} alpha's retained message")
    c.eq("retained-from-beta" in got_a, cross,
         f"{tag}profile alpha {'gets' if cross else 'does not get'} beta's retained message")

    # A retained topic belongs to the profile whose message is retained
    # there: another profile can neither replace nor clear it.
    pb.publish("state/door", "hijacked-by-beta", retain=True)
    pb.publish("state/door", "", retain=True)
    late = Device(sp, a1, "late-a1")
    late.subscribe("state/door")
    pa.publish("mark/late", "late-mark-a")
    got = late.until("late-mark-a")
    late.close()
    c.eq("retained-from-alpha" in got, not cross,
         f"{tag}beta {'replaces' if cross else 'cannot replace or clear'} alpha's retained message")
    c.check("hijacked-by-beta" not in got, f"{tag}... and alpha's devices never see beta's")

    # Live, on the same topic and on a topic that names the other device.
    pa.publish("readings/kitchen", "live-from-alpha")
    pa.publish("alerts/b1", json.dumps({"variable": "alarm", "value": "forged"}))
    pa.publish("empty/a1", "")  # an empty message has an origin too
    pb.publish("readings/kitchen", "live-from-beta")
    pa.publish("readings/kitchen", "live-end-alpha")
    got_b = sb.until("live-from-beta")
    got_a = sa.until("live-end-alpha")
    c.check("live-from-beta" in got_b, f"{tag}a live message reaches its own profile")
    c.eq(any(p in got_b for p in ("live-from-alpha", "live-end-alpha")) or
         any("forged" in p for p in got_b), cross,
         f"{tag}profile beta {'gets' if cross else 'does not get'} alpha's live messages "
         "(readings, a forged alert on its topic)")
    c.eq("live-from-beta" in got_a, cross,
         f"{tag}profile alpha {'gets' if cross else 'does not get'} beta's live messages")
    c.check("live-from-alpha" in got_a, f"{tag}same profile, other device: delivered")
    c.check(("empty/a1", "", False) in sa.seen, f"{tag}... an empty message too")
    c.eq(any(t == "empty/a1" for t, _, _ in sb.seen), cross,
         f"{tag}profile beta {'gets' if cross else 'does not get'} alpha's empty message")

    # QoS 2 is routed at PUBREL, after other messages went through.
    pa.publish("qos2/a", "qos2-from-alpha", qos=2)
    pb.publish("qos2/b", "qos2-from-beta", qos=2)
    pa.publish("qos2/end", "qos2-end-alpha", qos=2)
    got_a = sa.until("qos2-end-alpha")
    c.check("qos2-from-alpha" in got_a, f"{tag}QoS 2 within the profile")
    c.eq("qos2-from-beta" in got_a, cross,
         f"{tag}QoS 2 {'crosses' if cross else 'does not cross'} profiles")

    # Queued for an offline device (persistent session), checked again by the
    # broker when it reconnects.
    off = Device(sp, a2, "offline-a2", keep_session=True)
    off.subscribe("queued/#")
    off.close()
    pa.publish("queued/x", "queued-from-alpha")
    pb.publish("queued/x", "queued-from-beta")
    pa.publish("queued/x", "queued-end-alpha")
    back = Device(sp, a2, "offline-a2", keep_session=True)
    got = back.until("queued-end-alpha")
    c.check("queued-from-alpha" in got, f"{tag}a queued message of the profile reaches the "
            "reconnecting device")
    c.eq("queued-from-beta" in got, cross,
         f"{tag}... another profile's {'does' if cross else 'does not'}")
    back.close()

    # An analysis speaks for the profile of the device it ran for (echo.lua
    # publishes echo/<serial>/out).
    pa.publish("echo/a1", "from-a1")
    got_a = sa.until("got:from-a1", timeout=10)
    pb.publish("echo/b2", "from-b2")
    got_b = sb.until("got:from-b2", timeout=10)
    c.check("got:from-a1" in got_a and "got:from-b2" in got_b,
            f"{tag}an analysis's publish reaches its device's profile")
    c.eq("got:from-a1" in got_b, cross,
         f"{tag}an analysis's publish for alpha {'reaches' if cross else 'does not reach'} beta")

    # The daemon speaks for a profile with a sealpipe-profile stamp; without
    # one it speaks for none.
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
    # A test about the daemon's own publishes: only the daemon may stamp a profile.
    d = Device(sp, None, "as-daemon", creds=sp.daemon_creds())
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("sealpipe-profile", "alpha")]
    d.publish("cmd/all", "daemon-unstamped")
    d.publish("cmd/all", "daemon-for-alpha", props=props)
    d.close()
    pb.publish("mark/b2", "daemon-mark-b")
    got_a = sa.until("daemon-for-alpha")
    got_b = sb.until("daemon-mark-b")
    c.check("daemon-for-alpha" in got_a, f"{tag}the daemon's message for alpha reaches alpha")
    c.eq("daemon-for-alpha" in got_b, cross,
         f"{tag}profile beta {'gets' if cross else 'does not get'} the daemon's message for alpha")
    c.eq("daemon-unstamped" in got_a + got_b, cross,
         f"{tag}a daemon message without a profile {'reaches' if cross else 'reaches no'} device")

    # A device cannot claim another profile with the daemon's stamp.
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("sealpipe-profile", "beta")]
    pa.publish("cmd/spoof", "spoofed-beta", props=props)
    pb.publish("mark/b3", "spoof-mark-b")
    got_b = sb.until("spoof-mark-b")
    c.eq("spoofed-beta" in got_b, cross,
         f"{tag}a device's own sealpipe-profile property does not make it another profile")

    for x in (pa, pb, sa, sb):
        x.close()

    # A clean restart of the daemon (and its broker) keeps the retained
    # messages' profiles: the broker reloads them, the plugin its notes.
    sp.stop()
    sp.start()
    sa, sb = Device(sp, a2, "sub-a2"), Device(sp, b1, "sub-b1")
    pa, pb = Device(sp, a1, "pub-a1"), Device(sp, b2, "pub-b2")
    sa.subscribe("state/#")
    sb.subscribe("state/#")
    pb.publish("state/live", "restart-mark-b")
    pa.publish("state/live", "restart-mark-a")
    got_b = sb.until("restart-mark-b")
    got_a = sa.until("restart-mark-a")
    c.check("retained-from-beta" in got_b,
            f"{tag}after a restart, a retained message still reaches its own profile")
    c.eq("retained-from-beta" in got_a, cross,
         f"{tag}after a restart, beta's retained message "
         f"{'reaches' if cross else 'does not reach'} alpha")
    if not cross:
        c.check("retained-from-alpha" in got_a and "retained-from-alpha" not in got_b,
                "after a restart, alpha's retained message reaches alpha only")
    for x in (pa, pb, sa, sb):
        x.close()
    sp.stop()
    sp.kill_embedded_broker()


def test(c, tmp, started):
    run_case(c, tmp, started, cross=False)
    run_case(c, tmp, started, cross=True)


if __name__ == "__main__":
    sys.exit(h.run(test))
