// The core single header on its own: built with only -I single_include and pkg-config's stb
// flags, so it proves the core needs nothing beyond stb, nlohmann_json and the standard library.

#include <tilekit/tilekit.hpp>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

int main() try {
    tilekit::image_buffer image(513, 257, 4);  // odd sizes: partial edge tiles
    for (int y = 0; y < image.height(); ++y)
        for (int x = 0; x < image.width(); ++x)
            for (int c = 0; c < 4; ++c) image.row(y)[4 * x + c] = static_cast<std::uint8_t>(x + y + 64 * c);

    // The compile-time entry: source, layout, encoder, sink, options.
    tilekit::memory_sink sink;
    const tilekit::pyramid_metadata metadata =
        tilekit::generate_pyramid(image, tilekit::deep_zoom_layout(), tilekit::stb_png_encoder(), sink);
    const nlohmann::json json = metadata;

    // The run-time front door, from an encoded image in memory (stb: the core's codecs).
    std::vector<std::uint8_t> png;
    tilekit::stb_png_encoder().encode(image, png);
    tilekit::memory_sink xyz_sink;
    tilekit::pyramid_options options;
    options.layout = tilekit::layout_type::xyz;
    options.threads = 2;
    const tilekit::pyramid_metadata xyz = tilekit::tile_memory(png, xyz_sink, options);

    // WebP tiles need the WebP part (<tilekit/webp.hpp>, libwebp): without it the core says so
    // and writes nothing; it never links libwebp itself.
    bool webp_refused = false;
    tilekit::memory_sink webp_sink;
    options.format = tilekit::tile_format::webp;
    try {
        tilekit::tile_memory(png, webp_sink, options);
    } catch (const tilekit::error& e) {
        webp_refused = e.code() == tilekit::errc::invalid_argument &&
                       std::string(e.what()).find("<tilekit/webp.hpp>") != std::string::npos && webp_sink.size() == 0;
    }

    // Without the tiff part, a TIFF is refused with an error naming the part that reads it.
    const std::vector<std::uint8_t> tiff = {'I', 'I', 42, 0, 8, 0, 0, 0, 0, 0};
    bool tiff_refused = false;
    try {
        tilekit::memory_sink tiff_sink;
        tilekit::tile_memory(tiff, tiff_sink);
    } catch (const tilekit::error& e) {
        tiff_refused = e.code() == tilekit::errc::not_an_image && std::string(e.what()).find("tilekit::tiff") != std::string::npos;
        if (!tiff_refused) std::fprintf(stderr, "TIFF without the tiff part: %s\n", e.what());
    }

    // A WebP input likewise names the WebP part.
    const std::vector<std::uint8_t> webp_file = {'R', 'I', 'F', 'F', 30, 0, 0, 0, 'W', 'E', 'B', 'P', 'V', 'P', '8', 'L'};
    bool webp_input_refused = false;
    try {
        tilekit::memory_sink webp_input_sink;
        tilekit::tile_memory(webp_file, webp_input_sink);
    } catch (const tilekit::error& e) {
        webp_input_refused = e.code() == tilekit::errc::not_an_image && std::string(e.what()).find("tilekit::webp") != std::string::npos;
        if (!webp_input_refused) std::fprintf(stderr, "WebP without the WebP part: %s\n", e.what());
    }

    const bool ok = metadata.tile_count > 0 && json.at("width") == 513 && sink.contains("image.dzi") &&
                    xyz.tile_count > 0 && std::string(tilekit::default_codecs_name()) == "stb" && webp_refused &&
                    tiff_refused && webp_input_refused;
    std::printf("single header core: %llu + %llu tiles, %s\n", static_cast<unsigned long long>(metadata.tile_count),
                static_cast<unsigned long long>(xyz.tile_count), ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "FAILED: %s\n", e.what());
    return 1;
}
