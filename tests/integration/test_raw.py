"""TagoTiP's raw binding (issue #12, points 5, 6 and 9; TagoTipServers.md §4):
whole frames and TagoTiP/S envelopes over UDP (one per datagram) and TCP
(frames end with LF, envelopes length-prefixed, TagoTiPs.md §5.4), from
Python's socket module and the independent TagoTiP/S reference
(tagotips_ref.py), with devices made by the real CLI.

PUSH stored exactly, PULL and PING answered, a pending command after the
answer; a "!N" frame sent twice stored once and answered twice; an envelope
replayed (same bytes) answered and stored once; an old counter, a wrong key,
an unknown device, a wrong auth hash, oversize frames and envelopes; garbage
never answered by more bytes than it had, and a garbage flood from one sender
(127.0.0.2) that does not stop a device on another address, or on another port
of the same address, from being served; a UDP PULL answer over max(512, 4 x
the request) replaced by ACK|ERR|payload_too_large (no reflection); past 32
TCP connections from one address, the next closed at once; several frames in
one TCP write, one frame over many; and commit before answer: while the
database is locked from outside no ACK leaves, and the message is stored once
after."""

import os
import socket
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402
import tagotips_ref as ref  # noqa: E402

HOLD_S = 3.0  # under the daemon's 5 s busy timeout: the commit waits, then succeeds


class Udp:
    """A UDP client bound to a source address of its own."""

    def __init__(self, sp, src="127.0.0.1"):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind((src, 0))
        self.to = ("127.0.0.1", sp.udp_port)

    def send(self, payload):
        self.s.sendto(payload if isinstance(payload, bytes) else payload.encode(), self.to)

    def recv(self, timeout=5.0):
        """The next datagram, or None when nothing comes within timeout."""
        self.s.settimeout(timeout)
        try:
            return self.s.recv(65536)
        except socket.timeout:
            return None

    def ask(self, payload, timeout=5.0):
        self.send(payload)
        return self.recv(timeout)

    def close(self):
        self.s.close()


class Tcp:
    """A TCP connection that reads lines (frames) and length-prefixed messages."""

    def __init__(self, sp):
        self.s = socket.create_connection(("127.0.0.1", sp.tcp_port), timeout=10)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data if isinstance(data, bytes) else data.encode())

    def _need(self, n, timeout):
        self.s.settimeout(timeout)
        while len(self.buf) < n:
            more = self.s.recv(65536)
            if not more:
                raise EOFError("connection closed")
            self.buf += more

    def line(self, timeout=10.0):
        self.s.settimeout(timeout)
        while b"\n" not in self.buf:
            more = self.s.recv(65536)
            if not more:
                raise EOFError("connection closed")
            self.buf += more
        out, self.buf = self.buf.split(b"\n", 1)
        return out

    def message(self, timeout=10.0):
        self._need(2, timeout)
        n = int.from_bytes(self.buf[:2], "big")
        self._need(2 + n, timeout)
        out, self.buf = self.buf[2:2 + n], self.buf[2 + n:]
        return out

    def nothing_within(self, timeout):
        self.s.settimeout(timeout)
        try:
            more = self.s.recv(65536)
        except socket.timeout:
            return True
        self.buf += more
        return False

    def close(self):
        self.s.close()


def prefixed(env):
    return len(env).to_bytes(2, "big") + env


class Sealer:
    """Seals for one device with the reference implementation (AES-128-CCM)."""

    def __init__(self, dev):
        self.key = bytes.fromhex(dev["key"])
        self.serial = dev["serial"]
        self.ah = bytes.fromhex(dev["auth_hash"])
        self.dh = ref.device_hash(self.serial)

    def seal(self, method, counter, inner, key=None):
        return ref.seal(key or self.key, 0, method, counter, self.ah, self.dh, inner)

    def open(self, env):
        o = ref.open_envelope(self.key, env)
        assert o.method == ref.ACK, f"answer method {o.method}"
        return o.inner.decode()


def values(sp, serial, variable):
    return [r["value"] for r in sp.rows("SELECT value FROM data WHERE device = ? AND "
                                        "variable = ? ORDER BY id", serial, variable)]


def test_udp(c, sp, plain, sealed):
    ah = plain["auth_hash"]
    u = Udp(sp)
    c.eq(u.ask(f"PUSH|{ah}|raw-p|[temp:=21.5#C;ok?=true]\n"), b"ACK|OK|2",
         "UDP PUSH (with the optional LF): ACK|OK|2")
    rows = sp.rows("SELECT variable, type, value, unit FROM data WHERE device = 'raw-p' "
                   "ORDER BY variable")
    c.eq([(r["variable"], r["type"], r["value"], r["unit"]) for r in rows],
         [("ok", "boolean", 1, None), ("temp", "number", 21.5, "C")], "stored exactly")
    p = u.ask(f"PULL|{ah}|raw-p|[temp]")
    c.check(p is not None and p.startswith(b"ACK|OK|[temp:=21.5#C@"), f"UDP PULL: {p!r}")
    c.eq(u.ask(f"PING|{ah}|raw-p"), b"ACK|PONG", "UDP PING: ACK|PONG")

    sp.cli("device", "cmd", "raw-p", "reboot")
    c.eq(u.ask(f"PING|!3|{ah}|raw-p"), b"ACK|!3|PONG", "PING with a command pending: the answer")
    c.eq(u.recv(), b"ACK|CMD|reboot", "then the command, in a datagram of its own")
    c.eq(u.recv(0.5), None, "and nothing more")

    dup = f"PUSH|!77|{ah}|raw-p|[dup:=1]"
    c.eq([u.ask(dup), u.ask(dup)], [b"ACK|!77|OK|1"] * 2, "a !N frame sent twice: answered twice")
    c.eq(values(sp, "raw-p", "dup"), [1], "and stored once")

    # TagoTiP/S over UDP.
    s = Sealer(sealed)
    env = s.seal(ref.PUSH, 5, "raw-s|[hum:=55#%]")
    a = u.ask(env)
    c.eq(s.open(a) if a and a[0] != 0x41 else a, "OK|1", "sealed PUSH over UDP: sealed OK|1")
    a = u.ask(env)
    c.eq(s.open(a) if a and a[0] != 0x41 else a, "OK|1", "the same envelope again: answered")
    c.eq(values(sp, "raw-s", "hum"), [55], "and stored once")
    a = u.ask(s.seal(ref.PUSH, 4, "raw-s|[hum:=56]"))
    c.eq(s.open(a) if a and a[0] != 0x41 else a, "ERR|invalid_seq", "an older counter")
    a = u.ask(s.seal(ref.PULL, 6, "raw-s|[hum]"))
    text = s.open(a) if a and a[0] != 0x41 else a
    c.check(isinstance(text, str) and text.startswith("OK|[hum:=55#%@"), f"sealed PULL: {text!r}")
    a = u.ask(s.seal(ref.PING, 7, "raw-s"))
    c.eq(s.open(a) if a and a[0] != 0x41 else a, "PONG", "sealed PING")
    c.eq(u.ask(s.seal(ref.PUSH, 8, "raw-s|[hum:=1]", key=bytes(16))), b"ACK|ERR|auth_failed",
         "wrong key: the plaintext fallback")
    ghost = ref.seal(s.key, 0, ref.PUSH, 9, s.ah, ref.device_hash("ghost-01"), "ghost-01|[hum:=2]")
    c.eq(u.ask(ghost), b"ACK|ERR|auth_failed", "an envelope for an unknown device: auth_failed")
    c.eq(u.ask(ref.seal(s.key, 0, ref.PUSH, 10, bytes(8), s.dh, "raw-s|[hum:=3]")),
         b"ACK|ERR|auth_failed", "an envelope with a wrong auth hash: auth_failed")
    c.eq(values(sp, "raw-s", "hum"), [55], "nothing stored by the refused envelopes")

    # Refusals.
    c.eq(u.ask(f"PUSH|{ah}|ghost-01|[a:=1]"), b"ACK|ERR|device_not_found", "unknown device")
    a = u.ask("PUSH|0123456789abcdef|raw-p|[wrong:=1]")
    c.check(a is not None and a.startswith(b"ACK|ERR|"), f"wrong auth hash: {a!r}")
    c.eq(values(sp, "raw-p", "wrong"), [], "nothing stored for it")
    big = f"PUSH|{ah}|raw-p|[s=" + "x" * 17000 + "]"
    c.eq(u.ask(big), b"ACK|ERR|payload_too_large", "a frame over 16 KiB")
    c.eq(u.ask(bytes([0x00]) + bytes(16500)), b"ACK|ERR|envelope_too_large",
         "an envelope over 16,421 bytes")
    u.close()


def test_garbage(c, sp, plain):
    ah = plain["auth_hash"]
    g = Udp(sp, "127.0.0.2")
    for junk in (b"\x00\x01", b"hello", b"P", b"\xff" * 10):
        c.eq(g.ask(junk, timeout=1.0), None, f"garbage {junk!r}: no answer larger than it")
    a = g.ask(b"X" * 60, timeout=3.0)
    c.check(a is not None and a.startswith(b"ACK|ERR|") and len(a) <= 60,
            f"an error that fits the datagram is answered: {a!r}")
    # A flood from 127.0.0.2, and a device on 127.0.0.1 served meanwhile.
    good = Udp(sp)
    served = 0
    for i in range(300):
        g.send(b"GARBAGE-GARBAGE-GARBAGE-GARBAGE-GARBAGE-%d" % i)
        if i % 50 == 0:
            served += good.ask(f"PING|{ah}|raw-p") == b"ACK|PONG"
    c.eq(served, 6, "the good device is answered all through the flood")
    time.sleep(1.0)
    while g.recv(0.2) is not None:
        pass
    c.eq(g.ask(f"PING|{ah}|raw-p", timeout=1.5), None,
         "the flooding source is blocked: even a good frame from it is dropped")
    c.eq(good.ask(f"PING|{ah}|raw-p"), b"ACK|PONG", "while the other source is served")
    nat = Udp(sp, "127.0.0.2")
    c.eq(nat.ask(f"PING|{ah}|raw-p"), b"ACK|PONG",
         "a device behind the flooder's address (another port, as behind a NAT) is served")
    log = sp.read_log()
    c.eq(log.count("udp sender blocked peer=127.0.0.2:"), 1,
         "the block is logged once, not per datagram")
    g.close()
    good.close()
    nat.close()


def test_reflection(c, sp, plain):
    """A PULL's answer over UDP is at most max(512, 4 x the datagram): the
    auth hash is public, so a spoofed PULL must not reflect kilobytes."""
    ah = plain["auth_hash"]
    long = "y" * 150
    t = Tcp(sp)
    t.send(f"PUSH|{ah}|raw-p|[ra={long};rb={long};rc={long};rd={long}]\n")
    c.eq(t.line(), b"ACK|OK|4", "four long strings stored")
    u = Udp(sp, "127.0.0.6")
    pull = f"PULL|{ah}|raw-p|[ra;rb;rc;rd]"
    t.send(pull + "\n")
    whole = t.line()
    c.check(len(whole) > 600 and whole.startswith(b"ACK|OK|[ra="),
            f"over TCP the answer comes whole ({len(whole)} bytes)")
    c.eq(u.ask(pull), b"ACK|ERR|payload_too_large",
         f"over UDP a {len(whole)}-byte answer to {len(pull)} bytes: payload_too_large")
    c.eq(u.ask(f"PULL|!9|{ah}|raw-p|[ra;rb;rc;rd]"), b"ACK|!9|ERR|payload_too_large",
         "with the request's !N")
    a = u.ask(f"PULL|{ah}|raw-p|[ra]")
    c.check(a is not None and a.startswith(b"ACK|OK|[ra=") and len(a) <= 512,
            f"an answer under 512 bytes is sent ({len(a or b'')})")
    t.close()
    u.close()


def test_tcp_per_address(c, sp, plain):
    """40 connections from one address: past 32 they are closed at once; a
    device on another address is served meanwhile."""
    ah = plain["auth_hash"]
    socks = []
    for _ in range(40):
        s = socket.socket()
        s.bind(("127.0.0.7", 0))
        s.connect(("127.0.0.1", sp.tcp_port))
        socks.append(s)
    time.sleep(0.5)
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            closed += s.recv(1) == b""
        except BlockingIOError:
            pass
        except ConnectionResetError:
            closed += 1
    c.eq(closed, 8, "past 32 connections from one address: closed at once")
    t = Tcp(sp)
    t.send(f"PING|{ah}|raw-p\n")
    c.eq(t.line(), b"ACK|PONG", "a device on another address is served")
    t.close()
    for s in socks:
        s.close()


def test_tcp(c, sp, plain, sealed):
    ah = plain["auth_hash"]
    t = Tcp(sp)
    t.send(f"PING|!1|{ah}|raw-p\nPUSH|!2|{ah}|raw-p|[t2:=2]\nPULL|!3|{ah}|raw-p|[t2]\n")
    got = [t.line(), t.line(), t.line()]
    c.eq(got[:2], [b"ACK|!1|PONG", b"ACK|!2|OK|1"], "three frames in one write: in order")
    c.check(got[2].startswith(b"ACK|!3|OK|[t2:=2@"), f"the PULL after the PUSH: {got[2]!r}")
    frame = f"PUSH|{ah}|raw-p|[split:=9]\n".encode()
    for i in range(len(frame)):
        t.send(frame[i:i + 1])
        time.sleep(0.005)
    c.eq(t.line(), b"ACK|OK|1", "one frame over many writes")
    c.eq(values(sp, "raw-p", "split"), [9], "stored")

    s = Sealer(sealed)
    t.send(prefixed(s.seal(ref.PUSH, 20, "raw-s|[tcp:=3]")))
    c.eq(s.open(t.message()), "OK|1", "a length-prefixed envelope: a length-prefixed sealed OK")
    t.send(prefixed(s.seal(ref.PUSH, 21, "raw-s|[tcp:=4]", key=bytes(16))))
    c.eq(t.message(), b"ACK|ERR|auth_failed", "wrong key: the fallback, length-prefixed too")
    c.eq(values(sp, "raw-s", "tcp"), [3], "stored once, the refused one not")
    sp.cli("device", "cmd", "raw-s", "led=off")
    # A command for a device with a key is picked up once the daemon has sealed it.
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM commands WHERE serial = 'raw-s' AND "
                                "payload IS NOT NULL") == 1, what="the command sealed")
    t.send(prefixed(s.seal(ref.PING, 22, "raw-s")))
    c.eq([s.open(t.message()), s.open(t.message())], ["PONG", "CMD|led=off"],
         "a sealed PING with a command pending: PONG, then the sealed command, each prefixed")

    sp.cli("device", "cmd", "raw-p", "led=on")
    t.send(f"PING|{ah}|raw-p\n")
    c.eq([t.line(), t.line()], [b"ACK|PONG", b"ACK|CMD|led=on"], "TCP: answer, then the command")

    big = f"PUSH|{ah}|raw-p|[s=".encode() + b"x" * (300 * 1024) + b"]\n"
    t.send(big)
    c.eq(t.line(), b"ACK|ERR|payload_too_large", "a 300 KiB line: payload_too_large")
    t.send(f"PING|{ah}|raw-p\n")
    c.eq(t.line(), b"ACK|PONG", "and the connection goes on")
    t.send(f"PUSH|{ah}|ghost-01|[a:=1]\n")
    c.eq(t.line(), b"ACK|ERR|device_not_found", "unknown device over TCP")
    t.close()


def test_commit_before_answer(c, sp, plain):
    ah = plain["auth_hash"]
    con = sqlite3.connect(os.path.join(sp.data, "sealpipe.db"), isolation_level=None)
    u, t = Udp(sp), Tcp(sp)
    con.execute("BEGIN IMMEDIATE")
    start = time.monotonic()
    u.send(f"PUSH|!500|{ah}|raw-p|[locked_u:=1]")
    t.send(f"PUSH|!501|{ah}|raw-p|[locked_t:=1]\n")
    early = u.recv(HOLD_S - 0.5)
    c.eq(early, None, "UDP: no ACK while the database is locked")
    c.check(t.nothing_within(0.2), "TCP: no ACK while the database is locked")
    con.execute("COMMIT")
    con.close()
    a = u.recv(10)
    c.eq(a, b"ACK|!500|OK|1", "UDP: the ACK after the lock is released")
    c.eq(t.line(), b"ACK|!501|OK|1", "TCP: the ACK after the lock is released")
    c.check(time.monotonic() - start >= HOLD_S - 0.5, "not before")
    c.eq(values(sp, "raw-p", "locked_u") + values(sp, "raw-p", "locked_t"), [1, 1],
         "each stored once")
    u.close()
    t.close()


def test(c, tmp, started):
    sp = h.Sealpipe(tmp, net=True)
    plain = sp.add_device("raw-p", "--cipher", "none")
    sealed = sp.add_device("raw-s", "--cipher", "aes-128-ccm")
    sp.start()
    started.append(sp)
    log = sp.read_log()
    c.check(f"udp listen=127.0.0.1:{sp.udp_port}" in log and
            f"tcp listen=127.0.0.1:{sp.tcp_port}" in log, "one line per listener at start")
    test_udp(c, sp, plain, sealed)
    test_tcp(c, sp, plain, sealed)
    test_commit_before_answer(c, sp, plain)
    test_garbage(c, sp, plain)
    test_reflection(c, sp, plain)
    test_tcp_per_address(c, sp, plain)

    # A port in use: the daemon says which and exits.
    other = h.Sealpipe(os.path.join(tmp, "second"), extra=("--udp-port", str(sp.udp_port)))
    other.start(wait=False)
    try:
        other.proc.wait(timeout=20)
    except Exception:
        other.proc.kill()
    log = other.read_log()
    c.check(other.proc.returncode not in (0, None) and
            f"udp listen=127.0.0.1:{sp.udp_port}: Address already in use" in log,
            f"a taken UDP port stops the daemon with a clear message: {log[-400:]!r}")


if __name__ == "__main__":
    sys.exit(h.run(test))
