#!/usr/bin/env bash
# Start tilekit's S3 / Cloudflare R2 test peer on 127.0.0.1: s3rver (storage) behind
# sigv4_verifier.py (SigV4 verification with botocore, R2 rules, fault injection).
#
#   eval "$(tests/s3peer/start.sh [options])"     # exports S3PEER_ENDPOINT, S3PEER_BUCKET, ...
#   ...run tests against $S3PEER_ENDPOINT...
#   tests/s3peer/stop.sh                          # kills exactly the recorded PIDs
#
# stdout carries only the export lines; progress and errors go to stderr. See README.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
S3RVER_VERSION=3.7.1
home=${S3PEER_HOME:-${HOME:-/root}/.cache/tilekit-s3peer}

usage() {
    cat <<'EOF'
usage: start.sh [options] [-- extra sigv4_verifier.py options]

Peer:
  -d, --dir DIR           run directory (data/, logs, pids, env); default: a new
                          ${TMPDIR:-/tmp}/tilekit-s3peer.XXXXXX that stop.sh removes
  -p, --port PORT         verifier (endpoint) port; default: a free port
      --s3rver-port PORT  s3rver port; default: a free port
      --bucket NAME       bucket created at start (default: tiles)
      --user AK:SECRET    credentials (repeatable; replaces the defaults
                          tilekit-test-key:tilekit-test-secret, tilekit-test-key2:tilekit-test-secret2)
      --regions LIST      accepted scope regions, first is S3PEER_REGION (default: auto,us-east-1)
      --anon-get          allow anonymous GET/HEAD (public-bucket emulation)
      --clock-offset S    verifier clock runs S seconds ahead (test clock-skew correction)
      --max-skew S        allowed x-amz-date skew in seconds (default: 900)
      --no-strict-path    accept non-strictly-encoded paths signed verbatim
      --no-r2-header-checks  do not refuse x-amz-acl / x-amz-storage-class / x-amz-checksum-* ...
      --log FILE          verifier request log, one line per request (default: DIR/requests.log)
      --ttl S             watchdog: stop the peer after S seconds even if stop.sh is never run
      --no-install        fail instead of installing s3rver when it is missing
Faults (decided per request before verification, seeded; rates add up to <= 1):
      --slowdown RATE        503 SlowDown with Retry-After
      --internal-error RATE  500 InternalError
      --reset RATE           read the request, then reset the connection (RST), no response
      --drop RATE            read the request, then close cleanly, no response
      --stall RATE           no response for --stall-seconds (default 30), then close
      --stall-seconds S
      --retry-after S        Retry-After value on 503 (default: 1)
      --seed N               fault RNG seed (default: 1)
      --fault-methods LIST   e.g. PUT,GET (default: all methods)
      --always-fail          every request gets 503 SlowDown
Environment: S3PEER_HOME (s3rver install cache, default ~/.cache/tilekit-s3peer),
             S3PEER_PYTHON (python3 with botocore; default: first of python3, /usr/bin/python3).
EOF
}

die() { echo "s3peer start: $*" >&2; exit 1; }
note() { echo "s3peer start: $*" >&2; }

dir="" port=0 s3port=0 bucket=tiles log="" ttl=0 no_install=0
users=() vargs=() regions="auto,us-east-1"
need() { [[ $# -ge 2 && -n "$2" ]] || die "option $1 needs a value"; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        -d|--dir) need "$@"; dir=$2; shift 2 ;;
        -p|--port) need "$@"; port=$2; shift 2 ;;
        --s3rver-port) need "$@"; s3port=$2; shift 2 ;;
        --bucket) need "$@"; bucket=$2; shift 2 ;;
        --user) need "$@"; users+=("$2"); shift 2 ;;
        --regions) need "$@"; regions=$2; shift 2 ;;
        --log) need "$@"; log=$2; shift 2 ;;
        --ttl) need "$@"; ttl=$2; shift 2 ;;
        --no-install) no_install=1; shift ;;
        --anon-get|--always-fail|--no-strict-path|--no-r2-header-checks)
            vargs+=("$1"); shift ;;
        --clock-offset|--max-skew|--slowdown|--internal-error|--reset|--drop|--stall|\
        --stall-seconds|--retry-after|--seed|--fault-methods)
            need "$@"; vargs+=("$1" "$2"); shift 2 ;;
        --) shift; vargs+=("$@"); break ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
done
[[ $port =~ ^[0-9]+$ && $s3port =~ ^[0-9]+$ && $ttl =~ ^[0-9]+$ ]] \
    || die "--port, --s3rver-port and --ttl take integers"
[[ $bucket =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] || die "invalid bucket name: $bucket"
if [[ ${#users[@]} -eq 0 ]]; then
    users=(tilekit-test-key:tilekit-test-secret tilekit-test-key2:tilekit-test-secret2)
fi
for u in "${users[@]}"; do
    [[ $u == ?*:?* ]] || die "--user must be ACCESS_KEY:SECRET, got '$u'"
    vargs+=(--user "$u")
done
vargs+=(--regions "$regions")

# ---- python3 with botocore ----------------------------------------------------------------
pick_python() {
    local c exe
    if [[ -n ${S3PEER_PYTHON:-} ]]; then
        "$S3PEER_PYTHON" -c 'import botocore' 2>/dev/null \
            || die "S3PEER_PYTHON=$S3PEER_PYTHON cannot import botocore"
        "$S3PEER_PYTHON" -c 'import sys; print(sys.executable)'
        return
    fi
    for c in python3 /usr/bin/python3 /usr/local/bin/python3; do
        command -v "$c" >/dev/null 2>&1 || continue
        if exe=$("$c" -c 'import sys, botocore; print(sys.executable)' 2>/dev/null); then
            echo "$exe"
            return
        fi
    done
    die "no python3 that can import botocore was found (tried python3, /usr/bin/python3,
  /usr/local/bin/python3). On Debian 12: apt-get install python3-botocore (then /usr/bin/python3
  has it). Or pip install botocore, or point S3PEER_PYTHON at a python3 that has it."
}
py=$(pick_python)

# ---- node + s3rver ----------------------------------------------------------------------
command -v node >/dev/null 2>&1 || die "node not found (Debian 12: apt-get install nodejs npm)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[[ $node_major -ge 18 ]] || die "node >= 18 is needed by s3rver's dependencies (found $(node --version))"
# s3rver encrypts ListObjectsV2 continuation tokens with DES; OpenSSL 3 refuses it unless the
# legacy provider is loaded (otherwise any truncated listing answers 500 InternalError).
node_flags=(--openssl-legacy-provider)

install_dir="$home/s3rver-$S3RVER_VERSION"
s3rver_js="$install_dir/node_modules/s3rver/bin/s3rver.js"
lock_sum=$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)
installed() {
    [[ -f $install_dir/.installed && $(cat "$install_dir/.installed") == "$lock_sum" && -f $s3rver_js ]]
}
if ! installed; then
    [[ $no_install -eq 0 ]] || die "s3rver $S3RVER_VERSION is not installed in $install_dir (--no-install)"
    command -v npm >/dev/null 2>&1 || die "npm not found (Debian 12: apt-get install npm)"
    mkdir -p "$home"
    exec 9>"$home/.install.lock"
    if command -v flock >/dev/null 2>&1; then flock 9; fi
    if ! installed; then
        note "installing s3rver@$S3RVER_VERSION into $install_dir (npm ci, pinned lockfile)"
        tmp="$install_dir.tmp.$$"
        rm -rf "$tmp"
        mkdir -p "$tmp"
        cp "$here/package.json" "$here/package-lock.json" "$tmp/"
        if ! (cd "$tmp" && npm ci --no-audit --no-fund --omit=dev --loglevel=error >&2); then
            note "npm ci from the lockfile failed; falling back to npm install s3rver@$S3RVER_VERSION"
            rm -rf "$tmp/node_modules" "$tmp/package-lock.json"
            (cd "$tmp" && npm install --no-audit --no-fund --omit=dev --loglevel=error \
                --save-exact "s3rver@$S3RVER_VERSION" >&2) || die "npm install s3rver failed"
        fi
        got=$(node -p "require('$tmp/node_modules/s3rver/package.json').version")
        [[ $got == "$S3RVER_VERSION" ]] || die "installed s3rver is $got, expected $S3RVER_VERSION"
        echo "$lock_sum" >"$tmp/.installed"
        rm -rf "$install_dir"
        mv "$tmp" "$install_dir"
    fi
    exec 9>&-
fi

# ---- run directory ------------------------------------------------------------------------
created=0
if [[ -z $dir ]]; then
    dir=$(mktemp -d "${TMPDIR:-/tmp}/tilekit-s3peer.XXXXXX")
    created=1
else
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ -s $dir/pids ]]; then
        while read -r pid _; do
            if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir"; then
                die "a peer recorded in $dir/pids is still running (pid $pid); run stop.sh -d $dir first"
            fi
        done <"$dir/pids"
    fi
fi
[[ $created -eq 1 ]] && touch "$dir/.created-by-start"
mkdir -p "$dir/data"
: >"$dir/pids"
rm -f "$dir/verifier.port" "$dir/env"
[[ -n $log ]] || log="$dir/requests.log"

pids=()
cleanup_on_failure() {
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        local p
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
        for f in "$dir/s3rver.log" "$dir/verifier.stderr"; do
            [[ -s $f ]] && { echo "--- $f:" >&2; tail -n 20 "$f" >&2; }
        done
        if [[ $created -eq 1 ]]; then
            rm -rf -- "$dir"
            note "failed (the logs above were in $dir, now removed)"
        else
            note "failed; logs are in $dir"
        fi
    fi
}
trap cleanup_on_failure EXIT

# setsid: the peer gets its own session, so it outlives this script and the caller's job control;
# in a non-interactive bash a background child is no group leader, so setsid does not fork and
# $! is the PID of the server itself.
: >"$dir/s3rver.log"     # created here: the background child opens it asynchronously
: >"$dir/verifier.stderr"
setsid node "${node_flags[@]}" "$s3rver_js" -d "$dir/data" -a 127.0.0.1 -p "$s3port" \
    --configure-bucket "$bucket" --no-vhost-buckets --silent \
    >"$dir/s3rver.log" 2>&1 </dev/null &
s3pid=$!
pids+=("$s3pid")
echo "$s3pid s3rver" >>"$dir/pids"

actual_s3port=""
for _ in $(seq 1 300); do
    actual_s3port=$(sed -n 's/^S3rver listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$dir/s3rver.log" || true)
    [[ -n $actual_s3port ]] && break
    kill -0 "$s3pid" 2>/dev/null || die "s3rver exited during start-up"
    sleep 0.1
done
[[ -n $actual_s3port ]] || die "s3rver did not report a port within 30 s"

verifier_args=(--listen "127.0.0.1:$port" --upstream "127.0.0.1:$actual_s3port"
               --port-file "$dir/verifier.port" --log "$log" "${vargs[@]}")
setsid "$py" "$here/sigv4_verifier.py" "${verifier_args[@]}" \
    >"$dir/verifier.stderr" 2>&1 </dev/null &
vpid=$!
pids+=("$vpid")
echo "$vpid verifier" >>"$dir/pids"

vport=""
for _ in $(seq 1 300); do
    [[ -s $dir/verifier.port ]] && { vport=$(cat "$dir/verifier.port"); break; }
    kill -0 "$vpid" 2>/dev/null || die "sigv4_verifier.py exited during start-up"
    sleep 0.1
done
[[ -n $vport ]] || die "sigv4_verifier.py did not report a port within 30 s"

# Both answer: the verifier's health endpoint does a GET / on s3rver.
"$py" - "$vport" <<'EOF' || die "the peer did not answer its health check"
import sys, time, urllib.request
url = "http://127.0.0.1:%s/_s3peer/health" % sys.argv[1]
deadline = time.time() + 30
while True:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            if r.status == 200:
                break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit(1)
    time.sleep(0.1)
EOF

if [[ $ttl -gt 0 ]]; then
    # shellcheck disable=SC2016  # the script is for the inner bash, its arguments follow
    setsid bash -c '
        dir=$1 ttl=$2; shift 2
        trap "kill \$sp 2>/dev/null; exit 0" TERM INT
        sleep "$ttl" & sp=$!; wait $sp
        for p in "$@"; do
            if [[ -r /proc/$p/cmdline ]] && tr "\0" " " </proc/$p/cmdline | grep -qF -- "$dir"; then
                kill "$p" 2>/dev/null
            fi
        done' s3peer-watchdog "$dir" "$ttl" "$vpid" "$s3pid" >/dev/null 2>&1 </dev/null &
    wpid=$!
    pids+=("$wpid")
    echo "$wpid watchdog" >>"$dir/pids"
fi

trap - EXIT

ak1=${users[0]%%:*} sk1=${users[0]#*:}
{
    printf 'export S3PEER_ENDPOINT=%q\n' "http://127.0.0.1:$vport"
    printf 'export S3PEER_BUCKET=%q\n' "$bucket"
    printf 'export S3PEER_ACCESS_KEY=%q\n' "$ak1"
    printf 'export S3PEER_SECRET_KEY=%q\n' "$sk1"
    if [[ ${#users[@]} -ge 2 ]]; then
        printf 'export S3PEER_ACCESS_KEY2=%q\n' "${users[1]%%:*}"
        printf 'export S3PEER_SECRET_KEY2=%q\n' "${users[1]#*:}"
    fi
    printf 'export S3PEER_REGION=%q\n' "${regions%%,*}"
    printf 'export S3PEER_PIDS=%q\n' "${pids[*]}"
    printf 'export S3PEER_DIR=%q\n' "$dir"
    printf 'export S3PEER_LOG=%q\n' "$log"
    printf 'export S3PEER_S3RVER_ENDPOINT=%q\n' "http://127.0.0.1:$actual_s3port"
    printf 'export S3PEER_PYTHON=%q\n' "$py"
} >"$dir/env"
cat "$dir/env"
note "up: verifier http://127.0.0.1:$vport (pid $vpid) -> s3rver 127.0.0.1:$actual_s3port (pid $s3pid), dir $dir"
