"""publish() from an analysis: the message leaves after its records are
committed, with the requested QoS, and never for a message that failed."""

import os
import queue
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

ANALYSES = os.path.join(os.path.dirname(__file__), "analyses")


def test(c, tmp, started):
    sp = h.Sealpipe(tmp, analyses=ANALYSES)
    sp.add_device("pub-01", "--cipher", "none")
    sp.start()
    started.append(sp)

    got = queue.Queue()
    pub = sp.creds("pub-01")
    # The device itself listens: what the analysis publishes reaches devices.
    sub = sp.client(pub, client_id="publish-test-sub")
    sub.on_message = lambda cl, ud, m: got.put((m.topic, m.payload.decode(), m.qos))
    subscribed = queue.Queue()
    sub.on_subscribe = lambda *a: subscribed.put(True)
    sub.connect("127.0.0.1", sp.port)
    sub.loop_start()
    try:
        sub.subscribe("echo/+/out", qos=1)
        subscribed.get(timeout=10)
        for body in (b"hello", b"fail", b"bye"):
            sp.pub("echo/pub-01", body, creds=pub)
        h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='echo'") +
                   sp.count("SELECT count(*) n FROM dead_letters") >= 3, what="3 messages handled")
        out = []
        try:
            while len(out) < 3:
                out.append(got.get(timeout=3))
        except queue.Empty:
            pass
    finally:
        sub.loop_stop()
        sub.disconnect()
    c.eq(out, [("echo/pub-01/out", "got:hello", 1), ("echo/pub-01/out", "got:bye", 1)],
         "published for the stored messages only, at QoS 1, in order")
    stored = [r["value"] for r in sp.rows("SELECT value FROM data WHERE variable='echo' ORDER BY id")]
    c.eq(stored, ["hello", "bye"], "records of the good messages stored")
    dead = sp.rows("SELECT reason, detail FROM dead_letters")
    c.eq([d["reason"] for d in dead], ["analysis_error"], "the failing message is a dead letter")
    c.check("asked to fail" in dead[0]["detail"], f"its detail carries the error: {dead[0]['detail']}")


if __name__ == "__main__":
    sys.exit(h.run(test))
