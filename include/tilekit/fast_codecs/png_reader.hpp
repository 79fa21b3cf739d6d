#pragma once
// A streaming PNG decoder on libpng: a row source (row_source.hpp) that decodes one row per
// next_row(), so the whole image is never in memory. 16-bit becomes 8-bit (high byte), palette
// and low bit depths expand to 8 bits, tRNS becomes alpha. Interlaced files cannot be streamed
// (the last pass touches every row): libpng decodes them into one 8-bit buffer of the output
// size, the cheapest whole-image decode there is. Strict unless decode_limits::accept_damaged:
// CRC errors, missing or extra image data and libpng's other benign errors are errors.

#include <tilekit/decode.hpp>
#include <tilekit/error.hpp>
#include <tilekit/fast_codecs/detail/encoded_input.hpp>
#include <tilekit/fast_codecs/detail/memory_budget.hpp>
#include <tilekit/row_source.hpp>

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
