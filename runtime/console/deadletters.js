/*
 * deadletters.js - dead letters in the console: a table with Retry (the device page
 * shows one too) and the dead letters page with its filters.
 */
"use strict";

(function (SP) {
  const { el, add, visible, deviceLink, fmtNum, fmtBytes, timeEl, table, hideBanner, sleep, ApiError, api, report, readOnly } = SP;

  const LIMITS = [100, 500, 1000, 10000]; // the "newest N" choices
  const READ_ONLY = "This token may only read: a retry needs a full token (sealpipe admin token add).";

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
            cell.replaceChildren(visible("retried, failed again: " + now.reason + (now.detail ? " (" + now.detail + ")" : "")));
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
        cell.replaceChildren(visible("retry refused: " + text));
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
      // A read token's Retry would be refused (403): shown, disabled, saying why.
      const ro = readOnly();
      const props = (cls, text) => ({ type: "button", class: cls, text, "data-id": d.id, disabled: ro, title: ro ? READ_ONLY : null });
      if (d.retry_refused === null || d.retry_refused === undefined) {
        const b = el("button", props("small retry", "Retry"));
        b.addEventListener("click", () => retry(d, false, result, b, retries));
        add(action, b, " ", result);
      } else {
        add(action, el("span", { class: "muted", text: "not retried: " + d.retry_refused }));
        if (d.force_allows) {
          const b = el("button", props("small retry-force", "Retry anyway"));
          b.addEventListener("click", () => retry(d, true, result, b, retries));
          add(action, " ", b);
        }
        add(action, " ", result);
      }
      const tr = el("tr", { "data-id": d.id },
        el("td", { class: "num", text: d.id }),
        timeEl("td", d.received_at, "time"));
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
    const asked = Number(params.get("limit"));
    const filters = {
      reason: params.get("reason") || "",
      device: params.get("device") || "",
      limit: Number.isInteger(asked) && asked > 0 ? asked : 100,
    };
    // A limit from the address that is not one of the choices is one too.
    const limits = LIMITS.includes(filters.limit) ? LIMITS : [...LIMITS, filters.limit].sort((a, b) => a - b);
    const reason = el("select", { id: "dl-reason", "aria-label": "Reason" }, el("option", { value: "", text: "all reasons" }));
    const device = el("input", { type: "search", id: "dl-device", placeholder: "device serial", value: filters.device });
    const limit = el("select", { id: "dl-limit", "aria-label": "How many" },
      limits.map((n) => el("option", { value: n, text: "newest " + n, selected: n === filters.limit })));
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

    // The reasons: what the bucket holds, what the daemon counted, and what
    // is listed.
    const [metrics, rows] = await Promise.all([
      api("api/v1/metrics", { signal: p.signal }).catch((e) => {
        report(e, "metrics");
        return { dead_letters: {} };
      }),
      dl.load(),
    ]);
    const reasons = new Set([...Object.keys(metrics.dead_letters_kept || {}), ...Object.keys(metrics.dead_letters || {})]);
    for (const d of rows) reasons.add(d.reason);
    if (filters.reason) reasons.add(filters.reason);
    for (const r of [...reasons].sort()) reason.appendChild(el("option", { value: r, text: r, selected: r === filters.reason }));
  }

  SP.deadLetterTable = deadLetterTable;
  SP.pageDeadLetters = pageDeadLetters;
})((window.sealpipe = window.sealpipe || {}));
