#!/usr/bin/env bash
# tilekit's job queue vs graphile-worker, side by side, in one run, on one PostgreSQL server.
#
# usage: bench/queue.sh [-b BUILD_DIR] [-s STORE] [-u URL] [-o WORK_DIR] [-n RUNS] [-j JOBS]
#                       [-w "1 4 16"] [-L LAT_JOBS] [-I INTERVAL_MS] [-l LAT_WORKERS]
#                       [-t TIMEOUT_S] [-W IDLE_WAIT_S] [-h]
#   -b BUILD_DIR  CMake build dir holding bench/tilekit_queue_bench (built there with
#                 `cmake --build BUILD_DIR --target tilekit_queue_bench` if missing). Default:
#                 WORK_DIR/build, configured with -DTILEKIT_BUILD_BENCH=ON (Release, -O2) and
#                 the target built (an up-to-date build costs nothing).
#   -s STORE      tilekit's store: postgresql (default when the binary has it: the same server
#                 as graphile-worker, a fresh schema per run), sqlite (a fresh file per run under
#                 WORK_DIR; NOT the same storage, so its ratios are indicative only) or memory
#                 (the worker pool without storage).
#   -u URL        use this PostgreSQL server instead of starting a private one (its database
#                 must be free for the graphile_worker schema, which every run drops).
#   -o WORK_DIR   results.jsonl, report.md, logs, the private server (WORK_DIR/pg), SQLite files
#                 (env WORK; default /tmp/tilekit-queue-bench)
#   -n RUNS       repetitions; every one runs every configuration with both tools (default 5)
#   -j JOBS       jobs per throughput run (default 5000)
#   -w WORKERS    worker counts for throughput (default "1 4 16")
#   -L LAT_JOBS   jobs per latency run (default 200), -I INTERVAL_MS between them (default 20),
#   -l LAT_WORKERS idle workers during the latency run (default 4)
#   -t TIMEOUT_S  per-run cap (default 600; a killed run is reported and the script exits 1)
#   -W SECONDS    before each run wait up to SECONDS (default 30; 0 = off) for the machine to be
#                 idle (< 15% of all cores busy over 1 s); the outcome is recorded per run
#
# What is measured (no-op jobs: the handler / task returns at once):
#   throughput  JOBS jobs are enqueued in bulk before the clock starts; the clock runs from
#               starting W workers to the moment the store has recorded all JOBS as completed.
#               tilekit: jobs::worker_pool with W threads (bench/queue/queue_bench.cpp).
#               graphile-worker: run() with concurrency W (bench/queue/graphile/bench.js).
#               Figure: jobs/s = JOBS / seconds (claimed, run and completed).
#   latency     LAT_WORKERS workers idle; one job enqueued every INTERVAL_MS; latency =
#               handler start - enqueue call, same process, same monotonic clock. Both sides
#               rely on LISTEN/NOTIFY (PostgreSQL) to wake idle workers: tilekit keeps its 1 s
#               poll_interval, graphile-worker its default pollInterval, so a missed wake-up
#               shows. Figures: median and p99 (nearest rank) in ms.
# Runs are interleaved (tilekit, graphile, tilekit, graphile, ...) so that drift on this shared
# machine hits both alike; the report gives the median over RUNS of each figure, the ratio
# tilekit / graphile-worker, and the targets of the issue: throughput >= graphile-worker for
# every W, p99 pickup latency < 20 ms.
#
# Needs: bash, node >= 20 + npm (graphile-worker 0.17.3 is installed into bench/queue/graphile
# with `npm ci` when missing), PostgreSQL server binaries (scripts/postgres-server.sh),
# python3, cmake + ninja + a C++17 compiler when tilekit_queue_bench is built here.
# Exit status: 0 when every run succeeded (targets may still FAIL), 1 when a run failed,
# 2 on usage / setup errors.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
INVOCATION="bench/queue.sh$(printf ' %q' "$@")"

BUILD_DIR=
STORE=
URL=
WORK=${WORK:-/tmp/tilekit-queue-bench}
RUNS=5
JOBS=5000
WORKERS="1 4 16"
LAT_JOBS=200
INTERVAL_MS=20
LAT_WORKERS=4
TIMEOUT_S=600
IDLE_WAIT=30
help() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while getopts "b:s:u:o:n:j:w:L:I:l:t:W:h" opt; do
  case $opt in
    b) BUILD_DIR=$OPTARG ;; s) STORE=$OPTARG ;; u) URL=$OPTARG ;; o) WORK=$OPTARG ;;
    n) RUNS=$OPTARG ;; j) JOBS=$OPTARG ;; w) WORKERS=$OPTARG ;; L) LAT_JOBS=$OPTARG ;;
    I) INTERVAL_MS=$OPTARG ;; l) LAT_WORKERS=$OPTARG ;; t) TIMEOUT_S=$OPTARG ;; W) IDLE_WAIT=$OPTARG ;;
    h) help; exit 0 ;;
    *) help >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
die() { echo "queue.sh: $*" >&2; exit 2; }
[ $# -eq 0 ] || die "unexpected argument '$1' (see -h)"
for n in "$RUNS" "$JOBS" "$LAT_JOBS" "$INTERVAL_MS" "$LAT_WORKERS" "$TIMEOUT_S" $WORKERS; do
  [[ $n =~ ^[1-9][0-9]*$ ]] || die "expected a positive number, got '$n'"
done
[[ $IDLE_WAIT =~ ^[0-9]+$ ]] || die "-W expects a number of seconds"

command -v node >/dev/null && command -v npm >/dev/null || die "need node and npm"
command -v timeout >/dev/null || die "need coreutils timeout"
PY=$(command -v python3) || die "need python3"
mkdir -p "$WORK/logs" || die "cannot create $WORK"
WORK=$(cd "$WORK" && pwd)

# ---- tilekit_queue_bench --------------------------------------------------------------------
BUILD_CMD=
if [ -z "$BUILD_DIR" ]; then
  BUILD_DIR=$WORK/build
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    BUILD_CMD="cmake -S $ROOT -B $BUILD_DIR -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE='-O2 -DNDEBUG' -DTILEKIT_BUILD_TESTS=OFF -DTILEKIT_BUILD_EXAMPLES=OFF -DTILEKIT_BUILD_BENCH=ON"
    echo "queue.sh: configuring: $BUILD_CMD" >&2
    cmake -S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
      -DTILEKIT_BUILD_TESTS=OFF -DTILEKIT_BUILD_EXAMPLES=OFF -DTILEKIT_BUILD_BENCH=ON > "$WORK/logs/cmake.log" 2>&1 ||
      { tail -20 "$WORK/logs/cmake.log" >&2; die "cmake configure failed"; }
  fi
fi
BENCH=$BUILD_DIR/bench/tilekit_queue_bench
if [ "$BUILD_DIR" = "$WORK/build" ] || [ ! -x "$BENCH" ]; then
  cmake --build "$BUILD_DIR" --target tilekit_queue_bench -j2 > "$WORK/logs/build.log" 2>&1 ||
    { tail -30 "$WORK/logs/build.log" >&2; die "building tilekit_queue_bench failed"; }
  BUILD_CMD="${BUILD_CMD:+$BUILD_CMD && }cmake --build $BUILD_DIR --target tilekit_queue_bench -j2"
fi
[ -x "$BENCH" ] || die "no $BENCH"
STORES=$("$BENCH" --stores) || die "$BENCH --stores failed"
if [ -z "$STORE" ]; then
  case " $STORES " in *" postgresql "*) STORE=postgresql ;; *) STORE=sqlite ;; esac
fi
case " $STORES " in *" $STORE "*) ;; *) die "this tilekit_queue_bench has no '$STORE' store (it has: $STORES)" ;; esac
[ "$STORE" = postgresql ] ||
  echo "queue.sh: WARNING: tilekit runs on the $STORE store, graphile-worker on PostgreSQL: the ratios compare different storage" >&2

# ---- graphile-worker --------------------------------------------------------------------------
GRAPHILE=$HERE/queue/graphile
if [ ! -f "$GRAPHILE/node_modules/graphile-worker/package.json" ]; then
  (cd "$GRAPHILE" && { npm ci --no-audit --no-fund || npm install --no-audit --no-fund; }) > "$WORK/logs/npm.log" 2>&1 ||
    { tail -20 "$WORK/logs/npm.log" >&2; die "npm could not install graphile-worker"; }
fi
GRAPHILE_VERSION=$(node -p "require('$GRAPHILE/node_modules/graphile-worker/package.json').version") || die "graphile-worker not installed"

# ---- PostgreSQL ---------------------------------------------------------------------------------
PGDIR=
if [ -z "$URL" ]; then
  PGDIR=$WORK/pg
  URL=$(bash "$ROOT/scripts/postgres-server.sh" start "$PGDIR") || die "could not start PostgreSQL in $PGDIR"
  trap 'bash "$ROOT/scripts/postgres-server.sh" stop "$PGDIR"' EXIT
  trap 'exit 130' INT TERM  # so that the EXIT trap stops the server on Ctrl-C / kill too
fi
PG_VERSION=$(node -e '
  const { Client } = require(process.argv[1] + "/node_modules/pg");
  const c = new Client({ connectionString: process.argv[2] });
  c.connect().then(() => c.query("show server_version")).then((r) => { console.log(r.rows[0].server_version); return c.end(); })
   .catch((e) => { console.error(e.message); process.exit(1); });' "$GRAPHILE" "$URL") || die "cannot connect to $URL"

# ---- runs -----------------------------------------------------------------------------------------
# machine-wide busy jiffies (user+nice+system+irq+softirq+steal) and total jiffies
cpu_jiffies() { awk '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6; exit }' /proc/stat; }
# wait_idle: up to IDLE_WAIT s until < 15% of all cores are busy over 1 s; sets R_IDLE
wait_idle() {
  local t0=$SECONDS b0 t0j b1 t1j pct=0
  R_IDLE=idle
  [ "$IDLE_WAIT" -gt 0 ] || { R_IDLE=nowait; return 0; }
  while :; do
    read -r b0 t0j < <(cpu_jiffies); sleep 1; read -r b1 t1j < <(cpu_jiffies)
    pct=$(( (b1 - b0) * 100 / ( (t1j - t0j) > 0 ? (t1j - t0j) : 1 ) ))
    [ "$pct" -lt 15 ] && return 0
    if [ $((SECONDS - t0)) -ge "$IDLE_WAIT" ]; then R_IDLE="busy ${pct}% after ${IDLE_WAIT}s wait"; return 0; fi
  done
}

RESULTS=$WORK/results.jsonl
REPORT=$WORK/report.md
: > "$RESULTS"
FAILED=0
sqlite_seq=0

# run_one TOOL MODE WORKERS REP: one measurement; appends its JSON line (plus run, idle state and
# the machine's busy share during the run, which includes the PostgreSQL server) to RESULTS.
run_one() {
  local tool=$1 mode=$2 workers=$3 rep=$4 store_arg log line b0 t0 b1 t1 busy
  local -a args
  if [ "$mode" = throughput ]; then args=(--jobs "$JOBS" --workers "$workers")
  else args=(--jobs "$LAT_JOBS" --workers "$workers" --interval-ms "$INTERVAL_MS"); fi
  args+=(--timeout-s "$TIMEOUT_S")
  log=$WORK/logs/$tool-$mode-w$workers-r$rep
  local -a cmd
  if [ "$tool" = tilekit ]; then
    case $STORE in
      postgresql) store_arg=$URL ;;
      sqlite) sqlite_seq=$((sqlite_seq + 1)); store_arg=$WORK/sqlite-$$-$sqlite_seq.db; rm -f "$store_arg"* ;;
      memory) store_arg=memory ;;
    esac
    cmd=("$BENCH" "$mode" "$store_arg" "${args[@]}")
  else
    cmd=(node "$GRAPHILE/bench.js" "$mode" "$URL" "${args[@]}")
  fi
  wait_idle
  read -r b0 t0 < <(cpu_jiffies)
  timeout -s KILL $((TIMEOUT_S + 60)) "${cmd[@]}" > "$log.out" 2> "$log.err"
  local status=$?
  read -r b1 t1 < <(cpu_jiffies)
  busy=$(( (b1 - b0) * 100 / ( (t1 - t0) > 0 ? (t1 - t0) : 1 ) ))
  line=$(grep '^{' "$log.out" | tail -1)
  if [ $status -ne 0 ] || [ -z "$line" ]; then
    echo "queue.sh: FAILED (exit $status): ${cmd[*]}; see $log.err" >&2
    tail -5 "$log.err" >&2
    FAILED=1
    line="{\"tool\":\"$tool\",\"mode\":\"$mode\",\"workers\":$workers,\"failed\":true,\"exit\":$status}"
  fi
  "$PY" -c 'import json, sys
r = json.loads(sys.argv[1]); r.update(run=int(sys.argv[2]), idle=sys.argv[3], machine_busy_pct=int(sys.argv[4]))
print(json.dumps(r))' "$line" "$rep" "$R_IDLE" "$busy" >> "$RESULTS"
  printf '  %-15s %-10s W=%-3s run %s: %s\n' "$tool" "$mode" "$workers" "$rep" \
    "$(tail -1 "$RESULTS" | "$PY" -c 'import json, sys
r = json.loads(sys.stdin.read())
if r.get("failed"): print("FAILED")
elif r["mode"] == "throughput": print("%.0f jobs/s (%.3f s), %s, machine %d%% busy" % (r["jobs_per_s"], r["seconds"], r["idle"], r["machine_busy_pct"]))
else: print("median %.2f ms, p99 %.2f ms, max %.2f ms, %s" % (r["median_ms"], r["p99_ms"], r["max_ms"], r["idle"]))')" >&2
}

echo "queue.sh: tilekit ($STORE store) vs graphile-worker $GRAPHILE_VERSION on PostgreSQL $PG_VERSION; $RUNS runs; results in $RESULTS" >&2
for rep in $(seq 1 "$RUNS"); do
  echo "queue.sh: run $rep of $RUNS" >&2
  for w in $WORKERS; do
    for tool in tilekit graphile-worker; do run_one "$tool" throughput "$w" "$rep"; done
  done
  for tool in tilekit graphile-worker; do run_one "$tool" latency "$LAT_WORKERS" "$rep"; done
done

# ---- report -----------------------------------------------------------------------------------
{
  echo "## Machine"
  echo "- date: $(date -u +%FT%TZ); nproc: $(nproc); CPU: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo); $(uname -sr)"
  echo "- PostgreSQL $PG_VERSION ($([ -n "$PGDIR" ] && echo "private server, scripts/postgres-server.sh, $PGDIR" || echo "$URL")); node $(node --version); graphile-worker $GRAPHILE_VERSION"
  echo "- tilekit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$( [ "$(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l)" -gt 0 ] && echo ' (+ uncommitted changes)'); store: $STORE"
  echo
  echo "## Commands"
  echo "- invocation: \`$INVOCATION\`"
  [ -n "$BUILD_CMD" ] && echo "- build: \`$BUILD_CMD\`"
  echo "- tilekit: \`$BENCH throughput STORE --jobs $JOBS --workers W\`, \`$BENCH latency STORE --jobs $LAT_JOBS --workers $LAT_WORKERS --interval-ms $INTERVAL_MS\`"
  echo "- graphile-worker: \`node bench/queue/graphile/bench.js throughput URL --jobs $JOBS --workers W\`, \`node bench/queue/graphile/bench.js latency URL --jobs $LAT_JOBS --workers $LAT_WORKERS --interval-ms $INTERVAL_MS\`"
  echo
  "$PY" - "$RESULTS" "$STORE" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
store = sys.argv[2]
ok = [r for r in rows if not r.get("failed")]
def med(tool, mode, workers, key):
    v = [r[key] for r in ok if r["tool"] == tool and r["mode"] == mode and r["workers"] == workers]
    return (statistics.median(v), min(v), max(v), len(v)) if v else None
def fmt(m, digits):
    if not m: return "n/a"
    return f"{m[0]:.{digits}f} ({m[1]:.{digits}f}-{m[2]:.{digits}f})" if m[3] > 1 else f"{m[0]:.{digits}f}"
def ratio(a, b):
    return f"{a[0] / b[0]:.2f}" if a and b and b[0] > 0 else "n/a"
note = "" if store == "postgresql" else f" - tilekit on {store}, not PostgreSQL: indicative only"
print(f"## Throughput, no-op jobs (median of runs, min-max; ratio = tilekit / graphile-worker{note})\n")
print("| workers | jobs | runs | tilekit jobs/s | graphile-worker jobs/s | ratio | target >= 1 |")
print("|---|---|---|---|---|---|---|")
for w in sorted({r["workers"] for r in rows if r["mode"] == "throughput"}):
    t, g = med("tilekit", "throughput", w, "jobs_per_s"), med("graphile-worker", "throughput", w, "jobs_per_s")
    jobs = next(r["jobs"] for r in ok if r["mode"] == "throughput") if ok else "?"
    verdict = "n/a" if not (t and g) else ("PASS" if t[0] >= g[0] else "FAIL")
    print(f"| {w} | {jobs} | {t[3] if t else 0} / {g[3] if g else 0} | {fmt(t, 0)} | {fmt(g, 0)} | {ratio(t, g)} | {verdict} |")
wake = "LISTEN/NOTIFY" if store == "postgresql" else f"LISTEN/NOTIFY for graphile-worker, tilekit's in-process wake-up on {store}"
print(f"\n## Enqueue-to-start latency, idle workers woken by {wake} (ms; median of runs, min-max)\n")
print("| workers | jobs x interval | tilekit median | graphile median | ratio | tilekit p99 | graphile p99 | ratio | tilekit max | graphile max | target tilekit p99 < 20 ms |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for w in sorted({r["workers"] for r in rows if r["mode"] == "latency"}):
    tm, gm = med("tilekit", "latency", w, "median_ms"), med("graphile-worker", "latency", w, "median_ms")
    tp, gp = med("tilekit", "latency", w, "p99_ms"), med("graphile-worker", "latency", w, "p99_ms")
    tx, gx = med("tilekit", "latency", w, "max_ms"), med("graphile-worker", "latency", w, "max_ms")
    lat = next((r for r in ok if r["mode"] == "latency"), None)
    shape = f"{lat['jobs']} x {lat['interval_ms']} ms" if lat else "?"
    verdict = "n/a" if not tp else ("PASS" if tp[0] < 20 else "FAIL")
    print(f"| {w} | {shape} | {fmt(tm, 2)} | {fmt(gm, 2)} | {ratio(tm, gm)} | {fmt(tp, 2)} | {fmt(gp, 2)} | {ratio(tp, gp)} | {fmt(tx, 2)} | {fmt(gx, 2)} | {verdict} |")
busy = [r for r in rows if r.get("idle") not in ("idle", "nowait")]
failed = [r for r in rows if r.get("failed")]
unchecked = [r for r in rows if r.get("idle") == "nowait"]
print(f"\nRuns started on a busy machine: {len(busy)} of {len(rows)}" + (f" ({len(unchecked)} not checked: -W 0)" if unchecked else "") +
      f"; failed runs: {len(failed)}.")
EOF
} > "$REPORT"
cat "$REPORT"
exit $FAILED
