// sweepd's dashboard: sweeps, one sweep live (curves, history, parallel coordinates, slices,
// importance, GPU-hours, trials), a trial, and the agents. Plain JavaScript on sweepd's JSON API
// (docs/dashboard.md); uPlot draws the time series, charts.js the many-line charts.
//
// Loading a large sweep never leaves the page blank: the first page of trials draws the first
// pictures, the rest come in pages with a progress bar, and curves are drawn in chunks between
// frames. Live updates come from the sweep's event stream (server-sent events): on a change the
// page fetches only what changed (the sweep, the trials named in the events, running trials'
// curves), never the whole sweep again.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const main = $('#main');
const api = async (path, options = {}) => {
  const headers = Object.assign({}, options.headers || {});
  if (options.method && options.method !== 'GET') headers['X-Sweepd-Request'] = '1';
  const res = await fetch(path, Object.assign({}, options, { headers, credentials: 'same-origin' }));
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = { error: text }; }
  if (res.status === 401) { signIn(); }
  if (!res.ok) throw new Error((body && body.error) || `${res.status} ${res.statusText}`);
  return body;
};

// proto3 JSON: int64 come as strings, zero values are left out, enums are names.
const num = (v) => (v === undefined || v === null ? 0 : Number(v));
const stateOf = (s) => (s || '').replace(/^(TRIAL|SWEEP|AGENT)_STATE_/, '').toLowerCase();
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const fmt = (v, digits = 4) => (v === undefined || v === null ? '–' : (typeof v === 'number' ? (Number.isFinite(v) ? Number(v.toPrecision(digits)).toString() : String(v)) : esc(v)));
const hours = (seconds) => (num(seconds) / 3600).toFixed(num(seconds) < 36 ? 4 : 2);
const time = (ts) => (ts ? new Date(ts).toLocaleString() : '–');
const badge = (state) => `<span class="state ${state}">${state}</span>`;
const paramValue = (p) => { try { return JSON.parse(p.valueJson); } catch (e) { return p.valueJson; } };
let timers = [];
let source = null;
let pageToken = 0;  // bumps on navigation; stale loaders stop

function setLive(state, text) {
  const el = $('#live');
  el.className = 'live ' + state;
  $('#live-text').textContent = text;
}

function leave() {
  timers.forEach(clearInterval);
  timers = [];
  if (source) { source.close(); source = null; }
  pageToken++;
}

function every(ms, fn) { timers.push(setInterval(fn, ms)); }

function signIn() {
  const dialog = $('#signin');
  if (dialog.open) return;
  dialog.showModal();
  $('#signin-form').onsubmit = async (e) => {
    e.preventDefault();
    const body = new URLSearchParams({ token: $('#signin-token').value });
    const res = await fetch('/login', { method: 'POST', body, headers: { 'X-Sweepd-Request': '1' } });
    if (res.ok) { dialog.close(); route(); } else { $('#signin-error').textContent = 'wrong token'; }
  };
}

function showError(err) {
  main.innerHTML = `<p class="error">${esc(err.message || err)}</p>`;
}

// ---------------------------------------------------------------------------------------------
// Sweeps

async function sweepsPage() {
  main.innerHTML = `<h1>Sweeps</h1><div class="card"><div class="tablewrap" id="sweeps"></div></div>`;
  const draw = async () => {
    const data = await api('/api/v1/sweeps?limit=200');
    const rows = (data.sweeps || []).map((s) => {
      const c = s.counts || {};
      const done = num(c.completed) + num(c.pruned) + num(c.failed) + num(c.lost) + num(c.canceled);
      const total = num(s.totalTrials);
      const all = done + num(c.queued) + num(c.assigned) + num(c.running);
      const share = total > 0 ? done / total : (all > 0 ? done / all : 0);
      return `<tr data-sweep="${esc(s.id)}">
        <td><a href="#/sweeps/${esc(s.id)}">${esc((s.spec && s.spec.name) || s.id)}</a><div class="muted">${esc(s.id)}</div></td>
        <td>${badge(stateOf(s.state))}${s.stalled ? `<div class="error">${esc(s.stalled)}</div>` : ''}</td>
        <td><div class="progress"><div style="width:${(100 * share).toFixed(1)}%"></div></div>
            <span class="muted">${done}${total ? ' / ' + total : ''} done, ${num(c.running) + num(c.assigned)} running</span></td>
        <td class="num" data-field="best">${fmt(s.bestValue)}</td>
        <td class="num" data-field="gpu-used">${hours(s.gpuSecondsUsed)}</td>
        <td class="num" data-field="gpu-saved">${hours(s.gpuSecondsSaved)}</td>
        <td>${time(s.createdTime)}</td></tr>`;
    });
    $('#sweeps').innerHTML = rows.length
      ? `<table><thead><tr><th>Sweep</th><th>State</th><th>Progress</th><th>Best</th><th>GPU-h used</th><th>GPU-h saved by pruning</th><th>Created</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
      : `<p class="muted">No sweeps yet. Submit one with <code>sweepctl create sweep.yaml</code>.</p>`;
    if (data.warning) $('#sweeps').insertAdjacentHTML('afterbegin', `<p class="error">${esc(data.warning)}</p>`);
  };
  await draw();
  setLive('on', 'polling every 3 s');
  every(3000, () => draw().catch(() => setLive('off', 'sweepd unreachable')));
}

// ---------------------------------------------------------------------------------------------
// One sweep

class SweepView {
  constructor(id) {
    this.id = id;
    this.token = pageToken;
    this.trials = new Map();  // id -> trial (proto JSON)
    this.sweep = null;
    this.lastEvent = undefined;  // set by the stream's hello: where it started
    this.dirty = new Set();
    this.tableSort = { key: 'value', asc: true };
    this.tablePage = 0;
  }

  stale() { return this.token !== pageToken; }
  maximize() { return this.sweep && this.sweep.spec && this.sweep.spec.metric && this.sweep.spec.metric.goal === 'GOAL_MAXIMIZE'; }
  metricName() { return (this.sweep && this.sweep.spec && this.sweep.spec.metric && this.sweep.spec.metric.name) || ''; }

  async open() {
    const t0 = performance.now();
    this.sweep = (await api(`/api/v1/sweeps/${this.id}`)).sweep;
    if (this.stale()) return;
    this.layout();
    this.renderSummary();
    this.tableSort.asc = !this.maximize();
    // Follow the sweep from now on before loading it: what changes while it loads is fetched
    // after, and nothing of its history is replayed.
    this.live();
    // Trials in pages by number (an order running trials do not change), drawing after the
    // first.
    let token = '';
    let first = true;
    do {
      // A small first page, so the first picture comes quickly; then large ones.
      const limit = first ? 1000 : 5000;
      const page = await api(`/api/v1/sweeps/${this.id}/trials?order=number&limit=${limit}${token ? '&page_token=' + token : ''}`);
      if (this.stale()) return;
      for (const t of page.trials || []) this.trials.set(t.id, t);
      this.progress('#trials-loading', this.trials.size, num(page.total), 'trials');
      if (first) {
        this.renderTrialCharts();
        document.body.dataset.firstPictureMs = String(Math.round(performance.now() - t0));
        first = false;
      }
      token = page.nextPageToken || '';
    } while (token);
    this.renderTrialCharts();
    document.body.dataset.trialsLoadedMs = String(Math.round(performance.now() - t0));
    this.loaded = true;
    this.loadImportance();
    await this.loadCurves();
    document.body.dataset.curvesLoadedMs = String(Math.round(performance.now() - t0));
  }

  layout() {
    const s = this.sweep;
    main.innerHTML = `
      <div class="muted"><a href="#/">Sweeps</a> / ${esc(s.id)}</div>
      <h1>${esc((s.spec && s.spec.name) || s.id)} <span id="sweep-state"></span></h1>
      <div class="toolbar">
        <button data-action="pause">Pause</button><button data-action="resume">Resume</button>
        <button data-action="cancel" class="danger">Cancel</button><button data-action="enqueue">Enqueue a trial…</button>
        <span id="action-result" class="muted"></span>
      </div>
      <div id="warning" class="error"></div>
      <div class="stats" id="stats"></div>
      <div class="loading" id="trials-loading"></div>
      <div class="cards">
        <div class="card wide"><h2>Learning curves <span class="muted" id="curve-metric"></span></h2>
          <div class="loading" id="curves-loading"></div><canvas id="curves"></canvas>
          <div class="legend"><span><i style="background:#2f6fde"></i>completed</span><span><i style="background:#e8842c"></i>pruned (× where it stopped)</span><span><i style="background:#1e9e6a"></i>running</span><span><i style="background:#c8344a"></i>failed</span></div></div>
        <div class="card"><h2>Best value over trials</h2><div id="best-trials"></div></div>
        <div class="card"><h2>Best value over GPU-hours</h2><div id="best-gpu"></div></div>
        <div class="card"><h2>GPU-hours used and saved by pruning</h2><div id="gpu-time"></div>
          <div class="note">Saved: for each pruned trial, the time it would have taken at its own pace to reach the end of the longest completed trial (or the pruner's max resource).</div></div>
        <div class="card"><h2>Parameter importance</h2><div id="importance" class="bars"></div><div class="note" id="importance-method"></div></div>
        <div class="card wide"><h2>Parallel coordinates</h2><canvas id="parallel"></canvas></div>
        <div class="card wide"><h2>Slices</h2><div id="slices" class="slices"></div></div>
        <div class="card wide"><h2>Trials</h2>
          <div class="toolbar"><select id="filter-state"><option value="">all states</option>${['running', 'queued', 'paused', 'completed', 'pruned', 'failed', 'lost', 'canceled'].map((x) => `<option>${x}</option>`).join('')}</select>
          <input id="filter-text" placeholder="filter: text in parameters or reason" size="36"></div>
          <div class="tablewrap" id="trial-table"></div><div class="pager" id="pager"></div></div>
      </div>`;
    main.querySelectorAll('[data-action]').forEach((b) => { b.onclick = () => this.act(b.dataset.action); });
    $('#filter-state').onchange = () => { this.tablePage = 0; this.renderTable(); };
    $('#filter-text').oninput = () => { this.tablePage = 0; this.renderTable(); };
  }

  progress(sel, done, total, what) {
    const el = $(sel);
    if (!el) return;
    el.innerHTML = done >= total ? '' : `loading ${what}: ${done.toLocaleString()} / ${total.toLocaleString()}
      <div class="progress"><div style="width:${(100 * done / Math.max(1, total)).toFixed(1)}%"></div></div>`;
  }

  renderSummary() {
    const s = this.sweep;
    const c = s.counts || {};
    $('#sweep-state').innerHTML = badge(stateOf(s.state)) + (s.reason ? ` <span class="muted">${esc(s.reason)}</span>` : '');
    $('#warning').textContent = [s.stalled, this.warning].filter(Boolean).join('\n');
    const stat = (key, label, value) => `<div class="stat" data-stat="${key}"><b>${value}</b><span>${label}</span></div>`;
    $('#stats').innerHTML = [
      stat('best', `best ${esc(this.metricName())} (${this.maximize() ? 'max' : 'min'})`, fmt(s.bestValue, 6)),
      stat('best-trial', 'best trial', s.bestTrialId ? `<a href="#/trials/${esc(s.bestTrialId)}">${esc(s.bestTrialId.split('-').pop())}</a>` : '–'),
      stat('completed', 'completed', num(c.completed)), stat('pruned', 'pruned', num(c.pruned)),
      stat('running', 'running', num(c.running) + num(c.assigned)), stat('queued', 'queued', num(c.queued)),
      stat('failed', 'failed', num(c.failed)), stat('lost', 'lost', num(c.lost)),
      stat('gpu-used', 'GPU-hours used', hours(s.gpuSecondsUsed)),
      stat('gpu-saved', 'GPU-hours saved by pruning', hours(s.gpuSecondsSaved)),
    ].join('');
    const live = stateOf(s.state) === 'running' || stateOf(s.state) === 'paused';
    main.querySelector('[data-action=pause]').disabled = stateOf(s.state) !== 'running';
    main.querySelector('[data-action=resume]').disabled = stateOf(s.state) !== 'paused';
    main.querySelector('[data-action=cancel]').disabled = !live;
    main.querySelector('[data-action=enqueue]').disabled = !live;
  }

  // The trial's value on the sweep metric: its best report (as the sweep's best is kept).
  value(t) { return t.bestValue === undefined ? undefined : Number(t.bestValue); }

  renderTrialCharts() {
    const trials = [...this.trials.values()];
    const max = this.maximize();
    const better = (a, b) => (max ? a > b : a < b);
    // Best over trials, by trial number.
    const byNumber = trials.filter((t) => Number.isFinite(this.value(t))).sort((a, b) => num(a.number) - num(b.number));
    const xs = [], ys = [], bests = [];
    let best;
    for (const t of byNumber) {
      const v = this.value(t);
      if (best === undefined || better(v, best)) best = v;
      xs.push(num(t.number)); ys.push(v); bests.push(best);
    }
    this.plot('#best-trials', 'bestTrials', [xs, ys, bests], [
      {}, { label: 'trial value', stroke: 'rgba(47,111,222,0.6)', paths: () => null, points: { show: true, size: 4, fill: 'rgba(47,111,222,0.6)' } },
      { label: 'best so far', stroke: '#1d2433', width: 2 }], 'trial number');
    // Best and GPU-hours over time, from trial ends.
    const ended = trials.filter((t) => t.endTime).sort((a, b) => Date.parse(a.endTime) - Date.parse(b.endTime));
    const gx = [], gy = [], tx = [], used = [], saved = [];
    let gpu = 0, gpuSaved = 0;
    best = undefined;
    for (const t of ended) {
      gpu += num(t.gpuSeconds) / 3600;
      gpuSaved += num(t.gpuSecondsSaved) / 3600;
      const v = this.value(t);
      if (Number.isFinite(v) && (best === undefined || better(v, best))) best = v;
      if (best !== undefined) { gx.push(gpu); gy.push(best); }
      tx.push(Date.parse(t.endTime) / 1000); used.push(gpu); saved.push(gpuSaved);
    }
    this.plot('#best-gpu', 'bestGpu', [gx, gy], [{}, { label: 'best so far', stroke: '#1d2433', width: 2 }], 'GPU-hours', false);
    this.plot('#gpu-time', 'gpuTime', [tx, used, saved], [{}, { label: 'used', stroke: '#2f6fde', width: 2 },
      { label: 'saved by pruning', stroke: '#e8842c', width: 2 }], '', true);
    this.renderParallel(trials);
    this.renderTable();
  }

  plot(sel, key, data, series, xLabel, timeAxis = false) {
    const el = $(sel);
    if (!el) return;
    const width = Math.max(300, el.clientWidth || 560);
    this.plots = this.plots || {};
    if (this.plots[key] && this.plots[key].series.length === series.length) {
      this.plots[key].setData(data);
    } else {
      el.innerHTML = '';
      this.plots[key] = new uPlot({ width, height: 220, scales: { x: { time: timeAxis } },
        axes: [{ label: xLabel }, {}], series }, data, el);
    }
    el.dataset.points = String(data[0].length);
  }

  paramDims(trials) {
    const dims = [];
    const index = new Map();
    for (const t of trials) {
      for (const p of t.params || []) {
        if (!index.has(p.name)) { index.set(p.name, dims.length); dims.push({ name: p.name, categorical: false }); }
        const v = paramValue(p);
        if (typeof v !== 'number') dims[index.get(p.name)].categorical = true;
      }
    }
    return { dims, index };
  }

  renderParallel(trials) {
    const done = trials.filter((t) => Number.isFinite(this.value(t)));
    const { dims, index } = this.paramDims(done);
    const all = dims.concat([{ name: this.metricName() || 'value', categorical: false, log: false }]);
    const rows = done.map((t) => {
      const row = new Array(all.length);
      for (const p of t.params || []) row[index.get(p.name)] = paramValue(p);
      row[dims.length] = this.value(t);
      return row;
    });
    const canvas = $('#parallel');
    if (!canvas) return;
    Charts.parallel(canvas, Math.max(400, canvas.parentElement.clientWidth - 28), 300, all, rows, dims.length, this.maximize());
    // Slices: one small plot per parameter.
    const slices = $('#slices');
    slices.innerHTML = dims.map((d, j) => `<figure><canvas data-slice="${j}"></canvas><figcaption>${esc(d.name)} → ${esc(this.metricName())}</figcaption></figure>`).join('');
    const metric = rows.map((r) => r[dims.length]);
    const states = done.map((t) => stateOf(t.state));
    dims.forEach((d, j) => {
      Charts.slice(slices.querySelector(`[data-slice="${j}"]`), 230, 150, rows.map((r) => r[j]), metric, states, d.categorical);
    });
  }

  async loadImportance() {
    try {
      const imp = await api(`/api/v1/sweeps/${this.id}/importance`);
      if (this.stale()) return;
      const el = $('#importance');
      el.innerHTML = (imp.params || []).length === 0
        ? '<p class="muted">Needs at least two completed trials.</p>'
        : imp.params.map((p) => `<div class="bar" data-param="${esc(p.name)}"><span>${esc(p.name)}</span>
            <div><div class="fill" style="width:${(100 * p.importance).toFixed(1)}%"></div></div><span class="num">${(100 * p.importance).toFixed(1)}%</span></div>`).join('');
      $('#importance-method').textContent = `${imp.method}; from ${num(imp.trials)} completed trials.`;
      this.importanceAt = num((this.sweep.counts || {}).completed);
    } catch (e) {
      $('#importance').innerHTML = `<p class="error">${esc(e.message)}</p>`;
    }
  }

  async loadCurves() {
    const canvas = $('#curves');
    this.curveChart = new Charts.CurveChart(canvas, Math.max(500, canvas.parentElement.clientWidth - 28), 320);
    $('#curve-metric').textContent = this.metricName();
    let from = 0;
    while (from >= 0) {
      const page = await api(`/api/v1/sweeps/${this.id}/curves?from=${from}&limit=1000&max_points=100`);
      if (this.stale()) return;
      this.curveChart.update(page.trials.map((c) => ({ id: c.id, state: c.state, steps: c.steps, values: c.values })));
      from = num(page.next_from);
      this.progress('#curves-loading', this.curveChart.curves.size, num(page.total_trials), 'learning curves');
    }
    $('#curves-loading').innerHTML = '';
  }

  live() {
    // Server-sent events: each durable event of the sweep, from now on. The browser reconnects
    // by itself after a dropped stream (sending Last-Event-ID); a refused one (429: too many
    // pages open; 401) is opened again here a little later from the last event seen, so no
    // change is lost, only seen later.
    const open = () => {
      if (this.stale()) return;
      source = new EventSource(`/api/v1/sweeps/${this.id}/events?after=${this.lastEvent === undefined ? 'latest' : this.lastEvent}`);
      source.addEventListener('hello', (e) => {
        if (this.lastEvent === undefined) this.lastEvent = Number(JSON.parse(e.data).after);
      });
      source.addEventListener('sweep', (e) => {
      this.lastEvent = Number(e.lastEventId) || this.lastEvent;
      const ev = JSON.parse(e.data);
      if (ev.trialId) this.dirty.add(ev.trialId);
      this.changed = true;
      });
      source.onopen = () => setLive('on', 'live');
      source.onerror = () => {
        setLive('off', 'reconnecting…');
        if (source.readyState === EventSource.CLOSED) {
          source.close();
          setTimeout(open, 5000);
        }
      };
    };
    open();
    every(1000, () => this.refresh());
    // Running trials' curves grow without events: polled every 3 s, or less often when a poll
    // takes long (a thousand running trials), so a page costs sweepd at most ~5% of a core.
    every(1000, () => {
      if (performance.now() - (this.polledAt || 0) >= Math.max(3000, 20 * (this.pollMs || 0))) {
        this.changed = true;
        this.pollRunning = true;
      }
    });
  }

  // Fetches what changed since the last refresh: the sweep, trials named in events, and the
  // curves of running trials.
  async refresh() {
    if (this.refreshing || !this.changed || !this.loaded || this.stale()) return;
    this.refreshing = true;
    this.changed = false;
    try {
      const got = await api(`/api/v1/sweeps/${this.id}`);
      this.sweep = got.sweep;
      this.warning = got.warning;
      this.renderSummary();
      const metric = encodeURIComponent(this.metricName());
      const curves = [];
      let changedTrials = 0;
      if (this.pollRunning) {
        // Running trials, summaries and curves, in two reads whatever their number.
        this.pollRunning = false;
        const pollStart = performance.now();
        const [running, runningCurves] = await Promise.all([
          api(`/api/v1/sweeps/${this.id}/trials?state=running,assigned&limit=10000`),
          api(`/api/v1/sweeps/${this.id}/curves?state=running,assigned&limit=5000&max_points=25&metric=${metric}`)]);
        for (const t of running.trials || []) { this.trials.set(t.id, t); changedTrials++; }
        for (const c of runningCurves.trials || []) curves.push({ id: c.id, state: c.state, steps: c.steps, values: c.values });
        this.pollMs = performance.now() - pollStart;
        this.polledAt = performance.now();
      }
      // Trials the events named (they started, ended, were pruned): a few at a time.
      const ids = [...this.dirty].slice(0, 16);
      if (this.dirty.size > ids.length) this.changed = true;
      for (const id of ids) {
        const d = await api(`/api/v1/trials/${id}?max_points=100&metric=${metric}`);
        this.dirty.delete(id);  // only once fetched: a failed fetch is tried again
        this.trials.set(d.trial.id, d.trial);
        changedTrials++;
        const c = (d.curves || []).find((x) => x.name === this.metricName());
        const points = (c && c.points) || [];
        curves.push({ id: d.trial.id, state: stateOf(d.trial.state), steps: points.map((p) => num(p.step)), values: points.map((p) => (p.value === undefined ? 0 : Number(p.value))) });
      }
      if (curves.length && this.curveChart) {
        // A trial that changed state needs its old line gone: redraw all when any did.
        const restated = curves.some((c) => { const old = this.curveChart.curves.get(c.id); return old && old.state !== c.state; });
        if (restated) { curves.forEach((c) => this.curveChart.curves.set(c.id, c)); this.curveChart.redraw(); } else { this.curveChart.update(curves); }
      }
      // The trial charts and table redraw from every trial: at most every 2 s, and less often
      // when drawing them takes long (a sweep of many thousands), so the page stays responsive.
      const now = performance.now();
      if (changedTrials && now - (this.chartsAt || 0) > Math.max(2000, 20 * (this.chartsMs || 0))) {
        this.renderTrialCharts();
        this.chartsMs = performance.now() - now;
        this.chartsAt = performance.now();
      } else if (changedTrials) {
        this.changed = true;
      }
      const completed = num((this.sweep.counts || {}).completed);
      if (completed >= 2 && completed >= (this.importanceAt || 0) * 1.1 + 1) this.loadImportance();
    } catch (e) {
      setLive('off', e.message);
    } finally {
      this.refreshing = false;
    }
  }

  renderTable() {
    const el = $('#trial-table');
    if (!el) return;
    const { dims } = this.paramDims(this.trials.values());
    const stateFilter = $('#filter-state').value;
    const text = $('#filter-text').value.trim().toLowerCase();
    let rows = [...this.trials.values()].filter((t) => {
      const st = stateOf(t.state);
      if (stateFilter && st !== stateFilter && !(stateFilter === 'running' && st === 'assigned')) return false;
      if (!text) return true;
      return ((t.params || []).map((p) => p.name + '=' + p.valueJson).join(' ') + ' ' + (t.reason || '') + ' ' + t.id).toLowerCase().includes(text);
    });
    const key = this.tableSort.key;
    const val = (t) => {
      if (key === 'value') return this.value(t);
      if (key === 'number') return num(t.number);
      if (key === 'state') return stateOf(t.state);
      if (key === 'step') return num(t.lastStep);
      if (key === 'gpu') return num(t.gpuSeconds);
      const p = (t.params || []).find((x) => x.name === key);
      return p ? paramValue(p) : undefined;
    };
    const dir = this.tableSort.asc ? 1 : -1;
    rows.sort((a, b) => {
      const x = val(a), y = val(b);
      if (x === undefined || (typeof x === 'number' && !Number.isFinite(x))) return 1;
      if (y === undefined || (typeof y === 'number' && !Number.isFinite(y))) return -1;
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    const per = 100;
    const pages = Math.max(1, Math.ceil(rows.length / per));
    this.tablePage = Math.min(this.tablePage, pages - 1);
    const shown = rows.slice(this.tablePage * per, (this.tablePage + 1) * per);
    const head = [['number', '#'], ['state', 'state'], ['value', this.metricName() || 'value'], ['step', 'last step'], ['gpu', 'GPU-h']]
      .concat(dims.map((d) => [d.name, d.name]));
    el.innerHTML = `<table><thead><tr>${head.map(([k, label]) => `<th data-key="${esc(k)}" class="${k === key ? 'sorted' + (this.tableSort.asc ? ' asc' : '') : ''}">${esc(label)}</th>`).join('')}<th>reason</th></tr></thead>
      <tbody>${shown.map((t) => `<tr data-trial="${esc(t.id)}"><td><a href="#/trials/${esc(t.id)}">${num(t.number)}</a></td><td>${badge(stateOf(t.state))}</td>
        <td class="num">${fmt(this.value(t), 6)}</td><td class="num">${num(t.lastStep)}</td><td class="num">${hours(t.gpuSeconds)}</td>
        ${dims.map((d) => { const p = (t.params || []).find((x) => x.name === d.name); return `<td>${p ? esc(p.valueJson) : ''}</td>`; }).join('')}
        <td class="muted">${esc(t.reason || '')}</td></tr>`).join('')}</tbody></table>`;
    el.querySelectorAll('th[data-key]').forEach((th) => {
      th.onclick = () => {
        if (this.tableSort.key === th.dataset.key) this.tableSort.asc = !this.tableSort.asc;
        else this.tableSort = { key: th.dataset.key, asc: true };
        this.renderTable();
      };
    });
    $('#pager').innerHTML = `<button ${this.tablePage === 0 ? 'disabled' : ''} data-page="-1">‹</button> page ${this.tablePage + 1} of ${pages} (${rows.length.toLocaleString()} trials)
      <button ${this.tablePage >= pages - 1 ? 'disabled' : ''} data-page="1">›</button>`;
    $('#pager').querySelectorAll('button').forEach((b) => { b.onclick = () => { this.tablePage += Number(b.dataset.page); this.renderTable(); }; });
  }

  async act(action) {
    const out = $('#action-result');
    try {
      if (action === 'cancel' && !confirm(`Cancel sweep ${this.id}? Its running trials are stopped.`)) return;
      if (action === 'enqueue') {
        const best = this.sweep.bestTrialId && this.trials.get(this.sweep.bestTrialId);
        const seed = {};
        for (const p of (best && best.params) || []) seed[p.name] = paramValue(p);
        const text = prompt('Parameters of the new trial (JSON; the others come from the search method):', JSON.stringify(seed));
        if (text === null) return;
        let params;
        try { params = JSON.parse(text); } catch (e) { throw new Error('not JSON: ' + e.message); }
        const r = await api(`/api/v1/sweeps/${this.id}/trials`, { method: 'POST', body: JSON.stringify({ params }), headers: { 'Content-Type': 'application/json' } });
        out.textContent = `enqueued ${r.trial.id}`;
      } else {
        const r = await api(`/api/v1/sweeps/${this.id}/${action}`, { method: 'POST' });
        this.sweep = r.sweep;
        this.renderSummary();
        out.textContent = `${action}: done`;
      }
      this.changed = true;
    } catch (e) {
      out.innerHTML = `<span class="error">${esc(e.message)}</span>`;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// One trial

async function trialPage(id) {
  const token = pageToken;
  let plot = null;
  let chosen = null;
  const draw = async () => {
    const d = await api(`/api/v1/trials/${id}?max_points=2000`);
    if (token !== pageToken) return;
    const t = d.trial;
    const st = stateOf(t.state);
    if (!$('#trial')) {
      main.innerHTML = `<div class="muted"><a href="#/">Sweeps</a> / <a href="#/sweeps/${esc(t.sweepId)}">${esc(t.sweepId)}</a> / ${esc(t.id)}</div>
        <div id="trial"></div>`;
    }
    const curves = d.curves || [];
    chosen = chosen || (curves[0] && curves[0].name);
    $('#trial').innerHTML = `<h1>Trial ${num(t.number)} ${badge(st)}</h1>
      <p class="muted">${esc(t.reason || '')}</p>
      ${t.parentTrialId ? `<p class="lineage" data-parent="${esc(t.parentTrialId)}">pbt: a copy of <a href="#/trials/${esc(t.parentTrialId)}">${esc(t.parentTrialId)}</a> at step ${num(t.parentStep)}, in place of <a href="#/trials/${esc(t.replacedTrialId)}">${esc(t.replacedTrialId)}</a></p>` : ''}
      <div class="stats">
        <div class="stat" data-stat="best"><b>${fmt(t.bestValue, 6)}</b><span>best value</span></div>
        <div class="stat" data-stat="last"><b>${fmt(t.lastValue, 6)}</b><span>last value</span></div>
        <div class="stat"><b>${num(t.lastStep)}</b><span>last step</span></div>
        <div class="stat"><b>${num(t.attempt) || 1}</b><span>attempt</span></div>
        <div class="stat"><b>${hours(t.gpuSeconds)}</b><span>GPU-hours</span></div>
        <div class="stat"><b>${hours(t.gpuSecondsSaved)}</b><span>GPU-hours saved</span></div>
      </div>
      <div class="cards">
        <div class="card"><h2>Parameters</h2><table><tbody>${(t.params || []).map((p) => `<tr><td>${esc(p.name)}</td><td>${esc(p.valueJson)}</td></tr>`).join('')}</tbody></table>
          <p class="muted">Agents: ${(t.agentIds || []).map(esc).join(', ') || '–'}; GPUs: ${(t.gpus || []).map(esc).join(', ') || '–'}<br>
          Started ${time(t.startTime)}; ended ${time(t.endTime)}; exit ${num(t.exitCode)}${t.exitSignal ? ' (signal ' + t.exitSignal + ')' : ''}</p></div>
        <div class="card"><h2>Curve <select id="metric">${curves.map((c) => `<option ${c.name === chosen ? 'selected' : ''}>${esc(c.name)}</option>`).join('')}</select></h2><div id="curve"></div></div>
        <div class="card wide"><h2>Events</h2><div class="tablewrap"><table><thead><tr><th>time</th><th>kind</th><th>change</th><th>agent</th><th>message</th></tr></thead><tbody>
          ${(d.events || []).map((e) => `<tr><td>${time(e.time)}</td><td>${esc(e.kind)}</td><td>${esc(e.fromState || '')}${e.toState ? ' → ' + esc(e.toState) : ''}</td><td>${esc(e.agentId || '')}</td><td>${esc(e.message || '')}</td></tr>`).join('')}</tbody></table></div></div>
        ${['stdout', 'stderr'].map((name) => { const l = (d.logs || {})[name] || {}; return `<div class="card wide"><h2>${name}</h2><p class="muted">${esc(l.path || 'no workdir yet')}</p>
          ${l.here ? `<pre class="log">${esc(l.tail || '(empty)')}</pre>` : `<p class="muted">Not on sweepd's host: on the agent's node (${esc((t.agentIds || [])[0] || '?')}), <code>sweepctl logs ${esc(t.id)}</code> there.</p>`}</div>`; }).join('')}
      </div>`;
    const c = curves.find((x) => x.name === chosen);
    const pts = (c && c.points) || [];
    const el = $('#curve');
    if (plot) plot.destroy();  // its listeners on window would keep every old one alive
    plot = new uPlot({ width: Math.max(300, el.clientWidth || 520), height: 240, scales: { x: { time: false } }, axes: [{ label: 'step' }, {}],
      series: [{}, { label: chosen || '', stroke: st === 'pruned' ? '#e8842c' : '#2f6fde', width: 2 }] },
      [pts.map((p) => num(p.step)), pts.map((p) => (p.value === undefined ? 0 : Number(p.value)))], el);
    el.dataset.points = String(pts.length);
    $('#metric').onchange = (e) => { chosen = e.target.value; draw(); };
    return st;
  };
  const st = await draw();
  setLive('on', 'polling every 2 s');
  if (st === 'running' || st === 'assigned' || st === 'queued') every(2000, () => draw().catch(() => {}));
  return plot;
}

// ---------------------------------------------------------------------------------------------
// Agents

async function agentsPage() {
  main.innerHTML = `<h1>Agents</h1><div class="card"><div class="tablewrap" id="agents"></div></div>`;
  const draw = async () => {
    const data = await api('/api/v1/agents?all=true');
    const rows = (data.agents || []).map((a) => {
      const st = stateOf(a.state);
      const gpus = (a.gpus || []).map((g) => {
        const util = num(g.utilizationPercent);
        const slot = (g.uuid || '').startsWith('slot-');
        return `<span class="gpu" title="${esc(g.name || '')} ${esc(g.uuid || '')}${g.trialId ? ' — ' + esc(g.trialId) : ''}">${slot ? 'slot' : 'GPU'} ${num(g.index)}${slot ? '' : ` ${util.toFixed(0)}%`}
          <div class="progress"><div style="width:${slot ? (g.trialId ? 100 : 0) : util}%;background:${g.trialId ? '#1e9e6a' : '#98a0b3'}"></div></div></span>`;
      }).join('');
      return `<tr data-agent="${esc(a.id)}"><td>${esc(a.id)}<div class="muted">${esc(a.hostname || '')} ${esc(a.address || '')}</div></td>
        <td>${badge(st)}${a.quarantineReason ? `<div class="error">${esc(a.quarantineReason)}</div><button data-release="${esc(a.id)}">Release</button>` : ''}</td>
        <td>${gpus}</td><td>${(a.runningTrialIds || []).map((t) => `<a href="#/trials/${esc(t)}">${esc(t)}</a>`).join('<br>') || '<span class="muted">idle</span>'}</td>
        <td>${time(a.lastHeartbeat)}</td><td class="muted">${esc(a.version || '')}</td></tr>`;
    });
    $('#agents').innerHTML = rows.length
      ? `<table><thead><tr><th>Agent</th><th>State</th><th>GPUs / slots (utilisation)</th><th>Running</th><th>Last heartbeat</th><th>Version</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
      : '<p class="muted">No agents. Start one with <code>sweep-agent --scheduler HOST:PORT</code>.</p>';
    $('#agents').querySelectorAll('[data-release]').forEach((b) => {
      b.onclick = async () => {
        try { await api(`/api/v1/agents/${b.dataset.release}/release`, { method: 'POST' }); draw(); } catch (e) { alert(e.message); }
      };
    });
  };
  await draw();
  setLive('on', 'polling every 3 s');
  every(3000, () => draw().catch(() => setLive('off', 'sweepd unreachable')));
}

// ---------------------------------------------------------------------------------------------

async function route() {
  leave();
  const hash = location.hash.replace(/^#/, '') || '/';
  document.querySelectorAll('[data-nav]').forEach((a) => a.classList.toggle('active', (hash.startsWith('/agents') ? 'agents' : 'sweeps') === a.dataset.nav));
  document.body.dataset.ready = '';
  try {
    let m;
    if ((m = hash.match(/^\/sweeps\/([^/]+)$/))) {
      await new SweepView(decodeURIComponent(m[1])).open();
    } else if ((m = hash.match(/^\/trials\/([^/]+)$/))) {
      await trialPage(decodeURIComponent(m[1]));
    } else if (hash.startsWith('/agents')) {
      await agentsPage();
    } else {
      await sweepsPage();
    }
    document.body.dataset.ready = 'true';
  } catch (e) {
    showError(e);
    document.body.dataset.ready = 'error';
  }
}

window.addEventListener('hashchange', route);
route();
