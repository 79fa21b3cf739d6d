#!/usr/bin/env bash
# README's first command: the tile-generation job end to end, with the embedded defaults (SQLite
# job store, filesystem storage, no account). Installs what it needs (install-deps.sh --demo),
# builds the CLI, generates a sample base map, and then, under demo-output/ (the data directory:
# catalog.db, jobs.db, storage/):
#   1. registers project `demo` with draft version 1 in the catalog and stores the base map as the
#      project's upload (storage/mp/demo/uploads/assets/<id>.png),
#   2. runs the tile-generation job through the SQLite job store, showing its stages (a bar on a
#      terminal, plain lines otherwise), and prints the job's result JSON,
#   3. writes a static viewer page (OpenSeadragon from npm) beside the tiles, and says how to open it.
# All of it is one command, `tilekit jobs run`; it exits when the job has ended.
#   DEMO_SIZE=WxH (default 6000x4000)   DEMO_OUT=DIR (default demo-output)   DEMO_BUILD=DIR (default build-demo)
#   DEMO_CLI=PATH: use this tilekit binary, skip installing and building (tests/browser/run-demo.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

if [ -n "${DEMO_CLI:-}" ]; then
    cli=$DEMO_CLI
else
    bash scripts/install-deps.sh --demo
    build=${DEMO_BUILD:-build-demo}
    echo "demo: building the tilekit CLI in $build/"
    cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTILEKIT_BUILD_EXAMPLES=ON -DTILEKIT_BUILD_TESTS=OFF >/dev/null
    cmake --build "$build" --target tilekit_cli
    cli=$build/examples/tilekit
fi
"$cli" jobs --help >/dev/null || { echo "demo: $cli was built without \`tilekit jobs\` (needs libsqlite3-dev)" >&2; exit 1; }

out=${DEMO_OUT:-demo-output}
rm -rf "$out"
mkdir -p "$out"
# The service's settings: the same TILEKIT_* variables and defaults as tilekit-service.
export TILEKIT_DATA_DIR=$out
unset TILEKIT_JOBS_DB TILEKIT_CATALOG_DB TILEKIT_STORAGE_ROOT TILEKIT_S3_BUCKET TILEKIT_PREFIX_TEMPLATE TILEKIT_LAYOUT
"$cli" sample "$out/basemap.png" --size "${DEMO_SIZE:-6000x4000}"

echo "demo: the tile-generation job (project demo, draft version 1) through the SQLite job store $out/jobs.db"
"$cli" jobs run --file "$out/basemap.png" --project demo --version 1 --create-draft | tee "$out/result.json"

tiles=$out/storage/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tiles_path"])' "$out/result.json")
vendor=examples/http_service/viewer/vendor/openseadragon
job_id=$("$cli" jobs list --limit 1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
cat <<MSG

Done in $((SECONDS - started)) s. The job went from queued to completed; its record:
  $cli jobs show $job_id --data-dir $out
The pyramid: $tiles (image.dzi + image_files/, pyramid.json written last)
MSG

# The viewer page needs OpenSeadragon: the tarball pinned in the viewer's package-lock.json,
# straight from the npm registry with its integrity checked (python3 only, no Node.js). The job
# is done either way; without the registry (no network, a proxy whose certificate this machine
# does not trust) the demo says so and how to finish, and still exits 0.
if ! python3 examples/http_service/viewer/fetch-vendor.py; then
    cat <<MSG >&2

demo: the viewer page was not written: OpenSeadragon could not be fetched from the npm registry
(above). Once the registry is reachable:
  python3 examples/http_service/viewer/fetch-vendor.py
  python3 scripts/static-viewer.py --tiles $tiles --out $out/viewer.html --openseadragon $vendor
MSG
    exit 0
fi
page=$(python3 scripts/static-viewer.py --tiles "$tiles" --out "$out/viewer.html" --openseadragon "$vendor" \
    --title "tilekit demo: project demo, version 1")
cat <<MSG
Look at the map:
  open file://$page
  or: python3 -m http.server -d $out 8000   then http://127.0.0.1:8000/viewer.html
MSG
