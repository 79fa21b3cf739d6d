#pragma once
// A small PNG writer: scanline filtering and the chunk container, with the deflate step
// supplied by the caller (libdeflate, zlib or stb), so compression can be swapped for speed.

#include <tilekit/config.hpp>
#include <tilekit/image.hpp>
#include <tilekit/png_filter.hpp>

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
