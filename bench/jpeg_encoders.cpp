// Instruction counts of the core JPEG tile encoders: tilekit's baseline writer against
// stb_image_write's (which it replaced), on 256 RGB tiles of 256x256 cut from one
// photograph-like 4096x4096 image, at one quality. Counted with callgrind, so the 2-core VM's
// other load does not matter (bench/README.md "JPEG encoder instruction counts").
//
//   g++ -std=c++17 -O3 -DNDEBUG -Iinclude -isystem /usr/include/stb bench/jpeg_encoders.cpp -lstb -o /tmp/jpeg_encoders
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null /tmp/jpeg_encoders none     # image only
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null /tmp/jpeg_encoders stb 85
//   valgrind --tool=callgrind --callgrind-out-file=/dev/null /tmp/jpeg_encoders baseline 85
// Each run prints the total bytes of its tiles; an encoder's cost is its total minus "none".

#include <tilekit/tilekit.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

// Gradients, soft discs, sharp-edged bars and fine noise (xorshift, deterministic).
std::vector<std::uint8_t> photo_like(int size) {
    std::vector<std::uint8_t> pixels(static_cast<std::size_t>(size) * size * 3);
    std::uint32_t state = 12345;
    for (int y = 0; y < size; ++y)
        for (int x = 0; x < size; ++x) {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            const int noise = static_cast<int>(state % 13) - 6;
            const double wave = std::sin(x * 0.013) * std::cos(y * 0.011);
            const int bar = ((x / 37) % 5 == 2 && (y / 91) % 2 == 0) ? 60 : 0;
            const int base[3] = {90 + static_cast<int>(70 * wave) + x * 60 / size, 80 + y * 100 / size + bar,
                                 150 - static_cast<int>(50 * wave)};
            std::uint8_t* p = &pixels[(static_cast<std::size_t>(y) * size + x) * 3];
            for (int c = 0; c < 3; ++c) {
                const int v = base[c] + noise;
                p[c] = static_cast<std::uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    return pixels;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string which = argc > 1 ? argv[1] : "baseline";
    const int quality = argc > 2 ? std::atoi(argv[2]) : 85;
    const int image_size = 4096, tile = 256;
    const std::vector<std::uint8_t> image = photo_like(image_size);
    const std::size_t stride = static_cast<std::size_t>(image_size) * 3;

    const tilekit::baseline_jpeg_encoder baseline(quality);
    std::vector<std::uint8_t> out, packed(static_cast<std::size_t>(tile) * tile * 3);
    std::size_t total = 0;
    for (int ty = 0; ty < image_size / tile; ++ty)
        for (int tx = 0; tx < image_size / tile; ++tx) {
            const std::uint8_t* corner = &image[static_cast<std::size_t>(ty) * tile * stride + static_cast<std::size_t>(tx) * tile * 3];
            // stb needs packed rows; the copy is done for both so they do the same work around the encoder.
            for (int r = 0; r < tile; ++r)
                std::copy_n(corner + r * stride, tile * 3, &packed[static_cast<std::size_t>(r) * tile * 3]);
            const tilekit::image_view view{packed.data(), tile, tile, 3, static_cast<std::size_t>(tile) * 3};
            if (which == "stb") {
                out.clear();
                stbi_write_jpg_to_func(tilekit::detail::append_to_vector, &out, tile, tile, 3, packed.data(), quality);
            } else if (which == "baseline") {
                baseline.encode(view, out);
            } else {
                out.assign(1, packed[0]);
            }
            total += out.size();
        }
    std::printf("%s quality %d: 256 tiles, %zu bytes\n", which.c_str(), quality, total);
}
