#!/usr/bin/env bash
# An IIIF level-0 pyramid made by the CLI with the default (relative) id, shown by
# scripts/static-viewer.py's page in headless Chromium from file://, twice:
#   1. the page written into the pyramid's folder: info.json is given to OpenSeadragon with its
#      id "." exactly as tilekit wrote it (OpenSeadragon joins "." and the tile path, the browser
#      resolves that against the page);
#   2. the page in another folder: the id becomes the relative path to the pyramid ("../iiif").
#   tests/browser/run-iiif-static.sh TILEKIT_CLI WORK_DIR
# Needs Debian's chromium and npm (playwright-core, OpenSeadragon); fails, never skips.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cli=$(cd "$(dirname "${1:?usage: run-iiif-static.sh TILEKIT_CLI WORK_DIR}")" && pwd)/$(basename "$1")
work=${2:?usage: run-iiif-static.sh TILEKIT_CLI WORK_DIR}
export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
[ -x "$CHROMIUM" ] || { echo "run-iiif-static.sh: no browser at $CHROMIUM (apt-get install chromium)" >&2; exit 2; }
[ -d "$here/node_modules/playwright-core" ] || (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
vendor="$root/examples/http_service/viewer/vendor/openseadragon"
python3 "$root/examples/http_service/viewer/fetch-vendor.py"

rm -rf "$work"
mkdir -p "$work"
fail() { echo "run-iiif-static.sh: $*" >&2; exit 1; }
"$cli" sample "$work/sample.png" --size 2000x1300 >"$work/cli.log" 2>&1 || { cat "$work/cli.log" >&2; fail "sample failed"; }
"$cli" tile "$work/sample.png" "$work/iiif" --layout iiif --tile-size 256 --format jpg >>"$work/cli.log" 2>&1 ||
    { cat "$work/cli.log" >&2; fail "tile failed"; }
python3 - "$work/iiif" <<'PY' || fail "info.json is not what the page relies on"
import json, pathlib, sys
d = pathlib.Path(sys.argv[1])
info = json.loads((d / "info.json").read_text())
assert info["id"] == "." and info["type"] == "ImageService3" and info["profile"] == "level0", info
assert info["tiles"][0]["scaleFactors"] == [1, 2, 4, 8], info["tiles"]
s = info["sizes"][0]
assert (d / "full" / f'{s["width"]},{s["height"]}' / "0" / "default.jpg").is_file(), "no full/ image"
PY

status=0
python3 "$root/scripts/static-viewer.py" --tiles "$work/iiif" --out "$work/iiif/viewer.html" --openseadragon "$vendor" \
    --title "IIIF, page beside info.json" >/dev/null
grep -q '"id": "\."' "$work/iiif/viewer.html" || fail "the page in the pyramid's folder does not keep id \".\""
echo "run-iiif-static.sh: page beside info.json (id \".\")"
STATIC_VIEWER_PAGE="$work/iiif/viewer.html" VIEWER_OUT="$work/screenshots-beside" node "$here/static-viewer.test.js" || status=1

python3 "$root/scripts/static-viewer.py" --tiles "$work/iiif" --out "$work/page/viewer.html" --openseadragon "$vendor" \
    --title "IIIF, page in another folder" >/dev/null
grep -q '"id": "\.\./iiif"' "$work/page/viewer.html" || fail "the page in another folder does not use id \"../iiif\""
echo "run-iiif-static.sh: page in another folder (id \"../iiif\")"
STATIC_VIEWER_PAGE="$work/page/viewer.html" VIEWER_OUT="$work/screenshots-other" node "$here/static-viewer.test.js" || status=1
exit $status
