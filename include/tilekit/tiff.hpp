#pragma once
// tilekit's optional TIFF part: a streaming TIFF / BigTIFF row reader on libtiff
// (tiff/tiff_reader.hpp) that never holds the whole image. Including it registers the reader, so
// tile_file(), tile_memory(), the CLI and the tile-generation job read TIFF input (sniffed from
// the first bytes, like PNG and JPEG) in the whole program. Link `tilekit::tiff` (CMake),
// `tilekit_tiff_dep` (meson) or `pkg-config tilekit-tiff` (Debian: libtiff-dev). The core never
// includes this.

#if !__has_include(<tiffio.h>)
#error "tilekit/tiff.hpp needs libtiff (Debian: libtiff-dev)"
#endif

#include <tilekit/tilekit.hpp>
#include <tilekit/tiff/tiff_reader.hpp>
