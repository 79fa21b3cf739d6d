#pragma once
// tilekit 0.1.0: single-header distribution, generated from include/tilekit/streaming_decode.hpp
// by tools/amalgamate.py. Do not edit: change include/tilekit/ and rerun the script.

#include "tilekit.hpp"

// Streaming decoders: PNG through libpng and JPEG through libjpeg(-turbo), read row by row as
// the tiler asks for rows. No full-size buffer is ever allocated, so peak memory is the
// tiler's row bands plus the codecs' own state, and decoding overlaps tile encoding. Other
// formats (and interlaced PNG, CMYK JPEG) fall back to stb, which decodes the whole image.
// Part of the optional `tilekit::fast_codecs` target (links libpng and libjpeg).

#if !__has_include(<png.h>) || !__has_include(<jpeglib.h>)
#error "tilekit/streaming_decode.hpp needs libpng and libjpeg (Debian: libpng-dev libjpeg62-turbo-dev)"
#endif

// #include <tilekit/decode.hpp>
// #include <tilekit/error.hpp>
// #include <tilekit/image.hpp>
// #include <tilekit/tile_image.hpp>

#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <png.h>
// jpeglib.h needs FILE and size_t declared first.
#include <jerror.h>
#include <jpeglib.h>

TILEKIT_NAMESPACE_BEGIN

// A row source (see tiler.hpp) whose rows come from a decoder, usable through a base class.
class image_row_reader {
public:
    virtual ~image_row_reader() = default;
    virtual int width() const = 0;
    virtual int height() const = 0;
    virtual int channels() const = 0;
    virtual const std::uint8_t* next_row() = 0;  // throws tilekit::error on damaged data
};

namespace detail {

struct file_closer {
    void operator()(std::FILE* file) const noexcept { std::fclose(file); }
};
using file_handle = std::unique_ptr<std::FILE, file_closer>;

inline file_handle open_for_reading(const std::string& path) {
    file_handle file(std::fopen(path.c_str(), "rb"));
    if (!file) throw error(errc::io_error, "cannot open '" + path + "': " + std::strerror(errno));
    return file;
}

inline void check_pixel_limit(const std::string& path, std::uint64_t width, std::uint64_t height,
                              const decode_limits& limits) {
    if (width * height > limits.max_pixels)
        throw error(errc::image_too_large, "'" + path + "': image is " + size_text(width, height) + " = " +
                                               std::to_string(width * height) + " pixels, over the limit of " +
                                               std::to_string(limits.max_pixels) + " pixels");
}

// libpng and libjpeg report errors by longjmp. Each call into them goes through one of these
// small functions, which hold no C++ objects, so the jump skips no destructors.
struct png_failure {
    char message[256] = {0};
};

extern "C" inline void tilekit_png_error(png_structp png, png_const_charp message) {
    auto* failure = static_cast<png_failure*>(png_get_error_ptr(png));
    std::snprintf(failure->message, sizeof failure->message, "%s", message);
    png_longjmp(png, 1);
}

extern "C" inline void tilekit_png_warning(png_structp, png_const_charp) {}

inline bool png_read_header(png_structp png, png_infop info) {
    if (setjmp(png_jmpbuf(png))) return false;
    png_read_info(png, info);
    return true;
}

inline bool png_configure(png_structp png, png_infop info, int& passes) {
    if (setjmp(png_jmpbuf(png))) return false;
    png_set_expand(png);    // palette -> RGB, gray < 8 bits -> 8, tRNS -> alpha
    png_set_strip_16(png);  // 16-bit -> 8-bit (high byte, as stb)
    passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    return true;
}

inline bool png_read_one_row(png_structp png, png_bytep row) {
    if (setjmp(png_jmpbuf(png))) return false;
    png_read_row(png, row, nullptr);
    return true;
}

class png_row_reader final : public image_row_reader {
public:
    // Returns null when the file is a PNG this reader does not stream (interlaced).
    static std::unique_ptr<png_row_reader> open(const std::string& path, const decode_limits& limits) {
        std::unique_ptr<png_row_reader> reader(new png_row_reader(path));
        png_structp png = reader->png_;
        png_infop info = reader->info_;
        if (!png_read_header(png, info)) reader->fail("cannot read header");
        check_pixel_limit(path, png_get_image_width(png, info), png_get_image_height(png, info), limits);
        if (png_get_interlace_type(png, info) != PNG_INTERLACE_NONE) return nullptr;
        int passes = 1;
        if (!png_configure(png, info, passes)) reader->fail("cannot decode");
        reader->width_ = static_cast<int>(png_get_image_width(png, info));
        reader->height_ = static_cast<int>(png_get_image_height(png, info));
        reader->channels_ = png_get_channels(png, info);
        reader->row_.resize(png_get_rowbytes(png, info));
        return reader;
    }

    ~png_row_reader() override { png_destroy_read_struct(&png_, &info_, nullptr); }

    int width() const override { return width_; }
    int height() const override { return height_; }
    int channels() const override { return channels_; }

    const std::uint8_t* next_row() override {
        if (!png_read_one_row(png_, row_.data())) fail("cannot decode");
        return row_.data();
    }

private:
    explicit png_row_reader(const std::string& path) : path_(path), file_(open_for_reading(path)) {
        png_ = png_create_read_struct(PNG_LIBPNG_VER_STRING, &failure_, tilekit_png_error, tilekit_png_warning);
        if (png_) info_ = png_create_info_struct(png_);
        if (!png_ || !info_) throw std::bad_alloc();
        png_set_user_limits(png_, 0x7fffffff, 0x7fffffff);  // tilekit's own pixel limit applies instead
        png_init_io(png_, file_.get());
    }

    [[noreturn]] void fail(const char* what) const {
        const bool truncated = std::feof(file_.get()) != 0;
        throw error(truncated ? errc::truncated_image : errc::corrupt_image,
                    "'" + path_ + "': " + what + " PNG" + (truncated ? " (file is truncated)" : "") + ": " + failure_.message);
    }

    std::string path_;
    file_handle file_;
    png_failure failure_;
    png_structp png_ = nullptr;
    png_infop info_ = nullptr;
    int width_ = 0, height_ = 0, channels_ = 0;
    std::vector<std::uint8_t> row_;
};

struct jpeg_failure {
    jpeg_error_mgr manager;
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX] = {0};
    bool truncated = false;
    bool created = false;  // jpeg_create_decompress ran, so jpeg_destroy_decompress must too
};

extern "C" inline void tilekit_jpeg_error_exit(j_common_ptr cinfo) {
    auto* failure = reinterpret_cast<jpeg_failure*>(cinfo->err);
    (*cinfo->err->format_message)(cinfo, failure->message);
    std::longjmp(failure->jump, 1);
}

// libjpeg pads a truncated file with grey and only warns; tilekit treats that as an error.
extern "C" inline void tilekit_jpeg_message(j_common_ptr cinfo, int level) {
    if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) {
        auto* failure = reinterpret_cast<jpeg_failure*>(cinfo->err);
        failure->truncated = true;
        tilekit_jpeg_error_exit(cinfo);
    }
}

inline bool jpeg_begin(jpeg_decompress_struct* cinfo, std::FILE* file, jpeg_failure* failure) {
    if (setjmp(failure->jump)) return false;
    jpeg_create_decompress(cinfo);
    failure->created = true;
    jpeg_stdio_src(cinfo, file);
    jpeg_read_header(cinfo, TRUE);
    return true;
}

inline bool jpeg_start(jpeg_decompress_struct* cinfo, jpeg_failure* failure) {
    if (setjmp(failure->jump)) return false;
    cinfo->out_color_space = cinfo->num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(cinfo);
    return true;
}

inline bool jpeg_read_one_row(jpeg_decompress_struct* cinfo, jpeg_failure* failure, JSAMPROW row) {
    if (setjmp(failure->jump)) return false;
    jpeg_read_scanlines(cinfo, &row, 1);
    return true;
}

class jpeg_row_reader final : public image_row_reader {
public:
    // Returns null for JPEGs this reader does not stream (CMYK/YCCK).
    static std::unique_ptr<jpeg_row_reader> open(const std::string& path, const decode_limits& limits) {
        std::unique_ptr<jpeg_row_reader> reader(new jpeg_row_reader(path));
        jpeg_decompress_struct* cinfo = &reader->cinfo_;
        if (!jpeg_begin(cinfo, reader->file_.get(), &reader->failure_)) reader->fail("cannot read header");
        check_pixel_limit(path, cinfo->image_width, cinfo->image_height, limits);
        if (cinfo->num_components != 1 && cinfo->num_components != 3) return nullptr;
        if (!jpeg_start(cinfo, &reader->failure_)) reader->fail("cannot decode");
        reader->row_.resize(static_cast<std::size_t>(cinfo->output_width) * cinfo->output_components);
        return reader;
    }

    ~jpeg_row_reader() override {
        if (failure_.created) jpeg_destroy_decompress(&cinfo_);
    }

    int width() const override { return static_cast<int>(cinfo_.output_width); }
    int height() const override { return static_cast<int>(cinfo_.output_height); }
    int channels() const override { return cinfo_.output_components; }

    const std::uint8_t* next_row() override {
        if (!jpeg_read_one_row(&cinfo_, &failure_, row_.data())) fail("cannot decode");
        return row_.data();
    }

private:
    explicit jpeg_row_reader(const std::string& path) : path_(path), file_(open_for_reading(path)) {
        std::memset(&cinfo_, 0, sizeof cinfo_);
        cinfo_.err = jpeg_std_error(&failure_.manager);
        failure_.manager.error_exit = tilekit_jpeg_error_exit;
        failure_.manager.emit_message = tilekit_jpeg_message;
    }

    [[noreturn]] void fail(const char* what) const {
        const bool truncated = failure_.truncated || std::feof(file_.get()) != 0;
        throw error(truncated ? errc::truncated_image : errc::corrupt_image,
                    "'" + path_ + "': " + what + " JPEG" + (truncated ? " (file is truncated)" : "") + ": " + failure_.message);
    }

    std::string path_;
    file_handle file_;
    jpeg_failure failure_;
    jpeg_decompress_struct cinfo_;
    std::vector<std::uint8_t> row_;
};

// The stb fallback: decodes the whole image, then hands out its rows.
class buffered_row_reader final : public image_row_reader {
public:
    explicit buffered_row_reader(image_buffer image) : image_(std::move(image)) {}
    int width() const override { return image_.width(); }
    int height() const override { return image_.height(); }
    int channels() const override { return image_.channels(); }
    const std::uint8_t* next_row() override { return image_.row(next_++); }

private:
    image_buffer image_;
    int next_ = 0;
};

}  // namespace detail

// Opens an image file for row-by-row decoding, refusing images over `limits` before decoding.
inline std::unique_ptr<image_row_reader> open_image_file(const std::string& path, const decode_limits& limits = {}) {
    std::uint8_t magic[8] = {0};
    std::size_t got = 0;
    {
        detail::file_handle file = detail::open_for_reading(path);
        got = std::fread(magic, 1, sizeof magic, file.get());
    }
    if (got == 0) throw error(errc::empty_input, "'" + path + "': image is empty (0 bytes)");
    const std::string format = detail::describe_format(magic, got);
    if (format == "png") {
        if (auto reader = detail::png_row_reader::open(path, limits)) return reader;
    } else if (format == "jpeg") {
        if (auto reader = detail::jpeg_row_reader::open(path, limits)) return reader;
    }
    return std::make_unique<detail::buffered_row_reader>(decode_image_file(path, limits));
}

// Decodes `path` row by row while tiling it: the whole image is never held in memory.
template <class Codecs, class Sink>
pyramid_metadata tile_file(const std::string& path, Sink& sink, const pyramid_options& options,
                           const decode_limits& limits = {}) {
    const std::unique_ptr<image_row_reader> reader = open_image_file(path, limits);
    return tile_rows<Codecs>(*reader, sink, options);
}

TILEKIT_NAMESPACE_END
