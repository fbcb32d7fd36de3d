/*
 * app.js - the sealpipe web console (issue #16): devices, a device's data,
 * charts and Live Inspector, dead letters, health. Plain ES2020, no
 * framework, served as-is by the daemon with a strict CSP (no inline script
 * or style, no eval).
 *
 * SAFETY: everything that comes from a device, an analysis, an operator or
 * the API (serials, names, tags, params, variable names, values, units,
 * metadata, topics, log lines, error messages) goes into the page as text:
 * el()'s `text`, createTextNode or textContent. This file never uses
 * innerHTML, outerHTML, insertAdjacentHTML or document.write, and never puts
 * a device's string into a URL attribute except after "#/device/" and
 * encodeURIComponent. Keep it so.
 *
 * The admin token lives in sessionStorage only (this tab), is sent as
 * "Authorization: Bearer", and is never put in a URL, a cookie or the log.
 */
"use strict";

(function () {
  const TOKEN_KEY = "sealpipe.console.token";
  const DEVICE_PAGE = 500; // device rows rendered at once
  const INSPECTOR_ROWS = 500; // Live Inspector rows kept
  const HEALTH_EVERY = 5000; // ms between /metrics reads on the health page
  const REFRESH_GAP = 2000; // at most one data refresh per this, on `stored`
  const RANGES = [
    // label, length, the agg interval (at most ~360 points)
    ["1h", 3600e3, "15s"],
    ["6h", 6 * 3600e3, "1m"],
    ["24h", 24 * 3600e3, "5m"],
    ["7d", 7 * 24 * 3600e3, "30m"],
    ["30d", 30 * 24 * 3600e3, "2h"],
  ];

  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(TOKEN_KEY);
  let page = null; // the page on screen: {signal, alive, cleanups}
  let deviceSearch = ""; // kept across pages
  let rangeLabel = "24h";

  /* ---- DOM helpers: text only --------------------------------------------- */

  /* el("td", {class: "num", text: 3}, child, "text", ...): attributes are set
   * with setAttribute (values are text), children strings become text nodes. */
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === "class") e.className = v;
        else if (k === "text") e.textContent = String(v);
        else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v === true ? "" : String(v));
      }
    }
    add(e, ...children);
    return e;
  }

  function add(parent, ...children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      parent.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return parent;
  }

  function deviceLink(serial) {
    return el("a", { href: "#/device/" + encodeURIComponent(serial), text: serial });
  }

  function pad(n, w = 2) {
    return String(n).padStart(w, "0");
  }

  function fmtTime(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) return "—";
    const d = new Date(ms);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  function fmtClock(ms) {
    const d = new Date(ms);
    return pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds()) + "." +
      pad(d.getMilliseconds(), 3);
  }

  function fmtAgo(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) return "never";
    const s = Math.round((Date.now() - ms) / 1000);
    if (s < 0) return "just now";
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }

  const numberFormat = new Intl.NumberFormat("en-US"); // one: toLocaleString makes one a call
  function fmtNum(n) {
    return typeof n === "number" ? numberFormat.format(n) : String(n);
  }

  function fmtBytes(n) {
    if (n < 1024) return n + " B";
    if (n < 1048576) return (n / 1024).toFixed(1) + " KiB";
    return (n / 1048576).toFixed(1) + " MiB";
  }

  function fmtValue(v) {
    return typeof v === "string" ? v : JSON.stringify(v);
  }

  function fmtDuration(ms) {
    const s = Math.floor(ms / 1000);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    if (d) return d + " d " + h + " h";
    if (h) return h + " h " + m + " min";
    if (m) return m + " min " + (s % 60) + " s";
    return s + " s";
  }

  function tags(obj) {
    return Object.entries(obj || {}).map(([k, v]) => el("span", { class: "tag", text: k + "=" + v }));
  }

  function table(headers, cls) {
    const tbody = el("tbody");
    const t = el("table", { class: cls },
      el("thead", null, el("tr", null, headers.map(([label, c]) => el("th", { class: c, text: label })))),
      tbody);
    return { table: el("div", { class: "table-wrap" }, t), tbody };
  }

  /* ---- banner ----------------------------------------------------------------- */

  function showBanner(text, kind) {
    $("banner-text").textContent = text;
    $("banner").className = "banner" + (kind === "info" ? " info" : "");
    $("banner").hidden = false;
  }

  function hideBanner() {
    $("banner").hidden = true;
    $("banner-text").textContent = "";
  }

  /* ---- the API ---------------------------------------------------------------- */

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
    describe() {
      return this.status ? this.status + " " + this.code + ": " + this.message : this.message;
    }
  }

  function authHeaders(accept) {
    return { Authorization: "Bearer " + token, Accept: accept || "application/json" };
  }

  async function errorOf(res) {
    let body = null;
    try {
      body = await res.json();
    } catch (e) {
      body = null;
    }
    const err = (body && body.error) || {};
    return new ApiError(res.status, err.code || "http_" + res.status,
      err.message || res.statusText || "HTTP " + res.status);
  }

  /* GET (or opts.method) path, relative to the console ("api/v1/..."); the
   * parsed JSON, or an ApiError. A 401 ends the session. */
  async function api(path, opts = {}) {
    let res;
    try {
      res = await fetch(path, {
        method: opts.method || "GET",
        headers: authHeaders(),
        signal: opts.signal,
        cache: "no-store",
        credentials: "omit",
      });
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new ApiError(0, "network", "The daemon did not answer (" + e.message + ").");
    }
    if (!res.ok) {
      const err = await errorOf(res);
      if (res.status === 401) unauthorized(err);
      throw err;
    }
    return res.status === 204 ? null : res.json();
  }

  function unauthorized(err) {
    if (!token) return;
    logout("The daemon refused the token (401 " + err.code + ": " + err.message +
      "). Log in again.", true);
  }

  /* An error of a page: shown in the banner (aborts and 401s are not). */
  function report(e, what) {
    if (!e || e.name === "AbortError") return;
    if (e instanceof ApiError) {
      if (e.status === 401) return;
      showBanner((what ? what + ": " : "") + e.describe());
    } else {
      showBanner((what ? what + ": " : "") + (e.message || String(e)));
      console.error(e);
    }
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      if (signal) signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }

  /* ---- login, logout ---------------------------------------------------------- */

  function showLogin(message, isError) {
    leavePage();
    $("app").replaceChildren();
    $("app").hidden = true;
    $("top").hidden = true;
    hideBanner();
    $("login").hidden = false;
    const m = $("login-message");
    m.textContent = message || "";
    m.className = "login-message" + (isError ? "" : " muted");
    $("token").value = "";
    $("token").focus();
  }

  function logout(message, isError) {
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(message, isError);
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const given = $("token").value.trim();
    if (!given) return;
    const button = ev.target.querySelector("button");
    button.disabled = true;
    $("login-message").textContent = "";
    try {
      // Any GET proves the token; /metrics is small.
      const res = await fetch("api/v1/metrics", {
        headers: { Authorization: "Bearer " + given, Accept: "application/json" },
        cache: "no-store",
        credentials: "omit",
      });
      if (!res.ok) {
        const err = await errorOf(res);
        $("login-message").className = "login-message";
        $("login-message").textContent = res.status === 401
          ? "This token was refused (401 " + err.code + ": " + err.message + ")."
          : "The daemon answered " + err.describe();
        return;
      }
      token = given;
      sessionStorage.setItem(TOKEN_KEY, token);
      $("token").value = "";
      $("login").hidden = true;
      if (!/^#\/./.test(location.hash)) location.hash = "#/devices";
      else route();
    } catch (e) {
      $("login-message").className = "login-message";
      $("login-message").textContent = "The daemon did not answer (" + e.message + ").";
    } finally {
      button.disabled = false;
    }
  }

  /* ---- routing ---------------------------------------------------------------- */

  function leavePage() {
    if (!page) return;
    page.alive = false;
    page.controller.abort();
    for (const f of page.cleanups) {
      try {
        f();
      } catch (e) {
        console.error(e);
      }
    }
    page = null;
  }

  function route() {
    if (!token) {
      showLogin("");
      return;
    }
    leavePage();
    hideBanner();
    $("login").hidden = true;
    $("top").hidden = false;
    const app = $("app");
    app.hidden = false;
    app.replaceChildren();

    const hash = location.hash || "#/devices";
    const q = hash.indexOf("?");
    const path = q < 0 ? hash : hash.slice(0, q);
    const params = new URLSearchParams(q < 0 ? "" : hash.slice(q + 1));
    const parts = path.replace(/^#\/?/, "").split("/");
    const controller = new AbortController();
    page = { controller, signal: controller.signal, alive: true, cleanups: [] };
    const p = page;

    let name = parts[0] || "devices", run;
    if (name === "devices") run = () => pageDevices(p, app);
    else if (name === "device" && parts[1]) {
      let serial;
      try {
        serial = decodeURIComponent(parts.slice(1).join("/"));
      } catch (e) {
        serial = parts.slice(1).join("/");
      }
      run = () => pageDevice(p, app, serial);
      name = "devices";
    } else if (name === "dead-letters") run = () => pageDeadLetters(p, app, params);
    else if (name === "health") run = () => pageHealth(p, app);
    else {
      location.replace("#/devices");
      return;
    }
    for (const a of document.querySelectorAll("#nav a")) {
      a.classList.toggle("active", a.dataset.page === name);
    }
    document.body.dataset.page = parts[0] || "devices";
    run().catch((e) => report(e));
  }

  /* ---- devices ---------------------------------------------------------------- */

  function lastSeen(st) {
    const times = [st.last_connect, st.last_disconnect, st.last_sent, st.last_stored]
      .filter((t) => typeof t === "number");
    return times.length ? Math.max(...times) : null;
  }

  function searchKey(d) {
    const parts = [d.serial, d.name];
    for (const [k, v] of Object.entries(d.tags || {})) parts.push(k + "=" + v);
    return parts.join("\n").toLowerCase();
  }

  function deviceRow(d) {
    const st = d.status || {};
    const seen = lastSeen(st);
    return el("tr", null,
      el("td", { class: "mono" }, deviceLink(d.serial)),
      el("td", { class: "wrap", text: d.name }),
      el("td", null, el("span", { class: st.connected ? "dot on" : "dot" }),
        st.connected ? "connected" : "offline"),
      el("td", { class: "time", title: fmtTime(seen), text: fmtAgo(seen) }),
      el("td", { class: "num", text: fmtNum(st.messages ?? 0) }),
      el("td", { class: "num", text: fmtNum(st.records ?? 0) }),
      el("td", { class: "num" + (st.dead_letters ? " bad" : ""), text: fmtNum(st.dead_letters ?? 0) }),
      el("td", { class: "wrap" }, tags(d.tags)));
  }

  async function pageDevices(p, app) {
    const t0 = performance.now();
    const search = el("input", {
      type: "search", id: "device-search", placeholder: "Filter by serial, name or tag (k=v)",
      "aria-label": "Filter devices", value: deviceSearch,
    });
    const count = el("span", { class: "count", id: "device-count", text: "loading…" });
    const more = el("button", { type: "button", class: "small", hidden: true, text: "Show more" });
    const { table: wrap, tbody } = table([["Serial"], ["Name"], ["Status"], ["Last seen"],
      ["Messages", "num"], ["Records", "num"], ["Dead letters", "num"], ["Tags"]]);
    wrap.id = "devices-table";
    add(app, el("div", { class: "title-row" }, el("h1", { text: "Devices" }), count),
      el("div", { class: "panel" },
        el("div", { class: "toolbar" }, search, el("span", { class: "grow" })),
        wrap, el("div", { class: "toolbar" }, more)));

    const doc = await api("api/v1/devices", { signal: p.signal });
    const t1 = performance.now();
    const devices = doc.devices.slice().sort((a, b) => (a.serial < b.serial ? -1 : a.serial > b.serial ? 1 : 0));
    const keys = devices.map(searchKey);
    let matches = devices, shown = DEVICE_PAGE;

    function render() {
      const r0 = performance.now();
      const terms = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
      matches = terms.length ? devices.filter((d, i) => terms.every((t) => keys[i].includes(t))) : devices;
      const frag = document.createDocumentFragment();
      const n = Math.min(shown, matches.length);
      for (let i = 0; i < n; i++) frag.appendChild(deviceRow(matches[i]));
      tbody.replaceChildren(frag);
      if (!matches.length) {
        tbody.appendChild(el("tr", null, el("td", { colspan: 8, class: "muted",
          text: devices.length ? "No device matches." : "No devices yet (sealpipe device add)." })));
      }
      count.textContent = (n < matches.length ? "showing " + fmtNum(n) + " of " : "") +
        fmtNum(matches.length) + (terms.length ? " matching, of " + fmtNum(devices.length) : "") +
        " device" + ((terms.length ? devices.length : matches.length) === 1 ? "" : "s");
      more.hidden = n >= matches.length;
      wrap.dataset.matches = String(matches.length);
      wrap.dataset.rows = String(n);
      wrap.dataset.buildMs = (performance.now() - r0).toFixed(1);
    }

    let timer = 0;
    search.addEventListener("input", () => {
      deviceSearch = search.value;
      clearTimeout(timer);
      timer = setTimeout(() => {
        shown = DEVICE_PAGE;
        render();
      }, 60);
    });
    p.cleanups.push(() => clearTimeout(timer));
    more.addEventListener("click", () => {
      shown += DEVICE_PAGE;
      render();
    });
    render();
    // Test hook and figure: request to rendered rows, and the fetch alone.
    wrap.dataset.fetchMs = (t1 - t0).toFixed(1);
    wrap.dataset.renderMs = (performance.now() - t0).toFixed(1);
    search.focus();
  }

  /* ---- one device ------------------------------------------------------------- */

  async function pageDevice(p, app, serial) {
    const base = "api/v1/devices/" + encodeURIComponent(serial);
    const title = el("h1", { text: serial });
    const serialNote = el("span", { class: "mono muted", text: serial });
    const status = el("span", { class: "count" });
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
      title.textContent = d.name || d.serial;
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
        ["Created", fmtTime(d.created_at)],
        ["Last seen", fmtAgo(lastSeen(st)) + " (" + fmtTime(lastSeen(st)) + ")"],
        ["Last connect", fmtTime(st.last_connect)],
        ["Last stored", fmtTime(st.last_stored)],
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
        el("td", { class: "time", title: r.time, text: r.time ? fmtTime(Date.parse(r.time)) : "" }),
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
        c.chart.set(pts, { from, to, unit: c.unit });
      }));
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

    // `stored` events refresh the values and charts, at most once per REFRESH_GAP.
    let lastRefresh = 0, pending = 0, refreshing = false;
    function scheduleRefresh() {
      if (pending || !p.alive) return;
      const wait = Math.max(0, lastRefresh + REFRESH_GAP - Date.now());
      pending = setTimeout(async () => {
        pending = 0;
        if (refreshing) return scheduleRefresh();
        refreshing = true;
        lastRefresh = Date.now();
        try {
          await Promise.all([refresh(), dl.load()]);
        } catch (e) {
          report(e, "refresh");
        } finally {
          refreshing = false;
        }
      }, wait);
    }
    p.cleanups.push(() => clearTimeout(pending));

    try {
      await refresh();
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        showBanner("No device " + serial + " (" + e.describe() + ").");
        return;
      }
      throw e;
    }
    lastRefresh = Date.now();
    dl.load().catch((e) => report(e, "dead letters"));
    liveInspector(p, {
      device: serial, since: "15m", list: inspectorList, state: inspectorState,
      onEvent: (ev, live) => {
        if (live && (ev.kind === "stored" || ev.kind === "dead_letter")) scheduleRefresh();
      },
    });
  }

  /* ---- Live Inspector: fetch + a Server-Sent Events reader ---------------------- */

  function eventFields(ev) {
    const out = [];
    for (const [k, v] of Object.entries(ev)) {
      if (k === "seq" || k === "at" || k === "device" || k === "kind") continue;
      out.push(k + "=" + (typeof v === "string" && /^[^\s"=\\]+$/.test(v) ? v : JSON.stringify(v)));
    }
    return out.join(" ");
  }

  /* Streams GET api/v1/inspector into list (newest on top, INSPECTOR_ROWS
   * kept) until the page is left; reconnects after a break, asking for what
   * it missed and skipping what it already shows. */
  function liveInspector(p, opts) {
    const list = opts.list, state = opts.state;
    const seen = new Set(); // seq:at of the events shown
    const order = [];
    let lastAt = 0, total = 0;

    function setState(text, cls) {
      state.textContent = text;
      state.className = "stream-state " + (cls || "muted");
      list.dataset.state = text;
    }

    function addRow(li) {
      list.prepend(li);
      while (list.childElementCount > INSPECTOR_ROWS) list.lastElementChild.remove();
      list.dataset.count = String(++total);
    }

    function marker(text) {
      addRow(el("li", { class: "k-marker" }, el("span", { text: fmtClock(Date.now()) }),
        el("span", { text: "—" }), el("span", { text: "—" }), el("span", { class: "fields", text })));
    }

    let live = false;
    function onData(data, id) {
      let ev;
      try {
        ev = JSON.parse(data);
      } catch (e) {
        marker("unreadable event: " + data.slice(0, 200));
        return;
      }
      if (ev.kind === "live" && ev.seq === undefined) {
        live = true;
        setState("live", "ok");
        marker("live from here");
        return;
      }
      if (ev.kind === "dropped" && ev.seq === undefined) {
        marker((ev.count ?? "some") + " events dropped (this console read too slowly)");
        return;
      }
      const key = (ev.seq ?? id) + ":" + ev.at;
      if (seen.has(key)) return;
      seen.add(key);
      order.push(key);
      if (order.length > 4 * INSPECTOR_ROWS) seen.delete(order.shift());
      if (typeof ev.at === "number") lastAt = Math.max(lastAt, ev.at);
      addRow(el("li", { class: "k-" + String(ev.kind).replace(/[^a-z_]/g, "") },
        el("span", { title: fmtTime(ev.at), text: fmtClock(ev.at) }),
        el("span", { class: "mono", text: ev.device || "-" }),
        el("span", { class: "kind", text: ev.kind }),
        el("span", { class: "fields", text: eventFields(ev) })));
      if (opts.onEvent) opts.onEvent(ev, live);
    }

    async function once(since) {
      const q = new URLSearchParams();
      if (opts.device) q.set("device", opts.device);
      if (since) q.set("since", since);
      const res = await fetch("api/v1/inspector?" + q, {
        headers: authHeaders("text/event-stream"), signal: p.signal, cache: "no-store", credentials: "omit",
      });
      if (!res.ok) {
        const err = await errorOf(res);
        if (res.status === 401) unauthorized(err);
        throw err;
      }
      live = false;
      setState("replaying the last " + (since || "0s") + "…");
      const reader = res.body.getReader(); // the page's abort ends it
      const dec = new TextDecoder();
      let buf = "", data = [], id = null;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += dec.decode(value, { stream: true });
        // Complete lines only; a line may end in \n, \r\n or \r (SSE).
        let m;
        while ((m = /\r\n|\n|\r(?=[^\n])/.exec(buf)) !== null) {
          const line = buf.slice(0, m.index);
          buf = buf.slice(m.index + m[0].length);
          if (line === "") {
            if (data.length) onData(data.join("\n"), id);
            data = [];
            id = null;
          } else if (line[0] !== ":") {
            const c = line.indexOf(":");
            const field = c < 0 ? line : line.slice(0, c);
            let val = c < 0 ? "" : line.slice(c + 1);
            if (val[0] === " ") val = val.slice(1);
            if (field === "data") data.push(val);
            else if (field === "id") id = val;
          } else {
            list.dataset.keepalive = String(Date.now());
          }
        }
      }
    }

    (async () => {
      let since = opts.since, backoff = 2000;
      while (p.alive) {
        try {
          await once(since);
          backoff = 2000;
          if (!p.alive) return;
          setState("the stream ended; reconnecting…", "warn");
        } catch (e) {
          if (e.name === "AbortError" || !p.alive) return;
          if (e instanceof ApiError && e.status === 401) return;
          setState("disconnected (" + (e instanceof ApiError ? e.describe() : e.message) +
            "); retrying in " + backoff / 1000 + " s", "bad");
        }
        await sleep(backoff, p.signal);
        backoff = Math.min(backoff * 2, 30000);
        // Ask again for what came since the last event shown (the seen set
        // drops the ones already listed).
        if (lastAt) since = Math.max(1, Math.ceil((Date.now() - lastAt) / 1000) + 5) + "s";
      }
    })();
  }

  /* ---- dead letters ----------------------------------------------------------- */

  /* A dead letter table (filters: device, reason, limit) with Retry buttons. */
  function deadLetterTable(p, filters) {
    const showDevice = !filters.device;
    const heads = [["ID", "num"], ["Received"]];
    if (showDevice) heads.push(["Device"]);
    heads.push(["Reason"], ["Detail"], ["Topic"], ["Size", "num"], ["Retries", "num"], ["Retry"]);
    const t = table(heads);
    const count = el("p", { class: "count" });
    const root = el("div", null, count, t.table);

    async function retry(d, force, cell, button, retriesCell) {
      button.disabled = true;
      cell.className = "wrap";
      cell.replaceChildren("retrying…");
      try {
        await api("api/v1/dead-letters/" + d.id + "/retry" + (force ? "?force=1" : ""),
          { method: "POST", signal: p.signal });
        cell.replaceChildren("queued; waiting for the daemon…");
        // Within a second it is gone (stored) or counts one more retry.
        for (let i = 0; i < 20 && p.alive; i++) {
          await sleep(300, p.signal);
          let now;
          try {
            now = await api("api/v1/dead-letters/" + d.id, { signal: p.signal });
          } catch (e) {
            if (e instanceof ApiError && e.status === 404) {
              cell.className = "wrap ok";
              cell.replaceChildren("stored: the retry succeeded and the dead letter is gone");
              cell.dataset.result = "stored";
              return;
            }
            throw e;
          }
          if (now.retries > d.retries) {
            retriesCell.textContent = fmtNum(now.retries);
            cell.className = "wrap bad";
            cell.replaceChildren("retried, failed again: " + now.reason + (now.detail ? " (" + now.detail + ")" : ""));
            cell.dataset.result = "failed";
            d.retries = now.retries;
            button.disabled = false;
            return;
          }
        }
        cell.replaceChildren("queued; the daemon has not run it yet");
        cell.dataset.result = "queued";
      } catch (e) {
        if (e.name === "AbortError") return;
        const text = e instanceof ApiError ? e.describe() : e.message;
        cell.className = "wrap bad";
        cell.replaceChildren("retry refused: " + text);
        cell.dataset.result = "error";
        cell.dataset.status = String(e.status || 0);
        report(e, "retry of dead letter " + d.id);
        button.disabled = false;
      }
    }

    function row(d) {
      const result = el("span", { class: "wrap" });
      const retries = el("td", { class: "num", text: fmtNum(d.retries) });
      const action = el("td", { class: "wrap" });
      if (d.retry_refused === null || d.retry_refused === undefined) {
        const b = el("button", { type: "button", class: "small retry", text: "Retry", "data-id": d.id });
        b.addEventListener("click", () => retry(d, false, result, b, retries));
        add(action, b, " ", result);
      } else {
        add(action, el("span", { class: "muted", text: "not retried: " + d.retry_refused }));
        if (d.force_allows) {
          const b = el("button", { type: "button", class: "small retry-force", text: "Retry anyway", "data-id": d.id });
          b.addEventListener("click", () => retry(d, true, result, b, retries));
          add(action, " ", b);
        }
        add(action, " ", result);
      }
      const tr = el("tr", { "data-id": d.id },
        el("td", { class: "num", text: d.id }),
        el("td", { class: "time", text: fmtTime(d.received_at) }));
      if (showDevice) tr.appendChild(el("td", { class: "mono" }, d.device ? deviceLink(d.device) : "—"));
      add(tr,
        el("td", { text: d.reason }),
        el("td", { class: "wrap pre", text: d.detail ?? "" }),
        el("td", { class: "mono wrap", text: d.topic ?? "" }),
        el("td", { class: "num", text: fmtBytes(d.size) }),
        retries, action);
      return tr;
    }

    async function load() {
      const q = new URLSearchParams();
      for (const k of ["device", "reason", "limit"]) if (filters[k]) q.set(k, filters[k]);
      const doc = await api("api/v1/dead-letters?" + q, { signal: p.signal });
      const rows = doc.dead_letters;
      const frag = document.createDocumentFragment();
      for (const d of rows) frag.appendChild(row(d));
      t.tbody.replaceChildren(frag);
      if (!rows.length) {
        t.tbody.appendChild(el("tr", null, el("td", { colspan: heads.length, class: "muted", text: "No dead letters." })));
      }
      count.textContent = rows.length + " dead letter" + (rows.length === 1 ? "" : "s") +
        (filters.limit && rows.length >= filters.limit ? " (the newest " + filters.limit + ")" : "");
      root.dataset.count = String(rows.length); // test hook
      return rows;
    }

    return { el: root, load, filters };
  }

  async function pageDeadLetters(p, app, params) {
    const filters = {
      reason: params.get("reason") || "",
      device: params.get("device") || "",
      limit: Number(params.get("limit")) || 100,
    };
    const reason = el("select", { id: "dl-reason", "aria-label": "Reason" }, el("option", { value: "", text: "all reasons" }));
    const device = el("input", { type: "search", id: "dl-device", placeholder: "device serial", value: filters.device });
    const limit = el("select", { id: "dl-limit", "aria-label": "How many" },
      [100, 500, 1000, 10000].map((n) => el("option", { value: n, text: "newest " + n, selected: n === filters.limit })));
    const reload = el("button", { type: "button", text: "Reload" });
    const dl = deadLetterTable(p, filters);
    dl.el.id = "dead-letters";
    add(app, el("div", { class: "title-row" }, el("h1", { text: "Dead letters" })),
      el("div", { class: "panel" },
        el("div", { class: "toolbar" }, "Reason", reason, "Device", device, limit, reload), dl.el));

    function apply() {
      filters.reason = reason.value;
      filters.device = device.value.trim();
      filters.limit = Number(limit.value);
      const q = new URLSearchParams();
      if (filters.reason) q.set("reason", filters.reason);
      if (filters.device) q.set("device", filters.device);
      if (filters.limit !== 100) q.set("limit", String(filters.limit));
      const hash = "#/dead-letters" + (q.toString() ? "?" + q : "");
      history.replaceState(null, "", hash); // no hashchange: stay on this page
      hideBanner();
      dl.load().catch((e) => report(e, "dead letters"));
    }
    reason.addEventListener("change", apply);
    limit.addEventListener("change", apply);
    reload.addEventListener("click", apply);
    device.addEventListener("keydown", (e) => {
      if (e.key === "Enter") apply();
    });

    // The reasons: what the daemon counted, and what is listed.
    const [metrics, rows] = await Promise.all([
      api("api/v1/metrics", { signal: p.signal }).catch((e) => {
        report(e, "metrics");
        return { dead_letters: {} };
      }),
      dl.load(),
    ]);
    const reasons = new Set(Object.keys(metrics.dead_letters || {}));
    for (const d of rows) reasons.add(d.reason);
    if (filters.reason) reasons.add(filters.reason);
    for (const r of [...reasons].sort()) reason.appendChild(el("option", { value: r, text: r, selected: r === filters.reason }));
  }

  /* ---- health ----------------------------------------------------------------- */

  const METRIC_GROUPS = [
    ["Broker", [["broker_connected", "daemon's MQTT link"], ["devices_connected", "devices connected"], ["broker_restarts", "broker restarts"],
      ["broker_reconnects", "broker reconnects"], ["mqtt_qos0_dropped", "QoS 0 messages dropped"]]],
    ["Workers", [["worker_restarts", "worker restarts"]]],
    ["Pipeline", [["messages_committed", "messages committed"], ["messages_stored", "messages stored"],
      ["records_stored", "records stored"], ["duplicates", "duplicates skipped"],
      ["requests_refused", "requests refused"], ["requests_waiting", "requests waiting"],
      ["answers_lost", "answers lost"], ["journal_backlog_bytes", "journal backlog"]]],
  ];

  function metric(label, value, cls) {
    return el("div", { class: "metric" }, el("div", { class: "label", text: label }),
      el("div", { class: "value" + (cls ? " " + cls : ""), text: value }));
  }

  async function pageHealth(p, app) {
    const updated = el("span", { class: "count", id: "health-updated", text: "loading…" });
    const body = el("div", { id: "health", class: "health" });
    add(app, el("div", { class: "title-row" }, el("h1", { text: "Health" }), updated), body);

    function render(m) {
      const known = new Set(["started_at", "dead_letters"]);
      const sections = [el("section", { class: "panel" }, el("h2", { text: "Daemon" }),
        el("div", { class: "metrics" },
          metric("up for", m.started_at ? fmtDuration(Date.now() - m.started_at) : "—"),
          el("div", { class: "metric" }, el("div", { class: "label", text: "started" }),
            el("div", { text: fmtTime(m.started_at) }))))];
      for (const [title, items] of METRIC_GROUPS) {
        const cards = [];
        for (const [key, label] of items) {
          known.add(key);
          if (!(key in m)) continue;
          const v = m[key];
          if (key === "broker_connected") {
            cards.push(metric(label, v ? "up" : "down", v ? "ok" : "bad"));
            continue;
          }
          const bad = v > 0 && /restarts|lost|dropped|refused/.test(key);
          cards.push(metric(label, key.endsWith("_bytes") ? fmtBytes(v) : fmtNum(v), bad ? "warn" : ""));
        }
        sections.push(el("section", { class: "panel" + (cards.length > 4 ? " wide" : "") },
          el("h2", { text: title }), el("div", { class: "metrics" }, cards)));
      }
      const other = Object.entries(m).filter(([k, v]) => !known.has(k) && typeof v === "number");
      if (other.length) {
        sections.push(el("section", { class: "panel" }, el("h2", { text: "Other" }),
          el("div", { class: "metrics" }, other.map(([k, v]) => metric(k.replace(/_/g, " "), fmtNum(v))))));
      }
      const reasons = Object.entries(m.dead_letters || {}).sort((a, b) => b[1] - a[1]);
      const t = table([["Reason"], ["Dead letters", "num"]]);
      t.table.id = "health-dead-letters";
      for (const [r, n] of reasons) {
        t.tbody.appendChild(el("tr", null,
          el("td", null, el("a", { href: "#/dead-letters?reason=" + encodeURIComponent(r), text: r })),
          el("td", { class: "num", text: fmtNum(n) })));
      }
      const total = reasons.reduce((s, [, n]) => s + n, 0);
      if (!reasons.length) t.tbody.appendChild(el("tr", null, el("td", { colspan: 2, class: "muted", text: "None." })));
      else t.tbody.appendChild(el("tr", null, el("th", { text: "total" }), el("th", { class: "num", text: fmtNum(total) })));
      sections.push(el("section", { class: "panel wide" }, el("h2", { text: "Dead letters by reason (committed)" }), t.table));
      body.replaceChildren(...sections);
    }

    let timer = 0;
    p.cleanups.push(() => clearTimeout(timer));
    async function tick() {
      try {
        const m = await api("api/v1/metrics", { signal: p.signal });
        render(m);
        hideBanner();
        updated.textContent = "updated " + fmtClock(Date.now()) + ", every " + HEALTH_EVERY / 1000 + " s";
        body.dataset.updates = String(Number(body.dataset.updates || 0) + 1);
      } catch (e) {
        if (e.name === "AbortError") return;
        report(e, "metrics");
        updated.textContent = "not updated: " + (e instanceof ApiError ? e.describe() : e.message);
      }
      if (p.alive) timer = setTimeout(tick, HEALTH_EVERY);
    }
    await tick();
  }

  /* ---- start ------------------------------------------------------------------ */

  $("login-form").addEventListener("submit", onLogin);
  $("logout").addEventListener("click", () => logout("Logged out.", false));
  $("banner-close").addEventListener("click", hideBanner);
  window.addEventListener("hashchange", route);
  route();
})();
