#pragma once
// Cutting one tile out of a level's row band: crop, pad to the layout's tile size, add an alpha
// channel for transparent padding, or flatten alpha onto a background for encoders without it.

#include <tilekit/config.hpp>
#include <tilekit/image.hpp>
#include <tilekit/layout.hpp>

#include <cstdint>
#include <cstring>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

namespace detail {

struct tile_pixel_format {
    int source_channels = 0;
    int tile_channels = 0;
    rgba_color fill;          // padding colour (transparent when the tile has alpha and no background was set)
    bool flatten = false;     // source alpha is composited onto `fill` (encoder has no alpha)
};

// The channel count of a tile: encoders without alpha get gray or RGB; padded edges with no
// background colour get an alpha channel so the padding can be transparent.
inline tile_pixel_format choose_tile_format(int source_channels, bool encoder_has_alpha, bool padded,
                                            const rgba_color* background) {
    tile_pixel_format format;
    format.source_channels = source_channels;
    const bool source_alpha = source_channels == 2 || source_channels == 4;
    const int color_channels = source_channels <= 2 ? 1 : 3;
    if (!encoder_has_alpha) {
        format.tile_channels = color_channels;
        format.fill = background ? *background : rgba_color{};
        format.fill.a = 255;
        format.flatten = source_alpha;
    } else if (padded && !background && !source_alpha) {
        format.tile_channels = color_channels + 1;
        format.fill = rgba_color{0, 0, 0, 0};
    } else {
        format.tile_channels = source_channels;
        format.fill = background ? *background : rgba_color{0, 0, 0, 0};
    }
    return format;
}

inline void fill_pixel(const rgba_color& color, int channels, std::uint8_t* out) {
    const auto luma = static_cast<std::uint8_t>((77u * color.r + 150u * color.g + 29u * color.b + 128u) >> 8);
    switch (channels) {
        case 1: out[0] = luma; break;
        case 2: out[0] = luma; out[1] = color.a; break;
        case 3: out[0] = color.r; out[1] = color.g; out[2] = color.b; break;
        default: out[0] = color.r; out[1] = color.g; out[2] = color.b; out[3] = color.a; break;
    }
}

inline std::uint8_t blend(std::uint8_t value, std::uint8_t alpha, std::uint8_t background) {
    return static_cast<std::uint8_t>((unsigned{value} * alpha + unsigned{background} * (255u - alpha) + 127u) / 255u);
}

// Copies `width` source pixels into a tile row of `format.tile_channels`.
inline void convert_row(const std::uint8_t* in, int width, const tile_pixel_format& format, std::uint8_t* out) {
    const int sc = format.source_channels;
    const int tc = format.tile_channels;
    if (sc == tc) {
        std::memcpy(out, in, static_cast<std::size_t>(width) * static_cast<std::size_t>(sc));
        return;
    }
    if (format.flatten) {  // 2 -> 1 or 4 -> 3
        const std::uint8_t bg[3] = {format.fill.r, format.fill.g, format.fill.b};
        const std::uint8_t bg_gray = static_cast<std::uint8_t>(
            (77u * format.fill.r + 150u * format.fill.g + 29u * format.fill.b + 128u) >> 8);
        for (int x = 0; x < width; ++x, in += sc, out += tc) {
            const std::uint8_t alpha = in[sc - 1];
            for (int c = 0; c < tc; ++c) out[c] = blend(in[c], alpha, tc == 1 ? bg_gray : bg[c]);
        }
        return;
    }
    // 1 -> 2 or 3 -> 4: opaque pixels gain an alpha channel.
    for (int x = 0; x < width; ++x, in += sc, out += tc) {
        for (int c = 0; c < sc; ++c) out[c] = in[c];
        out[sc] = 255;
    }
}

// True when every source pixel of the region is fully transparent.
inline bool region_is_blank(const std::uint8_t* const* rows, const tile_region& region, int channels) {
    if (channels != 2 && channels != 4) return false;
    for (int y = 0; y < region.height; ++y) {
        const std::uint8_t* p = rows[y] + static_cast<std::size_t>(region.x) * channels + channels - 1;
        for (int x = 0; x < region.width; ++x, p += channels)
            if (*p != 0) return false;
    }
    return true;
}

// Builds the tile's pixels (tightly packed) from the region's source rows.
inline void assemble_tile(const std::uint8_t* const* rows, const tile_region& region, const tile_pixel_format& format,
                          std::vector<std::uint8_t>& out) {
    const int tc = format.tile_channels;
    const std::size_t tile_stride = static_cast<std::size_t>(region.out_width) * static_cast<std::size_t>(tc);
    out.resize(tile_stride * static_cast<std::size_t>(region.out_height));
    const bool padded = region.out_width != region.width || region.out_height != region.height;
    std::vector<std::uint8_t> fill_row;
    if (padded) {
        fill_row.resize(tile_stride);
        for (int x = 0; x < region.out_width; ++x) fill_pixel(format.fill, tc, fill_row.data() + x * tc);
    }
    for (int y = 0; y < region.out_height; ++y) {
        std::uint8_t* out_row = out.data() + static_cast<std::size_t>(y) * tile_stride;
        if (y >= region.height) {
            std::memcpy(out_row, fill_row.data(), tile_stride);
            continue;
        }
        const std::uint8_t* in_row = rows[y] + static_cast<std::size_t>(region.x) * format.source_channels;
        convert_row(in_row, region.width, format, out_row);
        if (region.width < region.out_width)
            std::memcpy(out_row + static_cast<std::size_t>(region.width) * tc, fill_row.data(),
                        tile_stride - static_cast<std::size_t>(region.width) * tc);
    }
}

}  // namespace detail
TILEKIT_NAMESPACE_END
