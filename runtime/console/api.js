/*
 * api.js - the console's calls of the daemon's HTTP API (docs/openapi.json): the
 * session's token, sent as "Authorization: Bearer", and the errors, JSON
 * {"error":{"code","message"}} turned into ApiError.
 */
"use strict";

(function (SP) {
  const { showBanner } = SP;

  const TOKEN_KEY = "sealpipe.console.token";

  /* The admin token: this tab's sessionStorage only, never a cookie or a URL. */
  const session = { token: sessionStorage.getItem(TOKEN_KEY) };

  function remember(token) {
    session.token = token;
    sessionStorage.setItem(TOKEN_KEY, token);
  }

  function forget() {
    session.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
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
    let res;
    try {
      res = await fetch(path, {
        method: opts.method || "GET",
        headers: authHeaders(),
        signal: opts.signal,
        cache: "no-store",
        credentials: "omit",
      });
    } catch (e) {
      if (e.name === "AbortError") throw e;
      throw new ApiError(0, "network", "The daemon did not answer (" + e.message + ").");
    }
    if (!res.ok) {
      const err = await errorOf(res);
      if (res.status === 401) unauthorized(err);
      throw err;
    }
    return res.status === 204 ? null : res.json();
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

  SP.session = session;
  SP.remember = remember;
  SP.forget = forget;
  SP.ApiError = ApiError;
  SP.authHeaders = authHeaders;
  SP.errorOf = errorOf;
  SP.api = api;
  SP.unauthorized = unauthorized;
  SP.report = report;
})((window.sealpipe = window.sealpipe || {}));
