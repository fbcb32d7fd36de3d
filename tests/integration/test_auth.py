"""The broker side (issue #5): the embedded mosquitto with sealpipe_auth.so,
driven by real clients. The auth matrix over MQTT 3.1, 3.1.1 and 5
(mosquitto_pub/mosquitto_sub), the ACL matrix, publisher identity (a message
on any topic lands in its publisher's bucket, a forged identity property is
ignored), revocation and expiry disconnecting within a second (measured with
paho), and TLS on its own port with CA verification."""

import json
import os
import queue
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

ANALYSES = os.path.join(os.path.dirname(__file__), "analyses")
VERSIONS = ["mqttv31", "mqttv311", "mqttv5"]


def mqtt_run(tool, port, *args, timeout=10):
    r = subprocess.run([tool, "-h", "127.0.0.1", "-p", str(port), *args],
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def refused(rc, out, version):
    """CONNACK refusal: 5 'not authorised' (3.x) or 0x87 'Not authorized' (5)."""
    want = "Not authorized" if version == "mqttv5" else "not authorised"
    return rc != 0 and want in out


def paho(sp, client_id, user, password, version=None, will=None):
    """A connected paho client; returns (client, disconnected-queue, CONNACK code)."""
    import paho.mqtt.client as mqtt
    cl = mqtt.Client(client_id=client_id, protocol=version or mqtt.MQTTv311)
    cl.username_pw_set(user, password)
    if will:
        cl.will_set(will[0], will[1], qos=1)
    gone, up = queue.Queue(), queue.Queue()
    cl.on_connect = lambda c, u, f, rc, *a: up.put(rc)
    cl.on_disconnect = lambda c, u, rc, *a: gone.put(time.monotonic())
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    rc = up.get(timeout=10)
    return cl, gone, rc


def make_tls(tmp):
    """A CA and a server certificate for 127.0.0.1, and an unrelated CA."""
    d = os.path.join(tmp, "tls")
    os.makedirs(d)

    def ssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)
    for ca in ("ca", "other"):
        ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            f"/CN=sealpipe test {ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.crt")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout",
        "server.key", "-out", "server.csr")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "ext", "-out", "server.crt")
    return d


def test(c, tmp, started):
    tls = make_tls(tmp)
    tls_port = h.free_port()
    sp = h.Sealpipe(tmp, analyses=ANALYSES,
                    extra=["--tls-cert", os.path.join(tls, "server.crt"), "--tls-key",
                           os.path.join(tls, "server.key"), "--tls-port", str(tls_port)])
    a = sp.add_device("dev-a", "--cipher", "none")
    b = sp.add_device("dev-b", "--cipher", "none")
    sp.add_device("dev-c", "--cipher", "none")
    victim = sp.add_device("dev-d", "--cipher", "none")
    sp.cli("profile", "add", "other")
    other = sp.add_device("dev-o", "--cipher", "none", "--profile", "other")

    def token(serial, *args):
        return json.loads(sp.cli("token", "add", serial, "--json", *args).stdout)["token"]
    t_read = token("dev-a", "--name", "ro", "--perm", "read")
    t_write = token("dev-a", "--name", "wo", "--perm", "write")
    t_revoked = token("dev-a", "--name", "old")
    sp.cli("token", "revoke", "dev-a", "old")
    t_short = token("dev-a", "--name", "short", "--expires", "1")
    sp.start()
    started.append(sp)
    port, ah = sp.port, a["auth_hash"]
    time.sleep(1.1)  # t_short expires

    def stored(serial, variable):
        return sp.count("SELECT count(*) n FROM data WHERE device = ? AND variable = ?",
                        serial, variable)

    # --- authentication, per protocol version --------------------------------
    for v in VERSIONS:
        tag = f"[{v}]"
        rc, out = mqtt_run("mosquitto_pub", port, "-V", v, "-q", "1", "-u", "Token", "-P",
                           a["token"], "-t", "$tip/dev-a/push", "-m", f"[auth_{v[4:]}:=1]")
        c.check(rc == 0, f"{tag} Token + device token is accepted ({out.strip()})")
        for what, user, pw in [("a wrong token", "Token", "x" * 36),
                               ("a revoked token", "Token", t_revoked),
                               ("an expired token", "Token", t_short),
                               ("wrong auth-hash halves", "00000000", "00000000"),
                               ("the daemon's user with a wrong password", "sealpipe-daemon",
                                "0" * 64),
                               ("a device serial as username", "dev-a", a["token"])]:
            rc, out = mqtt_run("mosquitto_pub", port, "-V", v, "-u", user, "-P", pw, "-t",
                               "x", "-m", "1")
            c.check(refused(rc, out, v), f"{tag} {what}: CONNACK not authorized ({out.strip()})")
        rc, out = mqtt_run("mosquitto_pub", port, "-V", v, "-t", "x", "-m", "1")
        c.check(refused(rc, out, v), f"{tag} no credentials: not authorized")
        rc, out = mqtt_run("mosquitto_pub", port, "-V", v, "-q", "1", "-u", ah[:8], "-P", ah[8:],
                           "-t", "$tip/dev-b/push", "-m", f"[halves_{v[4:]}:=1]")
        c.check(rc == 0, f"{tag} TagoTiP auth-hash halves: the profile's devices ({out.strip()})")
    h.wait_for(lambda: stored("dev-a", "auth_v5") and stored("dev-b", "halves_v5"),
               what="the accepted messages stored")
    for v in VERSIONS:
        c.eq(stored("dev-a", f"auth_{v[4:]}") + stored("dev-b", f"halves_{v[4:]}"), 2,
             f"[{v}] both accepted messages stored")

    # --- ACL -------------------------------------------------------------------
    def pub(user, pw, topic, body, version="mqttv5"):
        rc, out = mqtt_run("mosquitto_pub", port, "-V", version, "-q", "1", "-u", user, "-P", pw,
                           "-t", topic, "-m", body)
        return rc == 0 and "Not authorized" not in out

    def sub(user, pw, topic):
        rc, out = mqtt_run("mosquitto_sub", port, "-V", "mqttv5", "-u", user, "-P", pw, "-t",
                           topic, "-W", "1")
        return "denied" not in out

    tok = a["token"]
    c.check(pub("Token", tok, "$tip/dev-a/push", "[own:=1]"), "a device publishes to its push topic")
    c.check(pub("Token", tok, "$tip/dev-a/pull", "own"), "... and its pull topic")
    c.check(not pub("Token", tok, "$tip/dev-b/push", "[imp:=1]"),
            "impersonation: publishing to another device's push topic is refused (PUBACK 0x87)")
    c.check(not pub("Token", tok, "$tips/dev-b/push", "x"), "... and its $tips topic")
    c.check(not pub("Token", tok, "$tip/dev-a/ack", "OK|1"), "a device cannot forge its own ACKs")
    c.check(not pub("Token", tok, "$sealpipe/internal", "x"), "the daemon's $sealpipe/ topics")
    c.check(sub("Token", tok, "$tip/dev-a/ack"), "a device subscribes to its ack topic")
    c.check(sub("Token", tok, "$tips/dev-a/ack"), "... and its $tips ack topic")
    c.check(not sub("Token", tok, "$tip/dev-b/ack"), "not to another device's ack topic")
    c.check(not sub("Token", tok, "$tip/+/push"), "not to everyone's push topics")
    c.check(not sub("Token", tok, "$sealpipe/#"), "not to the daemon's internal topics")
    c.check(not sub("Token", tok, "$SYS/#"), "not to $SYS")
    c.check(sub("Token", tok, "any/topic/#"), "other topics: the default filter is '#'")
    c.check(not pub("Token", t_read, "$tip/dev-a/push", "[ro:=1]"), "a read token cannot publish")
    c.check(sub("Token", t_read, "$tip/dev-a/ack"), "... but subscribes")
    c.check(pub("Token", t_write, "$tip/dev-a/push", "[wo:=1]"), "a write token publishes")
    c.check(not sub("Token", t_write, "$tip/dev-a/ack"), "... but cannot subscribe")
    c.check(pub(ah[:8], ah[8:], "$tip/dev-c/push", "[ctx:=1]"),
            "a profile context publishes for any device of the profile")
    c.check(not pub(ah[:8], ah[8:], "devices/dev-a/data", "{}"),
            "a profile context is limited to the TagoTiP topics")
    h.wait_for(lambda: stored("dev-c", "ctx") == 1 and stored("dev-a", "wo") == 1,
               what="allowed messages stored")
    c.eq((stored("dev-b", "imp"), stored("dev-a", "ro")), (0, 0), "denied messages not stored")
    log = open(os.path.join(sp.data, "broker", "mosquitto.log")).read()
    c.check("denied publish by dev-a on $tip/dev-b/push" in log,
            "denials are logged with the device and the topic")

    # --- identity: a device's data lands in its own bucket -----------------------
    import paho.mqtt.client as mqtt
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
    cl, _, rc = paho(sp, "id-a", "Token", tok, mqtt.MQTTv5)
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("sealpipe-device", "dev-b")]
    cl.publish("readings/kitchen", json.dumps({"variable": "forged", "value": 1}), qos=1,
               properties=props).wait_for_publish(10)
    cl.publish("devices/dev-b/data", json.dumps({"variable": "other_topic", "value": 2}),
               qos=1).wait_for_publish(10)
    cl.loop_stop()
    cl.disconnect()
    cl, _, rc = paho(sp, "id-a3", "Token", tok)  # MQTT 3.1.1: stamped all the same
    cl.publish("readings/hall", json.dumps({"variable": "v311", "value": 3}),
               qos=1).wait_for_publish(10)
    cl.loop_stop()
    cl.disconnect()
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable IN "
                                "('forged','other_topic','v311')") == 3, what="identity records")
    c.eq(sp.rows("SELECT device, variable FROM data WHERE variable IN "
                 "('forged','other_topic','v311') ORDER BY id"),
         [{"device": "dev-a", "variable": "forged"}, {"device": "dev-a", "variable": "other_topic"},
          {"device": "dev-a", "variable": "v311"}],
         "any topic lands in the publisher's bucket; a forged identity property is ignored")

    # --- revocation and expiry disconnect within a second ------------------------
    t_rev = token("dev-a", "--name", "live")
    t_exp = token("dev-a", "--name", "soon", "--expires", "3")
    exp_at = time.monotonic() + 3
    cl_rev, gone_rev, _ = paho(sp, "rev-a", "Token", t_rev)
    cl_exp, gone_exp, _ = paho(sp, "exp-a", "Token", t_exp)
    cl_rm, gone_rm, _ = paho(sp, "rm-d", "Token", victim["token"])
    cl_b, gone_b, _ = paho(sp, "stay-b", "Token", b["token"])
    t0 = time.monotonic()
    sp.cli("token", "revoke", "dev-a", "live")
    took = gone_rev.get(timeout=5) - t0
    c.check(took < 1.0, f"token revoke disconnects its session in {took * 1000:.0f} ms (< 1 s)")
    t0 = time.monotonic()
    sp.cli("device", "rm", "dev-d")
    took = gone_rm.get(timeout=5) - t0
    c.check(took < 1.0, f"device rm disconnects the device in {took * 1000:.0f} ms (< 1 s)")
    late = gone_exp.get(timeout=10) - exp_at
    c.check(late < 1.0, f"an expiring token's session ends {late * 1000:.0f} ms after expiry")
    c.check(gone_b.empty(), "other devices stay connected")
    rc, out = mqtt_run("mosquitto_pub", port, "-u", "Token", "-P", t_rev, "-t", "x", "-m", "1")
    c.check(refused(rc, out, "mqttv311"), "a revoked token cannot reconnect")
    for cl in (cl_rev, cl_exp, cl_rm, cl_b):
        cl.loop_stop()
        cl.disconnect()

    # --- attacks found in review: wills, client-id takeovers, reused token ids ----
    # A will is published without the identity stamp: a device's will never
    # goes out (it would land in whatever bucket its topic names).
    cl, gone, _ = paho(sp, "will-a", "Token", tok,
                       will=("devices/dev-b/data", json.dumps({"variable": "via_will", "value": 1})))
    cl.loop_stop()
    cl.socket().close()  # no DISCONNECT: the broker sends the will
    h.wait_for(lambda: "dropped the will of dev-a on devices/dev-b/data" in
               open(os.path.join(sp.data, "broker", "mosquitto.log")).read(), what="will dropped")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable = 'via_will'"), 0,
         "a device's will is dropped, so it cannot speak for another device")
    # No one but the daemon gets the daemon's client id (and its queue).
    _, _, rc = paho(sp, "sealpipe", "Token", tok)
    c.check(rc != 0, f"a device cannot take the daemon's client id (CONNACK {rc})")
    # Nor another identity's live session.
    cl_b, gone_b, _ = paho(sp, "held-by-b", "Token", b["token"])
    _, _, rc = paho(sp, "held-by-b", "Token", tok)
    c.check(rc != 0 and gone_b.empty(), "a device cannot take over another device's session")
    cl_b.loop_stop()
    cl_b.disconnect()
    # The same device reconnecting with its id takes over; revocation still reaches it.
    t_twice = token("dev-a", "--name", "twice")
    first, gone1, _ = paho(sp, "twice-a", "Token", t_twice)
    second, gone2, _ = paho(sp, "twice-a", "Token", t_twice)
    gone1.get(timeout=5)
    t0 = time.monotonic()
    sp.cli("token", "revoke", "dev-a", "twice")
    took = gone2.get(timeout=5) - t0
    c.check(took < 1.0, f"after a takeover, revoking still disconnects the new session ({took:.2f} s)")
    for cl in (first, second):
        cl.loop_stop()
    # device rm + add reuses row ids: the old token's session must still go.
    e = sp.add_device("dev-e", "--cipher", "none")
    cl_e, gone_e, _ = paho(sp, "old-e", "Token", e["token"])
    t0 = time.monotonic()
    sp.cli("device", "rm", "dev-e")
    sp.add_device("dev-e", "--cipher", "none")
    took = gone_e.get(timeout=5) - t0
    c.check(took < 1.0, f"rm + add at once still disconnects the old token ({took:.2f} s)")
    cl_e.loop_stop()

    # --- the profile context and devices the registry does not know (issue #10) ---
    # TagoTiP §4.3: a PUSH for an unknown serial is answered ERR|device_not_found
    # on its ack topic, and the daemon keeps it as a dead letter.
    oh = other["auth_hash"]
    cl, _, rc = paho(sp, "ctx-ghost", ah[:8], ah[8:], mqtt.MQTTv5)
    answers = queue.Queue()
    cl.on_message = lambda c, u, m: answers.put((m.topic, m.payload))
    granted = queue.Queue()
    cl.on_subscribe = lambda c, u, mid, codes, *a: granted.put([int(x.value) for x in codes])
    cl.subscribe([("$tip/ghost-01/ack", 1), ("$tips/ghost-01/ack", 1)])
    c.eq(granted.get(timeout=5), [1, 1],
         "a profile context subscribes to the ack topics of a serial no device has")
    info = cl.publish("$tip/ghost-01/push", "[v:=1]", qos=1)
    info.wait_for_publish(10)
    c.check(info.rc == 0, "... and publishes to its push topic")
    try:
        got = answers.get(timeout=5)
    except queue.Empty:
        got = None
    c.eq(got, ("$tip/ghost-01/ack", b"ERR|device_not_found"),
         "an unknown serial is answered ERR|device_not_found (TagoTiP §4.3)")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters WHERE topic = ?",
                                "$tip/ghost-01/push") == 1, timeout=5,
               what="the unknown device's message as a dead letter")
    c.eq([r["reason"] for r in sp.rows("SELECT reason FROM dead_letters WHERE topic = ?",
                                       "$tip/ghost-01/push")], ["unknown_device"],
         "... and kept as a dead letter (unknown_device)")
    env = h.seal_chacha("11" * 32, ah, "ghost-01", "[v:=1]", 1)
    cl.publish("$tips/ghost-01/push", env, qos=1).wait_for_publish(10)
    try:
        got = answers.get(timeout=5)
    except queue.Empty:
        got = None
    c.eq(got, ("$tips/ghost-01/ack", b"ACK|ERR|auth_failed"),
         "an envelope for an unknown serial: plaintext ACK|ERR|auth_failed (TagoTiPs §9)")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters WHERE topic = ? AND "
                                "reason = 'unknown_device'", "$tips/ghost-01/push") == 1,
               timeout=5, what="the unknown envelope as a dead letter")
    # Siblings: another profile's devices stay out of reach of this context.
    c.check(not pub(ah[:8], ah[8:], f"$tip/{other['serial']}/push", "[cross:=1]"),
            "a profile context cannot publish for another profile's device")
    c.check(not sub(ah[:8], ah[8:], f"$tip/{other['serial']}/ack"),
            "... nor read its ack topic")
    c.check(not sub(ah[:8], ah[8:], "$tip/+/ack"), "... nor every device's ack topics")
    c.check(not pub(ah[:8], ah[8:], "$tip/bad serial/push", "[x:=1]"),
            "a profile context publishes only to well-formed serials")
    c.check(pub(oh[:8], oh[8:], f"$tip/{other['serial']}/push", "[own_profile:=1]"),
            "the other profile's context reaches its own device")
    cl.loop_stop()
    cl.disconnect()

    # --- log injection: nothing a client sends forges a broker log line ----------
    # mosquitto 2.0 refuses control characters in client ids, usernames and
    # topics (MQTT UTF-8 rules); the plugin escapes them all the same.
    for what, args in [("client id", ["-i", "x\nsealpipe: FORGED-ID"]),
                       ("username", ["-u", "u\nsealpipe: FORGED-USER", "-P", "x"]),
                       ("topic", ["-u", "Token", "-P", tok, "-t", "t\nsealpipe: FORGED-TOPIC"])]:
        extra = [] if "-t" in args else ["-t", "x"]
        mqtt_run("mosquitto_pub", port, "-V", "mqttv5", "-q", "1", "-m", "1", *args, *extra)
    for cid, user in [("inj\nsealpipe: FORGED-PAHO", "Token"),
                      ("inj-user", "Tok\nsealpipe: FORGED-PAHO-USER")]:
        try:
            pc = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv311)
            pc.username_pw_set(user, tok)
            pc.connect("127.0.0.1", port)
            pc.loop(1)
            pc.loop(1)
            pc.disconnect()
        except Exception:
            pass
    log = open(os.path.join(sp.data, "broker", "mosquitto.log")).read()
    forged = [ln for ln in log.splitlines() if ln.startswith("sealpipe: FORGED")]
    c.eq(forged, [], "no client-sent newline starts a line of the broker log")

    # --- TLS on its own port ---------------------------------------------------
    rc, out = mqtt_run("mosquitto_pub", tls_port, "--cafile", os.path.join(tls, "ca.crt"),
                       "-q", "1", "-u", "Token", "-P", tok, "-t", "$tip/dev-a/push",
                       "-m", "[over_tls:=1]")
    c.check(rc == 0, f"TLS with the right CA ({out.strip()})")
    h.wait_for(lambda: stored("dev-a", "over_tls") == 1, what="the TLS message stored")
    rc, out = mqtt_run("mosquitto_pub", tls_port, "--cafile", os.path.join(tls, "other.crt"),
                       "-u", "Token", "-P", tok, "-t", "$tip/dev-a/push", "-m", "[bad_ca:=1]")
    c.check(rc != 0, f"TLS with another CA is refused ({out.strip()})")
    rc, out = mqtt_run("mosquitto_pub", tls_port, "--cafile", os.path.join(tls, "ca.crt"),
                       "-u", "Token", "-P", "y" * 36, "-t", "x", "-m", "1")
    c.check(refused(rc, out, "mqttv311"), "TLS does not replace authentication")


if __name__ == "__main__":
    sys.exit(h.run(test))
