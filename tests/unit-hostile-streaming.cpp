// Hostile input on the fast (libpng/libjpeg) path: nothing reaches stb, damaged files are
// refused unless decode_limits::accept_damaged, the memory budget is checked from the header,
// and interlaced PNG / CMYK JPEG are read by the hardened libraries. Every input is made here.

#include "test_helpers.hpp"

#include <tilekit/fast_codecs.hpp>

#include <png.h>
#include <turbojpeg.h>

#include <cstdio>
#include <jpeglib.h>

using namespace tilekit;
using tkt::error_of;

namespace {


// Baseline or progressive JPEG from 3-channel RGB (4:2:0), or YCCK from 4-channel CMYK.
tkt::bytes turbo_jpeg(const image_buffer& image, bool progressive, int quality = 90) {
    tjhandle handle = tjInitCompress();
    REQUIRE(handle);
    unsigned char* out = nullptr;
    unsigned long size = 0;
    const int format = image.channels() == 4 ? TJPF_CMYK : TJPF_RGB;
    const int flags = progressive ? TJFLAG_PROGRESSIVE : 0;
    const int rc = tjCompress2(handle, image.view().pixels, image.width(), 0, image.height(), format, &out, &size,
                               image.channels() == 4 ? TJSAMP_444 : TJSAMP_420, quality, flags);
    tjDestroy(handle);
    REQUIRE(rc == 0);
    tkt::bytes jpg(out, out + size);
    tjFree(out);
    return jpg;
}

// Plain (not YCCK) CMYK through libjpeg, with or without the Adobe marker.
tkt::bytes cmyk_jpeg(const image_buffer& cmyk, bool adobe) {
    jpeg_compress_struct cinfo;
    jpeg_error_mgr err;
    cinfo.err = jpeg_std_error(&err);
    jpeg_create_compress(&cinfo);
    unsigned char* out = nullptr;
    unsigned long size = 0;
    jpeg_mem_dest(&cinfo, &out, &size);
    cinfo.image_width = static_cast<JDIMENSION>(cmyk.width());
    cinfo.image_height = static_cast<JDIMENSION>(cmyk.height());
    cinfo.input_components = 4;
    cinfo.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&cinfo);
    jpeg_set_colorspace(&cinfo, JCS_CMYK);
    jpeg_set_quality(&cinfo, 100, TRUE);
    cinfo.write_Adobe_marker = adobe ? TRUE : FALSE;
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = const_cast<JSAMPROW>(cmyk.view().row(static_cast<int>(cinfo.next_scanline)));
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    tkt::bytes jpg(out, out + size);
    std::free(out);
    return jpg;
}

// An Adam7-interlaced PNG through libpng (1..4 channels, 8 bits).
tkt::bytes interlaced_png(const image_buffer& image) {
    static const int types[] = {PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGBA};
    tkt::bytes out;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    png_infop info = png_create_info_struct(png);
    png_set_write_fn(
        png, &out,
        [](png_structp p, png_bytep data, size_t n) {
            auto* dest = static_cast<tkt::bytes*>(png_get_io_ptr(p));
            dest->insert(dest->end(), data, data + n);
        },
        nullptr);
    png_set_IHDR(png, info, static_cast<png_uint_32>(image.width()), static_cast<png_uint_32>(image.height()), 8,
                 types[image.channels() - 1], PNG_INTERLACE_ADAM7, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    std::vector<png_bytep> rows;
    for (int y = 0; y < image.height(); ++y) rows.push_back(const_cast<png_bytep>(image.view().row(y)));
    png_write_image(png, rows.data());
    png_write_end(png, nullptr);
    png_destroy_write_struct(&png, &info);
    return out;
}

tkt::bytes fast_png(const image_buffer& image) {
    std::vector<std::uint8_t> png;
    libdeflate_png_encoder(6, png_filter::adaptive).encode(image.view(), png);
    return png;
}

// Position of the first marker `code` (FF code) in a JPEG, scanning the header segments.
std::size_t find_marker(const tkt::bytes& jpg, std::uint8_t code) {
    std::size_t pos = 2;
    while (pos + 4 <= jpg.size()) {
        REQUIRE(jpg[pos] == 0xff);
        if (jpg[pos + 1] == code) return pos;
        pos += 2 + ((std::size_t{jpg[pos + 2]} << 8) | jpg[pos + 3]);
    }
    FAIL("marker not found");
    return 0;
}

// A PNG chunk with a deliberately wrong CRC.
void bad_crc_chunk(tkt::bytes& out, const char type[4], const tkt::bytes& data) {
    tkt::png_chunk(out, type, data);
    out.back() ^= 0x01;
}

// Splits a well-formed PNG (signature+IHDR, the rest up to IEND, IEND) so chunks can be added.
tkt::bytes insert_before(const tkt::bytes& png, std::size_t at, const tkt::bytes& chunk) {
    tkt::bytes out(png.begin(), png.begin() + static_cast<std::ptrdiff_t>(at));
    out.insert(out.end(), chunk.begin(), chunk.end());
    out.insert(out.end(), png.begin() + static_cast<std::ptrdiff_t>(at), png.end());
    return out;
}

// Tiles `bytes` through the fast codecs as a file; the error code (or none) and the message.
struct run_result {
    std::optional<errc> code;
    std::string message;
    bool manifest = false;
};

// fast: the streaming readers (libpng, libjpeg); else the core path (checks, then stb).
run_result tile_bytes(const tkt::bytes& bytes, const std::string& name, bool accept_damaged, bool fast = true) {
    tkt::temp_dir dir;
    const auto path = dir.path() / name;
    tkt::write_file(path, bytes);
    memory_sink sink;
    pyramid_options options;
    options.tile_size = 64;
    options.limits.accept_damaged = accept_damaged;
    run_result result;
    if (fast)
        result.code = error_of([&] { tile_file<fast_codecs>(path.string(), sink, options); }, &result.message);
    else
        result.code = error_of([&] { tile_file<stb_codecs>(path.string(), sink, options); }, &result.message);
    result.manifest = sink.contains("image.dzi") || sink.contains("pyramid.json");
    return result;
}

// On both paths, which must agree: the core one (stb behind tilekit's checks) and the fast one.
void check_refused_strictly_accepted_leniently(const tkt::bytes& bytes, const std::string& name) {
  for (const bool fast : {true, false}) {
    INFO(name << (fast ? " (fast codecs)" : " (core: stb)"));
    const run_result strict = tile_bytes(bytes, name, false, fast);
    INFO(strict.message);
    REQUIRE(strict.code.has_value());
    CHECK((*strict.code == errc::truncated_image || *strict.code == errc::corrupt_image));
    CHECK(strict.message.find(name) != std::string::npos);
    CHECK_FALSE(strict.manifest);  // tiles written before the error are never presented as complete
    const run_result lenient = tile_bytes(bytes, name, true, fast);
    INFO(lenient.message);
    CHECK_FALSE(lenient.code.has_value());
    CHECK(lenient.manifest);
  }
}

}  // namespace

TEST_CASE("fast codecs refuse formats other than PNG and JPEG, whatever the name", "[streaming][hostile]") {
    tkt::temp_dir dir;
    // A 1x1 GIF89a built field by field: header, logical screen (global 2-colour table),
    // the table, image descriptor, LZW minimum code size 2, one data sub-block, trailer.
    const tkt::bytes gif = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, 0, 0, 0, 255, 255, 255,
                            ',', 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 0x01, 0, ';'};
    tkt::bytes bmp = {'B', 'M'};
    bmp.resize(58, 0);  // a BMP file header and BITMAPINFOHEADER, zeros: the magic is enough
    const std::string pnm_text = "P6\n1 1\n255\n";
    tkt::bytes pnm(pnm_text.begin(), pnm_text.end());
    pnm.insert(pnm.end(), {10, 20, 30});
    const std::pair<const char*, const tkt::bytes*> cases[] = {{"GIF", &gif}, {"BMP", &bmp}, {"PNM", &pnm}};
    for (const auto& [kind, bytes] : cases) {
        INFO(kind);
        const auto path = dir.path() / "map.png";
        tkt::write_file(path, *bytes);
        std::string message;
        CHECK(error_of([&] { fast_codecs::open_file(path.string()); }, &message) == errc::not_an_image);
        CHECK(message.find(kind) != std::string::npos);
        CHECK(message.find("map.png") != std::string::npos);
        CHECK(error_of([&] { fast_codecs::open_memory(bytes->data(), bytes->size()); }) == errc::not_an_image);
    }
}

TEST_CASE("a directory given as input is an io_error that says so", "[streaming][hostile]") {
    tkt::temp_dir dir;
    std::string message;
    CHECK(error_of([&] { fast_codecs::open_file(dir.path().string()); }, &message) == errc::io_error);
    CHECK(message.find("directory") != std::string::npos);
}

TEST_CASE("interlaced PNG is read by libpng into one buffer, exactly", "[streaming][hostile]") {
    for (int channels = 1; channels <= 4; ++channels) {
        INFO(channels);
        const image_buffer image = tkt::make_image(97, 61, channels, 3 + channels, 25);
        const tkt::bytes png = interlaced_png(image);
        const auto reader = fast_codecs::open_memory(png.data(), png.size());
        const auto* libpng = dynamic_cast<png_row_reader*>(reader.get());
        REQUIRE(libpng != nullptr);
        CHECK(libpng->decoded_whole());
        CHECK(reader->channels() == channels);
        CHECK(tkt::read_all_rows(*reader) == tkt::pixels_of(image.view()));
    }
    // Non-interlaced files still stream.
    const tkt::bytes plain = fast_png(tkt::make_image(40, 30, 3));
    const auto reader = png_row_reader::open_memory(plain.data(), plain.size());
    CHECK_FALSE(reader->decoded_whole());
}

TEST_CASE("CMYK and YCCK JPEGs are read by libjpeg and converted to RGB", "[streaming][hostile]") {
    const int w = 64, h = 48;
    image_buffer cmyk(w, h, 4);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            std::uint8_t* p = cmyk.row(y) + x * 4;
            p[0] = static_cast<std::uint8_t>(x * 4);
            p[1] = static_cast<std::uint8_t>(y * 5);
            p[2] = static_cast<std::uint8_t>(255 - x * 3);
            p[3] = static_cast<std::uint8_t>(128 + y);
        }
    // Expected RGB: Adobe (inverted) CMYK is R = C*K/255; plain CMYK is R = (255-C)*(255-K)/255.
    const auto expected = [&](bool inverted) {
        tkt::bytes rgb;
        for (int y = 0; y < h; ++y)
            for (int x = 0; x < w; ++x) {
                const std::uint8_t* p = cmyk.row(y) + x * 4;
                const int k = inverted ? p[3] : 255 - p[3];
                for (int c = 0; c < 3; ++c) rgb.push_back(static_cast<std::uint8_t>(((inverted ? p[c] : 255 - p[c]) * k + 127) / 255));
            }
        return rgb;
    };
    struct variant {
        const char* name;
        tkt::bytes jpg;
        bool inverted;
    };
    const variant variants[] = {{"adobe cmyk", cmyk_jpeg(cmyk, true), true},
                                {"plain cmyk", cmyk_jpeg(cmyk, false), false},
                                {"ycck (turbojpeg)", turbo_jpeg(cmyk, false, 100), true}};
    for (const variant& v : variants) {
        INFO(v.name);
        const auto reader = fast_codecs::open_memory(v.jpg.data(), v.jpg.size());
        REQUIRE(dynamic_cast<jpeg_row_reader*>(reader.get()) != nullptr);
        REQUIRE(reader->channels() == 3);
        const tkt::bytes rows = tkt::read_all_rows(*reader);
        const tkt::bytes want = expected(v.inverted);
        REQUIRE(rows.size() == want.size());
        CHECK(tkt::psnr(rows.data(), want.data(), rows.size()) > 35.0);
    }
}

TEST_CASE("strict by default: damaged JPEG entropy data is refused, accepted on request", "[streaming][hostile]") {
    const tkt::bytes jpg = turbo_jpeg(tkt::make_image(300, 260, 3, 7, 30), false);
    const std::size_t sos = find_marker(jpg, 0xda);
    const std::size_t data = sos + 2 + ((std::size_t{jpg[sos + 2]} << 8) | jpg[sos + 3]);
    REQUIRE(jpg[jpg.size() - 2] == 0xff);
    REQUIRE(jpg[jpg.size() - 1] == 0xd9);
    const tkt::bytes eoi = {0xff, 0xd9};

    // Half the entropy-coded data, then a proper end: libjpeg warns "premature end of data segment".
    std::size_t half = data + (jpg.size() - 2 - data) / 2;
    while (jpg[half - 1] == 0xff) --half;  // never cut between 0xFF and its stuffed zero
    tkt::bytes halved(jpg.begin(), jpg.begin() + static_cast<std::ptrdiff_t>(half));
    halved.insert(halved.end(), eoi.begin(), eoi.end());
    check_refused_strictly_accepted_leniently(halved, "half-entropy.jpg");

    // A frame header claiming twice the rows the data holds.
    tkt::bytes tall = jpg;
    const std::size_t sof = find_marker(tall, 0xc0);
    const int rows = ((tall[sof + 5] << 8) | tall[sof + 6]) * 2;
    tall[sof + 5] = static_cast<std::uint8_t>(rows >> 8);
    tall[sof + 6] = static_cast<std::uint8_t>(rows & 0xff);
    check_refused_strictly_accepted_leniently(tall, "tall-sof.jpg");

    // Bytes between the end of the scan and EOI: "N extraneous bytes before marker 0xd9".
    tkt::bytes padded(jpg.begin(), jpg.end() - 2);
    padded.insert(padded.end(), 100, 0x00);
    padded.insert(padded.end(), eoi.begin(), eoi.end());
    check_refused_strictly_accepted_leniently(padded, "extraneous.jpg");

    // The file cut in the middle (no EOI): "premature end of JPEG file".
    const tkt::bytes cut(jpg.begin(), jpg.begin() + static_cast<std::ptrdiff_t>(half));
    check_refused_strictly_accepted_leniently(cut, "cut.jpg");

    // And the intact file passes in both modes, on both paths.
    CHECK_FALSE(tile_bytes(jpg, "intact.jpg", false).code.has_value());
    CHECK_FALSE(tile_bytes(jpg, "intact.jpg", false, false).code.has_value());
}

TEST_CASE("strict by default: PNG stream damage libpng only warns about is refused", "[streaming][hostile]") {
    const int w = 50, h = 40;
    tkt::bytes raw(static_cast<std::size_t>(w) * 3 * (h + 1));
    for (std::size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<std::uint8_t>(i * 7);
    const std::size_t row = static_cast<std::size_t>(w) * 3;
    const tkt::bytes good = tkt::make_png(w, h, 8, 2, tkt::bytes(raw.begin(), raw.end() - static_cast<std::ptrdiff_t>(row)), row);
    CHECK_FALSE(tile_bytes(good, "good.png", false).code.has_value());
    const std::size_t after_ihdr = 8 + 25;
    const std::size_t before_iend = good.size() - 12;

    tkt::bytes text_chunk;
    const std::string text = "Comment\0made by a test";
    bad_crc_chunk(text_chunk, "tEXt", tkt::bytes(text.begin(), text.end()));
    check_refused_strictly_accepted_leniently(insert_before(good, after_ihdr, text_chunk), "bad-crc-text.png");
    check_refused_strictly_accepted_leniently(insert_before(good, before_iend, text_chunk), "bad-crc-after-idat.png");

    // One row more image data than IHDR claims: "Too much image data" / "Extra compressed data".
    check_refused_strictly_accepted_leniently(tkt::make_png(w, h, 8, 2, raw, row), "extra-data.png");

    // Three rows fewer than IHDR claims, IEND present: libpng stops ("Not enough image data")
    // in both modes, since there is nothing to decode the rest from.
    const tkt::bytes short_idat =
        tkt::make_png(w, h, 8, 2, tkt::bytes(raw.begin(), raw.end() - static_cast<std::ptrdiff_t>(4 * row)), row);
    for (const bool accept : {false, true}) for (const bool fast : {true, false}) {
        const run_result result = tile_bytes(short_idat, "short-idat.png", accept, fast);
        INFO(result.message << (fast ? " (fast)" : " (core)"));
        CHECK(result.code == errc::truncated_image);
        CHECK_FALSE(result.manifest);
    }
}

TEST_CASE("the memory budget is checked from the header, before allocating", "[streaming][hostile]") {
    // 74 bytes: IHDR 2^28 x 1 RGBA. Decoding needs three 1 GiB rows; the budget is 1 GiB.
    const tkt::bytes wide = tkt::make_png(1u << 28, 1, 8, 6, tkt::bytes(4, 0), 4);
    CHECK(wide.size() < 100);
    std::string message;
    CHECK(error_of([&] { fast_codecs::open_memory(wide.data(), wide.size()); }, &message) == errc::over_memory_budget);
    CHECK(message.find(std::to_string(decode_limits{}.max_memory_bytes)) != std::string::npos);
    CHECK(message.find("needs about") != std::string::npos);

    // Interlaced 20000 x 20000 RGBA: within the pixel limit, but the whole image is 1.6 GB.
    tkt::bytes interlaced = tkt::make_png(20000, 20000, 8, 6, tkt::bytes(16, 0), 16);
    interlaced[8 + 8 + 12] = 1;  // IHDR interlace method: Adam7
    const std::uint32_t crc = tkt::crc32(interlaced.data() + 12, 17);
    for (int i = 0; i < 4; ++i) interlaced[8 + 8 + 13 + i] = static_cast<std::uint8_t>(crc >> (24 - 8 * i));
    CHECK(error_of([&] { fast_codecs::open_memory(interlaced.data(), interlaced.size()); }, &message) ==
          errc::over_memory_budget);
    CHECK(message.find("interlaced") != std::string::npos);

    // A small progressive JPEG whose frame header claims 32768 x 32768: libjpeg would keep
    // 32768^2 * 1.5 coefficients of 2 bytes (3 GiB) before producing a row.
    tkt::bytes progressive = turbo_jpeg(tkt::make_image(64, 64, 3), true);
    const std::size_t sof = find_marker(progressive, 0xc2);
    for (int i = 5; i <= 8; ++i) progressive[sof + i] = i % 2 ? 0x80 : 0x00;  // 0x8000 rows, 0x8000 columns
    CHECK(error_of([&] { fast_codecs::open_memory(progressive.data(), progressive.size()); }, &message) ==
          errc::over_memory_budget);
    CHECK(message.find("progressive") != std::string::npos);

    // The estimate is what separates progressive from baseline: a budget of 2 MiB holds a
    // 1024^2 baseline JPEG's row buffers but not the progressive one's 3 MiB of coefficients.
    const image_buffer image = tkt::make_image(1024, 1024, 3, 5, 8);
    const tkt::bytes baseline = turbo_jpeg(image, false), prog = turbo_jpeg(image, true);
    decode_limits two_mib;
    two_mib.max_memory_bytes = 2u << 20;
    CHECK(tkt::read_all_rows(*fast_codecs::open_memory(baseline.data(), baseline.size(), two_mib)).size() == 1024u * 1024 * 3);
    CHECK(error_of([&] { fast_codecs::open_memory(prog.data(), prog.size(), two_mib); }) == errc::over_memory_budget);
    decode_limits four_mib;
    four_mib.max_memory_bytes = 4u << 20;
    const auto reader = fast_codecs::open_memory(prog.data(), prog.size(), four_mib);  // and it decodes there
    const tkt::bytes rows = tkt::read_all_rows(*reader);
    const tkt::bytes reference = tkt::pixels_of(image.view());
    REQUIRE(rows.size() == reference.size());
    CHECK(tkt::psnr(rows.data(), reference.data(), rows.size()) > 30.0);
}

TEST_CASE("libpng's own size limits are tilekit's", "[streaming][hostile]") {
    const tkt::bytes png = tkt::make_png(2000, 1, 8, 0, tkt::bytes(2000, 9), 2000);
    decode_limits limits;
    limits.max_pixels = 1000;
    std::string message;
    CHECK(error_of([&] { fast_codecs::open_memory(png.data(), png.size(), limits); }, &message) == errc::image_too_large);
    CHECK(message.find("user limit") != std::string::npos);  // refused by libpng itself, in IHDR
    limits.max_pixels = 2000;
    CHECK_NOTHROW(tkt::read_all_rows(*fast_codecs::open_memory(png.data(), png.size(), limits)));
}
