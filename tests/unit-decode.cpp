// Decoding: every kind of bad input gets a typed error (never a crash, never a silent success),
// the pixel limit is checked before decoding, and 16-bit PNGs come out as 8-bit.

#include "test_helpers.hpp"

using namespace tilekit;

namespace {

using tkt::error_of;

std::string describe(const std::optional<errc>& code) { return code ? to_string(*code) : "success"; }

tkt::bytes sample_png(int w = 48, int h = 40, int channels = 3) {
    const image_buffer image = tkt::make_image(w, h, channels, 77, 40);
    std::vector<std::uint8_t> png;
    stb_png_encoder().encode(image.view(), png);
    return png;
}

tkt::bytes sample_jpeg(int w = 64, int h = 48) {
    const image_buffer image = tkt::make_image(w, h, 3, 78, 40);
    std::vector<std::uint8_t> jpg;
    turbojpeg_encoder(85).encode(image.view(), jpg);
    return jpg;
}

// Offset of the first chunk of `type` in a PNG (its length field), or npos.
std::size_t find_chunk(const tkt::bytes& png, const char* type) {
    std::size_t pos = 8;
    while (pos + 12 <= png.size()) {
        const std::uint32_t length = (std::uint32_t{png[pos]} << 24) | (std::uint32_t{png[pos + 1]} << 16) |
                                     (std::uint32_t{png[pos + 2]} << 8) | png[pos + 3];
        if (std::memcmp(&png[pos + 4], type, 4) == 0) return pos;
        pos += 12 + length;
    }
    return std::string::npos;
}

}  // namespace

TEST_CASE("Empty input is refused with empty_input", "[decode]") {
    const std::vector<std::uint8_t> empty;
    CHECK(error_of([&] { decode_image(empty); }) == errc::empty_input);
    CHECK(error_of([&] { read_image_info(empty); }) == errc::empty_input);
    CHECK(error_of([&] { decode_image(nullptr, 0); }) == errc::empty_input);
}

TEST_CASE("Random bytes and text are not images", "[decode]") {
    tkt::rng random(123);
    for (std::size_t size : {1u, 2u, 7u, 8u, 100u, 4096u}) {
        std::vector<std::uint8_t> noise(size);
        for (auto& b : noise) b = static_cast<std::uint8_t>(random.next());
        noise[0] = 0x42;  // make sure it does not start like a PNG or JPEG by chance
        INFO(size << " random bytes");
        CHECK(error_of([&] { decode_image(noise); }) == errc::not_an_image);
    }
    const std::string text = "Hello, this is definitely not a PNG file.\n";
    const std::vector<std::uint8_t> bytes(text.begin(), text.end());
    CHECK(error_of([&] { decode_image(bytes); }) == errc::not_an_image);
    CHECK(error_of([&] { read_image_info(bytes); }) == errc::not_an_image);
}

TEST_CASE("Truncated PNGs and JPEGs are refused, never decoded", "[decode]") {
    SECTION("PNG") {
        const tkt::bytes png = sample_png();
        REQUIRE_NOTHROW(decode_image(png));
        const std::size_t idat = find_chunk(png, "IDAT");
        REQUIRE(idat != std::string::npos);
        for (std::size_t cut : {std::size_t{8}, std::size_t{12}, std::size_t{20}, std::size_t{29}, std::size_t{33},
                                std::size_t{40}, idat, idat + 8, idat + 20, png.size() / 2, png.size() - 13,
                                png.size() - 12, png.size() - 5, png.size() - 1}) {
            const tkt::bytes cut_png(png.begin(), png.begin() + static_cast<std::ptrdiff_t>(cut));
            const auto code = error_of([&] { decode_image(cut_png); });
            INFO("cut at " << cut << " of " << png.size() << ": " << describe(code));
            CHECK((code == errc::truncated_image || code == errc::corrupt_image));
        }
        // Shorter than the signature: any error will do (the bytes cannot be recognised).
        for (std::size_t cut = 1; cut < 8; ++cut) {
            const tkt::bytes cut_png(png.begin(), png.begin() + static_cast<std::ptrdiff_t>(cut));
            CHECK(error_of([&] { decode_image(cut_png); }).has_value());
        }
    }
    SECTION("JPEG") {
        const tkt::bytes jpg = sample_jpeg();
        REQUIRE_NOTHROW(decode_image(jpg));
        for (std::size_t cut : {std::size_t{3}, std::size_t{4}, std::size_t{20}, std::size_t{100}, std::size_t{200},
                                jpg.size() / 3, jpg.size() / 2, jpg.size() - 100, jpg.size() - 3, jpg.size() - 2,
                                jpg.size() - 1}) {
            const tkt::bytes cut_jpg(jpg.begin(), jpg.begin() + static_cast<std::ptrdiff_t>(cut));
            const auto code = error_of([&] { decode_image(cut_jpg); });
            INFO("cut at " << cut << " of " << jpg.size() << ": " << describe(code));
            CHECK((code == errc::truncated_image || code == errc::corrupt_image));
        }
    }
}

TEST_CASE("Corrupted bytes inside a PNG give an error, not garbage pixels", "[decode]") {
    const tkt::bytes png = sample_png(64, 64, 3);
    const std::size_t idat = find_chunk(png, "IDAT");
    REQUIRE(idat != std::string::npos);
    std::size_t successes = 0, tried = 0;
    for (std::size_t pos = 16; pos + 12 < png.size(); pos += 13) {  // IHDR fields, IDAT data, CRCs
        for (std::uint8_t flip : {std::uint8_t{0x01}, std::uint8_t{0x55}, std::uint8_t{0xff}}) {
            tkt::bytes bad = png;
            bad[pos] ^= flip;
            ++tried;
            const auto code = error_of([&] { decode_image(bad); });
            if (!code) {
                ++successes;
                UNSCOPED_INFO("flipping byte " << pos << " with " << int(flip) << " decoded without error");
            } else {
                CHECK((code == errc::corrupt_image || code == errc::truncated_image || code == errc::image_too_large));
            }
        }
    }
    INFO(tried << " corruptions tried");
    CHECK(successes == 0);
}

TEST_CASE("A damaged ancillary PNG chunk is refused by default and ignored when damage is accepted, as libpng does", "[decode]") {
    const tkt::bytes raw = {10, 20, 30, 40, 50, 60};
    const tkt::bytes png = tkt::make_png(2, 1, 8, 2, raw, 6);
    tkt::bytes text_chunk;
    tkt::png_chunk(text_chunk, "tEXt", {'C', 'o', 'm', 'm', 'e', 'n', 't', 0, 'h', 'i'});
    text_chunk.back() ^= 0x01;  // wrong CRC
    tkt::bytes with_text(png.begin(), png.begin() + 33);  // signature + IHDR
    with_text.insert(with_text.end(), text_chunk.begin(), text_chunk.end());
    with_text.insert(with_text.end(), png.begin() + 33, png.end());
    CHECK(error_of([&] { decode_image(with_text); }) == errc::corrupt_image);
    decode_limits lenient;
    lenient.accept_damaged = true;
    const image_buffer image = decode_image(with_text, lenient);
    CHECK(tkt::pixels_of(image.view()) == raw);
    // the same damage in a critical chunk is an error
    tkt::bytes bad_idat = png;
    const std::size_t idat = find_chunk(bad_idat, "IDAT");
    REQUIRE(idat != std::string::npos);
    const std::size_t idat_length = (std::size_t{bad_idat[idat]} << 24) | (std::size_t{bad_idat[idat + 1]} << 16) |
                                    (std::size_t{bad_idat[idat + 2]} << 8) | bad_idat[idat + 3];
    bad_idat[idat + 8 + idat_length + 3] ^= 0x01;  // last CRC byte of IDAT
    CHECK(error_of([&] { decode_image(bad_idat); }) == errc::corrupt_image);
}

TEST_CASE("Corrupted JPEG data never crashes", "[decode]") {
    // JPEG has no checksum: damage in the entropy-coded data may decode to wrong pixels; what
    // matters is that it never crashes and errors are typed.
    const tkt::bytes jpg = sample_jpeg();
    for (std::size_t pos = 2; pos + 2 < jpg.size(); pos += 11) {
        tkt::bytes bad = jpg;
        bad[pos] ^= 0x5a;
        try {
            (void)decode_image(bad);
        } catch (const tilekit::error& e) {
            CHECK(e.code() != errc::empty_input);
        }
    }
}

TEST_CASE("Images over decode_limits::max_pixels are refused before decoding", "[decode][limits]") {
    SECTION("a real image over a small limit") {
        const tkt::bytes png = sample_png(40, 30, 3);
        decode_limits limits;
        limits.max_pixels = 1000;
        std::string message;
        CHECK(error_of([&] { decode_image(png, limits); }, &message) == errc::image_too_large);
        INFO(message);
        CHECK(message.find("40x30") != std::string::npos);
        CHECK(message.find("1000") != std::string::npos);
        limits.max_pixels = 1200;
        CHECK_NOTHROW(decode_image(png, limits));  // exactly at the limit is fine
    }
    SECTION("a crafted PNG header claiming a huge size, default limit") {
        // IHDR says 100000 x 100000 RGBA; the IDAT is a handful of bytes. A decoder that tried to
        // decode (or allocate) first would fail differently or run out of memory.
        const tkt::bytes raw(4, 0);
        const tkt::bytes png = tkt::make_png(100000, 100000, 8, 6, raw, 4);
        std::string message;
        const auto code = error_of([&] { decode_image(png); }, &message);
        INFO(describe(code) << ": " << message);
        CHECK(code == errc::image_too_large);
        CHECK(message.find("100000x100000") != std::string::npos);
        CHECK(message.find(std::to_string(decode_limits{}.max_pixels)) != std::string::npos);
    }
    SECTION("a crafted PNG header under stb's own limits but over ours") {
        const tkt::bytes png = tkt::make_png(20000, 20000, 8, 0, tkt::bytes(4, 0), 4);
        decode_limits limits;
        limits.max_pixels = 1000000;
        std::string message;
        const auto code = error_of([&] { decode_image(png, limits); }, &message);
        INFO(describe(code) << ": " << message);
        CHECK(code == errc::image_too_large);
        CHECK(message.find("20000x20000") != std::string::npos);
        CHECK(message.find("1000000") != std::string::npos);
    }
    SECTION("a JPEG whose frame header claims 60000 x 60000") {
        tkt::bytes jpg = sample_jpeg(16, 16);
        // find SOF0 (FF C0): length(2) precision(1) height(2) width(2)
        std::size_t sof = 0;
        for (std::size_t i = 2; i + 9 < jpg.size(); ++i)
            if (jpg[i] == 0xff && jpg[i + 1] == 0xc0) {
                sof = i;
                break;
            }
        REQUIRE(sof != 0);
        jpg[sof + 5] = 60000 >> 8;
        jpg[sof + 6] = 60000 & 0xff;
        jpg[sof + 7] = 60000 >> 8;
        jpg[sof + 8] = 60000 & 0xff;
        std::string message;
        const auto code = error_of([&] { decode_image(jpg); }, &message);
        INFO(describe(code) << ": " << message);
        CHECK(code == errc::image_too_large);
        CHECK(message.find("60000x60000") != std::string::npos);
        CHECK(message.find(std::to_string(decode_limits{}.max_pixels)) != std::string::npos);
    }
    SECTION("files over max_file_bytes are refused before reading") {
        tkt::temp_dir dir;
        const tkt::bytes png = sample_png();
        tkt::write_file(dir.path() / "a.png", png);
        decode_limits limits;
        limits.max_file_bytes = png.size() - 1;
        CHECK(error_of([&] { decode_image_file((dir.path() / "a.png").string(), limits); }) == errc::image_too_large);
        limits.max_file_bytes = png.size();
        CHECK(decode_image_file((dir.path() / "a.png").string(), limits).width() == 48);
    }
}

TEST_CASE("Files: missing files and directories are io_error, good files decode", "[decode][file]") {
    tkt::temp_dir dir;
    std::string message;
    const std::string missing = (dir.path() / "no-such-file.png").string();
    CHECK(error_of([&] { decode_image_file(missing); }, &message) == errc::io_error);
    CHECK(message.find("no-such-file.png") != std::string::npos);
    CHECK(error_of([&] { read_file_bytes(missing); }) == errc::io_error);
    memory_sink sink;
    CHECK(error_of([&] { tile_file(missing, sink, pyramid_options{}); }) == errc::io_error);
    CHECK(sink.size() == 0);
    // A directory is not an image file.
    CHECK(error_of([&] { decode_image_file(dir.str()); }) == errc::io_error);

    const tkt::bytes png = sample_png(30, 20, 4);
    tkt::write_file(dir.path() / "ok.png", png);
    const image_buffer image = decode_image_file((dir.path() / "ok.png").string());
    CHECK(image.width() == 30);
    CHECK(image.height() == 20);
    CHECK(image.channels() == 4);
    // Errors from a file name the file.
    tkt::write_file(dir.path() / "bad.png", tkt::bytes(png.begin(), png.begin() + 50));
    CHECK(error_of([&] { decode_image_file((dir.path() / "bad.png").string()); }, &message) == errc::truncated_image);
    CHECK(message.find("bad.png") != std::string::npos);
    // An empty file.
    tkt::write_file(dir.path() / "empty.png", {});
    CHECK(error_of([&] { decode_image_file((dir.path() / "empty.png").string()); }) == errc::empty_input);
}

TEST_CASE("16-bit PNGs (hand-built) decode to 8 bits per channel", "[decode][png16]") {
    struct variant {
        int color_type, channels;
    };
    for (const variant v : {variant{0, 1}, variant{4, 2}, variant{2, 3}, variant{6, 4}}) {
        const int W = 5, H = 3;
        tkt::bytes raw;
        std::vector<std::uint8_t> expected;
        for (int y = 0; y < H; ++y)
            for (int x = 0; x < W; ++x)
                for (int c = 0; c < v.channels; ++c) {
                    const std::uint16_t value = static_cast<std::uint16_t>((x * 50 + y * 30 + c * 70) * 97 % 65536);
                    raw.push_back(static_cast<std::uint8_t>(value >> 8));
                    raw.push_back(static_cast<std::uint8_t>(value & 0xff));
                    expected.push_back(static_cast<std::uint8_t>(value >> 8));
                }
        const tkt::bytes png = tkt::make_png(W, H, 16, v.color_type, raw, static_cast<std::size_t>(W) * v.channels * 2);
        INFO("color type " << v.color_type);
        const image_info info = read_image_info(png);
        CHECK(info.sixteen_bit);
        CHECK(info.width == W);
        CHECK(info.height == H);
        CHECK(info.channels == v.channels);
        CHECK(info.format == "png");
        const image_buffer image = decode_image(png);
        REQUIRE(image.width() == W);
        REQUIRE(image.height() == H);
        REQUIRE(image.channels() == v.channels);
        // stb reduces 16 to 8 bits by keeping the high byte; allow rounding instead (+1).
        std::size_t bad = 0;
        for (std::size_t i = 0; i < expected.size(); ++i)
            if (image.data()[i] != expected[i] && image.data()[i] != expected[i] + 1) ++bad;
        CHECK(bad == 0);
        // and it tiles
        memory_sink sink;
        const pyramid_metadata m = generate_pyramid(image, deep_zoom_layout(), stb_png_encoder(), sink);
        CHECK(m.channels == v.channels);
        CHECK(tkt::decode_object(sink, "image_files/3/0_0.png").channels == v.channels);
    }
    SECTION("an 8-bit hand-built PNG is exact (checks the helper itself)") {
        tkt::bytes raw = {1, 2, 3, 4, 5, 6, 250, 251, 252, 7, 8, 9};
        const tkt::bytes png = tkt::make_png(2, 2, 8, 2, raw, 6);
        const image_buffer image = decode_image(png);
        CHECK(tkt::pixels_of(image.view()) == raw);
        CHECK_FALSE(read_image_info(png).sixteen_bit);
    }
    SECTION("a stored-block zlib stream over 64 KiB (several blocks) decodes") {
        const int W = 300, H = 120;  // 300*3*2 = 1800 bytes/row, 216 KB
        tkt::bytes raw(static_cast<std::size_t>(W) * 3 * 2 * H);
        for (std::size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<std::uint8_t>(i * 7 % 251);
        const tkt::bytes png = tkt::make_png(W, H, 16, 2, raw, static_cast<std::size_t>(W) * 6);
        const image_buffer image = decode_image(png);
        CHECK(image.width() == W);
        CHECK(image.data()[0] == raw[0]);
        CHECK(image.data()[image.byte_size() - 1] == raw[raw.size() - 2]);
    }
}

TEST_CASE("read_image_info reads the header only", "[decode]") {
    const tkt::bytes jpg = sample_jpeg(64, 48);
    const image_info info = read_image_info(jpg);
    CHECK(info.format == "jpeg");
    CHECK(info.width == 64);
    CHECK(info.height == 48);
    CHECK(info.channels == 3);
    // header-only: a PNG whose pixel data is missing still reports its size
    const tkt::bytes png = sample_png(48, 40, 2);
    const tkt::bytes head(png.begin(), png.begin() + 33);
    const image_info png_info = read_image_info(head);
    CHECK(png_info.width == 48);
    CHECK(png_info.height == 40);
    CHECK(png_info.channels == 2);
}
