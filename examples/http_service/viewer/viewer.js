// The viewer page of the tilekit example service.
//
// Served as /projects/{slug}/versions/{version}/viewer (a version), and as
// /projects/{slug}/viewer (the project's live map: GET /projects/{slug}/live, then as in 3.
// below); everything else comes from /static/ (this file, viewer.css, vendor/ = OpenSeadragon
// and Leaflet copied from npm).
//
// The page never sees a token. It is opened through a viewer link (POST .../viewer-link with
// the token: a one-time ?code=), which the service exchanges for an HttpOnly session cookie
// before it sends this page; every request below is same-origin and carries that cookie.
//
//   1. GET {base}/projects/{slug}/versions/{version}
//        -> { ..., latest_job: {id, status, progress, message, error} | null,
//                  tiles: {tiles_url, layout: "dz"|"xyz", format, width, height, levels,
//                          tile_size, overlap, manifest, ...} | null }
//   2. while latest_job is queued/running: GET {base}/jobs/{id} every second, showing the
//      percentage and message in the progress bar;
//   3. completed: GET the version again for `tiles` and show the pyramid: OpenSeadragon
//      for Deep Zoom (tiles_url + "image.dzi"), Leaflet with L.CRS.Simple for XYZ
//      (tiles_url + "{z}/{x}/{y}.{format}", max zoom = levels - 1); OpenSeadragon's IIIF tile
//      source for IIIF (tiles_url + "info.json", its id set to where it was fetched from);
//      failed/cancelled: show the job's error.
// Tile requests carry the cookie too. The user the session belongs to (X-Tilekit-User) is
// shown in the header: a link someone else minted signs the browser in as them.
//
// The page state is mirrored in data-state on #status and <body> (loading, queued, running,
// completed, failed, cancelled, empty, error) and data-tiles on <body> ("loading", then
// "loaded" once the first view is drawn), for tests and for styling.
(function () {
  'use strict';

  var POLL_MS = 1000;
  var ACTIVE = { queued: true, running: true };

  var el = {
    title: document.getElementById('title'),
    summary: document.getElementById('summary'),
    status: document.getElementById('status'),
    progress: document.getElementById('progress'),
    bar: document.getElementById('progress-bar'),
    percent: document.getElementById('progress-text'),
    message: document.getElementById('message'),
    error: document.getElementById('error'),
    viewer: document.getElementById('viewer'),
    user: document.getElementById('user'),
  };

  // For tests and the console: what the page shows (no credential is ever kept here).
  var state = { base: '', slug: '', version: '', user: '', viewer: null, kind: null };
  window.tilekitViewer = state;

  function setState(name) {
    el.status.setAttribute('data-state', name);
    document.body.setAttribute('data-state', name);
  }

  function setMessage(text) {
    el.message.textContent = text || '';
    el.message.hidden = !text;
  }

  function showError(text) {
    el.error.textContent = text;
    el.error.hidden = false;
  }

  function showProgress(job) {
    var p = Math.max(0, Math.min(100, Math.round(Number(job.progress) || 0)));
    el.progress.hidden = false;
    el.progress.setAttribute('aria-valuenow', String(p));
    el.bar.style.width = p + '%';
    el.percent.textContent = p + '%';
    setState(job.status);
    setMessage((job.status === 'queued' ? 'Queued' : 'Generating tiles') + (job.message ? ': ' + job.message : '…'));
  }

  function parseLocation() {
    var m = /^(.*)\/projects\/([^/]+)\/versions\/([^/]+)\/viewer\/?$/.exec(window.location.pathname);
    var live = /^(.*)\/projects\/([^/]+)\/viewer\/?$/.exec(window.location.pathname);
    if (!m && !live) return false;
    state.base = (m || live)[1];
    state.slug = decodeURIComponent((m || live)[2]);
    state.version = m ? decodeURIComponent(m[3]) : '';
    state.live = !m;
    return true;
  }

  function api(path) {
    var headers = { Accept: 'application/json' };
    return fetch(state.base + path, { headers: headers, cache: 'no-store', credentials: 'same-origin' }).then(function (res) {
      var who = res.headers.get('X-Tilekit-User');
      if (who && who !== state.user) {
        state.user = who;
        el.user.textContent = 'Signed in as ' + who;
        el.user.hidden = false;
      }
      return res.text().then(function (body) {
        var data = null;
        try { data = body ? JSON.parse(body) : null; } catch (e) { data = null; }
        if (!res.ok) {
          var detail = data && data.detail ? data.detail : (res.statusText || 'request failed');
          if (res.status === 401) detail += ': open this page through a new viewer link (POST ' + (state.live ? '/projects/' + encodeURIComponent(state.slug) : versionPath()) + '/viewer-link with your token)';
          var err = new Error(res.status + ' ' + (typeof detail === 'string' ? detail : JSON.stringify(detail)));
          err.status = res.status;
          throw err;
        }
        if (data === null) throw new Error('the service answered ' + path + ' with no JSON');
        return data;
      });
    });
  }

  function versionPath() {
    return '/projects/' + encodeURIComponent(state.slug) + '/versions/' + encodeURIComponent(state.version);
  }

  function fail(text) {
    setState('error');
    setMessage('');
    showError(text);
  }

  function jobFailed(job) {
    setState(job.status === 'cancelled' ? 'cancelled' : 'failed');
    el.progress.hidden = true;
    setMessage('');
    var reason = job.error || job.message || 'no reason given';
    showError('Tile generation ' + (job.status === 'cancelled' ? 'was cancelled' : 'failed') + ': ' + reason);
  }

  function start() {
    if (!parseLocation()) {
      fail('This page expects a URL like /projects/{slug}/versions/{version}/viewer ' +
           'or /projects/{slug}/viewer (the live map)');
      return;
    }
    if (state.live) { startLive(); return; }
    el.title.textContent = state.slug + ' \u00b7 version ' + state.version;
    document.title = state.slug + ' v' + state.version + ' \u2014 tilekit viewer';
    api(versionPath()).then(handleVersion, function (e) {
      fail('Could not load the version: ' + e.message);
    });
  }

  // The project's live map: GET {base}/projects/{slug}/live names the published version and
  // its committed run (the project's live pointer) with the pyramid's `tiles`.
  function startLive() {
    el.title.textContent = state.slug + ' \u00b7 live';
    document.title = state.slug + ' (live) \u2014 tilekit viewer';
    api('/projects/' + encodeURIComponent(state.slug) + '/live').then(function (live) {
      if (!live.tiles) { fail('The live pointer names no pyramid.'); return; }
      el.title.textContent = state.slug + ' \u00b7 live: version ' + live.version;
      document.body.setAttribute('data-live-version', String(live.version));
      showTiles(live.tiles);
    }, function (e) {
      if (e.status === 404) {
        setState('empty');
        setMessage('Nothing is live yet: publish a version that has tiles (POST /projects/' + state.slug +
                   '/versions/{version}/publish).');
        return;
      }
      fail('Could not load the live map: ' + e.message);
    });
  }

  function handleVersion(v) {
    var job = v.latest_job || null;
    if (job && ACTIVE[job.status]) {
      showProgress(job);
      poll(job.id);
    } else if (v.tiles) {
      showTiles(v.tiles);
    } else if (job && (job.status === 'failed' || job.status === 'cancelled')) {
      jobFailed(job);
    } else if (job && job.status === 'completed') {
      fail('The job completed but the version has no tiles.');
    } else {
      setState('empty');
      setMessage('No tiles yet: start a tile generation job for this version (POST ' + versionPath() +
                 '/generate-tiles?asset_id=...).');
    }
  }

  function poll(jobId) {
    setTimeout(function () {
      api('/jobs/' + encodeURIComponent(jobId)).then(function (job) {
        if (ACTIVE[job.status]) {
          showProgress(job);
          poll(jobId);
        } else if (job.status === 'completed') {
          showProgress(job);
          setMessage('Completed: loading the pyramid…');
          loadCompleted(job, 0);
        } else {
          jobFailed(job);
        }
      }, function (e) {
        if (e.status) { fail('Could not read the job: ' + e.message); return; }
        setMessage('Connection problem, retrying… (' + e.message + ')');   // network blip: keep polling
        poll(jobId);
      });
    }, POLL_MS);
  }

  // The version's `tiles` is the completed job's result with its public URL; ask again a few
  // times in case the catalog is updated just after the job record.
  function loadCompleted(job, attempt) {
    api(versionPath()).then(function (v) {
      if (v.tiles) { showTiles(v.tiles); return; }
      if (job.result && job.result.tiles_url) { showTiles(job.result); return; }
      if (attempt < 5) { setTimeout(function () { loadCompleted(job, attempt + 1); }, POLL_MS); return; }
      fail('The job completed but the version has no tiles.');
    }, function (e) {
      fail('Could not load the version: ' + e.message);
    });
  }

  function basename(p) {
    var s = String(p || '');
    return s.slice(s.lastIndexOf('/') + 1);
  }

  function withSlash(u) { return u.charAt(u.length - 1) === '/' ? u : u + '/'; }

  function showTiles(t) {
    if (!t.tiles_url) { fail('The version\'s tiles have no tiles_url.'); return; }
    var url = withSlash(String(t.tiles_url));
    setState('completed');
    el.progress.hidden = true;
    el.error.hidden = true;
    el.summary.textContent = t.width + ' \u00d7 ' + t.height + ' px, ' + t.levels + ' levels, ' +
      (t.layout === 'xyz' ? 'XYZ' : t.layout === 'iiif' ? 'IIIF level 0' : 'Deep Zoom') + ' ' + t.format + ' tiles of ' + t.tile_size + ' px';
    setMessage('');
    el.viewer.hidden = false;
    document.body.setAttribute('data-tiles', 'loading');
    try {
      if (t.layout === 'xyz') showXyz(t, url);
      else if (t.layout === 'dz') showDeepZoom(t, url);
      else if (t.layout === 'iiif') showIiif(t, url);
      else fail('Unknown tile layout "' + t.layout + '".');
    } catch (e) {
      fail('Could not start the viewer: ' + e.message);
    }
  }

  function tilesLoaded() { document.body.setAttribute('data-tiles', 'loaded'); }

  function showDeepZoom(t, url) {
    var manifest = basename(t.manifest) || 'image.dzi';
    state.kind = 'openseadragon';
    var viewer = OpenSeadragon({
      element: el.viewer,
      prefixUrl: '/static/vendor/openseadragon/images/',
      tileSources: url + manifest,
      drawer: 'canvas',            // plain 2D canvas: no WebGL needed (headless, old GPUs)
      showNavigator: true,
      showRotationControl: false,
      visibilityRatio: 0.5,
      crossOriginPolicy: false,
    });
    state.viewer = viewer;
    viewer.addHandler('open-failed', function (e) {
      fail('Could not open ' + url + manifest + ': ' + (e && e.message ? e.message : 'unknown error'));
    });
    viewer.addHandler('open', function () {
      var item = viewer.world.getItemAt(0);
      if (!item) return;
      if (item.getFullyLoaded()) { tilesLoaded(); return; }
      item.addOnceHandler('fully-loaded-change', function (e) { if (e.fullyLoaded) tilesLoaded(); });
    });
  }

  // IIIF level 0: info.json is fetched here and handed to OpenSeadragon as an object with its id
  // replaced by the folder it came from. The id written by tilekit is "." unless the pyramid was
  // made with a public base URL; either way this page shows the tiles where the service keeps
  // them. (OpenSeadragon joins the id and the tile's path as they are: a relative id resolves
  // against the page, which here is not the pyramid's folder.)
  function showIiif(t, url) {
    var infoUrl = url + (basename(t.manifest) || 'info.json');
    state.kind = 'openseadragon';
    fetch(infoUrl, { cache: 'no-store', credentials: 'same-origin' }).then(function (res) {
      if (!res.ok) throw new Error(res.status + ' ' + res.statusText);
      return res.json();
    }).then(function (info) {
      info.id = new URL(infoUrl, window.location.href).href.replace(/\/[^/]*$/, '');
      var viewer = OpenSeadragon({
        element: el.viewer,
        prefixUrl: '/static/vendor/openseadragon/images/',
        tileSources: info,
        drawer: 'canvas',
        showNavigator: true,
        showRotationControl: false,
        visibilityRatio: 0.5,
        crossOriginPolicy: false,
      });
      state.viewer = viewer;
      viewer.addHandler('open-failed', function (e) {
        fail('Could not open ' + infoUrl + ': ' + (e && e.message ? e.message : 'unknown error'));
      });
      viewer.addHandler('open', function () {
        var item = viewer.world.getItemAt(0);
        if (!item) return;
        if (item.getFullyLoaded()) { tilesLoaded(); return; }
        item.addOnceHandler('fully-loaded-change', function (e) { if (e.fullyLoaded) tilesLoaded(); });
      });
    }).catch(function (e) {
      fail('Could not load ' + infoUrl + ': ' + e.message);
    });
  }

  function showXyz(t, url) {
    var maxLevel = Number(t.levels) - 1;                 // zoom N shows the full-resolution image
    var W = Number(t.width), H = Number(t.height), size = Number(t.tile_size) || 256;
    var ext = t.format || 'png';
    state.kind = 'leaflet';
    var map = L.map(el.viewer, {
      crs: L.CRS.Simple,
      minZoom: 0,
      maxZoom: maxLevel + 2,
      zoomSnap: 1,
      attributionControl: false,
    });
    state.viewer = map;
    var bounds = L.latLngBounds(map.unproject([0, H], maxLevel), map.unproject([W, 0], maxLevel));
    var layer = L.tileLayer(url + '{z}/{x}/{y}.' + ext, {
      tileSize: size,
      minZoom: 0,
      maxZoom: maxLevel + 2,
      minNativeZoom: 0,
      maxNativeZoom: maxLevel,
      noWrap: true,
      bounds: bounds,
    });
    layer.once('load', tilesLoaded);
    layer.on('tileerror', function (e) {
      console.warn('tile failed to load: ' + (e.tile && e.tile.src));
    });
    layer.addTo(map);
    map.fitBounds(bounds);
    map.setMaxBounds(bounds.pad(0.5));
  }

  start();
})();
