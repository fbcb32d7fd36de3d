"""The HTTP API's worker queue (transport/httpd_api.c) as clients use it:
slow data queries queued behind each other, clients that give up while they
wait, a daemon stopped with requests queued, and request bodies no route
reads. Found by review: abandoned queries were run anyway (64 of them held
the API for minutes), and a stop closed queued requests without an answer.

A query here is an hourly max over 400,000 records, about half a second."""

import http.client
import json
import os
import socket
import sqlite3
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

SLOW = "/api/v1/devices/q-01/data?agg=max&interval=1h&qty=10000"
ROWS = 400000
N_STOP = 30  # queued at a stop (32 connections from one address at most)


def fill(sp):
    db = sqlite3.connect(os.path.join(sp.data, "sealpipe.db"), timeout=30)
    db.execute("""WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ? - 1)
        INSERT INTO data (device, variable, type, value, time, received_at)
        SELECT 'q-01', 'v' || (i % 4), 'number', i, 1796000000000 + i * 1000, 1796000000000
        FROM n""", (ROWS,))
    db.commit()
    db.close()


def raw_request(sp, token, path):
    """A socket that sent GET path and reads nothing yet."""
    s = socket.create_connection(("127.0.0.1", sp.http_port), timeout=30)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    return s


def timed_get(sp, token, path, timeout=60):
    con = http.client.HTTPConnection("127.0.0.1", sp.http_port, timeout=timeout)
    t0 = time.monotonic()
    con.request("GET", path, headers={"Authorization": "Bearer " + token})
    r = con.getresponse()
    body = r.read()
    con.close()
    return r.status, body, time.monotonic() - t0


def abandoned(c, sp, token):
    _, _, one = timed_get(sp, token, SLOW)
    socks = [raw_request(sp, token, SLOW) for _ in range(20)]
    time.sleep(0.3)
    for s in socks:
        s.close()  # the clients give up while their requests wait
    time.sleep(0.2)
    st, _, took = timed_get(sp, token, "/api/v1/metrics")
    c.check(st == 200 and took < 3 * one + 1,
            f"20 abandoned queries ({one:.2f} s each) are skipped: the next request waited "
            f"{took:.2f} s, not ~{20 * one:.0f} s")


def stop_with_queue(c, sp, token):
    results = []

    def one():
        try:
            st, body, _ = timed_get(sp, token, SLOW)
            code = json.loads(body).get("error", {}).get("code") if st != 200 else None
            results.append((st, code))
        except (OSError, http.client.HTTPException) as e:
            results.append(("no answer", type(e).__name__))

    threads = [threading.Thread(target=one) for _ in range(N_STOP)]
    for t in threads:
        t.start()
    time.sleep(0.8)
    c.eq(sp.stop(), 0, f"the daemon stops with {N_STOP} API requests queued")
    for t in threads:
        t.join(30)
    bad = [r for r in results if not (r[0] == 200 or (r[0] == 503 and r[1] == "stopping"))]
    c.check(len(results) == N_STOP and not bad,
            f"every queued request got an answer: 200, or 503 stopping ({results})")


def bodies(c, sp, token):
    con = http.client.HTTPConnection("127.0.0.1", sp.http_port, timeout=10)
    try:
        con.request("GET", "/api/v1/metrics", body=b"x" * 100000,
                    headers={"Authorization": "Bearer " + token})
        r = con.getresponse()
        status, doc = r.status, json.loads(r.read())
    except (OSError, http.client.HTTPException) as e:
        status, doc = "no answer", {"error": {"code": type(e).__name__}}
    c.check(status == 413 and doc["error"]["code"] == "payload_too_large",
            f"a 100 KB body announced: 413 payload_too_large ({status}, {doc})")
    con.close()
    st, _, _ = timed_get(sp, token, "/api/v1/metrics")
    c.eq(st, 200, "the API answers on")


def test(c, tmp, started):
    sp = h.Sealpipe(tmp, net=True)
    sp.add_device("q-01", "--cipher", "none")
    token = json.loads(sp.cli("admin", "token", "add", "--json").stdout)["token"]
    sp.start()
    started.append(sp)
    fill(sp)
    bodies(c, sp, token)
    abandoned(c, sp, token)
    stop_with_queue(c, sp, token)
    log = sp.read_log()
    c.check("leaked" not in log and "ERROR" not in log, "no error in the daemon's log")


if __name__ == "__main__":
    sys.exit(h.run(test))
