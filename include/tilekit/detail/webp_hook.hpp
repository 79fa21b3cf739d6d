#pragma once
// The core's side of the optional WebP part (<tilekit/webp.hpp>): a slot the part fills before
// main() runs, so that tile_file() can write WebP tiles (tile_format::webp) and read WebP images
// chosen at run time, while the core itself never includes or links libwebp.

#include <tilekit/decode.hpp>
#include <tilekit/error.hpp>
#include <tilekit/image.hpp>
#include <tilekit/row_source.hpp>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

struct webp_entry {
    // Encodes one tile: lossy at `quality` (1..100, alpha kept) or lossless, with libwebp's
    // `method` (0..6).
    void (*encode)(const image_view& tile, std::vector<std::uint8_t>& out, int quality, bool lossless, int method);
    std::unique_ptr<row_source> (*open_file)(const std::string& path, const decode_limits& limits);
    std::unique_ptr<row_source> (*open_memory)(const std::uint8_t* data, std::size_t size, const decode_limits& limits);
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

// True when the file at `path` starts like a WebP file (RIFF....WEBP) and the WebP part is in
// the program; the codec sets then never see it.
inline bool webp_reader_for_file(const std::string& path) {
    if (!registered_webp().load(std::memory_order_acquire)) return false;
    std::uint8_t magic[12] = {0};
    std::FILE* file = std::fopen(path.c_str(), "rb");
    if (!file) return false;  // the codec set reports it
    const std::size_t got = std::fread(magic, 1, sizeof magic, file);
    std::fclose(file);
    return describe_format(magic, got) == "webp";
}

inline bool webp_reader_for_memory(const std::uint8_t* data, std::size_t size) {
    return size > 0 && registered_webp().load(std::memory_order_acquire) && describe_format(data, size) == "webp";
}

}  // namespace detail
TILEKIT_NAMESPACE_END
