"""A full disk under the data directory (issue #13, point 4): devices are
refused while the journal's disk is nearly full (no PUBACK: they keep the
message), both logs say so, the daemon does not spin on commits that cannot
succeed, and once there is room again everything the broker acknowledged is
stored, once, and the refused message arrives when the device sends it again.

It needs a filesystem of its own that can be filled: a 64 MiB tmpfs, which
only root can mount. Without root it exits 77, which ctest reports as
skipped (not passed)."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

N = 300


def fill(path):
    """Writes path until the filesystem is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)


def publish_all(sp, n):
    """n QoS 1 publishes from two devices; returns how many got a PUBACK."""
    import paho.mqtt.client as mqtt
    infos = []
    clients = []
    for serial in ("disk-01", "disk-02"):
        cl = sp.client(sp.creds(serial), client_id="pub-" + serial, protocol=mqtt.MQTTv311)
        cl.connect("127.0.0.1", sp.port)
        cl.loop_start()
        clients.append(cl)
    for i in range(n):
        cl = clients[i % 2]
        body = b'{"variable":"seq","value":%d,"metadata":{"pad":"%s"}}' % (i, b"x" * 900)
        infos.append(cl.publish(f"devices/disk-0{i % 2 + 1}/data", body, qos=1))
    for inf in infos:
        inf.wait_for_publish(20)
    for cl in clients:
        cl.loop_stop()
        cl.disconnect()
    return sum(1 for inf in infos if inf.is_published())


def refused_publish(sp):
    """A publish while the disk is full: (acknowledged?, the client)."""
    import paho.mqtt.client as mqtt
    cl = sp.client(sp.creds("disk-01"), client_id="late-disk-01", clean_session=False,
                   protocol=mqtt.MQTTv311)
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    inf = cl.publish("devices/disk-01/data", b'{"variable":"late","value":1}', qos=1)
    time.sleep(3.0)  # how long the test gives the broker to (wrongly) acknowledge
    return inf.is_published(), cl, inf


def broker_log(sp):
    with open(os.path.join(sp.data, "broker", "mosquitto.log"), errors="replace") as f:
        return f.read()


def backlog_fills_disk(c, tmp, started, disk):
    """No filler this time: the daemon is stopped while devices send 200 KB
    messages until the journal alone fills the disk. The broker must refuse
    early enough that the daemon, resumed, can store everything it
    acknowledged (its database is on the same disk) without anyone freeing
    space."""
    import paho.mqtt.client as mqtt
    sp = h.Sealpipe(os.path.join(tmp, "second"), extra=["--journal-min-free-mb", "8"])
    sp.data = os.path.join(disk, "data2")
    os.makedirs(sp.data)
    sp.add_device("disk-03", "--cipher", "none")
    sp.start()
    started.append(sp)
    os.kill(sp.proc.pid, signal.SIGSTOP)
    acked = 0
    try:
        cl = sp.client(sp.creds("disk-03"), client_id="fill-03", protocol=mqtt.MQTTv311)
        cl.connect("127.0.0.1", sp.port)
        cl.loop_start()
        for i in range(400):  # 80 MB, more than the disk holds
            inf = cl.publish("nowhere/disk-03/x", b"%06d" % i + b"y" * 200000, qos=1)
            inf.wait_for_publish(3)
            if not inf.is_published():
                break
            acked += 1
        cl.loop_stop()
        cl.disconnect()
    finally:
        os.kill(sp.proc.pid, signal.SIGCONT)
    c.check(0 < acked < 400, f"the broker took {acked} messages of 200 KB, then refused")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters") >= acked, timeout=60,
               what="every acknowledged message stored without freeing space")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters WHERE reason='no_route'"), acked,
         "every acknowledged message stored (a no_route dead letter), once")


def test(c, tmp, started):
    disk = tempfile.mkdtemp(prefix="sealpipe-disk-")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", disk],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"mount tmpfs failed: {r.stderr}")
    try:
        run_full(c, tmp, started, disk)
        for s in started:
            s.stop()
        shutil.rmtree(os.path.join(disk, "data"), ignore_errors=True)
        backlog_fills_disk(c, tmp, started, disk)
    finally:
        for s in started:
            s.stop()
            s.kill_embedded_broker()
        time.sleep(0.5)
        subprocess.run(["umount", "-l", disk])
        shutil.rmtree(disk, ignore_errors=True)


def run_full(c, tmp, started, disk):
    sp = h.Sealpipe(tmp, analyses=os.path.join(os.path.dirname(__file__), "analyses"),
                    extra=["--journal-min-free-mb", "4", "--log-level", "info"])
    sp.data = os.path.join(disk, "data")
    os.makedirs(sp.data)
    sp.add_device("disk-01", "--cipher", "none")
    sp.add_device("disk-02", "--cipher", "none")
    sp.start()
    started.append(sp)

    os.kill(sp.proc.pid, signal.SIGSTOP)
    try:
        acked = publish_all(sp, N)
        c.eq(acked, N, "every publish acknowledged while the daemon is stopped (journaled)")
        fill(os.path.join(disk, "filler"))
        seen = sp.read_log().count("batch not committed")
        # The plugin looks at the free space once a second (a write that
        # still fits in the journal's last page is taken: it is on disk).
        h.wait_for(lambda: "refusing device publishes" in broker_log(sp), timeout=5,
                   what="the broker to refuse device publishes")
    finally:
        os.kill(sp.proc.pid, signal.SIGCONT)
    ok, late, inf = refused_publish(sp)
    c.check(not ok, "a publish while the disk is full gets no PUBACK")
    failed = sp.read_log().count("batch not committed") - seen
    c.check(0 < failed <= 8, f"the daemon retries a commit that cannot succeed with a backoff "
            f"({failed} failed batches in about 3 s)")
    c.check("journal" in broker_log(sp) and "refusing device publishes" in broker_log(sp),
            "the broker's log says it refuses device publishes")
    c.check("journal:" in sp.read_log() and "refuses device publishes" in sp.read_log(),
            "the daemon's log says the broker refuses device publishes")
    c.check("is full" in sp.read_log() and "waits in the journal" in sp.read_log(),
            "the daemon's log says its disk is full and where the messages wait")

    os.unlink(os.path.join(disk, "filler"))
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='seq'") >= N,
               timeout=60, what="the journaled messages stored once there is room")
    h.wait_for(lambda: inf.is_published(), timeout=30,
               what="the refused message sent again and acknowledged")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='late'") >= 1,
               timeout=30, what="the refused message stored")
    late.loop_stop()
    late.disconnect()
    time.sleep(1.0)
    c.eq(sp.count("SELECT count(DISTINCT value) n FROM data WHERE variable='seq'"), N,
         "every acknowledged message stored")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable='seq'"), N, "... once")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable='late'"), 1,
         "the refused message stored once after the device sent it again")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters"), 0, "no dead letter")


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("SKIP: a full disk needs a tmpfs of its own, which only root can mount")
        sys.exit(77)
    sys.exit(h.run(test))
