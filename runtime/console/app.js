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
  const { $, hideBanner, session, remember, forget, errorOf, report, pageDevices, pageDevice, pageDeadLetters, pageHealth } = SP;

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
      remember(given);
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

  /* ---- start ------------------------------------------------------------------ */

  SP.onUnauthorized = (message) => logout(message, true);
  $("login-form").addEventListener("submit", onLogin);
  $("logout").addEventListener("click", () => logout("Logged out.", false));
  $("banner-close").addEventListener("click", hideBanner);
  window.addEventListener("hashchange", route);
  route();
})((window.sealpipe = window.sealpipe || {}));
