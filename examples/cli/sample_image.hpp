#pragma once
// A generated, map-like sample image (terrain colours, hill shading, water, a graticule), so
// the demo and tests need no downloaded data. Deterministic: the same size gives the same pixels.

#include <tilekit/tilekit.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace tilekit_examples {

inline float lattice(int x, int y) {
    std::uint32_t h = static_cast<std::uint32_t>(x) * 374761393u + static_cast<std::uint32_t>(y) * 668265263u;
    h = (h ^ (h >> 13)) * 1274126177u;
    return static_cast<float>((h ^ (h >> 16)) & 0xffff) / 65535.0f;
}

// Smoothly interpolated value noise, a few octaves.
inline float terrain_height(float x, float y) {
    float total = 0, amplitude = 0.55f, frequency = 1.0f / 512.0f;
    for (int octave = 0; octave < 5; ++octave) {
        const float fx = x * frequency, fy = y * frequency;
        const int ix = static_cast<int>(std::floor(fx)), iy = static_cast<int>(std::floor(fy));
        float tx = fx - ix, ty = fy - iy;
        tx = tx * tx * (3 - 2 * tx);
        ty = ty * ty * (3 - 2 * ty);
        const float top = lattice(ix, iy) + (lattice(ix + 1, iy) - lattice(ix, iy)) * tx;
        const float bottom = lattice(ix, iy + 1) + (lattice(ix + 1, iy + 1) - lattice(ix, iy + 1)) * tx;
        total += amplitude * (top + (bottom - top) * ty);
        amplitude *= 0.5f;
        frequency *= 2.0f;
    }
    return total;
}

inline tilekit::image_buffer make_sample_map(int width, int height) {
    tilekit::image_buffer image(width, height, 3);
    for (int y = 0; y < height; ++y) {
        std::uint8_t* row = image.row(y);
        for (int x = 0; x < width; ++x) {
            const float h = terrain_height(static_cast<float>(x), static_cast<float>(y));
            const float shade = std::clamp(
                1.0f + 6.0f * (h - terrain_height(static_cast<float>(x) + 3, static_cast<float>(y) + 3)), 0.6f, 1.3f);
            float r, g, b;
            if (h < 0.45f) {  // water, flat
                r = 70, g = 130, b = 190;
            } else if (h < 0.48f) {
                r = 225, g = 210, b = 160;
            } else if (h < 0.62f) {
                r = 90 + 200 * (h - 0.48f), g = 150, b = 80;
            } else if (h < 0.75f) {
                r = 150, g = 120, b = 80;
            } else {
                r = 240, g = 240, b = 245;
            }
            if (h >= 0.45f) r *= shade, g *= shade, b *= shade;
            if (x % 512 < 2 || y % 512 < 2) r = g = b = 60;  // graticule
            std::uint8_t* p = row + 3 * x;
            p[0] = static_cast<std::uint8_t>(std::clamp(r, 0.0f, 255.0f));
            p[1] = static_cast<std::uint8_t>(std::clamp(g, 0.0f, 255.0f));
            p[2] = static_cast<std::uint8_t>(std::clamp(b, 0.0f, 255.0f));
        }
    }
    return image;
}

}  // namespace tilekit_examples
