// libFuzzer target: the core decoder (stb_image behind tilekit's header checks).
//   tilekit::read_image_info(data, size) and tilekit::decode_image(data, size, limits)
// Only tilekit::error may come out; std::bad_alloc is a bug (the limits must stop it first).
// Invariants (trap when violated):
//   - a decoded image has the width and height read_image_info reported, width*height*channels
//     bytes, all readable, and no more pixels than limits.max_pixels;
//   - it has the channels read_image_info reported, with one known exception tolerated unless
//     TILEKIT_FUZZ_STRICT_CHANNELS=1: a gray or RGB PNG with a tRNS chunk, which stb's header
//     scan reports as 1 or 3 channels and decodes with an alpha channel (2 or 4); reported once;
//   - decode_image succeeding implies read_image_info succeeds on the same bytes.
// TILEKIT_FUZZ_SKIP_KNOWN=1 skips inputs that hit an open, already reported
// bug (a JPEG DHT declaring more than 256 codes, tests/fuzz/regressions/generate.py), so a run
// can look past it; CI runs without it.
#include <tilekit/decode.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "decode_memory: invariant violated: %s\n", what);
    __builtin_trap();
}

// Whether a tRNS chunk comes before the first IDAT (where it counts).
bool has_png_trns(const std::uint8_t* data, std::size_t size) {
    bool found = false;
    tilekit::detail::for_each_png_chunk(data, size, [&](const tilekit::detail::png_chunk& chunk) {
        if (std::memcmp(chunk.type, "IDAT", 4) == 0) return false;
        found = found || std::memcmp(chunk.type, "tRNS", 4) == 0;
        return !found;
    });
    return found;
}

// A JPEG DHT segment whose table declares more than 256 codes (stb writes past its arrays, in
// read_image_info already when the DHT precedes the frame header).
// Markers cannot occur inside entropy-coded data (0xFF is stuffed), so a byte scan finds them.
bool has_oversized_dht(const std::uint8_t* data, std::size_t size) {
    if (size < 3 || data[0] != 0xff || data[1] != 0xd8) return false;
    for (std::size_t i = 2; i + 4 <= size; ++i) {
        if (data[i] != 0xff || data[i + 1] != 0xc4) continue;
        // As stb reads it: tables while the declared length lasts, bytes past the end read as 0.
        long left = static_cast<long>((std::size_t{data[i + 2]} << 8) | data[i + 3]) - 2;
        std::size_t at = i + 4;
        while (left > 0 && at < size) {
            unsigned codes = 0;
            for (std::size_t k = 1; k <= 16; ++k) codes += at + k < size ? data[at + k] : 0;
            if (codes > 256) return true;
            left -= 17 + static_cast<long>(codes);
            at += 17 + codes;
        }
    }
    return false;
}

tilekit::decode_limits fuzz_limits() {
    tilekit::decode_limits limits;
    limits.max_pixels = std::uint64_t{1} << 22;
    limits.max_memory_bytes = std::uint64_t{64} << 20;
    limits.max_file_bytes = std::uint64_t{64} << 20;
    return limits;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const tilekit::decode_limits limits = fuzz_limits();
    static const bool skip_known = [] {
        const char* v = std::getenv("TILEKIT_FUZZ_SKIP_KNOWN");
        return v && std::strcmp(v, "1") == 0;
    }();
    if (skip_known && has_oversized_dht(data, size)) return 0;
    bool have_info = false;
    tilekit::image_info info;
    try {
        info = tilekit::read_image_info(data, size);
        have_info = true;
        if (info.width <= 0 || info.height <= 0 || info.channels < 1 || info.channels > 4)
            violated("read_image_info returned an impossible shape");
        if (info.format != "png" && info.format != "jpeg") violated("read_image_info accepted a format other than PNG/JPEG");
    } catch (const tilekit::error&) {
    }
    try {
        const tilekit::image_buffer image = tilekit::decode_image(data, size, limits);
        if (!have_info) violated("decode_image succeeded where read_image_info failed");
        if (image.width() != info.width || image.height() != info.height) violated("decoded size differs from the header's");
        if (image.channels() != info.channels) {
            static const bool strict_channels = [] {
                const char* v = std::getenv("TILEKIT_FUZZ_STRICT_CHANNELS");
                return v && std::strcmp(v, "1") == 0;
            }();
            const bool known = !strict_channels && info.format == "png" && image.channels() == info.channels + 1 &&
                               (info.channels == 1 || info.channels == 3) && has_png_trns(data, size);
            if (!known) violated("decoded channels differ from the header's");
            static bool reported = false;
            if (!reported)
                std::fprintf(stderr, "decode_memory: known issue: PNG with tRNS, read_image_info says %d channels, "
                                     "decode_image returns %d (TILEKIT_FUZZ_STRICT_CHANNELS=1 makes this fatal)\n",
                             info.channels, image.channels());
            reported = true;
        }
        const std::uint64_t pixels = std::uint64_t(image.width()) * std::uint64_t(image.height());
        if (pixels > limits.max_pixels) violated("an image over max_pixels was decoded");
        if (image.byte_size() != pixels * std::uint64_t(image.channels())) violated("byte_size is not w*h*channels");
        if (image.empty()) violated("a decoded image has no pixels");
        // Touch every byte, so ASan sees a buffer shorter than it claims to be.
        unsigned sum = 0;
        const std::uint8_t* p = image.data();
        for (std::size_t i = 0; i < image.byte_size(); ++i) sum += p[i];
        volatile unsigned sink = sum;
        (void)sink;
    } catch (const tilekit::error&) {
    }
    return 0;
}
