#pragma once
// The encoder contract, and the core tile encoders: PNG through stb_image_write, JPEG through
// tilekit's own baseline writer (stb_image_write's JPEG writer shifts negative values, which is
// undefined behaviour, on every tile).
//
// An encoder is a value type (the tiler is templated on it, so encoding is not a virtual call):
//   std::string extension() const;        // file extension of the tiles: "png", "jpg"
//   std::string content_type() const;     // "image/png", "image/jpeg"
//   bool supports_alpha() const;          // false: the tiler flattens alpha onto the background
//                                         // and hands over gray or RGB tiles only
//   void encode(const image_view& tile, std::vector<std::uint8_t>& out) const;
//       // replaces `out` with the encoded tile; called from several threads at once on one
//       // encoder, so it must be thread-safe; throws tilekit::error(errc::encode_failed, or
//       // errc::invalid_argument for an image it cannot take)
// Faster encoders with the same shape live in <tilekit/fast_codecs.hpp>.

#include <tilekit/detail/jpeg_writer.hpp>
#include <tilekit/detail/stb.hpp>
#include <tilekit/error.hpp>
#include <tilekit/image.hpp>

#include <cstdint>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

namespace detail {
inline void append_to_vector(void* context, void* data, int size) {
    auto* out = static_cast<std::vector<std::uint8_t>*>(context);
    const auto* bytes = static_cast<const std::uint8_t*>(data);
    out->insert(out->end(), bytes, bytes + size);
}

// Every JPEG encoder takes the same quality range.
inline int checked_jpeg_quality(int quality) {
    if (quality < 1 || quality > 100)
        throw error(errc::invalid_argument, "JPEG quality must be 1..100, got " + std::to_string(quality));
    return quality;
}
}  // namespace detail

// Lossless PNG with stb's adaptive row filters and its built-in deflate.
class stb_png_encoder {
public:
    std::string extension() const { return "png"; }
    std::string content_type() const { return "image/png"; }
    bool supports_alpha() const noexcept { return true; }

    void encode(const image_view& tile, std::vector<std::uint8_t>& out) const {
        out.clear();
        if (!stbi_write_png_to_func(detail::append_to_vector, &out, tile.width, tile.height, tile.channels,
                                    tile.pixels, static_cast<int>(tile.stride)))
            throw error(errc::encode_failed, "PNG encoding failed (stb_image_write)");
    }
};

// Baseline JPEG written by tilekit itself (detail/jpeg_writer.hpp): JFIF, gray for 1 channel
// and YCbCr for 3, 4:2:0 chroma up to quality 90 and 4:4:4 above, Annex K Huffman tables.
// Alpha is flattened by the tiler before it gets here; called directly with 2 or 4 channels,
// the alpha channel is ignored. Rows may be any stride apart.
class baseline_jpeg_encoder {
public:
    explicit baseline_jpeg_encoder(int quality = 85) : quality_(detail::checked_jpeg_quality(quality)), writer_(quality_) {}
    std::string extension() const { return "jpg"; }
    std::string content_type() const { return "image/jpeg"; }
    bool supports_alpha() const noexcept { return false; }
    int quality() const noexcept { return quality_; }

    void encode(const image_view& tile, std::vector<std::uint8_t>& out) const { writer_.write(tile, out); }

private:
    int quality_;
    detail::jpeg_writer writer_;
};

TILEKIT_NAMESPACE_END
