#pragma once
// Baseline JPEG tiles through libjpeg-turbo's SIMD encoder.

#include <tilekit/encode.hpp>
#include <tilekit/error.hpp>
#include <tilekit/image.hpp>

#include <turbojpeg.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

TILEKIT_NAMESPACE_BEGIN

namespace detail {

struct turbojpeg_handle {
    tjhandle handle = nullptr;
    ~turbojpeg_handle() {
        if (handle) tjDestroy(handle);
    }
};

inline tjhandle thread_jpeg_compressor() {
    thread_local turbojpeg_handle compressor;
    if (!compressor.handle) {
        compressor.handle = tjInitCompress();
        if (!compressor.handle) throw error(errc::encode_failed, "cannot initialise libjpeg-turbo");
    }
    return compressor.handle;
}

}  // namespace detail

// Baseline JPEG through libjpeg-turbo; 4:2:0 chroma below quality 90, 4:4:4 from 90 up (as vips).
class turbojpeg_encoder {
public:
    explicit turbojpeg_encoder(int quality = 85) : quality_(detail::checked_jpeg_quality(quality)) {}
    std::string extension() const { return "jpg"; }
    std::string content_type() const { return "image/jpeg"; }
    bool supports_alpha() const noexcept { return false; }
    int quality() const noexcept { return quality_; }

    void encode(const image_view& tile, std::vector<std::uint8_t>& out) const {
        if (tile.channels != 1 && tile.channels != 3)
            throw error(errc::invalid_argument, "JPEG tiles must be gray or RGB, got " + std::to_string(tile.channels) + " channels");
        tjhandle handle = detail::thread_jpeg_compressor();
        unsigned char* buffer = nullptr;
        unsigned long size = 0;
        const int pixel_format = tile.channels == 1 ? TJPF_GRAY : TJPF_RGB;
        const int subsampling = tile.channels == 1 ? TJSAMP_GRAY : (quality_ >= 90 ? TJSAMP_444 : TJSAMP_420);
        const int status = tjCompress2(handle, tile.pixels, tile.width, static_cast<int>(tile.stride), tile.height,
                                       pixel_format, &buffer, &size, subsampling, quality_, 0);
        std::unique_ptr<unsigned char, void (*)(unsigned char*)> owned(buffer, tjFree);
        if (status != 0) throw error(errc::encode_failed, std::string("JPEG encoding failed (libjpeg-turbo): ") + tjGetErrorStr2(handle));
        out.assign(buffer, buffer + size);
    }

private:
    int quality_;
};

TILEKIT_NAMESPACE_END
