// Progress reporting, cancellation, failing sinks and thread-count independence of the output.

#include "test_helpers.hpp"

#include <atomic>
#include <mutex>
#include <thread>

using namespace tilekit;

namespace {

std::uint64_t layout_total(const std::vector<level_geometry>& levels) {
    std::uint64_t n = 0;
    for (const auto& level : levels) n += level.tile_count();
    return n;
}

struct progress_log {
    std::mutex mutex;
    std::vector<tile_progress> calls;
    std::atomic<int> inside{0};
    bool overlapped = false;

    progress_callback callback() {
        return [this](const tile_progress& p) {
            if (inside.fetch_add(1) != 0) overlapped = true;  // "from one thread at a time"
            {
                std::lock_guard<std::mutex> lock(mutex);
                calls.push_back(p);
            }
            inside.fetch_sub(1);
        };
    }
};

void check_progress(const progress_log& log, std::uint64_t total) {
    REQUIRE(!log.calls.empty());
    CHECK_FALSE(log.overlapped);
    std::uint64_t previous = 0;
    std::size_t non_monotonic = 0, wrong_total = 0;
    for (const tile_progress& p : log.calls) {
        if (p.tiles_done < previous) ++non_monotonic;
        if (p.tiles_total != total) ++wrong_total;
        previous = p.tiles_done;
    }
    CHECK(non_monotonic == 0);
    CHECK(wrong_total == 0);
    CHECK(log.calls.back().tiles_done == total);
    CHECK(log.calls.back().tiles_total == total);
    INFO(log.calls.size() << " progress calls for " << total << " tiles");
    CHECK(log.calls.size() <= 1001 + 3);
}

// A sink that fails on one key: either at once in put(), or later in flush() (as an
// asynchronous uploader would).
class failing_sink final : public storage_sink {
public:
    failing_sink(std::string bad_key, bool fail_in_flush) : bad_key_(std::move(bad_key)), in_flush_(fail_in_flush) {}

    void put(storage_object object) override {
        if (object.key == bad_key_) {
            if (!in_flush_) throw tilekit::error(errc::storage_error, "refusing " + object.key);
            std::lock_guard<std::mutex> lock(mutex_);
            deferred_ = true;
            return;
        }
        inner.put(std::move(object));
    }

    void flush() override {
        std::lock_guard<std::mutex> lock(mutex_);
        if (deferred_) throw tilekit::error(errc::storage_error, "upload of " + bad_key_ + " failed");
    }

    memory_sink inner;

private:
    std::string bad_key_;
    bool in_flush_;
    std::mutex mutex_;
    bool deferred_ = false;
};

// Hands out the rows of an image and counts how many were asked for.
class counting_row_source final : public row_source {
public:
    explicit counting_row_source(const image_view& image) : image_(image) {}
    int width() const override { return image_.width; }
    int height() const override { return image_.height; }
    int channels() const override { return image_.channels; }
    const std::uint8_t* next_row() override { return image_.row(rows_read++); }
    int rows_read = 0;

private:
    image_view image_;
};

}  // namespace

TEST_CASE("Progress: monotonic, bounded number of calls, ends at the layout's tile count", "[progress]") {
    const image_buffer image = tkt::make_image(1024, 1024, 3, 2, 4);
    for (unsigned threads : {1u, 4u}) {
        for (int layout = 0; layout < 2; ++layout) {
            INFO("threads " << threads << (layout ? " xyz" : " dz") << " tile size 16");
            progress_log log;
            tile_options options;
            options.threads = threads;
            options.on_progress = log.callback();
            memory_sink sink;
            const libdeflate_png_encoder encoder(1);
            const pyramid_metadata m = layout ? generate_pyramid(image.view(), xyz_layout(16), encoder, sink, options)
                                              : generate_pyramid(image.view(), deep_zoom_layout(16, 0), encoder, sink, options);
            const std::uint64_t total = layout ? layout_total(xyz_layout(16).levels(1024, 1024))
                                               : layout_total(deep_zoom_layout(16, 0).levels(1024, 1024));
            CHECK(total == (layout ? 5461u : 5465u));
            CHECK(m.tile_count == total);
            check_progress(log, total);
        }
    }
    SECTION("small pyramids report every tile") {
        progress_log log;
        tile_options options;
        options.on_progress = log.callback();
        memory_sink sink;
        const image_buffer small = tkt::make_image(100, 70, 3, 1);
        generate_pyramid(small.view(), deep_zoom_layout(32, 1), stb_png_encoder(), sink, options);
        const std::uint64_t total = layout_total(deep_zoom_layout(32, 1).levels(100, 70));
        check_progress(log, total);
    }
    SECTION("between 1000 and 2000 tiles the calls stay bounded") {
        // 1 x 800 image, tile size 1: 1602 tiles, between 1000 and 2000: reporting every tile would be too often
        const image_buffer tall = tkt::make_image(1, 800, 1, 1);
        progress_log log;
        tile_options options;
        options.on_progress = log.callback();
        options.threads = 2;
        memory_sink sink;
        generate_pyramid(tall.view(), deep_zoom_layout(1, 0), libdeflate_png_encoder(1), sink, options);
        const std::uint64_t total = layout_total(deep_zoom_layout(1, 0).levels(1, 800));
        CHECK(total > 1000);
        check_progress(log, total);
    }
}

TEST_CASE("Cancelling from the progress callback stops the run without manifests", "[progress][cancel]") {
    const image_buffer image = tkt::make_image(1024, 1024, 3, 2, 4);
    for (unsigned threads : {1u, 3u}) {
        for (int layout = 0; layout < 2; ++layout) {
            INFO("threads " << threads << (layout ? " xyz" : " dz"));
            memory_sink sink;
            tile_options options;
            options.threads = threads;
            cancel_token token = options.cancel;  // a copy sees the cancellation too
            std::uint64_t total = 0;
            options.on_progress = [&](const tile_progress& p) {
                total = p.tiles_total;
                if (p.tiles_done >= p.tiles_total / 4) token.cancel();
            };
            const libdeflate_png_encoder encoder(1);
            try {
                if (layout)
                    generate_pyramid(image.view(), xyz_layout(16), encoder, sink, options);
                else
                    generate_pyramid(image.view(), deep_zoom_layout(16, 1), encoder, sink, options);
                FAIL("the run was not cancelled");
            } catch (const cancelled_error& e) {
                CHECK(e.code() == errc::cancelled);
            }
            CHECK(token.is_cancelled());
            CHECK(options.cancel.is_cancelled());
            CHECK_FALSE(sink.contains("pyramid.json"));
            CHECK_FALSE(sink.contains("image.dzi"));
            INFO(sink.size() << " of " << total << " tiles written");
            CHECK(sink.size() > 0);
            CHECK(sink.size() < total);
            CHECK(sink.size() < total * 3 / 4);  // it stopped soon after the cancel
        }
    }
    SECTION("the run stops reading its input soon after the cancel") {
        for (unsigned threads : {1u, 3u}) {
            INFO("threads " << threads);
            counting_row_source rows(image.view());
            memory_sink sink;
            tile_options options;
            options.threads = threads;
            cancel_token token = options.cancel;
            options.on_progress = [&](const tile_progress& p) {
                if (p.tiles_done >= p.tiles_total / 4) token.cancel();
            };
            CHECK_THROWS_AS(generate_pyramid(rows, deep_zoom_layout(16, 1), libdeflate_png_encoder(1), sink, options),
                            cancelled_error);
            CHECK(rows.rows_read > 0);
            CHECK(rows.rows_read < image.height() * 3 / 4);
            CHECK_FALSE(sink.contains("pyramid.json"));
        }
    }
    SECTION("a token cancelled before the run writes nothing") {
        counting_row_source rows(image.view());
        memory_sink sink;
        tile_options options;
        options.cancel.cancel();
        CHECK_THROWS_AS(generate_pyramid(rows, deep_zoom_layout(), stb_png_encoder(), sink, options),
                        cancelled_error);
        CHECK(rows.rows_read == 0);
        CHECK(sink.size() == 0);
    }
    SECTION("a token cancelled before the run writes nothing (image front door)") {
        memory_sink sink;
        tile_options options;
        options.cancel.cancel();
        bool progressed = false;
        options.on_progress = [&](const tile_progress&) { progressed = true; };
        CHECK_THROWS_AS(generate_pyramid(image.view(), deep_zoom_layout(), stb_png_encoder(), sink, options), cancelled_error);
        CHECK(sink.size() == 0);
        CHECK(sink.put_count() == 0);
        CHECK_FALSE(progressed);
    }
    SECTION("tile_memory front door honours the token as well") {
        memory_sink sink;
        pyramid_options options;
        options.cancel.cancel();
        const tkt::bytes png = tkt::png_of(image);
        try {
            tile_memory(png, sink, options);
            FAIL("not cancelled");
        } catch (const tilekit::error& e) {
            CHECK(e.code() == errc::cancelled);
        }
        CHECK(sink.size() == 0);
    }
}

TEST_CASE("A sink that fails for one key: the run throws and no manifest is written", "[sink][failure]") {
    const image_buffer image = tkt::make_image(600, 400, 3, 6);
    for (bool in_flush : {false, true}) {
        for (unsigned threads : {1u, 4u}) {
            for (const std::string bad : {"image_files/10/1_1.png", "image_files/0/0_0.png", "image_files/9/0_0.png"}) {
                INFO("bad key " << bad << " threads " << threads << (in_flush ? " (fails in flush)" : " (fails in put)"));
                failing_sink sink(bad, in_flush);
                tile_options options;
                options.threads = threads;
                try {
                    generate_pyramid(image.view(), deep_zoom_layout(64, 1), stb_png_encoder(), sink, options);
                    FAIL("the run succeeded");
                } catch (const tilekit::error& e) {
                    CHECK(e.code() == errc::storage_error);
                    CHECK(std::string(e.what()).find(bad) != std::string::npos);
                }
                CHECK_FALSE(sink.inner.contains("pyramid.json"));
                CHECK_FALSE(sink.inner.contains("image.dzi"));
                CHECK_FALSE(sink.inner.contains(bad));
            }
        }
    }
    SECTION("a failing manifest write is reported too, and pyramid.json is not written") {
        failing_sink sink("image.dzi", false);
        CHECK_THROWS_AS(generate_pyramid(image.view(), deep_zoom_layout(64, 1), stb_png_encoder(), sink), tilekit::error);
        CHECK_FALSE(sink.inner.contains("pyramid.json"));
    }
    SECTION("a progress callback that throws stops the run and its exception reaches the caller") {
        for (unsigned threads : {1u, 3u}) {
            memory_sink sink;
            tile_options options;
            options.threads = threads;
            options.on_progress = [](const tile_progress& p) {
                if (p.tiles_done >= 10) throw std::runtime_error("callback gave up");
            };
            INFO("threads " << threads);
            CHECK_THROWS_WITH(generate_pyramid(image.view(), deep_zoom_layout(32, 0), stb_png_encoder(), sink, options),
                              "callback gave up");
            CHECK_FALSE(sink.contains("pyramid.json"));
            CHECK_FALSE(sink.contains("image.dzi"));
        }
    }
    SECTION("a failing encoder stops the run the same way") {
        struct bad_encoder {
            std::string extension() const { return "png"; }
            std::string content_type() const { return "image/png"; }
            bool supports_alpha() const { return true; }
            void encode(const image_view& tile, std::vector<std::uint8_t>& out) const {
                if (tile.width == 3) throw tilekit::error(errc::encode_failed, "cannot encode width 3");
                stb_png_encoder().encode(tile, out);
            }
        };
        memory_sink sink;
        tile_options options;
        options.threads = 2;
        CHECK_THROWS_AS(generate_pyramid(image.view(), deep_zoom_layout(64, 0), bad_encoder(), sink, options),
                        tilekit::error);
        CHECK_FALSE(sink.contains("pyramid.json"));
        CHECK_FALSE(sink.contains("image.dzi"));
    }
}

TEST_CASE("Thread count does not change the output", "[threads]") {
    const image_buffer rgb = tkt::make_image(1001, 601, 3, 31);
    const image_buffer rgba = tkt::make_image(513, 300, 4, 32);
    struct run_config {
        const image_buffer* image;
        int layout;  // 0 dz, 1 xyz
        int encoder;  // 0 stb png, 1 libdeflate png, 2 turbojpeg
    };
    for (const run_config rc : {run_config{&rgb, 0, 1}, run_config{&rgb, 1, 0}, run_config{&rgba, 0, 0},
                                run_config{&rgba, 1, 1}, run_config{&rgb, 0, 2}}) {
        std::vector<std::map<std::string, tkt::bytes>> outputs;
        for (unsigned threads : {1u, 4u}) {
            memory_sink sink;
            tile_options options;
            options.threads = threads;
            const image_view view = rc.image->view();
            auto go = [&](const auto& encoder) {
                if (rc.layout) return generate_pyramid(view, xyz_layout(128), encoder, sink, options);
                return generate_pyramid(view, deep_zoom_layout(126, 1), encoder, sink, options);
            };
            if (rc.encoder == 0) go(stb_png_encoder());
            if (rc.encoder == 1) go(libdeflate_png_encoder());
            if (rc.encoder == 2) go(turbojpeg_encoder(80));
            std::map<std::string, tkt::bytes> objects;
            for (const auto& key : sink.keys()) objects[key] = sink.get(key)->body;
            outputs.push_back(std::move(objects));
        }
        INFO("layout " << rc.layout << " encoder " << rc.encoder << " channels " << rc.image->channels());
        REQUIRE(outputs[0].size() == outputs[1].size());
        CHECK(outputs[0] == outputs[1]);
    }
}
