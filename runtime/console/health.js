/*
 * health.js - the health page: GET /api/v1/metrics every HEALTH_EVERY ms.
 */
"use strict";

(function (SP) {
  const { el, add, fmtTime, fmtClock, fmtNum, fmtBytes, fmtDuration, table, hideBanner, ApiError, api, report } = SP;

  const HEALTH_EVERY = 5000; // ms between /metrics reads

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

  SP.pageHealth = pageHealth;
})((window.sealpipe = window.sealpipe || {}));
