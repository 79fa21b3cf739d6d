#pragma once
// The run-time front door: layout and format chosen by value (from a CLI flag or a request)
// instead of by template argument. Codecs is a set of encoder types: stb_codecs here (core),
// fast_codecs in <tilekit/fast_codecs.hpp>.

#include <tilekit/decode.hpp>
#include <tilekit/encode.hpp>
#include <tilekit/layout.hpp>
#include <tilekit/tiler.hpp>

#include <string>

TILEKIT_NAMESPACE_BEGIN

enum class layout_type { deep_zoom, xyz };
enum class tile_format { png, jpeg };

struct stb_codecs {
    using png = stb_png_encoder;
    using jpeg = stb_jpeg_encoder;
};

struct pyramid_options {
    layout_type layout = layout_type::deep_zoom;
    tile_format format = tile_format::png;
    int tile_size = 0;         // 0: 254 for Deep Zoom (256 with overlap), 256 for XYZ
    int overlap = -1;          // -1: 1 for Deep Zoom; XYZ allows only 0
    int quality = 85;          // JPEG quality 1..100
    std::string basename = "image";  // Deep Zoom: {basename}.dzi and {basename}_files/
    tile_options tiling;       // prefix, threads, progress, cancellation, ...
};

inline const char* to_string(layout_type layout) noexcept { return layout == layout_type::xyz ? "xyz" : "dz"; }
inline const char* to_string(tile_format format) noexcept { return format == tile_format::jpeg ? "jpg" : "png"; }

// Tiles the rows of any row source (see tiler.hpp) with the layout and format in `options`.
template <class Codecs = stb_codecs, class Sink, class RowSource>
pyramid_metadata tile_rows(RowSource& source, Sink& sink, const pyramid_options& options) {
    const auto run = [&](const auto& layout) {
        if (options.format == tile_format::jpeg)
            return generate_pyramid_from_rows(source, layout, typename Codecs::jpeg(options.quality), sink, options.tiling);
        return generate_pyramid_from_rows(source, layout, typename Codecs::png(), sink, options.tiling);
    };
    if (options.layout == layout_type::xyz) {
        if (options.overlap > 0)
            throw error(errc::invalid_argument, "the XYZ layout has no overlap (got " + std::to_string(options.overlap) + ")");
        return run(xyz_layout(options.tile_size ? options.tile_size : 256));
    }
    return run(deep_zoom_layout(options.tile_size ? options.tile_size : 254, options.overlap < 0 ? 1 : options.overlap,
                                options.basename));
}

template <class Codecs = stb_codecs, class Sink>
pyramid_metadata tile_image(const image_view& image, Sink& sink, const pyramid_options& options) {
    if (!image.pixels) throw error(errc::invalid_argument, "tile_image: the image has no pixels");
    image_row_source source(image);
    return tile_rows<Codecs>(source, sink, options);
}

// Decodes `path` (refusing images over `limits`) and tiles it.
template <class Codecs = stb_codecs, class Sink>
pyramid_metadata tile_image_file(const std::string& path, Sink& sink, const pyramid_options& options,
                                 const decode_limits& limits = {}) {
    const image_buffer image = decode_image_file(path, limits);
    return tile_image<Codecs>(image.view(), sink, options);
}

TILEKIT_NAMESPACE_END
