#!/usr/bin/env node
// Static hosting of published pyramids by their stable addresses (see run-stable-manifests.sh):
// for each layout, a page at /_pages/ opens the version's stable manifest; every tile request
// must go to the run the version's pointer (current.json) names, and load; the replaced run is
// never asked for; the viewer draws something.
//
// Environment: STABLE_BASE (http://127.0.0.1:PORT), STABLE_STORAGE (the served directory),
// STABLE_PAGES (where the pages are written), VIEWER_OUT, CHROMIUM.
'use strict';
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');
const { decodePng, pixelStats } = require('./png');

const BASE = process.env.STABLE_BASE;
const STORAGE = process.env.STABLE_STORAGE;
const PAGES = process.env.STABLE_PAGES;
const OUT = path.resolve(process.env.VIEWER_OUT || path.join(__dirname, 'out'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TIMEOUT = 60000;
if (!BASE || !STORAGE || !PAGES) { console.error('stable-manifests.test: STABLE_BASE, STABLE_STORAGE and STABLE_PAGES are required'); process.exit(2); }

let failures = 0;
function check(name, ok, detail) {
  if (!ok) failures++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}${detail ? ' — ' + detail : ''}`);
}

const head = '<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><link rel="stylesheet" href="vendor/leaflet/leaflet.css">' +
  '<style>#viewer{width:900px;height:600px;background:#222}</style><div id="viewer"></div>';
const osdPage = (source) => head + '<script src="vendor/openseadragon/openseadragon.min.js"></script><script>' +
  `var v = OpenSeadragon({id: 'viewer', prefixUrl: 'vendor/openseadragon/images/', tileSources: ${JSON.stringify(source)}});` +
  "v.addHandler('open', function(){document.body.setAttribute('data-opened','1')});" +
  "v.addHandler('open-failed', function(){document.body.setAttribute('data-opened','failed')});" +
  "v.world.addHandler('add-item', function(e){e.item.addOnceHandler('fully-loaded-change', function(){document.body.setAttribute('data-tiles','loaded')})});" +
  '</script>';
const leafletPage = (version) => head + '<script src="vendor/leaflet/leaflet.js"></script><script>' +
  `var version = ${JSON.stringify(version)};` +
  "fetch(version + 'pyramid.json', {cache: 'no-store'}).then(function(r){return r.json()}).then(function(p){" +
  "  var max = p.max_level, W = p.width, H = p.height;" +
  "  var map = L.map('viewer', {crs: L.CRS.Simple, minZoom: 0, maxZoom: max, attributionControl: false});" +
  "  var bounds = L.latLngBounds(map.unproject([0, H], max), map.unproject([W, 0], max));" +
  "  var url = version + p.tile_url_template.replace('{z}', '{z}').replace('{x}', '{x}').replace('{y}', '{y}');" +
  "  var layer = L.tileLayer(url, {tileSize: p.tile_size, maxNativeZoom: max, noWrap: true, bounds: bounds});" +
  "  layer.once('load', function(){document.body.setAttribute('data-tiles','loaded')});" +
  "  layer.addTo(map); map.fitBounds(bounds); document.body.setAttribute('data-opened','1');" +
  "}).catch(function(e){console.error(e); document.body.setAttribute('data-opened','failed')});" +
  '</script>';

function pointerOf(version) {
  return JSON.parse(fs.readFileSync(path.join(STORAGE, version, 'current.json'), 'utf8'));
}

(async () => {
  const browser = await chromium.launch({
    executablePath: CHROMIUM, headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
           '--disable-component-update', '--disable-sync'],
  });
  const cases = [
    { layout: 'dz', version: 'mp/static-dz/uploads/tiles/1/', page: (v) => osdPage('/' + v + 'image.dzi'), tile: /_files\/\d+\/\d+_\d+\.jpg$/ },
    { layout: 'iiif', version: 'mp/static-iiif/uploads/tiles/1/', page: (v) => osdPage('/' + v + 'info.json'), tile: /\/(\d+,\d+,\d+,\d+|full)\/[^/]+\/0\/default\.jpg$/ },
    { layout: 'xyz', version: 'mp/static-xyz/uploads/tiles/1/', page: (v) => leafletPage('/' + v), tile: /\/\d+\/\d+\/\d+\.jpg$/ },
  ];
  for (const c of cases) {
    const pointer = pointerOf(c.version);
    const committed = '/' + c.version + pointer.run;
    check(`${c.layout}: the pointer names a run and one replaced run`, pointer.run && pointer.retired.length === 1,
      `run ${pointer.run}, retired ${JSON.stringify(pointer.retired)}`);
    const replaced = pointer.retired.length ? '/' + c.version + pointer.retired[0].run : '(none)';
    fs.writeFileSync(path.join(PAGES, `${c.layout}.html`), c.page(c.version));
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    const page = await context.newPage();
    const errors = [], failed = [], tiles = [], bad = [];
    page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push('pageerror: ' + e.message));
    page.on('requestfailed', (r) => failed.push(`${r.url()}: ${(r.failure() || {}).errorText}`));
    page.on('response', (r) => {
      const p = new URL(r.url()).pathname;
      if (r.status() >= 400) bad.push(`${r.status()} ${p}`);
      if (c.tile.test(p)) tiles.push(p);
    });
    try {
      await page.goto(`${BASE}/_pages/${c.layout}.html`, { waitUntil: 'load' });
      await page.waitForFunction(() => document.body.getAttribute('data-tiles') === 'loaded' ||
                                       document.body.getAttribute('data-opened') === 'failed',
                                 null, { timeout: TIMEOUT, polling: 100 });
      await page.waitForTimeout(500);
      check(`${c.layout}: the viewer opened the stable manifest`, await page.evaluate(() => document.body.getAttribute('data-opened')) === '1');
      check(`${c.layout}: tiles were loaded`, tiles.length >= 3, `${tiles.length} tiles, e.g. ${tiles.slice(0, 2).join(', ')}`);
      const outside = tiles.filter((t) => !t.startsWith(committed));
      check(`${c.layout}: every tile came from the committed run ${committed}`, outside.length === 0, outside.slice(0, 3).join(', '));
      check(`${c.layout}: no tile of the replaced run was asked for`, !tiles.some((t) => t.startsWith(replaced)));
      fs.mkdirSync(OUT, { recursive: true });
      const shot = path.join(OUT, `stable-${c.layout}.png`);
      const st = pixelStats(decodePng(await page.locator('#viewer').screenshot({ path: shot })));
      check(`${c.layout}: the viewer is not blank`, st.distinct >= 64 && st.lumaStddev >= 10,
        `${shot}: ${st.distinct} colours, luma stddev ${st.lumaStddev.toFixed(1)}`);
    } catch (e) {
      check(`${c.layout}: run`, false, e.message);
    }
    check(`${c.layout}: no console errors`, errors.length === 0, errors.slice(0, 3).join(' | '));
    check(`${c.layout}: no failed requests or error responses`, failed.length === 0 && bad.length === 0,
      failed.concat(bad).slice(0, 3).join(' | '));
    await context.close();
  }
  await browser.close();
  process.exit(failures ? 1 : 0);
})().catch((e) => { console.error(e); process.exit(1); });
