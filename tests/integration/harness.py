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
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request

SEALPIPE = os.environ.get("SEALPIPE_BIN", "build/sealpipe")
DEVICE = os.environ.get("SEALPIPE_DEVICE_BIN", "build/sealpipe-device")
SOURCE = os.environ.get("SEALPIPE_SOURCE_DIR", os.getcwd())
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


# The embedded broker admits only known clients (issue #5), and what a client
# may do and in whose bucket its data lands depend on who it is: a device's
# messages pass the device ACL and carry the plugin's identity stamp, the
# daemon's pass neither. So every test client logs in as a real device
# (sp.creds(device)), a profile context (sp.profile_creds()) or, only in a test
# about the daemon itself, as the daemon (sp.daemon_creds(), with a comment
# saying why). Nothing logs in as the daemon by default:
#   - Sealpipe.pub() / device() / cred_args() / client() need credentials,
#     given or found: pub() without creds= logs in as the one known device
#     whose serial is a level of the topic, and refuses when there is none;
#   - a paho client connecting to an embedded broker with no username, or with
#     the daemon's username but not made by sp.client(sp.daemon_creds()), is
#     refused here, before it reaches the broker;
#   - run() fails the test when the broker's log shows a TCP client (the
#     daemon uses its unix socket) logged in as the daemon and the test never
#     asked for daemon_creds().
DAEMON_USER = "sealpipe-daemon"
_PLUGIN_PORTS = set()  # ports of the embedded brokers (the ones with sealpipe_auth.so)


class Creds(tuple):
    """(username, password) a client logs in with. daemon is True only for
    the daemon's own credential (Sealpipe.daemon_creds()); serial names the
    device of a device token."""

    def __new__(cls, user, password, daemon=False, serial=None):
        t = super().__new__(cls, (user, password))
        t.daemon = daemon
        t.serial = serial
        return t

    def __repr__(self):
        who = "daemon" if self.daemon else self.serial or self[0]
        return f"Creds({who})"


# Deliberately no credentials: for tests of what the broker does with a
# client that has none (it must refuse it).
NO_CREDS = Creds(None, None)


def device_creds(token, serial=None):
    """A device token's login: username "Token", password the token."""
    return Creds("Token", token, serial=serial)


def as_creds(creds):
    """creds as Creds: a plain (username, password) pair is taken as a
    device's or a profile's login, never as the daemon's."""
    if isinstance(creds, Creds):
        return creds
    if isinstance(creds, (tuple, list)) and len(creds) == 2:
        if creds[0] == DAEMON_USER:
            raise AssertionError("the daemon's login comes only from sp.daemon_creds(), "
                                 "in a test about the daemon")
        return Creds(*creds)
    raise AssertionError(f"credentials must be Creds or (username, password), not {creds!r}")


def _patch_paho():
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        return
    orig = mqtt.Client.connect_async  # connect() goes through it too

    def connect_async(self, host, port=1883, *args, **kwargs):
        user = getattr(self, "_username", None)
        if port in _PLUGIN_PORTS and not getattr(self, "_sp_no_creds", False):
            if user is None:
                raise AssertionError(
                    "a paho client connects with no credentials: make it with "
                    "sp.client(sp.creds(device)) (tests log in as real devices)")
            if user in (DAEMON_USER, DAEMON_USER.encode()) and \
                    not getattr(self, "_sp_daemon", False):
                raise AssertionError(
                    "a paho client logs in as the daemon without sp.daemon_creds(): "
                    "only tests about the daemon itself may, with sp.client(sp.daemon_creds())")
        return orig(self, host, port, *args, **kwargs)
    mqtt.Client.connect_async = connect_async


_patch_paho()


def free_port(kind=socket.SOCK_STREAM):
    with socket.socket(socket.AF_INET, kind) as s:
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
    """A mosquitto of the test's own on a free loopback port: by default a plain
    one (the 'external broker'); settings replace its anonymous access (e.g. a
    plugin's lines), name tells its files and log apart."""

    def __init__(self, tmp, settings="allow_anonymous true\n", name="ext"):
        self.port = free_port()
        _PLUGIN_PORTS.discard(self.port)  # a stopped daemon's port, reused: no plugin here
        conf = os.path.join(tmp, f"{name}-mosquitto.conf")
        with open(conf, "w") as f:
            f.write(settings + f"listener {self.port} 127.0.0.1\n"
                    "max_inflight_messages 1000\nmax_queued_messages 1000000\n"
                    "log_dest stderr\n")
            if os.geteuid() == 0:
                f.write("user root\n")
        self.log = open(os.path.join(tmp, f"{name}-mosquitto.log"), "w")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        wait_for(lambda: _listening(self.port), what=f"{name} mosquitto")

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

    def __init__(self, tmp, analyses=None, broker=None, extra=(), net=False):
        self.tmp = tmp
        self.data = os.path.join(tmp, "data")
        self.analyses = analyses or os.path.join(SOURCE, "analyses")
        self.broker = broker
        self.port = broker.port if broker else free_port()
        # The TagoTiP listeners (HTTP, HTTPS, raw UDP and TCP): with net, each
        # on a free port of its own (unless extra names one); without, off,
        # so that a test that does not use them cannot lose a port race.
        self.http_port = free_port() if net else 0
        self.udp_port = free_port(socket.SOCK_DGRAM) if net else 0
        self.tcp_port = free_port() if net else 0
        self.https_port = free_port() if net else 0
        self.metrics_port = free_port()  # /metrics: one each, never the shared default
        self.extra = list(extra)
        self.proc = None
        self.devices = {}  # serial -> what add_device() printed (token, key, ...)
        self.daemon_used = False  # set by daemon_creds(): see run()'s audit
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
        """`sealpipe device add SERIAL --json ARGS`: the printed dict (serial,
        token, key, auth_hash, ...), remembered for creds(serial)."""
        r = self.cli("device", "add", serial, "--json", *args)
        dev = json.loads(r.stdout)
        self.devices[serial] = dev
        return dev

    def add_token(self, serial, *args):
        """`sealpipe token add SERIAL --json ARGS` (--name, --perm, --expires):
        the device's login with the new token."""
        r = self.cli("token", "add", serial, "--json", *args)
        return device_creds(json.loads(r.stdout)["token"], serial)

    # ---- who a test client is -------------------------------------------------

    def creds(self, dev, token=None):
        """A device's login: dev is add_device()'s dict or a serial added with
        it; token another of its tokens (default the one device add printed)."""
        d = dev if isinstance(dev, dict) else self.devices.get(dev)
        if d is None:
            raise AssertionError(f"creds({dev!r}): no such device added with add_device()")
        return device_creds(token or d["token"], d["serial"])

    def profile_creds(self, dev_or_hash):
        """The TagoTiP MQTT binding's profile context: the two halves of the
        profile's auth hash (a device dict, or the 16 hex digits)."""
        ah = dev_or_hash["auth_hash"] if isinstance(dev_or_hash, dict) else dev_or_hash
        return Creds(ah[:8], ah[8:])

    def daemon_creds(self):
        """The daemon's own broker login (<data>/broker/daemon.secret). It
        passes no ACL and gets no identity stamp: use it only in a test about
        the daemon itself, and say why next to the call."""
        path = os.path.join(self.data, "broker", "daemon.secret")
        if self.broker:
            raise AssertionError("daemon_creds(): an external broker has no daemon login")
        with open(path) as f:
            secret = f.read().strip()
        self.daemon_used = True
        return Creds(DAEMON_USER, secret, daemon=True)

    def _resolve(self, creds, topic=None, serial=None):
        """The credentials a helper logs in with: the given ones; for an
        external broker (no plugin, anonymous) none; else the known device
        named by serial, or the one whose serial is a level of topic."""
        if creds is not None:
            creds = as_creds(creds)
            return None if creds is NO_CREDS else creds
        if self.broker:
            return None
        if serial is None and topic is not None:
            named = [lv for lv in topic.split("/") if lv in self.devices]
            if len(set(named)) == 1:
                serial = named[0]
        if serial in self.devices:
            return self.creds(serial)
        raise AssertionError(
            f"no credentials for {topic or serial!r}: pass creds=sp.creds(device) (the harness "
            "logs in as a device named in the topic, never as the daemon by default)")

    def start(self, wait=True):
        args = [SEALPIPE, "run", "--data-dir", self.data, "--analyses-dir", self.analyses,
                "--port", str(self.port), "--log-level", "debug"]
        for opt, port in (("--http-port", self.http_port), ("--udp-port", self.udp_port),
                          ("--tcp-port", self.tcp_port),
                          ("--https-port", self.https_port),
                          ("--metrics-port", self.metrics_port)):
            if opt not in self.extra:
                args += [opt, str(port)]
        args += self.extra
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
        if not self.broker:
            _PLUGIN_PORTS.add(self.port)
            if "--tls-port" in self.extra:
                _PLUGIN_PORTS.add(int(self.extra[self.extra.index("--tls-port") + 1]))

    def cred_args(self, creds, user_flag="-u", pw_flag="-P"):
        """Command-line arguments logging a mosquitto tool in with creds."""
        creds = as_creds(creds)
        return [] if creds is NO_CREDS else [user_flag, creds[0], pw_flag, creds[1]]

    def client(self, creds, client_id="", protocol=None, **kwargs):
        """A paho client (not connected) that logs in with creds."""
        import paho.mqtt.client as mqtt
        creds = as_creds(creds)
        cl = mqtt.Client(client_id=client_id, protocol=protocol or mqtt.MQTTv311, **kwargs)
        if creds is NO_CREDS:
            cl._sp_no_creds = True
        else:
            cl.username_pw_set(*creds)
            cl._sp_daemon = creds.daemon
        return cl

    def read_log(self):
        try:
            with open(self.logpath) as f:
                return f.read()
        except OSError:
            return ""

    def reload_analysis(self, name, text):
        """Replaces analysis NAME.lua in the running daemon's folder with text
        (atomically, as an editor saving it would) and waits until the
        daemon says it reloaded it."""
        path = os.path.join(self.analyses, name + ".lua")
        line = f"analysis reloaded name={name}"
        seen = self.read_log().count(line)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)
        wait_for(lambda: self.read_log().count(line) > seen, what=f"the daemon reloads {name}.lua")

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

    def metric(self, series, absent=None):
        """The value of one series of the daemon's /metrics, named as written
        there (with its labels: 'sealpipe_answers_total{via="plugin"}'), or
        absent when it is not there."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(series + " "):
                    return float(line.split()[1])
        return absent

    def device(self, *args, creds=None, check=True):
        """Runs sealpipe-device ARGS against the broker, logged in with creds
        (default: the device --serial names), unless ARGS give --password."""
        login = []
        if "--password" not in args:
            serial = args[args.index("--serial") + 1] if "--serial" in args else None
            c = self._resolve(creds, serial=serial)
            login = self.cred_args(c, "--username", "--password") if c else []
        r = subprocess.run([DEVICE, *args, "--port", str(self.port), *login],
                           capture_output=True, text=True)
        if check and r.returncode != 0:
            raise AssertionError(f"sealpipe-device {' '.join(args)} failed: {r.stderr}")
        return r

    def push(self, dev, body, *args, creds=None):
        """Pushes an encrypted body for a device dict from add_device(),
        logged in as that device."""
        return self.device("push", "--serial", dev["serial"], "--qos", "1", "--encrypt",
                           "--key", dev["key"], "--cipher", dev["cipher"],
                           "--auth-hash", dev["auth_hash"],
                           "--counter-file", os.path.join(self.tmp, dev["serial"] + ".ctr"),
                           "--quiet", *args, body, creds=creds or self.creds(dev))

    def pub(self, topic, payload, qos=1, creds=None, version="mqttv5"):
        """Publishes raw bytes with mosquitto_pub, logged in with creds
        (default: the device whose serial is a level of the topic). Raises
        when the broker refuses the publish: over MQTT 5 (the default) a
        refusal by the ACL comes back in the PUBACK, where mosquitto_pub only
        warns; over 3.1.1 it is silent."""
        c = self._resolve(creds, topic=topic)
        r = subprocess.run(["mosquitto_pub", "-p", str(self.port), "-h", "127.0.0.1", "-V",
                            version, "-q", str(qos), "-t", topic, "-s",
                            *(self.cred_args(c) if c else [])],
                           input=payload, capture_output=True)
        if r.returncode != 0 or b"Not authorized" in r.stdout + r.stderr:
            raise AssertionError(f"mosquitto_pub to {topic} as {c!r} failed: "
                                 f"{(r.stdout + r.stderr).strip()!r}")

    def daemon_logins(self):
        """Client ids that logged in as the daemon over TCP, from the embedded
        broker's log. The daemon itself connects over the unix socket in the
        broker's 0700 directory (whatever its client_id); tests use TCP."""
        try:
            with open(os.path.join(self.data, "broker", "mosquitto.log"), errors="replace") as f:
                log = f.read()
        except OSError:
            return []
        found = re.findall(r"New client connected from (\S+) as (\S+) \([^)]*u'"
                           + re.escape(DAEMON_USER) + r"'\)", log)
        return sorted(set(cid for addr, cid in found if not addr.startswith("/")))


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
        for s in started:
            if isinstance(s, Sealpipe) and not s.daemon_used:
                ids = s.daemon_logins()
                if ids:
                    checks.check(False, f"clients {ids} logged in as the daemon, but the test "
                                 "never asked for sp.daemon_creds()")
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


def device_seal(dev, key, body, counter):
    """A PUSH envelope for device dev (add_device()'s dict) sealed with key
    (hex, dev's cipher) by `sealpipe-device seal`."""
    return subprocess.run([DEVICE, "seal", "--serial", dev["serial"], "--key", key,
                           "--cipher", dev["cipher"], "--auth-hash", dev["auth_hash"],
                           "--counter", str(counter), body],
                          capture_output=True, check=True).stdout


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
