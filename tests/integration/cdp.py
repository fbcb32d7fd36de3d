"""A small Chrome DevTools Protocol client for the console's browser test,
Python stdlib only.

Chromium runs headless with --remote-debugging-pipe: it reads JSON messages,
each ended by a NUL byte, from its fd 3 and writes its answers and events the
same way to its fd 4. A reader thread splits them: answers go to the call
waiting for their id, events are kept (and the page's JS errors, console
errors and CSP violations are collected for the test to fail on).

    b = Browser()                 # or Browser.available() is False: skip
    page = b.new_page(1280, 800)
    page.navigate("http://127.0.0.1:8080/")
    page.eval("document.title")
    page.wait("document.querySelector('#app tr')", what="rows")
    page.screenshot("/tmp/x.png")
    b.close()
"""

import base64
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

CHROMIUM = os.environ.get("SEALPIPE_CHROMIUM", "/usr/bin/chromium")


class CDPError(AssertionError):
    """A failed call: an AssertionError, so that a test's check fails (the
    harness reports those) rather than the test crashing."""


class Browser:
    @staticmethod
    def available():
        return os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)

    def __init__(self, log_path=None, width=1280, height=900):
        self.profile = tempfile.mkdtemp(prefix="sealpipe-chromium-")
        to_r, to_w = os.pipe()      # we write, chromium reads (its fd 3)
        from_r, from_w = os.pipe()  # chromium writes (its fd 4), we read

        def child_fds():
            # Move both ends out of the way first (either may be 3 or 4), then
            # put them at 3 and 4; os.pipe()'s fds are close-on-exec, the
            # dup2'd ones are not, so chromium keeps exactly these.
            a = fcntl.fcntl(to_r, fcntl.F_DUPFD_CLOEXEC, 10)
            b = fcntl.fcntl(from_w, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.log = open(log_path or os.path.join(self.profile, "chromium.log"), "wb")
        args = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}", "--no-first-run", "--disable-extensions",
                "--no-default-browser-check", "--disable-background-networking",
                "--disable-sync", "--disable-component-update", "--password-store=basic",
                "--hide-scrollbars", "--mute-audio", "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, preexec_fn=child_fds,
                                     close_fds=False)
        os.close(to_r)
        os.close(from_w)
        self.wfd, self.rfd = to_w, from_r
        self.lock = threading.Lock()
        self.cond = threading.Condition()
        self.next_id = 0
        self.answers = {}
        self.events = []  # (method, params, sessionId)
        self.closed = False
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.call("Target.setDiscoverTargets", {"discover": True}, timeout=30)

    def _read(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self.rfd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self.cond:
                    self.closed = True
                    self.cond.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                with self.cond:
                    if "id" in msg:
                        self.answers[msg["id"]] = msg
                    else:
                        self.events.append((msg.get("method"), msg.get("params", {}),
                                            msg.get("sessionId")))
                    self.cond.notify_all()

    def call(self, method, params=None, session=None, timeout=20):
        with self.lock:
            self.next_id += 1
            mid = self.next_id
            msg = {"id": mid, "method": method, "params": params or {}}
            if session:
                msg["sessionId"] = session
            data = json.dumps(msg).encode() + b"\0"
            while data:
                n = os.write(self.wfd, data)
                data = data[n:]
        deadline = time.time() + timeout
        with self.cond:
            while mid not in self.answers:
                left = deadline - time.time()
                if self.closed:
                    raise CDPError(f"{method}: chromium closed the pipe")
                if left <= 0:
                    raise CDPError(f"{method}: no answer in {timeout} s")
                self.cond.wait(left)
            msg = self.answers.pop(mid)
        if "error" in msg:
            raise CDPError(f"{method}: {msg['error'].get('message')} {msg['error'].get('data', '')}")
        return msg.get("result", {})

    def wait_event(self, method, session=None, after=0, timeout=20):
        """The first event `method` (of session) at index >= after; returns
        (index, params)."""
        deadline = time.time() + timeout
        with self.cond:
            while True:
                for i in range(after, len(self.events)):
                    m, p, s = self.events[i]
                    if m == method and (session is None or s == session):
                        return i, p
                left = deadline - time.time()
                if left <= 0 or self.closed:
                    raise CDPError(f"no {method} event in {timeout} s")
                self.cond.wait(left)

    def new_page(self, width=1280, height=800):
        return Page(self, width, height)

    def close(self):
        try:
            if not self.closed:
                self.call("Browser.close", timeout=5)
        except CDPError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.wfd, self.rfd):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One tab, attached with flatten=True: calls carry its sessionId."""

    def __init__(self, browser, width, height):
        self.b = browser
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = browser.call("Target.attachToTarget",
                                    {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def call(self, method, params=None, timeout=20):
        return self.b.call(method, params, session=self.session, timeout=timeout)

    def navigate(self, url, timeout=20):
        mark = len(self.b.events)
        r = self.call("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise CDPError(f"navigate {url}: {r['errorText']}")
        self.b.wait_event("Page.loadEventFired", self.session, after=mark, timeout=timeout)

    def reload(self, timeout=20):
        mark = len(self.b.events)
        self.call("Page.reload", {"ignoreCache": True})
        self.b.wait_event("Page.loadEventFired", self.session, after=mark, timeout=timeout)

    def eval(self, expr, timeout=20):
        """The value of a JS expression (a promise is awaited); raises on a
        JS exception."""
        r = self.call("Runtime.evaluate", {"expression": expr, "awaitPromise": True,
                                           "returnByValue": True, "userGesture": True},
                      timeout=timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            desc = d.get("exception", {}).get("description") or d.get("text")
            raise CDPError(f"evaluate {expr[:80]!r}: {desc}")
        return r.get("result", {}).get("value")

    def wait(self, expr, timeout=10, what=None, interval=0.05):
        """Polls expr until it is truthy; returns its value."""
        deadline = time.time() + timeout
        while True:
            v = self.eval(expr)
            if v:
                return v
            if time.time() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or expr}")
            time.sleep(interval)

    def screenshot(self, *paths):
        data = base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])
        for p in paths:
            os.makedirs(os.path.dirname(os.path.abspath(p)), exist_ok=True)
            with open(p, "wb") as f:
                f.write(data)
        return len(data)

    def problems(self, allow=lambda kind, text, url: False):
        """The page's JS exceptions, console.error/assert calls and error log
        entries (CSP violations, failed loads), as (kind, text, url), less
        the ones allow() accepts."""
        out = []
        for method, p, s in list(self.b.events):
            if s != self.session:
                continue
            if method == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                text = d.get("exception", {}).get("description") or d.get("text", "")
                item = ("exception", text, d.get("url", ""))
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                item = ("console." + p["type"], text, "")
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                e = p["entry"]
                item = ("log:" + e.get("source", ""), e.get("text", ""), e.get("url", ""))
            else:
                continue
            if not allow(*item):
                out.append(item)
        return out
