#pragma once
// The layout contract, and the Deep Zoom and XYZ layouts: which levels exist, which pixels each
// tile shows, and what each object is called.
//
// A layout is a value type (the tiler is templated on it) with:
//   static constexpr const char* name();          // "dz", "xyz": written to pyramid.json
//   int tile_size() const;  int overlap() const;  // as written to pyramid.json
//   bool pads_edges() const;                      // true: edge tiles are padded to full size
//   std::vector<level_geometry> levels(int width, int height) const;
//       // every level, full resolution first (halvings 0, 1, ...), each level the one before
//       // halved rounding up: the tiler builds level k+1 by a 2x2 reduction of level k
//   tile_region region(const level_geometry&, int column, int row) const;
//       // the level pixels one tile shows (inside the level) and its encoded size; tiles of one
//       // row share y and height, and rows are cut top to bottom
//   std::string tile_key(const level_geometry&, int column, int row, const std::string& ext) const;
//   std::string tile_url_template(const std::string& ext) const;   // for viewers
//   std::string manifest_key() const;             // the layout's own manifest, or empty for none
//   std::string manifest(int width, int height, const std::string& ext) const;
// and optionally (detected; see iiif_layout):
//   std::vector<std::string> tile_aliases(const level_geometry&, int column, int row, const std::string& ext) const;
//       // more keys the same encoded tile is written under (IIIF's full/ images)
//   bool repeats_finer_tile(const level_geometry&, int column, int row) const;
//       // true: the tile's key is also a tile of the level above, which is the one written
// Keys are relative to the run's prefix and must pass validate_key().

#include <tilekit/error.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

struct level_geometry {
    int index = 0;     // the level's number in object names: Deep Zoom level or XYZ zoom
    int halvings = 0;  // times the full-resolution image is halved to make this level
    int width = 0;     // the level image, in pixels
    int height = 0;
    int columns = 0;   // tiles across and down
    int rows = 0;
    int image_width = 0;   // the full-resolution image (IIIF names tiles by their full-resolution region)
    int image_height = 0;

    std::uint64_t tile_count() const noexcept { return std::uint64_t(columns) * std::uint64_t(rows); }
};

// The part of a level image that one tile shows, and the size the tile is encoded at.
struct tile_region {
    int x = 0;  // top-left corner in level pixels
    int y = 0;
    int width = 0;  // pixels taken from the level image (always inside it)
    int height = 0;
    int out_width = 0;  // encoded size: equal to width/height, or larger when the layout pads edges
    int out_height = 0;
};

namespace detail {

// Smallest n >= 0 with 2^n * unit >= extent.
inline int ceil_log2_ratio(std::int64_t extent, std::int64_t unit) {
    int n = 0;
    while ((unit << n) < extent) ++n;
    return n;
}

inline int halve_up(int extent, int halvings) {
    return static_cast<int>((std::int64_t(extent) + (std::int64_t{1} << halvings) - 1) >> halvings);
}

inline int div_up(int a, int b) { return (a + b - 1) / b; }

inline void check_image_size(int width, int height) {
    if (width <= 0 || height <= 0)
        throw error(errc::invalid_argument,
                    "image size must be positive, got " + std::to_string(width) + "x" + std::to_string(height));
}

// Levels 0..top, each the full-resolution image halved (rounding up) top - index times,
// ordered from full resolution down; both layouts differ only in `top`.
inline std::vector<level_geometry> halving_levels(int width, int height, int top, int tile_size) {
    std::vector<level_geometry> result;
    for (int halvings = 0; halvings <= top; ++halvings) {
        level_geometry level;
        level.index = top - halvings;
        level.halvings = halvings;
        level.width = halve_up(width, halvings);
        level.height = halve_up(height, halvings);
        level.columns = div_up(level.width, tile_size);
        level.rows = div_up(level.height, tile_size);
        level.image_width = width;
        level.image_height = height;
        result.push_back(level);
    }
    return result;
}

}  // namespace detail

// Deep Zoom, as OpenSeadragon reads and `vips dzsave` writes: levels 0..ceil(log2(max(W,H))),
// level 0 is 1x1; tiles step by tile_size and carry `overlap` extra pixels on interior edges
// only; edge tiles are cropped. Objects: {basename}.dzi and {basename}_files/{level}/{col}_{row}.{ext}.
class deep_zoom_layout {
public:
    explicit deep_zoom_layout(int tile_size = 254, int overlap = 1, std::string basename = "image")
        : tile_size_(tile_size), overlap_(overlap), basename_(std::move(basename)) {
        if (tile_size < 1 || tile_size > 8192)
            throw error(errc::invalid_argument, "tile size must be 1..8192, got " + std::to_string(tile_size));
        if (overlap < 0 || overlap > tile_size)
            throw error(errc::invalid_argument, "overlap must be 0..tile size, got " + std::to_string(overlap));
        if (basename_.empty() || basename_.find_first_of("/\\") != std::string::npos || basename_ == "." ||
            basename_ == "..")
            throw error(errc::invalid_argument, "Deep Zoom basename must be a plain file name, got '" + basename_ + "'");
    }

    static constexpr const char* name() noexcept { return "dz"; }
    int tile_size() const noexcept { return tile_size_; }
    int overlap() const noexcept { return overlap_; }
    const std::string& basename() const noexcept { return basename_; }
    bool pads_edges() const noexcept { return false; }

    // Levels ordered from full resolution (halvings 0) down to 1x1.
    std::vector<level_geometry> levels(int width, int height) const {
        detail::check_image_size(width, height);
        return detail::halving_levels(width, height, detail::ceil_log2_ratio(std::max(width, height), 1), tile_size_);
    }

    tile_region region(const level_geometry& level, int column, int row) const {
        tile_region r;
        axis(level.width, column, r.x, r.width);
        axis(level.height, row, r.y, r.height);
        r.out_width = r.width;
        r.out_height = r.height;
        return r;
    }

    std::string tile_key(const level_geometry& level, int column, int row, const std::string& extension) const {
        return basename_ + "_files/" + std::to_string(level.index) + "/" + std::to_string(column) + "_" +
               std::to_string(row) + "." + extension;
    }

    std::string tile_url_template(const std::string& extension) const {
        return basename_ + "_files/{level}/{col}_{row}." + extension;
    }

    std::string manifest_key() const { return basename_ + ".dzi"; }

    std::string manifest(int width, int height, const std::string& extension) const {
        return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<Image xmlns=\"http://schemas.microsoft.com/deepzoom/2008\" Format=\"" +
               extension + "\" Overlap=\"" + std::to_string(overlap_) + "\" TileSize=\"" + std::to_string(tile_size_) +
               "\">\n  <Size Width=\"" + std::to_string(width) + "\" Height=\"" + std::to_string(height) +
               "\"/>\n</Image>\n";
    }

private:
    void axis(int extent, int index, int& start, int& length) const {
        const std::int64_t first = std::int64_t(index) * tile_size_;
        const std::int64_t begin = std::max<std::int64_t>(0, first - overlap_);
        const std::int64_t end = std::min<std::int64_t>(extent, first + tile_size_ + overlap_);
        start = static_cast<int>(begin);
        length = static_cast<int>(end - begin);
    }

    int tile_size_;
    int overlap_;
    std::string basename_;
};

// XYZ for Leaflet (L.CRS.Simple) and other slippy-map viewers, the grid of
// `gdal2tiles.py -p raster --xyz`: zoom 0 shows the whole image in one tile, zoom N is full
// resolution, the image is anchored top-left, every tile is tile_size square (edges padded).
// Objects: {z}/{x}/{y}.{ext}.
class xyz_layout {
public:
    explicit xyz_layout(int tile_size = 256) : tile_size_(tile_size) {
        if (tile_size < 1 || tile_size > 8192)
            throw error(errc::invalid_argument, "tile size must be 1..8192, got " + std::to_string(tile_size));
    }

    static constexpr const char* name() noexcept { return "xyz"; }
    int tile_size() const noexcept { return tile_size_; }
    int overlap() const noexcept { return 0; }
    bool pads_edges() const noexcept { return true; }

    std::vector<level_geometry> levels(int width, int height) const {
        detail::check_image_size(width, height);
        return detail::halving_levels(width, height, detail::ceil_log2_ratio(std::max(width, height), tile_size_),
                                      tile_size_);
    }

    tile_region region(const level_geometry& level, int column, int row) const {
        tile_region r;
        r.x = column * tile_size_;
        r.y = row * tile_size_;
        r.width = std::min(tile_size_, level.width - r.x);
        r.height = std::min(tile_size_, level.height - r.y);
        r.out_width = tile_size_;
        r.out_height = tile_size_;
        return r;
    }

    std::string tile_key(const level_geometry& level, int column, int row, const std::string& extension) const {
        return std::to_string(level.index) + "/" + std::to_string(column) + "/" + std::to_string(row) + "." + extension;
    }

    std::string tile_url_template(const std::string& extension) const { return "{z}/{x}/{y}." + extension; }

    // XYZ has no layout-specific manifest; the tiler's JSON metadata describes it.
    std::string manifest_key() const { return {}; }
    std::string manifest(int, int, const std::string&) const { return {}; }

private:
    int tile_size_;
};

// IIIF Image API 3.0, compliance level 0 (static files), the grid of `vips dzsave --layout
// iiif3`: the levels of XYZ (the last one is the whole image in one tile), edge tiles cropped,
// no overlap. Each tile is named by the full-resolution region it shows and the size it is
// encoded at, as a IIIF client asks for it: {x},{y},{w},{h}/{width},{height}/0/default.{ext}.
// The last level (scale factor 2^top) is also written as full/{width},{height}/0/default.{ext}
// and, when it is the full-resolution image, as full/max/0/default.{ext}: the requests
// OpenSeadragon and other clients make for a level that fits one tile, and the `sizes` entry.
// Manifest: info.json, whose `id` is given (see pyramid_options::iiif_base_url); "." is a
// relative reference that viewers joining it to the region (OpenSeadragon does) resolve
// against the page.
class iiif_layout {
public:
    explicit iiif_layout(int tile_size = 512, std::string id = ".") : tile_size_(tile_size), id_(std::move(id)) {
        if (tile_size < 1 || tile_size > 8192)
            throw error(errc::invalid_argument, "tile size must be 1..8192, got " + std::to_string(tile_size));
        while (id_.size() > 1 && id_.back() == '/') id_.pop_back();
        if (id_.empty() || id_ == "/")
            throw error(errc::invalid_argument, "the IIIF id (base URL) must not be empty");
        for (const char ch : id_)
            if (static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7f || ch == '?' || ch == '#' || ch == '"' || ch == '\\')
                throw error(errc::invalid_argument,
                            "the IIIF id (base URL) must be a URL without spaces, control characters, quotes, "
                            "backslashes, '?' or '#', got '" + id_ + "'");
    }

    static constexpr const char* name() noexcept { return "iiif"; }
    int tile_size() const noexcept { return tile_size_; }
    int overlap() const noexcept { return 0; }
    bool pads_edges() const noexcept { return false; }
    const std::string& id() const noexcept { return id_; }

    std::vector<level_geometry> levels(int width, int height) const {
        detail::check_image_size(width, height);
        return detail::halving_levels(width, height, detail::ceil_log2_ratio(std::max(width, height), tile_size_),
                                      tile_size_);
    }

    tile_region region(const level_geometry& level, int column, int row) const {
        tile_region r;
        r.x = column * tile_size_;
        r.y = row * tile_size_;
        r.width = std::min(tile_size_, level.width - r.x);
        r.height = std::min(tile_size_, level.height - r.y);
        r.out_width = r.width;
        r.out_height = r.height;
        return r;
    }

    // The region in full-resolution pixels: the tile's level rectangle times the scale factor,
    // cut at the image's edge.
    std::string region_name(const level_geometry& level, int column, int row) const {
        const std::int64_t scale = std::int64_t{1} << level.halvings;
        const std::int64_t span = std::int64_t(tile_size_) * scale;
        const std::int64_t x = column * span, y = row * span;
        const std::int64_t w = std::min<std::int64_t>(span, level.image_width - x);
        const std::int64_t h = std::min<std::int64_t>(span, level.image_height - y);
        return std::to_string(x) + "," + std::to_string(y) + "," + std::to_string(w) + "," + std::to_string(h);
    }

    std::string tile_key(const level_geometry& level, int column, int row, const std::string& extension) const {
        const tile_region r = region(level, column, row);
        return region_name(level, column, row) + "/" + std::to_string(r.width) + "," + std::to_string(r.height) +
               "/0/default." + extension;
    }

    std::vector<std::string> tile_aliases(const level_geometry& level, int column, int row,
                                          const std::string& extension) const {
        if (level.columns != 1 || level.rows != 1 || column != 0 || row != 0) return {};
        std::vector<std::string> keys{"full/" + std::to_string(level.width) + "," + std::to_string(level.height) +
                                      "/0/default." + extension};
        if (level.halvings == 0) keys.push_back("full/max/0/default." + extension);
        return keys;
    }

    // An edge sliver at most half the scale factor wide and high has the same region and size
    // (one pixel) as the tile at the same place one level finer: 1025x513 at 256 px has
    // 1024,512,1,1/1,1 at scale factors 1 and 2. The tiler writes it once, at the finer level.
    bool repeats_finer_tile(const level_geometry& level, int column, int row) const {
        if (level.halvings == 0) return false;
        level_geometry finer = level;
        finer.halvings = level.halvings - 1;
        finer.width = detail::halve_up(level.image_width, finer.halvings);
        finer.height = detail::halve_up(level.image_height, finer.halvings);
        finer.columns = detail::div_up(finer.width, tile_size_);
        finer.rows = detail::div_up(finer.height, tile_size_);
        if (2 * column >= finer.columns || 2 * row >= finer.rows) return false;
        return tile_key(finer, 2 * column, 2 * row, "") == tile_key(level, column, row, "");
    }

    std::string tile_url_template(const std::string& extension) const {
        return "{region}/{size}/0/default." + extension;
    }

    std::string manifest_key() const { return "info.json"; }

    // The image information document (IIIF Image API 3.0, section 5), written last.
    std::string manifest(int width, int height, const std::string& extension) const {
        const std::vector<level_geometry> all = levels(width, height);
        const level_geometry& last = all.back();
        nlohmann::ordered_json scale_factors = nlohmann::ordered_json::array();
        for (const level_geometry& level : all) scale_factors.push_back(std::int64_t{1} << level.halvings);
        nlohmann::ordered_json info;
        info["@context"] = "http://iiif.io/api/image/3/context.json";
        info["id"] = id_;
        info["type"] = "ImageService3";
        info["protocol"] = "http://iiif.io/api/image";
        info["profile"] = "level0";
        info["width"] = width;
        info["height"] = height;
        info["sizes"] = nlohmann::ordered_json::array(
            {nlohmann::ordered_json{{"type", "Size"}, {"width", last.width}, {"height", last.height}}});
        info["tiles"] = nlohmann::ordered_json::array(
            {nlohmann::ordered_json{{"type", "Tile"}, {"width", tile_size_}, {"scaleFactors", scale_factors}}});
        // Level 0 promises only jpg; any other format is announced, and preferred so that clients
        // (OpenSeadragon: preferredFormats) ask for the files that exist.
        info["preferredFormats"] = nlohmann::ordered_json::array({extension});
        if (extension != "jpg") info["extraFormats"] = nlohmann::ordered_json::array({extension});
        return info.dump(2) + "\n";
    }

private:
    int tile_size_;
    std::string id_;
};

TILEKIT_NAMESPACE_END
