#!/usr/bin/env node
// A stand-in for the example service, for testing the viewer on its own: the same routes and
// JSON the viewer relies on, over real pyramids made by the tilekit CLI. Node's http only.
//
//   POST /projects/{slug}/versions/{version}/viewer-link  {code, viewer_url, expires_in} (bearer)
//   GET /projects/{slug}/versions/{version}/viewer?code=C  the code for a session cookie, 303 to the page
//   GET /projects/{slug}/versions/{version}/viewer   viewer/index.html (session cookie)
//   GET /static/<path>                               examples/http_service/viewer/<path>
//   GET /projects/{slug}/versions/{version}          version JSON with latest_job and tiles (bearer or cookie)
//   GET /jobs/{id}                                   job JSON (bearer or cookie)
//   GET /tiles/mp/{slug}/uploads/tiles/{version}/... the pyramid files (public, no auth)
//   GET /health
//
// Versions of project "demo" (each job's clock starts at the first GET of its version or job):
//   1: Deep Zoom (PYRAMID_DIR/dz)  queued 1.5 s, running 5 s (progress 0..100), then completed
//   2: XYZ jpg   (PYRAMID_DIR/xyz) the same timeline
//   5: Deep Zoom lossy WebP (PYRAMID_DIR/dz-webp), 6: XYZ lossless WebP (PYRAMID_DIR/xyz-webp),
//      the same timeline, when those directories exist
//   3: a job that runs for 2 s and then fails with FAILED_ERROR below
//   4: completed long ago (tiles present at once, Deep Zoom)
//   5: IIIF png  (PYRAMID_DIR/iiif, when present) the timeline of 1
//
// Usage: PYRAMID_DIR=/tmp/pyr node mock-server.js [--port 0] [--port-file FILE]
// Env: MOCK_TOKEN (default "test-token").
'use strict';
const http = require('http');
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const args = process.argv.slice(2);
function arg(name, dflt) {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
}
const PORT = Number(arg('--port', process.env.PORT || 0));
const PORT_FILE = arg('--port-file', '');
const PYRAMID_DIR = path.resolve(process.env.PYRAMID_DIR || arg('--pyramids', ''));
const VIEWER_DIR = path.resolve(__dirname, '../../examples/http_service/viewer');
const TOKEN = process.env.MOCK_TOKEN || 'test-token';
const QUEUED_MS = 1500, RUNNING_MS = 5000;
const FAILED_ERROR = 'cannot decode base map asset: not a PNG, JPEG or TIFF image';

for (const d of ['dz', 'xyz']) {
  if (!fs.existsSync(path.join(PYRAMID_DIR, d, 'pyramid.json'))) {
    console.error(`mock-server: ${path.join(PYRAMID_DIR, d, 'pyramid.json')} missing (set PYRAMID_DIR)`);
    process.exit(2);
  }
}

function loadResult(dir, prefix) {
  const m = JSON.parse(fs.readFileSync(path.join(PYRAMID_DIR, dir, 'pyramid.json'), 'utf8'));
  // What tilekit's job_result() records, plus the public URL the service adds.
  return {
    tiles_path: prefix,
    tiles_url: '/tiles/' + prefix,
    width: m.width, height: m.height, levels: m.levels, tile_count: m.tile_count,
    tile_size: m.tile_size, format: m.format, layout: m.layout, overlap: m.overlap,
    total_bytes: m.total_bytes, skipped_tiles: m.skipped_tiles,
    manifest: m.manifest ? prefix + m.manifest : '',
    metadata: prefix + 'pyramid.json',
  };
}

// slug/version -> { dir, kind: 'ok' | 'fail' | 'done', started: ms or null, job id }
const versions = {};
function addVersion(slug, number, dir, kind) {
  const prefix = `mp/${slug}/uploads/tiles/${number}/`;
  versions[`${slug}/${number}`] = {
    slug, number, dir, kind, prefix, started: kind === 'done' ? 0 : null,
    jobId: `00000000-0000-4000-8000-${String(number).padStart(12, '0')}`,
    result: dir ? loadResult(dir, prefix) : null,
  };
}
addVersion('demo', 1, 'dz', 'ok');
addVersion('demo', 2, 'xyz', 'ok');
addVersion('demo', 3, null, 'fail');
addVersion('demo', 4, 'dz', 'done');
if (fs.existsSync(path.join(PYRAMID_DIR, 'iiif', 'pyramid.json'))) addVersion('demo', 5, 'iiif', 'ok');
// WebP tiles, when run.sh made them: Deep Zoom lossy WebP and XYZ lossless WebP.
if (fs.existsSync(path.join(PYRAMID_DIR, 'dz-webp', 'pyramid.json'))) addVersion('demo', 6, 'dz-webp', 'ok');
if (fs.existsSync(path.join(PYRAMID_DIR, 'xyz-webp', 'pyramid.json'))) addVersion('demo', 7, 'xyz-webp', 'ok');
const byJob = {};
for (const v of Object.values(versions)) byJob[v.jobId] = v;

function iso(ms) { return new Date(ms).toISOString(); }

function jobOf(v) {
  const now = Date.now();
  if (v.started === null) v.started = now;
  const t = now - v.started;
  const job = {
    id: v.jobId, job_type: 'tile_generation', status: 'queued', progress: 0,
    message: 'Waiting for a worker', result: null, error: null,
    created_at: iso(v.started || now - 60000), completed_at: null,
  };
  const running = v.kind === 'fail' ? 2000 : RUNNING_MS;
  if (v.kind === 'done' || t >= QUEUED_MS + running) {
    if (v.kind === 'fail') {
      Object.assign(job, { status: 'failed', progress: 40, message: 'Tile generation failed', error: FAILED_ERROR });
    } else {
      Object.assign(job, { status: 'completed', progress: 100, message: 'Tile generation completed', result: v.result });
    }
    job.completed_at = iso(v.started + QUEUED_MS + running);
  } else if (t >= QUEUED_MS) {
    const p = Math.min(99, Math.floor(((t - QUEUED_MS) / running) * 100));
    const stage = p < 10 ? 'Downloading base map' : p < 20 ? 'Decoding image' : 'Generating tiles';
    Object.assign(job, { status: 'running', progress: p, message: `${stage} (${p}%)` });
  }
  return job;
}

function versionJson(v) {
  const job = jobOf(v);
  return {
    id: `ver-${v.number}`, project_slug: v.slug, version_number: v.number, status: 'draft',
    latest_job: { id: job.id, status: job.status, progress: job.progress, message: job.message, error: job.error },
    tiles: job.status === 'completed' ? v.result : null,
  };
}

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg',
  '.webp': 'image/webp', '.svg': 'image/svg+xml', '.json': 'application/json', '.map': 'application/json',
  '.dzi': 'application/xml', '.txt': 'text/plain; charset=utf-8',
};

function send(res, status, body, headers) {
  res.writeHead(status, Object.assign({ 'Content-Length': Buffer.byteLength(body) }, headers));
  res.end(body);
}
function json(res, status, obj) {
  send(res, status, JSON.stringify(obj), { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
}
function sendFile(res, root, rel, cache) {
  const file = path.resolve(root, rel);
  if (file !== root && !file.startsWith(root + path.sep)) return json(res, 404, { detail: 'Not found' });
  fs.readFile(file, (err, data) => {
    if (err) return json(res, 404, { detail: 'Not found' });
    send(res, 200, data, {
      'Content-Type': TYPES[path.extname(file).toLowerCase()] || 'application/octet-stream',
      'Cache-Control': cache,
    });
  });
}
// The service's sign-in (auth.hpp), simplified: one-time codes bound to a page, and sessions.
const codes = new Map();     // code -> viewer path
const sessions = new Set();  // session ids
function bearer(req) {
  return (req.headers.authorization || '') === `Bearer ${TOKEN}`;
}
function authorized(req) {
  if (bearer(req)) return true;
  if (req.headers.authorization || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
  const m = /(?:^|;\s*)tilekit_session=([^;]*)/.exec(req.headers.cookie || '');
  return !!m && sessions.has(m[1]);
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const p = decodeURIComponent(url.pathname);
  let m;
  if (req.method === 'POST' && (m = /^\/projects\/([a-z0-9-]+)\/versions\/(\d+)\/viewer-link$/.exec(p))) {
    if (!bearer(req)) return json(res, 401, { detail: 'Not authenticated' });
    const page = `/projects/${m[1]}/versions/${m[2]}/viewer`;
    const code = crypto.randomBytes(32).toString('hex');
    codes.set(code, page);
    return json(res, 201, { code, viewer_url: `${page}?code=${code}`, expires_in: 60 });
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') return json(res, 405, { detail: 'Method not allowed' });
  if (p === '/health') return json(res, 200, { status: 'ok' });
  if ((m = /^\/projects\/([a-z0-9-]+)\/versions\/(\d+)\/viewer\/?$/.exec(p))) {
    const code = url.searchParams.get('code');
    if (code !== null) {
      const page = codes.get(code);
      codes.delete(code);
      if (page !== `/projects/${m[1]}/versions/${m[2]}/viewer`) return json(res, 401, { detail: 'Invalid viewer link' });
      const session = crypto.randomBytes(32).toString('hex');
      sessions.add(session);
      return send(res, 303, '', { Location: page, 'Set-Cookie': `tilekit_session=${session}; Path=/; HttpOnly; SameSite=Lax` });
    }
    if (!authorized(req)) return json(res, 401, { detail: 'Not authenticated' });
    return sendFile(res, VIEWER_DIR, 'index.html', 'no-cache');
  }
  if ((m = /^\/static\/(.+)$/.exec(p))) return sendFile(res, VIEWER_DIR, m[1], 'no-cache');
  if ((m = /^\/tiles\/mp\/([a-z0-9-]+)\/uploads\/tiles\/(\d+)\/(.+)$/.exec(p))) {
    const v = versions[`${m[1]}/${m[2]}`];
    if (!v || !v.dir || jobOf(v).status !== 'completed') return json(res, 404, { detail: 'Not found' });
    return sendFile(res, path.join(PYRAMID_DIR, v.dir), m[3], 'public, max-age=3600');
  }
  if ((m = /^\/projects\/([a-z0-9-]+)\/versions\/(\d+)$/.exec(p))) {
    if (!authorized(req)) return json(res, 401, { detail: 'Not authenticated' });
    const v = versions[`${m[1]}/${m[2]}`];
    if (!v) return json(res, 404, { detail: m[1] === 'demo' ? 'Version not found' : 'Project not found' });
    return json(res, 200, versionJson(v));
  }
  if ((m = /^\/jobs\/([^/]+)$/.exec(p))) {
    if (!authorized(req)) return json(res, 401, { detail: 'Not authenticated' });
    const v = byJob[m[1]];
    if (!v) return json(res, 404, { detail: 'Job not found' });
    return json(res, 200, jobOf(v));
  }
  return json(res, 404, { detail: 'Not found' });
});

server.listen(PORT, '127.0.0.1', () => {
  const port = server.address().port;
  if (PORT_FILE) fs.writeFileSync(PORT_FILE, String(port));
  console.log(`mock-server: listening on http://127.0.0.1:${port} (pyramids ${PYRAMID_DIR}, token ${TOKEN})`);
});
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => { server.close(() => process.exit(0)); server.closeAllConnections(); });
