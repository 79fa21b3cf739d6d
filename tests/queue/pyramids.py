"""The tile_generation side of the queue tests: a test image made here (no binary blobs) and the
check that a finished pyramid is complete on disk."""

import json
import random
import struct
import zlib

TILE_IMAGE_KEY = "map.png"
TILE_IMAGE_SIZE = (8192, 8192)  # ~3 s of tiling on one thread of a 2-core VM (Release)


def write_png(path, width, height):
    """An RGB PNG of shifted pseudo-random rows: cheap to make here, real work to tile."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    stride = width * 3
    rng = random.Random(20261203)
    noise = bytes(rng.getrandbits(8) for _ in range(stride + 8192))
    compressor = zlib.compressobj(1)
    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)))
        pending = []
        for y in range(height):
            offset = (y * 97) % 8192
            pending.append(compressor.compress(b"\x00" + noise[offset:offset + stride]))
            if y % 64 == 63 and any(pending):
                out.write(chunk(b"IDAT", b"".join(pending)))
                pending = []
        out.write(chunk(b"IDAT", b"".join(pending) + compressor.flush()) + chunk(b"IEND", b""))

def pyramid_report(tiles_dir):
    """Checks a finished pyramid: pyramid.json, its manifest and every tile it implies exist (with
    a PNG or JPEG signature). Returns (tile count, stray files)."""
    meta_path = tiles_dir / "pyramid.json"
    assert meta_path.is_file(), f"no pyramid.json in {tiles_dir}"
    meta = json.loads(meta_path.read_text())
    expected = {"pyramid.json"}
    if meta["manifest"]:
        assert (tiles_dir / meta["manifest"]).is_file(), f"the manifest {meta['manifest']} is missing"
        expected.add(meta["manifest"])
    for level in meta["level_sizes"]:
        for col in range(level["columns"]):
            for row in range(level["rows"]):
                key = (meta["tile_url_template"].replace("{level}", str(level["level"])).replace("{z}", str(level["level"]))
                       .replace("{col}", str(col)).replace("{x}", str(col)).replace("{row}", str(row)).replace("{y}", str(row)))
                path = tiles_dir / key
                assert path.is_file(), f"tile {key} is missing ({meta['tile_count']} tiles expected)"
                with open(path, "rb") as tile:
                    head = tile.read(8)
                assert head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8"), f"tile {key} is not an image"
                expected.add(key)
    tiles = len(expected) - (2 if meta["manifest"] else 1)
    assert tiles == meta["tile_count"], f"{tiles} tiles on disk, pyramid.json says {meta['tile_count']}"
    present = {str(p.relative_to(tiles_dir)) for p in tiles_dir.rglob("*") if p.is_file()}
    return tiles, sorted(present - expected)


# The service's own prefix template: every run of version 1 shares the version prefix, and only
# the publish protocol (a run prefix per attempt, a pointer written conditionally) keeps them apart.
TILE_VERSION_PREFIX = "mp/queue-test/uploads/tiles/1/"


def tile_payload():
    return {"source_key": TILE_IMAGE_KEY, "project_slug": "queue-test", "version": 1,
            "prefix_template": "mp/{slug}/uploads/tiles/{version}/", "tiling": {"tile_size": 256, "format": "png"}}


def committed_pointer(tiles_root):
    """The version's pointer (current.json) as a dict, or None when nothing was committed."""
    path = tiles_root / TILE_VERSION_PREFIX / "current.json"
    return json.loads(path.read_text()) if path.is_file() else None


def files_under(directory):
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()) if directory.exists() else []
