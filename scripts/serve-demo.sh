#!/usr/bin/env bash
# One command from a fresh checkout to a map in the browser: installs the Debian packages,
# builds tilekit-service and the tilekit CLI, starts the service on 127.0.0.1 (SQLite catalog and
# job store, tiles on the filesystem, all under a data directory), creates a demo user, project,
# draft version and base-map asset from a generated sample image, runs a tile-generation job,
# and prints the viewer URL. The service then keeps running in the foreground (Ctrl-C stops it).
#
#   scripts/serve-demo.sh [--port N] [--data-dir DIR] [--build-dir DIR] [--size WxH] [--background]
#
# Environment: PORT, TILEKIT_DEMO_DATA, TILEKIT_DEMO_BUILD, TILEKIT_DEMO_SIZE (same meaning).
# The viewer URL carries a one-time code (valid 60 s, for that page only), never the token: the
# service exchanges it for an HttpOnly session cookie and drops it from the address bar. The
# script prints how to mint a new link.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
port=${PORT:-8080}
data=${TILEKIT_DEMO_DATA:-$root/demo-data}
build=${TILEKIT_DEMO_BUILD:-$root/build/serve-demo}
size=${TILEKIT_DEMO_SIZE:-4096x3072}
background=0
while [ $# -gt 0 ]; do
    case $1 in
        --port) port=$2; shift 2 ;;
        --data-dir) data=$2; shift 2 ;;
        --build-dir) build=$2; shift 2 ;;
        --size) size=$2; shift 2 ;;
        --background) background=1; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "serve-demo: unknown option '$1'" >&2; exit 2 ;;
    esac
done

say() { printf 'serve-demo: %s\n' "$*" >&2; }

# 1. Dependencies (install-deps.sh does nothing when everything is there; it installs Boost 1.81
#    for the service's HTTP layer).
"$root/scripts/install-deps.sh"

# 2. Build.
say "building in $build"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTILEKIT_BUILD_TESTS=OFF -DTILEKIT_BUILD_EXAMPLES=ON >/dev/null
cmake --build "$build" --target tilekit_service tilekit_cli
service=$build/examples/tilekit-service
cli=$build/examples/tilekit

# 3. The demo user (its token is kept in the data directory so reruns reuse it).
mkdir -p "$data"
if [ ! -s "$data/demo-token" ]; then
    "$service" add-user demo --data-dir "$data" > "$data/demo-token.tmp"
    mv "$data/demo-token.tmp" "$data/demo-token"
    chmod 600 "$data/demo-token"
fi
token=$(cat "$data/demo-token")

# 4. Start the service.
say "starting tilekit-service on 127.0.0.1:$port (data in $data, log in $data/service.log)"
"$service" --data-dir "$data" --host 127.0.0.1 --port "$port" >/dev/null 2>>"$data/service.log" &
pid=$!
echo "$pid" > "$data/service.pid"
stop_service() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
trap 'stop_service; exit 130' INT TERM
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    kill -0 "$pid" 2>/dev/null || { say "the service did not start; see $data/service.log"; tail -5 "$data/service.log" >&2; exit 1; }
    sleep 0.1
done

# 5. Project, draft version, sample image, base-map asset, job.
api() {  # api METHOD PATH [curl args...] -> body on stdout; fails on HTTP >= 400 (except 409)
    local method=$1 path=$2; shift 2
    local out code
    out=$(curl -sS -X "$method" -H "Authorization: Bearer $token" -w '\n%{http_code}' "$@" "http://127.0.0.1:$port$path")
    code=${out##*$'\n'}
    out=${out%$'\n'*}
    if [ "$code" -ge 400 ] && [ "$code" != 409 ]; then say "$method $path: HTTP $code $out"; return 1; fi
    printf '%s' "$out"
}
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

api POST /projects -H 'Content-Type: application/json' -d '{"slug":"demo","name":"Demo map"}' >/dev/null
version=$(api POST /projects/demo/versions -H 'Content-Type: application/json' -d '{"status":"draft"}' | field number)
sample=$data/sample-$size.png
[ -s "$sample" ] || "$cli" sample "$sample" --size "$size"
asset=$(api POST "/projects/demo/assets?type=base_map&filename=sample.png" -H 'Content-Type: image/png' \
        --data-binary "@$sample" | field id)
job=$(api POST "/projects/demo/versions/$version/generate-tiles?asset_id=$asset" -d '' | field job_id)
say "job $job started for demo version $version"

# 6. Wait for it, showing progress.
while :; do
    state=$(api GET "/jobs/$job" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["status"], j["progress"], j["message"] or "", "|", j["error"] or "")')
    printf '\r  %-70s' "${state% |*}" >&2
    case $state in completed*|failed*|cancelled*) echo >&2; break ;; esac
    sleep 0.3
done
case $state in completed*) ;; *) say "the job did not complete: ${state#*| }"; stop_service; exit 1 ;; esac

link_path="/projects/demo/versions/$version/viewer-link"
url="http://127.0.0.1:$port$(api POST "$link_path" | field viewer_url)"
echo
echo "Viewer (open within 60 s; the link works once): $url"
echo "A new link: curl -X POST -H \"Authorization: Bearer \$(cat $data/demo-token)\" http://127.0.0.1:$port$link_path"
echo
if [ "$background" -eq 1 ]; then
    trap - INT TERM
    say "service running in the background (pid $pid); stop it with: kill $pid"
    exit 0
fi
say "service running (pid $pid); Ctrl-C stops it"
wait "$pid"
