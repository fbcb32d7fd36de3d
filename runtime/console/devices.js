/*
 * devices.js - the devices page: every device with its status, a search by serial,
 * name or tag over the list, the first DEVICE_PAGE matches drawn; the list
 * read again every SP.devicesEvery ms while the tab is visible.
 */
"use strict";

(function (SP) {
  const { el, add, deviceLink, fmtTime, fmtAgo, fmtClock, fmtNum, isoUTC, tags, table, api, report, ApiError } = SP;

  SP.devicesEvery = 15000; // ms between reads of the list (the test shortens it)

  const DEVICE_PAGE = 500; // device rows rendered at once
  let deviceSearch = ""; // the search, kept across pages

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
      el("td", { class: "mono nowrap" }, deviceLink(d.serial)),
      el("td", { class: "wrap", text: d.name }),
      el("td", { class: "nowrap" }, el("span", { class: st.connected ? "dot on" : "dot" }),
        st.connected ? "connected" : "offline"),
      el("td", { class: "time", title: seen ? fmtTime(seen) + " (" + isoUTC(seen) + ")" : null, text: fmtAgo(seen) }),
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
    const updated = el("span", { class: "count", id: "devices-updated" });
    const more = el("button", { type: "button", class: "small", hidden: true, text: "Show more" });
    const { table: wrap, tbody } = table([["Serial"], ["Name"], ["Status"], ["Last seen"],
      ["Messages", "num"], ["Records", "num"], ["Dead letters", "num"], ["Tags"]]);
    wrap.id = "devices-table";
    add(app, el("div", { class: "title-row" }, el("h1", { text: "Devices" }), count, updated),
      el("div", { class: "panel" },
        el("div", { class: "toolbar" }, search, el("span", { class: "grow" })),
        wrap, el("div", { class: "toolbar" }, more)));

    let devices = [], keys = [], matches = devices, shown = DEVICE_PAGE, loadedAt = 0;
    async function load() {
      const doc = await api("api/v1/devices", { signal: p.signal });
      devices = doc.devices.slice().sort((a, b) => (a.serial < b.serial ? -1 : a.serial > b.serial ? 1 : 0));
      keys = devices.map(searchKey);
      loadedAt = Date.now();
      updated.textContent = "· updated " + fmtClock(loadedAt).slice(0, 8) + ", every " + SP.devicesEvery / 1000 + " s";
      updated.title = isoUTC(loadedAt);
      wrap.dataset.loads = String(Number(wrap.dataset.loads || 0) + 1); // test hook
    }
    await load();
    const t1 = performance.now();

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

    // Read again every SP.devicesEvery ms while visible (the search and the
    // rows shown stay); hidden, not at all, and at once when visible again
    // if it is due.
    let reloadTimer = 0, loading = false;
    function plan() {
      clearTimeout(reloadTimer);
      if (!p.alive || loading || document.visibilityState === "hidden") return;
      reloadTimer = setTimeout(async () => {
        if (!p.alive || document.visibilityState === "hidden") return;
        loading = true;
        try {
          await load();
          if (p.alive) render();
        } catch (e) {
          if (e.name === "AbortError") return;
          report(e, "devices");
          updated.textContent = "· not updated: " + (e instanceof ApiError ? e.describe() : e.message);
          loadedAt = Date.now(); // the next try in SP.devicesEvery
        } finally {
          loading = false;
        }
        plan();
      }, Math.max(0, loadedAt + SP.devicesEvery - Date.now()));
    }
    document.addEventListener("visibilitychange", plan);
    p.cleanups.push(() => {
      clearTimeout(reloadTimer);
      document.removeEventListener("visibilitychange", plan);
    });
    plan();
    // Test hook and figure: request to rendered rows, and the fetch alone.
    wrap.dataset.fetchMs = (t1 - t0).toFixed(1);
    wrap.dataset.renderMs = (performance.now() - t0).toFixed(1);
    search.focus();
  }

  SP.lastSeen = lastSeen;
  SP.pageDevices = pageDevices;
})((window.sealpipe = window.sealpipe || {}));
