#pragma once
// WebP input through libwebp. WebP sides are at most 16383 px, so the whole image is decoded at
// once; the size is read from the header (WebPGetFeatures) and checked against the pixel limit
// and the memory budget before the output is allocated. Still and animated files are told
// apart: animations are refused. Lossy files decode to RGB (RGBA with an alpha plane), lossless
// ones the same way.

#include <tilekit/decode.hpp>
#include <tilekit/error.hpp>
#include <tilekit/image.hpp>
#include <tilekit/row_source.hpp>

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
