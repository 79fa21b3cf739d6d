#pragma once
// The core's side of the optional WebP part (<tilekit/webp.hpp>): a slot the part fills before
// main() runs, so that tile_file() can write WebP tiles (tile_format::webp) chosen at run time,
// while the core itself never includes or links libwebp. WebP input goes through the same
// registry as the other optional readers (input_readers.hpp).

#include <tilekit/error.hpp>
#include <tilekit/image.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

struct webp_entry {
    // Encodes one tile: lossy at `quality` (1..100, alpha kept) or lossless, with libwebp's
    // `method` (0..6).
    void (*encode)(const image_view& tile, std::vector<std::uint8_t>& out, int quality, bool lossless, int method);
};

inline std::atomic<const webp_entry*>& registered_webp() {
    static std::atomic<const webp_entry*> entry{nullptr};
    return entry;
}

inline const webp_entry& require_webp(const std::string& what) {
    const webp_entry* entry = registered_webp().load(std::memory_order_acquire);
    if (!entry)
        throw error(errc::invalid_argument, what + " needs tilekit's WebP part: include <tilekit/webp.hpp> and link "
                                                   "tilekit::webp (Debian: libwebp-dev)");
    return *entry;
}

// The WebP tile encoder behind tile_format::webp: forwards each tile to the registered part.
class registered_webp_encoder {
public:
    registered_webp_encoder(int quality, bool lossless, int method)
        : entry_(&require_webp("WebP tiles")), quality_(quality), lossless_(lossless), method_(method) {
        if (quality < 1 || quality > 100)
            throw error(errc::invalid_argument, "WebP quality must be 1..100, got " + std::to_string(quality));
        if (method < 0 || method > 6)
            throw error(errc::invalid_argument, "WebP method must be 0..6, got " + std::to_string(method));
    }
    std::string extension() const { return "webp"; }
    std::string content_type() const { return "image/webp"; }
    bool supports_alpha() const noexcept { return true; }
    void encode(const image_view& tile, std::vector<std::uint8_t>& out) const {
        entry_->encode(tile, out, quality_, lossless_, method_);
    }

private:
    const webp_entry* entry_;
    int quality_;
    bool lossless_;
    int method_;
};

}  // namespace detail
TILEKIT_NAMESPACE_END
