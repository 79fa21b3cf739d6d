#!/usr/bin/env bash
# Plain static hosting of published pyramids: the store's files served as they are (python's
# http.server standing in for a public bucket at a domain's root), and viewer pages at another
# path that open each version's pyramid by its stable address, in headless Chromium:
#   Deep Zoom  OpenSeadragon opens {version}/image.dzi; its Url attribute sends the tile requests
#              to the committed run (runs/{job}.{attempt}/image_files/...)
#   IIIF       OpenSeadragon opens {version}/info.json; its id is the committed run's address
#   XYZ        Leaflet takes {version}/pyramid.json's tile_url_template (runs/... /{z}/{x}/{y}.png)
# Each version is tiled twice (tilekit jobs run), so the stable manifests must name the second,
# committed run, and no tile of the replaced one may be requested.
#   tests/browser/run-stable-manifests.sh TILEKIT_CLI WORK_DIR
# Needs Debian's chromium and npm (playwright-core) and the viewer's vendor files; fails, never skips.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cli=$(cd "$(dirname "${1:?usage: run-stable-manifests.sh TILEKIT_CLI WORK_DIR}")" && pwd)/$(basename "$1")
work=${2:?usage: run-stable-manifests.sh TILEKIT_CLI WORK_DIR}
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] || { echo "run-stable-manifests.sh: no browser at $CHROMIUM (apt-get install chromium)" >&2; exit 2; }
[ -d "$here/node_modules/playwright-core" ] || (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
python3 "$root/examples/http_service/viewer/fetch-vendor.py"

rm -rf "$work"
mkdir -p "$work"
fail() { echo "run-stable-manifests.sh: $*" >&2; exit 1; }
data="$work/data"
storage="$data/storage"
"$cli" sample "$work/sample.png" --size 1800x1200 >"$work/cli.log" 2>&1 || { cat "$work/cli.log" >&2; fail "sample failed"; }
for layout in dz iiif xyz; do
    for round in 1 2; do
        "$cli" jobs run --file "$work/sample.png" --project "static-$layout" --version 1 --create-draft --layout "$layout" \
            --format jpg --data-dir "$data" --gc-grace-seconds 600 >"$work/run-$layout-$round.json" 2>>"$work/cli.log" ||
            { cat "$work/cli.log" >&2; fail "tilekit jobs run ($layout, round $round) failed"; }
    done
done
[ -d "$storage" ] || fail "no store at $storage"

# The pages, at a path of their own: nothing about them is relative to a pyramid.
pages="$storage/_pages"
mkdir -p "$pages"
cp -r "$root/examples/http_service/viewer/vendor" "$pages/vendor"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind 127.0.0.1 --directory "$storage" "$port" >"$work/http.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$port/_pages/vendor/leaflet/leaflet.js" >/dev/null 2>&1 && break; sleep 0.1; done

STABLE_BASE="http://127.0.0.1:$port" STABLE_STORAGE="$storage" STABLE_PAGES="$pages" VIEWER_OUT="$work/screenshots" \
    node "$here/stable-manifests.test.js"
