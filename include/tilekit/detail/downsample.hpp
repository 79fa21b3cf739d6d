#pragma once
// The 2x2 box filter that makes each pyramid level from the one above it. With an alpha
// channel the colour is averaged weighted by alpha (premultiplied), so fully transparent
// pixels - whatever colour they hold - do not bleed dark fringes into lower levels. An odd
// last column or row is paired with itself, so edge pixels are averaged exactly.

#include <tilekit/config.hpp>

#include <cstddef>
#include <cstdint>

TILEKIT_NAMESPACE_BEGIN
namespace detail {

template <int Channels>
inline void downsample_pixel(const std::uint8_t* p00, const std::uint8_t* p01, const std::uint8_t* p10,
                             const std::uint8_t* p11, std::uint8_t* out) noexcept {
    constexpr bool has_alpha = Channels == 2 || Channels == 4;
    if constexpr (!has_alpha) {
        for (int c = 0; c < Channels; ++c)
            out[c] = static_cast<std::uint8_t>((p00[c] + p01[c] + p10[c] + p11[c] + 2) >> 2);
    } else {
        constexpr int a = Channels - 1;
        const unsigned alpha_sum = unsigned{p00[a]} + p01[a] + p10[a] + p11[a];
        if (alpha_sum == 0) {
            for (int c = 0; c < Channels; ++c) out[c] = 0;
            return;
        }
        for (int c = 0; c < a; ++c) {
            const unsigned weighted = unsigned{p00[c]} * p00[a] + unsigned{p01[c]} * p01[a] +
                                      unsigned{p10[c]} * p10[a] + unsigned{p11[c]} * p11[a];
            out[c] = static_cast<std::uint8_t>((weighted + alpha_sum / 2) / alpha_sum);
        }
        out[a] = static_cast<std::uint8_t>((alpha_sum + 2) >> 2);
    }
}

// Byte offset of pixel x in a row: in size_t, since a row may be wider than 2^31 bytes
// (a 2^30-pixel RGBA row is 4 GiB), which int arithmetic would overflow.
constexpr std::size_t pixel_offset(int x, int channels) noexcept {
    return static_cast<std::size_t>(x) * static_cast<std::size_t>(channels);
}

// Reduces two rows (`lower` may equal `upper` for an odd last row) of `width` pixels to one
// row of ceil(width / 2) pixels.
template <int Channels>
inline void downsample_rows(const std::uint8_t* upper, const std::uint8_t* lower, int width, std::uint8_t* out) noexcept {
    const int pairs = width / 2;
    for (int x = 0; x < pairs; ++x) {
        const std::size_t in = pixel_offset(x, 2 * Channels);
        downsample_pixel<Channels>(upper + in, upper + in + Channels, lower + in, lower + in + Channels,
                                   out + pixel_offset(x, Channels));
    }
    if (width % 2) {
        const std::size_t last = pixel_offset(width - 1, Channels);
        downsample_pixel<Channels>(upper + last, upper + last, lower + last, lower + last,
                                   out + pixel_offset(pairs, Channels));
    }
}

inline void downsample_rows(int channels, const std::uint8_t* upper, const std::uint8_t* lower, int width,
                            std::uint8_t* out) noexcept {
    switch (channels) {
        case 1: downsample_rows<1>(upper, lower, width, out); break;
        case 2: downsample_rows<2>(upper, lower, width, out); break;
        case 3: downsample_rows<3>(upper, lower, width, out); break;
        default: downsample_rows<4>(upper, lower, width, out); break;
    }
}

}  // namespace detail
TILEKIT_NAMESPACE_END
