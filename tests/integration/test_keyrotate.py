"""Key rotation and downlink (issue #12, point 8): after `sealpipe key rotate`,
a device that still seals with its old key (inside key_grace) gets its
commands sealed with that old key, which it can open, and not with the new
one it does not have yet; once it uses the new key, commands follow. The
choice survives a restart. Envelopes are opened with the independent
reference (tagotips_ref.py)."""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402
import tagotips_ref as ref  # noqa: E402


def seal(dev, key, body, counter):
    return subprocess.run([h.DEVICE, "seal", "--serial", dev["serial"], "--key", key,
                           "--cipher", dev["cipher"], "--auth-hash", dev["auth_hash"],
                           "--counter", str(counter), body],
                          capture_output=True, check=True).stdout


def opens_with(envelope, key_hex):
    try:
        return ref.open_envelope(bytes.fromhex(key_hex), envelope).inner.decode()
    except ref.EnvelopeError:
        return None


def test(c, tmp, started):
    sp = h.Sealpipe(tmp)
    dev = sp.add_device("rot-01", "--cipher", "chacha20-poly1305")
    old = dev["key"]
    sp.start()
    started.append(sp)

    def push(key, body, counter, stored):
        sp.pub("$tips/rot-01/push", seal(dev, key, body, counter), creds=sp.creds(dev))
        h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE device='rot-01'") == stored,
                   what=f"{body} stored")

    def command(text):
        """Queues a command and returns the envelope the daemon sealed for it."""
        sp.cli("device", "cmd", "rot-01", text)
        h.wait_for(lambda: sp.count("SELECT count(*) n FROM commands WHERE command = ? AND "
                                    "payload IS NOT NULL", text) == 1,
                   what=f"command {text} sealed")
        return sp.rows("SELECT payload FROM commands WHERE command = ?", text)[0]["payload"]

    push(old, "[step:=1]", 1, 1)
    new = json.loads(sp.cli("key", "rotate", "rot-01", "--json").stdout)["key"]
    c.check(new != old, "key rotate gives a new key")

    # The device has not heard of the new key yet: it seals with the old one.
    push(old, "[step:=2]", 2, 2)
    env = command("first")
    c.eq(opens_with(env, old), "CMD|first", "a command after a rotation, for a device still on "
         "its old key, is sealed with the old key")
    c.eq(opens_with(env, new), None, "and the new key does not open it")

    # Across a restart: the daemon remembers which key the device uses.
    sp.stop()
    sp.start()
    env = command("second")
    c.eq(opens_with(env, old), "CMD|second", "after a restart, still the device's key")

    # The device moves to the new key: commands follow it.
    push(new, "[step:=3]", 3, 3)
    env = command("third")
    c.eq(opens_with(env, new), "CMD|third", "once the device uses the new key, commands are "
         "sealed with it")
    c.eq(opens_with(env, old), None, "and the old key no longer opens them")


if __name__ == "__main__":
    sys.exit(h.run(test))
