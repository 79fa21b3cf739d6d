#pragma once
// WebP tiles through libwebp: lossy (VP8, with the alpha plane kept losslessly) at a quality
// 1..100, or lossless (VP8L, pixels kept exactly, colour under transparent pixels included).

#include <tilekit/error.hpp>
#include <tilekit/image.hpp>

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
