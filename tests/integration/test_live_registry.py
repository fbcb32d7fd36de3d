"""Registry changes made with the CLI while the daemon runs take effect at
once (the daemon caches devices and keys in memory and follows the registry's
generation): a new device is known, a rotated key opens envelopes while the
old one keeps working for key_grace only, and a removed device is unknown."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402



def test(c, tmp, started):
    sp = h.Sealpipe(tmp, extra=["--key-grace", "0"])
    a = sp.add_device("live-a", "--cipher", "chacha20-poly1305")
    sp.start()
    started.append(sp)

    def handled(n):
        h.wait_for(lambda: sp.count("SELECT count(*) n FROM data") +
                   sp.count("SELECT count(*) n FROM dead_letters") >= n, what=f"{n} handled")

    sp.pub("$tips/live-a/push", h.device_seal(a, a["key"], "[step:=1]", 1), creds=sp.creds(a))
    handled(1)  # live-a and its key are now cached

    b = sp.add_device("live-b", "--cipher", "chacha20-poly1305")
    sp.pub("$tips/live-b/push", h.device_seal(b, b["key"], "[step:=2]", 1), creds=sp.creds(b))
    handled(2)
    c.eq(sp.count("SELECT count(*) n FROM data WHERE device='live-b'"), 1,
         "a device added while running is known at once")

    new = json.loads(sp.cli("key", "rotate", "live-a", "--json").stdout)
    sp.pub("$tips/live-a/push", h.device_seal(a, new["key"], "[step:=3]", 2), creds=sp.creds(a))
    sp.pub("$tips/live-a/push", h.device_seal(a, a["key"], "[step:=4]", 3), creds=sp.creds(a))
    handled(4)
    c.eq([r["value"] for r in sp.rows("SELECT value FROM data WHERE device='live-a' ORDER BY id")],
         [1, 3], "the rotated key opens envelopes at once")
    c.eq([r["reason"] for r in sp.rows("SELECT reason FROM dead_letters")], ["auth_failed"],
         "the old key stops working (key_grace 0)")

    sp.cli("device", "rm", "live-b")
    # About the daemon's own device cache, which no device can reach any more
    # (the broker's plugin drops live-b's token and topics with the device, see
    # test_auth). The daemon's login stands in for a broker without the
    # plugin (--broker), where the topic names the device.
    sp.pub("$tips/live-b/push", h.device_seal(b, b["key"], "[step:=5]", 2), creds=sp.daemon_creds())
    handled(5)
    c.eq([r["reason"] for r in sp.rows("SELECT reason FROM dead_letters ORDER BY id")],
         ["auth_failed", "unknown_device"], "a removed device is unknown at once")


if __name__ == "__main__":
    sys.exit(h.run(test))
