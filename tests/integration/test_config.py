"""The shipped example config starts the daemon (issue #10, point 15).

runtime/sealpipe.conf.example is what users copy. The daemon runs with it
(only the data directory, the analyses folder and the port overridden on the
command line, as a test must), its embedded broker accepts the generated
config, and a device's publish is stored. A config file whose values contain
'#' (a password, a topic filter) is read with the '#' kept."""

import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

EXAMPLE = os.path.join(h.SOURCE, "runtime", "sealpipe.conf.example")


def test(c, tmp, started):
    sp = h.Sealpipe(tmp, extra=["--config", EXAMPLE])
    dev = sp.add_device("dev-a", "--cipher", "none")
    try:
        sp.start()
    except AssertionError as e:
        broker_log = os.path.join(sp.data, "broker", "mosquitto.log")
        if os.path.exists(broker_log):
            with open(broker_log) as f:
                print("---- broker log ----\n" + f.read()[-2000:])
        c.check(False, f"the daemon starts with the example config ({str(e)[-400:]})")
        return
    started.append(sp)
    c.check(sp.proc.poll() is None, "the daemon starts with the example config")
    r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(sp.port), "-q", "1",
                        "-u", "Token", "-P", dev["token"], "-t", "$tip/dev-a/push", "-m",
                        "[example:=1]"], capture_output=True, text=True, timeout=10)
    c.eq(r.returncode, 0, f"a device publishes through its broker ({r.stderr.strip()})")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable = 'example'"),
               what="the publish stored")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable = 'example'"), 1,
         "... and it is stored")

    # '#' inside a value is kept: the daemon's client id here is "sp#1".
    conf = os.path.join(tmp, "hash.conf")
    with open(conf, "w") as f:
        f.write("# a comment line\n  # an indented one\nclient_id = sp#1\n")
    sp.stop()
    sp.extra = ["--config", conf]
    sp.start()
    with open(os.path.join(sp.data, "broker", "mosquitto.conf")) as f:
        c.check("sp#1" in f.read(), "a '#' inside a value reaches the broker config")
    with open(conf, "w") as f:
        f.write("port = 1883  # no comments after a value\n")
    r = subprocess.run([h.SEALPIPE, "run", "--config", conf, "--data-dir",
                        os.path.join(tmp, "d2")], capture_output=True, text=True, timeout=10)
    c.check(r.returncode == 2 and ":1: port" in r.stderr and "own line" in r.stderr,
            f"an inline comment is refused before start, saying why ({r.stderr.strip()})")
    r = subprocess.run([h.SEALPIPE, "run", "--data-dir", os.path.join(tmp, "d2"),
                        "--client-id", "sp\nlistener 1884"], capture_output=True, text=True,
                       timeout=10)
    c.check(r.returncode == 2 and "control character" in r.stderr,
            f"a newline in a value is refused ({r.stderr.strip()})")
    c.check(not os.path.exists(os.path.join(tmp, "d2")), "... before the data directory is made")


if __name__ == "__main__":
    sys.exit(h.run(test))
