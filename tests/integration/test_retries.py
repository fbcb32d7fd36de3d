"""Retries over UDP and TCP (issue #12, review findings): a device that
missed its answer sends the same bytes again; the retry is recognised and
answered again however much other traffic came in between (another profile's
device sends 9,000 messages first), and after the embedded broker died and
the daemon's MQTT session started afresh. A frame with "!N" and a TagoTiP/S
envelope, with Python sockets and the independent reference."""

import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402
import tagotips_ref as ref  # noqa: E402


def udp(sp, payload):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.sendto(payload, ("127.0.0.1", sp.udp_port))
        return s.recv(70000)


def flood(sp, dev, n):
    """n frames of dev over one TCP connection, every answer read."""
    lines = b"".join(f"PUSH|!{i + 1}|{dev['auth_hash']}|{dev['serial']}|[f:={i}]\n".encode()
                     for i in range(n))
    with socket.create_connection(("127.0.0.1", sp.tcp_port), timeout=30) as s:
        s.sendall(lines)
        got = b""
        while got.count(b"\n") < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    return got.count(b"|OK|")


def test(c, tmp, started):
    sp = h.Sealpipe(tmp, net=True)
    a = sp.add_device("ret-a", "--cipher", "chacha20-poly1305")
    sp.cli("profile", "add", "other")
    b = sp.add_device("ret-b", "--profile", "other", "--cipher", "none")
    sp.start()
    started.append(sp)
    frame = f"PUSH|!4242|{a['auth_hash']}|ret-a|[win:=1]".encode()
    key = bytes.fromhex(a["key"])
    env = ref.seal(key, ref.SUITE_BY_NAME["chacha20-poly1305"].id, ref.PUSH, 7,
                   bytes.fromhex(a["auth_hash"]), ref.device_hash("ret-a"), "ret-a|[sealed:=1]")

    def stored(var):
        return sp.count("SELECT count(*) n FROM data WHERE variable = ?", var)

    c.eq(udp(sp, frame), b"ACK|!4242|OK|1", "a frame with !N is stored")
    c.eq(ref.open_envelope(key, udp(sp, env)).inner, b"OK|1", "an envelope is stored")

    c.eq(flood(sp, b, 9000), 9000, "another profile's device sends 9,000 frames")
    c.eq(udp(sp, frame), b"ACK|!4242|OK|1", "the frame's retry after them is answered again")
    c.eq(ref.open_envelope(key, udp(sp, env)).inner, b"OK|1",
         "the envelope's too, not as a replay (invalid_seq)")
    c.eq((stored("win"), stored("sealed")), (1, 1), "and neither is stored twice")

    # The embedded broker dies before its first persistence snapshot: the
    # daemon's MQTT session is new when it comes back (its delivery window is
    # cleared), but the requests' retries are still known.
    log_at = len(sp.read_log())
    with open(os.path.join(sp.data, "broker", "mosquitto.pid")) as f:
        os.kill(int(f.read().strip()), signal.SIGKILL)
    h.wait_for(lambda: "session_present=0" in sp.read_log()[log_at:], timeout=20,
               what="a new MQTT session")
    c.eq(udp(sp, frame), b"ACK|!4242|OK|1", "after a new MQTT session, the retry is known")
    c.eq(ref.open_envelope(key, udp(sp, env)).inner, b"OK|1", "the envelope's too")
    c.eq((stored("win"), stored("sealed")), (1, 1), "still stored once each")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters"), 0, "no replay dead letter")

    # A captured request replayed by someone else is a retry: it gets what the
    # request took the first time, and takes none of the device's new
    # commands (review finding 7).
    suite = ref.SUITE_BY_NAME["chacha20-poly1305"].id
    ping = ref.seal(key, suite, ref.PING, 8, bytes.fromhex(a["auth_hash"]),
                    ref.device_hash("ret-a"), "ret-a")
    c.eq(ref.open_envelope(key, udp(sp, ping)).inner, b"PONG", "a sealed PING")
    sp.cli("device", "cmd", "ret-a", "unlock")

    def answers(payload):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(1)
            s.sendto(payload, ("127.0.0.1", sp.udp_port))
            got = []
            try:
                while True:
                    got.append(ref.open_envelope(key, s.recv(70000)).inner)
            except socket.timeout:
                return got

    c.eq(answers(ping), [b"PONG"], "the replayed PING takes no command")
    fresh = ref.seal(key, suite, ref.PING, 9, bytes.fromhex(a["auth_hash"]),
                     ref.device_hash("ret-a"), "ret-a")
    c.eq(answers(fresh), [b"PONG", b"CMD|unlock"], "the device's next PING gets it")
    c.eq(answers(fresh), [b"PONG", b"CMD|unlock"], "and a retry of that one gets it again")

    # Across a restart of the daemon (SIGKILL: nothing flushed on the way out).
    sp.stop(signal.SIGKILL)
    sp.start()
    c.eq(udp(sp, frame), b"ACK|!4242|OK|1", "after a crash and restart, the retry is known")
    c.eq((stored("win"), stored("sealed")), (1, 1), "stored once")


if __name__ == "__main__":
    sys.exit(h.run(test))
