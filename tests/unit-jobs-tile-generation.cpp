// The tile-generation job end to end against the memory store and memory sinks: a completed
// run with its result and a monotonic progress sequence through every stage, and every way it
// can fail ending in a failed (or cancelled) job with an actionable message, no manifest, and
// no scratch files left behind.

#include "test_helpers.hpp"

#include <tilekit/fast_codecs.hpp>
#include <tilekit/jobs.hpp>

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

using namespace tilekit;
using namespace tilekit::jobs;

namespace {

// A store that records every progress write, and can be made slow or made to wait.
class recording_store final : public job_store {
public:
    std::chrono::milliseconds delay{0};
    std::function<void(const std::string& message)> before_progress_write;  // may block

    job_record create(const new_job& job) override { return inner.create(job); }
    std::optional<job_record> get(const std::string& id) const override { return inner.get(id); }
    std::vector<job_record> list_by_project(const std::string& p) const override { return inner.list_by_project(p); }
    std::vector<job_record> list_by_status(job_status s) const override { return inner.list_by_status(s); }
    job_record start(const std::string& id, const std::string& m) override { return inner.start(id, m); }
    job_record report_progress(const std::string& id, int progress, const std::string& message) override {
        if (delay.count()) std::this_thread::sleep_for(delay);
        if (before_progress_write) before_progress_write(message);
        {
            std::lock_guard<std::mutex> lock(mutex);
            writes.emplace_back(progress, message);
        }
        return inner.report_progress(id, progress, message);
    }
    job_record complete(const std::string& id, const nlohmann::json& r, const std::string& m) override {
        return inner.complete(id, r, m);
    }
    job_record fail(const std::string& id, const std::string& e) override { return inner.fail(id, e); }
    job_record cancel(const std::string& id, const std::string& r) override { return inner.cancel(id, r); }

    memory_job_store inner;
    std::mutex mutex;
    std::vector<std::pair<int, std::string>> writes;
};

std::vector<std::uint8_t> png_of(int width, int height, int channels = 3) {
    std::vector<std::uint8_t> png;
    libdeflate_png_encoder().encode(tkt::make_image(width, height, channels, 9, 20).view(), png);
    return png;
}

struct fixture {
    recording_store store;
    memory_source source;
    memory_sink sink;
    tkt::temp_dir scratch{"tilekit-job-scratch"};

    tile_generation_request request_for(const job_record& job, const std::string& key = "uploads/map.png") {
        tile_generation_request r;
        r.job_id = job.id;
        r.source_key = key;
        r.project_slug = "harbour-map";
        r.version = {3, "draft"};
        r.scratch_root = scratch.path();
        r.progress_interval = std::chrono::milliseconds(5);
        r.tiling.tile_size = 64;
        r.tiling.threads = 2;
        return r;
    }

    job_record new_job_record() { return store.create({tile_generation_job, "project-1", "version-3", "alice"}); }

    bool scratch_is_empty() const { return std::filesystem::is_empty(scratch.path()); }
    bool has_manifest() const {
        return sink.contains("mp/harbour-map/uploads/tiles/pyramid.json") ||
               sink.contains("mp/harbour-map/uploads/tiles/image.dzi");
    }
};

}  // namespace

TEST_CASE("a tile-generation job completes with the pyramid's metadata and monotonic progress", "[jobs]") {
    fixture f;
    f.source.add("uploads/map.png", png_of(900, 700));
    const job_record job = f.new_job_record();
    const job_record done = run_tile_generation_job(f.store, f.source, f.sink, f.request_for(job));

    INFO(done.error);
    REQUIRE(done.status == job_status::completed);
    CHECK(done.progress == 100);
    CHECK(done.started_at.has_value());
    CHECK(done.completed_at.has_value());
    const nlohmann::json& r = done.result;
    CHECK(r.at("tiles_path") == "mp/harbour-map/uploads/tiles/");
    CHECK(r.at("width") == 900);
    CHECK(r.at("height") == 700);
    CHECK(r.at("levels") == 11);
    CHECK(r.at("tile_size") == 64);
    CHECK(r.at("format") == "png");
    CHECK(r.at("layout") == "dz");
    CHECK(r.at("overlap") == 1);
    CHECK(r.at("tile_count").get<std::uint64_t>() + 2 == f.sink.size());
    CHECK(r.at("total_bytes").get<std::uint64_t>() > 0);
    CHECK(f.sink.contains("mp/harbour-map/uploads/tiles/pyramid.json"));
    CHECK(f.scratch_is_empty());

    // Progress: non-decreasing, and every stage seen with its message.
    REQUIRE(!f.store.writes.empty());
    int last = -1;
    bool downloading = false, generating = false, uploading = false, finalizing = false;
    for (const auto& [percent, message] : f.store.writes) {
        CHECK(percent >= last);
        last = percent;
        downloading |= message == "Downloading source image..." && percent >= 0 && percent <= 10;
        generating |= message.rfind("Generating tiles... ", 0) == 0 && percent >= 10 && percent <= 80;
        uploading |= message == "Uploading tiles to storage..." && percent == 80;
        finalizing |= message == "Finalizing..." && percent == 95;
    }
    CHECK(downloading);
    CHECK(generating);
    CHECK(uploading);
    CHECK(finalizing);
    CHECK(f.store.writes.size() < 200);  // throttled, never per tile (the pyramid has hundreds)
}

TEST_CASE("every failure ends the job failed with a message, no manifest and no scratch files", "[jobs]") {
    struct failing_sink final : storage_sink {
        void put(storage_object object) override {
            if (object.key.find("/8/") != std::string::npos) throw error(errc::storage_error, "disk full: " + object.key);
        }
        void flush() override {}
    };
    const auto run = [](fixture& f, tile_generation_request request, auto& sink) {
        return run_tile_generation_job(f.store, f.source, sink, request);
    };

    SECTION("missing source key") {
        fixture f;
        const job_record done = run(f, f.request_for(f.new_job_record(), "uploads/nope.png"), f.sink);
        CHECK(done.status == job_status::failed);
        CHECK(done.error.find("uploads/nope.png") != std::string::npos);
        CHECK(done.error.find("not found") != std::string::npos);
        CHECK(f.scratch_is_empty());
    }
    SECTION("corrupt and truncated sources") {
        fixture f;
        auto png = png_of(300, 200);
        png.resize(png.size() / 2);
        f.source.add("uploads/map.png", png);
        const job_record done = run(f, f.request_for(f.new_job_record()), f.sink);
        CHECK(done.status == job_status::failed);
        CHECK(done.error.find("truncated") != std::string::npos);
        CHECK(done.error.find("uploads/map.png") != std::string::npos);  // the key, not a local path
        CHECK(done.error.find(f.scratch.str()) == std::string::npos);
        CHECK_FALSE(f.has_manifest());
        CHECK(f.scratch_is_empty());

        fixture g;
        g.source.add("uploads/map.png", std::vector<std::uint8_t>(5000, 'x'));
        const job_record text = run(g, g.request_for(g.new_job_record()), g.sink);
        CHECK(text.status == job_status::failed);
        CHECK(text.error.find("not a PNG or JPEG") != std::string::npos);
    }
    SECTION("source over the size limit") {
        fixture f;
        f.source.add("uploads/map.png", png_of(300, 200));
        tile_generation_request request = f.request_for(f.new_job_record());
        request.max_source_bytes = 1000;
        const job_record done = run(f, request, f.sink);
        CHECK(done.status == job_status::failed);
        CHECK(done.error.find("over the limit of 1000 bytes") != std::string::npos);
    }
    SECTION("a version published since the job was queued") {
        fixture f;
        f.source.add("uploads/map.png", png_of(300, 200));
        tile_generation_request request = f.request_for(f.new_job_record());
        request.version.status = "published";
        const job_record done = run(f, request, f.sink);
        CHECK(done.status == job_status::failed);
        CHECK(done.error.rfind("Can only generate tiles for draft versions", 0) == 0);
        CHECK(f.sink.size() == 0);
    }
    SECTION("storage failing part-way") {
        fixture f;
        f.source.add("uploads/map.png", png_of(900, 700));
        failing_sink sink;
        const job_record done = run(f, f.request_for(f.new_job_record()), sink);
        CHECK(done.status == job_status::failed);
        CHECK(done.error.find("disk full") != std::string::npos);
        CHECK(f.scratch_is_empty());
    }
    SECTION("an exception from user code") {
        fixture f;
        f.source.add("uploads/map.png", png_of(900, 700));
        tile_generation_request request = f.request_for(f.new_job_record());
        request.tiling.on_progress = [](const tile_progress& p) {
            if (p.tiles_done > 10) throw std::runtime_error("callback exploded");
        };
        const job_record done = run(f, request, f.sink);
        CHECK(done.status == job_status::failed);
        CHECK(done.error.find("callback exploded") != std::string::npos);
        CHECK_FALSE(f.has_manifest());
    }
    SECTION("a bad project slug never reaches a storage key") {
        fixture f;
        f.source.add("uploads/map.png", png_of(300, 200));
        tile_generation_request request = f.request_for(f.new_job_record());
        request.project_slug = "../etc";
        const job_record done = run(f, request, f.sink);
        CHECK(done.status == job_status::failed);
        CHECK(done.error.find("slug") != std::string::npos);
        CHECK(f.sink.size() == 0);
    }
}

TEST_CASE("cancellation ends the job cancelled without a manifest", "[jobs]") {
    SECTION("by token") {
        fixture f;
        f.source.add("uploads/map.png", png_of(1500, 1200));
        tile_generation_request request = f.request_for(f.new_job_record());
        cancel_token cancel;
        request.tiling.on_progress = [cancel](const tile_progress& p) mutable {
            if (p.tiles_done > 20) cancel.cancel();
        };
        const job_record done = run_tile_generation_job(f.store, f.source, f.sink, request, cancel);
        CHECK(done.status == job_status::cancelled);
        CHECK_FALSE(f.has_manifest());
        CHECK(f.scratch_is_empty());
    }
    SECTION("by cancelling the job in the store from elsewhere") {
        fixture f;
        f.source.add("uploads/map.png", png_of(2000, 1600));
        const job_record job = f.new_job_record();
        tile_generation_request request = f.request_for(job);
        request.tiling.threads = 1;
        std::atomic<bool> cancelled{false};
        request.tiling.on_progress = [&](const tile_progress& p) {
            if (p.tiles_done > 20 && !cancelled.exchange(true)) f.store.cancel(job.id, "user asked");
            if (cancelled) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        };
        const job_record done = run_tile_generation_job(f.store, f.source, f.sink, request);
        CHECK(done.status == job_status::cancelled);
        CHECK(done.error == "user asked");
        CHECK_FALSE(f.has_manifest());
    }
    SECTION("before the job started") {
        fixture f;
        f.source.add("uploads/map.png", png_of(300, 200));
        const job_record job = f.new_job_record();
        f.store.cancel(job.id, "changed my mind");
        const job_record done = run_tile_generation_job(f.store, f.source, f.sink, f.request_for(job));
        CHECK(done.status == job_status::cancelled);
        CHECK(f.sink.size() == 0);
    }
}

TEST_CASE("a slow store does not slow the tiler: progress writes never wait on the tiler's thread", "[jobs]") {
    // The store blocks every "Generating tiles" write until the tiler has handed over its last
    // tile. If any progress write ran on the tiler's thread, the tiler could not get there and
    // the gate would only open by its timeout.
    fixture f;
    f.source.add("uploads/map.png", png_of(1200, 1000));
    std::mutex mutex;
    std::condition_variable opened;
    bool tiles_done = false;
    int blocked_writes = 0;
    bool timed_out = false;
    f.store.before_progress_write = [&](const std::string& message) {
        if (message.rfind("Generating tiles", 0) != 0) return;
        std::unique_lock<std::mutex> lock(mutex);
        ++blocked_writes;
        if (!opened.wait_for(lock, std::chrono::seconds(30), [&] { return tiles_done; })) timed_out = true;
    };
    tile_generation_request request = f.request_for(f.new_job_record());
    request.progress_interval = std::chrono::milliseconds(10);
    request.tiling.threads = 2;
    request.tiling.on_progress = [&](const tile_progress& p) {
        if (p.tiles_done < p.tiles_total) return;
        std::lock_guard<std::mutex> lock(mutex);
        tiles_done = true;
        opened.notify_all();
    };
    const job_record done = run_tile_generation_job(f.store, f.source, f.sink, request);
    REQUIRE(done.status == job_status::completed);
    CHECK(blocked_writes >= 1);  // a write really was held up while the tiles were made
    CHECK_FALSE(timed_out);
    // Writes are coalesced: far fewer than one per tile.
    const auto tiles = nlohmann::json::parse(tkt::as_string(f.sink.get("mp/harbour-map/uploads/tiles/pyramid.json")->body));
    CHECK(f.store.writes.size() < tiles.at("tile_count").get<std::size_t>() / 4);
}

TEST_CASE("running again for the same version replaces the pyramid; two at once are refused", "[jobs]") {
    fixture f;
    f.source.add("uploads/map.png", png_of(900, 700));
    const job_record first = f.new_job_record();
    CHECK_THROWS_AS(f.new_job_record(), job_state_error);  // one active job per version
    REQUIRE(run_tile_generation_job(f.store, f.source, f.sink, f.request_for(first)).status ==
            job_status::completed);
    f.source.add("uploads/map.png", png_of(500, 400));
    const job_record second = f.new_job_record();
    tile_generation_request request = f.request_for(second);
    std::atomic<int> old_manifest_seen{0};
    request.tiling.on_progress = [&](const tile_progress&) {
        old_manifest_seen += f.has_manifest();  // the old pyramid is withdrawn before tiles change
    };
    const job_record done = run_tile_generation_job(f.store, f.source, f.sink, request);
    CHECK(old_manifest_seen == 0);
    REQUIRE(done.status == job_status::completed);
    const auto metadata = nlohmann::json::parse(
        tkt::as_string(f.sink.get("mp/harbour-map/uploads/tiles/pyramid.json")->body));
    CHECK(metadata.at("width") == 500);
    CHECK(metadata.at("height") == 400);
}

TEST_CASE("the result and the old-pyramid removal use the run's real manifest and metadata keys", "[jobs]") {
    fixture f;
    f.source.add("uploads/map.png", png_of(600, 400));
    const auto run = [&](const std::string& basename, const std::string& metadata_key) {
        tile_generation_request request = f.request_for(f.new_job_record());
        request.tiling.basename = basename;
        request.tiling.metadata_key = metadata_key;
        std::atomic<int> old_manifest_seen{0};
        request.tiling.on_progress = [&](const tile_progress&) {
            old_manifest_seen += f.sink.contains("mp/harbour-map/uploads/tiles/chart.dzi") ||
                                 f.sink.contains("mp/harbour-map/uploads/tiles/meta/chart.json");
        };
        const job_record done = run_tile_generation_job(f.store, f.source, f.sink, request);
        REQUIRE(done.status == job_status::completed);
        CHECK(old_manifest_seen == 0);  // withdrawn before any tile of the rerun was stored
        return done.result;
    };
    nlohmann::json result = run("chart", "meta/chart.json");
    CHECK(result.at("manifest") == "mp/harbour-map/uploads/tiles/chart.dzi");
    CHECK(result.at("metadata") == "mp/harbour-map/uploads/tiles/meta/chart.json");
    CHECK(f.sink.contains(result.at("manifest").get<std::string>()));
    CHECK(f.sink.contains(result.at("metadata").get<std::string>()));
    CHECK_FALSE(f.sink.contains("mp/harbour-map/uploads/tiles/pyramid.json"));
    // The same keys again: the previous run's manifests are removed first.
    result = run("chart", "meta/chart.json");
    CHECK(f.sink.contains(result.at("metadata").get<std::string>()));
}

TEST_CASE("a sink that cannot delete keeps the default remove(): nothing removed, the job still completes", "[jobs]") {
    struct append_only_sink final : storage_sink {
        void put(storage_object object) override { inner.put(std::move(object)); }
        void flush() override {}
        memory_sink inner;
    };
    fixture f;
    f.source.add("uploads/map.png", png_of(300, 200));
    append_only_sink sink;
    CHECK_FALSE(sink.remove("anything"));
    const job_record first = run_tile_generation_job(f.store, f.source, sink, f.request_for(f.new_job_record()));
    REQUIRE(first.status == job_status::completed);
    const job_record second = run_tile_generation_job(f.store, f.source, sink, f.request_for(f.new_job_record()));
    REQUIRE(second.status == job_status::completed);
    CHECK(sink.inner.contains(second.result.at("metadata").get<std::string>()));
}
