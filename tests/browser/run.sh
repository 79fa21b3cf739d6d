#!/usr/bin/env bash
# Runs the viewer's headless-Chromium test.
#
#   tests/browser/run.sh                      # against the mock service (built here, see README.md)
#   VIEWER_BASE_URL=http://127.0.0.1:8080 VIEWER_TOKEN=... VIEWER_SLUG=demo VIEWER_VERSION=1 \
#     tests/browser/run.sh                    # against a running service
#
# Against a real service: VIEWER_SLUG + VIEWER_VERSION (or VIEWER_TARGETS="slug/v[:dz|xyz] ...")
# name versions whose latest job completes (or already has); VIEWER_EXPECT_PROGRESS=1 also
# requires the progress bar to be seen running; VIEWER_FAILED_TARGET=slug/v checks a failed job.
# Other knobs are listed at the top of viewer.test.js. Screenshots go to $VIEWER_OUT
# (default tests/browser/out).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
viewer="$root/examples/http_service/viewer"
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"

log() { printf 'run.sh: %s\n' "$*" >&2; }

if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing Debian's chromium"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
  else
    log "no browser at $CHROMIUM: install Debian's chromium (apt-get install chromium) or set CHROMIUM"; exit 2
  fi
fi

npm_install() {  # dir
  if [ -f "$1/package-lock.json" ]; then (cd "$1" && npm ci --no-audit --no-fund --loglevel=error)
  else (cd "$1" && npm install --no-audit --no-fund --loglevel=error); fi
}
[ -d "$here/node_modules/playwright-core" ] || npm_install "$here"
# The viewer's vendor/ (OpenSeadragon, Leaflet) comes from the npm registry; the service serves it too.
python3 "$viewer/fetch-vendor.py"

if [ -n "${VIEWER_BASE_URL:-}" ]; then
  : "${VIEWER_TOKEN:?set VIEWER_TOKEN to a bearer token of the service}"
  if [ -z "${VIEWER_TARGETS:-}" ]; then
    : "${VIEWER_SLUG:?set VIEWER_SLUG and VIEWER_VERSION (or VIEWER_TARGETS)}"
    : "${VIEWER_VERSION:?set VIEWER_VERSION}"
    export VIEWER_TARGETS="$VIEWER_SLUG/$VIEWER_VERSION"
  fi
  export VIEWER_TOKEN VIEWER_BASE_URL
  log "testing the viewer of $VIEWER_BASE_URL: $VIEWER_TARGETS"
  exec node "$here/viewer.test.js"
fi

# --- the mock: real pyramids from the tilekit CLI, served by mock-server.js ---
own_work=0
if [ -n "${VIEWER_WORK:-}" ]; then work="$VIEWER_WORK"
else work="$(mktemp -d "${TMPDIR:-/tmp}/tilekit-browser.XXXXXX")"; own_work=1; fi
mkdir -p "$work"
cli="${TILEKIT_CLI:-}"
if [ -z "$cli" ]; then
  cli="$work/tilekit"
  if [ ! -x "$cli" ]; then
    log "building the tilekit CLI into $cli"
    g++ -std=c++17 -O2 -I"$root/include" -isystem /usr/include/stb "$root/examples/cli/tilekit_cli.cpp" -o "$cli" \
      -lstb -ldeflate -lturbojpeg -lpng -ljpeg -lwebp -lcrypto -lcurl -pthread
  fi
fi
if [ ! -f "$work/pyramids/xyz-webp/pyramid.json" ]; then
  log "generating the sample image and both pyramids in $work/pyramids"
  rm -rf "$work/pyramids"; mkdir -p "$work/pyramids"
  "$cli" sample "$work/sample.png" --size 3000x2000 >>"$work/cli.log" 2>&1 || { cat "$work/cli.log" >&2; exit 1; }
  "$cli" tile "$work/sample.png" "$work/pyramids/dz" --layout dz >>"$work/cli.log" 2>&1 || { cat "$work/cli.log" >&2; exit 1; }
  "$cli" tile "$work/sample.png" "$work/pyramids/xyz" --layout xyz --format jpg >>"$work/cli.log" 2>&1 || { cat "$work/cli.log" >&2; exit 1; }
  "$cli" tile "$work/sample.png" "$work/pyramids/dz-webp" --layout dz --format webp >>"$work/cli.log" 2>&1 || { cat "$work/cli.log" >&2; exit 1; }
  "$cli" tile "$work/sample.png" "$work/pyramids/xyz-webp" --layout xyz --format webp --lossless >>"$work/cli.log" 2>&1 || { cat "$work/cli.log" >&2; exit 1; }
fi
if [ ! -f "$work/pyramids/iiif/pyramid.json" ]; then
  # PNG tiles: OpenSeadragon asks for default.jpg unless info.json's preferredFormats says png.
  "$cli" tile "$work/sample.png" "$work/pyramids/iiif" --layout iiif --format png >>"$work/cli.log" 2>&1 || { cat "$work/cli.log" >&2; exit 1; }
fi

rm -f "$work/port"
PYRAMID_DIR="$work/pyramids" node "$here/mock-server.js" --port 0 --port-file "$work/port" >"$work/mock.log" 2>&1 &
mock_pid=$!
cleanup() {
  kill "$mock_pid" 2>/dev/null || true; wait "$mock_pid" 2>/dev/null || true
  [ "$own_work" = 1 ] && rm -rf "$work"
  return 0
}
trap cleanup EXIT
for _ in $(seq 100); do [ -s "$work/port" ] && break; kill -0 "$mock_pid" 2>/dev/null || break; sleep 0.1; done
[ -s "$work/port" ] || { log "the mock did not start:"; cat "$work/mock.log" >&2; exit 1; }

export VIEWER_BASE_URL="http://127.0.0.1:$(cat "$work/port")"
export VIEWER_TOKEN="${MOCK_TOKEN:-test-token}"
export VIEWER_TARGETS="demo/1:dz demo/2:xyz demo/5:iiif demo/6:dz:webp demo/7:xyz:webp"
export VIEWER_EXPECT_PROGRESS=1
export VIEWER_FAILED_TARGET="demo/3"
export VIEWER_FAILED_TEXT="cannot decode base map asset"
log "mock at $VIEWER_BASE_URL (work dir $work, removed at exit unless VIEWER_WORK is set)"
node "$here/viewer.test.js"
