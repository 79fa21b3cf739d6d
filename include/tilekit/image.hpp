#pragma once
// Interleaved 8-bit images: 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels.

#include <tilekit/error.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <string>

TILEKIT_NAMESPACE_BEGIN

// An 8-bit colour with alpha (background and padding colours); white and opaque by default.
struct rgba_color {
    std::uint8_t r = 255;
    std::uint8_t g = 255;
    std::uint8_t b = 255;
    std::uint8_t a = 255;
};

// A non-owning view of rows of pixels; rows are `stride` bytes apart.
struct image_view {
    const std::uint8_t* pixels = nullptr;
    int width = 0;
    int height = 0;
    int channels = 0;
    std::size_t stride = 0;

    const std::uint8_t* row(int y) const noexcept { return pixels + static_cast<std::size_t>(y) * stride; }
    bool has_alpha() const noexcept { return channels == 2 || channels == 4; }
};

// An owning, tightly packed image.
class image_buffer {
public:
    image_buffer() = default;
    using free_function = void (*)(void*);

    // A zero-filled image.
    image_buffer(int width, int height, int channels) : width_(width), height_(height), channels_(channels) {
        check_shape(width, height, channels);
        pixels_.reset(static_cast<std::uint8_t*>(std::calloc(byte_size(), 1)));
        if (!pixels_) throw std::bad_alloc();
    }

    // Takes ownership of `pixels` (tightly packed), released later with `release`.
    static image_buffer adopt(std::uint8_t* pixels, int width, int height, int channels, free_function release) {
        image_buffer image;
        image.pixels_ = std::unique_ptr<std::uint8_t[], free_function>(pixels, release);
        check_shape(width, height, channels);
        image.width_ = width;
        image.height_ = height;
        image.channels_ = channels;
        return image;
    }

    int width() const noexcept { return width_; }
    int height() const noexcept { return height_; }
    int channels() const noexcept { return channels_; }
    std::size_t stride() const noexcept { return static_cast<std::size_t>(width_) * static_cast<std::size_t>(channels_); }
    std::uint8_t* data() noexcept { return pixels_.get(); }
    const std::uint8_t* data() const noexcept { return pixels_.get(); }
    std::uint8_t* row(int y) noexcept { return pixels_.get() + static_cast<std::size_t>(y) * stride(); }
    const std::uint8_t* row(int y) const noexcept { return pixels_.get() + static_cast<std::size_t>(y) * stride(); }
    bool empty() const noexcept { return !pixels_; }
    std::size_t byte_size() const noexcept { return stride() * static_cast<std::size_t>(height_); }

    image_view view() const noexcept { return image_view{pixels_.get(), width_, height_, channels_, stride()}; }
    operator image_view() const noexcept { return view(); }

private:
    int width_ = 0;
    int height_ = 0;
    int channels_ = 0;
    std::unique_ptr<std::uint8_t[], free_function> pixels_{nullptr, std::free};

    static void check_shape(int width, int height, int channels) {
        if (width <= 0 || height <= 0 || channels < 1 || channels > 4)
            throw error(errc::invalid_argument, "image_buffer: bad dimensions " + std::to_string(width) + "x" +
                                                    std::to_string(height) + "x" + std::to_string(channels));
    }
};

TILEKIT_NAMESPACE_END
