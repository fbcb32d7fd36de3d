"""The web console (issue #16, points 2-4) in a real headless Chromium,
driven over the DevTools protocol (cdp.py), against a daemon with real MQTT
clients. Checked:
- `/` shows the login form and nothing else; a wrong token is refused with
  a message; the admin token logs in; a revoked token sends the console
  back to the login with a message; logout;
- devices: the list, the search by serial, name and tag;
- a device whose name, tags, params, record units, groups, string values,
  metadata, variable names, analysis log lines and dead letter details are
  hostile: nothing runs (window.__pwned stays undefined, no img/svg/script
  element in the app) and the strings are shown literally;
- a device page open while the device publishes over MQTT: the event shows
  in the Live Inspector and the new value in the latest values and the chart;
- dead letters: listed; Retry after the analysis is fixed stores it (the UI
  says so, the API no longer has it); a read-only token's Retry shows the
  daemon's 403;
- health: the metrics summary, refreshed;
- no JS exception, console error or CSP violation on any page;
- screenshots of every page (printed; with SEALPIPE_SCREENSHOTS=DIR also
  written there as console-<page>.png).
Also prints (does not assert) how long the devices page takes with 10,000
devices (registered with SQL before the start: `device add` takes ~18 ms
each). Exits 77 when /usr/bin/chromium is not installed."""

import hashlib
import json
import math
import re
import os
import shutil
import sqlite3
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(__file__))
import harness as h  # noqa: E402
from cdp import Browser, CDPError  # noqa: E402

EVIL = "<img src=x onerror=window.__pwned=1>"
EVIL_UNIT = "<svg onload=__pwned=2>"  # a unit holds at most 25 bytes
EVIL_VARS = ["&lt;b&gt;", "a&b'\"/;{}"]  # '<' and '>' are not allowed in a variable name
SPOOF_NAME = "Safe \u202egnp.exe"  # a bidi override: would show as "Safe exe.png"
SPOOF_TAG = "k=\u202eab\x1bc"  # and an ESC
LONG_NAME = "W" * 255  # one word of 255 characters
BULK = 10000

BROKEN = """return {
  topics = { "sensors/{serial}/raw" },
  handle = function(msg)
    log("%s said " .. msg.payload)
    error("decoder bug: %s")
  end,
}
""" % (EVIL, EVIL)
FIXED = """return {
  topics = { "sensors/{serial}/raw" },
  handle = function(msg)
    return { { variable = "raw_len", value = #msg.payload, unit = "B" } }
  end,
}
"""


def iso(ms):
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def base_url(sp):
    return f"http://127.0.0.1:{sp.http_port}/"


def js(v):
    return json.dumps(v)


def bulk_devices(sp, n):
    """n devices zz-bulk-NNNNN straight into the registry (one transaction),
    in the default profile the first `device add` made."""
    con = sqlite3.connect(os.path.join(sp.data, "sealpipe.db"), timeout=10)
    with con:
        pid = con.execute("SELECT id FROM profiles WHERE name = 'default'").fetchone()[0]
        now = int(time.time() * 1000)
        rows = []
        for i in range(n):
            serial = f"zz-bulk-{i:05d}"
            rows.append((serial, hashlib.sha256(serial.encode()).digest()[:8], pid,
                         f"Bulk sensor {i}", json.dumps({"fleet": "bulk", "shard": str(i % 16)}),
                         now))
        con.executemany("INSERT INTO devices (serial, device_hash, profile_id, name, tags, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.close()


def mqtt_client(sp, serial):
    import paho.mqtt.client as mqtt
    cl = sp.client(sp.creds(serial), client_id=f"{serial}-console", protocol=mqtt.MQTTv311)
    cl.connect("127.0.0.1", sp.port)
    cl.loop_start()
    return cl


def publish(cl, topic, payload):
    cl.publish(topic, payload, qos=1).wait_for_publish(timeout=10)


def api(sp, token, path, method="GET"):
    req = urllib.request.Request(f"http://127.0.0.1:{sp.http_port}{path}", method=method,
                                 headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def expected_problem(kind, text, url):
    """Failed API requests the test causes on purpose (a wrong or revoked
    token, a read token's retry, a retried dead letter that is gone) show as
    network errors in the console: those only."""
    return kind == "log:network" and "/api/v1/" in url and \
        any(f"status of {s}" in text for s in (401, 403, 404))


class Shots:
    def __init__(self, tmp):
        # Kept after the run (harness.run() removes tmp when all passed).
        self.dirs = [os.path.join(tempfile.gettempdir(), "sealpipe-console-screenshots")]
        if os.environ.get("SEALPIPE_SCREENSHOTS"):
            self.dirs.append(os.environ["SEALPIPE_SCREENSHOTS"])
        self.paths = []

    def take(self, page, name):
        paths = [os.path.join(d, f"console-{name}.png") for d in self.dirs]
        size = page.screenshot(*paths)
        self.paths += paths
        print(f"     screenshot {name}: {', '.join(paths)} ({size // 1024} KiB)")


# The page is no wider than the window (no horizontal scroll).
NO_WIDER = "document.documentElement.scrollWidth <= innerWidth"
WIDTHS = "'scrollWidth ' + document.documentElement.scrollWidth + ', innerWidth ' + innerWidth"
SPOOF_SHOWN = "Safe \u27e8U+202E\u27e9gnp.exe"
SPOOF_TAG_SHOWN = "k=\u27e8U+202E\u27e9ab\u27e8U+001B\u27e9c"


def set_visibility(page, state):
    """As if the tab were hidden or shown: document.visibilityState and the
    visibilitychange event (headless Chromium's own stay "visible")."""
    page.eval(f"Object.defineProperty(document, 'visibilityState', {{value: {js(state)}, configurable: true}});"
              "document.dispatchEvent(new Event('visibilitychange')); true")


def requests_since(page, mark, pred=lambda req: True):
    """The page's requests (method, url) since event index mark."""
    return [(p["request"]["method"], p["request"]["url"]) for m, p, sid in page.b.events[mark:]
            if m == "Network.requestWillBeSent" and sid == page.session and pred(p["request"])]


def login(page, token):
    page.eval(f"document.getElementById('token').value = {js(token)};"
              "document.getElementById('login-form').requestSubmit(); true")


def text(page, selector):
    return page.eval(f"(document.querySelector({js(selector)}) || {{}}).textContent || ''")


def test(c, tmp, started):
    state = {}
    try:
        steps(c, tmp, started, state)
    except AssertionError:
        page = state.get("page")
        if page is not None:  # what the page showed, for the failure
            try:
                print("---- page ----\n" + page.eval(
                    "location.href.replace(/#.*/, '') .length, location.hash + '\\n' + "
                    "document.body.innerText.slice(0, 3000)"))
                print(f"---- problems ----\n{page.problems()}")
            except AssertionError as e:
                print(f"(page unreadable: {e})")
        raise


def steps(c, tmp, started, state):
    analyses = os.path.join(tmp, "analyses")
    os.makedirs(analyses)
    shutil.copy(os.path.join(h.SOURCE, "analyses", "mqtt_ingest.lua"), analyses)
    with open(os.path.join(analyses, "decoder.lua"), "w") as f:
        f.write(BROKEN)
    sp = h.Sealpipe(tmp, analyses=analyses, net=True)
    sp.add_device("sensor-01", "--cipher", "none", "--name", "Greenhouse north",
                  "--tag", "site=north", "--tag", "room=a")
    sp.add_device("sensor-02", "--cipher", "none", "--name", LONG_NAME, "--tag", "site=south")
    sp.add_device("spoof", "--cipher", "none", "--name", SPOOF_NAME, "--tag", SPOOF_TAG)
    sp.add_device("evil", "--cipher", "none", "--name", EVIL, "--tag", f"k={EVIL}",
                  "--param", f"p={EVIL}")
    t0 = time.time()
    bulk_devices(sp, BULK)
    bulk_s = time.time() - t0

    def token(*args):
        return json.loads(sp.cli("admin", "token", "add", "--json", *args).stdout)["token"]
    full, read, doomed = token("--name", "ops"), token("--perm", "read"), token("--name", "doomed")
    sp.start()
    started.append(sp)
    c.check(True, f"{BULK} devices registered with SQL in {bulk_s:.2f} s; daemon started")

    # Data: an hour of temperatures and humidities for sensor-01 (one record
    # a minute, the newest 2 minutes old), the hostile device's records and
    # failures.
    now = int(time.time() * 1000)
    cl = mqtt_client(sp, "sensor-01")
    hist = [{"variable": "temperature", "unit": "C", "time": iso(now - (61 - i) * 60000),
             "value": round(20 + 4 * math.sin(i / 9), 2)} for i in range(60)]
    hist += [{"variable": "humidity", "unit": "%", "time": iso(now - (61 - i) * 60000),
              "value": round(55 + 10 * math.cos(i / 13), 1)} for i in range(60)]
    publish(cl, "devices/sensor-01/data", json.dumps(hist))
    ev = mqtt_client(sp, "evil")
    publish(ev, "devices/evil/data", json.dumps(
        [{"variable": "v1", "value": 21.5, "unit": EVIL_UNIT, "group": EVIL,
          "metadata": {"m": EVIL, EVIL: 1}},
         {"variable": "label", "value": EVIL}] +
        [{"variable": v, "value": i + 1} for i, v in enumerate(EVIL_VARS)]))
    publish(ev, "sensors/evil/raw", b"<b>bold</b>\x1b[31m")  # analysis_error (retried later)
    publish(ev, "$tip/evil/push", b"[temp:=abc]")      # invalid_body (the read token's)
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM dead_letters") == 2, what="2 dead letters")
    h.wait_for(lambda: sp.count("SELECT count(*) n FROM data WHERE device = 'evil'") == 4,
               what="evil's 4 records")

    r = urllib.request.urlopen(base_url(sp), timeout=10)
    csp = r.headers.get("Content-Security-Policy", "")
    c.check("script-src 'self'" in csp and "default-src 'none'" in csp,
            f"/ is served with the console's CSP ({csp!r})")

    b = Browser(log_path=os.path.join(tmp, "chromium.log"))
    started.append(b)
    page = state["page"] = b.new_page(1280, 800)
    shots = Shots(tmp)
    url = base_url(sp)

    # 1. Login.
    page.navigate(url)
    page.wait("document.getElementById('login') && !document.getElementById('login').hidden",
              what="the login form")
    c.check(page.eval("document.getElementById('app').hidden && "
                      "document.getElementById('app').childElementCount === 0 && "
                      "document.getElementById('top').hidden"),
            "/ shows the login form and nothing else")
    shots.take(page, "login")
    login(page, "not-a-token")
    msg = page.wait("document.getElementById('login-message').textContent", what="a refusal")
    c.check("401" in msg and page.eval("document.getElementById('app').hidden"),
            f"a wrong token is refused: {msg!r}")
    login(page, full)
    page.wait("location.hash === '#/devices' && !document.getElementById('app').hidden",
              what="the devices page")
    c.check(page.eval(f"sessionStorage.getItem('sealpipe.console.token') === {js(full)} && "
                      f"!document.cookie && !location.href.includes({js(full)})"),
            "logged in; the token is in sessionStorage only (no cookie, not in the URL)")

    # 2. Devices: the list, the search.
    rows = page.wait("document.querySelector('#devices-table')?.dataset.renderMs && "
                     "document.querySelector('#devices-table').dataset.rows", what="the device rows")
    listed = page.eval("[...document.querySelectorAll('#devices-table tbody tr td:first-child')]"
                       ".map(td => td.textContent)")
    c.check(listed[:3] == ["evil", "sensor-01", "sensor-02"] and int(rows) == 500
            and f"of {BULK + 4:,}" in text(page, "#device-count"),
            f"the devices, sorted, the first 500 shown: {listed[:4]}, {text(page, '#device-count')!r}")
    timings = page.eval("({render: document.querySelector('#devices-table').dataset.renderMs,"
                        " fetch: document.querySelector('#devices-table').dataset.fetchMs,"
                        " build: document.querySelector('#devices-table').dataset.buildMs})")
    # The same again from a reload (the page, its scripts, the list): what a
    # user waits for.
    t0 = time.time()
    page.reload()
    page.wait("document.querySelector('#devices-table')?.dataset.renderMs", what="the device rows")
    wall = time.time() - t0
    print(f"     figure: devices page with {BULK + 4} devices: {timings['render']} ms from the request "
          f"to the rows ({timings['fetch']} ms the API's reply, {timings['build']} ms filtering and "
          f"500 rows); a reload to the rows, as seen by the test: {wall * 1000:.0f} ms")

    def search(q):
        page.eval(f"{{ const s = document.getElementById('device-search'); s.value = {js(q)};"
                  "s.dispatchEvent(new Event('input')); } true")
        time.sleep(0.15)
        page.wait(f"document.getElementById('device-search').value === {js(q)}")
        return page.eval("[...document.querySelectorAll('#devices-table tbody tr td:first-child a')]"
                         ".map(a => a.textContent)")
    c.eq(search("site=north"), ["sensor-01"], "search by tag")
    c.eq(search("greenhouse"), ["sensor-01"], "search by name")
    c.eq(search("wwwwwwwwww"), ["sensor-02"], "search by a long name")
    c.eq(search("BULK-0999"), [f"zz-bulk-0999{i}" for i in range(10)], "search by serial")
    c.eq(search("onerror"), ["evil"], "search by a hostile name")
    search("")
    page.eval("window.scrollTo(0, 0); true")
    shots.take(page, "devices")
    c.check(page.eval(NO_WIDER), f"the devices page is no wider than the window with a {len(LONG_NAME)}-"
            f"character name ({page.eval(WIDTHS)})")
    # Hidden characters shown: the name and tag of `spoof` (a bidi override,
    # an ESC) in the list.
    search("spoof")
    row = text(page, "#devices-table tbody tr")
    c.check(SPOOF_SHOWN in row and SPOOF_TAG_SHOWN in row and "\u202e" not in row and "\x1b" not in row,
            f"the list shows a name's bidi override and a tag's ESC as code points: {row!r}")

    # Every invisible kind (review: a soft hyphen, a Hangul filler, a tag
    # character passed): shown as code points; tab, newline, letters and
    # emoji as they are.
    shown = page.eval("""[...'Boi\\u00adler|\\u3164|\\u{E0021}|a\\u034fb|\\ufe0f|\\u180e|\\u2061|x\\ty\\nz|\\u00e9\\u{1F600}'
        .split('|')].map(window.sealpipe.visible)""")
    want = ["Boi\u27e8U+00AD\u27e9ler", "\u27e8U+3164\u27e9", "\u27e8U+E0021\u27e9",
            "a\u27e8U+034F\u27e9b", "\u27e8U+FE0F\u27e9", "\u27e8U+180E\u27e9", "\u27e8U+2061\u27e9",
            "x\ty\nz", "\u00e9\U0001F600"]
    c.eq(shown, want, "invisible characters of every kind shown as code points, the rest as is")

    # The list is read again by itself (every 15 s; here every 0.5 s), the
    # search kept.
    page.eval("window.sealpipe.devicesEvery = 500; location.hash = '#/devices?again'; true")
    page.wait("document.querySelector('#devices-table')?.dataset.loads", what="the devices page")
    search("sensor-0")
    try:
        page.wait("+document.querySelector('#devices-table').dataset.loads >= 3", timeout=5,
                  what="two reloads of the list")
        got = page.eval("[...document.querySelectorAll('#devices-table tbody tr td:first-child a')]"
                        ".map(a => a.textContent)")
        said = text(page, "#devices-updated")
        c.check(got == ["sensor-01", "sensor-02"] and "updated " in said,
                f"the devices list reloads by itself, the search kept: {got}, {said!r}")
    except AssertionError as e:
        c.check(False, f"the devices list reloads by itself: {e}")
    page.eval("window.sealpipe.devicesEvery = 15000; true")

    # 3. The hostile device.
    search("evil")
    page.eval("document.querySelector('#devices-table tbody a').click(); true")
    page.wait("location.hash === '#/device/evil' && "
              "document.querySelector('#latest')?.dataset.count === '4'", what="evil's page")
    page.wait("document.querySelector('#device-dead-letters')?.dataset.count === '2'",
              what="evil's dead letters")
    page.wait("(document.getElementById('inspector-list').dataset.state || '') === 'live'",
              what="evil's inspector")
    page.wait(f"document.getElementById('inspector-list').textContent.includes({js(EVIL + ' said')})",
              what="the analysis's log line in the inspector")
    app_text = text(page, "#app")
    meta = json.dumps({"m": EVIL}, separators=(",", ":"))[1:-1]  # as JSON.stringify writes it
    missing = [s for s in [EVIL, f"k={EVIL}", f"p={EVIL}", EVIL_UNIT, meta,
                           "decoder bug: " + EVIL, EVIL + " said <b>bold</b>", *EVIL_VARS]
               if s not in app_text]
    c.check(not missing, f"hostile strings shown literally (missing: {missing})")
    c.check(page.eval("window.__pwned === undefined"), "no hostile string ran (window.__pwned undefined)")
    c.eq(page.eval("document.querySelectorAll('#app img, #app svg, #app script, #app iframe, "
                   "#app b').length"), 0, "no img, svg, script, iframe or b element in the app")
    # The daemon escapes the ESC of the log line as the text \x1b: shown
    # once, not escaped again (\\x1b).
    insp = text(page, "#inspector-list")
    c.check(" said <b>bold</b>\\x1b[31m" in insp and "\\\\x1b" not in insp,
            "the inspector shows the daemon's escapes as they are ("
            + repr(insp[insp.find(" said "):][:40]) + ")")
    shots.take(page, "device-hostile")

    # Hidden characters shown on a device's page; a 255-character word wraps.
    page.eval("location.hash = '#/device/spoof'; true")
    page.wait("document.querySelector('#device-fields')?.textContent.includes('spoof')", what="spoof's page")
    title, fields = text(page, "#app h1"), text(page, "#device-fields")
    c.check(title == SPOOF_SHOWN and SPOOF_TAG_SHOWN in fields
            and not page.eval("/[\\u202e\\x1b]/.test(document.getElementById('app').textContent)"),
            f"a device page shows the bidi override and the ESC as code points: {title!r}")
    page.eval("location.hash = '#/device/sensor-02'; true")
    page.wait(f"document.querySelector('#app h1')?.textContent === {js(LONG_NAME)}", what="sensor-02's page")
    c.check(page.eval(NO_WIDER), f"a device page is no wider than the window with a {len(LONG_NAME)}-character "
            f"name ({page.eval(WIDTHS)})")

    # Only a serial reaches the API: "." and ".." would be other routes.
    for bad in (".", "..", "..%2F..%2Fmetrics", "a b"):
        mark = len(page.b.events)
        page.eval(f"location.hash = {js('#/device/' + bad)}; true")
        page.wait("!!document.getElementById('no-device')", what=f"no such device {bad!r}")
        time.sleep(0.2)
        sent = requests_since(page, mark, lambda r: "/api/" in r["url"])
        c.check(not sent, f"#/device/{bad}: no such device, no request ({sent})")

    # 4. Live: sensor-01's page while it publishes.
    page.eval("location.hash = '#/device/sensor-01'; true")
    page.wait("document.querySelector('#latest')?.dataset.count === '2'", what="sensor-01's values")
    page.eval("document.querySelector('#ranges button[data-range=\"1h\"]').click(); true")
    page.wait("[...document.querySelectorAll('canvas.chart')].length === 2 && "
              "[...document.querySelectorAll('canvas.chart')].every(c => +c.dataset.points >= 55)",
              what="two charts with an hour of points")
    points = page.eval("[...document.querySelectorAll('canvas.chart')].map(c => +c.dataset.points)")
    c.check(all(55 <= n <= 65 for n in points), f"an hour at 15 s intervals: points {points}")
    page.wait("document.getElementById('inspector-list').dataset.state === 'live'", what="live")
    publish(cl, "$tip/sensor-01/push", b"[temperature:=42.5#C]")
    try:
        page.wait("[...document.querySelectorAll('#inspector-list li .kind')]"
                  ".some(k => k.textContent === 'stored' &&"
                  "      k.nextSibling.textContent.includes('temperature')) &&"
                  " document.getElementById('inspector-list').textContent"
                  "   .includes('[temperature:=42.5#C]')",
                  timeout=5, what="the message and stored events")
        c.check(True, "the publish shows in the Live Inspector (message, stored)")
    except AssertionError as e:
        c.check(False, str(e))
    try:
        page.wait("document.querySelector('#latest').textContent.includes('42.5') && "
                  "document.querySelector('canvas.chart[data-variable=temperature]').dataset.last === '42.5'",
                  timeout=6, what="the latest value and the chart")
        c.check(True, "the new value in the latest values and the chart (refreshed on `stored`)")
    except AssertionError as e:
        c.check(False, str(e))
    # The charts and the Live Inspector: the page scrolled to them.
    page.eval("window.scrollTo(0, document.getElementById('charts').closest('section').offsetTop - 8); true")
    shots.take(page, "device")

    # A hidden tab closes its inspector stream (six open device pages would
    # take every connection the browser has for the daemon) and, visible
    # again, opens it asking for what it missed.
    left, came = "inspector: an HTTP watcher left", "inspector: an HTTP watcher device=sensor-01"
    n_left, n_came = sp.read_log().count(left), sp.read_log().count(came)
    set_visibility(page, "hidden")
    try:
        h.wait_for(lambda: sp.read_log().count(left) > n_left, timeout=5, what="the stream closed")
        c.check("paused" in text(page, "#app .stream-state"), "hidden: the inspector's stream is closed")
    except AssertionError as e:
        c.check(False, f"hidden: the inspector's stream is closed: {e}")
    publish(cl, "$tip/sensor-01/push", b"[temperature:=43.25#C]")  # while hidden
    set_visibility(page, "visible")
    try:
        h.wait_for(lambda: sp.read_log().count(came) > n_came, timeout=5, what="the stream again")
        page.wait("document.getElementById('inspector-list').dataset.state === 'live' && "
                  "document.getElementById('inspector-list').textContent.includes('[temperature:=43.25#C]')",
                  timeout=5, what="what came while hidden")
        c.check(True, "visible again: the stream reopened with what came while hidden")
    except AssertionError as e:
        c.check(False, f"visible again: the stream reopened with what came while hidden: {e}")
    page.eval("delete document.visibilityState; true")

    # The status follows the device's connect and disconnect.
    c.check(text(page, "#device-status") == "connected", "sensor-01's page says connected")
    cl.disconnect()
    cl.loop_stop()
    try:
        page.wait("document.getElementById('device-status').textContent === 'offline'", timeout=6,
                  what="offline")
        c.check(True, "its disconnect: the page says offline")
    except AssertionError as e:
        c.check(False, str(e))

    # The chart's numbers: y ticks with their step's decimals, the value
    # under the pointer with up to 6 significant digits.
    got = page.eval("[[8, 8.25, 8.5, 8.75, 9].map(v => SealChart.formatValue(v, 0.25)),"
                    " [0, 2.5, 5, 7.5, 10].map(v => SealChart.formatValue(v, 2.5)),"
                    " [9, 9.123456789, 42.5, -0.125].map(SealChart.formatPoint)]")
    c.eq(got, [["8.00", "8.25", "8.50", "8.75", "9.00"], ["0.0", "2.5", "5.0", "7.5", "10.0"],
               ["9", "9.12346", "42.5", "-0.125"]], "chart labels: ticks of 0.25 and 2.5, a pointed value")

    # 5. Dead letters: the filter; fix the analysis, Retry stores it.
    page.eval("location.hash = '#/dead-letters'; true")
    page.wait("document.querySelector('#dead-letters')?.dataset.count === '2'", what="2 dead letters")
    reasons = page.eval("[...document.querySelectorAll('#dead-letters tbody tr')]"
                        ".map(r => r.children[3].textContent)")
    c.eq(sorted(reasons), ["analysis_error", "invalid_body"], "the dead letters listed")
    zone = page.eval("Intl.DateTimeFormat().resolvedOptions().timeZone")
    said, when = text(page, "#zone"), page.eval("document.querySelector('#dead-letters td.time').title")
    c.check(said.startswith(f"times in {zone} (UTC") and
            re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", when or ""),
            f"the header says the zone ({said!r}), a time's title its UTC time ({when!r})")
    page.eval("location.hash = '#/dead-letters?limit=1'; true")
    page.wait("document.querySelector('#dead-letters')?.dataset.count === '1'", what="1 dead letter")
    got = page.eval("(s => [s.value, s.selectedOptions[0].textContent])(document.getElementById('dl-limit'))")
    c.eq(got, ["1", "newest 1"], "#/dead-letters?limit=1: the selector says so")
    page.eval("location.hash = '#/dead-letters'; true")
    page.wait("document.querySelector('#dead-letters')?.dataset.count === '2'", what="2 dead letters")

    def reason(r):
        page.eval(f"{{ const s = document.getElementById('dl-reason'); s.value = {js(r)};"
                  "s.dispatchEvent(new Event('change')); } true")
    reason("invalid_body")
    page.wait("document.querySelector('#dead-letters')?.dataset.count === '1'", what="the filter")
    c.check(page.eval("location.hash") == "#/dead-letters?reason=invalid_body"
            and text(page, "#dead-letters tbody tr td:nth-child(4)") == "invalid_body",
            "filtered by reason")
    reason("")
    page.wait("document.querySelector('#dead-letters')?.dataset.count === '2'", what="no filter")
    dl_id = page.eval("[...document.querySelectorAll('#dead-letters tbody tr')]"
                      ".find(r => r.children[3].textContent === 'analysis_error').dataset.id")
    row = f"document.querySelector('#dead-letters tbody tr[data-id=\"{dl_id}\"]')"
    sp.reload_analysis("decoder", FIXED)
    page.eval(f"{row}.querySelector('button.retry').click(); true")
    try:
        res = page.wait(f"{row}.querySelector('td:last-child span.wrap')?.dataset.result",
                        timeout=10, what="the retry's result")
    except AssertionError as e:
        res = str(e)
    said = page.eval(f"{row}.lastElementChild.textContent")
    c.check(res == "stored", f"Retry: the UI says {said!r}")
    shots.take(page, "dead-letters")
    st, _ = api(sp, full, f"/api/v1/dead-letters/{dl_id}")
    c.eq(st, 404, "the API no longer has the retried dead letter")
    c.eq(sp.count("SELECT count(*) n FROM data WHERE device = 'evil' AND variable = 'raw_len'"), 1,
         "its record is stored")

    # 6. Health.
    page.eval("location.hash = '#/health'; true")
    page.wait("!!document.querySelector('#health .metric')", what="the metrics")
    health = text(page, "#health")
    ok = all(s in health for s in ("messages committed", "invalid_body", "analysis_error",
                                   "devices connected", "daemon's MQTT linkup"))
    c.check(ok, "health: the counters, the broker link, the dead letters by reason"
            + ("" if ok else f" ({health!r})"))
    # Kept (what the Dead letters page lists) and since the start, apart.
    kept_db = sp.count("SELECT count(*) n FROM dead_letters")
    kept = page.eval("document.querySelector('#health-dead-letters-kept')?.dataset.total")
    since = page.eval("document.querySelector('#health-dead-letters')?.dataset.total")
    link = page.eval("document.querySelector('#health-dead-letters-kept a')?.getAttribute('href')")
    c.check(kept == str(kept_db) == "1" and since == "2" and link == "#/dead-letters?reason=invalid_body"
            and "Dead letters kept (in the bucket)" in health and "since the daemon started" in health
            and "messages committed since start" in health,
            f"health: dead letters kept {kept} (the bucket has {kept_db}), dead-lettered since the start "
            f"{since}, the kept ones linked ({link})")
    shots.take(page, "health")
    t0 = time.time()
    page.wait("+document.getElementById('health').dataset.updates >= 2", timeout=8, what="a refresh")
    c.check(True, f"health refreshes by itself (after {time.time() - t0:.1f} s)")

    # 7. A read-only token cannot retry; 8. revoked: back to the login; logout.
    page.eval("document.getElementById('logout').click(); true")
    page.wait("!document.getElementById('login').hidden", what="the login form")
    c.check(page.eval("sessionStorage.length === 0 && "
                      "document.getElementById('app').childElementCount === 0"),
            "logout: back to the login, the token forgotten")
    # The login gives up when the daemon does not answer (here a fetch that
    # never ends, and 1 s instead of 30).
    page.eval("window.__fetch = window.fetch; window.sealpipe.apiTimeoutMs = 1000;"
              "window.fetch = (u, init) => new Promise((_, no) => init.signal && init.signal.addEventListener("
              "'abort', () => no(new DOMException('aborted', 'AbortError')))); true")
    login(page, read)
    try:
        msg = page.wait("document.getElementById('login-message').textContent", timeout=4, what="the timeout")
    except AssertionError as e:
        msg = str(e)
    c.check("did not answer within 1 s" in msg, f"the login gives up after the time limit: {msg!r}")
    got = page.eval("Promise.race([window.sealpipe.api('api/v1/metrics').then(() => 'answered', e => e.message),"
                    " new Promise(ok => setTimeout(() => ok('still waiting after 3 s'), 3000))])")
    c.eq(got, "the daemon did not answer within 1 s", "api() gives up after the time limit")
    page.eval("window.fetch = window.__fetch; window.sealpipe.apiTimeoutMs = 30000; true")

    # A read token is offered no Retry that the daemon would refuse (after
    # the login and after a reload).
    login(page, read)
    page.wait("!document.getElementById('app').hidden", what="logged in (read)")
    for how in ("after the login", "after a reload"):
        if how != "after the login":
            page.reload()
        page.eval("location.hash = '#/dead-letters'; true")
        page.wait("document.querySelector('#dead-letters')?.dataset.count === '1'", what="1 dead letter")
        b = "document.querySelector('#dead-letters button.retry')"
        mark = len(page.b.events)
        page.eval(f"{b}.click(); true")
        time.sleep(0.3)
        posts = requests_since(page, mark, lambda r: r["method"] == "POST")
        title = page.eval(f"{b}.title")
        c.check(page.eval(f"{b}.disabled") and "only read" in title and not posts,
                f"{how}, a read token's Retry is disabled ({title!r}); clicked, nothing sent ({posts})")
    ro_id = page.eval("document.querySelector('#dead-letters tbody tr').dataset.id")
    st, body = api(sp, read, f"/api/v1/dead-letters/{ro_id}/retry", "POST")
    c.eq(st, 403, "and the daemon refuses a read token's retry")
    page.eval("document.getElementById('logout').click(); true")
    login(page, doomed)
    page.wait("!document.getElementById('app').hidden", what="logged in (doomed)")
    sp.cli("admin", "token", "revoke", "doomed")
    page.eval("location.hash = '#/devices'; true")
    msg = page.wait("!document.getElementById('login').hidden && "
                    "document.getElementById('login-message').textContent", what="the login again")
    c.check("401" in msg and page.eval("sessionStorage.length === 0"),
            f"a revoked token: back to the login: {msg!r}")

    problems = page.problems(allow=expected_problem)
    c.check(not problems, f"no JS exception, console error or CSP violation ({problems})")
    c.check(page.eval("window.__pwned === undefined"), "window.__pwned still undefined")
    ev.disconnect()
    ev.loop_stop()
    print("     screenshots: " + " ".join(p for p in shots.paths))


Browser.stop = Browser.close  # harness.run() stops what `started` holds

if __name__ == "__main__":
    if not Browser.available():
        print("skipped: chromium not installed")
        sys.exit(77)
    sys.exit(h.run(test))
