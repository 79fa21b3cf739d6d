#!/usr/bin/env node
// After `npm ci`: copies the dist files of the pinned npm packages into vendor/ (generated,
// git-ignored), which the service serves under /static/vendor/. No CDN: the page loads only
// these. The file list is vendor-files.json, shared with fetch-vendor.py (the same vendor/
// without Node.js, straight from the registry's tarballs).
'use strict';
const fs = require('fs');
const path = require('path');

const here = __dirname;
const vendor = path.join(here, 'vendor');
const map = JSON.parse(fs.readFileSync(path.join(here, 'vendor-files.json'), 'utf8'));

fs.rmSync(vendor, { recursive: true, force: true });
for (const [pkg, files] of Object.entries(map)) {
  if (pkg.startsWith('_')) continue;
  for (const [from, to] of Object.entries(files)) {
    const src = path.join(here, 'node_modules', pkg, from);
    const dst = path.join(vendor, to);
    if (!fs.existsSync(src)) {
      console.error(`copy-vendor: missing ${src} (run npm ci in ${here})`);
      process.exit(1);
    }
    fs.mkdirSync(path.dirname(dst), { recursive: true });
    fs.cpSync(src, dst, { recursive: true });
  }
}
console.log(`copy-vendor: wrote ${path.relative(process.cwd(), vendor) || vendor}`);
