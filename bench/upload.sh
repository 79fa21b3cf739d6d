#!/usr/bin/env bash
# Upload benchmark: tilekit's S3 sink vs awscli vs rclone through the same local S3 peer
# (tests/s3peer: s3rver behind the SigV4-verifying proxy), plus tilekit against a trivial
# loopback PUT server (bench/fast_put_server.cpp) for tilekit's own ceiling, a concurrency
# sweep, and the end-to-end check tile+upload vs tile alone / upload alone.
#
# usage: bench/upload.sh [-b TILEKIT] [-o WORK_DIR] [-n FILES] [-i IMAGE] [-r RUNS]
#                        [-C "8 16 32 64"] [-s SECTIONS] [-t TIMEOUT_S] [-W IDLE_WAIT_S] [-k] [-h]
#   -b TILEKIT   tilekit CLI (env TILEKIT). Default: built with g++ into WORK_DIR/.build
#                (the command is printed in the report)
#   -o WORK_DIR  data sets, logs, results.tsv, report.md (default /tmp/tilekit-upload-bench)
#   -n FILES     synthetic data set: FILES files of 10-30 KiB (default 5000)
#   -i IMAGE     image whose pyramid is data set 2 and the end-to-end input
#                (default /work/images/map-16384-rgb.png, else map-8192-rgba.png, else an
#                8192x8192 `tilekit sample` image)
#   -r RUNS      timed runs per tool per data set in the comparison, interleaved
#                (tilekit, awscli, rclone, tilekit, ...); medians are reported (default 1)
#   -C LIST      tilekit --concurrency values for the sweep (default "8 16 32 64"; "" = skip)
#   -s SECTIONS  comma list of compare,sweep,e2e (default all three)
#   -t TIMEOUT_S per-run cap, the run is killed and reported (default 600)
#   -W SECONDS   wait up to SECONDS before each run for < 15% machine load (default 30; 0 = off)
#   -k           keep the uploaded objects in the peer (default: each prefix is deleted from
#                the peer's data dir after it was verified, so the bucket does not grow)
#
# Needs: bash, coreutils, GNU time (/usr/bin/time), g++, libcurl/OpenSSL dev files (tilekit),
# python3 (stdlib only, for verification and the report), awscli (`aws`), rclone (Debian
# package; installed with apt-get if missing), node + python3-botocore (the peer, see
# tests/s3peer/README.md). See bench/README.md, section "Upload benchmark".
#
# Exit status: 0 if every run succeeded and every object arrived (targets may still FAIL),
# 1 if a run failed or objects are missing/wrong, 2 on setup errors.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${WORK:-/tmp/tilekit-upload-bench}
TILEKIT=${TILEKIT:-}
NFILES=5000
IMAGE=""
RUNS=1
SWEEP="8 16 32 64"
SECTIONS="compare,sweep,e2e"
TIMEOUT_S=600
IDLE_WAIT=30
KEEP=0

usage() { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }
die() { echo "upload.sh: $*" >&2; exit 2; }
while getopts "b:o:n:i:r:C:s:t:W:kh" opt; do
  case $opt in
    b) TILEKIT=$OPTARG ;;
    o) WORK=$OPTARG ;;
    n) NFILES=$OPTARG ;;
    i) IMAGE=$OPTARG ;;
    r) RUNS=$OPTARG ;;
    C) SWEEP=$OPTARG ;;
    s) SECTIONS=$OPTARG ;;
    t) TIMEOUT_S=$OPTARG ;;
    W) IDLE_WAIT=$OPTARG ;;
    k) KEEP=1 ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
[[ $NFILES =~ ^[0-9]+$ && $NFILES -gt 0 ]] || die "-n needs a positive number"
[[ $RUNS =~ ^[0-9]+$ && $RUNS -gt 0 ]] || die "-r needs a positive number"
has_section() { [[ ",$SECTIONS," == *",$1,"* ]]; }

mkdir -p "$WORK"/{.build,data,logs} || die "cannot create $WORK"
WORK=$(cd "$WORK" && pwd)
RESULTS=$WORK/results.tsv
REPORT=$WORK/report.md
GTIME=/usr/bin/time
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)
T_START=$SECONDS

# ---- tools ----------------------------------------------------------------------------------
[ -x "$GTIME" ] || die "GNU time not found at $GTIME (apt-get install time)"
PY=$(command -v python3) || die "python3 not found"
if ! command -v rclone >/dev/null 2>&1; then
  echo "# rclone missing: apt-get install -y rclone" >&2
  apt-get install -y --no-install-recommends rclone >&2 || die "cannot install rclone"
fi
RCLONE=$(command -v rclone)
AWS=$(command -v aws) || die "aws (awscli) not found on PATH"
# pyenv puts a bash shim on PATH that re-execs pyenv; time the real entry point instead.
if command -v pyenv >/dev/null 2>&1 && real=$(pyenv which aws 2>/dev/null) && [ -x "$real" ]; then AWS=$real; fi

if [ -z "$TILEKIT" ]; then
  TILEKIT=$WORK/.build/tilekit
  BUILD_CMD="g++ -std=c++17 -O2 -DNDEBUG -I$ROOT/include -isystem /usr/include/stb $ROOT/examples/cli/tilekit_cli.cpp -o $TILEKIT -lstb -ldeflate -lturbojpeg -lpng -ljpeg -lwebp -lcrypto -lcurl -pthread"
  echo "# building tilekit: $BUILD_CMD" >&2
  $BUILD_CMD || die "building tilekit failed"
  TILEKIT_ORIGIN="built by upload.sh: $BUILD_CMD"
else
  [ -x "$TILEKIT" ] || die "tilekit binary '$TILEKIT' is not executable"
  TILEKIT=$(cd "$(dirname "$TILEKIT")" && pwd)/$(basename "$TILEKIT")
  TILEKIT_ORIGIN="given with -b / TILEKIT"
fi
FAST=$WORK/.build/fast_put_server
FAST_BUILD="g++ -std=c++17 -O2 -DNDEBUG $ROOT/bench/fast_put_server.cpp -o $FAST"
$FAST_BUILD || die "building fast_put_server failed"

# ---- data sets ------------------------------------------------------------------------------
# 1: NFILES files {z}/{x}_{y}.png (z 10..13), 10-30 KiB: PNG magic + seeded pseudo-random bytes.
FILES_DIR=$WORK/data/files-$NFILES
if [ ! -f "$WORK/data/files-$NFILES.done" ]; then
  rm -rf "$FILES_DIR"
  echo "# generating $NFILES files into $FILES_DIR" >&2
  "$PY" - "$FILES_DIR" "$NFILES" <<'EOF' || die "generating the files failed"
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(20261129)
magic = b"\x89PNG\r\n\x1a\n"
for i in range(n):
    z = 10 + i % 4
    x, y = divmod(i // 4, 64)
    d = os.path.join(root, str(z))
    os.makedirs(d, exist_ok=True)
    size = rng.randint(10 * 1024, 30 * 1024)
    with open(os.path.join(d, f"{x}_{y}.png"), "wb") as f:
        f.write(magic + rng.randbytes(size - len(magic)))
EOF
  touch "$WORK/data/files-$NFILES.done"   # the marker lives outside the uploaded tree
fi

# 2: the pyramid of IMAGE (PNG tiles 256 px, overlap 0), tiled to disk once, untimed.
if [ -z "$IMAGE" ]; then
  for c in /work/images/map-16384-rgb.png /work/images/map-8192-rgba.png; do
    [ -f "$c" ] && { IMAGE=$c; break; }
  done
fi
if [ -z "$IMAGE" ]; then
  IMAGE=$WORK/data/sample-8192.png
  [ -f "$IMAGE" ] || "$TILEKIT" sample "$IMAGE" --size 8192x8192 >/dev/null || die "tilekit sample failed"
fi
[ -f "$IMAGE" ] || die "image '$IMAGE' not found"
TILE_ARGS=(--tile-size 256 --overlap 0 --format png)
ILABEL=$(basename "${IMAGE%.*}")
PYR_DIR=$WORK/data/pyramid-$ILABEL
if [ ! -f "$PYR_DIR.done" ]; then
  rm -rf "$PYR_DIR"
  echo "# tiling $IMAGE into $PYR_DIR (data set 2, untimed)" >&2
  "$TILEKIT" tile "$IMAGE" "$PYR_DIR" "${TILE_ARGS[@]}" >/dev/null || die "tiling $IMAGE failed"
  touch "$PYR_DIR.done"
fi
count_files() { find "$1" -type f | wc -l; }
sum_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
declare -A DS_DIR DS_FILES DS_BYTES
DS_DIR[files]=$FILES_DIR
DS_DIR[pyramid]=$PYR_DIR
for d in files pyramid; do
  DS_FILES[$d]=$(count_files "${DS_DIR[$d]}")
  DS_BYTES[$d]=$(sum_bytes "${DS_DIR[$d]}")
done

# ---- the peer and the fast server -----------------------------------------------------------
PEER_STARTED=0 FAST_PID=""
cleanup() {
  if [ -n "$FAST_PID" ]; then kill "$FAST_PID" 2>/dev/null; wait "$FAST_PID" 2>/dev/null; fi
  if [ "$PEER_STARTED" = 1 ]; then "$ROOT/tests/s3peer/stop.sh" -d "$S3PEER_DIR" --clean >/dev/null 2>&1; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# No faults. --no-r2-header-checks: rclone 1.60 (Debian 12) always sends `x-amz-acl: private`,
# which the strict peer refuses with 501 (R2 itself accepts it); tilekit and awscli (with
# AWS_REQUEST_CHECKSUM_CALCULATION=when_required) send none of the refused headers anyway.
PEER_ARGS=(--no-r2-header-checks --ttl 7200 -d "$WORK/peer")
rm -rf "$WORK/peer"
peer_env=$("$ROOT/tests/s3peer/start.sh" "${PEER_ARGS[@]}" 2>"$WORK/logs/peer-start.err") \
  || { cat "$WORK/logs/peer-start.err" >&2; die "starting the peer failed"; }
eval "$peer_env"
PEER_STARTED=1
S3RVER_PID=$(awk '$2 == "s3rver" { print $1 }' "$S3PEER_DIR/pids")
VERIFIER_PID=$(awk '$2 == "verifier" { print $1 }' "$S3PEER_DIR/pids")
[ -n "$S3RVER_PID" ] && [ -n "$VERIFIER_PID" ] || die "cannot find the peer PIDs in $S3PEER_DIR/pids"
EP=$S3PEER_ENDPOINT
BUCKET=$S3PEER_BUCKET

rm -f "$WORK/fast.port"
"$FAST" -f "$WORK/fast.port" >/dev/null 2>"$WORK/logs/fast_put_server.stderr" &
FAST_PID=$!
for _ in $(seq 50); do [ -s "$WORK/fast.port" ] && break; sleep 0.1; done
[ -s "$WORK/fast.port" ] || die "fast_put_server did not start"
FAST_EP=http://127.0.0.1:$(cat "$WORK/fast.port")

export AWS_ACCESS_KEY_ID=$S3PEER_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3PEER_SECRET_KEY
unset AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3
export AWS_REGION=$S3PEER_REGION AWS_DEFAULT_REGION=$S3PEER_REGION
AWS_CFG=$WORK/aws-config
cat >"$AWS_CFG" <<EOF
[default]
region = $S3PEER_REGION
s3 =
    max_concurrent_requests = 10
    addressing_style = path
EOF

# ---- measurement ----------------------------------------------------------------------------
cpu_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
proc_jiffies() {  # PID -> utime+stime (fields 14, 15; parsed after the ")" of comm)
  local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  s=${s##*) }; set -- $s; echo $(( ${12} + ${13} ))
}
wait_idle() {
  local t0=$SECONDS b0 b1 pct
  R_IDLE=idle
  [ "$IDLE_WAIT" -gt 0 ] || { R_IDLE=nowait; return; }
  local cores; cores=$(nproc)
  while :; do
    b0=$(cpu_jiffies); sleep 1; b1=$(cpu_jiffies)
    pct=$(( (b1 - b0) * 100 / (HZ * cores) ))
    [ "$pct" -lt 15 ] && return
    if [ $((SECONDS - t0)) -ge "$IDLE_WAIT" ]; then R_IDLE="busy${pct}%"; return; fi
  done
}
peer_stats() { curl -s --max-time 10 "$EP/_s3peer/stats"; }
fast_stats() { curl -s --max-time 10 "$FAST_EP/_fast/stats"; }

# Comparison of what arrived with the source tree: key set and content (sha1 of every body).
#   verify.py peer SRC OBJDIR   objects are OBJDIR/<rel>._S3rver_object (s3rver's layout)
#   verify.py fast SRC BEFORE_JSON AFTER_JSON
# prints: found missing extra content_bad
cat >"$WORK/verify.py" <<'EOF'
import hashlib, json, os, sys
def tree(root, suffix=""):
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            if suffix and not f.endswith(suffix):
                continue
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)[: len(os.path.relpath(p, root)) - len(suffix)]] = p
    return out
def digest(p):
    with open(p, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()
mode = sys.argv[1]
if mode == "peer":
    src, dst = tree(sys.argv[2]), tree(sys.argv[3], "._S3rver_object") if os.path.isdir(sys.argv[3]) else {}
    common = src.keys() & dst.keys()
    bad = sum(1 for k in common if digest(src[k]) != digest(dst[k]))
    print(len(dst), len(src.keys() - dst.keys()), len(dst.keys() - src.keys()), bad)
else:
    n = len(tree(sys.argv[2]))
    b, a = json.loads(sys.argv[3]), json.loads(sys.argv[4])
    puts = a["puts"] - b["puts"]
    print(puts, max(0, n - puts), max(0, puts - n), "-")
EOF
# peer stats delta (the counters are reset before each run): "requests non2xx"
peer_counts() {
  "$PY" -c '
import json, sys
s = json.loads(sys.argv[1])
control = s.get("by_outcome", {}).get("control", 0)
non2xx = sum(v for k, v in s.get("by_status", {}).items() if not k.startswith("2"))
print(s.get("requests", 0) - control, non2xx)' "$1" 2>/dev/null || echo "NA NA"
}

printf '%s\n' "section	dataset	target	tool	concurrency	run	prefix	files	bytes	wall_s	user_s	sys_s	rss_kb	exit	s3rver_s	verifier_s	fast_s	other_s	requests	non2xx	retries	found	missing	extra	content_bad	listed	idle	status" >"$RESULTS"
ALL_OK=1
RUNID=0
declare -A CMDLINES

# run_one SECTION DATASET TARGET TOOL CONC RUN SRC_FOR_VERIFY PREFIX -- CMD...
# Times CMD; measures peer / fast-server CPU and everything else on the machine; verifies.
run_one() {
  local section=$1 ds=$2 target=$3 tool=$4 conc=$5 run=$6 src=$7 prefix=$8; shift 9
  RUNID=$((RUNID + 1))
  local log=$WORK/logs/$(printf '%03d' $RUNID)-$section-$ds-$target-$tool-c$conc-r$run
  CMDLINES["$section|$ds|$target|$tool|$conc"]="$*"
  wait_idle
  local fb="" fa=""
  if [ "$target" = peer ]; then curl -s -X POST --max-time 10 "$EP/_s3peer/stats" >/dev/null; else fb=$(fast_stats); fi
  local j0 s0 v0 f0 j1 s1 v1 f1
  j0=$(cpu_jiffies); s0=$(proc_jiffies "$S3RVER_PID"); v0=$(proc_jiffies "$VERIFIER_PID"); f0=$(proc_jiffies "$FAST_PID")
  "$GTIME" -o "$log.time" -f 'GTIME %e %U %S %M %x' timeout -s KILL "$TIMEOUT_S" "$@" >"$log.stdout" 2>"$log.stderr"
  j1=$(cpu_jiffies); s1=$(proc_jiffies "$S3RVER_PID"); v1=$(proc_jiffies "$VERIFIER_PID"); f1=$(proc_jiffies "$FAST_PID")
  local wall user sys rss ex
  read -r _ wall user sys rss ex <<<"$(grep '^GTIME ' "$log.time" | tail -1)"
  if grep -q 'terminated by signal' "$log.time"; then ex="sig$(grep -o 'signal [0-9]*' "$log.time" | head -1 | tr -dc 0-9)"; fi
  : "${wall:=NA}" "${user:=NA}" "${sys:=NA}" "${rss:=NA}" "${ex:=NA}"
  local s3s vs fs other
  s3s=$(awk -v d=$((s1 - s0)) -v hz="$HZ" 'BEGIN { printf "%.2f", d / hz }')
  vs=$(awk -v d=$((v1 - v0)) -v hz="$HZ" 'BEGIN { printf "%.2f", d / hz }')
  fs=$(awk -v d=$((f1 - f0)) -v hz="$HZ" 'BEGIN { printf "%.2f", d / hz }')
  other=$(awk -v d=$((j1 - j0)) -v hz="$HZ" -v u="$user" -v s="$sys" -v a=$((s1 - s0 + v1 - v0 + f1 - f0)) \
    'BEGIN { o = (d - a) / hz - u - s; if (o < 0) o = 0; printf "%.2f", o }')
  local requests=NA non2xx=NA retries=NA found missing extra bad listed=-
  retries=$(grep -o '"retries":[0-9]*' "$log.stdout" | head -1 | cut -d: -f2); : "${retries:=-}"
  if [ "$target" = peer ]; then
    read -r requests non2xx <<<"$(peer_counts "$(peer_stats)")"
    read -r found missing extra bad <<<"$("$PY" "$WORK/verify.py" peer "$src" "$S3PEER_DIR/data/$BUCKET/$prefix")"
    if [ "$section" = compare ]; then   # ListObjectsV2 through the verifier, paginated by awscli
      listed=$(AWS_CONFIG_FILE=$AWS_CFG AWS_REQUEST_CHECKSUM_CALCULATION=when_required "$AWS" --endpoint-url "$EP" \
        s3 ls --recursive "s3://$BUCKET/$prefix/" 2>>"$log.list.stderr" | wc -l)
    fi
    [ "$KEEP" = 1 ] || rm -rf "${S3PEER_DIR:?}/data/$BUCKET/${prefix:?}"
  else
    fa=$(fast_stats)
    requests=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[2])["requests"]-json.loads(sys.argv[1])["requests"])' "$fb" "$fa" 2>/dev/null || echo NA)
    non2xx=0
    read -r found missing extra bad <<<"$("$PY" "$WORK/verify.py" fast "$src" "$fb" "$fa")"
  fi
  local status=ok
  [ "$ex" = 0 ] || status="exit=$ex"
  [ "$missing" = 0 ] && [ "$extra" = 0 ] && { [ "$bad" = 0 ] || [ "$bad" = - ]; } || status="$status;objects-wrong"
  [ "$listed" = - ] || [ "$listed" = "$found" ] || status="$status;listing=$listed"
  [ "$status" = ok ] || ALL_OK=0
  local nfiles nbytes
  nfiles=$(count_files "$src"); nbytes=$(sum_bytes "$src")
  printf '%s\n' "$section	$ds	$target	$tool	$conc	$run	$prefix	$nfiles	$nbytes	$wall	$user	$sys	$rss	$ex	$s3s	$vs	$fs	$other	$requests	$non2xx	$retries	$found	$missing	$extra	$bad	$listed	$R_IDLE	$status" >>"$RESULTS"
  printf '# %-8s %-8s %-5s %-8s c=%-4s run %s: %6ss wall, CPU %s+%ss, RSS %s KiB, peer %s+%ss, fast %ss, other %ss, req %s (non-2xx %s, retries %s), objects %s/%s (missing %s, extra %s, bad %s, listed %s) [%s] %s\n' \
    "$section" "$ds" "$target" "$tool" "$conc" "$run" "$wall" "$user" "$sys" "$rss" "$s3s" "$vs" "$fs" "$other" \
    "$requests" "$non2xx" "$retries" "$found" "$nfiles" "$missing" "$extra" "$bad" "$listed" "$R_IDLE" "$status" >&2
  if [ "$status" != ok ]; then
    echo "#   stderr of the failed run ($log.stderr):" >&2; tail -5 "$log.stderr" | sed 's/^/#     /' >&2
  fi
}

# Tool commands; PREFIX is new for every run.
run_tool() {  # SECTION DATASET TARGET TOOL CONC RUN
  local section=$1 ds=$2 target=$3 tool=$4 conc=$5 run=$6 src=${DS_DIR[$2]}
  local prefix=$section-$ds-$target-$tool-c$conc-r$run-$$
  local ep=$EP; [ "$target" = fast ] && ep=$FAST_EP
  local cflag=(); [ "$conc" != default ] && cflag=(--concurrency "$conc")
  case $tool in
    tilekit)
      run_one "$section" "$ds" "$target" "$tool" "$conc" "$run" "$src" "$prefix" -- \
        "$TILEKIT" upload "$src" "s3://$BUCKET/$prefix/" --endpoint "$ep" --region "$S3PEER_REGION" "${cflag[@]}" ;;
    awscli)
      run_one "$section" "$ds" "$target" "$tool" 10 "$run" "$src" "$prefix" -- \
        env AWS_CONFIG_FILE="$AWS_CFG" AWS_REQUEST_CHECKSUM_CALCULATION=when_required \
        AWS_RESPONSE_CHECKSUM_VALIDATION=when_required \
        "$AWS" --endpoint-url "$ep" s3 cp --recursive --only-show-errors "$src" "s3://$BUCKET/$prefix/" ;;
    rclone)
      run_one "$section" "$ds" "$target" "$tool" 16 "$run" "$src" "$prefix" -- \
        env -u AWS_CA_BUNDLE RCLONE_CONFIG_PEER_TYPE=s3 RCLONE_CONFIG_PEER_PROVIDER=Other \
        RCLONE_CONFIG_PEER_FORCE_PATH_STYLE=true RCLONE_CONFIG_PEER_ENDPOINT="$ep" \
        RCLONE_CONFIG_PEER_REGION="$S3PEER_REGION" RCLONE_CONFIG_PEER_ENV_AUTH=false \
        RCLONE_CONFIG_PEER_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" RCLONE_CONFIG_PEER_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
        "$RCLONE" --config /dev/null copy --transfers 16 --checkers 16 --s3-no-check-bucket \
        "$src" "peer:$BUCKET/$prefix/" ;;
  esac
}

# warm the page cache: every run reads its source from memory
cat_tree() { find "$1" -type f -print0 | xargs -0 cat >/dev/null; }
cat_tree "$FILES_DIR"; cat_tree "$PYR_DIR"; cat "$IMAGE" >/dev/null

echo "# peer: $EP (s3rver pid $S3RVER_PID, verifier pid $VERIFIER_PID, dir $S3PEER_DIR); fast server: $FAST_EP (pid $FAST_PID)" >&2
echo "# data: files = ${DS_FILES[files]} files / ${DS_BYTES[files]} B; pyramid = ${DS_FILES[pyramid]} files / ${DS_BYTES[pyramid]} B ($IMAGE)" >&2

# ---- 1. comparison --------------------------------------------------------------------------
if has_section compare; then
  for ds in files pyramid; do
    for r in $(seq "$RUNS"); do
      for tool in tilekit awscli rclone; do run_tool compare "$ds" peer "$tool" default "$r"; done
      run_tool compare "$ds" fast tilekit default "$r"
    done
  done
fi

# ---- 2. concurrency sweep -------------------------------------------------------------------
if has_section sweep && [ -n "$SWEEP" ]; then
  for c in $SWEEP; do
    run_tool sweep files peer tilekit "$c" 1
    run_tool sweep files fast tilekit "$c" 1
    run_tool sweep pyramid fast tilekit "$c" 1
  done
fi

# ---- 3. end to end: (a) tile to disk, (b) upload that tree, (c) tile straight to S3 ---------
if has_section e2e; then
  E2E_DIR=$WORK/data/e2e-disk
  rm -rf "$E2E_DIR"; sync
  # (a) is verified against data set 2 (same command, deterministic output); (b) and (c)
  # against the tree (a) wrote.
  run_tile_disk() {
    RUNID=$((RUNID + 1))
    local log=$WORK/logs/$(printf '%03d' $RUNID)-e2e-a-tile-disk
    CMDLINES["e2e|a"]="$TILEKIT tile $IMAGE $E2E_DIR ${TILE_ARGS[*]}"
    wait_idle
    local j0 j1; j0=$(cpu_jiffies)
    "$GTIME" -o "$log.time" -f 'GTIME %e %U %S %M %x' timeout -s KILL "$TIMEOUT_S" \
      "$TILEKIT" tile "$IMAGE" "$E2E_DIR" "${TILE_ARGS[@]}" >"$log.stdout" 2>"$log.stderr"
    j1=$(cpu_jiffies)
    local wall user sys rss ex
    read -r _ wall user sys rss ex <<<"$(grep '^GTIME ' "$log.time" | tail -1)"
    local other; other=$(awk -v d=$((j1 - j0)) -v hz="$HZ" -v u="$user" -v s="$sys" 'BEGIN { o = d / hz - u - s; if (o < 0) o = 0; printf "%.2f", o }')
    local found missing extra bad
    read -r found missing extra bad <<<"$("$PY" - "$PYR_DIR" "$E2E_DIR" <<'EOF'
import hashlib, os, sys
def tree(r):
    return {os.path.relpath(os.path.join(d, f), r): os.path.join(d, f) for d, _, fs in os.walk(r) for f in fs}
def h(p):
    with open(p, "rb") as f: return hashlib.sha1(f.read()).hexdigest()
a, b = tree(sys.argv[1]), tree(sys.argv[2])
print(len(b), len(a.keys() - b.keys()), len(b.keys() - a.keys()), sum(1 for k in a.keys() & b.keys() if h(a[k]) != h(b[k])))
EOF
)"
    local status=ok; [ "${ex:-NA}" = 0 ] || status="exit=${ex:-NA}"
    [ "$missing" = 0 ] && [ "$extra" = 0 ] || status="$status;objects-wrong"
    [ "$status" = ok ] || ALL_OK=0
    local nfiles nbytes; nfiles=$(count_files "$PYR_DIR"); nbytes=$(sum_bytes "$PYR_DIR")
    printf '%s\n' "e2e	a-tile-disk	disk	tilekit	-	1	-	$nfiles	$nbytes	$wall	$user	$sys	$rss	$ex	0	0	0	$other	-	-	-	$found	$missing	$extra	$bad	-	$R_IDLE	$status" >>"$RESULTS"
    printf '# e2e (a) tile to disk: %ss wall, CPU %s+%ss, RSS %s KiB, other %ss, files %s (missing %s, extra %s, differing from data set 2: %s) %s\n' \
      "$wall" "$user" "$sys" "$rss" "$other" "$found" "$missing" "$extra" "$bad" "$status" >&2
  }
  run_tile_disk
  DS_DIR[e2e]=$E2E_DIR
  # (b) upload that tree alone (default concurrency)
  run_tool e2e e2e peer tilekit default 1
  sed -i '$ s/^e2e\te2e\t/e2e\tb-upload\t/' "$RESULTS"
  # (c) tile straight to the peer; compared object by object with (a)'s tree
  prefix=e2e-c-tile-s3-$$
  run_one e2e c-tile-s3 peer tilekit default 1 "$E2E_DIR" "$prefix" -- \
    "$TILEKIT" tile "$IMAGE" "s3://$BUCKET/$prefix/" "${TILE_ARGS[@]}" --endpoint "$EP" --region "$S3PEER_REGION"
  # (c') the same against the fast server: the tile+upload pipeline without the peer's cost
  prefix=e2e-cf-tile-fast-$$
  run_one e2e c-tile-fast fast tilekit default 1 "$E2E_DIR" "$prefix" -- \
    "$TILEKIT" tile "$IMAGE" "s3://$BUCKET/$prefix/" "${TILE_ARGS[@]}" --endpoint "$FAST_EP" --region "$S3PEER_REGION"
  # (b') upload of the tree to the fast server, for max(a, b') next to (c')
  run_tool e2e e2e fast tilekit default 1
  sed -i '$ s/^e2e\te2e\t/e2e\tb-upload-fast\t/' "$RESULTS"
  rm -rf "$E2E_DIR"
fi

# ---- report ---------------------------------------------------------------------------------
TOTAL_S=$((SECONDS - T_START))
{
  echo "# Upload benchmark: tilekit vs awscli vs rclone"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "- tilekit: $TILEKIT ($TILEKIT_ORIGIN), sha256 $(sha256sum "$TILEKIT" | cut -c1-16), git $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+dirty')"
  echo "- awscli: $("$AWS" --version 2>&1 | head -1) ($AWS); rclone: $("$RCLONE" version 2>/dev/null | head -1)"
  echo "- peer: tests/s3peer/start.sh ${PEER_ARGS[*]} -> $EP (s3rver pid $S3RVER_PID + verifier pid $VERIFIER_PID), no faults"
  echo "- fast server: $FAST_BUILD; $FAST_EP (answers 200 to every PUT, verifies nothing)"
  echo "- data set files: ${DS_FILES[files]} files, ${DS_BYTES[files]} bytes ($FILES_DIR); data set pyramid: ${DS_FILES[pyramid]} files, ${DS_BYTES[pyramid]} bytes ($(basename "$IMAGE"), tilekit tile ${TILE_ARGS[*]})"
  echo "- runs per tool in the comparison: $RUNS (medians); total script time ${TOTAL_S}s"
  echo
  echo "Commands (PREFIX is new for every run; the environment holds AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY = the peer's key):"
  echo
  echo '```'
  for k in "${!CMDLINES[@]}"; do echo "[$k] ${CMDLINES[$k]}"; done | sort
  echo '```'
  echo
} >"$REPORT"
"$PY" - "$RESULTS" >>"$REPORT" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def num(x):
    try: return float(x)
    except (TypeError, ValueError): return None
def med(vals):
    v = [x for x in vals if x is not None]
    return statistics.median(v) if v else None
def agg(rs):
    out = {}
    for k in ("wall_s", "user_s", "sys_s", "rss_kb", "s3rver_s", "verifier_s", "fast_s", "other_s", "requests", "non2xx"):
        out[k] = med(num(r[k]) for r in rs)
    n = num(rs[0]["files"])
    out["files"] = n
    out["cpu"] = med(num(r["user_s"]) + num(r["sys_s"]) if num(r["user_s"]) is not None else None for r in rs)
    out["fps"] = med(n / num(r["wall_s"]) if num(r["wall_s"]) else None for r in rs)
    out["cpu_ms"] = out["cpu"] * 1000 / n if out["cpu"] is not None else None
    out["peer"] = (out["s3rver_s"] or 0) + (out["verifier_s"] or 0)
    out["peer_ms"] = out["peer"] * 1000 / n
    out["status"] = ",".join(sorted(set(r["status"] for r in rs)))
    out["runs"] = len(rs)
    out["retries"] = ",".join(sorted(set(r["retries"] for r in rs)))
    out["objects"] = ",".join(sorted(set(f'{r["found"]}/{r["files"]}' for r in rs)))
    out["listed"] = ",".join(sorted(set(r["listed"] for r in rs)))
    return out
def f(x, d=2):
    return "NA" if x is None else f"{x:.{d}f}"
def ratio(a, b):
    return None if a is None or not b else a / b
print("## Comparison (same peer, one tool after another)\n")
print("Peer CPU = s3rver + verifier CPU seconds during the run (/proc/PID/stat). Other CPU = the rest of the machine. Ratios are tilekit / other tool (files/s: > 1 = tilekit faster; CPU, RSS, peer CPU: < 1 = tilekit cheaper).\n")
hdr = "| data set | target | tool | runs | wall s | files/s | client CPU s (user+sys) | CPU ms/file | peak RSS MiB | peer CPU s (s3rver+verifier) | peer CPU ms/file | fast-server CPU s | other CPU s | requests | non-2xx | tilekit retries | objects arrived | listed | status |"
print(hdr); print("|" + "---|" * (hdr.count("|") - 1))
comp = {}
for ds in ("files", "pyramid"):
    for target, tool in (("peer", "tilekit"), ("peer", "awscli"), ("peer", "rclone"), ("fast", "tilekit")):
        rs = [r for r in rows if r["section"] == "compare" and r["dataset"] == ds and r["target"] == target and r["tool"] == tool]
        if not rs: continue
        a = agg(rs); comp[(ds, target, tool)] = a
        print(f'| {ds} | {"peer" if target == "peer" else "fast server"} | {tool} | {a["runs"]} | {f(a["wall_s"])} | {f(a["fps"],1)} | {f(a["cpu"])} ({f(a["user_s"])}+{f(a["sys_s"])}) | {f(a["cpu_ms"],3)} | {f(a["rss_kb"]/1024 if a["rss_kb"] else None,0)} | {f(a["peer"])} ({f(a["s3rver_s"])}+{f(a["verifier_s"])}) | {f(a["peer_ms"],2)} | {f(a["fast_s"])} | {f(a["other_s"])} | {f(a["requests"],0)} | {f(a["non2xx"],0)} | {a["retries"]} | {a["objects"]} | {a["listed"]} | {a["status"]} |')
print()
targets = []
if comp:
    print("### Ratios tilekit / awscli and tilekit / rclone (through the peer)\n")
    print("| data set | vs | files/s | client CPU s | CPU ms/file | peak RSS | peer CPU s | peer CPU ms/file |")
    print("|---|---|---|---|---|---|---|---|")
    for ds in ("files", "pyramid"):
        t = comp.get((ds, "peer", "tilekit"))
        if not t: continue
        for other in ("awscli", "rclone"):
            o = comp.get((ds, "peer", other))
            if not o: continue
            print(f'| {ds} | {other} | {f(ratio(t["fps"], o["fps"]))} | {f(ratio(t["cpu"], o["cpu"]))} | {f(ratio(t["cpu_ms"], o["cpu_ms"]))} | {f(ratio(t["rss_kb"], o["rss_kb"]))} | {f(ratio(t["peer"], o["peer"]))} | {f(ratio(t["peer_ms"], o["peer_ms"]))} |')
        rc, aw = comp.get((ds, "peer", "rclone")), comp.get((ds, "peer", "awscli"))
        if rc:
            r = ratio(t["fps"], rc["fps"]); targets.append((ds, "files/s >= 1.2 x rclone", r, r is not None and r >= 1.2))
        if aw:
            r = ratio(t["cpu_ms"], aw["cpu_ms"]); targets.append((ds, "client CPU/file <= 0.25 x awscli", r, r is not None and r <= 0.25))
        if rc:
            r = ratio(t["cpu_ms"], rc["cpu_ms"]); targets.append((ds, "client CPU/file <= 0.5 x rclone", r, r is not None and r <= 0.5))
    print()
    print("### Targets (issue)\n")
    print("| data set | target | ratio | result |")
    print("|---|---|---|---|")
    for ds, name, r, ok in targets:
        print(f'| {ds} | {name} | {f(r)} | {"PASS" if ok else "FAIL"} |')
    print()
sw = [r for r in rows if r["section"] == "sweep"]
if sw:
    print("## tilekit --concurrency sweep\n")
    print("| data set | target | concurrency | wall s | files/s | client CPU s | CPU ms/file | peak RSS MiB | peer CPU s (s3rver+verifier) | fast-server CPU s | other CPU s | non-2xx | retries | objects | status |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sw:
        a = agg([r])
        print(f'| {r["dataset"]} | {"peer" if r["target"] == "peer" else "fast server"} | {r["concurrency"]} | {f(a["wall_s"])} | {f(a["fps"],1)} | {f(a["cpu"])} | {f(a["cpu_ms"],3)} | {f(a["rss_kb"]/1024 if a["rss_kb"] else None,0)} | {f(a["peer"])} ({f(a["s3rver_s"])}+{f(a["verifier_s"])}) | {f(a["fast_s"])} | {f(a["other_s"])} | {f(a["non2xx"],0)} | {a["retries"]} | {a["objects"]} | {a["status"]} |')
    print()
e2e = {r["dataset"]: r for r in rows if r["section"] == "e2e"}
if e2e:
    print("## End to end: tile + upload in one go vs tiling alone and uploading alone\n")
    print("| step | wall s | client CPU s | peak RSS MiB | peer CPU s (s3rver+verifier) | fast-server CPU s | other CPU s | objects / expected | non-2xx | status |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    names = {"a-tile-disk": "(a) tilekit tile -> local dir", "b-upload": "(b) tilekit upload of that dir -> peer",
             "c-tile-s3": "(c) tilekit tile -> s3:// (peer)", "b-upload-fast": "(b') tilekit upload of that dir -> fast server",
             "c-tile-fast": "(c') tilekit tile -> s3:// (fast server)"}
    for k in ("a-tile-disk", "b-upload", "c-tile-s3", "b-upload-fast", "c-tile-fast"):
        r = e2e.get(k)
        if not r: continue
        a = agg([r])
        print(f'| {names[k]} | {f(a["wall_s"])} | {f(a["cpu"])} | {f(a["rss_kb"]/1024 if a["rss_kb"] else None,0)} | {f(a["peer"])} ({f(a["s3rver_s"])}+{f(a["verifier_s"])}) | {f(a["fast_s"])} | {f(a["other_s"])} | {r["found"]}/{r["files"]} (missing {r["missing"]}, extra {r["extra"]}, content differs {r["content_bad"]}) | {r["non2xx"]} | {r["status"]} |')
    print()
    def w(k):
        return num(e2e[k]["wall_s"]) if k in e2e else None
    for c, b, label in (("c-tile-s3", "b-upload", "peer"), ("c-tile-fast", "b-upload-fast", "fast server")):
        if w(c) is not None and w("a-tile-disk") is not None and w(b) is not None:
            r = w(c) / max(w("a-tile-disk"), w(b))
            tgt = " (target <= 1.2: " + ("PASS" if r <= 1.2 else "FAIL") + ")" if label == "peer" else " (information)"
            print(f'- {label}: (c) / max(a, b) = {w(c):.2f} / max({w("a-tile-disk"):.2f}, {w(b):.2f}) = **{r:.2f}**{tgt}')
    print()
EOF
echo "# results: $RESULTS; report: $REPORT; logs: $WORK/logs" >&2
cat "$REPORT"
[ "$ALL_OK" = 1 ] || { echo "upload.sh: some runs failed or objects are missing / wrong (see the status columns)" >&2; exit 1; }
exit 0
