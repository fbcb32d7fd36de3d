/*
 * chart.js - sealpipe console's own small line chart on a <canvas>.
 *
 * No library: one series of {t: Unix ms, v: number} points drawn with the 2D
 * context, time on x, value on y, round ticks on both, a crosshair with the
 * nearest point's value under the pointer. Text goes through fillText only
 * (never into the DOM), so a unit or a label from a device is drawn as text.
 *
 *   const chart = new SealChart(canvas);
 *   chart.set(points, {from: ms, to: ms, unit: "C"});
 *
 * The canvas carries data-points (how many points are drawn) and data-last
 * (the last value): the console's browser test reads them.
 */
"use strict";

(function () {
  const PAD = { left: 56, right: 14, top: 12, bottom: 26 };
  const MIN = 60 * 1000, HOUR = 60 * MIN, DAY = 24 * HOUR;
  const TIME_STEPS = [
    15 * 1000, 30 * 1000, MIN, 2 * MIN, 5 * MIN, 10 * MIN, 15 * MIN, 30 * MIN,
    HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY,
  ];

  function pad2(n) {
    return n < 10 ? "0" + n : String(n);
  }

  /* A round step giving about `count` ticks over span. */
  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10) * mag;
  }

  /* The decimal places of a tick step: 0.25 -> 2, 2.5 -> 1, 5 -> 0. */
  function stepDecimals(step) {
    if (!(step > 0) || !isFinite(step)) return 0;
    for (let d = 0; d < 10; d++) {
      const x = step * Math.pow(10, d);
      if (Math.abs(x - Math.round(x)) < 1e-9 * Math.max(1, x)) return d;
    }
    return 10;
  }

  /* A y-axis label: v with its step's decimal places. */
  function formatValue(v, step) {
    if (!isFinite(v)) return String(v);
    if (step > 0 && Math.abs(v) < step * 1e-6) v = 0; // 0 reached by adding steps
    const abs = Math.abs(v);
    if (abs !== 0 && (abs >= 1e7 || abs < 1e-4)) return v.toExponential(2);
    const s = v.toFixed(stepDecimals(step));
    return /^-0(\.0*)?$/.test(s) ? s.slice(1) : s; // no "-0.00"
  }

  /* A value under the pointer: up to 6 significant digits, no trailing
   * zeros (9 -> "9", 9.123456789 -> "9.12346", 1234567 -> "1234570"). */
  function formatPoint(v) {
    if (!isFinite(v)) return String(v);
    const abs = Math.abs(v);
    if (abs !== 0 && (abs >= 1e15 || abs < 1e-6)) {
      return v.toExponential(5).replace(/\.?0+e/, "e");
    }
    return String(Number(v.toPrecision(6)));
  }

  function formatTime(t, span) {
    const d = new Date(t);
    const hm = pad2(d.getHours()) + ":" + pad2(d.getMinutes());
    if (span <= 10 * MIN) return hm + ":" + pad2(d.getSeconds());
    if (span <= 2 * DAY) return hm;
    return pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()) + (span <= 10 * DAY ? " " + hm : "");
  }

  function formatFull(t) {
    const d = new Date(t);
    return d.getFullYear() + "-" + pad2(d.getMonth() + 1) + "-" + pad2(d.getDate()) + " " +
      pad2(d.getHours()) + ":" + pad2(d.getMinutes()) + ":" + pad2(d.getSeconds());
  }

  class SealChart {
    constructor(canvas) {
      this.canvas = canvas;
      this.points = [];
      this.opts = {};
      this.hover = null;
      this.canvas.dataset.points = "0";
      canvas.addEventListener("pointermove", (e) => this.onMove(e));
      canvas.addEventListener("pointerleave", () => {
        this.hover = null;
        this.draw();
      });
      if (typeof ResizeObserver === "function") {
        this.observer = new ResizeObserver(() => this.draw());
        this.observer.observe(canvas);
      }
    }

    /* points: [{t, v}] in any order; opts: {from, to, unit, color}. */
    set(points, opts) {
      this.points = points.filter((p) => isFinite(p.t) && isFinite(p.v))
        .sort((a, b) => a.t - b.t);
      this.opts = opts || {};
      this.canvas.dataset.points = String(this.points.length);
      const last = this.points[this.points.length - 1];
      this.canvas.dataset.last = last ? String(last.v) : "";
      this.draw();
    }

    destroy() {
      if (this.observer) this.observer.disconnect();
    }

    /* The x and y ranges, and the functions mapping them to pixels. */
    frame(w, h) {
      const pts = this.points;
      let from = this.opts.from, to = this.opts.to;
      if (!isFinite(from) || !isFinite(to) || to <= from) {
        from = pts.length ? pts[0].t : Date.now() - HOUR;
        to = pts.length ? pts[pts.length - 1].t : Date.now();
        if (to <= from) { from -= MIN; to += MIN; }
      }
      let lo = Infinity, hi = -Infinity;
      for (const p of pts) {
        if (p.v < lo) lo = p.v;
        if (p.v > hi) hi = p.v;
      }
      if (!isFinite(lo)) { lo = 0; hi = 1; }
      if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
      const ystep = niceStep(hi - lo, Math.max(2, Math.floor((h - PAD.top - PAD.bottom) / 40)));
      lo = Math.floor(lo / ystep) * ystep;
      hi = Math.ceil(hi / ystep) * ystep;
      const pw = w - PAD.left - PAD.right, ph = h - PAD.top - PAD.bottom;
      return {
        from, to, lo, hi, ystep,
        x: (t) => PAD.left + ((t - from) / (to - from)) * pw,
        y: (v) => PAD.top + (1 - (v - lo) / (hi - lo)) * ph,
      };
    }

    draw() {
      const c = this.canvas;
      const ratio = window.devicePixelRatio || 1;
      const w = c.clientWidth || 600, h = c.clientHeight || 220;
      if (c.width !== Math.round(w * ratio) || c.height !== Math.round(h * ratio)) {
        c.width = Math.round(w * ratio);
        c.height = Math.round(h * ratio);
      }
      const g = c.getContext("2d");
      g.setTransform(ratio, 0, 0, ratio, 0, 0);
      g.clearRect(0, 0, w, h);
      const f = this.frame(w, h);
      const style = getComputedStyle(c);
      const ink = style.color || "#222";
      const line = this.opts.color || style.getPropertyValue("--chart-line").trim() || "#1f6feb";
      g.font = "11px system-ui, sans-serif";
      g.lineWidth = 1;

      // Grid and y labels.
      g.strokeStyle = "rgba(128,128,128,0.25)";
      g.fillStyle = ink;
      g.textAlign = "right";
      g.textBaseline = "middle";
      for (let i = 0, v = f.lo; v <= f.hi + f.ystep / 2; v = f.lo + ++i * f.ystep) {
        const y = Math.round(f.y(v)) + 0.5;
        g.beginPath();
        g.moveTo(PAD.left, y);
        g.lineTo(w - PAD.right, y);
        g.stroke();
        g.fillText(formatValue(v, f.ystep), PAD.left - 6, y);
      }
      // x labels on round times.
      const span = f.to - f.from;
      const want = span / Math.max(2, Math.floor((w - PAD.left - PAD.right) / 90));
      const tstep = TIME_STEPS.find((s) => s >= want) || Math.ceil(want / DAY) * DAY;
      const offset = new Date(f.from).getTimezoneOffset() * MIN;
      g.textAlign = "center";
      g.textBaseline = "top";
      for (let t = Math.ceil((f.from - offset) / tstep) * tstep + offset; t <= f.to; t += tstep) {
        const x = Math.round(f.x(t)) + 0.5;
        g.beginPath();
        g.moveTo(x, PAD.top);
        g.lineTo(x, h - PAD.bottom);
        g.stroke();
        g.fillText(formatTime(t, span), x, h - PAD.bottom + 6);
      }
      if (this.opts.unit) {
        g.textAlign = "left";
        g.fillText(String(this.opts.unit), 4, 0);
      }

      const pts = this.points;
      if (!pts.length) {
        g.textAlign = "center";
        g.textBaseline = "middle";
        g.fillText("no data in this range", w / 2, h / 2);
        return;
      }
      // The series: one path, a dot where a point stands alone.
      g.save();
      g.beginPath();
      g.rect(PAD.left, PAD.top - 2, w - PAD.left - PAD.right, h - PAD.top - PAD.bottom + 4);
      g.clip();
      g.strokeStyle = line;
      g.fillStyle = line;
      g.lineWidth = 1.75;
      g.beginPath();
      pts.forEach((p, i) => (i ? g.lineTo(f.x(p.t), f.y(p.v)) : g.moveTo(f.x(p.t), f.y(p.v))));
      g.stroke();
      if (pts.length < 60) {
        for (const p of pts) {
          g.beginPath();
          g.arc(f.x(p.t), f.y(p.v), 2.5, 0, 2 * Math.PI);
          g.fill();
        }
      }
      g.restore();

      if (this.hover) this.drawHover(g, f, w, h, ink);
    }

    drawHover(g, f, w, h, ink) {
      const p = this.hover;
      const x = f.x(p.t), y = f.y(p.v);
      g.strokeStyle = "rgba(128,128,128,0.8)";
      g.setLineDash([3, 3]);
      g.beginPath();
      g.moveTo(x, PAD.top);
      g.lineTo(x, h - PAD.bottom);
      g.stroke();
      g.setLineDash([]);
      const label = formatFull(p.t) + "  " + formatPoint(p.v) +
        (this.opts.unit ? " " + this.opts.unit : "");
      const tw = g.measureText(label).width + 10;
      const bx = Math.min(Math.max(PAD.left, x - tw / 2), w - PAD.right - tw);
      g.fillStyle = "rgba(30,30,30,0.85)";
      g.fillRect(bx, PAD.top, tw, 18);
      g.fillStyle = "#fff";
      g.textAlign = "left";
      g.textBaseline = "middle";
      g.fillText(label, bx + 5, PAD.top + 9);
      g.fillStyle = ink;
      g.beginPath();
      g.arc(x, y, 3.5, 0, 2 * Math.PI);
      g.fill();
    }

    onMove(e) {
      if (!this.points.length) return;
      const rect = this.canvas.getBoundingClientRect();
      const f = this.frame(rect.width, rect.height);
      const px = e.clientX - rect.left;
      let best = null, dist = Infinity;
      for (const p of this.points) {
        const d = Math.abs(f.x(p.t) - px);
        if (d < dist) { dist = d; best = p; }
      }
      if (best !== this.hover) {
        this.hover = best;
        this.draw();
      }
    }
  }

  SealChart.formatFull = formatFull;
  SealChart.formatValue = formatValue; // the console's test calls these
  SealChart.formatPoint = formatPoint;
  window.SealChart = SealChart;
})();
