#pragma once
// The behaviour every job_store must show, as one Catch2 suite that each store's test file runs:
//
//   TEST_CASE("memory_job_store conforms") {
//       check_job_store_conformance([] { return std::make_unique<tilekit::jobs::memory_job_store>(); });
//   }
//
// make_store() must return a fresh, empty store each time it is called, as anything that
// dereferences to a job_store& (std::unique_ptr<job_store>, a shared_ptr, ...). Catch2 re-runs the
// test case once per SECTION, so every section gets its own store. Worker threads never call
// Catch2 assertions (they are not thread-safe): they count, and the main thread checks.

#include <tilekit/jobs.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace job_store_conformance {

using namespace tilekit::jobs;

// How hard the concurrency section pushes; a slow durable store may pass smaller numbers.
struct options {
    int threads = 8;
    int jobs = 16;
    int reports_per_thread = 12;
};

inline nlohmann::json as_json(const job_record& r) { return nlohmann::json(r); }

inline new_job job_for(const std::string& project, const std::string& version, const std::string& type = tile_generation_job) {
    new_job j;
    j.job_type = type;
    j.project_id = project;
    j.version_id = version;
    j.created_by = "user-" + project;
    return j;
}

// "2026-11-28T23:07:16.123Z" -> seconds since the epoch, or -1 if it is not ISO 8601 UTC
// (YYYY-MM-DDTHH:MM:SS, optional fraction, "Z").
inline long long parse_utc(const std::string& text) {
    const auto digits = [&](std::size_t from, std::size_t count) {
        for (std::size_t i = from; i < from + count; ++i)
            if (i >= text.size() || text[i] < '0' || text[i] > '9') return false;
        return true;
    };
    if (text.size() < 20 || !digits(0, 4) || text[4] != '-' || !digits(5, 2) || text[7] != '-' || !digits(8, 2) ||
        text[10] != 'T' || !digits(11, 2) || text[13] != ':' || !digits(14, 2) || text[16] != ':' || !digits(17, 2))
        return -1;
    std::size_t end = 19;
    if (text[end] == '.') {
        ++end;
        const std::size_t fraction = end;
        while (end < text.size() && text[end] >= '0' && text[end] <= '9') ++end;
        if (end == fraction) return -1;
    }
    if (end + 1 != text.size() || text[end] != 'Z') return -1;
    std::tm tm{};
    if (std::sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                    &tm.tm_sec) != 6)
        return -1;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return static_cast<long long>(timegm(&tm));
}

// Within a few minutes of now: catches local time written with a "Z", and garbage.
inline bool is_recent_utc(const std::string& text) {
    const long long t = parse_utc(text);
    const long long now = static_cast<long long>(std::time(nullptr));
    return t >= 0 && t > now - 300 && t < now + 300;
}

inline std::vector<std::string> ids_of(const std::vector<job_record>& records) {
    std::vector<std::string> ids;
    for (const auto& r : records) ids.push_back(r.id);
    return ids;
}

inline int rank(job_status s) { return s == job_status::queued ? 0 : s == job_status::running ? 1 : 2; }

// Every transition must throw job_state_error and leave the record as it was.
template <class Store>
void check_all_transitions_refused(Store& store, const std::string& id) {
    const nlohmann::json before = as_json(*store.get(id));
    try {
        store.start(id, "again");
        FAIL("an illegal transition was accepted");
    } catch (const tilekit::error& e) {
        CHECK(e.code() == tilekit::errc::illegal_transition);  // a code of its own, not invalid_argument
    }
    CHECK_THROWS_AS(store.report_progress(id, 100, "more"), job_state_error);
    CHECK_THROWS_AS(store.complete(id, nlohmann::json{{"x", 1}}, "done"), job_state_error);
    CHECK_THROWS_AS(store.fail(id, "late failure"), job_state_error);
    CHECK_THROWS_AS(store.cancel(id, "late cancel"), job_state_error);
    CHECK(as_json(*store.get(id)) == before);
}

}  // namespace job_store_conformance

template <class MakeStore>
void check_job_store_conformance(MakeStore make_store, job_store_conformance::options opts = {}) {
    using namespace tilekit::jobs;
    using namespace job_store_conformance;

    auto owner = make_store();
    job_store& store = *owner;

    SECTION("create gives a queued job with a UUID v4 id and a UTC timestamp") {
        const job_record r = store.create(job_for("p1", "v1"));
        CHECK(r.status == job_status::queued);
        CHECK(r.progress == 0);
        CHECK(r.job_type == tile_generation_job);
        CHECK(r.project_id == "p1");
        CHECK(r.version_id == "v1");
        CHECK(r.created_by == "user-p1");
        CHECK(r.message == "Queued");
        CHECK(r.result.is_null());
        CHECK(r.error.empty());
        CHECK_FALSE(r.started_at);
        CHECK_FALSE(r.completed_at);
        INFO("id " << r.id << ", created_at " << r.created_at);
        REQUIRE(is_uuid(r.id));
        CHECK(r.id[14] == '4');                                         // version nibble
        CHECK(std::string("89ab").find(r.id[19]) != std::string::npos);  // RFC 4122 variant
        CHECK(std::all_of(r.id.begin(), r.id.end(), [](char c) { return c < 'A' || c > 'Z'; }));
        CHECK(is_recent_utc(r.created_at));

        const auto stored = store.get(r.id);
        REQUIRE(stored);
        CHECK(as_json(*stored) == as_json(r));
    }

    SECTION("ids are unique") {
        std::set<std::string> ids;
        for (int i = 0; i < 200; ++i) ids.insert(store.create(job_for("p", "v" + std::to_string(i))).id);
        CHECK(ids.size() == 200);
    }

    SECTION("a record survives a JSON round trip") {
        const std::string queued_id = store.create(job_for("p1", "v1")).id;
        const std::string id = store.create(job_for("p1", "v2")).id;
        store.start(id, "Downloading source image...");
        store.report_progress(id, 42, "Generating tiles... 42%");
        const nlohmann::json result{{"tiles_path", "mp/x/uploads/tiles/"}, {"width", 1000}, {"levels", 11}};
        store.complete(id, result, "Done");

        for (const std::string& which : {queued_id, id}) {
            const job_record r = *store.get(which);
            const nlohmann::json j = r;
            CHECK(j.at("id") == r.id);
            CHECK(j.at("status") == to_string(r.status));
            CHECK(j.at("started_at").is_null() == !r.started_at);
            const job_record back = nlohmann::json::parse(j.dump()).get<job_record>();
            CHECK(back.id == r.id);
            CHECK(back.job_type == r.job_type);
            CHECK(back.status == r.status);
            CHECK(back.progress == r.progress);
            CHECK(back.message == r.message);
            CHECK(back.result == r.result);
            CHECK(back.error == r.error);
            CHECK(back.project_id == r.project_id);
            CHECK(back.version_id == r.version_id);
            CHECK(back.created_by == r.created_by);
            CHECK(back.created_at == r.created_at);
            CHECK(back.started_at == r.started_at);
            CHECK(back.completed_at == r.completed_at);
        }
        CHECK(store.get(id)->result == result);
        // A failed record carries its error through JSON too.
        const std::string failed = store.create(job_for("p1", "v3")).id;
        store.fail(failed, "source image not found");
        const job_record f = nlohmann::json(*store.get(failed)).get<job_record>();
        CHECK(f.status == job_status::failed);
        CHECK(f.error == "source image not found");
    }

    SECTION("happy path: queued -> running -> completed, with timestamps") {
        const std::string id = store.create(job_for("p1", "v1")).id;

        const job_record running = store.start(id, "Downloading source image...");
        CHECK(running.status == job_status::running);
        CHECK(running.message == "Downloading source image...");
        REQUIRE(running.started_at);
        CHECK(is_recent_utc(*running.started_at));
        CHECK_FALSE(running.completed_at);
        CHECK(as_json(*store.get(id)) == as_json(running));

        CHECK(store.report_progress(id, 10, "Generating tiles... 10%").progress == 10);
        const job_record mid = store.report_progress(id, 42, "Generating tiles... 42%");
        CHECK(mid.progress == 42);
        CHECK(mid.message == "Generating tiles... 42%");
        CHECK(mid.status == job_status::running);
        CHECK(as_json(*store.get(id)) == as_json(mid));

        const nlohmann::json result{{"tiles_path", "mp/x/uploads/tiles/"}, {"width", 1000}, {"height", 800},
                                    {"levels", 11}, {"tile_count", 42}, {"tile_size", 254}};
        const job_record done = store.complete(id, result, "Completed");
        CHECK(done.status == job_status::completed);
        CHECK(done.progress == 100);
        CHECK(done.message == "Completed");
        CHECK(done.result == result);
        CHECK(done.error.empty());
        CHECK(done.started_at == running.started_at);
        REQUIRE(done.completed_at);
        CHECK(is_recent_utc(*done.completed_at));
        // Fixed-width UTC timestamps order as text.
        CHECK(done.created_at <= *done.started_at);
        CHECK(*done.started_at <= *done.completed_at);
        CHECK(as_json(*store.get(id)) == as_json(done));
    }

    SECTION("progress never goes down, stays in 0..100 and is only for running jobs") {
        const std::string id = store.create(job_for("p1", "v1")).id;
        CHECK_THROWS_AS(store.report_progress(id, 5, "too early"), job_state_error);
        CHECK(store.get(id)->progress == 0);
        CHECK(store.get(id)->status == job_status::queued);

        store.start(id, "Starting");
        store.report_progress(id, 40, "forty");
        const job_record lower = store.report_progress(id, 30, "thirty");  // ignored, not an error
        CHECK(lower.progress == 40);
        CHECK(lower.message == "forty");
        CHECK(store.get(id)->progress == 40);
        CHECK(store.get(id)->message == "forty");

        const job_record same = store.report_progress(id, 40, "still forty");  // same value: new message
        CHECK(same.progress == 40);
        CHECK(same.message == "still forty");

        const nlohmann::json before = as_json(*store.get(id));
        CHECK_THROWS_AS(store.report_progress(id, 101, "too much"), job_state_error);
        CHECK_THROWS_AS(store.report_progress(id, -1, "negative"), job_state_error);
        CHECK_THROWS_AS(store.report_progress(id, 1000, "way too much"), job_state_error);
        CHECK(as_json(*store.get(id)) == before);

        CHECK(store.report_progress(id, 100, "all").progress == 100);
        CHECK(store.get(id)->status == job_status::running);  // 100% is not completion
    }

    SECTION("illegal transitions from queued and running") {
        const std::string id = store.create(job_for("p1", "v1")).id;
        const nlohmann::json queued = as_json(*store.get(id));
        CHECK_THROWS_AS(store.complete(id, nlohmann::json{{"x", 1}}, "done"), job_state_error);
        CHECK(as_json(*store.get(id)) == queued);

        store.start(id, "Starting");
        const nlohmann::json running = as_json(*store.get(id));
        CHECK_THROWS_AS(store.start(id, "twice"), job_state_error);
        CHECK(as_json(*store.get(id)) == running);
    }

    SECTION("terminal states stay terminal") {
        const std::string completed = store.create(job_for("p1", "v1")).id;
        store.start(completed, "Starting");
        store.report_progress(completed, 50, "half");
        store.complete(completed, nlohmann::json{{"levels", 3}}, "Completed");

        const std::string failed = store.create(job_for("p1", "v2")).id;
        store.start(failed, "Starting");
        store.report_progress(failed, 30, "some");
        store.fail(failed, "upload failed after retries");

        const std::string cancelled = store.create(job_for("p1", "v3")).id;
        store.start(cancelled, "Starting");
        store.cancel(cancelled, "cancelled by user");

        const std::string failed_queued = store.create(job_for("p1", "v4")).id;
        store.fail(failed_queued, "refused");
        const std::string cancelled_queued = store.create(job_for("p1", "v5")).id;
        store.cancel(cancelled_queued, "not needed");

        for (const std::string& id : {completed, failed, cancelled, failed_queued, cancelled_queued}) {
            INFO("job " << id << " is " << to_string(store.get(id)->status));
            check_all_transitions_refused(store, id);
        }
        CHECK(store.get(completed)->status == job_status::completed);
        CHECK(store.get(completed)->result == nlohmann::json{{"levels", 3}});
        CHECK(store.get(failed)->error == "upload failed after retries");
        CHECK(store.get(cancelled)->error == "cancelled by user");
    }

    SECTION("fail and cancel from queued and from running") {
        const std::string fq = store.create(job_for("p1", "v1")).id;
        const job_record f = store.fail(fq, "bad source");
        CHECK(f.status == job_status::failed);
        CHECK(f.error == "bad source");
        CHECK(f.message == "Failed");
        CHECK_FALSE(f.started_at);
        REQUIRE(f.completed_at);
        CHECK(is_recent_utc(*f.completed_at));
        CHECK(as_json(*store.get(fq)) == as_json(f));

        const std::string cq = store.create(job_for("p1", "v2")).id;
        const job_record c = store.cancel(cq, "user cancelled");
        CHECK(c.status == job_status::cancelled);
        CHECK(c.error == "user cancelled");
        CHECK(c.message == "Cancelled");
        CHECK_FALSE(c.started_at);
        REQUIRE(c.completed_at);
        CHECK(as_json(*store.get(cq)) == as_json(c));

        const std::string fr = store.create(job_for("p1", "v3")).id;
        store.start(fr, "Starting");
        store.report_progress(fr, 63, "Generating tiles... 63%");
        const job_record f2 = store.fail(fr, "storage error");
        CHECK(f2.status == job_status::failed);
        CHECK(f2.progress == 63);  // where it stopped stays visible
        CHECK(f2.started_at);
        CHECK(f2.completed_at);
        CHECK(f2.result.is_null());

        const std::string cr = store.create(job_for("p1", "v4")).id;
        store.start(cr, "Starting");
        const job_record c2 = store.cancel(cr, "stop");
        CHECK(c2.status == job_status::cancelled);
        CHECK(c2.started_at);
        CHECK(c2.completed_at);
    }

    SECTION("unknown ids") {
        store.create(job_for("p1", "v1"));
        for (const std::string& id : {new_job_id(), std::string("not-a-uuid"), std::string()}) {
            INFO("id '" << id << "'");
            CHECK_FALSE(store.get(id));
            CHECK_THROWS_AS(store.start(id, "x"), job_not_found);
            CHECK_THROWS_AS(store.report_progress(id, 1, "x"), job_not_found);
            CHECK_THROWS_AS(store.complete(id, nlohmann::json(), "x"), job_not_found);
            CHECK_THROWS_AS(store.fail(id, "x"), job_not_found);
            CHECK_THROWS_AS(store.cancel(id, "x"), job_not_found);
            try {
                store.start(id, "x");
            } catch (const tilekit::error& e) {
                CHECK(e.code() == tilekit::errc::not_found);
            }
        }
        CHECK(store.list_by_project("p1").size() == 1);
    }

    SECTION("list_by_project: newest first, only that project, current state") {
        CHECK(store.list_by_project("p1").empty());
        std::vector<std::string> p1;
        // Back to back (timestamps tie, so insertion order decides) and then spaced out.
        for (int i = 0; i < 4; ++i) p1.push_back(store.create(job_for("p1", "a" + std::to_string(i))).id);
        const std::string other = store.create(job_for("p2", "a0")).id;
        for (int i = 0; i < 3; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(3));
            p1.push_back(store.create(job_for("p1", "b" + std::to_string(i))).id);
        }
        store.start(p1[2], "Starting");
        store.fail(p1[5], "broken");

        const auto listed = store.list_by_project("p1");
        const std::vector<std::string> newest_first(p1.rbegin(), p1.rend());
        CHECK(ids_of(listed) == newest_first);
        for (const auto& r : listed) CHECK(as_json(r) == as_json(*store.get(r.id)));
        CHECK(ids_of(store.list_by_project("p2")) == std::vector<std::string>{other});
        CHECK(store.list_by_project("p3").empty());
    }

    SECTION("list_by_status: oldest first, only that status") {
        CHECK(store.list_by_status(job_status::queued).empty());
        std::vector<std::string> ids;
        for (int i = 0; i < 6; ++i) {
            if (i == 3) std::this_thread::sleep_for(std::chrono::milliseconds(3));
            ids.push_back(store.create(job_for(i % 2 ? "p1" : "p2", "v" + std::to_string(i))).id);
        }
        CHECK(ids_of(store.list_by_status(job_status::queued)) == ids);

        store.start(ids[4], "Starting");
        store.start(ids[1], "Starting");
        store.start(ids[3], "Starting");
        store.complete(ids[3], nlohmann::json::object(), "Completed");
        store.cancel(ids[0], "stop");

        CHECK(ids_of(store.list_by_status(job_status::queued)) == std::vector<std::string>{ids[2], ids[5]});
        CHECK(ids_of(store.list_by_status(job_status::running)) == std::vector<std::string>{ids[1], ids[4]});
        CHECK(ids_of(store.list_by_status(job_status::completed)) == std::vector<std::string>{ids[3]});
        CHECK(ids_of(store.list_by_status(job_status::cancelled)) == std::vector<std::string>{ids[0]});
        CHECK(store.list_by_status(job_status::failed).empty());
        for (const auto& r : store.list_by_status(job_status::running)) CHECK(r.status == job_status::running);
    }

    SECTION("at most one queued or running job of a type per project and version") {
        const std::string first = store.create(job_for("proj-7", "ver-3")).id;
        const auto refused = [&] {
            try {
                store.create(job_for("proj-7", "ver-3"));
            } catch (const job_state_error& e) {
                const std::string what = e.what();
                INFO(what);
                CHECK(e.code() == tilekit::errc::duplicate_job);
                CHECK(what.find("proj-7") != std::string::npos);
                CHECK(what.find("ver-3") != std::string::npos);
                return true;
            }
            return false;
        };
        CHECK(refused());
        store.start(first, "Starting");
        CHECK(refused());
        CHECK(store.list_by_project("proj-7").size() == 1);  // nothing half-created

        // Other versions, other projects and other job types are independent.
        CHECK_NOTHROW(store.create(job_for("proj-7", "ver-4")));
        CHECK_NOTHROW(store.create(job_for("proj-8", "ver-3")));
        CHECK_NOTHROW(store.create(job_for("proj-7", "ver-3", "thumbnail")));

        // Once the active job ends, in any of the terminal states, a new one is allowed.
        store.complete(first, nlohmann::json::object(), "Completed");
        const std::string second = store.create(job_for("proj-7", "ver-3")).id;
        CHECK(refused());
        store.fail(second, "broken");
        const std::string third = store.create(job_for("proj-7", "ver-3")).id;
        CHECK(refused());
        store.cancel(third, "stop");
        const std::string fourth = store.create(job_for("proj-7", "ver-3")).id;
        CHECK(store.get(fourth)->status == job_status::queued);
        CHECK(store.get(first)->status == job_status::completed);  // history is kept
        CHECK(store.list_by_project("proj-7").size() == 6);
    }

    SECTION("concurrent creates for one version: exactly one wins") {
        std::atomic<int> created{0}, refused{0}, other{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < opts.threads; ++t)
            threads.emplace_back([&] {
                try {
                    store.create(job_for("race", "v1"));
                    ++created;
                } catch (const job_state_error&) {
                    ++refused;
                } catch (...) {
                    ++other;
                }
            });
        for (auto& t : threads) t.join();
        CHECK(created == 1);
        CHECK(refused == opts.threads - 1);
        CHECK(other == 0);
        CHECK(store.list_by_project("race").size() == 1);
    }

    SECTION("many threads on many jobs: no lost updates, progress monotonic to a reader") {
        const int job_count = opts.jobs, thread_count = opts.threads, reports = opts.reports_per_thread;
        std::vector<std::string> ids;
        {
            // Jobs are created from several threads at once too.
            std::vector<std::vector<std::string>> made(static_cast<std::size_t>(thread_count));
            std::atomic<int> create_errors{0};
            std::vector<std::thread> creators;
            for (int t = 0; t < thread_count; ++t)
                creators.emplace_back([&, t] {
                    for (int j = t; j < job_count; j += thread_count) {
                        try {
                            made[static_cast<std::size_t>(t)].push_back(
                                store.create(job_for("load", "v" + std::to_string(j))).id);
                        } catch (...) {
                            ++create_errors;
                        }
                    }
                });
            for (auto& t : creators) t.join();
            REQUIRE(create_errors == 0);
            for (const auto& m : made) ids.insert(ids.end(), m.begin(), m.end());
            REQUIRE(static_cast<int>(ids.size()) == job_count);
            CHECK(static_cast<int>(std::set<std::string>(ids.begin(), ids.end()).size()) == job_count);
        }
        for (const auto& id : ids) store.start(id, "Starting");

        // Job j's highest report is peak(j); each thread reports its own rising sequence, so the
        // store sees values out of order and must keep the highest (with its message).
        const auto peak = [](int j) { return 50 + j % 40; };
        const auto message_for = [](int value) { return "at " + std::to_string(value); };

        std::atomic<bool> done{false}, reader_started{false};
        std::atomic<int> reader_regressions{0}, reader_torn{0}, reader_reads{0}, worker_errors{0};
        std::thread reader([&] {
            std::vector<int> last_progress(ids.size(), 0), last_rank(ids.size(), 0);
            while (!done.load()) {
                for (std::size_t i = 0; i < ids.size(); ++i) {
                    const auto r = store.get(ids[i]);
                    if (!r) {
                        ++reader_regressions;
                        continue;
                    }
                    if (r->progress < last_progress[i] || rank(r->status) < last_rank[i]) ++reader_regressions;
                    // Progress and its message change together, never one without the other.
                    if (r->status == job_status::running && r->progress > 0 &&
                        r->message != (r->progress >= 95 ? std::string("late") : message_for(r->progress)))
                        ++reader_torn;
                    last_progress[i] = r->progress;
                    last_rank[i] = rank(r->status);
                    ++reader_reads;
                }
                (void)store.list_by_status(job_status::running);
                (void)store.list_by_project("load");
                reader_started = true;
            }
        });
        // Writers wait for the reader's first pass, or a fast store could finish before it runs.
        while (!reader_started.load()) std::this_thread::yield();

        std::vector<std::thread> workers;
        for (int t = 0; t < thread_count; ++t)
            workers.emplace_back([&, t] {
                for (int k = 1; k <= reports; ++k)
                    for (int j = 0; j < job_count; ++j) {
                        // Thread t ends exactly at peak(j) only when t == j % thread_count.
                        const int top = t == j % thread_count ? peak(j) : peak(j) - 1 - t % 5;
                        const int value = top * k / reports;
                        try {
                            store.report_progress(ids[static_cast<std::size_t>(j)], value, message_for(value));
                        } catch (...) {
                            ++worker_errors;
                        }
                    }
            });
        for (auto& t : workers) t.join();
        CHECK(worker_errors == 0);
        for (int j = 0; j < job_count; ++j) {
            const job_record r = *store.get(ids[static_cast<std::size_t>(j)]);
            INFO("job " << j);
            CHECK(r.status == job_status::running);
            CHECK(r.progress == peak(j));
            CHECK(r.message == message_for(peak(j)));
        }

        // Now race completion against late progress and a second completer: exactly one complete
        // per job wins, late progress is refused with job_state_error, and nothing else goes wrong.
        std::atomic<int> completed{0}, refused_complete{0}, refused_progress{0}, unexpected{0};
        std::vector<std::thread> finishers;
        for (int t = 0; t < thread_count; ++t)
            finishers.emplace_back([&, t] {
                for (int j = 0; j < job_count; ++j) {
                    const std::string& id = ids[static_cast<std::size_t>(j)];
                    try {
                        if (t < 2) {
                            store.complete(id, nlohmann::json{{"job", j}}, "Completed");
                            ++completed;
                        } else {
                            store.report_progress(id, 95 + t % 5, "late");
                        }
                    } catch (const job_state_error&) {
                        (t < 2 ? refused_complete : refused_progress)++;
                    } catch (...) {
                        ++unexpected;
                    }
                }
            });
        for (auto& t : finishers) t.join();
        done = true;
        reader.join();

        CHECK(unexpected == 0);
        CHECK(completed == job_count);
        CHECK(refused_complete == job_count);
        CHECK(reader_regressions == 0);
        CHECK(reader_torn == 0);
        CHECK(reader_reads > 0);
        for (int j = 0; j < job_count; ++j) {
            const job_record r = *store.get(ids[static_cast<std::size_t>(j)]);
            INFO("job " << j);
            CHECK(r.status == job_status::completed);
            CHECK(r.progress == 100);
            CHECK(r.result == nlohmann::json{{"job", j}});
            CHECK(r.completed_at);
        }
        CHECK(static_cast<int>(store.list_by_status(job_status::completed).size()) == job_count);
        CHECK(store.list_by_status(job_status::running).empty());
        (void)refused_progress;  // how many late reports lost the race varies from run to run
    }
}
