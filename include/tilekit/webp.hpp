#pragma once
// tilekit's optional WebP part: WebP tiles through libwebp (lossy with alpha, or lossless) and
// WebP input (whole-image decode; WebP sides are at most 16383 px). Including it lets
// tile_file() write tile_format::webp and read WebP files. Link `tilekit::webp` (CMake),
// `tilekit_webp_dep` (meson) or `pkg-config tilekit-webp` (Debian: libwebp-dev). The core
// never includes this.

#if !__has_include(<webp/encode.h>) || !__has_include(<webp/decode.h>)
#error "tilekit/webp.hpp needs libwebp (Debian: libwebp-dev)"
#endif

#include <tilekit/tilekit.hpp>
#include <tilekit/webp/encoder.hpp>
#include <tilekit/webp/reader.hpp>
#include <tilekit/webp/register.hpp>
