#!/usr/bin/env bash
# scripts/demo.sh's job and page, then the page in headless Chromium from file://:
#   tests/browser/run-demo.sh TILEKIT_CLI WORK_DIR
# Runs the real demo script with DEMO_CLI (no install, no build) and a smaller map, checks its
# output (the job's result JSON, the pyramid, the "how to look" lines), then opens
# WORK_DIR/demo-output/viewer.html with static-viewer.test.js. Needs Debian's chromium and npm
# (playwright-core, OpenSeadragon); fails, never skips, when they are missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cli=$(cd "$(dirname "${1:?usage: run-demo.sh TILEKIT_CLI WORK_DIR}")" && pwd)/$(basename "$1")
work=${2:?usage: run-demo.sh TILEKIT_CLI WORK_DIR}
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] || { echo "run-demo.sh: no browser at $CHROMIUM (apt-get install chromium)" >&2; exit 2; }
[ -d "$here/node_modules/playwright-core" ] || (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)

rm -rf "$work"
mkdir -p "$work"
out="$work/demo-output"
DEMO_CLI="$cli" DEMO_OUT="$out" DEMO_SIZE=3000x2000 bash "$root/scripts/demo.sh" >"$work/demo.log" 2>&1 ||
    { cat "$work/demo.log" >&2; echo "run-demo.sh: demo.sh failed" >&2; exit 1; }
fail() { cat "$work/demo.log" >&2; echo "run-demo.sh: $*" >&2; exit 1; }
python3 - "$out" <<'PY' || fail "the result or the pyramid is wrong"
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
r = json.loads((out / "result.json").read_text())
assert r["tiles_path"].startswith("mp/demo/uploads/tiles/1/runs/") and r["width"] == 3000 and r["height"] == 2000, r
tiles = out / "storage" / r["tiles_path"]
assert (tiles / "image.dzi").is_file() and (tiles / "pyramid.json").is_file(), "no manifest"
assert len(list((tiles / "image_files").rglob("*.png"))) == r["tile_count"], "tile count"
PY
grep -q 'job [0-9a-f]\{8\}: completed 100%' "$work/demo.log" || fail "no progress line for the completed job"
grep -q "open file://$out/viewer.html" "$work/demo.log" || grep -q "open file://.*viewer.html" "$work/demo.log" || fail "no file:// line"
grep -q "python3 -m http.server -d $out 8000" "$work/demo.log" || fail "no http.server line"
echo "run-demo.sh: demo.sh ok ($(grep -o 'Done in [0-9]* s' "$work/demo.log"))"
STATIC_VIEWER_PAGE="$out/viewer.html" VIEWER_OUT="$work/screenshots" node "$here/static-viewer.test.js"
