// The publish protocol (jobs/run_pointer.hpp, jobs/tile_generation.hpp): the sinks' conditional
// write (memory, filesystem across processes), and the scenarios that corrupted a version's
// pyramid when every run of a version shared one prefix: cancel-then-rerun with a slow-deleting
// sink, a lost lease while storage works, publishing during a run, a cancel racing the
// completion, two runs racing to commit; and the collection of replaced runs after a grace period.
// The S3 side runs against the signature-checking peer in unit-s3-live.cpp.

#include "test_helpers.hpp"

#include <tilekit/fast_codecs.hpp>
#include <tilekit/jobs.hpp>
#include <tilekit/s3.hpp>

#include <atomic>
#include <cstdlib>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

using namespace tilekit;
using namespace tilekit::jobs;

namespace {

std::vector<std::uint8_t> png_of(int width, int height) {
    std::vector<std::uint8_t> png;
    libdeflate_png_encoder().encode(tkt::make_image(width, height, 3, 9, 20).view(), png);
    return png;
}

const std::string version_prefix = "mp/harbour-map/uploads/tiles/3/";

// Forwards everything to a memory sink, or to a filesystem sink when given a root (the scenarios
// run on both); deletes can be slow, and hooks run around each conditional write.
class hooked_sink final : public storage_sink {
public:
    memory_sink inner;
    std::chrono::milliseconds remove_delay{0};
    std::function<void(const storage_object&)> before_put_if;
    std::function<void(const storage_object&)> after_put_if;

    hooked_sink() = default;
    explicit hooked_sink(const std::filesystem::path* disk_root) {
        if (disk_root) disk_ = std::make_unique<filesystem_sink>(*disk_root);
    }

    void put(storage_object object) override { target().put(std::move(object)); }
    void flush() override { target().flush(); }
    bool remove(const std::string& key) override {
        if (remove_delay.count()) std::this_thread::sleep_for(remove_delay);
        return target().remove(key);
    }
    bool can_list() const override { return true; }
    void list(const std::string& prefix, const std::function<void(const std::string&)>& on_key) override {
        target().list(prefix, on_key);
    }
    bool can_compare_and_put() const override { return true; }
    std::optional<versioned_object> read(const std::string& key) override { return target().read(key); }
    conditional_put_result put_if(storage_object object, const std::string& expected) override {
        if (before_put_if) before_put_if(object);
        const storage_object copy = object;
        conditional_put_result r = target().put_if(std::move(object), expected);
        if (!r.stored) ++refused;
        if (r.stored && after_put_if) after_put_if(copy);
        return r;
    }
    std::atomic<int> refused{0};  // conditional writes whose condition did not hold

private:
    storage_sink& target() { return disk_ ? static_cast<storage_sink&>(*disk_) : inner; }
    std::unique_ptr<filesystem_sink> disk_;
};

// The store a scenario runs on: memory, then the filesystem (GENERATE runs the test once each).
struct scenario_store {
    bool on_disk;
    tkt::temp_dir root{"tilekit-publish-disk"};
    std::filesystem::path path = root.path();
    hooked_sink sink;
    explicit scenario_store(bool disk) : on_disk(disk), sink(disk ? &path : nullptr) {}
    const char* name() const { return on_disk ? "filesystem sink" : "memory sink"; }
};

// A memory store whose writes for attempt 1 fail while `partitioned` (the worker cannot reach
// it; everyone else can).
class partition_store final : public job_store {
public:
    std::atomic<bool> partitioned{false};
    memory_job_store inner;

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
        cut(lease);
        return inner.renew(lease);
    }
    job_record report_progress(job_lease& lease, int progress, const std::string& message) override {
        cut(lease);
        return inner.report_progress(lease, progress, message);
    }
    job_record complete(job_lease& lease, const nlohmann::json& r, const std::string& m) override {
        cut(lease);
        return inner.complete(lease, r, m);
    }
    job_record fail(job_lease& lease, const std::string& e, failure_kind kind) override {
        cut(lease);
        return inner.fail(lease, e, kind);
    }
    job_record release(job_lease& lease, const std::string& reason) override {
        cut(lease);
        return inner.release(lease, reason);
    }
    job_record cancel(const std::string& id, const std::string& r) override { return inner.cancel(id, r); }
    std::vector<job_record> rescue_expired() override { return inner.rescue_expired(); }

private:
    void cut(const job_lease& lease) const {
        if (partitioned && lease.attempt == 1) throw error(errc::store_unavailable, "connection refused (partition)");
    }
};

struct fixture {
    partition_store store;
    memory_source source;
    tkt::temp_dir scratch{"tilekit-publish-scratch"};
    std::mutex status_mutex;
    std::string version_status = "draft";
    tile_generation_settings settings;
    worker_options options;

    fixture() {
        settings.scratch_root = scratch.path();
        settings.threads = 2;
        settings.run_ended_at = run_ended_from_store(store);
        settings.job_gave_up = job_gave_up_from_store(store);
        options.progress_interval = std::chrono::milliseconds(5);
        options.heartbeat = std::chrono::milliseconds(50);
        options.lease = std::chrono::milliseconds(3000);
        retry_policy fast;
        fast.base = std::chrono::milliseconds(1);
        fast.jitter = false;
        store.set_retry_policy(fast);
        store.inner.set_retry_policy(fast);
        source.add("uploads/map.png", png_of(800, 600));
    }

    void set_status(const std::string& s) {
        std::lock_guard<std::mutex> lock(status_mutex);
        version_status = s;
    }

    job_record enqueue(const std::string& version_id = "version-3", int max_attempts = 1) {
        tile_generation_request r;
        r.source_key = "uploads/map.png";
        r.project_slug = "harbour-map";
        r.version = 3;
        r.tiling.tile_size = 64;
        new_job job{tile_generation_job, "project-1", version_id, "alice"};
        job.payload = to_payload(r);
        job.max_attempts = max_attempts;
        return store.enqueue(job);
    }

    version_lookup lookup() {
        return [this](const job_record&) {
            std::lock_guard<std::mutex> lock(status_mutex);
            return version_info{3, version_status};
        };
    }

    std::optional<job_record> run(storage_sink& destination, const tile_generation_settings& s) {
        const std::map<std::string, job_handler> handlers{
            {tile_generation_job, tile_generation_handler<fast_codecs>(source, destination, lookup(), s)}};
        return run_next_job(store, handlers, options);
    }
    std::optional<job_record> run(storage_sink& destination) { return run(destination, settings); }
};

std::vector<std::string> keys_under(storage_sink& sink, const std::string& prefix) {
    std::vector<std::string> out;
    sink.list(prefix, [&](const std::string& key) { out.push_back(key); });
    return out;
}

// The committed pyramid: the pointer names `job`'s run, and the run holds every tile the job
// reported plus its two manifests.
void check_committed(storage_sink& sink, const job_record& job) {
    const pointer_state state = read_pointer(sink, version_prefix);
    REQUIRE(state.pointer);
    CHECK(state.pointer->job_id == job.id);
    CHECK(state.pointer->run == job.result.at("run").get<std::string>());
    const std::vector<std::string> keys = keys_under(sink, version_prefix + state.pointer->run);
    CHECK(keys.size() == job.result.at("tile_count").get<std::size_t>() + 2);
    CHECK(sink.read(version_prefix + state.pointer->manifest));
    CHECK(sink.read(version_prefix + state.pointer->metadata));
}

std::string text_of(storage_sink& sink, const std::string& key) {
    const std::optional<versioned_object> found = sink.read(key);
    if (!found) return {};
    return std::string(found->object.body.begin(), found->object.body.end());
}

}  // namespace

TEST_CASE("put_if is a compare-and-swap on the memory and filesystem sinks", "[publish][sinks]") {
    tkt::temp_dir root("tilekit-cas");
    memory_sink memory;
    filesystem_sink disk(root.path());
    for (storage_sink* sink : {static_cast<storage_sink*>(&memory), static_cast<storage_sink*>(&disk)}) {
        REQUIRE(sink->can_compare_and_put());
        CHECK_FALSE(sink->read("p/current.json"));
        const conditional_put_result first = sink->put_if({"p/current.json", {'a'}, "application/json", ""}, "");
        REQUIRE(first.stored);
        CHECK_FALSE(first.version.empty());
        // "absent" no longer holds
        const conditional_put_result again = sink->put_if({"p/current.json", {'b'}, "", ""}, "");
        CHECK_FALSE(again.stored);
        CHECK(again.version == first.version);
        const conditional_put_result second = sink->put_if({"p/current.json", {'c'}, "", ""}, first.version);
        REQUIRE(second.stored);
        CHECK(second.version != first.version);
        const conditional_put_result stale = sink->put_if({"p/current.json", {'d'}, "", ""}, first.version);
        CHECK_FALSE(stale.stored);
        CHECK(stale.version == second.version);
        const auto now = sink->read("p/current.json");
        REQUIRE(now);
        CHECK(now->object.body == std::vector<std::uint8_t>{'c'});
        CHECK(now->version == second.version);
        // The lock file is no object.
        CHECK(keys_under(*sink, "p/") == std::vector<std::string>{"p/current.json"});
    }
}

TEST_CASE("put_if: concurrent increments through compare-and-swap lose nothing", "[publish][sinks]") {
    // A counter object incremented with read + put_if retried on conflict: any lost update (two
    // writers both succeeding against the same version) shows as a final count below the total.
    const auto increment = [](storage_sink& sink, int times) {
        for (int i = 0; i < times;) {
            const auto now = sink.read("c/counter");
            const int value = now ? std::stoi(std::string(now->object.body.begin(), now->object.body.end())) : 0;
            const std::string next = std::to_string(value + 1);
            if (sink.put_if({"c/counter", {next.begin(), next.end()}, "", ""}, now ? now->version : "").stored) ++i;
        }
    };
    const auto value_of = [](storage_sink& sink) {
        const auto now = sink.read("c/counter");
        REQUIRE(now);
        return std::stoi(std::string(now->object.body.begin(), now->object.body.end()));
    };
    SECTION("memory sink, 4 threads") {
        memory_sink sink;
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t) threads.emplace_back([&] { increment(sink, 200); });
        for (auto& t : threads) t.join();
        CHECK(value_of(sink) == 800);
    }
    SECTION("filesystem sink: 4 threads of one sink, and 3 processes with sinks of their own") {
        tkt::temp_dir root("tilekit-cas-procs");
        std::vector<pid_t> children;
        for (int p = 0; p < 3; ++p) {
            const pid_t child = ::fork();
            REQUIRE(child >= 0);
            if (child == 0) {
                int status = 0;
                try {
                    filesystem_sink own(root.path());
                    increment(own, 150);
                } catch (...) {
                    status = 1;
                }
                ::_exit(status);
            }
            children.push_back(child);
        }
        filesystem_sink sink(root.path());
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t) threads.emplace_back([&] { increment(sink, 50); });
        for (auto& t : threads) t.join();
        for (const pid_t child : children) {
            int status = 0;
            REQUIRE(::waitpid(child, &status, 0) == child);
            CHECK(WIFEXITED(status));
            CHECK(WEXITSTATUS(status) == 0);
        }
        CHECK(value_of(sink) == 3 * 150 + 4 * 50);
    }
}

TEST_CASE("a job publishes through the pointer: its run prefix, immutable cache headers, replaced runs kept for the grace", "[publish][jobs]") {
    fixture f;
    hooked_sink sink;
    f.enqueue();
    const auto first = f.run(sink);
    REQUIRE(first);
    REQUIRE(first->status == job_status::completed);
    check_committed(sink, *first);
    const std::string first_run = first->result.at("run");
    CHECK(first_run == "runs/" + first->id + ".1/");
    CHECK(first->result.at("tiles_path") == version_prefix + first_run);
    // Nothing outside the version prefix's runs/ and its pointer.
    for (const std::string& key : sink.inner.keys()) {
        const bool ok = key == version_prefix + "current.json" || key == version_prefix + "image.dzi" ||
                        key == version_prefix + "pyramid.json" || key.rfind(version_prefix + first_run, 0) == 0;
        CHECK(ok);
    }
    CHECK(sink.inner.get(version_prefix + first_run + "image_files/0/0_0.png")->cache_control == immutable_cache_control);
    CHECK(sink.inner.get(version_prefix + "current.json")->cache_control == pointer_cache_control);

    f.enqueue();
    const auto second = f.run(sink);
    REQUIRE(second);
    REQUIRE(second->status == job_status::completed);
    check_committed(sink, *second);
    // The first run is replaced but kept for the grace period (a viewer may still show it) ...
    CHECK_FALSE(keys_under(sink, version_prefix + first_run).empty());
    const pointer_state state = read_pointer(sink, version_prefix);
    REQUIRE(state.pointer->retired.size() == 1);
    CHECK(state.pointer->retired[0].run == first_run);
    collect_options gc;
    gc.grace = std::chrono::seconds(600);
    CHECK(collect_runs(sink, version_prefix, gc).removed_runs.empty());
    // ... and collected after it; never the committed run.
    gc.now = unix_now() + 601;
    const collect_report report = collect_runs(sink, version_prefix, gc);
    CHECK(report.removed_runs == std::vector<std::string>{first_run});
    CHECK(keys_under(sink, version_prefix + first_run).empty());
    check_committed(sink, *second);
}

TEST_CASE("cancel, then rerun at once, with a slow-deleting sink: the rerun's pyramid is whole and committed every time", "[publish][jobs]") {
    // Before: the cancelled run deleted the keys it had written, which the rerun had rewritten
    // under the same prefix, so the rerun completed with holes.
    const bool on_disk = GENERATE(false, true);
    for (int round = 0; round < 6; ++round) {
        fixture f;
        f.source.add("uploads/map.png", png_of(1600, 1200));  // 665 objects at 64 px
        scenario_store store(on_disk);
        INFO(store.name() << ", round " << round);
        hooked_sink& sink = store.sink;
        sink.remove_delay = std::chrono::milliseconds(2);
        std::atomic<int> tiles_seen{0};
        std::mutex m;
        std::condition_variable cv;
        tile_generation_settings first_settings = f.settings;
        first_settings.on_progress = [&](const tile_progress& p) {
            if (p.tiles_done * 10 >= p.tiles_total * (2 + round % 5) && tiles_seen.exchange(1) == 0) cv.notify_all();
        };
        const job_record j1 = f.enqueue();
        std::optional<job_record> j1_end;
        std::thread first([&] { j1_end = f.run(sink, first_settings); });
        {
            std::unique_lock<std::mutex> lock(m);
            cv.wait_for(lock, std::chrono::seconds(20), [&] { return tiles_seen.load() == 1; });
        }
        f.store.cancel(j1.id, "operator");
        f.enqueue();  // the version is free again at once
        const auto j2 = f.run(sink);
        first.join();
        REQUIRE(j2);
        REQUIRE(j2->status == job_status::completed);
        CHECK(f.store.get(j1.id)->status == job_status::cancelled);
        check_committed(sink, *j2);
        // The cancelled run left nothing behind.
        CHECK(keys_under(sink, version_prefix + "runs/" + j1.id + ".1/").empty());
    }
}

TEST_CASE("publishing the version during the run: the run does not commit, the previous pyramid stays", "[publish][jobs]") {
    fixture f;
    scenario_store store(GENERATE(false, true));
    INFO(store.name());
    hooked_sink& sink = store.sink;
    f.enqueue();
    const auto first = f.run(sink);
    REQUIRE(first->status == job_status::completed);
    f.enqueue();
    tile_generation_settings publishing = f.settings;
    publishing.on_progress = [&](const tile_progress& p) {
        if (p.tiles_done >= 10) f.set_status("published");
    };
    const auto second = f.run(sink, publishing);
    REQUIRE(second);
    CHECK(second->status == job_status::failed);
    CHECK(second->error.find("draft") != std::string::npos);
    check_committed(sink, *first);  // untouched
    CHECK(keys_under(sink, version_prefix + "runs/" + second->id + ".1/").empty());
}

TEST_CASE("publishing the version while a retry waits: the published pyramid stays whole", "[publish][jobs]") {
    // Before: attempt 1 had already retracted the manifests, attempt 2 failed the guard, and the
    // published version was left without a manifest and with a mix of old and new tiles.
    fixture f;
    scenario_store store(GENERATE(false, true));
    INFO(store.name());
    hooked_sink& sink = store.sink;
    f.enqueue();
    const auto first = f.run(sink);
    REQUIRE(first->status == job_status::completed);
    const job_record second = f.enqueue("version-3", 3);
    std::atomic<bool> fail_once{true};
    tile_generation_settings failing = f.settings;
    failing.on_progress = [&](const tile_progress& p) {
        if (p.tiles_done >= 10 && fail_once.exchange(false)) throw error(errc::storage_error, "503 Slow Down");
    };
    const auto attempt1 = f.run(sink, failing);
    REQUIRE(attempt1);
    REQUIRE(attempt1->status == job_status::queued);  // a retry waits
    f.set_status("published");
    std::optional<job_record> attempt2;
    for (int i = 0; i < 200 && !attempt2; ++i) {
        attempt2 = f.run(sink);
        if (!attempt2) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    REQUIRE(attempt2);
    CHECK(attempt2->status == job_status::failed);
    CHECK(attempt2->error.find("draft") != std::string::npos);
    check_committed(sink, *first);
    CHECK(keys_under(sink, version_prefix + "runs/" + second.id + ".1/").empty());
    CHECK(keys_under(sink, version_prefix + "runs/" + second.id + ".2/").empty());
}

TEST_CASE("a cancel landing between the commit and the completion: the job is cancelled and the pointer goes back", "[publish][jobs]") {
    fixture f;
    scenario_store store(GENERATE(false, true));
    INFO(store.name());
    hooked_sink& sink = store.sink;
    f.enqueue();
    const auto first = f.run(sink);
    REQUIRE(first->status == job_status::completed);
    const job_record second = f.enqueue();
    sink.after_put_if = [&](const storage_object& object) {
        if (object.key == version_prefix + "current.json" && f.store.get(second.id)->status == job_status::running)
            f.store.cancel(second.id, "operator");
    };
    const auto end = f.run(sink);
    REQUIRE(end);
    CHECK(end->status == job_status::cancelled);
    // The job and the pointer agree: the previous pyramid is the version's pyramid again.
    check_committed(sink, *first);
    const pointer_state state = read_pointer(sink, version_prefix);
    bool retired_listed = false;
    for (const retired_run& r : state.pointer->retired) retired_listed |= r.run == "runs/" + second.id + ".1/";
    CHECK(retired_listed);  // so that collect_runs removes it after the grace
    // The stable manifests follow the pointer back.
    CHECK(text_of(sink, version_prefix + "image.dzi").find("runs/" + first->id + ".1/image_files/") != std::string::npos);
}

TEST_CASE("stable manifests at the version prefix name the committed run, and follow every commit and undo", "[publish][jobs]") {
    fixture f;
    hooked_sink sink;
    SECTION("Deep Zoom and pyramid.json, root-relative URLs (a bucket served at a domain's root)") {
        f.enqueue();
        const auto first = f.run(sink);
        REQUIRE(first->status == job_status::completed);
        const std::string run1 = "runs/" + first->id + ".1/";
        const std::string dzi = text_of(sink, version_prefix + "image.dzi");
        CHECK(dzi.find("<Image Url=\"/" + version_prefix + run1 + "image_files/\" xmlns=") != std::string::npos);
        CHECK(dzi.find("TileSize=\"64\"") != std::string::npos);
        CHECK(sink.inner.get(version_prefix + "image.dzi")->cache_control == pointer_cache_control);
        const nlohmann::json meta = nlohmann::json::parse(text_of(sink, version_prefix + "pyramid.json"));
        CHECK(meta.at("tile_url_template") == run1 + "image_files/{level}/{col}_{row}.png");
        CHECK(meta.at("run") == run1);
        // The run's own manifest is untouched (no Url: it sits beside its tiles).
        CHECK(text_of(sink, version_prefix + run1 + "image.dzi").find("Url=") == std::string::npos);

        f.enqueue();
        const auto second = f.run(sink);
        REQUIRE(second->status == job_status::completed);
        CHECK(text_of(sink, version_prefix + "image.dzi").find("runs/" + second->id + ".1/image_files/") != std::string::npos);
        CHECK(nlohmann::json::parse(text_of(sink, version_prefix + "pyramid.json")).at("run") == "runs/" + second->id + ".1/");
    }
    SECTION("an absolute public base URL; a first run undone removes them") {
        f.settings.public_base_url = "https://tiles.example.com/";
        const job_record job = f.enqueue();
        sink.after_put_if = [&](const storage_object& object) {
            if (object.key == version_prefix + "current.json" && f.store.get(job.id)->status == job_status::running) {
                // The stable manifests of the commit are written after the pointer: let the job
                // write them, then cancel it before its completion is recorded.
                f.store.cancel(job.id, "operator");
            }
        };
        const auto end = f.run(sink);
        REQUIRE(end);
        CHECK(end->status == job_status::cancelled);
        const pointer_state state = read_pointer(sink, version_prefix);
        REQUIRE(state.pointer);
        CHECK(state.pointer->run.empty());
        CHECK_FALSE(sink.read(version_prefix + "image.dzi"));
        CHECK_FALSE(sink.read(version_prefix + "pyramid.json"));
        f.enqueue();
        const auto next = f.run(sink);
        REQUIRE(next->status == job_status::completed);
        CHECK(text_of(sink, version_prefix + "image.dzi").find("Url=\"https://tiles.example.com/" + version_prefix + "runs/" + next->id +
                                                             ".1/image_files/\"") != std::string::npos);
    }
    SECTION("IIIF: info.json's relative id becomes the run's address; an absolute one is kept") {
        tile_generation_request r;
        r.source_key = "uploads/map.png";
        r.project_slug = "harbour-map";
        r.version = 3;
        r.tiling.layout = layout_type::iiif;
        r.tiling.tile_size = 128;
        new_job job{tile_generation_job, "project-1", "version-3", "alice"};
        job.payload = to_payload(r);
        const job_record relative = f.store.enqueue(job);
        REQUIRE(f.run(sink)->status == job_status::completed);
        nlohmann::json info = nlohmann::json::parse(text_of(sink, version_prefix + "info.json"));
        CHECK(info.at("id") == "/" + version_prefix + "runs/" + relative.id + ".1");
        r.tiling.iiif_base_url = "https://iiif.example.org/base";
        job.payload = to_payload(r);
        const job_record absolute = f.store.enqueue(job);
        REQUIRE(f.run(sink)->status == job_status::completed);
        info = nlohmann::json::parse(text_of(sink, version_prefix + "info.json"));
        CHECK(info.at("id") == "https://iiif.example.org/base/" + version_prefix + "runs/" + absolute.id + ".1");
    }
    SECTION("a writer that lost the race to a later commit writes them again for the pointer as it is") {
        f.enqueue();
        const auto first = f.run(sink);
        REQUIRE(first->status == job_status::completed);
        f.enqueue();
        const auto second = f.run(sink);
        REQUIRE(second->status == job_status::completed);
        // A late writer with the first pointer in mind: sync reads the pointer, so it writes the
        // second run's manifests whatever it was called for.
        sync_stable_manifests(sink, version_prefix, "");
        CHECK(text_of(sink, version_prefix + "image.dzi").find("runs/" + second->id + ".1/") != std::string::npos);
    }
}

TEST_CASE("a cancelled run commits in its last moment while the rerun works: the rerun still commits, every time", "[publish][jobs]") {
    // J1 passed its fences, then is cancelled; J2 (the rerun) starts and reads the pointer; only
    // then does J1's pointer write land. J1's completion is refused (its undo puts the pointer
    // back unless J2 came first), and J2's conditional write finds the pointer moved: it must
    // still commit, because the run the pointer names (or went back to) is no rival.
    for (int round = 0; round < 3; ++round) {
        fixture f;
        scenario_store store(round % 2 == 1);
        INFO(store.name() << ", round " << round);
        hooked_sink& sink = store.sink;
        f.enqueue();
        const auto first = f.run(sink);
        REQUIRE(first->status == job_status::completed);
        const job_record j1 = f.enqueue();
        std::optional<job_record> j2_end;
        std::thread second;
        std::atomic<bool> hooked{false};
        sink.before_put_if = [&](const storage_object& object) {
            if (object.key != version_prefix + "current.json" || hooked.exchange(true)) return;
            f.store.cancel(j1.id, "operator");
            const job_record j2 = f.enqueue();
            second = std::thread([&] { j2_end = f.run(sink); });
            // J2 has read the pointer once it has stored a tile.
            for (int i = 0; i < 2000 && keys_under(sink, version_prefix + "runs/" + j2.id + ".1/").empty(); ++i)
                std::this_thread::sleep_for(std::chrono::milliseconds(5));
        };
        const auto j1_end = f.run(sink);
        if (second.joinable()) second.join();
        REQUIRE(j1_end);
        CHECK(j1_end->status == job_status::cancelled);
        REQUIRE(j2_end);
        REQUIRE(j2_end->status == job_status::completed);
        check_committed(sink, *j2_end);
        CHECK(sink.refused >= 1);  // the race happened: one of the two writes found the pointer moved
    }
}

TEST_CASE("the pointer write's answer is lost: the pointer decides whether the run committed", "[publish][jobs]") {
    fixture f;
    scenario_store store(GENERATE(false, true));
    INFO(store.name());
    hooked_sink& sink = store.sink;
    SECTION("the write landed: the job completes and its run is the pyramid") {
        sink.after_put_if = [&](const storage_object& object) {
            if (object.key == version_prefix + "current.json") throw error(errc::storage_error, "connection reset (answer lost)");
        };
        f.enqueue();
        const auto end = f.run(sink);
        REQUIRE(end);
        CHECK(end->status == job_status::completed);
        check_committed(sink, *end);
    }
    SECTION("the write never landed: the run is not committed and is deleted") {
        sink.before_put_if = [&](const storage_object& object) {
            if (object.key == version_prefix + "current.json") throw error(errc::storage_error, "connection refused");
        };
        const job_record job = f.enqueue();
        const auto end = f.run(sink);
        REQUIRE(end);
        CHECK(end->status == job_status::failed);
        CHECK_FALSE(read_pointer(sink, version_prefix).pointer);
        CHECK(keys_under(sink, version_prefix + "runs/" + job.id + ".1/").empty());
    }
}

TEST_CASE("a committed run whose job ended without completing is withdrawn by the next gc", "[publish][jobs]") {
    // The state a worker killed between its commit and its completion leaves behind (here: a
    // cancel after the commit, with the undo's write failing as if the process had died).
    fixture f;
    scenario_store store(GENERATE(false, true));
    INFO(store.name());
    hooked_sink& sink = store.sink;
    f.enqueue();
    const auto first = f.run(sink);
    REQUIRE(first->status == job_status::completed);
    const job_record second = f.enqueue();
    bool committed = false;
    sink.before_put_if = [&](const storage_object& object) {
        if (object.key == version_prefix + "current.json" && committed) throw error(errc::storage_error, "the process is gone");
    };
    sink.after_put_if = [&](const storage_object& object) {
        if (object.key == version_prefix + "current.json" && !committed) {
            committed = true;
            f.store.cancel(second.id, "operator");
        }
    };
    REQUIRE(f.run(sink)->status == job_status::cancelled);
    sink.before_put_if = nullptr;
    REQUIRE(read_pointer(sink, version_prefix).pointer->job_id == second.id);  // job and pointer disagree

    SECTION("the previous run is still stored: the pointer goes back to it") {
        CHECK(withdraw_abandoned_commit(sink, version_prefix, job_gave_up_from_store(f.store)));
        check_committed(sink, *first);
        CHECK(text_of(sink, version_prefix + "image.dzi").find("runs/" + first->id + ".1/") != std::string::npos);
        // Idempotent: the pointer's job completed.
        CHECK_FALSE(withdraw_abandoned_commit(sink, version_prefix, job_gave_up_from_store(f.store)));
        // The withdrawn run is retired, collected after the grace.
        collect_options gc;
        gc.now = unix_now() + 601;
        const collect_report report = collect_runs(sink, version_prefix, gc);
        CHECK(report.removed_runs == std::vector<std::string>{"runs/" + second.id + ".1/"});
        check_committed(sink, *first);
    }
    SECTION("the previous run was collected: no pyramid, no stable manifests") {
        for (const std::string& key : keys_under(sink, version_prefix + "runs/" + first->id + ".1/")) sink.remove(key);
        CHECK(withdraw_abandoned_commit(sink, version_prefix, job_gave_up_from_store(f.store)));
        const pointer_state state = read_pointer(sink, version_prefix);
        REQUIRE(state.pointer);
        CHECK(state.pointer->run.empty());
        CHECK_FALSE(sink.read(version_prefix + "image.dzi"));
        CHECK_FALSE(sink.read(version_prefix + "pyramid.json"));
    }
    SECTION("a job that may still run (a retry waits) is left alone") {
        CHECK_FALSE(withdraw_abandoned_commit(sink, version_prefix, [](const std::string&) { return false; }));
        CHECK(read_pointer(sink, version_prefix).pointer->job_id == second.id);
    }
}

TEST_CASE("a cancel between the commit and the completion, with a sink made per job: the undo still has its sink", "[publish][jobs]") {
    // The make_sink form destroys its sink when the handler returns; the undo runs after that.
    struct forwarding_sink final : storage_sink {
        memory_sink& to;
        std::function<void(const storage_object&)> after_put_if;
        explicit forwarding_sink(memory_sink& target) : to(target) {}
        void put(storage_object object) override { to.put(std::move(object)); }
        void flush() override {}
        bool remove(const std::string& key) override { return to.remove(key); }
        bool can_list() const override { return true; }
        void list(const std::string& prefix, const std::function<void(const std::string&)>& on_key) override {
            to.list(prefix, on_key);
        }
        bool can_compare_and_put() const override { return true; }
        std::optional<versioned_object> read(const std::string& key) override { return to.read(key); }
        conditional_put_result put_if(storage_object object, const std::string& expected) override {
            const storage_object copy = object;
            conditional_put_result r = to.put_if(std::move(object), expected);
            if (r.stored && after_put_if) after_put_if(copy);
            return r;
        }
        ~forwarding_sink() override { after_put_if = nullptr; }
    };
    fixture f;
    memory_sink shared;
    const job_record job = f.enqueue();
    const std::function<std::unique_ptr<storage_sink>()> make_sink = [&] {
        auto sink = std::make_unique<forwarding_sink>(shared);
        sink->after_put_if = [&](const storage_object& object) {
            if (object.key == version_prefix + "current.json" && f.store.get(job.id)->status == job_status::running)
                f.store.cancel(job.id, "operator");
        };
        return sink;
    };
    const std::map<std::string, job_handler> handlers{
        {tile_generation_job, tile_generation_handler<fast_codecs>(f.source, make_sink, f.lookup(), f.settings)}};
    const auto end = run_next_job(f.store, handlers, f.options);
    REQUIRE(end);
    CHECK(end->status == job_status::cancelled);
    const pointer_state state = read_pointer(shared, version_prefix);
    REQUIRE(state.pointer);          // the undo wrote "no pyramid" back (there was none before)
    CHECK(state.pointer->run.empty());
}

TEST_CASE("a cancel just before the commit: nothing is committed", "[publish][jobs]") {
    fixture f;
    scenario_store store(GENERATE(false, true));
    INFO(store.name());
    hooked_sink& sink = store.sink;
    const job_record job = f.enqueue();
    int lookups = 0;
    const version_lookup cancelling = [&](const job_record&) {
        if (++lookups == 2) f.store.cancel(job.id, "operator");  // the commit's draft check
        return version_info{3, "draft"};
    };
    const std::map<std::string, job_handler> handlers{
        {tile_generation_job, tile_generation_handler<fast_codecs>(f.source, sink, cancelling, f.settings)}};
    const auto end = run_next_job(f.store, handlers, f.options);
    REQUIRE(end);
    CHECK(end->status == job_status::cancelled);
    CHECK_FALSE(read_pointer(sink, version_prefix).pointer);
    CHECK(keys_under(sink, version_prefix).empty());
}

TEST_CASE("two runs racing to commit: exactly one wins, the loser's objects are gone", "[publish][jobs]") {
    // Two jobs for the same version prefix (the store's one-job-per-version rule is per version
    // id; here two ids map to one prefix, as a misconfigured service could). Both reach the
    // commit before either writes.
    fixture f;
    scenario_store store(GENERATE(false, true));
    INFO(store.name());
    hooked_sink& sink = store.sink;
    std::mutex m;
    std::condition_variable cv;
    int arrived = 0;
    sink.before_put_if = [&](const storage_object& object) {
        if (object.key != version_prefix + "current.json") return;
        std::unique_lock<std::mutex> lock(m);
        ++arrived;
        cv.notify_all();
        cv.wait_for(lock, std::chrono::seconds(20), [&] { return arrived >= 2; });
    };
    f.enqueue("version-3");
    f.enqueue("version-3b");
    std::optional<job_record> a, b;
    std::thread ta([&] { a = f.run(sink); });
    std::thread tb([&] { b = f.run(sink); });
    ta.join();
    tb.join();
    REQUIRE(a);
    REQUIRE(b);
    const int completed = (a->status == job_status::completed) + (b->status == job_status::completed);
    REQUIRE(completed == 1);
    const job_record& winner = a->status == job_status::completed ? *a : *b;
    const job_record& loser = a->status == job_status::completed ? *b : *a;
    CHECK(loser.status == job_status::failed);
    CHECK(loser.error.find("published while this one ran") != std::string::npos);
    check_committed(sink, winner);
    CHECK(keys_under(sink, version_prefix + "runs/" + loser.id + ".1/").empty());
}

TEST_CASE("a lost lease while storage works: the old attempt never commits and never touches the new one", "[publish][jobs]") {
    // Attempt 1's store stops answering its renewals (a partition); its lease expires, attempt 2
    // is claimed by another worker while attempt 1 is still writing and then discarding.
    fixture f;
    scenario_store store(GENERATE(false, true));
    INFO(store.name());
    hooked_sink& sink = store.sink;
    sink.remove_delay = std::chrono::milliseconds(1);
    f.options.lease = std::chrono::milliseconds(600);
    f.options.heartbeat = std::chrono::milliseconds(50);
    f.source.add("uploads/map.png", png_of(1600, 1200));
    const job_record job = f.enqueue("version-3", 8);
    tile_generation_settings cut = f.settings;
    cut.threads = 1;
    cut.on_progress = [&](const tile_progress& p) {
        if (p.tiles_done >= 20) f.store.partitioned = true;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));  // still writing when the lease ends
    };
    std::optional<job_record> first_end;
    std::thread first([&] { first_end = f.run(sink, cut); });
    // Wait until the lease expired, rescue, and run attempt 2 here. On a starved machine that
    // attempt may lose its own short lease too (then it is handed on): run until one completes.
    std::optional<job_record> second;
    for (int i = 0; i < 600 && !(second && second->status == job_status::completed); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        f.store.rescue_expired();
        if (std::optional<job_record> ran = f.run(sink)) second = ran;
    }
    first.join();
    REQUIRE(second);
    REQUIRE(second->status == job_status::completed);
    CHECK(second->attempt >= 2);
    check_committed(sink, *second);
    CHECK(f.store.get(job.id)->status == job_status::completed);
    CHECK(keys_under(sink, version_prefix + "runs/" + job.id + ".1/").empty());
}

// ---- S3: against tests/s3peer (run-with-peer.sh exports S3PEER_*), hidden like unit-s3-live.cpp.

namespace {

std::optional<s3::config> publish_peer() {
    const char* endpoint = std::getenv("S3PEER_ENDPOINT");
    if (!endpoint || !*endpoint) {
        const char* ci = std::getenv("CI");
        if (ci && std::string(ci) == "true") FAIL("S3PEER_ENDPOINT is not set: the S3 peer must run in CI");
        TILEKIT_SKIP_TEST("S3PEER_ENDPOINT is not set: no S3 peer (run tests/s3peer/run-with-peer.sh)");
        return std::nullopt;
    }
    const auto env = [](const char* name) { return std::string(std::getenv(name) ? std::getenv(name) : ""); };
    s3::config c;
    c.target = s3::parse_endpoint(endpoint, env("S3PEER_REGION"));
    c.bucket = env("S3PEER_BUCKET");
    c.creds.access_key_id = env("S3PEER_ACCESS_KEY");
    c.creds.secret_access_key = env("S3PEER_SECRET_KEY");
    return c;
}

std::string s3_unique(const std::string& name) {
    static std::atomic<int> counter{0};
    return "publish/" + name + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
           std::to_string(unix_now()) + "/";
}

}  // namespace

TEST_CASE("S3 put_if: If-None-Match: * and If-Match on the ETag, 412 as a refused condition", "[.s3-live][publish]") {
    const auto config = publish_peer();
    if (!config) return;
    s3::s3_sink sink(*config);
    const std::string key = s3_unique("cas") + "current.json";
    CHECK_FALSE(sink.read(key));
    const conditional_put_result created = sink.put_if({key, {'a'}, "application/json", pointer_cache_control}, "");
    REQUIRE(created.stored);
    CHECK_FALSE(created.version.empty());
    const conditional_put_result exists = sink.put_if({key, {'b'}, "application/json", ""}, "");
    CHECK_FALSE(exists.stored);
    CHECK(exists.version == created.version);
    const auto read = sink.read(key);
    REQUIRE(read);
    CHECK(read->version == created.version);
    CHECK(read->object.body == std::vector<std::uint8_t>{'a'});
    const conditional_put_result replaced = sink.put_if({key, {'c'}, "application/json", ""}, created.version);
    REQUIRE(replaced.stored);
    CHECK(replaced.version != created.version);
    const conditional_put_result stale = sink.put_if({key, {'d'}, "application/json", ""}, created.version);
    CHECK_FALSE(stale.stored);
    CHECK(stale.version == replaced.version);
    // If-Match on a key that does not exist: refused too (S3 answers 404 NoSuchKey).
    const conditional_put_result missing = sink.put_if({s3_unique("cas") + "nothing.json", {'e'}, "", ""}, created.version);
    CHECK_FALSE(missing.stored);
    CHECK(missing.version.empty());
    CHECK(sink.read(key)->object.body == std::vector<std::uint8_t>{'c'});
}

TEST_CASE("S3: a job commits through a conditional write, and a commit whose condition fails changes nothing", "[.s3-live][publish][jobs]") {
    const auto config = publish_peer();
    if (!config) return;
    const std::string slug = "s3-" + std::to_string(::getpid() % 100000) + "-" + std::to_string(unix_now() % 100000);
    const std::string prefix = "mp/" + slug + "/uploads/tiles/3/";
    fixture f;
    f.source.add("uploads/map.png", png_of(300, 200));
    const auto enqueue = [&] {
        tile_generation_request r;
        r.source_key = "uploads/map.png";
        r.project_slug = slug;
        r.version = 3;
        r.tiling.tile_size = 64;
        new_job job{tile_generation_job, "project-1", "version-3", "alice"};
        job.payload = to_payload(r);
        job.max_attempts = 1;
        return f.store.enqueue(job);
    };
    // Forwards to an S3 sink; can move the pointer behind the job's back just before its commit.
    struct racing_sink final : storage_sink {
        s3::s3_sink inner;
        std::function<void()> before_commit;
        explicit racing_sink(const s3::config& c) : inner(c) {}
        void put(storage_object o) override { inner.put(std::move(o)); }
        void flush() override { inner.flush(); }
        bool remove(const std::string& key) override { return inner.remove(key); }
        bool can_list() const override { return true; }
        void list(const std::string& p, const std::function<void(const std::string&)>& on_key) override { inner.list(p, on_key); }
        bool can_compare_and_put() const override { return true; }
        std::optional<versioned_object> read(const std::string& key) override { return inner.read(key); }
        conditional_put_result put_if(storage_object o, const std::string& expected) override {
            if (before_commit) std::exchange(before_commit, nullptr)();
            return inner.put_if(std::move(o), expected);
        }
    };
    racing_sink sink(*config);
    enqueue();
    const auto first = f.run(sink);
    REQUIRE(first);
    REQUIRE(first->status == job_status::completed);
    const auto committed = [&](const job_record& job) {
        const pointer_state state = read_pointer(sink, prefix);
        REQUIRE(state.pointer);
        CHECK(state.pointer->job_id == job.id);
        CHECK(keys_under(sink, prefix + state.pointer->run).size() == job.result.at("tile_count").get<std::size_t>() + 2);
    };
    committed(*first);

    // Someone else's pointer lands between the run's start and its commit: If-Match fails (412).
    const job_record second = enqueue();
    run_pointer other = *read_pointer(sink, prefix).pointer;
    other.job_id = "someone-else";
    other.run = "runs/someone-else.1/";  // another live run (a pointer back at the start's run would not stop this one)
    sink.before_commit = [&] {
        s3::client direct(*config);
        direct.put(prefix + pointer_name, pointer_body(other));
    };
    const auto end = f.run(sink);
    REQUIRE(end);
    CHECK(end->status == job_status::failed);
    CHECK(end->error.find("published while this one ran") != std::string::npos);
    const pointer_state after = read_pointer(sink, prefix);
    REQUIRE(after.pointer);
    CHECK(after.pointer->job_id == "someone-else");  // the other write stands
    CHECK(keys_under(sink, prefix + "runs/" + second.id + ".1/").empty());

    // The next run commits against the pointer as it is now.
    enqueue();
    const auto third = f.run(sink);
    REQUIRE(third);
    REQUIRE(third->status == job_status::completed);
    committed(*third);
    const auto tile = sink.inner.read(prefix + third->result.at("run").get<std::string>() + "image_files/0/0_0.png");
    REQUIRE(tile);
}
