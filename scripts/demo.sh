#!/usr/bin/env bash
# The main job end to end, with embedded defaults and no account: installs what it needs,
# builds the CLI, generates a sample map, tiles it to demo-output/ (Deep Zoom and XYZ) and says
# how to view the result.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTILEKIT_BUILD_EXAMPLES=ON >/dev/null
cmake --build build --target tilekit_cli

cli=build/examples/tilekit
out=demo-output
rm -rf "$out"
mkdir -p "$out"
"$cli" sample "$out/sample.png" --size 6000x4000
"$cli" tile "$out/sample.png" "$out/dz" --layout dz --format png > "$out/dz.json"
"$cli" tile "$out/sample.png" "$out/xyz" --layout xyz --format jpg --quality 85 > "$out/xyz.json"

cat <<MSG

Done. Two pyramids of $out/sample.png (6000x4000):
  $out/dz/image.dzi + $out/dz/image_files/{level}/{col}_{row}.png   Deep Zoom (OpenSeadragon)
  $out/xyz/{z}/{x}/{y}.jpg                                           XYZ (Leaflet, L.CRS.Simple)
Each has a pyramid.json, written last: its presence means the pyramid is complete.
$(for f in dz xyz; do python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print("  %-4s %dx%d, %d levels, %d tiles, %d bytes" % (sys.argv[2], m["width"], m["height"], m["levels"], m["tile_count"], m["total_bytes"]))' "$out/$f.json" "$f"; done)
To view: serve the folder (python3 -m http.server -d $out 8000) and point OpenSeadragon at
/dz/image.dzi, or Leaflet at /xyz/{z}/{x}/{y}.jpg with the L.CRS.Simple snippet in README.md.
MSG
