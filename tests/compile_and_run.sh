#!/usr/bin/env bash
# Compiles one C++ file the way a user without CMake would, then runs it.
#   usage: compile_and_run.sh OUTPUT SOURCE "PKG-CONFIG MODULES" [COMPILER FLAGS...]
#   env:   CXX (default c++), PKG_CONFIG (default pkg-config), PKG_CONFIG_PATH
set -euo pipefail
output=$1 source=$2 modules=$3
shift 3
# Word splitting of the pkg-config output is intended: it is a list of flags.
# shellcheck disable=SC2086
flags=$(${PKG_CONFIG:-pkg-config} --cflags --libs $modules)
set -x
# shellcheck disable=SC2086
"${CXX:-c++}" "$@" "$source" -o "$output" $flags
"$output"
