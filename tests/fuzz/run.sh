#!/usr/bin/env bash
# Builds the libFuzzer targets (clang 14, ASan + UBSan), writes their seed corpora and fuzzes
# each for $FUZZ_SECONDS (default 60). See tests/fuzz/README.md.
#   bash tests/fuzz/run.sh [--target NAME]... [--jobs N] [--regressions] [--build-only]
#     --target NAME   only this target (repeatable); default: all
#     --jobs N        libFuzzer processes per target (-jobs/-workers), default 1
#     --regressions   run each target once over its regression inputs
#                     (tests/fuzz/regressions/generate.py) instead of fuzzing
#     --build-only    build, then stop
# Environment: FUZZ_BUILD_DIR (default /tmp/tilekit-fuzz), FUZZ_SECONDS (default 60),
# CXX_FUZZ (default clang++-14, else clang++).
# Exit status: non-zero when a build fails or any target crashes; the crash input stays in
# $FUZZ_BUILD_DIR/artifacts/<target>/ and the command that reproduces it is printed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source_root=$(cd "$here/../.." && pwd)
build=${FUZZ_BUILD_DIR:-/tmp/tilekit-fuzz}
seconds=${FUZZ_SECONDS:-60}
jobs=1
mode=fuzz
targets=()
all_targets=(decode_memory streaming_decode tiff_decode webp_decode key_sink sigv4 service_request http_body)

while [ $# -gt 0 ]; do
    case $1 in
        --target) targets+=("$2"); shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --regressions) mode=regressions; shift ;;
        --build-only) mode=build; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
    [ -f "$here/$t.cpp" ] || { echo "run.sh: no target '$t' (have: ${all_targets[*]})" >&2; exit 2; }
done

cxx=${CXX_FUZZ:-}
if [ -z "$cxx" ]; then
    if command -v clang++-14 >/dev/null; then cxx=clang++-14; else cxx=clang++; fi
fi
command -v "$cxx" >/dev/null || { echo "run.sh: $cxx not found (scripts/install-deps.sh installs clang)" >&2; exit 1; }

flags=(-std=c++17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -I"$source_root/include")
declare -A extra libs max_len
# The core target compiles stb itself, so stb's decoders are instrumented too.
extra[decode_memory]="-DTILEKIT_STB_IMPLEMENTATION"
extra[streaming_decode]="-DTILEKIT_STB_IMPLEMENTATION"
libs[streaming_decode]=$(pkg-config --libs libpng libturbojpeg libjpeg libdeflate)
extra[tiff_decode]="-DTILEKIT_STB_IMPLEMENTATION"
libs[tiff_decode]=$(pkg-config --libs libtiff-4 libpng libturbojpeg libjpeg libdeflate)
extra[sigv4]=""
libs[sigv4]=$(pkg-config --libs libcrypto)
# The service's HTTP layer (examples/http_service/http/): target.hpp, router.hpp, range.hpp,
# multipart.hpp and upload_file.hpp are header-only, without Boost (Beast is in server.cpp only),
# and request_parsing.hpp needs nlohmann/json only; auth.cpp (the catalog) is not compiled in.
extra[service_request]="-I$source_root/examples/http_service"
extra[http_body]="-I$source_root/examples/http_service"
# The WebP part; stb (for the core headers it includes) compiled in, as above.
extra[webp_decode]="-DTILEKIT_STB_IMPLEMENTATION"
libs[webp_decode]=$(pkg-config --libs libwebp)
max_len=([decode_memory]=65536 [streaming_decode]=65536 [tiff_decode]=65536 [key_sink]=2048 [sigv4]=4096
         [service_request]=8192 [webp_decode]=65536 [http_body]=16384)

mkdir -p "$build/bin" "$build/artifacts" "$build/tmp"
echo "run.sh: building ${targets[*]} with $cxx into $build/bin"
for t in "${targets[@]}"; do
    # shellcheck disable=SC2086  # extra flags and libraries are word lists
    "$cxx" "${flags[@]}" ${extra[$t]:-} "$here/$t.cpp" -o "$build/bin/$t" ${libs[$t]:-}
done
[ "$mode" = build ] && exit 0

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TILEKIT_FUZZ_TMP="$build/tmp"  # key_sink's root and outside directories, http_body's uploads

failed=()
reproducer() {
    local t=$1 file=$2
    echo "run.sh: reproduce with:"
    echo "  ASAN_OPTIONS=$ASAN_OPTIONS UBSAN_OPTIONS=$UBSAN_OPTIONS TILEKIT_FUZZ_TMP=$TILEKIT_FUZZ_TMP $build/bin/$t $file"
}

if [ "$mode" = regressions ]; then
    python3 "$here/regressions/generate.py" "$build/regressions"
    for t in "${targets[@]}"; do
        dir="$build/regressions/$t"
        [ -d "$dir" ] || { echo "run.sh: $t: no regression inputs"; continue; }
        for input in "$dir"/*; do
            if "$build/bin/$t" "$input" > "$build/artifacts/$t-regression.log" 2>&1; then
                echo "run.sh: $t: $(basename "$input"): ok"
            else
                echo "run.sh: $t: $(basename "$input"): FAILED"
                grep -E "runtime error|ERROR: |invariant violated" "$build/artifacts/$t-regression.log" | head -3 | sed 's/^/    /'
                reproducer "$t" "$input"
                failed+=("$t/$(basename "$input")")
            fi
        done
    done
    rm -rf "${TILEKIT_FUZZ_TMP:?}"/*
    if [ ${#failed[@]} -gt 0 ]; then echo "run.sh: regressions FAILED: ${failed[*]}"; exit 1; fi
    echo "run.sh: all regressions passed"
    exit 0
fi

python3 "$here/make_corpus.py" "$build/corpus"
for t in "${targets[@]}"; do
    work="$build/work/$t"  # the corpus libFuzzer grows; seeds stay in corpus/
    artifacts="$build/artifacts/$t"
    mkdir -p "$work" "$artifacts"
    # Inputs of an earlier run's crashes were reported then; only this run's count.
    rm -f "$artifacts"/crash-* "$artifacts"/leak-* "$artifacts"/timeout-* "$artifacts"/oom-*
    log="$build/artifacts/$t.log"
    parallel=()
    [ "$jobs" -gt 1 ] && parallel=(-jobs="$jobs" -workers="$jobs")
    echo "run.sh: fuzzing $t for ${seconds}s (log: $log)"
    status=0
    (cd "$artifacts" && "$build/bin/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len="${max_len[$t]}" \
        -print_final_stats=1 -artifact_prefix="$artifacts/" "${parallel[@]}" "$work" "$build/corpus/$t") > "$log" 2>&1 || status=$?
    # With -jobs, each worker logs to fuzz-N.log in the working directory.
    [ "$jobs" -gt 1 ] && cat "$artifacts"/fuzz-*.log >> "$log" 2>/dev/null && rm -f "$artifacts"/fuzz-*.log
    grep -E "^#[0-9]+.*(DONE|pulse)" "$log" | tail -1 | sed "s/^/run.sh: $t: /" || true
    { grep -E "^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)" "$log" || true; } | tr '\n' ' ' | sed "s/^/run.sh: $t: /"
    echo
    crashes=$(find "$artifacts" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) 2>/dev/null)
    if [ "$status" -ne 0 ] || [ -n "$crashes" ]; then
        echo "run.sh: $t FAILED (exit $status)"
        { grep -E "runtime error|ERROR: |invariant violated|SUMMARY" "$log" || true; } | head -5 | sed 's/^/    /'
        for c in $crashes; do reproducer "$t" "$c"; done
        failed+=("$t")
    fi
    rm -rf "${TILEKIT_FUZZ_TMP:?}"/*
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "run.sh: crashes in: ${failed[*]} (inputs kept in $build/artifacts/; make each a regression in tests/fuzz/regressions/generate.py)"
    exit 1
fi
echo "run.sh: no crashes"
