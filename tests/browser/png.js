// A tiny PNG decoder (8-bit greyscale/RGB/RGBA, non-interlaced: what Chromium's screenshots
// are) and pixel statistics, so the test can tell a drawn image from a blank area.
'use strict';
const zlib = require('zlib');

function decodePng(buf) {
  const SIG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (buf.length < 8 || !buf.subarray(0, 8).equals(SIG)) throw new Error('not a PNG');
  let off = 8, width = 0, height = 0, depth = 0, ctype = 0, interlace = 0;
  const idat = [];
  while (off + 8 <= buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0); height = data.readUInt32BE(4);
      depth = data[8]; ctype = data[9]; interlace = data[12];
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    off += 12 + len;
  }
  const channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[ctype];
  if (depth !== 8 || !channels || interlace) {
    throw new Error(`unsupported PNG (bit depth ${depth}, colour type ${ctype}, interlace ${interlace})`);
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const out = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const cur = out.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? out.subarray((y - 1) * stride, y * stride) : null;
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? cur[i - channels] : 0;
      const b = prev ? prev[i] : 0;
      const c = prev && i >= channels ? prev[i - channels] : 0;
      let v = line[i];
      switch (filter) {
        case 0: break;
        case 1: v += a; break;
        case 2: v += b; break;
        case 3: v += (a + b) >> 1; break;
        case 4: {
          const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
          v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
          break;
        }
        default: throw new Error(`bad PNG filter ${filter}`);
      }
      cur[i] = v & 0xff;
    }
  }
  return { width, height, channels, data: out };
}

// distinct: distinct RGB colours; dominantShare: share of the most common colour (the
// background, for a blank area ~1.0); nonBackground: share of pixels more than 24 away (max
// channel difference) from that colour; lumaStddev: standard deviation of luminance.
function pixelStats(img) {
  const { width, height, channels, data } = img;
  const counts = new Map();
  const n = width * height;
  let sum = 0, sum2 = 0;
  const rgb = (i) => channels >= 3 ? [data[i], data[i + 1], data[i + 2]] : [data[i], data[i], data[i]];
  for (let k = 0; k < n; k++) {
    const [r, g, b] = rgb(k * channels);
    const key = (r << 16) | (g << 8) | b;
    counts.set(key, (counts.get(key) || 0) + 1);
    const y = 0.299 * r + 0.587 * g + 0.114 * b;
    sum += y; sum2 += y * y;
  }
  let bg = 0, bgCount = -1;
  for (const [key, c] of counts) if (c > bgCount) { bg = key; bgCount = c; }
  const br = bg >> 16, bgG = (bg >> 8) & 0xff, bb = bg & 0xff;
  let far = 0;
  for (let k = 0; k < n; k++) {
    const [r, g, b] = rgb(k * channels);
    if (Math.max(Math.abs(r - br), Math.abs(g - bgG), Math.abs(b - bb)) > 24) far++;
  }
  const mean = sum / n;
  return {
    width, height,
    distinct: counts.size,
    dominant: '#' + bg.toString(16).padStart(6, '0'),
    dominantShare: bgCount / n,
    nonBackground: far / n,
    lumaStddev: Math.sqrt(Math.max(0, sum2 / n - mean * mean)),
  };
}

module.exports = { decodePng, pixelStats };
