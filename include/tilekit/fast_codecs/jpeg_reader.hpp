#pragma once
// A streaming JPEG decoder on libjpeg(-turbo): a row source (row_source.hpp) that decodes one
// row per next_row(). Gray and YCbCr/RGB files are streamed; CMYK/YCCK are not (open() returns
// null; the caller falls back to a whole-image decode). A truncated file is an error, not grey.

#include <tilekit/decode.hpp>
#include <tilekit/error.hpp>
#include <tilekit/fast_codecs/detail/encoded_input.hpp>
#include <tilekit/row_source.hpp>

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
