"""publish(topic, payload, {seal_for = serial}) (issue #3): the payload leaves
as a TagoTiP/S ACK envelope sealed with the device's current key, opened here
with PyNaCl (an independent implementation), with a server counter that
increases for the key and never repeats; a seal for an unknown device, or a
device without a key, fails the message instead of leaking plaintext."""

import hashlib
import os
import queue
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

ANALYSES = os.path.join(os.path.dirname(__file__), "analyses")


def open_ack(env, key_hex, serial):
    from nacl.bindings import crypto_aead_chacha20poly1305_ietf_decrypt as dec
    header, ct = env[:21], env[21:]
    flags, counter = header[0], int.from_bytes(header[1:5], "big")
    dh = hashlib.sha256(serial.encode()).digest()[:8]
    assert header[13:21] == dh, "device hash"
    nonce = bytes([flags]) + b"\0\0\0" + dh[:4] + header[1:5]
    return flags, counter, dec(ct, header, nonce, bytes.fromhex(key_hex)).decode()


def test(c, tmp, started):
    sp = h.Sealpipe(tmp, analyses=ANALYSES)
    dev = sp.add_device("sl-01", "--cipher", "chacha20-poly1305")
    sp.add_device("nokey-01", "--cipher", "none")
    sp.start()
    started.append(sp)

    got = queue.Queue()
    sl = sp.creds(dev)
    # sl-01 itself listens for the commands sealed for it.
    sub = sp.client(sl, client_id="seal-sub")
    sub.on_message = lambda cl, ud, m: got.put((m.topic, m.payload))
    ready = queue.Queue()
    sub.on_subscribe = lambda *a: ready.put(True)
    sub.connect("127.0.0.1", sp.port)
    sub.loop_start()
    sub.subscribe("down/#", qos=1)
    ready.get(timeout=10)
    for _ in range(3):
        sp.pub("seal/sl-01", b"self", creds=sl)
    sp.pub("seal/sl-01", b"ghost-77", creds=sl)
    sp.pub("seal/sl-01", b"nokey-01", creds=sl)
    msgs = []
    try:
        while len(msgs) < 3:
            msgs.append(got.get(timeout=10))
    except queue.Empty:
        pass
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters") >= 2, what="refusals")
    sub.loop_stop()
    sub.disconnect()

    c.eq([t for t, _ in msgs], ["down/sl-01"] * 3, "three sealed commands published")
    opened = [open_ack(p, dev["key"], "sl-01") for _, p in msgs]
    c.eq([(f, text) for f, _, text in opened], [(0x83, "CMD|led=on")] * 3,
         "each is an ACK envelope (ChaCha20-Poly1305) that opens to the payload")
    ctrs = [n for _, n, _ in opened]
    c.check(ctrs == sorted(set(ctrs)) and len(ctrs) == 3, f"server counters increase: {ctrs}")
    dead = sorted(r["detail"] for r in sp.rows("SELECT detail FROM dead_letters"))
    c.check(any("unknown device 'ghost-77'" in d for d in dead) and
            any("without a key 'nokey-01'" in d for d in dead),
            f"seals for an unknown device or one without a key fail the message: {dead}")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE value IN ('ghost-77', 'nokey-01')"), 0,
         "those messages stored nothing")
    c.check(all(b"CMD" not in p for _, p in msgs), "nothing left in the clear")

    # A restart keeps counting: counters are persisted with the commit.
    sp.stop()
    sp.start()
    sub = sp.client(sl, client_id="seal-sub2")
    sub.on_message = lambda cl, ud, m: got.put((m.topic, m.payload))
    sub.on_subscribe = lambda *a: ready.put(True)
    sub.connect("127.0.0.1", sp.port)
    sub.loop_start()
    sub.subscribe("down/#", qos=1)
    ready.get(timeout=10)
    sp.pub("seal/sl-01", b"self", creds=sl)
    _, p = got.get(timeout=10)
    sub.loop_stop()
    sub.disconnect()
    _, n, _ = open_ack(p, dev["key"], "sl-01")
    c.check(n > max(ctrs), f"after a restart the counter goes on ({n} > {max(ctrs)})")


if __name__ == "__main__":
    sys.exit(h.run(test))
