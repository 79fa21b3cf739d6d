#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/*.cpp) into OUT/<target>/.

    python3 tests/fuzz/make_corpus.py [OUT]      (default: ${FUZZ_BUILD_DIR:-/tmp/tilekit-fuzz}/corpus)

Nothing here is committed as a binary: every seed is generated. PNGs are written by hand
(zlib + struct): every colour type and bit depth, interlaced (Adam7) and not, palettes with
tRNS, ancillary chunks, several IDATs. JPEGs come from the vips CLI (baseline, progressive,
restart markers, chroma subsampling off, gray, CMYK) when it is installed. A few truncated and
garbled variants of each are added. The text targets get small text seeds in the formats their
sources describe.
"""
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

# ---------------------------------------------------------------------------------------- PNG

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def sample(x, y, c, depth, rng):
    top = (1 << depth) - 1
    return (x * 7 + y * 13 + c * 29 + rng.randrange(3)) % (top + 1)


def pack_row(samples, depth):
    if depth == 8:
        return bytes(samples)
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    out, acc, bits = bytearray(), 0, 0
    for s in samples:
        acc = (acc << depth) | s
        bits += depth
        if bits == 8:
            out.append(acc)
            acc, bits = 0, 0
    if bits:
        out.append(acc << (8 - bits))
    return bytes(out)


def filter_row(row, prev, bpp, kind):
    """PNG filters 0..4 (the encoder's side)."""
    out = bytearray([kind])
    for i, v in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i] if prev else 0
        c = prev[i - bpp] if prev and i >= bpp else 0
        if kind == 0:
            p = 0
        elif kind == 1:
            p = a
        elif kind == 2:
            p = b
        elif kind == 3:
            p = (a + b) // 2
        else:
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            p = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        out.append((v - p) & 0xFF)
    return bytes(out)


def png_bytes(width, height, color, depth, interlace=False, palette_size=0, trns=False, ancillary=False,
              idat_pieces=1, seed=0):
    rng = random.Random(seed)
    channels = CHANNELS[color]
    bpp = max(1, channels * depth // 8)
    pixel = [[[sample(x, y, c, depth, rng) for c in range(channels)] for x in range(width)] for y in range(height)]
    if color == 3:
        palette_size = palette_size or min(1 << depth, 256)
        for row in pixel:
            for px in row:
                px[0] %= palette_size
    raw = bytearray()
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for (x0, y0, dx, dy) in passes:
        xs = list(range(x0, width, dx))
        ys = list(range(y0, height, dy))
        if not xs or not ys:
            continue
        prev = None
        for n, y in enumerate(ys):
            row = pack_row([s for x in xs for s in pixel[y][x]], depth)
            raw += filter_row(row, prev, bpp, (n + y) % 5)
            prev = row
    out = PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 1 if interlace else 0))
    if ancillary:
        out += chunk(b"gAMA", struct.pack(">I", 45455))
        out += chunk(b"pHYs", struct.pack(">IIB", 2835, 2835, 1))
        out += chunk(b"tEXt", b"Comment\x00tilekit fuzz seed")
        out += chunk(b"zTXt", b"Software\x00\x00" + zlib.compress(b"make_corpus.py"))
        out += chunk(b"iCCP", b"fake\x00\x00" + zlib.compress(b"not really a profile"))
        out += chunk(b"tIME", struct.pack(">HBBBBB", 2024, 1, 2, 3, 4, 5))
    if color == 3:
        out += chunk(b"PLTE", bytes((i * 37 + k * 91) % 256 for i in range(palette_size) for k in range(3)))
    if trns:
        if color == 3:
            out += chunk(b"tRNS", bytes((i * 51) % 256 for i in range(min(palette_size, 7))))
        elif color == 0:
            out += chunk(b"tRNS", struct.pack(">H", 1))
        elif color == 2:
            out += chunk(b"tRNS", struct.pack(">HHH", 1, 2, 3))
    data = zlib.compress(bytes(raw), 9)
    step = max(1, -(-len(data) // idat_pieces))
    for i in range(0, len(data), step):
        out += chunk(b"IDAT", data[i:i + step])
    if ancillary:
        out += chunk(b"tEXt", b"After\x00the image data")
    return out + chunk(b"IEND", b"")


def png_seeds():
    seeds = {}
    depths = {0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16]}
    n = 0
    for color, ds in depths.items():
        for depth in ds:
            for interlace in (False, True):
                n += 1
                w, h = (13, 9) if n % 2 else (1, 17)
                name = "png-c%d-d%d%s" % (color, depth, "-i" if interlace else "")
                seeds[name + ".png"] = png_bytes(w, h, color, depth, interlace, trns=color in (0, 2, 3) and n % 3 == 0,
                                                 ancillary=n % 4 == 0, idat_pieces=1 + n % 3, seed=n)
    seeds["png-c3-d8-trns-anc.png"] = png_bytes(16, 16, 3, 8, trns=True, ancillary=True, palette_size=20)
    seeds["png-c2-d8-trns-i.png"] = png_bytes(9, 9, 2, 8, interlace=True, trns=True)
    seeds["png-c6-d8-64x48.png"] = png_bytes(64, 48, 6, 8, idat_pieces=4)
    seeds["png-c0-d8-1x1.png"] = png_bytes(1, 1, 0, 8)
    return seeds


# --------------------------------------------------------------------------------------- JPEG

def jpeg_seeds(sources, work):
    """JPEGs from the vips CLI; {} without it."""
    vips = shutil.which("vips")
    if not vips:
        print("make_corpus: vips not found; no JPEG seeds (install libvips-tools)", file=sys.stderr)
        return {}
    rgb = os.path.join(work, "rgb.png")
    gray = os.path.join(work, "gray.png")
    with open(rgb, "wb") as f:
        f.write(sources["png-c6-d8-64x48.png"])  # RGBA: vips drops alpha for JPEG
    with open(gray, "wb") as f:
        f.write(png_bytes(40, 24, 0, 8, seed=5))
    jobs = [
        ("jpeg-q90.jpg", rgb, "[Q=90]", []),
        ("jpeg-q20.jpg", rgb, "[Q=20,strip]", []),
        ("jpeg-progressive.jpg", rgb, "[Q=75,interlace]", []),
        ("jpeg-progressive-optscans.jpg", rgb, "[Q=75,interlace,optimize_scans]", []),
        ("jpeg-444.jpg", rgb, "[Q=85,subsample_mode=off]", []),
        ("jpeg-restart.jpg", rgb, "[Q=70,restart_interval=1]", []),
        ("jpeg-optimized.jpg", rgb, "[Q=60,optimize_coding]", []),
        ("jpeg-gray.jpg", gray, "[Q=80]", []),
        ("jpeg-gray-progressive.jpg", gray, "[Q=80,interlace]", []),
    ]
    seeds = {}
    for name, src, options, _ in jobs:
        out = os.path.join(work, name)
        if subprocess.run([vips, "copy", src, out + options], capture_output=True).returncode == 0:
            with open(out, "rb") as f:
                seeds[name] = f.read()
    cmyk = os.path.join(work, "cmyk.jpg")
    for space in ("cmyk",):
        r = subprocess.run([vips, "colourspace", rgb, cmyk + "[Q=80,strip]", space], capture_output=True)
        if r.returncode == 0:
            with open(cmyk, "rb") as f:
                seeds["jpeg-cmyk.jpg"] = f.read()
    if "jpeg-cmyk.jpg" not in seeds:
        print("make_corpus: vips could not write a CMYK JPEG; none in the corpus", file=sys.stderr)
    return seeds


def webp_seeds(sources, work):
    """WebPs from the vips CLI (lossy and lossless, with and without alpha, tiny and odd sizes),
    plus hand-made headers (VP8L claiming 16383x16383, a VP8X animation); {} without vips but
    for the hand-made ones."""
    seeds = {}
    # A VP8L header claiming 16383x16383 over a few junk bytes, and a VP8X with the animation flag.
    vp8l = b"\x2f" + struct.pack("<I", 16382 | (16382 << 14) | (1 << 28)) + bytes(11)
    seeds["webp-vp8l-huge-header.webp"] = (b"RIFF" + struct.pack("<I", 4 + 8 + len(vp8l)) + b"WEBPVP8L" +
                                           struct.pack("<I", len(vp8l)) + vp8l)
    vp8x = bytes([0x02, 0, 0, 0, 9, 0, 0, 9, 0, 0])
    seeds["webp-vp8x-animated.webp"] = b"RIFF" + struct.pack("<I", 4 + 18) + b"WEBPVP8X" + struct.pack("<I", 10) + vp8x
    vips = shutil.which("vips")
    if not vips:
        print("make_corpus: vips not found; only hand-made WebP seeds (install libvips-tools)", file=sys.stderr)
        return seeds
    inputs = {
        "rgba": sources["png-c6-d8-64x48.png"],
        "gray": png_bytes(40, 24, 0, 8, seed=5),
        "rgb-tiny": png_bytes(3, 1, 2, 8, seed=6),
        "rgb-odd": png_bytes(17, 9, 2, 8, seed=7),
    }
    jobs = [
        ("webp-rgba-q75.webp", "rgba", "[Q=75]"),
        ("webp-rgba-lossless.webp", "rgba", "[lossless]"),
        ("webp-rgba-q30-alpha-q50.webp", "rgba", "[Q=30,alpha_q=50]"),
        ("webp-gray-q90.webp", "gray", "[Q=90]"),
        ("webp-gray-lossless.webp", "gray", "[lossless]"),
        ("webp-tiny-lossless.webp", "rgb-tiny", "[lossless]"),
        ("webp-odd-q50.webp", "rgb-odd", "[Q=50,strip]"),
        ("webp-odd-near-lossless.webp", "rgb-odd", "[near_lossless,Q=60]"),
    ]
    for name, source, options in jobs:
        src = os.path.join(work, source + ".png")
        if not os.path.exists(src):
            with open(src, "wb") as f:
                f.write(inputs[source])
        out = os.path.join(work, name)
        if subprocess.run([vips, "copy", src, out + options], capture_output=True).returncode == 0:
            with open(out, "rb") as f:
                seeds[name] = f.read()
    return seeds


def tiff_seeds(sources, work):
    """TIFFs from the vips CLI (`vips tiffsave`) in every layout and compression the TIFF part
    reads, with truncated copies; {} without vips."""
    vips = shutil.which("vips")
    if not vips:
        print("make_corpus: vips not found; no TIFF seeds (install libvips-tools)", file=sys.stderr)
        return {}
    rgba = os.path.join(work, "tiff-rgba.png")
    gray = os.path.join(work, "tiff-gray.png")
    with open(rgba, "wb") as f:
        f.write(sources["png-c6-d8-64x48.png"])
    with open(gray, "wb") as f:
        f.write(png_bytes(40, 24, 0, 8, seed=7))
    gray16 = os.path.join(work, "tiff-gray16.v")
    subprocess.run([vips, "cast", gray, gray16, "ushort", "--shift"], capture_output=True)
    rgb = os.path.join(work, "tiff-rgb.v")
    subprocess.run([vips, "extract_band", rgba, rgb, "0", "--n", "3"], capture_output=True)
    jobs = [
        ("tiff-rgb-none.tif", rgb, []),
        ("tiff-rgb-lzw.tif", rgb, ["--compression", "lzw", "--predictor", "horizontal"]),
        ("tiff-rgb-deflate-tiled.tif", rgb, ["--compression", "deflate", "--tile", "--tile-width", "16", "--tile-height", "16"]),
        ("tiff-rgb-jpeg.tif", rgb, ["--compression", "jpeg", "--Q", "60"]),
        ("tiff-rgb-jpeg-tiled.tif", rgb, ["--compression", "jpeg", "--tile", "--tile-width", "16", "--tile-height", "16"]),
        ("tiff-rgba-packbits.tif", rgba, ["--compression", "packbits"]),
        ("tiff-rgba-bigtiff-tiled.tif", rgba, ["--bigtiff", "--tile", "--tile-width", "32", "--tile-height", "16"]),
        ("tiff-gray-1bit.tif", gray, ["--bitdepth", "1"]),
        ("tiff-gray-miniswhite.tif", gray, ["--miniswhite", "--compression", "lzw"]),
        ("tiff-gray16-deflate.tif", gray16, ["--compression", "deflate"]),
        ("tiff-gray16-bigtiff.tif", gray16, ["--bigtiff"]),
    ]
    seeds = {}
    for name, src, options in jobs:
        out = os.path.join(work, name)
        if subprocess.run([vips, "tiffsave", src, out] + options, capture_output=True).returncode == 0:
            with open(out, "rb") as f:
                seeds[name] = f.read()
    for name in list(seeds):
        if name.endswith(("lzw.tif", "tiled.tif", "jpeg.tif")):
            seeds[name[:-4] + "-truncated.tif"] = seeds[name][: len(seeds[name]) * 2 // 3]
    return seeds


def damaged_variants(seeds):
    """Truncated and garbled copies of some images (deterministic)."""
    rng = random.Random(1234)
    out = {}
    for name in sorted(seeds)[::3]:
        data = seeds[name]
        stem = name.rsplit(".", 1)[0]
        out[stem + "-trunc-half"] = data[: len(data) // 2]
        out[stem + "-trunc-end"] = data[:-3]
        garbled = bytearray(data)
        for _ in range(4):
            i = rng.randrange(16, len(garbled))
            garbled[i] ^= 1 << rng.randrange(8)
        out[stem + "-garbled"] = bytes(garbled)
    return out


# --------------------------------------------------------------------------------------- text

KEY_SEEDS = {
    # key_sink input: the key up to the first newline, then the value.
    "plain": b"tiles/0/0_0.png\nbody",
    "deep": b"mp/demo/uploads/tiles/1/12/3_4.png\n\x89PNG",
    "root-file": b"tilekit.dzi\n<Image/>",
    "through-link": b"link/escape.png\nx",
    "link-itself": b"link\nreplace the link, not the target",
    "dangling": b"dangling/x\ny",
    "file-link": b"file_link\nz",
    "nested-link": b"a/link2/b.png\nw",
    "dotdot": b"../outside\nv",
    "dot": b"a/./b\nv",
    "slashes": b"a//b\nv",
    "absolute": b"/tmp/x\nv",
    "backslash": b"a\\..\\b\nv",
    "nul": b"a\x00b\nv",
    "long-segment": b"d/" + b"s" * 300 + b"\nv",
    "max-segment": b"d/" + b"s" * 255 + b"\nv",
    "long-key": b"/".join([b"k" * 200] * 6) + b"\nv",
    "remove": b"r/x.png\nrm",
    "dir-then-file": b"a\nv",
    "dot-tmp": b".tk00000000-0.tmp\nv",
}

SIGV4_SEEDS = {
    # sigv4 input, newline-separated: key, query, header name, header value, session token,
    # unix seconds (decimal), flags (p = virtual-host style; t = https).
    "simple": b"tiles/0/0_0.png\n\ncontent-type\nimage/png\n\n1700000000\n",
    "specials": b"a b/c+d!'()*.png\nz=1&a=x/y\ncache-control\npublic, max-age=60\nsession\n1700000000\np",
    "unicode": "sp ace+plus/\u00fc(1)!.png".encode() + b"\nprefix=a%2Fb&list-type=2\nx-amz-meta-a\n  folded   value \n\n0\nt",
    "crlf-header": b"k\n\nx-evil\nv\r\nInjected: 1\n\n1700000000\n",
    "tab-header": b"k\n\nx-tab\na\tb\n\n1700000000\n",
    "query-repeats": b"k\na=2&a=1&b&=x&&c=%zz&X-Amz-Signature=f\nh\nv\n\n1700000000\n",
    "query-plus": b"k\nq=a+b&r=a%20b&s=%2B\nh\nv\n\n1700000000\n",
    "far-future": b"k\n\nh\nv\n\n253402300800\n",
    "negative": b"k\n\nh\nv\n\n-62167219200\n",
    "token-specials": b"k\n\nh\nv\nFwoGZXIvYXdzE+/=\n1700000000\n",
}

SERVICE_SEEDS = {
    # service_request input, newline-separated: request line "METHOD TARGET", Authorization,
    # Cookie, then the body (the rest, newlines included).
    "health": b"GET /health\n\n\n",
    "projects": b"GET /projects\nBearer abc\n\n",
    "create-project": b'POST /projects\nBearer abc\n\n{"slug":"demo","name":"Demo"}',
    "create-version": b'POST /projects/demo/versions\nBearer abc\n\n{"number":3,"status":"draft"}',
    "version-big": b'POST /projects/demo/versions\nBearer abc\n\n{"number":18446744073709551615}',
    "version-float": b'POST /projects/demo/versions\nBearer abc\n\n{"number":1.5,"status":7}',
    "version-path": b"GET /projects/demo/versions/0012\nbearer t\n\n",
    "version-leading": b"GET /projects/demo/versions/999999999/viewer?token=abc\n\n\n",
    "version-bad": b"POST /projects/demo/versions/1e3/publish\nBearer x\n\n",
    "assets": b"POST /projects/demo/assets?type=base_map&filename=a%20b.png\nBearer t\n\n\x89PNG\r\n\x1a\n",
    "generate": b"POST /projects/demo/versions/2/generate-tiles?asset_id=0123ABCD-0000-4000-8000-000000000000\nBearer t\n\n",
    "job": b"GET /jobs/0123abcd-0000-4000-8000-00000000000F\n\ntilekit_session=abc; other=1\n",
    "tiles": b"GET /tiles/mp/demo/uploads/tiles/1/tilekit_files/0/0_0.png?token=t\n\n\n",
    "tiles-escape": b"GET /tiles/mp/demo/../../etc/passwd\n\n tilekit_token=x\n",
    "static": b"GET /static/%2e%2e/secret\n\n\n",
    "cookie-only": b"GET /projects\n\n a=1;tilekit_session=tok;b\n",
    "basic": b"GET /projects\nBasic dXNlcjpwYXNz\n\n",
    "json-deep": b"POST /projects\nBearer t\n\n" + b"[" * 200 + b"]" * 200,
    "json-bad": b"POST /projects\nBearer t\n\n{\"slug\":",
    "filename-utf8": b"POST /projects/demo/assets?type=base_map&filename=" + b"a" * 199 + b"%C3%A9.png\nBearer t\n\n\xff\xd8\xff",
    "query-weird": b"GET /projects/demo?=&&a==b&%ZZ=1&token=%00\n\n\n",
    "encoded-slash": b"GET /tiles/mp%2Fdemo%2F..%2Fother/x.png\n\ntilekit_session=s\n",
    "static-rest": b"HEAD /static/a//b/%2e%2E/c%2f\n\n\n",
    "method-405": b"DELETE /projects/demo/versions/7\nBearer t\n\n",
    "viewer-link": b"POST /projects/demo/versions/1/viewer-link\nBearer t\ntilekit_session=s\n{}",
    "cancel": b"POST /jobs/0123abcd-0000-4000-8000-00000000000f/cancel\nBearer t\n\n",
    "plus-query": b"GET /projects/demo/jobs?type=a+b&asset_id=%41%42&filename=%E2%82%AC\n\n\n",
    "root": b"GET /\n\n\n",
    "absolute-form": b"GET http://h/projects\n\n\n",
}


def http_body_seed(cuts, range_header, size, content_type, body):
    """http_body input: the number of cuts, each cut as 2 bytes (little-endian), then the Range
    header, the file size, the Content-Type (one a line), then the body."""
    return (bytes([len(cuts)]) + b"".join(struct.pack("<H", c) for c in cuts) + range_header + b"\n" + size + b"\n" +
            content_type + b"\n" + body)


FORM_BOUNDARY = b"----tilekit7MA4YWxk"
FORM_BODY = (b"--" + FORM_BOUNDARY + b"\r\nContent-Disposition: form-data; name=\"file\"; filename=\"map.png\"\r\n"
             b"Content-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n\r\n--not-it\r\n--" + FORM_BOUNDARY[:5] + b"x\r\n--" +
             FORM_BOUNDARY + b"\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nv\r\n--" + FORM_BOUNDARY + b"--\r\n")
FORM_TYPE = b"multipart/form-data; boundary=" + FORM_BOUNDARY
HTTP_BODY_SEEDS = {
    "form-whole": http_body_seed([], b"bytes=0-99", b"1000", FORM_TYPE, FORM_BODY),
    "form-pieces": http_body_seed([1, 20, 23, 129, 150, 151, 152, 170], b"bytes=-5", b"3", FORM_TYPE, FORM_BODY),
    "form-byte-by-byte": http_body_seed(list(range(0, 30, 2)), b"bytes=5-", b"6", FORM_TYPE, FORM_BODY),
    "form-quoted": http_body_seed([60], b"bytes=0-", b"0", b'Multipart/Form-Data; boundary="' + FORM_BOUNDARY + b'"; x=1',
                                  FORM_BODY),
    "form-no-end": http_body_seed([9], b"bytes=1-0", b"10", FORM_TYPE, FORM_BODY[:140]),
    "form-preamble": http_body_seed([], b"bytes=0-0,1-1", b"10", FORM_TYPE, b"preamble\r\n" + FORM_BODY),
    "form-empty": http_body_seed([3], b"", b"5", b"multipart/form-data; boundary=a", b"--a\r\n\r\n\r\n--a--"),
    "raw": http_body_seed([3, 7], b"bytes=2-4", b"18446744073709551615", b"image/png", b"\x89PNG\r\n\x1a\nrest"),
    "range-units": http_body_seed([], b"items=0-1", b"100", b"", b""),
    "range-spaces": http_body_seed([], b"bytes=0-9 \t", b"9999999999999999999", b"", b"x"),
    "range-suffix-big": http_body_seed([], b"bytes=-18446744073709551615", b"7", b"", b""),
}


def write_dir(path, files):
    os.makedirs(path, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.environ.get("FUZZ_BUILD_DIR", "/tmp/tilekit-fuzz"), "corpus")
    images = png_seeds()
    with tempfile.TemporaryDirectory(prefix="tilekit-corpus-") as work:
        images.update(jpeg_seeds(images, work))
        tiffs = tiff_seeds(images, work)
    images.update(damaged_variants(images))
    with tempfile.TemporaryDirectory(prefix="tilekit-corpus-") as work:
        webps = webp_seeds(images, work)
    webps.update(damaged_variants(webps))
    write_dir(os.path.join(out, "webp_decode"), webps)
    for target in ("decode_memory", "streaming_decode"):
        write_dir(os.path.join(out, target), images)
    write_dir(os.path.join(out, "tiff_decode"), tiffs)
    write_dir(os.path.join(out, "key_sink"), KEY_SEEDS)
    write_dir(os.path.join(out, "sigv4"), SIGV4_SEEDS)
    write_dir(os.path.join(out, "service_request"), SERVICE_SEEDS)
    write_dir(os.path.join(out, "http_body"), HTTP_BODY_SEEDS)
    jpegs = sum(1 for n in images if n.startswith("jpeg"))
    print("make_corpus: %d image seeds (%d JPEG), %d TIFF, %d WebP, %d key, %d sigv4, %d service, %d HTTP body seeds in %s" %
          (len(images), jpegs, len(tiffs), len(webps), len(KEY_SEEDS), len(SIGV4_SEEDS), len(SERVICE_SEEDS),
           len(HTTP_BODY_SEEDS), out))


if __name__ == "__main__":
    main()
