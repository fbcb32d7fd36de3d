"""insert(), query() and per-analysis limits (timeout_ms, publish_kb) through the daemon and its worker
(issue #3): inserts land for the named devices in the same transaction, an
insert for an unknown device fails the message, query() reads committed data,
and an analysis's own timeout_ms is used instead of the daemon's."""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

ANALYSES = os.path.join(os.path.dirname(__file__), "analyses")


def test(c, tmp, started):
    sp = h.Sealpipe(tmp, analyses=ANALYSES, extra=["--lua-timeout-ms", "3000"])
    for d in ("api-01", "other-01"):
        sp.add_device(d, "--cipher", "none")
    sp.start()
    started.append(sp)
    api = sp.creds("api-01")  # every message is api-01's own

    sp.pub("ins/api-01", b"one", creds=api)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data") >= 3, what="inserted")
    got = sorted((r["device"], r["variable"], r["value"]) for r in
                 sp.rows("SELECT device, variable, value FROM data"))
    c.eq(got, [("api-01", "orig", "one"), ("api-01", "self2", 2), ("other-01", "mirror", "one")],
         "insert() stores for another device and for its own, with the returned record")
    sp.pub("ins/api-01", b"ghost", creds=api)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters") >= 1, what="dead letter")
    d = sp.rows("SELECT reason, detail FROM dead_letters")[0]
    c.check(d["reason"] == "analysis_error" and "ghost-99" in d["detail"],
            f"insert() for an unknown device fails the message: {d['detail']}")
    c.eq(sp.count("SELECT count(*) n FROM data"), 3, "nothing of that message was stored")

    sp.pub("ins/api-01", b"two", creds=api)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='orig'") == 2,
               what="second")
    sp.pub("qry/api-01", b"?", creds=api)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE variable='found'") == 1,
               what="query answered")
    r = sp.rows("SELECT value, metadata FROM data WHERE variable='found'")[0]
    c.eq((r["value"], json.loads(r["metadata"]).get("latest")), (2, "two"),
         "query() returns the device's committed records, newest first")

    t0 = time.time()
    sp.pub("lim/api-01", b"a" * 4096, creds=api)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters") >= 2, timeout=10,
               what="limited")
    d = sp.rows("SELECT reason, detail FROM dead_letters ORDER BY id DESC")[0]
    c.check(d["reason"] == "timeout" and "200 ms" in d["detail"],
            f"the analysis's own timeout_ms applies: {d['detail']} "
            f"({time.time() - t0:.2f} s, daemon limit 3 s)")

    sp.pub("bigpub/api-01", b"x", creds=api)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters") >= 3, what="bigpub")
    d = sp.rows("SELECT reason, detail FROM dead_letters ORDER BY id DESC")[0]
    c.check(d["reason"] == "limit" and "2048 bytes, the limit is 1024" in d["detail"],
            f"the analysis's own publish_kb applies: {d['detail'][:120]}")


if __name__ == "__main__":
    sys.exit(h.run(test))
