#include "odr.hpp"

std::uint64_t odr_tiles_b() { return odr_tile_count<tilekit::fast_codecs>(tilekit::layout_type::xyz); }
