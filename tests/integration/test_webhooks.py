"""webhook(url, body, {headers, method}) (issue #17, point 4): a real device's
message runs an analysis that calls webhook(); the daemon queues the request
in webhook_outbox with the message's records and sends it between batches to
an HTTP server in this test (127.0.0.1, a free port, a thread).

Cases: 200 once, with Sealpipe-Delivery and the exact body, headers and
method; 500, 500, 200 (three attempts, one delivery id); a server that is
down (retries with growing gaps, a webhook_failed dead letter after
webhook_attempts, `dead-letter retry` once it is up: delivered once with the
same id); a server slower than webhook_timeout_ms (retried); 404 (a dead
letter at once); a host not in `webhooks` (the message fails analysis_error,
nothing queued); a 302 is not followed; kill -9 with rows pending (sent after
the restart, same id); the outbox full (a dead letter "outbox full", the
message's records stored); webhook() from tick() and run(); and a dead
letter whose retry request reaches the daemon's retry source is never run
as a message."""

import base64
import json
import os
import re
import signal
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402

HOOK = """return {
  topics = { "hook/{serial}" },
  webhooks = { "127.0.0.1", "127.0.0.2" },
  handle = function(msg)
    local r = json.decode(msg.payload)
    local body = r.body
    if r.json then body = r.json end
    if r.run then
      run_analysis("hook", { url = r.url, body = body })
    else
      webhook(r.url, body, { headers = r.headers, method = r.method })
    end
    return { variable = "sent", value = 1, metadata = { tag = r.tag } }
  end,
  run = function(ctx)
    local p = json.decode(ctx.payload)
    webhook(p.url, p.body .. " from " .. ctx.from .. " for " .. ctx.device.serial)
  end,
}
"""
TICKER = """local sent = false
return {
  schedule = "every 1s",
  webhooks = { "127.0.0.1:%(port)d" },
  tick = function(ctx)
    if not sent then
      sent = true
      webhook("http://127.0.0.1:%(port)d/tick", "tick " .. ctx.scheduled)
    end
  end,
}
"""


class Hook:
    """An HTTP server on 127.0.0.1:port recording each request; plan[path] is
    a list of answers given in turn (an int status, ("sleep", s) then 200,
    ("redirect", url)), 200 once it is empty."""

    def __init__(self, port):
        self.port = port
        self.requests = []
        self.plan = {}
        self.lock = threading.Lock()
        self.server = None

    def start(self):
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                with hook.lock:
                    hook.requests.append({"method": self.command, "path": self.path,
                                          "headers": dict(self.headers.items()), "body": body,
                                          "at": time.monotonic()})
                    todo = hook.plan.get(self.path) or []
                    act = todo.pop(0) if todo else 200
                if isinstance(act, tuple) and act[0] == "sleep":
                    time.sleep(act[1])
                    act = 200
                if isinstance(act, tuple) and act[0] == "redirect":
                    self.send_response(302)
                    self.send_header("Location", act[1])
                else:
                    self.send_response(act)
                text = b"answer %d" % (act if isinstance(act, int) else 302)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                try:
                    self.wfile.write(text)
                except OSError:
                    pass

            do_POST = do_PUT = do_GET = do_PATCH = do_DELETE = answer

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def on(self, path):
        with self.lock:
            return [r for r in self.requests if r["path"] == path]


def test(c, tmp, started):
    an = os.path.join(tmp, "analyses")
    os.makedirs(an)
    srv = Hook(h.free_port()).start()
    started.append(srv)
    with open(os.path.join(an, "hook.lua"), "w") as f:
        f.write(HOOK)
    sp = h.Sealpipe(tmp, analyses=an, extra=["--webhook-backoff-ms", "200",
                                             "--webhook-attempts", "4",
                                             "--webhook-timeout-ms", "1000",
                                             "--lua-error-budget", "0"])
    sp.add_device("dev-1", "--cipher", "none")
    sp.start()
    started.append(sp)
    base = f"http://127.0.0.1:{srv.port}"

    def call(url, tag, body="", **kw):
        sp.pub("hook/dev-1", json.dumps(dict(url=url, tag=tag, body=body, **kw)).encode())

    def dead(where):
        return sp.rows("SELECT id, topic, device, reason, detail, payload FROM dead_letters "
                       "WHERE " + where)

    def outbox():
        return sp.count("SELECT count(*) n FROM webhook_outbox")

    # 1. 200 once: the exact request, Sealpipe-Delivery, stored once.
    call(base + "/ok", "ok", body="hello \u00e9\u00e8", method="PUT",
         headers={"X-Case": "one", "Authorization": "Bearer abc"})
    h.wait_for(lambda: srv.on("/ok"), what="the first webhook")
    h.wait_for(lambda: outbox() == 0, what="its row deleted")
    time.sleep(1)
    got = srv.on("/ok")
    c.eq(len(got), 1, "200: delivered once")
    r = got[0]
    c.eq((r["method"], r["body"]), ("PUT", "hello \u00e9\u00e8".encode()),
         "the method and the exact body")
    c.eq((r["headers"].get("X-Case"), r["headers"].get("Authorization")), ("one", "Bearer abc"),
         "the analysis's headers")
    c.check(re.fullmatch(r"\d+", r["headers"].get("Sealpipe-Delivery", "")) is not None,
            "a Sealpipe-Delivery id: " + repr(r["headers"].get("Sealpipe-Delivery")))
    c.eq(r["headers"].get("Sealpipe-Attempt"), "1", "attempt 1")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE variable='sent'"), 1,
         "the message's record stored")
    c.eq(sp.metric('sealpipe_webhooks_total{result="ok"}'), 1, "counted ok")

    # A table body is sent as JSON, POST by default.
    call(base + "/json", "json", json={"temp": 21.5})
    h.wait_for(lambda: srv.on("/json"), what="the JSON webhook")
    r = srv.on("/json")[0]
    c.eq((r["method"], json.loads(r["body"]), r["headers"].get("Content-Type")),
         ("POST", {"temp": 21.5}, "application/json"), "a table body: JSON, POST")

    # 2. 500, 500, 200: three attempts, one delivery id.
    srv.plan["/flaky"] = [500, 500, 200]
    call(base + "/flaky", "flaky", body="f")
    h.wait_for(lambda: len(srv.on("/flaky")) >= 3, timeout=15, what="three attempts")
    h.wait_for(lambda: outbox() == 0, what="its row deleted")
    got = srv.on("/flaky")
    c.eq(len(got), 3, "500, 500, 200: three requests")
    c.eq(len({g["headers"]["Sealpipe-Delivery"] for g in got}), 1, "one delivery id")
    c.eq([g["headers"]["Sealpipe-Attempt"] for g in got], ["1", "2", "3"], "attempts 1, 2, 3")
    c.eq(sp.metric('sealpipe_webhooks_total{result="retry"}'), 2, "two retries counted")

    # 3. The server is down: growing gaps, a dead letter after 4 attempts,
    # then dead-letter retry with the server up: delivered once.
    down = Hook(h.free_port())
    started.append(down)
    call(f"http://127.0.0.1:{down.port}/later", "down", body="late",
         headers={"X-Case": "down"})
    h.wait_for(lambda: dead("reason='webhook_failed'"), timeout=20, what="the dead letter")
    d = dead("reason='webhook_failed'")[0]
    c.eq((d["topic"], d["device"]), ("$webhook#hook", "dev-1"), "topic and device")
    c.check("after 4 attempts" in d["detail"] and "no answer" in d["detail"], d["detail"])
    req = json.loads(bytes(d["payload"]))
    c.eq((req["method"], req["url"], req["headers"], base64.b64decode(req["body_base64"])),
         ("POST", f"http://127.0.0.1:{down.port}/later", {"X-Case": "down"}, b"late"),
         "its payload is the request")
    gaps = [int(x) for x in re.findall(r"webhook retry analysis=hook delivery=%d attempt=\d "
                                       r"in_ms=(\d+)" % req["delivery"], sp.read_log())]
    c.eq(len(gaps), 3, "three retries before the dead letter")
    c.check(gaps == sorted(gaps) and gaps[0] >= 300 and gaps[-1] >= 1200,
            f"growing gaps {gaps}")
    c.eq(outbox(), 0, "its row deleted with the dead letter")
    c.check("webhook failed analysis=hook device=dev-1" in sp.read_log(), "a WARN line")
    down.start()
    sp.cli("dead-letter", "retry", str(d["id"]))
    c.eq(dead("reason='webhook_failed'"), [], "the retry consumed the dead letter")
    h.wait_for(lambda: down.on("/later"), what="the retried request")
    time.sleep(1)
    got = down.on("/later")
    c.eq(len(got), 1, "delivered once")
    c.eq(got[0]["headers"]["Sealpipe-Delivery"], str(req["delivery"]), "with the same id")

    # 4. Slower than webhook_timeout_ms: retried.
    srv.plan["/slow"] = [("sleep", 1.6)]
    call(base + "/slow", "slow", body="s")
    h.wait_for(lambda: len(srv.on("/slow")) >= 2, timeout=15, what="the retry after a timeout")
    h.wait_for(lambda: outbox() == 0, what="its row deleted")
    got = srv.on("/slow")
    c.eq([g["headers"]["Sealpipe-Attempt"] for g in got], ["1", "2"], "timed out, then sent again")
    c.check(re.search(r"webhook retry analysis=hook delivery=\d+ attempt=1 in_ms=\d+ "
                      r"error=\"no answer \(timeout", sp.read_log()) is not None,
            "the timeout is the reason")

    # 5. 404: a dead letter at once.  7. A 302 is not followed.
    srv.plan["/missing"] = [404]
    srv.plan["/redir"] = [("redirect", base + "/target")]
    call(base + "/missing", "missing", body="m")
    call(base + "/redir", "redir", body="r")
    h.wait_for(lambda: len(dead("reason='webhook_failed'")) >= 2, what="two dead letters")
    details = sorted(x["detail"] for x in dead("reason='webhook_failed'"))
    c.check(details[0].startswith("HTTP 302 after 1 attempt"), details[0])
    c.check(details[1].startswith("HTTP 404 after 1 attempt: answer 404"), details[1])
    c.eq((len(srv.on("/missing")), len(srv.on("/redir")), len(srv.on("/target"))), (1, 1, 0),
         "one request each, the redirect not followed")

    # 6. A host not in `webhooks`: the message fails, nothing is queued.
    call("http://evil.example.com/x", "evil", body="e")
    h.wait_for(lambda: dead("reason='analysis_error'"), what="the analysis_error")
    d = dead("reason='analysis_error'")[0]
    c.check("host evil.example.com is not in this analysis's webhooks list" in d["detail"] and
            "add it to `webhooks`" in d["detail"], d["detail"])
    c.eq(sp.count("SELECT count(*) n FROM data WHERE metadata LIKE '%evil%'"), 0,
         "its records not stored")
    c.eq(outbox(), 0, "nothing queued")

    # 8. kill -9 with a row pending (server down): sent after the restart.
    gone = Hook(h.free_port())
    started.append(gone)
    call(f"http://127.0.0.1:{gone.port}/crash", "crash", body="c")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM webhook_outbox WHERE attempts >= 1"),
               what="a failed attempt")
    rid = sp.rows("SELECT id FROM webhook_outbox")[0]["id"]
    sp.proc.send_signal(signal.SIGKILL)
    sp.proc.wait()
    sp.stop()
    gone.start()
    sp.start()
    h.wait_for(lambda: gone.on("/crash"), timeout=15, what="the request after the restart")
    h.wait_for(lambda: outbox() == 0, what="its row deleted")
    got = gone.on("/crash")
    c.eq([g["headers"]["Sealpipe-Delivery"] for g in got], [str(rid)],
         "sent once after the restart, same delivery id")

    # 9. The daemon's retry source never runs a webhook dead letter as a
    # message: a request written behind the CLI's back puts it in the outbox.
    gone.plan["/dl"] = [404]
    call(f"http://127.0.0.1:{gone.port}/dl", "dl", body="d")
    def dl_dead():
        return [x["id"] for x in dead("reason='webhook_failed'")
                if json.loads(bytes(x["payload"]))["url"].endswith("/dl")]
    h.wait_for(dl_dead, what="the /dl dead letter")
    did = dl_dead()[0]
    con = sqlite3.connect(os.path.join(sp.data, "sealpipe.db"), timeout=10)
    con.execute("INSERT INTO dead_letter_retries (dead_letter_id, requested_at, force) "
                "VALUES (?, 0, 0)", (did,))
    con.commit()
    con.close()
    h.wait_for(lambda: len(gone.on("/dl")) == 2, what="the request sent again")
    c.eq(dead(f"id={did}"), [], "the dead letter went back to the outbox")
    c.eq(sp.count("SELECT count(*) n FROM dead_letters WHERE reason IN "
                  "('no_route', 'unsupported')"), 0, "and was never run as a message")
    c.eq(sp.count("SELECT count(*) n FROM dead_letter_retries"), 0, "its request consumed")
    h.wait_for(lambda: outbox() == 0, what="the outbox empty")

    # 10. webhook() from tick().
    with open(os.path.join(an, "ticker.lua"), "w") as f:
        f.write(TICKER % {"port": srv.port})
    h.wait_for(lambda: srv.on("/tick"), timeout=15, what="the tick's webhook")
    c.check(srv.on("/tick")[0]["body"].startswith(b"tick "), "tick's body")
    h.wait_for(lambda: outbox() == 0, what="the outbox empty")

    # ... and from run(ctx), for the caller's device.
    call(base + "/run", "run", body="r", run=True)
    h.wait_for(lambda: srv.on("/run"), what="the run's webhook")
    c.eq(srv.on("/run")[0]["body"], b"r from hook for dev-1", "run(ctx)'s webhook")
    h.wait_for(lambda: outbox() == 0, what="the outbox empty")

    # 12. A host that takes the connection and never answers does not hold
    # up another host's requests: at most a few of one host are taken at once.
    import socket
    mute = socket.socket()
    mute.bind(("127.0.0.2", 0))
    mute.listen(128)  # never accepted: every request to it times out
    for i in range(100):  # more than the sender's waiting places (64)
        call(f"http://127.0.0.2:{mute.getsockname()[1]}/mute", f"mute{i}")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM webhook_outbox") >= 100,
               what="the mute host's requests queued")
    t0 = time.time()
    call(base + "/hol", "hol")
    h.wait_for(lambda: srv.on("/hol"), timeout=15, what="the other host's request")
    took = time.time() - t0
    c.check(took < 3, f"another host's request is not held up by a mute one: {took:.1f} s")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM webhook_outbox WHERE url LIKE '%/hol'")
               == 0, what="its answer written")
    mute.close()

    # 11. The outbox full (webhook_queue_max 2): the third call is a dead
    # letter at once, its message's records still stored.
    sp.stop()
    con = sp.db()  # the mute host's requests would wait their attempts out: gone
    con.execute("DELETE FROM webhook_outbox WHERE url LIKE '%/mute'")
    con.commit()
    con.close()
    os.remove(os.path.join(an, "ticker.lua"))
    sp.extra += ["--webhook-queue-max", "2", "--webhook-backoff-ms", "60000"]
    sp.start()
    nowhere = f"http://127.0.0.1:{h.free_port()}/full"
    for i in range(3):
        call(nowhere, f"full{i}", body=str(i))
    h.wait_for(lambda: dead("detail LIKE 'outbox full%'"), what="the outbox-full dead letter")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE metadata LIKE '%full%'") == 3,
               what="the three messages stored")
    c.eq(outbox(), 2, "two rows queued")
    d = dead("detail LIKE 'outbox full%'")
    c.eq(len(d), 1, "one dead letter")
    c.eq(base64.b64decode(json.loads(bytes(d[0]["payload"]))["body_base64"]), b"2",
         "the third call's")


if __name__ == "__main__":
    sys.exit(h.run(test))
