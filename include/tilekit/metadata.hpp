#pragma once
// The JSON document written beside every pyramid (and returned by the tiler).

#include <tilekit/layout.hpp>
#include <tilekit/version.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

struct pyramid_metadata {
    std::string layout;          // "dz", "xyz" or "iiif"
    std::string format;          // tile file extension: "png", "jpg" or "webp"
    std::string source_format;   // the input's format ("png", "jpeg", "tiff", "webp"); empty if not known
    nlohmann::json encoding = nlohmann::json::object();  // the encoder's settings, e.g. {"quality": 85}
    int width = 0;               // full-resolution image
    int height = 0;
    int channels = 0;            // of the source image
    int tile_size = 0;
    int overlap = 0;
    int levels = 0;              // number of levels (Deep Zoom) or zooms (XYZ)
    int min_level = 0;
    int max_level = 0;           // full resolution
    std::uint64_t tile_count = 0;     // tiles written (IIIF: with the full/ copies of the last level)
    std::uint64_t skipped_tiles = 0;  // blank tiles not written (skip_blank_tiles)
    std::uint64_t total_bytes = 0;    // bytes of all tiles written
    std::string tile_url_template;    // relative to the pyramid's prefix
    std::string manifest;             // layout manifest key relative to the prefix ("image.dzi"), or empty
    std::vector<level_geometry> level_sizes;  // lowest level first
};

inline void to_json(nlohmann::json& j, const level_geometry& level) {
    j = nlohmann::json{{"level", level.index}, {"width", level.width},    {"height", level.height},
                       {"columns", level.columns}, {"rows", level.rows}};
}

inline void from_json(const nlohmann::json& j, level_geometry& level) {
    j.at("level").get_to(level.index);
    j.at("width").get_to(level.width);
    j.at("height").get_to(level.height);
    j.at("columns").get_to(level.columns);
    j.at("rows").get_to(level.rows);
}

inline void to_json(nlohmann::json& j, const pyramid_metadata& m) {
    j = nlohmann::json{{"generator", std::string("tilekit ") + TILEKIT_VERSION},
                       {"layout", m.layout},
                       {"format", m.format},
                       {"encoding", m.encoding},
                       {"source_format", m.source_format},
                       {"width", m.width},
                       {"height", m.height},
                       {"channels", m.channels},
                       {"tile_size", m.tile_size},
                       {"overlap", m.overlap},
                       {"levels", m.levels},
                       {"min_level", m.min_level},
                       {"max_level", m.max_level},
                       {"tile_count", m.tile_count},
                       {"skipped_tiles", m.skipped_tiles},
                       {"total_bytes", m.total_bytes},
                       {"tile_url_template", m.tile_url_template},
                       {"manifest", m.manifest},
                       {"level_sizes", m.level_sizes}};
}

inline void from_json(const nlohmann::json& j, pyramid_metadata& m) {
    j.at("layout").get_to(m.layout);
    j.at("format").get_to(m.format);
    m.source_format = j.value("source_format", std::string());
    if (j.contains("encoding") && j.at("encoding").is_object()) m.encoding = j.at("encoding");
    j.at("width").get_to(m.width);
    j.at("height").get_to(m.height);
    m.channels = j.value("channels", 0);
    j.at("tile_size").get_to(m.tile_size);
    j.at("overlap").get_to(m.overlap);
    j.at("levels").get_to(m.levels);
    j.at("min_level").get_to(m.min_level);
    j.at("max_level").get_to(m.max_level);
    j.at("tile_count").get_to(m.tile_count);
    m.skipped_tiles = j.value("skipped_tiles", std::uint64_t{0});
    j.at("total_bytes").get_to(m.total_bytes);
    m.tile_url_template = j.value("tile_url_template", std::string());
    m.manifest = j.value("manifest", std::string());
    if (j.contains("level_sizes")) j.at("level_sizes").get_to(m.level_sizes);
}

TILEKIT_NAMESPACE_END
