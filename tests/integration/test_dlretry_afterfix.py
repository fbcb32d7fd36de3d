"""dead-letter retry right after the fix (issue #14, review): a device's
messages used up its error budget on a broken analysis; once the fixed
version is loaded, retrying them stores every one at once (a new version of
an analysis starts with a fresh budget). Retried messages, an hour old, are
not observed in sealpipe_publish_to_commit_seconds (it would say an hour)."""

import http.client
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

BROKEN = """return {
  topics = { "sensors/{serial}/raw" },
  handle = function(msg) error("decoder bug") end,
}
"""
FIXED = """return {
  topics = { "sensors/{serial}/raw" },
  handle = function(msg)
    local t = string.unpack(">i2", msg.payload)
    return { { variable = "temperature", value = t / 100 } }
  end,
}
"""
N = 14  # more than the default lua_error_budget (10)
HOUR_MS = 3600 * 1000


def latency(port):
    """(count, sum) of sealpipe_publish_to_commit_seconds from /metrics."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    got = {}
    for f in text_string_to_metric_families(text):
        if f.name == "sealpipe_publish_to_commit_seconds":
            for s in f.samples:
                got[s.name.rsplit("_", 1)[1]] = s.value
    return got.get("count", 0), got.get("sum", 0.0)


def test(c, tmp, started):
    analyses = os.path.join(tmp, "analyses")
    os.makedirs(analyses)
    with open(os.path.join(analyses, "decoder.lua"), "w") as f:
        f.write(BROKEN)
    sp = h.Sealpipe(tmp, analyses=analyses)  # the default error budget
    dev = sp.add_device("dev-s", "--cipher", "none")
    sp.start()
    started.append(sp)

    for i in range(N):
        sp.pub("sensors/dev-s/raw", struct.pack(">h", 2000 + i), creds=sp.creds(dev))
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters") == N,
               what=f"{N} dead letters")
    skipped = sp.count("SELECT count(*) n FROM dead_letters WHERE detail LIKE '%skipped%'")
    c.check(skipped > 0, f"the device used up its error budget ({skipped} skipped)")

    # Fixed within the minute: the daemon loads the new version.
    sp.reload_analysis("decoder", FIXED)

    # An hour-old failure, as a dead letter kept since then would be.
    con = sp.db()
    with con:
        con.execute("UPDATE dead_letters SET received_at = received_at - ?", (HOUR_MS,))
    con.close()
    count0, sum0 = latency(sp.metrics_port)
    c.check(count0 >= N, f"the first deliveries are observed ({count0})")
    r = sp.cli("dead-letter", "retry", "--device", "dev-s", "--wait", check=False)
    c.check(r.returncode == 0 and r.stdout.count(" stored") == N and "skipped" not in r.stdout,
            f"every retry stored at once, none skipped: {r.stdout[-400:]!r}")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable='temperature'"), N,
         "each message stored once")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters"), 0, "no dead letter left")
    count1, sum1 = latency(sp.metrics_port)
    c.eq(count1, count0, "retries are not observed in publish_to_commit_seconds")
    c.check(sum1 - sum0 < 1, f"nor their hour-old receipt ({sum1 - sum0:.1f} s added)")
    stats = sp.cli("stats").stdout
    line = next((x for x in stats.splitlines() if "publish_to_commit" in x), "")
    c.check(f"count {int(count0)} " in line, f"sealpipe stats agrees: {line!r}")


if __name__ == "__main__":
    sys.exit(h.run(test))
