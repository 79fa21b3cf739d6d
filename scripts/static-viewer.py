#!/usr/bin/env python3
"""Writes a static viewer page for a finished Deep Zoom or IIIF pyramid: one HTML file that opens
from the file system (file://) or from any static server, with OpenSeadragon next to it.

    static-viewer.py --tiles DIR --out PAGE.html --openseadragon VENDOR_DIR [--title TEXT]

DIR is the pyramid's directory (its pyramid.json, written last, says it is complete). The Deep
Zoom tile source is given to OpenSeadragon inline, as an object, so the page never fetches the
.dzi with XMLHttpRequest (which file:// pages may not do); the tiles themselves are <img> loads,
which file:// allows. VENDOR_DIR holds openseadragon.min.js and images/ (fetched from npm by
examples/http_service/viewer/fetch-vendor.py into its vendor/openseadragon); they are copied beside the page. Standard
library only.

IIIF (layout "iiif"): the page gives OpenSeadragon the pyramid's info.json inline, with its id set
to the pyramid's folder relative to the page ("." when the page is written into that folder).
OpenSeadragon joins the id and each tile's path as they are, so the tile URLs are relative to the
page and work from file:// and from any server that serves the two together.
"""

import argparse
import html
import json
import os
import shutil
import sys
from pathlib import Path


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiles", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--openseadragon", required=True)
    parser.add_argument("--title", default="tilekit pyramid")
    a = parser.parse_args()

    tiles = Path(a.tiles).resolve()
    meta_path = tiles / "pyramid.json"
    if not meta_path.is_file():
        sys.exit(f"static-viewer: no pyramid.json in {tiles}: the pyramid is not complete")
    meta = json.loads(meta_path.read_text())
    if meta.get("layout") not in ("dz", "iiif"):
        sys.exit(f"static-viewer: the pyramid in {tiles} is {meta.get('layout')!r}; this page shows Deep Zoom ('dz') "
                 "and IIIF ('iiif')")
    vendor = Path(a.openseadragon).resolve()
    if not (vendor / "openseadragon.min.js").is_file():
        sys.exit(f"static-viewer: no openseadragon.min.js in {vendor} (run python3 examples/http_service/viewer/fetch-vendor.py)")

    out = Path(a.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    assets = out.parent / "openseadragon"
    shutil.rmtree(assets, ignore_errors=True)
    shutil.copytree(vendor, assets)

    relative = Path(os.path.relpath(tiles, out.parent)).as_posix()
    if meta["layout"] == "iiif":
        source = json.loads((tiles / (meta.get("manifest") or "info.json")).read_text())
        source["id"] = relative  # "." when the page is in the pyramid's folder
    else:
        # image_files/{level}/{col}_{row}.png -> the folder OpenSeadragon's Deep Zoom source wants.
        files_dir = meta["tile_url_template"].split("{level}")[0]
        url = relative + "/" + files_dir
        source = {
            "Image": {
                "xmlns": "http://schemas.microsoft.com/deepzoom/2008",
                "Url": url,
                "Format": meta["format"],
                "Overlap": str(meta["overlap"]),
                "TileSize": str(meta["tile_size"]),
                "Size": {"Width": str(meta["width"]), "Height": str(meta["height"])},
            }
        }
    title = html.escape(a.title)
    caption = html.escape(f"{meta['width']}x{meta['height']}, {meta['levels']} levels, {meta['tile_count']} tiles")
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
  html, body {{ margin: 0; height: 100%; font: 14px system-ui, sans-serif; }}
  header {{ padding: 6px 10px; background: #223; color: #eee; }}
  #viewer {{ position: absolute; top: 32px; bottom: 0; left: 0; right: 0; background: #111; }}
</style>
</head>
<body>
<header>{title} <small>({caption})</small></header>
<div id="viewer"></div>
<script src="openseadragon/openseadragon.min.js"></script>
<script>
  // Written by scripts/static-viewer.py. The tile source is inline (no .dzi or info.json request), the tiles
  // are plain image loads and the drawer is a 2D canvas: all of it works from file://.
  window.viewer = OpenSeadragon({{
    id: 'viewer',
    prefixUrl: 'openseadragon/images/',
    drawer: 'canvas',
    showNavigator: true,
    tileSources: {json.dumps(source)}
  }});
  window.viewer.addHandler('open', function () {{ document.body.setAttribute('data-opened', '1'); }});
  window.viewer.addHandler('open-failed', function (e) {{ document.body.setAttribute('data-opened', 'failed'); }});
  window.viewer.world.addHandler('add-item', function (e) {{
    e.item.addHandler('fully-loaded-change', function (f) {{
      if (f.fullyLoaded) document.body.setAttribute('data-tiles', 'loaded');
    }});
  }});
</script>
</body>
</html>
"""
    out.write_text(page)
    print(out)


if __name__ == "__main__":
    main()
