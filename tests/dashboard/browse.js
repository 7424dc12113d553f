// Drives Debian's Chromium (playwright-core, no downloaded browser) through sweepd's dashboard
// and prints what the page shows as JSON, taking a screenshot of each page. Used by
// dashboard_e2e_test (which compares the numbers with `sweepctl status`) and by
// bench/dashboard_bench (first-picture times).
//   node browse.js URL PAGE_HASH [SCREENSHOT.png|-] [--stay SECONDS]
// --stay keeps the page open, live, that long and reports the gaps between its animation frames
// (how responsive it stayed).
'use strict';
const { chromium } = require(require('path').join(__dirname, '../../web/node_modules/playwright-core'));

async function main() {
  const [url, hash, shot] = process.argv.slice(2);
  const waitFor = 'ready';
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const errors = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    const started = Date.now();
    await page.goto(url + hash);
    await page.waitForFunction(() => document.body.dataset.ready === 'true' || document.body.dataset.ready === 'error', null, { timeout: 60000 });
    if (waitFor === 'curves' || hash.startsWith('#/sweeps/')) {
      await page.waitForFunction(() => document.body.dataset.curvesLoadedMs || document.body.dataset.ready === 'error', null, { timeout: 120000 });
      // The live stream is open (awaited, not raced, on a busy machine).
      await page.waitForFunction(() => document.querySelector('#live-text').textContent === 'live', null, { timeout: 30000 }).catch(() => {});
    }
    // Charts draw in chunks between animation frames: wait until none is left to draw.
    await page.waitForFunction(() => Charts.drawing() === 0, null, { timeout: 60000 });
    const stayAt = process.argv.indexOf('--stay');
    let frames = null;
    if (stayAt > 0) {
      const gaps = await page.evaluate((ms) => new Promise((resolve) => {
        const out = [];
        let last = performance.now();
        const end = last + ms;
        const frame = (t) => { out.push(t - last); last = t; if (t < end) requestAnimationFrame(frame); else resolve(out); };
        requestAnimationFrame(frame);
      }), Number(process.argv[stayAt + 1]) * 1000);
      gaps.sort((a, b) => a - b);
      const at = (q) => Math.round(gaps[Math.min(gaps.length - 1, Math.floor(q * gaps.length))]);
      frames = { count: gaps.length, p50Ms: at(0.5), p99Ms: at(0.99), maxMs: Math.round(gaps[gaps.length - 1]) };
    }
    const shown = await page.evaluate(() => {
      const stats = {};
      document.querySelectorAll('[data-stat]').forEach((el) => { stats[el.dataset.stat] = el.querySelector('b').textContent.trim(); });
      const canvases = {};
      document.querySelectorAll('canvas[id]').forEach((c) => { canvases[c.id] = { drawn: Number(c.dataset.drawn || 0), width: c.width, height: c.height }; });
      const plots = {};
      document.querySelectorAll('[data-points]').forEach((el) => { plots[el.id] = { points: Number(el.dataset.points), canvas: !!el.querySelector('canvas') }; });
      const slices = [...document.querySelectorAll('canvas[data-slice]')].map((c) => Number(c.dataset.drawn || 0));
      const importance = [...document.querySelectorAll('[data-param]')].map((el) => el.dataset.param);
      const rows = [...document.querySelectorAll('tr[data-trial], tr[data-sweep], tr[data-agent]')].map((r) => r.dataset.trial || r.dataset.sweep || r.dataset.agent);
      return { ready: document.body.dataset.ready, error: (document.querySelector('main .error') || {}).textContent || '',
               firstPictureMs: Number(document.body.dataset.firstPictureMs || 0), trialsLoadedMs: Number(document.body.dataset.trialsLoadedMs || 0),
               curvesLoadedMs: Number(document.body.dataset.curvesLoadedMs || 0), stats, canvases, plots, slices, importance, rows,
               live: document.querySelector('#live-text').textContent, text: document.querySelector('main').innerText.slice(0, 4000) };
    });
    shown.wallMs = Date.now() - started;
    shown.frames = frames;
    shown.errors = errors;
    if (shot && shot !== '-' && !shot.startsWith('--')) await page.screenshot({ path: shot, fullPage: true });
    process.stdout.write(JSON.stringify(shown) + '\n');
  } finally {
    await browser.close();
  }
}
main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
