// A consumer of the installed (or single-header) tilekit WebP part on its own: tiles an image
// into lossy and lossless WebP tiles and reads a WebP image back through tile_memory(), with
// nothing but the core's dependencies and libwebp, so a missing include or link flag of
// tilekit::webp / tilekit-webp.pc fails here. Exits non-zero on mismatch.

#include <tilekit/webp.hpp>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

int main() try {
    tilekit::image_buffer image(300, 200, 4);
    for (int y = 0; y < image.height(); ++y)
        for (int x = 0; x < image.width(); ++x) {
            std::uint8_t* p = image.row(y) + 4 * x;
            p[0] = static_cast<std::uint8_t>(x), p[1] = static_cast<std::uint8_t>(y), p[2] = 90;
            p[3] = static_cast<std::uint8_t>(x < 150 ? 255 : 128);
        }
    std::vector<std::uint8_t> png;
    tilekit::stb_png_encoder().encode(image, png);

    for (const bool lossless : {false, true}) {
        tilekit::memory_sink sink;
        tilekit::pyramid_options options;
        options.format = tilekit::tile_format::webp;
        options.lossless = lossless;
        const tilekit::pyramid_metadata m = tilekit::tile_memory(png, sink, options);
        const auto tile = sink.get("image_files/" + std::to_string(m.max_level) + "/0_0.webp");
        if (m.format != "webp" || !tile || tile->content_type != "image/webp") {
            std::fprintf(stderr, "consumer webp: no WebP tiles (format %s)\n", m.format.c_str());
            return 1;
        }
        // The tile read back as WebP input: 255x200 (254 + overlap 1), alpha kept.
        const tilekit::image_buffer back = tilekit::decode_webp(tile->body.data(), tile->body.size());
        if (back.width() != 255 || back.height() != 200 || back.channels() != 4 || back.row(0)[3] != 255 ||
            back.row(0)[4 * 200 + 3] != 128) {
            std::fprintf(stderr, "consumer webp: tile decoded as %dx%dx%d\n", back.width(), back.height(), back.channels());
            return 1;
        }
        if (lossless && back.row(10)[4 * 20 + 1] != 10) {
            std::fprintf(stderr, "consumer webp: lossless tile is not exact\n");
            return 1;
        }
        tilekit::memory_sink again;
        if (tilekit::tile_memory(tile->body, again).width != 255) {
            std::fprintf(stderr, "consumer webp: WebP input not read by tile_memory\n");
            return 1;
        }
    }
    std::puts("consumer webp: ok");
    return 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "consumer webp: %s\n", e.what());
    return 1;
}
