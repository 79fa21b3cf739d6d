#!/usr/bin/env bash
# Load on tilekit-service over loopback, with slow clients connected throughout
# (tests/http/load_test.py; ctest runs it briefly as http_service_load).
#
# usage: bench/service_load.sh [-b BUILD_DIR] [-s SECONDS] [-g GET_CLIENTS] [-u UPLOAD_CLIENTS]
#                              [-k SLOW_CLIENTS] [-- SERVICE_ARGS...]
#   -b BUILD_DIR  where tilekit-service and tilekit were built (default build; env BUILD_DIR)
#   -s SECONDS    how long the load runs (default 60)
#   -g N          clients sending GET /jobs/{id} back to back (default 8)
#   -u N          clients uploading a small PNG back to back (default 2)
#   -k N          slow clients: half dribble headers, half a body, a byte a second (default 20)
#   SERVICE_ARGS  passed to tilekit-service, e.g. -- --max-connections 256 --client-timeout 10
#
# Prints, per kind of request: requests/s, median, p99 and max latency, errors. The client is
# Python on the same machine: the figures are the client and the service together.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${BUILD_DIR:-build} seconds=60 gets=8 uploads=2 slow=20
while getopts "b:s:g:u:k:h" opt; do
    case $opt in
        b) build=$OPTARG ;;
        s) seconds=$OPTARG ;;
        g) gets=$OPTARG ;;
        u) uploads=$OPTARG ;;
        k) slow=$OPTARG ;;
        *) sed -n '2,16p' "$0"; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
service=$build/examples/tilekit-service cli=$build/examples/tilekit
for f in "$service" "$cli"; do
    [ -x "$f" ] || { echo "service_load.sh: $f not found (build the tilekit_service and tilekit_cli targets, or -b)" >&2; exit 2; }
done
echo "$(date -u +%FT%TZ) $(nproc) cores; load: uptime $(uptime | sed 's/.*load average: //')"
exec python3 "$here/../tests/http/load_test.py" "$service" "$cli" --seconds "$seconds" --gets "$gets" \
    --uploads "$uploads" --slow "$slow" -- "$@"
