// libFuzzer target: the core decoder (stb_image behind tilekit's header checks).
//   tilekit::read_image_info(data, size) and tilekit::decode_image(data, size, limits)
// Only tilekit::error may come out; std::bad_alloc is a bug (the limits must stop it first).
// Invariants (trap when violated):
//   - a decoded image has the width and height read_image_info reported, width*height*channels
//     bytes, all readable, and no more pixels than limits.max_pixels;
//   - it has the channels read_image_info reported (a PNG tRNS chunk counts as alpha);
//   - decode_image succeeding implies read_image_info succeeds on the same bytes.
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
        if (image.channels() != info.channels) violated("decoded channels differ from the header's");
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
