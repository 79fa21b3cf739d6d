#pragma once
// The fast codec set (see tile_file.hpp): streaming libpng/libjpeg decoders with the stb
// whole-image decoder as the fallback for what they do not stream, libdeflate PNG and
// libjpeg-turbo JPEG encoders. Including this header makes it the default of tile_file() and
// tile_memory() in the whole program.

#include <tilekit/decode.hpp>
#include <tilekit/error.hpp>
#include <tilekit/fast_codecs/detail/encoded_input.hpp>
#include <tilekit/fast_codecs/jpeg_encoder.hpp>
#include <tilekit/fast_codecs/jpeg_reader.hpp>
#include <tilekit/fast_codecs/png_encoder.hpp>
#include <tilekit/fast_codecs/png_reader.hpp>
#include <tilekit/row_source.hpp>
#include <tilekit/tile_file.hpp>

#include <cstdint>
#include <memory>
#include <string>

TILEKIT_NAMESPACE_BEGIN

struct fast_codecs {
    static constexpr const char* name() noexcept { return "fast"; }
    using png = libdeflate_png_encoder;
    using jpeg = turbojpeg_encoder;

    // Streams PNG and JPEG row by row; other files (and interlaced PNG, CMYK JPEG) are decoded
    // whole by stb. Images over `limits` are refused before decoding.
    static std::unique_ptr<row_source> open_file(const std::string& path, const decode_limits& limits = {}) {
        std::uint8_t magic[8] = {0};
        std::size_t got = 0;
        {
            detail::encoded_input probe = detail::encoded_input::file(path);
            got = probe.read(magic, sizeof magic);
        }
        if (got == 0) throw error(errc::empty_input, "'" + path + "': image is empty (0 bytes)");
        const std::string format = detail::describe_format(magic, got);
        if (format == "png") {
            if (auto reader = png_row_reader::open_file(path, limits)) return reader;
        } else if (format == "jpeg") {
            if (auto reader = jpeg_row_reader::open_file(path, limits)) return reader;
        }
        return std::make_unique<image_row_source>(decode_image_file(path, limits));
    }

    // The same for a file held in memory; the bytes must outlive the returned source.
    static std::unique_ptr<row_source> open_memory(const std::uint8_t* data, std::size_t size,
                                                   const decode_limits& limits = {}) {
        if (size == 0) throw error(errc::empty_input, "image is empty (0 bytes)");
        const std::string format = detail::describe_format(data, size);
        if (format == "png") {
            if (auto reader = png_row_reader::open_memory(data, size, limits)) return reader;
        } else if (format == "jpeg") {
            if (auto reader = jpeg_row_reader::open_memory(data, size, limits)) return reader;
        }
        return std::make_unique<image_row_source>(decode_image(data, size, limits));
    }
};

namespace detail {
// Makes fast_codecs the default of tile_file() before main() runs, in every program with a TU
// that includes this header (an inline variable: one initialisation per program).
inline const bool fast_codecs_are_default =
    (registered_codecs().store(codec_entry_of<fast_codecs>(), std::memory_order_release), true);
}  // namespace detail

TILEKIT_NAMESPACE_END
