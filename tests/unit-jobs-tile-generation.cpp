// The tile-generation job end to end through the worker runtime, against the memory store and
// memory sinks: a completed run with its result and a monotonic progress sequence through every
// stage; every way it can fail ending in a failed (or, for what may pass next time, a queued
// for retry) job with an actionable message, no manifest, and no scratch files left behind;
// cancellation; and reruns and retries that leave no stale or partial objects.

#include "test_helpers.hpp"

#include <tilekit/fast_codecs.hpp>
#include <tilekit/jobs.hpp>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <optional>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

using namespace tilekit;
using namespace tilekit::jobs;

namespace {

// A store that records every progress write, and can be made slow or made to wait.
class recording_store final : public job_store {
public:
    std::chrono::milliseconds delay{0};
    std::function<void(const std::string& message)> before_progress_write;  // may block
    std::function<void()> before_renew;                                      // may block

    job_record enqueue(const new_job& job) override { return inner.enqueue(job); }
    std::optional<job_record> get(const std::string& id) const override { return inner.get(id); }
    std::vector<job_record> list_by_project(const std::string& p) const override { return inner.list_by_project(p); }
    std::vector<job_record> list_by_status(job_status s) const override { return inner.list_by_status(s); }
    job_page list_jobs(const job_filter& f, std::size_t limit, const std::optional<job_page_key>& after) const override {
        return inner.list_jobs(f, limit, after);
    }
    std::int64_t count_jobs(const job_filter& f) const override { return inner.count_jobs(f); }
    job_record retry(const std::string& id, const std::string& reason) override { return inner.retry(id, reason); }
    queue_stats stats(std::chrono::milliseconds window) const override { return inner.stats(window); }
    std::int64_t prune_finished(std::chrono::milliseconds age, std::int64_t keep, std::int64_t limit) override {
        return inner.prune(retention_policy{age, keep}, limit == 0, std::max<std::int64_t>(limit, 1));
    }
    std::optional<claimed_job> claim(const std::string& worker, const std::vector<std::string>& types,
                                     std::chrono::milliseconds lease) override {
        return inner.claim(worker, types, lease);
    }
    job_record renew(job_lease& lease) override {
        if (before_renew) before_renew();
        return inner.renew(lease);
    }
    job_record report_progress(job_lease& lease, int progress, const std::string& message) override {
        if (delay.count()) std::this_thread::sleep_for(delay);
        if (before_progress_write) before_progress_write(message);
        {
            std::lock_guard<std::mutex> lock(mutex);
            writes.emplace_back(progress, message);
        }
        return inner.report_progress(lease, progress, message);
    }
    job_record complete(job_lease& lease, const nlohmann::json& r, const std::string& m) override {
        return inner.complete(lease, r, m);
    }
    job_record fail(job_lease& lease, const std::string& e, failure_kind kind) override { return inner.fail(lease, e, kind); }
    job_record release(job_lease& lease, const std::string& reason) override { return inner.release(lease, reason); }
    job_record cancel(const std::string& id, const std::string& r) override { return inner.cancel(id, r); }
    std::vector<job_record> rescue_expired() override { return inner.rescue_expired(); }

    memory_job_store inner;
    std::mutex mutex;
    std::vector<std::pair<int, std::string>> writes;
};

std::vector<std::uint8_t> png_of(int width, int height, int channels = 3) {
    std::vector<std::uint8_t> png;
    libdeflate_png_encoder().encode(tkt::make_image(width, height, channels, 9, 20).view(), png);
    return png;
}

// The project's tiles; version 3's pointer and runs are below it (jobs/run_pointer.hpp).
const std::string tiles_prefix = "mp/harbour-map/uploads/tiles/";
const std::string version_prefix = tiles_prefix + "3/";

struct fixture {
    recording_store store;
    memory_source source;
    memory_sink sink;
    tkt::temp_dir scratch{"tilekit-job-scratch"};
    std::string version_status = "draft";  // what the catalog says when the job starts
    tile_generation_settings settings;
    worker_options options;

    fixture() {
        settings.gc_grace = std::chrono::seconds(0);  // replaced runs go at the next commit
        settings.scratch_root = scratch.path();
        settings.threads = 2;
        options.progress_interval = std::chrono::milliseconds(5);
        retry_policy fast;
        fast.base = std::chrono::milliseconds(1);
        fast.jitter = false;
        store.inner.set_retry_policy(fast);
    }

    tile_generation_request request(const std::string& key = "uploads/map.png") const {
        tile_generation_request r;
        r.source_key = key;
        r.project_slug = "harbour-map";
        r.version = 3;
        r.tiling.tile_size = 64;
        return r;
    }

    job_record enqueue(const tile_generation_request& r, int max_attempts = default_max_attempts) {
        new_job job{tile_generation_job, "project-1", "version-3", "alice"};
        job.payload = to_payload(r);
        job.max_attempts = max_attempts;
        return store.enqueue(job);
    }
    job_record enqueue() { return enqueue(request()); }

    version_lookup lookup() {
        return [this](const job_record& job) {
            CHECK(job.project_id == "project-1");
            return version_info{3, version_status};
        };
    }

    // Runs the next job with `destination`; returns its record as the store holds it afterwards.
    job_record run(storage_sink& destination, cancel_token cancel = {}) {
        const std::map<std::string, job_handler> handlers{
            {tile_generation_job, tile_generation_handler<fast_codecs>(source, destination, lookup(), settings)}};
        const auto done = run_next_job(store, handlers, options, cancel);
        REQUIRE(done);
        return *done;
    }
    job_record run() { return run(sink); }

    bool scratch_is_empty() const { return std::filesystem::is_empty(scratch.path()); }
    // The committed run's prefix, from the version's pointer ("" when nothing is committed).
    std::string committed(storage_sink& where) const {
        const pointer_state state = read_pointer(where, version_prefix);
        return state.pointer && !state.pointer->run.empty() ? version_prefix + state.pointer->run : std::string();
    }
    std::string committed() { return committed(sink); }
    bool has_manifest() {
        bool found = false;
        for (const std::string& key : sink.keys())
            found |= key.size() > 12 && (key.compare(key.size() - 12, 12, "pyramid.json") == 0 ||
                                         key.compare(key.size() - 9, 9, "image.dzi") == 0);
        return found;
    }
    std::vector<std::string> keys_under_prefix() const {
        std::vector<std::string> out;
        for (const std::string& key : sink.keys())
            if (key.rfind(tiles_prefix, 0) == 0) out.push_back(key);
        return out;
    }
};

std::vector<std::string> keys_under(storage_sink& sink, const std::string& prefix) {
    std::vector<std::string> out;
    sink.list(prefix, [&](const std::string& key) { out.push_back(key); });
    return out;
}

}  // namespace

TEST_CASE("a tile-generation job completes with the pyramid's metadata and monotonic progress", "[jobs]") {
    fixture f;
    f.source.add("uploads/map.png", png_of(900, 700));
    const job_record job = f.enqueue();
    CHECK(job.payload.at("source_key") == "uploads/map.png");
    const job_record done = f.run();

    INFO(done.error);
    REQUIRE(done.status == job_status::completed);
    CHECK(done.id == job.id);
    CHECK(done.progress == 100);
    CHECK(done.attempt == 1);
    CHECK(done.started_at.has_value());
    CHECK(done.completed_at.has_value());
    const nlohmann::json& r = done.result;
    CHECK(r.at("tiles_path") == version_prefix + "runs/" + job.id + ".1/");
    CHECK(r.at("tiles_path") == f.committed());
    CHECK(r.at("width") == 900);
    CHECK(r.at("height") == 700);
    CHECK(r.at("levels") == 11);
    CHECK(r.at("tile_size") == 64);
    CHECK(r.at("format") == "png");
    CHECK(r.at("layout") == "dz");
    CHECK(r.at("overlap") == 1);
    // tiles, two manifests, the pointer, the two stable manifests beside it
    CHECK(r.at("tile_count").get<std::uint64_t>() + 5 == f.sink.size());
    CHECK(r.at("total_bytes").get<std::uint64_t>() > 0);
    CHECK(f.sink.contains(f.committed() + "pyramid.json"));
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

TEST_CASE("a TIFF upload is tiled by the job like a PNG (the tiff part linked)", "[jobs][tiff]") {
    fixture f;
    // An uncompressed RGB TIFF of 300 x 200 written by hand: header, pixels, directory.
    const tilekit::image_buffer image = tkt::make_image(300, 200, 3, 9, 20);
    const tkt::bytes pixels = tkt::pixels_of(image.view());
    std::vector<std::uint8_t> tiff = {'I', 'I', 42, 0};
    const auto put = [&tiff](std::uint32_t v, int n) {
        for (int i = 0; i < n; ++i) tiff.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    };
    put(8 + static_cast<std::uint32_t>(pixels.size()), 4);
    tiff.insert(tiff.end(), pixels.begin(), pixels.end());
    const std::uint32_t entries[][4] = {{256, 4, 1, 300}, {257, 4, 1, 200}, {258, 3, 1, 8},   {259, 3, 1, 1},
                                        {262, 3, 1, 2},   {273, 4, 1, 8},   {277, 3, 1, 3},   {278, 4, 1, 200},
                                        {279, 4, 1, static_cast<std::uint32_t>(pixels.size())}};
    put(9, 2);
    for (const auto& e : entries) put(e[0], 2), put(e[1], 2), put(e[2], 4), put(e[3], e[1] == 3 ? 2 : 4), e[1] == 3 ? put(0, 2) : void();
    put(0, 4);
    f.source.add("uploads/scan.tif", tiff);
    f.source.add("uploads/map.png", png_of(300, 200));
    f.enqueue(f.request("uploads/scan.tif"));
    const job_record done = f.run();
    INFO(done.error);
    REQUIRE(done.status == job_status::completed);
    CHECK(done.result.at("width") == 300);
    CHECK(done.result.at("height") == 200);
    // The same pixels as the PNG of the same image.
    memory_sink from_png;
    pyramid_options options;
    options.tile_size = 64;
    tile_memory(png_of(300, 200), from_png, options);
    const std::string key = "image_files/9/4_3.png";
    REQUIRE(from_png.contains(key));
    CHECK(tkt::decode_object(f.sink, f.committed() + key).pixels == tkt::decode_object(from_png, key).pixels);
}

TEST_CASE("the tile-generation payload round-trips and refuses what a worker could not run", "[jobs]") {
    tile_generation_request r;
    r.source_key = "mp/x/uploads/base.jpg";
    r.project_slug = "x";
    r.version = 12;
    r.prefix_template = "mp/{slug}/uploads/tiles/{version}/";
    r.tiling.layout = layout_type::xyz;
    r.tiling.format = tile_format::jpeg;
    r.tiling.tile_size = 512;
    r.tiling.overlap = 0;
    r.tiling.quality = 70;
    r.tiling.skip_blank_tiles = true;
    const tile_generation_request back = request_from_payload(to_payload(r));
    CHECK(to_payload(back) == to_payload(r));
    CHECK(back.tiling.layout == layout_type::xyz);
    CHECK(back.tiling.quality == 70);

    const nlohmann::json good = to_payload(r);
    const auto refused = [](nlohmann::json payload) {
        try {
            request_from_payload(payload);
        } catch (const error& e) {
            CHECK(e.code() == errc::invalid_argument);
            CHECK(std::string(e.what()).rfind("tile-generation job payload: ", 0) == 0);
            return true;
        }
        return false;
    };
    CHECK(refused(nlohmann::json::array()));
    CHECK(refused([&] { auto p = good; p.erase("source_key"); return p; }()));
    CHECK(refused([&] { auto p = good; p["source_key"] = "../etc/passwd"; return p; }()));
    CHECK(refused([&] { auto p = good; p["project_slug"] = "Bad Slug"; return p; }()));
    CHECK(refused([&] { auto p = good; p["version"] = "12"; return p; }()));
    CHECK(refused([&] { auto p = good; p["version"] = 0; return p; }()));
    CHECK(refused([&] { auto p = good; p["tiling"]["layout"] = "google"; return p; }()));
    CHECK(refused([&] { auto p = good; p["tiling"]["quality"] = 101; return p; }()));
    CHECK(refused([&] { auto p = good; p["tiling"]["overlap"] = 2; return p; }()));  // XYZ has no overlap
    CHECK(refused([&] { auto p = good; p["tiling"]["basename"] = "a/b"; return p; }()));
    CHECK(refused([&] { auto p = good; p["tiling"]["skip_blank_tiles"] = 1; return p; }()));
}

TEST_CASE("bad input fails the job at once; storage trouble is retried", "[jobs]") {
    struct failing_sink final : storage_sink {
        memory_sink pointers;  // conditional writes work: only tiles fail
        void put(storage_object object) override {
            if (object.key.find("/8/") != std::string::npos) throw error(errc::storage_error, "disk full: " + object.key);
        }
        void flush() override {}
        bool can_compare_and_put() const override { return true; }
        std::optional<versioned_object> read(const std::string& key) override { return pointers.read(key); }
        conditional_put_result put_if(storage_object object, const std::string& expected) override {
            return pointers.put_if(std::move(object), expected);
        }
    };

    SECTION("missing source key") {
        fixture f;
        f.enqueue(f.request("uploads/nope.png"));
        const job_record done = f.run();
        CHECK(done.status == job_status::failed);
        CHECK(done.attempt == 1);
        CHECK(done.error.find("uploads/nope.png") != std::string::npos);
        CHECK(done.error.find("not found") != std::string::npos);
        CHECK(f.scratch_is_empty());
    }
    SECTION("corrupt and truncated sources") {
        fixture f;
        auto png = png_of(300, 200);
        png.resize(png.size() / 2);
        f.source.add("uploads/map.png", png);
        f.enqueue();
        const job_record done = f.run();
        CHECK(done.status == job_status::failed);
        CHECK(done.error.find("truncated") != std::string::npos);
        CHECK(done.error.find("uploads/map.png") != std::string::npos);  // the key, not a local path
        CHECK(done.error.find(f.scratch.str()) == std::string::npos);
        CHECK_FALSE(f.has_manifest());
        CHECK(f.scratch_is_empty());

        fixture g;
        g.source.add("uploads/map.png", std::vector<std::uint8_t>(5000, 'x'));
        g.enqueue();
        const job_record text = g.run();
        CHECK(text.status == job_status::failed);
        CHECK(text.error.find("not a PNG or JPEG") != std::string::npos);
    }
    SECTION("source over the size limit") {
        fixture f;
        f.source.add("uploads/map.png", png_of(300, 200));
        f.settings.max_source_bytes = 1000;
        f.enqueue();
        const job_record done = f.run();
        CHECK(done.status == job_status::failed);
        CHECK(done.error.find("over the limit of 1000 bytes") != std::string::npos);
    }
    SECTION("a version published since the job was queued") {
        fixture f;
        f.source.add("uploads/map.png", png_of(300, 200));
        f.enqueue();
        f.version_status = "published";
        const job_record done = f.run();
        CHECK(done.status == job_status::failed);
        CHECK(done.error.rfind("Can only generate tiles for draft versions", 0) == 0);
        CHECK(f.sink.size() == 0);
    }
    SECTION("a version deleted since the job was queued") {
        fixture f;
        f.source.add("uploads/map.png", png_of(300, 200));
        f.enqueue();
        const std::map<std::string, job_handler> handlers{
            {tile_generation_job, tile_generation_handler<fast_codecs>(f.source, f.sink, [](const job_record&) -> version_info {
                 throw error(errc::not_found, "version 3 of project-1 no longer exists");
             }, f.settings)}};
        const job_record done = *run_next_job(f.store, handlers, f.options);
        CHECK(done.status == job_status::failed);
        CHECK(done.error == "version 3 of project-1 no longer exists");
    }
    SECTION("storage failing part-way: retried with backoff, then failed with the last error") {
        fixture f;
        f.source.add("uploads/map.png", png_of(900, 700));
        f.enqueue(f.request(), 2);
        failing_sink sink;
        const job_record first = f.run(sink);
        CHECK(first.status == job_status::queued);  // storage trouble may pass: another attempt
        CHECK(first.attempt == 1);
        CHECK(first.error.find("disk full") != std::string::npos);
        CHECK(f.scratch_is_empty());
        std::optional<job_record> second;
        for (int i = 0; i < 200 && !second; ++i) {
            const std::map<std::string, job_handler> handlers{
                {tile_generation_job, tile_generation_handler<fast_codecs>(f.source, sink, f.lookup(), f.settings)}};
            second = run_next_job(f.store, handlers, f.options);
            if (!second) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        REQUIRE(second);
        CHECK(second->status == job_status::failed);
        CHECK(second->attempt == 2);
        CHECK(second->error.find("disk full") != std::string::npos);
    }
    SECTION("an exception from user code fails at once and removes the tiles it wrote") {
        fixture f;
        f.source.add("uploads/map.png", png_of(900, 700));
        f.settings.on_progress = [](const tile_progress& p) {
            if (p.tiles_done > 10) throw std::runtime_error("callback exploded");
        };
        f.enqueue();
        const job_record done = f.run();
        CHECK(done.status == job_status::failed);
        CHECK(done.error.find("callback exploded") != std::string::npos);
        CHECK_FALSE(f.has_manifest());
        CHECK(f.keys_under_prefix().empty());
    }
    SECTION("a bad project slug never reaches a storage key, nor the queue") {
        fixture f;
        tile_generation_request r = f.request();
        r.project_slug = "../etc";
        new_job job{tile_generation_job, "project-1", "version-3", "alice"};
        job.payload = to_payload(r);
        f.store.enqueue(job);
        const job_record done = f.run();
        CHECK(done.status == job_status::failed);
        CHECK(done.attempt == 1);
        CHECK(done.error.find("slug") != std::string::npos);
        CHECK(f.sink.size() == 0);
    }
}

TEST_CASE("cancellation: the store's ends the job cancelled, the worker's hands it back", "[jobs]") {
    SECTION("by cancelling the job in the store from elsewhere: noticed within a heartbeat") {
        fixture f;
        f.source.add("uploads/map.png", png_of(2000, 1600));
        const job_record job = f.enqueue();
        f.settings.threads = 1;
        f.options.heartbeat = std::chrono::milliseconds(100);
        std::atomic<bool> cancelled{false};
        std::chrono::steady_clock::time_point cancelled_at;
        f.settings.on_progress = [&](const tile_progress& p) {
            if (p.tiles_done > 20 && !cancelled.exchange(true)) {
                cancelled_at = std::chrono::steady_clock::now();
                f.store.cancel(job.id, "user asked");
            }
            if (cancelled) std::this_thread::sleep_for(std::chrono::milliseconds(2));
        };
        const job_record done = f.run();
        const auto stopped_after = std::chrono::steady_clock::now() - cancelled_at;
        CHECK(done.status == job_status::cancelled);
        CHECK(done.error == "user asked");
        CHECK(stopped_after < std::chrono::seconds(2));
        CHECK_FALSE(f.has_manifest());
        CHECK(f.keys_under_prefix().empty());  // a cancelled run deletes what it wrote
        CHECK(f.scratch_is_empty());
    }
    SECTION("by the worker's own token: the job goes back to the queue, attempt not used") {
        fixture f;
        f.source.add("uploads/map.png", png_of(1500, 1200));
        f.enqueue();
        cancel_token cancel;
        f.settings.on_progress = [cancel](const tile_progress& p) mutable {
            if (p.tiles_done > 20) cancel.cancel();
        };
        const job_record done = f.run(f.sink, cancel);
        CHECK(done.status == job_status::queued);
        CHECK(done.releases == 1);  // free: the budget grew by the attempt handed back
        CHECK(done.max_attempts == done.attempt + default_max_attempts);
        CHECK(done.message.find("Queued again") == 0);
        CHECK_FALSE(f.has_manifest());
        CHECK(f.scratch_is_empty());
    }
    SECTION("before the job started: nothing to run") {
        fixture f;
        f.source.add("uploads/map.png", png_of(300, 200));
        const job_record job = f.enqueue();
        f.store.cancel(job.id, "changed my mind");
        const std::map<std::string, job_handler> handlers{
            {tile_generation_job, tile_generation_handler<fast_codecs>(f.source, f.sink, f.lookup(), f.settings)}};
        CHECK_FALSE(run_next_job(f.store, handlers, f.options));
        CHECK(f.store.get(job.id)->status == job_status::cancelled);
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
    f.options.progress_interval = std::chrono::milliseconds(10);
    f.settings.on_progress = [&](const tile_progress& p) {
        if (p.tiles_done < p.tiles_total) return;
        std::lock_guard<std::mutex> lock(mutex);
        tiles_done = true;
        opened.notify_all();
    };
    f.enqueue();
    const job_record done = f.run();
    REQUIRE(done.status == job_status::completed);
    CHECK(blocked_writes >= 1);  // a write really was held up while the tiles were made
    CHECK_FALSE(timed_out);
    // Writes are coalesced: far fewer than one per tile.
    const auto tiles = nlohmann::json::parse(tkt::as_string(f.sink.get(f.committed() + "pyramid.json")->body));
    CHECK(f.store.writes.size() < tiles.at("tile_count").get<std::size_t>() / 4);
}

TEST_CASE("a rerun commits a new run and leaves no stale object of the previous one", "[jobs]") {
    fixture f;
    f.source.add("uploads/map.png", png_of(900, 700));
    f.enqueue();
    CHECK_THROWS_AS(f.enqueue(), job_state_error);  // one active job per version
    REQUIRE(f.run().status == job_status::completed);
    const std::string first_run = f.committed();
    const std::size_t first_count = f.keys_under_prefix().size();
    f.sink.put({"mp/harbour-map/uploads/base.png", {1, 2, 3}, "image/png", ""});  // outside the prefix: kept

    f.source.add("uploads/map.png", png_of(500, 400));  // fewer levels and tiles than the first
    f.enqueue();
    std::atomic<int> first_changed{0};
    f.settings.on_progress = [&](const tile_progress&) {
        // While the rerun works, the version's pyramid is still the first run, whole.
        first_changed += f.committed() != first_run || !f.sink.contains(first_run + "pyramid.json");
    };
    const job_record done = f.run();
    CHECK(first_changed == 0);
    REQUIRE(done.status == job_status::completed);
    CHECK(f.committed() == done.result.at("tiles_path"));
    const auto metadata = nlohmann::json::parse(tkt::as_string(f.sink.get(f.committed() + "pyramid.json")->body));
    CHECK(metadata.at("width") == 500);
    CHECK(metadata.at("height") == 400);
    // Exactly the new pyramid and the pointer (the replaced run is collected: grace 0 here).
    const std::size_t now = f.keys_under_prefix().size();
    CHECK(now == done.result.at("tile_count").get<std::size_t>() + 5);  // + manifests, pointer, stable manifests
    CHECK(now < first_count);
    CHECK(keys_under(f.sink, first_run).empty());
    CHECK(f.sink.contains("mp/harbour-map/uploads/base.png"));
}

TEST_CASE("a rerun on a filesystem sink leaves no stale file of the previous pyramid", "[jobs]") {
    fixture f;
    tkt::temp_dir out{"tilekit-job-out"};
    filesystem_sink disk(out.path());
    const auto files_under_prefix = [&] {
        std::set<std::string> files = tkt::list_files(out.path());
        std::set<std::string> under;
        for (const std::string& file : files)
            if (file.rfind(tiles_prefix, 0) == 0 && file.find(".tk-cas-lock") == std::string::npos) under.insert(file);
        return under;
    };
    f.source.add("uploads/map.png", png_of(900, 700));
    f.enqueue();
    REQUIRE(f.run(disk).status == job_status::completed);
    const std::string first_run = f.committed(disk);
    const std::size_t first_count = files_under_prefix().size();
    REQUIRE(tkt::fs::exists(out.path() / first_run / "image_files/10/0_0.png"));
    disk.put({"mp/harbour-map/uploads/tiles-other/keep.png", {1}, "image/png", ""});  // shares the prefix's stem: kept

    f.source.add("uploads/map.png", png_of(500, 400));
    tile_generation_request smaller = f.request();
    smaller.tiling.tile_size = 128;
    f.enqueue(smaller);
    const job_record done = f.run(disk);
    REQUIRE(done.status == job_status::completed);
    CHECK(f.committed(disk) == done.result.at("tiles_path"));
    const std::set<std::string> now = files_under_prefix();
    // its tiles, two manifests, the pointer, the two stable manifests beside it
    CHECK(now.size() == done.result.at("tile_count").get<std::size_t>() + 5);
    CHECK(now.size() < first_count);
    CHECK_FALSE(tkt::fs::exists(out.path() / first_run / "image_files/10/0_0.png"));
    CHECK(tkt::fs::exists(out.path() / "mp/harbour-map/uploads/tiles-other/keep.png"));
}

TEST_CASE("a failed attempt deletes its own run; the next attempt writes and commits another", "[jobs]") {
    // A sink that fails one upload on the first attempt only, after storing part of the pyramid.
    struct flaky_sink final : storage_sink {
        memory_sink& inner;
        std::atomic<bool> fail_once{true};
        explicit flaky_sink(memory_sink& s) : inner(s) {}
        void put(storage_object object) override {
            if (object.key.find("/9/") != std::string::npos && fail_once.exchange(false))
                throw error(errc::storage_error, "503 Slow Down: " + object.key);
            inner.put(std::move(object));
        }
        void flush() override {}
        bool remove(const std::string& key) override { return inner.remove(key); }
        bool can_list() const override { return true; }
        void list(const std::string& prefix, const std::function<void(const std::string&)>& on_key) override {
            inner.list(prefix, on_key);
        }
        bool can_compare_and_put() const override { return true; }
        std::optional<versioned_object> read(const std::string& key) override { return inner.read(key); }
        conditional_put_result put_if(storage_object object, const std::string& expected) override {
            return inner.put_if(std::move(object), expected);
        }
    };
    fixture f;
    f.source.add("uploads/map.png", png_of(900, 700));
    // Someone else's object beside the version's prefix: a run never touches it.
    f.sink.put({tiles_prefix + "image_files/12/7_7.png", {1}, "image/png", ""});
    flaky_sink sink(f.sink);
    const job_record job = f.enqueue();
    const job_record first = f.run(sink);
    REQUIRE(first.status == job_status::queued);
    CHECK(first.error.find("503 Slow Down") != std::string::npos);
    CHECK_FALSE(f.has_manifest());
    CHECK(keys_under(f.sink, version_prefix).empty());  // attempt 1 can never be committed: gone
    std::optional<job_record> second;
    for (int i = 0; i < 200 && !second; ++i) {
        const std::map<std::string, job_handler> handlers{
            {tile_generation_job, tile_generation_handler<fast_codecs>(f.source, sink, f.lookup(), f.settings)}};
        second = run_next_job(f.store, handlers, f.options);
        if (!second) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    REQUIRE(second);
    REQUIRE(second->status == job_status::completed);
    CHECK(second->attempt == 2);
    CHECK(f.committed() == version_prefix + "runs/" + job.id + ".2/");
    CHECK(keys_under(f.sink, version_prefix).size() == second->result.at("tile_count").get<std::size_t>() + 5);
    CHECK(f.sink.contains(tiles_prefix + "image_files/12/7_7.png"));
}

TEST_CASE("the result names the run's real manifest and metadata keys", "[jobs]") {
    fixture f;
    f.source.add("uploads/map.png", png_of(600, 400));
    const auto run = [&](const std::string& basename, const std::string& metadata_key) {
        tile_generation_request request = f.request();
        request.tiling.basename = basename;
        request.tiling.metadata_key = metadata_key;
        f.enqueue(request);
        const job_record done = f.run();
        REQUIRE(done.status == job_status::completed);
        return done.result;
    };
    nlohmann::json result = run("chart", "meta/chart.json");
    const std::string run_prefix = result.at("tiles_path");
    CHECK(result.at("manifest") == run_prefix + "chart.dzi");
    CHECK(result.at("metadata") == run_prefix + "meta/chart.json");
    CHECK(f.sink.contains(result.at("manifest").get<std::string>()));
    CHECK(f.sink.contains(result.at("metadata").get<std::string>()));
    CHECK_FALSE(f.sink.contains(run_prefix + "pyramid.json"));
    const pointer_state state = read_pointer(f.sink, version_prefix);
    REQUIRE(state.pointer);
    CHECK(version_prefix + state.pointer->manifest == result.at("manifest"));
    CHECK(version_prefix + state.pointer->metadata == result.at("metadata"));
}

TEST_CASE("a sink without conditional writes is refused: a run could not be published safely", "[jobs]") {
    struct append_only_sink final : storage_sink {
        void put(storage_object object) override { inner.put(std::move(object)); }
        void flush() override {}
        memory_sink inner;
    };
    fixture f;
    f.source.add("uploads/map.png", png_of(300, 200));
    append_only_sink sink;
    CHECK_FALSE(sink.can_compare_and_put());
    f.enqueue();
    const job_record done = f.run(sink);
    CHECK(done.status == job_status::failed);
    CHECK(done.error.find("put_if") != std::string::npos);
    CHECK(sink.inner.size() == 0);
}

TEST_CASE("a worker stuck renewing its lease stops its handler before the lease can expire", "[jobs][worker]") {
    // The store hangs on the first renewal (a database that stopped answering) and comes back only
    // after the handler stopped: the handler must stop on its own, before the store's lease ends,
    // so that a rescuer never gives the job to a second worker while the first still runs it.
    fixture f;
    f.options.lease = std::chrono::milliseconds(900);
    f.options.heartbeat = std::chrono::milliseconds(50);
    std::mutex gate_mutex;
    std::condition_variable gate_changed;
    bool store_back = false;
    f.store.before_renew = [&] {
        std::unique_lock<std::mutex> lock(gate_mutex);
        gate_changed.wait_for(lock, std::chrono::seconds(10), [&] { return store_back; });
    };
    const auto claimed_at = std::chrono::steady_clock::now();
    std::chrono::steady_clock::duration ran_for{};
    const std::map<std::string, job_handler> handlers{{"spin", [&](job_context& context) -> nlohmann::json {
        while (!context.cancel().is_cancelled() && std::chrono::steady_clock::now() - claimed_at < std::chrono::seconds(5))
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        ran_for = std::chrono::steady_clock::now() - claimed_at;
        {
            std::lock_guard<std::mutex> lock(gate_mutex);
            store_back = true;
        }
        gate_changed.notify_all();
        throw cancelled_error();
    }}};
    new_job job{"spin", "project-1", "version-1", "alice"};
    f.store.enqueue(job);
    cancel_token reused;  // the caller's own token, used for two jobs in turn
    const auto done = run_next_job(f.store, handlers, f.options, reused);
    REQUIRE(done);
    // Stopped at two thirds of the lease (600 ms), not at the 5 s safety bound.
    CHECK(ran_for < std::chrono::milliseconds(900));
    CHECK(ran_for >= std::chrono::milliseconds(500));
    // Its lease was still valid when the store came back: the job is handed back, not lost.
    CHECK(done->status == job_status::queued);
    CHECK(done->releases == 1);
    // The caller's token carries no deadline into the next job (the same one, handed back).
    f.store.before_renew = nullptr;
    CHECK(run_next_job(f.store, {{"spin", [&](job_context& context) -> nlohmann::json {
                                      CHECK_FALSE(context.cancel().is_cancelled());
                                      return nlohmann::json::object();
                                  }}},
                       f.options, reused)
              ->status == job_status::completed);
    CHECK_FALSE(reused.is_cancelled());
}

TEST_CASE("each attempt has a scratch directory of its own: an old attempt's clean-up spares the new one's",
          "[jobs][scratch]") {
    SECTION("the directories themselves") {
        tkt::temp_dir root{"tilekit-job-scratch"};
        std::optional<detail::scratch_directory> first(std::in_place, root.path(), "job-1", 1);
        const detail::scratch_directory second(root.path(), "job-1", 2);
        CHECK(first->path() != second.path());
        std::ofstream(second.path() / "source").put('x');
        first.reset();  // the first attempt, stopping late, cleans up
        CHECK(std::filesystem::exists(second.path() / "source"));
    }
    SECTION("through the job: a retried attempt downloads into another directory") {
        struct recording_source final : image_source {
            memory_source inner;
            std::vector<std::filesystem::path> scratch_dirs;
            int failures = 1;
            std::string fetch(const std::string& key, const std::filesystem::path& dir, std::uint64_t max_bytes) override {
                scratch_dirs.push_back(dir);
                if (failures-- > 0) throw error(errc::storage_error, "storage answered 503");
                return inner.fetch(key, dir, max_bytes);
            }
        };
        fixture f;
        recording_source source;
        source.inner.add("uploads/map.png", png_of(300, 200));
        f.enqueue();
        const std::map<std::string, job_handler> handlers{
            {tile_generation_job, tile_generation_handler<fast_codecs>(source, f.sink, f.lookup(), f.settings)}};
        CHECK(run_next_job(f.store, handlers, f.options)->status == job_status::queued);
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the 1 ms backoff
        CHECK(run_next_job(f.store, handlers, f.options)->status == job_status::completed);
        REQUIRE(source.scratch_dirs.size() == 2);
        CHECK(source.scratch_dirs[0] != source.scratch_dirs[1]);
        CHECK(source.scratch_dirs[0].filename().string().find(".1") != std::string::npos);
        CHECK(source.scratch_dirs[1].filename().string().find(".2") != std::string::npos);
        CHECK(f.scratch_is_empty());
    }
}

TEST_CASE("a cancel reaches the source download and is checked around the flush", "[jobs]") {
    SECTION("the download watches the job's cancel token") {
        // A slow download that stops when its token says so (as a source that can stop part-way does).
        struct slow_source final : image_source {
            std::atomic<bool> started{false};
            bool saw_cancel = false;
            std::string fetch(const std::string&, const std::filesystem::path&, std::uint64_t) override {
                throw error(errc::io_error, "the job must download through fetch_cancellable");
            }
            std::string fetch_cancellable(const std::string&, const std::filesystem::path&, std::uint64_t,
                                          const cancel_token& cancel) override {
                started = true;
                const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
                while (!cancel.is_cancelled() && std::chrono::steady_clock::now() < until)
                    std::this_thread::sleep_for(std::chrono::milliseconds(5));
                saw_cancel = cancel.is_cancelled();
                throw cancelled_error();
            }
        };
        fixture f;
        f.options.heartbeat = std::chrono::milliseconds(50);
        slow_source source;
        const job_record job = f.enqueue();
        std::thread canceller([&] {
            while (!source.started) std::this_thread::sleep_for(std::chrono::milliseconds(2));
            f.store.cancel(job.id, "user asked");
        });
        const auto began = std::chrono::steady_clock::now();
        const std::map<std::string, job_handler> handlers{
            {tile_generation_job, tile_generation_handler<fast_codecs>(source, f.sink, f.lookup(), f.settings)}};
        const auto done = run_next_job(f.store, handlers, f.options);
        canceller.join();
        REQUIRE(done);
        CHECK(done->status == job_status::cancelled);
        CHECK(source.saw_cancel);
        CHECK(std::chrono::steady_clock::now() - began < std::chrono::seconds(5));
        CHECK(f.scratch_is_empty());
    }
    SECTION("a cancel during the flush stops the run before its commit") {
        struct slow_flush_sink final : storage_sink {
            memory_sink inner;
            std::function<void()> during_flush;
            void put(storage_object object) override { inner.put(std::move(object)); }
            void flush() override {
                if (during_flush) during_flush();
                inner.flush();
            }
            bool can_list() const override { return true; }
            void list(const std::string& prefix, const std::function<void(const std::string&)>& each) override {
                inner.list(prefix, each);
            }
            bool remove(const std::string& key) override { return inner.remove(key); }
            bool can_compare_and_put() const override { return true; }
            std::optional<versioned_object> read(const std::string& key) override { return inner.read(key); }
            conditional_put_result put_if(storage_object object, const std::string& expected) override {
                return inner.put_if(std::move(object), expected);
            }
        };
        fixture f;
        f.source.add("uploads/map.png", png_of(300, 200));
        slow_flush_sink sink;
        cancel_token worker;  // the worker's own token: the pool stopping
        sink.during_flush = [&] { worker.cancel(); };
        f.enqueue();
        const job_record done = f.run(sink, worker);
        CHECK(done.status == job_status::queued);  // handed back
        CHECK(done.releases == 1);
        CHECK_FALSE(read_pointer(sink, version_prefix).pointer);  // never committed
        CHECK(keys_under(sink, tiles_prefix).empty());
    }
}

TEST_CASE("worker_pool: two attempts of one job in one pool each keep their own cancel", "[jobs][worker]") {
    // The keeper hangs on renewals (a store that stopped answering) until the first attempt's
    // lease has expired and the job was rescued; a second thread of the same pool then runs
    // attempt 2 while attempt 1, which ignores its token, is still on its way out.
    fixture f;
    f.options.threads = 2;
    f.options.lease = std::chrono::milliseconds(600);
    f.options.heartbeat = std::chrono::milliseconds(50);
    f.options.poll_interval = std::chrono::milliseconds(20);
    f.options.rescue_interval = std::chrono::milliseconds(0);  // rescued by hand below
    std::mutex m;
    std::condition_variable changed;
    bool stuck = true, first_running = false, second_running = false, release_first = false;
    bool second_saw_cancel = false;
    int ended = 0;
    f.store.before_renew = [&] {
        std::unique_lock<std::mutex> lock(m);
        changed.wait_for(lock, std::chrono::seconds(20), [&] { return !stuck; });
    };
    f.options.on_job_end = [&](const job_record&) {
        std::lock_guard<std::mutex> lock(m);
        ++ended;
        changed.notify_all();
    };
    worker_pool pool(f.store, f.options);
    pool.handle("twice", [&](job_context& context) -> nlohmann::json {
        std::unique_lock<std::mutex> lock(m);
        if (context.attempt() == 1) {
            first_running = true;
            changed.notify_all();
            changed.wait_for(lock, std::chrono::seconds(20), [&] { return release_first; });  // deaf to its token
            return nlohmann::json::object();
        }
        second_running = true;
        changed.notify_all();
        lock.unlock();
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!context.cancel().is_cancelled() && std::chrono::steady_clock::now() < until)
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        lock.lock();
        second_saw_cancel = context.cancel().is_cancelled();
        throw cancelled_error();
    });
    new_job job{"twice", "project-1", "version-1", "alice"};
    const std::string id = f.store.enqueue(job).id;
    pool.start();
    const auto wait = [&](const std::function<bool()>& what) {
        std::unique_lock<std::mutex> lock(m);
        return changed.wait_for(lock, std::chrono::seconds(20), what);
    };
    REQUIRE(wait([&] { return first_running; }));
    // The lease ends (nobody renews it); the job is rescued for attempt 2.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (f.store.inner.rescue_expired().empty() && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    {
        std::lock_guard<std::mutex> lock(m);
        stuck = false;  // the store answers again: attempt 1's renewal is fenced off
    }
    changed.notify_all();
    REQUIRE(wait([&] { return second_running; }));
    {
        std::lock_guard<std::mutex> lock(m);
        release_first = true;  // attempt 1 finally returns; its completion is refused
    }
    changed.notify_all();
    // Attempt 1's run ends (lost: the store holds attempt 2), and only then look at the pool.
    const auto gone_by = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (pool.snapshot().lost + static_cast<std::uint64_t>(ended) == 0 && std::chrono::steady_clock::now() < gone_by)
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    REQUIRE(pool.snapshot().lost == 1);
    CHECK(f.store.get(id)->attempt == 2);
    CHECK(f.store.get(id)->status == job_status::running);
    CHECK(pool.snapshot().running == 1);  // attempt 2 is still known to the pool
    const auto stop_began = std::chrono::steady_clock::now();
    pool.stop(std::chrono::milliseconds(100));
    CHECK(std::chrono::steady_clock::now() - stop_began < std::chrono::seconds(3));
    CHECK(second_saw_cancel);  // the pool's stop reached attempt 2
    CHECK(f.store.get(id)->status == job_status::queued);  // handed back
}
