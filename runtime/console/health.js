/*
 * health.js - the health page: GET /api/v1/metrics every HEALTH_EVERY ms.
 * Counters are since the daemon started (started_at); the dead letters are
 * shown twice: kept (in the bucket now: what the Dead letters page lists,
 * dead_letters_kept) and dead-lettered since the start (dead_letters).
 */
"use strict";

(function (SP) {
  const { el, add, fmtClock, fmtNum, fmtBytes, fmtDuration, isoUTC, timeEl, table, hideBanner, ApiError, api, report } = SP;

  const HEALTH_EVERY = 5000; // ms between /metrics reads

  /* ---- health ----------------------------------------------------------------- */

  // [key, label]: counters say "since start"; the others are the present.
  const METRIC_GROUPS = [
    ["Broker", [["broker_connected", "daemon's MQTT link"], ["devices_connected", "devices connected"],
      ["broker_restarts", "broker restarts since start"], ["broker_reconnects", "broker reconnects since start"],
      ["mqtt_qos0_dropped", "QoS 0 messages dropped since start"]]],
    ["Workers", [["worker_restarts", "worker restarts since start"]]],
    ["Pipeline", [["messages_committed", "messages committed since start"], ["messages_stored", "messages stored since start"],
      ["records_stored", "records stored since start"], ["duplicates", "duplicates skipped since start"],
      ["requests_refused", "requests refused since start"], ["requests_waiting", "requests waiting now"],
      ["answers_lost", "answers lost since start"], ["journal_backlog_bytes", "journal backlog now"]]],
  ];

  /* A table of dead letters by reason, the biggest first, with a total;
   * link: each reason to the Dead letters page filtered by it. */
  function reasonTable(id, counts, link, none) {
    const reasons = Object.entries(counts || {}).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    const t = table([["Reason"], ["Dead letters", "num"]]);
    t.table.id = id;
    for (const [r, n] of reasons) {
      t.tbody.appendChild(el("tr", null,
        el("td", { class: "wrap" }, link ? el("a", { href: "#/dead-letters?reason=" + encodeURIComponent(r), text: r }) : r),
        el("td", { class: "num", text: fmtNum(n) })));
    }
    const total = reasons.reduce((s, [, n]) => s + n, 0);
    if (!reasons.length) t.tbody.appendChild(el("tr", null, el("td", { colspan: 2, class: "muted", text: none })));
    else t.tbody.appendChild(el("tr", null, el("th", { text: "total" }), el("th", { class: "num", text: fmtNum(total) })));
    t.table.dataset.total = String(total); // test hook
    return t.table;
  }

  function metric(label, value, cls) {
    return el("div", { class: "metric" }, el("div", { class: "label", text: label }),
      el("div", { class: "value" + (cls ? " " + cls : ""), text: value }));
  }

  async function pageHealth(p, app) {
    const updated = el("span", { class: "count", id: "health-updated", text: "loading…" });
    const body = el("div", { id: "health", class: "health" });
    add(app, el("div", { class: "title-row" }, el("h1", { text: "Health" }), updated), body);

    function render(m) {
      const known = new Set(["started_at", "dead_letters", "dead_letters_kept"]);
      const sections = [el("section", { class: "panel" }, el("h2", { text: "Daemon" }),
        el("div", { class: "metrics" },
          metric("up for", m.started_at ? fmtDuration(Date.now() - m.started_at) : "—"),
          el("div", { class: "metric" }, el("div", { class: "label", text: "started" }),
            timeEl("div", m.started_at))))];
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
      const since = m.started_at ? " (" + fmtClock(m.started_at).slice(0, 8) + ", " + fmtDuration(Date.now() - m.started_at) + " ago)" : "";
      sections.push(el("section", { class: "panel" },
        el("h2", { text: "Dead letters kept (in the bucket)" }),
        el("p", { class: "muted", text: "What the Dead letters page lists: every dead letter not yet retried away or expired." }),
        "dead_letters_kept" in m
          ? reasonTable("health-dead-letters-kept", m.dead_letters_kept, true, "None.")
          : el("p", { class: "muted", text: "This daemon does not report them (no dead_letters_kept in /metrics)." })));
      sections.push(el("section", { class: "panel" },
        el("h2", { text: "Dead-lettered since the daemon started" }),
        el("p", { class: "muted", title: isoUTC(m.started_at), text: "Counted since the start" + since +
          ", whether still kept or not." }),
        reasonTable("health-dead-letters", m.dead_letters, false, "None since the start.")));
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
