#pragma once
// Lossless PNG tiles through tilekit's own PNG writer with libdeflate: about 7x faster than
// stb_image_write and 25% smaller on map-like images (README "Dependencies").

#include <tilekit/detail/png_writer.hpp>
#include <tilekit/error.hpp>
#include <tilekit/image.hpp>
#include <tilekit/png_filter.hpp>

#include <libdeflate.h>

#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

namespace detail {


struct libdeflate_compressor_deleter {
    void operator()(libdeflate_compressor* compressor) const noexcept { libdeflate_free_compressor(compressor); }
};

// One compressor per thread and level: libdeflate compressors are not thread-safe, and
// allocating one per tile would cost more than compressing it.
inline libdeflate_compressor* thread_compressor(int level) {
    thread_local std::unique_ptr<libdeflate_compressor, libdeflate_compressor_deleter> compressors[13];
    auto& slot = compressors[level];
    if (!slot) {
        slot.reset(libdeflate_alloc_compressor(level));
        if (!slot) throw std::bad_alloc();
    }
    return slot.get();
}

}  // namespace detail

// Lossless PNG: one row filter (Up by default: on map-like images it compresses as well as
// adaptive filtering at half the cost) and libdeflate at a low level.
class libdeflate_png_encoder {
public:
    explicit libdeflate_png_encoder(int level = 2, png_filter filter = png_filter::up) : level_(level), filter_(filter) {
        if (level < 0 || level > 12)
            throw error(errc::invalid_argument, "libdeflate level must be 0..12, got " + std::to_string(level));
    }
    std::string extension() const { return "png"; }
    std::string content_type() const { return "image/png"; }
    bool supports_alpha() const noexcept { return true; }

    void encode(const image_view& tile, std::vector<std::uint8_t>& out) const {
        thread_local std::vector<std::uint8_t> scratch;
        libdeflate_compressor* compressor = detail::thread_compressor(level_);
        detail::write_png(
            tile, filter_,
            [compressor](const std::uint8_t* data, std::size_t size, std::vector<std::uint8_t>& dest) {
                const std::size_t at = dest.size();
                dest.resize(at + libdeflate_zlib_compress_bound(compressor, size));
                const std::size_t written = libdeflate_zlib_compress(compressor, data, size, dest.data() + at, dest.size() - at);
                if (written == 0) throw error(errc::encode_failed, "PNG compression failed (libdeflate)");
                dest.resize(at + written);
            },
            out, scratch);
    }

private:
    int level_;
    png_filter filter_;
};

TILEKIT_NAMESPACE_END
