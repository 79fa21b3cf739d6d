#pragma once
// tilekit 0.1.0, single header <tilekit/fast_codecs.hpp>: the fast_codecs part.
// Streaming libpng / libjpeg decoders (the image is never held whole) and libdeflate PNG /
// libjpeg-turbo JPEG tile encoders. Including it makes them the default of tile_file()
// and tile_memory() in the whole program.
//
// Needs tilekit.hpp beside it (it includes it).
// Link (Debian: libdeflate-dev libturbojpeg0-dev libpng-dev libjpeg62-turbo-dev):
//   c++ -std=c++17 -I single_include app.cpp $(pkg-config --cflags --libs stb libdeflate libturbojpeg libpng libjpeg) -pthread
// An installed tilekit: `pkg-config tilekit-fast-codecs`, or CMake `tilekit::fast_codecs`.
//
//   #include <tilekit/fast_codecs.hpp>
//   tilekit::filesystem_sink sink("out");
//   tilekit::pyramid_options options;
//   options.format = tilekit::tile_format::jpeg;  // libjpeg-turbo tiles
//   tilekit::tile_file("huge.png", sink, options);  // streamed through libpng
//
// Generated from include/tilekit/fast_codecs.hpp by tools/amalgamate.py. Do not edit: change include/tilekit/
// and rerun the script.

#include "tilekit.hpp"

// tilekit's optional fast-codecs part: streaming PNG (libpng) and JPEG (libjpeg-turbo) decoders
// that never hold the whole image, and fast tile encoders (libdeflate PNG, libjpeg-turbo JPEG).
// Including it makes them the default of tile_file() and tile_memory(). Link
// `tilekit::fast_codecs` (CMake), `tilekit_fast_codecs_dep` (meson) or
// `pkg-config tilekit-fast-codecs` (Debian: libdeflate-dev libturbojpeg0-dev libpng-dev
// libjpeg62-turbo-dev). The core never includes this.

#if !__has_include(<libdeflate.h>) || !__has_include(<turbojpeg.h>) || !__has_include(<png.h>) || \
    !__has_include(<jpeglib.h>)
#error "tilekit/fast_codecs.hpp needs libdeflate, libjpeg-turbo, libpng and libjpeg (Debian: libdeflate-dev libturbojpeg0-dev libpng-dev libjpeg62-turbo-dev)"
#endif

// #include <tilekit/tilekit.hpp>
// #include <tilekit/fast_codecs/png_encoder.hpp>
// Lossless PNG tiles through tilekit's own PNG writer with libdeflate: about 7x faster than
// stb_image_write and 25% smaller on map-like images (README "Dependencies").

// #include <tilekit/detail/png_writer.hpp>
// #include <tilekit/error.hpp>
// #include <tilekit/image.hpp>
// #include <tilekit/png_filter.hpp>

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
// #include <tilekit/fast_codecs/jpeg_encoder.hpp>
// Baseline JPEG tiles through libjpeg-turbo's SIMD encoder.

// #include <tilekit/encode.hpp>
// #include <tilekit/error.hpp>
// #include <tilekit/image.hpp>

#include <turbojpeg.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

namespace detail {

struct turbojpeg_handle {
    tjhandle handle = nullptr;
    ~turbojpeg_handle() {
        if (handle) tjDestroy(handle);
    }
};

inline tjhandle thread_jpeg_compressor() {
    thread_local turbojpeg_handle compressor;
    if (!compressor.handle) {
        compressor.handle = tjInitCompress();
        if (!compressor.handle) throw error(errc::encode_failed, "cannot initialise libjpeg-turbo");
    }
    return compressor.handle;
}

}  // namespace detail

// Baseline JPEG through libjpeg-turbo; 4:2:0 chroma below quality 90, 4:4:4 from 90 up (as vips).
class turbojpeg_encoder {
public:
    explicit turbojpeg_encoder(int quality = 85) : quality_(detail::checked_jpeg_quality(quality)) {}
    std::string extension() const { return "jpg"; }
    std::string content_type() const { return "image/jpeg"; }
    bool supports_alpha() const noexcept { return false; }
    int quality() const noexcept { return quality_; }

    void encode(const image_view& tile, std::vector<std::uint8_t>& out) const {
        if (tile.channels != 1 && tile.channels != 3)
            throw error(errc::invalid_argument, "JPEG tiles must be gray or RGB, got " + std::to_string(tile.channels) + " channels");
        tjhandle handle = detail::thread_jpeg_compressor();
        unsigned char* buffer = nullptr;
        unsigned long size = 0;
        const int pixel_format = tile.channels == 1 ? TJPF_GRAY : TJPF_RGB;
        const int subsampling = tile.channels == 1 ? TJSAMP_GRAY : (quality_ >= 90 ? TJSAMP_444 : TJSAMP_420);
        const int status = tjCompress2(handle, tile.pixels, tile.width, static_cast<int>(tile.stride), tile.height,
                                       pixel_format, &buffer, &size, subsampling, quality_, 0);
        std::unique_ptr<unsigned char, void (*)(unsigned char*)> owned(buffer, tjFree);
        if (status != 0) throw error(errc::encode_failed, std::string("JPEG encoding failed (libjpeg-turbo): ") + tjGetErrorStr2(handle));
        out.assign(buffer, buffer + size);
    }

private:
    int quality_;
};

TILEKIT_NAMESPACE_END
// #include <tilekit/fast_codecs/png_reader.hpp>
// A streaming PNG decoder on libpng: a row source (row_source.hpp) that decodes one row per
// next_row(), so the whole image is never in memory. 16-bit becomes 8-bit (high byte), palette
// and low bit depths expand to 8 bits, tRNS becomes alpha. Interlaced files cannot be streamed
// (the last pass touches every row): libpng decodes them into one 8-bit buffer of the output
// size, the cheapest whole-image decode there is. Strict unless decode_limits::accept_damaged:
// CRC errors, missing or extra image data and libpng's other benign errors are errors.

// #include <tilekit/decode.hpp>
// #include <tilekit/error.hpp>
// #include <tilekit/fast_codecs/detail/encoded_input.hpp>
// Where a streaming decoder reads its file from: an open file or bytes in memory, with the name
// errors show ("'map.png'" or "image").

// #include <tilekit/error.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

struct file_closer {
    void operator()(std::FILE* file) const noexcept { std::fclose(file); }
};
using file_handle = std::unique_ptr<std::FILE, file_closer>;

inline file_handle open_for_reading(const std::string& path) {
    file_handle file(std::fopen(path.c_str(), "rb"));
    if (!file) throw error(errc::io_error, "cannot open '" + path + "': " + std::strerror(errno));
    // fopen succeeds on a directory on Linux, and the first read then looks like an empty file.
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
        throw error(errc::io_error, "cannot read '" + path + "': it is a directory");
    return file;
}

class encoded_input {
public:
    static encoded_input file(const std::string& path) {
        encoded_input input;
        input.file_ = open_for_reading(path);
        input.label_ = "'" + path + "': ";
        return input;
    }

    static encoded_input memory(const std::uint8_t* data, std::size_t size) {
        encoded_input input;
        input.data_ = data;
        input.size_ = size;
        return input;
    }

    std::FILE* stream() const noexcept { return file_.get(); }
    const std::uint8_t* data() const noexcept { return data_; }
    std::size_t size() const noexcept { return size_; }
    // Prefix for error messages: "'path': " for files, empty for memory.
    const std::string& label() const noexcept { return label_; }

    // Up to `size` bytes; fewer only at the end of the input.
    std::size_t read(std::uint8_t* out, std::size_t size) {
        if (file_) return std::fread(out, 1, size, file_.get());
        const std::size_t n = std::min(size, size_ - position_);
        if (n) std::memcpy(out, data_ + position_, n);
        position_ += n;
        return n;
    }

    bool at_end() const {
        if (file_) return std::feof(file_.get()) != 0;
        return position_ >= size_;
    }

private:
    file_handle file_;
    const std::uint8_t* data_ = nullptr;
    std::size_t size_ = 0;
    std::size_t position_ = 0;
    std::string label_;
};

}  // namespace detail
TILEKIT_NAMESPACE_END
// #include <tilekit/fast_codecs/detail/memory_budget.hpp>
// The decoding memory budget (decode_limits::max_memory_bytes): each streaming decoder estimates
// its cost from the header and refuses the file before allocating anything that size.

// #include <tilekit/error.hpp>

#include <cstdint>
#include <string>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

inline void refuse_over_budget(const std::string& label, const char* format, std::uint64_t estimate,
                               std::uint64_t budget) {
    if (estimate <= budget) return;
    throw error(errc::over_memory_budget, label + "decoding this " + format + " needs about " + std::to_string(estimate) +
                                              " bytes, over the memory budget of " + std::to_string(budget) +
                                              " bytes (decode_limits::max_memory_bytes)");
}

// a * b, saturating instead of wrapping (header fields are attacker-controlled).
inline std::uint64_t saturating_mul(std::uint64_t a, std::uint64_t b) noexcept {
    if (a != 0 && b > UINT64_MAX / a) return UINT64_MAX;
    return a * b;
}

inline std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept {
    return b > UINT64_MAX - a ? UINT64_MAX : a + b;
}

}  // namespace detail
TILEKIT_NAMESPACE_END
// #include <tilekit/row_source.hpp>

#include <algorithm>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <png.h>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

// libpng reports errors by longjmp. Each call into it goes through one of these small
// functions, which hold no C++ objects, so the jump skips no destructors.
struct png_failure {
    char message[256] = {0};
    char limit[128] = {0};  // libpng's warning when it refused the IHDR size (png_set_user_limits)
};

extern "C" inline void tilekit_png_error(png_structp png, png_const_charp message) {
    auto* failure = static_cast<png_failure*>(png_get_error_ptr(png));
    std::snprintf(failure->message, sizeof failure->message, "%s", message);
    png_longjmp(png, 1);
}

// Damage reaches libpng's error path (benign errors and CRC actions are set per strictness);
// what is left here is informational, except the user-limit warnings that precede the
// "Invalid IHDR data" error and say why it came.
extern "C" inline void tilekit_png_warning(png_structp png, png_const_charp message) {
    if (std::strstr(message, "exceeds user limit")) {
        auto* failure = static_cast<png_failure*>(png_get_error_ptr(png));
        std::snprintf(failure->limit, sizeof failure->limit, "%s", message);
    }
}

extern "C" inline void tilekit_png_read(png_structp png, png_bytep out, size_t size) {
    auto* input = static_cast<encoded_input*>(png_get_io_ptr(png));
    if (input->read(out, size) != size) png_error(png, "unexpected end of file");
}

inline bool png_read_header(png_structp png, png_infop info) {
    if (setjmp(png_jmpbuf(png))) return false;
    png_read_info(png, info);
    return true;
}

// png_read_update_info allocates libpng's row buffers: call it only once the budget is checked.
inline bool png_configure(png_structp png, png_infop info, bool interlaced) {
    if (setjmp(png_jmpbuf(png))) return false;
    png_set_expand(png);    // palette -> RGB, gray < 8 bits -> 8, tRNS -> alpha
    png_set_strip_16(png);  // 16-bit -> 8-bit (high byte, as stb)
    if (interlaced) png_set_interlace_handling(png);
    png_read_update_info(png, info);
    return true;
}

inline bool png_read_one_row(png_structp png, png_bytep row) {
    if (setjmp(png_jmpbuf(png))) return false;
    png_read_row(png, row, nullptr);
    return true;
}

inline bool png_read_whole(png_structp png, png_bytepp rows) {
    if (setjmp(png_jmpbuf(png))) return false;
    png_read_image(png, rows);
    return true;
}

// Reads what follows the image data: checks its CRCs and that the stream ends (IEND).
inline bool png_finish(png_structp png, png_infop info) {
    if (setjmp(png_jmpbuf(png))) return false;
    png_read_end(png, info);
    return true;
}

inline std::uint64_t png_row_bytes(std::uint64_t width, std::uint64_t bits_per_pixel) {
    return saturating_mul(width, bits_per_pixel) / 8 + 1;
}

// What libpng and this reader allocate for an image, from IHDR alone: libpng's two row buffers
// (one at the widest pixel its transforms pass through), the output row (or, interlaced, the
// whole output image and its row pointers), zlib's window and the IDAT buffer.
inline std::uint64_t png_decode_cost(std::uint64_t width, std::uint64_t height, int bit_depth, int channels_in,
                                     int channels_out, bool interlaced) {
    const std::uint64_t raw_bits = std::uint64_t(channels_in) * std::uint64_t(bit_depth);
    const std::uint64_t widest_bits = std::max<std::uint64_t>(raw_bits, std::uint64_t(channels_out) * (bit_depth > 8 ? 16 : 8));
    const std::uint64_t out_row = saturating_mul(width, std::uint64_t(channels_out));
    std::uint64_t cost = saturating_add(png_row_bytes(width + 8, widest_bits) + 48, png_row_bytes(width, raw_bits));
    cost = saturating_add(cost, std::uint64_t{64} << 10);
    if (!interlaced) return saturating_add(cost, out_row);
    return saturating_add(cost, saturating_add(saturating_mul(out_row, height), saturating_mul(height, sizeof(png_bytep))));
}

}  // namespace detail

class png_row_reader final : public row_source {
public:
    // Refuses images over `limits` (pixels, memory budget) from the header, before anything is
    // allocated for pixels. Never null.
    static std::unique_ptr<png_row_reader> open_file(const std::string& path, const decode_limits& limits = {}) {
        return open(detail::encoded_input::file(path), limits);
    }
    // The bytes must outlive the reader.
    static std::unique_ptr<png_row_reader> open_memory(const std::uint8_t* data, std::size_t size,
                                                      const decode_limits& limits = {}) {
        return open(detail::encoded_input::memory(data, size), limits);
    }

    ~png_row_reader() override { png_destroy_read_struct(&png_, &info_, nullptr); }

    int width() const override { return width_; }
    int height() const override { return height_; }
    int channels() const override { return channels_; }
    // True when the file is interlaced and so was decoded whole when it was opened.
    bool decoded_whole() const noexcept { return !whole_.empty(); }

    const std::uint8_t* next_row() override {
        if (next_ >= height_) throw error(errc::invalid_argument, "png_row_reader: read past the last row");
        const int y = next_++;
        if (!whole_.empty()) return whole_.data() + static_cast<std::size_t>(y) * row_.size();
        if (!detail::png_read_one_row(png_, row_.data())) fail("cannot decode");
        if (next_ == height_ && strict_ && !detail::png_finish(png_, info_)) fail("cannot decode");
        return row_.data();
    }

private:
    static std::unique_ptr<png_row_reader> open(detail::encoded_input input, const decode_limits& limits) {
        std::unique_ptr<png_row_reader> reader(new png_row_reader(std::move(input), limits));
        png_structp png = reader->png_;
        png_infop info = reader->info_;
        if (!detail::png_read_header(png, info)) reader->fail("cannot read header");
        const std::uint64_t width = png_get_image_width(png, info), height = png_get_image_height(png, info);
        try {
            detail::refuse_over_limit(width, height, limits);
        } catch (const error& e) {
            throw error(e.code(), reader->input_.label() + e.what());
        }
        const bool interlaced = png_get_interlace_type(png, info) != PNG_INTERLACE_NONE;
        const int color = png_get_color_type(png, info);
        const bool trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
        int channels_out = 4;
        if (color == PNG_COLOR_TYPE_GRAY) channels_out = trns ? 2 : 1;
        else if (color == PNG_COLOR_TYPE_GRAY_ALPHA) channels_out = 2;
        else if (color == PNG_COLOR_TYPE_RGB || color == PNG_COLOR_TYPE_PALETTE) channels_out = trns ? 4 : 3;
        detail::refuse_over_budget(reader->input_.label(), interlaced ? "interlaced PNG" : "PNG",
                                   detail::png_decode_cost(width, height, png_get_bit_depth(png, info),
                                                           png_get_channels(png, info), channels_out, interlaced),
                                   limits.max_memory_bytes);
        if (!detail::png_configure(png, info, interlaced)) reader->fail("cannot decode");
        reader->width_ = static_cast<int>(width);
        reader->height_ = static_cast<int>(height);
        reader->channels_ = png_get_channels(png, info);
        reader->row_.resize(png_get_rowbytes(png, info));
        if (interlaced) reader->read_whole();
        return reader;
    }

    png_row_reader(detail::encoded_input input, const decode_limits& limits)
        : input_(std::move(input)), strict_(!limits.accept_damaged) {
        png_ = png_create_read_struct(PNG_LIBPNG_VER_STRING, &failure_, detail::tilekit_png_error,
                                      detail::tilekit_png_warning);
        if (png_) info_ = png_create_info_struct(png_);
        if (!png_ || !info_) {
            png_destroy_read_struct(&png_, &info_, nullptr);
            throw std::bad_alloc();
        }
        // libpng refuses sides over tilekit's pixel limit itself, before it stores IHDR.
        const png_uint_32 side = static_cast<png_uint_32>(std::clamp<std::uint64_t>(limits.max_pixels, 1, PNG_UINT_31_MAX));
        png_set_user_limits(png_, side, side);
        // No ancillary chunk but tRNS matters to tilekit: skip them (their CRCs are still
        // checked) rather than parse them, and bound what any one chunk may allocate.
        png_set_keep_unknown_chunks(png_, PNG_HANDLE_CHUNK_NEVER, nullptr, -1);
        png_set_chunk_malloc_max(png_, static_cast<png_alloc_size_t>(std::clamp<std::uint64_t>(
                                           limits.max_memory_bytes, std::uint64_t{64} << 10, std::uint64_t{8} << 20)));
        if (strict_) {
            png_set_benign_errors(png_, 0);  // "Too much image data", "Extra compressed data", ...
            png_set_crc_action(png_, PNG_CRC_ERROR_QUIT, PNG_CRC_ERROR_QUIT);
        } else {
            png_set_benign_errors(png_, 1);
            png_set_crc_action(png_, PNG_CRC_WARN_USE, PNG_CRC_WARN_DISCARD);
        }
        png_set_read_fn(png_, &input_, detail::tilekit_png_read);
    }

    // Interlaced: every pass into one buffer of the output size (row_ holds the row size).
    void read_whole() {
        whole_.resize(row_.size() * static_cast<std::size_t>(height_));
        std::vector<png_bytep> rows(static_cast<std::size_t>(height_));
        for (std::size_t y = 0; y < rows.size(); ++y) rows[y] = whole_.data() + y * row_.size();
        if (!detail::png_read_whole(png_, rows.data())) fail("cannot decode");
        if (strict_ && !detail::png_finish(png_, info_)) fail("cannot decode");
    }

    [[noreturn]] void fail(const char* what) const {
        if (failure_.limit[0])
            throw error(errc::image_too_large, input_.label() + "PNG header: " + failure_.limit +
                                                   " (a side is over the pixel limit)");
        const bool truncated = input_.at_end() || std::strstr(failure_.message, "Not enough image data") != nullptr;
        throw error(truncated ? errc::truncated_image : errc::corrupt_image,
                    input_.label() + what + " PNG" + (truncated ? " (file is truncated)" : "") + ": " + failure_.message);
    }

    detail::encoded_input input_;
    bool strict_;
    detail::png_failure failure_;
    png_structp png_ = nullptr;
    png_infop info_ = nullptr;
    int width_ = 0, height_ = 0, channels_ = 0;
    int next_ = 0;
    std::vector<std::uint8_t> row_;
    std::vector<std::uint8_t> whole_;  // interlaced files only
};

TILEKIT_NAMESPACE_END
// #include <tilekit/fast_codecs/jpeg_reader.hpp>
// A streaming JPEG decoder on libjpeg(-turbo): a row source (row_source.hpp) that decodes one
// row per next_row(). Gray, YCbCr/RGB and CMYK/YCCK files (converted to RGB here, libjpeg does
// not) are all read by libjpeg. Progressive and multi-scan files cost libjpeg a coefficient
// buffer for the whole image: that cost is estimated from the header and held to the memory
// budget. Strict unless decode_limits::accept_damaged: libjpeg's corrupt-data warnings (it
// would pad with grey) are errors.

// #include <tilekit/decode.hpp>
// #include <tilekit/error.hpp>
// #include <tilekit/fast_codecs/detail/encoded_input.hpp>
// #include <tilekit/fast_codecs/detail/memory_budget.hpp>
// #include <tilekit/row_source.hpp>

#include <algorithm>
#include <climits>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

// jpeglib.h needs FILE and size_t declared first; jerror.h's message list depends on the
// configuration jpeglib.h brings (jconfig.h), so it comes second.
#include <jpeglib.h>
#include <jerror.h>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

// libjpeg reports errors by longjmp; as for libpng, every call goes through a small function
// that holds no C++ objects.
struct jpeg_failure {
    jpeg_error_mgr manager;
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX] = {0};
    bool truncated = false;
    bool over_budget = false;  // libjpeg's own allocation bound (mem->max_memory_to_use) was hit
    bool strict = true;
    bool created = false;  // jpeg_create_decompress ran, so jpeg_destroy_decompress must too
};

extern "C" inline void tilekit_jpeg_error_exit(j_common_ptr cinfo) {
    auto* failure = reinterpret_cast<jpeg_failure*>(cinfo->err);
    (*cinfo->err->format_message)(cinfo, failure->message);
    // Without backing store, libjpeg fails this way when its arrays exceed max_memory_to_use.
    if (cinfo->err->msg_code == JERR_NO_BACKING_STORE) failure->over_budget = true;
    std::longjmp(failure->jump, 1);
}

// The warnings (jerror.h JWRN_*) that mean the data is damaged; libjpeg recovers from them by
// padding with grey or skipping bytes. The others (unknown JFIF revision or Adobe transform,
// too many scanlines asked for) say nothing about the pixels.
inline bool jpeg_warning_is_damage(int code, bool& truncated) {
    switch (code) {
        case JWRN_JPEG_EOF:     // the file ends inside the image
        case JWRN_HIT_MARKER:   // "premature end of data segment": a marker came before the data ended
            truncated = true;
            return true;
        case JWRN_EXTRANEOUS_DATA:  // "N extraneous bytes before marker"
        case JWRN_HUFF_BAD_CODE:
#if JPEG_LIB_VERSION >= 70 || defined(C_ARITH_CODING_SUPPORTED) || defined(D_ARITH_CODING_SUPPORTED)
        case JWRN_ARITH_BAD_CODE:  // declared only when the library has arithmetic coding
#endif
        case JWRN_MUST_RESYNC:       // wrong or missing restart marker
        case JWRN_BOGUS_PROGRESSION:
        case JWRN_NOT_SEQUENTIAL:
            return true;
        default:
            return false;
    }
}

extern "C" inline void tilekit_jpeg_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return;  // trace messages
    auto* failure = reinterpret_cast<jpeg_failure*>(cinfo->err);
    bool truncated = false;
    if (failure->strict && jpeg_warning_is_damage(cinfo->err->msg_code, truncated)) {
        failure->truncated = truncated;
        tilekit_jpeg_error_exit(cinfo);
    }
    ++cinfo->err->num_warnings;
}

inline bool jpeg_begin(jpeg_decompress_struct* cinfo, encoded_input& input, jpeg_failure* failure,
                       std::uint64_t budget) {
    if (setjmp(failure->jump)) return false;
    jpeg_create_decompress(cinfo);
    failure->created = true;
    // libjpeg has no backing store here, so its large arrays fail rather than exceed this.
    cinfo->mem->max_memory_to_use = static_cast<long>(std::min<std::uint64_t>(budget, LONG_MAX));
    if (input.stream())
        jpeg_stdio_src(cinfo, input.stream());
    else
        jpeg_mem_src(cinfo, input.data(), static_cast<unsigned long>(input.size()));
    jpeg_read_header(cinfo, TRUE);
    return true;
}

inline bool jpeg_start(jpeg_decompress_struct* cinfo, jpeg_failure* failure, J_COLOR_SPACE out) {
    if (setjmp(failure->jump)) return false;
    cinfo->out_color_space = out;
    jpeg_start_decompress(cinfo);
    return true;
}

inline bool jpeg_read_one_row(jpeg_decompress_struct* cinfo, jpeg_failure* failure, JSAMPROW row) {
    if (setjmp(failure->jump)) return false;
    jpeg_read_scanlines(cinfo, &row, 1);
    return true;
}

// Reads to the EOI marker: extraneous bytes and a missing end are only seen there.
inline bool jpeg_finish(jpeg_decompress_struct* cinfo, jpeg_failure* failure) {
    if (setjmp(failure->jump)) return false;
    jpeg_finish_decompress(cinfo);
    return true;
}

inline std::uint64_t round_up(std::uint64_t value, std::uint64_t multiple) {
    return multiple ? (value + multiple - 1) / multiple * multiple : value;
}

// What decoding costs, from the frame header (valid after jpeg_read_header): per component,
// the sample rows of one iMCU row with context rows, and the upsampled rows; for progressive
// and multi-scan files every DCT coefficient of the image (64 JCOEFs per block); plus tables
// and the input buffer, and this reader's rows.
inline std::uint64_t jpeg_decode_cost(const jpeg_decompress_struct* cinfo, std::uint64_t own_rows) {
    const bool multiple_scans = cinfo->progressive_mode || cinfo->comps_in_scan < cinfo->num_components;
    std::uint64_t cost = saturating_add(std::uint64_t{64} << 10, own_rows);
    const std::uint64_t group_rows = std::uint64_t(cinfo->max_v_samp_factor) * DCTSIZE;
    for (int c = 0; c < cinfo->num_components; ++c) {
        const jpeg_component_info& comp = cinfo->comp_info[c];
        const std::uint64_t blocks_wide = round_up(comp.width_in_blocks, std::uint64_t(comp.h_samp_factor));
        const std::uint64_t blocks_high = round_up(comp.height_in_blocks, std::uint64_t(comp.v_samp_factor));
        cost = saturating_add(cost, blocks_wide * DCTSIZE * std::uint64_t(comp.v_samp_factor) * DCTSIZE * 3);
        cost = saturating_add(cost, saturating_mul(round_up(cinfo->image_width, 16), group_rows));
        if (multiple_scans)
            cost = saturating_add(cost, saturating_mul(saturating_mul(blocks_wide, blocks_high), DCTSIZE2 * sizeof(JCOEF)));
    }
    return cost;
}

// One pixel of 8-bit CMYK to RGB. Adobe writes CMYK inverted (0 = full ink), and so do the
// YCCK files libjpeg turns into CMYK; the product rounding is stb_image's.
inline std::uint8_t ink_product(unsigned a, unsigned b) noexcept {
    const unsigned t = a * b + 128;
    return static_cast<std::uint8_t>((t + (t >> 8)) >> 8);
}

inline void cmyk_to_rgb(const std::uint8_t* cmyk, std::uint8_t* rgb, std::size_t pixels, bool inverted) noexcept {
    const unsigned flip = inverted ? 0 : 255;
    for (std::size_t i = 0; i < pixels; ++i, cmyk += 4, rgb += 3) {
        const unsigned k = cmyk[3] ^ flip;
        rgb[0] = ink_product(cmyk[0] ^ flip, k);
        rgb[1] = ink_product(cmyk[1] ^ flip, k);
        rgb[2] = ink_product(cmyk[2] ^ flip, k);
    }
}

}  // namespace detail

class jpeg_row_reader final : public row_source {
public:
    // Refuses images over `limits` (pixels, memory budget) from the header, before anything is
    // allocated for pixels. Never null.
    static std::unique_ptr<jpeg_row_reader> open_file(const std::string& path, const decode_limits& limits = {}) {
        return open(detail::encoded_input::file(path), limits);
    }
    // The bytes must outlive the reader.
    static std::unique_ptr<jpeg_row_reader> open_memory(const std::uint8_t* data, std::size_t size,
                                                       const decode_limits& limits = {}) {
        return open(detail::encoded_input::memory(data, size), limits);
    }

    ~jpeg_row_reader() override {
        if (failure_.created) jpeg_destroy_decompress(&cinfo_);
    }

    int width() const override { return static_cast<int>(cinfo_.output_width); }
    int height() const override { return static_cast<int>(cinfo_.output_height); }
    int channels() const override { return channels_; }

    const std::uint8_t* next_row() override {
        if (next_ >= height()) throw error(errc::invalid_argument, "jpeg_row_reader: read past the last row");
        ++next_;
        if (!detail::jpeg_read_one_row(&cinfo_, &failure_, cmyk_.empty() ? row_.data() : cmyk_.data())) fail("cannot decode");
        if (!cmyk_.empty()) detail::cmyk_to_rgb(cmyk_.data(), row_.data(), cinfo_.output_width, cinfo_.saw_Adobe_marker != 0);
        if (next_ == height() && failure_.strict && !detail::jpeg_finish(&cinfo_, &failure_)) fail("cannot decode");
        return row_.data();
    }

private:
    static std::unique_ptr<jpeg_row_reader> open(detail::encoded_input input, const decode_limits& limits) {
        std::unique_ptr<jpeg_row_reader> reader(new jpeg_row_reader(std::move(input)));
        reader->failure_.strict = !limits.accept_damaged;
        jpeg_decompress_struct* cinfo = &reader->cinfo_;
        if (!detail::jpeg_begin(cinfo, reader->input_, &reader->failure_, limits.max_memory_bytes))
            reader->fail("cannot read header");
        try {
            detail::refuse_over_limit(cinfo->image_width, cinfo->image_height, limits);
        } catch (const error& e) {
            throw error(e.code(), reader->input_.label() + e.what());
        }
        J_COLOR_SPACE out = JCS_RGB;
        bool cmyk = false;
        switch (cinfo->jpeg_color_space) {
            case JCS_GRAYSCALE: out = JCS_GRAYSCALE; break;
            case JCS_YCbCr:
            case JCS_RGB: out = JCS_RGB; break;
            case JCS_CMYK:
            case JCS_YCCK: out = JCS_CMYK; cmyk = true; break;
            default:
                throw error(errc::corrupt_image, reader->input_.label() + "JPEG with " +
                                                     std::to_string(cinfo->num_components) +
                                                     " components in an unknown colour space is not supported");
        }
        const std::uint64_t width = cinfo->image_width;
        const std::uint64_t own_rows = width * (cmyk ? 3 + 4 : out == JCS_GRAYSCALE ? 1 : 3);
        const bool multiple_scans = cinfo->progressive_mode || cinfo->comps_in_scan < cinfo->num_components;
        detail::refuse_over_budget(reader->input_.label(), multiple_scans ? "progressive JPEG" : "JPEG",
                                   detail::jpeg_decode_cost(cinfo, own_rows), limits.max_memory_bytes);
        if (!detail::jpeg_start(cinfo, &reader->failure_, out)) reader->fail("cannot decode");
        reader->channels_ = cmyk ? 3 : cinfo->output_components;
        reader->row_.resize(static_cast<std::size_t>(cinfo->output_width) * static_cast<std::size_t>(reader->channels_));
        if (cmyk) reader->cmyk_.resize(static_cast<std::size_t>(cinfo->output_width) * 4);
        return reader;
    }

    explicit jpeg_row_reader(detail::encoded_input input) : input_(std::move(input)) {
        std::memset(&cinfo_, 0, sizeof cinfo_);
        cinfo_.err = jpeg_std_error(&failure_.manager);
        failure_.manager.error_exit = detail::tilekit_jpeg_error_exit;
        failure_.manager.emit_message = detail::tilekit_jpeg_message;
    }

    [[noreturn]] void fail(const char* what) const {
        if (failure_.over_budget)
            throw error(errc::over_memory_budget, input_.label() + what + " JPEG: libjpeg's arrays would exceed the memory budget (" +
                                                      failure_.message + ")");
        const bool truncated = failure_.truncated || (input_.stream() && input_.at_end());
        throw error(truncated ? errc::truncated_image : errc::corrupt_image,
                    input_.label() + what + " JPEG" + (truncated ? " (file is truncated)" : "") + ": " +
                        failure_.message);
    }

    detail::encoded_input input_;
    detail::jpeg_failure failure_;
    jpeg_decompress_struct cinfo_;
    int channels_ = 0;
    int next_ = 0;
    std::vector<std::uint8_t> row_;
    std::vector<std::uint8_t> cmyk_;  // CMYK/YCCK files: libjpeg's row before conversion
};

TILEKIT_NAMESPACE_END
// #include <tilekit/fast_codecs/codecs.hpp>
// The fast codec set (see tile_file.hpp): libpng/libjpeg decoders for every input (streaming
// but for interlaced PNG), libdeflate PNG and libjpeg-turbo JPEG encoders. Including this
// header makes it the default of tile_file() and tile_memory() in the whole program.

// #include <tilekit/decode.hpp>
// #include <tilekit/error.hpp>
// #include <tilekit/fast_codecs/detail/encoded_input.hpp>
// #include <tilekit/fast_codecs/jpeg_encoder.hpp>
// #include <tilekit/fast_codecs/jpeg_reader.hpp>
// #include <tilekit/fast_codecs/png_encoder.hpp>
// #include <tilekit/fast_codecs/png_reader.hpp>
// #include <tilekit/input_readers.hpp>
// #include <tilekit/row_source.hpp>
// #include <tilekit/tile_file.hpp>

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
