/*
 * app.js - the sealpipe web console (issue #16): devices, a device's data,
 * charts and Live Inspector, dead letters, health. Plain ES2020, no
 * framework, served as-is by the daemon with a strict CSP (no inline script
 * or style, no eval). This file: the login, the pages' routing and the
 * start; the other files (index.html loads them in order) each add their
 * part to window.sealpipe: ui.js, api.js, chart.js, inspector.js,
 * deadletters.js, devices.js, device.js, health.js.
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

(function (SP) {
  const { $, el, add, hideBanner, session, remember, forget, errorOf, report, fetchTimed, ApiError, api, zoneName,
    pageDevices, pageDevice, pageDeadLetters, pageHealth } = SP;

  const SERIAL = /^[A-Za-z0-9_-]{1,100}$/; // sealpipe's serial rule

  let page = null; // the page on screen: {controller, signal, alive, cleanups}

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
    forget();
    showLogin(message, isError);
  }

  async function onLogin(ev) {
    ev.preventDefault();
    const given = $("token").value.trim();
    if (!given) return;
    const button = ev.target.querySelector("button");
    button.disabled = true;
    $("login-message").textContent = "";
    const get = (path) => fetchTimed(path, {
      headers: { Authorization: "Bearer " + given, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit",
    }, null, async (res) => ({ res, body: res.ok ? await res.json() : await errorOf(res) }));
    try {
      // GET /session proves the token and says what it may do; a daemon
      // without it (404): /metrics proves it, the permission stays unknown.
      let { res, body } = await get("api/v1/session");
      let perm = res.ok && body ? body.perm : null;
      if (res.status === 404) ({ res, body } = await get("api/v1/metrics"));
      if (!res.ok) {
        $("login-message").className = "login-message";
        $("login-message").textContent = res.status === 401
          ? "This token was refused (401 " + body.code + ": " + body.message + ")."
          : "The daemon answered " + body.describe();
        return;
      }
      if (perm !== "read" && perm !== "full") perm = null;
      remember(given, perm);
      $("token").value = "";
      $("login").hidden = true;
      if (!/^#\/./.test(location.hash)) location.hash = "#/devices";
      else route();
    } catch (e) {
      $("login-message").className = "login-message";
      $("login-message").textContent = e instanceof ApiError && e.code === "timeout"
        ? "The daemon did not answer: " + e.message + "."
        : "The daemon did not answer (" + e.message + ").";
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

  /* After a reload: what the kept token may do (GET /session). A failure
   * leaves it unknown (a 401 ends the session as usual). */
  async function loadPerm() {
    try {
      const s = await api("api/v1/session");
      session.perm = s && (s.perm === "read" || s.perm === "full") ? s.perm : null;
    } catch (e) {
      session.perm = null;
    }
  }

  function noSuchDevice(app, given) {
    add(app, el("div", { class: "title-row" }, el("h1", { id: "no-device", text: "No such device" }),
      el("a", { href: "#/devices", class: "muted", text: "← all devices" })),
    el("p", { class: "muted", text: "\u201C" + given + "\u201D is not a device serial " +
      "(1 to 100 letters, digits, \u201C_\u201D or \u201C-\u201D)." }));
    return Promise.resolve();
  }

  function route() {
    if (!session.token) {
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
      // Only a serial goes into the API's URL: "." or ".." there would be
      // collapsed by the browser into another route.
      run = SERIAL.test(serial) ? () => pageDevice(p, app, serial) : () => noSuchDevice(app, serial);
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

  /* ---- start ------------------------------------------------------------------ */

  SP.onUnauthorized = (message) => logout(message, true);
  $("login-form").addEventListener("submit", onLogin);
  $("logout").addEventListener("click", () => logout("Logged out.", false));
  $("banner-close").addEventListener("click", hideBanner);
  window.addEventListener("hashchange", route);
  $("zone").textContent = "times in " + zoneName();
  $("zone").title = "The console shows local times; the CLI and the API say UTC (a time's tooltip shows it).";
  if (session.token) loadPerm().then(() => session.token && route());
  else route();
})((window.sealpipe = window.sealpipe || {}));
