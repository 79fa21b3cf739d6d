#!/usr/bin/env bash
# The test command: installs the Debian packages it needs (install-deps.sh --test), builds
# tilekit, its tests and examples with CMake (Ninja, Release at -O2, warnings as errors) and runs
# the whole ctest suite.
#   bash scripts/test.sh [extra cmake -D options]
#   BUILD_DIR=/somewhere bash scripts/test.sh      (default: build/ in the source tree)
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh --test

build_dir=${BUILD_DIR:-build}
jobs=$(nproc)
# ccache, when installed (it is not one of the packages: a new machine builds everything once).
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build_dir" -G Ninja "${launcher[@]}" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O2 -DNDEBUG" \
    -DTILEKIT_BUILD_TESTS=ON -DTILEKIT_BUILD_EXAMPLES=ON -DTILEKIT_WERROR=ON \
    -DTILEKIT_SINGLE_INCLUDE=OFF -DTILEKIT_SANITIZE=OFF "$@"  # reset in case build/ was configured otherwise
cmake --build "$build_dir" -j "$jobs"
ctest --test-dir "$build_dir" --output-on-failure -j "$jobs"
