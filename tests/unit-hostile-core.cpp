// Hostile input on the core path: what stb_image would mishandle is refused by tilekit's own
// checks (detail/jpeg_check.hpp, detail/png_check.hpp) before stb sees it, and the core and
// fast paths agree on what they accept and on the pixels. Every input is made here.

#include "test_helpers.hpp"

#include <tilekit/fast_codecs.hpp>

#include <cstdio>
#include <jpeglib.h>
#include <zlib.h>

using namespace tilekit;
using tkt::error_of;

namespace {

struct jpeg_recipe {
    int components = 3;  // 1 gray, 3 YCbCr, 4 CMYK
    bool progressive = false;
    bool separate_scans = false;  // sequential, one scan per component
    unsigned restart_interval = 0;
    bool adobe = true;  // CMYK only
    int quality = 90;
    bool subsample = true;
};

tkt::bytes libjpeg_encode(const image_buffer& image, const jpeg_recipe& r) {
    jpeg_compress_struct cinfo;
    jpeg_error_mgr err;
    cinfo.err = jpeg_std_error(&err);
    jpeg_create_compress(&cinfo);
    unsigned char* out = nullptr;
    unsigned long size = 0;
    jpeg_mem_dest(&cinfo, &out, &size);
    cinfo.image_width = static_cast<JDIMENSION>(image.width());
    cinfo.image_height = static_cast<JDIMENSION>(image.height());
    cinfo.input_components = image.channels();
    cinfo.in_color_space = image.channels() == 1 ? JCS_GRAYSCALE : image.channels() == 4 ? JCS_CMYK : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    if (image.channels() == 4) jpeg_set_colorspace(&cinfo, JCS_CMYK);
    jpeg_set_quality(&cinfo, r.quality, TRUE);
    if (!r.subsample)
        for (int c = 0; c < cinfo.num_components; ++c) cinfo.comp_info[c].h_samp_factor = cinfo.comp_info[c].v_samp_factor = 1;
    cinfo.write_Adobe_marker = r.adobe ? TRUE : FALSE;
    cinfo.restart_interval = r.restart_interval;
    std::vector<jpeg_scan_info> scans;
    if (r.progressive) jpeg_simple_progression(&cinfo);
    if (r.separate_scans) {
        for (int c = 0; c < cinfo.num_components; ++c) {
            jpeg_scan_info scan{};
            scan.comps_in_scan = 1;
            scan.component_index[0] = c;
            scan.Ss = 0;
            scan.Se = 63;
            scans.push_back(scan);
        }
        cinfo.scan_info = scans.data();
        cinfo.num_scans = static_cast<int>(scans.size());
    }
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = const_cast<JSAMPROW>(image.view().row(static_cast<int>(cinfo.next_scanline)));
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    tkt::bytes jpg(out, out + size);
    std::free(out);
    return jpg;
}

// Marker segments of a JPEG up to the first SOS: positions of each `code`.
std::vector<std::size_t> markers(const tkt::bytes& jpg, std::uint8_t code) {
    std::vector<std::size_t> found;
    std::size_t pos = 2;
    while (pos + 4 <= jpg.size() && jpg[pos] == 0xff) {
        if (jpg[pos + 1] == code) found.push_back(pos);
        if (jpg[pos + 1] == 0xda) {  // skip the entropy data to the next marker
            pos += 2 + ((std::size_t{jpg[pos + 2]} << 8) | jpg[pos + 3]);
            while (pos + 1 < jpg.size() && !(jpg[pos] == 0xff && jpg[pos + 1] != 0 && (jpg[pos + 1] < 0xd0 || jpg[pos + 1] > 0xd7)))
                ++pos;
            continue;
        }
        if (jpg[pos + 1] == 0xd9) break;
        pos += 2 + ((std::size_t{jpg[pos + 2]} << 8) | jpg[pos + 3]);
    }
    return found;
}


struct both_paths {
    std::optional<errc> core, fast;
    std::string core_message, fast_message;
    image_buffer core_image;
    tkt::bytes fast_pixels;
    int fast_channels = 0;
};

both_paths decode_both(const tkt::bytes& bytes, const decode_limits& limits = {}) {
    both_paths r;
    r.core = error_of([&] { r.core_image = decode_image(bytes, limits); }, &r.core_message);
    r.fast = error_of([&] {
        auto reader = fast_codecs::open_memory(bytes.data(), bytes.size(), limits);
        r.fast_channels = reader->channels();
        r.fast_pixels = tkt::read_all_rows(*reader);
    }, &r.fast_message);
    return r;
}

tkt::bytes zlib_compress(const tkt::bytes& raw) {
    uLongf size = compressBound(static_cast<uLong>(raw.size()));
    tkt::bytes out(size);
    REQUIRE(compress2(out.data(), &size, raw.data(), static_cast<uLong>(raw.size()), 9) == Z_OK);
    out.resize(size);
    return out;
}

// A PNG with the given chunks (name, data) after the signature, CRCs computed.
tkt::bytes png_from_chunks(const std::vector<std::pair<std::string, tkt::bytes>>& chunks) {
    tkt::bytes out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    for (const auto& [name, data] : chunks) tkt::png_chunk(out, name.c_str(), data);
    return out;
}

tkt::bytes ihdr(std::uint32_t w, std::uint32_t h, int depth, int color, int interlace = 0) {
    tkt::bytes d;
    tkt::put_be32(d, w);
    tkt::put_be32(d, h);
    d.push_back(static_cast<std::uint8_t>(depth));
    d.push_back(static_cast<std::uint8_t>(color));
    d.push_back(0);
    d.push_back(0);
    d.push_back(static_cast<std::uint8_t>(interlace));
    return d;
}

}  // namespace

TEST_CASE("core path: a Huffman table with more than 256 codes is refused before stb builds it", "[decode][hostile][core]") {
    // stb_image 2.27 writes past its 257-entry size table for such a table, from read_image_info.
    tkt::bytes jpg = {0xff, 0xd8, 0xff, 0xc4, 0x00, 0x13, 0x00};
    for (int i = 0; i < 16; ++i) jpg.push_back(0xff);  // 16 x 255 codes
    std::string message;
    CHECK(error_of([&] { read_image_info(jpg); }, &message) == errc::corrupt_image);
    CHECK(message.find("Huffman") != std::string::npos);
    CHECK(error_of([&] { decode_image(jpg); }) == errc::corrupt_image);
    // A 9-byte file too: whatever stb would read, the checks refuse first.
    const tkt::bytes nine = {0xff, 0xd8, 0xff, 0xc4, 0x00, 0x13, 0x00, 0xff, 0xff};
    CHECK(error_of([&] { read_image_info(nine); }).has_value());
    // Code lengths that do not form a prefix code (three 1-bit codes).
    tkt::bytes bad_lengths = {0xff, 0xd8, 0xff, 0xc4, 0x00, 0x16, 0x00, 3};
    for (int i = 0; i < 15; ++i) bad_lengths.push_back(0);
    bad_lengths.insert(bad_lengths.end(), {1, 2, 3});
    CHECK(error_of([&] { read_image_info(bad_lengths); }, &message) == errc::corrupt_image);
}

TEST_CASE("core path: a scan that uses an undefined Huffman or quantization table is refused", "[decode][hostile][core]") {
    const image_buffer image = tkt::make_image(96, 64, 3, 3, 20);
    for (const bool progressive : {false, true}) {
        INFO((progressive ? "progressive" : "baseline"));
        const tkt::bytes jpg = libjpeg_encode(image, jpeg_recipe{3, progressive});
        REQUIRE_FALSE(error_of([&] { decode_image(jpg); }).has_value());
        // The first scan's first component names DC table 3 and AC table 3, never defined.
        tkt::bytes bad = jpg;
        const std::size_t sos = markers(bad, 0xda).at(0);
        bad[sos + 6] = 0x33;
        std::string message;
        CHECK(error_of([&] { decode_image(bad); }, &message) == errc::corrupt_image);
        CHECK(message.find("never defined") != std::string::npos);
        // A component whose quantization table id was never defined (3).
        tkt::bytes no_quant = jpg;
        const std::size_t sof = markers(no_quant, progressive ? 0xc2 : 0xc0).at(0);
        no_quant[sof + 10 + 2] = 3;  // first component's Tq
        CHECK(error_of([&] { decode_image(no_quant); }, &message) == errc::corrupt_image);
        CHECK(message.find("quantization table 3") != std::string::npos);
        // libjpeg refuses both as well.
        CHECK(error_of([&] { tkt::read_all_rows(*fast_codecs::open_memory(bad.data(), bad.size())); }).has_value());
        CHECK(error_of([&] { tkt::read_all_rows(*fast_codecs::open_memory(no_quant.data(), no_quant.size())); }).has_value());
    }
}

TEST_CASE("core path: a component without a scan is refused (stb would return uninitialised memory)", "[decode][hostile][core]") {
    const image_buffer image = tkt::make_image(80, 48, 3, 9, 10);
    jpeg_recipe recipe;
    recipe.separate_scans = true;
    const tkt::bytes jpg = libjpeg_encode(image, recipe);
    const auto scans = markers(jpg, 0xda);
    REQUIRE(scans.size() == 3);
    CHECK_FALSE(error_of([&] { decode_image(jpg); }).has_value());
    tkt::bytes two_scans(jpg.begin(), jpg.begin() + static_cast<std::ptrdiff_t>(scans[2]));
    two_scans.insert(two_scans.end(), {0xff, 0xd9});
    std::string message;
    CHECK(error_of([&] { decode_image(two_scans); }, &message) == errc::corrupt_image);
    CHECK(message.find("has no scan") != std::string::npos);
    decode_limits lenient;
    lenient.accept_damaged = true;  // never, whatever the mode: the pixels would be heap garbage
    CHECK(error_of([&] { decode_image(two_scans, lenient); }) == errc::corrupt_image);

    // Progressive: a file that stops before a component's DC scan.
    jpeg_recipe prog;
    prog.progressive = true;
    const tkt::bytes p = libjpeg_encode(image, prog);
    const auto p_scans = markers(p, 0xda);
    REQUIRE(p_scans.size() > 2);
    // jpeg_simple_progression's first scan holds the DC of all components; craft a frame with
    // a fourth component id that no scan names instead: a 3-component frame whose component 3
    // id is changed, and the scans' references left as they are.
    tkt::bytes renamed = p;
    const std::size_t sof = markers(renamed, 0xc2).at(0);
    renamed[sof + 10 + 6] = 0x7f;  // third component's id
    CHECK(error_of([&] { decode_image(renamed); }).value_or(errc::invalid_argument) == errc::corrupt_image);
}

TEST_CASE("core path: JPEG damage is refused by default and accepted on request, as on the fast path", "[decode][hostile][core]") {
    const image_buffer image = tkt::make_image(160, 120, 3, 4, 25);
    for (const bool progressive : {false, true})
        for (const unsigned restart : {0u, 3u}) {
            INFO((progressive ? "progressive" : "baseline") << " restart " << restart);
            jpeg_recipe recipe;
            recipe.progressive = progressive;
            recipe.restart_interval = restart;
            const tkt::bytes jpg = libjpeg_encode(image, recipe);
            const auto scans = markers(jpg, 0xda);
            const std::size_t first = scans.at(0);
            const std::size_t data = first + 2 + ((std::size_t{jpg[first + 2]} << 8) | jpg[first + 3]);
            std::size_t half = data + (jpg.size() - 2 - data) / 2;
            while (jpg[half - 1] == 0xff || jpg[half] == 0xff) --half;
            tkt::bytes halved(jpg.begin(), jpg.begin() + static_cast<std::ptrdiff_t>(half));
            halved.insert(halved.end(), {0xff, 0xd9});
            tkt::bytes padded(jpg.begin(), jpg.end() - 2);
            padded.insert(padded.end(), 50, 0x11);
            padded.insert(padded.end(), {0xff, 0xd9});
            const tkt::bytes cut(jpg.begin(), jpg.begin() + static_cast<std::ptrdiff_t>(half));
            decode_limits lenient;
            lenient.accept_damaged = true;
            for (const auto& [name, file] : std::vector<std::pair<std::string, tkt::bytes>>{
                     {"halved", halved}, {"padded", padded}, {"cut", cut}}) {
                INFO(name);
                const both_paths strict = decode_both(file);
                INFO(strict.core_message << " | " << strict.fast_message);
                CHECK(strict.core.has_value());
                CHECK(strict.core == strict.fast);
                const both_paths loose = decode_both(file, lenient);
                INFO(loose.core_message << " | " << loose.fast_message);
                CHECK_FALSE(loose.core.has_value());
                CHECK_FALSE(loose.fast.has_value());
            }
            const both_paths intact = decode_both(jpg);
            CHECK_FALSE(intact.core.has_value());
            CHECK_FALSE(intact.fast.has_value());
        }
}

TEST_CASE("core path: a CMYK JPEG without Adobe's marker is refused, with it both paths agree", "[decode][hostile][core]") {
    const image_buffer cmyk = tkt::make_image(64, 40, 4, 2, 10);
    jpeg_recipe recipe;
    recipe.components = 4;
    recipe.subsample = false;
    recipe.adobe = false;
    std::string message;
    const tkt::bytes plain = libjpeg_encode(cmyk, recipe);
    CHECK(error_of([&] { decode_image(plain); }, &message) == errc::corrupt_image);
    CHECK(message.find("Adobe") != std::string::npos);
    recipe.adobe = true;
    const tkt::bytes adobe = libjpeg_encode(cmyk, recipe);
    const both_paths both = decode_both(adobe);
    INFO(both.core_message << " | " << both.fast_message);
    REQUIRE_FALSE(both.core.has_value());
    REQUIRE_FALSE(both.fast.has_value());
    REQUIRE(both.core_image.channels() == 3);
    const tkt::bytes core = tkt::pixels_of(both.core_image.view());
    REQUIRE(core.size() == both.fast_pixels.size());
    CHECK(tkt::psnr(core.data(), both.fast_pixels.data(), core.size()) > 40.0);
}

TEST_CASE("core path: PNG structure is checked with libpng's rules", "[decode][hostile][core]") {
    const tkt::bytes raw = {0, 10, 20, 30, 0, 40, 50, 60};  // 2 rows of 1 RGB pixel, filter 0
    const tkt::bytes idat = zlib_compress(raw);
    const tkt::bytes good = png_from_chunks({{"IHDR", ihdr(1, 2, 8, 2)}, {"IDAT", idat}, {"IEND", {}}});
    CHECK_FALSE(decode_both(good).core.has_value());
    decode_limits lenient;
    lenient.accept_damaged = true;
    struct case_t {
        std::string name;
        tkt::bytes file;
        bool lenient_accepts;
    };
    tkt::bytes bad_adler = idat;
    bad_adler.back() ^= 1;
    tkt::bytes too_much_raw = raw;
    too_much_raw.insert(too_much_raw.end(), {0, 1, 2, 3});
    const std::vector<case_t> cases = {
        // Apple's CgBI (an unknown critical chunk): stb reads it as BGR with raw deflate.
        {"CgBI", png_from_chunks({{"CgBI", {0x50, 0, 0x20, 6}}, {"IHDR", ihdr(1, 2, 8, 2)}, {"IDAT", idat}, {"IEND", {}}}), false},
        {"unknown critical chunk", png_from_chunks({{"IHDR", ihdr(1, 2, 8, 2)}, {"ABCD", {1}}, {"IDAT", idat}, {"IEND", {}}}), false},
        {"split IDAT", png_from_chunks({{"IHDR", ihdr(1, 2, 8, 2)}, {"IDAT", tkt::bytes(idat.begin(), idat.begin() + 4)},
                                        {"tEXt", {'a', 0, 'b'}}, {"IDAT", tkt::bytes(idat.begin() + 4, idat.end())}, {"IEND", {}}}), false},
        {"bad Adler-32", png_from_chunks({{"IHDR", ihdr(1, 2, 8, 2)}, {"IDAT", bad_adler}, {"IEND", {}}}), false},
        {"too much data", png_from_chunks({{"IHDR", ihdr(1, 2, 8, 2)}, {"IDAT", zlib_compress(too_much_raw)}, {"IEND", {}}}), true},
        {"no IDAT", png_from_chunks({{"IHDR", ihdr(1, 2, 8, 2)}, {"IEND", {}}}), false},
        {"palette without PLTE", png_from_chunks({{"IHDR", ihdr(1, 2, 8, 3)}, {"IDAT", zlib_compress({0, 0, 0, 0})}, {"IEND", {}}}), false},
        {"bad depth", png_from_chunks({{"IHDR", ihdr(1, 2, 3, 2)}, {"IDAT", idat}, {"IEND", {}}}), false},
    };
    for (const case_t& c : cases) {
        INFO(c.name);
        const both_paths strict = decode_both(c.file);
        INFO(strict.core_message << " | " << strict.fast_message);
        CHECK(strict.core.has_value());
        CHECK(strict.fast.has_value());
        const both_paths loose = decode_both(c.file, lenient);
        INFO(loose.core_message << " | " << loose.fast_message);
        CHECK(loose.core.has_value() == !c.lenient_accepts);
        CHECK(loose.fast.has_value() == !c.lenient_accepts);
    }
}

TEST_CASE("core path: a small PNG whose data inflates without end is refused without inflating it", "[decode][hostile][core]") {
    // 1000 x 1000 gray needs 1,001,000 bytes; the stream holds 64 MiB of zeros (about 64 KB
    // compressed). stb alone would grow its buffer to 64 MiB; the check stops at the image size.
    const tkt::bytes zeros(64u << 20, 0);
    const tkt::bytes bomb = png_from_chunks({{"IHDR", ihdr(1000, 1000, 8, 0)}, {"IDAT", zlib_compress(zeros)}, {"IEND", {}}});
    CHECK(bomb.size() < 200000);
    std::string message;
    for (const bool accept : {false, true}) {
        decode_limits limits;
        limits.accept_damaged = accept;
        CHECK(error_of([&] { decode_image(bomb, limits); }, &message) == errc::corrupt_image);
        CHECK(message.find("more image data") != std::string::npos);
    }
}

TEST_CASE("core and fast paths decode the same pixels from the same files", "[decode][core][agreement]") {
    std::vector<std::pair<std::string, tkt::bytes>> files;
    for (const int channels : {1, 2, 3, 4}) {
        const image_buffer image = tkt::make_image(37, 23, channels, static_cast<std::uint32_t>(channels), 30);
        files.emplace_back("png " + std::to_string(channels), tkt::png_of(image.view()));
    }
    // 16-bit gray and RGB, palette with transparency, gray with tRNS, interlaced.
    {
        tkt::bytes raw16;
        for (int y = 0; y < 5; ++y) {
            raw16.push_back(0);
            for (int x = 0; x < 7 * 3; ++x) {
                raw16.push_back(static_cast<std::uint8_t>(x * 11 + y));
                raw16.push_back(static_cast<std::uint8_t>(x * 7));
            }
        }
        files.emplace_back("png rgb16", png_from_chunks({{"IHDR", ihdr(7, 5, 16, 2)}, {"IDAT", zlib_compress(raw16)}, {"IEND", {}}}));
        tkt::bytes pal_raw;
        for (int y = 0; y < 4; ++y) {
            pal_raw.push_back(0);
            for (int x = 0; x < 6; ++x) pal_raw.push_back(static_cast<std::uint8_t>((x + y) % 3));
        }
        files.emplace_back("png palette+tRNS",
                           png_from_chunks({{"IHDR", ihdr(6, 4, 8, 3)}, {"PLTE", {255, 0, 0, 0, 255, 0, 0, 0, 255}},
                                            {"tRNS", {255, 128}}, {"IDAT", zlib_compress(pal_raw)}, {"IEND", {}}}));
    }
    files.emplace_back("png gray+tRNS", png_from_chunks({{"IHDR", ihdr(3, 2, 8, 0)}, {"tRNS", {0, 20}},
                                                          {"IDAT", zlib_compress({0, 20, 30, 20, 0, 1, 20, 3})}, {"IEND", {}}}));
    files.emplace_back("png rgb+tRNS", png_from_chunks({{"IHDR", ihdr(2, 1, 8, 2)}, {"tRNS", {0, 1, 0, 2, 0, 3}},
                                                         {"IDAT", zlib_compress({0, 1, 2, 3, 4, 5, 6})}, {"IEND", {}}}));
    const image_buffer photo = tkt::make_image(83, 61, 3, 12, 20);
    const image_buffer gray = tkt::make_image(83, 61, 1, 13, 20);
    for (const bool progressive : {false, true})
        for (const bool subsample : {false, true}) {
            jpeg_recipe r;
            r.progressive = progressive;
            r.subsample = subsample;
            r.restart_interval = subsample ? 2 : 0;
            files.emplace_back(std::string("jpeg ") + (progressive ? "progressive" : "baseline") + (subsample ? " 4:2:0" : " 4:4:4"),
                               libjpeg_encode(photo, r));
        }
    files.emplace_back("jpeg gray", libjpeg_encode(gray, jpeg_recipe{1}));
    for (const auto& [name, file] : files) {
        INFO(name);
        const both_paths both = decode_both(file);
        INFO(both.core_message << " | " << both.fast_message);
        REQUIRE_FALSE(both.core.has_value());
        REQUIRE_FALSE(both.fast.has_value());
        CHECK(both.core_image.channels() == both.fast_channels);
        CHECK(read_image_info(file).channels == both.core_image.channels());
        const tkt::bytes core = tkt::pixels_of(both.core_image.view());
        REQUIRE(core.size() == both.fast_pixels.size());
        if (name.rfind("png", 0) == 0) {
            CHECK(core == both.fast_pixels);  // lossless: exactly
        } else {
            // Two IDCTs and two upsamplers: close, not equal.
            CHECK(tkt::psnr(core.data(), both.fast_pixels.data(), core.size()) > 38.0);
        }
    }
}
