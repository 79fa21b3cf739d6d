#!/usr/bin/env python3
"""Generate tilekit's single-header distribution in single_include/tilekit/.

    python3 tools/amalgamate.py                      # regenerate the committed files
    python3 tools/amalgamate.py --check              # fail (with a diff) if they are stale, or if a
                                                     # header under include/tilekit/ is in no output
    python3 tools/amalgamate.py --compile-examples   # build and run the usage lines at the top of
                                                     # each output ($CXX, pkg-config) on single_include/

One output per layer (README "Architecture"): tilekit.hpp (the core), and one per optional part,
each opening with `#include "<its base>"`: fast_codecs.hpp, s3.hpp and jobs.hpp build on
tilekit.hpp, sqlite.hpp and postgresql.hpp on jobs.hpp. Every `#include <tilekit/...>` is replaced by the file it
names, once, recursively and in order; a `// #include <tilekit/...>` marker stays behind so the
output reads (and diffs) like the sources. Other includes pass through untouched; a part inlines
only the headers its base does not already contain. The top of each output says, stb-style, what
it is, what to link and the five lines that use it (--compile-examples proves they work). The
output is deterministic: no timestamps, LF line endings.

Limits: a tilekit include must sit at file scope (not inside #if/#ifdef: inlining it "once" would
be wrong if the first occurrence were compiled out) and must not be inside a block comment or
a raw string literal. The script refuses the first case and does not look for the others.
"""

import argparse
import difflib
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INCLUDE_DIR = ROOT / "include"
OUTPUT_DIR = ROOT / "single_include" / "tilekit"

# Output file -> (source header under include/, output whose contents it builds on, or None).
# A new part is one line here and one entry in BANNERS.
OUTPUTS = {
    "tilekit.hpp": ("tilekit/tilekit.hpp", None),
    "fast_codecs.hpp": ("tilekit/fast_codecs.hpp", "tilekit.hpp"),
    "tiff.hpp": ("tilekit/tiff.hpp", "tilekit.hpp"),
    "s3.hpp": ("tilekit/s3.hpp", "tilekit.hpp"),
    "jobs.hpp": ("tilekit/jobs.hpp", "tilekit.hpp"),
    "sqlite.hpp": ("tilekit/sqlite.hpp", "jobs.hpp"),
    "postgresql.hpp": ("tilekit/postgresql.hpp", "jobs.hpp"),
    "webp.hpp": ("tilekit/webp.hpp", "tilekit.hpp"),
}

# The top of each output: what it is, what to link (Debian packages, pkg-config modules for the
# single header, the installed tilekit's own .pc file), and the five lines that use it (after the
# #include). --compile-examples builds them inside `int main()` (warnings as errors) and runs them
# in a scratch directory holding map.png, huge.png, uploads/map.png and scan.tif, unless "run" is False;
# "check" is what must hold after a run.
BANNERS = {
    "tilekit.hpp": {
        "title": "the core",
        "what": "Tiles a large image into a Deep Zoom or XYZ pyramid and writes it to a sink (a directory,\n"
                "memory, or your own storage_sink). No job code. The optional parts are the other files\n"
                "here, each building on this one: fast_codecs.hpp, tiff.hpp, webp.hpp, s3.hpp, jobs.hpp,\n"
                "sqlite.hpp, postgresql.hpp.",
        "debian": "libstb-dev nlohmann-json3-dev",
        "modules": "stb",
        "pc": "tilekit",
        "note": "Vendoring stb instead of linking libstb: #define TILEKIT_STB_IMPLEMENTATION in one .cpp.",
        "example": [
            "#include <tilekit/tilekit.hpp>",
            "tilekit::filesystem_sink sink(\"out\");",
            "tilekit::pyramid_options options;  // Deep Zoom, PNG tiles of 254 px, overlap 1",
            "options.layout = tilekit::layout_type::xyz;",
            "tilekit::pyramid_metadata m = tilekit::tile_file(\"map.png\", sink, options);",
        ],
        "check": "m.tile_count > 0",
    },
    "fast_codecs.hpp": {
        "title": "the fast_codecs part",
        "what": "Streaming libpng / libjpeg decoders (the image is never held whole) and libdeflate PNG /\n"
                "libjpeg-turbo JPEG tile encoders. Including it makes them the default of tile_file()\n"
                "and tile_memory() in the whole program.",
        "debian": "libdeflate-dev libturbojpeg0-dev libpng-dev libjpeg62-turbo-dev",
        "modules": "stb libdeflate libturbojpeg libpng libjpeg",
        "pc": "tilekit-fast-codecs",
        "example": [
            "#include <tilekit/fast_codecs.hpp>",
            "tilekit::filesystem_sink sink(\"out\");",
            "tilekit::pyramid_options options;",
            "options.format = tilekit::tile_format::jpeg;  // libjpeg-turbo tiles",
            "tilekit::tile_file(\"huge.png\", sink, options);  // streamed through libpng",
        ],
    },
    "tiff.hpp": {
        "title": "the tiff part",
        "what": "A streaming TIFF / BigTIFF reader on libtiff (striped or tiled; none, LZW, Deflate, JPEG,\n"
                "PackBits; 8- and 16-bit gray, RGB, palette, with alpha) that never holds the image.\n"
                "Including it makes tile_file() and tile_memory() read TIFF input in the whole program.",
        "debian": "libtiff-dev",
        "modules": "stb libtiff-4",
        "pc": "tilekit-tiff",
        "note": "tilekit-tiff.pc also defines TILEKIT_HAS_TIFF=1 for code that wants to #if on it.",
        "example": [
            "#include <tilekit/tiff.hpp>",
            "tilekit::filesystem_sink sink(\"out\");",
            "tilekit::pyramid_options options;",
            "options.limits.max_memory_bytes = 64 << 20;  // the reader holds a scanline or a row of tiles",
            "tilekit::pyramid_metadata m = tilekit::tile_file(\"scan.tif\", sink, options);  // streamed through libtiff",
        ],
        "check": "m.tile_count > 0",
    },
    "webp.hpp": {
        "title": "the webp part",
        "what": "WebP tiles through libwebp (lossy with alpha at a quality 1..100, or lossless) and WebP\n"
                "input (whole-image decode, checked against the limits from the header). Including it\n"
                "lets tile_file() write tile_format::webp and read .webp images.",
        "debian": "libwebp-dev",
        "modules": "stb libwebp",
        "pc": "tilekit-webp",
        "example": [
            "#include <tilekit/webp.hpp>",
            "tilekit::filesystem_sink sink(\"out\");",
            "tilekit::pyramid_options options;",
            "options.format = tilekit::tile_format::webp;  // options.lossless = true for exact tiles",
            "tilekit::pyramid_metadata m = tilekit::tile_file(\"map.png\", sink, options);  // image_files/N/C_R.webp",
        ],
        "check": "m.format == \"webp\"",
    },
    "s3.hpp": {
        "title": "the s3 part",
        "what": "S3 / Cloudflare R2 storage: SigV4 signing (OpenSSL 3 libcrypto), a client and a\n"
                "concurrent upload sink (libcurl), presigned URLs, and image sources that download.",
        "debian": "libssl-dev libcurl4-openssl-dev",
        "modules": "stb libcurl libcrypto",
        "pc": "tilekit-s3",
        "note": "tilekit-s3.pc also defines TILEKIT_HAS_S3=1 for code that wants to #if on it.",
        "run": False,  # needs credentials and a bucket: --compile-examples only compiles it
        "example": [
            "#include <tilekit/s3.hpp>",
            "tilekit::s3::s3_sink sink(tilekit::s3::config_from_environment(\"my-bucket\"));  // AWS_* variables",
            "tilekit::pyramid_options options;",
            "options.prefix = \"maps/42/\";",
            "tilekit::tile_file(\"map.png\", sink, options);  // uploads while it tiles",
        ],
    },
    "jobs.hpp": {
        "title": "the jobs part",
        "what": "\"Generate tiles for version N of project X\" as a tracked job: the job record and its\n"
                "state machine, the job_store interface and an in-memory store, progress stages, the\n"
                "draft-version guard and the tile-generation job.",
        "debian": "libstb-dev nlohmann-json3-dev (nothing beyond the core)",
        "modules": "stb",
        "pc": "tilekit-jobs",
        "example": [
            "#include <tilekit/jobs.hpp>",
            "tilekit::jobs::memory_job_store store;  tilekit::jobs::tile_generation_request request;",
            "request.source_key = \"map.png\";  request.project_slug = \"demo\";  request.version = 1;",
            "tilekit::jobs::new_job job;  job.project_id = \"demo\";  job.version_id = \"v1\";  job.payload = tilekit::jobs::to_payload(request);",
            "store.enqueue(job);  tilekit::filesystem_source source(\"uploads\");  tilekit::filesystem_sink sink(\"tiles\");",
            "auto draft = [](const tilekit::jobs::job_record&) { return tilekit::jobs::version_info{1, \"draft\"}; };",
            "auto done = tilekit::jobs::run_next_job(store, {{tilekit::jobs::tile_generation_job, tilekit::jobs::tile_generation_handler(source, sink, draft)}});",
        ],
        "check": "done && done->status == tilekit::jobs::job_status::completed",
    },
    "sqlite.hpp": {
        "title": "the sqlite part",
        "what": "The durable job store: one SQLite file in WAL mode, shared by several threads and\n"
                "processes on one host.",
        "debian": "libsqlite3-dev",
        "modules": "stb sqlite3",
        "pc": "tilekit-sqlite",
        "note": "tilekit-sqlite.pc also defines TILEKIT_HAS_SQLITE=1 for code that wants to #if on it.",
        "example": [
            "#include <tilekit/sqlite.hpp>",
            "tilekit::jobs::sqlite_job_store store(\"jobs.db\");",
            "tilekit::jobs::new_job job;  job.project_id = \"project\";  job.version_id = \"v1\";  store.enqueue(job);",
            "auto claimed = store.claim(\"worker-1\", {tilekit::jobs::tile_generation_job}, std::chrono::seconds(30));",
            "store.report_progress(claimed->lease, 50, \"Generating tiles...\");  // fenced by the lease",
            "tilekit::jobs::job_record done = store.complete(claimed->lease, {{\"levels\", 12}}, \"Done\");",
        ],
        "check": "done.status == tilekit::jobs::job_status::completed",
    },
    "postgresql.hpp": {
        "title": "the postgresql part",
        "what": "The job store for many worker processes on many hosts: PostgreSQL over libpq (SKIP LOCKED\n"
                "claims, fenced writes, LISTEN/NOTIFY wake-ups, the server's clock). Creates its schema.",
        "debian": "libpq-dev",
        "modules": "stb libpq",
        "pc": "tilekit-postgresql",
        "note": "tilekit-postgresql.pc also defines TILEKIT_HAS_POSTGRESQL=1 for code that wants to #if on it.",
        "run": False,  # needs a PostgreSQL server: --compile-examples only compiles it
        "example": [
            "#include <tilekit/postgresql.hpp>",
            "tilekit::jobs::postgresql_job_store store(\"postgresql://app@db.internal/app\");  // schema \"tilekit\"",
            "tilekit::jobs::new_job job;  job.project_id = \"project\";  job.version_id = \"v1\";  store.enqueue(job);",
            "auto claimed = store.claim(\"host-1/worker-1\", {tilekit::jobs::tile_generation_job}, std::chrono::seconds(30));",
            "store.report_progress(claimed->lease, 50, \"Generating tiles...\");  // fenced by the lease",
            "tilekit::jobs::job_record done = store.complete(claimed->lease, {{\"levels\", 12}}, \"Done\");",
        ],
    },
}

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*[<"](tilekit/[^>"]+)[>"]')
PRAGMA_ONCE_RE = re.compile(r"^\s*#\s*pragma\s+once\b")
IF_RE = re.compile(r"^\s*#\s*if")  # #if, #ifdef, #ifndef
ENDIF_RE = re.compile(r"^\s*#\s*endif\b")


def read_lines(path):
    # Normalise line endings so the output is LF whatever the checkout does.
    return path.read_text(encoding="utf-8").replace("\r\n", "\n").split("\n")


def tilekit_version():
    text = (INCLUDE_DIR / "tilekit" / "version.hpp").read_text(encoding="utf-8")
    match = re.search(r'#define\s+TILEKIT_VERSION\s+"([^"]+)"', text)
    if not match:
        sys.exit("amalgamate: TILEKIT_VERSION not found in include/tilekit/version.hpp")
    return match.group(1)


def inline(name, seen, out):
    """Append the lines of header `name` (e.g. "tilekit/image.hpp") to out, inlining its
    tilekit includes that are not in `seen` yet."""
    path = INCLUDE_DIR / name
    if not path.is_file():
        sys.exit(f"amalgamate: <{name}> not found under {INCLUDE_DIR}")
    seen.add(name)
    lines = read_lines(path)
    if lines and lines[-1] == "":
        lines.pop()  # the file's final newline
    depth = 0
    for number, line in enumerate(lines, 1):
        if PRAGMA_ONCE_RE.match(line):
            continue  # the output has a single #pragma once at the top
        if IF_RE.match(line):
            depth += 1
        elif ENDIF_RE.match(line):
            depth -= 1
        match = INCLUDE_RE.match(line)
        if not match:
            out.append(line)
            continue
        target = match.group(1)
        if depth > 0:
            sys.exit(f"amalgamate: {path.relative_to(ROOT)}:{number}: <{target}> is included inside "
                     "#if/#ifdef; move it to file scope")
        out.append(f"// #include <{target}>")
        if target not in seen:
            inline(target, seen, out)


def contents_of(output):
    """The set of headers inlined into `output` (including those of the output it builds on)."""
    source, base = OUTPUTS[output]
    seen = contents_of(base) if base else set()
    inline(source, seen, [])
    return seen


def check_disjoint():
    """Two add-ons on the same base must not both inline a header: a TU including both would
    see it twice (no #pragma once is left around it). Chain them through `base` instead."""
    owner = {}
    for output, (_, base) in OUTPUTS.items():
        for header in contents_of(output) - (contents_of(base) if base else set()):
            if header in owner:
                sys.exit(f"amalgamate: <{header}> would be inlined into both {owner[header]} and {output}; "
                         f"make one of them the base of the other in OUTPUTS")
            owner[header] = output


def orphans():
    """Headers under include/tilekit/ that no output contains: single-header users would lack them."""
    covered = set().union(*(contents_of(output) for output in OUTPUTS))
    every = {path.relative_to(INCLUDE_DIR).as_posix() for path in (INCLUDE_DIR / "tilekit").rglob("*.hpp")}
    return sorted(every - covered)


def chain(output):
    """The output and the outputs it builds on, base first: sqlite.hpp -> [tilekit, jobs, sqlite]."""
    base = OUTPUTS[output][1]
    return (chain(base) if base else []) + [output]


def banner(output):
    source, base = OUTPUTS[output]
    info = BANNERS[output]
    target = "tilekit" if output == "tilekit.hpp" else output[:-len(".hpp")]
    lines = [f"// tilekit {tilekit_version()}, single header <tilekit/{output}>: {info['title']}."]
    lines += [f"// {line}" for line in info["what"].split("\n")]
    lines.append("//")
    if base:
        needs = chain(output)[:-1]
        lines.append(f"// Needs {' and '.join(needs)} beside it (it includes {'them' if len(needs) > 1 else 'it'}).")
    lines += [
        f"// Link (Debian: {info['debian']}):",
        f"//   c++ -std=c++17 -I single_include app.cpp $(pkg-config --cflags --libs {info['modules']}) -pthread",
        f"// An installed tilekit: `pkg-config {info['pc']}`, or CMake `tilekit::{target}`.",
    ]
    if "note" in info:
        lines.append(f"// {info['note']}")
    lines.append("//")
    lines += [f"//   {line}" for line in info["example"]]
    lines += [
        "//",
        f"// Generated from include/{source} by tools/amalgamate.py. Do not edit: change include/tilekit/",
        "// and rerun the script.",
    ]
    return lines


def generate(output):
    source, base = OUTPUTS[output]
    lines = ["#pragma once"] + banner(output) + [""]
    seen = set()
    if base:
        lines += [f'#include "{base}"', ""]
        seen = contents_of(base)
    inline(source, seen, lines)
    return "\n".join(lines) + "\n"


def tiny_png(width, height):
    """A small RGB PNG (a gradient), written without any imaging library."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)

    rows = b"".join(b"\0" + bytes((x * 255 // width, y * 255 // height, 128) [c] for x in range(width) for c in range(3))
                    for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def tiny_tiff(width, height):
    """An uncompressed little-endian RGB TIFF, one strip, written with the standard library."""
    import struct

    pixels = bytes((x * 255 // width, y * 255 // height, 64)[c] for y in range(height) for x in range(width) for c in range(3))
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, 8), (277, 3, 1, 3), (278, 4, 1, height), (279, 4, 1, len(pixels))]
    ifd_offset = 8 + len(pixels)
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, kind, count) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
        for tag, kind, count, value in entries) + struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", ifd_offset) + pixels + ifd


def compile_examples():
    """Builds the usage lines of every banner against single_include/ and runs them (in a
    scratch directory with the input files they name), except those marked "run": False, which
    are only compiled. Uses $CXX (default c++) and $PKG_CONFIG (default pkg-config)."""
    cxx = shlex.split(os.environ.get("CXX") or "c++")
    pkg_config = os.environ.get("PKG_CONFIG") or "pkg-config"
    failed = []
    with tempfile.TemporaryDirectory(prefix="tilekit-examples-") as tmp:
        for output in OUTPUTS:
            info = BANNERS[output]
            run = info.get("run", True)
            include, body = info["example"][0], info["example"][1:]
            work = Path(tmp) / output[:-len(".hpp")]
            (work / "uploads").mkdir(parents=True)
            for name in ("map.png", "huge.png", "uploads/map.png"):
                (work / name).write_bytes(tiny_png(300, 200))
            (work / "scan.tif").write_bytes(tiny_tiff(300, 200))
            source = work / "example.cpp"
            check = info.get("check", "true")  # what a successful run must leave true
            source.write_text(include + "\n\nint main() {\n" + "".join(f"    {line}\n" for line in body) +
                              f"    return ({check}) ? 0 : 1;\n}}\n", encoding="utf-8")
            flags = subprocess.run([pkg_config, "--cflags"] + (["--libs"] if run else []) + info["modules"].split(),
                                   check=True, capture_output=True, text=True).stdout.split()
            command = cxx + ["-std=c++17", "-Wall", "-Wextra", "-Werror", "-Wno-unused-variable",
                             "-I", str(OUTPUT_DIR.parent), str(source)]
            command += ["-o", str(work / "example"), "-pthread"] + flags if run else ["-fsyntax-only"] + flags
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode == 0 and run:
                result = subprocess.run([str(work / "example")], cwd=work, capture_output=True, text=True)
                command = [str(work / "example"), f"(in {work})"]
            what = "built and ran" if run else "compiled (not run)"
            status = what if result.returncode == 0 else "FAILED"
            print(f"amalgamate: example at the top of single_include/tilekit/{output}: {status}")
            if result.returncode != 0:
                failed.append(output)
                print("  " + " ".join(shlex.quote(part) for part in command))
                print(source.read_text(encoding="utf-8"))
                print(result.stdout + result.stderr)
    if failed:
        print(f"amalgamate: the usage lines at the top of {', '.join(failed)} do not work; fix BANNERS in "
              "tools/amalgamate.py (and regenerate)", file=sys.stderr)
        return 1
    return 0


def write(directory):
    check_disjoint()
    missing = sorted(set(OUTPUTS) ^ set(BANNERS))
    if missing:
        sys.exit(f"amalgamate: OUTPUTS and BANNERS disagree about {', '.join(missing)}")
    directory.mkdir(parents=True, exist_ok=True)
    for output in OUTPUTS:
        (directory / output).write_bytes(generate(output).encode("utf-8"))


def strays():
    """Files in single_include/tilekit/ that no output produces (a retired output, say)."""
    if not OUTPUT_DIR.is_dir():
        return []
    return sorted(p.name for p in OUTPUT_DIR.iterdir() if p.name not in OUTPUTS)


def check():
    """Regenerate into a temporary directory and compare with the committed files."""
    stale = []
    with tempfile.TemporaryDirectory(prefix="tilekit-amalgamate-") as tmp:
        fresh_dir = Path(tmp)
        write(fresh_dir)
        for output in OUTPUTS:
            committed_path = OUTPUT_DIR / output
            fresh = (fresh_dir / output).read_text(encoding="utf-8")
            committed = committed_path.read_text(encoding="utf-8") if committed_path.is_file() else ""
            if committed == fresh:
                continue
            stale.append(output)
            label = f"single_include/tilekit/{output}"
            sys.stdout.writelines(difflib.unified_diff(
                committed.splitlines(keepends=True), fresh.splitlines(keepends=True),
                fromfile=f"{label} (committed)", tofile=f"{label} (regenerated)"))
    stray = strays()
    if stray:
        print(f"amalgamate: single_include/tilekit/ holds files that no output produces: {', '.join(stray)}. "
              "Delete them (running the script does).", file=sys.stderr)
    missing = orphans()
    if missing:
        print(f"amalgamate: not in any single-include output: {', '.join(missing)}. Include them from an "
              "umbrella header or add an entry to OUTPUTS in tools/amalgamate.py.", file=sys.stderr)
    if stale:
        print(f"\namalgamate: single_include/ is stale ({', '.join(stale)}). Run "
              "`python3 tools/amalgamate.py` and commit the result.", file=sys.stderr)
    if stale or missing or stray:
        return 1
    print(f"amalgamate: single_include/ is up to date ({', '.join(OUTPUTS)})")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="fail with a diff if single_include/ differs from a fresh generation")
    parser.add_argument("--compile-examples", action="store_true",
                        help="build (and run) the usage lines at the top of every output ($CXX, pkg-config)")
    args = parser.parse_args()
    if args.check:
        return check()
    if args.compile_examples:
        return compile_examples()
    write(OUTPUT_DIR)
    for output in OUTPUTS:
        print(f"amalgamate: wrote {(OUTPUT_DIR / output).relative_to(ROOT)}")
    for name in strays():
        (OUTPUT_DIR / name).unlink()
        print(f"amalgamate: deleted single_include/tilekit/{name} (no output produces it)")
    for header in orphans():
        print(f"amalgamate: warning: <{header}> is not in any output (--check will fail)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
