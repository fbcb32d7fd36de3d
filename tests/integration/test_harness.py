"""The harness's own promise (issue #10, point 16): a test client logs in as a
real device unless the test asks for the daemon. The daemon's login passes no
ACL and gets no identity stamp, so a test logged in as the daemon by default
would test a path no device takes. Checks that the harness refuses a client
with no credentials and a daemon login not asked for, that its helpers log in
as the device a topic names (stamped, ACL applied, a refusal raised), and that
run() fails a test whose broker saw a daemon login it never asked for."""

import os
import subprocess
import sys
import textwrap

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

ANALYSES = os.path.join(os.path.dirname(__file__), "analyses")

# A test that logs in as the daemon behind the harness's back, with
# mosquitto_pub and the secret read from the file; ASK=1 asks first.
SNEAKY = textwrap.dedent("""\
    import os, subprocess, sys
    sys.path.insert(0, {here!r})
    import harness as h

    def test(c, tmp, started):
        sp = h.Sealpipe(tmp)
        sp.add_device("sn-01", "--cipher", "none")
        sp.start()
        started.append(sp)
        if os.environ.get("ASK") == "1":
            sp.daemon_creds()
        with open(os.path.join(sp.data, "broker", "daemon.secret")) as f:
            secret = f.read().strip()
        r = subprocess.run(["mosquitto_pub", "-p", str(sp.port), "-i", "sneaky", "-u",
                            "sealpipe-daemon", "-P", secret, "-t", "x", "-m", "1"])
        c.eq(r.returncode, 0, "published as the daemon")

    sys.exit(h.run(test))
    """)


def refused(c, fn, words, what):
    try:
        fn()
    except (AssertionError, TypeError) as e:
        c.check(all(w in str(e) for w in words), f"{what}: {e}")
        return
    c.check(False, f"{what}: the harness let it through")


def test(c, tmp, started):
    import paho.mqtt.client as mqtt
    sp = h.Sealpipe(tmp, analyses=ANALYSES)
    a = sp.add_device("hn-a", "--cipher", "none")
    b = sp.add_device("hn-b", "--cipher", "none")
    sp.start()
    started.append(sp)

    # --- no client reaches the broker as the daemon by default ------------------
    refused(c, lambda: mqtt.Client(client_id="bare").connect("127.0.0.1", sp.port),
            ["no credentials"], "a paho client with no credentials is stopped")
    with open(os.path.join(sp.data, "broker", "daemon.secret")) as f:
        secret = f.read().strip()
    sneaky = mqtt.Client(client_id="sneaky")
    sneaky.username_pw_set("sealpipe-daemon", secret)
    refused(c, lambda: sneaky.connect("127.0.0.1", sp.port), ["daemon_creds()"],
            "a paho client with the daemon's login not from daemon_creds() is stopped")
    refused(c, lambda: sp.pub("nobody/here", b"1"), ["no credentials"],
            "pub() on a topic that names no device needs creds=")
    refused(c, lambda: sp.cred_args(), ["creds"], "cred_args() needs credentials")
    refused(c, lambda: sp.client(("sealpipe-daemon", secret)), ["daemon_creds()"],
            "client() takes the daemon's login only from daemon_creds()")
    refused(c, lambda: sp.pub("readings/hn-a", b"1", creds=("sealpipe-daemon", secret)),
            ["daemon_creds()"], "... and so does pub()")

    # --- the helpers log in as the device: stamped, and the ACL applies ---------
    # readings/# names no {serial}: only the identity stamp says whose it is
    # (a daemon login would make it a dead letter).
    sp.pub("readings/hn-a", b'{"variable":"by_topic","value":1}')
    sp.pub("readings/x", b'{"variable":"by_creds","value":2}', creds=sp.creds(b))
    cl = sp.client(sp.creds(a), client_id="hn-a-paho")
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    cl.publish("readings/y", b'{"variable":"by_paho","value":3}', qos=1).wait_for_publish(10)
    cl.loop_stop()
    cl.disconnect()
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data") +
               sp.count("SELECT count(*) n FROM dead_letters") >= 3, what="3 messages handled")
    c.eq(sp.rows("SELECT device, variable FROM data ORDER BY id"),
         [{"device": "hn-a", "variable": "by_topic"}, {"device": "hn-b", "variable": "by_creds"},
          {"device": "hn-a", "variable": "by_paho"}],
         "pub() and client() log in as the device: its data lands in its bucket")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters"), 0, "no dead letters")
    refused(c, lambda: sp.pub("$tip/hn-b/push", b"[x:=1]", creds=sp.creds(a)),
            ["Not authorized"], "a publish the device ACL refuses raises")
    r = sp.device("pull", "--serial", "hn-a", "nothing", check=False)
    c.check(r.returncode == 1 and "ERR|variable_not_found" in r.stdout,
            f"device() logs sealpipe-device in as its --serial: {r.stdout!r} {r.stderr!r}")
    c.eq(sp.daemon_logins(), [], "the broker saw no daemon login but the daemon's own")

    # --- run() fails a test that logged in as the daemon without asking ---------
    script = os.path.join(tmp, "sneaky_test.py")
    with open(script, "w") as f:
        f.write(SNEAKY.format(here=os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, ASK="0")
    r = subprocess.run([sys.executable, script], capture_output=True, text=True, env=env,
                       timeout=60)
    c.check(r.returncode == 1 and "logged in as the daemon" in r.stdout and "'sneaky'" in r.stdout,
            f"run() fails a test that logged in as the daemon unasked: {r.stdout.strip()[-200:]!r}")
    env["ASK"] = "1"
    r = subprocess.run([sys.executable, script], capture_output=True, text=True, env=env,
                       timeout=60)
    c.check(r.returncode == 0, f"... and passes one that asked: {r.stdout.strip()[-200:]!r}")


if __name__ == "__main__":
    sys.exit(h.run(test))
