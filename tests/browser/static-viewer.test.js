#!/usr/bin/env node
// The static viewer page scripts/demo.sh writes (scripts/static-viewer.py), opened from the file
// system (file://) in headless Chromium: OpenSeadragon opens the inline Deep Zoom or IIIF source
// (IIIF: info.json with a relative id, "." when the page is in the pyramid's folder), draws
// its tiles (loaded from file://, no HTTP), with no console errors or failed requests, and the
// screenshot is not blank.
//
//   STATIC_VIEWER_PAGE=/abs/path/viewer.html node tests/browser/static-viewer.test.js
// Environment: STATIC_VIEWER_PAGE (required), VIEWER_OUT (screenshots, default tests/browser/out),
// VIEWER_TIMEOUT_MS (default 60000), CHROMIUM (default /usr/bin/chromium).
'use strict';
const fs = require('fs');
const path = require('path');
const { pathToFileURL } = require('url');
const { chromium } = require('playwright-core');
const { decodePng, pixelStats } = require('./png');

const PAGE = process.env.STATIC_VIEWER_PAGE || '';
const OUT = path.resolve(process.env.VIEWER_OUT || path.join(__dirname, 'out'));
const TIMEOUT = Number(process.env.VIEWER_TIMEOUT_MS || 60000);
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

if (!PAGE || !fs.existsSync(PAGE)) {
  console.error(`static-viewer.test: no page at STATIC_VIEWER_PAGE='${PAGE}'`);
  process.exit(2);
}

let failures = 0;
function check(name, ok, detail) {
  if (!ok) failures++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ' — ' + detail : ''}`);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const errors = [], failed = [], tiles = [], other = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push('pageerror: ' + e.message));
  page.on('requestfailed', (r) => failed.push(`${r.url()}: ${(r.failure() || {}).errorText}`));
  page.on('request', (r) => { if (!r.url().startsWith('file://')) other.push(r.url()); });
  // Deep Zoom: image_files/{level}/{col}_{row}.ext; IIIF: {x},{y},{w},{h}/{w},{h}/0/default.ext or full/...
  const tilePattern = /(_files\/\d+\/\d+_\d+|\/(\d+,\d+,\d+,\d+|full)\/(\d+,\d+|max)\/0\/default)\.(png|jpe?g|webp)$/;
  page.on('requestfinished', (r) => { if (tilePattern.test(r.url())) tiles.push(r.url()); });
  const url = pathToFileURL(path.resolve(PAGE)).href;
  try {
    await page.goto(url, { waitUntil: 'load' });
    await page.waitForFunction(() => document.body.getAttribute('data-tiles') === 'loaded' ||
                                     document.body.getAttribute('data-opened') === 'failed',
                               null, { timeout: TIMEOUT, polling: 100 });
    const opened = await page.evaluate(() => document.body.getAttribute('data-opened'));
    check('OpenSeadragon opened the inline tile source from file://', opened === '1', `data-opened=${opened}`);
    await page.waitForTimeout(500);
    fs.mkdirSync(OUT, { recursive: true });
    const shot = path.join(OUT, 'static-viewer.png');
    const st = pixelStats(decodePng(await page.locator('#viewer').screenshot({ path: shot })));
    check('the screenshot of the viewer is not blank',
      st.distinct >= 64 && st.nonBackground >= 0.2 && st.lumaStddev >= 10,
      `${shot}: ${st.distinct} colours, ${(st.nonBackground * 100).toFixed(1)}% non-background, luma stddev ${st.lumaStddev.toFixed(1)}`);
    check('tiles were loaded from the file system', tiles.length >= 3, `${tiles.length} tiles loaded, e.g. ${tiles.slice(0, 2).join(', ')}`);
  } catch (e) {
    check('static viewer run', false, e.message);
  }
  check('no console errors', errors.length === 0, errors.slice(0, 5).join(' | '));
  check('no failed requests', failed.length === 0, failed.slice(0, 5).join(' | '));
  check('no request left the file system', other.length === 0, other.slice(0, 3).join(' | '));
  await browser.close();
  process.exit(failures ? 1 : 0);
})().catch((e) => { console.error(e); process.exit(1); });
