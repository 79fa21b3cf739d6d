#!/usr/bin/env python3
"""Fills vendor/ (OpenSeadragon and Leaflet, the viewer's only scripts) from the npm registry
without Node.js: for each package in vendor-files.json it downloads the tarball of the version
pinned in package-lock.json, checks it against the lockfile's integrity hash (sha512, as npm ci
does), and copies the listed files into vendor/. Standard library only.

    python3 fetch-vendor.py [--registry URL] [--force]

Why not `npm ci`: on a fresh Debian 12, Debian's npm brings ~400 node-* packages just to fetch
two tarballs; this needs only python3. `npm ci` still works (its postinstall runs copy-vendor.js
over the same vendor-files.json). Does nothing when vendor/ already matches the lockfile (a
stamp file records the versions and hashes it was made from). The registry is --registry, else
$NPM_CONFIG_REGISTRY, else https://registry.npmjs.org.
"""

import argparse
import base64
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENDOR = HERE / "vendor"
STAMP = VENDOR / ".fetched-from"


def fail(message):
    sys.exit(f"fetch-vendor: {message}")


def pinned_packages():
    """{name: (version, integrity)} for every package vendor-files.json names."""
    lock = json.loads((HERE / "package-lock.json").read_text())
    files = json.loads((HERE / "vendor-files.json").read_text())
    pins = {}
    for name in (n for n in files if not n.startswith("_")):
        entry = lock.get("packages", {}).get(f"node_modules/{name}")
        if not entry or "version" not in entry or "integrity" not in entry:
            fail(f"package-lock.json has no version and integrity for {name}")
        pins[name] = (entry["version"], entry["integrity"])
    return pins, files


def download(url):
    request = urllib.request.Request(url, headers={"User-Agent": "tilekit-fetch-vendor"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.read()


def check_integrity(data, integrity, what):
    # Subresource Integrity: "sha512-<base64>", possibly several separated by spaces.
    for item in integrity.split():
        algorithm, _, expected = item.partition("-")
        if algorithm in ("sha512", "sha384", "sha256"):
            actual = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
            if actual != expected:
                fail(f"{what}: {algorithm} is {actual}, package-lock.json says {expected}: refusing it")
            return
    fail(f"{what}: no sha256/384/512 hash in package-lock.json's integrity {integrity!r}")


def extract(data, into):
    """Extracts an npm tarball (every member under package/) safely: regular files and folders only."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if not parts or parts[0] != "package" or ".." in parts or Path(member.name).is_absolute():
                fail(f"unexpected path in the tarball: {member.name!r}")
            target = into.joinpath(*parts[1:])
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as src, open(target, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            # links and devices are skipped: the viewer needs none


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", default=os.environ.get("NPM_CONFIG_REGISTRY") or "https://registry.npmjs.org")
    parser.add_argument("--force", action="store_true", help="fetch even when vendor/ is up to date")
    args = parser.parse_args()

    pins, files = pinned_packages()
    stamp = json.dumps(pins, sort_keys=True)
    if not args.force and STAMP.is_file() and STAMP.read_text() == stamp:
        print(f"fetch-vendor: {VENDOR} is up to date")
        return
    registry = args.registry.rstrip("/")
    with tempfile.TemporaryDirectory(prefix="tilekit-vendor.") as tmp:
        staged = Path(tmp) / "vendor"
        for name, (version, integrity) in sorted(pins.items()):
            url = f"{registry}/{name}/-/{name.split('/')[-1]}-{version}.tgz"
            try:
                data = download(url)
            except OSError as e:
                fail(f"cannot download {url}: {e}")
            check_integrity(data, integrity, f"{name}@{version}")
            unpacked = Path(tmp) / name
            extract(data, unpacked)
            for source, target in files[name].items():
                src, dst = unpacked / source, staged / target
                if not src.exists():
                    fail(f"{name}@{version} has no {source}")
                dst.parent.mkdir(parents=True, exist_ok=True)
                (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)
            print(f"fetch-vendor: {name}@{version} ({len(data)} bytes, integrity checked)")
        (staged / STAMP.name).write_text(stamp)
        # Replace vendor/ only once everything is in place: a failed fetch leaves the old one.
        shutil.rmtree(VENDOR, ignore_errors=True)
        shutil.move(str(staged), str(VENDOR))
    print(f"fetch-vendor: wrote {VENDOR}")


if __name__ == "__main__":
    main()
