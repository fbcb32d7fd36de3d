"""One device, every transport (issue #12, "done when"): the same reading
pushed over MQTT, HTTP, UDP and TCP, plain and sealed, with the device tool
(sealpipe-device --transport), is stored once per push with the same values,
and PULL over each transport reads it back; a PING over HTTP, UDP and TCP is
answered PONG; a command queued for the device is picked up once, by the next
request over HTTP, UDP or TCP. Runs the README's copy-paste examples."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

TRANSPORTS = ("mqtt", "http", "udp", "tcp")


def test(c, tmp, started):
    sp = h.Sealpipe(tmp, net=True)
    dev = sp.add_device("multi-01", "--cipher", "chacha20-poly1305")
    sp.start()
    started.append(sp)
    env = dict(os.environ, XDG_STATE_HOME=os.path.join(tmp, "state"))
    ports = {"mqtt": sp.port, "http": sp.http_port, "udp": sp.udp_port, "tcp": sp.tcp_port}

    def tool(cmd, transport, *args, sealed=False):
        login = (["--username", "Token", "--password", dev["token"]] if transport == "mqtt"
                 else ["--auth-hash", dev["auth_hash"]])
        crypto = (["--encrypt", "--key", dev["key"], "--cipher", dev["cipher"],
                   "--auth-hash", dev["auth_hash"]] if sealed else [])
        if sealed and transport != "mqtt":
            login = []
        argv = [h.DEVICE, cmd, "--transport", transport, "--serial", "multi-01",
                "--port", str(ports[transport]), "--timeout", "10", *login, *crypto, *args]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)

    stored = 0
    for t in TRANSPORTS:
        for sealed in (False, True):
            how = f"{t} {'sealed' if sealed else 'plain'}"
            r = tool("push", t, "[temp:=21.5#C;via:=\"x\"]", sealed=sealed)
            c.check(r.returncode == 0, f"push over {how}: {r.stdout!r} {r.stderr!r}")
            stored += 2
            h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE device='multi-01'")
                       == stored, what=f"push over {how} stored")
            r = tool("pull", t, "temp", sealed=sealed)
            c.check(r.returncode == 0 and "temp:=21.5#C@" in r.stdout,
                    f"pull over {how} reads it back: {r.stdout!r} {r.stderr!r}")

    rows = sp.rows("SELECT variable, value, unit FROM data WHERE device='multi-01' "
                   "AND variable='temp'")
    c.eq({(r["variable"], r["value"], r["unit"]) for r in rows}, {("temp", 21.5, "C")},
         "every transport stores the same reading")
    c.eq(len(rows), 8, "each of the 8 pushes stored once")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters"), 0, "no dead letters")

    for t in TRANSPORTS[1:]:
        r = tool("ping", t)
        c.check(r.returncode == 0 and "PONG" in r.stdout, f"ping over {t}: {r.stdout!r}")

    sp.cli("device", "cmd", "multi-01", "reboot")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM commands WHERE sent_at IS NOT NULL")
               == 1, what="the command published on MQTT")
    r = tool("ping", "udp")
    c.check("ACK|CMD|reboot" in r.stdout, f"the next UDP request picks the command up: "
            f"{r.stdout!r} {r.stderr!r}")
    r = tool("ping", "http")
    c.check("CMD" not in r.stdout, f"and only once: {r.stdout!r}")


if __name__ == "__main__":
    sys.exit(h.run(test))
