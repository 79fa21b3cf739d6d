// Encoder round trips: the PNG encoders are lossless for 1..4 channels, odd sizes and every row
// filter; the JPEG encoders produce decodable images close to the input.

#include "test_helpers.hpp"

using namespace tilekit;

namespace {

const std::vector<std::pair<int, int>> odd_sizes = {{1, 1}, {1, 9}, {9, 1}, {3, 5}, {17, 9}, {64, 33}, {255, 3}};

template <class Encoder>
void check_lossless(const Encoder& encoder, const std::string& name) {
    for (int C = 1; C <= 4; ++C)
        for (const auto& size : odd_sizes) {
            const image_buffer image = tkt::make_image(size.first, size.second, C, 17u * static_cast<std::uint32_t>(C) + size.first, 40);
            std::vector<std::uint8_t> png;
            encoder.encode(image.view(), png);
            INFO(name << ": " << size.first << "x" << size.second << "x" << C);
            REQUIRE(png.size() > 8);
            const tkt::decoded_image d = tkt::stb_decode(png);
            CHECK(d.width == size.first);
            CHECK(d.height == size.second);
            CHECK(d.channels == C);
            CHECK(d.pixels == tkt::pixels_of(image.view()));
            // tilekit's own decoder agrees
            const image_buffer again = decode_image(png);
            CHECK(again.channels() == C);
            CHECK(tkt::pixels_of(again.view()) == d.pixels);
        }
    // Rows with padding between them (stride > width * channels).
    const image_buffer big = tkt::make_image(40, 20, 3, 2, 40);
    const image_view crop{big.row(3) + 5 * 3, 23, 11, 3, big.stride()};
    std::vector<std::uint8_t> png;
    encoder.encode(crop, png);
    INFO(name << ": strided view");
    CHECK(tkt::stb_decode(png).pixels == tkt::pixels_of(crop));
}

// A smooth image (gradients and a soft disc), the kind JPEG is meant for.
image_buffer smooth_image(int w, int h, int channels) {
    image_buffer image(w, h, channels);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            std::uint8_t* p = image.row(y) + x * channels;
            const double d = std::hypot(x - w / 2.0, y - h / 2.0) / (w / 2.0);
            const int v[3] = {x * 255 / (w - 1), y * 255 / (h - 1), static_cast<int>(255 * std::max(0.0, 1 - d))};
            for (int c = 0; c < channels; ++c) p[c] = tkt::clamp8(channels == 1 ? (v[0] + v[2]) / 2 : v[c]);
        }
    return image;
}

template <class Encoder>
void check_jpeg(const Encoder& encoder, const std::string& name, bool gray_stays_gray) {
    for (int C : {1, 3}) {
        const image_buffer image = smooth_image(128, 96, C);
        std::vector<std::uint8_t> jpg;
        encoder.encode(image.view(), jpg);
        INFO(name << " channels " << C);
        REQUIRE(jpg.size() > 3);
        CHECK((jpg[0] == 0xff && jpg[1] == 0xd8));
        CHECK((jpg[jpg.size() - 2] == 0xff && jpg.back() == 0xd9));
        int w = 0, h = 0, n = 0;
        stbi_uc* p = stbi_load_from_memory(jpg.data(), static_cast<int>(jpg.size()), &w, &h, &n, C);
        REQUIRE(p != nullptr);
        std::unique_ptr<stbi_uc, void (*)(void*)> owned(p, stbi_image_free);
        CHECK(w == 128);
        CHECK(h == 96);
        if (gray_stays_gray || C == 3) CHECK(n == C);
        const double quality = tkt::psnr(p, image.data(), image.byte_size());
        INFO("PSNR " << quality << " dB");
        CHECK(quality > 30.0);
        // tilekit's decoder reads it too
        const image_buffer decoded = decode_image(jpg);
        CHECK(decoded.width() == 128);
    }
}

}  // namespace

TEST_CASE("stb_png_encoder is lossless", "[codec][png]") {
    const stb_png_encoder encoder;
    CHECK(encoder.extension() == "png");
    CHECK(encoder.content_type() == "image/png");
    CHECK(encoder.supports_alpha());
    check_lossless(encoder, "stb png");
}

TEST_CASE("libdeflate_png_encoder is lossless with every filter and level", "[codec][png]") {
    const std::pair<png_filter, const char*> filters[] = {{png_filter::none, "none"},       {png_filter::sub, "sub"},
                                                          {png_filter::up, "up"},           {png_filter::average, "average"},
                                                          {png_filter::paeth, "paeth"},     {png_filter::adaptive, "adaptive"}};
    for (const auto& filter : filters)
        for (int level : {0, 1, 2, 6, 12}) {
            const libdeflate_png_encoder encoder(level, filter.first);
            CHECK(encoder.extension() == "png");
            CHECK(encoder.supports_alpha());
            check_lossless(encoder, std::string("libdeflate level ") + std::to_string(level) + " filter " + filter.second);
        }
    CHECK_THROWS_AS(libdeflate_png_encoder(13), tilekit::error);
    CHECK_THROWS_AS(libdeflate_png_encoder(-1), tilekit::error);
}

TEST_CASE("libdeflate_png_encoder writes valid chunk CRCs and a parseable zlib stream", "[codec][png]") {
    const image_buffer image = tkt::make_image(33, 17, 4, 3);
    std::vector<std::uint8_t> png;
    libdeflate_png_encoder(6, png_filter::adaptive).encode(image.view(), png);
    std::size_t pos = 8;
    std::vector<std::string> chunks;
    while (pos + 12 <= png.size()) {
        const std::uint32_t length = (std::uint32_t{png[pos]} << 24) | (std::uint32_t{png[pos + 1]} << 16) |
                                     (std::uint32_t{png[pos + 2]} << 8) | png[pos + 3];
        REQUIRE(pos + 12 + length <= png.size());
        chunks.emplace_back(reinterpret_cast<const char*>(&png[pos + 4]), 4);
        const std::uint32_t stored = (std::uint32_t{png[pos + 8 + length]} << 24) |
                                     (std::uint32_t{png[pos + 9 + length]} << 16) |
                                     (std::uint32_t{png[pos + 10 + length]} << 8) | png[pos + 11 + length];
        CHECK(stored == tkt::crc32(&png[pos + 4], length + 4));
        pos += 12 + length;
    }
    CHECK(pos == png.size());
    CHECK(chunks == std::vector<std::string>{"IHDR", "IDAT", "IEND"});
    const image_info info = read_image_info(png);
    CHECK(info.width == 33);
    CHECK(info.height == 17);
    CHECK(info.channels == 4);
    CHECK(info.format == "png");
    CHECK_FALSE(info.sixteen_bit);
}

TEST_CASE("turbojpeg_encoder and baseline_jpeg_encoder make decodable JPEGs close to the input", "[codec][jpeg]") {
    for (int quality : {75, 85, 95}) {
        INFO("quality " << quality);
        check_jpeg(turbojpeg_encoder(quality), "turbojpeg", true);
        check_jpeg(baseline_jpeg_encoder(quality), "baseline jpeg", true);
    }
    const turbojpeg_encoder tj;
    CHECK(tj.extension() == "jpg");
    CHECK(tj.content_type() == "image/jpeg");
    CHECK_FALSE(tj.supports_alpha());
    CHECK(tj.quality() == 85);
    const baseline_jpeg_encoder baseline;
    CHECK(baseline.extension() == "jpg");
    CHECK(baseline.content_type() == "image/jpeg");
    CHECK_FALSE(baseline.supports_alpha());
    CHECK(baseline.quality() == 85);
    CHECK_THROWS_AS(turbojpeg_encoder(0), tilekit::error);
    CHECK_THROWS_AS(turbojpeg_encoder(101), tilekit::error);
    CHECK_THROWS_AS(baseline_jpeg_encoder(0), tilekit::error);
    CHECK_THROWS_AS(baseline_jpeg_encoder(101), tilekit::error);
    // Alpha never reaches a JPEG encoder from the tiler; called directly, libjpeg-turbo's refuses
    // it (the baseline writer ignores it).
    const image_buffer rgba = tkt::make_image(8, 8, 4, 1);
    std::vector<std::uint8_t> out;
    CHECK_THROWS_AS(tj.encode(rgba.view(), out), tilekit::error);
}

TEST_CASE("JPEG encoders handle odd sizes and 1-pixel images", "[codec][jpeg]") {
    for (const auto& size : odd_sizes) {
        for (int C : {1, 3}) {
            const image_buffer image = tkt::make_image(size.first, size.second, C, 5);
            std::vector<std::uint8_t> a, b;
            turbojpeg_encoder(85).encode(image.view(), a);
            baseline_jpeg_encoder(85).encode(image.view(), b);
            INFO(size.first << "x" << size.second << "x" << C);
            const tkt::decoded_image da = tkt::stb_decode(a), db = tkt::stb_decode(b);
            CHECK(da.width == size.first);
            CHECK(da.height == size.second);
            CHECK(db.width == size.first);
            CHECK(db.height == size.second);
        }
    }
}
