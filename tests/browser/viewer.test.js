#!/usr/bin/env node
// Headless-Chromium test of the example service's viewer page (playwright-core + Debian's
// chromium). Runs against whatever VIEWER_BASE_URL serves: the mock (run.sh starts it) or the
// real service. For each target version it asks for a viewer link with the token
// (POST .../viewer-link), opens it (/projects/{slug}/versions/{v}/viewer?code=..., exchanged for
// a session cookie and redirected to the page without the code) and checks: the code is gone
// from the address bar, no token or code is visible to the page's scripts, no console errors or page errors, no failed requests (network errors or HTTP
// >= 400), tile requests under /tiles/ answered 200 (at least VIEWER_MIN_TILES), the progress
// bar seen in the running state (when required), and a screenshot of the viewer that is not
// blank. A failing version must show its job's error.
//
// Environment:
//   VIEWER_BASE_URL        e.g. http://127.0.0.1:8080 (required)
//   VIEWER_TOKEN           bearer token that asks for the viewer links (required; never put in a URL)
//   VIEWER_TARGETS         "slug/version[:dz|xyz|iiif[:FORMAT]] ..." versions whose job completes (default
//                          "demo/1:dz demo/2:xyz"); FORMAT (png, jpg, webp): every tile drawn has that suffix
//   VIEWER_EXPECT_PROGRESS 1: each target must show the progress bar running before completion (default 0)
//   VIEWER_FAILED_TARGET   "slug/version" whose job fails ("" to skip; default "")
//   VIEWER_FAILED_TEXT     text the error must contain (default: any non-empty error)
//   VIEWER_MIN_TILES       tile responses with status 200 required per target (default 3)
//   VIEWER_STATE_DIR       when set, the test creates DIR/<slug>-v<version>.<state> the moment the page first
//                          shows a state (loading, queued, completed, ...; "running" only once the bar shows a
//                          percentage between 0 and 100), so a harness can pace the job by what the page has seen
//                          (run-service.sh holds the job until the page watches it queued, then running)
//   VIEWER_OUT             where screenshots go (default tests/browser/out)
//   VIEWER_TIMEOUT_MS      per-target time limit for the job to complete and tiles to draw (default 120000)
//   CHROMIUM               browser binary (default /usr/bin/chromium)
'use strict';
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');
const { decodePng, pixelStats } = require('./png');

const env = process.env;
const BASE = (env.VIEWER_BASE_URL || '').replace(/\/+$/, '');
const TOKEN = env.VIEWER_TOKEN || '';
const TARGETS = (env.VIEWER_TARGETS || 'demo/1:dz demo/2:xyz').split(/\s+/).filter(Boolean);
const EXPECT_PROGRESS = env.VIEWER_EXPECT_PROGRESS === '1';
const FAILED_TARGET = env.VIEWER_FAILED_TARGET || '';
const FAILED_TEXT = env.VIEWER_FAILED_TEXT || '';
const MIN_TILES = Number(env.VIEWER_MIN_TILES || 3);
const OUT = path.resolve(env.VIEWER_OUT || path.join(__dirname, 'out'));
const TIMEOUT = Number(env.VIEWER_TIMEOUT_MS || 120000);
const CHROMIUM = env.CHROMIUM || '/usr/bin/chromium';
const STATE_DIR = env.VIEWER_STATE_DIR || '';
const LIVE_VERSION = env.VIEWER_LIVE_VERSION || '';  // "slug/live" targets: the version the live map must show

if (!BASE || !TOKEN) {
  console.error('viewer.test: set VIEWER_BASE_URL and VIEWER_TOKEN (or use run.sh, which starts the mock)');
  process.exit(2);
}

// Records every state the status area goes through (the test polls too slowly to be sure of
// catching a short running phase itself).
const RECORDER = `
  window.__statusLog = [];
  document.addEventListener('DOMContentLoaded', function () {
    var status = document.getElementById('status');
    if (!status) return;
    var last = '';
    function snap() {
      var bar = document.getElementById('progress');
      var e = {
        state: status.getAttribute('data-state'),
        barVisible: !!bar && !bar.hidden,
        percent: bar ? Number(bar.getAttribute('aria-valuenow')) : null,
        text: (document.getElementById('progress-text') || {}).textContent || '',
        message: (document.getElementById('message') || {}).textContent || '',
      };
      var key = JSON.stringify(e);
      if (key !== last) {
        last = key; e.t = Date.now(); window.__statusLog.push(e);
        if (window.__tilekitReportState) window.__tilekitReportState(e);
      }
    }
    snap();
    new MutationObserver(snap).observe(status, { attributes: true, childList: true, subtree: true, characterData: true });
  });
`;

// A one-time viewer link for the target, asked for with the token in the header.
async function viewerUrl(target) {
  const [slug, version] = target.split('/');
  const page = version === 'live'  // the project's live map
    ? `/projects/${encodeURIComponent(slug)}/viewer`
    : `/projects/${encodeURIComponent(slug)}/versions/${encodeURIComponent(version)}/viewer`;
  const res = await fetch(`${BASE}${page}-link`, { method: 'POST', headers: { Authorization: `Bearer ${TOKEN}` } });
  const body = await res.json().catch(() => ({}));
  if (res.status !== 201 || !body.viewer_url) throw new Error(`POST ${page}-link: HTTP ${res.status} ${JSON.stringify(body)}`);
  return { url: BASE + body.viewer_url, page: BASE + page, code: body.code };
}

// After the code exchange: the address bar holds the page without the code, and nothing the
// page's scripts can read holds the token or the code (the session cookie is HttpOnly).
async function checkNoSecrets(page, target, link) {
  check(`${target}: the code left the address bar`, page.url() === link.page, `url=${page.url().split(link.code).join('<code>')}`);
  const seen = await page.evaluate(() => JSON.stringify({
    href: window.location.href, cookie: document.cookie,
    state: Object.keys(window.tilekitViewer || {}).reduce(function (o, k) {
      var v = window.tilekitViewer[k]; if (typeof v !== 'object') o[k] = v; return o; }, {}),
  }));
  check(`${target}: no token or code visible to the page`, !seen.includes(TOKEN) && !seen.includes(link.code),
        redact(seen.split(link.code).join('<code>')));
}

function watch(page) {
  const w = { consoleErrors: [], warnings: [], failed: [], tiles200: [], tilesOther: [] };
  page.on('console', (m) => {
    if (m.type() === 'error') w.consoleErrors.push(m.text());
    else if (m.type() === 'warning') w.warnings.push(m.text());
  });
  page.on('pageerror', (e) => w.consoleErrors.push('pageerror: ' + e.message));
  page.on('requestfailed', (r) => w.failed.push(`${r.method()} ${r.url()}: ${(r.failure() || {}).errorText}`));
  page.on('response', (r) => {
    const u = new URL(r.url());
    if (r.status() >= 400) w.failed.push(`${r.request().method()} ${r.url()}: HTTP ${r.status()}`);
    if (u.pathname.includes('/tiles/')) (r.status() === 200 ? w.tiles200 : w.tilesOther).push(`${r.status()} ${u.pathname}`);
  });
  return w;
}

function redact(s) { return String(s).split(TOKEN).join('<token>'); }

const results = [];
function check(name, ok, detail) {
  results.push({ name, ok, detail });
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ' — ' + redact(detail) : ''}`);
}

// VIEWER_STATE_DIR: marks each state the page has shown, once, as a file a harness can wait for.
async function reportStates(page, label) {
  fs.mkdirSync(STATE_DIR, { recursive: true });
  const seen = new Set();
  await page.exposeFunction('__tilekitReportState', (e) => {
    const state = String(e.state || '');
    if (!/^[a-z]+$/.test(state) || seen.has(state)) return;
    if (state === 'running' && !(e.barVisible && e.percent > 0 && e.percent < 100)) return;
    seen.add(state);
    fs.writeFileSync(path.join(STATE_DIR, `${label}.${state}`), JSON.stringify(e) + '\n');
  });
}

async function testCompleted(browser, spec) {
  // "slug/version:layout[:format]": with a format, every tile image must have that suffix
  // (WebP tiles must be the ones drawn, not a fallback).
  const [target, layout, format] = spec.split(':');
  const label = target.replace('/', '-v');
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.addInitScript(RECORDER);
  const w = watch(page);
  if (STATE_DIR) await reportStates(page, label);
  const started = Date.now();
  try {
    const link = await viewerUrl(target);
    await page.goto(link.url, { waitUntil: 'load' });
    await checkNoSecrets(page, target, link);
    if (EXPECT_PROGRESS) {
      // A picture of the progress bar for the record (the check itself uses the status log).
      await page.waitForFunction(() => document.body.getAttribute('data-state') === 'running' &&
                                        Number(document.getElementById('progress').getAttribute('aria-valuenow')) > 0,
                                 null, { timeout: TIMEOUT, polling: 100 })
        .then(() => { fs.mkdirSync(OUT, { recursive: true });
                      return page.screenshot({ path: path.join(OUT, `progress-${label}-${layout || 'job'}.png`) }); })
        .catch(() => {});
    }
    await page.waitForFunction(
      () => document.body.getAttribute('data-tiles') === 'loaded' ||
            ['failed', 'cancelled', 'error', 'empty'].includes(document.body.getAttribute('data-state')),
      null, { timeout: TIMEOUT, polling: 100 });
    const state = await page.evaluate(() => ({
      state: document.body.getAttribute('data-state'),
      tiles: document.body.getAttribute('data-tiles'),
      kind: window.tilekitViewer && window.tilekitViewer.kind,
      error: document.getElementById('error').hidden ? '' : document.getElementById('error').textContent,
      summary: document.getElementById('summary').textContent,
    }));
    check(`${target}: job completed and tiles drawn`, state.tiles === 'loaded',
      `state=${state.state} tiles=${state.tiles} in ${Date.now() - started} ms${state.error ? ' error=' + state.error : ''}; ${state.summary}`);
    if (state.tiles !== 'loaded') {
      fs.mkdirSync(OUT, { recursive: true });
      await page.screenshot({ path: path.join(OUT, `page-${label}-${layout || 'unknown'}.png`) });
      return;   // nothing drawn: the remaining checks would only time out
    }
    if (LIVE_VERSION && target.endsWith('/live')) {
      const live = await page.evaluate(() => document.body.getAttribute('data-live-version'));
      check(`${target}: the live map shows version ${LIVE_VERSION}`, live === LIVE_VERSION, `data-live-version=${live}`);
    }
    if (layout) {
      const want = layout === 'xyz' ? 'leaflet' : 'openseadragon';
      check(`${target}: ${layout} shown with ${want}`, state.kind === want, `kind=${state.kind}`);
    }
    // Let late tile loads finish so the counts and the screenshot are settled.
    await page.waitForLoadState('networkidle', { timeout: 15000 }).catch(() => {});
    await page.waitForTimeout(500);

    const log = await page.evaluate(() => window.__statusLog);
    const running = log.filter((e) => e.state === 'running' && e.barVisible);
    const percents = [...new Set(running.map((e) => e.percent))];
    const progressDetail = `states seen: ${[...new Set(log.map((e) => e.state))].join(' → ')}; running percentages: ${percents.join(', ') || 'none'}`;
    if (EXPECT_PROGRESS) {
      check(`${target}: progress bar showed a running job before completion`,
        running.length > 0 && percents.some((p) => p > 0 && p < 100) &&
        running.some((e) => /\d+%/.test(e.text) && e.message.length > 0), progressDetail);
    } else {
      console.log(`info ${target}: ${progressDetail}`);
    }

    fs.mkdirSync(OUT, { recursive: true });
    const shot = path.join(OUT, `viewer-${label}-${layout || state.kind}.png`);
    const buf = await page.locator('#viewer').screenshot({ path: shot });
    await page.screenshot({ path: path.join(OUT, `page-${label}-${layout || state.kind}.png`) });
    const st = pixelStats(decodePng(buf));
    check(`${target}: screenshot of the viewer is not blank`,
      st.distinct >= 64 && st.nonBackground >= 0.2 && st.lumaStddev >= 10,
      `${shot}: ${st.width}x${st.height}, ${st.distinct} colours, background ${st.dominant} ${(st.dominantShare * 100).toFixed(1)}%, ` +
      `${(st.nonBackground * 100).toFixed(1)}% non-background, luma stddev ${st.lumaStddev.toFixed(1)}`);

    const tileImages = w.tiles200.filter((t) => /\.(png|jpe?g|webp)$/i.test(t));
    check(`${target}: tile requests under /tiles/ succeeded`, tileImages.length >= MIN_TILES && w.tilesOther.length === 0,
      `${w.tiles200.length} responses 200 (${tileImages.length} tile images), ${w.tilesOther.length} other; e.g. ${tileImages.slice(0, 3).join(', ')}`);
    if (format) {
      const suffix = new RegExp('\\.' + format + '$', 'i');
      const others = tileImages.filter((t) => !suffix.test(t));
      check(`${target}: every tile drawn is .${format}`, tileImages.length >= MIN_TILES && others.length === 0,
        `${tileImages.length - others.length} .${format} tiles, ${others.length} others ${others.slice(0, 3).join(', ')}`);
    }
  } catch (e) {
    check(`${target}: viewer run`, false, e.message);
  } finally {
    check(`${target}: no console errors`, w.consoleErrors.length === 0, w.consoleErrors.join(' | '));
    check(`${target}: no failed requests`, w.failed.length === 0, w.failed.join(' | '));
    if (w.warnings.length) console.log(`info ${target}: console warnings: ${redact(w.warnings.join(' | '))}`);
    await context.close();
  }
}

async function testFailed(browser, target) {
  const label = target.replace('/', '-v');
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  await page.addInitScript(RECORDER);
  const w = watch(page);
  try {
    const link = await viewerUrl(target);
    await page.goto(link.url, { waitUntil: 'load' });
    await checkNoSecrets(page, target, link);
    await page.waitForSelector('#error:not([hidden])', { timeout: TIMEOUT });
    const r = await page.evaluate(() => ({
      state: document.body.getAttribute('data-state'),
      error: document.getElementById('error').textContent,
      viewerHidden: document.getElementById('viewer').hidden,
      log: window.__statusLog,
    }));
    fs.mkdirSync(OUT, { recursive: true });
    const shot = path.join(OUT, `page-${label}-failed.png`);
    await page.screenshot({ path: shot });
    check(`${target}: failed job shows its error`,
      r.state === 'failed' && r.viewerHidden && r.error.length > 0 && (!FAILED_TEXT || r.error.includes(FAILED_TEXT)),
      `state=${r.state}, error "${r.error}", states seen: ${[...new Set(r.log.map((e) => e.state))].join(' → ')}; ${shot}`);
  } catch (e) {
    check(`${target}: failed-job run`, false, e.message);
  } finally {
    check(`${target}: no console errors`, w.consoleErrors.length === 0, w.consoleErrors.join(' | '));
    check(`${target}: no failed requests`, w.failed.length === 0, w.failed.join(' | '));
    await context.close();
  }
}

(async () => {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // A new empty profile comes with every launch(); these keep Chromium off the closed network.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
  console.log(`viewer.test: ${BASE} with ${await browser.version()}; targets ${TARGETS.join(' ')}` +
              `${FAILED_TARGET ? '; failing ' + FAILED_TARGET : ''}`);
  try {
    // Run the targets at the same time, so that on the mock each one's job is watched from queued on.
    await Promise.all([
      ...TARGETS.map((t) => testCompleted(browser, t)),
      ...(FAILED_TARGET ? [testFailed(browser, FAILED_TARGET)] : []),
    ]);
  } finally {
    await browser.close();
  }
  const failed = results.filter((r) => !r.ok);
  console.log(`viewer.test: ${results.length - failed.length}/${results.length} checks passed`);
  process.exit(failed.length ? 1 : 0);
})().catch((e) => {
  console.error('viewer.test: ' + (e && e.stack || e));
  process.exit(1);
});
