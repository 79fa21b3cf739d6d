#!/usr/bin/env bash
# End-to-end HTTP tests of tilekit-service: run.sh SERVICE_BINARY TILEKIT_CLI_BINARY [TEST_NAME ...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 2 ] || { echo "usage: $0 SERVICE_BINARY TILEKIT_CLI_BINARY [TEST_NAME ...]" >&2; exit 2; }
exec python3 "$here/test_service.py" "$@"
