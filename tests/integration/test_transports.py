"""One device, every transport (issue #12, "done when"): the same reading
pushed over MQTT, HTTP, UDP and TCP, plain and sealed, with the device tool
(sealpipe-device --transport), is stored once per push with the same values,
and PULL over each transport reads it back; a PING over HTTP, UDP and TCP is
answered PONG; a command queued for the device is picked up once, by the next
request over HTTP, UDP or TCP of its kind (plain or sealed)."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

TRANSPORTS = ("mqtt", "http", "udp", "tcp")


def test(c, tmp, started):
    sp = h.Sealpipe(tmp, net=True)
    dev = sp.add_device("multi-01", "--cipher", "chacha20-poly1305")
    sp.cli("profile", "add", "elsewhere")
    other = sp.add_device("other-01", "--profile", "elsewhere", "--cipher", "none")
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
            r = tool("push", t, "[temp:=21.5#C;via=x]", sealed=sealed)
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

    # A device with a key gets its commands sealed; --plain ones go to plain requests.
    sp.cli("device", "cmd", "multi-01", "reboot", "--plain")
    sp.cli("device", "cmd", "multi-01", "sealed_one")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM commands WHERE sent_at IS NOT NULL")
               == 2, what="the commands published on MQTT")
    r = tool("ping", "udp")
    c.check("ACK|CMD|reboot" in r.stdout and "sealed_one" not in r.stdout,
            f"the next plain UDP request picks the plain command up: {r.stdout!r} {r.stderr!r}")
    r = tool("ping", "http")
    c.check("CMD" not in r.stdout, f"and only once: {r.stdout!r}")
    r = tool("ping", "tcp", sealed=True)
    c.check("ACK|CMD|sealed_one" in r.stdout, f"a sealed TCP request picks the sealed command "
            f"up: {r.stdout!r} {r.stderr!r}")
    c.eq(sp.count("SELECT count(*) n FROM command_pickups"), 2, "both picked up, once each")
    # A request right after `device cmd`, before the daemon sealed the command
    # between batches: sealed then, the same envelope MQTT then publishes.
    sp.cli("device", "cmd", "multi-01", "at_once")
    r = tool("ping", "udp", sealed=True)
    c.check("ACK|CMD|at_once" in r.stdout, f"a sealed command queued a moment ago is picked up: "
            f"{r.stdout!r} {r.stderr!r}")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM commands WHERE sent_at IS NOT NULL")
               == 3, what="and published on MQTT too")

    # Refused before the sender proved who it is: answered, counted, but no
    # one's dead letter (an open port must not let anyone fill the table).
    # After that, a failure is the device's dead letter as on MQTT.
    import http.client
    import socket
    dead = sp.count("SELECT count(*) n FROM dead_letters")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.settimeout(5)
        u.sendto(b"PUSH|!1|0000000000000000|multi-01|[temp:=1]", ("127.0.0.1", sp.udp_port))
        c.eq(u.recv(512), b"ACK|!1|ERR|invalid_token", "a wrong auth hash over UDP is refused")
        u.sendto(b"PUSH|!2|" + dev["auth_hash"].encode() + b"|nobody-77|[temp:=1]",
                 ("127.0.0.1", sp.udp_port))
        c.eq(u.recv(512), b"ACK|!2|ERR|device_not_found", "an unknown serial over UDP")
        u.sendto(b"PUSH|!9|" + dev["auth_hash"].encode() + b"|multi-01|[bad",
                 ("127.0.0.1", sp.udp_port))
        c.eq(u.recv(512), b"ACK|!9|ERR|invalid_payload", "an ERR answer echoes the !N (§4.2)")
        # Profile first (TagoTiP.md §4.3): a hash no profile has says nothing
        # about serials; another profile's device is not found in this one.
        u.sendto(b"PUSH|!3|0000000000000000|nobody-77|[temp:=1]", ("127.0.0.1", sp.udp_port))
        c.eq(u.recv(512), b"ACK|!3|ERR|invalid_token",
             "an unknown serial with a hash no profile has: invalid_token, not device_not_found")
        u.sendto(b"PUSH|!4|" + other["auth_hash"].encode() + b"|multi-01|[temp:=1]",
                 ("127.0.0.1", sp.udp_port))
        c.eq(u.recv(512), b"ACK|!4|ERR|device_not_found",
             "another profile's hash for this device: device_not_found")
    conn = http.client.HTTPConnection("127.0.0.1", sp.http_port, timeout=10)
    conn.request("POST", "/v1/tip/multi-01", body="[temp:=1]",
                 headers={"Authorization": "TagoTiP ffffffffffffffff"})
    resp = conn.getresponse()
    c.eq((resp.status, resp.read()), (401, b"invalid_token"), "a wrong hash over HTTP is 401")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters"), dead,
         "refused requests leave no dead letter")
    conn.request("POST", "/v1/tip/multi-01", body="[temp:=]",
                 headers={"Authorization": "TagoTiP " + dev["auth_hash"]})
    resp = conn.getresponse()
    c.eq((resp.status, resp.read()), (400, b"invalid_payload"), "a bad body from the device")
    c.eq([r["reason"] for r in sp.rows("SELECT reason FROM dead_letters WHERE device = "
                                       "'multi-01'")], ["invalid_body"],
         "is its dead letter, as over MQTT")

    # A retried POST: the same timestamped readings again are recognised and
    # answered again; readings without a time may be new ones, stored again.
    def post(body):
        conn.request("POST", "/v1/tip/multi-01", body=body,
                     headers={"Authorization": "TagoTiP " + dev["auth_hash"]})
        resp = conn.getresponse()
        return resp.status, resp.read()

    for _ in range(2):
        c.eq(post("@1700000000000[retry_t:=1;retry_u:=2@1700000000001]"), (200, b"2"),
             "a timestamped POST is answered, the second time too")
        c.eq(post("[again:=1]"), (200, b"1"), "an untimestamped POST is answered")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable LIKE 'retry_%'"), 2,
         "the timestamped POST sent twice is stored once")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable = 'again'"), 2,
         "the untimestamped one twice")
    conn.close()
    sp.stop()
    c.check(" refused=6 " in sp.read_log(), "the refusals are counted in the stats line")


def readme_lines():
    """The README's copy-paste block of this section, continuation lines joined."""
    with open(os.path.join(h.SOURCE, "README.md")) as f:
        text = f.read()
    block = text.split("Copy-paste, with `sensor-01`", 1)[1].split("```sh\n", 1)[1]
    block = block.split("```", 1)[0].replace("\\\n", " ")
    return [line for line in block.splitlines() if line.strip()]


def test_readme(c, tmp, started):
    """The README's examples, as written, against a daemon whose sensor-01 has
    the README's auth hash and key swapped for its own, and its ports."""
    import shlex
    sp = h.Sealpipe(tmp, net=True)
    dev = sp.add_device("sensor-01", "--cipher", "chacha20-poly1305")
    sp.start()
    started.append(sp)
    env = dict(os.environ, XDG_STATE_HOME=os.path.join(tmp, "state"))
    for line in readme_lines():
        line = (line.replace("b9e0815b84a9cc01", dev["auth_hash"])
                .replace("a547f40ae6f69332a9451665c022a6a9bfaba23b8c76420a8ab6b8b317f260ed",
                         dev["key"])
                .replace(":8080/", f":{sp.http_port}/"))
        argv = shlex.split(line)
        if argv[0] == "sealpipe-device":
            t = argv[argv.index("--transport") + 1]
            argv = [h.DEVICE, *argv[1:], "--port",
                    str({"http": sp.http_port, "udp": sp.udp_port, "tcp": sp.tcp_port}[t])]
        if argv[0] == "curl":
            argv.insert(1, "--fail")  # an HTTP error status fails the line
        r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
        c.check(r.returncode == 0 and "ERR" not in r.stdout,
                f"README: {line[:60]}...: {r.stdout.strip()!r} {r.stderr.strip()[:200]!r}")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE device='sensor-01'"), 3,
         "the README's three pushes are stored")


def both(c, tmp, started):
    test(c, os.path.join(tmp, "one"), started)
    test_readme(c, os.path.join(tmp, "readme"), started)


if __name__ == "__main__":
    sys.exit(h.run(both))
