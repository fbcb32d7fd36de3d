#!/usr/bin/env python3
"""commit_linger_ms: under a steady trickle a small batch waits for more
messages before it commits, so there are fewer, larger commits; a lone
message still commits within the linger.

A device (its own token, through the broker plugin) publishes 100 plain
TagoTiP PUSHes 10 ms apart. With --commit-linger-ms 50 each batch gathers
about five of them: the daemon's sealpipe_commit_batch_messages histogram
must show at most a third as many commits as messages (without the linger a
daemon that keeps up commits every message alone: 100 commits). Every
message is stored once. Then a lone PUSH after a quiet spell is committed
after the linger (it waited for company: at least 40 ms) and not much later.
"""
import os
import queue
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

N = 100
LINGER_MS = 50


def commits(sp):
    """(commits, messages) from the batch-size histogram of /metrics."""
    return (sp.metric("sealpipe_commit_batch_messages_count", 0),
            sp.metric("sealpipe_commit_batch_messages_sum", 0))


def test(c, tmp, started):
    sp = h.Sealpipe(tmp, extra=["--commit-linger-ms", str(LINGER_MS)])
    dev = sp.add_device("linger-01")
    sp.start()
    started.append(sp)
    got = queue.Queue()
    cl = sp.client(sp.creds(dev), client_id="dev-linger-01")
    cl.on_message = lambda *a: got.put(time.monotonic())
    ready = queue.Queue()
    cl.on_subscribe = lambda *a: ready.put(True)
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    cl.subscribe("$tip/linger-01/ack", 1)
    ready.get(timeout=10)

    before = commits(sp)
    for i in range(N):
        cl.publish("$tip/linger-01/push", f"[seq:={i}]", qos=1)
        time.sleep(0.01)
    h.wait_for(lambda: sp.count("SELECT count(*) AS n FROM data") >= N, timeout=30,
               what="every PUSH stored")
    after = commits(sp)
    n_commits, n_msgs = after[0] - before[0], after[1] - before[1]
    c.eq(sp.count("SELECT count(DISTINCT value) AS n FROM data"), N, "every PUSH stored once")
    c.check(n_msgs == N and n_commits <= N / 3,
            f"a steady trickle is committed in larger batches: {n_commits:.0f} commits for "
            f"{n_msgs:.0f} messages (at most {N // 3})")

    # A lone PUSH after a quiet spell: it waits the linger for company, then
    # is committed without waiting for another message.
    while not got.empty():
        got.get()
    time.sleep(0.5)
    t0 = time.monotonic()
    cl.publish("$tip/linger-01/push", "[seq:=lone]", qos=1)
    t1 = got.get(timeout=10)
    c.check(0.04 <= t1 - t0 < LINGER_MS / 1000 + 0.5,
            f"a lone PUSH is answered after the linger of {LINGER_MS} ms "
            f"({(t1 - t0) * 1000:.0f} ms)")
    cl.loop_stop()
    cl.disconnect()


if __name__ == "__main__":
    sys.exit(h.run(test))
