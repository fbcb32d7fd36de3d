"""The bucket's write-ahead log stays bounded (issue #13, point 8): an
outside reader that holds a read transaction while the daemon writes keeps
SQLite from resetting sealpipe.db-wal, which grows past 100 MB here; once the
reader ends, the WAL goes back under the daemon's journal_size_limit
(64 MiB) with its next commits, instead of staying that large for good."""

import json
import os
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

LIMIT = 64 * 1024 * 1024


def test(c, tmp, started):
    sp = h.Sealpipe(tmp)
    dev = sp.add_device("wal-01", "--cipher", "none")
    sp.start()
    started.append(sp)
    wal = os.path.join(sp.data, "sealpipe.db-wal")

    reader = sqlite3.connect(os.path.join(sp.data, "sealpipe.db"), isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM data").fetchone()  # holds its snapshot

    client = sp.client(sp.creds(dev), client_id="wal-pub")
    client.connect("127.0.0.1", sp.port)
    client.loop_start()
    big = "x" * 6000
    body = json.dumps([{"variable": f"v{i}", "value": big} for i in range(10)])
    n = 1800  # 18,000 records of 6 KB (the shipped mqtt_ingest): over 100 MB of pages
    for _ in range(n):
        client.publish("devices/wal-01/data", body, qos=1).wait_for_publish()
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data") == 10 * n, timeout=120,
               what="every record stored")
    grown = os.path.getsize(wal)
    c.check(grown > LIMIT, f"with the reader open the WAL grows: {grown >> 20} MiB")

    reader.execute("COMMIT")
    reader.close()
    # The file is cut at a commit that starts the WAL over, which needs a
    # checkpoint that got through first: keep the device writing meanwhile.
    deadline = time.monotonic() + 60
    while os.path.getsize(wal) > LIMIT and time.monotonic() < deadline:
        client.publish("$tip/wal-01/push", "[after:=1]", qos=1).wait_for_publish()
        time.sleep(0.2)
    c.check(os.path.getsize(wal) <= LIMIT,
            f"once the reader ended the WAL is at most 64 MiB: {os.path.getsize(wal) >> 20} MiB")
    client.disconnect()
    client.loop_stop()


if __name__ == "__main__":
    sys.exit(h.run(test))
