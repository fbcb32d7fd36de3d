/*
 * inspector.js - the Live Inspector in the console: GET /api/v1/inspector read with
 * fetch() (an EventSource cannot send the token) and a Server-Sent Events
 * reader of its own; each event a row of text.
 */
"use strict";

(function (SP) {
  const { el, fmtClock, fmtTime, sleep, ApiError, authHeaders, errorOf, unauthorized } = SP;

  const INSPECTOR_ROWS = 500; // Live Inspector rows kept

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

  SP.liveInspector = liveInspector;
})((window.sealpipe = window.sealpipe || {}));
