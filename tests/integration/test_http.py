"""TagoTiP's HTTP binding (issue 12, points 4, 6 and 9; TagoTipServers.md §2 and
§2.9, TagoTiPs.md §9), played by Python's http.client alone, with envelopes
sealed and opened by the independent reference (tagotips_ref.py), against
devices made with the real CLI:

- PUSH stored exactly, PULL reads it back, HEAD answers 204, a pending command
  comes in X-TagoTiP-CMD (and turns a HEAD into a 200);
- every status of §2.5 (200, 204, 400, 401, 404 for an unknown device and for
  an unknown variable, 413; 405 and a 404 for other paths) and of §2.9 (200
  with a sealed ACK, 400 ACK|ERR|auth_failed for a wrong key or an unknown
  device, 400 unsupported_version, 413 envelope_too_large);
- an envelope sent twice is answered twice and stored once; an old counter
  is answered ERR|invalid_seq inside a sealed ACK;
- bodies past the transport's hard bound are refused at once (413);
- commit before answer: while another process holds sealpipe.db's write lock
  no answer arrives; after the release exactly one row is stored; a commit
  that fails is a 503 with Retry-After, and so is a request in flight when the
  daemon stops; the retry is stored once;
- the same over HTTPS with a self-signed certificate made here (openssl).
"""

import http.client
import json
import os
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402
import tagotips_ref as ref  # noqa: E402

BODY = "[temperature:=32#C;humidity:=65#%]"
LIMIT = 256 * 1024  # SP_LIMIT_PAYLOAD
HOLD_S = 3.0  # under the daemon's 5 s busy timeout: the commit waits, then succeeds


class Client:
    """One HTTP(S) connection per request, as a constrained device makes it."""

    def __init__(self, port, tls_ca=None, source=None):
        """source: the address to connect from (127.0.0.x: Linux routes all of
        127/8 to lo, so a second "host" on loopback)."""
        self.port = port
        self.ctx = ssl.create_default_context(cafile=tls_ca) if tls_ca else None
        self.source = (source, 0) if source else None

    def conn(self, timeout=15):
        if self.ctx:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                               context=self.ctx, source_address=self.source)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout,
                                          source_address=self.source)

    def req(self, method, path, body=None, auth=None, headers=None, timeout=15, authz=None):
        """(status, headers as a list of pairs, body bytes). auth: the hash for
        "Authorization: TagoTiP <auth>"; authz: the header's whole value."""
        hdrs = dict(headers or {})
        if auth is not None:
            hdrs["Authorization"] = "TagoTiP " + auth
        if authz is not None:
            hdrs["Authorization"] = authz
        c = self.conn(timeout)
        try:
            c.request(method, path, body=body, headers=hdrs)
            r = c.getresponse()
            return r.status, r.getheaders(), r.read()
        finally:
            c.close()


def header(hdrs, name):
    return [v for k, v in hdrs if k.lower() == name.lower()]


def self_signed(tmp):
    cert, key = os.path.join(tmp, "http.crt"), os.path.join(tmp, "http.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def data_rows(sp, serial):
    return sp.rows("SELECT variable, value, unit FROM data WHERE device = ? ORDER BY variable",
                   serial)


def seal(dev, method, counter, inner, key=None):
    """A TagoTiP/S envelope for a device of add_device(), sealed by the reference."""
    suite = ref.SUITE_BY_NAME[dev["cipher"]].id
    return ref.seal(bytes.fromhex(key or dev["key"]), suite, method, counter,
                    bytes.fromhex(dev["auth_hash"]), ref.device_hash(dev["serial"]), inner)


def opened(dev, body):
    o = ref.open_envelope(bytes.fromhex(dev["key"]), body)
    return o.method, o.inner.decode()


def test_plain(c, sp, cl, plain):
    ah, path = plain["auth_hash"], "/v1/tip/" + plain["serial"]
    st, hd, body = cl.req("POST", path, BODY, ah, {"Content-Type": "text/plain"})
    c.eq((st, body), (200, b"2"), "§2.8 PUSH: 200 with the count")
    c.eq(header(hd, "Content-Type"), ["text/plain"], "PUSH answer is text/plain")
    c.eq(data_rows(sp, plain["serial"]),
         [{"variable": "humidity", "value": 65, "unit": "%"},
          {"variable": "temperature", "value": 32, "unit": "C"}], "PUSH stored exactly")

    st, _, body = cl.req("GET", path + "?variables=temperature,humidity", auth=ah)
    text = body.decode()
    c.check(st == 200 and text.startswith("[temperature:=32#C") and ";humidity:=65#%" in text,
            f"§2.8 PULL: 200 with the values in TagoTiP syntax ({st} {text!r})")
    st, _, body = cl.req("GET", path + "?variables=nothing_here", auth=ah)
    c.eq((st, body), (404, b"variable_not_found"), "PULL of unknown variables: 404")

    st, hd, body = cl.req("HEAD", path, auth=ah)
    c.eq((st, body, header(hd, "X-TagoTiP-CMD")), (204, b"", []), "§2.8 PING: 204, no command")

    st, _, body = cl.req("POST", path, "[temperature:=]", ah)
    c.eq((st, body), (400, b"invalid_payload"), "a malformed body: 400 invalid_payload")
    st, _, body = cl.req("POST", path, BODY, "0123456789abcdef")
    c.eq((st, body), (401, b"invalid_token"), "an Authorization hash of no profile: 401")
    for bad in ("", "Bearer " + ah, "TagoTiP", "TagoTiP a b", "TagoTiP" + ah):
        st, _, body = cl.req("POST", path, BODY, authz=bad)
        c.eq((st, body), (401, b"invalid_token"), f"Authorization {bad!r}: 401 at once")
    st, _, body = cl.req("POST", path, BODY)
    c.eq((st, body), (401, b"invalid_token"), "no Authorization header: 401")
    st, _, body = cl.req("POST", "/v1/tip/ghost-01", BODY, ah)
    c.eq((st, body), (404, b"device_not_found"), "an unknown serial: 404 device_not_found")
    for bad in ("/v1/tip/a.b", "/v1/tip/a%2Fb", "/v1/tip/a/b", "/v1/tip/",
                path + "%00x", path + "%2F"):
        st, _, body = cl.req("POST", bad, BODY, ah)
        c.eq((st, body), (404, b"device_not_found"), f"{bad}: not a serial, 404")
    st, _, body = cl.req("POST", "/v2/tip/" + plain["serial"], BODY, ah)
    c.eq((st, body), (404, b"not_found"), "another path: 404")
    st, hd, _ = cl.req("PUT", path, BODY, ah)
    c.eq((st, header(hd, "Allow")), (405, ["POST, GET, HEAD"]), "PUT: 405 with Allow")
    st, hd, _ = cl.req("GET", "/v1/tips")
    c.eq((st, header(hd, "Allow")), (405, ["POST"]), "GET /v1/tips: 405 with Allow")


def test_oversize(c, sp, cl, plain):
    ah, path = plain["auth_hash"], "/v1/tip/" + plain["serial"]
    before = sp.count("SELECT count(*) n FROM dead_letters")
    big = "[x:=" + "1" * (LIMIT + 100) + "]"
    st, _, body = cl.req("POST", path, big, ah)
    c.eq((st, body), (413, b"payload_too_large"), "a body over SP_LIMIT_PAYLOAD: 413")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters") == before + 1,
               what="the oversized body dead-lettered")
    # Far past the hard bound: refused from its Content-Length, before any body is sent.
    s = socket.create_connection(("127.0.0.1", cl.port), timeout=10) if not cl.ctx else None
    if s:
        got = b""
        try:
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: TagoTiP {ah}\r\n"
                      f"Content-Length: {1 << 30}\r\n\r\n".encode())
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (ConnectionResetError, BrokenPipeError, socket.timeout):
            pass
        s.close()
        c.check(got.startswith(b"HTTP/1.1 413") and got.endswith(b"payload_too_large"),
                f"1 GiB announced: 413 at once, the connection closed ({got[:60]!r})")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters"), before + 1,
         "the refused request stored nothing")


def test_envelopes(c, sp, cl, dev):
    serial = dev["serial"]
    env = seal(dev, ref.PUSH, 10, f"{serial}|[pressure:=1013#hPa]")
    st, hd, body = cl.req("POST", "/v1/tips", env, headers={
        "Content-Type": "application/octet-stream"})
    c.eq(header(hd, "Content-Type"), ["application/octet-stream"], "§2.9: an envelope answers one")
    c.eq((st, opened(dev, body)), (200, (ref.ACK, "OK|1")), "§2.9 PUSH: 200, sealed ACK OK|1")
    st, _, body = cl.req("POST", "/v1/tips", env)
    c.eq((st, opened(dev, body)), (200, (ref.ACK, "OK|1")), "the same envelope again: answered")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE device = ? AND variable = 'pressure'",
                  serial), 1, "... and stored once")

    old = seal(dev, ref.PUSH, 9, f"{serial}|[pressure:=1]")
    st, _, body = cl.req("POST", "/v1/tips", old)
    c.eq((st, opened(dev, body)), (200, (ref.ACK, "ERR|invalid_seq")),
         "an old counter: sealed ERR|invalid_seq (TagoTiPs.md §9)")
    st, _, body = cl.req("POST", "/v1/tips", seal(dev, ref.PULL, 11, f"{serial}|[pressure]"))
    m, inner = opened(dev, body)
    c.check(st == 200 and inner.startswith("OK|[pressure:=1013#hPa"),
            f"sealed PULL over HTTP reads it back ({st} {inner!r})")
    st, _, body = cl.req("POST", "/v1/tips", seal(dev, ref.PING, 12, serial))
    c.eq((st, opened(dev, body)), (200, (ref.ACK, "PONG")), "sealed PING: PONG")

    wrong = seal(dev, ref.PUSH, 13, f"{serial}|[x:=1]", key="11" * len(bytes.fromhex(dev["key"])))
    st, hd, body = cl.req("POST", "/v1/tips", wrong)
    c.eq((st, body, header(hd, "Content-Type")), (400, b"ACK|ERR|auth_failed", ["text/plain"]),
         "a wrong key: 400 ACK|ERR|auth_failed in plain text")
    ghost = dict(dev, serial="ghost-02")
    st, _, body = cl.req("POST", "/v1/tips", seal(ghost, ref.PUSH, 1, "ghost-02|[x:=1]"))
    c.eq((st, body), (400, b"ACK|ERR|auth_failed"), "an unknown device: 400 auth_failed")
    v1 = bytearray(seal(dev, ref.PUSH, 14, f"{serial}|[x:=1]"))
    v1[0] |= 1 << 3
    st, _, body = cl.req("POST", "/v1/tips", bytes(v1))
    c.eq((st, body), (400, b"ACK|ERR|unsupported_version"), "version 1: 400 unsupported_version")
    huge = seal(dev, ref.PUSH, 15, f"{serial}|[s:=\"" + "a" * 17000 + "\"]")
    st, _, body = cl.req("POST", "/v1/tips", huge)
    c.eq((st, body), (413, b"ACK|ERR|envelope_too_large"),
         "an envelope over TagoTiPs.md §5.5: 413 envelope_too_large")
    st, _, body = cl.req("POST", "/v1/tips", huge[:21] + b"\0" * (LIMIT + 10))
    c.eq((st, body), (413, b"ACK|ERR|envelope_too_large"), "one over SP_LIMIT_PAYLOAD: 413")


def test_command(c, sp, cl, plain):
    """§2.6: a command queued for the device comes with the next answer."""
    ah, path = plain["auth_hash"], "/v1/tip/" + plain["serial"]
    sp.cli("device", "cmd", plain["serial"], "reboot")
    st, hd, body = cl.req("HEAD", path, auth=ah)
    c.eq((st, header(hd, "X-TagoTiP-CMD")), (200, ["reboot"]),
         "HEAD with a command pending: 200 and X-TagoTiP-CMD")
    st, hd, _ = cl.req("HEAD", path, auth=ah)
    c.eq((st, header(hd, "X-TagoTiP-CMD")), (204, []), "the command is delivered once")
    sp.cli("device", "cmd", plain["serial"], "ota=https://example.com/v2.1.bin")
    st, hd, body = cl.req("POST", path, "[cmdtest:=1]", ah)
    c.eq((st, body, header(hd, "X-TagoTiP-CMD")),
         (200, b"1", ["ota=https://example.com/v2.1.bin"]), "a PUSH answer carries it too")


def test_commit_first(c, sp, cl, plain):
    """No answer while the bucket cannot commit; one row after the release."""
    ah, path = plain["auth_hash"], "/v1/tip/" + plain["serial"]
    con = sqlite3.connect(os.path.join(sp.data, "sealpipe.db"), timeout=10, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    locked_at = time.monotonic()
    got = []
    t = threading.Thread(target=lambda: got.append(cl.req("POST", path, "[locked:=7]", ah,
                                                          timeout=30)))
    t.start()
    while time.monotonic() - locked_at < HOLD_S and not got:
        time.sleep(0.05)
    c.eq(got, [], f"no answer while sealpipe.db is locked ({HOLD_S:.0f} s)")
    con.execute("ROLLBACK")
    con.close()
    t.join(30)
    c.check(got and got[0][0] == 200 and got[0][2] == b"1",
            f"the answer after the release: {got[0][:1] + got[0][2:] if got else None}")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE device = ? AND variable = 'locked'",
                  plain["serial"]), 1, "stored exactly once")


def test_commit_fails(c, sp, cl, plain):
    """A commit that fails (the lock held past the daemon's busy timeout):
    503 with Retry-After, nothing stored; the device's retry is stored once."""
    ah, path = plain["auth_hash"], "/v1/tip/" + plain["serial"]
    con = sqlite3.connect(os.path.join(sp.data, "sealpipe.db"), timeout=10, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    try:
        st, hd, body = cl.req("POST", path, "[failed:=8]", ah, timeout=60)
    finally:
        con.execute("ROLLBACK")
        con.close()
    c.check(st == 503 and body == b"server_error" and header(hd, "Retry-After"),
            f"a failed commit: 503 server_error with Retry-After ({st} {body!r} {hd})")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable = 'failed'"), 0, "nothing stored")
    st, _, body = cl.req("POST", path, "[failed:=8]", ah)
    c.eq((st, body), (200, b"1"), "the retry is answered")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable = 'failed'"), 1, "and stored once")


def test_port_taken(c, tmp, sp):
    """A second daemon on the same HTTP port refuses to start and says why
    (it must not share the port and take half of the requests)."""
    two = h.Sealpipe(os.path.join(tmp, "two"), net=True, extra=("--http-port", str(sp.http_port)))
    try:
        two.start()
        started = True
    except AssertionError:
        started = False
    finally:
        two.stop()
        two.kill_embedded_broker()
    c.check(not started and f"http: cannot listen on 127.0.0.1:{sp.http_port}" in two.read_log(),
            "a second daemon on the HTTP port: refused at start, the listener named")


def test_shutdown(c, sp, cl, plain):
    """SIGTERM with a request waiting for a commit that cannot happen: it is
    answered 503 (the device retries), nothing is stored, the daemon exits 0."""
    ah, path = plain["auth_hash"], "/v1/tip/" + plain["serial"]
    con = sqlite3.connect(os.path.join(sp.data, "sealpipe.db"), timeout=10, isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    got = []
    t = threading.Thread(target=lambda: got.append(cl.req("POST", path, "[late:=9]", ah,
                                                          timeout=60)))
    t.start()
    time.sleep(1.0)
    rc = sp.stop()
    t.join(30)
    con.execute("ROLLBACK")
    con.close()
    c.check(got and got[0][0] == 503 and header(got[0][1], "Retry-After"),
            f"a request in flight at shutdown: 503 with Retry-After ({got[0][:1] if got else None})")
    c.eq(rc, 0, "the daemon exits 0")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable = 'late'"), 0, "nothing stored")


def closed_at_once(socks):
    """How many of socks the server has closed (EOF or reset), without waiting."""
    n = 0
    for s in socks:
        s.setblocking(False)
        try:
            n += s.recv(1) == b""
        except BlockingIOError:
            pass
        except ConnectionResetError:
            n += 1
    return n


def slow_connection(port, path, source="127.0.0.1"):
    """A connection that sends the start of a request's headers, then stalls."""
    s = socket.socket()
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    s.sendall(b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n")
    return s


def test_slow_clients(c, sp, cl, plain):
    """Slowloris: one address opens 300 connections that never finish their
    headers (more than the old 256-connection limit of the listener). Past 32
    from one address libmicrohttpd closes new ones at once; a device on
    another address (127.0.0.2) is served meanwhile; a connection silent for
    10 s before its headers are in is closed."""
    ah, path = plain["auth_hash"], "/v1/tip/" + plain["serial"]
    log_from = len(sp.read_log())
    started = time.monotonic()
    lone = slow_connection(sp.http_port, path, "127.0.0.3")
    slow = [slow_connection(sp.http_port, path) for _ in range(300)]
    time.sleep(0.5)
    c.eq(closed_at_once(slow), 300 - 32, "past 32 connections from one address: closed at once")
    other = Client(sp.http_port, source="127.0.0.2")
    try:
        st, _, body = other.req("POST", path, "[slowloris:=1]", ah, timeout=10)
    except (OSError, http.client.HTTPException) as e:
        st, body = None, repr(e).encode()
    c.eq((st, body), (200, b"1"), "a device on another address is served meanwhile")
    for s in slow:
        s.close()
    time.sleep(0.3)
    st, _, _ = cl.req("HEAD", path, auth=ah)
    c.eq(st, 204, "the address is served again once its connections are gone")
    lone.settimeout(max(1.0, 14 - (time.monotonic() - started)))
    try:
        gone = lone.recv(1) == b""
    except ConnectionResetError:
        gone = True
    except socket.timeout:
        gone = False
    c.check(gone and time.monotonic() - started >= 9,
            "a connection silent for 10 s before its headers are in is closed")
    lone.close()
    lines = sp.read_log()[log_from:].count("library=libmicrohttpd")
    c.check(lines <= 25, f"300 refused or dropped connections log a few lines ({lines})")


def test_console_tls(c, sp, cert):
    """The web console, its API and the inspector's stream over HTTPS, with
    the daemon's certificate (issue #16)."""
    token = json.loads(sp.cli("admin", "token", "add", "--perm", "read", "--json").stdout)["token"]
    ctx = ssl.create_default_context(cafile=cert)
    con = http.client.HTTPSConnection("127.0.0.1", sp.https_port, context=ctx, timeout=10)
    con.request("GET", "/")
    r = con.getresponse()
    page = r.read()
    c.check(r.status == 200 and b"sealpipe console" in page
            and "script-src 'self'" in (r.getheader("Content-Security-Policy") or ""),
            f"HTTPS: the console's page, with its CSP ({r.status})")
    con.request("GET", "/api/v1/devices", headers={"Authorization": "Bearer " + token})
    r = con.getresponse()
    doc = json.loads(r.read())
    c.check(r.status == 200 and doc["count"] == 3, f"HTTPS: the API ({r.status})")
    con.request("GET", "/api/v1/inspector?device=http-01&since=1h",
                headers={"Authorization": "Bearer " + token})
    r = con.getresponse()
    head = b""
    while b'"kind":"live"' not in head:
        chunk = r.read1(4096)
        if not chunk:
            break
        head += chunk
    c.check(r.status == 200 and b"id: " in head and b'"kind":"live"' in head,
            "HTTPS: the inspector's stream, the kept events then live")
    con.close()


def test(c, tmp, started):
    cert, key = self_signed(tmp)
    sp = h.Sealpipe(tmp, net=True, extra=("--tls-cert", cert, "--tls-key", key,
                                          "--tls-port", str(h.free_port())))
    plain = sp.add_device("http-01", "--cipher", "none")
    sealed = sp.add_device("https-01", "--cipher", "aes-128-ccm")
    chacha = sp.add_device("https-02", "--cipher", "chacha20-poly1305")
    sp.start()
    started.append(sp)
    log = sp.read_log()
    c.check(f"http listen=127.0.0.1:{sp.http_port}" in log and
            f"https listen=127.0.0.1:{sp.https_port}" in log, "one log line per listener")

    cl = Client(sp.http_port)
    test_plain(c, sp, cl, plain)
    test_oversize(c, sp, cl, plain)
    test_envelopes(c, sp, cl, sealed)
    test_command(c, sp, cl, plain)
    test_commit_first(c, sp, cl, plain)
    test_commit_fails(c, sp, cl, plain)
    test_slow_clients(c, sp, cl, plain)

    tls = Client(sp.https_port, tls_ca=cert)
    st, _, body = tls.req("POST", "/v1/tip/http-01", "[over_tls:=1]", plain["auth_hash"])
    c.eq((st, body), (200, b"1"), "HTTPS PUSH with the self-signed certificate")
    env = seal(chacha, ref.PUSH, 1, "https-02|[over_tls:=2]")
    st, _, body = tls.req("POST", "/v1/tips", env)
    c.eq((st, opened(chacha, body)), (200, (ref.ACK, "OK|1")), "HTTPS /v1/tips (ChaCha20)")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable = 'over_tls'"), 2,
         "both stored")
    test_console_tls(c, sp, cert)
    test_port_taken(c, tmp, sp)
    test_shutdown(c, sp, cl, plain)


if __name__ == "__main__":
    sys.exit(h.run(test))
