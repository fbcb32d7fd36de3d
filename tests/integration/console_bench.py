"""The web console's page times, for scripts/bench-console (make bench-console).

run() logs in to the console at url in headless Chromium (cdp.py) and gives
(what, median ms, what was shown) for:
  page devices   a reload of the devices page to its rows drawn (the API's
                 reply, the filter and the first 500 rows), wall time seen here
  page chart     on the device page, a click on "30d" to its chart drawn
                 (the aggregate query, the points drawn), wall time seen here
Figures only: nothing passes or fails on time.
"""
import json
import statistics
import time

import cdp


def _wall(page, act, done, what):
    t0 = time.monotonic()
    act()
    page.wait(done, timeout=60, what=what, interval=0.005)
    return (time.monotonic() - t0) * 1000


def run(chromium, url, token, serial, runs):
    cdp.CHROMIUM = chromium
    b = cdp.Browser()
    try:
        page = b.new_page(1280, 800)
        page.navigate(url)
        page.wait("!!document.getElementById('token')", what="the login form")
        page.eval(f"document.getElementById('token').value = {json.dumps(token)};"
                  "document.getElementById('login-form').requestSubmit(); true")
        rows = "document.querySelector('#devices-table')?.dataset.renderMs"
        page.wait(rows, timeout=60, what="the device rows")
        shown = page.eval("document.querySelector('#device-count').textContent")
        lists = [_wall(page, page.reload, rows, "the device rows") for _ in range(runs)]

        page.eval(f"location.hash = {json.dumps('#/device/' + serial)}; true")
        page.wait("!!document.querySelector('[data-range=\"30d\"]')", what="the device page")
        drawn = ("[...document.querySelectorAll('canvas[data-points]')]"
                 ".some(c => Number(c.dataset.points) > 300)")
        charts = []
        for _ in range(runs):
            page.eval("document.querySelector('[data-range=\"1h\"]').click(); true")
            page.wait(f"!({drawn})", timeout=60, what="the 1h chart")
            charts.append(_wall(page, lambda: page.eval(
                "document.querySelector('[data-range=\"30d\"]').click(); true"), drawn,
                "the 30-day chart"))
        points = page.eval("Math.max(...[...document.querySelectorAll('canvas[data-points]')]"
                           ".map(c => Number(c.dataset.points)))")
        return [("page devices", statistics.median(lists), shown),
                ("page chart", statistics.median(charts), f"{points} points of 100,000")]
    finally:
        b.close()
