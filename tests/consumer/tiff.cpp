// A consumer of the installed (or single-header) tilekit tiff part on its own: tiles a small
// TIFF written here by hand (uncompressed RGB, one strip) from memory, through the core's
// tile_memory() (stb encoders, no fast codecs), so a missing include or link flag of
// tilekit::tiff / tilekit-tiff.pc fails here. Exits non-zero on mismatch.

#include <tilekit/tiff.hpp>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <vector>

int main() try {
    const std::uint32_t width = 300, height = 200, bytes = width * height * 3;
    std::vector<std::uint8_t> tiff = {'I', 'I', 42, 0};
    const auto put = [&tiff](std::uint32_t v, int n) {
        for (int i = 0; i < n; ++i) tiff.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    };
    put(8 + bytes, 4);
    for (std::uint32_t i = 0; i < bytes; ++i) tiff.push_back(static_cast<std::uint8_t>(i / 3 % width + i % 3 * 70));
    // ImageWidth, ImageLength, BitsPerSample, Compression, Photometric, StripOffsets,
    // SamplesPerPixel, RowsPerStrip, StripByteCounts.
    const std::uint32_t entries[][4] = {{256, 4, 1, width}, {257, 4, 1, height}, {258, 3, 1, 8}, {259, 3, 1, 1}, {262, 3, 1, 2},
                                        {273, 4, 1, 8},     {277, 3, 1, 3},      {278, 4, 1, height}, {279, 4, 1, bytes}};
    put(9, 2);
    for (const auto& e : entries) {
        put(e[0], 2), put(e[1], 2), put(e[2], 4);
        if (e[1] == 3) put(e[3], 2), put(0, 2);
        else put(e[3], 4);
    }
    put(0, 4);
    tilekit::memory_sink sink;
    const tilekit::pyramid_metadata m = tilekit::tile_memory(tiff, sink);
    const bool ok = m.width == 300 && m.height == 200 && m.channels == 3 && m.tile_count > 0 && sink.contains("image.dzi");
    std::printf("tiff consumer: %llu tiles, %s\n", static_cast<unsigned long long>(m.tile_count), ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "FAILED: %s\n", e.what());
    return 1;
}
