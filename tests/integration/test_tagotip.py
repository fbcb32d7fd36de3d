"""TagoTiP's MQTT binding both ways (issue #4, TagoTipServers.md §3,
TagoTiPs.md §9): answers on $tip/{serial}/ack with the !N echo, PULL answered
from the bucket, the error codes of TagoTiP.md §9.2, sealed answers on
$tips/{serial}/ack (OK, PONG, ERR|invalid_seq) and plaintext fallbacks
(auth_failed, unsupported_version, invalid_method, envelope_too_large), a
derived key (TagoTiPs.md §2.4) computed here independently, and commands from
`sealpipe device cmd`, sealed with nonce seeds that keep growing across a
daemon restart; Revision D locations stored and pulled back. Devices are
played by sealpipe-device (pull, listen) and by paho with PyNaCl."""

import hashlib
import hmac
import os
import queue
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402


def chacha(key_hex, auth_hex, serial, inner, counter, method=0, flags=None):
    """Seals with PyNaCl (TagoTiPs.md §5-§6), not with sealpipe's SDK."""
    from nacl.bindings import crypto_aead_chacha20poly1305_ietf_encrypt as enc
    flags = (4 << 5) | method if flags is None else flags
    dh = hashlib.sha256(serial.encode()).digest()[:8]
    header = bytes([flags]) + counter.to_bytes(4, "big") + bytes.fromhex(auth_hex) + dh
    nonce = bytes([flags]) + b"\0\0\0" + dh[:4] + counter.to_bytes(4, "big")
    return header + enc(inner.encode(), header, nonce, bytes.fromhex(key_hex))


def unseal(env, key_hex, serial):
    """Opens a ChaCha20-Poly1305 ACK envelope: (method, counter, inner)."""
    from nacl.bindings import crypto_aead_chacha20poly1305_ietf_decrypt as dec
    header = env[:21]
    dh = hashlib.sha256(serial.encode()).digest()[:8]
    assert header[13:21] == dh, "device hash of the answer"
    nonce = bytes([header[0]]) + b"\0\0\0" + dh[:4] + header[1:5]
    inner = dec(env[21:], header, nonce, bytes.fromhex(key_hex)).decode()
    return header[0] & 7, int.from_bytes(header[1:5], "big"), inner


class Device:
    """A paho client subscribed to one device's ack topics, logged in with
    creds (default: that device's own token)."""

    def __init__(self, sp, serial, creds=None):
        self.got = queue.Queue()
        self.c = sp.client(creds or sp.creds(serial), client_id="dev-" + serial)
        self.c.on_message = lambda cl, ud, m: self.got.put((m.topic, m.payload))
        ready = queue.Queue()
        self.c.on_subscribe = lambda *a: ready.put(True)
        self.c.connect("127.0.0.1", sp.port)
        self.c.loop_start()
        self.c.subscribe([(f"$tip/{serial}/ack", 1), (f"$tips/{serial}/ack", 1)])
        ready.get(timeout=10)

    def ask(self, topic, payload, timeout=10):
        self.c.publish(topic, payload, qos=1)
        return self.got.get(timeout=timeout)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


ANALYSES = os.path.join(os.path.dirname(__file__), "analyses")


def test(c, tmp, started):
    sp = h.Sealpipe(tmp, analyses=ANALYSES)
    plain = sp.add_device("plain-01", "--cipher", "none")
    sealed = sp.add_device("sealed-01", "--cipher", "chacha20-poly1305")
    # Joins the default profile, created above: its token is needed to derive.
    derived = sp.add_device("derived-01", "--cipher", "aes-128-ccm", "--derive-key",
                            "--token", plain["profile_token"])
    sp.add_device("strict-01", "--cipher", "chacha20-poly1305", "--require-encryption")
    twin = sp.add_device("twin-01", "--cipher", "chacha20-poly1305")
    # A device-hash collision (TagoTiPs.md §2.2), made by hand: twin-01's
    # stored hash becomes sealed-01's, so both keys are candidates.
    con = sp.db()
    con.execute("UPDATE devices SET device_hash = (SELECT device_hash FROM devices WHERE "
                "serial = 'sealed-01') WHERE serial = 'twin-01'")
    con.commit()
    con.close()
    sp.start()
    started.append(sp)

    want = hmac.new(plain["profile_token"][2:].encode(), b"derived-01",
                    hashlib.sha256).digest()[:16].hex()
    c.eq(derived["key"], want, "derived key = HMAC-SHA256(token hex, serial)[:16] (TagoTiPs 2.4)")
    r = sp.cli("device", "add", "derived-02", "--derive-key", "--token",
               "at" + "0" * 32, check=False)
    c.check(r.returncode != 0 and "authorization token" in r.stderr,
            "a token that is not the profile's is refused for derivation")

    # --- plain binding: !N echo, PULL, errors --------------------------------
    d = Device(sp, "plain-01")
    c.eq(d.ask("$tip/plain-01/push", b"!42|[temp:=21.5#C;ok?=true;pos@=1.5,2.5]"),
         ("$tip/plain-01/ack", b"!42|OK|3"), "PUSH answered OK|3 with !42 echoed")
    c.eq(d.ask("$tip/plain-01/push", b"[temp:=22#C{src=dht22}]"),
         ("$tip/plain-01/ack", b"OK|1"), "PUSH without a counter: OK|1")
    t, p = d.ask("$tip/plain-01/pull", b"!7|temp,nothing,ok,pos")
    c.check(p.startswith(b"!7|OK|[temp:=22#C@") and b"{src=dht22};ok?=true@" in p
            and b";pos@=1.5,2.5@" in p and b"nothing" not in p,
            f"PULL answers the last values in TagoTiP syntax, unknown ones left out: {p!r}")
    # Revision C's body-level order (@TIMESTAMP ^GROUP), and B's, both stored alike.
    for body, group in ((b"@1694567890000^rev_c[rc:=1]", "rev_c"),
                        (b"^rev_b@1694567890000[rb:=2]", "rev_b")):
        c.eq(d.ask("$tip/plain-01/push", body), ("$tip/plain-01/ack", b"OK|1"),
             f"body-level modifiers {body!r} accepted")
        row = sp.rows("SELECT time, group_id FROM data WHERE group_id = ?", group)
        c.eq([(r["time"], r["group_id"]) for r in row], [(1694567890000, group)],
             f"{group}: stored once with the body's group and time")
    # Revision D (TagoTiP.md §6.2-§6.4, §7.2): a location suffix and a
    # body-level location, stored in lat/lng/alt like the @= operator's, and
    # PULL carries them back in Revision D syntax.
    body = (b"!43|@=39.74,-104.99@1694567890000^rev_d{fw=2.1}[speed:=10#km/h@=39.75,-105.00,"
            b"1600;label=north;door?=true;here@=1.5,2.5,3;depth:=-2@=-33.5,151.25]")
    c.eq(d.ask("$tip/plain-01/push", body), ("$tip/plain-01/ack", b"!43|OK|5"),
         "a Revision D body with location suffixes and a body-level location: OK|5")
    rows = sp.rows("SELECT variable, value, lat, lng, alt, time, group_id FROM data "
                   "WHERE group_id = 'rev_d' ORDER BY variable")
    c.eq([(r["variable"], r["lat"], r["lng"], r["alt"], r["time"]) for r in rows],
         [("depth", -33.5, 151.25, None, 1694567890000),
          ("door", 39.74, -104.99, None, 1694567890000),
          ("here", 1.5, 2.5, 3.0, 1694567890000),
          ("label", 39.74, -104.99, None, 1694567890000),
          ("speed", 39.75, -105.0, 1600.0, 1694567890000)],
         "own suffix wins, the body's location reaches the others, the @= value stays")
    c.eq([r["value"] for r in rows], [-2, 1, None, "north", 10], "values stored beside them")
    c.eq(d.ask("$tip/plain-01/pull", b"!44|speed,label,door,here,depth"),
         ("$tip/plain-01/ack",
          b"!44|OK|[speed:=10#km/h@=39.75,-105,1600@1694567890000^rev_d{fw=2.1};"
          b"label=north@=39.74,-104.99@1694567890000^rev_d{fw=2.1};"
          b"door?=true@=39.74,-104.99@1694567890000^rev_d{fw=2.1};"
          b"here@=1.5,2.5,3@1694567890000^rev_d{fw=2.1};"
          b"depth:=-2@=-33.5,151.25@1694567890000^rev_d{fw=2.1}]"),
         "PULL answers in Revision D syntax: @= suffix after #unit, @= operator kept")
    n = sp.count("SELECT count(*) n FROM data")
    for bad in (b"[speed:=10@=91,0]", b"@=0,181[speed:=10]", b"[pos@=1,2@=3,4]",
                b"@5@=1,2[speed:=10]", b"[speed:=10@1@=1,2]"):
        c.eq(d.ask("$tip/plain-01/push", bad)[1], b"ERR|invalid_payload",
             f"refused whole: {bad!r}")
    c.eq(sp.count("SELECT count(*) n FROM data"), n, "nothing of the refused bodies stored")
    c.eq(d.ask("$tip/plain-01/pull", b"nothing"), ("$tip/plain-01/ack", b"ERR|variable_not_found"),
         "PULL of nothing stored: ERR|variable_not_found")
    c.eq(d.ask("$tip/plain-01/push", b"!5|[temp:=01]")[1], b"!5|ERR|invalid_payload",
         "a broken body: ERR|invalid_payload, counter echoed")
    c.eq(d.ask("$tip/plain-01/pull", b"Temp")[1], b"ERR|invalid_payload", "a bad PULL list")
    d.close()
    # No device can log in as ghost-01; the profile login (auth-hash halves)
    # reaches a serial no device has, and is answered (TagoTiP §4.3).
    d = Device(sp, "ghost-01", creds=sp.profile_creds(plain))
    c.eq(d.ask("$tip/ghost-01/push", b"[a:=1]")[1], b"ERR|device_not_found", "unknown serial")
    d.close()
    d = Device(sp, "strict-01")
    c.eq(d.ask("$tip/strict-01/push", b"[a:=1]")[1], b"ERR|auth_failed",
         "plaintext from a device that requires TagoTiP/S")
    d.close()

    # sealpipe-device pull picks its own answer by !N, even with others around.
    r = sp.device("pull", "--serial", "plain-01", "temp", creds=sp.creds(plain))
    c.check(r.returncode == 0 and r.stdout.startswith("ACK|!") and "|OK|[temp:=22#C@" in r.stdout,
            f"sealpipe-device pull: {r.stdout!r} {r.stderr!r}")
    r = sp.device("pull", "--serial", "plain-01", "nothing", creds=sp.creds(plain), check=False)
    c.check(r.returncode == 1 and "ERR|variable_not_found" in r.stdout,
            "sealpipe-device pull exits 1 on ERR")

    # --- TagoTiP/S: sealed answers and plaintext fallbacks -------------------
    k, ah = sealed["key"], sealed["auth_hash"]
    d = Device(sp, "sealed-01")
    seeds = []

    def sealed_answer(inner, counter, method=0, topic="$tips/sealed-01/push"):
        t, env = d.ask(topic, chacha(k, ah, "sealed-01", inner, counter, method))
        c.eq(t, "$tips/sealed-01/ack", "sealed answers on $tips/{serial}/ack")
        m, seed, text = unseal(env, k, "sealed-01")
        c.eq(env[0], (4 << 5) | 3, "answer flags: same suite, method ACK")
        seeds.append(seed)
        return text

    c.eq(sealed_answer("sealed-01|[v:=1;w=x\\;y]", 10), "OK|2", "sealed PUSH: OK|2")
    c.eq(sealed_answer("sealed-01|[v:=2]", 10), "ERR|invalid_seq", "replayed counter")
    c.eq(sealed_answer("sealed-01|[v:=", 11), "ERR|invalid_payload", "bad body, sealed answer")
    c.eq(sealed_answer("sealed-01", 12, method=2), "PONG", "PING envelope: PONG")
    c.eq(sealed_answer("sealed-01|[v;w;z]", 13, method=1, topic="$tips/sealed-01/pull")[:5],
         "OK|[v", "sealed PULL answered")
    text = sealed_answer("sealed-01|[w]", 14, method=1, topic="$tips/sealed-01/pull")
    c.check(text.startswith("OK|[w=x\\;y@"), f"escapes survive the round trip: {text}")
    c.check(seeds == sorted(set(seeds)), f"answer nonce seeds increase: {seeds}")

    def fallback(payload, topic="$tips/sealed-01/push"):
        return d.ask(topic, payload)[1]

    # twin-01 seals with the colliding hash: trial decryption finds its key.
    dh = hashlib.sha256(b"sealed-01").digest()[:8]
    env = chacha(twin["key"], ah, "sealed-01", "twin-01|[t:=7]", 1)
    tw = Device(sp, "twin-01")  # twin-01 sends it, on its own topic
    t, ans = tw.ask("$tips/twin-01/push", env)
    tw.close()
    c.check(t == "$tips/twin-01/ack" and ans[13:21] == dh and
            unseal(ans, twin["key"], "sealed-01")[2] == "OK|1",
            "a device-hash collision is resolved by trial decryption")
    c.eq(sp.rows("SELECT value FROM data WHERE device = 'twin-01' AND variable = 't'"),
         [{"value": 7}], "the colliding device's record is its own")

    c.eq(fallback(chacha("00" * 32, ah, "sealed-01", "sealed-01|[v:=1]", 20)),
         b"ACK|ERR|auth_failed", "wrong key: plaintext ACK|ERR|auth_failed")
    env = bytearray(chacha(k, ah, "sealed-01", "sealed-01|[v:=1]", 21))
    env[0] |= 1 << 3
    c.eq(fallback(bytes(env)), b"ACK|ERR|unsupported_version", "version 1")
    c.eq(fallback(bytes([0x41]) + bytes(60)), b"ACK|ERR|invalid_method", "reserved flags 0x41")
    c.eq(fallback(bytes([0xa0]) + bytes(60)), b"ACK|ERR|unsupported_cipher", "cipher 5")
    c.eq(fallback(bytes([0x80]) + bytes(16421 + 1)), b"ACK|ERR|envelope_too_large",
         "an envelope over 16,421 bytes")
    c.eq(fallback(chacha(k, ah, "sealed-01", "sealed-01|[v:=1]", 22, method=0),
                  topic="$tips/sealed-01/pull"), b"ACK|ERR|invalid_method",
         "a PUSH envelope on the pull topic")

    # --- commands from an analysis: tagotip.command ---------------------------
    t, env = d.ask("cmdreq/sealed-01", b"led=on")
    m, seed, text = unseal(env, k, "sealed-01")
    c.eq((t, m, text), ("$tips/sealed-01/ack", 3, "CMD|led=on"),
         "tagotip.command seals CMD|led=on for the device")
    seeds.append(seed)
    c.eq(d.ask("cmdreq/sealed-01", b"plain:reboot"), ("$tip/sealed-01/ack", b"CMD|reboot"),
         "tagotip.command{plain = true}")
    d.c.publish("cmdreq/sealed-01", b"two words", qos=1)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters WHERE reason = "
                                "'analysis_error' AND detail LIKE '%without spaces%'") == 1,
               what="a bad command fails the analysis")
    d.close()

    # --- a derived key works like any other (AES-128-CCM via the device CLI) --
    r = sp.device("pull", "--serial", "derived-01", "--encrypt", "--key", want,
                  "--cipher", "aes-128-ccm", "--auth-hash", derived["auth_hash"],
                  "--counter", "1", "nothing", creds=sp.creds(derived), check=False)
    c.check(r.returncode == 1 and r.stdout.strip() == "ACK|ERR|variable_not_found",
            f"sealed PULL with a derived AES-128-CCM key: {r.stdout!r} {r.stderr!r}")

    # --- commands: sealed, nonce seeds persisted across a restart -------------
    def listen(count):
        return subprocess.Popen(
            [h.DEVICE, "listen", "--port", str(sp.port), "--serial", "sealed-01", "--encrypt",
             "--key", k, "--cipher", "chacha20-poly1305", "--auth-hash", ah, "--count",
             str(count), "--timeout", "20", "--username", "Token", "--password",
             sealed["token"]],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def heard(proc):
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        return out.splitlines(), err

    first = listen(2)
    time.sleep(0.5)
    sp.cli("device", "cmd", "sealed-01", "reboot")
    sp.cli("device", "cmd", "sealed-01", "ota=https://example.com/v2.1.bin")
    r = sp.cli("device", "cmd", "sealed-01", "two words", check=False)
    c.check(r.returncode != 0 and "without spaces" in r.stderr, "a command with a space refused")
    r = sp.cli("device", "cmd", "nobody-01", "reboot", check=False)
    c.check(r.returncode != 0 and "unknown device" in r.stderr, "a command for nobody refused")
    out, err = heard(first)
    c.eq(out, ["ACK|CMD|reboot", "ACK|CMD|ota=https://example.com/v2.1.bin"],
         f"sealpipe-device listen prints the sealed commands ({err})")
    # Queued while the daemon is down (killed: its broker stays up, and so does
    # the listener): sent when it is back.
    second = listen(1)
    time.sleep(0.5)
    sp.stop(signal.SIGKILL)
    sp.cli("device", "cmd", "sealed-01", "queued_while_down")
    sp.start()
    out, err = heard(second)
    c.eq(out, ["ACK|CMD|queued_while_down"], f"a command queued while down is sent ({err})")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM commands WHERE sent_at IS NULL") == 0,
               what="every command sent")
    rows = sp.rows("SELECT payload FROM commands ORDER BY id")
    cmd_seeds = [unseal(r["payload"], k, "sealed-01")[1] for r in rows]
    c.check(len(cmd_seeds) == 3 and cmd_seeds == sorted(set(cmd_seeds))
            and cmd_seeds[0] > max(seeds),
            f"command nonce seeds continue after the answers' and across a restart: "
            f"{seeds} then {cmd_seeds}")


if __name__ == "__main__":
    sys.exit(h.run(test))
