#pragma once
// tilekit's optional fast-codecs part: streaming PNG (libpng) and JPEG (libjpeg-turbo) decoders
// that never hold the whole image, and fast tile encoders (libdeflate PNG, libjpeg-turbo JPEG).
// Including it makes them the default of tile_file() and tile_memory(). Link
// `tilekit::fast_codecs` (CMake), `tilekit_fast_codecs_dep` (meson) or
// `pkg-config tilekit-fast-codecs` (Debian: libdeflate-dev libturbojpeg0-dev libpng-dev
// libjpeg62-turbo-dev). The core never includes this.

#if !__has_include(<libdeflate.h>) || !__has_include(<turbojpeg.h>) || !__has_include(<png.h>) || \
    !__has_include(<jpeglib.h>)
#error "tilekit/fast_codecs.hpp needs libdeflate, libjpeg-turbo, libpng and libjpeg (Debian: libdeflate-dev libturbojpeg0-dev libpng-dev libjpeg62-turbo-dev)"
#endif

#include <tilekit/tilekit.hpp>
#include <tilekit/fast_codecs/png_encoder.hpp>
#include <tilekit/fast_codecs/jpeg_encoder.hpp>
#include <tilekit/fast_codecs/png_reader.hpp>
#include <tilekit/fast_codecs/jpeg_reader.hpp>
#include <tilekit/fast_codecs/codecs.hpp>
