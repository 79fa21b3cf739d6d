#pragma once
// Two TUs include every public tilekit header and instantiate the same templates; linking them
// into one program fails if any non-template function in a header lacks `inline`.

#include <tilekit/fast_codecs.hpp>
#include <tilekit/streaming_decode.hpp>
#include <tilekit/tilekit.hpp>

#include <cstdint>

std::uint64_t odr_tiles_a();
std::uint64_t odr_tiles_b();

// Used by both TUs, with different codecs, so both instantiate the tiler.
template <class Codecs>
std::uint64_t odr_tile_count(tilekit::layout_type layout) {
    tilekit::image_buffer image(200, 100, 3);
    tilekit::memory_sink sink;
    tilekit::pyramid_options options;
    options.layout = layout;
    options.tiling.threads = 1;
    return tilekit::tile_image<Codecs>(image, sink, options).tile_count;
}
