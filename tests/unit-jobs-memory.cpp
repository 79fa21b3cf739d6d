// The in-memory job store against the job-store conformance suite, and the draft-version guard.

#include <tilekit/jobs.hpp>

#include "job_store_conformance.hpp"

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>
#include <mutex>
#include <condition_variable>

using namespace tilekit::jobs;

TEST_CASE("memory_job_store conforms to the job_store contract", "[jobs][memory]") {
    check_job_store_conformance([] { return std::make_unique<memory_job_store>(); });
}

TEST_CASE("memory_job_store: the refusal names the job already active", "[jobs][memory]") {
    memory_job_store store;
    new_job job;
    job.project_id = "p";
    job.version_id = "v";
    const job_record first = store.enqueue(job);
    try {
        store.enqueue(job);
        FAIL("a second active job for one version was accepted");
    } catch (const job_state_error& e) {
        CHECK(std::string(e.what()).find(first.id) != std::string::npos);
    }
}

TEST_CASE("require_draft lets only draft versions through", "[jobs][version_guard]") {
    CHECK_NOTHROW(require_draft({3, "draft"}));
    CHECK(is_draft({1, "draft"}));

    for (const std::string status : {"published", "archived", "Draft", "DRAFT", "", "draft "}) {
        INFO("status '" << status << "'");
        const version_info version{7, status};
        CHECK_FALSE(is_draft(version));
        CHECK_THROWS_AS(require_draft(version), version_not_draft);
        try {
            require_draft(version);
        } catch (const version_not_draft& e) {
            const std::string what = e.what();
            CHECK(what.rfind("Can only generate tiles for draft versions", 0) == 0);
            CHECK(what.find('7') != std::string::npos);
            if (!status.empty()) CHECK(what.find(status) != std::string::npos);
            CHECK(e.code() == tilekit::errc::not_a_draft);
            CHECK(e.version().number == 7);
            CHECK(e.version().status == status);
        }
    }
}

TEST_CASE("version_not_draft is a tilekit::error but not a job_state_error", "[jobs][version_guard]") {
    try {
        require_draft({2, "published"});
        FAIL("published version accepted");
    } catch (const job_state_error&) {
        FAIL("version_not_draft must be distinct from job_state_error");
    } catch (const tilekit::error& e) {
        CHECK(std::string(e.what()) == "Can only generate tiles for draft versions: version 2 is 'published'");
    }
}

TEST_CASE("the conformance suite's timestamp check itself", "[jobs]") {
    using job_store_conformance::parse_utc;
    CHECK(parse_utc("1970-01-01T00:00:00Z") == 0);
    CHECK(parse_utc("2026-11-28T23:07:16.123Z") == 1795907236);
    CHECK(parse_utc(utc_now_iso8601()) > 0);
    for (const char* bad : {"", "2026-11-28 23:07:16Z", "2026-11-28T23:07:16", "2026-11-28T23:07:16.Z",
                            "2026-11-28T23:07:16+01:00", "2026-11-28T23:07:16.123Zx", "26-11-28T23:07:16Z"})
        CHECK(parse_utc(bad) == -1);
}

TEST_CASE("worker: an attempt past its run-time limit is cancelled and fails as timed out; a hung one stops renewing",
          "[jobs][memory][worker]") {
    using namespace std::chrono_literals;
    memory_job_store store;
    new_job job;
    job.project_id = "p";
    job.version_id = "v1";
    job.max_attempts = 1;
    job.timeout = 300ms;  // the job's own limit
    const std::string id = store.enqueue(job).id;
    worker_options options;
    options.name = "timeout-test";
    options.lease = 1500ms;
    options.heartbeat = 100ms;
    options.progress_interval = 50ms;
    std::map<std::string, job_handler> handlers{{tile_generation_job, [](job_context& ctx) -> nlohmann::json {
                                                     while (!ctx.cancel().is_cancelled()) std::this_thread::sleep_for(10ms);
                                                     throw tilekit::error(tilekit::errc::cancelled, "stopped");
                                                 }}};
    const auto start = std::chrono::steady_clock::now();
    const auto done = run_next_job(store, handlers, options);
    REQUIRE(done);
    CHECK(done->id == id);
    CHECK(done->status == job_status::failed);
    CHECK(done->error.find("timed out") != std::string::npos);
    CHECK(done->error.find("300 ms") != std::string::npos);
    CHECK(std::chrono::steady_clock::now() - start < 1500ms);

    // A handler that ignores the cancel, limited by the worker's job_timeout: the keeper stops
    // renewing, so the lease ends and the job is rescued (failed: its only attempt is used).
    job.version_id = "v2";
    job.timeout = 0ms;
    const std::string hung = store.enqueue(job).id;
    options.job_timeout = 200ms;
    std::atomic<bool> let_go{false};
    handlers[tile_generation_job] = [&](job_context&) -> nlohmann::json {
        while (!let_go.load()) std::this_thread::sleep_for(10ms);
        return nlohmann::json::object();
    };
    std::thread worker([&] { run_next_job(store, handlers, options); });
    const bool rescued = job_store_conformance::eventually(
        [&] {
            store.rescue_expired();
            return store.get(hung)->status == job_status::failed;
        },
        6000ms);
    let_go = true;
    worker.join();
    CHECK(rescued);
    CHECK(store.get(hung)->status == job_status::failed);  // the late completion was fenced off
}

TEST_CASE("job_wakeup: notify() wakes one waiting thread, notify_all() every one", "[jobs][memory][worker]") {
    using namespace std::chrono_literals;
    job_wakeup wakeup;
    std::atomic<int> woken{0};
    std::vector<std::thread> waiters;
    const std::uint64_t ticket = wakeup.ticket();
    for (int i = 0; i < 4; ++i)
        waiters.emplace_back([&] {
            wakeup.wait(ticket, 20s);
            ++woken;
        });
    std::this_thread::sleep_for(200ms);  // all four are waiting
    wakeup.notify();
    CHECK(job_store_conformance::eventually([&] { return woken.load() >= 1; }, 5000ms));
    std::this_thread::sleep_for(300ms);
    CHECK(woken.load() == 1);  // one job, one claimer: the other three sleep on
    wakeup.notify_all();
    for (std::thread& t : waiters) t.join();
    CHECK(woken.load() == 4);
    // A notify between the ticket and the wait is never missed.
    const std::uint64_t late = wakeup.ticket();
    wakeup.notify();
    const auto start = std::chrono::steady_clock::now();
    wakeup.wait(late, 20s);
    CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("worker_pool: a burst of jobs brings up every idle thread although each wake-up reaches one",
          "[jobs][memory][worker]") {
    using namespace std::chrono_literals;
    memory_job_store store;
    worker_options options;
    options.name = "burst";
    options.threads = 6;
    options.poll_interval = 30s;  // no polling to fall back on: only wake-ups can start them
    worker_pool pool(store, options);
    std::mutex mutex;
    std::condition_variable all_in;
    int running = 0;
    bool released = false;
    pool.handle(tile_generation_job, [&](job_context&) -> nlohmann::json {
        std::unique_lock<std::mutex> lock(mutex);
        ++running;
        all_in.notify_all();
        // Each job holds its thread until all six run at once (or the test gives up).
        all_in.wait_for(lock, 10s, [&] { return running == 6 || released; });
        return nlohmann::json{{"peak", running}};
    });
    pool.start();
    // Six jobs due in 600 ms: their enqueue wake-ups find nothing runnable yet. When they fall
    // due, one wake-up stands for all of them (as one NOTIFY does for a burst, or a coalesced
    // batch): only the pass-on from each thread that claimed can start the other five.
    for (int i = 0; i < 6; ++i) {
        new_job job;
        job.project_id = "p";
        job.version_id = "v" + std::to_string(i);
        job.delay = 600ms;
        store.enqueue(job);
    }
    std::this_thread::sleep_for(900ms);  // due; every thread idle, waiting out its 30 s poll
    CHECK(pool.snapshot().claimed == 0);
    store.wakeup().notify();
    bool together = false;
    {
        std::unique_lock<std::mutex> lock(mutex);
        together = all_in.wait_for(lock, 8s, [&] { return running == 6; });
        released = true;
    }
    all_in.notify_all();
    CHECK(together);
    CHECK(job_store_conformance::eventually([&] { return pool.snapshot().completed == 6; }, 10000ms));
    pool.stop();
}
