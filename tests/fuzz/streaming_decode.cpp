// libFuzzer target: the fast codecs' streaming readers (libpng, libjpeg-turbo) on memory input,
// through tilekit::fast_codecs::open_memory (the dispatch tile_memory uses), every row read.
// Each input is read strictly, and when that fails, again with decode_limits::accept_damaged.
// Only tilekit::error may come out; std::bad_alloc is a bug.
// Invariants (trap when violated):
//   - an opened source has 1..4 channels, a positive size and no more pixels than max_pixels;
//   - every row is width*channels readable bytes; exactly height() rows, one more throws;
//   - a strict success is also a success when damage is accepted, with the same shape.
// With TILEKIT_FUZZ_REPORT_DISAGREE=1 the core decoder (decode_image) reads the same bytes too
// and disagreements on success or shape are printed (never fatal: the core path is being
// hardened separately).
#include <tilekit/fast_codecs.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "streaming_decode: invariant violated: %s\n", what);
    __builtin_trap();
}

struct outcome {
    bool ok = false;
    int width = 0, height = 0, channels = 0;
    std::string error;
};

outcome read_all(const std::uint8_t* data, std::size_t size, const tilekit::decode_limits& limits) {
    outcome out;
    try {
        std::unique_ptr<tilekit::row_source> source = tilekit::fast_codecs::open_memory(data, size, limits);
        if (!source) violated("open_memory returned null");
        const int w = source->width(), h = source->height(), c = source->channels();
        if (w <= 0 || h <= 0 || c < 1 || c > 4) violated("a source has an impossible shape");
        if (std::uint64_t(w) * std::uint64_t(h) > limits.max_pixels) violated("a source over max_pixels was opened");
        const std::size_t row_bytes = std::size_t(w) * std::size_t(c);
        unsigned sum = 0;
        for (int y = 0; y < h; ++y) {
            const std::uint8_t* row = source->next_row();
            if (!row) violated("next_row returned null");
            for (std::size_t i = 0; i < row_bytes; ++i) sum += row[i];
        }
        volatile unsigned sink = sum;
        (void)sink;
        bool refused = false;
        try {
            source->next_row();
        } catch (const tilekit::error& e) {
            refused = e.code() == tilekit::errc::invalid_argument;
        }
        if (!refused) violated("a row past the last one was not refused with invalid_argument");
        out.ok = true;
        out.width = w;
        out.height = h;
        out.channels = c;
    } catch (const tilekit::error& e) {
        out.error = std::string(tilekit::to_string(e.code())) + ": " + e.what();
    }
    return out;
}

tilekit::decode_limits fuzz_limits(bool accept_damaged) {
    tilekit::decode_limits limits;
    limits.max_pixels = std::uint64_t{1} << 22;
    limits.max_memory_bytes = std::uint64_t{64} << 20;
    limits.max_file_bytes = std::uint64_t{64} << 20;
    limits.accept_damaged = accept_damaged;
    return limits;
}

void report_disagreement(const std::uint8_t* data, std::size_t size, const outcome& fast,
                         const tilekit::decode_limits& limits) {
    outcome core;
    try {
        const tilekit::image_buffer image = tilekit::decode_image(data, size, limits);
        core.ok = true;
        core.width = image.width();
        core.height = image.height();
        core.channels = image.channels();
    } catch (const tilekit::error& e) {
        core.error = std::string(tilekit::to_string(e.code())) + ": " + e.what();
    }
    // stb keeps a palette PNG's or a tRNS image's file channels; libpng expands them: compare
    // success and size only.
    if (core.ok == fast.ok && (!core.ok || (core.width == fast.width && core.height == fast.height))) return;
    std::fprintf(stderr, "streaming_decode: DISAGREE (%zu bytes): core %s %dx%dx%d [%s] / fast %s %dx%dx%d [%s]\n", size,
                 core.ok ? "ok" : "error", core.width, core.height, core.channels, core.error.c_str(),
                 fast.ok ? "ok" : "error", fast.width, fast.height, fast.channels, fast.error.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const tilekit::decode_limits strict = fuzz_limits(false);
    static const tilekit::decode_limits lenient = fuzz_limits(true);
    static const bool report = [] {
        const char* v = std::getenv("TILEKIT_FUZZ_REPORT_DISAGREE");
        return v && std::strcmp(v, "1") == 0;
    }();
    const outcome first = read_all(data, size, strict);
    if (!first.ok) {
        read_all(data, size, lenient);
    } else {
        const outcome second = read_all(data, size, lenient);
        if (!second.ok || second.width != first.width || second.height != first.height ||
            second.channels != first.channels)
            violated("accept_damaged refused (or reshaped) an image strict mode read");
    }
    if (report) report_disagreement(data, size, first, strict);
    return 0;
}
