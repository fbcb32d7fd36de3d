"""Oversized messages (issue #10.14).

A TagoTiP body over 16,384 bytes (TagoTiP.md §4.5) is answered
ERR|payload_too_large, not invalid_payload, and is a too_large dead letter;
an MQTT payload over 256 KiB from an authenticated device is dead-lettered
with that device, not with device NULL.
"""

import os
import queue
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

ANALYSES = os.path.join(os.path.dirname(__file__), "analyses")


def test(c, tmp, started):
    import paho.mqtt.client as mqtt
    sp = h.Sealpipe(tmp, analyses=ANALYSES)
    dev = sp.add_device("big-01", "--cipher", "none")
    sp.start()
    started.append(sp)

    got = queue.Queue()
    cl = mqtt.Client(client_id="toolarge-dev", protocol=mqtt.MQTTv311)
    cl.username_pw_set("Token", dev["token"])
    cl.on_message = lambda c_, u, m: got.put((m.topic, m.payload))
    ready = queue.Queue()
    cl.on_subscribe = lambda *a: ready.put(True)
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    try:
        cl.subscribe("$tip/big-01/ack", 1)
        ready.get(timeout=10)
        body = "[note=" + "x" * 17000 + "]"
        cl.publish("$tip/big-01/push", "!7|" + body, qos=1).wait_for_publish(10)
        c.eq(got.get(timeout=10), ("$tip/big-01/ack", b"!7|ERR|payload_too_large"),
             "a 17 KB TagoTiP body is answered payload_too_large")
        cl.publish("$tip/big-01/push", "!8|[ok=1]", qos=1).wait_for_publish(10)
        c.eq(got.get(timeout=10), ("$tip/big-01/ack", b"!8|OK|1"), "a normal body still OK|1")
        cl.publish("readings/big-01", b"y" * (256 * 1024 + 1), qos=1).wait_for_publish(10)
        h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters") >= 2,
                   what="two dead letters")
        dead = sp.rows("SELECT reason, device, topic FROM dead_letters ORDER BY id")
        c.eq(dead, [{"reason": "too_large", "device": "big-01", "topic": "$tip/big-01/push"},
                    {"reason": "too_large", "device": "big-01", "topic": "readings/big-01"}],
             "both are too_large dead letters that keep their device")
    finally:
        cl.loop_stop()
        cl.disconnect()


if __name__ == "__main__":
    sys.exit(h.run(test))
