#!/usr/bin/env python3
"""Check that tilekit's headers respect the layers (README "Architecture").

    python3 tools/check_layers.py              # check include/tilekit/; exit 1 on any violation
    python3 tools/check_layers.py --self-test  # prove, on a fake tree, that violations are caught
    python3 tools/check_layers.py --root DIR   # check DIR/include/tilekit/ instead

The layers, lowest first. A header may include its own layer and those listed for it, nothing else:

    core         include/tilekit/*.hpp (except the part umbrellas), sinks/, detail/
                 may include: core
    fast_codecs  fast_codecs/ and <tilekit/fast_codecs.hpp>   may include: core
    tiff         tiff/ and <tilekit/tiff.hpp>                 may include: core
    s3           s3/ and <tilekit/s3.hpp>                     may include: core
    jobs         jobs/ and <tilekit/jobs.hpp>                 may include: core
    sqlite       sqlite/ and <tilekit/sqlite.hpp>             may include: core, jobs
    postgresql   postgresql/ and <tilekit/postgresql.hpp>     may include: core, jobs
    webp         webp/ and <tilekit/webp.hpp>                 may include: core

A part's umbrella must include its base first (<tilekit/tilekit.hpp>; for sqlite.hpp and
postgresql.hpp, <tilekit/jobs.hpp>). The headers of an optional library may be included only by the part that
links it (core: none; fast_codecs: libpng, libjpeg, libjpeg-turbo, libdeflate; tiff: libtiff; webp: libwebp;
s3: OpenSSL, libcurl; sqlite: SQLite; postgresql: libpq). Every `#include <tilekit/...>` and `#include "..."` must name a header
that exists. And a name declared in a header under a detail/ folder must not appear, as
`detail::name`, in a public signature (return or parameter type of a function, a public data
member, base class or alias outside any `detail` namespace): public types live in public headers.

The include check reads every #include line (block comments and `//` lines are ignored, as is
`__has_include`). The detail check is a scanner, not a C++ parser: it follows namespaces,
classes (with their access sections) and function bodies by their braces, and compares the
tokens of each declaration; it can miss a use hidden behind a macro, and says so nowhere else.
"""

import argparse
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Layer -> the layers it may include (besides itself).
ALLOWED = {
    "core": set(),
    "fast_codecs": {"core"},
    "tiff": {"core"},
    "s3": {"core"},
    "jobs": {"core"},
    "sqlite": {"core", "jobs"},
    "postgresql": {"core", "jobs"},
    "webp": {"core"},
}
# Part umbrella (under include/tilekit/) -> its layer, and the header it must include first.
UMBRELLAS = {
    "fast_codecs.hpp": ("fast_codecs", "tilekit/tilekit.hpp"),
    "tiff.hpp": ("tiff", "tilekit/tilekit.hpp"),
    "s3.hpp": ("s3", "tilekit/tilekit.hpp"),
    "jobs.hpp": ("jobs", "tilekit/tilekit.hpp"),
    "sqlite.hpp": ("sqlite", "tilekit/jobs.hpp"),
    "postgresql.hpp": ("postgresql", "tilekit/jobs.hpp"),
    "webp.hpp": ("webp", "tilekit/tilekit.hpp"),
}
# Folders under include/tilekit/ that belong to the core (besides the top-level headers).
CORE_FOLDERS = {"sinks", "detail"}
# Optional libraries' headers -> the one layer that may include them. A pattern ending in '/'
# matches a directory prefix.
LIBRARY_HEADERS = {
    "sqlite3.h": "sqlite",
    "libpq-fe.h": "postgresql",
    "libpq-events.h": "postgresql",
    "libpq/": "postgresql",
    "postgres_ext.h": "postgresql",
    "curl/": "s3",
    "openssl/": "s3",
    "png.h": "fast_codecs",
    "pngconf.h": "fast_codecs",
    "jpeglib.h": "fast_codecs",
    "jerror.h": "fast_codecs",
    "jconfig.h": "fast_codecs",
    "jmorecfg.h": "fast_codecs",
    "turbojpeg.h": "fast_codecs",
    "libdeflate.h": "fast_codecs",
    "tiffio.h": "tiff",
    "tiff.h": "tiff",
    "tiffconf.h": "tiff",
    "tiffvers.h": "tiff",
    "webp/": "webp",
}
HEADER_SUFFIXES = {".hpp", ".h", ".hh", ".hxx", ".ipp", ".inl"}

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


class Violation:
    def __init__(self, path, line, kind, text):
        self.path, self.line, self.kind, self.text = path, line, kind, text

    def __str__(self):
        return f"{self.path}:{self.line}: {self.text}"


def layer_of(rel):
    """The layer of a header, given its path relative to include/tilekit/ (posix), or None."""
    parts = rel.split("/")
    if len(parts) == 1:
        return UMBRELLAS[rel][0] if rel in UMBRELLAS else "core"
    if parts[0] in ALLOWED and parts[0] != "core":
        return parts[0]
    if parts[0] in CORE_FOLDERS:
        return "core"
    return None


def strip_block_comments(lines):
    """The lines with /* ... */ comments blanked (line numbers kept). Not string-aware, which is
    enough for #include lines."""
    out, in_comment = [], False
    for line in lines:
        result, i = "", 0
        while i < len(line):
            if in_comment:
                end = line.find("*/", i)
                if end < 0:
                    i = len(line)
                else:
                    in_comment, i = False, end + 2
            else:
                start = line.find("/*", i)
                slash = line.find("//", i)
                if start < 0 or (0 <= slash < start):
                    result += line[i:]
                    i = len(line)
                else:
                    result += line[i:start] + " "
                    in_comment, i = True, start + 2
        out.append(result)
    return out


def library_layer(name):
    for pattern, layer in LIBRARY_HEADERS.items():
        if (pattern.endswith("/") and name.startswith(pattern)) or name == pattern:
            return layer
    return None


def check_includes(include_root, headers):
    """Layering, umbrella order, library headers and dangling includes."""
    tilekit_dir = include_root / "tilekit"
    violations = []
    for path in headers:
        rel = path.relative_to(tilekit_dir).as_posix()
        shown = path.relative_to(include_root.parent).as_posix() if include_root.parent in path.parents else str(path)
        layer = layer_of(rel)
        if layer is None:
            violations.append(Violation(shown, 1, "unknown-folder",
                                        f"<tilekit/{rel}> is in no layer: its folder is not a part ({', '.join(sorted(p for p in ALLOWED if p != 'core'))}) "
                                        f"nor a core folder ({', '.join(sorted(CORE_FOLDERS))}); add it to tools/check_layers.py"))
            continue
        may = ALLOWED[layer] | {layer}
        first_tilekit = None
        lines = strip_block_comments(path.read_text(encoding="utf-8", errors="replace").splitlines())
        for number, line in enumerate(lines, 1):
            match = INCLUDE_RE.match(line)
            if not match:
                continue
            bracket, name = match.groups()
            target = None  # path relative to include/tilekit/, for tilekit headers
            if bracket == "<" and name.startswith("tilekit/"):
                target = name[len("tilekit/"):]
                if not (tilekit_dir / target).is_file():
                    violations.append(Violation(shown, number, "missing",
                                                f"includes <{name}>, which does not exist under include/"))
                    continue
            elif bracket == '"':
                candidates = [path.parent / name, include_root / name]
                found = next((c.resolve() for c in candidates if c.is_file()), None)
                if found is None:
                    violations.append(Violation(shown, number, "missing",
                                                f'includes "{name}", which resolves to no file (use <tilekit/...>)'))
                    continue
                if tilekit_dir.resolve() in found.parents:
                    target = found.relative_to(tilekit_dir.resolve()).as_posix()
                else:
                    violations.append(Violation(shown, number, "outside",
                                                f'includes "{name}", a file outside include/tilekit/'))
                    continue
            if target is not None:
                if first_tilekit is None:
                    first_tilekit = (number, target)
                target_layer = layer_of(target)
                if target_layer is None:
                    continue  # reported for the target itself
                if target_layer not in may:
                    allowed = ", ".join(sorted(may, key=list(ALLOWED).index))
                    violations.append(Violation(shown, number, "layer",
                                                f"{layer} header includes <tilekit/{target}> ({target_layer}): "
                                                f"{layer} may include only {allowed}"))
                continue
            owner = library_layer(name)
            if owner is not None and owner != layer:
                violations.append(Violation(shown, number, "library",
                                            f"{layer} header includes <{name}>, a header of the {owner} part's "
                                            f"library: only {owner} headers may include it"))
        if rel in UMBRELLAS:
            base = UMBRELLAS[rel][1]
            if first_tilekit is None or first_tilekit[1] != base[len("tilekit/"):]:
                where = first_tilekit[0] if first_tilekit else 1
                got = f"<tilekit/{first_tilekit[1]}>" if first_tilekit else "no tilekit header"
                violations.append(Violation(shown, where, "umbrella",
                                            f"umbrella <tilekit/{rel}> must include <{base}> first (it includes {got} first)"))
    return violations


# ---------------------------------------------------------------------------------------------
# The detail check.

TYPE_DECL_RE = re.compile(r"\b(?:struct|class|union)\s+(?:alignas\s*\([^)]*\)\s*)?([A-Za-z_]\w*)\s*(?:final\b\s*)?(?=[:{;])"
                          r"|\benum\s+(?:class\s+|struct\s+)?([A-Za-z_]\w*)"
                          r"|\busing\s+([A-Za-z_]\w*)\s*=")
ACCESS_RE = re.compile(r"^\s*(public|private|protected)\s*:(?!:)")
NAMESPACE_RE = re.compile(r"^\s*(?:inline\s+)?namespace\b\s*([\w:]*)\s*$")
DETAIL_USE_RE = re.compile(r"\bdetail::([A-Za-z_]\w*)")


def code_of(text):
    """The text with comments, string and character literals and preprocessor lines removed
    (newlines kept, so offsets still map to lines)."""
    out = []
    i, n = 0, len(text)
    at_line_start = True
    while i < n:
        c = text[i]
        if at_line_start:
            j = i
            while j < n and text[j] in " \t":
                j += 1
            if j < n and text[j] == "#":  # a preprocessor line, with its continuations
                while j < n and text[j] != "\n":
                    if text[j] == "\\" and j + 1 < n and text[j + 1] == "\n":
                        out.append("\n")
                        j += 2
                        continue
                    j += 1
                i = j
                continue
        at_line_start = False
        if text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            out.append("\n" * text.count("\n", i, end))
            i = end
            continue
        raw = re.match(r'R"([^(\s]*)\(', text[i:i + 20])
        if raw and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            close = ")" + raw.group(1) + '"'
            end = text.find(close, i + raw.end())
            end = n if end < 0 else end + len(close)
            out.append('""' + "\n" * text.count("\n", i, end))
            i = end
            continue
        if c in "\"'":
            if c == "'" and i > 0 and text[i - 1].isalnum():  # digit separator 1'000
                out.append(c)
                i += 1
                continue
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
            continue
        if c == "\n":
            at_line_start = True
        out.append(c)
        i += 1
    return "".join(out)


def detail_folder_names(headers, tilekit_dir):
    """Names of the types and aliases declared in headers under a detail/ folder."""
    names = {}
    for path in headers:
        rel = path.relative_to(tilekit_dir).as_posix()
        if "detail" not in rel.split("/")[:-1]:
            continue
        code = code_of(path.read_text(encoding="utf-8", errors="replace"))
        for match in TYPE_DECL_RE.finditer(code):
            name = next(g for g in match.groups() if g)
            names.setdefault(name, rel)
    return names


def signature_part(statement):
    """The part of a declaration that is its interface: for a function, the text up to the end
    of its parameter list (dropping a constructor's member initializers and default arguments'
    bodies stay in); otherwise the whole statement up to '=' (an initializer is not an interface),
    except for `using x = ...`, whose right-hand side is the interface."""
    s = statement.strip()
    if re.match(r"^(?:template\s*<.*>\s*)?using\b", s, re.S):
        return s
    depth_angle = 0
    for i, c in enumerate(s):
        if c == "(":
            depth = 0
            for j in range(i, len(s)):
                if s[j] == "(":
                    depth += 1
                elif s[j] == ")":
                    depth -= 1
                    if depth == 0:
                        rest = s[j + 1:]
                        trailing = re.match(r"\s*(?:const\b|noexcept\b|override\b|final\b|&|\s)*->\s*([^{=;]*)", rest)
                        return s[:j + 1] + (" -> " + trailing.group(1) if trailing else "")
            return s
        if c == "=" and depth_angle == 0 and not s[i:].startswith("==") and (i == 0 or s[i - 1] not in "=!<>"):
            if not s[:i].rstrip().endswith("operator"):
                return s[:i]
        if c == "<":
            depth_angle += 1
        elif c == ">" and depth_angle:
            depth_angle -= 1
    return s


def strip_template_head(head):
    """`template <...> struct x` -> `struct x` (balanced angle brackets; repeated)."""
    while True:
        match = re.match(r"\s*template\s*<", head)
        if not match:
            return head
        depth, i = 1, match.end()
        while i < len(head) and depth:
            depth += {"<": 1, ">": -1}.get(head[i], 0)
            i += 1
        head = head[i:]


def scan_declarations(code, on_declaration, on_type):
    """Walks the declarations of a header's code (see code_of). Calls
    on_declaration(text, offset) for every declaration in a public scope (outside any `detail`
    namespace, function body, enum body or non-public class section), and on_type(name, offset)
    for every class, struct, union, enum or alias declared in such a scope."""
    # Scope stack entries: (kind, public) with kind namespace/record/body.
    stack = [("namespace", True)]
    access = []  # the current access of each enclosing record: True when public
    start = 0
    i = 0

    def in_public():
        kind, public = stack[-1]
        return kind != "body" and public and (kind != "record" or access[-1])

    def declaration(text, offset):
        if not in_public():
            return
        body = text.strip()
        if not body or re.match(r"^static_assert\b", body):
            return
        on_declaration(text, offset)
        alias = re.match(r"^(?:template\s*<.*>\s*)?using\s+([A-Za-z_]\w*)\s*=", body, re.S)
        forward = re.match(r"^(?:template\s*<.*>\s*)?(?:class|struct|union|enum(?:\s+class)?)\s+([A-Za-z_]\w*)\s*$", body, re.S)
        for found in (alias, forward):
            if found:
                on_type(found.group(1), offset + len(text) - len(text.lstrip()))

    while i < len(code):
        c = code[i]
        if stack[-1][0] == "body":
            if c == "{":
                stack.append(("body", False))
            elif c == "}":
                stack.pop()
                start = i + 1
            i += 1
            continue
        if c == ";":
            declaration(code[start:i], start)
            start = i + 1
        elif c == ":" and stack[-1][0] == "record" and not code.startswith("::", i) and code[i - 1] != ":":
            match = ACCESS_RE.match(code[start:i + 2])
            if match:
                access[-1] = match.group(1) == "public"
                start = i + 1
        elif c == "{":
            text = code[start:i]
            head = strip_template_head(text).strip()
            offset = start + len(text) - len(text.lstrip())
            namespace = NAMESPACE_RE.match(head)
            record = re.match(r"^(class|struct|union)\b\s*(?:alignas\s*\([^)]*\)\s*)?([A-Za-z_]\w*)?[^(){}=]*$", head)
            if namespace:
                stack.append(("namespace", stack[-1][1] and "detail" not in namespace.group(1).split("::")))
            elif re.match(r'^extern\s*"', head):
                stack.append(("namespace", stack[-1][1]))
            elif re.match(r"^(?:typedef\s+)?enum\b", head):
                name = re.match(r"^(?:typedef\s+)?enum\s+(?:class\s+|struct\s+)?([A-Za-z_]\w*)", head)
                if in_public():
                    on_declaration(text, start)
                    if name:
                        on_type(name.group(1), offset)
                stack.append(("body", False))
            elif record:
                public = in_public()
                if public:
                    on_declaration(text, start)  # the base classes of a public record are public
                    if record.group(2):
                        on_type(record.group(2), offset)
                stack.append(("record", public))
                access.append(record.group(1) != "class")
            else:
                declaration(text, start)  # a function definition (its signature), or an initializer
                stack.append(("body", False))
            start = i + 1
        elif c == "}":
            if len(stack) > 1:
                if stack.pop()[0] == "record":
                    access.pop()
            start = i + 1
        i += 1


def check_detail_in_public(include_root, headers):
    """Public types never live in a detail/ header: a detail/ header declares nothing outside a
    detail namespace, and no public declaration elsewhere names one of its types."""
    tilekit_dir = include_root / "tilekit"
    detail_names = detail_folder_names(headers, tilekit_dir)
    violations = []
    for path in headers:
        rel = path.relative_to(tilekit_dir).as_posix()
        in_detail_folder = "detail" in rel.split("/")[:-1]
        shown = path.relative_to(include_root.parent).as_posix() if include_root.parent in path.parents else str(path)
        code = code_of(path.read_text(encoding="utf-8", errors="replace"))
        code = re.sub(r"\bTILEKIT_NAMESPACE_(?:BEGIN|END)\b", " ", code)

        def line_at(offset):
            return code.count("\n", 0, offset) + 1

        def on_declaration(text, offset):
            if in_detail_folder:
                return  # a detail header's own declarations are checked by on_type
            interface = signature_part(ACCESS_RE.sub("", text))
            for use in DETAIL_USE_RE.finditer(interface):
                name = use.group(1)
                if name in detail_names:
                    lead = len(text) - len(text.lstrip())
                    violations.append(Violation(
                        shown, line_at(offset + lead), "detail",
                        f"public declaration uses detail::{name}, declared in <tilekit/{detail_names[name]}> "
                        f"(a detail/ header): make {name} public in a public header, or keep it out of the "
                        f"interface: `{' '.join(interface.split())[:120]}`"))

        def on_type(name, offset):
            if in_detail_folder:
                violations.append(Violation(
                    shown, line_at(offset), "public-in-detail",
                    f"{name} is declared outside a detail namespace in a detail/ header: public types live in "
                    "public headers (or put it in namespace tilekit::detail)"))

        scan_declarations(code, on_declaration, on_type)
    return violations


def headers_under(include_root):
    tilekit_dir = include_root / "tilekit"
    return sorted(p for p in tilekit_dir.rglob("*") if p.is_file() and p.suffix in HEADER_SUFFIXES)


def check_tree(root):
    include_root = Path(root) / "include"
    if not (include_root / "tilekit").is_dir():
        return [Violation(str(include_root / "tilekit"), 0, "tree", "no include/tilekit/ directory")], 0
    headers = headers_under(include_root)
    violations = check_includes(include_root, headers) + check_detail_in_public(include_root, headers)
    return violations, len(headers)


# ---------------------------------------------------------------------------------------------
# Self-test: a fake tree with known violations, each of which must be reported (and nothing else).

SELF_TEST_TREE = {
    # A clean core.
    "tilekit/tilekit.hpp": "#pragma once\n#include <tilekit/image.hpp>\n#include <tilekit/sinks/memory_sink.hpp>\n",
    "tilekit/detail/pixels.hpp": "#pragma once\nnamespace tilekit { namespace detail {\nstruct pixel_run { int n; };\n"
                                 "using row_bytes = unsigned char*;\n} }\n",
    "tilekit/sinks/memory_sink.hpp": "#pragma once\n#include \"../image.hpp\"\n",
    "tilekit/image.hpp": (
        "#pragma once\n"
        "#include <tilekit/detail/pixels.hpp>\n"
        "/* #include <tilekit/jobs/job.hpp>   (commented out: fine) */\n"
        "// #include <sqlite3.h>              (commented out: fine)\n"
        "#include <vector>\n"
        "namespace tilekit {\n"
        "namespace detail { inline detail::pixel_run internal_only(detail::row_bytes) { return {1}; } }\n"
        "class image {\n"
        "public:\n"
        "    int width() const { detail::pixel_run run{2}; return run.n; }  // a body: fine\n"
        "    image() : run_(detail::pixel_run{3}) {}                       // an initializer: fine\n"
        "private:\n"
        "    detail::pixel_run run_;                                        // private: fine\n"
        "    detail::pixel_run private_helper() const { return run_; }      // private: fine\n"
        "};\n"
        "}\n"),
    # Parts that keep to their layer.
    "tilekit/jobs.hpp": "#pragma once\n#include <tilekit/tilekit.hpp>\n#include <tilekit/jobs/job.hpp>\n",
    "tilekit/jobs/job.hpp": "#pragma once\n#include <tilekit/image.hpp>\n#include \"job_store.hpp\"\n",
    "tilekit/jobs/job_store.hpp": "#pragma once\n#include <string>\n",
    "tilekit/sqlite.hpp": "#pragma once\n#include <tilekit/jobs.hpp>\n#include <tilekit/sqlite/store.hpp>\n",
    "tilekit/sqlite/store.hpp": "#pragma once\n#include <tilekit/jobs/job_store.hpp>\n#include <sqlite3.h>\n",
    "tilekit/fast_codecs.hpp": "#pragma once\n#include <tilekit/tilekit.hpp>\n#include <tilekit/fast_codecs/png.hpp>\n",
    "tilekit/fast_codecs/png.hpp": "#pragma once\n#include <png.h>\n#include <tilekit/fast_codecs/detail/input.hpp>\n",
    "tilekit/fast_codecs/detail/input.hpp": "#pragma once\nnamespace tilekit { namespace detail { class encoded_input {}; } }\n",
    # The violations (line numbers below).
    "tilekit/progress.hpp": (
        "#pragma once\n"
        "#include <tilekit/image.hpp>\n"
        "#include <tilekit/jobs/job.hpp>\n"          # 3: core includes jobs
        "  #  include <sqlite3.h>\n"                  # 4: core includes SQLite
        "#include <curl/curl.h>\n"                    # 5: core includes libcurl
        "#include \"jobs/job_store.hpp\"\n"           # 6: core includes jobs, quoted
        "#include <tilekit/no_such_header.hpp>\n"     # 7: dangling
        "namespace tilekit {\n"
        "struct progress {\n"
        "    detail::pixel_run last;\n"               # 10: public member of a detail type
        "    int count(detail::row_bytes row) const { return row != nullptr; }\n"  # 11: parameter
        "};\n"
        "inline detail::pixel_run first_run() { return {0}; }\n"  # 13: return type
        "using public_input = detail::encoded_input;\n"         # 14: public alias of a detail type
        "}\n"),
    "tilekit/s3.hpp": "#pragma once\n#include <tilekit/s3/client.hpp>\n#include <tilekit/tilekit.hpp>\n",  # 2: umbrella order
    "tilekit/s3/client.hpp": (
        "#pragma once\n"
        "#include <tilekit/jobs/job.hpp>\n"           # 2: s3 includes jobs
        "#include <openssl/evp.h>\n"
        "#include <png.h>\n"                          # 4: s3 includes the fast codecs' library
        "#include <tilekit/sqlite.hpp>\n"             # 5: s3 includes sqlite
        "namespace tilekit { namespace s3 {\n"
        "class client : public detail::encoded_input {\n"  # 7: public base of a detail type
        "};\n"
        "} }\n"),
    "tilekit/jobs/runner.hpp": "#pragma once\n#include <tilekit/sqlite/store.hpp>\n#include <tilekit/fast_codecs.hpp>\n",  # 2, 3
    "tilekit/misc/thing.hpp": "#pragma once\n",       # 1: a folder in no layer
    "tilekit/detail/colors.hpp": (
        "#pragma once\n"
        "namespace tilekit {\n"
        "struct rgba_color { int r, g, b, a; };\n"      # 3: a public type in a detail/ header
        "namespace detail { struct mixer {}; }\n"
        "}\n"),
}
SELF_TEST_EXPECTED = {
    ("include/tilekit/progress.hpp", 3, "layer"),
    ("include/tilekit/progress.hpp", 4, "library"),
    ("include/tilekit/progress.hpp", 5, "library"),
    ("include/tilekit/progress.hpp", 6, "layer"),
    ("include/tilekit/progress.hpp", 7, "missing"),
    ("include/tilekit/progress.hpp", 10, "detail"),
    ("include/tilekit/progress.hpp", 11, "detail"),
    ("include/tilekit/progress.hpp", 13, "detail"),
    ("include/tilekit/progress.hpp", 14, "detail"),
    ("include/tilekit/s3.hpp", 2, "umbrella"),
    ("include/tilekit/s3/client.hpp", 2, "layer"),
    ("include/tilekit/s3/client.hpp", 4, "library"),
    ("include/tilekit/s3/client.hpp", 5, "layer"),
    ("include/tilekit/s3/client.hpp", 7, "detail"),
    ("include/tilekit/jobs/runner.hpp", 2, "layer"),
    ("include/tilekit/jobs/runner.hpp", 3, "layer"),
    ("include/tilekit/misc/thing.hpp", 1, "unknown-folder"),
    ("include/tilekit/detail/colors.hpp", 3, "public-in-detail"),
}


def self_test():
    with tempfile.TemporaryDirectory(prefix="tilekit-check-layers-") as tmp:
        root = Path(tmp)
        for name, text in SELF_TEST_TREE.items():
            path = root / "include" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        violations, count = check_tree(root)
        got = {(v.path, v.line, v.kind) for v in violations}
        missed = SELF_TEST_EXPECTED - got
        extra = got - SELF_TEST_EXPECTED
        for v in violations:
            print(f"  reported: {v}")
        if missed or extra:
            for item in sorted(missed):
                print(f"check_layers self-test: NOT caught: {item[0]}:{item[1]} ({item[2]})", file=sys.stderr)
            for item in sorted(extra):
                print(f"check_layers self-test: false alarm: {item[0]}:{item[1]} ({item[2]})", file=sys.stderr)
            return 1
        # A clean tree passes: the same tree without the violating files.
        for name in ("tilekit/progress.hpp", "tilekit/s3.hpp", "tilekit/s3/client.hpp", "tilekit/jobs/runner.hpp",
                     "tilekit/misc/thing.hpp", "tilekit/detail/colors.hpp"):
            (root / "include" / name).unlink()
        clean, _ = check_tree(root)
        if clean:
            for v in clean:
                print(f"check_layers self-test: false alarm on the clean tree: {v}", file=sys.stderr)
            return 1
    print(f"check_layers self-test: all {len(SELF_TEST_EXPECTED)} planted violations caught "
          f"(in {count} fake headers), none reported on the clean tree")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--self-test", action="store_true", help="check the checker on a fake tree")
    parser.add_argument("--root", default=str(ROOT), help="source tree holding include/tilekit/ (default: this one)")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    violations, count = check_tree(args.root)
    for v in violations:
        print(v, file=sys.stderr)
    if violations:
        print(f"check_layers: {len(violations)} violation(s) in {count} headers; the layers are described at the "
              "top of tools/check_layers.py and in README \"Architecture\"", file=sys.stderr)
        return 1
    print(f"check_layers: {count} headers keep to their layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
