"""Answers to messages whose analysis ran long (issue #15): a device's parser
takes 0.2 s a message, so each job is detached and its message waits in the
deferred table (core/deferred.c). Once the job ends the message is stored
and answered from the table, where it has no source to answer through; its
answer must take the broker plugin's answers channel like every other answer
(review: it went out on the daemon's own MQTT link, past
sealpipe_answers_total, through the libmosquitto list walk the channel
exists to avoid). The device logs in with its token and gets every answer,
OK and in order; every answer is counted as sent through the plugin."""

import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

SLOW_PARSER = """
return {
  handle = function(msg)
    local t0 = os.clock()
    while os.clock() - t0 < 0.2 do end
    return { variable = "level", value = 1 }
  end,
}
"""

N = 4


def test(c, tmp, started):
    import paho.mqtt.client as mqtt
    folder = os.path.join(tmp, "analyses")
    os.makedirs(folder)
    with open(os.path.join(folder, "slowparse.lua"), "w") as f:
        f.write(SLOW_PARSER)
    sp = h.Sealpipe(tmp, analyses=folder)
    sp.add_device("slow-01", "--cipher", "none", "--parser", "slowparse")
    sp.start()
    started.append(sp)

    answers, lock = [], threading.Lock()

    def on_message(cl, ud, msg):
        with lock:
            answers.append(msg.payload.decode(errors="replace"))

    cl = sp.client(sp.creds("slow-01"), client_id="slow-01-dev", protocol=mqtt.MQTTv311)
    cl.on_message = on_message
    cl.connect("127.0.0.1", sp.port)
    cl.subscribe("$tip/slow-01/ack", qos=1)
    cl.loop_start()
    deferred_seen = 0
    try:
        # A first push, answered; then the plugin has long connected to the
        # daemon (within a second of the broker's start, test_answers.py).
        cl.publish("$tip/slow-01/push", "!1|>x0102", qos=1).wait_for_publish(timeout=10)
        h.wait_for(lambda: len(answers) == 1, timeout=30, what="the first answer")
        time.sleep(1.5)
        plugin0 = sp.metric('sealpipe_answers_total{via="plugin"}', 0)
        mqtt0 = sp.metric('sealpipe_answers_total{via="mqtt"}', 0)
        # N more, reaching the daemon together: the jobs detach one after
        # the other, their messages wait in the deferred table.
        os.kill(sp.proc.pid, signal.SIGSTOP)
        try:
            for k in range(2, N + 2):
                cl.publish("$tip/slow-01/push", f"!{k}|>x0102", qos=1).wait_for_publish(timeout=10)
        finally:
            os.kill(sp.proc.pid, signal.SIGCONT)
        deadline = time.time() + 30
        while len(answers) < N + 1 and time.time() < deadline:
            deferred_seen = max(deferred_seen, sp.count("SELECT count(*) n FROM deferred"))
            time.sleep(0.02)
    finally:
        cl.disconnect()
        cl.loop_stop()
    c.eq(answers, [f"!{k}|OK|1" for k in range(1, N + 2)], "every push answered OK, in order")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE device = 'slow-01'"), N + 1,
         "every message stored once")
    c.check(deferred_seen > 0, f"the jobs ran detached: up to {deferred_seen} messages deferred")
    c.eq(sp.metric('sealpipe_answers_total{via="plugin"}', 0) - plugin0, N,
         "every answer sent through the broker plugin's channel")
    c.eq(sp.metric('sealpipe_answers_total{via="mqtt"}', 0) - mqtt0, 0,
         "none through the daemon's MQTT link")


if __name__ == "__main__":
    sys.exit(h.run(test))
