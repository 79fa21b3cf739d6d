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
    end of the 257/256-byte arrays inside its heap-allocated decoder state. Fixed: the core path
    refuses the table before stb parses it (detail/jpeg_check.hpp); libjpeg refuses it too."""
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
    (3 vs 4). Fixed: read_image_info reports the decoded count; decode_memory checks they match."""
    raw = b"".join(b"\x00" + bytes([x * 40 for x in range(4)]) for _ in range(3))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 3, 8, 0, 0, 0, 0)) +
            png_chunk(b"tRNS", struct.pack(">H", 40)) + png_chunk(b"IDAT", zlib.compress(raw)) +
            png_chunk(b"IEND", b""))


@regression("decode_memory", "jpeg-dht-codes-longer-than-their-length")
def dht_codes_overflow_length():
    """Found by decode_memory in tilekit's own JPEG check (UBSan: index 257 out of bounds for
    std::array<unsigned char, 256>, jpeg_checker::build): three 1-bit codes, whose third code
    (2) does not fit in 1 bit, were written into the 8-bit lookup table before the check that
    refuses them. The check now comes first."""
    counts = bytes([3] + [0] * 15)
    dht = jpeg_segment(0xC4, b"\x00" + counts + b"\x01\x02\x03")
    return b"\xff\xd8" + dht + b"\xff\xd9"


@regression("decode_memory", "jpeg-scan-with-undefined-huffman-table")
def undefined_table():
    """stb's decoder state is not zeroed, so a scan using a Huffman table the file never
    defined reads uninitialised memory (decode_memory once hit STBI_ASSERT in
    stbi__jpeg_huff_decode this way). An 8x8 gray baseline JPEG whose scan names DC/AC table 1,
    with only table 0 defined. Refused before stb (detail/jpeg_check.hpp)."""
    dqt = jpeg_segment(0xDB, b"\x00" + b"\x01" * 64)
    sof = jpeg_segment(0xC0, b"\x08" + struct.pack(">HH", 8, 8) + b"\x01" + b"\x01\x11\x00")
    dht = jpeg_segment(0xC4, b"\x00" + bytes([1] + [0] * 15) + b"\x00" + b"\x10" + bytes([1] + [0] * 15) + b"\x00")
    sos = jpeg_segment(0xDA, b"\x01\x01\x11\x00\x3f\x00")
    return b"\xff\xd8" + dqt + sof + dht + sos + b"\x00" * 16 + b"\xff\xd9"


@regression("decode_memory", "gif-named-png")
def gif_named_png():
    """The issue's 35-byte GIF that stb decoded into a 10000x10000 image (an 11,000-tile
    pyramid): refused as not_an_image, naming GIF."""
    return (b"GIF89a" + struct.pack("<HH", 10000, 10000) + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff" +
            b"," + struct.pack("<HHHH", 0, 0, 1, 1) + b"\x00" + b"\x02\x02D\x01\x00;")


@regression("decode_memory", "pnm-header-without-data")
def pnm_without_data():
    """A PNM header and no data: stb returned uninitialised heap memory as pixels. Refused."""
    return b"P6\n4000 4000\n255\n"


@regression("decode_memory", "png-74-bytes-claiming-2^28-pixels")
def png_wide():
    """74 bytes, IHDR 2^28 x 1 RGBA: 4 GB of memory before it was refused. Now over the memory
    budget from the header (over_memory_budget), before any allocation."""
    raw = b"\x00" + b"\x00" * 4
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1 << 28, 1, 8, 6, 0, 0, 0)) +
            png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


@regression("decode_memory", "png-inflating-without-end")
def png_bomb():
    """A 1000x1000 gray PNG whose IDAT inflates to 16 MiB (about 16 KB compressed): stb alone
    grows its buffer to hold all of it; the check inflates into exactly the image's size."""
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1000, 1000, 8, 0, 0, 0, 0)) +
            png_chunk(b"IDAT", zlib.compress(b"\x00" * (16 << 20), 9)) + png_chunk(b"IEND", b""))


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


@regression("service_request", "encoded-slash-in-tile-key")
def encoded_slash_tile_key():
    """Not a finding: pinned when the service moved to its own HTTP layer
    (http/target.hpp). "%2F" decodes into a character of its segment, never a separator: the
    request has the segments {"tiles", "mp/demo/../x", "y.png"}, and "/tiles/{*key}" does not
    match a segment holding a '/' (404): encoding cannot add a level to a key."""
    return b"GET /tiles/mp%2Fdemo%2F..%2Fx/y.png?token=t\n\ntilekit_session=s\n"


@regression("service_request", "token-in-query-only")
def token_in_query_only():
    """Not a finding: `?token=` is no longer accepted (auth.hpp). A POST with the token in the
    query only and a session cookie presents no credentials at all."""
    return b"POST /projects/demo/versions?token=abc\n\ntilekit_session=abc\n{}"


def http_body_input(cuts, range_header, size, content_type, body):
    """The http_body layout (tests/fuzz/http_body.cpp): cut count, 2-byte cuts, then lines."""
    return (bytes([len(cuts)]) + b"".join(struct.pack("<H", c) for c in cuts) + range_header + b"\n" + size +
            b"\n" + content_type + b"\n" + body)


@regression("http_body", "delimiter-across-pieces")
def delimiter_across_pieces():
    """Not a finding: pinned with the target. A multipart upload whose closing delimiter
    "\\r\\n--b0undary" is cut after "\\r\\n-" (one piece ends inside it), after a false start
    "\\r\\n--b0und" that ends another piece; the file must hold exactly "AB\\r\\n--b0undX", and the
    range "bytes=2-" over 5 bytes is bytes 2..4."""
    body = (b"--b0undary\r\nContent-Disposition: form-data; name=\"f\"; filename=\"t.png\"\r\n\r\n"
            b"AB\r\n--b0undX\r\n--b0undary\r\n")
    start = body.index(b"AB")
    return http_body_input([start + 11, start + 15, start + 18], b"bytes=2-", b"5",
                           b"multipart/form-data; boundary=b0undary", body)


@regression("http_body", "several-ranges")
def several_ranges():
    """Not a finding: two ranges are one 416 (range.hpp: 4,000 overlapping ranges once made an
    8 KB request a 788 MB answer); a raw upload cut into three pieces."""
    return http_body_input([1, 2], b"bytes=0-0,0-0", b"100", b"image/png", b"\xff\xd8\xff\xe0")


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
