#pragma once
// tilekit 0.1.0, single header <tilekit/tilekit.hpp>: the core.
// Tiles a large image into a Deep Zoom or XYZ pyramid and writes it to a sink (a directory,
// memory, or your own storage_sink). No job code. The optional parts are the other files
// here, each building on this one: fast_codecs.hpp, tiff.hpp, webp.hpp, s3.hpp, jobs.hpp,
// sqlite.hpp, postgresql.hpp.
//
// Link (Debian: libstb-dev nlohmann-json3-dev):
//   c++ -std=c++17 -I single_include app.cpp $(pkg-config --cflags --libs stb) -pthread
// An installed tilekit: `pkg-config tilekit`, or CMake `tilekit::tilekit`.
// Vendoring stb instead of linking libstb: #define TILEKIT_STB_IMPLEMENTATION in one .cpp.
//
//   #include <tilekit/tilekit.hpp>
//   tilekit::filesystem_sink sink("out");
//   tilekit::pyramid_options options;  // Deep Zoom, PNG tiles of 254 px, overlap 1
//   options.layout = tilekit::layout_type::xyz;
//   tilekit::pyramid_metadata m = tilekit::tile_file("map.png", sink, options);
//
// Generated from include/tilekit/tilekit.hpp by tools/amalgamate.py. Do not edit: change include/tilekit/
// and rerun the script.

// tilekit: turn a large image into a Deep Zoom or XYZ tile pyramid and publish it to storage.
// This umbrella header is the core: the standard library, stb and nlohmann_json, and no job
// code. Optional parts have their own folder, umbrella header and target (README "Architecture"):
// <tilekit/fast_codecs.hpp>, <tilekit/s3.hpp>, <tilekit/jobs.hpp>, <tilekit/sqlite.hpp>.

// #include <tilekit/version.hpp>
// The single source of truth for tilekit's version (CMake and meson read it from here).

#define TILEKIT_VERSION_MAJOR 0
#define TILEKIT_VERSION_MINOR 1
#define TILEKIT_VERSION_PATCH 0
#define TILEKIT_VERSION "0.1.0"
// #include <tilekit/config.hpp>
// Every TILEKIT_* macro a user may set, with its default, and the ones tilekit defines for all
// of its headers. A macro that only one header needs is defined and #undef'd inside it.
//
// Set by the user (before the first tilekit include):
//   TILEKIT_STB_IMPLEMENTATION   define in exactly one TU to compile stb_image and stb_image_write
//                                there (only when not linking a library that already has them,
//                                such as Debian's libstb: see README "How stb reaches the linker").
//   TILEKIT_NO_INCLUDE_STB       the caller has already included stb_image.h / stb_image_write.h.
//
// Defined by tilekit:
//   TILEKIT_VERSION_MAJOR/_MINOR/_PATCH, TILEKIT_VERSION   (version.hpp)
//   TILEKIT_NAMESPACE_BEGIN / TILEKIT_NAMESPACE_END        open and close tilekit's versioned
//                                                          namespace (used by every header)
//   TILEKIT_HAS_S3, TILEKIT_HAS_SQLITE                     set by the tilekit::s3 and
//                                                          tilekit::sqlite targets (and their .pc
//                                                          files) for application code that wants
//                                                          to #if on them; no tilekit header reads them
//
// No public type changes shape with any of these macros.

// #include <tilekit/version.hpp>

// Public names live in an inline namespace named after the full version (as nlohmann/json's ABI
// tag), so two different copies of tilekit linked into one program cannot silently merge:
// tilekit::image_buffer is tilekit::v0_1_0::image_buffer.
#define TILEKIT_ABI_TAG_CONCAT_EX(major, minor, patch) v##major##_##minor##_##patch
#define TILEKIT_ABI_TAG_CONCAT(major, minor, patch) TILEKIT_ABI_TAG_CONCAT_EX(major, minor, patch)
#define TILEKIT_ABI_NAMESPACE TILEKIT_ABI_TAG_CONCAT(TILEKIT_VERSION_MAJOR, TILEKIT_VERSION_MINOR, TILEKIT_VERSION_PATCH)
#define TILEKIT_NAMESPACE_BEGIN \
    namespace tilekit {         \
    inline namespace TILEKIT_ABI_NAMESPACE {
#define TILEKIT_NAMESPACE_END \
    }                         \
    }
// #include <tilekit/error.hpp>
// One exception type with a machine-readable code, so callers can both print and branch.

// #include <tilekit/config.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>

TILEKIT_NAMESPACE_BEGIN

enum class errc {
    invalid_argument,  // options out of range, bad sizes
    empty_input,       // zero bytes where an image was expected
    not_an_image,      // bytes are not PNG/JPEG/any format the decoder knows
    truncated_image,   // the file stops before the image ends
    corrupt_image,     // the image is damaged or unsupported
    image_too_large,   // over the configured pixel limit (checked before decoding)
    invalid_key,       // a storage key that is unsafe or malformed
    io_error,          // the filesystem refused
    storage_error,     // a storage sink failed to store an object
    cancelled,         // the caller cancelled the run
    access_denied,     // storage refused the credentials or the signature (never retried)
    not_found,         // no such bucket or object
    encode_failed,     // a tile encoder (PNG, JPEG) failed
    crypto_error,      // the cryptographic library (OpenSSL) failed: hashing, HMAC
    illegal_transition,  // a job state change the state machine forbids (completing a failed job, ...)
    not_a_draft,       // tiles may only be generated for a draft version
    duplicate_job,     // a queued or running job already exists for this project version
    over_memory_budget,  // decoding the image would need more memory than decode_limits allows
    lease_lost,        // a worker's lease on a job expired and the job was taken over or ended
    store_unavailable, // the job store could not be reached (a database down or restarting)
    store_refused,     // the job store refused this client for good: a wrong password, no such
                       // database or role, no privilege; retrying cannot help (never retried)
};

inline const char* to_string(errc code) noexcept {
    switch (code) {
        case errc::invalid_argument: return "invalid_argument";
        case errc::empty_input: return "empty_input";
        case errc::not_an_image: return "not_an_image";
        case errc::truncated_image: return "truncated_image";
        case errc::corrupt_image: return "corrupt_image";
        case errc::image_too_large: return "image_too_large";
        case errc::invalid_key: return "invalid_key";
        case errc::io_error: return "io_error";
        case errc::storage_error: return "storage_error";
        case errc::cancelled: return "cancelled";
        case errc::access_denied: return "access_denied";
        case errc::not_found: return "not_found";
        case errc::encode_failed: return "encode_failed";
        case errc::crypto_error: return "crypto_error";
        case errc::illegal_transition: return "illegal_transition";
        case errc::not_a_draft: return "not_a_draft";
        case errc::duplicate_job: return "duplicate_job";
        case errc::over_memory_budget: return "over_memory_budget";
        case errc::lease_lost: return "lease_lost";
        case errc::store_unavailable: return "store_unavailable";
        case errc::store_refused: return "store_refused";
    }
    return "unknown";
}

class error : public std::runtime_error {
public:
    error(errc code, const std::string& message) : std::runtime_error(message), code_(code) {}
    errc code() const noexcept { return code_; }

private:
    errc code_;
};

// Thrown when a run stops because its cancellation token was triggered.
class cancelled_error : public error {
public:
    cancelled_error() : error(errc::cancelled, "tiling was cancelled") {}
};

namespace detail {

// The one wording of every size limit: "<subject> is N <unit>, over the limit of M <unit>".
inline void refuse_over_limit(const std::string& subject, std::uint64_t size, std::uint64_t limit, const char* unit) {
    if (size > limit)
        throw error(errc::image_too_large, subject + " is " + std::to_string(size) + " " + unit + ", over the limit of " +
                                               std::to_string(limit) + " " + unit);
}

}  // namespace detail

TILEKIT_NAMESPACE_END
// #include <tilekit/image.hpp>
// Interleaved 8-bit images: 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels.

// #include <tilekit/error.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>

TILEKIT_NAMESPACE_BEGIN

// An 8-bit colour with alpha (background and padding colours); white and opaque by default.
struct rgba_color {
    std::uint8_t r = 255;
    std::uint8_t g = 255;
    std::uint8_t b = 255;
    std::uint8_t a = 255;
};

// A non-owning view of rows of pixels; rows are `stride` bytes apart.
struct image_view {
    const std::uint8_t* pixels = nullptr;
    int width = 0;
    int height = 0;
    int channels = 0;
    std::size_t stride = 0;

    const std::uint8_t* row(int y) const noexcept { return pixels + static_cast<std::size_t>(y) * stride; }
    bool has_alpha() const noexcept { return channels == 2 || channels == 4; }
};

// An owning, tightly packed image.
class image_buffer {
public:
    image_buffer() = default;
    using free_function = void (*)(void*);

    // A zero-filled image.
    image_buffer(int width, int height, int channels) : width_(width), height_(height), channels_(channels) {
        check_shape(width, height, channels);
        pixels_.reset(static_cast<std::uint8_t*>(std::calloc(byte_size(), 1)));
        if (!pixels_) throw std::bad_alloc();
    }

    // Takes ownership of `pixels` (tightly packed), released later with `release`.
    static image_buffer adopt(std::uint8_t* pixels, int width, int height, int channels, free_function release) {
        image_buffer image;
        image.pixels_ = std::unique_ptr<std::uint8_t[], free_function>(pixels, release);
        check_shape(width, height, channels);
        image.width_ = width;
        image.height_ = height;
        image.channels_ = channels;
        return image;
    }

    int width() const noexcept { return width_; }
    int height() const noexcept { return height_; }
    int channels() const noexcept { return channels_; }
    std::size_t stride() const noexcept { return static_cast<std::size_t>(width_) * static_cast<std::size_t>(channels_); }
    std::uint8_t* data() noexcept { return pixels_.get(); }
    const std::uint8_t* data() const noexcept { return pixels_.get(); }
    std::uint8_t* row(int y) noexcept { return pixels_.get() + static_cast<std::size_t>(y) * stride(); }
    const std::uint8_t* row(int y) const noexcept { return pixels_.get() + static_cast<std::size_t>(y) * stride(); }
    bool empty() const noexcept { return !pixels_; }
    std::size_t byte_size() const noexcept { return stride() * static_cast<std::size_t>(height_); }

    image_view view() const noexcept { return image_view{pixels_.get(), width_, height_, channels_, stride()}; }
    operator image_view() const noexcept { return view(); }

private:
    int width_ = 0;
    int height_ = 0;
    int channels_ = 0;
    std::unique_ptr<std::uint8_t[], free_function> pixels_{nullptr, std::free};

    static void check_shape(int width, int height, int channels) {
        if (width <= 0 || height <= 0 || channels < 1 || channels > 4)
            throw error(errc::invalid_argument, "image_buffer: bad dimensions " + std::to_string(width) + "x" +
                                                    std::to_string(height) + "x" + std::to_string(channels));
    }
};

TILEKIT_NAMESPACE_END
// #include <tilekit/decode.hpp>
// Reading PNG and JPEG from a file or memory with stb_image, with the size and the memory cost
// checked before any large allocation, the whole file checked (detail/png_check.hpp,
// detail/jpeg_check.hpp) before stb sees it, and a typed error for every kind of bad input.

// #include <tilekit/detail/jpeg_check.hpp>
// A full structural check of a JPEG before stb_image sees it. stb trusts its input in ways a
// crafted file can exploit (a Huffman table with more than 256 codes writes past its arrays,
// a scan may use a table that was never defined and read uninitialised memory, a component
// without a scan leaves heap memory in the pixels, DC predictors overflow), and it pads damaged
// data with grey where libjpeg warns. So every marker segment is parsed and every entropy-coded
// segment is walked (Huffman symbols decoded, nothing transformed), with libjpeg's rules: what
// libjpeg refuses, or warns about as damage, is refused here, so that the header-only path and
// the fast codecs agree. Only what stb can then decode is let through: baseline, extended and
// progressive Huffman coding, 8-bit samples, 1, 3 or 4 components.

// #include <tilekit/error.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

namespace detail {

struct jpeg_huffman_table {
    bool defined = false;
    std::array<std::uint8_t, 17> count{};  // count[length], length 1..16
    std::array<std::uint8_t, 256> symbols{};
    int symbol_count = 0;
    // Canonical decoding: the largest code of each length (-1 when none) and the index of that
    // length's first symbol minus its first code.
    std::array<std::int32_t, 18> max_code{};
    std::array<std::int32_t, 17> offset{};
    // The first 8 bits of the stream: code length (0 when longer than 8) and symbol.
    std::array<std::uint8_t, 256> fast_length{};
    std::array<std::uint8_t, 256> fast_symbol{};
};

struct jpeg_component {
    int id = 0;
    int h = 1, v = 1;
    int quant_table = 0;
    std::uint64_t blocks_wide = 0, blocks_high = 0;  // the component's own blocks
    int dc_table = 0, ac_table = 0;                  // from the current scan
    std::int64_t dc_predictor = 0;
    int scans = 0;                      // sequential: scans that held this component
    bool dc_done = false;               // progressive: a first DC scan has run
    std::array<int, 64> coef_bits{};    // progressive: last Al per coefficient, -1 none yet
    std::vector<std::uint64_t> nonzero;  // progressive: one bit per coefficient per block
};

// Reads the entropy-coded bits of one scan. Past a marker it supplies zero bits (as libjpeg
// does) and counts them, so that running out of data is detected, never read out of bounds.
class jpeg_bit_reader {
public:
    jpeg_bit_reader(const std::uint8_t* data, std::size_t size, std::size_t pos) noexcept
        : data_(data), size_(size), pos_(pos) {}

    std::uint32_t peek(int n) {
        fill();
        return static_cast<std::uint32_t>(buffer_ >> (64 - n));
    }
    void skip(int n) noexcept {
        buffer_ <<= n;
        bits_ -= n;
    }
    std::uint32_t take(int n) {
        if (n == 0) return 0;
        const std::uint32_t value = peek(n);
        skip(n);
        return value;
    }
    // True when a bit past the end of the segment has been used: the data ran out.
    bool overran() const noexcept { return bits_ < fake_bits_; }

    // At a restart marker or the end of a scan: drops the padding bits of the current byte and
    // counts the whole bytes left before the marker (libjpeg's "extraneous bytes").
    std::uint64_t finish_segment() {
        std::uint64_t extraneous = bits_ > fake_bits_ ? static_cast<std::uint64_t>(bits_ - fake_bits_) / 8 : 0;
        buffer_ = 0;
        bits_ = fake_bits_ = 0;
        while (!at_marker_ && pos_ < size_) {  // the way libjpeg's next_marker skips to a marker
            if (data_[pos_] != 0xff) {
                ++extraneous;
                ++pos_;
                continue;
            }
            std::size_t p = pos_;
            while (p < size_ && data_[p] == 0xff) ++p;
            if (p >= size_) break;
            if (data_[p] == 0x00) {
                extraneous += 2;
                pos_ = p + 1;
                continue;
            }
            at_marker_ = true;
            pos_ = p - 1;
        }
        return extraneous;
    }
    // Where the marker that ended the segment starts (at its 0xFF), or size when the data ended.
    std::size_t marker_position() const noexcept { return at_marker_ ? pos_ : size_; }
    std::uint8_t marker() const noexcept { return at_marker_ ? data_[pos_ + 1] : 0; }
    void resume_after_marker() noexcept {  // past a restart marker, into the next interval
        pos_ += 2;
        at_marker_ = false;
    }

private:
    void fill() {
        while (bits_ <= 56) {
            std::uint8_t byte = 0;
            if (at_marker_ || pos_ >= size_) {
                fake_bits_ += 8;
            } else if ((byte = data_[pos_]) != 0xff) {
                ++pos_;
            } else {
                std::size_t p = pos_ + 1;
                while (p < size_ && data_[p] == 0xff) ++p;  // fill bytes before a marker
                if (p < size_ && data_[p] == 0x00) {
                    pos_ = p + 1;  // a stuffed 0xFF data byte
                } else {           // a marker, or the file ends
                    at_marker_ = p < size_;
                    pos_ = at_marker_ ? p - 1 : size_;
                    byte = 0;
                    fake_bits_ += 8;
                }
            }
            buffer_ |= std::uint64_t{byte} << (56 - bits_);
            bits_ += 8;
        }
    }

    const std::uint8_t* data_;
    std::size_t size_;
    std::size_t pos_;
    std::uint64_t buffer_ = 0;  // bits, most significant first
    int bits_ = 0;
    int fake_bits_ = 0;  // zero bits supplied past the end, at the end of the buffer
    bool at_marker_ = false;
};

class jpeg_checker {
public:
    jpeg_checker(const std::uint8_t* data, std::size_t size, bool strict) noexcept
        : data_(data), size_(size), strict_(strict) {}

    // Throws tilekit::error (corrupt_image, truncated_image) unless stb can be trusted with the
    // file. A file damaged only in its entropy data passes when strict is false.
    // header_only: stops after the frame header (what read_image_info needs), having checked
    // every table defined before it.
    void run(bool header_only = false) {
        if (size_ < 4 || data_[0] != 0xff || data_[1] != 0xd8) fail("it does not start with an SOI marker");
        std::size_t pos = 2;
        for (;;) {
            pos = next_marker(pos);
            if (pos >= size_) {  // lenient: the file ends without EOI, which libjpeg supplies
                ended_without_eoi_ = true;
                break;
            }
            const std::uint8_t marker = data_[pos + 1];
            pos += 2;
            if (marker == 0xd9) break;                        // EOI
            if (marker >= 0xd0 && marker <= 0xd7) continue;   // a stray RST: libjpeg skips it
            if (marker == 0xd8) fail("a second SOI marker");
            if (marker == 0x01) continue;                     // TEM, no length
            if (pos + 2 > size_) truncated("inside a marker segment");
            const std::size_t length = (std::size_t{data_[pos]} << 8) | data_[pos + 1];
            if (length < 2) fail("a marker segment with a length under 2");
            if (length > size_ - pos) truncated("inside a marker segment");
            const std::uint8_t* segment = data_ + pos + 2;
            const std::size_t segment_size = length - 2;
            pos += length;
            switch (marker) {
                case 0xc4: define_huffman_tables(segment, segment_size); break;
                case 0xdb: define_quantization_tables(segment, segment_size); break;
                case 0xdd:
                    if (segment_size != 2) fail("a DRI segment of the wrong length");
                    restart_interval_ = (unsigned{segment[0]} << 8) | segment[1];
                    break;
                case 0xda: pos = scan(segment, segment_size, pos); break;
                case 0xee:
                    if (segment_size >= 12 && std::memcmp(segment, "Adobe", 5) == 0) adobe_transform_ = segment[11];
                    break;
                case 0xdc: fail("a DNL marker (height defined after the data), which is not supported");
                default:
                    if (marker >= 0xc0 && marker <= 0xcf && marker != 0xc8 && marker != 0xcc) {
                        frame(marker, segment, segment_size);
                        if (header_only) return;
                    } else if ((marker < 0xe0 || marker > 0xef) && marker != 0xfe && marker != 0xcc) {
                        // not APPn, COM or DAC: libjpeg refuses markers it does not know
                        fail("an unknown marker 0xFF" + hex(marker));
                    }
                    break;
            }
        }
        if (!frame_seen_) fail("it has no frame header (SOF)");
        if (scans_ == 0) truncated("before its first scan");
        for (const jpeg_component& c : components_) {
            if (progressive_ && !c.dc_done) fail("component " + std::to_string(c.id) + " has no DC scan");
            if (!progressive_ && c.scans == 0) fail("component " + std::to_string(c.id) + " has no scan");
        }
        // stb and libjpeg disagree on a 4-component file without Adobe's marker (libjpeg: plain
        // CMYK; stb: YCbCr and an ignored fourth channel): refuse rather than guess.
        if (components_.size() == 4 && adobe_transform_ < 0)
            fail("it has 4 components (CMYK) but no Adobe APP14 marker naming their colour transform; "
                 "the fast codecs (libjpeg) read it");
    }

    bool progressive() const noexcept { return progressive_; }
    // Lenient only: the data stopped before EOI (stb needs one appended to decode what is there).
    bool ended_without_eoi() const noexcept { return ended_without_eoi_; }

private:
    [[noreturn]] void fail(const std::string& why) const {
        throw error(errc::corrupt_image, "jpeg image is damaged or unsupported: " + why);
    }
    [[noreturn]] void truncated(const std::string& where) const {
        throw error(errc::truncated_image, "jpeg image is truncated: the data ends " + where);
    }
    static std::string hex(std::uint8_t value) {
        const char* digits = "0123456789ABCDEF";
        return {digits[value >> 4], digits[value & 15]};
    }
    // Damage libjpeg recovers from with a warning: an error when strict.
    void damaged(const std::string& why, bool is_truncation = false) const {
        if (!strict_) return;
        if (is_truncation) truncated(why);
        fail(why);
    }

    // The position of the next marker's 0xFF at or after pos; bytes before it are damage. When
    // lenient, the end of the file stands for EOI (size is returned).
    std::size_t next_marker(std::size_t pos) const {
        std::size_t skipped = 0;
        for (;;) {
            while (pos < size_ && data_[pos] != 0xff) {
                ++pos;
                ++skipped;
            }
            std::size_t p = pos;
            while (p < size_ && data_[p] == 0xff) ++p;
            if (p >= size_) {
                if (!strict_ && frame_seen_ && scans_ > 0) return size_;
                truncated("before its EOI marker");
            }
            if (data_[p] != 0x00) {
                if (skipped) damaged(std::to_string(skipped) + " extraneous bytes before a marker");
                return p - 1;
            }
            skipped += 2;
            pos = p + 1;
        }
    }

    void define_huffman_tables(const std::uint8_t* p, std::size_t n) {
        while (n > 0) {
            if (n < 17) fail("a DHT segment of the wrong length");
            const int table_class = p[0] >> 4, id = p[0] & 15;
            if (table_class > 1 || id > 3) fail("a Huffman table with class " + std::to_string(table_class) +
                                                " and id " + std::to_string(id));
            jpeg_huffman_table& t = (table_class == 0 ? dc_tables_ : ac_tables_)[static_cast<std::size_t>(id)];
            t = jpeg_huffman_table{};
            int total = 0;
            for (int length = 1; length <= 16; ++length) {
                t.count[static_cast<std::size_t>(length)] = p[length];
                total += p[length];
            }
            if (total > 256) fail("a Huffman table with " + std::to_string(total) + " codes (at most 256)");
            if (n < 17 + static_cast<std::size_t>(total)) fail("a DHT segment of the wrong length");
            std::memcpy(t.symbols.data(), p + 17, static_cast<std::size_t>(total));
            t.symbol_count = total;
            build(t);
            t.defined = true;
            p += 17 + total;
            n -= 17 + static_cast<std::size_t>(total);
        }
    }

    // Canonical codes, refusing a table that is not a prefix code or uses an all-ones code
    // (libjpeg's rule; stb writes past its arrays on such tables).
    void build(jpeg_huffman_table& t) const {
        std::int32_t code = 0;
        int index = 0;
        t.max_code.fill(-1);
        for (int length = 1; length <= 16; ++length) {
            const int count = t.count[static_cast<std::size_t>(length)];
            t.offset[static_cast<std::size_t>(length)] = index - code;
            for (int i = 0; i < count; ++i, ++code, ++index) {
                if (code >= (std::int32_t{1} << length)) fail("a Huffman table whose codes do not fit their lengths");
                if (length <= 8) {
                    const int first = code << (8 - length), span = 1 << (8 - length);
                    for (int j = 0; j < span; ++j) {
                        t.fast_length[static_cast<std::size_t>(first + j)] = static_cast<std::uint8_t>(length);
                        t.fast_symbol[static_cast<std::size_t>(first + j)] = t.symbols[static_cast<std::size_t>(index)];
                    }
                }
            }
            if (count > 0) {
                if (code >= (std::int32_t{1} << length)) fail("a Huffman table whose codes do not fit their lengths");
                t.max_code[static_cast<std::size_t>(length)] = code - 1;
            }
            code <<= 1;
        }
        t.max_code[17] = 0x7fffffff;
    }

    void define_quantization_tables(const std::uint8_t* p, std::size_t n) {
        while (n > 0) {
            const int precision = p[0] >> 4, id = p[0] & 15;
            if (precision > 1 || id > 3) fail("a quantization table with precision " + std::to_string(precision) +
                                              " and id " + std::to_string(id));
            const std::size_t table_size = 1 + 64 * static_cast<std::size_t>(precision + 1);
            if (n < table_size) fail("a DQT segment of the wrong length");
            quant_defined_[static_cast<std::size_t>(id)] = true;
            p += table_size;
            n -= table_size;
        }
    }

    void frame(std::uint8_t marker, const std::uint8_t* p, std::size_t n) {
        if (frame_seen_) fail("a second frame header (SOF)");
        if (marker == 0xc3 || marker == 0xc7 || marker == 0xcb || marker == 0xcf)
            fail("lossless JPEG, which the core decoder (stb_image) does not read");
        if (marker >= 0xc9) fail("arithmetic coding, which the core decoder (stb_image) does not read; the fast codecs do");
        if (marker == 0xc5 || marker == 0xc6) fail("hierarchical JPEG, which is not supported");
        frame_seen_ = true;
        progressive_ = marker == 0xc2;
        if (n < 6) fail("a frame header of the wrong length");
        if (p[0] != 8) fail(std::to_string(p[0]) + "-bit samples (8-bit only)");
        height_ = (unsigned{p[1]} << 8) | p[2];
        width_ = (unsigned{p[3]} << 8) | p[4];
        if (height_ == 0 || width_ == 0) fail("a frame of size 0 (a DNL marker would give the height; not supported)");
        const int count = p[5];
        if (count != 1 && count != 3 && count != 4) fail(std::to_string(count) + " components (1, 3 or 4 are read)");
        if (n != 6 + 3 * static_cast<std::size_t>(count)) fail("a frame header of the wrong length");
        components_.resize(static_cast<std::size_t>(count));
        for (int i = 0; i < count; ++i) {
            jpeg_component& c = components_[static_cast<std::size_t>(i)];
            const std::uint8_t* q = p + 6 + 3 * i;
            c.id = q[0];
            c.h = q[1] >> 4;
            c.v = q[1] & 15;
            c.quant_table = q[2];
            if (c.h < 1 || c.h > 4 || c.v < 1 || c.v > 4) fail("a sampling factor outside 1..4");
            if (c.quant_table > 3) fail("a quantization table id over 3");
            for (int j = 0; j < i; ++j)
                if (components_[static_cast<std::size_t>(j)].id == c.id) fail("two components with the same id");
            max_h_ = std::max(max_h_, c.h);
            max_v_ = std::max(max_v_, c.v);
        }
        for (jpeg_component& c : components_) {
            if (max_h_ % c.h != 0 || max_v_ % c.v != 0) fail("sampling factors that are not integer ratios");
            const std::uint64_t w = (std::uint64_t{width_} * std::uint64_t(c.h) + std::uint64_t(max_h_) - 1) / std::uint64_t(max_h_);
            const std::uint64_t h = (std::uint64_t{height_} * std::uint64_t(c.v) + std::uint64_t(max_v_) - 1) / std::uint64_t(max_v_);
            c.blocks_wide = (w + 7) / 8;
            c.blocks_high = (h + 7) / 8;
            c.coef_bits.fill(-1);
        }
        mcus_wide_ = (std::uint64_t{width_} + 8 * std::uint64_t(max_h_) - 1) / (8 * std::uint64_t(max_h_));
        mcus_high_ = (std::uint64_t{height_} + 8 * std::uint64_t(max_v_) - 1) / (8 * std::uint64_t(max_v_));
    }

    // Parses a scan header, then walks its entropy-coded data; returns where the data ends.
    std::size_t scan(const std::uint8_t* p, std::size_t n, std::size_t data_pos) {
        if (!frame_seen_) fail("a scan before the frame header");
        if (n < 1) fail("a scan header of the wrong length");
        const int count = p[0];
        if (count < 1 || count > 4 || n != 4 + 2 * static_cast<std::size_t>(count))
            fail("a scan header of the wrong length or component count");
        std::vector<jpeg_component*> in_scan;
        int blocks_per_mcu = 0;
        for (int i = 0; i < count; ++i) {
            const int id = p[1 + 2 * i];
            jpeg_component* found = nullptr;
            for (jpeg_component& c : components_)
                if (c.id == id) found = &c;
            if (!found) fail("a scan naming component " + std::to_string(id) + ", which the frame does not have");
            for (const jpeg_component* c : in_scan)
                if (c == found) fail("a scan naming one component twice");
            found->dc_table = p[2 + 2 * i] >> 4;
            found->ac_table = p[2 + 2 * i] & 15;
            if (found->dc_table > 3 || found->ac_table > 3) fail("a scan naming a Huffman table id over 3");
            if (!quant_defined_[static_cast<std::size_t>(found->quant_table)])
                fail("quantization table " + std::to_string(found->quant_table) + " is used but never defined");
            in_scan.push_back(found);
            blocks_per_mcu += found->h * found->v;
        }
        if (count > 1 && blocks_per_mcu > 10) fail("an interleaved scan with more than 10 blocks per MCU");
        const std::uint8_t* tail = p + 1 + 2 * count;
        const int ss = tail[0], se = tail[1], ah = tail[2] >> 4, al = tail[2] & 15;
        ++scans_;
        if (progressive_) {
            if (ss > se || se > 63 || ah > 13 || al > 13) fail("invalid progressive scan parameters");
            if (ss == 0 && se != 0) fail("a progressive scan mixing DC and AC coefficients");
            if (ss > 0 && count != 1) fail("a progressive AC scan with more than one component");
            for (jpeg_component* c : in_scan) {
                if (ss > 0 && c->coef_bits[0] < 0) damaged("an AC scan before the DC scan of its component");
                for (int k = ss; k <= se; ++k) {
                    const int expected = std::max(c->coef_bits[static_cast<std::size_t>(k)], 0);
                    if (ah != expected) damaged("a scan that refines bits that were never sent");
                    c->coef_bits[static_cast<std::size_t>(k)] = al;
                }
                if (ss == 0 && ah == 0) c->dc_done = true;
                if (ss > 0 && c->nonzero.empty()) c->nonzero.assign(c->blocks_wide * c->blocks_high, 0);
            }
        } else {
            if (ss != 0 || se != 63 || ah != 0 || al != 0) damaged("a sequential scan with progressive parameters");
            for (jpeg_component* c : in_scan)
                if (++c->scans > 1) fail("a component with two sequential scans");
        }
        // Every table the scan's data needs must exist (stb would read uninitialised ones).
        const bool needs_dc = !progressive_ || (ss == 0 && ah == 0);
        const bool needs_ac = !progressive_ || ss > 0;
        for (const jpeg_component* c : in_scan) {
            if (needs_dc) require_table(dc_tables_[static_cast<std::size_t>(c->dc_table)], "DC", c->dc_table, true);
            if (needs_ac) require_table(ac_tables_[static_cast<std::size_t>(c->ac_table)], "AC", c->ac_table, false);
        }
        return walk(in_scan, data_pos, ss, se, ah);
    }

    void require_table(const jpeg_huffman_table& t, const char* kind, int id, bool dc) const {
        if (!t.defined) fail(std::string("a scan uses ") + kind + " Huffman table " + std::to_string(id) + ", which is never defined");
        if (dc)
            for (int i = 0; i < t.symbol_count; ++i)
                if (t.symbols[static_cast<std::size_t>(i)] > 15) fail("a DC Huffman table with a symbol over 15");
    }

    int decode(jpeg_bit_reader& bits, const jpeg_huffman_table& t) const {
        const std::uint32_t look = bits.peek(8);
        if (const int length = t.fast_length[look]) {
            bits.skip(length);
            return t.fast_symbol[look];
        }
        const std::uint32_t word = bits.peek(16);
        for (int length = 9; length <= 16; ++length) {
            const std::int32_t code = static_cast<std::int32_t>(word >> (16 - length));
            if (code <= t.max_code[static_cast<std::size_t>(length)]) {
                bits.skip(length);
                return t.symbols[static_cast<std::size_t>(code + t.offset[static_cast<std::size_t>(length)])];
            }
        }
        bits.skip(16);
        return -1;  // no such code
    }

    static std::int32_t extend(std::uint32_t value, int size) noexcept {
        if (size == 0) return 0;
        const std::int32_t v = static_cast<std::int32_t>(value);
        return v < (std::int32_t{1} << (size - 1)) ? v - (std::int32_t{1} << size) + 1 : v;
    }

    std::size_t walk(const std::vector<jpeg_component*>& in_scan, std::size_t pos, int ss, int se, int ah) {
        jpeg_bit_reader bits(data_, size_, pos);
        const bool single = in_scan.size() == 1;
        const std::uint64_t mcus_wide = single ? in_scan[0]->blocks_wide : mcus_wide_;
        const std::uint64_t mcus_high = single ? in_scan[0]->blocks_high : mcus_high_;
        const std::uint64_t total = mcus_wide * mcus_high;
        std::uint32_t eob_run = 0;
        unsigned next_restart = 0;
        bool bad_code = false;
        for (jpeg_component* c : in_scan) c->dc_predictor = 0;
        for (std::uint64_t mcu = 0; mcu < total; ++mcu) {
            if (restart_interval_ && mcu > 0 && mcu % restart_interval_ == 0) {
                if (bits.overran()) return premature_end(bits);
                if (bits.finish_segment() > 0) damaged("extraneous bytes before a restart marker");
                if (bits.marker() != 0xd0 + next_restart) {
                    damaged("a missing or wrong restart marker");
                    if (bits.marker() < 0xd0 || bits.marker() > 0xd7) return premature_end(bits);
                }
                bits.resume_after_marker();
                next_restart = (next_restart + 1) & 7;
                for (jpeg_component* c : in_scan) c->dc_predictor = 0;
                eob_run = 0;
            }
            const std::uint64_t mcu_x = mcu % mcus_wide, mcu_y = mcu / mcus_wide;
            for (jpeg_component* c : in_scan) {
                const int bw = single ? 1 : c->h, bh = single ? 1 : c->v;
                for (int by = 0; by < bh; ++by)
                    for (int bx = 0; bx < bw; ++bx) {
                        const std::uint64_t block_x = mcu_x * std::uint64_t(bw) + std::uint64_t(bx);
                        const std::uint64_t block_y = mcu_y * std::uint64_t(bh) + std::uint64_t(by);
                        // Interleaved MCUs cover padding blocks beyond the component's own.
                        std::uint64_t* nonzero = nullptr;
                        if (!c->nonzero.empty() && block_x < c->blocks_wide && block_y < c->blocks_high)
                            nonzero = &c->nonzero[block_y * c->blocks_wide + block_x];
                        if (!block(bits, *c, ss, se, ah, eob_run, nonzero)) bad_code = true;
                    }
            }
            if (bad_code) {
                damaged("an invalid Huffman code in the data");
                bad_code = false;
            }
            if (bits.overran()) return premature_end(bits);
        }
        if (bits.finish_segment() > 0) damaged("extraneous bytes after the last block of a scan");
        return bits.marker_position();
    }

    // libjpeg fills the rest of the image with grey and warns; stb does the same silently.
    std::size_t premature_end(jpeg_bit_reader& bits) const {
        damaged("before the image ends (the scan's data stops short of the blocks its header promises)", true);
        bits.finish_segment();
        return bits.marker_position();
    }

    bool block(jpeg_bit_reader& bits, jpeg_component& c, int ss, int se, int ah, std::uint32_t& eob_run,
               std::uint64_t* nonzero) const {
        if (!progressive_ || (ss == 0 && ah == 0)) {  // DC, first pass
            const int size = decode(bits, dc_tables_[static_cast<std::size_t>(c.dc_table)]);
            if (size < 0) return false;
            c.dc_predictor += extend(bits.take(size), size);
            // stb keeps the predictor in an int and multiplies it by the quantizer or 2^Al.
            if (c.dc_predictor > 32767 || c.dc_predictor < -32768) fail("a DC coefficient out of range");
            if (!progressive_) return sequential_ac(bits, c);
            return true;
        }
        if (ss == 0) {  // DC refinement: one bit
            bits.take(1);
            return true;
        }
        if (ah == 0) return first_ac(bits, c, ss, se, eob_run, nonzero);
        return refine_ac(bits, c, ss, se, eob_run, nonzero);
    }

    bool sequential_ac(jpeg_bit_reader& bits, const jpeg_component& c) const {
        const jpeg_huffman_table& t = ac_tables_[static_cast<std::size_t>(c.ac_table)];
        for (int k = 1; k < 64;) {
            const int rs = decode(bits, t);
            if (rs < 0) return false;
            const int run = rs >> 4, size = rs & 15;
            if (size == 0) {
                if (run != 15) break;  // end of block
                k += 16;
                continue;
            }
            bits.take(size);
            k += run + 1;
        }
        return true;
    }

    bool first_ac(jpeg_bit_reader& bits, const jpeg_component& c, int ss, int se, std::uint32_t& eob_run,
                  std::uint64_t* nonzero) const {
        if (eob_run > 0) {
            --eob_run;
            return true;
        }
        const jpeg_huffman_table& t = ac_tables_[static_cast<std::size_t>(c.ac_table)];
        for (int k = ss; k <= se; ++k) {
            const int rs = decode(bits, t);
            if (rs < 0) return false;
            const int run = rs >> 4, size = rs & 15;
            if (size == 0) {
                if (run < 15) {
                    eob_run = (std::uint32_t{1} << run) + bits.take(run) - 1;
                    break;
                }
                k += 15;
                continue;
            }
            k += run;
            bits.take(size);
            if (nonzero && k <= 63) *nonzero |= std::uint64_t{1} << k;
        }
        return true;
    }

    // Successive approximation of AC coefficients (ITU T.81 G.1.2.3): which bits are read
    // depends on which coefficients earlier scans made nonzero, hence the bitmap.
    bool refine_ac(jpeg_bit_reader& bits, const jpeg_component& c, int ss, int se, std::uint32_t& eob_run,
                   std::uint64_t* nonzero) const {
        std::uint64_t scratch = 0;
        std::uint64_t& nz = nonzero ? *nonzero : scratch;
        const auto is_nonzero = [&](int k) { return k <= 63 && ((nz >> k) & 1) != 0; };
        int k = ss;
        bool ok = true;
        if (eob_run == 0) {
            const jpeg_huffman_table& t = ac_tables_[static_cast<std::size_t>(c.ac_table)];
            for (; k <= se; ++k) {
                const int rs = decode(bits, t);
                if (rs < 0) return false;
                int run = rs >> 4;
                const int size = rs & 15;
                if (size != 0) {
                    if (size != 1) ok = false;  // libjpeg warns; stb refuses
                    bits.take(1);
                } else if (run != 15) {
                    eob_run = (std::uint32_t{1} << run) + bits.take(run);
                    break;
                }
                do {
                    if (is_nonzero(k)) {
                        bits.take(1);
                    } else if (--run < 0) {
                        break;
                    }
                    ++k;
                } while (k <= se);
                if (size != 0 && k <= 63) nz |= std::uint64_t{1} << k;
            }
        }
        if (eob_run > 0) {
            for (; k <= se; ++k)
                if (is_nonzero(k)) bits.take(1);
            --eob_run;
        }
        return ok;
    }

    const std::uint8_t* data_;
    std::size_t size_;
    bool strict_;
    bool frame_seen_ = false;
    bool progressive_ = false;
    unsigned width_ = 0, height_ = 0;
    int max_h_ = 1, max_v_ = 1;
    std::uint64_t mcus_wide_ = 0, mcus_high_ = 0;
    unsigned restart_interval_ = 0;
    int adobe_transform_ = -1;
    bool ended_without_eoi_ = false;
    int scans_ = 0;
    std::vector<jpeg_component> components_;
    std::array<jpeg_huffman_table, 4> dc_tables_{};
    std::array<jpeg_huffman_table, 4> ac_tables_{};
    std::array<bool, 4> quant_defined_{};
};

// Memory the check itself needs: for progressive files, one 64-bit word per block.
inline std::uint64_t jpeg_check_cost(std::uint64_t width, std::uint64_t height, int channels) noexcept {
    return (width / 8 + 2) * (height / 8 + 2) * 8 * std::uint64_t(channels);
}


}  // namespace detail

TILEKIT_NAMESPACE_END
// #include <tilekit/detail/png_check.hpp>
// A structural check of a PNG before stb_image sees it, with libpng's rules, so that the
// header-only path refuses what the fast codecs (libpng) refuse. stb checks no CRC and no
// Adler-32, accepts unknown critical chunks (Apple's CgBI among them), concatenates IDAT
// chunks wherever they are, and grows its inflate buffer up to 4 GiB for a small file whose
// data inflates without end. Here every chunk is walked, and the image data is inflated once
// into a buffer of exactly the size the header implies, so that neither too little nor too
// much data, nor a damaged stream, reaches stb.

// #include <tilekit/detail/png_writer.hpp>
// A small PNG writer: scanline filtering and the chunk container, with the deflate step
// supplied by the caller (libdeflate, zlib or stb), so compression can be swapped for speed.

// #include <tilekit/config.hpp>
// #include <tilekit/image.hpp>
// #include <tilekit/png_filter.hpp>
// PNG row filters, chosen per encoder (see libdeflate_png_encoder in <tilekit/fast_codecs.hpp>).

// #include <tilekit/config.hpp>

TILEKIT_NAMESPACE_BEGIN

// `adaptive` picks, per row, the filter with the smallest sum of absolute values (the heuristic
// libpng recommends); `up` compresses map-like images about as well at half the cost.
enum class png_filter { none = 0, sub = 1, up = 2, average = 3, paeth = 4, adaptive = 5 };

TILEKIT_NAMESPACE_END

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

namespace detail {

inline std::uint32_t crc32_update(std::uint32_t crc, const std::uint8_t* data, std::size_t size) noexcept {
    static const std::array<std::uint32_t, 256> table = [] {
        std::array<std::uint32_t, 256> t{};
        for (std::uint32_t n = 0; n < 256; ++n) {
            std::uint32_t c = n;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
            t[n] = c;
        }
        return t;
    }();
    crc = ~crc;
    for (std::size_t i = 0; i < size; ++i) crc = table[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

inline void put_be32(std::vector<std::uint8_t>& out, std::uint32_t value) {
    out.push_back(static_cast<std::uint8_t>(value >> 24));
    out.push_back(static_cast<std::uint8_t>(value >> 16));
    out.push_back(static_cast<std::uint8_t>(value >> 8));
    out.push_back(static_cast<std::uint8_t>(value));
}

// Appends a chunk whose data already sits at out[data_offset..]; fills in length and CRC.
inline void close_chunk(std::vector<std::uint8_t>& out, std::size_t header_offset) {
    const std::size_t data_size = out.size() - header_offset - 8;
    const auto length = static_cast<std::uint32_t>(data_size);
    out[header_offset] = static_cast<std::uint8_t>(length >> 24);
    out[header_offset + 1] = static_cast<std::uint8_t>(length >> 16);
    out[header_offset + 2] = static_cast<std::uint8_t>(length >> 8);
    out[header_offset + 3] = static_cast<std::uint8_t>(length);
    put_be32(out, crc32_update(0, out.data() + header_offset + 4, data_size + 4));
}

inline std::size_t open_chunk(std::vector<std::uint8_t>& out, const char type[4]) {
    const std::size_t header = out.size();
    put_be32(out, 0);
    out.insert(out.end(), type, type + 4);
    return header;
}

inline std::uint8_t paeth_predictor(int a, int b, int c) noexcept {
    const int p = a + b - c;
    const int pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
    if (pa <= pb && pa <= pc) return static_cast<std::uint8_t>(a);
    return static_cast<std::uint8_t>(pb <= pc ? b : c);
}

// Filters one row into out[0] = filter type, out[1..] = filtered bytes. `prior` is the row
// above (all zeros for the first row); bpp is bytes per pixel.
inline void filter_row(png_filter filter, const std::uint8_t* row, const std::uint8_t* prior, std::size_t length, int bpp,
                       std::uint8_t* out) noexcept {
    out[0] = static_cast<std::uint8_t>(filter);
    std::uint8_t* f = out + 1;
    const std::size_t step = static_cast<std::size_t>(bpp);
    switch (filter) {
        case png_filter::sub:
            for (std::size_t i = 0; i < step && i < length; ++i) f[i] = row[i];
            for (std::size_t i = step; i < length; ++i) f[i] = static_cast<std::uint8_t>(row[i] - row[i - step]);
            break;
        case png_filter::up:
            for (std::size_t i = 0; i < length; ++i) f[i] = static_cast<std::uint8_t>(row[i] - prior[i]);
            break;
        case png_filter::average:
            for (std::size_t i = 0; i < step && i < length; ++i) f[i] = static_cast<std::uint8_t>(row[i] - (prior[i] >> 1));
            for (std::size_t i = step; i < length; ++i)
                f[i] = static_cast<std::uint8_t>(row[i] - ((unsigned{row[i - step]} + prior[i]) >> 1));
            break;
        case png_filter::paeth:
            for (std::size_t i = 0; i < step && i < length; ++i) f[i] = static_cast<std::uint8_t>(row[i] - prior[i]);
            for (std::size_t i = step; i < length; ++i)
                f[i] = static_cast<std::uint8_t>(row[i] - paeth_predictor(row[i - step], prior[i], prior[i - step]));
            break;
        default:
            std::memcpy(f, row, length);
            break;
    }
}

inline std::uint64_t filtered_cost(const std::uint8_t* filtered, std::size_t length) noexcept {
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < length; ++i) {
        const auto v = static_cast<std::int8_t>(filtered[i]);
        sum += static_cast<std::uint64_t>(v < 0 ? -v : v);
    }
    return sum;
}

// The filtered scanlines of an image: the bytes a PNG's zlib stream compresses.
inline void filter_image(const image_view& image, png_filter filter, std::vector<std::uint8_t>& out) {
    const std::size_t length = static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.channels);
    out.resize((length + 1) * static_cast<std::size_t>(image.height));
    std::vector<std::uint8_t> zeros(length, 0);
    std::vector<std::uint8_t> candidate(filter == png_filter::adaptive ? length + 1 : 0);
    for (int y = 0; y < image.height; ++y) {
        const std::uint8_t* row = image.row(y);
        const std::uint8_t* prior = y ? image.row(y - 1) : zeros.data();
        std::uint8_t* dest = out.data() + (length + 1) * static_cast<std::size_t>(y);
        if (filter != png_filter::adaptive) {
            filter_row(filter, row, prior, length, image.channels, dest);
            continue;
        }
        std::uint64_t best = ~std::uint64_t{0};
        for (int f = 0; f <= 4; ++f) {
            filter_row(static_cast<png_filter>(f), row, prior, length, image.channels, candidate.data());
            const std::uint64_t cost = filtered_cost(candidate.data() + 1, length);
            if (cost < best) {
                best = cost;
                std::memcpy(dest, candidate.data(), length + 1);
            }
        }
    }
}

// Writes a PNG; `compress(const uint8_t* data, size_t size, std::vector<uint8_t>& out)`
// must append a zlib stream (RFC 1950) of the data to out.
template <class Compress>
void write_png(const image_view& image, png_filter filter, Compress&& compress, std::vector<std::uint8_t>& out,
               std::vector<std::uint8_t>& scratch) {
    static const std::uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static const std::uint8_t color_types[5] = {0, 0, 4, 2, 6};  // by channel count
    out.clear();
    out.insert(out.end(), signature, signature + 8);
    std::size_t chunk = open_chunk(out, "IHDR");
    put_be32(out, static_cast<std::uint32_t>(image.width));
    put_be32(out, static_cast<std::uint32_t>(image.height));
    const std::uint8_t header_tail[5] = {8, color_types[image.channels], 0, 0, 0};
    out.insert(out.end(), header_tail, header_tail + 5);
    close_chunk(out, chunk);

    filter_image(image, filter, scratch);
    chunk = open_chunk(out, "IDAT");
    compress(scratch.data(), scratch.size(), out);
    close_chunk(out, chunk);

    chunk = open_chunk(out, "IEND");
    close_chunk(out, chunk);
}

}  // namespace detail
TILEKIT_NAMESPACE_END
// #include <tilekit/detail/stb.hpp>
// Brings in stb_image and stb_image_write declarations, and their implementations in the one
// TU that defines TILEKIT_STB_IMPLEMENTATION. Debian's libstb already contains them, so the
// CMake and meson targets link it and nobody needs to define anything.

#ifndef TILEKIT_NO_INCLUDE_STB
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#endif
#ifdef TILEKIT_STB_IMPLEMENTATION
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_WRITE_IMPLEMENTATION
#endif
#if __has_include(<stb_image.h>)
#include <stb_image.h>
#include <stb_image_write.h>
#else
#include <stb/stb_image.h>
#include <stb/stb_image_write.h>
#endif
#ifdef TILEKIT_STB_IMPLEMENTATION
#undef STB_IMAGE_IMPLEMENTATION
#undef STB_IMAGE_WRITE_IMPLEMENTATION
#endif
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#endif
// #include <tilekit/error.hpp>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

namespace detail {

inline std::uint32_t read_be32(const std::uint8_t* p) noexcept {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
}

struct png_chunk {
    const std::uint8_t* type;  // 4 bytes
    std::uint32_t length;
    const std::uint8_t* data;  // `length` bytes, then the 4-byte CRC
};

// Calls visit(chunk) for every complete chunk after the signature, in order, while it returns
// true; stops at the first chunk that does not fit in the data (truncation). Returns whether
// the walk stopped because visit said so (false: the data ran out).
template <class Visit>
bool for_each_png_chunk(const std::uint8_t* data, std::size_t size, Visit&& visit) {
    std::size_t pos = 8;
    while (pos + 12 <= size) {
        const std::uint32_t length = read_be32(data + pos);
        if (length > size - pos - 12) return false;
        if (!visit(png_chunk{data + pos + 4, length, data + pos + 8})) return true;
        pos += 12 + static_cast<std::size_t>(length);
    }
    return false;
}

// Bytes of filtered image data (each row with its filter byte) that the header implies,
// summed over the seven Adam7 passes when interlaced.
inline std::uint64_t png_filtered_size(std::uint64_t width, std::uint64_t height, unsigned bits_per_pixel, bool interlaced) {
    const auto rows = [&](std::uint64_t w, std::uint64_t h) -> std::uint64_t {
        if (w == 0 || h == 0) return 0;
        return h * (1 + (w * bits_per_pixel + 7) / 8);
    };
    if (!interlaced) return rows(width, height);
    static const unsigned x0[7] = {0, 4, 0, 2, 0, 1, 0}, y0[7] = {0, 0, 4, 0, 2, 0, 1};
    static const unsigned dx[7] = {8, 8, 4, 4, 2, 2, 1}, dy[7] = {8, 8, 8, 4, 4, 2, 2};
    std::uint64_t total = 0;
    for (int pass = 0; pass < 7; ++pass) {
        const std::uint64_t w = width > x0[pass] ? (width - x0[pass] + dx[pass] - 1) / dx[pass] : 0;
        const std::uint64_t h = height > y0[pass] ? (height - y0[pass] + dy[pass] - 1) / dy[pass] : 0;
        total += rows(w, h);
    }
    return total;
}

inline std::uint32_t adler32(const std::uint8_t* data, std::size_t size) noexcept {
    std::uint32_t a = 1, b = 0;
    while (size > 0) {
        const std::size_t n = size < 5552 ? size : 5552;  // the most bytes before b can overflow
        for (std::size_t i = 0; i < n; ++i) {
            a += data[i];
            b += a;
        }
        a %= 65521;
        b %= 65521;
        data += n;
        size -= n;
    }
    return (b << 16) | a;
}

class png_checker {
public:
    png_checker(const std::uint8_t* data, std::size_t size, bool strict) noexcept
        : data_(data), size_(size), strict_(strict) {}

    // Throws tilekit::error (corrupt_image, truncated_image) unless stb can be trusted with the
    // file. `filtered_budget` bounds the inflated data (the caller's memory budget).
    void run(std::uint64_t filtered_budget) {
        std::vector<std::uint8_t> compressed;
        int index = 0;
        bool ended = false, idat_closed = false;
        std::string problem;
        const bool stopped = for_each_png_chunk(data_, size_, [&](const png_chunk& chunk) {
            const std::string name(reinterpret_cast<const char*>(chunk.type), 4);
            for (const char c : name)
                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'))) fail("a chunk with an invalid name");
            const bool critical = (chunk.type[0] & 0x20) == 0;
            if (strict_ && crc32_update(0, chunk.type, std::size_t{chunk.length} + 4) != read_be32(chunk.data + chunk.length))
                fail("the CRC of its " + name + " chunk does not match");
            if (index++ == 0 && name != "IHDR") fail("its first chunk is " + name + ", not IHDR");
            if (name == "IHDR") {
                if (index != 1) fail("a second IHDR chunk");
                header(chunk);
            } else if (name == "PLTE") {
                if (seen_idat_) fail("a PLTE chunk after the image data");
                if (palette_entries_ > 0) fail("a second PLTE chunk");
                if (chunk.length == 0 || chunk.length % 3 != 0 || chunk.length > 768) fail("a PLTE chunk of the wrong length");
                if (color_type_ == 0 || color_type_ == 4) damaged("a PLTE chunk in a grayscale image");
                palette_entries_ = chunk.length / 3;
            } else if (name == "tRNS") {
                if (seen_idat_) damaged("a tRNS chunk after the image data");
                if (color_type_ == 3 && (palette_entries_ == 0 || chunk.length > palette_entries_))
                    fail("a tRNS chunk that does not match the palette");
                if ((color_type_ == 0 && chunk.length != 2) || (color_type_ == 2 && chunk.length != 6))
                    fail("a tRNS chunk of the wrong length");
                if (color_type_ == 4 || color_type_ == 6) fail("a tRNS chunk in an image with an alpha channel");
            } else if (name == "IDAT") {
                if (idat_closed) fail("IDAT chunks separated by other chunks");
                if (color_type_ == 3 && palette_entries_ == 0) fail("a palette image without a PLTE chunk");
                seen_idat_ = true;
                compressed.insert(compressed.end(), chunk.data, chunk.data + chunk.length);
            } else if (name == "IEND") {
                ended = true;
                return false;
            } else if (critical) {
                fail("an unknown critical chunk " + name);  // libpng's rule; CgBI is one
            }
            if (seen_idat_ && name != "IDAT") idat_closed = true;
            return true;
        });
        if (index == 0) truncated("before its header");
        if (!seen_idat_) {
            if (!stopped) truncated("before its image data");
            fail("it has no image data (no IDAT chunk)");
        }
        if (!ended) {
            if (strict_) truncated("before its IEND chunk");
        }
        inflate_and_compare(compressed, filtered_budget);
    }

    // The IHDR chunk alone (what read_image_info needs).
    void run_header() {
        if (size_ < 8 + 12 + 13 || std::memcmp(data_ + 12, "IHDR", 4) != 0) {
            if (size_ < 8 + 12 + 13) truncated("inside its header");
            fail("its first chunk is not IHDR");
        }
        header(png_chunk{data_ + 12, read_be32(data_ + 8), data_ + 16});
    }

    // Whether a tRNS chunk comes before the image data: stb (and libpng as tilekit sets it up)
    // then adds an alpha channel to gray and RGB images.
    bool has_transparency_chunk() const {
        bool found = false;
        for_each_png_chunk(data_, size_, [&](const png_chunk& chunk) {
            if (std::memcmp(chunk.type, "tRNS", 4) == 0) found = true;
            return !found && std::memcmp(chunk.type, "IDAT", 4) != 0 && std::memcmp(chunk.type, "IEND", 4) != 0;
        });
        return found;
    }

    bool interlaced() const noexcept { return interlaced_; }

private:
    [[noreturn]] void fail(const std::string& why) const {
        throw error(errc::corrupt_image, "png image is damaged or unsupported: " + why);
    }
    [[noreturn]] void truncated(const std::string& where) const {
        throw error(errc::truncated_image, "png image is truncated: the data ends " + where);
    }
    void damaged(const std::string& why) const {  // what libpng reports as a benign error
        if (strict_) fail(why);
    }

    void header(const png_chunk& chunk) {
        if (chunk.length != 13) fail("an IHDR chunk of the wrong length");
        const std::uint8_t* p = chunk.data;
        const std::uint32_t width = read_be32(p), height = read_be32(p + 4);
        if (width == 0 || height == 0 || width > 0x7fffffffu || height > 0x7fffffffu) fail("a width or height out of range");
        const int depth = p[8];
        color_type_ = p[9];
        static const int channels_of[7] = {1, 0, 3, 1, 2, 0, 4};
        const bool valid =
            (color_type_ == 0 && (depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16)) ||
            (color_type_ == 3 && (depth == 1 || depth == 2 || depth == 4 || depth == 8)) ||
            ((color_type_ == 2 || color_type_ == 4 || color_type_ == 6) && (depth == 8 || depth == 16));
        if (!valid) fail("bit depth " + std::to_string(depth) + " with colour type " + std::to_string(color_type_));
        if (p[10] != 0 || p[11] != 0) fail("an unknown compression or filter method");
        if (p[12] > 1) fail("an unknown interlace method");
        const unsigned bits_per_pixel = static_cast<unsigned>(depth * channels_of[color_type_]);
        interlaced_ = p[12] == 1;
        filtered_size_ = png_filtered_size(width, height, bits_per_pixel, interlaced_);
    }

    // Inflates into a buffer of fixed size: stb's inflate stops at its end, so a stream that
    // would inflate further fails here instead of growing. Strict: exactly the size the header
    // implies, plus one byte to notice more. Lenient: up to twice that (libpng ignores data past
    // the image, and so does stb, whose own buffer then grows to at most about 4 times).
    void inflate_and_compare(const std::vector<std::uint8_t>& compressed, std::uint64_t filtered_budget) {
        const std::uint64_t capacity = (strict_ ? filtered_size_ : 2 * filtered_size_) + 1;
        if (capacity - 1 > filtered_budget)
            throw error(errc::over_memory_budget, "png image data inflates to " + std::to_string(filtered_size_) +
                                                      " bytes, over the memory budget (decode_limits::max_memory_bytes)");
        if (capacity > 0x7fffffffu || compressed.size() > 0x7fffffffu)
            throw error(errc::image_too_large, "png image data of " + std::to_string(filtered_size_) +
                                                   " bytes is more than the core decoder (stb_image) reads");
        std::unique_ptr<std::uint8_t[]> inflated(new std::uint8_t[static_cast<std::size_t>(capacity)]);
        const int got = stbi_zlib_decode_buffer(reinterpret_cast<char*>(inflated.get()), static_cast<int>(capacity),
                                                reinterpret_cast<const char*>(compressed.data()),
                                                static_cast<int>(compressed.size()));
        if (got < 0) {
            const char* reason = stbi_failure_reason();
            if (reason && std::strcmp(reason, "output buffer limit") == 0) fail("more image data than its size needs");
            fail(std::string("its compressed image data is damaged (") + (reason ? reason : "inflate failed") + ")");
        }
        if (static_cast<std::uint64_t>(got) < filtered_size_)  // libpng: "Not enough image data", in both modes
            truncated("inside its image data (" + std::to_string(got) + " of " + std::to_string(filtered_size_) + " bytes)");
        if (static_cast<std::uint64_t>(got) > filtered_size_) damaged("more image data than its size needs");
        // zlib's checksum is the last 4 bytes of the stream; anything after the stream would
        // be there instead (libpng: "extra compressed data"). libpng refuses a bad checksum in
        // both modes.
        if ((compressed.size() < 6 ||
                        read_be32(compressed.data() + compressed.size() - 4) != adler32(inflated.get(), static_cast<std::size_t>(got))))
            fail("its compressed image data fails its Adler-32 check, or has extra data after it");
    }

    const std::uint8_t* data_;
    std::size_t size_;
    bool strict_;
    int color_type_ = 0;
    unsigned palette_entries_ = 0;
    bool seen_idat_ = false;
    bool interlaced_ = false;
    std::uint64_t filtered_size_ = 0;
};


}  // namespace detail

TILEKIT_NAMESPACE_END
// #include <tilekit/detail/stb.hpp>
// #include <tilekit/error.hpp>
// #include <tilekit/image.hpp>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

struct image_info {
    int width = 0;
    int height = 0;
    int channels = 0;        // channels decoded: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA (a PNG
                             // palette or tRNS chunk counts as the colours and alpha it gives)
    bool sixteen_bit = false;  // 16-bit PNG; decoded to 8 bits
    bool progressive = false;  // progressive JPEG or interlaced PNG: decoded as a whole image
    std::string format;      // "png", "jpeg" or "other"
};

struct decode_limits {
    // Images with more pixels than this are refused before decoding (1 Gpx = 4 GiB as RGBA).
    std::uint64_t max_pixels = std::uint64_t{1} << 30;
    // Files larger than this are refused before they are read.
    std::uint64_t max_file_bytes = std::uint64_t{2} << 30;
    // Memory the decoder may use for one image (row buffers, coefficient buffers, whole-image
    // buffers), estimated from the header before anything is allocated (errc::over_memory_budget).
    std::uint64_t max_memory_bytes = std::uint64_t{1} << 30;
    // Strict by default: a file the decoder can only read with warnings (missing data, a bad
    // checksum, extra bytes) is refused as corrupt or truncated. True accepts what can be decoded.
    bool accept_damaged = false;
};

namespace detail {

// What the first bytes say the file is: "png" and "jpeg" (the formats tilekit reads), the name
// of another image format it recognises but refuses ("gif", "bmp", "tiff", "webp", "pnm",
// "psd", "hdr", "pic", "qoi"), or "other".
inline std::string describe_format(const std::uint8_t* data, std::size_t size) {
    static const std::uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const auto starts = [&](const char* magic) {
        const std::size_t n = std::strlen(magic);
        return size >= n && std::memcmp(data, magic, n) == 0;
    };
    if (size >= 8 && std::memcmp(data, png_signature, 8) == 0) return "png";
    if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) return "jpeg";
    if (starts("GIF87a") || starts("GIF89a")) return "gif";
    if (starts("BM")) return "bmp";
    if (size >= 4 && ((data[0] == 'I' && data[1] == 'I' && (data[2] == 42 || data[2] == 43) && data[3] == 0) ||
                      (data[0] == 'M' && data[1] == 'M' && data[2] == 0 && (data[3] == 42 || data[3] == 43))))
        return "tiff";  // classic (42) and BigTIFF (43)
    if (size >= 12 && starts("RIFF") && std::memcmp(data + 8, "WEBP", 4) == 0) return "webp";
    if (size >= 2 && data[0] == 'P' && data[1] >= '1' && data[1] <= '7') return "pnm";
    if (starts("8BPS")) return "psd";
    if (starts("#?RADIANCE") || starts("#?RGBE")) return "hdr";
    if (size >= 4 && data[0] == 0x53 && data[1] == 0x80 && data[2] == 0xf6 && data[3] == 0x34) return "pic";
    if (starts("qoif")) return "qoi";
    return "other";
}

inline bool is_supported_format(const std::string& format) { return format == "png" || format == "jpeg"; }

// Refuses anything but PNG and JPEG, naming what was found.
inline void refuse_unsupported_format(const std::string& format) {
    if (is_supported_format(format)) return;
    if (format == "other") throw error(errc::not_an_image, "input is not a PNG or JPEG image");
    std::string upper;
    for (const char c : format) upper += static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
    throw error(errc::not_an_image, "input is a " + upper + " image; tilekit reads PNG and JPEG only");
}

inline std::string size_text(std::uint64_t width, std::uint64_t height) {
    return std::to_string(width) + "x" + std::to_string(height);
}

// Width and height as the header states them (PNG IHDR, JPEG SOFn), read without stb: stb
// refuses headers over its own limits (2^24 a side, 2^30 bytes decoded) without telling the
// size, and the pixel limit must be checked before anything is decoded.
inline bool header_dimensions(const std::string& format, const std::uint8_t* data, std::size_t size,
                              std::uint64_t& width, std::uint64_t& height) {
    if (format == "png") {
        if (size < 24 || std::memcmp(data + 12, "IHDR", 4) != 0) return false;
        width = read_be32(data + 16);
        height = read_be32(data + 20);
        return width > 0 && height > 0;
    }
    if (format != "jpeg") return false;
    std::size_t pos = 2;
    while (pos + 4 <= size) {
        if (data[pos] != 0xff) return false;
        const std::uint8_t marker = data[pos + 1];
        if (marker == 0xff) {  // fill byte
            ++pos;
            continue;
        }
        if (marker == 0x01 || (marker >= 0xd0 && marker <= 0xd8)) {  // markers without a length
            pos += 2;
            continue;
        }
        if (marker == 0xd9 || marker == 0xda) return false;  // no frame header before the data
        if (marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 && marker != 0xcc) {
            if (pos + 9 > size) return false;
            height = (std::uint64_t{data[pos + 5]} << 8) | data[pos + 6];
            width = (std::uint64_t{data[pos + 7]} << 8) | data[pos + 8];
            return width > 0 && height > 0;
        }
        const std::size_t length = (std::size_t{data[pos + 2]} << 8) | data[pos + 3];
        if (length < 2) return false;
        pos += 2 + length;
    }
    return false;
}

inline void refuse_over_limit(std::uint64_t width, std::uint64_t height, const decode_limits& limits) {
    const std::uint64_t pixels = width * height;
    refuse_over_limit("image " + size_text(width, height), pixels, limits.max_pixels, "pixels");
}

}  // namespace detail

namespace detail {

// Checks the structures stb reads for the header (before it reads them: its JPEG header parser
// builds the Huffman tables defined before the frame), then asks stb.
inline image_info read_image_info_checked(const std::uint8_t* data, std::size_t size) {
    if (size == 0) throw error(errc::empty_input, "image is empty (0 bytes)");
    if (size > static_cast<std::size_t>(std::numeric_limits<int>::max()))
        throw error(errc::image_too_large, "image file is " + std::to_string(size) + " bytes; the decoder reads at most 2 GiB");
    image_info info;
    info.format = describe_format(data, size);
    refuse_unsupported_format(info.format);  // stb reads more formats; tilekit trusts it with two
    std::uint64_t width = 0, height = 0;
    bool transparency = false;
    if (header_dimensions(info.format, data, size, width, height) && width * height > (std::uint64_t{1} << 30))
        throw error(errc::image_too_large, "image is " + size_text(width, height) + " = " + std::to_string(width * height) +
                                               " pixels, more than the core decoder (stb_image) can hold");
    if (info.format == "jpeg") {
        jpeg_checker header(data, size, false);
        header.run(true);
        info.progressive = header.progressive();
    } else {
        png_checker header(data, size, false);
        header.run_header();
        info.progressive = header.interlaced();
        transparency = header.has_transparency_chunk();
    }
    const int length = static_cast<int>(size);
    if (!stbi_info_from_memory(data, length, &info.width, &info.height, &info.channels)) {
        const char* reason = stbi_failure_reason();
        if (reason && std::strcmp(reason, "too large") == 0)
            throw error(errc::image_too_large, "image is " + size_text(width, height) + ", more than the core decoder (stb_image) can hold");
        throw error(errc::corrupt_image, std::string("cannot read ") + info.format + " header: " + (reason ? reason : "unknown reason"));
    }
    info.sixteen_bit = stbi_is_16_bit_from_memory(data, length) != 0;
    if (transparency && (info.channels == 1 || info.channels == 3)) ++info.channels;  // as decoded
    return info;
}

}  // namespace detail

// Reads the header only: dimensions, channels and format, without decoding pixels.
inline image_info read_image_info(const std::uint8_t* data, std::size_t size) {
    return detail::read_image_info_checked(data, size);
}

inline image_info read_image_info(const std::vector<std::uint8_t>& bytes) {
    return read_image_info(bytes.data(), bytes.size());
}

// Decodes an image held in memory. The channel count of the file is kept; 16-bit becomes 8-bit.
inline image_buffer decode_image(const std::uint8_t* data, std::size_t size, const decode_limits& limits = {}) {
    if (size > 0) {  // the limit first, from the header alone
        std::uint64_t header_width = 0, header_height = 0;
        if (detail::header_dimensions(detail::describe_format(data, size), data, size, header_width, header_height))
            detail::refuse_over_limit(header_width, header_height, limits);
    }
    const image_info info = read_image_info(data, size);
    detail::refuse_over_limit(std::uint64_t(info.width), std::uint64_t(info.height), limits);
    // What stb holds at once, estimated from the header before anything is allocated. PNG: the
    // compressed data, the inflated stream (16-bit samples and filter bytes included) and the
    // output, plus a pass buffer when interlaced. JPEG: one plane per component and the output,
    // plus 16-bit coefficients for the whole image when progressive (and the check's bitmap).
    const std::uint64_t pixels = std::uint64_t(info.width) * std::uint64_t(info.height);
    const std::uint64_t samples = pixels * std::uint64_t(info.channels);
    std::uint64_t estimate = size;
    if (info.format == "png")
        estimate += samples * (info.sixteen_bit ? 2 : 1) * 5 / 2 + (info.progressive ? samples : 0);
    else
        estimate += samples * 5 / 2 +
                    (info.progressive ? samples * 2 + detail::jpeg_check_cost(std::uint64_t(info.width), std::uint64_t(info.height), info.channels) : 0);
    if (estimate > limits.max_memory_bytes)
        throw error(errc::over_memory_budget,
                    info.format + " image " + detail::size_text(info.width, info.height) + " needs about " +
                        std::to_string(estimate) + " bytes to decode with stb, over the memory budget of " +
                        std::to_string(limits.max_memory_bytes) + " bytes (decode_limits::max_memory_bytes)");
    // The whole file, before stb sees it: see detail/jpeg_check.hpp and detail/png_check.hpp.
    const bool strict = !limits.accept_damaged;
    std::vector<std::uint8_t> with_end;  // lenient: a JPEG cut short, with the EOI libjpeg would supply
    if (info.format == "jpeg") {
        detail::jpeg_checker check(data, size, strict);
        check.run();
        if (check.ended_without_eoi()) {
            with_end.assign(data, data + size);
            with_end.insert(with_end.end(), {0xff, 0xd9});
            data = with_end.data();
            size = with_end.size();
        }
    } else {
        detail::png_checker(data, size, strict).run(limits.max_memory_bytes);
    }
    int width = 0, height = 0, channels = 0;
    std::unique_ptr<stbi_uc, void (*)(void*)> decoded(
        stbi_load_from_memory(data, static_cast<int>(size), &width, &height, &channels, 0), stbi_image_free);
    if (!decoded) {
        const char* reason = stbi_failure_reason();
        throw error(errc::corrupt_image, info.format + " image " + detail::size_text(info.width, info.height) +
                                             " cannot be decoded: " + (reason ? reason : "unknown reason"));
    }
    // Adopt stb's buffer rather than copying it: the decoded image is the one large allocation.
    return image_buffer::adopt(decoded.release(), width, height, channels, stbi_image_free);
}

inline image_buffer decode_image(const std::vector<std::uint8_t>& bytes, const decode_limits& limits = {}) {
    return decode_image(bytes.data(), bytes.size(), limits);
}

// Reads a whole file, refusing files over `max_bytes`.
inline std::vector<std::uint8_t> read_file_bytes(const std::string& path,
                                                 std::uint64_t max_bytes = std::uint64_t{2} << 30) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) throw error(errc::io_error, "cannot open '" + path + "': " + std::strerror(errno));
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))  // opens fine on Linux, then reports a bogus size
        throw error(errc::io_error, "cannot read '" + path + "': it is a directory");
    const std::streamoff end = in.tellg();
    if (end < 0) throw error(errc::io_error, "cannot read '" + path + "' (not a regular file?)");
    const auto size = static_cast<std::uint64_t>(end);
    detail::refuse_over_limit("'" + path + "'", size, max_bytes, "bytes");
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
    in.seekg(0);
    if (size > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size)))
        throw error(errc::io_error, "cannot read '" + path + "'");
    return bytes;
}

inline image_buffer decode_image_file(const std::string& path, const decode_limits& limits = {}) {
    const std::vector<std::uint8_t> bytes = read_file_bytes(path, limits.max_file_bytes);
    try {
        return decode_image(bytes, limits);
    } catch (const error& e) {
        throw error(e.code(), "'" + path + "': " + e.what());
    }
}

TILEKIT_NAMESPACE_END
// #include <tilekit/row_source.hpp>
// The row-source contract: how pixels reach the tiler, one full-resolution row at a time, top
// to bottom, so that a decoder can stream and the whole image is never held.
//
// A row source has
//   int width() const;  int height() const;
//   int channels() const;            // 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA (8 bits each)
//   const std::uint8_t* next_row();  // the next row, width()*channels() bytes, valid until the
//                                    // following call; called exactly height() times;
//                                    // throws tilekit::error on damaged data
// `row_source` is that contract as a base class: generate_pyramid() is templated on the source
// type (a final class is called without a virtual dispatch), and run-time code holds any source
// as a std::unique_ptr<row_source>. Every source in tilekit derives from it.

// #include <tilekit/error.hpp>
// #include <tilekit/image.hpp>

#include <cstdint>
#include <utility>

TILEKIT_NAMESPACE_BEGIN

class row_source {
public:
    virtual ~row_source() = default;
    virtual int width() const = 0;
    virtual int height() const = 0;
    virtual int channels() const = 0;
    virtual const std::uint8_t* next_row() = 0;
};

// The rows of an image in memory: a view of someone else's pixels, or an image it owns (a
// decoder that decodes whole images hands its result over this way).
class image_row_source final : public row_source {
public:
    explicit image_row_source(const image_view& image) : image_(image) { check(); }
    explicit image_row_source(image_buffer image) : owned_(std::move(image)), image_(owned_.view()) { check(); }

    int width() const override { return image_.width; }
    int height() const override { return image_.height; }
    int channels() const override { return image_.channels; }
    const std::uint8_t* next_row() override {
        if (next_ >= image_.height) throw error(errc::invalid_argument, "image_row_source: read past the last row");
        return image_.row(next_++);
    }

private:
    void check() const {
        if (!image_.pixels) throw error(errc::invalid_argument, "image_row_source: the image has no pixels");
    }

    image_buffer owned_;
    image_view image_;
    int next_ = 0;
};

TILEKIT_NAMESPACE_END
// #include <tilekit/input_readers.hpp>
// Input formats that optional parts add at run time (the TIFF part: <tilekit/tiff.hpp>; the
// WebP part: <tilekit/webp.hpp>). A part
// registers a reader for a format name (as detail::describe_format() names it) before main();
// the codec sets' open_file() and open_memory() (tile_file.hpp, fast_codecs/codecs.hpp) sniff
// the first bytes and hand the file to the registered reader, so `tilekit tile scan.tif`, a
// TIFF upload and tile_file("scan.tif", ...) work wherever the part is linked. Without it the
// format is refused with an error naming the part that reads it.

// #include <tilekit/decode.hpp>
// #include <tilekit/error.hpp>
// #include <tilekit/row_source.hpp>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>

TILEKIT_NAMESPACE_BEGIN

struct input_reader {
    const char* format;  // "tiff", "webp"
    std::unique_ptr<row_source> (*open_file)(const std::string& path, const decode_limits& limits);
    // The bytes must outlive the returned source.
    std::unique_ptr<row_source> (*open_memory)(const std::uint8_t* data, std::size_t size, const decode_limits& limits);
};

namespace detail {

constexpr std::size_t max_input_readers = 8;

inline std::atomic<const input_reader*>* input_reader_slots() {
    static std::atomic<const input_reader*> slots[max_input_readers] = {};
    return slots;
}

// Called once per part, before main (an inline variable in the part's header).
inline bool register_input_reader(const input_reader* reader) {
    std::atomic<const input_reader*>* slots = input_reader_slots();
    for (std::size_t i = 0; i < max_input_readers; ++i) {
        const input_reader* expected = nullptr;
        if (slots[i].compare_exchange_strong(expected, reader, std::memory_order_acq_rel)) return true;
        if (expected == reader || std::strcmp(expected->format, reader->format) == 0) return true;
    }
    return false;
}

// What to say when no reader was registered for a format an optional part reads.
inline std::string missing_input_part(const std::string& format) {
    if (format == "tiff")
        return "input is a TIFF image; reading TIFF needs tilekit's tiff part (#include <tilekit/tiff.hpp> and link "
               "tilekit::tiff, which uses libtiff; Debian: libtiff-dev), which this program does not include";
    if (format == "webp")
        return "input is a WebP image; reading WebP needs tilekit's WebP part (#include <tilekit/webp.hpp> and link "
               "tilekit::webp, which uses libwebp; Debian: libwebp-dev), which this program does not include";
    return "";
}

}  // namespace detail

// The reader registered for `format`, or null.
inline const input_reader* find_input_reader(const std::string& format) {
    std::atomic<const input_reader*>* slots = detail::input_reader_slots();
    for (std::size_t i = 0; i < detail::max_input_readers; ++i) {
        const input_reader* reader = slots[i].load(std::memory_order_acquire);
        if (!reader) break;
        if (format == reader->format) return reader;
    }
    return nullptr;
}

namespace detail {

// For the codec sets: the registered reader of `format`, null when the codec set reads it
// itself (PNG, JPEG), and an error naming the missing part or the unknown format otherwise.
inline const input_reader* input_reader_for(const std::string& format, const std::string& label) {
    if (is_supported_format(format)) return nullptr;
    if (const input_reader* reader = find_input_reader(format)) return reader;
    const std::string missing = missing_input_part(format);
    if (!missing.empty()) throw error(errc::not_an_image, label + missing);
    try {
        refuse_unsupported_format(format);
    } catch (const error& e) {
        throw error(e.code(), label + e.what());
    }
    return nullptr;
}

}  // namespace detail

TILEKIT_NAMESPACE_END
// #include <tilekit/layout.hpp>
// The layout contract, and the Deep Zoom and XYZ layouts: which levels exist, which pixels each
// tile shows, and what each object is called.
//
// A layout is a value type (the tiler is templated on it) with:
//   static constexpr const char* name();          // "dz", "xyz": written to pyramid.json
//   int tile_size() const;  int overlap() const;  // as written to pyramid.json
//   bool pads_edges() const;                      // true: edge tiles are padded to full size
//   std::vector<level_geometry> levels(int width, int height) const;
//       // every level, full resolution first (halvings 0, 1, ...), each level the one before
//       // halved rounding up: the tiler builds level k+1 by a 2x2 reduction of level k
//   tile_region region(const level_geometry&, int column, int row) const;
//       // the level pixels one tile shows (inside the level) and its encoded size; tiles of one
//       // row share y and height, and rows are cut top to bottom
//   std::string tile_key(const level_geometry&, int column, int row, const std::string& ext) const;
//   std::string tile_url_template(const std::string& ext) const;   // for viewers
//   std::string manifest_key() const;             // the layout's own manifest, or empty for none
//   std::string manifest(int width, int height, const std::string& ext) const;
// and optionally (detected; see iiif_layout):
//   std::vector<std::string> tile_aliases(const level_geometry&, int column, int row, const std::string& ext) const;
//       // more keys the same encoded tile is written under (IIIF's full/ images)
//   bool repeats_finer_tile(const level_geometry&, int column, int row) const;
//       // true: the tile's key is also a tile of the level above, which is the one written
// Keys are relative to the run's prefix and must pass validate_key().

// #include <tilekit/error.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

struct level_geometry {
    int index = 0;     // the level's number in object names: Deep Zoom level or XYZ zoom
    int halvings = 0;  // times the full-resolution image is halved to make this level
    int width = 0;     // the level image, in pixels
    int height = 0;
    int columns = 0;   // tiles across and down
    int rows = 0;
    int image_width = 0;   // the full-resolution image (IIIF names tiles by their full-resolution region)
    int image_height = 0;

    std::uint64_t tile_count() const noexcept { return std::uint64_t(columns) * std::uint64_t(rows); }
};

// The part of a level image that one tile shows, and the size the tile is encoded at.
struct tile_region {
    int x = 0;  // top-left corner in level pixels
    int y = 0;
    int width = 0;  // pixels taken from the level image (always inside it)
    int height = 0;
    int out_width = 0;  // encoded size: equal to width/height, or larger when the layout pads edges
    int out_height = 0;
};

namespace detail {

// Smallest n >= 0 with 2^n * unit >= extent.
inline int ceil_log2_ratio(std::int64_t extent, std::int64_t unit) {
    int n = 0;
    while ((unit << n) < extent) ++n;
    return n;
}

inline int halve_up(int extent, int halvings) {
    return static_cast<int>((std::int64_t(extent) + (std::int64_t{1} << halvings) - 1) >> halvings);
}

inline int div_up(int a, int b) { return (a + b - 1) / b; }

inline void check_image_size(int width, int height) {
    if (width <= 0 || height <= 0)
        throw error(errc::invalid_argument,
                    "image size must be positive, got " + std::to_string(width) + "x" + std::to_string(height));
}

// Levels 0..top, each the full-resolution image halved (rounding up) top - index times,
// ordered from full resolution down; both layouts differ only in `top`.
inline std::vector<level_geometry> halving_levels(int width, int height, int top, int tile_size) {
    std::vector<level_geometry> result;
    for (int halvings = 0; halvings <= top; ++halvings) {
        level_geometry level;
        level.index = top - halvings;
        level.halvings = halvings;
        level.width = halve_up(width, halvings);
        level.height = halve_up(height, halvings);
        level.columns = div_up(level.width, tile_size);
        level.rows = div_up(level.height, tile_size);
        level.image_width = width;
        level.image_height = height;
        result.push_back(level);
    }
    return result;
}

}  // namespace detail

// Deep Zoom, as OpenSeadragon reads and `vips dzsave` writes: levels 0..ceil(log2(max(W,H))),
// level 0 is 1x1; tiles step by tile_size and carry `overlap` extra pixels on interior edges
// only; edge tiles are cropped. Objects: {basename}.dzi and {basename}_files/{level}/{col}_{row}.{ext}.
class deep_zoom_layout {
public:
    explicit deep_zoom_layout(int tile_size = 254, int overlap = 1, std::string basename = "image")
        : tile_size_(tile_size), overlap_(overlap), basename_(std::move(basename)) {
        if (tile_size < 1 || tile_size > 8192)
            throw error(errc::invalid_argument, "tile size must be 1..8192, got " + std::to_string(tile_size));
        if (overlap < 0 || overlap > tile_size)
            throw error(errc::invalid_argument, "overlap must be 0..tile size, got " + std::to_string(overlap));
        if (basename_.empty() || basename_.find_first_of("/\\") != std::string::npos || basename_ == "." ||
            basename_ == "..")
            throw error(errc::invalid_argument, "Deep Zoom basename must be a plain file name, got '" + basename_ + "'");
    }

    static constexpr const char* name() noexcept { return "dz"; }
    int tile_size() const noexcept { return tile_size_; }
    int overlap() const noexcept { return overlap_; }
    const std::string& basename() const noexcept { return basename_; }
    bool pads_edges() const noexcept { return false; }

    // Levels ordered from full resolution (halvings 0) down to 1x1.
    std::vector<level_geometry> levels(int width, int height) const {
        detail::check_image_size(width, height);
        return detail::halving_levels(width, height, detail::ceil_log2_ratio(std::max(width, height), 1), tile_size_);
    }

    tile_region region(const level_geometry& level, int column, int row) const {
        tile_region r;
        axis(level.width, column, r.x, r.width);
        axis(level.height, row, r.y, r.height);
        r.out_width = r.width;
        r.out_height = r.height;
        return r;
    }

    std::string tile_key(const level_geometry& level, int column, int row, const std::string& extension) const {
        return basename_ + "_files/" + std::to_string(level.index) + "/" + std::to_string(column) + "_" +
               std::to_string(row) + "." + extension;
    }

    std::string tile_url_template(const std::string& extension) const {
        return basename_ + "_files/{level}/{col}_{row}." + extension;
    }

    std::string manifest_key() const { return basename_ + ".dzi"; }

    std::string manifest(int width, int height, const std::string& extension) const {
        return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<Image xmlns=\"http://schemas.microsoft.com/deepzoom/2008\" Format=\"" +
               extension + "\" Overlap=\"" + std::to_string(overlap_) + "\" TileSize=\"" + std::to_string(tile_size_) +
               "\">\n  <Size Width=\"" + std::to_string(width) + "\" Height=\"" + std::to_string(height) +
               "\"/>\n</Image>\n";
    }

private:
    void axis(int extent, int index, int& start, int& length) const {
        const std::int64_t first = std::int64_t(index) * tile_size_;
        const std::int64_t begin = std::max<std::int64_t>(0, first - overlap_);
        const std::int64_t end = std::min<std::int64_t>(extent, first + tile_size_ + overlap_);
        start = static_cast<int>(begin);
        length = static_cast<int>(end - begin);
    }

    int tile_size_;
    int overlap_;
    std::string basename_;
};

// XYZ for Leaflet (L.CRS.Simple) and other slippy-map viewers, the grid of
// `gdal2tiles.py -p raster --xyz`: zoom 0 shows the whole image in one tile, zoom N is full
// resolution, the image is anchored top-left, every tile is tile_size square (edges padded).
// Objects: {z}/{x}/{y}.{ext}.
class xyz_layout {
public:
    explicit xyz_layout(int tile_size = 256) : tile_size_(tile_size) {
        if (tile_size < 1 || tile_size > 8192)
            throw error(errc::invalid_argument, "tile size must be 1..8192, got " + std::to_string(tile_size));
    }

    static constexpr const char* name() noexcept { return "xyz"; }
    int tile_size() const noexcept { return tile_size_; }
    int overlap() const noexcept { return 0; }
    bool pads_edges() const noexcept { return true; }

    std::vector<level_geometry> levels(int width, int height) const {
        detail::check_image_size(width, height);
        return detail::halving_levels(width, height, detail::ceil_log2_ratio(std::max(width, height), tile_size_),
                                      tile_size_);
    }

    tile_region region(const level_geometry& level, int column, int row) const {
        tile_region r;
        r.x = column * tile_size_;
        r.y = row * tile_size_;
        r.width = std::min(tile_size_, level.width - r.x);
        r.height = std::min(tile_size_, level.height - r.y);
        r.out_width = tile_size_;
        r.out_height = tile_size_;
        return r;
    }

    std::string tile_key(const level_geometry& level, int column, int row, const std::string& extension) const {
        return std::to_string(level.index) + "/" + std::to_string(column) + "/" + std::to_string(row) + "." + extension;
    }

    std::string tile_url_template(const std::string& extension) const { return "{z}/{x}/{y}." + extension; }

    // XYZ has no layout-specific manifest; the tiler's JSON metadata describes it.
    std::string manifest_key() const { return {}; }
    std::string manifest(int, int, const std::string&) const { return {}; }

private:
    int tile_size_;
};

// IIIF Image API 3.0, compliance level 0 (static files), the grid of `vips dzsave --layout
// iiif3`: the levels of XYZ (the last one is the whole image in one tile), edge tiles cropped,
// no overlap. Each tile is named by the full-resolution region it shows and the size it is
// encoded at, as a IIIF client asks for it: {x},{y},{w},{h}/{width},{height}/0/default.{ext}.
// The last level (scale factor 2^top) is also written as full/{width},{height}/0/default.{ext}
// and, when it is the full-resolution image, as full/max/0/default.{ext}: the requests
// OpenSeadragon and other clients make for a level that fits one tile, and the `sizes` entry.
// Manifest: info.json, whose `id` is given (see pyramid_options::iiif_base_url); "." is a
// relative reference that viewers joining it to the region (OpenSeadragon does) resolve
// against the page.
class iiif_layout {
public:
    explicit iiif_layout(int tile_size = 512, std::string id = ".") : tile_size_(tile_size), id_(std::move(id)) {
        if (tile_size < 1 || tile_size > 8192)
            throw error(errc::invalid_argument, "tile size must be 1..8192, got " + std::to_string(tile_size));
        while (id_.size() > 1 && id_.back() == '/') id_.pop_back();
        if (id_.empty() || id_ == "/")
            throw error(errc::invalid_argument, "the IIIF id (base URL) must not be empty");
        for (const char ch : id_)
            if (static_cast<unsigned char>(ch) <= 0x20 || ch == 0x7f || ch == '?' || ch == '#' || ch == '"' || ch == '\\')
                throw error(errc::invalid_argument,
                            "the IIIF id (base URL) must be a URL without spaces, control characters, quotes, "
                            "backslashes, '?' or '#', got '" + id_ + "'");
    }

    static constexpr const char* name() noexcept { return "iiif"; }
    int tile_size() const noexcept { return tile_size_; }
    int overlap() const noexcept { return 0; }
    bool pads_edges() const noexcept { return false; }
    const std::string& id() const noexcept { return id_; }

    std::vector<level_geometry> levels(int width, int height) const {
        detail::check_image_size(width, height);
        return detail::halving_levels(width, height, detail::ceil_log2_ratio(std::max(width, height), tile_size_),
                                      tile_size_);
    }

    tile_region region(const level_geometry& level, int column, int row) const {
        tile_region r;
        r.x = column * tile_size_;
        r.y = row * tile_size_;
        r.width = std::min(tile_size_, level.width - r.x);
        r.height = std::min(tile_size_, level.height - r.y);
        r.out_width = r.width;
        r.out_height = r.height;
        return r;
    }

    // The region in full-resolution pixels: the tile's level rectangle times the scale factor,
    // cut at the image's edge.
    std::string region_name(const level_geometry& level, int column, int row) const {
        const std::int64_t scale = std::int64_t{1} << level.halvings;
        const std::int64_t span = std::int64_t(tile_size_) * scale;
        const std::int64_t x = column * span, y = row * span;
        const std::int64_t w = std::min<std::int64_t>(span, level.image_width - x);
        const std::int64_t h = std::min<std::int64_t>(span, level.image_height - y);
        return std::to_string(x) + "," + std::to_string(y) + "," + std::to_string(w) + "," + std::to_string(h);
    }

    std::string tile_key(const level_geometry& level, int column, int row, const std::string& extension) const {
        const tile_region r = region(level, column, row);
        return region_name(level, column, row) + "/" + std::to_string(r.width) + "," + std::to_string(r.height) +
               "/0/default." + extension;
    }

    std::vector<std::string> tile_aliases(const level_geometry& level, int column, int row,
                                          const std::string& extension) const {
        if (level.columns != 1 || level.rows != 1 || column != 0 || row != 0) return {};
        std::vector<std::string> keys{"full/" + std::to_string(level.width) + "," + std::to_string(level.height) +
                                      "/0/default." + extension};
        if (level.halvings == 0) keys.push_back("full/max/0/default." + extension);
        return keys;
    }

    // An edge sliver at most half the scale factor wide and high has the same region and size
    // (one pixel) as the tile at the same place one level finer: 1025x513 at 256 px has
    // 1024,512,1,1/1,1 at scale factors 1 and 2. The tiler writes it once, at the finer level.
    bool repeats_finer_tile(const level_geometry& level, int column, int row) const {
        if (level.halvings == 0) return false;
        level_geometry finer = level;
        finer.halvings = level.halvings - 1;
        finer.width = detail::halve_up(level.image_width, finer.halvings);
        finer.height = detail::halve_up(level.image_height, finer.halvings);
        finer.columns = detail::div_up(finer.width, tile_size_);
        finer.rows = detail::div_up(finer.height, tile_size_);
        if (2 * column >= finer.columns || 2 * row >= finer.rows) return false;
        return tile_key(finer, 2 * column, 2 * row, "") == tile_key(level, column, row, "");
    }

    std::string tile_url_template(const std::string& extension) const {
        return "{region}/{size}/0/default." + extension;
    }

    std::string manifest_key() const { return "info.json"; }

    // The image information document (IIIF Image API 3.0, section 5), written last.
    std::string manifest(int width, int height, const std::string& extension) const {
        const std::vector<level_geometry> all = levels(width, height);
        const level_geometry& last = all.back();
        nlohmann::ordered_json scale_factors = nlohmann::ordered_json::array();
        for (const level_geometry& level : all) scale_factors.push_back(std::int64_t{1} << level.halvings);
        nlohmann::ordered_json info;
        info["@context"] = "http://iiif.io/api/image/3/context.json";
        info["id"] = id_;
        info["type"] = "ImageService3";
        info["protocol"] = "http://iiif.io/api/image";
        info["profile"] = "level0";
        info["width"] = width;
        info["height"] = height;
        info["sizes"] = nlohmann::ordered_json::array(
            {nlohmann::ordered_json{{"type", "Size"}, {"width", last.width}, {"height", last.height}}});
        info["tiles"] = nlohmann::ordered_json::array(
            {nlohmann::ordered_json{{"type", "Tile"}, {"width", tile_size_}, {"scaleFactors", scale_factors}}});
        // Level 0 promises only jpg; any other format is announced, and preferred so that clients
        // (OpenSeadragon: preferredFormats) ask for the files that exist.
        info["preferredFormats"] = nlohmann::ordered_json::array({extension});
        if (extension != "jpg") info["extraFormats"] = nlohmann::ordered_json::array({extension});
        return info.dump(2) + "\n";
    }

private:
    int tile_size_;
    std::string id_;
};

TILEKIT_NAMESPACE_END
// #include <tilekit/png_filter.hpp>
// #include <tilekit/encode.hpp>
// The encoder contract, and the core tile encoders: PNG through stb_image_write, JPEG through
// tilekit's own baseline writer (stb_image_write's JPEG writer shifts negative values, which is
// undefined behaviour, on every tile).
//
// An encoder is a value type (the tiler is templated on it, so encoding is not a virtual call):
//   std::string extension() const;        // file extension of the tiles: "png", "jpg"
//   std::string content_type() const;     // "image/png", "image/jpeg"
//   bool supports_alpha() const;          // false: the tiler flattens alpha onto the background
//                                         // and hands over gray or RGB tiles only
//   void encode(const image_view& tile, std::vector<std::uint8_t>& out) const;
//       // replaces `out` with the encoded tile; called from several threads at once on one
//       // encoder, so it must be thread-safe; throws tilekit::error(errc::encode_failed, or
//       // errc::invalid_argument for an image it cannot take)
// Faster encoders with the same shape live in <tilekit/fast_codecs.hpp>.

// #include <tilekit/detail/jpeg_writer.hpp>
// A baseline JPEG writer (ITU T.81 SOF0, JFIF APP0): 8-bit gray or YCbCr, the Annex K
// quantisation tables scaled as IJG's quality does, the Annex K Huffman tables, a float AAN
// forward DCT. Written for tiles: every table is built once per writer, encoding touches only
// local state (one writer is used by many threads at once), and the arithmetic is kept free of
// undefined behaviour (no shifts of negative values, no signed overflow).

// #include <tilekit/config.hpp>
// #include <tilekit/error.hpp>
// #include <tilekit/image.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

namespace detail {

// Natural (row-major) index of the k-th coefficient in zigzag order (T.81 figure A.6).
inline constexpr std::array<std::uint8_t, 64> jpeg_zigzag = {
    0,  1,  8,  16, 9,  2,  3,  10, 17, 24, 32, 25, 18, 11, 4,  5,  12, 19, 26, 33, 40, 48,
    41, 34, 27, 20, 13, 6,  7,  14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23,
    30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63};

// The same order for a block stored transposed (natural index v * 8 + u kept at u * 8 + v).
inline constexpr std::array<std::uint8_t, 64> jpeg_transposed_zigzag = [] {
    std::array<std::uint8_t, 64> t{};
    for (std::size_t k = 0; k < 64; ++k) t[k] = static_cast<std::uint8_t>(jpeg_zigzag[k] % 8 * 8 + jpeg_zigzag[k] / 8);
    return t;
}();

// T.81 Annex K.1, natural order; quality 50 uses them as they are.
inline constexpr std::array<std::uint8_t, 64> jpeg_luma_quant = {
    16, 11, 10, 16, 24,  40,  51,  61,  12, 12, 14, 19, 26,  58,  60,  55,
    14, 13, 16, 24, 40,  57,  69,  56,  14, 17, 22, 29, 51,  87,  80,  62,
    18, 22, 37, 56, 68,  109, 103, 77,  24, 35, 55, 64, 81,  104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99};
inline constexpr std::array<std::uint8_t, 64> jpeg_chroma_quant = {
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99,
    99, 99, 47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99};

// A Huffman table as DHT carries it (T.81 Annex K.3): how many codes of each length 1..16,
// then the symbols in code order.
struct jpeg_huffman_spec {
    std::array<std::uint8_t, 16> counts;
    std::array<std::uint8_t, 162> symbols;
    std::size_t symbol_count;
};

inline constexpr jpeg_huffman_spec jpeg_luma_dc = {
    {0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 12};
inline constexpr jpeg_huffman_spec jpeg_chroma_dc = {
    {0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 12};
inline constexpr jpeg_huffman_spec jpeg_luma_ac = {
    {0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d},
    {0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13, 0x51, 0x61, 0x07, 0x22, 0x71,
     0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15, 0x52, 0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72,
     0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37,
     0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59,
     0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83,
     0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3,
     0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2, 0xc3,
     0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda, 0xe1, 0xe2,
     0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa},
    162};
inline constexpr jpeg_huffman_spec jpeg_chroma_ac = {
    {0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77},
    {0x00, 0x01, 0x02, 0x03, 0x11, 0x04, 0x05, 0x21, 0x31, 0x06, 0x12, 0x41, 0x51, 0x07, 0x61, 0x71, 0x13, 0x22,
     0x32, 0x81, 0x08, 0x14, 0x42, 0x91, 0xa1, 0xb1, 0xc1, 0x09, 0x23, 0x33, 0x52, 0xf0, 0x15, 0x62, 0x72, 0xd1,
     0x0a, 0x16, 0x24, 0x34, 0xe1, 0x25, 0xf1, 0x17, 0x18, 0x19, 0x1a, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x35, 0x36,
     0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58,
     0x59, 0x5a, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a,
     0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a,
     0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba,
     0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
     0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa},
    162};

// Code and length per symbol, derived from a spec as T.81 Annex C does.
struct jpeg_huffman_codes {
    std::array<std::uint32_t, 256> code{};
    std::array<std::uint8_t, 256> length{};

    explicit jpeg_huffman_codes(const jpeg_huffman_spec& spec) {
        std::uint32_t next = 0;
        std::size_t symbol = 0;
        for (int bits = 1; bits <= 16; ++bits) {
            for (int i = 0; i < spec.counts[static_cast<std::size_t>(bits - 1)]; ++i, ++next, ++symbol) {
                code[spec.symbols[symbol]] = next;
                length[spec.symbols[symbol]] = static_cast<std::uint8_t>(bits);
            }
            next *= 2;
        }
    }
};

// The IJG quality scaling of a base table: 5000/q below 50, 200-2q from 50 up, clamped to 1..255.
inline std::array<std::uint8_t, 64> jpeg_scaled_quant(const std::array<std::uint8_t, 64>& base, int quality) {
    const int scale = quality < 50 ? 5000 / quality : 200 - 2 * quality;
    std::array<std::uint8_t, 64> out{};
    for (std::size_t i = 0; i < 64; ++i)
        out[i] = static_cast<std::uint8_t>(std::clamp((base[i] * scale + 50) / 100, 1, 255));
    return out;
}

// Bit count of |v| (the JPEG "category" SSSS), for |v| < 2048.
inline std::uint8_t jpeg_category(std::uint32_t magnitude) noexcept {
    static const std::array<std::uint8_t, 2048> table = [] {
        std::array<std::uint8_t, 2048> t{};
        for (std::size_t m = 1; m < t.size(); ++m) t[m] = static_cast<std::uint8_t>(t[m / 2] + 1);
        return t;
    }();
    return table[magnitude];
}

// Entropy-coded bytes, MSB first, with a 0x00 stuffed after every 0xFF. Bytes gather in a
// small local buffer that the caller drains into the output vector between blocks.
class jpeg_bit_writer {
public:
    // The most one block can produce: 64 codes of at most 16 + 11 bits, every byte stuffed.
    static constexpr std::size_t block_worst_case = 64 * 27 / 8 * 2 + 16;

    // Appends `count` (at most 27) bits; `bits` has nothing above them.
    void put(std::uint32_t bits, int count) noexcept {
        accumulator_ = (accumulator_ << count) | bits;
        pending_ += count;
        if (pending_ >= 32) {
            pending_ -= 32;
            emit_word(static_cast<std::uint32_t>(accumulator_ >> pending_));
        }
    }

    // Pads the last byte with 1 bits (T.81 F.1.2.3) and writes whatever is pending.
    void flush() noexcept {
        while (pending_ >= 8) {
            pending_ -= 8;
            emit_byte(static_cast<std::uint8_t>(accumulator_ >> pending_));
        }
        if (pending_ > 0) {
            const int pad = 8 - pending_;
            emit_byte(static_cast<std::uint8_t>((accumulator_ << pad) | ((1u << pad) - 1)));
            pending_ = 0;
        }
    }

    bool has_room_for(std::size_t blocks) const noexcept { return used_ + blocks * block_worst_case <= buffer_.size(); }
    void drain_into(std::vector<std::uint8_t>& out) {
        out.insert(out.end(), buffer_.data(), buffer_.data() + used_);
        used_ = 0;
    }

private:
    void emit_byte(std::uint8_t byte) noexcept {
        buffer_[used_++] = byte;
        if (byte == 0xff) buffer_[used_++] = 0;
    }
    void emit_word(std::uint32_t word) noexcept {
        // A byte is 0xff exactly when its complement is zero; the usual zero-byte test.
        const std::uint32_t inverted = ~word;
        if (((inverted - 0x01010101u) & ~inverted & 0x80808080u) == 0) {
            buffer_[used_] = static_cast<std::uint8_t>(word >> 24);
            buffer_[used_ + 1] = static_cast<std::uint8_t>(word >> 16);
            buffer_[used_ + 2] = static_cast<std::uint8_t>(word >> 8);
            buffer_[used_ + 3] = static_cast<std::uint8_t>(word);
            used_ += 4;
            return;
        }
        emit_byte(static_cast<std::uint8_t>(word >> 24));
        emit_byte(static_cast<std::uint8_t>(word >> 16));
        emit_byte(static_cast<std::uint8_t>(word >> 8));
        emit_byte(static_cast<std::uint8_t>(word));
    }

    std::uint64_t accumulator_ = 0;  // the low `pending_` bits are not written yet
    int pending_ = 0;
    std::size_t used_ = 0;
    std::array<std::uint8_t, 8192> buffer_;
};

// The AAN forward DCT down each of the 8 columns of a row-major block, in place. Output row k
// comes out scaled by 8 * aan_scale(k) relative to the orthonormal DCT (the 2-D scale is folded
// into the quantisation divisors). The columns are independent, so the compiler runs them
// side by side in vector registers.
inline void jpeg_fdct_columns(float* block) noexcept {
    for (std::size_t c = 0; c < 8; ++c) {
        float* d = block + c;
        const float s07 = d[0] + d[56], d07 = d[0] - d[56];
        const float s16 = d[8] + d[48], d16 = d[8] - d[48];
        const float s25 = d[16] + d[40], d25 = d[16] - d[40];
        const float s34 = d[24] + d[32], d34 = d[24] - d[32];

        const float even0 = s07 + s34, even3 = s07 - s34;
        const float even1 = s16 + s25, even2 = s16 - s25;
        d[0] = even0 + even1;
        d[32] = even0 - even1;
        const float rotated = (even2 + even3) * 0.707106781f;
        d[16] = even3 + rotated;
        d[48] = even3 - rotated;

        const float odd0 = d34 + d25, odd1 = d25 + d16, odd2 = d16 + d07;
        const float z5 = (odd0 - odd2) * 0.382683433f;
        const float z2 = 0.541196100f * odd0 + z5;
        const float z4 = 1.306562965f * odd2 + z5;
        const float z3 = odd1 * 0.707106781f;
        const float z11 = d07 + z3, z13 = d07 - z3;
        d[40] = z13 + z2;
        d[24] = z13 - z2;
        d[8] = z11 + z4;
        d[56] = z11 - z4;
    }
}

inline void jpeg_transpose(float* block) noexcept {
    for (std::size_t r = 0; r < 8; ++r)
        for (std::size_t c = r + 1; c < 8; ++c) std::swap(block[r * 8 + c], block[c * 8 + r]);
}

// A writer for one quality; write() is const and reentrant.
class jpeg_writer {
public:
    // quality 1..100 (checked by the caller). Chroma is subsampled 4:2:0 up to quality 90 and
    // kept at 4:4:4 above, as stb_image_write does (cjpeg's default is always 4:2:0).
    explicit jpeg_writer(int quality)
        : subsample_(quality <= 90),
          luma_quant_(jpeg_scaled_quant(jpeg_luma_quant, quality)),
          chroma_quant_(jpeg_scaled_quant(jpeg_chroma_quant, quality)),
          luma_dc_(jpeg_luma_dc),
          luma_ac_(jpeg_luma_ac),
          chroma_dc_(jpeg_chroma_dc),
          chroma_ac_(jpeg_chroma_ac) {
        static const double pi = std::acos(-1.0);
        std::array<double, 8> aan_scale{};
        for (std::size_t k = 0; k < 8; ++k) aan_scale[k] = k == 0 ? 1.0 : std::sqrt(2.0) * std::cos(static_cast<double>(k) * pi / 16);
        for (std::size_t v = 0; v < 8; ++v)
            for (std::size_t u = 0; u < 8; ++u) {
                const std::size_t natural = v * 8 + u, transposed = u * 8 + v;
                const double dct_scale = 8.0 * aan_scale[u] * aan_scale[v];
                luma_reciprocal_[transposed] = static_cast<float>(1.0 / (luma_quant_[natural] * dct_scale));
                chroma_reciprocal_[transposed] = static_cast<float>(1.0 / (chroma_quant_[natural] * dct_scale));
            }
    }

    bool subsamples_chroma() const noexcept { return subsample_; }

    // Replaces `out` with the JPEG of `image`: 1 or 2 channels give a gray JPEG, 3 or 4 a YCbCr
    // one; alpha (2 and 4) is ignored, as stb_image_write did. Rows may be any stride apart.
    void write(const image_view& image, std::vector<std::uint8_t>& out) const {
        check(image);
        const bool gray = image.channels <= 2;
        const bool subsample = subsample_ && !gray;
        const int mcu_size = subsample ? 16 : 8;
        const std::size_t padded_width = round_up(image.width, mcu_size);
        const std::size_t planes = gray ? 1 : 3;

        out.clear();
        out.reserve(static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.height) / 4 + 1024);
        write_headers(image, gray, subsample, out);

        // One MCU row of level-shifted samples per component, full resolution, edges replicated.
        std::vector<float> rows(planes * padded_width * static_cast<std::size_t>(mcu_size));
        const std::size_t plane_size = padded_width * static_cast<std::size_t>(mcu_size);
        jpeg_bit_writer bits;
        std::array<int, 3> previous_dc{};
        alignas(16) float block[64];

        for (int top = 0; top < image.height; top += mcu_size) {
            convert_rows(image, top, mcu_size, padded_width, gray, rows.data(), plane_size);
            for (std::size_t left = 0; left < padded_width; left += static_cast<std::size_t>(mcu_size)) {
                if (!bits.has_room_for(subsample ? 6 : planes)) bits.drain_into(out);
                const float* y_plane = rows.data() + left;
                if (subsample) {
                    for (std::size_t b = 0; b < 4; ++b) {
                        load_block(y_plane + (b / 2) * 8 * padded_width + (b % 2) * 8, padded_width, block);
                        encode_block(block, luma_reciprocal_, luma_dc_, luma_ac_, previous_dc[0], bits);
                    }
                    for (std::size_t c = 1; c < 3; ++c) {
                        load_subsampled_block(rows.data() + c * plane_size + left, padded_width, block);
                        encode_block(block, chroma_reciprocal_, chroma_dc_, chroma_ac_, previous_dc[c], bits);
                    }
                } else {
                    load_block(y_plane, padded_width, block);
                    encode_block(block, luma_reciprocal_, luma_dc_, luma_ac_, previous_dc[0], bits);
                    for (std::size_t c = 1; c < planes; ++c) {
                        load_block(rows.data() + c * plane_size + left, padded_width, block);
                        encode_block(block, chroma_reciprocal_, chroma_dc_, chroma_ac_, previous_dc[c], bits);
                    }
                }
            }
        }
        bits.flush();
        bits.drain_into(out);
        out.push_back(0xff);
        out.push_back(0xd9);  // EOI
    }

private:
    static std::size_t round_up(int value, int multiple) {
        const auto m = static_cast<std::size_t>(multiple);
        return (static_cast<std::size_t>(value) + m - 1) / m * m;
    }

    static void check(const image_view& image) {
        if (!image.pixels) throw error(errc::invalid_argument, "JPEG encoder: the image has no pixels");
        if (image.channels < 1 || image.channels > 4)
            throw error(errc::invalid_argument, "JPEG encoder: 1..4 channels, got " + std::to_string(image.channels));
        // SOF0 stores each dimension in 16 bits.
        if (image.width < 1 || image.height < 1 || image.width > 65535 || image.height > 65535)
            throw error(errc::invalid_argument, "JPEG encoder: size must be 1..65535 on each side, got " +
                                                    std::to_string(image.width) + "x" + std::to_string(image.height));
        if (image.stride < static_cast<std::size_t>(image.width) * static_cast<std::size_t>(image.channels))
            throw error(errc::invalid_argument, "JPEG encoder: stride is shorter than a row");
    }

    // Rows top..top+mcu_size of the image as level-shifted Y (and Cb, Cr) planes; columns past
    // the right edge repeat the last pixel and rows past the bottom repeat the last row, so the
    // decoder's edge blocks are not pulled towards black.
    static void convert_rows(const image_view& image, int top, int mcu_size, std::size_t padded_width, bool gray,
                             float* planes, std::size_t plane_size) {
        const auto width = static_cast<std::size_t>(image.width);
        const auto channels = static_cast<std::size_t>(image.channels);
        for (int r = 0; r < mcu_size; ++r) {
            const std::size_t offset = static_cast<std::size_t>(r) * padded_width;
            float* y = planes + offset;
            if (top + r >= image.height) {
                const std::size_t last = offset - padded_width;
                for (std::size_t p = 0; p < (gray ? 1u : 3u); ++p)
                    std::copy_n(planes + p * plane_size + last, padded_width, planes + p * plane_size + offset);
                continue;
            }
            const std::uint8_t* src = image.row(top + r);
            if (gray) {
                for (std::size_t x = 0; x < width; ++x) y[x] = static_cast<float>(src[x * channels]) - 128.0f;
                std::fill(y + width, y + padded_width, y[width - 1]);
                continue;
            }
            float* cb = y + plane_size;
            float* cr = cb + plane_size;
            for (std::size_t x = 0; x < width; ++x) {
                const std::uint8_t* p = src + x * channels;
                const float red = p[0], green = p[1], blue = p[2];
                y[x] = 0.299f * red + 0.587f * green + 0.114f * blue - 128.0f;
                cb[x] = -0.168736f * red - 0.331264f * green + 0.5f * blue;
                cr[x] = 0.5f * red - 0.418688f * green - 0.081312f * blue;
            }
            std::fill(y + width, y + padded_width, y[width - 1]);
            std::fill(cb + width, cb + padded_width, cb[width - 1]);
            std::fill(cr + width, cr + padded_width, cr[width - 1]);
        }
    }

    static void load_block(const float* src, std::size_t stride, float* block) noexcept {
        for (std::size_t r = 0; r < 8; ++r) std::copy_n(src + r * stride, 8, block + r * 8);
    }

    // The 2x2 average of a 16x16 area (4:2:0).
    static void load_subsampled_block(const float* src, std::size_t stride, float* block) noexcept {
        for (std::size_t r = 0; r < 8; ++r) {
            const float* upper = src + 2 * r * stride;
            const float* lower = upper + stride;
            for (std::size_t c = 0; c < 8; ++c)
                block[r * 8 + c] = 0.25f * (upper[2 * c] + upper[2 * c + 1] + lower[2 * c] + lower[2 * c + 1]);
        }
    }

    // The bits of a coefficient after its category (T.81 F.1.2.1): v itself when positive,
    // v - 1 in `category` bits (one's complement) when negative; computed without a shift of
    // a negative number.
    static std::uint32_t magnitude_bits(int value, int category) noexcept {
        return value >= 0 ? static_cast<std::uint32_t>(value)
                          : static_cast<std::uint32_t>(value + (1 << category) - 1);
    }

    static void encode_block(float* block, const std::array<float, 64>& reciprocal, const jpeg_huffman_codes& dc,
                             const jpeg_huffman_codes& ac, int& previous_dc, jpeg_bit_writer& bits) noexcept {
        // Columns, transpose, columns again: the block then holds the coefficient of vertical
        // frequency v and horizontal u (natural index v * 8 + u) at u * 8 + v, which the
        // transposed reciprocal and zigzag tables account for.
        jpeg_fdct_columns(block);
        jpeg_transpose(block);
        jpeg_fdct_columns(block);

        // Quantise, rounding half away from zero. Baseline allows DC in [-1024, 1023] (so a
        // difference fits category 11) and AC in [-1023, 1023] (category 10); the float DCT
        // can overshoot by a hair, so clamp (in float, before the conversion).
        std::array<int, 64> quantised;
        for (std::size_t i = 0; i < 64; ++i) {
            const float scaled = block[i] * reciprocal[i];
            const float rounded = scaled + (scaled < 0 ? -0.5f : 0.5f);
            quantised[i] = static_cast<int>(std::min(std::max(rounded, -1023.0f), 1023.0f));
        }
        const float dc_scaled = block[0] * reciprocal[0];
        quantised[0] = static_cast<int>(std::min(std::max(dc_scaled + (dc_scaled < 0 ? -0.5f : 0.5f), -1024.0f), 1023.0f));

        // Zigzag order is read through the table; the trailing zeros become one EOB.
        const auto at = [&quantised](int k) { return quantised[jpeg_transposed_zigzag[static_cast<std::size_t>(k)]]; };
        int last_nonzero = 63;
        while (last_nonzero > 0 && at(last_nonzero) == 0) --last_nonzero;

        const int diff = quantised[0] - previous_dc;
        previous_dc = quantised[0];
        const int dc_category = jpeg_category(static_cast<std::uint32_t>(diff < 0 ? -diff : diff));
        bits.put((dc.code[static_cast<std::size_t>(dc_category)] << dc_category) | magnitude_bits(diff, dc_category),
                 dc.length[static_cast<std::size_t>(dc_category)] + dc_category);

        int run = 0;
        for (int k = 1; k <= last_nonzero; ++k) {
            const int v = at(k);
            if (v == 0) {
                ++run;
                continue;
            }
            for (; run >= 16; run -= 16) bits.put(ac.code[0xf0], ac.length[0xf0]);  // ZRL: 16 zeros
            const int category = jpeg_category(static_cast<std::uint32_t>(v < 0 ? -v : v));
            const auto symbol = static_cast<std::size_t>(run * 16 + category);
            bits.put((ac.code[symbol] << category) | magnitude_bits(v, category), ac.length[symbol] + category);
            run = 0;
        }
        if (last_nonzero < 63) bits.put(ac.code[0x00], ac.length[0x00]);  // EOB
    }

    static void put_u16(std::vector<std::uint8_t>& out, std::size_t value) {
        out.push_back(static_cast<std::uint8_t>(value >> 8));
        out.push_back(static_cast<std::uint8_t>(value & 0xff));
    }

    static void put_huffman_table(std::vector<std::uint8_t>& out, std::uint8_t class_and_id, const jpeg_huffman_spec& spec) {
        out.push_back(class_and_id);
        out.insert(out.end(), spec.counts.begin(), spec.counts.end());
        out.insert(out.end(), spec.symbols.begin(), spec.symbols.begin() + static_cast<std::ptrdiff_t>(spec.symbol_count));
    }

    void write_headers(const image_view& image, bool gray, bool subsample, std::vector<std::uint8_t>& out) const {
        static const std::uint8_t start_and_jfif[] = {0xff, 0xd8,                          // SOI
                                                      0xff, 0xe0, 0,   16, 'J', 'F', 'I', 'F', 0,
                                                      1,    1,                             // version 1.01
                                                      0,    0,    1,   0,   1,             // no units, 1:1 aspect
                                                      0,    0};                            // no thumbnail
        out.insert(out.end(), std::begin(start_and_jfif), std::end(start_and_jfif));

        const std::size_t tables = gray ? 1 : 2;
        out.push_back(0xff);
        out.push_back(0xdb);  // DQT: 8-bit entries, zigzag order
        put_u16(out, 2 + 65 * tables);
        for (std::size_t t = 0; t < tables; ++t) {
            out.push_back(static_cast<std::uint8_t>(t));
            const auto& quant = t == 0 ? luma_quant_ : chroma_quant_;
            for (std::size_t k = 0; k < 64; ++k) out.push_back(quant[jpeg_zigzag[k]]);
        }

        const std::size_t components = gray ? 1 : 3;
        out.push_back(0xff);
        out.push_back(0xc0);  // SOF0
        put_u16(out, 8 + 3 * components);
        out.push_back(8);
        put_u16(out, static_cast<std::size_t>(image.height));
        put_u16(out, static_cast<std::size_t>(image.width));
        out.push_back(static_cast<std::uint8_t>(components));
        for (std::size_t c = 0; c < components; ++c) {
            out.push_back(static_cast<std::uint8_t>(c + 1));
            out.push_back(c == 0 && subsample ? 0x22 : 0x11);  // sampling factors H, V
            out.push_back(c == 0 ? 0 : 1);                     // quantisation table
        }

        const jpeg_huffman_spec* specs[4] = {&jpeg_luma_dc, &jpeg_luma_ac, &jpeg_chroma_dc, &jpeg_chroma_ac};
        const std::uint8_t ids[4] = {0x00, 0x10, 0x01, 0x11};  // class (DC 0, AC 1), table id
        std::size_t dht_length = 2;
        for (std::size_t t = 0; t < 2 * tables; ++t) dht_length += 17 + specs[t]->symbol_count;
        out.push_back(0xff);
        out.push_back(0xc4);  // DHT
        put_u16(out, dht_length);
        for (std::size_t t = 0; t < 2 * tables; ++t) put_huffman_table(out, ids[t], *specs[t]);

        out.push_back(0xff);
        out.push_back(0xda);  // SOS: every component, DC and AC tables 0 (luma) or 1 (chroma)
        put_u16(out, 6 + 2 * components);
        out.push_back(static_cast<std::uint8_t>(components));
        for (std::size_t c = 0; c < components; ++c) {
            out.push_back(static_cast<std::uint8_t>(c + 1));
            out.push_back(c == 0 ? 0x00 : 0x11);
        }
        out.push_back(0);   // spectral selection 0..63: sequential
        out.push_back(63);
        out.push_back(0);   // no successive approximation
    }

    bool subsample_;
    std::array<std::uint8_t, 64> luma_quant_;  // natural order, as DQT's source
    std::array<std::uint8_t, 64> chroma_quant_;
    std::array<float, 64> luma_reciprocal_{};  // transposed order: 1 / (quantiser * AAN scale)
    std::array<float, 64> chroma_reciprocal_{};
    jpeg_huffman_codes luma_dc_, luma_ac_, chroma_dc_, chroma_ac_;
};

}  // namespace detail
TILEKIT_NAMESPACE_END
// #include <tilekit/detail/stb.hpp>
// #include <tilekit/error.hpp>
// #include <tilekit/image.hpp>

#include <cstdint>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

namespace detail {
inline void append_to_vector(void* context, void* data, int size) {
    auto* out = static_cast<std::vector<std::uint8_t>*>(context);
    const auto* bytes = static_cast<const std::uint8_t*>(data);
    out->insert(out->end(), bytes, bytes + size);
}

// Every JPEG encoder takes the same quality range.
inline int checked_jpeg_quality(int quality) {
    if (quality < 1 || quality > 100)
        throw error(errc::invalid_argument, "JPEG quality must be 1..100, got " + std::to_string(quality));
    return quality;
}
}  // namespace detail

// Lossless PNG with stb's adaptive row filters and its built-in deflate.
class stb_png_encoder {
public:
    std::string extension() const { return "png"; }
    std::string content_type() const { return "image/png"; }
    bool supports_alpha() const noexcept { return true; }

    void encode(const image_view& tile, std::vector<std::uint8_t>& out) const {
        out.clear();
        if (!stbi_write_png_to_func(detail::append_to_vector, &out, tile.width, tile.height, tile.channels,
                                    tile.pixels, static_cast<int>(tile.stride)))
            throw error(errc::encode_failed, "PNG encoding failed (stb_image_write)");
    }
};

// Baseline JPEG written by tilekit itself (detail/jpeg_writer.hpp): JFIF, gray for 1 channel
// and YCbCr for 3, 4:2:0 chroma up to quality 90 and 4:4:4 above, Annex K Huffman tables.
// Alpha is flattened by the tiler before it gets here; called directly with 2 or 4 channels,
// the alpha channel is ignored. Rows may be any stride apart.
class baseline_jpeg_encoder {
public:
    explicit baseline_jpeg_encoder(int quality = 85) : quality_(detail::checked_jpeg_quality(quality)), writer_(quality_) {}
    std::string extension() const { return "jpg"; }
    std::string content_type() const { return "image/jpeg"; }
    bool supports_alpha() const noexcept { return false; }
    int quality() const noexcept { return quality_; }

    void encode(const image_view& tile, std::vector<std::uint8_t>& out) const { writer_.write(tile, out); }

private:
    int quality_;
    detail::jpeg_writer writer_;
};

TILEKIT_NAMESPACE_END
// #include <tilekit/progress.hpp>
// Progress reporting and cooperative cancellation for a tiling run.

// #include <tilekit/config.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

TILEKIT_NAMESPACE_BEGIN

struct tile_progress {
    std::uint64_t tiles_done = 0;   // tiles encoded and handed to the sink (skipped blanks count)
    std::uint64_t tiles_total = 0;  // tiles in the whole pyramid
};

// Called with non-decreasing tiles_done, from one thread at a time, at most about a thousand
// times per run and always once with tiles_done == tiles_total when the tiles are done.
using progress_callback = std::function<void(const tile_progress&)>;

// A cheap, copyable handle: every copy sees cancel() from any other copy, from any thread. Once
// cancelled it stays cancelled. A token can also cancel itself at a deadline (cancel_at): a job
// worker sets the time after which its lease can no longer be trusted, so the work stops then
// even if nobody is able to call cancel() (the thread that would is stuck talking to an
// unreachable job store). child() gives a token that is cancelled with its parent, and on its
// own without cancelling the parent: one job's deadline must not cancel the worker.
class cancel_token {
public:
    void cancel() noexcept { state_->cancelled.store(true, std::memory_order_relaxed); }

    bool is_cancelled() const noexcept {
        for (const state* s = state_.get(); s != nullptr; s = s->parent.get()) {
            if (s->cancelled.load(std::memory_order_relaxed)) return true;
            const std::int64_t deadline = s->deadline.load(std::memory_order_relaxed);
            if (deadline != no_deadline && std::chrono::steady_clock::now().time_since_epoch().count() >= deadline) {
                s->cancelled.store(true, std::memory_order_relaxed);  // a passed deadline stays passed
                return true;
            }
        }
        return false;
    }

    // Cancelled from `when` on, unless moved again before then.
    void cancel_at(std::chrono::steady_clock::time_point when) noexcept {
        state_->deadline.store(static_cast<std::int64_t>(when.time_since_epoch().count()), std::memory_order_relaxed);
    }

    cancel_token child() const {
        cancel_token token;
        token.state_->parent = state_;
        return token;
    }

private:
    static constexpr std::int64_t no_deadline = INT64_MAX;
    struct state {
        mutable std::atomic<bool> cancelled{false};
        std::atomic<std::int64_t> deadline{no_deadline};  // steady_clock ticks
        std::shared_ptr<const state> parent;
    };
    std::shared_ptr<state> state_ = std::make_shared<state>();
};

TILEKIT_NAMESPACE_END
// #include <tilekit/key.hpp>
// Storage keys are relative paths made of '/'-separated segments. Anything that could escape a
// directory or mean different things to different stores is refused up front.

// #include <tilekit/error.hpp>

#include <string>
#include <string_view>

TILEKIT_NAMESPACE_BEGIN

// Empty string when the key is acceptable, otherwise why it is not.
inline std::string key_problem(std::string_view key) {
    if (key.empty()) return "key is empty";
    if (key.size() > 1024) return "key is longer than 1024 bytes";
    if (key.front() == '/') return "key is absolute";
    for (const char ch : key) {
        if (ch == '\0') return "key contains a NUL byte";
        if (ch == '\\') return "key contains a backslash";
        if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) return "key contains a control character";
    }
    std::size_t start = 0;
    while (start <= key.size()) {
        std::size_t end = key.find('/', start);
        if (end == std::string_view::npos) end = key.size();
        const std::string_view segment = key.substr(start, end - start);
        if (segment.empty()) return "key has an empty path segment";
        if (segment == "..") return "key contains a '..' segment";
        if (segment == ".") return "key contains a '.' segment";
        start = end + 1;
    }
    return {};
}

// Throws tilekit::error(errc::invalid_key) naming the key and the problem.
inline void validate_key(std::string_view key) {
    const std::string problem = key_problem(key);
    if (!problem.empty()) {
        std::string shown;
        for (const char ch : key.substr(0, 200)) shown += (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ? '?' : ch;
        throw error(errc::invalid_key, "invalid storage key '" + shown + "': " + problem);
    }
}

// The content type of the objects a pyramid consists of, and of its source images, by the key's
// extension (case-sensitive, as tilekit writes them); "application/octet-stream" otherwise.
inline const char* content_type_for_key(std::string_view key) noexcept {
    struct by_extension {
        std::string_view extension;
        const char* type;
    };
    static constexpr by_extension table[] = {
        {".png", "image/png"},        {".jpg", "image/jpeg"},      {".jpeg", "image/jpeg"},
        {".json", "application/json"}, {".dzi", "application/xml"}, {".xml", "application/xml"},
        {".webp", "image/webp"},
    };
    for (const by_extension& row : table)
        if (key.size() >= row.extension.size() && key.substr(key.size() - row.extension.size()) == row.extension)
            return row.type;
    return "application/octet-stream";
}

TILEKIT_NAMESPACE_END
// #include <tilekit/sink.hpp>
// The storage-sink contract: where finished objects go. `storage_sink` is the one sink type;
// memory, filesystem and S3 sinks derive from it, and so does yours. The tiler calls put() once
// per tile through it: a virtual call is nothing next to encoding the tile (bench/run.sh).
//
//   put(object)   may be called from several threads at once; throws tilekit::error for
//                 failures it can see right away (a bad key, a full disk)
//   flush()       waits until everything put so far is stored, then throws the first failure
//                 (naming its key), if any
//   remove(key)   deletes an object and says whether the sink did. The default is for sinks
//                 that cannot delete: it removes nothing and returns false. Callers use it to
//                 retract a previous pyramid's manifests before overwriting its tiles, so a
//                 sink that cannot delete leaves them in place during a rerun.
//   read(key)     the object and its version tag (an opaque string; S3's ETag), or nothing
//   put_if(object, expected)
//                 compare-and-swap: stores the object only when the key's current version tag
//                 is `expected` (empty: only when the key does not exist). Atomic against every
//                 other put_if on the key, by any process that shares the store. The publish
//                 protocol (jobs/run_pointer.hpp) commits a run with one such write. Sinks that
//                 cannot do it say so with can_compare_and_put() == false.

// #include <tilekit/error.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

struct storage_object {
    std::string key;                 // relative, '/'-separated; see validate_key()
    std::vector<std::uint8_t> body;
    std::string content_type;        // e.g. "image/png"
    std::string cache_control;       // e.g. "public, max-age=86400"; empty for none
};

// An object as read back, with the tag that put_if() compares against.
struct versioned_object {
    storage_object object;
    std::string version;
};

// What put_if() did. stored: the object is now the key's content and `version` its new tag.
// Not stored: the condition did not hold, and `version` is the tag found (empty: no object).
struct conditional_put_result {
    bool stored = false;
    std::string version;
};

class storage_sink {
public:
    virtual ~storage_sink() = default;
    virtual void put(storage_object object) = 0;
    virtual void flush() = 0;
    // True when the object is gone because of this call (or, for stores that cannot tell, when
    // the delete was accepted); false when the sink cannot delete or there was nothing to remove.
    virtual bool remove(const std::string& key) {
        static_cast<void>(key);
        return false;
    }
    // Listing (see the top of this file): whether list() works, and every stored key that starts
    // with `prefix`, in any order.
    virtual bool can_list() const { return false; }
    virtual void list(const std::string& prefix, const std::function<void(const std::string& key)>& on_key) {
        static_cast<void>(prefix);
        static_cast<void>(on_key);
        throw error(errc::invalid_argument, "this storage sink cannot list its objects");
    }
    // Conditional writes (see the top of this file).
    virtual bool can_compare_and_put() const { return false; }
    virtual std::optional<versioned_object> read(const std::string& key) {
        static_cast<void>(key);
        throw error(errc::invalid_argument, "this storage sink cannot read its objects back");
    }
    virtual conditional_put_result put_if(storage_object object, const std::string& expected_version) {
        static_cast<void>(object);
        static_cast<void>(expected_version);
        throw error(errc::invalid_argument, "this storage sink cannot write conditionally");
    }
};

TILEKIT_NAMESPACE_END
// #include <tilekit/sinks/memory_sink.hpp>
// A thread-safe in-memory sink, for tests and for embedding.

// #include <tilekit/key.hpp>
// #include <tilekit/sink.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

class memory_sink final : public storage_sink {
public:
    void put(storage_object object) override {
        validate_key(object.key);
        std::lock_guard<std::mutex> lock(mutex_);
        ++put_count_;
        store_locked(std::move(object));
    }

    // Version tags are a counter of this sink's writes: every put gives the key a new tag, so
    // the compare in put_if() sees any write in between (no ABA).
    bool can_compare_and_put() const override { return true; }
    std::optional<versioned_object> read(const std::string& key) override {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto found = objects_.find(key);
        if (found == objects_.end()) return std::nullopt;
        return versioned_object{found->second, versions_.at(key)};
    }
    conditional_put_result put_if(storage_object object, const std::string& expected_version) override {
        validate_key(object.key);
        std::lock_guard<std::mutex> lock(mutex_);
        const auto found = versions_.find(object.key);
        const std::string current = found == versions_.end() ? std::string() : found->second;
        if (current != expected_version) return {false, current};
        ++put_count_;
        return {true, store_locked(std::move(object))};
    }

    void flush() override {}

    // Removes an object; true when it existed.
    bool remove(const std::string& key) override {
        std::lock_guard<std::mutex> lock(mutex_);
        versions_.erase(key);
        return objects_.erase(key) != 0;
    }

    bool can_list() const override { return true; }
    // The keys are copied first, so `on_key` may call remove().
    void list(const std::string& prefix, const std::function<void(const std::string&)>& on_key) override {
        std::vector<std::string> found;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            for (auto it = objects_.lower_bound(prefix); it != objects_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
                found.push_back(it->first);
        }
        for (const std::string& key : found) on_key(key);
    }

    std::optional<storage_object> get(const std::string& key) const {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto found = objects_.find(key);
        if (found == objects_.end()) return std::nullopt;
        return found->second;
    }

    bool contains(const std::string& key) const {
        std::lock_guard<std::mutex> lock(mutex_);
        return objects_.count(key) != 0;
    }

    std::vector<std::string> keys() const {
        std::lock_guard<std::mutex> lock(mutex_);
        std::vector<std::string> result;
        result.reserve(objects_.size());
        for (const auto& entry : objects_) result.push_back(entry.first);
        return result;
    }

    std::size_t size() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return objects_.size();
    }

    // Number of put() calls, including overwrites.
    std::size_t put_count() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return put_count_;
    }

private:
    std::string store_locked(storage_object object) {
        std::string version = "m" + std::to_string(++writes_);
        versions_[object.key] = version;
        std::string key = object.key;
        objects_[std::move(key)] = std::move(object);
        return version;
    }

    mutable std::mutex mutex_;
    std::map<std::string, storage_object> objects_;
    std::map<std::string, std::string> versions_;
    std::uint64_t writes_ = 0;
    std::size_t put_count_ = 0;
};

TILEKIT_NAMESPACE_END
// #include <tilekit/sinks/filesystem_sink.hpp>
// Writes each object to root/key, and never anywhere else. Keys are validated first, and every
// directory below the root is opened relative to its parent's descriptor with O_NOFOLLOW, so a
// symbolic link inside the root (to a directory, a file, or nowhere) is refused instead of
// followed, and a link swapped in after the check cannot redirect a write either: the sink only
// uses descriptors it opened itself. Each file is written to a short temporary name in its
// directory and renamed over the target, so a reader (or a crash) never sees a truncated object.
// Files are not fsync'ed (a pyramid is thousands of files); durability across power loss is the
// filesystem's. POSIX only (openat, mkdirat, renameat, unlinkat).
//
// Conditional writes (put_if) are a compare-and-swap under an exclusive fcntl() lock on one lock
// file per directory (".tk-cas-lock.tmp", never listed, never deleted: deleting a lock file that
// another writer has open would let two writers hold "the" lock). Under the lock the writer reads
// the key's current content, compares its tag with the expected one, and only then renames its
// temporary file over the key. Why this is safe:
//  - every put_if on a key takes the same lock, so read-compare-rename is one step for them all;
//  - the lock is an open-file-description lock (F_OFD_SETLKW) where Linux has it, so two threads
//    of one process exclude each other too, and closing another descriptor of the file does not
//    drop it (the trap of classic POSIX locks); elsewhere a classic lock plus a process mutex;
//  - fcntl() locks die with their process, so a crashed writer leaves no stale lock to break;
//  - on a shared volume (NFSv3 with lockd, NFSv4) fcntl() locks are taken on the server and two
//    hosts agree on them (flock() is not, on some systems, which is why it is not used);
//  - readers take no lock: rename() replaces the file atomically, so they see old or new;
//  - the tag is a hash of the content, not an inode number or mtime, so every host computes the
//    same tag. Equal content gives equal tags (like S3's ETag), which only means "the same state".
// A plain put() on the key bypasses the lock; the publish protocol never mixes the two.

// #include <tilekit/error.hpp>
// #include <tilekit/key.hpp>
// #include <tilekit/sink.hpp>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

// An owned file descriptor.
class unique_fd {
public:
    unique_fd() = default;
    explicit unique_fd(int fd) noexcept : fd_(fd) {}
    unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
    unique_fd& operator=(unique_fd&& other) noexcept {
        if (this != &other) {
            reset();
            fd_ = std::exchange(other.fd_, -1);
        }
        return *this;
    }
    unique_fd(const unique_fd&) = delete;
    unique_fd& operator=(const unique_fd&) = delete;
    ~unique_fd() { reset(); }
    int get() const noexcept { return fd_; }
    explicit operator bool() const noexcept { return fd_ >= 0; }
    void reset() noexcept {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    int release() noexcept { return std::exchange(fd_, -1); }

private:
    int fd_ = -1;
};

// NAME_MAX of common filesystems (ext4, xfs, btrfs, tmpfs): longer segments cannot be stored.
constexpr std::size_t max_name_bytes = 255;

}  // namespace detail

class filesystem_sink final : public storage_sink {
public:
    explicit filesystem_sink(std::filesystem::path root) : root_(std::move(root)) {
        std::error_code ec;
        std::filesystem::create_directories(root_, ec);
        if (ec) throw error(errc::io_error, "cannot create directory '" + root_.string() + "': " + ec.message());
        // The root itself is the caller's choice and may be reached through links; below it, nothing is.
        root_fd_ = detail::unique_fd(::open(root_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (!root_fd_) throw error(errc::io_error, "cannot open directory '" + root_.string() + "': " + std::strerror(errno));
    }

    const std::filesystem::path& root() const noexcept { return root_; }

    void put(storage_object object) override {
        const split_key parts = split(object.key);
        const std::shared_ptr<detail::unique_fd> directory = open_directory("store", object.key, parts.directories, true);
        // Short, fixed-length temporary names: a key segment may use all of NAME_MAX.
        const std::string temporary = ".tk" + instance_tag_ + std::to_string(next_temp_id_++) + ".tmp";
        write_file(directory->get(), temporary, object);
        if (::renameat(directory->get(), temporary.c_str(), directory->get(), parts.name.c_str()) != 0) {
            const int failure = errno;
            ::unlinkat(directory->get(), temporary.c_str(), 0);
            throw error(errc::io_error, "cannot store '" + object.key + "': rename failed: " + describe(failure));
        }
    }

    // Stores the file at `file` as the object `key`, moving it (the file is gone afterwards). A
    // rename when both are on one filesystem, so a large upload is never read back into memory;
    // otherwise a copy, in 1 MiB pieces, to a temporary name, renamed when complete.
    void put_file(const std::string& key, const std::filesystem::path& file) {
        const split_key parts = split(key);
        const std::shared_ptr<detail::unique_fd> directory = open_directory("store", key, parts.directories, true);
        if (::renameat(AT_FDCWD, file.c_str(), directory->get(), parts.name.c_str()) == 0) return;
        if (errno != EXDEV) throw error(errc::io_error, "cannot store '" + key + "': rename failed: " + describe(errno));
        detail::unique_fd in(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
        if (!in) throw error(errc::io_error, "cannot store '" + key + "': cannot open '" + file.string() + "': " + std::strerror(errno));
        const std::string temporary = ".tk" + instance_tag_ + std::to_string(next_temp_id_++) + ".tmp";
        detail::unique_fd out(::openat(directory->get(), temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666));
        if (!out) throw error(errc::io_error, "cannot store '" + key + "': " + describe(errno));
        std::vector<char> buffer(std::size_t{1} << 20);
        for (;;) {
            ssize_t n = ::read(in.get(), buffer.data(), buffer.size());
            if (n < 0 && errno == EINTR) continue;
            if (n == 0) break;
            for (ssize_t written = 0; n > 0 && written < n;) {
                const ssize_t w = ::write(out.get(), buffer.data() + written, static_cast<std::size_t>(n - written));
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) n = -1;
                else written += w;
            }
            if (n < 0) {
                const int failure = errno ? errno : EIO;
                out.reset();
                ::unlinkat(directory->get(), temporary.c_str(), 0);
                throw error(errc::io_error, "cannot store '" + key + "': " + std::strerror(failure));
            }
        }
        const int closed = ::close(out.release());
        if (closed != 0 || ::renameat(directory->get(), temporary.c_str(), directory->get(), parts.name.c_str()) != 0) {
            const int failure = errno;
            ::unlinkat(directory->get(), temporary.c_str(), 0);
            throw error(errc::io_error, "cannot store '" + key + "': " + describe(failure));
        }
        ::unlink(file.c_str());
    }

    // The object's file opened for reading (its descriptor, for sendfile or ranged reads), found
    // as writes find it: never through a link below the root. An empty descriptor when there is
    // no such object; a link in its place or on its path counts as none.
    detail::unique_fd open(const std::string& key) {
        const split_key parts = split(key);
        std::shared_ptr<detail::unique_fd> directory;
        try {
            directory = open_directory("read", key, parts.directories, false);
        } catch (const error&) {
            return {};  // a link or a file where a directory should be
        }
        if (!directory) return {};
        detail::unique_fd file(::openat(directory->get(), parts.name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        struct stat status {};
        if (!file || ::fstat(file.get(), &status) != 0 || !S_ISREG(status.st_mode)) return {};
        return file;
    }

    // Writes are synchronous, so there is nothing left to wait for.
    void flush() override {}

    // Removes an object; true when it existed. A symbolic link in its place is removed itself,
    // never what it points to.
    bool remove(const std::string& key) override {
        const split_key parts = split(key);
        const std::shared_ptr<detail::unique_fd> directory = open_directory("remove", key, parts.directories, false);
        if (!directory) return false;
        if (::unlinkat(directory->get(), parts.name.c_str(), 0) == 0) return true;
        if (errno == ENOENT) return false;
        throw error(errc::io_error, "cannot remove '" + key + "': " + describe(errno));
    }

    // Listing walks the directories below the prefix's own, opened as writes open them (relative
    // to their parent, never through a link). Symbolic links and other non-files are not objects
    // and are not listed; neither are this or another sink's temporary files (".tk*.tmp"), nor
    // names that are not valid keys. The keys are gathered first, so `on_key` may call remove().
    bool can_list() const override { return true; }
    void list(const std::string& prefix, const std::function<void(const std::string& key)>& on_key) override {
        const std::size_t slash = prefix.rfind('/');
        const std::string base = slash == std::string::npos ? std::string() : prefix.substr(0, slash + 1);
        std::vector<std::string> segments;
        if (!base.empty()) {
            segments = split(base + "_").directories;  // validates the segments
        }
        // The prefix's directory, opened as writes open theirs. Missing, a file, or a link on the
        // way: no object of this sink can be there, so there is nothing to list.
        detail::unique_fd start(::openat(root_fd_.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        int failure = start ? 0 : errno;
        for (std::size_t i = 0; i < segments.size() && start; ++i) {
            const int next = ::openat(start.get(), segments[i].c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            failure = next < 0 ? errno : 0;
            start = detail::unique_fd(next);
        }
        if (!start) {
            if (failure == ENOENT || failure == ENOTDIR || failure == ELOOP) return;
            throw error(errc::io_error, "cannot list '" + prefix + "': " + std::strerror(failure));
        }
        std::vector<std::string> keys;
        struct pending {
            detail::unique_fd directory;
            std::string key_prefix;
        };
        std::vector<pending> stack;
        stack.push_back({std::move(start), base});
        while (!stack.empty()) {
            pending current = std::move(stack.back());
            stack.pop_back();
            if (!current.directory) throw error(errc::io_error, "cannot list '" + prefix + "': " + std::strerror(errno));
            DIR* stream = ::fdopendir(current.directory.get());
            if (!stream) throw error(errc::io_error, "cannot list '" + current.key_prefix + "': " + std::strerror(errno));
            const int fd = current.directory.release();
            struct closer {
                DIR* stream;
                ~closer() { ::closedir(stream); }
            } close_stream{stream};
            while (const dirent* entry = ::readdir(stream)) {
                const std::string name = entry->d_name;
                if (name == "." || name == ".." || is_temporary(name)) continue;
                const std::string key = current.key_prefix + name;
                struct stat status {};
                if (::fstatat(fd, name.c_str(), &status, AT_SYMLINK_NOFOLLOW) != 0) continue;  // gone meanwhile
                if (S_ISDIR(status.st_mode)) {
                    // Only directories that can hold a matching key ("a/b/" for prefix "a/b/c" or "a/").
                    const std::string directory = key + "/";
                    if (!starts_with(directory, prefix) && !starts_with(prefix, directory)) continue;
                    detail::unique_fd child(::openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
                    if (child) stack.push_back({std::move(child), directory});
                } else if (S_ISREG(status.st_mode) && starts_with(key, prefix) && key_problem(key).empty()) {
                    keys.push_back(key);
                }
            }
        }
        for (const std::string& key : keys) on_key(key);
    }

    bool can_compare_and_put() const override { return true; }

    std::optional<versioned_object> read(const std::string& key) override {
        const split_key parts = split(key);
        const std::shared_ptr<detail::unique_fd> directory = open_directory("read", key, parts.directories, false);
        if (!directory) return std::nullopt;
        std::optional<std::vector<std::uint8_t>> body = read_file(directory->get(), parts.name, key);
        if (!body) return std::nullopt;
        versioned_object found;
        found.version = content_tag(*body);
        found.object.key = key;
        found.object.body = std::move(*body);
        return found;
    }

    conditional_put_result put_if(storage_object object, const std::string& expected_version) override {
        const split_key parts = split(object.key);
        const std::shared_ptr<detail::unique_fd> directory = open_directory("store", object.key, parts.directories, true);
        detail::unique_fd lock(::openat(directory->get(), ".tk-cas-lock.tmp", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0666));
        if (!lock) throw error(errc::io_error, "cannot store '" + object.key + "': cannot open its lock file: " + describe(errno));
#ifdef F_OFD_SETLKW
        const int lock_command = F_OFD_SETLKW;
#else
        const int lock_command = F_SETLKW;
        std::lock_guard<std::mutex> in_process(cas_mutex_);
#endif
        struct flock whole {};
        whole.l_type = F_WRLCK;
        whole.l_whence = SEEK_SET;
        while (::fcntl(lock.get(), lock_command, &whole) != 0) {
            if (errno != EINTR) throw error(errc::io_error, "cannot lock '" + object.key + "': " + std::strerror(errno));
        }
        // Held until `lock` is closed (on every path out of here).
        const std::optional<std::vector<std::uint8_t>> current = read_file(directory->get(), parts.name, object.key);
        const std::string current_version = current ? content_tag(*current) : std::string();
        if (current_version != expected_version) return {false, current_version};
        const std::string version = content_tag(object.body);
        const std::string temporary = ".tk" + instance_tag_ + std::to_string(next_temp_id_++) + ".tmp";
        write_file(directory->get(), temporary, object);
        if (::renameat(directory->get(), temporary.c_str(), directory->get(), parts.name.c_str()) != 0) {
            const int failure = errno;
            ::unlinkat(directory->get(), temporary.c_str(), 0);
            throw error(errc::io_error, "cannot store '" + object.key + "': rename failed: " + describe(failure));
        }
        return {true, version};
    }

private:
    // "fs-<size>-<FNV-1a 64>": the same on every host that reads the same bytes.
    static std::string content_tag(const std::vector<std::uint8_t>& body) {
        std::uint64_t hash = 1469598103934665603ull;
        for (const std::uint8_t byte : body) {
            hash ^= byte;
            hash *= 1099511628211ull;
        }
        char text[64];
        std::snprintf(text, sizeof text, "fs-%zu-%016llx", body.size(), static_cast<unsigned long long>(hash));
        return text;
    }

    // A regular file's bytes, or nothing when there is no such file.
    static std::optional<std::vector<std::uint8_t>> read_file(int directory, const std::string& name, const std::string& key) {
        detail::unique_fd file(::openat(directory, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        if (!file) {
            if (errno == ENOENT) return std::nullopt;
            throw error(errc::io_error, "cannot read '" + key + "': " + describe(errno));
        }
        std::vector<std::uint8_t> body;
        std::uint8_t buffer[65536];
        for (;;) {
            const ssize_t n = ::read(file.get(), buffer, sizeof buffer);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) throw error(errc::io_error, "cannot read '" + key + "': " + std::strerror(errno));
            if (n == 0) break;
            body.insert(body.end(), buffer, buffer + n);
        }
        return body;
    }

    static bool starts_with(const std::string& text, const std::string& start) {
        return text.size() >= start.size() && text.compare(0, start.size(), start) == 0;
    }
    static bool is_temporary(const std::string& name) {
        return name.size() > 7 && name.compare(0, 3, ".tk") == 0 && name.compare(name.size() - 4, 4, ".tmp") == 0;
    }

    struct split_key {
        std::vector<std::string> directories;
        std::string name;
    };

    static split_key split(const std::string& key) {
        validate_key(key);
        split_key parts;
        std::size_t start = 0;
        for (std::size_t slash = key.find('/'); slash != std::string::npos; slash = key.find('/', start)) {
            parts.directories.push_back(key.substr(start, slash - start));
            start = slash + 1;
        }
        parts.name = key.substr(start);
        const auto check_length = [&](const std::string& segment) {
            if (segment.size() > detail::max_name_bytes)
                throw error(errc::invalid_key, "invalid storage key '" + key.substr(0, 200) + "...': a segment is " +
                                                   std::to_string(segment.size()) +
                                                   " bytes, more than a file name can hold (255)");
        };
        for (const std::string& directory : parts.directories) check_length(directory);
        check_length(parts.name);
        return parts;
    }

    static std::string describe(int failure) {
        if (failure == ELOOP || failure == ENOTDIR)
            return "a part of its path is a symbolic link or not a directory (the sink never follows links below its root)";
        return std::strerror(failure);
    }

    // The directory of a key, opened segment by segment below the root without following links;
    // created when `create`, else null when it does not exist. Cached, so a pyramid's thousands
    // of tiles walk each directory once.
    std::shared_ptr<detail::unique_fd> open_directory(const char* verb, const std::string& key,
                                                      const std::vector<std::string>& segments, bool create) {
        const std::string failed = std::string("cannot ") + verb + " '" + key + "': ";
        std::string relative;
        for (const std::string& segment : segments) relative += segment + "/";
        {
            std::lock_guard<std::mutex> lock(mutex_);
            const auto found = directories_.find(relative);
            if (found != directories_.end()) {
                // A cached directory that was deleted since (someone emptied the output folder
                // mid-run) would take writes that nobody can see: walk the path again instead.
                struct stat status {};
                if (::fstat(found->second->get(), &status) == 0 && status.st_nlink > 0) return found->second;
                directories_.erase(found);
            }
        }
        int parent = root_fd_.get();
        detail::unique_fd current;
        for (const std::string& segment : segments) {
            detail::unique_fd next(::openat(parent, segment.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            if (!next && errno == ENOENT) {
                if (!create) return nullptr;
                if (::mkdirat(parent, segment.c_str(), 0777) != 0 && errno != EEXIST)
                    throw error(errc::io_error, failed + "cannot create directory '" + segment + "': " + describe(errno));
                next = detail::unique_fd(::openat(parent, segment.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
            }
            if (!next) throw error(errc::io_error, failed + describe(errno));
            current = std::move(next);
            parent = current.get();
        }
        auto directory = std::make_shared<detail::unique_fd>(current ? std::move(current)
                                                                     : detail::unique_fd(::dup(root_fd_.get())));
        if (!*directory) throw error(errc::io_error, failed + std::strerror(errno));
        std::lock_guard<std::mutex> lock(mutex_);
        // Bounded: a sink writing into very many directories keeps at most this many open.
        if (directories_.size() >= 512) directories_.clear();
        return directories_.emplace(relative, std::move(directory)).first->second;
    }

    static void write_file(int directory, const std::string& name, const storage_object& object) {
        // O_EXCL | O_NOFOLLOW: never write through something that already sits at the name.
        detail::unique_fd file(::openat(directory, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666));
        if (!file) throw error(errc::io_error, "cannot store '" + object.key + "': " + describe(errno));
        std::size_t written = 0;
        while (written < object.body.size()) {
            const ssize_t n = ::write(file.get(), object.body.data() + written, object.body.size() - written);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                const int failure = n < 0 ? errno : EIO;
                file.reset();
                ::unlinkat(directory, name.c_str(), 0);
                throw error(errc::io_error, "cannot store '" + object.key + "': " + std::strerror(failure));
            }
            written += static_cast<std::size_t>(n);
        }
        if (::close(file.release()) != 0) {  // close() can report a delayed write error
            const int failure = errno;
            ::unlinkat(directory, name.c_str(), 0);
            throw error(errc::io_error, "cannot store '" + object.key + "': " + std::strerror(failure));
        }
    }

    std::filesystem::path root_;
    detail::unique_fd root_fd_;
    std::mutex mutex_;
    std::map<std::string, std::shared_ptr<detail::unique_fd>> directories_;
    // Temporary names carry a random tag per sink, so two processes writing into the same
    // directory never share a temporary file (O_EXCL would refuse it anyway).
    std::string instance_tag_ = [] {
        std::random_device random;
        char tag[16];
        std::snprintf(tag, sizeof tag, "%08x", static_cast<unsigned>(random()));
        return std::string(tag) + "-";
    }();
    std::atomic<unsigned long long> next_temp_id_{0};
#ifndef F_OFD_SETLKW
    std::mutex cas_mutex_;
#endif
};

TILEKIT_NAMESPACE_END
// #include <tilekit/source.hpp>
// The image-source contract, the read-side twin of storage_sink: it makes the image behind a
// storage key available as a local file (for the streaming decoders), refusing anything over a
// size limit. Files it creates live in the scratch directory the caller gives it, and the caller
// removes them. The S3 part adds s3::object_source and s3::presigned_url_source.

// #include <tilekit/error.hpp>
// #include <tilekit/key.hpp>
// #include <tilekit/progress.hpp>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

class image_source {
public:
    virtual ~image_source() = default;
    // The path of a local file holding the image at `key`; throws tilekit::error (not_found,
    // image_too_large, access_denied, storage_error, ...) with a message a user can act on.
    virtual std::string fetch(const std::string& key, const std::filesystem::path& scratch_dir,
                              std::uint64_t max_bytes) = 0;
    // The same, for a caller that may be cancelled meanwhile (a job): throws cancelled_error once
    // `cancel` is cancelled. This default checks before and after fetch(); a source whose
    // transfer can be stopped part-way overrides it to watch the token during the transfer too.
    virtual std::string fetch_cancellable(const std::string& key, const std::filesystem::path& scratch_dir,
                                          std::uint64_t max_bytes, const cancel_token& cancel) {
        if (cancel.is_cancelled()) throw cancelled_error();
        std::string path = fetch(key, scratch_dir, max_bytes);
        if (cancel.is_cancelled()) throw cancelled_error();
        return path;
    }
};

namespace detail {

inline void refuse_oversized(const std::string& key, std::uint64_t size, std::uint64_t max_bytes) {
    refuse_over_limit("source image '" + key + "'", size, max_bytes, "bytes");
}

}  // namespace detail

// Images under a root directory, read in place (nothing is copied).
class filesystem_source final : public image_source {
public:
    explicit filesystem_source(std::filesystem::path root) : root_(std::move(root)) {}

    std::string fetch(const std::string& key, const std::filesystem::path&, std::uint64_t max_bytes) override {
        validate_key(key);
        const std::filesystem::path path = root_ / key;
        std::error_code ec;
        const auto size = std::filesystem::file_size(path, ec);
        if (ec) throw error(errc::not_found, "source image '" + key + "' not found");
        detail::refuse_oversized(key, size, max_bytes);
        return path.string();
    }

private:
    std::filesystem::path root_;
};

// Images held in memory (tests, embedding); written to the scratch directory when fetched.
class memory_source final : public image_source {
public:
    void add(const std::string& key, std::vector<std::uint8_t> bytes) {
        validate_key(key);
        std::lock_guard<std::mutex> lock(mutex_);
        objects_[key] = std::move(bytes);
    }

    std::string fetch(const std::string& key, const std::filesystem::path& scratch_dir, std::uint64_t max_bytes) override {
        std::vector<std::uint8_t> bytes;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            const auto found = objects_.find(key);
            if (found == objects_.end()) throw error(errc::not_found, "source image '" + key + "' not found");
            bytes = found->second;
        }
        detail::refuse_oversized(key, bytes.size(), max_bytes);
        const std::filesystem::path path = scratch_dir / "source";
        std::FILE* file = std::fopen(path.c_str(), "wb");
        const bool ok = file && std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size();
        if (file && std::fclose(file) != 0) throw error(errc::io_error, "cannot write '" + path.string() + "'");
        if (!ok) throw error(errc::io_error, "cannot write '" + path.string() + "'");
        return path.string();
    }

private:
    std::mutex mutex_;
    std::map<std::string, std::vector<std::uint8_t>> objects_;
};

TILEKIT_NAMESPACE_END
// #include <tilekit/metadata.hpp>
// The JSON document written beside every pyramid (and returned by the tiler).

// #include <tilekit/layout.hpp>
// #include <tilekit/version.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

struct pyramid_metadata {
    std::string layout;          // "dz", "xyz" or "iiif"
    std::string format;          // tile file extension: "png", "jpg" or "webp"
    std::string source_format;   // the input's format ("png", "jpeg", "tiff", "webp"); empty if not known
    nlohmann::json encoding = nlohmann::json::object();  // the encoder's settings, e.g. {"quality": 85}
    int width = 0;               // full-resolution image
    int height = 0;
    int channels = 0;            // of the source image
    int tile_size = 0;
    int overlap = 0;
    int levels = 0;              // number of levels (Deep Zoom) or zooms (XYZ)
    int min_level = 0;
    int max_level = 0;           // full resolution
    std::uint64_t tile_count = 0;     // tiles written (IIIF: with the full/ copies of the last level)
    std::uint64_t skipped_tiles = 0;  // blank tiles not written (skip_blank_tiles)
    std::uint64_t total_bytes = 0;    // bytes of all tiles written
    std::string tile_url_template;    // relative to the pyramid's prefix
    std::string manifest;             // layout manifest key relative to the prefix ("image.dzi"), or empty
    std::vector<level_geometry> level_sizes;  // lowest level first
};

inline void to_json(nlohmann::json& j, const level_geometry& level) {
    j = nlohmann::json{{"level", level.index}, {"width", level.width},    {"height", level.height},
                       {"columns", level.columns}, {"rows", level.rows}};
}

inline void from_json(const nlohmann::json& j, level_geometry& level) {
    j.at("level").get_to(level.index);
    j.at("width").get_to(level.width);
    j.at("height").get_to(level.height);
    j.at("columns").get_to(level.columns);
    j.at("rows").get_to(level.rows);
}

inline void to_json(nlohmann::json& j, const pyramid_metadata& m) {
    j = nlohmann::json{{"generator", std::string("tilekit ") + TILEKIT_VERSION},
                       {"layout", m.layout},
                       {"format", m.format},
                       {"encoding", m.encoding},
                       {"source_format", m.source_format},
                       {"width", m.width},
                       {"height", m.height},
                       {"channels", m.channels},
                       {"tile_size", m.tile_size},
                       {"overlap", m.overlap},
                       {"levels", m.levels},
                       {"min_level", m.min_level},
                       {"max_level", m.max_level},
                       {"tile_count", m.tile_count},
                       {"skipped_tiles", m.skipped_tiles},
                       {"total_bytes", m.total_bytes},
                       {"tile_url_template", m.tile_url_template},
                       {"manifest", m.manifest},
                       {"level_sizes", m.level_sizes}};
}

inline void from_json(const nlohmann::json& j, pyramid_metadata& m) {
    j.at("layout").get_to(m.layout);
    j.at("format").get_to(m.format);
    m.source_format = j.value("source_format", std::string());
    if (j.contains("encoding") && j.at("encoding").is_object()) m.encoding = j.at("encoding");
    j.at("width").get_to(m.width);
    j.at("height").get_to(m.height);
    m.channels = j.value("channels", 0);
    j.at("tile_size").get_to(m.tile_size);
    j.at("overlap").get_to(m.overlap);
    j.at("levels").get_to(m.levels);
    j.at("min_level").get_to(m.min_level);
    j.at("max_level").get_to(m.max_level);
    j.at("tile_count").get_to(m.tile_count);
    m.skipped_tiles = j.value("skipped_tiles", std::uint64_t{0});
    j.at("total_bytes").get_to(m.total_bytes);
    m.tile_url_template = j.value("tile_url_template", std::string());
    m.manifest = j.value("manifest", std::string());
    if (j.contains("level_sizes")) j.at("level_sizes").get_to(m.level_sizes);
}

TILEKIT_NAMESPACE_END
// #include <tilekit/tiler.hpp>
// The pyramid tiler: a row-streaming pipeline in the manner of libvips. A row source hands
// full-resolution rows top to bottom; each level keeps only the band of rows its current tile
// row needs, cuts tiles as soon as the band is complete, and feeds every pair of its rows,
// reduced 2x2, to the next level. Tiles are encoded on a pool of threads and handed to the sink
// as they are made; the layout's manifest and the JSON metadata are written last, after the
// sink has confirmed every tile, so their presence means the pyramid is complete.

// #include <tilekit/detail/downsample.hpp>
// The 2x2 box filter that makes each pyramid level from the one above it. With an alpha
// channel the colour is averaged weighted by alpha (premultiplied), so fully transparent
// pixels - whatever colour they hold - do not bleed dark fringes into lower levels. An odd
// last column or row is paired with itself, so edge pixels are averaged exactly.

// #include <tilekit/config.hpp>

#include <cstddef>
#include <cstdint>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

template <int Channels>
inline void downsample_pixel(const std::uint8_t* p00, const std::uint8_t* p01, const std::uint8_t* p10,
                             const std::uint8_t* p11, std::uint8_t* out) noexcept {
    constexpr bool has_alpha = Channels == 2 || Channels == 4;
    if constexpr (!has_alpha) {
        for (int c = 0; c < Channels; ++c)
            out[c] = static_cast<std::uint8_t>((p00[c] + p01[c] + p10[c] + p11[c] + 2) >> 2);
    } else {
        constexpr int a = Channels - 1;
        const unsigned alpha_sum = unsigned{p00[a]} + p01[a] + p10[a] + p11[a];
        if (alpha_sum == 0) {
            for (int c = 0; c < Channels; ++c) out[c] = 0;
            return;
        }
        for (int c = 0; c < a; ++c) {
            const unsigned weighted = unsigned{p00[c]} * p00[a] + unsigned{p01[c]} * p01[a] +
                                      unsigned{p10[c]} * p10[a] + unsigned{p11[c]} * p11[a];
            out[c] = static_cast<std::uint8_t>((weighted + alpha_sum / 2) / alpha_sum);
        }
        out[a] = static_cast<std::uint8_t>((alpha_sum + 2) >> 2);
    }
}

// Byte offset of pixel x in a row: in size_t, since a row may be wider than 2^31 bytes
// (a 2^30-pixel RGBA row is 4 GiB), which int arithmetic would overflow.
constexpr std::size_t pixel_offset(int x, int channels) noexcept {
    return static_cast<std::size_t>(x) * static_cast<std::size_t>(channels);
}

// Reduces two rows (`lower` may equal `upper` for an odd last row) of `width` pixels to one
// row of ceil(width / 2) pixels.
template <int Channels>
inline void downsample_rows(const std::uint8_t* upper, const std::uint8_t* lower, int width, std::uint8_t* out) noexcept {
    const int pairs = width / 2;
    for (int x = 0; x < pairs; ++x) {
        const std::size_t in = pixel_offset(x, 2 * Channels);
        downsample_pixel<Channels>(upper + in, upper + in + Channels, lower + in, lower + in + Channels,
                                   out + pixel_offset(x, Channels));
    }
    if (width % 2) {
        const std::size_t last = pixel_offset(width - 1, Channels);
        downsample_pixel<Channels>(upper + last, upper + last, lower + last, lower + last,
                                   out + pixel_offset(pairs, Channels));
    }
}

inline void downsample_rows(int channels, const std::uint8_t* upper, const std::uint8_t* lower, int width,
                            std::uint8_t* out) noexcept {
    switch (channels) {
        case 1: downsample_rows<1>(upper, lower, width, out); break;
        case 2: downsample_rows<2>(upper, lower, width, out); break;
        case 3: downsample_rows<3>(upper, lower, width, out); break;
        default: downsample_rows<4>(upper, lower, width, out); break;
    }
}

}  // namespace detail
TILEKIT_NAMESPACE_END
// #include <tilekit/detail/progress_reporter.hpp>
// Turns per-tile completions from many threads into a short, monotonic series of callbacks.

// #include <tilekit/progress.hpp>

#include <atomic>
#include <cstdint>
#include <mutex>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

class progress_reporter {
public:
    progress_reporter(progress_callback callback, std::uint64_t total)
        : callback_(std::move(callback)), total_(total), step_(total <= 1000 ? 1 : (total + 999) / 1000) {}

    void tile_finished() {
        const std::uint64_t done = done_.fetch_add(1, std::memory_order_relaxed) + 1;
        if (!callback_ || (done % step_ != 0 && done != total_)) return;
        std::lock_guard<std::mutex> lock(mutex_);
        const std::uint64_t now = done_.load(std::memory_order_relaxed);
        if (now <= reported_) return;  // a later thread already reported a higher count
        reported_ = now;
        callback_(tile_progress{now, total_});
    }

    std::uint64_t done() const noexcept { return done_.load(std::memory_order_relaxed); }

private:
    progress_callback callback_;
    const std::uint64_t total_;
    const std::uint64_t step_;
    std::atomic<std::uint64_t> done_{0};
    std::mutex mutex_;
    std::uint64_t reported_ = 0;
};

}  // namespace detail
TILEKIT_NAMESPACE_END
// #include <tilekit/detail/task_pool.hpp>
// A fixed set of worker threads with a bounded queue. When the queue is full the submitting
// thread runs the task itself, which both bounds memory (at most `capacity` finished-but-unsent
// tiles wait) and keeps every core busy. The first exception from a task is kept and rethrown
// by wait(); later tasks are then dropped.

// #include <tilekit/config.hpp>

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

class task_pool {
public:
    task_pool(unsigned workers, std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {
        threads_.reserve(workers);
        for (unsigned i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
    }

    task_pool(const task_pool&) = delete;
    task_pool& operator=(const task_pool&) = delete;

    ~task_pool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
            queue_.clear();
        }
        wake_workers_.notify_all();
        for (auto& thread : threads_) thread.join();
    }

    void submit(std::function<void()> task) {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            if (failure_) return;
            if (!threads_.empty() && queue_.size() < capacity_) {
                queue_.push_back(std::move(task));
                ++pending_;
                lock.unlock();
                wake_workers_.notify_one();
                return;
            }
            ++pending_;
        }
        run(task);
    }

    // Waits for every submitted task, then rethrows the first failure.
    void wait() {
        std::unique_lock<std::mutex> lock(mutex_);
        all_done_.wait(lock, [this] { return pending_ == 0; });
        if (failure_) std::rethrow_exception(failure_);
    }

    bool failed() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return failure_ != nullptr;
    }

private:
    void run(std::function<void()>& task) {
        try {
            task();
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!failure_) failure_ = std::current_exception();
            pending_ -= queue_.size();
            queue_.clear();
        }
        std::lock_guard<std::mutex> lock(mutex_);
        if (--pending_ == 0) all_done_.notify_all();
    }

    void work() {
        for (;;) {
            std::function<void()> task;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_workers_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
                if (stopping_) return;
                task = std::move(queue_.front());
                queue_.pop_front();
            }
            run(task);
        }
    }

    const std::size_t capacity_;
    mutable std::mutex mutex_;
    std::condition_variable wake_workers_;
    std::condition_variable all_done_;
    std::deque<std::function<void()>> queue_;
    std::vector<std::thread> threads_;
    std::size_t pending_ = 0;
    std::exception_ptr failure_;
    bool stopping_ = false;
};

}  // namespace detail
TILEKIT_NAMESPACE_END
// #include <tilekit/detail/tile_pixels.hpp>
// Cutting one tile out of a level's row band: crop, pad to the layout's tile size, add an alpha
// channel for transparent padding, or flatten alpha onto a background for encoders without it.

// #include <tilekit/config.hpp>
// #include <tilekit/image.hpp>
// #include <tilekit/layout.hpp>

#include <cstdint>
#include <cstring>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

namespace detail {

struct tile_pixel_format {
    int source_channels = 0;
    int tile_channels = 0;
    rgba_color fill;          // padding colour (transparent when the tile has alpha and no background was set)
    bool flatten = false;     // source alpha is composited onto `fill` (encoder has no alpha)
};

// The channel count of a tile: encoders without alpha get gray or RGB; padded edges with no
// background colour get an alpha channel so the padding can be transparent.
inline tile_pixel_format choose_tile_format(int source_channels, bool encoder_has_alpha, bool padded,
                                            const rgba_color* background) {
    tile_pixel_format format;
    format.source_channels = source_channels;
    const bool source_alpha = source_channels == 2 || source_channels == 4;
    const int color_channels = source_channels <= 2 ? 1 : 3;
    if (!encoder_has_alpha) {
        format.tile_channels = color_channels;
        format.fill = background ? *background : rgba_color{};
        format.fill.a = 255;
        format.flatten = source_alpha;
    } else if (padded && !background && !source_alpha) {
        format.tile_channels = color_channels + 1;
        format.fill = rgba_color{0, 0, 0, 0};
    } else {
        format.tile_channels = source_channels;
        format.fill = background ? *background : rgba_color{0, 0, 0, 0};
    }
    return format;
}

inline void fill_pixel(const rgba_color& color, int channels, std::uint8_t* out) {
    const auto luma = static_cast<std::uint8_t>((77u * color.r + 150u * color.g + 29u * color.b + 128u) >> 8);
    switch (channels) {
        case 1: out[0] = luma; break;
        case 2: out[0] = luma; out[1] = color.a; break;
        case 3: out[0] = color.r; out[1] = color.g; out[2] = color.b; break;
        default: out[0] = color.r; out[1] = color.g; out[2] = color.b; out[3] = color.a; break;
    }
}

inline std::uint8_t blend(std::uint8_t value, std::uint8_t alpha, std::uint8_t background) {
    return static_cast<std::uint8_t>((unsigned{value} * alpha + unsigned{background} * (255u - alpha) + 127u) / 255u);
}

// Copies `width` source pixels into a tile row of `format.tile_channels`.
inline void convert_row(const std::uint8_t* in, int width, const tile_pixel_format& format, std::uint8_t* out) {
    const int sc = format.source_channels;
    const int tc = format.tile_channels;
    if (sc == tc) {
        std::memcpy(out, in, static_cast<std::size_t>(width) * static_cast<std::size_t>(sc));
        return;
    }
    if (format.flatten) {  // 2 -> 1 or 4 -> 3
        const std::uint8_t bg[3] = {format.fill.r, format.fill.g, format.fill.b};
        const std::uint8_t bg_gray = static_cast<std::uint8_t>(
            (77u * format.fill.r + 150u * format.fill.g + 29u * format.fill.b + 128u) >> 8);
        for (int x = 0; x < width; ++x, in += sc, out += tc) {
            const std::uint8_t alpha = in[sc - 1];
            for (int c = 0; c < tc; ++c) out[c] = blend(in[c], alpha, tc == 1 ? bg_gray : bg[c]);
        }
        return;
    }
    // 1 -> 2 or 3 -> 4: opaque pixels gain an alpha channel.
    for (int x = 0; x < width; ++x, in += sc, out += tc) {
        for (int c = 0; c < sc; ++c) out[c] = in[c];
        out[sc] = 255;
    }
}

// True when every source pixel of the region is fully transparent.
inline bool region_is_blank(const std::uint8_t* const* rows, const tile_region& region, int channels) {
    if (channels != 2 && channels != 4) return false;
    for (int y = 0; y < region.height; ++y) {
        const std::uint8_t* p = rows[y] + static_cast<std::size_t>(region.x) * channels + channels - 1;
        for (int x = 0; x < region.width; ++x, p += channels)
            if (*p != 0) return false;
    }
    return true;
}

// Builds the tile's pixels (tightly packed) from the region's source rows.
inline void assemble_tile(const std::uint8_t* const* rows, const tile_region& region, const tile_pixel_format& format,
                          std::vector<std::uint8_t>& out) {
    const int tc = format.tile_channels;
    const std::size_t tile_stride = static_cast<std::size_t>(region.out_width) * static_cast<std::size_t>(tc);
    out.resize(tile_stride * static_cast<std::size_t>(region.out_height));
    const bool padded = region.out_width != region.width || region.out_height != region.height;
    std::vector<std::uint8_t> fill_row;
    if (padded) {
        fill_row.resize(tile_stride);
        for (int x = 0; x < region.out_width; ++x) fill_pixel(format.fill, tc, fill_row.data() + x * tc);
    }
    for (int y = 0; y < region.out_height; ++y) {
        std::uint8_t* out_row = out.data() + static_cast<std::size_t>(y) * tile_stride;
        if (y >= region.height) {
            std::memcpy(out_row, fill_row.data(), tile_stride);
            continue;
        }
        const std::uint8_t* in_row = rows[y] + static_cast<std::size_t>(region.x) * format.source_channels;
        convert_row(in_row, region.width, format, out_row);
        if (region.width < region.out_width)
            std::memcpy(out_row + static_cast<std::size_t>(region.width) * tc, fill_row.data(),
                        tile_stride - static_cast<std::size_t>(region.width) * tc);
    }
}

}  // namespace detail
TILEKIT_NAMESPACE_END
// #include <tilekit/error.hpp>
// #include <tilekit/image.hpp>
// #include <tilekit/key.hpp>
// #include <tilekit/layout.hpp>
// #include <tilekit/metadata.hpp>
// #include <tilekit/progress.hpp>
// #include <tilekit/row_source.hpp>
// #include <tilekit/sink.hpp>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

struct tile_options {
    std::string prefix;                        // prepended to every key, e.g. "maps/42/" (keep the slash)
    std::string metadata_key = "pyramid.json";  // relative to prefix; written last
    unsigned threads = 0;                      // encoder threads; 0 = one per core
    bool skip_blank_tiles = false;             // do not write tiles whose pixels are all alpha 0
    std::optional<rgba_color> background;      // padding (XYZ) and alpha flattening (JPEG; default white)
    std::string tile_cache_control = "public, max-age=86400";
    std::string manifest_cache_control = "no-cache";
    progress_callback on_progress;
    cancel_token cancel;
    // Recorded in the metadata (pyramid.json) as they are; tile_file() and tile_memory() fill
    // them: the input's format as sniffed ("png", "jpeg", "tiff", "webp") and the tile
    // encoder's settings ({"quality": 85}, {"lossless": true, "method": 2}, ...).
    std::string source_format;
    nlohmann::json encoding = nlohmann::json::object();
};

namespace detail {

// Whether a layout names more keys for a tile (layout.hpp: tile_aliases, optional).
template <class Layout, class = void>
struct has_tile_aliases : std::false_type {};
template <class Layout>
struct has_tile_aliases<Layout, std::void_t<decltype(std::declval<const Layout&>().tile_aliases(
                                    std::declval<const level_geometry&>(), 0, 0, std::declval<const std::string&>()))>>
    : std::true_type {};

template <class Layout, class = void>
struct has_repeated_tiles : std::false_type {};
template <class Layout>
struct has_repeated_tiles<Layout, std::void_t<decltype(std::declval<const Layout&>().repeats_finer_tile(
                                      std::declval<const level_geometry&>(), 0, 0))>> : std::true_type {};

template <class Layout, class Encoder>
class pyramid_builder {
public:
    pyramid_builder(const Layout& layout, const Encoder& encoder, storage_sink& sink, const tile_options& options, int width,
                    int height, int channels)
        : layout_(layout),
          encoder_(encoder),
          sink_(sink),
          options_(options),
          channels_(channels),
          extension_(encoder.extension()),
          content_type_(encoder.content_type()),
          cancel_(options.cancel) {
        if (channels < 1 || channels > 4)
            throw error(errc::invalid_argument, "images must have 1..4 channels, got " + std::to_string(channels));
        const std::vector<level_geometry> levels = layout.levels(width, height);
        std::uint64_t total = 0;
        for (const level_geometry& level : levels) {
            stages_.emplace_back(make_stage(level));
            total += level.tile_count();
        }
        total_tiles_ = total;
        const rgba_color* background = options.background ? &*options.background : nullptr;
        interior_format_ = choose_tile_format(channels, encoder.supports_alpha(), false, background);
        edge_format_ = choose_tile_format(channels, encoder.supports_alpha(), layout.pads_edges(), background);
    }

    template <class RowSource>
    pyramid_metadata run(RowSource& source) {
        progress_reporter progress(options_.on_progress, total_tiles_);
        progress_ = &progress;
        unsigned threads = options_.threads ? options_.threads : std::thread::hardware_concurrency();
        if (threads == 0) threads = 1;
        // The calling thread streams rows and runs tasks itself when the queue is full, so with
        // one thread requested no worker is started at all.
        detail::task_pool pool(threads > 1 ? threads : 0, std::size_t{threads} * 4);
        pool_ = &pool;

        const int height = stages_.front().geometry.height;
        for (int y = 0; y < height; ++y) {
            if (cancel_.is_cancelled() || pool.failed()) break;
            push_row(0, source.next_row());
        }
        pool.wait();
        if (cancel_.is_cancelled()) throw cancelled_error();
        sink_.flush();
        if (cancel_.is_cancelled()) throw cancelled_error();
        return finish();
    }

private:
    struct stage {
        level_geometry geometry;
        std::size_t row_bytes = 0;
        std::vector<std::uint8_t> band;  // rows band_first .. band_first + band_rows - 1
        int band_first = 0;
        int band_rows = 0;
        int next_tile_row = 0;
        int rows_received = 0;
        std::vector<std::uint8_t> pending;  // the upper row of the next 2x2 reduction
        bool has_pending = false;
        std::vector<std::uint8_t> reduced;  // output row for the next level
    };

    stage make_stage(const level_geometry& level) const {
        stage s;
        s.geometry = level;
        s.row_bytes = static_cast<std::size_t>(level.width) * static_cast<std::size_t>(channels_);
        int tallest = 0;
        for (int r = 0; r < level.rows; ++r) tallest = std::max(tallest, layout_.region(level, 0, r).height);
        s.band.resize(s.row_bytes * static_cast<std::size_t>(tallest));
        return s;
    }

    void push_row(std::size_t index, const std::uint8_t* row) {
        stage& s = stages_[index];
        std::memcpy(s.band.data() + s.row_bytes * static_cast<std::size_t>(s.band_rows), row, s.row_bytes);
        ++s.band_rows;
        ++s.rows_received;
        emit_ready_tile_rows(s);

        if (index + 1 == stages_.size()) return;
        const bool last_row = s.rows_received == s.geometry.height;
        if (!s.has_pending && !last_row) {
            s.pending.assign(row, row + s.row_bytes);
            s.has_pending = true;
            return;
        }
        const std::uint8_t* upper = s.has_pending ? s.pending.data() : row;  // odd last row pairs with itself
        s.reduced.resize(stages_[index + 1].row_bytes);
        downsample_rows(channels_, upper, row, s.geometry.width, s.reduced.data());
        s.has_pending = false;
        push_row(index + 1, s.reduced.data());
    }

    void emit_ready_tile_rows(stage& s) {
        const level_geometry& level = s.geometry;
        while (s.next_tile_row < level.rows) {
            const tile_region first = layout_.region(level, 0, s.next_tile_row);
            if (s.band_first + s.band_rows < first.y + first.height) return;
            emit_tile_row(s, s.next_tile_row);
            ++s.next_tile_row;
            if (s.next_tile_row == level.rows) return;
            const int keep_from = layout_.region(level, 0, s.next_tile_row).y;
            const int drop = keep_from - s.band_first;
            if (drop > 0) {
                const int kept = s.band_rows - drop;
                std::memmove(s.band.data(), s.band.data() + s.row_bytes * static_cast<std::size_t>(drop),
                             s.row_bytes * static_cast<std::size_t>(kept));
                s.band_first = keep_from;
                s.band_rows = kept;
            }
        }
    }

    void emit_tile_row(stage& s, int row) {
        const level_geometry& level = s.geometry;
        std::vector<const std::uint8_t*> rows;
        for (int column = 0; column < level.columns; ++column) {
            if constexpr (has_repeated_tiles<Layout>::value) {
                if (layout_.repeats_finer_tile(level, column, row)) {  // written at the finer level
                    progress_->tile_finished();
                    continue;
                }
            }
            const tile_region region = layout_.region(level, column, row);
            rows.resize(static_cast<std::size_t>(region.height));
            for (int y = 0; y < region.height; ++y)
                rows[static_cast<std::size_t>(y)] =
                    s.band.data() + s.row_bytes * static_cast<std::size_t>(region.y + y - s.band_first);
            if (options_.skip_blank_tiles && region_is_blank(rows.data(), region, channels_)) {
                skipped_tiles_.fetch_add(1, std::memory_order_relaxed);
                progress_->tile_finished();
                continue;
            }
            const bool padded = region.out_width != region.width || region.out_height != region.height;
            const tile_pixel_format& format = padded ? edge_format_ : interior_format_;
            std::vector<std::uint8_t> pixels;
            assemble_tile(rows.data(), region, format, pixels);
            std::string key = options_.prefix + layout_.tile_key(level, column, row, extension_);
            std::vector<std::string> aliases;
            if constexpr (has_tile_aliases<Layout>::value)
                for (const std::string& alias : layout_.tile_aliases(level, column, row, extension_))
                    aliases.push_back(options_.prefix + alias);
            pool_->submit([this, pixels = std::move(pixels), key = std::move(key), aliases = std::move(aliases), region,
                           channels = format.tile_channels]() mutable {
                if (cancel_.is_cancelled()) return;
                storage_object object;
                object.key = std::move(key);
                encoder_.encode(image_view{pixels.data(), region.out_width, region.out_height, channels,
                                           static_cast<std::size_t>(region.out_width) * static_cast<std::size_t>(channels)},
                                object.body);
                object.content_type = content_type_;
                object.cache_control = options_.tile_cache_control;
                const std::uint64_t bytes = object.body.size();
                for (std::string& alias : aliases) {  // copies first: `object` is moved into the sink last
                    storage_object copy = object;
                    copy.key = std::move(alias);
                    sink_.put(std::move(copy));
                }
                sink_.put(std::move(object));
                written_tiles_.fetch_add(1 + aliases.size(), std::memory_order_relaxed);
                written_bytes_.fetch_add(bytes * (1 + aliases.size()), std::memory_order_relaxed);
                progress_->tile_finished();
            });
        }
    }

    pyramid_metadata finish() {
        pyramid_metadata m;
        const level_geometry& full = stages_.front().geometry;
        m.layout = Layout::name();
        m.format = extension_;
        m.source_format = options_.source_format;
        m.encoding = options_.encoding.is_object() ? options_.encoding : nlohmann::json::object();
        m.width = full.width;
        m.height = full.height;
        m.channels = channels_;
        m.tile_size = layout_.tile_size();
        m.overlap = layout_.overlap();
        m.levels = static_cast<int>(stages_.size());
        m.min_level = stages_.back().geometry.index;
        m.max_level = full.index;
        m.tile_count = written_tiles_.load();
        m.skipped_tiles = skipped_tiles_.load();
        m.total_bytes = written_bytes_.load();
        m.tile_url_template = layout_.tile_url_template(extension_);
        m.manifest = layout_.manifest_key();
        for (auto it = stages_.rbegin(); it != stages_.rend(); ++it) m.level_sizes.push_back(it->geometry);

        if (!m.manifest.empty()) {
            const std::string text = layout_.manifest(m.width, m.height, extension_);
            put_manifest(m.manifest, text, content_type_for_key(m.manifest));  // .dzi: XML, info.json: JSON
            sink_.flush();  // the layout manifest lands before the metadata that declares completion
        }
        put_manifest(options_.metadata_key, nlohmann::json(m).dump(2) + "\n", "application/json");
        sink_.flush();
        return m;
    }

    void put_manifest(const std::string& key, const std::string& text, const char* content_type) {
        storage_object object;
        object.key = options_.prefix + key;
        object.body.assign(text.begin(), text.end());
        object.content_type = content_type;
        object.cache_control = options_.manifest_cache_control;
        sink_.put(std::move(object));
    }

    const Layout& layout_;
    const Encoder& encoder_;
    storage_sink& sink_;
    const tile_options& options_;
    const int channels_;
    const std::string extension_;
    const std::string content_type_;
    cancel_token cancel_;
    std::vector<stage> stages_;
    std::uint64_t total_tiles_ = 0;
    tile_pixel_format interior_format_;
    tile_pixel_format edge_format_;
    progress_reporter* progress_ = nullptr;
    task_pool* pool_ = nullptr;
    std::atomic<std::uint64_t> written_tiles_{0};
    std::atomic<std::uint64_t> skipped_tiles_{0};
    std::atomic<std::uint64_t> written_bytes_{0};
};

}  // namespace detail

// The compile-time entry point: tiles `source` with a layout, an encoder and a sink chosen as
// types (see the contracts in row_source.hpp, layout.hpp, encode.hpp and sink.hpp). `source`
// is a row source or an image in memory (anything convertible to image_view). Returns the
// pyramid's metadata, which is also written, last, as options.metadata_key. Throws
// tilekit::error on bad options, cancelled_error when cancelled, and whatever the source or the
// sink throws; in every failure case no manifest is written.
template <class Source, class Layout, class Encoder>
pyramid_metadata generate_pyramid(Source&& source, const Layout& layout, const Encoder& encoder, storage_sink& sink,
                                  const tile_options& options = {}) {
    if constexpr (std::is_convertible_v<Source, image_view>) {
        image_row_source rows{image_view(source)};
        return generate_pyramid(rows, layout, encoder, sink, options);
    } else {
        detail::pyramid_builder<Layout, Encoder> builder(layout, encoder, sink, options, source.width(),
                                                         source.height(), source.channels());
        return builder.run(source);
    }
}

TILEKIT_NAMESPACE_END
// #include <tilekit/tile_file.hpp>
// The run-time front door: tile an image file (or its bytes in memory) with the layout and tile
// format chosen by value, from a CLI flag or a request, instead of by template argument.
//
//   tilekit::filesystem_sink sink("out");
//   tilekit::pyramid_options options;            // Deep Zoom, PNG tiles, 254 px, overlap 1
//   options.layout = tilekit::layout_type::xyz;  // every field is one level deep
//   tilekit::pyramid_metadata m = tilekit::tile_file("map.png", sink, options);
//
// The decoders and encoders come from a codec set. By default tile_file() uses the fast set
// (streaming libpng/libjpeg decoders, libdeflate and libjpeg-turbo encoders) whenever
// <tilekit/fast_codecs.hpp> is part of the program, and stb's whole-image decoder and encoders
// otherwise; tile_file<tilekit::stb_codecs>(...) or tile_file<tilekit::fast_codecs>(...) chooses
// explicitly. A codec set is a type with
//   static constexpr const char* name();
//   using png = <encoder>;  using jpeg = <encoder>;        // see encode.hpp
//   static std::unique_ptr<row_source> open_file(const std::string& path, const decode_limits&);
//   static std::unique_ptr<row_source> open_memory(const std::uint8_t*, std::size_t, const decode_limits&);

// #include <tilekit/decode.hpp>
// #include <tilekit/detail/webp_hook.hpp>
// The core's side of the optional WebP part (<tilekit/webp.hpp>): a slot the part fills before
// main() runs, so that tile_file() can write WebP tiles (tile_format::webp) chosen at run time,
// while the core itself never includes or links libwebp. WebP input goes through the same
// registry as the other optional readers (input_readers.hpp).

// #include <tilekit/error.hpp>
// #include <tilekit/image.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

struct webp_entry {
    // Encodes one tile: lossy at `quality` (1..100, alpha kept) or lossless, with libwebp's
    // `method` (0..6).
    void (*encode)(const image_view& tile, std::vector<std::uint8_t>& out, int quality, bool lossless, int method);
};

inline std::atomic<const webp_entry*>& registered_webp() {
    static std::atomic<const webp_entry*> entry{nullptr};
    return entry;
}

inline const webp_entry& require_webp(const std::string& what) {
    const webp_entry* entry = registered_webp().load(std::memory_order_acquire);
    if (!entry)
        throw error(errc::invalid_argument, what + " needs tilekit's WebP part: include <tilekit/webp.hpp> and link "
                                                   "tilekit::webp (Debian: libwebp-dev)");
    return *entry;
}

// The WebP tile encoder behind tile_format::webp: forwards each tile to the registered part.
class registered_webp_encoder {
public:
    registered_webp_encoder(int quality, bool lossless, int method)
        : entry_(&require_webp("WebP tiles")), quality_(quality), lossless_(lossless), method_(method) {
        if (quality < 1 || quality > 100)
            throw error(errc::invalid_argument, "WebP quality must be 1..100, got " + std::to_string(quality));
        if (method < 0 || method > 6)
            throw error(errc::invalid_argument, "WebP method must be 0..6, got " + std::to_string(method));
    }
    std::string extension() const { return "webp"; }
    std::string content_type() const { return "image/webp"; }
    bool supports_alpha() const noexcept { return true; }
    void encode(const image_view& tile, std::vector<std::uint8_t>& out) const {
        entry_->encode(tile, out, quality_, lossless_, method_);
    }

private:
    const webp_entry* entry_;
    int quality_;
    bool lossless_;
    int method_;
};

}  // namespace detail
TILEKIT_NAMESPACE_END
// #include <tilekit/encode.hpp>
// #include <tilekit/input_readers.hpp>
// #include <tilekit/layout.hpp>
// #include <tilekit/row_source.hpp>
// #include <tilekit/sink.hpp>
// #include <tilekit/tiler.hpp>

#include <atomic>
#include <cstdint>
#include <fstream>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

enum class layout_type { deep_zoom, xyz, iiif };
enum class tile_format { png, jpeg, webp };  // webp: needs <tilekit/webp.hpp>

inline const char* to_string(layout_type layout) noexcept {
    return layout == layout_type::xyz ? "xyz" : layout == layout_type::iiif ? "iiif" : "dz";
}
inline const char* to_string(tile_format format) noexcept {
    return format == tile_format::jpeg ? "jpg" : format == tile_format::webp ? "webp" : "png";
}

// Everything a run-time caller sets, one level deep: the tiling run (prefix, threads, progress,
// cancellation, ... from tile_options), the layout and format, and the decoder's limits.
struct pyramid_options : tile_options {
    layout_type layout = layout_type::deep_zoom;
    tile_format format = tile_format::png;
    int tile_size = 0;               // 0: 254 for Deep Zoom (256 with overlap), 256 for XYZ, 512 for IIIF
    int overlap = -1;                // -1: 1 for Deep Zoom; XYZ and IIIF allow only 0
    int quality = 85;                // JPEG and lossy WebP quality 1..100
    bool lossless = false;           // WebP: lossless tiles (quality then unused)
    int webp_method = 2;             // WebP: libwebp's effort 0 (fastest) ..6 (smallest); see README
    std::string basename = "image";  // Deep Zoom: {basename}.dzi and {basename}_files/
    std::string iiif_base_url;       // IIIF: info.json's id is this URL + "/" + prefix (without its
                                     // trailing slash); empty: "." (relative, see iiif_layout)
    decode_limits limits;            // pixel and file-size limits of the source image
};

namespace detail {

inline deep_zoom_layout make_deep_zoom_layout(const pyramid_options& options) {
    return deep_zoom_layout(options.tile_size ? options.tile_size : 254, options.overlap < 0 ? 1 : options.overlap,
                            options.basename);
}

inline xyz_layout make_xyz_layout(const pyramid_options& options) {
    if (options.overlap > 0)
        throw error(errc::invalid_argument, "the XYZ layout has no overlap (got " + std::to_string(options.overlap) + ")");
    return xyz_layout(options.tile_size ? options.tile_size : 256);
}

// The id: the base URL joined with the prefix ("maps/42/" -> {base}/maps/42), or ".".
inline iiif_layout make_iiif_layout(const pyramid_options& options) {
    if (options.overlap > 0)
        throw error(errc::invalid_argument, "the IIIF layout has no overlap (got " + std::to_string(options.overlap) + ")");
    std::string id = options.iiif_base_url;
    while (!id.empty() && id.back() == '/') id.pop_back();
    if (!options.iiif_base_url.empty() && !options.prefix.empty()) {
        std::string prefix = options.prefix;
        while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
        id += "/" + prefix;
    }
    return iiif_layout(options.tile_size ? options.tile_size : 512, id.empty() ? "." : id);
}

}  // namespace detail

// The key of the layout manifest a run with these options writes ("image.dzi"), relative to the
// prefix, or empty when the layout has none (XYZ). The metadata is options.metadata_key.
inline std::string manifest_key(const pyramid_options& options) {
    if (options.layout == layout_type::xyz) return detail::make_xyz_layout(options).manifest_key();
    if (options.layout == layout_type::iiif) return detail::make_iiif_layout(options).manifest_key();
    return detail::make_deep_zoom_layout(options).manifest_key();
}

// The core codec set: stb_image decodes the whole image; stb_image_write encodes PNG tiles and
// tilekit's own baseline writer JPEG tiles.
struct stb_codecs {
    static constexpr const char* name() noexcept { return "stb"; }
    using png = stb_png_encoder;
    using jpeg = baseline_jpeg_encoder;
    static std::unique_ptr<row_source> open_file(const std::string& path, const decode_limits& limits = {}) {
        // Formats of optional parts (TIFF, WebP) go to their registered reader.
        std::uint8_t magic[16] = {0};
        std::ifstream probe(path, std::ios::binary);
        probe.read(reinterpret_cast<char*>(magic), sizeof magic);
        const auto got = static_cast<std::size_t>(probe.gcount());
        if (got > 0)
            if (const input_reader* reader = detail::input_reader_for(detail::describe_format(magic, got), "'" + path + "': "))
                return reader->open_file(path, limits);
        return std::make_unique<image_row_source>(decode_image_file(path, limits));
    }
    static std::unique_ptr<row_source> open_memory(const std::uint8_t* data, std::size_t size,
                                                   const decode_limits& limits = {}) {
        if (size > 0)
            if (const input_reader* reader = detail::input_reader_for(detail::describe_format(data, size), ""))
                return reader->open_memory(data, size, limits);
        return std::make_unique<image_row_source>(decode_image(data, size, limits));
    }
};

// Tag for "the best codec set in this program" (the default of tile_file and tile_memory).
struct automatic_codecs {};

namespace detail {

// What pyramid.json records of the tile encoder's settings.
inline nlohmann::json encoding_of(const pyramid_options& options) {
    if (options.format == tile_format::jpeg) return {{"quality", options.quality}};
    if (options.format == tile_format::webp)
        return options.lossless ? nlohmann::json{{"lossless", true}, {"method", options.webp_method}}
                                : nlohmann::json{{"lossless", false}, {"quality", options.quality}, {"method", options.webp_method}};
    return nlohmann::json::object();
}

inline std::string recorded_format(const std::uint8_t* data, std::size_t size) {
    const std::string format = describe_format(data, size);
    return format == "other" ? std::string() : format;
}

template <class Codecs>
pyramid_metadata tile_rows(row_source& source, storage_sink& sink, const pyramid_options& requested,
                           const std::string& source_format) {
    pyramid_options options = requested;
    if (options.source_format.empty()) options.source_format = source_format;
    if (options.encoding.empty()) options.encoding = encoding_of(options);
    const auto run = [&](const auto& layout) {
        if (options.format == tile_format::jpeg)
            return generate_pyramid(source, layout, typename Codecs::jpeg(options.quality), sink, options);
        if (options.format == tile_format::webp)
            return generate_pyramid(source, layout, registered_webp_encoder(options.quality, options.lossless, options.webp_method), sink, options);
        return generate_pyramid(source, layout, typename Codecs::png(), sink, options);
    };
    if (options.layout == layout_type::xyz) return run(make_xyz_layout(options));
    if (options.layout == layout_type::iiif) return run(make_iiif_layout(options));
    return run(make_deep_zoom_layout(options));
}

template <class Codecs>
pyramid_metadata tile_file_with(const std::string& path, storage_sink& sink, const pyramid_options& options) {
    const std::unique_ptr<row_source> source = Codecs::open_file(path, options.limits);
    std::uint8_t magic[16] = {0};
    std::ifstream probe(path, std::ios::binary);
    probe.read(reinterpret_cast<char*>(magic), sizeof magic);
    return tile_rows<Codecs>(*source, sink, options, recorded_format(magic, static_cast<std::size_t>(probe.gcount())));
}

template <class Codecs>
pyramid_metadata tile_memory_with(const std::uint8_t* data, std::size_t size, storage_sink& sink,
                                  const pyramid_options& options) {
    const std::unique_ptr<row_source> source = Codecs::open_memory(data, size, options.limits);
    return tile_rows<Codecs>(*source, sink, options, recorded_format(data, size));
}

// A codec set behind function pointers, so the default can be chosen when the program starts.
struct codec_entry {
    const char* name;
    pyramid_metadata (*tile_file)(const std::string&, storage_sink&, const pyramid_options&);
    pyramid_metadata (*tile_memory)(const std::uint8_t*, std::size_t, storage_sink&, const pyramid_options&);
};

template <class Codecs>
const codec_entry* codec_entry_of() {
    static const codec_entry entry{Codecs::name(), &tile_file_with<Codecs>, &tile_memory_with<Codecs>};
    return &entry;
}

// Set once, before main, by <tilekit/fast_codecs.hpp> in every program that includes it.
inline std::atomic<const codec_entry*>& registered_codecs() {
    static std::atomic<const codec_entry*> entry{nullptr};
    return entry;
}

inline const codec_entry& automatic_codec_entry() {
    const codec_entry* entry = registered_codecs().load(std::memory_order_acquire);
    return entry ? *entry : *codec_entry_of<stb_codecs>();
}

}  // namespace detail

// The codec set tile_file() and tile_memory() use by default: "fast" or "stb".
inline const char* default_codecs_name() { return detail::automatic_codec_entry().name; }

// Decodes the image file at `path` (refusing it, before decoding, when over options.limits) and
// tiles it into `sink`. Returns the metadata, also written last as options.metadata_key; throws
// tilekit::error (see errc), and writes no manifest on any failure.
template <class Codecs = automatic_codecs>
pyramid_metadata tile_file(const std::string& path, storage_sink& sink, const pyramid_options& options = {}) {
    if constexpr (std::is_same_v<Codecs, automatic_codecs>)
        return detail::automatic_codec_entry().tile_file(path, sink, options);
    else
        return detail::tile_file_with<Codecs>(path, sink, options);
}

// tile_file() for an image file held in memory (an upload, a download).
template <class Codecs = automatic_codecs>
pyramid_metadata tile_memory(const std::uint8_t* data, std::size_t size, storage_sink& sink,
                             const pyramid_options& options = {}) {
    if constexpr (std::is_same_v<Codecs, automatic_codecs>)
        return detail::automatic_codec_entry().tile_memory(data, size, sink, options);
    else
        return detail::tile_memory_with<Codecs>(data, size, sink, options);
}

template <class Codecs = automatic_codecs>
pyramid_metadata tile_memory(const std::vector<std::uint8_t>& bytes, storage_sink& sink,
                             const pyramid_options& options = {}) {
    return tile_memory<Codecs>(bytes.data(), bytes.size(), sink, options);
}

TILEKIT_NAMESPACE_END
