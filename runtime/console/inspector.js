/*
 * inspector.js - the Live Inspector in the console: GET /api/v1/inspector read with
 * fetch() (an EventSource cannot send the token) and a Server-Sent Events
 * reader of its own; each event a row of text. The stream is closed while
 * the tab is hidden (a browser has 6 connections per host: six open device
 * pages would leave a seventh tab none) and opened again, for what was
 * missed, when it is visible.
 */
"use strict";

(function (SP) {
  const { el, fmtClock, isoUTC, sleep, ApiError, authHeaders, errorOf, unauthorized } = SP;

  const INSPECTOR_ROWS = 500; // Live Inspector rows kept

  /* ---- Live Inspector: fetch + a Server-Sent Events reader ---------------------- */

  /* key=value ...: a string as the daemon wrote it (it escaped what needs
   * escaping already: a log line's ESC arrives as the text \x1b), in "..."
   * when it has a space, "=" or a quote or is empty; other values as JSON.
   * el() makes invisible characters visible (ui.js). */
  function eventFields(ev) {
    const out = [];
    for (const [k, v] of Object.entries(ev)) {
      if (k === "seq" || k === "at" || k === "device" || k === "kind") continue;
      out.push(k + "=" + (typeof v !== "string" ? JSON.stringify(v)
        : v === "" || /[\s"=]/.test(v) ? "\"" + v + "\"" : v));
    }
    return out.join(" ");
  }

  function hidden() {
    return document.visibilityState === "hidden";
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
        el("span", { title: isoUTC(ev.at), text: fmtClock(ev.at) }),
        el("span", { class: "mono", text: ev.device || "-" }),
        el("span", { class: "kind", text: ev.kind }),
        el("span", { class: "fields", text: eventFields(ev) })));
      if (opts.onEvent) opts.onEvent(ev, live);
    }

    async function once(since, signal) {
      const q = new URLSearchParams();
      if (opts.device) q.set("device", opts.device);
      if (since) q.set("since", since);
      const res = await fetch("api/v1/inspector?" + q, {
        headers: authHeaders("text/event-stream"), signal, cache: "no-store", credentials: "omit",
      });
      if (!res.ok) {
        const err = await errorOf(res);
        if (res.status === 401) unauthorized(err);
        throw err;
      }
      live = false;
      setState("replaying the last " + (since || "0s") + "…");
      const reader = res.body.getReader(); // the abort (page left, tab hidden) ends it
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

    // The stream of the moment: aborted when the page is left or the tab
    // hidden; a visible tab again wakes the loop below.
    let conn = null, wake = null;
    function onVisibility() {
      if (hidden()) {
        if (conn) conn.abort();
      } else if (wake) {
        wake();
      }
    }
    document.addEventListener("visibilitychange", onVisibility);
    p.cleanups.push(() => document.removeEventListener("visibilitychange", onVisibility));
    p.signal.addEventListener("abort", () => {
      if (conn) conn.abort();
      if (wake) wake();
    }, { once: true });

    function untilVisible() {
      return new Promise((resolve) => {
        wake = () => {
          wake = null;
          resolve();
        };
        if (!hidden() || !p.alive) wake();
      });
    }

    // Ask again for what came since the last event shown (the seen set
    // drops the ones already listed).
    function sinceLast(since) {
      return lastAt ? Math.max(1, Math.ceil((Date.now() - lastAt) / 1000) + 5) + "s" : since;
    }

    (async () => {
      let since = opts.since, backoff = 2000;
      while (p.alive) {
        if (hidden()) {
          setState("paused while this tab is hidden", "muted");
          await untilVisible();
          if (!p.alive) return;
          since = sinceLast(since);
          marker("tab visible again: asking for what came since");
        }
        conn = new AbortController();
        let pausedByHide = false;
        try {
          await once(since, conn.signal);
          backoff = 2000;
          if (!p.alive) return;
          setState("the stream ended; reconnecting…", "warn");
        } catch (e) {
          if (!p.alive) return;
          if (e.name === "AbortError") {
            pausedByHide = true; // only the page's end and a hidden tab abort
          } else {
            if (e instanceof ApiError && e.status === 401) return;
            setState("disconnected (" + (e instanceof ApiError ? e.describe() : e.message) +
              "); retrying in " + backoff / 1000 + " s", "bad");
          }
        } finally {
          conn = null;
        }
        if (pausedByHide) {
          marker("paused: this tab is hidden");
          continue;
        }
        await sleep(backoff, p.signal);
        backoff = Math.min(backoff * 2, 30000);
        since = sinceLast(since);
      }
    })();
  }

  SP.liveInspector = liveInspector;
})((window.sealpipe = window.sealpipe || {}));
