/*
 * device.js - a device's page: its fields, latest values, a chart per numeric
 * variable over a chosen range (averages from the API, never every record),
 * its Live Inspector and its dead letters.
 */
"use strict";

(function (SP) {
  const { el, add, visible, fmtTime, fmtAgo, fmtNum, fmtValue, fmtDuration, isoUTC, timeEl, tags, table, showBanner, ApiError, api, report, lastSeen, liveInspector, deadLetterTable } = SP;

  const REFRESH_GAP = 2000; // at most one refresh per this, on the device's events
  const RANGES = [
    // label, length, the agg interval (at most ~360 points)
    ["1h", 3600e3, "15s"],
    ["6h", 6 * 3600e3, "1m"],
    ["24h", 24 * 3600e3, "5m"],
    ["7d", 7 * 24 * 3600e3, "30m"],
    ["30d", 30 * 24 * 3600e3, "2h"],
  ];
  let rangeLabel = "24h"; // kept across devices

  /* ---- one device ------------------------------------------------------------- */

  async function pageDevice(p, app, serial) {
    const base = "api/v1/devices/" + encodeURIComponent(serial);
    const title = el("h1", { text: serial });
    const serialNote = el("span", { class: "mono muted", text: serial });
    const status = el("span", { class: "count", id: "device-status" });
    const fields = el("dl", { class: "fields", id: "device-fields" });
    const latestT = table([["Variable"], ["Value", "num"], ["Unit"], ["Time"], ["Group"], ["Metadata"]]);
    latestT.table.id = "latest";
    const charts = el("div", { class: "grid", id: "charts" });
    const rangeBar = el("div", { class: "toolbar", id: "ranges" });
    const inspectorState = el("span", { class: "stream-state muted", text: "connecting…" });
    const inspectorList = el("ol", { id: "inspector-list" });
    const dl = deadLetterTable(p, { device: serial, limit: 50 });
    dl.el.id = "device-dead-letters";

    add(app,
      el("div", { class: "title-row" }, title, serialNote, status,
        el("a", { href: "#/devices", class: "muted", text: "← all devices" })),
      el("section", { class: "panel" }, el("h2", { text: "Device" }), fields),
      el("section", { class: "panel" }, el("h2", { text: "Latest values" }), latestT.table),
      el("section", { class: "panel" },
        el("div", { class: "toolbar" }, el("h2", { text: "Charts" }), el("span", { class: "grow" }), rangeBar),
        charts),
      el("section", { class: "panel" },
        el("div", { class: "toolbar" }, el("h2", { text: "Live Inspector" }), inspectorState),
        el("div", { class: "inspector" }, inspectorList)),
      el("section", { class: "panel" }, el("h2", { text: "Dead letters" }), dl.el));

    const chartsByVar = new Map(); // variable -> {chart, card, unit}

    function range() {
      return RANGES.find((r) => r[0] === rangeLabel) || RANGES[2];
    }
    for (const [label] of RANGES) {
      const b = el("button", { type: "button", class: "small", text: label, "data-range": label });
      b.addEventListener("click", () => {
        rangeLabel = label;
        markRange();
        loadCharts().catch((e) => report(e, "charts"));
      });
      rangeBar.appendChild(b);
    }
    function markRange() {
      for (const b of rangeBar.children) b.classList.toggle("selected", b.dataset.range === rangeLabel);
    }
    markRange();

    function renderDevice(d) {
      const st = d.status || {};
      title.textContent = visible(d.name || d.serial);
      serialNote.hidden = !d.name || d.name === d.serial;
      status.replaceChildren(el("span", { class: st.connected ? "dot on" : "dot" }),
        st.connected ? "connected" : "offline");
      const rows = [
        ["Serial", el("span", { class: "mono", text: d.serial })],
        ["Name", d.name],
        ["Profile", d.profile],
        ["Parser", d.parser ?? "none"],
        ["Tags", Object.keys(d.tags || {}).length ? tags(d.tags) : "none"],
        ["Params", Object.keys(d.params || {}).length ? tags(d.params) : "none"],
        ["Encryption", d.encryption_required ? "required" : "optional"],
        ["Retention", d.retention_ms === null || d.retention_ms === undefined ? "the daemon's"
          : d.retention_ms === 0 ? "forever" : fmtDuration(d.retention_ms)],
        ["Created", timeEl("span", d.created_at)],
        ["Last seen", timeEl("span", lastSeen(st), null, fmtAgo(lastSeen(st)) + " (" + fmtTime(lastSeen(st)) + ")")],
        ["Last connect", timeEl("span", st.last_connect)],
        ["Last stored", timeEl("span", st.last_stored)],
        ["Connections", fmtNum(st.connections ?? 0)],
        ["Messages", fmtNum(st.messages ?? 0)],
        ["Records", fmtNum(st.records ?? 0)],
        ["Dead letters", fmtNum(st.dead_letters ?? 0)],
      ];
      fields.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", null, v)]));
    }

    function renderLatest(rows) {
      rows = rows.slice().sort((a, b) => (a.variable < b.variable ? -1 : a.variable > b.variable ? 1 : 0));
      latestT.tbody.replaceChildren(...rows.map((r) => el("tr", null,
        el("td", { class: "mono wrap", text: r.variable }),
        el("td", { class: typeof r.value === "number" ? "num" : "wrap", text: fmtValue(r.value) }),
        el("td", { text: r.unit ?? "" }),
        el("td", { class: "time", title: r.time ? isoUTC(Date.parse(r.time)) || r.time : null,
          text: r.time ? fmtTime(Date.parse(r.time)) : "" }),
        el("td", { class: "wrap", text: r.group ?? "" }),
        el("td", { class: "mono wrap meta", text: r.metadata ? JSON.stringify(r.metadata) : "" }))));
      if (!rows.length) {
        latestT.tbody.appendChild(el("tr", null, el("td", { colspan: 6, class: "muted", text: "No data yet." })));
      }
      latestT.table.dataset.count = String(rows.length);
      // A chart for each numeric variable, in the latest values' order.
      for (const r of rows) {
        if (typeof r.value !== "number") continue;
        const known = chartsByVar.get(r.variable);
        if (known) {
          known.unit = r.unit || "";
          continue;
        }
        const canvas = el("canvas", { class: "chart", "data-variable": r.variable });
        const card = el("section", { class: "panel chart-card" },
          el("h2", null, el("span", { class: "mono", text: r.variable }),
            el("span", { class: "muted", text: r.unit ? "(" + r.unit + ")" : "" })),
          canvas);
        const chart = new window.SealChart(canvas);
        p.cleanups.push(() => chart.destroy());
        chartsByVar.set(r.variable, { chart, card, unit: r.unit || "" });
        charts.appendChild(card);
      }
      if (!chartsByVar.size && !charts.childElementCount) {
        charts.appendChild(el("p", { class: "muted", text: "No numeric variable yet." }));
      } else if (chartsByVar.size) {
        for (const c of [...charts.children]) if (c.tagName === "P") c.remove();
      }
    }

    async function loadCharts() {
      const [label, span, interval] = range();
      const to = Date.now(), from = to - span;
      await Promise.all([...chartsByVar].map(async ([variable, c]) => {
        const q = new URLSearchParams({ variable, start: label, agg: "avg", interval, qty: "1000", order: "asc" });
        const doc = await api(base + "/data?" + q, { signal: p.signal });
        const pts = doc.data.filter((r) => typeof r.value === "number")
          .map((r) => ({ t: Date.parse(r.interval || r.time), v: r.value }));
        c.chart.set(pts, { from, to, unit: visible(c.unit) });
      }));
    }

    async function refreshDevice() {
      renderDevice(await api(base, { signal: p.signal }));
    }

    async function refresh() {
      const [d, latest] = await Promise.all([
        api(base, { signal: p.signal }),
        api(base + "/latest", { signal: p.signal }),
      ]);
      renderDevice(d);
      renderLatest(latest.data);
      await loadCharts();
    }

    // The device's events refresh the page, at most once per REFRESH_GAP:
    // `stored` and `dead_letter` everything, `connect` and `disconnect` its
    // fields and status.
    let lastRefresh = 0, pending = 0, refreshing = false, wantData = false;
    function scheduleRefresh(data) {
      wantData = wantData || data;
      if (pending || !p.alive) return;
      const wait = Math.max(0, lastRefresh + REFRESH_GAP - Date.now());
      pending = setTimeout(async () => {
        pending = 0;
        if (refreshing) return scheduleRefresh(false);
        refreshing = true;
        lastRefresh = Date.now();
        const all = wantData;
        wantData = false;
        try {
          await (all ? Promise.all([refresh(), dl.load()]) : refreshDevice());
        } catch (e) {
          report(e, "refresh");
        } finally {
          refreshing = false;
        }
      }, wait);
    }
    p.cleanups.push(() => clearTimeout(pending));
    // Back from hidden (the inspector was closed): what changed meanwhile.
    const onVisibility = () => {
      if (document.visibilityState === "visible" && lastRefresh) scheduleRefresh(true);
    };
    document.addEventListener("visibilitychange", onVisibility);
    p.cleanups.push(() => document.removeEventListener("visibilitychange", onVisibility));

    try {
      await refresh();
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        showBanner("No device " + serial + " (" + e.describe() + ").");
        title.textContent = "No such device";
        return;
      }
      throw e;
    }
    lastRefresh = Date.now();
    dl.load().catch((e) => report(e, "dead letters"));
    liveInspector(p, {
      device: serial, since: "15m", list: inspectorList, state: inspectorState,
      onEvent: (ev, live) => {
        if (!live) return;
        if (ev.kind === "stored" || ev.kind === "dead_letter") scheduleRefresh(true);
        else if (ev.kind === "connect" || ev.kind === "disconnect") scheduleRefresh(false);
      },
    });
  }

  SP.pageDevice = pageDevice;
})((window.sealpipe = window.sealpipe || {}));
