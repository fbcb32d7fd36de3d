"""TagoTiP/S replay counters stay exact while they wait in memory and in
device_status_pending for the fold (runtime/storage/devstate.c; issue #15,
point 3: no upsert of device_counters per message).

From the outside: devices log in with their tokens and publish sealed
TagoTiP/S pushes (PyNaCl, ChaCha20-Poly1305) with paho at QoS 1, while a
second device keeps the daemon busy, so that the fold waits its 5 s. Checked:
- a replay of a counter accepted moments ago (committed, not folded) is a
  `replay` dead letter, and so is an older one; a newer one is stored;
- kill -9 right after a backlog is committed: the next daemon folds what the
  crash left before it reads anything, so replays of the backlog's counters
  are refused and device_counters holds the last one;
- `device rm` and `device add` of the serial while the old device's counter
  waits in memory: the new device (new key) starts over at counter 1, and
  the fold does not give it the old device's counter or counts, nor does
  `device show` before the fold;
- a stop folds what waits."""

import json
import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

import paho.mqtt.client as mqtt  # noqa: E402


class Publisher:
    """One device's paho connection; publish() waits for the PUBACK."""

    def __init__(self, sp, dev, name):
        self.dev = dev
        self.cl = sp.client(sp.creds(dev), client_id=name, protocol=mqtt.MQTTv311)
        self.cl.connect("127.0.0.1", sp.port)
        self.cl.loop_start()

    def push(self, counter, body=None, key=None):
        d = self.dev
        env = h.seal_chacha(key or d["key"], d["auth_hash"], d["serial"],
                            body or f"[n:={counter}]", counter)
        self.cl.publish(f"$tips/{d['serial']}/push", env, qos=1).wait_for_publish(timeout=10)

    def close(self):
        self.cl.disconnect()
        self.cl.loop_stop()


def stored(sp, serial):
    return sp.count("SELECT count(*) n FROM data WHERE device = ?", serial)


def replays(sp):
    return sp.count("SELECT count(*) n FROM dead_letters WHERE reason = 'replay'")


def last_counter(sp, serial):
    rows = sp.rows("SELECT last_counter FROM device_counters WHERE serial = ?", serial)
    return rows[0]["last_counter"] if rows else None


class Busy:
    """Another device publishing all the time: batches never pause. Its
    counter goes on from one Busy to the next."""

    last = 0

    def __init__(self, sp, dev):
        self.pub = Publisher(sp, dev, f"busy-pub-{Busy.last}")
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop.is_set():
            Busy.last += 1
            self.pub.push(Busy.last)

    def close(self):
        self.stop.set()
        self.t.join(timeout=10)
        self.pub.close()


def live(c, sp):
    a = Publisher(sp, sp.devices["rf-a"], "a-pub-1")
    for n in range(1, 51):
        a.push(n)
    h.wait_for(lambda: stored(sp, "rf-a") == 50, what="50 pushes stored")
    pending = sp.count("SELECT count(*) n FROM device_status_pending")
    a.push(50)
    a.push(25)
    a.push(51)
    h.wait_for(lambda: stored(sp, "rf-a") == 51, what="the newer counter stored")
    h.wait_for(lambda: replays(sp) == 2, what="two replays dead-lettered")
    c.eq(replays(sp), 2, f"the last and an older counter are replays ({pending} rows pending)")
    c.eq(stored(sp, "rf-a"), 51, "the newer one is stored")
    a.close()


def crash(c, sp):
    busy = Busy(sp, sp.devices["rf-busy"])
    a = Publisher(sp, sp.devices["rf-a"], "a-pub-2")
    for n in range(52, 152):
        a.push(n)
    h.wait_for(lambda: stored(sp, "rf-a") == 151, what="the backlog stored")
    a.close()
    busy.close()
    h.wait_for(lambda: stored(sp, "rf-busy") == Busy.last, what="the busy device's pushes stored")
    sp.proc.send_signal(signal.SIGKILL)
    sp.proc.wait()
    left = sp.count("SELECT count(*) n FROM device_status_pending")
    c.check(left > 0, f"the crash left rows to fold ({left})")
    sp.start()
    c.eq(sp.count("SELECT count(*) n FROM device_status_pending"), 0,
         "folded at start, before anything is read")
    c.eq(last_counter(sp, "rf-a"), 151, "device_counters holds the last counter")
    a = Publisher(sp, sp.devices["rf-a"], "a-pub-3")
    a.push(151)
    a.push(100)
    a.push(152)
    h.wait_for(lambda: stored(sp, "rf-a") == 152, what="the counter after the crash stored")
    h.wait_for(lambda: replays(sp) == 4, what="the backlog's counters refused")
    c.eq(replays(sp), 4, "after the crash, the backlog's counters are replays")
    a.close()


def readded(c, sp):
    busy = Busy(sp, sp.devices["rf-busy"])
    a = Publisher(sp, sp.devices["rf-a"], "a-pub-4")
    for n in range(1000, 1010):
        a.push(n)
    h.wait_for(lambda: stored(sp, "rf-a") == 162, what="counters up to 1009 stored")
    a.close()
    sp.cli("device", "rm", "rf-a")
    new = sp.add_device("rf-a", "--cipher", "chacha20-poly1305", "--require-encryption")
    a = Publisher(sp, new, "a-pub-5")
    a.push(1)
    a.push(2)
    h.wait_for(lambda: stored(sp, "rf-a") + replays(sp) >= 162 + 2 + 4,
               what="the new device's pushes processed")
    c.eq(replays(sp), 4, "no false replay: the new device starts over at counter 1")
    c.eq(stored(sp, "rf-a"), 164, "both stored (the old device's rows stay after `device rm`)")
    show = json.loads(sp.cli("device", "show", "rf-a", "--json").stdout)["status"]
    c.eq(show["messages"], 2, "device show counts the new device's messages alone, folded or not")
    busy.close()
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM device_status_pending") == 0,
               timeout=10, what="the fold")
    c.eq(last_counter(sp, "rf-a"), 2, "the fold did not give it the old device's counter")
    st = sp.rows("SELECT messages FROM device_status WHERE serial = 'rf-a'")
    c.eq(st[0]["messages"] if st else None, 2, "nor its counts")
    a.push(1000)
    h.wait_for(lambda: stored(sp, "rf-a") == 165, what="a later counter stored")
    a.close()


def clean_stop(c, sp):
    """SIGTERM while batches keep coming (no fold due for seconds): the stop
    folds, so the tables are whole while the daemon is down."""
    busy = Busy(sp, sp.devices["rf-busy"])
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM device_status_pending") > 0,
               what="rows pending")
    busy.close()
    rc = sp.stop()
    c.eq(rc, 0, "the daemon stops")
    c.eq(sp.count("SELECT count(*) n FROM device_status_pending"), 0, "the stop folded")
    c.eq(last_counter(sp, "rf-busy"), Busy.last, "device_counters has the busy device's last")


def test(c, tmp, started):
    sp = h.Sealpipe(tmp)
    for s in ("rf-a", "rf-busy"):
        sp.add_device(s, "--cipher", "chacha20-poly1305", "--require-encryption")
    sp.start()
    started.append(sp)
    live(c, sp)
    crash(c, sp)
    readded(c, sp)
    clean_stop(c, sp)


if __name__ == "__main__":
    sys.exit(h.run(test))
