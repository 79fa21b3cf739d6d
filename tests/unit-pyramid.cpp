// Whole runs into a memory_sink: the exact set of objects, every tile's size, channels and
// pixels, the .dzi and pyramid.json documents, XYZ edge padding, and a reassembly property test
// against an independent 2x2 box-filter pyramid.

#include "test_helpers.hpp"


using namespace tilekit;
using tkt::decode_object;
using tkt::decoded_image;
using tkt::div_up;

namespace {

struct dz_case {
    int width, height, channels, tile, overlap;
};

template <class Encoder = stb_png_encoder>
pyramid_metadata run_dz(const image_view& image, memory_sink& sink, int tile, int overlap, tile_options options = {},
                        const Encoder& encoder = Encoder()) {
    return generate_pyramid(image, deep_zoom_layout(tile, overlap), encoder, sink, options);
}

template <class Encoder = stb_png_encoder>
pyramid_metadata run_xyz(const image_view& image, memory_sink& sink, int tile, tile_options options = {},
                         const Encoder& encoder = Encoder()) {
    return generate_pyramid(image, xyz_layout(tile), encoder, sink, options);
}

// The keys a Deep Zoom pyramid must hold, from the DZI rules (not from the layout class).
std::set<std::string> expected_dz_keys(int W, int H, int T, const std::string& basename, const std::string& ext,
                                       const std::string& prefix = "") {
    std::set<std::string> keys;
    const int N = tkt::ceil_log2(std::max(W, H));
    for (int L = 0; L <= N; ++L) {
        const int s = N - L;
        const int w = static_cast<int>((std::int64_t(W) + (std::int64_t{1} << s) - 1) >> s);
        const int h = static_cast<int>((std::int64_t(H) + (std::int64_t{1} << s) - 1) >> s);
        for (int c = 0; c < div_up(w, T); ++c)
            for (int r = 0; r < div_up(h, T); ++r) keys.insert(prefix + tkt::dz_tile_key(basename, L, c, r, ext));
    }
    return keys;
}

std::set<std::string> expected_xyz_keys(int W, int H, int T, const std::string& ext) {
    std::set<std::string> keys;
    int N = 0;
    while ((std::int64_t(T) << N) < std::max(W, H)) ++N;
    for (int z = 0; z <= N; ++z) {
        const std::int64_t span = std::int64_t(T) << (N - z);
        for (int x = 0; x < (W + span - 1) / span; ++x)
            for (int y = 0; y < (H + span - 1) / span; ++y) keys.insert(tkt::xyz_tile_key(z, x, y, ext));
    }
    return keys;
}

std::set<std::string> key_set(const memory_sink& sink) {
    const auto keys = sink.keys();
    return std::set<std::string>(keys.begin(), keys.end());
}

// pyramid.json must parse and agree with what the run returned.
void check_metadata_document(const memory_sink& sink, const std::string& key, const pyramid_metadata& m) {
    const auto object = sink.get(key);
    REQUIRE(object.has_value());
    CHECK(object->content_type == "application/json");
    CHECK(object->cache_control == "no-cache");
    const nlohmann::json j = nlohmann::json::parse(tkt::as_string(object->body));
    CHECK(j.at("generator").get<std::string>().rfind("tilekit ", 0) == 0);
    const pyramid_metadata parsed = j.get<pyramid_metadata>();
    CHECK(parsed.layout == m.layout);
    CHECK(parsed.format == m.format);
    CHECK(parsed.width == m.width);
    CHECK(parsed.height == m.height);
    CHECK(parsed.channels == m.channels);
    CHECK(parsed.tile_size == m.tile_size);
    CHECK(parsed.overlap == m.overlap);
    CHECK(parsed.levels == m.levels);
    CHECK(parsed.min_level == m.min_level);
    CHECK(parsed.max_level == m.max_level);
    CHECK(parsed.tile_count == m.tile_count);
    CHECK(parsed.skipped_tiles == m.skipped_tiles);
    CHECK(parsed.total_bytes == m.total_bytes);
    CHECK(parsed.tile_url_template == m.tile_url_template);
    CHECK(parsed.manifest == m.manifest);
    REQUIRE(parsed.level_sizes.size() == m.level_sizes.size());
    for (std::size_t i = 0; i < m.level_sizes.size(); ++i) {
        CHECK(parsed.level_sizes[i].index == m.level_sizes[i].index);
        CHECK(parsed.level_sizes[i].width == m.level_sizes[i].width);
        CHECK(parsed.level_sizes[i].height == m.level_sizes[i].height);
        CHECK(parsed.level_sizes[i].columns == m.level_sizes[i].columns);
        CHECK(parsed.level_sizes[i].rows == m.level_sizes[i].rows);
    }
}

// Sum of tile body sizes and number of tiles (objects other than the given manifests).
std::pair<std::uint64_t, std::uint64_t> tile_totals(const memory_sink& sink, const std::set<std::string>& manifests) {
    std::uint64_t count = 0, bytes = 0;
    for (const auto& key : sink.keys()) {
        if (manifests.count(key)) continue;
        ++count;
        bytes += sink.get(key)->body.size();
    }
    return {count, bytes};
}

}  // namespace

TEST_CASE("Deep Zoom run: exact objects, tile sizes, channels, full-resolution pixels, .dzi and pyramid.json",
          "[pyramid][dz]") {
    const std::vector<dz_case> cases = {
        {1, 1, 3, 254, 1},    {1, 37, 1, 16, 1},   {37, 1, 2, 16, 2},  {255, 257, 4, 64, 1}, {130, 70, 3, 32, 0},
        {255, 257, 3, 254, 1}, {64, 64, 1, 64, 0}, {65, 65, 2, 64, 1}, {100, 60, 4, 7, 2},   {9, 40, 3, 4, 4},
    };
    for (const dz_case& tc : cases) {
        const int W = tc.width, H = tc.height, T = tc.tile, O = tc.overlap, C = tc.channels;
        INFO("W=" << W << " H=" << H << " C=" << C << " T=" << T << " O=" << O);
        const image_buffer source = tkt::make_image(W, H, C, static_cast<std::uint32_t>(W * 31 + H));
        memory_sink sink;
        const pyramid_metadata m = run_dz(source.view(), sink, T, O);

        // Exactly the expected objects, nothing else.
        std::set<std::string> expected = expected_dz_keys(W, H, T, "image", "png");
        const std::size_t tiles = expected.size();
        expected.insert("image.dzi");
        expected.insert("pyramid.json");
        CHECK(key_set(sink) == expected);
        CHECK(sink.put_count() == expected.size());  // nothing written twice

        // Metadata values.
        const int N = tkt::ceil_log2(std::max(W, H));
        CHECK(m.layout == "dz");
        CHECK(m.format == "png");
        CHECK(m.width == W);
        CHECK(m.height == H);
        CHECK(m.channels == C);
        CHECK(m.tile_size == T);
        CHECK(m.overlap == O);
        CHECK(m.levels == N + 1);
        CHECK(m.min_level == 0);
        CHECK(m.max_level == N);
        CHECK(m.tile_count == tiles);
        CHECK(m.skipped_tiles == 0);
        CHECK(m.tile_url_template == "image_files/{level}/{col}_{row}.png");
        CHECK(m.manifest == "image.dzi");
        REQUIRE(m.level_sizes.size() == static_cast<std::size_t>(N + 1));
        CHECK(m.level_sizes.front().index == 0);
        CHECK(m.level_sizes.front().width == 1);
        CHECK(m.level_sizes.back().index == N);
        CHECK(m.level_sizes.back().width == W);
        CHECK(m.level_sizes.back().height == H);
        const auto totals = tile_totals(sink, {"image.dzi", "pyramid.json"});
        CHECK(totals.first == m.tile_count);
        CHECK(totals.second == m.total_bytes);
        check_metadata_document(sink, "pyramid.json", m);

        // The .dzi descriptor.
        const auto dzi = sink.get("image.dzi");
        REQUIRE(dzi.has_value());
        CHECK(dzi->content_type == "application/xml");
        CHECK(dzi->cache_control == "no-cache");
        const std::string xml = tkt::as_string(dzi->body);
        CHECK(xml.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", 0) == 0);
        CHECK(xml.find("<Image xmlns=\"http://schemas.microsoft.com/deepzoom/2008\"") != std::string::npos);
        CHECK(xml.find(" TileSize=\"" + std::to_string(T) + "\"") != std::string::npos);
        CHECK(xml.find(" Overlap=\"" + std::to_string(O) + "\"") != std::string::npos);
        CHECK(xml.find(" Format=\"png\"") != std::string::npos);
        CHECK(xml.find("<Size Width=\"" + std::to_string(W) + "\" Height=\"" + std::to_string(H) + "\"/>") !=
              std::string::npos);
        CHECK(xml.find("</Image>") != std::string::npos);

        // Every tile decodes to the region's size with the source's channel count; full
        // resolution tiles hold exactly the source pixels.
        std::size_t pixel_mismatches = 0;
        for (int L = 0; L <= N; ++L) {
            const int s = N - L;
            const int w = static_cast<int>((std::int64_t(W) + (std::int64_t{1} << s) - 1) >> s);
            const int h = static_cast<int>((std::int64_t(H) + (std::int64_t{1} << s) - 1) >> s);
            for (int r = 0; r < div_up(h, T); ++r)
                for (int c = 0; c < div_up(w, T); ++c) {
                    const std::string key = tkt::dz_tile_key("image", L, c, r);
                    const auto object = sink.get(key);
                    REQUIRE(object.has_value());
                    CHECK(object->content_type == "image/png");
                    CHECK(object->cache_control == "public, max-age=86400");
                    const decoded_image t = tkt::stb_decode(object->body);
                    const int x0 = std::max(0, c * T - O), y0 = std::max(0, r * T - O);
                    const int x1 = std::min(w, (c + 1) * T + O), y1 = std::min(h, (r + 1) * T + O);
                    INFO(key);
                    CHECK(t.width == x1 - x0);
                    CHECK(t.height == y1 - y0);
                    CHECK(t.channels == C);
                    if (L != N || t.width != x1 - x0 || t.height != y1 - y0 || t.channels != C) continue;
                    for (int y = 0; y < t.height; ++y)
                        if (std::memcmp(t.at(0, y), source.row(y0 + y) + x0 * C, static_cast<std::size_t>(t.width) * C) != 0)
                            ++pixel_mismatches;
                }
        }
        CHECK(pixel_mismatches == 0);
    }
}

TEST_CASE("Reassembled Deep Zoom levels equal an independent 2x2 box-filter pyramid", "[pyramid][dz][property]") {
    // Opaque images: exact equality with (a+b+c+d+2)>>2 and odd-edge replication, every level.
    const std::vector<dz_case> cases = {
        {300, 201, 3, 64, 2}, {257, 129, 1, 32, 1}, {100, 100, 3, 254, 1}, {77, 300, 3, 16, 0},
        {1, 129, 3, 8, 1},    {129, 1, 1, 8, 2},    {37, 23, 3, 4, 4},     {255, 257, 3, 254, 1},
        {9, 7, 3, 1, 1},      {33, 17, 1, 2, 2},
    };
    for (const dz_case& tc : cases) {
        for (int encoder = 0; encoder < 2; ++encoder) {
            const int W = tc.width, H = tc.height, T = tc.tile, O = tc.overlap, C = tc.channels;
            INFO("W=" << W << " H=" << H << " C=" << C << " T=" << T << " O=" << O
                      << (encoder ? " libdeflate" : " stb") << " PNG");
            const image_buffer source = tkt::make_image(W, H, C, 7u + static_cast<std::uint32_t>(W));
            memory_sink sink;
            tile_options options;
            options.threads = 2;
            const pyramid_metadata m = encoder ? run_dz(source.view(), sink, T, O, options, libdeflate_png_encoder())
                                               : run_dz(source.view(), sink, T, O, options);
            const int N = m.max_level;
            const auto reference = tkt::reference_pyramid(source.view(), N);
            for (int k = 0; k <= N; ++k) {
                const image_buffer& expected = reference[static_cast<std::size_t>(k)];
                const image_buffer rebuilt =
                    tkt::rebuild_dz_level(sink, "image", N - k, expected.width(), expected.height(), T, O, C);
                INFO("level " << N - k << " (" << expected.width() << "x" << expected.height() << ")");
                CHECK(tkt::count_differences(rebuilt, expected) == 0);
            }
        }
    }
}

TEST_CASE("Reassembled levels of an image with alpha match an alpha-weighted reference", "[pyramid][dz][alpha][property]") {
    // With alpha the colour is alpha-weighted; the reference rounds to nearest in floating point,
    // the library in integers: allow 1 level of difference, and require most pixels exact.
    for (int C : {2, 4}) {
        const int W = 203, H = 151, T = 64, O = 1;
        INFO("channels " << C);
        const image_buffer source = tkt::make_image(W, H, C, 99);
        memory_sink sink;
        const pyramid_metadata m = run_dz(source.view(), sink, T, O);
        const int N = m.max_level;
        const auto reference = tkt::reference_pyramid(source.view(), N);
        for (int k = 0; k <= N; ++k) {
            const image_buffer& expected = reference[static_cast<std::size_t>(k)];
            const image_buffer rebuilt =
                tkt::rebuild_dz_level(sink, "image", N - k, expected.width(), expected.height(), T, O, C);
            INFO("level " << N - k);
            CHECK(tkt::count_differences(rebuilt, expected, 1) == 0);
            // Levels are made from the previous (rebuilt-equal) level, so off-by-one cannot compound
            // far; still, nearly everything must be exact.
            CHECK(tkt::count_differences(rebuilt, expected, 0) <= expected.byte_size() / 50);
        }
    }
}

TEST_CASE("Alpha-correct downsampling: transparent pixels never darken opaque ones", "[pyramid][alpha]") {
    for (int C : {2, 4}) {
        for (int garbage : {0, 1}) {  // 0: transparent pixels are black, 1: random colours
            INFO("channels " << C << (garbage ? " random RGB under alpha 0" : " black under alpha 0"));
            const int W = 67, H = 45;
            image_buffer source(W, H, C);
            tkt::rng random(5);
            for (int y = 0; y < H; ++y)
                for (int x = 0; x < W; ++x) {
                    std::uint8_t* p = source.row(y) + x * C;
                    // Transparent left part, ending on an odd column so 2x2 blocks straddle the edge;
                    // a transparent hole in the opaque part too.
                    const bool transparent = x < 33 || (x >= 50 && x < 53 && y >= 10 && y < 17);
                    for (int c = 0; c < C - 1; ++c)
                        p[c] = transparent ? static_cast<std::uint8_t>(garbage ? random.next() : 0) : 255;
                    p[C - 1] = transparent ? 0 : 255;
                }
            memory_sink sink;
            const pyramid_metadata m = run_dz(source.view(), sink, 16, 1);
            const int N = m.max_level;
            const auto reference = tkt::reference_pyramid(source.view(), N);
            std::size_t darkened = 0, partially_transparent = 0, nonzero_alpha_in_empty = 0;
            for (int k = 1; k <= N; ++k) {
                const image_buffer& ref = reference[static_cast<std::size_t>(k)];
                const image_buffer level = tkt::rebuild_dz_level(sink, "image", N - k, ref.width(), ref.height(), 16, 1, C);
                for (int y = 0; y < level.height(); ++y)
                    for (int x = 0; x < level.width(); ++x) {
                        const std::uint8_t* p = level.row(y) + x * C;
                        const std::uint8_t alpha = p[C - 1];
                        if (alpha > 0) {
                            for (int c = 0; c < C - 1; ++c)
                                if (p[c] != 255) ++darkened;
                            if (alpha < 255) ++partially_transparent;
                        }
                        if (ref.row(y)[x * C + C - 1] == 0 && alpha != 0) ++nonzero_alpha_in_empty;
                    }
                // The left part is made only of fully transparent 2x2 blocks down to level N-5.
                if (k <= 4) CHECK(level.row(0)[C - 1] == 0);
            }
            CHECK(darkened == 0);
            CHECK(partially_transparent > 0);  // the test really mixed transparent and opaque pixels
            CHECK(nonzero_alpha_in_empty == 0);
        }
    }

    SECTION("a fully transparent 2x2 image reduces to alpha 0") {
        image_buffer source(2, 2, 4);
        const std::uint8_t garbage[16] = {200, 10, 30, 0, 1, 2, 3, 0, 255, 255, 255, 0, 90, 80, 70, 0};
        std::memcpy(source.data(), garbage, 16);
        memory_sink sink;
        run_dz(source.view(), sink, 254, 1);
        const decoded_image level0 = decode_object(sink, "image_files/0/0_0.png");
        REQUIRE(level0.width == 1);
        REQUIRE(level0.channels == 4);
        CHECK(level0.pixels[3] == 0);
        const decoded_image level1 = decode_object(sink, "image_files/1/0_0.png");
        CHECK(level1.pixels == tkt::bytes(garbage, garbage + 16));  // full resolution is kept as is
    }
}

TEST_CASE("XYZ run: objects, padded edge tiles, interior tiles keep their channels", "[pyramid][xyz]") {
    const int W = 300, H = 200, T = 128;  // zoom 2: 3x2 tiles, zoom 1 (150x100): 2x1, zoom 0 (75x50): 1
    for (int C : {1, 2, 3, 4}) {
        INFO("source channels " << C);
        const image_buffer source = tkt::make_image(W, H, C, 11u + static_cast<std::uint32_t>(C));
        memory_sink sink;
        const pyramid_metadata m = run_xyz(source.view(), sink, T);

        std::set<std::string> expected = expected_xyz_keys(W, H, T, "png");
        CHECK(expected.size() == 9);
        const std::size_t tiles = expected.size();
        expected.insert("pyramid.json");
        CHECK(key_set(sink) == expected);
        CHECK(m.layout == "xyz");
        CHECK(m.levels == 3);
        CHECK(m.min_level == 0);
        CHECK(m.max_level == 2);
        CHECK(m.overlap == 0);
        CHECK(m.manifest.empty());
        CHECK(m.tile_url_template == "{z}/{x}/{y}.png");
        CHECK(m.tile_count == tiles);
        CHECK(tile_totals(sink, {"pyramid.json"}).second == m.total_bytes);
        check_metadata_document(sink, "pyramid.json", m);

        const bool source_alpha = C == 2 || C == 4;
        const int padded_channels = source_alpha ? C : C + 1;  // transparent padding needs alpha
        const auto reference = tkt::reference_pyramid(source.view(), 2);
        std::size_t bad_inside = 0, bad_padding = 0;
        for (int z = 0; z <= 2; ++z) {
            const image_buffer& level = reference[static_cast<std::size_t>(2 - z)];
            for (int x = 0; x < div_up(level.width(), T); ++x)
                for (int y = 0; y < div_up(level.height(), T); ++y) {
                    const decoded_image t = decode_object(sink, tkt::xyz_tile_key(z, x, y));
                    INFO("tile " << z << "/" << x << "/" << y);
                    REQUIRE(t.width == T);
                    REQUIRE(t.height == T);
                    const int rw = std::min(T, level.width() - x * T), rh = std::min(T, level.height() - y * T);
                    const bool edge = rw < T || rh < T;
                    CHECK(t.channels == (edge ? padded_channels : C));
                    if (t.channels != (edge ? padded_channels : C)) continue;
                    for (int py = 0; py < T; ++py)
                        for (int px = 0; px < T; ++px) {
                            const std::uint8_t* p = t.at(px, py);
                            if (px < rw && py < rh) {
                                const std::uint8_t* s = level.row(y * T + py) + (x * T + px) * C;
                                // Colour channels equal the reference level (exact: the alpha-weighted
                                // mean rounds identically for these sources up to 1).
                                for (int c = 0; c < C; ++c)
                                    if (std::abs(int(p[c]) - int(s[c])) > (source_alpha ? 1 : 0)) ++bad_inside;
                                if (t.channels > C && p[C] != 255) ++bad_inside;  // added alpha is opaque
                            } else if (p[t.channels - 1] != 0) {
                                ++bad_padding;  // padding is fully transparent
                            }
                        }
                }
        }
        CHECK(bad_inside == 0);
        CHECK(bad_padding == 0);
    }
}

TEST_CASE("XYZ padding uses the background colour when one is set", "[pyramid][xyz]") {
    const int W = 150, H = 90, T = 64;
    const rgba_color background{10, 20, 30, 255};
    const int luma = static_cast<int>(std::lround(0.299 * 10 + 0.587 * 20 + 0.114 * 30));
    for (int C : {1, 3, 4}) {
        INFO("source channels " << C);
        const image_buffer source = tkt::make_image(W, H, C, 3);
        memory_sink sink;
        tile_options options;
        options.background = background;
        run_xyz(source.view(), sink, T, options);
        // zoom 2 = full resolution: tile (2, 1) holds 22x26 pixels of image, the rest is padding
        const decoded_image t = decode_object(sink, "2/2/1.png");
        REQUIRE(t.width == T);
        CHECK(t.channels == C);  // no alpha channel added when padding is opaque
        std::size_t bad = 0;
        for (int y = 0; y < T; ++y)
            for (int x = 0; x < T; ++x) {
                const std::uint8_t* p = t.at(x, y);
                if (x < W - 2 * T && y < H - T) {
                    if (std::memcmp(p, source.row(T + y) + (2 * T + x) * C, static_cast<std::size_t>(C)) != 0) ++bad;
                    continue;
                }
                if (C == 1 && std::abs(int(p[0]) - luma) > 1) ++bad;
                if (C >= 3 && (p[0] != 10 || p[1] != 20 || p[2] != 30)) ++bad;
                if (C == 4 && p[3] != 255) ++bad;
            }
        CHECK(bad == 0);
    }
}

TEST_CASE("JPEG tiles: XYZ padding is the background (default white), alpha is flattened", "[pyramid][xyz][jpeg]") {
    const int W = 300, H = 200, T = 128;
    auto check_padding = [&](const memory_sink& sink, int expected_value, int channels) {
        // tile 2/2/1 holds 44x72 image pixels; test padding well away from the image edge
        const auto object = sink.get("2/2/1.jpg");
        REQUIRE(object.has_value());
        CHECK(object->content_type == "image/jpeg");
        const decoded_image t = tkt::stb_decode(object->body);
        REQUIRE(t.width == T);
        REQUIRE(t.height == T);
        CHECK(t.channels == channels);
        int worst = 0;
        for (int y = 0; y < T; ++y)
            for (int x = 0; x < T; ++x) {
                if (x < 44 + 16 && y < 72 + 16) continue;
                for (int c = 0; c < t.channels; ++c) worst = std::max(worst, std::abs(int(t.at(x, y)[c]) - expected_value));
            }
        CHECK(worst <= 6);
    };
    for (int C : {1, 3}) {
        const image_buffer source = tkt::make_image(W, H, C, 21);
        INFO("channels " << C);
        {
            memory_sink sink;
            const pyramid_metadata m = run_xyz(source.view(), sink, T, {}, turbojpeg_encoder(90));
            CHECK(m.format == "jpg");
            CHECK(key_set(sink).size() == 10);
            check_padding(sink, 255, C);
        }
        {
            // tilekit's own writer keeps gray tiles gray, as libjpeg-turbo does.
            memory_sink sink;
            run_xyz(source.view(), sink, T, {}, baseline_jpeg_encoder(90));
            check_padding(sink, 255, C);
        }
        {
            memory_sink sink;
            tile_options options;
            options.background = rgba_color{0, 0, 0, 255};
            run_xyz(source.view(), sink, T, options, turbojpeg_encoder(90));
            check_padding(sink, 0, C);
        }
    }

    SECTION("an RGBA source becomes RGB JPEG tiles flattened onto white") {
        image_buffer source(40, 30, 4);
        for (int y = 0; y < 30; ++y)
            for (int x = 0; x < 40; ++x) {
                std::uint8_t* p = source.row(y) + x * 4;
                p[0] = 0, p[1] = 0, p[2] = 0;       // black ...
                p[3] = x < 20 ? 0 : 255;            // ... transparent on the left
            }
        memory_sink sink;
        const pyramid_metadata m = run_dz(source.view(), sink, 254, 1, {}, turbojpeg_encoder(95));
        CHECK(m.channels == 4);
        const decoded_image t = decode_object(sink, "image_files/6/0_0.jpg");
        REQUIRE(t.channels == 3);
        REQUIRE(t.width == 40);
        CHECK(t.at(5, 15)[0] >= 245);   // transparent -> white
        CHECK(t.at(35, 15)[0] <= 10);   // opaque black stays black
        const std::string xml = tkt::as_string(sink.get("image.dzi")->body);
        CHECK(xml.find("Format=\"jpg\"") != std::string::npos);
    }
}

TEST_CASE("Options: prefix, basename, metadata key, cache control; strided input views", "[pyramid]") {
    const image_buffer source = tkt::make_image(70, 50, 3, 8);
    memory_sink sink;
    tile_options options;
    options.prefix = "maps/42/";
    options.metadata_key = "meta/info.json";
    options.tile_cache_control = "max-age=1";
    options.manifest_cache_control = "max-age=2";
    const pyramid_metadata m =
        generate_pyramid(source.view(), deep_zoom_layout(32, 1, "world"), stb_png_encoder(), sink, options);
    std::set<std::string> expected = expected_dz_keys(70, 50, 32, "world", "png", "maps/42/");
    expected.insert("maps/42/world.dzi");
    expected.insert("maps/42/meta/info.json");
    CHECK(key_set(sink) == expected);
    CHECK(m.manifest == "world.dzi");
    CHECK(m.tile_url_template == "world_files/{level}/{col}_{row}.png");
    CHECK(sink.get("maps/42/world_files/7/0_0.png")->cache_control == "max-age=1");
    CHECK(sink.get("maps/42/world.dzi")->cache_control == "max-age=2");
    CHECK(sink.get("maps/42/meta/info.json")->cache_control == "max-age=2");

    SECTION("a view into a larger buffer (stride > width * channels) is tiled as the cropped image") {
        const image_buffer big = tkt::make_image(90, 70, 3, 4);
        const int ox = 7, oy = 5, w = 61, h = 43;
        const image_view crop{big.row(oy) + ox * 3, w, h, 3, big.stride()};
        memory_sink strided, packed;
        image_buffer copy(w, h, 3);
        for (int y = 0; y < h; ++y) std::memcpy(copy.row(y), crop.row(y), static_cast<std::size_t>(w) * 3);
        run_dz(crop, strided, 16, 1);
        run_dz(copy.view(), packed, 16, 1);
        REQUIRE(strided.keys() == packed.keys());
        for (const auto& key : packed.keys()) {
            if (key == "pyramid.json") continue;
            INFO(key);
            CHECK(strided.get(key)->body == packed.get(key)->body);
        }
    }
}

TEST_CASE("tile_memory front door: defaults and choices by value, with either codec set", "[pyramid][api]") {
    const image_buffer source = tkt::make_image(300, 200, 3, 12);
    const tkt::bytes png = tkt::png_of(source);
    {
        memory_sink sink;
        const pyramid_metadata m = tile_memory<stb_codecs>(png, sink, pyramid_options{});
        CHECK(m.layout == "dz");
        CHECK(m.tile_size == 254);
        CHECK(m.overlap == 1);
        CHECK(m.format == "png");
        CHECK(sink.contains("image.dzi"));
        CHECK(sink.contains("image_files/9/1_0.png"));
    }
    {
        memory_sink sink;
        pyramid_options options;
        options.layout = layout_type::xyz;
        options.format = tile_format::jpeg;
        options.quality = 70;
        const pyramid_metadata m = tile_memory<fast_codecs>(png, sink, options);
        CHECK(m.layout == "xyz");
        CHECK(m.tile_size == 256);
        CHECK(m.overlap == 0);
        CHECK(m.format == "jpg");
        CHECK(key_set(sink) == [] {
            auto keys = expected_xyz_keys(300, 200, 256, "jpg");
            keys.insert("pyramid.json");
            return keys;
        }());
    }
    {
        memory_sink sink;
        pyramid_options options;
        options.layout = layout_type::xyz;
        options.overlap = 1;
        try {
            tile_memory(png, sink, options);
            FAIL("XYZ with overlap was accepted");
        } catch (const tilekit::error& e) {
            CHECK(e.code() == errc::invalid_argument);
        }
        CHECK(sink.size() == 0);
    }
    {
        memory_sink sink;
        pyramid_options options;
        options.basename = "my map";
        options.tile_size = 100;
        options.overlap = 0;
        const pyramid_metadata m = tile_memory<fast_codecs>(png, sink, options);
        CHECK(m.tile_size == 100);
        CHECK(m.overlap == 0);
        CHECK(sink.contains("my map.dzi"));
        CHECK(sink.contains("my map_files/9/2_1.png"));
    }
    {
        memory_sink sink;
        const image_view no_pixels{nullptr, 10, 10, 3, 30};
        CHECK_THROWS_AS(generate_pyramid(no_pixels, xyz_layout(), stb_png_encoder(), sink), tilekit::error);
        const image_view five_channels{source.data(), 10, 10, 5, 50};
        CHECK_THROWS_AS(generate_pyramid(five_channels, xyz_layout(), stb_png_encoder(), sink), tilekit::error);
        CHECK(sink.size() == 0);
    }
}

TEST_CASE("skip_blank_tiles: fully transparent tiles are counted, not written", "[pyramid][progress]") {
    const int W = 256, H = 192;
    image_buffer source(W, H, 4);
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x) {
            std::uint8_t* p = source.row(y) + x * 4;
            p[0] = static_cast<std::uint8_t>(x), p[1] = static_cast<std::uint8_t>(y), p[2] = 7;
            p[3] = x < 128 ? 0 : 255;  // left half transparent
        }
    for (int layout = 0; layout < 2; ++layout) {
        INFO((layout ? "xyz" : "dz"));
        memory_sink sink;
        tile_options options;
        options.skip_blank_tiles = true;
        std::uint64_t last_done = 0, last_total = 0;
        options.on_progress = [&](const tile_progress& p) {
            last_done = p.tiles_done;
            last_total = p.tiles_total;
        };
        const pyramid_metadata m = layout ? run_xyz(source.view(), sink, 32, options) : run_dz(source.view(), sink, 32, 0, options);
        std::uint64_t total = 0;
        for (const auto& level : m.level_sizes) total += level.tile_count();
        CHECK(m.skipped_tiles > 0);
        CHECK(m.tile_count + m.skipped_tiles == total);
        CHECK(last_done == total);
        CHECK(last_total == total);
        CHECK(sink.size() == m.tile_count + (layout ? 1 : 2));
        // full resolution: the left four columns of tiles are blank and missing
        const int top = m.max_level;
        for (int c = 0; c < W / 32; ++c) {
            const std::string key = layout ? tkt::xyz_tile_key(top, c, 0) : tkt::dz_tile_key("image", top, c, 0);
            CHECK(sink.contains(key) == (c >= 4));
        }
        const nlohmann::json j = nlohmann::json::parse(tkt::as_string(sink.get("pyramid.json")->body));
        CHECK(j.at("skipped_tiles").get<std::uint64_t>() == m.skipped_tiles);
    }
}
