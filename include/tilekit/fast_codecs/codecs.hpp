#pragma once
// The fast codec set (see tile_file.hpp): libpng/libjpeg decoders for every input (streaming
// but for interlaced PNG), libdeflate PNG and libjpeg-turbo JPEG encoders. Including this
// header makes it the default of tile_file() and tile_memory() in the whole program.

#include <tilekit/decode.hpp>
#include <tilekit/error.hpp>
#include <tilekit/fast_codecs/detail/encoded_input.hpp>
#include <tilekit/fast_codecs/jpeg_encoder.hpp>
#include <tilekit/fast_codecs/jpeg_reader.hpp>
#include <tilekit/fast_codecs/png_encoder.hpp>
#include <tilekit/fast_codecs/png_reader.hpp>
#include <tilekit/input_readers.hpp>
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

    // Every input goes to libpng or libjpeg, never to stb (whose decoders are not hardened):
    // PNG and JPEG only, sniffed from the content; anything else is not_an_image. Images over
    // `limits` (pixels, memory budget) are refused from the header, before decoding.
    static std::unique_ptr<row_source> open_file(const std::string& path, const decode_limits& limits = {}) {
        std::uint8_t magic[16] = {0};
        std::size_t got = 0;
        {
            detail::encoded_input probe = detail::encoded_input::file(path);
            got = probe.read(magic, sizeof magic);
        }
        if (got == 0) throw error(errc::empty_input, "'" + path + "': image is empty (0 bytes)");
        const std::string format = detail::describe_format(magic, got);
        // Formats of optional parts (TIFF: <tilekit/tiff.hpp>) go to their registered reader.
        if (const input_reader* reader = detail::input_reader_for(format, "'" + path + "': "))
            return reader->open_file(path, limits);
        if (format == "png") return png_row_reader::open_file(path, limits);
        return jpeg_row_reader::open_file(path, limits);
    }

    // The same for a file held in memory; the bytes must outlive the returned source.
    static std::unique_ptr<row_source> open_memory(const std::uint8_t* data, std::size_t size,
                                                   const decode_limits& limits = {}) {
        if (size == 0) throw error(errc::empty_input, "image is empty (0 bytes)");
        const std::string format = detail::describe_format(data, size);
        if (const input_reader* reader = detail::input_reader_for(format, "")) return reader->open_memory(data, size, limits);
        if (format == "png") return png_row_reader::open_memory(data, size, limits);
        return jpeg_row_reader::open_memory(data, size, limits);
    }
};

namespace detail {
// Makes fast_codecs the default of tile_file() before main() runs, in every program with a TU
// that includes this header (an inline variable: one initialisation per program).
inline const bool fast_codecs_are_default =
    (registered_codecs().store(codec_entry_of<fast_codecs>(), std::memory_order_release), true);
}  // namespace detail

TILEKIT_NAMESPACE_END
