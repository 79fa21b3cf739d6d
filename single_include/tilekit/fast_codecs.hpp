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
// and low bit depths expand to 8 bits, tRNS becomes alpha. Interlaced files are not streamed
// (open() returns null; the caller falls back to a whole-image decode).

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
// #include <tilekit/row_source.hpp>

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
// #include <tilekit/fast_codecs/jpeg_reader.hpp>
// A streaming JPEG decoder on libjpeg(-turbo): a row source (row_source.hpp) that decodes one
// row per next_row(). Gray and YCbCr/RGB files are streamed; CMYK/YCCK are not (open() returns
// null; the caller falls back to a whole-image decode). A truncated file is an error, not grey.

// #include <tilekit/decode.hpp>
// #include <tilekit/error.hpp>
// #include <tilekit/fast_codecs/detail/encoded_input.hpp>
// #include <tilekit/row_source.hpp>

#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

// jpeglib.h needs FILE and size_t declared first.
#include <jerror.h>
#include <jpeglib.h>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

// libjpeg reports errors by longjmp; as for libpng, every call goes through a small function
// that holds no C++ objects.
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

inline bool jpeg_begin(jpeg_decompress_struct* cinfo, encoded_input& input, jpeg_failure* failure) {
    if (setjmp(failure->jump)) return false;
    jpeg_create_decompress(cinfo);
    failure->created = true;
    if (input.stream())
        jpeg_stdio_src(cinfo, input.stream());
    else
        jpeg_mem_src(cinfo, input.data(), static_cast<unsigned long>(input.size()));
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

}  // namespace detail

class jpeg_row_reader final : public row_source {
public:
    // Null for JPEGs this reader does not stream (CMYK/YCCK). Refuses images over `limits` from
    // the header, before anything is allocated for pixels.
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
    int channels() const override { return cinfo_.output_components; }

    const std::uint8_t* next_row() override {
        if (!detail::jpeg_read_one_row(&cinfo_, &failure_, row_.data())) fail("cannot decode");
        return row_.data();
    }

private:
    static std::unique_ptr<jpeg_row_reader> open(detail::encoded_input input, const decode_limits& limits) {
        std::unique_ptr<jpeg_row_reader> reader(new jpeg_row_reader(std::move(input)));
        jpeg_decompress_struct* cinfo = &reader->cinfo_;
        if (!detail::jpeg_begin(cinfo, reader->input_, &reader->failure_)) reader->fail("cannot read header");
        try {
            detail::refuse_over_limit(cinfo->image_width, cinfo->image_height, limits);
        } catch (const error& e) {
            throw error(e.code(), reader->input_.label() + e.what());
        }
        if (cinfo->num_components != 1 && cinfo->num_components != 3) return nullptr;
        if (!detail::jpeg_start(cinfo, &reader->failure_)) reader->fail("cannot decode");
        reader->row_.resize(static_cast<std::size_t>(cinfo->output_width) * cinfo->output_components);
        return reader;
    }

    explicit jpeg_row_reader(detail::encoded_input input) : input_(std::move(input)) {
        std::memset(&cinfo_, 0, sizeof cinfo_);
        cinfo_.err = jpeg_std_error(&failure_.manager);
        failure_.manager.error_exit = detail::tilekit_jpeg_error_exit;
        failure_.manager.emit_message = detail::tilekit_jpeg_message;
    }

    [[noreturn]] void fail(const char* what) const {
        const bool truncated = failure_.truncated || (input_.stream() && input_.at_end());
        throw error(truncated ? errc::truncated_image : errc::corrupt_image,
                    input_.label() + what + " JPEG" + (truncated ? " (file is truncated)" : "") + ": " +
                        failure_.message);
    }

    detail::encoded_input input_;
    detail::jpeg_failure failure_;
    jpeg_decompress_struct cinfo_;
    std::vector<std::uint8_t> row_;
};

TILEKIT_NAMESPACE_END
// #include <tilekit/fast_codecs/codecs.hpp>
// The fast codec set (see tile_file.hpp): streaming libpng/libjpeg decoders with the stb
// whole-image decoder as the fallback for what they do not stream, libdeflate PNG and
// libjpeg-turbo JPEG encoders. Including this header makes it the default of tile_file() and
// tile_memory() in the whole program.

// #include <tilekit/decode.hpp>
// #include <tilekit/error.hpp>
// #include <tilekit/fast_codecs/detail/encoded_input.hpp>
// #include <tilekit/fast_codecs/jpeg_encoder.hpp>
// #include <tilekit/fast_codecs/jpeg_reader.hpp>
// #include <tilekit/fast_codecs/png_encoder.hpp>
// #include <tilekit/fast_codecs/png_reader.hpp>
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
