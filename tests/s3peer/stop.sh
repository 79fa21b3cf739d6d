#!/usr/bin/env bash
# Stop a peer started by start.sh: kills exactly the PIDs recorded in DIR/pids (each only if its
# command line still names DIR, so a recycled PID is never hit), TERM first, KILL after 5 s.
#
#   tests/s3peer/stop.sh                 # DIR from $S3PEER_DIR (as exported by start.sh)
#   tests/s3peer/stop.sh -d DIR [--keep | --clean]
#
# A run directory that start.sh created itself (no -d) is removed unless --keep; a directory
# given to start.sh with -d is kept unless --clean.
set -euo pipefail

dir=${S3PEER_DIR:-} keep=0 clean=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        -d|--dir) [[ $# -ge 2 ]] || { echo "s3peer stop: -d needs a value" >&2; exit 2; }
                  dir=$2; shift 2 ;;
        --keep) keep=1; shift ;;
        --clean) clean=1; shift ;;
        -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "s3peer stop: unknown option $1" >&2; exit 2 ;;
    esac
done
[[ -n $dir ]] || { echo "s3peer stop: no run directory (-d DIR or S3PEER_DIR)" >&2; exit 2; }
[[ -d $dir ]] || { echo "s3peer stop: $dir does not exist (already stopped?)" >&2; exit 0; }
dir=$(cd "$dir" && pwd)
[[ -f $dir/pids ]] || { echo "s3peer stop: $dir/pids not found: not a peer directory" >&2; exit 2; }

ours() {   # alive (not a zombie) and still the process start.sh recorded
    local pid=$1
    [[ -r /proc/$pid/cmdline ]] || return 1
    [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) != Z ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir"
}

targets=()
while read -r pid name; do
    [[ $pid =~ ^[0-9]+$ ]] || continue
    if ours "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        targets+=("$pid:$name")
    fi
done <"$dir/pids"

for _ in $(seq 1 50); do
    alive=0
    for t in "${targets[@]}"; do ours "${t%%:*}" && alive=1; done
    [[ $alive -eq 0 ]] && break
    sleep 0.1
done
for t in "${targets[@]}"; do
    if ours "${t%%:*}"; then
        echo "s3peer stop: ${t#*:} (pid ${t%%:*}) ignored TERM; sending KILL" >&2
        kill -KILL "${t%%:*}" 2>/dev/null || true
    fi
done
echo "s3peer stop: stopped ${#targets[@]} process(es): ${targets[*]:-none}" >&2
: >"$dir/pids"

if [[ $keep -eq 0 && ( $clean -eq 1 || -f $dir/.created-by-start ) ]]; then
    rm -rf -- "$dir"
    echo "s3peer stop: removed $dir" >&2
fi
