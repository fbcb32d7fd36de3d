"""The daemon's HTTP API (issue #16, point 1; runtime/api/api.c), from the
outside: admin tokens from `sealpipe admin token add`, plain HTTP requests
with urllib, every reply checked against docs/openapi.json (its status is
one the route declares, its body matches the declared schema). Checked:
- no token, a malformed header, an unknown or a revoked token: 401 with
  WWW-Authenticate, and a revoked token stops working at once;
- a read token may GET; the device list and one device carry the status
  `device show` gives (counts after real MQTT publishes by the device);
- an unknown device or route: 404; POST: 405 with Allow;
- hostile names and tags come back as the exact strings, JSON-escaped;
- data and latest values: the rows `sealpipe query --json` prints for the
  same parameters (variables, qty, order, agg, interval), and its messages
  for bad ones (400);
- dead letters: the list (with `sealpipe dead-letter list`'s filters), one
  with its payload (base64 of the bytes received), a retry (202; the daemon
  runs it within a second and the dead letter counts it), a retry of what may
  not be retried (409, the reason), a read token's retry (403), GET on the
  retry route (405, Allow: POST);
- the metrics summary agrees with /metrics;
- review: the Bearer scheme in any case, spaces around the token; a %2F in
  a serial is no separator; every route refuses unknown parameters; two
  requests on one connection (keep-alive) (the time limit of a query:
  tests/unit/test_dataquery.c);
- tokens never appear in the daemon's log."""

import base64
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

SPEC_PATH = os.path.join(h.SOURCE, "docs", "openapi.json")
HOSTILE = '<img src=x onerror=alert(1)>"\\'


def deref(spec, node):
    """node with its $ref followed (#/a/b/c only)."""
    while isinstance(node, dict) and "$ref" in node:
        target = spec
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def check_schema(spec, schema, value, where, errors):
    """A small JSON Schema check: type, nullable, required, properties, items."""
    schema = deref(spec, schema)
    if value is None:
        if not schema.get("nullable"):
            errors.append(f"{where}: null where {schema.get('type')} is declared")
        return
    kinds = {"object": dict, "array": list, "string": str, "boolean": bool}
    t = schema.get("type")
    if t == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = t is None or isinstance(value, kinds[t])
    if not ok:
        errors.append(f"{where}: {value!r} is no {t}")
        return
    if t == "object":
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{where}: {key} missing")
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                check_schema(spec, sub, value[key], f"{where}.{key}", errors)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, v in value.items():
                check_schema(spec, extra, v, f"{where}.{key}", errors)
    if t == "array":
        for i, v in enumerate(value):
            check_schema(spec, schema.get("items", {}), v, f"{where}[{i}]", errors)


class Api:
    def __init__(self, sp, spec):
        self.base = f"http://127.0.0.1:{sp.http_port}"
        self.spec = spec
        self.seen = set()  # (route, method, status) checked against the spec

    def call(self, route, path, token=None, method="GET", header=None):
        req = urllib.request.Request(self.base + path, method=method)
        if header is not None:
            req.add_header("Authorization", header)
        elif token:
            req.add_header("Authorization", "Bearer " + token)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, headers, body = r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            status, headers, body = e.code, e.headers, e.read()
        doc = json.loads(body) if body else None
        self.check(route, method, status, doc)
        return status, headers, doc

    def check(self, route, method, status, doc):
        """The reply against the spec: a declared status, a matching body."""
        errors = []
        verb = "get" if method == "HEAD" else method.lower()  # HEAD: GET's headers, no body
        op = self.spec["paths"].get(route, {}).get(verb) if route else None
        if route and op is None and status != 405:
            errors.append(f"{method} {route} is not in the spec")
        if op is not None:
            resp = op["responses"].get(str(status))
            if resp is None:
                errors.append(f"status {status} is not declared for {method} {route}")
            elif method != "HEAD":
                resp = deref(self.spec, resp)
                schema = resp["content"]["application/json"]["schema"]
                check_schema(self.spec, schema, doc, "body", errors)
        elif status >= 400:
            check_schema(self.spec, {"$ref": "#/components/schemas/Error"}, doc, "body", errors)
        if errors:
            raise AssertionError(f"{method} {route} -> {status}: " + "; ".join(errors))
        self.seen.add((route, method, status))


def publish(sp, serial, n):
    import paho.mqtt.client as mqtt
    cl = sp.client(sp.creds(serial), client_id=f"{serial}-api", protocol=mqtt.MQTTv311)
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    for i in range(n):
        cl.publish(f"$tip/{serial}/push", f"[t:={i}#C;h:={50 + i}]",
                   qos=1).wait_for_publish(timeout=10)
    cl.disconnect()
    cl.loop_stop()


def cli_rows(sp, *args):
    r = subprocess.run([h.SEALPIPE, "query", "api-01", "--json", "--data-dir", sp.data, *args],
                       capture_output=True, text=True, check=True)
    return [json.loads(line) for line in r.stdout.splitlines() if line]


def data_routes(c, sp, api, token):
    data = "/api/v1/devices/{serial}/data"
    for params, args in ((
            [], []),
            ([("variable", "T"), ("qty", "3")], ["--variable", "T", "--qty", "3"]),
            ([("variable", "t"), ("variable", "h"), ("order", "asc")],
             ["--variable", "t", "--variable", "h", "--order", "asc"]),
            ([("agg", "avg"), ("interval", "1h")], ["--agg", "avg", "--interval", "1h"]),
            ([("start", "1h"), ("skip", "2"), ("qty", "100")], ["--start", "1h", "--skip", "2",
                                                                  "--qty", "100"])):
        path = "/api/v1/devices/api-01/data?" + urllib.parse.urlencode(params)
        st, _, doc = api.call(data, path, token)
        want = cli_rows(sp, *args)
        c.check(st == 200 and doc["data"] == want and doc["count"] == len(want),
                f"data {params}: the rows of sealpipe query {' '.join(args)} ({len(want)})")
    st, _, doc = api.call("/api/v1/devices/{serial}/latest", "/api/v1/devices/api-01/latest", token)
    c.check(st == 200 and doc["data"] == cli_rows(sp, "--agg", "last", "--qty", "10000")
            and sorted(r["variable"] for r in doc["data"]) == ["h", "t"],
            f"latest: the newest record of each variable ({doc})")
    for params, says in (([("qty", "x")], "qty: 'x' is not a whole number from 1 to 10000"),
                         ([("interval", "1h")], "interval needs agg"),
                         ([("order", "up")], "order: 'up' is not asc or desc"),
                         ([("nope", "1")], "an unknown parameter nope"),
                         ([("qty", "1"), ("qty", "2")], "a repeated parameter qty")):
        path = "/api/v1/devices/api-01/data?" + urllib.parse.urlencode(params)
        st, _, doc = api.call(data, path, token)
        c.check(st == 400 and doc["error"]["code"] == "bad_request"
                and says in doc["error"]["message"], f"{params}: 400, {says!r} ({doc})")
    st, _, doc = api.call(data, "/api/v1/devices/nope/data", token)
    c.check(st == 404 and doc["error"]["code"] == "device_not_found",
            f"data of an unknown device: 404 ({doc})")


def dead_letter_routes(c, sp, api, full, read):
    import paho.mqtt.client as mqtt
    bad, big = b"[temp:=abc]", bytes(range(256)) * 1100
    cl = sp.client(sp.creds("api-01"), client_id="api-01-dl", protocol=mqtt.MQTTv311)
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    for payload in (bad, big):
        cl.publish("$tip/api-01/push", payload, qos=1).wait_for_publish(timeout=10)
    cl.disconnect()
    cl.loop_stop()
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters") == 2, what="2 dead letters")
    lst, one, retry = ("/api/v1/dead-letters", "/api/v1/dead-letters/{id}",
                       "/api/v1/dead-letters/{id}/retry")
    st, _, doc = api.call(lst, lst, read)
    reasons = {d["reason"]: d for d in doc["dead_letters"]}
    c.check(st == 200 and sorted(reasons) == ["invalid_body", "too_large"],
            f"the list ({[(d['id'], d['reason']) for d in doc['dead_letters']]})")
    cli = json.loads(sp.cli("dead-letter", "list", "--json").stdout)
    c.eq(sorted(d["id"] for d in doc["dead_letters"]), sorted(d["id"] for d in cli),
         "the ids `sealpipe dead-letter list` gives")
    st, _, doc = api.call(lst, lst + "?reason=too_large&limit=5", read)
    c.check(st == 200 and [d["reason"] for d in doc["dead_letters"]] == ["too_large"],
            "filtered by reason")
    st, _, doc = api.call(lst, lst + "?limit=0", read)
    c.check(st == 400 and "limit" in doc["error"]["message"], f"a bad limit: 400 ({doc})")

    inv, tl = reasons["invalid_body"]["id"], reasons["too_large"]["id"]
    st, _, doc = api.call(one, f"{lst}/{inv}", read)
    c.check(st == 200 and base64.b64decode(doc["payload_base64"]) == bad
            and doc["topic"] == "$tip/api-01/push" and doc["retry_refused"] is None,
            f"one, with its payload as received ({st})")
    st, _, doc = api.call(one, f"{lst}/999999", read)
    c.check(st == 404 and doc["error"]["code"] == "not_found", f"an unknown id: 404 ({doc})")
    st, _, doc = api.call(retry, f"{lst}/{inv}/retry", read, method="POST")
    c.check(st == 403 and doc["error"]["code"] == "forbidden", f"a read token's retry: 403 ({doc})")
    st, hd, doc = api.call(retry, f"{lst}/{inv}/retry", full)
    c.check(st == 405 and hd.get("Allow") == "POST", f"GET on the retry route: 405 ({st})")
    st, _, doc = api.call(retry, f"{lst}/{tl}/retry", full, method="POST")
    c.check(st == 409 and doc["error"]["code"] == "conflict", f"too_large: 409 ({doc})")
    st, _, doc = api.call(retry, f"{lst}/{inv}/retry", full, method="POST")
    c.check(st == 202 and doc == {"id": inv, "queued": True, "force": False},
            f"a retry is queued: 202 ({doc})")
    h.wait_for(lambda: api.call(one, f"{lst}/{inv}", read)[2]["retries"] == 1,
               what="the daemon retried it (the same bytes fail again)")
    c.check(True, "the daemon ran the retry: the dead letter counts it")


def review_fixes(c, sp, api, token):
    devs = "/api/v1/devices"
    for header in ("bearer " + token, "BEARER  " + token + " "):
        st, _, _ = api.call(devs, devs, header=header)
        c.eq(st, 200, f"Authorization {header[:8]!r}...: the scheme in any case, spaces around")
    st, _, doc = api.call("/api/v1/devices/{serial}", "/api/v1/devices/api-01%2Fdata", token)
    c.check(st == 404 and doc["error"]["code"] == "device_not_found",
            f"%2F in a serial is no separator ({st}, {doc})")
    for route, path in ((devs, devs + "?junk=1"), ("/api/v1/devices/{serial}/latest",
                                                   "/api/v1/devices/api-01/latest?qty=1")):
        st, _, doc = api.call(route, path, token)
        c.check(st == 400 and "unknown parameter" in doc["error"]["message"],
                f"{path}: an unknown parameter is 400 ({st})")
    con = http.client.HTTPConnection("127.0.0.1", sp.http_port, timeout=10)
    statuses = []
    for _ in range(2):
        con.request("GET", devs, headers={"Authorization": "Bearer " + token})
        r = con.getresponse()
        r.read()
        statuses.append((r.status, r.getheader("Connection")))
    sock = con.sock
    con.request("GET", devs, headers={"Authorization": "Bearer " + token})
    con.getresponse().read()
    c.check(statuses[0][0] == 200 and statuses[0][1] != "close" and con.sock is sock,
            f"keep-alive: one connection, several requests ({statuses})")
    con.close()


class Stream:
    """GET /api/v1/inspector read as Server-Sent Events: events() gives
    (id, data) pairs as they come."""

    def __init__(self, sp, query, token, timeout=10):
        self.con = http.client.HTTPConnection("127.0.0.1", sp.http_port, timeout=timeout)
        self.con.request("GET", "/api/v1/inspector" + query,
                         headers={"Authorization": "Bearer " + token})
        self.r = self.con.getresponse()
        self.buf = b""

    def event(self):
        """The next event (id or None, the parsed data), or None at the end."""
        while b"\n\n" not in self.buf:
            chunk = self.r.read1(65536)
            if not chunk:
                return None
            self.buf += chunk
        block, self.buf = self.buf.split(b"\n\n", 1)
        ev_id, data = None, None
        for line in block.decode().split("\n"):
            if line.startswith("id: "):
                ev_id = int(line[4:])
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        return (ev_id, data) if data is not None else ("comment", block.decode())

    def until(self, pred, what):
        seen = []
        while True:
            ev = self.event()
            if ev is None:
                raise AssertionError(f"stream ended before {what}: {seen}")
            seen.append(ev)
            if pred(ev):
                return seen

    def close(self):
        self.con.close()


def inspector_route(c, sp, api, full, read):
    route = "/api/v1/inspector"
    for path, token, status, code, what in (
            (route, None, 401, "unauthorized", "no token"),
            (route + "?device=nope", read, 404, "device_not_found", "an unknown device"),
            (route + "?since=soon", read, 400, "bad_request", "since is not a duration"),
            (route + "?follow=1", read, 400, "bad_request", "an unknown parameter"),
            (route + "?plaintext=1", read, 403, "forbidden", "plaintext with a read token")):
        st, hd, doc = api.call(route, path, token)
        c.check(st == status and doc["error"]["code"] == code, f"inspector, {what}: {status} ({doc})")

    s = Stream(sp, "?device=api-01&since=1h", read)
    c.check(s.r.status == 200 and s.r.getheader("Content-Type") == "text/event-stream",
            f"inspector: a stream of Server-Sent Events ({s.r.status})")
    api.seen.add((route, "GET", 200))
    kept = s.until(lambda ev: ev[1].get("kind") == "live", "the live marker")
    ids = [i for i, d in kept[:-1]]
    c.check(len(kept) > 5 and all(d["device"] == "api-01" for _, d in kept[:-1])
            and ids == [d["seq"] for _, d in kept[:-1]] and ids == sorted(ids),
            f"the kept events first, in order, each with its seq as id ({len(kept)} events)")
    others = [Stream(sp, "", full) for _ in range(15)]  # 16 streams in all: the limit
    extra = Stream(sp, "", full)
    body = json.loads(extra.r.read() or b"{}")
    c.check(extra.r.status == 503 and body.get("error", {}).get("code") == "too_many_watchers",
            f"a 17th stream: 503 too_many_watchers ({extra.r.status}, {body})")
    extra.close()
    st, _, _ = api.call("/api/v1/devices", "/api/v1/devices", read)
    c.eq(st, 200, "with 16 streams waiting, the API still answers")
    code = post_tip(sp, "api-01", "[live:=1]")
    c.eq(code, 200, "and TagoTiP over HTTP too")
    got = s.until(lambda ev: ev[1].get("kind") == "stored", "the stored event")
    c.check(any(d.get("kind") == "message" and d.get("transport") == "http" for _, d in got),
            "a push over HTTP appears live in the stream")
    for o in others:
        o.until(lambda ev: ev[1].get("kind") == "stored", "the stored event (every device)")
    c.check(True, "every one of the 16 streams got it")
    for o in others:
        o.close()
    # The browser leaves a page: its stream's connection closes while nothing
    # is sent. The slot must come back at once, not at the next keep-alive.
    t0 = time.monotonic()
    again = h.wait_for(lambda: reopen(sp, full, 15), timeout=10,
                       what="15 streams again after 15 closed")
    c.check(time.monotonic() - t0 < 5,
            f"closed streams free their slots at once ({time.monotonic() - t0:.1f} s)")
    for o in again:
        o.close()

    # A revoked token's stream ends at the next keep-alive (5 s at most).
    doomed = json.loads(sp.cli("admin", "token", "add", "--name", "doomed", "--json").stdout)
    d = Stream(sp, "", doomed["token"], timeout=30)
    d.until(lambda ev: ev[1].get("kind") == "live", "the live marker")
    sp.cli("admin", "token", "revoke", "doomed")
    t0 = time.monotonic()
    got = d.until(lambda ev: ev[1].get("kind") == "ended", "the end of a revoked token's stream")
    c.check(got[-1][1].get("reason") == "unauthorized" and d.event() is None,
            f"a revoked token's stream says why and ends ({time.monotonic() - t0:.1f} s)")
    d.close()
    return s


def reopen(sp, token, n):
    """n streams, or None (each closed) when one is refused."""
    got = []
    for _ in range(n):
        st = Stream(sp, "", token)
        if st.r.status != 200:
            st.close()
            for o in got:
                o.close()
            return None
        got.append(st)
    return got


def post_tip(sp, serial, body):
    req = urllib.request.Request(f"http://127.0.0.1:{sp.http_port}/v1/tip/{serial}",
                                 data=body.encode(), method="POST")
    req.add_header("Authorization", "TagoTiP " + sp.devices[serial]["auth_hash"])
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test(c, tmp, started):
    with open(SPEC_PATH) as f:
        spec = json.load(f)
    sp = h.Sealpipe(tmp, net=True)
    sp.add_device("api-01", "--cipher", "none")
    sp.add_device("api-02", "--cipher", "none", "--name", HOSTILE, "--tag", f"k={HOSTILE}")
    full = json.loads(sp.cli("admin", "token", "add", "--name", "ops", "--json").stdout)["token"]
    read = json.loads(sp.cli("admin", "token", "add", "--perm", "read", "--json").stdout)["token"]
    gone = json.loads(sp.cli("admin", "token", "add", "--name", "gone", "--json").stdout)["token"]
    sp.start()
    started.append(sp)
    api = Api(sp, spec)
    devs = "/api/v1/devices"
    one = "/api/v1/devices/{serial}"

    for what, header in (("no token", None), ("a malformed header", "Token " + full),
                         ("an unknown token", "Bearer 00000000-0000-4000-8000-000000000000"),
                         ("a token without Bearer", full)):
        st, hd, doc = api.call(devs, devs, header=header if header else None)
        c.check(st == 401 and hd.get("WWW-Authenticate", "").startswith("Bearer")
                and doc["error"]["code"] == "unauthorized", f"{what}: 401 ({st}, {doc})")
    st, _, _ = api.call(devs, devs, gone)
    c.eq(st, 200, "a token works")
    sp.cli("admin", "token", "revoke", "gone")
    st, _, _ = api.call(devs, devs, gone)
    c.eq(st, 401, "revoked: refused at once")

    publish(sp, "api-01", 5)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE device = 'api-01'") == 10,
               what="5 pushes stored")
    st, hd, doc = api.call(devs, devs, read)
    c.check(st == 200 and hd.get("Content-Type") == "application/json"
            and hd.get("Cache-Control") == "no-store", f"a read token lists the devices ({st})")
    by = {d["serial"]: d for d in doc["devices"]}
    c.eq((doc["count"], sorted(by)), (2, ["api-01", "api-02"]), "every device")
    c.eq((by["api-01"]["status"]["messages"], by["api-01"]["status"]["records"]), (5, 10),
         "the status counts what was committed")
    show = json.loads(sp.cli("device", "show", "api-01", "--json").stdout)["status"]
    c.eq(by["api-01"]["status"]["messages"], show["messages"], "as `device show` says")
    c.eq((by["api-02"]["name"], by["api-02"]["tags"]), (HOSTILE, {"k": HOSTILE}),
         "hostile names and tags: the exact strings, JSON-escaped")

    st, _, doc = api.call(one, "/api/v1/devices/api-01", full)
    c.check(st == 200 and doc["serial"] == "api-01" and doc["status"]["last_sent"],
            f"one device ({st})")
    st, _, doc = api.call(one, "/api/v1/devices/nope", full)
    c.check(st == 404 and doc["error"]["code"] == "device_not_found", f"an unknown device: 404 ({doc})")
    st, _, doc = api.call(None, "/api/v1/nothing", full)
    c.check(st == 404 and doc["error"]["code"] == "not_found", f"an unknown route: 404 ({doc})")
    st, hd, doc = api.call(devs, devs, full, method="POST")
    c.check(st == 405 and hd.get("Allow") == "GET, HEAD", f"POST: 405 with Allow ({st})")
    st, hd, doc = api.call(devs, devs, full, method="HEAD")
    c.check(st == 200 and doc is None and int(hd.get("Content-Length", 0)) > 0,
            "HEAD: GET's headers, no body")

    data_routes(c, sp, api, read)
    dead_letter_routes(c, sp, api, full, read)

    st, _, doc = api.call("/api/v1/metrics", "/api/v1/metrics", read)
    c.check(st == 200 and doc["messages_committed"] == sp.metric("sealpipe_messages_committed_total")
            and doc["dead_letters"].get("too_large") == 1 and doc["started_at"] > 0,
            f"metrics: the daemon's counters ({doc})")
    kept = {r["reason"]: r["n"] for r in sp.rows(
        "SELECT reason, count(*) n FROM dead_letters GROUP BY reason")}
    c.eq(doc["dead_letters_kept"], kept, "metrics: the dead letters kept, by reason, as the bucket has")

    for token, perm in ((full, "full"), (read, "read")):
        st, _, doc = api.call("/api/v1/session", "/api/v1/session", token)
        c.eq((st, doc), (200, {"perm": perm}), f"session: a {perm} token says so")

    review_fixes(c, sp, api, read)
    stream = inspector_route(c, sp, api, full, read)

    log = sp.read_log()
    c.check(all(t not in log for t in (full, read, gone)), "no token in the daemon's log")
    routes = {r for r, m, s in api.seen if r and s in (200, 202)}
    c.eq(routes, set(spec["paths"]), "every route of the spec was called and checked")
    sp.stop()
    try:
        tail = stream.until(lambda ev: False, "the end")
    except AssertionError as e:
        tail = str(e)
    c.check("stream ended" in str(tail), "at stop the stream ends cleanly (its last chunk sent)")


if __name__ == "__main__":
    sys.exit(h.run(test))
