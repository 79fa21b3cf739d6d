#!/usr/bin/env bash
# Installs every Debian 12 package that tilekit's build, tests, examples and benchmarks use.
# Does nothing when all of them are already installed; otherwise needs root (or sudo).
#   install-deps.sh           everything (CI's host stages: meson, fuzzing, benchmarks too)
#   install-deps.sh --test    what scripts/test.sh needs: the CMake build and the whole ctest suite
#                             (not meson, clang's fuzzing runtimes or the benchmarks' tools)
#   install-deps.sh --demo    only what scripts/demo.sh needs: the CLI with `tilekit jobs` (its
#                             codecs and optional parts, the service's parts: SQLite, S3, httplib
#                             for configuring). No Node.js: the viewer's OpenSeadragon comes from
#                             the npm registry through python3 (examples/http_service/viewer/fetch-vendor.py)
set -euo pipefail

test_packages=(
    g++ cmake ninja-build pkg-config python3                    # toolchain; python3 runs tools/amalgamate.py
    nlohmann-json3-dev libstb-dev catch2                        # core library and tests
    libdeflate-dev libturbojpeg0-dev libpng-dev libjpeg62-turbo-dev  # tilekit::fast_codecs
    libwebp-dev                                                 # tilekit::webp (WebP tiles and input)
    libtiff-dev                                                 # tilekit::tiff (TIFF / BigTIFF input)
    libvips-tools gdal-bin python3-gdal                         # reference tilers the tests compare against
    libssl-dev libcurl4-openssl-dev                             # tilekit::s3 (OpenSSL 3 libcrypto, libcurl)
    libsqlite3-dev                                              # tilekit::sqlite (the durable job store)
    postgresql libpq-dev                                        # tilekit::postgresql (libpq) and its live tests' private server
    faketime                                                    # queue process tests: a worker whose wall clock is off
    libboost1.81-dev chromium curl                              # examples/http_service (Boost.Beast; conflicts with libboost1.74-dev), its viewer test in headless Chromium, curl for its scripts
    nodejs npm python3-botocore                                 # S3 test peer: s3rver (npm) behind a botocore verifier; playwright-core
)
packages=(
    "${test_packages[@]}"
    meson                                                       # the meson build (CI)
    fonts-dejavu-core time                                      # bench: test images, GNU time
    rclone                                                      # bench: upload baseline (awscli: see below)
    clang libclang-rt-14-dev                                    # tests/fuzz: libFuzzer, ASan and UBSan runtimes for clang 14
)
if [ "${1:-}" = "--test" ]; then
    packages=("${test_packages[@]}")
fi
if [ "${1:-}" = "--demo" ]; then
    packages=(
        g++ cmake ninja-build pkg-config python3
        nlohmann-json3-dev libstb-dev
        libdeflate-dev libturbojpeg0-dev libpng-dev libjpeg62-turbo-dev libwebp-dev libtiff-dev
        libssl-dev libcurl4-openssl-dev libsqlite3-dev
    )
fi
# awscli, the other upload baseline, is not listed: Debian 12's is the v2 line (2.9.19-1, with
# python3-awscrt); the S3 research measured awscli 1.x from pip.

# NodeSource's nodejs package bundles npm and conflicts with Debian's npm package (apt cannot
# install both), so an npm command already on PATH counts as installed.
satisfied_by_command() {
    case $1 in
        npm) command -v npm >/dev/null ;;
        *) return 1 ;;
    esac
}

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' && continue
    satisfied_by_command "$package" && continue
    missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all ${#packages[@]} packages are installed"
    exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: run as root (or install sudo)" >&2; exit 1; }
    sudo=(sudo)
fi
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
