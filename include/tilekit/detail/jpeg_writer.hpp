#pragma once
// A baseline JPEG writer (ITU T.81 SOF0, JFIF APP0): 8-bit gray or YCbCr, the Annex K
// quantisation tables scaled as IJG's quality does, the Annex K Huffman tables, a float AAN
// forward DCT. Written for tiles: every table is built once per writer, encoding touches only
// local state (one writer is used by many threads at once), and the arithmetic is kept free of
// undefined behaviour (no shifts of negative values, no signed overflow).

#include <tilekit/config.hpp>
#include <tilekit/error.hpp>
#include <tilekit/image.hpp>

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
