#pragma once
// Reading PNG and JPEG from a file or memory with stb_image, with the size and the memory cost
// checked before any large allocation, the whole file checked (detail/png_check.hpp,
// detail/jpeg_check.hpp) before stb sees it, and a typed error for every kind of bad input.

#include <tilekit/detail/jpeg_check.hpp>
#include <tilekit/detail/png_check.hpp>
#include <tilekit/detail/stb.hpp>
#include <tilekit/error.hpp>
#include <tilekit/image.hpp>

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
