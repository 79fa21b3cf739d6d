// libFuzzer target: the WebP part's reader (libwebp behind tilekit's header checks), and its
// encoder on what was decoded.
//   tilekit::read_webp_info(data, size) and tilekit::decode_webp(data, size, limits), strict and
//   lenient; then, for a small decoded image, a lossless webp_encoder round trip.
// Only tilekit::error may come out; std::bad_alloc is a bug (the limits must stop it first).
// Invariants (trap when violated):
//   - a decoded image has the width, height and channels read_webp_info reported, all
//     width*height*channels bytes readable, and no more pixels than limits.max_pixels;
//   - decode_webp succeeding implies read_webp_info succeeds on the same bytes, and a strict
//     success implies a lenient one with the same pixels;
//   - the lossless re-encoding decodes back to exactly the same pixels.
#include <tilekit/webp.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

namespace {

[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "webp_decode: invariant violated: %s\n", what);
    __builtin_trap();
}

tilekit::decode_limits fuzz_limits(bool lenient) {
    tilekit::decode_limits limits;
    limits.max_pixels = std::uint64_t{1} << 22;
    limits.max_memory_bytes = std::uint64_t{64} << 20;
    limits.max_file_bytes = std::uint64_t{64} << 20;
    limits.accept_damaged = lenient;
    return limits;
}

bool same_pixels(const tilekit::image_buffer& a, const tilekit::image_buffer& b) {
    return a.width() == b.width() && a.height() == b.height() && a.channels() == b.channels() &&
           std::memcmp(a.data(), b.data(), a.byte_size()) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const tilekit::decode_limits strict = fuzz_limits(false), lenient = fuzz_limits(true);
    bool have_info = false;
    tilekit::webp_image_info info;
    try {
        info = tilekit::read_webp_info(data, size);
        have_info = true;
    } catch (const tilekit::error&) {
    }
    tilekit::image_buffer strict_image;
    try {
        strict_image = tilekit::decode_webp(data, size, strict);
    } catch (const tilekit::error&) {
    }
    tilekit::image_buffer image;
    try {
        image = tilekit::decode_webp(data, size, lenient);
    } catch (const tilekit::error&) {
        if (!strict_image.empty()) violated("strict decode succeeded, lenient failed");
        return 0;
    }
    if (!have_info) violated("decode_webp succeeded but read_webp_info failed");
    if (image.width() != info.width || image.height() != info.height) violated("size differs from the header");
    if (image.channels() != info.channels) violated("channels differ from the header");
    if (std::uint64_t(image.width()) * std::uint64_t(image.height()) > lenient.max_pixels) violated("over max_pixels");
    if (!strict_image.empty() && !same_pixels(strict_image, image)) violated("strict and lenient pixels differ");
    unsigned sum = 0;  // every byte readable (ASan)
    for (std::size_t i = 0; i < image.byte_size(); ++i) sum += image.data()[i];
    if (sum == 0xffffffffu) std::puts("");
    if (std::uint64_t(image.width()) * std::uint64_t(image.height()) <= 4096) {
        std::vector<std::uint8_t> encoded;
        tilekit::webp_encoder(85, true).encode(image.view(), encoded);
        const tilekit::image_buffer back = tilekit::decode_webp(encoded.data(), encoded.size(), strict);
        // The encoder drops an alpha channel that is fully opaque; compare as RGBA then.
        if (back.channels() == image.channels()) {
            if (!same_pixels(back, image)) violated("lossless round trip changed the pixels");
        } else if (image.channels() == 4 && back.channels() == 3) {
            for (int y = 0; y < image.height(); ++y)
                for (int x = 0; x < image.width(); ++x) {
                    const std::uint8_t* p = image.row(y) + 4 * x;
                    const std::uint8_t* q = back.row(y) + 3 * x;
                    if (p[3] != 255 || p[0] != q[0] || p[1] != q[1] || p[2] != q[2])
                        violated("lossless round trip changed the pixels");
                }
        } else {
            violated("lossless round trip changed the channels");
        }
    }
    return 0;
}
