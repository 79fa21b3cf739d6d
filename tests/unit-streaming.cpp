// Streaming decoders (libpng, libjpeg): rows equal what the whole-image decoder gives, damaged
// files fail with a typed error part-way through a run without publishing a manifest, and the
// pixel limit is checked from the header before any row is decoded.

#include "test_helpers.hpp"

#include <tilekit/fast_codecs.hpp>

using namespace tilekit;

namespace {

tkt::bytes encode_png(const image_buffer& image) {
    std::vector<std::uint8_t> png;
    libdeflate_png_encoder(6, png_filter::adaptive).encode(image.view(), png);
    return png;
}

tkt::bytes encode_jpeg(const image_buffer& image, int quality = 90) {
    std::vector<std::uint8_t> jpg;
    turbojpeg_encoder(quality).encode(image.view(), jpg);
    return jpg;
}


using tkt::error_of;

}  // namespace

TEST_CASE("streaming PNG rows equal the whole-image decode, for 1..4 channels", "[streaming]") {
    tkt::temp_dir dir;
    for (int channels = 1; channels <= 4; ++channels) {
        const image_buffer image = tkt::make_image(123, 77, channels, 5 + channels, 30);
        const auto path = dir.path() / ("c" + std::to_string(channels) + ".png");
        tkt::write_file(path, encode_png(image));
        const auto reader = fast_codecs::open_file(path.string());
        CHECK(reader->width() == 123);
        CHECK(reader->height() == 77);
        CHECK(reader->channels() == channels);
        CHECK(tkt::read_all_rows(*reader) == tkt::pixels_of(image.view()));
    }
}

TEST_CASE("streaming PNG turns 16-bit into 8-bit like the stb decoder", "[streaming]") {
    tkt::temp_dir dir;
    tkt::bytes raw;  // 5x3 RGB, 16 bits per sample
    for (int i = 0; i < 5 * 3 * 3; ++i) {
        raw.push_back(static_cast<std::uint8_t>(i * 5));
        raw.push_back(static_cast<std::uint8_t>(255 - i));
    }
    const tkt::bytes png = tkt::make_png(5, 3, 16, 2, raw, 5 * 3 * 2);
    const auto path = dir.path() / "deep.png";
    tkt::write_file(path, png);
    const auto reader = fast_codecs::open_file(path.string());
    REQUIRE(reader->channels() == 3);
    const image_buffer whole = decode_image(png);
    CHECK(tkt::read_all_rows(*reader) == tkt::pixels_of(whole.view()));
}

TEST_CASE("streaming JPEG rows are close to the whole-image decode", "[streaming]") {
    tkt::temp_dir dir;
    for (int channels : {1, 3}) {
        const image_buffer image = tkt::make_image(200, 131, channels, 9, 6);
        const tkt::bytes jpg = encode_jpeg(image);
        const auto path = dir.path() / ("c" + std::to_string(channels) + ".jpg");
        tkt::write_file(path, jpg);
        const auto reader = fast_codecs::open_file(path.string());
        CHECK(reader->width() == 200);
        CHECK(reader->height() == 131);
        CHECK(reader->channels() == channels);
        const tkt::bytes rows = tkt::read_all_rows(*reader);
        const image_buffer whole = decode_image(jpg);
        REQUIRE(whole.channels() == channels);
        const tkt::bytes reference = tkt::pixels_of(whole.view());
        REQUIRE(rows.size() == reference.size());
        CHECK(tkt::psnr(rows.data(), reference.data(), rows.size()) > 40.0);
    }
}

TEST_CASE("tile_file and tile_memory stream, and give the same pyramid as decoding first", "[streaming]") {
    tkt::temp_dir dir;
    const image_buffer image = tkt::make_image(700, 389, 4, 21, 20);
    const auto path = dir.path() / "map.png";
    tkt::write_file(path, encode_png(image));
    pyramid_options options;
    options.threads = 2;
    // Including <tilekit/fast_codecs.hpp> makes the streaming decoders the default.
    CHECK(std::string(default_codecs_name()) == "fast");
    CHECK(dynamic_cast<png_row_reader*>(fast_codecs::open_file(path.string()).get()) != nullptr);
    CHECK(dynamic_cast<png_row_reader*>(fast_codecs::open_memory(encode_png(image).data(), encode_png(image).size()).get()) != nullptr);
    memory_sink streamed, from_memory, buffered;
    const pyramid_metadata a = tile_file(path.string(), streamed, options);
    const pyramid_metadata c = tile_memory(tkt::read_file(path), from_memory, options);
    pyramid_options recorded = options;  // tile_file and tile_memory record what they sniffed
    recorded.source_format = "png";
    const pyramid_metadata b = generate_pyramid(image, deep_zoom_layout(), libdeflate_png_encoder(), buffered, recorded);
    CHECK(a.source_format == "png");
    CHECK(nlohmann::json(a) == nlohmann::json(b));
    CHECK(nlohmann::json(c) == nlohmann::json(b));
    REQUIRE(streamed.keys() == buffered.keys());
    REQUIRE(from_memory.keys() == buffered.keys());
    for (const std::string& key : streamed.keys()) {
        CHECK(streamed.get(key)->body == buffered.get(key)->body);
        CHECK(from_memory.get(key)->body == buffered.get(key)->body);
    }
}

TEST_CASE("damaged files fail part-way with a typed error and no manifest", "[streaming]") {
    tkt::temp_dir dir;
    const image_buffer image = tkt::make_image(600, 500, 3, 3, 40);
    const tkt::bytes png = encode_png(image);
    const tkt::bytes jpg = encode_jpeg(image);
    struct damaged {
        std::string name;
        tkt::bytes bytes;
        std::vector<errc> allowed;
    };
    std::vector<damaged> cases;
    cases.push_back({"half.png", tkt::bytes(png.begin(), png.begin() + static_cast<std::ptrdiff_t>(png.size() / 2)),
                     {errc::truncated_image}});
    cases.push_back({"half.jpg", tkt::bytes(jpg.begin(), jpg.begin() + static_cast<std::ptrdiff_t>(jpg.size() / 2)),
                     {errc::truncated_image}});
    tkt::bytes flipped = png;
    flipped[flipped.size() / 2] ^= 0x55;  // inside IDAT: libpng's CRC check catches it
    cases.push_back({"flipped.png", flipped, {errc::corrupt_image}});
    cases.push_back({"header-only.png", tkt::bytes(png.begin(), png.begin() + 40), {errc::truncated_image}});
    for (const damaged& c : cases) {
        INFO(c.name);
        const auto path = dir.path() / c.name;
        tkt::write_file(path, c.bytes);
        memory_sink sink;
        pyramid_options options;
        options.tile_size = 64;
        std::string message;
        const auto code = error_of([&] { tile_file<fast_codecs>(path.string(), sink, options); }, &message);
        INFO(message);
        REQUIRE(code.has_value());
        CHECK(std::find(c.allowed.begin(), c.allowed.end(), *code) != c.allowed.end());
        CHECK(message.find(c.name) != std::string::npos);
        CHECK_FALSE(sink.contains("image.dzi"));
        CHECK_FALSE(sink.contains("pyramid.json"));
    }
}

TEST_CASE("the pixel limit is checked from the header before decoding", "[streaming]") {
    tkt::temp_dir dir;
    // A PNG header that claims 100000 x 100000 RGBA (40 GB decoded) followed by almost nothing.
    const tkt::bytes png = tkt::make_png(100000, 100000, 8, 6, tkt::bytes(16, 0), 16);
    const auto path = dir.path() / "huge.png";
    tkt::write_file(path, png);
    std::string message;
    CHECK(error_of([&] { fast_codecs::open_file(path.string()); }, &message) == errc::image_too_large);
    CHECK(message.find("100000x100000") != std::string::npos);
    CHECK(message.find(std::to_string(decode_limits{}.max_pixels)) != std::string::npos);

    const image_buffer image = tkt::make_image(64, 64, 3);
    const auto jpg_path = dir.path() / "small.jpg";
    tkt::write_file(jpg_path, encode_jpeg(image));
    decode_limits tight;
    tight.max_pixels = 64 * 63;
    CHECK(error_of([&] { fast_codecs::open_file(jpg_path.string(), tight); }) == errc::image_too_large);
    tight.max_pixels = 64 * 64;
    CHECK_NOTHROW(fast_codecs::open_file(jpg_path.string(), tight));
}

TEST_CASE("streaming open reports empty, non-image and missing files", "[streaming]") {
    tkt::temp_dir dir;
    tkt::write_file(dir.path() / "empty.png", {});
    tkt::write_file(dir.path() / "text.png", tkt::bytes{'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd'});
    CHECK(error_of([&] { fast_codecs::open_file((dir.path() / "empty.png").string()); }) == errc::empty_input);
    CHECK(error_of([&] { fast_codecs::open_file((dir.path() / "text.png").string()); }) == errc::not_an_image);
    CHECK(error_of([&] { fast_codecs::open_file((dir.path() / "missing.png").string()); }) == errc::io_error);
}
