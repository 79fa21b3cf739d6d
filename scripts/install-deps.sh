#!/usr/bin/env bash
# Installs every Debian 12 package that tilekit's build, tests, examples and benchmarks use.
# Does nothing when all of them are already installed; otherwise needs root (or sudo).
set -euo pipefail

packages=(
    g++ cmake ninja-build meson pkg-config python3              # toolchain; python3 runs tools/amalgamate.py
    nlohmann-json3-dev libstb-dev catch2                        # core library and tests
    libdeflate-dev libturbojpeg0-dev libpng-dev libjpeg62-turbo-dev  # tilekit::fast_codecs
    libvips-tools gdal-bin python3-gdal                         # reference tilers the tests compare against
    fonts-dejavu-core time                                      # bench: test images, GNU time
)

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
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
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"
