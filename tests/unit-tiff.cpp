// The TIFF part (<tilekit/tiff.hpp>): the streaming libtiff reader decodes every layout,
// compression, depth and colour type to the pixels the tests expect (written here with libtiff
// itself) and to what vips reads (files written with `vips tiffsave`); tile_file(), tile_memory()
// and both codec sets find it from the first bytes; hostile headers are refused with typed errors
// before any large allocation.

#include "test_helpers.hpp"

#include <tilekit/fast_codecs.hpp>
#include <tilekit/tiff.hpp>

#include <tiffio.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

using namespace tilekit;
using tkt::error_of;

namespace {

// What to write with libtiff. Samples are given contiguous (width*height*samples values of up
// to `bits` bits); the writer lays them out as asked.
struct tiff_spec {
    int width = 37, height = 29, samples = 3, bits = 8;
    std::uint16_t photometric = PHOTOMETRIC_RGB;
    std::uint16_t compression = COMPRESSION_NONE;
    bool tiled = false;
    int tile_width = 16, tile_height = 16;
    int rows_per_strip = 7;
    bool separate = false;
    bool bigtiff = false;
    bool big_endian = false;
    std::uint16_t extra = EXTRASAMPLE_UNASSALPHA;  // the kind of the first extra sample, if any
    std::vector<std::uint16_t> colormap;           // palette: 3 * 2^bits entries (R..., G..., B...)
    std::uint16_t sample_format = SAMPLEFORMAT_UINT;
};

// Packs `count` values (every `stride`-th from `values`) into bytes, as TIFF stores them.
tkt::bytes pack(const std::uint16_t* values, std::size_t count, std::size_t stride, int bits) {
    tkt::bytes out;
    if (bits == 16) {
        out.resize(count * 2);
        for (std::size_t i = 0; i < count; ++i) std::memcpy(&out[i * 2], &values[i * stride], 2);  // native order
        return out;
    }
    if (bits == 8) {
        for (std::size_t i = 0; i < count; ++i) out.push_back(static_cast<std::uint8_t>(values[i * stride]));
        return out;
    }
    out.assign((count * static_cast<std::size_t>(bits) + 7) / 8, 0);
    for (std::size_t i = 0; i < count; ++i) {
        const std::size_t bit = i * static_cast<std::size_t>(bits);
        out[bit / 8] |= static_cast<std::uint8_t>(values[i * stride] << (8 - bits - static_cast<int>(bit % 8)));
    }
    return out;
}

void write_tiff(const std::string& path, const tiff_spec& s, const std::vector<std::uint16_t>& values) {
    REQUIRE(values.size() == std::size_t(s.width) * s.height * s.samples);
    std::string mode = "w";
    mode += s.big_endian ? "b" : "l";
    if (s.bigtiff) mode += "8";
    TIFF* tif = TIFFOpen(path.c_str(), mode.c_str());
    REQUIRE(tif);
    TIFFSetField(tif, TIFFTAG_IMAGEWIDTH, std::uint32_t(s.width));
    TIFFSetField(tif, TIFFTAG_IMAGELENGTH, std::uint32_t(s.height));
    TIFFSetField(tif, TIFFTAG_SAMPLESPERPIXEL, std::uint16_t(s.samples));
    TIFFSetField(tif, TIFFTAG_BITSPERSAMPLE, std::uint16_t(s.bits));
    TIFFSetField(tif, TIFFTAG_SAMPLEFORMAT, s.sample_format);
    TIFFSetField(tif, TIFFTAG_PHOTOMETRIC, s.photometric);
    TIFFSetField(tif, TIFFTAG_COMPRESSION, s.compression);
    TIFFSetField(tif, TIFFTAG_PLANARCONFIG, s.separate ? PLANARCONFIG_SEPARATE : PLANARCONFIG_CONTIG);
    const int base = s.photometric == PHOTOMETRIC_RGB ? 3 : 1;
    if (s.samples > base) {
        std::vector<std::uint16_t> kinds(std::size_t(s.samples - base), EXTRASAMPLE_UNSPECIFIED);
        kinds[0] = s.extra;
        TIFFSetField(tif, TIFFTAG_EXTRASAMPLES, std::uint16_t(kinds.size()), kinds.data());
    }
    if (!s.colormap.empty()) {
        const std::size_t n = s.colormap.size() / 3;
        TIFFSetField(tif, TIFFTAG_COLORMAP, s.colormap.data(), s.colormap.data() + n, s.colormap.data() + 2 * n);
    }
    const int planes = s.separate ? s.samples : 1;
    const std::size_t per_pixel = s.separate ? 1 : std::size_t(s.samples);
    // The values of plane p, rows y0..y0+rows, columns x0..x0+cols (zero beyond the image),
    // packed row by row as one strip or tile.
    const auto block = [&](int p, int x0, int y0, int cols, int rows) {
        tkt::bytes out;
        std::vector<std::uint16_t> row(std::size_t(cols) * per_pixel);
        for (int y = y0; y < y0 + rows; ++y) {
            std::fill(row.begin(), row.end(), 0);
            for (int x = x0; x < x0 + cols && y < s.height && x < s.width; ++x)
                for (std::size_t c = 0; c < per_pixel; ++c)
                    row[std::size_t(x - x0) * per_pixel + c] =
                        values[(std::size_t(y) * s.width + x) * s.samples + (s.separate ? std::size_t(p) : c)];
            const tkt::bytes packed = pack(row.data(), row.size(), 1, s.bits);
            out.insert(out.end(), packed.begin(), packed.end());
        }
        return out;
    };
    if (s.tiled) {
        TIFFSetField(tif, TIFFTAG_TILEWIDTH, std::uint32_t(s.tile_width));
        TIFFSetField(tif, TIFFTAG_TILELENGTH, std::uint32_t(s.tile_height));
        for (int p = 0; p < planes; ++p)
            for (int y = 0; y < s.height; y += s.tile_height)
                for (int x = 0; x < s.width; x += s.tile_width) {
                    tkt::bytes data = block(p, x, y, s.tile_width, s.tile_height);
                    const ttile_t tile = TIFFComputeTile(tif, std::uint32_t(x), std::uint32_t(y), 0, std::uint16_t(p));
                    REQUIRE(TIFFWriteEncodedTile(tif, tile, data.data(), tmsize_t(data.size())) >= 0);
                }
    } else {
        TIFFSetField(tif, TIFFTAG_ROWSPERSTRIP, std::uint32_t(s.rows_per_strip));
        for (int p = 0; p < planes; ++p)
            for (int y = 0; y < s.height; y += s.rows_per_strip) {
                const int rows = std::min(s.rows_per_strip, s.height - y);
                tkt::bytes data = block(p, 0, y, s.width, rows);
                const tstrip_t strip = TIFFComputeStrip(tif, std::uint32_t(y), std::uint16_t(p));
                REQUIRE(TIFFWriteEncodedStrip(tif, strip, data.data(), tmsize_t(data.size())) >= 0);
            }
    }
    TIFFClose(tif);
}

// Deterministic samples of up to `bits` bits; with an alpha sample (the last), some pixels fully
// transparent and some opaque.
std::vector<std::uint16_t> make_values(const tiff_spec& s, bool alpha, std::uint32_t seed) {
    std::vector<std::uint16_t> v(std::size_t(s.width) * s.height * s.samples);
    const std::uint32_t max = (1u << s.bits) - 1;
    std::uint32_t state = seed * 2654435761u + 1;
    for (std::size_t i = 0; i < v.size(); ++i) {
        state = state * 1664525u + 1013904223u;
        v[i] = static_cast<std::uint16_t>((state >> 8) & max);
    }
    if (alpha)
        for (std::size_t p = 0; p < std::size_t(s.width) * s.height; ++p) {
            std::uint16_t& a = v[p * s.samples + std::size_t(s.samples - 1)];
            if (p % 7 == 0) a = 0;
            if (p % 5 == 0) a = static_cast<std::uint16_t>(max);
        }
    return v;
}

std::uint8_t to8(std::uint32_t v, int bits) {
    if (bits == 16) return static_cast<std::uint8_t>(v >> 8);
    return static_cast<std::uint8_t>(v * 255 / ((1u << bits) - 1));
}

// What the reader must give for unassociated data: written from the TIFF rules (6.0 and the
// ExtraSamples note), independently of the reader.
tkt::bytes expected_pixels(const tiff_spec& s, const std::vector<std::uint16_t>& v) {
    tkt::bytes out;
    const std::uint32_t max = (1u << s.bits) - 1;
    for (std::size_t p = 0; p < std::size_t(s.width) * s.height; ++p) {
        const std::uint16_t* px = &v[p * s.samples];
        if (s.photometric == PHOTOMETRIC_PALETTE) {
            const std::size_t n = s.colormap.size() / 3;
            for (int c = 0; c < 3; ++c) out.push_back(static_cast<std::uint8_t>(s.colormap[std::size_t(c) * n + px[0]] >> 8));
            if (s.samples > 1) out.push_back(to8(px[1], s.bits));
            continue;
        }
        const int colours = s.photometric == PHOTOMETRIC_RGB ? 3 : 1;
        for (int c = 0; c < colours; ++c)
            out.push_back(to8(s.photometric == PHOTOMETRIC_MINISWHITE ? max - px[c] : px[c], s.bits));
        if (s.samples > colours) out.push_back(to8(px[colours], s.bits));  // alpha; further extras dropped
    }
    return out;
}

std::vector<std::uint16_t> palette_of(int bits) {
    const std::size_t n = std::size_t{1} << bits;
    std::vector<std::uint16_t> map(3 * n);
    for (std::size_t i = 0; i < n; ++i) {
        map[i] = static_cast<std::uint16_t>((i * 40503u) & 0xffff);
        map[n + i] = static_cast<std::uint16_t>((i * 257u * 3) & 0xffff);
        map[2 * n + i] = static_cast<std::uint16_t>(0xffff - i * 97);
    }
    return map;
}

const char* compression_name(std::uint16_t c) {
    switch (c) {
        case COMPRESSION_NONE: return "none";
        case COMPRESSION_LZW: return "lzw";
        case COMPRESSION_ADOBE_DEFLATE: return "deflate";
        case COMPRESSION_PACKBITS: return "packbits";
        default: return "?";
    }
}

// A TIFF made by hand (classic or BigTIFF, little-endian): one IFD with these entries (each
// value inline), then `tail`. For headers libtiff's writer would refuse to produce.
struct entry {
    std::uint16_t tag, type;
    std::uint64_t count, value;
};

tkt::bytes handmade_tiff(std::vector<entry> entries, bool big, const tkt::bytes& tail = {}) {
    std::sort(entries.begin(), entries.end(), [](const entry& a, const entry& b) { return a.tag < b.tag; });
    tkt::bytes out;
    const auto put = [&out](std::uint64_t v, int n) {
        for (int i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    };
    out = {'I', 'I'};
    if (big) {
        put(43, 2), put(8, 2), put(0, 2), put(16, 8);
        put(entries.size(), 8);
    } else {
        put(42, 2), put(8, 4);
        put(entries.size(), 2);
    }
    for (const entry& e : entries) {
        put(e.tag, 2), put(e.type, 2);
        if (big) {
            put(e.count, 8), put(e.value, 8);
        } else {
            put(e.count, 4);
            if (e.type == TIFF_SHORT && e.count == 1) put(e.value, 2), put(0, 2);
            else put(e.value, 4);
        }
    }
    put(0, big ? 8 : 4);
    out.insert(out.end(), tail.begin(), tail.end());
    return out;
}

// The entries of a one-strip uncompressed RGB image whose data starts at `offset`.
std::vector<entry> rgb_entries(std::uint64_t width, std::uint64_t height, std::uint64_t offset, std::uint64_t bytes,
                               bool big) {
    const std::uint16_t long_type = big ? TIFF_LONG8 : TIFF_LONG;
    return {{TIFFTAG_IMAGEWIDTH, TIFF_LONG, 1, width},
            {TIFFTAG_IMAGELENGTH, TIFF_LONG, 1, height},
            {TIFFTAG_BITSPERSAMPLE, TIFF_SHORT, 1, 8},
            {TIFFTAG_COMPRESSION, TIFF_SHORT, 1, COMPRESSION_NONE},
            {TIFFTAG_PHOTOMETRIC, TIFF_SHORT, 1, PHOTOMETRIC_RGB},
            {TIFFTAG_STRIPOFFSETS, long_type, 1, offset},
            {TIFFTAG_SAMPLESPERPIXEL, TIFF_SHORT, 1, 3},
            {TIFFTAG_ROWSPERSTRIP, TIFF_LONG, 1, height},
            {TIFFTAG_STRIPBYTECOUNTS, long_type, 1, bytes}};
}

void set_entry(std::vector<entry>& entries, std::uint16_t tag, std::uint16_t type, std::uint64_t count, std::uint64_t value) {
    for (entry& e : entries)
        if (e.tag == tag) {
            e = {tag, type, count, value};
            return;
        }
    entries.push_back({tag, type, count, value});
}

}  // namespace

TEST_CASE("TIFF written by libtiff decodes to the expected pixels: layouts, codecs, depths, colour types", "[tiff]") {
    tkt::temp_dir dir("tilekit-tiff");
    struct colour {
        const char* name;
        std::uint16_t photometric;
        int samples, bits;
        bool alpha;
    };
    const colour colours[] = {
        {"gray8", PHOTOMETRIC_MINISBLACK, 1, 8, false},  {"gray16", PHOTOMETRIC_MINISBLACK, 1, 16, false},
        {"gray1", PHOTOMETRIC_MINISBLACK, 1, 1, false},  {"gray4", PHOTOMETRIC_MINISBLACK, 1, 4, false},
        {"white8", PHOTOMETRIC_MINISWHITE, 1, 8, false}, {"white1", PHOTOMETRIC_MINISWHITE, 1, 1, false},
        {"graya8", PHOTOMETRIC_MINISBLACK, 2, 8, true},  {"graya16", PHOTOMETRIC_MINISBLACK, 2, 16, true},
        {"rgb8", PHOTOMETRIC_RGB, 3, 8, false},          {"rgb16", PHOTOMETRIC_RGB, 3, 16, false},
        {"rgba8", PHOTOMETRIC_RGB, 4, 8, true},          {"rgba16", PHOTOMETRIC_RGB, 4, 16, true},
        {"rgbax8", PHOTOMETRIC_RGB, 5, 8, true},  // alpha plus one more extra sample (dropped)
        {"palette8", PHOTOMETRIC_PALETTE, 1, 8, false},  {"palette4", PHOTOMETRIC_PALETTE, 1, 4, false},
        {"palettea8", PHOTOMETRIC_PALETTE, 2, 8, true},
    };
    const std::uint16_t codecs[] = {COMPRESSION_NONE, COMPRESSION_LZW, COMPRESSION_ADOBE_DEFLATE, COMPRESSION_PACKBITS};
    int files = 0, index = 0;
    for (const colour& k : colours)
        for (const std::uint16_t codec : codecs)
            for (int layout = 0; layout < 5; ++layout) {  // strips, separate strips, tiles, separate tiles, one strip
                const bool separate = layout == 1 || layout == 3;
                if (separate && (k.samples == 1 || k.bits < 8)) continue;
                tiff_spec s;
                s.photometric = k.photometric;
                s.samples = k.samples;
                s.bits = k.bits;
                s.compression = codec;
                s.separate = separate;
                s.tiled = layout == 2 || layout == 3;
                s.rows_per_strip = layout == 4 ? s.height : 7;
                s.bigtiff = index % 3 == 1;
                s.big_endian = index % 2 == 1;
                if (k.photometric == PHOTOMETRIC_PALETTE) s.colormap = palette_of(k.bits);
                const std::vector<std::uint16_t> values = make_values(s, k.alpha, std::uint32_t(index));
                const std::string path = (dir.path() / ("t" + std::to_string(index++) + ".tif")).string();
                write_tiff(path, s, values);
                INFO(k.name << " " << compression_name(codec) << " layout " << layout << (s.bigtiff ? " BigTIFF" : "")
                            << (s.big_endian ? " big-endian" : ""));
                const auto reader = tiff_row_reader::open_file(path);
                CHECK(reader->tiled() == s.tiled);
                CHECK(reader->bigtiff() == s.bigtiff);
                CHECK(reader->width() == s.width);
                CHECK(reader->height() == s.height);
                CHECK(reader->channels() == (k.photometric == PHOTOMETRIC_PALETTE ? 3 : k.samples == 5 ? 4 : k.samples) +
                                                (k.photometric == PHOTOMETRIC_PALETTE && k.alpha ? 1 : 0));
                const tkt::bytes rows = tkt::read_all_rows(*reader);
                CHECK(rows == expected_pixels(s, values));
                // The same bytes from memory, through the codec set's sniffing.
                const tkt::bytes file = tkt::read_file(path);
                CHECK(tkt::read_all_rows(*fast_codecs::open_memory(file.data(), file.size())) == rows);
                ++files;
            }
    CHECK(files > 250);
}

TEST_CASE("TIFF associated alpha is unpremultiplied; unassociated alpha is kept as it is", "[tiff]") {
    tkt::temp_dir dir("tilekit-tiff");
    for (const int bits : {8, 16}) {
        tiff_spec s;
        s.samples = 4;
        s.bits = bits;
        s.extra = EXTRASAMPLE_ASSOCALPHA;
        s.compression = COMPRESSION_LZW;
        const std::uint32_t max = (1u << bits) - 1;
        // Unassociated colours and alphas, premultiplied (rounded) before writing.
        std::vector<std::uint16_t> straight = make_values(s, true, 11), stored = straight;
        for (std::size_t p = 0; p < stored.size() / 4; ++p) {
            const std::uint32_t a = straight[p * 4 + 3];
            for (int c = 0; c < 3; ++c) stored[p * 4 + c] = static_cast<std::uint16_t>((straight[p * 4 + c] * a + max / 2) / max);
        }
        const std::string path = (dir.path() / ("assoc" + std::to_string(bits) + ".tif")).string();
        write_tiff(path, s, stored);
        const auto reader = tiff_row_reader::open_file(path);
        CHECK(reader->associated_alpha());
        const tkt::bytes rows = tkt::read_all_rows(*reader);
        REQUIRE(rows.size() == stored.size());
        int opaque_checked = 0;
        for (std::size_t p = 0; p < rows.size() / 4; ++p) {
            const std::uint32_t a = straight[p * 4 + 3];
            CHECK(rows[p * 4 + 3] == to8(a, bits));
            for (int c = 0; c < 3; ++c) {
                const std::uint8_t got = rows[p * 4 + c];
                if (a == 0) {
                    CHECK(got == 0);
                } else if (a == max) {
                    CHECK(got == to8(straight[p * 4 + c], bits));  // nothing to undo
                    ++opaque_checked;
                } else if (a >= max / 2) {  // precision enough to get the colour back within 1
                    CHECK(std::abs(int(got) - int(to8(straight[p * 4 + c], bits))) <= 1);
                }
            }
        }
        CHECK(opaque_checked > 100);
        // Unassociated: the same stored samples come back unchanged.
        s.extra = EXTRASAMPLE_UNASSALPHA;
        write_tiff(path, s, stored);
        const auto plain = tiff_row_reader::open_file(path);
        CHECK_FALSE(plain->associated_alpha());
        CHECK(tkt::read_all_rows(*plain) == expected_pixels(s, stored));
    }
}

TEST_CASE("TIFF 16-bit samples keep their high byte; 8-bit colormaps are recognised", "[tiff]") {
    tkt::temp_dir dir("tilekit-tiff");
    tiff_spec s;
    s.width = 4;
    s.height = 1;
    s.samples = 1;
    s.bits = 16;
    s.photometric = PHOTOMETRIC_MINISBLACK;
    write_tiff((dir.path() / "g16.tif").string(), s, {511, 767, 33023, 65535});
    // vips dzsave makes 8-bit tiles of these as 1, 2, 128, 255 (v >> 8), not 2, 3, 128, 255 (rounded scaling).
    CHECK(tkt::read_all_rows(*tiff_row_reader::open_file((dir.path() / "g16.tif").string())) == tkt::bytes{1, 2, 128, 255});

    // A colormap whose entries are all below 256 was written as 8-bit values: used as they are.
    tiff_spec p;
    p.width = 3;
    p.height = 1;
    p.samples = 1;
    p.bits = 2;
    p.photometric = PHOTOMETRIC_PALETTE;
    p.colormap = {10, 20, 30, 255, 40, 50, 60, 0, 70, 80, 90, 128};
    write_tiff((dir.path() / "p.tif").string(), p, {0, 1, 3});
    CHECK(tkt::read_all_rows(*tiff_row_reader::open_file((dir.path() / "p.tif").string())) ==
          tkt::bytes{10, 40, 70, 20, 50, 80, 255, 0, 128});
}

TEST_CASE("TIFF input reaches tile_file, tile_memory and both codec sets by its first bytes", "[tiff]") {
    tkt::temp_dir dir("tilekit-tiff");
    const image_buffer image = tkt::make_image(300, 200, 3, 4, 10);
    tiff_spec s;
    s.width = 300;
    s.height = 200;
    s.compression = COMPRESSION_LZW;
    s.tiled = true;
    s.tile_width = s.tile_height = 64;
    std::vector<std::uint16_t> values;
    for (const std::uint8_t b : tkt::pixels_of(image.view())) values.push_back(b);
    const std::string path = (dir.path() / "scan.data").string();  // the name says nothing
    write_tiff(path, s, values);

    memory_sink from_png, from_tiff, from_memory, from_stb;
    std::vector<std::uint8_t> png;
    libdeflate_png_encoder().encode(image.view(), png);
    pyramid_options options;
    options.tile_size = 64;
    const pyramid_metadata a = tile_memory(png, from_png, options);
    const pyramid_metadata b = tile_file(path, from_tiff, options);
    const tkt::bytes file = tkt::read_file(path);
    tile_memory(file, from_memory, options);
    tile_file<stb_codecs>(path, from_stb, options);
    CHECK(b.width == 300);
    CHECK(b.channels == 3);
    CHECK(b.source_format == "tiff");  // recorded in pyramid.json
    CHECK(a.source_format == "png");
    CHECK(nlohmann::json::parse(tkt::as_string(from_tiff.get("pyramid.json")->body)).at("source_format") == "tiff");
    CHECK(a.tile_count == b.tile_count);
    for (const std::string& key : from_png.keys()) {
        INFO(key);
        if (key.find("_files/") == std::string::npos) continue;
        CHECK(tkt::decode_object(from_png, key).pixels == tkt::decode_object(from_tiff, key).pixels);
        CHECK(from_tiff.get(key)->body == from_memory.get(key)->body);
        CHECK(tkt::decode_object(from_stb, key).pixels == tkt::decode_object(from_tiff, key).pixels);
    }
    CHECK(find_input_reader("tiff") != nullptr);
    CHECK(find_input_reader("webp") != nullptr);  // the WebP part is linked into this test too
    CHECK(find_input_reader("gif") == nullptr);
    // What a program without the part says (tests/single_header/core.cpp proves it there).
    CHECK(detail::missing_input_part("tiff").find("tilekit::tiff") != std::string::npos);
    CHECK(detail::missing_input_part("webp").find("tilekit::webp") != std::string::npos);
}

TEST_CASE("TIFF memory stays bounded: a scanline for strips, a row of tiles for tiles", "[tiff]") {
    tkt::temp_dir dir("tilekit-tiff");
    tiff_spec s;
    s.width = 4096;
    s.height = 512;
    s.samples = 3;
    std::vector<std::uint16_t> values(std::size_t(s.width) * s.height * 3);
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<std::uint16_t>((i * 7) & 0xff);
    decode_limits tight;
    tight.max_memory_bytes = 3u << 20;  // the image is 6 MiB decoded
    // One LZW strip for the whole image: read scanline by scanline, never as a strip.
    s.compression = COMPRESSION_LZW;
    s.rows_per_strip = s.height;
    write_tiff((dir.path() / "one-strip.tif").string(), s, values);
    const auto strips = tiff_row_reader::open_file((dir.path() / "one-strip.tif").string(), tight);
    CHECK(strips->band_height() == 1);
    CHECK(tkt::read_all_rows(*strips) == expected_pixels(s, values));
    // Tiles of 128x128: one row of tiles is 1.5 MiB.
    s.tiled = true;
    s.tile_width = s.tile_height = 128;
    write_tiff((dir.path() / "tiled.tif").string(), s, values);
    const auto tiles = tiff_row_reader::open_file((dir.path() / "tiled.tif").string(), tight);
    CHECK(tiles->band_height() == 128);
    CHECK(tkt::read_all_rows(*tiles) == expected_pixels(s, values));
    // Tiles of 512x512 are a 6 MiB row of tiles: over this budget, refused before reading.
    s.tile_width = s.tile_height = 512;
    write_tiff((dir.path() / "big-tiles.tif").string(), s, values);
    std::string message;
    CHECK(error_of([&] { tiff_row_reader::open_file((dir.path() / "big-tiles.tif").string(), tight); }, &message) ==
          errc::over_memory_budget);
    CHECK(message.find("tiled TIFF") != std::string::npos);
}

TEST_CASE("hostile TIFF headers are refused with typed errors before any large allocation", "[tiff][hostile]") {
    std::string message;
    const auto open = [](const tkt::bytes& b) { return fast_codecs::open_memory(b.data(), b.size()); };

    // 100000 x 100000 in a 150-byte file: the pixel limit, from the header.
    for (const bool big : {false, true}) {
        const tkt::bytes huge = handmade_tiff(rgb_entries(100000, 100000, 8, 30000000000ull, big), big, tkt::bytes(64, 0));
        CHECK(huge.size() < 300);
        CHECK(error_of([&] { open(huge); }, &message) == errc::image_too_large);
        CHECK(message.find("100000x100000") != std::string::npos);
    }
    // 2^28 x 1: within the pixel limit, but a scanline is 768 MiB: the memory budget.
    const tkt::bytes wide = handmade_tiff(rgb_entries(1u << 28, 1, 200, 3u << 28, false), false, tkt::bytes(64, 0));
    CHECK(error_of([&] { open(wide); }, &message) == errc::over_memory_budget);
    CHECK(message.find("needs about") != std::string::npos);

    // Absurd strip counts: 2^30 (classic) and 2^40 (BigTIFF) offsets whose array lies past the
    // end of a small file. libtiff must fail reading the directory, not allocate 8 TiB.
    for (const bool big : {false, true}) {
        std::vector<entry> e = rgb_entries(64, 64, 8, 64 * 64 * 3, big);
        const std::uint64_t count = big ? (std::uint64_t{1} << 40) : (std::uint64_t{1} << 30);
        set_entry(e, TIFFTAG_STRIPOFFSETS, big ? TIFF_LONG8 : TIFF_LONG, count, 4096);
        set_entry(e, TIFFTAG_STRIPBYTECOUNTS, big ? TIFF_LONG8 : TIFF_LONG, count, 8192);
        set_entry(e, TIFFTAG_ROWSPERSTRIP, TIFF_LONG, 1, 1);
        const auto code = error_of([&] { tkt::read_all_rows(*open(handmade_tiff(e, big, tkt::bytes(256, 0)))); }, &message);
        INFO(message);
        CHECK((code == errc::corrupt_image || code == errc::truncated_image));
    }

    // A compression scheme that is not one of tilekit's.
    std::vector<entry> odd = rgb_entries(8, 8, 200, 192, false);
    set_entry(odd, TIFFTAG_COMPRESSION, TIFF_SHORT, 1, 34712);  // JPEG 2000
    CHECK(error_of([&] { open(handmade_tiff(odd, false, tkt::bytes(256, 0))); }, &message) == errc::corrupt_image);
    CHECK(message.find("compression 34712") != std::string::npos);
    set_entry(odd, TIFFTAG_COMPRESSION, TIFF_SHORT, 1, 12345);  // nothing libtiff knows
    CHECK(error_of([&] { open(handmade_tiff(odd, false, tkt::bytes(256, 0))); }) == errc::corrupt_image);

    // Colour spaces and sample formats it does not read.
    std::vector<entry> cmyk = rgb_entries(8, 8, 300, 256, false);
    set_entry(cmyk, TIFFTAG_PHOTOMETRIC, TIFF_SHORT, 1, PHOTOMETRIC_SEPARATED);
    set_entry(cmyk, TIFFTAG_SAMPLESPERPIXEL, TIFF_SHORT, 1, 4);
    CHECK(error_of([&] { open(handmade_tiff(cmyk, false, tkt::bytes(300, 0))); }, &message) == errc::corrupt_image);
    CHECK(message.find("CMYK") != std::string::npos);
    std::vector<entry> floats = rgb_entries(8, 8, 300, 768, false);
    set_entry(floats, TIFFTAG_BITSPERSAMPLE, TIFF_SHORT, 1, 32);
    set_entry(floats, TIFFTAG_SAMPLEFORMAT, TIFF_SHORT, 1, SAMPLEFORMAT_IEEEFP);
    CHECK(error_of([&] { open(handmade_tiff(floats, false, tkt::bytes(800, 0))); }, &message) == errc::corrupt_image);
    CHECK(message.find("floating-point") != std::string::npos);

    // A BigTIFF whose strip lies past the end of the file: opens (the header is sound), then
    // the first row fails, saying where the offset points.
    const tkt::bytes past = handmade_tiff(rgb_entries(16, 16, std::uint64_t{1} << 40, 768, true), true, tkt::bytes(64, 0));
    const auto reader = open(past);
    CHECK(error_of([&] { reader->next_row(); }, &message) == errc::corrupt_image);
    CHECK(message.find("past the end") != std::string::npos);

    // Headers cut short, and bytes that only start like a TIFF.
    const tkt::bytes good = handmade_tiff(rgb_entries(4, 4, 150, 48, false), false, tkt::bytes(100, 7));  // IFD ends at 122
    CHECK(tkt::read_all_rows(*open(good)).size() == 48u);
    for (const std::size_t cut : {std::size_t{4}, std::size_t{9}, std::size_t{40}}) {
        const tkt::bytes part(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(cut));
        const auto code = error_of([&] { open(part); }, &message);
        INFO(cut << ": " << message);
        CHECK((code == errc::corrupt_image || code == errc::truncated_image));
    }
    tkt::bytes garbage = {'I', 'I', 42, 0};
    for (int i = 0; i < 60; ++i) garbage.push_back(static_cast<std::uint8_t>(i * 37 + 11));
    CHECK(error_of([&] { open(garbage); }) == errc::corrupt_image);
}

TEST_CASE("a truncated TIFF fails part-way with truncated_image and no manifest", "[tiff][hostile]") {
    // The directory first, then one uncompressed strip of 96 x 64 RGB, cut at 60%: the header
    // is whole, so the run starts and fails at the first row past the cut.
    const std::uint64_t data_offset = 512, data_bytes = 96 * 64 * 3;
    tkt::bytes strip(static_cast<std::size_t>(data_bytes));
    for (std::size_t i = 0; i < strip.size(); ++i) strip[i] = static_cast<std::uint8_t>(i * 13);
    tkt::bytes file = handmade_tiff(rgb_entries(96, 64, data_offset, data_bytes, false), false);
    file.resize(static_cast<std::size_t>(data_offset));
    file.insert(file.end(), strip.begin(), strip.end());
    CHECK(tkt::read_all_rows(*fast_codecs::open_memory(file.data(), file.size())) == strip);

    const tkt::bytes cut(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(data_offset + data_bytes * 6 / 10));
    const auto reader = fast_codecs::open_memory(cut.data(), cut.size());
    std::string message;
    int rows = 0;
    const auto code = error_of([&] {
        for (; rows < 64; ++rows) reader->next_row();
    }, &message);
    INFO(message);
    CHECK(code == errc::truncated_image);
    CHECK(message.find("truncated") != std::string::npos);
    CHECK(rows >= 20);  // the rows before the cut were read (libtiff reads this strip in chunks of 28 rows)
    CHECK(rows < 40);

    memory_sink sink;
    pyramid_options options;
    options.tile_size = 32;
    CHECK(error_of([&] { tile_memory(cut, sink, options); }) == errc::truncated_image);
    CHECK_FALSE(sink.contains("pyramid.json"));
    CHECK_FALSE(sink.contains("image.dzi"));

    // A file cut before its directory (libtiff writes it last): refused when opened.
    tkt::temp_dir dir("tilekit-tiff");
    tiff_spec s;
    s.compression = COMPRESSION_LZW;
    write_tiff((dir.path() / "lzw.tif").string(), s, make_values(s, false, 5));
    const tkt::bytes whole = tkt::read_file(dir.path() / "lzw.tif");
    const tkt::bytes half(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(whole.size() / 2));
    const auto half_code = error_of([&] { fast_codecs::open_memory(half.data(), half.size()); }, &message);
    INFO(message);
    CHECK((half_code == errc::truncated_image || half_code == errc::corrupt_image));
}

namespace {

// vips' own decode of `tif`, as 8-bit samples (16-bit: its high byte, `vips cast --shift`,
// which is also what `vips dzsave` does when it writes 8-bit tiles).
tkt::bytes vips_pixels(const tkt::temp_dir& dir, const std::string& tif, bool sixteen) {
    const std::string v = (dir.path() / "ref.v").string(), raw = (dir.path() / "ref.raw").string();
    const std::string log = (dir.path() / "vips.log").string();
    const std::string cast = sixteen ? "vips cast " + tkt::shell_quote(tif) + " " + tkt::shell_quote(v) + " uchar --shift"
                                     : "vips copy " + tkt::shell_quote(tif) + " " + tkt::shell_quote(v);
    REQUIRE(tkt::run_command(cast + " && vips rawsave " + tkt::shell_quote(v) + " " + tkt::shell_quote(raw), log) == 0);
    return tkt::read_file(raw);
}

// "same" or where two decodes first differ, for a readable failure.
std::string difference(const tkt::bytes& ours, const tkt::bytes& theirs) {
    if (ours == theirs) return "same";
    if (ours.size() != theirs.size())
        return "sizes differ: " + std::to_string(ours.size()) + " vs " + std::to_string(theirs.size());
    for (std::size_t i = 0; i < ours.size(); ++i)
        if (ours[i] != theirs[i])
            return "byte " + std::to_string(i) + ": tilekit " + std::to_string(ours[i]) + ", vips " + std::to_string(theirs[i]);
    return "same";
}

}  // namespace

TEST_CASE("TIFF from vips tiffsave decodes to the pixels vips reads: every codec, layout and depth",
          "[tiff][vips][needs-data]") {
    if (!tkt::on_path("vips")) {
        TILEKIT_SKIP_TEST("vips is not on PATH (Debian: libvips-tools): no comparison with vips' TIFF reader");
        return;
    }
    tkt::temp_dir dir("tilekit-tiff-vips");
    const auto path = [&](const std::string& name) { return (dir.path() / name).string(); };
    const auto vips = [&](const std::string& args) {
        INFO("vips " << args);
        REQUIRE(tkt::run_command("vips " + args, dir.path() / "make.log") == 0);
    };
    // Four noise bands (8-bit, and 16-bit with every bit used), 301 x 203: odd sizes, edge tiles.
    for (int b = 1; b <= 4; ++b) {
        const std::string n = std::to_string(b);
        vips("gaussnoise " + path("n" + n + ".v") + " 301 203 --mean 128 --sigma 70 --seed " + n);
        vips("cast " + path("n" + n + ".v") + " " + path("u" + n + ".v") + " uchar");
        vips("linear " + path("n" + n + ".v") + " " + path("l" + n + ".v") + " 256 100");
        vips("cast " + path("l" + n + ".v") + " " + path("s" + n + ".v") + " ushort");
    }
    const auto join = [&](const std::string& out, const std::string& prefix, int bands, const char* interpretation) {
        std::string list;
        for (int b = 1; b <= bands; ++b) list += (b > 1 ? " " : "") + path(prefix + std::to_string(b) + ".v");
        vips("bandjoin \"" + list + "\" " + path("j.v"));
        vips("copy " + path("j.v") + " " + path(out + ".v") + " --interpretation " + interpretation);
    };
    struct source {
        const char* name;
        int channels;
        bool sixteen;
    };
    const source sources[] = {{"g8", 1, false}, {"ga8", 2, false}, {"rgb8", 3, false}, {"rgba8", 4, false},
                              {"g16", 1, true}, {"ga16", 2, true}, {"rgb16", 3, true}, {"rgba16", 4, true}};
    for (const source& s : sources)
        join(s.name, s.sixteen ? "s" : "u", s.channels,
             s.channels >= 3 ? (s.sixteen ? "rgb16" : "srgb") : (s.sixteen ? "grey16" : "b-w"));

    const char* codecs[] = {"none", "lzw", "deflate", "jpeg", "packbits"};
    const char* layouts[] = {"", " --tile --tile-width 64 --tile-height 32", " --bigtiff --tile --tile-width 128 --tile-height 128",
                             " --bigtiff"};
    int compared = 0;
    for (const source& s : sources)
        for (const char* codec : codecs)
            for (const char* layout : layouts) {
                // vips writes JPEG-in-TIFF for 8-bit images without alpha only.
                if (std::string(codec) == "jpeg" && (s.sixteen || s.channels == 2 || s.channels == 4)) continue;
                const std::string tif = path(std::string(s.name) + "-" + codec + ".tif");
                vips("tiffsave " + path(std::string(s.name) + ".v") + " " + tif + " --compression " + codec + layout +
                     (std::string(codec) == "lzw" ? " --predictor horizontal" : ""));
                INFO(s.name << " " << codec << layout);
                const auto reader = tiff_row_reader::open_file(tif);
                CHECK(reader->channels() == s.channels);
                CHECK(reader->bits_per_sample() == (s.sixteen ? 16 : 8));
                CHECK(difference(tkt::read_all_rows(*reader), vips_pixels(dir, tif, s.sixteen)) == "same");
                ++compared;
            }
    CHECK(compared >= 110);

    // Sub-byte gray and min-is-white, as vips writes them.
    for (const char* options : {"--bitdepth 1", "--bitdepth 2", "--bitdepth 4", "--miniswhite", "--miniswhite --bitdepth 1"}) {
        const std::string tif = path("gray-bits.tif");
        vips("tiffsave " + path("g8.v") + " " + tif + " " + options);
        INFO(options);
        CHECK(difference(tkt::read_all_rows(*tiff_row_reader::open_file(tif)), vips_pixels(dir, tif, false)) == "same");
    }

    // What vips does not write, written with libtiff: palettes, associated alpha, one plane per
    // sample, big-endian 16-bit. vips reads them all; the pixels must agree.
    int index = 0;
    for (const int kind : {0, 1, 2, 3, 4}) {
        tiff_spec t;
        t.width = 301;
        t.height = 203;
        t.compression = COMPRESSION_LZW;
        bool alpha = false;
        if (kind == 0) t.samples = 1, t.photometric = PHOTOMETRIC_PALETTE, t.colormap = palette_of(8);
        if (kind == 1) t.samples = 1, t.bits = 4, t.photometric = PHOTOMETRIC_PALETTE, t.colormap = palette_of(4);
        if (kind == 2) t.samples = 4, t.extra = EXTRASAMPLE_ASSOCALPHA, alpha = true;
        if (kind == 3) t.samples = 3, t.separate = true;  // vips reads separate planes in strips only
        if (kind == 4) t.samples = 2, t.bits = 16, t.photometric = PHOTOMETRIC_MINISBLACK, t.big_endian = true, t.bigtiff = true, alpha = true;
        const std::string tif = path("libtiff" + std::to_string(index++) + ".tif");
        write_tiff(tif, t, make_values(t, alpha, std::uint32_t(kind) + 40));
        INFO("libtiff-written kind " << kind);
        const tkt::bytes ours = tkt::read_all_rows(*tiff_row_reader::open_file(tif)), theirs = vips_pixels(dir, tif, t.bits == 16);
        if (kind != 2) {
            CHECK(difference(ours, theirs) == "same");
            continue;
        }
        // Associated alpha: vips unpremultiplies in float (v * (max / a), truncated), tilekit in
        // integers (v * max / a, truncated); float rounding makes vips 1 lower now and then
        // (e.g. v == a gives 254).
        REQUIRE(ours.size() == theirs.size());
        std::size_t off_by_one = 0;
        for (std::size_t i = 0; i < ours.size(); ++i) {
            INFO("byte " << i);
            CHECK(int(ours[i]) - int(theirs[i]) >= 0);
            CHECK(int(ours[i]) - int(theirs[i]) <= 1);
            off_by_one += ours[i] != theirs[i];
        }
        CHECK(off_by_one < ours.size() / 50);
    }
}
