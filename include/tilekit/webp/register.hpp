#pragma once
// Puts the WebP part into the core's slots before main() runs, in every program with a TU that
// includes <tilekit/webp.hpp>: tile_file() then writes WebP tiles (tile_format::webp, through
// detail/webp_hook.hpp) and reads WebP images (the input reader registry, input_readers.hpp).

#include <tilekit/detail/webp_hook.hpp>
#include <tilekit/input_readers.hpp>
#include <tilekit/webp/encoder.hpp>
#include <tilekit/webp/reader.hpp>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

inline void webp_encode_entry(const image_view& tile, std::vector<std::uint8_t>& out, int quality, bool lossless,
                              int method) {
    // One encoder per thread and setting: building one validates libwebp's configuration.
    thread_local webp_options cached{-1, false, -1};
    thread_local std::unique_ptr<webp_encoder> encoder;
    if (!encoder || cached.quality != quality || cached.lossless != lossless || cached.method != method) {
        cached = webp_options{quality, lossless, method};
        encoder = std::make_unique<webp_encoder>(cached);
    }
    encoder->encode(tile, out);
}

inline const webp_entry* webp_part_entry() {
    static const webp_entry entry{&webp_encode_entry};
    return &entry;
}

inline const input_reader webp_input_reader{"webp", &webp_reader::open_file, &webp_reader::open_memory};

inline const bool webp_part_is_registered =
    (registered_webp().store(webp_part_entry(), std::memory_order_release), register_input_reader(&webp_input_reader));

}  // namespace detail
TILEKIT_NAMESPACE_END
