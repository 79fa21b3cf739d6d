// Grid arithmetic of the Deep Zoom and XYZ layouts, checked against the rules of
// tiling-anchors.md section 2, the counts measured there with vips and gdal2tiles, and an
// independent transcription of OpenSeadragon's getNumTiles / getTileBounds.

#include "test_helpers.hpp"

using namespace tilekit;
using tkt::ceil_log2;
using tkt::div_up;

namespace {

const std::vector<std::pair<int, int>> awkward_sizes = {
    {1, 1}, {1, 77}, {77, 1}, {1, 1000}, {1000, 1}, {255, 257}, {256, 256}, {257, 256}, {5000, 3001},
    {512, 512}, {513, 513}, {1001, 601}, {4096, 4096}, {2, 2}, {3, 1}, {254, 254}, {255, 255}, {509, 508}};

std::uint64_t total_tiles(const std::vector<level_geometry>& levels) {
    std::uint64_t n = 0;
    for (const auto& level : levels) n += level.tile_count();
    return n;
}

template <class Layout>
std::uint64_t count_tiles(const Layout& layout, int w, int h) {
    return total_tiles(layout.levels(w, h));
}

}  // namespace

TEST_CASE("Deep Zoom grid: levels, sizes and tile counts on awkward sizes", "[layout][dz]") {
    for (int tile : {254, 256, 1, 7}) {
        for (int overlap : {0, 1, 2}) {
            if (overlap > tile) continue;
            const deep_zoom_layout layout(tile, overlap);
            for (const auto& size : awkward_sizes) {
                const int W = size.first, H = size.second;
                INFO("W=" << W << " H=" << H << " T=" << tile << " O=" << overlap);
                const auto levels = layout.levels(W, H);
                const int N = ceil_log2(std::max(W, H));
                REQUIRE(levels.size() == static_cast<std::size_t>(N + 1));
                const auto sizes = tkt::halving_sizes(W, H, N + 1);
                for (std::size_t k = 0; k < levels.size(); ++k) {
                    const level_geometry& level = levels[k];
                    INFO("halvings " << k);
                    CHECK(level.halvings == static_cast<int>(k));
                    CHECK(level.index == N - static_cast<int>(k));
                    CHECK(level.width == sizes[k].first);
                    CHECK(level.height == sizes[k].second);
                    // ceil(W / 2^k) directly, as the DZI spec states it
                    CHECK(level.width == static_cast<int>((std::int64_t(W) + (std::int64_t{1} << k) - 1) >> k));
                    CHECK(level.columns == div_up(level.width, tile));
                    CHECK(level.rows == div_up(level.height, tile));
                    CHECK(level.tile_count() == std::uint64_t(level.columns) * std::uint64_t(level.rows));
                }
                CHECK(levels.front().width == W);
                CHECK(levels.front().height == H);
                CHECK(levels.back().width == 1);
                CHECK(levels.back().height == 1);
                CHECK(levels.back().index == 0);
            }
        }
    }
}

TEST_CASE("Deep Zoom tile regions: overlap only on interior edges, edges cropped", "[layout][dz]") {
    for (int tile : {254, 256, 5}) {
        for (int overlap : {0, 1, 2}) {
            const deep_zoom_layout layout(tile, overlap);
            for (const auto& size : awkward_sizes) {
                const int W = size.first, H = size.second;
                if (tile == 5 && std::int64_t(W) * H > 300000) continue;  // keep the small-tile sweep quick
                const auto levels = layout.levels(W, H);
                std::size_t bad = 0;
                for (const level_geometry& level : levels) {
                    INFO("W=" << W << " H=" << H << " T=" << tile << " O=" << overlap << " level " << level.index << " ("
                              << level.width << "x" << level.height << ")");
                    for (int r = 0; r < level.rows; ++r)
                        for (int c = 0; c < level.columns; ++c) {
                            const tile_region region = layout.region(level, c, r);
                            const int x0 = c == 0 ? 0 : c * tile - overlap;
                            const int y0 = r == 0 ? 0 : r * tile - overlap;
                            const int x1 = std::min(level.width, (c + 1) * tile + overlap);
                            const int y1 = std::min(level.height, (r + 1) * tile + overlap);
                            const bool ok = region.x == x0 && region.y == y0 && region.width == x1 - x0 &&
                                            region.height == y1 - y0 && region.out_width == region.width &&
                                            region.out_height == region.height && region.width > 0 &&
                                            region.height > 0 && region.x + region.width <= level.width &&
                                            region.y + region.height <= level.height;
                            if (!ok) {
                                ++bad;
                                UNSCOPED_INFO("tile " << c << "," << r << ": got " << region.x << "," << region.y << " "
                                                      << region.width << "x" << region.height);
                            }
                        }
                    // A single-column level is exactly the level's width (no overlap added anywhere).
                    if (level.columns == 1) CHECK(layout.region(level, 0, 0).width == level.width);
                    if (level.rows == 1) CHECK(layout.region(level, 0, 0).height == level.height);
                    // Interior tiles are (T+2O) square and the first one T+O, unless the level ends
                    // closer than O past them (a last column thinner than O): then they are clipped.
                    if (level.columns >= 3 && level.rows >= 3) {
                        const tile_region interior = layout.region(level, 1, 1);
                        CHECK(interior.width == std::min(level.width, 2 * tile + overlap) - (tile - overlap));
                        CHECK(interior.height == std::min(level.height, 2 * tile + overlap) - (tile - overlap));
                        if (level.width >= 2 * tile + overlap) CHECK(interior.width == tile + 2 * overlap);
                    }
                    if (level.columns >= 2 && level.rows >= 2) {
                        const tile_region first = layout.region(level, 0, 0);
                        CHECK(first.width == std::min(level.width, tile + overlap));
                        CHECK(first.height == std::min(level.height, tile + overlap));
                        if (level.width >= tile + overlap) CHECK(first.width == tile + overlap);
                        const tile_region last = layout.region(level, level.columns - 1, level.rows - 1);
                        CHECK(last.width == level.width - (level.columns - 1) * tile + overlap);
                        CHECK(last.height == level.height - (level.rows - 1) * tile + overlap);
                        CHECK(last.x + last.width == level.width);
                        CHECK(last.y + last.height == level.height);
                    }
                }
                CHECK(bad == 0);
            }
        }
    }
}

TEST_CASE("Deep Zoom grid equals OpenSeadragon's getNumTiles / getTileBounds", "[layout][dz][osd]") {
    for (int tile : {254, 256}) {
        for (int overlap : {0, 1, 2}) {
            const deep_zoom_layout layout(tile, overlap);
            for (const auto& size : awkward_sizes) {
                const int W = size.first, H = size.second;
                const tkt::osd_dzi osd(W, H, tile, overlap);
                const auto levels = layout.levels(W, H);
                INFO("W=" << W << " H=" << H << " T=" << tile << " O=" << overlap);
                REQUIRE(static_cast<int>(levels.size()) == osd.max_level + 1);
                std::size_t bad = 0;
                for (const level_geometry& level : levels) {
                    const auto n = osd.num_tiles(level.index);
                    CHECK(level.columns == n.first);
                    CHECK(level.rows == n.second);
                    for (int r = 0; r < level.rows; ++r)
                        for (int c = 0; c < level.columns; ++c) {
                            const tile_region region = layout.region(level, c, r);
                            const auto b = osd.tile_bounds(level.index, c, r);
                            // The viewer places the tile at (b.x, b.y) and expects ceil(b.w) x ceil(b.h) pixels.
                            if (region.x != b.x || region.y != b.y || region.width != static_cast<int>(std::ceil(b.w)) ||
                                region.height != static_cast<int>(std::ceil(b.h)))
                                ++bad;
                        }
                }
                CHECK(bad == 0);
            }
        }
    }
}

TEST_CASE("Deep Zoom tile counts match the anchors (vips dzsave measurements)", "[layout][dz]") {
    const deep_zoom_layout t256(256, 0), t256o1(256, 1);
    CHECK(count_tiles(t256, 4096, 4096) == 349);
    CHECK(count_tiles(t256, 5000, 3001) == 332);
    CHECK(count_tiles(t256, 8192, 8192) == 1373);
    CHECK(count_tiles(t256, 16384, 16384) == 5469);
    CHECK(count_tiles(t256, 1001, 601) == 25);
    CHECK(count_tiles(t256o1, 1001, 601) == 25);  // overlap does not change the grid
    CHECK(t256.levels(4096, 4096).size() == 13);
    CHECK(t256.levels(5000, 3001).size() == 14);
    CHECK(t256.levels(8192, 8192).size() == 14);
    CHECK(t256.levels(16384, 16384).size() == 15);
    CHECK(t256.levels(1001, 601).size() == 11);
    CHECK(t256.levels(1, 1).size() == 1);

    // 1001x601 per level (anchors 2.4): levels 0-8 one tile, level 9 2x2, level 10 4x3.
    const auto levels = t256o1.levels(1001, 601);
    REQUIRE(levels.size() == 11);
    const level_geometry& top = levels[0];
    CHECK(top.index == 10);
    CHECK(top.columns == 4);
    CHECK(top.rows == 3);
    CHECK(levels[1].width == 501);
    CHECK(levels[1].height == 301);
    CHECK(levels[1].columns == 2);
    CHECK(levels[1].rows == 2);
    CHECK(levels[2].width == 251);
    CHECK(levels[2].height == 151);
    for (std::size_t k = 2; k < levels.size(); ++k) CHECK(levels[k].tile_count() == 1);
    const tile_region a = t256o1.region(top, 0, 0), b = t256o1.region(top, 1, 1), c = t256o1.region(top, 3, 2);
    CHECK((a.width == 257 && a.height == 257));
    CHECK((b.width == 258 && b.height == 258));
    CHECK((c.width == 234 && c.height == 90));
    CHECK((c.x == 767 && c.y == 511));
}

TEST_CASE("XYZ grid: zoom 0 is one tile, all tiles T x T, max zoom = ceil(log2(max/T))", "[layout][xyz]") {
    for (int tile : {254, 256, 1, 100}) {
        const xyz_layout layout(tile);
        CHECK(layout.overlap() == 0);
        CHECK(layout.pads_edges());
        for (const auto& size : awkward_sizes) {
            const int W = size.first, H = size.second;
            if (tile < 100 && std::int64_t(W) * H > 300000) continue;  // keep the tiny-tile sweep quick
            INFO("W=" << W << " H=" << H << " T=" << tile);
            const auto levels = layout.levels(W, H);
            const double ratio = double(std::max(W, H)) / tile;
            const int N = ratio <= 1 ? 0 : static_cast<int>(std::ceil(std::log2(ratio)));
            REQUIRE(levels.size() == static_cast<std::size_t>(N + 1));
            // zoom 0 fits in one tile
            CHECK(levels.back().index == 0);
            CHECK(levels.back().columns == 1);
            CHECK(levels.back().rows == 1);
            CHECK(levels.back().width <= tile);
            CHECK(levels.back().height <= tile);
            // and zoom 0 is the first one that does: one zoom more would not fit
            if (N > 0) CHECK(std::max(levels[levels.size() - 2].width, levels[levels.size() - 2].height) > tile);
            std::size_t bad = 0;
            for (std::size_t k = 0; k < levels.size(); ++k) {
                const level_geometry& level = levels[k];
                const int z = N - static_cast<int>(k);
                CHECK(level.index == z);
                CHECK(level.halvings == static_cast<int>(k));
                const std::int64_t span = std::int64_t(tile) << (N - z);  // source pixels per tile
                CHECK(level.columns == static_cast<int>((W + span - 1) / span));
                CHECK(level.rows == static_cast<int>((H + span - 1) / span));
                CHECK(level.width == static_cast<int>((std::int64_t(W) + (std::int64_t{1} << k) - 1) >> k));
                CHECK(level.height == static_cast<int>((std::int64_t(H) + (std::int64_t{1} << k) - 1) >> k));
                for (int r = 0; r < level.rows; ++r)
                    for (int c = 0; c < level.columns; ++c) {
                        const tile_region region = layout.region(level, c, r);
                        const bool ok = region.out_width == tile && region.out_height == tile && region.x == c * tile &&
                                        region.y == r * tile && region.width == std::min(tile, level.width - c * tile) &&
                                        region.height == std::min(tile, level.height - r * tile) && region.width > 0 &&
                                        region.height > 0;
                        if (!ok) ++bad;
                    }
            }
            CHECK(bad == 0);
        }
    }
}

TEST_CASE("XYZ tile counts match the anchors (vips google and gdal2tiles --xyz)", "[layout][xyz]") {
    const xyz_layout t256(256);
    CHECK(count_tiles(t256, 4096, 4096) == 341);
    CHECK(count_tiles(t256, 5000, 3001) == 324);
    CHECK(count_tiles(t256, 8192, 8192) == 1365);
    CHECK(count_tiles(t256, 16384, 16384) == 5461);
    CHECK(count_tiles(t256, 1001, 601) == 17);
    CHECK(t256.levels(4096, 4096).front().index == 4);
    CHECK(t256.levels(5000, 3001).front().index == 5);
    CHECK(t256.levels(8192, 8192).front().index == 5);
    CHECK(t256.levels(16384, 16384).front().index == 6);
    const auto levels = t256.levels(1001, 601);  // 1, 4, 12 tiles
    REQUIRE(levels.size() == 3);
    CHECK(levels[0].tile_count() == 12);
    CHECK(levels[1].tile_count() == 4);
    CHECK(levels[2].tile_count() == 1);
    CHECK(t256.levels(256, 256).size() == 1);
    CHECK(t256.levels(257, 1).size() == 2);
    CHECK(t256.levels(1, 1).size() == 1);
    CHECK(t256.levels(512, 512).size() == 2);
    CHECK(t256.levels(513, 513).size() == 3);
}

TEST_CASE("Layout keys, templates and manifests", "[layout]") {
    const deep_zoom_layout dz(254, 1, "map");
    const auto levels = dz.levels(1001, 601);
    CHECK(dz.tile_key(levels[0], 3, 2, "png") == "map_files/10/3_2.png");
    CHECK(dz.tile_key(levels.back(), 0, 0, "jpg") == "map_files/0/0_0.jpg");
    CHECK(dz.tile_url_template("png") == "map_files/{level}/{col}_{row}.png");
    CHECK(dz.manifest_key() == "map.dzi");
    const std::string xml = dz.manifest(1001, 601, "png");
    CHECK(xml.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"?>", 0) == 0);
    CHECK(xml.find("xmlns=\"http://schemas.microsoft.com/deepzoom/2008\"") != std::string::npos);
    CHECK(xml.find("TileSize=\"254\"") != std::string::npos);
    CHECK(xml.find("Overlap=\"1\"") != std::string::npos);
    CHECK(xml.find("Format=\"png\"") != std::string::npos);
    CHECK(xml.find("<Size Width=\"1001\" Height=\"601\"/>") != std::string::npos);
    CHECK(xml.find("</Image>") != std::string::npos);

    const xyz_layout xyz(256);
    const auto zooms = xyz.levels(1001, 601);
    CHECK(xyz.tile_key(zooms[0], 3, 1, "png") == "2/3/1.png");  // {z}/{x}/{y}: column directory, row file
    CHECK(xyz.tile_url_template("png") == "{z}/{x}/{y}.png");
    CHECK(xyz.manifest_key().empty());
}

TEST_CASE("Layouts refuse bad parameters", "[layout]") {
    auto code_of = [](auto&& make) -> errc {
        try {
            make();
        } catch (const tilekit::error& e) {
            return e.code();
        }
        return errc::cancelled;  // "no error" marker
    };
    CHECK(code_of([] { deep_zoom_layout(0, 0); }) == errc::invalid_argument);
    CHECK(code_of([] { deep_zoom_layout(8193, 0); }) == errc::invalid_argument);
    CHECK(code_of([] { deep_zoom_layout(256, -1); }) == errc::invalid_argument);
    CHECK(code_of([] { deep_zoom_layout(4, 5); }) == errc::invalid_argument);
    CHECK(code_of([] { deep_zoom_layout(256, 1, ""); }) == errc::invalid_argument);
    CHECK(code_of([] { deep_zoom_layout(256, 1, "a/b"); }) == errc::invalid_argument);
    CHECK(code_of([] { deep_zoom_layout(256, 1, ".."); }) == errc::invalid_argument);
    CHECK(code_of([] { deep_zoom_layout(256, 1, "a\\b"); }) == errc::invalid_argument);
    CHECK(code_of([] { xyz_layout(0); }) == errc::invalid_argument);
    CHECK(code_of([] { xyz_layout(8193); }) == errc::invalid_argument);
    CHECK(code_of([] { deep_zoom_layout().levels(0, 5); }) == errc::invalid_argument);
    CHECK(code_of([] { xyz_layout().levels(5, -1); }) == errc::invalid_argument);
    CHECK_NOTHROW(deep_zoom_layout(8192, 8192));
    CHECK_NOTHROW(deep_zoom_layout(1, 0));
}
