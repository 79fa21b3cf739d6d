#pragma once
// Input formats that optional parts add at run time (the TIFF part: <tilekit/tiff.hpp>; the
// WebP part: <tilekit/webp.hpp>). A part
// registers a reader for a format name (as detail::describe_format() names it) before main();
// the codec sets' open_file() and open_memory() (tile_file.hpp, fast_codecs/codecs.hpp) sniff
// the first bytes and hand the file to the registered reader, so `tilekit tile scan.tif`, a
// TIFF upload and tile_file("scan.tif", ...) work wherever the part is linked. Without it the
// format is refused with an error naming the part that reads it.

#include <tilekit/decode.hpp>
#include <tilekit/error.hpp>
#include <tilekit/row_source.hpp>

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
