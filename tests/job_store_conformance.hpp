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
//
// Times: leases and backoffs here are a few hundred milliseconds, and the checks allow the
// store's clock (a database server's) to differ from this process's by up to `clock_slack`.

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
    std::chrono::milliseconds clock_slack{1500};
};

const std::vector<std::string> tile_jobs{tile_generation_job};
constexpr std::chrono::milliseconds long_lease{60000};

// "2026-11-28T23:07:16.123Z" -> milliseconds since the epoch, or -1.
inline long long parse_utc_millis(const std::string& text);

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

inline long long parse_utc_millis(const std::string& text) {
    const long long seconds = parse_utc(text);
    if (seconds < 0) return -1;
    long long millis = 0;
    if (text.size() == 24 && text[19] == '.') millis = std::stoll(text.substr(20, 3));
    return seconds * 1000 + millis;
}

inline long long now_millis() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

inline std::vector<std::string> ids_of(const std::vector<job_record>& records) {
    std::vector<std::string> ids;
    for (const auto& r : records) ids.push_back(r.id);
    return ids;
}

inline int rank(job_status s) { return s == job_status::queued ? 0 : s == job_status::running ? 1 : 2; }

// Every transition must throw job_state_error and leave the record as it was.
// Claims the one runnable tile job, or fails the test.
template <class Store>
claimed_job claim_one(Store& store, const std::string& worker = "worker-a", std::chrono::milliseconds lease = long_lease) {
    auto claimed = store.claim(worker, tile_jobs, lease);
    REQUIRE(claimed);
    return std::move(*claimed);
}

// Claims the one tile job that becomes runnable within a few seconds, or fails the test.
template <class Store>
claimed_job claim_soon(Store& store, const std::string& worker = "worker-a", std::chrono::milliseconds lease = long_lease) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
        auto claimed = store.claim(worker, tile_jobs, lease);
        if (claimed) return std::move(*claimed);
        REQUIRE(std::chrono::steady_clock::now() < end);
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

template <class Store>
std::string enqueue_id(Store& store, const std::string& project, const std::string& version) {
    return store.enqueue(job_for(project, version)).id;
}

// Every fenced write with `lease` must throw `Expected` and change nothing.
template <class Expected, class Store>
void check_fenced_off(Store& store, job_lease lease) {
    const nlohmann::json before = as_json(*store.get(lease.job_id));
    CHECK_THROWS_AS(store.renew(lease), Expected);
    CHECK_THROWS_AS(store.report_progress(lease, 99, "late"), Expected);
    CHECK_THROWS_AS(store.complete(lease, nlohmann::json{{"x", 1}}, "late"), Expected);
    CHECK_THROWS_AS(store.fail(lease, "late failure", failure_kind::retryable), Expected);
    CHECK_THROWS_AS(store.fail(lease, "late failure", failure_kind::permanent), Expected);
    CHECK_THROWS_AS(store.release(lease, "late"), Expected);
    CHECK(as_json(*store.get(lease.job_id)) == before);
}

// Polls until `ready` or `limit`; true when ready.
template <class Ready>
bool eventually(Ready&& ready, std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
        if (ready()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return ready();
}

}  // namespace job_store_conformance

template <class MakeStore>
void check_job_store_conformance(MakeStore make_store, job_store_conformance::options opts = {}) {
    using namespace tilekit::jobs;
    using namespace job_store_conformance;
    using std::chrono::milliseconds;

    auto owner = make_store();
    job_store& store = *owner;
    const long long slack = opts.clock_slack.count();

    SECTION("enqueue gives a queued job with a UUID v4 id, its payload and its attempts") {
        new_job job = job_for("p1", "v1");
        job.payload = {{"source_key", "mp/p1/uploads/base.png"}, {"tiling", {{"tile_size", 256}}}};
        job.max_attempts = 3;
        const long long before = now_millis();
        const job_record r = store.enqueue(job);
        CHECK(r.status == job_status::queued);
        CHECK(r.progress == 0);
        CHECK(r.job_type == tile_generation_job);
        CHECK(r.project_id == "p1");
        CHECK(r.version_id == "v1");
        CHECK(r.created_by == "user-p1");
        CHECK(r.message == "Queued");
        CHECK(r.result.is_null());
        CHECK(r.error.empty());
        CHECK(r.payload == job.payload);
        CHECK(r.attempt == 0);
        CHECK(r.max_attempts == 3);
        CHECK_FALSE(r.started_at);
        CHECK_FALSE(r.completed_at);
        CHECK_FALSE(r.worker);
        CHECK_FALSE(r.lease_expires_at);
        INFO("id " << r.id << ", created_at " << r.created_at << ", run_at " << r.run_at);
        REQUIRE(is_uuid(r.id));
        CHECK(r.id[14] == '4');                                         // version nibble
        CHECK(std::string("89ab").find(r.id[19]) != std::string::npos);  // RFC 4122 variant
        CHECK(std::all_of(r.id.begin(), r.id.end(), [](char c) { return c < 'A' || c > 'Z'; }));
        CHECK(is_recent_utc(r.created_at));
        CHECK(std::llabs(parse_utc_millis(r.run_at) - before) <= slack);  // runnable now

        const auto stored = store.get(r.id);
        REQUIRE(stored);
        CHECK(as_json(*stored) == as_json(r));
        CHECK(store.enqueue(job_for("p1", "v2")).max_attempts == default_max_attempts);
    }

    SECTION("enqueue refuses what no worker could run, and stores nothing") {
        new_job no_version = job_for("p1", "");
        new_job no_project = job_for("", "v1");
        new_job no_type = job_for("p1", "v1", "");
        new_job array_payload = job_for("p1", "v1");
        array_payload.payload = nlohmann::json::array({1, 2});
        new_job zero_attempts = job_for("p1", "v1");
        zero_attempts.max_attempts = 0;
        new_job negative_delay = job_for("p1", "v1");
        negative_delay.delay = milliseconds(-5);
        for (const new_job& bad : {no_version, no_project, no_type, array_payload, zero_attempts, negative_delay}) {
            try {
                store.enqueue(bad);
                FAIL("accepted a job it cannot run");
            } catch (const tilekit::error& e) {
                CHECK(e.code() == tilekit::errc::invalid_argument);
            }
        }
        CHECK(store.list_by_project("p1").empty());
        CHECK(store.list_by_status(job_status::queued).empty());
    }

    SECTION("ids are unique") {
        std::set<std::string> ids;
        for (int i = 0; i < 200; ++i) ids.insert(enqueue_id(store, "p", "v" + std::to_string(i)));
        CHECK(ids.size() == 200);
    }

    SECTION("a record survives a JSON round trip") {
        const std::string queued_id = enqueue_id(store, "p1", "v1");
        new_job with_payload = job_for("p1", "v2");
        with_payload.payload = {{"source_key", "a/b.png"}, {"n", 3}, {"nested", {{"ok", true}}}};
        const std::string id = store.enqueue(with_payload).id;
        claimed_job c = claim_one(store);  // the older job, queued_id
        REQUIRE(c.job.id == queued_id);
        claimed_job d = claim_one(store);
        REQUIRE(d.job.id == id);
        store.report_progress(d.lease, 42, "Generating tiles... 42%");
        const std::string running_id = c.job.id;
        const nlohmann::json result{{"tiles_path", "mp/x/uploads/tiles/"}, {"width", 1000}, {"levels", 11}};
        store.complete(d.lease, result, "Done");

        for (const std::string& which : {running_id, id}) {
            const job_record r = *store.get(which);
            const nlohmann::json j = r;
            CHECK(j.at("id") == r.id);
            CHECK(j.at("status") == to_string(r.status));
            CHECK(j.at("started_at").is_null() == !r.started_at);
            CHECK(j.dump().find(c.lease.token) == std::string::npos);  // the fencing token stays secret
            CHECK(j.dump().find(d.lease.token) == std::string::npos);
            const job_record back = nlohmann::json::parse(j.dump()).get<job_record>();
            CHECK(as_json(back) == j);
        }
        CHECK(store.get(id)->result == result);
        CHECK(store.get(id)->payload == with_payload.payload);
        CHECK(store.get(running_id)->worker == std::optional<std::string>("worker-a"));
        const job_record f = nlohmann::json(store.fail(c.lease, "source image not found", failure_kind::permanent)).get<job_record>();
        CHECK(f.status == job_status::failed);
        CHECK(f.error == "source image not found");
    }

    SECTION("claim: queued -> running under a lease, then complete") {
        new_job job = job_for("p1", "v1");
        job.payload = {{"source_key", "k"}};
        const std::string id = store.enqueue(job).id;
        const long long before = now_millis();
        const auto sent = std::chrono::steady_clock::now();
        claimed_job c = claim_one(store, "host-1/worker-7", milliseconds(20000));
        const job_record& running = c.job;
        CHECK(running.id == id);
        CHECK(running.status == job_status::running);
        CHECK(running.attempt == 1);
        CHECK(running.payload == job.payload);
        CHECK(running.worker == std::optional<std::string>("host-1/worker-7"));
        REQUIRE(running.lease_expires_at);
        CHECK(std::llabs(parse_utc_millis(*running.lease_expires_at) - (before + 20000)) <= slack);
        REQUIRE(running.started_at);
        CHECK(is_recent_utc(*running.started_at));
        CHECK_FALSE(running.completed_at);
        CHECK(c.lease.job_id == id);
        CHECK(c.lease.worker_id == "host-1/worker-7");
        CHECK(c.lease.attempt == 1);
        CHECK(c.lease.duration == milliseconds(20000));
        CHECK(c.lease.token.size() >= 16);
        CHECK(c.lease.valid_until >= sent + milliseconds(20000));
        CHECK(c.lease.valid_until <= std::chrono::steady_clock::now() + milliseconds(20000));
        CHECK(as_json(*store.get(id)) == as_json(running));
        CHECK_FALSE(store.claim("worker-b", tile_jobs, long_lease));  // nothing else is runnable

        CHECK(store.report_progress(c.lease, 10, "Generating tiles... 10%").progress == 10);
        const job_record mid = store.report_progress(c.lease, 42, "Generating tiles... 42%");
        CHECK(mid.progress == 42);
        CHECK(mid.message == "Generating tiles... 42%");
        CHECK(mid.status == job_status::running);
        CHECK(as_json(*store.get(id)) == as_json(mid));

        const nlohmann::json result{{"tiles_path", "mp/x/uploads/tiles/"}, {"width", 1000}, {"height", 800},
                                    {"levels", 11}, {"tile_count", 42}, {"tile_size", 254}};
        const job_record done = store.complete(c.lease, result, "Completed");
        CHECK(done.status == job_status::completed);
        CHECK(done.progress == 100);
        CHECK(done.message == "Completed");
        CHECK(done.result == result);
        CHECK(done.error.empty());
        CHECK(done.attempt == 1);
        CHECK(done.started_at == running.started_at);
        CHECK_FALSE(done.worker);
        CHECK_FALSE(done.lease_expires_at);
        REQUIRE(done.completed_at);
        CHECK(is_recent_utc(*done.completed_at));
        CHECK(done.created_at <= *done.started_at);  // fixed-width UTC timestamps order as text
        CHECK(*done.started_at <= *done.completed_at);
        CHECK(as_json(*store.get(id)) == as_json(done));
        check_fenced_off<lease_lost>(store, c.lease);  // a completed job takes no more writes
    }

    SECTION("complete_and_claim: the completion, then the next runnable job under a fresh lease") {
        const std::string first = store.enqueue(job_for("p1", "v1")).id;
        const std::string second = store.enqueue(job_for("p1", "v2")).id;
        store.enqueue(job_for("p1", "v3", "other_type"));
        claimed_job c = claim_one(store, "worker-a");
        REQUIRE(c.job.id == first);
        const nlohmann::json result{{"levels", 3}};
        completion_and_next step = store.complete_and_claim(c.lease, result, "Completed", "worker-a", tile_jobs, milliseconds(20000));
        CHECK(step.completed.id == first);
        CHECK(step.completed.status == job_status::completed);
        CHECK(step.completed.result == result);
        CHECK(as_json(*store.get(first)) == as_json(step.completed));
        REQUIRE(step.next);
        CHECK(step.next->job.id == second);
        CHECK(step.next->job.status == job_status::running);
        CHECK(step.next->job.attempt == 1);
        CHECK(step.next->job.worker == std::optional<std::string>("worker-a"));
        CHECK(step.next->lease.job_id == second);
        CHECK(step.next->lease.attempt == 1);
        CHECK(step.next->lease.duration == milliseconds(20000));
        CHECK(step.next->lease.token.size() >= 16);
        CHECK(step.next->lease.token != c.lease.token);
        CHECK(as_json(*store.get(second)) == as_json(step.next->job));
        check_fenced_off<lease_lost>(store, c.lease);
        // Nothing more of this type is runnable: the completion alone.
        completion_and_next last = store.complete_and_claim(step.next->lease, result, "Completed", "worker-a", tile_jobs, long_lease);
        CHECK(last.completed.status == job_status::completed);
        CHECK_FALSE(last.next);
        // A completion that is fenced off claims nothing.
        const std::string third = store.enqueue(job_for("p1", "v4")).id;
        claimed_job d = claim_one(store, "worker-b");
        REQUIRE(d.job.id == third);
        const std::string fourth = store.enqueue(job_for("p1", "v5")).id;
        store.cancel(third, "stop");
        CHECK_THROWS_AS(store.complete_and_claim(d.lease, result, "Completed", "worker-b", tile_jobs, long_lease), job_cancelled);
        CHECK(store.get(fourth)->status == job_status::queued);
        CHECK(store.get(third)->status == job_status::cancelled);
    }

    SECTION("claim order: earliest run_at, then oldest; only the given types; never a job twice") {
        CHECK_FALSE(store.claim("w", tile_jobs, long_lease));
        std::vector<std::string> ids;
        for (int i = 0; i < 4; ++i) ids.push_back(enqueue_id(store, "p" + std::to_string(i), "v"));
        const std::string thumbnail = store.enqueue(job_for("p0", "v", "thumbnail")).id;
        CHECK_FALSE(store.claim("w", {"nothing-of-this-type"}, long_lease));
        CHECK_FALSE(store.claim("w", {}, long_lease));
        std::vector<std::string> claimed;
        while (auto c = store.claim("w", tile_jobs, long_lease)) claimed.push_back(c->job.id);
        CHECK(claimed == ids);
        CHECK(store.get(thumbnail)->status == job_status::queued);
        const auto t = store.claim("w", {"other", "thumbnail"}, long_lease);
        REQUIRE(t);
        CHECK(t->job.id == thumbnail);
        CHECK_THROWS(store.claim("", tile_jobs, long_lease));  // a worker needs an id
        CHECK_THROWS(store.claim("w", tile_jobs, milliseconds(0)));
    }

    SECTION("a delayed job is not claimed before its run_at") {
        new_job later = job_for("p1", "later");
        later.delay = milliseconds(700);
        const long long before = now_millis();
        const job_record r = store.enqueue(later);
        CHECK(std::llabs(parse_utc_millis(r.run_at) - (before + 700)) <= slack);
        const std::string now_id = enqueue_id(store, "p1", "now");
        const auto first = store.claim("w", tile_jobs, long_lease);
        REQUIRE(first);
        CHECK(first->job.id == now_id);
        CHECK_FALSE(store.claim("w", tile_jobs, long_lease));
        CHECK(eventually([&] { return store.claim("w", tile_jobs, long_lease).has_value(); }));
        CHECK(store.get(r.id)->status == job_status::running);
        CHECK(now_millis() >= before + 700 - slack);
    }

    SECTION("progress never goes down, stays in 0..100 and is fenced") {
        const std::string id = enqueue_id(store, "p1", "v1");
        claimed_job c = claim_one(store);
        store.report_progress(c.lease, 40, "forty");
        const job_record lower = store.report_progress(c.lease, 30, "thirty");  // ignored, not an error
        CHECK(lower.progress == 40);
        CHECK(lower.message == "forty");
        CHECK(store.get(id)->progress == 40);
        CHECK(store.get(id)->message == "forty");
        const job_record same = store.report_progress(c.lease, 40, "still forty");  // same value: new message
        CHECK(same.progress == 40);
        CHECK(same.message == "still forty");

        const nlohmann::json before = as_json(*store.get(id));
        CHECK_THROWS_AS(store.report_progress(c.lease, 101, "too much"), job_state_error);
        CHECK_THROWS_AS(store.report_progress(c.lease, -1, "negative"), job_state_error);
        CHECK_THROWS_AS(store.report_progress(c.lease, 1000, "way too much"), job_state_error);
        CHECK(as_json(*store.get(id)) == before);
        CHECK(store.report_progress(c.lease, 100, "all").progress == 100);
        CHECK(store.get(id)->status == job_status::running);  // 100% is not completion
    }

    SECTION("renew and every fenced write extend the lease") {
        const std::string id = enqueue_id(store, "p1", "v1");
        claimed_job c = claim_one(store, "w", milliseconds(3000));
        const std::string first_end = *c.job.lease_expires_at;
        const auto first_valid = c.lease.valid_until;
        std::this_thread::sleep_for(milliseconds(60));
        c.lease.duration = milliseconds(10000);
        const long long before = now_millis();
        const job_record renewed = store.renew(c.lease);
        REQUIRE(renewed.lease_expires_at);
        CHECK(*renewed.lease_expires_at > first_end);
        CHECK(std::llabs(parse_utc_millis(*renewed.lease_expires_at) - (before + 10000)) <= slack);
        CHECK(c.lease.valid_until > first_valid);
        CHECK(renewed.status == job_status::running);
        CHECK(renewed.attempt == 1);
        std::this_thread::sleep_for(milliseconds(60));
        const job_record progressed = store.report_progress(c.lease, 5, "five");
        CHECK(*progressed.lease_expires_at > *renewed.lease_expires_at);
        CHECK(as_json(*store.get(id)) == as_json(progressed));
    }

    SECTION("a lease with the wrong token or job changes nothing") {
        enqueue_id(store, "p1", "v1");
        claimed_job c = claim_one(store);
        job_lease forged = c.lease;
        forged.token = new_job_id();
        check_fenced_off<lease_lost>(store, forged);
        job_lease empty = c.lease;
        empty.token.clear();
        check_fenced_off<lease_lost>(store, empty);
        job_lease unknown = c.lease;
        unknown.job_id = new_job_id();
        CHECK_THROWS_AS(store.renew(unknown), job_not_found);
        CHECK_THROWS_AS(store.complete(unknown, nlohmann::json::object(), "x"), job_not_found);
        try {
            store.renew(forged);
        } catch (const tilekit::error& e) {
            CHECK(e.code() == tilekit::errc::lease_lost);
        }
        CHECK_NOTHROW(store.renew(c.lease));  // the real lease still works
    }

    SECTION("retryable failure: queued again after a growing backoff, keeping the error; then failed") {
        retry_policy policy;
        policy.base = milliseconds(200);
        policy.jitter = false;
        store.set_retry_policy(policy);
        new_job job = job_for("p1", "v1");
        job.max_attempts = 3;
        const std::string id = store.enqueue(job).id;

        std::vector<long long> delays;
        for (int attempt = 1; attempt <= 2; ++attempt) {
            INFO("attempt " << attempt);
            claimed_job c = claim_soon(store);
            CHECK(c.job.attempt == attempt);
            CHECK(c.lease.attempt == attempt);
            CHECK(c.job.progress == 0);  // a new attempt starts its bar again
            store.report_progress(c.lease, 30, "thirty");
            const long long failed_at = now_millis();
            const job_record r = store.fail(c.lease, "storage answered 503 " + std::to_string(attempt), failure_kind::retryable);
            CHECK(r.status == job_status::queued);
            CHECK(r.attempt == attempt);
            CHECK(r.error == "storage answered 503 " + std::to_string(attempt));
            CHECK(r.progress == 0);
            CHECK_FALSE(r.worker);
            CHECK_FALSE(r.lease_expires_at);
            CHECK_FALSE(r.completed_at);
            CHECK(as_json(*store.get(id)) == as_json(r));
            const long long delay = parse_utc_millis(r.run_at) - failed_at;
            delays.push_back(delay);
            CHECK(std::llabs(delay - 200 * (1 << (attempt - 1))) <= slack);
            check_fenced_off<lease_lost>(store, c.lease);
            CHECK_FALSE(store.claim("w", tile_jobs, long_lease));  // not before its run_at (200 ms, 400 ms)
            CHECK(store.list_by_status(job_status::queued).size() == 1);
        }
        CHECK(delays[1] > delays[0]);
        claimed_job last = claim_soon(store);
        CHECK(last.job.attempt == 3);
        const job_record end = store.fail(last.lease, "storage answered 503 3", failure_kind::retryable);
        CHECK(end.status == job_status::failed);  // attempts used up
        CHECK(end.attempt == 3);
        CHECK(end.error == "storage answered 503 3");
        REQUIRE(end.completed_at);
        CHECK_FALSE(store.claim("w", tile_jobs, long_lease));
    }

    SECTION("full jitter: retry delays spread over [0, window]") {
        retry_policy policy;
        policy.base = milliseconds(4000);
        store.set_retry_policy(policy);  // jitter on, the default
        long long lowest = 1 << 30, highest = -(1 << 30);
        for (int i = 0; i < 12; ++i) {
            new_job job = job_for("jitter", "v" + std::to_string(i));
            const std::string id = store.enqueue(job).id;
            claimed_job c = claim_one(store);
            REQUIRE(c.job.id == id);
            const long long failed_at = now_millis();
            const job_record r = store.fail(c.lease, "503", failure_kind::retryable);
            const long long delay = parse_utc_millis(r.run_at) - failed_at;
            CHECK(delay >= -slack);
            CHECK(delay <= 4000 + slack);
            lowest = std::min(lowest, delay);
            highest = std::max(highest, delay);
            store.cancel(id, "measured");  // a short draw must not come due in a later round's claim
        }
        CHECK(highest - lowest > 500);  // 12 uniform draws over 4 s: not all the same
    }

    SECTION("a permanent failure ends the job at once, whatever attempts are left") {
        new_job job = job_for("p1", "v1");
        job.max_attempts = 5;
        const std::string id = store.enqueue(job).id;
        claimed_job c = claim_one(store);
        store.report_progress(c.lease, 63, "Generating tiles... 63%");
        const job_record f = store.fail(c.lease, "corrupt image: premature end of data", failure_kind::permanent);
        CHECK(f.status == job_status::failed);
        CHECK(f.attempt == 1);
        CHECK(f.error == "corrupt image: premature end of data");
        CHECK(f.message == "Failed");
        CHECK(f.progress == 63);  // where it stopped stays visible
        CHECK(f.result.is_null());
        REQUIRE(f.completed_at);
        CHECK(is_recent_utc(*f.completed_at));
        CHECK(as_json(*store.get(id)) == as_json(f));
        check_fenced_off<lease_lost>(store, c.lease);
    }

    SECTION("release hands a job back: runnable now, the attempt does not count") {
        new_job job = job_for("p1", "v1");
        job.max_attempts = 1;
        const std::string id = store.enqueue(job).id;
        claimed_job c = claim_one(store, "worker-a");
        const job_record r = store.release(c.lease, "worker shutting down");
        CHECK(r.status == job_status::queued);
        CHECK(r.attempt == 1);       // numbers are never reused: the next claim is attempt 2
        CHECK(r.max_attempts == 2);  // and the budget grew by the attempt handed back
        CHECK_FALSE(r.worker);
        CHECK(parse_utc_millis(r.run_at) <= now_millis() + slack);
        check_fenced_off<lease_lost>(store, c.lease);
        claimed_job again = claim_one(store, "worker-b");
        CHECK(again.job.id == id);
        CHECK(again.job.attempt == 2);
        CHECK(again.lease.token != c.lease.token);
        CHECK(store.complete(again.lease, nlohmann::json::object(), "Completed").status == job_status::completed);
    }

    SECTION("rescue: an expired lease goes back to the queue; its old worker is fenced off") {
        retry_policy policy;
        policy.base = milliseconds(1);
        policy.jitter = false;
        store.set_retry_policy(policy);
        new_job job = job_for("p1", "v1");
        job.max_attempts = 2;
        const std::string id = store.enqueue(job).id;
        const std::string alive_id = enqueue_id(store, "p1", "alive");
        claimed_job dead = claim_one(store, "worker-dead", milliseconds(300));
        REQUIRE(dead.job.id == id);
        claimed_job alive = claim_one(store, "worker-alive", milliseconds(300));
        CHECK(store.rescue_expired().empty());  // nothing has expired yet
        store.report_progress(dead.lease, 50, "half");

        // worker-alive keeps renewing; worker-dead stops.
        std::vector<job_record> rescued;
        const bool got = eventually([&] {
            store.renew(alive.lease);
            rescued = store.rescue_expired();
            return !rescued.empty();
        }, milliseconds(300 + 3 * slack));
        REQUIRE(got);
        REQUIRE(rescued.size() == 1);
        CHECK(rescued[0].id == id);
        CHECK(rescued[0].status == job_status::queued);
        CHECK(rescued[0].attempt == 1);
        CHECK(rescued[0].progress == 0);
        CHECK(rescued[0].error.find("interrupted") != std::string::npos);
        CHECK(rescued[0].error.find("worker-dead") != std::string::npos);
        CHECK(as_json(*store.get(id)) == as_json(rescued[0]));
        CHECK(store.get(alive_id)->status == job_status::running);
        check_fenced_off<lease_lost>(store, dead.lease);

        const claimed_job second = claim_soon(store, "worker-b", milliseconds(300));
        CHECK(second.job.id == id);
        CHECK(second.job.attempt == 2);
        check_fenced_off<lease_lost>(store, dead.lease);  // still fenced off while worker-b holds it
        try {
            store.complete(dead.lease, nlohmann::json::object(), "late");
        } catch (const lease_lost& e) {
            INFO(e.what());
            CHECK(std::string(e.what()).find("worker-b") != std::string::npos);
        }

        // worker-b dies too: no attempts left, so the job fails as interrupted.
        std::vector<job_record> last;
        REQUIRE(eventually([&] {
            store.renew(alive.lease);
            last = store.rescue_expired();
            return !last.empty();
        }, milliseconds(300 + 3 * slack)));
        REQUIRE(last.size() == 1);
        CHECK(last[0].status == job_status::failed);
        CHECK(last[0].attempt == 2);
        CHECK(last[0].error.find("interrupted") != std::string::npos);
        CHECK(last[0].completed_at);
        CHECK(store.get(alive_id)->status == job_status::running);
        CHECK(store.complete(alive.lease, nlohmann::json::object(), "Completed").status == job_status::completed);
    }

    SECTION("cancel: queued or running jobs end; the running worker learns at its next write") {
        const std::string queued_id = enqueue_id(store, "p1", "v1");
        const job_record cq = store.cancel(queued_id, "user cancelled");
        CHECK(cq.status == job_status::cancelled);
        CHECK(cq.error == "user cancelled");
        CHECK(cq.message == "Cancelled");
        CHECK_FALSE(cq.started_at);
        REQUIRE(cq.completed_at);
        CHECK(as_json(*store.get(queued_id)) == as_json(cq));
        CHECK_FALSE(store.claim("w", tile_jobs, long_lease));

        const std::string running_id = enqueue_id(store, "p1", "v2");
        claimed_job c = claim_one(store);
        store.report_progress(c.lease, 20, "twenty");
        const job_record cr = store.cancel(running_id, "stop");
        CHECK(cr.status == job_status::cancelled);
        CHECK(cr.started_at);
        CHECK(cr.completed_at);
        CHECK_FALSE(cr.worker);
        check_fenced_off<job_cancelled>(store, c.lease);
        try {
            store.renew(c.lease);
        } catch (const tilekit::error& e) {
            CHECK(e.code() == tilekit::errc::cancelled);
            CHECK(std::string(e.what()).find("stop") != std::string::npos);
        }
        CHECK(store.rescue_expired().empty());
    }

    SECTION("terminal states stay terminal") {
        const std::string completed = enqueue_id(store, "p1", "v1");
        claimed_job c1 = claim_one(store);
        store.complete(c1.lease, nlohmann::json{{"levels", 3}}, "Completed");
        const std::string failed = enqueue_id(store, "p1", "v2");
        claimed_job c2 = claim_one(store);
        store.fail(c2.lease, "upload failed after retries", failure_kind::permanent);
        const std::string cancelled = enqueue_id(store, "p1", "v3");
        store.cancel(cancelled, "not needed");
        for (const std::string& id : {completed, failed, cancelled}) {
            INFO("job " << id << " is " << to_string(store.get(id)->status));
            const nlohmann::json before = as_json(*store.get(id));
            try {
                store.cancel(id, "late cancel");
                FAIL("an ended job was cancelled");
            } catch (const tilekit::error& e) {
                CHECK(e.code() == tilekit::errc::illegal_transition);  // a code of its own
            }
            CHECK(as_json(*store.get(id)) == before);
        }
        CHECK(store.rescue_expired().empty());
        CHECK_FALSE(store.claim("w", tile_jobs, long_lease));
        CHECK(store.get(completed)->result == nlohmann::json{{"levels", 3}});
        CHECK(store.get(failed)->error == "upload failed after retries");
        CHECK(store.get(cancelled)->error == "not needed");
    }

    SECTION("unknown ids") {
        enqueue_id(store, "p1", "v1");
        for (const std::string& id : {new_job_id(), std::string("not-a-uuid"), std::string()}) {
            INFO("id '" << id << "'");
            CHECK_FALSE(store.get(id));
            CHECK_THROWS_AS(store.cancel(id, "x"), job_not_found);
            try {
                store.cancel(id, "x");
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
        for (int i = 0; i < 4; ++i) p1.push_back(enqueue_id(store, "p1", "a" + std::to_string(i)));
        const std::string other = enqueue_id(store, "p2", "a0");
        for (int i = 0; i < 3; ++i) {
            std::this_thread::sleep_for(milliseconds(3));
            p1.push_back(enqueue_id(store, "p1", "b" + std::to_string(i)));
        }
        claimed_job c = claim_one(store);  // p1[0]
        store.fail(c.lease, "broken", failure_kind::permanent);
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
            if (i == 3) std::this_thread::sleep_for(milliseconds(3));
            ids.push_back(enqueue_id(store, i % 2 ? "p1" : "p2", "v" + std::to_string(i)));
        }
        CHECK(ids_of(store.list_by_status(job_status::queued)) == ids);
        store.cancel(ids[0], "stop");
        claimed_job c1 = claim_one(store);  // ids[1]
        claimed_job c2 = claim_one(store);  // ids[2]
        claimed_job c3 = claim_one(store);  // ids[3]
        store.complete(c2.lease, nlohmann::json::object(), "Completed");
        CHECK(ids_of(store.list_by_status(job_status::queued)) == std::vector<std::string>{ids[4], ids[5]});
        CHECK(ids_of(store.list_by_status(job_status::running)) == std::vector<std::string>{ids[1], ids[3]});
        CHECK(ids_of(store.list_by_status(job_status::completed)) == std::vector<std::string>{ids[2]});
        CHECK(ids_of(store.list_by_status(job_status::cancelled)) == std::vector<std::string>{ids[0]});
        CHECK(store.list_by_status(job_status::failed).empty());
        (void)c1;
        (void)c3;
    }

    SECTION("at most one active job of a type per project and version, a retry included") {
        retry_policy policy;
        policy.base = milliseconds(60000);
        store.set_retry_policy(policy);
        const std::string first = enqueue_id(store, "proj-7", "ver-3");
        const auto refused = [&] {
            try {
                store.enqueue(job_for("proj-7", "ver-3"));
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
        claimed_job c = claim_one(store);
        CHECK(refused());
        store.fail(c.lease, "503", failure_kind::retryable);  // waiting for a retry: still active
        CHECK(store.get(first)->status == job_status::queued);
        CHECK(refused());
        CHECK(store.list_by_project("proj-7").size() == 1);  // nothing half-created

        // Other versions, other projects and other job types are independent.
        CHECK_NOTHROW(store.enqueue(job_for("proj-7", "ver-4")));
        CHECK_NOTHROW(store.enqueue(job_for("proj-8", "ver-3")));
        CHECK_NOTHROW(store.enqueue(job_for("proj-7", "ver-3", "thumbnail")));

        // Once the active job ends, in any of the terminal states, a new one is allowed.
        store.cancel(first, "stop");
        const std::string second = enqueue_id(store, "proj-7", "ver-3");
        CHECK(refused());
        store.cancel(second, "stop");
        const std::string third = enqueue_id(store, "proj-7", "ver-3");
        CHECK(store.get(third)->status == job_status::queued);
        CHECK(store.get(first)->status == job_status::cancelled);  // history is kept
        CHECK(store.list_by_project("proj-7").size() == 5);
    }

    SECTION("concurrent enqueues for one version: exactly one wins") {
        std::atomic<int> created{0}, refused{0}, other{0};
        std::vector<std::thread> threads;
        for (int t = 0; t < opts.threads; ++t)
            threads.emplace_back([&] {
                try {
                    store.enqueue(job_for("race", "v1"));
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

    SECTION("concurrent claims: every job is claimed by exactly one worker") {
        const int job_count = opts.jobs * 2;
        for (int j = 0; j < job_count; ++j) enqueue_id(store, "claims", "v" + std::to_string(j));
        std::vector<std::vector<claimed_job>> got(static_cast<std::size_t>(opts.threads));
        std::atomic<int> errors{0};
        std::vector<std::thread> workers;
        for (int t = 0; t < opts.threads; ++t)
            workers.emplace_back([&, t] {
                try {
                    while (auto c = store.claim("worker-" + std::to_string(t), tile_jobs, long_lease))
                        got[static_cast<std::size_t>(t)].push_back(std::move(*c));
                } catch (...) {
                    ++errors;
                }
            });
        for (auto& t : workers) t.join();
        CHECK(errors == 0);
        std::set<std::string> ids, tokens;
        int total = 0;
        for (std::size_t t = 0; t < got.size(); ++t)
            for (claimed_job& c : got[t]) {
                ++total;
                ids.insert(c.job.id);
                tokens.insert(c.lease.token);
                CHECK(c.job.worker == std::optional<std::string>("worker-" + std::to_string(t)));
                CHECK(store.get(c.job.id)->worker == c.job.worker);
                CHECK(store.complete(c.lease, nlohmann::json::object(), "Completed").status == job_status::completed);
            }
        CHECK(total == job_count);
        CHECK(static_cast<int>(ids.size()) == job_count);
        CHECK(static_cast<int>(tokens.size()) == job_count);
        CHECK(static_cast<int>(store.list_by_status(job_status::completed).size()) == job_count);
    }

    SECTION("a waiting worker is woken by an enqueue") {
        const std::uint64_t ticket = store.wakeup().ticket();
        std::thread producer([&] {
            std::this_thread::sleep_for(milliseconds(100));
            enqueue_id(store, "wake", "v1");
        });
        const auto start = std::chrono::steady_clock::now();
        store.wakeup().wait(ticket, milliseconds(10000));
        const auto waited = std::chrono::steady_clock::now() - start;
        producer.join();
        CHECK(waited < milliseconds(5000));
        CHECK(store.claim("w", tile_jobs, long_lease));
        // A ticket taken before a notify returns at once.
        const std::uint64_t old = store.wakeup().ticket();
        enqueue_id(store, "wake", "v2");
        const auto again = std::chrono::steady_clock::now();
        store.wakeup().wait(old, milliseconds(10000));
        CHECK(std::chrono::steady_clock::now() - again < milliseconds(1000));
    }

    SECTION("many threads on many jobs: no lost updates, progress monotonic to a reader") {
        const int job_count = opts.jobs, thread_count = opts.threads, reports = opts.reports_per_thread;
        std::vector<std::string> ids;
        std::vector<job_lease> leases;
        {
            std::vector<std::vector<std::string>> made(static_cast<std::size_t>(thread_count));
            std::atomic<int> create_errors{0};
            std::vector<std::thread> creators;
            for (int t = 0; t < thread_count; ++t)
                creators.emplace_back([&, t] {
                    for (int j = t; j < job_count; j += thread_count) {
                        try {
                            made[static_cast<std::size_t>(t)].push_back(enqueue_id(store, "load", "v" + std::to_string(j)));
                        } catch (...) {
                            ++create_errors;
                        }
                    }
                });
            for (auto& t : creators) t.join();
            REQUIRE(create_errors == 0);
            for (int j = 0; j < job_count; ++j) {
                claimed_job c = claim_one(store, "w");
                ids.push_back(c.job.id);
                leases.push_back(c.lease);
            }
            CHECK(static_cast<int>(std::set<std::string>(ids.begin(), ids.end()).size()) == job_count);
        }

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
        while (!reader_started.load()) std::this_thread::yield();

        std::vector<std::thread> workers;
        for (int t = 0; t < thread_count; ++t)
            workers.emplace_back([&, t] {
                std::vector<job_lease> mine = leases;  // each thread its own copy, as a worker would hold
                for (int k = 1; k <= reports; ++k)
                    for (int j = 0; j < job_count; ++j) {
                        const int top = t == j % thread_count ? peak(j) : peak(j) - 1 - t % 5;
                        const int value = top * k / reports;
                        try {
                            store.report_progress(mine[static_cast<std::size_t>(j)], value, message_for(value));
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

        // Race completion against late progress and a second completer: exactly one complete per
        // job wins, the losers are fenced off (lease_lost), and nothing else goes wrong.
        std::atomic<int> completed{0}, refused_complete{0}, refused_progress{0}, unexpected{0};
        std::vector<std::thread> finishers;
        for (int t = 0; t < thread_count; ++t)
            finishers.emplace_back([&, t] {
                std::vector<job_lease> mine = leases;
                for (int j = 0; j < job_count; ++j) {
                    job_lease& lease = mine[static_cast<std::size_t>(j)];
                    try {
                        if (t < 2) {
                            store.complete(lease, nlohmann::json{{"job", j}}, "Completed");
                            ++completed;
                        } else {
                            store.report_progress(lease, 95 + t % 5, "late");
                        }
                    } catch (const lease_lost&) {
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
    SECTION("list_jobs: keyset pages, newest first, by (created_at, id), with filters; count_jobs counts") {
        std::vector<std::string> ids;
        for (int i = 0; i < 7; ++i) ids.push_back(store.enqueue(job_for(i % 2 ? "odd" : "even", "v" + std::to_string(i))).id);
        claimed_job c = claim_one(store, "worker-a");  // the oldest queued one
        store.complete(c.lease, nlohmann::json::object(), "Completed");
        std::vector<std::string> seen;
        std::optional<job_page_key> after;
        int pages = 0;
        for (;;) {
            const job_page page = store.list_jobs(job_filter{}, 3, after);
            CHECK(page.jobs.size() <= 3);
            for (const job_record& j : page.jobs) seen.push_back(j.id);
            ++pages;
            if (!page.next) break;
            after = page.next;
        }
        CHECK(pages == 3);
        REQUIRE(seen.size() == 7);
        CHECK(std::set<std::string>(seen.begin(), seen.end()).size() == 7);
        for (std::size_t i = 1; i < seen.size(); ++i) {
            const job_record a = *store.get(seen[i - 1]), b = *store.get(seen[i]);
            CHECK((a.created_at > b.created_at || (a.created_at == b.created_at && a.id > b.id)));
        }
        const job_page odd = store.list_jobs(job_filter{std::string("odd"), std::nullopt, std::nullopt}, 10);
        CHECK(odd.jobs.size() == 3);
        CHECK_FALSE(odd.next);
        const job_page done = store.list_jobs(job_filter{std::nullopt, std::nullopt, job_status::completed}, 10);
        REQUIRE(done.jobs.size() == 1);
        CHECK(done.jobs[0].id == c.job.id);
        CHECK(store.list_jobs(job_filter{std::string("even"), std::string("v2"), job_status::queued}, 10).jobs.size() == 1);
        CHECK(store.count_jobs(job_filter{}) == 7);
        CHECK(store.count_jobs(job_filter{std::string("odd"), std::nullopt, std::nullopt}) == 3);
        CHECK(store.count_jobs(job_filter{std::nullopt, std::nullopt, job_status::queued}) == 6);
        CHECK(store.count_jobs(job_filter{std::string("nobody"), std::nullopt, std::nullopt}) == 0);
        CHECK_THROWS_AS(store.list_jobs(job_filter{}, 0), tilekit::error);
        const auto cursor = parse_cursor(to_cursor(*store.list_jobs(job_filter{}, 2).next));
        REQUIRE(cursor);
        CHECK(store.list_jobs(job_filter{}, 10, cursor).jobs.size() == 5);
        CHECK_FALSE(parse_cursor("not a cursor"));
    }

    SECTION("retention: finished jobs older than max_age, or past the cap per version, are pruned; dry run counts") {
        // Per version v1: three finished jobs (one at a time: one active job per version).
        std::vector<std::string> v1;
        for (int i = 0; i < 3; ++i) {
            v1.push_back(store.enqueue(job_for("p1", "v1")).id);
            claimed_job c = claim_one(store, "worker-a");
            if (i == 1) store.fail(c.lease, "broken", failure_kind::permanent);
            else store.complete(c.lease, nlohmann::json::object(), "Completed");
            std::this_thread::sleep_for(milliseconds(5));
        }
        const std::string cancelled = store.enqueue(job_for("p1", "v2")).id;
        store.cancel(cancelled, "no");
        const std::string active = store.enqueue(job_for("p1", "v3")).id;  // queued: never pruned
        CHECK(store.prune(retention_policy{std::chrono::hours(1), std::nullopt}) == 0);
        retention_policy cap{std::chrono::hours(1), 1};
        CHECK(store.prune(cap, /*dry_run=*/true) == 2);
        CHECK(store.count_jobs(job_filter{}) == 5);
        CHECK(store.prune(cap, false, /*batch=*/1) == 2);  // in batches of one
        CHECK_FALSE(store.get(v1[0]));
        CHECK_FALSE(store.get(v1[1]));
        CHECK(store.get(v1[2]));  // the newest of v1 stays
        CHECK(store.get(cancelled));
        std::this_thread::sleep_for(milliseconds(50));
        CHECK(store.prune(retention_policy{milliseconds(30), std::nullopt}, true) == 2);
        CHECK(store.prune(retention_policy{milliseconds(30), std::nullopt}) == 2);
        CHECK(store.count_jobs(job_filter{}) == 1);
        CHECK(store.get(active)->status == job_status::queued);
        CHECK_THROWS_AS(store.prune(retention_policy{milliseconds(-1), std::nullopt}), tilekit::error);
    }

    SECTION("retry: a failed or cancelled job goes back to the queue with a new budget of attempts; refused while the version is busy") {
        new_job job = job_for("p1", "v1");
        job.max_attempts = 1;
        const std::string id = store.enqueue(job).id;
        claimed_job c = claim_one(store, "worker-a");
        store.fail(c.lease, "the disk was full", failure_kind::retryable);  // no attempts left: failed
        REQUIRE(store.get(id)->status == job_status::failed);
        const job_record r = store.retry(id, "retried by ops");
        CHECK(r.status == job_status::queued);
        CHECK(r.attempt == 1);
        CHECK(r.max_attempts == 2);
        CHECK(r.error == "the disk was full");
        CHECK_FALSE(r.completed_at);
        CHECK(parse_utc_millis(r.run_at) <= now_millis() + slack);
        CHECK_THROWS_AS(store.retry(id, "again"), job_state_error);  // queued: nothing to retry
        CHECK(store.enqueue(job_for("p1", "v2")).status == job_status::queued);
        claimed_job again = claim_one(store, "worker-b");
        CHECK(again.job.id == id);
        CHECK(again.job.attempt == 2);  // a run prefix of its own, not attempt 1's
        store.cancel(id, "stop");
        CHECK_THROWS_AS(store.retry("00000000-0000-4000-8000-000000000000", "x"), job_not_found);
        // Another job of the version is active: refused, nothing changes.
        const std::string other = store.enqueue(job_for("p1", "v1")).id;
        try {
            store.retry(id, "again");
            FAIL("retry of a busy version must be refused");
        } catch (const job_state_error& e) {
            CHECK(e.code() == tilekit::errc::duplicate_job);
        }
        CHECK(store.get(id)->status == job_status::cancelled);
        // Bulk: cancel everything of p1, then retry the cancelled of version v2.
        const std::vector<job_record> cancelled = store.cancel_all(job_filter{std::string("p1"), std::nullopt, std::nullopt}, "bulk");
        CHECK(cancelled.size() == 2);  // other (v1) and the v2 job
        CHECK(store.get(other)->status == job_status::cancelled);
        const std::vector<job_record> retried =
            store.retry_all(job_filter{std::string("p1"), std::string("v2"), job_status::cancelled}, "bulk retry");
        CHECK(retried.size() == 1);
        CHECK(store.count_jobs(job_filter{std::nullopt, std::nullopt, job_status::queued}) == 1);
    }

    SECTION("stats: counts by status, the oldest runnable wait, failure rate and pickup latency in the window") {
        const queue_stats empty = store.stats(std::chrono::hours(1));
        CHECK(empty.queued == 0);
        CHECK_FALSE(empty.oldest_runnable_age);
        CHECK_FALSE(empty.failure_rate());
        for (int i = 0; i < 4; ++i) store.enqueue(job_for("p1", "v" + std::to_string(i)));
        std::this_thread::sleep_for(milliseconds(60));
        claimed_job a = claim_one(store, "worker-a");
        store.complete(a.lease, nlohmann::json::object(), "Completed");
        claimed_job b = claim_one(store, "worker-a");
        store.fail(b.lease, "bad input", failure_kind::permanent);
        claim_one(store, "worker-a");
        const queue_stats s = store.stats(std::chrono::hours(1));
        CHECK(s.queued == 1);
        CHECK(s.running == 1);
        CHECK(s.completed == 1);
        CHECK(s.failed == 1);
        CHECK(s.cancelled == 0);
        CHECK(s.runnable == 1);
        REQUIRE(s.oldest_runnable_age);
        CHECK(s.oldest_runnable_age->count() >= 60 - slack);
        CHECK(s.completed_in_window == 1);
        CHECK(s.failed_in_window == 1);
        REQUIRE(s.failure_rate());
        CHECK(*s.failure_rate() == Approx(0.5));
        CHECK(s.started_in_window == 3);
        REQUIRE(s.pickup_latency_avg);
        REQUIRE(s.pickup_latency_max);
        CHECK(s.pickup_latency_max->count() >= 50);
        CHECK(s.pickup_latency_avg->count() <= s.pickup_latency_max->count());
    }

    SECTION("release: free max_releases times in a row, then the hand-back counts as a failed attempt") {
        retry_policy policy;
        policy.max_releases = 2;
        policy.base = milliseconds(0);
        policy.jitter = false;
        store.set_retry_policy(policy);
        new_job job = job_for("p1", "v1");
        job.max_attempts = 2;
        job.timeout = milliseconds(1500);
        const std::string id = store.enqueue(job).id;
        CHECK(store.get(id)->timeout == milliseconds(1500));
        for (int i = 1; i <= 2; ++i) {
            claimed_job c = claim_one(store, "worker-a");
            const job_record r = store.release(c.lease, "shutting down");
            CHECK(r.status == job_status::queued);
            CHECK(r.attempt == i);
            CHECK(r.max_attempts == 2 + i);  // free: the budget grew by one
            CHECK(r.releases == i);
        }
        claimed_job third = claim_one(store, "worker-a");
        const job_record counted = store.release(third.lease, "shutting down");
        CHECK(counted.status == job_status::queued);  // the first counted attempt failed: retried
        CHECK(counted.attempt == 3);
        CHECK(counted.max_attempts == 4);  // this one counted: no growth
        CHECK(counted.releases == 0);
        CHECK(counted.error.find("handed back 3 times") != std::string::npos);
        std::this_thread::sleep_for(milliseconds(20));
        for (int i = 1; i <= 2; ++i) {
            claimed_job c = claim_one(store, "worker-a");
            store.release(c.lease, "shutting down");
        }
        claimed_job last = claim_one(store, "worker-a");
        CHECK(last.job.attempt == 6);
        CHECK(last.job.max_attempts == 6);
        const job_record ended = store.release(last.lease, "shutting down");
        CHECK(ended.status == job_status::failed);  // no attempts left
        const job_record retried = store.retry(id, "ops");
        CHECK(retried.releases == 0);
        CHECK(retried.attempt == 6);  // the count goes on: the retry's first claim is attempt 7
        CHECK(retried.max_attempts == 12);
        CHECK(claim_one(store, "worker-a").job.attempt == 7);
    }
}
