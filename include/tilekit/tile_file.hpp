#pragma once
// The run-time front door: tile an image file (or its bytes in memory) with the layout and tile
// format chosen by value, from a CLI flag or a request, instead of by template argument.
//
//   tilekit::filesystem_sink sink("out");
//   tilekit::pyramid_options options;            // Deep Zoom, PNG tiles, 254 px, overlap 1
//   options.layout = tilekit::layout_type::xyz;  // every field is one level deep
//   tilekit::pyramid_metadata m = tilekit::tile_file("map.png", sink, options);
//
// The decoders and encoders come from a codec set. By default tile_file() uses the fast set
// (streaming libpng/libjpeg decoders, libdeflate and libjpeg-turbo encoders) whenever
// <tilekit/fast_codecs.hpp> is part of the program, and stb's whole-image decoder and encoders
// otherwise; tile_file<tilekit::stb_codecs>(...) or tile_file<tilekit::fast_codecs>(...) chooses
// explicitly. A codec set is a type with
//   static constexpr const char* name();
//   using png = <encoder>;  using jpeg = <encoder>;        // see encode.hpp
//   static std::unique_ptr<row_source> open_file(const std::string& path, const decode_limits&);
//   static std::unique_ptr<row_source> open_memory(const std::uint8_t*, std::size_t, const decode_limits&);

#include <tilekit/decode.hpp>
#include <tilekit/detail/webp_hook.hpp>
#include <tilekit/encode.hpp>
#include <tilekit/input_readers.hpp>
#include <tilekit/layout.hpp>
#include <tilekit/row_source.hpp>
#include <tilekit/sink.hpp>
#include <tilekit/tiler.hpp>

#include <atomic>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

enum class layout_type { deep_zoom, xyz, iiif };
enum class tile_format { png, jpeg, webp };  // webp: needs <tilekit/webp.hpp>

inline const char* to_string(layout_type layout) noexcept {
    return layout == layout_type::xyz ? "xyz" : layout == layout_type::iiif ? "iiif" : "dz";
}
inline const char* to_string(tile_format format) noexcept {
    return format == tile_format::jpeg ? "jpg" : format == tile_format::webp ? "webp" : "png";
}

// Everything a run-time caller sets, one level deep: the tiling run (prefix, threads, progress,
// cancellation, ... from tile_options), the layout and format, and the decoder's limits.
struct pyramid_options : tile_options {
    layout_type layout = layout_type::deep_zoom;
    tile_format format = tile_format::png;
    int tile_size = 0;               // 0: 254 for Deep Zoom (256 with overlap), 256 for XYZ, 512 for IIIF
    int overlap = -1;                // -1: 1 for Deep Zoom; XYZ and IIIF allow only 0
    int quality = 85;                // JPEG and lossy WebP quality 1..100
    bool lossless = false;           // WebP: lossless tiles (quality then unused)
    int webp_method = 2;             // WebP: libwebp's effort 0 (fastest) ..6 (smallest); see README
    std::string basename = "image";  // Deep Zoom: {basename}.dzi and {basename}_files/
    std::string iiif_base_url;       // IIIF: info.json's id is this URL + "/" + prefix (without its
                                     // trailing slash); empty: "." (relative, see iiif_layout)
    decode_limits limits;            // pixel and file-size limits of the source image
};

namespace detail {

inline deep_zoom_layout make_deep_zoom_layout(const pyramid_options& options) {
    return deep_zoom_layout(options.tile_size ? options.tile_size : 254, options.overlap < 0 ? 1 : options.overlap,
                            options.basename);
}

inline xyz_layout make_xyz_layout(const pyramid_options& options) {
    if (options.overlap > 0)
        throw error(errc::invalid_argument, "the XYZ layout has no overlap (got " + std::to_string(options.overlap) + ")");
    return xyz_layout(options.tile_size ? options.tile_size : 256);
}

// The id: the base URL joined with the prefix ("maps/42/" -> {base}/maps/42), or ".".
inline iiif_layout make_iiif_layout(const pyramid_options& options) {
    if (options.overlap > 0)
        throw error(errc::invalid_argument, "the IIIF layout has no overlap (got " + std::to_string(options.overlap) + ")");
    std::string id = options.iiif_base_url;
    while (!id.empty() && id.back() == '/') id.pop_back();
    if (!options.iiif_base_url.empty() && !options.prefix.empty()) {
        std::string prefix = options.prefix;
        while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
        id += "/" + prefix;
    }
    return iiif_layout(options.tile_size ? options.tile_size : 512, id.empty() ? "." : id);
}

}  // namespace detail

// The key of the layout manifest a run with these options writes ("image.dzi"), relative to the
// prefix, or empty when the layout has none (XYZ). The metadata is options.metadata_key.
inline std::string manifest_key(const pyramid_options& options) {
    if (options.layout == layout_type::xyz) return detail::make_xyz_layout(options).manifest_key();
    if (options.layout == layout_type::iiif) return detail::make_iiif_layout(options).manifest_key();
    return detail::make_deep_zoom_layout(options).manifest_key();
}

// The core codec set: stb_image decodes the whole image; stb_image_write encodes PNG tiles and
// tilekit's own baseline writer JPEG tiles.
struct stb_codecs {
    static constexpr const char* name() noexcept { return "stb"; }
    using png = stb_png_encoder;
    using jpeg = baseline_jpeg_encoder;
    static std::unique_ptr<row_source> open_file(const std::string& path, const decode_limits& limits = {}) {
        // Formats of optional parts (TIFF, WebP) go to their registered reader.
        std::uint8_t magic[16] = {0};
        std::ifstream probe(path, std::ios::binary);
        probe.read(reinterpret_cast<char*>(magic), sizeof magic);
        const auto got = static_cast<std::size_t>(probe.gcount());
        if (got > 0)
            if (const input_reader* reader = detail::input_reader_for(detail::describe_format(magic, got), "'" + path + "': "))
                return reader->open_file(path, limits);
        return std::make_unique<image_row_source>(decode_image_file(path, limits));
    }
    static std::unique_ptr<row_source> open_memory(const std::uint8_t* data, std::size_t size,
                                                   const decode_limits& limits = {}) {
        if (size > 0)
            if (const input_reader* reader = detail::input_reader_for(detail::describe_format(data, size), ""))
                return reader->open_memory(data, size, limits);
        return std::make_unique<image_row_source>(decode_image(data, size, limits));
    }
};

// Tag for "the best codec set in this program" (the default of tile_file and tile_memory).
struct automatic_codecs {};

namespace detail {

// What pyramid.json records of the tile encoder's settings.
inline nlohmann::json encoding_of(const pyramid_options& options) {
    if (options.format == tile_format::jpeg) return {{"quality", options.quality}};
    if (options.format == tile_format::webp)
        return options.lossless ? nlohmann::json{{"lossless", true}, {"method", options.webp_method}}
                                : nlohmann::json{{"lossless", false}, {"quality", options.quality}, {"method", options.webp_method}};
    return nlohmann::json::object();
}

inline std::string recorded_format(const std::uint8_t* data, std::size_t size) {
    const std::string format = describe_format(data, size);
    return format == "other" ? std::string() : format;
}

template <class Codecs>
pyramid_metadata tile_rows(row_source& source, storage_sink& sink, const pyramid_options& requested,
                           const std::string& source_format) {
    pyramid_options options = requested;
    if (options.source_format.empty()) options.source_format = source_format;
    if (options.encoding.empty()) options.encoding = encoding_of(options);
    const auto run = [&](const auto& layout) {
        if (options.format == tile_format::jpeg)
            return generate_pyramid(source, layout, typename Codecs::jpeg(options.quality), sink, options);
        if (options.format == tile_format::webp)
            return generate_pyramid(source, layout, registered_webp_encoder(options.quality, options.lossless, options.webp_method), sink, options);
        return generate_pyramid(source, layout, typename Codecs::png(), sink, options);
    };
    if (options.layout == layout_type::xyz) return run(make_xyz_layout(options));
    if (options.layout == layout_type::iiif) return run(make_iiif_layout(options));
    return run(make_deep_zoom_layout(options));
}

template <class Codecs>
pyramid_metadata tile_file_with(const std::string& path, storage_sink& sink, const pyramid_options& options) {
    const std::unique_ptr<row_source> source = Codecs::open_file(path, options.limits);
    std::uint8_t magic[16] = {0};
    std::ifstream probe(path, std::ios::binary);
    probe.read(reinterpret_cast<char*>(magic), sizeof magic);
    return tile_rows<Codecs>(*source, sink, options, recorded_format(magic, static_cast<std::size_t>(probe.gcount())));
}

template <class Codecs>
pyramid_metadata tile_memory_with(const std::uint8_t* data, std::size_t size, storage_sink& sink,
                                  const pyramid_options& options) {
    const std::unique_ptr<row_source> source = Codecs::open_memory(data, size, options.limits);
    return tile_rows<Codecs>(*source, sink, options, recorded_format(data, size));
}

// A codec set behind function pointers, so the default can be chosen when the program starts.
struct codec_entry {
    const char* name;
    pyramid_metadata (*tile_file)(const std::string&, storage_sink&, const pyramid_options&);
    pyramid_metadata (*tile_memory)(const std::uint8_t*, std::size_t, storage_sink&, const pyramid_options&);
};

template <class Codecs>
const codec_entry* codec_entry_of() {
    static const codec_entry entry{Codecs::name(), &tile_file_with<Codecs>, &tile_memory_with<Codecs>};
    return &entry;
}

// Set once, before main, by <tilekit/fast_codecs.hpp> in every program that includes it.
inline std::atomic<const codec_entry*>& registered_codecs() {
    static std::atomic<const codec_entry*> entry{nullptr};
    return entry;
}

inline const codec_entry& automatic_codec_entry() {
    const codec_entry* entry = registered_codecs().load(std::memory_order_acquire);
    return entry ? *entry : *codec_entry_of<stb_codecs>();
}

}  // namespace detail

// The codec set tile_file() and tile_memory() use by default: "fast" or "stb".
inline const char* default_codecs_name() { return detail::automatic_codec_entry().name; }

// Decodes the image file at `path` (refusing it, before decoding, when over options.limits) and
// tiles it into `sink`. Returns the metadata, also written last as options.metadata_key; throws
// tilekit::error (see errc), and writes no manifest on any failure.
template <class Codecs = automatic_codecs>
pyramid_metadata tile_file(const std::string& path, storage_sink& sink, const pyramid_options& options = {}) {
    if constexpr (std::is_same_v<Codecs, automatic_codecs>)
        return detail::automatic_codec_entry().tile_file(path, sink, options);
    else
        return detail::tile_file_with<Codecs>(path, sink, options);
}

// tile_file() for an image file held in memory (an upload, a download).
template <class Codecs = automatic_codecs>
pyramid_metadata tile_memory(const std::uint8_t* data, std::size_t size, storage_sink& sink,
                             const pyramid_options& options = {}) {
    if constexpr (std::is_same_v<Codecs, automatic_codecs>)
        return detail::automatic_codec_entry().tile_memory(data, size, sink, options);
    else
        return detail::tile_memory_with<Codecs>(data, size, sink, options);
}

template <class Codecs = automatic_codecs>
pyramid_metadata tile_memory(const std::vector<std::uint8_t>& bytes, storage_sink& sink,
                             const pyramid_options& options = {}) {
    return tile_memory<Codecs>(bytes.data(), bytes.size(), sink, options);
}

TILEKIT_NAMESPACE_END
