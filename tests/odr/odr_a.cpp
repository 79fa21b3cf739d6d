#include "odr.hpp"

#include <cstdio>

std::uint64_t odr_tiles_a() { return odr_tile_count<tilekit::stb_codecs>(tilekit::layout_type::deep_zoom); }

int main() {
    const std::uint64_t a = odr_tiles_a();
    const std::uint64_t b = odr_tiles_b();
    std::printf("odr: %llu + %llu tiles\n", static_cast<unsigned long long>(a), static_cast<unsigned long long>(b));
    return a > 0 && b > 0 ? 0 : 1;
}
