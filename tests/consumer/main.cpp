// A consumer of the installed (or single-header) tilekit with the fast codecs: round-trips an
// image through every library tilekit links (stb, libdeflate, libjpeg-turbo, libpng, libjpeg),
// so a missing link flag or header fails here. Exits non-zero on any mismatch.

#include <tilekit/fast_codecs.hpp>
#include <tilekit/tilekit.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const std::string& what) {
    if (!ok) {
        std::fprintf(stderr, "FAILED: %s\n", what.c_str());
        ++failures;
    }
}

void write_file(const std::filesystem::path& path, const std::vector<std::uint8_t>& bytes) {
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                static_cast<std::streamsize>(bytes.size()));
}

}  // namespace

int main() try {
    tilekit::image_buffer image(300, 200, 3);
    for (int y = 0; y < image.height(); ++y)
        for (int x = 0; x < image.width(); ++x) {
            std::uint8_t* pixel = image.row(y) + 3 * x;
            pixel[0] = static_cast<std::uint8_t>(x);
            pixel[1] = static_cast<std::uint8_t>(y);
            pixel[2] = static_cast<std::uint8_t>(x ^ y);
        }

    // stb (libstb): encode and decode in memory.
    std::vector<std::uint8_t> png;
    tilekit::stb_png_encoder().encode(image, png);
    const tilekit::image_buffer decoded = tilekit::decode_image(png);
    expect(decoded.width() == 300 && decoded.height() == 200, "stb PNG round trip");

    // libdeflate and libjpeg-turbo encoders, then libpng and libjpeg streaming decoders.
    std::vector<std::uint8_t> fast_png, jpeg;
    tilekit::libdeflate_png_encoder().encode(image, fast_png);
    tilekit::turbojpeg_encoder(90).encode(image, jpeg);
    const auto dir = std::filesystem::temp_directory_path() / ("tilekit-consumer-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    write_file(dir / "in.png", fast_png);
    write_file(dir / "in.jpg", jpeg);

    // The run-time front door: with <tilekit/fast_codecs.hpp> in the program, tile_file() streams
    // through libpng / libjpeg and encodes with libdeflate / libjpeg-turbo by default.
    expect(std::string(tilekit::default_codecs_name()) == "fast", "fast codecs are the default");
    tilekit::memory_sink sink;
    tilekit::pyramid_options options;
    options.layout = tilekit::layout_type::xyz;
    options.threads = 2;
    const auto from_png = tilekit::tile_file((dir / "in.png").string(), sink, options);
    options.format = tilekit::tile_format::jpeg;
    options.prefix = "jpeg/";
    const auto from_jpeg = tilekit::tile_file<tilekit::fast_codecs>((dir / "in.jpg").string(), sink, options);
    std::filesystem::remove_all(dir);

    expect(from_png.width == 300 && from_png.height == 200 && from_png.tile_count > 0, "PNG pyramid");
    expect(from_jpeg.tile_count == from_png.tile_count, "JPEG pyramid has as many tiles");
    expect(sink.size() > 2 * from_png.tile_count, "tiles and metadata in the sink");

    std::printf("tilekit %s consumer: %llu tiles per pyramid, %zu objects, %s\n", TILEKIT_VERSION,
                static_cast<unsigned long long>(from_png.tile_count), sink.size(), failures ? "FAILED" : "ok");
    return failures ? 1 : 0;
} catch (const std::exception& e) {
    std::fprintf(stderr, "FAILED: %s\n", e.what());
    return 1;
}
