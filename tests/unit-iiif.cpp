// The IIIF Image API 3.0 level-0 layout:
//   * info.json checked against rules written from the specification (section 5, "Image
//     Information": required keys and values, `sizes`, `tiles`) and against the files present:
//     every tile a client computes from `tiles` (the spec's implementation notes, transcribed
//     here independently of layout.hpp) and every `sizes` entry exists, nothing else is written,
//     each file decodes to the size its name says;
//   * OpenSeadragon 6.1's IIIFTileSource.getTileUrl (transcribed) asks only for files that exist;
//   * the grid equals `vips dzsave --layout iiif3` on odd sizes ([needs-data][vips]).

#include "test_helpers.hpp"

#include <nlohmann/json.hpp>

#include <cmath>
#include <mutex>

using namespace tilekit;
using nlohmann::json;

namespace {

// Remembers the order objects arrive in (the manifests must come last).
class ordered_sink final : public storage_sink {
public:
    void put(storage_object object) override {
        std::lock_guard<std::mutex> lock(mutex_);
        order.push_back(object.key);
        inner.put(std::move(object));
    }
    void flush() override {}
    memory_sink inner;
    std::vector<std::string> order;

private:
    std::mutex mutex_;
};

const std::vector<std::pair<int, int>> odd_sizes = {{1, 1},     {1, 700},  {255, 257}, {3001, 5}, {1025, 513},
                                                    {256, 100}, {512, 512}, {513, 300}, {700, 1}, {2000, 1500}};

std::string size_text(std::int64_t w, std::int64_t h) { return std::to_string(w) + "," + std::to_string(h); }

// The IIIF 3.0 checks of an image information document for a level-0 static service. Returns
// the problems found (empty: valid).
std::vector<std::string> info_json_problems(const json& info) {
    std::vector<std::string> problems;
    const auto need = [&](bool ok, const std::string& what) {
        if (!ok) problems.push_back(what);
    };
    const auto positive_int = [](const json& j, const char* key) {
        return j.is_object() && j.contains(key) && j.at(key).is_number_integer() && j.at(key).get<std::int64_t>() > 0;
    };
    need(info.is_object(), "not a JSON object");
    if (!info.is_object()) return problems;
    // @context: the Image API 3 context URI (alone, or the last of a list).
    const json context = info.value("@context", json());
    const std::string image3 = "http://iiif.io/api/image/3/context.json";
    need((context.is_string() && context == image3) ||
             (context.is_array() && !context.empty() && context.back() == image3),
         "@context must be " + image3);
    need(info.contains("id") && info["id"].is_string() && !info["id"].get<std::string>().empty(), "id must be a non-empty string");
    if (info.contains("id") && info["id"].is_string() && !info["id"].get<std::string>().empty())
        need(info["id"].get<std::string>().back() != '/', "id must not end with a slash");
    need(info.value("type", "") == "ImageService3", "type must be ImageService3");
    need(info.value("protocol", "") == "http://iiif.io/api/image", "protocol must be http://iiif.io/api/image");
    need(info.value("profile", "") == "level0" || info.value("profile", "") == "level1" ||
             info.value("profile", "") == "level2",
         "profile must be level0, level1 or level2");
    need(positive_int(info, "width"), "width must be a positive integer");
    need(positive_int(info, "height"), "height must be a positive integer");
    if (info.contains("sizes")) {
        need(info["sizes"].is_array() && !info["sizes"].empty(), "sizes must be a non-empty array");
        for (const json& size : info["sizes"]) {
            need(positive_int(size, "width") && positive_int(size, "height"), "each size needs width and height");
            need(!size.contains("type") || size["type"] == "Size", "a size's type must be Size");
            if (positive_int(size, "width") && positive_int(info, "width"))
                need(size["width"] <= info["width"] && size["height"] <= info["height"], "a size is larger than the image");
        }
    }
    if (info.contains("tiles")) {
        need(info["tiles"].is_array() && !info["tiles"].empty(), "tiles must be a non-empty array");
        for (const json& tile : info["tiles"]) {
            need(positive_int(tile, "width"), "each tile needs a width");
            need(!tile.contains("height") || positive_int(tile, "height"), "a tile's height must be positive");
            need(!tile.contains("type") || tile["type"] == "Tile", "a tile's type must be Tile");
            need(tile.contains("scaleFactors") && tile["scaleFactors"].is_array() && !tile["scaleFactors"].empty(),
                 "each tile needs scaleFactors");
            if (tile.contains("scaleFactors") && tile["scaleFactors"].is_array())
                for (const json& s : tile["scaleFactors"])
                    need(s.is_number_integer() && s.get<std::int64_t>() >= 1, "scale factors are integers >= 1");
        }
    }
    for (const char* list : {"preferredFormats", "extraFormats"})
        if (info.contains(list)) {
            need(info[list].is_array(), std::string(list) + " must be an array");
            for (const json& f : info[list]) need(f.is_string(), std::string(list) + " holds strings");
        }
    return problems;
}

// The files a level-0 client may ask for, from info.json alone: the tiles of every scale factor
// (IIIF Image API 3.0, implementation notes: region xr,yr,wr,hr and size ws,hs) and the sizes.
// Maps key -> expected pixel size.
std::map<std::string, std::pair<std::int64_t, std::int64_t>> files_promised(const json& info, const std::string& format) {
    std::map<std::string, std::pair<std::int64_t, std::int64_t>> files;
    const std::int64_t width = info["width"], height = info["height"];
    const std::string tail = "/0/default." + format;
    for (const json& tiles : info["tiles"]) {
        const std::int64_t tw = tiles["width"];
        const std::int64_t th = tiles.value("height", tw);
        for (const json& factor : tiles["scaleFactors"]) {
            const std::int64_t s = factor;
            for (std::int64_t n = 0; n * tw * s < width; ++n)
                for (std::int64_t m = 0; m * th * s < height; ++m) {
                    const std::int64_t xr = n * tw * s, yr = m * th * s;
                    std::int64_t wr = tw * s, hr = th * s;
                    if (xr + wr > width) wr = width - xr;
                    if (yr + hr > height) hr = height - yr;
                    std::int64_t ws = tw, hs = th;
                    if (xr + tw * s > width) ws = (width - xr + s - 1) / s;
                    if (yr + th * s > height) hs = (height - yr + s - 1) / s;
                    files[std::to_string(xr) + "," + std::to_string(yr) + "," + size_text(wr, hr) + "/" + size_text(ws, hs) +
                          tail] = {ws, hs};
                }
        }
    }
    for (const json& size : info.value("sizes", json::array())) {
        const std::int64_t w = size["width"], h = size["height"];
        files["full/" + size_text(w, h) + tail] = {w, h};
        if (w == width && h == height) files["full/max" + tail] = {w, h};
    }
    return files;
}

// OpenSeadragon 6.1.1 IIIFTileSource (version 3, one tiles entry, no levelSizes): maxLevel,
// getNumTiles and getTileUrl, transcribed; returns every URL path after the id.
std::set<std::string> openseadragon_requests(const json& info, const std::string& format) {
    const double width = info["width"], height = info["height"];
    const double tile_w = info["tiles"][0]["width"];
    const double tile_h = info["tiles"][0].value("height", tile_w);
    std::int64_t max_factor = 1;
    for (const json& s : info["tiles"][0]["scaleFactors"]) max_factor = std::max<std::int64_t>(max_factor, s);
    const int max_level = static_cast<int>(std::lround(std::log(double(max_factor)) * 1.4426950408889634));
    std::set<std::string> urls;
    for (int level = 0; level <= max_level; ++level) {
        const double scale = std::pow(0.5, max_level - level);
        const double level_w = std::ceil(width * scale), level_h = std::ceil(height * scale);
        // TileSource.getNumTiles: ceil(levelSize / tileSize)
        const int columns = static_cast<int>(std::ceil(level_w / tile_w)), rows = static_cast<int>(std::ceil(level_h / tile_h));
        const double region_w = std::round(tile_w / scale), region_h = std::round(tile_h / scale);
        for (int x = 0; x < columns; ++x)
            for (int y = 0; y < rows; ++y) {
                std::string region, size;
                if (level_w < tile_w && level_h < tile_h) {
                    size = (level_w == width && level_h == height) ? "max" : size_text(std::int64_t(level_w), std::int64_t(level_h));
                    region = "full";
                } else {
                    const double tx = x * region_w, ty = y * region_h;
                    const double tw = std::min(region_w, width - tx), th = std::min(region_h, height - ty);
                    region = (x == 0 && y == 0 && tw == width && th == height)
                                 ? "full"
                                 : std::to_string(std::int64_t(tx)) + "," + std::to_string(std::int64_t(ty)) + "," +
                                       size_text(std::int64_t(tw), std::int64_t(th));
                    const double sw = std::min(tile_w, level_w - x * tile_w), sh = std::min(tile_h, level_h - y * tile_h);
                    size = (sw == width && sh == height) ? "max" : size_text(std::int64_t(sw), std::int64_t(sh));
                }
                urls.insert(region + "/" + size + "/0/default." + format);
            }
    }
    return urls;
}

std::set<std::string> keys_except_manifests(const memory_sink& sink) {
    std::set<std::string> keys;
    for (const std::string& key : sink.keys())
        if (key != "info.json" && key != "pyramid.json") keys.insert(key);
    return keys;
}

}  // namespace

TEST_CASE("IIIF grid: XYZ's levels, cropped edges, keys named by full-resolution region and size", "[layout][iiif]") {
    const iiif_layout layout(256);
    CHECK(std::string(iiif_layout::name()) == "iiif");
    CHECK(layout.overlap() == 0);
    CHECK_FALSE(layout.pads_edges());

    // 1025x513 at 256: scale factors 1, 2, 4, 8 (the last level, 129x65, is one tile).
    const auto levels = layout.levels(1025, 513);
    REQUIRE(levels.size() == 4);
    CHECK(levels.back().width == 129);
    CHECK(levels.back().height == 65);
    CHECK(levels.back().tile_count() == 1);
    CHECK(levels[1].columns == 3);  // 513x257
    CHECK(levels[1].rows == 2);
    // Edge tiles are cropped, not padded.
    const tile_region edge = layout.region(levels[0], 4, 2);
    CHECK(edge.width == 1);
    CHECK(edge.height == 1);
    CHECK(edge.out_width == 1);
    CHECK(edge.out_height == 1);
    CHECK(layout.tile_key(levels[0], 4, 2, "jpg") == "1024,512,1,1/1,1/0/default.jpg");
    CHECK(layout.tile_key(levels[1], 2, 1, "jpg") == "1024,512,1,1/1,1/0/default.jpg");  // 513x257 at scale 2
    // ... the same key as the corner at scale 1: written once, at the finer level.
    CHECK(layout.repeats_finer_tile(levels[1], 2, 1));
    CHECK_FALSE(layout.repeats_finer_tile(levels[0], 4, 2));
    CHECK_FALSE(layout.repeats_finer_tile(levels[1], 2, 0));  // 1024,0,1,512/1,256: not at scale 1
    CHECK_FALSE(layout.repeats_finer_tile(levels[3], 0, 0));
    CHECK(layout.tile_key(levels[1], 0, 0, "png") == "0,0,512,512/256,256/0/default.png");
    CHECK(layout.tile_key(levels[1], 2, 0, "png") == "1024,0,1,512/1,256/0/default.png");
    CHECK(layout.tile_key(levels[2], 0, 0, "png") == "0,0,1024,513/256,129/0/default.png");
    CHECK(layout.tile_key(levels[3], 0, 0, "png") == "0,0,1025,513/129,65/0/default.png");
    // The one-tile level is also the `sizes` image; at full resolution also full/max.
    CHECK(layout.tile_aliases(levels[3], 0, 0, "png") == std::vector<std::string>{"full/129,65/0/default.png"});
    CHECK(layout.tile_aliases(levels[2], 0, 0, "png").empty());
    const auto small = layout.levels(200, 100);
    REQUIRE(small.size() == 1);
    CHECK(layout.tile_aliases(small[0], 0, 0, "jpg") ==
          std::vector<std::string>{"full/200,100/0/default.jpg", "full/max/0/default.jpg"});
    for (const auto& wh : odd_sizes)
        for (const level_geometry& level : layout.levels(wh.first, wh.second))
            for (int r = 0; r < level.rows; ++r)
                for (int c = 0; c < level.columns; ++c) CHECK(key_problem(layout.tile_key(level, c, r, "png")).empty());

    CHECK(layout.manifest_key() == "info.json");
    CHECK(layout.tile_url_template("jpg") == "{region}/{size}/0/default.jpg");
    CHECK(iiif_layout(256, "https://example.org/iiif/map/").id() == "https://example.org/iiif/map");
    CHECK_THROWS_AS(iiif_layout(0), error);
    CHECK_THROWS_AS(iiif_layout(256, ""), error);
    CHECK_THROWS_AS(iiif_layout(256, "https://example.org/a b"), error);
    CHECK_THROWS_AS(iiif_layout(256, "https://example.org/x?y"), error);
    CHECK_THROWS_AS(iiif_layout(256, "https://example.org/\"x"), error);
}

TEST_CASE("IIIF info.json is valid IIIF 3.0 and promises exactly the files written", "[layout][iiif][pyramid]") {
    const auto tile_size = GENERATE(256, 512);
    const auto format = GENERATE(tile_format::png, tile_format::jpeg);
    for (const auto& wh : odd_sizes) {
        const int w = wh.first, h = wh.second;
        INFO(w << "x" << h << " T=" << tile_size << " " << to_string(format));
        const image_buffer image = tkt::make_image(w, h, 3, static_cast<std::uint32_t>(w * 7 + h));
        ordered_sink sink;
        pyramid_options options;
        options.layout = layout_type::iiif;
        options.tile_size = tile_size;
        options.format = format;
        options.threads = 2;
        const std::string ext = to_string(format);
        const pyramid_metadata m = tile_memory<stb_codecs>(tkt::png_of(image.view()), sink, options);

        // Manifests last: info.json, then pyramid.json.
        REQUIRE(sink.order.size() >= 3);
        CHECK(sink.order[sink.order.size() - 2] == "info.json");
        CHECK(sink.order.back() == "pyramid.json");
        CHECK(sink.inner.get("info.json")->content_type == "application/json");
        CHECK(m.layout == "iiif");
        CHECK(m.manifest == "info.json");
        CHECK(m.overlap == 0);
        CHECK(m.tile_size == tile_size);
        const json pyramid = json::parse(tkt::as_string(sink.inner.get("pyramid.json")->body));
        CHECK(pyramid["layout"] == "iiif");
        CHECK(pyramid["manifest"] == "info.json");

        const json info = json::parse(tkt::as_string(sink.inner.get("info.json")->body));
        const std::vector<std::string> problems = info_json_problems(info);
        for (const std::string& p : problems) UNSCOPED_INFO(p);
        CHECK(problems.empty());
        CHECK(info["profile"] == "level0");
        CHECK(info["id"] == ".");
        CHECK(info["width"] == w);
        CHECK(info["height"] == h);
        CHECK(info["preferredFormats"] == json::array({ext}));
        CHECK(info.contains("extraFormats") == (ext != "jpg"));
        // Scale factors: 1, 2, 4, ... down to the level that fits one tile, and that level is the size.
        const json& factors = info["tiles"][0]["scaleFactors"];
        REQUIRE(factors.size() == static_cast<std::size_t>(m.levels));
        for (std::size_t i = 0; i < factors.size(); ++i) CHECK(factors[i] == (std::int64_t{1} << i));
        const std::int64_t last = factors.back();
        CHECK(info["sizes"] == json::array({json{{"type", "Size"}, {"width", (w + last - 1) / last}, {"height", (h + last - 1) / last}}}));
        CHECK((w + last - 1) / last <= tile_size);
        CHECK((h + last - 1) / last <= tile_size);
        if (last > 1) CHECK(std::max((w + last / 2 - 1) / (last / 2), (h + last / 2 - 1) / (last / 2)) > tile_size);

        // Files: exactly those promised, each of the promised pixel size.
        const auto promised = files_promised(info, ext);
        std::set<std::string> promised_keys;
        for (const auto& f : promised) promised_keys.insert(f.first);
        CHECK(keys_except_manifests(sink.inner) == promised_keys);
        CHECK(m.tile_count == promised.size());
        for (const auto& f : promised) {
            const auto object = sink.inner.get(f.first);
            if (!object) continue;
            int tw = 0, th = 0, tc = 0;
            REQUIRE(stbi_info_from_memory(object->body.data(), static_cast<int>(object->body.size()), &tw, &th, &tc) == 1);
            CHECK(tw == f.second.first);
            CHECK(th == f.second.second);
            CHECK(object->content_type == (ext == "jpg" ? "image/jpeg" : "image/png"));
        }
        // OpenSeadragon asks for nothing that is missing.
        for (const std::string& url : openseadragon_requests(info, ext)) {
            INFO("OpenSeadragon requests " << url);
            CHECK(sink.inner.contains(url));
        }
    }
}

TEST_CASE("IIIF full-resolution tiles are the image's pixels, lower levels the 2x2 reductions", "[layout][iiif][pyramid]") {
    const image_buffer image = tkt::make_image(601, 333, 4, 77);
    memory_sink sink;
    pyramid_options options;
    options.layout = layout_type::iiif;
    options.tile_size = 128;
    tile_memory<stb_codecs>(tkt::png_of(image.view()), sink, options);
    const std::vector<image_buffer> reference = tkt::reference_pyramid(image.view(), 3);
    const iiif_layout layout(128);
    const auto levels = layout.levels(601, 333);
    REQUIRE(levels.size() == 4);
    for (const level_geometry& level : levels)
        for (int r = 0; r < level.rows; ++r)
            for (int c = 0; c < level.columns; ++c) {
                const tile_region region = layout.region(level, c, r);
                const tkt::decoded_image tile = tkt::decode_object(sink, layout.tile_key(level, c, r, "png"));
                REQUIRE(tile.width == region.width);
                REQUIRE(tile.height == region.height);
                REQUIRE(tile.channels == 4);
                const image_buffer& ref = reference[static_cast<std::size_t>(level.halvings)];
                std::size_t differences = 0;
                for (int y = 0; y < region.height; ++y)
                    for (int x = 0; x < region.width; ++x)
                        for (int ch = 0; ch < 4; ++ch)
                            differences += tile.at(x, y)[ch] != ref.view().row(region.y + y)[(region.x + x) * 4 + ch];
                CHECK(differences == 0);
            }
    // The full/ copy is the last level's tile, byte for byte.
    CHECK(sink.get("full/76,42/0/default.png")->body == sink.get("0,0,601,333/76,42/0/default.png")->body);
}

TEST_CASE("IIIF id: relative by default, the base URL joined with the prefix when given", "[layout][iiif]") {
    const image_buffer image = tkt::make_image(300, 200, 3, 5);
    const tkt::bytes png = tkt::png_of(image.view());
    const auto id_of = [&](const std::string& base, const std::string& prefix) {
        memory_sink sink;
        pyramid_options options;
        options.layout = layout_type::iiif;
        options.iiif_base_url = base;
        options.prefix = prefix;
        tile_memory<stb_codecs>(png, sink, options);
        return json::parse(tkt::as_string(sink.get(prefix + "info.json")->body))["id"].get<std::string>();
    };
    CHECK(id_of("", "") == ".");
    CHECK(id_of("", "maps/42/") == ".");
    CHECK(id_of("https://tiles.example.org/iiif/map", "") == "https://tiles.example.org/iiif/map");
    CHECK(id_of("https://cdn.example.org/", "maps/42/") == "https://cdn.example.org/maps/42");

    pyramid_options options;
    options.layout = layout_type::iiif;
    CHECK(manifest_key(options) == "info.json");
    options.overlap = 1;
    CHECK_THROWS_AS(manifest_key(options), error);
    options.overlap = 0;
    options.iiif_base_url = "https://example.org/with space";
    CHECK_THROWS_AS(manifest_key(options), error);
}

TEST_CASE("IIIF skip-blank: a transparent tile is not written, nor its full/ copies", "[layout][iiif][pyramid]") {
    image_buffer image(300, 40, 4);  // all alpha 0
    memory_sink sink;
    pyramid_options options;
    options.layout = layout_type::iiif;
    options.tile_size = 256;
    options.skip_blank_tiles = true;
    const pyramid_metadata m = tile_memory<stb_codecs>(tkt::png_of(image.view()), sink, options);
    CHECK(m.tile_count == 0);
    CHECK(m.skipped_tiles == 3);  // 2 tiles at scale 1, 1 at scale 2
    CHECK(keys_except_manifests(sink).empty());
    CHECK(sink.contains("info.json"));
}

TEST_CASE("IIIF grid equals vips dzsave --layout iiif3 on odd sizes", "[reference][vips][needs-data][iiif]") {
    if (!tkt::on_path("vips")) {
        TILEKIT_SKIP_TEST("vips is not on PATH (Debian: libvips-tools): no comparison with vips dzsave --layout iiif3");
        return;
    }
    tkt::temp_dir dir("tilekit-vips-iiif");
    const std::vector<std::pair<int, int>> sizes = {{1, 1}, {1, 700}, {255, 257}, {3001, 5}, {1025, 513}, {256, 100}};
    for (const auto& wh : sizes) {
        const int w = wh.first, h = wh.second;
        const image_buffer image = tkt::make_image(w, h, 3, static_cast<std::uint32_t>(w + h));
        const tkt::fs::path input = dir.path() / (std::to_string(w) + "x" + std::to_string(h) + ".png");
        tkt::write_file(input, tkt::png_of(image.view()));
        for (const int T : {256, 512}) {
            INFO(w << "x" << h << " T=" << T);
            const std::string out = (dir.path() / (std::to_string(w) + "x" + std::to_string(h) + "-" + std::to_string(T))).string();
            const std::string command = "vips dzsave " + tkt::shell_quote(input.string()) + " " + tkt::shell_quote(out) +
                                        " --layout iiif3 --tile-size " + std::to_string(T) + " --suffix .png";
            const int status = tkt::run_command(command, dir.path() / "vips.log");
            INFO(command << "\n" << tkt::as_string(tkt::read_file(dir.path() / "vips.log")));
            REQUIRE(status == 0);
            std::set<std::string> vips_tiles;
            for (const std::string& f : tkt::list_files(out))
                if (f != "info.json" && f != "vips-properties.xml") vips_tiles.insert(f);

            memory_sink sink;
            pyramid_options options;
            options.layout = layout_type::iiif;
            options.tile_size = T;
            tile_file<stb_codecs>(input.string(), sink, options);
            std::set<std::string> grid, full;
            for (const std::string& key : keys_except_manifests(sink)) (key.rfind("full/", 0) == 0 ? full : grid).insert(key);
            CHECK(grid == vips_tiles);  // region coordinates, size strings, which files exist
            CHECK(!full.empty());       // tilekit's addition: the `sizes` image(s), see layout.hpp
            for (const std::string& tile : vips_tiles) {
                if (!sink.contains(tile)) continue;
                int vw = 0, vh = 0, vc = 0, ow = 0, oh = 0, oc = 0;
                const tkt::bytes ours = sink.get(tile)->body;
                REQUIRE(stbi_info((out + "/" + tile).c_str(), &vw, &vh, &vc) == 1);
                REQUIRE(stbi_info_from_memory(ours.data(), static_cast<int>(ours.size()), &ow, &oh, &oc) == 1);
                CHECK(vw == ow);
                CHECK(vh == oh);
            }

            const json theirs = json::parse(tkt::as_string(tkt::read_file(out + "/info.json")));
            const json info = json::parse(tkt::as_string(sink.get("info.json")->body));
            for (const char* key : {"@context", "type", "profile", "protocol", "width", "height"}) {
                INFO(key);
                CHECK(info[key] == theirs[key]);
            }
            CHECK(info["tiles"][0]["width"] == theirs["tiles"][0]["width"]);
            // vips before 8.17 leaves the last scale factor out of the list although it writes
            // that level's tile (libvips#4421, fixed in 8.17): accept either list.
            json factors = theirs["tiles"][0]["scaleFactors"];
            const json& ours = info["tiles"][0]["scaleFactors"];
            if (factors != ours) factors.push_back(factors.empty() ? 1 : factors.back().get<std::int64_t>() * 2);
            CHECK(ours == factors);
        }
    }
}
