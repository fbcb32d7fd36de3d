/*
 * ui.js - the console's DOM helpers (text only), formatting and the error banner.
 *
 * SAFETY: el() and add() put strings into the page as text (textContent,
 * text nodes), attributes with setAttribute; nothing here parses HTML.
 *
 * VISIBLE CHARACTERS: text that could hide or reorder what is shown is made
 * visible by visible(), which el() (its `text`, `title` and string children),
 * add() and showBanner() apply: every control (but tab and newline), format
 * character (bidi controls, zero width, soft hyphen, tags), line or paragraph
 * separator and default-ignorable code point (Hangul fillers, variation
 * selectors) is shown as its code point in angle brackets: "Safe \u202Egnp.exe" shows as
 * "Safe ⟨U+202E⟩gnp.exe", an ESC as "⟨U+001B⟩". So a device named to look
 * like another, or like a file name, shows what it really is. Strings set
 * another way (textContent, replaceChildren) must go through visible() too.
 */
"use strict";

(function (SP) {
  const $ = (id) => document.getElementById(id);

  /* ---- DOM helpers: text only --------------------------------------------- */

  /* Controls, format characters (bidi, zero width, soft hyphen, tags), line
   * and paragraph separators, and every default-ignorable code point
   * (fillers, variation selectors): what renders as nothing or reorders
   * text. By Unicode property, not by list (review: a list missed U+00AD,
   * U+3164, U+E0021). Tab and newline are kept. */
  const HIDDEN = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]/gu;

  /* s as text with its invisible characters made visible (see the top). */
  function visible(s) {
    return String(s).replace(HIDDEN, (c) => c === "\t" || c === "\n" ? c
      : "\u27E8U+" + c.codePointAt(0).toString(16).toUpperCase().padStart(4, "0") + "\u27E9");
  }

  /* el("td", {class: "num", text: 3}, child, "text", ...): attributes are set
   * with setAttribute (values are text), children strings become text nodes. */
  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === null || v === undefined || v === false) continue;
        if (k === "class") e.className = v;
        else if (k === "text") e.textContent = visible(v);
        else if (k === "title") e.setAttribute(k, visible(v));
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
      parent.appendChild(c instanceof Node ? c : document.createTextNode(visible(c)));
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

  /* The ISO UTC time of ms (what the CLI and the API say), for titles. */
  function isoUTC(ms) {
    if (ms === null || ms === undefined || !isFinite(ms)) return null;
    return new Date(ms).toISOString();
  }

  /* The local zone, said once in the header: "Europe/Lisbon (UTC+01:00)". */
  function zoneName() {
    const off = -new Date().getTimezoneOffset();
    const a = Math.abs(off);
    let name = "";
    try {
      name = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    } catch (e) {
      name = "";
    }
    const utc = "UTC" + (off < 0 ? "-" : "+") + pad(Math.floor(a / 60)) + ":" + pad(a % 60);
    return name ? name + " (" + utc + ")" : utc;
  }

  /* A time as local text whose title is the ISO UTC time. */
  function timeEl(tag, ms, cls, text) {
    return el(tag, { class: cls, title: isoUTC(ms), text: text ?? fmtTime(ms) });
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
    $("banner-text").textContent = visible(text);
    $("banner").className = "banner" + (kind === "info" ? " info" : "");
    $("banner").hidden = false;
  }

  function hideBanner() {
    $("banner").hidden = true;
    $("banner-text").textContent = "";
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      if (signal) signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }

  SP.$ = $;
  SP.visible = visible;
  SP.isoUTC = isoUTC;
  SP.zoneName = zoneName;
  SP.timeEl = timeEl;
  SP.el = el;
  SP.add = add;
  SP.deviceLink = deviceLink;
  SP.fmtTime = fmtTime;
  SP.fmtClock = fmtClock;
  SP.fmtAgo = fmtAgo;
  SP.fmtNum = fmtNum;
  SP.fmtBytes = fmtBytes;
  SP.fmtValue = fmtValue;
  SP.fmtDuration = fmtDuration;
  SP.tags = tags;
  SP.table = table;
  SP.showBanner = showBanner;
  SP.hideBanner = hideBanner;
  SP.sleep = sleep;
})((window.sealpipe = window.sealpipe || {}));
