#!/usr/bin/env python3
"""Writes every regression input of the fuzz targets into OUT/<target>/<name>.

    python3 tests/fuzz/regressions/generate.py OUT

Each input is built here by a small function, never stored as a blob: a crash the fuzzer finds
gets a function below (described in words: what the bytes are and what went wrong) and so
becomes a test. `bash tests/fuzz/run.sh --regressions` runs each target once over its inputs;
an input whose bug is still open makes that run fail, as it should.
"""
import os
import struct
import sys
import zlib

REGRESSIONS = {}


def regression(target, name):
    def register(function):
        REGRESSIONS[(target, name)] = function
        return function
    return register


def png_chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def jpeg_segment(marker, payload):
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


@regression("decode_memory", "stb-jpeg-dht-over-256-codes")
def stb_dht_overflow():
    """Found by decode_memory in its first minute (UBSan: index 257 out of bounds for type
    'stbi_uc[257]', stb_image.h stbi__build_huffman, Debian libstb 0.0~git20220908).
    A baseline 8x8 gray JPEG whose DHT segment (placed after the SOF, so read_image_info's
    header scan accepts the file) declares 16 x 17 = 272 Huffman codes. stb sums the 16 counts
    without checking the sum against 256 and writes h->size[0..272] and values[0..271] past the
    end of the 257/256-byte arrays inside its heap-allocated decoder state. Open: tilekit's core
    path reaches it through decode_image(); the fast path (libjpeg) refuses the table."""
    dqt = jpeg_segment(0xDB, b"\x00" + b"\x01" * 64)
    sof = jpeg_segment(0xC0, b"\x08" + struct.pack(">HH", 8, 8) + b"\x01" + b"\x01\x11\x00")
    counts = bytes([17] * 16)
    dht = jpeg_segment(0xC4, b"\x00" + counts + bytes(range(256)) + bytes(range(16)))
    sos = jpeg_segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    return b"\xff\xd8" + dqt + sof + dht + sos + b"\x00" * 16 + b"\xff\xd9"


@regression("decode_memory", "png-gray-trns-channels")
def png_gray_trns():
    """read_image_info() says 1 channel for a gray PNG with a tRNS chunk; decode_image() returns
    2 (stb expands tRNS to alpha; its header scan stops before tRNS). The same for RGB + tRNS
    (3 vs 4). Open; decode_memory tolerates exactly this case unless
    TILEKIT_FUZZ_STRICT_CHANNELS=1, so this input passes by default and documents the issue."""
    raw = b"".join(b"\x00" + bytes([x * 40 for x in range(4)]) for _ in range(3))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 3, 8, 0, 0, 0, 0)) +
            png_chunk(b"tRNS", struct.pack(">H", 40)) + png_chunk(b"IDAT", zlib.compress(raw)) +
            png_chunk(b"IEND", b""))


@regression("streaming_decode", "stb-jpeg-dht-over-256-codes")
def streaming_dht_overflow():
    """The input above through the fast path: libjpeg must refuse it with a tilekit::error."""
    return stb_dht_overflow()


@regression("service_request", "asset-filename-cut-inside-utf8")
def filename_cut_utf8():
    """Found by service_request in its first minute (fixed with tests/unit-service-parsing.cpp):
    an asset upload whose ?filename= is 199 ASCII bytes and then "é" (%C3%A9). The service cut
    the name to 200 bytes, inside the character, stored the object and the asset row, and then
    failed to answer: nlohmann::json::dump() throws type_error 316 on the ill-formed UTF-8, so
    the client got a 500 for an upload that had happened. Percent-encoded bytes that are not
    UTF-8 at all (%80, %C0%AF) did the same."""
    return (b"POST /projects/demo/assets?type=base_map&filename=" + b"a" * 199 + b"%C3%A9.png\n"
            b"Bearer t\n\n\xff\xd8\xff")


@regression("service_request", "asset-filename-ill-formed-utf8")
def filename_ill_formed():
    """The other half of the finding above: ill-formed bytes anywhere in the filename."""
    return b"POST /projects/demo/assets?type=base_map&filename=x%80y%C0%AFz%ED%A0%80.png\nBearer t\n\n\x89PNG"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: generate.py OUT")
    out = sys.argv[1]
    for (target, name), function in sorted(REGRESSIONS.items()):
        os.makedirs(os.path.join(out, target), exist_ok=True)
        with open(os.path.join(out, target, name), "wb") as f:
            f.write(function())
    print("regressions: %d inputs in %s" % (len(REGRESSIONS), out))


if __name__ == "__main__":
    main()
