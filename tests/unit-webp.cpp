// The WebP part (<tilekit/webp.hpp>): tiles decoded back with libwebp itself match the source
// (lossless exactly, lossy within a stated PSNR at the default quality, alpha kept), for gray,
// gray+alpha, RGB and RGBA; tile_file() writes .webp tiles in both layouts and records the format;
// WebP input decodes and is refused, from its header, when damaged or over the limits.

#include "test_helpers.hpp"

#include <tilekit/fast_codecs.hpp>
#include <tilekit/jobs.hpp>
#include <tilekit/webp.hpp>

#include <webp/decode.h>
#include <webp/encode.h>

#include <cstdlib>

using namespace tilekit;

namespace {

// The tile decoded by libwebp (not by tilekit's reader) as RGBA.
struct webp_decoded {
    int width = 0, height = 0;
    bool has_alpha = false;
    bool lossless = false;
    tkt::bytes rgba;
};

webp_decoded libwebp_decode(const tkt::bytes& data) {
    webp_decoded d;
    WebPBitstreamFeatures features;
    REQUIRE(WebPGetFeatures(data.data(), data.size(), &features) == VP8_STATUS_OK);
    d.has_alpha = features.has_alpha != 0;
    d.lossless = features.format == 2;
    std::uint8_t* p = WebPDecodeRGBA(data.data(), data.size(), &d.width, &d.height);
    REQUIRE(p != nullptr);
    d.rgba.assign(p, p + static_cast<std::size_t>(d.width) * d.height * 4);
    WebPFree(p);
    return d;
}

// The source as RGBA, as WebP represents it (gray spread over RGB, opaque without alpha).
tkt::bytes as_rgba(const image_view& v) {
    tkt::bytes out;
    for (int y = 0; y < v.height; ++y)
        for (int x = 0; x < v.width; ++x) {
            const std::uint8_t* p = v.row(y) + x * v.channels;
            const bool gray = v.channels <= 2;
            out.push_back(p[0]);
            out.push_back(gray ? p[0] : p[1]);
            out.push_back(gray ? p[0] : p[2]);
            out.push_back(v.has_alpha() ? p[v.channels - 1] : 255);
        }
    return out;
}

// PSNR over the colour channels of pixels that are not fully transparent (WebP, like every
// lossy codec with alpha, may change the colour under alpha 0), and the largest alpha error.
struct lossy_error {
    double psnr = 0;
    int max_alpha_error = 0;
};

lossy_error compare_lossy(const tkt::bytes& expected, const tkt::bytes& got) {
    REQUIRE(expected.size() == got.size());
    double sum = 0;
    std::size_t n = 0;
    lossy_error e;
    for (std::size_t i = 0; i < expected.size(); i += 4) {
        e.max_alpha_error = std::max(e.max_alpha_error, std::abs(int(expected[i + 3]) - int(got[i + 3])));
        if (expected[i + 3] == 0) continue;
        for (int c = 0; c < 3; ++c) {
            const double d = double(expected[i + c]) - double(got[i + c]);
            sum += d * d;
            ++n;
        }
    }
    e.psnr = tkt::psnr_from_mse(n ? sum / double(n) : 0);
    return e;
}

// Byte-for-byte equality, reported as a bool (Catch would print both buffers).
bool same(const tkt::bytes& a, const tkt::bytes& b) { return a == b; }

// Equal where the pixel is not fully transparent (libwebp's own encoders may change the colour
// under alpha 0 unless asked for exactness).
bool same_visible(const image_view& a, const image_view& b) {
    if (a.width != b.width || a.height != b.height || a.channels != b.channels) return false;
    const tkt::bytes x = as_rgba(a), y = as_rgba(b);
    for (std::size_t i = 0; i < x.size(); i += 4)
        if (x[i + 3] != y[i + 3] || (x[i + 3] != 0 && (x[i] != y[i] || x[i + 1] != y[i + 1] || x[i + 2] != y[i + 2])))
            return false;
    return true;
}

// A map-like image: smooth gradients with a few hard edges and a little noise.
image_buffer map_like(int w, int h, int channels, std::uint32_t seed) { return tkt::make_image(w, h, channels, seed, 3); }

const std::vector<std::pair<int, int>> odd_sizes = {{1, 1}, {1, 9}, {9, 1}, {3, 5}, {17, 9}, {64, 33}, {255, 3}};

}  // namespace

TEST_CASE("webp encoder: lossless tiles round-trip exactly (gray, gray+alpha, RGB, RGBA, odd sizes, strided rows)",
          "[webp][codec]") {
    const webp_encoder encoder(85, true);
    CHECK(encoder.extension() == "webp");
    CHECK(encoder.content_type() == "image/webp");
    CHECK(encoder.supports_alpha());
    for (int C = 1; C <= 4; ++C)
        for (const auto& size : odd_sizes) {
            const image_buffer image = tkt::make_image(size.first, size.second, C, 31u * static_cast<std::uint32_t>(C) + size.first, 40);
            std::vector<std::uint8_t> out;
            encoder.encode(image.view(), out);
            INFO(size.first << "x" << size.second << "x" << C);
            const webp_decoded d = libwebp_decode(out);
            CHECK(d.lossless);
            CHECK(d.width == size.first);
            CHECK(d.height == size.second);
            // exact, including the colour under fully transparent pixels (make_image has some)
            CHECK(same(d.rgba, as_rgba(image.view())));
        }
    const image_buffer big = tkt::make_image(40, 20, 4, 2, 40);
    const image_view crop{big.row(3) + 5 * 4, 23, 11, 4, big.stride()};
    std::vector<std::uint8_t> out;
    encoder.encode(crop, out);
    CHECK(same(libwebp_decode(out).rgba, as_rgba(crop)));
}

TEST_CASE("webp encoder: lossy tiles at the default quality (85) are within 37.5 dB PSNR and keep alpha exactly",
          "[webp][codec]") {
    const pyramid_options defaults;
    REQUIRE(defaults.quality == 85);
    REQUIRE_FALSE(defaults.lossless);
    const webp_encoder encoder(defaults.quality);
    for (int C = 1; C <= 4; ++C) {
        const image_buffer image = map_like(256, 256, C, 5u + static_cast<std::uint32_t>(C));
        std::vector<std::uint8_t> out;
        encoder.encode(image.view(), out);
        const webp_decoded d = libwebp_decode(out);
        INFO("channels " << C << ", " << out.size() << " bytes");
        CHECK_FALSE(d.lossless);
        CHECK(d.has_alpha == (C == 2 || C == 4));
        const lossy_error e = compare_lossy(as_rgba(image.view()), d.rgba);
        INFO("PSNR " << e.psnr << " dB");
        CHECK(e.psnr >= 37.5);
        CHECK(e.max_alpha_error == 0);  // the alpha plane is coded losslessly
        // and far smaller than the raw pixels
        CHECK(out.size() < image.byte_size() / 3);
    }
    // Quality matters: a lower quality gives fewer bytes and a lower PSNR.
    const image_buffer image = map_like(256, 256, 3, 9);
    std::vector<std::uint8_t> low, high;
    webp_encoder(30).encode(image.view(), low);
    webp_encoder(95).encode(image.view(), high);
    CHECK(low.size() < high.size());
    CHECK(compare_lossy(as_rgba(image.view()), libwebp_decode(low).rgba).psnr <
          compare_lossy(as_rgba(image.view()), libwebp_decode(high).rgba).psnr);
}

TEST_CASE("webp encoder: bad settings are refused", "[webp][codec]") {
    CHECK(tkt::error_of([] { webp_encoder(0); }) == errc::invalid_argument);
    CHECK(tkt::error_of([] { webp_encoder(101); }) == errc::invalid_argument);
    CHECK(tkt::error_of([] { webp_encoder(webp_options{80, false, 7}); }) == errc::invalid_argument);
    pyramid_options options;
    options.format = tile_format::webp;
    options.quality = 0;
    memory_sink sink;
    const image_buffer image = tkt::make_image(8, 8, 3);
    const tkt::bytes png = tkt::png_of(image.view());
    CHECK(tkt::error_of([&] { tile_memory(png, sink, options); }) == errc::invalid_argument);
}

TEST_CASE("tile_file with tile_format::webp: .webp tiles in Deep Zoom and XYZ, format recorded, lossless option",
          "[webp][tile_file]") {
    const image_buffer image = map_like(300, 200, 4, 3);
    const tkt::bytes png = tkt::png_of(image.view());
    for (const bool lossless : {false, true})
        for (const layout_type layout : {layout_type::deep_zoom, layout_type::xyz}) {
            INFO((lossless ? "lossless " : "lossy ") << to_string(layout));
            memory_sink sink;
            pyramid_options options;
            options.layout = layout;
            options.format = tile_format::webp;
            options.lossless = lossless;
            const pyramid_metadata m = tile_memory(png, sink, options);
            CHECK(m.format == "webp");
            CHECK(m.tile_url_template.find(".webp") != std::string::npos);
            const nlohmann::json j = nlohmann::json::parse(tkt::as_string(sink.get("pyramid.json")->body));
            CHECK(j.at("format") == "webp");
            CHECK(j.at("source_format") == "png");
            CHECK(j.at("encoding").at("lossless") == lossless);
            CHECK(j.at("encoding").at("method") == 2);
            CHECK(j.at("encoding").contains("quality") == !lossless);
            if (!lossless) CHECK(j.at("encoding").at("quality") == 85);
            CHECK(m.encoding == j.at("encoding"));
            const std::string top = layout == layout_type::xyz ? tkt::xyz_tile_key(m.max_level, 0, 0, "webp")
                                                                : tkt::dz_tile_key("image", m.max_level, 0, 0, "webp");
            const auto tile = sink.get(top);
            REQUIRE(tile);
            CHECK(tile->content_type == "image/webp");
            CHECK(std::string(content_type_for_key(top)) == "image/webp");  // what a server or upload uses
            const webp_decoded d = libwebp_decode(tile->body);
            CHECK(d.lossless == lossless);
            CHECK(d.has_alpha);
            if (layout == layout_type::deep_zoom) {
                const std::string dzi = tkt::as_string(sink.get("image.dzi")->body);
                CHECK(dzi.find("Format=\"webp\"") != std::string::npos);
                // the top-left tile holds source pixels 0..254 x 0..254 (254 + overlap 1)
                CHECK(d.width == 255);
                CHECK(d.height == 200);
                image_view region{image.data(), 255, 200, 4, image.stride()};
                const tkt::bytes expected = as_rgba(region);
                if (lossless) {
                    CHECK(same(d.rgba, expected));
                } else {
                    const lossy_error e = compare_lossy(expected, d.rgba);
                    CHECK(e.psnr >= 37.5);
                    CHECK(e.max_alpha_error == 0);
                }
            }
        }
}

TEST_CASE("tile_file with tile_format::webp: the skip-blank rule still applies", "[webp][tile_file]") {
    image_buffer source(256, 128, 4);
    for (int y = 0; y < 128; ++y)
        for (int x = 0; x < 256; ++x) {
            std::uint8_t* p = source.row(y) + x * 4;
            p[0] = static_cast<std::uint8_t>(x), p[1] = static_cast<std::uint8_t>(y), p[2] = 9;
            p[3] = x < 128 ? 0 : 255;
        }
    memory_sink sink;
    pyramid_options options;
    options.layout = layout_type::xyz;
    options.tile_size = 64;
    options.format = tile_format::webp;
    options.skip_blank_tiles = true;
    const pyramid_metadata m = tile_memory(tkt::png_of(source.view()), sink, options);
    CHECK(m.skipped_tiles > 0);
    for (int c = 0; c < 4; ++c) CHECK(sink.contains(tkt::xyz_tile_key(m.max_level, c, 0, "webp")) == (c >= 2));
}

// ---------------------------------------------------------------------------------------------
// WebP input

namespace {

tkt::bytes encode_with_libwebp(const image_buffer& image, bool lossless) {
    std::uint8_t* out = nullptr;
    std::size_t size = 0;
    const int stride = static_cast<int>(image.stride());
    if (image.channels() == 4)
        size = lossless ? WebPEncodeLosslessRGBA(image.data(), image.width(), image.height(), stride, &out)
                        : WebPEncodeRGBA(image.data(), image.width(), image.height(), stride, 90, &out);
    else
        size = lossless ? WebPEncodeLosslessRGB(image.data(), image.width(), image.height(), stride, &out)
                        : WebPEncodeRGB(image.data(), image.width(), image.height(), stride, 90, &out);
    REQUIRE(size > 0);
    tkt::bytes bytes(out, out + size);
    WebPFree(out);
    return bytes;
}

void put_le32(tkt::bytes& b, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

// A lossless WebP whose header claims width x height (1..16384), with `payload` junk bytes after it.
tkt::bytes vp8l_header_only(std::uint32_t width, std::uint32_t height, std::size_t payload = 64) {
    tkt::bytes chunk = {0x2f};
    const std::uint32_t bits = (width - 1) | ((height - 1) << 14) | (1u << 28);  // alpha hint, version 0
    put_le32(chunk, bits);
    chunk.resize(chunk.size() + payload, 0x00);
    tkt::bytes out = {'R', 'I', 'F', 'F'};
    put_le32(out, static_cast<std::uint32_t>(4 + 8 + chunk.size() + (chunk.size() & 1)));
    out.insert(out.end(), {'W', 'E', 'B', 'P', 'V', 'P', '8', 'L'});
    put_le32(out, static_cast<std::uint32_t>(chunk.size()));
    out.insert(out.end(), chunk.begin(), chunk.end());
    if (chunk.size() & 1) out.push_back(0);
    return out;
}

}  // namespace

TEST_CASE("webp input: lossless and lossy files decode to the pixels libwebp gives, through tile_file too", "[webp][decode]") {
    for (const int C : {3, 4})
        for (const bool lossless : {true, false}) {
            INFO(C << " channels, " << (lossless ? "lossless" : "lossy"));
            const image_buffer image = map_like(97, 61, C, 11);
            const tkt::bytes file = encode_with_libwebp(image, lossless);
            const webp_image_info info = read_webp_info(file.data(), file.size());
            CHECK(info.width == 97);
            CHECK(info.height == 61);
            CHECK(info.channels == C);
            CHECK(info.lossless == lossless);
            const image_buffer decoded = decode_webp(file.data(), file.size());
            REQUIRE(decoded.channels() == C);
            if (lossless) CHECK(same_visible(decoded.view(), image.view()));
            else CHECK(compare_lossy(as_rgba(image.view()), as_rgba(decoded.view())).psnr > 35.0);
            // tile_file / tile_memory read it with whatever codec set is the default
            tkt::temp_dir dir;
            tkt::write_file(dir.path() / "in.webp", file);
            memory_sink sink;
            pyramid_options options;
            const pyramid_metadata m = tile_file((dir.path() / "in.webp").string(), sink, options);
            CHECK(m.width == 97);
            CHECK(m.height == 61);
            CHECK(m.channels == C);
            const std::string top_key = tkt::dz_tile_key("image", m.max_level, 0, 0);
            const tkt::decoded_image top = tkt::decode_object(sink, top_key);
            CHECK(top.channels == C);
            CHECK(same(top.pixels, tkt::pixels_of(decoded.view())));  // one tile holds the whole image
            memory_sink sink2;
            CHECK(tile_memory(file, sink2, options).tile_count == m.tile_count);
            CHECK(same(sink2.get(top_key)->body, sink.get(top_key)->body));
        }
}

TEST_CASE("webp input: empty, corrupt, truncated, trailing bytes and animations are refused with clear errors",
          "[webp][decode][hostile]") {
    const image_buffer image = map_like(64, 48, 4, 12);
    const tkt::bytes good = encode_with_libwebp(image, true);
    std::string message;

    CHECK(tkt::error_of([&] { decode_webp(good.data(), 0); }, &message) == errc::empty_input);

    // Cut short, at several places: the header, the chunk header, the bitstream.
    for (const std::size_t keep : {std::size_t{12}, std::size_t{14}, std::size_t{24}, good.size() / 2, good.size() - 1}) {
        INFO("kept " << keep << " of " << good.size());
        const auto code = tkt::error_of([&] { decode_webp(good.data(), keep); }, &message);
        CHECK(code == errc::truncated_image);
        CHECK(message.find("truncated") != std::string::npos);
    }
    // Damaged bitstream (the RIFF sizes still agree).
    tkt::bytes damaged = good;
    for (std::size_t i = 30; i < damaged.size(); i += 3) damaged[i] = static_cast<std::uint8_t>(damaged[i] ^ 0xa5);
    CHECK(tkt::error_of([&] { decode_webp(damaged.data(), damaged.size()); }, &message) == errc::corrupt_image);
    CHECK(message.find("WebP") != std::string::npos);
    // Bytes after the RIFF data: strict by default, read with accept_damaged.
    tkt::bytes trailing = good;
    trailing.insert(trailing.end(), 10, 0x42);
    CHECK(tkt::error_of([&] { decode_webp(trailing.data(), trailing.size()); }, &message) == errc::corrupt_image);
    CHECK(message.find("10 bytes after the end") != std::string::npos);
    decode_limits lenient;
    lenient.accept_damaged = true;
    CHECK(same_visible(decode_webp(trailing.data(), trailing.size(), lenient).view(), image.view()));
    // An animation (VP8X with the animation flag) is told apart from a still image.
    tkt::bytes anim = {'R', 'I', 'F', 'F'};
    put_le32(anim, 4 + 18);
    anim.insert(anim.end(), {'W', 'E', 'B', 'P', 'V', 'P', '8', 'X'});
    put_le32(anim, 10);
    anim.insert(anim.end(), {0x02, 0, 0, 0, 9, 0, 0, 9, 0, 0});  // animation flag, 10x10 canvas
    const auto anim_code = tkt::error_of([&] { decode_webp(anim.data(), anim.size()); }, &message);
    CHECK(anim_code == errc::corrupt_image);
    CHECK(message.find("animated") != std::string::npos);
    // Not a WebP at all.
    const tkt::bytes png = tkt::png_of(image.view());
    CHECK(tkt::error_of([&] { decode_webp(png.data(), png.size()); }) == errc::not_an_image);
    // Through tile_file, a damaged WebP file is named in the message.
    tkt::temp_dir dir;
    tkt::write_file(dir.path() / "cut.webp", tkt::bytes(good.begin(), good.begin() + static_cast<long>(good.size() / 2)));
    memory_sink sink;
    CHECK(tkt::error_of([&] { tile_file((dir.path() / "cut.webp").string(), sink); }, &message) == errc::truncated_image);
    CHECK(message.find("cut.webp") != std::string::npos);
    CHECK(sink.size() == 0);
}

TEST_CASE("webp input: the pixel limit and the memory budget are checked from the header, before decoding",
          "[webp][decode][hostile]") {
    // 16383 x 16383 claimed by a file of ~100 bytes: refused on its header alone (decoding
    // would first need the 1 GiB output buffer).
    const tkt::bytes huge = vp8l_header_only(16383, 16383);
    REQUIRE(huge.size() < 200);
    const webp_image_info info = read_webp_info(huge.data(), huge.size());
    CHECK(info.width == 16383);
    CHECK(info.height == 16383);
    std::string message;
    decode_limits limits;
    limits.max_pixels = 100'000'000;
    CHECK(tkt::error_of([&] { decode_webp(huge.data(), huge.size(), limits); }, &message) == errc::image_too_large);
    CHECK(message.find("16383x16383") != std::string::npos);
    // Under the pixel limit but over the memory budget.
    limits.max_pixels = std::uint64_t{1} << 30;
    limits.max_memory_bytes = 64 << 20;
    CHECK(tkt::error_of([&] { decode_webp(huge.data(), huge.size(), limits); }, &message) == errc::over_memory_budget);
    CHECK(message.find("memory budget") != std::string::npos);
    // The defaults refuse it too (16383^2 RGBA plus libwebp's ARGB copy is over 1 GiB).
    CHECK(tkt::error_of([&] { decode_webp(huge.data(), huge.size()); }) == errc::over_memory_budget);
    // A small header with a junk bitstream, within every limit, is corrupt, not allocated into trouble.
    const tkt::bytes small = vp8l_header_only(32, 32);
    const auto code = tkt::error_of([&] { decode_webp(small.data(), small.size()); });
    CHECK((code == errc::corrupt_image || code == errc::truncated_image));
    // Through tile_file: pyramid_options::limits applies to WebP input.
    memory_sink sink;
    pyramid_options options;
    options.limits.max_pixels = 1000;
    CHECK(tkt::error_of([&] { tile_memory(huge, sink, options); }) == errc::image_too_large);
    // And the file size limit, before the file is read.
    tkt::temp_dir dir;
    tkt::write_file(dir.path() / "big.webp", huge);
    options.limits = decode_limits{};
    options.limits.max_file_bytes = 50;
    CHECK(tkt::error_of([&] { tile_file((dir.path() / "big.webp").string(), sink, options); }, &message) == errc::image_too_large);
    CHECK(sink.size() == 0);
}

// ---------------------------------------------------------------------------------------------
// The job system: per-job WebP choice in the payload, WebP input, and the job result.

TEST_CASE("tile-generation job: format webp and lossless travel in the payload; the result says webp", "[webp][jobs]") {
    using namespace tilekit::jobs;
    tile_generation_request r;
    r.source_key = "uploads/map.webp";
    r.project_slug = "harbour-map";
    r.version = 3;
    r.tiling.tile_size = 64;
    r.tiling.format = tile_format::webp;
    r.tiling.lossless = true;
    r.tiling.webp_method = 5;
    const nlohmann::json payload = to_payload(r);
    CHECK(payload.at("tiling").at("format") == "webp");
    CHECK(payload.at("tiling").at("lossless") == true);
    CHECK(payload.at("tiling").at("webp_method") == 5);
    const tile_generation_request back = request_from_payload(payload);
    CHECK(back.tiling.format == tile_format::webp);
    CHECK(back.tiling.lossless);
    CHECK(back.tiling.webp_method == 5);
    nlohmann::json bad = payload;
    bad["tiling"]["webp_method"] = 7;
    CHECK(tkt::error_of([&] { request_from_payload(bad); }) == errc::invalid_argument);
    bad["tiling"]["webp_method"] = 5;
    bad["tiling"]["lossless"] = "yes";
    CHECK(tkt::error_of([&] { request_from_payload(bad); }) == errc::invalid_argument);
    bad["tiling"]["lossless"] = true;
    bad["tiling"]["format"] = "avif";
    std::string message;
    CHECK(tkt::error_of([&] { request_from_payload(bad); }, &message) == errc::invalid_argument);
    CHECK(message.find("'webp'") != std::string::npos);

    // Run it: a WebP source, lossless WebP tiles.
    memory_job_store store;
    memory_source source;
    memory_sink sink;
    tkt::temp_dir scratch{"tilekit-webp-job"};
    const image_buffer image = map_like(150, 90, 4, 21);
    source.add(r.source_key, encode_with_libwebp(image, true));
    tile_generation_settings settings;
    settings.scratch_root = scratch.path();
    settings.threads = 2;
    new_job job{tile_generation_job, "project-1", "version-3", "alice"};
    job.payload = payload;
    store.enqueue(job);
    const version_lookup lookup = [](const job_record&) { return version_info{3, "draft"}; };
    const std::map<std::string, job_handler> handlers{
        {tile_generation_job, tile_generation_handler<fast_codecs>(source, sink, lookup, settings)}};
    const auto done = run_next_job(store, handlers, worker_options{}, cancel_token{});
    REQUIRE(done);
    INFO(done->error);
    REQUIRE(done->status == job_status::completed);
    CHECK(done->result.at("format") == "webp");
    CHECK(done->result.at("source_format") == "webp");
    CHECK(done->result.at("encoding") == nlohmann::json({{"lossless", true}, {"method", 5}}));
    const std::string prefix = done->result.at("tiles_path").get<std::string>();
    const nlohmann::json meta = nlohmann::json::parse(tkt::as_string(sink.get(prefix + "pyramid.json")->body));
    CHECK(meta.at("format") == "webp");
    CHECK(meta.at("source_format") == "webp");
    CHECK(meta.at("encoding") == done->result.at("encoding"));
    CHECK(meta.at("channels") == 4);
    const auto top = sink.get(prefix + tkt::dz_tile_key("image", meta.at("max_level").get<int>(), 0, 0, "webp"));
    REQUIRE(top);
    const webp_decoded d = libwebp_decode(top->body);
    CHECK(d.lossless);
    CHECK(d.width == 65);  // 64 + overlap 1
}
