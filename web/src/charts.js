// Canvas charts for what uPlot does not draw: every learning curve of a sweep at once,
// parallel coordinates and per-parameter slices. Each draws thousands of lines in chunks between
// animation frames, so a sweep of 10,000 trials never freezes the page, and marks its canvas with
// data-drawn (how many lines are on it) for tests and for people reading the DOM.
'use strict';

const Charts = (() => {
  const COLORS = {
    completed: '47,111,222', pruned: '232,132,44', running: '30,158,106', assigned: '30,158,106',
    failed: '200,52,74', lost: '200,52,74', canceled: '122,129,148', queued: '152,160,179',
    paused: '150,110,200',
  };
  const FONT = '11px system-ui, sans-serif';
  let chunksLeft = 0;  // chunked draws not finished yet (tests wait for 0)

  function setup(canvas, width, height) {
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    canvas.style.width = width + 'px';
    canvas.style.height = height + 'px';
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return ctx;
  }

  // A linear or log scale over finite values, mapping to [0, 1].
  function scale(values, wantLog) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) {
      if (Number.isFinite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; }
    }
    if (lo === Infinity) { lo = 0; hi = 1; }
    const log = wantLog && lo > 0 && hi / lo >= 100;
    if (log) { lo = Math.log10(lo); hi = Math.log10(hi); }
    if (hi === lo) { hi = lo + 1; lo = lo - 1; }
    const f = (v) => ((log ? Math.log10(v) : v) - lo) / (hi - lo);
    f.log = log;
    f.min = log ? 10 ** lo : lo;
    f.max = log ? 10 ** hi : hi;
    f.ticks = (n) => {
      const out = [];
      for (let i = 0; i <= n; i++) {
        const t = lo + (hi - lo) * i / n;
        out.push({ at: i / n, value: log ? 10 ** t : t });
      }
      return out;
    };
    return f;
  }

  function fmt(v) {
    if (!Number.isFinite(v)) return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
    return String(Math.round(v * 1000) / 1000);
  }

  // A value range that ignores the wildest 1% on each side (a diverged trial's 1e9 loss would
  // flatten every other curve), from at most ~20,000 sampled points.
  function robustRange(curves) {
    const sample = [];
    let total = 0;
    for (const c of curves) total += c.values.length;
    const stride = Math.max(1, Math.floor(total / 20000));
    let i = 0;
    for (const c of curves) {
      for (const v of c.values) {
        if (i++ % stride === 0 && v !== null && Number.isFinite(v)) sample.push(v);
      }
    }
    if (sample.length === 0) return [0, 1];
    sample.sort((a, b) => a - b);
    const lo = sample[Math.floor(sample.length * 0.01)];
    const hi = sample[Math.min(sample.length - 1, Math.floor(sample.length * 0.99))];
    const pad = (hi - lo) * 0.05 || Math.abs(hi) * 0.05 || 1;
    return [lo - pad, hi + pad];
  }

  // Every trial's learning curve: completed in blue, pruned in orange ending in a cross where
  // the pruner stopped it, running in green.
  class CurveChart {
    constructor(canvas, width, height) {
      this.canvas = canvas;
      this.width = width;
      this.height = height;
      this.curves = new Map();  // trial id -> {steps, values, state}
      this.pad = { l: 56, r: 12, t: 10, b: 28 };
      this.ctx = setup(canvas, width, height);
      this.canvas.dataset.drawn = '0';
      this.range = null;
    }

    // Adds or replaces curves; redraws everything when the axes must change, else draws only
    // the new ones.
    update(list) {
      let maxStep = this.maxStep || 1;
      for (const c of list) {
        this.curves.set(c.id, c);
        const last = c.steps.length ? c.steps[c.steps.length - 1] : 0;
        if (last > maxStep) maxStep = last;
      }
      const [lo, hi] = robustRange(this.curves.values());
      const r = this.range;
      const changed = !r || maxStep > this.maxStep || lo < r[0] || hi > r[1] ||
          (hi - lo) < 0.5 * (r[1] - r[0]);
      if (changed) {
        this.maxStep = maxStep;
        this.range = [lo, hi];
        this.redraw();
      } else {
        this.draw(list);
      }
    }

    redraw() {
      this.generation = (this.generation || 0) + 1;  // chunks of earlier draws stop
      const ctx = this.ctx;
      ctx.clearRect(0, 0, this.width, this.height);
      this.axes();
      this.drawnCount = 0;
      this.canvas.dataset.drawn = '0';
      // Running ones last, so they stay on top.
      const all = [...this.curves.values()].sort(
          (a, b) => (a.state === 'running') - (b.state === 'running'));
      this.draw(all);
    }

    axes() {
      const ctx = this.ctx, p = this.pad, w = this.width - p.l - p.r, h = this.height - p.t - p.b;
      const [lo, hi] = this.range;
      ctx.strokeStyle = '#e3e6ec';
      ctx.fillStyle = '#6b7385';
      ctx.font = FONT;
      ctx.lineWidth = 1;
      for (let i = 0; i <= 4; i++) {
        const y = p.t + h - h * i / 4;
        ctx.beginPath(); ctx.moveTo(p.l, y); ctx.lineTo(p.l + w, y); ctx.stroke();
        ctx.textAlign = 'right';
        ctx.fillText(fmt(lo + (hi - lo) * i / 4), p.l - 6, y + 4);
      }
      ctx.textAlign = 'center';
      for (let i = 0; i <= 5; i++) {
        const x = p.l + w * i / 5;
        ctx.fillText(fmt(Math.round(this.maxStep * i / 5)), x, p.t + h + 16);
      }
      ctx.fillText('step', p.l + w / 2, this.height - 1);
    }

    draw(list) {
      const ctx = this.ctx, p = this.pad, w = this.width - p.l - p.r, h = this.height - p.t - p.b;
      const [lo, hi] = this.range;
      const X = (s) => p.l + w * s / this.maxStep;
      const Y = (v) => p.t + h - h * (Math.min(hi, Math.max(lo, v)) - lo) / (hi - lo);
      let i = 0;
      const generation = this.generation;
      const chunk = () => {
        chunksLeft--;
        if (generation !== this.generation) return;
        const start = i;
        const end = Math.min(list.length, i + 400);
        ctx.save();
        ctx.beginPath(); ctx.rect(p.l, p.t, w, h); ctx.clip();
        for (; i < end; i++) {
          const c = list[i];
          const live = c.state === 'running' || c.state === 'assigned';
          ctx.strokeStyle = `rgba(${COLORS[c.state] || COLORS.queued},${live ? 0.9 : 0.3})`;
          ctx.lineWidth = live ? 1.5 : 1;
          ctx.beginPath();
          let started = false, lastX = 0, lastY = 0;
          for (let k = 0; k < c.steps.length; k++) {
            const v = c.values[k];
            if (v === null || !Number.isFinite(v)) continue;
            lastX = X(c.steps[k]); lastY = Y(v);
            if (started) ctx.lineTo(lastX, lastY); else { ctx.moveTo(lastX, lastY); started = true; }
          }
          ctx.stroke();
          if (started && c.state === 'pruned') {
            ctx.strokeStyle = `rgba(${COLORS.pruned},0.9)`;
            ctx.beginPath();
            ctx.moveTo(lastX - 3, lastY - 3); ctx.lineTo(lastX + 3, lastY + 3);
            ctx.moveTo(lastX + 3, lastY - 3); ctx.lineTo(lastX - 3, lastY + 3);
            ctx.stroke();
          }
        }
        ctx.restore();
        this.drawnCount = Math.min(this.curves.size, (this.drawnCount || 0) + (end - start));
        this.canvas.dataset.drawn = String(this.drawnCount);
        if (i < list.length) {
          chunksLeft++;
          requestAnimationFrame(chunk);
        }
      };
      chunksLeft++;
      chunk();
    }
  }

  // One vertical axis per parameter and one for the metric; a line per trial, coloured from
  // worst (light) to best (dark) by the metric.
  function parallel(canvas, width, height, dims, rows, metricIndex, maximize) {
    const ctx = setup(canvas, width, height);
    const p = { l: 40, r: 60, t: 28, b: 22 };
    const w = width - p.l - p.r, h = height - p.t - p.b;
    const axes = dims.map((d, j) => {
      const values = rows.map((r) => r[j]);
      if (d.categorical) {
        const cats = [...new Set(values.filter((v) => v !== undefined))].map(String).sort();
        const f = (v) => cats.length <= 1 ? 0.5 : cats.indexOf(String(v)) / (cats.length - 1);
        f.ticks = () => cats.slice(0, 12).map((c) => ({ at: f(c), value: c }));
        return f;
      }
      return scale(values, d.log !== false);
    });
    const x = (j) => p.l + (dims.length === 1 ? w / 2 : w * j / (dims.length - 1));
    const metric = axes[metricIndex];
    ctx.lineWidth = 1;
    const order = rows.map((_, i) => i).filter((i) => Number.isFinite(rows[i][metricIndex]));
    // Best last, on top.
    order.sort((a, b) => (maximize ? 1 : -1) * (rows[a][metricIndex] - rows[b][metricIndex]));
    for (const i of order) {
      const q = metric(rows[i][metricIndex]);
      const t = maximize ? q : 1 - q;  // 1 = best
      ctx.strokeStyle = `rgba(${Math.round(230 - 200 * t)},${Math.round(200 - 110 * t)},${Math.round(250 - 30 * t)},${0.25 + 0.5 * t})`;
      ctx.beginPath();
      let started = false;
      dims.forEach((d, j) => {
        const v = rows[i][j];
        if (v === undefined || (typeof v === 'number' && !Number.isFinite(v))) { started = false; return; }
        const y = p.t + h - h * axes[j](v);
        if (started) ctx.lineTo(x(j), y); else { ctx.moveTo(x(j), y); started = true; }
      });
      ctx.stroke();
    }
    ctx.font = FONT;
    dims.forEach((d, j) => {
      ctx.strokeStyle = '#1d2433';
      ctx.beginPath(); ctx.moveTo(x(j), p.t); ctx.lineTo(x(j), p.t + h); ctx.stroke();
      ctx.fillStyle = '#1d2433';
      ctx.textAlign = 'center';
      ctx.fillText(d.name + (axes[j].log ? ' (log)' : ''), x(j), p.t - 12);
      ctx.fillStyle = '#6b7385';
      ctx.textAlign = 'left';
      for (const t of axes[j].ticks(4)) {
        ctx.fillText(typeof t.value === 'number' ? fmt(t.value) : t.value, x(j) + 4, p.t + h - h * t.at + 4);
      }
    });
    canvas.dataset.drawn = String(order.length);
  }

  // A parameter against the metric, one dot per trial coloured by state.
  function slice(canvas, width, height, values, metric, states, categorical) {
    const ctx = setup(canvas, width, height);
    const p = { l: 46, r: 8, t: 6, b: 20 };
    const w = width - p.l - p.r, h = height - p.t - p.b;
    let fx;
    if (categorical) {
      const cats = [...new Set(values.filter((v) => v !== undefined).map(String))].sort();
      fx = (v) => (cats.indexOf(String(v)) + 0.5) / Math.max(1, cats.length);
      fx.ticks = () => cats.slice(0, 8).map((c) => ({ at: fx(c), value: c }));
    } else {
      fx = scale(values, true);
    }
    const fy = scale(metric, false);
    ctx.font = FONT;
    ctx.fillStyle = '#6b7385';
    ctx.strokeStyle = '#e3e6ec';
    ctx.strokeRect(p.l, p.t, w, h);
    ctx.textAlign = 'right';
    for (const t of fy.ticks(2)) ctx.fillText(fmt(t.value), p.l - 4, p.t + h - h * t.at + 4);
    ctx.textAlign = 'center';
    for (const t of fx.ticks(3)) {
      ctx.fillText(typeof t.value === 'number' ? fmt(t.value) : t.value, p.l + w * t.at, p.t + h + 14);
    }
    let drawn = 0;
    for (let i = 0; i < values.length; i++) {
      if (values[i] === undefined || !Number.isFinite(metric[i])) continue;
      if (!categorical && !Number.isFinite(values[i])) continue;
      ctx.fillStyle = `rgba(${COLORS[states[i]] || COLORS.queued},0.55)`;
      ctx.fillRect(p.l + w * fx(values[i]) - 2, p.t + h - h * fy(metric[i]) - 2, 4, 4);
      drawn++;
    }
    canvas.dataset.drawn = String(drawn);
  }

  return { CurveChart, parallel, slice, fmt, COLORS, drawing: () => chunksLeft };
})();
