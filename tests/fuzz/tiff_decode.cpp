// libFuzzer target: the TIFF part's streaming reader (libtiff) on memory input, through
// tilekit::fast_codecs::open_memory (the dispatch tile_memory uses, which hands a sniffed TIFF to
// the registered tiff_row_reader), every row read. Only tilekit::error may come out;
// std::bad_alloc is a bug (the memory budget should have refused the file first).
// Invariants (trap when violated):
//   - an opened source has 1..4 channels, a positive size and no more pixels than max_pixels;
//   - every row is width*channels readable bytes; exactly height() rows, one more throws;
//   - reading the same bytes twice gives the same outcome and the same pixels (no state leaks
//     between readers, no uninitialised row bytes).
#include <tilekit/fast_codecs.hpp>
#include <tilekit/tiff.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace {

[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "tiff_decode: invariant violated: %s\n", what);
    __builtin_trap();
}

struct outcome {
    bool ok = false;
    int width = 0, height = 0, channels = 0;
    std::uint64_t hash = 1469598103934665603ull;
    tilekit::errc code = tilekit::errc::invalid_argument;
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
        for (int y = 0; y < h; ++y) {
            const std::uint8_t* row = source->next_row();
            if (!row) violated("next_row returned null");
            for (std::size_t i = 0; i < row_bytes; ++i) out.hash = (out.hash ^ row[i]) * 1099511628211ull;
        }
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
        out.code = e.code();
    }
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const tilekit::decode_limits limits = [] {
        tilekit::decode_limits l;
        l.max_pixels = std::uint64_t{1} << 22;
        l.max_memory_bytes = std::uint64_t{64} << 20;
        return l;
    }();
    const outcome first = read_all(data, size, limits);
    const outcome second = read_all(data, size, limits);
    if (first.ok != second.ok || first.hash != second.hash || first.code != second.code)
        violated("the same bytes read twice gave different results");
    return 0;
}
