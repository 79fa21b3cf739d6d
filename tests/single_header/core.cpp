// The core single header on its own: built with only -I single_include and pkg-config's stb
// flags, so it proves the core needs nothing beyond stb, nlohmann_json and the standard library.

#include <tilekit/tilekit.hpp>

#include <cstdio>
#include <exception>

int main() try {
    tilekit::image_buffer image(513, 257, 4);  // odd sizes: partial edge tiles
    for (int y = 0; y < image.height(); ++y)
        for (int x = 0; x < image.width(); ++x)
            for (int c = 0; c < 4; ++c) image.row(y)[4 * x + c] = static_cast<std::uint8_t>(x + y + 64 * c);

    tilekit::memory_sink sink;
    const tilekit::pyramid_metadata metadata = tilekit::tile_image(image, sink, tilekit::pyramid_options{});
    const nlohmann::json json = metadata;
    const bool ok = metadata.tile_count > 0 && json.at("width") == 513 && sink.contains("image.dzi");
    std::printf("single header core: %llu tiles, %s\n", static_cast<unsigned long long>(metadata.tile_count),
                ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "FAILED: %s\n", e.what());
    return 1;
}
