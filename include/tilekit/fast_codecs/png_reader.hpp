#pragma once
// A streaming PNG decoder on libpng: a row source (row_source.hpp) that decodes one row per
// next_row(), so the whole image is never in memory. 16-bit becomes 8-bit (high byte), palette
// and low bit depths expand to 8 bits, tRNS becomes alpha. Interlaced files are not streamed
// (open() returns null; the caller falls back to a whole-image decode).

#include <tilekit/decode.hpp>
#include <tilekit/error.hpp>
#include <tilekit/fast_codecs/detail/encoded_input.hpp>
#include <tilekit/row_source.hpp>

#include <csetjmp>
#include <cstdint>
#include <cstdio>
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
};

extern "C" inline void tilekit_png_error(png_structp png, png_const_charp message) {
    auto* failure = static_cast<png_failure*>(png_get_error_ptr(png));
    std::snprintf(failure->message, sizeof failure->message, "%s", message);
    png_longjmp(png, 1);
}

extern "C" inline void tilekit_png_warning(png_structp, png_const_charp) {}

extern "C" inline void tilekit_png_read(png_structp png, png_bytep out, size_t size) {
    auto* input = static_cast<encoded_input*>(png_get_io_ptr(png));
    if (input->read(out, size) != size) png_error(png, "unexpected end of file");
}

inline bool png_read_header(png_structp png, png_infop info) {
    if (setjmp(png_jmpbuf(png))) return false;
    png_read_info(png, info);
    return true;
}

inline bool png_configure(png_structp png, png_infop info) {
    if (setjmp(png_jmpbuf(png))) return false;
    png_set_expand(png);    // palette -> RGB, gray < 8 bits -> 8, tRNS -> alpha
    png_set_strip_16(png);  // 16-bit -> 8-bit (high byte, as stb)
    png_read_update_info(png, info);
    return true;
}

inline bool png_read_one_row(png_structp png, png_bytep row) {
    if (setjmp(png_jmpbuf(png))) return false;
    png_read_row(png, row, nullptr);
    return true;
}

}  // namespace detail

class png_row_reader final : public row_source {
public:
    // Null when the file is a PNG this reader does not stream (interlaced). Refuses images over
    // `limits` from the header, before anything is allocated for pixels.
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

    const std::uint8_t* next_row() override {
        if (!detail::png_read_one_row(png_, row_.data())) fail("cannot decode");
        return row_.data();
    }

private:
    static std::unique_ptr<png_row_reader> open(detail::encoded_input input, const decode_limits& limits) {
        std::unique_ptr<png_row_reader> reader(new png_row_reader(std::move(input)));
        png_structp png = reader->png_;
        png_infop info = reader->info_;
        if (!detail::png_read_header(png, info)) reader->fail("cannot read header");
        const std::uint64_t width = png_get_image_width(png, info), height = png_get_image_height(png, info);
        try {
            detail::refuse_over_limit(width, height, limits);
        } catch (const error& e) {
            throw error(e.code(), reader->input_.label() + e.what());
        }
        if (png_get_interlace_type(png, info) != PNG_INTERLACE_NONE) return nullptr;
        if (!detail::png_configure(png, info)) reader->fail("cannot decode");
        reader->width_ = static_cast<int>(width);
        reader->height_ = static_cast<int>(height);
        reader->channels_ = png_get_channels(png, info);
        reader->row_.resize(png_get_rowbytes(png, info));
        return reader;
    }

    explicit png_row_reader(detail::encoded_input input) : input_(std::move(input)) {
        png_ = png_create_read_struct(PNG_LIBPNG_VER_STRING, &failure_, detail::tilekit_png_error,
                                      detail::tilekit_png_warning);
        if (png_) info_ = png_create_info_struct(png_);
        if (!png_ || !info_) {
            png_destroy_read_struct(&png_, &info_, nullptr);
            throw std::bad_alloc();
        }
        png_set_user_limits(png_, 0x7fffffff, 0x7fffffff);  // tilekit's own pixel limit applies instead
        png_set_read_fn(png_, &input_, detail::tilekit_png_read);
    }

    [[noreturn]] void fail(const char* what) const {
        const bool truncated = input_.at_end();
        throw error(truncated ? errc::truncated_image : errc::corrupt_image,
                    input_.label() + what + " PNG" + (truncated ? " (file is truncated)" : "") + ": " + failure_.message);
    }

    detail::encoded_input input_;
    detail::png_failure failure_;
    png_structp png_ = nullptr;
    png_infop info_ = nullptr;
    int width_ = 0, height_ = 0, channels_ = 0;
    std::vector<std::uint8_t> row_;
};

TILEKIT_NAMESPACE_END
