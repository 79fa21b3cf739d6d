#pragma once
// Shared helpers for the tilekit test suite: deterministic test images, PNG decoding, an
// independent reference 2x2 downsample, OpenSeadragon's tile arithmetic, a hand-written PNG
// builder (for 16-bit and crafted headers), temporary directories and external tools.
//
// Only the public umbrella headers are included, so the suite also runs against the generated
// single header.

#include <tilekit/tilekit.hpp>
#include <tilekit/fast_codecs.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace tkt {

namespace fs = std::filesystem;
using bytes = std::vector<std::uint8_t>;

// ---------------------------------------------------------------------------------------------
// Deterministic pseudo-random numbers (xorshift32), so every run sees the same images.

class rng {
public:
    explicit rng(std::uint32_t seed) : state_(seed ? seed : 0x9e3779b9u) {}
    std::uint32_t next() {
        state_ ^= state_ << 13;
        state_ ^= state_ >> 17;
        state_ ^= state_ << 5;
        return state_;
    }
    int range(int lo, int hi) { return lo + static_cast<int>(next() % static_cast<std::uint32_t>(hi - lo + 1)); }

private:
    std::uint32_t state_;
};

// A listening TCP socket on 127.0.0.1 with a port the kernel chose: for the tests' small
// scripted servers. Returns the descriptor and sets `port`.
inline int listen_on_loopback(int backlog, int& port) {
    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(listener >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(listener, backlog) == 0);
    socklen_t length = sizeof address;
    REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    port = ntohs(address.sin_port);
    return listener;
}

inline std::uint8_t clamp8(int v) { return static_cast<std::uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v)); }

// Gradients plus noise in every colour channel; with alpha, a radial ramp that is fully
// transparent in the corners, fully opaque in the middle and partly transparent between.
inline tilekit::image_buffer make_image(int width, int height, int channels, std::uint32_t seed = 1, int noise = 12) {
    tilekit::image_buffer image(width, height, channels);
    rng random(seed);
    const bool alpha = channels == 2 || channels == 4;
    const int colours = alpha ? channels - 1 : channels;
    const double cx = (width - 1) / 2.0, cy = (height - 1) / 2.0;
    const double radius = std::max(1.0, std::hypot(cx, cy));
    for (int y = 0; y < height; ++y) {
        std::uint8_t* p = image.row(y);
        for (int x = 0; x < width; ++x, p += channels) {
            const int gx = width > 1 ? x * 255 / (width - 1) : 128;
            const int gy = height > 1 ? y * 255 / (height - 1) : 128;
            const int base[3] = {gx, gy, (gx + 255 - gy) / 2};
            for (int c = 0; c < colours; ++c) {
                const int n = noise ? random.range(-noise, noise) : 0;
                p[c] = clamp8(base[colours == 1 ? 2 : c] + n + ((x / 7 + y / 5) % 3 == 0 ? 20 : 0));
            }
            if (alpha) {
                const double d = std::hypot(x - cx, y - cy) / radius;  // 0 centre .. 1 corner
                int a = static_cast<int>(std::lround((0.85 - d) * 600.0));
                if (a > 0 && a < 255) a += random.range(-5, 5);
                p[channels - 1] = clamp8(a);
            }
        }
    }
    return image;
}

// A copy of the image data, for comparisons.
inline bytes pixels_of(const tilekit::image_view& view) {
    bytes out;
    const std::size_t row = static_cast<std::size_t>(view.width) * view.channels;
    out.reserve(row * view.height);
    for (int y = 0; y < view.height; ++y) out.insert(out.end(), view.row(y), view.row(y) + row);
    return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding tiles with stb_image (independent of tilekit's decoder).

// The image as a PNG file in memory (stb's encoder: lossless, independent of the fast codecs).
// Reads every row of a reader into one packed buffer.
inline bytes read_all_rows(tilekit::row_source& reader) {
    bytes out;
    const std::size_t row = static_cast<std::size_t>(reader.width()) * static_cast<std::size_t>(reader.channels());
    for (int y = 0; y < reader.height(); ++y) {
        const std::uint8_t* p = reader.next_row();
        out.insert(out.end(), p, p + row);
    }
    return out;
}

inline bytes png_of(const tilekit::image_view& image) {
    bytes png;
    tilekit::stb_png_encoder().encode(image, png);
    return png;
}

struct decoded_image {
    int width = 0;
    int height = 0;
    int channels = 0;
    bytes pixels;
    const std::uint8_t* at(int x, int y) const {
        return pixels.data() + (static_cast<std::size_t>(y) * width + x) * channels;
    }
};

// Decodes with the file's own channel count; REQUIREs success.
inline decoded_image stb_decode(const bytes& data) {
    decoded_image out;
    REQUIRE(!data.empty());
    stbi_uc* p = stbi_load_from_memory(data.data(), static_cast<int>(data.size()), &out.width, &out.height,
                                       &out.channels, 0);
    INFO("stb_image: " << (p ? "ok" : stbi_failure_reason()));
    REQUIRE(p != nullptr);
    out.pixels.assign(p, p + static_cast<std::size_t>(out.width) * out.height * out.channels);
    stbi_image_free(p);
    return out;
}

inline decoded_image stb_decode_file(const std::string& path) {
    decoded_image out;
    stbi_uc* p = stbi_load(path.c_str(), &out.width, &out.height, &out.channels, 0);
    INFO(path << ": " << (p ? "ok" : stbi_failure_reason()));
    REQUIRE(p != nullptr);
    out.pixels.assign(p, p + static_cast<std::size_t>(out.width) * out.height * out.channels);
    stbi_image_free(p);
    return out;
}

// ---------------------------------------------------------------------------------------------
// Reference pyramid: a 2x2 box filter written from the rules (vips: (a+b+c+d+2)>>2, the last
// odd column/row replicated; with alpha, colour weighted by alpha and rounded to nearest).

inline tilekit::image_buffer reference_half(const tilekit::image_buffer& in) {
    const int w = in.width(), h = in.height(), ch = in.channels();
    const int w2 = (w + 1) / 2, h2 = (h + 1) / 2;
    tilekit::image_buffer out(w2, h2, ch);
    const bool alpha = ch == 2 || ch == 4;
    for (int y = 0; y < h2; ++y) {
        const int y0 = 2 * y, y1 = std::min(2 * y + 1, h - 1);
        for (int x = 0; x < w2; ++x) {
            const int x0 = 2 * x, x1 = std::min(2 * x + 1, w - 1);
            const std::uint8_t* q[4] = {in.row(y0) + x0 * ch, in.row(y0) + x1 * ch, in.row(y1) + x0 * ch,
                                        in.row(y1) + x1 * ch};
            std::uint8_t* o = out.row(y) + x * ch;
            if (!alpha) {
                for (int c = 0; c < ch; ++c) o[c] = static_cast<std::uint8_t>((q[0][c] + q[1][c] + q[2][c] + q[3][c] + 2) >> 2);
                continue;
            }
            const int a = ch - 1;
            const int alpha_sum = q[0][a] + q[1][a] + q[2][a] + q[3][a];
            o[a] = static_cast<std::uint8_t>((alpha_sum + 2) >> 2);
            for (int c = 0; c < a; ++c) {
                if (alpha_sum == 0) {
                    o[c] = 0;
                    continue;
                }
                double weighted = 0;
                for (int k = 0; k < 4; ++k) weighted += double(q[k][c]) * q[k][a];
                o[c] = static_cast<std::uint8_t>(std::floor(weighted / alpha_sum + 0.5));
            }
        }
    }
    return out;
}

// levels[0] = full resolution, levels[k] = k halvings of it (k = 1..halvings).
inline std::vector<tilekit::image_buffer> reference_pyramid(const tilekit::image_view& source, int halvings) {
    std::vector<tilekit::image_buffer> levels;
    tilekit::image_buffer full(source.width, source.height, source.channels);
    const bytes px = pixels_of(source);
    std::memcpy(full.data(), px.data(), px.size());
    levels.push_back(std::move(full));
    for (int k = 1; k <= halvings; ++k) levels.push_back(reference_half(levels.back()));
    return levels;
}

// ---------------------------------------------------------------------------------------------
// Image quality.

inline double psnr_from_mse(double mse) { return mse <= 0 ? std::numeric_limits<double>::infinity() : 10.0 * std::log10(255.0 * 255.0 / mse); }

inline double psnr(const std::uint8_t* a, const std::uint8_t* b, std::size_t n) {
    double sum = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double d = double(a[i]) - double(b[i]);
        sum += d * d;
    }
    return psnr_from_mse(n ? sum / double(n) : 0);
}

// ---------------------------------------------------------------------------------------------
// OpenSeadragon's Deep Zoom arithmetic, transcribed from src/tilesource.js and
// src/dzitilesource.js (floating point, as the viewer does it).

struct osd_dzi {
    double width, height;
    int tile, overlap, max_level;

    osd_dzi(int w, int h, int t, int o)
        : width(w), height(h), tile(t), overlap(o),
          max_level(static_cast<int>(std::ceil(std::log(double(std::max(w, h))) / std::log(2.0)))) {}

    double level_scale(int level) const { return 1.0 / std::pow(2.0, max_level - level); }

    std::pair<int, int> num_tiles(int level) const {
        const double scale = level_scale(level);
        return {static_cast<int>(std::ceil(scale * width / tile)), static_cast<int>(std::ceil(scale * height / tile))};
    }

    struct rect {
        double x, y, w, h;
    };

    // getTileBounds, in level pixels instead of normalised coordinates.
    rect tile_bounds(int level, int x, int y) const {
        const double sw = width * level_scale(level), sh = height * level_scale(level);
        const double px = x == 0 ? 0 : double(tile) * x - overlap;
        const double py = y == 0 ? 0 : double(tile) * y - overlap;
        double sx = tile + (x == 0 ? 1 : 2) * overlap;
        double sy = tile + (y == 0 ? 1 : 2) * overlap;
        sx = std::min(sx, sw - px);
        sy = std::min(sy, sh - py);
        return {px, py, sx, sy};
    }
};

// ---------------------------------------------------------------------------------------------
// A hand-made PNG writer (stored deflate blocks), for 16-bit images and crafted headers.

inline std::uint32_t crc32(const std::uint8_t* data, std::size_t n, std::uint32_t crc = 0) {
    crc = ~crc;
    for (std::size_t i = 0; i < n; ++i) {
        crc ^= data[i];
        for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

inline std::uint32_t adler32(const bytes& data) {
    std::uint32_t a = 1, b = 0;
    for (std::uint8_t v : data) {
        a = (a + v) % 65521u;
        b = (b + a) % 65521u;
    }
    return (b << 16) | a;
}

inline void put_be32(bytes& out, std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(v >> s));
}

// zlib stream (RFC 1950) holding `data` in stored (uncompressed) deflate blocks.
inline bytes zlib_stored(const bytes& data) {
    bytes out = {0x78, 0x01};
    std::size_t pos = 0;
    do {
        const std::size_t n = std::min<std::size_t>(65535, data.size() - pos);
        const bool final_block = pos + n == data.size();
        out.push_back(final_block ? 1 : 0);  // BFINAL, BTYPE = 00
        out.push_back(static_cast<std::uint8_t>(n & 0xff));
        out.push_back(static_cast<std::uint8_t>(n >> 8));
        out.push_back(static_cast<std::uint8_t>(~n & 0xff));
        out.push_back(static_cast<std::uint8_t>((~n >> 8) & 0xff));
        out.insert(out.end(), data.begin() + static_cast<std::ptrdiff_t>(pos),
                   data.begin() + static_cast<std::ptrdiff_t>(pos + n));
        pos += n;
    } while (pos < data.size());
    put_be32(out, adler32(data));
    return out;
}

inline void png_chunk(bytes& out, const char type[4], const bytes& data) {
    put_be32(out, static_cast<std::uint32_t>(data.size()));
    bytes body(type, type + 4);
    body.insert(body.end(), data.begin(), data.end());
    out.insert(out.end(), body.begin(), body.end());
    put_be32(out, crc32(body.data(), body.size()));
}

// A PNG from raw scanlines (without filter bytes: filter 0 is added to every row).
inline bytes make_png(std::uint32_t width, std::uint32_t height, int bit_depth, int color_type, const bytes& raw_rows,
                      std::size_t row_bytes) {
    bytes png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    bytes ihdr;
    put_be32(ihdr, width);
    put_be32(ihdr, height);
    ihdr.push_back(static_cast<std::uint8_t>(bit_depth));
    ihdr.push_back(static_cast<std::uint8_t>(color_type));
    ihdr.push_back(0);
    ihdr.push_back(0);
    ihdr.push_back(0);
    png_chunk(png, "IHDR", ihdr);
    bytes filtered;
    for (std::size_t pos = 0; pos < raw_rows.size(); pos += row_bytes) {
        filtered.push_back(0);
        filtered.insert(filtered.end(), raw_rows.begin() + static_cast<std::ptrdiff_t>(pos),
                        raw_rows.begin() + static_cast<std::ptrdiff_t>(std::min(pos + row_bytes, raw_rows.size())));
    }
    png_chunk(png, "IDAT", zlib_stored(filtered));
    png_chunk(png, "IEND", {});
    return png;
}

// ---------------------------------------------------------------------------------------------
// Errors and skips.

// The exception of type E thrown by f, or nullopt when f succeeds (other exceptions propagate).
template <class E = tilekit::error, class F>
std::optional<E> exception_of(F&& f) {
    try {
        f();
    } catch (const E& e) {
        return e;
    }
    return std::nullopt;
}

// The error code thrown by f, or nullopt when it succeeds; `message` receives what().
template <class F>
std::optional<tilekit::errc> error_of(F&& f, std::string* message = nullptr) {
    const auto caught = exception_of<tilekit::error>(std::forward<F>(f));
    if (caught && message) *message = caught->what();
    return caught ? std::optional<tilekit::errc>(caught->code()) : std::nullopt;
}

// TILEKIT_REQUIRE_TESTDATA=1 (set by .ci/run) turns every missing test input into a failure.
inline bool testdata_required() {
    const char* value = std::getenv("TILEKIT_REQUIRE_TESTDATA");
    return value && std::string(value) == "1";
}

// Call when a test cannot run because an optional input (a test suite, a reference tool, a
// peer) is missing, then return from the test. It fails the test when the inputs are required;
// otherwise it prints the marker that the test's own ctest entry maps to "Skipped"
// (SKIP_REGULAR_EXPRESSION), so a skip is never reported as a pass.
#define TILEKIT_SKIP_TEST(reason)                                                        \
    do {                                                                                 \
        if (::tkt::testdata_required()) FAIL("required test input missing: " << reason); \
        std::cout << "TILEKIT-TEST-SKIPPED: " << reason << std::endl;                    \
        WARN("skipped: " << reason);                                                     \
    } while (false)

// ---------------------------------------------------------------------------------------------
// Files, directories and external tools.

class temp_dir {
public:
    explicit temp_dir(const std::string& tag = "tilekit-test") {
        std::string pattern = (fs::temp_directory_path() / (tag + "-XXXXXX")).string();
        std::vector<char> buffer(pattern.begin(), pattern.end());
        buffer.push_back('\0');
        REQUIRE(::mkdtemp(buffer.data()) != nullptr);
        path_ = buffer.data();
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
    const fs::path& path() const { return path_; }
    std::string str() const { return path_.string(); }

private:
    fs::path path_;
};

inline bytes read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline void write_file(const fs::path& path, const bytes& data) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
    REQUIRE(out.good());
}

inline std::string as_string(const bytes& data) { return std::string(data.begin(), data.end()); }

// Every regular file under `root`, as '/'-separated paths relative to it.
inline std::set<std::string> list_files(const fs::path& root) {
    std::set<std::string> files;
    if (!fs::exists(root)) return files;
    for (const auto& entry : fs::recursive_directory_iterator(root))
        if (entry.is_regular_file()) files.insert(fs::relative(entry.path(), root).generic_string());
    return files;
}

inline bool on_path(const std::string& tool) {
    const char* path = std::getenv("PATH");
    if (!path) return false;
    std::stringstream dirs(path);
    std::string dir;
    while (std::getline(dirs, dir, ':')) {
        if (dir.empty()) continue;
        const fs::path candidate = fs::path(dir) / tool;
        if (::access(candidate.c_str(), X_OK) == 0 && fs::is_regular_file(candidate)) return true;
    }
    return false;
}

inline std::string shell_quote(const std::string& s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
}

// Runs a shell command; its output goes to `log`. Returns the exit status.
inline int run_command(const std::string& command, const fs::path& log) {
    const std::string full = command + " >" + shell_quote(log.string()) + " 2>&1";
    const int status = std::system(full.c_str());
    return status;
}

// ---------------------------------------------------------------------------------------------
// Pyramid inspection.

inline std::string dz_tile_key(const std::string& basename, int level, int column, int row,
                               const std::string& ext = "png") {
    return basename + "_files/" + std::to_string(level) + "/" + std::to_string(column) + "_" + std::to_string(row) + "." + ext;
}

inline std::string xyz_tile_key(int zoom, int x, int y, const std::string& ext = "png") {
    return std::to_string(zoom) + "/" + std::to_string(x) + "/" + std::to_string(y) + "." + ext;
}

inline decoded_image decode_object(const tilekit::memory_sink& sink, const std::string& key) {
    const auto object = sink.get(key);
    INFO("key " << key);
    REQUIRE(object.has_value());
    return stb_decode(object->body);
}

// Independent level sizes: repeated ceil-halving.
inline std::vector<std::pair<int, int>> halving_sizes(int width, int height, int count) {
    std::vector<std::pair<int, int>> sizes;
    for (int k = 0; k < count; ++k) {
        sizes.push_back({width, height});
        width = (width + 1) / 2;
        height = (height + 1) / 2;
    }
    return sizes;
}

// Smallest n >= 0 with 2^n >= value (computed without floating point).
inline int ceil_log2(std::int64_t value) {
    int n = 0;
    while ((std::int64_t{1} << n) < value) ++n;
    return n;
}

inline int div_up(int a, int b) { return (a + b - 1) / b; }

// Rebuilds Deep Zoom level `level` (size w x h) from its tiles, placing each tile at its
// overlap-adjusted origin, and checks that overlapping pixels agree and that every pixel is
// covered exactly by the expected tiles.
inline tilekit::image_buffer rebuild_dz_level(const tilekit::memory_sink& sink, const std::string& basename, int level,
                                              int w, int h, int tile, int overlap, int channels) {
    tilekit::image_buffer out(w, h, channels);
    std::vector<std::uint8_t> covered(static_cast<std::size_t>(w) * h, 0);
    const int columns = div_up(w, tile), rows = div_up(h, tile);
    std::size_t mismatches = 0;
    for (int r = 0; r < rows; ++r)
        for (int c = 0; c < columns; ++c) {
            const decoded_image t = decode_object(sink, dz_tile_key(basename, level, c, r));
            const int x0 = std::max(0, c * tile - overlap), y0 = std::max(0, r * tile - overlap);
            const int x1 = std::min(w, (c + 1) * tile + overlap), y1 = std::min(h, (r + 1) * tile + overlap);
            INFO("level " << level << " tile " << c << "_" << r);
            REQUIRE(t.width == x1 - x0);
            REQUIRE(t.height == y1 - y0);
            REQUIRE(t.channels == channels);
            for (int y = 0; y < t.height; ++y)
                for (int x = 0; x < t.width; ++x) {
                    const std::size_t at = static_cast<std::size_t>(y0 + y) * w + (x0 + x);
                    std::uint8_t* o = out.row(y0 + y) + (x0 + x) * channels;
                    const std::uint8_t* p = t.at(x, y);
                    if (covered[at] && std::memcmp(o, p, channels) != 0) ++mismatches;
                    std::memcpy(o, p, channels);
                    covered[at] = 1;
                }
        }
    INFO("level " << level);
    CHECK(mismatches == 0);  // overlapping tiles show the same pixels
    CHECK(std::count(covered.begin(), covered.end(), 0) == 0);
    return out;
}

inline std::size_t count_differences(const tilekit::image_buffer& a, const tilekit::image_buffer& b, int tolerance = 0) {
    REQUIRE(a.width() == b.width());
    REQUIRE(a.height() == b.height());
    REQUIRE(a.channels() == b.channels());
    std::size_t n = 0;
    for (std::size_t i = 0; i < a.byte_size(); ++i)
        if (std::abs(int(a.data()[i]) - int(b.data()[i])) > tolerance) ++n;
    return n;
}

}  // namespace tkt
