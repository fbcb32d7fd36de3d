"""Shared helpers for sealpipe's integration tests.

Each test starts what it needs on free loopback ports -- the sealpipe daemon
(with its embedded mosquitto, or joined to a mosquitto the test starts) --
uses real clients (sealpipe-device, mosquitto_pub, paho-mqtt) and reads the
results straight from the SQLite file, as a user would. Everything started is
stopped at the end, even on failure.

Tests print one line per check and finish with "N passed, N failed".
"""

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time

SEALPIPE = os.environ.get("SEALPIPE_BIN", "build/sealpipe")
DEVICE = os.environ.get("SEALPIPE_DEVICE_BIN", "build/sealpipe-device")
SOURCE = os.environ.get("SEALPIPE_SOURCE_DIR", os.getcwd())
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


# The embedded broker admits only known clients (issue #5). Test tools that
# are not about authentication connect as the daemon (user sealpipe-daemon,
# password from <data>/broker/daemon.secret): Sealpipe.start() sets this, and
# paho clients that set no credentials of their own get it at connect().
DEFAULT_CREDS = None


def _patch_paho():
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        return
    orig = mqtt.Client.connect

    def connect(self, *args, **kwargs):
        if DEFAULT_CREDS and getattr(self, "_username", None) is None:
            self.username_pw_set(*DEFAULT_CREDS)
        return orig(self, *args, **kwargs)
    mqtt.Client.connect = connect


_patch_paho()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Checks:
    """Counts checks; the closing line is the one CI reads."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
            print(f"ok   {what}")
        else:
            self.failed += 1
            print(f"FAIL {what}")
        sys.stdout.flush()
        return cond

    def eq(self, got, want, what):
        return self.check(got == want, f"{what}: got {got!r}, want {want!r}")

    def done(self):
        print(f"{self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0


class Mosquitto:
    """A plain mosquitto on a free loopback port (the 'external broker')."""

    def __init__(self, tmp):
        self.port = free_port()
        conf = os.path.join(tmp, "ext-mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                    "max_inflight_messages 1000\nmax_queued_messages 1000000\n"
                    "log_dest stderr\n")
            if os.geteuid() == 0:
                f.write("user root\n")
        self.log = open(os.path.join(tmp, "ext-mosquitto.log"), "w")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        wait_for(lambda: _listening(self.port), what="external mosquitto")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def _listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Sealpipe:
    """The daemon with its own data directory and analyses folder."""

    def __init__(self, tmp, analyses=None, broker=None, extra=()):
        self.tmp = tmp
        self.data = os.path.join(tmp, "data")
        self.analyses = analyses or os.path.join(SOURCE, "analyses")
        self.broker = broker
        self.port = broker.port if broker else free_port()
        self.extra = list(extra)
        self.proc = None
        self.creds = None
        self.logpath = os.path.join(tmp, "sealpipe.log")
        os.makedirs(self.data, exist_ok=True)

    def cli(self, *args, check=True):
        r = subprocess.run([SEALPIPE, *args, "--data-dir", self.data,
                            "--analyses-dir", self.analyses],
                           capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError(f"sealpipe {' '.join(args)} failed: {r.stderr}")
        return r

    def add_device(self, serial, *args):
        r = self.cli("device", "add", serial, "--json", *args)
        return json.loads(r.stdout)

    def start(self, wait=True):
        args = [SEALPIPE, "run", "--data-dir", self.data, "--analyses-dir", self.analyses,
                "--port", str(self.port), "--log-level", "debug", *self.extra]
        if self.broker:
            args += ["--broker", f"mqtt://127.0.0.1:{self.broker.port}"]
        self.log = open(self.logpath, "a")
        seen = len(self.read_log())  # a restart appends: look at the new part only
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        if wait:
            wait_for(lambda: "sealpipe running" in self.read_log()[seen:] or
                     self.proc.poll() is not None, timeout=20, what="daemon start")
            if self.proc.poll() is not None:
                raise AssertionError("daemon exited at start:\n" + self.read_log())
        self.load_creds()

    def load_creds(self):
        """The daemon's broker credential, for test tools (see DEFAULT_CREDS)."""
        global DEFAULT_CREDS
        path = os.path.join(self.data, "broker", "daemon.secret")
        if self.broker or not os.path.exists(path):
            self.creds = None
            return
        with open(path) as f:
            self.creds = ("sealpipe-daemon", f.read().strip())
        DEFAULT_CREDS = self.creds

    def cred_args(self, user_flag="-u", pw_flag="-P"):
        return [user_flag, self.creds[0], pw_flag, self.creds[1]] if self.creds else []

    def read_log(self):
        try:
            with open(self.logpath) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()
        rc = self.proc.returncode if self.proc else None
        self.proc = None
        return rc

    def kill_embedded_broker(self):
        pidfile = os.path.join(self.data, "broker", "mosquitto.pid")
        try:
            with open(pidfile) as f:
                os.kill(int(f.read().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass

    def db(self):
        con = sqlite3.connect(os.path.join(self.data, "sealpipe.db"), timeout=10)
        con.row_factory = sqlite3.Row
        return con

    def rows(self, sql, *params):
        con = self.db()
        try:
            return [dict(r) for r in con.execute(sql, params)]
        finally:
            con.close()

    def count(self, sql, *params):
        return self.rows(sql, *params)[0]["n"]

    def device(self, *args, check=True):
        creds = [] if "--password" in args else self.cred_args("--username", "--password")
        r = subprocess.run([DEVICE, *args, "--port", str(self.port), *creds],
                           capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError(f"sealpipe-device {' '.join(args)} failed: {r.stderr}")
        return r

    def push(self, dev, body, *args):
        """Pushes an encrypted body for a device dict from add_device()."""
        return self.device("push", "--serial", dev["serial"], "--qos", "1", "--encrypt",
                           "--key", dev["key"], "--cipher", dev["cipher"],
                           "--auth-hash", dev["auth_hash"],
                           "--counter-file", os.path.join(self.tmp, dev["serial"] + ".ctr"),
                           "--quiet", *args, body)

    def pub(self, topic, payload, qos=1):
        """Publishes raw bytes with mosquitto_pub."""
        r = subprocess.run(["mosquitto_pub", "-p", str(self.port), "-h", "127.0.0.1", "-q",
                            str(qos), "-t", topic, "-s", *self.cred_args()], input=payload,
                           capture_output=True)
        if r.returncode != 0:
            raise AssertionError(f"mosquitto_pub failed: {r.stderr!r}")


def run(test):
    """Runs test(checks, tmp) with a fresh temp dir; returns the exit status."""
    checks = Checks()
    tmp = tempfile.mkdtemp(prefix="sealpipe-it-")
    started = []
    try:
        test(checks, tmp, started)
    except AssertionError as e:
        checks.check(False, f"aborted: {e}")
    finally:
        for s in reversed(started):
            try:
                if isinstance(s, Sealpipe):
                    s.stop()
                    s.kill_embedded_broker()
                else:
                    s.stop()
            except Exception as e:  # keep stopping the rest
                print(f"cleanup: {e}")
        # A daemon that failed at start was never added to `started`, but its
        # embedded broker may be running: stop every broker under tmp.
        for root, _, files in os.walk(tmp):
            if "mosquitto.pid" in files:
                try:
                    with open(os.path.join(root, "mosquitto.pid")) as f:
                        pid = int(f.read().strip())
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if root.encode() in f.read():  # that broker, not a reused pid
                            os.kill(pid, signal.SIGTERM)
                except (OSError, ValueError):
                    pass
        if checks.failed:
            for s in started:
                if isinstance(s, Sealpipe):
                    print("---- daemon log (tail) ----")
                    print(s.read_log()[-6000:])
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return checks.done()


def seal_chacha(key_hex, auth_hash_hex, serial, body, counter):
    """Seals a TagoTiP/S PUSH envelope with PyNaCl, independently of sealpipe's
    SDK (TagoTiPs.md §5-§6): flags 0x80 (ChaCha20-Poly1305, v0, PUSH)."""
    import hashlib
    from nacl.bindings import crypto_aead_chacha20poly1305_ietf_encrypt as enc
    flags = 0x80
    dh = hashlib.sha256(serial.encode()).digest()[:8]
    header = bytes([flags]) + counter.to_bytes(4, "big") + bytes.fromhex(auth_hash_hex) + dh
    nonce = bytes([flags]) + b"\0\0\0" + dh[:4] + counter.to_bytes(4, "big")
    inner = f"{serial}|{body}".encode()
    return header + enc(inner, header, nonce, bytes.fromhex(key_hex))
