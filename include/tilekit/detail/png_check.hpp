#pragma once
// A structural check of a PNG before stb_image sees it, with libpng's rules, so that the
// header-only path refuses what the fast codecs (libpng) refuse. stb checks no CRC and no
// Adler-32, accepts unknown critical chunks (Apple's CgBI among them), concatenates IDAT
// chunks wherever they are, and grows its inflate buffer up to 4 GiB for a small file whose
// data inflates without end. Here every chunk is walked, and the image data is inflated once
// into a buffer of exactly the size the header implies, so that neither too little nor too
// much data, nor a damaged stream, reaches stb.

#include <tilekit/detail/png_writer.hpp>
#include <tilekit/detail/stb.hpp>
#include <tilekit/error.hpp>

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
