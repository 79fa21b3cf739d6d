// Pixel arithmetic that must not overflow on rows wider than 2^31 bytes (the default pixel
// limit allows a 2^30 x 1 RGBA image: a 4 GiB row). Checked on the offset computation itself,
// so the test needs no 4 GiB buffer.

#include "test_helpers.hpp"

TEST_CASE("downsample offsets are computed in size_t, past 2^31 bytes", "[downsample][hostile]") {
    using tilekit::detail::pixel_offset;
    const int widest = (1 << 30) - 1;  // a level of a 2^30-pixel-wide image
    CHECK(pixel_offset(widest, 4) == std::size_t{4} * std::size_t(widest));
    CHECK(pixel_offset(widest / 2, 2 * 4) == std::size_t{8} * std::size_t(widest / 2));
    CHECK(pixel_offset(widest, 4) > std::size_t{1} << 31);
    // And the filter still gives the exact 2x2 box average on a small row.
    const std::uint8_t upper[] = {10, 20, 30, 40, 50, 60};
    const std::uint8_t lower[] = {70, 80, 90, 100, 110, 120};
    std::uint8_t out[3] = {0, 0, 0};
    tilekit::detail::downsample_rows(3, upper, lower, 2, out);  // 2 RGB pixels -> 1
    CHECK(int(out[0]) == (10 + 40 + 70 + 100 + 2) / 4);
    CHECK(int(out[1]) == (20 + 50 + 80 + 110 + 2) / 4);
    CHECK(int(out[2]) == (30 + 60 + 90 + 120 + 2) / 4);
}

TEST_CASE("the core (stb) decoder refuses formats it does not claim and files over the memory budget", "[decode][hostile]") {
    using tilekit::errc;
    // A 35-byte GIF named .png must not become an 11,000-tile pyramid.
    const tkt::bytes gif = {'G', 'I', 'F', '8', '9', 'a', 0x10, 0x27, 0x10, 0x27, 0x80, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff,
                            ',', 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 'D', 1, 0, ';'};
    std::string message;
    CHECK(tkt::error_of([&] { tilekit::decode_image(gif); }, &message) == errc::not_an_image);
    CHECK(message.find("GIF") != std::string::npos);
    // PNM with a header and no data: stb would hand back uninitialised heap as pixels.
    const std::string pnm = "P6\n4000 4000\n255\n";
    const tkt::bytes pnm_bytes(pnm.begin(), pnm.end());
    CHECK(tkt::error_of([&] { tilekit::decode_image(pnm_bytes); }, &message) == errc::not_an_image);
    CHECK(message.find("PNM") != std::string::npos);
    tilekit::memory_sink sink;
    CHECK(tkt::error_of([&] { tilekit::tile_memory<tilekit::stb_codecs>(gif, sink); }) == errc::not_an_image);
    CHECK(sink.size() == 0);
    // The budget is checked from the header, before stb allocates.
    const tkt::bytes png = tkt::png_of(tkt::make_image(300, 200, 4, 3));
    tilekit::decode_limits tight;
    tight.max_memory_bytes = 300 * 200 * 4 * 2;  // under stb's ~2.5x
    CHECK(tkt::error_of([&] { tilekit::decode_image(png, tight); }, &message) == errc::over_memory_budget);
    CHECK(message.find("memory budget") != std::string::npos);
    tight.max_memory_bytes = 300 * 200 * 4 * 4;  // the pixels 2.5 times, and the file
    CHECK_NOTHROW(tilekit::decode_image(png, tight));
}
