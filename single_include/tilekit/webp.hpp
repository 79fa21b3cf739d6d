#pragma once
// tilekit 0.1.0, single header <tilekit/webp.hpp>: the webp part.
// WebP tiles through libwebp (lossy with alpha at a quality 1..100, or lossless) and WebP
// input (whole-image decode, checked against the limits from the header). Including it
// lets tile_file() write tile_format::webp and read .webp images.
//
// Needs tilekit.hpp beside it (it includes it).
// Link (Debian: libwebp-dev):
//   c++ -std=c++17 -I single_include app.cpp $(pkg-config --cflags --libs stb libwebp) -pthread
// An installed tilekit: `pkg-config tilekit-webp`, or CMake `tilekit::webp`.
//
//   #include <tilekit/webp.hpp>
//   tilekit::filesystem_sink sink("out");
//   tilekit::pyramid_options options;
//   options.format = tilekit::tile_format::webp;  // options.lossless = true for exact tiles
//   tilekit::pyramid_metadata m = tilekit::tile_file("map.png", sink, options);  // image_files/N/C_R.webp
//
// Generated from include/tilekit/webp.hpp by tools/amalgamate.py. Do not edit: change include/tilekit/
// and rerun the script.

#include "tilekit.hpp"

// tilekit's optional WebP part: WebP tiles through libwebp (lossy with alpha, or lossless) and
// WebP input (whole-image decode; WebP sides are at most 16383 px). Including it lets
// tile_file() write tile_format::webp and read WebP files. Link `tilekit::webp` (CMake),
// `tilekit_webp_dep` (meson) or `pkg-config tilekit-webp` (Debian: libwebp-dev). The core
// never includes this.

#if !__has_include(<webp/encode.h>) || !__has_include(<webp/decode.h>)
#error "tilekit/webp.hpp needs libwebp (Debian: libwebp-dev)"
#endif

// #include <tilekit/tilekit.hpp>
// #include <tilekit/webp/encoder.hpp>
// WebP tiles through libwebp: lossy (VP8, with the alpha plane kept losslessly) at a quality
// 1..100, or lossless (VP8L, pixels kept exactly, colour under transparent pixels included).

// #include <tilekit/error.hpp>
// #include <tilekit/image.hpp>

#include <webp/encode.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

namespace detail {

inline int webp_append(const std::uint8_t* data, std::size_t size, const WebPPicture* picture) {
    auto* out = static_cast<std::vector<std::uint8_t>*>(picture->custom_ptr);
    out->insert(out->end(), data, data + size);
    return 1;
}

inline const char* webp_encoding_error(WebPEncodingError code) {
    switch (code) {
        case VP8_ENC_ERROR_OUT_OF_MEMORY: return "out of memory";
        case VP8_ENC_ERROR_BITSTREAM_OUT_OF_MEMORY: return "out of memory for the bitstream";
        case VP8_ENC_ERROR_NULL_PARAMETER: return "null parameter";
        case VP8_ENC_ERROR_INVALID_CONFIGURATION: return "invalid configuration";
        case VP8_ENC_ERROR_BAD_DIMENSION: return "bad dimension (WebP sides are 1..16383)";
        case VP8_ENC_ERROR_PARTITION0_OVERFLOW: return "partition 0 overflow";
        case VP8_ENC_ERROR_PARTITION_OVERFLOW: return "partition overflow";
        case VP8_ENC_ERROR_BAD_WRITE: return "write failed";
        case VP8_ENC_ERROR_FILE_TOO_BIG: return "file too big";
        case VP8_ENC_ERROR_USER_ABORT: return "aborted";
        default: return "unknown error";
    }
}

struct webp_picture {
    WebPPicture picture;
    webp_picture() {
        if (!WebPPictureInit(&picture)) throw error(errc::encode_failed, "libwebp version mismatch (WebPPictureInit)");
    }
    ~webp_picture() { WebPPictureFree(&picture); }
    webp_picture(const webp_picture&) = delete;
    webp_picture& operator=(const webp_picture&) = delete;
};

}  // namespace detail

// Options of webp_encoder; the defaults are the ones tile_file() uses.
struct webp_options {
    int quality = 85;       // lossy quality 1..100 (libwebp's -q); ignored when lossless
    bool lossless = false;  // VP8L: exact pixels
    // libwebp's speed/size trade-off, 0 (fastest) ..6 (smallest). 2 for tiles: on map-like
    // tiles at quality 85 it encodes 2.5x faster than 4 (vips' default effort) for about 6% more
    // bytes at the same PSNR within 0.1 dB (README "WebP").
    int method = 2;
};

class webp_encoder {
public:
    explicit webp_encoder(int quality = 85, bool lossless = false) : webp_encoder(webp_options{quality, lossless, 2}) {}
    explicit webp_encoder(const webp_options& options) : options_(options) {
        if (options.quality < 1 || options.quality > 100)
            throw error(errc::invalid_argument, "WebP quality must be 1..100, got " + std::to_string(options.quality));
        if (options.method < 0 || options.method > 6)
            throw error(errc::invalid_argument, "WebP method must be 0..6, got " + std::to_string(options.method));
        if (!WebPConfigInit(&config_)) throw error(errc::encode_failed, "libwebp version mismatch (WebPConfigInit)");
        if (options.lossless) {
            // In lossless mode libwebp's quality is an effort setting (75: its default);
            // "exact" keeps the colour under alpha 0, so the tile round-trips bit for bit.
            config_.lossless = 1;
            config_.exact = 1;
            config_.quality = 75;
            config_.method = options.method;
        } else {
            config_.quality = static_cast<float>(options.quality);
            config_.method = options.method;
            config_.alpha_quality = 100;  // the alpha plane is compressed losslessly
        }
        if (!WebPValidateConfig(&config_)) throw error(errc::invalid_argument, "invalid WebP encoder settings");
    }

    std::string extension() const { return "webp"; }
    std::string content_type() const { return "image/webp"; }
    bool supports_alpha() const noexcept { return true; }
    int quality() const noexcept { return options_.quality; }
    bool lossless() const noexcept { return options_.lossless; }

    // Thread-safe: one picture per call, the configuration is only read.
    void encode(const image_view& tile, std::vector<std::uint8_t>& out) const {
        out.clear();
        if (!tile.pixels || tile.width <= 0 || tile.height <= 0 || tile.channels < 1 || tile.channels > 4)
            throw error(errc::invalid_argument, "WebP encoder: the tile has no pixels or 1..4 channels");
        detail::webp_picture holder;
        WebPPicture& picture = holder.picture;
        picture.width = tile.width;
        picture.height = tile.height;
        picture.use_argb = options_.lossless ? 1 : 0;  // lossy: straight to YUV(A), no ARGB copy
        const std::uint8_t* pixels = tile.pixels;
        std::size_t stride = tile.stride;
        int channels = tile.channels;
        thread_local std::vector<std::uint8_t> expanded;
        if (channels <= 2) {  // WebP has no gray: gray becomes RGB, gray+alpha RGBA
            const int out_channels = channels == 1 ? 3 : 4;
            stride = static_cast<std::size_t>(tile.width) * static_cast<std::size_t>(out_channels);
            expanded.resize(stride * static_cast<std::size_t>(tile.height));
            for (int y = 0; y < tile.height; ++y) {
                const std::uint8_t* in = tile.row(y);
                std::uint8_t* o = expanded.data() + static_cast<std::size_t>(y) * stride;
                for (int x = 0; x < tile.width; ++x, in += channels, o += out_channels) {
                    o[0] = o[1] = o[2] = in[0];
                    if (channels == 2) o[3] = in[1];
                }
            }
            pixels = expanded.data();
            channels = out_channels;
        }
        const int row_bytes = static_cast<int>(stride);
        const int imported = channels == 4 ? WebPPictureImportRGBA(&picture, pixels, row_bytes)
                                           : WebPPictureImportRGB(&picture, pixels, row_bytes);
        if (!imported) throw error(errc::encode_failed, "WebP encoding failed: cannot import the tile (out of memory?)");
        picture.writer = detail::webp_append;
        picture.custom_ptr = &out;
        if (!WebPEncode(&config_, &picture))
            throw error(errc::encode_failed,
                        std::string("WebP encoding failed (libwebp): ") + detail::webp_encoding_error(picture.error_code));
    }

private:
    webp_options options_;
    WebPConfig config_;
};

TILEKIT_NAMESPACE_END
// #include <tilekit/webp/reader.hpp>
// WebP input through libwebp. WebP sides are at most 16383 px, so the whole image is decoded at
// once; the size is read from the header (WebPGetFeatures) and checked against the pixel limit
// and the memory budget before the output is allocated. Still and animated files are told
// apart: animations are refused. Lossy files decode to RGB (RGBA with an alpha plane), lossless
// ones the same way.

// #include <tilekit/decode.hpp>
// #include <tilekit/error.hpp>
// #include <tilekit/image.hpp>
// #include <tilekit/row_source.hpp>

#include <webp/decode.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

struct webp_image_info {
    int width = 0;
    int height = 0;
    int channels = 0;       // 3 (RGB) or 4 (RGBA: the file has alpha)
    bool lossless = false;  // VP8L
    bool animated = false;
};

namespace detail {

inline std::uint32_t read_le32(const std::uint8_t* p) noexcept {
    return std::uint32_t{p[0]} | (std::uint32_t{p[1]} << 8) | (std::uint32_t{p[2]} << 16) | (std::uint32_t{p[3]} << 24);
}

// A VP8StatusCode as an error: the file ends early, or it is damaged / uses what libwebp cannot read.
[[noreturn]] inline void throw_webp_status(const std::string& label, const char* what, VP8StatusCode status) {
    switch (status) {
        case VP8_STATUS_NOT_ENOUGH_DATA:
            throw error(errc::truncated_image, label + what + " WebP (file is truncated)");
        case VP8_STATUS_OUT_OF_MEMORY: throw std::bad_alloc();
        case VP8_STATUS_UNSUPPORTED_FEATURE:
            throw error(errc::corrupt_image, label + what + " WebP: a feature libwebp does not support");
        case VP8_STATUS_INVALID_PARAM:
        case VP8_STATUS_BITSTREAM_ERROR:
        default: throw error(errc::corrupt_image, label + what + " WebP: bitstream error");
    }
}

// Size, channels and kind from the header alone (RIFF, VP8/VP8L/VP8X chunk), nothing decoded.
inline webp_image_info webp_header(const std::string& label, const std::uint8_t* data, std::size_t size) {
    if (size == 0) throw error(errc::empty_input, label + "image is empty (0 bytes)");
    if (describe_format(data, size) != "webp") {
        refuse_unsupported_format(describe_format(data, size));
        throw error(errc::not_an_image, label + "input is not a WebP image");
    }
    WebPBitstreamFeatures features;
    const VP8StatusCode status = WebPGetFeatures(data, size, &features);
    if (status != VP8_STATUS_OK) throw_webp_status(label, "cannot read header of", status);
    webp_image_info info;
    info.width = features.width;
    info.height = features.height;
    info.channels = features.has_alpha ? 4 : 3;
    info.lossless = features.format == 2;
    info.animated = features.has_animation != 0;
    return info;
}

// Memory libwebp and tilekit hold at once for a whole-image decode: the file, the output, and
// libwebp's own buffers (lossless: an ARGB copy of the image plus a few rows; lossy: a few rows).
inline std::uint64_t webp_decode_cost(const webp_image_info& info, std::uint64_t file_bytes) {
    const std::uint64_t pixels = std::uint64_t(info.width) * std::uint64_t(info.height);
    return file_bytes + pixels * std::uint64_t(info.channels) + (info.lossless ? pixels * 4 : 0) +
           std::uint64_t(info.width) * 64;
}

}  // namespace detail

// The header of a WebP file in memory (throws as decode_webp would for a bad header).
inline webp_image_info read_webp_info(const std::uint8_t* data, std::size_t size) {
    return detail::webp_header("", data, size);
}

namespace detail {

inline image_buffer decode_webp_labelled(const std::string& label, const std::uint8_t* data, std::size_t size,
                                         const decode_limits& limits) {
    const webp_image_info info = webp_header(label, data, size);
    if (info.animated) throw error(errc::corrupt_image, label + "animated WebP is not supported (a still image is needed)");
    try {
        refuse_over_limit(std::uint64_t(info.width), std::uint64_t(info.height), limits);
    } catch (const error& e) {
        throw error(e.code(), label + e.what());
    }
    const std::uint64_t estimate = webp_decode_cost(info, size);
    if (estimate > limits.max_memory_bytes)
        throw error(errc::over_memory_budget,
                    label + "decoding this WebP (" + size_text(info.width, info.height) + ") needs about " +
                        std::to_string(estimate) + " bytes, over the memory budget of " +
                        std::to_string(limits.max_memory_bytes) + " bytes (decode_limits::max_memory_bytes)");
    // The RIFF size against the file: shorter is truncated, longer carries bytes after the image.
    const std::uint64_t riff_end = std::uint64_t{read_le32(data + 4)} + 8;
    if (riff_end > size) throw error(errc::truncated_image, label + "cannot decode WebP (file is truncated): the RIFF header " +
                                                            "says " + std::to_string(riff_end) + " bytes, the file has " +
                                                            std::to_string(size));
    if (riff_end < size && !limits.accept_damaged)
        throw error(errc::corrupt_image, label + "WebP has " + std::to_string(size - riff_end) +
                                             " bytes after the end of its RIFF data (decode_limits::accept_damaged reads it)");
    image_buffer image(info.width, info.height, info.channels);
    WebPDecoderConfig config;
    if (!WebPInitDecoderConfig(&config)) throw error(errc::corrupt_image, "libwebp version mismatch (WebPInitDecoderConfig)");
    config.output.colorspace = info.channels == 4 ? MODE_RGBA : MODE_RGB;
    config.output.is_external_memory = 1;
    config.output.u.RGBA.rgba = image.data();
    config.output.u.RGBA.stride = static_cast<int>(image.stride());
    config.output.u.RGBA.size = image.byte_size();
    const VP8StatusCode status = WebPDecode(data, static_cast<std::size_t>(riff_end), &config);
    WebPFreeDecBuffer(&config.output);  // external memory: frees nothing of ours
    if (status != VP8_STATUS_OK) throw_webp_status(label, "cannot decode", status);
    return image;
}

}  // namespace detail

// Decodes a WebP held in memory to RGB or RGBA, refusing it from its header when it is over
// `limits` (pixels, memory budget); strict by default about bytes after the RIFF data.
inline image_buffer decode_webp(const std::uint8_t* data, std::size_t size, const decode_limits& limits = {}) {
    return detail::decode_webp_labelled("", data, size, limits);
}

inline image_buffer decode_webp_file(const std::string& path, const decode_limits& limits = {}) {
    const std::vector<std::uint8_t> bytes = read_file_bytes(path, limits.max_file_bytes);
    return detail::decode_webp_labelled("'" + path + "': ", bytes.data(), bytes.size(), limits);
}

// The row sources tile_file() uses for WebP input (whole-image decode).
struct webp_reader {
    static std::unique_ptr<row_source> open_file(const std::string& path, const decode_limits& limits = {}) {
        return std::make_unique<image_row_source>(decode_webp_file(path, limits));
    }
    static std::unique_ptr<row_source> open_memory(const std::uint8_t* data, std::size_t size,
                                                   const decode_limits& limits = {}) {
        return std::make_unique<image_row_source>(decode_webp(data, size, limits));
    }
};

TILEKIT_NAMESPACE_END
// #include <tilekit/webp/register.hpp>
// Puts the WebP part into the core's slots before main() runs, in every program with a TU that
// includes <tilekit/webp.hpp>: tile_file() then writes WebP tiles (tile_format::webp, through
// detail/webp_hook.hpp) and reads WebP images (the input reader registry, input_readers.hpp).

// #include <tilekit/detail/webp_hook.hpp>
// #include <tilekit/input_readers.hpp>
// #include <tilekit/webp/encoder.hpp>
// #include <tilekit/webp/reader.hpp>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

inline void webp_encode_entry(const image_view& tile, std::vector<std::uint8_t>& out, int quality, bool lossless,
                              int method) {
    // One encoder per thread and setting: building one validates libwebp's configuration.
    thread_local webp_options cached{-1, false, -1};
    thread_local std::unique_ptr<webp_encoder> encoder;
    if (!encoder || cached.quality != quality || cached.lossless != lossless || cached.method != method) {
        cached = webp_options{quality, lossless, method};
        encoder = std::make_unique<webp_encoder>(cached);
    }
    encoder->encode(tile, out);
}

inline const webp_entry* webp_part_entry() {
    static const webp_entry entry{&webp_encode_entry};
    return &entry;
}

inline const input_reader webp_input_reader{"webp", &webp_reader::open_file, &webp_reader::open_memory};

inline const bool webp_part_is_registered =
    (registered_webp().store(webp_part_entry(), std::memory_order_release), register_input_reader(&webp_input_reader));

}  // namespace detail
TILEKIT_NAMESPACE_END
