/*
 * api.js - the console's calls of the daemon's HTTP API (docs/openapi.json): the
 * session's token, sent as "Authorization: Bearer", and the errors, JSON
 * {"error":{"code","message"}} turned into ApiError.
 */
"use strict";

(function (SP) {
  const { showBanner } = SP;

  const TOKEN_KEY = "sealpipe.console.token";

  /* The admin token: this tab's sessionStorage only, never a cookie or a URL;
   * perm: what GET /api/v1/session said of it ("full" or "read"; null while
   * not known: the pages then offer everything and show the daemon's 403). */
  const session = { token: sessionStorage.getItem(TOKEN_KEY), perm: null };

  function remember(token, perm) {
    session.token = token;
    session.perm = perm || null;
    sessionStorage.setItem(TOKEN_KEY, token);
  }

  function forget() {
    session.token = null;
    session.perm = null;
    sessionStorage.removeItem(TOKEN_KEY);
  }

  /* True when the session's token may only read (no Retry). */
  function readOnly() {
    return session.perm === "read";
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

  /* A fetch() that gives up after SP.apiTimeoutMs (30 s) without an answer
   * and its body (a tab must not wait forever, e.g. for a connection the
   * browser has none left for): an ApiError "timeout" then. signal (the
   * page's) aborts it as well, as an AbortError. read(res) reads the body
   * under the same time limit. */
  async function fetchTimed(url, init, signal, read) {
    const ms = SP.apiTimeoutMs;
    const ctl = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ctl.abort();
    }, ms);
    const onAbort = () => ctl.abort();
    if (signal) {
      if (signal.aborted) ctl.abort();
      else signal.addEventListener("abort", onAbort, { once: true });
    }
    try {
      const res = await fetch(url, Object.assign({}, init, { signal: ctl.signal }));
      return read ? await read(res) : res;
    } catch (e) {
      if (timedOut) {
        throw new ApiError(0, "timeout", "the daemon did not answer within " +
          Math.round(ms / 1000) + " s");
      }
      throw e;
    } finally {
      clearTimeout(timer);
      if (signal) signal.removeEventListener("abort", onAbort);
    }
  }

  function authHeaders(accept) {
    return { Authorization: "Bearer " + session.token, Accept: accept || "application/json" };
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
    let res, body;
    try {
      [res, body] = await fetchTimed(path, {
        method: opts.method || "GET",
        headers: authHeaders(),
        cache: "no-store",
        credentials: "omit",
      }, opts.signal, async (r) => [r, !r.ok ? await errorOf(r) : r.status === 204 ? null : await r.json()]);
    } catch (e) {
      if (e.name === "AbortError" || e instanceof ApiError) throw e;
      if (e instanceof SyntaxError) throw new ApiError(0, "bad_answer", "The daemon's answer is not JSON (" + e.message + ").");
      throw new ApiError(0, "network", "The daemon did not answer (" + e.message + ").");
    }
    if (!res.ok) {
      if (res.status === 401) unauthorized(body);
      throw body;
    }
    return body;
  }

  /* A 401: the session ends (app.js shows the login with the reason). */
  function unauthorized(err) {
    if (!session.token) return;
    if (SP.onUnauthorized) {
      SP.onUnauthorized("The daemon refused the token (401 " + err.code + ": " + err.message +
        "). Log in again.");
    }
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

  SP.apiTimeoutMs = 30000; // api() and the login give up after this
  SP.session = session;
  SP.readOnly = readOnly;
  SP.fetchTimed = fetchTimed;
  SP.remember = remember;
  SP.forget = forget;
  SP.ApiError = ApiError;
  SP.authHeaders = authHeaders;
  SP.errorOf = errorOf;
  SP.api = api;
  SP.unauthorized = unauthorized;
  SP.report = report;
})((window.sealpipe = window.sealpipe || {}));
