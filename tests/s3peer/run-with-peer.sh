#!/usr/bin/env bash
# Run a command with three S3 test peers up, then stop them (whatever the command's outcome):
#   clean   S3PEER_ENDPOINT (+ the other S3PEER_* of start.sh)   no faults
#   flaky   S3PEER_FLAKY_ENDPOINT    on PUT: 10% 503 SlowDown, 10% 500 InternalError,
#                                    2.5% dropped (no response), 2.5% reset (RST)
#   broken  S3PEER_BROKEN_ENDPOINT   every PUT answers 503 SlowDown
# Faults hit PUTs only, so reading back through the same peer is reliable. All three share the
# bucket name and the credentials (S3PEER_BUCKET, S3PEER_ACCESS_KEY, ...), not the data.
#
#   tests/s3peer/run-with-peer.sh [--] COMMAND [ARGS...]
#   e.g. tests/s3peer/run-with-peer.sh build/tests/tilekit_tests '[.s3-live]'
#
# Exits with COMMAND's status. S3PEER_RUN_TTL (default 3600) bounds the peers' life if this
# script is killed before it can stop them.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ ${1:-} == -- ]] && shift
if [[ $# -eq 0 ]]; then
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
fi

dirs=()
# shellcheck disable=SC2317  # called through the EXIT trap
cleanup() {
    local d
    for d in "${dirs[@]}"; do bash "$here/stop.sh" -d "$d" 2>/dev/null || true; done
}
trap cleanup EXIT

# start.sh's export lines for one peer (start.sh cleans up after itself if it fails; the caller
# records the run directory for cleanup right after).
start_peer() { bash "$here/start.sh" --ttl "${S3PEER_RUN_TTL:-3600}" "$@"; }
endpoint_of() { (eval "$1"; echo "$S3PEER_ENDPOINT"); }

clean=$(start_peer)
dirs+=("$(eval "$clean"; echo "$S3PEER_DIR")")
flaky=$(start_peer --slowdown 0.1 --internal-error 0.1 --drop 0.025 --reset 0.025 \
    --fault-methods PUT --seed 11)
dirs+=("$(eval "$flaky"; echo "$S3PEER_DIR")")
broken=$(start_peer --always-fail --fault-methods PUT)
dirs+=("$(eval "$broken"; echo "$S3PEER_DIR")")

eval "$clean"
S3PEER_FLAKY_ENDPOINT=$(endpoint_of "$flaky")
S3PEER_BROKEN_ENDPOINT=$(endpoint_of "$broken")
export S3PEER_FLAKY_ENDPOINT S3PEER_BROKEN_ENDPOINT
echo "s3peer: clean $S3PEER_ENDPOINT, flaky $S3PEER_FLAKY_ENDPOINT, broken $S3PEER_BROKEN_ENDPOINT" >&2

set +e
"$@"
rc=$?
set -e
exit "$rc"
