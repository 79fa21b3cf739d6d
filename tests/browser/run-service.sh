#!/usr/bin/env bash
# Runs the viewer's headless-Chromium test (run.sh / viewer.test.js) against the real
# tilekit-service instead of the mock:
#
#   tests/browser/run-service.sh SERVICE_BINARY TILEKIT_CLI_BINARY
#
# Builds nothing. Starts the service on a free loopback port with a temporary data directory,
# creates a user and token, project "browser", a draft version 1 with a job on a generated
# sample (Deep Zoom: the service's layout is per process, --layout, not per job, so XYZ is not
# tested here) and a draft version 2 whose base-map asset is a corrupt PNG (the sample's
# signature and IHDR, then junk) so that its job fails. Exits with the test's status.
#
# By default the sample is 3000x2000; its job takes ~0.3 s, less than the page's 1 s poll, so
# the script waits for both jobs to end and runs the test without VIEWER_EXPECT_PROGRESS.
#
# RUN_SERVICE_PROGRESS=1 requires the page to show the progress bar moving, on any machine, fast
# or slow, by pacing the job on what the page has shown (never on timing):
#   1. the service runs with --role serve (API only), so the jobs stay queued;
#   2. the test opens the pages; once the page shows the job queued (VIEWER_STATE_DIR marks it),
#      a worker process (the same binary, --role work) starts;
#   3. the worker runs in 20 ms steps (SIGCONT, sleep, SIGSTOP) until the job is running with a
#      percentage between 1 and 99, and stays stopped there (the API process answers the page);
#   4. once the page has shown that running percentage, the worker goes on and the job completes.
# Then, when all that passed: the version is published (POST .../publish), which switches the
# project's live pointer to its committed run; GET /projects/{slug}/live must name that run, and
# the live map page (/projects/{slug}/viewer) must draw its tiles.
# Other knobs: RUN_SERVICE_KEEP=1 keeps the work directory; VIEWER_FAILED_TEXT, CHROMIUM,
# VIEWER_OUT and VIEWER_TIMEOUT_MS go to run.sh / viewer.test.js.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
viewer="$root/examples/http_service/viewer"
log() { printf 'run-service.sh: %s\n' "$*" >&2; }

[ $# -eq 2 ] || { echo "usage: $0 SERVICE_BINARY TILEKIT_CLI_BINARY" >&2; exit 2; }
service="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
cli="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
[ -x "$service" ] || { log "not executable: $service"; exit 2; }
[ -x "$cli" ] || { log "not executable: $cli"; exit 2; }
command -v curl >/dev/null || { log "curl is required"; exit 2; }

# The viewer's vendor/ files must exist before the service serves the page (run.sh would do
# this too, but only after the jobs have started).
python3 "$viewer/fetch-vendor.py" >&2

work="$(mktemp -d "${TMPDIR:-/tmp}/tilekit-browser-service.XXXXXX")"
data="$work/data"
mkdir -p "$data"
pid="" worker="" viewer_pid=""
stop_process() {
  if [ -n "$1" ] && kill -0 "$1" 2>/dev/null; then
    kill -TERM "$1" 2>/dev/null || true
    kill -CONT "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}
cleanup() {
  stop_process "$viewer_pid"
  stop_process "$worker"
  stop_process "$pid"
  if [ "${RUN_SERVICE_KEEP:-0}" = 1 ]; then log "kept $work"; else rm -rf "$work"; fi
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

size="${RUN_SERVICE_SIZE:-3000x2000}"
progress="${RUN_SERVICE_PROGRESS:-0}"

# The browser test's own packages before anything starts (run.sh would install them later).
[ -d "$here/node_modules/playwright-core" ] || (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)

# Inputs first, so that nothing slow sits between starting the jobs and opening the browser.
"$cli" sample "$work/sample.png" --size "$size" >"$work/cli.log" 2>&1 || { cat "$work/cli.log" >&2; exit 1; }
# Corrupt PNG: the sample's signature and IHDR chunk (33 bytes, a valid header), then junk.
{ head -c 33 "$work/sample.png"; head -c 4096 /dev/zero | tr '\0' 'x'; } >"$work/corrupt.png"

token="$("$service" add-user browser-test --data-dir "$data" 2>>"$work/add-user.log")" \
  || { cat "$work/add-user.log" >&2; exit 1; }
[ -n "$token" ] || { log "add-user printed no token"; exit 1; }

"$service" --data-dir "$data" --host 127.0.0.1 --port 0 --viewer-dir "$viewer" --layout dz --format png \
  --workers 1 --tiler-threads 1 --role "$([ "$progress" = 1 ] && echo serve || echo all)" \
  >"$work/service.out" 2>"$work/service.log" &
pid=$!
port=""
for _ in $(seq 200); do
  if [ -s "$work/service.out" ]; then
    read -r word port _ <"$work/service.out" || true
    [ "$word" = listening ] && [ -n "$port" ] && break
    port=""
  fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
[ -n "$port" ] || { log "the service did not start:"; cat "$work/service.log" >&2; exit 1; }
base="http://127.0.0.1:$port"
log "service at $base (pid $pid, work dir $work)"

api() {  # api METHOD PATH [curl args...] -> body on stdout; fails on HTTP >= 400
  local method=$1 path=$2; shift 2
  local out code
  out=$(curl -sS -X "$method" -H "Authorization: Bearer $token" -w '\n%{http_code}' "$@" "$base$path")
  code=${out##*$'\n'}
  out=${out%$'\n'*}
  if [ "$code" -ge 400 ]; then log "$method $path: HTTP $code $out"; return 1; fi
  printf '%s' "$out"
}
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

slug=browser
api POST /projects -H 'Content-Type: application/json' -d "{\"slug\":\"$slug\",\"name\":\"Browser test\"}" >/dev/null
v_ok=$(api POST "/projects/$slug/versions" -H 'Content-Type: application/json' -d '{"status":"draft"}' | field number)
v_bad=$(api POST "/projects/$slug/versions" -H 'Content-Type: application/json' -d '{"status":"draft"}' | field number)
a_ok=$(api POST "/projects/$slug/assets?type=base_map&filename=sample.png" -H 'Content-Type: image/png' \
       --data-binary "@$work/sample.png" | field id)
a_bad=$(api POST "/projects/$slug/assets?type=base_map&filename=corrupt.png" -H 'Content-Type: image/png' \
        --data-binary "@$work/corrupt.png" | field id)
job_ok=$(api POST "/projects/$slug/versions/$v_ok/generate-tiles?asset_id=$a_ok" -d '' | field job_id)
job_bad=$(api POST "/projects/$slug/versions/$v_bad/generate-tiles?asset_id=$a_bad" -d '' | field job_id)
log "jobs started: $slug/$v_ok (dz) $job_ok, $slug/$v_bad (corrupt PNG) $job_bad"

job_state() { api GET "/jobs/$1" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["status"], j["progress"], j["error"] or "")'; }
if [ "$progress" != 1 ]; then
  # A 3000x2000 job takes ~0.3 s, less than the page's 1 s poll: wait for the jobs instead.
  for j in "$job_ok" "$job_bad"; do
    for _ in $(seq 1200); do
      case "$(job_state "$j")" in completed*|failed*|cancelled*) break ;; esac
      sleep 0.1
    done
  done
fi

run_viewer_test() {
  VIEWER_BASE_URL="$base" VIEWER_TOKEN="$token" \
  VIEWER_TARGETS="$slug/$v_ok:dz" VIEWER_EXPECT_PROGRESS="$progress" \
  VIEWER_FAILED_TARGET="$slug/$v_bad" VIEWER_FAILED_TEXT="${VIEWER_FAILED_TEXT:-cannot read header PNG}" \
    "$here/run.sh"
}

# Waits until the page has shown STATE (the test's mark file) while the test still runs.
wait_for_page() {  # STATE SECONDS
  local mark="$states/$slug-v$v_ok.$1"
  for _ in $(seq $(($2 * 20))); do
    [ -f "$mark" ] && { log "the page showed $1: $(cat "$mark")"; return 0; }
    kill -0 "$viewer_pid" 2>/dev/null || { log "the viewer test ended before the page showed $1"; return 1; }
    sleep 0.05
  done
  log "the page did not show $1 within $2 s"; return 1
}

# Runs the worker in 20 ms steps until the job is running at 1..99 %, and leaves it stopped there.
hold_running() {
  local state="" p
  for _ in $(seq 6000); do
    state=$(job_state "$job_ok") || return 1
    read -r -a fields <<<"$state"
    case "${fields[0]}" in
      running)
        p=${fields[1]%%.*}
        if [ "${p:-0}" -ge 1 ] && [ "$p" -le 99 ]; then log "worker held at: $state"; return 0; fi ;;
      queued) ;;
      *) log "the job ended ($state) before it could be seen running: a 20 ms step did all of it"; return 1 ;;
    esac
    kill -CONT "$worker"; sleep 0.02; kill -STOP "$worker"
  done
  log "the job was not running after 6000 steps: $state"; return 1
}

status=0
if [ "$progress" != 1 ]; then
  run_viewer_test || status=$?
else
  states="$work/states"
  VIEWER_STATE_DIR="$states" run_viewer_test & viewer_pid=$!
  paced=0
  if wait_for_page queued 300; then
    # Same data directory, so the same catalog, job store and storage; a long lease, because the
    # worker is stopped (not renewing) while the page looks at it.
    "$service" --data-dir "$data" --role work --layout dz --format png --workers 1 --tiler-threads 1 --lease-seconds 300 \
      >"$work/worker.out" 2>"$work/worker.log" &
    worker=$!
    kill -STOP "$worker"
    if hold_running && wait_for_page running 120; then paced=1; fi
    kill -CONT "$worker"
  fi
  wait "$viewer_pid" || status=$?
  viewer_pid=""
  [ "$paced" = 1 ] || { log "the job could not be paced by the page (see above)"; status=1; }
  [ "$status" = 0 ] || { log "worker log:"; tail -n 30 "$work/worker.log" >&2 || true; }
fi

# Promotion: publishing the version switches the project's live pointer to its committed run;
# the live map (/projects/{slug}/viewer) then shows it, tiles from that run.
if [ "$status" = 0 ]; then
  published=$(api POST "/projects/$slug/versions/$v_ok/publish" -d '') || status=1
  live=$(api GET "/projects/$slug/live") || status=1
  if [ "$status" = 0 ]; then
    printf '%s' "$live" | python3 -c '
import json, sys
live = json.load(sys.stdin)
assert live["version"] == int(sys.argv[1]) and live["run"].startswith("runs/" + sys.argv[2] + "."), live
assert live["tiles"]["tiles_url"].endswith("/" + live["run"]) and live["tiles"]["layout"] == "dz", live
' "$v_ok" "$job_ok" || { log "the live pointer is not the published version's run: $live"; status=1; }
  fi
  if [ "$status" = 0 ]; then
    log "published $slug/$v_ok: the live map"
    VIEWER_BASE_URL="$base" VIEWER_TOKEN="$token" VIEWER_TARGETS="$slug/live:dz" VIEWER_LIVE_VERSION="$v_ok"       VIEWER_FAILED_TARGET="" VIEWER_EXPECT_PROGRESS=0 "$here/run.sh" || status=$?
  fi
fi

for j in "$job_ok" "$job_bad"; do
  log "job $j: $(job_state "$j" || true)"
done
if [ "$status" -ne 0 ]; then log "service log:"; tail -n 30 "$work/service.log" >&2; fi
exit "$status"
