#pragma once
// The tile-generation job (see jobs/tile_generation.hpp). It streams its source through libpng
// and libjpeg, so it belongs with the `tilekit::fast_codecs` target; include
// <tilekit/fast_codecs.hpp> too for the encoders it is usually run with.

#include <tilekit/streaming_decode.hpp>
#include <tilekit/jobs/tile_generation.hpp>
