#!/usr/bin/env node
// Copies the dist files of the pinned npm packages into vendor/ (generated, git-ignored),
// which the service serves under /static/vendor/. No CDN: the page loads only these.
'use strict';
const fs = require('fs');
const path = require('path');

const here = __dirname;
const vendor = path.join(here, 'vendor');

function copy(from, to) {
  const src = path.join(here, 'node_modules', from);
  const dst = path.join(vendor, to);
  if (!fs.existsSync(src)) {
    console.error(`copy-vendor: missing ${src} (run npm install in ${here})`);
    process.exit(1);
  }
  fs.mkdirSync(path.dirname(dst), { recursive: true });
  fs.cpSync(src, dst, { recursive: true });
}

fs.rmSync(vendor, { recursive: true, force: true });
copy('openseadragon/build/openseadragon/openseadragon.min.js', 'openseadragon/openseadragon.min.js');
copy('openseadragon/build/openseadragon/openseadragon.min.js.map', 'openseadragon/openseadragon.min.js.map');
copy('openseadragon/build/openseadragon/images', 'openseadragon/images');
copy('openseadragon/LICENSE.txt', 'openseadragon/LICENSE.txt');
copy('leaflet/dist/leaflet.js', 'leaflet/leaflet.js');
copy('leaflet/dist/leaflet.js.map', 'leaflet/leaflet.js.map');
copy('leaflet/dist/leaflet.css', 'leaflet/leaflet.css');
copy('leaflet/dist/images', 'leaflet/images');
copy('leaflet/LICENSE', 'leaflet/LICENSE');
console.log(`copy-vendor: wrote ${path.relative(process.cwd(), vendor) || vendor}`);
