#!/usr/bin/env python3
"""Generate tilekit's single-header distribution in single_include/tilekit/.

    python3 tools/amalgamate.py            # regenerate the committed files
    python3 tools/amalgamate.py --check    # fail (with a diff) if they are stale, or if a
                                           # header under include/tilekit/ is in no output

Every `#include <tilekit/...>` is replaced by the file it names, once, recursively and in order;
a `// #include <tilekit/...>` marker stays behind so the output reads (and diffs) like the
sources. Other includes pass through untouched. An add-on header (fast_codecs.hpp,
streaming_decode.hpp, s3.hpp, sqlite.hpp) opens with `#include "tilekit.hpp"` and inlines only the headers that the
core does not already contain. The output is deterministic: no timestamps, LF line endings.

Limits: a tilekit include must sit at file scope (not inside #if/#ifdef: inlining it "once" would
be wrong if the first occurrence were compiled out) and must not be inside a block comment or
a raw string literal. The script refuses the first case and does not look for the others.
"""

import argparse
import difflib
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INCLUDE_DIR = ROOT / "include"
OUTPUT_DIR = ROOT / "single_include" / "tilekit"

# Output file -> (source header under include/, output whose contents it builds on, or None).
# An add-on is one line here, e.g. "s3.hpp": ("tilekit/s3.hpp", "tilekit.hpp").
OUTPUTS = {
    "tilekit.hpp": ("tilekit/tilekit.hpp", None),
    "fast_codecs.hpp": ("tilekit/fast_codecs.hpp", "tilekit.hpp"),
    "streaming_decode.hpp": ("tilekit/streaming_decode.hpp", "tilekit.hpp"),
    "s3.hpp": ("tilekit/s3.hpp", "tilekit.hpp"),
    "sqlite.hpp": ("tilekit/sqlite.hpp", "tilekit.hpp"),
    "tile_generation.hpp": ("tilekit/tile_generation.hpp", "streaming_decode.hpp"),
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


def generate(output):
    source, base = OUTPUTS[output]
    lines = [
        "#pragma once",
        f"// tilekit {tilekit_version()}: single-header distribution, generated from include/{source}",
        "// by tools/amalgamate.py. Do not edit: change include/tilekit/ and rerun the script.",
        "",
    ]
    seen = set()
    if base:
        lines += [f'#include "{base}"', ""]
        seen = contents_of(base)
    inline(source, seen, lines)
    return "\n".join(lines) + "\n"


def write(directory):
    check_disjoint()
    directory.mkdir(parents=True, exist_ok=True)
    for output in OUTPUTS:
        (directory / output).write_bytes(generate(output).encode("utf-8"))


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
    missing = orphans()
    if missing:
        print(f"amalgamate: not in any single-include output: {', '.join(missing)}. Include them from an "
              "umbrella header or add an entry to OUTPUTS in tools/amalgamate.py.", file=sys.stderr)
    if stale:
        print(f"\namalgamate: single_include/ is stale ({', '.join(stale)}). Run "
              "`python3 tools/amalgamate.py` and commit the result.", file=sys.stderr)
    if stale or missing:
        return 1
    print(f"amalgamate: single_include/ is up to date ({', '.join(OUTPUTS)})")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="fail with a diff if single_include/ differs from a fresh generation")
    args = parser.parse_args()
    if args.check:
        return check()
    write(OUTPUT_DIR)
    for output in OUTPUTS:
        print(f"amalgamate: wrote {(OUTPUT_DIR / output).relative_to(ROOT)}")
    for header in orphans():
        print(f"amalgamate: warning: <{header}> is not in any output (--check will fail)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
