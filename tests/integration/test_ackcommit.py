"""Acknowledge after commit, observed on the wire (issue #10, point 17).

A device (paho, logged in with its own token) publishes at QoS 1 while
another process holds the write lock on sealpipe.db (BEGIN IMMEDIATE). The
device's own PUBACK comes from the broker, which keeps the message for the
daemon's persistent session; the promise is about the daemon's PUBACK to the
broker: while the message cannot be committed that PUBACK must not leave,
because the broker forgets a message once it is acknowledged.

So the daemon runs against mosquitto loading sealpipe_auth.so (the README's
"your own mosquitto" set-up) through a small TCP proxy that reads the MQTT
packets both ways: it sees the broker hand the PUBLISH to the daemon, no
PUBACK for it while the lock is held, then exactly one once the lock is
released, and the bucket holds exactly one row.

The libmosquitto behaviour this rests on is guarded at start-up: a daemon
linked against a libmosquitto other than 2.0 refuses to start, naming the
versions (checked with an LD_PRELOAD shim when a C compiler is at hand)."""

import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

HOLD_S = 3.0  # under the daemon's 5 s busy timeout: the commit waits, then succeeds
PUBLISH, PUBACK = 3, 4


class Proxy:
    """Forwards one TCP port to another, recording MQTT packets each way:
    seen is a list of (monotonic time, direction, type, packet id or None),
    direction "up" (daemon to broker) or "down"."""

    def __init__(self, target_port):
        self.target = target_port
        self.seen = []
        self.lock = threading.Lock()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.port = self.srv.getsockname()[1]
        self.socks = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                a, _ = self.srv.accept()
            except OSError:
                return
            b = socket.create_connection(("127.0.0.1", self.target))
            self.socks += [a, b]
            threading.Thread(target=self.pump, args=(a, b, "up"), daemon=True).start()
            threading.Thread(target=self.pump, args=(b, a, "down"), daemon=True).start()

    def pump(self, src, dst, direction):
        buf = b""
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            buf = self.parse(buf + data, direction)
            try:
                dst.sendall(data)
            except OSError:
                return

    def parse(self, buf, direction):
        """Records every complete packet in buf; returns the incomplete rest."""
        while len(buf) >= 2:
            mult, length, i = 1, 0, 1
            while True:
                if i >= len(buf):
                    return buf
                byte = buf[i]
                length += (byte & 0x7F) * mult
                mult *= 128
                i += 1
                if not byte & 0x80:
                    break
            if len(buf) < i + length:
                return buf
            kind, body = buf[0] >> 4, buf[i:i + length]
            pid = None
            if kind == PUBLISH and (buf[0] >> 1) & 3:
                tlen = int.from_bytes(body[:2], "big")
                pid = int.from_bytes(body[2 + tlen:4 + tlen], "big")
            elif kind == PUBACK:
                pid = int.from_bytes(body[:2], "big")
            with self.lock:
                self.seen.append((time.monotonic(), direction, kind, pid))
            buf = buf[i + length:]
        return buf

    def packets(self, direction, kind, pid=None):
        with self.lock:
            return [t for t, d, k, p in self.seen
                    if d == direction and k == kind and (pid is None or p == pid)]

    def last_pid(self, direction, kind):
        with self.lock:
            for t, d, k, p in reversed(self.seen):
                if d == direction and k == kind:
                    return p
        return None

    def stop(self):
        self.srv.close()
        for s in self.socks:
            s.close()


def guarded_mosquitto(tmp, data):
    """mosquitto with sealpipe_auth.so: devices log in with their tokens, the
    daemon with the secret in the returned broker's .secret."""
    plugin = os.path.join(os.path.dirname(os.path.abspath(h.SEALPIPE)), "sealpipe_auth.so")
    secret = secrets.token_hex(32)
    secret_file = os.path.join(tmp, "daemon.secret")
    with open(secret_file, "w") as f:
        f.write(secret + "\n")
    os.chmod(secret_file, 0o600)
    broker = h.Mosquitto(tmp, name="guarded",
                         settings=f"per_listener_settings false\nallow_anonymous false\n"
                                  f"plugin {plugin}\nplugin_opt_registry {data}/sealpipe.db\n"
                                  f"plugin_opt_daemon_secret {secret_file}\n")
    broker.secret = secret
    return broker


class Device:
    """A paho client logged in with a device token."""

    def __init__(self, port, dev):
        import paho.mqtt.client as mqtt
        self.acked = set()
        self.up = threading.Event()
        self.cl = mqtt.Client(client_id="ackcommit-" + dev["serial"], protocol=mqtt.MQTTv5)
        self.cl.username_pw_set("Token", dev["token"])
        self.cl.on_connect = lambda c, u, f, rc, *a: self.up.set() if rc == 0 else None
        self.cl.on_publish = lambda c, u, mid: self.acked.add(mid)
        self.cl.connect("127.0.0.1", port)
        self.cl.loop_start()
        if not self.up.wait(10):
            raise AssertionError("the device cannot connect with its token")

    def publish(self, topic, body):
        mid = self.cl.publish(topic, body, qos=1).mid
        h.wait_for(lambda: mid in self.acked, what="the broker's PUBACK to the device")

    def close(self):
        self.cl.loop_stop()
        self.cl.disconnect()


def rows(sp, variable):
    return sp.count("SELECT count(*) n FROM data WHERE variable = ?", variable)


def version_guard(c, tmp):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        print("skip the libmosquitto version guard: no C compiler")
        return
    src = os.path.join(tmp, "fakever.c")
    lib = os.path.join(tmp, "fakever.so")
    with open(src, "w") as f:
        f.write("int mosquitto_lib_version(int *a, int *b, int *c)\n"
                "{ if (a) *a = 2; if (b) *b = 1; if (c) *c = 7; return 2001007; }\n")
    subprocess.run([cc, "-shared", "-fPIC", "-o", lib, src], check=True)
    # Under ASan the shim comes before the sanitizer's runtime: allow it.
    asan = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "verify_asan_link_order=0"]))
    env = dict(os.environ, LD_PRELOAD=lib, ASAN_OPTIONS=asan)
    data = os.path.join(tmp, "other-data")
    p = subprocess.Popen([h.SEALPIPE, "run", "--data-dir", data, "--port", str(h.free_port())],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        out, _ = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.terminate()
        out, _ = p.communicate()
        out = "still running after 10 s: " + out
    c.check(p.returncode not in (0, None, -15),
            f"a daemon with libmosquitto 2.1.7 refuses to start ({p.returncode})")
    c.check("2.1.7" in out and "2.0" in out,
            f"... naming the found and the verified version ({out.strip()[-300:]!r})")
    c.check(not os.path.exists(data), "... before it touches the data directory")


def test(c, tmp, started):
    version_guard(c, tmp)
    sp = h.Sealpipe(tmp)
    dev = sp.add_device("dev-a", "--cipher", "none")
    broker = guarded_mosquitto(tmp, sp.data)
    started.append(broker)
    proxy = Proxy(broker.port)
    started.append(proxy)
    sp.port = proxy.port
    sp.extra = ["--broker", f"mqtt://127.0.0.1:{proxy.port}", "--broker-username",
                "sealpipe-daemon", "--broker-password", broker.secret]
    sp.start()
    started.append(sp)
    d = Device(broker.port, dev)
    try:
        # Control: without the lock the daemon acknowledges at once.
        d.publish("$tip/dev-a/push", "[free:=1]")
        h.wait_for(lambda: proxy.packets("up", PUBACK), what="the daemon's first PUBACK")
        pid = proxy.last_pid("down", PUBLISH)
        c.check(proxy.packets("up", PUBACK, pid)[0] - proxy.packets("down", PUBLISH, pid)[0]
                < 1.0, "without the lock the daemon acknowledges within a second")

        con = sqlite3.connect(os.path.join(sp.data, "sealpipe.db"), timeout=10,
                              isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        locked_at = time.monotonic()
        n_down = len(proxy.packets("down", PUBLISH))
        d.publish("$tip/dev-a/push", "[held:=1]")
        h.wait_for(lambda: len(proxy.packets("down", PUBLISH)) > n_down,
                   what="the broker to hand the message to the daemon")
        pid = proxy.last_pid("down", PUBLISH)
        while time.monotonic() - locked_at < HOLD_S:
            time.sleep(0.05)
        c.eq(proxy.packets("up", PUBACK, pid), [],
             f"no PUBACK from the daemon while sealpipe.db is locked ({HOLD_S:.0f} s)")
        c.eq(rows(sp, "held"), 0, "nothing is stored meanwhile")
        released_at = time.monotonic()
        con.execute("ROLLBACK")
        con.close()
        h.wait_for(lambda: proxy.packets("up", PUBACK, pid), what="the PUBACK after release")
        time.sleep(1.0)  # a second PUBACK, if any, would come within this
        acks = proxy.packets("up", PUBACK, pid)
        c.eq(len(acks), 1, "exactly one PUBACK once the lock is released")
        c.check(acks and acks[0] >= released_at, "... sent after the release")
        c.eq(rows(sp, "held"), 1, "exactly one stored row")
        c.eq(len(proxy.packets("down", PUBLISH, pid)), 1, "the broker delivered it once")
    finally:
        d.close()


if __name__ == "__main__":
    sys.exit(h.run(test))
