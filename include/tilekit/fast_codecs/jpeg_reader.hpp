#pragma once
// A streaming JPEG decoder on libjpeg(-turbo): a row source (row_source.hpp) that decodes one
// row per next_row(). Gray, YCbCr/RGB and CMYK/YCCK files (converted to RGB here, libjpeg does
// not) are all read by libjpeg. Progressive and multi-scan files cost libjpeg a coefficient
// buffer for the whole image: that cost is estimated from the header and held to the memory
// budget. Strict unless decode_limits::accept_damaged: libjpeg's corrupt-data warnings (it
// would pad with grey) are errors.

#include <tilekit/decode.hpp>
#include <tilekit/error.hpp>
#include <tilekit/fast_codecs/detail/encoded_input.hpp>
#include <tilekit/fast_codecs/detail/memory_budget.hpp>
#include <tilekit/row_source.hpp>

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
